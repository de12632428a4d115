//! HTTP statuses turned into the [`Error`] variant the host acts on.
//!
//! | status | error |
//! |---|---|
//! | 401, 403 | [`Error::Unauthorized`] |
//! | 404 | [`Error::NotFound`] |
//! | 409, 412, 422 (or the set given to [`error_for_with`]) | [`Error::Conflict`] |
//! | 413 | [`Error::TooLarge`] |
//! | 429 | [`Error::Throttled`], with `Retry-After` (seconds or an HTTP date) in milliseconds |
//! | 5xx | [`Error::Transient`] |
//! | other 4xx (and anything else that is not 2xx) | [`Error::Rejected`] with the status |
//!
//! Each message carries the status and the system's own explanation, taken from a SCIM error body
//! (`detail`), a UAA/OAuth error body (`error_description`), a `message` field, or the raw text, shortened.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::Error;
use crate::http::Response;

/// The statuses [`error_for`] maps to [`Error::Conflict`].
pub const CONFLICT_STATUSES: &[u16] = &[409, 412, 422];

/// The longest detail kept from a remote answer, in characters.
pub const DETAIL_MAX: usize = 300;

/// The error a non-2xx answer means, with the default conflict statuses (409, 412, 422).
pub fn error_for(resp: &Response) -> Error {
    error_for_with(resp, CONFLICT_STATUSES)
}

/// The error a non-2xx answer means, with `conflicts` as the statuses that mean [`Error::Conflict`] (for
/// systems that answer 422 for plain validation errors, say, pass `&[409, 412]`).
pub fn error_for_with(resp: &Response, conflicts: &[u16]) -> Error {
    let status = resp.status;
    let detail = detail(&resp.body);
    let said = if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    };
    match status {
        401 | 403 => Error::unauthorized(format!("The system refused the credentials (HTTP {status}){said}")),
        404 => Error::not_found(format!("Not found (HTTP 404){said}")),
        s if conflicts.contains(&s) => Error::conflict(format!("Conflict (HTTP {status}){said}")),
        413 => Error::too_large(format!("The system refused the payload for its size (HTTP 413){said}")),
        429 => Error::throttled(
            resp.header("retry-after")
                .and_then(|v| retry_after_ms(v, SystemTime::now())),
            format!("The system asked to slow down (HTTP 429){said}"),
        ),
        500..=599 => Error::transient(format!("The system failed (HTTP {status}){said}")),
        _ if detail.is_empty() => Error::rejected(status, format!("HTTP {status}")),
        _ => Error::rejected(status, detail),
    }
}

/// The system's explanation in an error body: a SCIM `detail`, an OAuth/UAA `error_description`, a
/// `message`, an `error` string, or else the raw text; shortened to [`DETAIL_MAX`] characters, on one line.
pub fn detail(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let from_json = serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| {
        ["detail", "error_description", "message", "error"]
            .iter()
            .find_map(|k| v.get(k).and_then(|d| d.as_str()).map(str::to_string))
    });
    let raw = from_json.unwrap_or_else(|| text.into_owned());
    shorten(&raw.split_whitespace().collect::<Vec<_>>().join(" "), DETAIL_MAX)
}

/// `text` cut to at most `max` characters, with `…` when cut.
pub fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((i, _)) => format!("{}…", &text[..i]),
    }
}

/// A `Retry-After` value in milliseconds from `now`: delay-seconds (`120`) or an HTTP date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`; a date in the past gives 0). `None` when it is neither.
pub fn retry_after_ms(value: &str, now: SystemTime) -> Option<u64> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(secs.saturating_mul(1000));
    }
    let at = parse_http_date(value)?;
    let now_ms = now.duration_since(UNIX_EPOCH).ok()?.as_millis();
    Some(u64::try_from((u128::from(at) * 1000).saturating_sub(now_ms)).unwrap_or(u64::MAX))
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) into seconds since the Unix epoch.
fn parse_http_date(s: &str) -> Option<u64> {
    let rest = s.split_once(", ")?.1;
    let parts: Vec<&str> = rest.split_whitespace().collect();
    let [day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let day: u64 = day.parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)? as u64
        + 1;
    let year: u64 = year.parse().ok()?;
    let hms: Vec<u64> = time.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let [h, m, sec] = hms.as_slice() else {
        return None;
    };
    if !(1..=31).contains(&day) || year < 1970 || *h > 23 || *m > 59 || *sec > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (year ≥ 1970; Howard Hinnant's algorithm).
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn resp(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
        Response {
            status,
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn maps_statuses() {
        assert!(matches!(error_for(&resp(401, &[], "")), Error::Unauthorized(_)));
        assert!(matches!(error_for(&resp(403, &[], "")), Error::Unauthorized(_)));
        assert!(matches!(error_for(&resp(404, &[], "")), Error::NotFound(_)));
        for s in [409, 412, 422] {
            assert!(matches!(error_for(&resp(s, &[], "")), Error::Conflict(_)));
        }
        assert!(matches!(error_for_with(&resp(422, &[], ""), &[409]), Error::Rejected(r) if r.status == 422));
        assert!(matches!(error_for(&resp(503, &[], "")), Error::Transient(_)));
        let e = error_for(&resp(429, &[("retry-after", "7")], ""));
        assert!(matches!(e, Error::Throttled(t) if t.retry_after_ms == Some(7000)));
        let e = error_for(&resp(429, &[], ""));
        assert!(matches!(e, Error::Throttled(t) if t.retry_after_ms.is_none()));
        let e = error_for(&resp(
            400,
            &[],
            r#"{"schemas":[],"status":"400","scimType":"invalidFilter","detail":"bad filter"}"#,
        ));
        assert_eq!(e, Error::rejected(400, "bad filter"));
    }

    #[test]
    fn extracts_details() {
        assert_eq!(
            detail(br#"{"error":"unauthorized","error_description":"Bad credentials"}"#),
            "Bad credentials"
        );
        assert_eq!(detail(b"  plain\n text  "), "plain text");
        let long = "x".repeat(1000);
        assert_eq!(detail(long.as_bytes()).chars().count(), DETAIL_MAX + 1);
        assert_eq!(shorten("héllo", 2), "hé…");
    }

    #[test]
    fn parses_retry_after() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(retry_after_ms("120", now), Some(120_000));
        assert_eq!(retry_after_ms("Sun, 06 Nov 1994 08:50:37 GMT", now), Some(60_000));
        assert_eq!(retry_after_ms("Sun, 06 Nov 1994 08:40:37 GMT", now), Some(0));
        assert_eq!(retry_after_ms("soon", now), None);
        assert_eq!(retry_after_ms("Sun, 06 Foo 1994 08:50:37 GMT", now), None);
    }
}
