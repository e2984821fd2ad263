//! The SDK shared-data benchmark guest (`host-test/guests/bench_shared`) does what the
//! `shared_get_cas_set/guest_loop` benchmark says it times: every round is a get and a CAS
//! set that wins, so after N requests of R rounds the counter in the host's shared data is
//! N * R and its cas moved on by one per set. A bad configuration is refused at load.

use meshward_host::{Host, LoadError, PluginSpec, StreamProps};

const KEY: &[u8] = b"test/bench_shared";

fn counter(host: &Host) -> (u64, u32) {
    let (value, cas) = host
        .shared_data()
        .get_in("", KEY)
        .expect("the guest wrote the key");
    let bytes: [u8; 8] = value.as_slice().try_into().expect("an 8-byte counter");
    (u64::from_le_bytes(bytes), cas)
}

#[test]
fn every_round_reads_the_counter_and_wins_its_cas_set() {
    let host = Host::builder().build().expect("host");
    let spec = PluginSpec::new("bench_shared", meshward_artifacts::BENCH_SHARED)
        .plugin_config(b"rounds=250 key=test/bench_shared".to_vec());
    let plugin = host.load(spec).expect("plugin");
    // Two VMs on one key: each request's rounds run inside one callback, so every set wins.
    let mut workers = [
        host.worker(std::slice::from_ref(&plugin)).expect("worker"),
        host.worker(std::slice::from_ref(&plugin)).expect("worker"),
    ];
    let mut first_cas = None;
    for n in 1..=4u64 {
        let w = &mut workers[(n % 2) as usize];
        let id = w.open_http_stream(StreamProps::new());
        let flow = w
            .request_headers(id, &[(":path", "/")], true)
            .expect("request");
        assert!(matches!(flow, meshward_host::Flow::Continue), "{flow:?}");
        w.complete(id).expect("complete");
        w.release(id);
        let (value, cas) = counter(&host);
        assert_eq!(value, n * 250, "counter after request {n}");
        // The first set creates the key; each later one takes the next cas.
        let first = *first_cas.get_or_insert(cas.wrapping_sub(249));
        assert_eq!(
            u64::from(cas.wrapping_sub(first)),
            n * 250 - 1,
            "cas after request {n}"
        );
    }
    assert!(host.traps().is_empty(), "{:?}", host.traps());
    let errors: Vec<String> = host
        .logs()
        .into_iter()
        .map(|r| r.message)
        .filter(|m| m.contains("bench_shared"))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn a_counter_someone_else_wrote_is_continued_and_a_bad_configuration_is_refused() {
    let host = Host::builder().build().expect("host");
    host.shared_data().set_in("", KEY, &41u64.to_le_bytes(), 0);
    let spec = PluginSpec::new("bench_shared", meshward_artifacts::BENCH_SHARED)
        .plugin_config(b"key=test/bench_shared rounds=1".to_vec());
    let plugin = host.load(spec).expect("plugin");
    let mut w = host.worker(&[plugin]).expect("worker");
    let id = w.open_http_stream(StreamProps::new());
    w.request_headers(id, &[(":path", "/")], true)
        .expect("request");
    assert_eq!(counter(&host).0, 42);

    for bad in ["rounds=0", "rounds=10 size=1", ""] {
        let spec = PluginSpec::new("bench_shared", meshward_artifacts::BENCH_SHARED)
            .plugin_config(bad.as_bytes().to_vec());
        match host.load(spec) {
            Err(err @ LoadError::StartFailed { .. }) => assert!(
                err.to_string().contains("bad plugin configuration"),
                "{bad:?}: {err}"
            ),
            other => panic!("{bad:?} must be refused at load, got {other:?}"),
        }
    }
}
