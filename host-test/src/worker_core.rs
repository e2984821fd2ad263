//! The part of a worker that host functions reach while a guest runs (it is moved into the VM's
//! store for the duration of a call): the stream table, the timeline of due events (ticks,
//! callout answers, timeouts) in exact time order, outstanding callouts, tick timers, and the
//! after-call actions (continue/close/local reply on another context) a callback queued, as
//! Envoy's `addAfterVmCallAction`. Must not know about wasm or the chain's flow logic.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::mpsc::Sender;
use std::sync::Arc;

use crate::callouts::{GrpcReply, HttpResponse, Inbox};
use crate::clock::Clock;
use crate::stream::{HttpStream, LocalReply, StreamId};

/// A due event.
#[derive(Debug)]
pub(crate) enum Event {
    Tick {
        plugin: usize,
        gen: u32,
    },
    Http {
        token: u32,
        response: Option<HttpResponse>,
        timeout: bool,
    },
    Grpc {
        token: u32,
        reply: GrpcReply,
        close: bool,
    },
}

#[derive(Debug)]
struct Timed {
    due: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Timed {
    fn eq(&self, o: &Self) -> bool {
        self.due == o.due && self.seq == o.seq
    }
}
impl Eq for Timed {}
impl PartialOrd for Timed {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Timed {
    // Min-heap on (due, seq): earliest first, FIFO among equal times.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.due, o.seq).cmp(&(self.due, self.seq))
    }
}

/// Events ordered by due time, then insertion order.
#[derive(Debug, Default)]
pub(crate) struct Timeline {
    heap: BinaryHeap<Timed>,
    seq: u64,
}

impl Timeline {
    pub(crate) fn push(&mut self, due: u64, event: Event) {
        self.seq += 1;
        self.heap.push(Timed {
            due,
            seq: self.seq,
            event,
        });
    }
    pub(crate) fn next_due(&self) -> Option<u64> {
        self.heap.peek().map(|t| t.due)
    }
    /// Pop the earliest event if it is due at or before `limit`.
    pub(crate) fn pop_due(&mut self, limit: u64) -> Option<(u64, Event)> {
        if self.heap.peek()?.due <= limit {
            self.heap.pop().map(|t| (t.due, t.event))
        } else {
            None
        }
    }
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

/// What kind of callout a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CalloutKind {
    Http,
    Grpc,
    GrpcStream,
}

/// An outstanding callout.
#[derive(Debug, Clone)]
pub(crate) struct Callout {
    pub(crate) plugin: usize,
    pub(crate) generation: u32,
    /// The context that dispatched it (answers go to it).
    pub(crate) ctx: u32,
    pub(crate) kind: CalloutKind,
    /// Copy of the request for `pending_*` inspection.
    pub(crate) http: Option<crate::callouts::HttpCallRequest>,
    pub(crate) grpc: Option<crate::callouts::GrpcCallRequest>,
}

/// Something a callback asked for that runs after it returns.
#[derive(Debug)]
pub(crate) enum Action {
    Continue {
        slot: u32,
        plugin: usize,
        response: bool,
    },
    Close {
        slot: u32,
    },
    LocalReply {
        slot: u32,
        reply: Arc<LocalReply>,
        /// The headers are a plugin's, in the slot's `reply_asked` (a host-made reply has
        /// them in `reply.headers`).
        asked: bool,
    },
}

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TickState {
    pub(crate) period_ms: u32,
    pub(crate) gen: u32,
}

/// Worker state reachable from host functions.
pub(crate) struct WorkerCore {
    #[allow(dead_code, reason = "kept for debugging output")]
    pub(crate) worker: Option<usize>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) streams: Vec<HttpStream>,
    pub(crate) live: Vec<bool>,
    pub(crate) gens: Vec<u32>,
    pub(crate) free: Vec<u32>,
    pub(crate) timeline: Timeline,
    pub(crate) callouts: HashMap<u32, Callout>,
    pub(crate) next_token: u32,
    pub(crate) ticks: Vec<TickState>,
    pub(crate) actions: Vec<Action>,
    pub(crate) inbox: Sender<Inbox>,
}

impl WorkerCore {
    pub(crate) fn new(
        worker: Option<usize>,
        clock: Arc<dyn Clock>,
        n: usize,
        inbox: Sender<Inbox>,
    ) -> Self {
        WorkerCore {
            worker,
            clock,
            streams: Vec::new(),
            live: Vec::new(),
            gens: Vec::new(),
            free: Vec::new(),
            timeline: Timeline::default(),
            callouts: HashMap::new(),
            next_token: 0,
            ticks: vec![TickState::default(); n],
            actions: Vec::new(),
            inbox,
        }
    }
    pub(crate) fn now(&self) -> u64 {
        self.clock.now_nanos()
    }
    pub(crate) fn stream(&self, slot: u32) -> Option<&HttpStream> {
        let i = slot as usize;
        if *self.live.get(i)? {
            self.streams.get(i)
        } else {
            None
        }
    }
    pub(crate) fn stream_mut(&mut self, slot: u32) -> Option<&mut HttpStream> {
        let i = slot as usize;
        if *self.live.get(i)? {
            self.streams.get_mut(i)
        } else {
            None
        }
    }
    pub(crate) fn slot_of(&self, id: StreamId) -> Option<u32> {
        let s = id.slot();
        (self.live.get(s as usize).copied() == Some(true)
            && self.gens.get(s as usize) == Some(&id.gen()))
        .then_some(s)
    }
    /// The stream `id` names (slot live, same generation) and its slot, in one lookup.
    #[inline]
    pub(crate) fn stream_of(&mut self, id: StreamId) -> Option<(u32, &mut HttpStream)> {
        let s = id.slot();
        let i = s as usize;
        if self.live.get(i).copied() == Some(true) && self.gens.get(i) == Some(&id.gen()) {
            self.streams.get_mut(i).map(|st| (s, st))
        } else {
            None
        }
    }
    /// Allocate a stream slot (reusing a released one and its buffers).
    pub(crate) fn alloc_slot(&mut self) -> (u32, u32) {
        if let Some(s) = self.free.pop() {
            let i = s as usize;
            self.gens[i] = self.gens[i].wrapping_add(1);
            self.live[i] = true;
            return (s, self.gens[i]);
        }
        self.streams.push(HttpStream::default());
        self.live.push(true);
        self.gens.push(1);
        ((self.streams.len() - 1) as u32, 1)
    }
    pub(crate) fn release(&mut self, slot: u32) {
        if let Some(l) = self.live.get_mut(slot as usize) {
            if *l {
                *l = false;
                self.free.push(slot);
            }
        }
    }
    pub(crate) fn token(&mut self) -> u32 {
        self.next_token = self.next_token.wrapping_add(1).max(1);
        self.next_token
    }
    pub(crate) fn set_tick(&mut self, plugin: usize, period_ms: u32) {
        let now = self.now();
        if let Some(t) = self.ticks.get_mut(plugin) {
            t.gen = t.gen.wrapping_add(1);
            t.period_ms = period_ms;
            let gen = t.gen;
            if period_ms > 0 {
                self.timeline.push(
                    now + period_ms as u64 * 1_000_000,
                    Event::Tick { plugin, gen },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_pops_in_time_then_insertion_order() {
        let mut t = Timeline::default();
        t.push(30, Event::Tick { plugin: 3, gen: 0 });
        t.push(10, Event::Tick { plugin: 1, gen: 0 });
        t.push(10, Event::Tick { plugin: 2, gen: 0 });
        t.push(20, Event::Tick { plugin: 4, gen: 0 });
        assert_eq!(t.next_due(), Some(10));
        let order: Vec<usize> = std::iter::from_fn(|| t.pop_due(25))
            .map(|(_, e)| match e {
                Event::Tick { plugin, .. } => plugin,
                _ => 0,
            })
            .collect();
        assert_eq!(order, vec![1, 2, 4]);
        assert_eq!(t.len(), 1);
        assert!(t.pop_due(29).is_none());
    }
}
