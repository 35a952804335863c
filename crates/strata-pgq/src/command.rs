//! The PgQ commands as the `strata pgq ...` line gives them: with the `cli` feature these
//! types are the command line's definitions (clap derives, their doc comments the help),
//! so each flag is declared once, here, beside the functions that read it.
// A field's doc comment is its --help text: the fields without one have none on purpose.
#![allow(missing_docs)]

use crate::ticker::{exit_policy, Overrides};
use std::path::{Path, PathBuf};

/// The database holding the queues.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct PgqDb {
    /// Database with the pgq extension: postgresql://user@host/db or host=... dbname=...
    #[cfg_attr(feature = "cli", arg(long, env = "STRATA_PGQ_DB"))]
    pub db: Option<String>,
}

/// The `pgq` subcommands.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(clap::Subcommand))]
pub enum PgqCommand {
    /// Queues (event rate, ticker lag, rotation) and consumers (lag, last seen, pending
    /// events). With --max-lag, exits 1 when a ticker or consumer lags more (for cron, with -q).
    Status {
        #[cfg_attr(feature = "cli", command(flatten))]
        db: PgqDb,
        /// Only this queue.
        #[cfg_attr(feature = "cli", arg(long))]
        queue: Option<String>,
        /// Fail (exit 1) when a queue's ticker lag or a consumer's lag passes this many seconds.
        #[cfg_attr(feature = "cli", arg(long, value_name = "SECS"))]
        max_lag: Option<f64>,
    },
    /// Create a queue (a no-op when it exists).
    CreateQueue {
        #[cfg_attr(feature = "cli", command(flatten))]
        db: PgqDb,
        queue: String,
        /// Install strata's event notification trigger so the ticker ticks at once.
        #[cfg_attr(feature = "cli", arg(long))]
        notify: bool,
        /// Queue setting KEY=VALUE (repeatable): ticker_max_count, ticker_max_lag,
        /// ticker_idle_period, ticker_paused, rotation_period, external_ticker.
        #[cfg_attr(feature = "cli", arg(long = "set", value_name = "KEY=VALUE"))]
        settings: Vec<String>,
    },
    /// Drop a queue; --force drops it even with consumers registered.
    DropQueue {
        #[cfg_attr(feature = "cli", command(flatten))]
        db: PgqDb,
        queue: String,
        #[cfg_attr(feature = "cli", arg(long))]
        force: bool,
    },
    /// Register a consumer on a queue (at the newest tick), or with --sub a cooperative
    /// subconsumer of a registered consumer (installs strata's coop functions).
    Register {
        #[cfg_attr(feature = "cli", command(flatten))]
        db: PgqDb,
        queue: String,
        consumer: String,
        /// Subconsumer name: several processes share CONSUMER's stream (docs/pgq.md).
        #[cfg_attr(feature = "cli", arg(long))]
        sub: Option<String>,
    },
    /// Unregister a consumer (its position and retry events are dropped), or with --sub a
    /// subconsumer (refused while it holds a batch).
    Unregister {
        #[cfg_attr(feature = "cli", command(flatten))]
        db: PgqDb,
        queue: String,
        consumer: String,
        #[cfg_attr(feature = "cli", arg(long))]
        sub: Option<String>,
    },
    /// Show a queue's settings, or change them with KEY=VALUE arguments.
    Config {
        #[cfg_attr(feature = "cli", command(flatten))]
        db: PgqDb,
        queue: String,
        /// KEY=VALUE settings to change (none: show).
        settings: Vec<String>,
    },
    /// Turn strata's event notification trigger on or off for a queue.
    Notify {
        #[cfg_attr(feature = "cli", command(flatten))]
        db: PgqDb,
        queue: String,
        #[cfg_attr(feature = "cli", arg(value_parser = ["on", "off"]))]
        state: String,
    },
    /// Run the ticker: ticks, retry events and maintenance for every database with pgq.
    /// Takes pgqd's ini file, like `pgqd CONFIG`, or strata's configuration (a .toml
    /// file; --config or ./strata.toml by default) with a [pgq] section.
    Ticker {
        #[cfg_attr(feature = "cli", command(flatten))]
        args: TickerArgs,
    },
}

/// `strata pgq ticker`: its file and what the command line changes of it.
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct TickerArgs {
    /// pgqd.ini, or strata's .toml configuration with a [pgq] section (docs/pgq.md).
    #[cfg_attr(feature = "cli", arg(value_name = "CONFIG"))]
    pub file: Option<PathBuf>,
    /// Detach and run in the background (needs logfile and pidfile in the config or
    /// given here).
    #[cfg_attr(feature = "cli", arg(short, long))]
    pub daemon: bool,
    /// Serve /health and /metrics on this address (host:port).
    #[cfg_attr(feature = "cli", arg(long, value_name = "ADDR"))]
    pub health: Option<String>,
    /// Stop with exit code 1 when a database stays unreachable (or stalled) this many
    /// seconds; 0 turns off the config file's exit_on_unreachable.
    #[cfg_attr(feature = "cli", arg(long, value_name = "SECS"))]
    pub exit_on_unreachable: Option<f64>,
    #[cfg_attr(feature = "cli", arg(long))]
    pub pidfile: Option<PathBuf>,
    #[cfg_attr(feature = "cli", arg(long))]
    pub logfile: Option<PathBuf>,
}

impl TickerArgs {
    /// The settings of the file that the command line replaces.
    pub fn overrides(&self) -> crate::Result<Overrides> {
        Ok(Overrides {
            health_listen: self.health.clone(),
            exit_on_unreachable: exit_policy(self.exit_on_unreachable)?,
            pidfile: self.pidfile.clone(),
            logfile: self.logfile.clone(),
        })
    }
}

impl PgqCommand {
    /// Whether the global `--config` names this command's own file (the ticker's
    /// pgqd.ini), so strata's configuration must not be read from it. A `.toml` file is
    /// strata's configuration, whose `[pgq]` section the ticker runs on.
    pub fn reads_config_itself(&self, config: Option<&Path>) -> bool {
        matches!(self, PgqCommand::Ticker { .. }) && config.is_some_and(|c| !is_toml(c))
    }
}

/// A file ending in `.toml` is strata's configuration; the ticker's other files are
/// pgqd's ini.
pub fn is_toml(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "toml")
}
