//! Conformance guest for the meshward host: a proxy-wasm module written against the raw ABI
//! (no SDK) that exercises every host function of ABI 0.2.1 and checks, from inside the VM,
//! that the host behaves as Envoy does (statuses, access windows, serialization, CAS rules,
//! queues, ticks, properties, metrics, callouts, local replies, pause/resume, WASI).
//!
//! The plugin configuration selects the case: `<case> [key=value ...]`, e.g.
//! `lifecycle name=conf root=conf-root`. Results are log lines: `PASS <check>`,
//! `FAIL <check>: ...`, `NOTE ...` and `EV <callback> ...` (see `report.rs`). The host tests in
//! `host-test/tests/conformance_*.rs` drive the requests and assert on those lines.
//! This crate knows nothing of the host's implementation, only of the ABI.

mod abi;
mod cases;
mod report;

use std::cell::RefCell;
use std::collections::HashMap;

/// What the guest remembers between callbacks (one VM = one thread = one `State`).
#[derive(Default)]
pub(crate) struct State {
    pub case: String,
    pub params: HashMap<String, String>,
    pub root_id: u32,
    pub initialized: bool,
    pub initialized_before_create: bool,
    /// (status, bytes, size argument) of VM_CONFIGURATION read in on_vm_start.
    pub vm_config: Option<(u32, Vec<u8>, usize)>,
    /// Status of reading PLUGIN_CONFIGURATION in on_vm_start.
    pub plugin_config_in_vm_start: u32,
    pub ticks: u32,
    pub queue_id: u32,
    /// Stream contexts paused and waiting for the root context to resume them.
    pub parked: Vec<u32>,
    /// Per stream: the callout token it waits for.
    pub tokens: HashMap<u32, u32>,
    /// Per stream: body callbacks seen (size, end_of_stream).
    pub bodies: HashMap<u32, Vec<(usize, bool)>>,
    /// Per stream: the value of a request header the case keys on (`x-mode`).
    pub modes: HashMap<u32, String>,
    /// Case `shutdown`: the root context answered false to on_done and waits to call
    /// `proxy_done`.
    pub done_pending: bool,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

/// Runs `f` on the state. Never hold the borrow across a host call that may re-enter.
pub(crate) fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(|s| f(&mut s.borrow_mut()))
}

pub(crate) fn case() -> String {
    with(|s| s.case.clone())
}

pub(crate) fn param(key: &str) -> Option<String> {
    with(|s| s.params.get(key).cloned())
}

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

#[cfg(target_os = "wasi")]
extern "C" {
    fn __wasm_call_ctors();
}

/// The reactor entry point. Calling `__wasm_call_ctors` here (as the Rust SDK's `main!` macro
/// does, proxy-wasm-rust-sdk `src/lib.rs`) keeps wasm-ld from wrapping every export in
/// constructor/destructor calls, which would reset libc state on each callback.
#[no_mangle]
pub extern "C" fn _initialize() {
    #[cfg(target_os = "wasi")]
    // SAFETY: called once by the host before any other export, as the reactor ABI requires.
    unsafe {
        __wasm_call_ctors();
    }
    with(|s| s.initialized = true);
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(context_id: u32, parent_id: u32) {
    report::event(&format!("create ctx={context_id} parent={parent_id}"));
    if parent_id == 0 {
        with(|s| {
            s.root_id = context_id;
            s.initialized_before_create = s.initialized;
        });
    } else {
        let root = with(|s| s.root_id);
        report::check("stream_parent_is_root", parent_id, root);
        report::check_that(
            "stream_id_differs_from_root",
            context_id != root,
            context_id,
        );
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(root_id: u32, vm_config_size: usize) -> u32 {
    report::event(&format!("vm_start ctx={root_id}"));
    let (status, bytes) = abi::get_buffer(abi::BUF_VM_CONFIGURATION, 0, vm_config_size);
    let (plugin_status, _) = abi::get_buffer(abi::BUF_PLUGIN_CONFIGURATION, 0, usize::MAX >> 1);
    with(|s| {
        s.vm_config = Some((status, bytes, vm_config_size));
        s.plugin_config_in_vm_start = plugin_status;
    });
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(root_id: u32, config_size: usize) -> u32 {
    report::event(&format!("configure ctx={root_id}"));
    let (status, config) = abi::get_buffer(abi::BUF_PLUGIN_CONFIGURATION, 0, config_size);
    let text = String::from_utf8_lossy(&config).into_owned();
    let mut words = text.split_whitespace();
    let case = words.next().unwrap_or("").to_string();
    let params = words
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    with(|s| {
        s.case = case.clone();
        s.params = params;
    });
    report::check("configure_reads_plugin_configuration", status, abi::OK);
    report::check("configure_size_matches_buffer", config.len(), config_size);
    cases::on_configure(&case, root_id)
}

#[no_mangle]
pub extern "C" fn proxy_on_tick(root_id: u32) {
    let n = with(|s| {
        s.ticks += 1;
        s.ticks
    });
    report::event(&format!(
        "tick ctx={root_id} n={n} at_ms={}",
        abi::now_nanos() / 1_000_000
    ));
    cases::on_tick(&case(), root_id, n);
}

#[no_mangle]
pub extern "C" fn proxy_on_queue_ready(root_id: u32, queue_id: u32) {
    report::event(&format!("queue_ready ctx={root_id} queue={queue_id}"));
    cases::on_queue_ready(&case(), queue_id);
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(ctx: u32, num_headers: usize, eos: u32) -> u32 {
    report::event(&format!(
        "request_headers ctx={ctx} n={num_headers} eos={eos}"
    ));
    let (_, mode) = abi::map_get(abi::MAP_REQUEST_HEADERS, "x-mode");
    with(|s| s.modes.insert(ctx, mode));
    cases::on_request_headers(&case(), ctx, num_headers, eos != 0)
}

#[no_mangle]
pub extern "C" fn proxy_on_request_body(ctx: u32, size: usize, eos: u32) -> u32 {
    report::event(&format!("request_body ctx={ctx} size={size} eos={eos}"));
    with(|s| s.bodies.entry(ctx).or_default().push((size, eos != 0)));
    cases::on_request_body(&case(), ctx, size, eos != 0)
}

#[no_mangle]
pub extern "C" fn proxy_on_request_trailers(ctx: u32, num: usize) -> u32 {
    report::event(&format!("request_trailers ctx={ctx} n={num}"));
    abi::CONTINUE
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(ctx: u32, num_headers: usize, eos: u32) -> u32 {
    report::event(&format!(
        "response_headers ctx={ctx} n={num_headers} eos={eos}"
    ));
    cases::on_response_headers(&case(), ctx, num_headers, eos != 0)
}

#[no_mangle]
pub extern "C" fn proxy_on_response_body(ctx: u32, size: usize, eos: u32) -> u32 {
    report::event(&format!("response_body ctx={ctx} size={size} eos={eos}"));
    cases::on_response_body(&case(), ctx, size, eos != 0)
}

#[no_mangle]
pub extern "C" fn proxy_on_response_trailers(ctx: u32, num: usize) -> u32 {
    report::event(&format!("response_trailers ctx={ctx} n={num}"));
    abi::CONTINUE
}

#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(
    ctx: u32,
    token: u32,
    num_headers: usize,
    body_size: usize,
    num_trailers: usize,
) {
    report::event(&format!(
        "http_call_response ctx={ctx} token={token} headers={num_headers} body={body_size} trailers={num_trailers}"
    ));
    cases::on_http_call_response(&case(), ctx, token, num_headers, body_size);
}

#[no_mangle]
pub extern "C" fn proxy_on_grpc_receive_initial_metadata(ctx: u32, token: u32, num: usize) {
    report::event(&format!(
        "grpc_initial_metadata ctx={ctx} token={token} n={num}"
    ));
}

#[no_mangle]
pub extern "C" fn proxy_on_grpc_receive(ctx: u32, token: u32, size: usize) {
    report::event(&format!("grpc_receive ctx={ctx} token={token} size={size}"));
    cases::on_grpc_receive(ctx, token, size);
}

#[no_mangle]
pub extern "C" fn proxy_on_grpc_receive_trailing_metadata(ctx: u32, token: u32, num: usize) {
    report::event(&format!(
        "grpc_trailing_metadata ctx={ctx} token={token} n={num}"
    ));
}

#[no_mangle]
pub extern "C" fn proxy_on_grpc_close(ctx: u32, token: u32, status: u32) {
    report::event(&format!(
        "grpc_close ctx={ctx} token={token} status={status}"
    ));
    cases::on_grpc_close(ctx, token, status);
}

#[no_mangle]
pub extern "C" fn proxy_on_done(ctx: u32) -> u32 {
    report::event(&format!("done ctx={ctx}"));
    cases::on_done(&case(), ctx)
}

#[no_mangle]
pub extern "C" fn proxy_on_log(ctx: u32) {
    report::event(&format!("log ctx={ctx}"));
    cases::on_log(&case(), ctx);
}

#[no_mangle]
pub extern "C" fn proxy_on_delete(ctx: u32) {
    report::event(&format!("delete ctx={ctx}"));
    with(|s| {
        s.tokens.remove(&ctx);
        s.bodies.remove(&ctx);
        s.modes.remove(&ctx);
    });
}
