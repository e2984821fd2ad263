//! Loading a filter's pluginConfig: parse with meshward-core (the same code as `meshward
//! check`), and on any problem log every one with its field path and refuse the config
//! (`on_configure` returns false, so Envoy NACKs it and nothing is half-applied).

use meshward_core::policy::{parse_json, Policy};

use crate::abi;

/// The plugin configuration (buffer PLUGIN_CONFIGURATION, readable in `on_configure`), whole;
/// `None` when the host has none.
pub fn plugin_configuration() -> Option<Vec<u8>> {
    abi::buffer(abi::buffer::PLUGIN_CONFIGURATION, 0, usize::MAX)
        .ok()
        .flatten()
}

/// The policy, or `None` after logging each problem at error level.
pub fn load(filter: &str, bytes: Option<Vec<u8>>) -> Option<Policy> {
    let Some(bytes) = bytes else {
        log::error!("meshward {filter}: no pluginConfig given");
        return None;
    };
    match parse_json(&bytes) {
        Ok(p) => Some(p),
        Err(errors) => {
            for e in errors.iter() {
                log::error!("meshward {filter}: bad config: {e}");
            }
            None
        }
    }
}
