//! The ClickHouse plugin through the real binary, against real ClickHouse clusters
//! (Debian's clickhouse-server 18.16 and ZooKeeper, two shards of two replicas on
//! loopback ports): a backup under concurrent inserts, restored onto a fresh cluster of
//! the same shape and onto one replica per shard of another; a backup killed with
//! SIGKILL while its tables are frozen leaves no frozen copy after the next one; a
//! restore never attaches parts beside rows a table still holds.

use crate::common;

use common::{assert_success, Site};
use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_testkit::clickhouse::{query, try_query_within, wait_for_answer, ClickHouseCluster};
use strata_testkit::process::output_within;

/// Rows inserted before the backup, per shard, into the replicated table.
const ROWS: u64 = 30_000;

/// The schema, created on every server of a cluster (`ON CLUSTER`).
const SCHEMA: &[&str] = &[
    "CREATE DATABASE IF NOT EXISTS shop ON CLUSTER strata",
    "CREATE TABLE shop.events ON CLUSTER strata (d Date, id UInt64, s String, batch UInt32) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/shop/events', '{replica}') PARTITION BY toYYYYMM(d) ORDER BY (d, id)",
    "CREATE TABLE shop.totals ON CLUSTER strata (d Date, k String, n UInt64) ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/shop/totals', '{replica}') PARTITION BY toYYYYMM(d) ORDER BY (d, k)",
    "CREATE TABLE shop.local ON CLUSTER strata (id UInt64, note String) ENGINE = MergeTree() ORDER BY id",
    "CREATE MATERIALIZED VIEW shop.daily ON CLUSTER strata ENGINE = SummingMergeTree() PARTITION BY toYYYYMM(d) ORDER BY d AS SELECT d, count() AS c FROM shop.events GROUP BY d",
    "CREATE TABLE shop.events_all ON CLUSTER strata AS shop.events ENGINE = Distributed(strata, shop, events, rand())",
    "CREATE VIEW shop.recent ON CLUSTER strata AS SELECT id, s FROM shop.events WHERE batch > 0",
];

/// A site sharing `dir` (and its repository) with others, its files named after `name`:
/// a config whose nodes are a cluster's servers, in one component.
fn ch_site(dir: &Path, name: &str, nodes: &[(&str, &strata_testkit::clickhouse::Server)]) -> Site {
    ch_site_with(dir, name, nodes, "")
}

/// [`ch_site`] with `extra` lines in each `[nodes.clickhouse]`.
fn ch_site_with(
    dir: &Path,
    name: &str,
    nodes: &[(&str, &strata_testkit::clickhouse::Server)],
    extra: &str,
) -> Site {
    let mut text = String::new();
    for (node, server) in nodes {
        text.push_str(&format!(
            "[[nodes]]\nname = \"{node}\"\n[nodes.clickhouse]\n{extra}url = \"{}\"\npath = {:?}\n",
            server.url, server.data
        ));
    }
    let names: Vec<String> = nodes.iter().map(|(n, _)| format!("{n:?}")).collect();
    text.push_str(&format!(
        "[[components]]\nname = \"warehouse\"\nplugin = \"clickhouse\"\nnodes = [{}]\n",
        names.join(", ")
    ));
    Site::new()
        .file(&format!("{name}.toml"))
        .state(&format!("{name}-state"))
        .config_extra(&text)
        .build_in(dir)
}

/// A site whose nodes `ch1`... are `cluster`'s servers, with `extra` lines in each
/// `[nodes.clickhouse]` (`restore_wait = "2m"`, `zookeeper = [...]`).
fn cluster_site(dir: &Path, name: &str, cluster: &ClickHouseCluster, extra: &str) -> Site {
    let names = ch_names(cluster.servers.len());
    let nodes: Vec<(&str, &_)> = names
        .iter()
        .map(String::as_str)
        .zip(&cluster.servers)
        .collect();
    ch_site_with(dir, name, &nodes, extra)
}

/// `strata ARGS` of `site` started in the background, its output piped.
fn spawn(site: &Site, args: &[&str]) -> std::process::Child {
    site.command()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn ch_names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("ch{i}")).collect()
}

/// Creates the schema and loads each shard through its first replica; `local` gets
/// rows of its own on every server.
fn load(cluster: &ClickHouseCluster) {
    let first = &cluster.servers[0].url;
    for sql in SCHEMA {
        query(first, sql);
    }
    for (shard, server) in cluster.servers.iter().step_by(2).enumerate() {
        let offset = shard as u64 * 10_000_000;
        for month in 0..3 {
            query(
                &server.url,
                &format!(
                    "INSERT INTO shop.events SELECT toDate('2024-01-01') + {month} * 31 + number % 28, {offset} + {month} * 100000 + number, toString(cityHash64({offset} + number)), 0 FROM numbers({})",
                    ROWS / 3
                ),
            );
        }
        query(
            &server.url,
            "INSERT INTO shop.totals SELECT toDate('2024-01-01') + number % 50, toString(number % 7), number FROM numbers(5000)",
        );
    }
    for (i, server) in cluster.servers.iter().enumerate() {
        query(
            &server.url,
            &format!(
                "INSERT INTO shop.local SELECT number, 'server {i}' FROM numbers({})",
                100 + i
            ),
        );
    }
}

/// `count, checksum` of a table on one server.
fn fingerprint(url: &str, table: &str, columns: &str) -> String {
    query(
        url,
        &format!("SELECT count(), sum(cityHash64({columns})) FROM {table}"),
    )
}

/// Inserts numbered batches of 1,000 rows into shard 1 until told to stop; counts
/// the batches that were acknowledged.
fn insert_batches(url: String, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) {
    let mut batch = 1u64;
    while !stop.load(Ordering::SeqCst) {
        query(
            &url,
            &format!(
                "INSERT INTO shop.events SELECT toDate('2024-04-01'), 50000000 + {batch} * 1000 + number, 'live', {batch} FROM numbers(1000)"
            ),
        );
        done.store(batch, Ordering::SeqCst);
        batch += 1;
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// What a restored cluster must hold, per shard: the rows loaded before the backup, and
/// whole batches of those inserted while it ran, every one acknowledged before it
/// started among them.
fn assert_restored(url: &str, before: u64, shard: usize) {
    let loaded = query(url, "SELECT count() FROM shop.events WHERE batch = 0");
    assert_eq!(
        loaded,
        ROWS.to_string(),
        "shard {shard}: the rows loaded before the backup"
    );
    let batches = query(
        url,
        "SELECT count(), min(c), max(c), max(batch) FROM (SELECT batch, count() AS c FROM shop.events WHERE batch > 0 GROUP BY batch)",
    );
    let fields: Vec<u64> = batches.split('\t').map(|f| f.parse().unwrap()).collect();
    if shard == 1 {
        assert!(
            fields[0] >= before,
            "every batch acknowledged before the backup: {batches}"
        );
        assert_eq!(
            fields[0], fields[3],
            "batches 1..=n, none missing: {batches}"
        );
        assert_eq!(
            (fields[1], fields[2]),
            (1000, 1000),
            "whole batches: {batches}"
        );
    } else {
        assert_eq!(fields[0], 0, "shard 2 took no live inserts: {batches}");
    }
}

#[test]
fn a_cluster_backed_up_under_inserts_comes_back_on_a_fresh_cluster_and_on_another_topology() {
    let dir = tempfile::tempdir().unwrap();
    let source = ClickHouseCluster::start(2, 2);
    load(&source);
    // The view's rows were written where each insert landed: on shard leaders.
    let names = ch_names(4);
    let nodes: Vec<(&str, &_)> = names
        .iter()
        .map(String::as_str)
        .zip(&source.servers)
        .collect();
    let site = ch_site(dir.path(), "source", &nodes);
    site.ok(&["init"]);

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let inserter = {
        let (url, stop, done) = (source.servers[0].url.clone(), stop.clone(), done.clone());
        std::thread::spawn(move || insert_batches(url, stop, done))
    };
    strata_testkit::wait_for(
        "a few live batches",
        std::time::Duration::from_secs(60),
        std::time::Duration::from_millis(20),
        || done.load(Ordering::SeqCst) >= 3,
    );
    let before = done.load(Ordering::SeqCst);
    let summary = site.json(&["backup", "--json"]);
    stop.store(true, Ordering::SeqCst);
    inserter.join().unwrap();
    assert_eq!(summary["status"], "complete", "{summary:#}");
    let backup = summary["name"].as_str().unwrap().to_string();
    let shown = site.json(&["show", &backup, "--json"]);
    for node in shown["nodes"].as_array().unwrap() {
        let plugin = &node["plugin"];
        assert_eq!(plugin["clickhouse.version"], "18.16.1", "{node:#}");
        assert!(
            plugin["clickhouse.parts"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
                > 0
        );
    }
    // Replicas hold the same parts: a shard's parts are stored once, whichever of its
    // replicas stored them first.
    let figure = |name: &str, key: &str| {
        let node = shown["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .unwrap();
        match key {
            "new_bytes" => node[key].as_u64().unwrap(),
            _ => node["plugin"][key]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap(),
        }
    };
    let shard_parts = figure("ch3", "clickhouse.part_bytes");
    let stored = figure("ch3", "new_bytes") + figure("ch4", "new_bytes");
    assert!(
        shard_parts > 500_000 && stored * 10 < shard_parts * 14,
        "shard 2's {shard_parts} bytes of parts are stored once: {stored} new bytes from its two replicas"
    );

    // A fresh cluster of the same shape, the same node names.
    let fresh = ClickHouseCluster::start(2, 2);
    let nodes: Vec<(&str, &_)> = names
        .iter()
        .map(String::as_str)
        .zip(&fresh.servers)
        .collect();
    let same = ch_site(dir.path(), "same", &nodes);
    let restored = same.json(&["restore", &backup, "--json"]);
    assert!(
        restored.to_string().contains("parts attached"),
        "{restored:#}"
    );
    // One replica of a shard lays the replicated parts down and attaches them (the one
    // that froze the most rows: under inserts either), the other fetches them.
    let laid_down = |node: &str| {
        restored["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["node"] == node)
            .map(|n| n["report"]["bytes"].as_u64().unwrap())
            .unwrap()
    };
    let one_writes = |a: u64, b: u64| a.min(b) * 10 < a.max(b);
    assert!(
        one_writes(laid_down("ch1"), laid_down("ch2"))
            && one_writes(laid_down("ch3"), laid_down("ch4")),
        "bytes laid down: ch1 {}, ch2 {}, ch3 {}, ch4 {}",
        laid_down("ch1"),
        laid_down("ch2"),
        laid_down("ch3"),
        laid_down("ch4")
    );
    for (shard, pair) in fresh.servers.chunks(2).enumerate() {
        let (first, second) = (&pair[0].url, &pair[1].url);
        assert_restored(first, before, shard + 1);
        let want = fingerprint(first, "shop.events", "d, id, s, batch");
        // The second replica fetched what the first attached.
        assert_eq!(
            wait_for_answer(
                second,
                "SELECT count(), sum(cityHash64(d, id, s, batch)) FROM shop.events",
                &want
            ),
            want,
            "shard {} replicas agree",
            shard + 1
        );
        assert_eq!(
            fingerprint(first, "shop.totals", "d, k, n"),
            fingerprint(&source.servers[shard * 2].url, "shop.totals", "d, k, n"),
        );
    }
    for (i, server) in fresh.servers.iter().enumerate() {
        assert_eq!(
            fingerprint(&server.url, "shop.local", "id, note"),
            fingerprint(&source.servers[i].url, "shop.local", "id, note"),
            "each server's own table comes back to it"
        );
        // The view and the Distributed table are there and read.
        query(&server.url, "SELECT count() FROM shop.recent");
        query(&server.url, "SELECT count() FROM shop.daily");
    }
    let all = query(
        &fresh.servers[0].url,
        "SELECT count() FROM shop.events_all WHERE batch = 0",
    );
    assert_eq!(
        all,
        (2 * ROWS).to_string(),
        "both shards through the Distributed table"
    );

    // Another topology: one replica per shard, other node names.
    let small = ClickHouseCluster::start(2, 1);
    let nodes = [("n1", &small.servers[0]), ("n2", &small.servers[1])];
    let other = ch_site(dir.path(), "other", &nodes);
    let out = other.strata(&["restore", &backup, "--map", "ch2=n1", "--map", "ch4=n2"]);
    assert_eq!(out.code, Some(0), "a restore onto another topology\n{out}");
    for (shard, server) in small.servers.iter().enumerate() {
        assert_restored(&server.url, before, shard + 1);
        assert_eq!(
            fingerprint(&server.url, "shop.local", "id, note"),
            fingerprint(&source.servers[shard * 2 + 1].url, "shop.local", "id, note"),
            "the mapped node's own table"
        );
    }
    for server in source
        .servers
        .iter()
        .chain(&fresh.servers)
        .chain(&small.servers)
    {
        assert_no_frozen_copy(&server.data);
    }
}

/// Nothing of strata's is left in the server's shadow directory but its lock file.
fn assert_no_frozen_copy(data: &Path) {
    let shadow = data.join("shadow");
    let left: Vec<String> = fs::read_dir(&shadow)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n != "strata.lock" && n != "increment.txt")
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "{} holds {left:?}", shadow.display());
}

#[test]
fn a_backup_killed_while_its_tables_are_frozen_leaves_no_copy_after_the_next_and_rows_are_never_doubled(
) {
    let dir = tempfile::tempdir().unwrap();
    let cluster = ClickHouseCluster::start(2, 2);
    load(&cluster);
    let names = ch_names(4);
    let nodes: Vec<(&str, &_)> = names
        .iter()
        .map(String::as_str)
        .zip(&cluster.servers)
        .collect();
    let site = ch_site(dir.path(), "site", &nodes);
    site.ok(&["init"]);
    // No part changes from here on, and every part is older than the window in which a
    // backup does not trust a file's stamp (two seconds), so the files cache can be seen.
    for server in &cluster.servers {
        query(&server.url, "SYSTEM STOP MERGES");
    }
    std::thread::sleep(std::time::Duration::from_secs(3));

    // Held at its first index write: every table is frozen, nothing is indexed yet.
    let hold = dir.path().join("hold");
    let mut backup = site.command();
    backup
        .args(["backup", "--json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = common::backup_held_at_first_index_write(backup, &hold);
    let frozen = cluster.servers[0]
        .data
        .join("shadow/strata/data/shop/events");
    assert!(
        frozen.is_dir(),
        "the tables are frozen while the backup runs"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(frozen.is_dir(), "a killed backup cleans nothing up");

    let summary = site.json(&["backup", "--json"]);
    assert_eq!(summary["status"], "complete", "{summary:#}");
    for server in &cluster.servers {
        assert_no_frozen_copy(&server.data);
    }

    // Unchanged parts are not read again: each freeze links and chmods every part file
    // (a new ctime), but parts never change in place.
    let again = site.json(&["backup", "--json"]);
    let sum = |key: &str| {
        again["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n[key].as_u64().unwrap())
            .sum::<u64>()
    };
    assert!(
        sum("files_read") * 3 < sum("files"),
        "{} of {} files read again",
        sum("files_read"),
        sum("files")
    );

    // A drill: each node's copy attached to a scratch server and read whole.
    let drill = site.json(&[
        "verify",
        "--restore",
        summary["name"].as_str().unwrap(),
        "--json",
    ]);
    assert_eq!(drill["problems"], serde_json::json!([]), "{drill:#}");
    let lines: Vec<&str> = drill["database"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    for node in ["ch1", "ch2", "ch3", "ch4"] {
        for table in [
            "shop.events",
            "shop.totals",
            "shop.local",
            "shop..inner.daily",
        ] {
            let line = lines
                .iter()
                .find(|l| l.contains(&format!("node {node}: table {table}:")))
                .unwrap_or_else(|| panic!("no line for {node} {table}: {lines:#?}"));
            assert!(
                line.contains("rows as recorded, every block read"),
                "{line}"
            );
        }
    }

    // A restore onto the live cluster: its tables hold rows, nothing is attached.
    let before = fingerprint(&cluster.servers[0].url, "shop.events", "d, id, s, batch");
    let out = site.strata(&["restore", summary["name"].as_str().unwrap()]);
    assert!(out.code != Some(0), "a restore over rows must fail");
    let stderr = &out.stderr;
    assert!(stderr.contains("exists on this server with"), "{stderr}");
    assert_eq!(
        fingerprint(&cluster.servers[0].url, "shop.events", "d, id, s, batch"),
        before,
        "the rows are what they were"
    );
    for server in &cluster.servers {
        assert_no_frozen_copy(&server.data);
    }

    // One table back into the live cluster, beside the live one, which nothing touches.
    let name = summary["name"].as_str().unwrap();
    let out = site.ok(&["restore", name, "--table", "shop.events"]);
    assert!(out.contains("parts attached"), "{out}");
    let local_before: Vec<String> = cluster
        .servers
        .iter()
        .map(|s| fingerprint(&s.url, "shop.local", "id, note"))
        .collect();
    site.ok(&[
        "restore",
        name,
        "--table",
        "shop.local",
        "--as",
        "local_back",
    ]);
    for (i, server) in cluster.servers.iter().enumerate() {
        let live = fingerprint(&server.url, "shop.events", "d, id, s, batch");
        let sql = "SELECT count(), sum(cityHash64(d, id, s, batch)) FROM shop.events_restored";
        assert_eq!(
            wait_for_answer(&server.url, sql, &live),
            live,
            "server {i}: the table is back whole"
        );
        assert_eq!(
            fingerprint(&server.url, "shop.local_back", "id, note"),
            local_before[i]
        );
        assert_eq!(
            fingerprint(&server.url, "shop.local", "id, note"),
            local_before[i]
        );
        // Its own coordination path: the copy is not a replica of the live table.
        let path = query(
            &server.url,
            "SELECT zookeeper_path FROM system.replicas WHERE database = 'shop' AND table = 'events_restored'",
        );
        assert!(path.ends_with("/shop/events_restored"), "{path}");
    }
    assert_eq!(
        fingerprint(&cluster.servers[0].url, "shop.events", "d, id, s, batch"),
        before,
        "the live table is what it was"
    );
    // Again: the copy holds the backup's rows now, partition by partition, so this is a
    // run of the same restore again: nothing is attached twice.
    let out = site.ok(&["restore", name, "--table", "shop.events"]);
    assert!(
        out.contains("rows already (a run cut short, or the same data): nothing attached"),
        "{out}"
    );
    for server in &cluster.servers {
        let sql = "SELECT count(), sum(cityHash64(d, id, s, batch)) FROM shop.events_restored";
        let live = fingerprint(&server.url, "shop.events", "d, id, s, batch");
        assert_eq!(query(&server.url, sql), live, "never doubled");
    }
    // A copy that holds other rows is refused.
    query(
        &cluster.servers[0].url,
        "INSERT INTO shop.events_restored VALUES ('2024-01-01', 1, 'x', 0)",
    );
    let out = site.strata(&["restore", name, "--table", "shop.events"]);
    assert!(out.code != Some(0), "a copy over other rows must fail");
    for server in &cluster.servers {
        assert_no_frozen_copy(&server.data);
    }

    // A replica that lost a table comes back as a replica: restored alone, it finds the
    // other replica holding parts and fetches them instead of attaching its own copy.
    let live = fingerprint(&cluster.servers[0].url, "shop.events", "d, id, s, batch");
    query(&cluster.servers[1].url, "DROP TABLE shop.events");
    let out = site.ok(&[
        "restore",
        name,
        "--node",
        "ch2",
        "--table",
        "shop.events",
        "--as",
        "events",
    ]);
    assert!(out.contains("fetched from replica ch1"), "{out}");
    let sql = "SELECT count(), sum(cityHash64(d, id, s, batch)) FROM shop.events";
    assert_eq!(wait_for_answer(&cluster.servers[1].url, sql, &live), live);
    assert_eq!(
        query(&cluster.servers[0].url, sql),
        live,
        "no row doubled on ch1"
    );

    // A server that does not answer fails the backup, with its reason; the others'
    // frozen copies are removed all the same.
    let dead_dir = dir.path().join("dead");
    fs::create_dir_all(&dead_dir).unwrap();
    let dead = strata_testkit::clickhouse::Server {
        url: strata_testkit::dead_url()
            .trim_end_matches("/hook")
            .to_string(),
        data: dead_dir,
    };
    let broken = ch_site(
        dir.path(),
        "broken",
        &[("ch1", &cluster.servers[0]), ("ch9", &dead)],
    );
    let out = broken.strata(&["backup", "--json"]);
    assert!(
        out.code != Some(0),
        "a backup without one of its servers fails"
    );
    let summary: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(summary["status"], "failed", "{summary:#}");
    let node = summary["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "ch9")
        .unwrap();
    let error = node["error"].as_str().unwrap();
    assert!(error.contains("did not answer"), "{error}");
    assert_no_frozen_copy(&cluster.servers[0].data);
}

/// `count, checksum` of `shop.events` on every server of a cluster.
fn every_replica(cluster: &ClickHouseCluster) -> Vec<String> {
    cluster
        .servers
        .iter()
        .map(|s| fingerprint(&s.url, "shop.events", "d, id, s, batch"))
        .collect()
}

/// A shard whose replicas each hold acknowledged rows the other has not fetched
/// (`SYSTEM STOP FETCHES`, inserts on both) comes back whole: from the union of both
/// replicas' parts, on every replica by the time the restore exits, and through
/// `--map` leaving either replica out.
#[test]
fn replicas_that_lag_both_ways_come_back_whole_on_every_replica() {
    let dir = tempfile::tempdir().unwrap();
    let source = ClickHouseCluster::start(1, 2);
    let (r1, r2) = (&source.servers[0].url, &source.servers[1].url);
    query(r1, "CREATE DATABASE shop ON CLUSTER strata");
    query(
        r1,
        "CREATE TABLE shop.events ON CLUSTER strata (d Date, id UInt64, s String, batch UInt32) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/shop/events', '{replica}') PARTITION BY toYYYYMM(d) ORDER BY (d, id)",
    );
    for month in 0..4 {
        query(
            r1,
            &format!(
                "INSERT INTO shop.events SELECT toDate('2024-01-01') + {month} * 31, {month} * 1000000 + number, 'base', 0 FROM numbers(25000)"
            ),
        );
    }
    let base = fingerprint(r1, "shop.events", "d, id, s, batch");
    wait_for_answer(
        r2,
        "SELECT count(), sum(cityHash64(d, id, s, batch)) FROM shop.events",
        &base,
    );
    // From here each replica keeps what it is given: r1 3,000 rows in three batches, r2
    // 2,000 in two, none fetched by the other.
    for url in [r1, r2] {
        query(url, "SYSTEM STOP FETCHES shop.events");
        query(url, "SYSTEM STOP MERGES shop.events");
    }
    for (url, batches) in [(r1, 1..=3), (r2, 4..=5)] {
        for batch in batches {
            query(
                url,
                &format!(
                    "INSERT INTO shop.events SELECT toDate('2024-05-01') + {batch}, 9000000 + {batch} * 1000 + number, 'live', {batch} FROM numbers(1000)"
                ),
            );
        }
    }
    assert_eq!(query(r1, "SELECT count() FROM shop.events"), "103000");
    assert_eq!(query(r2, "SELECT count() FROM shop.events"), "102000");
    let site = cluster_site(dir.path(), "source", &source, "");
    site.ok(&["init"]);
    let summary = site.json(&["backup", "--json"]);
    assert_eq!(summary["status"], "complete", "{summary:#}");
    let backup = summary["name"].as_str().unwrap().to_string();
    // What the shard acknowledged: both replicas' rows, once each.
    for url in [r1, r2] {
        query(url, "SYSTEM START FETCHES shop.events");
    }
    query(r1, "SYSTEM SYNC REPLICA shop.events");
    let acknowledged = fingerprint(r1, "shop.events", "d, id, s, batch");
    assert!(acknowledged.starts_with("105000\t"), "{acknowledged}");

    // A fresh cluster of the same shape: both replicas hold every row when the restore
    // exits (no waiting here: the restore waited), and say so.
    let fresh = ClickHouseCluster::start(1, 2);
    let same = cluster_site(dir.path(), "same", &fresh, "");
    let out = same.ok(&["restore", &backup]);
    assert!(out.contains("shop.events 105000 rows attached"), "{out}");
    assert!(out.contains("shop.events 105000 rows fetched"), "{out}");
    assert_eq!(every_replica(&fresh), vec![acknowledged.clone(); 2]);

    // Onto one replica, each of the two left out in turn.
    for (kept, left_out) in [("ch1", "ch2"), ("ch2", "ch1")] {
        let single = ClickHouseCluster::start(1, 1);
        let site = ch_site(
            dir.path(),
            &format!("single-{kept}"),
            &[("n1", &single.servers[0])],
        );
        let out = site.ok(&["restore", &backup, "--map", &format!("{kept}=n1")]);
        assert!(
            out.contains("105000 rows attached"),
            "{left_out} left out: {out}"
        );
        assert_eq!(
            every_replica(&single),
            vec![acknowledged.clone()],
            "{left_out} left out"
        );
        // One table back beside it, onto the same other topology.
        let map = format!("{kept}=n1");
        let out = site.ok(&[
            "restore",
            &backup,
            "--table",
            "shop.events",
            "--as",
            "events_copy",
            "--map",
            &map,
        ]);
        assert!(
            out.contains("shop.events_copy 105000 rows attached"),
            "{out}"
        );
        assert_eq!(
            fingerprint(
                &single.servers[0].url,
                "shop.events_copy",
                "d, id, s, batch"
            ),
            acknowledged
        );
        assert_no_frozen_copy(&single.servers[0].data);
    }

    // --table naming no table of the backup: exit 2, naming the close ones.
    for typo in ["shop.evnets", "nodb.events", "shop.Events"] {
        let out = site.strata(&["restore", &backup, "--table", typo]);
        assert_eq!(out.code, Some(2), "{typo}: {out}");
        let stderr = &out.stderr;
        assert!(
            stderr.contains("holds such a table (it holds shop.events"),
            "{typo}: {stderr}"
        );
    }
}

/// The common disaster: the servers lost their tables, ZooKeeper kept every replica's
/// node. A restore names every stale replica it would meet in one error and creates
/// nothing; with `--drop-stale-replicas` it removes them (through ZooKeeper: 18.16 has no
/// SYSTEM DROP REPLICA) and brings every row back onto both replicas. A table with a
/// `LowCardinality` column (which 18.16 creates only with an experimental setting on)
/// comes back and passes the drill.
#[test]
fn a_cluster_that_lost_its_disks_with_zookeeper_kept_comes_back_and_names_every_stale_replica() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = ClickHouseCluster::start(1, 2);
    let (r1, r2) = (&cluster.servers[0].url, &cluster.servers[1].url);
    query(r1, "CREATE DATABASE shop ON CLUSTER strata");
    for t in ["events", "orders", "visits"] {
        query(
            r1,
            &format!("CREATE TABLE shop.{t} ON CLUSTER strata (d Date, id UInt64, s String) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{{shard}}/shop/{t}', '{{replica}}') PARTITION BY toYYYYMM(d) ORDER BY id"),
        );
        query(
            r1,
            &format!("INSERT INTO shop.{t} SELECT toDate('2024-01-01') + number % 60, number, toString(number) FROM numbers(20000)"),
        );
    }
    // 18.16 creates a LowCardinality column only with the experimental setting on.
    let low = "CREATE TABLE shop.tags (id UInt64, tag LowCardinality(String)) ENGINE = MergeTree ORDER BY id";
    let refused = strata_testkit::clickhouse::try_query(r1, low)
        .unwrap_err()
        .0;
    assert!(
        refused.contains("allow_experimental_low_cardinality_type"),
        "{refused}"
    );
    for url in [r1, r2] {
        strata_testkit::clickhouse::query_with(
            url,
            low,
            "allow_experimental_low_cardinality_type=1",
        );
        query(
            url,
            "INSERT INTO shop.tags SELECT number, toString(number % 5) FROM numbers(1000)",
        );
    }
    let want: Vec<String> = ["events", "orders", "visits"]
        .iter()
        .map(|t| {
            let sql = format!("SELECT count(), sum(cityHash64(d, id, s)) FROM shop.{t}");
            wait_for_answer(r2, &sql, &query(r1, &sql))
        })
        .collect();
    let tags = fingerprint(r1, "shop.tags", "id, tag");
    let site = cluster_site(
        dir.path(),
        "site",
        &cluster,
        &format!(
            "zookeeper = [{:?}]\nrestore_wait = \"2m\"\n",
            cluster.zookeeper
        ),
    );
    site.ok(&["init"]);
    let summary = site.json(&["backup", "--json"]);
    assert_eq!(summary["status"], "complete", "{summary:#}");
    let backup = summary["name"].as_str().unwrap().to_string();
    // The drill creates the LowCardinality table on its scratch server too.
    let drill = site.json(&["verify", "--restore", &backup, "--json"]);
    assert_eq!(drill["problems"], serde_json::json!([]), "{drill:#}");

    // The disks are lost: the servers hold no table; ZooKeeper keeps both replicas of
    // each (with no live session: no server has the table).
    for url in [r1, r2] {
        for t in ["events", "orders", "visits", "tags"] {
            query(url, &format!("DETACH TABLE shop.{t}"));
            let metadata = cluster.servers[if url == r1 { 0 } else { 1 }]
                .data
                .join(format!("metadata/shop/{t}.sql"));
            let _ = fs::remove_file(metadata);
            let _ = fs::remove_dir_all(
                cluster.servers[if url == r1 { 0 } else { 1 }]
                    .data
                    .join(format!("data/shop/{t}")),
            );
        }
    }
    let out = site.strata(&["restore", &backup]);
    assert!(
        out.code != Some(0),
        "a restore onto stale replicas must fail"
    );
    let stderr = &out.stderr;
    // Every one of the six, in one run, on each node.
    for t in ["events", "orders", "visits"] {
        for r in ["ch1", "ch2"] {
            assert!(
                stderr.contains(&format!("/clickhouse/tables/1/shop/{t}/replicas/{r}")),
                "{t} {r}: {stderr}"
            );
        }
    }
    assert!(stderr.contains("--drop-stale-replicas"), "{stderr}");
    for url in [r1, r2] {
        assert_eq!(
            query(
                url,
                "SELECT count() FROM system.tables WHERE database = 'shop' AND name != 'tags'"
            ),
            "0",
            "nothing was created"
        );
    }

    let out = site.ok(&["restore", &backup, "--drop-stale-replicas"]);
    assert!(
        out.contains("stale replicas removed from ZooKeeper"),
        "{out}"
    );
    for (t, want) in ["events", "orders", "visits"].iter().zip(&want) {
        for url in [r1, r2] {
            assert_eq!(
                fingerprint(url, &format!("shop.{t}"), "d, id, s"),
                *want,
                "{t} on {url} when the restore exits"
            );
        }
    }
    for url in [r1, r2] {
        assert_eq!(fingerprint(url, "shop.tags", "id, tag"), tags);
    }
}

/// Rows a Distributed table acknowledged but could not send yet (its shard refuses
/// them) are not in a freeze: the backup is `partial` and names the table; once they are
/// sent, the next backup is complete. A node that does not answer fails the backup with
/// its own cause on the command line, not another node's "not finished".
#[test]
fn unsent_distributed_rows_make_a_backup_partial_and_a_failed_node_s_cause_is_printed() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = ClickHouseCluster::start(2, 1);
    let (ch1, ch2) = (&cluster.servers[0].url, &cluster.servers[1].url);
    query(ch1, "CREATE DATABASE shop ON CLUSTER strata");
    query(
        ch1,
        "CREATE TABLE shop.target (x UInt64) ENGINE = MergeTree ORDER BY x",
    );
    // Shard 2's table does not take the rows: they stay queued on ch1.
    query(
        ch2,
        "CREATE TABLE shop.target (y Date) ENGINE = MergeTree ORDER BY y",
    );
    query(
        ch1,
        "CREATE TABLE shop.dist (x UInt64) ENGINE = Distributed(strata, shop, target, 1)",
    );
    query(ch1, "INSERT INTO shop.dist SELECT number FROM numbers(100)");
    let site = cluster_site(dir.path(), "site", &cluster, "");
    site.ok(&["init"]);
    let out = site.strata(&["backup"]);
    assert_eq!(out.code, Some(3), "{out}");
    let stdout = &out.stdout;
    assert!(
        stdout.contains("shop.dist holds 1 batch(es) of acknowledged rows not yet sent"),
        "{stdout}"
    );
    // Shard 2 takes them now: the queue drains and the next backup is whole.
    query(ch2, "DROP TABLE shop.target");
    query(
        ch2,
        "CREATE TABLE shop.target (x UInt64) ENGINE = MergeTree ORDER BY x",
    );
    assert_eq!(
        wait_for_answer(ch2, "SELECT count() FROM shop.target", "100"),
        "100"
    );
    let summary = site.json(&["backup", "--json"]);
    assert_eq!(summary["status"], "complete", "{summary:#}");

    // A server that does not answer: its cause on stdout, in the component's line too,
    // without the request's URL.
    let dead = strata_testkit::clickhouse::Server {
        url: strata_testkit::dead_url()
            .trim_end_matches("/hook")
            .to_string(),
        data: dir.path().to_path_buf(),
    };
    let broken = ch_site(
        dir.path(),
        "broken",
        &[("ch1", &cluster.servers[0]), ("ch9", &dead)],
    );
    let out = broken.strata(&["backup"]);
    assert_eq!(out.code, Some(3), "{out}");
    let stdout = &out.stdout;
    let component = stdout
        .lines()
        .find(|l| l.starts_with("component warehouse"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        component.contains("ch9: ClickHouse: read the server")
            && component.contains("did not answer"),
        "{component}"
    );
    assert!(!stdout.contains("query_id"), "{stdout}");
}

/// A restore cut short can be run again and finishes: tables an earlier run created
/// empty are filled, a replica a failed CREATE registered in ZooKeeper without a table or
/// a part is removed unasked, and a table whose parts an earlier run attached is not
/// attached to again: its replicas are waited for.
#[test]
fn a_restore_cut_short_runs_again_to_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let source = ClickHouseCluster::start(1, 2);
    let url = &source.servers[0].url;
    query(url, "CREATE DATABASE shop ON CLUSTER strata");
    let create = "CREATE TABLE shop.events ON CLUSTER strata (d Date, id UInt64) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/shop/events', '{replica}') PARTITION BY toYYYYMM(d) ORDER BY id";
    query(url, create);
    query(url, "INSERT INTO shop.events SELECT toDate('2024-01-01') + number % 90, number FROM numbers(30000)");
    let want = fingerprint(url, "shop.events", "d, id");
    let site = cluster_site(dir.path(), "source", &source, "");
    site.ok(&["init"]);
    let backup = site.json(&["backup", "--json"])["name"]
        .as_str()
        .unwrap()
        .to_string();

    let target = ClickHouseCluster::start(1, 2);
    let (t1, t2) = (&target.servers[0].url, &target.servers[1].url);
    let site = cluster_site(
        dir.path(),
        "target",
        &target,
        &format!("zookeeper = [{:?}]\n", target.zookeeper),
    );
    // What a run cut short leaves: the database, ch2's table created empty, and ch1's
    // replica registered in ZooKeeper by a CREATE whose table the server never kept.
    query(t1, "CREATE DATABASE shop ON CLUSTER strata");
    query(t1, &create.replace(" ON CLUSTER strata", ""));
    query(t1, "DETACH TABLE shop.events");
    let _ = fs::remove_file(target.servers[0].data.join("metadata/shop/events.sql"));
    query(t2, &create.replace(" ON CLUSTER strata", ""));
    let out = site.ok(&["restore", &backup]);
    assert!(
        out.contains(
            "stale replicas removed from ZooKeeper: /clickhouse/tables/1/shop/events/replicas/ch1"
        ),
        "{out}"
    );
    for u in [t1, t2] {
        assert_eq!(fingerprint(u, "shop.events", "d, id"), want);
    }
    // The attach done, the restore runs again (a run cut short while it waited for the
    // replicas): nothing is attached twice.
    let out = site.ok(&["restore", &backup]);
    assert!(
        out.contains("shop.events holds the backup's 30000 rows already (a run cut short, or the same data): nothing attached"),
        "{out}"
    );
    for u in [t1, t2] {
        assert_eq!(fingerprint(u, "shop.events", "d, id"), want);
    }

    // A partition dropped by mistake comes back into the live table, on both replicas,
    // beside the partitions the table still holds.
    query(t1, "ALTER TABLE shop.events DROP PARTITION 202402");
    let out = site.ok(&[
        "restore",
        &backup,
        "--table",
        "shop.events",
        "--as",
        "events",
        "--partition",
        "202402",
    ]);
    let february = query(
        url,
        "SELECT count() FROM shop.events WHERE toYYYYMM(d) = 202402",
    );
    assert!(
        out.contains(&format!("shop.events {february} rows attached")),
        "{out}"
    );
    assert!(
        out.contains(&format!("shop.events {february} rows fetched")),
        "{out}"
    );
    for u in [t1, t2] {
        assert_eq!(fingerprint(u, "shop.events", "d, id"), want);
    }
    // A partition the backup does not hold is named with those it does, before anything.
    let out = site.strata(&[
        "restore",
        &backup,
        "--table",
        "shop.events",
        "--as",
        "events",
        "--partition",
        "209901",
    ]);
    assert_eq!(out.code, Some(2), "{out}");
    let stderr = &out.stderr;
    assert!(
        stderr.contains("its partitions: 202401, 202402, 202403"),
        "{stderr}"
    );
    // A partition that holds other rows in the live table is refused, nothing attached.
    query(
        t1,
        "INSERT INTO shop.events VALUES ('2024-01-05', 99999999)",
    );
    let before = fingerprint(t1, "shop.events", "d, id");
    let out = site.strata(&[
        "restore",
        &backup,
        "--table",
        "shop.events",
        "--as",
        "events",
        "--partition",
        "202401",
    ]);
    assert!(out.code != Some(0), "{out}");
    assert_eq!(fingerprint(t1, "shop.events", "d, id"), before);
}

/// ZooKeeper killed (SIGKILL) while a restore runs, once it has created the tables: the
/// restore fails naming the lost coordination service; with ZooKeeper started again, the
/// same restore run again ends with every row on both replicas, exactly once, whatever
/// the killed run had created, registered or attached.
#[test]
fn a_restore_whose_zookeeper_dies_runs_again_to_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let source = ClickHouseCluster::start(1, 2);
    let url = &source.servers[0].url;
    query(url, "CREATE DATABASE shop ON CLUSTER strata");
    for table in ["events", "audit"] {
        query(url, &format!("CREATE TABLE shop.{table} ON CLUSTER strata (d Date, id UInt64, s String) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{{shard}}/shop/{table}', '{{replica}}') PARTITION BY toYYYYMM(d) ORDER BY id"));
        for month in 0..4 {
            query(url, &format!("INSERT INTO shop.{table} SELECT toDate('2024-01-01') + {month} * 31 + number % 28, {month} * 1000000 + number, toString(cityHash64(number)) FROM numbers(150000)"));
        }
    }
    let want: Vec<String> = ["events", "audit"]
        .iter()
        .map(|t| fingerprint(url, &format!("shop.{t}"), "d, id, s"))
        .collect();
    let site = cluster_site(dir.path(), "source", &source, "");
    site.ok(&["init"]);
    let backup = site.json(&["backup", "--json"])["name"]
        .as_str()
        .unwrap()
        .to_string();
    drop(source);

    let target = ClickHouseCluster::start(1, 2);
    let (t1, t2) = (target.servers[0].url.clone(), target.servers[1].url.clone());
    let settings = |wait: &str| {
        format!(
            "zookeeper = [{:?}]\nrestore_wait = {wait:?}\n",
            target.zookeeper
        )
    };
    // The first run gives up soon: its ZooKeeper stays away.
    let site = cluster_site(dir.path(), "target", &target, &settings("15s"));
    let restore = spawn(&site, &["restore", &backup]);
    let created = |u: &str| {
        try_query_within(u, "EXISTS TABLE shop.events", Duration::from_secs(2)).as_deref()
            == Ok("1")
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !(created(&t1) || created(&t2)) {
        assert!(
            Instant::now() < deadline,
            "the restore created no table within 120 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    target.kill_zookeeper();
    let out = output_within(
        restore,
        Duration::from_secs(300),
        "the restore whose ZooKeeper died",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    eprintln!("the restore whose ZooKeeper died:\n{stderr}");

    target.start_zookeeper();
    let site = cluster_site(dir.path(), "target", &target, &settings("3m"));
    let rerun = spawn(&site, &["restore", &backup]);
    let out = output_within(rerun, Duration::from_secs(400), "the restore run again");
    let stdout = assert_success("the restore run again", &out);
    eprintln!("the restore run again:\n{stdout}");
    for u in [&t1, &t2] {
        for (table, want) in ["events", "audit"].iter().zip(&want) {
            assert_eq!(
                &fingerprint(u, &format!("shop.{table}"), "d, id, s"),
                want,
                "{u} {table}"
            );
        }
    }
}
