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
use strata_agent::api::{ApiError, ErrorCode};
use strata_agent::service::ApiResult;

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
}

async fn replica(client: &Client, table: &Table) -> ApiResult<Replica> {
    let rows = client
        .rows::<Replica>(&format!(
            "SELECT zookeeper_path, replica_name, inserts_in_queue, is_readonly FROM system.replicas WHERE {}",
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
    #[derive(Deserialize)]
    struct Name {
        name: String,
    }
    let me = replica(client, table).await?;
    let what = |e: super::client::ClickHouseError| {
        failed(format!(
            "read {}'s replicas in ZooKeeper: {}",
            table.shown(),
            strata_util::error_chain(&e)
        ))
    };
    let mine: BTreeSet<String> = client
        .rows::<Name>(&format!(
            "SELECT name FROM system.parts WHERE {} AND active",
            table_condition(table)
        ))
        .await
        .map_err(what)?
        .into_iter()
        .map(|n| n.name)
        .collect();
    let root = format!("{}/replicas", me.zookeeper_path.trim_end_matches('/'));
    let mut progress = Progress::new();
    loop {
        let names = client
            .rows::<Name>(&format!(
                "SELECT name FROM system.zookeeper WHERE path = {}",
                literal(&root)
            ))
            .await
            .map_err(what)?;
        let mut holding = Vec::new();
        let mut lacking = Vec::new();
        for replica in &names {
            let parts: BTreeSet<String> = client
                .rows::<Name>(&format!(
                    "SELECT name FROM system.zookeeper WHERE path = {}",
                    literal(&format!("{root}/{}/parts", replica.name))
                ))
                .await
                .map_err(what)?
                .into_iter()
                .map(|n| n.name)
                .collect();
            match mine.difference(&parts).count() {
                0 => holding.push(replica.name.clone()),
                n => lacking.push(format!("{} lacks {n} of {}", replica.name, mine.len())),
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
