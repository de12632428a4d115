//! A connector that misbehaves on purpose, to prove the sandbox holds. Built from the raw contract (no
//! SDK), so it can do what a hostile third party would. The `mode` property picks the misdeed that
//! `test-connection` commits, the `read-mode` property how `read` misbehaves; every other function
//! behaves, so the host can load it.
//!
//! It is also the test suite's component built from the frozen 0.1.0 WIT: the host, which serves 0.2.0
//! to the SDK and the bundled connectors, must keep running it unchanged.
//!
//! The crate is empty on any target but wasm: raw wit-bindgen exports symbols named after the WIT
//! interface (`cabi_post_provisio:connector/connector@0.1.0#create`), which native linkers refuse, and a
//! plain `cargo build` at the workspace root builds every member for the host.
#![cfg(target_arch = "wasm32")]

include!("../../unsupported.rs");

wit_bindgen::generate!({
    path: "../../../wit/since_v0.1.0",
    world: "plugin",
});

use exports::provisio::connector::connector::Guest;
use provisio::connector::host::{self, HttpRequest};
use provisio::connector::types::{
    Config, ConnectorError, Descriptor, EntityKind, Operation, Page, PageRequest, PropertySpec, Rejection, Throttle,
};

struct Hostile;

/// The version `describe()` declares, and what the `version` modes answer. Tests patch this string in the
/// component's bytes (it occurs once) to make further versions of the same plugin.
const VERSION: &str = "1.0.0";

/// A GET of `path` on the `api` upstream; see [`send`].
fn get(config: &Config, path: &str) -> Result<String, ConnectorError> {
    send(config, &request("GET", path, vec![], None))
}

/// A page of SCIM users `user<n>` (id `u<n>`), and where the next one starts.
fn page(numbers: &[u64], next_cursor: Option<String>) -> Page {
    Page {
        entities: numbers
            .iter()
            .map(|n| {
                format!(
                    r#"{{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"id":"u{n}","userName":"user{n}","name":{{"givenName":"Given{n}","familyName":"Family{n}"}},"emails":[{{"value":"user{n}@example.com","primary":true}}],"active":true}}"#
                )
            })
            .collect(),
        next_cursor,
        total: None,
    }
}

/// Sends `request` and answers what came back; a refusal is the call's error, naming it.
fn send(config: &Config, request: &HttpRequest) -> Result<String, ConnectorError> {
    match host::send(config, request) {
        Ok(response) => Ok(format!(
            "{} {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        )),
        Err(e) => Err(ConnectorError::Rejected(Rejection {
            status: 0,
            detail: format!("{e:?}"),
        })),
    }
}

/// A request to the `api` upstream.
fn request(method: &str, path: &str, headers: Vec<(String, String)>, body: Option<Vec<u8>>) -> HttpRequest {
    HttpRequest {
        upstream: "api".into(),
        method: method.into(),
        path: path.into(),
        headers,
        body,
    }
}

/// Hands back everything an echoing upstream answered (status, headers, body) as the call's error, so it
/// reaches the API caller: the credentials the host attached must not be in it.
fn echo(config: &Config, method: &str) -> Result<String, ConnectorError> {
    match host::send(config, &request(method, "echo", vec![], None)) {
        Ok(response) => Err(ConnectorError::Rejected(Rejection {
            status: 400,
            detail: format!(
                "echoed {} {:?} {}",
                response.status,
                response.headers,
                String::from_utf8_lossy(&response.body)
            ),
        })),
        Err(e) => Err(ConnectorError::Rejected(Rejection {
            status: 0,
            detail: format!("{e:?}"),
        })),
    }
}

/// The same 64 MiB body sent `times` times: host memory must not grow with it.
fn body_bomb(config: &Config, megabytes: usize, times: usize) -> Result<String, ConnectorError> {
    let bomb = request("POST", "Users", vec![], Some(vec![b'x'; megabytes << 20]));
    let mut last = String::new();
    for _ in 0..times {
        last = send(config, &bomb)?;
    }
    Ok(last)
}

/// The page of `read-mode` `overflow`: 200,000 entities of many small fields, whatever page size was asked
/// for (a page holds at most page-size entities).
fn overflow_page(config: &Config, _request: &PageRequest) -> Option<Page> {
    let overflow = config
        .properties
        .iter()
        .any(|(k, v)| k == "read-mode" && v == "overflow");
    overflow.then(|| Page {
        entities: (0..200_000)
            .map(|i| format!("{{\"id\":\"{i}\",\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5,\"f\":6,\"g\":7,\"h\":8,\"i\":9,\"j\":[1,2,3,4,5,6,7,8]}}"))
            .collect(),
        next_cursor: None,
        total: Some(200_000),
    })
}

/// Recursion on the wasm call stack: through a function pointer the optimiser cannot see through, so it
/// cannot become a loop, and without locals in linear memory, so the native stack is what runs out.
#[inline(never)]
fn deep(depth: u64) -> u64 {
    let next: fn(u64) -> u64 = std::hint::black_box(deep);
    next(depth + 1) ^ depth
}

/// Recursion the optimiser cannot turn into a loop: each frame's buffer is used after the call, so Rust's
/// stack in linear memory is what runs out.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let mut frame = [0u8; 1024];
    std::hint::black_box(&mut frame);
    if depth == u64::MAX {
        return 0;
    }
    recurse(depth + 1).wrapping_add(u64::from(frame[(depth % 1024) as usize]))
}

impl Guest for Hostile {
    fn describe() -> Descriptor {
        Descriptor {
            name: "hostile".into(),
            version: VERSION.into(),
            entity_kinds: vec![EntityKind::User],
            operations: vec![Operation::TestConnection, Operation::Read],
            properties: vec![
                PropertySpec {
                    name: "mode".into(),
                    required: false,
                    secret: false,
                    default_value: Some("ok".into()),
                    doc: "Which misdeed test-connection commits.".into(),
                },
                // Secret in 1.x only, under a name the host's rule does not take for a secret: a later version
                // that declassifies it (the tests patch the version string) must not unseal the stored value.
                PropertySpec {
                    name: "opaque".into(),
                    required: false,
                    secret: !std::hint::black_box(VERSION).starts_with('2'),
                    default_value: None,
                    doc: "A value this connector declares secret in version 1 and plain in version 2.".into(),
                },
                PropertySpec {
                    name: "read-mode".into(),
                    required: false,
                    secret: false,
                    default_value: None,
                    doc: "How read misbehaves: pages, repeat-cursor, ever-new-ids, empty-pages, same-users, throttle-forever, overflow, not-json (also `get`; else one entity, one page).".into(),
                },
            ],
            default_read_transformation: None,
            default_write_transformation: None,
        }
    }

    fn test_connection(config: Config) -> Result<String, ConnectorError> {
        let mode = config
            .properties
            .iter()
            .find(|(k, _)| k == "mode")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        match mode.as_str() {
            "escape-dotdot" => get(&config, "../admin"),
            "escape-encoded" => get(&config, "%2e%2e/admin"),
            "absolute-url" => get(&config, "http://127.0.0.1:1/steal"),
            "other-port" => get(&config, "//127.0.0.1:1/steal"),
            "escape-double-encoded" => get(&config, "%252e%252e/admin"),
            "escape-backslash" => get(&config, "..\\admin"),
            "escape-at" => get(&config, "@127.0.0.1:1/steal"),
            "slow-upstream" => get(&config, "slow"),
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(600));
                Ok("slept".into())
            }
            "import-loop" => {
                // Host imports as fast as they answer, forever: the deadline must still stop it.
                let request = HttpRequest {
                    upstream: "nowhere".into(),
                    method: "GET".into(),
                    path: "x".into(),
                    headers: vec![],
                    body: None,
                };
                loop {
                    let _ = std::hint::black_box(host::send(&config, &request));
                    host::log(host::LogLevel::Trace, "again");
                }
            }
            "gigabyte" => Ok("x".repeat(1 << 30)),
            "version" => get(&config, "Users").map(|_| VERSION.to_string()),
            "slow-version" => get(&config, "slow-ok").map(|_| VERSION.to_string()),
            "unknown-upstream" => {
                let request = HttpRequest {
                    upstream: "metadata".into(),
                    method: "GET".into(),
                    path: "x".into(),
                    headers: vec![],
                    body: None,
                };
                host::send(&config, &request)
                    .map(|r| r.status.to_string())
                    .map_err(|e| {
                        ConnectorError::Rejected(Rejection {
                            status: 0,
                            detail: format!("{e:?}"),
                        })
                    })
            }
            "redirect" => get(&config, "redirect-away"),
            "other-system" => {
                // Claim to be another system: the host must ignore it and use this call's own credentials.
                let forged = Config {
                    system_id: "someone-else".into(),
                    properties: vec![],
                };
                get(&forged, "whoami")
            }
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "stack" => Ok(deep(0).to_string()),
            "stack-memory" => Ok(recurse(0).to_string()),
            "panic" => panic!("hostile plugin panicked on purpose"),
            "huge-result" => Ok("x".repeat(8 << 20)),
            "file" => match std::fs::read_to_string("/etc/passwd") {
                Ok(text) => Ok(format!("read {} bytes", text.len())),
                Err(e) => Err(ConnectorError::Rejected(Rejection {
                    status: 0,
                    detail: format!("file read failed: {e}"),
                })),
            },
            "env" => Ok(format!("{} environment variables", std::env::vars().count())),
            // Everything the host handed over, and what the upstream said: a secret must appear in neither.
            "show-properties" => {
                let shown: Vec<String> = config.properties.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let upstream = get(&config, "Users").unwrap_or_else(|e| format!("{e:?}"));
                // As an error: that is what Test Connection shows of a connector's words.
                Err(ConnectorError::Rejected(Rejection {
                    status: 0,
                    detail: format!("{} | {upstream}", shown.join(";")),
                }))
            }
            // 100 times the per-call cap of 200 lines, yet well inside the 100 ms CPU budget: past it the call
            // would run at idle priority, and on a saturated machine it could meet its deadline first.
            "log-flood" => {
                for i in 0..20_000 {
                    host::log(host::LogLevel::Info, &format!("flood {i}"));
                }
                Ok("flooded".into())
            }
            // 40,000 headers: past http's HeaderMap capacity (32,768), where the host used to panic.
            "headers-bomb" => send(
                &config,
                &request(
                    "GET",
                    "Users",
                    (0..40_000).map(|i| (format!("x-h{i}"), "v".into())).collect(),
                    None,
                ),
            ),
            "header-bytes-bomb" => send(
                &config,
                &request(
                    "GET",
                    "Users",
                    (0..10).map(|i| (format!("x-big{i}"), "v".repeat(100 << 10))).collect(),
                    None,
                ),
            ),
            "path-bomb" => send(&config, &request("GET", &"a/".repeat(50_000), vec![], None)),
            "trace" => echo(&config, "TRACE"),
            "connect" => echo(&config, "CONNECT"),
            "custom-method" => echo(&config, "BREW"),
            "echo-auth" => echo(&config, "GET"),
            "body-bomb" => body_bomb(&config, 64, 4),
            // 16 MiB bodies (the per-request cap) until the per-call byte budget is used up.
            "bytes-per-call" => body_bomb(&config, 16, 8),
            "request-flood" => {
                let mut last = String::new();
                for _ in 0..5_000 {
                    match get(&config, "Users") {
                        Ok(r) => last = r,
                        Err(e) => return Err(e),
                    }
                }
                Ok(last)
            }
            _ => get(&config, "Users"),
        }
    }

    fn read(config: Config, request: PageRequest) -> Result<Page, ConnectorError> {
        if let Some(page) = overflow_page(&config, &request) {
            return Ok(page);
        }
        let mode = config
            .properties
            .iter()
            .find(|(k, _)| k == "read-mode")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        // Where a page starts: the cursor is the page's number (the first page is 0).
        let page_number = request
            .cursor
            .as_deref()
            .and_then(|c| c.parse::<u64>().ok())
            .unwrap_or(0);
        let next = |n: u64| Some((n + 1).to_string());
        match mode.as_str() {
            // Three pages of two users, then the end: a well-behaved source.
            "pages" => Ok(page(
                &[page_number * 2 + 1, page_number * 2 + 2],
                (page_number < 2).then(|| (page_number + 1).to_string()),
            )),
            // The second page names itself as the next page, forever.
            "repeat-cursor" => Ok(page(&[page_number * 2 + 1, page_number * 2 + 2], Some("1".into()))),
            // Two users never seen before on every page, and always a next page.
            "ever-new-ids" => Ok(page(&[page_number * 2 + 1, page_number * 2 + 2], next(page_number))),
            // No entities, and always a next page.
            "empty-pages" => Ok(page(&[], next(page_number))),
            // The same two users on every page, and always a next page.
            "same-users" => Ok(page(&[1, 2], next(page_number))),
            // A page whose second entity is not JSON (cut off).
            "not-json" => Ok(Page {
                entities: vec!["{\"id\":\"1\"}".into(), "{\"id\":\"2\",\"userName\":".into()],
                next_cursor: None,
                total: Some(2),
            }),
            // Come back in 584 million years.
            "throttle-forever" => Err(ConnectorError::Throttled(Throttle {
                retry_after_ms: Some(u64::MAX),
                detail: "hostile plugin: retry after forever".into(),
            })),
            _ => Ok(Page {
                entities: vec!["{\"id\":\"1\"}".into()],
                next_cursor: None,
                total: Some(1),
            }),
        }
    }

    fn get(config: Config, _kind: EntityKind, id: String) -> Result<String, ConnectorError> {
        // `read-mode` `not-json`: an entity cut off.
        if config
            .properties
            .iter()
            .any(|(k, v)| k == "read-mode" && v == "not-json")
        {
            return Ok(format!("{{\"id\":\"{id}\",\"userName\":"));
        }
        Err(ConnectorError::Unsupported("get".into()))
    }

    unsupported!(create, replace, patch, delete);
}

export!(Hostile);
