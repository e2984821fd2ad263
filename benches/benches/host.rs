//! Benchmarks of the meshward proxy-wasm host against baselines measured in the same run:
//! one request lifecycle (SDK no-op guest, raw-ABI no-op guest, header-logging guest) vs the
//! bare-wasmtime floor on the host's own engine configuration, VM start (both no-op guests) vs
//! the floor, shared-data get + CAS set vs a native store: host side alone; `guest_loop`, an
//! SDK guest as a plugin author writes it (`bench_shared`); `guest_loop_conformance`, the
//! conformance guest's loop (a Rust guest on raw-ABI wrappers, size-optimized); `guest_loop_raw`,
//! a WAT guest with a bump allocator. The SDK guests (`noop`, `bench_shared`) are built with the
//! `wasm-speed` profile (opt-level 3), the conformance and `headers` guests with `wasm` (opt "z");
//! `meshward_artifacts::module(name).profile` says which. Run with
//! `cargo bench -p meshward-benches -- --warm-up-time 1 --measurement-time 3`; with
//! `MESHWARD_BENCH_CLOCK=cpu` the lifecycle group (host and floor alike) is timed by the
//! thread's CPU time instead of the wall clock (for a machine busy with other work).

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use meshward_benches::cpu::Clock;
use meshward_benches::raw_guest::{
    RAW_NOOP_WAT, RAW_SHARED_KEY, RAW_SHARED_ROUNDS, RAW_SHARED_WAT,
};
use meshward_benches::{floor::Floor, native::NativeStore};
use meshward_host::{wasmtime_config, Host, PluginSpec, SetOutcome, StreamProps, Worker};
use std::hint::black_box;
use std::time::{Duration, Instant};

use meshward_benches::traffic::{REQUEST, RESPONSE};

/// The no-op guests: the SDK one (the SDK's per-context work is in both host and floor) and
/// the raw-ABI one (callbacks return at once: host minus floor is the host's own cost).
fn noop_guests() -> [(&'static str, Vec<u8>); 2] {
    [
        ("noop", meshward_artifacts::NOOP.to_vec()),
        (
            "raw_noop",
            wat::parse_str(RAW_NOOP_WAT).expect("raw guest WAT"),
        ),
    ]
}

fn lifecycle(c: &mut Criterion) {
    let clock = Clock::from_env();
    let mut g = c.benchmark_group(match clock {
        Clock::Wall => "lifecycle",
        Clock::ThreadCpu => "lifecycle_cpu",
    });
    let config = wasmtime_config().expect("engine config");
    let mut guests: Vec<(&str, Vec<u8>)> = noop_guests().into();
    guests.push(("headers", meshward_artifacts::HEADERS.to_vec()));
    for (name, wasm) in &guests {
        if *name != "headers" {
            let mut floor = Floor::new(wasm, &config).expect("floor VM");
            g.bench_function(format!("wasmtime_floor_{name}"), |b| {
                b.iter_custom(|iters| {
                    let start = clock.now();
                    for _ in 0..iters {
                        black_box(floor.lifecycle().expect("floor call"));
                    }
                    clock.since(start)
                })
            });
        }
        let host = Host::builder().build().expect("host");
        let plugin = host
            .load(PluginSpec::new(*name, wasm.clone()))
            .expect("plugin");
        let mut w = host.worker(&[plugin]).expect("worker");
        g.bench_function(format!("host_{name}"), |b| {
            b.iter_custom(|iters| {
                let start = clock.now();
                for _ in 0..iters {
                    let id = w.open_http_stream(StreamProps::new());
                    black_box(w.request_headers(id, REQUEST, true).expect("request"));
                    black_box(w.response_headers(id, RESPONSE, true).expect("response"));
                    w.complete(id).expect("complete");
                    w.release(id);
                }
                let elapsed = clock.since(start);
                drop(host.take_logs());
                elapsed
            })
        });
        assert!(host.traps().is_empty(), "{name}: {:?}", host.traps());
    }
    g.finish();
}

/// Time `iters` starts, each VM dropped outside the timed part before the next one starts (so
/// at most one is alive: the pool's slot count is never the limit). The slot reset a drop does
/// is not in this figure.
fn start_only<T>(iters: u64, mut start: impl FnMut() -> T) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let t = Instant::now();
        let vm = black_box(start());
        total += t.elapsed();
        drop(vm);
    }
    total
}

fn vm_start(c: &mut Criterion) {
    let mut g = c.benchmark_group("vm_start");
    let config = wasmtime_config().expect("engine config");
    for (name, wasm) in noop_guests() {
        let floor = Floor::new(&wasm, &config).expect("floor VM");
        g.bench_function(format!("wasmtime_floor_{name}"), |b| {
            b.iter_custom(|iters| start_only(iters, || floor.start_vm().expect("floor start")))
        });
        let host = Host::builder().build().expect("host");
        let plugin = host.load(PluginSpec::new(name, wasm)).expect("plugin");
        g.bench_function(format!("host_worker_{name}"), |b| {
            b.iter_custom(|iters| {
                start_only(iters, || {
                    host.worker(std::slice::from_ref(&plugin)).expect("worker")
                })
            })
        });
    }
    g.finish();
}

fn shared_data(c: &mut Criterion) {
    let mut g = c.benchmark_group("shared_get_cas_set");
    let native = NativeStore::default();
    native.set(b"bench/shared", b"0", 0);
    g.bench_function("native_store", |b| {
        b.iter(|| {
            let (v, cas) = native.get(b"bench/shared").expect("key");
            black_box(native.set(b"bench/shared", &v, cas))
        })
    });

    let host = Host::builder().build().expect("host");
    let data = host.shared_data();
    data.set_in("", b"bench/host", b"0", 0);
    g.bench_function("host_side", |b| {
        b.iter(|| {
            let (v, cas) = data.get_in("", b"bench/host").expect("key");
            let outcome = data.set_in("", b"bench/host", &v, cas);
            debug_assert!(matches!(outcome, SetOutcome::Ok(_)));
            black_box(outcome)
        })
    });

    // The SDK guest as a plugin author writes it (owned values from get_shared_data, the
    // SDK's allocator), built as the benchmark guests are (`wasm-speed`, opt-level 3).
    let sdk_config = format!("rounds={SDK_ROUNDS} key=bench/sdk");
    let sdk = host
        .load(
            PluginSpec::new("bench_shared", meshward_artifacts::BENCH_SHARED)
                .plugin_config(sdk_config.into_bytes()),
        )
        .expect("plugin");
    let mut sdk_worker = host.worker(&[sdk]).expect("worker");
    guest_loop(&mut g, "guest_loop", &mut sdk_worker, &[], SDK_ROUNDS);

    // The conformance guest's loop, kept for comparison: a Rust guest on its own raw-ABI
    // wrappers (a Vec per get), built with the filters' size profile (`wasm`, opt-level "z").
    let conformance = host
        .load(
            PluginSpec::new("loop", meshward_artifacts::CONFORMANCE)
                .plugin_config(b"shared_loop".to_vec()),
        )
        .expect("plugin");
    let mut conformance_worker = host.worker(&[conformance]).expect("worker");
    let rounds = CONFORMANCE_ROUNDS.to_string();
    let mut req: Vec<(&str, &str)> = REQUEST[..4].to_vec();
    req.push(("x-n", &rounds));
    guest_loop(
        &mut g,
        "guest_loop_conformance",
        &mut conformance_worker,
        &req,
        CONFORMANCE_ROUNDS,
    );

    // The same pairs from a raw-ABI guest: the ABI and the host's shared data, without a
    // guest allocator's work (the buffer the host asks for per get is a bump pointer).
    data.set_in("", RAW_SHARED_KEY, b"0", 0);
    let raw = wat::parse_str(RAW_SHARED_WAT).expect("raw shared WAT");
    let raw_plugin = host
        .load(PluginSpec::new("raw_shared", raw))
        .expect("plugin");
    let mut raw_worker = host.worker(&[raw_plugin]).expect("worker");
    guest_loop(
        &mut g,
        "guest_loop_raw",
        &mut raw_worker,
        &[],
        RAW_SHARED_ROUNDS,
    );
    assert!(host.traps().is_empty(), "{:?}", host.traps());
    let fails: Vec<String> = host
        .logs()
        .into_iter()
        .map(|r| r.message)
        .filter(|m| m.starts_with("FAIL "))
        .collect();
    assert!(fails.is_empty(), "{fails:?}");
    assert!(
        host.logs()
            .iter()
            .all(|r| !r.message.contains("bench_shared")),
        "the SDK guest logged an error"
    );
    g.finish();
}

/// Get + CAS set rounds per request of the SDK guest and of the conformance guest.
const SDK_ROUNDS: u32 = 1000;
const CONFORMANCE_ROUNDS: u32 = 1000;

/// Benchmark `name`: requests whose headers callback runs `rounds` get + CAS set pairs inside
/// the guest; the figure is per pair (the per-request overhead, ~1/`rounds` of it, included).
fn guest_loop(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    w: &mut Worker,
    req: &[(&str, &str)],
    rounds: u32,
) {
    let rounds = u64::from(rounds);
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let requests = iters.div_ceil(rounds);
            let start = Instant::now();
            for _ in 0..requests {
                let id = w.open_http_stream(StreamProps::new());
                black_box(w.request_headers(id, req, true).expect("request"));
                w.complete(id).expect("complete");
                w.release(id);
            }
            let per_round = start.elapsed().as_secs_f64() / (requests * rounds) as f64;
            Duration::from_secs_f64(per_round * iters as f64)
        })
    });
}

criterion_group!(benches, lifecycle, vm_start, shared_data);
criterion_main!(benches);
