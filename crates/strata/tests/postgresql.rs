//! The integration tests of PostgreSQL 15: base backups, WAL, points in time, Patroni, tables
//! restored, archived and loaded.
//!
//! One test binary per theme (the engine links once for each, not once per file);
//! each module is one file of this directory, its tests named `MODULE::TEST`.

mod common;
mod load_file;
mod patroni;
mod postgres;
#[path = "../../strata-store/tests/servers.rs"]
mod servers;
mod tables;
mod wal_archiver;
mod wal_fetch_exit;
