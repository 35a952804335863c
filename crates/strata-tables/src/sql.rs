//! The statements the engine runs, built in one place from quoted identifiers. Values
//! (times, counts) never appear here: they are bound parameters at the call site. Pure
//! functions, so the exact SQL is unit-tested.

use crate::name::TableName;
use strata_pgclient::quote_ident;

/// `ALTER TABLE parent DETACH PARTITION part`. Not `CONCURRENTLY`: that cannot run in the
/// transaction that also drops (or moves) the partition, and that transaction is what makes
/// each step all-or-nothing, so an interrupted run never leaves a detached orphan.
pub fn detach(parent: &TableName, partition: &TableName) -> String {
    format!(
        "ALTER TABLE {} DETACH PARTITION {}",
        parent.quoted(),
        partition.quoted()
    )
}

/// `DROP TABLE part`.
pub fn drop_table(table: &TableName) -> String {
    format!("DROP TABLE {}", table.quoted())
}

/// `CREATE SCHEMA IF NOT EXISTS schema`.
pub fn create_schema(schema: &str) -> String {
    format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(schema))
}

/// `ALTER TABLE t SET SCHEMA schema`.
pub fn set_schema(table: &TableName, schema: &str) -> String {
    format!(
        "ALTER TABLE {} SET SCHEMA {}",
        table.quoted(),
        quote_ident(schema)
    )
}

/// `ALTER TABLE t SET TABLESPACE ts`.
pub fn set_tablespace(table: &TableName, tablespace: &str) -> String {
    format!(
        "ALTER TABLE {} SET TABLESPACE {}",
        table.quoted(),
        quote_ident(tablespace)
    )
}

/// `ALTER INDEX i SET TABLESPACE ts` (an index does not follow its table).
pub fn set_index_tablespace(index: &TableName, tablespace: &str) -> String {
    format!(
        "ALTER INDEX {} SET TABLESPACE {}",
        index.quoted(),
        quote_ident(tablespace)
    )
}

/// `LOCK TABLE ONLY parent, ONLY part IN ACCESS EXCLUSIVE MODE`: the parent first, in
/// the order DETACH takes them, so the engine never deadlocks against itself; `ONLY`, as a
/// lock on the parent would otherwise take every partition too, and wait for readers of
/// partitions this step does not touch.
pub fn lock_for_removal(parent: &TableName, partition: &TableName) -> String {
    format!(
        "LOCK TABLE ONLY {}, ONLY {} IN ACCESS EXCLUSIVE MODE",
        parent.quoted(),
        partition.quoted()
    )
}

/// `LOCK TABLE ONLY part IN SHARE MODE`: readers go on, writers wait, so an archive's
/// export and the drop that follows it see the same rows.
pub fn lock_for_export(partition: &TableName) -> String {
    format!("LOCK TABLE ONLY {} IN SHARE MODE", partition.quoted())
}

/// One batch of a row delete: at most `batch` rows whose `column` is before `$1` (text,
/// cast to the column's type by comparison). Batches keep locks and WAL bursts short.
/// `ONLY` on both sides: a ctid names a row of one table only, and the same ctid exists in
/// every table that inherits from this one (such tables are refused before this, see
/// [`crate::plan`]; `ONLY` keeps a delete to this table's own rows whatever happens).
pub fn delete_batch(table: &TableName, column: &str, batch: u32) -> String {
    let t = table.quoted();
    let c = quote_ident(column);
    format!(
        "DELETE FROM ONLY {t} WHERE ctid = ANY(ARRAY(SELECT ctid FROM ONLY {t} WHERE {c} < $1::text::timestamptz LIMIT {batch}))"
    )
}

/// `COPY (SELECT cols FROM t) TO STDOUT (FORMAT csv, HEADER)`.
pub fn copy_out(table: &TableName, columns: &[String]) -> String {
    format!(
        "COPY (SELECT {} FROM {}) TO STDOUT (FORMAT csv, HEADER)",
        column_list(columns),
        table.quoted()
    )
}

/// `COPY t (cols) FROM STDIN (FORMAT csv, HEADER)`.
pub fn copy_in(table: &TableName, columns: &[String]) -> String {
    format!(
        "COPY {} ({}) FROM STDIN (FORMAT csv, HEADER)",
        table.quoted(),
        column_list(columns)
    )
}

/// `COPY t (cols) FROM STDIN (FORMAT text)`: how a Parquet archive is loaded.
pub fn copy_in_text(table: &TableName, columns: &[String]) -> String {
    format!(
        "COPY {} ({}) FROM STDIN (FORMAT text)",
        table.quoted(),
        column_list(columns)
    )
}

/// Settings of an export's transaction that make PostgreSQL's text output of values
/// exact and independent of the server's configuration: floats in the shortest form that
/// reads back to the same value (a server with `extra_float_digits = 0` would round them),
/// dates in ISO form (the field order of `DateStyle`, which only input uses, is kept), and
/// bytea in hex.
pub const EXPORT_SETTINGS: &str =
    "SET LOCAL extra_float_digits = 1; SET LOCAL DateStyle = 'ISO'; SET LOCAL bytea_output = 'hex'";

fn column_list(columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_quote_every_identifier() {
        let parent = TableName::new("metrics", "raw");
        let part = TableName::new("metrics", "raw_2025\"01; DROP TABLE x");
        assert_eq!(
            detach(&parent, &part),
            "ALTER TABLE \"metrics\".\"raw\" DETACH PARTITION \"metrics\".\"raw_2025\"\"01; DROP TABLE x\""
        );
        assert_eq!(drop_table(&parent), "DROP TABLE \"metrics\".\"raw\"");
        assert_eq!(
            set_tablespace(&parent, "cold\" x"),
            "ALTER TABLE \"metrics\".\"raw\" SET TABLESPACE \"cold\"\" x\""
        );
        assert_eq!(
            set_schema(&parent, "archive"),
            "ALTER TABLE \"metrics\".\"raw\" SET SCHEMA \"archive\""
        );
        assert_eq!(
            delete_batch(&parent, "t s", 500),
            "DELETE FROM ONLY \"metrics\".\"raw\" WHERE ctid = ANY(ARRAY(SELECT ctid FROM ONLY \"metrics\".\"raw\" WHERE \"t s\" < $1::text::timestamptz LIMIT 500))"
        );
        assert_eq!(
            copy_out(&parent, &["ts".into(), "vä\"l".into()]),
            "COPY (SELECT \"ts\", \"vä\"\"l\" FROM \"metrics\".\"raw\") TO STDOUT (FORMAT csv, HEADER)"
        );
        assert_eq!(
            copy_in(&parent, &["ts".into()]),
            "COPY \"metrics\".\"raw\" (\"ts\") FROM STDIN (FORMAT csv, HEADER)"
        );
        assert_eq!(
            lock_for_removal(&parent, &part),
            "LOCK TABLE ONLY \"metrics\".\"raw\", ONLY \"metrics\".\"raw_2025\"\"01; DROP TABLE x\" IN ACCESS EXCLUSIVE MODE"
        );
    }
}
