//! Counters defined on first use and cached by name (Envoy prefixes them `wasmcustom.`;
//! Prometheus sees them as-is). A host that refuses a metric costs the metric, never the
//! request.

use std::collections::HashMap;

use proxy_wasm::types::MetricType;

/// Counter ids by name.
#[derive(Debug, Default)]
pub struct Counters {
    ids: HashMap<String, Option<u32>>,
}

impl Counters {
    /// Adds `n` to the counter `name`, defining it the first time.
    pub fn add(&mut self, name: &str, n: u64) {
        let id = match self.ids.get(name) {
            Some(id) => *id,
            None => {
                let id = proxy_wasm::hostcalls::define_metric(MetricType::Counter, name).ok();
                self.ids.insert(name.to_string(), id);
                id
            }
        };
        if let Some(id) = id {
            let _ =
                proxy_wasm::hostcalls::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}
