//! CIDR blocks (`10.0.0.0/8`, `2001:db8::/32`, or a bare address meaning one host) for the
//! allow and deny lists, and the masking used to group clients (`ipv6_mask: 64`).
//! Knows nothing of where an address comes from.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::text;
use super::units::{invalid, parse_u64, split_at_byte, UnitError};

/// An address block. The stored address has its host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The network address (host bits zero).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// Prefix length in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// True when `ip` is inside this block. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`)
    /// is compared as IPv4, so a dual-stack listener cannot be used to dodge a v4 list.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(ip, self.prefix) == self.addr
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses become plain IPv4; others are unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Clears all but the first `prefix` bits of `ip` (prefix is clamped to the family width).
#[inline(always)]
pub fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let p = u32::from(prefix.min(32));
            let bits = u32::from(v4);
            let m = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let p = u32::from(prefix.min(128));
            let bits = u128::from(v6);
            let m = if p == 0 { 0 } else { u128::MAX << (128 - p) };
            IpAddr::V6((bits & m).into())
        }
    }
}

impl FromStr for Cidr {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &[&str]| invalid("CIDR", s, why);
        let (a, p) = match split_at_byte(s.trim(), b'/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| bad(&["not an IPv4 or IPv6 address"]))?;
        let addr = canonical(addr);
        let (width, range) = if addr.is_ipv4() {
            (32, "prefix must be 0..=32")
        } else {
            (128, "prefix must be 0..=128")
        };
        let prefix = match p {
            None => width,
            Some(p) => parse_u64(p)
                .and_then(|p| u8::try_from(p).ok())
                .filter(|p| *p <= width)
                .ok_or_else(|| bad(&[range]))?,
        };
        let net = mask(addr, prefix);
        if net != addr {
            return Err(bad(&[
                "host bits are set; did you mean `",
                &net.to_string(),
                "/",
                &text::number(prefix.into()),
                "`?",
            ]));
        }
        Ok(Self { addr, prefix })
    }
}

impl TryFrom<String> for Cidr {
    type Error = UnitError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        c.to_string()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
#[path = "cidr_test.rs"]
mod tests;
