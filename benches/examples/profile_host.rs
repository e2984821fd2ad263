//! Profiling driver (not a benchmark): runs one host path in a tight loop for `perf record`.
//! `cargo run --release -p meshward-benches --example profile_host -- lifecycle|empty|ratelimit|shared|vm_start|floor|floor_vm [secs]`.
//! `compare [secs]`: floor vs host lifecycle and VM start for the no-op guest (the SDK one,
//! built `wasm-speed`; `RAW=1` the raw-ABI one; `WASM_FILE=path` any module), and for each
//! module in `ALSO=a.wasm:b.wasm` side by side in the same rounds.
//! `ratelimit_compare [secs]`: the rate-limit benchmark's cases (filter allowed and limited,
//! no-op guest, native decision) in interleaved short rounds over the same 1024 clients, with
//! the per-round differences filter − no-op: a cross-check of the criterion figures that
//! drift on a shared machine cannot skew (every case sees the same moments).
//! `shared [secs]`: the guest-driven get + CAS set loop (`GUEST=sdk|conformance|raw`, default
//! sdk; `RAW=1` = raw; `WASM_FILE=path` replaces that guest's module).
//! `shared_compare [secs]`: native store, host side and every guest loop in interleaved rounds
//! (`SDK_FILE=a.wasm:b.wasm` / `CONFORMANCE_FILE=...` add a row per file: that build of the
//! SDK / conformance guest, e.g. one built at another opt-level).
//! With `--features meshward-host/profiling` and `MESHWARD_WASM_PROFILER=perfmap`, `perf report`
//! names the guest's functions too.
//! `ITERS=k` (lifecycle, empty, ratelimit): exactly k rounds (1000 lifecycles, or 1024
//! rate-limit requests, each) instead of a time: instruction counts that load cannot move,
//! e.g. `valgrind --tool=callgrind` at ITERS=1 and ITERS=3, difference ÷ 2 rounds.

use meshward_benches::floor::Floor;
use meshward_benches::native::NativeStore;
use meshward_host::{wasmtime_config, Host, Plugin, PluginSpec, StreamProps, Worker};
use std::hint::black_box;
use std::time::{Duration, Instant};

use meshward_benches::traffic::{REQUEST, RESPONSE};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map(String::as_str).unwrap_or("lifecycle");
    let secs: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5.0);
    // RAW=1: the raw-ABI no-op guest instead of the SDK one.
    let raw = std::env::var("RAW").as_deref() == Ok("1");
    let raw_wasm = wat::parse_str(meshward_benches::raw_guest::RAW_NOOP_WAT).expect("wat");
    // WASM_FILE=path: any module instead (e.g. the no-op guest built at another opt-level).
    let file_wasm = std::env::var_os("WASM_FILE").map(|f| std::fs::read(f).expect("WASM_FILE"));
    let wasm: &[u8] = if let Some(w) = &file_wasm {
        w
    } else if raw {
        &raw_wasm
    } else {
        meshward_artifacts::NOOP
    };
    let until = Duration::from_secs_f64(secs);
    let iters: Option<u64> = std::env::var("ITERS").ok().and_then(|v| v.parse().ok());
    // Keep going: until `until` passed, or for exactly ITERS rounds of `round` iterations.
    let more = |start: Instant, n: u64, round: u64| {
        iters.map_or(start.elapsed() < until, |i| n < i * round)
    };
    let cpu = meshward_benches::cpu::thread_cpu();
    let start = Instant::now();
    let mut n = 0u64;
    match what {
        // "empty": the same lifecycle on a worker with no plugin (stream bookkeeping only).
        "lifecycle" | "empty" => {
            let host = Host::builder().build().expect("host");
            let plugin = host.load(PluginSpec::new("noop", wasm)).expect("plugin");
            let chain = if what == "empty" {
                vec![]
            } else {
                vec![plugin]
            };
            let mut w = host.worker(&chain).expect("worker");
            let start = Instant::now();
            while more(start, n, 1000) {
                for _ in 0..1000 {
                    lifecycle(&mut w, StreamProps::new(), REQUEST, RESPONSE);
                }
                n += 1000;
                drop(host.take_logs());
            }
        }
        // The rate-limit filter, every request allowed, 1024 rotating clients.
        "ratelimit" => {
            let host = Host::builder().build().expect("host");
            // LIMITED=1: one request per client per hour, so nearly every request gets a 429.
            let cfg = if std::env::var_os("LIMITED").is_some() {
                meshward_benches::ratelimit::policy_json("1/h", 1, None)
            } else {
                meshward_benches::ratelimit::policy_json("100000/s", 100_000, None)
            };
            // WASM_FILE=path: another build of the filter.
            let filter = file_wasm
                .as_deref()
                .unwrap_or(meshward_artifacts::RATELIMIT);
            let spec = PluginSpec::new("ratelimit", filter)
                .root_id("ratelimit")
                .plugin_config(cfg);
            let plugin = host.load(spec).expect("plugin");
            let mut w = host.worker(&[plugin]).expect("worker");
            let peers: Vec<String> = (0..1024u32)
                .map(|i| format!("10.{}.{}.7:40000", i >> 8, i & 0xff))
                .collect();
            let start = Instant::now();
            while more(start, n, peers.len() as u64) {
                for peer in &peers {
                    lifecycle(
                        &mut w,
                        StreamProps::new().source_address(peer),
                        REQUEST,
                        RESPONSE,
                    );
                }
                n += peers.len() as u64;
                drop(host.take_logs());
            }
        }
        // Guest-driven shared data: one request runs 1000 get + CAS set pairs (as the
        // `shared_get_cas_set/guest_loop*` benchmarks); n counts pairs.
        "shared" => {
            let host = Host::builder().build().expect("host");
            let chosen = std::env::var("GUEST");
            let guest = match chosen.as_deref() {
                _ if raw => "raw",
                Ok(g @ ("sdk" | "conformance" | "raw")) => g,
                Ok(other) => panic!("GUEST={other}: want sdk, conformance or raw"),
                Err(_) => "sdk",
            };
            let mut l = SharedLoop::new(&host, guest, file_wasm.clone());
            let start = Instant::now();
            while start.elapsed() < until {
                l.request();
                n += u64::from(l.rounds);
            }
        }
        "vm_start" => {
            let host = Host::builder().build().expect("host");
            let plugin = host.load(PluginSpec::new("noop", wasm)).expect("plugin");
            let start = Instant::now();
            while start.elapsed() < until {
                for _ in 0..100 {
                    drop(black_box(
                        host.worker(std::slice::from_ref(&plugin)).expect("w"),
                    ));
                }
                n += 100;
            }
        }
        "floor" => {
            let mut f = Floor::new(wasm, &floor_config()).expect("floor");
            let start = Instant::now();
            while start.elapsed() < until {
                for _ in 0..1000 {
                    black_box(f.lifecycle().expect("floor"));
                }
                n += 1000;
            }
        }
        "floor_vm" => {
            let f = Floor::new(wasm, &floor_config()).expect("floor");
            let start = Instant::now();
            while start.elapsed() < until {
                for _ in 0..100 {
                    drop(black_box(f.start_vm().expect("floor")));
                }
                n += 100;
            }
        }
        // Fixed iteration counts, for `perf stat` (subtract a run with 0 iterations).
        "count" => {
            let iters = secs as u64;
            let host = Host::builder().build().expect("host");
            let plugin = host.load(PluginSpec::new("noop", wasm)).expect("plugin");
            let mut w = host.worker(std::slice::from_ref(&plugin)).expect("worker");
            let mut floor = Floor::new(wasm, &floor_config()).expect("floor");
            let which = std::env::var("WHICH").unwrap_or_default();
            for _ in 0..iters {
                match which.as_str() {
                    "floor" => {
                        black_box(floor.lifecycle().expect("floor"));
                    }
                    "floor_vm" => drop(black_box(floor.start_vm().expect("floor"))),
                    "vm" => drop(black_box(
                        host.worker(std::slice::from_ref(&plugin)).expect("w"),
                    )),
                    _ => {
                        lifecycle(&mut w, StreamProps::new(), REQUEST, RESPONSE);
                    }
                }
            }
            return;
        }
        "rounds" => {
            let host = Host::builder().build().expect("host");
            let plugin = host.load(PluginSpec::new("noop", wasm)).expect("plugin");
            let mut w = host.worker(&[plugin]).expect("worker");
            let mut floor = Floor::new(wasm, &floor_config()).expect("floor");
            for _ in 0..40 {
                let r = Instant::now();
                for _ in 0..2000 {
                    lifecycle(&mut w, StreamProps::new(), REQUEST, RESPONSE);
                }
                let h = r.elapsed().as_secs_f64() * 1e9 / 2000.0;
                let r = Instant::now();
                for _ in 0..2000 {
                    black_box(floor.lifecycle().expect("floor"));
                }
                let f = r.elapsed().as_secs_f64() * 1e9 / 2000.0;
                println!("host {h:8.1} floor {f:8.1}");
            }
            return;
        }
        // Per-phase time of the lifecycle (each phase timed alone; the cost of reading the
        // clock, measured back to back, is subtracted).
        "phases" => {
            let host = Host::builder().build().expect("host");
            let plugin = host.load(PluginSpec::new("noop", wasm)).expect("plugin");
            let mut w = host.worker(&[plugin]).expect("worker");
            let mut t = [0u128; 6];
            let iters = 300_000u32;
            for _ in 0..iters {
                let a = Instant::now();
                let b = Instant::now();
                let id = w.open_http_stream(StreamProps::new());
                let c = Instant::now();
                black_box(w.request_headers(id, REQUEST, true).expect("request"));
                let d = Instant::now();
                black_box(w.response_headers(id, RESPONSE, true).expect("response"));
                let e = Instant::now();
                w.complete(id).expect("complete");
                let f = Instant::now();
                w.release(id);
                let g = Instant::now();
                for (i, (x, y)) in [(a, b), (b, c), (c, d), (d, e), (e, f), (f, g)]
                    .into_iter()
                    .enumerate()
                {
                    t[i] += (y - x).as_nanos();
                }
            }
            let clock = t[0] as f64 / iters as f64;
            for (name, v) in [
                "open",
                "request_headers",
                "response_headers",
                "complete",
                "release",
            ]
            .iter()
            .zip(&t[1..])
            {
                println!("{name:18} {:7.1} ns", *v as f64 / iters as f64 - clock);
            }
            return;
        }
        "compare" => {
            // ALSO=a.wasm:b.wasm: more modules, measured side by side in the same rounds.
            let mut modules = vec![("noop".to_string(), wasm.to_vec())];
            let also = std::env::var_os("ALSO").unwrap_or_default();
            for path in std::env::split_paths(&also).filter(|p| !p.as_os_str().is_empty()) {
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                let bytes = std::fs::read(&path).expect("ALSO module");
                modules.push((name.into_owned(), bytes));
            }
            compare(&modules, secs);
            return;
        }
        "shared_compare" => {
            shared_compare(secs);
            return;
        }
        "ratelimit_compare" => {
            ratelimit_compare(secs);
            return;
        }
        other => panic!("unknown mode {other}"),
    }
    let el = start.elapsed();
    let on_cpu = meshward_benches::cpu::thread_cpu().saturating_sub(cpu);
    println!(
        "{what}: {n} iterations, {:.3} µs each ({:.3} µs on CPU)",
        el.as_secs_f64() * 1e6 / n as f64,
        on_cpu.as_secs_f64() * 1e6 / n as f64
    );
}

/// Interleaved short rounds of floor and host (lifecycle and VM start) for each module in
/// `modules`; prints the median, 10th percentile and minimum of the per-round means: short
/// rounds are mostly not preempted, so the low percentiles show the cost without the load
/// other processes put on the machine. Several modules are measured side by side in one run.
fn compare(modules: &[(String, Vec<u8>)], secs: f64) {
    let host = Host::builder().build().expect("host");
    // No plugin at all: the stream bookkeeping without any guest call.
    let mut empty = host.worker(&[]).expect("worker");
    let mut each: Vec<(Floor, Plugin, Worker, [Vec<f64>; 5])> = modules
        .iter()
        .map(|(name, wasm)| {
            let floor = Floor::new(wasm, &floor_config()).expect("floor");
            let plugin = host
                .load(PluginSpec::new(name.as_str(), wasm.as_slice()))
                .expect("plugin");
            let w = host.worker(std::slice::from_ref(&plugin)).expect("worker");
            (floor, plugin, w, Default::default())
        })
        .collect();
    let mut no_plugin = Vec::new();
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        for (floor, plugin, w, t) in &mut each {
            let r = Instant::now();
            for _ in 0..200 {
                black_box(floor.lifecycle().expect("floor"));
            }
            t[0].push(r.elapsed().as_nanos() as f64 / 200.0);
            let r = Instant::now();
            for _ in 0..200 {
                lifecycle(w, StreamProps::new(), REQUEST, RESPONSE);
            }
            t[1].push(r.elapsed().as_nanos() as f64 / 200.0);
            let r = Instant::now();
            for _ in 0..5 {
                drop(black_box(floor.start_vm().expect("floor")));
            }
            t[2].push(r.elapsed().as_nanos() as f64 / 5.0);
            let r = Instant::now();
            for _ in 0..5 {
                drop(black_box(
                    host.worker(std::slice::from_ref(plugin)).expect("w"),
                ));
            }
            t[3].push(r.elapsed().as_nanos() as f64 / 5.0);
            let r = Instant::now();
            for _ in 0..200 {
                lifecycle(w, StreamProps::new(), &[], &[]);
            }
            t[4].push(r.elapsed().as_nanos() as f64 / 200.0);
        }
        let r = Instant::now();
        for _ in 0..200 {
            lifecycle(&mut empty, StreamProps::new(), REQUEST, RESPONSE);
        }
        no_plugin.push(r.elapsed().as_nanos() as f64 / 200.0);
        drop(host.take_logs());
    }
    assert!(host.traps().is_empty(), "{:?}", host.traps());
    let names = [
        "floor lifecycle",
        "host lifecycle",
        "floor vm_start",
        "host vm_start",
        "host no headers",
    ];
    let print = |n: &str, v: &mut Vec<f64>| print_rounds(n, 16, v);
    for ((module, _), (_, _, _, t)) in modules.iter().zip(&mut each) {
        if modules.len() > 1 {
            println!("{module}:");
        }
        for (n, v) in names.iter().zip(t.iter_mut()) {
            print(n, v);
        }
    }
    print("host no plugin", &mut no_plugin);
}

/// A guest whose request-headers callback runs `rounds` get + CAS set pairs.
struct SharedLoop {
    worker: Worker,
    req: Vec<(&'static str, &'static str)>,
    rounds: u32,
}

impl SharedLoop {
    /// `guest`: `sdk` (bench_shared), `conformance` (its shared_loop case) or `raw` (WAT);
    /// `wasm` replaces the module.
    fn new(host: &Host, guest: &str, wasm: Option<Vec<u8>>) -> SharedLoop {
        let (bytes, config, req, rounds): (Vec<u8>, &[u8], _, u32) = match guest {
            "sdk" => (
                meshward_artifacts::BENCH_SHARED.to_vec(),
                b"rounds=1000 key=bench/sdk",
                vec![],
                1000,
            ),
            "conformance" => {
                let mut req: Vec<(&str, &str)> = REQUEST[..4].to_vec();
                req.push(("x-n", "1000"));
                (
                    meshward_artifacts::CONFORMANCE.to_vec(),
                    b"shared_loop",
                    req,
                    1000,
                )
            }
            _ => {
                let raw = meshward_benches::raw_guest::RAW_SHARED_WAT;
                host.shared_data()
                    .set_in("", meshward_benches::raw_guest::RAW_SHARED_KEY, b"0", 0);
                (
                    wat::parse_str(raw).expect("wat"),
                    b"",
                    vec![],
                    meshward_benches::raw_guest::RAW_SHARED_ROUNDS,
                )
            }
        };
        let spec = PluginSpec::new(guest, wasm.unwrap_or(bytes)).plugin_config(config.to_vec());
        let plugin = host.load(spec).expect("plugin");
        let worker = host.worker(&[plugin]).expect("worker");
        SharedLoop {
            worker,
            req,
            rounds,
        }
    }

    fn request(&mut self) {
        let w = &mut self.worker;
        let id = w.open_http_stream(StreamProps::new());
        black_box(w.request_headers(id, &self.req, true).expect("request"));
        w.complete(id).expect("complete");
        w.release(id);
    }
}

/// Interleaved short rounds of every shared-data get + CAS set path (1000 pairs each); prints
/// per-pair median, 10th percentile and minimum of the rounds, as `compare` does.
fn shared_compare(secs: f64) {
    let native = NativeStore::default();
    native.set(b"bench/shared", b"0", 0);
    let host = Host::builder().build().expect("host");
    let data = host.shared_data();
    data.set_in("", b"bench/host", b"0", 0);
    let mut loops: Vec<(String, SharedLoop)> = ["sdk", "conformance", "raw"]
        .into_iter()
        .map(|g| (format!("guest {g}"), SharedLoop::new(&host, g, None)))
        .collect();
    for (var, guest) in [("SDK_FILE", "sdk"), ("CONFORMANCE_FILE", "conformance")] {
        let files = std::env::var_os(var).unwrap_or_default();
        for path in std::env::split_paths(&files).filter(|p| !p.as_os_str().is_empty()) {
            let wasm = std::fs::read(&path).expect("module file");
            let file = path.file_name().unwrap_or_default().to_string_lossy();
            loops.push((
                format!("guest {guest} {file}"),
                SharedLoop::new(&host, guest, Some(wasm)),
            ));
        }
    }
    let mut t: Vec<Vec<f64>> = vec![Vec::new(); 2 + loops.len()];
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        let r = Instant::now();
        for _ in 0..1000 {
            let (v, cas) = native.get(b"bench/shared").expect("key");
            black_box(native.set(b"bench/shared", &v, cas));
        }
        t[0].push(r.elapsed().as_nanos() as f64 / 1000.0);
        let r = Instant::now();
        for _ in 0..1000 {
            let (v, cas) = data.get_in("", b"bench/host").expect("key");
            black_box(data.set_in("", b"bench/host", &v, cas));
        }
        t[1].push(r.elapsed().as_nanos() as f64 / 1000.0);
        for (i, (_, l)) in loops.iter_mut().enumerate() {
            let r = Instant::now();
            l.request();
            t[2 + i].push(r.elapsed().as_nanos() as f64 / f64::from(l.rounds));
        }
    }
    assert!(host.traps().is_empty(), "{:?}", host.traps());
    let bad: Vec<String> = host
        .logs()
        .into_iter()
        .map(|r| r.message)
        .filter(|m| m.starts_with("FAIL ") || m.contains("bench_shared"))
        .collect();
    assert!(bad.is_empty(), "{bad:?}");
    let names = ["native store".to_string(), "host side".to_string()]
        .into_iter()
        .chain(loops.into_iter().map(|(n, _)| n));
    for (n, v) in names.zip(t.iter_mut()) {
        print_rounds(&n, 44, v);
    }
}

/// The host's engine configuration, or wasmtime's default with `FLOOR_CONFIG=default`.
fn floor_config() -> wasmtime::Config {
    if std::env::var("FLOOR_CONFIG").as_deref() == Ok("default") {
        wasmtime::Config::default()
    } else {
        wasmtime_config().expect("engine config")
    }
}

/// One request lifecycle as the benchmarks count it: open, request headers, response headers,
/// complete, release (each result through `black_box`).
#[inline]
fn lifecycle(
    w: &mut Worker,
    props: StreamProps,
    request: &[(&str, &str)],
    response: &[(&str, &str)],
) {
    let id = w.open_http_stream(props);
    black_box(w.request_headers(id, request, true).expect("request"));
    black_box(w.response_headers(id, response, true).expect("response"));
    w.complete(id).expect("complete");
    w.release(id);
}

/// One request of the rate-limit benchmark from `peer`: the response when forwarded, nothing
/// more after a local reply (as `benches/benches/ratelimit.rs`).
fn rl_request(w: &mut Worker, peer: &str) -> u32 {
    let id = w.open_http_stream(StreamProps::new().source_address(peer));
    let status = match w.request_headers(id, REQUEST, true).expect("request") {
        meshward_host::Flow::Continue => {
            black_box(w.response_headers(id, RESPONSE, true).expect("response"));
            200
        }
        meshward_host::Flow::LocalReply(r) => r.status,
        f => panic!("unexpected {f:?}"),
    };
    w.complete(id).expect("complete");
    w.release(id);
    status
}

/// See the module doc (`ratelimit_compare`).
fn ratelimit_compare(secs: f64) {
    use meshward_benches::ratelimit::{policy_json, NativeFilter, SharedMap};
    let host = Host::builder().build().expect("host");
    let peers: Vec<String> = (0..1024u32)
        .map(|i| format!("10.{}.{}.7:40000", i >> 8, i & 0xff))
        .collect();
    let filter = |rate: &str, burst: u32| {
        let spec = PluginSpec::new("ratelimit", meshward_artifacts::RATELIMIT)
            .root_id("ratelimit")
            .plugin_config(policy_json(rate, burst, None));
        host.worker(&[host.load(spec).expect("plugin")])
            .expect("worker")
    };
    let mut allowed = filter("100000/s", 100_000);
    let mut limited = filter("1/h", 1);
    let noop_plugin = host
        .load(PluginSpec::new("noop", meshward_artifacts::NOOP))
        .expect("plugin");
    let mut noop = host.worker(&[noop_plugin]).expect("worker");
    let store = SharedMap::default();
    let mut native =
        NativeFilter::new(&policy_json("100000/s", 100_000, None), &store).expect("policy");
    // Every client once first: the limited worker then refuses every request.
    for p in &peers {
        rl_request(&mut allowed, p);
        rl_request(&mut limited, p);
        rl_request(&mut noop, p);
        native.decide(p, REQUEST);
    }
    assert_eq!(rl_request(&mut limited, &peers[0]), 429);
    const ROUND: usize = 256;
    let mut t: [Vec<f64>; 4] = Default::default();
    let (mut d_allowed, mut d_limited) = (Vec::new(), Vec::new());
    let mut at = 0usize;
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        let round = |f: &mut dyn FnMut(&str)| {
            let r = Instant::now();
            for p in peers.iter().cycle().skip(at).take(ROUND) {
                f(p);
            }
            r.elapsed().as_nanos() as f64 / ROUND as f64
        };
        let a = round(&mut |p| {
            black_box(rl_request(&mut allowed, p));
        });
        let l = round(&mut |p| {
            black_box(rl_request(&mut limited, p));
        });
        let n = round(&mut |p| {
            black_box(rl_request(&mut noop, p));
        });
        let v = round(&mut |p| {
            black_box(native.decide(p, REQUEST));
        });
        for (slot, x) in t.iter_mut().zip([a, l, n, v]) {
            slot.push(x);
        }
        d_allowed.push(a - n);
        d_limited.push(l - n);
        at = (at + ROUND) % peers.len();
        drop(host.take_logs());
    }
    assert!(host.traps().is_empty(), "{:?}", host.traps());
    println!("rounds of {ROUND} requests:");
    let print = |name: &str, v: &mut Vec<f64>| print_rounds(name, 26, v);
    let [a, l, n, v] = &mut t;
    print("host ratelimit allowed", a);
    print("host ratelimit limited", l);
    print("host noop", n);
    print("native allowed", v);
    print("allowed - noop (per round)", &mut d_allowed);
    print("limited - noop (per round)", &mut d_limited);
}

/// One line for per-round means `v` (sorted here): median, 10th percentile, minimum, count.
fn print_rounds(name: &str, width: usize, v: &mut [f64]) {
    v.sort_by(f64::total_cmp);
    let at = |q: usize| v.get(v.len() * q / 100).copied().unwrap_or(f64::NAN);
    println!(
        "{name:width$} median {:9.1} ns  p10 {:9.1} ns  min {:9.1} ns  ({} rounds)",
        at(50),
        at(10),
        at(0),
        v.len()
    );
}
