//! The filter's pure parts: the per-worker pacing queue and the OVER_LIMIT cache.

use meshward_ratelimit::cache::OverLimitCache;
use meshward_ratelimit::queue::{DelayQueue, Due, Held};

fn held(context_id: u32, release_at: u64, deadline: u64) -> Held<&'static str> {
    Held {
        context_id,
        release_at,
        deadline,
        payload: "charged",
    }
}

#[test]
fn queue_releases_in_time_expires_late_and_is_bounded() {
    let mut q = DelayQueue::new(2);
    assert!(q.push(held(1, 100, 120)).is_ok());
    assert!(q.push(held(2, 200, 220)).is_ok());
    assert_eq!(q.push(held(3, 50, 60)), Err(held(3, 50, 60)), "full");
    assert_eq!(q.due(99), []);
    assert_eq!(q.due(100), [Due::Release(1)]);
    assert_eq!(
        q.due(500),
        [Due::Expire(2, "charged")],
        "a tick after the deadline refuses, with what the request was charged"
    );
    assert!(q.is_empty());
    assert!(q.push(held(4, 10, 20)).is_ok());
    assert_eq!(
        q.remove(4),
        Some("charged"),
        "a stream that ended is forgotten"
    );
    assert_eq!(q.remove(4), None);
    assert_eq!(q.due(15), []);
}

#[test]
fn queue_hands_each_payload_out_once_in_order() {
    let mut q = DelayQueue::new(8);
    for (id, release) in [(1, 30), (2, 10), (3, 20), (4, 40)] {
        assert!(q.push(held(id, release, release + 5)).is_ok());
    }
    assert_eq!(q.remove(3), Some("charged"));
    assert_eq!(
        q.due(100),
        [
            Due::Expire(1, "charged"),
            Due::Expire(2, "charged"),
            Due::Expire(4, "charged")
        ]
    );
    assert_eq!(q.due(100), []);
    assert_eq!(q.remove(1), None);
    assert_eq!(q.len(), 0);
}

#[test]
fn cache_holds_until_reset_and_stays_bounded() {
    let mut c = OverLimitCache::new(2);
    c.insert(1, 1_000, 0);
    assert_eq!(c.over(1, 400), Some(600));
    assert_eq!(c.over(1, 1_000), None);
    c.insert(2, 5_000, 0);
    c.insert(3, 9_000, 0);
    assert_eq!(c.len(), 2, "bounded");
    assert_eq!(c.over(1, 0), None, "the soonest to expire went first");
    assert!(c.over(3, 0).is_some());
    let mut off = OverLimitCache::new(0);
    off.insert(1, 10, 0);
    assert!(off.is_empty());
}
