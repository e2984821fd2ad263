//! `meshward package`: builds each filter's `.wasm` (from `meshward-artifacts`, or any module
//! given with `--wasm`) into an OCI image layout Istio's agent accepts, under `--out/<name>/`.
//! Holds no image logic of its own (that is `meshward_manifests::oci`).

use std::path::PathBuf;

use anyhow::{bail, Context};
use meshward_artifacts::Kind;
use meshward_manifests::oci::{self, PackageOptions, Variant, WasmOpt};

/// Arguments of `meshward package`.
#[derive(clap::Args, Debug)]
pub struct PackageArgs {
    /// Filters to package (default: every filter this build has).
    pub filters: Vec<String>,
    /// Package this module instead of the built-in filters (a plugin author's own filter).
    #[arg(long, value_name = "FILE", conflicts_with = "filters")]
    pub wasm: Option<PathBuf>,
    /// Image name for --wasm (default: the file name without .wasm, with '_' turned into '-').
    #[arg(long, requires = "wasm")]
    pub name: Option<String>,
    /// Where the image layouts go (one directory per filter).
    #[arg(long, default_value = "target/images")]
    pub out: PathBuf,
    /// Image layout: compat (one tar+gzip layer, Istio's first choice) or artifact (config +
    /// raw wasm layers).
    #[arg(long, default_value = "compat")]
    pub variant: Variant,
    /// Tag written into each layout (what `meshward push` pushes by default).
    #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
    pub tag: String,
    /// Put the module in as it is instead of running `wasm-opt -Oz`.
    #[arg(long)]
    pub no_opt: bool,
    /// Root ids for the artifact variant's runtime config (default: the image name).
    #[arg(long = "root-id")]
    pub root_ids: Vec<String>,
}

/// Packages the filters and prints one line per image.
pub fn run(args: &PackageArgs) -> anyhow::Result<()> {
    let options = PackageOptions {
        variant: args.variant,
        optimizer: (!args.no_opt).then(WasmOpt::from_env),
        tag: args.tag.clone(),
        root_ids: args.root_ids.clone(),
    };
    let modules = modules(args)?;
    for (name, bytes) in &modules {
        let p = oci::package(name, bytes, &args.out, &options)
            .with_context(|| format!("packaging {name}"))?;
        let pct = if p.raw_size == 0 {
            0.0
        } else {
            100.0 * p.size as f64 / p.raw_size as f64
        };
        println!(
            "{}: {} -> {} bytes ({pct:.0}%), {} image {}:{} {} in {}",
            p.name,
            p.raw_size,
            p.size,
            args.variant,
            p.name,
            p.tag,
            p.digest,
            p.dir.display()
        );
        eprintln!("  optimizer: {}", p.optimizer);
    }
    Ok(())
}

fn modules(args: &PackageArgs) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    if let Some(path) = &args.wasm {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let name = match &args.name {
            Some(n) => n.clone(),
            None => path
                .file_stem()
                .and_then(|s| s.to_str())
                .map(|s| s.replace('_', "-").to_ascii_lowercase())
                .with_context(|| {
                    format!(
                        "cannot derive an image name from {}; pass --name",
                        path.display()
                    )
                })?,
        };
        return Ok(vec![(name, bytes)]);
    }
    let filters: Vec<_> = meshward_artifacts::ALL
        .iter()
        .filter(|m| m.kind == Kind::Filter)
        .collect();
    if args.filters.is_empty() {
        if filters.is_empty() {
            bail!("this build has no filters to package (plugins/* with a cdylib target)");
        }
        return Ok(filters
            .iter()
            .map(|m| (m.name.to_string(), m.bytes.to_vec()))
            .collect());
    }
    args.filters
        .iter()
        .map(|want| {
            filters
                .iter()
                .find(|m| m.name == want)
                .map(|m| (m.name.to_string(), m.bytes.to_vec()))
                .with_context(|| {
                    let known: Vec<&str> = filters.iter().map(|m| m.name).collect();
                    format!(
                        "no filter named {want:?} (known: {}); use --wasm FILE for another module",
                        known.join(", ")
                    )
                })
        })
        .collect()
}
