//! strata and Python Londiste 3 (PyPI `londiste` 3.12) on the same cascades, both ways:
//! nodes created by one tool replayed by the other's worker, a branch run by one tool
//! under a leaf run by the other, pauses issued by one tool obeyed by the other's worker,
//! and takeovers and resurrects done by one tool on a cascade the other's workers run.
//! Every scenario ends with `strata londiste ... compare` clean and the rows equal.
//!
//! Workers are processes (`strata londiste NODE.ini worker` and `londiste NODE.ini
//! worker`) with their output in files of the scratch directory, killed when the test ends
//! however it ends; every command and every wait is bounded, and a wait that gives up shows
//! the workers' logs. Python Londiste is `STRATA_LONDISTE_PYTHON`
//! (`scripts/install-test-servers.sh` installs it): without it the tests skip, loudly,
//! and fail instead under `STRATA_REQUIRE_TOOLS`.

use crate::common;

use common::londiste::*;
use common::pgserver::*;
use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use strata_testkit::process::{terminate_within, KillOnDrop};

/// The longest any one command may take (a guard against hanging, not a timing check).
const COMMAND_LIMIT: Duration = Duration::from_secs(90);
/// The longest a wait for replication may take.
const WAIT_LIMIT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, PartialEq, Debug)]
enum Tool {
    Python,
    Strata,
}

impl std::fmt::Display for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Tool::Python => "python",
            Tool::Strata => "strata",
        })
    }
}

/// A running worker process.
struct Worker {
    node: String,
    tool: Tool,
    process: KillOnDrop,
}

/// A test's site, its ticker, its worker processes (each with its output in a file) and
/// the bounded commands it runs. Fields drop in order: the workers are killed first,
/// then the ticker stops, then the server.
struct Interop {
    workers: Vec<Worker>,
    ticker: Option<Ticker>,
    site: Site,
    python: PathBuf,
    logs: Vec<PathBuf>,
    runs: usize,
}

impl Interop {
    /// A site with `root` and `leaf` databases, or `None` (the test skips) without
    /// PostgreSQL 15 or Python Londiste, unless they are required.
    fn new() -> Option<Interop> {
        if skip_without_postgres() {
            assert!(
                std::env::var_os("STRATA_REQUIRE_TOOLS").is_none(),
                "PostgreSQL 15 is required (STRATA_REQUIRE_TOOLS)"
            );
            return None;
        }
        let Some(python) = python_londiste() else {
            eprintln!("SKIPPED: set STRATA_LONDISTE_PYTHON to Python Londiste's londiste command (pip install londiste psycopg2-binary)");
            return None;
        };
        Some(Interop {
            workers: Vec::new(),
            ticker: None,
            site: Site::new(),
            python,
            logs: Vec::new(),
            runs: 0,
        })
    }

    /// Root -> branch -> leaf created by strata with `t1` (200 rows) replicated on all
    /// three (and `t2`, one row, in the root's set only, with `t2`); the root ticks fast
    /// and a ticker runs on every database (it ticks only a root's queue, so a new root is
    /// ticked after a takeover). Returns the ini files.
    async fn strata_cascade(&mut self, t2: bool) -> (PathBuf, PathBuf, PathBuf) {
        let (root, branch, leaf) = self.site.cascade_with_tables(t2);
        for ini in [&root, &branch, &leaf] {
            for_python(ini);
        }
        self.ticker = Some(Ticker::start_on(&self.site, &["root", "branch", "leaf"]).await);
        (root, branch, leaf)
    }

    /// Runs `cmd` with its output in a file, at most [`COMMAND_LIMIT`]; expects exit
    /// `code`; returns the output (stdout and stderr).
    fn run(&mut self, what: String, mut cmd: Command, code: i32) -> String {
        self.runs += 1;
        let out = self.site.path(&format!("command-{}.out", self.runs));
        let file = File::create(&out).unwrap();
        cmd.current_dir(self.site.dir.path())
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        let mut child = KillOnDrop(cmd.spawn().unwrap());
        let deadline = Instant::now() + COMMAND_LIMIT;
        let status = loop {
            if let Some(status) = child.0.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                drop(child);
                panic!(
                    "{what} did not finish within {COMMAND_LIMIT:?}:\n{}\n{}",
                    read(&out),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let text = read(&out);
        assert_eq!(
            status.code(),
            Some(code),
            "{what} exited with {status}, not {code}:\n{text}\n{}",
            self.logs()
        );
        text
    }

    /// `londiste ARGS` (Python), which must succeed.
    fn py(&mut self, args: &[&str]) -> String {
        let mut cmd = Command::new(&self.python);
        cmd.args(args);
        self.run(format!("londiste {args:?}"), cmd, 0)
    }

    /// `strata londiste ARGS`, which must exit with `code`.
    fn strata(&mut self, code: i32, args: &[&str]) -> String {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
        cmd.arg("londiste").args(args).env_remove("STRATA_CONFIG");
        self.run(format!("strata londiste {args:?}"), cmd, code)
    }

    /// `strata londiste NODE.ini compare` exits 0 (every table equal to the provider's).
    fn compare(&mut self, node: &str) {
        let ini = self.site.path(&format!("{node}.ini"));
        self.strata(0, &[ini.to_str().unwrap(), "compare"]);
    }

    /// Starts `tool`'s worker of `node` (`NODE.ini`), its output in `NODE-TOOL-N.log`.
    fn start(&mut self, tool: Tool, node: &str) {
        assert!(
            !self.workers.iter().any(|w| w.node == node),
            "{node} has a worker"
        );
        let ini = self.site.path(&format!("{node}.ini"));
        let log = self
            .site
            .path(&format!("{node}-{tool}-{}.log", self.logs.len()));
        let file = File::create(&log).unwrap();
        let mut cmd = match tool {
            Tool::Python => Command::new(&self.python),
            Tool::Strata => {
                let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
                cmd.arg("londiste").env_remove("STRATA_CONFIG");
                cmd
            }
        };
        cmd.arg(&ini)
            .arg("worker")
            .current_dir(self.site.dir.path())
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        self.logs.push(log);
        self.workers.push(Worker {
            node: node.to_string(),
            tool,
            process: KillOnDrop(cmd.spawn().unwrap()),
        });
    }

    /// Stops the worker of `node` with SIGTERM (as an operator would).
    fn stop(&mut self, node: &str) {
        let at = self
            .workers
            .iter()
            .position(|w| w.node == node)
            .unwrap_or_else(|| panic!("{node} has no worker"));
        let mut worker = self.workers.remove(at);
        terminate_within(&mut worker.process, Duration::from_secs(30));
    }

    fn stop_all(&mut self) {
        let nodes: Vec<String> = self.workers.iter().map(|w| w.node.clone()).collect();
        for node in nodes {
            self.stop(&node);
        }
    }

    /// The last lines of every worker's log (the running and the stopped).
    fn logs(&self) -> String {
        let mut text = String::new();
        for log in &self.logs {
            let all = read(log);
            let lines: Vec<&str> = all.lines().collect();
            let tail = &lines[lines.len().saturating_sub(25)..];
            let _ = write!(
                text,
                "--- {} (last {} lines) ---\n{}\n",
                log.file_name().unwrap().to_string_lossy(),
                tail.len(),
                tail.join("\n")
            );
        }
        text
    }

    /// Polls `check` every 100 ms until it holds; fails with `what` and the workers' logs
    /// after `limit`, or at once when a worker exits by itself.
    async fn wait(&mut self, what: &str, limit: Duration, mut check: impl FnMut(&Site) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            if check(&self.site) {
                return;
            }
            for w in &mut self.workers {
                if let Some(status) = w.process.0.try_wait().unwrap() {
                    let (node, tool) = (w.node.clone(), w.tool);
                    panic!(
                        "waiting for {what}: the {tool} worker of {node} exited ({status})\n{}",
                        self.logs()
                    );
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "gave up waiting for {what} after {limit:?}\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every table of `tables` on every node of `nodes` holds `origin`'s rows.
    /// A strata cascade (root, branch, leaf, table t1) with a strata worker on each
    /// node, t1 copied and a change replayed everywhere; returns the root's and the
    /// branch's ini files.
    async fn running_strata_cascade(&mut self, what: &str) -> (PathBuf, PathBuf) {
        let (root, branch, _leaf) = self.strata_cascade(false).await;
        for node in ["root", "branch", "leaf"] {
            self.start(Tool::Strata, node);
        }
        self.wait_ok("leaf", "public.t1").await;
        self.site
            .pg
            .psql("root", "update t1 set val = 'before' where id < 100");
        self.wait_equal(what, "root", &["branch", "leaf"], &["t1"])
            .await;
        (root, branch)
    }

    async fn wait_equal(&mut self, what: &str, origin: &str, nodes: &[&str], tables: &[&str]) {
        let (nodes, tables) = (nodes.to_vec(), tables.to_vec());
        self.wait(what, WAIT_LIMIT, |site| {
            tables.iter().all(|t| {
                let want = site.checksum(origin, t);
                nodes.iter().all(|n| site.checksum(n, t) == want)
            })
        })
        .await;
    }

    /// Waits until `table` is `ok` on `node`.
    async fn wait_ok(&mut self, node: &str, table: &str) {
        let what = format!("{table} ok on {node}");
        self.wait(&what, WAIT_LIMIT, |site| site.state(node, table) == "ok")
            .await;
    }

    /// The node's type and provider, `type provider` (`root -`).
    fn node(&self, db: &str) -> String {
        self.site.pg.psql(
            db,
            &format!("select node_type || ' ' || case when node_type = 'root' then '-' else provider_node end from pgq_node.get_node_info('{QUEUE}')"),
        )
    }

    /// The worker's `paused` and `uptodate` flags, `true true` when paused and acknowledged.
    fn flags(&self, node: &str) -> String {
        self.site.pg.psql(
            node,
            &format!("select paused || ' ' || uptodate from pgq_node.local_state where queue_name = '{QUEUE}' and consumer_name = '{node}_worker'"),
        )
    }

    fn has_row(&self, node: &str, id: i64) -> bool {
        self.site
            .count(node, &format!("select count(*) from t1 where id = {id}"))
            == 1
    }
}

/// PyPI londiste reads a `[londiste]` section (strata reads it too); a Python worker
/// that lost its database retries after 1 s, not 20.
fn for_python(ini: &Path) {
    let text = std::fs::read_to_string(ini)
        .unwrap()
        .replace("[londiste3]", "[londiste]")
        + "exception_sleep = 1\n";
    std::fs::write(ini, text).unwrap();
}

/// A resurrect's dump (a JSON list of events, absent when none was lost) holds no row
/// event: every row reached the new root before the old one died.
fn assert_no_lost_rows(dump: &Path) {
    if !dump.exists() {
        return;
    }
    let events: Vec<serde_json::Value> = serde_json::from_str(&read(dump)).unwrap();
    for event in &events {
        let kind = event["ev_type"].as_str().unwrap_or_default();
        assert!(
            !["I:", "U:", "D:", "R"].iter().any(|k| kind.starts_with(k)),
            "a row event was lost: {event}"
        );
    }
}

fn read(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_strata_workers_take_over_from_each_other() {
    let Some(mut ix) = Interop::new() else {
        return;
    };
    let (root, leaf) = (ix.site.ini("root", ""), ix.site.ini("leaf", ""));
    for ini in [&root, &leaf] {
        for_python(ini);
    }
    let (root_s, leaf_s) = (path(&root), path(&leaf));
    ix.site.pg.psql("root", TABLE_SQL);
    ix.site.pg.psql("leaf", TABLE_SQL);
    ix.site.pg.psql(
        "root",
        "insert into t1 (id, val) select g, 'r' || g from generate_series(1, 1000) g",
    );
    // Python sets the nodes up and copies.
    let (root_dsn, leaf_dsn) = (ix.site.dsn("root"), ix.site.dsn("leaf"));
    ix.py(&[root_s, "create-root", "root", &root_dsn]);
    ix.py(&[
        leaf_s,
        "create-leaf",
        "leaf",
        &leaf_dsn,
        &format!("--provider={root_dsn}"),
    ]);
    ix.site.fast_ticks("root");
    ix.py(&[root_s, "add-table", "t1"]);
    ix.py(&[leaf_s, "add-table", "t1"]);
    ix.ticker = Some(Ticker::start(&ix.site).await);
    ix.start(Tool::Python, "leaf");
    ix.wait_ok("leaf", "public.t1").await;
    ix.site.pg.psql(
        "root",
        "update t1 set val = 'py' where id < 100; delete from t1 where id > 990",
    );
    ix.wait_equal("Python's replay", "root", &["leaf"], &["t1"])
        .await;
    ix.stop("leaf");
    // strata reads Python's state and carries on, with writes made while no worker ran.
    ix.site.pg.psql("root", "insert into t1 (id, val) select g, 'gap' from generate_series(2001, 2100) g; delete from t1 where id < 10");
    let tables = ix.strata(0, &[leaf_s, "tables"]);
    assert!(tables.contains("ok"), "{tables}");
    ix.start(Tool::Strata, "leaf");
    ix.site.pg.psql(
        "root",
        "update t1 set val = 'rust' where id between 100 and 200",
    );
    ix.wait_equal("strata's replay after Python", "root", &["leaf"], &["t1"])
        .await;
    // A table added and copied by strata.
    ix.site.pg.psql("root", "create table t2 (id int primary key, v text); insert into t2 select g, 'x' from generate_series(1, 3000) g");
    ix.strata(0, &[root_s, "add-table", "t2"]);
    ix.strata(0, &[leaf_s, "add-table", "t2", "--create"]);
    ix.wait_ok("leaf", "public.t2").await;
    ix.stop("leaf");
    // Python takes the node back, including the table strata copied.
    ix.site.pg.psql("root", "truncate t1; insert into t1 (id, val) values (1, 'python again'); update t2 set v = 'py' where id < 50");
    ix.start(Tool::Python, "leaf");
    ix.wait_equal(
        "Python's replay after strata",
        "root",
        &["leaf"],
        &["t1", "t2"],
    )
    .await;
    ix.compare("leaf");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strata_cascade_runs_under_either_tool_on_branch_and_leaf_and_each_obeys_the_others_pause(
) {
    let Some(mut ix) = Interop::new() else {
        return;
    };
    let (_root, branch, leaf) = ix.strata_cascade(true).await;
    let (branch_s, leaf_s) = (path(&branch), path(&leaf));
    // Python's worker on the branch, strata's on the leaf: both copy t1.
    ix.start(Tool::Python, "branch");
    ix.start(Tool::Strata, "leaf");
    ix.wait_ok("leaf", "public.t1").await;
    ix.site.pg.psql(
        "root",
        "update t1 set val = 'py branch' where id < 50; delete from t1 where id > 190; insert into t1 (id, val) values (1000, E'tab\\there')",
    );
    ix.wait_equal(
        "rows through Python's branch to strata's leaf",
        "root",
        &["branch", "leaf"],
        &["t1"],
    )
    .await;
    ix.compare("branch");
    ix.compare("leaf");

    // Python pauses strata's leaf worker: Python's `pause` returns once the worker has
    // acknowledged (uptodate), which strata's worker does within its 250 ms poll.
    let started = Instant::now();
    ix.py(&[leaf_s, "pause"]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "Python's pause took {:?}",
        started.elapsed()
    );
    assert_eq!(ix.flags("leaf"), "true true");
    ix.site.pg.psql(
        "root",
        "insert into t1 (id, val) values (9001, 'paused leaf')",
    );
    ix.wait("row 9001 on the branch", WAIT_LIMIT, |site| {
        site.count("branch", "select count(*) from t1 where id = 9001") == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !ix.has_row("leaf", 9001),
        "a paused strata worker applied a batch\n{}",
        ix.logs()
    );
    ix.py(&[leaf_s, "resume"]);
    ix.wait(
        "row 9001 on the leaf after Python's resume",
        WAIT_LIMIT,
        |site| site.count("leaf", "select count(*) from t1 where id = 9001") == 1,
    )
    .await;

    // strata pauses Python's branch worker, which acknowledges.
    ix.strata(0, &[branch_s, "pause"]);
    let started = Instant::now();
    while ix.flags("branch") != "true true" {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "Python's worker did not acknowledge strata's pause: {}\n{}",
            ix.flags("branch"),
            ix.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ix.site.pg.psql(
        "root",
        "insert into t1 (id, val) values (9002, 'paused branch')",
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !ix.has_row("branch", 9002),
        "a paused Python worker applied a batch\n{}",
        ix.logs()
    );
    ix.strata(0, &[branch_s, "resume"]);
    ix.wait(
        "row 9002 on the leaf after strata's resume",
        WAIT_LIMIT,
        |site| site.count("leaf", "select count(*) from t1 where id = 9002") == 1,
    )
    .await;
    assert_eq!(ix.flags("branch"), "false true");

    // The tools swap: strata's worker on the branch, Python's on the leaf, with writes
    // made while no worker ran; strata adds t2 on both, each worker copies it.
    ix.stop_all();
    ix.site.pg.psql(
        "root",
        "insert into t1 (id, val) select g, 'gap' from generate_series(3001, 3100) g; update t2 set val = 'gap'",
    );
    ix.start(Tool::Strata, "branch");
    ix.start(Tool::Python, "leaf");
    ix.strata(0, &[branch_s, "add-table", "t2"]);
    ix.strata(0, &[leaf_s, "add-table", "t2"]);
    ix.wait_ok("leaf", "public.t2").await;
    ix.site.pg.psql(
        "root",
        "update t1 set val = 'strata branch' where id between 3001 and 3050; delete from t1 where id < 20; insert into t2 values (2, 'two'); truncate t1; insert into t1 (id, val) values (1, 'after truncate')",
    );
    ix.wait_equal(
        "rows through strata's branch to Python's leaf",
        "root",
        &["branch", "leaf"],
        &["t1", "t2"],
    )
    .await;
    ix.compare("branch");
    ix.compare("leaf");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tool_switches_the_root_over_on_a_cascade_the_other_runs() {
    let Some(mut ix) = Interop::new() else {
        return;
    };
    let (root, branch) = ix
        .running_strata_cascade("rows before the switchover")
        .await;
    let (root_s, branch_s) = (path(&root), path(&branch));

    // Python's takeover on strata's workers: the branch becomes root.
    ix.py(&[branch_s, "takeover", "root"]);
    ix.site.fast_ticks("branch");
    assert_eq!(ix.node("branch"), "root -");
    assert_eq!(ix.node("root"), "branch branch");
    assert_eq!(ix.node("leaf"), "leaf branch");
    ix.site.pg.psql(
        "branch",
        "insert into t1 (id, val) select g, 'new root' from generate_series(501, 600) g; delete from t1 where id < 10",
    );
    ix.wait_equal(
        "the new root's rows on the old root and the leaf",
        "branch",
        &["root", "leaf"],
        &["t1"],
    )
    .await;
    ix.compare("root");
    ix.compare("leaf");

    // strata's takeover on Python's workers: the old root takes its role back.
    ix.stop_all();
    for node in ["root", "branch", "leaf"] {
        ix.start(Tool::Python, node);
    }
    ix.site
        .pg
        .psql("branch", "update t1 set val = 'python' where id < 550");
    ix.wait_equal(
        "rows before strata's switchover",
        "branch",
        &["root", "leaf"],
        &["t1"],
    )
    .await;
    ix.strata(0, &[root_s, "takeover", "branch", "--timeout", "60"]);
    assert_eq!(ix.node("root"), "root -");
    assert_eq!(ix.node("branch"), "branch root");
    assert_eq!(ix.node("leaf"), "leaf branch");
    ix.site.pg.psql(
        "root",
        "insert into t1 (id, val) select g, 'root again' from generate_series(701, 800) g; update t1 set val = 'x' where id > 590",
    );
    ix.wait_equal(
        "the root's rows through Python's workers",
        "root",
        &["branch", "leaf"],
        &["t1"],
    )
    .await;
    ix.compare("branch");
    ix.compare("leaf");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tool_resurrects_a_root_the_other_tool_failed_over_from() {
    let Some(mut ix) = Interop::new() else {
        return;
    };
    let (root, branch) = ix.running_strata_cascade("rows before the failover").await;
    let (root_s, branch_s) = (path(&root), path(&branch));

    // The root dies; Python's takeover --dead-root on strata's workers.
    ix.stop("root");
    ix.site.kill("root");
    ix.py(&[branch_s, "takeover", "root", "--dead-root"]);
    ix.site.fast_ticks("branch");
    assert_eq!(ix.node("branch"), "root -");
    ix.site.pg.psql(
        "branch",
        "insert into t1 (id, val) select g, 'after failover' from generate_series(501, 600) g",
    );
    ix.wait_equal(
        "the new root's rows on the leaf",
        "branch",
        &["leaf"],
        &["t1"],
    )
    .await;
    // The old root comes back; strata resurrects it (nothing was lost), it is resumed
    // and Python's worker replays on it.
    ix.site.revive("root");
    let dump = ix.site.path("root-lost.json");
    ix.strata(0, &[root_s, "resurrect", "--dump", path(&dump)]);
    assert_no_lost_rows(&dump);
    assert_eq!(ix.node("root"), "branch branch");
    ix.start(Tool::Python, "root");
    ix.strata(0, &[root_s, "resume"]);
    ix.site
        .pg
        .psql("branch", "update t1 set val = 'resurrected' where id > 550");
    ix.wait_equal(
        "the new root's rows on the resurrected root",
        "branch",
        &["root", "leaf"],
        &["t1"],
    )
    .await;
    ix.compare("root");
    ix.compare("leaf");

    // Now the branch (the root) dies under Python's workers... strata's takeover
    // --dead-root moves the root back, and Python resurrects the branch.
    ix.stop("leaf");
    ix.start(Tool::Python, "leaf");
    ix.stop("branch");
    ix.site.kill("branch");
    ix.strata(
        0,
        &[
            root_s,
            "takeover",
            "branch",
            "--dead-root",
            "--timeout",
            "60",
        ],
    );
    assert_eq!(ix.node("root"), "root -");
    assert_eq!(ix.node("leaf"), "leaf root");
    ix.site.pg.psql(
        "root",
        "insert into t1 (id, val) select g, 'root again' from generate_series(701, 800) g",
    );
    ix.wait_equal(
        "the root's rows on Python's leaf",
        "root",
        &["leaf"],
        &["t1"],
    )
    .await;
    ix.site.revive("branch");
    ix.py(&[branch_s, "resurrect"]);
    assert_no_lost_rows(&ix.site.path("resurrect-lost-events.json"));
    assert_eq!(ix.node("branch"), "branch root");
    // Python's `resume` waits for the worker's acknowledgement: strata's worker runs it.
    ix.start(Tool::Strata, "branch");
    ix.py(&[branch_s, "resume"]);
    ix.site.pg.psql(
        "root",
        "update t1 set val = 'python resurrected' where id > 750",
    );
    ix.wait_equal(
        "the root's rows on the branch Python resurrected",
        "root",
        &["branch", "leaf"],
        &["t1"],
    )
    .await;
    ix.compare("branch");
    ix.compare("leaf");
}

/// The advisory lock the hold switch waits on.
const HOLD_KEY: i64 = 4242;

impl Interop {
    /// Root and leaf created by Python, `t1` with 1000 rows on the root and an empty `t1`
    /// on the leaf that carries the hold switch: an ALWAYS trigger (it fires under
    /// `session_replication_role = replica` too) that makes the insert of row 500 wait
    /// for [`HOLD_KEY`]. Whichever tool copies, its COPY stops at row 500, mid-copy,
    /// while the test holds the lock. Returns the leaf's ini file.
    fn python_nodes_with_a_hold_switch(&mut self) -> PathBuf {
        let (root, leaf) = (self.site.ini("root", ""), self.site.ini("leaf", ""));
        for ini in [&root, &leaf] {
            for_python(ini);
        }
        self.site.pg.psql("root", TABLE_SQL);
        self.site.pg.psql("leaf", TABLE_SQL);
        self.site.pg.psql(
            "root",
            "insert into t1 (id, val) select g, 'r' || g from generate_series(1, 1000) g",
        );
        self.site.pg.psql(
            "leaf",
            &format!(
                "create function hold_switch() returns trigger language plpgsql as $$ \
                 begin if new.id = 500 then perform pg_advisory_xact_lock({HOLD_KEY}); end if; return new; end $$; \
                 create trigger hold_switch before insert on t1 for each row execute function hold_switch(); \
                 alter table t1 enable always trigger hold_switch"
            ),
        );
        let (root_dsn, leaf_dsn) = (self.site.dsn("root"), self.site.dsn("leaf"));
        let (root_s, leaf_s) = (path(&root).to_string(), path(&leaf).to_string());
        self.py(&[&root_s, "create-root", "root", &root_dsn]);
        self.py(&[
            &leaf_s,
            "create-leaf",
            "leaf",
            &leaf_dsn,
            &format!("--provider={root_dsn}"),
        ]);
        self.site.fast_ticks("root");
        self.py(&[&root_s, "add-table", "t1"]);
        // Both tools' copy processes log into the ini's logfile.
        self.logs.push(self.site.path("leaf_worker.log"));
        leaf
    }

    /// [`Interop::python_nodes_with_a_hold_switch`], a ticker, the hold taken, and the
    /// leaf's table added and copied by Python's worker until its COPY waits at row 500.
    /// Returns the leaf's ini file, the hold and the pid of Python's copy process.
    async fn python_copy_held_mid_table(&mut self) -> (PathBuf, Hold, i32) {
        let leaf = self.python_nodes_with_a_hold_switch();
        self.ticker = Some(Ticker::start(&self.site).await);
        let hold = Hold::take(&self.site).await;
        self.py(&[path(&leaf), "add-table", "t1"]);
        self.start(Tool::Python, "leaf");
        self.wait_held("Python's copy held at row 500").await;
        let pid = self
            .copy_pid()
            .expect("Python's copy process holds its pidfile");
        (leaf, hold, pid)
    }

    /// Waits until a copy is held at row 500 (a backend waits for the hold switch).
    async fn wait_held(&mut self, what: &str) {
        self.wait_held_on("leaf", what).await;
    }

    /// Waits until a copy into `db` is held at row 500.
    async fn wait_held_on(&mut self, db: &str, what: &str) {
        let sql = format!(
            "select count(*) from pg_locks where locktype = 'advisory' and objid = {HOLD_KEY} and not granted"
        );
        self.wait(what, WAIT_LIMIT, |site| site.count(db, &sql) == 1)
            .await;
    }

    /// The copy consumers registered on the root's queue.
    fn copy_consumers(&self) -> i64 {
        self.site.count(
            "root",
            &format!("select count(*) from pgq.get_consumer_info('{QUEUE}') where consumer_name like '%.copy.%'"),
        )
    }

    /// The pid in the leaf's copy pidfile of `t1`, if the file is there.
    fn copy_pid(&self) -> Option<i32> {
        let text =
            std::fs::read_to_string(self.site.path("leaf_worker.pid.copy.public.t1")).ok()?;
        text.trim().parse().ok()
    }
}

/// Holds the hold switch's lock on a session of the leaf until released or dropped.
struct Hold(strata_pgclient::Client);

impl Hold {
    async fn take(site: &Site) -> Hold {
        Hold::take_on(site, "leaf").await
    }

    /// Holds the hold switch of the database `db`.
    async fn take_on(site: &Site, db: &str) -> Hold {
        let client = site.client(db).await;
        client
            .execute(&format!("select pg_advisory_lock({HOLD_KEY})"), &[])
            .await
            .unwrap();
        Hold(client)
    }

    async fn release(self) {
        self.0
            .execute(&format!("select pg_advisory_unlock({HOLD_KEY})"), &[])
            .await
            .unwrap();
    }
}

/// Python's copy process outlives its main worker: strata's worker, started in its
/// place, leaves the copy to it (it holds `<pidfile>.copy.<table>`), answers its
/// hand-over, and the table ends `ok` with the copy consumer gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strata_lets_a_running_python_copy_finish_and_hands_it_over() {
    let Some(mut ix) = Interop::new() else {
        return;
    };
    let (_leaf, hold, python_copy) = ix.python_copy_held_mid_table().await;
    let _cleanup = strata_testkit::process::Daemon::killed(python_copy);
    ix.stop("leaf");
    // The copy process outlived its main worker.
    assert_eq!(ix.copy_pid(), Some(python_copy));
    ix.start(Tool::Strata, "leaf");
    ix.site.pg.psql(
        "root",
        "update t1 set val = 'during the copy' where id < 50; insert into t1 (id, val) values (5000, 'new')",
    );
    let log = ix.logs.last().unwrap().clone();
    ix.wait("strata's worker seeing Python's copy", WAIT_LIMIT, |_| {
        read(&log).contains("waiting for it to finish or exit")
    })
    .await;
    // Still exactly one copier: Python's, held.
    ix.wait_held("only Python's copy, still held").await;
    assert_eq!(ix.site.state("leaf", "public.t1"), "in-copy");
    hold.release().await;
    ix.wait_ok("leaf", "public.t1").await;
    ix.wait_equal("the rows after Python's copy", "root", &["leaf"], &["t1"])
        .await;
    ix.wait("Python's copy process to exit", WAIT_LIMIT, |_| {
        !std::path::Path::new(&format!("/proc/{python_copy}")).exists()
    })
    .await;
    assert_eq!(ix.copy_consumers(), 0, "the copy consumer is unregistered");
    ix.site
        .pg
        .psql("root", "update t1 set val = 'after' where id > 900");
    ix.wait_equal(
        "replay by strata after the copy",
        "root",
        &["leaf"],
        &["t1"],
    )
    .await;
    ix.compare("leaf");
}

/// A copy left half done by either tool is finished by the other. Python's copy process
/// dies mid-copy: strata takes over its stale pidfile, registers the copy consumer
/// afresh and copies. strata is stopped mid-copy in turn: it cancels the COPY and puts
/// the table back to waiting for a copy, where Python's worker starts one and finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_left_half_done_by_either_tool_is_finished_by_the_other() {
    let Some(mut ix) = Interop::new() else {
        return;
    };
    let (_leaf, hold, python_copy) = ix.python_copy_held_mid_table().await;
    ix.stop("leaf");
    // Python's copy process dies; its COPY's session goes with it.
    drop(strata_testkit::process::Daemon::killed(python_copy));
    ix.site.pg.psql(
        "leaf",
        &format!("select pg_terminate_backend(pid) from pg_locks where locktype = 'advisory' and objid = {HOLD_KEY} and not granted"),
    );
    assert_eq!(ix.site.state("leaf", "public.t1"), "in-copy");
    assert_eq!(
        ix.copy_consumers(),
        1,
        "Python's copy consumer is left behind"
    );

    // strata copies, under a copy consumer registered afresh, and holds the pidfile.
    ix.start(Tool::Strata, "leaf");
    ix.wait_held("strata's copy held at row 500").await;
    let strata_pid = ix.workers.last().unwrap().process.0.id() as i32;
    assert_eq!(
        ix.copy_pid(),
        Some(strata_pid),
        "strata took the stale pidfile over"
    );
    assert_eq!(ix.copy_consumers(), 1);
    let log = ix.logs.last().unwrap().clone();
    assert!(
        read(&log).contains("registering leaf_worker.copy.public.t1 afresh"),
        "{}",
        read(&log)
    );

    // Stopped mid-copy: the COPY is cancelled, nothing is left of it.
    ix.stop("leaf");
    assert_eq!(ix.site.state("leaf", "public.t1"), "NULL");
    assert_eq!(ix.copy_consumers(), 0);
    assert_eq!(ix.copy_pid(), None);
    assert_eq!(ix.site.count("leaf", "select count(*) from t1"), 0);

    // Python's worker starts the copy again and finishes it.
    ix.site
        .pg
        .psql("root", "update t1 set val = 'between' where id < 20");
    ix.start(Tool::Python, "leaf");
    ix.wait_held("Python's new copy held at row 500").await;
    let second = ix.copy_pid().expect("Python's new copy process");
    let _cleanup = strata_testkit::process::Daemon::killed(second);
    hold.release().await;
    ix.wait_ok("leaf", "public.t1").await;
    ix.site.pg.psql("root", "delete from t1 where id > 990");
    ix.wait_equal("the rows after Python's copy", "root", &["leaf"], &["t1"])
        .await;
    ix.compare("leaf");
}

/// The hold switch of [`HOLD_KEY`] on table `tc` of the leaf: the insert of row 500
/// waits for the lock, in a COPY and in a replayed batch alike.
const TC_HOLD_SQL: &str = "create function tc_hold_switch() returns trigger language plpgsql as $$ \
     begin if new.id = 500 then perform pg_advisory_xact_lock(4242); end if; return new; end $$; \
     create trigger tc_hold_switch before insert on tc for each row execute function tc_hold_switch(); \
     alter table tc enable always trigger tc_hold_switch";

impl Interop {
    /// `t1` (200 rows) and `tc` (1000 rows) on the root, empty on `others`; the leaf's
    /// `tc` carries the hold switch, so a copy of it waits at row 500 while the test holds
    /// [`HOLD_KEY`].
    fn midcopy_tables(&self, others: &[&str]) {
        self.midcopy_tables_held_on(others, "leaf");
    }

    /// [`Interop::midcopy_tables`] with the hold switch on `held`'s `tc`.
    fn midcopy_tables_held_on(&self, others: &[&str], held: &str) {
        let tc = "create table public.tc (id int primary key, val text)";
        for db in std::iter::once(&"root").chain(others) {
            self.site.pg.psql(db, TABLE_SQL);
            self.site.pg.psql(db, tc);
        }
        self.site.pg.psql(
            "root",
            "insert into t1 (id, val) select g, 'r' || g from generate_series(1, 200) g; \
             insert into tc (id, val) select g, 'c' || g from generate_series(1, 1000) g",
        );
        self.site.pg.psql(held, TC_HOLD_SQL);
    }

    /// The copy consumers of the leaf registered on the queue of `db`.
    fn copy_consumers_on(&self, db: &str) -> i64 {
        self.site.count(
            db,
            &format!("select count(*) from pgq.get_consumer_info('{QUEUE}') where consumer_name like 'leaf_worker.copy.%'"),
        )
    }
}

/// `/ready` of a worker serving on `address`: its status and body.
fn ready(address: &str) -> (u16, String) {
    let reply = strata_testkit::http::http(&format!("http://{address}"), "GET", "/ready", None, "");
    (reply.status, reply.body)
}

/// The root's connection string changes (`change-location`) while a strata leaf copies a
/// table: the leaf starts over with the new location, its copy task stopped and started
/// again rather than waited for, so every other table keeps replaying and `/ready` stays
/// true; the copy then finishes and its consumer is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strata_leaf_keeps_replaying_when_its_providers_location_changes_mid_copy() {
    let Some(mut ix) = Interop::new() else {
        return;
    };
    let health = format!("127.0.0.1:{}", strata_testkit::net::free_port());
    let (root, leaf) = ix.site.setup_nodes(&format!("health_listen = {health}\n"));
    let (root_s, leaf_s) = (path(&root).to_string(), path(&leaf).to_string());
    ix.midcopy_tables(&["leaf"]);
    ix.strata(0, &[&root_s, "add-table", "t1", "tc"]);
    ix.strata(0, &[&leaf_s, "add-table", "t1"]);
    ix.ticker = Some(Ticker::start(&ix.site).await);
    ix.start(Tool::Strata, "leaf");
    ix.wait_ok("leaf", "public.t1").await;
    let hold = Hold::take(&ix.site).await;
    ix.strata(0, &[&leaf_s, "add-table", "tc"]);
    ix.wait_held("strata's copy of tc held at row 500").await;

    let location = format!("{} application_name=moved", ix.site.dsn("root"));
    ix.strata(0, &[&root_s, "change-location", "root", &location]);
    ix.site
        .pg
        .psql("root", "update t1 set val = 'after the move' where id < 50");
    ix.wait_equal("t1 replayed after the move", "root", &["leaf"], &["t1"])
        .await;
    let log = ix.logs.last().unwrap().clone();
    assert!(
        read(&log).contains("changed its type or provider"),
        "{}",
        read(&log)
    );
    let (status, body) = ready(&health);
    assert_eq!(status, 200, "{body}");
    // The copy goes on from the new location (held again at row 500), then finishes.
    ix.wait_held("the copy of tc started again").await;
    hold.release().await;
    ix.wait_ok("leaf", "public.tc").await;
    ix.wait_equal("both tables", "root", &["leaf"], &["t1", "tc"])
        .await;
    assert_eq!(ix.copy_consumers_on("root"), 0);
    ix.compare("leaf");
}

/// Python's `change-provider` moves a strata leaf to a branch while its copy of `tc`
/// waits for the hand-over (the leaf paused after the COPY): the command finishes, the
/// worker stops its copy task instead of waiting for it, replays `t1` from the branch,
/// finds the copy consumer left on the old provider, unregisters it there and copies
/// `tc` again from the branch. Nothing stays registered on the root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_change_provider_on_a_strata_leaf_mid_copy_moves_the_copy_too() {
    let Some(mut ix) = Interop::new() else {
        return;
    };
    ix.site.database("branch");
    let root = ix.site.ini("root", "");
    ix.site.expect(
        0,
        &[path(&root), "create-root", "root", &ix.site.dsn("root")],
    );
    let branch = ix.site.node("branch", "branch", "root");
    let leaf = ix.site.node("leaf", "leaf", "root");
    ix.site.fast_ticks("root");
    for ini in [&root, &branch, &leaf] {
        for_python(ini);
    }
    let (root_s, branch_s, leaf_s) = (
        path(&root).to_string(),
        path(&branch).to_string(),
        path(&leaf).to_string(),
    );
    ix.midcopy_tables(&["branch", "leaf"]);
    ix.strata(0, &[&root_s, "add-table", "t1", "tc"]);
    ix.strata(0, &[&branch_s, "add-table", "t1", "tc"]);
    ix.strata(0, &[&leaf_s, "add-table", "t1"]);
    ix.ticker = Some(Ticker::start_on(&ix.site, &["root", "branch", "leaf"]).await);
    ix.start(Tool::Strata, "branch");
    ix.start(Tool::Strata, "leaf");
    ix.wait_ok("branch", "public.tc").await;
    ix.wait_ok("leaf", "public.t1").await;

    // The leaf's copy of tc: held mid-COPY, the leaf paused, then let through, so the
    // copy task catches up and waits for the paused main loop's hand-over.
    let hold = Hold::take(&ix.site).await;
    ix.strata(0, &[&leaf_s, "add-table", "tc"]);
    ix.wait_held("strata's copy of tc held at row 500").await;
    ix.strata(0, &[&leaf_s, "pause"]);
    hold.release().await;
    ix.wait("tc waiting for its hand-over", WAIT_LIMIT, |site| {
        site.state("leaf", "public.tc").starts_with("wanna-sync")
    })
    .await;
    assert_eq!(ix.copy_consumers_on("root"), 1);

    ix.py(&[&leaf_s, "change-provider", "--provider=branch"]);
    assert_eq!(ix.node("leaf"), "leaf branch");
    if ix.flags("leaf").starts_with("true") {
        ix.strata(0, &[&leaf_s, "resume"]);
    }
    ix.site.pg.psql(
        "root",
        "update t1 set val = 'from the branch' where id < 50",
    );
    ix.wait_equal(
        "t1 replayed from the new provider",
        "root",
        &["branch", "leaf"],
        &["t1"],
    )
    .await;
    ix.wait_ok("leaf", "public.tc").await;
    ix.wait_equal("both tables", "root", &["leaf"], &["t1", "tc"])
        .await;
    assert_eq!(ix.copy_consumers_on("root"), 0, "the stale copy consumer");
    assert_eq!(ix.copy_consumers_on("branch"), 0);
    let log = ix.logs.last().unwrap().clone();
    assert!(
        read(&log).contains("copying the table again"),
        "{}",
        read(&log)
    );
    ix.compare("leaf");
}

/// The value of `strata_londiste_failing` in a worker's `/metrics`.
fn failing(address: &str) -> String {
    let reply =
        strata_testkit::http::http(&format!("http://{address}"), "GET", "/metrics", None, "");
    reply
        .body
        .lines()
        .find(|l| l.starts_with("strata_londiste_failing{"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap_or_else(|| panic!("no strata_londiste_failing in {}", reply.body))
        .to_string()
}

/// A worker that makes no progress says so: its batch waits on a lock another session
/// holds on the leaf's table, and after `stall_timeout` `/ready` answers 503 naming the
/// stall and `strata_londiste_failing` is 1, with no error anywhere; once the lock goes,
/// the batch applies and both are back to normal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_makes_no_progress_is_reported_not_ready_and_failing() {
    let Some(mut ix) = Interop::new() else {
        return;
    };
    let health = format!("127.0.0.1:{}", strata_testkit::net::free_port());
    let (root, leaf) = ix
        .site
        .setup_nodes(&format!("health_listen = {health}\nstall_timeout = 1\n"));
    for db in ["root", "leaf"] {
        ix.site.pg.psql(db, TABLE_SQL);
    }
    ix.site.pg.psql(
        "root",
        "insert into t1 (id, val) select g, 'r' || g from generate_series(1, 200) g",
    );
    ix.strata(0, &[path(&root), "add-table", "t1"]);
    ix.strata(0, &[path(&leaf), "add-table", "t1"]);
    ix.ticker = Some(Ticker::start(&ix.site).await);
    ix.start(Tool::Strata, "leaf");
    ix.wait_ok("leaf", "public.t1").await;
    ix.wait("the leaf ready", WAIT_LIMIT, |_| ready(&health).0 == 200)
        .await;

    let blocker = ix.site.client("leaf").await;
    blocker
        .batch_execute("begin; lock table t1 in access exclusive mode")
        .await
        .unwrap();
    ix.site
        .pg
        .psql("root", "update t1 set val = 'blocked' where id < 10");
    ix.wait("/ready to report the stall", WAIT_LIMIT, |_| {
        let (status, body) = ready(&health);
        status == 503 && body.contains("no progress")
    })
    .await;
    assert_eq!(failing(&health), "1");

    blocker.batch_execute("rollback").await.unwrap();
    ix.wait_equal("the blocked batch", "root", &["leaf"], &["t1"])
        .await;
    ix.wait("the leaf ready again", WAIT_LIMIT, |_| {
        ready(&health).0 == 200 && failing(&health) == "0"
    })
    .await;
}

/// Python's `takeover root` on a strata branch while the branch copies `tc`: the command
/// finishes with one root (the branch) and the old root a branch of it, resumed and
/// taking writes; the branch's worker stops its copy rather than waiting for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_takeover_of_the_root_by_a_strata_branch_mid_copy_leaves_one_root() {
    let Some(mut ix) = Interop::new() else {
        return;
    };
    ix.site.database("branch");
    let root = ix.site.ini("root", "");
    ix.site.expect(
        0,
        &[path(&root), "create-root", "root", &ix.site.dsn("root")],
    );
    let branch = ix.site.node("branch", "branch", "root");
    ix.site.fast_ticks("root");
    for ini in [&root, &branch] {
        for_python(ini);
    }
    // The branch's worker serves /metrics: after the takeover they say what the root is.
    let health = format!("127.0.0.1:{}", strata_testkit::net::free_port());
    let text = std::fs::read_to_string(&branch).unwrap() + &format!("health_listen = {health}\n");
    std::fs::write(&branch, text).unwrap();
    let (root_s, branch_s) = (path(&root).to_string(), path(&branch).to_string());
    ix.midcopy_tables_held_on(&["branch"], "branch");
    ix.strata(0, &[&root_s, "add-table", "t1", "tc"]);
    ix.strata(0, &[&branch_s, "add-table", "t1"]);
    ix.ticker = Some(Ticker::start_on(&ix.site, &["root", "branch"]).await);
    ix.start(Tool::Strata, "root");
    ix.start(Tool::Strata, "branch");
    ix.wait_ok("branch", "public.t1").await;
    let hold = Hold::take_on(&ix.site, "branch").await;
    ix.strata(0, &[&branch_s, "add-table", "tc"]);
    ix.wait_held_on("branch", "strata's copy of tc held at row 500")
        .await;

    ix.py(&[&branch_s, "takeover", "root"]);
    assert_eq!(ix.node("branch"), "root -");
    assert_eq!(ix.node("root"), "branch branch");
    assert_eq!(ix.flags("root"), "false true", "the old root runs");
    hold.release().await;
    ix.site
        .pg
        .psql("branch", "update t1 set val = 'new root' where id < 50");
    ix.wait_equal("t1 from the new root", "branch", &["root"], &["t1"])
        .await;
    // The copy stopped and left nothing registered; the new root says what it holds.
    assert_eq!(ix.site.state("branch", "public.tc"), "NULL");
    assert_eq!(
        ix.site.count(
            "root",
            &format!("select count(*) from pgq.get_consumer_info('{QUEUE}') where consumer_name like 'branch_worker.copy.%'"),
        ),
        0
    );
    let log = ix.logs.last().unwrap().clone();
    assert!(
        read(&log)
            .contains("copy did not finish, their rows may be incomplete: public.tc (not copied)"),
        "{}",
        read(&log)
    );
    // Its metrics say what the root is: no table in copy, no copy's rows, no replay lag
    // climbing from the last batch it applied as a branch.
    let metrics = |address: &str| {
        strata_testkit::http::http(&format!("http://{address}"), "GET", "/metrics", None, "").body
    };
    ix.wait("the new root's metrics", WAIT_LIMIT, |_| {
        let text = metrics(&health);
        !text.contains("state=\"in-copy\"")
            && !text.contains("strata_londiste_lag_seconds{")
            && text.contains(
                "strata_londiste_copy_rows{job=\"branch_worker\",table=\"public.tc\"} 0\n",
            )
    })
    .await;
    // What compare shows too: t1 equal, tc not on the new root.
    let out = ix.strata(1, &[&root_s, "compare"]);
    assert!(
        out.contains("public.t1: 200 rows on the provider, 200 here, equal"),
        "{out}"
    );
    assert!(
        out.contains("public.tc: 0 rows on the provider, 1000 here, DIFFERENT"),
        "{out}"
    );
}
