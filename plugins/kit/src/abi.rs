//! The proxy-wasm ABI v0.2.1 host functions (module `env`) that kit and its filters call, and
//! safe wrappers over them. Every wrapper returns `Result<_, Status>` for whatever number the
//! host answers with and never panics (the `proxy-wasm` crate's `hostcalls.rs` panics, i.e.
//! traps the VM, on a status it does not expect). Byte buffers the host returns were
//! allocated through the guest's `proxy_on_memory_allocate` ([`allocate`]) and are taken over
//! as `Vec<u8>` without a copy, as the SDK's wrappers take them; the two read on every
//! request ([`read_property`], [`read_shared_data`]) are read in place instead, a short value from a
//! per-worker scratch buffer that costs no allocation.
//!
//! Only what is needed is imported: a module's import list is part of its size and of what a
//! host must provide. Off wasm (kit's unit tests, clippy) the imports are stubs answering
//! [`Status::UNIMPLEMENTED`], so native builds link. Must not know any filter, policy or
//! context: statuses, enums and serialization only (reference:
//! /work/shared/reference/proxy-wasm-abi.md §1.3-1.5).

use std::cell::{Cell, UnsafeCell};
use std::fmt;
use std::ptr;

/// A `proxy_status_t`. Any number the host returns is representable (no enum to transmute
/// into), and only [`Status::OK`] is success.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u32);

impl Status {
    pub const OK: Status = Status(0);
    pub const NOT_FOUND: Status = Status(1);
    pub const BAD_ARGUMENT: Status = Status(2);
    pub const SERIALIZATION_FAILURE: Status = Status(3);
    pub const PARSE_FAILURE: Status = Status(4);
    pub const INVALID_MEMORY_ACCESS: Status = Status(6);
    pub const EMPTY: Status = Status(7);
    pub const CAS_MISMATCH: Status = Status(8);
    pub const INTERNAL_FAILURE: Status = Status(10);
    pub const UNIMPLEMENTED: Status = Status(12);

    /// The status's name in the ABI, `unknown status` for a number the ABI does not define.
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "Ok",
            1 => "NotFound",
            2 => "BadArgument",
            3 => "SerializationFailure",
            4 => "ParseFailure",
            6 => "InvalidMemoryAccess",
            7 => "Empty",
            8 => "CasMismatch",
            10 => "InternalFailure",
            12 => "Unimplemented",
            _ => "unknown status",
        }
    }

    /// `Ok(())` for [`Status::OK`], the status otherwise.
    fn ok(self) -> Result<(), Status> {
        if self == Status::OK {
            Ok(())
        } else {
            Err(self)
        }
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

/// `proxy_buffer_type_t` values used here.
pub mod buffer {
    pub const GRPC_RECEIVE: u32 = 5;
    pub const VM_CONFIGURATION: u32 = 6;
    pub const PLUGIN_CONFIGURATION: u32 = 7;
}

/// `proxy_map_type_t` values used here.
pub mod map {
    pub const REQUEST_HEADERS: u32 = 0;
    pub const RESPONSE_HEADERS: u32 = 2;
}

/// `proxy_stream_type_t`: the request direction of an HTTP stream.
pub const STREAM_REQUEST: u32 = 0;

/// `proxy_metric_type_t`: a counter.
pub const METRIC_COUNTER: u32 = 0;

/// `proxy_log_level_t` values.
pub mod level {
    pub const TRACE: u32 = 0;
    pub const DEBUG: u32 = 1;
    pub const INFO: u32 = 2;
    pub const WARN: u32 = 3;
    pub const ERROR: u32 = 4;
    pub const CRITICAL: u32 = 5;
}

/// Bytes of the per-worker scratch buffer a short returned value is written into
/// ([`read_property`], [`read_shared_data`]): a peer address, a rate-limit slot's record.
pub const SCRATCH_LEN: usize = 64;

/// A per-worker buffer the host writes one short returned value into instead of a heap
/// block: handed out by [`allocate`] only while a wrapper that reads the value in place has
/// armed it for its host call, and lent to that wrapper's reader until it returns (`busy`),
/// so one value at a time lives in it. A VM runs one thread: no other access can overlap.
struct Scratch {
    /// The next `proxy_on_memory_allocate` of at most [`SCRATCH_LEN`] bytes gets `buf`.
    armed: Cell<bool>,
    /// A reader holds `buf` (a nested wrapper call must not arm it).
    busy: Cell<bool>,
    buf: UnsafeCell<[u8; SCRATCH_LEN]>,
}

thread_local! {
    static SCRATCH: Scratch = const {
        Scratch {
            armed: Cell::new(false),
            busy: Cell::new(false),
            buf: UnsafeCell::new([0; SCRATCH_LEN]),
        }
    };
}

/// The guest side of the host's buffer allocation (`proxy_on_memory_allocate`): the armed
/// scratch buffer for a value of at most [`SCRATCH_LEN`] bytes (see [`Scratch`]), else a
/// block of exactly `size` bytes with alignment 1 (the layout of a `Vec<u8>` whose capacity
/// is `size`), leaked until [`take`] owns it again; a dangling, non-null pointer for 0 bytes
/// (as `Vec` uses). Null when the allocator fails. One call into the allocator, where
/// building a `Vec` and boxing it (as the SDK's `allocator.rs` does) runs its growth
/// machinery: at `opt-level = "z"` nothing of it is inlined, and the host calls this for
/// every buffer it returns.
#[inline(always)]
pub fn allocate(size: usize) -> *mut u8 {
    if size <= SCRATCH_LEN {
        let lent = SCRATCH.with(|s| s.armed.replace(false).then(|| s.buf.get().cast::<u8>()));
        if let Some(p) = lent {
            return p;
        }
    }
    if size == 0 {
        return ptr::NonNull::<u8>::dangling().as_ptr();
    }
    match std::alloc::Layout::from_size_align(size, 1) {
        // SAFETY: a layout of non-zero size.
        Ok(layout) => unsafe { std::alloc::alloc(layout) },
        Err(_) => ptr::null_mut(),
    }
}

/// Owns the buffer the host returned in `data`/`size` (allocated by [`allocate`]); `None` for
/// a null pointer (the host had no value to give).
///
/// # Safety
/// `data` must be null or a buffer of exactly `size` bytes from [`allocate`], all of them
/// written, that nothing else owns, which is what the ABI promises for every `return_*_data`
/// out-parameter.
#[inline(always)]
unsafe fn take(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        return None;
    }
    // SAFETY: see the function's contract: the block was allocated with `Layout(size, 1)`
    // (or is dangling for 0 bytes, which a `Vec` of capacity 0 never frees), which is the
    // layout a `Vec<u8>` of capacity `size` frees with; its `size` bytes are initialized.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

/// Calls `f` with the two out-parameters of a returned buffer and takes the buffer over.
/// `Ok(None)` for NotFound and for a null buffer.
fn returned(f: impl FnOnce(*mut *mut u8, *mut usize) -> u32) -> Result<Option<Vec<u8>>, Status> {
    let mut data: *mut u8 = ptr::null_mut();
    let mut size = 0usize;
    match Status(f(&mut data, &mut size)) {
        // SAFETY: the ABI's contract for returned buffers (see `take`).
        Status::OK => Ok(unsafe { take(data, size) }),
        Status::NOT_FOUND => Ok(None),
        s => Err(s),
    }
}

/// Calls `f` with the two out-parameters of a returned buffer, the scratch buffer armed for
/// it, and hands the value to `read` in place: from the scratch buffer when the host wrote
/// it there, else from a heap block freed afterwards. `read` gets `None` for NotFound and
/// for a null buffer. When a reader already holds the scratch buffer (a wrapper called from
/// inside `read`), the value goes to the heap.
///
/// Inlined into each wrapper, not shared through `dyn` closures: at opt-level `z` the shared
/// version's two closure calls, their `Option` hand-offs and its own call cost ~330 guest
/// instructions per request over the two reads of an allowed one (peer address, slot record),
/// and its code was 631 bytes more of module than the two inlined copies.
#[inline(always)]
fn returned_in<T>(
    f: impl FnOnce(*mut *mut u8, *mut usize) -> u32,
    read: impl FnOnce(Option<&[u8]>) -> T,
) -> Result<T, Status> {
    SCRATCH.with(|s| {
        let armed = !s.busy.get();
        s.armed.set(armed);
        let mut data: *mut u8 = ptr::null_mut();
        let mut size = 0usize;
        let status = Status(f(&mut data, &mut size));
        // Handed out in this call: it was armed and `allocate` took the arm.
        let lent = armed && !s.armed.replace(false);
        match status {
            Status::OK if lent && data == s.buf.get().cast::<u8>() => {
                if size > SCRATCH_LEN {
                    // The host claims more than it was given room for.
                    return Err(Status::INVALID_MEMORY_ACCESS);
                }
                s.busy.set(true);
                // SAFETY: `size <= SCRATCH_LEN` bytes of the scratch buffer (all initialized),
                // which nothing writes while `busy` is set: only an armed wrapper call lets
                // `allocate` hand it out.
                let r = read(Some(unsafe { std::slice::from_raw_parts(data, size) }));
                s.busy.set(false);
                Ok(r)
            }
            // SAFETY: the ABI's contract for returned buffers (see `take`); the scratch
            // buffer was not handed out, so a non-null `data` is a block of `allocate`.
            Status::OK => Ok(read(unsafe { take(data, size) }.as_deref())),
            Status::NOT_FOUND => Ok(read(None)),
            s => Err(s),
        }
    })
}

/// `proxy_log`: one line at `level` (a `proxy_log_level_t`).
pub fn log(level: u32, message: &[u8]) -> Result<(), Status> {
    // SAFETY: the message is live for the call.
    Status(unsafe { sys::proxy_log(level, message.as_ptr(), message.len()) }).ok()
}

/// `proxy_get_log_level`: the host's level as its raw number (no enum: a number outside the
/// ABI's range is the caller's to judge).
pub fn log_level() -> Result<u32, Status> {
    let mut level = u32::MAX;
    // SAFETY: the host writes one u32 to a live local.
    Status(unsafe { sys::proxy_get_log_level(&mut level) }).ok()?;
    Ok(level)
}

/// `proxy_get_current_time_nanoseconds`.
pub fn now_nanos() -> Result<u64, Status> {
    let mut t = 0u64;
    // SAFETY: the host writes one u64 to a live local.
    Status(unsafe { sys::proxy_get_current_time_nanoseconds(&mut t) }).ok()?;
    Ok(t)
}

/// `proxy_set_tick_period_milliseconds` (0 stops the tick).
pub fn set_tick_period_ms(ms: u32) -> Result<(), Status> {
    // SAFETY: a plain integer argument.
    Status(unsafe { sys::proxy_set_tick_period_milliseconds(ms) }).ok()
}

/// `proxy_get_buffer_bytes`: up to `max` bytes of buffer `kind` from `start`; `None` when the
/// host has no such buffer now.
pub fn buffer(kind: u32, start: usize, max: usize) -> Result<Option<Vec<u8>>, Status> {
    // SAFETY: the out-pointers are live locals of `returned`.
    returned(|data, size| unsafe { sys::proxy_get_buffer_bytes(kind, start, max, data, size) })
}

/// `proxy_get_header_map_value`: the (first) value of `key` in map `map`, `None` when absent.
pub fn header(map: u32, key: &[u8]) -> Result<Option<Vec<u8>>, Status> {
    // SAFETY: `key` and the out-pointers are live for the call.
    returned(|data, size| unsafe {
        sys::proxy_get_header_map_value(map, key.as_ptr(), key.len(), data, size)
    })
}

/// `proxy_add_header_map_value`: appends a value of `key` (Envoy appends, never replaces).
pub fn add_header(map: u32, key: &[u8], value: &[u8]) -> Result<(), Status> {
    // SAFETY: both buffers are live for the call.
    Status(unsafe {
        sys::proxy_add_header_map_value(map, key.as_ptr(), key.len(), value.as_ptr(), value.len())
    })
    .ok()
}

/// `proxy_replace_header_map_value`: sets `key` to `value`, adding it when missing.
pub fn replace_header(map: u32, key: &[u8], value: &[u8]) -> Result<(), Status> {
    // SAFETY: both buffers are live for the call.
    Status(unsafe {
        sys::proxy_replace_header_map_value(
            map,
            key.as_ptr(),
            key.len(),
            value.as_ptr(),
            value.len(),
        )
    })
    .ok()
}

/// `proxy_get_property` with a path already serialized (segments joined by NUL): `read` gets
/// the value in place (`None` when the host has none) and its answer is returned. A value of
/// up to [`SCRATCH_LEN`] bytes costs no allocation.
pub fn read_property<T>(path: &[u8], read: impl FnOnce(Option<&[u8]>) -> T) -> Result<T, Status> {
    returned_in(
        // SAFETY: `path` and the out-pointers are live for the call.
        |data, size| unsafe { sys::proxy_get_property(path.as_ptr(), path.len(), data, size) },
        read,
    )
}

/// `proxy_get_shared_data`: `read` gets the value and cas of `key` in place (`None` when the
/// key is missing: NotFound, or no value) and its answer is returned. The cas is the host's
/// number (0: it gave none). A value of up to [`SCRATCH_LEN`] bytes costs no allocation.
pub fn read_shared_data<T>(
    key: &[u8],
    read: impl FnOnce(Option<(&[u8], u32)>) -> T,
) -> Result<T, Status> {
    let mut cas = 0u32;
    let cas_out: *mut u32 = &mut cas;
    returned_in(
        // SAFETY: `key` and the out-pointers are live for the call.
        |data, size| unsafe {
            sys::proxy_get_shared_data(key.as_ptr(), key.len(), data, size, cas_out)
        },
        // SAFETY: `cas_out` points at the local `cas`, live and no longer written.
        |v| read(v.map(|v| (v, unsafe { cas_out.read() }))),
    )
}

/// `proxy_set_shared_data`: sets `key` to `value` if its cas is still `cas` (0: whatever it
/// is). A cas mismatch is `Err(Status::CAS_MISMATCH)`.
pub fn set_shared_data(key: &[u8], value: &[u8], cas: u32) -> Result<(), Status> {
    // SAFETY: both buffers are live for the call.
    Status(unsafe {
        sys::proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
    })
    .ok()
}

/// `proxy_define_metric`: the id of metric `name` of type `kind`.
pub fn define_metric(kind: u32, name: &[u8]) -> Result<u32, Status> {
    let mut id = 0u32;
    // SAFETY: `name` and the out-pointer are live for the call.
    Status(unsafe { sys::proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) }).ok()?;
    Ok(id)
}

/// `proxy_increment_metric`.
pub fn increment_metric(id: u32, by: i64) -> Result<(), Status> {
    // SAFETY: plain integer arguments.
    Status(unsafe { sys::proxy_increment_metric(id, by) }).ok()
}

/// `proxy_send_local_response` on the current context: `headers` serialized as a map (§1.5),
/// no gRPC status (-1).
pub fn send_local_response(
    status: u32,
    details: &[u8],
    body: &[u8],
    headers: &[u8],
) -> Result<(), Status> {
    // SAFETY: every pointer/length pair describes a live buffer for the call's duration.
    Status(unsafe {
        sys::proxy_send_local_response(
            status,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    })
    .ok()
}

/// `proxy_set_effective_context`: later calls act on stream `context_id`.
pub fn set_effective_context(context_id: u32) -> Result<(), Status> {
    // SAFETY: a plain integer argument.
    Status(unsafe { sys::proxy_set_effective_context(context_id) }).ok()
}

/// `proxy_continue_stream` for `stream` (a `proxy_stream_type_t`) of the current context.
pub fn continue_stream(stream: u32) -> Result<(), Status> {
    // SAFETY: a plain integer argument.
    Status(unsafe { sys::proxy_continue_stream(stream) }).ok()
}

/// `proxy_grpc_call`: a unary call to `service`/`method` on cluster `upstream` with the
/// serialized `initial_metadata` map; the call's token.
pub fn grpc_call(
    upstream: &[u8],
    service: &[u8],
    method: &[u8],
    initial_metadata: &[u8],
    message: &[u8],
    timeout_ms: u32,
) -> Result<u32, Status> {
    let mut token = 0u32;
    // SAFETY: every pointer/length pair describes a live buffer, the out-pointer a local.
    Status(unsafe {
        sys::proxy_grpc_call(
            upstream.as_ptr(),
            upstream.len(),
            service.as_ptr(),
            service.len(),
            method.as_ptr(),
            method.len(),
            initial_metadata.as_ptr(),
            initial_metadata.len(),
            message.as_ptr(),
            message.len(),
            timeout_ms,
            &mut token,
        )
    })
    .ok()?;
    Ok(token)
}

/// The imports, as the host provides them.
#[cfg(target_arch = "wasm32")]
mod sys {
    #[link(wasm_import_module = "env")]
    extern "C" {
        pub fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
        pub fn proxy_get_log_level(return_level: *mut u32) -> u32;
        pub fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
        pub fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
        pub fn proxy_get_buffer_bytes(
            buffer_type: u32,
            start: usize,
            max_size: usize,
            return_data: *mut *mut u8,
            return_size: *mut usize,
        ) -> u32;
        pub fn proxy_get_header_map_value(
            map_type: u32,
            key_data: *const u8,
            key_size: usize,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
        ) -> u32;
        pub fn proxy_add_header_map_value(
            map_type: u32,
            key_data: *const u8,
            key_size: usize,
            value_data: *const u8,
            value_size: usize,
        ) -> u32;
        pub fn proxy_replace_header_map_value(
            map_type: u32,
            key_data: *const u8,
            key_size: usize,
            value_data: *const u8,
            value_size: usize,
        ) -> u32;
        pub fn proxy_get_property(
            path_data: *const u8,
            path_size: usize,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
        ) -> u32;
        pub fn proxy_get_shared_data(
            key_data: *const u8,
            key_size: usize,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
            return_cas: *mut u32,
        ) -> u32;
        pub fn proxy_set_shared_data(
            key_data: *const u8,
            key_size: usize,
            value_data: *const u8,
            value_size: usize,
            cas: u32,
        ) -> u32;
        pub fn proxy_define_metric(
            metric_type: u32,
            name_data: *const u8,
            name_size: usize,
            return_id: *mut u32,
        ) -> u32;
        pub fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
        pub fn proxy_send_local_response(
            status_code: u32,
            details_data: *const u8,
            details_size: usize,
            body_data: *const u8,
            body_size: usize,
            headers_data: *const u8,
            headers_size: usize,
            grpc_status: i32,
        ) -> u32;
        pub fn proxy_set_effective_context(context_id: u32) -> u32;
        pub fn proxy_continue_stream(stream_type: u32) -> u32;
        pub fn proxy_grpc_call(
            upstream_data: *const u8,
            upstream_size: usize,
            service_data: *const u8,
            service_size: usize,
            method_data: *const u8,
            method_size: usize,
            initial_metadata_data: *const u8,
            initial_metadata_size: usize,
            message_data: *const u8,
            message_size: usize,
            timeout_ms: u32,
            return_token: *mut u32,
        ) -> u32;
    }
}

/// Off wasm there is no host: every call answers Unimplemented (12) and writes nothing.
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::missing_safety_doc, clippy::too_many_arguments)]
mod sys {
    const UNIMPLEMENTED: u32 = 12;
    pub unsafe fn proxy_log(_: u32, _: *const u8, _: usize) -> u32 {
        UNIMPLEMENTED
    }
    pub unsafe fn proxy_get_log_level(_: *mut u32) -> u32 {
        UNIMPLEMENTED
    }
    pub unsafe fn proxy_get_current_time_nanoseconds(_: *mut u64) -> u32 {
        UNIMPLEMENTED
    }
    pub unsafe fn proxy_set_tick_period_milliseconds(_: u32) -> u32 {
        UNIMPLEMENTED
    }
    pub unsafe fn proxy_get_buffer_bytes(
        _: u32,
        _: usize,
        _: usize,
        _: *mut *mut u8,
        _: *mut usize,
    ) -> u32 {
        UNIMPLEMENTED
    }
    pub unsafe fn proxy_get_header_map_value(
        _: u32,
        _: *const u8,
        _: usize,
        _: *mut *mut u8,
        _: *mut usize,
    ) -> u32 {
        UNIMPLEMENTED
    }
    pub unsafe fn proxy_add_header_map_value(
        _: u32,
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
    ) -> u32 {
        UNIMPLEMENTED
    }
    pub unsafe fn proxy_replace_header_map_value(
        _: u32,
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
    ) -> u32 {
        UNIMPLEMENTED
    }
    pub unsafe fn proxy_get_property(
        _: *const u8,
        _: usize,
        _: *mut *mut u8,
        _: *mut usize,
    ) -> u32 {
        UNIMPLEMENTED
    }
    pub unsafe fn proxy_get_shared_data(
        _: *const u8,
        _: usize,
        _: *mut *mut u8,
        _: *mut usize,
        _: *mut u32,
    ) -> u32 {
        UNIMPLEMENTED
    }
    pub unsafe fn proxy_set_shared_data(
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
        _: u32,
    ) -> u32 {
        UNIMPLEMENTED
    }
    pub unsafe fn proxy_define_metric(_: u32, _: *const u8, _: usize, _: *mut u32) -> u32 {
        UNIMPLEMENTED
    }
    pub unsafe fn proxy_increment_metric(_: u32, _: i64) -> u32 {
        UNIMPLEMENTED
    }
    pub unsafe fn proxy_send_local_response(
        _: u32,
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
        _: i32,
    ) -> u32 {
        UNIMPLEMENTED
    }
    pub unsafe fn proxy_set_effective_context(_: u32) -> u32 {
        UNIMPLEMENTED
    }
    pub unsafe fn proxy_continue_stream(_: u32) -> u32 {
        UNIMPLEMENTED
    }
    pub unsafe fn proxy_grpc_call(
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
        _: u32,
        _: *mut u32,
    ) -> u32 {
        UNIMPLEMENTED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_allocated_buffer_is_taken_back_whole() {
        for size in [0usize, 1, 7, 100, 4096] {
            let p = allocate(size);
            assert!(!p.is_null());
            // SAFETY: `allocate` gave `size` bytes; they are written, then owned again.
            let v = unsafe {
                p.write_bytes(0x5a, size);
                take(p, size).expect("non-null")
            };
            assert_eq!(v.len(), size);
            assert_eq!(v.capacity(), size);
            assert!(v.iter().all(|&b| b == 0x5a));
        }
        // SAFETY: null is "no value".
        assert!(unsafe { take(ptr::null_mut(), 5) }.is_none());
    }

    /// A host call that returns `value` the way a host does: through `allocate`.
    fn host_returning(value: &[u8]) -> impl FnOnce(*mut *mut u8, *mut usize) -> u32 + '_ {
        move |data, size| {
            let p = allocate(value.len());
            // SAFETY: `allocate` gave `value.len()` writable bytes; the out-pointers are live.
            unsafe {
                ptr::copy_nonoverlapping(value.as_ptr(), p, value.len());
                *data = p;
                *size = value.len();
            }
            0
        }
    }

    fn scratch_ptr() -> *const u8 {
        SCRATCH.with(|s| s.buf.get().cast::<u8>().cast_const())
    }

    #[test]
    fn short_values_are_read_in_the_scratch_buffer_long_ones_from_the_heap() {
        let short = returned_in(host_returning(b"10.0.0.1:5"), |v| {
            (v.map(<[u8]>::to_vec), v.map(<[u8]>::as_ptr))
        });
        assert_eq!(
            short,
            Ok((Some(b"10.0.0.1:5".to_vec()), Some(scratch_ptr())))
        );
        let long = vec![7u8; SCRATCH_LEN + 1];
        let got = returned_in(host_returning(&long), |v| {
            (v.map(<[u8]>::to_vec), v.map(<[u8]>::as_ptr))
        });
        assert_eq!(got.as_ref().map(|g| g.0.as_deref()), Ok(Some(&long[..])));
        assert_ne!(got.map(|g| g.1), Ok(Some(scratch_ptr())));
        // Nested: the outer reader holds the scratch buffer, the inner value goes to the heap.
        let nested = returned_in(host_returning(b"outer"), |outer| {
            let inner = returned_in(host_returning(b"inner"), |v| {
                (v.map(<[u8]>::to_vec), v.map(<[u8]>::as_ptr))
            });
            (outer.map(<[u8]>::to_vec), inner)
        });
        let (outer, inner) = nested.expect("ok");
        assert_eq!(outer.as_deref(), Some(&b"outer"[..]));
        let (inner, at) = inner.expect("ok");
        assert_eq!(inner.as_deref(), Some(&b"inner"[..]));
        assert_ne!(at, Some(scratch_ptr()));
        // Unarmed (a host allocating outside a wrapper's call): never the scratch buffer.
        let p = allocate(3);
        assert_ne!(p.cast_const(), scratch_ptr());
        // SAFETY: a 3-byte block of `allocate`, owned again (and freed).
        drop(unsafe { take(p, 3) });
        // And the scratch buffer is handed out again afterwards.
        let again = returned_in(host_returning(b"x"), |v| v.map(<[u8]>::as_ptr));
        assert_eq!(again, Ok(Some(scratch_ptr())));
    }

    #[test]
    fn a_host_overstating_a_scratch_value_is_an_error_and_absent_values_are_none() {
        let liar = |data: *mut *mut u8, size: *mut usize| {
            let p = allocate(4);
            // SAFETY: live out-pointers.
            unsafe {
                *data = p;
                *size = SCRATCH_LEN + 1;
            }
            0
        };
        assert_eq!(
            returned_in(liar, |v| v.map(<[u8]>::len)),
            Err(Status::INVALID_MEMORY_ACCESS)
        );
        assert_eq!(returned_in(|_, _| 1, |v| v.is_none()), Ok(true));
        assert_eq!(returned_in(|_, _| 0, |v| v.is_none()), Ok(true));
        assert_eq!(returned_in(|_, _| 8, |v| v.is_none()), Err(Status(8)));
        // Nothing stays armed after an error.
        assert_ne!(allocate(0).cast_const(), scratch_ptr());
    }

    #[test]
    fn statuses_are_results_and_never_panics() {
        assert_eq!(Status::OK.ok(), Ok(()));
        assert_eq!(Status(99).ok(), Err(Status(99)));
        assert_eq!(format!("{:?}", Status(8)), "CasMismatch(8)");
        assert_eq!(Status(99).name(), "unknown status");
        // Without a host every call is a defined error.
        assert_eq!(log_level(), Err(Status::UNIMPLEMENTED));
        assert_eq!(
            header(map::REQUEST_HEADERS, b"x"),
            Err(Status::UNIMPLEMENTED)
        );
        assert_eq!(read_shared_data(b"k", |_| ()), Err(Status::UNIMPLEMENTED));
    }
}
