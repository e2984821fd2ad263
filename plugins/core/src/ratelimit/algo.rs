//! The four algorithms as pure functions over one 16-byte [`Record`] and a `now` in
//! nanoseconds (host time). No state of their own, no clock: the engine loads the record,
//! calls [`decide`], and stores the returned record with CAS; a losing CAS simply re-runs
//! the decision on the fresh record (governor's `measure_and_replace` idea, see
//! boinkor-net/governor `src/gcra.rs`, `src/state/in_memory.rs`).
//!
//! * Token bucket = GCRA. `t` is the emission interval (period / count), the state is the
//!   theoretical arrival time `tat`. A request of cost `n` fits when
//!   `max(tat, now) + n·t - now <= burst·t`. Exact: no rounding beyond `t` being whole ns.
//! * Leaky bucket (nginx `limit_req burst= delay=`): the same schedule, but a request that
//!   does not fit *now* is given a departure time instead: it waits `d = start - now` minus
//!   the `delay_after` requests that may go early, and is rejected when more than `burst`
//!   requests are ahead of it or when `d > max_delay`.
//! * Fixed window: windows aligned to the clock (`now / period`), at most `count` per window.
//! * Sliding window (counter approximation, as Cloudflare's): the previous window's count
//!   weighted by the part of it still inside the sliding window, plus the current count.
//!   Per aligned window it never admits more than `count`; in an arbitrary window of length
//!   `period` it admits at most `count·(1 + f) < 2·count`, where `f` is how far the current
//!   aligned window has advanced — reached only when the whole previous window's quota
//!   arrived in its last instant. It can also refuse a little early: steady traffic at the
//!   full `count` per window is estimated up to one request high at window starts; steady
//!   traffic at 90% of `count` is not refused (tested).

/// 16 bytes of per-slot state: `a` and `b` mean what the algorithm says (buckets: `a = tat`,
/// `b` = ns of reservations given back so far, see [`refund`]; windows: `a = window index`,
/// `b = current count << 32 | previous count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Record {
    /// First word.
    pub a: u64,
    /// Second word.
    pub b: u64,
}

impl Record {
    /// Little-endian bytes (the shared-data value).
    pub fn to_bytes(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        let (x, y) = out.split_at_mut(8);
        x.copy_from_slice(&self.a.to_le_bytes());
        y.copy_from_slice(&self.b.to_le_bytes());
        out
    }

    /// From bytes; anything that is not exactly 16 bytes reads as a fresh record.
    pub fn from_bytes(bytes: &[u8]) -> Record {
        let mut a = [0u8; 8];
        let mut b = [0u8; 8];
        if bytes.len() == 16 {
            if let (Some(x), Some(y)) = (bytes.get(..8), bytes.get(8..)) {
                a.copy_from_slice(x);
                b.copy_from_slice(y);
            }
        }
        Record {
            a: u64::from_le_bytes(a),
            b: u64::from_le_bytes(b),
        }
    }
}

/// Which algorithm and its numbers (already adjusted for the request's tier).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Params {
    /// GCRA: `t` ns per unit, `burst` units at once.
    TokenBucket { t: u64, burst: u64 },
    /// Pacing: `t` ns per unit; `burst` requests may wait; the first `delay_after` of them
    /// go without waiting; nobody waits longer than `max_delay` ns.
    LeakyBucket {
        t: u64,
        burst: u64,
        delay_after: u64,
        max_delay: u64,
    },
    /// `count` per aligned window of `window` ns.
    FixedWindow { count: u64, window: u64 },
    /// `count` per sliding window of `window` ns (counter approximation).
    SlidingWindow { count: u64, window: u64 },
}

/// What one rule says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go now (after `delay_ns`, 0 for all but the leaky bucket); store `next`.
    Allow {
        /// Record to store.
        next: Record,
        /// Wait this long before forwarding.
        delay_ns: u64,
        /// Units left right after this request.
        remaining: u64,
        /// Ns until the quota is whole again (window end / bucket full).
        reset_ns: u64,
    },
    /// Not now; nothing to store.
    Reject {
        /// Ns until a request of the same cost could pass.
        retry_after_ns: u64,
        /// Ns until the quota is whole again.
        reset_ns: u64,
    },
}

impl Params {
    /// The quota a client sees (`q` of RateLimit-Policy) and its window in ns.
    pub fn quota(&self) -> (u64, u64) {
        match *self {
            Params::TokenBucket { t, burst } => (burst, sat_mul(t, burst)),
            Params::LeakyBucket { t, burst, .. } => {
                (burst + 1, sat_mul(t, burst.saturating_add(1)))
            }
            Params::FixedWindow { count, window } | Params::SlidingWindow { count, window } => {
                (count, window)
            }
        }
    }
}

/// `a * b`, saturating at `u64::MAX`. On wasm32 `u64::saturating_mul` calls the 128-bit
/// multiply (`__multi3`, ~70 instructions) to detect overflow; when the operands' bit
/// lengths add up to at most 64 the product cannot overflow, which is every request path
/// with realistic numbers, so that case is one plain multiply.
#[inline]
fn sat_mul(a: u64, b: u64) -> u64 {
    if a.leading_zeros() + b.leading_zeros() >= 64 {
        a.wrapping_mul(b)
    } else {
        a.saturating_mul(b)
    }
}

fn split(b: u64) -> (u64, u64) {
    (b >> 32, b & 0xffff_ffff)
}

fn join(curr: u64, prev: u64) -> u64 {
    (curr.min(0xffff_ffff) << 32) | prev.min(0xffff_ffff)
}

/// Decides one request of `cost` units at `now` against `rec` (`None` = never seen).
pub fn decide(p: &Params, rec: Option<Record>, now: u64, cost: u64) -> Verdict {
    match *p {
        Params::TokenBucket { t, burst } => {
            let tat = rec.map_or(0, |r| r.a).max(now);
            let new_tat = tat.saturating_add(sat_mul(cost, t));
            let capacity = sat_mul(burst, t);
            let ahead = new_tat - now;
            if ahead <= capacity {
                Verdict::Allow {
                    next: Record {
                        a: new_tat,
                        b: rec.map_or(0, |r| r.b),
                    },
                    delay_ns: 0,
                    remaining: (capacity - ahead) / t.max(1),
                    reset_ns: ahead,
                }
            } else {
                Verdict::Reject {
                    retry_after_ns: ahead - capacity,
                    reset_ns: tat - now,
                }
            }
        }
        Params::LeakyBucket {
            t,
            burst,
            delay_after,
            max_delay,
        } => {
            // `start` is when this request leaves the bucket; `start - now` is the queue
            // ahead of it in time, `(start - now) / t` in requests.
            let start = rec.map_or(0, |r| r.a).max(now);
            let wait = start - now;
            let ahead = wait / t.max(1);
            let excess_cost = cost.saturating_sub(1);
            if ahead.saturating_add(excess_cost) > burst {
                return Verdict::Reject {
                    retry_after_ns: wait.saturating_sub(sat_mul(burst, t)).max(1),
                    reset_ns: wait,
                };
            }
            let delay = wait.saturating_sub(sat_mul(delay_after, t));
            if delay > max_delay {
                return Verdict::Reject {
                    retry_after_ns: delay - max_delay,
                    reset_ns: wait,
                };
            }
            let next = start.saturating_add(sat_mul(cost, t));
            Verdict::Allow {
                next: Record {
                    a: next,
                    b: rec.map_or(0, |r| r.b),
                },
                delay_ns: delay,
                remaining: burst.saturating_sub(ahead + excess_cost),
                reset_ns: next - now,
            }
        }
        Params::FixedWindow { count, window } => {
            let w = window.max(1);
            let idx = now / w;
            let used = match rec {
                Some(r) if r.a == idx => split(r.b).0,
                _ => 0,
            };
            let reset = sat_mul(idx + 1, w).saturating_sub(now);
            if used.saturating_add(cost) <= count {
                Verdict::Allow {
                    next: Record {
                        a: idx,
                        b: join(used + cost, 0),
                    },
                    delay_ns: 0,
                    remaining: count - used - cost,
                    reset_ns: reset,
                }
            } else {
                Verdict::Reject {
                    retry_after_ns: reset,
                    reset_ns: reset,
                }
            }
        }
        Params::SlidingWindow { count, window } => {
            let w = window.max(1);
            let idx = now / w;
            let (curr, prev) = match rec {
                Some(r) if r.a == idx => split(r.b),
                Some(r) if r.a.checked_add(1) == Some(idx) => (0, split(r.b).0),
                _ => (0, 0),
            };
            let into = now - idx * w; // ns into the current window
            let left = w - into; // part of the previous window still inside the sliding one
                                 // estimate = prev·left/w + curr, compared without floats: est·w = prev·left + curr·w
            let est_w = u128::from(prev) * u128::from(left) + u128::from(curr) * u128::from(w);
            let allowed_w = u128::from(count.saturating_sub(cost)) * u128::from(w);
            let reset = w - into;
            if est_w <= allowed_w {
                let used_w = est_w + u128::from(cost) * u128::from(w);
                let remaining = ((u128::from(count) * u128::from(w)).saturating_sub(used_w)
                    / u128::from(w)) as u64;
                Verdict::Allow {
                    next: Record {
                        a: idx,
                        b: join(curr + cost, prev),
                    },
                    delay_ns: 0,
                    remaining,
                    reset_ns: reset,
                }
            } else {
                // When will prev·left'/w + curr + cost <= count? Only `left` shrinks (until
                // the window ends, after which curr becomes prev).
                let need = u128::from(count.saturating_sub(cost)).saturating_sub(u128::from(curr));
                let retry = if prev == 0 || u128::from(curr) + u128::from(cost) > u128::from(count)
                {
                    reset
                } else {
                    // left' <= need·w/prev
                    let left_ok =
                        u64::try_from(need * u128::from(w) / u128::from(prev)).unwrap_or(u64::MAX);
                    left.saturating_sub(left_ok).max(1)
                };
                Verdict::Reject {
                    retry_after_ns: retry,
                    reset_ns: reset,
                }
            }
        }
    }
}

/// Gives back what one admitted request took when it did not reach upstream after all (a
/// later rule or the global service refused it, or it was paced and gave up: its deadline
/// passed or its client left). `taken` is the record the request's own commit stored (the
/// `next` of its [`Verdict::Allow`]); `rec` is the slot now. Refunding never makes the slot
/// emptier than if the request had never arrived, so it cannot cause over-admission:
///
/// * Buckets: the request reserved `[taken.a - cost·t, taken.a)`. Only the part still ahead
///   of `now` comes back (time already past has leaked away as it would have anyway). Its
///   place in the schedule may have moved forward since, because requests ahead of it gave
///   theirs back: every refund adds what it gave back to `b`, and the reservation is
///   assumed to have moved by all the refunds since `taken` (`rec.b - taken.b`). That
///   assumption is exact when those refunds were ahead of it and under-refunds when some were
///   behind it; it is never too generous. A request that gives up before its turn, with no
///   other refund on the slot meanwhile, is given back whole: the slot is then exactly as if
///   the request had never arrived.
/// * Windows: the count, if the record still counts the request's window (the current window;
///   for the sliding window also the previous one, which the estimate still weighs).
pub fn refund(p: &Params, rec: Record, now: u64, cost: u64, taken: Record) -> Record {
    match *p {
        Params::TokenBucket { t, .. } | Params::LeakyBucket { t, .. } => {
            let moved = rec.b.wrapping_sub(taken.b);
            let end = taken.a.saturating_sub(moved);
            let back = sat_mul(cost, t).min(end.saturating_sub(now));
            let a = rec.a.saturating_sub(back).max(now.min(rec.a));
            Record {
                a,
                b: rec.b.wrapping_add(rec.a.saturating_sub(a)),
            }
        }
        Params::FixedWindow { .. } => {
            if rec.a == taken.a {
                let (curr, prev) = split(rec.b);
                Record {
                    a: rec.a,
                    b: join(curr.saturating_sub(cost), prev),
                }
            } else {
                rec
            }
        }
        Params::SlidingWindow { .. } => {
            let (curr, prev) = split(rec.b);
            if rec.a == taken.a {
                Record {
                    a: rec.a,
                    b: join(curr.saturating_sub(cost), prev),
                }
            } else if taken.a.checked_add(1) == Some(rec.a) {
                Record {
                    a: rec.a,
                    b: join(curr, prev.saturating_sub(cost)),
                }
            } else {
                rec
            }
        }
    }
}
