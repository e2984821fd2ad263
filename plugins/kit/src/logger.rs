//! The `log` crate's facade over `proxy_log`, so a filter writes `log::debug!(...)` and the
//! line reaches the host at the same level (the SDK's `logger.rs` does the same; this one
//! never panics when the host refuses a line, and a line without arguments is passed as is,
//! without formatting it into a new string). [`install`] runs once per VM, from the
//! `_initialize` that [`crate::filter!`] generates. Must not know any filter.

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::abi;

struct HostLog;

static LOGGER: HostLog = HostLog;

/// Routes `log` records to the host, keeping those at `max` or more severe. A second call
/// only changes the level.
pub fn install(max: LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(max);
}

/// The ABI level of a `log` level.
fn abi_level(level: Level) -> u32 {
    match level {
        Level::Error => abi::level::ERROR,
        Level::Warn => abi::level::WARN,
        Level::Info => abi::level::INFO,
        Level::Debug => abi::level::DEBUG,
        Level::Trace => abi::level::TRACE,
    }
}

impl Log for HostLog {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = abi_level(record.level());
        // A line the host refuses is lost: there is nowhere else to report it.
        let _ = match record.args().as_str() {
            Some(s) => abi::log(level, s.as_bytes()),
            None => abi::log(level, record.args().to_string().as_bytes()),
        };
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_map_to_the_abi_numbers() {
        assert_eq!(abi_level(Level::Trace), 0);
        assert_eq!(abi_level(Level::Debug), 1);
        assert_eq!(abi_level(Level::Info), 2);
        assert_eq!(abi_level(Level::Warn), 3);
        assert_eq!(abi_level(Level::Error), 4);
    }
}
