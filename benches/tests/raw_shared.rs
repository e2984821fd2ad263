//! The raw-ABI guests the benchmarks time do what they are named for: the no-op guest lets
//! requests through; in the shared-data guest every round is a get that finds the key and a
//! CAS set that wins (each write takes the next cas), and the value comes back unchanged.

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

#[test]
fn the_raw_noop_guest_lets_every_request_through() {
    let wasm = wat::parse_str(meshward_benches::raw_guest::RAW_NOOP_WAT).expect("wat");
    let host = Host::builder().build().expect("host");
    let plugin = host
        .load(PluginSpec::new("raw_noop", wasm))
        .expect("plugin");
    let mut w = host.worker(&[plugin]).expect("worker");
    for _ in 0..3 {
        let id = w.open_http_stream(StreamProps::new());
        let flow = w
            .request_headers(id, &[(":path", "/")], true)
            .expect("request");
        assert!(matches!(flow, meshward_host::Flow::Continue), "{flow:?}");
        w.complete(id).expect("complete");
        w.release(id);
    }
    assert!(host.traps().is_empty(), "{:?}", host.traps());
}
