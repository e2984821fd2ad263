//! Plugins nobody here wrote: re-creations of the proxy-wasm Rust SDK's examples
//! (`host-test/guests/sdk_*`, see their file headers for the source). Each test asserts what
//! the example's README says Envoy does with it.

mod common;

use common::*;
use meshward_host::{
    CalloutReply, FailStrategy, Flow, Host, HttpCallRequest, HttpResponse, PluginSpec, StreamProps,
    VirtualClock,
};
use std::time::Duration;

#[test]
fn http_headers_logs_headers_and_answers_hello() {
    let (host, _) = host();
    let plugin = host
        .load(PluginSpec::new(
            "http_headers",
            meshward_artifacts::SDK_HTTP_HEADERS,
        ))
        .expect("loads");
    let mut w = host.worker(&[plugin]).expect("worker");

    let id = w.open_http_stream(StreamProps::new());
    let flow = w.request_headers(id, &get("/hello"), true).unwrap();
    let Flow::LocalReply(reply) = flow else {
        panic!("/hello is answered by the plugin: {flow:?}");
    };
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, b"Hello, World!\n");
    assert_eq!(reply.headers.get("hello"), Some("World"));
    assert_eq!(reply.headers.get("powered-by"), Some("proxy-wasm"));
    w.complete(id).unwrap();

    let id = w.open_http_stream(StreamProps::new());
    assert_eq!(
        w.request_headers(id, &get("/other"), true).unwrap(),
        Flow::Continue
    );
    w.response_headers(id, &[(":status", "200"), ("server", "test")], true)
        .unwrap();
    w.complete(id).unwrap();

    let log = lines(&host, "http_headers");
    let has = |suffix: &str| {
        log.iter()
            .any(|l| l.starts_with('#') && l.ends_with(suffix))
    };
    assert!(has(" -> :path: /hello"), "{log:#?}");
    assert!(has(" -> :authority: svc.local"), "{log:#?}");
    // Its own local reply passes through its response callback (Envoy's encoder chain).
    assert!(
        has(" <- :status: 200") && has(" <- hello: World"),
        "{log:#?}"
    );
    assert!(
        has(" -> :path: /other") && has(" <- server: test"),
        "{log:#?}"
    );
    assert_eq!(
        log.iter().filter(|l| l.ends_with(" completed.")).count(),
        2,
        "{log:#?}"
    );
}

fn auth_host(first_byte: Option<u8>) -> Host {
    let mut b = Host::builder().clock(VirtualClock::new(START));
    if let Some(byte) = first_byte {
        b = b.http_cluster("httpbin", move |req: &HttpCallRequest| {
            assert_eq!(req.header(":path"), Some("/bytes/1"));
            CalloutReply::Respond {
                after: Duration::from_millis(20),
                response: HttpResponse::new(200, vec![byte]),
            }
        });
    }
    b.build().expect("host")
}

#[test]
fn http_auth_random_grants_on_even_byte_and_forbids_on_odd() {
    for (byte, granted) in [(2u8, true), (7u8, false)] {
        let host = auth_host(Some(byte));
        let plugin = host
            .load(PluginSpec::new(
                "auth",
                meshward_artifacts::SDK_HTTP_AUTH_RANDOM,
            ))
            .expect("loads");
        let mut w = host.worker(&[plugin]).expect("worker");
        let id = w.open_http_stream(StreamProps::new());
        assert_eq!(
            w.request_headers(id, &get("/headers"), true).unwrap(),
            Flow::Paused { plugin: 0 }
        );
        w.advance(Duration::from_millis(20));
        if granted {
            assert!(w.stream(id).unwrap().forwarded_upstream());
            w.response_headers(id, &[(":status", "200")], true).unwrap();
            let s = w.stream(id).unwrap();
            assert_eq!(s.response_headers().get("powered-by"), Some("proxy-wasm"));
            assert!(lines(&host, "auth").contains(&"Access granted.".to_string()));
        } else {
            let s = w.stream(id).unwrap();
            let reply = s.local_reply().expect("403");
            assert_eq!(reply.status, 403);
            assert_eq!(reply.body, b"Access forbidden.\n");
            assert_eq!(reply.headers.get("powered-by"), Some("proxy-wasm"));
            assert!(!s.forwarded_upstream());
            assert!(lines(&host, "auth").contains(&"Access forbidden.".to_string()));
        }
        w.complete(id).unwrap();
    }
}

#[test]
fn http_auth_random_without_its_cluster_panics_like_in_envoy() {
    // Without the cluster, dispatch_http_call gets BAD_ARGUMENT and the example's unwrap()
    // panics: the VM traps (rust-sdk#172 territory), and fail-closed answers 503.
    let host = auth_host(None);
    let plugin = host
        .load(
            PluginSpec::new("auth", meshward_artifacts::SDK_HTTP_AUTH_RANDOM)
                .fail_strategy(FailStrategy::FailClosed),
        )
        .expect("loads");
    let mut w = host.worker(&[plugin]).expect("worker");
    let id = w.open_http_stream(StreamProps::new());
    let flow = w.request_headers(id, &get("/headers"), true).unwrap();
    assert!(
        matches!(&flow, Flow::LocalReply(r) if r.status == 503),
        "{flow:?}"
    );
    assert_eq!(host.traps().len(), 1);
    assert!(lines(&host, "auth")
        .iter()
        .any(|l| l.contains("BadArgument")));
}

#[test]
fn hello_world_greets_and_ticks_every_five_seconds() {
    let (host, _) = host();
    let plugin = host
        .load(PluginSpec::new(
            "hello",
            meshward_artifacts::SDK_HELLO_WORLD,
        ))
        .expect("loads");
    let mut w = host.worker(&[plugin]).expect("worker");
    w.advance(Duration::from_secs(15));
    let log = lines(&host, "hello");
    // Once for the configuration check, once for the worker VM.
    assert_eq!(
        log.iter().filter(|l| *l == "Hello, World!").count(),
        2,
        "{log:#?}"
    );
    let start_s = START / 1_000_000_000;
    for k in 1..=3u64 {
        let prefix = format!("It's {}, your lucky number is ", start_s + 5 * k);
        assert!(
            log.iter().any(|l| l.starts_with(&prefix)),
            "missing tick {k}: {log:#?}"
        );
    }
    assert_eq!(log.iter().filter(|l| l.starts_with("It's ")).count(), 3);
}
