//! Case `queues`: register/resolve/enqueue/dequeue statuses and `on_queue_ready` delivery.
//! Every VM registers `jobs` in on_configure; a request enqueues its `x-msg` header.

use crate::abi::{self, EMPTY, NOT_FOUND, OK};
use crate::report::{check, note};
use crate::{param, with};

const BOGUS_ID: u32 = 0x0dea_dbee;

pub fn configure() -> u32 {
    let (s, id) = abi::register_queue("jobs");
    check("register_ok", s, OK);
    check("reregister_same_id", abi::register_queue("jobs"), (OK, id));
    let vm = param("vm").unwrap_or_default();
    check(
        "resolve_finds_queue",
        abi::resolve_queue(&vm, "jobs"),
        (OK, id),
    );
    check(
        "resolve_missing_not_found",
        abi::resolve_queue(&vm, "absent").0,
        NOT_FOUND,
    );
    check(
        "resolve_other_vm_not_found",
        abi::resolve_queue("another-vm", "jobs").0,
        NOT_FOUND,
    );
    check(
        "enqueue_unknown_not_found",
        abi::enqueue(BOGUS_ID, b"x"),
        NOT_FOUND,
    );
    check(
        "dequeue_unknown_not_found",
        abi::dequeue(BOGUS_ID).0,
        NOT_FOUND,
    );
    check("dequeue_empty_is_empty", abi::dequeue(id).0, EMPTY);
    with(|s| s.queue_id = id);
    note(&format!("queue id={id}"));
    1
}

pub fn request_headers() -> u32 {
    let (_, msg) = abi::map_get(abi::MAP_REQUEST_HEADERS, "x-msg");
    let id = with(|s| s.queue_id);
    check("enqueue_ok", abi::enqueue(id, msg.as_bytes()), OK);
    abi::CONTINUE
}

pub fn ready(queue_id: u32) {
    check("queue_ready_id_matches", queue_id, with(|s| s.queue_id));
    for _ in 0..1000 {
        let (s, msg) = abi::dequeue(queue_id);
        if s != OK {
            check("drained_until_empty", s, EMPTY);
            return;
        }
        note(&format!("dequeued {}", String::from_utf8_lossy(&msg)));
    }
}
