//! Rate limiting without I/O: algorithms over one record ([`algo`]), several rules per
//! request with check-then-commit over a versioned [`Store`] ([`engine`]), the compiled
//! policy that picks route, client, tier and slots ([`limiter`]), and what clients are told
//! ([`headers`]). Time is always a `now` argument in nanoseconds from the host.

pub mod algo;
pub mod engine;
pub mod headers;
pub mod limiter;

pub use algo::{decide, refund, Params, Record, Verdict};
pub use engine::{
    charges, evaluate, refund_all, Charge, Check, MemoryStore, Outcome, PerRule, RuleState, Store,
    StoreError,
};
pub use limiter::{
    hash64, parse_addr, parse_addr_bytes, Access, Hash64, Limiter, Plan, PlannedRule,
};
