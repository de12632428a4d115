//! What a store carries for one call: the WASI context (no files, no sockets, no environment), the memory
//! limiter, the guest's captured stderr, and the system the call is for.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::CallLimits;
use crate::outbound::{Outbound, Secrets, SystemEndpoint};

/// Caps the linear memory of the whole instance (all its memories together) and remembers that the cap
/// was hit, because the guest only sees a failed allocation and aborts with an opaque trap. Instances,
/// memories and tables per store are capped too, so one component cannot multiply its allowance.
pub struct MemoryCap {
    limit: usize,
    used: usize,
    /// The size the guest asked for when it hit the cap.
    pub hit: Option<usize>,
}

impl MemoryCap {
    /// A cap of `limit` bytes in total.
    pub fn new(limit: usize) -> Self {
        MemoryCap {
            limit,
            used: 0,
            hit: None,
        }
    }
}

impl MemoryCap {
    /// Linear memory the instance has now.
    pub fn used(&self) -> usize {
        self.used
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let next = self.used.saturating_sub(current).saturating_add(desired);
        if next > self.limit {
            self.hit = Some(next);
            return Ok(false);
        }
        self.used = next;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }

    fn instances(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        8
    }

    fn tables(&self) -> usize {
        32
    }
}

/// Store data for one call.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// The memory cap.
    pub memory: MemoryCap,
    /// The guest's stderr, where a Rust panic message lands.
    pub stderr: MemoryOutputPipe,
    /// Where the guest's HTTP goes; `None` for calls without a system (`describe`).
    pub endpoint: Option<SystemEndpoint>,
    /// The outbound capability.
    pub outbound: Arc<Outbound>,
    /// `name@version` of the plugin, for logs.
    pub plugin: String,
    /// When guest code must stop.
    pub deadline: Instant,
    /// Set when the epoch callback stopped the guest at the deadline.
    pub deadline_hit: bool,
    /// HTTP requests made so far in this call.
    pub requests: u32,
    /// Bytes of requests (path, headers, body) the guest handed over so far in this call.
    pub request_bytes: usize,
    /// The credentials the host attached (or may attach) in this call: scrubbed from what the guest sees and
    /// from what the call answers.
    pub secrets: Secrets,
    /// Log lines written so far in this call.
    pub log_lines: u32,
    /// Requests the host refused to send (outside the upstream, unknown upstream, over the request cap).
    pub denied: u32,
    /// Why the last refused request was refused.
    pub last_denied: Option<String>,
    /// Set when a host call (a request) was cut off at the call's deadline.
    pub host_deadline_hit: bool,
    /// Epoch ticks of guest execution so far (about 10 ms each), not counting ticks spent waiting on requests.
    pub ticks: u32,
    /// Set when a request waited (took a millisecond or more) since the last tick.
    pub waited: bool,
    /// Set once the call used its CPU budget and runs throttled.
    pub throttled: bool,
    /// Set when the call is to finish on the background pool (see `background`); shared with its driver.
    pub demoted: Arc<AtomicBool>,
    /// The runtime the call started on, where its HTTP requests are sent from once it is demoted.
    pub home: Option<tokio::runtime::Handle>,
    /// The limits of this call.
    pub limits: CallLimits,
    /// The elements the last `send-list` of this call kept for its page (contract 0.3.0).
    pub listed: Option<Listed>,
    /// How many of the first entities of the call's page are kept elements whose answer was scrubbed with the
    /// call's secrets as they are now: they need no second scan.
    pub listed_scrubbed: usize,
}

/// A list answer's elements the host kept for the call's page: the answer, and where each element is in it.
pub struct Listed {
    text: String,
    items: Vec<std::ops::Range<usize>>,
    /// The [revision](Secrets::revision) of the secrets `text` was scrubbed with.
    scrubbed_with: u64,
}

impl Listed {
    /// Keeps `items`, ranges of `text` (on character boundaries, as [`provisio_scim::list::split_member`]
    /// answers them), an answer scrubbed with the secrets of revision `scrubbed_with`.
    pub fn new(text: String, items: Vec<std::ops::Range<usize>>, scrubbed_with: u64) -> Self {
        Listed {
            text,
            items,
            scrubbed_with,
        }
    }

    /// How many elements are kept.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl CallState {
    /// A fresh state: WASI with nothing granted but a clock, randomness and a captured stderr.
    pub fn new(limits: &CallLimits, outbound: Arc<Outbound>, endpoint: Option<SystemEndpoint>, plugin: String) -> Self {
        let stderr = MemoryOutputPipe::new(limits.max_stderr_bytes);
        let wasi = WasiCtx::builder()
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let secrets = secrets_of(endpoint.as_ref());
        CallState {
            wasi,
            table: ResourceTable::new(),
            memory: MemoryCap::new(limits.memory_bytes),
            stderr,
            endpoint,
            outbound,
            plugin,
            deadline: Instant::now() + limits.timeout,
            deadline_hit: false,
            requests: 0,
            request_bytes: 0,
            secrets,
            log_lines: 0,
            denied: 0,
            last_denied: None,
            host_deadline_hit: false,
            ticks: 0,
            waited: false,
            throttled: false,
            demoted: Arc::new(AtomicBool::new(false)),
            home: tokio::runtime::Handle::try_current().ok(),
            limits: limits.clone(),
            listed: None,
            listed_scrubbed: 0,
        }
    }

    /// Readies a kept state for its next call, as if it were new: the same guest, a new call.
    pub fn begin_next_call(&mut self, endpoint: Option<&SystemEndpoint>) {
        // The same credentials as the last call's: its secrets (with the tokens attached since) are still
        // the ones to scrub, and their searchers need not be built again — that was a tenth of a proxied
        // GET's CPU. A token list grown by rotations is started afresh.
        // The endpoint is copied only when it changed: the same system's calls mostly go to the same one, and
        // then its credentials are the same too.
        let unchanged = self.endpoint.as_ref() == endpoint;
        let same = unchanged
            || match (&self.endpoint, endpoint) {
                (Some(last), Some(next)) => last.attaches_the_same(next),
                _ => false,
            };
        if !same || self.secrets.len() > MAX_KEPT_SECRETS {
            self.secrets = secrets_of(endpoint);
        }
        if !unchanged {
            self.endpoint = endpoint.cloned();
        }
        self.memory.hit = None;
        self.deadline = Instant::now() + self.limits.timeout;
        self.deadline_hit = false;
        self.requests = 0;
        self.request_bytes = 0;
        self.log_lines = 0;
        self.denied = 0;
        self.last_denied = None;
        self.host_deadline_hit = false;
        self.ticks = 0;
        self.waited = false;
        self.throttled = false;
        self.demoted = Arc::new(AtomicBool::new(false));
        self.home = tokio::runtime::Handle::try_current().ok();
        self.listed = None;
        self.listed_scrubbed = 0;
    }

    /// The first `count` kept elements as texts, for the page of at most `page_size` entities a 0.3.0 guest
    /// returns; an error, before anything is copied, when fewer are kept or `count` is over the page size. They
    /// are kept no longer. Sets [`listed_scrubbed`](Self::listed_scrubbed): they need no second scan when
    /// no secret was added since their answer was scrubbed.
    pub fn take_listed(&mut self, count: u32, page_size: u32) -> Result<Vec<String>, String> {
        self.listed_scrubbed = 0;
        let listed = self.listed.take();
        if count > page_size {
            return Err(format!(
                "a page of {count} listed entities, over the page size of {page_size} asked for (the limit: a page holds at most page-size entities)"
            ));
        }
        let count = count as usize;
        if count == 0 {
            return Ok(Vec::new());
        }
        let kept = listed.as_ref().map_or(0, Listed::len);
        let Some(listed) = listed.filter(|l| l.len() >= count) else {
            return Err(format!(
                "a page of {count} listed entities, but the call's last send-list kept {kept}"
            ));
        };
        if listed.scrubbed_with == self.secrets.revision() {
            self.listed_scrubbed = count;
        }
        Ok(listed.items[..count]
            .iter()
            .map(|range| listed.text.get(range.clone()).unwrap_or_default().to_owned())
            .collect())
    }

    /// Whether the call left nothing behind that the next call of the same guest must not see or inherit.
    pub fn ended_cleanly(&self) -> bool {
        !self.deadline_hit
            && !self.host_deadline_hit
            && !self.throttled
            && self.memory.hit.is_none()
            && self.denied == 0
            && !self.demoted.load(std::sync::atomic::Ordering::Relaxed)
            && self.stderr.contents().is_empty()
    }

    /// The guest's stderr so far, lossily decoded and trimmed.
    pub fn stderr_text(&self) -> String {
        let text = String::from_utf8_lossy(&self.stderr.contents()).trim().to_string();
        // Control characters (newlines too) could forge log lines: a panic message becomes one line.
        text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
    }
}

/// Secrets a kept state scrubs before it starts from its system's own again (each OAuth token attached
/// adds two).
const MAX_KEPT_SECRETS: usize = 16;

fn secrets_of(endpoint: Option<&SystemEndpoint>) -> Secrets {
    endpoint.map(Secrets::of_endpoint).unwrap_or_default()
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::{Credentials, OutboundLimits};

    fn endpoint(password: &str) -> SystemEndpoint {
        SystemEndpoint {
            system_id: "s".into(),
            api: None,
            token: None,
            credentials: Credentials::Basic {
                user: "u".into(),
                password: password.into(),
            },
            rate_per_second: None,
            headers: vec![],
        }
    }

    /// A fresh call's state for a system with `endpoint`.
    fn state_for(endpoint: Option<SystemEndpoint>) -> CallState {
        let outbound = Arc::new(Outbound::new(OutboundLimits::default()).expect("client"));
        CallState::new(&CallLimits::default(), outbound, endpoint, "p".into())
    }

    /// Keeps the elements of `text`'s `Resources`, as `send-list` does after scrubbing it with the call's secrets.
    fn keep(state: &mut CallState, text: &str) {
        let split = provisio_scim::list::split_member(text, "Resources").expect("split");
        state.listed = Some(Listed::new(text.to_string(), split.items, state.secrets.revision()));
    }

    fn scrubbed(state: &CallState, text: &str) -> String {
        let mut text = text.to_string();
        state.secrets.scrub_string(&mut text);
        text
    }

    #[test]
    fn listed_elements_are_taken_once_within_what_was_kept_and_the_page_size() {
        let mut state = state_for(None);
        let text = r#"{"Resources":[{"id":"1"},{"id":"2"},{"id":"3"}]}"#;
        keep(&mut state, text);
        assert_eq!(
            state.take_listed(2, 10),
            Ok(vec![r#"{"id":"1"}"#.to_string(), r#"{"id":"2"}"#.to_string()])
        );
        assert!(state.listed.is_none(), "taken once");
        assert_eq!(state.take_listed(0, 10), Ok(vec![]));
        let refused = state.take_listed(1, 10).expect_err("nothing kept");
        assert!(refused.contains("kept 0"), "{refused}");
        keep(&mut state, text);
        let refused = state.take_listed(4, 10).expect_err("more than kept");
        assert!(refused.contains("kept 3"), "{refused}");
        keep(&mut state, text);
        let refused = state.take_listed(3, 2).expect_err("over the page size");
        assert!(refused.contains("page size of 2"), "{refused}");
        keep(&mut state, text);
        state.begin_next_call(None);
        assert!(state.listed.is_none(), "a new call keeps nothing of the last");
    }

    /// Kept elements skip the page's second scan only while the call's secrets are those their answer was
    /// scrubbed with: a token attached after the list was read (a refresh) is searched for in them too.
    #[test]
    fn kept_elements_are_scanned_again_when_a_secret_was_added_since() {
        let mut state = state_for(Some(endpoint("password-1")));
        let text = r#"{"Resources":[{"id":"1"},{"id":"2"}]}"#;
        keep(&mut state, text);
        state.take_listed(2, 10).expect("taken");
        assert_eq!(state.listed_scrubbed, 2, "scrubbed with the secrets the call has");
        keep(&mut state, text);
        state.secrets.add("a-token-attached-later");
        state.take_listed(1, 10).expect("taken");
        assert_eq!(state.listed_scrubbed, 0, "a secret was added since");
        keep(&mut state, text);
        state.take_listed(0, 10).expect("taken");
        assert_eq!(state.listed_scrubbed, 0, "none taken");
        keep(&mut state, text);
        state.take_listed(2, 10).expect("taken");
        state.begin_next_call(Some(&endpoint("password-1")));
        assert_eq!(state.listed_scrubbed, 0, "a new call starts with none");
    }

    #[test]
    fn a_kept_state_scrubs_what_its_system_attaches_now() {
        let mut state = state_for(Some(endpoint("first-password")));
        state.secrets.add_header_value("Bearer token-of-the-first-call");
        // The same credentials: the secrets stay, tokens attached in earlier calls included.
        state.begin_next_call(Some(&endpoint("first-password")));
        assert_eq!(
            scrubbed(&state, "first-password token-of-the-first-call"),
            "******** ********"
        );
        // Changed credentials: the new password is scrubbed, what came with the old ones is dropped.
        state.begin_next_call(Some(&endpoint("second-password")));
        assert_eq!(
            scrubbed(&state, "first-password second-password token-of-the-first-call"),
            "first-password ******** token-of-the-first-call"
        );
        // Rotated tokens do not pile up.
        for i in 0..20 {
            state.secrets.add_header_value(&format!("Bearer rotated-token-{i:02}"));
            state.begin_next_call(Some(&endpoint("second-password")));
            assert!(state.secrets.len() <= MAX_KEPT_SECRETS);
        }
        assert_eq!(scrubbed(&state, "second-password"), "********");
        // No endpoint: nothing to scrub.
        state.begin_next_call(None);
        assert!(state.secrets.is_empty());
    }
}
