//! `read.rs` against its specification, the serde derives run through `de.rs`: a policy
//! that sets every field, and every mutation of it (each node replaced by each of a set
//! of values of every shape, each object given an unknown, a repeated or one fewer key,
//! each array emptied or grown), must give the same policy or the same error path and
//! message both ways.

use super::super::de::{from_node, json_tree, Node};
use super::read;
use crate::policy::Policy;

/// Every field of the policy types set (`full` adds the deployment section).
const FULL: &str = r#"{
  "apiVersion": "meshward.io/v1alpha1",
  "kind": "Policy",
  "service": "orders",
  "routes": [
    {
      "name": "list",
      "match": {
        "path": {"template": "/users/{id}/orders"},
        "methods": ["GET", "HEAD"],
        "host": "*.example.com",
        "headers": {"x-b": "2", "x-a": "1"}
      },
      "class": "critical",
      "ratelimit": {
        "rules": [
          {
            "name": "per-client",
            "algorithm": "leaky-bucket",
            "rate": "100/s",
            "burst": 20,
            "key": ["client-ip", "header:x-user", "claim:sub", "route"],
            "tiers": {"gold": "1000/s", "free": "10/s"},
            "shadow": true,
            "max_delay": "250ms",
            "delay_after": 5,
            "global": true,
            "failure_mode": "deny",
            "cost": 2
          },
          {"name": "flat", "rate": "5/min"}
        ]
      }
    },
    {"name": "default", "class": {"optional": null}, "match": {"path": {"prefix": "/"}}},
    {"name": "exact", "match": {"path": {"exact": "/x"}}}
  ],
  "ratelimit": {
    "client_ip": {"source": "xff", "trusted_hops": 2, "ipv4_mask": 24, "ipv6_mask": 48},
    "tiers": {"from": "header:x-tier", "default": "free", "names": ["free", "gold"]},
    "claim_headers": {"sub": "x-sub"},
    "allow_cidrs": ["10.0.0.0/8", "::1/128"],
    "deny_cidrs": ["192.168.0.0/16"],
    "response": {
      "status": 503,
      "headers": "ietf+legacy",
      "on_allowed": false,
      "problem_json": false,
      "shadow_header": "x-shadow"
    },
    "shared": {"slots": 64, "cas_retries": 3, "on_cas_exhausted": "deny"},
    "queue": {"max_len": 10, "tick": "5ms"},
    "global": {
      "cluster": "rls",
      "domain": "orders",
      "timeout": "20ms",
      "failure_mode": "allow",
      "cache_entries": 100
    }
  }
}"#;

/// [`FULL`] as a tree, with `deployment: null` when this build has that section (serde
/// reads its value on both paths; its key and its place in `Policy` are `read.rs`'s).
fn full() -> Node {
    #[allow(unused_mut)]
    let mut doc = json_tree(FULL.as_bytes()).expect("valid JSON");
    #[cfg(feature = "deployment")]
    if let Node::Map(entries) = &mut doc {
        entries.push(("deployment".to_string(), Node::Null));
    }
    doc
}

/// Values of every shape and of the words the policy uses, put in place of each node.
fn replacements() -> Vec<Node> {
    use Node::*;
    let s = |v: &str| Str(v.to_string());
    let map = |pairs: &[(&str, Node)]| {
        Map(pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect())
    };
    vec![
        Null,
        Bool(true),
        Unsigned(0),
        Unsigned(1),
        Unsigned(300),
        Unsigned(70_000),
        Unsigned(5_000_000_000),
        Signed(-1),
        Float(1.5),
        s(""),
        s("x"),
        s("token-bucket"),
        s("exact"),
        s("ietf"),
        s("10/s"),
        s("5s"),
        s("10.0.0.0/8"),
        s("10.0.0.1/8"),
        s("header:x-tier"),
        Seq(vec![]),
        Seq(vec![s("a")]),
        Seq(vec![Unsigned(1), Null]),
        map(&[]),
        map(&[("exact", s("/a"))]),
        map(&[("exact", Null)]),
        map(&[("exact", Unsigned(3))]),
        map(&[("regex", s("/a"))]),
        map(&[("token-bucket", Null)]),
        map(&[("token-bucket", Unsigned(1))]),
        map(&[("a", Unsigned(1)), ("b", Unsigned(2))]),
        map(&[("name", s("r"))]),
        map(&[("name", s("r")), ("rate", s("1/s"))]),
        map(&[("cluster", s("c")), ("domain", s("d"))]),
    ]
}

/// Every variant of `node` one edit away, each passed to `f` as the whole document.
fn mutations(doc: &Node, f: &mut dyn FnMut(&Node)) {
    let mut positions = Vec::new();
    collect(doc, &mut Vec::new(), &mut positions);
    for pos in positions {
        for value in replacements() {
            let mut d = doc.clone();
            if let Some(n) = node_at(&mut d, &pos) {
                *n = value;
            }
            f(&d);
        }
        let mut d = doc.clone();
        let Some(n) = node_at(&mut d, &pos) else {
            continue;
        };
        match n {
            Node::Map(entries) => {
                let original = entries.clone();
                entries.push(("bogus".to_string(), Node::Unsigned(1)));
                f(&d);
                for i in 0..original.len() {
                    let mut d = doc.clone();
                    if let Some(Node::Map(entries)) = node_at(&mut d, &pos) {
                        let repeated = entries[i].clone();
                        entries.push(repeated);
                    }
                    f(&d);
                    let mut d = doc.clone();
                    if let Some(Node::Map(entries)) = node_at(&mut d, &pos) {
                        entries.remove(i);
                    }
                    f(&d);
                }
            }
            Node::Seq(items) => {
                if let Some(first) = items.first().cloned() {
                    items.push(first);
                    f(&d);
                    let mut d = doc.clone();
                    if let Some(Node::Seq(items)) = node_at(&mut d, &pos) {
                        items.clear();
                    }
                    f(&d);
                }
            }
            _ => {}
        }
    }
}

/// The positions (child indices from the root) of every node.
fn collect(node: &Node, here: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
    out.push(here.clone());
    let children: Vec<&Node> = match node {
        Node::Seq(items) => items.iter().collect(),
        Node::Map(entries) => entries.iter().map(|(_, v)| v).collect(),
        _ => Vec::new(),
    };
    for (i, child) in children.into_iter().enumerate() {
        here.push(i);
        collect(child, here, out);
        here.pop();
    }
}

fn node_at<'a>(node: &'a mut Node, pos: &[usize]) -> Option<&'a mut Node> {
    let Some((first, rest)) = pos.split_first() else {
        return Some(node);
    };
    let child = match node {
        Node::Seq(items) => items.get_mut(*first)?,
        Node::Map(entries) => &mut entries.get_mut(*first)?.1,
        _ => return None,
    };
    node_at(child, rest)
}

fn same(doc: &Node) -> bool {
    let by_serde = from_node::<Policy>(doc);
    let by_read = read::<Policy>(doc);
    match (&by_serde, &by_read) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "{doc:?}"),
        (Err(a), Err(b)) => {
            assert_eq!((a.path(), a.message()), (b.path(), b.message()), "{doc:?}");
        }
        _ => panic!("serde {by_serde:?} but read {by_read:?} for {doc:?}"),
    }
    by_serde.is_ok()
}

#[test]
fn the_full_policy_reads_the_same_and_sets_every_field() {
    let doc = full();
    assert!(same(&doc));
    let p = read::<Policy>(&doc).expect("reads");
    let rl = p.ratelimit.expect("ratelimit");
    assert_eq!(rl.queue.max_len, 10);
    assert_eq!(p.routes.len(), 3);
}

#[test]
fn every_mutation_gives_the_same_policy_or_the_same_error() {
    let doc = full();
    let (mut ok, mut err) = (0, 0);
    mutations(&doc, &mut |d| {
        if same(d) {
            ok += 1;
        } else {
            err += 1;
        }
    });
    // Both outcomes were exercised, many times.
    assert!(ok > 100 && err > 1000, "ok {ok}, err {err}");
}

#[test]
fn a_document_of_any_shape_reads_the_same() {
    for value in replacements() {
        same(&value);
    }
}
