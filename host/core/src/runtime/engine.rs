//! The process-wide wasmtime engine: component model, epoch interruption, and the pooling allocator
//! where the machine supports it.

use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ProfilingStrategy};

/// How often the epoch advances; the granularity of CPU deadlines and of yielding to tokio.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The most native stack a guest's calls may use; deeper recursion traps with a stack overflow.
pub const MAX_WASM_STACK: usize = 1 << 20;

/// Set to `perfmap` to have `perf` name the connectors' functions: the engine then writes
/// `/tmp/perf-<pid>.map` as it compiles or loads them (guest code is otherwise `[unknown]` in a profile).
/// A diagnostic switch; unset, or any other value, profiles nothing (another value is logged).
pub const PROFILER_ENV: &str = "PROVISIO_WASM_PROFILER";

/// The profiling agent [`PROFILER_ENV`] (`value`) asks for.
fn profiler(value: Option<&str>) -> ProfilingStrategy {
    match value {
        Some("perfmap") => ProfilingStrategy::PerfMap,
        Some("") | Some("none") | None => ProfilingStrategy::None,
        Some(other) => {
            tracing::warn!(
                value = other,
                "{PROFILER_ENV} is not `perfmap` or `none`; not profiling"
            );
            ProfilingStrategy::None
        }
    }
}

/// Builds the engine. `max_concurrent_calls` sizes the instance pool; `memory_bytes` is the most linear
/// memory one instance may have. Returns whether the pooling allocator is in use.
pub fn build(max_concurrent_calls: u32, memory_bytes: usize) -> Result<(Engine, bool), String> {
    // Read once: `base` runs again when the pooling allocator is unavailable.
    let profiling = profiler(std::env::var(PROFILER_ENV).ok().as_deref());
    let base = || {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.wasm_backtrace_details(wasmtime::WasmBacktraceDetails::Disable);
        config.max_wasm_stack(MAX_WASM_STACK);
        config.profiler(profiling);
        config
    };
    let mut pooled = base();
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(max_concurrent_calls)
        .total_core_instances(max_concurrent_calls * 4)
        .total_memories(max_concurrent_calls * 2)
        .total_tables(max_concurrent_calls * 4)
        .total_stacks(max_concurrent_calls)
        .max_memory_size(memory_bytes)
        .max_memories_per_component(4)
        .max_tables_per_component(8)
        // Keep the first pages of a reused slot mapped instead of returning them to the OS: a fresh
        // instance per call then starts without page faults on its data segments and first heap pages.
        .linear_memory_keep_resident(2 << 20)
        .table_keep_resident(64 << 10);
    pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    // Probe: reserving the pool fails where virtual address space is short (39-bit VA, ulimit -v).
    match Engine::new(&pooled) {
        Ok(engine) => Ok((engine, true)),
        Err(e) => {
            tracing::info!(error = %e, "pooling allocator unavailable; using on-demand allocation");
            Engine::new(&base())
                .map(|e| (e, false))
                .map_err(|e| format!("cannot create the wasm engine: {e}"))
        }
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a thread of its own, until the engine is dropped.
pub fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new().name("wasm-epoch".into()).spawn(move || {
        while let Some(engine) = weak.upgrade() {
            engine.increment_epoch();
            drop(engine);
            std::thread::sleep(EPOCH_TICK);
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the epoch ticker; guest deadlines fall back to the wall-clock timeout");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_perfmap_turns_the_profiler_on() {
        assert_eq!(profiler(Some("perfmap")), ProfilingStrategy::PerfMap);
        for off in [None, Some(""), Some("none"), Some("PerfMap "), Some("jitdump")] {
            assert_eq!(profiler(off), ProfilingStrategy::None, "{off:?}");
        }
    }
}
