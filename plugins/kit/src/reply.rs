//! Local replies and resuming paused requests through kit's [`abi`] wrappers: a status the
//! SDK would not expect (the stream is already gone, headers already sent) must not trap the
//! VM, so each returns whether it worked. A reply's header map is written in its wire form as
//! it is built ([`Pairs`]).

use std::cell::Cell;
use std::mem::ManuallyDrop;
use std::sync::Arc;

use crate::abi;

/// A header map serialized as the ABI wants it (count, a name and value length per pair,
/// then each name and value NUL-terminated), written in place: values are appended straight
/// into the buffer and their lengths patched in, so a reply's fields need no string of
/// their own.
#[derive(Debug, Clone)]
pub struct Pairs {
    buf: Vec<u8>,
    /// Pairs the buffer has room for in its length table.
    room: usize,
    /// Pairs written.
    len: usize,
}

impl Pairs {
    /// Room for `count` pairs and `text` bytes of names and values.
    pub fn new(count: usize, text: usize) -> Self {
        let mut buf = Vec::with_capacity(4 + 8 * count + text + 2 * count);
        // The count and length table, zeroed by copying (`resize` writes a byte at a time).
        const ZEROS: [u8; 64] = [0; 64];
        let mut left = 4 + 8 * count;
        while left > 0 {
            let n = left.min(ZEROS.len());
            buf.extend_from_slice(ZEROS.get(..n).unwrap_or(&[]));
            left -= n;
        }
        Self {
            buf,
            room: count,
            len: 0,
        }
    }

    /// Adds `name` with the value `value` appends to the buffer. Beyond the room given to
    /// [`Pairs::new`] the pair is dropped (a caller's miscount, never a corrupt map).
    pub fn add_with(&mut self, name: &str, value: &mut dyn FnMut(&mut Vec<u8>)) {
        if self.len >= self.room {
            return;
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        let start = self.buf.len();
        value(&mut self.buf);
        let value_len = self.buf.len() - start;
        self.buf.push(0);
        let at = 4 + 8 * self.len;
        // Both lengths at once: the name's four little-endian bytes, then the value's.
        let len = |n: usize| u64::from(u32::try_from(n).unwrap_or(0));
        let lens = len(name.len()) | len(value_len) << 32;
        if let Some(slot) = self.buf.get_mut(at..at + 8) {
            slot.copy_from_slice(&lens.to_le_bytes());
        }
        self.len += 1;
    }

    /// Adds `name: value`.
    pub fn add(&mut self, name: &str, value: &[u8]) {
        self.add_with(name, &mut |b| b.extend_from_slice(value));
    }

    /// The serialized map (the unused part of the length table, if any, taken out).
    pub fn bytes(&mut self) -> &[u8] {
        if self.len < self.room {
            self.buf.drain(4 + 8 * self.len..4 + 8 * self.room);
            self.room = self.len;
        }
        let count = u32::try_from(self.len).unwrap_or(0).to_le_bytes();
        if let Some(c) = self.buf.get_mut(..4) {
            c.copy_from_slice(&count);
        }
        &self.buf
    }
}

impl meshward_core::ratelimit::headers::FieldSink for Pairs {
    fn field(&mut self, name: &'static str, value: &mut dyn FnMut(&mut Vec<u8>)) {
        self.add_with(name, value);
    }
}

/// Response fields kept from the request headers until the response headers, added with one
/// `proxy_add_header_map_value` each: one value shared with the filter's configuration (kept
/// as is), the others in one buffer. Holds up to [`Kept::MAX`] fields (a rate-limit style
/// writes at most five); more are dropped. The buffer is the worker's spare one when it is
/// free (given back once the fields are added), so a request usually allocates nothing.
#[derive(Debug, Default)]
pub struct Kept {
    /// Dropped by hand (see the `Drop` impl): it is almost always empty by then.
    buf: ManuallyDrop<Vec<u8>>,
    /// Each field's name and the end of its value in `buf` (the shared field's entry is
    /// a placeholder).
    ends: [(&'static str, usize); Kept::MAX],
    len: usize,
    /// The shared field and its position among the fields.
    shared: Option<(usize, Arc<str>)>,
}

/// The worker's spare buffer for [`Kept`] (one: streams at once beyond it allocate): a plain
/// static on single-threaded wasm (a `thread_local!` access there is a call at opt-level z),
/// a thread-local elsewhere (native unit tests).
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
fn with_spare<T>(f: impl FnOnce(&Cell<Vec<u8>>) -> T) -> T {
    static SPARE: crate::filter::Global<Cell<Vec<u8>>> =
        crate::filter::Global::new(Cell::new(Vec::new()));
    SPARE.with(|spare| f(spare))
}
#[cfg(not(all(target_arch = "wasm32", not(target_feature = "atomics"))))]
fn with_spare<T>(f: impl FnOnce(&Cell<Vec<u8>>) -> T) -> T {
    thread_local! {
        static SPARE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    }
    SPARE.with(f)
}

impl Kept {
    /// Fields a [`Kept`] holds.
    pub const MAX: usize = 5;

    /// Empties this one for new fields, with room for `bytes` bytes of values (in the
    /// worker's spare buffer when this one has none).
    pub fn start(&mut self, bytes: usize) {
        self.len = 0;
        if self.shared.is_some() {
            self.shared = None;
        }
        self.buf.clear();
        if self.buf.capacity() == 0 {
            // Exchanged, not replaced: the empty vector goes to the spare slot, so nothing is
            // dropped here (`Cell::replace`, two moves; `Cell::swap` checks the cells for
            // overlap and swaps bytewise at opt-level z, ~110 instructions a call).
            self.exchange_spare();
        }
        if self.buf.capacity() < bytes {
            self.buf.reserve(bytes);
        }
    }

    /// Adds every kept field to the response (once: the fields are gone afterwards); a field
    /// the host refuses is skipped with a debug line.
    pub fn add_to_response(&mut self) {
        self.each(|name, value| {
            if !add_response_header(name, value) {
                log::debug!("the host refused response header {name}");
            }
        });
        self.len = 0;
        // Taken rather than assigned: only a field that was there is dropped (an assignment
        // calls the drop glue of the old value, `None` or not, at opt-level z).
        if let Some((_, field)) = self.shared.take() {
            drop(field);
        }
        self.buf.clear();
        // Back to the spare slot in exchange for what it holds (usually an empty vector).
        self.exchange_spare();
    }

    /// This one's buffer for the worker's spare one.
    #[inline(always)]
    fn exchange_spare(&mut self) {
        let mine = std::mem::take(&mut *self.buf);
        let spare = with_spare(|spare| spare.replace(mine));
        // What `take` left in `buf` is `Vec::new()`, which owns no memory: forgotten rather
        // than dropped (a drop is a call at opt-level z).
        std::mem::forget(std::mem::replace(&mut *self.buf, spare));
    }

    /// Each kept field's name and value, in the order they were written.
    fn each(&self, mut f: impl FnMut(&'static str, &[u8])) {
        let mut start = 0;
        for (i, (name, end)) in self.ends.get(..self.len).unwrap_or(&[]).iter().enumerate() {
            let value = match &self.shared {
                Some((at, v)) if *at == i => v.as_bytes(),
                _ => {
                    let v = self.buf.get(start..*end).unwrap_or(&[]);
                    start = *end;
                    v
                }
            };
            f(name, value);
        }
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        // A stream's fields went out with its response, and its buffer back to the spare
        // slot: `buf` owns no memory then, and its drop (a call at opt-level z) is skipped.
        if self.buf.capacity() != 0 {
            // SAFETY: `buf` is not used after this; `drop` runs once.
            unsafe { ManuallyDrop::drop(&mut self.buf) };
        }
    }
}

impl meshward_core::ratelimit::headers::FieldSink for Kept {
    fn field(&mut self, name: &'static str, value: &mut dyn FnMut(&mut Vec<u8>)) {
        if let Some(slot) = self.ends.get_mut(self.len) {
            value(&mut self.buf);
            *slot = (name, self.buf.len());
            self.len += 1;
        }
    }

    fn shared_field(&mut self, name: &'static str, value: &Arc<str>) {
        let end = self.buf.len();
        match (&self.shared, self.ends.get_mut(self.len)) {
            (None, Some(slot)) => {
                *slot = (name, end);
                // `replace`, not an assignment: the old value is `None` in this arm, and an
                // assignment would call its drop glue anyway (a call at opt-level z).
                std::mem::forget(self.shared.replace((self.len, Arc::clone(value))));
                self.len += 1;
            }
            _ => self.field(name, &mut |v| v.extend_from_slice(value.as_bytes())),
        }
    }
}

/// Sends a local reply on the current context; false when the host refused.
pub fn send(status: u16, headers: &[(&str, &str)], body: &[u8]) -> bool {
    let text: usize = headers.iter().map(|(k, v)| k.len() + v.len()).sum();
    let mut pairs = Pairs::new(headers.len(), text);
    for (k, v) in headers {
        pairs.add(k, v.as_bytes());
    }
    send_pairs(status, &mut pairs, body)
}

/// Sends a local reply with an already serialized header map; false when the host refused.
pub fn send_pairs(status: u16, headers: &mut Pairs, body: &[u8]) -> bool {
    abi::send_local_response(u32::from(status), b"meshward", body, headers.bytes()).is_ok()
}

/// Adds a response header on the current context (`proxy_add_header_map_value`, one value
/// appended as Envoy appends it); false when the host refused.
pub fn add_response_header(name: &str, value: &[u8]) -> bool {
    abi::add_header(abi::map::RESPONSE_HEADERS, name.as_bytes(), value).is_ok()
}

/// Resumes the paused request of `context_id` from the root context; false when that
/// stream no longer exists.
pub fn resume_request(context_id: u32) -> bool {
    abi::set_effective_context(context_id).is_ok()
        && abi::continue_stream(abi::STREAM_REQUEST).is_ok()
}

/// Sends a local reply for the paused request of `context_id` from the root context.
pub fn reply_to(context_id: u32, status: u16, headers: &[(&str, &str)], body: &[u8]) -> bool {
    abi::set_effective_context(context_id).is_ok() && send(status, headers, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a serialized map back (count, lengths, NUL-terminated names and values).
    fn parse(b: &[u8]) -> Vec<(String, String)> {
        let u = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
        let n = u(0);
        let mut at = 4 + 8 * n;
        (0..n)
            .map(|i| {
                let (k, v) = (u(4 + 8 * i), u(8 + 8 * i));
                let key = String::from_utf8(b[at..at + k].to_vec()).unwrap();
                assert_eq!(b[at + k], 0);
                at += k + 1;
                let val = String::from_utf8(b[at..at + v].to_vec()).unwrap();
                assert_eq!(b[at + v], 0);
                at += v + 1;
                (key, val)
            })
            .collect()
    }

    #[test]
    fn pairs_serialize_as_the_abi_reads_them() {
        let mut p = Pairs::new(3, 0);
        p.add("retry-after", b"7");
        p.add_with("ratelimit", &mut |b| b.extend_from_slice(b"\"a\";r=0;t=7"));
        p.add("x-empty", b"");
        let want = [
            ("retry-after", "7"),
            ("ratelimit", "\"a\";r=0;t=7"),
            ("x-empty", ""),
        ];
        let got = parse(p.bytes());
        assert_eq!(got.len(), 3);
        for ((k, v), (wk, wv)) in got.iter().zip(want) {
            assert_eq!((k.as_str(), v.as_str()), (wk, wv));
        }
    }

    #[test]
    fn kept_fields_keep_their_order_and_the_spare_buffer_comes_back_empty() {
        use meshward_core::ratelimit::headers::FieldSink;
        let policy: Arc<str> = Arc::from("\"a\";q=5;w=1");
        let mut k = Kept::default();
        k.start(32);
        k.field("x-first", &mut |b| b.extend_from_slice(b"1"));
        k.shared_field("ratelimit-policy", &policy);
        k.field("ratelimit", &mut |b| b.extend_from_slice(b"\"a\";r=4;t=1"));
        // A second shared value is copied.
        k.shared_field("x-again", &policy);
        let mut got = Vec::new();
        k.each(|n, v| got.push((n, String::from_utf8_lossy(v).into_owned())));
        assert_eq!(
            got,
            [
                ("x-first", "1".to_string()),
                ("ratelimit-policy", policy.to_string()),
                ("ratelimit", "\"a\";r=4;t=1".to_string()),
                ("x-again", policy.to_string()),
            ]
        );
        // No host here: every field is refused; the buffer still goes back, emptied.
        let cap = k.buf.capacity();
        k.add_to_response();
        let mut none = Vec::new();
        k.each(|n, _| none.push(n));
        assert!(none.is_empty());
        let mut next = Kept::default();
        next.start(4);
        assert!(next.buf.is_empty());
        assert_eq!(next.buf.capacity(), cap);
    }

    #[test]
    fn a_miscounted_map_stays_well_formed() {
        let mut fewer = Pairs::new(4, 8);
        fewer.add("a", b"1");
        assert_eq!(parse(fewer.bytes()), [("a".to_string(), "1".to_string())]);
        let mut more = Pairs::new(1, 8);
        more.add("a", b"1");
        more.add("b", b"2");
        assert_eq!(parse(more.bytes()), [("a".to_string(), "1".to_string())]);
        assert_eq!(parse(Pairs::new(0, 0).bytes()), []);
    }
}
