//! The XSUAA proxy write transformation on a typical SCIM user, against a
//! serde_json parse + serialize round trip of the same user.
//!
//! Run: `cargo bench -p provisio-transform --bench transform`
//!
//! Two groups: `wall` (criterion's wall clock) and `cpu` (the benchmark
//! thread's CPU time, which stays meaningful on a machine shared with other
//! jobs: it is the cost on one core).

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use provisio_transform::{Context, Operation, Outcome, Transformation};
use serde_json::{Value, json};

const WRITE: &str = include_str!("../tests/fixtures/xsuaa-proxy-write.json");
const READ: &str = include_str!("../tests/fixtures/xsuaa-proxy-read.json");
const USER: &str = include_str!("../tests/fixtures/scim-user.json");

/// CPU time of the calling thread, in nanoseconds.
struct ThreadCpu;

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes the timespec we pass.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Measurement for ThreadCpu {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, _typical: f64, values: &mut [f64]) -> &'static str {
        values.iter_mut().for_each(|v| *v /= 1000.0);
        "µs cpu"
    }
    fn scale_throughputs(&self, _typical: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        let n = match t {
            Throughput::Elements(n) => *n as f64,
            _ => 1.0,
        };
        values.iter_mut().for_each(|v| *v = n * 1e9 / *v);
        "elem/s cpu"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

fn cases<M: Measurement>(g: &mut BenchmarkGroup<'_, M>) {
    let write = Transformation::from_str(WRITE).expect("write transformation");
    let read = Transformation::from_str(READ).expect("read transformation");
    let user: Value = serde_json::from_str(USER).expect("user");
    let props = BTreeMap::from([("xsuaa.origin".to_string(), "sap.custom".to_string())]);
    let ctx = Context::new(&props)
        .operation(Operation::Update)
        .variable("entityIdTargetSystem", json!("uaa-42"));
    let read_ctx = Context::new(&props).variable("entityBaseLocation", json!("https://proxy/Users/"));
    assert!(matches!(write.apply("user", &user, &ctx), Outcome::Transformed { .. }));

    g.throughput(Throughput::Elements(1));
    g.bench_function("xsuaa_write_transformation", |b| {
        b.iter(|| black_box(write.apply("user", black_box(&user), &ctx)))
    });
    g.bench_function("xsuaa_read_transformation", |b| {
        b.iter(|| black_box(read.apply("user", black_box(&user), &read_ctx)))
    });
    g.bench_function("serde_json_parse_serialize", |b| {
        b.iter(|| {
            let v: Value = serde_json::from_str(black_box(USER)).expect("json");
            black_box(serde_json::to_string(&v).expect("json"))
        })
    });
}

fn wall(c: &mut Criterion) {
    cases(&mut c.benchmark_group("wall"));
}

fn cpu(c: &mut Criterion<ThreadCpu>) {
    cases(&mut c.benchmark_group("cpu"));
}

criterion_group!(wall_benches, wall);
criterion_group! {
    name = cpu_benches;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = cpu
}
criterion_main!(wall_benches, cpu_benches);
