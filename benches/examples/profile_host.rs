//! Profiling driver (not a benchmark): runs one host path in a tight loop for `perf record`.
//! `cargo run --release -p meshward-benches --example profile_host -- lifecycle|empty|ratelimit|shared|vm_start|floor|floor_vm [secs]`.
//! With `--features meshward-host/profiling` and `MESHWARD_WASM_PROFILER=perfmap`, `perf report`
//! names the guest's functions too.

use meshward_benches::floor::Floor;
use meshward_host::{wasmtime_config, Host, PluginSpec, StreamProps};
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
            while start.elapsed() < until {
                for _ in 0..1000 {
                    let id = w.open_http_stream(StreamProps::new());
                    black_box(w.request_headers(id, REQUEST, true).expect("request"));
                    black_box(w.response_headers(id, RESPONSE, true).expect("response"));
                    w.complete(id).expect("complete");
                    w.release(id);
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
            let spec = PluginSpec::new("ratelimit", meshward_artifacts::RATELIMIT)
                .root_id("ratelimit")
                .plugin_config(cfg);
            let plugin = host.load(spec).expect("plugin");
            let mut w = host.worker(&[plugin]).expect("worker");
            let peers: Vec<String> = (0..1024u32)
                .map(|i| format!("10.{}.{}.7:40000", i >> 8, i & 0xff))
                .collect();
            let start = Instant::now();
            while start.elapsed() < until {
                for peer in &peers {
                    let id = w.open_http_stream(StreamProps::new().source_address(peer));
                    black_box(w.request_headers(id, REQUEST, true).expect("request"));
                    black_box(w.response_headers(id, RESPONSE, true).expect("response"));
                    w.complete(id).expect("complete");
                    w.release(id);
                }
                n += peers.len() as u64;
                drop(host.take_logs());
            }
        }
        // Guest-driven shared data: one request runs 1000 get + CAS set pairs (as the
        // `shared_get_cas_set/guest_loop` benchmark); n counts pairs.
        "shared" => {
            let host = Host::builder().build().expect("host");
            let spec = PluginSpec::new("loop", meshward_artifacts::CONFORMANCE)
                .plugin_config(b"shared_loop".to_vec());
            let plugin = host.load(spec).expect("plugin");
            let mut w = host.worker(&[plugin]).expect("worker");
            let mut req: Vec<(&str, &str)> = REQUEST[..4].to_vec();
            req.push(("x-n", "1000"));
            let start = Instant::now();
            while start.elapsed() < until {
                let id = w.open_http_stream(StreamProps::new());
                black_box(w.request_headers(id, &req, true).expect("request"));
                w.complete(id).expect("complete");
                w.release(id);
                n += 1000;
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
                        let id = w.open_http_stream(StreamProps::new());
                        black_box(w.request_headers(id, REQUEST, true).expect("request"));
                        black_box(w.response_headers(id, RESPONSE, true).expect("response"));
                        w.complete(id).expect("complete");
                        w.release(id);
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
                    let id = w.open_http_stream(StreamProps::new());
                    black_box(w.request_headers(id, REQUEST, true).expect("request"));
                    black_box(w.response_headers(id, RESPONSE, true).expect("response"));
                    w.complete(id).expect("complete");
                    w.release(id);
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
            compare(wasm, secs);
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

/// Interleaved short rounds of floor and host (lifecycle and VM start); prints the median, 10th
/// percentile and minimum of the per-round means: short rounds are mostly not preempted, so
/// the low percentiles show the cost without the load other processes put on the machine.
fn compare(wasm: &[u8], secs: f64) {
    let mut floor = Floor::new(wasm, &floor_config()).expect("floor");
    let host = Host::builder().build().expect("host");
    let plugin = host.load(PluginSpec::new("noop", wasm)).expect("plugin");
    let mut w = host.worker(std::slice::from_ref(&plugin)).expect("worker");
    // No plugin at all: the stream bookkeeping without any guest call.
    let mut empty = host.worker(&[]).expect("worker");
    let mut t: [Vec<f64>; 6] = Default::default();
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        let r = Instant::now();
        for _ in 0..200 {
            black_box(floor.lifecycle().expect("floor"));
        }
        t[0].push(r.elapsed().as_nanos() as f64 / 200.0);
        let r = Instant::now();
        for _ in 0..200 {
            let id = w.open_http_stream(StreamProps::new());
            black_box(w.request_headers(id, REQUEST, true).expect("request"));
            black_box(w.response_headers(id, RESPONSE, true).expect("response"));
            w.complete(id).expect("complete");
            w.release(id);
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
                host.worker(std::slice::from_ref(&plugin)).expect("w"),
            ));
        }
        t[3].push(r.elapsed().as_nanos() as f64 / 5.0);
        let r = Instant::now();
        for _ in 0..200 {
            let id = w.open_http_stream(StreamProps::new());
            black_box(w.request_headers(id, &[], true).expect("request"));
            black_box(w.response_headers(id, &[], true).expect("response"));
            w.complete(id).expect("complete");
            w.release(id);
        }
        t[4].push(r.elapsed().as_nanos() as f64 / 200.0);
        let r = Instant::now();
        for _ in 0..200 {
            let id = empty.open_http_stream(StreamProps::new());
            black_box(empty.request_headers(id, REQUEST, true).expect("request"));
            black_box(
                empty
                    .response_headers(id, RESPONSE, true)
                    .expect("response"),
            );
            empty.complete(id).expect("complete");
            empty.release(id);
        }
        t[5].push(r.elapsed().as_nanos() as f64 / 200.0);
        drop(host.take_logs());
    }
    let names = [
        "floor lifecycle",
        "host lifecycle",
        "floor vm_start",
        "host vm_start",
        "host no headers",
        "host no plugin",
    ];
    for (n, v) in names.iter().zip(t.iter_mut()) {
        v.sort_by(f64::total_cmp);
        println!(
            "{n:16} median {:9.1} ns  p10 {:9.1} ns  min {:9.1} ns  ({} rounds)",
            v[v.len() / 2],
            v[v.len() / 10],
            v[0],
            v.len()
        );
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
