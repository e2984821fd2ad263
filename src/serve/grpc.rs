//! gRPC over HTTP/2 as the wire sees it, for callouts: the 5-byte length-prefixed message
//! frame, `grpc-timeout`, `grpc-message` percent-decoding and the HTTP-status → gRPC-code
//! mapping of the gRPC spec (doc/http-grpc-status-mapping.md, doc/PROTOCOL-HTTP2.md in
//! grpc/grpc). Pure functions over bytes: must not know about sockets, hyper or the host.

use std::time::Duration;

/// gRPC status codes used here (google.rpc.Code).
pub mod code {
    /// Unknown error.
    pub const UNKNOWN: i32 = 2;
    /// The deadline passed before the answer.
    pub const DEADLINE_EXCEEDED: i32 = 4;
    /// Permission denied.
    pub const PERMISSION_DENIED: i32 = 7;
    /// Not implemented.
    pub const UNIMPLEMENTED: i32 = 12;
    /// Internal error (also: a malformed response).
    pub const INTERNAL: i32 = 13;
    /// The server could not be reached.
    pub const UNAVAILABLE: i32 = 14;
    /// Not authenticated.
    pub const UNAUTHENTICATED: i32 = 16;
}

/// The request body: one uncompressed message with its 5-byte prefix.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + message.len());
    out.push(0);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// Why a response body is not one gRPC message.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than the prefix announces.
    Truncated,
    /// The compressed flag is set (we never offer an encoding, so a server must not compress).
    Compressed,
    /// Bytes after the first message (a unary call has one).
    Trailing,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FrameError::Truncated => "truncated gRPC message frame",
            FrameError::Compressed => "compressed gRPC message (no encoding was offered)",
            FrameError::Trailing => "more than one message in a unary gRPC response",
        })
    }
}

/// The message of a unary response body; an empty body is no message (`None`).
pub fn unframe(body: &[u8]) -> Result<Option<&[u8]>, FrameError> {
    if body.is_empty() {
        return Ok(None);
    }
    let Some((head, rest)) = body.split_first_chunk::<5>() else {
        return Err(FrameError::Truncated);
    };
    if head[0] & 1 != 0 {
        return Err(FrameError::Compressed);
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    match rest.len().cmp(&len) {
        std::cmp::Ordering::Less => Err(FrameError::Truncated),
        std::cmp::Ordering::Greater => Err(FrameError::Trailing),
        std::cmp::Ordering::Equal => Ok(Some(rest)),
    }
}

/// `grpc-timeout` for a deadline: milliseconds, at most 8 digits as the spec allows.
pub fn timeout_header(d: Duration) -> String {
    let ms = d.as_millis().clamp(1, 99_999_999);
    format!("{ms}m")
}

/// The gRPC code a non-200 HTTP status stands for (the spec's mapping table).
pub fn code_for_http_status(status: u16) -> i32 {
    match status {
        400 => code::INTERNAL,
        401 => code::UNAUTHENTICATED,
        403 => code::PERMISSION_DENIED,
        404 => code::UNIMPLEMENTED,
        429 | 502..=504 => code::UNAVAILABLE,
        _ => code::UNKNOWN,
    }
}

/// `grpc-message` is percent-encoded UTF-8; invalid escapes are kept as they are.
pub fn decode_message(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (raw.get(i), raw.get(i + 1).copied(), raw.get(i + 2).copied()) {
            (Some(b'%'), Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                let v = hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0);
                out.push(v as u8);
                i += 3;
            }
            (Some(&b), _, _) => {
                out.push(b);
                i += 1;
            }
            (None, _, _) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bad_frames_are_named() {
        let f = frame(b"\x0a\x03abc");
        assert_eq!(&f[..5], &[0, 0, 0, 0, 5]);
        assert_eq!(unframe(&f), Ok(Some(&b"\x0a\x03abc"[..])));
        assert_eq!(unframe(&frame(b"")), Ok(Some(&b""[..])));
        assert_eq!(unframe(b""), Ok(None));
        assert_eq!(unframe(&f[..6]), Err(FrameError::Truncated));
        assert_eq!(unframe(&[0, 0, 0]), Err(FrameError::Truncated));
        let mut two = f.clone();
        two.extend_from_slice(&f);
        assert_eq!(unframe(&two), Err(FrameError::Trailing));
        let mut z = f;
        z[0] = 1;
        assert_eq!(unframe(&z), Err(FrameError::Compressed));
    }

    #[test]
    fn timeouts_statuses_and_messages_follow_the_spec() {
        assert_eq!(timeout_header(Duration::from_millis(50)), "50m");
        assert_eq!(timeout_header(Duration::from_micros(10)), "1m");
        assert_eq!(code_for_http_status(503), code::UNAVAILABLE);
        assert_eq!(code_for_http_status(404), code::UNIMPLEMENTED);
        assert_eq!(code_for_http_status(500), code::UNKNOWN);
        assert_eq!(decode_message(b"over%20limit%"), "over limit%");
        assert_eq!(decode_message(b"caf%C3%A9 %zz"), "café %zz");
    }
}
