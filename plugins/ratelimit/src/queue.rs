//! Requests a leaky-bucket rule is pacing: held (paused) on this worker until their release
//! time, then resumed from the root context's tick; one that could not be released by its
//! deadline is refused. Bounded: a full queue refuses new requests. Per worker only: Envoy
//! cannot resume a request from another thread.

use std::collections::VecDeque;

/// One held request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// Its HTTP context id.
    pub context_id: u32,
    /// Forward at or after this time (ns).
    pub release_at: u64,
    /// Refuse when still held after this time (ns).
    pub deadline: u64,
}

/// What the tick should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Resume this request.
    Release(u32),
    /// Refuse this request (deadline passed).
    Expire(u32),
}

/// The per-worker queue.
#[derive(Debug, Default)]
pub struct DelayQueue {
    held: VecDeque<Held>,
    cap: usize,
}

impl DelayQueue {
    /// At most `cap` held requests.
    pub fn new(cap: usize) -> Self {
        Self {
            held: VecDeque::new(),
            cap,
        }
    }

    /// Holds a request; false when the queue is full.
    pub fn push(&mut self, h: Held) -> bool {
        if self.held.len() >= self.cap {
            return false;
        }
        self.held.push_back(h);
        true
    }

    /// Forgets a request (its stream ended first); true when it was held.
    pub fn remove(&mut self, context_id: u32) -> bool {
        let before = self.held.len();
        self.held.retain(|h| h.context_id != context_id);
        self.held.len() != before
    }

    /// Takes out everything due at `now`.
    pub fn due(&mut self, now: u64) -> Vec<Due> {
        let mut out = Vec::new();
        self.held.retain(|h| {
            if now > h.deadline {
                out.push(Due::Expire(h.context_id));
                false
            } else if now >= h.release_at {
                out.push(Due::Release(h.context_id));
                false
            } else {
                true
            }
        });
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
