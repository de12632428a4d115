//! Encryption of secret property values at rest.
//!
//! The key lives outside the database: in `PROVISIO_MASTER_KEY` (base64, 32 bytes) or, by default, in the
//! file `master.key` of the data directory, created with owner-only permissions on first start. A copy of
//! the database alone reveals no secret. Each ciphertext is bound to the row it belongs to (associated
//! data), so secrets cannot be swapped between systems.
//!
//! In memory a system's secrets stay sealed too ([`SystemSecrets`]): the store hands out names and
//! ciphertext, and only [`SecretBox::open_secrets`] — called where a connection to the system is built —
//! yields the values, as [`Secret`]s whose `Debug` is the mask.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

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

/// A secret value in clear. Its `Debug` is the mask, so it cannot reach a log line or a panic message.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the place that hands it on to the system it belongs to.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(********)")
    }
}

/// The secret properties of one system definition. As the store reads them they stay sealed: the names
/// are known (the API shows them, masked), the values are ciphertext bound to their system until
/// [`SecretBox::open_secrets`] opens them. An edit holds the values entered in clear (sealed when the store
/// writes them) and keeps the others from the stored ciphertext without opening it. `Debug` shows names only.
#[derive(Clone, Default)]
pub struct SystemSecrets {
    names: BTreeSet<String>,
    entered: BTreeMap<String, Secret>,
    stored: Option<Stored>,
}

/// One system's secrets as stored: one sealed JSON object bound to the system id.
#[derive(Clone)]
struct Stored {
    system_id: String,
    names: BTreeSet<String>,
    sealed: Arc<[u8]>,
}

impl SystemSecrets {
    /// The secrets stored for `system_id`: their `names` and the `sealed` object.
    pub fn stored(system_id: &str, names: BTreeSet<String>, sealed: Vec<u8>) -> Self {
        SystemSecrets {
            names: names.clone(),
            entered: BTreeMap::new(),
            stored: Some(Stored {
                system_id: system_id.to_string(),
                names,
                sealed: sealed.into(),
            }),
        }
    }

    /// A new definition's secrets, replacing `current` (`None` for a new system): empty until values are
    /// entered or kept.
    pub fn edit_of(current: Option<&SystemSecrets>) -> Self {
        SystemSecrets {
            names: BTreeSet::new(),
            entered: BTreeMap::new(),
            stored: current.and_then(|c| c.stored.clone()),
        }
    }

    /// Values entered in clear (tests, and definitions built in code).
    pub fn entered<I: IntoIterator<Item = (String, String)>>(values: I) -> Self {
        let mut secrets = SystemSecrets::default();
        for (name, value) in values {
            secrets.enter(name, Secret::new(value));
        }
        secrets
    }

    /// Sets `name` to a value entered in clear.
    pub fn enter(&mut self, name: String, value: Secret) {
        self.names.insert(name.clone());
        self.entered.insert(name, value);
    }

    /// Keeps the stored value of `name`; `false` when none is stored.
    pub fn keep(&mut self, name: &str) -> bool {
        let stored = self.stored.as_ref().is_some_and(|s| s.names.contains(name));
        if stored {
            self.names.insert(name.to_string());
            self.entered.remove(name);
        }
        stored
    }

    /// Whether a value is set for `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// The names of the secret properties.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    /// Whether no secret is set.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

impl fmt::Debug for SystemSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.names.iter().map(|n| (n, "********")))
            .finish()
    }
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

impl SecretBox {
    /// The values of `secrets`: entered ones as they are, kept ones opened from their sealed object. The one
    /// way to the plaintext of stored secrets.
    pub fn open_secrets(&self, secrets: &SystemSecrets) -> Result<BTreeMap<String, Secret>, SecretError> {
        let mut open = BTreeMap::new();
        let kept = secrets.names.iter().any(|n| !secrets.entered.contains_key(n));
        if let Some(stored) = secrets.stored.as_ref().filter(|_| kept) {
            let plain = self.open_sealed(&stored.system_id, &stored.sealed)?;
            let mut values: BTreeMap<String, String> =
                serde_json::from_slice(&plain).map_err(|_| SecretError::Decrypt)?;
            for name in secrets.names.iter().filter(|n| !secrets.entered.contains_key(*n)) {
                if let Some(value) = values.remove(name) {
                    open.insert(name.clone(), Secret(value));
                }
            }
        }
        for (name, value) in &secrets.entered {
            open.insert(name.clone(), value.clone());
        }
        Ok(open)
    }

    /// Seals the values of `secrets` as one JSON object bound to `system_id`.
    pub fn seal_secrets(&self, system_id: &str, secrets: &SystemSecrets) -> Result<Vec<u8>, SecretError> {
        let open = self.open_secrets(secrets)?;
        let plain: BTreeMap<&str, &str> = open.iter().map(|(k, v)| (k.as_str(), v.expose())).collect();
        // A map of strings always serialises.
        let json = serde_json::to_vec(&plain).unwrap_or_default();
        Ok(self.seal(system_id, &json))
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
    fn system_secrets_stay_sealed_until_opened_and_edits_keep_or_replace() {
        let b = SecretBox::from_key([7; 32]);
        let entered = SystemSecrets::entered([
            ("Password".to_string(), "hunter2-long".to_string()),
            ("ApiKey".to_string(), "k-123456789".to_string()),
        ]);
        assert_eq!(
            format!("{entered:?}"),
            r#"{"ApiKey": "********", "Password": "********"}"#
        );
        let sealed = b.seal_secrets("sys-1", &entered).expect("seals");
        let stored = SystemSecrets::stored("sys-1", ["ApiKey".into(), "Password".into()].into(), sealed);
        assert!(!format!("{stored:?}").contains("hunter2"));
        let open = b.open_secrets(&stored).expect("opens");
        assert_eq!(open["Password"].expose(), "hunter2-long");
        assert_eq!(format!("{:?}", open["Password"]), "Secret(********)");

        // An edit keeps one value without opening it, replaces another, and drops what it does not name.
        let mut edit = SystemSecrets::edit_of(Some(&stored));
        assert!(edit.keep("Password"));
        assert!(!edit.keep("Missing"));
        edit.enter("Token".into(), Secret::new("t-0987654321"));
        let open = b.open_secrets(&edit).expect("opens");
        assert_eq!(open.len(), 2);
        assert_eq!(open["Password"].expose(), "hunter2-long");
        assert_eq!(open["Token"].expose(), "t-0987654321");
        assert!(!edit.contains("ApiKey"));

        // Nothing kept: the stored object is not opened at all (another key could not open it).
        let mut fresh = SystemSecrets::edit_of(Some(&stored));
        fresh.enter("Password".into(), Secret::new("new"));
        assert_eq!(
            SecretBox::from_key([9; 32]).open_secrets(&fresh).expect("no opening")["Password"].expose(),
            "new"
        );
        assert!(SecretBox::from_key([9; 32]).open_secrets(&stored).is_err());
    }

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
