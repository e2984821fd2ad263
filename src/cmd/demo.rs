//! `meshward demo`: runs the built-in plugin chain through the built-in scenario
//! (`deploy/examples/demo-scenario.yaml`, compiled in) and shows what happened. No files or
//! flags needed. The chain is the scenario's `plugins:` (the rate-limit filter with a policy
//! by tier); to show another chain, edit that file (`headers-scenario.yaml` has a sample plugin).

use anyhow::Result;
use clap::Args;

use super::run::{builtin, execute, print};

/// The scenario the demo runs: the example file, built into the binary.
const DEMO_SCENARIO: &str = include_str!("../../deploy/examples/demo-scenario.yaml");

/// Flags of `meshward demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Print the report as JSON (schema `meshward.run/v1`).
    #[arg(long)]
    pub json: bool,
}

/// Runs the demo.
pub fn run(args: &DemoArgs) -> Result<()> {
    let scenario = meshward_scenario::parse(DEMO_SCENARIO, "deploy/examples/demo-scenario.yaml")?;
    let chain = meshward_scenario::host_engine::resolve_plugins(
        &scenario,
        std::path::Path::new("."),
        &builtin,
    )?;
    let workers = scenario.workers.unwrap_or(1);
    if !args.json {
        let names: Vec<&str> = chain.iter().map(|p| p.name.as_str()).collect();
        println!(
            "meshward demo: {} proxy-wasm plugin(s) [{}] in the wasmtime host, {} workers, virtual time.",
            chain.len(),
            names.join(", "),
            workers
        );
        println!("Scenario: deploy/examples/demo-scenario.yaml (run your own with `meshward run --scenario FILE`).\n");
    }
    let report = execute(&scenario, &chain, workers, 200)?;
    print(&report, args.json, 8)
}
