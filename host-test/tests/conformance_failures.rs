//! Conformance of failure handling: guest traps under each fail strategy (Istio's
//! FAIL_CLOSE/FAIL_OPEN/FAIL_RELOAD), a runaway loop stopped by the callback deadline, a
//! memory cap, and modules or configurations the host must refuse with a clear error.

mod common;

use common::*;
use meshward_host::{
    FailStrategy, Flow, Host, LoadError, PluginSpec, StreamProps, VirtualClock, Worker,
};
use std::time::Duration;

fn trap_plugin(strategy: FailStrategy) -> PluginSpec {
    PluginSpec::new("trap", meshward_artifacts::TRAP).fail_strategy(strategy)
}

/// One request; `trap` is the `x-trap` header. Returns the flow and the response's
/// `x-trap-vm` (requests served by the VM that answered; absent when the plugin was skipped).
fn request(w: &mut Worker, trap: &str) -> (Flow, Option<String>) {
    let id = w.open_http_stream(StreamProps::new());
    let mut req = get("/t");
    if !trap.is_empty() {
        req.push(("x-trap", trap));
    }
    let flow = w.request_headers(id, &req, true).expect("request headers");
    let mut served = None;
    if flow == Flow::Continue {
        w.response_headers(id, &[(":status", "200")], true)
            .expect("response headers");
        served = w
            .stream(id)
            .and_then(|s| s.response_headers().get("x-trap-vm").map(str::to_string));
    }
    w.complete(id).expect("complete");
    (flow, served)
}

fn assert_fail_closed_reply(flow: &Flow) {
    match flow {
        Flow::LocalReply(r) => {
            assert_eq!(r.status, 503, "{r:?}");
            assert_eq!(r.details, "wasm_fail_stream");
        }
        other => panic!("expected the fail-closed 503, got {other:?}"),
    }
}

#[test]
fn trap_with_fail_closed_answers_503_now_and_later() {
    let (host, _) = host();
    let plugin = host
        .load(trap_plugin(FailStrategy::FailClosed))
        .expect("loads");
    let mut w = host.worker(&[plugin]).expect("worker");
    assert_eq!(request(&mut w, ""), (Flow::Continue, Some("1".into())));
    let (flow, _) = request(&mut w, "panic");
    assert_fail_closed_reply(&flow);
    let traps = host.traps();
    assert_eq!(traps.len(), 1, "{traps:?}");
    assert_eq!(traps[0].plugin, "trap");
    assert_eq!(traps[0].callback, "proxy_on_request_headers");
    assert!(traps[0].message.contains("unreachable"), "{:?}", traps[0]);
    // The panic message went to stderr, which Envoy logs at error level.
    assert!(lines(&host, "trap")
        .iter()
        .any(|l| l.contains("trap guest: panic on request")));
    // The VM is dead for this worker: later requests fail closed too.
    let (flow, _) = request(&mut w, "");
    assert_fail_closed_reply(&flow);
}

#[test]
fn trap_with_fail_open_skips_the_plugin_from_then_on() {
    let (host, _) = host();
    let plugin = host
        .load(trap_plugin(FailStrategy::FailOpen))
        .expect("loads");
    let mut w = host.worker(&[plugin]).expect("worker");
    assert_eq!(request(&mut w, ""), (Flow::Continue, Some("1".into())));
    assert_eq!(request(&mut w, "unreachable"), (Flow::Continue, None));
    assert_eq!(
        request(&mut w, ""),
        (Flow::Continue, None),
        "plugin bypassed"
    );
    assert_eq!(host.traps().len(), 1);
}

#[test]
fn trap_with_fail_reload_gets_a_fresh_vm_after_the_backoff() {
    let (host, clock) = host();
    let plugin = host
        .load(trap_plugin(FailStrategy::FailReload))
        .expect("loads");
    let mut w = host.worker(&[plugin]).expect("worker");
    assert_eq!(request(&mut w, ""), (Flow::Continue, Some("1".into())));
    assert_eq!(request(&mut w, ""), (Flow::Continue, Some("2".into())));
    let (flow, _) = request(&mut w, "panic");
    assert_fail_closed_reply(&flow);
    // Within the reload backoff (1 s base, as Envoy) the VM stays dead: fail closed.
    let (flow, _) = request(&mut w, "");
    assert_fail_closed_reply(&flow);
    clock.advance(Duration::from_millis(1500));
    // A new VM: its memory (the request count) starts over.
    assert_eq!(request(&mut w, ""), (Flow::Continue, Some("1".into())));
}

#[test]
fn runaway_loop_is_stopped_by_the_callback_deadline() {
    let clock = VirtualClock::new(START);
    let host = Host::builder()
        .clock(clock.clone())
        .callback_deadline(Duration::from_millis(50))
        .build()
        .expect("host");
    let plugin = host
        .load(trap_plugin(FailStrategy::FailReload))
        .expect("loads");
    let mut w = host.worker(&[plugin]).expect("worker");
    let (flow, _) = request(&mut w, "loop");
    assert_fail_closed_reply(&flow);
    let traps = host.traps();
    assert_eq!(traps.len(), 1);
    assert!(
        traps[0].message.contains("interrupt") || traps[0].message.contains("deadline"),
        "{:?}",
        traps[0]
    );
    clock.advance(Duration::from_millis(1500));
    assert_eq!(request(&mut w, ""), (Flow::Continue, Some("1".into())));
}

#[test]
fn unbounded_allocation_hits_the_memory_cap_and_is_contained() {
    let clock = VirtualClock::new(START);
    let host = Host::builder()
        .clock(clock.clone())
        .memory_limit_bytes(16 << 20)
        .build()
        .expect("host");
    let plugin = host
        .load(trap_plugin(FailStrategy::FailReload))
        .expect("loads");
    let mut w = host.worker(&[plugin]).expect("worker");
    let (flow, _) = request(&mut w, "oom");
    assert_fail_closed_reply(&flow);
    assert_eq!(host.traps().len(), 1, "{:?}", host.traps());
    clock.advance(Duration::from_millis(1500));
    let (flow, _) = request(&mut w, "stack");
    assert_fail_closed_reply(&flow);
    assert_eq!(host.traps().len(), 2, "{:?}", host.traps());
    clock.advance(Duration::from_millis(1500));
    assert_eq!(request(&mut w, ""), (Flow::Continue, Some("1".into())));
}

#[test]
fn malformed_module_is_refused() {
    let (host, _) = host();
    let err = host
        .load(PluginSpec::new("junk", b"\0asm but not really".to_vec()))
        .map(drop)
        .expect_err("refused");
    assert!(matches!(err, LoadError::InvalidModule { .. }), "{err:?}");
    assert!(err.to_string().contains("junk"), "{err}");
}

/// A minimal proxy-wasm module importing `module.name`.
fn module_importing(module: &str, name: &str, sig: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
            (import "{module}" "{name}" (func {sig}))
            (memory (export "memory") 1)
            (func (export "proxy_abi_version_0_2_1"))
            (func (export "proxy_on_memory_allocate") (param i32) (result i32) i32.const 1024)
            (func (export "proxy_on_context_create") (param i32 i32))
            (func (export "proxy_on_vm_start") (param i32 i32) (result i32) i32.const 1)
            (func (export "proxy_on_configure") (param i32 i32) (result i32) i32.const 1))"#
    ))
    .expect("valid wat")
}

#[test]
fn unknown_import_is_refused_by_name() {
    let (host, _) = host();
    let wasm = module_importing("env", "proxy_not_a_function", "(param i32) (result i32)");
    let err = host
        .load(PluginSpec::new("imp", wasm))
        .map(drop)
        .expect_err("refused");
    assert!(matches!(err, LoadError::UnknownImport { .. }), "{err:?}");
    assert!(err.to_string().contains("proxy_not_a_function"), "{err}");
}

#[test]
fn strict_mode_refuses_imports_an_older_envoy_lacks() {
    // `sock_accept` is in cpp-host's WASI list only since 2026-04; older Envoys fail to load
    // a module that imports it.
    let wasm = module_importing(
        "wasi_snapshot_preview1",
        "sock_accept",
        "(param i32 i32 i32) (result i32)",
    );
    let strict = Host::builder().strict_imports(true).build().expect("host");
    let err = strict
        .load(PluginSpec::new("new-wasi", wasm.clone()))
        .map(drop)
        .expect_err("refused in strict mode");
    assert!(matches!(err, LoadError::UnknownImport { .. }), "{err:?}");
    assert!(err.to_string().contains("sock_accept"), "{err}");
    let lenient = Host::builder().build().expect("host");
    lenient
        .load(PluginSpec::new("new-wasi", wasm))
        .expect("a current Envoy provides sock_accept (as a stub)");
}

#[test]
fn trap_or_false_during_configure_is_a_load_error_with_logs() {
    let (host, _) = host();
    let err = host
        .load(trap_plugin(FailStrategy::FailOpen).plugin_config(b"configure:panic".to_vec()))
        .map(drop)
        .expect_err("refused");
    let text = err.to_string();
    assert!(matches!(err, LoadError::StartFailed { .. }), "{err:?}");
    assert!(text.contains("proxy_on_configure"), "{text}");
    assert!(
        text.contains("panic in on_configure as configured"),
        "{text}"
    );

    let err = host
        .load(trap_plugin(FailStrategy::FailOpen).plugin_config(b"configure:false".to_vec()))
        .map(drop)
        .expect_err("refused");
    assert!(
        err.to_string()
            .contains("rejecting configuration `configure:false`"),
        "{err}"
    );

    let err = host
        .load(trap_plugin(FailStrategy::FailOpen).vm_config(b"vm_start:panic".to_vec()))
        .map(drop)
        .expect_err("refused");
    assert!(err.to_string().contains("proxy_on_vm_start"), "{err}");
}
