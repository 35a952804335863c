//! `[[components]]` and `[[nodes]]`: what is backed up, by which plugin, on which nodes.

use serde::{Deserialize, Serialize};

/// One component of the cluster's backups (`[[components]]`): a plugin with its nodes,
/// or an external system (`command`, `http`) driven through its own backup API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentConfig {
    /// The component's name, recorded in backups.
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
    /// `[components.http]`: the external system's HTTP backup API (with `plugin = "http"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpComponent>,
    /// `[components.command]`: the commands that drive the external system (with
    /// `plugin = "command"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandComponent>,
    /// `[components.camunda]`: a Camunda 8 cluster, backed up in Camunda's documented
    /// order through its own backup APIs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camunda: Option<CamundaComponent>,
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
    /// The node's name: backups record each node snapshot under it.
    pub name: String,
    /// Address of a remote agent (`http://host:7370`); nodes without one run in-process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// What the node backs up. A remote node's own configuration says that; here it may
    /// stay empty.
    #[serde(default)]
    pub roots: Vec<String>,
    /// Globs of paths under the roots not to back up, matched against the path relative to
    /// the root (a pattern without `/` also matches bare file names).
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
    /// The node's ClickHouse server (with `plugin = "clickhouse"`): its frozen tables are
    /// what the node backs up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clickhouse: Option<super::ClickHouseNode>,
}

/// `[components.http]`: an HTTP backup API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpComponent {
    /// Starts a snapshot: `"POST http://engine:8080/backups"`. Placeholders (here and in
    /// every call and body below): `{backup_id}` (the backup's number), `{backup}`,
    /// `{component}`, and `{id}` (the snapshot's id) once known.
    pub backup: String,
    /// The JSON body of `backup`, a template: `'{"backupId": {backup_id}}'`. Without it,
    /// the body is strata's own (`operation`, `id`, `backup`, `component`, `phase`,
    /// `backup_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_body: Option<String>,
    /// The snapshot's id when the request chooses it: a template such as
    /// `"{backup_id}"`. Without it, the id is read from the answer at `id_field`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
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
    /// States that mean failed.
    #[serde(default = "default_failed")]
    pub failed: Vec<String>,
    /// Restores snapshot `{id}`: `"POST http://engine:8080/backups/{id}/restore"`. Without
    /// it, the system's restore is done by hand and `strata restore` prints the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<String>,
    /// The JSON body of `restore`, a template (default: strata's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_body: Option<String>,
    /// Polled until the restore is done or failed (`{id}`: the snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_state: Option<String>,
    /// Deletes snapshot `{id}` when strata deletes the backup (retention, `strata
    /// delete`) and when the snapshot's backup failed: `"DELETE
    /// http://engine:8080/backups/{id}"`. A 404 counts as deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete: Option<String>,
    /// Between two polls, and between two tries of a call that failed for a while (a
    /// refused connection, 429, 5xx) (default 1s).
    #[serde(default = "default_poll")]
    pub poll: String,
    /// How long a system that never answered is tried before it counts as down (an
    /// optional component is then `absent`) (default 10s).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: String,
    /// The most one snapshot, restore or delete may take (default 1h).
    #[serde(default = "default_limit")]
    pub timeout: String,
}

/// `[components.command]`: commands that drive the system's backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandComponent {
    /// Takes a snapshot and prints its id on stdout: its last line, or a JSON object with
    /// `id` (and `state`). What it prints on stderr goes to the log only. Exit 0: the
    /// snapshot is done.
    pub backup: Vec<String>,
    /// Restores a snapshot: `{id}` in an argument is replaced by the snapshot's id, which
    /// is also in `STRATA_SNAPSHOT_ID`. Empty: restored by hand.
    #[serde(default)]
    pub restore: Vec<String>,
    /// Deletes a snapshot (`{id}` as for `restore`) when strata deletes the backup, and
    /// when the snapshot's backup failed. Empty: snapshots are not deleted.
    #[serde(default)]
    pub delete: Vec<String>,
    /// The most one call may take (default 1h).
    #[serde(default = "default_limit")]
    pub timeout: String,
}

/// `[components.camunda]`: where a Camunda 8 cluster's backup APIs are (see
/// docs/components.md, "Camunda 8").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CamundaComponent {
    /// Zeebe's management endpoint (the gateway's, port 9600 by default).
    pub zeebe: String,
    /// `"8.8"` and later: the orchestration cluster serves Zeebe's backups under
    /// `/actuator/backupRuntime`; earlier: `/actuator/backups` (default `"8.7"`).
    #[serde(default = "default_camunda_version")]
    pub version: String,
    /// Operate's management endpoint (8.2-8.7; none from 8.8, where it is part of the
    /// orchestration cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operate: Option<String>,
    /// Tasklist's management endpoint (as Operate's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasklist: Option<String>,
    /// Optimize's management endpoint (port 8092 standalone); optional unless
    /// `optimize_required`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimize: Option<String>,
    /// Whether a backup without Optimize's part is incomplete (default false).
    #[serde(default)]
    pub optimize_required: bool,
    /// Elasticsearch, where Zeebe exports its records.
    pub elasticsearch: String,
    /// The snapshot repository registered in Elasticsearch for the records.
    pub snapshot_repository: String,
    /// The exported records' indices (default `zeebe-record*`).
    #[serde(default = "default_record_indices")]
    pub record_indices: String,
    /// Between two polls (default 5s).
    #[serde(default = "default_camunda_poll")]
    pub poll: String,
    /// How long a system that never answered is tried (default 10s).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: String,
    /// The most the whole backup may take (default 2h).
    #[serde(default = "default_camunda_timeout")]
    pub timeout: String,
    /// How long the exporting pause may take to answer (default 60s).
    #[serde(default = "default_pause_timeout")]
    pub pause_timeout: String,
    /// How long a pause that did not answer in time may still land (default 30s; see
    /// the hooks' `late_pause`).
    #[serde(default = "default_late_pause")]
    pub late_pause: String,
}

fn default_camunda_version() -> String {
    "8.7".into()
}
fn default_record_indices() -> String {
    "zeebe-record*".into()
}
fn default_camunda_poll() -> String {
    "5s".into()
}
fn default_camunda_timeout() -> String {
    "2h".into()
}
fn default_pause_timeout() -> String {
    "60s".into()
}
fn default_late_pause() -> String {
    "30s".into()
}

fn default_connect_timeout() -> String {
    "10s".into()
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
/// The outcomes an external component's answer can name as failed, when it names none.
pub fn default_failed() -> Vec<String> {
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
