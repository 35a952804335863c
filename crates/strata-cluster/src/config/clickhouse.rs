//! `[nodes.clickhouse]`: how strata reaches one ClickHouse server and where its data is.
//!
//! The settings of the `clickhouse` plugin (docs/clickhouse.md) are per node: every
//! server has its own HTTP endpoint and data path. ZooKeeper (or Keeper) is read through
//! the server's own `system.zookeeper` table, the session ClickHouse itself uses, so it
//! needs no settings here.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[nodes.clickhouse]`: one ClickHouse server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseNode {
    /// The server's HTTP interface (`http://127.0.0.1:8123`).
    pub url: String,
    /// The server's data path (`<path>` of its config.xml, `/var/lib/clickhouse`): the
    /// frozen parts are read from its `shadow/` and restored parts go to its tables'
    /// `detached/` directories.
    pub path: PathBuf,
    /// The user strata queries as (default `default`).
    #[serde(default = "default_user")]
    pub user: String,
    /// The environment variable that holds the user's password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// A file that holds the user's password (a trailing newline is dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// Databases to back up; none: every database but `system`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub databases: Vec<String>,
    /// The most one query may take before the step fails (default `5m`: a freeze of a
    /// table with many parts, an attach of a large part).
    #[serde(default = "default_query_timeout")]
    pub query_timeout: String,
    /// How long a restore waits, after its parts are attached, for every replica of each
    /// restored replicated table to hold the backup's rows (default `10m`); a replica
    /// that has not by then fails the node's restore, named with why.
    #[serde(default = "default_restore_wait")]
    pub restore_wait: String,
    /// ZooKeeper's `host:port`s, as the server's `<zookeeper>` names them: only for
    /// `restore --drop-stale-replicas` on a server without `SYSTEM DROP REPLICA` (18.16),
    /// which removes stale replicas through ZooKeeper itself. Everything else reads
    /// ZooKeeper through the server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zookeeper: Vec<String>,
}

fn default_restore_wait() -> String {
    "10m".into()
}

fn default_user() -> String {
    "default".into()
}

fn default_query_timeout() -> String {
    "5m".into()
}
