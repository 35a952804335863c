//! The ClickHouse part of a restore drill (`strata verify --restore`): a scratch
//! ClickHouse server started on the node's restored copy, its tables created without
//! replication (a drill has no ZooKeeper and must never join the live cluster's), every
//! part attached, and each table's rows counted against the backup's record and read
//! whole (`SELECT * ... FORMAT Null`: ClickHouse checks every compressed block's checksum
//! as it reads; `CHECK TABLE` too where the version has it for MergeTree tables).
//!
//! The server listens on 127.0.0.1 only, on ports the kernel chose, runs from a
//! directory under the drill's scratch space and is killed when the proof ends.

use super::client::{ident, literal, Client};
use super::record::{Record, Table, RECORD_FILE, RECORD_LIMIT};
use super::rename;
use super::staging;
use serde::Deserialize;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use strata_cluster::config::ClickHouseNode;

/// How long the scratch server may take to answer.
const START_LIMIT: Duration = Duration::from_secs(60);

pub use crate::Proof;

/// The server binary of this host: Debian's `clickhouse-server`, or the single
/// `clickhouse` binary of newer releases (`clickhouse server`).
fn server_command() -> Option<(PathBuf, Vec<&'static str>)> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .collect();
    for (name, args) in [
        ("clickhouse-server", vec![]),
        ("clickhouse", vec!["server"]),
    ] {
        if let Some(found) = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
            return Some((found, args));
        }
    }
    None
}

/// Proves the ClickHouse node restored at `copy` (its frozen tree and record) in a
/// scratch server under `work`, which is removed afterwards.
pub async fn prove(copy: &Path, work: &Path) -> Proof {
    let Some((binary, args)) = server_command() else {
        return Proof {
            skipped: Some(
                "ClickHouse tables not started: no clickhouse-server or clickhouse on this host"
                    .into(),
            ),
            ..Proof::default()
        };
    };
    let result = run(copy, work, &binary, &args).await;
    let _ = std::fs::remove_dir_all(work);
    match result {
        Ok(proof) => proof,
        Err(why) => Proof {
            damaged: vec![why.0],
            ..Proof::default()
        },
    }
}

/// Why a node or a table could not be proven: one line of the drill's report.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unproven(String);

impl From<String> for Unproven {
    fn from(line: String) -> Self {
        Unproven(line)
    }
}

impl From<&str> for Unproven {
    fn from(line: &str) -> Self {
        Unproven(line.to_string())
    }
}

/// A child killed when dropped.
struct Scratch(std::process::Child);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn run(copy: &Path, work: &Path, binary: &Path, args: &[&str]) -> Result<Proof, Unproven> {
    let mut bytes = Vec::new();
    std::fs::File::open(copy.join(RECORD_FILE))
        .and_then(|f| f.take(RECORD_LIMIT).read_to_end(&mut bytes))
        .map_err(|e| format!("the restored copy holds no readable {RECORD_FILE}: {e}"))?;
    let record = Record::parse(&bytes).map_err(|e| e.to_string())?;
    let data = work.join("data");
    for dir in ["data", "tmp", "user_files", "format_schemas", "log"] {
        std::fs::create_dir_all(work.join(dir)).map_err(|e| format!("{}: {e}", work.display()))?;
    }
    let (http, tcp) = (free_port()?, free_port()?);
    let config = work.join("config.xml");
    std::fs::write(&config, config_xml(work, http, tcp, &record))
        .and_then(|()| std::fs::write(work.join("users.xml"), USERS_XML))
        .map_err(|e| format!("{}: {e}", config.display()))?;
    let log = std::fs::File::create(work.join("log/stdout.log")).map_err(|e| e.to_string())?;
    let child = std::process::Command::new(binary)
        .args(args)
        .arg(format!("--config-file={}", config.display()))
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let mut server = Scratch(child);
    let client = Client::new(&ClickHouseNode {
        url: format!("http://127.0.0.1:{http}"),
        path: data.clone(),
        user: "default".into(),
        password_env: None,
        password_file: None,
        databases: Vec::new(),
        query_timeout: "10m".into(),
        restore_wait: "10m".into(),
        zookeeper: Vec::new(),
    })
    .map_err(|e| e.to_string())?;
    let started = Instant::now();
    while client.execute("SELECT 1").await.is_err() {
        if let Ok(Some(status)) = server.0.try_wait() {
            return Err(format!(
                "the scratch ClickHouse server exited ({status}): see its log under {}",
                work.display()
            )
            .into());
        }
        if started.elapsed() > START_LIMIT {
            return Err(format!(
                "the scratch ClickHouse server did not answer within {START_LIMIT:?}"
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The server that answered is the one started here, not another on a reused port.
    #[derive(Deserialize)]
    struct SystemPath {
        data_path: String,
    }
    let ours = client
        .rows::<SystemPath>("SELECT data_path FROM system.databases WHERE name = 'system'")
        .await
        .map_err(|e| e.to_string())?;
    if !ours
        .iter()
        .any(|p| Path::new(&p.data_path).starts_with(&data))
    {
        return Err("another server answered on the scratch server's port".into());
    }
    // Merges would change the rows of Summing and Replacing tables before they are
    // counted: none in a drill.
    client
        .execute("SYSTEM STOP MERGES")
        .await
        .map_err(|e| e.to_string())?;
    let mut proof = Proof::default();
    for db in &record.databases {
        client
            .execute(&format!(
                "CREATE DATABASE IF NOT EXISTS {}",
                ident(&db.name)
            ))
            .await
            .map_err(|e| e.to_string())?;
    }
    let settings = super::schema::creation_settings(&client)
        .await
        .map_err(|e| e.to_string())?;
    for table in record.tables.iter().filter(|t| t.data.is_some()) {
        match check_table(&client, &settings, copy, &data, table).await {
            Ok(line) => proof.checked.push(line),
            Err(why) => proof
                .damaged
                .push(format!("table {}: {why}", table.shown())),
        }
    }
    drop(server);
    Ok(proof)
}

/// Creates one table unreplicated, attaches its parts and reads it whole.
async fn check_table(
    client: &Client,
    settings: &[(String, String)],
    copy: &Path,
    data: &Path,
    table: &Table,
) -> Result<String, Unproven> {
    let create = rename::unreplicated(&table.create).map_err(|e| e.to_string())?;
    client
        .execute_with(&create, settings)
        .await
        .map_err(|e| e.to_string())?;
    let (_, tables) = super::schema::read(client, std::slice::from_ref(&table.database), data)
        .await
        .map_err(|e| e.to_string())?;
    let dir = tables
        .into_iter()
        .find(|t| t.name == table.name)
        .and_then(|t| t.data)
        .map(|rel| data.join(rel))
        .ok_or("the scratch server gave no data directory for it")?;
    let frozen = copy.join(table.data.as_deref().unwrap_or_default());
    for part in &table.parts {
        staging::move_to_detached(&frozen.join(&part.name), &dir).map_err(|e| e.to_string())?;
        client
            .execute(&format!(
                "ALTER TABLE {} ATTACH PART {}",
                table.sql_name(),
                literal(&part.name)
            ))
            .await
            .map_err(|e| format!("part {}: {e}", part.name))?;
    }
    let rows = client
        .count(&table.sql_name())
        .await
        .map_err(|e| e.to_string())?;
    if rows != table.rows() {
        return Err(format!(
            "{rows} rows came back, the backup recorded {}",
            table.rows()
        )
        .into());
    }
    client
        .execute(&format!("SELECT * FROM {} FORMAT Null", table.sql_name()))
        .await
        .map_err(|e| format!("its data does not read back: {e}"))?;
    let check = match client
        .execute(&format!("CHECK TABLE {}", table.sql_name()))
        .await
    {
        Ok(answer) => match check_failures(&answer) {
            None => ", CHECK TABLE passed",
            Some(failed) => return Err(format!("CHECK TABLE answered {failed}").into()),
        },
        // 48: not supported for this engine in this version (18.16's MergeTree).
        Err(e) if e.code() == Some(48) => "",
        Err(e) => return Err(format!("CHECK TABLE: {e}").into()),
    };
    Ok(format!(
        "table {}: {} parts, {rows} rows as recorded, every block read{check}",
        table.shown(),
        table.parts.len()
    ))
}

/// What `CHECK TABLE` found wrong, if anything: its answer is one `1` or `0` (up to
/// 22.x), or one line per part, `part  is_passed  message` (later versions).
fn check_failures(answer: &str) -> Option<String> {
    let lines: Vec<&str> = answer.lines().filter(|l| !l.trim().is_empty()).collect();
    let failed: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let passed = fields.get(1).or(fields.first()).map(|f| f.trim());
            passed != Some("1")
        })
        .collect();
    match (lines.is_empty(), failed.is_empty()) {
        (true, _) => Some("nothing".into()),
        (false, true) => None,
        (false, false) => Some(failed.join("; ").replace('\t', " ")),
    }
}

fn free_port() -> Result<u16, Unproven> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port on 127.0.0.1: {e}").into())
}

fn config_xml(work: &Path, http: u16, tcp: u16, record: &Record) -> String {
    let d = work.display();
    let macros: String = record
        .macros
        .iter()
        .filter(|(k, _)| k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .map(|(k, v)| format!("<{k}>{}</{k}>", xml_text(v)))
        .collect();
    format!(
        r#"<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{d}/log/server.log</log><errorlog>{d}/log/server.err.log</errorlog><console>0</console></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{http}</http_port>
  <tcp_port>{tcp}</tcp_port>
  <path>{d}/data/</path>
  <tmp_path>{d}/tmp/</tmp_path>
  <user_files_path>{d}/user_files/</user_files_path>
  <format_schema_path>{d}/format_schemas/</format_schema_path>
  <users_config>{d}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>67108864</mark_cache_size>
  <macros>{macros}</macros>
</yandex>
"#
    )
}

fn xml_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

const USERS_XML: &str = r#"<?xml version="1.0"?>
<yandex>
  <profiles><default></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default></default></quotas>
</yandex>
"#;

#[cfg(test)]
mod tests {
    use super::check_failures;

    #[test]
    fn check_table_answers_of_every_version_are_read() {
        assert_eq!(check_failures("1\n"), None);
        assert_eq!(check_failures("0\n").as_deref(), Some("0"));
        assert_eq!(
            check_failures("202601_1_1_1\t1\t\n202602_2_2_1\t1\t\n"),
            None
        );
        assert_eq!(
            check_failures("202601_1_1_1\t1\t\n202602_2_2_1\t0\tchecksum mismatch\n").as_deref(),
            Some("202602_2_2_1 0 checksum mismatch")
        );
        assert_eq!(check_failures("").as_deref(), Some("nothing"));
    }
}
