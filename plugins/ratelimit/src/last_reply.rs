//! The last 429 a worker built, kept whole (its serialized header map and its body) and sent
//! again while a refused request's reply would be the same byte for byte: a client hammering
//! a limit, or many clients refused by one rule within the same second, cost one host call
//! each instead of formatting every field and the problem+json body again.
//!
//! A reply depends on the configuration (fixed for a worker's limiter) and on: the route, the
//! rule that refused, the tier (through the route's `RateLimit-Policy` value, one shared
//! string per route and tier), the `Retry-After` seconds, and each local rule's remaining
//! units and reset seconds. Those are the key; nothing else goes into a 429. Must not know how
//! the reply is written.

use std::sync::Arc;

use meshward_core::ratelimit::headers::ceil_secs;
use meshward_core::ratelimit::RuleState;
use meshward_kit::reply::Pairs;

/// Local rules a kept reply may have numbers for (more: not kept).
const MAX_RULES: usize = 4;

/// What a 429 depends on besides the configuration.
#[derive(Debug)]
struct Key {
    route: usize,
    rule: usize,
    policy: Arc<str>,
    retry_secs: u64,
    /// Per local rule: remaining units and reset seconds, as the fields print them.
    numbers: [(u64, u64); MAX_RULES],
    len: usize,
}

/// The numbers of `states` as the fields print them; `None` past [`MAX_RULES`].
fn numbers(states: &[RuleState]) -> Option<[(u64, u64); MAX_RULES]> {
    if states.len() > MAX_RULES {
        return None;
    }
    let mut out = [(0, 0); MAX_RULES];
    for (o, s) in out.iter_mut().zip(states) {
        *o = (s.remaining, ceil_secs(s.reset_ns));
    }
    Some(out)
}

/// One worker's last 429.
#[derive(Debug, Default)]
pub struct LastReply {
    kept: Option<(Key, Pairs, Vec<u8>)>,
}

impl LastReply {
    /// The kept reply's header map and body when a 429 for these inputs would be the same.
    pub fn get(
        &mut self,
        route: usize,
        rule: usize,
        policy: &Arc<str>,
        retry_secs: u64,
        states: &[RuleState],
    ) -> Option<(&mut Pairs, &[u8])> {
        let (key, pairs, body) = self.kept.as_mut()?;
        let same = key.route == route
            && key.rule == rule
            && key.retry_secs == retry_secs
            && key.len == states.len()
            && Arc::ptr_eq(&key.policy, policy)
            && numbers(states).is_some_and(|n| n == key.numbers);
        same.then_some((pairs, body.as_slice()))
    }

    /// Keeps a 429 just built for these inputs (replacing the last one).
    pub fn keep(
        &mut self,
        (route, rule): (usize, usize),
        policy: &Arc<str>,
        retry_secs: u64,
        states: &[RuleState],
        reply: (Pairs, Vec<u8>),
    ) {
        let Some(numbers) = numbers(states) else {
            return;
        };
        let key = Key {
            route,
            rule,
            policy: Arc::clone(policy),
            retry_secs,
            numbers,
            len: states.len(),
        };
        self.kept = Some((key, reply.0, reply.1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(remaining: u64, reset_ns: u64) -> RuleState {
        RuleState {
            remaining,
            reset_ns,
        }
    }

    #[test]
    fn a_kept_reply_is_given_only_for_the_same_inputs() {
        let policy: Arc<str> = Arc::from("\"per-client\";q=1;w=3600");
        let other_tier: Arc<str> = Arc::from("\"per-client\";q=1;w=3600");
        let mut last = LastReply::default();
        let states = [st(0, 1_200_000_000)];
        assert!(last.get(0, 0, &policy, 2, &states).is_none());
        let mut pairs = Pairs::new(1, 8);
        pairs.add("retry-after", b"2");
        last.keep((0, 0), &policy, 2, &states, (pairs, b"body".to_vec()));
        // Same seconds, other nanoseconds: the same reply.
        let (_, body) = last
            .get(0, 0, &policy, 2, &[st(0, 1_900_000_000)])
            .expect("kept");
        assert_eq!(body, b"body");
        // Anything the reply shows differs: not given.
        assert!(last.get(1, 0, &policy, 2, &states).is_none(), "route");
        assert!(last.get(0, 1, &policy, 2, &states).is_none(), "rule");
        assert!(last.get(0, 0, &other_tier, 2, &states).is_none(), "tier");
        assert!(last.get(0, 0, &policy, 3, &states).is_none(), "retry");
        assert!(last
            .get(0, 0, &policy, 2, &[st(1, 1_200_000_000)])
            .is_none());
        assert!(last
            .get(0, 0, &policy, 2, &[st(0, 2_100_000_000)])
            .is_none());
        assert!(last.get(0, 0, &policy, 2, &[]).is_none(), "rule count");
        // More rules than kept numbers: never kept.
        let many = [st(0, 1); MAX_RULES + 1];
        last.keep((0, 0), &policy, 2, &many, (Pairs::new(0, 0), Vec::new()));
        assert!(last.get(0, 0, &policy, 2, &many).is_none());
    }
}
