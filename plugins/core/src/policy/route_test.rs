//! Unit tests of `route.rs`.

use super::*;

struct Req<'a>(&'a str, &'a str, &'a str, &'a [(&'a str, &'a str)]);
impl RequestAttrs for Req<'_> {
    fn method(&self) -> &str {
        self.0
    }
    fn path(&self) -> &str {
        self.1
    }
    fn host(&self) -> &str {
        self.2
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.3.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }
}

#[test]
fn path_kinds() {
    let p = PathMatch::Prefix("/api".into());
    assert!(p.matches("/api"));
    assert!(p.matches("/api/x"));
    assert!(!p.matches("/apix"));
    assert!(PathMatch::Prefix("/api/".into()).matches("/api/x"));
    let t = PathMatch::Template("/users/{id}/orders".into());
    assert!(t.matches("/users/42/orders"));
    assert!(!t.matches("/users//orders"));
    assert!(!t.matches("/users/42/orders/1"));
    assert!(!t.matches("/users/42"));
    assert!(PathMatch::Exact("/a".into()).matches("/a"));
    assert!(!PathMatch::Exact("/a".into()).matches("/a/"));
}

#[test]
fn host_port_and_wildcard() {
    assert!(host_matches("api.example.com", "API.example.com:8443"));
    assert!(!host_matches("api.example.com", "xapi.example.com"));
    assert!(host_matches("*.example.com", "a.example.com"));
    assert!(!host_matches("*.example.com", "example.com"));
    assert!(!host_matches("*.example.com", "aexample.com"));
}

#[test]
fn first_match_wins_and_default_catches_rest() {
    let routes: Vec<Route> = serde_json::from_str(
        r#"[{"name":"checkout","match":{"path":{"prefix":"/api/checkout"},"methods":["POST"],"headers":{"x-canary":"true"}}},
            {"name":"api","match":{"path":{"prefix":"/api"}}},
            {"name":"default"}]"#,
    )
    .unwrap();
    let name = |r: Req<'_>| select(&routes, &r).map(|(_, r)| r.name.clone()).unwrap();
    assert_eq!(
        name(Req(
            "POST",
            "/api/checkout?x=1",
            "h",
            &[("x-canary", "true")]
        )),
        "checkout"
    );
    assert_eq!(
        name(Req("GET", "/api/checkout", "h", &[("x-canary", "true")])),
        "api"
    );
    assert_eq!(name(Req("POST", "/api/checkout", "h", &[])), "api");
    assert_eq!(name(Req("GET", "/other", "h", &[])), "default");
}
