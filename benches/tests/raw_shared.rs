//! The raw shared-data guest the benchmarks time does what it is named for: every round is a
//! get that finds the key and a CAS set that wins (each write takes the next cas), and the
//! value comes back unchanged.

use meshward_benches::raw_guest::{RAW_SHARED_KEY, RAW_SHARED_ROUNDS, RAW_SHARED_WAT};
use meshward_host::{Host, PluginSpec, StreamProps};

#[test]
fn every_round_reads_and_wins_its_cas_set() {
    let wasm = wat::parse_str(RAW_SHARED_WAT).expect("wat");
    let host = Host::builder().build().expect("host");
    let data = host.shared_data();
    data.set_in("", RAW_SHARED_KEY, b"seven", 0);
    let (_, first) = data.get_in("", RAW_SHARED_KEY).expect("key");
    let plugin = host
        .load(PluginSpec::new("raw_shared", wasm))
        .expect("plugin");
    let mut w = host.worker(&[plugin]).expect("worker");
    for n in 1..=3u32 {
        let id = w.open_http_stream(StreamProps::new());
        w.request_headers(id, &[], true).expect("request");
        w.complete(id).expect("complete");
        w.release(id);
        let (value, cas) = data.get_in("", RAW_SHARED_KEY).expect("key");
        assert_eq!(value, b"seven");
        assert_eq!(
            cas.wrapping_sub(first),
            n * RAW_SHARED_ROUNDS,
            "request {n}"
        );
    }
    assert!(host.traps().is_empty(), "{:?}", host.traps());
}
