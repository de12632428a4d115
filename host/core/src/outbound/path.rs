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
    check_segments(path, || relative.to_string())?;
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
    // The segments were checked above, as the guest wrote them, and `set_path` adds no dot segment or
    // encoding to them: what is left to check is that the result is still on the base's origin and under its
    // path. (A redirect's URL comes from the upstream: `ensure_within` checks its segments too.)
    ensure_on_base(base, &joined)?;
    Ok(joined)
}

/// Refuses dot segments in every disguise servers are known to decode: percent-encoded (also twice),
/// with a `;` parameter (`..;` is `..` to Tomcat), with trailing dots or spaces (`...`, `.. ` to IIS),
/// and encoded separators hidden inside a segment.
/// `shown` names the path in a refusal; it is only built when there is one (a path that passes costs no
/// message: this runs for every request a connector sends).
fn check_segments(path: &str, shown: impl Fn() -> String) -> Result<(), String> {
    for segment in path.split('/') {
        let once = percent_encoding::percent_decode_str(segment)
            .decode_utf8()
            .map_err(|_| format!("path {:?} has a segment that is not valid UTF-8 once decoded", shown()))?;
        if encodes_again(&once) {
            return Err(format!("path {:?} is encoded twice", shown()));
        }
        if once.contains('/') || once.contains('\\') || once.contains('\0') {
            return Err(format!("path {:?} hides a separator in an encoded segment", shown()));
        }
        let bare = once.split(';').next().unwrap_or("");
        if !bare.is_empty() && bare.trim_end_matches([' ', '.']).is_empty() {
            return Err(format!("path {:?} leaves the upstream with a dot segment", shown()));
        }
    }
    Ok(())
}

/// Whether a segment, decoded once, still holds an encoded dot, slash, backslash or NUL (`%2e`, `%2F`, …).
fn encodes_again(once: &str) -> bool {
    once.as_bytes().windows(3).any(|w| {
        w[0] == b'%'
            && matches!(
                [w[1].to_ascii_lowercase(), w[2].to_ascii_lowercase()],
                [b'2', b'e'] | [b'2', b'f'] | [b'5', b'c'] | [b'0', b'0']
            )
    })
}

/// Checks that `url` is on `base`'s origin and under its path, with no dot segment in any disguise: the rule
/// for redirects.
pub fn ensure_within(base: &Url, url: &Url) -> Result<(), String> {
    ensure_on_base(base, url)?;
    check_segments(url.path(), || redact(url))
}

/// Checks that `url` is on `base`'s origin, carries no credentials, and is under `base`'s path.
fn ensure_on_base(base: &Url, url: &Url) -> Result<(), String> {
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
    let under = path
        .strip_prefix(base_path)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    if !under {
        return Err(format!(
            "{} is outside the configured base path {base_path:?}",
            redact(url)
        ));
    }
    Ok(())
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
    fn encoded_twice_in_any_case_is_refused_and_near_misses_pass() {
        for twice in ["%252e", "%252E", "%252f", "%252F", "%255c", "%255C", "%2500", "a%252Fb"] {
            let err = join(&base(), &format!("Users/{twice}")).expect_err(twice);
            assert!(err.contains("encoded twice"), "{twice}: {err}");
        }
        // A percent sign that decodes to something else, or ends the segment, is not a second encoding.
        for fine in ["Users/%2541", "Users/a%25", "Users/%252", "Users/100%25off"] {
            assert!(join(&base(), fine).is_ok(), "{fine} must pass");
        }
    }

    #[test]
    fn whatever_join_accepts_passes_the_redirect_rule_too() {
        // `join` checks the guest's segments once, before `set_path`; the full rule on its result must agree.
        for base in [
            base(),
            Url::parse("http://127.0.0.1:8080/").unwrap(),
            Url::parse("https://h/a%20b/c/").unwrap(),
        ] {
            for fine in [
                "",
                "Users",
                "Users/abc?filter=userName%20eq%20%22x%22",
                "Users/%2541",
                "Users/100%25off",
                "Users/a;b",
                "Users/.hidden",
                "Users/x.",
                "Users/\u{e9}t\u{e9}",
                "Users/\"quoted\"/<x>/{y}/`z`",
                "Users/a%20b/c%3Fd",
                "Groups/1/members?x=..",
            ] {
                let joined = join(&base, fine).unwrap_or_else(|e| panic!("{fine} on {base}: {e}"));
                assert!(ensure_within(&base, &joined).is_ok(), "{fine} on {base}: {joined}");
            }
        }
    }

    #[test]
    fn a_refusal_names_the_path_it_refused() {
        let err = join(&base(), "Users/%252e").expect_err("refused");
        assert!(err.contains("Users/%252e"), "{err}");
        let err = ensure_within(
            &base(),
            &Url::parse("https://api.example.com/scim/v2/..%2fadmin?token=x").unwrap(),
        )
        .expect_err("refused");
        assert!(
            err.contains("https://api.example.com/scim/v2/..%2fadmin") && !err.contains("token"),
            "{err}"
        );
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
