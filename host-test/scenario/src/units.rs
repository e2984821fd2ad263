//! Human units in scenario files: durations (`250ms`, `10s`, `2m`), request rates (`50/s`,
//! `600/m`) and percentages (`95%`, `0.5%`). Each parses from a string and deserializes with
//! serde. Knows nothing of plugins or hosts.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A duration written as `<number><unit>` with unit `ns`, `us`, `ms`, `s`, `m` or `h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Span(pub Duration);

/// A request rate written as `<number>/<unit>` with unit `s`, `m` (minute) or `h`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    per_second: f64,
}

/// A percentage written as `<number>%` (0 to 100).
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Percent(f64);

impl Span {
    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

impl Rate {
    /// Requests per second.
    pub fn per_second(self) -> f64 {
        self.per_second
    }
}

impl Percent {
    /// The fraction in 0..=1.
    pub fn fraction(self) -> f64 {
        self.0 / 100.0
    }
    /// The percentage in 0..=100.
    pub fn value(self) -> f64 {
        self.0
    }
}

fn split_number(s: &str) -> Option<(f64, &str)> {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, rest) = s.split_at(end);
    let n: f64 = num.parse().ok()?;
    n.is_finite().then_some((n, rest.trim()))
}

impl FromStr for Span {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("invalid duration `{s}`: expected a number and a unit (ns, us, ms, s, m, h), like `250ms` or `10s`")
        };
        let (n, unit) = split_number(s.trim()).ok_or_else(bad)?;
        let nanos_per = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" | "min" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        let nanos = n * nanos_per;
        if nanos > u64::MAX as f64 {
            return Err(format!("duration `{s}` is too long"));
        }
        Ok(Span(Duration::from_nanos(nanos.round() as u64)))
    }
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "invalid rate `{s}`: expected `<number>/<unit>` with unit s, m or h, like `50/s`"
            )
        };
        let (num, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let n: f64 = num.trim().parse().map_err(|_| bad())?;
        if !n.is_finite() || n < 0.0 {
            return Err(bad());
        }
        let secs = match unit.trim() {
            "s" | "sec" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        Ok(Rate {
            per_second: n / secs,
        })
    }
}

impl FromStr for Percent {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("invalid percentage `{s}`: expected a number from 0 to 100 followed by `%`, like `5%`")
        };
        let num = s.trim().strip_suffix('%').ok_or_else(bad)?;
        let n: f64 = num.trim().parse().map_err(|_| bad())?;
        if !(0.0..=100.0).contains(&n) {
            return Err(bad());
        }
        Ok(Percent(n))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s", self.per_second)
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

/// Deserializes any `FromStr<Err = String>` type from a YAML string.
struct StrVisitor<T>(std::marker::PhantomData<T>, &'static str);

impl<T: FromStr<Err = String>> Visitor<'_> for StrVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.1)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
}

macro_rules! serde_via_str {
    ($t:ty, $what:literal) => {
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str(StrVisitor(std::marker::PhantomData, $what))
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}

serde_via_str!(Span, "a duration like `250ms` or `10s`");
serde_via_str!(Rate, "a rate like `50/s`");
serde_via_str!(Percent, "a percentage like `5%`");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(
            "250ms".parse::<Span>().unwrap().get(),
            Duration::from_millis(250)
        );
        assert_eq!(
            "10s".parse::<Span>().unwrap().get(),
            Duration::from_secs(10)
        );
        assert_eq!(
            "1.5s".parse::<Span>().unwrap().get(),
            Duration::from_millis(1500)
        );
        assert_eq!(
            "2m".parse::<Span>().unwrap().get(),
            Duration::from_secs(120)
        );
        assert_eq!(
            "40us".parse::<Span>().unwrap().get(),
            Duration::from_micros(40)
        );
        assert!("10".parse::<Span>().unwrap_err().contains("unit"));
        assert!("ms".parse::<Span>().is_err());
        assert!("-1s".parse::<Span>().is_err());
    }

    #[test]
    fn rates_parse_per_unit() {
        assert_eq!("50/s".parse::<Rate>().unwrap().per_second(), 50.0);
        assert_eq!("600/m".parse::<Rate>().unwrap().per_second(), 10.0);
        assert_eq!("0/s".parse::<Rate>().unwrap().per_second(), 0.0);
        assert!("50".parse::<Rate>().is_err());
        assert!("50/d".parse::<Rate>().is_err());
        assert!("-5/s".parse::<Rate>().is_err());
    }

    #[test]
    fn percentages_are_bounded() {
        assert_eq!("5%".parse::<Percent>().unwrap().fraction(), 0.05);
        assert_eq!("0.5%".parse::<Percent>().unwrap().value(), 0.5);
        assert!("101%".parse::<Percent>().is_err());
        assert!("5".parse::<Percent>().is_err());
    }
}
