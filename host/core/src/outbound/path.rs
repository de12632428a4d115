//! Joining a guest's relative path to a configured upstream, fail-closed.
//!
//! The guest never names a host: it names an upstream (`api`, `token`) and a path relative to that
//! upstream's base URL. Whatever the guest writes, the joined URL must keep the base's scheme, host and
//! port, and stay under the base's path. Dot segments are refused outright, also when percent-encoded,
//! because servers decode them even where URL parsers do not.

use url::Url;

/// Joins `relative` (a path with an optional query) to `base`, or says why it may not be sent.
pub fn join(base: &Url, relative: &str) -> Result<Url, String> {
    if relative.chars().any(|c| c.is_control() || c == '\\' || c == ' ') {
        return Err(format!(
            "path {relative:?} contains a control character, a space or a backslash"
        ));
    }
    if relative.starts_with("//") {
        return Err(format!("path {relative:?} names another host"));
    }
    let relative = relative.strip_prefix('/').unwrap_or(relative);
    let (path, query) = match relative.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (relative, None),
    };
    if relative.contains('#') {
        return Err(format!("path {relative:?} contains a fragment"));
    }
    // A scheme (`http:`, `file:`) before the first slash makes the path absolute.
    if path.split('/').next().is_some_and(|first| first.contains(':')) {
        return Err(format!(
            "path {relative:?} is an absolute URL; connectors send relative paths only"
        ));
    }
    check_segments(path, relative)?;
    let mut joined = base.clone();
    {
        let base_path = base.path().trim_end_matches('/');
        let full = if path.is_empty() {
            format!("{base_path}/")
        } else {
            format!("{base_path}/{path}")
        };
        joined.set_path(&full);
    }
    joined.set_query(query);
    ensure_within(base, &joined)?;
    Ok(joined)
}

/// Refuses dot segments in every disguise servers are known to decode: percent-encoded (also twice),
/// with a `;` parameter (`..;` is `..` to Tomcat), with trailing dots or spaces (`...`, `.. ` to IIS),
/// and encoded separators hidden inside a segment.
fn check_segments(path: &str, shown: &str) -> Result<(), String> {
    for segment in path.split('/') {
        let once = percent_encoding::percent_decode_str(segment)
            .decode_utf8()
            .map_err(|_| format!("path {shown:?} has a segment that is not valid UTF-8 once decoded"))?;
        let lower = once.to_ascii_lowercase();
        if ["%2e", "%2f", "%5c", "%00"].iter().any(|e| lower.contains(e)) {
            return Err(format!("path {shown:?} is encoded twice"));
        }
        if once.contains('/') || once.contains('\\') || once.contains('\0') {
            return Err(format!("path {shown:?} hides a separator in an encoded segment"));
        }
        let bare = once.split(';').next().unwrap_or("");
        if !bare.is_empty() && bare.trim_end_matches([' ', '.']).is_empty() {
            return Err(format!("path {shown:?} leaves the upstream with a dot segment"));
        }
    }
    Ok(())
}

/// Checks that `url` is on `base`'s origin and under its path: the rule for joined paths and redirects.
pub fn ensure_within(base: &Url, url: &Url) -> Result<(), String> {
    if url.scheme() != base.scheme()
        || url.host_str() != base.host_str()
        || url.port_or_known_default() != base.port_or_known_default()
    {
        return Err(format!(
            "{} is outside the configured upstream {}",
            redact(url),
            origin(base)
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("URLs with credentials in them are refused".to_string());
    }
    let base_path = base.path().trim_end_matches('/');
    let path = url.path();
    if !(path == base_path || path.starts_with(&format!("{base_path}/"))) {
        return Err(format!(
            "{} is outside the configured base path {base_path:?}",
            redact(url)
        ));
    }
    check_segments(path, &redact(url))
}

fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// A URL for messages: origin and path, never a query (it may carry identifiers) or credentials.
fn redact(url: &Url) -> String {
    format!("{}{}", origin(url), url.path())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("https://api.example.com/scim/v2").expect("valid")
    }

    #[test]
    fn joins_relative_paths_and_queries() {
        let u = join(&base(), "Users?startIndex=1&count=2").expect("allowed");
        assert_eq!(u.as_str(), "https://api.example.com/scim/v2/Users?startIndex=1&count=2");
        let u = join(&base(), "/Users/abc").expect("leading slash is relative to the base");
        assert_eq!(u.as_str(), "https://api.example.com/scim/v2/Users/abc");
        let u = join(&base(), "").expect("the base itself");
        assert_eq!(u.path(), "/scim/v2/");
    }

    #[test]
    fn refuses_escapes() {
        for bad in [
            "../admin",
            "Users/../../admin",
            "%2e%2e/admin",
            "%2E%2e/admin",
            "Users/%2e%2e%2fadmin",
            "Users%2f..%2fadmin",
            "https://evil.example/steal",
            "//evil.example/steal",
            "file:///etc/passwd",
            "Users\\..\\admin",
            "Users/%5c..",
            "./Users",
            "Users#frag",
            "a\nb",
            "Users/..;/admin",
            "Users/.. /admin",
            "Users/.../admin",
            "%252e%252e/admin",
            "Users/%c0%ae%c0%ae/admin",
        ] {
            assert!(join(&base(), bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn redirects_must_stay_on_the_upstream() {
        let b = base();
        assert!(ensure_within(&b, &Url::parse("https://api.example.com/scim/v2/Users/1").unwrap()).is_ok());
        for bad in [
            "https://evil.example/scim/v2/Users",
            "http://api.example.com/scim/v2/Users",
            "https://api.example.com:8443/scim/v2/Users",
            "https://api.example.com/other",
            "https://api.example.com/scim/v2x",
            "https://user:pw@api.example.com/scim/v2/Users",
            "https://api.example.com/scim/v2/..%2fadmin",
            "https://api.example.com/scim/v2/Users/..;/x",
        ] {
            assert!(
                ensure_within(&b, &Url::parse(bad).unwrap()).is_err(),
                "{bad} must be refused"
            );
        }
    }
}
