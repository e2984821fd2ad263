//! Re-creation of `examples/http_auth_random/src/lib.rs` from proxy-wasm/proxy-wasm-rust-sdk
//! (Apache-2.0, Google LLC), written from reading it. Each request dispatches
//! `GET /bytes/1` to cluster `httpbin` and pauses; an even first byte resumes the request,
//! anything else (or a failed call) answers 403 "Access forbidden.". Responses get
//! `Powered-By: proxy-wasm`. It uses `set_http_context` (no root context), like the original.

use log::info;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};
use std::time::Duration;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(AuthRandom) });
}}

struct AuthRandom;

impl HttpContext for AuthRandom {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        // The original unwraps: a BadArgument here traps the VM, as it would in Envoy.
        self.dispatch_http_call(
            "httpbin",
            vec![
                (":method", "GET"),
                (":path", "/bytes/1"),
                (":authority", "httpbin.org"),
            ],
            None,
            vec![],
            Duration::from_secs(1),
        )
        .unwrap();
        Action::Pause
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        self.set_http_response_header("Powered-By", Some("proxy-wasm"));
        Action::Continue
    }
}

impl Context for AuthRandom {
    fn on_http_call_response(&mut self, _: u32, _: usize, body_size: usize, _: usize) {
        if let Some(body) = self.get_http_call_response_body(0, body_size) {
            if body.first().is_some_and(|b| b % 2 == 0) {
                info!("Access granted.");
                self.resume_http_request();
                return;
            }
        }
        info!("Access forbidden.");
        self.send_http_response(
            403,
            vec![("Powered-By", "proxy-wasm")],
            Some(b"Access forbidden.\n"),
        );
    }
}
