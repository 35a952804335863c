//! The non-exclusive backup API around a snapshot.
//!
//! `pg_backup_start` and `pg_backup_stop` must run on the same session, and the backup
//! is aborted by PostgreSQL itself when that session ends: a [`BackupSession`] owns the
//! connection, so dropping it (a failed or cancelled backup, a killed agent) cleans up on
//! the server without any further call. The backup label is not left in the data
//! directory (a crash would then start recovery from the wrong place); it comes back
//! from `pg_backup_stop` and goes into the backup.

use crate::walname::{segment_name, Lsn};
use crate::{BaseBackupInfo, NodeSettings, PgError, PgResult};
use strata_pgclient::Client;

/// What a node is right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accepts writes.
    Primary,
    /// In recovery (`pg_is_in_recovery()`), replaying WAL from a primary or the archive.
    Standby,
}

impl Role {
    /// `primary` or `standby`, as in `backup_from`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Standby => "standby",
        }
    }
}

/// Asks the node's server whether it is a primary or a standby.
pub async fn probe_role(settings: &NodeSettings) -> PgResult<Role> {
    let client = settings.connect.connect().await?;
    let row = client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .map_err(PgError::query("pg_is_in_recovery()"))?;
    Ok(if row.get::<_, bool>(0) {
        Role::Standby
    } else {
        Role::Primary
    })
}

/// A running base backup on one server.
pub struct BackupSession {
    client: Client,
    version: u32,
    role: Role,
    segment_size: u64,
    system_identifier: String,
    start_lsn: Lsn,
    tablespaces: Vec<crate::tablespace::Tablespace>,
    databases: std::collections::BTreeMap<String, u32>,
    config_files: Vec<String>,
}

/// What `pg_backup_stop` hands back.
pub struct Stopped {
    /// What goes into the node's summary.
    pub info: BaseBackupInfo,
    /// Content of `backup_label`.
    pub label_file: String,
    /// Content of `tablespace_map` (empty without tablespaces).
    pub tablespace_map: String,
}

async fn setting(client: &Client, name: &str) -> PgResult<String> {
    let row = client
        .query_one("SELECT setting FROM pg_settings WHERE name = $1", &[&name])
        .await
        .map_err(PgError::query(format!("reading setting {name}")))?;
    Ok(row.get(0))
}

impl BackupSession {
    /// Starts a base backup (with a fast checkpoint unless `spread`), after checking that
    /// its WAL can reach the archive.
    pub async fn start(settings: &NodeSettings, label: &str, spread: bool) -> PgResult<Self> {
        let client = settings.connect.connect().await?;
        let version: u32 = setting(&client, "server_version_num")
            .await?
            .parse()
            .unwrap_or(0);
        if version < 100000 {
            return Err(PgError::Refused(format!(
                "PostgreSQL {version} is too old: strata backs up PostgreSQL 10 and later"
            )));
        }
        let segment_size: u64 = setting(&client, "wal_segment_size")
            .await?
            .parse()
            .unwrap_or(16 << 20);
        let role = if client
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .map_err(PgError::query("pg_is_in_recovery()"))?
            .get::<_, bool>(0)
        {
            Role::Standby
        } else {
            Role::Primary
        };
        let archive_mode = setting(&client, "archive_mode").await?;
        if role == Role::Primary && archive_mode == "off" {
            return Err(PgError::Refused(format!(
                "archive_mode is off on {}: a base backup is useless without its WAL; set archive_mode = on and archive_command = 'strata wal-push %p' and restart PostgreSQL",
                settings.connect.describe()
            )));
        }
        let system_identifier: String = client
            .query_one(
                "SELECT system_identifier::text FROM pg_control_system()",
                &[],
            )
            .await
            .map_err(PgError::query("pg_control_system()"))?
            .get(0);
        let tablespaces = client
            .query(crate::tablespace::LIST_SQL, &[])
            .await
            .map_err(PgError::query("listing tablespaces"))?
            .iter()
            .map(|row| crate::tablespace::Tablespace {
                oid: row.get(0),
                name: row.get(1),
                location: row.get(2),
            })
            .collect();
        // Each database's directory under `base/`, so a table restore can leave the
        // others out of its scratch copy.
        let databases = client
            .query("SELECT datname, oid::int8 FROM pg_database", &[])
            .await
            .map_err(PgError::query("listing databases"))?
            .iter()
            .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1) as u32))
            .collect();
        let config_files = config_files(&client).await?;
        let fast = !spread;
        let sql = if version >= 150000 {
            "SELECT pg_backup_start($1, $2)::text"
        } else {
            "SELECT pg_start_backup($1, $2, false)::text"
        };
        let row = client
            .query_one(sql, &[&label, &fast])
            .await
            .map_err(PgError::query("pg_backup_start"))?;
        let start_lsn = Lsn::parse(row.get(0))
            .ok_or_else(|| PgError::Refused("pg_backup_start returned no LSN".into()))?;
        Ok(BackupSession {
            client,
            version,
            role,
            segment_size,
            system_identifier,
            start_lsn,
            tablespaces,
            databases,
            config_files,
        })
    }

    /// Every configuration file the server read (`postgresql.conf` and its includes,
    /// `pg_hba.conf`, `pg_ident.conf`), as absolute paths.
    pub fn config_files(&self) -> &[String] {
        &self.config_files
    }

    /// What the server was when the backup started.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Ends the backup. On a primary PostgreSQL waits until the WAL the backup needs is
    /// archived; on a standby the caller must make sure of that (see
    /// [`BackupSession::switch_primary_wal`]).
    pub async fn stop(&self) -> PgResult<Stopped> {
        let sql = if self.version >= 150000 {
            "SELECT lsn::text, labelfile, coalesce(spcmapfile, '') FROM pg_backup_stop(true)"
        } else {
            "SELECT lsn::text, labelfile, coalesce(spcmapfile, '') FROM pg_stop_backup(false, true)"
        };
        // Before the stop: every transaction below this xmin ended before the backup's
        // end, so none of them can be a recovery target (`txid_*`: PostgreSQL 10 to 15).
        let stop_xmin: String = self
            .client
            .query_one(
                "SELECT txid_snapshot_xmin(txid_current_snapshot())::text",
                &[],
            )
            .await
            .map_err(PgError::query("txid_current_snapshot()"))?
            .get(0);
        let row = self
            .client
            .query_one(sql, &[])
            .await
            .map_err(PgError::query("pg_backup_stop"))?;
        let stop_lsn = Lsn::parse(row.get(0))
            .ok_or_else(|| PgError::Refused("pg_backup_stop returned no LSN".into()))?;
        let label_file: String = row.get(1);
        let tablespace_map: String = row.get(2);
        let timeline = label_timeline(&label_file).unwrap_or(1);
        let seg = self.segment_size;
        let info = BaseBackupInfo {
            system_identifier: self.system_identifier.clone(),
            server_version_num: self.version,
            timeline,
            start_lsn: self.start_lsn.to_string(),
            stop_lsn: stop_lsn.to_string(),
            start_wal: segment_name(timeline, self.start_lsn.segment(seg), seg),
            // The stop position may sit exactly on a segment boundary: the record before it
            // is what recovery must reach.
            stop_wal: segment_name(
                timeline,
                Lsn(stop_lsn.0.saturating_sub(1)).segment(seg),
                seg,
            ),
            segment_size: seg,
            from_standby: self.role == Role::Standby,
            tablespaces: self.tablespaces.clone(),
            databases: self.databases.clone(),
            stop_xmin: Some(stop_xmin),
        };
        Ok(Stopped {
            info,
            label_file,
            tablespace_map,
        })
    }

    /// On a standby: asks the primary (through the standby's `primary_conninfo`) to switch
    /// to a new WAL segment, so the one holding the backup's end gets archived now rather
    /// than whenever it fills up.
    pub async fn switch_primary_wal(&self) -> PgResult<()> {
        let conninfo: String = self
            .client
            .query_one("SELECT current_setting('primary_conninfo')", &[])
            .await
            .map_err(PgError::query("reading primary_conninfo"))?
            .get(0);
        let mut conninfo = connectable(&conninfo);
        if !conninfo
            .split_whitespace()
            .any(|kv| kv.starts_with("dbname="))
        {
            // A replication conninfo names no database (Patroni's does not): the switch
            // is an ordinary query, on `postgres`.
            conninfo.push_str(" dbname=postgres");
        }
        let config: tokio_postgres_config::Config = conninfo.parse().map_err(|e| {
            PgError::Refused(format!("cannot read the standby's primary_conninfo: {e}"))
        })?;
        let (primary, connection) =
            config
                .connect(tokio_postgres_config::NoTls)
                .await
                .map_err(PgError::query(
                    "connecting to the primary named by primary_conninfo",
                ))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        primary
            .query_one("SELECT pg_switch_wal()::text", &[])
            .await
            .map_err(PgError::query("pg_switch_wal() on the primary"))?;
        Ok(())
    }
}

/// The configuration files the server read. `pg_file_settings` names the included
/// files too but needs a superuser (or `pg_read_all_settings`); without it, the three
/// main files.
async fn config_files(client: &Client) -> PgResult<Vec<String>> {
    const MAIN: &str = "SELECT current_setting('config_file') UNION \
        SELECT current_setting('hba_file') UNION SELECT current_setting('ident_file')";
    let all = format!(
        "SELECT DISTINCT f FROM (SELECT sourcefile AS f FROM pg_file_settings UNION {MAIN}) s \
         WHERE f IS NOT NULL ORDER BY f"
    );
    let rows = match client.query(&all, &[]).await {
        Ok(rows) => rows,
        Err(_) => client
            .query(MAIN, &[])
            .await
            .map_err(PgError::query("listing configuration files"))?,
    };
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}

/// The part of a libpq connection string this client understands: `pg_basebackup -R`
/// writes options (passfile, sslmode, gssencmode, ...) that only libpq knows.
fn connectable(conninfo: &str) -> String {
    const KEPT: &[&str] = &[
        "host",
        "hostaddr",
        "port",
        "user",
        "dbname",
        "password",
        "application_name",
        "connect_timeout",
    ];
    let mut out = Vec::new();
    let mut rest = conninfo.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key.trim();
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('\'') {
            // A quoted value ends at the first quote that is not escaped.
            let mut end = None;
            let mut escaped = false;
            for (i, c) in quoted.char_indices() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '\'' if !escaped => {
                        end = Some(i);
                        break;
                    }
                    _ => escaped = false,
                }
            }
            let end = end.unwrap_or(quoted.len());
            (
                format!("'{}'", &quoted[..end]),
                quoted.get(end + 1..).unwrap_or(""),
            )
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        if KEPT.contains(&key) {
            out.push(format!("{key}={value}"));
        }
        rest = next.trim_start();
    }
    out.join(" ")
}

/// `START TIMELINE: n` of a backup label.
fn label_timeline(label: &str) -> Option<u32> {
    label
        .lines()
        .find_map(|l| l.strip_prefix("START TIMELINE:"))
        .and_then(|t| t.trim().parse().ok())
}

/// tokio-postgres under a name that says why it is used directly here: to read a libpq
/// connection string.
mod tokio_postgres_config {
    pub use strata_pgclient::tokio_postgres::{Config, NoTls};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_what_the_client_understands_of_a_conninfo() {
        let written = "user=postgres passfile='/var/lib/postgresql/.pgpass' channel_binding=prefer host=/tmp/pgs port=5433 sslmode=prefer application_name='my app'";
        assert_eq!(
            connectable(written),
            "user=postgres host=/tmp/pgs port=5433 application_name='my app'"
        );
        assert_eq!(connectable("host='a b' port=1"), "host='a b' port=1");
    }

    #[test]
    fn reads_the_timeline_of_a_label() {
        let label = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-11-23 05:00:00 UTC\nLABEL: x\nSTART TIMELINE: 3\n";
        assert_eq!(label_timeline(label), Some(3));
        assert_eq!(label_timeline(""), None);
    }
}
