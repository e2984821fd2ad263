//! `meshward serve` as a user runs it: the built binary with the real rate-limit module in
//! front of a real upstream on 127.0.0.1, a gRPC rate limit service reached over HTTP/2,
//! plain HTTP/1.1 requests from outside, the admin page, and Ctrl-C. The servers the test
//! starts listen on 127.0.0.1:0 and stop with the test's runtime.

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// Envoy's RLS v3 messages, written from envoy/service/ratelimit/v3/rls.proto for the test.
mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Request {
        #[prost(string, tag = "1")]
        pub domain: String,
        #[prost(message, repeated, tag = "2")]
        pub descriptors: Vec<Descriptor>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Descriptor {
        #[prost(message, repeated, tag = "1")]
        pub entries: Vec<Entry>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Entry {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Response {
        #[prost(int32, tag = "1")]
        pub overall_code: i32,
        #[prost(message, repeated, tag = "2")]
        pub statuses: Vec<Status>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Status {
        #[prost(int32, tag = "1")]
        pub code: i32,
    }
}

const RLS_PATH: &str = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";

/// The upstream: 200 with a body naming the path, and the request id it saw.
async fn upstream(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut r = Response::new(Full::new(Bytes::from(format!(
        "hello from upstream {}",
        req.uri().path()
    ))));
    if let Some(id) = req.headers().get("x-request-id") {
        r.headers_mut().insert("x-seen-request-id", id.clone());
    }
    if let Some(xff) = req.headers().get("x-forwarded-for") {
        r.headers_mut().insert("x-seen-xff", xff.clone());
    }
    Ok(r)
}

/// The rate limit service: OVER_LIMIT for `x-org: blocked`, OK otherwise; records what the
/// filter asked (decoded from the bytes that came over the wire).
async fn rls(
    req: Request<Incoming>,
    seen: Arc<Mutex<Vec<proto::Request>>>,
) -> Result<Response<BoxBody<Bytes, Infallible>>, Infallible> {
    assert_eq!(req.uri().path(), RLS_PATH);
    assert_eq!(
        req.headers().get("content-type").unwrap(),
        "application/grpc"
    );
    let body = req.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body[0], 0, "uncompressed");
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    assert_eq!(body.len(), 5 + len);
    let ask = <proto::Request as prost::Message>::decode(&body[5..]).expect("RateLimitRequest");
    let blocked = ask
        .descriptors
        .iter()
        .flat_map(|d| &d.entries)
        .any(|e| e.key == "x-org" && e.value == "blocked");
    seen.lock().unwrap().push(ask);
    let code = if blocked { 2 } else { 1 };
    let msg = prost::Message::encode_to_vec(&proto::Response {
        overall_code: code,
        statuses: vec![proto::Status { code }],
    });
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    framed.extend_from_slice(&msg);
    let body = Full::new(Bytes::from(framed))
        .with_trailers(async {
            let mut t = HeaderMap::new();
            t.insert("grpc-status", HeaderValue::from_static("0"));
            Some(Ok(t))
        })
        .boxed();
    let mut r = Response::new(body);
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    Ok(r)
}

/// An HTTP/1.1 server on 127.0.0.1 answering with `f`; it lives as long as `rt`.
fn http1_server<F, Fut>(rt: &tokio::runtime::Runtime, f: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    let l = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = l.local_addr().unwrap();
    rt.spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let f = f.clone();
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), service_fn(f)),
            );
        }
    });
    addr
}

/// Starts the upstream (HTTP/1.1) and the RLS (HTTP/2) on 127.0.0.1; they live as long as `rt`.
fn start_servers(
    rt: &tokio::runtime::Runtime,
) -> (SocketAddr, SocketAddr, Arc<Mutex<Vec<proto::Request>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let up_addr = http1_server(rt, upstream);
    let rl = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let rl_addr = rl.local_addr().unwrap();
    let recorded = Arc::clone(&seen);
    rt.spawn(async move {
        while let Ok((s, _)) = rl.accept().await {
            let recorded = Arc::clone(&recorded);
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new()).serve_connection(
                    TokioIo::new(s),
                    service_fn(move |req| rls(req, Arc::clone(&recorded))),
                ),
            );
        }
    });
    (up_addr, rl_addr, seen)
}

/// Removes a test's directory when the test ends.
struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `meshward serve`, killed if the test fails before stopping it.
struct Serve {
    child: Child,
    listen: String,
    admin: String,
    log: std::path::PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    fn start(dir: &std::path::Path, args: &[&str]) -> Serve {
        let log = dir.join("serve.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_meshward"))
            .arg("serve")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("run meshward serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_default();
        let mut s = Serve {
            child,
            listen: String::new(),
            admin: String::new(),
            log,
        };
        let field = |after: &str| {
            line.split(after)
                .nth(1)
                .and_then(|r| r.split(['/', ' ', ',']).next())
                .map(String::from)
        };
        match (field("listening on http://"), field("admin http://")) {
            (Some(l), Some(a)) => {
                s.listen = l;
                s.admin = a;
            }
            _ => panic!("no address line: {line:?}\n{}", s.stderr()),
        }
        s
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Ctrl-C, then wait (bounded) for a clean exit.
    fn interrupt(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-INT", &pid]).status().unwrap();
        assert!(sent.success());
        for _ in 0..300 {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "meshward serve did not stop after SIGINT\n{}",
            self.stderr()
        );
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on its own connection.
fn get(addr: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nhost: shop.local\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete answer");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}{{}} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

const POLICY: &str = r#"{
  "apiVersion": "meshward.io/v1alpha1", "kind": "Policy", "service": "orders",
  "routes": [
    {"name": "limited", "match": {"path": {"prefix": "/limited"}},
     "ratelimit": {"rules": [{"name": "per-client", "rate": "1/h", "burst": 3}]}},
    {"name": "paced", "match": {"path": {"prefix": "/paced"}},
     "ratelimit": {"rules": [{"name": "paced", "algorithm": "leaky-bucket", "rate": "2/s",
                              "burst": 4, "max_delay": "5s", "key": ["route"]}]}},
    {"name": "org", "match": {"path": {"prefix": "/org"}},
     "ratelimit": {"rules": [{"name": "org", "algorithm": "fixed-window", "rate": "1000/min",
                              "key": ["header:x-org"], "global": true}]}}
  ],
  "ratelimit": {"global": {"cluster": "rls", "domain": "orders", "timeout": "5s",
                           "failure_mode": "deny"}}
}"#;

#[test]
fn serve_enforces_local_paced_and_global_limits_over_the_network() {
    let dir = std::env::temp_dir().join(format!("meshward-cli-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("policy.json");
    std::fs::write(&policy, POLICY).unwrap();
    let _cleanup = Cleanup(dir.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (up, rl, seen) = start_servers(&rt);
    let mut serve = Serve::start(
        &dir,
        &[
            "--plugin",
            "ratelimit",
            "--config",
            policy.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--upstream",
            &format!("http://{up}"),
            "--cluster",
            &format!("rls=http://{rl}"),
            "--workers",
            "2",
        ],
    );
    let addr = serve.listen.clone();

    // Local limit (shared by both workers): 3 pass with the upstream's answer, then 429.
    let replies: Vec<Reply> = (0..5).map(|_| get(&addr, "/limited/x", &[])).collect();
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429], "{}", serve.stderr());
    assert_eq!(replies[0].body, "hello from upstream /limited/x");
    assert_eq!(replies[0].header("x-seen-xff"), Some("127.0.0.1"));
    assert_eq!(
        replies[0].header("x-seen-request-id").map(str::len),
        Some(36),
        "the upstream got a generated x-request-id"
    );
    let retry: u64 = replies[3]
        .header("retry-after")
        .expect("Retry-After on 429")
        .parse()
        .unwrap();
    assert!(retry > 0);

    // Pacing: requests arriving together are held (paused) and released on real time by
    // the filter's tick; all of them get the upstream's answer.
    let paced: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| s.spawn(|| get(&addr, "/paced", &[]).status))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(paced, [200; 4], "{}", serve.stderr());

    // Global rule: the RLS decides over HTTP/2; with failure_mode deny, a 200 proves the
    // answer came back.
    let ok = get(
        &addr,
        "/org/1",
        &[("x-org", "acme"), ("x-forwarded-for", "203.0.113.9")],
    );
    assert_eq!(ok.status, 200, "{}", serve.stderr());
    assert_eq!(ok.body, "hello from upstream /org/1");
    // Like Envoy at the edge, the peer is appended to what the client wrote.
    assert_eq!(ok.header("x-seen-xff"), Some("203.0.113.9,127.0.0.1"));
    let no = get(&addr, "/org/2", &[("x-org", "blocked")]);
    assert_eq!(no.status, 429, "{}", serve.stderr());
    {
        let seen = seen.lock().unwrap();
        assert!(seen.len() >= 2, "RLS calls: {}", seen.len());
        assert!(seen.iter().all(|r| r.domain == "orders"));
        let orgs: Vec<&str> = seen
            .iter()
            .flat_map(|r| &r.descriptors)
            .flat_map(|d| &d.entries)
            .filter(|e| e.key == "x-org")
            .map(|e| e.value.as_str())
            .collect();
        assert!(
            orgs.contains(&"acme") && orgs.contains(&"blocked"),
            "{orgs:?}"
        );
    }

    // The filter's counters on the admin listener.
    let stats = get(&serve.admin, "/stats/prometheus", &[]);
    assert_eq!(stats.status, 200);
    let text = &stats.body;
    assert_eq!(
        metric(text, "meshward_ratelimit_limited_per_client_allowed"),
        3
    );
    assert!(metric(text, "meshward_ratelimit_limited_per_client_limited") >= 2);
    assert!(
        metric(text, "meshward_ratelimit_paced_paced_delayed") >= 1,
        "{text}"
    );
    assert_eq!(get(&serve.admin, "/nope", &[]).status, 404);

    let status = serve.interrupt();
    assert!(status.success(), "exit {status:?}\n{}", serve.stderr());
    drop(rt);
}

#[test]
fn serve_refuses_bad_flags_and_bad_plugin_config_clearly() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_meshward"))
            .arg("serve")
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = run(&["--plugin", "ratelimit", "--upstream", "https://127.0.0.1:1"]);
    assert!(e.contains("https is not supported"), "{e}");
    let e = run(&[
        "--plugin",
        "ratelimit",
        "--upstream",
        "http://127.0.0.1:1",
        "--cluster",
        "rls",
    ]);
    assert!(e.contains("NAME=http://host:port"), "{e}");
    let e = run(&["--upstream", "http://127.0.0.1:1"]);
    assert!(e.contains("name the chain with --plugin"), "{e}");

    let dir = std::env::temp_dir().join(format!("meshward-cli-serve-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = Cleanup(dir.clone());
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"apiVersion": "meshward.io/v1alpha1", "kind": "Policy", "servce": "x"}"#,
    )
    .unwrap();
    let e = run(&[
        "--plugin",
        "ratelimit",
        "--config",
        bad.to_str().unwrap(),
        "--upstream",
        "http://127.0.0.1:1",
        "--admin",
        "off",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(e.contains("plugin `ratelimit`"), "{e}");
}

#[test]
fn serve_http_callouts_reach_the_cluster_over_the_network() {
    // The Rust SDK's http_auth_random example: each request asks cluster `httpbin` for
    // GET /bytes/1 and pauses; an even byte lets it through, an odd one gets 403.
    let dir = std::env::temp_dir().join(format!("meshward-cli-serve-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = Cleanup(dir.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let up = http1_server(&rt, upstream);
    let asked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let log = Arc::clone(&asked);
    let httpbin = http1_server(&rt, move |req: Request<Incoming>| {
        let log = Arc::clone(&log);
        async move {
            let mut log = log.lock().unwrap();
            let host = req
                .headers()
                .get("host")
                .map(|h| h.to_str().unwrap().to_string());
            log.push((req.uri().path().to_string(), host.unwrap_or_default()));
            // Even for the first call, odd for the second.
            let byte = if log.len() == 1 { 2u8 } else { 3u8 };
            Ok(Response::new(Full::new(Bytes::from(vec![byte]))))
        }
    });
    let mut serve = Serve::start(
        &dir,
        &[
            "--plugin",
            "sdk_http_auth_random",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--upstream",
            &format!("http://{up}"),
            "--cluster",
            &format!("httpbin=http://{httpbin}"),
            "--workers",
            "1",
        ],
    );
    let granted = get(&serve.listen, "/a", &[]);
    assert_eq!(granted.status, 200, "{}", serve.stderr());
    assert_eq!(granted.body, "hello from upstream /a");
    assert_eq!(granted.header("powered-by"), Some("proxy-wasm"));
    let refused = get(&serve.listen, "/b", &[]);
    assert_eq!(refused.status, 403, "{}", serve.stderr());
    assert_eq!(refused.body, "Access forbidden.\n");
    assert_eq!(
        *asked.lock().unwrap(),
        [
            ("/bytes/1".to_string(), "httpbin.org".to_string()),
            ("/bytes/1".to_string(), "httpbin.org".to_string())
        ]
    );
    let log = serve.stderr();
    assert!(
        log.contains("Access granted.") && log.contains("Access forbidden."),
        "{log}"
    );
    let status = serve.interrupt();
    assert!(status.success(), "exit {status:?}\n{}", serve.stderr());
    drop(rt);
}

/// One HTTP/1.1 POST on its own connection (status only).
fn post_status(addr: &str, body: &[u8]) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "POST /upload HTTP/1.1\r\nhost: a\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) and close before reading everything.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw)
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status line")
}

#[test]
fn serve_answers_like_envoy_when_the_upstream_fails_or_the_body_is_too_large() {
    let dir = std::env::temp_dir().join(format!("meshward-cli-serve-up-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = Cleanup(dir.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // An upstream that accepts and never answers, and an address where nothing listens.
    let silent = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let silent_addr = silent.local_addr().unwrap();
    rt.spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();

    let mut down = Serve::start(
        &dir,
        &[
            "--plugin",
            "noop",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--upstream",
            &format!("http://{closed}"),
            "--max-body",
            "1000",
        ],
    );
    let r = get(&down.listen, "/", &[]);
    assert_eq!(r.status, 503, "{}", down.stderr());
    assert_eq!(
        r.body,
        "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
    );
    assert_eq!(post_status(&down.listen, &[b'x'; 5000]), 413);
    assert!(down.interrupt().success());

    let mut slow = Serve::start(
        &dir,
        &[
            "--plugin",
            "noop",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--upstream",
            &format!("http://{silent_addr}"),
            "--route-timeout",
            "200ms",
        ],
    );
    let r = get(&slow.listen, "/", &[]);
    assert_eq!(r.status, 504, "{}", slow.stderr());
    assert_eq!(r.body, "upstream request timeout");
    assert!(slow.interrupt().success());
    drop(rt);
}
