//! Memory a thread freed, handed back when the thread runs out of work.
//!
//! The allocator (the binary's choice) keeps what a thread freed in that thread's heap and returns it to the
//! OS only when the same thread next allocates or frees. A thread that goes idle after a large piece of work
//! (a job's links map dropped, a page's transformations) would hold that memory until its next work, and the
//! next run's peak came on top of it (docs/performance.md, "sixteenth session"). So the threads that wait for
//! work — the tokio workers as they park, the SQLite store's query thread and outbox writer when their queues
//! are empty ([`recv`]) — call
//! [`thread_idle`], which runs the release function the binary registered at most once per
//! [`RELEASE_EVERY`] on each thread.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How often one thread may release its freed memory: often enough that an idle thread keeps little, rarely
/// enough that a busy one, parking between requests, does not pay for it on every park.
pub const RELEASE_EVERY: Duration = Duration::from_millis(100);

static RELEASE: OnceLock<fn()> = OnceLock::new();

thread_local! {
    static LAST_RELEASE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Registers what releases the calling thread's freed memory (the allocator's collect). The first
/// registration holds; later ones are ignored, as a process has one allocator.
pub fn set_release(release: fn()) {
    let _ = RELEASE.set(release);
}

/// Called by a thread about to wait for work: releases what it freed, unless it did so less than
/// [`RELEASE_EVERY`] ago. Nothing happens where no release function is registered.
pub fn thread_idle() {
    let Some(release) = RELEASE.get() else {
        return;
    };
    let now = Instant::now();
    let due = LAST_RELEASE.with(|last| {
        let due = last.get().is_none_or(|at| now.duration_since(at) >= RELEASE_EVERY);
        if due {
            last.set(Some(now));
        }
        due
    });
    if due {
        release();
    }
}

/// The next item of a thread's work queue, the thread's freed memory released first when it has to wait for
/// one; `None` once every sender is gone.
pub fn recv<T>(queue: &std::sync::mpsc::Receiver<T>) -> Option<T> {
    match queue.try_recv() {
        Ok(item) => Some(item),
        Err(std::sync::mpsc::TryRecvError::Disconnected) => None,
        Err(std::sync::mpsc::TryRecvError::Empty) => {
            thread_idle();
            queue.recv().ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// Releases on this thread: a release runs on the thread that went idle.
        static RELEASED: Cell<usize> = const { Cell::new(0) };
    }

    fn count() {
        RELEASED.with(|n| n.set(n.get() + 1));
    }

    #[test]
    fn an_idle_thread_releases_at_most_once_per_interval() {
        set_release(count);
        // A thread of its own, so that its last release is this test's.
        std::thread::spawn(|| {
            let released = || RELEASED.with(Cell::get);
            thread_idle();
            thread_idle();
            assert_eq!(released(), 1, "the second park came too soon to release again");
            std::thread::sleep(RELEASE_EVERY);
            thread_idle();
            assert_eq!(released(), 2, "due again after the interval");
        })
        .join()
        .expect("the test thread");
    }
}
