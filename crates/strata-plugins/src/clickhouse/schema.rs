//! The server's schema as a backup records it: its version and macros, the databases
//! and tables with their `CREATE` statements, and where each MergeTree table's data is.
//!
//! Columns differ between ClickHouse versions (`system.tables.data_path` in 18.x-20.x,
//! `data_paths` later, when tables moved under `store/` by UUID); which one a server has
//! is asked of `system.columns`, not guessed from the version number.

use super::client::{literal, ClickHouseError, Client};
use super::record::{Database, Table};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The databases a backup never takes: the server's own.
const SYSTEM_DATABASES: &[&str] = &["system", "INFORMATION_SCHEMA", "information_schema"];

/// The UUID of a table outside Atomic databases.
const NIL_UUID: &str = "00000000-0000-0000-0000-000000000000";

/// What a server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// `SELECT version()`.
    pub version: String,
    /// `system.macros`: `shard`, `replica` and the rest.
    pub macros: BTreeMap<String, String>,
}

impl Server {
    /// Asks the server.
    pub async fn read(client: &Client) -> Result<Server, ClickHouseError> {
        #[derive(Deserialize)]
        struct Version {
            version: String,
        }
        #[derive(Deserialize)]
        struct Macro {
            macro_name: String,
            substitution: String,
        }
        let version = client
            .rows::<Version>("SELECT version() AS version")
            .await?
            .pop()
            .map(|v| v.version)
            .unwrap_or_default();
        let macros = client
            .rows::<Macro>("SELECT macro AS macro_name, substitution FROM system.macros")
            .await?
            .into_iter()
            .map(|m| (m.macro_name, m.substitution))
            .collect();
        Ok(Server { version, macros })
    }

    /// A line for `strata status`.
    pub fn line(&self) -> String {
        let mut line = format!("ClickHouse {}", self.version);
        if let Some(shard) = self.macros.get("shard") {
            line.push_str(&format!(", shard {shard}"));
        }
        if let Some(replica) = self.macros.get("replica") {
            line.push_str(&format!(", replica {replica}"));
        }
        line
    }
}

/// Whether tables of `engine` hold parts that `ALTER TABLE ... FREEZE` copies.
pub fn freezable(engine: &str) -> bool {
    engine.ends_with("MergeTree")
}

/// Whether tables of `engine` hold data no freeze copies (their definition is backed
/// up, their rows are not).
pub fn data_not_frozen(engine: &str) -> bool {
    matches!(
        engine,
        "Log" | "TinyLog" | "StripeLog" | "Memory" | "Set" | "Join" | "File" | "Buffer"
    )
}

/// The databases and tables to back up (`only`: these databases; none: all but the
/// server's own), with where each MergeTree table's data is relative to `server_path`.
pub async fn read(
    client: &Client,
    only: &[String],
    server_path: &Path,
) -> Result<(Vec<Database>, Vec<Table>), ClickHouseError> {
    #[derive(Deserialize)]
    struct Db {
        name: String,
        engine: String,
    }
    #[derive(Deserialize)]
    struct Tbl {
        database: String,
        name: String,
        engine: String,
        create_table_query: String,
        data_path: String,
        disks: u64,
        uuid: String,
    }
    #[derive(Deserialize)]
    struct Replica {
        database: String,
        table: String,
        zookeeper_path: String,
    }
    #[derive(Deserialize)]
    struct Column {
        name: String,
    }
    let chosen = |name: &str| match only.is_empty() {
        true => !SYSTEM_DATABASES.contains(&name),
        false => only.iter().any(|o| o == name),
    };
    let databases: Vec<Database> = client
        .rows::<Db>("SELECT name, engine FROM system.databases ORDER BY name")
        .await?
        .into_iter()
        .filter(|d| chosen(&d.name))
        .map(|d| Database {
            name: d.name,
            engine: d.engine,
        })
        .collect();
    if let Some(missing) = only
        .iter()
        .find(|o| !databases.iter().any(|d| &d.name == *o))
    {
        return Err(ClickHouseError::Settings(format!(
            "[nodes.clickhouse] databases names {missing:?}, which the server at {} does not have",
            client.url()
        )));
    }
    // 18.x-20.x: `data_path`; later: `data_paths`, an array.
    let columns = client
        .rows::<Column>(
            "SELECT name FROM system.columns WHERE database = 'system' AND table = 'tables'",
        )
        .await?;
    let data_path = match columns.iter().any(|c| c.name == "data_path") {
        true => "data_path, toUInt64(1) AS disks",
        false => {
            "arrayStringConcat(arraySlice(data_paths, 1, 1)) AS data_path, toUInt64(length(data_paths)) AS disks"
        }
    };
    // 20.x and later: each table's UUID (nil outside Atomic databases).
    let uuid = match columns.iter().any(|c| c.name == "uuid") {
        true => "toString(uuid) AS uuid",
        false => "'' AS uuid",
    };
    let names = databases
        .iter()
        .map(|d| literal(&d.name))
        .collect::<Vec<_>>()
        .join(", ");
    if names.is_empty() {
        return Ok((databases, Vec::new()));
    }
    let rows = client
        .rows::<Tbl>(&format!(
            "SELECT database, name, engine, create_table_query, {data_path}, {uuid} FROM system.tables WHERE database IN ({names}) AND NOT is_temporary ORDER BY database, name"
        ))
        .await?;
    let replicas: BTreeMap<(String, String), String> = client
        .rows::<Replica>(&format!(
            "SELECT database, table, zookeeper_path FROM system.replicas WHERE database IN ({names})"
        ))
        .await?
        .into_iter()
        .map(|r| ((r.database, r.table), r.zookeeper_path))
        .collect();
    let root = server_path.to_string_lossy();
    let root = root.trim_end_matches('/');
    let mut tables = Vec::new();
    for row in rows {
        let data = match freezable(&row.engine) {
            false => None,
            // Parts on other disks would be missing from the frozen copy without a word.
            true if row.disks > 1 => {
                return Err(ClickHouseError::Settings(format!(
                    "table {}.{} keeps its parts on {} disks; strata backs up tables on one disk (the server's path) only",
                    row.database, row.name, row.disks
                )))
            }
            true => {
                let relative = row
                    .data_path
                    .strip_prefix(root)
                    .filter(|rest| rest.starts_with('/'))
                    .map(|rest| rest.trim_matches('/').to_string())
                    .filter(|rest| super::record::relative_dir_ok(rest))
                    .ok_or_else(|| {
                        ClickHouseError::Settings(format!(
                            "table {}.{} keeps its data at {:?}, outside [nodes.clickhouse] path {root:?}: give the server's <path>",
                            row.database, row.name, row.data_path
                        ))
                    })?;
                Some(relative)
            }
        };
        let zookeeper_path = replicas
            .get(&(row.database.clone(), row.name.clone()))
            .cloned();
        tables.push(Table {
            database: row.database,
            name: row.name,
            engine: row.engine,
            create: row.create_table_query,
            data,
            zookeeper_path,
            uuid: Some(row.uuid).filter(|u| !u.is_empty() && u != NIL_UUID),
            parts: Vec::new(),
        });
    }
    Ok((databases, tables))
}

/// The settings a recorded `CREATE` is run with in a restore or a drill: every
/// `allow_experimental_*` and `allow_suspicious_*` setting this server has, on. The
/// statement was accepted by the server it was recorded from, whose profile allowed what
/// it needs (on 18.16 a `LowCardinality` column needs
/// `allow_experimental_low_cardinality_type`); replaying it must not fail for want of a
/// permission the source had. They allow a statement; they change no data.
pub async fn creation_settings(client: &Client) -> Result<Vec<(String, String)>, ClickHouseError> {
    #[derive(Deserialize)]
    struct Setting {
        name: String,
    }
    let rows = client
        .rows::<Setting>(
            "SELECT name FROM system.settings WHERE name LIKE 'allow_experimental%' OR name LIKE 'allow_suspicious%'",
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|s| (s.name, "1".to_string()))
        .collect())
}
