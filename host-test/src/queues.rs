//! Shared queues keyed by (vm_id, name) (cpp-host `src/shared_queue.cc`): non-zero u32 tokens,
//! re-registering opens the same queue and makes the caller its (only) consumer, enqueue
//! notifies the LAST registrant. Must not know about guests; delivery of `on_queue_ready`
//! goes through the `Notify` the registrant left.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Who gets `on_queue_ready`: a worker, a plugin slot of its chain, and the root context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Registrant {
    pub(crate) worker: usize,
    pub(crate) plugin: usize,
    pub(crate) vm_generation: u32,
    pub(crate) root_ctx: u32,
}

#[derive(Debug)]
struct Queue {
    vm_id: String,
    name: String,
    items: VecDeque<Vec<u8>>,
    registrant: Option<Registrant>,
}

/// Dequeue result.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Dequeue {
    Item(Vec<u8>),
    Empty,
    NotFound,
}

#[derive(Debug, Default)]
pub(crate) struct SharedQueues {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_name: HashMap<(String, String), u32>,
    queues: HashMap<u32, Queue>,
    next: u32,
}

impl SharedQueues {
    /// Register (or re-register) `(vm_id, name)`; the caller becomes the consumer.
    pub(crate) fn register(&self, vm_id: &str, name: &str, who: Registrant) -> u32 {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let key = (vm_id.to_string(), name.to_string());
        if let Some(&t) = g.by_name.get(&key) {
            if let Some(q) = g.queues.get_mut(&t) {
                q.registrant = Some(who);
            }
            return t;
        }
        g.next = g.next.wrapping_add(1);
        if g.next == 0 {
            g.next = 1;
        }
        let t = g.next;
        g.by_name.insert(key, t);
        g.queues.insert(
            t,
            Queue {
                vm_id: vm_id.to_string(),
                name: name.to_string(),
                items: VecDeque::new(),
                registrant: Some(who),
            },
        );
        t
    }
    pub(crate) fn resolve(&self, vm_id: &str, name: &str) -> Option<u32> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.by_name
            .get(&(vm_id.to_string(), name.to_string()))
            .copied()
    }
    /// Enqueue; returns None when the token is unknown, else who to notify.
    pub(crate) fn enqueue(&self, token: u32, value: &[u8]) -> Option<Option<Registrant>> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let q = g.queues.get_mut(&token)?;
        q.items.push_back(value.to_vec());
        Some(q.registrant)
    }
    pub(crate) fn dequeue(&self, token: u32) -> Dequeue {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match g.queues.get_mut(&token) {
            None => Dequeue::NotFound,
            Some(q) => match q.items.pop_front() {
                Some(v) => Dequeue::Item(v),
                None => Dequeue::Empty,
            },
        }
    }
    /// Items waiting in `(vm_id, name)`.
    pub(crate) fn len(&self, vm_id: &str, name: &str) -> Option<usize> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let t = g.by_name.get(&(vm_id.to_string(), name.to_string()))?;
        g.queues.get(t).map(|q| q.items.len())
    }
    #[allow(dead_code, reason = "debug aid")]
    pub(crate) fn describe(&self, token: u32) -> Option<(String, String)> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.queues
            .get(&token)
            .map(|q| (q.vm_id.clone(), q.name.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(worker: usize) -> Registrant {
        Registrant {
            worker,
            plugin: 0,
            vm_generation: 0,
            root_ctx: 1,
        }
    }

    #[test]
    fn reregister_keeps_items_and_moves_the_consumer() {
        let q = SharedQueues::default();
        let t = q.register("", "jobs", who(0));
        assert_ne!(t, 0);
        assert_eq!(q.enqueue(t, b"a"), Some(Some(who(0))));
        let t2 = q.register("", "jobs", who(1));
        assert_eq!(t, t2);
        assert_eq!(
            q.enqueue(t, b"b"),
            Some(Some(who(1))),
            "last registrant is notified"
        );
        assert_eq!(q.len("", "jobs"), Some(2));
        assert_eq!(q.dequeue(t), Dequeue::Item(b"a".to_vec()));
        assert_eq!(q.dequeue(t), Dequeue::Item(b"b".to_vec()));
        assert_eq!(q.dequeue(t), Dequeue::Empty);
        assert_eq!(q.dequeue(t + 100), Dequeue::NotFound);
        assert_eq!(q.enqueue(t + 100, b"x"), None);
    }

    #[test]
    fn names_are_scoped_by_vm_id() {
        let q = SharedQueues::default();
        let a = q.register("a", "n", who(0));
        assert_eq!(q.resolve("a", "n"), Some(a));
        assert_eq!(q.resolve("b", "n"), None);
        let b = q.register("b", "n", who(0));
        assert_ne!(a, b);
    }
}
