//! Giving back what an admitted request took when it never reaches upstream (paced and given
//! up: its deadline passed or its client left; refused by the global service), on virtual
//! time. The rule: a refund never leaves the slot emptier than if the request had never
//! arrived (no over-admission), and a request that gives up before its turn, with no other
//! refund on the slot meanwhile, is given back whole.

use meshward_core::ratelimit::{
    charges, decide, evaluate, refund, refund_all, Check, MemoryStore, Outcome, Params, Record,
    Verdict,
};
use proptest::prelude::*;

const MS: u64 = 1_000_000;
const S: u64 = 1_000 * MS;
const T0: u64 = 1_700_000_000 * S;

/// One arrival: gap since the previous one, and whether (and when, relative to its arrival)
/// it gives up if it is admitted.
#[derive(Debug, Clone, Copy)]
struct Arrival {
    gap: u64,
    give_up_after: Option<u64>,
}

/// What world A (with give-ups and refunds) did with each arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Refused,
    GaveUp,
    Forwarded { delay_ns: u64 },
}

/// Runs arrivals through one slot; admitted requests marked to give up are refunded at
/// `arrival + give_up_after` (events in time order, refunds before arrivals at the same
/// instant). Returns each arrival's time and fate.
fn world_with_give_ups(p: &Params, arrivals: &[Arrival]) -> Vec<(u64, Fate)> {
    let mut rec: Option<Record> = None;
    let mut now = T0;
    let mut fates = Vec::new();
    // (time, taken) of pending refunds
    let mut pending: Vec<(u64, Record)> = Vec::new();
    for a in arrivals {
        now += a.gap;
        pending.sort_by_key(|x| x.0);
        while let Some(&(at, taken)) = pending.first() {
            if at > now {
                break;
            }
            pending.remove(0);
            rec = rec.map(|r| refund(p, r, at, 1, taken));
        }
        match decide(p, rec, now, 1) {
            Verdict::Allow { next, delay_ns, .. } => {
                rec = Some(next);
                match a.give_up_after {
                    Some(after) => {
                        pending.push((now + after, next));
                        fates.push((now, Fate::GaveUp));
                    }
                    None => fates.push((now, Fate::Forwarded { delay_ns })),
                }
            }
            Verdict::Reject { .. } => fates.push((now, Fate::Refused)),
        }
    }
    fates
}

/// World B: only the requests A forwarded, none of the others ever arrived. Every request A
/// forwarded must pass here too, no later than it did in A.
fn check_no_over_admission(p: &Params, fates: &[(u64, Fate)]) -> Result<(), TestCaseError> {
    let mut rec: Option<Record> = None;
    for (i, &(now, fate)) in fates.iter().enumerate() {
        let Fate::Forwarded { delay_ns } = fate else {
            continue;
        };
        match decide(p, rec, now, 1) {
            Verdict::Allow {
                next, delay_ns: b, ..
            } => {
                prop_assert!(
                    b <= delay_ns,
                    "request {} at +{}ns: forwarded after {}ns with refunds, {}ns without the \
                     requests that gave up",
                    i,
                    now - T0,
                    delay_ns,
                    b
                );
                rec = Some(next);
            }
            Verdict::Reject { .. } => prop_assert!(
                false,
                "request {} at +{}ns was forwarded only thanks to a refund",
                i,
                now - T0
            ),
        }
    }
    Ok(())
}

fn arrivals(max_gap: u64, max_after: u64) -> impl Strategy<Value = Vec<Arrival>> {
    prop::collection::vec(
        (0..max_gap, prop::option::weighted(0.3, 0..max_after))
            .prop_map(|(gap, give_up_after)| Arrival { gap, give_up_after }),
        1..120,
    )
}

proptest! {
    // Pacing: requests wait their turn; some give up at any time (before their turn, or after
    // it when the tick that should have released them came late). The interleavings that
    // would catch a refund computed from the request's original turn are rare: many cases.
    #![proptest_config(ProptestConfig::with_cases(4000))]
    #[test]
    fn paced_give_ups_never_admit_more_or_sooner(
        t in 1u64..50, burst in 0u64..8, delay_after in 0u64..3, max_delay in 0u64..400,
        arr in arrivals(60, 500),
    ) {
        let p = Params::LeakyBucket {
            t: t * MS,
            burst: burst.max(delay_after),
            delay_after,
            max_delay: max_delay * MS,
        };
        let arr: Vec<Arrival> = arr.iter().map(|a| Arrival {
            gap: a.gap * MS,
            give_up_after: a.give_up_after.map(|x| x * MS),
        }).collect();
        let fates = world_with_give_ups(&p, &arr);
        check_no_over_admission(&p, &fates)?;
    }
}

proptest! {
    // Token bucket: an admitted request refused later (by the global service, or because it
    // was paced by another rule and gave up) is refunded at some later time.
    #[test]
    fn late_refunds_never_admit_more(
        t in 1u64..50, burst in 1u64..8,
        arr in arrivals(60, 300),
    ) {
        let p = Params::TokenBucket { t: t * MS, burst };
        let arr: Vec<Arrival> = arr.iter().map(|a| Arrival {
            gap: a.gap * MS,
            give_up_after: a.give_up_after.map(|x| x * MS),
        }).collect();
        let fates = world_with_give_ups(&p, &arr);
        check_no_over_admission(&p, &fates)?;
    }

    // Windows: the count comes back only while the record still counts that window.
    #[test]
    fn window_refunds_never_admit_more(
        count in 1u64..10, window in 50u64..500, sliding in any::<bool>(),
        arr in arrivals(80, 600),
    ) {
        let p = if sliding {
            Params::SlidingWindow { count, window: window * MS }
        } else {
            Params::FixedWindow { count, window: window * MS }
        };
        let arr: Vec<Arrival> = arr.iter().map(|a| Arrival {
            gap: a.gap * MS,
            give_up_after: a.give_up_after.map(|x| x * MS),
        }).collect();
        let fates = world_with_give_ups(&p, &arr);
        check_no_over_admission(&p, &fates)?;
    }

    // A request that gives up before its turn with no other refund meanwhile leaves the slot
    // exactly as if it had never arrived, whoever was admitted after it.
    #[test]
    fn giving_up_before_the_turn_is_as_if_never_arrived(
        t in 1u64..50,
        before in prop::collection::vec(0u64..30, 0..6),
        after in prop::collection::vec(0u64..30, 0..6),
        leaves in 0.0f64..1.0,
    ) {
        let p = Params::LeakyBucket { t: t * MS, burst: 20, delay_after: 0, max_delay: u64::MAX };
        // Everyone before it, it, then everyone after it; all forwarded.
        let mut now = T0;
        let (mut with, mut without) = (None::<Record>, None::<Record>);
        let admit = |rec: &mut Option<Record>, now: u64| match decide(&p, *rec, now, 1) {
            Verdict::Allow { next, delay_ns, .. } => { *rec = Some(next); Some((next, delay_ns)) }
            Verdict::Reject { .. } => None,
        };
        for g in &before {
            now += g * MS;
            prop_assume!(admit(&mut with, now).is_some());
            prop_assume!(admit(&mut without, now).is_some());
        }
        let Some((taken, delay)) = admit(&mut with, now) else { return Ok(()) };
        let arrived = now;
        for g in &after {
            now += g * MS;
            prop_assume!(admit(&mut with, now).is_some());
            prop_assume!(admit(&mut without, now).is_some());
        }
        // Its turn starts at `arrived + delay`; it leaves before that (and after the last
        // arrival).
        prop_assume!(now < arrived + delay);
        let left = now + ((arrived + delay - now) as f64 * leaves) as u64;
        let back = refund(&p, with.unwrap_or_default(), left, 1, taken);
        // Same decision for the next arrival (the record's refund counter `b` differs).
        let probe = |rec: Option<Record>| match decide(&p, rec, left, 1) {
            Verdict::Allow { next, delay_ns, .. } => Some((next.a, delay_ns)),
            Verdict::Reject { .. } => None,
        };
        prop_assert_eq!(Some(back.a), without.map(|r| r.a));
        prop_assert_eq!(probe(Some(back)), probe(without));
    }
}

fn paced(burst: u64) -> Params {
    Params::LeakyBucket {
        t: 100 * MS,
        burst,
        delay_after: 0,
        max_delay: u64::MAX,
    }
}

fn delays(p: &Params, rec: &mut Option<Record>, times: &[u64]) -> Vec<Option<(u64, Record)>> {
    times
        .iter()
        .map(|&now| match decide(p, *rec, now, 1) {
            Verdict::Allow { next, delay_ns, .. } => {
                *rec = Some(next);
                Some((delay_ns, next))
            }
            Verdict::Reject { .. } => None,
        })
        .collect()
}

#[test]
fn a_waiting_request_that_leaves_gives_its_turn_to_the_next() {
    // 10/s, 3 may wait: turns at +0, +100, +200, +300 ms; the queue is full.
    let p = paced(3);
    let mut rec = None;
    let got = delays(&p, &mut rec, &[T0; 4]);
    assert!(got.iter().all(Option::is_some));
    assert!(delays(&p, &mut rec, &[T0]).first() == Some(&None), "full");
    // The one waiting for +100 ms leaves: the next arrival is admitted instead of refused,
    // and waits as long as the last one did, not longer.
    let taken = got[1].map(|x| x.1).unwrap_or_default();
    let r = rec.unwrap_or_default();
    let mut rec = Some(refund(&p, r, T0, 1, taken));
    assert_eq!(delays(&p, &mut rec, &[T0])[0].map(|x| x.0), Some(300 * MS));
    assert_eq!(delays(&p, &mut rec, &[T0])[0], None, "full again");
}

#[test]
fn a_request_expired_after_its_turn_gives_back_nothing() {
    // Its turn was at +100 ms; the tick that should have released it came at +400 ms. The
    // time it held has passed, as it would have for a request that went: nothing comes back.
    let p = paced(3);
    let mut rec = None;
    let got = delays(&p, &mut rec, &[T0, T0]);
    let taken = got[1].map(|x| x.1).unwrap_or_default();
    let late = T0 + 400 * MS;
    let r = rec.unwrap_or_default();
    assert_eq!(refund(&p, r, late, 1, taken), r);
    // Half way through its turn: half comes back.
    let mid = T0 + 150 * MS;
    assert_eq!(refund(&p, r, mid, 1, taken).a, r.a - 50 * MS);
}

#[test]
fn a_refund_ahead_moves_the_turns_behind_it() {
    // Turns +0, +100 (g1), +200 (g2); g1 leaves at +10 ms, so g2's turn is really +100 ms.
    // A forwarded request arrives at +150 ms (turn +200); g2 leaves at +160 ms: of its turn
    // only 40 ms were still ahead, and only that comes back.
    let p = paced(5);
    let mut rec = None;
    let got = delays(&p, &mut rec, &[T0, T0, T0]);
    let (g1, g2) = (got[1].unwrap().1, got[2].unwrap().1);
    rec = rec.map(|r| refund(&p, r, T0 + 10 * MS, 1, g1));
    let f = delays(&p, &mut rec, &[T0 + 150 * MS])[0].unwrap();
    assert_eq!(f.0, 50 * MS);
    let r = rec.unwrap();
    let after = refund(&p, r, T0 + 160 * MS, 1, g2);
    assert_eq!(after.a, r.a - 40 * MS);
    // Without g1 and g2 the forwarded request would have gone at +150 and the next turn
    // would be +250 ms; with the refunds it is +260 ms: never sooner.
    assert_eq!(after.a, T0 + 260 * MS);
}

#[test]
fn window_counts_come_back_only_for_their_window() {
    let fixed = Params::FixedWindow {
        count: 2,
        window: S,
    };
    let start = (T0 / S + 1) * S;
    let mut rec = None;
    let got = delays(&fixed, &mut rec, &[start, start]);
    assert_eq!(delays(&fixed, &mut rec, &[start]), [None]);
    let taken = got[0].unwrap().1;
    rec = rec.map(|r| refund(&fixed, r, start + 10 * MS, 1, taken));
    assert!(delays(&fixed, &mut rec, &[start + 10 * MS])[0].is_some());
    // A refund for last window's request does not touch this window's count.
    let mut rec2 = None;
    let old = delays(&fixed, &mut rec2, &[start - 1])[0].unwrap().1;
    delays(&fixed, &mut rec2, &[start, start]);
    let r = rec2.unwrap();
    assert_eq!(refund(&fixed, r, start + 1, 1, old), r);

    // Sliding: last window's requests still weigh on the estimate, so they come back there.
    let sliding = Params::SlidingWindow {
        count: 3,
        window: S,
    };
    let mut rec = None;
    let got = delays(&sliding, &mut rec, &[start - 1, start - 1, start - 1]);
    let mid = start + S / 2;
    assert!(
        delays(&sliding, &mut rec, &[mid])[0].is_some(),
        "3 × ½ + 0 <= 2"
    );
    assert_eq!(delays(&sliding, &mut rec, &[mid]), [None], "3 × ½ + 1 > 2");
    let taken = got[0].unwrap().1;
    let mut rec = Some(refund(&sliding, rec.unwrap(), mid, 1, taken));
    assert!(
        delays(&sliding, &mut rec, &[mid])[0].is_some(),
        "2 × ½ + 1 <= 2"
    );
}

#[test]
fn engine_charges_refund_a_paced_request_that_gave_up() {
    let mut store = MemoryStore::new();
    let check = Check {
        slot: b"paced".to_vec(),
        params: paced(2),
        cost: 1,
    };
    let checks = [check.clone()];
    let mut waiting = Vec::new();
    for _ in 0..3 {
        match evaluate(&mut store, &checks, T0, 4) {
            Outcome::Allow {
                delay_ns, taken, ..
            } => waiting.push((delay_ns, charges(checks.to_vec(), taken))),
            o => panic!("{o:?}"),
        }
    }
    assert_eq!(
        waiting.iter().map(|w| w.0).collect::<Vec<_>>(),
        [0, 100 * MS, 200 * MS]
    );
    assert!(matches!(
        evaluate(&mut store, &checks, T0, 4),
        Outcome::Reject { .. }
    ));
    // The last one's client leaves at +50 ms: a newcomer gets its turn.
    refund_all(&mut store, &waiting[2].1, T0 + 50 * MS, 4);
    match evaluate(&mut store, &checks, T0 + 50 * MS, 4) {
        Outcome::Allow { delay_ns, .. } => assert_eq!(delay_ns, 150 * MS),
        o => panic!("{o:?}"),
    }
}
