//! `compare` and `repair` of a table between the provider and this node, at a sync point.
//! With the root as provider, the provider table is locked in SHARE mode (writers wait), a
//! tick is made, this node's worker applies up to it, both sides take a snapshot, the lock
//! goes. With a branch as provider, the branch's worker is paused instead (only it writes
//! there), this node catches up to the branch's tick, both sides take a snapshot, the
//! branch resumes. Then
//! `compare` checks count and a hash sum; `repair` streams both sides ordered by key and
//! merge-diffs them row by row into fix statements, so no table is ever held in memory and
//! no external sort runs (the server sorts, the client streams).

use crate::admin;
use crate::config::NodeConfig;
use crate::error::{LondisteError, Result};
use crate::names;
use crate::node;
use crate::sqlgen;
use futures::{pin_mut, TryStreamExt};
use serde::Serialize;
use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use strata_pgclient::{quote_ident, Client};
use strata_pgq::event::{Format, Op, RowChange};

/// What the comparison of one table found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TableDiff {
    /// The table, fully qualified.
    pub table: String,
    /// Rows the provider has at the sync point.
    pub provider_rows: i64,
    /// Rows this node has at the same point.
    pub local_rows: i64,
    /// Whether count and checksum (compare) or every row (repair) agree.
    pub equal: bool,
    /// Rows missing here (repair only).
    pub missing: u64,
    /// Rows here that the provider does not have (repair only).
    pub extra: u64,
    /// Rows with other values here (repair only).
    pub changed: u64,
    /// Statements that make this node's table equal to the provider's (repair only).
    #[serde(skip)]
    pub fix_sql: Vec<String>,
}

/// The two snapshot connections of one sync point.
struct SyncPoint {
    provider: Client,
    local: Client,
}

/// Sets the sync point for `table` (see the module doc); `timeout` bounds the wait for
/// the tick and for the worker.
async fn sync_point(
    cf: &NodeConfig,
    provider_dsn: &str,
    worker: &str,
    table: &str,
    timeout: Duration,
) -> Result<SyncPoint> {
    let queue = cf.queue_name.as_str();
    let lock = admin::connect(provider_dsn, "provider").await?;
    let provider = admin::connect(provider_dsn, "provider").await?;
    let local = admin::connect_local(cf).await?;
    let fail = |what: &str, e| LondisteError::sql(what.to_string(), e);
    lock.batch_execute(&format!(
        "begin; lock table {} in share mode",
        names::quote_fq(table)
    ))
    .await
    .map_err(|e| fail("locking the provider table", e))?;
    let before: i64 = provider
        .query_one(
            "select coalesce(last_tick_id, 0) from pgq.get_queue_info($1)",
            &[&queue],
        )
        .await
        .map_err(|e| fail("reading the provider's tick", e))?
        .get(0);
    let deadline = Instant::now() + timeout;
    // The ticker (pgqd or strata pgq ticker) makes the tick; force_tick makes it due.
    let tick = loop {
        provider
            .execute("select pgq.force_tick($1)", &[&queue])
            .await
            .map_err(|e| fail("forcing a tick", e))?;
        let now: i64 = provider
            .query_one(
                "select coalesce(last_tick_id, 0) from pgq.get_queue_info($1)",
                &[&queue],
            )
            .await
            .map_err(|e| fail("reading the provider's tick", e))?
            .get(0);
        if now > before {
            break now;
        }
        if Instant::now() > deadline {
            return Err(LondisteError::State(format!(
                "no tick on the provider within {} s: is a ticker running?",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    loop {
        let done = node::consumer_state(&local, queue, worker)
            .await?
            .and_then(|s| s.completed_tick)
            .unwrap_or(0);
        if done >= tick {
            break;
        }
        if Instant::now() > deadline {
            return Err(LondisteError::State(format!(
                "the worker did not reach tick {tick} within {} s (at {done}): is it running?",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (c, what) in [(&provider, "provider"), (&local, "local")] {
        c.batch_execute("begin isolation level repeatable read read only; select 1")
            .await
            .map_err(|e| fail(&format!("taking the {what} snapshot"), e))?;
    }
    lock.batch_execute("commit")
        .await
        .map_err(|e| fail("releasing the lock", e))?;
    Ok(SyncPoint { provider, local })
}

/// The sync point when the provider is a branch: its worker is paused (and acknowledges),
/// so its tables and queue stop at its completed tick T; this node's worker applies up to
/// T; both sides take a snapshot; the provider's worker resumes (unless it was paused
/// before). No table lock is needed: nothing but the paused worker writes there.
async fn sync_point_branch(
    cf: &NodeConfig,
    provider_dsn: &str,
    provider_worker: &str,
    timeout: Duration,
) -> Result<SyncPoint> {
    let queue = cf.queue_name.as_str();
    let control = admin::connect(provider_dsn, "provider").await?;
    let provider = admin::connect(provider_dsn, "provider").await?;
    let local = admin::connect_local(cf).await?;
    let was_paused = node::consumer_state(&control, queue, provider_worker)
        .await?
        .is_some_and(|s| s.paused);
    crate::takeover::set_paused_and_wait(
        &control,
        queue,
        provider_worker,
        true,
        "the provider",
        timeout,
    )
    .await?;
    let taken = async {
        let tick = node::consumer_state(&control, queue, provider_worker)
            .await?
            .and_then(|s| s.completed_tick)
            .ok_or_else(|| LondisteError::State("the provider's worker has no tick".into()))?;
        crate::cascade::wait_for_tick(&local, queue, "this node", tick, timeout).await?;
        for (c, what) in [(&provider, "provider"), (&local, "local")] {
            c.batch_execute("begin isolation level repeatable read read only; select 1")
                .await
                .map_err(|e| LondisteError::sql(format!("taking the {what} snapshot"), e))?;
        }
        Ok::<_, LondisteError>(())
    }
    .await;
    if !was_paused {
        node::set_paused(&control, queue, provider_worker, false).await?;
    }
    taken?;
    Ok(SyncPoint { provider, local })
}

async fn columns(client: &Client, table: &str) -> Result<Vec<String>> {
    let (schema, name) = names::split(table);
    let rows = client
        .query(
            "select a.attname from pg_catalog.pg_attribute a join pg_catalog.pg_class c on c.oid = a.attrelid \
             join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
             where n.nspname = $1 and c.relname = $2 and a.attnum > 0 and not a.attisdropped order by a.attnum",
            &[&schema, &name],
        )
        .await
        .map_err(|e| LondisteError::sql(format!("reading the columns of {table}"), e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

async fn key_columns(client: &Client, table: &str) -> Result<Vec<String>> {
    let (schema, name) = names::split(table);
    let rows = client
        .query(
            "select a.attname from pg_catalog.pg_index i join pg_catalog.pg_class c on c.oid = i.indrelid \
             join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
             join lateral unnest(i.indkey) with ordinality k(attnum, ord) on true \
             join pg_catalog.pg_attribute a on a.attrelid = c.oid and a.attnum = k.attnum \
             where n.nspname = $1 and c.relname = $2 and i.indisprimary order by k.ord",
            &[&schema, &name],
        )
        .await
        .map_err(|e| LondisteError::sql(format!("reading the key of {table}"), e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Compares (or with `repair`, diffs row by row) each local table named by `args` (all
/// local tables when empty) against the provider.
pub async fn compare(
    cf: &NodeConfig,
    args: &[String],
    repair: bool,
    timeout: Duration,
) -> Result<Vec<TableDiff>> {
    let db = admin::connect_local(cf).await?;
    let info = admin::require_node(&db, cf).await?;
    if info.is_root() {
        return Err(LondisteError::BadInput(
            "compare runs on a subscriber: the root has nothing to compare with".into(),
        ));
    }
    let provider_dsn = info
        .provider_location
        .clone()
        .ok_or_else(|| LondisteError::State("the node has no provider location".into()))?;
    let pinfo = node::node_info(
        &admin::connect(&provider_dsn, "provider").await?,
        &cf.queue_name,
    )
    .await?;
    // A branch provider's tables only change by replay: pausing its worker freezes them.
    let provider_worker = (!pinfo.is_root()).then(|| pinfo.worker_name.clone().unwrap_or_default());
    let worker = info
        .worker_name
        .clone()
        .unwrap_or_else(|| cf.job_name.clone());
    let tables = node::tables(&db, &cf.queue_name).await?;
    let local: Vec<String> = tables
        .iter()
        .filter(|t| t.local)
        .map(|t| t.table_name.clone())
        .collect();
    let wanted = if args.is_empty() {
        local
    } else {
        names::expand(args, &local)?
    };
    let mut out = Vec::new();
    for table in wanted {
        let t = tables
            .iter()
            .find(|t| t.table_name == table)
            .expect("listed");
        let dest = t.dest().to_string();
        let sp = match &provider_worker {
            None => sync_point(cf, &provider_dsn, &worker, &table, timeout).await?,
            Some(pw) => sync_point_branch(cf, &provider_dsn, pw, timeout).await?,
        };
        let pcols = columns(&sp.provider, &table).await?;
        let cols: Vec<String> = columns(&sp.local, &dest)
            .await?
            .into_iter()
            .filter(|c| pcols.contains(c))
            .collect();
        if cols.is_empty() {
            return Err(LondisteError::State(format!(
                "{table}: no columns in common"
            )));
        }
        let diff = if repair {
            let key = key_columns(&sp.provider, &table).await?;
            if key.is_empty() || !key.iter().all(|k| cols.contains(k)) {
                return Err(LondisteError::State(format!(
                    "{table}: repair needs a primary key present on both sides"
                )));
            }
            merge_diff(&sp, &table, &dest, &cols, &key).await?
        } else {
            checksum_diff(&sp, &table, &dest, &cols).await?
        };
        for c in [&sp.provider, &sp.local] {
            let _ = c.batch_execute("commit").await;
        }
        out.push(diff);
    }
    Ok(out)
}

async fn checksum(client: &Client, table: &str, cols: &[String]) -> Result<(i64, String)> {
    let list = cols
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let row = client
        .query_one(
            &format!(
                "select count(*), coalesce(sum(hashtextextended(row({list})::text, 0)::numeric), 0)::text from only {} t",
                names::quote_fq(table)
            ),
            &[],
        )
        .await
        .map_err(|e| LondisteError::sql(format!("checksumming {table}"), e))?;
    Ok((row.get(0), row.get(1)))
}

async fn checksum_diff(
    sp: &SyncPoint,
    table: &str,
    dest: &str,
    cols: &[String],
) -> Result<TableDiff> {
    let (pn, ps) = checksum(&sp.provider, table, cols).await?;
    let (ln, ls) = checksum(&sp.local, dest, cols).await?;
    Ok(TableDiff {
        table: table.to_string(),
        provider_rows: pn,
        local_rows: ln,
        equal: pn == ln && ps == ls,
        ..TableDiff::default()
    })
}

/// A row as text values: the key first, then every compared column.
type Row = Vec<Option<String>>;

/// Orders two rows by their key texts (the servers sort by `key::text COLLATE "C"`, which
/// is byte order, the order of Rust strings).
fn key_order(a: &Row, b: &Row, nkey: usize) -> Ordering {
    a[..nkey].cmp(&b[..nkey])
}

async fn merge_diff(
    sp: &SyncPoint,
    table: &str,
    dest: &str,
    cols: &[String],
    key: &[String],
) -> Result<TableDiff> {
    let select = |t: &str| {
        let keys = key
            .iter()
            .map(|k| format!("{}::text", quote_ident(k)))
            .collect::<Vec<_>>();
        let vals = cols
            .iter()
            .map(|c| format!("{}::text", quote_ident(c)))
            .collect::<Vec<_>>();
        let order = key
            .iter()
            .map(|k| format!("{}::text collate \"C\"", quote_ident(k)))
            .collect::<Vec<_>>();
        format!(
            "select {}, {} from only {} order by {}",
            keys.join(", "),
            vals.join(", "),
            names::quote_fq(t),
            order.join(", ")
        )
    };
    let params: Vec<String> = Vec::new();
    let pstream = sp
        .provider
        .query_raw(&select(table), &params)
        .await
        .map_err(|e| LondisteError::sql(format!("reading {table} on the provider"), e))?;
    let lstream = sp
        .local
        .query_raw(&select(dest), &params)
        .await
        .map_err(|e| LondisteError::sql(format!("reading {dest} here"), e))?;
    pin_mut!(pstream);
    pin_mut!(lstream);
    let width = key.len() + cols.len();
    let to_row = |r: tokio_postgres::Row| -> Row {
        (0..width).map(|i| r.get::<_, Option<String>>(i)).collect()
    };
    let mut diff = TableDiff {
        table: table.to_string(),
        ..TableDiff::default()
    };
    let nkey = key.len();
    let mut p = pstream
        .try_next()
        .await
        .map_err(|e| LondisteError::sql("reading the provider", e))?
        .map(to_row);
    let mut l = lstream
        .try_next()
        .await
        .map_err(|e| LondisteError::sql("reading here", e))?
        .map(to_row);
    let change = |op: Op, row: &Row| -> RowChange {
        let pairs: Vec<(String, Option<String>)> = cols
            .iter()
            .cloned()
            .zip(row[nkey..].iter().cloned())
            .collect();
        RowChange {
            op,
            table: dest.to_string(),
            format: Format::Urlenc,
            pkey: key.to_vec(),
            key: key
                .iter()
                .cloned()
                .zip(row[..nkey].iter().cloned())
                .collect(),
            row: pairs,
        }
    };
    loop {
        let step = match (&p, &l) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(a), Some(b)) => key_order(a, b, nkey),
        };
        match step {
            Ordering::Less => {
                let row = p.take().expect("present");
                diff.missing += 1;
                diff.provider_rows += 1;
                push(&mut diff, &change(Op::Insert, &row), dest)?;
                p = pstream
                    .try_next()
                    .await
                    .map_err(|e| LondisteError::sql("reading the provider", e))?
                    .map(to_row);
            }
            Ordering::Greater => {
                let row = l.take().expect("present");
                diff.extra += 1;
                diff.local_rows += 1;
                push(&mut diff, &change(Op::Delete, &row), dest)?;
                l = lstream
                    .try_next()
                    .await
                    .map_err(|e| LondisteError::sql("reading here", e))?
                    .map(to_row);
            }
            Ordering::Equal => {
                let (a, b) = (p.take().expect("present"), l.take().expect("present"));
                diff.provider_rows += 1;
                diff.local_rows += 1;
                if a != b {
                    diff.changed += 1;
                    push(&mut diff, &change(Op::Update, &a), dest)?;
                }
                p = pstream
                    .try_next()
                    .await
                    .map_err(|e| LondisteError::sql("reading the provider", e))?
                    .map(to_row);
                l = lstream
                    .try_next()
                    .await
                    .map_err(|e| LondisteError::sql("reading here", e))?
                    .map(to_row);
            }
        }
    }
    diff.equal = diff.missing == 0 && diff.extra == 0 && diff.changed == 0;
    Ok(diff)
}

fn push(diff: &mut TableDiff, change: &RowChange, dest: &str) -> Result<()> {
    if let Some(sql) =
        sqlgen::statement(change, dest).map_err(|e| LondisteError::State(e.to_string()))?
    {
        diff.fix_sql.push(sql);
    }
    Ok(())
}

/// Applies fix statements on this node in one transaction, as the worker would (replica
/// role: the node's own triggers do not fire, and a leaf's deny trigger lets it write).
pub async fn apply_fix(cf: &NodeConfig, sql: &[String]) -> Result<()> {
    let db = admin::connect_local(cf).await?;
    let mut text = String::from("begin; set local session_replication_role = replica; set local standard_conforming_strings = on;\n");
    for s in sql {
        text.push_str(s);
        text.push_str(";\n");
    }
    text.push_str("commit;");
    if let Err(e) = db.batch_execute(&text).await {
        let _ = db.batch_execute("rollback").await;
        return Err(LondisteError::sql("applying the fix", e));
    }
    Ok(())
}

/// The file `repair` writes a table's fix statements to, in the working directory.
pub fn fix_file(table: &str) -> PathBuf {
    PathBuf::from(format!("fix.{table}.sql"))
}

/// What `repair` found and did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Repaired {
    /// Each table's diff (as found, before any fix was applied).
    pub diffs: Vec<TableDiff>,
    /// Whether a table still differs: one whose fix was not applied.
    pub differences_remain: bool,
}

/// `repair`: diffs each table like [`compare`] with `repair`; for each table with fix
/// statements writes them to [`fix_file`] and with `apply` runs them on this node
/// ([`apply_fix`]). `done` is told of each table as it is finished (its diff, and the fix
/// file when one was written), so a failure part way leaves a record of what was done.
pub async fn repair(
    cf: &NodeConfig,
    args: &[String],
    apply: bool,
    timeout: Duration,
    mut done: impl FnMut(&TableDiff, Option<&Path>),
) -> Result<Repaired> {
    let diffs = compare(cf, args, true, timeout).await?;
    let mut differences_remain = false;
    for d in &diffs {
        if d.fix_sql.is_empty() {
            differences_remain |= !d.equal;
            done(d, None);
            continue;
        }
        let path = fix_file(&d.table);
        let mut text = d.fix_sql.join(";\n");
        text.push_str(";\n");
        std::fs::write(&path, text).map_err(|source| LondisteError::Io {
            path: path.display().to_string(),
            source,
        })?;
        if apply {
            apply_fix(cf, &d.fix_sql).await?;
        } else {
            differences_remain |= !d.equal;
        }
        done(d, Some(&path));
    }
    Ok(Repaired {
        diffs,
        differences_remain,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_order_bytewise_like_collate_c() {
        let r = |k: &str| vec![Some(k.to_string()), None];
        assert_eq!(key_order(&r("10"), &r("9"), 1), Ordering::Less);
        assert_eq!(key_order(&r("B"), &r("a"), 1), Ordering::Less);
        assert_eq!(key_order(&r("x"), &r("x"), 1), Ordering::Equal);
    }
}
