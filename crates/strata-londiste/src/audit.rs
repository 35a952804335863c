//! The audit log of the commands that change a node or the cascade: one row per command
//! (who, what, on which node, how it ended) in the database of the node the command ran
//! on, table `londiste.strata_audit`, made on first use. It lives in the londiste schema
//! so that no table listing (strata's or Python's `missing`, `add-table --all`) offers
//! it for replication. Recording is best effort: a failed write is reported beside the
//! command's own outcome, never instead of it.

use crate::admin;
use crate::command::LondisteCommand;
use crate::config::NodeConfig;
use crate::error::{LondisteError, Result};
use crate::node;
use serde::Serialize;

/// The audit table.
pub const TABLE: &str = "londiste.strata_audit";

/// One audited command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// When it ended, RFC 3339 UTC.
    pub time: String,
    /// `local:<user>@<host>`.
    pub who: String,
    /// The cascaded queue, so one database hosting several queues keeps their logs apart.
    pub queue: String,
    /// The node the command ran on (none before `create-*`).
    pub node: Option<String>,
    /// The command, e.g. `takeover`.
    pub action: String,
    /// Its arguments, e.g. `root --dead-root`.
    pub target: String,
    /// `succeeded`, `partial` (it exited 1: something left for the operator) or `failed`.
    pub outcome: String,
    /// The error, when it failed.
    pub detail: String,
}

/// A connection string as the log shows it: host, port, database and user, never a
/// password.
fn masked(location: &str) -> String {
    strata_pgclient::Dsn::parse(location)
        .map(|d| d.describe())
        .unwrap_or_else(|_| "(not a connection string)".into())
}

/// The action and target recorded for `command`, or `None` for the commands that change
/// nothing (listings, status, waits, compare, check) and for the worker.
pub fn describe(command: &LondisteCommand) -> Option<(&'static str, String)> {
    use LondisteCommand as C;
    let flag = |on: bool, name: &str| on.then(|| name.to_string());
    let join =
        |parts: Vec<Option<String>>| parts.into_iter().flatten().collect::<Vec<_>>().join(" ");
    Some(match command {
        C::CreateRoot { name, location } => ("create-root", format!("{name} {}", masked(location))),
        C::CreateBranch {
            name,
            location,
            provider,
        }
        | C::CreateLeaf {
            name,
            location,
            provider,
        } => (
            if matches!(command, C::CreateBranch { .. }) {
                "create-branch"
            } else {
                "create-leaf"
            },
            format!(
                "{name} {} --provider {}",
                masked(location),
                masked(provider)
            ),
        ),
        C::JoinRestored {
            name,
            location,
            provider,
            branch,
            check: false,
            keep_archiving,
            ..
        } => (
            "join-restored",
            join(vec![
                Some(format!(
                    "{name} {} --provider {}",
                    masked(location),
                    masked(provider)
                )),
                flag(*branch, "--branch"),
                flag(*keep_archiving, "--keep-archiving"),
            ]),
        ),
        C::AddTable { tables, options } => (
            "add-table",
            join(vec![
                Some(tables.join(" ")).filter(|t| !t.is_empty()),
                flag(options.all, "--all"),
                flag(options.create, "--create"),
                flag(options.expect_sync, "--expect-sync"),
                flag(options.skip_truncate, "--skip-truncate"),
            ]),
        ),
        C::RemoveTable { tables } => ("remove-table", tables.join(" ")),
        C::AddSeq { seqs, all } => (
            "add-seq",
            join(vec![
                Some(seqs.join(" ")).filter(|s| !s.is_empty()),
                flag(*all, "--all"),
            ]),
        ),
        C::RemoveSeq { seqs } => ("remove-seq", seqs.join(" ")),
        C::Pause => ("pause", String::new()),
        C::Resume => ("resume", String::new()),
        C::Repair {
            tables,
            apply: true,
            ..
        } => (
            "repair",
            join(vec![Some(tables.join(" ")), flag(true, "--apply")]),
        ),
        C::Takeover {
            old,
            dead_root,
            dead_branch,
            all,
            allow_missing_tables,
            ..
        } => (
            "takeover",
            join(vec![
                Some(old.clone()),
                flag(*dead_root, "--dead-root"),
                flag(*dead_branch, "--dead-branch"),
                flag(*all, "--all"),
                flag(*allow_missing_tables, "--allow-missing-tables"),
            ]),
        ),
        C::Resurrect { dump, .. } => ("resurrect", format!("--dump {}", dump.display())),
        C::TagDead { nodes } => ("tag-dead", nodes.join(" ")),
        C::TagAlive { nodes } => ("tag-alive", nodes.join(" ")),
        C::DropNode { node } => ("drop-node", node.clone()),
        C::ChangeLocation { node, location } => {
            ("change-location", format!("{node} {}", masked(location)))
        }
        C::RenameNode { old, new } => ("rename-node", format!("{old} {new}")),
        C::ParkEvent {
            event,
            batch,
            reason,
        } => (
            "park-event",
            join(vec![
                Some(event.to_string()),
                batch.map(|b| format!("--batch {b}")),
                Some(format!("--reason {reason:?}")),
            ]),
        ),
        C::Resync { tables } => ("resync", tables.join(" ")),
        C::ChangeProvider { provider, .. } => ("change-provider", format!("--provider {provider}")),
        C::Execute { files, .. } => (
            "execute",
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(" "),
        ),
        C::Tables
        | C::Seqs
        | C::Missing
        | C::Fkeys
        | C::Status { .. }
        | C::Members
        | C::NodeInfo
        | C::Worker { .. }
        | C::Compare { .. }
        | C::Repair { apply: false, .. }
        | C::WaitRoot { .. }
        | C::WaitProvider { .. }
        | C::Check
        | C::WaitSync { .. }
        | C::Audit { .. }
        | C::JoinRestored { check: true, .. } => return None,
    })
}

/// How an audited command ended, as its entry's `outcome` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It did everything it was asked (exit code 0).
    Succeeded,
    /// It ran but left something for the operator (exit code 1: a member not told, a row
    /// still different, a table not moved).
    Partial,
    /// It stopped with an error.
    Failed,
}

impl Outcome {
    /// The outcome of a command that returned `result` (its exit code, or its error).
    pub fn of<E>(result: &std::result::Result<u8, E>) -> Outcome {
        match result {
            Ok(0) => Outcome::Succeeded,
            Ok(_) => Outcome::Partial,
            Err(_) => Outcome::Failed,
        }
    }

    /// The word stored in the audit table.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Partial => "partial",
            Outcome::Failed => "failed",
        }
    }
}

/// Appends one entry to the node's audit table (made when missing).
pub async fn record(
    cf: &NodeConfig,
    who: &str,
    action: &str,
    target: &str,
    outcome: Outcome,
    detail: &str,
) -> Result<()> {
    let outcome = outcome.as_str();
    let db = admin::connect_local(cf).await?;
    let node = node::node_info(&db, &cf.queue_name).await?.node_name;
    db.batch_execute(&format!(
        "create table if not exists {TABLE} (
            time timestamptz not null default clock_timestamp(),
            who text not null,
            queue_name text not null,
            node_name text,
            action text not null,
            target text not null,
            outcome text not null,
            detail text not null
        )"
    ))
    .await
    .map_err(|e| LondisteError::sql("making the audit table", e))?;
    db.execute(
        &format!("insert into {TABLE} (who, queue_name, node_name, action, target, outcome, detail) values ($1, $2, $3, $4, $5, $6, $7)"),
        &[&who, &cf.queue_name, &node, &action, &target, &outcome, &detail],
    )
    .await
    .map_err(|e| LondisteError::sql("writing the audit log", e))?;
    Ok(())
}

/// The newest `limit` entries of this queue, oldest first (none before the first
/// audited command).
pub async fn read(cf: &NodeConfig, limit: u32) -> Result<Vec<AuditEntry>> {
    let db = admin::connect_local(cf).await?;
    let exists: bool = db
        .query_one("select to_regclass($1) is not null", &[&TABLE])
        .await
        .map_err(|e| LondisteError::sql("looking for the audit table", e))?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let limit = i64::from(limit);
    let rows = db
        .query(
            &format!(
                "select * from (select to_char(time at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), who, queue_name, node_name, action, target, outcome, detail, time \
                 from {TABLE} where queue_name = $1 order by time desc limit $2) t order by time"
            ),
            &[&cf.queue_name, &limit],
        )
        .await
        .map_err(|e| LondisteError::sql("reading the audit log", e))?;
    Ok(rows
        .iter()
        .map(|r| AuditEntry {
            time: r.get(0),
            who: r.get(1),
            queue: r.get(2),
            node: r.get(3),
            action: r.get(4),
            target: r.get(5),
            outcome: r.get(6),
            detail: r.get(7),
        })
        .collect())
}
