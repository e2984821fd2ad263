//! The Envoy attribute tree read by `proxy_get_property` (paths are NUL-joined segments):
//! request.* from the stream's headers, response.*, source/destination, connection.*,
//! plugin_name/plugin_root_id/plugin_vm_id, and whatever the embedder set (xds.* on the host,
//! anything per stream in StreamProps) or the guest stored with proxy_set_property. Values use
//! Envoy's encoding (§1.5): strings raw, ints 8-byte LE, bools 1 byte, timestamps int64 ns,
//! maps as serialized pairs. Unknown: NOT_FOUND. Must not know about wasm memory.

use crate::abi::status;
use crate::pairs;
use crate::stream::HttpStream;
use crate::vm::VmState;

fn int(out: &mut Vec<u8>, v: i64) -> i32 {
    out.extend_from_slice(&v.to_le_bytes());
    status::OK
}

fn bytes(out: &mut Vec<u8>, v: &[u8]) -> i32 {
    out.extend_from_slice(v);
    status::OK
}

fn header_map(out: &mut Vec<u8>, h: &pairs::Headers) -> i32 {
    // Envoy's header map attribute: one entry per name, repeated values comma-joined.
    let mut joined: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(h.len());
    for (k, v) in &h.0 {
        match joined.iter_mut().find(|(jk, _)| jk == k) {
            Some((_, jv)) => {
                jv.push(b',');
                jv.extend_from_slice(v);
            }
            None => joined.push((k.clone(), v.clone())),
        }
    }
    pairs::serialize_into(
        joined.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
        out,
    );
    status::OK
}

fn joined_header(h: &pairs::Headers, name: &[u8]) -> Option<Vec<u8>> {
    let mut found: Option<Vec<u8>> = None;
    for (k, v) in &h.0 {
        if k.eq_ignore_ascii_case(name) {
            match found.as_mut() {
                Some(f) => {
                    f.push(b',');
                    f.extend_from_slice(v);
                }
                None => found = Some(v.clone()),
            }
        }
    }
    found
}

fn split_addr(a: &str) -> (&str, Option<i64>) {
    match a.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => (a, port.parse().ok()),
        _ => (a, None),
    }
}

fn stream_attr(s: &HttpStream, path: &[&[u8]], out: &mut Vec<u8>) -> Option<i32> {
    let req = &s.req.headers;
    let h = |n: &str| req.get_bytes(n.as_bytes());
    let r = match path {
        [b"request", b"path"] => bytes(out, h(":path")?),
        [b"request", b"url_path"] => {
            let p = h(":path")?;
            let end = p.iter().position(|&c| c == b'?').unwrap_or(p.len());
            bytes(out, &p[..end])
        }
        [b"request", b"query"] => {
            let p = h(":path")?;
            match p.iter().position(|&c| c == b'?') {
                Some(i) => bytes(out, &p[i + 1..]),
                None => bytes(out, b""),
            }
        }
        [b"request", b"host"] => bytes(out, h(":authority")?),
        [b"request", b"scheme"] => bytes(out, h(":scheme")?),
        [b"request", b"method"] => bytes(out, h(":method")?),
        [b"request", b"referer"] => bytes(out, h("referer")?),
        [b"request", b"useragent"] => bytes(out, h("user-agent")?),
        [b"request", b"id"] => bytes(out, h("x-request-id")?),
        [b"request", b"protocol"] => bytes(
            out,
            s.props.protocol.as_deref().unwrap_or("HTTP/1.1").as_bytes(),
        ),
        [b"request", b"time"] => int(out, s.start_nanos as i64),
        [b"request", b"duration"] => int(out, s.end_nanos? as i64 - s.start_nanos as i64),
        [b"request", b"size"] => int(out, s.req.received as i64),
        [b"request", b"total_size"] => int(
            out,
            (s.req.received + s.req.headers.serialized_size()) as i64,
        ),
        [b"request", b"headers"] => header_map(out, req),
        [b"request", b"headers", name] => bytes(out, &joined_header(req, name)?),
        [b"response", b"code"] => {
            let st = s.resp.headers.get(":status")?;
            int(out, st.parse().ok()?)
        }
        [b"response", b"code_details"] => bytes(
            out,
            s.local_reply
                .as_ref()
                .map(|r| r.details.as_bytes())
                .unwrap_or(b"via_upstream"),
        ),
        [b"response", b"grpc_status"] => {
            let g = s
                .resp
                .headers
                .get("grpc-status")
                .or_else(|| s.resp.trailers.as_ref().and_then(|t| t.get("grpc-status")))?;
            int(out, g.parse().ok()?)
        }
        [b"response", b"headers"] if s.resp.started => header_map(out, &s.resp.headers),
        [b"response", b"headers", name] => bytes(out, &joined_header(&s.resp.headers, name)?),
        [b"response", b"trailers"] => header_map(out, s.resp.trailers.as_ref()?),
        [b"response", b"trailers", name] => {
            bytes(out, &joined_header(s.resp.trailers.as_ref()?, name)?)
        }
        [b"response", b"size"] => int(out, s.resp.received as i64),
        [b"source", b"address"] => bytes(out, s.props.source.as_deref()?.as_bytes()),
        [b"source", b"port"] => int(out, split_addr(s.props.source.as_deref()?).1?),
        [b"destination", b"address"] => bytes(out, s.props.destination.as_deref()?.as_bytes()),
        [b"destination", b"port"] => int(out, split_addr(s.props.destination.as_deref()?).1?),
        [b"connection", b"id"] => int(out, s.props.connection_id? as i64),
        [b"connection", b"mtls"] => bytes(out, &[0]),
        _ => return None,
    };
    Some(r)
}

/// Look `path` up for the running context; fills `out` and returns a proxy status.
pub(crate) fn get(st: &VmState, path: &[u8], out: &mut Vec<u8>) -> i32 {
    let path = path.strip_suffix(&[0]).unwrap_or(path);
    let stream = st
        .call
        .stream
        .and_then(|slot| st.core.as_deref().and_then(|c| c.stream(slot)));
    // 1. Values the guest stored (filter state), 2. per-stream embedder overrides.
    if let Some(s) = stream {
        if let Some(v) = s.filter_state.get(path).or_else(|| s.props.get(path)) {
            return bytes(out, v);
        }
    } else if let Some(v) = st.root_props.get(path) {
        return bytes(out, v);
    }
    // 3. Host-level values (xds.*, node, ...).
    if let Some(v) = st.host.properties.get(path) {
        return bytes(out, v);
    }
    // The one a rate limiter reads on every request, before the segment split and the
    // attribute table's string compares (the same answer as its arm in `stream_attr`).
    if path == b"source\0address" {
        if let Some(a) = stream.and_then(|s| s.props.source.as_deref()) {
            return bytes(out, a.as_bytes());
        }
    }
    // The segments on the stack: every path known here has at most 3, so a longer one is
    // looked up as no segments at all (it matches nothing either way).
    let mut seg_buf: [&[u8]; 4] = [&[]; 4];
    let mut n = 0;
    for seg in path.split(|&b| b == 0) {
        match seg_buf.get_mut(n) {
            Some(s) => *s = seg,
            None => {
                n = 0;
                break;
            }
        }
        n += 1;
    }
    let segs = &seg_buf[..n];
    let spec = &st.plugin.spec;
    match segs {
        [b"plugin_name"] => return bytes(out, spec.name.as_bytes()),
        [b"plugin_root_id"] => return bytes(out, spec.root_id.as_bytes()),
        [b"plugin_vm_id"] => return bytes(out, spec.vm_id.as_bytes()),
        _ => {}
    }
    if let Some(s) = stream {
        if let Some(r) = stream_attr(s, segs, out) {
            return r;
        }
        out.clear();
    }
    status::NOT_FOUND
}
