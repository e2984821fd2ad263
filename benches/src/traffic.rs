//! The request and response every benchmark sends through a plugin: a typical API GET with a
//! request id, and a small JSON answer. One definition, so the lifecycle, the rate-limit
//! decision and the profiling driver measure the same traffic. Knows nothing of the host.

/// Request headers (pseudo-headers first, as Envoy hands them to a filter).
pub const REQUEST: &[(&str, &str)] = &[
    (":method", "GET"),
    (":path", "/api/items?page=2"),
    (":authority", "svc.local"),
    (":scheme", "http"),
    ("user-agent", "bench/1.0"),
    ("accept", "*/*"),
    ("x-request-id", "5f1c0c8e-1c1b-4a7e-9b1e-3f0a9c9d2b11"),
];

/// Response headers.
pub const RESPONSE: &[(&str, &str)] = &[(":status", "200"), ("content-type", "application/json")];
