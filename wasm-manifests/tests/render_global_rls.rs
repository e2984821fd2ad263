//! The envoyproxy/ratelimit config the renderer writes must match the descriptors the
//! ratelimit filter really sends: plan real requests with the filter's own planner
//! (`meshward_core::ratelimit::Limiter`) and walk the rendered descriptor tree the way the
//! RLS does (key equal, value equal or absent) down to a `rate_limit`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use meshward_core::policy::{parse_yaml, RequestAttrs};
use meshward_core::ratelimit::Limiter;
use meshward_manifests::render::{self, Options};
use serde_json::Value;

struct Req {
    method: &'static str,
    path: &'static str,
    host: &'static str,
    headers: BTreeMap<&'static str, &'static str>,
}

impl RequestAttrs for Req {
    fn method(&self) -> &str {
        self.method
    }
    fn path(&self) -> &str {
        self.path
    }
    fn host(&self) -> &str {
        self.host
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).copied()
    }
}

/// The RLS's lookup: follow each entry into the matching child; the limit of the last node.
fn lookup<'a>(config: &'a Value, entries: &[(String, String)]) -> Option<&'a Value> {
    let mut level = config["descriptors"].as_array()?;
    let mut node = None;
    for (k, v) in entries {
        let exact = level
            .iter()
            .find(|d| d["key"] == k.as_str() && d["value"] == v.as_str());
        let any = level
            .iter()
            .find(|d| d["key"] == k.as_str() && d.get("value").is_none());
        let n = exact.or(any)?;
        node = Some(n);
        level = match n.get("descriptors").and_then(Value::as_array) {
            Some(l) => l,
            None => &EMPTY,
        };
    }
    node.and_then(|n| n.get("rate_limit"))
}

static EMPTY: Vec<Value> = Vec::new();

fn rls_config(policy_text: &str) -> Value {
    let rendered = render::render_str(policy_text, &Options::default()).unwrap();
    let file = &rendered.files["global-ratelimit.yaml"];
    let cm = file
        .split("\n---\n")
        .filter_map(|d| serde_yaml::from_str::<Value>(d).ok())
        .find(|d| d["kind"] == "ConfigMap")
        .unwrap();
    serde_yaml::from_str(cm["data"]["config.yaml"].as_str().unwrap()).unwrap()
}

#[test]
fn orders_api_global_rule_descriptor_finds_its_limit() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/orders-api/policy.yaml"),
    )
    .unwrap();
    let config = rls_config(&text);
    assert_eq!(config["domain"], "orders-api");
    let limiter = Limiter::new(parse_yaml(&text, "policy.yaml").unwrap());
    let req = Req {
        method: "POST",
        path: "/api/checkout/cart-1",
        host: "api.example.com",
        headers: BTreeMap::from([("x-meshward-sub", "user-1"), ("x-meshward-plan", "premium")]),
    };
    let client: IpAddr = "198.51.100.7".parse().unwrap();
    let plan = limiter.plan(&req, Some(client)).expect("checkout route");
    let globals: Vec<_> = plan
        .rules()
        .iter()
        .filter_map(|r| r.descriptor.clone())
        .collect();
    assert_eq!(globals.len(), 1, "one global rule on checkout");
    let limit = lookup(&config, &globals[0]).expect("descriptor must hit a limit");
    assert_eq!(limit["unit"], "minute");
    assert_eq!(limit["requests_per_unit"], 6000);
}

#[test]
fn header_keyed_shadow_rule_gets_a_counter_per_value() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/policies/gateway-otel.yaml"),
    )
    .unwrap();
    let config = rls_config(&text);
    let limiter = Limiter::new(parse_yaml(&text, "gateway-otel.yaml").unwrap());
    for key in ["k1", "k2"] {
        let req = Req {
            method: "GET",
            path: "/v1/query",
            host: "eu.search.example.org",
            headers: BTreeMap::from([("x-client", "mobile"), ("x-api-key", key)]),
        };
        let plan = limiter.plan(&req, None).expect("query route");
        let d = plan
            .rules()
            .iter()
            .find_map(|r| r.descriptor.clone())
            .unwrap();
        assert!(
            d.contains(&("x-api-key".to_string(), key.to_string())),
            "{d:?}"
        );
        let limit = lookup(&config, &d).expect("descriptor must hit a limit");
        assert_eq!(limit["unit"], "hour");
        assert_eq!(limit["requests_per_unit"], 10);
    }
    // Shadow rules are shadow on the RLS too.
    let text = serde_json::to_string(&config).unwrap();
    assert!(text.contains("\"shadow_mode\":true"), "{text}");
}
