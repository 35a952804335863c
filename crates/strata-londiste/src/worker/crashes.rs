//! Fault injection for tests: the points of its table's state machine where a copy task
//! can be made to die once.

use crate::error::{LondisteError, Result};
use std::sync::Arc;

/// Where a copy task can be made to die, one point per table state it owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyPoint {
    /// Rows streamed, before the copy transaction commits (the table stays `in-copy`).
    InCopy,
    /// Copy committed, before any catch-up batch (`catching-up`).
    CatchingUp,
    /// Right after asking for the hand-over (`wanna-sync`).
    WannaSync,
    /// On seeing the main worker's `do-sync`, before finishing.
    DoSync,
}

/// One-shot copy-task crashes by table (fully qualified name), shared by all tasks.
#[derive(Debug, Clone, Default)]
pub struct CopyCrashes(Arc<std::sync::Mutex<Vec<(String, CopyPoint)>>>);

impl CopyCrashes {
    /// Crashes the copy task of each `(table, point)` once.
    pub fn new(points: Vec<(String, CopyPoint)>) -> CopyCrashes {
        CopyCrashes(Arc::new(std::sync::Mutex::new(points)))
    }

    /// `Err` (once) when the copy task of `table` must die at `point`.
    pub(crate) fn check(&self, table: &str, point: CopyPoint) -> Result<()> {
        let mut points = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = points.iter().position(|(t, p)| t == table && *p == point) {
            points.remove(i);
            return Err(LondisteError::State(format!(
                "crash injected in the copy of {table} at {point:?}"
            )));
        }
        Ok(())
    }

    /// Crashes not fired yet.
    pub fn pending(&self) -> usize {
        self.0.lock().map(|p| p.len()).unwrap_or(0)
    }
}
