//! The request as route matching and keys see it: method, path, authority, the headers the
//! policy names, and the peer address. Read lazily from the host during
//! `on_http_request_headers`: each value costs one `proxy_get_header_map_value` (first value,
//! as Envoy returns it) the first time something asks for it, and nothing is read that no
//! route, key or tier needs (a catch-all route never reads `:path`). Must not know the policy.

use std::cell::OnceCell;
use std::mem::ManuallyDrop;
use std::net::IpAddr;

use meshward_core::policy::RequestAttrs;
use meshward_core::ratelimit::parse_addr_bytes;

use crate::abi;

impl Drop for RequestView<'_> {
    fn drop(&mut self) {
        if self.fetched.get().is_some() {
            // SAFETY: `fetched` is not used after this; `drop` runs once.
            unsafe { ManuallyDrop::drop(&mut self.fetched) };
        }
    }
}

/// The current request's attributes, fetched on first use (header names lower-case as Envoy
/// gives them). Valid only while the request-headers callback runs.
#[derive(Debug, Default)]
pub struct RequestView<'n> {
    /// The readable headers (lower-case).
    names: &'n [String],
    /// What was fetched, made on the first read of anything (a request that reads nothing,
    /// e.g. one on a catch-all route keyed by client address, has nothing here to drop, and
    /// the `Drop` impl then skips the drop glue, a call at opt-level z).
    fetched: ManuallyDrop<OnceCell<Fetched>>,
}

#[derive(Debug, Default)]
struct Fetched {
    method: OnceCell<Option<String>>,
    path: OnceCell<Option<String>>,
    authority: OnceCell<Option<String>>,
    /// Each readable header's value once fetched, by its index in `names`: made on the first
    /// read of one of them.
    values: OnceCell<Vec<OnceCell<Option<String>>>>,
}

/// `cell`'s value, made by `make` the first time (`None` only if it could not be stored, which
/// cannot happen; unlike `get_or_init` there is no re-entrancy check to panic on).
fn cached<T>(cell: &OnceCell<T>, make: impl FnOnce() -> T) -> Option<&T> {
    if cell.get().is_none() {
        let _ = cell.set(make());
    }
    cell.get()
}

/// The request header `name`'s (first) value, taken over from the host without a copy; a
/// value that is not UTF-8 is read lossily (the SDK panics there).
fn fetch(name: &str) -> Option<String> {
    let v = abi::header(abi::map::REQUEST_HEADERS, name.as_bytes())
        .ok()
        .flatten()?;
    Some(
        String::from_utf8(v).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    )
}

impl<'n> RequestView<'n> {
    /// A view of the current request in which only the headers in `names` (lower-case) are
    /// visible to [`RequestAttrs::header`]; nothing is read yet.
    pub fn new(names: &'n [String]) -> Self {
        Self {
            names,
            fetched: ManuallyDrop::new(OnceCell::new()),
        }
    }

    fn fetched(&self) -> Option<&Fetched> {
        cached(&self.fetched, Fetched::default)
    }

    /// `x-request-id`, or `-`.
    pub fn request_id(&self) -> &str {
        self.header("x-request-id").unwrap_or("-")
    }
}

impl RequestAttrs for RequestView<'_> {
    fn method(&self) -> &str {
        self.fetched().map_or("", |f| value(&f.method, ":method"))
    }
    fn path(&self) -> &str {
        self.fetched().map_or("", |f| value(&f.path, ":path"))
    }
    fn host(&self) -> &str {
        self.fetched()
            .map_or("", |f| value(&f.authority, ":authority"))
    }
    fn header(&self, name: &str) -> Option<&str> {
        let i = self
            .names
            .iter()
            .position(|k| k.eq_ignore_ascii_case(name))?;
        let values = cached(&self.fetched()?.values, || {
            self.names.iter().map(|_| OnceCell::new()).collect()
        })?;
        let name = self.names.get(i)?;
        cached(values.get(i)?, || fetch(name))?.as_deref()
    }
}

/// A pseudo-header's value (empty when absent), fetched into `cell` on first use.
fn value<'a>(cell: &'a OnceCell<Option<String>>, name: &str) -> &'a str {
    cached(cell, || fetch(name))
        .and_then(Option::as_deref)
        .unwrap_or("")
}

/// The downstream peer address (`source.address`), if the host knows it. Called on every
/// request: the property path is serialized once, as a constant, and the value is read in
/// place (no allocation for an address of up to [`abi::SCRATCH_LEN`] bytes).
pub fn peer_address() -> Option<IpAddr> {
    /// `source.address` as the ABI wants a property path: segments separated by NUL.
    const PATH: &[u8] = b"source\0address";
    abi::read_property(PATH, |raw| parse_addr_bytes(raw?)).ok()?
}
