//! Errors of this crate: a scenario that does not parse or does not make sense (with
//! file:line:col), and failures while running one. Knows nothing of the CLI.

use std::fmt;

use crate::locate::Position;

/// A problem in a scenario file, pointing at where to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    /// The file (or `<inline>`).
    pub file: String,
    /// Where in the file, when known.
    pub position: Option<Position>,
    /// The field path, like `phases[1].rate` (empty for the whole file).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(p) = self.position {
            write!(f, ":{}:{}", p.line, p.col)?;
        }
        if self.path.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ScenarioError {}

/// A failure while preparing or running a scenario.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The scenario is invalid.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// A file the scenario names cannot be read.
    #[error("cannot read {what} `{path}`: {source}")]
    Read {
        /// What the file is for (`plugin`, `plugin config`).
        what: &'static str,
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No plugin to run.
    #[error("no plugins: name them in the scenario (`plugins:`) or with --plugin")]
    NoPlugins,
    /// A plugin could not be loaded or its configuration was rejected.
    #[error("plugin `{plugin}` failed to load: {message}")]
    Load {
        /// The plugin's name.
        plugin: String,
        /// The host's explanation (includes the plugin's log lines).
        message: String,
    },
    /// The host failed outside any plugin's control.
    #[error("host error: {0}")]
    Host(String),
}
