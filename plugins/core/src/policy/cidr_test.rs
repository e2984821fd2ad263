//! Unit tests of `cidr.rs`.

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn contains_v4_v6_and_mapped() {
    let c: Cidr = "10.0.0.0/8".parse().unwrap();
    assert!(c.contains(ip("10.200.1.1")));
    assert!(c.contains(ip("::ffff:10.1.2.3")));
    assert!(!c.contains(ip("11.0.0.1")));
    let c6: Cidr = "2001:db8::/32".parse().unwrap();
    assert!(c6.contains(ip("2001:db8:1::5")));
    assert!(!c6.contains(ip("2001:db9::1")));
    assert!(!c6.contains(ip("10.0.0.1")));
    let host: Cidr = "203.0.113.7".parse().unwrap();
    assert_eq!(host.prefix(), 32);
    let all: Cidr = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains(ip("1.2.3.4")));
}

#[test]
fn refuses_host_bits_and_bad_prefix() {
    assert!("10.0.0.1/8"
        .parse::<Cidr>()
        .unwrap_err()
        .to_string()
        .contains("10.0.0.0/8"));
    assert!("10.0.0.0/33".parse::<Cidr>().is_err());
    assert!("nope/8".parse::<Cidr>().is_err());
}

#[test]
fn masks() {
    assert_eq!(mask(ip("192.168.7.9"), 24), ip("192.168.7.0"));
    assert_eq!(mask(ip("2001:db8:1:2:3:4:5:6"), 64), ip("2001:db8:1:2::"));
    assert_eq!(mask(ip("1.2.3.4"), 0), ip("0.0.0.0"));
}
