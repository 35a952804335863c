//! The postgres plugin: what makes a node's snapshot a consistent PostgreSQL base backup,
//! and what brings a restored data directory to a chosen moment.
//!
//! A backup wraps the agent's generic snapshot of the data directory in PostgreSQL's
//! non-exclusive backup API ([`session`]): `pg_backup_start` before, `pg_backup_stop`
//! after, on one database session held for the whole backup, and adds the backup label it
//! returns. The WAL that makes the copy consistent, and every later change, reaches the
//! repository through `archive_command = 'strata wal-push %p'` ([`wal`]). A restore lays
//! the files down, then [`recovery`] writes the recovery settings (`restore_command`
//! fetching from the repository, the target) and [`server`] starts PostgreSQL and waits
//! until recovery reached the target, or says why it could not.
//!
//! ```
//! use strata_postgres::walname::{segment_before, segment_name, Lsn, WalFileKind};
//!
//! // The WAL arithmetic of xlog_internal.h, for 16 MiB segments.
//! let size = 16 << 20;
//! let lsn = Lsn::parse("16/B374D848").unwrap();
//! let name = segment_name(1, lsn.segment(size), size);
//! assert_eq!(name, "0000000100000016000000B3");
//! assert_eq!(segment_before(&name, size).as_deref(), Some("0000000100000016000000B2"));
//! assert!(matches!(WalFileKind::parse(&name), Some(WalFileKind::Segment { .. })));
//! ```
//!
//! Layout, by job: [`session`] (the backup API on one session), [`exclude`] (what a data
//! directory's backup leaves out), [`tablespace`] (tablespaces and where they come back),
//! [`wal`] (pushing and fetching segments; [`spool`] and [`prefetcher`] read ahead),
//! [`walname`] (positions and file names), [`recovery`] and [`recovery_input`] (the
//! settings of a restore and their checks), [`server`] (starting PostgreSQL and watching
//! recovery), [`scratch`] (scratch servers from settings strata chooses), [`tables`]
//! (tables and databases brought back from a scratch server), [`proof`] (what a restore
//! proves on the server), [`patroni`] (Patroni's replica and bootstrap methods),
//! [`config`] (the `[postgres]` section).

#![deny(missing_docs)]

pub mod config;
pub mod exclude;
pub mod patroni;
pub mod prefetcher;
pub mod proof;
pub mod recovery;
pub mod recovery_input;
pub mod scratch;
pub mod server;
pub mod session;
pub mod spool;
pub mod tables;
pub mod tablespace;
pub mod wal;
pub mod walname;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
pub use strata_pgclient::ConnectSettings;

/// The repository space (see `strata_repo::archive`) holding the WAL archive.
pub const WAL_SPACE: &str = "wal";

/// Errors of the plugin. Messages say what to do where there is something to do.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The agent could not open a session to PostgreSQL.
    #[error(transparent)]
    Connect(#[from] strata_pgclient::ConnectError),
    /// A query or backup function call failed on an open session.
    #[error("PostgreSQL refused {what}")]
    Query {
        /// What was asked, for the message (`pg_backup_start`, ...).
        what: String,
        /// PostgreSQL's own error.
        #[source]
        source: strata_pgclient::PgError,
    },
    /// Reading or writing the repository failed.
    #[error(transparent)]
    Repo(#[from] strata_repo::RepoError),
    /// A local file operation failed.
    #[error("{what} {path}")]
    Io {
        /// The operation, for the message (`reading`, `creating`, ...).
        what: String,
        /// The file or directory it was done on.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The request or the cluster's state rules the operation out; the message says why
    /// and, where it can, what to change.
    #[error("{0}")]
    Refused(String),
    /// `wal-fetch` asked for a segment (its file name) the archive does not hold;
    /// PostgreSQL takes this as the end of the archived WAL.
    #[error("WAL file {0} is not in the archive")]
    WalMissing(String),
}

impl PgError {
    pub(crate) fn query(
        what: impl Into<String>,
    ) -> impl FnOnce(strata_pgclient::PgError) -> PgError {
        let what = what.into();
        move |source| PgError::Query { what, source }
    }

    pub(crate) fn io(
        what: impl Into<String>,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> PgError {
        let (what, path) = (what.into(), path.into());
        move |source| PgError::Io { what, path, source }
    }
}

/// Result of the plugin's operations.
pub type PgResult<T> = Result<T, PgError>;

/// The postgres side of one node: where its data directory is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSettings {
    /// The data directory (`PGDATA`).
    pub data_dir: PathBuf,
    /// How the agent connects (as a superuser or a role with the backup functions).
    #[serde(default)]
    pub connect: ConnectSettings,
    /// Where `pg_ctl` lives.
    #[serde(default = "default_bin_dir")]
    pub bin_dir: PathBuf,
    /// When set, a restore makes this node a streaming standby of this server (a libpq
    /// connection string) instead of a primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_conninfo: Option<String>,
    /// Where a restore puts tablespaces, by name or OID; the others go back to the
    /// location they had when backed up.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tablespaces: BTreeMap<String, PathBuf>,
    /// Where `pg_wal` links to in a cluster made with `initdb --waldir` (when that is
    /// outside the data directory): recovery preparation empties `pg_wal` through such a
    /// link only when it points into the data directory, a tablespace location or here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_dir: Option<PathBuf>,
}

/// Debian's PostgreSQL 15.
pub fn default_bin_dir() -> PathBuf {
    PathBuf::from("/usr/lib/postgresql/15/bin")
}

/// What a base backup recorded about PostgreSQL, kept in the node's summary as plain
/// key/value pairs (the repository format knows nothing about PostgreSQL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseBackupInfo {
    /// The cluster's identity (`pg_control_system()`); WAL of another cluster cannot
    /// recover this backup.
    pub system_identifier: String,
    /// `server_version_num` of the server backed up (150018 for 15.18).
    pub server_version_num: u32,
    /// The timeline the backup started on.
    pub timeline: u32,
    /// Where `pg_backup_start` put the backup's start (`0/2000028` form).
    pub start_lsn: String,
    /// Where `pg_backup_stop` ended it; recovery must replay at least this far.
    pub stop_lsn: String,
    /// First and last WAL segment the backup needs to be consistent.
    pub start_wal: String,
    /// See `start_wal`.
    pub stop_wal: String,
    /// `wal_segment_size` in bytes (16 MiB unless `initdb` chose otherwise).
    pub segment_size: u64,
    /// Whether the backup was taken from a standby.
    pub from_standby: bool,
    /// Tablespaces outside the data directory (stored in `pg_tblspc/<oid>`).
    #[serde(default)]
    pub tablespaces: Vec<tablespace::Tablespace>,
    /// Every transaction with a smaller id (`xid8`, in decimal) had ended before the
    /// backup's end (the xmin of a snapshot taken just before `pg_backup_stop`): none of
    /// them can be a recovery target. `None` in backups made before this was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_xmin: Option<String>,
    /// The databases and their oids (their directories `base/<oid>`) at the backup's
    /// start; empty in backups made before this was recorded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub databases: BTreeMap<String, u32>,
}

const INFO_PREFIX: &str = "postgres.";

impl BaseBackupInfo {
    /// The summary form: `postgres.<field>` keys.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let value = serde_json::to_value(self).expect("serializes");
        value
            .as_object()
            .expect("a struct")
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (format!("{INFO_PREFIX}{k}"), text)
            })
            .collect()
    }

    /// Reads what [`BaseBackupInfo::to_map`] wrote; `None` for a backup of plain files.
    pub fn from_map(map: &BTreeMap<String, String>) -> Option<BaseBackupInfo> {
        let mut object = serde_json::Map::new();
        for (key, text) in map {
            let Some(field) = key.strip_prefix(INFO_PREFIX) else {
                continue;
            };
            let value = match field {
                "server_version_num" | "timeline" | "segment_size" => {
                    serde_json::Value::Number(text.parse::<u64>().ok()?.into())
                }
                "from_standby" => serde_json::Value::Bool(text == "true"),
                "tablespaces" | "databases" => serde_json::from_str(text).ok()?,
                _ => serde_json::Value::String(text.clone()),
            };
            object.insert(field.to_string(), value);
        }
        if object.is_empty() {
            return None;
        }
        serde_json::from_value(serde_json::Value::Object(object)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_info_survives_the_summary_map() {
        let info = BaseBackupInfo {
            system_identifier: "7311".into(),
            server_version_num: 150018,
            timeline: 2,
            start_lsn: "0/2000028".into(),
            stop_lsn: "0/2000100".into(),
            start_wal: "000000020000000000000002".into(),
            stop_wal: "000000020000000000000002".into(),
            segment_size: 16 << 20,
            from_standby: true,
            tablespaces: vec![tablespace::Tablespace {
                oid: "16384".into(),
                name: "cold data".into(),
                location: "/srv/cold".into(),
            }],
            databases: BTreeMap::from([("shop".to_string(), 16390), ("postgres".into(), 5)]),
            stop_xmin: Some("4294967999".into()),
        };
        let map = info.to_map();
        assert_eq!(map["postgres.timeline"], "2");
        assert_eq!(BaseBackupInfo::from_map(&map), Some(info));
        assert_eq!(BaseBackupInfo::from_map(&BTreeMap::new()), None);
    }
}
