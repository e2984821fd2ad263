//! Conformance guest that misbehaves on command, to test the host's fencing and fail
//! strategies. The plugin configuration picks when: `configure:panic`, `configure:false`,
//! `vm_start:panic`; otherwise the request header `x-trap` picks how, in on_request_headers:
//! `panic` (a Rust panic = `unreachable`), `unreachable`, `loop` (never returns), `oom`
//! (allocates until memory.grow fails), `stack` (unbounded recursion). Without `x-trap` the
//! request passes and the response gets `x-trap-vm: <requests served by this VM>`, so a test
//! can see a fresh VM after a reload.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::cell::Cell;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(TrapRoot { config: String::new() }) });
}}

thread_local! {
    static SERVED: Cell<u64> = const { Cell::new(0) };
}

struct TrapRoot {
    config: String,
}
impl Context for TrapRoot {}
impl RootContext for TrapRoot {
    fn on_vm_start(&mut self, _: usize) -> bool {
        let vm_config = self.get_vm_configuration().unwrap_or_default();
        if vm_config == b"vm_start:panic" {
            panic!("trap guest: panic in on_vm_start as configured");
        }
        true
    }

    fn on_configure(&mut self, _: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        self.config = String::from_utf8_lossy(&config).into_owned();
        match self.config.as_str() {
            "configure:panic" => panic!("trap guest: panic in on_configure as configured"),
            "configure:false" => {
                let _ = proxy_wasm::hostcalls::log(
                    LogLevel::Error,
                    "trap guest: rejecting configuration `configure:false`",
                );
                false
            }
            _ => true,
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(TrapHttp))
    }
}

struct TrapHttp;
impl Context for TrapHttp {}
impl HttpContext for TrapHttp {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let mode = self.get_http_request_header("x-trap").unwrap_or_default();
        match mode.as_str() {
            "" => {}
            "panic" => panic!("trap guest: panic on request"),
            "unreachable" => {
                #[cfg(target_arch = "wasm32")]
                core::arch::wasm32::unreachable();
                #[cfg(not(target_arch = "wasm32"))]
                std::process::abort();
            }
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "oom" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "stack" => {
                std::hint::black_box(recurse(std::hint::black_box(1)));
            }
            other => {
                let _ = proxy_wasm::hostcalls::log(
                    LogLevel::Warn,
                    &format!("trap guest: unknown x-trap `{other}`, passing"),
                );
            }
        }
        SERVED.with(|s| s.set(s.get() + 1));
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        let served = SERVED.with(Cell::get);
        self.add_http_response_header("x-trap-vm", &served.to_string());
        Action::Continue
    }
}

#[allow(unconditional_recursion)]
fn recurse(n: u64) -> u64 {
    let mut frame = [n; 64];
    frame[n as usize % 64] = std::hint::black_box(n);
    recurse(frame[0].wrapping_add(1)).wrapping_add(frame[1])
}
