//! Checking a JSON text as strictly as parsing it into a `serde_json::Value` would — escapes decoded (a lone
//! surrogate refused), numbers within `f64`'s range, the same nesting limit — without building the value.
//! For texts handed on as they are (a connector's entities, which the host parses later or never again).

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// `Ok` when `text` is one JSON value that `serde_json::from_slice::<Value>` accepts, else the error that
/// parse would give.
pub fn check(text: &[u8]) -> Result<(), serde_json::Error> {
    match std::str::from_utf8(text) {
        Ok(text) => check_str(text),
        // serde_json's parse says where, in its own words.
        Err(_) => serde_json::from_slice::<Checked>(text).map(|_| ()),
    }
}

/// [`check`] of a text already known to be UTF-8: its strings are not validated again. A plain text (see
/// [`plainly_valid`]) is accepted by one scan; anything else goes through serde_json's parse, which gives
/// the verdict and its message.
pub fn check_str(text: &str) -> Result<(), serde_json::Error> {
    if plainly_valid(text.as_bytes()) {
        return Ok(());
    }
    serde_json::from_str::<Checked>(text).map(|_| ())
}

/// Deepest nesting the quick scan follows (serde_json's own limit is 128): a bit of a `u64` per level, the
/// widest integer wasm computes with natively.
const PLAIN_DEPTH: u32 = 64;
/// Most digits of a number the quick scan accepts: any integer of up to 300 digits is within `f64`'s range.
const PLAIN_DIGITS: usize = 300;

/// Whether `text` (UTF-8) is one JSON value of the plain kind an entity is: a quick scan of its grammar
/// (RFC 8259) that accepts nothing a `Value` parse refuses. What it does not follow — a `\u` escape of a lone
/// surrogate, a number with an exponent or over [`PLAIN_DIGITS`] digits (`f64`'s range), nesting deeper than
/// [`PLAIN_DEPTH`] — it leaves to serde_json: `false` means "ask the parser", not "invalid".
/// About 60 % of the instructions of serde_json's walk on a typical user, in wasm (docs/performance.md,
/// "nineteenth session"); it runs in every connector's `get` and on every entity text the host checks.
fn plainly_valid(text: &[u8]) -> bool {
    plain_value(text, whitespace(text, 0)).is_some_and(|end| whitespace(text, end) == text.len())
}

/// The position after the plain JSON value (see [`plainly_valid`]) at `i`; `None` when there is none the quick
/// scan follows there. A list answer's split reads its members and elements with it.
pub(crate) fn plain_value(text: &[u8], mut i: usize) -> Option<usize> {
    // Bit d of `objects`: whether the container at depth d is an object (else an array).
    let (mut objects, mut depth) = (0u64, 0u32);
    'value: loop {
        i = match text.get(i) {
            Some(b'{' | b'[') if depth == PLAIN_DEPTH => return None,
            Some(&open @ (b'{' | b'[')) => {
                let object = open == b'{';
                objects = (objects & !(1 << depth)) | (u64::from(object) << depth);
                depth += 1;
                i = whitespace(text, i + 1);
                match text.get(i) {
                    // Empty: closed at once.
                    Some(b'}') if object => {
                        depth -= 1;
                        i + 1
                    }
                    Some(b']') if !object => {
                        depth -= 1;
                        i + 1
                    }
                    _ if object => {
                        i = key(text, i)?;
                        continue 'value;
                    }
                    _ => continue 'value,
                }
            }
            Some(b'"') => string(text, i)?,
            Some(b't') if text[i..].starts_with(b"true") => i + 4,
            Some(b'f') if text[i..].starts_with(b"false") => i + 5,
            Some(b'n') if text[i..].starts_with(b"null") => i + 4,
            Some(b'-' | b'0'..=b'9') => number(text, i)?,
            _ => return None,
        };
        // After a value: the end of the scanned value, or its container's next entry or end.
        loop {
            if depth == 0 {
                return Some(i);
            }
            i = whitespace(text, i);
            let object = objects & (1 << (depth - 1)) != 0;
            match text.get(i) {
                Some(b',') if object => {
                    i = key(text, whitespace(text, i + 1))?;
                    continue 'value;
                }
                Some(b',') => {
                    i = whitespace(text, i + 1);
                    continue 'value;
                }
                Some(b'}') if object => {
                    depth -= 1;
                    i += 1;
                }
                Some(b']') if !object => {
                    depth -= 1;
                    i += 1;
                }
                _ => return None,
            }
        }
    }
}

/// The position after JSON whitespace from `i`.
#[inline(always)]
pub(crate) fn whitespace(text: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\t' | b'\r') = text.get(i) {
        i += 1;
    }
    i
}

/// A member's key at `i` and its colon: the position of its value.
#[inline(always)]
fn key(text: &[u8], i: usize) -> Option<usize> {
    colon(text, string(text, i)?)
}

/// What follows a member's key, from `i` just after it: whitespace, the colon, whitespace; the position of the
/// member's value.
#[inline(always)]
pub(crate) fn colon(text: &[u8], i: usize) -> Option<usize> {
    let i = whitespace(text, i);
    (text.get(i) == Some(&b':')).then(|| whitespace(text, i + 1))
}

/// The position after the string at `i`; `None` for a control character, an unknown escape or a `\u` escape
/// [`unicode_escape`] does not take.
#[inline(always)]
pub(crate) fn string(text: &[u8], i: usize) -> Option<usize> {
    if text.get(i) != Some(&b'"') {
        return None;
    }
    let mut i = i + 1;
    loop {
        i = to_special(text, i);
        match *text.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => i = escape(text, i)?,
            0..=0x1f => return None,
            _ => i += 1,
        }
    }
}

/// The position after the escape at `i`. Not inlined: escapes are rare, and inlined, this branch made the scan
/// of a plain 100-user page 11 % more instructions (`split_member` under callgrind; 5 % more as it is).
#[inline(never)]
fn escape(text: &[u8], i: usize) -> Option<usize> {
    match text.get(i + 1)? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(i + 2),
        b'u' => unicode_escape(text, i),
        _ => None,
    }
}

/// The position after the `\uXXXX` escape at `i`, and after the low surrogate's escape that must follow a high
/// one; `None` for a digit that is not hex, a lone surrogate, or a high one not followed by its low half: what a
/// `Value` parse refuses. Servers that escape what is not ASCII (Python's `json`, .NET's `System.Text.Json`)
/// write these in every name with an accent.
fn unicode_escape(text: &[u8], i: usize) -> Option<usize> {
    let unit = |at: usize| -> Option<u32> {
        let escape = text.get(at..at + 6)?;
        let digits = escape.strip_prefix(b"\\u")?;
        digits
            .iter()
            .try_fold(0, |n, d| Some(n * 16 + char::from(*d).to_digit(16)?))
    };
    match unit(i)? {
        0xDC00..=0xDFFF => None,
        0xD800..=0xDBFF => matches!(unit(i + 6)?, 0xDC00..=0xDFFF).then_some(i + 12),
        _ => Some(i + 6),
    }
}

/// The position of the next quote, backslash or control character from `i`, or of the text's last few bytes,
/// which the caller then reads one by one: 16 bytes at a time with SSE2 on x86-64 (the host), else 8 at a time
/// (SWAR, as serde_json does; wasm). A string's bytes are most of a list answer's, which the host splits
/// (docs/performance.md, "twenty-second session").
#[inline(always)]
fn to_special(text: &[u8], mut i: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        while let Some(chunk) = text.get(i..i + 16) {
            let found = special_16(chunk);
            if found != 0 {
                return i + found.trailing_zeros() as usize;
            }
            i += 16;
        }
        i
    }
    #[cfg(not(target_arch = "x86_64"))]
    while let Some(chunk) = text.get(i..i + 8) {
        let found = special(u64::from_le_bytes(chunk.try_into().unwrap_or_default()));
        if found != 0 {
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    #[cfg(not(target_arch = "x86_64"))]
    i
}

/// Bit k set when byte k of `chunk` (16 bytes) is a quote, a backslash or a control character.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn special_16(chunk: &[u8]) -> u32 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    debug_assert_eq!(chunk.len(), 16);
    // SAFETY: an unaligned load of 16 bytes from a slice of 16; SSE2, the rest, is part of every x86-64 CPU.
    unsafe {
        let bytes = _mm_loadu_si128(chunk.as_ptr().cast());
        let quote = _mm_cmpeq_epi8(bytes, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(bytes, _mm_set1_epi8(b'\\' as i8));
        // Unsigned: min(b, 0x1f) == b exactly when b ≤ 0x1f.
        let control = _mm_cmpeq_epi8(_mm_min_epu8(bytes, _mm_set1_epi8(0x1f)), bytes);
        _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control)) as u32
    }
}

/// The high bit of each byte of `word` (eight bytes of the text, little-endian) that may be a quote, a
/// backslash or a control character; 0 when none is. The lowest bit set is always a real one (a borrow that
/// marks a byte falsely only starts at a real one below it), so it says where the next such byte is; bytes
/// with the high bit set (UTF-8 sequences) are never marked.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn special(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    zero_byte(word ^ (ONES * u64::from(b'"'))) | zero_byte(word ^ (ONES * u64::from(b'\\'))) | below_space
}

/// The position after the number at `i` (RFC 8259's grammar without an exponent, at most [`PLAIN_DIGITS`]
/// digits).
fn number(text: &[u8], i: usize) -> Option<usize> {
    let start = i;
    let mut i = i + usize::from(text.get(i) == Some(&b'-'));
    let digits = |from: usize| text[from..].iter().take_while(|b| b.is_ascii_digit()).count();
    let whole = digits(i);
    // `0` alone or a digit 1-9 first: `01` is not JSON.
    if whole == 0 || (whole > 1 && text[i] == b'0') {
        return None;
    }
    i += whole;
    if text.get(i) == Some(&b'.') {
        let fraction = digits(i + 1);
        if fraction == 0 {
            return None;
        }
        i += 1 + fraction;
    }
    if matches!(text.get(i), Some(b'e' | b'E')) || i - start > PLAIN_DIGITS {
        return None;
    }
    Some(i)
}

/// A JSON value seen through, nothing kept.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Checked)
    }
}

impl<'de> Visitor<'de> for Checked {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }
    // Called after the string's escapes were decoded: a lone surrogate has failed by now.
    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Checked, A::Error> {
        while items.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<Checked, A::Error> {
        while entries.next_entry::<Checked, Checked>()?.is_some() {}
        Ok(Checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Texts an entity's answer may hold, plain and not.
    const SAMPLES: [&str; 5] = [
        r#"{"id":"8a1b-ff","userName":"ana.lima@example.com","name":{"givenName":"Ana","familyName":"Lima"},"emails":[{"value":"ana.lima@example.com","primary":true}],"active":true,"verified":false,"origin":"uaa","zoneId":"uaa","meta":{"version":12,"created":"2026-01-01T00:00:00.000Z","lastModified":"2026-01-02T00:00:00.000Z"},"groups":[],"schemas":["urn:scim:schemas:core:1.0"],"score":-0.25,"n":0,"big":12345678901234567890}"#,
        "  [1, -2, 3.5, true, false, null, \"a\\\"b\\\\c\\/d\\n\", {\"k\": [[], {}]}]\n",
        r#"{"escaped":"caf\u00e9 \ud83d\ude00","exp":1e5,"neg":-1E-2}"#,
        r#"{"a":{"b":{"c":{"d":[{"e":"f"}]}}},"é":"ü"}"#,
        "\"just a string\"",
    ];

    /// Deterministic mutations of `text`: bytes dropped, doubled, replaced by JSON's own punctuation, cut.
    fn mutations(text: &str, seed: u64) -> Vec<String> {
        const PIECES: [&str; 20] = [
            "{", "}", "[", "]", ",", ":", "\"", "\\", "-", "0", "1", ".", "e", " ", "\u{1}", "\\u", "é", "tru", "01",
            "1e400",
        ];
        let mut state = seed | 1;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let chars: Vec<char> = text.chars().collect();
        (0..3000)
            .map(|_| {
                let mut out = chars.clone();
                for _ in 0..1 + next(3) {
                    let at = next(out.len() + 1);
                    match next(4) {
                        0 if at < out.len() => {
                            out.remove(at);
                        }
                        1 => out.splice(at..at, PIECES[next(PIECES.len())].chars()).for_each(drop),
                        2 if at < out.len() => out.insert(at, out[at]),
                        _ => out.truncate(at.max(1)),
                    }
                }
                out.into_iter().collect()
            })
            .collect()
    }

    #[test]
    fn the_quick_scan_accepts_only_what_a_value_parse_accepts() {
        let mut plain = 0;
        for (n, sample) in SAMPLES.iter().enumerate() {
            for text in std::iter::once(sample.to_string()).chain(mutations(sample, 0x9e37_79b9 + n as u64)) {
                let parsed = serde_json::from_str::<serde_json::Value>(&text);
                if plainly_valid(text.as_bytes()) {
                    plain += 1;
                    assert!(parsed.is_ok(), "the scan accepted what a parse refuses: {text:?}");
                }
                // Whatever path it takes, the check's verdict and message are the parse's.
                match (check_str(&text), &parsed) {
                    (Ok(()), Ok(_)) => {}
                    (Err(ours), Err(theirs)) => assert_eq!(ours.to_string(), theirs.to_string(), "{text:?}"),
                    (ours, _) => panic!("{text:?}: check {ours:?}, parse {parsed:?}"),
                }
            }
        }
        assert!(
            plain > 1000,
            "the mutations left the scan too little to accept ({plain})"
        );
    }

    #[test]
    fn eight_bytes_at_a_time_the_first_special_byte_is_found_exactly() {
        for special_byte in [b'"', b'\\', 0x00, 0x01, 0x1f] {
            for at in 0..8 {
                // Ordinary bytes around it, UTF-8 continuation bytes and a `!` (0x21) among them; and a second
                // special byte above, which must not move the first.
                let mut word = *b"a\xc3\xa9! ~\x7fz";
                word[at] = special_byte;
                if at < 7 {
                    word[7] = b'"';
                }
                let found = special(u64::from_le_bytes(word));
                assert_eq!(found.trailing_zeros() / 8, at as u32, "{special_byte:#x} at {at}");
            }
        }
        assert_eq!(special(u64::from_le_bytes(*b"ab\xc3\xa9 ~/\x7f")), 0);
        assert_eq!(special(u64::from_le_bytes([0xff; 8])), 0);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn sixteen_bytes_at_a_time_every_special_byte_is_marked_and_only_those() {
        for special_byte in [b'"', b'\\', 0x00, 0x01, 0x1f] {
            for at in 0..16 {
                // Ordinary bytes around it: UTF-8 sequences, a space, `!` (0x21), DEL and 0xff.
                let mut chunk = *b"a\xc3\xa9! ~\x7fz\xff/0{}[]:";
                chunk[at] = special_byte;
                assert_eq!(special_16(&chunk), 1 << at, "{special_byte:#x} at {at}");
            }
        }
        let mut chunk = [b'x'; 16];
        (chunk[3], chunk[9]) = (b'"', 0x0a);
        assert_eq!(special_16(&chunk), (1 << 3) | (1 << 9));
        assert_eq!(special_16(&[0x20; 16]), 0);
        // Wherever a long string ends, in a 16-byte step or in the text's last bytes, the scan ends it there;
        // and a control character in it, wherever it is, refuses it.
        for at in 1..40 {
            let mut text = vec![b'y'; 41];
            (text[0], text[at]) = (b'"', b'"');
            assert_eq!(string(&text, 0), Some(at + 1), "the end at {at}");
            text[at] = 0x0a;
            text[40] = b'"';
            assert_eq!(string(&text, 0), None, "a control character at {at}");
        }
    }

    #[test]
    fn the_quick_scan_takes_a_plain_entity_and_leaves_the_rest_to_the_parser() {
        assert!(plainly_valid(SAMPLES[0].as_bytes()));
        assert!(plainly_valid(SAMPLES[1].as_bytes()));
        assert!(plainly_valid(SAMPLES[3].as_bytes()));
        assert!(plainly_valid(b"\"x\""));
        // Escapes of code points, paired surrogates included, are the scan's; not a lone surrogate.
        for text in [r#""caf\u00E9 \ud83d\uDE00 \u002B\u0000""#, r#"{"\u00e9":["\u20ac"]}"#] {
            assert!(plainly_valid(text.as_bytes()), "{text}");
        }
        for text in [
            r#""\ud800""#,
            r#""\udc00""#,
            r#""\ud800\u0041""#,
            r#""\ud800\n""#,
            r#""\udbff\udbff""#,
            r#""\u12G4""#,
            r#""\u+123""#,
            r#""\u12""#,
        ] {
            assert!(!plainly_valid(text.as_bytes()), "{text}");
            assert!(check_str(text).is_err(), "{text}");
            assert_eq!(
                check_str(text).map_err(|e| e.to_string()),
                serde_json::from_str::<serde_json::Value>(text)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                "{text}"
            );
        }
        // Exponents, long numbers, deep nesting: the parser's to judge.
        for text in [
            SAMPLES[2],
            "1e5",
            &"9".repeat(301),
            &format!("{}{}", "[".repeat(65), "]".repeat(65)),
        ] {
            assert!(!plainly_valid(text.as_bytes()), "{text}");
            assert!(check_str(text).is_ok(), "{text}");
        }
        for bad in [
            "",
            "01",
            "-",
            "1.",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{1:2}",
            "[1 2]",
            "truex",
            "\"a\u{1}\"",
        ] {
            assert!(!plainly_valid(bad.as_bytes()), "{bad}");
            assert!(check_str(bad).is_err(), "{bad}");
        }
        // Bytes that are not UTF-8 never reach the scan.
        assert!(check(b"\"\xff\"").is_err());
    }

    #[test]
    fn refuses_what_a_value_parse_refuses_and_only_that() {
        for text in [
            r#"{"id":"1","name":{"givenName":"\u00e9\ud83d\ude00\n"},"n":[1,-2,3.5e10,true,null]}"#,
            " [] ",
            "\"x\"",
            "1e308",
        ] {
            assert!(check(text.as_bytes()).is_ok(), "{text}");
            assert!(check_str(text).is_ok(), "{text}");
            assert!(serde_json::from_str::<serde_json::Value>(text).is_ok(), "{text}");
        }
        for text in [
            r#"{"id":"1""#,
            r#"{"id":"1"} trailing"#,
            r#"{"id":"\x"}"#,
            r#"{"id":"\ud800"}"#,
            r#"{"\udc00":1}"#,
            r#"{"n":1e400}"#,
            "{\"id\":\"a\u{1}b\"}",
            &"[".repeat(200),
        ] {
            let ours = check(text.as_bytes()).expect_err(text);
            let values = serde_json::from_str::<serde_json::Value>(text).expect_err(text);
            assert_eq!(ours.to_string(), values.to_string(), "{text}");
            assert_eq!(
                check_str(text).expect_err(text).to_string(),
                values.to_string(),
                "{text}"
            );
        }
    }
}
