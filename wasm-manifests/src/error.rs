//! Errors of the renderer: a policy that does not parse or validate (with file:line:column),
//! a policy the renderer cannot turn into safe manifests, and output problems. Knows nothing
//! of how manifests look.

use std::path::PathBuf;

use meshward_core::policy::PolicyErrors;

/// Why rendering failed. Nothing is written to the output directory in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The policy file does not parse or validate.
    #[error(transparent)]
    Policy(#[from] PolicyErrors),
    /// The policy is valid for the filters but cannot be rendered; `path` is the field.
    #[error("{file}: {path}: {message}")]
    Unrenderable {
        /// Policy file name.
        file: String,
        /// Field path (`deployment.image.digests.ratelimit`).
        path: String,
        /// What to change.
        message: String,
    },
    /// The `--digests` file is unreadable or malformed.
    #[error("digests file {file}: {message}")]
    Digests {
        /// File.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// Reading the policy or writing the output failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A manifest could not be serialized (a bug).
    #[error("serializing {what}: {message}")]
    Serialize {
        /// Which object.
        what: String,
        /// serde's message.
        message: String,
    },
}
