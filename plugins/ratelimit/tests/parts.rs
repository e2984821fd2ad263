//! The filter's pure parts: the per-worker pacing queue and the OVER_LIMIT cache.

use meshward_ratelimit::cache::OverLimitCache;
use meshward_ratelimit::queue::{DelayQueue, Due, Held};

#[test]
fn queue_releases_in_time_expires_late_and_is_bounded() {
    let mut q = DelayQueue::new(2);
    assert!(q.push(Held {
        context_id: 1,
        release_at: 100,
        deadline: 120
    }));
    assert!(q.push(Held {
        context_id: 2,
        release_at: 200,
        deadline: 220
    }));
    assert!(
        !q.push(Held {
            context_id: 3,
            release_at: 50,
            deadline: 60
        }),
        "full"
    );
    assert_eq!(q.due(99), []);
    assert_eq!(q.due(100), [Due::Release(1)]);
    assert_eq!(
        q.due(500),
        [Due::Expire(2)],
        "a tick after the deadline refuses"
    );
    assert!(q.is_empty());
    assert!(q.push(Held {
        context_id: 4,
        release_at: 10,
        deadline: 20
    }));
    assert!(q.remove(4), "a stream that ended is forgotten");
    assert!(!q.remove(4));
    assert_eq!(q.due(15), []);
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
