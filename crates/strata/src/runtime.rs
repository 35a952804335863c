//! Which async runtime a command runs on.
//!
//! Most commands run on tokio's multi-threaded runtime. Table retention does not: its work
//! is streaming a partition out of PostgreSQL, and tokio-postgres hands COPY's messages
//! (one per row) from the connection task to the reading task through a channel. On a
//! multi-threaded runtime the two tasks sit on different threads, so every batch of rows
//! crosses threads (a wake-up, reference counts bouncing between cores). On one thread the
//! same archive of a 1 GiB partition took 8.6 s of CPU instead of 9.7 s, and its
//! throughput went from 90% to 99% of `COPY ... TO STDOUT | zstd -3`
//! (docs/benchmarks.md). Its CPU-heavy parts (hashing, compression, Parquet encoding,
//! reading back) run on threads of their own either way. `strata server`'s scheduler runs
//! table retention the same way (`strata_server`'s scheduled jobs).
//!
//! Londiste's worker reads its batches the same way and gains the same: replaying 300,000
//! events took 3.0 s on one thread against 3.3-3.6 s on the multi-threaded runtime. Its
//! table copies pipe COPY's bytes from one connection to another, which needs no CPU of
//! strata's own, so several at once still fit on one thread.

use crate::cli::Command;
use tokio::runtime::{Builder, Runtime};

/// Whether `command` streams PostgreSQL data on one thread (see the module's doc).
fn single_threaded(command: &Command) -> bool {
    matches!(
        command,
        Command::Tables { .. }
            | Command::Ttl { .. }
            | Command::Load { .. }
            | Command::Londiste { .. }
    )
}

/// The runtime `command` runs on.
pub fn for_command(command: &Command) -> std::io::Result<Runtime> {
    if single_threaded(command) {
        Builder::new_current_thread().enable_all().build()
    } else {
        Builder::new_multi_thread().enable_all().build()
    }
}
