//! The systems keep what strata keeps: before strata deletes a backup (`strata delete`,
//! retention), the snapshots its external components recorded are deleted in their
//! systems, through the component's `delete` step. A snapshot that cannot be deleted
//! keeps the backup (retention tries again at its next run; `strata delete` fails,
//! naming it), so strata never forgets an id the system still holds.

use crate::component::Component;
use crate::hooks::HookEnv;
use std::sync::Arc;
use strata_repo::summary::BackupSummary;

/// The external components a process knows, by name, to delete their snapshots.
#[derive(Clone, Default)]
pub struct ExternalDeletes {
    components: Arc<Vec<Component>>,
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

    /// Deletes in their systems the snapshots `summary` recorded; returns a line for each
    /// one deleted, or what could not be deleted. A component the configuration no
    /// longer has (or whose plugin changed) cannot be asked: its snapshot is named in a
    /// warning line, for a person to delete.
    pub async fn delete(&self, summary: &BackupSummary) -> Result<Vec<String>, String> {
        let mut said = Vec::new();
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
                said.push(format!(
                    "component {}: not configured here: its snapshot {snapshot} stays in its system",
                    recorded.name
                ));
                continue;
            };
            let env = HookEnv {
                operation: "delete".into(),
                id: summary.name.clone(),
                backup: summary.name.clone(),
                component: Some(recorded.name.clone()),
                phase: "delete".into(),
                ..HookEnv::default()
            };
            match component
                .plugin
                .external_delete(&recorded.external, &env)
                .await
            {
                Ok(line) => said.push(format!("component {}: {line}", recorded.name)),
                Err(why) => failed.push(format!(
                    "component {}: cannot delete snapshot {snapshot}: {why}",
                    recorded.name
                )),
            }
        }
        match failed.is_empty() {
            true => Ok(said),
            false => Err(failed.join("; ")),
        }
    }
}
