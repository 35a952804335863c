//! A Londiste leaf seeded from a strata backup of its provider instead of a copy
//! (`strata londiste NODE.ini join-restored`): a root under a write load with transactions
//! open across the recovery target, a base backup and WAL archived by strata, a
//! point-in-time restore paused at the target, the join, and the leaf's worker replaying
//! on to equal rows. Transactions that committed after the restored tick but before the
//! target are in the restore and must be skipped, the others applied: the writes append
//! to a text and insert unique keys, so an event applied twice or lost shows in the
//! checksum or stops the worker.
//!
//! PostgreSQL and every strata command PostgreSQL runs (`wal-push`) run as the postgres
//! user when the tests run as root. Skipped, loudly, without PostgreSQL 15 (with its
//! Londiste packages), and failing instead under `STRATA_REQUIRE_TOOLS`.

use crate::common;

use common::londiste::QUEUE;
use common::pgserver::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A scratch directory owned by postgres: the password file and the copy of the binary
/// the strata sites built in it ([`Scratch::site`]) name, the Londiste inis and the servers.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix("strata-seed")
            .tempdir()
            .unwrap();
        std::fs::write(dir.path().join("password"), "seed test password\n").unwrap();
        // PostgreSQL runs strata as postgres, who may not reach the build directory.
        std::fs::copy(env!("CARGO_BIN_EXE_strata"), dir.path().join("strata")).unwrap();
        chown_to_postgres(dir.path());
        Scratch { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A strata site whose configuration `name` has one PostgreSQL node on `server`, its
    /// commands run as postgres with the copied binary and the password file.
    fn site(&self, name: &str, server: &PgServer) -> common::Site {
        let text = format!(
            "plugin = \"postgres\"\nstate_dir = \"{state}\"\n[password]\nfile = \"{pw}\"\n\n[storages.local]\npath = \"{repo}\"\n\n[postgres]\nwal_wait_secs = 60\nrecovery_timeout_secs = 120\n\n[[nodes]]\nname = \"db\"\n[nodes.postgres]\ndata_dir = \"{data}\"\nconnect = {{ host = \"{sock}\", port = {port}, user = \"postgres\", dbname = \"postgres\" }}\n",
            state = self.path("state").display(),
            pw = self.path("password").display(),
            repo = self.path("repo").display(),
            data = server.data_dir.display(),
            sock = server.socket_dir.display(),
            port = server.port,
        );
        let site = common::Site::new()
            .whole_config(&text)
            .file(name)
            .binary(&self.path("strata"))
            .run_as_postgres()
            .password_file()
            .build_in(self.dir.path());
        chown_to_postgres(site.config());
        site
    }

    /// `strata londiste INI ARGS`, expecting exit `code`.
    fn londiste(&self, ini: &Path, code: i32, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("londiste")
            .arg(ini)
            .args(args)
            .env_remove("STRATA_CONFIG")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(code),
            "strata londiste {args:?}: {}",
            text(&out)
        );
        text(&out)
    }

    fn ini(&self, node: &str, dsn: &str) -> PathBuf {
        let path = self.path(&format!("{node}.ini"));
        std::fs::write(
            &path,
            format!(
                "[londiste]\njob_name = {node}_worker\ndb = {dsn}\nqueue_name = {QUEUE}\nloop_delay = 0.1\nlogfile = {dir}/{node}.log\npidfile = {dir}/{node}.pid\n",
                dir = self.dir.path().display(),
            ),
        )
        .unwrap();
        path
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `strata ARGS` on `site`; must succeed. Its stdout and stderr.
fn strata(site: &common::Site, args: &[&str]) -> String {
    let out = site.strata(args);
    let said = format!("{}{}", out.stdout, out.stderr);
    assert_eq!(out.code, Some(0), "strata {args:?}: {said}");
    said
}

fn dsn(server: &PgServer, db: &str) -> String {
    format!(
        "host={} port={} user=postgres dbname={db}",
        server.socket_dir.display(),
        server.port
    )
}

/// Waits until the server has archived everything up to its current segment.
fn wait_archived(server: &PgServer) {
    let segment = server.psql("postgres", "SELECT pg_walfile_name(pg_switch_wal())");
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.psql(
        "postgres",
        "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver",
    ) < segment
    {
        assert!(
            Instant::now() < deadline,
            "{segment} not archived in a minute"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

async fn connect(dsn: &str) -> strata_pgclient::Client {
    strata_pgclient::Dsn::parse(dsn)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn checksum(server: &PgServer) -> String {
    server.psql(
        "app",
        "select count(*) || ':' || md5(coalesce(string_agg(t::text, E'\\n' order by t.id), '')) from t1 t",
    )
}

/// The root's rows the seed lacks, with the transaction that wrote each: the events a
/// wrong snapshot skipped.
fn missing_rows(root: &PgServer, seed: &PgServer) -> String {
    let rows = "select coalesce(string_agg(id || '@' || tx, ' ' order by id), '') from t1";
    let have = seed.psql("app", rows);
    let have: std::collections::HashSet<&str> = have.split(' ').collect();
    root.psql("app", rows)
        .split(' ')
        .filter(|r| !have.contains(r))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Writers on the root until stopped: each transaction appends to a row's text and
/// inserts a new key, and holds itself open a little, so transactions are in flight
/// at any moment (around the recovery target too).
fn start_writers(root: &PgServer, stop: &Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<()>> {
    let next = Arc::new(AtomicI64::new(100_000));
    (0..3)
        .map(|w| {
            let (stop, next) = (stop.clone(), next.clone());
            let dsn = dsn(root, "app");
            tokio::spawn(async move {
                let client = connect(&dsn).await;
                let mut n = w;
                while !stop.load(Ordering::Relaxed) {
                    let key = next.fetch_add(1, Ordering::Relaxed);
                    let id = (n * 37) % 1000 + 1;
                    client
                        .batch_execute(&format!(
                            "begin; update t1 set val = val || '.{key}' where id = {id}; \
                             select pg_sleep(0.03); insert into t1 values ({key}, 'w{w}'); commit"
                        ))
                        .await
                        .unwrap();
                    n += 1;
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_seeded_from_a_point_in_time_restore_joins_without_a_copy() {
    seeded_node_joins_without_a_copy(false, false).await;
}

/// A branch, too: it also passes the events on in its own queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_seeded_from_a_point_in_time_restore_joins_and_passes_events_on() {
    seeded_node_joins_without_a_copy(true, false).await;
}

/// The seeded leaf run by Python Londiste's worker: it honours the restore's snapshot as
/// it honours a copy's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_seeded_from_a_restore_is_run_by_python_londiste_too() {
    seeded_node_joins_without_a_copy(false, true).await;
}

/// The seeded node's worker: strata's, in this process, or Python Londiste's.
enum SeedWorker {
    Strata(
        tokio::task::JoinHandle<
            Result<strata_londiste::worker::ReplayStats, strata_londiste::LondisteError>,
        >,
    ),
    /// The process and its log file.
    Python(std::process::Child, PathBuf),
}

impl SeedWorker {
    /// Panics with why when the worker has stopped.
    fn assert_running(&mut self) {
        match self {
            SeedWorker::Strata(h) => assert!(!h.is_finished(), "the seeded node's worker stopped"),
            SeedWorker::Python(c, log) => {
                let status = c.try_wait().unwrap();
                assert!(
                    status.is_none(),
                    "Python's worker exited: {status:?}\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
        }
    }

    async fn stop(self) {
        match self {
            SeedWorker::Strata(h) => {
                h.await.unwrap().unwrap();
            }
            SeedWorker::Python(mut c, _) => {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

async fn seeded_node_joins_without_a_copy(branch: bool, python: bool) {
    let python = if python {
        match common::londiste::python_londiste() {
            Some(p) => Some(p),
            None => {
                eprintln!(
                    "SKIPPED: set STRATA_LONDISTE_PYTHON to Python Londiste's londiste command"
                );
                return;
            }
        }
    } else {
        None
    };
    if skip_without_postgres() {
        assert!(
            std::env::var_os("STRATA_REQUIRE_TOOLS").is_none(),
            "PostgreSQL 15 is required (STRATA_REQUIRE_TOOLS)"
        );
        return;
    }
    let site = Scratch::new();
    let root = PgServer::init(&site.path("root"));
    let strata_site = site.site("strata.toml", &root);
    root.set_conf(&format!(
        "archive_command = '\"{}\" --config \"{}\" -q wal-push %p'",
        site.path("strata").display(),
        strata_site.config().display()
    ));
    strata(&strata_site, &["init"]);
    root.start();
    root.psql("postgres", "create database app");
    root.psql("app", "create extension londiste cascade");
    root.psql(
        "app",
        "create table t1 (id bigint primary key, val text, tx bigint default txid_current()); \
         insert into t1 select g, 'r' || g from generate_series(1, 1000) g; \
         create sequence s1; select setval('s1', 77)",
    );
    let root_dsn = dsn(&root, "app");
    let root_ini = site.ini("root", &root_dsn);
    site.londiste(&root_ini, 0, &["create-root", "root", &root_dsn]);
    site.londiste(&root_ini, 0, &["add-table", "t1"]);
    site.londiste(&root_ini, 0, &["add-seq", "s1"]);
    root.psql(
        "app",
        &format!("select pgq.set_queue_config('{QUEUE}', 'ticker_max_lag', '100 ms'); select pgq.set_queue_config('{QUEUE}', 'ticker_idle_period', '300 ms')"),
    );
    // The root's ticker and worker (the worker publishes sequence values).
    let ticker_stop = Arc::new(AtomicBool::new(false));
    let ticker = {
        let (stop, dsn) = (ticker_stop.clone(), root_dsn.clone());
        tokio::spawn(async move {
            let client = connect(&dsn).await;
            while !stop.load(Ordering::Relaxed) {
                client.batch_execute("select pgq.ticker()").await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let root_worker = tokio::spawn(strata_londiste::worker::run(
        strata_londiste::NodeConfig::load(&root_ini).unwrap(),
        Default::default(),
        stop_rx.clone(),
    ));

    // A base backup under the writers, then a target in the middle of their work.
    let writing = Arc::new(AtomicBool::new(false));
    let writers = start_writers(&root, &writing);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = strata(&strata_site, &["backup"]);
    assert!(out.contains("complete"), "{out}");
    // One transaction surely open across the target, with later ones committed before
    // it: the restore's snapshot must show it running (a standby's own snapshot does not).
    let held = connect(&root_dsn).await;
    held.batch_execute("begin; insert into t1 values (99999, 'held')")
        .await
        .unwrap();
    let held_txid: i64 = held
        .query_one("select txid_current()", &[])
        .await
        .unwrap()
        .get(0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let target = root.psql("app", "select clock_timestamp()::text");
    tokio::time::sleep(Duration::from_millis(500)).await;
    held.batch_execute("commit").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    wait_archived(&root);

    let restore = |server: &PgServer, name: &str, extra: &[&str]| {
        let restoring = site.site(&format!("{name}.toml"), server);
        let args = [
            &[
                "restore",
                "latest",
                "--target-time",
                &target,
                "--target-action",
                "pause",
            ][..],
            extra,
        ]
        .concat();
        let out = strata(&restoring, &args);
        assert!(out.contains("paused"), "{out}");
    };
    if !branch && python.is_none() {
        // A restore that still archives would, once promoted, put its own timeline into
        // the root's repository (its archive_command is the root's): refused.
        let archiving = PgServer::vacant(&site.path("archiving"));
        restore(&archiving, "archiving", &[]);
        let dsn = dsn(&archiving, "app");
        let ini = site.ini("archiving", &dsn);
        let refused = site.londiste(
            &ini,
            2,
            &["join-restored", "archiving", &dsn, "--provider", &root_dsn],
        );
        assert!(
            refused.contains("archive_mode = on")
                && refused.contains("--no-archive")
                // The command may carry credentials: named, never printed.
                && !refused.contains("wal-push"),
            "{refused}"
        );
        assert_eq!(archiving.psql("app", "select pg_is_in_recovery()"), "t");
        archiving.stop();
    }
    // The restore, paused at the target, on a server of its own, not archiving.
    let seed = PgServer::vacant(&site.path("seed"));
    restore(&seed, "seed", &["--no-archive"]);
    assert_eq!(seed.psql("app", "show archive_mode"), "off");
    let seed_dsn = dsn(&seed, "app");
    let leaf_ini = site.ini("seed", &seed_dsn);
    // An ordinary server cannot join: the position would not be exact.
    let refused = site.londiste(
        &root_ini,
        2,
        &[
            "join-restored",
            "x",
            &root_dsn,
            "--provider",
            &root_dsn,
            "--check",
        ],
    );
    assert!(refused.contains("paused at its target"), "{refused}");
    let checked = site.londiste(
        &leaf_ini,
        0,
        &[
            "join-restored",
            "seed",
            &seed_dsn,
            "--provider",
            &root_dsn,
            "--check",
        ],
    );
    assert!(
        checked.contains("joins at tick") && checked.contains("1 tables without a copy"),
        "{checked}"
    );
    assert_eq!(seed.psql("app", "select pg_is_in_recovery()"), "t");
    let joined = site.londiste(
        &leaf_ini,
        0,
        &[
            &["join-restored", "seed", &seed_dsn, "--provider", &root_dsn][..],
            if branch { &["--branch"][..] } else { &[] },
        ]
        .concat(),
    );
    let kind = if branch { "branch" } else { "leaf" };
    assert!(joined.contains(&format!("{kind} seed created")), "{joined}");
    let snapshot = seed.psql(
        "app",
        &format!("select custom_snapshot from londiste.table_info where queue_name = '{QUEUE}' and table_name = 'public.t1'"),
    );
    let xip: Vec<&str> = snapshot
        .splitn(3, ':')
        .nth(2)
        .unwrap_or("")
        .split(',')
        .collect();
    assert!(
        xip.contains(&held_txid.to_string().as_str()),
        "the transaction open at the target ({held_txid}) is missing from the restore's snapshot {snapshot}"
    );
    assert_eq!(seed.psql("app", "select pg_is_in_recovery()"), "f");
    assert_eq!(
        seed.psql(
            "app",
            &format!("select merge_state || ' ' || (custom_snapshot is not null) from londiste.table_info where queue_name = '{QUEUE}' and table_name = 'public.t1'"),
        ),
        "ok true",
        "joined in sync, with the restore's snapshot"
    );
    // The root's logging triggers went with its node: a leaf's table has only the
    // triggers that deny writes outside replication, a branch its own two (not twice).
    assert_eq!(
        seed.psql("app", "select count(*) from pg_trigger where tgrelid = 't1'::regclass and not tgisinternal and pg_get_triggerdef(oid) not like '%deny%'"),
        if branch { "2" } else { "0" },
        "{}",
        seed.psql("app", "select string_agg(pg_get_triggerdef(oid), E'\n') from pg_trigger where tgrelid = 't1'::regclass and not tgisinternal")
    );

    // The leaf's worker replays from the restored tick while the writers go on.
    let mut leaf_worker = match &python {
        None => SeedWorker::Strata(tokio::spawn(strata_londiste::worker::run(
            strata_londiste::NodeConfig::load(&leaf_ini).unwrap(),
            Default::default(),
            stop_rx.clone(),
        ))),
        Some(python) => SeedWorker::Python(
            Command::new(python)
                .arg(&leaf_ini)
                .arg("worker")
                .stdin(std::process::Stdio::null())
                .stdout(std::fs::File::create(site.path("seed.out")).unwrap())
                .stderr(std::fs::File::create(site.path("seed.err")).unwrap())
                .spawn()
                .unwrap(),
            site.path("seed.err"),
        ),
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    writing.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    while checksum(&seed) != checksum(&root) {
        leaf_worker.assert_running();
        if Instant::now() > deadline {
            panic!(
                "the seeded node did not catch up: root {} seed {}; {}; rows missing (id@txid): {}",
                checksum(&root),
                checksum(&seed),
                joined.trim(),
                missing_rows(&root, &seed)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // No copy ran: no copy consumer was ever needed.
    assert_eq!(
        root.psql(
            "app",
            &format!("select count(*) from pgq.get_consumer_info('{QUEUE}') where consumer_name like '%.copy.%'"),
        ),
        "0"
    );
    site.londiste(&leaf_ini, 0, &["compare", "--timeout", "60"]);
    if branch {
        // The branch's own queue carries the events on, for nodes below it.
        let passed = seed.psql(
            "app",
            "select count(*) from pgq.event_template where ev_type like 'I:%' and ev_data like '%val=w%'",
        );
        assert!(passed.parse::<i64>().unwrap() > 0, "{passed}");
    }
    let seqs = site.londiste(&leaf_ini, 0, &["seqs"]);
    assert!(seqs.contains("public.s1"), "{seqs}");
    stop_tx.send(true).unwrap();
    leaf_worker.stop().await;
    root_worker.await.unwrap().unwrap();
    ticker_stop.store(true, Ordering::Relaxed);
    ticker.await.unwrap();
    seed.stop();
    root.stop();
}
