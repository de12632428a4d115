//! SCIM `dateTime` values (RFC 7643 §2.3.5, xsd:dateTime as RFC 3339 writes it), read for comparison only.

/// An instant: seconds since the Unix epoch and nanoseconds, ordered.
pub(crate) type Instant = (i64, u32);

/// Parses `YYYY-MM-DD[THH:MM[:SS[.fff…]]][Z|±HH[:]MM]` (no offset = UTC) into an instant; `None` for
/// anything else.
pub(crate) fn parse_time(s: &str) -> Option<Instant> {
    let b = s.trim().as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let mut secs = days_from_civil(y, mo, d) * 86_400;
    let mut nanos: u32 = 0;
    let mut i = 10;
    if i < b.len() && matches!(b[i], b'T' | b't' | b' ') {
        let (h, mi) = (num(i + 1, 2)?, num(i + 4, 2)?);
        if b.get(i + 3) != Some(&b':') || h > 23 || mi > 59 {
            return None;
        }
        secs += h * 3600 + mi * 60;
        i += 6;
        if b.get(i) == Some(&b':') {
            let sec = num(i + 1, 2)?;
            if sec > 60 {
                return None;
            }
            secs += sec;
            i += 3;
            if b.get(i) == Some(&b'.') {
                i += 1;
                let start = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                let frac = b.get(start..i)?;
                if frac.is_empty() {
                    return None;
                }
                for k in 0..9 {
                    nanos = nanos * 10 + frac.get(k).map_or(0, |c| u32::from(c - b'0'));
                }
            }
        }
    }
    match b.get(i) {
        None => Some((secs, nanos)),
        Some(b'Z' | b'z') if i + 1 == b.len() => Some((secs, nanos)),
        Some(&sign @ (b'+' | b'-')) => {
            let oh = num(i + 1, 2)?;
            let (om, end) = if b.get(i + 3) == Some(&b':') {
                (num(i + 4, 2)?, i + 6)
            } else {
                (num(i + 3, 2)?, i + 5)
            };
            if end != b.len() {
                return None;
            }
            let off = (oh * 60 + om) * 60;
            Some((if sign == b'+' { secs - off } else { secs + off }, nanos))
        }
        _ => None,
    }
}

/// Days since 1970-01-01 of a civil date (H. Hinnant's days_from_civil).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some((0, 0)));
        assert_eq!(
            parse_time("2024-01-01T01:00:00+01:00"),
            parse_time("2024-01-01T00:00:00Z")
        );
        assert_eq!(parse_time("2024-01-01"), parse_time("2024-01-01T00:00:00.000Z"));
        assert_eq!(parse_time("2024-02-14T04:42:34.5Z"), Some((1_707_885_754, 500_000_000)));
        assert!(parse_time("2024-02-14T04:42:34.000000001Z") > parse_time("2024-02-14T04:42:34Z"));
        for bad in [
            "not a date",
            "2024-13-01",
            "2024-01-01T25:00:00Z",
            "2024-01-01T00:00:00+01:00x",
            "é",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }
}
