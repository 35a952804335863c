//! What a base backup leaves out of the data directory, as PostgreSQL documents it
//! ("Backing Up the Data Directory" in the manual, and `basebackup.c`): files rebuilt at
//! start-up or by recovery, and WAL, which comes from the archive instead.

/// Glob patterns relative to the data directory (matched by the agent's snapshot). The
/// directories themselves are kept, empty, so a restored data directory has them.
pub const EXCLUDED: &[&str] = &[
    "postmaster.pid",
    "postmaster.opts",
    // Written by the backup itself (and restored from the backup's own copy).
    "backup_label",
    "backup_label.old",
    "tablespace_map",
    "tablespace_map.old",
    "recovery.signal",
    "standby.signal",
    "pg_wal/*",
    "pg_replslot/*",
    "pg_dynshmem/*",
    "pg_notify/*",
    "pg_serial/*",
    "pg_snapshots/*",
    "pg_stat_tmp/*",
    "pg_subtrans/*",
    "pgsql_tmp*",
    "pg_internal.init",
    "current_logfiles",
];

/// The data directory's own files the backup adds from `pg_backup_stop`'s answer.
pub const LABEL_FILE: &str = "backup_label";
/// See [`LABEL_FILE`]: the tablespace links as `pg_backup_stop` listed them.
pub const TABLESPACE_MAP: &str = "tablespace_map";

/// The links to tablespace directories: the backup follows them and stores each
/// tablespace in its link's place (see `tablespace`).
pub const TABLESPACE_LINKS: &str = "pg_tblspc/*";

/// Where configuration files from outside the data directory are kept in the backup, under
/// their absolute path (`strata.external-config/etc/postgresql/15/main/postgresql.conf`).
/// A restore puts them there too: inside the restored data directory, inactive, never
/// over the live files of a server that may share the machine.
pub const EXTERNAL_CONFIG: &str = "strata.external-config";
