//! Unit tests of `units.rs`.

use super::*;

#[test]
fn rates_parse_and_round_trip() {
    for (text, count, period) in [
        ("100/s", 100, NS_PER_S),
        ("6000/min", 6000, NS_PER_MIN),
        ("10/h", 10, NS_PER_H),
        ("1000/d", 1000, NS_PER_D),
        ("500/10s", 500, 10 * NS_PER_S),
    ] {
        let r: Rate = text.parse().unwrap();
        assert_eq!(
            (r.count(), r.period().as_nanos()),
            (count, period),
            "{text}"
        );
        let back: Rate = r.to_string().parse().unwrap();
        assert_eq!(back, r);
    }
    assert_eq!("6000/min".parse::<Rate>().unwrap().to_string(), "6000/min");
}

#[test]
fn bad_rates_are_refused_with_the_reason() {
    for text in ["0/s", "10", "10/", "10/fortnight", "x/s", "10/0s", "-1/s"] {
        let e = text.parse::<Rate>().unwrap_err().to_string();
        assert!(e.contains(text), "{e}");
    }
}

#[test]
fn durations_parse() {
    assert_eq!(
        "250ms".parse::<Duration>().unwrap().as_nanos(),
        250 * NS_PER_MS
    );
    assert_eq!("60s".parse::<Duration>().unwrap().as_nanos(), 60 * NS_PER_S);
    assert_eq!("5m".parse::<Duration>().unwrap().to_string(), "5m");
    assert_eq!("1500ms".parse::<Duration>().unwrap().to_string(), "1500ms");
    assert!("250".parse::<Duration>().is_err());
    assert!("ms".parse::<Duration>().is_err());
    assert!("2weeks".parse::<Duration>().is_err());
}

#[test]
fn parse_u64_reads_what_u64_from_str_reads() {
    for s in [
        "",
        "+",
        "0",
        "+7",
        "007",
        "-1",
        " 1",
        "1 ",
        "18446744073709551615",
        "18446744073709551616",
        "1x",
        "++1",
        "٣",
    ] {
        assert_eq!(parse_u64(s), s.parse::<u64>().ok(), "{s:?}");
    }
    assert_eq!(split_at_byte("a/b/c", b'/'), Some(("a", "b/c")));
    assert_eq!(split_at_byte("abc", b'/'), None);
}

#[test]
fn refusals_are_worded_exactly() {
    let rate = |s: &str| s.parse::<Rate>().unwrap_err().to_string();
    let tail = " (expected e.g. `100/s`, `6000/min`, `10/h`, `500/10s`)";
    assert_eq!(rate("10"), format!("invalid rate `10`: missing `/`{tail}"));
    assert_eq!(
        rate("x/s"),
        format!("invalid rate `x/s`: the count must be a whole number{tail}")
    );
    assert_eq!(
        rate("0/s"),
        format!("invalid rate `0/s`: the count must be greater than zero{tail}")
    );
    assert_eq!(
        rate("1/99999999999999999999s"),
        format!("invalid rate `1/99999999999999999999s`: period too large{tail}")
    );
    assert_eq!(
        rate("1/fortnight"),
        format!("invalid rate `1/fortnight`: unknown period unit{tail}")
    );
    assert_eq!(
        rate("1/0s"),
        format!("invalid rate `1/0s`: the period must be greater than zero and not overflow{tail}")
    );
    let duration = |s: &str| s.parse::<Duration>().unwrap_err().to_string();
    assert_eq!(
        duration("ms"),
        "invalid duration `ms`: expected an integer and a unit, e.g. `250ms`, `60s`, `5m`"
    );
    assert_eq!(
        duration("99999999999999999999s"),
        "invalid duration `99999999999999999999s`: number too large"
    );
    assert_eq!(
        duration("2weeks"),
        "invalid duration `2weeks`: unknown unit `weeks` (use ns, us, ms, s, m, h, d)"
    );
    assert_eq!(
        duration("999999999999d"),
        "invalid duration `999999999999d`: too large"
    );
}
