//! meshward-scenario: traffic scenarios for proxy-wasm plugin chains, run on virtual time.
//!
//! A scenario (YAML, see `docs/scenario.md`) names phases of traffic (duration, rate,
//! request templates), how the upstream answers, and clusters for callouts. [`parse`] reads
//! it with file:line:col errors; [`driver::run`] feeds it through an [`engine::Engine`]
//! and returns a [`report::Report`] (JSON shape `meshward.run/v1`). [`host_engine`] is the
//! engine over meshward-host: any proxy-wasm plugin, ours or anybody's.
//!
//! This crate must not know any meshward policy: plugin configuration is opaque bytes.

pub mod dist;
pub mod driver;
pub mod engine;
pub mod error;
#[cfg(feature = "host")]
pub mod host_engine;
pub mod locate;
pub mod model;
pub mod parse;
pub mod render;
pub mod report;
pub mod traffic;
pub mod units;

pub use driver::{run, Progress, RunOptions};
pub use error::{RunError, ScenarioError};
pub use model::Scenario;
pub use parse::{load_file, parse};
pub use report::{Report, SCHEMA};
