//! The CLI's subcommands, one file each.

pub mod check;
pub mod demo;
pub mod package;
pub mod push;
pub mod render;
pub mod run;
pub mod serve;
