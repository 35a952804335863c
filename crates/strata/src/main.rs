//! The `strata` command: parse, configure, call the library, print.

mod audit_commands;
mod cli;
mod client;
mod cluster_commands;
mod commands;
mod config;
mod failure;
mod key_commands;
mod lifecycle_commands;
mod londiste_commands;
mod manual;
mod output;
mod pgq_commands;
mod probe_command;
mod progress;
mod repair_commands;
mod runtime;
mod tables_commands;
mod wal_commands;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match runtime::for_command(&cli.command) {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("strata: error: cannot start the async runtime: {err}");
            return ExitCode::from(failure::code::FAILED);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("strata: error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
