//! The pause records of one state directory, with what this process knows of them that no
//! file says.
//!
//! A [`PauseLedger`] owns a record's way from issued to resumed: [`PauseLedger::issue_pause`]
//! (after the record is saved; written in the `pause` module), [`PauseLedger::resume`]
//! (after the pause call ended) and [`PauseLedger::resume_orphans`] (what a dead process
//! or a failed resume left; both in the `resume` module), and [`PauseLedger::paused`]
//! (what is paused now). This module keeps the state they share, so that they use it and
//! it names neither. Two facts live only in memory: which
//! pause calls still run here (a resume waits for them, so it never lands first) and which
//! records were resumed here although their files could not be changed (never resumed
//! again here). They belong to the process, not to a static: the composition that builds
//! an agent and a coordinator over one state directory gives both clones of one ledger,
//! and two ledgers (two tests, two state directories) never see each other's calls.

use crate::record::{paused_in, pauses_dir, PauseRecord, RecordError};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The pause records under one state directory (see the module docs). Clones share what
/// this process knows of them.
#[derive(Clone)]
pub struct PauseLedger {
    state_dir: PathBuf,
    known: Arc<Known>,
}

/// What this process knows of the records that their files do not say.
#[derive(Default)]
struct Known {
    /// The pause calls still running here, by record path: `true` once ended.
    in_flight: Mutex<HashMap<PathBuf, watch::Receiver<bool>>>,
    /// Records resumed here whose files could be neither removed nor rewritten.
    resumed_here: Mutex<HashSet<PathBuf>>,
}

impl std::fmt::Debug for PauseLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PauseLedger")
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

impl PauseLedger {
    /// A ledger of the records under `state_dir`, knowing of no call yet: make one per
    /// state directory and process, and hand out clones.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        PauseLedger {
            state_dir: state_dir.into(),
            known: Arc::default(),
        }
    }

    /// The state directory the records are under.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The directory of the records (`<state_dir>/pauses`).
    pub fn dir(&self) -> PathBuf {
        pauses_dir(&self.state_dir)
    }

    /// Saves `record` durably: call it before the pause is issued.
    pub fn save(&self, record: &PauseRecord) -> std::io::Result<()> {
        record.save(&self.state_dir)
    }

    /// Removes `record` (a pause never issued, or resumed).
    pub fn remove(&self, record: &PauseRecord) -> std::io::Result<()> {
        record.remove(&self.state_dir)
    }

    /// The records: what is paused now. Unreadable records, and records someone else
    /// could have written, are reported, never run; records resumed here are left out.
    pub fn paused(&self) -> Vec<Result<PauseRecord, RecordError>> {
        paused_in(&self.state_dir, |path| self.resumed_here(path))
    }

    /// Notes that the pause call for the record at `path` runs; `ended` turns `true`
    /// when it has ended.
    pub(crate) fn call_started(&self, path: PathBuf, ended: watch::Receiver<bool>) {
        self.known.in_flight.lock().unwrap().insert(path, ended);
    }

    /// Notes that the pause call for the record at `path` has ended.
    pub(crate) fn call_ended(&self, path: &Path) {
        self.known.in_flight.lock().unwrap().remove(path);
    }

    /// Waits until this process's pause call for the record at `path`, if one runs, has
    /// ended (each is bounded by its hook's `timeout` plus `late_pause`).
    pub(crate) async fn wait_for_pause(&self, path: &Path) {
        let running = self.known.in_flight.lock().unwrap().get(path).cloned();
        if let Some(mut done) = running {
            let _ = done.wait_for(|ended| *ended).await;
        }
    }

    /// Remembers that the record at `path` was resumed (its file could not be changed).
    pub(crate) fn remember_resumed(&self, path: PathBuf) {
        self.known.resumed_here.lock().unwrap().insert(path);
    }

    /// Whether the record at `path` was resumed here already.
    fn resumed_here(&self, path: &Path) -> bool {
        self.known.resumed_here.lock().unwrap().contains(path)
    }
}
