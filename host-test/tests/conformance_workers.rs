//! Conformance of the process model: several workers (one VM each, as Envoy's worker threads)
//! sharing process-wide state. CAS increments racing on two threads, shared-queue wake-ups
//! going to the last registrant only, and per-worker ticks on one virtual clock.

mod common;

use common::*;
use meshward_host::{Flow, StreamProps, Worker};
use std::time::Duration;

fn one_request(w: &mut Worker, extra: &[(&str, &str)]) -> Flow {
    let id = w.open_http_stream(StreamProps::new());
    let mut req = get("/r");
    req.extend_from_slice(extra);
    let flow = w.request_headers(id, &req, true).expect("request headers");
    w.complete(id).expect("complete");
    flow
}

#[test]
fn two_workers_racing_cas_increments_lose_no_update() {
    const PER_WORKER: u64 = 300;
    let (host, _) = host();
    let plugin = host.load(conformance("race", "cas_race")).expect("loads");
    let mut w1 = host
        .worker(std::slice::from_ref(&plugin))
        .expect("worker 1");
    let mut w2 = host
        .worker(std::slice::from_ref(&plugin))
        .expect("worker 2");
    // Envoy ignores `cas` when the key is missing, so the key is created before the race.
    assert_eq!(one_request(&mut w1, &[]), Flow::Continue);
    std::thread::scope(|s| {
        for w in [&mut w1, &mut w2] {
            s.spawn(move || {
                for _ in 0..PER_WORKER {
                    assert_eq!(one_request(w, &[]), Flow::Continue);
                }
            });
        }
    });
    let (value, _) = host
        .shared_data()
        .get(b"conformance/race/counter")
        .expect("counter exists");
    assert_eq!(
        String::from_utf8_lossy(&value),
        (1 + 2 * PER_WORKER).to_string()
    );
    let failures: Vec<String> = lines(&host, "race")
        .into_iter()
        .filter(|l| l.starts_with("FAIL "))
        .collect();
    assert!(failures.is_empty(), "{failures:?}");
}

#[test]
fn queue_ready_goes_to_the_last_registrant_only() {
    let (host, _) = host();
    let plugin = host.load(conformance("q2", "queues")).expect("loads");
    let mut w1 = host
        .worker(std::slice::from_ref(&plugin))
        .expect("worker 1");
    let mut w2 = host
        .worker(std::slice::from_ref(&plugin))
        .expect("worker 2");
    // Both worker VMs registered "jobs" in on_configure; w2's registration came last.
    let last_registrant = records(&host, "q2")
        .iter()
        .rfind(|r| r.message.starts_with("EV configure") && r.worker.is_some())
        .and_then(|r| r.worker)
        .expect("worker VMs configured");
    // Enqueue from the first worker.
    one_request(&mut w1, &[("x-msg", "from-w1")]);
    host.advance(Duration::ZERO, &mut [&mut w1, &mut w2]);
    let woken: Vec<Option<usize>> = records(&host, "q2")
        .iter()
        .filter(|r| r.message.starts_with("EV queue_ready"))
        .map(|r| r.worker)
        .collect();
    assert_eq!(
        woken,
        [Some(last_registrant)],
        "exactly one wake-up, on the last registrant"
    );
    let dequeued: Vec<Option<usize>> = records(&host, "q2")
        .iter()
        .filter(|r| r.message == "NOTE dequeued from-w1")
        .map(|r| r.worker)
        .collect();
    assert_eq!(dequeued, [Some(last_registrant)]);
}

#[test]
fn every_worker_ticks_on_its_own_and_the_check_vm_never_does() {
    let (host, _) = host();
    let plugin = host.load(conformance("t2", "ticks")).expect("loads");
    let mut w1 = host
        .worker(std::slice::from_ref(&plugin))
        .expect("worker 1");
    let mut w2 = host
        .worker(std::slice::from_ref(&plugin))
        .expect("worker 2");
    host.advance(Duration::from_secs(5), &mut [&mut w1, &mut w2]);
    let ticks: Vec<Option<usize>> = records(&host, "t2")
        .iter()
        .filter(|r| r.message.starts_with("EV tick "))
        .map(|r| r.worker)
        .collect();
    assert_eq!(ticks.len(), 10, "5 ticks per worker: {ticks:?}");
    assert!(ticks.iter().all(Option::is_some));
    let first = ticks[0];
    assert_eq!(ticks.iter().filter(|w| **w == first).count(), 5);
    // One configuration check plus one configure per worker.
    let configures = events(&host, "t2", None)
        .iter()
        .filter(|e| *e == "configure")
        .count();
    assert_eq!(configures, 3);
}
