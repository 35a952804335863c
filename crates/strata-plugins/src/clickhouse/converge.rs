//! A restore is done when the server holds what was asked for: every restored replica
//! of a replicated table is waited for, bounded by `[nodes.clickhouse] restore_wait`,
//! until it holds the covering set's rows per partition with no fetch left in its
//! replication queue. The writer keeps its merges stopped until every replica of the
//! restore holds its parts (per ZooKeeper): a merge before a replica fetched them could
//! hand that replica a merged part of fewer rows (Replacing, Collapsing, Summing tables)
//! and no count could then be trusted.

use super::client::{literal, Client};
use super::record::Table;
use super::replicas::table_condition;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use strata_agent::service::ApiResult;
use strata_cluster::node_api::{ApiError, ErrorCode};

/// How often a replica is asked again.
const POLL: Duration = Duration::from_millis(250);

/// How often a wait says where it stands (on the agent's stderr: the command line's for
/// in-process nodes, the server's log for the others).
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Says where a wait stands, at most every [`PROGRESS_EVERY`].
struct Progress {
    next: Instant,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            next: Instant::now() + PROGRESS_EVERY,
        }
    }

    fn say(&mut self, deadline: Instant, line: impl FnOnce() -> String) {
        let now = Instant::now();
        if now >= self.next {
            self.next = now + PROGRESS_EVERY;
            let left = deadline.saturating_duration_since(now).as_secs();
            eprintln!("strata: ClickHouse: {} ({left} s left)", line());
        }
    }
}

fn failed(why: String) -> ApiError {
    ApiError::new(ErrorCode::Failed, format!("ClickHouse: {why}"))
}

/// This server's replica of a table.
#[derive(Debug, Deserialize)]
struct Replica {
    zookeeper_path: String,
    replica_name: String,
    inserts_in_queue: u64,
    is_readonly: u8,
    is_session_expired: u8,
}

async fn replica(client: &Client, table: &Table) -> ApiResult<Replica> {
    let rows = client
        .rows::<Replica>(&format!(
            "SELECT zookeeper_path, replica_name, inserts_in_queue, is_readonly, is_session_expired FROM system.replicas WHERE {}",
            table_condition(table)
        ))
        .await
        .map_err(|e| failed(format!("read {}'s replica: {}", table.shown(), strata_util::error_chain(&e))))?;
    rows.into_iter().next().ok_or_else(|| {
        failed(format!(
            "{} is not a replicated table on this server",
            table.shown()
        ))
    })
}

/// The rows of the table's active parts per partition id (`system.parts`).
pub async fn rows_by_partition(client: &Client, table: &Table) -> ApiResult<BTreeMap<String, u64>> {
    #[derive(Deserialize)]
    struct Row {
        partition_id: String,
        rows: u64,
    }
    let rows = client
        .rows::<Row>(&format!(
            "SELECT partition_id, sum(rows) AS rows FROM system.parts WHERE {} AND active GROUP BY partition_id",
            table_condition(table)
        ))
        .await
        .map_err(|e| failed(format!("count the rows of {}: {}", table.shown(), strata_util::error_chain(&e))))?;
    Ok(rows.into_iter().map(|r| (r.partition_id, r.rows)).collect())
}

/// Why the replication queue has not drained: its first entry's last error.
async fn queue_error(client: &Client, table: &Table) -> Option<String> {
    #[derive(Deserialize)]
    struct Entry {
        r#type: String,
        new_part_name: String,
        last_exception: String,
        num_tries: u64,
    }
    let entries = client
        .rows::<Entry>(&format!(
            "SELECT type, new_part_name, last_exception, num_tries FROM system.replication_queue WHERE {} AND last_exception != '' LIMIT 1",
            table_condition(table)
        ))
        .await
        .ok()?;
    let e = entries.into_iter().next()?;
    let first_line = e
        .last_exception
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    Some(format!(
        "{} {} failed {} times: {first_line}",
        e.r#type, e.new_part_name, e.num_tries
    ))
}

/// What a table holds against what it should, per partition: the partitions short of
/// rows (`partition p: h of w rows`), or the first partition with more rows than it
/// should (doubled). With `whole`, partitions `want` does not name must be empty;
/// without, only `want`'s partitions are compared (a partition restore beside others).
pub fn compare(
    want: &BTreeMap<String, u64>,
    held: &BTreeMap<String, u64>,
    whole: bool,
) -> Result<Vec<String>, (String, u64, u64)> {
    let partitions: BTreeSet<&String> = match whole {
        true => want.keys().chain(held.keys()).collect(),
        false => want.keys().collect(),
    };
    let mut missing = Vec::new();
    for p in partitions {
        let (w, h) = (
            want.get(p).copied().unwrap_or(0),
            held.get(p).copied().unwrap_or(0),
        );
        if h > w {
            return Err((p.clone(), h, w));
        }
        if h < w {
            missing.push(format!("partition {p}: {h} of {w} rows"));
        }
    }
    Ok(missing)
}

/// What a table a restore attaches to holds already, against the rows it would attach.
#[derive(Debug, PartialEq, Eq)]
pub enum Held {
    /// Nothing: it is missing or empty.
    Nothing,
    /// The backup's rows, partition by partition: an earlier run of this restore attached
    /// them and was cut short (its coordination service lost while it waited).
    Backup,
    /// An earlier run was cut short between two attaches: `done` partitions hold exactly
    /// the backup's rows, `redo` ones hold parts this replica could not register in
    /// ZooKeeper (an attach whose commit was lost with the connection keeps its part
    /// locally) and no more rows than the backup's; the others are empty.
    Partly {
        /// Attached whole: left as they are.
        done: BTreeSet<String>,
        /// Detached, then attached again.
        redo: BTreeSet<String>,
    },
    /// Other rows: parts attached beside them would double them.
    Rows(u64),
}

/// Reads what a table holds ([`Held`]) from its rows per partition and the partitions
/// holding parts its replica has not registered in ZooKeeper: a partition holding
/// exactly the backup's rows for it, all registered, is taken as attached by an earlier
/// run of the restore (ClickHouse renames an attached part, so names cannot tell); any
/// other partition with rows makes the whole table [`Held::Rows`].
pub fn held_against(
    want: &BTreeMap<String, u64>,
    held: &BTreeMap<String, u64>,
    unregistered: &BTreeSet<String>,
) -> Held {
    let rows: u64 = held.values().sum();
    if rows == 0 {
        return Held::Nothing;
    }
    let (mut done, mut redo) = (BTreeSet::new(), BTreeSet::new());
    for (partition, &h) in held.iter().filter(|(_, &h)| h > 0) {
        let w = want.get(partition).copied().unwrap_or(0);
        if unregistered.contains(partition) && h <= w {
            redo.insert(partition.clone());
        } else if h == w {
            done.insert(partition.clone());
        } else {
            return Held::Rows(rows);
        }
    }
    match redo.is_empty() && done.len() == want.values().filter(|&&w| w > 0).count() {
        true => Held::Backup,
        false => Held::Partly { done, redo },
    }
}

/// The children of a ZooKeeper node, through the server's `system.zookeeper`; `what`
/// maps a refusal (`read db.table's ... in ZooKeeper`).
async fn zookeeper_children(
    client: &Client,
    path: &str,
    what: impl Fn(super::client::ClickHouseError) -> ApiError,
) -> ApiResult<BTreeSet<String>> {
    let sql = format!(
        "SELECT name FROM system.zookeeper WHERE path = {}",
        literal(path)
    );
    names(client, &sql, what).await
}

/// The `name` column of `sql`'s rows; `what` maps a refusal.
async fn names(
    client: &Client,
    sql: &str,
    what: impl Fn(super::client::ClickHouseError) -> ApiError,
) -> ApiResult<BTreeSet<String>> {
    #[derive(Deserialize)]
    struct Name {
        name: String,
    }
    Ok(client
        .rows::<Name>(sql)
        .await
        .map_err(what)?
        .into_iter()
        .map(|n| n.name)
        .collect())
}

/// The partitions of `table` holding an active part that this server's replica has not
/// registered in ZooKeeper, with those parts' names.
pub async fn unregistered(
    client: &Client,
    table: &Table,
) -> ApiResult<BTreeMap<String, Vec<String>>> {
    #[derive(Deserialize)]
    struct Part {
        name: String,
        partition_id: String,
    }
    let me = replica(client, table).await?;
    let what = |e: super::client::ClickHouseError| {
        failed(format!(
            "read {}'s parts in ZooKeeper: {}",
            table.shown(),
            strata_util::error_chain(&e)
        ))
    };
    let local = client
        .rows::<Part>(&format!(
            "SELECT name, partition_id FROM system.parts WHERE {} AND active",
            table_condition(table)
        ))
        .await
        .map_err(what)?;
    let path = format!(
        "{}/replicas/{}/parts",
        me.zookeeper_path.trim_end_matches('/'),
        me.replica_name
    );
    let registered = zookeeper_children(client, &path, what).await?;
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for part in local.into_iter().filter(|p| !registered.contains(&p.name)) {
        found.entry(part.partition_id).or_default().push(part.name);
    }
    Ok(found)
}

/// Waits until this server's replica of `table` has a live ZooKeeper session: a server
/// whose coordination service came back opens a new session for its tables only after a
/// while (up to a minute on 18.16, whose tables are not even read-only until then), and
/// an attach before it fails (`session has been expired`, `readonly mode`).
pub async fn writable(
    client: &Client,
    table: &Table,
    deadline: Instant,
    waited: Duration,
) -> ApiResult<()> {
    let mut progress = Progress::new();
    loop {
        let me = replica(client, table).await?;
        if me.is_readonly == 0 && me.is_session_expired == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(failed(format!(
                "this replica of {} stayed read-only (no ZooKeeper session) for {} ([nodes.clickhouse] restore_wait): is ZooKeeper up and named in the server's <zookeeper>?",
                table.shown(),
                humantime::format_duration(waited)
            )));
        }
        progress.say(deadline, || {
            format!(
                "waiting for this replica of {} to reach ZooKeeper (read-only until then)",
                table.shown()
            )
        });
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until this server's replica of `table` holds `expected` rows per partition
/// (none: whatever its replication brings, when it fetches from live replicas) with no
/// fetch left in its queue. Returns its rows. Rows beyond the expected ones fail at once:
/// they were doubled.
pub async fn replica_holds(
    client: &Client,
    table: &Table,
    expected: Option<&BTreeMap<String, u64>>,
    whole: bool,
    deadline: Instant,
    waited: Duration,
) -> ApiResult<u64> {
    let mut progress = Progress::new();
    loop {
        let replica = replica(client, table).await?;
        let held = rows_by_partition(client, table).await?;
        let total: u64 = match (expected, whole) {
            (Some(want), false) => want.keys().filter_map(|p| held.get(p)).sum(),
            _ => held.values().sum(),
        };
        let missing: Vec<String> = match expected {
            None => Vec::new(),
            Some(want) => compare(want, &held, whole).map_err(|(p, h, w)| {
                failed(format!(
                    "replica {} of {} holds {h} rows in partition {p}, the backup {w}: rows were doubled; drop the table (or the partition) on every replica before restoring it again",
                    replica.replica_name,
                    table.shown()
                ))
            })?,
        };
        if missing.is_empty() && replica.inserts_in_queue == 0 {
            return Ok(total);
        }
        if Instant::now() >= deadline {
            let mut why = Vec::new();
            if !missing.is_empty() {
                why.push(missing.join(", "));
            }
            if replica.inserts_in_queue > 0 {
                why.push(format!("{} fetches queued", replica.inserts_in_queue));
            }
            if replica.is_readonly != 0 {
                why.push("the replica is read-only (no ZooKeeper session)".into());
            }
            if let Some(error) = queue_error(client, table).await {
                why.push(error);
            }
            return Err(failed(format!(
                "replica {} of {} did not converge within {} ([nodes.clickhouse] restore_wait): it holds {total} rows; {}",
                replica.replica_name,
                table.shown(),
                humantime::format_duration(waited),
                why.join("; ")
            )));
        }
        progress.say(deadline, || {
            format!(
                "waiting for replica {} of {}: {total} rows, {} fetches queued",
                replica.replica_name,
                table.shown(),
                replica.inserts_in_queue
            )
        });
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until at least `replicas` replicas of `table` (this one among them) list every
/// part this server holds of it in ZooKeeper: the writer's merges stay stopped until then.
pub async fn replicas_hold_parts(
    client: &Client,
    table: &Table,
    replicas: usize,
    deadline: Instant,
    waited: Duration,
) -> ApiResult<()> {
    let me = replica(client, table).await?;
    let what = |e: super::client::ClickHouseError| {
        failed(format!(
            "read {}'s replicas in ZooKeeper: {}",
            table.shown(),
            strata_util::error_chain(&e)
        ))
    };
    let active = format!(
        "SELECT name FROM system.parts WHERE {} AND active",
        table_condition(table)
    );
    let mine = names(client, &active, what).await?;
    let root = format!("{}/replicas", me.zookeeper_path.trim_end_matches('/'));
    let mut progress = Progress::new();
    loop {
        let names = zookeeper_children(client, &root, what).await?;
        let mut holding = Vec::new();
        let mut lacking = Vec::new();
        for replica in &names {
            let parts =
                zookeeper_children(client, &format!("{root}/{replica}/parts"), what).await?;
            match mine.difference(&parts).count() {
                0 => holding.push(replica.clone()),
                n => lacking.push(format!("{replica} lacks {n} of {}", mine.len())),
            }
        }
        if holding.len() >= replicas {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(failed(format!(
                "{} reached {} of its {replicas} replicas within {} ([nodes.clickhouse] restore_wait): {}",
                table.shown(),
                holding.len(),
                humantime::format_duration(waited),
                match lacking.is_empty() {
                    true => "the others have not created the table".to_string(),
                    false => lacking.join(", "),
                }
            )));
        }
        progress.say(deadline, || {
            format!(
                "waiting for the replicas of {} to hold its parts: {} of {replicas}",
                table.shown(),
                holding.len()
            )
        });
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(p, r)| (p.to_string(), *r)).collect()
    }

    #[test]
    fn a_table_is_read_partition_by_partition_against_the_backup() {
        let want = rows(&[("202401", 10), ("202402", 20), ("202403", 30)]);
        let none = BTreeSet::new();
        let held = |pairs: &[(&str, u64)]| held_against(&want, &rows(pairs), &none);
        assert_eq!(held(&[]), Held::Nothing);
        assert_eq!(held(&[("202401", 0)]), Held::Nothing);
        assert_eq!(held_against(&want, &want, &none), Held::Backup);
        // Cut short between two attaches: the partitions attached are whole.
        assert_eq!(
            held(&[("202401", 10), ("202402", 20)]),
            Held::Partly {
                done: ["202401".to_string(), "202402".to_string()].into(),
                redo: BTreeSet::new()
            }
        );
        // A partition short of rows, one with more, or one the backup lacks: other rows.
        assert_eq!(held(&[("202401", 10), ("202402", 19)]), Held::Rows(29));
        assert_eq!(held(&[("202401", 11)]), Held::Rows(11));
        assert_eq!(held(&[("202401", 10), ("202412", 5)]), Held::Rows(15));
    }

    #[test]
    fn a_partition_whose_part_zookeeper_never_registered_is_attached_again() {
        let want = rows(&[("202401", 10), ("202402", 20)]);
        let lost: BTreeSet<String> = ["202402".to_string()].into();
        // Its rows counted locally, unknown to the other replicas: not done, even whole.
        for rows_held in [20, 7] {
            assert_eq!(
                held_against(
                    &want,
                    &rows(&[("202401", 10), ("202402", rows_held)]),
                    &lost
                ),
                Held::Partly {
                    done: ["202401".to_string()].into(),
                    redo: lost.clone()
                }
            );
        }
        // More rows than the backup's there: rows of another origin, refused.
        assert_eq!(
            held_against(&want, &rows(&[("202402", 21)]), &lost),
            Held::Rows(21)
        );
    }
}
