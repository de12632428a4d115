//! The allocator's controls the service uses. Compiling the bundled connectors on a first boot leaves tens
//! of MiB of compiler scratch memory that mimalloc would keep for reuse: while they compile, freed memory is
//! returned to the OS at once, and what is left afterwards is collected (measured: 112 → 87–93 MiB resident
//! after a first boot; docs/performance.md).

use std::sync::Mutex;

use libmimalloc_sys as mi;

/// `mi_option_purge_delay`: milliseconds before freed memory is returned to the OS (10 by default). The same
/// index in mimalloc v2's and v3's option enumerations.
const PURGE_DELAY: mi::mi_option_t = 15;

/// Lean sections running now, and the purge delay to restore when the last one ends.
static LEAN: Mutex<(usize, std::os::raw::c_long)> = Mutex::new((0, 0));

/// Runs `work` (compiling connectors) with freed memory returned to the OS at once, then collects what the
/// allocator kept, so that the memory a compilation used is not carried into the service's life. Sections may
/// overlap (tests boot several services in one process): the delay is restored when the last one ends.
pub async fn lean<T>(work: impl std::future::Future<Output = T>) -> T {
    {
        let mut lean = LEAN.lock().unwrap_or_else(|e| e.into_inner());
        if lean.0 == 0 {
            // SAFETY: reading and setting an option are thread-safe calls of mimalloc's public API.
            lean.1 = unsafe { mi::mi_option_get(PURGE_DELAY) };
            unsafe { mi::mi_option_set(PURGE_DELAY, 0) };
        }
        lean.0 += 1;
    }
    let out = work.await;
    {
        let mut lean = LEAN.lock().unwrap_or_else(|e| e.into_inner());
        lean.0 -= 1;
        if lean.0 == 0 {
            // SAFETY: as above.
            unsafe { mi::mi_option_set(PURGE_DELAY, lean.1) };
        }
    }
    // SAFETY: collecting is a thread-safe call of mimalloc's public API.
    unsafe { mi::mi_collect(true) };
    out
}

/// Hands the calling thread's freed memory back: empty pages go back to their segments, and what has waited
/// past the purge delay goes back to the OS (`mi_collect(false)`: not a forced purge of everything, which
/// would make the thread's next allocations fault their pages in again).
fn release_freed() {
    // SAFETY: collecting the calling thread's heap is a thread-safe call of mimalloc's public API.
    unsafe { mi::mi_collect(false) };
}

/// The service's tokio runtime, as `provisio serve` and the benchmarks build it: multi-threaded, and each
/// worker hands back the memory it freed as it runs out of work ([`provisio_core::idle`]).
pub fn runtime() -> tokio::runtime::Builder {
    crate::idle::set_release(release_freed);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all().on_thread_park(crate::idle::thread_idle);
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    fn purge_delay() -> std::os::raw::c_long {
        // SAFETY: reading an option is a thread-safe call of mimalloc's public API.
        unsafe { mi::mi_option_get(PURGE_DELAY) }
    }

    /// Bytes committed to the pages of the calling thread's heap.
    fn heap_committed() -> usize {
        unsafe extern "C" fn add(
            _: *const mi::mi_heap_t,
            area: *const mi::mi_heap_area_t,
            _: *mut std::ffi::c_void,
            _: usize,
            sum: *mut std::ffi::c_void,
        ) -> bool {
            // SAFETY: mimalloc hands a valid area; `sum` is the `usize` passed below.
            unsafe { *sum.cast::<usize>() += (*area).committed };
            true
        }
        let mut sum = 0usize;
        // SAFETY: visiting the calling thread's own heap, areas only (no block is touched).
        unsafe {
            mi::mi_heap_visit_blocks(
                mi::mi_heap_get_default(),
                false,
                Some(add),
                (&mut sum as *mut usize).cast(),
            )
        };
        sum
    }

    #[test]
    fn a_worker_that_runs_out_of_work_hands_back_what_was_freed() {
        let runtime = runtime().worker_threads(1).build().expect("runtime");
        let (held, kept) = runtime.block_on(async {
            tokio::spawn(async {
                // Allocated on the worker and freed on another thread, as a job's links map is: the blocks
                // wait in the worker's pages until the worker collects them.
                let blocks: Vec<Vec<u8>> = (0..20_000).map(|i| vec![i as u8; 1000]).collect();
                std::thread::spawn(move || drop(blocks))
                    .join()
                    .expect("the freeing thread");
                let held = heap_committed();
                // Parks past the release interval, then once more: that park is due to release.
                tokio::time::sleep(crate::idle::RELEASE_EVERY).await;
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                (held, heap_committed())
            })
            .await
            .expect("the task")
        });
        assert!(
            held >= 16 << 20,
            "the freed blocks' pages were still the worker's: {held} bytes"
        );
        assert!(kept < held / 4, "handed back while idle: {kept} of {held} bytes kept");
    }

    #[tokio::test]
    async fn memory_is_purged_at_once_only_while_compiling() {
        let before = purge_delay();
        let (inside, nested) = lean(async { (purge_delay(), lean(async { purge_delay() }).await) }).await;
        assert_eq!((inside, nested), (0, 0));
        assert_eq!(purge_delay(), before, "the allocator's own delay is back afterwards");
        assert_ne!(before, 0, "mimalloc's default purge delay");
    }
}
