//! meshward rate-limit filter (proxy-wasm, wasm32-wasip1). Thin: maps proxy callbacks to
//! decisions made by `meshward-core` (route, client, tier, algorithms, headers) and does
//! only the plumbing here: shared-data state across workers (kit's CAS store), local
//! replies, pausing leaky-bucket requests until the root tick releases them, the global
//! rate limit service over gRPC (prost), metrics per rule and outcome, and a debug line
//! per decision carrying x-request-id. Nothing on the request path panics.

pub mod cache;
pub mod last_reply;
pub mod queue;
pub mod rls;

use std::cell::{Cell, RefCell};
use std::fmt::Display;
use std::rc::Rc;
use std::time::Duration;

use meshward_core::policy::{Algorithm, FailureMode, HeaderStyle, RequestAttrs};
use meshward_core::ratelimit::headers::{self, QuotaBody};
use meshward_core::ratelimit::{
    charges, evaluate, hash64, refund_all, Access, Charge, Limiter, Outcome, PerRule, Plan,
    PlannedRule, Record, RuleState,
};
use meshward_kit::filter::{Action, RootContext, StreamContext};
use meshward_kit::metrics::{Counter, Counters};
use meshward_kit::reply::{Kept, Pairs};
use meshward_kit::request::{peer_address, RequestView};
use meshward_kit::store::SharedStore;
use meshward_kit::{abi, config, filter, level, reply, time};

use cache::OverLimitCache;
use last_reply::LastReply;
use queue::{DelayQueue, Due, Held};

/// Small blocks from free lists: the request path allocates the same few sizes every time.
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOC: meshward_kit::alloc::CachingAlloc = meshward_kit::alloc::CachingAlloc::new();

// The decision is made on the request headers and its fields are added to the response
// headers; bodies, trailers and the access-log pass are never looked at, so those callbacks
// are not exported (Envoy then calls nothing for them: no VM entry per body chunk).
meshward_kit::filter!(
    Root,
    meshward_kit::filter::LevelFilter::Debug,
    [request_headers, response_headers]
);

thread_local! {
    /// The plan every request of this worker is planned into, so its rule vector and slot
    /// keys are allocated once (a VM runs one callback at a time; a request that waits for
    /// the global service takes it along, and the next request starts a new one).
    static PLAN: Cell<Option<Plan>> = const { Cell::new(None) };
}

const FILTER: &str = "ratelimit";
const LOCK_KEY: &str = "mwrl\u{1f}lock";

/// Per-worker state shared by the root context and the HTTP contexts of one VM.
struct Shared {
    limiter: Limiter,
    store: RefCell<SharedStore>,
    counters: RefCell<Counters>,
    /// Counters by route index, rule index and [`Out`], named at configure time.
    rule_counters: Vec<Vec<[Counter; OUTCOMES]>>,
    /// The 429 body by route index and rule index, built at configure time (a request only
    /// writes its `Retry-After` seconds into it).
    bodies: Vec<Vec<QuotaBody>>,
    denied: Counter,
    bypassed: Counter,
    /// Paced requests with what they were charged (given back if they never go upstream).
    queue: RefCell<DelayQueue<Vec<Charge>>>,
    cache: RefCell<OverLimitCache>,
    /// The last 429 built, sent again while it is the same (see `last_reply`).
    last_reply: RefCell<LastReply>,
}

impl Shared {
    /// Gives back what a request that will not reach upstream was charged.
    fn refund(&self, charged: &[Charge], now: u64) {
        let retries = self.limiter.settings().shared.cas_retries;
        refund_all(&mut *self.store.borrow_mut(), charged, now, retries);
    }

    /// Counts `outcome` for `rule` of the plan's route (by index, precomputed); a request
    /// without a rule is counted under `fallback`'s name.
    fn count(&self, plan: &Plan, rule: Option<&PlannedRule>, fallback: &str, outcome: Out) {
        let found = rule.and_then(|r| {
            self.rule_counters
                .get(plan.route.0)?
                .get(r.index)?
                .get(outcome as usize)
        });
        match found {
            Some(c) => c.add(1),
            None => {
                let (route, rule) = (&plan.route.1, rule.map_or(fallback, |r| &*r.name));
                let name = format!("meshward_ratelimit.{route}.{rule}.{}", outcome.name());
                self.counters.borrow_mut().add(&name, 1);
            }
        }
    }
}

/// A counted outcome of one rule.
#[derive(Debug, Clone, Copy)]
enum Out {
    Allowed,
    Limited,
    Delayed,
    CasExhausted,
    ShadowLimited,
    RlsError,
}

const OUTCOMES: usize = 6;

impl Out {
    const ALL: [Out; OUTCOMES] = [
        Out::Allowed,
        Out::Limited,
        Out::Delayed,
        Out::CasExhausted,
        Out::ShadowLimited,
        Out::RlsError,
    ];

    fn name(self) -> &'static str {
        match self {
            Out::Allowed => "allowed",
            Out::Limited => "limited",
            Out::Delayed => "delayed",
            Out::CasExhausted => "cas_exhausted",
            Out::ShadowLimited => "shadow_limited",
            Out::RlsError => "rls_error",
        }
    }
}

/// One value per rule, by route index and rule index (built once, at configure time).
fn per_rule<T>(limiter: &Limiter, mut make: impl FnMut(&str, &str) -> T) -> Vec<Vec<T>> {
    limiter
        .policy()
        .routes
        .iter()
        .map(|route| {
            route.ratelimit.as_ref().map_or_else(Vec::new, |rl| {
                rl.rules
                    .iter()
                    .map(|rule| make(&route.name, &rule.name))
                    .collect()
            })
        })
        .collect()
}

/// Every rule's 429 body.
fn quota_bodies(limiter: &Limiter) -> Vec<Vec<QuotaBody>> {
    let status = limiter.settings().response.status;
    per_rule(limiter, |route, rule| QuotaBody::new(status, route, rule))
}

/// Every rule's counters, named.
fn rule_counters(limiter: &Limiter) -> Vec<Vec<[Counter; OUTCOMES]>> {
    per_rule(limiter, |route, rule| {
        Out::ALL.map(|o| Counter::new(format!("meshward_ratelimit.{route}.{rule}.{}", o.name())))
    })
}

#[derive(Default)]
struct Root {
    shared: Option<Rc<Shared>>,
}

impl RootContext for Root {
    type Stream = Request;

    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(policy) = config::load(FILTER, config::plugin_configuration()) else {
            return false;
        };
        let limiter = Limiter::new(policy);
        let rule_counters = rule_counters(&limiter);
        let bodies = quota_bodies(&limiter);
        // The few settings needed once `limiter` has moved (a clone of all of them costs
        // ~1.4 KB of module).
        let s = limiter.settings();
        let (max_len, tick) = (s.queue.max_len as usize, s.queue.tick);
        let cache_cap = s.global.as_ref().map_or(0, |g| g.cache_entries as usize);
        let store = SharedStore::new(LOCK_KEY, s.shared.cas_retries);
        store.init();
        let pacing = limiter.policy().routes.iter().any(|r| {
            r.ratelimit.as_ref().is_some_and(|rl| {
                rl.rules
                    .iter()
                    .any(|x| x.algorithm == Algorithm::LeakyBucket)
            })
        });
        self.shared = Some(Rc::new(Shared {
            limiter,
            store: RefCell::new(store),
            counters: RefCell::new(Counters::default()),
            rule_counters,
            bodies,
            denied: Counter::new("meshward_ratelimit.denied".to_string()),
            bypassed: Counter::new("meshward_ratelimit.bypassed".to_string()),
            queue: RefCell::new(DelayQueue::new(max_len)),
            cache: RefCell::new(OverLimitCache::new(cache_cap)),
            last_reply: RefCell::new(LastReply::default()),
        }));
        if pacing {
            let ms = u32::try_from(tick.as_std().as_millis()).unwrap_or(u32::MAX);
            if let Err(e) = abi::set_tick_period_ms(ms) {
                log::warn!("ratelimit: the host refused a tick period of {ms} ms: {e:?}");
            }
        }
        true
    }

    fn on_tick(&mut self) {
        let Some(shared) = &self.shared else { return };
        let now = time::now_nanos();
        let due = shared.queue.borrow_mut().due(now);
        for d in due {
            match d {
                Due::Release(id) => {
                    if !reply::resume_request(id) {
                        log::debug!("ratelimit: held request {id} is gone");
                    }
                }
                Due::Expire(id, charged) => {
                    shared.refund(&charged, now);
                    let r = &shared.limiter.settings().response;
                    let body = headers::problem_body(
                        r.status,
                        "Too Many Requests",
                        "the request could not be paced within its deadline",
                    );
                    let _ = reply::reply_to(
                        id,
                        r.status,
                        &[
                            ("content-type", "application/problem+json"),
                            ("retry-after", "1"),
                        ],
                        body.as_bytes(),
                    );
                }
            }
        }
    }

    fn create_stream(&mut self, context_id: u32) -> Option<Request> {
        let shared = self.shared.clone()?;
        Some(Request {
            id: context_id,
            shared,
            response_headers: Kept::default(),
            replied: false,
            pending: None,
            debug: false,
            paced: false,
        })
    }
}

/// A global call in flight.
struct Pending {
    plan: Plan,
    charged: Vec<Charge>,
    delay_ns: u64,
    request_id: String,
    failure: FailureMode,
    keys: Vec<u64>,
}

struct Request {
    id: u32,
    shared: Rc<Shared>,
    /// Fields for the response, written when the request was allowed.
    response_headers: Kept,
    replied: bool,
    pending: Option<Pending>,
    /// The host keeps debug lines (asked once per request): otherwise none is formatted.
    debug: bool,
    /// Was held in the pacing queue (only then can the queue still hold it when it ends).
    paced: bool,
}

impl Request {
    fn style(&self) -> HeaderStyle {
        self.shared.limiter.settings().response.headers
    }

    /// Answers 429 for `rule` of the plan's route (`fallback` names it when there is none)
    /// with `Retry-After`, the response fields of the local rules with `states` (none when
    /// empty) and the problem+json body; the header map and body are written in their wire
    /// form at once.
    fn reject(
        &mut self,
        plan: &Plan,
        rule: Option<&PlannedRule>,
        fallback: &str,
        retry_after_ns: u64,
        states: &[RuleState],
    ) {
        let shared = Rc::clone(&self.shared);
        let r = &shared.limiter.settings().response;
        let retry = headers::retry_after_secs(retry_after_ns);
        let route = plan.route.0;
        // (`try_borrow_mut`: the reply is sent while the record is borrowed, and nothing on
        // this path may panic even if a host called back into the filter meanwhile.)
        if let (Some(hit), Ok(mut last)) = (rule, shared.last_reply.try_borrow_mut()) {
            if let Some((pairs, body)) =
                last.get(route, hit.index, &plan.policy_field, retry, states)
            {
                self.replied = reply::send_pairs(r.status, pairs, body);
                return;
            }
        }
        let fields = plan.response_field_count(r.headers, states);
        let mut pairs = Pairs::new(
            fields + 3,
            160 + plan.policy_field.len() + 40 * states.len(),
        );
        shared
            .limiter
            .put_response_fields(plan, r.headers, states, &mut pairs);
        pairs.add_with("retry-after", &mut |b| headers::put_u64(b, retry));
        pairs.add("x-envoy-ratelimited", b"true");
        let mut body = Vec::new();
        let built = rule.and_then(|x| Some((x.index, shared.bodies.get(route)?.get(x.index)?)));
        if r.problem_json {
            pairs.add("content-type", b"application/problem+json");
            match built {
                Some((_, q)) => {
                    body.reserve_exact(q.max_len());
                    q.put(retry, &mut body);
                }
                None => {
                    let name = rule.map_or(fallback, |x| &*x.name);
                    QuotaBody::new(r.status, &plan.route.1, name).put(retry, &mut body);
                }
            }
        }
        self.replied = reply::send_pairs(r.status, &mut pairs, &body);
        // Kept for the next refusal with the same inputs (a rule's own reply only).
        if let Some((index, _)) = built {
            let last = shared.last_reply.try_borrow_mut();
            if let Ok(mut last) = last {
                last.keep(
                    (route, index),
                    &plan.policy_field,
                    retry,
                    states,
                    (pairs, body),
                );
            }
        }
    }

    fn refuse(&mut self, status: u16, title: &str, detail: &str) {
        let body = headers::problem_body(status, title, detail);
        self.replied = reply::send(
            status,
            &[("content-type", "application/problem+json")],
            body.as_bytes(),
        );
    }

    /// The decision's debug line, when the host keeps debug lines (checked here, inlined, so
    /// that a request whose line is dropped passes no arguments anywhere).
    #[inline(always)]
    fn log(&self, rid: &str, route: &str, rule: &str, outcome: &str, extra: impl Display) {
        if self.debug {
            Self::log_line(rid, route, rule, outcome, &extra);
        }
    }

    #[inline(never)]
    #[cold]
    fn log_line(rid: &str, route: &str, rule: &str, outcome: &str, extra: &dyn Display) {
        log::debug!(
            "ratelimit x-request-id={rid} route={route} rule={rule} outcome={outcome}{extra}"
        );
    }

    /// After every enforcing rule passed: pace or forward.
    fn admit(&mut self, plan: &Plan, charged: Vec<Charge>, delay_ns: u64, rid: &str) -> Action {
        let route: &str = &plan.route.1;
        if delay_ns > 0 {
            let now = time::now_nanos();
            let tick = self.shared.limiter.settings().queue.tick.as_nanos();
            let held = Held {
                context_id: self.id,
                release_at: now.saturating_add(delay_ns),
                deadline: now
                    .saturating_add(delay_ns)
                    .saturating_add(tick.saturating_mul(2)),
                payload: charged,
            };
            let pushed = self.shared.queue.borrow_mut().push(held);
            let Err(refused) = pushed else {
                self.paced = true;
                for r in plan.local() {
                    self.shared.count(plan, Some(r), "", Out::Delayed);
                }
                self.log(
                    rid,
                    route,
                    "*",
                    "delayed",
                    format_args!(" delay_ms={}", delay_ns / 1_000_000),
                );
                return Action::Pause;
            };
            // Queue full: nothing may be charged for a refused request.
            self.shared.refund(&refused.payload, now);
            let first = plan.local().first();
            self.shared.count(plan, first, "queue", Out::Limited);
            let rule = first.map_or("queue", |r| &*r.name);
            self.log(rid, route, rule, "limited", " reason=queue-full");
            self.response_headers = Kept::default();
            self.reject(plan, first, "queue", delay_ns, &[]);
            return Action::Pause;
        }
        for r in plan.local() {
            self.shared.count(plan, Some(r), "", Out::Allowed);
        }
        self.log(rid, route, "*", "allowed", "");
        Action::Continue
    }

    fn on_global_answer(&mut self, status: u32, body: Option<Vec<u8>>) -> Action {
        let Some(p) = self.pending.take() else {
            return Action::Continue;
        };
        let now = time::now_nanos();
        let route = p.plan.route.1.clone();
        let decoded = (status == 0)
            .then_some(body)
            .flatten()
            .and_then(|b| <rls::RateLimitResponse as prost::Message>::decode(b.as_slice()).ok());
        let Some(resp) = decoded else {
            for r in p.plan.global() {
                self.shared.count(&p.plan, Some(r), "", Out::RlsError);
            }
            self.log(
                &p.request_id,
                &route,
                "*",
                "rls_error",
                format_args!(" grpc_status={status}"),
            );
            if p.failure == FailureMode::Deny {
                self.shared.refund(&p.charged, now);
                self.refuse(
                    500,
                    "Rate limit service unavailable",
                    "the global rate limit could not be checked",
                );
                return Action::Pause;
            }
            return self.admit(&p.plan, p.charged, p.delay_ns, &p.request_id);
        };
        if resp.overall_code == rls::code::OVER_LIMIT {
            let globals = p.plan.global();
            let mut retry = 0u64;
            let mut hit = globals.first();
            for (i, st) in resp.statuses.iter().enumerate() {
                if st.code == rls::code::OVER_LIMIT {
                    let reset = st.duration_until_reset.as_ref().map_or(0, |d| d.as_nanos());
                    if let (Some(k), true) = (p.keys.get(i), reset > 0) {
                        self.shared
                            .cache
                            .borrow_mut()
                            .insert(*k, now.saturating_add(reset), now);
                    }
                    retry = retry.max(reset);
                    if let Some(g) = globals.get(i) {
                        hit = Some(g);
                    }
                }
            }
            let rule = hit.map_or("", |r| &*r.name);
            self.shared.refund(&p.charged, now);
            self.shared.count(&p.plan, hit, "", Out::Limited);
            self.log(&p.request_id, &route, rule, "limited", " source=rls");
            self.reject(&p.plan, hit, "", retry, &[]);
            return Action::Pause;
        }
        for r in p.plan.global() {
            self.shared.count(&p.plan, Some(r), "", Out::Allowed);
        }
        self.admit(&p.plan, p.charged, p.delay_ns, &p.request_id)
    }

    /// Decides the request's fate in the worker's plan buffers ([`PLAN`]).
    fn decide(&mut self) -> Action {
        let mut plan = PLAN.take().unwrap_or_default();
        let action = self.decide_in(&mut plan);
        PLAN.set(Some(plan));
        action
    }

    /// Plans into `reused` (a global call takes it along) and decides.
    fn decide_in(&mut self, reused: &mut Plan) -> Action {
        let shared = Rc::clone(&self.shared);
        let limiter = &shared.limiter;
        let settings = limiter.settings();
        let now = time::now_nanos();
        // Asked of the host at most once a second per worker (see `level`), by the clock just
        // read: a request makes no host call for it.
        self.debug = level::debug_enabled_at(now);
        let req = RequestView::new(limiter.header_names());
        // The request id only ever appears in debug lines: it is not read when the host drops
        // them (a paced or global request keeps the empty id for its later lines).
        // Borrowed from `rid_text` when read: a request whose debug lines are dropped has no
        // string to drop.
        let rid_text;
        let rid: &str = if self.debug {
            rid_text = req.request_id().to_string();
            &rid_text
        } else {
            ""
        };
        let xff = if limiter.reads_xff() {
            req.header("x-forwarded-for")
        } else {
            None
        };
        let client = limiter.client_ip(peer_address(), xff);
        match limiter.access(client) {
            Access::Deny => {
                shared.denied.add(1);
                self.log(rid, "-", "-", "denied", "");
                self.refuse(403, "Forbidden", "the client address is on the deny list");
                return Action::Pause;
            }
            Access::Bypass => {
                shared.bypassed.add(1);
                self.log(rid, "-", "-", "bypassed", "");
                return Action::Continue;
            }
            Access::Limit => {}
        }
        if !limiter.plan_into(&req, client, reused) {
            return Action::Continue;
        }
        let plan: &Plan = reused;
        let route: &str = &plan.route.1;
        let retries = settings.shared.cas_retries;
        let outcome = evaluate(&mut *shared.store.borrow_mut(), plan.local(), now, retries);
        let (delay_ns, taken) = match outcome {
            Outcome::Reject {
                rule,
                retry_after_ns,
                states,
            } => {
                let hit = plan.local().get(rule);
                let name = hit.map_or("", |r| &*r.name);
                shared.count(plan, hit, "", Out::Limited);
                self.log(
                    rid,
                    route,
                    name,
                    "limited",
                    format_args!(" retry_after_ms={}", retry_after_ns / 1_000_000),
                );
                self.reject(plan, hit, "", retry_after_ns, &states);
                return Action::Pause;
            }
            Outcome::Exhausted { rule, error } => {
                let hit = plan.local().get(rule);
                let name = hit.map_or("", |r| &*r.name);
                shared.count(plan, hit, "", Out::CasExhausted);
                match error {
                    Some(e) => self.log(
                        rid,
                        route,
                        name,
                        "cas_exhausted",
                        format_args!(" error={e}"),
                    ),
                    None => self.log(rid, route, name, "cas_exhausted", ""),
                }
                if settings.shared.on_cas_exhausted == FailureMode::Deny {
                    self.reject(plan, hit, "", 1_000_000_000, &[]);
                    return Action::Pause;
                }
                (0, PerRule::default())
            }
            Outcome::Allow {
                delay_ns,
                states,
                taken,
            } => {
                if settings.response.on_allowed {
                    // The `RateLimit` value is about as long as `RateLimit-Policy`; the
                    // legacy fields add a few numbers.
                    self.response_headers
                        .start(2 * plan.policy_field.len() + 64);
                    limiter.put_response_fields(
                        plan,
                        self.style(),
                        &states,
                        &mut self.response_headers,
                    );
                }
                (delay_ns, taken)
            }
        };
        // The usual request (local rules only, not paced) is counted and forwarded here:
        // nothing to keep, mark or ask.
        if delay_ns == 0 && plan.shadow().is_empty() && plan.global().is_empty() {
            for r in plan.local() {
                shared.count(plan, Some(r), "", Out::Allowed);
            }
            self.log(rid, route, "*", "allowed", "");
            return Action::Continue;
        }
        self.decide_rest(reused, taken, delay_ns, rid.to_string(), now)
    }

    /// The rest of [`Request::decide_in`] once the enforcing local rules admitted a request
    /// that is paced, or has shadow or global rules (`taken`: what the local rules were
    /// charged).
    #[inline(never)]
    fn decide_rest(
        &mut self,
        reused: &mut Plan,
        taken: PerRule<Record>,
        delay_ns: u64,
        rid: String,
        now: u64,
    ) -> Action {
        let shared = Rc::clone(&self.shared);
        let limiter = &shared.limiter;
        let settings = limiter.settings();
        let retries = settings.shared.cas_retries;
        let plan: &Plan = reused;
        let route: &str = &plan.route.1;
        // What was charged is kept only where it may have to be given back: a paced request
        // or one that still waits for the global service.
        let charged = if delay_ns > 0 || !plan.global().is_empty() {
            charges(
                plan.local().iter().map(|r| r.check.clone()).collect(),
                taken,
            )
        } else {
            Vec::new()
        };
        // Shadow rules: charged when they admit, counted and marked when they would not.
        // Names of the shadow rules that would have refused, comma-separated.
        let mut shadowed = String::new();
        for r in plan.shadow() {
            match evaluate(
                &mut *shared.store.borrow_mut(),
                std::slice::from_ref(r),
                now,
                retries,
            ) {
                Outcome::Reject { .. } => {
                    shared.count(plan, Some(r), "", Out::ShadowLimited);
                    self.log(&rid, route, &r.name, "shadow_limited", "");
                    if !shadowed.is_empty() {
                        shadowed.push(',');
                    }
                    shadowed.push_str(&r.name);
                }
                Outcome::Exhausted { .. } => shared.count(plan, Some(r), "", Out::CasExhausted),
                Outcome::Allow { .. } => shared.count(plan, Some(r), "", Out::Allowed),
            }
        }
        if !shadowed.is_empty() {
            let name = settings.response.shadow_header.as_bytes();
            if let Err(e) =
                abi::replace_header(abi::map::REQUEST_HEADERS, name, shadowed.as_bytes())
            {
                log::debug!("ratelimit: the host refused the shadow header: {e:?}");
            }
        }
        // Global rules: one call for all of them.
        let globals = plan.global();
        if let (false, Some(g)) = (globals.is_empty(), settings.global.as_ref()) {
            let keys: Vec<u64> = globals
                .iter()
                .map(|r| {
                    let d = r.descriptor.as_deref().unwrap_or(&[]);
                    let flat: Vec<&[u8]> = d
                        .iter()
                        .flat_map(|(k, v)| [k.as_bytes(), v.as_bytes()])
                        .collect();
                    hash64(&flat)
                })
                .collect();
            let cached = keys
                .iter()
                .zip(globals)
                .find_map(|(k, r)| shared.cache.borrow().over(*k, now).map(|left| (left, r)));
            if let Some((left, hit)) = cached {
                shared.refund(&charged, now);
                shared.count(plan, Some(hit), "", Out::Limited);
                self.log(&rid, route, &hit.name, "limited", " source=cache");
                self.reject(plan, Some(hit), "", left, &[]);
                return Action::Pause;
            }
            let failure = if globals
                .iter()
                .filter_map(|r| {
                    limiter
                        .policy()
                        .routes
                        .get(plan.route.0)?
                        .ratelimit
                        .as_ref()?
                        .rules
                        .get(r.index)
                })
                .any(|rule| rule.failure_mode.unwrap_or(g.failure_mode) == FailureMode::Deny)
            {
                FailureMode::Deny
            } else {
                FailureMode::Allow
            };
            let msg = rls::RateLimitRequest {
                domain: g.domain.clone(),
                descriptors: globals
                    .iter()
                    .map(|r| rls::RateLimitDescriptor {
                        entries: r
                            .descriptor
                            .as_deref()
                            .unwrap_or(&[])
                            .iter()
                            .map(|(k, v)| rls::Entry {
                                key: k.clone(),
                                value: v.clone(),
                            })
                            .collect(),
                        hits_addend: (r.check.cost != 1).then_some(rls::UInt64Value {
                            value: r.check.cost,
                        }),
                    })
                    .collect(),
                hits_addend: 1,
            };
            let bytes = prost::Message::encode_to_vec(&msg);
            let timeout = Duration::from_nanos(g.timeout.as_nanos()).as_millis();
            let timeout_ms = u32::try_from(timeout).unwrap_or(u32::MAX);
            match filter::grpc_call(
                self.id,
                &g.cluster,
                rls::SERVICE,
                rls::METHOD,
                &bytes,
                timeout_ms,
            ) {
                Ok(_) => {
                    self.pending = Some(Pending {
                        plan: std::mem::take(reused),
                        charged,
                        delay_ns,
                        request_id: rid,
                        failure,
                        keys,
                    });
                    return Action::Pause;
                }
                Err(status) => {
                    self.pending = Some(Pending {
                        plan: std::mem::take(reused),
                        charged,
                        delay_ns,
                        request_id: rid,
                        failure,
                        keys,
                    });
                    log::warn!(
                        "ratelimit: cannot call the rate limit service on {}: {status:?}",
                        g.cluster
                    );
                    return self.on_global_answer(u32::MAX, None);
                }
            }
        }
        self.admit(plan, charged, delay_ns, &rid)
    }
}

impl StreamContext for Request {
    fn on_request_headers(&mut self, _n: usize, _end: bool) -> Action {
        self.decide()
    }

    fn on_response_headers(&mut self, _n: usize, _end: bool) -> Action {
        if !self.replied {
            self.response_headers.add_to_response();
        }
        Action::Continue
    }

    fn on_grpc_call_response(&mut self, _token: u32, status: u32, size: usize) {
        let body = abi::buffer(abi::buffer::GRPC_RECEIVE, 0, size)
            .ok()
            .flatten();
        if let Action::Continue = self.on_global_answer(status, body) {
            if !reply::resume_request(self.id) {
                log::debug!(
                    "ratelimit: stream {} ended while the global limit was checked",
                    self.id
                );
            }
        }
    }

    fn on_done(&mut self) -> bool {
        // The stream ended while paced or while the global service was asked: it never went
        // upstream, so what it was charged is given back.
        let held = if self.paced {
            self.shared.queue.borrow_mut().remove(self.id)
        } else {
            None
        };
        if let Some(charged) = held.or_else(|| self.pending.take().map(|p| p.charged)) {
            self.shared.refund(&charged, time::now_nanos());
            log::debug!(
                "ratelimit: stream {} ended before it was forwarded",
                self.id
            );
        }
        true
    }
}
