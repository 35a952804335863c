//! The dashboard in a real browser: a real `strata server` with real backups of two nodes,
//! and Debian's Chromium, headless, driven by playwright-core from
//! `tests/dashboard/e2e.mjs`. The script signs in with the token, checks the figures the
//! page shows against the API, starts a backup with the page's button, follows it while
//! it runs and to its end, and saves screenshots under `target/test-output/dashboard/`.
//!
//! db1 runs in the server; db2 is an agent of its own behind a [`Gate`] that holds db2's
//! `finish` while the page's backup runs, so the page is seen showing a running backup's
//! figures however fast the machine is. The script opens the gate once it has seen them.
//! Four components: `data` (files on db1 and db2), `topology` (etcd, member e1, a real
//! one-member etcd), `workflow` (an `http` component driving a fake of Zeebe's backup
//! API) and `reports` (an optional `http` component whose system is down: a dead loopback
//! port), with a pause hook on `topology`, one on `workflow` and a hook on node db1. The
//! first backup leaves `workflow`'s pause paused (its resume fails while a marker file
//! exists), so its summary names it in `still_paused`. The script checks the components
//! view (each external component's line of the check), a backup's details (the parts
//! `workflow` recorded, what stayed paused), the nodes' plugins, and restores `topology`
//! alone from the page with a rename rule.
//!
//! Needs `node`, Chromium (`/usr/bin/chromium` or `$STRATA_TEST_CHROMIUM`),
//! `$STRATA_TEST_NODE_MODULES` with playwright-core (`scripts/install-test-servers.sh`
//! prints it) and etcd (`/usr/bin/etcd`, Debian's etcd-server). Without them the test says
//! so and passes, unless `STRATA_REQUIRE_BROWSER=1` (CI), where it fails.

use crate::common;

use common::gate::Gate;
use common::server::{http, Server};
use common::{pseudo_random, realistic_tree, strata_with_token, succeed};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use strata_testkit::camunda::{Fake, Role};
use strata_testkit::etcd::{put, range, EtcdCluster};

const USER_TOKEN: &str = "dashboard-user-token-5b1e";
/// A token of role `read` (the Tables page test signs in with it too).
const READ_TOKEN: &str = "dashboard-read-token-77c2";
/// A secret in the configuration (a storage option): the page shows it masked, never as is.
const SECRET: &str = "dashboard-secret-value-8c41f";
/// The etcd key of the topology component: a member named after its host, which the
/// page's restore renames.
const MEMBER: &str = "/service/pg/members/db1";
/// How long the browser script may take in all (it takes seconds; its slowest waits are
/// three minutes).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(900);
/// What the browser script saves, in order.
const SCREENSHOTS: [&str; 10] = [
    "overview.png",
    "components.png",
    "backups.png",
    "backup-details.png",
    "backup-running.png",
    "backup-done.png",
    "restore-done.png",
    "activity.png",
    "cleanup-preview.png",
    "configuration.png",
];

/// node, Chromium and playwright-core, or why the test cannot run.
struct Browser {
    chromium: PathBuf,
    node_modules: PathBuf,
}

fn browser() -> Result<Browser, String> {
    let browser = chromium()?;
    if !Path::new("/usr/bin/etcd").exists() {
        return Err("no /usr/bin/etcd (apt-get install etcd-server)".into());
    }
    Ok(browser)
}

/// node, Chromium and playwright-core (no etcd), or why the test cannot run.
fn chromium() -> Result<Browser, String> {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .map_err(|e| format!("no `node` on PATH ({e})"))?;
    if !node.status.success() {
        return Err("`node --version` failed".into());
    }
    let chromium = std::env::var_os("STRATA_TEST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.exists() {
        return Err(format!(
            "no Chromium at {} (apt-get install chromium, or set STRATA_TEST_CHROMIUM)",
            chromium.display()
        ));
    }
    let node_modules = std::env::var_os("STRATA_TEST_NODE_MODULES")
        .map(PathBuf::from)
        .ok_or("STRATA_TEST_NODE_MODULES is not set (run scripts/install-test-servers.sh)")?;
    if !node_modules.join("playwright-core").is_dir() {
        return Err(format!(
            "no playwright-core in {} (run scripts/install-test-servers.sh)",
            node_modules.display()
        ));
    }
    Ok(Browser {
        chromium,
        node_modules,
    })
}

/// A scratch cluster in one repository: files on db1 (in-process) and db2 (an agent of its
/// own reached through a gate), the `topology` component on etcd member e1 (in-process),
/// the `workflow` component on the Zeebe fake at `zeebe`, the optional `reports` component
/// on `dead` (nothing listens); and a second storage, `cold`, with a secret option.
/// `workflow`'s pause hook cannot resume while [`Scratch::stuck`] exists.
struct Scratch {
    dir: tempfile::TempDir,
    config: PathBuf,
    _agent: Server,
    gate: Gate,
}

impl Scratch {
    fn new(etcd: &str, zeebe: &str, dead: &str) -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let path = |rel: &str| dir.path().join(rel);
        let agent_config = path("db2.toml");
        std::fs::write(
            &agent_config,
            format!(
                r#"default_storage = "main"
state_dir = "{state}"
[storages.main]
path = "{repo}"
[[nodes]]
name = "db2"
roots = ["{db2}"]
[server]
node = "db2"
coordinator = false
"#,
                state = path("db2-state").display(),
                repo = path("repo").display(),
                db2 = path("db2").display(),
            ),
        )
        .unwrap();
        let agent = Server::start(strata_command(dir.path(), &agent_config), &path("db2.log"));
        let gate = Gate::start(&agent.url, "/node/v1/backup/finish");
        let config = path("strata.toml");
        std::fs::write(
            &config,
            format!(
                r#"default_storage = "main"
state_dir = "{state}"
[storages.main]
path = "{repo}"
[storages.cold]
path = "{cold}"
options = {{ aws_secret_access_key = "{SECRET}" }}
[[nodes]]
name = "db1"
roots = ["{db1}"]
[[nodes]]
name = "db2"
url = "{gate}"
[[nodes]]
name = "e1"
[[components]]
name = "data"
plugin = "files"
nodes = ["db1", "db2"]
[[components]]
name = "topology"
plugin = "etcd"
nodes = ["e1"]
[components.etcd]
endpoints = ["{etcd}"]
prefixes = ["/service/pg/"]
[[hooks]]
name = "freeze-topology"
component = "topology"
pause = ["true"]
resume = ["true"]
timeout = "10s"
[[components]]
name = "workflow"
plugin = "http"
[components.http]
backup = "POST {zeebe}/actuator/backups"
backup_body = '{{"backupId": {{backup_id}}}}'
id = "{{backup_id}}"
state = "GET {zeebe}/actuator/backups/{{id}}"
done = ["COMPLETED"]
poll = "50ms"
timeout = "60s"
[[components]]
name = "reports"
plugin = "http"
optional = true
[components.http]
backup = "POST {dead}"
connect_timeout = "500ms"
poll = "100ms"
[[hooks]]
name = "db1-sync"
node = "db1"
at = "before"
run = ["true"]
[[hooks]]
name = "hold-workflow"
component = "workflow"
pause = ["true"]
resume = ["/bin/sh", "-c", "test ! -e '{stuck}'"]
resume_attempts = 1
timeout = "10s"
[retention]
keep_last = 1
[[schedules]]
name = "nightly"
job = "backup"
cron = "30 2 * * *"
"#,
                state = path("state").display(),
                repo = path("repo").display(),
                cold = path("cold").display(),
                db1 = path("db1").display(),
                gate = gate.url,
                stuck = path("stuck").display(),
            ),
        )
        .unwrap();
        Scratch {
            dir,
            config,
            _agent: agent,
            gate,
        }
    }

    /// While this file exists, `workflow`'s pause hook cannot resume.
    fn stuck(&self) -> PathBuf {
        self.dir.path().join("stuck")
    }

    fn data(&self, node: &str) -> PathBuf {
        self.dir.path().join(node)
    }

    fn strata(&self) -> Command {
        strata_command(self.dir.path(), &self.config)
    }

    /// Starts `strata server` on a free port and waits until it listens.
    fn serve(&self) -> Server {
        Server::start(self.strata(), &self.dir.path().join("server.log"))
    }

    fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

/// `strata --config CONFIG` in `dir`, with the tokens and the password in its environment.
fn strata_command(dir: &Path, config: &Path) -> Command {
    let mut cmd = strata_with_token(dir, config, USER_TOKEN);
    cmd.env("STRATA_AGENT_TOKEN", "dashboard-agent-token");
    cmd
}

/// Reads a child's output to its end on a thread of its own (so neither pipe fills up).
fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// A GET with the user token; returns the status and the body.
fn get(url: &str, path: &str) -> (u16, String) {
    let reply = http(url, "GET", path, Some(USER_TOKEN), "");
    (reply.status, reply.body)
}

fn backups(url: &str) -> Vec<serde_json::Value> {
    let (status, body) = get(url, "/api/v1/backups");
    assert_eq!(status, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    list.as_array().unwrap().clone()
}

/// Where the screenshots go: `target/test-output/dashboard/` of the workspace.
fn output_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("test-output/dashboard");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_dashboard_shows_what_the_api_says_and_backs_up_on_request() {
    let browser = match browser() {
        Ok(b) => b,
        Err(why) if std::env::var("STRATA_REQUIRE_BROWSER").as_deref() != Ok("1") => {
            eprintln!("SKIPPED: dashboard browser test: {why} (STRATA_REQUIRE_BROWSER=1 makes this an error)");
            return;
        }
        Err(why) => panic!("STRATA_REQUIRE_BROWSER=1 but {why}"),
    };
    // The topology component's etcd, with one member key that names its host.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let etcd = runtime.block_on(EtcdCluster::start(1));
    let etcd_url = etcd.url(0).to_string();
    runtime.block_on(put(
        &etcd_url,
        MEMBER.as_bytes(),
        br#"{"name":"db1","conn_url":"postgres://10.0.0.1:5432/postgres"}"#,
    ));
    // The workflow component's system, and where the reports component's would be.
    let zeebe = Fake::start(Role::Zeebe { partitions: 2 });
    let scratch = Scratch::new(&etcd_url, &zeebe.url, &strata_testkit::dead_url());
    std::fs::create_dir_all(scratch.data("db1")).unwrap();
    realistic_tree(&scratch.data("db1").join("tree"));
    std::fs::write(
        scratch.data("db1").join("table.bin"),
        pseudo_random(6 << 20, 1),
    )
    .unwrap();
    let db2 = scratch.data("db2");
    std::fs::create_dir_all(&db2).unwrap();
    std::fs::write(db2.join("table.bin"), pseudo_random(3 << 20, 2)).unwrap();
    succeed(scratch.strata().arg("init"));
    succeed(scratch.strata().args(["init", "--storage", "cold"]));

    // A complete backup, then one that fails because db2's root is gone.
    // (Both with the topology component: etcd's key, the pause hook and db1's hook run;
    // workflow's snapshot is taken by the fake, reports is absent.) The first one's
    // resume of hold-workflow fails: the backup exits 3 and its summary says so; the
    // second resumes it first (the marker is gone), so nothing stays paused.
    std::fs::write(scratch.stuck(), "").unwrap();
    let stuck = scratch
        .strata()
        .args(["backup", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        stuck.status.code(),
        Some(3),
        "a backup that left hold-workflow paused: {}",
        String::from_utf8_lossy(&stuck.stderr)
    );
    std::fs::remove_file(scratch.stuck()).unwrap();
    std::fs::remove_dir_all(&db2).unwrap();
    let failed = scratch
        .strata()
        .args(["backup", "--json"])
        .output()
        .unwrap();
    assert!(
        !failed.status.success(),
        "a backup without db2's root failed"
    );
    std::fs::create_dir_all(&db2).unwrap();
    std::fs::write(db2.join("table.bin"), pseudo_random(3 << 20, 2)).unwrap();
    // New data, so the backup started from the page has something to send.
    std::fs::write(
        scratch.data("db1").join("new.bin"),
        pseudo_random(48 << 20, 3),
    )
    .unwrap();

    // Pauses left by a process that is gone, whose resumes the configuration no longer
    // declares: the server keeps them (never runs them) and the page must show them: one
    // of a component that is no longer configured, one of `freeze-topology` whose resume
    // failed.
    let state = scratch.dir.path().join("state");
    plant_pause_record(
        &state,
        "20261125T000000Z-deadbeef",
        serde_json::json!({"hook": "exporter", "component": "engine",
            "resume": "POST http://127.0.0.1:9/exporter/resume"}),
    );
    plant_pause_record(
        &state,
        "20261125T010000Z-cafebabe",
        serde_json::json!({"hook": "freeze-topology", "component": "topology",
            "since": "2026-11-25T01:00:00.000Z",
            "resume": ["/usr/local/bin/thaw-topology"],
            "resume_error": "resume failed after 5 attempts: exited with status 1: etcd unreachable"}),
    );

    let server = scratch.serve();
    let before = backups(&server.url);
    let statuses: Vec<&str> = before
        .iter()
        .map(|b| b["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.len(), 2, "{before:#?}");
    assert!(statuses.contains(&"complete") && statuses.contains(&"failed"));
    let first = before.iter().find(|b| b["status"] == "complete").unwrap();
    assert_eq!(
        first["still_paused"].as_array().map(Vec::len),
        Some(1),
        "{first:#}"
    );
    let workflow = first["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "workflow")
        .unwrap();
    assert_eq!(workflow["external"]["state"], "COMPLETED", "{workflow:#}");

    let shots = output_dir();
    for old in SCREENSHOTS {
        let _ = std::fs::remove_file(shots.join(old));
    }
    // The backup the page starts waits at the gate until the script has seen it run.
    scratch.gate.close();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dashboard/e2e.mjs");
    let mut node = Command::new("node")
        .arg(&script)
        .env("STRATA_URL", &server.url)
        .env("STRATA_TOKEN", USER_TOKEN)
        .env("STRATA_CHROMIUM", &browser.chromium)
        .env("STRATA_TEST_NODE_MODULES", &browser.node_modules)
        .env("STRATA_SCREENSHOTS", &shots)
        .env("STRATA_DB2", &db2)
        .env("STRATA_GATE", &scratch.gate.url)
        .env("STRATA_SECRET", SECRET)
        .env("STRATA_ETCD", &etcd_url)
        .env("TZ", "UTC")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = drain(node.stdout.take().unwrap());
    let stderr = drain(node.stderr.take().unwrap());
    // Every step of the script has its own timeout; this one catches a browser that
    // never starts or a script that never ends.
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        if let Some(status) = node.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = node.kill();
            let _ = node.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = stdout.join().unwrap();
    let stderr = stderr.join().unwrap();
    println!("{stdout}");
    assert!(
        status.is_some_and(|s| s.success()),
        "the browser script failed ({}):\n{stdout}\n{stderr}\nserver log:\n{}",
        status.map_or(format!("killed after {SCRIPT_TIMEOUT:?}"), |s| s
            .to_string()),
        scratch.server_log()
    );

    // The backup the page started is real: in the repository, complete, with both nodes;
    // the failed backup was deleted and the first one cleaned up through the page.
    let after = backups(&server.url);
    assert_eq!(after.len(), 1, "{after:#?}");
    let newest = &after[0];
    assert!(before.iter().all(|b| b["name"] != newest["name"]));
    assert_eq!(newest["status"], "complete", "{newest:#}");
    assert_eq!(newest["nodes"].as_array().unwrap().len(), 3);
    // The page's restore of the topology component alone, with `db1=newdb1`: the member
    // key (emptied by the script first) is back under its new name, renamed inside too.
    let keys = runtime.block_on(range(&etcd_url, b"/service/pg/", 0));
    let keys: Vec<(String, String)> = keys
        .into_iter()
        .map(|(k, v, _)| {
            (
                String::from_utf8_lossy(&k).into_owned(),
                String::from_utf8_lossy(&v).into_owned(),
            )
        })
        .collect();
    assert_eq!(
        keys.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["/service/pg/members/newdb1"],
        "{keys:?}"
    );
    assert!(keys[0].1.contains(r#""name":"newdb1""#), "{keys:?}");
    drop(etcd);
    for shot in SCREENSHOTS {
        let size = std::fs::metadata(shots.join(shot)).map(|m| m.len()).ok();
        assert!(size.unwrap_or(0) > 10_000, "screenshot {shot}: {size:?}");
    }
}

/// Writes a pause record of operation `operation` as strata writes them (0600 in a 0700
/// directory), held by a process that no longer runs; `fields` replace the defaults.
fn plant_pause_record(state: &std::path::Path, operation: &str, fields: serde_json::Value) {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = state.join("pauses");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .unwrap();
    let id = format!("{operation}-0");
    let mut record = serde_json::json!({
        "id": id,
        "operation": operation,
        "since": "2026-11-25T00:00:00.000Z",
        "env": {"operation": "backup", "id": operation, "backup": operation, "phase": "pause"},
        "timeout_ms": 1000,
        "attempts": 1,
        "holder_pid": 1,
        "holder_start": u64::MAX,
    });
    for (key, value) in fields.as_object().unwrap() {
        record[key] = value.clone();
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.join(format!("{id}.json")))
        .unwrap();
    std::io::Write::write_all(&mut file, record.to_string().as_bytes()).unwrap();
}

/// Runs `tests/dashboard/SCRIPT` with node and `env`, to its end (or [`SCRIPT_TIMEOUT`]);
/// its stdout, or why it failed with everything it printed.
fn run_script(browser: &Browser, script: &str, env: &[(&str, &str)]) -> Result<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/dashboard")
        .join(script);
    let mut node = Command::new("node");
    node.arg(&path)
        .env("STRATA_CHROMIUM", &browser.chromium)
        .env("STRATA_TEST_NODE_MODULES", &browser.node_modules)
        .env("STRATA_SCREENSHOTS", output_dir())
        .env("TZ", "UTC")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        node.env(key, value);
    }
    let mut node = node.spawn().unwrap();
    let stdout = drain(node.stdout.take().unwrap());
    let stderr = drain(node.stderr.take().unwrap());
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        if let Some(status) = node.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = node.kill();
            let _ = node.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    match status {
        Some(status) if status.success() => Ok(stdout),
        other => Err(format!(
            "{script} failed ({}):\n{stdout}\n{stderr}",
            other.map_or(format!("killed after {SCRIPT_TIMEOUT:?}"), |s| s
                .to_string())
        )),
    }
}

/// The Tables page in a real browser: a real `strata server` whose `[tables] db` is a real
/// PostgreSQL 15 with a daily-partitioned table and a 3-day delete policy. The script
/// (`tests/dashboard/tables.mjs`) sees the policy and its plan as the API says, edits the
/// duration (the dry-run plan first, nothing saved; then saved) and sees the change and
/// its `policy edit` row, by the token's name, in the history; runs the policies (their
/// plan first, then the run), removes the policy and adds one (its dry run first). Signed in with a read token, the page
/// shows the same policy but offers no action (the server would refuse).
#[test]
fn the_tables_page_edits_after_a_dry_run_runs_after_the_plan_and_removes() {
    use common::pgserver::{skip_without_postgres, PgSite};
    let browser = match chromium() {
        Ok(b) => b,
        Err(why) if std::env::var("STRATA_REQUIRE_BROWSER").as_deref() != Ok("1") => {
            eprintln!("SKIPPED: tables page browser test: {why} (STRATA_REQUIRE_BROWSER=1 makes this an error)");
            return;
        }
        Err(why) => panic!("STRATA_REQUIRE_BROWSER=1 but {why}"),
    };
    if skip_without_postgres() {
        return;
    }
    let site = PgSite::new("strata-dashboard-tables");
    site.pg.psql(
        "postgres",
        "CREATE SCHEMA metrics;
         CREATE TABLE metrics.recent (ts timestamptz NOT NULL, v int) PARTITION BY RANGE (ts);
         DO $$ DECLARE d date; BEGIN
           FOR d IN SELECT generate_series(current_date - 5, current_date + 3, '1 day')::date LOOP
             EXECUTE format('CREATE TABLE metrics.%I PARTITION OF metrics.recent FOR VALUES FROM (%L) TO (%L)',
                            'recent_' || to_char(d, 'YYYYMMDD'), d, d + 1);
           END LOOP; END $$;",
    );
    let dir = site.path("strata");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let config = dir.join("strata.toml");
    std::fs::write(
        &config,
        format!(
            "default_storage = \"main\"\nstate_dir = \"{state}\"\n[storages.main]\npath = \"{repo}\"\n\
             [repository]\nencryption = \"none\"\n[[nodes]]\nname = \"db1\"\nroots = [\"{data}\"]\n\
             [tables]\ndb = \"{dsn}\"\n\
             [[server.tokens]]\nname = \"wall\"\nenv = \"DASHBOARD_READER\"\nrole = \"read\"\n",
            state = dir.join("state").display(),
            repo = dir.join("repo").display(),
            data = dir.join("data").display(),
            dsn = site.dsn("postgres"),
        ),
    )
    .unwrap();
    let strata = || strata_with_token(&dir, &config, USER_TOKEN);
    succeed(strata().arg("init"));
    succeed(strata().args(["tables", "setup"]));
    succeed(strata().args(["ttl", "metrics.recent:ts", "delete", "3d"]));
    let policy = site
        .pg
        .psql("postgres", "SELECT id FROM strata.policy")
        .trim()
        .to_string();
    let mut serve = strata();
    serve.env("DASHBOARD_READER", READ_TOKEN);
    let server = Server::start(serve, &dir.join("server.log"));
    let log = || std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    let out = run_script(
        &browser,
        "tables.mjs",
        &[
            ("STRATA_URL", &server.url),
            ("STRATA_TOKEN", USER_TOKEN),
            ("STRATA_READ_TOKEN", READ_TOKEN),
            ("STRATA_POLICY", &policy),
        ],
    )
    .unwrap_or_else(|why| panic!("{why}\nserver log:\n{}", log()));
    println!("{out}");
    // What the page did is in the database: the edit (to 1d), the run and the removal,
    // each audited as the token.
    let stored = site.pg.psql(
        "postgres",
        &format!("SELECT count(*) FROM strata.policy WHERE id = {policy}"),
    );
    assert_eq!(stored.trim(), "0", "the removed policy");
    let audit = site.pg.psql(
        "postgres",
        &format!(
            "SELECT string_agg(who || ' ' || what, ', ' ORDER BY id) FROM strata.audit
             WHERE (policy_id = {policy} AND what IN ('policy edit', 'policy remove')) OR what = 'run'"
        ),
    );
    assert_eq!(
        audit.trim(),
        "token:user policy edit, token:user run, token:user policy remove"
    );
    let edited = site.pg.psql(
        "postgres",
        &format!(
            "SELECT detail FROM strata.audit WHERE policy_id = {policy} AND what = 'policy edit'"
        ),
    );
    assert!(edited.contains("1d"), "{edited}");
    for shot in [
        "tables.png",
        "tables-dry-run.png",
        "tables-saved.png",
        "tables-run.png",
        "tables-read-only.png",
        "tables-added.png",
    ] {
        let size = std::fs::metadata(output_dir().join(shot))
            .map(|m| m.len())
            .ok();
        assert!(size.unwrap_or(0) > 10_000, "screenshot {shot}: {size:?}");
    }
}

/// The dashboard with a Camunda 8 component (the engines are the test kit's fakes): the
/// page loads without a refused request although no WAL archiver runs on the host; the
/// Components view shows the plugin's own exporting pause/resume pair with the pause the
/// test left on it (not as a pause of a hook "no longer declared"); a backup's
/// details show every snapshot name whole inside the dialog; a restore of camunda from the
/// page says it is a checklist, not "succeeded", and draws the checklist
/// (`tests/dashboard/camunda.mjs`).
#[test]
fn the_dashboard_shows_camundas_pause_its_snapshots_and_its_restore_checklist() {
    let browser = match chromium() {
        Ok(b) => b,
        Err(why) if std::env::var("STRATA_REQUIRE_BROWSER").as_deref() != Ok("1") => {
            eprintln!("SKIPPED: camunda dashboard browser test: {why} (STRATA_REQUIRE_BROWSER=1 makes this an error)");
            return;
        }
        Err(why) => panic!("STRATA_REQUIRE_BROWSER=1 but {why}"),
    };
    let zeebe = Fake::start(Role::Zeebe { partitions: 3 });
    let operate = Fake::start(Role::WebApp { optimize: false });
    let tasklist = Fake::start(Role::WebApp { optimize: false });
    let optimize = Fake::start(Role::WebApp { optimize: true });
    let elastic = Fake::start(Role::Elastic);
    let dir = tempfile::tempdir().unwrap();
    let path = |rel: &str| dir.path().join(rel);
    std::fs::create_dir_all(path("data")).unwrap();
    std::fs::write(path("data/a.txt"), "alpha\n").unwrap();
    let config = path("strata.toml");
    std::fs::write(
        &config,
        format!(
            r#"default_storage = "main"
state_dir = "{state}"
[storages.main]
path = "{repo}"
[[nodes]]
name = "n1"
roots = ["{data}"]
[[components]]
name = "data"
plugin = "files"
nodes = ["n1"]
[[components]]
name = "camunda"
plugin = "camunda"
[components.camunda]
zeebe = "{zeebe}"
operate = "{operate}"
tasklist = "{tasklist}"
optimize = "{optimize}"
elasticsearch = "{elastic}"
snapshot_repository = "camunda"
poll = "50ms"
timeout = "20s"
connect_timeout = "1s"
[[components]]
name = "ledger"
plugin = "http"
optional = true
[components.http]
backup = "POST {dead}/backups"
backup_body = '{{"id": {{backup_id}}}}'
id = "{{backup_id}}"
state = "GET {dead}/backups/{{id}}"
done = ["DONE"]
failed = ["FAILED"]
delete = "DELETE {dead}/backups/{{id}}"
poll = "50ms"
timeout = "5s"
connect_timeout = "300ms"
"#,
            dead = format!("http://127.0.0.1:{}", strata_testkit::free_port()),
            state = path("state").display(),
            repo = path("repo").display(),
            data = path("data").display(),
            zeebe = zeebe.url,
            operate = operate.url,
            tasklist = tasklist.url,
            optimize = optimize.url,
            elastic = elastic.url,
        ),
    )
    .unwrap();
    let strata = || strata_command(dir.path(), &config);
    succeed(strata().arg("init"));
    let made = strata().args(["backup", "--json"]).output().unwrap();
    assert!(
        made.status.success(),
        "the camunda backup: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&made.stdout).unwrap();
    let name = summary["name"].as_str().unwrap().to_string();
    // A pause of Camunda's exporting left by a process that is gone, whose resume fails
    // (the fake's resume is down): the server keeps it, and the page must show it on the
    // plugin's own pair.
    zeebe.set(|k| k.resume_down = true);
    plant_pause_record(
        &path("state"),
        "20261125T020000Z-0badf00d",
        serde_json::json!({"hook": "camunda exporting", "component": "camunda",
            "resume": format!("POST {}/actuator/exporting/resume", zeebe.url)}),
    );
    let server = Server::start(strata(), &path("server.log"));
    let log = || std::fs::read_to_string(path("server.log")).unwrap_or_default();
    let out = run_script(
        &browser,
        "camunda.mjs",
        &[
            ("STRATA_URL", &server.url),
            ("STRATA_TOKEN", USER_TOKEN),
            ("STRATA_BACKUP", &name),
        ],
    )
    .unwrap_or_else(|why| panic!("{why}\nserver log:\n{}", log()));
    println!("{out}");
    for shot in [
        "camunda-components.png",
        "camunda-details.png",
        "camunda-restore.png",
    ] {
        let size = std::fs::metadata(output_dir().join(shot))
            .map(|m| m.len())
            .ok();
        assert!(size.unwrap_or(0) > 10_000, "screenshot {shot}: {size:?}");
    }
}
