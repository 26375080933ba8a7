//! `ember-e2e`: Ember end to end in network namespaces (root).
//!
//! - `ember-e2e bench [--quick]`: the data-plane benchmark; prints one table.
//! - `ember-e2e demo`: the local demo (portal, relay, gateway, resource with a DNS name, the
//!   tunnel service signed in), kept up until Ctrl-C or SIGTERM.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line tool: printing is its job

mod anchors;
mod bench;
mod demo;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ember-e2e",
    about = "Ember end to end in network namespaces (root)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure the data plane with its anchors (raw path, wireguard-go, OpenVPN) in one run.
    Bench(bench::BenchArgs),
    /// Bring up the local demo in namespaces until Ctrl-C.
    Demo(demo::DemoArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Bench(args) => bench::run(args),
        Command::Demo(args) => demo::run(args),
    }
}
