//! The workspace's proxy-wasm modules, compiled for `wasm32-wasip1` by this crate's build
//! script: the host's conformance guests (`host-test/guests/*`) and the filters
//! (`plugins/*` with a `cdylib` target). Tests and benchmarks take the real `.wasm` from here.
//!
//! ```ignore
//! let bytes: &[u8] = meshward_artifacts::NOOP;
//! let ratelimit = meshward_artifacts::bytes_of("ratelimit").unwrap();
//! ```
//!
//! Each module is built with the cargo profile its manifest names in
//! `[package.metadata.meshward] profile`, else `wasm` (opt-level "z", what the filters ship);
//! the benchmark guests use `wasm-speed` (opt-level 3). [`Module::profile`] says which.
//!
//! Needs the `wasm32-wasip1` target; the build script installs it with rustup when missing.
//! This crate knows nothing of the host that runs the modules (it must not depend on
//! meshward-host: the host's tests depend on it).

use std::path::Path;

/// Where a module comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A conformance/benchmark guest under `host-test/guests/`.
    Guest,
    /// A meshward filter under `plugins/`.
    Filter,
}

/// One compiled module.
#[derive(Clone, Copy, Debug)]
pub struct Module {
    /// The crate's directory name: `noop`, `headers`, `ratelimit`.
    pub name: &'static str,
    /// The cargo package name: `meshward-guest-noop`.
    pub package: &'static str,
    /// Guest or filter.
    pub kind: Kind,
    /// The cargo profile that built it: `wasm` (size) or `wasm-speed` (speed).
    pub profile: &'static str,
    /// The `.wasm` file (a copy in this crate's `OUT_DIR`).
    pub path: &'static str,
    /// The module's bytes.
    pub bytes: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/gen.rs"));

/// The module named `name` (a crate directory name), if this build has it.
pub fn module(name: &str) -> Option<&'static Module> {
    ALL.iter().find(|m| m.name == name)
}

/// The bytes of the module named `name`.
pub fn bytes_of(name: &str) -> Option<&'static [u8]> {
    module(name).map(|m| m.bytes)
}

/// The path of the module named `name` (for tools that take a file, like the CLI).
pub fn path_of(name: &str) -> Option<&'static Path> {
    module(name).map(|m| Path::new(m.path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_is_a_wasm_module_with_the_proxy_wasm_abi_marker() {
        assert!(module("noop").is_some(), "the noop guest is always built");
        for m in ALL {
            assert_eq!(&m.bytes[..4], b"\0asm", "{} is not a wasm module", m.name);
            let marker: &[u8] = b"proxy_abi_version_0_2_1";
            assert!(
                m.bytes.windows(marker.len()).any(|w| w == marker),
                "{} does not export proxy_abi_version_0_2_1",
                m.name
            );
            assert_eq!(std::fs::read(m.path).expect("module file"), m.bytes);
        }
    }

    #[test]
    fn filters_are_discovered_from_plugins() {
        let filters: Vec<_> = ALL.iter().filter(|m| m.kind == Kind::Filter).collect();
        assert!(
            filters.iter().any(|m| m.name == "ratelimit"),
            "plugins/ratelimit is a cdylib and must be built"
        );
        assert!(filters.iter().all(|m| m.name != "core" && m.name != "kit"));
        assert!(path_of("nonexistent").is_none());
    }

    #[test]
    fn filters_ship_size_optimized_and_the_benchmark_guests_are_built_for_speed() {
        for m in ALL.iter().filter(|m| m.kind == Kind::Filter) {
            assert_eq!(m.profile, "wasm", "{} must ship the size profile", m.name);
        }
        for name in ["noop", "bench_shared"] {
            let m = module(name).expect(name);
            assert_eq!(m.profile, "wasm-speed", "{name}");
        }
        assert_eq!(module("conformance").expect("conformance").profile, "wasm");
    }
}
