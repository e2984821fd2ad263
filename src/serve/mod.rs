//! `meshward serve`: a plugin chain in front of a real upstream, on the system clock. The
//! pieces: `listener` (downstream HTTP/1.1), `worker` + `chain` (one host worker per thread
//! and its timeline driver), `exchange` (one request through chain and upstream), `upstream`
//! (forwarding), `cluster` + `grpc` (callouts over the network), `admin` (metrics), `net`
//! (clients, addresses), `http` (conversions), `wake` (callout answer → worker). This file
//! wires them: build the host, load the chain, start workers and listeners, stop on Ctrl-C
//! or SIGTERM. Must not know about any particular plugin.

mod admin;
mod chain;
mod cluster;
mod exchange;
mod grpc;
mod http;
mod listener;
mod net;
mod upstream;
mod wake;
mod worker;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use meshward_host::{FailStrategy, Host, LogLevel, LogSink, PluginSpec, SystemClock};
use meshward_scenario::host_engine::ChainPlugin;
use meshward_scenario::model::FailStrategyName;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use cluster::parse as parse_cluster;
pub use net::Target;

use exchange::Settings;
use worker::WorkerThread;

/// Everything `meshward serve` needs, already checked.
#[derive(Debug)]
pub struct Options {
    /// The plugins, in request order.
    pub chain: Vec<ChainPlugin>,
    /// Downstream address.
    pub listen: SocketAddr,
    /// Admin address (None: no admin listener).
    pub admin: Option<SocketAddr>,
    /// The service behind the chain.
    pub upstream: Target,
    /// Named clusters for callouts.
    pub clusters: Vec<(String, Target)>,
    /// Worker threads.
    pub workers: usize,
    /// Open downstream connections at most.
    pub max_connections: usize,
    /// Largest body read from anyone (request, upstream answer, callout answer).
    pub body_limit: usize,
    /// Envoy's route timeout for the upstream answer.
    pub route_timeout: Duration,
    /// Longest a request may stay paused in the chain.
    pub stream_timeout: Duration,
    /// How long open connections get to finish after Ctrl-C.
    pub drain: Duration,
    /// Plugin log lines below this level are dropped.
    pub log_level: LogLevel,
}

/// Serves until Ctrl-C or SIGTERM. Once requests are accepted, one line on stdout names the
/// bound addresses (`--listen 127.0.0.1:0` picks a free port).
pub fn run(opts: Options) -> Result<()> {
    let io = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("meshward-io")
        .enable_all()
        .build()
        .context("starting the I/O runtime")?;
    let net = Arc::new(net::Net::new(io.handle().clone(), opts.body_limit));

    let mut builder = Host::builder()
        .clock(SystemClock::new())
        .log_sink(LogSink::Stderr)
        .log_level(opts.log_level)
        .buffer_limit_bytes(opts.body_limit);
    for (name, target) in &opts.clusters {
        builder = builder
            .http_cluster(
                name,
                cluster::HttpCluster {
                    target: target.clone(),
                    net: Arc::clone(&net),
                },
            )
            .grpc_cluster(
                name,
                cluster::GrpcCluster {
                    target: target.clone(),
                    net: Arc::clone(&net),
                },
            );
    }
    let host = builder.build().context("building the host")?;
    let plugins = opts
        .chain
        .iter()
        .map(|p| {
            host.load(spec(p))
                .with_context(|| format!("plugin `{}` ({})", p.name, p.source))
        })
        .collect::<Result<Vec<_>>>()?;

    let listener = io
        .block_on(TcpListener::bind(opts.listen))
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    let admin = match opts.admin {
        Some(a) => Some(
            io.block_on(TcpListener::bind(a))
                .with_context(|| format!("cannot listen on {a} (admin)"))?,
        ),
        None => None,
    };

    let settings = Arc::new(Settings {
        upstream: opts.upstream.clone(),
        net: Arc::clone(&net),
        route_timeout: opts.route_timeout,
        stream_timeout: opts.stream_timeout,
    });
    let workers = (0..opts.workers)
        .map(|i| WorkerThread::spawn(i, host.clone(), plugins.clone(), Arc::clone(&settings)))
        .collect::<Result<Vec<_>>>()?;

    announce(&opts, &listener, admin.as_ref())?;
    let (stop_tx, stop_rx) = watch::channel(false);
    io.spawn(async move {
        stop_signal().await;
        eprintln!("meshward serve: stopping (open connections get their answers first)");
        let _ = stop_tx.send(true);
    });
    if let Some(a) = admin {
        io.spawn(admin::serve(a, host.clone(), stop_rx.clone()));
    }
    let senders = workers.iter().map(|w| w.tx.clone()).collect();
    let limits = listener::Limits {
        max_connections: opts.max_connections,
        body_limit: opts.body_limit,
    };
    io.block_on(listener::serve(
        listener, senders, limits, stop_rx, opts.drain,
    ));
    // Connections still open after the drain are dropped with the runtime; their workers'
    // requests then see the client gone and end.
    io.shutdown_timeout(Duration::from_secs(1));
    for w in workers {
        w.join();
    }
    Ok(())
}

fn spec(p: &ChainPlugin) -> PluginSpec {
    PluginSpec::new(p.name.clone(), p.wasm.clone())
        .root_id(p.root_id.clone())
        .vm_id(p.vm_id.clone())
        .plugin_config(p.config.clone())
        .fail_strategy(match p.fail_strategy {
            FailStrategyName::FailClosed => FailStrategy::FailClosed,
            FailStrategyName::FailOpen => FailStrategy::FailOpen,
            FailStrategyName::FailReload => FailStrategy::FailReload,
        })
}

/// One line on stdout saying where to send requests (tests and scripts read it).
fn announce(opts: &Options, listener: &TcpListener, admin: Option<&TcpListener>) -> Result<()> {
    let addr = listener.local_addr().context("listener address")?;
    let names: Vec<&str> = opts.chain.iter().map(|p| p.name.as_str()).collect();
    let mut line = format!(
        "meshward serve: listening on http://{addr} -> upstream http://{}, {} worker(s), chain: {}",
        opts.upstream.authority(),
        opts.workers,
        names.join(", "),
    );
    if let Some(a) = admin.and_then(|a| a.local_addr().ok()) {
        line.push_str(&format!(", admin http://{a}/stats/prometheus"));
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").context("writing to stdout")?;
    out.flush().context("writing to stdout")
}

/// Ctrl-C, or SIGTERM on Unix.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
