//! Several rules, one request: check-then-commit over a [`Store`] with bounded CAS retries.
//! Phase 1 reads every rule's slot and decides without writing: one rejection ends it and
//! nothing is consumed. Phase 2 commits each rule with compare-and-swap, re-deciding on a
//! fresh record when another worker won the race; if a rule flips to "reject" meanwhile, or
//! CAS retries run out, the rules already committed are refunded. Under contention on the
//! same slots a refund can make a concurrent request see a fuller bucket than it ends up
//! being for a moment (transient under-admission, never over-admission). An admitted request
//! that never reaches upstream after all (refused by the global service, or paced and given
//! up) is refunded later from its [`Charge`]s ([`refund_all`], semantics in `algo::refund`).
//! Knows nothing of proxy-wasm: the filter's store wraps shared data.

use super::algo::{decide, refund, Params, Record, Verdict};

/// Why a store operation failed (other than a CAS mismatch, which is normal).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state store: {0}")]
pub struct StoreError(pub String);

/// Versioned slots (proxy-wasm shared data, or memory in tests).
pub trait Store {
    /// The slot's record and version, `None` when the slot was never written.
    fn load(&mut self, key: &[u8]) -> Result<Option<(Record, u32)>, StoreError>;
    /// Creates the slot with `rec` if it does not exist yet (atomically with respect to
    /// other creators); an existing slot is left alone.
    fn create(&mut self, key: &[u8], rec: Record) -> Result<(), StoreError>;
    /// Replaces the slot if its version is still `version`; `Ok(false)` on a CAS mismatch.
    fn replace(&mut self, key: &[u8], rec: Record, version: u32) -> Result<bool, StoreError>;
}

/// One rule applied to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Slot key in the store.
    pub slot: Vec<u8>,
    /// Algorithm and numbers.
    pub params: Params,
    /// Units this request costs.
    pub cost: u64,
}

impl AsRef<Check> for Check {
    fn as_ref(&self) -> &Check {
        self
    }
}

/// Per-rule numbers for headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RuleState {
    /// Units left (0 when this rule rejected).
    pub remaining: u64,
    /// Ns until more quota (retry-after for a rejecting rule, reset otherwise).
    pub reset_ns: u64,
}

/// What an admitted request took from one rule: the check and the record its commit stored.
/// Kept by whoever may have to give it back ([`refund_all`]); give it back at most once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// The rule's check.
    pub check: Check,
    /// The record this request's commit stored.
    pub taken: Record,
}

/// Pairs checks with the records their commits stored (`taken` of [`Outcome::Allow`]).
pub fn charges(checks: Vec<Check>, taken: impl AsRef<[Record]>) -> Vec<Charge> {
    checks
        .into_iter()
        .zip(taken.as_ref())
        .map(|(check, taken)| Charge {
            check,
            taken: *taken,
        })
        .collect()
}

/// Rules a [`PerRule`] holds without allocating (routes have one or two enforcing rules).
const INLINE: usize = 4;

/// One value per rule of an evaluation: inline for up to [`INLINE`] rules, so the request
/// path allocates nothing for them, on the heap beyond. Reads as a slice.
#[derive(Clone)]
pub struct PerRule<T: Copy + Default> {
    inline: [T; INLINE],
    len: usize,
    /// All the values once there are more than [`INLINE`] (`None` until then: an inline
    /// `PerRule` has no vector, so dropping one is a check, not a call).
    heap: Option<Vec<T>>,
}

impl<T: Copy + Default> PerRule<T> {
    /// Empty, with room for `n` values.
    #[inline(always)]
    fn with_capacity(n: usize) -> Self {
        Self {
            inline: [T::default(); INLINE],
            len: 0,
            heap: (n > INLINE).then(|| Vec::with_capacity(n)),
        }
    }

    /// `n` default values.
    #[inline(always)]
    fn defaults(n: usize) -> Self {
        // Built whole rather than pushed one by one (what `n` pushes would leave: inline up
        // to INLINE, otherwise all `n` on the heap).
        if n <= INLINE {
            Self {
                inline: [T::default(); INLINE],
                len: n,
                heap: None,
            }
        } else {
            Self {
                inline: [T::default(); INLINE],
                len: 0,
                heap: Some(vec![T::default(); n]),
            }
        }
    }

    /// Just `v`.
    #[inline(always)]
    fn one(v: T) -> Self {
        let mut inline = [T::default(); INLINE];
        if let Some(first) = inline.first_mut() {
            *first = v;
        }
        Self {
            inline,
            len: 1,
            heap: None,
        }
    }

    /// The heap values, when they are the values (there are more than fit inline).
    #[inline(always)]
    fn spilled(&self) -> Option<&Vec<T>> {
        self.heap.as_ref().filter(|h| !h.is_empty())
    }

    /// Appends `v`.
    fn push(&mut self, v: T) {
        match &mut self.heap {
            Some(h) if !h.is_empty() => h.push(v),
            heap => {
                if let Some(slot) = self.inline.get_mut(self.len) {
                    *slot = v;
                    self.len += 1;
                } else {
                    let h = heap.get_or_insert_with(Vec::new);
                    h.extend_from_slice(&self.inline);
                    h.push(v);
                }
            }
        }
    }

    /// The `i`-th value, if there is one.
    #[inline(always)]
    fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        match &mut self.heap {
            Some(h) if !h.is_empty() => h.get_mut(i),
            _ => self.inline.get_mut(..self.len)?.get_mut(i),
        }
    }
}

impl<T: Copy + Default> Default for PerRule<T> {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl<T: Copy + Default> std::ops::Deref for PerRule<T> {
    type Target = [T];
    #[inline(always)]
    fn deref(&self) -> &[T] {
        match self.spilled() {
            Some(h) => h,
            None => self.inline.get(..self.len).unwrap_or(&[]),
        }
    }
}

impl<T: Copy + Default> AsRef<[T]> for PerRule<T> {
    fn as_ref(&self) -> &[T] {
        self
    }
}

impl<T: Copy + Default + std::fmt::Debug> std::fmt::Debug for PerRule<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: Copy + Default + PartialEq> PartialEq for PerRule<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Copy + Default + Eq> Eq for PerRule<T> {}

/// The combined outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every rule admitted (and was charged); forward after `delay_ns`.
    Allow {
        /// Longest delay any rule asked for.
        delay_ns: u64,
        /// Per check, in order.
        states: PerRule<RuleState>,
        /// Per check, in order: the record this request's commit stored (see [`charges`]).
        taken: PerRule<Record>,
    },
    /// `rule` (index into the checks) rejected; nothing was charged.
    Reject {
        /// The first rejecting check.
        rule: usize,
        /// Ns until the request could pass that rule.
        retry_after_ns: u64,
        /// Per check, in order.
        states: PerRule<RuleState>,
    },
    /// CAS retries ran out on `rule` (or the store failed); nothing was charged.
    Exhausted {
        /// The check that could not be committed.
        rule: usize,
        /// The store error, if that was the cause.
        error: Option<StoreError>,
    },
}

fn load_or_create(store: &mut dyn Store, slot: &[u8]) -> Result<(Record, u32), StoreError> {
    if let Some(v) = store.load(slot)? {
        return Ok(v);
    }
    store.create(slot, Record::default())?;
    store
        .load(slot)?
        .ok_or_else(|| StoreError("slot vanished right after it was created".into()))
}

/// Evaluates `checks` (anything holding a [`Check`]: the checks themselves, or planned rules)
/// at `now` with at most `retries` CAS attempts per rule.
pub fn evaluate<C: AsRef<Check>>(
    store: &mut dyn Store,
    checks: &[C],
    now: u64,
    retries: u32,
) -> Outcome {
    match checks {
        [one] => evaluate_one(store, one.as_ref(), now, retries),
        _ => evaluate_many(store, checks, now, retries),
    }
}

/// [`evaluate`] for any number of checks.
fn evaluate_many<C: AsRef<Check>>(
    store: &mut dyn Store,
    checks: &[C],
    now: u64,
    retries: u32,
) -> Outcome {
    let mut states = PerRule::<RuleState>::defaults(checks.len());
    // Phase 1's snapshots and what it decided on them, for phase 2 (`decide` is pure, so the
    // first commit attempt on an unchanged snapshot reuses the verdict): the first in place,
    // the rest (rare: most routes have one enforcing rule) in a vector that only allocates
    // when pushed to.
    let mut first_loaded = None;
    let mut more_loaded = Vec::new();
    // Phase 1: decide on a snapshot, write nothing.
    for (i, c) in checks.iter().map(AsRef::as_ref).enumerate() {
        let (rec, ver) = match store.load(&c.slot) {
            Ok(v) => v.map_or((None, None), |(r, v)| (Some(r), Some(v))),
            Err(e) => {
                return Outcome::Exhausted {
                    rule: i,
                    error: Some(e),
                }
            }
        };
        let verdict = decide(&c.params, rec, now, c.cost);
        match verdict {
            Verdict::Allow {
                remaining,
                reset_ns,
                ..
            } => {
                if let Some(s) = states.get_mut(i) {
                    *s = RuleState {
                        remaining,
                        reset_ns,
                    };
                }
            }
            // The others' numbers so far stay, for the headers.
            Verdict::Reject { retry_after_ns, .. } => return refused(states, i, retry_after_ns),
        }
        let loaded = rec.zip(ver).map(|rv| (rv, verdict));
        if i == 0 {
            first_loaded = loaded;
        } else {
            more_loaded.push(loaded);
        }
    }
    // Phase 2: commit each with CAS; undo on a late rejection.
    let mut delay_ns = 0u64;
    let mut taken = PerRule::<Record>::with_capacity(checks.len());
    for (i, c) in checks.iter().map(AsRef::as_ref).enumerate() {
        let (snapshot, decided) = match i.checked_sub(1) {
            None => first_loaded,
            Some(j) => more_loaded.get(j).copied().flatten(),
        }
        .map_or((None, None), |(rv, v)| (Some(rv), Some(v)));
        match commit(store, c, snapshot, decided, now, retries) {
            Commit::Done { next, delay, state } => {
                delay_ns = delay_ns.max(delay);
                if let Some(s) = states.get_mut(i) {
                    *s = state;
                }
                taken.push(next);
            }
            Commit::Rejected(retry_after_ns) => {
                undo(store, checks, &taken, now, retries);
                return refused(states, i, retry_after_ns);
            }
            Commit::Failed(error) => {
                undo(store, checks, &taken, now, retries);
                return Outcome::Exhausted { rule: i, error };
            }
        }
    }
    Outcome::Allow {
        delay_ns,
        states,
        taken,
    }
}

/// The refusal by check `rule` of several: its numbers say nothing is left until it would
/// pass; the other checks' numbers in `states` are kept for the headers.
fn refused(mut states: PerRule<RuleState>, rule: usize, retry_after_ns: u64) -> Outcome {
    if let Some(s) = states.get_mut(rule) {
        *s = RuleState {
            remaining: 0,
            reset_ns: retry_after_ns,
        };
    }
    Outcome::Reject {
        rule,
        retry_after_ns,
        states,
    }
}

/// [`evaluate`] for one check, the usual route (one enforcing rule): the same two phases and
/// outcomes, without the bookkeeping several checks need (no snapshot list, nothing to undo:
/// a single check is either committed or not).
fn evaluate_one(store: &mut dyn Store, c: &Check, now: u64, retries: u32) -> Outcome {
    let reject = |retry_after_ns| Outcome::Reject {
        rule: 0,
        retry_after_ns,
        states: PerRule::one(RuleState {
            remaining: 0,
            reset_ns: retry_after_ns,
        }),
    };
    let exhausted = |error| Outcome::Exhausted { rule: 0, error };
    // Phase 1: decide on a snapshot (none when the slot was never written).
    let snapshot = match store.load(&c.slot) {
        Ok(v) => v,
        Err(e) => return exhausted(Some(e)),
    };
    let first = decide(&c.params, snapshot.map(|(r, _)| r), now, c.cost);
    if let Verdict::Reject { retry_after_ns, .. } = first {
        return reject(retry_after_ns);
    }
    // Phase 2: commit with CAS. The first attempt reuses phase 1's verdict when it was made
    // on an existing slot; a missing slot is created and decided on afresh.
    let decided = snapshot.is_some().then_some(first);
    match commit(store, c, snapshot, decided, now, retries) {
        Commit::Done { next, delay, state } => Outcome::Allow {
            delay_ns: delay,
            states: PerRule::one(state),
            taken: PerRule::one(next),
        },
        Commit::Rejected(retry_after_ns) => reject(retry_after_ns),
        Commit::Failed(error) => exhausted(error),
    }
}

/// What committing one check came to.
enum Commit {
    /// Stored `next`; the request waits `delay` ns; the rule's numbers for the headers.
    Done {
        next: Record,
        delay: u64,
        state: RuleState,
    },
    /// The rule refused on a fresh record (ns until it would pass); nothing stored.
    Rejected(u64),
    /// The store failed, or (`None`) CAS attempts ran out; nothing stored.
    Failed(Option<StoreError>),
}

/// Phase 2 for one check: compare-and-swap its record, at most `retries` attempts. The first
/// attempt uses `snapshot` and the verdict `decided` made on it when given; every later one
/// (after another worker won the race) reads the slot, creating it if missing, and decides
/// again.
#[inline(always)]
fn commit(
    store: &mut dyn Store,
    c: &Check,
    mut snapshot: Option<(Record, u32)>,
    mut decided: Option<Verdict>,
    now: u64,
    retries: u32,
) -> Commit {
    for _ in 0..retries.max(1) {
        let (rec, ver) = match snapshot.take() {
            Some(v) => v,
            None => match load_or_create(store, &c.slot) {
                Ok(v) => v,
                Err(e) => return Commit::Failed(Some(e)),
            },
        };
        let verdict = match decided.take() {
            Some(v) => v,
            None => decide(&c.params, Some(rec), now, c.cost),
        };
        match verdict {
            Verdict::Allow {
                next,
                delay_ns,
                remaining,
                reset_ns,
            } => match store.replace(&c.slot, next, ver) {
                Ok(true) => {
                    return Commit::Done {
                        next,
                        delay: delay_ns,
                        state: RuleState {
                            remaining,
                            reset_ns,
                        },
                    }
                }
                Ok(false) => {}
                Err(e) => return Commit::Failed(Some(e)),
            },
            Verdict::Reject { retry_after_ns, .. } => return Commit::Rejected(retry_after_ns),
        }
    }
    Commit::Failed(None)
}

/// Refunds the checks committed so far (`taken` holds one record per committed check).
fn undo<C: AsRef<Check>>(
    store: &mut dyn Store,
    checks: &[C],
    taken: &[Record],
    now: u64,
    retries: u32,
) {
    for (c, t) in checks.iter().zip(taken) {
        give_back(store, c.as_ref(), *t, now, retries);
    }
}

/// Gives back what `charges` took (the global service said OVER_LIMIT after the local rules
/// had admitted the request, a paced request gave up, its client left). Best effort with
/// bounded CAS retries.
pub fn refund_all(store: &mut dyn Store, charges: &[Charge], now: u64, retries: u32) {
    for c in charges {
        give_back(store, &c.check, c.taken, now, retries);
    }
}

fn give_back(store: &mut dyn Store, c: &Check, taken: Record, now: u64, retries: u32) {
    for _ in 0..retries.max(1) {
        match store.load(&c.slot) {
            Ok(Some((rec, ver))) => {
                let back = refund(&c.params, rec, now, c.cost, taken);
                if back == rec || !matches!(store.replace(&c.slot, back, ver), Ok(false)) {
                    break;
                }
            }
            _ => break,
        }
    }
}

/// A `Store` in memory with Envoy's shared-data versioning, for tests and native use.
#[derive(Debug, Default)]
pub struct MemoryStore {
    slots: std::collections::HashMap<Vec<u8>, (Record, u32)>,
    next_version: u32,
}

impl MemoryStore {
    /// Empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of slots written.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn bump(&mut self) -> u32 {
        self.next_version = self.next_version.wrapping_add(1).max(1);
        self.next_version
    }
}

impl Store for MemoryStore {
    fn load(&mut self, key: &[u8]) -> Result<Option<(Record, u32)>, StoreError> {
        Ok(self.slots.get(key).copied())
    }

    fn create(&mut self, key: &[u8], rec: Record) -> Result<(), StoreError> {
        if !self.slots.contains_key(key) {
            let v = self.bump();
            self.slots.insert(key.to_vec(), (rec, v));
        }
        Ok(())
    }

    fn replace(&mut self, key: &[u8], rec: Record, version: u32) -> Result<bool, StoreError> {
        match self.slots.get(key) {
            Some((_, v)) if *v != version => Ok(false),
            _ => {
                let v = self.bump();
                self.slots.insert(key.to_vec(), (rec, v));
                Ok(true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_rule_values_read_as_a_slice_inline_and_beyond() {
        for n in [0, 1, INLINE, INLINE + 1, 3 * INLINE] {
            let mut v = PerRule::<u64>::with_capacity(n);
            for i in 0..n as u64 {
                v.push(i);
            }
            assert_eq!(&*v, (0..n as u64).collect::<Vec<_>>().as_slice());
            if let Some(x) = v.get_mut(n.wrapping_sub(1)) {
                *x = 99;
            }
            assert!(v.get_mut(n).is_none());
            assert!(n == 0 || v.last() == Some(&99));
            assert_eq!(PerRule::<u64>::defaults(n).len(), n);
        }
        // A vector grown past the inline room keeps every earlier value.
        let mut v = PerRule::<u64>::with_capacity(1);
        for i in 0..6 {
            v.push(i);
        }
        assert_eq!(&*v, &[0, 1, 2, 3, 4, 5]);
    }

    /// A store another worker writes to between this worker's reads and writes (`races`
    /// times, each write taking one unit more), and that fails its `fail_at`-th operation.
    struct Contended {
        inner: MemoryStore,
        races: u32,
        ops: u32,
        fail_at: Option<u32>,
    }

    impl Contended {
        fn op(&mut self) -> Result<(), StoreError> {
            self.ops += 1;
            match self.fail_at {
                Some(n) if n == self.ops => Err(StoreError("injected".into())),
                _ => Ok(()),
            }
        }
    }

    impl Store for Contended {
        fn load(&mut self, key: &[u8]) -> Result<Option<(Record, u32)>, StoreError> {
            self.op()?;
            self.inner.load(key)
        }
        fn create(&mut self, key: &[u8], rec: Record) -> Result<(), StoreError> {
            self.op()?;
            self.inner.create(key, rec)
        }
        fn replace(&mut self, key: &[u8], rec: Record, version: u32) -> Result<bool, StoreError> {
            self.op()?;
            if self.races > 0 {
                self.races -= 1;
                let (r, v) = self.inner.load(key)?.unwrap_or_default();
                let bumped = Record {
                    a: r.a.max(1_000) + 1_000,
                    b: r.b,
                };
                if v == 0 {
                    self.inner.create(key, bumped)?;
                } else {
                    self.inner.replace(key, bumped, v)?;
                }
            }
            self.inner.replace(key, rec, version)
        }
    }

    proptest::proptest! {
        /// The one-check path decides, commits, retries and fails exactly as the general one.
        #[test]
        fn one_check_takes_the_same_steps_as_several(
            existing in proptest::option::of(0u64..20_000),
            burst in 1u64..4,
            races in 0u32..4,
            fail_at in proptest::option::of(1u32..8),
            retries in 0u32..4,
        ) {
            let check = Check {
                slot: b"k".to_vec(),
                params: Params::TokenBucket { t: 1_000, burst },
                cost: 1,
            };
            let store = || {
                let mut inner = MemoryStore::default();
                if let Some(a) = existing {
                    let _ = inner.create(b"k", Record { a, b: 0 });
                }
                Contended { inner, races, ops: 0, fail_at }
            };
            let (mut one, mut many) = (store(), store());
            let now = 5_000;
            let got = evaluate_one(&mut one, &check, now, retries);
            let want = evaluate_many(&mut many, std::slice::from_ref(&check), now, retries);
            proptest::prop_assert_eq!(got, want);
            proptest::prop_assert_eq!(one.inner.load(b"k").ok(), many.inner.load(b"k").ok());
        }
    }
}
