//! A snapshot of the request that route matching and keys need: method, path, authority,
//! the headers, and the peer address. Taken once per request in `on_http_request_headers`,
//! reading only the headers the policy names (one `proxy_get_header_map_value` each, first
//! value, as Envoy returns it) instead of copying every header pair.

use std::net::IpAddr;

use meshward_core::policy::RequestAttrs;
use meshward_core::ratelimit::parse_addr;

/// Request attributes (owned copies; header names lower-case as Envoy gives them).
#[derive(Debug, Clone, Default)]
pub struct RequestView {
    /// `:method`.
    pub method: String,
    /// `:path`.
    pub path: String,
    /// `:authority`.
    pub authority: String,
    /// Headers (all of them from [`Self::from_headers`], only the named ones from
    /// [`Self::fetch`]).
    pub headers: Vec<(String, String)>,
}

impl RequestView {
    /// From the header pairs the host handed over.
    pub fn from_headers(headers: Vec<(String, String)>) -> Self {
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        Self {
            method: get(":method"),
            path: get(":path"),
            authority: get(":authority"),
            headers,
        }
    }

    /// The current request's pseudo-headers and the headers in `names` (lower-case; a name
    /// the request lacks is left out). Only these are visible to [`RequestAttrs::header`].
    pub fn fetch(names: &[String]) -> Self {
        let get = |n: &str| {
            proxy_wasm::hostcalls::get_map_value(proxy_wasm::types::MapType::HttpRequestHeaders, n)
                .ok()
                .flatten()
        };
        let mut headers = Vec::with_capacity(names.len());
        for n in names {
            if let Some(v) = get(n) {
                headers.push((n.clone(), v));
            }
        }
        Self {
            method: get(":method").unwrap_or_default(),
            path: get(":path").unwrap_or_default(),
            authority: get(":authority").unwrap_or_default(),
            headers,
        }
    }

    /// `x-request-id`, or `-`.
    pub fn request_id(&self) -> &str {
        self.header("x-request-id").unwrap_or("-")
    }
}

impl RequestAttrs for RequestView {
    fn method(&self) -> &str {
        &self.method
    }
    fn path(&self) -> &str {
        &self.path
    }
    fn host(&self) -> &str {
        &self.authority
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The downstream peer address (`source.address`), if the host knows it.
pub fn peer_address() -> Option<IpAddr> {
    let raw = proxy_wasm::hostcalls::get_property(vec!["source", "address"]).ok()??;
    parse_addr(std::str::from_utf8(&raw).ok()?)
}
