//! The rollup table's conflict key, checked before anything is written into it.
//!
//! A rollup writes with `INSERT ... ON CONFLICT (time, group-by ...) DO UPDATE`, and a run
//! recomputes the buckets of its lookback, so each (bucket, series) must be one row that
//! the upsert finds again. That takes a unique index on exactly those columns, without a
//! predicate or expressions and not deferrable (`ON CONFLICT` refuses a deferrable
//! constraint's index), and a series whose identity holds a NULL must still collide
//! with itself: a plain unique index treats NULLs as distinct, so every run would add the
//! bucket of such a series again. Either each group-by column is `NOT NULL`, or the index
//! is `NULLS NOT DISTINCT` (PostgreSQL 15). Anything else is refused, at `tables add` and
//! `edit` and again when a run plans the rollup.

use crate::error::{TablesError, TablesResult};
use crate::rollup::Rollup;
use strata_pgclient::Client;

/// One unique index of the rollup table.
struct UniqueIndex {
    name: String,
    columns: Vec<String>,
    nulls_not_distinct: bool,
}

/// Checks that `rollup.into` has a sound conflict key for a rollup on time column `column`.
pub async fn check(client: &Client, rollup: &Rollup, column: &str) -> TablesResult<()> {
    let target = &rollup.into;
    let oid: u32 = client
        .query_opt(
            "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&target.schema, &target.name],
        )
        .await
        .map_err(|e| TablesError::db(format!("looking up table {target}"), &e))?
        .ok_or_else(|| TablesError::UnknownTable(target.clone()))?
        .get(0);
    // `indnullsnotdistinct` is read through to_jsonb so that servers before 15 (which lack
    // it, and whose NULLs are always distinct) answer false instead of failing.
    let rows = client
        .query(
            "SELECT i.indexrelid::regclass::text,
                    ARRAY(SELECT a.attname::text FROM generate_series(0, i.indnkeyatts - 1) k
                          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[k]),
                    i.indnkeyatts::int,
                    coalesce((to_jsonb(i) ->> 'indnullsnotdistinct')::boolean, false)
             FROM pg_index i
             WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid AND i.indimmediate
               AND i.indpred IS NULL AND i.indexprs IS NULL",
            &[&oid],
        )
        .await
        .map_err(|e| TablesError::db(format!("reading the unique indexes of {target}"), &e))?;
    let indexes: Vec<UniqueIndex> = rows
        .iter()
        .filter(|r| {
            let columns: Vec<String> = r.get(1);
            columns.len() == r.get::<_, i32>(2) as usize
        })
        .map(|r| UniqueIndex {
            name: r.get(0),
            columns: r.get(1),
            nulls_not_distinct: r.get(3),
        })
        .collect();
    let mut key: Vec<&str> = vec![column];
    key.extend(rollup.group_by.iter().map(String::as_str));
    let matching: Vec<&UniqueIndex> = indexes
        .iter()
        .filter(|i| {
            i.columns.len() == key.len() && key.iter().all(|k| i.columns.iter().any(|c| c == k))
        })
        .collect();
    let quoted: Vec<String> = key
        .iter()
        .map(|k| strata_pgclient::quote_ident(k))
        .collect();
    if matching.is_empty() {
        return Err(TablesError::Unsupported(format!(
            "rollup table {target} has no unique index on exactly ({}) (not deferrable, without a WHERE or expressions), which the rollup's ON CONFLICT needs to find a bucket again: CREATE UNIQUE INDEX ON {} ({}){}",
            key.join(", "),
            target.quoted(),
            quoted.join(", "),
            if rollup.group_by.is_empty() { "" } else { " NULLS NOT DISTINCT" }
        )));
    }
    if matching.iter().any(|i| i.nulls_not_distinct) {
        return Ok(());
    }
    let nullable: Vec<String> = client
        .query(
            "SELECT attname::text FROM pg_attribute
             WHERE attrelid = $1 AND attname::text = ANY($2::text[]) AND NOT attnotnull AND NOT attisdropped
             ORDER BY attnum",
            &[&oid, &rollup.group_by],
        )
        .await
        .map_err(|e| TablesError::db(format!("reading the columns of {target}"), &e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if nullable.is_empty() {
        return Ok(());
    }
    Err(TablesError::Unsupported(format!(
        "rollup table {target}: group-by column(s) {} can be NULL and unique index {} treats NULLs as distinct, so every run would add the buckets of a series with a NULL again: make them NOT NULL, or recreate the index as CREATE UNIQUE INDEX ON {} ({}) NULLS NOT DISTINCT",
        nullable.join(", "),
        matching[0].name,
        target.quoted(),
        quoted.join(", ")
    )))
}
