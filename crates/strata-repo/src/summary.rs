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
    /// The node's name; its manifest is `manifests/<backup>/<name>`.
    pub name: String,
    /// The node's zone (rack, availability zone) when configured: a restore onto nodes
    /// with other names places each node in its zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// The node's outcome.
    pub status: BackupStatus,
    /// Why the node failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The node's source paths, as in its manifest.
    pub roots: Vec<String>,
    /// Regular files, hard links included.
    pub files: u64,
    /// Directories, the root entry not included.
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Logical size of the files.
    pub bytes: u64,
    /// Bytes the node's unique blobs take in the repository (after dedup, compression).
    pub stored_bytes: u64,
    /// Bytes this backup added to the repository for this node.
    pub new_bytes: u64,
    /// Blobs this backup added to the repository for this node.
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
    /// The component the node belongs to (absent in backups made before components).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
}

/// The outcome of one component of a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ComponentStatus {
    /// Every node of the component, every file, the external snapshot: all there.
    Complete,
    /// Restorable, but something is missing (an unreadable file).
    Partial,
    /// Nothing usable was stored for the component.
    Failed,
    /// An optional component that is not deployed (none of its nodes answered, or its
    /// external system said so): it does not make the backup incomplete.
    Absent,
}

impl ComponentStatus {
    /// The lower-case name used in tables and JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            ComponentStatus::Complete => "complete",
            ComponentStatus::Partial => "partial",
            ComponentStatus::Failed => "failed",
            ComponentStatus::Absent => "absent",
        }
    }
}

/// One component of a backup: a plugin with its nodes, or an external system driven
/// through its own backup API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ComponentSummary {
    /// The component's name, unique in the backup.
    pub name: String,
    /// The plugin (`files`, `postgres`, `etcd`, `command`, `http`).
    pub plugin: String,
    /// The version of the plugin's data layout that wrote the component; a restore refuses
    /// a version its strata does not know.
    #[serde(default)]
    pub plugin_version: u32,
    /// The component's outcome; read it with [`ComponentSummary::status`], which takes a
    /// missing one as `failed`.
    pub status: Option<ComponentStatus>,
    /// An optional component: absent or failed, it does not fail the backup.
    #[serde(default)]
    pub optional: bool,
    /// The backup nodes of the component.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Restore order: lower first.
    #[serde(default)]
    pub order: u32,
    /// Why the component is not complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What an external system reported (`command`/`http`: `snapshot_id`, `state`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub external: std::collections::BTreeMap<String, String>,
}

impl ComponentSummary {
    /// The component's status (a summary always carries one; `failed` if it does not).
    pub fn status(&self) -> ComponentStatus {
        self.status.unwrap_or(ComponentStatus::Failed)
    }
}

/// The status of a backup made of `components`: complete only when every required
/// component is complete and every deployed optional one too; failed when a required
/// component failed; partial otherwise (an optional component that failed included: the
/// backup is restorable, not good).
pub fn backup_status(components: &[ComponentSummary]) -> BackupStatus {
    let status = |c: &ComponentSummary| c.status();
    if components.iter().any(|c| {
        !c.optional && matches!(status(c), ComponentStatus::Failed | ComponentStatus::Absent)
    }) {
        BackupStatus::Failed
    } else if components.iter().all(|c| {
        matches!(status(c), ComponentStatus::Complete)
            || (c.optional && status(c) == ComponentStatus::Absent)
    }) {
        BackupStatus::Complete
    } else {
        BackupStatus::Partial
    }
}

/// The summary of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackupSummary {
    /// Unique, time-sortable name, e.g. `20261122T055350Z-3fa1b2c4`.
    pub name: String,
    /// Start time, RFC 3339 (UTC) with milliseconds, by the storage's clock (the clock
    /// every safety rule uses; backups before version 5's additions: by their host's);
    /// orders backups.
    pub started: String,
    /// Start time by the clock of the host that ran the backup, when it was taken from
    /// the storage's: shown beside `started` (omitted in older summaries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_started: Option<String>,
    /// How long the backup took, in milliseconds.
    pub duration_ms: u64,
    /// The backup's outcome; only `complete` backups are `latest`.
    pub status: BackupStatus,
    /// Version of the strata that wrote it.
    pub strata_version: String,
    /// One entry per node.
    pub nodes: Vec<NodeSummary>,
    /// Storage requests the backup made and bytes it moved (its cost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub requests: Option<strata_store::RequestCounts>,
    /// The backup's components (empty in backups made before components: one implicit
    /// component, every node).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ComponentSummary>,
    /// Pauses the backup issued whose resume still failed when it ended (a hook's
    /// name, component and why): the data is as its status says, but a system was
    /// left paused. `strata backup` exits 3 and names each (an optional field of version
    /// 4: absent in older summaries, read as none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub still_paused: Vec<String>,
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

    /// The components of the backup that are not complete and are needed for a whole
    /// restore: required ones, and deployed optional ones that failed.
    pub fn incomplete_components(&self) -> Vec<&ComponentSummary> {
        self.components
            .iter()
            .filter(|c| match c.status() {
                ComponentStatus::Complete => false,
                ComponentStatus::Absent => !c.optional,
                _ => true,
            })
            .collect()
    }

    /// The component a backup node belongs to (`None` in a backup made before
    /// components).
    pub fn component_of(&self, node: &NodeSummary) -> Option<&ComponentSummary> {
        let name = node.component.as_deref()?;
        self.components.iter().find(|c| c.name == name)
    }
}

/// A unique, time-sortable backup name such as `20261122T055350Z-3fa1b2c4`: 32 random
/// bits make two backups started in the same second collide with negligible odds.
pub fn new_backup_name() -> String {
    new_backup_name_at(std::time::SystemTime::now())
}

/// A new backup name for a backup starting at `at`: its second, then random hex.
pub fn new_backup_name_at(at: std::time::SystemTime) -> String {
    let now = humantime::format_rfc3339_seconds(at).to_string();
    let compact: String = now.chars().filter(|c| *c != '-' && *c != ':').collect();
    let mut suffix = [0u8; 4];
    getrandom::getrandom(&mut suffix).expect("the OS random source is available");
    format!("{compact}-{}", hex::encode(suffix))
}

#[cfg(test)]
mod component_tests {
    use super::*;

    fn component(name: &str, optional: bool, status: ComponentStatus) -> ComponentSummary {
        ComponentSummary {
            name: name.into(),
            plugin: "files".into(),
            optional,
            status: Some(status),
            ..ComponentSummary::default()
        }
    }

    #[test]
    fn the_backup_is_complete_only_when_every_required_component_is() {
        use ComponentStatus::*;
        let db = |s| component("db", false, s);
        let extra = |s| component("extra", true, s);
        assert_eq!(
            backup_status(&[db(Complete), extra(Absent)]),
            BackupStatus::Complete
        );
        assert_eq!(
            backup_status(&[db(Complete), extra(Complete)]),
            BackupStatus::Complete
        );
        assert_eq!(
            backup_status(&[db(Complete), extra(Failed)]),
            BackupStatus::Partial
        );
        assert_eq!(
            backup_status(&[db(Partial), extra(Absent)]),
            BackupStatus::Partial
        );
        assert_eq!(
            backup_status(&[db(Failed), extra(Complete)]),
            BackupStatus::Failed
        );
        assert_eq!(backup_status(&[db(Absent)]), BackupStatus::Failed);
    }

    #[test]
    fn a_summary_without_components_reads_as_before() {
        let json = r#"{"name":"b","started":"2026-11-25T00:00:00.000Z","duration_ms":1,
            "status":"complete","strata_version":"0.1.0","nodes":[]}"#;
        let summary: BackupSummary = serde_json::from_str(json).unwrap();
        assert!(summary.components.is_empty());
        assert!(summary.incomplete_components().is_empty());
    }
}
