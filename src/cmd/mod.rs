//! The CLI's subcommands, one file each.

pub mod check;
