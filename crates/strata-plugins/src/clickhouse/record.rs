//! What a ClickHouse node's backup records beside the frozen parts: the server's version
//! and macros, the databases and tables with their `CREATE` statements, and each table's
//! parts with their rows. It is stored as [`RECORD_FILE`] at the root of the node's
//! manifest (a file like the parts, so encrypted, deduplicated and verified like them)
//! and read back by the restore, which trusts nothing in it it has not checked: names
//! are matched against the part-name grammar and directories must stay relative.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where the record is in the node's manifest (relative to the frozen root).
pub const RECORD_FILE: &str = "strata-clickhouse.json";

/// The record layout this strata writes; a newer one is refused on restore. 2: tables
/// carry their `uuid` (servers with Atomic databases); 1 is read as 2 without it.
pub const RECORD_VERSION: u32 = 2;

/// The most a record may weigh when read back.
pub const RECORD_LIMIT: u64 = 256 << 20;

/// One node's ClickHouse backup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// [`RECORD_VERSION`] when written.
    pub version: u32,
    /// `SELECT version()` of the server (`18.16.1`).
    pub server_version: String,
    /// The server's macros (`shard`, `replica`), from `system.macros`.
    pub macros: BTreeMap<String, String>,
    /// The databases backed up, in the order they are created again.
    pub databases: Vec<Database>,
    /// The tables, views and dictionaries-as-tables of those databases.
    pub tables: Vec<Table>,
}

/// A database and how to create it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// Its name.
    pub name: String,
    /// Its engine (`Ordinary`, `Atomic`, ...).
    pub engine: String,
}

/// A table and, for the MergeTree family, its frozen parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    /// The database.
    pub database: String,
    /// The table's name (`.inner.NAME` for a materialized view's own storage).
    pub name: String,
    /// Its engine (`ReplicatedMergeTree`, `MaterializedView`, `Distributed`, ...).
    pub engine: String,
    /// `CREATE ...` as the server gives it, macros unexpanded.
    pub create: String,
    /// Where its frozen parts are, relative to the node's root (and to the server's
    /// path: `data/db/t`); none for a table without parts (views, Distributed, Log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Its coordination path in ZooKeeper, macros expanded, for a replicated table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zookeeper_path: Option<String>,
    /// Its UUID where the server gives tables one (`system.tables.uuid`, Atomic
    /// databases): a materialized view's storage is named after its view's
    /// (`.inner_id.UUID`), and a view created again gets a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// The parts frozen, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<Part>,
}

/// One frozen part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Part {
    /// The part's directory name (`202401_0_0_0`).
    pub name: String,
    /// Its rows (its `count.txt`).
    pub rows: u64,
    /// Its files' bytes.
    pub bytes: u64,
}

impl Table {
    /// `db.table`, quoted for SQL.
    pub fn sql_name(&self) -> String {
        format!(
            "{}.{}",
            super::client::ident(&self.database),
            super::client::ident(&self.name)
        )
    }

    /// `db.table` as people read it.
    pub fn shown(&self) -> String {
        format!("{}.{}", self.database, self.name)
    }

    /// Whether the table replicates through ZooKeeper: a part attached on one replica
    /// reaches the others by itself.
    pub fn replicated(&self) -> bool {
        self.engine.starts_with("Replicated")
    }

    /// Whether it is a materialized view's own storage, created by its view
    /// (`.inner.NAME`, or `.inner_id.UUID` in Atomic databases).
    pub fn inner(&self) -> bool {
        self.name.starts_with(".inner.") || self.name.starts_with(".inner_id.")
    }

    /// The rows of its parts.
    pub fn rows(&self) -> u64 {
        self.parts.iter().map(|p| p.rows).sum()
    }

    /// The rows of its parts per partition id (as `system.parts` names it; a part whose
    /// name does not parse counts under `""`).
    pub fn rows_by_partition(&self) -> BTreeMap<String, u64> {
        let mut rows = BTreeMap::new();
        for part in &self.parts {
            let id = super::part_name::partition_of(&part.name, &self.create).unwrap_or_default();
            *rows.entry(id).or_insert(0) += part.rows;
        }
        rows
    }

    /// When it is created again: tables that hold data first, then materialized views
    /// (they read from and write into those), then what only reads others (views,
    /// Distributed, Merge).
    pub fn create_order(&self) -> u8 {
        match self.engine.as_str() {
            "MaterializedView" => 1,
            "View" | "LiveView" | "Distributed" | "Merge" | "Dictionary" => 2,
            _ => 0,
        }
    }
}

/// Whether `name` is a part's directory name: `[A-Za-z0-9_-]` only (partition ids are
/// hex, numbers or `all`; names are `<partition>_<min>_<max>_<level>[_<mutation>]`), so
/// it can be neither a path nor a quote.
pub fn part_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.contains('_')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether `dir` is a relative path of plain components (no `..`, no leading `/`).
pub fn relative_dir_ok(dir: &str) -> bool {
    !dir.is_empty()
        && !dir.starts_with('/')
        && dir
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0'))
}

/// Why a record read back is not acted on.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// It does not decode.
    #[error("{RECORD_FILE}: {0}")]
    Decode(#[from] serde_json::Error),
    /// A newer strata wrote it.
    #[error("{RECORD_FILE} is of layout {0}; this strata reads up to {RECORD_VERSION}: restore with a newer strata")]
    Newer(u32),
    /// A table's directory leaves the root.
    #[error(
        "{RECORD_FILE}: table {table} names directory {dir:?}, which is not a plain relative path"
    )]
    Directory {
        /// `db.table`.
        table: String,
        /// The directory named.
        dir: String,
    },
    /// A statement that does not create what the record says it does.
    #[error("{RECORD_FILE}: the statement recorded for {table} does not create it")]
    Statement {
        /// `db.table`.
        table: String,
    },
    /// A database engine that is not a bare name.
    #[error(
        "{RECORD_FILE}: database {database} names engine {engine:?}, which is not an engine name"
    )]
    Engine {
        /// The database.
        database: String,
        /// The engine given.
        engine: String,
    },
    /// A part's name is not one.
    #[error("{RECORD_FILE}: table {table} names part {part:?}, which is not a part name")]
    PartName {
        /// `db.table`.
        table: String,
        /// The name given.
        part: String,
    },
}

impl Record {
    /// Reads a record back and checks what a restore will act on.
    pub fn parse(bytes: &[u8]) -> Result<Record, RecordError> {
        let record: Record = serde_json::from_slice(bytes)?;
        if record.version > RECORD_VERSION {
            return Err(RecordError::Newer(record.version));
        }
        for db in &record.databases {
            let bare = db
                .engine
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !bare {
                return Err(RecordError::Engine {
                    database: db.name.clone(),
                    engine: db.engine.clone(),
                });
            }
        }
        for table in &record.tables {
            let creates = super::rename::created_name(&table.create);
            if creates != Some((table.database.clone(), table.name.clone())) {
                return Err(RecordError::Statement {
                    table: table.shown(),
                });
            }
            if let Some(dir) = table.data.as_ref().filter(|d| !relative_dir_ok(d)) {
                return Err(RecordError::Directory {
                    table: table.shown(),
                    dir: dir.clone(),
                });
            }
            if let Some(bad) = table.parts.iter().find(|p| !part_name_ok(&p.name)) {
                return Err(RecordError::PartName {
                    table: table.shown(),
                    part: bad.name.clone(),
                });
            }
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names_are_never_paths_or_quotes() {
        for good in [
            "202401_0_0_0",
            "all_1_3_1",
            "20240120_20240131_1_1_0",
            "ab12_0_5_1_7",
        ] {
            assert!(part_name_ok(good), "{good}");
        }
        for bad in ["", "..", "a/b_1", "x'_1", "foo", "a b_1", "../etc_1"] {
            assert!(!part_name_ok(bad), "{bad}");
        }
    }

    #[test]
    fn a_record_that_points_outside_its_root_is_refused() {
        let mut record = Record {
            version: RECORD_VERSION,
            ..Record::default()
        };
        record.tables.push(Table {
            database: "db".into(),
            name: "t".into(),
            engine: "MergeTree".into(),
            create: "CREATE TABLE db.t (x UInt8) ENGINE = MergeTree() ORDER BY x".into(),
            data: Some("data/../../etc".into()),
            zookeeper_path: None,
            uuid: None,
            parts: Vec::new(),
        });
        let bytes = serde_json::to_vec(&record).unwrap();
        let err = Record::parse(&bytes).unwrap_err().to_string();
        assert!(err.contains("not a plain relative path"), "{err}");
        record.tables[0].data = Some("data/db/t".into());
        record.tables[0].parts.push(Part {
            name: "../x_1".into(),
            rows: 1,
            bytes: 1,
        });
        let err = Record::parse(&serde_json::to_vec(&record).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a part name"), "{err}");
        record.tables[0].parts[0].name = "all_1_1_0".into();
        // A statement that does something else than create the recorded table.
        let mut hostile = record.clone();
        hostile.tables[0].create = "DROP DATABASE db".into();
        let err = Record::parse(&serde_json::to_vec(&hostile).unwrap()).unwrap_err();
        assert!(err.to_string().contains("does not create it"), "{err}");
        hostile.tables[0].create = "CREATE TABLE db.other (x UInt8) ENGINE = Memory".into();
        assert!(Record::parse(&serde_json::to_vec(&hostile).unwrap()).is_err());
        assert_eq!(
            Record::parse(&serde_json::to_vec(&record).unwrap()).unwrap(),
            record
        );
    }

    #[test]
    fn a_newer_record_is_refused_with_what_to_do() {
        let record = Record {
            version: RECORD_VERSION + 1,
            ..Record::default()
        };
        let err = Record::parse(&serde_json::to_vec(&record).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("newer strata"), "{err}");
    }
}

#[cfg(test)]
mod version_one {
    use super::*;

    /// Records of version 1 (strata before tables carried their UUID) read as they were.
    #[test]
    fn a_record_of_version_one_reads() {
        let text = r#"{"version":1,"server_version":"18.16.1","macros":{"shard":"1"},
            "databases":[{"name":"shop","engine":"Ordinary"}],
            "tables":[{"database":"shop","name":"events","engine":"MergeTree",
              "create":"CREATE TABLE shop.events (x UInt8) ENGINE = MergeTree() ORDER BY x",
              "data":"data/shop/events","parts":[{"name":"all_1_1_0","rows":3,"bytes":10}]}]}"#;
        let record = Record::parse(text.as_bytes()).unwrap();
        assert_eq!(record.version, 1);
        assert_eq!(record.tables[0].uuid, None);
        assert_eq!(record.tables[0].rows(), 3);
    }
}
