//! `[postgres]` of strata's configuration file: the postgres plugin's settings. This crate
//! owns the section (its type, defaults, documentation and checks); the coordinator's
//! configuration holds it. [`DEFAULT_SECTION`] is what `strata config default` prints
//! for it.

use serde::{Deserialize, Serialize};

/// The documented default `[postgres]` section, comments included.
pub const DEFAULT_SECTION: &str = include_str!("default.toml");

/// Settings of the postgres plugin (`plugin = "postgres"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// `primary` or `standby`.
    pub backup_from: String,
    /// Let `pg_backup_start` spread its checkpoint (gentler, slower start) instead of
    /// forcing it.
    pub spread_checkpoint: bool,
    /// `wal-push` also sends up to this many further segments PostgreSQL has ready.
    pub wal_push_ahead: usize,
    /// `wal-fetch` reads this many following segments into a spool in the state
    /// directory, so recovery's next calls need not open the repository (0: off).
    pub wal_fetch_ahead: usize,
    /// A `wal-fetch` that had to read the archive starts a prefetcher that keeps the
    /// `wal_fetch_ahead` segments after recovery's position spooled, beside replay.
    pub wal_prefetch: bool,
    /// The prefetcher stops once recovery has asked for nothing this long.
    pub wal_prefetch_idle_secs: u64,
    /// How long a backup waits for the WAL it needs to reach the archive.
    pub wal_wait_secs: u64,
    /// How long a restore waits for PostgreSQL to finish recovery.
    pub recovery_timeout_secs: u64,
    /// The socket of the local WAL archiver (`strata wal archiver`); empty: the state
    /// directory's `wal-archiver.sock`.
    pub archiver_socket: String,
    /// How long `wal-push` waits for the archiver's answer before it fails (PostgreSQL
    /// retries; the archiver still finishes what it started).
    pub archiver_timeout_secs: u64,
    /// Pushes the archiver holds waiting at most; more are refused as busy.
    pub archiver_queue: usize,
    /// Segments the archiver stores in one batch (one pack stream, one index object, one
    /// archive-writer mark) at most.
    pub archiver_batch: usize,
    /// When a push fails while more than this many MiB of WAL wait to be archived, the
    /// segment is acknowledged unarchived (dropped, loudly) so `pg_wal` cannot fill the
    /// disk; 0 (the default): never, PostgreSQL keeps it and calls again.
    pub wal_queue_max_mib: u64,
    /// The REST API of a Patroni member of this cluster (`http://127.0.0.1:8008`);
    /// empty: not under Patroni. A restore in place then pauses Patroni around itself.
    pub patroni: String,
    /// How long a restore waits for every Patroni member to report the pause.
    pub patroni_wait_secs: u64,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            backup_from: "primary".into(),
            spread_checkpoint: false,
            wal_push_ahead: 8,
            wal_fetch_ahead: 8,
            wal_prefetch: true,
            wal_prefetch_idle_secs: 60,
            wal_wait_secs: 300,
            recovery_timeout_secs: 3600,
            archiver_socket: String::new(),
            archiver_timeout_secs: 600,
            archiver_queue: 64,
            archiver_batch: 16,
            wal_queue_max_mib: 0,
            patroni: String::new(),
            patroni_wait_secs: 60,
        }
    }
}

impl PostgresConfig {
    /// The role `backup_from` names, as a server reports it: `primary` or `standby`
    /// (Patroni's `leader` and `replica` are the same roles).
    pub fn backup_role(&self) -> &str {
        match self.backup_from.as_str() {
            "leader" => "primary",
            "replica" => "standby",
            other => other,
        }
    }

    /// Checks what TOML types cannot; the message names the key (`postgres.KEY`).
    pub fn validate(&self) -> Result<(), BadSetting> {
        if !["primary", "standby", "leader", "replica"].contains(&self.backup_from.as_str()) {
            return Err(BadSetting::BackupFrom(self.backup_from.clone()));
        }
        if self.archiver_queue == 0 || self.archiver_batch == 0 {
            return Err(BadSetting::ArchiverQueue);
        }
        let url = self.patroni.trim();
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            // Not echoed: a URL may carry credentials.
            return Err(BadSetting::Patroni);
        }
        Ok(())
    }

    /// The Patroni REST API, when the cluster runs under Patroni.
    pub fn patroni_url(&self) -> Option<&str> {
        let url = self.patroni.trim().trim_end_matches('/');
        (!url.is_empty()).then_some(url)
    }
}

/// A `[postgres]` setting that is refused; the line names the key (`postgres.KEY`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadSetting {
    /// `backup_from` names no role.
    #[error("postgres.backup_from {0:?} must be \"primary\" or \"standby\" (Patroni's \"leader\" or \"replica\")")]
    BackupFrom(String),
    /// `archiver_queue` or `archiver_batch` is 0.
    #[error("postgres.archiver_queue and postgres.archiver_batch must be at least 1")]
    ArchiverQueue,
    /// `patroni` is not an http(s) URL (not echoed: it may carry credentials).
    #[error("postgres.patroni must be the http:// or https:// URL of a member's REST API")]
    Patroni,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_section_is_the_default() {
        let parsed: std::collections::BTreeMap<String, PostgresConfig> =
            toml::from_str(DEFAULT_SECTION).unwrap();
        assert_eq!(parsed["postgres"], PostgresConfig::default());
        assert_eq!(parsed.len(), 1);
        assert!(PostgresConfig::default().validate().is_ok());
    }

    #[test]
    fn patroni_is_a_url_and_its_value_is_not_echoed() {
        let with = |url: &str| PostgresConfig {
            patroni: url.into(),
            ..PostgresConfig::default()
        };
        assert_eq!(with("").patroni_url(), None);
        assert_eq!(
            with("http://127.0.0.1:8008/").patroni_url(),
            Some("http://127.0.0.1:8008")
        );
        let err = with("user:s3cret@m1:8008").validate().unwrap_err();
        assert_eq!(err, BadSetting::Patroni);
        let err = err.to_string();
        assert!(
            err.contains("postgres.patroni") && !err.contains("s3cret"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_backup_source_is_refused_with_the_key() {
        let config = PostgresConfig {
            backup_from: "follower".into(),
            ..PostgresConfig::default()
        };
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("postgres.backup_from"));
    }
}
