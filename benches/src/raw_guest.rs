//! A raw-ABI no-op proxy-wasm guest (WAT, no SDK): every callback returns at once (headers:
//! Continue, vm_start/configure: true, done: true) and the allocator is a bump pointer. With it
//! the lifecycle and VM-start benchmarks measure the host's own cost per callback, without the
//! SDK's per-context work (context map insert/remove, boxed contexts) that the SDK no-op guest
//! carries on both the host and the floor side. Knows nothing of the host.

/// The bump allocator both raw guests export (`$heap` starts at 1024 and wraps there rather
/// than run past the one page).
macro_rules! bump_malloc {
    () => {
        r#"
  (global $heap (mut i32) (i32.const 1024))
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (if (i32.gt_u (i32.add (global.get $heap) (local.get $n)) (i32.const 65536))
      (then (global.set $heap (i32.const 1024))))
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
"#
    };
}

/// The module text; compile it with `wat::parse_str`.
pub const RAW_NOOP_WAT: &str = concat!(
    r#"
(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
"#,
    bump_malloc!(),
    r#"
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32)))
"#
);

/// Key the raw shared-data guest reads and writes.
pub const RAW_SHARED_KEY: &[u8] = b"bench/raw";

/// Get + CAS set pairs the raw shared-data guest runs per request.
pub const RAW_SHARED_ROUNDS: u32 = 1000;

/// A raw-ABI guest whose request-headers callback runs [`RAW_SHARED_ROUNDS`] pairs of
/// `proxy_get_shared_data` + `proxy_set_shared_data` (the value it read, back, with the cas it
/// read) on [`RAW_SHARED_KEY`], counting failed calls in the exported global `fails`. The value
/// buffer the host asks for on every get comes from a bump allocator reset per request, so the
/// figure is the ABI and the host's shared data, without a guest allocator's own work. The key
/// must exist before the first request (a get on a missing key fails).
pub const RAW_SHARED_WAT: &str = concat!(
    r#"
(module
  (import "env" "proxy_get_shared_data" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data" (func $set (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; The key at 16 (9 bytes); get's answers at 64 (value pointer), 68 (size), 72 (cas).
  (data (i32.const 16) "bench/raw")
  (global $fails (export "fails") (mut i32) (i32.const 0))
  (func (export "proxy_abi_version_0_2_1"))
"#,
    bump_malloc!(),
    r#"
  (func $fail (global.set $fails (i32.add (global.get $fails) (i32.const 1))))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $i i32)
    (global.set $heap (i32.const 1024))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (i32.const 1000)))
        (if (call $get (i32.const 16) (i32.const 9) (i32.const 64) (i32.const 68) (i32.const 72))
          (then (call $fail))
          (else
            (if (call $set (i32.const 16) (i32.const 9)
                  (i32.load (i32.const 64)) (i32.load (i32.const 68)) (i32.load (i32.const 72)))
              (then (call $fail)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32)))
"#
);
