//! What a table is made of: its columns, and for a range-partitioned table its partitions
//! with their bounds, sizes and tablespaces (from `pg_inherits` and `relpartbound`). A
//! pg_partman set is a native partitioned table too; its configuration is read when the
//! extension is installed, so a plan can warn when partman's own retention also acts.

use crate::bound::{parse_bound, Bound, Lower, Upper};
use crate::error::{TablesError, TablesResult};
use crate::name::TableName;
use serde::Serialize;
use strata_pgclient::Client;

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Column {
    /// The column's name.
    pub name: String,
    /// The type as `format_type` prints it (`timestamp with time zone`).
    #[serde(rename = "type")]
    pub type_name: String,
}

/// One partition of a partitioned table.
#[derive(Debug, Clone, Serialize)]
pub struct Partition {
    /// The partition's name.
    pub name: TableName,
    /// The bound as PostgreSQL prints it.
    pub bound_text: String,
    /// The bound, parsed.
    #[serde(skip)]
    pub bound: Bound,
    /// `pg_total_relation_size`: table, indexes and TOAST.
    pub bytes: i64,
    /// Its tablespace, the database's default one by name when the partition has none of
    /// its own (so a move to the default tablespace is seen as done once done).
    pub tablespace: Option<String>,
}

impl Partition {
    /// The instant before which all its rows lie, when it has one.
    pub fn upper(&self) -> Option<Upper> {
        match self.bound {
            Bound::Range { upper, .. } => Some(upper),
            Bound::Default => None,
        }
    }

    /// Whether it is a period of time that has begun by `now`: a range partition whose
    /// lower bound is at or before `now` and whose upper bound is a time (not `MAXVALUE` or
    /// `'infinity'`). These are what the floor of a policy counts: not the default
    /// partition, not a catch-all, not a partition made ahead for the future (pg_partman's
    /// premake).
    pub fn has_begun(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        match self.bound {
            Bound::Range {
                lower,
                upper: Upper::Before(_),
            } => match lower {
                Lower::Unbounded => true,
                Lower::From(start) => start <= now,
            },
            _ => false,
        }
    }
}

/// A table as retention sees it.
#[derive(Debug, Clone, Serialize)]
pub struct TableShape {
    /// The table's name.
    pub table: TableName,
    /// The table's `pg_class` oid.
    pub oid: u32,
    /// The table's columns, in order.
    pub columns: Vec<Column>,
    /// The range partitions, oldest upper bound first (`None` for an unpartitioned table).
    pub partitions: Option<Vec<Partition>>,
    /// The partition key column of a partitioned table.
    pub partition_key: Option<String>,
    /// pg_partman's retention setting for this set, when partman manages it.
    pub partman_retention: Option<String>,
    /// Tables that inherit from this one through legacy `INHERITS` (an unpartitioned
    /// table): a query on it reads their rows too, so retention refuses such a table.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inheritance_children: Vec<TableName>,
}

impl TableShape {
    /// The column named `name`, if the table has it.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// Time types a duration can be compared with.
pub fn is_time_type(type_name: &str) -> bool {
    matches!(
        type_name,
        "timestamp with time zone" | "timestamp without time zone" | "date"
    )
}

/// Looks a table up and reads its shape. Fails on a missing table, on a partitioned table
/// that is not range-partitioned on one column, and on any bound it cannot read.
pub async fn discover(client: &Client, table: &TableName) -> TablesResult<TableShape> {
    let row = client
        .query_opt(
            "SELECT c.oid, c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&table.schema, &table.name],
        )
        .await
        .map_err(|e| TablesError::db(format!("looking up table {table}"), &e))?
        .ok_or_else(|| TablesError::UnknownTable(table.clone()))?;
    let oid: u32 = row.get(0);
    let kind: String = row.get(1);
    if kind != "r" && kind != "p" {
        return Err(TablesError::Unsupported(format!(
            "{table} is not a table (relkind {kind})"
        )));
    }
    let columns = client
        .query(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
             WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[&oid],
        )
        .await
        .map_err(|e| TablesError::db(format!("reading the columns of {table}"), &e))?
        .iter()
        .map(|r| Column {
            name: r.get(0),
            type_name: r.get(1),
        })
        .collect();
    let mut shape = TableShape {
        table: table.clone(),
        oid,
        columns,
        partitions: None,
        partition_key: None,
        partman_retention: None,
        inheritance_children: Vec::new(),
    };
    if kind == "r" {
        shape.inheritance_children = inheritance_children(client, table, oid).await?;
    }
    if kind == "p" {
        let key = client
            .query_one(
                "SELECT p.partstrat::text, array_length(p.partattrs::int2[], 1),
                        (SELECT attname::text FROM pg_attribute WHERE attrelid = p.partrelid AND attnum = p.partattrs[0])
                 FROM pg_partitioned_table p WHERE p.partrelid = $1",
                &[&oid],
            )
            .await
            .map_err(|e| TablesError::db(format!("reading the partition key of {table}"), &e))?;
        let strategy: String = key.get(0);
        let key_columns: Option<i32> = key.get(1);
        let key_column: Option<String> = key.get(2);
        if strategy != "r" {
            return Err(TablesError::Unsupported(format!(
                "{table} is not range-partitioned: retention acts on range partitions of a time column"
            )));
        }
        match (key_columns, key_column) {
            (Some(1), Some(column)) => {
                // A key that is no time has bounds no duration compares with: say so
                // rather than fail on reading them.
                let type_name = shape.column(&column).map(|c| c.type_name.clone()).unwrap_or_default();
                if !is_time_type(&type_name) {
                    return Err(TablesError::Unsupported(format!(
                        "{table} is partitioned on {column:?} of type {type_name}, not a timestamp or date: retention by duration needs a time partition key"
                    )));
                }
                shape.partition_key = Some(column);
            }
            _ => {
                return Err(TablesError::Unsupported(format!(
                    "{table} is partitioned on an expression or several columns: retention needs a range partition on one time column"
                )))
            }
        }
        shape.partitions = Some(partitions(client, table, oid).await?);
        shape.partman_retention = partman_retention(client, table).await?;
    }
    Ok(shape)
}

/// The tables inheriting from an ordinary table (legacy `INHERITS`), by name.
async fn inheritance_children(
    client: &Client,
    table: &TableName,
    oid: u32,
) -> TablesResult<Vec<TableName>> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE i.inhparent = $1 ORDER BY 1, 2",
            &[&oid],
        )
        .await
        .map_err(|e| TablesError::db(format!("looking for tables inheriting from {table}"), &e))?;
    Ok(rows
        .iter()
        .map(|r| TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect())
}

async fn partitions(client: &Client, table: &TableName, oid: u32) -> TablesResult<Vec<Partition>> {
    // reltablespace 0 is the database's default tablespace: named, so that a partition
    // moved to it (`SET TABLESPACE pg_default` stores 0 again) reads as being there.
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, pg_get_expr(c.relpartbound, c.oid),
                    pg_total_relation_size(c.oid),
                    coalesce(t.spcname, d.spcname)::text
             FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_tablespace t ON t.oid = c.reltablespace
             LEFT JOIN pg_database db ON db.datname = current_database()
             LEFT JOIN pg_tablespace d ON d.oid = db.dattablespace
             WHERE i.inhparent = $1",
            &[&oid],
        )
        .await
        .map_err(|e| TablesError::db(format!("listing the partitions of {table}"), &e))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let name = TableName::new(row.get::<_, String>(0), row.get::<_, String>(1));
        // NULL while another session detaches or drops the partition: it is going away,
        // so it is no longer this run's to plan.
        let Some(bound_text) = row.get::<_, Option<String>>(2) else {
            continue;
        };
        let bound = parse_bound(&bound_text).map_err(|source| TablesError::Bound {
            table: table.clone(),
            partition: name.to_string(),
            source,
        })?;
        out.push(Partition {
            name,
            bound_text,
            bound,
            bytes: row.get::<_, Option<i64>>(3).unwrap_or(0),
            tablespace: row.get(4),
        });
    }
    // Oldest first; the default partition (no upper bound) last.
    out.sort_by(|a, b| match (a.upper(), b.upper()) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.name.cmp(&b.name),
    });
    Ok(out)
}

/// pg_partman's `retention` for this set, when the extension is installed and manages it.
async fn partman_retention(client: &Client, table: &TableName) -> TablesResult<Option<String>> {
    let schema: Option<String> = client
        .query_opt(
            "SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_partman'",
            &[],
        )
        .await
        .map_err(|e| TablesError::db("looking for pg_partman", &e))?
        .map(|r| r.get(0));
    let Some(schema) = schema else {
        return Ok(None);
    };
    let sql = format!(
        "SELECT coalesce(retention, 'none') FROM {} WHERE parent_table = $1",
        strata_pgclient::quote_qualified(&schema, "part_config")
    );
    // partman names its sets `schema.table` in its own unquoted form.
    let parent = format!("{}.{}", table.schema, table.name);
    let row = client
        .query_opt(&sql, &[&parent])
        .await
        .map_err(|e| TablesError::db("reading pg_partman's part_config", &e))?;
    Ok(row.map(|r| r.get(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_types() {
        assert!(is_time_type("timestamp with time zone"));
        assert!(is_time_type("date"));
        assert!(!is_time_type("bigint"));
        assert!(!is_time_type("text"));
    }
}
