//! Per-stream state of an HTTP stream going through a chain: the two directions (request:
//! plugins first..last; response: last..first), where headers/data/trailers are in the chain,
//! what is paused, the access windows derived from that (§1.3: a map or buffer is open to the
//! plugin whose callback runs on it or which paused on it; headers are readable in on_log),
//! local reply and reset. Also the public `StreamId`, `StreamProps`, `Flow`, `LocalReply` and
//! the read-only `StreamView`. Must not know about wasm or VMs.

use std::collections::HashMap;
use std::sync::Arc;

use crate::pairs::Headers;

/// Identifies a stream on one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct StreamId(pub u64);

impl StreamId {
    pub(crate) fn new(slot: u32, gen: u32) -> Self {
        StreamId(((gen as u64) << 32) | slot as u64)
    }
    pub(crate) fn slot(self) -> u32 {
        self.0 as u32
    }
    pub(crate) fn gen(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Connection-level facts and property overrides for one stream.
#[derive(Debug, Clone, Default)]
pub struct StreamProps {
    /// Path -> value, a few at most: a vector, not a hash map, so the usual empty one is built
    /// and dropped inline (no hasher keys from thread-local storage, no table drop call).
    pub(crate) props: Vec<(Vec<u8>, Vec<u8>)>,
    pub(crate) source: Option<String>,
    pub(crate) destination: Option<String>,
    pub(crate) protocol: Option<String>,
    pub(crate) connection_id: Option<u64>,
}

impl StreamProps {
    /// Nothing set: defaults are used (protocol HTTP/1.1, no addresses, mtls false).
    pub fn new() -> Self {
        Self::default()
    }
    /// Downstream peer `ip:port` (`source.address`, `source.port`).
    pub fn source_address(mut self, a: &str) -> Self {
        self.source = Some(a.to_string());
        self
    }
    /// Local `ip:port` (`destination.address`, `destination.port`).
    pub fn destination_address(mut self, a: &str) -> Self {
        self.destination = Some(a.to_string());
        self
    }
    /// `request.protocol`, e.g. "HTTP/2".
    pub fn protocol(mut self, p: &str) -> Self {
        self.protocol = Some(p.to_string());
        self
    }
    /// `connection.id`.
    pub fn connection_id(mut self, id: u64) -> Self {
        self.connection_id = Some(id);
        self
    }
    /// Any property path -> bytes (already in Envoy's encoding), e.g.
    /// `.property(&["connection", "mtls"], vec![1])`. Overrides computed values.
    pub fn property(mut self, path: &[&str], value: impl Into<Vec<u8>>) -> Self {
        let key = path.join("\0").into_bytes();
        let value = value.into();
        match self.props.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.props.push((key, value)),
        }
        self
    }
    /// Holds no allocation: no overrides ever stored, no addresses, no protocol.
    #[inline]
    pub(crate) fn is_bare(&self) -> bool {
        self.props.capacity() == 0
            && self.source.is_none()
            && self.destination.is_none()
            && self.protocol.is_none()
    }
    /// The override stored for a `\0`-joined path.
    pub(crate) fn get(&self, path: &[u8]) -> Option<&Vec<u8>> {
        self.props.iter().find(|(k, _)| k == path).map(|(_, v)| v)
    }
}

/// A local reply (from `proxy_send_local_response` or a fail-closed plugin).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalReply {
    /// HTTP status as the downstream sees it.
    pub status: u32,
    /// Headers as the downstream sees them (after the response callbacks ran).
    pub headers: Headers,
    /// Body as the downstream sees it.
    pub body: Vec<u8>,
    /// Response code details (whitespace replaced by `_`, as Envoy).
    pub details: String,
    /// gRPC status when one in 0..=16 was given.
    pub grpc_status: Option<i32>,
    /// Index in the chain of the plugin that sent it.
    pub plugin: usize,
}

/// Where a stream stands after an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flow {
    /// Passed the whole chain in this direction.
    Continue,
    /// Stopped at the plugin with this chain index (resumed later by proxy_continue_stream).
    Paused {
        /// Chain index.
        plugin: usize,
    },
    /// A local reply was sent; the request does not go upstream. Shared with the stream's
    /// record (no copy of its headers and body per `Flow`; read it through the `Arc`).
    LocalReply(Arc<LocalReply>),
    /// The stream was reset (proxy_close_stream, or a local reply after the response headers
    /// had gone downstream).
    Reset,
}

/// The longest chain a worker runs: positions 0..=n of a direction fit one `u64`.
pub const MAX_CHAIN: usize = 63;

/// A set of chain positions (0..=`MAX_CHAIN`), one bit each: which positions hold a fresh body
/// chunk, an end of stream, a paused body. Clearing and finding the first are one instruction,
/// not a loop over a vector per stream.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Positions(u64);

impl Positions {
    #[inline]
    pub(crate) fn has(self, pos: usize) -> bool {
        pos < 64 && (self.0 >> pos) & 1 == 1
    }
    #[inline]
    pub(crate) fn set(&mut self, pos: usize, on: bool) {
        if pos < 64 {
            if on {
                self.0 |= 1 << pos;
            } else {
                self.0 &= !(1 << pos);
            }
        }
    }
    /// Whether `pos` was set; it is clear afterwards.
    #[inline]
    pub(crate) fn take(&mut self, pos: usize) -> bool {
        let was = self.has(pos);
        self.set(pos, false);
        was
    }
    /// The lowest position set.
    #[inline]
    pub(crate) fn first(self) -> Option<usize> {
        (self.0 != 0).then(|| self.0.trailing_zeros() as usize)
    }
}

/// Header entries (name and value buffers) a stream direction keeps for its slot's next
/// stream.
const POOL_MAX: usize = 256;

/// One direction of a stream. Positions are in chain order for this direction (request: plugin
/// i at position i; response: plugin i at position n-1-i); position n is "past the chain".
#[derive(Debug, Default)]
pub(crate) struct Dir {
    pub(crate) n: usize,
    pub(crate) headers: Headers,
    pub(crate) started: bool,
    pub(crate) headers_eos: bool,
    pub(crate) hdr_at: usize,
    pub(crate) hdr_paused: bool,
    pub(crate) buf: Vec<Vec<u8>>,
    pub(crate) fresh: Positions,
    pub(crate) eos: Positions,
    pub(crate) body_paused: Positions,
    pub(crate) trailers: Option<Headers>,
    pub(crate) tr_at: Option<usize>,
    pub(crate) tr_paused: bool,
    /// Position whose body callback is running (trailers may be added there at end of stream).
    pub(crate) in_body: Option<usize>,
    pub(crate) trailers_added_at: Option<usize>,
    pub(crate) aborted: bool,
    /// Total body bytes received from outside.
    pub(crate) received: usize,
    /// Body input (a chunk or an end of stream) or a local reply's body reached this direction
    /// since the last reset; every write to `buf` follows one of those, so without it the
    /// chunks are all empty.
    pub(crate) body_seen: bool,
    /// Header entry buffers kept for reuse by the next stream in this slot.
    pub(crate) pool: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Dir {
    pub(crate) fn reset(&mut self, n: usize) {
        self.n = n;
        // The headers, then the trailers, in order; into an empty pool (the usual case) by
        // swapping the vectors, not moving entries, so the pool's front is the previous
        // headers of this slot in order (`Headers::fill_pooled` reuses them in place). At most
        // `POOL_MAX` entries are kept: what does not fit is dropped before it is moved (never a
        // shift of the whole pool: dropping the oldest from the front moved ~12 KB per stream
        // once the pool was full, e.g. when plugins add response headers on every request).
        if self.pool.is_empty() {
            std::mem::swap(&mut self.pool, &mut self.headers.0);
            self.pool.truncate(POOL_MAX);
        } else {
            self.headers
                .0
                .truncate(POOL_MAX.saturating_sub(self.pool.len()));
            self.pool.append(&mut self.headers.0);
        }
        if let Some(t) = self.trailers.as_mut() {
            t.0.truncate(POOL_MAX.saturating_sub(self.pool.len()));
            self.pool.append(&mut t.0);
        }
        self.started = false;
        self.headers_eos = false;
        self.hdr_at = 0;
        self.hdr_paused = false;
        if self.buf.len() != n + 1 {
            // Only when the chain length changed: `resize_with` is an out-of-line call.
            self.buf.resize_with(n + 1, Vec::new);
            self.buf.truncate(n + 1);
        }
        // Chunks hold bytes only after body activity (input, a local reply's body): most
        // streams skip the loop.
        if self.body_seen {
            for b in &mut self.buf {
                b.clear();
            }
            self.body_seen = false;
        }
        self.fresh = Positions::default();
        self.eos = Positions::default();
        self.body_paused = Positions::default();
        self.trailers = None;
        self.tr_at = None;
        self.tr_paused = false;
        self.in_body = None;
        self.trailers_added_at = None;
        self.aborted = false;
        self.received = 0;
    }
    /// Headers map open at position `pos`?
    pub(crate) fn headers_open(&self, pos: usize) -> bool {
        self.started && !self.aborted && self.hdr_at == pos
    }
    pub(crate) fn body_open(&self, pos: usize) -> bool {
        !self.aborted && (self.in_body == Some(pos) || self.body_paused.has(pos))
    }
    pub(crate) fn trailers_open(&self, pos: usize) -> bool {
        !self.aborted && self.tr_at == Some(pos)
    }
    /// Where this direction is stopped (first position), if anywhere.
    #[inline]
    pub(crate) fn stopped_at(&self) -> Option<usize> {
        if self.aborted {
            return None;
        }
        let mut first = None;
        if self.started && self.hdr_paused {
            first = Some(self.hdr_at);
        }
        if let Some(pos) = self.body_paused.first() {
            first = Some(first.map_or(pos, |f: usize| f.min(pos)));
        }
        if self.tr_paused {
            if let Some(t) = self.tr_at {
                first = Some(first.map_or(t, |f: usize| f.min(t)));
            }
        }
        first
    }
}

/// Per plugin, per stream.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PluginCtx {
    pub(crate) id: u32,
    pub(crate) generation: u32,
    /// Fail-open: the plugin is skipped for this stream.
    pub(crate) skip: bool,
}

/// One HTTP stream.
#[derive(Debug, Default)]
pub(crate) struct HttpStream {
    pub(crate) id: StreamId,
    pub(crate) ctx: Vec<PluginCtx>,
    pub(crate) req: Dir,
    pub(crate) resp: Dir,
    pub(crate) props: StreamProps,
    /// `proxy_set_property` values (filter state).
    pub(crate) filter_state: HashMap<Vec<u8>, Vec<u8>>,
    pub(crate) local_reply: Option<Arc<LocalReply>>,
    /// The slot's previous local reply once nothing else holds it: the next one is built in
    /// its buffers (a filter answering 429 to every request allocates nothing per reply).
    pub(crate) spare_reply: Option<Arc<LocalReply>>,
    /// The headers a plugin gave `proxy_send_local_response`, until the reply is applied
    /// (the reply record then holds the headers as sent downstream). Kept apart from the
    /// record so that each keeps one order from reply to reply and is rewritten in place.
    pub(crate) reply_asked: Headers,
    /// The serialized form `reply_asked` was parsed from; empty (then never compared) when
    /// it was longer than `abi::stream::REPLY_RAW_KEPT` or did not parse.
    pub(crate) reply_asked_raw: Vec<u8>,
    /// Header entries the slot's reply maps did not need, for the next ones (at most
    /// `pairs::KEPT_ENTRIES`).
    pub(crate) reply_pool: Vec<(Vec<u8>, Vec<u8>)>,
    /// A local reply is being sent or was sent (a second one is refused).
    pub(crate) local_reply_sent: bool,
    pub(crate) reset: bool,
    /// A TCP (network filter) stream: headers phase = on_new_connection.
    pub(crate) tcp: bool,
    pub(crate) in_log: bool,
    pub(crate) complete: bool,
    pub(crate) start_nanos: u64,
    pub(crate) end_nanos: Option<u64>,
}

impl HttpStream {
    pub(crate) fn reset_for(&mut self, id: StreamId, n: usize, props: StreamProps, now: u64) {
        self.id = id;
        self.ctx.clear();
        self.ctx.resize(n, PluginCtx::default());
        self.req.reset(n);
        self.resp.reset(n);
        let old = std::mem::replace(&mut self.props, props);
        if old.is_bare() {
            // Nothing allocated (the usual `StreamProps::new()`): no drop call.
            std::mem::forget(old);
        }
        // Guarded: most streams set neither, and clearing an empty map still calls out.
        if !self.filter_state.is_empty() {
            self.filter_state.clear();
        }
        if let Some(mut r) = self.local_reply.take() {
            // Kept only when the embedder let go of it (a `Flow::LocalReply` it still holds
            // shares it).
            if Arc::get_mut(&mut r).is_some() {
                self.spare_reply = Some(r);
            }
        }
        self.local_reply_sent = false;
        self.reset = false;
        self.tcp = false;
        self.in_log = false;
        self.complete = false;
        self.start_nanos = now;
        self.end_nanos = None;
    }
    /// Position of `plugin` in `dir` (request: same; response: reversed).
    pub(crate) fn pos(&self, response: bool, plugin: usize) -> usize {
        if response {
            self.ctx.len() - 1 - plugin
        } else {
            plugin
        }
    }
}

/// Read-only view of a stream for assertions.
pub struct StreamView<'a> {
    pub(crate) s: &'a HttpStream,
}

impl<'a> StreamView<'a> {
    /// Request headers as the upstream sees them (after the plugins' changes).
    pub fn request_headers(&self) -> &'a Headers {
        &self.s.req.headers
    }
    /// Response headers as the downstream sees them.
    pub fn response_headers(&self) -> &'a Headers {
        &self.s.resp.headers
    }
    /// Request body bytes that went upstream.
    pub fn request_body(&self) -> &'a [u8] {
        self.s.req.buf.last().map(|b| b.as_slice()).unwrap_or(&[])
    }
    /// Response body bytes that went downstream.
    pub fn response_body(&self) -> &'a [u8] {
        self.s.resp.buf.last().map(|b| b.as_slice()).unwrap_or(&[])
    }
    /// Request trailers (if any).
    pub fn request_trailers(&self) -> Option<&'a Headers> {
        self.s.req.trailers.as_ref()
    }
    /// Response trailers (if any).
    pub fn response_trailers(&self) -> Option<&'a Headers> {
        self.s.resp.trailers.as_ref()
    }
    /// The local reply, if one was sent.
    pub fn local_reply(&self) -> Option<&'a LocalReply> {
        self.s.local_reply.as_deref()
    }
    /// Request headers went past the whole chain (upstream).
    pub fn forwarded_upstream(&self) -> bool {
        self.s.req.started && self.s.req.hdr_at == self.s.req.n && !self.s.req.aborted
    }
    /// Response headers went past the whole chain (downstream).
    pub fn response_sent(&self) -> bool {
        self.s.resp.started && self.s.resp.hdr_at == self.s.resp.n
    }
    /// Chain index where the request is stopped.
    pub fn request_paused_at(&self) -> Option<usize> {
        self.s.req.stopped_at()
    }
    /// Chain index where the response is stopped.
    pub fn response_paused_at(&self) -> Option<usize> {
        let n = self.s.ctx.len();
        self.s.resp.stopped_at().map(|p| n - 1 - p)
    }
    /// Paused in either direction.
    pub fn paused(&self) -> bool {
        self.s.req.stopped_at().is_some() || self.s.resp.stopped_at().is_some()
    }
    /// The stream was reset.
    pub fn reset(&self) -> bool {
        self.s.reset
    }
    /// `complete` ran.
    pub fn complete(&self) -> bool {
        self.s.complete
    }
    /// A value stored with `proxy_set_property` on this stream.
    pub fn filter_state(&self, path: &[&str]) -> Option<&'a [u8]> {
        self.s
            .filter_state
            .get(path.join("\0").as_bytes())
            .map(|v| v.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        (0..n).map(|i| (vec![b'k'; i % 7], vec![b'v'])).collect()
    }

    #[test]
    fn a_reset_keeps_at_most_pool_max_entries_and_empties_the_maps() {
        let mut d = Dir::default();
        d.reset(1);
        d.headers.0 = entries(POOL_MAX + 44);
        d.trailers = Some(Headers(entries(3)));
        d.reset(1);
        assert_eq!(d.pool.len(), POOL_MAX);
        assert!(d.headers.is_empty() && d.trailers.is_none());
        // Full pool: a stream's entries are dropped, the pool stays as it is.
        d.headers.0 = entries(10);
        d.reset(1);
        assert_eq!(d.pool.len(), POOL_MAX);
        assert!(d.headers.is_empty());
    }
}
