//! Java `DateTimeFormatter` patterns (as SAP documents them) and the
//! manipulateDate function.

use std::fmt::Write;

use chrono::format::{Item, Parsed, StrftimeItems};
use chrono::{Datelike, Duration, Months, NaiveDateTime, NaiveTime, TimeZone, Utc};
use serde_json::Value;

use super::{FnError, Params, scalar_string};
use crate::env::Env;
use crate::error::ValidationError;

/// SuccessFactors' epoch-milliseconds format name.
const MILLIS: &str = "Date(milliseconds)";

/// Translates a Java date pattern (`yyyy-MM-dd'T'HH:mm:ss.SSS`) to chrono's
/// strftime syntax.
pub(crate) fn java_to_strftime(pattern: &str) -> Result<String, String> {
    let mut out = String::new();
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            // Quoted literal; '' is a single quote.
            i += 1;
            if chars.get(i) == Some(&'\'') {
                out.push('\'');
                i += 1;
                continue;
            }
            loop {
                match chars.get(i) {
                    None => return Err("unterminated quote in date pattern".into()),
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        out.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some('%') => {
                        out.push_str("%%");
                        i += 1;
                    }
                    Some(ch) => {
                        out.push(*ch);
                        i += 1;
                    }
                }
            }
            continue;
        }
        if !c.is_ascii_alphabetic() {
            if c == '%' {
                out.push_str("%%");
            } else {
                out.push(c);
            }
            i += 1;
            continue;
        }
        let mut n = 1;
        while chars.get(i + n) == Some(&c) {
            n += 1;
        }
        i += n;
        let spec = match (c, n) {
            ('y' | 'u', 2) => "%y",
            ('y' | 'u', _) => "%Y",
            ('M' | 'L', 1) => "%-m",
            ('M' | 'L', 2) => "%m",
            ('M' | 'L', 3) => "%b",
            ('M' | 'L', _) => "%B",
            ('d', 1) => "%-d",
            ('d', _) => "%d",
            ('D', _) => "%j",
            ('H' | 'k', 1) => "%-H",
            ('H' | 'k', _) => "%H",
            ('h' | 'K', 1) => "%-I",
            ('h' | 'K', _) => "%I",
            ('m', 1) => "%-M",
            ('m', _) => "%M",
            ('s', 1) => "%-S",
            ('s', _) => "%S",
            ('S', 1..=3) => "%3f",
            ('S', 4..=6) => "%6f",
            ('S', _) => "%9f",
            ('E', 1..=3) => "%a",
            ('E', _) => "%A",
            ('a', _) => "%p",
            ('z', _) => "%Z",
            ('Z' | 'x', _) => "%z",
            ('X', _) => "%:z",
            (other, _) => return Err(format!("unsupported date pattern letter '{other}'")),
        };
        out.push_str(spec);
    }
    Ok(out)
}

fn items(pattern: &str) -> Result<Vec<Item<'static>>, String> {
    let fmt = java_to_strftime(pattern)?;
    let items: Vec<Item<'static>> = StrftimeItems::new(&fmt).parse_to_owned().map_err(|e| e.to_string())?;
    Ok(items)
}

/// Formats a UTC date-time with a Java pattern.
pub(crate) fn format_java(dt: &NaiveDateTime, pattern: &str) -> Result<String, String> {
    if pattern == MILLIS {
        return Ok(format!("/Date({})/", dt.and_utc().timestamp_millis()));
    }
    let items = items(pattern)?;
    let mut s = String::new();
    write!(s, "{}", Utc.from_utc_datetime(dt).format_with_items(items.iter()))
        .map_err(|_| format!("cannot format a date with \"{pattern}\""))?;
    Ok(s)
}

/// Parses text with a Java pattern; a pattern without time means midnight.
pub(crate) fn parse_java(text: &str, pattern: &str) -> Result<NaiveDateTime, String> {
    if pattern == MILLIS {
        return parse_millis(text);
    }
    let items = items(pattern)?;
    let mut parsed = Parsed::new();
    chrono::format::parse(&mut parsed, text, items.iter())
        .map_err(|e| format!("\"{text}\" does not match \"{pattern}\": {e}"))?;
    let date = parsed
        .to_naive_date()
        .map_err(|e| format!("\"{text}\" is not a full date for \"{pattern}\": {e}"))?;
    let time = parsed.to_naive_time().unwrap_or(NaiveTime::MIN);
    Ok(date.and_time(time))
}

/// `/Date(1519809649123+0000)/`, `Date(1519809649123-0240)` or plain
/// milliseconds; the offset is ignored as SAP documents.
fn parse_millis(text: &str) -> Result<NaiveDateTime, String> {
    let t = text.trim().trim_matches('/');
    let t = t.strip_prefix("Date(").and_then(|t| t.strip_suffix(')')).unwrap_or(t);
    let digits_end = t
        .char_indices()
        .find(|(i, c)| !(c.is_ascii_digit() || (*i == 0 && *c == '-')))
        .map_or(t.len(), |(i, _)| i);
    let ms: i64 = t[..digits_end]
        .parse()
        .map_err(|_| format!("\"{text}\" is not a Date(milliseconds) value"))?;
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.naive_utc())
        .ok_or_else(|| format!("\"{text}\" is out of range"))
}

/// manipulateDate.
#[derive(Debug)]
pub(crate) struct DateFn {
    source: Option<String>,
    target: Option<String>,
    years: i64,
    months: i64,
    seconds: i64,
}

impl DateFn {
    pub(crate) fn parse(p: &mut Params) -> Result<DateFn, ValidationError> {
        let source = p.string("sourceDateFormat")?;
        let target = p.string("targetDateFormat")?;
        for (key, f) in [("sourceDateFormat", &source), ("targetDateFormat", &target)] {
            if let Some(f) = f
                && f != MILLIS
            {
                java_to_strftime(f).map_err(|e| p.loc(key).err(e))?;
            }
        }
        let years = p.int("years")?.unwrap_or(0);
        let months = p.int("months")?.unwrap_or(0);
        let days = p.int("days")?.unwrap_or(0);
        let hours = p.int("hours")?.unwrap_or(0);
        let minutes = p.int("minutes")?.unwrap_or(0);
        let secs = p.int("seconds")?.unwrap_or(0);
        let seconds = days
            .checked_mul(86_400)
            .and_then(|d| hours.checked_mul(3_600).and_then(|h| d.checked_add(h)))
            .and_then(|s| minutes.checked_mul(60).and_then(|m| s.checked_add(m)))
            .and_then(|s| s.checked_add(secs))
            .ok_or_else(|| p.loc("days").err("offset out of range"))?;
        Ok(DateFn {
            source,
            target,
            years,
            months,
            seconds,
        })
    }

    /// Parses with `sourceDateFormat` (default: the `currentDate` format),
    /// shifts, and formats with `targetDateFormat` (default: the source format).
    pub(crate) fn apply(&self, v: Value, env: &Env) -> Result<Value, FnError> {
        let source = self.source.as_deref().unwrap_or_else(|| env.date_format());
        let target = self.target.as_deref().unwrap_or(source);
        let text = scalar_string(&v).ok_or_else(|| FnError("manipulateDate: expected a date".into()))?;
        let err = |e: String| FnError(format!("manipulateDate: {e}"));
        let mut dt = parse_java(&text, source).map_err(err)?;
        let total_months = self.years.saturating_mul(12).saturating_add(self.months);
        let shifted = if total_months >= 0 {
            dt.checked_add_months(Months::new(u32::try_from(total_months).unwrap_or(u32::MAX)))
        } else {
            dt.checked_sub_months(Months::new(u32::try_from(-total_months).unwrap_or(u32::MAX)))
        };
        dt = shifted
            .and_then(|d| d.checked_add_signed(Duration::try_seconds(self.seconds)?))
            .filter(|d| (0..=9999).contains(&d.year()))
            .ok_or_else(|| FnError("manipulateDate: date out of range".into()))?;
        format_java(&dt, target).map(Value::String).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_patterns_translate() {
        assert_eq!(
            java_to_strftime("yyyy-MM-dd HH:mm:ss.SSS").as_deref(),
            Ok("%Y-%m-%d %H:%M:%S.%3f")
        );
        assert_eq!(
            java_to_strftime("yyyy-MM-dd'T'HH:mm:ss'Z'").as_deref(),
            Ok("%Y-%m-%dT%H:%M:%SZ")
        );
        assert_eq!(java_to_strftime("d MMM uuuu").as_deref(), Ok("%-d %b %Y"));
        assert_eq!(
            java_to_strftime("HH:mm dd/MM/yyyy '100%' ''").as_deref(),
            Ok("%H:%M %d/%m/%Y 100%% '")
        );
        assert!(java_to_strftime("yyyy-ww").is_err());
        assert!(java_to_strftime("'open").is_err());
    }

    #[test]
    fn round_trip() {
        let dt = parse_java("28 Feb 2018", "d MMM uuuu").expect("parse");
        assert_eq!(format_java(&dt, "yyyy-MM-dd HH:mm").as_deref(), Ok("2018-02-28 00:00"));
        let dt = parse_java("Date(1519809649123-0240)", MILLIS).expect("millis");
        assert_eq!(format_java(&dt, MILLIS).as_deref(), Ok("/Date(1519809649123)/"));
    }
}
