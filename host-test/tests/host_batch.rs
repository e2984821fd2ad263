//! Batched callbacks (several callbacks in one entry into wasm) change nothing a plugin or the
//! embedder sees: the same callbacks in the same order with the same view (headers readable
//! in `proxy_on_log` only), a trap in any callback of a batch reported against that callback
//! with the same report, log line and fail strategy, per-callback state (the effective
//! context) fresh at each callback. Each case runs on a host with batching and on one without
//! (`HostBuilder::batch_callbacks(false)`) and compares. Knows only the public API.

use std::time::Duration;

use meshward_host::{FailStrategy, Flow, Host, LogRecord, PluginSpec, StreamProps, TrapReport};

/// The callbacks of a lifecycle; `{body}` is spliced into the one named `{at}` (WAT).
const CALLBACKS: [&str; 6] = [
    "proxy_on_context_create",
    "proxy_on_request_headers",
    "proxy_on_response_headers",
    "proxy_on_log",
    "proxy_on_done",
    "proxy_on_delete",
];

/// A guest whose every stream callback logs `<name> s=<status>`, the status of reading the
/// request's `:path` (0 found, 1 not found, 2 unavailable: the request headers are readable
/// in the request callbacks and, as the access log's view, in `proxy_on_log`), after running `extra` in the
/// callback named `at` (a stream context's `proxy_on_context_create` stores its root id in
/// `$root` first).
fn guest(at: &str, extra: &str) -> Vec<u8> {
    guest_with(&[(at, extra)])
}

/// `guest` with code spliced into several callbacks (callback name, WAT).
fn guest_with(splices: &[(&str, &str)]) -> Vec<u8> {
    let mut funcs = String::new();
    for (i, name) in CALLBACKS.iter().enumerate() {
        let (params, result, ret) = match *name {
            "proxy_on_context_create" => ("(param $ctx i32) (param $parent i32)", "", ""),
            "proxy_on_request_headers" | "proxy_on_response_headers" => (
                "(param $ctx i32) (param i32) (param i32)",
                "(result i32)",
                "(i32.const 0)",
            ),
            "proxy_on_done" => ("(param $ctx i32)", "(result i32)", "(i32.const 1)"),
            _ => ("(param $ctx i32)", "", ""),
        };
        let root = if *name == "proxy_on_context_create" {
            "(if (local.get $parent) (then (global.set $root (local.get $parent))))"
        } else {
            ""
        };
        let skip_root = if *name == "proxy_on_context_create" {
            "(if (i32.eqz (local.get $parent)) (then (return)))"
        } else {
            ""
        };
        let extra: String = splices
            .iter()
            .filter(|(at, _)| at == name)
            .map(|(_, code)| *code)
            .collect();
        let msg = 64 + 32 * i;
        funcs.push_str(&format!(
            r#"
  (data (i32.const {msg}) "{name} s=?")
  (func (export "{name}") {params} {result}
    {skip_root} {root} {extra}
    (call $say (i32.const {msg}) (i32.const {len}))
    {ret})"#,
            len = name.len() + 4,
        ));
    }
    wat::parse_str(format!(
        r#"(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value"
    (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $eff (param i32) (result i32)))
  (import "env" "proxy_send_local_response"
    (func $reply (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $root (mut i32) (i32.const 0))
  (data (i32.const 0) ":path")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  ;; Log the message at $p (length $n) with its last byte replaced by the digit of the status
  ;; of reading the request's :path.
  (func $say (param $p i32) (param $n i32)
    (i32.store8
      (i32.sub (i32.add (local.get $p) (local.get $n)) (i32.const 1))
      (i32.add (i32.const 48)
        (call $get (i32.const 0) (i32.const 0) (i32.const 5) (i32.const 32) (i32.const 36))))
    (drop (call $log (i32.const 2) (local.get $p) (local.get $n))))
  {funcs})"#
    ))
    .expect("valid wat")
}

fn host(batch: bool) -> Host {
    Host::builder()
        .batch_callbacks(batch)
        .callback_deadline(Duration::from_millis(20))
        .build()
        .expect("host builds")
}

/// What one request lifecycle through `chain` (names, modules, fail strategies) looks like:
/// the request and response flows, every log record (plugin, message) and every trap.
type Seen = (Vec<String>, Vec<(String, String)>, Vec<TrapReport>);

fn run(batch: bool, chain: &[(&str, Vec<u8>, FailStrategy)]) -> Seen {
    let host = host(batch);
    let plugins: Vec<_> = chain
        .iter()
        .map(|(name, wasm, fail)| {
            host.load(PluginSpec::new(*name, wasm.clone()).fail_strategy(*fail))
                .expect("loads")
        })
        .collect();
    let mut w = host.worker(&plugins).expect("worker");
    let start = host.logs().len();
    let mut flows = Vec::new();
    for _ in 0..2 {
        let id = w.open_http_stream(StreamProps::new());
        let f = w
            .request_headers(id, &[(":path", "/a"), (":method", "GET")], true)
            .expect("request");
        flows.push(flow(&f));
        if let Ok(f) = w.response_headers(id, &[(":status", "200")], true) {
            flows.push(flow(&f));
        }
        w.complete(id).expect("complete");
    }
    let logs = host.logs()[start..]
        .iter()
        .map(|r: &LogRecord| (r.plugin.clone(), r.message.clone()))
        .collect();
    (flows, logs, host.traps())
}

fn flow(f: &Flow) -> String {
    match f {
        Flow::LocalReply(r) => format!("reply {}", r.status),
        other => format!("{other:?}"),
    }
}

/// Runs `chain` with and without batching, asserts both saw the same, returns it.
#[track_caller]
fn same_both_ways(chain: &[(&str, Vec<u8>, FailStrategy)]) -> Seen {
    let batched = run(true, chain);
    let single = run(false, chain);
    assert_eq!(batched.0, single.0, "flows");
    assert_eq!(batched.1, single.1, "log lines");
    assert_eq!(batched.2, single.2, "traps");
    batched
}

fn messages(seen: &Seen) -> Vec<&str> {
    seen.1.iter().map(|(_, m)| m.as_str()).collect()
}

#[test]
fn callbacks_run_in_envoys_order_and_headers_are_readable_in_on_log_only() {
    let seen = same_both_ways(&[("a", guest("", ""), FailStrategy::FailClosed)]);
    let one = [
        "proxy_on_context_create s=0",
        "proxy_on_request_headers s=0",
        "proxy_on_response_headers s=2",
        "proxy_on_log s=0",
        "proxy_on_done s=2",
        "proxy_on_delete s=2",
    ];
    let expected: Vec<&str> = one.iter().chain(one.iter()).copied().collect();
    assert_eq!(messages(&seen), expected);
}

#[test]
fn a_chain_of_two_keeps_all_logs_before_all_dones_before_all_deletes() {
    let seen = same_both_ways(&[
        ("a", guest("", ""), FailStrategy::FailClosed),
        ("b", guest("", ""), FailStrategy::FailClosed),
    ]);
    let end: Vec<(String, String)> = seen.1[6..12].to_vec();
    let name = |(p, m): &(String, String)| format!("{p} {}", &m[..m.len() - 4]);
    let end: Vec<String> = end.iter().map(name).collect();
    assert_eq!(
        end,
        [
            "a proxy_on_log",
            "b proxy_on_log",
            "a proxy_on_done",
            "b proxy_on_done",
            "a proxy_on_delete",
            "b proxy_on_delete"
        ]
    );
}

#[test]
fn a_trap_in_each_callback_of_a_batch_is_reported_against_that_callback() {
    for (at, fail, first_flow) in [
        (
            "proxy_on_context_create",
            FailStrategy::FailClosed,
            "reply 503",
        ),
        (
            "proxy_on_request_headers",
            FailStrategy::FailClosed,
            "reply 503",
        ),
        (
            "proxy_on_context_create",
            FailStrategy::FailOpen,
            "Continue",
        ),
        (
            "proxy_on_request_headers",
            FailStrategy::FailOpen,
            "Continue",
        ),
        ("proxy_on_log", FailStrategy::FailClosed, "Continue"),
        ("proxy_on_done", FailStrategy::FailClosed, "Continue"),
        ("proxy_on_delete", FailStrategy::FailClosed, "Continue"),
    ] {
        let seen = same_both_ways(&[("t", guest(at, "(unreachable)"), fail)]);
        assert_eq!(seen.2.len(), 1, "{at}: one trap, the VM is dead after it");
        let t = &seen.2[0];
        assert_eq!(t.callback, at);
        assert!(t.message.contains("unreachable"), "{at}: {}", t.message);
        assert!(
            !t.backtrace.contains("meshward-batch"),
            "{at}: the shim's frame is not the plugin's: {}",
            t.backtrace
        );
        assert_eq!(seen.0[0], first_flow, "{at} {fail:?}");
        let failed = format!("Function: {at} failed: ");
        assert!(
            messages(&seen).iter().any(|m| m.starts_with(&failed)),
            "{at}: {:?}",
            messages(&seen)
        );
        // Nothing of the dead VM runs after the trap.
        let after = messages(&seen)
            .iter()
            .skip_while(|m| !m.starts_with(&failed))
            .skip(1)
            .filter(|m| m.starts_with("proxy_on"))
            .count();
        assert_eq!(after, 0, "{at}: {:?}", messages(&seen));
    }
}

#[test]
fn a_callback_past_the_deadline_in_a_batch_is_interrupted_and_named() {
    for at in ["proxy_on_context_create", "proxy_on_done"] {
        let seen = same_both_ways(&[(
            "spin",
            guest(at, "(loop $l (br $l))"),
            FailStrategy::FailClosed,
        )]);
        assert_eq!(seen.2.len(), 1);
        assert_eq!(seen.2[0].callback, at);
        assert!(
            seen.2[0].message.contains("interrupt"),
            "{}",
            seen.2[0].message
        );
    }
}

#[test]
fn each_callback_of_a_batch_starts_with_its_own_context_as_the_effective_one() {
    // proxy_on_context_create / proxy_on_log make the root context the effective one; the
    // next callback still acts on the stream (its :path read / local reply answer OK).
    let to_root = "(drop (call $eff (global.get $root)))";
    let seen = same_both_ways(&[(
        "e",
        guest("proxy_on_context_create", to_root),
        FailStrategy::FailClosed,
    )]);
    assert!(messages(&seen).contains(&"proxy_on_request_headers s=0"));
    // A local reply from proxy_on_done answers OK only on a stream context: logged as the
    // status digit of a second line.
    let reply = r#"(i32.store8 (i32.const 48) (i32.add (i32.const 48)
        (call $reply (i32.const 200) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
          (i32.const 0) (i32.const 0) (i32.const -1))))
      (drop (call $log (i32.const 2) (i32.const 48) (i32.const 1)))"#;
    let wasm = guest_with(&[("proxy_on_log", to_root), ("proxy_on_done", reply)]);
    let seen = same_both_ways(&[("r", wasm, FailStrategy::FailClosed)]);
    assert!(
        messages(&seen).contains(&"0"),
        "the local reply from proxy_on_done answered: {:?}",
        messages(&seen)
    );
}
