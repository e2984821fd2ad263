//! The algorithms against reference models on virtual time (proptest), and the engine's
//! check-then-commit and CAS behaviour.

use meshward_core::ratelimit::{
    decide, evaluate, Check, MemoryStore, Outcome, Params, Record, Store, StoreError, Verdict,
};
use proptest::prelude::*;

const MS: u64 = 1_000_000;
const S: u64 = 1_000 * MS;
const T0: u64 = 1_700_000_000 * S;

fn run(p: &Params, times: &[(u64, u64)]) -> Vec<Option<u64>> {
    let mut rec = None;
    times
        .iter()
        .map(|&(now, cost)| match decide(p, rec, now, cost) {
            Verdict::Allow { next, delay_ns, .. } => {
                rec = Some(next);
                Some(delay_ns)
            }
            Verdict::Reject { .. } => None,
        })
        .collect()
}

fn timeline(gaps: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut now = T0;
    gaps.iter()
        .map(|&(g, c)| {
            now += g;
            (now, c)
        })
        .collect()
}

proptest! {
    // GCRA == a token bucket counted in nanoseconds of credit (capacity burst·t, refill 1/ns).
    #[test]
    fn gcra_matches_token_bucket(t in 1u64..50*MS, burst in 1u64..20,
                                 gaps in prop::collection::vec((0u64..100*MS, 1u64..4), 1..200)) {
        let p = Params::TokenBucket { t, burst };
        let tl = timeline(&gaps);
        let got = run(&p, &tl);
        let cap = burst * t;
        let mut credit = cap;
        let mut last = T0;
        for (i, &(now, cost)) in tl.iter().enumerate() {
            credit = (credit + (now - last)).min(cap);
            last = now;
            let want = credit >= cost * t;
            if want { credit -= cost * t; }
            prop_assert_eq!(got[i].is_some(), want, "request {} at +{}ns", i, now - T0);
        }
    }

    // Never more than burst + elapsed/t units in any interval; a steady client under the rate
    // is never refused.
    #[test]
    fn gcra_bounds(t in 1u64..10*MS, burst in 1u64..10,
                   gaps in prop::collection::vec(0u64..20*MS, 1..300)) {
        let p = Params::TokenBucket { t, burst };
        let tl = timeline(&gaps.iter().map(|g| (*g, 1)).collect::<Vec<_>>());
        let got = run(&p, &tl);
        let admitted: Vec<u64> = tl.iter().zip(&got).filter(|(_, g)| g.is_some()).map(|(x, _)| x.0).collect();
        for i in 0..admitted.len() {
            for j in i..admitted.len() {
                let n = (j - i + 1) as u64;
                prop_assert!(n <= burst + (admitted[j] - admitted[i]) / t, "{} admitted in {}ns", n, admitted[j] - admitted[i]);
            }
        }
        let steady = timeline(&vec![(t, 1); 100]);
        prop_assert!(run(&p, &steady).iter().all(|g| g.is_some()));
    }

    // Fixed window == counting per aligned window.
    #[test]
    fn fixed_window_matches_reference(count in 1u64..20, window in 1u64..5000,
                                      gaps in prop::collection::vec((0u64..700*MS, 1u64..3), 1..200)) {
        let window = window * MS;
        let p = Params::FixedWindow { count, window };
        let tl = timeline(&gaps);
        let got = run(&p, &tl);
        let mut used = std::collections::HashMap::new();
        for (i, &(now, cost)) in tl.iter().enumerate() {
            let u = used.entry(now / window).or_insert(0u64);
            let want = *u + cost <= count;
            if want { *u += cost; }
            prop_assert_eq!(got[i].is_some(), want);
        }
    }

    // Sliding window: <= count per aligned window, < 2·count in any window of its length,
    // and matches the counter formula evaluated with exact rationals.
    #[test]
    fn sliding_window_bounds(count in 1u64..30, window in 100u64..3000,
                             gaps in prop::collection::vec(0u64..200*MS, 1..300)) {
        let window = window * MS;
        let p = Params::SlidingWindow { count, window };
        let tl = timeline(&gaps.iter().map(|g| (*g, 1)).collect::<Vec<_>>());
        let got = run(&p, &tl);
        let admitted: Vec<u64> = tl.iter().zip(&got).filter(|(_, g)| g.is_some()).map(|(x, _)| x.0).collect();
        let mut per = std::collections::HashMap::new();
        for a in &admitted { *per.entry(a / window).or_insert(0u64) += 1; }
        prop_assert!(per.values().all(|n| *n <= count));
        for (i, a) in admitted.iter().enumerate() {
            let n = admitted[i..].iter().take_while(|b| **b < a + window).count() as u64;
            prop_assert!(n < 2 * count, "{} in one sliding window (count {})", n, count);
        }
        // Reference: same estimate with u128 rationals.
        let (mut idx, mut curr, mut prev) = (0u64, 0u64, 0u64);
        for (i, &(now, _)) in tl.iter().enumerate() {
            let k = now / window;
            if k != idx { prev = if k == idx + 1 { curr } else { 0 }; curr = 0; idx = k; }
            let left = window - (now - k * window);
            let want = (prev as u128) * (left as u128) + (curr as u128 + 1) * (window as u128) <= (count as u128) * (window as u128);
            if want { curr += 1; }
            prop_assert_eq!(got[i].is_some(), want);
        }
    }
}

#[test]
fn sliding_window_admits_steady_traffic_under_the_limit() {
    // At most count-1 per window, evenly spread: the estimate never exceeds the count.
    let p = Params::SlidingWindow {
        count: 10,
        window: S,
    };
    let tl = timeline(&vec![(112 * MS, 1); 200]);
    assert!(run(&p, &tl).iter().all(|g| g.is_some()));
}

#[test]
fn window_boundaries() {
    let p = Params::FixedWindow {
        count: 2,
        window: S,
    };
    let start = (T0 / S + 1) * S; // a boundary
    let tl = [
        (start - 1, 1),
        (start - 1, 1),
        (start - 1, 1),
        (start, 1),
        (start, 1),
        (start, 1),
    ];
    let got: Vec<bool> = run(&p, &tl).iter().map(Option::is_some).collect();
    assert_eq!(got, [true, true, false, true, true, false]);
}

#[test]
fn leaky_bucket_paces_then_rejects() {
    // 10/s, 3 may wait: 0, 100, 200, 300 ms, the fifth is refused.
    let p = Params::LeakyBucket {
        t: 100 * MS,
        burst: 3,
        delay_after: 0,
        max_delay: u64::MAX,
    };
    let got = run(&p, &[(T0, 1); 5]);
    assert_eq!(
        got,
        [
            Some(0),
            Some(100 * MS),
            Some(200 * MS),
            Some(300 * MS),
            None
        ]
    );
    // A deadline of 150ms refuses the third instead.
    let p = Params::LeakyBucket {
        t: 100 * MS,
        burst: 3,
        delay_after: 0,
        max_delay: 150 * MS,
    };
    assert_eq!(run(&p, &[(T0, 1); 3]), [Some(0), Some(100 * MS), None]);
    // nginx `delay=1`: the first excess request goes at once.
    let p = Params::LeakyBucket {
        t: 100 * MS,
        burst: 3,
        delay_after: 1,
        max_delay: u64::MAX,
    };
    assert_eq!(
        run(&p, &[(T0, 1); 4]),
        [Some(0), Some(0), Some(100 * MS), Some(200 * MS)]
    );
    // After the queue drains the bucket is empty again.
    let p = Params::LeakyBucket {
        t: 100 * MS,
        burst: 1,
        delay_after: 0,
        max_delay: u64::MAX,
    };
    assert_eq!(
        run(&p, &[(T0, 1), (T0, 1), (T0 + 200 * MS, 1)]),
        [Some(0), Some(100 * MS), Some(0)]
    );
}

fn check(slot: &str, burst: u64) -> Check {
    Check {
        slot: slot.as_bytes().to_vec(),
        params: Params::TokenBucket { t: S, burst },
        cost: 1,
    }
}

#[test]
fn rejected_request_consumes_nothing() {
    let mut store = MemoryStore::new();
    let rules = [check("wide", 10), check("narrow", 2)];
    for _ in 0..2 {
        assert!(matches!(
            evaluate(&mut store, &rules, T0, 8),
            Outcome::Allow { .. }
        ));
    }
    for _ in 0..5 {
        match evaluate(&mut store, &rules, T0, 8) {
            Outcome::Reject {
                rule,
                retry_after_ns,
                ..
            } => {
                assert_eq!(rule, 1);
                assert_eq!(retry_after_ns, S);
            }
            o => panic!("{o:?}"),
        }
    }
    // `wide` was charged only for the two admitted requests.
    match evaluate(&mut store, &rules[..1], T0, 8) {
        Outcome::Allow { states, .. } => assert_eq!(states[0].remaining, 7),
        o => panic!("{o:?}"),
    }
}

/// A store where every replace loses the race `lose` times in a row.
struct Contended {
    inner: MemoryStore,
    lose: u32,
    lost: u32,
}

impl Store for Contended {
    fn load(&mut self, key: &[u8]) -> Result<Option<(Record, u32)>, StoreError> {
        self.inner.load(key)
    }
    fn create(&mut self, key: &[u8], rec: Record) -> Result<(), StoreError> {
        self.inner.create(key, rec)
    }
    fn replace(&mut self, key: &[u8], rec: Record, version: u32) -> Result<bool, StoreError> {
        if self.lost < self.lose {
            self.lost += 1;
            return Ok(false);
        }
        self.lost = 0;
        self.inner.replace(key, rec, version)
    }
}

#[test]
fn cas_retries_are_bounded_and_refund() {
    let rules = [check("a", 5), check("b", 5)];
    let mut s = Contended {
        inner: MemoryStore::new(),
        lose: 3,
        lost: 0,
    };
    assert!(matches!(
        evaluate(&mut s, &rules, T0, 4),
        Outcome::Allow { .. }
    ));
    let mut s = Contended {
        inner: MemoryStore::new(),
        lose: 4,
        lost: 0,
    };
    match evaluate(&mut s, &rules, T0, 4) {
        Outcome::Exhausted {
            rule: 0,
            error: None,
        } => {}
        o => panic!("{o:?}"),
    }
    s.lose = 0;
    match evaluate(&mut s, &rules, T0, 4) {
        Outcome::Allow { states, .. } => {
            assert_eq!(states[0].remaining, 4, "nothing charged before")
        }
        o => panic!("{o:?}"),
    }
}
