//! `meshward run`: drive a proxy-wasm plugin chain with a traffic scenario on virtual time
//! and report what happened (text, or `--json` in the `meshward.run/v1` shape). Thin: the
//! work is in meshward-scenario; this file parses flags, resolves files, shows progress.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use meshward_scenario::host_engine::{resolve_plugins, run_chain, ChainPlugin};
use meshward_scenario::model::FailStrategyName;
use meshward_scenario::{Progress, Report, Scenario};

/// Flags of `meshward run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// A proxy-wasm module: a .wasm file, or a module built into meshward (`headers`, `noop`,
    /// `ratelimit`, ...). Repeat for a chain, in request order; replaces the scenario's `plugins:`.
    #[arg(long = "plugin", value_name = "FILE.wasm")]
    pub plugins: Vec<String>,
    /// Configuration file for the `--plugin` given just before it (passed to the plugin as is).
    #[arg(long = "config", value_name = "FILE")]
    pub configs: Vec<PathBuf>,
    /// The traffic scenario (YAML; see docs/scenario.md).
    #[arg(long, value_name = "FILE")]
    pub scenario: PathBuf,
    /// Worker threads (one VM per plugin each); overrides the scenario's `workers`.
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Print the report as JSON (schema `meshward.run/v1`).
    #[arg(long)]
    pub json: bool,
    /// How many plugin log lines the report keeps (all are counted).
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub log_lines: usize,
}

/// Runs the command.
pub fn run(args: &RunArgs) -> Result<()> {
    let scenario = meshward_scenario::load_file(&args.scenario)?;
    let base = args
        .scenario
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let chain = if args.plugins.is_empty() {
        if !args.configs.is_empty() {
            bail!("--config goes after the --plugin it configures");
        }
        resolve_plugins(&scenario, &base, &builtin)?
    } else {
        let argv: Vec<String> = std::env::args().collect();
        let pairing = pair_configs(&argv)?;
        cli_chain(&args.plugins, &args.configs, &pairing)?
    };
    let workers = args.workers.or(scenario.workers).unwrap_or(1);
    if !(1..=64).contains(&workers) {
        bail!("--workers must be from 1 to 64, got {workers}");
    }
    let report = execute(&scenario, &chain, workers, args.log_lines)?;
    print(&report, args.json, 20)
}

/// Runs a scenario with a progress bar on stderr when it takes more than a moment.
pub fn execute(
    scenario: &Scenario,
    chain: &[ChainPlugin],
    workers: usize,
    log_lines: usize,
) -> Result<Report> {
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
    let mut shown = false;
    let mut progress = |p: Progress| {
        if !tty {
            return;
        }
        if !shown && started.elapsed() > Duration::from_secs(1) {
            shown = true;
            bar.set_length(p.end.as_millis() as u64);
            bar.set_style(
                ProgressStyle::with_template("{spinner} virtual {pos}/{len} ms [{bar:30}] {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        if shown {
            bar.set_position(p.now.min(p.end).as_millis() as u64);
            bar.set_message(format!("{} requests", p.started));
        }
    };
    let result = run_chain(scenario, chain, workers, log_lines, Some(&mut progress));
    bar.finish_and_clear();
    Ok(result?)
}

/// Prints a report as text or JSON.
pub fn print(report: &Report, json: bool, log_lines: usize) -> Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).context("serializing the report")?
        );
    } else {
        print!("{}", meshward_scenario::render::render(report, log_lines));
    }
    Ok(())
}

/// The bytes of a module built into this binary.
pub fn builtin(name: &str) -> Option<Vec<u8>> {
    meshward_artifacts::bytes_of(name).map(<[u8]>::to_vec)
}

/// For each `--plugin` (in order), the index of the `--config` that follows it, if any.
pub(crate) fn pair_configs(argv: &[String]) -> Result<Vec<Option<usize>>> {
    let mut out: Vec<Option<usize>> = Vec::new();
    let mut configs = 0usize;
    let mut skip_value = false;
    for a in argv.iter().skip(1) {
        if skip_value {
            skip_value = false;
            continue;
        }
        let (flag, inline) = match a.split_once('=') {
            Some((f, _)) if f.starts_with("--") => (f, true),
            _ => (a.as_str(), false),
        };
        match flag {
            "--plugin" => out.push(None),
            "--config" => {
                match out.last_mut() {
                    Some(slot @ None) => *slot = Some(configs),
                    Some(Some(_)) => bail!("two --config for one --plugin"),
                    None => bail!("--config goes after the --plugin it configures"),
                }
                configs += 1;
            }
            _ => continue,
        }
        skip_value = !inline;
    }
    Ok(out)
}

pub(crate) fn cli_chain(
    plugins: &[String],
    configs: &[PathBuf],
    pairing: &[Option<usize>],
) -> Result<Vec<ChainPlugin>> {
    plugins
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let path = Path::new(p);
            let (wasm, source, name) = if path.exists() || p.ends_with(".wasm") {
                let bytes =
                    std::fs::read(path).with_context(|| format!("cannot read plugin `{p}`"))?;
                let stem = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| p.clone());
                (bytes, p.clone(), stem)
            } else if let Some(bytes) = builtin(p) {
                (bytes, format!("builtin:{p}"), p.clone())
            } else {
                let known: Vec<&str> = meshward_artifacts::ALL.iter().map(|m| m.name).collect();
                bail!(
                    "plugin `{p}`: no such file, and not a built-in module ({})",
                    known.join(", ")
                );
            };
            let config = match pairing
                .get(i)
                .copied()
                .flatten()
                .and_then(|c| configs.get(c))
            {
                Some(f) => std::fs::read(f)
                    .with_context(|| format!("cannot read plugin config `{}`", f.display()))?,
                None => Vec::new(),
            };
            Ok(ChainPlugin {
                name,
                root_id: String::new(),
                vm_id: String::new(),
                wasm,
                config,
                fail_strategy: FailStrategyName::FailClosed,
                source,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        std::iter::once("meshward")
            .chain(s.split(' '))
            .map(String::from)
            .collect()
    }

    #[test]
    fn configs_pair_with_the_plugin_before_them() {
        let p = pair_configs(&argv("run --plugin a.wasm --config a.json --plugin b.wasm --scenario s.yaml --plugin=c.wasm --config=c.json")).unwrap();
        assert_eq!(p, vec![Some(0), None, Some(1)]);
        assert!(pair_configs(&argv("run --config a.json --plugin a.wasm")).is_err());
        assert!(pair_configs(&argv("run --plugin a --config x --config y")).is_err());
    }
}
