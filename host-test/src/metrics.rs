//! The host-wide metrics registry (counters, gauges, histograms shared by name across plugins and
//! VMs, as Envoy's `wasmcustom` scope) with the ABI rules of `proxy_*_metric` and Envoy's
//! Prometheus text rendering (custom namespace: names as-is, no `envoy_` prefix, sanitized).
//! Must not know about guests.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// proxy_metric_type_t.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// 0
    Counter,
    /// 1
    Gauge,
    /// 2
    Histogram,
}

impl MetricKind {
    fn from_abi(n: i32) -> Option<MetricKind> {
        match n {
            0 => Some(MetricKind::Counter),
            1 => Some(MetricKind::Gauge),
            2 => Some(MetricKind::Histogram),
            _ => None,
        }
    }
}

/// A metric's current value as the embedder reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricValue {
    /// Counter total.
    Counter(u64),
    /// Gauge value (may go below zero through negative increments).
    Gauge(i64),
    /// Histogram: sample count, sum, and cumulative counts per upper bound of [`BUCKETS`].
    Histogram {
        /// Samples recorded.
        count: u64,
        /// Sum of samples.
        sum: u64,
        /// Cumulative count for each bound of [`BUCKETS`].
        buckets: Vec<u64>,
    },
}

/// Envoy's default histogram bucket bounds (`HistogramSettingsImpl::defaultBuckets`).
pub const BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

#[derive(Debug)]
struct Metric {
    name: String,
    kind: MetricKind,
    value: AtomicI64,
    hist: Option<Mutex<Hist>>,
}

#[derive(Debug, Default)]
struct Hist {
    count: u64,
    sum: u64,
    per_bucket: [u64; 19],
}

/// Why a metric call failed (mapped to proxy statuses by the ABI layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetricError {
    NotFound,
    BadArgument,
}

/// Registry shared by every VM of a host. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    inner: Arc<RwLock<Registry>>,
}

/// One VM's handles to the metrics it incremented, by index (the registry only ever appends,
/// so a handle found once stays the metric of its id): an increment then takes no lock and
/// clones no `Arc`, one atomic add as in Envoy, where the registry's read lock and a handle's
/// reference count were five more. Holds at most one entry per metric of the registry.
#[derive(Debug, Default)]
pub(crate) struct MetricCache(Vec<Option<Arc<Metric>>>);

#[derive(Debug, Default)]
struct Registry {
    by_name: HashMap<String, u32>,
    list: Vec<Arc<Metric>>,
}

// Ids encode the kind in the low 2 bits, as cpp-host (`kMetricTypeMask`).
fn make_id(index: usize, kind: MetricKind) -> u32 {
    ((index as u32) << 2) | kind as u32
}

impl Metrics {
    pub(crate) fn new() -> Self {
        Self::default()
    }
    fn by_id(&self, id: u32) -> Option<Arc<Metric>> {
        let g = self.inner.read().ok()?;
        let m = g.list.get((id >> 2) as usize)?;
        (make_id((id >> 2) as usize, m.kind) == id).then(|| m.clone())
    }
    /// `proxy_define_metric`: same name and kind gives the same id.
    pub(crate) fn define(&self, kind: i32, name: &str) -> Result<u32, MetricError> {
        let kind = MetricKind::from_abi(kind).ok_or(MetricError::BadArgument)?;
        let key = format!("{}\u{0}{}", kind as u8, name);
        if let Ok(g) = self.inner.read() {
            if let Some(&id) = g.by_name.get(&key) {
                return Ok(id);
            }
        }
        let mut g = self.inner.write().map_err(|_| MetricError::BadArgument)?;
        if let Some(&id) = g.by_name.get(&key) {
            return Ok(id);
        }
        let id = make_id(g.list.len(), kind);
        g.list.push(Arc::new(Metric {
            name: name.to_string(),
            kind,
            value: AtomicI64::new(0),
            hist: (kind == MetricKind::Histogram).then(|| Mutex::new(Hist::default())),
        }));
        g.by_name.insert(key, id);
        Ok(id)
    }
    /// `proxy_increment_metric`: counters refuse negative deltas, histograms refuse increments.
    /// The metric's handle comes from `cache`, or from the registry into `cache`.
    pub(crate) fn increment(
        &self,
        cache: &mut MetricCache,
        id: u32,
        delta: i64,
    ) -> Result<(), MetricError> {
        let i = (id >> 2) as usize;
        let m = match cache.0.get(i) {
            Some(Some(m)) if make_id(i, m.kind) == id => m,
            _ => {
                let m = self.by_id(id).ok_or(MetricError::NotFound)?;
                // `i` is an index of the registry (`by_id` found it): the cache stays no
                // longer than the registry.
                if cache.0.len() <= i {
                    cache.0.resize(i + 1, None);
                }
                match cache.0.get_mut(i) {
                    Some(slot) => &*slot.insert(m),
                    None => return Err(MetricError::NotFound),
                }
            }
        };
        match m.kind {
            MetricKind::Counter if delta < 0 => Err(MetricError::BadArgument),
            MetricKind::Counter | MetricKind::Gauge => {
                m.value.fetch_add(delta, Ordering::Relaxed);
                Ok(())
            }
            MetricKind::Histogram => Err(MetricError::BadArgument),
        }
    }
    /// `proxy_record_metric`: counter adds, gauge sets, histogram records (Envoy recordMetric).
    pub(crate) fn record(&self, id: u32, value: u64) -> Result<(), MetricError> {
        let m = self.by_id(id).ok_or(MetricError::NotFound)?;
        match m.kind {
            MetricKind::Counter => {
                m.value.fetch_add(value as i64, Ordering::Relaxed);
            }
            MetricKind::Gauge => m.value.store(value as i64, Ordering::Relaxed),
            MetricKind::Histogram => {
                if let Some(h) = &m.hist {
                    let mut h = h.lock().map_err(|_| MetricError::BadArgument)?;
                    h.count += 1;
                    h.sum = h.sum.saturating_add(value);
                    if let Some(i) = BUCKETS.iter().position(|b| (value as f64) <= *b) {
                        h.per_bucket[i] += 1;
                    }
                }
            }
        }
        Ok(())
    }
    /// `proxy_get_metric`: histograms give BAD_ARGUMENT.
    pub(crate) fn get_by_id(&self, id: u32) -> Result<u64, MetricError> {
        let m = self.by_id(id).ok_or(MetricError::NotFound)?;
        match m.kind {
            MetricKind::Histogram => Err(MetricError::BadArgument),
            _ => Ok(m.value.load(Ordering::Relaxed) as u64),
        }
    }
    fn value_of(m: &Metric) -> MetricValue {
        match m.kind {
            MetricKind::Counter => MetricValue::Counter(m.value.load(Ordering::Relaxed) as u64),
            MetricKind::Gauge => MetricValue::Gauge(m.value.load(Ordering::Relaxed)),
            MetricKind::Histogram => {
                let h = m.hist.as_ref().and_then(|h| h.lock().ok());
                let (count, sum, per) = h
                    .map(|h| (h.count, h.sum, h.per_bucket))
                    .unwrap_or((0, 0, [0; 19]));
                let mut acc = 0;
                let buckets = per
                    .iter()
                    .map(|c| {
                        acc += c;
                        acc
                    })
                    .collect();
                MetricValue::Histogram {
                    count,
                    sum,
                    buckets,
                }
            }
        }
    }
    /// Value of the metric called `name` (first defined kind wins if a name has several kinds).
    pub fn get(&self, name: &str) -> Option<MetricValue> {
        let g = self.inner.read().ok()?;
        g.list
            .iter()
            .find(|m| m.name == name)
            .map(|m| Self::value_of(m))
    }
    /// All metrics as (name, value), in definition order.
    pub fn all(&self) -> Vec<(String, MetricValue)> {
        let Ok(g) = self.inner.read() else {
            return Vec::new();
        };
        g.list
            .iter()
            .map(|m| (m.name.clone(), Self::value_of(m)))
            .collect()
    }
    /// Envoy's Prometheus text for the custom namespace: `# TYPE` lines, counters and gauges as
    /// one sample, histograms as `_bucket{le=..}`, `_sum`, `_count`. Names sanitized to
    /// `[a-zA-Z0-9_:]` (other bytes become `_`, a leading digit gets a `_` prefix).
    pub fn prometheus_text(&self) -> String {
        let mut out = String::new();
        let mut seen = std::collections::HashSet::new();
        for (name, v) in self.all() {
            let n = sanitize(&name);
            if !seen.insert(n.clone()) {
                continue;
            }
            match v {
                MetricValue::Counter(c) => {
                    let _ = writeln!(out, "# TYPE {n} counter\n{n}{{}} {c}");
                }
                MetricValue::Gauge(g) => {
                    let _ = writeln!(out, "# TYPE {n} gauge\n{n}{{}} {g}");
                }
                MetricValue::Histogram {
                    count,
                    sum,
                    buckets,
                } => {
                    let _ = writeln!(out, "# TYPE {n} histogram");
                    for (b, c) in BUCKETS.iter().zip(buckets.iter()) {
                        let _ = writeln!(out, "{n}_bucket{{le=\"{b}\"}} {c}");
                    }
                    let _ = writeln!(out, "{n}_bucket{{le=\"+Inf\"}} {count}");
                    let _ = writeln!(out, "{n}_sum{{}} {sum}");
                    let _ = writeln!(out, "{n}_count{{}} {count}");
                }
            }
        }
        out
    }
}

/// Envoy `PrometheusStatsFormatter::sanitizeName`-like: keep `[a-zA-Z0-9_:]`, map the rest to
/// `_`, and prefix a leading digit with `_`.
pub fn sanitize(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_rules() {
        let m = Metrics::new();
        let mut k = MetricCache::default();
        let c = m.define(0, "reqs").unwrap();
        assert_eq!(m.define(0, "reqs"), Ok(c), "same name, same id");
        assert_eq!(m.define(7, "x"), Err(MetricError::BadArgument));
        m.increment(&mut k, c, 3).unwrap();
        assert_eq!(m.increment(&mut k, c, -1), Err(MetricError::BadArgument));
        m.record(c, 2).unwrap();
        assert_eq!(m.get_by_id(c), Ok(5));
        let g = m.define(1, "inflight").unwrap();
        m.increment(&mut k, g, 2).unwrap();
        m.increment(&mut k, g, -5).unwrap();
        assert_eq!(m.get("inflight"), Some(MetricValue::Gauge(-3)));
        m.record(g, 7).unwrap();
        assert_eq!(m.get_by_id(g), Ok(7));
        let h = m.define(2, "lat").unwrap();
        m.record(h, 3).unwrap();
        m.record(h, 100_000_000).unwrap();
        assert_eq!(m.get_by_id(h), Err(MetricError::BadArgument));
        assert_eq!(m.increment(&mut k, h, 1), Err(MetricError::BadArgument));
        assert_eq!(m.get_by_id(12345), Err(MetricError::NotFound));
        assert_eq!(
            m.get_by_id(c ^ 1),
            Err(MetricError::NotFound),
            "kind bits checked"
        );
        // The cache holds `c`'s handle now: an id with the same index but other kind bits is
        // still no metric, and another VM's cache adds to the same value.
        assert_eq!(m.increment(&mut k, c ^ 1, 1), Err(MetricError::NotFound));
        assert_eq!(m.increment(&mut k, 12345, 1), Err(MetricError::NotFound));
        let mut other = MetricCache::default();
        m.increment(&mut other, c, 10).unwrap();
        m.increment(&mut k, c, 1).unwrap();
        assert_eq!(m.get_by_id(c), Ok(16));
    }

    #[test]
    fn prometheus_text_is_envoy_custom_namespace_form() {
        let m = Metrics::new();
        let c = m.define(0, "meshward.rl.allowed").unwrap();
        m.increment(&mut MetricCache::default(), c, 4).unwrap();
        let h = m.define(2, "lat").unwrap();
        m.record(h, 3).unwrap();
        let text = m.prometheus_text();
        assert!(text.contains("# TYPE meshward_rl_allowed counter\nmeshward_rl_allowed{} 4\n"));
        assert!(!text.contains("envoy_"));
        assert!(text.contains("lat_bucket{le=\"1\"} 0\n"));
        assert!(text.contains("lat_bucket{le=\"5\"} 1\n"));
        assert!(text.contains("lat_bucket{le=\"+Inf\"} 1\n"));
        assert!(text.contains("lat_sum{} 3\nlat_count{} 1\n"));
        assert_eq!(sanitize("9a-b"), "_9a_b");
    }
}
