//! The ClickHouse plugin through the real binary against a current ClickHouse engine
//! (26.x: chdb, PyPI `chdb-core`, served over ClickHouse's HTTP interface on loopback by
//! the test kit), single node: Atomic databases with tables under `store/` by UUID,
//! `data_paths`, a materialized view whose storage is named after the view's UUID,
//! `CHECK TABLE` answering per part. A backup, a restore onto a fresh engine, one table
//! back, a partition back into the live table and the restore drill (whose scratch
//! server is the same engine).

use crate::common;

use common::{assert_success, strata_at};
use std::fs;
use std::path::{Path, PathBuf};
use strata_testkit::clickhouse::{query, ModernServer, Server};

const SCHEMA: &[&str] = &[
    "CREATE DATABASE `shop-eu`",
    "CREATE TABLE `shop-eu`.events (d Date, id UInt64, s String, kind LowCardinality(String)) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(d) ORDER BY id",
    "CREATE MATERIALIZED VIEW `shop-eu`.daily ENGINE = SummingMergeTree ORDER BY d AS SELECT d, count() AS c FROM `shop-eu`.events GROUP BY d",
    "CREATE TABLE `shop-eu`.totals (k String, n UInt64) ENGINE = SummingMergeTree ORDER BY k",
    "CREATE VIEW `shop-eu`.recent AS SELECT id, s FROM `shop-eu`.events WHERE id > 1000",
];

/// A config with the one node `ch1` at `server`, in `dir` under `name`.
fn site(dir: &Path, name: &str, server: &Server) -> PathBuf {
    let config = dir.join(format!("{name}.toml"));
    fs::write(
        &config,
        format!(
            "default_storage = \"main\"\nstate_dir = {state:?}\n[storages.main]\npath = {repo:?}\n\
             [[nodes]]\nname = \"ch1\"\n[nodes.clickhouse]\nurl = \"{url}\"\npath = {data:?}\n\
             [[components]]\nname = \"warehouse\"\nplugin = \"clickhouse\"\nnodes = [\"ch1\"]\n",
            state = dir.join(format!("{name}-state")),
            repo = dir.join("repo"),
            url = server.url,
            data = server.data,
        ),
    )
    .unwrap();
    config
}

fn strata(dir: &Path, config: &Path, args: &[&str]) -> String {
    assert_success(
        &format!("strata {args:?}"),
        &strata_at(dir, config).args(args).output().unwrap(),
    )
}

/// `count, checksum` of a table.
fn fingerprint(url: &str, table: &str) -> String {
    query(
        url,
        &format!("SELECT count(), sum(cityHash64(*)) FROM {table}"),
    )
}

#[test]
fn a_current_engine_is_backed_up_restored_a_table_and_a_partition_brought_back_and_drilled() {
    let Some(python) = ModernServer::python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let source = ModernServer::start(&python);
    let url = &source.server.url;
    assert!(query(url, "SELECT version()").starts_with("26."));
    for sql in SCHEMA {
        query(url, sql);
    }
    for month in 0..3 {
        query(
            url,
            &format!(
                "INSERT INTO `shop-eu`.events SELECT toDate('2026-01-01') + {month} * 31 + number % 28, {month} * 100000 + number, toString(cityHash64(number)), toString(number % 7) FROM numbers(20000)"
            ),
        );
    }
    query(
        url,
        "INSERT INTO `shop-eu`.totals SELECT toString(number % 13), number FROM numbers(5000)",
    );
    let tables = ["`shop-eu`.events", "`shop-eu`.daily", "`shop-eu`.totals"];
    let want: Vec<String> = tables.iter().map(|t| fingerprint(url, t)).collect();
    let config = site(dir.path(), "source", &source.server);
    strata(dir.path(), &config, &["init"]);
    let out = strata(dir.path(), &config, &["backup", "--json"]);
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["status"], "complete", "{out}");
    let backup = summary["name"].as_str().unwrap().to_string();
    assert!(
        out.contains("26.9."),
        "the node summary names the version: {out}"
    );

    // Onto a fresh engine: every table holds what the source held, and the view writes
    // to its restored storage (found under the new view's UUID).
    let target = ModernServer::start(&python);
    let t = &target.server.url;
    let config_t = site(dir.path(), "target", &target.server);
    let out = strata(dir.path(), &config_t, &["restore", &backup]);
    assert!(out.contains("shop-eu.events 60000 rows attached"), "{out}");
    let got: Vec<String> = tables.iter().map(|table| fingerprint(t, table)).collect();
    assert_eq!(got, want);
    assert_eq!(
        query(t, "SELECT count() FROM `shop-eu`.recent"),
        query(url, "SELECT count() FROM `shop-eu`.recent")
    );
    assert_eq!(query(url, "SELECT sum(c) FROM `shop-eu`.daily"), "60000");
    query(
        t,
        "INSERT INTO `shop-eu`.events VALUES ('2026-01-02', 999999, 'new', 'x')",
    );
    assert_eq!(query(t, "SELECT sum(c) FROM `shop-eu`.daily"), "60001");

    // One table back beside the live one.
    let out = strata(
        dir.path(),
        &config,
        &[
            "restore",
            &backup,
            "--table",
            "shop-eu.events",
            "--as",
            "events_back",
        ],
    );
    assert!(
        out.contains("shop-eu.events_back 60000 rows attached"),
        "{out}"
    );
    assert_eq!(fingerprint(url, "`shop-eu`.events_back"), want[0]);

    // A partition dropped by mistake comes back into the live table.
    query(url, "ALTER TABLE `shop-eu`.events DROP PARTITION 202602");
    let out = strata(
        dir.path(),
        &config,
        &[
            "restore",
            &backup,
            "--table",
            "shop-eu.events",
            "--as",
            "events",
            "--partition",
            "202602",
        ],
    );
    assert!(out.contains("shop-eu.events 20000 rows attached"), "{out}");
    assert_eq!(fingerprint(url, "`shop-eu`.events"), want[0]);

    // The drill starts this engine as its scratch server (first in PATH): every table
    // counted against the record, read whole, CHECK TABLE's per-part answer read.
    let out = strata_at(dir.path(), &config)
        .env("PATH", source.path_with_bin())
        .args(["verify", &backup, "--restore", "--json"])
        .output()
        .unwrap();
    let text = assert_success("strata verify --restore", &out);
    let drill: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(drill["problems"], serde_json::json!([]), "{text}");
    let lines = drill["database"].as_array().unwrap();
    for table in [
        "shop-eu.events: 3 parts, 60000 rows",
        "shop-eu.totals: 1 parts, ",
    ] {
        assert!(
            lines.iter().any(|l| {
                let l = l.as_str().unwrap();
                l.contains(table) && l.ends_with("every block read, CHECK TABLE passed")
            }),
            "{table}: {text}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.as_str().unwrap().contains("shop-eu..inner_id.")),
        "the view's storage is drilled: {text}"
    );
}
