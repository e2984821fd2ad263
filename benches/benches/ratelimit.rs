//! The rate-limit decision through the host against its baselines, in one criterion group
//! and one run: one request lifecycle (open stream, request headers, response headers,
//! complete, release) through the real `ratelimit` .wasm with one token-bucket rule keyed by
//! client address and IETF fields on allowed responses, both allowed and limited (429 local
//! reply with fields and problem+json), and with every client on the allow list (the filter's
//! fixed cost: request view, client address, counter, log line, but no rule); the same
//! lifecycle through the no-op guest; and the
//! same decision in native Rust (`meshward_benches::ratelimit`, the filter's core code over a
//! native CAS store). Every case rotates over the same 1024 client addresses. Run with
//! `cargo bench -p meshward-benches --bench ratelimit -- --warm-up-time 1 --measurement-time 3`;
//! with `MESHWARD_BENCH_CLOCK=cpu` every case is timed by the thread's CPU time instead of
//! the wall clock (for a machine that is busy with other work).

use criterion::{criterion_group, criterion_main, Criterion};
use meshward_benches::cpu::Clock;
use meshward_benches::ratelimit::{policy_json, Decision, NativeFilter, SharedMap};
use meshward_host::{Flow, Host, PluginSpec, StreamProps, Worker};
use std::hint::black_box;
use std::time::Duration;

use meshward_benches::traffic::{REQUEST, RESPONSE};

/// Far above what one of 1024 rotating clients can send: every request is allowed.
const ALLOWED: (&str, u32) = ("100000/s", 100_000);
/// One request per client per hour: after each client's first, every request is limited.
const LIMITED: (&str, u32) = ("1/h", 1);

fn clients() -> Vec<String> {
    (0..1024u32)
        .map(|i| format!("10.{}.{}.7:40000", i >> 8, i & 0xff))
        .collect()
}

/// One request through `w` from `peer`; the local reply's status, or 200 when forwarded.
fn lifecycle(w: &mut Worker, peer: &str) -> u32 {
    let id = w.open_http_stream(StreamProps::new().source_address(peer));
    let status = match w.request_headers(id, REQUEST, true).expect("request") {
        Flow::Continue => {
            black_box(w.response_headers(id, RESPONSE, true).expect("response"));
            200
        }
        Flow::LocalReply(r) => r.status,
        f => panic!("unexpected {f:?}"),
    };
    w.complete(id).expect("complete");
    w.release(id);
    status
}

fn host_worker(spec: PluginSpec) -> (Host, Worker) {
    let host = Host::builder().build().expect("host");
    let plugin = host.load(spec).unwrap_or_else(|e| panic!("{e}"));
    let w = host.worker(&[plugin]).expect("worker");
    (host, w)
}

/// Checks that a host case does what it is named for before it is timed.
fn expect_host(w: &mut Worker, clients: &[String], want: u32, field: bool) {
    for peer in clients {
        lifecycle(w, peer);
    }
    let id = w.open_http_stream(StreamProps::new().source_address(&clients[0]));
    let flow = w.request_headers(id, REQUEST, true).expect("request");
    match (&flow, want) {
        (Flow::Continue, 200) => {
            w.response_headers(id, RESPONSE, true).expect("response");
            let down = w.stream(id).expect("stream").response_headers().clone();
            assert_eq!(down.get("ratelimit").is_some(), field, "{down:?}");
        }
        (Flow::LocalReply(r), 429) => {
            assert!(r.headers.get("retry-after").is_some(), "{r:?}");
            assert!(r.headers.get("ratelimit").is_some(), "{r:?}");
        }
        _ => panic!("expected {want}, got {flow:?}"),
    }
    w.complete(id).expect("complete");
    w.release(id);
}

fn decision(c: &mut Criterion) {
    let clients = clients();
    let n = clients.len();
    let clock = Clock::from_env();
    let mut g = c.benchmark_group(match clock {
        Clock::Wall => "ratelimit_decision",
        Clock::ThreadCpu => "ratelimit_decision_cpu",
    });

    // (a) The real filter in the host: allowed, limited, and bypassing the rule.
    for (case, (rate, burst), allow, want) in [
        ("allowed", ALLOWED, None, 200),
        ("limited", LIMITED, None, 429),
        ("bypass", LIMITED, Some("10.0.0.0/8"), 200),
    ] {
        let (host, mut w) = host_worker(
            PluginSpec::new("ratelimit", meshward_artifacts::RATELIMIT)
                .root_id("ratelimit")
                .plugin_config(policy_json(rate, burst, allow)),
        );
        expect_host(&mut w, &clients, want, allow.is_none());
        let mut i = 0usize;
        g.bench_function(format!("host_ratelimit_{case}"), |b| {
            b.iter_custom(|iters| {
                let start = clock.now();
                for _ in 0..iters {
                    i = (i + 1) % n;
                    let status = lifecycle(&mut w, &clients[i]);
                    debug_assert_eq!(status, want);
                    black_box(status);
                }
                let elapsed = clock.since(start);
                drop(host.take_logs());
                elapsed
            })
        });
        assert!(host.traps().is_empty(), "{:?}", host.traps());
    }

    // (b) The same lifecycle through the no-op guest.
    let (host, mut w) = host_worker(PluginSpec::new("noop", meshward_artifacts::NOOP));
    expect_host(&mut w, &clients, 200, false);
    let mut i = 0usize;
    g.bench_function("host_noop", |b| {
        b.iter_custom(|iters| {
            let start = clock.now();
            for _ in 0..iters {
                i = (i + 1) % n;
                black_box(lifecycle(&mut w, &clients[i]));
            }
            let elapsed = clock.since(start);
            drop(host.take_logs());
            elapsed
        })
    });
    assert!(host.traps().is_empty(), "{:?}", host.traps());

    // (c) The same decision in native Rust over a native CAS store.
    for (case, (rate, burst), allowed) in [("allowed", ALLOWED, true), ("limited", LIMITED, false)]
    {
        let store = SharedMap::default();
        let mut f = NativeFilter::new(&policy_json(rate, burst, None), &store).expect("policy");
        for peer in &clients {
            f.decide(peer, REQUEST);
        }
        match f.decide(&clients[0], REQUEST) {
            Decision::Allow { response_headers } => {
                assert!(
                    allowed && response_headers.len() == 2,
                    "{response_headers:?}"
                )
            }
            Decision::Reply { status, .. } => assert!(!allowed && status == 429),
        }
        let mut i = 0usize;
        g.bench_function(format!("native_{case}"), |b| {
            b.iter_custom(|iters| {
                let start = clock.now();
                for _ in 0..iters {
                    i = (i + 1) % n;
                    black_box(f.decide(&clients[i], REQUEST));
                }
                clock.since(start)
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = decision
}
criterion_main!(benches);
