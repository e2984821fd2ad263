//! What a run found, as data: per phase outcomes, time the plugins added, metrics, log
//! counts and traps. Serializes to the documented `meshward.run/v1` JSON shape
//! (`docs/scenario.md`). Rendering to text lives in `render.rs`. Knows nothing of hosts.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::engine::{Level, LogLine, MetricKind, Trap};

/// The `schema` field of the JSON report.
pub const SCHEMA: &str = "meshward.run/v1";

/// The report of one run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// The scenario's name (or file).
    pub scenario: String,
    /// The seed used.
    pub seed: u64,
    /// Workers used.
    pub workers: usize,
    /// The chain, in request order.
    pub plugins: Vec<PluginInfo>,
    /// Virtual time the run covered (phases plus drain), in milliseconds.
    pub virtual_ms: f64,
    /// Wall-clock time the run took, in milliseconds (not deterministic).
    pub wall_ms: f64,
    /// One entry per phase, in order.
    pub phases: Vec<PhaseReport>,
    /// The whole run.
    pub totals: Totals,
    /// Plugin log lines: the first ones, and how many there were.
    pub logs: Logs,
    /// Every trap, in order.
    pub traps: Vec<Trap>,
}

/// One plugin of the chain.
#[derive(Clone, Debug, Serialize)]
pub struct PluginInfo {
    /// Name.
    pub name: String,
    /// root_id.
    pub root_id: String,
    /// Where the module came from (a path or `builtin:<name>`).
    pub source: String,
}

/// One phase.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseReport {
    /// Name.
    pub name: String,
    /// Start, from the beginning of the run, in milliseconds.
    pub start_ms: f64,
    /// Length in milliseconds.
    pub duration_ms: f64,
    /// Mean configured rate, requests per second.
    pub rate_per_s: f64,
    /// What happened to the requests that arrived in this phase.
    #[serde(flatten)]
    pub totals: Totals,
    /// Outcomes per request template (e.g. per tier of client).
    pub by_template: BTreeMap<String, TemplateCounts>,
    /// Metrics at the end of the phase and their change over it.
    pub metrics: BTreeMap<String, MetricReport>,
}

/// Outcomes of one template's requests in a phase.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct TemplateCounts {
    /// Requests that arrived.
    pub requests: u64,
    /// Forwarded upstream.
    pub forwarded: u64,
    /// Answered locally.
    pub local_replies: u64,
    /// Reset or unfinished.
    pub other: u64,
}

/// Counts that add up over phases.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Totals {
    /// Requests that arrived.
    pub requests: u64,
    /// Outcomes of those requests.
    pub outcomes: Outcomes,
    /// Time the plugins added.
    pub added: Added,
    /// Plugin log lines by level.
    pub logs_by_level: BTreeMap<Level, u64>,
    /// Traps.
    pub traps: u64,
}

/// Outcomes of requests. Every request ends in exactly one of `forwarded`,
/// `local_replies`, `resets`, `unfinished`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Outcomes {
    /// Reached the upstream (including connect failures and resets there).
    pub forwarded: u64,
    /// Forwarded requests by the `:status` the client finally saw.
    pub forwarded_by_status: BTreeMap<u16, u64>,
    /// Of the forwarded, those the upstream failed (connect error or reset; 503 from the proxy).
    pub upstream_failures: u64,
    /// Answered by a plugin (or by the host for a dead VM) with a local reply.
    pub local_replies: u64,
    /// Local replies by status.
    pub local_reply_by_status: BTreeMap<u16, u64>,
    /// Of the local replies, those the host sent because a plugin had trapped (fail closed).
    pub failed_by_trap: u64,
    /// Reset by a plugin.
    pub resets: u64,
    /// Still waiting (paused, or on the upstream) when the run ended.
    pub unfinished: u64,
    /// Paused by a plugin at least once.
    pub paused: u64,
    /// Of the paused, those a plugin later let through.
    pub resumed: u64,
}

/// Time added by the plugins.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Added {
    /// Wall-clock time spent in the chain's callbacks per request, in microseconds
    /// (measured; varies between runs and machines).
    pub cpu_us: Percentiles,
    /// Virtual time requests spent paused, in milliseconds (paused requests only).
    pub pause_ms: Percentiles,
}

/// A distribution summary.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Percentiles {
    /// Number of samples.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples` (sorted here).
    pub fn of(samples: &mut [f64]) -> Self {
        if samples.is_empty() {
            return Percentiles::default();
        }
        samples.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let n = samples.len();
            let i = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
            samples.get(i).copied().unwrap_or(0.0)
        };
        Percentiles {
            count: samples.len() as u64,
            p50: round3(rank(0.50)),
            p95: round3(rank(0.95)),
            p99: round3(rank(0.99)),
            max: round3(samples.last().copied().unwrap_or(0.0)),
        }
    }
}

/// Rounds to 3 decimals (keeps JSON readable and stable).
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A metric over a phase.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct MetricReport {
    /// Kind.
    pub kind: MetricKind,
    /// Value at the end of the phase.
    pub value: f64,
    /// Change over the phase.
    pub delta: f64,
}

/// Captured plugin log lines.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Logs {
    /// The first `cap` lines of the run.
    pub lines: Vec<LogLine>,
    /// How many lines the plugins wrote in all.
    pub total: u64,
    /// How many were left out of `lines`.
    pub omitted: u64,
}

impl Totals {
    /// Adds another set of counts to this one (percentiles are not added: the driver
    /// computes the run's from all samples).
    pub fn add_counts(&mut self, o: &Totals) {
        self.requests += o.requests;
        let (a, b) = (&mut self.outcomes, &o.outcomes);
        a.forwarded += b.forwarded;
        for (k, v) in &b.forwarded_by_status {
            *a.forwarded_by_status.entry(*k).or_default() += v;
        }
        a.upstream_failures += b.upstream_failures;
        a.local_replies += b.local_replies;
        for (k, v) in &b.local_reply_by_status {
            *a.local_reply_by_status.entry(*k).or_default() += v;
        }
        a.failed_by_trap += b.failed_by_trap;
        a.resets += b.resets;
        a.unfinished += b.unfinished;
        a.paused += b.paused;
        a.resumed += b.resumed;
        for (k, v) in &o.logs_by_level {
            *self.logs_by_level.entry(*k).or_default() += v;
        }
        self.traps += o.traps;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut xs: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&mut xs);
        assert_eq!(
            (p.count, p.p50, p.p95, p.p99, p.max),
            (100, 50.0, 95.0, 99.0, 100.0)
        );
        assert_eq!(Percentiles::of(&mut []), Percentiles::default());
        let p1 = Percentiles::of(&mut [7.0]);
        assert_eq!((p1.p50, p1.p99), (7.0, 7.0));
    }
}
