//! Splitting a list answer into its entities (`split_member`), which the host does for every page a connector
//! reads: a 100-user page as the UAA simulator writes it (about 50 KB), taken by the quick scan; the same page
//! with every user's given name `\u`-escaped, as Python's `json` and .NET write what is not ASCII (also the
//! quick scan's); the page with a number with an exponent in its last user, which the quick scan hands to
//! serde_json's split after scanning almost all of it (its worst case); and, for scale, serde_json parsing the
//! page into a `Value`.
//!
//! Run: `cargo bench -p provisio-scim --bench split`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use provisio_scim::list::split_member;

/// A UAA user as the simulator writes it (compact, no escapes).
fn user(i: usize) -> String {
    format!(
        r#"{{"id":"{i:08x}-13eb-41cf-95cc-ecbd399378c8","externalId":"{}","meta":{{"version":0,"created":"2026-12-07T18:43:41.260Z","lastModified":"2026-12-07T18:43:41.260Z"}},"userName":"jonas.hartmann{i}","name":{{"familyName":"Hartmann","givenName":"Jonas"}},"emails":[{{"value":"jonas.hartmann{i}@example.com","primary":true}}],"groups":[],"approvals":[],"active":true,"verified":true,"origin":"uaa","zoneId":"uaa","passwordLastModified":"2026-12-07T18:43:41.260Z","schemas":["urn:scim:schemas:core:1.0"]}}"#,
        100_000 + i
    )
}

fn page(users: &[String]) -> String {
    format!(
        r#"{{"resources":[{}],"startIndex":1,"itemsPerPage":{},"totalResults":1000,"schemas":["urn:scim:schemas:core:1.0"]}}"#,
        users.join(","),
        users.len()
    )
}

fn split(c: &mut Criterion) {
    let mut users: Vec<String> = (0..100).map(user).collect();
    let plain = page(&users);
    let escaped: Vec<String> = users.iter().map(|u| u.replace("Jonas", r"J\u00f6nas")).collect();
    let escaped = page(&escaped);
    users[99] = users[99].replace(r#""version":0"#, r#""version":1e0"#);
    let exponent = page(&users);
    let mut group = c.benchmark_group("split");
    group.throughput(Throughput::Bytes(plain.len() as u64));
    for (name, text) in [
        ("plain 100-user page (quick scan)", &plain),
        ("given names escaped (quick scan)", &escaped),
        ("an exponent in the last user (quick scan, then serde_json)", &exponent),
    ] {
        assert!(split_member(text, "Resources").is_some_and(|s| s.items.len() == 100));
        group.bench_function(name, |b| {
            b.iter(|| split_member(black_box(text), "Resources").map(|s| s.items.len()))
        });
    }
    group.bench_function("serde_json::Value parse of the page, for scale", |b| {
        b.iter(|| serde_json::from_str::<serde_json::Value>(black_box(&plain)).map(|v| v.is_object()))
    });
    group.finish();
}

criterion_group!(benches, split);
criterion_main!(benches);
