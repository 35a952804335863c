//! What a restore is asked to do ([`RestorePlan`]) and what it did ([`RestoreOutcome`]):
//! plain values the API, the plugins and the input checks share without the coordinator.

use crate::node_api::RestoreReply;
use crate::operation::OpState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use strata_postgres::recovery::RecoveryPlan;

/// Which backup nodes go where in a restore.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RestorePlan {
    /// Restore only this node of the backup.
    #[serde(default)]
    pub node: Option<String>,
    /// Backup node -> target node; unmapped nodes go to the node of the same name.
    #[serde(default)]
    pub map: BTreeMap<String, String>,
    /// Only entries at or below this path.
    #[serde(default)]
    pub include: Option<String>,
    /// Restore only these components (all when empty). Needed to restore from a backup
    /// whose components are not all complete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<String>,
    /// `OLD=NEW` rewrites of names and endpoints for stores that hold them (etcd), after
    /// those of the configuration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rename: Vec<String>,
    /// Say what would change, write nothing (components whose plugin can: etcd).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// For a PostgreSQL backup: the recovery target and what to do there (default: replay
    /// all archived WAL, promote, start the server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoveryPlan>,
    /// A ClickHouse backup: only this table (`DB.TABLE`) back into the live cluster,
    /// under [`RestorePlan::table_as`]; only the ClickHouse components are restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// With `table`: the name it comes back under in its database (default
    /// `<table>_restored`, so the live table is never touched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_as: Option<String>,
    /// A ClickHouse backup: remove the replicas ZooKeeper still holds that the restored
    /// tables would meet and no running server holds (after lost disks), instead of
    /// refusing; docs/clickhouse.md.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drop_stale_replicas: bool,
    /// With `table` (ClickHouse): only these partitions, by partition id (the first field
    /// of a part's name, `system.parts.partition_id`), into the table named by
    /// `table_as` (which may be the live table: partitions it holds rows in are refused).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<String>,
}

/// What a restore did on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeRestore {
    /// The node of the backup.
    pub source: String,
    /// The node it was restored to.
    pub node: String,
    /// What the node's agent reported, when the restore of the node ran to its end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<RestoreReply>,
    /// Why the node's restore failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a restore did for an external component (`command`, `http`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ComponentRestore {
    /// The component's name.
    pub component: String,
    /// What the system reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// A restore strata does not perform itself (Camunda's): `detail` is a checklist of
    /// this many steps the operator runs against the system; strata wrote nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checklist_steps: Option<usize>,
    /// Why the component's restore failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RestoreOutcome {
    /// The backup restored.
    pub backup: String,
    /// Every backup node restored, with where it went and how it went.
    pub nodes: Vec<NodeRestore>,
    /// External components restored through their system's API.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ComponentRestore>,
    /// Hooks that failed after the restore (a resume that failed: something is still
    /// paused).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hook_errors: Vec<String>,
    /// How long the restore took, in milliseconds.
    pub duration_ms: u64,
}

impl RestoreOutcome {
    /// Failed if a node failed, partial if some files could not be restored.
    pub fn state(&self) -> OpState {
        if self.nodes.iter().any(|n| n.error.is_some())
            || self.components.iter().any(|c| c.error.is_some())
        {
            OpState::Failed
        } else if self
            .nodes
            .iter()
            .any(|n| n.report.as_ref().is_some_and(|r| !r.errors.is_empty()))
        {
            OpState::Partial
        } else {
            OpState::Succeeded
        }
    }
}
