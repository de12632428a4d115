//! Targets paused by their own `429 Too Many Requests` with `Retry-After`: while a target is paused, no
//! request of any connector call goes to it. A short pause is waited out; a longer one is answered at once
//! with the same 429, so that the caller's retry logic waits outside the sandboxed call (and a job's stop
//! cuts the wait short). On a shared store the pause is recorded for every replica too.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::HttpResponse;

/// The longest pause a `Retry-After` can ask for; beyond it a target is paused this long.
pub const MAX_PAUSE: Duration = Duration::from_secs(600);

/// A pause at most this long is waited out inside the call instead of answered with a 429.
pub const WAIT_IN_CALL: Duration = Duration::from_secs(2);

/// Paused targets (by system id) and when their pause ends.
#[derive(Default)]
pub struct Pauses(Mutex<HashMap<String, Instant>>);

impl Pauses {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pauses `target` for `pause` from now, unless it is paused longer already.
    pub fn pause(&self, target: &str, pause: Duration) {
        let until = Instant::now() + pause.min(MAX_PAUSE);
        let mut map = self.map();
        let entry = map.entry(target.to_string()).or_insert(until);
        *entry = (*entry).max(until);
    }

    /// How long `target`'s pause lasts still, if it is paused.
    pub fn remaining(&self, target: &str) -> Option<Duration> {
        let mut map = self.map();
        let until = *map.get(target)?;
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            map.remove(target);
            return None;
        }
        Some(left)
    }
}

/// The pause a 429's `Retry-After` asks for: delay-seconds or an HTTP date (RFC 9110 §10.2.3); `None`
/// without a usable one.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    let pause = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    };
    (!pause.is_zero()).then(|| pause.min(MAX_PAUSE))
}

/// The answer to a request for a target that is paused for `left` still: the 429 the target gave, with the
/// time left as `Retry-After` and a SCIM error body that says why.
pub fn paused_response(left: Duration) -> HttpResponse {
    let seconds = left.as_secs_f64().ceil().max(1.0) as u64;
    let body = serde_json::json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "status": "429",
        "detail": format!("the system asked Provisio (429 Retry-After) to send nothing for {seconds} s more; not sent"),
    });
    HttpResponse {
        status: 429,
        headers: vec![
            ("retry-after".into(), seconds.to_string()),
            ("content-type".into(), "application/scim+json".into()),
        ],
        body: body.to_string().into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_a_date_and_caps_them() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert("retry-after", "7".parse().expect("value"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert("retry-after", "999999".parse().expect("value"));
        assert_eq!(retry_after(&headers), Some(MAX_PAUSE));
        let date = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
        headers.insert("retry-after", date.parse().expect("value"));
        let pause = retry_after(&headers).expect("a date");
        assert!(
            pause > Duration::from_secs(27) && pause <= Duration::from_secs(30),
            "{pause:?}"
        );
        headers.insert("retry-after", "soon".parse().expect("value"));
        assert_eq!(retry_after(&headers), None);
        headers.insert("retry-after", "0".parse().expect("value"));
        assert_eq!(retry_after(&headers), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_lasts_its_longest_and_ends() {
        let pauses = Pauses::default();
        assert_eq!(pauses.remaining("uaa"), None);
        pauses.pause("uaa", Duration::from_secs(5));
        pauses.pause("uaa", Duration::from_secs(1));
        assert_eq!(pauses.remaining("uaa"), Some(Duration::from_secs(5)));
        assert_eq!(pauses.remaining("ias"), None);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(pauses.remaining("uaa"), None);
        let answer = paused_response(Duration::from_millis(2300));
        assert_eq!(answer.status, 429);
        assert!(answer.headers.contains(&("retry-after".into(), "3".into())));
    }
}
