//! Shrinks a filter module with binaryen's `wasm-opt` (fixed flags, so the same input and the
//! same binaryen give the same bytes) and validates modules with wasmparser. It knows nothing of
//! images or registries.

use std::path::PathBuf;
use std::process::Command;

use super::error::OciError;

/// The flags `wasm-opt` always runs with: optimize for size, drop the name/DWARF sections and the
/// producers section (it names the compiler version, which would make the bytes depend on the
/// toolchain patch level without changing the code). Features are read from the module's
/// `target_features` section, so nothing the module does not already use is introduced.
pub const WASM_OPT_FLAGS: &[&str] = &["-Oz", "--strip-debug", "--strip-producers"];

/// The environment variable that overrides which `wasm-opt` to run.
pub const WASM_OPT_ENV: &str = "MESHWARD_WASM_OPT";

/// How a module was turned into the image's `plugin.wasm`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Optimized {
    /// The bytes that go into the image.
    pub bytes: Vec<u8>,
    /// Size of the module before optimization.
    pub raw_size: usize,
    /// `wasm-opt version 108 -Oz --strip-debug --strip-producers`, or `none`.
    pub optimizer: String,
}

impl Optimized {
    /// Size of the module that goes into the image.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }
}

/// Runs `wasm-opt`.
#[derive(Clone, Debug)]
pub struct WasmOpt {
    program: PathBuf,
}

impl WasmOpt {
    /// `wasm-opt` from PATH, or the program named by `MESHWARD_WASM_OPT`.
    pub fn from_env() -> Self {
        let program = std::env::var_os(WASM_OPT_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("wasm-opt"));
        WasmOpt { program }
    }

    /// A specific `wasm-opt` binary.
    pub fn at(program: impl Into<PathBuf>) -> Self {
        WasmOpt {
            program: program.into(),
        }
    }

    /// `wasm-opt version 108` (what the program prints for `--version`).
    pub fn version(&self) -> Result<String, OciError> {
        let out = Command::new(&self.program)
            .arg("--version")
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => OciError::WasmOptMissing,
                _ => OciError::WasmOptFailed {
                    module: "(version check)".into(),
                    detail: e.to_string(),
                },
            })?;
        if !out.status.success() {
            return Err(OciError::WasmOptFailed {
                module: "(version check)".into(),
                detail: format!(
                    "{}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Validates `module`, optimizes it, and validates the result. `name` is for messages.
    pub fn optimize(&self, name: &str, module: &[u8]) -> Result<Optimized, OciError> {
        validate(name, module)?;
        let version = self.version()?;
        let dir = tempfile::tempdir()
            .map_err(|e| OciError::io("cannot create", std::env::temp_dir(), e))?;
        let input = dir.path().join("in.wasm");
        let output = dir.path().join("out.wasm");
        std::fs::write(&input, module).map_err(|e| OciError::io("cannot write", &input, e))?;
        let out = Command::new(&self.program)
            .args(WASM_OPT_FLAGS)
            .arg(&input)
            .arg("-o")
            .arg(&output)
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => OciError::WasmOptMissing,
                _ => OciError::WasmOptFailed {
                    module: name.into(),
                    detail: e.to_string(),
                },
            })?;
        if !out.status.success() {
            return Err(OciError::WasmOptFailed {
                module: name.into(),
                detail: format!(
                    "{}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        let bytes = std::fs::read(&output).map_err(|e| OciError::io("cannot read", &output, e))?;
        validate(&format!("{name} (after wasm-opt)"), &bytes)?;
        Ok(Optimized {
            bytes,
            raw_size: module.len(),
            optimizer: format!("{version} {}", WASM_OPT_FLAGS.join(" ")),
        })
    }
}

/// The module as it is (`--no-opt`), after validating it.
pub fn unoptimized(name: &str, module: &[u8]) -> Result<Optimized, OciError> {
    validate(name, module)?;
    Ok(Optimized {
        bytes: module.to_vec(),
        raw_size: module.len(),
        optimizer: "none".into(),
    })
}

/// Checks that `module` is a valid core WebAssembly module (wasmparser's default feature set,
/// which covers what rustc emits for `wasm32-wasip1`).
pub fn validate(name: &str, module: &[u8]) -> Result<(), OciError> {
    if module.len() < 8 || &module[..4] != b"\0asm" {
        return Err(OciError::InvalidModule {
            module: name.into(),
            detail: "does not start with the WebAssembly magic bytes \\0asm".into(),
        });
    }
    wasmparser::Validator::new()
        .validate_all(module)
        .map(|_| ())
        .map_err(|e| OciError::InvalidModule {
            module: name.into(),
            detail: e.to_string(),
        })
}

/// The `proxy_abi_version_*` functions the module exports (the proxy-wasm ABI versions it
/// speaks), sorted. Used for the artifact variant's runtime config.
pub fn proxy_abi_versions(module: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        let Ok(wasmparser::Payload::ExportSection(reader)) = payload else {
            continue;
        };
        for export in reader.into_iter().flatten() {
            if export.name.starts_with("proxy_abi_version_") {
                found.push(export.name.to_string());
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    // (module (func (export "proxy_abi_version_0_2_1")))
    const TINY: &[u8] = &[
        0, 97, 115, 109, 1, 0, 0, 0, 1, 4, 1, 96, 0, 0, 3, 2, 1, 0, 7, 27, 1, 23, 112, 114, 111,
        120, 121, 95, 97, 98, 105, 95, 118, 101, 114, 115, 105, 111, 110, 95, 48, 95, 50, 95, 49,
        0, 0, 10, 4, 1, 2, 0, 11,
    ];

    #[test]
    fn a_missing_wasm_opt_says_how_to_get_it_or_skip_it() {
        let err = WasmOpt::at("/nonexistent/wasm-opt")
            .optimize("m", TINY)
            .unwrap_err();
        assert!(matches!(err, OciError::WasmOptMissing), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("apt-get install binaryen") && text.contains("--no-opt"),
            "{text}"
        );
    }

    #[test]
    fn invalid_modules_are_rejected_with_the_validator_message() {
        let err = unoptimized("m", b"not wasm at all")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("m is not a valid WebAssembly module") && err.contains("magic"),
            "{err}"
        );
        let mut truncated = TINY.to_vec();
        truncated.truncate(TINY.len() - 3);
        assert!(unoptimized("m", &truncated).is_err());
        let ok = unoptimized("m", TINY).unwrap();
        assert_eq!(
            (ok.raw_size, ok.size(), ok.optimizer.as_str()),
            (TINY.len(), TINY.len(), "none")
        );
        assert_eq!(
            proxy_abi_versions(TINY),
            vec!["proxy_abi_version_0_2_1".to_string()]
        );
    }
}
