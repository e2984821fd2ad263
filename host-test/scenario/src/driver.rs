//! The scenario driver: feeds a scenario's traffic through an [`Engine`] on virtual time,
//! plays the upstream, follows paused requests until a plugin resumes them, and fills a
//! [`Report`]. Single-threaded and deterministic for a seed (all workers share one virtual
//! clock, as `Host::advance` does). Knows nothing of wasm or of any plugin's policy.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use crate::engine::{Engine, LogLine, MetricSample, Response, Step, StreamKey};
use crate::error::RunError;
use crate::model::{Assign, Scenario};
use crate::report::{
    Logs, MetricReport, Percentiles, PhaseReport, PluginInfo, Report, Totals, SCHEMA,
};
use crate::traffic::{Traffic, UpstreamAnswer, UpstreamModel};

/// Where a run stands, for progress display.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Virtual time reached.
    pub now: Duration,
    /// Virtual time at the end of the last phase.
    pub end: Duration,
    /// Requests started so far.
    pub started: u64,
}

/// Knobs of a run that are not in the scenario.
pub struct RunOptions<'a> {
    /// Workers (overrides the scenario's `workers`); must match the engine's.
    pub workers: usize,
    /// How many log lines the report keeps (the rest are counted).
    pub log_cap: usize,
    /// Called as virtual time moves.
    pub progress: Option<&'a mut dyn FnMut(Progress)>,
}

impl std::fmt::Debug for RunOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("workers", &self.workers)
            .field("log_cap", &self.log_cap)
            .finish()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Request,
    Upstream,
    Response,
}

#[derive(Debug)]
struct Flight {
    phase: usize,
    template: String,
    stage: Stage,
    paused_since: Option<Duration>,
    paused_total: Duration,
    was_paused: bool,
    resumed: bool,
    upstream_failure: bool,
    answer_status: u16,
    cpu: Duration,
    pending: Option<Response>,
}

enum End {
    Forwarded(u16),
    Local(u16, String),
    Reset,
    Unfinished,
}

struct PhaseAcc {
    totals: Totals,
    by_template: BTreeMap<String, crate::report::TemplateCounts>,
    cpu_us: Vec<f64>,
    pause_ms: Vec<f64>,
    metrics: BTreeMap<String, MetricReport>,
}

struct Driver<'e, E: Engine> {
    engine: &'e mut E,
    upstream: UpstreamModel,
    flights: HashMap<StreamKey, Flight>,
    paused: BTreeSet<StreamKey>,
    due: BinaryHeap<Reverse<(Duration, u64, StreamKey)>>,
    due_seq: u64,
    phases: Vec<PhaseAcc>,
    bounds: Vec<(Duration, Duration)>,
    logs: Logs,
    log_cap: usize,
    traps: Vec<crate::engine::Trap>,
    now: Duration,
    current_phase: usize,
}

/// Runs `scenario` through `engine` and reports what happened.
pub fn run<E: Engine>(
    scenario: &Scenario,
    engine: &mut E,
    plugins: Vec<PluginInfo>,
    mut opts: RunOptions<'_>,
) -> Result<Report, RunError> {
    let wall = Instant::now();
    let workers = engine.workers().max(1);
    let bounds = Traffic::phase_bounds(scenario);
    let end = bounds.last().map(|b| b.1).unwrap_or_default();
    let deadline = end + scenario.drain.get();
    let mut traffic = Traffic::new(scenario).map_err(RunError::Host)?.peekable();
    let mut d = Driver {
        engine,
        upstream: UpstreamModel::new(scenario),
        flights: HashMap::new(),
        paused: BTreeSet::new(),
        due: BinaryHeap::new(),
        due_seq: 0,
        phases: scenario
            .phases
            .iter()
            .map(|_| PhaseAcc {
                totals: Totals::default(),
                by_template: BTreeMap::new(),
                cpu_us: vec![],
                pause_ms: vec![],
                metrics: BTreeMap::new(),
            })
            .collect(),
        bounds: bounds.clone(),
        logs: Logs::default(),
        log_cap: opts.log_cap,
        traps: Vec::new(),
        now: Duration::ZERO,
        current_phase: 0,
    };
    let mut last_metrics = d.engine.metrics();
    let mut started = 0u64;
    let mut rr = 0usize;
    loop {
        let mut next = [traffic.peek().map(|r| r.at), d.due.peek().map(|e| e.0 .0)]
            .into_iter()
            .flatten()
            .min();
        if !d.paused.is_empty() {
            // Paused requests wait for the engine's next event (a tick, a callout answer...):
            // jump straight to it, so resume times are exact.
            if let Some(t) = d.engine.next_event().filter(|t| *t > d.now) {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        let next = match next {
            Some(t) => t.max(d.now),
            None if d.now < end => end,
            // Nothing scheduled can resume the paused requests: wait out the drain.
            None if !d.paused.is_empty() && d.now < deadline => deadline,
            None => break,
        };
        if next > deadline {
            d.advance(deadline.max(d.now))?;
            break;
        }
        // Close the phases that end before `next`, so their metrics are read at the boundary.
        while d.current_phase + 1 < d.bounds.len() && d.bounds[d.current_phase].1 <= next {
            let boundary = d.bounds[d.current_phase].1.max(d.now);
            d.advance(boundary)?;
            last_metrics = d.close_phase(d.current_phase, &last_metrics);
            d.current_phase += 1;
        }
        d.advance(next)?;
        while let Some(Reverse((at, _, key))) = d.due.peek().copied() {
            if at > d.now {
                break;
            }
            d.due.pop();
            d.deliver(key)?;
        }
        while traffic.peek().is_some_and(|r| r.at <= d.now) {
            let Some(req) = traffic.next() else { break };
            let worker = match scenario.assign {
                Assign::RoundRobin => {
                    rr += 1;
                    (rr - 1) % workers
                }
                Assign::ClientHash => {
                    (fnv1a(req.source.rsplit_once(':').map_or(&req.source, |s| s.0))
                        % workers as u64) as usize
                }
            };
            started += 1;
            d.phases[req.phase].totals.requests += 1;
            d.phases[req.phase]
                .by_template
                .entry(req.template.clone())
                .or_default()
                .requests += 1;
            d.start(worker, &req)?;
        }
        if let Some(p) = opts.progress.as_mut() {
            p(Progress {
                now: d.now,
                end,
                started,
            });
        }
        if !d.paused.is_empty() {
            // What the arrivals and answers just did may resume paused requests now (a queue
            // notification to another worker, an answer due at once): fire it at this time.
            d.engine.advance_to(d.now)?;
            d.check_paused()?;
        }
        if started % 4096 == 0 {
            d.drain_observations();
        }
    }
    // Whatever is still in flight did not finish in time.
    let left: Vec<StreamKey> = {
        let mut v: Vec<StreamKey> = d.flights.keys().copied().collect();
        v.sort_unstable();
        v
    };
    for key in left {
        d.end(key, End::Unfinished)?;
    }
    while d.current_phase < d.bounds.len() {
        last_metrics = d.close_phase(d.current_phase, &last_metrics);
        d.current_phase += 1;
    }
    d.drain_observations();
    let mut totals = Totals::default();
    let (mut all_cpu, mut all_pause) = (Vec::new(), Vec::new());
    let mut phases = Vec::new();
    for (i, mut acc) in d.phases.into_iter().enumerate() {
        acc.totals.added.cpu_us = Percentiles::of(&mut acc.cpu_us);
        acc.totals.added.pause_ms = Percentiles::of(&mut acc.pause_ms);
        all_cpu.extend(acc.cpu_us);
        all_pause.extend(acc.pause_ms);
        totals.add_counts(&acc.totals);
        let ph = &scenario.phases[i];
        phases.push(PhaseReport {
            name: ph.name.clone(),
            start_ms: ms(bounds[i].0),
            duration_ms: ms(ph.duration.get()),
            rate_per_s: ph.rate.per_second(),
            totals: acc.totals,
            by_template: acc.by_template,
            metrics: acc.metrics,
        });
    }
    totals.added.cpu_us = Percentiles::of(&mut all_cpu);
    totals.added.pause_ms = Percentiles::of(&mut all_pause);
    Ok(Report {
        schema: SCHEMA,
        scenario: scenario.name.clone().unwrap_or_default(),
        seed: scenario.seed,
        workers,
        plugins,
        virtual_ms: ms(d.now),
        wall_ms: crate::report::round3(wall.elapsed().as_secs_f64() * 1e3),
        phases,
        totals,
        logs: d.logs,
        traps: d.traps,
    })
}

fn ms(d: Duration) -> f64 {
    crate::report::round3(d.as_secs_f64() * 1e3)
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

impl<E: Engine> Driver<'_, E> {
    fn advance(&mut self, to: Duration) -> Result<(), RunError> {
        if to > self.now {
            self.engine.advance_to(to)?;
            self.now = to;
        }
        self.check_paused()
    }

    fn start(&mut self, worker: usize, req: &crate::traffic::Request) -> Result<(), RunError> {
        let t = Instant::now();
        let (key, step) = self.engine.start(worker, req)?;
        let cpu = t.elapsed();
        self.flights.insert(
            key,
            Flight {
                phase: req.phase,
                template: req.template.clone(),
                stage: Stage::Request,
                paused_since: None,
                paused_total: Duration::ZERO,
                was_paused: false,
                resumed: false,
                upstream_failure: false,
                answer_status: 0,
                cpu,
                pending: None,
            },
        );
        self.after_step(key, step)
    }

    /// Acts on where a stream stands after a call into the chain.
    fn after_step(&mut self, key: StreamKey, step: Step) -> Result<(), RunError> {
        let Some(f) = self.flights.get_mut(&key) else {
            return Ok(());
        };
        match step {
            Step::Paused => {
                if f.paused_since.is_none() {
                    f.paused_since = Some(self.now);
                    f.was_paused = true;
                }
                self.paused.insert(key);
                Ok(())
            }
            Step::Continue => match f.stage {
                Stage::Request => self.forward(key),
                Stage::Upstream | Stage::Response => {
                    let fallback = f.answer_status;
                    let t = Instant::now();
                    let seen = self.engine.finish(key)?;
                    if let Some(f) = self.flights.get_mut(&key) {
                        f.cpu += t.elapsed();
                    }
                    self.end(key, End::Forwarded(seen.unwrap_or(fallback)))
                }
            },
            Step::LocalReply { status, details } => self.end(key, End::Local(status, details)),
            Step::Reset => self.end(key, End::Reset),
        }
    }

    fn check_paused(&mut self) -> Result<(), RunError> {
        let keys: Vec<StreamKey> = self.paused.iter().copied().collect();
        for key in keys {
            let step = self.engine.status(key);
            if step == Step::Paused {
                continue;
            }
            self.paused.remove(&key);
            if let Some(f) = self.flights.get_mut(&key) {
                if let Some(since) = f.paused_since.take() {
                    f.paused_total += self.now.saturating_sub(since);
                }
                if step == Step::Continue {
                    f.resumed = true;
                }
            }
            self.after_step(key, step)?;
        }
        Ok(())
    }

    fn forward(&mut self, key: StreamKey) -> Result<(), RunError> {
        let answer = self.upstream.answer();
        let Some(f) = self.flights.get_mut(&key) else {
            return Ok(());
        };
        f.stage = Stage::Upstream;
        let (after, response, failed) = match answer {
            UpstreamAnswer::Response {
                after,
                status,
                headers,
                body_bytes,
            } => {
                let mut h = vec![(":status".to_string(), status.to_string())];
                h.extend(headers);
                (
                    after,
                    Response {
                        headers: h,
                        body: vec![b'x'; body_bytes],
                    },
                    false,
                )
            }
            UpstreamAnswer::ConnectFailure => {
                (Duration::ZERO, proxy_503("connection failure"), true)
            }
            UpstreamAnswer::Reset { after } => (after, proxy_503("remote reset"), true),
        };
        f.upstream_failure = failed;
        f.answer_status = response
            .headers
            .first()
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(503);
        f.pending = Some(response);
        self.due_seq += 1;
        self.due
            .push(Reverse((self.now + after, self.due_seq, key)));
        Ok(())
    }

    fn deliver(&mut self, key: StreamKey) -> Result<(), RunError> {
        let Some(f) = self.flights.get_mut(&key) else {
            return Ok(());
        };
        let Some(resp) = f.pending.take() else {
            return Ok(());
        };
        f.stage = Stage::Response;
        let t = Instant::now();
        let step = self.engine.respond(key, &resp)?;
        if let Some(f) = self.flights.get_mut(&key) {
            f.cpu += t.elapsed();
        }
        self.after_step(key, step)
    }

    fn end(&mut self, key: StreamKey, how: End) -> Result<(), RunError> {
        let needs_finish = !matches!(how, End::Forwarded(_));
        let mut cpu_extra = Duration::ZERO;
        if needs_finish {
            let t = Instant::now();
            self.engine.finish(key)?;
            cpu_extra = t.elapsed();
        }
        self.paused.remove(&key);
        let Some(mut f) = self.flights.remove(&key) else {
            return Ok(());
        };
        f.cpu += cpu_extra;
        if let Some(since) = f.paused_since.take() {
            f.paused_total += self.now.saturating_sub(since);
        }
        let Some(acc) = self.phases.get_mut(f.phase) else {
            return Ok(());
        };
        let t = acc.by_template.entry(f.template.clone()).or_default();
        match how {
            End::Forwarded(_) => t.forwarded += 1,
            End::Local(..) => t.local_replies += 1,
            End::Reset | End::Unfinished => t.other += 1,
        }
        let o = &mut acc.totals.outcomes;
        match how {
            End::Forwarded(status) => {
                o.forwarded += 1;
                *o.forwarded_by_status.entry(status).or_default() += 1;
                if f.upstream_failure {
                    o.upstream_failures += 1;
                }
            }
            End::Local(status, details) => {
                o.local_replies += 1;
                *o.local_reply_by_status.entry(status).or_default() += 1;
                if details == "wasm_fail_stream" {
                    o.failed_by_trap += 1;
                }
            }
            End::Reset => o.resets += 1,
            End::Unfinished => o.unfinished += 1,
        }
        if f.was_paused {
            o.paused += 1;
            if f.resumed {
                o.resumed += 1;
            }
            acc.pause_ms.push(f.paused_total.as_secs_f64() * 1e3);
        }
        acc.cpu_us.push(f.cpu.as_secs_f64() * 1e6);
        Ok(())
    }

    fn phase_at(&self, at_ms: f64) -> usize {
        let n = self.bounds.len();
        self.bounds
            .iter()
            .rposition(|b| b.0.as_secs_f64() * 1e3 <= at_ms)
            .unwrap_or(0)
            .min(n.saturating_sub(1))
    }

    fn drain_observations(&mut self) {
        let lines: Vec<LogLine> = self.engine.take_logs();
        for line in lines {
            let p = self.phase_at(line.at_ms);
            if let Some(acc) = self.phases.get_mut(p) {
                *acc.totals.logs_by_level.entry(line.level).or_default() += 1;
            }
            self.logs.total += 1;
            if self.logs.lines.len() < self.log_cap {
                self.logs.lines.push(line);
            } else {
                self.logs.omitted += 1;
            }
        }
        let traps = self.engine.take_traps();
        let dropped = self.engine.take_dropped_traps();
        if let Some(acc) = self.phases.get_mut(self.current_phase) {
            acc.totals.traps += traps.len() as u64 + dropped;
        }
        self.traps.extend(traps);
    }

    fn close_phase(
        &mut self,
        i: usize,
        before: &[(String, MetricSample)],
    ) -> Vec<(String, MetricSample)> {
        self.drain_observations();
        let now = self.engine.metrics();
        let prev: HashMap<&str, f64> = before.iter().map(|(k, v)| (k.as_str(), v.value)).collect();
        if let Some(acc) = self.phases.get_mut(i) {
            acc.metrics = now
                .iter()
                .map(|(k, v)| {
                    let delta = v.value - prev.get(k.as_str()).copied().unwrap_or(0.0);
                    (
                        k.clone(),
                        MetricReport {
                            kind: v.kind,
                            value: v.value,
                            delta,
                        },
                    )
                })
                .collect();
        }
        now
    }
}

/// The 503 Envoy's router sends when the upstream fails before headers.
fn proxy_503(reason: &str) -> Response {
    let body = format!(
        "upstream connect error or disconnect/reset before headers. reset reason: {reason}"
    )
    .into_bytes();
    Response {
        headers: vec![
            (":status".into(), "503".into()),
            ("content-type".into(), "text/plain".into()),
            ("content-length".into(), body.len().to_string()),
        ],
        body,
    }
}
