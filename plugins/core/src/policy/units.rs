//! Value types of the policy file: `Rate` (`100/s`, `6000/min`, `10/h`, `500/10s`) and
//! `Duration` (`250ms`, `60s`, `5m`). Parsed from and written back to their string form,
//! validated on parse, so no code downstream sees a zero or overflowing value.
//! Knows nothing of routes or filters.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::text::concat;

const NS_PER_US: u64 = 1_000;
const NS_PER_MS: u64 = 1_000_000;
const NS_PER_S: u64 = 1_000_000_000;
const NS_PER_MIN: u64 = 60 * NS_PER_S;
const NS_PER_H: u64 = 60 * NS_PER_MIN;
const NS_PER_D: u64 = 24 * NS_PER_H;

/// Why a `Rate` or `Duration` string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnitError(pub(crate) String);

/// A time span in nanoseconds, written `250ms`, `60s`, `5m`/`5min`, `1h`, `100us`, `10ns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Duration {
    nanos: u64,
}

impl Duration {
    /// From nanoseconds.
    pub const fn from_nanos(nanos: u64) -> Self {
        Self { nanos }
    }

    /// From milliseconds (saturating).
    pub const fn from_millis(ms: u64) -> Self {
        Self {
            nanos: ms.saturating_mul(NS_PER_MS),
        }
    }

    /// Nanoseconds.
    pub const fn as_nanos(self) -> u64 {
        self.nanos
    }

    /// Whole milliseconds, rounded up (what a host timer or timeout wants).
    pub const fn as_millis_ceil(self) -> u64 {
        self.nanos.div_ceil(NS_PER_MS)
    }

    /// As `std::time::Duration`.
    pub const fn as_std(self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.nanos)
    }

    /// True for `0s`.
    pub const fn is_zero(self) -> bool {
        self.nanos == 0
    }
}

fn unit_nanos(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" => NS_PER_US,
        "ms" => NS_PER_MS,
        "s" | "sec" | "second" | "seconds" => NS_PER_S,
        "m" | "min" | "minute" | "minutes" => NS_PER_MIN,
        "h" | "hour" | "hours" => NS_PER_H,
        "d" | "day" | "days" => NS_PER_D,
        _ => return None,
    })
}

/// `s` as an unsigned integer, as `u64::from_str` reads it (one optional `+`, then ASCII
/// digits; `None` when empty, anything else or too large). (One loop instead of core's
/// generic integer parser.)
pub(super) fn parse_u64(s: &str) -> Option<u64> {
    let digits = s.strip_prefix('+').unwrap_or(s);
    if digits.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for b in digits.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

/// `s` split around the first `sep` (an ASCII byte), without it. (Not `split_once(char)`,
/// whose searcher and `memchr` nothing else in the filters needs.)
pub(super) fn split_at_byte(s: &str, sep: u8) -> Option<(&str, &str)> {
    let i = s.bytes().position(|b| b == sep)?;
    Some((s.get(..i)?, s.get(i + 1..)?))
}

/// `invalid {what} `{s}`: {why...}`: every refusal of a unit, key or CIDR string, built by
/// one function from pieces.
pub(super) fn invalid(what: &str, s: &str, why: &[&str]) -> UnitError {
    let mut m = concat(&["invalid ", what, " `", s, "`: "]);
    for part in why {
        m.push_str(part);
    }
    UnitError(m)
}

/// The leading ASCII digits of `s` and the rest. (`split_at_checked`: the index is always a
/// char boundary, but `split_at`'s panic path would bring core's char-escaping `Debug` and
/// its Unicode tables into the filters' Wasm, ~4 KB.)
fn split_number(s: &str) -> (&str, &str) {
    let end = s
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    s.split_at_checked(end).unwrap_or((s, ""))
}

impl FromStr for Duration {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (num, unit) = split_number(s.trim());
        // Why `s` is refused, in pieces: one `invalid` call for every refusal.
        let why: [&str; 3] = if num.is_empty() || unit.is_empty() {
            [
                "expected an integer and a unit, e.g. `250ms`, `60s`, `5m`",
                "",
                "",
            ]
        } else {
            match (parse_u64(num), unit_nanos(unit)) {
                (None, _) => ["number too large", "", ""],
                (Some(_), None) => ["unknown unit `", unit, "` (use ns, us, ms, s, m, h, d)"],
                (Some(n), Some(per)) => match n.checked_mul(per) {
                    Some(nanos) => return Ok(Self { nanos }),
                    None => ["too large", "", ""],
                },
            }
        };
        Err(invalid("duration", s, &why))
    }
}

impl TryFrom<String> for Duration {
    type Error = UnitError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Duration> for String {
    fn from(d: Duration) -> String {
        d.to_string()
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.nanos;
        for (unit, per) in [
            ("h", NS_PER_H),
            ("m", NS_PER_MIN),
            ("s", NS_PER_S),
            ("ms", NS_PER_MS),
            ("us", NS_PER_US),
        ] {
            if n != 0 && n % per == 0 {
                return write!(f, "{}{unit}", n / per);
            }
        }
        if n == 0 {
            return write!(f, "0s");
        }
        write!(f, "{n}ns")
    }
}

/// A rate: `count` events per `period`. Written `100/s`, `6000/min`, `10/h`, `1000/d`,
/// or with a multiple of the unit, `500/10s`. Both parts are > 0 once parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Rate {
    count: u64,
    period_nanos: u64,
}

impl Rate {
    /// 1/s: what a rule's `rate` holds while the rule is read (a rule without one is refused).
    pub(crate) const PLACEHOLDER: Rate = Rate {
        count: 1,
        period_nanos: NS_PER_S,
    };

    /// `count` per `period`; `None` when either is zero.
    pub fn new(count: u64, period: Duration) -> Option<Self> {
        (count > 0 && period.nanos > 0).then_some(Self {
            count,
            period_nanos: period.nanos,
        })
    }

    /// Events per period.
    pub const fn count(self) -> u64 {
        self.count
    }

    /// The period.
    pub const fn period(self) -> Duration {
        Duration::from_nanos(self.period_nanos)
    }

    /// Time between two events at this rate (the GCRA emission interval `t`), at least 1 ns.
    pub const fn interval_nanos(self) -> u64 {
        // (`checked_div`: `count` is never 0 once parsed, but a plain division would keep
        // a divide-by-zero panic in the request path.)
        match self.period_nanos.checked_div(self.count) {
            Some(t) if t > 0 => t,
            _ => 1,
        }
    }

    /// Events per second as a float (for display and headers only).
    pub fn per_second(self) -> f64 {
        self.count as f64 * NS_PER_S as f64 / self.period_nanos as f64
    }
}

impl FromStr for Rate {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_rate(s).map_err(|why| {
            invalid(
                "rate",
                s,
                &[
                    why,
                    " (expected e.g. `100/s`, `6000/min`, `10/h`, `500/10s`)",
                ],
            )
        })
    }
}

/// A rate, or why not (one message built for every refusal).
fn parse_rate(s: &str) -> Result<Rate, &'static str> {
    let (count, per) = split_at_byte(s.trim(), b'/').ok_or("missing `/`")?;
    let count = parse_u64(count.trim()).ok_or("the count must be a whole number")?;
    if count == 0 {
        return Err("the count must be greater than zero");
    }
    let (mult, unit) = split_number(per.trim());
    let mult = if mult.is_empty() {
        1
    } else {
        parse_u64(mult).ok_or("period too large")?
    };
    let unit_ns = unit_nanos(unit).ok_or("unknown period unit")?;
    let period_nanos = mult
        .checked_mul(unit_ns)
        .filter(|p| *p > 0)
        .ok_or("the period must be greater than zero and not overflow")?;
    Ok(Rate {
        count,
        period_nanos,
    })
}

impl TryFrom<String> for Rate {
    type Error = UnitError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Rate> for String {
    fn from(r: Rate) -> String {
        r.to_string()
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.period_nanos;
        for (unit, per) in [
            ("d", NS_PER_D),
            ("h", NS_PER_H),
            ("min", NS_PER_MIN),
            ("s", NS_PER_S),
            ("ms", NS_PER_MS),
        ] {
            if p == per {
                return write!(f, "{}/{unit}", self.count);
            }
        }
        write!(f, "{}/{}", self.count, Duration::from_nanos(p))
    }
}

#[cfg(test)]
#[path = "units_test.rs"]
mod tests;
