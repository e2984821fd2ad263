//! YAML policy files: the example parses; every problem comes back with file:line:column
//! and the field path, all of them at once for semantic problems.
#![cfg(feature = "yaml")]

use meshward_core::policy::{parse_json, parse_yaml, Algorithm, Filter, KeyPart, PolicyErrors};

const ORDERS: &str = include_str!("fixtures/orders.yaml");

fn errors(text: &str) -> PolicyErrors {
    parse_yaml(text, "p.yaml").expect_err("must be refused")
}

fn one_line(e: &PolicyErrors) -> Vec<String> {
    e.iter().map(|e| e.to_string()).collect()
}

#[test]
fn example_parses() {
    let p = parse_yaml(ORDERS, "orders.yaml").unwrap();
    assert_eq!(p.service, "orders-api");
    assert_eq!(p.routes.len(), 3);
    let rules = &p.routes[0].ratelimit.as_ref().unwrap().rules;
    assert_eq!(rules[0].rate.count(), 100);
    assert_eq!(rules[0].burst, Some(20));
    assert_eq!(rules[1].algorithm, Algorithm::SlidingWindow);
    assert_eq!(rules[1].key, vec![KeyPart::Claim("sub".into())]);
    assert_eq!(p.filters_used(), vec![Filter::RateLimit]);
}

#[test]
fn filter_slice_round_trips_through_json() {
    let p = parse_yaml(ORDERS, "orders.yaml").unwrap();
    let slice = p.filter_config(Filter::RateLimit);
    assert!(slice.get("deployment").is_none());
    assert!(
        slice["routes"][0].get("class").is_none(),
        "class is not the ratelimit filter's"
    );
    let back = parse_json(serde_json::to_string(&slice).unwrap().as_bytes()).unwrap();
    assert_eq!(back.routes, {
        let mut r = p.routes.clone();
        for x in &mut r {
            x.class = None;
        }
        r
    });
    assert_eq!(back.ratelimit, p.ratelimit);
}

#[test]
fn type_error_has_line_column_and_path() {
    let bad = ORDERS.replace("rate: 100/s", "rate: 100/fortnight");
    let e = errors(&bad);
    let lines = one_line(&e);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(
            "p.yaml:16:11: routes[0].ratelimit.rules[0].rate: invalid rate `100/fortnight`"
        ),
        "{}",
        lines[0]
    );
}

#[test]
fn unknown_field_points_at_the_field() {
    let bad = ORDERS.replace("          burst: 20\n", "          burts: 20\n");
    let lines = one_line(&errors(&bad));
    assert!(
        lines[0]
            .starts_with("p.yaml:17:11: routes[0].ratelimit.rules[0].burts: unknown field `burts`"),
        "{}",
        lines[0]
    );
}

#[test]
fn all_semantic_problems_are_reported_with_locations() {
    let bad = ORDERS
        .replace(
            "tiers: { free: 10/s, premium: 1000/s }",
            "tiers: { gold: 10/s }",
        )
        .replace("key: [claim:sub]", "key: [claim:email]")
        .replace("        - name: paced", "        - name: Paced")
        .replace("default: free,", "default: platinum,");
    let lines = one_line(&errors(&bad));
    let expect = [
        "p.yaml:19:20: routes[0].ratelimit.rules[0].tiers.gold: unknown tier `gold`",
        "p.yaml:23:17: routes[0].ratelimit.rules[1].key[0]: claim `email` has no header",
        "p.yaml:35:11: routes[1].ratelimit.rules[0].name: `Paced` is not a DNS-1123 label",
        "p.yaml:50:44: ratelimit.tiers.default: `platinum` is not one of the tier names",
    ];
    assert_eq!(lines.len(), expect.len(), "{lines:#?}");
    for (l, e) in lines.iter().zip(expect) {
        assert!(l.starts_with(e), "{l}\n  expected prefix {e}");
    }
}

#[test]
fn routes_need_match_and_default_is_last() {
    let text = "apiVersion: meshward.io/v1alpha1\nkind: Policy\nservice: s\nroutes:\n  - name: default\n  - name: late\n    match: { path: { exact: /x } }\n  - name: nomatch\n";
    let lines = one_line(&errors(text));
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("p.yaml:6:5: routes[1]: unreachable")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("p.yaml:8:5: routes[2]: a route needs `match`")),
        "{lines:#?}"
    );
}

#[test]
fn syntax_and_duplicate_keys() {
    let e = errors("service: a\nservice: b\n");
    assert!(
        one_line(&e)[0].starts_with("p.yaml:2:1: service: duplicate key `service`"),
        "{e}"
    );
    let e = errors("routes: [\n");
    assert!(one_line(&e)[0].contains("YAML syntax"), "{e}");
}

#[test]
fn json_errors_carry_the_path() {
    let e = parse_json(br#"{"apiVersion":"meshward.io/v1alpha1","kind":"Policy","service":"s","routes":[{"name":"default","ratelimit":{"rules":[{"name":"r","rate":"0/s"}]}}]}"#).unwrap_err();
    let l = one_line(&e);
    assert!(
        l[0].starts_with("pluginConfig: routes[0].ratelimit.rules[0].rate: invalid rate `0/s`"),
        "{l:?}"
    );
    // A syntax error has no path but a line and column.
    let e = parse_json(b"{\n  \"service\": 1,,\n}").unwrap_err();
    assert!(
        one_line(&e)[0].starts_with("pluginConfig:2:16: .: key must be a string"),
        "{e}"
    );
    // Duplicate keys are refused, not resolved by the last one.
    let e = parse_json(br#"{"service":"a","service":"b"}"#).unwrap_err();
    assert!(one_line(&e)[0].contains("duplicate key `service`"), "{e}");
}

/// The policies embedded in the ratelimit example scenarios are valid.
#[test]
fn example_scenario_policies_are_valid() {
    use yaml_rust2::{Yaml, YamlEmitter, YamlLoader};
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/examples");
    for name in ["ratelimit-tiers.yaml", "demo-scenario.yaml"] {
        let text = std::fs::read_to_string(format!("{dir}/{name}")).unwrap();
        let docs = YamlLoader::load_from_str(&text).unwrap();
        let config = &docs[0]["plugins"][0]["config"];
        assert!(
            !matches!(config, Yaml::BadValue),
            "{name}: no plugins[0].config"
        );
        let mut out = String::new();
        YamlEmitter::new(&mut out).dump(config).unwrap();
        if let Err(e) = parse_yaml(&out, name) {
            panic!("{name}:\n{e}");
        }
    }
}
