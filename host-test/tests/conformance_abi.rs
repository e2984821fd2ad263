//! Conformance of the host to Envoy's proxy-wasm ABI 0.2.1, checked from inside a real guest
//! (`host-test/guests/conformance`, raw ABI, no SDK) and from outside (what the upstream and
//! downstream see). One test per case of the guest; each asserts the guest's PASS lines and
//! what a plugin author would notice at the edges of the stream.

mod common;

use common::*;
use meshward_host::{
    CalloutReply, FailStrategy, Flow, GrpcCallRequest, GrpcReply, HttpCallRequest, HttpResponse,
    LogLevel, MetricValue, PluginSpec, StreamProps, VirtualClock, Worker,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn lifecycle_buffers_by_phase_and_plugin_properties() {
    let (host, _) = host();
    let spec = conformance(
        "conf",
        "lifecycle name=conf root=conf-root vmcfg=vm-config-bytes",
    )
    .root_id("conf-root")
    .vm_config(b"vm-config-bytes".to_vec());
    let plugin = host.load(spec).expect("lifecycle case loads");
    let mut w = host.worker(&[plugin]).expect("worker starts");
    let id = w.open_http_stream(StreamProps::new());
    let flow = w.request_headers(id, &get("/"), true).expect("request");
    assert_eq!(flow, Flow::Continue);
    let flow = w
        .response_headers(id, &[(":status", "200")], true)
        .expect("response");
    assert_eq!(flow, Flow::Continue);
    w.complete(id).expect("complete");

    assert_checks(
        &host,
        "conf",
        &[
            "configure_reads_plugin_configuration",
            "configure_size_matches_buffer",
            "initialize_runs_before_root_context",
            "configure_gets_root_context_id",
            "vm_start_reads_vm_configuration",
            "vm_configuration_bytes",
            "vm_start_size_argument",
            "plugin_configuration_unavailable_in_vm_start",
            "get_log_level_ok",
            "get_log_level_in_range",
            "log_unknown_level_bad_argument",
            "foreign_function_unknown_not_found",
            "unknown_buffer_bad_argument",
            "done_without_pending_not_found",
            "set_effective_context_unknown_bad_argument",
            "plugin_name_property",
            "plugin_root_id_property",
            "plugin_vm_id_property",
            "wasi_realtime_matches_proxy_time",
            "stream_parent_is_root",
            "stream_id_differs_from_root",
            "plugin_configuration_unavailable_in_request",
            "continue_upstream_unimplemented",
        ],
    );
    // Envoy checks the configuration on a throwaway VM, then starts one VM per worker: the
    // plugin sees on_vm_start and on_configure N+1 times.
    let all = events(&host, "conf", None);
    assert_eq!(
        all.iter().filter(|e| *e == "vm_start").count(),
        2,
        "{all:?}"
    );
    assert_eq!(
        all.iter().filter(|e| *e == "configure").count(),
        2,
        "{all:?}"
    );
    // The proxy time the guest saw is the virtual clock.
    assert!(lines(&host, "conf").contains(&format!("NOTE now_nanos={START}")));
    // Per stream: callbacks in Envoy's order, then log, done, delete (the HTTP connection
    // manager runs the access-log pass before it destroys the filters).
    let ctx: u32 = event_field(&host, "conf", "request_headers", "ctx")
        .and_then(|c| c.parse().ok())
        .expect("request_headers ran");
    assert_eq!(
        events(&host, "conf", Some(ctx)),
        [
            "create",
            "request_headers",
            "response_headers",
            "log",
            "done",
            "delete"
        ]
    );
}

#[test]
fn header_maps_follow_envoy_rules_and_windows() {
    let (host, _) = host();
    let plugin = host.load(conformance("hdr", "headers")).expect("loads");
    let mut w = host.worker(&[plugin]).expect("worker");
    let id = w.open_http_stream(StreamProps::new());
    let req = [
        (":method", "GET"),
        (":path", "/h"),
        (":authority", "example"),
        ("x-dup", "first"),
        ("x-dup", "second"),
        ("x-remove-me", "1"),
    ];
    assert_eq!(w.request_headers(id, &req, false).unwrap(), Flow::Continue);
    assert_eq!(
        w.request_body(id, b"payload", true).unwrap(),
        Flow::Continue
    );
    let resp = [(":status", "200"), ("content-type", "text/plain")];
    assert_eq!(w.response_headers(id, &resp, true).unwrap(), Flow::Continue);
    w.complete(id).unwrap();

    assert_checks(
        &host,
        "hdr",
        &[
            "get_pairs_ok",
            "pairs_serialization_is_well_formed",
            "num_headers_matches_pairs",
            "repeated_header_kept_in_pairs",
            "header_map_size_is_serialized_size",
            "get_returns_first_value_only",
            "get_lowercases_key",
            "get_missing_is_not_found",
            "add_lowercases_key",
            "add_no_uppercase_key",
            "replace_replaces_all_values",
            "replace_adds_missing",
            "removed_is_not_found",
            "remove_missing_is_ok",
            "unknown_map_bad_argument",
            "response_map_unavailable_in_request_headers",
            "request_headers_unavailable_after_continue",
            "request_pairs_ok_after_continue",
            "request_pairs_empty_after_continue",
            "request_headers_not_writable_after_continue",
            "trailers_added_at_end_of_stream",
            "response_status_readable",
            "set_pairs_replaces_map_and_lowercases",
            "request_headers_unavailable_in_response_phase",
            "request_headers_readable_in_on_log",
            "response_headers_readable_in_on_log",
            "missing_in_on_log_is_not_found",
        ],
    );
    let s = w.stream(id).expect("stream kept until released");
    let up = s.request_headers();
    assert_eq!(up.get("x-added"), Some("yes"));
    assert_eq!(up.get("x-new"), Some("n"));
    assert_eq!(up.get_all("x-dup"), vec![b"only".as_slice()]);
    assert_eq!(up.get("x-remove-me"), None);
    assert_eq!(s.request_body(), b"payload");
    let trailers = s.request_trailers().expect("the plugin added trailers");
    assert_eq!(trailers.get("x-trailer"), Some("t"));
    let down = s.response_headers();
    assert_eq!(down.get(":status"), Some("201"));
    assert_eq!(down.get("x-set"), Some("s"));
    assert_eq!(
        down.get("content-type"),
        None,
        "set_header_map_pairs replaces the whole map"
    );
}

#[test]
fn body_buffering_and_buffer_edits() {
    let (host, _) = host();
    let plugin = host.load(conformance("buf", "buffers")).expect("loads");
    let mut w = host.worker(&[plugin]).expect("worker");
    let id = w.open_http_stream(StreamProps::new());
    assert_eq!(
        w.request_headers(id, &get("/b"), false).unwrap(),
        Flow::Continue
    );
    assert_eq!(
        w.request_body(id, b"abc", false).unwrap(),
        Flow::Paused { plugin: 0 },
        "a body PAUSE buffers"
    );
    assert_eq!(w.request_body(id, b"def", true).unwrap(), Flow::Continue);
    assert_eq!(
        w.response_headers(id, &[(":status", "200")], false)
            .unwrap(),
        Flow::Continue
    );
    assert_eq!(w.response_body(id, b"xyz", true).unwrap(), Flow::Continue);
    w.complete(id).unwrap();
    assert_checks(
        &host,
        "buf",
        &[
            "first_chunk_size",
            "buffer_status_reports_size",
            "get_body_bytes",
            "paused_body_size_is_cumulative",
            "buffered_body_is_whole",
            "get_body_slice",
            "set_replaces_prefix",
            "set_prepends",
            "set_appends",
            "body_after_edits",
            "set_in_middle_bad_argument",
            "unknown_buffer_bad_argument",
            "response_body_eos",
            "response_body_read",
            "response_body_replaced",
        ],
    );
    let s = w.stream(id).unwrap();
    assert_eq!(
        s.request_body(),
        b"<ABCDEF>",
        "the upstream gets the edited body once"
    );
    assert_eq!(s.response_body(), b"XYZ!");
}

#[test]
fn shared_data_cas_rules_are_envoys() {
    let (host, _) = host();
    let plugin = host.load(conformance("cas", "shared_data")).expect("loads");
    let mut w = host.worker(&[plugin]).expect("worker");
    let id = w.open_http_stream(StreamProps::new());
    let mut req = get("/s");
    req.push(("x-key", "k1"));
    w.request_headers(id, &req, true).unwrap();
    w.complete(id).unwrap();
    assert_checks(
        &host,
        "cas",
        &[
            "get_missing_not_found",
            "set_missing_key_ignores_cas",
            "get_after_set",
            "cas_is_never_zero",
            "stale_cas_mismatch",
            "value_unchanged_after_mismatch",
            "matching_cas_ok",
            "value_after_cas_set",
            "cas_changes_on_every_set",
            "old_cas_now_mismatch",
            "zero_cas_is_unconditional",
            "value_after_unconditional",
            "empty_value_ok",
            "empty_value_keeps_key",
        ],
    );
    // Envoy never frees a key: "deleting" leaves it with an empty value.
    let (value, cas) = host
        .shared_data()
        .get(b"conformance/cas/k1")
        .expect("the key is retained");
    assert!(value.is_empty());
    assert_ne!(cas, 0);
}

#[test]
fn metrics_semantics_and_prometheus_names() {
    let (host, _) = host();
    let plugin = host.load(conformance("met", "metrics")).expect("loads");
    let mut w = host.worker(&[plugin]).expect("worker");
    for _ in 0..2 {
        let id = w.open_http_stream(StreamProps::new());
        w.request_headers(id, &get("/m"), true).unwrap();
        w.complete(id).unwrap();
    }
    assert_checks(
        &host,
        "met",
        &[
            "define_counter",
            "define_gauge",
            "define_histogram",
            "define_unknown_type_bad_argument",
            "get_counter",
            "counter_increments",
            "counter_decrement_bad_argument",
            "redefine_ok",
            "redefined_metric_shares_stat",
            "gauge_record_sets",
            "gauge_decrements",
            "histogram_record_ok",
            "histogram_get_bad_argument",
            "unknown_metric_get_not_found",
            "unknown_metric_increment_not_found",
        ],
    );
    let m = host.metrics();
    assert_eq!(
        m.get("conformance_requests"),
        Some(MetricValue::Counter(12))
    );
    assert_eq!(m.get("conformance_inflight"), Some(MetricValue::Gauge(4)));
    match m.get("conformance_latency_ms") {
        Some(MetricValue::Histogram { count, sum, .. }) => assert_eq!((count, sum), (2, 84)),
        other => panic!("histogram expected, got {other:?}"),
    }
    let text = m.prometheus_text();
    // Envoy's /stats/prometheus prints `{}` for a metric without tags.
    assert!(
        text.lines().any(|l| l == "conformance_requests{} 12"),
        "{text}"
    );
    assert!(
        !text.contains("envoy_conformance"),
        "custom metrics carry no envoy_ prefix: {text}"
    );
}

#[test]
fn envoy_properties_and_encodings() {
    let (host, _) = host();
    let plugin = host
        .load(conformance("props", "properties name=props root=props-root").root_id("props-root"))
        .expect("loads");
    let mut w = host.worker(&[plugin]).expect("worker");
    let id = w.open_http_stream(
        StreamProps::new()
            .source_address("10.1.2.3:5555")
            .destination_address("10.0.0.1:8080")
            .property(&["connection", "mtls"], vec![1]),
    );
    let req = [
        (":method", "GET"),
        (":path", "/prop?x=1"),
        (":authority", "svc.local"),
        ("x-custom", "c"),
    ];
    w.request_headers(id, &req, true).unwrap();
    w.response_headers(id, &[(":status", "200")], true).unwrap();
    assert_eq!(
        w.stream(id).unwrap().filter_state(&["meshward_note"]),
        Some(b"hi".as_slice())
    );
    w.complete(id).unwrap();
    assert_checks(
        &host,
        "props",
        &[
            "plugin_name",
            "plugin_root_id",
            "plugin_vm_id",
            "source_address",
            "source_port_is_int64_le",
            "connection_mtls_is_bool_byte",
            "request_path",
            "request_url_path",
            "request_method",
            "request_host",
            "request_header_by_path",
            "missing_property_not_found",
            "set_property_ok",
            "set_property_roundtrip",
            "response_code_is_int64_le",
        ],
    );
}

#[test]
fn wasi_subset_behaves_as_in_envoy() {
    let (host, _) = host();
    let plugin = host
        .load(conformance("wasi", "wasi").env("GREETING", "hello"))
        .expect("loads");
    let mut w = host.worker(&[plugin]).expect("worker");
    let id = w.open_http_stream(StreamProps::new());
    w.request_headers(id, &get("/w"), true).unwrap();
    w.complete(id).unwrap();
    assert_checks(
        &host,
        "wasi",
        &[
            "fd_write_stdout",
            "fd_write_stderr",
            "fd_write_other_fd_badf",
            "clock_realtime_matches_proxy_time",
            "clock_monotonic_ok",
            "clock_cputime_notsup",
            "random_get_ok",
            "random_get_fills",
            "random_get_too_large_inval",
            "environ_ok",
            "environ_has_plugin_env",
            "environ_size_consistent",
            "environ_does_not_leak_host",
            "std_env_var",
            "args_empty",
            "std_systemtime_uses_wasi_clock",
        ],
    );
    // stdout is logged at info, stderr at error (Envoy's fd_write).
    let recs = records(&host, "wasi");
    let find = |text: &str| {
        recs.iter()
            .find(|r| r.message.trim_end() == text)
            .map(|r| r.level)
    };
    assert_eq!(find("hello from stdout"), Some(LogLevel::Info));
    assert_eq!(find("hello from stderr"), Some(LogLevel::Error));
    assert_eq!(find("println reaches the log"), Some(LogLevel::Info));
}

#[test]
fn local_reply_runs_through_own_response_callbacks_and_second_is_refused() {
    let (host, _) = host();
    let plugin = host.load(conformance("lr", "local_reply")).expect("loads");
    let mut w = host.worker(&[plugin]).expect("worker");
    let id = w.open_http_stream(StreamProps::new());
    let flow = w.request_headers(id, &get("/limited"), true).unwrap();
    let Flow::LocalReply(reply) = flow else {
        panic!(
            "a local reply stops the request even though the plugin returned CONTINUE: {flow:?}"
        );
    };
    assert_eq!(reply.status, 429);
    assert_eq!(reply.body, b"denied");
    assert_eq!(reply.headers.get("x-reason"), Some("quota"));
    assert_eq!(
        reply.details, "rate_limited",
        "Envoy replaces whitespace in details"
    );
    assert_eq!(
        reply.grpc_status, None,
        "grpc_status -1 means no grpc-status"
    );
    let s = w.stream(id).unwrap();
    assert!(!s.forwarded_upstream());
    assert_eq!(
        s.local_reply().map(|r| r.status),
        Some(429),
        "the second reply changed nothing"
    );
    w.complete(id).unwrap();
    assert_checks(
        &host,
        "lr",
        &[
            "send_local_response_ok",
            "own_local_reply_in_response_headers",
            "local_reply_header_lowercased",
            "second_local_reply_refused",
        ],
    );
}

#[test]
fn a_host_reply_on_a_slot_keeps_nothing_of_a_plugin_reply_before_it() {
    // The slot keeps the last plugin reply's headers for the next one; the host's own replies
    // (fail-closed 503 here) are built from their own headers, never from those.
    let (host, _) = host();
    let trap = host
        .load(
            PluginSpec::new("trap", meshward_artifacts::TRAP)
                .fail_strategy(FailStrategy::FailClosed),
        )
        .expect("loads");
    let replier = host.load(conformance("lrr", "local_reply")).expect("loads");
    let mut w = host.worker(&[trap, replier]).expect("worker");
    let reply = |w: &mut Worker, trap: Option<&str>| {
        let id = w.open_http_stream(StreamProps::new());
        let mut req = get("/t");
        req.extend(trap.map(|t| ("x-trap", t)));
        let flow = w.request_headers(id, &req, true).unwrap();
        w.complete(id).unwrap();
        w.release(id);
        match flow {
            Flow::LocalReply(r) => r,
            f => panic!("expected a local reply, got {f:?}"),
        }
    };
    let first = reply(&mut w, None);
    assert_eq!(
        (first.status, first.headers.get("x-path")),
        (403, Some("/t"))
    );
    let failed = reply(&mut w, Some("panic"));
    assert_eq!(
        (failed.status, failed.details.as_str()),
        (503, "wasm_fail_stream")
    );
    assert_eq!(failed.headers.get("x-path"), None, "{failed:?}");
    assert_eq!(failed.headers.get(":status"), Some("503"), "{failed:?}");
    assert_eq!(host.traps().len(), 1, "{:?}", host.traps());
}

#[test]
fn local_replies_on_a_reused_stream_slot_are_each_their_own() {
    // The host builds a reply in the buffers of the slot's previous one once nothing holds
    // that one any more: a reply the embedder still holds must not change, and a reused one
    // must not keep anything of the reply before it.
    let (host, _) = host();
    let plugin = host.load(conformance("lrr", "local_reply")).expect("loads");
    let mut w = host.worker(&[plugin]).expect("worker");
    let reply = |w: &mut Worker, path: &str| {
        let id = w.open_http_stream(StreamProps::new());
        let flow = w.request_headers(id, &get(path), true).unwrap();
        w.complete(id).unwrap();
        w.release(id);
        match flow {
            Flow::LocalReply(r) => r,
            f => panic!("{path}: expected a local reply, got {f:?}"),
        }
    };
    let long = reply(&mut w, "/a/much/longer/path/than/the/next");
    let mut kept = Vec::new();
    // Repeats in a row too: the host recognises a reply's header bytes equal to the slot's
    // last ones and keeps that map instead of parsing again; a different reply in between
    // must be parsed, and the one after it again.
    for (path, held) in [
        ("/b", true),
        ("/c", false),
        ("/c", false),
        ("/limited", false),
        ("/limited", false),
        ("/d", false),
        ("/limited", false),
        ("/c", false),
    ] {
        let r = reply(&mut w, path);
        if path == "/limited" {
            assert_eq!((r.status, &r.body[..]), (429, &b"denied"[..]));
            assert_eq!(r.headers.get("x-reason"), Some("quota"));
            assert_eq!(r.headers.get("x-path"), None, "{r:?}");
            assert_eq!(r.details, "rate_limited");
        } else {
            assert_eq!((r.status, &r.body[..]), (403, path.as_bytes()), "{r:?}");
            assert_eq!(r.headers.get("x-path"), Some(path), "{r:?}");
            assert_eq!(r.headers.get("x-reason"), None, "{r:?}");
            assert_eq!(r.details, "by_path");
        }
        // What went downstream, whole: the status, the plugin's one header, and what Envoy
        // adds (a default content type, the body's length), each once, nothing left over
        // from the reply before.
        let want_status = r.status.to_string();
        let want_len = r.body.len().to_string();
        assert_eq!(r.headers.len(), 4, "{r:?}");
        assert_eq!(r.headers.get(":status"), Some(want_status.as_str()));
        assert_eq!(r.headers.get_all("content-type"), [&b"text/plain"[..]]);
        assert_eq!(r.headers.get("content-length"), Some(want_len.as_str()));
        if held {
            kept.push(r);
        }
        assert_eq!(long.body, b"/a/much/longer/path/than/the/next");
        assert_eq!(
            long.headers.get("x-path"),
            Some("/a/much/longer/path/than/the/next")
        );
    }
    assert_eq!(kept.len(), 1);
    assert_eq!((kept[0].status, &kept[0].body[..]), (403, &b"/b"[..]));
    assert_eq!(kept[0].headers.get("x-path"), Some("/b"));
    assert!(host.traps().is_empty(), "{:?}", host.traps());
}

#[test]
fn pause_then_resume_from_root_context_delivers_buffered_body_once() {
    let (host, _) = host();
    let plugin = host.load(conformance("pr", "pause_resume")).expect("loads");
    let mut w = host.worker(&[plugin]).expect("worker");
    let id = w.open_http_stream(StreamProps::new());
    assert_eq!(
        w.request_headers(id, &get("/p"), false).unwrap(),
        Flow::Paused { plugin: 0 }
    );
    w.request_body(id, b"abc", false).unwrap();
    w.request_body(id, b"def", true).unwrap();
    assert!(
        !events(&host, "pr", None).contains(&"request_body".to_string()),
        "no body callback while the headers are paused"
    );
    assert!(!w.stream(id).unwrap().forwarded_upstream());
    w.advance(Duration::from_millis(10)); // the tick resumes the stream
    let s = w.stream(id).unwrap();
    assert!(s.forwarded_upstream());
    assert_eq!(s.request_headers().get("x-resumed"), Some("yes"));
    assert_eq!(s.request_body(), b"abcdef");
    assert_checks(
        &host,
        "pr",
        &[
            "set_effective_context_to_stream",
            "body_not_delivered_while_headers_paused",
            "headers_writable_via_effective_context",
            "continue_stream_ok",
            "set_effective_context_unknown",
            "set_effective_context_back_to_root",
            "body_delivered_once_after_resume",
            "resumed_body_bytes",
        ],
    );
}

#[test]
fn close_stream_resets() {
    let (host, _) = host();
    let plugin = host
        .load(conformance("close", "close_stream"))
        .expect("loads");
    let mut w = host.worker(&[plugin]).expect("worker");
    let id = w.open_http_stream(StreamProps::new());
    assert_eq!(
        w.request_headers(id, &get("/c"), true).unwrap(),
        Flow::Reset
    );
    let s = w.stream(id).unwrap();
    assert!(s.reset());
    assert!(!s.forwarded_upstream());
    assert_checks(&host, "close", &["close_stream_ok"]);
}

fn callout_host(seen: Arc<Mutex<Vec<HttpCallRequest>>>) -> (meshward_host::Host, VirtualClock) {
    let clock = VirtualClock::new(START);
    let host = meshward_host::Host::builder()
        .clock(clock.clone())
        .http_cluster("auth", move |req: &HttpCallRequest| {
            seen.lock().unwrap().push(req.clone());
            match req.header("x-mode").unwrap_or_default() {
                "timeout" => CalloutReply::Pending,
                "fail" => CalloutReply::Fail {
                    after: Duration::from_millis(1),
                },
                _ => CalloutReply::Respond {
                    after: Duration::from_millis(5),
                    response: HttpResponse::new(200, b"granted".to_vec())
                        .header("x-verdict", "allow"),
                },
            }
        })
        .grpc_cluster("ratelimit", |req: &GrpcCallRequest| {
            if req.initial_metadata.get("x-md") != Some("1") {
                return Some(GrpcReply::error(3, "missing x-md"));
            }
            if req.service == "meshward.test.Echo" && req.method == "Reverse" {
                let mut reversed = req.message.clone();
                reversed.reverse();
                Some(GrpcReply::ok(reversed).after(Duration::from_millis(3)))
            } else {
                Some(GrpcReply::error(12, "unknown method"))
            }
        })
        .build()
        .expect("host");
    (host, clock)
}

#[test]
fn http_callout_validation_answer_and_resume() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (host, _) = callout_host(seen.clone());
    let plugin = host
        .load(conformance("call", "http_callout"))
        .expect("loads");
    let mut w = host.worker(&[plugin]).expect("worker");
    let id = w.open_http_stream(StreamProps::new());
    assert_eq!(
        w.request_headers(id, &get("/a"), true).unwrap(),
        Flow::Paused { plugin: 0 }
    );
    w.advance(Duration::from_millis(4));
    assert!(
        !w.stream(id).unwrap().forwarded_upstream(),
        "answer due at 5 ms"
    );
    w.advance(Duration::from_millis(1));
    let s = w.stream(id).unwrap();
    assert!(s.forwarded_upstream());
    assert_eq!(s.request_headers().get("x-verdict"), Some("allow"));
    let calls = seen.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "invalid calls never reach the cluster");
    assert_eq!(calls[0].cluster, "auth");
    assert_eq!(calls[0].body, b"ping");
    assert_eq!(calls[0].header(":path"), Some("/check"));
    assert_eq!(
        calls[0].header("content-length"),
        Some("4"),
        "set from the body, as Envoy"
    );
    assert_eq!(calls[0].timeout, Some(Duration::from_millis(1000)));
    assert_checks(
        &host,
        "call",
        &[
            "http_call_unknown_cluster",
            "http_call_missing_path",
            "http_call_missing_authority",
            "http_call_missing_method",
            "http_call_dispatched",
            "http_call_token_nonzero",
            "callback_context_and_token_match_the_call",
            "call_response_status",
            "call_response_header",
            "call_response_body_size",
            "call_response_body",
            "request_headers_writable_while_paused",
            "continue_after_callout",
        ],
    );
}

#[test]
fn http_callout_timeout_and_failure_reach_the_guest_as_zero_headers() {
    for (mode, wait) in [("timeout", 100u64), ("fail", 1)] {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (host, _) = callout_host(seen);
        let plugin = host
            .load(conformance("call", "http_callout"))
            .expect("loads");
        let mut w = host.worker(&[plugin]).expect("worker");
        let id = w.open_http_stream(StreamProps::new());
        let mut req = get("/a");
        req.push(("x-mode", mode));
        w.request_headers(id, &req, true).unwrap();
        w.advance(Duration::from_millis(wait - 1));
        assert!(
            w.stream(id).unwrap().local_reply().is_none(),
            "{mode}: too early"
        );
        w.advance(Duration::from_millis(1));
        let s = w.stream(id).unwrap();
        let reply = s
            .local_reply()
            .unwrap_or_else(|| panic!("{mode}: the guest answers 504"));
        assert_eq!(reply.status, 504, "{mode}");
        assert_eq!(reply.body, b"auth unavailable");
        assert!(!s.forwarded_upstream());
        assert_eq!(
            event_field(&host, "call", "http_call_response", "headers").as_deref(),
            Some("0"),
            "{mode}"
        );
        assert_checks(&host, "call", &["local_reply_from_callout_callback"]);
    }
}

#[test]
fn grpc_callout_carries_bytes_end_to_end() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (host, _) = callout_host(seen);
    let plugin = host
        .load(conformance("grpc", "grpc_callout"))
        .expect("loads");
    let mut w = host.worker(&[plugin]).expect("worker");
    let id = w.open_http_stream(StreamProps::new());
    assert_eq!(
        w.request_headers(id, &get("/g"), true).unwrap(),
        Flow::Paused { plugin: 0 }
    );
    w.advance(Duration::from_millis(3));
    assert!(w.stream(id).unwrap().forwarded_upstream());
    assert_checks(
        &host,
        "grpc",
        &[
            "grpc_call_unknown_cluster_parse_failure",
            "grpc_call_dispatched",
            "grpc_token_nonzero",
            "callback_context_and_token_match_the_call",
            "grpc_message_size",
            "grpc_message_bytes",
            "get_status_ok",
            "get_status_code_matches_close",
            "grpc_close_status_ok",
            "continue_after_grpc",
        ],
    );
}

#[test]
fn grpc_stream_sends_receives_and_closes() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (host, _) = callout_host(seen);
    let plugin = host.load(conformance("gs", "grpc_stream")).expect("loads");
    let mut w = host.worker(&[plugin]).expect("worker");
    let id = w.open_http_stream(StreamProps::new());
    assert_eq!(
        w.request_headers(id, &get("/gs"), true).unwrap(),
        Flow::Paused { plugin: 0 }
    );
    // Each message is answered 3 ms after it was sent; the second one ends the stream.
    w.advance(Duration::from_millis(3));
    assert!(lines(&host, "gs").contains(&"NOTE stream got eno".to_string()));
    assert!(!w.stream(id).unwrap().forwarded_upstream());
    w.advance(Duration::from_millis(3));
    assert!(lines(&host, "gs").contains(&"NOTE stream got owt".to_string()));
    assert!(w.stream(id).unwrap().forwarded_upstream());
    assert_checks(
        &host,
        "gs",
        &[
            "grpc_stream_unknown_cluster_parse_failure",
            "grpc_stream_opened",
            "grpc_stream_token_nonzero",
            "grpc_send_first",
            "grpc_send_unknown_not_found",
            "grpc_cancel_unknown_not_found",
            "grpc_close_unknown_not_found",
            "grpc_stream_message_ok",
            "grpc_send_last",
            "grpc_stream_closed_ok",
            "grpc_close_after_remote_close_not_found",
            "continue_after_stream",
        ],
    );
}

#[test]
fn queue_statuses_and_wakeup_on_one_worker() {
    let (host, _) = host();
    let plugin = host.load(conformance("q", "queues")).expect("loads");
    let mut w = host.worker(&[plugin]).expect("worker");
    let id = w.open_http_stream(StreamProps::new());
    let mut req = get("/q");
    req.push(("x-msg", "m1"));
    w.request_headers(id, &req, true).unwrap();
    w.complete(id).unwrap();
    w.poll();
    assert_checks(
        &host,
        "q",
        &[
            "register_ok",
            "reregister_same_id",
            "resolve_finds_queue",
            "resolve_missing_not_found",
            "resolve_other_vm_not_found",
            "enqueue_unknown_not_found",
            "dequeue_unknown_not_found",
            "dequeue_empty_is_empty",
            "enqueue_ok",
            "queue_ready_id_matches",
            "drained_until_empty",
        ],
    );
    assert!(lines(&host, "q").contains(&"NOTE dequeued m1".to_string()));
}

#[test]
fn ticks_fire_exactly_on_virtual_time_and_follow_period_changes() {
    let (host, _) = host();
    let plugin = host.load(conformance("tick", "ticks")).expect("loads");
    let mut w = host.worker(&[plugin]).expect("worker");
    w.advance(Duration::from_secs(2));
    let at: Vec<u64> = records(&host, "tick")
        .iter()
        .filter(|r| r.message.starts_with("EV tick "))
        .map(|r| {
            let ms: u64 = r
                .message
                .split_whitespace()
                .find_map(|w| w.strip_prefix("at_ms="))
                .and_then(|v| v.parse().ok())
                .expect("at_ms");
            assert!(r.worker.is_some(), "the configuration-check VM never ticks");
            ms - START_MS
        })
        .collect();
    // 100 ms period, changed to 250 ms in the 3rd tick and off in the 5th (Envoy re-arms the
    // timer after each tick; setting 0 disables it).
    assert_eq!(at, [100, 200, 300, 550, 800]);
    assert_checks(
        &host,
        "tick",
        &[
            "set_tick_period_ok",
            "tick_period_change_ok",
            "tick_period_off_ok",
        ],
    );
}

#[test]
fn rejected_configuration_is_a_load_error_with_the_plugins_log_lines() {
    let (host, _) = host();
    let err = host
        .load(conformance("rej", "reject"))
        .map(drop)
        .expect_err("on_configure returned false");
    let text = err.to_string();
    assert!(text.contains("rej"), "names the plugin: {text}");
    assert!(
        text.contains("proxy_on_configure"),
        "names the stage: {text}"
    );
    assert!(
        text.contains("invalid configuration: field `limit`: must be positive"),
        "carries the plugin's own explanation: {text}"
    );
}
