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
//! reading back) run on threads of their own either way.
//!
//! Londiste's worker reads its batches the same way and gains the same: replaying 300,000
//! events took 3.0 s on one thread against 3.3-3.6 s on the multi-threaded runtime. Its
//! table copies pipe COPY's bytes from one connection to another, which needs no CPU of
//! strata's own, so several at once still fit on one thread.

use crate::cli::Command;
use std::future::Future;
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

/// Runs the future `make` builds on a thread of its own with a single-threaded runtime,
/// and waits for its result without blocking the caller's runtime: how `strata server`'s
/// scheduler runs table retention (see the module's doc).
pub async fn on_own_thread<F, Fut, T>(what: &str, make: F) -> Result<T, String>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let (done, result) = tokio::sync::oneshot::channel();
    let runtime = Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime for {what}: {e}"))?;
    std::thread::Builder::new()
        .name(what.to_string())
        .spawn(move || {
            let _ = done.send(runtime.block_on(make()));
        })
        .map_err(|e| format!("cannot start a thread for {what}: {e}"))?;
    result
        .await
        .map_err(|_| format!("{what} stopped without a result"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_on_its_own_thread_returns_its_result() {
        let caller = Builder::new_multi_thread().enable_all().build().unwrap();
        let caller_thread = std::thread::current().id();
        let (value, thread) = caller
            .block_on(on_own_thread("test work", || async {
                tokio::task::yield_now().await;
                (42, std::thread::current().id())
            }))
            .unwrap();
        assert_eq!(value, 42);
        assert_ne!(thread, caller_thread);
    }

    #[test]
    fn a_panic_is_an_error_not_a_hang() {
        let caller = Builder::new_current_thread().enable_all().build().unwrap();
        let result: Result<(), String> =
            caller.block_on(on_own_thread("failing work", || async { panic!("boom") }));
        assert!(result.unwrap_err().contains("failing work"));
    }
}
