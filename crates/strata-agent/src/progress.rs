//! Live progress of a node operation, shared with whoever displays it, and the switch
//! that cancels it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use strata_cluster::node_api::ProgressSnapshot;

/// Counters updated as files are handled. Cheap to update from any thread; readers see a
/// consistent-enough picture for a progress display.
#[derive(Debug, Default)]
pub struct Progress {
    files: AtomicU64,
    bytes: AtomicU64,
    failed: AtomicU64,
    total_files: AtomicU64,
    total_bytes: AtomicU64,
    cancelled: AtomicBool,
}

impl Progress {
    /// Records a handled file of `bytes` bytes.
    pub fn file_done(&self, bytes: u64) {
        self.files.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Records bytes handled outside whole files (chunks uploaded for other nodes).
    pub fn bytes_done(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Records a file that could not be handled.
    pub fn file_failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds to the known total (restores know it up front; backups do not).
    pub fn add_total(&self, bytes: u64) {
        self.total_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Adds to the known number of files.
    pub fn add_total_files(&self, files: u64) {
        self.total_files.fetch_add(files, Ordering::Relaxed);
    }

    /// Starts counting a new phase from zero (the cancel switch stays as it is).
    pub fn reset(&self) {
        for counter in [
            &self.files,
            &self.bytes,
            &self.failed,
            &self.total_files,
            &self.total_bytes,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
    }

    /// Files handled so far.
    pub fn files(&self) -> u64 {
        self.files.load(Ordering::Relaxed)
    }

    /// Bytes handled so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The total, when known (0 otherwise).
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes.load(Ordering::Relaxed)
    }

    /// All counters at once.
    pub fn snapshot(&self) -> ProgressSnapshot {
        ProgressSnapshot {
            files: self.files(),
            bytes: self.bytes(),
            failed: self.failed.load(Ordering::Relaxed),
            total_files: self.total_files.load(Ordering::Relaxed),
            total_bytes: self.total_bytes(),
        }
    }

    /// Asks the operation to stop at the next file (its lease was lost, or it was aborted).
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// Whether [`Progress::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
}
