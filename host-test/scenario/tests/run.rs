//! Real guests through the real host on virtual time: exact outcome counts, pause and
//! resume through a callout cluster, traps counted, and the JSON report's keys.

use std::collections::BTreeSet;

use meshward_scenario::host_engine::{ChainPlugin, HostEngine};
use meshward_scenario::model::FailStrategyName;
use meshward_scenario::{parse, run, Report, RunOptions};

fn guest(name: &str) -> ChainPlugin {
    ChainPlugin {
        name: name.into(),
        root_id: String::new(),
        vm_id: String::new(),
        wasm: meshward_artifacts::bytes_of(name)
            .unwrap_or_else(|| panic!("guest {name} is built"))
            .to_vec(),
        config: Vec::new(),
        fail_strategy: FailStrategyName::FailClosed,
        source: format!("builtin:{name}"),
    }
}

fn run_yaml(yaml: &str, chain: &[ChainPlugin], workers: usize) -> Report {
    let s = parse(yaml, "test.yaml").unwrap();
    let mut engine = HostEngine::new(&s, chain, workers).unwrap();
    let infos = chain.iter().map(ChainPlugin::info).collect();
    run(
        &s,
        &mut engine,
        infos,
        RunOptions {
            workers,
            log_cap: 5,
            progress: None,
        },
    )
    .unwrap()
}

const HEADERS: &str = r#"
seed: 7
upstream:
  status: {200: 100%}
  latency: {fixed: 10ms}
  body_bytes: 3
request_templates:
  get: {path: "/items/{{client}}", clients: {cidr: 10.9.0.0/24, count: 8}}
phases:
  - {name: steady, duration: 1s, rate: 10/s}
  - {name: burst, duration: 500ms, rate: 40/s}
"#;

#[test]
fn headers_guest_forwards_everything_and_logs_once_per_request() {
    let r = run_yaml(HEADERS, &[guest("headers")], 2);
    assert_eq!(r.phases.len(), 2);
    let (a, b) = (&r.phases[0], &r.phases[1]);
    assert_eq!((a.totals.requests, b.totals.requests), (10, 20));
    assert_eq!(a.totals.outcomes.forwarded, 10);
    assert_eq!(a.totals.outcomes.forwarded_by_status.get(&200), Some(&10));
    assert_eq!(b.totals.outcomes.forwarded_by_status.get(&200), Some(&20));
    assert_eq!(
        r.totals.outcomes.local_replies + r.totals.outcomes.unfinished + r.totals.outcomes.paused,
        0
    );
    // One info line per request, attributed to the phase it was written in.
    assert_eq!(
        a.totals
            .logs_by_level
            .get(&meshward_scenario::engine::Level::Info),
        Some(&10)
    );
    assert_eq!(r.logs.total, 30);
    assert_eq!((r.logs.lines.len(), r.logs.omitted), (5, 25));
    assert!(
        r.logs.lines[0].message.contains(":path: /items/"),
        "{:?}",
        r.logs.lines[0]
    );
    assert_eq!(r.totals.added.cpu_us.count, 30);
    assert_eq!(r.totals.added.pause_ms.count, 0);
    assert_eq!(r.workers, 2);
    assert!(r.traps.is_empty());
}

fn auth(body: &str) -> String {
    format!(
        r#"
clusters:
  httpbin: {{latency: {{fixed: 5ms}}, body: "{body}"}}
upstream: {{latency: {{fixed: 20ms}}}}
request_templates: {{a: {{}}}}
phases: [{{name: p, duration: 1s, rate: 20/s}}]
"#
    )
}

#[test]
fn a_callout_pauses_requests_until_the_cluster_answers() {
    // The SDK's http_auth_random example: pause, call `httpbin`, resume on an even first byte.
    let r = run_yaml(&auth("b"), &[guest("sdk_http_auth_random")], 1);
    let o = &r.totals.outcomes;
    assert_eq!(
        (r.totals.requests, o.forwarded, o.paused, o.resumed),
        (20, 20, 20, 20)
    );
    assert_eq!(r.totals.added.pause_ms.p50, 5.0);
    assert_eq!(r.totals.added.pause_ms.max, 5.0);
    // Odd first byte: every request refused with the plugin's 403.
    let r = run_yaml(&auth("a"), &[guest("sdk_http_auth_random")], 1);
    let o = &r.totals.outcomes;
    assert_eq!(
        (o.forwarded, o.local_replies, o.paused, o.resumed),
        (0, 20, 20, 0)
    );
    assert_eq!(o.local_reply_by_status.get(&403), Some(&20));
}

#[test]
fn traps_are_counted_and_reported() {
    let yaml = r#"
request_templates:
  ok: {}
  boom: {headers: {x-trap: panic}}
phases:
  - {name: calm, duration: 1s, rate: 10/s, templates: {ok: 1}}
  - {name: storm, duration: 1s, rate: 10/s, templates: {boom: 1}}
"#;
    let mut g = guest("trap");
    g.fail_strategy = FailStrategyName::FailReload;
    let r = run_yaml(yaml, &[g], 1);
    let (calm, storm) = (&r.phases[0].totals, &r.phases[1].totals);
    assert_eq!((calm.traps, calm.outcomes.forwarded), (0, 10));
    // Every storm request fails closed, but the VM is reloaded at most once per backoff
    // (1 s base, as Envoy): the first storm request traps the VM loaded at 0 s, the
    // earliest reload is 1 s after that load, the next one 1 s after the reload.
    assert!((1..=2).contains(&storm.traps), "{} traps", storm.traps);
    assert_eq!(storm.outcomes.failed_by_trap, 10);
    assert_eq!(storm.outcomes.local_reply_by_status.get(&503), Some(&10));
    assert_eq!(r.traps.len() as u64, storm.traps);
    assert_eq!(r.traps[0].callback, "proxy_on_request_headers");
}

/// Every key path of a JSON value (array items collapsed to `[]`).
fn keys(v: &serde_json::Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(p.clone());
                keys(v, &p, out);
            }
        }
        serde_json::Value::Array(a) => {
            for v in a {
                keys(v, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn the_json_report_keeps_its_documented_shape() {
    let r = run_yaml(HEADERS, &[guest("headers")], 1);
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["schema"], "meshward.run/v1");
    let mut found = BTreeSet::new();
    keys(&v, "", &mut found);
    // Maps keyed by data (statuses, levels, metric names) are cut at the map.
    let found: BTreeSet<String> = found
        .into_iter()
        .filter(|k| {
            ![
                "forwarded_by_status.",
                "local_reply_by_status.",
                "logs_by_level.",
                "metrics.",
            ]
            .iter()
            .any(|m| k.contains(m))
        })
        // Template names are data too; the counts inside are shape.
        .map(|k| match k.split_once("by_template.") {
            Some((head, tail)) => match tail.split_once('.') {
                Some((_, field)) => format!("{head}by_template.<template>.{field}"),
                None => format!("{head}by_template.<template>"),
            },
            None => k,
        })
        .collect();
    let expected = include_str!("json-keys.txt") /* one key path a line; documented in docs/scenario.md */;
    let expected: BTreeSet<String> = expected
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(
        found, expected,
        "the meshward.run/v1 shape changed: update docs/scenario.md and bump the schema"
    );
}

#[test]
fn a_request_resumed_by_a_tick_is_timed_exactly() {
    // The conformance guest pauses every request and resumes it from its 7 ms tick (ticks at
    // 7 ms, 14 ms, ... from the worker's start). The request arrives at 0.3 ms: paused for
    // 6.7 ms exactly (following the engine's next event, not a 1 ms polling grid).
    let yaml = r#"
upstream: {status: {200: 100%}, latency: {fixed: 1ms}}
request_templates:
  get: {path: /p}
phases:
  - {name: quiet, duration: 300us, rate: 0/s}
  - {name: one, duration: 1ms, rate: 1000/s}
"#;
    let mut g = guest("conformance");
    g.config = b"pause_resume period=7".to_vec();
    let r = run_yaml(yaml, &[g], 1);
    let t = &r.totals;
    assert_eq!(
        (
            t.requests,
            t.outcomes.paused,
            t.outcomes.resumed,
            t.outcomes.forwarded
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(t.added.pause_ms.max, 6.7);
    // Resumed at 7 ms, answered 1 ms later.
    assert_eq!(r.virtual_ms, 8.0);
}
