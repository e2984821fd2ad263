//! `meshward check policy.yaml...`: validates policy files offline with the same parser the
//! filters and the renderer use, and prints every problem as `file:line:col: path: message`.
//! Exit code 1 when any file has a problem. Holds no policy logic of its own.

use std::path::PathBuf;

use anyhow::Context;
use meshward_core::policy::parse_yaml;

/// Arguments of `meshward check`.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Policy files (YAML).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Checks every file; returns false when any has a problem (after printing them all).
pub fn run(args: &CheckArgs) -> anyhow::Result<bool> {
    let mut ok = true;
    for path in &args.files {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {name}"))?;
        match parse_yaml(&text, &name) {
            Ok(policy) => {
                let filters: Vec<&str> = policy.filters_used().iter().map(|f| f.name()).collect();
                println!(
                    "{name}: ok (service {}, {} routes, filters: {})",
                    policy.service,
                    policy.routes.len(),
                    if filters.is_empty() {
                        "none".to_string()
                    } else {
                        filters.join(", ")
                    }
                );
            }
            Err(errors) => {
                ok = false;
                for e in errors.iter() {
                    eprintln!("{e}");
                }
                eprintln!("{name}: {} problem(s)", errors.len());
            }
        }
    }
    Ok(ok)
}
