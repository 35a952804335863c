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
    /// `SCHEMA.TABLE` or `TABLE` (schema `public`). Names are plain identifiers
    /// (letters, digits, `_`, `$`), compared as PostgreSQL folds unquoted ones (lower
    /// case).
    pub fn parse(text: &str) -> Result<TableName, String> {
        let (schema, name) = match text.split_once('.') {
            Some((schema, name)) => (schema, name),
            None => ("public", text),
        };
        for part in [schema, name] {
            let plain = !part.is_empty()
                && part.len() <= 63
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
                && !part.starts_with(|c: char| c.is_ascii_digit());
            if !plain {
                return Err(format!(
                    "{text:?}: give SCHEMA.TABLE with plain names (letters, digits, '_')"
                ));
            }
        }
        Ok(TableName {
            schema: schema.to_ascii_lowercase(),
            name: name.to_ascii_lowercase(),
        })
    }

    /// `schema.name`, quoted for SQL.
    pub fn sql(&self) -> String {
        format!("\"{}\".\"{}\"", self.schema, self.name)
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// Checks a database name given by the user (the command line, an API body): 1 to 63
/// letters, digits, `_`, `-` or `$`. It is named in SQL on the scratch server (a
/// superuser) and passed to `psql -d`, which would read a `=` as a connection string:
/// nothing else gets through.
pub fn check_database_name(name: &str) -> Result<(), String> {
    let plain = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-$".contains(&b));
    match plain {
        true => Ok(()),
        false => Err(format!(
            "database {name:?}: give a name of 1 to 63 letters, digits, '_', '-' or '$'"
        )),
    }
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
    /// The tables, each with the name it comes back under (in its schema).
    pub tables: Vec<(TableName, String)>,
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

/// A quoted SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `new` for something named after table `old` (`t_pkey` → `new_pkey`), else `new_` in
/// front of `name`; cut to PostgreSQL's 63 bytes.
fn renamed(name: &str, old: &str, new: &str) -> String {
    let out = match name.strip_prefix(old) {
        Some(rest) => format!("{new}{rest}"),
        None => format!("{new}_{name}"),
    };
    out.chars().take(63).collect()
}

/// Renames `table` to `new` on the scratch server, with its indexes and owned sequences;
/// returns the number of rows it holds.
fn rename_on_scratch(
    scratch: &Scratch,
    database: &str,
    table: &TableName,
    new: &str,
) -> PgResult<u64> {
    let exists = scratch_sql(
        scratch,
        database,
        &format!(
            "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = {} AND c.relname = {}",
            literal(&table.schema),
            literal(&table.name)
        ),
    )?;
    match exists.as_str() {
        "r" | "p" => {}
        "" => {
            return Err(PgError::Refused(format!(
                "table {table} is not in database {database} at that point of the backup"
            )))
        }
        other => {
            return Err(PgError::Refused(format!(
                "{table} is not a table (relkind {other:?})"
            )))
        }
    }
    let rows: u64 = scratch_sql(
        scratch,
        database,
        &format!("SELECT count(*) FROM {}", table.sql()),
    )?
    .parse()
    .unwrap_or(0);
    if new == table.name {
        return Ok(rows);
    }
    let indexes = scratch_sql(
        scratch,
        database,
        &format!(
            "SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = {}::regclass",
            literal(&table.sql())
        ),
    )?;
    let sequences = scratch_sql(
        scratch,
        database,
        &format!(
            "SELECT s.relname FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' WHERE d.refobjid = {}::regclass AND d.deptype IN ('a', 'i')",
            literal(&table.sql())
        ),
    )?;
    let mut sql = vec![format!("ALTER TABLE {} RENAME TO \"{new}\"", table.sql())];
    for index in indexes.lines().filter(|l| !l.is_empty()) {
        sql.push(format!(
            "ALTER INDEX \"{}\".\"{index}\" RENAME TO \"{}\"",
            table.schema,
            renamed(index, &table.name, new)
        ));
    }
    for sequence in sequences.lines().filter(|l| !l.is_empty()) {
        sql.push(format!(
            "ALTER SEQUENCE \"{}\".\"{sequence}\" RENAME TO \"{}\"",
            table.schema,
            renamed(sequence, &table.name, new)
        ));
    }
    scratch_sql(
        scratch,
        database,
        &format!("BEGIN; {}; COMMIT", sql.join("; ")),
    )?;
    Ok(rows)
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

/// Refuses names the live database already has, before anything is loaded.
fn check_live_free(
    scratch: &Scratch,
    live: &ConnectSettings,
    request: &TableRequest,
) -> PgResult<()> {
    for (table, new) in &request.tables {
        let mut cmd = std::process::Command::new(scratch.bin.join("psql"));
        live_env(&mut cmd, live, &request.database);
        let out = cmd
            .args(["-X", "-Atq", "-c"])
            .arg(format!(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = {} AND c.relname = {}",
                literal(&table.schema),
                literal(new)
            ))
            .output()
            .map_err(PgError::io("cannot run", scratch.bin.join("psql")))?;
        if !out.status.success() {
            return Err(PgError::Refused(format!(
                "cannot reach the live database {}: {}",
                request.database,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        if String::from_utf8_lossy(&out.stdout).trim() != "0" {
            return Err(PgError::Refused(format!(
                "the live database {} already has {}.{new}: choose another name with --as",
                request.database, table.schema
            )));
        }
    }
    Ok(())
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

/// Loads the dump `file` into the live `database` in one transaction, stopping at the
/// first error (so nothing of it stays); why it failed otherwise.
fn load_into_live(
    scratch: &Scratch,
    live: &ConnectSettings,
    database: &str,
    file: &std::path::Path,
) -> Result<(), String> {
    let dump = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut cmd = std::process::Command::new(scratch.bin.join("psql"));
    live_env(&mut cmd, live, database);
    let out = cmd
        .args(["-X", "-q", "--single-transaction", "-v", "ON_ERROR_STOP=1"])
        .stdin(Stdio::from(dump))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    match out.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
    }
}

/// Brings the tables of `request` back from the running, promoted scratch server;
/// returns a line per table.
pub fn bring_back(scratch: &Scratch, request: &TableRequest) -> PgResult<Vec<String>> {
    if let Destination::Live(live) = &request.destination {
        check_live_free(scratch, live, request)?;
    }
    let mut lines = Vec::new();
    let mut dump_args: Vec<String> = vec![
        "-d".into(),
        request.database.clone(),
        "--no-publications".into(),
        "--no-subscriptions".into(),
    ];
    for (table, new) in &request.tables {
        let rows = rename_on_scratch(scratch, &request.database, table, new)?;
        dump_args.push("--table".into());
        dump_args.push(format!("\"{}\".\"{new}\"", table.schema));
        lines.push(format!("{table}: {rows} rows, as {}.{new}", table.schema));
    }
    // Into a file (a table may be larger than memory), whole before it is used.
    let file = match &request.destination {
        Destination::Dump(path) => path.clone(),
        Destination::Live(_) => scratch.work.join("tables.sql"),
    };
    dump_into(scratch, &dump_args, &file)?;
    match &request.destination {
        Destination::Dump(path) => lines.push(format!("written to {}", path.display())),
        Destination::Live(live) => {
            load_into_live(scratch, live, &request.database, &file).map_err(|why| {
                PgError::Refused(format!(
                    "loading into the live database {} failed, nothing was loaded: {why}",
                    request.database
                ))
            })?;
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
            if let Err(why) = load_into_live(scratch, live, new, &file) {
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
        for bad in ["a.b.c", "x;drop", "\"q\"", "", "1t", "s."] {
            assert!(TableName::parse(bad).is_err(), "{bad}");
        }
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
    }
}
