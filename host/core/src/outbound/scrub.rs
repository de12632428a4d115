//! Keeps the credentials the host attaches out of what a guest sees and what a connector answers.
//!
//! A guest never gets a system's secrets, but an upstream may hand them back: one that echoes the request
//! puts the `Authorization` header into its body. So every secret the host attached for a call (the header
//! value, the Basic `user:password` in base64, the password, the bearer or OAuth token, the client secret)
//! is replaced by [`MASK`] in the responses handed to the guest and in the strings the connector returns.

use base64::Engine as _;
use memchr::memmem;

use super::{Credentials, SystemEndpoint};

/// What a secret is replaced with.
pub const MASK: &str = "********";

/// Raw secrets shorter than this are not searched for: a password like `x` or `admin` occurs in ordinary
/// data, and replacing it there would corrupt entities. The attached header value (`Basic …`, `Bearer …`)
/// is always searched for, whatever its length.
pub const MIN_SCRUBBED_LEN: usize = 8;

/// The secrets of one call, longest first (so a secret containing another is replaced whole).
#[derive(Clone, Debug, Default)]
pub struct Secrets {
    values: Vec<Secret>,
}

/// A secret with its searcher, built once: every header and body of a call is searched for every secret,
/// and building a `memmem` searcher per search was the largest of the proxy's own costs.
#[derive(Clone, Debug)]
struct Secret {
    text: String,
    finder: memmem::Finder<'static>,
}

impl Secret {
    fn new(text: &str) -> Secret {
        Secret {
            text: text.to_string(),
            finder: memmem::Finder::new(text.as_bytes()).into_owned(),
        }
    }
}

impl Secrets {
    /// The secrets of a system's credentials, as the host attaches them to requests to its `api` upstream.
    pub fn of(credentials: &Credentials) -> Secrets {
        let mut secrets = Secrets::default();
        match credentials {
            Credentials::None => {}
            Credentials::Basic { user, password } => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                secrets.add_header_value(&format!("Basic {encoded}"));
                secrets.add(&encoded);
                secrets.add(password);
            }
            Credentials::Bearer { token } => {
                secrets.add_header_value(&format!("Bearer {token}"));
                secrets.add(token);
            }
            Credentials::OAuth2 {
                client_id,
                client_secret,
                ..
            } => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{client_secret}"));
                secrets.add(&encoded);
                secrets.add(client_secret);
            }
        }
        secrets
    }

    /// The secrets of everything the host attaches to a system's `api` requests: its credentials and
    /// the sealed `ips.http.header.*` values.
    pub fn of_endpoint(endpoint: &SystemEndpoint) -> Secrets {
        let mut secrets = Secrets::of(&endpoint.credentials);
        for (_, value) in &endpoint.headers {
            // A raw value, like a password: too short a key would match ordinary data.
            if let Ok(value) = value.to_str() {
                secrets.add(value);
            }
        }
        secrets
    }

    /// Adds an `Authorization` value the host attached, and the token in it.
    pub fn add_header_value(&mut self, value: &str) {
        if !value.is_empty() && !self.values.iter().any(|v| v.text == value) {
            self.values.push(Secret::new(value));
            self.values.sort_by_key(|v| std::cmp::Reverse(v.text.len()));
        }
        if let Some((_, token)) = value.split_once(' ') {
            self.add(token.trim());
        }
    }

    /// Adds a raw secret, when it is long enough to be told apart from ordinary data.
    pub fn add(&mut self, value: &str) {
        if value.len() >= MIN_SCRUBBED_LEN && !self.values.iter().any(|v| v.text == value) {
            self.values.push(Secret::new(value));
            self.values.sort_by_key(|v| std::cmp::Reverse(v.text.len()));
        }
    }

    /// Adds all of `other`.
    pub fn extend(&mut self, other: &Secrets) {
        for v in &other.values {
            if !self.values.iter().any(|mine| mine.text == v.text) {
                self.values.push(v.clone());
            }
        }
        self.values.sort_by_key(|v| std::cmp::Reverse(v.text.len()));
    }

    /// Whether there is nothing to scrub.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// How many secrets are scrubbed.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Replaces every secret in `bytes`; answers whether anything was replaced. Costs one `memmem` scan
    /// per secret (with its searcher built when the secret was added), and nothing when there are none.
    pub fn scrub_bytes(&self, bytes: &mut Vec<u8>) -> bool {
        let mut replaced = false;
        for secret in &self.values {
            if secret.finder.find(bytes).is_none() {
                continue;
            }
            replaced = true;
            let mut out = Vec::with_capacity(bytes.len());
            let mut rest = 0;
            for at in secret.finder.find_iter(bytes) {
                // Overlapping matches: the earlier one already covered this one.
                if at < rest {
                    continue;
                }
                out.extend_from_slice(&bytes[rest..at]);
                out.extend_from_slice(MASK.as_bytes());
                rest = at + secret.text.len();
            }
            out.extend_from_slice(&bytes[rest..]);
            *bytes = out;
        }
        replaced
    }

    /// Replaces every secret in `text`.
    pub fn scrub_string(&self, text: &mut String) {
        // Most texts hold no secret: leave them without the copy and the UTF-8 check below.
        if !self.values.iter().any(|s| s.finder.find(text.as_bytes()).is_some()) {
            return;
        }
        let mut bytes = std::mem::take(text).into_bytes();
        self.scrub_bytes(&mut bytes);
        // Secrets are UTF-8 and so is the mask: replacing whole secrets keeps the text valid UTF-8.
        *text = String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_masked_in_every_form() {
        let secrets = Secrets::of(&Credentials::Basic {
            user: "me".into(),
            password: "my-own-secret".into(),
        });
        let mut body = b"{\"authorization\":\"Basic bWU6bXktb3duLXNlY3JldA==\",\"pw\":\"my-own-secret\"}".to_vec();
        assert!(secrets.scrub_bytes(&mut body));
        let text = String::from_utf8(body).expect("utf-8");
        assert_eq!(text, "{\"authorization\":\"********\",\"pw\":\"********\"}");
    }

    #[test]
    fn short_passwords_are_not_searched_for_but_the_header_is() {
        let secrets = Secrets::of(&Credentials::Basic {
            user: "u".into(),
            password: "x".into(),
        });
        let mut text = "xxx Basic dTp4 x".to_string();
        secrets.scrub_string(&mut text);
        assert_eq!(text, "xxx ******** x");
    }

    #[test]
    fn sealed_header_values_are_masked() {
        let endpoint = SystemEndpoint {
            system_id: "s".into(),
            api: None,
            token: None,
            credentials: Credentials::None,
            rate_per_second: None,
            headers: vec![(
                http::HeaderName::from_static("x-api-key"),
                http::HeaderValue::from_static("k-0123456789"),
            )],
        };
        let mut text = "echo x-api-key: k-0123456789".to_string();
        Secrets::of_endpoint(&endpoint).scrub_string(&mut text);
        assert_eq!(text, "echo x-api-key: ********");
    }

    #[test]
    fn attached_tokens_are_masked_and_nothing_else_changes() {
        let mut secrets = Secrets::default();
        assert!(secrets.is_empty());
        secrets.add_header_value("Bearer eyJhbGciOi.token.value");
        let mut text = "got Bearer eyJhbGciOi.token.value and eyJhbGciOi.token.value; ok".to_string();
        secrets.scrub_string(&mut text);
        assert_eq!(text, "got ******** and ********; ok");
        let mut untouched = b"nothing secret here".to_vec();
        assert!(!secrets.scrub_bytes(&mut untouched));
        assert_eq!(untouched, b"nothing secret here");
    }
}
