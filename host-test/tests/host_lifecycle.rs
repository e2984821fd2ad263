//! Where the host follows Envoy at the edges of a stream's and a VM's life: the order of
//! on_log/on_done/on_delete and `proxy_done` (a root context that answers false to on_done at
//! shutdown waits for it; a stream never does), the body buffer limit (413 on the request path,
//! 500 or a reset on the response path), the FailReload backoff on virtual time, the worker's
//! next due time (resume times exact to the nanosecond) and reading traps with a cursor.
//! Knows only the public API.

mod common;

use std::time::Duration;

use common::*;
use meshward_host::{
    FailStrategy, Flow, Host, LocalReply, PluginSpec, StreamId, StreamProps, VirtualClock, Worker,
    DEFAULT_BUFFER_LIMIT, MAX_CHAIN,
};

const MS: u64 = 1_000_000;

/// A proxy-wasm module whose callbacks return fixed actions (0 Continue, 1 Pause):
/// request headers, request body, response headers, response body.
fn fixed(req_hdr: u32, req_body: u32, resp_hdr: u32, resp_body: u32) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const {req_hdr}))
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32) (i32.const {req_body}))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const {resp_hdr}))
  (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32) (i32.const {resp_body})))"#
    ))
    .expect("valid wat")
}

/// Traps in every request-headers callback.
fn always_traps() -> Vec<u8> {
    wat::parse_str(
        r#"(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (unreachable)))"#,
    )
    .expect("valid wat")
}

/// Pauses request headers and asks for a 7 ms tick (from the stream context); the tick resumes
/// the stream through `proxy_set_effective_context` and stops the timer.
fn resumed_by_tick() -> Vec<u8> {
    wat::parse_str(
        r#"(module
  (import "env" "proxy_set_tick_period_milliseconds" (func $tick (param i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $eff (param i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $cont (param i32) (result i32)))
  (memory (export "memory") 1)
  (global $parked (mut i32) (i32.const 0))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
    (global.set $parked (local.get $ctx))
    (drop (call $tick (i32.const 7)))
    (i32.const 1))
  (func (export "proxy_on_tick") (param i32)
    (drop (call $eff (global.get $parked)))
    (drop (call $cont (i32.const 0)))
    (drop (call $tick (i32.const 0)))))"#,
    )
    .expect("valid wat")
}

fn virtual_host(limit: usize) -> (Host, VirtualClock) {
    let clock = VirtualClock::new(START);
    let host = Host::builder()
        .clock(clock.clone())
        .buffer_limit_bytes(limit)
        .traps_kept(2)
        .build()
        .expect("host builds");
    (host, clock)
}

fn worker(host: &Host, specs: Vec<PluginSpec>) -> Worker {
    let plugins: Vec<_> = specs
        .into_iter()
        .map(|s| host.load(s).expect("loads"))
        .collect();
    host.worker(&plugins).expect("worker")
}

fn reply(flow: Flow) -> LocalReply {
    match flow {
        Flow::LocalReply(r) => LocalReply::clone(&r),
        other => panic!("expected a local reply, got {other:?}"),
    }
}

// ----- on_log / on_done / on_delete and proxy_done -----

/// The `EV` callback names one worker's VM logged for context `ctx`.
fn worker_events(host: &Host, w: &Worker, ctx: &str) -> Vec<String> {
    records(host, "sd")
        .into_iter()
        .filter(|r| r.worker == Some(w.index()))
        .filter_map(|r| r.message.strip_prefix("EV ").map(str::to_string))
        .filter(|m| m.split_whitespace().any(|f| f == format!("ctx={ctx}")))
        .map(|m| m.split_whitespace().next().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_stream_ends_with_log_done_delete_whatever_on_done_answers() {
    let (host, _) = common::host();
    let mut w = worker(&host, vec![conformance("sd", "shutdown")]);
    let id = w.open_http_stream(StreamProps::new());
    w.request_headers(id, &get("/"), true).unwrap();
    w.response_headers(id, &[(":status", "200")], true).unwrap();
    w.complete(id).unwrap();
    let ctx = event_field(&host, "sd", "request_headers", "ctx").expect("stream ran");
    // The guest's on_done answered false; Envoy ignores that for a stream context.
    assert_eq!(
        worker_events(&host, &w, &ctx),
        [
            "create",
            "request_headers",
            "response_headers",
            "log",
            "done",
            "delete"
        ]
    );
    assert!(w.awaiting_done().is_empty());
    assert_checks(&host, "sd", &["done_from_stream_not_found"]);
}

#[test]
fn a_root_context_that_is_not_done_at_shutdown_waits_for_proxy_done() {
    let (host, clock) = common::host();
    let mut w = worker(&host, vec![conformance("sd", "shutdown tick=5")]);
    // A stream still open at shutdown is reset and completed first.
    let open = w.open_http_stream(StreamProps::new());
    assert_eq!(
        w.request_headers(open, &get("/"), false).unwrap(),
        Flow::Continue
    );
    w.shutdown();
    assert!(w.stream(open).is_some_and(|s| s.reset() && s.complete()));
    let root = event_field(&host, "sd", "configure", "ctx").expect("configured");
    assert_eq!(
        worker_events(&host, &w, &root),
        ["create", "vm_start", "configure", "done"]
    );
    assert_eq!(w.awaiting_done(), [0]);
    // The root context's tick is the only thing scheduled: 5 ms from now.
    assert_eq!(w.next_due(), Some(clock.now() + 5 * MS));
    w.advance(Duration::from_millis(4));
    assert_eq!(w.awaiting_done(), [0], "no proxy_done yet");
    w.advance(Duration::from_millis(1));
    assert!(w.awaiting_done().is_empty());
    assert_eq!(
        worker_events(&host, &w, &root),
        ["create", "vm_start", "configure", "done", "tick", "delete"]
    );
    assert_checks(
        &host,
        "sd",
        &[
            "shutdown_tick_set",
            "proxy_done_from_tick_ok",
            "proxy_done_again_not_found",
        ],
    );
    // The plugin left the worker: nothing is scheduled and new streams skip it.
    assert_eq!(w.next_due(), None);
    assert!(!w.plugin_alive(0));
    let later = w.open_http_stream(StreamProps::new());
    assert_eq!(
        w.request_headers(later, &get("/"), true).unwrap(),
        Flow::Continue
    );
    let creates = worker_events(&host, &w, "3");
    assert!(
        creates.is_empty(),
        "no context for a shut-down plugin: {creates:?}"
    );
}

// ----- body buffer limit -----

#[test]
fn the_default_buffer_limit_is_envoys_one_mebibyte() {
    assert_eq!(DEFAULT_BUFFER_LIMIT, 1 << 20);
    let clock = VirtualClock::new(START);
    let host = Host::builder().clock(clock).build().unwrap();
    let mut w = worker(&host, vec![PluginSpec::new("hold", fixed(0, 1, 0, 0))]);
    let id = w.open_http_stream(StreamProps::new());
    w.request_headers(id, &get("/up"), false).unwrap();
    let mib = vec![b'x'; 1 << 20];
    assert!(matches!(
        w.request_body(id, &mib, false).unwrap(),
        Flow::Paused { plugin: 0 }
    ));
    let r = reply(w.request_body(id, b"!", false).unwrap());
    assert_eq!(r.status, 413);
}

#[test]
fn a_request_body_buffered_past_the_limit_gets_413() {
    let (host, _) = virtual_host(1000);
    let mut w = worker(&host, vec![PluginSpec::new("hold", fixed(0, 1, 0, 0))]);
    let id = w.open_http_stream(StreamProps::new());
    assert_eq!(
        w.request_headers(id, &get("/up"), false).unwrap(),
        Flow::Continue
    );
    // Exactly at the limit is still fine (Envoy's watermark fires above it).
    assert!(matches!(
        w.request_body(id, &[b'a'; 600], false).unwrap(),
        Flow::Paused { plugin: 0 }
    ));
    assert!(matches!(
        w.request_body(id, &[b'b'; 400], false).unwrap(),
        Flow::Paused { plugin: 0 }
    ));
    let r = reply(w.request_body(id, b"c", true).unwrap());
    assert_eq!(r.status, 413);
    assert_eq!(r.details, "request_payload_too_large");
    assert_eq!(r.body, b"Payload Too Large");
    assert_eq!(r.headers.get(":status"), Some("413"));
    assert!(
        w.stream(id).unwrap().request_body().is_empty(),
        "nothing went upstream"
    );
}

#[test]
fn a_body_held_by_paused_headers_is_flow_controlled_not_refused() {
    // Pause in on_request_headers is StopAllIterationAndWatermark: the body is buffered with
    // watermarks (the downstream is read-disabled), so no 413.
    let (host, _) = virtual_host(1000);
    let mut w = worker(&host, vec![PluginSpec::new("hold", fixed(1, 0, 0, 0))]);
    let id = w.open_http_stream(StreamProps::new());
    w.request_headers(id, &get("/up"), false).unwrap();
    let flow = w.request_body(id, &[b'x'; 5000], true).unwrap();
    assert!(matches!(flow, Flow::Paused { plugin: 0 }), "{flow:?}");
}

#[test]
fn a_response_body_past_the_limit_gets_500_while_headers_are_held() {
    // Response order is last..first: `body` (index 1) buffers the body, `hdr` (index 0) holds
    // the headers, so nothing went downstream yet and Envoy sends its 500 directly.
    let (host, _) = virtual_host(1000);
    let mut w = worker(
        &host,
        vec![
            PluginSpec::new("hdr", fixed(0, 0, 1, 0)),
            PluginSpec::new("body", fixed(0, 0, 0, 1)),
        ],
    );
    let id = w.open_http_stream(StreamProps::new());
    assert_eq!(
        w.request_headers(id, &get("/up"), true).unwrap(),
        Flow::Continue
    );
    assert!(matches!(
        w.response_headers(id, &[(":status", "200")], false)
            .unwrap(),
        Flow::Paused { plugin: 0 }
    ));
    let r = reply(w.response_body(id, &[b'x'; 1001], false).unwrap());
    assert_eq!(r.status, 500);
    assert_eq!(r.details, "response_payload_too_large");
    assert_eq!(r.body, b"Internal Server Error");
    let s = w.stream(id).unwrap();
    assert_eq!(s.response_headers().get(":status"), Some("500"));
    assert_eq!(s.response_body(), b"Internal Server Error");
}

#[test]
fn a_response_body_past_the_limit_after_the_headers_went_out_resets_the_stream() {
    let (host, _) = virtual_host(1000);
    let mut w = worker(&host, vec![PluginSpec::new("body", fixed(0, 0, 0, 1))]);
    let id = w.open_http_stream(StreamProps::new());
    w.request_headers(id, &get("/up"), true).unwrap();
    assert_eq!(
        w.response_headers(id, &[(":status", "200")], false)
            .unwrap(),
        Flow::Continue
    );
    assert_eq!(
        w.response_body(id, &[b'x'; 1001], false).unwrap(),
        Flow::Reset
    );
}

// ----- FailReload backoff -----

#[test]
fn fail_reload_waits_out_the_backoff_and_requests_get_503_meanwhile() {
    let (host, clock) = virtual_host(DEFAULT_BUFFER_LIMIT);
    let mut w = worker(
        &host,
        vec![PluginSpec::new("boom", always_traps()).fail_strategy(FailStrategy::FailReload)],
    );
    let request = |w: &mut Worker| {
        let id = w.open_http_stream(StreamProps::new());
        let r = reply(w.request_headers(id, &get("/"), true).unwrap());
        w.complete(id).unwrap();
        assert_eq!((r.status, r.details.as_str()), (503, "wasm_fail_stream"));
    };
    request(&mut w);
    assert_eq!(host.traps_since(0).next, 1);
    // The VM was loaded at START: the next reload is due within [1 s, 1.5 s) of it.
    let due = w.next_due().expect("a reload backoff end is scheduled");
    assert!(
        (START + 1000 * MS..START + 1500 * MS).contains(&due),
        "{due}"
    );
    request(&mut w);
    assert_eq!(
        host.traps_since(0).next,
        1,
        "no VM to trap: it is in backoff"
    );
    assert_eq!(host.stats().reload_backoffs(), 1);
    assert_eq!(host.stats().vms_reloaded(), 0);
    // Each refused stream draws a fresh interval (still from the last load).
    let due = w.next_due().unwrap();
    assert!(
        (START + 1000 * MS..START + 1500 * MS).contains(&due),
        "{due}"
    );
    clock.set(due - 1);
    request(&mut w);
    assert_eq!(host.stats().vms_reloaded(), 0);
    // Past any interval the next stream gets a new VM (which traps again here).
    clock.set(START + 1500 * MS);
    request(&mut w);
    assert_eq!(host.stats().vms_reloaded(), 1);
    assert_eq!(host.traps_since(0).next, 2, "the reloaded VM trapped again");
}

#[test]
fn a_plugin_that_traps_on_every_request_reloads_about_once_a_backoff() {
    let (host, clock) = virtual_host(DEFAULT_BUFFER_LIMIT);
    let mut w = worker(
        &host,
        vec![PluginSpec::new("boom", always_traps())
            .fail_strategy(FailStrategy::FailReload)
            .reload_backoff(Duration::from_millis(200))],
    );
    // 1000 requests, 1 ms apart: without a backoff every one would reload a VM.
    for _ in 0..1000 {
        let id = w.open_http_stream(StreamProps::new());
        let r = reply(w.request_headers(id, &get("/"), true).unwrap());
        assert_eq!(r.status, 503);
        w.complete(id).unwrap();
        clock.advance(Duration::from_millis(1));
    }
    let reloads = host.stats().vms_reloaded();
    // Intervals are in [200 ms, 300 ms): 1 s of traffic allows 3 to 4 reloads.
    assert!((3..=4).contains(&reloads), "{reloads} reloads");
    assert_eq!(host.traps_since(0).next, reloads + 1);
    assert_eq!(host.stats().reload_backoffs(), 1000 - 1 - reloads);
}

// ----- next due time -----

#[test]
fn a_stream_resumed_by_a_tick_at_7_3_ms_is_seen_at_7_3_ms() {
    let (host, clock) = virtual_host(DEFAULT_BUFFER_LIMIT);
    let mut w = worker(&host, vec![PluginSpec::new("tick", resumed_by_tick())]);
    assert_eq!(w.next_due(), None);
    clock.advance(Duration::from_micros(300));
    let id = w.open_http_stream(StreamProps::new());
    assert_eq!(
        w.request_headers(id, &get("/"), true).unwrap(),
        Flow::Paused { plugin: 0 }
    );
    let due = w.next_due().expect("the tick is scheduled");
    assert_eq!(due, START + 7_300_000);
    w.advance(Duration::from_nanos(due - 1 - clock.now()));
    assert!(w.stream(id).unwrap().paused(), "not before 7.3 ms");
    w.advance(Duration::from_nanos(1));
    assert_eq!(clock.now(), START + 7_300_000);
    let s = w.stream(id).unwrap();
    assert!(!s.paused() && s.forwarded_upstream());
    assert_eq!(w.next_due(), None, "the tick stopped itself");
}

#[test]
fn take_resumed_names_only_the_streams_a_tick_resumed_or_shutdown_reset() {
    let (host, _clock) = virtual_host(DEFAULT_BUFFER_LIMIT);
    let mut w = worker(&host, vec![PluginSpec::new("tick", resumed_by_tick())]);
    let mut out = vec![StreamId(0)];
    w.take_resumed(&mut out);
    assert!(out.is_empty(), "nothing is recorded before watch_resumed");
    w.watch_resumed();
    let a = w.open_http_stream(StreamProps::new());
    let b = w.open_http_stream(StreamProps::new());
    for id in [a, b] {
        assert_eq!(
            w.request_headers(id, &get("/"), true).unwrap(),
            Flow::Paused { plugin: 0 }
        );
    }
    w.take_resumed(&mut out);
    assert!(out.is_empty(), "the embedder's own calls are not recorded");
    // The guest parks the last paused context (b); its tick resumes b only.
    w.advance(Duration::from_millis(7));
    w.take_resumed(&mut out);
    assert_eq!(out, vec![b]);
    assert!(w.stream(a).unwrap().paused());
    w.take_resumed(&mut out);
    assert!(out.is_empty(), "taken once");
    w.complete(b).unwrap();
    w.shutdown();
    w.take_resumed(&mut out);
    assert_eq!(out, vec![a], "shutdown resets the stream still open");
}

#[test]
fn a_chain_of_max_chain_plugins_passes_bodies_end_to_end_and_a_longer_one_is_refused() {
    let (host, _clock) = virtual_host(DEFAULT_BUFFER_LIMIT);
    let wasm = fixed(0, 0, 0, 0);
    let plugins: Vec<_> = (0..=MAX_CHAIN)
        .map(|i| {
            host.load(PluginSpec::new(format!("p{i}"), wasm.clone()))
                .unwrap()
        })
        .collect();
    let err = host.worker(&plugins).unwrap_err().to_string();
    assert_eq!(
        err,
        format!("a chain holds at most {MAX_CHAIN} plugins, got 64")
    );
    // The longest chain: the last positions of each direction carry bodies and end of stream.
    let mut w = host.worker(&plugins[..MAX_CHAIN]).unwrap();
    let id = w.open_http_stream(StreamProps::new());
    assert_eq!(
        w.request_headers(id, &get("/"), false).unwrap(),
        Flow::Continue
    );
    assert_eq!(w.request_body(id, b"ab", false).unwrap(), Flow::Continue);
    assert_eq!(w.request_body(id, b"cd", true).unwrap(), Flow::Continue);
    assert_eq!(
        w.response_headers(id, &[(":status", "200")], false)
            .unwrap(),
        Flow::Continue
    );
    assert_eq!(w.response_body(id, b"xyz", true).unwrap(), Flow::Continue);
    let s = w.stream(id).unwrap();
    assert!(s.forwarded_upstream() && s.response_sent());
    assert_eq!(s.request_body(), b"abcd");
    assert_eq!(s.response_body(), b"xyz");
}

// ----- traps with a cursor -----

#[test]
fn traps_are_read_with_a_cursor_and_the_store_is_bounded() {
    let (host, clock) = virtual_host(DEFAULT_BUFFER_LIMIT); // keeps 2 traps
    let mut w = worker(
        &host,
        vec![PluginSpec::new("boom", always_traps())
            .fail_strategy(FailStrategy::FailReload)
            .reload_backoff(Duration::from_millis(1))],
    );
    let mut cursor = 0;
    let mut seen = 0;
    for round in 0..5 {
        let id = w.open_http_stream(StreamProps::new());
        w.request_headers(id, &get("/"), true).unwrap();
        clock.advance(Duration::from_millis(2));
        if round == 1 {
            let b = host.traps_since(cursor);
            assert_eq!((b.traps.len(), b.missed, b.next), (2, 0, 2));
            seen += b.traps.len();
            cursor = b.next;
        }
    }
    // Traps 2, 3, 4 happened since; the store kept the last 2.
    let b = host.traps_since(cursor);
    assert_eq!((b.traps.len(), b.missed, b.next), (2, 1, 5));
    seen += b.traps.len();
    assert_eq!(seen as u64 + b.missed, 5);
    assert!(host.traps_since(b.next).traps.is_empty());
    assert_eq!(host.traps().len(), 2);
    assert_eq!(host.traps_dropped(), 3);
    assert_eq!(b.traps[1].callback, "proxy_on_request_headers");
}

// ----- stream times -----

/// In `proxy_on_log`, reads `request.time` and `request.duration` with `proxy_get_property` and
/// stores each answer (8 bytes, LE) in shared data under `time` / `duration`.
fn records_stream_times() -> Vec<u8> {
    wat::parse_str(
        r#"(module
  (import "env" "proxy_get_property" (func $get (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data" (func $set (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "request\00time")
  (data (i32.const 32) "request\00duration")
  (data (i32.const 64) "time")
  (data (i32.const 80) "duration")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func $copy (param $path i32) (param $plen i32) (param $key i32) (param $klen i32)
    (if (i32.eqz (call $get (local.get $path) (local.get $plen) (i32.const 128) (i32.const 132)))
      (then (drop (call $set (local.get $key) (local.get $klen)
        (i32.load (i32.const 128)) (i32.load (i32.const 132)) (i32.const 0))))))
  (func (export "proxy_on_log") (param i32)
    (call $copy (i32.const 16) (i32.const 12) (i32.const 64) (i32.const 4))
    (call $copy (i32.const 32) (i32.const 16) (i32.const 80) (i32.const 8))))"#,
    )
    .expect("valid wat")
}

#[test]
fn request_time_and_duration_are_recorded_when_any_chain_plugin_can_read_them() {
    let (host, clock) = virtual_host(DEFAULT_BUFFER_LIMIT);
    // The first plugin cannot read properties; the second one can.
    let mut w = worker(
        &host,
        vec![
            PluginSpec::new("plain", fixed(0, 0, 0, 0)),
            PluginSpec::new("times", records_stream_times()),
        ],
    );
    clock.advance(Duration::from_millis(3));
    let id = w.open_http_stream(StreamProps::new());
    w.request_headers(id, &[(":path", "/")], true).unwrap();
    clock.advance(Duration::from_micros(7_250));
    w.response_headers(id, &[(":status", "200")], true).unwrap();
    w.complete(id).unwrap();
    let read = |key: &[u8]| {
        let (v, _) = host.shared_data().get(key).expect("stored by on_log");
        u64::from_le_bytes(v.try_into().expect("8 bytes"))
    };
    assert_eq!(read(b"time"), START + 3 * MS);
    assert_eq!(read(b"duration"), 7_250_000);
}
