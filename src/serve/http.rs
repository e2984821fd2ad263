//! Conversions between hyper's HTTP types and the host's header lists, done the way Envoy's
//! HTTP connection manager does them: pseudo-headers in front, hop-by-hop headers dropped,
//! `x-request-id` added when missing, `content-length` recomputed from the body that is sent.
//! Also: reading a body whole with a size limit. Must not know about plugins or workers.

use std::net::IpAddr;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use meshward_host::Headers;

/// A body read whole, with its trailers.
#[derive(Debug, Default)]
pub struct Collected {
    /// The bytes.
    pub data: Bytes,
    /// Trailers, when the peer sent some.
    pub trailers: Option<HeaderMap>,
}

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// Longer than the limit.
    TooLarge,
    /// The peer went away or sent garbage.
    Broken(String),
}

/// Reads `body` whole, refusing more than `limit` bytes.
pub async fn collect<B>(body: B, limit: usize) -> Result<Collected, BodyError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    match Limited::new(body, limit).collect().await {
        Ok(c) => {
            let trailers = c.trailers().cloned();
            Ok(Collected {
                data: c.to_bytes(),
                trailers,
            })
        }
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Err(e) => Err(BodyError::Broken(e.to_string())),
    }
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1); never forwarded.
pub fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "upgrade"
            | "te"
            | "trailer"
            | "proxy-authenticate"
            | "proxy-authorization"
    )
}

/// The request as the plugin chain sees it: `:method`, `:path`, `:authority`, `:scheme`, then
/// the client's headers (hop-by-hop ones dropped), `x-forwarded-proto` and an `x-request-id`
/// when the client sent none (Envoy generates a UUID v4). `x-forwarded-for` gets the peer's
/// address appended (created when absent; several lines are joined first), as Envoy's
/// connection manager does at the edge (`use_remote_address: true`, `Utility::appendXff`:
/// `,` without a space) before any filter runs — so a rate limit keyed on X-Forwarded-For
/// with one trusted hop sees the peer. Values that are not UTF-8 are passed lossily (the host
/// takes text).
pub fn request_pairs(parts: &http::request::Parts, peer: Option<IpAddr>) -> Vec<(String, String)> {
    let authority = parts
        .headers
        .get(http::header::HOST)
        .map(text)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".to_string());
    let mut out = vec![
        (":method".to_string(), parts.method.as_str().to_string()),
        (":path".to_string(), path),
        (":authority".to_string(), authority),
        (":scheme".to_string(), "http".to_string()),
    ];
    let mut xff: Option<String> = None;
    for (name, value) in &parts.headers {
        let n = name.as_str();
        if hop_by_hop(n) || n == "host" || n == "x-forwarded-proto" {
            continue;
        }
        if n == "x-forwarded-for" {
            let v = text(value);
            xff = Some(match xff {
                Some(before) => format!("{before},{v}"),
                None => v,
            });
            continue;
        }
        out.push((n.to_string(), text(value)));
    }
    let xff = match (xff, peer) {
        (Some(before), Some(ip)) => Some(format!("{before},{ip}")),
        (None, Some(ip)) => Some(ip.to_string()),
        (before, None) => before,
    };
    if let Some(v) = xff {
        out.push(("x-forwarded-for".to_string(), v));
    }
    out.push(("x-forwarded-proto".to_string(), "http".to_string()));
    if !parts.headers.contains_key("x-request-id") {
        out.push(("x-request-id".to_string(), uuid_v4()));
    }
    out
}

/// Trailers as pairs.
pub fn trailer_pairs(map: &HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(k, v)| (k.as_str().to_string(), text(v)))
        .collect()
}

/// Response headers (from a hyper response) as the chain sees them: `:status` first.
pub fn response_pairs(status: StatusCode, headers: &HeaderMap) -> Vec<(String, String)> {
    let mut out = vec![(":status".to_string(), status.as_u16().to_string())];
    for (name, value) in headers {
        if !hop_by_hop(name.as_str()) {
            out.push((name.as_str().to_string(), text(value)));
        }
    }
    out
}

/// Borrowed view of pairs for the host's `&[(&str, &str)]` inputs.
pub fn borrow(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// Copies `headers` into `map`, skipping pseudo-headers, hop-by-hop headers,
/// `content-length` (recomputed from the body that is actually sent) and invalid entries.
pub fn copy_headers(headers: &Headers, map: &mut HeaderMap) {
    for (k, v) in &headers.0 {
        if k.first() == Some(&b':') || k.as_slice() == b"content-length" {
            continue;
        }
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(k),
            HeaderValue::from_bytes(v.as_slice()),
        ) else {
            continue;
        };
        if !hop_by_hop(name.as_str()) {
            map.append(name, value);
        }
    }
}

/// A response to the downstream client from a status, the chain's headers and a body.
pub fn response(status: u32, headers: &Headers, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = u16::try_from(status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    copy_headers(headers, r.headers_mut());
    r
}

/// A plain-text response (admin pages, errors before the chain ran).
pub fn text_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn text(v: &HeaderValue) -> String {
    String::from_utf8_lossy(v.as_bytes()).into_owned()
}

/// A random UUID v4 in its text form (RFC 9562 §5.4).
pub fn uuid_v4() -> String {
    let mut b = fastrand::u128(..).to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_pairs_put_pseudo_headers_first_and_add_a_request_id() {
        let req = http::Request::builder()
            .method("POST")
            .uri("/orders?x=1")
            .header("host", "shop.local")
            .header("connection", "keep-alive")
            .header("x-user", "ann")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let p = request_pairs(&parts, None);
        let get = |n: &str| p.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(p[0], (":method".into(), "POST".into()));
        assert_eq!(get(":path"), Some("/orders?x=1"));
        assert_eq!(get(":authority"), Some("shop.local"));
        assert_eq!(get("x-user"), Some("ann"));
        assert_eq!(get("connection"), None);
        assert_eq!(get("host"), None);
        let id = get("x-request-id").unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");

        let req = http::Request::builder()
            .uri("/")
            .header("x-request-id", "abc")
            .body(())
            .unwrap();
        let p = request_pairs(&req.into_parts().0, None);
        let ids: Vec<_> = p.iter().filter(|(k, _)| k == "x-request-id").collect();
        assert_eq!(ids.len(), 1);
        assert_eq!(ids[0].1, "abc");
    }

    #[test]
    fn the_peer_is_appended_to_x_forwarded_for_as_envoy_does_at_the_edge() {
        let xff = |lines: &[&str], peer: Option<&str>| {
            let mut b = http::Request::builder().uri("/");
            for l in lines {
                b = b.header("x-forwarded-for", *l);
            }
            let (parts, ()) = b.body(()).unwrap().into_parts();
            let p = request_pairs(&parts, peer.map(|a| a.parse().unwrap()));
            let all: Vec<_> = p.iter().filter(|(k, _)| k == "x-forwarded-for").collect();
            assert!(all.len() <= 1, "{all:?}");
            all.first().map(|(_, v)| v.clone())
        };
        assert_eq!(xff(&[], Some("10.0.0.7")).as_deref(), Some("10.0.0.7"));
        assert_eq!(
            xff(&["203.0.113.9"], Some("10.0.0.7")).as_deref(),
            Some("203.0.113.9,10.0.0.7")
        );
        assert_eq!(
            xff(&["1.1.1.1, 2.2.2.2", "3.3.3.3"], Some("::1")).as_deref(),
            Some("1.1.1.1, 2.2.2.2,3.3.3.3,::1")
        );
        assert_eq!(xff(&["1.1.1.1"], None).as_deref(), Some("1.1.1.1"));
        assert_eq!(xff(&[], None), None);
    }

    #[test]
    fn responses_drop_pseudo_and_length_headers_and_keep_the_rest() {
        let h = Headers::from_pairs(&[
            (":status", "429"),
            ("retry-after", "2"),
            ("content-length", "99"),
            ("transfer-encoding", "chunked"),
        ]);
        let r = response(429, &h, b"slow down".to_vec());
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers().get("retry-after").unwrap(), "2");
        assert!(r.headers().get("content-length").is_none());
        assert!(r.headers().get("transfer-encoding").is_none());
        assert_eq!(response(7, &h, vec![]).status(), 500);
    }
}
