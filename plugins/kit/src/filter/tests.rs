//! The dispatch's unit tests on native code: callbacks reach their context, unknown and busy
//! ids get defaults, nested callbacks and deletes while running, gRPC answers and calls of
//! deleted contexts.

use super::calls::calls;
use super::*;
use crate::abi::Status;
use std::cell::RefCell;
use std::rc::Rc;

type Seen = Rc<RefCell<Vec<String>>>;

#[derive(Default)]
struct TestRoot {
    seen: Seen,
    configured: bool,
}

struct TestStream {
    id: u32,
    seen: Seen,
}

thread_local! {
    static W: Global<Worker<TestRoot>> = const { Global::new(Worker::new()) };
}

fn w<T>(f: impl FnOnce(&Global<Worker<TestRoot>>) -> T) -> T {
    W.with(f)
}

impl RootContext for TestRoot {
    type Stream = TestStream;
    fn on_configure(&mut self, size: usize) -> bool {
        self.configured = size > 0;
        self.configured
    }
    fn create_stream(&mut self, id: u32) -> Option<TestStream> {
        self.configured.then(|| TestStream {
            id,
            seen: Rc::clone(&self.seen),
        })
    }
}

impl StreamContext for TestStream {
    fn on_request_headers(&mut self, n: usize, _end: bool) -> Action {
        self.seen
            .borrow_mut()
            .push(format!("{} headers {n}", self.id));
        match n {
            // Re-enter for this very stream (busy), and for stream 3.
            99 => {
                let again = w(|w| request_headers(w, self.id, 1, true));
                let other = w(|w| request_headers(w, 3, 2, true));
                self.seen
                    .borrow_mut()
                    .push(format!("nested {again} {other}"));
            }
            // Delete this stream while it runs.
            98 => w(|w| delete(w, self.id)),
            _ => {}
        }
        Action::Pause
    }
    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        let line = format!("{} grpc {token} {status} {size}", self.id);
        self.seen.borrow_mut().push(line);
    }
    fn on_done(&mut self) -> bool {
        self.seen.borrow_mut().push(format!("{} done", self.id));
        false
    }
}

fn seen() -> Vec<String> {
    w(|w| {
        w.with(|w| {
            w.roots
                .first()
                // SAFETY: a live root, read while no callback runs.
                .map(|(_, r)| unsafe { r.as_ref() }.seen.borrow().clone())
        })
    })
    .unwrap_or_default()
}

#[test]
fn callbacks_reach_their_context_and_unknown_ids_get_defaults() {
    w(|w| {
        context_create(w, 1, 0);
        assert!(vm_start(w, 1, 0));
        assert!(!configure(w, 9, 10), "no root 9");
        assert!(configure(w, 1, 10));
        context_create(w, 2, 1);
        context_create(w, 3, 1);
        context_create(w, 4, 7);
        assert_eq!(request_headers(w, 2, 5, false), Action::Pause as u32);
        assert_eq!(request_headers(w, 4, 5, false), Action::Continue as u32);
        assert_eq!(response_headers(w, 2, 1, false), Action::Continue as u32);
        assert!(!done(w, 2));
        assert!(done(w, 4), "unknown: done");
        assert!(done(w, 1), "root default");
        delete(w, 2);
        assert_eq!(request_headers(w, 2, 5, false), Action::Continue as u32);
        tick(w, 1);
        log(w, 3);
        grpc_answer(w, 12345, 0, 3);
    });
    assert_eq!(seen(), ["2 headers 5", "2 done"]);
}

#[test]
fn a_nested_callback_finds_its_own_context_busy_and_others_free() {
    w(|w| {
        context_create(w, 1, 0);
        assert!(configure(w, 1, 1));
        context_create(w, 2, 1);
        context_create(w, 3, 1);
        assert_eq!(request_headers(w, 2, 99, true), Action::Pause as u32);
        // Still there afterwards.
        assert_eq!(request_headers(w, 2, 5, true), Action::Pause as u32);
        // Deleted while running: gone afterwards, no panic.
        assert_eq!(request_headers(w, 3, 98, true), Action::Pause as u32);
        assert_eq!(request_headers(w, 3, 5, true), Action::Continue as u32);
    });
    assert_eq!(
        seen(),
        [
            "2 headers 99",
            "3 headers 2",
            "nested 0 1",
            "2 headers 5",
            "3 headers 98"
        ]
    );
}

#[test]
fn a_grpc_answer_goes_to_the_caller_once() {
    // Natively the host refuses the call, so nothing is registered.
    assert_eq!(
        grpc_call(2, "rls", "svc", "m", b"", 10),
        Err(Status::UNIMPLEMENTED)
    );
    calls(|c| c.insert(77, 2));
    calls(|c| c.insert(78, 5));
    calls(|c| c.insert(79, 2));
    w(|w| {
        context_create(w, 1, 0);
        assert!(configure(w, 1, 1));
        context_create(w, 2, 1);
        grpc_answer(w, 77, 0, 10);
        grpc_answer(w, 77, 14, 0);
        grpc_answer(w, 78, 0, 1);
        grpc_answer(w, 79, 14, 0);
    });
    assert!(calls(|c| c.is_empty()));
    assert_eq!(seen(), ["2 grpc 77 0 10", "2 grpc 79 14 0"]);
}

#[test]
fn a_deleted_context_leaves_no_call_behind() {
    calls(|c| c.insert(41, 2));
    calls(|c| c.insert(42, 3));
    calls(|c| c.insert(43, 2));
    w(|w| {
        context_create(w, 1, 0);
        assert!(configure(w, 1, 1));
        context_create(w, 2, 1);
        context_create(w, 3, 1);
        // Stream 2 goes away with two calls in flight that will never be answered.
        delete(w, 2);
        assert_eq!(calls(|c| c.len()), 1, "only stream 3's call is left");
        // A late answer for a forgotten call reaches nobody.
        grpc_answer(w, 41, 0, 1);
        grpc_answer(w, 42, 0, 2);
    });
    assert!(calls(|c| c.is_empty()));
    assert_eq!(seen(), ["3 grpc 42 0 2"]);
}
