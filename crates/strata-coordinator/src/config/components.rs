//! `[[components]]` and `[[nodes]]`: what is backed up, by which plugin, on which nodes.

use serde::{Deserialize, Serialize};

/// One component of the cluster's backups (`[[components]]`): a plugin with its nodes,
/// or an external system (`command`, `http`) driven through its own backup API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentConfig {
    pub name: String,
    /// `files`, `postgres`, `command` or `http`.
    pub plugin: String,
    /// The [[nodes]] it backs up (none for `command` and `http`).
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Not deployed everywhere: when none of its nodes answers (or it fails), the backup
    /// records it `absent` (or `failed`) and is not failed for it.
    #[serde(default)]
    pub optional: bool,
    /// Restore order, lower first (default: the plugin's, 100 for data, lower for
    /// topology stores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpComponent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandComponent>,
    /// `[components.etcd]`: how to reach the etcd cluster and which keys to back up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<strata_etcd::Settings>,
    /// Restore rules of a store that names hosts (etcd): `OLD=NEW` rewrites of node
    /// names and endpoints in keys and values, applied on every restore.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rename: Vec<String>,
    /// `FROM=TO`: keys under prefix FROM are restored under TO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub move_prefix: Option<String>,
}

/// One node of the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub name: String,
    /// Address of a remote agent (`http://host:7370`); nodes without one run in-process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// What the node backs up. A remote node's own configuration says that; here it may
    /// stay empty.
    #[serde(default)]
    pub roots: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Zone (rack, availability zone): recorded in backups; a restore onto nodes with other
    /// names puts each backup node on a node of its zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// The node's PostgreSQL (with `plugin = "postgres"`): its data directory is what the
    /// node backs up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<strata_postgres::NodeSettings>,
}

/// `[components.http]`: an HTTP backup API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpComponent {
    /// Starts a snapshot: `"POST http://engine:8080/backups"`; the JSON answer carries its
    /// id at `id_field`.
    pub backup: String,
    /// Where the id is in the answer: a field name or a `/`-separated path (`snapshot/id`).
    #[serde(default = "default_id_field")]
    pub id_field: String,
    /// Polled until the snapshot is done or failed: `"GET http://engine:8080/backups/{id}"`.
    /// Without it, the snapshot is done when `backup` answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Where the state is in the answers.
    #[serde(default = "default_state_field")]
    pub state_field: String,
    /// States that mean done, and failed (any other state: still running).
    #[serde(default = "default_done")]
    pub done: Vec<String>,
    #[serde(default = "default_failed")]
    pub failed: Vec<String>,
    /// Restores snapshot `{id}`: `"POST http://engine:8080/backups/{id}/restore"`.
    pub restore: String,
    /// Polled until the restore is done or failed (`{id}`: the snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_state: Option<String>,
    /// Between two polls (default 1s).
    #[serde(default = "default_poll")]
    pub poll: String,
    /// The most one snapshot or restore may take (default 1h).
    #[serde(default = "default_limit")]
    pub timeout: String,
}

/// `[components.command]`: commands that drive the system's backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandComponent {
    /// Takes a snapshot and prints its id: the last line of its output, or a JSON object
    /// with `id` (and `state`). Exit 0: the snapshot is done.
    pub backup: Vec<String>,
    /// Restores a snapshot: `{id}` in an argument is replaced by the snapshot's id, which
    /// is also in `STRATA_SNAPSHOT_ID`.
    pub restore: Vec<String>,
    /// The most one call may take (default 1h).
    #[serde(default = "default_limit")]
    pub timeout: String,
}

fn default_id_field() -> String {
    "id".into()
}
fn default_state_field() -> String {
    "state".into()
}
fn default_done() -> Vec<String> {
    ["completed", "complete", "done", "succeeded", "success"]
        .map(String::from)
        .to_vec()
}
pub(crate) fn default_failed() -> Vec<String> {
    ["failed", "error", "aborted", "cancelled"]
        .map(String::from)
        .to_vec()
}
fn default_poll() -> String {
    "1s".into()
}
fn default_limit() -> String {
    "1h".into()
}
