//! Request statistics every simulator keeps.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// One request as the simulator saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// HTTP method, e.g. `GET`.
    pub method: String,
    /// Request path without the query, e.g. `/Users/1234`.
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// The status code answered.
    pub status: u16,
}

/// Counters and a bounded log of the most recent requests (at most [`Stats::LOG_CAPACITY`]).
#[derive(Debug, Default)]
pub struct Stats {
    requests: AtomicU64,
    throttled: AtomicU64,
    delayed: AtomicU64,
    log: Mutex<VecDeque<RequestRecord>>,
}

impl Stats {
    /// How many request records are kept.
    pub const LOG_CAPACITY: usize = 10_000;

    /// Requests received (all paths, including the token endpoint and rejected ones).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Requests refused with 429 by the rate limiter.
    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    /// Requests the rate limiter delayed before serving (IAS throttling band).
    pub fn delayed(&self) -> u64 {
        self.delayed.load(Ordering::Relaxed)
    }

    /// The most recent requests, oldest first.
    pub fn log(&self) -> Vec<RequestRecord> {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Clears counters and log.
    pub fn reset(&self) {
        self.requests.store(0, Ordering::Relaxed);
        self.throttled.store(0, Ordering::Relaxed);
        self.delayed.store(0, Ordering::Relaxed);
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    pub(crate) fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_throttled(&self) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_delayed(&self) {
        self.delayed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record(&self, rec: RequestRecord) {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        if log.len() >= Self::LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back(rec);
    }
}
