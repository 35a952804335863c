//! One table (or a few) back from a physical backup, without touching the running
//! cluster: `strata restore BACKUP --table SCHEMA.TABLE --database DB [--target-time T]`.
//!
//! The backup's PostgreSQL node is restored into scratch space (its free space checked
//! first), a [`strata_postgres::scratch::Scratch`] server is started there and recovered
//! to the target through `strata wal-fetch` (to the end of the archive without one), the
//! tables are brought back ([`strata_postgres::tables`]) into the live database under the
//! names asked for, or into a dump file, and the scratch server and files are removed
//! whatever happens: an error, a panic, or the command's future dropped by a SIGTERM.
//!
//! What can be refused without the copy is refused before any work: a name the live
//! database already has, a schema it does not have, a database it lacks. The scratch
//! space carries a mark ([`crate::scratch_space`]): what a killed restore leaves (its
//! server running on its copy) is stopped and removed by the next table restore, restore
//! drill or `strata server` start, with a warning.

use crate::config::Config;
use crate::scratch_space::ScratchLease;
use crate::{CoordinatorError, CoordinatorResult};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use strata_postgres::recovery::Target;
use strata_postgres::scratch::{Scratch, StopOnDrop};
use strata_postgres::tables::{BadName, Destination, TableName, TableRequest};
use strata_repo::summary::{BackupSummary, NodeSummary};
use strata_repo::Repository;

/// What to bring back, as the command line or the API says it.
#[derive(Debug, Clone)]
pub struct TableRestore {
    /// The database the tables are in.
    pub database: String,
    /// `SCHEMA.TABLE` each; none: the whole database comes back.
    pub tables: Vec<String>,
    /// The name the (one) table or the database comes back under; default
    /// `<name>_restored`. A table's in its own schema, or `SCHEMA.NAME`.
    pub rename: Option<String>,
    /// Write a dump file instead of loading into the live database.
    pub dump: Option<PathBuf>,
    /// Where recovery stops (default: the end of the archive).
    pub target: Target,
    /// The backup node to take them from (default: the backup's PostgreSQL node).
    pub node: Option<String>,
    /// Set to `Some(why)` to stop (a SIGTERM): honoured until the load begins, never
    /// during it, so a stopped restore has loaded nothing and a finished one is whole.
    pub stop: Option<tokio::sync::watch::Receiver<Option<String>>>,
}

impl TableRestore {
    /// Why it was asked to stop, if it was.
    fn stopped(&self) -> Option<String> {
        self.stop.as_ref().and_then(|s| s.borrow().clone())
    }
}

/// The error of a table restore stopped before its load.
fn stopped_error(why: String) -> CoordinatorError {
    CoordinatorError::Postgres(strata_postgres::PgError::Refused(format!(
        "{why}: the table restore stopped before loading anything; its scratch server is stopped and its copy removed"
    )))
}

/// The recovery settings of the scratch copy: through the archive to `target` (promoted
/// there unless it is the archive's end), and the target as a line says it.
fn recovery_settings(config: &Config, target: &Target) -> (Vec<(&'static str, String)>, String) {
    let mut settings: Vec<(&'static str, String)> = vec![
        (
            "restore_command",
            format!(
                "{} %f %p",
                crate::plugin::postgres::wal_fetch_command(config)
            ),
        ),
        ("recovery_target_timeline", "current".into()),
    ];
    let target_line = match target {
        Target::Latest | Target::Gap => {
            settings[1].1 = "latest".into();
            "the end of the archive".to_string()
        }
        Target::Immediate => {
            settings.push(("recovery_target", "immediate".into()));
            "the backup's consistency point".into()
        }
        Target::Time(t) => {
            settings.push(("recovery_target_time", t.clone()));
            t.to_string()
        }
        Target::Lsn(l) => {
            settings.push(("recovery_target_lsn", l.clone()));
            format!("LSN {l}")
        }
        Target::Xid(x) => {
            settings.push(("recovery_target_xid", x.clone()));
            format!("transaction {x}")
        }
    };
    if !target.is_end() {
        settings.push(("recovery_target_action", "promote".into()));
    }
    (settings, target_line)
}

/// The backup node the tables come from (the requested one, or the first PostgreSQL
/// node), what its base backup recorded, and where the tables go: a dump file, or the
/// node's live database.
fn source_and_destination<'s>(
    summary: &'s BackupSummary,
    config: &Config,
    request: &TableRestore,
) -> CoordinatorResult<(
    &'s NodeSummary,
    strata_postgres::BaseBackupInfo,
    Destination,
)> {
    let invalid = |m: String| CoordinatorError::Invalid(m);
    let node = summary
        .nodes
        .iter()
        .filter(|n| request.node.as_ref().is_none_or(|want| &n.name == want))
        .find(|n| strata_postgres::BaseBackupInfo::from_map(&n.plugin).is_some())
        .ok_or_else(|| {
            CoordinatorError::NoNode(format!(
                "backup {} has no PostgreSQL node{}",
                summary.name,
                request
                    .node
                    .as_ref()
                    .map(|n| format!(" {n}"))
                    .unwrap_or_default()
            ))
        })?;
    let info = strata_postgres::BaseBackupInfo::from_map(&node.plugin).expect("found above");
    if !info.tablespaces.is_empty() {
        return Err(invalid(format!(
            "backup {} has tablespaces: tables cannot be brought back from it yet (restore it with --to and use pg_dump)",
            summary.name
        )));
    }
    let live = config
        .nodes
        .iter()
        .find(|n| n.name == node.name)
        .and_then(|n| n.postgres.as_ref())
        .map(|pg| pg.connect.clone());
    let destination = match (&request.dump, live) {
        (Some(path), _) => {
            if path.exists() {
                return Err(invalid(format!(
                    "{} exists: name a new file",
                    path.display()
                )));
            }
            Destination::Dump(path.clone())
        }
        (None, Some(connect)) => Destination::Live(connect),
        (None, None) => {
            return Err(invalid(format!(
                "node {} has no [nodes.postgres] connection here to load into: give --dump FILE",
                node.name
            )))
        }
    };
    Ok((node, info, destination))
}

/// What a table restore did.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct TableRestoreReport {
    /// The backup the tables came from.
    pub backup: String,
    /// The backup node whose database they came from.
    pub node: String,
    /// A line per phase and per table.
    pub lines: Vec<String>,
}

/// Bytes free for this process in the file system of `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some(stat.f_bavail * stat.f_frsize)
}

/// Restores node `node` of `summary` into `dir/copy` (its file system must hold it), the
/// databases other than the request's as holes of their size; returns the copy's data
/// directory.
async fn restore_copy(
    repo: Arc<Repository>,
    summary: &BackupSummary,
    request: &TableRestore,
    node: &NodeSummary,
    databases: &std::collections::BTreeMap<String, u32>,
    dir: &Path,
    say: &(dyn Fn(&str) + Sync),
) -> CoordinatorResult<PathBuf> {
    let invalid = |m: String| CoordinatorError::Invalid(m);
    let needed = node.bytes + node.bytes / 10;
    if let Some(free) = free_bytes(dir) {
        if free < needed {
            return Err(invalid(format!(
                "{} has {} MiB free; the copy of node {} needs about {} MiB: point state_dir elsewhere or free space",
                dir.display(),
                free >> 20,
                node.name,
                needed >> 20
            )));
        }
    }
    say(&format!(
        "restoring node {} of {} into {} ({} MiB)",
        node.name,
        summary.name,
        dir.display(),
        node.bytes >> 20
    ));
    // The other databases come back as holes of their size (the catalog still names
    // them, and recovery writes a full-page image over every page it touches): only what
    // the tables need is read. Backups from before the databases were recorded are read
    // whole.
    let keep = [
        request.database.as_str(),
        "postgres",
        "template0",
        "template1",
    ];
    let hollow: Vec<Vec<u8>> = databases
        .iter()
        .filter(|(name, _)| !keep.contains(&name.as_str()))
        .map(|(_, oid)| format!("base/{oid}").into_bytes())
        .collect();
    if !hollow.is_empty() {
        say(&format!(
            "{} other databases are left out of the copy (holes of their size)",
            hollow.len()
        ));
    }
    let options = strata_agent::restore::RestoreOptions {
        set_owner: rustix::process::geteuid().is_root(),
        sync: false,
        hollow,
        ..Default::default()
    };
    let copy = dir.join("copy");
    let restored =
        crate::restore::run_restore(repo, summary, &copy, Some(&node.name), options).await?;
    if let Some(why) = request.stopped() {
        return Err(stopped_error(why));
    }
    if let Some(errors) = restored.iter().find(|r| !r.report.errors.is_empty()) {
        return Err(CoordinatorError::Damaged(format!(
            "the copy of node {} did not come back whole: {}",
            node.name, errors.report.errors[0]
        )));
    }
    if !copy.join("PG_VERSION").is_file() {
        return Err(CoordinatorError::Damaged(format!(
            "no PG_VERSION in the copy of node {}",
            node.name
        )));
    }
    Ok(copy)
}

/// Brings the tables of `request` back from `summary` (see the module documentation),
/// using `scratch_root` (the state directory) for the copy. `say` gets a line per phase.
pub async fn restore_tables(
    repo: Arc<Repository>,
    config: &Config,
    summary: &BackupSummary,
    request: &TableRestore,
    scratch_root: &Path,
    say: &(dyn Fn(&str) + Sync),
) -> CoordinatorResult<TableRestoreReport> {
    let invalid = |m: String| CoordinatorError::Invalid(m);
    let bad_name = |e: BadName| CoordinatorError::Invalid(e.to_string());
    strata_postgres::tables::check_database_name(&request.database).map_err(bad_name)?;
    let names: Vec<TableName> = request
        .tables
        .iter()
        .map(|t| TableName::parse(t).map_err(bad_name))
        .collect::<Result<_, _>>()?;
    if request.rename.is_some() && names.len() > 1 {
        return Err(invalid(
            "--as names one table: give one --table with it, or none (each comes back as <table>_restored)".into(),
        ));
    }
    // What killed restores and drills left (their servers running on their copies) is
    // stopped and removed first, and said.
    let warnings: Vec<String> = crate::scratch_space::sweep(scratch_root)
        .into_iter()
        .map(|line| format!("warning: {line}"))
        .collect();
    let (node, info, destination) = source_and_destination(summary, config, request)?;
    let whole_database = names.is_empty();
    let new_database = request
        .rename
        .clone()
        .unwrap_or_else(|| format!("{}_restored", request.database));
    if whole_database {
        strata_postgres::tables::check_database_name(&new_database).map_err(bad_name)?;
    }
    let tables = names
        .into_iter()
        .map(|t| new_table_name(&t, request.rename.as_deref()).map(|n| (t, n)))
        .collect::<CoordinatorResult<Vec<_>>>()?;
    if !info.databases.is_empty() && !info.databases.contains_key(&request.database) {
        return Err(invalid(format!(
            "backup {} has no database {:?} (it has {})",
            summary.name,
            request.database,
            info.databases
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    // What the live database can be asked without the copy is asked before any work.
    if let Destination::Live(connect) = &destination {
        match whole_database {
            true => {
                strata_postgres::tables::check_live_database_free(connect, &new_database).await?
            }
            false => {
                let new: Vec<TableName> = tables.iter().map(|(_, n)| n.clone()).collect();
                strata_postgres::tables::check_live_names(connect, &request.database, &new).await?
            }
        }
    }
    if let Some(why) = request.stopped() {
        return Err(stopped_error(why));
    }

    // The copy goes under the state directory: its file system must hold it. Marked
    // first, so that a restore killed at any point leaves nothing the next one does not
    // find.
    let dir = scratch_root.join(format!("table-restore-{}", crate::names::new_backup_name()));
    let what = match whole_database {
        true => format!("database restore of backup {}", summary.name),
        false => format!("table restore of backup {}", summary.name),
    };
    let mut space = ScratchLease::take(scratch_root, &dir, &what)?;
    std::fs::create_dir_all(&dir)
        .map_err(|e| invalid(format!("cannot create {}: {e}", dir.display())))?;
    let data_dir = restore_copy(repo, summary, request, node, &info.databases, &dir, say).await?;
    let scratch = Scratch::prepare(&data_dir, &dir.join("run"), None)?
        .map_err(|why| invalid(format!("cannot start the copy: {why}")))?;
    space.set_server(scratch.clone());
    // Recovery through the archive, to the target (or its end), then promoted.
    let signal = data_dir.join("recovery.signal");
    std::fs::write(&signal, "").map_err(|e| invalid(format!("{}: {e}", signal.display())))?;
    if rustix::process::geteuid().is_root() {
        let _ = std::os::unix::fs::chown(&signal, Some(scratch.owner.0), Some(scratch.owner.1));
    }
    let (settings, target_line) = recovery_settings(config, &request.target);
    let timeout = Duration::from_secs(config.postgres.recovery_timeout_secs.max(60));
    say(&format!(
        "starting a scratch PostgreSQL on {} and recovering to {target_line}",
        scratch.work.display()
    ));
    if let Some(why) = request.stopped() {
        return Err(stopped_error(why));
    }
    scratch.start(&settings, timeout)?;
    let stop = StopOnDrop(&scratch);
    match request.stop.clone() {
        Some(mut asked) => tokio::select! {
            promoted = scratch.wait_promoted(timeout) => promoted?,
            _ = asked.wait_for(Option::is_some) => {
                return Err(stopped_error(request.stopped().unwrap_or_default()))
            }
        },
        None => scratch.wait_promoted(timeout).await?,
    }
    // The last point a stop is honoured: from here the load runs to its end.
    if let Some(why) = request.stopped() {
        return Err(stopped_error(why));
    }
    let lines = if whole_database {
        say("recovered; bringing the database back");
        strata_postgres::tables::bring_back_database(
            &scratch,
            &request.database,
            &new_database,
            &destination,
        )?
    } else {
        say("recovered; bringing the tables back");
        let table_request = TableRequest {
            database: request.database.clone(),
            tables,
            destination,
        };
        strata_postgres::tables::bring_back(&scratch, &table_request)?
    };
    drop(stop);
    drop(space);
    Ok(TableRestoreReport {
        backup: summary.name.clone(),
        node: node.name.clone(),
        lines: warnings.into_iter().chain(lines).collect(),
    })
}

/// The name `table` comes back under: `--as NAME` in the table's own schema, `--as
/// SCHEMA.NAME` in that schema (either in SQL's identifier syntax), else
/// `<table>_restored` in its own schema.
fn new_table_name(table: &TableName, rename: Option<&str>) -> CoordinatorResult<TableName> {
    let invalid = |e: BadName| CoordinatorError::Invalid(e.to_string());
    let given = match rename {
        Some(given) => given.to_string(),
        None => format!("\"{}_restored\"", table.name.replace('"', "\"\"")),
    };
    TableName::parse_in(&given, &table.schema).map_err(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_keeps_the_table_s_schema_unless_it_names_one() {
        let table = TableName::parse("sales.orders").unwrap();
        let name = |r: Option<&str>| new_table_name(&table, r).unwrap().to_string();
        assert_eq!(name(None), "sales.orders_restored");
        assert_eq!(name(Some("orders_o")), "sales.orders_o");
        assert_eq!(name(Some("other.orders_o")), "other.orders_o");
        assert_eq!(name(Some("Other.Orders_O")), "other.orders_o");
        assert!(new_table_name(&table, Some("a.b.c")).is_err());
        assert!(new_table_name(&table, Some("x;y")).is_err());
        let odd = TableName::parse("\"Mixed Case\".\"quo\"\"te\"").unwrap();
        let name = |r: Option<&str>| new_table_name(&odd, r).unwrap();
        assert_eq!(name(None).name, "quo\"te_restored");
        assert_eq!(name(None).schema, "Mixed Case");
        assert_eq!(name(Some("\"dot.name\"")).name, "dot.name");
        assert_eq!(name(Some("\"dot.name\"")).schema, "Mixed Case");
        assert_eq!(name(Some("public.\"A.b\"")).to_string(), "public.\"A.b\"");
        assert!(new_table_name(&TableName::parse(&"t".repeat(60)).unwrap(), None).is_err());
    }
}
