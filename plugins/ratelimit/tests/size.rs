//! The rate-limit filter's image size: the module that `meshward package` ships (the
//! `--profile wasm` build, then `wasm-opt -Oz --strip-debug --strip-producers`, the flags of
//! `wasm-manifests/src/oci/optimize.rs`) must not grow past a ceiling. Every Envoy worker
//! downloads, compiles and keeps it, so growth is a cost users see. Needs binaryen's
//! `wasm-opt` (or `MESHWARD_WASM_OPT`): skipped with a message when it is missing, failed
//! when `MESHWARD_REQUIRE_TOOLS=1` (CI installs binaryen, see `.ci/packages.txt`).

use std::path::PathBuf;
use std::process::Command;

/// Ceiling for the optimized module, bytes. Issue 3's goal is 150 000; this build measures
/// about 148 900: ~142 900 since kit's direct ABI layer replaced the proxy-wasm SDK and its
/// hashbrown, plus ~6 KB spent on request-path speed (the per-worker scratch buffer, the
/// one-check evaluation, the plan's precomputed rule order, the kept last 429, response
/// fields kept without a copy or an allocation). The module embeds source paths in its
/// panic locations, so a clone at a longer path measures a few bytes more. README "Rate limiting" lists
/// what the rest is made of. Lower it as the module shrinks; never raise it without saying
/// why in the commit.
const MAX_OPTIMIZED_BYTES: u64 = 148_500;

/// Same flags as `meshward package`.
const FLAGS: &[&str] = &["-Oz", "--strip-debug", "--strip-producers"];

fn wasm_opt() -> Option<PathBuf> {
    let program = std::env::var_os("MESHWARD_WASM_OPT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("wasm-opt"));
    let runs = Command::new(&program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if runs {
        return Some(program);
    }
    if std::env::var("MESHWARD_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!(
            "{} is required (MESHWARD_REQUIRE_TOOLS=1) but cannot be run; see .ci/packages.txt",
            program.display()
        );
    }
    eprintln!(
        "skipped: {} not found (install binaryen to check the module size)",
        program.display()
    );
    None
}

#[test]
fn optimized_module_stays_under_the_ceiling() {
    let Some(program) = wasm_opt() else { return };
    let dir = std::env::temp_dir().join(format!("meshward-size-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("ratelimit.wasm");
    let output = dir.join("ratelimit.opt.wasm");
    std::fs::write(&input, meshward_artifacts::RATELIMIT).unwrap();
    let status = Command::new(&program)
        .args(FLAGS)
        .arg(&input)
        .arg("-o")
        .arg(&output)
        .status()
        .unwrap();
    assert!(status.success(), "wasm-opt failed: {status}");
    let size = std::fs::metadata(&output).unwrap().len();
    let raw = meshward_artifacts::RATELIMIT.len();
    std::fs::remove_dir_all(&dir).unwrap();
    eprintln!("ratelimit.wasm: {raw} bytes raw, {size} bytes after wasm-opt");
    assert!(
        size <= MAX_OPTIMIZED_BYTES,
        "the optimized rate-limit module is {size} bytes, over the ceiling of \
         {MAX_OPTIMIZED_BYTES}: look at what grew (README \"Rate limiting\" says how to measure)"
    );
    // The check measures a real module, not an empty file.
    assert!(size > 10_000, "implausibly small module: {size} bytes");
}
