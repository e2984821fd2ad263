//! The typed errors of building, writing, reading and pushing filter images. Each variant names
//! what went wrong and, where there is one, what the user can do about it. It knows nothing of
//! how the errors are printed (the CLI adds context with anyhow).

use std::path::PathBuf;

/// Everything that can go wrong in `oci`.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// `wasm-opt` is not on PATH.
    #[error(
        "wasm-opt (binaryen) is not installed or not on PATH: install it (Debian: `apt-get install binaryen`) \
         or package without optimization (--no-opt)"
    )]
    WasmOptMissing,

    /// `wasm-opt` ran and failed.
    #[error("wasm-opt failed on {module}: {detail}")]
    WasmOptFailed {
        /// The module being optimized.
        module: String,
        /// wasm-opt's exit status and stderr.
        detail: String,
    },

    /// The module is not a valid WebAssembly module.
    #[error("{module} is not a valid WebAssembly module: {detail}")]
    InvalidModule {
        /// Which module (a name or a path).
        module: String,
        /// What the validator said.
        detail: String,
    },

    /// A name that must be a repository path component or a tag is malformed.
    #[error("invalid {what} {value:?}: {rule}")]
    InvalidName {
        /// "image name", "tag", ...
        what: &'static str,
        /// The rejected value.
        value: String,
        /// The rule it breaks.
        rule: &'static str,
    },

    /// Reading or writing a file failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// "cannot read", "cannot write", ...
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A directory is not an OCI image layout, or the layout is incomplete or corrupt.
    #[error("{path} is not a usable OCI image layout: {detail}")]
    BadLayout {
        /// The layout directory.
        path: PathBuf,
        /// What is missing or wrong (re-run `meshward package` to rebuild it).
        detail: String,
    },

    /// A layout has no image with the requested tag.
    #[error("{path} has no image tagged {tag:?} (it has: {available})")]
    TagNotInLayout {
        /// The layout directory.
        path: PathBuf,
        /// The tag asked for.
        tag: String,
        /// The tags it does have.
        available: String,
    },

    /// The docker config file could not be used.
    #[error("docker config {path}: {detail}")]
    DockerConfig {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },

    /// A digests file is not a JSON object of name to digest.
    #[error("digests file {path}: {detail}")]
    BadDigests {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },

    /// An image reference could not be parsed.
    #[error("invalid image reference {reference:?}: {detail}")]
    BadReference {
        /// The rejected reference.
        reference: String,
        /// The parser's complaint.
        detail: String,
    },

    /// Nothing answered at the registry's address, or TLS/HTTP did not match.
    #[error("cannot reach registry {registry}: {detail}{hint}")]
    Unreachable {
        /// host[:port]
        registry: String,
        /// The transport error.
        detail: String,
        /// A suggestion (starts with "; ") or empty.
        hint: String,
    },

    /// The registry refused the credentials (or the lack of them).
    #[error(
        "registry {registry} refused access ({detail}); credentials used: {credentials}. \
         Log in (`docker login {registry}`) or point DOCKER_CONFIG at a config.json with an `auths` entry for it"
    )]
    AuthRefused {
        /// host[:port]
        registry: String,
        /// What the registry said.
        detail: String,
        /// Where the credentials came from ("none" when anonymous).
        credentials: String,
    },

    /// The registry has no manifest for this tag or digest.
    #[error("{reference} not found on the registry (no such tag or digest): {detail}")]
    NotFound {
        /// The full reference.
        reference: String,
        /// What the registry said.
        detail: String,
    },

    /// After a push the registry reports a different digest than the one built.
    #[error("registry stores {reference} as {actual}, but the pushed manifest is {expected}")]
    DigestMismatch {
        /// The full reference.
        reference: String,
        /// The digest computed locally.
        expected: String,
        /// What the registry reported.
        actual: String,
    },

    /// Any other registry failure.
    #[error("registry operation {operation} on {reference} failed: {detail}")]
    Registry {
        /// "push blob", "push manifest", ...
        operation: &'static str,
        /// The reference involved.
        reference: String,
        /// The client's error, with its causes.
        detail: String,
    },

    /// The async runtime could not be created.
    #[error("cannot start the network runtime: {0}")]
    Runtime(std::io::Error),
}

impl OciError {
    /// Shorthand for an [`OciError::Io`].
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        OciError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
