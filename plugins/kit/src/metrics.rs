//! Counters defined on first use and cached by name (Envoy prefixes them `wasmcustom.`;
//! Prometheus sees them as-is). A host that refuses a metric costs the metric, never the
//! request.

use std::cell::Cell;

use crate::abi;

/// Counters whose names are only known per request, by name (each a [`Counter`]). A rare
/// path (a filter names its counters at configure time): found by a linear scan, which keeps
/// a hash map and its string hashing out of the module.
#[derive(Debug, Default)]
pub struct Counters {
    all: Vec<Counter>,
}

impl Counters {
    /// Adds `n` to the counter `name`, defining it the first time.
    pub fn add(&mut self, name: &str, n: u64) {
        match self.all.iter().find(|c| c.name == name) {
            Some(c) => c.add(n),
            None => {
                let c = Counter::new(name.to_string());
                c.add(n);
                self.all.push(c);
            }
        }
    }
}

/// One counter whose name is known at configure time, defined with the host on first use
/// and then incremented by id: nothing is formatted or looked up per request.
#[derive(Debug)]
pub struct Counter {
    name: String,
    id: Cell<Option<Option<u32>>>,
}

impl Counter {
    /// A counter named `name` (not yet defined with the host).
    pub fn new(name: String) -> Self {
        Self {
            name,
            id: Cell::new(None),
        }
    }

    /// Adds `n`, defining the counter the first time.
    pub fn add(&self, n: u64) {
        let id = match self.id.get() {
            Some(id) => id,
            None => {
                let id = abi::define_metric(abi::METRIC_COUNTER, self.name.as_bytes()).ok();
                self.id.set(Some(id));
                id
            }
        };
        if let Some(id) = id {
            increment(id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

/// `proxy_increment_metric`, its status ignored: a refused increment costs the count only.
fn increment(id: u32, n: i64) {
    let _ = abi::increment_metric(id, n);
}
