//! Requests a leaky-bucket rule is pacing: held (paused) on this worker until their release
//! time, then resumed from the root context's tick; one that could not be released by its
//! deadline is refused. Bounded: a full queue refuses new requests. Per worker only: Envoy
//! cannot resume a request from another thread.
//!
//! Each held request carries a payload `T` (the filter keeps what the request was charged,
//! so it can be given back when the request expires here or its stream ends while held).
//! Every held request leaves exactly once: released, expired, or removed; the payload comes
//! out with it. Knows nothing of rate limits or proxy-wasm.

use std::collections::VecDeque;

/// One held request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held<T> {
    /// Its HTTP context id.
    pub context_id: u32,
    /// Forward at or after this time (ns).
    pub release_at: u64,
    /// Refuse when still held after this time (ns).
    pub deadline: u64,
    /// What the filter keeps with it.
    pub payload: T,
}

/// What the tick should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due<T> {
    /// Resume this request.
    Release(u32),
    /// Refuse this request (deadline passed); its payload comes with it.
    Expire(u32, T),
}

/// The per-worker queue.
#[derive(Debug)]
pub struct DelayQueue<T> {
    held: VecDeque<Held<T>>,
    cap: usize,
}

impl<T> DelayQueue<T> {
    /// At most `cap` held requests.
    pub fn new(cap: usize) -> Self {
        Self {
            held: VecDeque::new(),
            cap,
        }
    }

    /// Holds a request; gives it back when the queue is full.
    pub fn push(&mut self, h: Held<T>) -> Result<(), Held<T>> {
        if self.held.len() >= self.cap {
            return Err(h);
        }
        self.held.push_back(h);
        Ok(())
    }

    /// Takes out a request whose stream ended first; its payload, when it was held.
    pub fn remove(&mut self, context_id: u32) -> Option<T> {
        let i = self.held.iter().position(|h| h.context_id == context_id)?;
        self.held.remove(i).map(|h| h.payload)
    }

    /// Takes out everything due at `now`, in the order the requests were held.
    pub fn due(&mut self, now: u64) -> Vec<Due<T>> {
        let mut out = Vec::new();
        if !self
            .held
            .iter()
            .any(|h| now >= h.release_at || now > h.deadline)
        {
            return out;
        }
        let mut keep = VecDeque::with_capacity(self.held.len());
        for h in self.held.drain(..) {
            if now > h.deadline {
                out.push(Due::Expire(h.context_id, h.payload));
            } else if now >= h.release_at {
                out.push(Due::Release(h.context_id));
            } else {
                keep.push_back(h);
            }
        }
        self.held = keep;
        out
    }

    /// Requests held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// True when none is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
