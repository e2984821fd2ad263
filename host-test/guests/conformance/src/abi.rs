//! The raw proxy-wasm ABI 0.2.1 imports (module `env`) and the WASI preview 1 calls the spec
//! requires, with thin safe wrappers that return the host's status instead of panicking.
//! Numbers follow the spec (`proxy-wasm/spec abi-versions/v0.2.1`). This file knows nothing
//! of test cases.

#![allow(unsafe_code)]

pub const OK: u32 = 0;
pub const NOT_FOUND: u32 = 1;
pub const BAD_ARGUMENT: u32 = 2;
pub const PARSE_FAILURE: u32 = 4;
pub const EMPTY: u32 = 7;
pub const CAS_MISMATCH: u32 = 8;
pub const UNIMPLEMENTED: u32 = 12;

pub const CONTINUE: u32 = 0;
pub const PAUSE: u32 = 1;

pub const LOG_INFO: u32 = 2;
pub const LOG_ERROR: u32 = 4;

pub const BUF_REQUEST_BODY: u32 = 0;
pub const BUF_RESPONSE_BODY: u32 = 1;
pub const BUF_CALL_RESPONSE_BODY: u32 = 4;
pub const BUF_GRPC_MESSAGE: u32 = 5;
pub const BUF_VM_CONFIGURATION: u32 = 6;
pub const BUF_PLUGIN_CONFIGURATION: u32 = 7;

pub const MAP_REQUEST_HEADERS: u32 = 0;
pub const MAP_REQUEST_TRAILERS: u32 = 1;
pub const MAP_RESPONSE_HEADERS: u32 = 2;
pub const MAP_CALL_RESPONSE_HEADERS: u32 = 6;

pub const STREAM_REQUEST: u32 = 0;
pub const STREAM_UPSTREAM: u32 = 3;

pub const METRIC_COUNTER: u32 = 0;
pub const METRIC_GAUGE: u32 = 1;
pub const METRIC_HISTOGRAM: u32 = 2;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, ptr: *const u8, len: usize) -> u32;
    fn proxy_get_log_level(level: *mut u32) -> u32;
    fn proxy_get_current_time_nanoseconds(out: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_done() -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_get_buffer_bytes(
        buffer: u32,
        start: usize,
        max: usize,
        out: *mut *mut u8,
        out_len: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        buffer: u32,
        start: usize,
        size: usize,
        ptr: *const u8,
        len: usize,
    ) -> u32;
    fn proxy_get_buffer_status(buffer: u32, len: *mut usize, flags: *mut u32) -> u32;
    fn proxy_get_header_map_size(map: u32, size: *mut usize) -> u32;
    fn proxy_get_header_map_pairs(map: u32, out: *mut *mut u8, out_len: *mut usize) -> u32;
    fn proxy_set_header_map_pairs(map: u32, ptr: *const u8, len: usize) -> u32;
    fn proxy_get_header_map_value(
        map: u32,
        key: *const u8,
        key_len: usize,
        out: *mut *mut u8,
        out_len: *mut usize,
    ) -> u32;
    fn proxy_add_header_map_value(
        map: u32,
        key: *const u8,
        key_len: usize,
        value: *const u8,
        value_len: usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map: u32,
        key: *const u8,
        key_len: usize,
        value: *const u8,
        value_len: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map: u32, key: *const u8, key_len: usize) -> u32;
    fn proxy_continue_stream(stream: u32) -> u32;
    fn proxy_close_stream(stream: u32) -> u32;
    fn proxy_get_status(code: *mut u32, out: *mut *mut u8, out_len: *mut usize) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn proxy_send_local_response(
        status: u32,
        details: *const u8,
        details_len: usize,
        body: *const u8,
        body_len: usize,
        headers: *const u8,
        headers_len: usize,
        grpc_status: i32,
    ) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn proxy_http_call(
        upstream: *const u8,
        upstream_len: usize,
        headers: *const u8,
        headers_len: usize,
        body: *const u8,
        body_len: usize,
        trailers: *const u8,
        trailers_len: usize,
        timeout_ms: u32,
        token: *mut u32,
    ) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn proxy_grpc_call(
        upstream: *const u8,
        upstream_len: usize,
        service: *const u8,
        service_len: usize,
        method: *const u8,
        method_len: usize,
        metadata: *const u8,
        metadata_len: usize,
        message: *const u8,
        message_len: usize,
        timeout_ms: u32,
        token: *mut u32,
    ) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn proxy_grpc_stream(
        upstream: *const u8,
        upstream_len: usize,
        service: *const u8,
        service_len: usize,
        method: *const u8,
        method_len: usize,
        metadata: *const u8,
        metadata_len: usize,
        token: *mut u32,
    ) -> u32;
    fn proxy_grpc_send(token: u32, message: *const u8, message_len: usize, end_stream: u32) -> u32;
    fn proxy_grpc_cancel(token: u32) -> u32;
    fn proxy_grpc_close(token: u32) -> u32;
    fn proxy_set_shared_data(
        key: *const u8,
        key_len: usize,
        value: *const u8,
        value_len: usize,
        cas: u32,
    ) -> u32;
    fn proxy_get_shared_data(
        key: *const u8,
        key_len: usize,
        out: *mut *mut u8,
        out_len: *mut usize,
        cas: *mut u32,
    ) -> u32;
    fn proxy_register_shared_queue(name: *const u8, name_len: usize, id: *mut u32) -> u32;
    fn proxy_resolve_shared_queue(
        vm_id: *const u8,
        vm_id_len: usize,
        name: *const u8,
        name_len: usize,
        id: *mut u32,
    ) -> u32;
    fn proxy_enqueue_shared_queue(id: u32, value: *const u8, value_len: usize) -> u32;
    fn proxy_dequeue_shared_queue(id: u32, out: *mut *mut u8, out_len: *mut usize) -> u32;
    fn proxy_define_metric(kind: u32, name: *const u8, name_len: usize, id: *mut u32) -> u32;
    fn proxy_record_metric(id: u32, value: u64) -> u32;
    fn proxy_increment_metric(id: u32, delta: i64) -> u32;
    fn proxy_get_metric(id: u32, value: *mut u64) -> u32;
    fn proxy_get_property(
        path: *const u8,
        path_len: usize,
        out: *mut *mut u8,
        out_len: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path: *const u8,
        path_len: usize,
        value: *const u8,
        value_len: usize,
    ) -> u32;
    fn proxy_call_foreign_function(
        name: *const u8,
        name_len: usize,
        args: *const u8,
        args_len: usize,
        out: *mut *mut u8,
        out_len: *mut usize,
    ) -> u32;
}

#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    fn fd_write(fd: u32, iovs: *const u32, iovs_len: usize, written: *mut usize) -> u32;
    fn clock_time_get(clock: u32, precision: u64, out: *mut u64) -> u32;
    fn random_get(buf: *mut u8, len: usize) -> u32;
    fn environ_sizes_get(count: *mut usize, size: *mut usize) -> u32;
    fn environ_get(environ: *mut *mut u8, buf: *mut u8) -> u32;
    fn args_sizes_get(count: *mut usize, size: *mut usize) -> u32;
}

/// The guest allocator the host calls to return buffers (`proxy_on_memory_allocate`).
/// Each buffer is a `Vec<u8>` of exactly `size` capacity; [`take`] turns it back into one.
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let mut v: Vec<u8> = Vec::with_capacity(size);
    let ptr = v.as_mut_ptr();
    std::mem::forget(v);
    ptr
}

/// Takes ownership of a host-returned buffer.
fn take(ptr: *mut u8, len: usize) -> Vec<u8> {
    if ptr.is_null() || len == 0 {
        return Vec::new();
    }
    // SAFETY: the host wrote `len` bytes into a buffer it got from proxy_on_memory_allocate(len).
    unsafe { Vec::from_raw_parts(ptr, len, len) }
}

/// A status and, when OK, a value.
pub type Got<T> = (u32, T);

pub fn log(level: u32, msg: &str) -> u32 {
    // SAFETY: pointer and length of a live str.
    unsafe { proxy_log(level, msg.as_ptr(), msg.len()) }
}

pub fn log_level() -> Got<u32> {
    let mut level = u32::MAX;
    // SAFETY: out-pointer to a local.
    let s = unsafe { proxy_get_log_level(&mut level) };
    (s, level)
}

pub fn now_nanos() -> u64 {
    let mut t = 0u64;
    // SAFETY: out-pointer to a local.
    unsafe { proxy_get_current_time_nanoseconds(&mut t) };
    t
}

pub fn set_tick_period(ms: u32) -> u32 {
    // SAFETY: plain value.
    unsafe { proxy_set_tick_period_milliseconds(ms) }
}

pub fn done() -> u32 {
    // SAFETY: no arguments.
    unsafe { proxy_done() }
}

pub fn set_effective_context(id: u32) -> u32 {
    // SAFETY: plain value.
    unsafe { proxy_set_effective_context(id) }
}

pub fn get_buffer(buffer: u32, start: usize, max: usize) -> Got<Vec<u8>> {
    let (mut ptr, mut len) = (std::ptr::null_mut(), 0usize);
    // SAFETY: out-pointers to locals.
    let s = unsafe { proxy_get_buffer_bytes(buffer, start, max, &mut ptr, &mut len) };
    (s, take(ptr, len))
}

pub fn set_buffer(buffer: u32, start: usize, size: usize, value: &[u8]) -> u32 {
    // SAFETY: pointer and length of a live slice.
    unsafe { proxy_set_buffer_bytes(buffer, start, size, value.as_ptr(), value.len()) }
}

pub fn buffer_status(buffer: u32) -> Got<usize> {
    let (mut len, mut flags) = (usize::MAX, 0u32);
    // SAFETY: out-pointers to locals.
    let s = unsafe { proxy_get_buffer_status(buffer, &mut len, &mut flags) };
    (s, len)
}

pub fn map_size(map: u32) -> Got<usize> {
    let mut size = usize::MAX;
    // SAFETY: out-pointer to a local.
    let s = unsafe { proxy_get_header_map_size(map, &mut size) };
    (s, size)
}

/// Raw serialized pairs, as the host wrote them.
pub fn map_pairs_raw(map: u32) -> Got<Vec<u8>> {
    let (mut ptr, mut len) = (std::ptr::null_mut(), 0usize);
    // SAFETY: out-pointers to locals.
    let s = unsafe { proxy_get_header_map_pairs(map, &mut ptr, &mut len) };
    (s, take(ptr, len))
}

pub fn map_pairs(map: u32) -> Got<Vec<(String, String)>> {
    let (s, raw) = map_pairs_raw(map);
    (s, decode_pairs(&raw).unwrap_or_default())
}

pub fn set_map_pairs(map: u32, pairs: &[(&str, &str)]) -> u32 {
    let raw = encode_pairs(pairs);
    // SAFETY: pointer and length of a live Vec.
    unsafe { proxy_set_header_map_pairs(map, raw.as_ptr(), raw.len()) }
}

pub fn map_get(map: u32, key: &str) -> Got<String> {
    let (mut ptr, mut len) = (std::ptr::null_mut(), 0usize);
    // SAFETY: pointers to a live str and to locals.
    let s = unsafe { proxy_get_header_map_value(map, key.as_ptr(), key.len(), &mut ptr, &mut len) };
    (s, String::from_utf8_lossy(&take(ptr, len)).into_owned())
}

pub fn map_add(map: u32, key: &str, value: &str) -> u32 {
    // SAFETY: pointers to live strs.
    unsafe { proxy_add_header_map_value(map, key.as_ptr(), key.len(), value.as_ptr(), value.len()) }
}

pub fn map_replace(map: u32, key: &str, value: &str) -> u32 {
    // SAFETY: pointers to live strs.
    unsafe {
        proxy_replace_header_map_value(map, key.as_ptr(), key.len(), value.as_ptr(), value.len())
    }
}

pub fn map_remove(map: u32, key: &str) -> u32 {
    // SAFETY: pointer to a live str.
    unsafe { proxy_remove_header_map_value(map, key.as_ptr(), key.len()) }
}

pub fn continue_stream(stream: u32) -> u32 {
    // SAFETY: plain value.
    unsafe { proxy_continue_stream(stream) }
}

pub fn close_stream(stream: u32) -> u32 {
    // SAFETY: plain value.
    unsafe { proxy_close_stream(stream) }
}

pub fn get_status() -> Got<(u32, String)> {
    let (mut code, mut ptr, mut len) = (u32::MAX, std::ptr::null_mut(), 0usize);
    // SAFETY: out-pointers to locals.
    let s = unsafe { proxy_get_status(&mut code, &mut ptr, &mut len) };
    (
        s,
        (code, String::from_utf8_lossy(&take(ptr, len)).into_owned()),
    )
}

pub fn send_local_response(
    status: u32,
    details: &str,
    body: &[u8],
    headers: &[(&str, &str)],
    grpc_status: i32,
) -> u32 {
    let h = encode_pairs(headers);
    // SAFETY: pointers and lengths of live buffers.
    unsafe {
        proxy_send_local_response(
            status,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            h.as_ptr(),
            h.len(),
            grpc_status,
        )
    }
}

pub fn http_call(
    upstream: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    trailers: &[(&str, &str)],
    timeout_ms: u32,
) -> Got<u32> {
    let h = encode_pairs(headers);
    let t = encode_pairs(trailers);
    let mut token = 0u32;
    // SAFETY: pointers and lengths of live buffers; out-pointer to a local.
    let s = unsafe {
        proxy_http_call(
            upstream.as_ptr(),
            upstream.len(),
            h.as_ptr(),
            h.len(),
            body.as_ptr(),
            body.len(),
            t.as_ptr(),
            t.len(),
            timeout_ms,
            &mut token,
        )
    };
    (s, token)
}

pub fn grpc_call(
    upstream: &str,
    service: &str,
    method: &str,
    metadata: &[(&str, &str)],
    message: &[u8],
    timeout_ms: u32,
) -> Got<u32> {
    let md = encode_pairs(metadata);
    let mut token = 0u32;
    // SAFETY: pointers and lengths of live buffers; out-pointer to a local.
    let s = unsafe {
        proxy_grpc_call(
            upstream.as_ptr(),
            upstream.len(),
            service.as_ptr(),
            service.len(),
            method.as_ptr(),
            method.len(),
            md.as_ptr(),
            md.len(),
            message.as_ptr(),
            message.len(),
            timeout_ms,
            &mut token,
        )
    };
    (s, token)
}

pub fn grpc_stream(
    upstream: &str,
    service: &str,
    method: &str,
    metadata: &[(&str, &str)],
) -> Got<u32> {
    let md = encode_pairs(metadata);
    let mut token = 0u32;
    // SAFETY: pointers and lengths of live buffers; out-pointer to a local.
    let s = unsafe {
        proxy_grpc_stream(
            upstream.as_ptr(),
            upstream.len(),
            service.as_ptr(),
            service.len(),
            method.as_ptr(),
            method.len(),
            md.as_ptr(),
            md.len(),
            &mut token,
        )
    };
    (s, token)
}

pub fn grpc_send(token: u32, message: &[u8], end_stream: bool) -> u32 {
    // SAFETY: pointer and length of a live slice.
    unsafe {
        proxy_grpc_send(
            token,
            message.as_ptr(),
            message.len(),
            u32::from(end_stream),
        )
    }
}

pub fn grpc_cancel(token: u32) -> u32 {
    // SAFETY: plain value.
    unsafe { proxy_grpc_cancel(token) }
}

pub fn grpc_close(token: u32) -> u32 {
    // SAFETY: plain value.
    unsafe { proxy_grpc_close(token) }
}

pub fn set_shared(key: &str, value: &[u8], cas: u32) -> u32 {
    // SAFETY: pointers to live buffers.
    unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) }
}

pub fn get_shared(key: &str) -> Got<(Vec<u8>, u32)> {
    let (mut ptr, mut len, mut cas) = (std::ptr::null_mut(), 0usize, 0u32);
    // SAFETY: pointer to a live str; out-pointers to locals.
    let s = unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut ptr, &mut len, &mut cas) };
    (s, (take(ptr, len), cas))
}

pub fn register_queue(name: &str) -> Got<u32> {
    let mut id = 0u32;
    // SAFETY: pointer to a live str; out-pointer to a local.
    let s = unsafe { proxy_register_shared_queue(name.as_ptr(), name.len(), &mut id) };
    (s, id)
}

pub fn resolve_queue(vm_id: &str, name: &str) -> Got<u32> {
    let mut id = 0u32;
    // SAFETY: pointers to live strs; out-pointer to a local.
    let s = unsafe {
        proxy_resolve_shared_queue(
            vm_id.as_ptr(),
            vm_id.len(),
            name.as_ptr(),
            name.len(),
            &mut id,
        )
    };
    (s, id)
}

pub fn enqueue(id: u32, value: &[u8]) -> u32 {
    // SAFETY: pointer to a live slice.
    unsafe { proxy_enqueue_shared_queue(id, value.as_ptr(), value.len()) }
}

pub fn dequeue(id: u32) -> Got<Vec<u8>> {
    let (mut ptr, mut len) = (std::ptr::null_mut(), 0usize);
    // SAFETY: out-pointers to locals.
    let s = unsafe { proxy_dequeue_shared_queue(id, &mut ptr, &mut len) };
    (s, take(ptr, len))
}

pub fn define_metric(kind: u32, name: &str) -> Got<u32> {
    let mut id = 0u32;
    // SAFETY: pointer to a live str; out-pointer to a local.
    let s = unsafe { proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) };
    (s, id)
}

pub fn record_metric(id: u32, value: u64) -> u32 {
    // SAFETY: plain values.
    unsafe { proxy_record_metric(id, value) }
}

pub fn increment_metric(id: u32, delta: i64) -> u32 {
    // SAFETY: plain values.
    unsafe { proxy_increment_metric(id, delta) }
}

pub fn get_metric(id: u32) -> Got<u64> {
    let mut v = u64::MAX;
    // SAFETY: out-pointer to a local.
    let s = unsafe { proxy_get_metric(id, &mut v) };
    (s, v)
}

pub fn get_property(path: &[&str]) -> Got<Vec<u8>> {
    let p = path.join("\0");
    let (mut ptr, mut len) = (std::ptr::null_mut(), 0usize);
    // SAFETY: pointer to a live String; out-pointers to locals.
    let s = unsafe { proxy_get_property(p.as_ptr(), p.len(), &mut ptr, &mut len) };
    (s, take(ptr, len))
}

pub fn set_property(path: &[&str], value: &[u8]) -> u32 {
    let p = path.join("\0");
    // SAFETY: pointers to live buffers.
    unsafe { proxy_set_property(p.as_ptr(), p.len(), value.as_ptr(), value.len()) }
}

pub fn call_foreign(name: &str, args: &[u8]) -> Got<Vec<u8>> {
    let (mut ptr, mut len) = (std::ptr::null_mut(), 0usize);
    // SAFETY: pointers to live buffers; out-pointers to locals.
    let s = unsafe {
        proxy_call_foreign_function(
            name.as_ptr(),
            name.len(),
            args.as_ptr(),
            args.len(),
            &mut ptr,
            &mut len,
        )
    };
    (s, take(ptr, len))
}

pub fn wasi_fd_write(fd: u32, data: &[u8]) -> Got<usize> {
    let iov = [data.as_ptr() as u32, data.len() as u32];
    let mut written = 0usize;
    // SAFETY: one iovec pointing at a live slice; out-pointer to a local.
    let e = unsafe { fd_write(fd, iov.as_ptr(), 1, &mut written) };
    (e, written)
}

pub fn wasi_clock(clock: u32) -> Got<u64> {
    let mut t = 0u64;
    // SAFETY: out-pointer to a local.
    let e = unsafe { clock_time_get(clock, 1, &mut t) };
    (e, t)
}

pub fn wasi_random(len: usize) -> Got<Vec<u8>> {
    let mut buf = vec![0u8; len];
    // SAFETY: pointer and length of a live buffer.
    let e = unsafe { random_get(buf.as_mut_ptr(), len) };
    (e, buf)
}

/// The WASI environment as `KEY=VALUE` strings, plus the byte size the host reported.
pub fn wasi_environ() -> Got<(Vec<String>, usize)> {
    let (mut count, mut size) = (0usize, 0usize);
    // SAFETY: out-pointers to locals.
    let e = unsafe { environ_sizes_get(&mut count, &mut size) };
    if e != 0 {
        return (e, (Vec::new(), size));
    }
    let mut ptrs: Vec<*mut u8> = vec![std::ptr::null_mut(); count];
    let mut buf = vec![0u8; size];
    // SAFETY: `count` pointer slots and `size` bytes, as the host asked for.
    let e = unsafe { environ_get(ptrs.as_mut_ptr(), buf.as_mut_ptr()) };
    let vars = buf
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    (e, (vars, size))
}

pub fn wasi_args_sizes() -> Got<(usize, usize)> {
    let (mut count, mut size) = (usize::MAX, usize::MAX);
    // SAFETY: out-pointers to locals.
    let e = unsafe { args_sizes_get(&mut count, &mut size) };
    (e, (count, size))
}

/// proxy-wasm map serialization: u32 count, (u32 key_len, u32 value_len) per pair, then each
/// key and value followed by NUL.
pub fn encode_pairs(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// Strict decoder: `None` when the host's serialization is malformed (wrong NULs, lengths).
pub fn decode_pairs(raw: &[u8]) -> Option<Vec<(String, String)>> {
    if raw.is_empty() || raw == [0] {
        return Some(Vec::new());
    }
    let word = |at: usize| -> Option<usize> {
        let b = raw.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = word(0)?;
    let mut lens = Vec::with_capacity(count.min(1024));
    for i in 0..count {
        lens.push((word(4 + i * 8)?, word(8 + i * 8)?));
    }
    let mut at = 4 + count * 8;
    let mut pairs = Vec::with_capacity(lens.len());
    for (kl, vl) in lens {
        let k = raw.get(at..at + kl)?;
        if raw.get(at + kl) != Some(&0) {
            return None;
        }
        at += kl + 1;
        let v = raw.get(at..at + vl)?;
        if raw.get(at + vl) != Some(&0) {
            return None;
        }
        at += vl + 1;
        pairs.push((
            String::from_utf8_lossy(k).into_owned(),
            String::from_utf8_lossy(v).into_owned(),
        ));
    }
    (at == raw.len()).then_some(pairs)
}
