//! Build script: compiles every proxy-wasm module of the workspace for `wasm32-wasip1` and
//! generates `$OUT_DIR/gen.rs`, which `src/lib.rs` includes.
//!
//! Modules built: every crate under `host-test/guests/*` and every crate under `plugins/*`
//! that has a `cdylib` target (so a new filter is picked up without editing this file).
//! The pattern follows wasmtime's `crates/test-programs/artifacts/build.rs` (a nested
//! `cargo build --target=wasm32-wasip1` into a target dir of its own, so it never waits on
//! the outer build's lock, with the outer cargo's flags removed from its environment); it is
//! written anew here, not copied.
//!
//! Each module is built with the cargo profile its manifest names,
//! `[package.metadata.meshward] profile = "<name>"` (a profile of the root Cargo.toml), or
//! `wasm` (opt-level "z": small modules, what the filters ship) when it names none; the
//! benchmark guests name `wasm-speed` (opt-level 3, as plugin authors build for speed). One
//! nested `cargo build` per profile, in the order of the profiles' names.
//!
//! This script must not know any particular guest or filter: it discovers them, and their
//! profiles, with `cargo metadata`. It must not post-process the modules (no wasm-opt): the
//! bytes are what `cargo build --profile <profile>` produced, the same on every machine.

use std::collections::BTreeMap;
use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const TARGET: &str = "wasm32-wasip1";
/// The profile of a module whose manifest names none.
const DEFAULT_PROFILE: &str = "wasm";

/// Variables the outer cargo sets for build scripts (or for rustc) that must not reach the
/// nested build: they would redirect its target dir, change its flags, wrap rustc in clippy,
/// or tie it to the outer jobserver.
const LEAKING_ENV: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "RUSTDOCFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_DEP_INFO_BASEDIR",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "CLIPPY_ARGS",
    "CLIPPY_CONF_DIR",
    "__CARGO_FIX_PLZ",
    "__CARGO_DEFAULT_LIB_METADATA",
    "OUT_DIR",
    "TARGET",
    "HOST",
    "PROFILE",
    "OPT_LEVEL",
    "DEBUG",
    "NUM_JOBS",
];

/// One module to build: `name` is the crate's directory name (`noop`, `ratelimit`).
struct Module {
    name: String,
    package: String,
    lib_name: String,
    kind: &'static str,
    /// The cargo profile it is built with (`wasm`, `wasm-speed`).
    profile: String,
}

fn main() {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("artifacts/ lives inside the workspace root")
        .to_path_buf();
    let out_dir = PathBuf::from(env_var("OUT_DIR"));

    // Re-run when a module's sources or the build settings change; never watch target dirs.
    for watched in [
        root.join("host-test").join("guests"),
        root.join("plugins"),
        root.join("Cargo.toml"),
        root.join("Cargo.lock"),
    ] {
        println!("cargo:rerun-if-changed={}", watched.display());
    }
    println!("cargo:rerun-if-env-changed=MESHWARD_WASM_TARGET_DIR");

    let cargo = env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from);
    let modules = discover(&cargo, &root);
    if modules.is_empty() {
        fail("found no guest or filter crate to build", "");
    }

    ensure_wasm_target();

    // `<target>/<profile>/build/meshward-artifacts-<hash>/out` -> `<target>/<profile>/wasm-guests`:
    // shared by every build of this crate in one profile (incremental), never the outer lock.
    let wasm_target_dir = env::var_os("MESHWARD_WASM_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            out_dir
                .ancestors()
                .nth(3)
                .map(|profile_dir| profile_dir.join("wasm-guests"))
        })
        .unwrap_or_else(|| out_dir.join("wasm-guests"));

    build_modules(&cargo, &root, &wasm_target_dir, &modules);

    let mut gen = String::new();
    let mut entries = Vec::new();
    let mut by_kind: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for module in &modules {
        let built = wasm_target_dir
            .join(TARGET)
            .join(&module.profile)
            .join(format!("{}.wasm", module.lib_name));
        let copied = out_dir.join(format!("{}.wasm", module.name));
        if let Err(err) = fs::copy(&built, &copied) {
            fail(
                &format!(
                    "the nested build succeeded but {} is missing ({err})",
                    built.display()
                ),
                "",
            );
        }
        let ident = const_name(&module.name);
        let path = copied.display().to_string();
        writeln!(
            gen,
            "/// `{}` ({}, package `{}`), built with `--profile {}` for `{TARGET}`.\n\
             pub const {ident}: &[u8] = include_bytes!({path:?});",
            module.name, module.kind, module.package, module.profile
        )
        .expect("write to String");
        entries.push(format!(
            "    Module {{ name: {:?}, package: {:?}, kind: Kind::{}, profile: {:?}, path: {path:?}, bytes: {ident} }},",
            module.name,
            module.package,
            if module.kind == "guest" { "Guest" } else { "Filter" },
            module.profile,
        ));
        by_kind
            .entry(module.kind)
            .or_default()
            .push(module.name.clone());
    }
    writeln!(
        gen,
        "/// Every module this crate built, guests first, each kind sorted by name.\n\
         pub const ALL: &[Module] = &[\n{}\n];",
        entries.join("\n")
    )
    .expect("write to String");
    for (kind, names) in by_kind {
        writeln!(
            gen,
            "/// Calls `$mac!(name)` once per {kind} module (to make a missing test a compile error).\n\
             #[macro_export]\nmacro_rules! foreach_{kind} {{\n    ($mac:ident) => {{\n{}    }};\n}}",
            names
                .iter()
                .map(|n| format!("        $mac!({n});\n"))
                .collect::<String>()
        )
        .expect("write to String");
    }
    let gen_path = out_dir.join("gen.rs");
    if let Err(err) = fs::write(&gen_path, gen) {
        fail(&format!("cannot write {}: {err}", gen_path.display()), "");
    }
}

/// Lists the crates to build with `cargo metadata --no-deps` (no resolution, no network).
fn discover(cargo: &Path, root: &Path) -> Vec<Module> {
    let mut cmd = Command::new(cargo);
    cmd.args([
        "metadata",
        "--no-deps",
        "--format-version",
        "1",
        "--manifest-path",
    ])
    .arg(root.join("Cargo.toml"));
    scrub(&mut cmd);
    let output = run(&mut cmd, "cargo metadata");
    let meta: serde_json::Value = match serde_json::from_slice(&output) {
        Ok(v) => v,
        Err(err) => fail(&format!("cargo metadata printed invalid JSON: {err}"), ""),
    };
    let guests_dir = root.join("host-test").join("guests");
    let plugins_dir = root.join("plugins");
    let mut modules = Vec::new();
    for package in meta["packages"].as_array().into_iter().flatten() {
        let manifest = PathBuf::from(package["manifest_path"].as_str().unwrap_or_default());
        let Some(crate_dir) = manifest.parent() else {
            continue;
        };
        let kind = if crate_dir.parent() == Some(guests_dir.as_path()) {
            "guest"
        } else if crate_dir.parent() == Some(plugins_dir.as_path()) {
            "filter"
        } else {
            continue;
        };
        let cdylib = package["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| {
                t["crate_types"]
                    .as_array()
                    .is_some_and(|types| types.iter().any(|ty| ty == "cdylib"))
            });
        let Some(cdylib) = cdylib else {
            if kind == "guest" {
                fail(
                    &format!(
                        "{} has no cdylib target: every guest must be `crate-type = [\"cdylib\", ...]`",
                        manifest.display()
                    ),
                    "",
                );
            }
            continue; // plugins/core, plugins/kit: libraries, not modules
        };
        let name = crate_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let profile = declared_profile(&package["metadata"], &manifest);
        modules.push(Module {
            name,
            profile,
            package: package["name"].as_str().unwrap_or_default().to_string(),
            lib_name: cdylib["name"]
                .as_str()
                .unwrap_or_default()
                .replace('-', "_"),
            kind,
        });
    }
    modules.sort_by(|a, b| (a.kind != "guest", &a.name).cmp(&(b.kind != "guest", &b.name)));
    for pair in modules.windows(2) {
        if const_name(&pair[0].name) == const_name(&pair[1].name) {
            fail(
                &format!(
                    "two modules are both named `{}` (guest and filter names must differ)",
                    pair[0].name
                ),
                "",
            );
        }
    }
    modules
}

/// The profile a module's `[package.metadata.meshward]` names, or [`DEFAULT_PROFILE`]. Fails
/// on anything else in that table, and on a profile that is not a plain name.
fn declared_profile(metadata: &serde_json::Value, manifest: &Path) -> String {
    let table = &metadata["meshward"];
    if table.is_null() {
        return DEFAULT_PROFILE.to_string();
    }
    let bad = |problem: &str| -> ! {
        fail(
            &format!(
                "{}: [package.metadata.meshward] {problem} (want `profile = \"<a profile of the root Cargo.toml>\"`)",
                manifest.display()
            ),
            "",
        )
    };
    let Some(table) = table.as_object() else {
        bad("is not a table");
    };
    if let Some(unknown) = table.keys().find(|k| *k != "profile") {
        bad(&format!("has an unknown key `{unknown}`"));
    }
    match table.get("profile") {
        None => DEFAULT_PROFILE.to_string(),
        Some(serde_json::Value::String(p))
            if !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
        {
            p.clone()
        }
        Some(other) => bad(&format!("has profile = {other}, not a profile name")),
    }
}

/// `rustup target add` when the toolchain's sysroot lacks the target (a fresh machine):
/// rust-toolchain.toml's `targets` is not applied to an already-installed toolchain.
fn ensure_wasm_target() {
    let rustc = env::var_os("RUSTC").map_or_else(|| PathBuf::from("rustc"), PathBuf::from);
    let mut cmd = Command::new(&rustc);
    cmd.args(["--print", "sysroot"]);
    let sysroot = String::from_utf8_lossy(&run(&mut cmd, "rustc --print sysroot"))
        .trim()
        .to_string();
    let target_lib = Path::new(&sysroot).join("lib").join("rustlib").join(TARGET);
    if target_lib.is_dir() {
        return;
    }
    println!("cargo:warning=installing the {TARGET} target (missing from {sysroot}) with rustup");
    let mut cmd = Command::new("rustup");
    cmd.args(["target", "add", TARGET]);
    run(&mut cmd, "rustup target add wasm32-wasip1");
}

/// One nested `cargo build` per profile, each building every module of that profile.
fn build_modules(cargo: &Path, root: &Path, target_dir: &Path, modules: &[Module]) {
    let mut by_profile: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for module in modules {
        by_profile
            .entry(&module.profile)
            .or_default()
            .push(&module.package);
    }
    for (profile, packages) in by_profile {
        let mut cmd = Command::new(cargo);
        cmd.arg("build")
            .arg("--manifest-path")
            .arg(root.join("Cargo.toml"))
            .args(["--target", TARGET, "--profile", profile])
            .arg("--target-dir")
            .arg(target_dir);
        for package in &packages {
            cmd.args(["-p", package]);
        }
        scrub(&mut cmd);
        // Forward `-D warnings` only when the outer build denies warnings (CI), as wasmtime does.
        if env::var("CARGO_ENCODED_RUSTFLAGS").is_ok_and(|f| f.contains("warnings"))
            || env::var("RUSTFLAGS").is_ok_and(|f| f.contains("-D warnings"))
        {
            cmd.env("RUSTFLAGS", "-D warnings");
        }
        run(
            &mut cmd,
            &format!(
                "the nested {TARGET} build with --profile {profile} (of {})",
                packages.join(", ")
            ),
        );
    }
}

/// Removes what leaks from the outer cargo.
fn scrub(cmd: &mut Command) {
    for var in LEAKING_ENV {
        cmd.env_remove(var);
    }
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_CFG_")
            || key.starts_with("CARGO_FEATURE_")
            || key.starts_with("DEP_")
            || (key.starts_with("CARGO_TARGET_") && key.ends_with("_RUSTFLAGS"))
        {
            cmd.env_remove(key.as_ref());
        }
    }
}

/// Runs `cmd`, returns its stdout; on failure prints everything it said and fails the build.
fn run(cmd: &mut Command, what: &str) -> Vec<u8> {
    cmd.stdin(Stdio::null());
    eprintln!("running: {cmd:?}");
    let output = match cmd.output() {
        Ok(output) => output,
        Err(err) => fail(&format!("cannot start {what}: {err}"), ""),
    };
    if !output.status.success() {
        let mut said = String::from_utf8_lossy(&output.stdout).into_owned();
        said.push_str(&String::from_utf8_lossy(&output.stderr));
        fail(&format!("{what} failed ({})", output.status), &said);
    }
    output.stdout
}

fn fail(message: &str, details: &str) -> ! {
    eprintln!("{details}");
    eprintln!("error: meshward-artifacts: {message}");
    panic!("meshward-artifacts: {message}");
}

fn env_var(name: &str) -> String {
    env::var(name).unwrap_or_else(|_| fail(&format!("cargo did not set {name}"), ""))
}

fn const_name(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}
