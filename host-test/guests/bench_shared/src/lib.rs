//! Benchmark guest: a proxy-wasm plugin written with the Rust SDK's ordinary API that keeps a
//! counter in shared data. Each request's headers callback increments it `rounds` times, each
//! time with a get (`get_shared_data`: an owned value and its cas) and a CAS set of the value
//! plus one (`set_shared_data` with that cas; on a mismatch it reads again and retries).
//!
//! Plugin configuration: `rounds=<n> [key=<shared-data key>]`, e.g. `rounds=1000 key=bench/sdk`
//! (`n` in 1..=1000000; the key defaults to [`DEFAULT_KEY`]). The counter is 8 bytes,
//! little-endian; a missing key counts as 0. A bad configuration is logged and refused
//! (`on_configure` returns false). It knows nothing of the host that runs it.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, Status};
use std::rc::Rc;

/// The shared-data key when the configuration names none.
pub const DEFAULT_KEY: &str = "bench/sdk";

/// Most rounds one request may run.
pub const MAX_ROUNDS: u32 = 1_000_000;

/// CAS retries per round before the round gives up (one VM never sees a mismatch; several
/// workers on one key may).
const MAX_RETRIES: u32 = 1000;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { config: None }) });
}}

/// What the plugin configuration says.
#[derive(Debug, PartialEq, Eq)]
pub struct Config {
    pub rounds: u32,
    pub key: String,
}

impl Config {
    /// Parses `rounds=<n> [key=<k>]`; the error names the problem.
    pub fn parse(text: &str) -> Result<Config, String> {
        let mut rounds = None;
        let mut key = DEFAULT_KEY.to_string();
        for item in text.split_whitespace() {
            match item.split_once('=') {
                Some(("rounds", n)) => match n.parse::<u32>() {
                    Ok(n) if (1..=MAX_ROUNDS).contains(&n) => rounds = Some(n),
                    _ => return Err(format!("rounds={n}: want a number in 1..={MAX_ROUNDS}")),
                },
                Some(("key", k)) if !k.is_empty() => key = k.to_string(),
                _ => return Err(format!("unknown item {item:?} (want rounds=<n> key=<k>)")),
            }
        }
        let rounds = rounds.ok_or("rounds=<n> is missing")?;
        Ok(Config { rounds, key })
    }
}

struct Root {
    config: Option<Rc<Config>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match Config::parse(&String::from_utf8_lossy(&bytes)) {
            Ok(config) => {
                self.config = Some(Rc::new(config));
                true
            }
            Err(problem) => {
                let _ = hostcalls::log(
                    LogLevel::Error,
                    &format!("bench_shared: bad plugin configuration: {problem}"),
                );
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let config = Rc::clone(self.config.as_ref()?);
        Some(Box::new(Counter { config }))
    }
}

struct Counter {
    config: Rc<Config>,
}

impl Counter {
    /// One increment: get, then CAS set of the value plus one; again on a CAS mismatch.
    fn increment(&self) -> Result<(), Status> {
        let key = self.config.key.as_str();
        for _ in 0..MAX_RETRIES {
            let (value, cas) = self.get_shared_data(key);
            let n = value
                .as_deref()
                .and_then(|v| <[u8; 8]>::try_from(v).ok())
                .map_or(0, u64::from_le_bytes);
            match self.set_shared_data(key, Some(&n.wrapping_add(1).to_le_bytes()), cas) {
                Err(Status::CasMismatch) => continue,
                done => return done,
            }
        }
        Err(Status::CasMismatch)
    }
}

impl Context for Counter {}

impl HttpContext for Counter {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        for _ in 0..self.config.rounds {
            if let Err(status) = self.increment() {
                let _ = hostcalls::log(
                    LogLevel::Error,
                    &format!("bench_shared: increment failed: {status:?}"),
                );
                break;
            }
        }
        Action::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_is_parsed_and_bad_items_are_named() {
        assert_eq!(
            Config::parse("rounds=1000"),
            Ok(Config {
                rounds: 1000,
                key: DEFAULT_KEY.into()
            })
        );
        assert_eq!(
            Config::parse(" key=a/b  rounds=3 "),
            Ok(Config {
                rounds: 3,
                key: "a/b".into()
            })
        );
        assert!(Config::parse("").unwrap_err().contains("rounds"));
        assert!(Config::parse("rounds=0").unwrap_err().contains("rounds=0"));
        assert!(Config::parse("rounds=x").unwrap_err().contains("rounds=x"));
        assert!(Config::parse("rounds=1 size=2")
            .unwrap_err()
            .contains("size=2"));
    }
}
