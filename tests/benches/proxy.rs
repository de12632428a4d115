//! Proxy figures: a proxy system (xsuaa connector) in front of a UAA simulator, compared with calling the
//! simulator directly in the same run.
//!
//! 1. Latency, one request at a time (`BENCH_REQUESTS`, default 2,000 per case, after a warm-up): p50 and p99
//!    of `GET /Users/{id}` and of a 100-user list page (`GET /Users?startIndex=…&count=100`), directly against
//!    the simulator (its bearer token) and through the proxy (HTTP Basic, and a bearer token from
//!    `POST /oauth2/token`).
//!    Also the p50 of the service's `/healthz`, one round trip that does nothing: direct + that hop is the
//!    least any proxy can take. The cases compared take turns of 50 requests (directly, through the bare
//!    pass-through, through the proxy with each credential, through nginx; the slow backend's likewise), so
//!    that each ratio is measured over the same seconds of a machine whose speed swings.
//!    First, 100-user pages with 4 in flight for `BENCH_PAGE_SECONDS` (default `BENCH_SECONDS`): pages/s
//!    through the proxy and directly, and the service's CPU per page (a line says when it starts, for
//!    `perf record -p` on the service's process).
//! 2. Throughput of `GET /Users/{id}` with `BENCH_CONCURRENCY` requests in flight (default 64) for
//!    `BENCH_SECONDS` (default 5) per case: requests/s, direct and through the proxy. The cases take turns of
//!    one second, as the latencies' cases take turns of 50 requests.
//! 3. The peers the targets are stated against (issue 20), measured in the same run: nginx with `proxy_pass`
//!    and kept-alive upstream connections in front of the same simulator (one request at a time and with
//!    `BENCH_CONCURRENCY` in flight; skipped, saying so, where `nginx` is not installed — Debian's
//!    `nginx-light`), and a second simulator whose reads take `BENCH_BACKEND_MS` (default 5 ms), called
//!    directly, through a proxy system of its own, and through nginx and the bare pass-through in front of it
//!    (what any pass-through adds to a slow backend on this machine: the floor of that target).
//!    The throughput of ours and nginx's is also measured with wrk as the load generator (one thread, the
//!    same connections, a run of one second per turn), as the issue measured nginx; skipped where `wrk` is
//!    not installed.
//!
//! The service runs on 2 worker threads as `provisio serve` does on this machine (`BENCH_SERVICE_WORKERS`
//! sets another number), alone in the benchmark's process; the simulators, the floor and the load generator
//! run in a child process (this binary again) on runtimes of their own, so that `perf record -p <the
//! service's process>` profiles the service alone (the processes share the machine's 2 cores). The service's
//! process id is printed first.
//! `BENCH_USERS` users are seeded (default 1,000).
//!
//! Run: `cargo bench -p provisio-tests --bench proxy`. Under `taskset -c 0` every process shares one core: the
//! latencies are then the sum of each hop's CPU, without the cross-core wake-ups that make up much of a 2-core
//! run's figures and most of its noise (docs/performance.md, "eighteenth session"). Prints PASS/FAIL per
//! target and exits 0.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use provisio::server::Settings;
use provisio::store::principals::{Permission, PrincipalKind};
use provisio_tests::sim::uaa;
use serde_json::{Value, json};

mod common;
use common::{ADMIN, ADMIN_PRINCIPAL, boot, env_or, percentile, plugin_time_in, serve};

const CLIENT: (&str, &str) = ("idm-client", "idm-client-secret-1");

/// Pages in flight in the page throughput phase: enough to keep the service's 2 workers busy.
const PAGES_IN_FLIGHT: u64 = 4;

/// Set in the peers' process (simulators, nginx, the floor and the load generator) to the service's URL.
const SERVICE_URL: &str = "PROVISIO_BENCH_PROXY_SERVICE";

fn main() {
    match std::env::var(SERVICE_URL) {
        Ok(url) => peers(url),
        Err(_) => service(),
    }
}

/// This process: the service alone, on 2 workers as `provisio serve` runs on this machine; everything else
/// runs in a child process (so `perf record -p` of this process profiles the service and nothing else).
fn service() {
    let service_rt = provisio::memory::runtime()
        .worker_threads(env_or("BENCH_SERVICE_WORKERS", 2) as usize)
        .thread_name("service")
        .build()
        .expect("service runtime");
    let data = tempfile::tempdir().expect("data dir");
    let url = service_rt.block_on(async {
        let principals = [
            ADMIN_PRINCIPAL,
            (
                CLIENT.0,
                CLIENT.1,
                PrincipalKind::Technical,
                &[Permission::ProxyApi][..],
            ),
        ];
        let state = boot(data.path(), Settings::default(), &principals).await;
        let (addr, _server) = serve(provisio::api::router(state)).await;
        format!("http://{addr}")
    });
    println!("service: process {} at {url}", std::process::id());
    let status = std::process::Command::new(std::env::current_exe().expect("this benchmark's path"))
        .args(std::env::args_os().skip(1))
        .env(SERVICE_URL, &url)
        .status()
        .expect("the peers' process starts");
    drop(service_rt);
    std::process::exit(status.code().unwrap_or(1));
}

/// The child process: the simulators, nginx and the bare pass-through in front of each, and the load
/// generator, each on runtime threads of its own (nginx in processes of its own); runs every phase against the
/// service at `url`.
fn peers(url: String) {
    let runtime = |name: &str| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(name)
            .enable_all()
            .build()
            .expect("runtime")
    };
    let users = env_or("BENCH_USERS", 1000) as usize;
    let (sim_tx, sim_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        runtime("simulator").block_on(async move {
            let sim = uaa::spawn(uaa::Options {
                users,
                ..uaa::Options::default()
            })
            .await
            .expect("uaa simulator");
            let slow = uaa::spawn(uaa::Options {
                users: 100,
                read_latency: Duration::from_millis(env_or("BENCH_BACKEND_MS", 5)),
                ..uaa::Options::default()
            })
            .await
            .expect("slow uaa simulator");
            let described = |sim: &uaa::Simulator| {
                (
                    sim.base_url.clone(),
                    sim.token_url.clone().expect("token url"),
                    sim.options().client_id.clone(),
                    sim.options().client_secret.clone(),
                    sim.users()
                        .iter()
                        .filter_map(|u| u["id"].as_str().map(String::from))
                        .collect::<Vec<_>>(),
                )
            };
            let _ = sim_tx.send((described(&sim), described(&slow)));
            std::future::pending::<()>().await;
        });
    });
    let (sim, slow) = sim_rx.recv().expect("simulator started");
    // nginx in front of the same simulator (a process of its own, as nginx runs), when it is installed.
    let nginx = Nginx::start(&sim.0);
    // And in front of the backend that takes its time: what any pass-through adds to a slow backend here.
    let slow_nginx = nginx.as_ref().and_then(|_| Nginx::start(&slow.0));
    // The floor on runtime threads of its own, as the service has (one in front of each backend).
    let floor_rt = runtime("floor");
    let (floor, _server) = floor_rt.block_on(serve(pass_through(sim.0.clone())));
    let (slow_floor, _slow_server) = floor_rt.block_on(serve(pass_through(slow.0.clone())));
    let peers = Peers {
        floor: format!("http://{floor}"),
        slow_floor: format!("http://{slow_floor}"),
        nginx: nginx.as_ref().map(|n| n.url.clone()),
        slow_nginx: slow_nginx.as_ref().map(|n| n.url.clone()),
    };
    runtime("load").block_on(run(url, peers, sim, slow));
    drop(nginx);
    drop(slow_nginx);
}

/// nginx as a reverse proxy (`proxy_pass`, HTTP/1.1 with kept-alive upstream connections, no access log) in
/// a temporary prefix; stopped when dropped.
struct Nginx {
    url: String,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(upstream: &str) -> Option<Nginx> {
        let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists());
        let Some(binary) = binary else {
            println!("nginx is not installed (apt-get install nginx-light): the comparison with it is skipped");
            return None;
        };
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/');
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("nginx prefix");
        let d = dir.path().display();
        let conf = format!(
            "worker_processes auto;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             upstream simulator {{ server {upstream}; keepalive 256; }}\n  \
             server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://simulator; \
             proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}\n}}\n"
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("nginx.conf");
        let child = std::process::Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nginx starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Nginx {
            url: format!("http://127.0.0.1:{port}"),
            child,
            _dir: dir,
        })
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers too (a SIGKILL would leave them running).
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

type Sim = (String, String, String, String, Vec<String>);

/// What the service is measured against, beside the simulators themselves.
struct Peers {
    /// The bare pass-through in front of the simulator, and in front of the slow one.
    floor: String,
    slow_floor: String,
    /// nginx in front of each, when it is installed.
    nginx: Option<String>,
    slow_nginx: Option<String>,
}

/// The least any HTTP proxy does, on 2 runtime workers as the service has: take the request, send it on to the simulator
/// over a pooled connection (with the caller's Authorization), hand the answer back. No sandbox, no
/// transformation, no authentication of its own: the floor for a proxy's latency on this machine.
fn pass_through(upstream: String) -> axum::Router {
    use axum::extract::{Request, State};
    use axum::response::IntoResponse;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .expect("http client");
    async fn forward(
        State((http, upstream)): State<(reqwest::Client, String)>,
        request: Request,
    ) -> axum::response::Response {
        let target = format!(
            "{upstream}{}",
            request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/")
        );
        let mut out = http.get(target);
        if let Some(auth) = request.headers().get(axum::http::header::AUTHORIZATION) {
            out = out.header(axum::http::header::AUTHORIZATION, auth);
        }
        match out.send().await {
            Ok(answer) => {
                let status = answer.status().as_u16();
                let body = answer.bytes().await.unwrap_or_default();
                (
                    axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::BAD_GATEWAY),
                    [(axum::http::header::CONTENT_TYPE, "application/scim+json")],
                    body,
                )
                    .into_response()
            }
            Err(e) => (axum::http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
        }
    }
    axum::Router::new().fallback(forward).with_state((http, upstream))
}

/// CPU seconds (user + system) the service's process (the parent of this one) and this process (the
/// simulators, the floor, the load generator) have used.
fn cpu() -> (f64, f64) {
    let of = |stat: &str| -> f64 {
        let stat = std::fs::read_to_string(stat).unwrap_or_default();
        // After the command name in parentheses: utime and stime are fields 14 and 15 (from 1).
        let rest = stat.rsplit(')').next().unwrap_or("");
        let fields: Vec<f64> = rest.split_whitespace().map(|f| f.parse().unwrap_or(0.0)).collect();
        (fields.get(11).copied().unwrap_or(0.0) + fields.get(12).copied().unwrap_or(0.0)) / 100.0
    };
    (
        of(&format!("/proc/{}/stat", std::os::unix::process::parent_id())),
        of("/proc/self/stat"),
    )
}

/// CPU seconds the whole machine has spent so far, every process's (`/proc/stat`: user, nice, system, irq,
/// softirq, steal), for what nginx's processes spend, which neither `cpu()` counts.
fn machine_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let busy: f64 = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .enumerate()
        .filter(|(i, _)| [0, 1, 2, 5, 6, 7].contains(i))
        .map(|(_, f)| f.parse::<f64>().unwrap_or(0.0))
        .sum();
    busy / 100.0
}

/// Runs a phase; returns its result, the mean connector call (µs) and the number of calls made, from the
/// service's `/metrics` before and after.
async fn with_calls<T>(
    http: &reqwest::Client,
    service: &str,
    phase: impl std::future::Future<Output = T>,
) -> (T, f64, f64) {
    let plugin_time = || async {
        let metrics = http
            .get(format!("{service}/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        plugin_time_in(&metrics)
    };
    let (s0, c0) = plugin_time().await;
    let out = phase.await;
    let (s1, c1) = plugin_time().await;
    let calls = c1 - c0;
    (out, if calls > 0.0 { (s1 - s0) / calls * 1e6 } else { 0.0 }, calls)
}

#[derive(Clone)]
enum Auth {
    Bearer(String),
    Basic,
}

impl Auth {
    fn apply(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Auth::Bearer(t) => r.bearer_auth(t),
            Auth::Basic => r.basic_auth(CLIENT.0, Some(CLIENT.1)),
        }
    }
}

/// One GET; panics unless it answers 200 (a benchmark of errors measures nothing).
async fn get(http: &reqwest::Client, auth: &Auth, url: &str) -> usize {
    let response = auth.apply(http.get(url)).send().await.expect("request");
    let status = response.status();
    let body = response.bytes().await.expect("body");
    assert_eq!(status, 200, "{url}: {}", String::from_utf8_lossy(&body));
    body.len()
}

/// p50 and p99 in microseconds of `n` sequential GETs of the URLs `make(i)` builds.
async fn latency(http: &reqwest::Client, auth: &Auth, n: u64, make: impl Fn(u64) -> String) -> (f64, f64) {
    latencies(http, &[(auth, &make)], n).await[0]
}

/// A case of [`latencies`]: the credentials, and the URL of the i-th request.
type Case<'a> = (&'a Auth, &'a dyn Fn(u64) -> String);

/// Requests of one case of [`latencies`] in a row before the next case takes its turn.
const TURN: u64 = 50;

/// p50 and p99 in microseconds of `n` sequential GETs for each case (its credentials and the URLs it builds),
/// the cases taking turns of [`TURN`] requests. A ratio of two cases is then measured over the same seconds:
/// this machine's speed swings by a third from one second to the next (a VM beside others), and measured one
/// after the other, two cases met different machines (docs/performance.md, "twenty-fourth session"). A turn,
/// not a single request, so that each case runs with its own code and data warm in the caches.
async fn latencies(http: &reqwest::Client, cases: &[Case<'_>], n: u64) -> Vec<(f64, f64)> {
    for (auth, make) in cases {
        for i in 0..50 {
            get(http, auth, &make(i)).await;
        }
    }
    let mut us = vec![Vec::with_capacity(n as usize); cases.len()];
    for turn in (0..n).step_by(TURN as usize) {
        for ((auth, make), us) in cases.iter().zip(&mut us) {
            for i in turn..(turn + TURN).min(n) {
                let url = make(i);
                let t = Instant::now();
                get(http, auth, &url).await;
                us.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
    }
    us.into_iter()
        .map(|mut us| {
            us.sort_by(f64::total_cmp);
            (
                percentile(&us, 0.5).unwrap_or(f64::NAN),
                percentile(&us, 0.99).unwrap_or(f64::NAN),
            )
        })
        .collect()
}

/// What a case of [`rates`] did: requests per second over its turns, the requests it completed, and the CPU
/// seconds the service's process, the peers' process and the whole machine spent during its turns.
#[derive(Clone, Copy, Default)]
struct Rate {
    per_second: f64,
    requests: f64,
    service: f64,
    peers: f64,
    machine: f64,
}

impl Rate {
    /// µs of `cpu` (seconds, one of the fields) per request.
    fn per_request(&self, cpu: f64) -> f64 {
        cpu / self.requests * 1e6
    }
}

/// A case of [`rates`]: the credentials, and the URL of the i-th request.
type RateCase<'a> = (&'a Auth, Arc<dyn Fn(u64) -> String + Send + Sync>);

/// Each case's GETs with `concurrency` in flight for `seconds` in all, the cases taking turns of one second, as
/// [`latencies`] does for one request at a time: each ratio of two rates is measured over the same seconds.
async fn rates(http: &reqwest::Client, cases: &[RateCase<'_>], concurrency: u64, seconds: u64) -> Vec<Rate> {
    let mut out = vec![Rate::default(); cases.len()];
    let mut elapsed = vec![0.0; cases.len()];
    for _ in 0..seconds {
        for (((auth, make), rate), elapsed) in cases.iter().zip(&mut out).zip(&mut elapsed) {
            let ((service0, peers0), machine0) = (cpu(), machine_cpu());
            let (requests, turn) = completed(http, auth, concurrency, 1, make.clone()).await;
            let ((service1, peers1), machine1) = (cpu(), machine_cpu());
            rate.requests += requests as f64;
            rate.service += service1 - service0;
            rate.peers += peers1 - peers0;
            rate.machine += machine1 - machine0;
            *elapsed += turn;
        }
    }
    for (rate, elapsed) in out.iter_mut().zip(elapsed) {
        rate.per_second = rate.requests / elapsed;
    }
    out
}

/// Requests/s of GETs with `concurrency` in flight for `seconds`.
async fn throughput(
    http: &reqwest::Client,
    auth: &Auth,
    concurrency: u64,
    seconds: u64,
    make: Arc<dyn Fn(u64) -> String + Send + Sync>,
) -> f64 {
    let (requests, elapsed) = completed(http, auth, concurrency, seconds, make).await;
    requests as f64 / elapsed
}

/// GETs completed with `concurrency` in flight for `seconds`, and the seconds they took (the last ones end
/// after the deadline).
async fn completed(
    http: &reqwest::Client,
    auth: &Auth,
    concurrency: u64,
    seconds: u64,
    make: Arc<dyn Fn(u64) -> String + Send + Sync>,
) -> (u64, f64) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (http, auth, make) = (http.clone(), auth.clone(), make.clone());
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            let mut i = w * 7919;
            while Instant::now() < deadline {
                get(&http, &auth, &make(i)).await;
                done += 1;
                i += 1;
            }
            done
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("worker");
    }
    (total, started.elapsed().as_secs_f64())
}

/// Requests/s of GETs of `urls` (in turn, with this `Authorization`) with `connections` open for `seconds`,
/// measured by wrk on one thread (C and epoll: the load takes little of the machine's 2 cores); `None`, saying
/// so, where wrk is not installed (Debian's `wrk`). Panics on any answer but 2xx.
fn wrk_rate(urls: &[String], authorization: &str, connections: u64, seconds: u64) -> Option<f64> {
    let binary = ["/usr/bin/wrk", "/usr/local/bin/wrk"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(binary) = binary else {
        println!("wrk is not installed (apt-get install wrk): the load from wrk is skipped");
        return None;
    };
    // wrk takes the origin; each request's path comes from the script, in turn.
    let first = urls.first()?;
    let origin_end = first.match_indices('/').nth(2).map_or(first.len(), |(i, _)| i);
    let origin = &first[..origin_end];
    let paths: Vec<String> = urls.iter().map(|u| format!("{:?}", &u[origin_end..])).collect();
    let script = format!(
        "local paths = {{{}}}\nlocal i = 0\nrequest = function()\n  i = i % #paths + 1\n  \
         return wrk.format(\"GET\", paths[i], {{[\"Authorization\"] = {authorization:?}}})\nend\n",
        paths.join(",")
    );
    let dir = tempfile::tempdir().expect("wrk script dir");
    let script_path = dir.path().join("requests.lua");
    std::fs::write(&script_path, script).expect("wrk script");
    let out = std::process::Command::new(binary)
        .args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s"), "-s"])
        .arg(&script_path)
        .arg(origin)
        .output()
        .expect("wrk runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !text.contains("Non-2xx"),
        "wrk against {origin}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Adds an xsuaa proxy system in front of a simulator; returns its SCIM base URL and a bearer token for
/// calling the simulator directly.
async fn proxy_for(http: &reqwest::Client, url: &str, name: &str, sim: &Sim) -> (String, Auth) {
    let (sim_url, token_url, client_id, client_secret, _) = sim;
    let system: Value = http
        .post(format!("{url}/api/v1/systems"))
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .json(&json!({"name": name, "type": "xsuaa", "role": "proxy",
            "properties": {"URL": sim_url, "OAuth2TokenServiceURL": token_url, "User": client_id,
                "Password": client_secret, "provisio.rate.limit": "1000000"}}))
        .send()
        .await
        .expect("create system")
        .json()
        .await
        .expect("system json");
    let system = system["id"].as_str().expect("system id").to_string();
    let direct_token: Value = http
        .post(token_url)
        .basic_auth(client_id, Some(client_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("simulator token")
        .json()
        .await
        .expect("token json");
    let direct = Auth::Bearer(direct_token["access_token"].as_str().expect("token").to_string());
    (format!("{url}/ipsproxy/api/v1/scim/{system}"), direct)
}

async fn run(url: String, peers: Peers, sim: Sim, slow: Sim) {
    let Peers {
        floor,
        slow_floor,
        nginx,
        slow_nginx,
    } = peers;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .expect("http client");
    let (proxy_base, direct) = proxy_for(&http, &url, "UAA proxy", &sim).await;
    let (slow_proxy, slow_direct) = proxy_for(&http, &url, "UAA proxy, slow backend", &slow).await;
    let (sim_url, _, _, _, ids) = sim;
    let ids = Arc::new(ids);
    let proxy_token: Value = http
        .post(format!("{url}/oauth2/token"))
        .basic_auth(CLIENT.0, Some(CLIENT.1))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("proxy token")
        .json()
        .await
        .expect("token json");
    let bearer = Auth::Bearer(proxy_token["access_token"].as_str().expect("token").to_string());

    let n = env_or("BENCH_REQUESTS", 2000);
    let users = ids.len() as u64;
    let pages = (users / 100).max(1);
    let by_id_in = |ids: Arc<Vec<String>>, base: String| {
        move |i: u64| {
            format!(
                "{base}/Users/{}",
                ids[(i.wrapping_mul(7919) % ids.len() as u64) as usize]
            )
        }
    };
    let by_id = |base: String| by_id_in(ids.clone(), base);
    let slow_ids = Arc::new(slow.4.clone());
    let page = |base: String| move |i: u64| format!("{base}/Users?startIndex={}&count=100", (i % pages) * 100 + 1);

    // A proxy page carries what the simulator's does (100 users, totalResults).
    let sample: Value = Auth::Basic
        .apply(http.get(format!("{proxy_base}/Users?startIndex=1&count=100")))
        .send()
        .await
        .expect("page")
        .json()
        .await
        .expect("page json");
    assert_eq!(
        sample["Resources"].as_array().map(Vec::len),
        Some(100.min(users as usize))
    );
    assert_eq!(sample["totalResults"], json!(users));

    // 100-user pages with a few in flight, first, so that `perf record -p` can profile the page alone (the line
    // says when it starts): pages/s through the proxy and directly, and the service's CPU per page.
    let page_seconds = env_or("BENCH_PAGE_SECONDS", env_or("BENCH_SECONDS", 5));
    println!("100-user pages through the proxy, {PAGES_IN_FLIGHT} in flight, for {page_seconds} s from now");
    let page_cpu0 = cpu();
    let p_pages = throughput(
        &http,
        &Auth::Basic,
        PAGES_IN_FLIGHT,
        page_seconds,
        Arc::new(page(proxy_base.clone())),
    )
    .await;
    let page_cpu1 = cpu();
    let d_pages = throughput(
        &http,
        &direct,
        PAGES_IN_FLIGHT,
        page_seconds,
        Arc::new(page(sim_url.clone())),
    )
    .await;

    // One HTTP round trip that does nothing (the service's `/healthz`): what a second hop costs by itself.
    let hop = latency(&http, &direct, n, |_| format!("{url}/healthz")).await;
    // Each group's cases take turns (`latencies`): directly, through the bare pass-through, through the proxy
    // with Basic and with a bearer token, and through nginx, the peer of issue 20, where it is installed. The
    // connector calls counted are the proxy's, with either credential.
    let (d_make, f_make, p_make) = (by_id(sim_url.clone()), by_id(floor.clone()), by_id(proxy_base.clone()));
    let nginx_make = nginx.clone().map(by_id);
    let mut cases: Vec<Case> = vec![
        (&direct, &d_make),
        (&direct, &f_make),
        (&Auth::Basic, &p_make),
        (&bearer, &p_make),
    ];
    if let Some(make) = &nginx_make {
        cases.push((&direct, make));
    }
    let (gets, get_call, get_calls) = with_calls(&http, &url, latencies(&http, &cases, n)).await;
    let (d_get, f_get, p_get, b_get) = (gets[0], gets[1], gets[2], gets[3]);
    let nginx_get = gets.get(4).copied();
    let (d_page, f_page, p_page) = (page(sim_url.clone()), page(floor.clone()), page(proxy_base.clone()));
    let cases: [Case; 4] = [
        (&direct, &d_page),
        (&direct, &f_page),
        (&Auth::Basic, &p_page),
        (&bearer, &p_page),
    ];
    let (lists, list_call, list_calls) = with_calls(&http, &url, latencies(&http, &cases, n / 4)).await;
    let (d_list, f_list, p_list, b_list) = (lists[0], lists[1], lists[2], lists[3]);
    // A backend that takes its time: directly, through the proxy, and what a pass-through that does nothing
    // else adds to it (the bare one, and nginx).
    let slow_n = (n / 8).max(50);
    let slow_by_id = |base: &str| by_id_in(slow_ids.clone(), base.to_string());
    let (s_direct_make, s_proxy_make, s_floor_make) =
        (slow_by_id(&slow.0), slow_by_id(&slow_proxy), slow_by_id(&slow_floor));
    let s_nginx_make = slow_nginx.as_deref().map(slow_by_id);
    let mut cases: Vec<Case> = vec![
        (&slow_direct, &s_direct_make),
        (&Auth::Basic, &s_proxy_make),
        (&slow_direct, &s_floor_make),
    ];
    if let Some(make) = &s_nginx_make {
        cases.push((&slow_direct, make));
    }
    let slows = latencies(&http, &cases, slow_n).await;
    let (s_direct, s_proxy, s_floor) = (slows[0], slows[1], slows[2]);
    let s_nginx = slows.get(3).copied();

    let concurrency = env_or("BENCH_CONCURRENCY", 64);
    let seconds = env_or("BENCH_SECONDS", 5);
    // In turns of a second (`rates`): the bare pass-through, directly, the proxy with each credential, nginx.
    let mut cases: Vec<RateCase> = vec![
        (&direct, Arc::new(by_id(floor.clone()))),
        (&direct, Arc::new(by_id(sim_url.clone()))),
        (&Auth::Basic, Arc::new(by_id(proxy_base.clone()))),
        (&bearer, Arc::new(by_id(proxy_base.clone()))),
    ];
    if let Some(nginx) = &nginx {
        cases.push((&direct, Arc::new(by_id(nginx.clone()))));
    }
    let rated = rates(&http, &cases, concurrency, seconds).await;
    let (direct_rate, proxied, bearer_rated) = (rated[1], rated[2], rated[3]);
    let (f_rate, d_rate, p_rate, b_rate) = (
        rated[0].per_second,
        direct_rate.per_second,
        proxied.per_second,
        bearer_rated.per_second,
    );
    let nginx_rated = rated.get(4).copied();
    let nginx_rate = nginx_rated.map(|r| r.per_second);
    // The same with wrk as the load generator, as issue 20 measured nginx: ours, nginx and the bare
    // pass-through, in turns of a second too.
    let wrk_rates = match &nginx {
        Some(nginx) => {
            let paths = |base: &str| (0..users).map(by_id(base.to_string())).collect::<Vec<_>>();
            let basic = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", CLIENT.0, CLIENT.1))
            );
            let Auth::Bearer(token) = &direct else {
                unreachable!("the simulator takes a bearer token")
            };
            let bearer = format!("Bearer {token}");
            let turns = [
                (paths(&proxy_base), &basic),
                (paths(nginx), &bearer),
                (paths(&floor), &bearer),
            ];
            // The mean of each one's rates over its turns (each turn lasts the same second).
            let mut sums = [Some(0.0); 3];
            for _ in 0..seconds {
                for ((paths, authorization), sum) in turns.iter().zip(&mut sums) {
                    *sum = sum
                        .zip(wrk_rate(paths, authorization, concurrency, 1))
                        .map(|(a, b)| a + b);
                }
            }
            let [ours, theirs, floor] = sums.map(|sum| sum.map(|s| s / seconds as f64));
            ours.zip(theirs).zip(floor)
        }
        None => None,
    };
    // µs of CPU per request of the page phase, which ran `rate` requests/s for `seconds`.
    let cpu_per = |cpu: f64, rate: f64, seconds: u64| cpu / (rate * seconds as f64) * 1e6;
    let service_cpu = |a: (f64, f64), b: (f64, f64)| b.0 - a.0;
    let peers_cpu = |a: (f64, f64), b: (f64, f64)| b.1 - a.1;

    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    let ratio = |p: (f64, f64), d: (f64, f64)| p.0 / d.0;
    println!("\nIssue 20 targets, each against its peer measured in this run");
    println!("| figure | ours | peer | ratio | target |");
    println!("|---|---|---|---|---|");
    match (nginx_get, nginx_rate) {
        (Some(ng), Some(nr)) => {
            println!(
                "| `GET /Users/{{id}}` p50, one at a time, ours (Basic) ÷ nginx `proxy_pass` | {:.0} µs | {:.0} µs | {:.2}× | ≤ 1.3×: {} |",
                p_get.0,
                ng.0,
                ratio(p_get, ng),
                verdict(ratio(p_get, ng) <= 1.3)
            );
            println!(
                "| the same, {concurrency} in flight, requests/s ours ÷ nginx | {p_rate:.0}/s | {nr:.0}/s | {:.0} % | ≥ 50 %: {} |",
                p_rate / nr * 100.0,
                verdict(p_rate / nr >= 0.5)
            );
            if let Some(((ours, theirs), floor)) = wrk_rates {
                println!(
                    "| the same, {concurrency} connections, load from wrk (issue 20's method), requests/s ours ÷ nginx | {ours:.0}/s | {theirs:.0}/s | {:.0} % (the bare pass-through below: {floor:.0}/s = {:.0} %) | ≥ 50 %: {} |",
                    ours / theirs * 100.0,
                    floor / theirs * 100.0,
                    verdict(ours / theirs >= 0.5)
                );
            }
        }
        _ => println!(
            "| `GET /Users/{{id}}` ours ÷ nginx | {:.0} µs | nginx not installed | – | skipped |",
            p_get.0
        ),
    }
    let slow_peers = match s_nginx {
        Some(ng) => format!(
            " (pass-throughs in front of it: nginx {:.3}×, the bare one {:.3}×)",
            ratio(ng, s_direct),
            ratio(s_floor, s_direct)
        ),
        None => format!(
            " (the bare pass-through in front of it: {:.3}×)",
            ratio(s_floor, s_direct)
        ),
    };
    println!(
        "| the same against a backend whose reads take {} ms, p50 ours ÷ direct | {:.0} µs | {:.0} µs | {:.3}×{slow_peers} | ≤ 1.05×: {} |",
        env_or("BENCH_BACKEND_MS", 5),
        s_proxy.0,
        s_direct.0,
        ratio(s_proxy, s_direct),
        verdict(ratio(s_proxy, s_direct) <= 1.05)
    );
    println!(
        "| 100-user page p50, ours ÷ direct | {:.0} µs | {:.0} µs | {:.2}× | ≤ 1.6×: {} |",
        p_list.0,
        d_list.0,
        ratio(p_list, d_list),
        verdict(ratio(p_list, d_list) <= 1.6)
    );
    println!(
        "\nProxy figures (service on 2 worker threads in a process of its own; UAA simulator with {users} users and the load generator in another)"
    );
    println!("| what | direct to the simulator | through the proxy, Basic | through the proxy, bearer | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| `GET /Users/{{id}}`, one at a time, p50 / p99 | {:.0} / {:.0} µs | {:.0} / {:.0} µs ({:.2}×) | {:.0} / {:.0} µs ({:.2}×) | p50 ≤ 1.5× direct: Basic {}, bearer {} |",
        d_get.0,
        d_get.1,
        p_get.0,
        p_get.1,
        ratio(p_get, d_get),
        b_get.0,
        b_get.1,
        ratio(b_get, d_get),
        verdict(ratio(p_get, d_get) <= 1.5),
        verdict(ratio(b_get, d_get) <= 1.5)
    );
    println!(
        "| 100-user page `GET /Users?startIndex=…&count=100`, one at a time, p50 / p99 | {:.0} / {:.0} µs | {:.0} / {:.0} µs ({:.2}×) | {:.0} / {:.0} µs ({:.2}×) | p50 ≤ 1.5× direct: Basic {}, bearer {} |",
        d_list.0,
        d_list.1,
        p_list.0,
        p_list.1,
        ratio(p_list, d_list),
        b_list.0,
        b_list.1,
        ratio(b_list, d_list),
        verdict(ratio(p_list, d_list) <= 1.5),
        verdict(ratio(b_list, d_list) <= 1.5)
    );
    println!(
        "| `GET /Users/{{id}}`, {concurrency} in flight for {seconds} s | {d_rate:.0}/s | {p_rate:.0}/s | {b_rate:.0}/s | ≥ 5,000/s: Basic {}, bearer {} |",
        verdict(p_rate >= 5000.0),
        verdict(b_rate >= 5000.0)
    );
    println!(
        "\nThe floor: a bare pass-through proxy (axum + reqwest, no sandbox, no transformation, no authentication) in front of the same simulator, on 2 worker threads of its own: \
         `GET /Users/{{id}}` p50 {:.0} µs ({:.2}× direct; the proxy above is {:.2}× this floor), 100-user page p50 {:.0} µs ({:.2}× direct; the proxy {:.2}× the floor), {f_rate:.0} requests/s with {concurrency} in flight.",
        f_get.0,
        ratio(f_get, d_get),
        ratio(p_get, f_get),
        f_list.0,
        ratio(f_list, d_list),
        ratio(p_list, f_list),
    );
    println!(
        "\nThe bound: one HTTP round trip that does nothing (the service's `/healthz`) takes {:.0} µs p50 here, so no proxy \
         can answer a GET by id in less than direct + that hop = {:.0} µs ({:.2}× direct) or a page in less than {:.0} µs ({:.2}× direct).",
        hop.0,
        d_get.0 + hop.0,
        (d_get.0 + hop.0) / d_get.0,
        d_list.0 + hop.0,
        (d_list.0 + hop.0) / d_list.0,
    );
    println!(
        "\nWhere the time goes: the connector call (wasm instance, guest, HTTP to the simulator, host parse) averages {get_call:.0} µs of a proxied GET by id ({get_calls:.0} calls) and {list_call:.0} µs of a proxied 100-user page ({list_calls:.0} calls); \
         the rest of the p50 is the proxy's own work and the extra HTTP hop. CPU per request at {concurrency} in flight, the service's process: proxied with Basic {:.0} µs, with bearer {:.0} µs; \
         the peers' process (simulators, load generator): direct {:.0} µs, proxied with Basic {:.0} µs, with bearer {:.0} µs. \
         100-user pages with {PAGES_IN_FLIGHT} in flight: {p_pages:.0}/s through the proxy (the service's CPU per page {:.0} µs, the peers' {:.0} µs), {d_pages:.0}/s directly.",
        proxied.per_request(proxied.service),
        bearer_rated.per_request(bearer_rated.service),
        direct_rate.per_request(direct_rate.peers),
        proxied.per_request(proxied.peers),
        bearer_rated.per_request(bearer_rated.peers),
        cpu_per(service_cpu(page_cpu0, page_cpu1), p_pages, page_seconds),
        cpu_per(peers_cpu(page_cpu0, page_cpu1), p_pages, page_seconds),
    );
    // The same for nginx's phase: its own processes are what the machine spent less the two measured ones.
    if let Some(nr) = nginx_rated {
        let nginx_own = nr.machine - nr.peers - nr.service;
        println!(
            "Through nginx at {concurrency} in flight: the peers' process {:.0} µs of CPU per request, nginx's processes about {:.0} µs (the machine's CPU less both processes').",
            nr.per_request(nr.peers),
            nr.per_request(nginx_own.max(0.0)),
        );
    }
}
