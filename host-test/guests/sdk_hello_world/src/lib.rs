//! Re-creation of `examples/hello_world/src/lib.rs` from proxy-wasm/proxy-wasm-rust-sdk
//! (Apache-2.0, Google LLC), written from reading it. A background plugin: logs
//! "Hello, World!" in on_vm_start, ticks every 5 s, and on each tick logs the time and a
//! random number. The original formats time with chrono and draws with getrandom; both end in
//! the WASI calls used here directly (`clock_time_get` via std, `random_get`), which keeps
//! the dependency list small while exercising the same host functions.

use log::info;
use proxy_wasm::traits::{Context, RootContext};
use proxy_wasm::types::LogLevel;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(HelloWorld) });
}}

#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    fn random_get(buf: *mut u8, len: usize) -> u16;
}

struct HelloWorld;

impl Context for HelloWorld {}

impl RootContext for HelloWorld {
    fn on_vm_start(&mut self, _: usize) -> bool {
        info!("Hello, World!");
        self.set_tick_period(Duration::from_secs(5));
        true
    }

    fn on_tick(&mut self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut buf = [0u8; 1];
        // SAFETY: a one-byte buffer owned by this frame.
        let errno = unsafe { random_get(buf.as_mut_ptr(), buf.len()) };
        if errno != 0 {
            info!("It's {now}, there is no lucky number.");
            return;
        }
        info!("It's {now}, your lucky number is {}.", buf[0]);
    }
}
