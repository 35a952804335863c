//! Londiste against a real PostgreSQL 15 with the Debian pgq, pgq_node and londiste
//! extensions: root and leaf are two databases of one cluster. Node setup and table
//! registration through `strata londiste`; insert/update/delete/truncate replayed equal
//! (md5 of the ordered rows) by the CLI worker; initial copies of two tables under
//! concurrent writes end equal, through the full state machine; a worker killed between
//! the target commit and finish_batch neither loses nor repeats a batch. Skipped, loudly,
//! where PostgreSQL 15 is not installed (`scripts/test.sh` installs it).

use crate::common;

use common::londiste::*;
use common::pgserver::*;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use strata_londiste::worker::{self, WorkerOptions};
use strata_londiste::NodeConfig;
use strata_testkit::process::{Daemon, KillOnDrop};
use strata_testkit::wait::wait_until;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_to_leaf_replays_every_kind_of_change_through_the_cli() {
    if skip_without_postgres() {
        return;
    }
    let site = Site::new();
    let (root, leaf) = site.setup_nodes("");
    let (root_s, leaf_s) = (root.to_str().unwrap(), leaf.to_str().unwrap());
    site.pg.psql("root", TABLE_SQL);
    site.pg
        .psql("root", "create table public.other (id int primary key)");
    site.pg.psql(
        "root",
        "insert into t1 select g, 'row ' || g, g * 1.5, g % 2 = 0, jsonb_build_object('g', g) from generate_series(1, 200) g",
    );
    // Globbing on the root: t* matches t1 only; a typo is a usage error.
    let out = site.expect(0, &[root_s, "add-table", "t*"]);
    assert!(out.contains("added public.t1"), "{out}");
    site.expect(2, &[root_s, "add-table", "nosuch*"]);
    // The leaf creates the table from the provider's structure.
    let out = site.expect(0, &[leaf_s, "add-table", "public.t1", "--create"]);
    assert!(out.contains("added public.t1"), "{out}");
    assert_eq!(site.state("leaf", "public.t1"), "NULL");
    // A table the provider does not replicate cannot be added on the leaf.
    site.pg
        .psql("leaf", "create table public.other (id int primary key)");
    site.expect(2, &[leaf_s, "add-table", "other"]);

    let _ticker = Ticker::start(&site).await;
    // Its probes: `health_listen` serves /health and /ready while the worker runs.
    let health = format!("127.0.0.1:{}", strata_testkit::net::free_port());
    let mut ini = std::fs::OpenOptions::new()
        .append(true)
        .open(&leaf)
        .unwrap();
    std::io::Write::write_all(&mut ini, format!("health_listen = {health}\n").as_bytes()).unwrap();
    // The worker as a daemon: it detaches, holds the ini's pidfile, logs to its logfile.
    let out = site.expect(0, &[leaf_s, "worker", "-d"]);
    assert!(out.contains("worker running in the background"), "{out}");
    let pidfile = site.path("leaf_worker.pid");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _worker = Daemon::terminated(pid);
    let again = site.strata(&[leaf_s, "worker", "-d"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("running"));
    wait_until("the copy to finish", Duration::from_secs(90), || {
        site.state("leaf", "public.t1") == "ok"
    })
    .await;
    assert_eq!(site.checksum("leaf", "t1"), site.checksum("root", "t1"));
    site.expect(0, &[leaf_s, "wait-sync", "--timeout", "5"]);
    let url = format!("http://{health}");
    let probe = strata_testkit::http::http(&url, "GET", "/health", None, "");
    assert_eq!(probe.status, 200, "{}", probe.body);
    assert_eq!(probe.json()["process"], "strata londiste worker");
    let ready = strata_testkit::http::http(&url, "GET", "/ready", None, "");
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.json()["checks"][0]["name"], "worker leaf_worker");

    // Every kind of change, with hostile values.
    site.pg.psql(
        "root",
        "insert into t1 values (1001, 'it''s \"quoted\" \\ back', null, null, '{\"k\": [1, \"two\"]}'), (1002, E'tab\\tnew\\nline ünï', -0.5, true, null)",
    );
    site.pg.psql(
        "root",
        "update t1 set val = 'changed', n = null where id between 10 and 30",
    );
    site.pg.psql("root", "delete from t1 where id % 7 = 0");
    site.pg.psql(
        "root",
        "update t1 set doc = '{\"x\": null}' where id = 1001",
    );
    wait_until(
        "inserts, updates and deletes",
        Duration::from_secs(60),
        || site.checksum("leaf", "t1") == site.checksum("root", "t1"),
    )
    .await;
    site.pg.psql("root", "truncate t1");
    site.pg.psql(
        "root",
        "insert into t1 (id, val) values (1, 'after truncate')",
    );
    wait_until("the truncate", Duration::from_secs(60), || {
        site.checksum("leaf", "t1") == site.checksum("root", "t1")
    })
    .await;
    assert_eq!(site.pg.psql("leaf", "select val from t1"), "after truncate");

    // DDL through the queue: the column appears on the leaf before rows that use it.
    let ddl = site.path("add_extra.sql");
    std::fs::write(&ddl, "alter table public.t1 add column extra int;\n").unwrap();
    let out = site.expect(0, &[root_s, "execute", ddl.to_str().unwrap()]);
    assert!(out.contains("executed add_extra.sql"), "{out}");
    let out = site.expect(0, &[root_s, "execute", ddl.to_str().unwrap()]);
    assert!(out.contains("skipped"), "{out}");
    site.pg.psql(
        "root",
        "insert into t1 (id, val, extra) values (5000, 'with extra', 42)",
    );
    wait_until(
        "the EXECUTE and the row after it",
        Duration::from_secs(60),
        || site.checksum("leaf", "t1") == site.checksum("root", "t1"),
    )
    .await;
    assert_eq!(
        site.pg.psql("leaf", "select extra from t1 where id = 5000"),
        "42"
    );
    site.expect(2, &[leaf_s, "execute", ddl.to_str().unwrap()]);
    // With --wait the command returns once the leaf has applied it too.
    let more = site.path("add_more.sql");
    std::fs::write(&more, "alter table public.t1 add column more_col int;\n").unwrap();
    let out = site.expect(0, &[root_s, "execute", "--wait", more.to_str().unwrap()]);
    assert!(out.contains("applied on every node"), "{out}");
    assert_eq!(
        site.pg.psql(
            "leaf",
            "select count(*) from information_schema.columns where table_name = 't1' and column_name = 'more_col'",
        ),
        "1"
    );

    // Admin views.
    let tables = site.expect(0, &[leaf_s, "tables"]);
    assert!(
        tables.contains("public.t1") && tables.contains("ok"),
        "{tables}"
    );
    let members = site.expect(0, &[leaf_s, "members"]);
    assert!(
        members.contains("root") && members.contains("leaf"),
        "{members}"
    );
    let info = site.expect(0, &[leaf_s, "node-info"]);
    assert!(
        info.contains("leaf_worker") && info.contains("root"),
        "{info}"
    );
    let status = site.expect(0, &[leaf_s, "--json", "status"]);
    let nodes: serde_json::Value = serde_json::from_str(&status).unwrap();
    let nodes = nodes.as_array().unwrap();
    assert_eq!(nodes.len(), 2, "{status}");
    let leaf_node = nodes.iter().find(|n| n["name"] == "leaf").unwrap();
    assert_eq!(leaf_node["tables"]["ok"], 1, "{status}");
    assert_eq!(leaf_node["info"]["provider_node"], "root", "{status}");

    // A member that cannot be reached shows its error; the others are still reported,
    // and the exit code says something is wrong.
    site.pg.psql(
        "leaf",
        &format!("select pgq_node.register_location('{QUEUE}', 'ghost', 'host=/nonexistent port=1 dbname=x connect_timeout=2', false)"),
    );
    let out = site.strata(&[leaf_s, "--json", "status", "--timeout", "5"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let nodes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let nodes = nodes.as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    let ghost = nodes.iter().find(|n| n["name"] == "ghost").unwrap();
    assert!(
        ghost["error"].as_str().unwrap().contains("connect"),
        "{ghost}"
    );
    let root_node = nodes.iter().find(|n| n["name"] == "root").unwrap();
    assert_eq!(root_node["info"]["node_type"], "root");
    site.pg.psql(
        "leaf",
        &format!("select pgq_node.unregister_location('{QUEUE}', 'ghost')"),
    );

    // Pause stops replay; resume catches up.
    site.expect(0, &[leaf_s, "pause"]);
    assert!(site.expect(0, &[leaf_s, "node-info"]).contains("true"));
    site.expect(0, &[leaf_s, "resume"]);
    site.pg.psql(
        "root",
        "insert into t1 (id, val) values (2, 'after resume')",
    );
    wait_until("replay after resume", Duration::from_secs(60), || {
        site.checksum("leaf", "t1") == site.checksum("root", "t1")
    })
    .await;

    // check: the same columns on both sides; a column only here is named.
    let out = site.expect(0, &[leaf_s, "check"]);
    assert!(out.contains("every replicated table"), "{out}");
    site.pg
        .psql("leaf", "alter table t1 add column local_only int");
    let out = site.expect(1, &[leaf_s, "check"]);
    assert!(
        out.contains("public.t1: column local_only (integer) is here but not on the provider"),
        "{out}"
    );
    site.pg
        .psql("leaf", "alter table t1 drop column local_only");
    // resync: a damaged table is copied again by the running worker.
    site.pg.psql(
        "leaf",
        "set session_replication_role = replica; delete from t1 where id % 2 = 0",
    );
    site.expect(0, &[leaf_s, "resync", "t1"]);
    site.expect(2, &[leaf_s, "resync", "nosuch"]);
    wait_until("the resync copy", Duration::from_secs(90), || {
        site.state("leaf", "public.t1") == "ok"
            && site.checksum("leaf", "t1") == site.checksum("root", "t1")
    })
    .await;
    // remove-table on the leaf: replay of the table stops.
    site.expect(0, &[leaf_s, "remove-table", "t1"]);
    site.pg.psql(
        "root",
        "insert into t1 (id, val) values (3, 'not replicated')",
    );
    assert_eq!(site.state("leaf", "public.t1"), "NULL");
    // SIGTERM stops the daemon cleanly: its pidfile goes with it.
    drop(_worker);
    wait_until("the daemon to stop", Duration::from_secs(30), || {
        !pidfile.exists()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_usage_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("londiste")
            .args(args)
            .env_remove("STRATA_CONFIG")
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let out = run(&["missing.ini", "tables"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let bad = dir.path().join("bad.ini");
    std::fs::write(&bad, "[londiste3]\ndb = dbname=x\n").unwrap();
    let out = run(&[bad.to_str().unwrap(), "tables"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("queue_name"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
}

/// Writes to `t_big` and `t_small` on the root in small transactions until stopped.
fn spawn_writer(site: &Site, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    let dsn = site.dsn("root");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let client = strata_pgclient::Dsn::parse(&dsn).unwrap().connect().await.unwrap();
            let mut n: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = 100_000 + n as i64;
                let sql = format!(
                    "begin; insert into t_big values ({id}, 'new {id}'); update t_big set val = val || '+' where id = {}; delete from t_big where id = {}; \
                     insert into t_small values ({id}, 'n') on conflict (id) do update set val = 'again'; update t_small set val = 'u{n}' where id = {}; commit;",
                    (n * 37) % 20_000 + 1,
                    (n * 101) % 20_000 + 1,
                    n % 50 + 1
                );
                client.batch_execute(&sql).await.unwrap();
                n += 1;
            }
            n
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_copies_under_concurrent_writes_end_equal() {
    if skip_without_postgres() {
        return;
    }
    let site = Site::new();
    let (root, leaf) = site.setup_nodes("parallel_copies = 2\n");
    let (root_s, leaf_s) = (root.to_str().unwrap(), leaf.to_str().unwrap());
    for db in ["root", "leaf"] {
        site.pg
            .psql(db, "create table t_big (id bigint primary key, val text)");
        site.pg
            .psql(db, "create table t_small (id bigint primary key, val text)");
    }
    // A secondary index on the target: dropped for the copy, rebuilt after it.
    site.pg
        .psql("leaf", "create index t_big_val on t_big (val)");
    site.pg.psql(
        "root",
        "insert into t_big select g, md5(g::text) from generate_series(1, 20000) g",
    );
    site.pg.psql(
        "root",
        "insert into t_small select g, 'v' from generate_series(1, 50) g",
    );
    // Rows that the copy must replace (truncate before COPY).
    site.pg
        .psql("leaf", "insert into t_small values (-1, 'stale')");
    site.expect(0, &[root_s, "add-table", "t_big", "t_small"]);
    let ticker = Ticker::start(&site).await;
    let stop_writes = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(&site, stop_writes.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    site.expect(0, &[leaf_s, "add-table", "public.t_*"]);

    let cf = NodeConfig::load(&leaf).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let options = WorkerOptions {
        fail_fast: true,
        ..WorkerOptions::default()
    };
    let worker = tokio::spawn(worker::run(cf, options, stop_rx));
    // Every state of the machine is passed through (seen or not); the end is ok for both.
    wait_until("both copies to finish", Duration::from_secs(120), || {
        worker.is_finished()
            || site.state("leaf", "public.t_big") == "ok"
                && site.state("leaf", "public.t_small") == "ok"
    })
    .await;
    if worker.is_finished() {
        panic!("the worker stopped: {:?}", worker.await.unwrap());
    }
    // Writes go on after the hand-over, then stop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_writes.store(true, Ordering::Relaxed);
    let writes = writer.join().unwrap();
    assert!(writes > 0);
    for t in ["t_big", "t_small"] {
        wait_until(&format!("{t} equal"), Duration::from_secs(60), || {
            site.checksum("leaf", t) == site.checksum("root", t)
        })
        .await;
    }
    assert_eq!(
        site.pg.psql(
            "leaf",
            "select count(*) from pg_indexes where indexname = 't_big_val'"
        ),
        "1",
        "the secondary index is rebuilt"
    );
    // The copy consumers are gone from both sides.
    assert_eq!(
        site.pg.psql(
            "leaf",
            "select count(*) from pgq_node.local_state where consumer_name like '%.copy.%'"
        ),
        "0"
    );
    assert_eq!(
        site.pg.psql("root", &format!("select count(*) from pgq.get_consumer_info('{QUEUE}') where consumer_name like '%.copy.%'")),
        "0"
    );
    // The copy snapshot is forgotten once no batch can hold an event the COPY saw.
    wait_until(
        "the copy snapshots to be cleared",
        Duration::from_secs(60),
        || {
            site.pg.psql(
                "leaf",
                "select count(*) from londiste.table_info where custom_snapshot is not null",
            ) == "0"
        },
    )
    .await;
    stop_tx.send(true).unwrap();
    let stats = worker.await.unwrap().unwrap();
    assert!(stats.events > 0 && stats.batches > 0, "{stats:?}");
    drop(ticker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_between_target_commit_and_finish_batch_neither_loses_nor_repeats() {
    if skip_without_postgres() {
        return;
    }
    let site = Site::new();
    let (root, leaf) = site.setup_nodes("");
    let (root_s, leaf_s) = (root.to_str().unwrap(), leaf.to_str().unwrap());
    for db in ["root", "leaf"] {
        site.pg.psql(db, TABLE_SQL);
    }
    site.expect(0, &[root_s, "add-table", "t1"]);
    // Both sides are empty: no copy needed.
    site.expect(0, &[leaf_s, "add-table", "t1", "--expect-sync"]);
    assert_eq!(site.state("leaf", "public.t1"), "ok");
    let root_db = site.client("root").await;
    root_db
        .batch_execute(
            "insert into t1 (id, val) select g, 'first ' || g from generate_series(1, 500) g",
        )
        .await
        .unwrap();
    root_db
        .batch_execute(&format!(
            "select pgq.force_tick('{QUEUE}'); select pgq.ticker('{QUEUE}')"
        ))
        .await
        .unwrap();

    let cf = NodeConfig::load(&leaf).unwrap();
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let crash = WorkerOptions {
        crash_after_commit: Some(1),
        ..WorkerOptions::default()
    };
    let err = worker::run(cf.clone(), crash, stop_rx).await.unwrap_err();
    assert!(err.to_string().contains("crash injected"), "{err}");
    // The rows are in the target, the tick is recorded, the batch is still open upstream.
    assert_eq!(site.pg.psql("leaf", "select count(*) from t1"), "500");
    let open = site.pg.psql(
        "root",
        &format!(
            "select current_batch is not null from pgq.get_consumer_info('{QUEUE}', 'leaf_worker')"
        ),
    );
    assert_eq!(open, "t", "finish_batch must not have run");

    // More writes after the crash, then a normal worker.
    root_db
        .batch_execute(
            "update t1 set val = 'second' where id <= 100; delete from t1 where id > 450",
        )
        .await
        .unwrap();
    let ticker = Ticker::start(&site).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let options = WorkerOptions {
        fail_fast: true,
        ..WorkerOptions::default()
    };
    let worker = tokio::spawn(worker::run(cf, options, stop_rx));
    wait_until("replay after the crash", Duration::from_secs(60), || {
        assert!(
            !worker.is_finished(),
            "the worker stopped (a repeated batch fails on the primary key)"
        );
        site.checksum("leaf", "t1") == site.checksum("root", "t1")
    })
    .await;
    // compare finds an injected difference, repair fixes it (the worker keeps running:
    // the sync point waits for it).
    let out = site.expect(0, &[leaf_s, "compare"]);
    assert!(out.contains("equal"), "{out}");
    site.pg.psql(
        "leaf",
        "set session_replication_role = replica; delete from t1 where id = 5; update t1 set val = 'wrong', n = 1 where id = 6; insert into t1 (id, val) values (9999, 'extra')",
    );
    let out = site.expect(1, &[leaf_s, "compare", "t1"]);
    assert!(out.contains("DIFFERENT"), "{out}");
    let out = site.expect(1, &[leaf_s, "repair", "t1"]);
    assert!(out.contains("1 missing, 1 extra, 1 changed"), "{out}");
    let fix = std::fs::read_to_string(site.path("fix.public.t1.sql")).unwrap();
    assert_eq!(fix.lines().count(), 3, "{fix}");
    site.expect(0, &[leaf_s, "repair", "t1", "--apply"]);
    assert_eq!(site.checksum("leaf", "t1"), site.checksum("root", "t1"));
    site.expect(0, &[leaf_s, "compare", "t1"]);
    stop_tx.send(true).unwrap();
    let stats = worker.await.unwrap().unwrap();
    assert_eq!(
        stats.batches_skipped, 1,
        "the applied batch is skipped, not repeated: {stats:?}"
    );
    assert_eq!(site.pg.psql("leaf", "select count(*) from t1"), "450");
    assert_eq!(
        site.pg
            .psql("leaf", "select count(*) from t1 where val = 'second'"),
        "100"
    );
    drop(ticker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_tasks_killed_in_every_table_state_resume_and_end_equal() {
    if skip_without_postgres() {
        return;
    }
    use strata_londiste::worker::{CopyCrashes, CopyPoint};
    let site = Site::new();
    let (root, leaf) = site.setup_nodes("parallel_copies = 2\n");
    let (root_s, leaf_s) = (root.to_str().unwrap(), leaf.to_str().unwrap());
    let points = [
        ("c_in_copy", CopyPoint::InCopy),
        ("c_catching_up", CopyPoint::CatchingUp),
        ("c_wanna_sync", CopyPoint::WannaSync),
        ("c_do_sync", CopyPoint::DoSync),
    ];
    for (t, _) in points {
        for db in ["root", "leaf"] {
            site.pg.psql(
                db,
                &format!("create table {t} (id bigint primary key, val text)"),
            );
        }
        site.pg.psql(
            "root",
            &format!("insert into {t} select g, md5(g::text) from generate_series(1, 3000) g"),
        );
    }
    site.expect(0, &[root_s, "add-table", "c_*"]);
    let _ticker = Ticker::start(&site).await;
    // Writes into every table while the copies run, crash and resume.
    let stop_writes = Arc::new(AtomicBool::new(false));
    let writer = {
        let dsn = site.dsn("root");
        let stop = stop_writes.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let client = strata_pgclient::Dsn::parse(&dsn).unwrap().connect().await.unwrap();
                let mut n: i64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    let t = ["c_in_copy", "c_catching_up", "c_wanna_sync", "c_do_sync"][(n % 4) as usize];
                    client
                        .batch_execute(&format!(
                            "begin; insert into {t} values ({}, 'w'); update {t} set val = 'u' where id = {}; delete from {t} where id = {}; commit",
                            10_000 + n,
                            n % 3000 + 1,
                            (n * 7) % 3000 + 1
                        ))
                        .await
                        .unwrap();
                    n += 1;
                }
            })
        })
    };
    site.expect(0, &[leaf_s, "add-table", "--all"]);
    let crashes = CopyCrashes::new(
        points
            .iter()
            .map(|(t, p)| (format!("public.{t}"), *p))
            .collect(),
    );
    let options = WorkerOptions {
        fail_fast: true,
        crash_copies: crashes.clone(),
        ..WorkerOptions::default()
    };
    let cf = NodeConfig::load(&leaf).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(worker::run(cf, options, stop_rx));
    wait_until("all copies to finish", Duration::from_secs(120), || {
        worker.is_finished()
            || site.pg.psql(
                "leaf",
                "select count(*) from londiste.table_info where local and merge_state is distinct from 'ok'",
            ) == "0"
    })
    .await;
    if worker.is_finished() {
        panic!("the worker stopped: {:?}", worker.await.unwrap());
    }
    stop_writes.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    for (t, _) in points {
        wait_until(&format!("{t} equal"), Duration::from_secs(60), || {
            site.checksum("leaf", t) == site.checksum("root", t)
        })
        .await;
    }
    assert_eq!(crashes.pending(), 0, "every injected crash fired");
    assert_eq!(
        site.pg.psql(
            "leaf",
            "select count(*) from pgq_node.local_state where consumer_name like '%.copy.%'"
        ),
        "0"
    );
    stop_tx.send(true).unwrap();
    worker.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_to_branch_to_leaf_replays_through_the_branch_queue() {
    if skip_without_postgres() {
        return;
    }
    let site = Site::new();
    let (root, branch, leaf) = site.cascade();
    let (root_s, branch_s, leaf_s) = (
        root.to_str().unwrap(),
        branch.to_str().unwrap(),
        leaf.to_str().unwrap(),
    );
    site.fast_ticks("root");
    site.pg.psql("root", TABLE_SQL);
    site.pg.psql(
        "root",
        "insert into t1 (id, val) select g, 'r' || g from generate_series(1, 2000) g",
    );
    site.expect(0, &[root_s, "add-table", "t1"]);
    site.expect(0, &[branch_s, "add-table", "t1", "--create"]);
    // The root knows every member (the branch spread the leaf's location).
    let members = site.expect(0, &[root_s, "members"]);
    assert!(
        members.contains("branch") && members.contains("leaf"),
        "{members}"
    );

    let _ticker = Ticker::start(&site).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let options = WorkerOptions {
        fail_fast: true,
        ..WorkerOptions::default()
    };
    let branch_worker = tokio::spawn(worker::run(
        NodeConfig::load(&branch).unwrap(),
        options.clone(),
        stop_rx.clone(),
    ));
    wait_until("the branch copy", Duration::from_secs(90), || {
        branch_worker.is_finished() || site.state("branch", "public.t1") == "ok"
    })
    .await;
    site.expect(0, &[leaf_s, "add-table", "t1", "--create"]);
    let leaf_worker = tokio::spawn(worker::run(
        NodeConfig::load(&leaf).unwrap(),
        options,
        stop_rx,
    ));
    site.pg.psql(
        "root",
        "update t1 set val = 'u' where id < 100; delete from t1 where id > 1900",
    );
    wait_until(
        "the leaf copy from the branch",
        Duration::from_secs(90),
        || leaf_worker.is_finished() || site.state("leaf", "public.t1") == "ok",
    )
    .await;
    site.pg.psql("root", "insert into t1 (id, val) values (5000, 'late'); truncate t1; insert into t1 (id, val) values (1, 'after truncate')");
    site.pg.psql(
        "root",
        "insert into t1 (id, val) select g, 'again' from generate_series(10, 500) g",
    );
    wait_until(
        "root, branch and leaf equal",
        Duration::from_secs(60),
        || {
            branch_worker.is_finished()
                || leaf_worker.is_finished()
                || (site.checksum("branch", "t1") == site.checksum("root", "t1")
                    && site.checksum("leaf", "t1") == site.checksum("root", "t1"))
        },
    )
    .await;
    // change-provider: the leaf reads from the root from now on, with nothing lost or
    // repeated across the switch (rows written before, during and after it).
    site.pg.psql(
        "root",
        "insert into t1 (id, val) select g, 'before switch' from generate_series(600, 700) g",
    );
    let out = site.expect(0, &[leaf_s, "change-provider", "--provider", "root"]);
    assert!(out.contains("reads from root now (was branch)"), "{out}");
    site.expect(2, &[leaf_s, "change-provider", "--provider", "nosuch"]);
    site.pg.psql(
        "root",
        "insert into t1 (id, val) select g, 'after switch' from generate_series(701, 800) g; update t1 set val = 'moved' where id = 650",
    );
    wait_until(
        "the leaf equal to the root through its new provider",
        Duration::from_secs(60),
        || leaf_worker.is_finished() || site.checksum("leaf", "t1") == site.checksum("root", "t1"),
    )
    .await;
    assert_eq!(
        site.pg.psql(
            "leaf",
            &format!("select provider_node from pgq_node.get_node_info('{QUEUE}')")
        ),
        "root"
    );
    assert_eq!(
        site.pg.psql(
            "branch",
            &format!("select count(*) from pgq_node.get_subscriber_info('{QUEUE}') where node_name = 'leaf'")
        ),
        "0"
    );
    stop_tx.send(true).unwrap();
    branch_worker.await.unwrap().unwrap();
    leaf_worker.await.unwrap().unwrap();
    assert_eq!(site.checksum("leaf", "t1"), site.checksum("root", "t1"));
    // The branch's queue carries the root's ticks: same ids, same times.
    let ticks = |db: &str| -> Vec<String> {
        site.pg
            .psql(
                db,
                "select t.tick_id || ' ' || t.tick_time from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue \
                 where q.queue_name = 'replika' order by t.tick_id",
            )
            .lines()
            .map(str::to_string)
            .collect()
    };
    let (root_ticks, branch_ticks) = (ticks("root"), ticks("branch"));
    assert!(branch_ticks.len() > 2, "{branch_ticks:?}");
    for t in &branch_ticks[1..] {
        assert!(root_ticks.contains(t), "branch tick {t} is not a root tick");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_keys_wait_in_pending_fkeys_until_both_tables_are_ok() {
    if skip_without_postgres() {
        return;
    }
    let site = Site::new();
    let (root, leaf) = site.setup_nodes("parallel_copies = 2\n");
    let (root_s, leaf_s) = (root.to_str().unwrap(), leaf.to_str().unwrap());
    for db in ["root", "leaf"] {
        site.pg
            .psql(db, "create table parent (id int primary key, name text)");
        site.pg.psql(
            db,
            "create table child (id int primary key, parent_id int not null constraint child_parent_fk references parent (id), note text)",
        );
    }
    site.pg.psql(
        "root",
        "insert into parent select g, 'p' || g from generate_series(1, 500) g",
    );
    site.pg.psql(
        "root",
        "insert into child select g, g % 500 + 1, 'c' from generate_series(1, 3000) g",
    );
    // On the root, `missing` lists the tables not in the set yet.
    let missing = |ini: &str| -> serde_json::Value {
        serde_json::from_str(&site.expect(0, &["--json", ini, "missing"])).unwrap()
    };
    let names = |v: serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(missing(root_s)), ["public.child", "public.parent"]);
    site.expect(0, &[root_s, "add-table", "parent", "child"]);
    assert_eq!(names(missing(root_s)), Vec::<String>::new());
    site.expect(0, &[leaf_s, "add-table", "child", "parent"]);
    let _ticker = Ticker::start(&site).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let options = WorkerOptions {
        fail_fast: true,
        ..WorkerOptions::default()
    };
    let worker = tokio::spawn(worker::run(
        NodeConfig::load(&leaf).unwrap(),
        options,
        stop_rx,
    ));
    let fk = || {
        site.pg.psql(
            "leaf",
            "select count(*) from pg_constraint where conname = 'child_parent_fk' and contype = 'f'",
        )
    };
    wait_until(
        "both copies and the foreign key back",
        Duration::from_secs(90),
        || {
            worker.is_finished()
                || (site.state("leaf", "public.parent") == "ok"
                    && site.state("leaf", "public.child") == "ok"
                    && fk() == "1")
        },
    )
    .await;
    site.pg.psql(
        "root",
        "insert into parent values (501, 'new'); insert into child values (3001, 501, 'new child')",
    );
    wait_until(
        "replay with the foreign key in place",
        Duration::from_secs(60),
        || {
            worker.is_finished()
                || (site.checksum("leaf", "child") == site.checksum("root", "child")
                    && site.checksum("leaf", "parent") == site.checksum("root", "parent"))
        },
    )
    .await;
    stop_tx.send(true).unwrap();
    worker.await.unwrap().unwrap();
    assert_eq!(
        site.pg
            .psql("leaf", "select count(*) from londiste.pending_fkeys"),
        "0"
    );
    assert_eq!(fk(), "1");
    // `fkeys` lists what waits, and whether both sides are ok so it can come back now.
    let fkeys = |ini: &str| -> serde_json::Value {
        serde_json::from_str(&site.expect(0, &["--json", ini, "fkeys"])).unwrap()
    };
    assert_eq!(fkeys(leaf_s), serde_json::json!([]));
    site.pg.psql(
        "leaf",
        "insert into londiste.pending_fkeys values ('public.child', 'public.parent', 'waiting_fk', 'FOREIGN KEY (parent_id) REFERENCES public.parent(id)')",
    );
    let listed = fkeys(leaf_s);
    assert_eq!(listed[0]["name"], "waiting_fk");
    assert_eq!(listed[0]["ready"], true, "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_with_a_live_root_swaps_root_and_branch() {
    if skip_without_postgres() {
        return;
    }
    let site = Site::new();
    site.database("branch");
    let (root, leaf) = site.setup_nodes("");
    let branch = site.ini("branch", "");
    let (root_s, branch_s, leaf_s) = (
        root.to_str().unwrap(),
        branch.to_str().unwrap(),
        leaf.to_str().unwrap(),
    );
    site.expect(
        0,
        &[
            branch_s,
            "create-branch",
            "branch",
            &site.dsn("branch"),
            "--provider",
            &site.dsn("root"),
        ],
    );
    for db in ["root", "branch", "leaf"] {
        site.pg.psql(db, TABLE_SQL);
    }
    site.pg.psql(
        "root",
        "insert into t1 (id, val) select g, 'r' || g from generate_series(1, 1000) g",
    );
    site.expect(0, &[root_s, "add-table", "t1"]);
    site.expect(0, &[branch_s, "add-table", "t1"]);
    site.expect(0, &[leaf_s, "add-table", "t1"]);
    // Before the branch has copied t1, takeover refuses.
    site.expect(2, &[branch_s, "takeover", "root"]);
    let _ticker = Ticker::start_on(&site, &["root", "branch"]).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let options = WorkerOptions {
        fail_fast: true,
        ..WorkerOptions::default()
    };
    let mut workers: Vec<_> = [&root, &branch, &leaf]
        .iter()
        .map(|ini| {
            tokio::spawn(worker::run(
                NodeConfig::load(ini).unwrap(),
                options.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();
    let any_stopped = |w: &Vec<tokio::task::JoinHandle<_>>| w.iter().any(|t| t.is_finished());
    wait_until("copies on branch and leaf", Duration::from_secs(90), || {
        any_stopped(&workers)
            || (site.state("branch", "public.t1") == "ok"
                && site.state("leaf", "public.t1") == "ok")
    })
    .await;
    site.pg
        .psql("root", "update t1 set val = 'before' where id < 100");

    let out = site.expect(0, &[branch_s, "takeover", "root", "--timeout", "60"]);
    assert!(out.contains("branch is the root now"), "{out}");
    assert!(
        !any_stopped(&workers),
        "a worker stopped during the takeover"
    );
    assert!(site.expect(0, &[branch_s, "node-info"]).contains("root"));
    let old = site.expect(0, &[root_s, "--json", "node-info"]);
    assert!(
        old.contains("\"node_type\": \"branch\"") && old.contains("\"provider_node\": \"branch\""),
        "{old}"
    );
    // The old root takes no writes; the new one does, and they reach every node (the leaf
    // still reads from the old root, now a branch).
    assert!(site
        .pg
        .try_psql("root", "insert into t1 (id, val) values (7000, 'refused')")
        .is_err());
    site.pg.psql(
        "branch",
        "insert into t1 (id, val) values (8000, 'after takeover'); delete from t1 where id between 901 and 1000",
    );
    wait_until(
        "writes on the new root everywhere",
        Duration::from_secs(60),
        || {
            any_stopped(&workers)
                || (site.checksum("root", "t1") == site.checksum("branch", "t1")
                    && site.checksum("leaf", "t1") == site.checksum("branch", "t1"))
        },
    )
    .await;
    for (name, w) in ["root", "branch", "leaf"].iter().zip(workers.iter_mut()) {
        if w.is_finished() {
            panic!("the {name} worker stopped: {:?}", w.await);
        }
    }
    assert_eq!(
        site.pg.psql("leaf", "select val from t1 where id = 8000"),
        "after takeover"
    );
    stop_tx.send(true).unwrap();
    for w in workers {
        w.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequences_follow_the_root_ahead_of_use() {
    if skip_without_postgres() {
        return;
    }
    let site = Site::new();
    let (root, leaf) = site.setup_nodes("");
    let (root_s, leaf_s) = (root.to_str().unwrap(), leaf.to_str().unwrap());
    for db in ["root", "leaf"] {
        site.pg.psql(db, "create sequence public.order_seq");
    }
    site.pg.psql("root", "select setval('order_seq', 5000)");
    site.expect(0, &[root_s, "add-seq", "order_*"]);
    site.expect(2, &[root_s, "add-seq", "nosuch_seq"]);
    let _ticker = Ticker::start(&site).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let options = WorkerOptions {
        fail_fast: true,
        ..WorkerOptions::default()
    };
    let mut workers: Vec<_> = [&root, &leaf]
        .iter()
        .map(|ini| {
            tokio::spawn(worker::run(
                NodeConfig::load(ini).unwrap(),
                options.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();
    // The root worker publishes the value; the leaf learns the sequence from the set.
    wait_until(
        "the sequence in the leaf's set",
        Duration::from_secs(60),
        || {
            workers.iter().any(|w| w.is_finished())
                || site.pg.psql(
                    "leaf",
                    "select count(*) from londiste.seq_info where seq_name = 'public.order_seq'",
                ) == "1"
        },
    )
    .await;
    site.expect(0, &[leaf_s, "add-seq", "public.order_seq"]);
    let seqs = site.expect(0, &[leaf_s, "seqs"]);
    assert!(
        seqs.contains("public.order_seq") && seqs.contains("yes"),
        "{seqs}"
    );
    site.pg.psql("root", "select setval('order_seq', 90000)");
    wait_until(
        "the leaf's sequence at least the root's",
        Duration::from_secs(60),
        || {
            workers.iter().any(|w| w.is_finished())
                || site
                    .pg
                    .psql("leaf", "select last_value >= 90000 from order_seq")
                    == "t"
        },
    )
    .await;
    for (name, w) in ["root", "leaf"].iter().zip(workers.iter_mut()) {
        if w.is_finished() {
            panic!("the {name} worker stopped: {:?}", w.await);
        }
    }
    site.expect(0, &[leaf_s, "remove-seq", "order_seq"]);
    stop_tx.send(true).unwrap();
    for w in workers {
        w.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_from_a_dead_root_promotes_the_branch_and_its_leaf_follows() {
    if skip_without_postgres() {
        return;
    }
    let site = Site::new();
    let (root, branch, leaf) = site.cascade();
    let (root_s, branch_s, leaf_s) = (
        root.to_str().unwrap(),
        branch.to_str().unwrap(),
        leaf.to_str().unwrap(),
    );
    site.fast_ticks("root");
    for db in ["root", "branch", "leaf"] {
        site.pg.psql(db, TABLE_SQL);
    }
    site.pg.psql(
        "root",
        "insert into t1 (id, val) select g, 'r' || g from generate_series(1, 500) g",
    );
    site.expect(0, &[root_s, "add-table", "t1"]);
    site.expect(0, &[branch_s, "add-table", "t1"]);
    site.expect(0, &[leaf_s, "add-table", "t1"]);
    let _ticker = Ticker::start_on(&site, &["root", "branch"]).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // The branch worker must outlive its provider's death: it retries.
    let branch_worker = tokio::spawn(worker::run(
        NodeConfig::load(&branch).unwrap(),
        WorkerOptions::default(),
        stop_rx.clone(),
    ));
    let leaf_worker = tokio::spawn(worker::run(
        NodeConfig::load(&leaf).unwrap(),
        WorkerOptions {
            fail_fast: true,
            ..WorkerOptions::default()
        },
        stop_rx,
    ));
    wait_until("copies on branch and leaf", Duration::from_secs(90), || {
        leaf_worker.is_finished()
            || (site.state("branch", "public.t1") == "ok"
                && site.state("leaf", "public.t1") == "ok")
    })
    .await;
    site.pg
        .psql("root", "update t1 set val = 'last from root' where id < 10");
    wait_until(
        "the last root writes on the leaf",
        Duration::from_secs(60),
        || leaf_worker.is_finished() || site.checksum("leaf", "t1") == site.checksum("root", "t1"),
    )
    .await;
    // The root dies: its location leads nowhere and its sessions are gone.
    site.pg.psql(
        "branch",
        &format!("select pgq_node.register_location('{QUEUE}', 'root', 'host=/nonexistent port=1 dbname=root connect_timeout=1', false)"),
    );
    site.pg.psql(
        "postgres",
        "select pg_terminate_backend(pid) from pg_stat_activity where datname = 'root' and pid <> pg_backend_pid()",
    );
    // Without --dead-root the takeover refuses to guess.
    site.expect(1, &[branch_s, "takeover", "root", "--timeout", "5"]);
    let out = site.expect(
        0,
        &[
            branch_s,
            "takeover",
            "root",
            "--dead-root",
            "--timeout",
            "60",
        ],
    );
    assert!(out.contains("branch is the root now"), "{out}");
    let members = site.expect(0, &[branch_s, "members"]);
    assert!(
        members
            .lines()
            .any(|l| l.contains("root") && l.contains("dead")),
        "{members}"
    );
    assert!(site
        .expect(0, &[branch_s, "--json", "node-info"])
        .contains("\"node_type\": \"root\""));
    // The new root takes writes, and its leaf follows.
    site.pg.psql("branch", "insert into t1 (id, val) values (9000, 'new root'); delete from t1 where id between 100 and 200");
    wait_until(
        "writes on the new root at the leaf",
        Duration::from_secs(60),
        || {
            branch_worker.is_finished()
                || leaf_worker.is_finished()
                || site.checksum("leaf", "t1") == site.checksum("branch", "t1")
        },
    )
    .await;
    assert!(
        !branch_worker.is_finished() && !leaf_worker.is_finished(),
        "a worker stopped"
    );
    assert_eq!(
        site.pg.psql("leaf", "select val from t1 where id = 9000"),
        "new root"
    );
    stop_tx.send(true).unwrap();
    branch_worker.await.unwrap().unwrap();
    leaf_worker.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_from_a_dead_root_catches_up_from_the_most_advanced_branch_and_resurrect_saves_what_was_lost(
) {
    if skip_without_postgres() {
        return;
    }
    let site = Site::new();
    site.database("b1");
    site.database("b2");
    let root = site.ini("root", "");
    let root_s = root.to_str().unwrap();
    site.expect(0, &[root_s, "create-root", "root", &site.dsn("root")]);
    site.fast_ticks("root");
    let b1 = site.node("b1", "branch", "root");
    let b2 = site.node("b2", "branch", "root");
    let leaf = site.node("leaf", "leaf", "root");
    let (b1_s, b2_s, leaf_s) = (
        b1.to_str().unwrap(),
        b2.to_str().unwrap(),
        leaf.to_str().unwrap(),
    );
    for db in ["root", "b1", "b2", "leaf"] {
        site.pg.psql(db, TABLE_SQL);
    }
    site.pg.psql(
        "root",
        "insert into t1 (id, val) select g, 'r' || g from generate_series(1, 300) g",
    );
    for ini in [root_s, b1_s, b2_s, leaf_s] {
        site.expect(0, &[ini, "add-table", "t1"]);
    }
    let _ticker = Ticker::start_on(&site, &["root", "b1", "b2"]).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers = start_workers(&[&root, &b1, &b2, &leaf], &stop_rx);
    wait_until("copies everywhere", Duration::from_secs(90), || {
        ["b1", "b2", "leaf"]
            .iter()
            .all(|db| site.state(db, "public.t1") == "ok")
    })
    .await;

    // b1 falls behind: batch 1 reaches b2 and the leaf only.
    site.expect(0, &[b1_s, "pause"]);
    site.pg.psql(
        "root",
        "insert into t1 (id, val) select g, 'batch 1' from generate_series(1001, 1050) g",
    );
    wait_until(
        "batch 1 on b2 and the leaf",
        Duration::from_secs(60),
        || {
            site.checksum("b2", "t1") == site.checksum("root", "t1")
                && site.checksum("leaf", "t1") == site.checksum("root", "t1")
        },
    )
    .await;
    // Batch 2 is ticked on the root but never leaves it. The leaf stops first and b2 only
    // once it has the leaf's tick: with ticks every 100 ms the leaf could otherwise take
    // one more (empty) tick than b2 and be ahead of every survivor, which the takeover
    // rightly refuses to move.
    site.expect(0, &[leaf_s, "pause"]);
    wait_until(
        "the leaf to acknowledge its pause",
        Duration::from_secs(30),
        || {
            site.pg.psql(
                "leaf",
                &format!(
                    "select uptodate from pgq_node.get_consumer_state('{QUEUE}', 'leaf_worker')"
                ),
            ) == "t"
        },
    )
    .await;
    let completed = |db: &str, worker: &str| {
        site.count(
            db,
            &format!(
                "select completed_tick from pgq_node.get_consumer_state('{QUEUE}', '{worker}')"
            ),
        )
    };
    let leaf_tick = completed("leaf", "leaf_worker");
    wait_until("b2 at the leaf's tick", Duration::from_secs(30), || {
        completed("b2", "b2_worker") >= leaf_tick
    })
    .await;
    site.expect(0, &[b2_s, "pause"]);
    let tick_before = site.count(
        "root",
        &format!("select last_tick_id from pgq.get_queue_info('{QUEUE}')"),
    );
    site.pg.psql(
        "root",
        "insert into t1 (id, val) select g, 'batch 2, lost' from generate_series(2001, 2030) g",
    );
    wait_until("a tick after batch 2", Duration::from_secs(30), || {
        site.count(
            "root",
            &format!("select last_tick_id from pgq.get_queue_info('{QUEUE}')"),
        ) > tick_before
    })
    .await;
    site.kill("root");

    // Failover on b1: it catches up from b2 first, then takes b2 and the leaf along.
    let out = site.expect(
        0,
        &[b1_s, "takeover", "root", "--dead-root", "--timeout", "60"],
    );
    assert!(out.contains("caught up from b2"), "{out}");
    assert!(out.contains("b2 reads from b1"), "{out}");
    assert!(out.contains("leaf reads from b1"), "{out}");
    assert!(out.contains("b1 is the root now"), "{out}");
    let members = site.expect(0, &[b2_s, "members"]);
    assert!(
        members
            .lines()
            .any(|l| l.contains("root") && l.contains("dead")),
        "{members}"
    );
    site.pg.psql(
        "b1",
        "insert into t1 (id, val) select g, 'batch 3' from generate_series(3001, 3010) g",
    );
    wait_until("batch 3 everywhere", Duration::from_secs(60), || {
        site.checksum("b2", "t1") == site.checksum("b1", "t1")
            && site.checksum("leaf", "t1") == site.checksum("b1", "t1")
    })
    .await;
    assert_eq!(
        site.count(
            "b1",
            "select count(*) from t1 where id between 1001 and 1050"
        ),
        50,
        "b1 lacks batch 1: it did not catch up from b2"
    );
    assert_eq!(
        site.count(
            "b1",
            "select count(*) from t1 where id between 2001 and 2030"
        ),
        0
    );
    assert_eq!(
        site.count(
            "b1",
            &format!("select count(*) from pgq.get_consumer_info('{QUEUE}', 'root.gravestone')")
        ),
        1
    );

    // The old root comes back: resurrect saves batch 2 and rejoins as b1's branch.
    site.revive("root");
    let dump = site.path("lost.json");
    let out = site.expect(0, &[root_s, "resurrect", "--dump", dump.to_str().unwrap()]);
    assert!(out.contains("lost events saved"), "{out}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dump).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the dump holds row data");
    }
    let lost: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&dump).unwrap()).unwrap();
    let inserts: Vec<&serde_json::Value> = lost
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ev_type"].as_str().is_some_and(|t| t.starts_with("I:")))
        .collect();
    assert_eq!(inserts.len(), 30, "{lost}");
    assert!(inserts
        .iter()
        .all(|e| e["ev_extra1"] == "public.t1" && e["ev_data"].as_str().unwrap().contains("lost")));
    // A second resurrect refuses to overwrite the dump.
    site.expect(2, &[root_s, "resurrect", "--dump", dump.to_str().unwrap()]);
    let info = site.expect(0, &[root_s, "--json", "node-info"]);
    assert!(
        info.contains("\"node_type\": \"branch\"") && info.contains("\"provider_node\": \"b1\""),
        "{info}"
    );
    assert_eq!(
        site.count(
            "b1",
            &format!("select count(*) from pgq.get_consumer_info('{QUEUE}', 'root.gravestone')")
        ),
        0
    );
    site.expect(0, &[root_s, "resume"]);
    wait_until(
        "batch 3 on the resurrected root",
        Duration::from_secs(60),
        || {
            site.count(
                "root",
                "select count(*) from t1 where id between 3001 and 3010",
            ) == 10
        },
    )
    .await;
    // Its table still holds the lost rows: compare sees them, repair removes them.
    site.expect(1, &[root_s, "compare", "--timeout", "60"]);
    site.expect(0, &[root_s, "repair", "--apply", "--timeout", "60"]);
    assert_eq!(site.checksum("root", "t1"), site.checksum("b1", "t1"));
    stop_workers(stop_tx, workers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_branch_is_taken_over_by_its_subscribers_then_dropped_and_waits_see_upstream_writes()
{
    if skip_without_postgres() {
        return;
    }
    let site = Site::new();
    site.database("leaf2");
    let (root, branch, leaf) = site.cascade();
    let leaf2 = site.node("leaf2", "leaf", "branch");
    let (root_s, leaf_s, leaf2_s) = (
        root.to_str().unwrap(),
        leaf.to_str().unwrap(),
        leaf2.to_str().unwrap(),
    );
    site.fast_ticks("root");
    for db in ["root", "branch", "leaf", "leaf2"] {
        site.pg.psql(db, TABLE_SQL);
    }
    site.pg.psql(
        "root",
        "insert into t1 (id, val) select g, 'r' || g from generate_series(1, 300) g",
    );
    for ini in [&root, &branch, &leaf, &leaf2] {
        site.expect(0, &[ini.to_str().unwrap(), "add-table", "t1"]);
    }
    let _ticker = Ticker::start_on(&site, &["root", "branch"]).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers = start_workers(&[&branch, &leaf], &stop_rx);
    let (stop2_tx, stop2_rx) = tokio::sync::watch::channel(false);
    let leaf2_worker = start_workers(&[&leaf2], &stop2_rx).pop().unwrap();
    wait_until("copies everywhere", Duration::from_secs(90), || {
        ["branch", "leaf", "leaf2"]
            .iter()
            .all(|db| site.state(db, "public.t1") == "ok")
    })
    .await;

    // wait-root returns once the root's writes before it are here: no polling needed.
    site.pg.psql(
        "root",
        "insert into t1 (id, val) values (500, 'waited for')",
    );
    site.expect(0, &[leaf_s, "wait-root", "--timeout", "60"]);
    assert_eq!(
        site.pg.psql("leaf", "select val from t1 where id = 500"),
        "waited for"
    );
    site.pg.psql(
        "root",
        "update t1 set val = 'via the branch' where id = 500",
    );
    site.expect(
        0,
        &[branch.to_str().unwrap(), "wait-root", "--timeout", "60"],
    );
    site.expect(0, &[leaf2_s, "wait-provider", "--timeout", "60"]);
    assert_eq!(
        site.pg.psql("leaf2", "select val from t1 where id = 500"),
        "via the branch"
    );
    // compare and repair through the branch: a row lost on leaf2 is found and put back.
    site.expect(0, &[leaf2_s, "compare", "--timeout", "60"]);
    site.pg.psql(
        "leaf2",
        "set session_replication_role = replica; delete from t1 where id = 7; update t1 set val = 'drift' where id = 8",
    );
    site.expect(1, &[leaf2_s, "compare", "--timeout", "60"]);
    let out = site.expect(0, &[leaf2_s, "repair", "--apply", "--timeout", "60"]);
    assert!(
        out.contains("1 missing") && out.contains("1 changed"),
        "{out}"
    );
    site.expect(0, &[leaf2_s, "compare", "--timeout", "60"]);
    assert_eq!(site.checksum("leaf2", "t1"), site.checksum("branch", "t1"));
    // The branch's worker runs again after each sync point.
    site.pg.psql(
        "root",
        "insert into t1 (id, val) values (501, 'after compare')",
    );
    site.expect(0, &[leaf2_s, "wait-root", "--timeout", "60"]);
    site.expect(2, &[root_s, "wait-root"]);
    site.expect(0, &[leaf_s, "pause"]);
    site.expect(1, &[leaf_s, "wait-root", "--timeout", "2"]);
    site.expect(0, &[leaf_s, "resume"]);

    // tag-dead and tag-alive reach every member.
    site.expect(0, &[root_s, "tag-dead", "leaf2"]);
    let dead = |db: &str| {
        site.pg.psql(db, &format!("select dead from pgq_node.node_location where queue_name = '{QUEUE}' and node_name = 'leaf2'"))
    };
    assert_eq!(
        (dead("root"), dead("branch"), dead("leaf")),
        ("t".into(), "t".into(), "t".into())
    );
    // The root also sends each change down the queue as a `pgq.location-info` event; the
    // tag-dead event may reach a node after the direct tag-alive, and the tag-alive event
    // after it: the flags converge to alive.
    site.expect(0, &[root_s, "tag-alive", "leaf2"]);
    // Both events are in the root's queue now: once the leaf has applied everything the
    // root had, no tag-dead event is still on its way to flip a flag back (the branch dies
    // next, and a leaf that still believed leaf2 dead would leave it behind).
    site.expect(0, &[leaf_s, "wait-root", "--timeout", "60"]);
    wait_until("leaf2 alive everywhere", Duration::from_secs(60), || {
        (dead("root"), dead("branch"), dead("leaf")) == ("f".into(), "f".into(), "f".into())
    })
    .await;

    // The branch dies; the leaf takes its place, and leaf2 (whose provider it was) moves
    // up to the root with it.
    site.kill("branch");
    site.expect(1, &[leaf_s, "change-provider", "--provider", "root"]);
    let out = String::from_utf8(
        site.strata(&[leaf_s, "takeover", "branch", "--dead-branch"])
            .stderr,
    )
    .unwrap();
    assert!(out.contains("still subscribed on root"), "{out}");
    let info = |ini: &str| site.expect(0, &[ini, "--json", "node-info"]);
    assert!(
        info(leaf_s).contains("\"provider_node\": \"root\""),
        "{out}"
    );
    assert!(
        info(leaf2_s).contains("\"provider_node\": \"root\""),
        "{out}"
    );
    site.pg.psql(
        "root",
        "insert into t1 (id, val) select g, 'after the branch' from generate_series(600, 650) g; delete from t1 where id < 50",
    );
    wait_until(
        "root writes on both leaves",
        Duration::from_secs(60),
        || {
            site.checksum("leaf", "t1") == site.checksum("root", "t1")
                && site.checksum("leaf2", "t1") == site.checksum("root", "t1")
        },
    )
    .await;

    // drop-node: the dead branch is forgotten (its subscription on the root too).
    site.expect(0, &[root_s, "drop-node", "branch"]);
    assert_eq!(
        site.count(
            "root",
            &format!("select count(*) from pgq_node.get_subscriber_info('{QUEUE}') where node_name = 'branch'")
        ),
        0
    );
    assert!(!site.expect(0, &[leaf_s, "members"]).contains("branch"));
    // A node others read from is refused; a live leaf is dropped in its own database too:
    // its tables take writes again.
    site.revive("branch");
    site.expect(2, &[root_s, "drop-node", "root"]);
    stop2_tx.send(true).unwrap();
    leaf2_worker.await.unwrap().unwrap();
    assert!(site
        .pg
        .try_psql("leaf2", "insert into t1 (id, val) values (9999, 'denied')")
        .is_err());
    site.expect(0, &[root_s, "drop-node", "leaf2"]);
    site.pg.psql(
        "leaf2",
        "insert into t1 (id, val) values (9999, 'local again')",
    );
    assert_eq!(
        site.count("leaf2", "select count(*) from pgq_node.node_info"),
        0
    );
    assert!(!site.expect(0, &[root_s, "members"]).contains("leaf2"));

    let mut workers = workers;
    let leaf_worker = workers.pop().unwrap();
    assert!(!leaf_worker.is_finished(), "the leaf's worker stopped");
    stop_tx.send(true).unwrap();
    leaf_worker.await.unwrap().unwrap();
    // The branch's worker lost its node's place in the cascade: it only has to stop.
    let _ = workers.pop().unwrap().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_headers_choose_the_nodes_and_rename_tables() {
    if skip_without_postgres() {
        return;
    }
    let site = Site::new();
    let (root, leaf) = site.setup_nodes("");
    let (root_s, leaf_s) = (root.to_str().unwrap(), leaf.to_str().unwrap());
    for db in ["root", "leaf"] {
        site.pg.psql(db, TABLE_SQL);
        site.pg
            .psql(db, "create table public.t2 (id int primary key, val text)");
    }
    site.pg.psql(
        "root",
        "insert into t1 (id) values (1); insert into t2 (id) values (1)",
    );
    site.expect(0, &[root_s, "add-table", "t1", "t2"]);
    // The leaf replicates t1 only.
    site.expect(0, &[leaf_s, "add-table", "t1"]);
    let _ticker = Ticker::start(&site).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers = start_workers(&[&root, &leaf], &stop_rx);
    wait_until("t1 on the leaf", Duration::from_secs(60), || {
        site.state("leaf", "public.t1") == "ok"
    })
    .await;
    let write = |name: &str, sql: &str| {
        let path = site.path(name);
        std::fs::write(&path, sql).unwrap();
        path.to_str().unwrap().to_string()
    };
    let on_t1 = write(
        "on_t1.sql",
        "-- adds a column where t1 is replicated\n--*-- Local-Table: public.t1\nalter table @public.t1@ add column note text;\n",
    );
    let on_t2 = write(
        "on_t2.sql",
        "--*-- Local-Table: t2\nalter table @t2@ add column extra int;\n",
    );
    let needs = write(
        "needs.sql",
        "--*-- Need-Table: public.nowhere,\n--*--   public.t1\ncreate table public.never (id int);\n",
    );
    let bad = write("bad.sql", "--*-- Local-Tabel: t1\nselect 1;\n");
    site.expect(2, &[root_s, "execute", &bad]);
    site.expect(
        0,
        &[
            root_s,
            "execute",
            &on_t1,
            &on_t2,
            "--wait",
            "--timeout",
            "60",
        ],
    );
    let columns = |db: &str, table: &str| {
        site.pg.psql(db, &format!("select string_agg(attname, ',' order by attnum) from pg_attribute where attrelid = '{table}'::regclass and attnum > 0 and not attisdropped"))
    };
    assert!(columns("root", "t1").ends_with(",note"));
    assert!(columns("leaf", "t1").ends_with(",note"));
    assert!(columns("root", "t2").ends_with(",extra"));
    assert_eq!(
        columns("leaf", "t2"),
        "id,val",
        "t2 is not replicated on the leaf"
    );
    // Both files are recorded as applied on the leaf, run or skipped.
    assert_eq!(
        site.count("leaf", "select count(*) from londiste.applied_execute where execute_file in ('on_t1.sql', 'on_t2.sql')"),
        2
    );
    // A header matching partly is an error on the root: nothing runs, nothing is sent.
    let out = site.strata(&[root_s, "execute", &needs]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("partly"));
    assert_eq!(
        site.count(
            "root",
            "select count(*) from pg_class where relname = 'never'"
        ),
        0
    );
    stop_workers(stop_tx, workers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watermarks_flow_up_and_down_so_every_queue_can_rotate() {
    if skip_without_postgres() {
        return;
    }
    let site = Site::new();
    let (root, branch, leaf) = site.cascade();
    // Publish on every loop instead of every 5 minutes.
    for node in ["root", "branch", "leaf"] {
        site.ini(
            node,
            "local_wm_publish_period = 0\nglobal_wm_publish_period = 0\n",
        );
    }
    site.fast_ticks("root");
    for db in ["root", "branch", "leaf"] {
        site.pg.psql(db, TABLE_SQL);
    }
    for ini in [&root, &branch, &leaf] {
        site.expect(0, &[ini.to_str().unwrap(), "add-table", "t1"]);
    }
    let consumer_tick = |db: &str, consumer: &str| {
        site.count(
            db,
            &format!("select coalesce(max(last_tick), 0) from pgq.get_consumer_info('{QUEUE}', '{consumer}')"),
        )
    };
    let start = (
        consumer_tick("root", ".branch.watermark"),
        consumer_tick("branch", ".leaf.watermark"),
        consumer_tick("branch", ".global_watermark"),
    );
    let _ticker = Ticker::start_on(&site, &["root", "branch"]).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers = start_workers(&[&root, &branch, &leaf], &stop_rx);
    for i in 0..5 {
        site.pg.psql(
            "root",
            &format!("insert into t1 (id, val) values ({i}, 'w')"),
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Each subscriber moves its watermark consumer on its provider; the root's global
    // watermark reaches the branch as an event.
    wait_until(
        "watermarks past their start",
        Duration::from_secs(60),
        || {
            consumer_tick("root", ".branch.watermark") > start.0
                && consumer_tick("branch", ".leaf.watermark") > start.1
                && consumer_tick("branch", ".global_watermark") > start.2
        },
    )
    .await;
    stop_workers(stop_tx, workers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_wakes_on_the_strata_tickers_announcement_not_its_poll() {
    if skip_without_postgres() {
        return;
    }
    let site = Site::new();
    // A poll this slow would miss the guard below: only the announcement can be in time.
    let (root, leaf) = site.setup_nodes("loop_delay = 120\n");
    let (root_s, leaf_s) = (root.to_str().unwrap(), leaf.to_str().unwrap());
    for db in ["root", "leaf"] {
        site.pg.psql(db, TABLE_SQL);
    }
    site.expect(0, &[root_s, "add-table", "t1"]);
    site.expect(0, &[leaf_s, "add-table", "t1", "--expect-sync"]);
    let ticker_ini = site.path("pgqd.ini");
    std::fs::write(
        &ticker_ini,
        format!(
            "[pgqd]\nbase_connstr = host={} port={} user=postgres\ndatabase_list = root\nticker_period = 1\nlogfile = {}\n",
            site.pg.socket_dir.display(),
            site.pg.port,
            site.path("ticker.log").display()
        ),
    )
    .unwrap();
    let _ticker = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["pgq", "ticker"])
            .arg(&ticker_ini)
            .env_remove("STRATA_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers = start_workers(&[&leaf], &stop_rx);
    // The worker has polled once and sleeps now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for round in 0..3 {
        site.pg.psql(
            "root",
            &format!("insert into t1 (id, val) values ({round}, 'woken')"),
        );
        wait_until("the row on the leaf", Duration::from_secs(60), || {
            site.count(
                "leaf",
                &format!("select count(*) from t1 where id = {round}"),
            ) == 1
        })
        .await;
    }
    assert!(!workers[0].is_finished(), "the worker stopped");
    stop_tx.send(true).unwrap();
    for w in workers {
        w.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_refuses_a_new_root_lacking_tables_of_the_set_and_status_skips_dead_members() {
    if skip_without_postgres() {
        return;
    }
    let site = Site::new();
    let (_root, branch, leaf) = site.cascade_with_tables(true);
    let branch_s = branch.to_str().unwrap();
    let _ticker = Ticker::start_on(&site, &["root", "branch"]).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers = start_workers(&[&branch, &leaf], &stop_rx);
    wait_until(
        "t1 copied on branch and leaf",
        Duration::from_secs(90),
        || site.state("branch", "public.t1") == "ok" && site.state("leaf", "public.t1") == "ok",
    )
    .await;

    // Live root: the branch does not replicate t2, which the new root would lack.
    let out = site.expect_all(2, &[branch_s, "takeover", "root", "--timeout", "30"]);
    assert!(
        out.contains("public.t2") && !out.contains("public.t1"),
        "{out}"
    );
    assert!(site
        .expect(0, &[branch_s, "--json", "node-info"])
        .contains("\"node_type\": \"branch\""));

    // The root dies. status names it and fails until it is tagged dead.
    site.kill("root");
    let status = site.expect_all(1, &[branch_s, "status", "--timeout", "5"]);
    assert!(status.contains("root"), "{status}");
    // A dead root: the set comes from what the branch (and the leaf) know of it.
    let out = site.expect_all(
        2,
        &[
            branch_s,
            "takeover",
            "root",
            "--dead-root",
            "--timeout",
            "30",
        ],
    );
    assert!(
        out.contains("public.t2") && !out.contains("public.t1"),
        "{out}"
    );
    let members = site.expect(0, &[branch_s, "members"]);
    assert!(
        !members.lines().any(|l| l.contains("dead")),
        "a refused takeover changed nothing: {members}"
    );
    let out = site.expect_all(
        0,
        &[
            branch_s,
            "takeover",
            "root",
            "--dead-root",
            "--allow-missing-tables",
            "--timeout",
            "60",
        ],
    );
    assert!(out.contains("branch is the root now"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("missing from the new root") && l.contains("public.t2")),
        "{out}"
    );
    let json = site.expect(0, &[branch_s, "--json", "status", "--timeout", "5"]);
    let nodes: serde_json::Value = serde_json::from_str(&json).unwrap();
    let root_row = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "root")
        .unwrap();
    assert_eq!(root_row["location_dead"], true, "{json}");
    assert!(root_row["error"].is_null(), "{json}");
    let text = site.expect(0, &[branch_s, "status", "--timeout", "5"]);
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("root") && l.contains("dead")),
        "{text}"
    );

    // Data flows from the new root to the leaf.
    site.pg.psql(
        "branch",
        "insert into t1 (id, val) values (9001, 'after failover')",
    );
    wait_until(
        "the new root's row on the leaf",
        Duration::from_secs(60),
        || {
            site.pg
                .psql("leaf", "select count(*) from t1 where id = 9001")
                == "1"
        },
    )
    .await;
    stop_workers(stop_tx, workers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_location_and_rename_node_reach_every_member_and_replication_goes_on() {
    if skip_without_postgres() {
        return;
    }
    let site = Site::new();
    let (root, branch, leaf) = site.cascade_with_tables(false);
    let (root_s, leaf_s) = (root.to_str().unwrap(), leaf.to_str().unwrap());
    let _ticker = Ticker::start_on(&site, &["root", "branch"]).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers = start_workers(&[&branch, &leaf], &stop_rx);
    wait_until(
        "t1 copied on branch and leaf",
        Duration::from_secs(90),
        || site.state("branch", "public.t1") == "ok" && site.state("leaf", "public.t1") == "ok",
    )
    .await;
    let site = &site;
    let arrives = |id: i32| async move {
        site.pg.psql(
            "root",
            &format!("insert into t1 (id, val) values ({id}, 'x')"),
        );
        wait_until(
            &format!("row {id} on the leaf"),
            Duration::from_secs(60),
            || {
                site.pg
                    .psql("leaf", &format!("select count(*) from t1 where id = {id}"))
                    == "1"
            },
        )
        .await;
    };
    let status = |ini: &str| -> serde_json::Value {
        let out = site.expect(0, &[ini, "--json", "status", "--timeout", "10"]);
        serde_json::from_str(&out).unwrap()
    };
    let row = |nodes: &serde_json::Value, name: &str| -> serde_json::Value {
        nodes
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {nodes}"))
            .clone()
    };

    // change-location: refused when the new location is another node or leads nowhere.
    let out = site.expect_all(2, &[root_s, "change-location", "branch", &site.dsn("leaf")]);
    assert!(out.contains("is node leaf, not branch"), "{out}");
    site.expect_all(
        1,
        &[
            root_s,
            "change-location",
            "branch",
            "host=/nonexistent port=1 dbname=branch connect_timeout=1",
        ],
    );
    site.expect_all(
        2,
        &[root_s, "change-location", "nosuch", &site.dsn("branch")],
    );
    // The branch's new connection string reaches every member, the leaf's worker follows.
    let moved = format!("{} application_name=moved", site.dsn("branch"));
    let out = site.expect(0, &[root_s, "change-location", "branch", &moved]);
    for name in ["root", "branch", "leaf"] {
        assert!(
            out.contains(&format!("{name}: branch is at the new location")),
            "{out}"
        );
    }
    for db in ["root", "branch", "leaf"] {
        assert_eq!(
            site.pg.psql(db, &format!("select node_location from pgq_node.node_location where queue_name = '{QUEUE}' and node_name = 'branch'")),
            moved,
            "on {db}"
        );
    }
    let nodes = status(leaf_s);
    assert_eq!(
        row(&nodes, "leaf")["info"]["provider_location"],
        moved.as_str()
    );
    arrives(10_001).await;

    // rename-node: refused onto an existing name, then the branch and the root.
    site.expect_all(2, &[leaf_s, "rename-node", "branch", "leaf"]);
    site.expect_all(2, &[leaf_s, "rename-node", "nosuch", "other"]);
    let out = site.expect(0, &[leaf_s, "rename-node", "branch", "mid"]);
    assert!(
        out.contains("root: the subscription of branch is mid's now"),
        "{out}"
    );
    assert!(out.contains("leaf reads from mid"), "{out}");
    let out = site.expect(0, &[leaf_s, "rename-node", "root", "top"]);
    assert!(out.contains("mid reads from top"), "{out}");
    for db in ["root", "branch", "leaf"] {
        assert_eq!(
            site.pg.psql(db, &format!("select string_agg(node_name, ',' order by node_name) from pgq_node.node_location where queue_name = '{QUEUE}'")),
            "leaf,mid,top",
            "on {db}"
        );
    }
    assert_eq!(
        site.pg.psql("root", &format!("select string_agg(consumer_name, ',' order by consumer_name) from pgq.get_consumer_info('{QUEUE}') where consumer_name like '.%.watermark'")),
        ".mid.watermark"
    );
    let nodes = status(leaf_s);
    assert_eq!(row(&nodes, "top")["info"]["node_type"], "root", "{nodes}");
    assert_eq!(
        row(&nodes, "mid")["info"]["provider_node"],
        "top",
        "{nodes}"
    );
    assert_eq!(
        row(&nodes, "leaf")["info"]["provider_node"],
        "mid",
        "{nodes}"
    );
    assert!(
        nodes
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["error"].is_null()),
        "{nodes}"
    );
    arrives(10_002).await;
    arrives(10_003).await;
    // Each command is in the audit log of the node it ran on, refusals too.
    assert_eq!(
        audit_log(site, root_s),
        [
            "change-location branch failed",
            "change-location branch failed",
            "change-location nosuch failed",
            "change-location branch succeeded",
        ]
    );
    assert_eq!(
        audit_log(site, leaf_s),
        [
            "rename-node branch leaf failed",
            "rename-node nosuch other failed",
            "rename-node branch mid succeeded",
            "rename-node root top succeeded",
        ]
    );
    stop_workers(stop_tx, workers).await;
}

/// `audit --json` of a node but the set-up commands: action, the target's first word
/// (both for renames) and outcome of each entry; checks each names who ran it.
fn audit_log(site: &Site, ini: &str) -> Vec<String> {
    let out = site.expect(0, &[ini, "--json", "audit"]);
    let entries: serde_json::Value = serde_json::from_str(&out).unwrap();
    entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            !["create-root", "create-branch", "create-leaf", "add-table"]
                .contains(&e["action"].as_str().unwrap())
        })
        .map(|e| {
            assert!(e["who"].as_str().unwrap().starts_with("local:"), "{e}");
            let action = e["action"].as_str().unwrap();
            let words: Vec<&str> = e["target"].as_str().unwrap().split(' ').collect();
            let target = if action == "rename-node" {
                words.join(" ")
            } else {
                words[0].to_string()
            };
            format!("{action} {target} {}", e["outcome"].as_str().unwrap())
        })
        .collect()
}

/// The value of sample `name{labels}` in Prometheus text.
fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
}

/// Scrapes `/metrics` of a worker serving on `address`.
fn scrape(address: &str) -> String {
    let reply =
        strata_testkit::http::http(&format!("http://{address}"), "GET", "/metrics", None, "");
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

/// The worker's saved error on the leaf (what `status` shows).
fn leaf_error(site: &Site) -> String {
    site.pg.psql(
        "leaf",
        &format!("select coalesce(cur_error, '') from pgq_node.local_state where queue_name = '{QUEUE}' and consumer_name = 'leaf_worker'"),
    )
}

/// Waits for the worker's saved error to mention `needle` (it is cleared at each retry's
/// start), and returns it.
async fn wait_error(site: &Site, needle: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let error = leaf_error(site);
        if error.contains(needle) {
            return error;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no error about {needle}: {error:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The event id an error names (`event N of batch B`).
fn named_event(error: &str) -> i64 {
    let rest = error
        .split("event ")
        .nth(1)
        .unwrap_or_else(|| panic!("no event named: {error}"));
    rest.split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("{error}"))
}

/// A leaf whose worker runs in-process with its metrics served on a free port: the
/// root's table `t1` is replicated (no copy), the root ticks every 100 ms.
async fn leaf_with_metrics(
    site: &Site,
    extra: &str,
) -> (
    PathBuf,
    String,
    WorkerOptions,
    strata_pgq::ticker::AbortOnDrop,
) {
    let address = format!("127.0.0.1:{}", strata_testkit::net::free_port());
    let (root, leaf) = site.setup_nodes(&format!("health_listen = {address}\n{extra}"));
    for db in ["root", "leaf"] {
        site.pg.psql(db, TABLE_SQL);
    }
    site.expect(0, &[root.to_str().unwrap(), "add-table", "t1"]);
    site.expect(
        0,
        &[leaf.to_str().unwrap(), "add-table", "t1", "--expect-sync"],
    );
    let options = WorkerOptions::default();
    let cf = NodeConfig::load(&leaf).unwrap();
    let server = worker::serve_health(&cf, &options).await.unwrap().unwrap();
    (leaf, address, options, server)
}

/// An unknown event type stops the batch with the event named (id, type, database); an
/// operator parks it and the rest of the batch applies. Then a row the target refuses (a
/// check constraint only the leaf has) is named the same way, down to the event, though
/// it went in a buffer with others; parked, the rows around it apply. `/metrics`, scraped
/// throughout, follows: batches and events counted, the failure and its text shown, the
/// lag measured; `/ready` says not ready while the batch fails; `status` lists the parks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_cannot_be_applied_is_named_and_parking_it_lets_the_batch_through() {
    if skip_without_postgres() {
        return;
    }
    let site = Site::new();
    let (leaf, address, options, _server) = leaf_with_metrics(&site, "").await;
    let leaf_s = leaf.to_str().unwrap();
    let _ticker = Ticker::start(&site).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(worker::run(
        NodeConfig::load(&leaf).unwrap(),
        options.clone(),
        stop_rx,
    ));
    site.pg
        .psql("root", "insert into t1 (id, val) values (1, 'before')");
    wait_until("row 1 on the leaf", Duration::from_secs(60), || {
        site.count("leaf", "select count(*) from t1") == 1
    })
    .await;
    let metrics = scrape(&address);
    let job = "{job=\"leaf_worker\"}";
    let batches_before = sample(&metrics, &format!("strata_londiste_batches_total{job}")).unwrap();
    let events_before = sample(&metrics, &format!("strata_londiste_events_total{job}")).unwrap();
    assert!(batches_before >= 1.0 && events_before >= 1.0, "{metrics}");
    assert!(
        sample(&metrics, &format!("strata_londiste_lag_seconds{job}")).is_some(),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "strata_londiste_table_state{job=\"leaf_worker\",table=\"public.t1\",state=\"ok\"} 1"
        ),
        "{metrics}"
    );

    // An event of a type no worker knows, between two rows of one transaction.
    site.pg.psql(
        "root",
        &format!("begin; insert into t1 (id, val) values (2, 'x'); select pgq.insert_event('{QUEUE}', 'acme.audit', 'hello', 'public.t1', null, null, null); insert into t1 (id, val) values (3, 'y'); commit"),
    );
    let error = wait_error(&site, "acme.audit").await;
    assert!(
        error.contains("unknown event type \"acme.audit\""),
        "{error}"
    );
    assert!(error.contains("table public.t1"), "{error}");
    assert!(
        error.contains("on node leaf (db "),
        "the database is named: {error}"
    );
    let ev_id = named_event(&error);
    assert_eq!(
        site.count("leaf", "select count(*) from t1"),
        1,
        "nothing of the batch applied"
    );
    let metrics = scrape(&address);
    assert_eq!(
        sample(&metrics, &format!("strata_londiste_failing{job}")),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        metrics.contains("strata_londiste_last_error_info{job=\"leaf_worker\",error=\"event "),
        "{metrics}"
    );
    assert!(sample(
        &metrics,
        &format!("strata_londiste_last_error_timestamp_seconds{job}")
    )
    .is_some());
    let ready = strata_testkit::http::http(&format!("http://{address}"), "GET", "/ready", None, "");
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(ready.body.contains("acme.audit"), "{}", ready.body);

    // Parked: recorded with who and why, and the rest of the batch applies.
    let out = site.expect(
        0,
        &[
            leaf_s,
            "park-event",
            &ev_id.to_string(),
            "--reason",
            "audit events are not ours",
        ],
    );
    assert!(
        out.contains(&format!("event {ev_id} (acme.audit, table public.t1)")),
        "{out}"
    );
    wait_until("rows 2 and 3 on the leaf", Duration::from_secs(60), || {
        site.count("leaf", "select count(*) from t1") == 3
    })
    .await;
    assert_eq!(
        site.pg.psql("leaf", &format!("select ev_type || '|' || ev_data || '|' || reason || '|' || parked_by from strata_londiste.parked_events where ev_id = {ev_id}")),
        "acme.audit|hello|audit events are not ours|postgres"
    );
    wait_until(
        "the failure cleared in /metrics",
        Duration::from_secs(30),
        || sample(&scrape(&address), &format!("strata_londiste_failing{job}")) == Some(0.0),
    )
    .await;
    let metrics = scrape(&address);
    assert!(
        sample(&metrics, &format!("strata_londiste_batches_total{job}")).unwrap() > batches_before
    );
    assert!(
        sample(&metrics, &format!("strata_londiste_events_total{job}")).unwrap()
            >= events_before + 3.0,
        "{metrics}"
    );
    assert!(
        sample(&metrics, &format!("strata_londiste_errors_total{job}")).unwrap() >= 1.0,
        "{metrics}"
    );

    // A row the leaf refuses, buffered with two good ones: the error names its event.
    site.pg.psql(
        "leaf",
        "alter table t1 add constraint small_ids check (id < 100)",
    );
    site.pg.psql(
        "root",
        "begin; insert into t1 (id, val) values (4, 'a'); insert into t1 (id, val) values (500, 'too big'); insert into t1 (id, val) values (5, 'b'); commit",
    );
    let error = wait_error(&site, "small_ids").await;
    assert!(error.contains("type I:id, table public.t1"), "{error}");
    assert!(error.contains("on node leaf (db "), "{error}");
    let bad = named_event(&error);
    site.expect(0, &[leaf_s, "park-event", &bad.to_string()]);
    wait_until("rows 4 and 5 on the leaf", Duration::from_secs(60), || {
        site.count("leaf", "select count(*) from t1") == 5
    })
    .await;
    assert_eq!(
        site.count("leaf", "select count(*) from t1 where id = 500"),
        0
    );
    let parked = site.pg.psql(
        "leaf",
        &format!("select ev_data from strata_londiste.parked_events where ev_id = {bad}"),
    );
    assert!(
        parked.contains("id=500"),
        "the parked event is the refused row: {parked}"
    );
    let status = site.expect(0, &[leaf_s, "status"]);
    assert!(
        status.contains(&format!("parked on leaf: event {bad} (I:id, public.t1)")),
        "{status}"
    );
    assert!(
        status.contains(&format!(
            "parked on leaf: event {ev_id} (acme.audit, public.t1)"
        )),
        "{status}"
    );
    assert!(!task.is_finished(), "the worker stopped");
    stop_tx.send(true).unwrap();
    task.await.unwrap().unwrap();
}

/// `park_unknown_events = true`: an unknown event is parked by the worker, which never
/// stops; the rest of its batch applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn park_unknown_events_parks_them_without_stopping() {
    if skip_without_postgres() {
        return;
    }
    let site = Site::new();
    let (leaf, address, options, _server) =
        leaf_with_metrics(&site, "park_unknown_events = true\n").await;
    let _ticker = Ticker::start(&site).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(worker::run(
        NodeConfig::load(&leaf).unwrap(),
        options,
        stop_rx,
    ));
    site.pg.psql(
        "root",
        &format!("begin; insert into t1 (id, val) values (1, 'x'); select pgq.insert_event('{QUEUE}', 'acme.audit', 'hello'); insert into t1 (id, val) values (2, 'y'); commit"),
    );
    wait_until("both rows on the leaf", Duration::from_secs(60), || {
        site.count("leaf", "select count(*) from t1") == 2
    })
    .await;
    assert_eq!(
        site.pg.psql("leaf", "select ev_type || '|' || parked_by || '|' || reason from strata_londiste.parked_events"),
        "acme.audit|worker leaf_worker|unknown event type \"acme.audit\" (park_unknown_events)"
    );
    let metrics = scrape(&address);
    let job = "{job=\"leaf_worker\"}";
    assert_eq!(
        sample(
            &metrics,
            &format!("strata_londiste_parked_events_total{job}")
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, &format!("strata_londiste_errors_total{job}")),
        Some(0.0),
        "{metrics}"
    );
    assert_eq!(leaf_error(&site), "");
    stop_tx.send(true).unwrap();
    task.await.unwrap().unwrap();
}

/// With a loop_delay of two minutes, pauses are still seen at once: strata's `pause` and
/// `resume` by their NOTIFY, a pause set by another tool (pgq_node's function called by
/// hand, as Python Londiste does) by the poll of the flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pauses_are_seen_at_once_not_after_loop_delay() {
    if skip_without_postgres() {
        return;
    }
    let site = Site::new();
    let (leaf, address, options, _server) = leaf_with_metrics(&site, "loop_delay = 120\n").await;
    let leaf_s = leaf.to_str().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(worker::run(
        NodeConfig::load(&leaf).unwrap(),
        options,
        stop_rx,
    ));
    let paused = || {
        sample(
            &scrape(&address),
            "strata_londiste_paused{job=\"leaf_worker\"}",
        )
    };
    // The worker has checked its flags once and waits now.
    wait_until("the worker running", Duration::from_secs(30), || {
        paused() == Some(0.0)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = std::time::Instant::now();
    site.expect(0, &[leaf_s, "pause"]);
    wait_until("the pause seen", Duration::from_secs(10), || {
        paused() == Some(1.0)
    })
    .await;
    site.expect(0, &[leaf_s, "resume"]);
    wait_until("the resume seen", Duration::from_secs(10), || {
        paused() == Some(0.0)
    })
    .await;
    site.pg.psql(
        "leaf",
        &format!("select pgq_node.set_consumer_paused('{QUEUE}', 'leaf_worker', true)"),
    );
    wait_until(
        "the other tool's pause seen",
        Duration::from_secs(10),
        || paused() == Some(1.0),
    )
    .await;
    // And acknowledged, as `pause` and `takeover` wait for.
    assert_eq!(
        site.pg.psql("leaf", &format!("select uptodate from pgq_node.local_state where queue_name = '{QUEUE}' and consumer_name = 'leaf_worker'")),
        "t"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    stop_tx.send(true).unwrap();
    task.await.unwrap().unwrap();
}

/// A branch's place goes only to a node that replicates what the nodes reading from it
/// afterwards replicate: the live old branch, and its subscribers when they move too.
/// Each refusal names the tables with the nodes that need them, and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_of_a_branch_refuses_a_node_lacking_tables_its_readers_replicate() {
    if skip_without_postgres() {
        return;
    }
    let site = Site::new();
    site.database("branch2");
    let (root, branch, leaf) = site.cascade();
    let branch2 = site.node("branch2", "branch", "root");
    for db in ["root", "branch", "leaf", "branch2"] {
        site.pg.psql(db, TABLE_SQL);
    }
    for ini in [&root, &branch, &leaf] {
        site.expect(0, &[ini.to_str().unwrap(), "add-table", "t1"]);
    }
    let b2 = branch2.to_str().unwrap();
    let node = |db: &str| {
        site.pg.psql(
            db,
            &format!("select node_type || ' ' || coalesce(provider_node, '-') from pgq_node.get_node_info('{QUEUE}')"),
        )
    };
    // Live branch: it would read from branch2, which lacks t1.
    let out = site.expect_all(2, &[b2, "takeover", "branch", "--timeout", "30"]);
    assert!(
        out.contains("public.t1 (replicated by branch)") && out.contains("refusing to take over"),
        "{out}"
    );
    // With its subscribers: the leaf needs t1 too.
    let out = site.expect_all(2, &[b2, "takeover", "branch", "--all", "--timeout", "30"]);
    assert!(
        out.contains("public.t1 (replicated by branch, leaf)"),
        "{out}"
    );
    assert_eq!(
        (node("branch"), node("leaf"), node("branch2")),
        (
            "branch root".into(),
            "leaf branch".into(),
            "branch root".into()
        ),
        "a refused takeover changed nothing"
    );
    // A dead branch: its leaf, which would move to branch2, is asked instead.
    site.kill("branch");
    let out = site.expect_all(
        2,
        &[b2, "takeover", "branch", "--dead-branch", "--timeout", "30"],
    );
    assert!(out.contains("public.t1 (replicated by leaf)"), "{out}");
    let dead = site.pg.psql(
        "root",
        &format!(
            "select count(*) from pgq_node.node_location where queue_name = '{QUEUE}' and dead"
        ),
    );
    assert_eq!(dead, "0", "nothing was tagged dead: {out}");
    assert_eq!(node("leaf"), "leaf branch");
}
