//! Backup summaries: one small object per backup, written after everything else.
//!
//! Listing backups reads summaries only. A summary exists only for a backup that ran to
//! its end; its status says whether every node and every file made it.

use serde::{Deserialize, Serialize};

/// The outcome of a backup or of one node in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackupStatus {
    /// Every node and every file was backed up.
    Complete,
    /// Some files or nodes could not be read: restorable, but not a good backup.
    Partial,
    /// Nothing usable was stored.
    Failed,
}

impl Default for BackupStatus {
    /// A node is failed until it proves otherwise.
    fn default() -> Self {
        BackupStatus::Failed
    }
}

impl BackupStatus {
    /// The lower-case name used in tables and JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            BackupStatus::Complete => "complete",
            BackupStatus::Partial => "partial",
            BackupStatus::Failed => "failed",
        }
    }
}

/// Figures and outcome of one node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeSummary {
    pub name: String,
    /// The node's zone (rack, availability zone) when configured: a restore onto nodes
    /// with other names places each node in its zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    pub status: BackupStatus,
    /// Why the node failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub roots: Vec<String>,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Logical size of the files.
    pub bytes: u64,
    /// Bytes the node's unique blobs take in the repository (after dedup, compression).
    pub stored_bytes: u64,
    /// Bytes this backup added to the repository for this node.
    pub new_bytes: u64,
    pub new_blobs: u64,
    /// Files whose content was read (the others came from the files cache).
    pub files_read: u64,
    /// Files that could not be read or changed while being read.
    pub warnings: Vec<String>,
    /// How many warnings there were (the list keeps only the first ones).
    pub warning_count: u64,
    /// Whether a manifest was written.
    pub has_manifest: bool,
    /// What a plugin recorded about the node (for PostgreSQL: `postgres.start_lsn`, ...).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub plugin: std::collections::BTreeMap<String, String>,
}

/// The summary of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackupSummary {
    /// Unique, time-sortable name, e.g. `20261122T055350Z-3fa1b2c4`.
    pub name: String,
    /// Start time, RFC 3339 (UTC) with milliseconds; orders backups.
    pub started: String,
    pub duration_ms: u64,
    pub status: BackupStatus,
    /// Version of the strata that wrote it.
    pub strata_version: String,
    pub nodes: Vec<NodeSummary>,
    /// Storage requests the backup made and bytes it moved (its cost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub requests: Option<strata_store::RequestCounts>,
}

impl BackupSummary {
    /// Sum of a per-node figure.
    pub fn total(&self, figure: impl Fn(&NodeSummary) -> u64) -> u64 {
        self.nodes.iter().map(figure).sum()
    }

    /// Whether this backup may be used as `latest` for restores.
    pub fn is_complete(&self) -> bool {
        self.status == BackupStatus::Complete
    }
}
