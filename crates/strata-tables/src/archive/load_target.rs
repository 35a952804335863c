//! Where `strata load` writes an archive's rows, decided inside the load's transaction.
//!
//! - **A partitioned table** (`--into metrics.raw`): the rows go into the partition with
//!   exactly the archived bound. When there is none, it is recreated from the bound in
//!   `archive.json`, under the archived partition's name in the parent's schema (never a
//!   schema named by `archive.json`, which is not trusted), or `NAME_restored`,
//!   `NAME_restored_2`, ... when the name is taken.
//!   It is created as a table of its own (`LIKE` the parent, with its indexes) with a CHECK
//!   constraint matching the bound, filled by the COPY, and only then attached ([`attach`])
//!   and the CHECK dropped: the parent is locked (SHARE UPDATE EXCLUSIVE) and its default
//!   partition (ACCESS EXCLUSIVE, to look for rows of the range) from the attach to the
//!   commit, not for the COPY, and the attach scans no rows of the new partition. Its bound
//!   is read back and must print exactly as archived. A failure anywhere rolls all of it
//!   back.
//! - **Any other table** (a plain table, or a partition named directly): the rows go into
//!   it.
//!
//! Either way, a target that already holds rows of the archived range is refused unless
//! the user asks to append (`--append`): loading an archive twice would duplicate every
//! row. The range is the archived partition's bound on its partition key (recorded in
//! `archive.json`); for archives that do not record the key (written by strata before it)
//! and for an archived default partition, any row at all counts.

use super::ArchiveManifest;
use crate::bound::{parse_bound, range_sql, Bound, Lower, Upper};
use crate::discover::TableShape;
use crate::error::{TablesError, TablesResult};
use crate::name::TableName;
use strata_pgclient::tokio_postgres::Transaction;

/// What `load` does with a target that already holds rows of the archived range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Add the rows anyway (duplicates are then possible).
    pub append: bool,
}

/// The table the rows go into, and whether this load created it as a partition.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Target {
    /// The table the COPY writes into: the one asked for, or its recreated partition.
    pub table: TableName,
    /// Whether this load created `table` as the archived partition of the table asked for.
    pub created_partition: bool,
    /// A recreated partition still to attach, after the COPY ([`attach`]).
    #[serde(skip)]
    pub attach: Option<PendingAttach>,
}

/// How a recreated partition is attached once it holds the rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingAttach {
    /// The partitioned table the partition is attached to.
    pub parent: TableName,
    /// `FOR VALUES FROM (..) TO (..)` or `DEFAULT`.
    pub for_values: String,
    /// Whether it carries the bound's CHECK constraint (dropped once attached).
    check: bool,
}

/// The largest identifier PostgreSQL keeps (NAMEDATALEN - 1 bytes).
const MAX_NAME: usize = 63;

/// Decides (and for a partitioned `shape` with no partition of the archived bound,
/// creates) the table the archive's rows go into.
pub async fn prepare(
    tx: &Transaction<'_>,
    shape: &TableShape,
    manifest: &ArchiveManifest,
    options: LoadOptions,
) -> TablesResult<Target> {
    let Some(partitions) = &shape.partitions else {
        if !options.append {
            refuse_rows(tx, &shape.table, manifest, shape).await?;
        }
        return Ok(Target {
            table: shape.table.clone(),
            created_partition: false,
            attach: None,
        });
    };
    if let Some(existing) = partitions
        .iter()
        .find(|p| p.bound_text.trim() == manifest.bound.trim())
    {
        if !options.append && holds_rows(tx, &existing.name, None).await? {
            return Err(occupied(&existing.name, manifest));
        }
        return Ok(Target {
            table: existing.name.clone(),
            created_partition: false,
            attach: None,
        });
    }
    let for_values = if manifest.bound.trim() == "DEFAULT" {
        "DEFAULT".to_string()
    } else {
        let (lower, upper) = range_sql(&manifest.bound).map_err(|e| TablesError::Archive {
            key: manifest.partition.to_string(),
            why: format!("cannot recreate the partition: {e}"),
        })?;
        format!("FOR VALUES FROM ({lower}) TO ({upper})")
    };
    let name = free_name(tx, &manifest.partition, &shape.table).await?;
    let parent = &shape.table;
    let what = format!("creating {name} (LIKE {parent}) to recreate a partition of it");
    // The parent's indexes come along, so that ATTACH finds them and builds none while it
    // holds the parent.
    tx.batch_execute(&format!(
        "CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING STORAGE INCLUDING COMPRESSION INCLUDING INDEXES)",
        name.quoted(),
        parent.quoted()
    ))
    .await
    .map_err(|e| TablesError::db(&what, &e))?;
    // A CHECK that matches the bound: the COPY refuses a row outside it, and ATTACH sees
    // the partition constraint implied and does not scan the rows again.
    let check = match (&shape.partition_key, parse_bound(&manifest.bound)) {
        (Some(key), Ok(Bound::Range { .. })) if for_values != "DEFAULT" => {
            let (lower, upper) = range_sql(&manifest.bound).map_err(|e| TablesError::Archive {
                key: manifest.partition.to_string(),
                why: format!("cannot recreate the partition: {e}"),
            })?;
            let key = strata_pgclient::quote_ident(key);
            let mut parts = vec![format!("{key} IS NOT NULL")];
            if !matches!(lower.as_str(), "MINVALUE" | "MAXVALUE") {
                parts.push(format!("{key} >= {lower}"));
            }
            if !matches!(upper.as_str(), "MINVALUE" | "MAXVALUE") {
                parts.push(format!("{key} < {upper}"));
            }
            tx.batch_execute(&format!(
                "ALTER TABLE {} ADD CONSTRAINT {} CHECK ({})",
                name.quoted(),
                strata_pgclient::quote_ident(BOUND_CHECK),
                parts.join(" AND ")
            ))
            .await
            .map_err(|e| TablesError::db(&what, &e))?;
            true
        }
        _ => false,
    };
    Ok(Target {
        table: name,
        created_partition: true,
        attach: Some(PendingAttach {
            parent: parent.clone(),
            for_values,
            check,
        }),
    })
}

/// The CHECK constraint a recreated partition carries until it is attached.
const BOUND_CHECK: &str = "strata_load_bound";

/// Attaches a partition [`prepare`] created, once the rows are in: the parent (and its
/// default partition, which PostgreSQL checks for rows of the range) are locked from here
/// to the end of the load's transaction only, not for the COPY. The bound is read back
/// and must print exactly as archived.
pub async fn attach(
    tx: &Transaction<'_>,
    target: &Target,
    manifest: &ArchiveManifest,
) -> TablesResult<()> {
    let Some(pending) = &target.attach else {
        return Ok(());
    };
    let name = &target.table;
    let parent = &pending.parent;
    let for_values = &pending.for_values;
    let what = format!(
        "attaching {name} to {parent} ({for_values}; if another partition overlaps that range, or the default partition holds rows of it, load into a table of its own: CREATE TABLE t (LIKE {parent}))"
    );
    let mut statements = vec![format!(
        "ALTER TABLE {} ATTACH PARTITION {} {for_values}",
        parent.quoted(),
        name.quoted()
    )];
    if pending.check {
        // The partition constraint holds it now.
        statements.push(format!(
            "ALTER TABLE {} DROP CONSTRAINT {}",
            name.quoted(),
            strata_pgclient::quote_ident(BOUND_CHECK)
        ));
    }
    for statement in statements {
        tx.batch_execute(&statement)
            .await
            .map_err(|e| TablesError::db(&what, &e))?;
    }
    let bound: Option<String> = tx
        .query_one(
            "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
            &[&name.schema, &name.name],
        )
        .await
        .map_err(|e| TablesError::db(&what, &e))?
        .get(0);
    if bound.as_deref().map(str::trim) != Some(manifest.bound.trim()) {
        return Err(TablesError::Archive {
            key: manifest.partition.to_string(),
            why: format!(
                "the recreated partition's bound reads {:?}, not the archived {:?}: nothing loaded (is {parent} partitioned on another type than {}?)",
                bound.unwrap_or_default(),
                manifest.bound,
                manifest.table
            ),
        });
    }
    Ok(())
}

/// Refuses a plain table (or a partition named directly) that holds rows of the archived
/// range.
async fn refuse_rows(
    tx: &Transaction<'_>,
    table: &TableName,
    manifest: &ArchiveManifest,
    shape: &TableShape,
) -> TablesResult<()> {
    let range = match (&manifest.column, parse_bound(&manifest.bound)) {
        (Some(column), Ok(Bound::Range { lower, upper })) if shape.column(column).is_some() => {
            Some((column.as_str(), lower, upper))
        }
        _ => None,
    };
    if holds_rows(tx, table, range).await? {
        return Err(occupied(table, manifest));
    }
    Ok(())
}

fn occupied(table: &TableName, manifest: &ArchiveManifest) -> TablesError {
    let range = match (&manifest.column, manifest.bound.trim()) {
        (Some(column), bound) if bound != "DEFAULT" => {
            format!("rows of the archived range ({column} {bound})")
        }
        _ => "rows (the archive does not say which range to check, so any row counts)".into(),
    };
    TablesError::Unsupported(format!(
        "{table} already holds {range}: loading {} there again would duplicate them; nothing loaded. Load into an empty table, or give --append to add the rows anyway",
        manifest.partition
    ))
}

/// Whether `table` has a row (within `range` on its column, when given).
async fn holds_rows(
    tx: &Transaction<'_>,
    table: &TableName,
    range: Option<(&str, Lower, Upper)>,
) -> TablesResult<bool> {
    let what = format!("looking for rows in {table}");
    let row = match range {
        None => tx
            .query_one(
                &format!("SELECT EXISTS (SELECT 1 FROM {})", table.quoted()),
                &[],
            )
            .await
            .map_err(|e| TablesError::db(&what, &e))?,
        Some((column, lower, upper)) => {
            // Unbounded sides are NULL: no limit. Times are compared as timestamptz in the
            // session's UTC, as bounds are read.
            let from = match lower {
                Lower::From(t) => Some(t.to_rfc3339()),
                Lower::Unbounded => None,
            };
            let to = match upper {
                Upper::Before(t) => Some(t.to_rfc3339()),
                Upper::Unbounded => None,
            };
            let c = strata_pgclient::quote_ident(column);
            tx.query_one(
                &format!(
                    "SELECT EXISTS (SELECT 1 FROM {} WHERE ($1::text IS NULL OR {c} >= $1::text::timestamptz) AND ($2::text IS NULL OR {c} < $2::text::timestamptz))",
                    table.quoted()
                ),
                &[&from, &to],
            )
            .await
            .map_err(|e| TablesError::db(&what, &e))?
        }
    };
    Ok(row.get(0))
}

/// The archived partition's name, or `NAME_restored`, `NAME_restored_2`, ... when taken,
/// always in the parent's schema: `archive.json` is not trusted to choose where a table is
/// created (only the name, which is quoted, comes from it).
async fn free_name(
    tx: &Transaction<'_>,
    wanted: &TableName,
    parent: &TableName,
) -> TablesResult<TableName> {
    let what = format!("choosing a name for partition {wanted}");
    let schema = parent.schema.clone();
    for attempt in 0..100u32 {
        let name = match attempt {
            0 => wanted.name.clone(),
            1 => with_suffix(&wanted.name, "_restored"),
            n => with_suffix(&wanted.name, &format!("_restored_{n}")),
        };
        let taken = tx
            .query_opt(
                "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relname = $2",
                &[&schema, &name],
            )
            .await
            .map_err(|e| TablesError::db(&what, &e))?
            .is_some();
        if !taken {
            return Ok(TableName::new(schema, name));
        }
    }
    Err(TablesError::Unsupported(format!(
        "{what}: {wanted} and 99 {}_restored names are taken",
        wanted.name
    )))
}

/// `base` + `suffix`, `base` cut (on a character boundary) so that the name fits in
/// PostgreSQL's 63 bytes rather than being cut by the server into another name.
fn with_suffix(base: &str, suffix: &str) -> String {
    let room = MAX_NAME.saturating_sub(suffix.len());
    let mut end = base.len().min(room);
    while !base.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{suffix}", &base[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixed_names_fit_in_63_bytes() {
        assert_eq!(
            with_suffix("raw_2025_01", "_restored"),
            "raw_2025_01_restored"
        );
        let long = "é".repeat(31); // 62 bytes
        let name = with_suffix(&long, "_restored_2");
        assert!(name.len() <= MAX_NAME, "{}", name.len());
        assert!(name.ends_with("_restored_2"));
    }
}
