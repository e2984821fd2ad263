//! `meshward serve`: put a plugin chain in front of a real upstream on the system clock, with
//! callouts going to real clusters over the network, so curl, wrk or k6 can be pointed at it.
//! Thin: parses and checks flags, builds the chain like `meshward run`; the server is in
//! `crate::serve`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use meshward_host::LogLevel;
use meshward_scenario::host_engine::resolve_plugins;
use meshward_scenario::model::FailStrategyName;
use meshward_scenario::units::Span;

use crate::cmd::run::{builtin, cli_chain, pair_configs};
use crate::serve;

/// Flags of `meshward serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// A proxy-wasm module: a .wasm file, or a module built into meshward (`headers`, `noop`,
    /// `ratelimit`, ...). Repeat for a chain, in request order.
    #[arg(long = "plugin", value_name = "FILE.wasm")]
    pub plugins: Vec<String>,
    /// Configuration file for the `--plugin` given just before it (passed to the plugin as is).
    #[arg(long = "config", value_name = "FILE")]
    pub configs: Vec<PathBuf>,
    /// Take the chain from a scenario file's `plugins:` instead (see docs/scenario.md).
    #[arg(long, value_name = "FILE", conflicts_with = "plugins")]
    pub scenario: Option<PathBuf>,
    /// Address to accept HTTP/1.1 requests on (port 0 picks a free one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The service behind the chain, http://host:port.
    #[arg(long, value_name = "URL")]
    pub upstream: String,
    /// A cluster that dispatch_http_call / dispatch_grpc_call reach, NAME=http://host:port
    /// (HTTP/1.1 for HTTP callouts, HTTP/2 without TLS for gRPC). Repeatable.
    #[arg(long = "cluster", value_name = "NAME=URL")]
    pub clusters: Vec<String>,
    /// Admin address serving /stats/prometheus, or `off`.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:15000")]
    pub admin: String,
    /// Worker threads (one VM per plugin each, as Envoy's --concurrency).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub workers: usize,
    /// What requests see after a plugin's VM trapped: fail_closed (503), fail_open, fail_reload.
    /// Applies to every plugin given with --plugin (scenario files set it per plugin).
    #[arg(long, value_name = "STRATEGY", default_value = "fail_closed")]
    pub fail_strategy: String,
    /// Open client connections at most; more wait in the kernel's backlog.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_connections: usize,
    /// Largest body read, in bytes (requests, upstream answers, callout answers); a larger
    /// request gets 413 (Envoy's default buffer limit is 1 MiB).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    pub max_body: usize,
    /// How long the upstream may take to answer (Envoy's route timeout): 504 after it.
    #[arg(long, value_name = "DURATION", default_value = "15s")]
    pub route_timeout: Span,
    /// How long a request may stay paused in the chain: 408 after it.
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub stream_timeout: Span,
    /// After Ctrl-C, how long open connections get to finish.
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    pub drain: Span,
    /// Plugin log level printed to stderr: trace, debug, info, warn, error, critical.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    pub log_level: String,
}

/// Runs the command.
pub fn run(args: &ServeArgs) -> Result<()> {
    serve::run(options(args, &std::env::args().collect::<Vec<_>>())?)
}

fn options(args: &ServeArgs, argv: &[String]) -> Result<serve::Options> {
    let strategy = fail_strategy(&args.fail_strategy)?;
    let chain = match &args.scenario {
        Some(file) => {
            if !args.configs.is_empty() {
                bail!("--config goes with --plugin, not with --scenario");
            }
            let scenario = meshward_scenario::load_file(file)?;
            let base = file.parent().unwrap_or(Path::new("."));
            resolve_plugins(&scenario, base, &builtin)?
        }
        None if args.plugins.is_empty() => {
            bail!("name the chain with --plugin FILE.wasm (repeatable) or --scenario FILE")
        }
        None => {
            let mut chain = cli_chain(&args.plugins, &args.configs, &pair_configs(argv)?)?;
            for p in &mut chain {
                p.fail_strategy = strategy;
            }
            chain
        }
    };
    if chain.is_empty() {
        bail!("the chain is empty: the scenario file names no plugins");
    }
    if !(1..=64).contains(&args.workers) {
        bail!("--workers must be from 1 to 64, got {}", args.workers);
    }
    if args.max_connections == 0 {
        bail!("--max-connections must be at least 1");
    }
    let upstream = serve::Target::parse(&args.upstream).context("--upstream")?;
    let clusters = args
        .clusters
        .iter()
        .map(|c| serve::parse_cluster(c))
        .collect::<Result<Vec<_>>>()?;
    for (i, (name, _)) in clusters.iter().enumerate() {
        if clusters[..i].iter().any(|(n, _)| n == name) {
            bail!("--cluster `{name}` is given twice");
        }
    }
    let admin = match args.admin.as_str() {
        "off" | "none" => None,
        a => Some(
            a.parse::<SocketAddr>()
                .with_context(|| format!("--admin `{a}`: expected host:port or `off`"))?,
        ),
    };
    Ok(serve::Options {
        chain,
        listen: args.listen,
        admin,
        upstream,
        clusters,
        workers: args.workers,
        max_connections: args.max_connections,
        body_limit: args.max_body,
        route_timeout: args.route_timeout.get(),
        stream_timeout: args.stream_timeout.get(),
        drain: args.drain.get(),
        log_level: log_level(&args.log_level)?,
    })
}

fn fail_strategy(s: &str) -> Result<FailStrategyName> {
    Ok(match s.replace('-', "_").as_str() {
        "fail_closed" => FailStrategyName::FailClosed,
        "fail_open" => FailStrategyName::FailOpen,
        "fail_reload" => FailStrategyName::FailReload,
        _ => bail!("--fail-strategy `{s}`: expected fail_closed, fail_open or fail_reload"),
    })
}

fn log_level(s: &str) -> Result<LogLevel> {
    Ok(match s {
        "trace" => LogLevel::Trace,
        "debug" => LogLevel::Debug,
        "info" => LogLevel::Info,
        "warn" | "warning" => LogLevel::Warn,
        "error" => LogLevel::Error,
        "critical" => LogLevel::Critical,
        _ => bail!("--log-level `{s}`: expected trace, debug, info, warn, error or critical"),
    })
}
