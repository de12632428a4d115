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

#[cfg(test)]
mod tests {
    use super::*;

    fn purge_delay() -> std::os::raw::c_long {
        // SAFETY: reading an option is a thread-safe call of mimalloc's public API.
        unsafe { mi::mi_option_get(PURGE_DELAY) }
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
