//! Calls out of a context: the gRPC call a filter makes and the table of calls in flight,
//! which says whose answer an arriving one is (tokens are the host's; the SDK keeps the same
//! table in its dispatcher). Must not know what is called or why.

use crate::abi::{self, Status};
use crate::ids::IdMap;

use super::Global;

/// Forgets the calls context `id` still waits for: Envoy cancels a deleted context's calls
/// without an answer, so their tokens would otherwise stay in the table for good (one per
/// client that went away while the rate limit service was asked). A late answer for one of
/// them is then ignored like any unknown token.
pub(super) fn forget_calls(id: u32) {
    calls(|c| {
        if c.is_empty() {
            return;
        }
        // Usually none: an answered call has left already (collecting none allocates nothing).
        let mine: Vec<u32> = c
            .iter()
            .filter(|(_, owner)| **owner == id)
            .map(|(token, _)| token)
            .collect();
        for token in mine {
            c.remove(token);
        }
    });
}

/// Calls in flight: token to the id of the context that made the call.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
pub(super) fn calls<T>(f: impl FnOnce(&mut IdMap<u32>) -> T) -> T {
    static CALLS: Global<IdMap<u32>> = Global::new(IdMap::new());
    CALLS.with(f)
}

/// Calls in flight: token to the id of the context that made the call.
#[cfg(not(all(target_arch = "wasm32", not(target_feature = "atomics"))))]
pub(super) fn calls<T>(f: impl FnOnce(&mut IdMap<u32>) -> T) -> T {
    thread_local! {
        static CALLS: Global<IdMap<u32>> = const { Global::new(IdMap::new()) };
    }
    CALLS.with(|c| c.with(f))
}

/// A unary gRPC call for context `context_id` (`proxy_grpc_call`, no initial metadata); its
/// answer arrives as that context's `on_grpc_call_response`. The call's token.
pub fn grpc_call(
    context_id: u32,
    upstream: &str,
    service: &str,
    method: &str,
    message: &[u8],
    timeout_ms: u32,
) -> Result<u32, Status> {
    /// An empty map, serialized (a zero count), as the SDK sends one.
    const NO_METADATA: &[u8] = &[0; 4];
    let token = abi::grpc_call(
        upstream.as_bytes(),
        service.as_bytes(),
        method.as_bytes(),
        NO_METADATA,
        message,
        timeout_ms,
    )?;
    calls(|c| c.insert(token, context_id));
    Ok(token)
}
