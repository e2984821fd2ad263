//! The native baseline of the rate-limit benchmark: the decision the `ratelimit` filter makes
//! for one request, made by the same `meshward-core` code in plain Rust, with the filter's
//! state in a shared-data-like store (Envoy's CAS rules behind a mutex) instead of the host's
//! shared data. It follows `plugins/ratelimit/src/lib.rs` (`Request::decide`, `admit`,
//! `reject`, `header_fields`) step by step for local rules: the request view, client address,
//! lists, route and key (planned into one reused plan, as the filter's per-worker one), the
//! engine's check-then-commit (GCRA), the IETF header fields written by the limiter from the
//! rules' pre-quoted names, the counters by index (and, like the filter under a host that drops debug lines, no log line);
//! what the host does around it (guest calls, header maps, local reply plumbing) is what the
//! benchmark compares against.
//!
//! Must not know the host; the policy is the same JSON the filter is configured with.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use meshward_core::policy::{parse_json, FailureMode, RequestAttrs};
use meshward_core::ratelimit::headers::{self, QuotaBody};
use meshward_core::ratelimit::{
    evaluate, parse_addr_bytes, Access, Limiter, Outcome, Plan, Record, RuleState, Store,
    StoreError,
};

/// The benchmark's policy: one token-bucket rule keyed by client address on the catch-all
/// route, IETF fields on allowed responses too; clients in `allow_cidr` (if any) bypass it.
pub fn policy_json(rate: &str, burst: u32, allow_cidr: Option<&str>) -> Vec<u8> {
    let allow = allow_cidr.map_or(String::new(), |c| format!(r#""allow_cidrs":["{c}"],"#));
    format!(
        r#"{{"apiVersion":"meshward.io/v1alpha1","kind":"Policy","service":"bench",
"routes":[{{"name":"default","ratelimit":{{"rules":[
{{"name":"per-client","algorithm":"token-bucket","rate":"{rate}","burst":{burst},"key":["client-ip"]}}]}}}}],
"ratelimit":{{{allow}"response":{{"headers":"ietf","on_allowed":true}}}}}}"#
    )
    .into_bytes()
}

/// Envoy's shared-data rules (a set on a missing key ignores cas; every set takes the next
/// non-zero cas) over byte values behind one mutex, as `core`'s [`Store`].
#[derive(Debug, Default)]
pub struct SharedMap {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<Vec<u8>, (Vec<u8>, u32)>,
    next_cas: u32,
}

impl Inner {
    fn bump(&mut self) -> u32 {
        self.next_cas = self.next_cas.wrapping_add(1).max(1);
        self.next_cas
    }
}

impl SharedMap {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keys written.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Store for &SharedMap {
    fn load(&mut self, key: &[u8]) -> Result<Option<(Record, u32)>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .map
            .get(key)
            .map(|(v, cas)| (Record::from_bytes(v), *cas)))
    }

    fn create(&mut self, key: &[u8], rec: Record) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if !inner.map.contains_key(key) {
            let cas = inner.bump();
            inner
                .map
                .insert(key.to_vec(), (rec.to_bytes().to_vec(), cas));
        }
        Ok(())
    }

    fn replace(&mut self, key: &[u8], rec: Record, version: u32) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let next = inner.bump();
        match inner.map.get_mut(key) {
            Some(entry) if entry.1 != version => Ok(false),
            Some(entry) => {
                entry.0.clear();
                entry.0.extend_from_slice(&rec.to_bytes());
                entry.1 = next;
                Ok(true)
            }
            None => {
                inner
                    .map
                    .insert(key.to_vec(), (rec.to_bytes().to_vec(), next));
                Ok(true)
            }
        }
    }
}

/// The request as the filter reads it: a lookup in the headers (the filter asks the host
/// for each value it needs; here they are borrowed from the caller).
struct View<'r> {
    headers: &'r [(&'r str, &'r str)],
}

impl View<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

impl RequestAttrs for View<'_> {
    fn method(&self) -> &str {
        self.get(":method").unwrap_or("")
    }
    fn path(&self) -> &str {
        self.get(":path").unwrap_or("")
    }
    fn host(&self) -> &str {
        self.get(":authority").unwrap_or("")
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.get(name)
    }
}

/// What the filter would do with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Forward; add these fields to the response.
    Allow {
        /// Response header fields.
        response_headers: Vec<(&'static str, Vec<u8>)>,
    },
    /// Local reply.
    Reply {
        /// Status.
        status: u16,
        /// Header fields.
        headers: Vec<(&'static str, Vec<u8>)>,
        /// Body.
        body: Vec<u8>,
    },
}

/// One worker's limiter with its counters, over a shared store.
pub struct NativeFilter<'s> {
    limiter: Limiter,
    store: &'s SharedMap,
    /// Counter names, and values by the same index (named at configure time, as the filter's).
    names: Vec<String>,
    values: Vec<u64>,
    /// Index of `route.rule.allowed` in `names` by route and rule; `limited` follows it.
    index: Vec<Vec<usize>>,
    /// The 429 body by route and rule, built once (as the filter's).
    bodies: Vec<Vec<QuotaBody>>,
    denied: u64,
    /// The plan every decision is planned into (the filter keeps one per worker, too).
    plan: Plan,
}

const ALLOWED: usize = 0;
const LIMITED: usize = 1;
const CAS_EXHAUSTED: usize = 2;

impl<'s> NativeFilter<'s> {
    /// From the filter's JSON configuration.
    pub fn new(config: &[u8], store: &'s SharedMap) -> Result<Self, String> {
        let policy = parse_json(config).map_err(|e| format!("{e:?}"))?;
        let limiter = Limiter::new(policy);
        let mut names = Vec::new();
        let mut index = Vec::new();
        let mut bodies = Vec::new();
        let status = limiter.settings().response.status;
        for route in &limiter.policy().routes {
            let rules = route.ratelimit.as_ref().map_or(&[][..], |rl| &rl.rules);
            let mut by_rule = Vec::new();
            for rule in rules {
                by_rule.push(names.len());
                for o in ["allowed", "limited", "cas_exhausted"] {
                    names.push(format!(
                        "meshward_ratelimit.{}.{}.{o}",
                        route.name, rule.name
                    ));
                }
            }
            index.push(by_rule);
            bodies.push(
                rules
                    .iter()
                    .map(|rule| QuotaBody::new(status, &route.name, &rule.name))
                    .collect(),
            );
        }
        Ok(Self {
            values: vec![0; names.len()],
            limiter,
            store,
            names,
            index,
            bodies,
            denied: 0,
            plan: Plan::default(),
        })
    }

    /// A counter's value.
    pub fn counter(&self, name: &str) -> u64 {
        if name == "meshward_ratelimit.denied" {
            return self.denied;
        }
        self.names
            .iter()
            .position(|n| n == name)
            .and_then(|i| self.values.get(i))
            .copied()
            .unwrap_or(0)
    }

    fn count(&mut self, plan: &Plan, rule: usize, outcome: usize) {
        let i = self
            .index
            .get(plan.route.0)
            .and_then(|r| r.get(rule))
            .map(|i| i + outcome);
        if let Some(v) = i.and_then(|i| self.values.get_mut(i)) {
            *v += 1;
        }
    }

    fn header_fields(
        &self,
        plan: &Plan,
        states: &[RuleState],
        out: &mut Vec<(&'static str, Vec<u8>)>,
    ) {
        let style = self.limiter.settings().response.headers;
        self.limiter.put_response_fields(plan, style, states, out);
    }

    fn reject(
        &self,
        plan: &Plan,
        rule: Option<usize>,
        retry_after_ns: u64,
        states: &[RuleState],
    ) -> Decision {
        let r = &self.limiter.settings().response;
        let retry = headers::retry_after_secs(retry_after_ns);
        let mut fields = Vec::with_capacity(plan.response_field_count(r.headers, states) + 3);
        self.header_fields(plan, states, &mut fields);
        let mut retry_s = Vec::with_capacity(20);
        headers::put_u64(&mut retry_s, retry);
        fields.push(("retry-after", retry_s));
        fields.push(("x-envoy-ratelimited", b"true".to_vec()));
        let mut body = Vec::new();
        if r.problem_json {
            fields.push(("content-type", b"application/problem+json".to_vec()));
            let built = rule.and_then(|i| self.bodies.get(plan.route.0)?.get(i));
            match built {
                Some(q) => q.put(retry, &mut body),
                None => QuotaBody::new(r.status, &plan.route.1, "").put(retry, &mut body),
            }
        }
        Decision::Reply {
            status: r.status,
            headers: fields,
            body,
        }
    }

    /// The decision for one request from `peer` (`ip:port`) with these headers, at the
    /// system clock's now. Local rules only (what the benchmark configures); like the filter
    /// under a host that drops debug lines, no log line is formatted.
    pub fn decide(&mut self, peer: &str, request: &[(&str, &str)]) -> Decision {
        let mut plan = std::mem::take(&mut self.plan);
        let d = self.decide_in(peer, request, &mut plan);
        self.plan = plan;
        d
    }

    fn decide_in(&mut self, peer: &str, request: &[(&str, &str)], plan: &mut Plan) -> Decision {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let req = View { headers: request };
        let xff = if self.limiter.reads_xff() {
            req.header("x-forwarded-for")
        } else {
            None
        };
        let client = self
            .limiter
            .client_ip(parse_addr_bytes(peer.as_bytes()), xff);
        match self.limiter.access(client) {
            Access::Deny => {
                self.denied += 1;
                return Decision::Reply {
                    status: 403,
                    headers: Vec::new(),
                    body: headers::problem_body(403, "Forbidden", "deny list").into_bytes(),
                };
            }
            Access::Bypass => {
                return Decision::Allow {
                    response_headers: Vec::new(),
                }
            }
            Access::Limit => {}
        }
        if !self.limiter.plan_into(&req, client, plan) {
            return Decision::Allow {
                response_headers: Vec::new(),
            };
        }
        let plan: &Plan = plan;
        let settings = self.limiter.settings();
        let retries = settings.shared.cas_retries;
        let on_allowed = settings.response.on_allowed;
        let deny_exhausted = settings.shared.on_cas_exhausted == FailureMode::Deny;
        let mut store = self.store;
        let outcome = evaluate(&mut store, plan.local(), now, retries);
        let response_headers = match outcome {
            Outcome::Reject {
                rule,
                retry_after_ns,
                states,
            } => {
                let hit = plan.local().get(rule).map(|r| r.index);
                self.count(plan, hit.unwrap_or(usize::MAX), LIMITED);
                return self.reject(plan, hit, retry_after_ns, &states);
            }
            Outcome::Exhausted { rule, .. } => {
                let hit = plan.local().get(rule).map(|r| r.index);
                self.count(plan, hit.unwrap_or(usize::MAX), CAS_EXHAUSTED);
                if deny_exhausted {
                    return self.reject(plan, hit, 1_000_000_000, &[]);
                }
                Vec::new()
            }
            Outcome::Allow { states, .. } => {
                if on_allowed {
                    let mut fields = Vec::with_capacity(2);
                    self.header_fields(plan, &states, &mut fields);
                    fields
                } else {
                    Vec::new()
                }
            }
        };
        for r in plan.local() {
            self.count(plan, r.index, ALLOWED);
        }
        Decision::Allow { response_headers }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &[(&str, &str)] = &[(":method", "GET"), (":path", "/"), (":authority", "a")];

    #[test]
    fn allows_with_fields_then_limits_with_retry_after() {
        let store = SharedMap::default();
        let mut f = NativeFilter::new(&policy_json("1/h", 2, None), &store).expect("policy");
        for left in [1, 0] {
            match f.decide("10.0.0.1:5", REQ) {
                Decision::Allow { response_headers } => assert_eq!(
                    response_headers,
                    [
                        ("ratelimit-policy", b"\"per-client\";q=1;w=3600".to_vec()),
                        (
                            "ratelimit",
                            format!("\"per-client\";r={left};t={}", 3600 * (2 - left)).into_bytes()
                        ),
                    ]
                ),
                d => panic!("{d:?}"),
            }
        }
        match f.decide("10.0.0.1:5", REQ) {
            Decision::Reply {
                status, headers, ..
            } => {
                assert_eq!(status, 429);
                assert!(headers.contains(&("retry-after", b"3600".to_vec())));
            }
            d => panic!("{d:?}"),
        }
        assert!(matches!(
            f.decide("10.0.0.2:5", REQ),
            Decision::Allow { .. }
        ));
        assert_eq!(
            f.counter("meshward_ratelimit.default.per-client.allowed"),
            3
        );
        assert_eq!(
            f.counter("meshward_ratelimit.default.per-client.limited"),
            1
        );
        assert_eq!(store.len(), 2);
    }
}
