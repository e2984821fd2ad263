//! `meshward render policy.yaml --out DIR`: renders every manifest around the filters from one
//! policy file (see `meshward_manifests::render`). All-or-nothing: on any problem it prints
//! the errors (file:line:column for policy problems) and leaves DIR as it was.

use std::path::PathBuf;

use anyhow::Context;
use meshward_manifests::render::{self, Options};

/// Arguments of `meshward render`.
#[derive(clap::Args, Debug)]
pub struct RenderArgs {
    /// The policy file.
    pub policy: PathBuf,
    /// Output directory (replaced whole).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// JSON `{"<filter>": "sha256:<hex>"}` from `meshward push --digests-out`; overrides
    /// `deployment.image.digests`.
    #[arg(long, value_name = "FILE")]
    pub digests: Option<PathBuf>,
}

/// Runs the command.
pub fn run(args: &RenderArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.policy)
        .with_context(|| format!("reading {}", args.policy.display()))?;
    let mut opts = Options {
        file_name: args.policy.display().to_string(),
        ..Options::default()
    };
    if let Some(d) = &args.digests {
        opts.digests = render::read_digests(d)?;
    }
    let rendered = render::render_str(&text, &opts)?;
    render::write_atomic(&rendered, &args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    for name in rendered.files.keys() {
        println!("{}", args.out.join(name).display());
    }
    Ok(())
}
