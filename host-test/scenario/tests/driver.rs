//! The driver alone, against a scripted engine (no wasm): pauses resumed on virtual time,
//! local replies, resets, unfinished requests at the end of the drain, phase attribution.

use std::collections::HashMap;
use std::time::Duration;

use meshward_scenario::engine::{
    Engine, Level, LogLine, MetricKind, MetricSample, Response, Step, StreamKey, Trap,
};
use meshward_scenario::traffic::Request;
use meshward_scenario::{parse, run, RunError, RunOptions};

/// `/deny` -> 429; `/slow` -> paused, resumed 30ms later; `/tick` -> paused until a timer at
/// 7.3 ms of virtual time; `/stuck` -> paused forever; `/reset` -> reset; else continue.
/// Logs one warn line per denied request.
#[derive(Default)]
struct Scripted {
    now: Duration,
    next: u64,
    resume_at: HashMap<StreamKey, Duration>,
    stuck: Vec<StreamKey>,
    logs: Vec<LogLine>,
    denied: u64,
    seen_status: HashMap<StreamKey, u16>,
}

impl Engine for Scripted {
    fn workers(&self) -> usize {
        2
    }
    fn advance_to(&mut self, to: Duration) -> Result<(), RunError> {
        assert!(to >= self.now, "time never goes back");
        self.now = to;
        Ok(())
    }
    fn start(&mut self, worker: usize, r: &Request) -> Result<(StreamKey, Step), RunError> {
        self.next += 1;
        let key = (worker, self.next);
        let path = &r.headers.iter().find(|(k, _)| k == ":path").unwrap().1;
        let step = match path.as_str() {
            "/deny" => {
                self.denied += 1;
                self.logs.push(LogLine {
                    at_ms: self.now.as_secs_f64() * 1e3,
                    plugin: "scripted".into(),
                    worker: Some(worker),
                    level: Level::Warn,
                    message: "denied".into(),
                });
                Step::LocalReply {
                    status: 429,
                    details: "limited".into(),
                }
            }
            "/slow" => {
                self.resume_at
                    .insert(key, self.now + Duration::from_millis(30));
                Step::Paused
            }
            "/tick" => {
                self.resume_at.insert(key, Duration::from_micros(7_300));
                Step::Paused
            }
            "/stuck" => {
                self.stuck.push(key);
                Step::Paused
            }
            "/reset" => Step::Reset,
            _ => Step::Continue,
        };
        Ok((key, step))
    }
    fn respond(&mut self, key: StreamKey, r: &Response) -> Result<Step, RunError> {
        let status = r.headers[0].1.parse().unwrap();
        self.seen_status.insert(key, status);
        Ok(Step::Continue)
    }
    fn status(&mut self, key: StreamKey) -> Step {
        match self.resume_at.get(&key) {
            Some(t) if *t <= self.now => Step::Continue,
            _ => Step::Paused,
        }
    }
    fn finish(&mut self, key: StreamKey) -> Result<Option<u16>, RunError> {
        Ok(self.seen_status.get(&key).copied())
    }
    fn take_logs(&mut self) -> Vec<LogLine> {
        std::mem::take(&mut self.logs)
    }
    fn take_traps(&mut self) -> Vec<Trap> {
        Vec::new()
    }
    fn next_event(&mut self) -> Option<Duration> {
        self.resume_at
            .values()
            .copied()
            .filter(|t| *t > self.now)
            .min()
    }
    fn metrics(&self) -> Vec<(String, MetricSample)> {
        vec![(
            "denied".into(),
            MetricSample {
                kind: MetricKind::Counter,
                value: self.denied as f64,
            },
        )]
    }
}

const SCENARIO: &str = r#"
drain: 1s
upstream: {status: {200: 100%}, latency: {fixed: 10ms}}
request_templates:
  ok: {path: /ok}
  deny: {path: /deny}
  slow: {path: /slow}
  stuck: {path: /stuck}
  reset: {path: /reset}
phases:
  - {name: a, duration: 1s, rate: 10/s, templates: {ok: 1}}
  - {name: b, duration: 1s, rate: 20/s, templates: {deny: 1}}
  - {name: c, duration: 500ms, rate: 10/s, templates: {slow: 1}}
  - {name: d, duration: 200ms, rate: 10/s, templates: {stuck: 1}}
  - {name: e, duration: 100ms, rate: 10/s, templates: {reset: 1}}
"#;

#[test]
fn every_request_ends_in_one_outcome_in_the_phase_it_arrived_in() {
    let s = parse(SCENARIO, "s.yaml").unwrap();
    let mut e = Scripted::default();
    let r = run(
        &s,
        &mut e,
        vec![],
        RunOptions {
            workers: 2,
            log_cap: 3,
            progress: None,
        },
    )
    .unwrap();
    let p = |i: usize| &r.phases[i].totals;
    assert_eq!(p(0).requests, 10);
    assert_eq!(p(0).outcomes.forwarded_by_status.get(&200), Some(&10));
    assert_eq!(p(1).outcomes.local_reply_by_status.get(&429), Some(&20));
    assert_eq!(p(1).logs_by_level.get(&Level::Warn), Some(&20));
    assert_eq!(r.phases[1].metrics["denied"].delta, 20.0);
    assert_eq!(r.phases[2].metrics["denied"].delta, 0.0);
    let c = &p(2).outcomes;
    assert_eq!((c.paused, c.resumed, c.forwarded), (5, 5, 5));
    assert_eq!(p(2).added.pause_ms.p50, 30.0);
    assert_eq!(p(2).added.pause_ms.max, 30.0);
    let d = &p(3).outcomes;
    assert_eq!(
        (p(3).requests, d.unfinished, d.paused, d.resumed),
        (2, 2, 2, 0)
    );
    // Paused from arrival (2.5s, 2.6s) until the drain ran out (3.8s).
    assert_eq!(p(3).added.pause_ms.max, 1300.0);
    assert_eq!((p(4).requests, p(4).outcomes.resets), (1, 1));
    // The run covers the phases and the whole drain (stuck requests never resume).
    assert_eq!(r.virtual_ms, 3800.0);
    assert_eq!(r.totals.requests, 38);
    assert_eq!(
        (r.logs.total, r.logs.lines.len(), r.logs.omitted),
        (20, 3, 17)
    );
}

#[test]
fn a_paused_request_is_seen_resumed_at_the_exact_time_of_the_event() {
    // Arrives at 0, resumed by a timer at 7.3 ms: the driver jumps to the engine's next event
    // (no 1 ms polling, which would have seen it at 8 ms).
    let s = parse(
        r#"
upstream: {status: {200: 100%}, latency: {fixed: 10ms}}
request_templates:
  tick: {path: /tick}
phases:
  - {name: t, duration: 1ms, rate: 1000/s}
"#,
        "s.yaml",
    )
    .unwrap();
    let mut e = Scripted::default();
    let r = run(
        &s,
        &mut e,
        vec![],
        RunOptions {
            workers: 1,
            log_cap: 0,
            progress: None,
        },
    )
    .unwrap();
    let t = &r.totals;
    assert_eq!(
        (t.requests, t.outcomes.resumed, t.outcomes.forwarded),
        (1, 1, 1)
    );
    assert_eq!(t.added.pause_ms.max, 7.3);
    // Forwarded at 7.3 ms, answered 10 ms later: the run ends there, not on a polling step.
    assert_eq!(r.virtual_ms, 17.3);
}
