//! The CLI's subcommands, one file each.

pub mod check;
pub mod render;
