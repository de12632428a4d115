//! Checking a JSON text as strictly as parsing it into a `serde_json::Value` would — escapes decoded (a lone
//! surrogate refused), numbers within `f64`'s range, the same nesting limit — without building the value.
//! For texts handed on as they are (a connector's entities, which the host parses later or never again).

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// `Ok` when `text` is one JSON value that `serde_json::from_slice::<Value>` accepts, else the error that
/// parse would give.
pub fn check(text: &[u8]) -> Result<(), serde_json::Error> {
    serde_json::from_slice::<Checked>(text).map(|_| ())
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

    #[test]
    fn refuses_what_a_value_parse_refuses_and_only_that() {
        for text in [
            r#"{"id":"1","name":{"givenName":"\u00e9\ud83d\ude00\n"},"n":[1,-2,3.5e10,true,null]}"#,
            " [] ",
            "\"x\"",
            "1e308",
        ] {
            assert!(check(text.as_bytes()).is_ok(), "{text}");
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
        }
    }
}
