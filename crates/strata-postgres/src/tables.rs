//! Bringing tables back from a physical backup without touching the running cluster: on
//! a [`Scratch`] server recovered to the wanted point, each table is renamed to the name
//! it comes back under (with its indexes and the sequences it owns, so nothing clashes
//! with what the live database still has), dumped with `pg_dump` (table, indexes,
//! constraints, triggers, owned sequences with their values) and either loaded into the
//! live database in one transaction (all tables or none) or written to a dump file.

use crate::scratch::Scratch;
use crate::{PgError, PgResult};
use std::path::PathBuf;
use std::process::Stdio;
use strata_pgclient::ConnectSettings;

/// A table by schema and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    /// Its schema (`public` when not given).
    pub schema: String,
    /// Its name.
    pub name: String,
}

impl TableName {
    /// `SCHEMA.TABLE` or `TABLE` (schema `public`) in SQL's identifier syntax: a plain
    /// part (letters, digits, `_`, `$`, not starting with a digit) is folded to lower
    /// case as PostgreSQL folds it; a double-quoted part is taken exactly, `""` a quote
    /// (`"Mixed Case".tbl`, `public."dot.name"`, `"quo""te"`).
    pub fn parse(text: &str) -> Result<TableName, BadName> {
        TableName::parse_in(text, "public")
    }

    /// [`TableName::parse`], with `schema` for a name that gives none.
    pub fn parse_in(text: &str, schema: &str) -> Result<TableName, BadName> {
        let bad = || BadName::Table(text.to_string());
        match split_identifiers(text).ok_or_else(bad)?.as_slice() {
            [name] => Ok(TableName {
                schema: schema.to_string(),
                name: name.clone(),
            }),
            [schema, name] => Ok(TableName {
                schema: schema.clone(),
                name: name.clone(),
            }),
            _ => Err(bad()),
        }
    }

    /// `schema.name`, quoted for SQL.
    pub fn sql(&self) -> String {
        strata_pgclient::quote_qualified(&self.schema, &self.name)
    }
}

/// The parts of a dotted SQL name as PostgreSQL reads them, each 1 to 63 bytes without a
/// control character; `None` when it is not one.
fn split_identifiers(text: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut part = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next()? {
                    '"' if chars.next_if_eq(&'"').is_some() => part.push('"'),
                    '"' => break,
                    c => part.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != '.') {
                if !(c.is_ascii_alphanumeric() || c == '_' || c == '$') {
                    return None;
                }
                part.push(c.to_ascii_lowercase());
            }
            if part.starts_with(|c: char| c.is_ascii_digit() || c == '$') {
                return None;
            }
        }
        if part.is_empty() || part.len() > 63 || part.chars().any(char::is_control) {
            return None;
        }
        parts.push(part);
        match chars.next() {
            None => return Some(parts),
            Some('.') => {}
            Some(_) => return None,
        }
    }
}

/// A name part as SQL reads it back: plain when it is a lower-case plain identifier,
/// else double-quoted.
fn display_ident(part: &str) -> String {
    let plain = !part.is_empty()
        && part
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')
        && !part.starts_with(|c: char| c.is_ascii_digit() || c == '$');
    match plain {
        true => part.to_string(),
        false => strata_pgclient::quote_ident(part),
    }
}

impl std::fmt::Display for TableName {
    /// `schema.name` as [`TableName::parse`] reads it back (parts quoted where needed).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{}",
            display_ident(&self.schema),
            display_ident(&self.name)
        )
    }
}

/// Checks a database name given by the user (the command line, an API body): 1 to 63
/// letters, digits, `_`, `-` or `$`. It is named in SQL on the scratch server (a
/// superuser) and passed to `psql -d`, which would read a `=` as a connection string:
/// nothing else gets through.
pub fn check_database_name(name: &str) -> Result<(), BadName> {
    let plain = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-$".contains(&b));
    match plain {
        true => Ok(()),
        false => Err(BadName::Database(name.to_string())),
    }
}

/// A table or database name given by the user that is not a plain name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadName {
    /// Not `SCHEMA.TABLE` or `TABLE` in SQL's identifier syntax.
    #[error("{0:?}: give SCHEMA.TABLE or TABLE: plain names (letters, digits, '_', read in lower case) or double-quoted ones (\"Mixed Case\", \"dot.name\", \"quo\"\"te\"), 63 bytes at most each")]
    Table(String),
    /// Not 1 to 63 letters, digits, `_`, `-` or `$`.
    #[error("database {0:?}: give a name of 1 to 63 letters, digits, '_', '-' or '$'")]
    Database(String),
}

/// Where the tables go.
#[derive(Debug, Clone)]
pub enum Destination {
    /// Loaded into this live database (the node's connection, its `dbname` replaced).
    Live(ConnectSettings),
    /// Written as a plain SQL dump to this file (created, 0600).
    Dump(PathBuf),
}

/// What to bring back.
#[derive(Debug, Clone)]
pub struct TableRequest {
    /// The database the tables are in.
    pub database: String,
    /// The tables, each with the name it comes back under: its schema is the table's own
    /// unless `--as SCHEMA.NAME` named another (which must exist where it is loaded).
    pub tables: Vec<(TableName, TableName)>,
    /// Where they go.
    pub destination: Destination,
}

/// Runs `sql` on the scratch server's `database`; its output, one row per line.
fn scratch_sql(scratch: &Scratch, database: &str, sql: &str) -> PgResult<String> {
    let out = scratch
        .client("psql")
        .args([
            "-d",
            database,
            "-X",
            "-Atq",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .output()
        .map_err(PgError::io("cannot run", scratch.bin.join("psql")))?;
    if !out.status.success() {
        return Err(PgError::Refused(format!(
            "on the restored copy ({database}): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The rows of `sql` on the scratch server's `database`, read as JSON objects (names
/// may hold any character, a newline or a `|` too).
fn scratch_rows<T: serde::de::DeserializeOwned>(
    scratch: &Scratch,
    database: &str,
    sql: &str,
) -> PgResult<Vec<T>> {
    let text = scratch_sql(
        scratch,
        database,
        &format!("SELECT coalesce(json_agg(row_to_json(q)), '[]') FROM ({sql}) q"),
    )?;
    serde_json::from_str(&text).map_err(|e| {
        PgError::Refused(format!(
            "unexpected answer of the restored copy ({database}): {e}"
        ))
    })
}

/// A quoted SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `"schema"."name"`: for SQL, and for `pg_dump --table` (which takes quoted names
/// literally).
fn quoted(schema: &str, name: &str) -> String {
    strata_pgclient::quote_qualified(schema, name)
}

/// `new` for something named after table `old` (`t_pkey` → `new_pkey`), else `new_` in
/// front of `name`; cut to PostgreSQL's 63 bytes.
fn renamed(name: &str, old: &str, new: &str) -> String {
    let out = match name.strip_prefix(old) {
        Some(rest) => format!("{new}{rest}"),
        None => format!("{new}_{name}"),
    };
    let mut end = out.len().min(63);
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    out[..end].to_string()
}

/// [`renamed`], or `name` itself when its table keeps its name.
fn renamed_with(name: &str, old: &str, new: &str) -> String {
    match old == new {
        true => name.to_string(),
        false => renamed(name, old, new),
    }
}

/// The table asked for, as the copy has it.
#[derive(Debug, serde::Deserialize)]
struct Found {
    oid: i64,
    kind: String,
    /// The partitioned table it is a partition of (`schema.name`, quoted), if it is one.
    parent: Option<String>,
}

/// A relation of the copy that comes back with a table.
#[derive(Debug, Clone, serde::Deserialize)]
struct Relation {
    oid: i64,
    schema: String,
    name: String,
    kind: String,
    /// The table or partition an index or a sequence belongs to.
    #[serde(default)]
    owner: Option<i64>,
}

/// A table made ready on the scratch server: renamed (with its partitions, indexes and
/// sequences) and moved into the schema it comes back in.
#[derive(Debug)]
struct Prepared {
    table: TableName,
    new: TableName,
    /// Rows it holds on the copy (with its partitions').
    rows: u64,
    /// The table and its partitions (every level), as they are named now: each is given
    /// to `pg_dump --table`.
    tables: Vec<(String, String)>,
    /// Those that hold rows (not partitioned themselves).
    leaves: Vec<(String, String)>,
    /// Every relation the load creates: tables, partitions, indexes, sequences.
    created: Vec<(String, String)>,
    /// The partitioned table it was a partition of, detached from it on the copy.
    detached: Option<String>,
}

impl Prepared {
    /// The report line, with `rows` rows `done` (loaded, written).
    fn line(&self, rows: u64, done: &str) -> String {
        let mut line = format!("{}: {rows} rows {done}, as {}", self.table, self.new);
        let partitions: Vec<String> = self.tables[1..]
            .iter()
            .map(|(s, n)| format!("{}.{}", display_ident(s), display_ident(n)))
            .collect();
        if !partitions.is_empty() {
            line.push_str(&format!(
                " with its {} partitions ({})",
                partitions.len(),
                partitions.join(", ")
            ));
        }
        if let Some(parent) = &self.detached {
            line.push_str(&format!(
                " (a partition of {parent}: detached from it on the copy, it comes back as a table of its own)"
            ));
        }
        line
    }
}

/// `table` on the scratch server: its oid, its kind (a table or a partitioned table, else
/// refused) and, for a partition, its parent.
fn find_table(scratch: &Scratch, database: &str, table: &TableName) -> PgResult<Found> {
    let refused = |m: String| PgError::Refused(m);
    let found: Vec<Found> = scratch_rows(
        scratch,
        database,
        &format!(
            "SELECT c.oid::int8 AS oid, c.relkind::text AS kind, \
             (SELECT format('%I.%I', pn.nspname, p.relname) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent \
              JOIN pg_namespace pn ON pn.oid = p.relnamespace WHERE i.inhrelid = c.oid AND c.relispartition) AS parent \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = {} AND c.relname = {}",
            literal(&table.schema),
            literal(&table.name)
        ),
    )?;
    let Some(found) = found.into_iter().next() else {
        return Err(refused(format!(
            "table {table} is not in database {database} at that point of the backup"
        )));
    };
    if found.kind != "r" && found.kind != "p" {
        return Err(refused(format!(
            "{table} is not a table (relkind {:?})",
            found.kind
        )));
    }
    Ok(found)
}

/// The relations that come back with `table` (`found`): itself and, for a partitioned
/// table, its partitions at every level; a foreign partition is refused.
fn relations_of(
    scratch: &Scratch,
    database: &str,
    table: &TableName,
    found: &Found,
) -> PgResult<Vec<Relation>> {
    let refused = |m: String| PgError::Refused(m);
    let mut rels: Vec<Relation> = vec![Relation {
        oid: found.oid,
        schema: table.schema.clone(),
        name: table.name.clone(),
        kind: found.kind.clone(),
        owner: None,
    }];
    if found.kind == "p" {
        rels.extend(scratch_rows::<Relation>(
            scratch,
            database,
            &format!(
                "SELECT c.oid::int8 AS oid, n.nspname AS schema, c.relname AS name, c.relkind::text AS kind \
                 FROM pg_partition_tree({}::oid::regclass) t JOIN pg_class c ON c.oid = t.relid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace WHERE t.level > 0 ORDER BY t.level, c.relname",
                found.oid
            ),
        )?);
    }
    if let Some(foreign) = rels.iter().find(|r| r.kind != "r" && r.kind != "p") {
        return Err(refused(format!(
            "partition {}.{} of {table} is not a table (relkind {:?}; a foreign table's rows are not in the backup): bring back its other partitions one by one",
            foreign.schema, foreign.name, foreign.kind
        )));
    }
    Ok(rels)
}

/// The indexes and owned sequences of `rels`, each with its table's oid as `owner`.
fn owned_parts(scratch: &Scratch, database: &str, rels: &[Relation]) -> PgResult<Vec<Relation>> {
    let oids: Vec<String> = rels.iter().map(|r| r.oid.to_string()).collect();
    let oids = oids.join(", ");
    scratch_rows(
        scratch,
        database,
        &format!(
            "SELECT i.oid::int8 AS oid, n.nspname AS schema, i.relname AS name, 'i' AS kind, x.indrelid::int8 AS owner \
             FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_namespace n ON n.oid = i.relnamespace \
             WHERE x.indrelid IN ({oids}) \
             UNION \
             SELECT s.oid::int8, n.nspname, s.relname, 'S', d.refobjid::int8 \
             FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' JOIN pg_namespace n ON n.oid = s.relnamespace \
             WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass \
             AND d.refobjid IN ({oids}) AND d.deptype IN ('a', 'i')"
        ),
    )
}

/// Makes `table` ready on the scratch server to come back as `new`: a partition is
/// detached from its partitioned table (it comes back as a table of its own); a
/// partitioned table brings its partitions, renamed after it (`events_p1` of `events`
/// as `events_back_p1`, another name `p1` as `events_back_p1`), all in `new`'s schema;
/// indexes and owned sequences are renamed the same way. Other relation kinds (views,
/// foreign tables) and foreign partitions are refused.
fn prepare_on_scratch(
    scratch: &Scratch,
    database: &str,
    table: &TableName,
    new: &TableName,
) -> PgResult<Prepared> {
    let refused = |m: String| PgError::Refused(m);
    let found = find_table(scratch, database, table)?;
    let mut sql: Vec<String> = Vec::new();
    if let Some(parent) = &found.parent {
        // Foreign keys that point at the partitioned table would stop the detach; they
        // are not part of what comes back, and the copy is thrown away.
        let keys: Vec<serde_json::Value> = scratch_rows(
            scratch,
            database,
            &format!(
                "SELECT format('ALTER TABLE %I.%I DROP CONSTRAINT %I', n.nspname, c.relname, k.conname) AS sql \
                 FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE k.contype = 'f' AND k.conparentid = 0 AND k.confrelid IN \
                 (SELECT relid FROM pg_partition_ancestors({}::oid::regclass) WHERE relid <> {}::oid)",
                found.oid, found.oid
            ),
        )?;
        sql.extend(
            keys.iter()
                .filter_map(|k| k.get("sql").and_then(|s| s.as_str()).map(str::to_string)),
        );
        sql.push(format!(
            "ALTER TABLE {parent} DETACH PARTITION {}",
            quoted(&table.schema, &table.name)
        ));
    }
    let rels = relations_of(scratch, database, table, &found)?;
    let parts = owned_parts(scratch, database, &rels)?;
    // Each table's new name: the table's own, its partitions' after it.
    let new_name = |rel: &Relation| match rel.oid == found.oid {
        true => new.name.clone(),
        false => renamed_with(&rel.name, &table.name, &new.name),
    };
    let mut tables = Vec::new();
    let mut leaves = Vec::new();
    let mut created = Vec::new();
    let mut renames = Vec::new();
    let mut moves = Vec::new();
    for rel in &rels {
        let name = new_name(rel);
        if name != rel.name {
            renames.push(format!(
                "ALTER TABLE {} RENAME TO {}",
                quoted(&rel.schema, &rel.name),
                strata_pgclient::quote_ident(&name)
            ));
        }
        if rel.schema != new.schema {
            moves.push(format!(
                "ALTER TABLE {} SET SCHEMA {}",
                quoted(&rel.schema, &name),
                strata_pgclient::quote_ident(&new.schema)
            ));
        }
        let now = (new.schema.clone(), name);
        if rel.kind == "r" {
            leaves.push(now.clone());
        }
        tables.push(now.clone());
        created.push(now);
    }
    for part in &parts {
        let Some(owner) = rels.iter().find(|r| Some(r.oid) == part.owner) else {
            continue;
        };
        let name = renamed_with(&part.name, &owner.name, &new_name(owner));
        if name != part.name {
            let what = if part.kind == "S" {
                "SEQUENCE"
            } else {
                "INDEX"
            };
            sql.push(format!(
                "ALTER {what} {} RENAME TO {}",
                quoted(&part.schema, &part.name),
                strata_pgclient::quote_ident(&name)
            ));
        }
        created.push((new.schema.clone(), name));
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some((schema, name)) = created.iter().find(|n| !seen.insert(*n)) {
        return Err(refused(format!(
            "{table} as {new}: two of its relations would come back as {schema}.{name} (names are cut at 63 bytes): give a shorter name with --as"
        )));
    }
    sql.extend(renames);
    if !moves.is_empty() {
        sql.push(format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            strata_pgclient::quote_ident(&new.schema)
        ));
        sql.extend(moves);
    }
    if !sql.is_empty() {
        scratch_sql(
            scratch,
            database,
            &format!("BEGIN; {}; COMMIT", sql.join("; ")),
        )?;
    }
    let only = if found.kind == "r" { "ONLY " } else { "" };
    let rows: u64 = scratch_sql(
        scratch,
        database,
        &format!(
            "SELECT count(*) FROM {only}{}",
            quoted(&new.schema, &new.name)
        ),
    )?
    .parse()
    .unwrap_or(0);
    Ok(Prepared {
        table: table.clone(),
        new: new.clone(),
        rows,
        tables,
        leaves,
        created,
        detached: found.parent,
    })
}

/// SQL listing the schemas of `schemas` that the database does not have.
fn missing_schemas_sql(schemas: &[&str]) -> String {
    let list: Vec<String> = schemas.iter().map(|s| literal(s)).collect();
    format!(
        "SELECT s FROM unnest(ARRAY[{}]::text[]) s WHERE NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = s) ORDER BY s",
        list.join(", ")
    )
}

/// SQL listing the names of `names` (schema, name) that the database already has for a
/// relation, and those of `typed` (the tables among them: each makes a row type of its
/// name) that it has for a type or a domain, as `schema.name`.
fn taken_names_sql(names: &[(String, String)], typed: &[(String, String)]) -> String {
    let values = |names: &[(String, String)]| {
        let list: Vec<String> = names
            .iter()
            .map(|(s, n)| format!("({}, {})", literal(s), literal(n)))
            .collect();
        match list.is_empty() {
            true => "SELECT NULL::text, NULL::text WHERE false".to_string(),
            false => format!("VALUES {}", list.join(", ")),
        }
    };
    // A type's array type (`_name`) is not a clash: PostgreSQL renames it out of the way.
    format!(
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE (n.nspname::text, c.relname::text) IN ({}) \
         UNION \
         SELECT format('%I.%I (a type)', n.nspname, t.typname) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace \
         WHERE t.typrelid = 0 AND NOT (t.typelem <> 0 AND t.typlen = -1) \
         AND (n.nspname::text, t.typname::text) IN ({}) ORDER BY 1",
        values(names),
        values(typed)
    )
}

/// Why `database` cannot take the names: a schema it does not have, names it has.
fn names_refused(database: &str, missing: &[String], taken: &[String]) -> Option<String> {
    if !missing.is_empty() {
        return Some(format!(
            "the live database {database} has no schema {}: create it first (CREATE SCHEMA ...), or give --as with a schema it has",
            missing.join(", ")
        ));
    }
    if !taken.is_empty() {
        return Some(format!(
            "the live database {database} already has {}: choose another name with --as",
            taken.join(", ")
        ));
    }
    None
}

/// Checks, before anything is restored, that the live `database` can take the tables
/// under their new names (`names`): it is reachable, has their schemas and none of the
/// names. (Their partitions', indexes' and sequences' names are known from the copy
/// only: checked again before the load.)
pub async fn check_live_names(
    live: &ConnectSettings,
    database: &str,
    names: &[TableName],
) -> PgResult<()> {
    let settings = ConnectSettings {
        dbname: database.to_string(),
        ..live.clone()
    };
    let client = settings.connect().await.map_err(|e| {
        PgError::Refused(format!(
            "cannot reach the live database {database} ({}): {e}",
            settings.describe()
        ))
    })?;
    let ask = |sql: String| {
        let client = &client;
        async move {
            let rows = client.query(sql.as_str(), &[]).await.map_err(|e| {
                PgError::Refused(format!(
                    "on the live database {database}: {}",
                    strata_pgclient::error_message(&e)
                ))
            })?;
            Ok::<Vec<String>, PgError>(rows.iter().map(|r| r.get::<_, String>(0)).collect())
        }
    };
    let mut schemas: Vec<&str> = names.iter().map(|n| n.schema.as_str()).collect();
    schemas.sort();
    schemas.dedup();
    let missing = ask(missing_schemas_sql(&schemas)).await?;
    let pairs: Vec<(String, String)> = names
        .iter()
        .map(|n| (n.schema.clone(), n.name.clone()))
        .collect();
    let taken = ask(taken_names_sql(&pairs, &pairs)).await?;
    match names_refused(database, &missing, &taken) {
        Some(why) => Err(PgError::Refused(why)),
        None => Ok(()),
    }
}

/// Checks, before anything is restored, that the live server has no database `new`.
pub async fn check_live_database_free(live: &ConnectSettings, new: &str) -> PgResult<()> {
    let client = live.connect().await.map_err(|e| {
        PgError::Refused(format!(
            "cannot reach the live server ({}): {e}",
            live.describe()
        ))
    })?;
    let taken = client
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&new],
        )
        .await
        .map_err(|e| {
            PgError::Refused(format!(
                "on the live server: {}",
                strata_pgclient::error_message(&e)
            ))
        })?
        .get::<_, i64>(0);
    match taken {
        0 => Ok(()),
        _ => Err(PgError::Refused(format!(
            "the live server already has a database {new}: choose another name with --as"
        ))),
    }
}

/// The live connection's environment for `psql`: host, port, user, database, password.
fn live_env(cmd: &mut std::process::Command, live: &ConnectSettings, database: &str) {
    cmd.env("PGHOST", &live.host)
        .env("PGPORT", live.port.to_string())
        .env("PGUSER", &live.user)
        .env("PGDATABASE", database)
        .env("PGCONNECT_TIMEOUT", live.connect_timeout_secs.to_string());
    let password = std::env::var(&live.password_env).ok().or_else(|| {
        let file = live.password_file.as_ref()?;
        let text = std::fs::read_to_string(file).ok()?;
        text.lines().next().map(str::to_string)
    });
    if let Some(password) = password {
        cmd.env("PGPASSWORD", password);
    }
}

/// Refuses, before anything is loaded, what the live database cannot take: a schema it
/// does not have, a name of a table, partition, index or sequence it has.
fn check_live_free(
    scratch: &Scratch,
    live: &ConnectSettings,
    database: &str,
    prepared: &[Prepared],
) -> PgResult<()> {
    let mut schemas: Vec<&str> = prepared.iter().map(|p| p.new.schema.as_str()).collect();
    schemas.sort();
    schemas.dedup();
    let created: Vec<(String, String)> = prepared
        .iter()
        .flat_map(|p| p.created.iter().cloned())
        .collect();
    let typed: Vec<(String, String)> = prepared
        .iter()
        .flat_map(|p| p.tables.iter().cloned())
        .collect();
    let lines = |text: String| -> Vec<String> {
        text.lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    };
    let missing = lines(live_sql(
        scratch,
        live,
        database,
        &missing_schemas_sql(&schemas),
    )?);
    let taken = lines(live_sql(
        scratch,
        live,
        database,
        &taken_names_sql(&created, &typed),
    )?);
    match names_refused(database, &missing, &taken) {
        Some(why) => Err(PgError::Refused(why)),
        None => Ok(()),
    }
}

/// `pg_dump ARGS` on the scratch server into `file` (created new, 0600): whole before it
/// is used, so a dump cut short is never loaded; the file is removed when it fails.
fn dump_into(scratch: &Scratch, args: &[String], file: &std::path::Path) -> PgResult<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let target = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .map_err(PgError::io("cannot create", file.to_path_buf()))?;
    let out = scratch
        .client("pg_dump")
        .args(args)
        .stdout(target)
        .stderr(Stdio::piped())
        .output()
        .map_err(PgError::io("cannot run", scratch.bin.join("pg_dump")))?;
    if !out.status.success() {
        let _ = std::fs::remove_file(file);
        return Err(PgError::Refused(format!(
            "pg_dump on the restored copy failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    std::fs::File::open(file)
        .and_then(|f| f.sync_all())
        .map_err(PgError::io("cannot write", file.to_path_buf()))
}

/// One identifier at the start of `text` as `pg_dump` writes it (plain, or quoted with
/// `""` for a quote), and the rest.
fn parse_ident(text: &str) -> Option<(String, &str)> {
    if let Some(rest) = text.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.char_indices();
        while let Some((i, c)) = chars.next() {
            if c != '"' {
                out.push(c);
            } else if rest[i + 1..].starts_with('"') {
                out.push('"');
                chars.next();
            } else {
                return Some((out, &rest[i + 1..]));
            }
        }
        return None;
    }
    let end = text.find(['.', ' ', '(']).unwrap_or(text.len());
    (end > 0).then(|| (text[..end].to_string(), &text[end..]))
}

/// The table a `COPY schema.name (...) FROM stdin;` line of a dump loads.
fn copy_target(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix("COPY ")?;
    if !line.ends_with(" FROM stdin;") {
        return None;
    }
    let (schema, rest) = parse_ident(rest)?;
    let (name, _) = parse_ident(rest.strip_prefix('.')?)?;
    Some((schema, name))
}

/// The rows of each table in the plain dump `file`: the lines of its `COPY ... FROM
/// stdin` block (a row is one line: COPY writes a newline in a value as `\n`).
fn copy_rows(file: &std::path::Path) -> PgResult<std::collections::HashMap<(String, String), u64>> {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(
        std::fs::File::open(file).map_err(PgError::io("cannot read", file.to_path_buf()))?,
    );
    let mut rows = std::collections::HashMap::new();
    let mut current: Option<(String, String)> = None;
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(PgError::io("cannot read", file.to_path_buf()))?;
        if read == 0 {
            break;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        match &current {
            Some(table) if text == b"\\." => {
                rows.entry(table.clone()).or_insert(0);
                current = None;
            }
            Some(table) => *rows.entry(table.clone()).or_insert(0) += 1,
            None if text.starts_with(b"COPY ") => {
                current = copy_target(&String::from_utf8_lossy(text));
            }
            None => {}
        }
    }
    Ok(rows)
}

/// Why a load into the live database failed (and left nothing of it there).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// `psql` could not be started.
    #[error("cannot run psql: {0}")]
    Spawn(#[source] std::io::Error),
    /// `psql` stopped at an error: what it printed on stderr.
    #[error("{stderr}")]
    Failed {
        /// `psql`'s stderr, trimmed.
        stderr: String,
    },
    /// The load ran, and its count of a table's rows is missing.
    #[error("psql did not report the rows loaded into {schema}.{name}")]
    Uncounted {
        /// The table's schema.
        schema: String,
        /// The table's name.
        name: String,
    },
}

/// Loads the dump `file` into the live `database` in one transaction, stopping at the
/// first error (so nothing of it stays), and counts the rows of `tables` in that same
/// transaction: what was loaded. Why it failed otherwise.
fn load_into_live(
    scratch: &Scratch,
    live: &ConnectSettings,
    database: &str,
    file: &std::path::Path,
    tables: &[(String, String)],
) -> Result<Vec<u64>, LoadError> {
    let mut cmd = std::process::Command::new(scratch.bin.join("psql"));
    live_env(&mut cmd, live, database);
    cmd.args([
        "-X",
        "-q",
        "-A",
        "-t",
        "--single-transaction",
        "-v",
        "ON_ERROR_STOP=1",
        "-f",
    ])
    .arg(file);
    for (i, (schema, name)) in tables.iter().enumerate() {
        cmd.arg("-c").arg(format!(
            "SELECT 'strata-rows:{i}:' || count(*) FROM {}",
            quoted(schema, name)
        ));
    }
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(LoadError::Spawn)?;
    if !out.status.success() {
        return Err(LoadError::Failed {
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut counts = vec![None; tables.len()];
    for line in stdout.lines() {
        let Some(rest) = line.strip_prefix("strata-rows:") else {
            continue;
        };
        if let Some((i, n)) = rest.split_once(':') {
            if let (Ok(i), Ok(n)) = (i.parse::<usize>(), n.parse::<u64>()) {
                if i < counts.len() {
                    counts[i] = Some(n);
                }
            }
        }
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(i, n)| {
            n.ok_or_else(|| LoadError::Uncounted {
                schema: tables[i].0.clone(),
                name: tables[i].1.clone(),
            })
        })
        .collect()
}

/// Brings the tables of `request` back from the running, promoted scratch server;
/// returns a line per table with the rows it holds where it went: counted in the live
/// database in the load's own transaction, or in the dump file.
pub fn bring_back(scratch: &Scratch, request: &TableRequest) -> PgResult<Vec<String>> {
    let mut prepared = Vec::new();
    for (table, new) in &request.tables {
        prepared.push(prepare_on_scratch(scratch, &request.database, table, new)?);
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some((schema, name)) = prepared
        .iter()
        .flat_map(|p| p.created.iter())
        .find(|n| !seen.insert(*n))
    {
        return Err(PgError::Refused(format!(
            "two of the tables asked for would bring back {schema}.{name}: bring them back one by one"
        )));
    }
    if let Destination::Live(live) = &request.destination {
        check_live_free(scratch, live, &request.database, &prepared)?;
    }
    let mut dump_args: Vec<String> = vec![
        "-d".into(),
        request.database.clone(),
        "--no-publications".into(),
        "--no-subscriptions".into(),
    ];
    for (schema, name) in prepared.iter().flat_map(|p| p.tables.iter()) {
        dump_args.push("--table".into());
        dump_args.push(quoted(schema, name));
    }
    // Into a file (a table may be larger than memory), whole before it is used.
    let file = match &request.destination {
        Destination::Dump(path) => path.clone(),
        Destination::Live(_) => scratch.work.join("tables.sql"),
    };
    dump_into(scratch, &dump_args, &file)?;
    // The dump must hold every row the copy has: a table whose rows it left out (a
    // partitioned table without its partitions, once) is never reported as back.
    let dumped = copy_rows(&file).and_then(|copied| {
        prepared
            .iter()
            .map(|p| {
                let rows: u64 = p.leaves.iter().filter_map(|l| copied.get(l)).sum();
                match rows == p.rows {
                    true => Ok(rows),
                    false => Err(PgError::Refused(format!(
                        "the dump of {} holds {rows} rows, the restored copy {}: nothing was loaded or written",
                        p.table, p.rows
                    ))),
                }
            })
            .collect::<PgResult<Vec<u64>>>()
    });
    let dumped = match dumped {
        Ok(dumped) => dumped,
        Err(e) => {
            let _ = std::fs::remove_file(&file);
            return Err(e);
        }
    };
    let mut lines = Vec::new();
    match &request.destination {
        Destination::Dump(path) => {
            for (p, rows) in prepared.iter().zip(&dumped) {
                lines.push(p.line(*rows, "written"));
            }
            lines.push(format!("written to {}", path.display()));
        }
        Destination::Live(live) => {
            let tables: Vec<(String, String)> = prepared
                .iter()
                .map(|p| (p.new.schema.clone(), p.new.name.clone()))
                .collect();
            let loaded = load_into_live(scratch, live, &request.database, &file, &tables).map_err(
                |why| {
                    PgError::Refused(format!(
                        "loading into the live database {} failed, nothing was loaded: {why}",
                        request.database
                    ))
                },
            )?;
            for (p, rows) in prepared.iter().zip(&loaded) {
                lines.push(p.line(*rows, "loaded"));
            }
            lines.push(format!(
                "loaded into the live database {} in one transaction",
                request.database
            ));
        }
    }
    Ok(lines)
}

/// Runs `sql` on the live server's `database`; its output.
fn live_sql(
    scratch: &Scratch,
    live: &ConnectSettings,
    database: &str,
    sql: &str,
) -> PgResult<String> {
    let mut cmd = std::process::Command::new(scratch.bin.join("psql"));
    live_env(&mut cmd, live, database);
    let out = cmd
        .args(["-X", "-Atq", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .map_err(PgError::io("cannot run", scratch.bin.join("psql")))?;
    if !out.status.success() {
        return Err(PgError::Refused(format!(
            "on the live server ({database}): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Brings database `database` back whole from the running, promoted scratch server, as
/// database `new` on the live server (created; dropped again if the load fails) or as a
/// dump file that creates it. Returns a line per step.
pub fn bring_back_database(
    scratch: &Scratch,
    database: &str,
    new: &str,
    destination: &Destination,
) -> PgResult<Vec<String>> {
    let exists = scratch_sql(
        scratch,
        "postgres",
        &format!(
            "SELECT count(*) FROM pg_database WHERE datname = {}",
            literal(database)
        ),
    )?;
    if exists != "1" {
        return Err(PgError::Refused(format!(
            "database {database} is not in the backup at that point"
        )));
    }
    // DROP DATABASE marks the database invalid and removes its files before its commit,
    // and a time target stops at a commit: with no other commit between the target and
    // the drop, recovery stops after those steps.
    let limit = scratch_sql(
        scratch,
        "postgres",
        &format!(
            "SELECT datconnlimit FROM pg_database WHERE datname = {}",
            literal(database)
        ),
    )?;
    if limit == "-2" {
        return Err(PgError::Refused(format!(
            "database {database} was being dropped at that point (recovery stops at the first commit after the target, and the drop came before it): give --target-lsn before the DROP DATABASE, or an earlier --target-time"
        )));
    }
    if new != database {
        scratch_sql(
            scratch,
            "postgres",
            &format!("ALTER DATABASE \"{database}\" RENAME TO \"{new}\""),
        )?;
    }
    let size = scratch_sql(
        scratch,
        "postgres",
        &format!("SELECT pg_size_pretty(pg_database_size({}))", literal(new)),
    )?;
    let mut lines = vec![format!("database {database} ({size}), as {new}")];
    match destination {
        Destination::Dump(path) => {
            dump_into(scratch, &["-d".into(), new.into(), "--create".into()], path)?;
            lines.push(format!(
                "written to {} (it creates the database)",
                path.display()
            ));
        }
        Destination::Live(live) => {
            let taken = live_sql(
                scratch,
                live,
                "postgres",
                &format!(
                    "SELECT count(*) FROM pg_database WHERE datname = {}",
                    literal(new)
                ),
            )?;
            if taken != "0" {
                return Err(PgError::Refused(format!(
                    "the live server already has a database {new}: choose another name with --as"
                )));
            }
            let file = scratch.work.join("database.sql");
            dump_into(scratch, &["-d".into(), new.into()], &file)?;
            live_sql(
                scratch,
                live,
                "postgres",
                &format!("CREATE DATABASE \"{new}\" TEMPLATE template0"),
            )?;
            if let Err(why) = load_into_live(scratch, live, new, &file, &[]) {
                let drop = format!("DROP DATABASE IF EXISTS \"{new}\"");
                let _ = live_sql(scratch, live, "postgres", &drop);
                return Err(PgError::Refused(format!(
                    "loading database {new} into the live server failed, and it was dropped again: {why}"
                )));
            }
            lines.push(format!("created and loaded on the live server as {new}"));
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_plain_and_renames_keep_their_suffix() {
        assert_eq!(
            TableName::parse("Sales.Orders").unwrap(),
            TableName {
                schema: "sales".into(),
                name: "orders".into()
            }
        );
        assert_eq!(TableName::parse("t").unwrap().schema, "public");
        for bad in [
            "a.b.c", "x;drop", "", "1t", "s.", ".t", "\"q", "a\"b", "\"\"", "\"a\"b", "\"a\".",
            "\"a\nb\"", "$x",
        ] {
            assert!(TableName::parse(bad).is_err(), "{bad}");
        }
        for (text, schema, name) in [
            ("\"Mixed Case\".tbl", "Mixed Case", "tbl"),
            ("public.\"dot.name\"", "public", "dot.name"),
            ("\"quo\"\"te\"", "public", "quo\"te"),
            ("\"a;b\".\"C\"", "a;b", "C"),
        ] {
            let parsed = TableName::parse(text).unwrap();
            assert_eq!(
                (parsed.schema.as_str(), parsed.name.as_str()),
                (schema, name)
            );
            assert_eq!(TableName::parse(&parsed.to_string()).unwrap(), parsed);
        }
        assert_eq!(
            TableName::parse("\"quo\"\"te\"").unwrap().to_string(),
            "public.\"quo\"\"te\""
        );
        assert_eq!(TableName::parse("\"x\".T").unwrap().to_string(), "x.t");
        assert_eq!(TableName::parse(&"a".repeat(63)).unwrap().name.len(), 63);
        assert!(TableName::parse(&"a".repeat(64)).is_err());
        for good in ["shop", "shop_2026", "app-prod", "x$"] {
            check_database_name(good).unwrap();
        }
        for bad in [
            "",
            "a\"; DROP DATABASE x; --",
            "host=evil dbname=x",
            "a b",
            &"d".repeat(64),
        ] {
            assert!(check_database_name(bad).is_err(), "{bad}");
        }
        assert_eq!(
            renamed("orders_pkey", "orders", "orders_back"),
            "orders_back_pkey"
        );
        assert_eq!(
            renamed("by_day", "orders", "orders_back"),
            "orders_back_by_day"
        );
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(renamed_with("p1", "events", "events"), "p1");
        assert_eq!(renamed_with("p1", "events", "ev"), "ev_p1");
        assert_eq!(
            renamed(&"é".repeat(40), "x", "y").len(),
            62,
            "cut on a character"
        );
    }

    #[test]
    fn the_rows_of_a_dump_are_counted_per_table_as_pg_dump_names_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("d.sql");
        std::fs::write(
            &file,
            "SET x = 1;\n\
             COPY public.events_back_p1 (id, v) FROM stdin;\n1\ta\n2\tb\\nc\n\\.\n\
             COPY \"Odd\"\"s\".\"my.table\" (id) FROM stdin;\n7\n\\.\n\
             COPY public.empty (id) FROM stdin;\n\\.\n\
             SELECT pg_catalog.setval('public.s', 3, true);\n",
        )
        .unwrap();
        let rows = copy_rows(&file).unwrap();
        let get = |s: &str, n: &str| rows.get(&(s.to_string(), n.to_string())).copied();
        assert_eq!(get("public", "events_back_p1"), Some(2));
        assert_eq!(get("Odd\"s", "my.table"), Some(1));
        assert_eq!(get("public", "empty"), Some(0));
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert_eq!(
            copy_target("COPY a.b FROM stdin;"),
            Some(("a".into(), "b".into()))
        );
        assert_eq!(copy_target("COPY a.b (x) TO stdout;"), None);
    }

    #[test]
    fn names_the_live_database_cannot_take_are_said() {
        assert_eq!(names_refused("shop", &[], &[]), None);
        let missing = names_refused("shop", &["other".into()], &[]).unwrap();
        assert!(missing.contains("has no schema other"), "{missing}");
        let taken = names_refused("shop", &[], &["public.t_restored".into()]).unwrap();
        assert!(taken.contains("already has public.t_restored"), "{taken}");
        let sql = taken_names_sql(&[("public".into(), "it's".into())], &[]);
        assert!(sql.contains("('public', 'it''s')"), "{sql}");
        assert!(sql.contains("WHERE false"), "{sql}");
    }
}
