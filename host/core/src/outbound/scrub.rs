//! Keeps the credentials the host attaches out of what a guest sees and what a connector answers.
//!
//! A guest never gets a system's secrets, but an upstream may hand them back: one that echoes the request
//! puts the `Authorization` header into its body. So every secret the host attached for a call (the header
//! value, the Basic `user:password` in base64, the password, the bearer or OAuth token, the client secret)
//! is replaced by [`MASK`] in the responses handed to the guest and in the strings the connector returns.

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
    /// Which state of a set this is (see [`Secrets::revision`]).
    revision: u64,
}

/// The last revision given to a set of secrets.
static REVISIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A secret with its searcher, built once: every header and body of a call is searched for every secret,
/// and building a `memmem` searcher per search was the largest of the proxy's own costs.
///
/// An upstream that echoes a secret in JSON may write it escaped (`\/` for `/` in PHP, `\u002B` for `+` in
/// .NET, `\u003d` for `=` in Gson, non-ASCII as `\u00e9` in Python), and a guest that parses the answer
/// reads the secret back. So a secret is found in any JSON spelling of its characters: the searcher looks
/// for its longest run of characters no serialiser escapes (the anchor), and each hit is widened over the
/// characters before and after it, each either literal or escaped.
#[derive(Clone, Debug)]
struct Secret {
    text: String,
    anchor: std::ops::Range<usize>,
    finder: memmem::Finder<'static>,
}

impl Secret {
    fn new(text: &str) -> Secret {
        let anchor = longest_literal_run(text);
        Secret {
            finder: memmem::Finder::new(&text.as_bytes()[anchor.clone()]).into_owned(),
            text: text.to_string(),
            anchor,
        }
    }

    /// The first occurrence of the secret in `bytes` at or after `from`, literal or JSON-escaped.
    fn find(&self, bytes: &[u8], from: usize) -> Option<std::ops::Range<usize>> {
        let prefix = &self.text[..self.anchor.start];
        let mut search = from + prefix.len();
        while search <= bytes.len() {
            let at = search + self.finder.find(&bytes[search..])?;
            let anchor_end = at + self.anchor.len();
            search = at + 1;
            if let Some(found) = self.widened(bytes, from, at, anchor_end) {
                return Some(found);
            }
            // Not a JSON spelling: the literal one, as it is (in plain text, `\"` in a secret is a backslash
            // and a quote, not an escape). A JSON spelling found at the same hit covers it: escapes are
            // longer than the characters they stand for.
            let literal = at - prefix.len();
            if bytes[literal..].starts_with(self.text.as_bytes()) {
                return Some(literal..literal + self.text.len());
            }
        }
        None
    }

    /// The secret around its anchor found at `at`, each character before and after it escaped or literal,
    /// starting at `from` or later. A spelling with an escape is JSON: it must start where a character of a
    /// JSON string starts (not after a backslash, not inside a `\uXXXX`), and hold no character JSON never
    /// leaves raw in a string (a quote, a backslash, a control character).
    fn widened(&self, bytes: &[u8], from: usize, at: usize, anchor_end: usize) -> Option<std::ops::Range<usize>> {
        let (prefix, suffix) = (&self.text[..self.anchor.start], &self.text[self.anchor.end..]);
        let (start, before) = widen_back(bytes, from, at, prefix)?;
        let (end, after) = widen_forward(bytes, anchor_end, suffix)?;
        let escaped = before.escaped || after.escaped;
        if escaped && (before.raw || after.raw || escaped_at(bytes, start) || in_unicode_escape(bytes, start)) {
            return None;
        }
        Some(start..end)
    }
}

/// How the characters on one side of an anchor were matched: whether any was escaped, and whether any
/// matched raw that JSON always escapes.
#[derive(Clone, Copy, Default)]
struct Reading {
    escaped: bool,
    raw: bool,
}

impl Reading {
    fn literal(&mut self, c: char) {
        self.raw |= matches!(c, '"' | '\\') || c.is_control();
    }
}

/// Whether no JSON serialiser in common use writes `c` escaped.
fn never_escaped(c: char) -> bool {
    (c.is_ascii_graphic() || c == ' ') && !matches!(c, '"' | '\\' | '/' | '+' | '<' | '>' | '&' | '\'' | '=' | '`')
}

/// The byte range of the longest run of `text` that no serialiser escapes; all of `text` when it has
/// none (then only its literal spelling is found).
fn longest_literal_run(text: &str) -> std::ops::Range<usize> {
    let mut best = 0..0;
    let mut start = None;
    for (i, c) in text.char_indices().chain(std::iter::once((text.len(), '\0'))) {
        match (never_escaped(c) && i < text.len(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                if i - s > best.len() {
                    best = s..i;
                }
                start = None;
            }
            _ => {}
        }
    }
    if best.is_empty() { 0..text.len() } else { best }
}

/// Whether the byte at `at` is preceded by an odd number of backslashes.
fn escaped_at(bytes: &[u8], at: usize) -> bool {
    bytes[..at].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1
}

/// Whether the byte at `at` is one of the four digits of a `\uXXXX` escape.
fn in_unicode_escape(bytes: &[u8], at: usize) -> bool {
    (2..=5).any(|k| at >= k && bytes[at - k] == b'\\' && bytes[at - k + 1] == b'u' && !escaped_at(bytes, at - k))
}

/// Matches `chars` forward from `at`, each escaped or literal; answers the end and how they matched.
/// An escape is tried first: the literal `"` or `\\` would otherwise take the second byte of `\"` or `\\`.
fn widen_forward(bytes: &[u8], mut at: usize, chars: &str) -> Option<(usize, Reading)> {
    let mut reading = Reading::default();
    for c in chars.chars() {
        if let Some(len) = escape_len(&bytes[at..], c).filter(|_| !escaped_at(bytes, at)) {
            at += len;
            reading.escaped = true;
            continue;
        }
        let mut literal = [0u8; 4];
        let literal = c.encode_utf8(&mut literal).as_bytes();
        if !bytes[at..].starts_with(literal) {
            return None;
        }
        at += literal.len();
        reading.literal(c);
    }
    Some((at, reading))
}

/// Matches `chars` backward so that they end at `end` and start at `from` or later, each escaped or
/// literal; answers their start and how they matched.
fn widen_back(bytes: &[u8], from: usize, mut end: usize, chars: &str) -> Option<(usize, Reading)> {
    let mut reading = Reading::default();
    for c in chars.chars().rev() {
        // The escapes of one character are 2, 6 or 12 bytes long.
        let escape = [2, 6, 12].into_iter().find(|&len| {
            end >= from + len && escape_len(&bytes[end - len..end], c) == Some(len) && !escaped_at(bytes, end - len)
        });
        if let Some(len) = escape {
            end -= len;
            reading.escaped = true;
            continue;
        }
        let mut literal = [0u8; 4];
        let literal = c.encode_utf8(&mut literal).as_bytes();
        if !bytes[from..end].ends_with(literal) {
            return None;
        }
        end -= literal.len();
        reading.literal(c);
    }
    Some((end, reading))
}

/// The length of a JSON escape of `c` at the start of `bytes` (`\n`, `\/`, `\u00e9`, a surrogate pair).
fn escape_len(bytes: &[u8], c: char) -> Option<usize> {
    let short = match c {
        '"' => Some(b'"'),
        '\\' => Some(b'\\'),
        '/' => Some(b'/'),
        '\u{8}' => Some(b'b'),
        '\u{c}' => Some(b'f'),
        '\n' => Some(b'n'),
        '\r' => Some(b'r'),
        '\t' => Some(b't'),
        _ => None,
    };
    if short.is_some() && bytes.len() >= 2 && bytes[0] == b'\\' && Some(bytes[1]) == short {
        return Some(2);
    }
    let mut units = [0u16; 2];
    let units = c.encode_utf16(&mut units);
    let mut at = 0;
    for &unit in units.iter() {
        let escape = bytes.get(at..at + 6)?;
        if escape[..2] != *b"\\u" || hex4(&escape[2..])? != unit {
            return None;
        }
        at += 6;
    }
    Some(at)
}

/// Four hexadecimal digits, either case.
fn hex4(digits: &[u8]) -> Option<u16> {
    let digits = std::str::from_utf8(digits)
        .ok()
        .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))?;
    u16::from_str_radix(digits, 16).ok()
}

impl Secrets {
    /// The secrets of a system's credentials, as the host attaches them to requests to its `api` upstream.
    pub fn of(credentials: &Credentials) -> Secrets {
        let mut secrets = Secrets::default();
        match credentials {
            Credentials::None => {}
            Credentials::Basic { user, password } => {
                let encoded = super::auth::basic_credentials(user, password);
                secrets.add_header_value(&format!("Basic {encoded}"));
                secrets.add(&encoded);
                secrets.add(password);
            }
            Credentials::Bearer { token } => {
                secrets.add_header_value(&format!("Bearer {token}"));
                secrets.add(token);
            }
            Credentials::OAuth2(oauth) => {
                let encoded = super::auth::basic_credentials(&oauth.client_id, &oauth.client_secret);
                secrets.add(&encoded);
                secrets.add(&oauth.client_secret);
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
        if !value.is_empty() {
            self.insert(|| Secret::new(value), value);
        }
        if let Some((_, token)) = value.split_once(' ') {
            self.add(token.trim());
        }
    }

    /// Adds a raw secret, when it is long enough to be told apart from ordinary data.
    pub fn add(&mut self, value: &str) {
        if value.len() >= MIN_SCRUBBED_LEN {
            self.insert(|| Secret::new(value), value);
        }
    }

    /// Adds all of `other`.
    pub fn extend(&mut self, other: &Secrets) {
        for v in &other.values {
            self.insert(|| v.clone(), &v.text);
        }
    }

    /// Adds a secret not yet held, keeping the longest first.
    fn insert(&mut self, secret: impl FnOnce() -> Secret, text: &str) {
        if !self.values.iter().any(|v| v.text == text) {
            let at = self.values.partition_point(|v| v.text.len() >= text.len());
            self.values.insert(at, secret());
            self.revision = REVISIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        }
    }

    /// A number that changes whenever a secret is added, never given to two different sets: two sets with
    /// the same revision hold the same secrets (one is a copy of the other), so a text scrubbed with one
    /// need not be scrubbed again with the other. An empty set's is 0.
    pub fn revision(&self) -> u64 {
        self.revision
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
            let Some(mut found) = secret.find(bytes, 0) else {
                continue;
            };
            replaced = true;
            let mut out = Vec::with_capacity(bytes.len());
            let mut rest = 0;
            loop {
                out.extend_from_slice(&bytes[rest..found.start]);
                out.extend_from_slice(MASK.as_bytes());
                rest = found.end;
                // Overlapping matches: the earlier one already covered this one.
                match secret.find(bytes, rest) {
                    Some(next) => found = next,
                    None => break,
                }
            }
            out.extend_from_slice(&bytes[rest..]);
            *bytes = out;
        }
        replaced
    }

    /// Replaces every secret in `text`.
    pub fn scrub_string(&self, text: &mut String) {
        // Most texts hold no secret: leave them without the copy and the UTF-8 check below.
        if !self.values.iter().any(|s| s.find(text.as_bytes(), 0).is_some()) {
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

    fn scrubbed(secrets: &Secrets, text: &str) -> String {
        let mut text = text.to_string();
        secrets.scrub_string(&mut text);
        text
    }

    #[test]
    fn secrets_echoed_in_json_escapes_are_masked() {
        // A base64 value with `/`, `+` and `=`, as PHP (`\/`), .NET (`\u002B`) and Gson (`\u003d`) write it.
        let mut secrets = Secrets::default();
        secrets.add("ab/cd+ef==gh");
        assert_eq!(
            scrubbed(&secrets, r#"{"a":"ab\/cd\u002Bef\u003d\u003Dgh"}"#),
            r#"{"a":"********"}"#
        );
        assert_eq!(
            scrubbed(&secrets, r#"{"a":"ab/cd+ef==gh","b":"ab\/cd+ef==gh"}"#),
            r#"{"a":"********","b":"********"}"#
        );
        // Escapes before the first character and after the last.
        secrets.add("+starts-and-ends+");
        assert_eq!(
            scrubbed(&secrets, r#"["\u002bstarts-and-ends\u002B!"]"#),
            r#"["********!"]"#
        );
        // Quotes, backslashes, non-ASCII (Python's default) and a character beyond the BMP (a surrogate pair).
        secrets.add(r#"pä"ss\wörd😀x"#);
        assert_eq!(
            scrubbed(&secrets, r#"{"p":"p\u00e4\"ss\\w\u00F6rd\ud83d\ude00x"}"#),
            r#"{"p":"********"}"#
        );
    }

    #[test]
    fn escaped_lookalikes_are_left_alone() {
        let mut secrets = Secrets::default();
        secrets.add("ab+cdefgh");
        // `\\u002B` is a backslash and the letters `u002B`, not a `+`: not the secret.
        let text = r#"{"a":"ab\\u002Bcdefgh","b":"\ab\u002Bcdefgh","c":"ab\u002Bcdefg"}"#;
        assert_eq!(scrubbed(&secrets, text), text);
        // In plain text, the literal secret is masked whatever comes before it, even one that holds what
        // would be an escape in JSON.
        assert_eq!(scrubbed(&secrets, r"x\ab+cdefgh"), r"x\********");
        secrets.add(r#"pa\"ss/word"#);
        assert_eq!(scrubbed(&secrets, r#"echo pa\"ss/word!"#), "echo ********!");
        assert_eq!(scrubbed(&secrets, r#"{"p":"pa\\\"ss\/word"}"#), r#"{"p":"********"}"#);
        let mut secrets = Secrets::default();
        secrets.add(r"Abcdefgh\\Ijk");
        secrets.add(r"ab\/cdefgh");
        assert_eq!(
            scrubbed(&secrets, r"1 Abcdefgh\\Ijk 2 ab\/cdefgh"),
            "1 ******** 2 ********"
        );
        // A JSON spelling starts where a character does, not among the digits of a `\u0041`, and ends where
        // one does, not on the backslash of the next escape: the JSON stays whole.
        let mut secrets = Secrets::default();
        secrets.add("41/abcdefgh");
        secrets.add("ab/cdefgh\\");
        let text = r#"{"a":"\u0041\/abcdefgh","b":"ab\/cdefgh\"x"}"#;
        assert_eq!(scrubbed(&secrets, text), text);
    }

    #[test]
    fn the_anchor_is_the_longest_run_no_serialiser_escapes() {
        assert_eq!(longest_literal_run("ab/cdef+g"), 3..7);
        assert_eq!(longest_literal_run("plain-token.value"), 0..17);
        // Nothing safe to anchor on: the whole secret, found literally.
        assert_eq!(longest_literal_run("+/=+/=+/"), 0..8);
        let mut secrets = Secrets::default();
        secrets.add("+/=+/=+/");
        assert_eq!(scrubbed(&secrets, "a +/=+/=+/ b"), "a ******** b");
    }

    #[test]
    fn secrets_are_kept_longest_first_and_once() {
        let mut secrets = Secrets::default();
        secrets.add("secret-8");
        secrets.add_header_value("Bearer secret-8-longer");
        secrets.add("secret-8");
        let mut other = Secrets::default();
        other.add("secret-8-longer");
        secrets.extend(&other);
        let texts: Vec<_> = secrets.values.iter().map(|v| v.text.as_str()).collect();
        assert_eq!(texts, ["Bearer secret-8-longer", "secret-8-longer", "secret-8"]);
    }

    #[test]
    fn a_revision_names_one_set_of_secrets() {
        let mut a = Secrets::default();
        assert_eq!(a.revision(), 0, "empty");
        a.add("short"); // too short to be kept: the set is unchanged
        assert_eq!(a.revision(), 0);
        a.add("secret-one");
        let first = a.revision();
        assert_ne!(first, 0);
        a.add("secret-one");
        assert_eq!(a.revision(), first, "held already: unchanged");
        let copy = a.clone();
        assert_eq!(copy.revision(), first, "a copy holds the same secrets");
        a.add("secret-two");
        assert_ne!(a.revision(), first);
        // Another set with the same secrets added apart: a revision of its own, never one of `a`'s.
        let mut b = Secrets::default();
        b.add("secret-one");
        assert_ne!(b.revision(), first);
        assert_ne!(b.revision(), a.revision());
    }

    /// Random secrets in random text, literal and in every JSON spelling: nothing panics, no literal
    /// occurrence survives (as with the plain search before), and no JSON string decodes to the secret.
    #[test]
    fn random_texts_never_keep_a_secret() {
        const ALPHABET: [&str; 14] = ["a", "b", "u", "0", "D", "\\", "\"", "/", "+", "=", "é", "😀", "\n", " "];
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        // `\uXXXX` (upper or lower case hex) for every character a serialiser may escape, as the most eager
        // ones write (.NET: non-ASCII and `+`; Python: non-ASCII; Gson: `=`).
        let eagerly_escaped = |text: &str, upper: bool| -> String {
            text.chars()
                .map(|c| {
                    if never_escaped(c) {
                        return c.to_string();
                    }
                    let mut units = [0u16; 2];
                    c.encode_utf16(&mut units)
                        .iter()
                        .map(|u| {
                            if upper {
                                format!("\\u{u:04X}")
                            } else {
                                format!("\\u{u:04x}")
                            }
                        })
                        .collect()
                })
                .collect()
        };
        for _ in 0..2000 {
            let secret: String = (0..8 + next(6)).map(|_| ALPHABET[next(ALPHABET.len())]).collect();
            let mut secrets = Secrets::default();
            secrets.add(&secret);
            let json = serde_json::to_string(&secret).expect("json");
            let forms = [
                secret.clone(),
                json[1..json.len() - 1].to_string(),
                json[1..json.len() - 1].replace('/', "\\/").replace('+', "\\u002B"),
                eagerly_escaped(&secret, next(2) == 0),
            ];
            let mut text = String::new();
            let mut strings = Vec::new();
            for _ in 0..6 {
                match next(3) {
                    0 => text.push_str(ALPHABET[next(ALPHABET.len())]),
                    1 => text.push_str(&secret),
                    _ => {
                        let form = &forms[next(forms.len())];
                        strings.push(text.len());
                        text.push('"');
                        text.push_str(form);
                        text.push('"');
                    }
                }
            }
            let mut out = text.clone();
            secrets.scrub_string(&mut out);
            assert!(!out.contains(&secret), "{secret:?} kept in {out:?} (from {text:?})");
            // A secret with no character every serialiser leaves alone is found only as it is.
            if !secret.chars().any(never_escaped) {
                continue;
            }
            // Each JSON string written whole, on its own, decodes to something without the secret.
            let mut alone = String::new();
            for form in &forms[1..] {
                alone.clear();
                alone.push('"');
                alone.push_str(form);
                alone.push('"');
                secrets.scrub_string(&mut alone);
                let decoded: String =
                    serde_json::from_str(&alone).unwrap_or_else(|e| panic!("{secret:?} as {form:?}: {alone:?}: {e}"));
                assert!(!decoded.contains(&secret), "{secret:?} decoded from {alone:?}");
            }
        }
    }
}
