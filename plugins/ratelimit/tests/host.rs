//! The real ratelimit .wasm (from meshward-artifacts) in the meshward host: limits shared
//! by worker VMs on threads, client identity, tiers, lists, shadow mode, pacing, the
//! global rate limit service over gRPC, bounded memory, and config errors.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use meshward_host::{
    Flow, GrpcCallRequest, GrpcReply, Host, LogLevel, MetricValue, Plugin, PluginSpec,
    VirtualClock, Worker,
};
use serde_json::json;

const T0: u64 = 1_800_000_000_000_000_000;

fn wasm() -> &'static [u8] {
    meshward_artifacts::bytes_of("ratelimit").expect("the artifacts build has the ratelimit filter")
}

fn policy(routes: serde_json::Value, settings: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "meshward.io/v1alpha1", "kind": "Policy", "service": "orders",
        "routes": routes, "ratelimit": settings,
    }))
    .unwrap()
}

fn default_route(rules: serde_json::Value) -> serde_json::Value {
    json!([{ "name": "default", "ratelimit": { "rules": rules } }])
}

struct Env {
    host: Host,
    clock: VirtualClock,
    plugin: Plugin,
}

fn env_with(
    config: Vec<u8>,
    f: impl FnOnce(meshward_host::HostBuilder) -> meshward_host::HostBuilder,
) -> Env {
    let clock = VirtualClock::new(T0);
    let host = f(Host::builder()
        .clock(clock.clone())
        .log_level(LogLevel::Debug))
    .build()
    .unwrap();
    let plugin = host
        .load(
            PluginSpec::new("ratelimit", wasm())
                .root_id("ratelimit")
                .plugin_config(config),
        )
        .unwrap_or_else(|e| panic!("load: {e}"));
    Env {
        host,
        clock,
        plugin,
    }
}

fn env(config: Vec<u8>) -> Env {
    env_with(config, |b| b)
}

fn get(w: &mut Worker, peer: &str, headers: &[(&str, &str)]) -> Flow {
    let id = w.open_http_stream(meshward_host::StreamProps::new().source_address(peer));
    let mut hs = vec![
        (":method", "GET"),
        (":path", "/api/x"),
        (":authority", "orders"),
    ];
    hs.extend_from_slice(headers);
    let flow = w.request_headers(id, &hs, true).unwrap();
    if let Flow::Continue = flow {
        w.response_headers(id, &[(":status", "200")], true).unwrap();
        w.complete(id).unwrap();
    }
    flow
}

fn status(f: &Flow) -> u32 {
    match f {
        Flow::Continue => 200,
        Flow::LocalReply(r) => r.status,
        Flow::Paused { .. } => 0,
        Flow::Reset => 1,
    }
}

fn counter(host: &Host, name: &str) -> u64 {
    match host.metrics().get(name) {
        Some(MetricValue::Counter(n)) => n,
        _ => 0,
    }
}

fn no_traps(host: &Host) {
    assert!(host.traps().is_empty(), "traps: {:?}", host.traps());
}

#[test]
fn two_workers_on_two_threads_admit_exactly_the_limit() {
    // 1/h with burst 100: time is frozen, so exactly 100 may pass in total.
    let e = env(policy(
        default_route(json!([{ "name": "per-client", "rate": "1/h", "burst": 100 }])),
        json!({}),
    ));
    let admitted = e
        .host
        .run_workers(2, std::slice::from_ref(&e.plugin), |_, w| {
            (0..150)
                .filter(|_| status(&get(w, "10.1.2.3:5000", &[])) == 200)
                .count()
        })
        .unwrap();
    assert_eq!(
        admitted.iter().sum::<usize>(),
        100,
        "per worker: {admitted:?}"
    );
    assert_eq!(
        counter(&e.host, "meshward_ratelimit.default.per-client.allowed"),
        100
    );
    assert_eq!(
        counter(&e.host, "meshward_ratelimit.default.per-client.limited"),
        200
    );
    no_traps(&e.host);
}

#[test]
fn rejection_has_retry_after_ietf_fields_and_problem_json() {
    let e = env(policy(
        default_route(json!([{ "name": "per-client", "rate": "10/s", "burst": 2 }])),
        json!({ "response": { "headers": "ietf+legacy" } }),
    ));
    let mut w = e.host.worker(std::slice::from_ref(&e.plugin)).unwrap();
    let id = w.open_http_stream(meshward_host::StreamProps::new().source_address("10.0.0.1:1"));
    let hs = [
        (":method", "GET"),
        (":path", "/"),
        (":authority", "a"),
        ("x-request-id", "req-1"),
    ];
    assert!(matches!(
        w.request_headers(id, &hs, true).unwrap(),
        Flow::Continue
    ));
    w.response_headers(id, &[(":status", "200")], true).unwrap();
    let down = w.stream(id).unwrap().response_headers().clone();
    assert_eq!(
        down.get("ratelimit-policy"),
        Some("\"per-client\";q=10;w=1")
    );
    assert_eq!(down.get("ratelimit"), Some("\"per-client\";r=1;t=1"));
    assert_eq!(status(&get(&mut w, "10.0.0.1:1", &[])), 200);
    match get(&mut w, "10.0.0.1:1", &[("x-request-id", "req-3")]) {
        Flow::LocalReply(r) => {
            assert_eq!(r.status, 429);
            assert_eq!(r.headers.get("retry-after"), Some("1"));
            assert_eq!(r.headers.get("ratelimit"), Some("\"per-client\";r=0;t=1"));
            assert_eq!(r.headers.get("x-ratelimit-remaining"), Some("0"));
            assert_eq!(
                r.headers.get("content-type"),
                Some("application/problem+json")
            );
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(
                body["type"],
                "https://iana.org/assignments/http-problem-types#quota-exceeded"
            );
            assert_eq!(body["violated-policies"], json!(["per-client"]));
        }
        f => panic!("{f:?}"),
    }
    let logs = e.host.logs();
    assert!(
        logs.iter()
            .any(|l| l.message.contains("x-request-id=req-3")
                && l.message.contains("outcome=limited")),
        "{logs:#?}"
    );
    // After 100ms one token is back.
    e.clock.advance(Duration::from_millis(100));
    assert_eq!(status(&get(&mut w, "10.0.0.1:1", &[])), 200);
    no_traps(&e.host);
}

/// Every refusal says its own wait, in its fields and its body, whether the worker builds it
/// afresh or sends again the one it built for the previous refusal.
#[test]
fn each_refusal_says_its_own_wait() {
    let e = env(policy(
        default_route(json!([{ "name": "per-client", "rate": "1/min" }])),
        json!({}),
    ));
    let mut w = e.host.worker(std::slice::from_ref(&e.plugin)).unwrap();
    let refusal = |w: &mut Worker, peer: &str| match get(w, peer, &[]) {
        Flow::LocalReply(r) => {
            assert_eq!(r.status, 429);
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            let detail = body["detail"].as_str().unwrap_or_default().to_string();
            (
                r.headers.get("retry-after").map(str::to_string),
                r.headers.get("ratelimit").map(str::to_string),
                detail,
            )
        }
        f => panic!("{f:?}"),
    };
    let wait = |secs: u64| {
        (
            Some(secs.to_string()),
            Some(format!("\"per-client\";r=0;t={secs}")),
            format!("rate limit `per-client` of route `default` exceeded; retry in {secs} s"),
        )
    };
    assert_eq!(status(&get(&mut w, "10.0.0.1:1", &[])), 200);
    e.clock.advance(Duration::from_millis(100));
    assert_eq!(refusal(&mut w, "10.0.0.1:1"), wait(60));
    // The same refusal again (sent whole from the worker's last reply).
    e.clock.advance(Duration::from_millis(100));
    assert_eq!(refusal(&mut w, "10.0.0.1:1"), wait(60));
    // Ten seconds on: a shorter wait.
    e.clock.advance(Duration::from_secs(10));
    assert_eq!(refusal(&mut w, "10.0.0.1:1"), wait(50));
    // Another client's refusal, then the first's again: each its own.
    assert_eq!(status(&get(&mut w, "10.0.0.2:1", &[])), 200);
    assert_eq!(refusal(&mut w, "10.0.0.2:1"), wait(60));
    assert_eq!(refusal(&mut w, "10.0.0.1:1"), wait(50));
    assert_eq!(
        counter(&e.host, "meshward_ratelimit.default.per-client.limited"),
        5
    );
    no_traps(&e.host);
}

#[test]
fn spoofed_x_forwarded_for_cannot_move_a_client_to_another_bucket() {
    let e = env(policy(
        default_route(json!([{ "name": "per-client", "rate": "1/h", "burst": 2 }])),
        json!({ "client_ip": { "source": "xff", "trusted_hops": 1 } }),
    ));
    let mut w = e.host.worker(std::slice::from_ref(&e.plugin)).unwrap();
    // The gateway appends the address it saw (9.9.9.9); whatever the client wrote is left of it.
    let spoofs = [
        "1.1.1.1, 9.9.9.9",
        "2.2.2.2, 9.9.9.9",
        "3.3.3.3,4.4.4.4, 9.9.9.9",
        "garbage, 9.9.9.9",
    ];
    let codes: Vec<u32> = spoofs
        .iter()
        .map(|x| status(&get(&mut w, "10.0.0.9:1", &[("x-forwarded-for", x)])))
        .collect();
    assert_eq!(codes, [200, 200, 429, 429]);
    // Another real client has its own bucket; a header with fewer entries than trusted hops
    // falls back to the peer address (not to the client-written entry).
    assert_eq!(
        status(&get(
            &mut w,
            "10.0.0.9:1",
            &[("x-forwarded-for", "9.9.9.9, 8.8.8.8")]
        )),
        200
    );
    assert_eq!(
        status(&get(&mut w, "10.0.0.7:1", &[("x-forwarded-for", "")])),
        200
    );
    assert_eq!(status(&get(&mut w, "10.0.0.7:1", &[])), 200);
    assert_eq!(status(&get(&mut w, "10.0.0.7:1", &[])), 429);
    no_traps(&e.host);
}

#[test]
fn tiers_only_known_exact_values_escalate() {
    let e = env(policy(
        default_route(
            json!([{ "name": "per-client", "algorithm": "fixed-window", "rate": "2/h",
                               "tiers": { "premium": "5/h" } }]),
        ),
        json!({ "tiers": { "from": "header:x-meshward-tier", "default": "free", "names": ["free", "premium"] } }),
    ));
    let mut w = e.host.worker(std::slice::from_ref(&e.plugin)).unwrap();
    let admitted = |w: &mut Worker, peer: &str, tier: &[(&str, &str)]| {
        (0..8)
            .filter(|_| status(&get(w, peer, tier)) == 200)
            .count()
    };
    assert_eq!(
        admitted(&mut w, "10.0.1.1:1", &[("x-meshward-tier", "premium")]),
        5
    );
    for (i, attempt) in [
        "Premium",
        "premium,premium",
        "platinum",
        "premium\u{7f}",
        "",
    ]
    .iter()
    .enumerate()
    {
        let peer = format!("10.0.2.{i}:1");
        assert_eq!(
            admitted(&mut w, &peer, &[("x-meshward-tier", attempt)]),
            2,
            "tier value {attempt:?}"
        );
    }
    // Two tier headers: the first one counts (as Envoy's get_header_map_value).
    assert_eq!(
        admitted(
            &mut w,
            "10.0.3.1:1",
            &[("x-meshward-tier", "free"), ("x-meshward-tier", "premium")]
        ),
        2
    );
    no_traps(&e.host);
}

#[test]
fn deny_list_gets_403_and_allow_list_bypasses() {
    let e = env(policy(
        default_route(json!([{ "name": "per-client", "rate": "1/h", "burst": 1 }])),
        json!({ "allow_cidrs": ["10.0.0.0/8", "2001:db8::/32"], "deny_cidrs": ["203.0.113.0/24", "10.66.0.0/16"] }),
    ));
    let mut w = e.host.worker(std::slice::from_ref(&e.plugin)).unwrap();
    match get(&mut w, "203.0.113.9:1", &[]) {
        Flow::LocalReply(r) => {
            assert_eq!(r.status, 403);
            assert!(String::from_utf8_lossy(&r.body).contains("deny list"));
        }
        f => panic!("{f:?}"),
    }
    assert_eq!(
        status(&get(&mut w, "10.66.1.1:1", &[])),
        403,
        "deny wins over allow"
    );
    assert_eq!(
        status(&get(&mut w, "[::ffff:203.0.113.5]:1", &[])),
        403,
        "v4-mapped v6"
    );
    for _ in 0..5 {
        assert_eq!(status(&get(&mut w, "10.1.1.1:1", &[])), 200);
        assert_eq!(status(&get(&mut w, "[2001:db8::1]:1", &[])), 200);
    }
    assert_eq!(status(&get(&mut w, "192.0.2.1:1", &[])), 200);
    assert_eq!(status(&get(&mut w, "192.0.2.1:1", &[])), 429);
    assert_eq!(counter(&e.host, "meshward_ratelimit.denied"), 3);
    assert_eq!(counter(&e.host, "meshward_ratelimit.bypassed"), 10);
    no_traps(&e.host);
}

#[test]
fn shadow_rules_count_and_mark_but_let_through() {
    let e = env(policy(
        default_route(json!([{ "name": "trial", "rate": "1/h", "burst": 1, "shadow": true }])),
        json!({}),
    ));
    let mut w = e.host.worker(std::slice::from_ref(&e.plugin)).unwrap();
    let mut marks = Vec::new();
    for _ in 0..3 {
        let id = w.open_http_stream(meshward_host::StreamProps::new().source_address("10.0.0.1:1"));
        let f = w
            .request_headers(
                id,
                &[(":method", "GET"), (":path", "/"), (":authority", "a")],
                true,
            )
            .unwrap();
        assert!(matches!(f, Flow::Continue));
        let up = w.stream(id).unwrap().request_headers().clone();
        marks.push(up.get("x-meshward-ratelimit-shadow").map(str::to_string));
    }
    assert_eq!(marks, [None, Some("trial".into()), Some("trial".into())]);
    assert_eq!(
        counter(&e.host, "meshward_ratelimit.default.trial.shadow_limited"),
        2
    );
    no_traps(&e.host);
}

#[test]
fn leaky_bucket_paces_and_rejects_beyond_the_deadline() {
    let e = env(policy(
        default_route(
            json!([{ "name": "paced", "algorithm": "leaky-bucket", "rate": "10/s",
                               "burst": 3, "max_delay": "250ms" }]),
        ),
        json!({ "queue": { "max_len": 8, "tick": "10ms" } }),
    ));
    let mut w = e.host.worker(std::slice::from_ref(&e.plugin)).unwrap();
    let hs = [(":method", "GET"), (":path", "/"), (":authority", "a")];
    let mut ids = Vec::new();
    let mut flows = Vec::new();
    for _ in 0..4 {
        let id = w.open_http_stream(meshward_host::StreamProps::new().source_address("10.0.0.1:1"));
        flows.push(status(&w.request_headers(id, &hs, true).unwrap()));
        ids.push(id);
    }
    // now, +100ms, +200ms, and +300ms > 250ms: refused at once.
    assert_eq!(flows, [200, 0, 0, 429]);
    w.advance(Duration::from_millis(95));
    assert!(w.stream(ids[1]).unwrap().paused());
    w.advance(Duration::from_millis(10));
    assert!(
        w.stream(ids[1]).unwrap().forwarded_upstream(),
        "released at +100ms"
    );
    assert!(w.stream(ids[2]).unwrap().paused());
    w.advance(Duration::from_millis(100));
    assert!(
        w.stream(ids[2]).unwrap().forwarded_upstream(),
        "released at +200ms"
    );
    assert_eq!(
        counter(&e.host, "meshward_ratelimit.default.paced.delayed"),
        2
    );
    no_traps(&e.host);
}

#[test]
fn a_paced_request_with_a_body_goes_upstream_whole_when_its_turn_comes() {
    // The filter exports no body callbacks: a paced request's body waits with its headers
    // (as Envoy holds it behind headers that stopped all iteration) and goes upstream whole.
    let e = paced_env();
    let mut w = e.host.worker(std::slice::from_ref(&e.plugin)).unwrap();
    let hs = [(":method", "POST"), (":path", "/"), (":authority", "a")];
    let mut ids = Vec::new();
    for _ in 0..2 {
        let id = w.open_http_stream(meshward_host::StreamProps::new().source_address("10.0.0.1:1"));
        w.request_headers(id, &hs, false).unwrap();
        w.request_body(id, b"first half, ", false).unwrap();
        w.request_body(id, b"second half", true).unwrap();
        ids.push(id);
    }
    let first = w.stream(ids[0]).unwrap();
    assert!(first.forwarded_upstream());
    assert_eq!(first.request_body(), b"first half, second half");
    assert!(
        w.stream(ids[1]).unwrap().paused(),
        "the second waits its turn"
    );
    w.advance(Duration::from_millis(110));
    let second = w.stream(ids[1]).unwrap();
    assert!(second.forwarded_upstream(), "released at +100ms");
    assert_eq!(second.request_body(), b"first half, second half");
    // The response and its body pass through too.
    w.response_headers(ids[0], &[(":status", "200")], false)
        .unwrap();
    w.response_body(ids[0], b"ok", true).unwrap();
    let first = w.stream(ids[0]).unwrap();
    assert!(first.response_sent());
    assert_eq!(first.response_body(), b"ok");
    no_traps(&e.host);
}

#[test]
fn a_full_pacing_queue_refuses_and_charges_nothing() {
    let e = env(policy(
        default_route(
            json!([{ "name": "paced", "algorithm": "leaky-bucket", "rate": "10/s", "burst": 5 }]),
        ),
        json!({ "queue": { "max_len": 1 } }),
    ));
    let mut w = e.host.worker(std::slice::from_ref(&e.plugin)).unwrap();
    let codes: Vec<u32> = (0..3)
        .map(|_| status(&get(&mut w, "10.0.0.1:1", &[])))
        .collect();
    assert_eq!(codes, [200, 0, 429]);
    no_traps(&e.host);
}

/// Opens a stream from `peer` and sends request headers; the stream id and its status so far.
fn send(w: &mut Worker, peer: &str, extra: &[(&str, &str)]) -> (meshward_host::StreamId, u32) {
    let id = w.open_http_stream(meshward_host::StreamProps::new().source_address(peer));
    let mut hs = vec![(":method", "GET"), (":path", "/"), (":authority", "a")];
    hs.extend_from_slice(extra);
    let flow = w.request_headers(id, &hs, true).unwrap();
    (id, status(&flow))
}

fn paced_env() -> Env {
    env(policy(
        default_route(
            json!([{ "name": "paced", "algorithm": "leaky-bucket", "rate": "10/s", "burst": 2,
                     "max_delay": "1s" }]),
        ),
        json!({ "queue": { "max_len": 8, "tick": "10ms" } }),
    ))
}

#[test]
fn a_paced_request_whose_client_leaves_gives_its_turn_back() {
    let e = paced_env();
    let mut w = e.host.worker(std::slice::from_ref(&e.plugin)).unwrap();
    // Turns at +0, +100, +200 ms; a fourth would wait 300 ms with 3 ahead: refused.
    let (_, s0) = send(&mut w, "10.0.0.1:1", &[]);
    let (a, s1) = send(&mut w, "10.0.0.1:1", &[]);
    let (b, s2) = send(&mut w, "10.0.0.1:1", &[]);
    let (_, s3) = send(&mut w, "10.0.0.1:1", &[]);
    assert_eq!([s0, s1, s2, s3], [200, 0, 0, 429]);
    // The client waiting for +100 ms goes away (stream reset before it was resumed).
    w.complete(a).unwrap();
    // Its turn is given back: the next request waits instead of being refused, and the one
    // that was already waiting keeps its turn.
    let (c, s4) = send(&mut w, "10.0.0.1:1", &[]);
    assert_eq!(s4, 0, "paused, not refused");
    let (_, s5) = send(&mut w, "10.0.0.1:1", &[]);
    assert_eq!(s5, 429, "the queue is full again");
    w.advance(Duration::from_millis(205));
    // Both go at +200 ms: the newcomer was scheduled as if the one that left had never
    // come (the one already waiting cannot be moved earlier).
    assert!(w.stream(b).unwrap().forwarded_upstream(), "kept its turn");
    assert!(
        w.stream(c).unwrap().forwarded_upstream(),
        "took the freed time"
    );
    assert!(!w.stream(a).unwrap().forwarded_upstream());
    assert_eq!(
        counter(&e.host, "meshward_ratelimit.default.paced.delayed"),
        3
    );
    // After the queue drained the bucket is whole again: one goes now, the next waits.
    w.advance(Duration::from_millis(200));
    let (_, s6) = send(&mut w, "10.0.0.1:1", &[]);
    let (_, s7) = send(&mut w, "10.0.0.1:1", &[]);
    assert_eq!([s6, s7], [200, 0]);
    no_traps(&e.host);
}

#[test]
fn a_paced_request_refused_at_its_deadline_charges_nothing_still_ahead() {
    let e = paced_env();
    let mut w = e.host.worker(std::slice::from_ref(&e.plugin)).unwrap();
    let (_, s0) = send(&mut w, "10.0.0.1:1", &[]);
    let (late, s1) = send(&mut w, "10.0.0.1:1", &[]);
    let (later, s2) = send(&mut w, "10.0.0.1:1", &[]);
    assert_eq!([s0, s1, s2], [200, 0, 0]);
    // The proxy stalls: the next tick comes at +150 ms, past the first waiter's deadline
    // (+100 ms and two ticks) but before the second's turn. The first is refused; of its turn
    // [+100, +200) the half still ahead is given back.
    e.clock.advance(Duration::from_millis(150));
    w.poll();
    assert_eq!(
        w.stream(late).unwrap().local_reply().map(|r| r.status),
        Some(429)
    );
    assert!(w.stream(later).unwrap().paused());
    // With the refund the next two wait for +250 and +350 ms (without it, +300 and +400).
    let (x, s3) = send(&mut w, "10.0.0.1:1", &[]);
    let (y, s4) = send(&mut w, "10.0.0.1:1", &[]);
    let (_, s5) = send(&mut w, "10.0.0.1:1", &[]);
    assert_eq!([s3, s4, s5], [0, 0, 429]);
    w.advance(Duration::from_millis(55));
    assert!(
        w.stream(later).unwrap().forwarded_upstream(),
        "its turn at +200 ms"
    );
    assert!(
        w.stream(x).unwrap().paused(),
        "its turn is +250 ms, not +200"
    );
    w.advance(Duration::from_millis(50));
    assert!(w.stream(x).unwrap().forwarded_upstream());
    assert!(w.stream(y).unwrap().paused());
    w.advance(Duration::from_millis(100));
    assert!(w.stream(y).unwrap().forwarded_upstream());
    no_traps(&e.host);
}

// --- CAS retries running out -----------------------------------------------------------

/// The filter's slot-creation lock key (`plugins/ratelimit/src/lib.rs`, `LOCK_KEY`).
const LOCK_KEY: &[u8] = "mwrl\u{1f}lock".as_bytes();

#[test]
fn when_the_store_gives_up_on_cas_exhausted_decides() {
    for (mode, want) in [("deny", 429), ("allow", 200)] {
        let e = env(policy(
            default_route(json!([{ "name": "per-client", "rate": "1/h", "burst": 5 }])),
            json!({ "shared": { "cas_retries": 2, "on_cas_exhausted": mode } }),
        ));
        let mut w = e.host.worker(std::slice::from_ref(&e.plugin)).unwrap();
        assert_eq!(status(&get(&mut w, "10.0.0.1:1", &[])), 200);
        // Another worker holds the slot-creation lock (as if it stalled between taking and
        // releasing it; its lease runs for an hour): a new client's slot cannot be created
        // within the bounded retries.
        let lease = (T0 + 3_600_000_000_000).to_string();
        e.host
            .shared_data()
            .set_in("", LOCK_KEY, lease.as_bytes(), 0);
        for _ in 0..3 {
            assert_eq!(status(&get(&mut w, "10.0.0.2:1", &[])), want, "{mode}");
        }
        assert_eq!(
            counter(
                &e.host,
                "meshward_ratelimit.default.per-client.cas_exhausted"
            ),
            3,
            "{mode}"
        );
        // Clients whose slot exists are unaffected; once the lock is free, new ones are
        // limited as usual, and the exhausted attempts charged nothing.
        assert_eq!(status(&get(&mut w, "10.0.0.1:1", &[])), 200);
        e.host.shared_data().set_in("", LOCK_KEY, b"0", 0);
        let codes: Vec<u32> = (0..6)
            .map(|_| status(&get(&mut w, "10.0.0.2:1", &[])))
            .collect();
        assert_eq!(codes, [200, 200, 200, 200, 200, 429], "{mode}");
        no_traps(&e.host);
    }
}

#[test]
fn a_lock_left_by_a_dead_worker_is_taken_over_when_its_lease_ends() {
    // Shared data outlives VMs: a worker that trapped while holding the slot-creation lock
    // leaves it taken. Its one-second lease ends, and then new clients get slots again.
    let e = env(policy(
        default_route(json!([{ "name": "per-client", "rate": "1/h", "burst": 2 }])),
        json!({ "shared": { "cas_retries": 2, "on_cas_exhausted": "deny" } }),
    ));
    let mut w = e.host.worker(std::slice::from_ref(&e.plugin)).unwrap();
    assert_eq!(status(&get(&mut w, "10.0.0.1:1", &[])), 200);
    let lease = (T0 + 1_000_000_000).to_string();
    e.host
        .shared_data()
        .set_in("", LOCK_KEY, lease.as_bytes(), 0);
    assert_eq!(status(&get(&mut w, "10.0.0.2:1", &[])), 429);
    e.clock.advance(Duration::from_millis(999));
    assert_eq!(status(&get(&mut w, "10.0.0.2:1", &[])), 429);
    e.clock.advance(Duration::from_millis(2));
    let codes: Vec<u32> = (0..3)
        .map(|_| status(&get(&mut w, "10.0.0.2:1", &[])))
        .collect();
    assert_eq!(codes, [200, 200, 429]);
    assert_eq!(
        e.host.shared_data().get_in("", LOCK_KEY).map(|(v, _)| v),
        Some(b"0".to_vec()),
        "the lock is released after the takeover"
    );
    no_traps(&e.host);
}

#[test]
fn workers_racing_on_one_key_with_one_cas_attempt_deny_exactly_the_exhausted() {
    // One bucket for everyone, far from its limit, and a single CAS attempt per request: a
    // request whose commit loses the race to the other worker is out of retries at once.
    // Which requests lose depends on the threads' timing; the test runs rounds until some
    // did (almost always the first) and checks every one of them was refused and counted.
    let e = env(policy(
        default_route(json!([{ "name": "all", "rate": "1/h", "burst": 1000000, "key": [] }])),
        json!({ "shared": { "cas_retries": 1, "on_cas_exhausted": "deny" } }),
    ));
    let (mut ok, mut denied) = (0u64, 0u64);
    for _round in 0..20 {
        let per_worker = e
            .host
            .run_workers(2, std::slice::from_ref(&e.plugin), |i, w| {
                let peer = format!("10.0.0.{}:1", i + 1);
                let mut seen = (0u64, 0u64);
                for _ in 0..2000 {
                    match get(w, &peer, &[]) {
                        Flow::Continue => seen.0 += 1,
                        Flow::LocalReply(r) if r.status == 429 => {
                            assert_eq!(r.headers.get("retry-after"), Some("1"));
                            seen.1 += 1;
                        }
                        f => panic!("{f:?}"),
                    }
                }
                seen
            })
            .unwrap();
        for (a, d) in per_worker {
            ok += a;
            denied += d;
        }
        if denied > 0 {
            break;
        }
    }
    eprintln!("{denied} of {} requests lost the CAS race", ok + denied);
    assert!(
        denied > 0,
        "no CAS race lost in 20 rounds of 2 × 2000 requests"
    );
    assert_eq!(
        counter(&e.host, "meshward_ratelimit.default.all.cas_exhausted"),
        denied
    );
    assert_eq!(
        counter(&e.host, "meshward_ratelimit.default.all.allowed"),
        ok
    );
    assert_eq!(
        counter(&e.host, "meshward_ratelimit.default.all.limited"),
        0
    );
    // Every admitted request was charged exactly once, the denied ones not at all.
    let (rec, _) = e
        .host
        .shared_data()
        .get(slot_key(&e.host).as_slice())
        .expect("the bucket's slot");
    let tat = u64::from_le_bytes(rec[..8].try_into().unwrap());
    assert_eq!(
        tat,
        T0 + ok * 3_600_000_000_000,
        "admitted {ok}, denied {denied}"
    );
    no_traps(&e.host);
}

/// The one rate-limit slot in shared data (every key but the lock).
fn slot_key(host: &Host) -> Vec<u8> {
    let keys: Vec<Vec<u8>> = host
        .shared_data()
        .keys_in("")
        .into_iter()
        .filter(|k| k.as_slice() != LOCK_KEY)
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    keys.into_iter().next().unwrap_or_default()
}

// --- the global rate limit service -----------------------------------------------------

/// The RLS messages, written again from envoy/service/ratelimit/v3/rls.proto for the test so
/// a wrong field number in the filter would not cancel out.
mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Request {
        #[prost(string, tag = "1")]
        pub domain: String,
        #[prost(message, repeated, tag = "2")]
        pub descriptors: Vec<Descriptor>,
        #[prost(uint32, tag = "3")]
        pub hits_addend: u32,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Descriptor {
        #[prost(message, repeated, tag = "1")]
        pub entries: Vec<Entry>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Entry {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Response {
        #[prost(int32, tag = "1")]
        pub overall_code: i32,
        #[prost(message, repeated, tag = "2")]
        pub statuses: Vec<Status>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Status {
        #[prost(int32, tag = "1")]
        pub code: i32,
        #[prost(uint32, tag = "3")]
        pub limit_remaining: u32,
        #[prost(message, optional, tag = "4")]
        pub duration_until_reset: Option<Duration>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Duration {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }
}

fn rls_env(
    failure_mode: &str,
    answer: impl Fn(&proto::Request) -> Option<GrpcReply> + Send + Sync + 'static,
) -> (Env, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let config = policy(
        default_route(json!([
            { "name": "local", "rate": "6/min", "burst": 3 },
            { "name": "org", "algorithm": "fixed-window", "rate": "1000/min", "key": ["header:x-org"], "global": true }
        ])),
        json!({ "global": { "cluster": "rls", "domain": "orders", "timeout": "50ms", "failure_mode": failure_mode } }),
    );
    let e = env_with(config, move |b| {
        b.grpc_cluster("rls", move |req: &GrpcCallRequest| {
            assert_eq!(req.service, "envoy.service.ratelimit.v3.RateLimitService");
            assert_eq!(req.method, "ShouldRateLimit");
            seen.fetch_add(1, Ordering::SeqCst);
            let msg = <proto::Request as prost::Message>::decode(req.message.as_slice())
                .expect("a RateLimitRequest");
            answer(&msg)
        })
    });
    (e, calls)
}

fn encode(r: &proto::Response) -> Vec<u8> {
    prost::Message::encode_to_vec(r)
}

fn ask(w: &mut Worker, org: &str) -> u32 {
    let id = w.open_http_stream(meshward_host::StreamProps::new().source_address("10.0.0.1:1"));
    let hs = [
        (":method", "GET"),
        (":path", "/"),
        (":authority", "a"),
        ("x-org", org),
    ];
    let f = w.request_headers(id, &hs, true).unwrap();
    if let Flow::Paused { .. } = f {
        w.advance(Duration::from_millis(60));
    }
    let s = w.stream(id).unwrap();
    if let Some(r) = s.local_reply() {
        return r.status;
    }
    if s.forwarded_upstream() {
        200
    } else {
        0
    }
}

#[test]
fn rls_allows_and_sees_the_descriptors() {
    let (e, calls) = rls_env("allow", |req| {
        assert_eq!(req.domain, "orders");
        let d = &req.descriptors[0].entries;
        assert_eq!(
            (d[0].key.as_str(), d[0].value.as_str()),
            ("meshward_rule", "default/org")
        );
        assert_eq!((d[1].key.as_str(), d[1].value.as_str()), ("x-org", "acme"));
        Some(
            GrpcReply::ok(encode(&proto::Response {
                overall_code: 1,
                statuses: vec![],
            }))
            .after(Duration::from_millis(5)),
        )
    });
    let mut w = e.host.worker(std::slice::from_ref(&e.plugin)).unwrap();
    assert_eq!(ask(&mut w, "acme"), 200);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    no_traps(&e.host);
}

#[test]
fn rls_over_limit_is_refused_cached_and_refunds_local_rules() {
    let (e, calls) = rls_env("allow", |req| {
        let over = req.descriptors[0]
            .entries
            .iter()
            .any(|x| x.value == "greedy");
        let st = proto::Status {
            code: if over { 2 } else { 1 },
            limit_remaining: 0,
            duration_until_reset: Some(proto::Duration {
                seconds: 30,
                nanos: 0,
            }),
        };
        Some(GrpcReply::ok(encode(&proto::Response {
            overall_code: if over { 2 } else { 1 },
            statuses: vec![st],
        })))
    });
    let mut w = e.host.worker(std::slice::from_ref(&e.plugin)).unwrap();
    assert_eq!(ask(&mut w, "greedy"), 429);
    assert_eq!(
        ask(&mut w, "greedy"),
        429,
        "answered from the over-limit cache"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // The local rule (burst 3) was not charged for the two refusals.
    assert_eq!(
        (0..3).map(|_| ask(&mut w, "nice")).collect::<Vec<_>>(),
        [200, 200, 200]
    );
    assert_eq!(ask(&mut w, "nice"), 429);
    // After the announced reset the service is asked again.
    e.clock.advance(Duration::from_secs(31));
    let _ = ask(&mut w, "greedy");
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    no_traps(&e.host);
}

#[test]
fn rls_errors_and_timeouts_follow_the_failure_mode() {
    let (e, _) = rls_env("allow", |_| Some(GrpcReply::error(14, "unavailable")));
    let mut w = e.host.worker(std::slice::from_ref(&e.plugin)).unwrap();
    assert_eq!(ask(&mut w, "acme"), 200, "fail open");
    assert_eq!(
        counter(&e.host, "meshward_ratelimit.default.org.rls_error"),
        1
    );

    let (e, _) = rls_env("deny", |_| Some(GrpcReply::error(14, "unavailable")));
    let mut w = e.host.worker(std::slice::from_ref(&e.plugin)).unwrap();
    assert_eq!(ask(&mut w, "acme"), 500, "fail closed");

    // Slower than the 50ms timeout.
    let (e, _) = rls_env("deny", |_| {
        Some(
            GrpcReply::ok(encode(&proto::Response {
                overall_code: 1,
                statuses: vec![],
            }))
            .after(Duration::from_secs(1)),
        )
    });
    let mut w = e.host.worker(std::slice::from_ref(&e.plugin)).unwrap();
    assert_eq!(ask(&mut w, "acme"), 500, "timeout, fail closed");
    assert_eq!(
        counter(&e.host, "meshward_ratelimit.default.org.rls_error"),
        1
    );
    // Garbage instead of a RateLimitResponse is an error too, never a trap.
    let (e, _) = rls_env("allow", |_| Some(GrpcReply::ok(vec![0xff, 0xff, 0xff])));
    let mut w = e.host.worker(std::slice::from_ref(&e.plugin)).unwrap();
    assert_eq!(ask(&mut w, "acme"), 200);
    no_traps(&e.host);
}

#[test]
fn a_client_that_leaves_while_the_service_is_asked_is_not_charged_locally() {
    // The service never answers "slow" (the test leaves those calls pending).
    let (e, calls) = rls_env("allow", |req| {
        let slow = req.descriptors[0].entries.iter().any(|x| x.value == "slow");
        (!slow).then(|| {
            GrpcReply::ok(encode(&proto::Response {
                overall_code: 1,
                statuses: vec![],
            }))
        })
    });
    let mut w = e.host.worker(std::slice::from_ref(&e.plugin)).unwrap();
    for _ in 0..3 {
        let (id, st) = send(&mut w, "10.0.0.1:1", &[("x-org", "slow")]);
        assert_eq!(st, 0, "waiting for the service");
        // The client goes away before the answer (or the timeout).
        w.complete(id).unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // The local rule (burst 3) was given back what the three took.
    assert_eq!(
        (0..4).map(|_| ask(&mut w, "nice")).collect::<Vec<_>>(),
        [200, 200, 200, 429]
    );
    w.advance(Duration::from_millis(100));
    no_traps(&e.host);
}

// --- memory and configuration ----------------------------------------------------------

#[test]
fn a_million_client_addresses_keep_shared_data_bounded() {
    // A million in an optimized build (`cargo test --release`); a debug build runs the host
    // about 10x slower, so it takes 100k unless MESHWARD_RL_CLIENTS says otherwise. Either is
    // far above the 2 × 1024 slots, which is what the bound is about.
    let default = if cfg!(debug_assertions) {
        100_000
    } else {
        1_000_000
    };
    let n: u32 = std::env::var("MESHWARD_RL_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    let e = env(policy(
        default_route(json!([
            { "name": "per-client", "rate": "5/s", "burst": 5 },
            { "name": "per-subnet", "algorithm": "sliding-window", "rate": "100/min" }
        ])),
        json!({ "shared": { "slots": 1024 }, "client_ip": { "ipv6_mask": 128 } }),
    ));
    let mut w = e.host.worker(std::slice::from_ref(&e.plugin)).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut peer = String::new();
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        peer.clear();
        if i % 2 == 0 {
            let b = (x as u32).to_be_bytes();
            peer.push_str(&format!("{}.{}.{}.{}:1", b[0], b[1], b[2], b[3]));
        } else {
            peer.push_str(&format!(
                "[2001:db8:{:x}:{:x}::{:x}]:1",
                x >> 48,
                (x >> 32) & 0xffff,
                x & 0xffff
            ));
        }
        let id = w.open_http_stream(meshward_host::StreamProps::new().source_address(&peer));
        let _ = w
            .request_headers(
                id,
                &[(":method", "GET"), (":path", "/"), (":authority", "a")],
                true,
            )
            .unwrap();
        w.complete(id).unwrap();
        if i % 1000 == 0 {
            e.clock.advance(Duration::from_millis(1));
        }
    }
    // Two rules × 1024 slots + the slot-creation lock.
    let keys = e.host.shared_data().len();
    assert!(keys <= 2 * 1024 + 1, "{keys} shared-data keys");
    assert!(
        e.host.shared_data().bytes() < 2 * 1024 * 128,
        "{} bytes",
        e.host.shared_data().bytes()
    );
    no_traps(&e.host);
}

#[test]
fn bad_config_is_refused_with_the_field_path() {
    let clock = VirtualClock::new(T0);
    let host = Host::builder().clock(clock).build().unwrap();
    let config = policy(
        default_route(json!([{ "name": "per-client", "rate": "100/fortnight" }])),
        json!({}),
    );
    let err = host
        .load(PluginSpec::new("ratelimit", wasm()).plugin_config(config))
        .expect_err("must be refused");
    let text = err.to_string();
    assert!(text.contains("routes[0].ratelimit.rules[0].rate"), "{text}");
    assert!(text.contains("100/fortnight"), "{text}");
    let config = policy(
        default_route(json!([{ "name": "a", "rate": "1/s", "tiers": { "gold": "2/s" } }])),
        json!({ "response": { "status": 200 } }),
    );
    let text = host
        .load(PluginSpec::new("ratelimit", wasm()).plugin_config(config))
        .expect_err("must be refused")
        .to_string();
    assert!(
        text.contains("routes[0].ratelimit.rules[0].tiers"),
        "{text}"
    );
    assert!(text.contains("ratelimit.response.status"), "{text}");
    let text = host
        .load(PluginSpec::new("ratelimit", wasm()).plugin_config(b"{not json".to_vec()))
        .expect_err("must be refused")
        .to_string();
    assert!(text.contains("pluginConfig:1:"), "{text}");
}
