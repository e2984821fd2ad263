//! Host-level tests with tiny WAT modules: load errors (malformed module, unknown import,
//! strict imports, missing allocator, missing ABI marker, configure returning false with the
//! plugin's log), and fencing (trap with backtrace, runaway loop stopped by the deadline, memory
//! cap) together with the FailStrategy that follows. Knows only the public API.

use std::time::Duration;

use meshward_host::{FailStrategy, Flow, Host, LoadError, PluginSpec, StreamProps, VirtualClock};

const START: u64 = 1_767_225_600_000_000_000;

fn host() -> Host {
    Host::builder()
        .clock(VirtualClock::new(START))
        .callback_deadline(Duration::from_millis(50))
        .memory_limit_bytes(2 << 20)
        .build()
        .expect("host builds")
}

/// A proxy-wasm module whose request-headers callback runs `body` (which must leave an i32).
fn module(extra_imports: &str, body: &str) -> Vec<u8> {
    let text = format!(
        r#"(module
  {extra_imports}
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "configured")
  (global $heap (mut i32) (i32.const 4096))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const 16) (i32.const 10)))
    (i32.const 1))
  (func $deep (param $n i32) (result i32)
    {body})
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $deep (i32.const 0)))
)"#
    );
    wat::parse_str(text).expect("valid wat")
}

fn get(h: &Host, wasm: Vec<u8>, s: FailStrategy) -> meshward_host::Plugin {
    h.load(PluginSpec::new("p", wasm).fail_strategy(s))
        .expect("loads")
}

#[test]
fn malformed_module_is_a_load_error() {
    let h = host();
    let err = h
        .load(PluginSpec::new("bad", b"\0asm\x01\0\0\0garbage".to_vec()))
        .unwrap_err();
    assert!(matches!(err, LoadError::InvalidModule { .. }), "{err}");
    assert!(err.to_string().contains("bad"));
}

#[test]
fn unknown_import_names_module_and_function() {
    let h = host();
    let wasm = module(
        r#"(import "env" "proxy_teleport" (func (param i32) (result i32)))"#,
        "(i32.const 0)",
    );
    let err = h.load(PluginSpec::new("p", wasm)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("env::proxy_teleport"), "{msg}");
}

#[test]
fn strict_imports_refuse_newer_wasi_but_accept_old_envoy_list() {
    let strict = Host::builder().strict_imports(true).build().unwrap();
    let newer = module(
        r#"(import "wasi_snapshot_preview1" "clock_res_get" (func (param i32 i32) (result i32)))"#,
        "(i32.const 0)",
    );
    let err = strict
        .load(PluginSpec::new("p", newer.clone()))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("wasi_snapshot_preview1::clock_res_get"),
        "{err}"
    );
    // The same module is fine without strict mode.
    host()
        .load(PluginSpec::new("p", newer))
        .expect("non-strict accepts");
    let old = module(
        r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#,
        "(i32.const 0)",
    );
    strict
        .load(PluginSpec::new("p", old))
        .expect("old list accepted");
}

#[test]
fn legacy_010_function_in_a_020_module_is_refused() {
    let wasm = module(
        r#"(import "env" "proxy_continue_request" (func (result i32)))"#,
        "(i32.const 0)",
    );
    let err = host().load(PluginSpec::new("p", wasm)).unwrap_err();
    assert!(err.to_string().contains("proxy_continue_request"), "{err}");
}

#[test]
fn missing_allocator_and_missing_abi_marker() {
    let h = host();
    let no_malloc = wat::parse_str(
        r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1")))"#,
    )
    .unwrap();
    let err = h.load(PluginSpec::new("p", no_malloc)).unwrap_err();
    assert!(err.to_string().contains("missing malloc"), "{err}");
    let no_abi = wat::parse_str(r#"(module (memory (export "memory") 1))"#).unwrap();
    let err = h.load(PluginSpec::new("p", no_abi)).unwrap_err();
    assert!(err.to_string().contains("proxy_abi_version"), "{err}");
}

#[test]
fn configure_false_is_a_load_error_with_the_plugin_log() {
    let text = r#"(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "bad config: rate missing")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $log (i32.const 4) (i32.const 16) (i32.const 24)))
    (i32.const 0)))"#;
    let err = host()
        .load(PluginSpec::new("p", wat::parse_str(text).unwrap()))
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LoadError::StartFailed { .. }));
    assert!(msg.contains("proxy_on_configure"), "{msg}");
    assert!(msg.contains("bad config: rate missing"), "{msg}");
}

#[test]
fn trap_is_reported_with_backtrace_and_fail_closed_answers_503() {
    let h = host();
    let p = get(&h, module("", "(unreachable)"), FailStrategy::FailClosed);
    let mut w = h.worker(&[p]).unwrap();
    for _ in 0..2 {
        let id = w.open_http_stream(StreamProps::new());
        let flow = w.request_headers(id, &[(":path", "/")], true).unwrap();
        let Flow::LocalReply(r) = flow else {
            panic!("expected a 503, got {flow:?}")
        };
        assert_eq!(r.status, 503);
        assert_eq!(r.details, "wasm_fail_stream");
        w.complete(id).unwrap();
    }
    let traps = h.traps();
    assert_eq!(
        traps.len(),
        1,
        "the VM died once; later streams fail without a call"
    );
    assert_eq!(traps[0].callback, "proxy_on_request_headers");
    assert!(traps[0].message.contains("unreachable"), "{:?}", traps[0]);
    assert!(
        traps[0].backtrace.contains("deep"),
        "{}",
        traps[0].backtrace
    );
    assert!(!w.plugin_alive(0));
}

#[test]
fn fail_open_skips_the_dead_plugin_for_every_later_stream() {
    let h = host();
    let p = get(&h, module("", "(unreachable)"), FailStrategy::FailOpen);
    let mut w = h.worker(&[p]).unwrap();
    for _ in 0..3 {
        let id = w.open_http_stream(StreamProps::new());
        assert_eq!(
            w.request_headers(id, &[(":path", "/")], true).unwrap(),
            Flow::Continue
        );
        assert!(w.stream(id).unwrap().forwarded_upstream());
    }
    assert_eq!(h.traps().len(), 1);
}

#[test]
fn fail_reload_gives_new_streams_a_fresh_vm_after_the_backoff() {
    let clock = VirtualClock::new(START);
    let h = Host::builder().clock(clock.clone()).build().expect("host");
    // Traps on the first request only: a global flips after the first call.
    let body = r#"(if (i32.eqz (global.get $heap)) (then (unreachable)))
        (global.set $heap (i32.const 0)) (i32.const 0)"#;
    let p = get(&h, module("", body), FailStrategy::FailReload);
    let mut w = h.worker(&[p]).unwrap();
    let first = w.open_http_stream(StreamProps::new());
    // heap starts non-zero: first call sets it to 0 and continues.
    assert_eq!(w.request_headers(first, &[], true).unwrap(), Flow::Continue);
    let second = w.open_http_stream(StreamProps::new());
    let flow = w.request_headers(second, &[], true).unwrap();
    assert!(
        matches!(flow, Flow::LocalReply(ref r) if r.status == 503),
        "{flow:?}"
    );
    // Within the reload backoff (Envoy's default base: 1 s) the VM stays dead.
    let early = w.open_http_stream(StreamProps::new());
    let flow = w.request_headers(early, &[], true).unwrap();
    assert!(
        matches!(flow, Flow::LocalReply(ref r) if r.status == 503),
        "{flow:?}"
    );
    assert_eq!(h.stats().reload_backoffs(), 1);
    clock.advance(Duration::from_millis(1500));
    let third = w.open_http_stream(StreamProps::new());
    assert_eq!(w.request_headers(third, &[], true).unwrap(), Flow::Continue);
    assert_eq!(h.stats().vms_reloaded(), 1);
    assert!(w.plugin_alive(0));
}

#[test]
fn runaway_loop_is_interrupted_by_the_deadline() {
    let h = host();
    let p = get(
        &h,
        module("", "(loop $l (br $l)) (i32.const 0)"),
        FailStrategy::FailClosed,
    );
    let mut w = h.worker(&[p]).unwrap();
    let id = w.open_http_stream(StreamProps::new());
    let flow = w.request_headers(id, &[], true).unwrap();
    assert!(matches!(flow, Flow::LocalReply(_)), "{flow:?}");
    let t = &h.traps()[0];
    assert!(
        t.message.contains("deadline") || t.message.contains("interrupt"),
        "{t:?}"
    );
}

#[test]
fn memory_cap_refuses_growth_beyond_the_limit() {
    let h = host(); // 2 MiB cap = 32 pages
    let body = r#"(drop (memory.grow (i32.const 16)))
        (if (i32.eq (memory.grow (i32.const 64)) (i32.const -1)) (then (unreachable)))
        (i32.const 0)"#;
    let p = get(&h, module("", body), FailStrategy::FailClosed);
    let mut w = h.worker(&[p]).unwrap();
    let id = w.open_http_stream(StreamProps::new());
    let flow = w.request_headers(id, &[], true).unwrap();
    assert!(
        matches!(flow, Flow::LocalReply(_)),
        "growth past the cap fails: {flow:?}"
    );
    // A module whose initial memory exceeds the cap cannot even be loaded.
    let big = wat::parse_str(
        r#"(module (memory (export "memory") 100) (func (export "proxy_abi_version_0_2_1"))
           (func (export "malloc") (param i32) (result i32) (i32.const 0)))"#,
    )
    .unwrap();
    let err = h.load(PluginSpec::new("big", big)).unwrap_err();
    assert!(matches!(err, LoadError::Instantiate { .. }), "{err}");
}

#[test]
fn proc_exit_traps_during_start_and_is_a_load_error() {
    let text = r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "_initialize") (call $exit (i32.const 3))))"#;
    let err = host()
        .load(PluginSpec::new("p", wat::parse_str(text).unwrap()))
        .unwrap_err();
    assert!(err.to_string().contains("proc_exit(3)"), "{err}");
}
