//! meshward: the command-line entry point. Thin commands over the libraries
//! (`meshward-host`, `meshward-manifests`, `meshward-core`); it holds no policy logic.

mod cmd;
mod serve;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "meshward",
    version,
    about = "Resilience policy for Istio as proxy-wasm filters"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the filters through a built-in scenario and show what happened.
    Demo(cmd::demo::DemoArgs),
    /// Drive a plugin chain with a traffic scenario on virtual time and report what happened.
    Run(cmd::run::RunArgs),
    /// Put a plugin chain in front of a real upstream (system clock, callouts over the network).
    Serve(cmd::serve::ServeArgs),
    /// Validate policy files; print every problem as file:line:col: field.path: message.
    Check(cmd::check::CheckArgs),
    /// Build each filter into an OCI image layout Istio accepts (wasm-opt -Oz, reproducible).
    Package(cmd::package::PackageArgs),
    /// Push image layouts to an OCI registry; print and record their manifest digests.
    Push(cmd::push::PushArgs),
    /// Render every manifest around the filters (WasmPlugins, traffic, security, tracing,
    /// backup, monitoring) from a policy file into a directory.
    Render(cmd::render::RenderArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(args) => cmd::demo::run(&args),
        Command::Run(args) => cmd::run::run(&args),
        Command::Serve(args) => cmd::serve::run(&args),
        Command::Package(args) => cmd::package::run(&args),
        Command::Push(args) => cmd::push::run(&args),
        Command::Render(args) => cmd::render::run(&args),
        Command::Check(args) => {
            if !cmd::check::run(&args)? {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}
