//! `meshward push`: sends the image layouts `meshward package` wrote to an OCI registry, prints
//! each as `<repo>@sha256:<digest>` and can record the digests for `meshward render --digests`.
//! With `--resolve` it only looks up what the tags point to now. Holds no registry logic of its
//! own (that is `meshward_manifests::oci`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use meshward_manifests::oci::{self, Digests, Registry, RegistryOptions};

/// Arguments of `meshward push`.
#[derive(clap::Args, Debug)]
pub struct PushArgs {
    /// Registry and repository prefix: `host[:port][/path]`, e.g. `127.0.0.1:5000/meshward`.
    /// Each image goes to `<registry>/<name>:<tag>`.
    #[arg(long)]
    pub registry: String,
    /// Images to push (default: every layout under --from).
    pub filters: Vec<String>,
    /// Where `meshward package` wrote the layouts.
    #[arg(long, default_value = "target/images")]
    pub from: PathBuf,
    /// Tag to push (default: the tag in each layout).
    #[arg(long)]
    pub tag: Option<String>,
    /// Speak plain HTTP (a local registry without TLS).
    #[arg(long)]
    pub plain_http: bool,
    /// Accept any TLS certificate (a test registry with a self-signed certificate).
    #[arg(long)]
    pub insecure: bool,
    /// Write `{"<name>": "sha256:<hex>", ...}` here (merged with what the file holds).
    #[arg(long, value_name = "FILE")]
    pub digests_out: Option<PathBuf>,
    /// Do not upload: look up the digest each tag has on the registry now.
    #[arg(long)]
    pub resolve: bool,
    /// Docker config with credentials (default: $DOCKER_CONFIG/config.json or ~/.docker/config.json).
    #[arg(long, value_name = "FILE")]
    pub docker_config: Option<PathBuf>,
}

/// Pushes (or resolves) every selected image; prints `<repo>@sha256:<hex>` per image.
pub fn run(args: &PushArgs) -> anyhow::Result<()> {
    let prefix = args.registry.trim_end_matches('/');
    if prefix.is_empty() || prefix.contains("://") {
        bail!("--registry takes host[:port][/path] without a scheme (use --plain-http for http), got {:?}", args.registry);
    }
    let registry = Registry::new(RegistryOptions {
        plain_http: args.plain_http,
        insecure_tls: args.insecure,
        docker_config: args.docker_config.clone(),
        connect_timeout: None,
    })?;
    let names = names(args)?;
    let mut digests = Digests::new();
    for name in &names {
        let dir = args.from.join(name);
        let digest = if args.resolve {
            let tag = match &args.tag {
                Some(t) => t.clone(),
                None => {
                    oci::read_layout(&dir, None)
                        .with_context(|| {
                            format!("no --tag given and no layout to take it from for {name}")
                        })?
                        .tag
                }
            };
            let reference = format!("{prefix}/{name}:{tag}");
            let digest = registry
                .resolve(&reference)
                .with_context(|| format!("resolving {reference}"))?;
            println!("{prefix}/{name}@{digest}");
            digest
        } else {
            let image = oci::read_layout(&dir, args.tag.as_deref())
                .with_context(|| format!("reading image {name}"))?;
            let reference = format!("{prefix}/{name}:{}", image.tag);
            let pushed = registry
                .push(&image, &reference)
                .with_context(|| format!("pushing {reference}"))?;
            eprintln!(
                "pushed {} ({} blobs uploaded, {} already there)",
                pushed.reference, pushed.uploaded, pushed.skipped
            );
            println!("{}", pushed.pinned());
            pushed.digest
        };
        digests.insert(name.clone(), digest);
    }
    if let Some(path) = &args.digests_out {
        oci::write_digests(path, &digests)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("digests written to {}", path.display());
    }
    Ok(())
}

fn names(args: &PushArgs) -> anyhow::Result<Vec<String>> {
    if !args.filters.is_empty() {
        return Ok(args.filters.clone());
    }
    let found = layouts_under(&args.from)?;
    if found.is_empty() {
        bail!(
            "no image layouts under {} (run `meshward package --out {}` first, or name the images)",
            args.from.display(),
            args.from.display()
        );
    }
    Ok(found)
}

fn layouts_under(dir: &Path) -> anyhow::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        if entry.path().join("oci-layout").is_file() {
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_string());
            }
        }
    }
    names.sort();
    Ok(names)
}
