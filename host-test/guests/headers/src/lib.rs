//! Benchmark guest: the "header-reading/logging plugin". On each request it reads every
//! request header (one `proxy_get_header_map_pairs`), logs them as one line, and on the
//! response adds `x-request-headers: <count>`. Written with the Rust SDK like a typical plugin.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(HeadersRoot) });
}}

struct HeadersRoot;
impl Context for HeadersRoot {}
impl RootContext for HeadersRoot {
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(HeadersHttp { seen: 0 }))
    }
}

struct HeadersHttp {
    seen: usize,
}
impl Context for HeadersHttp {}
impl HttpContext for HeadersHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _eos: bool) -> Action {
        let headers = self.get_http_request_headers();
        self.seen = headers.len();
        let mut line = String::with_capacity(16 * headers.len());
        for (name, value) in &headers {
            line.push_str(name);
            line.push_str(": ");
            line.push_str(value);
            line.push_str("; ");
        }
        let _ = proxy_wasm::hostcalls::log(LogLevel::Info, &line);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _eos: bool) -> Action {
        self.add_http_response_header("x-request-headers", &self.seen.to_string());
        Action::Continue
    }
}
