//! The network side shared by every worker: the I/O runtime's handle, one pooled HTTP/1.1
//! client (upstream and HTTP callouts) and one HTTP/2 prior-knowledge client (gRPC callouts
//! to plain-text clusters), and `Target`, a parsed `http://host:port` address. Must not know
//! about plugins, streams or the host.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http::uri::{Authority, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::runtime::Handle;

/// A pooled client sending buffered bodies.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// How long a TCP connect to an upstream or a cluster may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The clients and the runtime they run on.
#[derive(Clone, Debug)]
pub struct Net {
    /// The multi-threaded runtime that does all socket I/O.
    pub io: Handle,
    /// HTTP/1.1 (upstream, HTTP callouts).
    pub http1: HttpClient,
    /// HTTP/2 with prior knowledge (gRPC callouts).
    pub h2c: HttpClient,
    /// Largest body read from any peer.
    pub body_limit: usize,
}

impl Net {
    /// Clients whose connections live on `io`.
    pub fn new(io: Handle, body_limit: usize) -> Net {
        let connector = || {
            let mut c = HttpConnector::new();
            c.set_connect_timeout(Some(CONNECT_TIMEOUT));
            c.set_nodelay(true);
            c
        };
        let builder = || {
            let mut b = Client::builder(TokioExecutor::new());
            b.pool_timer(TokioTimer::new())
                .pool_idle_timeout(Duration::from_secs(60))
                .pool_max_idle_per_host(64);
            b
        };
        let _guard = io.enter();
        Net {
            http1: builder().build(connector()),
            h2c: builder().http2_only(true).build(connector()),
            io,
            body_limit,
        }
    }
}

/// A plain-text HTTP address, `http://host:port` (no path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    authority: Authority,
}

impl Target {
    /// Parses `http://host:port` (port 80 when left out).
    pub fn parse(s: &str) -> Result<Target> {
        let uri: Uri = s
            .parse()
            .with_context(|| format!("`{s}` is not a URL like http://127.0.0.1:9000"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                bail!("`{s}`: https is not supported; use a plain-text http:// address")
            }
            _ => bail!("`{s}`: expected an http:// URL like http://127.0.0.1:9000"),
        }
        let Some(authority) = uri.authority().cloned() else {
            bail!("`{s}`: the URL has no host");
        };
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            bail!("`{s}`: give only scheme, host and port (the request's own path is used)");
        }
        Ok(Target { authority })
    }

    /// The URI of `path_and_query` at this address.
    pub fn uri(&self, path_and_query: &str) -> Result<Uri, http::Error> {
        let p = if path_and_query.starts_with('/') {
            path_and_query
        } else {
            "/"
        };
        Uri::builder()
            .scheme("http")
            .authority(self.authority.clone())
            .path_and_query(p)
            .build()
    }

    /// `host:port` as written.
    pub fn authority(&self) -> &str {
        self.authority.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_plain_http_addresses() {
        let t = Target::parse("http://127.0.0.1:9000").unwrap();
        assert_eq!(
            t.uri("/a?b=1").unwrap().to_string(),
            "http://127.0.0.1:9000/a?b=1"
        );
        assert_eq!(t.uri("*").unwrap().to_string(), "http://127.0.0.1:9000/");
        assert!(Target::parse("http://127.0.0.1:9000/").is_ok());
        let e = |s: &str| Target::parse(s).unwrap_err().to_string();
        assert!(e("https://a:1").contains("https is not supported"));
        assert!(e("127.0.0.1:9000").contains("expected an http:// URL"));
        assert!(e("http://a:1/x").contains("only scheme, host and port"));
    }
}
