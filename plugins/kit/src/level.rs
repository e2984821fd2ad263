//! Whether the host keeps debug lines (`proxy_get_log_level`), asked once per request so a
//! filter formats no debug line the host would drop. The host's number is compared as a
//! number (the SDK stores it straight into its `LogLevel` enum), and a status other than Ok
//! means "cannot tell".

use crate::abi;

/// True when the host logs at debug or trace level; false when it cannot tell.
pub fn debug_enabled() -> bool {
    abi::log_level().is_ok_and(|l| l <= abi::level::DEBUG)
}
