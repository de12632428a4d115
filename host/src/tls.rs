//! TLS termination by the service itself (`serve --tls-cert --tls-key [--client-ca]`): the rustls server
//! configuration, and the identity of a verified client certificate.
//!
//! Client certificates are requested but optional: a client without one still authenticates with Basic
//! or a bearer token. A certificate that is sent must chain to the configured client CA, or the handshake
//! fails. The subject CN of a verified certificate names the technical user (SAP: "certificate, CN ≤ 64
//! characters").

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use sha2::{Digest, Sha256};

/// The longest subject CN that names a technical user (SAP's limit).
pub const MAX_CN_CHARS: usize = 64;

/// Where the TLS material lives (PEM files).
#[derive(Clone, Debug)]
pub struct TlsSettings {
    /// The server's certificate chain, leaf first.
    pub cert: PathBuf,
    /// The server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA(s) client certificates must chain to; without it no client certificate is requested.
    pub client_ca: Option<PathBuf>,
}

/// Why TLS cannot be set up, or a certificate not read.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file is unreadable or holds nothing usable.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
    /// A certificate's DER could not be read.
    #[error("malformed certificate: {0}")]
    Certificate(&'static str),
}

fn file_error(path: &Path, message: impl ToString) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

/// The rustls server configuration: the server's certificate and, with a client CA, optional client
/// certificates verified against it. HTTP/2 and HTTP/1.1 are offered by ALPN.
pub fn server_config(settings: &TlsSettings) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = read_certs(&settings.cert)?;
    let key = PrivateKeyDer::from_pem_file(&settings.key).map_err(|e| file_error(&settings.key, e))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &settings.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca)? {
                roots.add(cert).map_err(|e| file_error(ca, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(format!("the certificate and key do not fit: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Marks a request that came over the service's own TLS (an extension set by the connection code, never
/// from the wire): the console then marks its cookies `Secure`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServedOverTls;

/// A client certificate the TLS layer verified, put into each request's extensions by the connection
/// code. Authentication reads it when a request has no `Authorization` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCertificate {
    /// The subject's common name, as in the certificate (its length is checked when authenticating).
    pub subject_cn: String,
    /// SHA-256 of the certificate's DER, lower-case hex (for logs).
    pub fingerprint_sha256: String,
}

impl ClientCertificate {
    /// Reads the subject CN of a DER certificate. A certificate without a CN, or with more than one, is
    /// refused: it names no user unambiguously.
    pub fn from_der(der: &[u8]) -> Result<Self, TlsError> {
        Ok(Self {
            subject_cn: subject_cn(der)?,
            fingerprint_sha256: hex::encode(Sha256::digest(der)),
        })
    }
}

/// One DER element: tag, contents and what follows.
fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), TlsError> {
    let (&tag, rest) = input.split_first().ok_or(TlsError::Certificate("truncated DER"))?;
    if tag & 0x1f == 0x1f {
        return Err(TlsError::Certificate("unexpected high-number DER tag"));
    }
    let (&first, mut rest) = rest.split_first().ok_or(TlsError::Certificate("truncated DER"))?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return Err(TlsError::Certificate("unsupported DER length"));
        }
        let (bytes, after) = rest.split_at_checked(n).ok_or(TlsError::Certificate("truncated DER"))?;
        rest = after;
        bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    let (contents, rest) = rest
        .split_at_checked(len)
        .ok_or(TlsError::Certificate("truncated DER"))?;
    Ok((tag, contents, rest))
}

/// Takes an element with `tag`.
fn expect<'a>(input: &'a [u8], tag: u8, what: &'static str) -> Result<(&'a [u8], &'a [u8]), TlsError> {
    let (t, contents, rest) = tlv(input)?;
    if t != tag {
        return Err(TlsError::Certificate(what));
    }
    Ok((contents, rest))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
/// id-at-commonName, 2.5.4.3.
const CN_OID: [u8; 3] = [0x55, 0x04, 0x03];

/// The subject CN: Certificate → tbsCertificate → [version], serial, signature, issuer, validity, subject.
fn subject_cn(der: &[u8]) -> Result<String, TlsError> {
    let (certificate, _) = expect(der, SEQUENCE, "not a certificate")?;
    let (tbs, _) = expect(certificate, SEQUENCE, "no tbsCertificate")?;
    let mut rest = tbs;
    // The explicit [0] version is optional (absent in v1 certificates).
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest)?.2;
    }
    for _ in ["serialNumber", "signature", "issuer", "validity"] {
        rest = tlv(rest)?.2;
    }
    let (mut subject, _) = expect(rest, SEQUENCE, "no subject")?;
    let mut found = None;
    while !subject.is_empty() {
        let (mut rdn, after) = expect(subject, SET, "malformed subject")?;
        subject = after;
        while !rdn.is_empty() {
            let (attribute, after) = expect(rdn, SEQUENCE, "malformed subject attribute")?;
            rdn = after;
            let (oid, value) = expect(attribute, OID, "malformed subject attribute")?;
            if oid != CN_OID {
                continue;
            }
            if found.is_some() {
                return Err(TlsError::Certificate("the subject has more than one CN"));
            }
            let (tag, text, _) = tlv(value)?;
            found = Some(directory_string(tag, text)?);
        }
    }
    found.ok_or(TlsError::Certificate("the subject has no CN"))
}

fn directory_string(tag: u8, bytes: &[u8]) -> Result<String, TlsError> {
    match tag {
        // UTF8String, PrintableString, IA5String.
        0x0c | 0x13 | 0x16 => {
            String::from_utf8(bytes.to_vec()).map_err(|_| TlsError::Certificate("the CN is not valid text"))
        }
        // BMPString: UTF-16BE.
        0x1e => {
            if !bytes.len().is_multiple_of(2) {
                return Err(TlsError::Certificate("the CN is not valid text"));
            }
            let units = bytes.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .map_err(|_| TlsError::Certificate("the CN is not valid text"))
        }
        _ => Err(TlsError::Certificate("the CN has an unsupported string type")),
    }
}

/// The verified client certificate of a connection, if the client sent one. rustls has verified the
/// chain against the client CA before the handshake completed.
pub fn peer_certificate(connection: &rustls::ServerConnection) -> Option<ClientCertificate> {
    let leaf = connection.peer_certificates()?.first()?;
    match ClientCertificate::from_der(leaf.as_ref()) {
        Ok(cert) => Some(cert),
        Err(e) => {
            tracing::warn!(
                fingerprint = %hex::encode(Sha256::digest(leaf.as_ref())),
                error = %e,
                "a verified client certificate names no user; the connection is served without it"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if contents.len() < 0x80 {
            out.push(contents.len() as u8);
        } else {
            out.push(0x82);
            out.extend_from_slice(&(contents.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(contents);
        out
    }

    fn attribute(oid: &[u8], tag: u8, value: &[u8]) -> Vec<u8> {
        let mut a = der(OID, oid);
        a.extend(der(tag, value));
        der(SET, &der(SEQUENCE, &a))
    }

    /// A certificate skeleton with the given subject RDNs (enough for the parser).
    fn certificate(rdns: &[Vec<u8>], long_filler: bool) -> Vec<u8> {
        let mut tbs = der(0xa0, &der(0x02, &[2]));
        tbs.extend(der(0x02, &[1, 2, 3]));
        tbs.extend(der(SEQUENCE, &der(OID, &[0x2a, 0x86, 0x48])));
        let filler = if long_filler { vec![0x41; 300] } else { vec![0x41] };
        tbs.extend(der(SEQUENCE, &attribute(&[0x55, 0x04, 0x0a], 0x0c, &filler)));
        tbs.extend(der(SEQUENCE, &[]));
        tbs.extend(der(SEQUENCE, &rdns.concat()));
        let mut cert = der(SEQUENCE, &tbs);
        cert.extend(der(SEQUENCE, &[]));
        der(SEQUENCE, &cert)
    }

    #[test]
    fn reads_the_subject_cn() {
        let c = certificate(
            &[
                attribute(&[0x55, 0x04, 0x06], 0x13, b"DE"),
                attribute(&CN_OID, 0x0c, "ias-pusher-ä".as_bytes()),
            ],
            true,
        );
        let cert = ClientCertificate::from_der(&c).unwrap();
        assert_eq!(cert.subject_cn, "ias-pusher-ä");
        assert_eq!(cert.fingerprint_sha256.len(), 64);
        let bmp: Vec<u8> = "pusher".encode_utf16().flat_map(u16::to_be_bytes).collect();
        let c = certificate(&[attribute(&CN_OID, 0x1e, &bmp)], false);
        assert_eq!(ClientCertificate::from_der(&c).unwrap().subject_cn, "pusher");
    }

    #[test]
    fn refuses_missing_duplicate_and_malformed() {
        let none = certificate(&[attribute(&[0x55, 0x04, 0x06], 0x13, b"DE")], false);
        assert!(ClientCertificate::from_der(&none).is_err());
        let two = certificate(&[attribute(&CN_OID, 0x0c, b"a"), attribute(&CN_OID, 0x0c, b"b")], false);
        assert!(ClientCertificate::from_der(&two).is_err());
        let good = certificate(&[attribute(&CN_OID, 0x0c, b"a")], false);
        for cut in 0..good.len() {
            assert!(ClientCertificate::from_der(&good[..cut]).is_err(), "cut at {cut}");
        }
        assert!(ClientCertificate::from_der(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(ClientCertificate::from_der(&[]).is_err());
    }

    #[test]
    fn missing_files_are_clear_errors() {
        let settings = TlsSettings {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
            client_ca: None,
        };
        let e = server_config(&settings)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("/nonexistent/cert.pem"), "{e}");
    }
}
