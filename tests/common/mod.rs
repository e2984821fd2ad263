//! Shared by the CLI tests: run the built `meshward` binary from the repository root.

use std::process::{Command, Output};

/// `meshward <args>` as a user runs it, from the repository root; its whole output.
pub fn meshward(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshward"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run meshward")
}
