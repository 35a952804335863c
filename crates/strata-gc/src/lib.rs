//! What may delete data in a strata repository, and when.
//!
//! A newcomer who wants to reason about what can delete data reads this crate and
//! `strata_repo::condemned` (the condemnation objects), nothing else:
//!
//! - [`lock`]: the cluster lock (one operation that changes what is visible at a time)
//!   and the garbage collection lock, as chains of generations judged by the storage's
//!   clock ([`lock::clock`]), never by a host's; writers' marks ([`lock::running_writers`])
//!   that announce every backup, copy and WAL push to garbage collection; and when a
//!   holder or writer has ended (its lease, then the longest time a write stays in
//!   flight: no rule here needs an operation to be short, clocks to agree or `/proc` to
//!   tell the truth).
//! - [`collect_garbage_with`]: garbage collection under the garbage collection lock,
//!   never the cluster lock, in typed phases (module `collect`): `view` (what it reads),
//!   `condemn` (phase 1, returns `Condemned`), `sweep` (`choose` takes it and returns
//!   `Doomed`, `unlist` takes that out of the index, `delete` deletes) and `orphans`.
//!   Each phase takes the value the one before returns, so the order is the compiler's
//!   to keep.
//! - Models: exhaustive checks of the lock protocol (`lock/model.rs`) and of garbage
//!   collection against writers whose writes land late (`model.rs`); each safety rule
//!   has a switch (`STRATA_TEST_UNSAFE`) that removes it, and a test that finds the
//!   damage then.
//!
//! ```no_run
//! # async fn example(repo: std::sync::Arc<strata_repo::Repository>) -> Result<(), strata_gc::GcError> {
//! // Report what a collection would delete, without deleting anything.
//! let report = strata_gc::collect_garbage_with(&repo, true, strata_gc::DEFAULT_GRACE).await?;
//! println!("{} packs would go", report.packs_deleted);
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod collect;
pub mod lock;
#[cfg(test)]
mod model;

pub use collect::{collect_garbage, collect_garbage_with, take_gc_lock, GcReport, DEFAULT_GRACE};
use strata_repo::RepoError;

/// Why garbage collection stopped; nothing it had not finished was deleted.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// The repository or its storage failed (a damaged index refuses the run too).
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The garbage collection lock could not be taken or was lost.
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    /// A backup references data the index lacks: the repository needs repair first.
    #[error("{0}")]
    NeedsRepair(String),
}

impl From<strata_store::StoreError> for GcError {
    fn from(err: strata_store::StoreError) -> Self {
        GcError::Repo(err.into())
    }
}

/// Result alias of garbage collection.
pub type GcResult<T> = Result<T, GcError>;

/// A unique, time-sortable id for a collection run (`gc-20261122T055350Z-3fa1b2c4`).
fn run_name() -> String {
    format!("gc-{}", strata_repo::summary::new_backup_name())
}

#[cfg(test)]
mod tests {
    /// A run's name is the id its lock and its report carry: the kind, then a backup-like
    /// time-sortable name, different for each run.
    #[test]
    fn each_run_is_named_by_time_and_apart() {
        let (a, b) = (super::run_name(), super::run_name());
        assert!(a.starts_with("gc-20") && a.len() > 20, "{a}");
        assert_ne!(a, b);
    }
}
