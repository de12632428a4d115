//! Memory a thread freed, handed back when the thread runs out of work.
//!
//! The allocator (the binary's choice) keeps what a thread freed in that thread's heap and returns it to the
//! OS only when the same thread next allocates or frees. A thread that goes idle after a large piece of work
//! (a job's links map dropped, a page's transformations) would hold that memory until its next work, and the
//! next run's peak came on top of it (docs/performance.md, "sixteenth session"). So the threads that wait for
//! work — the tokio workers as they park (the service's and the plugins' background pool), the SQLite store's
//! query thread and outbox writer when their queues are empty ([`recv`]) — call [`thread_idle`], which runs the
//! release function the binary registered at most once per [`RELEASE_EVERY`] on each thread.
//!
//! A tokio worker releases only as it parks: what other threads free in its pages while it sleeps waits for
//! its next park. The queue threads, which build the largest structures (a run's links map), also release
//! once more when nothing came within the interval.

use std::cell::Cell;
use std::sync::{OnceLock, mpsc};
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
    if LAST_RELEASE.with(|last| due(last, Instant::now())) {
        release();
    }
}

/// Whether a thread that last released at `last` may release again at `now`; if so, `now` becomes its last.
fn due(last: &Cell<Option<Instant>>, now: Instant) -> bool {
    let due = last.get().is_none_or(|at| now.duration_since(at) >= RELEASE_EVERY);
    if due {
        last.set(Some(now));
    }
    due
}

/// The next item of a thread's work queue; `None` once every sender is gone. A thread that has to wait releases
/// what it freed, and once more if nothing came within [`RELEASE_EVERY`]: that second release takes what other
/// threads freed in its pages since (a run's links map, built here and dropped on a worker), and one the rate
/// had skipped.
pub fn recv<T>(queue: &mpsc::Receiver<T>) -> Option<T> {
    match queue.try_recv() {
        Ok(item) => return Some(item),
        Err(mpsc::TryRecvError::Disconnected) => return None,
        Err(mpsc::TryRecvError::Empty) => thread_idle(),
    }
    match queue.recv_timeout(RELEASE_EVERY) {
        Ok(item) => Some(item),
        Err(mpsc::RecvTimeoutError::Disconnected) => None,
        Err(mpsc::RecvTimeoutError::Timeout) => {
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
    fn a_thread_releases_at_most_once_per_interval() {
        let last = Cell::new(None);
        let start = Instant::now();
        assert!(due(&last, start), "the first idle moment releases");
        assert!(!due(&last, start + RELEASE_EVERY / 2), "too soon after it");
        assert!(due(&last, start + RELEASE_EVERY), "due again after the interval");
        assert!(
            !due(&last, start + RELEASE_EVERY * 3 / 2),
            "counted from the last release, not the first"
        );
    }

    #[test]
    fn a_queue_releases_only_when_it_has_to_wait_and_ends_with_its_senders() {
        set_release(count);
        // A thread of its own: releases are counted per thread.
        std::thread::spawn(|| {
            let released = || RELEASED.with(Cell::get);
            let (tx, rx) = mpsc::channel();
            tx.send(1).expect("send");
            tx.send(2).expect("send");
            assert_eq!((recv(&rx), recv(&rx)), (Some(1), Some(2)), "in order");
            assert_eq!(released(), 0, "no release while work is queued");
            let late = std::thread::spawn(move || {
                std::thread::sleep(RELEASE_EVERY * 5);
                tx.send(3).expect("send");
            });
            assert_eq!(recv(&rx), Some(3));
            assert_eq!(
                released(),
                2,
                "on going idle, and again when nothing came within the interval"
            );
            late.join().expect("the sender");
            assert_eq!(recv(&rx), None, "every sender is gone");
        })
        .join()
        .expect("the test thread");
    }
}
