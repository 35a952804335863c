//! The replay worker: reads batches of the provider's queue and applies them to the local
//! node, exactly once. Each batch is applied in one target transaction that also records
//! the batch's end tick with `pgq_node.set_consumer_completed`; only after that commit is
//! the batch finished on the provider. A crash between the two leaves the batch open, and
//! the next run sees the tick already recorded and just finishes it. This is pgq_node's own
//! bookkeeping, the one Python Londiste uses, so either worker can take over the node.
//!
//! The same loop, in copy role, drives each table's copy task after its initial COPY
//! (see [`copy`]): it applies only that table's events until the hand-over.
//!
//! Its modules, by step:
//!
//! - `process`: the process's edge: the `worker` command, its health server, its signals.
//! - `run`: runs of the worker: retries, a root's loop, a node's replay and its copy tasks.
//! - `replay`: the `Replayer` and its loop: ticks, table states before a batch, new copies.
//! - `apply`: one batch in one target transaction, its commit, the local watermark.
//! - `event`: one event: row changes into SQL, the set's control events, `EXECUTE`.
//! - `pause`: stopping and pausing: the stop flag, the node's flags, `PauseWatch`.
//! - `health`: how the worker is doing for `/ready` (`WorkerHealth`), the stall watchdog.
//! - `crashes`: where copy tasks die for tests (`CopyPoint`, `CopyCrashes`).
//! - [`copy`]: a table's initial copy and its copy task.
//! - `fkeys`: foreign keys a copy drops and the main loop restores.
//!
//! The copy task runs the replay loop and the loop starts copy tasks: `run` gives the
//! main role's loop `copy::start` (`replay::CopyLauncher`), so `replay` never names
//! `copy` and the two do not depend on each other.
//!
//! This file holds what they all share: the options, the retry backoff, stats and role.

mod apply;
pub mod copy;
mod crashes;
mod event;
mod fkeys;
mod health;
mod pause;
mod process;
mod replay;
mod run;

pub use crashes::{CopyCrashes, CopyPoint};
pub use health::WorkerHealth;
pub use process::{run_until_signal, serve_health, stop_on_signal, WorkerExit};
pub(crate) use replay::{open_consumer, open_target, Replayer};
pub use run::run;

use crate::monitor::WorkerMetrics;
use std::time::Duration;
use strata_pgq::log::Log;

/// How the worker runs, beyond the ini file.
#[derive(Debug, Clone, Default)]
pub struct WorkerOptions {
    /// Fault injection for tests: after the target commit of this many batches that
    /// applied rows, stop as a crash would (before `finish_batch` on the provider).
    pub crash_after_commit: Option<u64>,
    /// Fault injection for tests: copy tasks that die once at a point of their table's
    /// state machine (each entry fires once, then is removed).
    pub crash_copies: CopyCrashes,
    /// Stop with an error instead of retrying when a batch fails (tests, one-shot runs).
    pub fail_fast: bool,
    /// Where the worker says how it is doing, for `/ready` (see [`WorkerHealth`]).
    pub health: WorkerHealth,
    /// Where the worker logs (stderr at the ini's `log_level` by default).
    pub log: Log,
    /// What `/metrics` shows.
    pub metrics: WorkerMetrics,
}

/// The first wait after an error; it doubles on each failure in a row up to
/// [`RETRY_MAX`], and starts over after a round that went through.
pub const RETRY_MIN: Duration = Duration::from_secs(1);
/// The longest wait between retries.
pub const RETRY_MAX: Duration = Duration::from_secs(60);
/// How often a waiting worker reads its pause flag, for pauses of tools that do not
/// NOTIFY (Python Londiste, pgq_node's functions called by hand).
pub const PAUSE_POLL: Duration = Duration::from_millis(250);

/// The wait before retry number `failures` (1 for the first failure in a row).
pub fn retry_delay(failures: u32) -> Duration {
    let doubled = RETRY_MIN.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    doubled.min(RETRY_MAX)
}

/// What a worker did, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReplayStats {
    /// Batches applied: the worker's pace, next to its lag.
    pub batches: u64,
    /// Batches found already applied in the target (a crash came before finish_batch).
    pub batches_skipped: u64,
    /// Events read from those batches, each counted whatever became of it.
    pub events: u64,
    /// Statements sent to the target (runs of inserts or updates share one).
    pub statements: u64,
    /// Round trips to the target: statements travel many to one.
    pub round_trips: u64,
}

/// Which events a replayer applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    /// The main worker: every table in state `ok`, and the set's control events.
    Main,
    /// A copy task: only this table, while it is catching up or finishing its hand-over.
    Copy(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_from_one_second_doubling_to_a_minute() {
        let waits: Vec<u64> = (1..=9).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry_delay(0), RETRY_MIN);
        assert_eq!(retry_delay(u32::MAX), RETRY_MAX);
    }
}
