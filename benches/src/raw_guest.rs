//! A raw-ABI no-op proxy-wasm guest (WAT, no SDK): every callback returns at once (headers:
//! Continue, vm_start/configure: true, done: true) and the allocator is a bump pointer. With it
//! the lifecycle and VM-start benchmarks measure the host's own cost per callback, without the
//! SDK's per-context work (context map insert/remove, boxed contexts) that the SDK no-op guest
//! carries on both the host and the floor side. Knows nothing of the host.

/// The module text; compile it with `wat::parse_str`.
pub const RAW_NOOP_WAT: &str = r#"
(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (func (export "proxy_abi_version_0_2_1"))
  ;; Bump allocator over the one page; wraps to 1024 rather than run past it.
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (if (i32.gt_u (i32.add (global.get $heap) (local.get $n)) (i32.const 65536))
      (then (global.set $heap (i32.const 1024))))
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32)))
"#;
