//! `strata pgq ...`: the PgQ ticker and queue administration (being built; see issue 9).

use crate::commands::{CommandResult, Context};
use crate::failure::{code, Failure};
use clap::Subcommand;

/// The `pgq` subcommands.
#[derive(Debug, Subcommand)]
pub enum PgqCommand {
    /// Queues, consumers and ticker lag.
    Status,
}

/// Runs a `pgq` subcommand.
pub(crate) async fn run(_ctx: &Context, command: PgqCommand) -> CommandResult {
    match command {
        PgqCommand::Status => Err(Failure::new(code::USAGE, "strata pgq is not built yet")),
    }
}
