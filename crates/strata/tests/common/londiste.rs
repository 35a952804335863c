//! Helpers of the Londiste tests (`londiste.rs`, `londiste_interop.rs`): a PostgreSQL
//! cluster whose databases are the nodes, ini files in Python Londiste's format, the
//! `strata londiste` command, a ticker, in-process workers and Python Londiste's command.

use super::pgserver::*;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use strata_londiste::worker::{self, WorkerOptions};
use strata_londiste::NodeConfig;

pub const QUEUE: &str = "replika";

/// A running cluster with a `root` and a `leaf` database, and a scratch directory (the
/// kit's [`PgSite`]).
pub struct Site(pub PgSite);

impl std::ops::Deref for Site {
    type Target = PgSite;
    fn deref(&self) -> &PgSite {
        &self.0
    }
}

impl Site {
    pub fn new() -> Site {
        let site = PgSite::new("strata-londiste");
        for db in ["root", "leaf"] {
            site.create_database(db, &["londiste cascade"]);
        }
        Site(site)
    }

    /// Databases and nodes root -> branch -> leaf (the leaf reads from the branch, not
    /// from the root); returns their ini files.
    pub fn cascade(&self) -> (PathBuf, PathBuf, PathBuf) {
        self.database("branch");
        let (root, branch, leaf) = (
            self.ini("root", ""),
            self.ini("branch", ""),
            self.ini("leaf", ""),
        );
        let path = |p: &PathBuf| p.to_str().unwrap().to_string();
        self.expect(0, &[&path(&root), "create-root", "root", &self.dsn("root")]);
        let provider = self.dsn("root");
        self.expect(
            0,
            &[
                &path(&branch),
                "create-branch",
                "branch",
                &self.dsn("branch"),
                "--provider",
                &provider,
            ],
        );
        let provider = self.dsn("branch");
        self.expect(
            0,
            &[
                &path(&leaf),
                "create-leaf",
                "leaf",
                &self.dsn("leaf"),
                "--provider",
                &provider,
            ],
        );
        (root, branch, leaf)
    }

    /// The node's ini file, in Python Londiste's format, `extra` lines appended.
    pub fn ini(&self, node: &str, extra: &str) -> PathBuf {
        let path = self.path(&format!("{node}.ini"));
        std::fs::write(
            &path,
            format!(
                "[londiste3]\njob_name = {node}_worker\ndb = {}\nqueue_name = {QUEUE}\nlogfile = {}/%(job_name)s.log\npidfile = {}/%(job_name)s.pid\nloop_delay = 0.1\n{extra}",
                self.dsn(node),
                self.dir.path().display(),
                self.dir.path().display(),
            ),
        )
        .unwrap();
        path
    }

    pub fn strata(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("londiste")
            .args(args)
            .env_remove("STRATA_CONFIG")
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    /// Runs `strata londiste ARGS`, expects `code`, returns stdout.
    pub fn expect(&self, code: i32, args: &[&str]) -> String {
        let out = self.strata(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "strata londiste {args:?}\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Root and leaf nodes through the CLI; the root's queue ticks quickly.
    pub fn setup_nodes(&self, leaf_extra: &str) -> (PathBuf, PathBuf) {
        let root = self.ini("root", "");
        let leaf = self.ini("leaf", leaf_extra);
        let root_s = root.to_str().unwrap();
        let leaf_s = leaf.to_str().unwrap();
        self.expect(0, &[root_s, "create-root", "root", &self.dsn("root")]);
        self.expect(
            0,
            &[
                leaf_s,
                "create-leaf",
                "leaf",
                &self.dsn("leaf"),
                "--provider",
                &self.dsn("root"),
            ],
        );
        self.pg.psql(
            "root",
            &format!("select pgq.set_queue_config('{QUEUE}', 'ticker_max_lag', '100 ms'); select pgq.set_queue_config('{QUEUE}', 'ticker_idle_period', '300 ms')"),
        );
        (root, leaf)
    }

    /// md5 of a table's rows in key order.
    pub fn checksum(&self, db: &str, table: &str) -> String {
        self.pg.psql(
            db,
            &format!("select count(*) || ':' || md5(coalesce(string_agg(t::text, E'\\n' order by t.id), '')) from {table} t"),
        )
    }

    pub fn state(&self, db: &str, table: &str) -> String {
        self.pg.psql(
            db,
            &format!("select coalesce(merge_state, 'NULL') from londiste.table_info where queue_name = '{QUEUE}' and table_name = '{table}'"),
        )
    }
}

/// Ticks the root's queues every 100 ms, as pgqd would, until dropped.
pub struct Ticker {
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Ticker {
    pub async fn start(site: &Site) -> Ticker {
        Ticker::start_on(site, &["root"]).await
    }

    /// Ticks every queue of `dbs` that has no external ticker (what pgqd does). A
    /// database that drops the connection (a node killed, then revived) is connected
    /// again on the next round.
    pub async fn start_on(site: &Site, dbs: &[&str]) -> Ticker {
        let mut clients = Vec::new();
        for db in dbs {
            clients.push((site.dsn(db), Some(site.client(db).await)));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            while !flag.load(Ordering::Relaxed) {
                for (dsn, client) in clients.iter_mut() {
                    if client.is_none() {
                        let connect =
                            async { strata_pgclient::Dsn::parse(dsn).ok()?.connect().await.ok() };
                        *client = tokio::time::timeout(Duration::from_secs(2), connect)
                            .await
                            .ok()
                            .flatten();
                    }
                    if let Some(c) = client {
                        if c.batch_execute("select pgq.ticker()").await.is_err() {
                            *client = None;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Ticker {
            stop,
            task: Some(task),
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

pub const TABLE_SQL: &str =
    "create table public.t1 (id int primary key, val text, n numeric, flag bool, doc jsonb)";

impl Site {
    /// A new database `db` with the londiste extension.
    pub fn database(&self, db: &str) {
        self.create_database(db, &["londiste cascade"]);
    }

    /// Creates node `name` (database of the same name) of `kind` reading from `provider`.
    pub fn node(&self, name: &str, kind: &str, provider: &str) -> PathBuf {
        let ini = self.ini(name, "");
        let ini_s = ini.to_str().unwrap();
        self.expect(
            0,
            &[
                ini_s,
                &format!("create-{kind}"),
                name,
                &self.dsn(name),
                "--provider",
                &self.dsn(provider),
            ],
        );
        ini
    }

    /// The node's database stops taking connections and loses its sessions: a dead node.
    pub fn kill(&self, db: &str) {
        self.pg.psql(
            "postgres",
            &format!("alter database {db} allow_connections false; select pg_terminate_backend(pid) from pg_stat_activity where datname = '{db}'"),
        );
    }

    /// The node's database takes connections again.
    pub fn revive(&self, db: &str) {
        self.pg.psql(
            "postgres",
            &format!("alter database {db} allow_connections true"),
        );
    }

    /// Ticks come 100 ms after an event and every 300 ms when idle.
    pub fn fast_ticks(&self, db: &str) {
        self.pg.psql(
            db,
            &format!("select pgq.set_queue_config('{QUEUE}', 'ticker_max_lag', '100 ms'); select pgq.set_queue_config('{QUEUE}', 'ticker_idle_period', '300 ms')"),
        );
    }

    pub fn count(&self, db: &str, sql: &str) -> i64 {
        self.pg.psql(db, sql).parse().unwrap()
    }
}

/// Checks that no worker stopped on its own, then stops them all and checks they ended
/// without an error.
pub async fn stop_workers(
    stop: tokio::sync::watch::Sender<bool>,
    workers: Vec<tokio::task::JoinHandle<strata_londiste::Result<worker::ReplayStats>>>,
) {
    for w in &workers {
        assert!(!w.is_finished(), "a worker stopped");
    }
    stop.send(true).unwrap();
    for w in workers {
        w.await.unwrap().unwrap();
    }
}

/// Starts the in-process workers of `inis`, all stopped by one flag.
pub fn start_workers(
    inis: &[&PathBuf],
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<strata_londiste::Result<worker::ReplayStats>>> {
    inis.iter()
        .map(|ini| {
            tokio::spawn(worker::run(
                NodeConfig::load(ini).unwrap(),
                WorkerOptions::default(),
                stop.clone(),
            ))
        })
        .collect()
}

/// Python Londiste's command (`londiste` from PyPI in a venv, with psycopg2), named by
/// `STRATA_LONDISTE_PYTHON` (scripts/install-test-servers.sh installs it); the interop
/// tests skip, loudly, without it, and fail instead under `STRATA_REQUIRE_TOOLS`.
pub fn python_londiste() -> Option<PathBuf> {
    let path = std::env::var_os("STRATA_LONDISTE_PYTHON")
        .map(PathBuf::from)
        .filter(|p| p.exists());
    assert!(
        path.is_some() || std::env::var_os("STRATA_REQUIRE_TOOLS").is_none(),
        "Python Londiste is required (STRATA_REQUIRE_TOOLS): set STRATA_LONDISTE_PYTHON to its londiste command (scripts/install-test-servers.sh installs it)"
    );
    path
}

impl Site {
    /// Runs `strata londiste ARGS`, expects `code`, returns stdout and stderr together.
    pub fn expect_all(&self, code: i32, args: &[&str]) -> String {
        let out = self.strata(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.status.code(),
            Some(code),
            "strata londiste {args:?}\n{text}"
        );
        text
    }

    /// Root, branch and leaf with `t1` replicated everywhere (and `t2` on the root only
    /// when `t2` is set); the root's queue ticks fast. Returns the ini files.
    pub fn cascade_with_tables(&self, t2: bool) -> (PathBuf, PathBuf, PathBuf) {
        let (root, branch, leaf) = self.cascade();
        self.fast_ticks("root");
        for db in ["root", "branch", "leaf"] {
            self.pg.psql(db, TABLE_SQL);
            self.pg
                .psql(db, "create table public.t2 (id int primary key, val text)");
        }
        self.pg.psql(
            "root",
            "insert into t1 (id, val) select g, 'r' || g from generate_series(1, 200) g; insert into t2 values (1, 'two')",
        );
        let tables: &[&str] = if t2 { &["t1", "t2"] } else { &["t1"] };
        self.expect(
            0,
            &[&[root.to_str().unwrap(), "add-table"], tables].concat(),
        );
        for ini in [&branch, &leaf] {
            self.expect(0, &[ini.to_str().unwrap(), "add-table", "t1"]);
        }
        (root, branch, leaf)
    }
}
