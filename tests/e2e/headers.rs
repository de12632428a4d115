//! The host and the SDK each keep the list of request headers the host owns (credentials, routing,
//! framing): the host drops a guest's value for them, and the SDK's test harness does the same in record
//! mode so that a recorded test sends what the host would. The two lists must agree.

/// Every header of the IANA registry a connector is likely to set, in several spellings, plus the
/// `proxy-` family.
const NAMES: &[&str] = &[
    "Authorization",
    "authorization",
    "AUTHORIZATION",
    "Host",
    "Content-Length",
    "Transfer-Encoding",
    "Connection",
    "TE",
    "te",
    "Upgrade",
    "Keep-Alive",
    "Trailer",
    "Expect",
    "Cookie",
    "Proxy-Authorization",
    "proxy-connection",
    "Proxy-Anything",
    "proxy",
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Content-Type",
    "Content-Encoding",
    "If-Match",
    "If-None-Match",
    "User-Agent",
    "X-Csrf-Token",
    "X-Request-Id",
    "X-Forwarded-For",
    "Forwarded",
    "Origin",
    "Referer",
    "Set-Cookie",
    "Cookie2",
    "Authorization2",
    "Hosts",
    "Range",
    "Prefer",
    "DataServiceVersion",
    "apikey",
    "x-api-key",
    "Date",
    "Via",
    "Warning",
    "",
];

#[test]
fn the_host_and_the_sdk_agree_on_host_owned_headers() {
    for name in NAMES {
        assert_eq!(
            provisio::outbound::is_host_owned_header(name),
            provisio_sdk::http::is_host_owned_header(name),
            "{name:?}"
        );
    }
    assert!(provisio::outbound::is_host_owned_header("Proxy-Authorization"));
    assert!(!provisio::outbound::is_host_owned_header("If-Match"));
}

/// The framing headers the host keeps from a connector's answers are the ones a recording leaves out.
#[test]
fn the_host_and_the_sdk_agree_on_framing_headers() {
    for name in NAMES
        .iter()
        .chain(&["Keep-Alive", "TRANSFER-ENCODING", "content-type", "etag"])
    {
        assert_eq!(
            provisio::outbound::is_framing_header(name),
            provisio_sdk::http::is_framing_header(name),
            "{name:?}"
        );
    }
    assert!(provisio::outbound::is_framing_header("Content-Length"));
    assert!(!provisio::outbound::is_framing_header("Content-Type"));
}
