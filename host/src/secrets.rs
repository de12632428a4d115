//! Encryption of secret property values at rest.
//!
//! The key lives outside the database: in `PROVISIO_MASTER_KEY` (base64, 32 bytes) or, by default, in the
//! file `master.key` of the data directory, created with owner-only permissions on first start. A copy of
//! the database alone reveals no secret. Each ciphertext is bound to the row it belongs to (associated
//! data), so secrets cannot be swapped between systems.

use base64::Engine as _;
use cap_std::fs::Dir;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;

const KEY_FILE: &str = "master.key";
const NONCE_LEN: usize = 12;

/// Errors of the secret box.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The key could not be read or created.
    #[error("master key: {0}")]
    Key(String),
    /// Decryption failed: wrong key or tampered data.
    #[error("cannot decrypt a stored secret (was the master key changed?)")]
    Decrypt,
}

/// Encrypts and decrypts secret values with the master key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

impl SecretBox {
    /// Uses `PROVISIO_MASTER_KEY` if set, else `master.key` in `data_dir` (created if missing).
    pub fn open(data_dir: &Dir) -> Result<Self, SecretError> {
        let key = match std::env::var("PROVISIO_MASTER_KEY") {
            Ok(encoded) => decode_key(&encoded)?,
            Err(_) => match data_dir.read_to_string(KEY_FILE) {
                Ok(encoded) => decode_key(&encoded)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let mut key = [0u8; 32];
                    rand::rng().fill_bytes(&mut key);
                    write_private(
                        data_dir,
                        KEY_FILE,
                        &base64::engine::general_purpose::STANDARD.encode(key),
                    )
                    .map_err(|e| SecretError::Key(format!("cannot create {KEY_FILE}: {e}")))?;
                    key
                }
                Err(e) => return Err(SecretError::Key(format!("cannot read {KEY_FILE}: {e}"))),
            },
        };
        Ok(Self::from_key(key))
    }

    /// A box with a given key (tests).
    pub fn from_key(key: [u8; 32]) -> Self {
        SecretBox {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        }
    }

    /// Encrypts `plaintext`, bound to `context` (e.g. the system id).
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let mut out = nonce.to_vec();
        // Encryption with a fresh random nonce cannot fail for in-memory sizes.
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .unwrap_or_default();
        out.extend(sealed);
        out
    }

    /// Decrypts what [`SecretBox::seal`] produced for the same `context`.
    pub fn open_sealed(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, SecretError> {
        if sealed.len() < NONCE_LEN {
            return Err(SecretError::Decrypt);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Decrypt)
    }
}

fn decode_key(encoded: &str) -> Result<[u8; 32], SecretError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|e| SecretError::Key(format!("not base64: {e}")))?;
    bytes
        .try_into()
        .map_err(|_| SecretError::Key("the key must be 32 bytes".into()))
}

/// Writes a file readable by its owner only.
pub fn write_private(dir: &Dir, name: &str, contents: &str) -> std::io::Result<()> {
    use cap_std::fs::OpenOptions;
    use std::io::Write as _;
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use cap_std::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = dir.open_with(name, &options)?;
    file.write_all(contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let b = SecretBox::from_key([7; 32]);
        let sealed = b.seal("sys-1", b"hunter2");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(b.open_sealed("sys-1", &sealed).expect("opens"), b"hunter2");
        assert!(b.open_sealed("sys-2", &sealed).is_err(), "bound to its row");
        assert!(
            SecretBox::from_key([8; 32]).open_sealed("sys-1", &sealed).is_err(),
            "other key"
        );
        assert!(b.open_sealed("sys-1", b"short").is_err());
    }
}
