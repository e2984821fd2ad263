//! Header/metadata maps and their proxy-wasm serialization (ABI §1.5): a LE u32 count, then
//! (u32 key_len, u32 value_len) pairs, then each key and value followed by NUL. Limits as
//! cpp-host `limits.h` (1 MiB, 1024 pairs). Must not know about guests or memory.

/// cpp-host `PROXY_WASM_HOST_PAIRS_MAX_BYTES`.
pub const PAIRS_MAX_BYTES: usize = 1 << 20;
/// cpp-host `PROXY_WASM_HOST_PAIRS_MAX_COUNT`.
pub const PAIRS_MAX_COUNT: usize = 1024;

/// Deserialized pairs (name, value) in order.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// An ordered multi-map of header names to values, as bytes. Names are stored lower-case when
/// they come through the ABI or the embedder API (as Envoy's HTTP/2-style maps).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(Vec<u8>, Vec<u8>)>);

impl Headers {
    /// An empty map.
    pub fn new() -> Self {
        Headers(Vec::new())
    }
    /// From `(name, value)` string pairs; names are lower-cased.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        let mut h = Headers(Vec::with_capacity(pairs.len()));
        h.fill_from(pairs);
        h
    }
    /// Replace the contents with `pairs` (names lower-cased), reusing the allocation.
    pub fn fill_from(&mut self, pairs: &[(&str, &str)]) {
        self.0.clear();
        for (k, v) in pairs {
            self.0
                .push((k.as_bytes().to_ascii_lowercase(), v.as_bytes().to_vec()));
        }
    }
    /// Replace the contents with `pairs`, taking entry buffers from `pool` (and returning the
    /// old ones to it) so a worker reusing streams does not allocate per header.
    ///
    /// Entries are taken from the end of the pool in order, and the pool's end is where
    /// `Dir::reset` put the previous stream's headers of this slot, also in order: the entry
    /// reused for the i-th header usually held the i-th header name of the previous request
    /// (same traffic shape, pseudo-headers first). When its bytes already equal the new name
    /// they are left as they are (they are lower-case, so the new name is too): a compare
    /// instead of a copy and a lower-casing pass. The result is the same as a fresh copy.
    pub(crate) fn fill_pooled(
        &mut self,
        pairs: &[(&str, &str)],
        pool: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) {
        let k = pairs.len();
        if self.0.is_empty() && pool.len() <= k + REVERSED_MAX {
            // Swap the vectors instead of moving entries: the pool's front is the slot's
            // previous headers in order (`Dir::reset`). Entries past the k-th (headers a
            // plugin added, trailers) go back reversed, so `add_pooled`, which pops from the
            // end, hands out the one that held the (k+1)-th header before first: usually the
            // same name, added again by the same plugin.
            std::mem::swap(&mut self.0, pool);
            if self.0.len() > k {
                pool.extend(self.0.drain(k..).rev());
            }
        } else {
            pool.append(&mut self.0);
            let from = pool.len() - pool.len().min(pairs.len());
            self.0.extend(pool.drain(from..));
        }
        if self.0.len() != pairs.len() {
            // Only when the count changed: `resize_with` is an out-of-line call.
            self.0.resize_with(pairs.len(), Default::default);
        }
        for ((kb, vb), (k, v)) in self.0.iter_mut().zip(pairs) {
            if !same_bytes(kb, k.as_bytes()) {
                set_lowercase(kb, k.as_bytes());
            }
            // A value equal to the one the entry holds (same method, scheme, authority,
            // user agent, accept, status, content type as the slot's previous stream) stays:
            // a compare of a few words instead of a call into memcpy.
            if !same_bytes(vb, v.as_bytes()) {
                vb.clear();
                vb.extend_from_slice(v.as_bytes());
            }
        }
    }
    /// First value of `name` (as Envoy's `get_header_map_value`), as UTF-8 (lossy is avoided:
    /// non-UTF-8 values give None; use `get_bytes`).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_bytes(name.as_bytes())
            .and_then(|v| std::str::from_utf8(v).ok())
    }
    /// First value of `name` as bytes. `name` is compared case-insensitively.
    pub fn get_bytes(&self, name: &[u8]) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
    /// All values of `name`.
    pub fn get_all(&self, name: &str) -> Vec<&[u8]> {
        self.0
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_slice())
            .collect()
    }
    /// Append a value (name lower-cased).
    pub fn add(&mut self, name: &[u8], value: &[u8]) {
        self.0.push((name.to_ascii_lowercase(), value.to_vec()));
    }
    /// Append a value (name lower-cased) in an entry taken from `pool` when it has one (its
    /// buffers are reused: no allocation once they are large enough).
    pub(crate) fn add_pooled(
        &mut self,
        name: &[u8],
        value: &[u8],
        pool: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) {
        let Some((mut k, mut v)) = pool.pop() else {
            self.add(name, value);
            return;
        };
        // Pooled names are lower-case: an equal one is the lower-cased `name` already.
        if !same_bytes(&k, name) {
            set_lowercase(&mut k, name);
        }
        v.clear();
        v.extend_from_slice(value);
        self.0.push((k, v));
    }
    /// Entry `i` := (`k` lower-cased, `v`), in this map's entry `i` if it has one, else in one
    /// from `pool`, else a new one (entries before `i` must exist).
    pub(crate) fn set_pooled(
        &mut self,
        i: usize,
        k: &[u8],
        v: &[u8],
        pool: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) {
        if i >= self.0.len() {
            match pool.pop() {
                Some(e) => self.0.push(e),
                None => {
                    self.0.push((k.to_ascii_lowercase(), v.to_vec()));
                    return;
                }
            }
        }
        if let Some((kb, vb)) = self.0.get_mut(i) {
            if !same_bytes(kb, k) {
                set_lowercase(kb, k);
            }
            // An equal value (a reply's status, type, length, policy as last time) stays.
            if !same_bytes(vb, v) {
                vb.clear();
                vb.extend_from_slice(v);
            }
        }
    }
    /// Keeps the first `n` entries; the others go to `pool` while it holds fewer than
    /// [`KEPT_ENTRIES`].
    pub(crate) fn shrink_pooled(&mut self, n: usize, pool: &mut Vec<(Vec<u8>, Vec<u8>)>) {
        if self.0.len() > n {
            let room = KEPT_ENTRIES.saturating_sub(pool.len());
            pool.extend(self.0.drain(n..).take(room));
            self.0.truncate(n);
        }
    }
    /// Empties this map into `pool`, then takes back the last `n` entries of the pool in
    /// their order: where `Dir::reset` put the slot's previous map of this direction, so
    /// that writing a map of the same shape again with [`Headers::set_pooled`] at positions
    /// 0, 1, ... finds each name already in place (a compare, no copy or lower-casing).
    pub(crate) fn reuse_in_order(&mut self, n: usize, pool: &mut Vec<(Vec<u8>, Vec<u8>)>) {
        if self.0.is_empty() && pool.len() <= n {
            // The whole pool, in order (the usual case after `Dir::reset`): swapped, not moved.
            std::mem::swap(&mut self.0, pool);
            return;
        }
        pool.append(&mut self.0);
        let from = pool.len().saturating_sub(n);
        self.0.extend(pool.drain(from..));
    }
    /// Make this map equal to `other` (whose names are lower-case), reusing this map's entry
    /// buffers, then `pool`'s (see [`deserialize_into`]).
    pub(crate) fn copy_from_pooled(&mut self, other: &Headers, pool: &mut Vec<(Vec<u8>, Vec<u8>)>) {
        for (i, (k, v)) in other.0.iter().enumerate() {
            self.set_pooled(i, k, v, pool);
        }
        self.shrink_pooled(other.0.len(), pool);
    }
    /// Replace every value of `name` by one `value` (adds when missing), as Envoy `setCopy`.
    pub fn replace(&mut self, name: &[u8], value: &[u8]) {
        let lower = name.to_ascii_lowercase();
        let mut first = None;
        let mut i = 0;
        while i < self.0.len() {
            if self.0[i].0 == lower {
                if first.is_none() {
                    first = Some(i);
                    i += 1;
                } else {
                    self.0.remove(i);
                }
            } else {
                i += 1;
            }
        }
        match first {
            Some(i) => self.0[i].1 = value.to_vec(),
            None => self.0.push((lower, value.to_vec())),
        }
    }
    /// Remove every value of `name`.
    pub fn remove(&mut self, name: &[u8]) {
        self.0.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Entries as `(String, String)` (lossy UTF-8), for assertions.
    pub fn to_strings(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }
    /// Serialized size of this map.
    pub fn serialized_size(&self) -> usize {
        serialized_size(self.0.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))
    }
}

/// Pool entries past a map's own count that `fill_pooled` gives back reversed (more are
/// left where they are: never a move of a large pool per stream).
const REVERSED_MAX: usize = 16;

/// `buf` = `name` lower-cased: a bulk copy, then lower-casing in place (a tight loop instead of
/// a per-byte push). Out of line: the vector constants of the lower-casing loop are then not
/// reloaded around every header of `fill_pooled`'s loop, most of which skip this.
#[inline(never)]
fn set_lowercase(buf: &mut Vec<u8>, name: &[u8]) {
    buf.clear();
    buf.extend_from_slice(name);
    buf.make_ascii_lowercase();
}

/// `a == b`, inline: header names are short, and a call into libc's `memcmp` per name cost
/// ~7 % of a raw-guest request lifecycle in the profile. 8-byte words (the last one
/// overlapping the previous), two overlapping 4-byte words, or bytes.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let w8 = |s: &[u8], i: usize| {
        s.get(i..i + 8)
            .map(|w| u64::from_ne_bytes(w.try_into().unwrap_or_default()))
    };
    let w4 = |s: &[u8], i: usize| {
        s.get(i..i + 4)
            .map(|w| u32::from_ne_bytes(w.try_into().unwrap_or_default()))
    };
    if n >= 8 {
        let mut i = 0;
        while i + 8 < n {
            if w8(a, i) != w8(b, i) {
                return false;
            }
            i += 8;
        }
        w8(a, n - 8) == w8(b, n - 8)
    } else if n >= 4 {
        w4(a, 0) == w4(b, 0) && w4(a, n - 4) == w4(b, n - 4)
    } else {
        a.iter().zip(b).all(|(x, y)| x == y)
    }
}

/// Size of the serialized form of `pairs`.
pub fn serialized_size<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> usize {
    let mut size = 4;
    for (k, v) in pairs {
        size += 8 + k.len() + v.len() + 2;
    }
    size
}

/// Serialize `pairs` into `out` (cleared first).
pub fn serialize_into<'a>(
    pairs: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
    out: &mut Vec<u8>,
) {
    out.clear();
    let count = pairs.clone().count() as u32;
    out.extend_from_slice(&count.to_le_bytes());
    for (k, v) in pairs.clone() {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
}

/// Serialize a map.
pub fn serialize(h: &Headers) -> Vec<u8> {
    let mut out = Vec::with_capacity(h.serialized_size());
    serialize_into(
        h.0.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
        &mut out,
    );
    out
}

/// Why a serialized map was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairsError {
    /// Larger than [`PAIRS_MAX_BYTES`].
    #[error("serialized map is {0} bytes, over the 1 MiB limit")]
    TooLarge(usize),
    /// More than [`PAIRS_MAX_COUNT`] pairs.
    #[error("serialized map has {0} pairs, over the 1024 limit")]
    TooMany(usize),
    /// Sizes do not fit the data, or a NUL terminator is missing.
    #[error("malformed serialized map")]
    Malformed,
}

/// Parse a serialized map. An empty buffer or a single 0 byte is an empty map (as cpp-host).
pub fn deserialize(data: &[u8]) -> Result<Pairs, PairsError> {
    let mut out = Vec::new();
    each_pair(data, |k, v| out.push((k.to_vec(), v.to_vec())))?;
    Ok(out)
}

/// Parse a serialized map into `out` (names lower-cased), reusing its entries' buffers and
/// then those of `pool` (where entries past the new count go back, up to [`KEPT_ENTRIES`]): a
/// local reply built into the buffers of the slot's previous one allocates nothing. On an
/// error `out` is unchanged.
pub(crate) fn deserialize_into(
    data: &[u8],
    out: &mut Headers,
    pool: &mut Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<(), PairsError> {
    let mut i = 0;
    let n = each_pair(data, |k, v| {
        out.set_pooled(i, k, v, pool);
        i += 1;
    })?;
    out.shrink_pooled(n, pool);
    Ok(())
}

/// Most spare entries a reply map keeps for the next one ([`deserialize_into`],
/// [`Headers::copy_from_pooled`]).
pub(crate) const KEPT_ENTRIES: usize = 32;

/// Checks a whole serialized map, then calls `pair` with each (name, value) in order and
/// returns their number; nothing is called when the map is malformed.
fn each_pair(data: &[u8], mut pair: impl FnMut(&[u8], &[u8])) -> Result<usize, PairsError> {
    if data.len() > PAIRS_MAX_BYTES {
        return Err(PairsError::TooLarge(data.len()));
    }
    if data.is_empty() || data == [0] {
        return Ok(0);
    }
    let rd = |at: usize| -> Result<usize, PairsError> {
        data.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or(PairsError::Malformed)
    };
    let n = rd(0)?;
    if n > PAIRS_MAX_COUNT {
        return Err(PairsError::TooMany(n));
    }
    // The size table (two lengths per pair), then each name and value NUL-terminated. A
    // first walk checks every size and terminator; the second hands out the slices.
    let walk = |emit: &mut dyn FnMut(&[u8], &[u8])| -> Result<(), PairsError> {
        let mut pos = 4 + 8 * n;
        for i in 0..n {
            let (kl, vl) = (rd(4 + 8 * i)?, rd(8 + 8 * i)?);
            let k = data.get(pos..pos + kl).ok_or(PairsError::Malformed)?;
            if data.get(pos + kl) != Some(&0) {
                return Err(PairsError::Malformed);
            }
            pos += kl + 1;
            let v = data.get(pos..pos + vl).ok_or(PairsError::Malformed)?;
            if data.get(pos + vl) != Some(&0) {
                return Err(PairsError::Malformed);
            }
            pos += vl + 1;
            emit(k, v);
        }
        Ok(())
    };
    walk(&mut |_, _| {})?;
    walk(&mut pair)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deserialize_into_reuses_entries_lower_cases_names_and_is_all_or_nothing() {
        let mut out = Headers::from_pairs(&[("old", "1"), ("x", "2"), ("y", "3")]);
        let bytes = serialize(&Headers(vec![
            (b"Retry-After".to_vec(), b"7".to_vec()),
            (b"x".to_vec(), b"".to_vec()),
        ]));
        let mut pool = Vec::new();
        deserialize_into(&bytes, &mut out, &mut pool).unwrap();
        assert_eq!(out, Headers::from_pairs(&[("retry-after", "7"), ("x", "")]));
        assert_eq!(pool.len(), 1, "the third entry is kept for later");
        let mut bad = bytes.clone();
        bad.pop();
        assert_eq!(
            deserialize_into(&bad, &mut out, &mut pool),
            Err(PairsError::Malformed)
        );
        assert_eq!(out, Headers::from_pairs(&[("retry-after", "7"), ("x", "")]));
        let three = Headers::from_pairs(&[("a", "1"), ("b", "2"), ("c", "3")]);
        out.copy_from_pooled(&three, &mut pool);
        assert_eq!(out, three);
        assert!(pool.is_empty(), "the kept entry was used");
        deserialize_into(&[0], &mut out, &mut pool).unwrap();
        assert!(out.is_empty());
        assert_eq!(pool.len(), 3);
    }

    #[test]
    fn round_trip_matches_the_spec_layout() {
        let h = Headers::from_pairs(&[(":Path", "/a"), ("x", "")]);
        let bytes = serialize(&h);
        let mut want = vec![2, 0, 0, 0, 5, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0];
        want.extend_from_slice(b":path\0/a\0x\0\0");
        assert_eq!(bytes, want);
        assert_eq!(bytes.len(), h.serialized_size());
        assert_eq!(deserialize(&bytes).unwrap(), h.0);
    }

    #[test]
    fn empty_forms_and_limits() {
        assert!(deserialize(&[]).unwrap().is_empty());
        assert!(deserialize(&[0]).unwrap().is_empty());
        assert_eq!(deserialize(&[1, 0, 0, 0]), Err(PairsError::Malformed));
        let too_many = 1025u32.to_le_bytes();
        assert_eq!(deserialize(&too_many), Err(PairsError::TooMany(1025)));
        let big = vec![0u8; PAIRS_MAX_BYTES + 1];
        assert!(matches!(deserialize(&big), Err(PairsError::TooLarge(_))));
        // Missing NUL terminator.
        let mut bad = serialize(&Headers::from_pairs(&[("a", "b")]));
        let n = bad.len();
        bad[n - 1] = b'x';
        assert_eq!(deserialize(&bad), Err(PairsError::Malformed));
    }

    #[test]
    fn same_bytes_agrees_with_slice_equality_at_every_length_and_position() {
        for n in 0..40usize {
            let a: Vec<u8> = (0..n as u8).map(|i| i.wrapping_mul(37)).collect();
            assert!(same_bytes(&a, &a.clone()));
            assert!(!same_bytes(&a, &a[..n.saturating_sub(1)]) || n == 0);
            for i in 0..n {
                let mut b = a.clone();
                b[i] ^= 0x20;
                assert!(!same_bytes(&a, &b), "length {n}, byte {i}");
            }
        }
    }

    #[test]
    fn pooled_fills_equal_fresh_copies_whatever_the_pool_held() {
        let mut h = Headers::new();
        let mut pool = Vec::new();
        let rounds: [&[(&str, &str)]; 5] = [
            &[(":method", "GET"), ("X-Id", "1"), ("accept", "*/*")],
            // Same names (one now upper-case in the input), new values.
            &[(":method", "POST"), ("x-id", "22"), ("Accept", "a/b")],
            // Fewer entries, names in another order.
            &[("accept", ""), (":method", "PUT")],
            // More entries than the pool holds.
            &[("a", "1"), ("B", "2"), ("c", "3"), ("d", "4"), ("e", "5")],
            &[],
        ];
        for pairs in rounds {
            // As `Dir::reset` between streams: the old entries go to the pool.
            pool.append(&mut h.0);
            h.fill_pooled(pairs, &mut pool);
            assert_eq!(h, Headers::from_pairs(pairs));
        }
        // A stale pool larger than the request: only the needed entries are taken.
        pool.extend((0..10).map(|i| (vec![b'k'; i], vec![b'v'; i])));
        h.fill_pooled(&[("Host", "x")], &mut pool);
        assert_eq!(h, Headers::from_pairs(&[("host", "x")]));
    }

    #[test]
    fn add_pooled_reuses_an_entry_and_adds_like_add() {
        let mut pool = vec![(b"old-name".to_vec(), b"old value".to_vec())];
        let mut h = Headers::from_pairs(&[(":status", "200")]);
        h.add_pooled(b"RateLimit", b"\"a\";r=9", &mut pool);
        assert!(pool.is_empty(), "the entry was taken");
        h.add_pooled(b"X-Two", b"2", &mut pool);
        let mut plain = Headers::from_pairs(&[(":status", "200")]);
        plain.add(b"RateLimit", b"\"a\";r=9");
        plain.add(b"X-Two", b"2");
        assert_eq!(h, plain);
    }

    #[test]
    fn copy_from_pooled_makes_an_equal_map_whatever_it_held() {
        let long = Headers::from_pairs(&[("a", "1"), ("b", "22"), ("c", "333")]);
        let short = Headers::from_pairs(&[("x", "9")]);
        let mut h = Headers::from_pairs(&[("old", "value"), ("z", "")]);
        let mut pool = Vec::new();
        h.copy_from_pooled(&long, &mut pool);
        assert_eq!(h, long);
        h.copy_from_pooled(&short, &mut pool);
        assert_eq!(h, short);
        assert_eq!(pool.len(), 2);
        h.copy_from_pooled(&Headers::new(), &mut pool);
        assert!(h.is_empty());
        assert_eq!(pool.len(), 3);
        h.copy_from_pooled(&long, &mut pool);
        let mut full = vec![(Vec::new(), Vec::new()); KEPT_ENTRIES];
        h.copy_from_pooled(&short, &mut full);
        assert_eq!(h, short);
        assert_eq!(full.len(), KEPT_ENTRIES, "the pool stays bounded");
    }

    #[test]
    fn replace_keeps_one_value_and_get_returns_first() {
        let mut h = Headers::from_pairs(&[("a", "1"), ("A", "2"), ("b", "3")]);
        assert_eq!(h.get("a"), Some("1"));
        assert_eq!(h.get_all("a").len(), 2);
        h.replace(b"A", b"9");
        assert_eq!(
            h.to_strings(),
            vec![("a".into(), "9".into()), ("b".into(), "3".into())]
        );
        h.remove(b"B");
        assert_eq!(h.len(), 1);
    }
}
