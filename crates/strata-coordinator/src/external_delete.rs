//! The systems keep what strata keeps: when strata deletes a backup (`strata delete`,
//! retention), the snapshots its external components recorded are deleted in their
//! systems too, through the component's `delete` step.
//!
//! Two orders, by what the plugin can promise:
//!
//! - A plugin with a ledger of its parts (`camunda`, see [`crate::engine_parts`]): the
//!   parts are written into the ledger, **then** the backup's summary is deleted (from
//!   here on it is never restorable nor `latest`), **then** the systems are asked. A
//!   part that cannot be deleted yet stays in the ledger, and the next backup, cleanup
//!   or delete on this host finishes it ([`ExternalDeletes::finish_unfinished`]). A
//!   backup is never kept visible with some of its parts gone.
//! - Any other external plugin (`http`, `command`): its snapshot is deleted first, and
//!   one that cannot be deleted keeps the backup (retention tries again at its next run;
//!   `strata delete` fails, naming it), so strata never forgets an id the system holds.

use crate::component::Component;
use crate::engine_parts::{self, Attempt};
use crate::hooks::HookEnv;
use std::path::PathBuf;
use std::sync::Arc;
use strata_repo::summary::BackupSummary;

/// What of a backup's external components could not be deleted (or recorded before its
/// delete), a line each naming the component and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct PartsKept(pub Vec<String>);

/// The external components a process knows, by name, to delete their snapshots.
#[derive(Clone, Default)]
pub struct ExternalDeletes {
    components: Arc<Vec<Component>>,
}

/// A delete under way: the parts written into ledgers before the summary is deleted.
#[must_use = "finish it once the summary is deleted"]
pub struct Deleting {
    /// Lines for the log of what was deleted before the summary.
    pub said: Vec<String>,
    ledgered: Vec<(Component, PathBuf, Attempt)>,
}

impl ExternalDeletes {
    /// The external ones of `components`.
    pub fn of(components: &[Component]) -> ExternalDeletes {
        ExternalDeletes {
            components: Arc::new(
                components
                    .iter()
                    .filter(|c| c.plugin.is_external())
                    .cloned()
                    .collect(),
            ),
        }
    }

    fn env(backup: &str, component: &str) -> HookEnv {
        HookEnv {
            operation: "delete".into(),
            id: backup.to_string(),
            backup: backup.to_string(),
            component: Some(component.to_string()),
            phase: "delete".into(),
            ..HookEnv::default()
        }
    }

    /// Before `summary` is deleted: the parts of ledger plugins written into their
    /// ledgers, the other systems' snapshots deleted. `Err` (a snapshot of a plugin
    /// without a ledger that could not be deleted, a ledger that cannot be written)
    /// keeps the backup. A component the configuration no longer has (or whose plugin
    /// changed) cannot be asked: its snapshot is named in a line, for a person to delete.
    pub async fn before_delete(&self, summary: &BackupSummary) -> Result<Deleting, PartsKept> {
        let mut deleting = Deleting {
            said: Vec::new(),
            ledgered: Vec::new(),
        };
        let mut failed = Vec::new();
        for recorded in summary.components.iter().filter(|c| !c.external.is_empty()) {
            let Some(snapshot) = recorded.external.get("snapshot_id") else {
                continue;
            };
            let configured = self
                .components
                .iter()
                .find(|c| c.name == recorded.name && c.plugin.name() == recorded.plugin);
            let Some(component) = configured else {
                deleting.said.push(format!(
                    "component {}: not configured here: its snapshot {snapshot} stays in its system",
                    recorded.name
                ));
                continue;
            };
            let ledger = component.plugin.parts_ledger().and_then(|dir| {
                let attempt = Attempt::of_deleted(
                    &summary.name,
                    &recorded.name,
                    &recorded.plugin,
                    &recorded.external,
                )?;
                Some((dir, attempt))
            });
            if let Some((dir, attempt)) = ledger {
                match attempt.save(&dir) {
                    Ok(()) => deleting.ledgered.push((component.clone(), dir, attempt)),
                    Err(e) => failed.push(format!(
                        "component {}: cannot record its parts in {} before deleting the backup: {e}",
                        recorded.name,
                        dir.display()
                    )),
                }
                continue;
            }
            let env = Self::env(&summary.name, &recorded.name);
            match component
                .plugin
                .external_delete(&recorded.external, &env)
                .await
            {
                Ok(line) => deleting
                    .said
                    .push(format!("component {}: {line}", recorded.name)),
                Err(why) => failed.push(format!(
                    "component {}: cannot delete snapshot {snapshot}: {why}",
                    recorded.name
                )),
            }
        }
        if failed.is_empty() {
            return Ok(deleting);
        }
        // The backup stays: what was written into ledgers is its own again.
        for (_, dir, attempt) in &deleting.ledgered {
            let _ = attempt.remove(dir);
        }
        Err(PartsKept(failed))
    }

    /// Whether a ledger of these components holds an attempt (a cleanup with no backup
    /// to remove still takes the lock to finish them).
    pub fn has_unfinished(&self) -> bool {
        self.ledgers()
            .iter()
            .any(|dir| !engine_parts::attempts(dir).is_empty())
    }

    fn ledgers(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self
            .components
            .iter()
            .filter_map(|c| c.plugin.parts_ledger())
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// Finishes the parts of attempts that did not finish and of backups deleted while a
    /// system could not delete its part; call it under the cluster lock (`still_held` says whether it
    /// still is), naming the backup this process runs (`current`), whose attempt is under
    /// way. An attempt whose
    /// backup's summary records it belongs to that backup (the ledger entry is dropped);
    /// any other is deleted in its systems and then dropped. Returns a line for each, and
    /// warnings for what stays.
    pub async fn finish_unfinished(
        &self,
        repo: &strata_repo::Repository,
        current: Option<&str>,
        still_held: impl Fn() -> Result<(), crate::lock::LockError>,
    ) -> Vec<String> {
        let mut said = Vec::new();
        for component in self.components.iter() {
            let Some(dir) = component.plugin.parts_ledger() else {
                continue;
            };
            for attempt in engine_parts::attempts(&dir) {
                let attempt = match attempt {
                    Ok(attempt) => attempt,
                    Err(why) => {
                        said.push(format!("warning: a ledger file of the engines' parts is not readable, kept for a person to look at: {why}"));
                        continue;
                    }
                };
                if attempt.component != component.name
                    || attempt.plugin != component.plugin.name()
                    || current == Some(attempt.backup.as_str())
                {
                    continue;
                }
                match repo.load_summary(&attempt.backup).await {
                    Ok(summary)
                        if summary.components.iter().any(|c| {
                            c.name == attempt.component && attempt.recorded_in(&c.external)
                        }) =>
                    {
                        // The summary owns the parts now.
                        if let Err(e) = attempt.remove(&dir) {
                            said.push(format!(
                                "warning: cannot remove a ledger file in {}: {e}",
                                dir.display()
                            ));
                        }
                        continue;
                    }
                    Ok(_) => {}
                    Err(strata_repo::RepoError::NoSuchBackup(_)) => {
                        // No summary yet is not "never": a backup that gave up on its
                        // summary write (or was killed) may still see it land, and a
                        // listed backup must keep every part. Its writer's mark ends
                        // only once nothing it issued can land (see `crate::lock::has_ended`).
                        if let Some(wait) = Self::summary_may_land(repo, &attempt).await {
                            said.push(wait);
                            continue;
                        }
                    }
                    Err(e) => {
                        said.push(format!(
                            "warning: component {}: the parts of backup {} are kept in the ledger: its summary cannot be read: {e}",
                            attempt.component, attempt.backup
                        ));
                        continue;
                    }
                }
                // Never past the lock: another process may be asking for parts by now.
                if let Err(lost) = still_held() {
                    said.push(format!(
                        "warning: the engines' unfinished parts are left for the next run: {lost}"
                    ));
                    return said;
                }
                let env = Self::env(&attempt.backup, &attempt.component);
                match component
                    .plugin
                    .external_delete(&attempt.recorded(), &env)
                    .await
                {
                    Ok(line) => {
                        if let Err(e) = attempt.remove(&dir) {
                            said.push(format!("warning: cannot remove a ledger file in {}: {e}", dir.display()));
                        }
                        said.push(format!(
                            "component {}: parts of backup {} (id {}) that no backup keeps: {line}",
                            attempt.component, attempt.backup, attempt.backup_id
                        ));
                    }
                    Err(why) => said.push(format!(
                        "warning: component {}: parts of backup {} (id {}) that no backup keeps are not all deleted yet: {why}; the next backup, cleanup or delete on this host tries again",
                        attempt.component, attempt.backup, attempt.backup_id
                    )),
                }
            }
        }
        said
    }
}

impl ExternalDeletes {
    /// A line saying why the parts of `attempt`, whose backup has no summary, are kept for
    /// now, or `None` once its summary can no longer land.
    async fn summary_may_land(
        repo: &strata_repo::Repository,
        attempt: &engine_parts::Attempt,
    ) -> Option<String> {
        if crate::lock::test_unsafe("parts-ignore-landings") {
            // Negative control: "no summary" taken as "never".
            return None;
        }
        match crate::lock::backup_may_still_write(repo.store(), &attempt.backup).await {
            Ok(false) => None,
            Ok(true) => Some(format!(
                "component {}: the parts of backup {} (id {}) wait: the backup may still run or its summary may still land in the storage; the first backup, cleanup or delete after its writer's mark has ended (its lease and 15 minutes) deletes them unless the summary records them",
                attempt.component, attempt.backup, attempt.backup_id
            )),
            Err(e) => Some(format!(
                "warning: component {}: the parts of backup {} (id {}) are kept in the ledger: cannot tell whether its summary may still land: {e}",
                attempt.component, attempt.backup, attempt.backup_id
            )),
        }
    }
}

impl Deleting {
    /// After the summary is deleted: asks the systems to delete the parts written into
    /// ledgers. Returns every line, and `Err` naming what stays in a ledger for the next
    /// sweep (the backup is deleted from strata either way).
    pub async fn finish(self) -> (Vec<String>, Result<(), PartsKept>) {
        let mut said = self.said;
        let mut failed = Vec::new();
        for (component, dir, attempt) in self.ledgered {
            let env = ExternalDeletes::env(&attempt.backup, &attempt.component);
            match component
                .plugin
                .external_delete(&attempt.recorded(), &env)
                .await
            {
                Ok(line) => {
                    if let Err(e) = attempt.remove(&dir) {
                        said.push(format!(
                            "warning: cannot remove a ledger file in {}: {e}",
                            dir.display()
                        ));
                    }
                    said.push(format!("component {}: {line}", attempt.component));
                }
                Err(why) => failed.push(format!(
                    "component {}: its parts (id {}) are not all deleted yet: {why}; they stay in the ledger and the next backup, cleanup or delete on this host deletes them",
                    attempt.component, attempt.backup_id
                )),
            }
        }
        let result = match failed.is_empty() {
            true => Ok(()),
            false => Err(PartsKept(failed)),
        };
        (said, result)
    }
}
