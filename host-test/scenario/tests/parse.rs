//! Scenario files: a full good one parses to what it says; bad ones fail with the file,
//! line and column a person has to fix.

use std::time::Duration;

use meshward_scenario::model::{Arrival, Assign, Latency};
use meshward_scenario::parse;

const GOOD: &str = r#"
name: checkout under load
seed: 42
workers: 2
assign: client_hash
plugins:
  - module: headers
    config: {add: {x-demo: "1"}}
  - path: ./filter.wasm
    root_id: limits
    config_file: limits.json
    fail_strategy: fail_open
clusters:
  auth:
    latency: {uniform: {min: 1ms, max: 3ms}}
    status: 200
    body: ok
  rls:
    kind: grpc
    latency: {fixed: 2ms}
    grpc_status: 0
    failure: 1%
upstream:
  status: {200: 95%, 503: 5%}
  latency: {lognormal: {median: 20ms, sigma: 0.4}}
  body_bytes: 512
  failures: {connect: 0.5%, reset: 0.5%}
request_templates:
  browse:
    path: /products/{{client}}
    authority: shop.local
    headers: {x-user: "u{{client}}", x-tier: gold}
    clients: {cidr: 10.1.0.0/24, count: 50}
  checkout:
    method: POST
    path: /checkout
    body_bytes: 256
    clients: {list: [192.168.1.10, "fd00::1"]}
phases:
  - {name: warmup, duration: 10s, rate: 50/s}
  - name: spike
    duration: 2500ms
    rate: 6000/m
    arrival: poisson
    templates: {browse: 3, checkout: 1}
drain: 5s
"#;

#[test]
fn a_full_scenario_parses() {
    let s = parse(GOOD, "good.yaml").unwrap();
    assert_eq!(s.name.as_deref(), Some("checkout under load"));
    assert_eq!(
        (s.seed, s.workers, s.assign),
        (42, Some(2), Assign::ClientHash)
    );
    assert_eq!(s.plugins.len(), 2);
    assert_eq!(s.plugins[0].module.as_deref(), Some("headers"));
    assert_eq!(s.plugins[1].root_id.as_deref(), Some("limits"));
    assert_eq!(s.clusters["auth"].body, "ok");
    assert_eq!(s.clusters["rls"].failure.value(), 1.0);
    assert_eq!(s.upstream.status[&503].value(), 5.0);
    assert!(matches!(s.upstream.latency, Latency::Lognormal { sigma, .. } if sigma == 0.4));
    assert_eq!(s.request_templates["checkout"].body_bytes, 256);
    assert_eq!(s.phases[1].duration.get(), Duration::from_millis(2500));
    assert_eq!(s.phases[1].rate.per_second(), 100.0);
    assert_eq!(s.phases[1].arrival, Arrival::Poisson);
    assert_eq!(s.drain.get(), Duration::from_secs(5));
}

/// Parses `yaml` and returns the error text, which must start with `bad.yaml:LINE:COL`.
fn error(yaml: &str) -> String {
    parse(yaml, "bad.yaml").unwrap_err().to_string()
}

const TAIL: &str = "request_templates: {a: {}}\nphases: [{name: p, duration: 1s, rate: 1/s}]\n";

#[test]
fn unknown_fields_are_refused_with_their_position() {
    let e = error(&format!("seed: 1\nworkrs: 2\n{TAIL}"));
    assert!(e.starts_with("bad.yaml:2:1: "), "{e}");
    assert!(e.contains("unknown field `workrs`"), "{e}");
    let e = error(
        "request_templates:\n  a:\n    methd: GET\nphases: [{name: p, duration: 1s, rate: 1/s}]\n",
    );
    assert!(
        e.starts_with("bad.yaml:3:5: request_templates.a.methd: unknown field `methd`"),
        "{e}"
    );
}

#[test]
fn bad_units_point_at_the_value() {
    let e = error(
        "request_templates: {a: {}}\nphases:\n  - name: p\n    duration: 10\n    rate: 1/s\n",
    );
    assert!(
        e.starts_with("bad.yaml:4:15: phases[0].duration: invalid duration `10`"),
        "{e}"
    );
    let e = error(
        "request_templates: {a: {}}\nphases:\n  - name: p\n    duration: 1s\n    rate: fast\n",
    );
    assert!(
        e.starts_with("bad.yaml:5:11: phases[0].rate: invalid rate `fast`"),
        "{e}"
    );
    let e = error(&format!("upstream:\n  status: {{200: 95}}\n{TAIL}"));
    assert!(e.starts_with("bad.yaml:2:"), "{e}");
    assert!(e.contains("percentage"), "{e}");
    let e = error(&format!("upstream:\n  latency: {{fixd: 2ms}}\n{TAIL}"));
    assert!(e.starts_with("bad.yaml:2:"), "{e}");
    assert!(e.contains("fixd"), "{e}");
}

#[test]
fn checks_after_parsing_point_at_the_field() {
    let e = error(&format!(
        "upstream:\n  status: {{200: 90%, 503: 5%}}\n{TAIL}"
    ));
    assert!(
        e.starts_with("bad.yaml:2:3: upstream.status: the status mix adds up to 95%"),
        "{e}"
    );
    let e = error("request_templates: {a: {}}\nphases:\n  - name: p\n    duration: 1s\n    rate: 1/s\n    templates: {a: 1, nope: 2}\n");
    assert!(
        e.starts_with(
            "bad.yaml:6:23: phases[0].templates.nope: unknown template `nope` (known: a)"
        ),
        "{e}"
    );
    let e = error("request_templates:\n  a:\n    path: /u/{{user}}\nphases: [{name: p, duration: 1s, rate: 1/s}]\n");
    assert!(
        e.starts_with("bad.yaml:3:5: request_templates.a.path: unknown placeholder `{{user}}`"),
        "{e}"
    );
    let e = error("request_templates:\n  a:\n    clients: {cidr: 10.0.0.0/30, count: 9}\nphases: [{name: p, duration: 1s, rate: 1/s}]\n");
    assert!(e.starts_with("bad.yaml:3:"), "{e}");
    assert!(e.contains("9 clients do not fit in `10.0.0.0/30`"), "{e}");
    let e = error(&format!("plugins:\n  - name: x\n{TAIL}"));
    assert!(e.starts_with("bad.yaml:2:"), "{e}");
    assert!(e.contains(": plugins[0]: a plugin needs `path`"), "{e}");
    let e = error(&format!(
        "clusters:\n  c: {{kind: grpc, status: 200}}\n{TAIL}"
    ));
    assert!(
        e.starts_with("bad.yaml:2:19: clusters.c.status: `status` is for `kind: http`"),
        "{e}"
    );
    let e = error("request_templates: {a: {}}\nphases:\n  - {name: p, duration: 1s, rate: 1/s}\n  - {name: p, duration: 1s, rate: 1/s}\n");
    assert!(
        e.starts_with("bad.yaml:4:6: phases[1].name: phase `p` is named twice"),
        "{e}"
    );
}

#[test]
fn syntax_errors_and_missing_sections() {
    let e = error("request_templates: {a: {path: /x/{{client}}}}\nphases: []\n");
    assert!(e.starts_with("bad.yaml:1:"), "{e}");
    assert!(
        e.contains("quote values that use `{{...}}` placeholders"),
        "{e}"
    );
    let e = error("request_templates: {a: {}}\n");
    assert!(e.contains("missing field `phases`"), "{e}");
    let e = error("request_templates: {}\nphases: [{name: p, duration: 1s, rate: 1/s}]\n");
    assert!(
        e.starts_with("bad.yaml:1:1: request_templates: needs at least one template"),
        "{e}"
    );
}
