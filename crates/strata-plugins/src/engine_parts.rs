//! The engines keep what strata keeps: a ledger of the parts an external component asked
//! its systems to create, written durably **before** each request.
//!
//! A Camunda backup creates parts in five systems (the web applications' backups, an
//! Elasticsearch snapshot, Zeebe's backup). An attempt can end anywhere: a part that
//! failed, a request that timed out (the system may still create it), a SIGTERM, a
//! SIGKILL. Were the parts known only in memory, each of these would leave backups in
//! the engines that strata never names again. So every part is written into an
//! [`Attempt`] under `<state_dir>/engine-parts/` before its request is sent, and an
//! attempt's file is removed only when one of two things is true:
//!
//! - its backup's summary records the attempt (same component, same `backup_id`): the
//!   summary owns the parts from then on, and deleting the backup deletes them;
//! - every part of it was deleted in its system (a DELETE answered, or 404).
//!
//! `strata_coordinator::external_delete::ExternalDeletes::finish_unfinished` applies that rule
//! under the cluster lock: at the start of every backup, in every cleanup and every
//! delete. Deleting a backup uses the same ledger: the backup's parts are written as an
//! attempt *before* its summary is deleted, and only then are the engines asked; a part
//! that cannot be deleted yet stays in the ledger (the backup is gone from strata, never
//! restorable or `latest`), and the next sweep finishes it. A backup is therefore never
//! both visible and stripped of its engine parts.
//!
//! The ledger is on the host that made the requests (like pause records): the next
//! backup, cleanup or delete run **on that host** finishes what it left.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The directory of the ledger under a state directory.
pub fn ledger_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("engine-parts")
}

/// The parts one attempt asked for (or one deleted backup holds), by part name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// The backup (operation) the parts belong to.
    pub backup: String,
    /// The component that made them.
    pub component: String,
    /// Its plugin (`camunda`).
    pub plugin: String,
    /// The id the systems know the parts by.
    pub backup_id: u64,
    /// Part names (`operate`, `elasticsearch`, `zeebe`, ...), in request order.
    pub parts: Vec<String>,
    /// For a deleted backup: what its summary recorded of the component, as it was
    /// (empty for an attempt: [`Attempt::recorded`] is built from the parts).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub external: BTreeMap<String, String>,
}

impl Attempt {
    /// An attempt of `component` for `backup`, with no part yet.
    pub fn new(backup: &str, component: &str, plugin: &str, backup_id: u64) -> Attempt {
        Attempt {
            backup: backup.to_string(),
            component: component.to_string(),
            plugin: plugin.to_string(),
            backup_id,
            parts: Vec::new(),
            external: BTreeMap::new(),
        }
    }

    fn file_name(&self) -> Option<String> {
        let ok = strata_util::valid_id(&self.backup) && strata_util::valid_id(&self.component);
        ok.then(|| format!("{}.{}.json", self.backup, self.component))
    }

    /// Adds `parts` (not yet there) and writes the ledger durably: call it before the
    /// requests that create them.
    pub fn record(&mut self, dir: &Path, parts: &[&str]) -> std::io::Result<()> {
        for part in parts {
            if !self.parts.iter().any(|p| p == part) {
                self.parts.push(part.to_string());
            }
        }
        self.save(dir)
    }

    /// Writes the attempt to `dir` (see [`strata_util::write_private_file`]).
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let name = self.file_name().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "{:?}/{:?} cannot name a ledger file",
                    self.backup, self.component
                ),
            )
        })?;
        let json = serde_json::to_vec_pretty(self).expect("attempts serialize");
        strata_util::write_private_file(dir, &name, &json)
    }

    /// Removes the attempt's file (gone already is fine).
    pub fn remove(&self, dir: &Path) -> std::io::Result<()> {
        let Some(name) = self.file_name() else {
            return Ok(());
        };
        match std::fs::remove_file(dir.join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => std::fs::File::open(dir)?.sync_all(),
        }
    }

    /// The parts of a deleted backup: what its summary recorded of `component`.
    pub fn of_deleted(
        backup: &str,
        component: &str,
        plugin: &str,
        external: &BTreeMap<String, String>,
    ) -> Option<Attempt> {
        let backup_id = external.get("backup_id")?.parse().ok()?;
        Some(Attempt {
            external: external.clone(),
            ..Attempt::new(backup, component, plugin, backup_id)
        })
    }

    /// What a summary would record of these parts: what a plugin's delete reads.
    pub fn recorded(&self) -> BTreeMap<String, String> {
        if !self.external.is_empty() {
            return self.external.clone();
        }
        BTreeMap::from([
            ("backup_id".to_string(), self.backup_id.to_string()),
            ("snapshot_id".to_string(), self.backup_id.to_string()),
            ("parts".to_string(), self.parts.join(",")),
        ])
    }

    /// Whether `external` (a summary's record of a component) names this attempt.
    pub fn recorded_in(&self, external: &BTreeMap<String, String>) -> bool {
        external.get("backup_id") == Some(&self.backup_id.to_string())
    }
}

/// Every attempt in `dir`, oldest file name first; a file that does not parse is
/// returned as its path and why (kept, for a person to look at).
pub fn attempts(dir: &Path) -> Vec<Result<Attempt, BadLedgerFile>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "json")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|path| {
            // A ledger file is small; a large one is not ours.
            let bytes = match std::fs::read(&path) {
                Ok(bytes) if bytes.len() > 1 << 20 => return Err(BadLedgerFile::TooLarge { path }),
                Ok(bytes) => bytes,
                Err(source) => return Err(BadLedgerFile::Unreadable { path, source }),
            };
            serde_json::from_slice::<Attempt>(&bytes)
                .map_err(|source| BadLedgerFile::NotAnAttempt { path, source })
        })
        .collect()
}

/// A ledger file that is not read as an attempt (kept, for a person to look at).
#[derive(Debug, thiserror::Error)]
pub enum BadLedgerFile {
    /// It cannot be read.
    #[error("{}: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why not.
        source: std::io::Error,
    },
    /// It is larger than a ledger file ever is.
    #[error("{}: larger than 1 MiB", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// It is not an attempt's JSON.
    #[error("{}: {source}", path.display())]
    NotAnAttempt {
        /// The file.
        path: PathBuf,
        /// What parsing said.
        source: serde_json::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_is_written_before_each_part_and_read_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ledger_dir(tmp.path());
        let mut attempt = Attempt::new("20261127T120000Z-1a2b3c4d", "engine", "camunda", 42);
        attempt.record(&dir, &["operate", "tasklist"]).unwrap();
        attempt.record(&dir, &["zeebe", "operate"]).unwrap();
        let read: Vec<Attempt> = attempts(&dir).into_iter().map(Result::unwrap).collect();
        assert_eq!(read, vec![attempt.clone()]);
        assert_eq!(read[0].parts, ["operate", "tasklist", "zeebe"]);
        assert_eq!(attempt.recorded()["parts"], "operate,tasklist,zeebe");
        assert!(attempt.recorded_in(&attempt.recorded()));
        attempt.remove(&dir).unwrap();
        attempt.remove(&dir).unwrap();
        assert!(attempts(&dir).is_empty());
    }

    #[test]
    fn a_name_that_could_leave_the_ledger_is_refused_and_junk_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ledger_dir(tmp.path());
        let mut attempt = Attempt::new("../x", "engine", "camunda", 1);
        assert!(attempt.record(&dir, &["zeebe"]).is_err());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("b.c.json"), b"{not json").unwrap();
        let read = attempts(&dir);
        assert_eq!(read.len(), 1);
        assert!(
            matches!(&read[0], Err(e @ BadLedgerFile::NotAnAttempt { .. }) if e.to_string().contains("b.c.json")),
            "{read:?}"
        );
    }
}
