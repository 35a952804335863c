//! Cluster backups over HTTP: real `strata server` processes on 127.0.0.1, one per node,
//! each with its own data directory and configuration, plus a coordinator.

use crate::common;

use common::server::{http, Server};
use common::{assert_same_tree, pseudo_random, realistic_tree, strata_with_token, succeed};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use strata_testkit::tls::self_signed_certificate;

const AGENT_TOKEN: &str = "agent-secret-token";
const USER_TOKEN: &str = "user-secret-token";
const SHARED: usize = 8 << 20;

/// A scratch cluster: a repository, and per node a data directory and a config.
struct Cluster {
    dir: tempfile::TempDir,
}

impl Cluster {
    fn new() -> Cluster {
        Cluster {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn data(&self, node: &str) -> PathBuf {
        self.path(&format!("{node}/data"))
    }

    /// Writes the configuration of node `node`'s agent.
    fn agent_config(&self, node: &str) -> PathBuf {
        let data = self.data(node);
        std::fs::create_dir_all(&data).unwrap();
        let path = self.path(&format!("{node}/strata.toml"));
        let text = format!(
            r#"default_storage = "main"
state_dir = "{state}"
[storages.main]
path = "{repo}"
[[nodes]]
name = "{node}"
roots = ["{data}"]
[server]
node = "{node}"
coordinator = false
"#,
            state = self.path(&format!("{node}/state")).display(),
            repo = self.path("repo").display(),
            data = data.display(),
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Writes a coordinator configuration for the agents at `nodes` (name, url).
    fn coordinator_config(&self, file: &str, nodes: &[(&str, &str)], lease_ttl: u64) -> PathBuf {
        let mut text = format!(
            r#"default_storage = "main"
state_dir = "{state}"
[storages.main]
path = "{repo}"
[server]
lease_ttl_secs = {lease_ttl}
"#,
            state = self.path("coordinator-state").display(),
            repo = self.path("repo").display(),
        );
        for (name, url) in nodes {
            text.push_str(&format!("[[nodes]]\nname = \"{name}\"\nurl = \"{url}\"\n"));
        }
        let path = self.path(file);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The strata command with tokens and password in the environment.
    fn strata(&self, config: &Path) -> Command {
        let mut cmd = strata_with_token(self.dir.path(), config, USER_TOKEN);
        cmd.env("STRATA_AGENT_TOKEN", AGENT_TOKEN);
        cmd
    }

    /// Starts `strata server` on a free port and waits until it listens.
    fn serve(&self, config: &Path, log: &str) -> Server {
        Server::start(self.strata(config), &self.path(log))
    }

    /// Three agents db1..db3 with data: a realistic tree on db1, a node-specific random
    /// file on each, and one large file identical on all three.
    fn three_agents(&self, extra_db2: usize) -> Vec<Server> {
        let shared = pseudo_random(SHARED, 42);
        (1..=3)
            .map(|i| {
                let node = format!("db{i}");
                let config = self.agent_config(&node);
                let data = self.data(&node);
                std::fs::write(data.join("shared.bin"), &shared).unwrap();
                std::fs::write(data.join("own.bin"), pseudo_random(2 << 20, i)).unwrap();
                if i == 1 {
                    realistic_tree(&data.join("tree"));
                }
                if i == 2 && extra_db2 > 0 {
                    std::fs::write(data.join("big.bin"), pseudo_random(extra_db2, 7)).unwrap();
                }
                self.serve(&config, &format!("{node}.log"))
            })
            .collect()
    }

    /// Gives configured nodes zones in the config file at `path`.
    fn with_zones(&self, path: &Path, zones: &[(&str, &str)]) {
        let mut text = std::fs::read_to_string(path).unwrap();
        for (node, zone) in zones {
            text = text.replace(
                &format!("name = \"{node}\"\n"),
                &format!("name = \"{node}\"\nzone = \"{zone}\"\n"),
            );
        }
        std::fs::write(path, text).unwrap();
    }

    fn copy_of(&self, node: &str) -> PathBuf {
        let copy = self.path(&format!("{node}/expected"));
        common::copy_tree(&self.data(node), &copy);
        copy
    }
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn run(cmd: &mut Command) -> (Option<i32>, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Backs up with `config` (asserting the backup is complete), restores the latest backup
/// into a fresh directory with the `extra` restore arguments, and returns the directory.
fn back_up_and_restore(cluster: &Cluster, config: &Path, extra: &[&str]) -> PathBuf {
    let summary = json(&succeed(cluster.strata(config).args(["backup", "--json"])));
    assert_eq!(summary["status"], "complete", "{summary:#}");
    let restored = cluster.path("restored");
    succeed(
        cluster
            .strata(config)
            .args(["restore", "latest", "--to", restored.to_str().unwrap()])
            .args(extra),
    );
    restored
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            dir_bytes(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

/// The status of a request to `url`.
fn http_status(url: &str, method: &str, path: &str, token: Option<&str>, body: &str) -> u16 {
    http(url, method, path, token, body).status
}

#[test]
fn three_agents_back_up_once_restore_one_node_alone_and_all_to_fresh_agents() {
    let cluster = Cluster::new();
    let agents = cluster.three_agents(0);
    let nodes: Vec<(&str, &str)> = vec![
        ("db1", &agents[0].url),
        ("db2", &agents[1].url),
        ("db3", &agents[2].url),
    ];
    let config = cluster.coordinator_config("coordinator.toml", &nodes, 30);
    cluster.with_zones(&config, &[("db1", "z1"), ("db2", "z2"), ("db3", "z3")]);
    succeed(cluster.strata(&config).arg("init"));
    let coordinator = cluster.serve(&config, "coordinator.log");
    let server = coordinator.url.clone();
    let expected: Vec<PathBuf> = ["db1", "db2", "db3"]
        .iter()
        .map(|n| cluster.copy_of(n))
        .collect();

    // Backup through the coordinator server, followed to its end.
    let summary = json(&succeed(
        cluster
            .strata(&config)
            .args(["--server", &server, "backup", "--wait", "--json"]),
    ));
    assert_eq!(summary["status"], "complete", "{summary:#}");
    assert_eq!(summary["nodes"].as_array().unwrap().len(), 3);

    // The shared file went into the repository once: three copies would not fit.
    let logical: u64 = ["db1", "db2", "db3"]
        .iter()
        .map(|n| dir_bytes(&cluster.data(n)))
        .sum();
    let stored = dir_bytes(&cluster.path("repo/data"));
    assert!(
        stored < logical - 2 * SHARED as u64 + (1 << 20),
        "stored {stored} of {logical} logical bytes: shared data was sent more than once"
    );
    let new_bytes: u64 = summary["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["new_bytes"].as_u64().unwrap())
        .sum();
    assert!(
        new_bytes < logical - 2 * SHARED as u64 + (1 << 20),
        "{summary:#}"
    );

    // Wipe db2 (and leave something that is not in the backup), restore it alone.
    std::fs::remove_dir_all(cluster.data("db2")).unwrap();
    std::fs::create_dir_all(cluster.data("db2")).unwrap();
    std::fs::write(cluster.data("db2").join("stray.tmp"), b"not in the backup").unwrap();
    std::fs::write(cluster.data("db1").join("untouched.txt"), b"db1 keeps this").unwrap();
    let report = json(&succeed(cluster.strata(&config).args([
        "--server", &server, "restore", "latest", "--node", "db2", "--json",
    ])));
    assert_eq!(report["nodes"].as_array().unwrap().len(), 1, "{report:#}");
    assert_same_tree(&expected[1], &cluster.data("db2"));
    assert!(
        cluster.data("db1").join("untouched.txt").exists(),
        "a one-node restore leaves the other nodes alone"
    );

    // A pinned backup cannot be deleted through the server either.
    let name = summary["name"].as_str().unwrap();
    succeed(cluster.strata(&config).args(["pin", name]));
    let (code, _, err) = run(cluster
        .strata(&config)
        .args(["--server", &server, "delete", name]));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("pinned"), "{err}");

    // Status shows every node reachable and nothing running.
    let status = json(&succeed(
        cluster
            .strata(&config)
            .args(["--server", &server, "status", "--json"]),
    ));
    assert_eq!(status["nodes"].as_array().unwrap().len(), 3, "{status:#}");
    assert!(status["locks"].as_array().unwrap().is_empty(), "{status:#}");
    assert!(status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["metadata"]["api_version"] == 1 && n["metadata"]["lease"].is_null()));

    // Three fresh agents with empty data directories and other names; the in-process
    // coordinator places db1 by --map and the others by the zone the backup recorded.
    let fresh: Vec<Server> = (1..=3)
        .map(|i| {
            let node = format!("new{i}");
            let config = cluster.agent_config(&node);
            cluster.serve(&config, &format!("{node}.log"))
        })
        .collect();
    let fresh_nodes: Vec<(&str, &str)> = vec![
        ("new1", &fresh[0].url),
        ("new2", &fresh[1].url),
        ("new3", &fresh[2].url),
    ];
    // Without zones, unknown names are refused with the way out.
    let plain = cluster.coordinator_config("plain.toml", &fresh_nodes, 30);
    let (code, _, err) = run(cluster.strata(&plain).args(["restore", "latest"]));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--map db1=NODE"), "{err}");
    let zoned = cluster.coordinator_config("zoned.toml", &fresh_nodes, 30);
    cluster.with_zones(&zoned, &[("new1", "z2"), ("new2", "z3"), ("new3", "z1")]);
    let report = json(&succeed(
        cluster
            .strata(&zoned)
            .args(["restore", "latest", "--map", "db1=new3", "--json"]),
    ));
    let placed: Vec<(String, String)> = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["source"].as_str().unwrap().to_string(),
                n["node"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        placed,
        [("db1", "new3"), ("db2", "new1"), ("db3", "new2")]
            .map(|(a, b)| (a.to_string(), b.to_string())),
        "{report:#}"
    );
    assert_same_tree(&expected[0], &cluster.data("new3"));
    assert_same_tree(&expected[1], &cluster.data("new1"));
    assert_same_tree(&expected[2], &cluster.data("new2"));
}

#[test]
fn requests_without_the_right_token_are_refused_and_nothing_runs() {
    let cluster = Cluster::new();
    let agent_config = cluster.agent_config("db1");
    std::fs::write(cluster.data("db1").join("f"), b"data").unwrap();
    let agent = cluster.serve(&agent_config, "db1.log");
    let config = cluster.coordinator_config("coordinator.toml", &[("db1", &agent.url)], 30);
    succeed(cluster.strata(&config).arg("init"));
    let coordinator = cluster.serve(&config, "coordinator.log");

    let scan = r#"{"operation":"x","holder":"h","ttl_ms":60000}"#;
    for token in [None, Some("wrong"), Some(USER_TOKEN)] {
        assert_eq!(
            http_status(&agent.url, "POST", "/node/v1/lease", token, scan),
            401,
            "agent API with token {token:?}"
        );
    }
    for token in [None, Some("wrong"), Some(AGENT_TOKEN)] {
        assert_eq!(
            http_status(&coordinator.url, "POST", "/api/v1/backups", token, ""),
            401,
            "coordinator API with token {token:?}"
        );
    }
    let (code, _, err) = run(cluster.strata(&config).env("STRATA_TOKEN", "wrong").args([
        "--server",
        &coordinator.url,
        "backup",
        "--wait",
    ]));
    assert_eq!(code, Some(7), "{err}");
    assert!(err.contains("token"), "{err}");
    // A coordinator with the wrong agent token does not start a backup either.
    let (code, _, err) = run(cluster
        .strata(&config)
        .env("STRATA_AGENT_TOKEN", "wrong")
        .args(["backup"]));
    assert_eq!(code, Some(7), "{err}");
    assert!(err.contains("agent token"), "{err}");
    // Nothing ran: no lease on the agent, no backup in the repository.
    let status = json(&succeed(cluster.strata(&config).args(["status", "--json"])));
    assert!(
        status["nodes"][0]["metadata"]["lease"].is_null(),
        "{status:#}"
    );
    let list = json(&succeed(cluster.strata(&config).args(["list", "--json"])));
    assert_eq!(list.as_array().unwrap().len(), 0);
    // A token file works in place of $STRATA_TOKEN; a missing one is named.
    let token_file = cluster.path("user.token");
    std::fs::write(&token_file, format!("{USER_TOKEN}\n")).unwrap();
    succeed(
        cluster
            .strata(&config)
            .env_remove("STRATA_TOKEN")
            .args(["--server", &coordinator.url, "--token-file"])
            .arg(&token_file)
            .arg("status"),
    );
    let (code, _, err) = run(cluster.strata(&config).args([
        "--server",
        &coordinator.url,
        "--token-file",
        "/nonexistent/token",
        "status",
    ]));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("cannot read token file /nonexistent/token"),
        "{err}"
    );
    // The right token works.
    assert_eq!(
        http_status(
            &coordinator.url,
            "GET",
            "/api/v1/status",
            Some(USER_TOKEN),
            ""
        ),
        200
    );
}

/// Polls `status --json` until `ready` holds (or panics after a minute).
fn wait_for(
    cluster: &Cluster,
    config: &Path,
    server: Option<&str>,
    what: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut cmd = cluster.strata(config);
        if let Some(url) = server {
            cmd.args(["--server", url]);
        }
        let (_, out, _) = run(cmd.args(["status", "--json"]));
        if let Ok(status) = serde_json::from_str::<serde_json::Value>(&out) {
            if ready(&status) {
                return status;
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn node_phase(status: &serde_json::Value, node: &str) -> Option<(String, u64)> {
    let op = status["operations"].as_array()?.first()?;
    let n = op["nodes"].as_array()?.iter().find(|n| n["name"] == node)?;
    Some((
        n["phase"].as_str()?.to_string(),
        n["progress"]["bytes"].as_u64().unwrap_or(0),
    ))
}

#[test]
fn killing_an_agent_mid_backup_fails_that_backup_and_the_next_one_succeeds() {
    let cluster = Cluster::new();
    let mut agents = cluster.three_agents(160 << 20);
    let nodes: Vec<(String, String)> = (1..=3)
        .map(|i| (format!("db{i}"), agents[i - 1].url.clone()))
        .collect();
    let refs: Vec<(&str, &str)> = nodes
        .iter()
        .map(|(n, u)| (n.as_str(), u.as_str()))
        .collect();
    let config = cluster.coordinator_config("coordinator.toml", &refs, 30);
    succeed(cluster.strata(&config).arg("init"));
    let coordinator = cluster.serve(&config, "coordinator.log");
    let server = coordinator.url.clone();

    let started = json(&succeed(
        cluster
            .strata(&config)
            .args(["--server", &server, "backup", "--json"]),
    ));
    let id = started["id"].as_str().unwrap().to_string();
    // A second backup meanwhile is refused, naming the one that holds the cluster.
    let (code, _, err) = run(cluster
        .strata(&config)
        .args(["--server", &server, "backup"]));
    assert_eq!(code, Some(6), "{err}");
    assert!(
        err.contains("busy") && err.contains(&format!("backup {id}")),
        "{err}"
    );

    wait_for(&cluster, &config, Some(&server), "db2 to move data", |s| {
        node_phase(s, "db2").is_some_and(|(phase, bytes)| phase != "waiting" && bytes > 0)
    });
    agents.remove(1).kill();
    wait_for(&cluster, &config, Some(&server), "the backup to end", |s| {
        s["operations"].as_array().is_some_and(|o| o.is_empty())
    });

    let list = json(&succeed(
        cluster
            .strata(&config)
            .args(["--server", &server, "list", "--json"]),
    ));
    let backup = list
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == id.as_str())
        .expect("the failed backup is recorded");
    assert_eq!(backup["status"], "failed", "{backup:#}");
    let db2 = backup["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "db2")
        .unwrap();
    assert_eq!(db2["status"], "failed");
    assert!(db2["error"].as_str().unwrap().contains("db2"), "{db2:#}");
    // `latest` never means a failed backup.
    let (code, _, _) = run(cluster
        .strata(&config)
        .args(["--server", &server, "show", "latest"]));
    assert_eq!(code, Some(2));
    succeed(cluster.strata(&config).args(["verify", "--read-data"]));

    // The surviving agents were released; with db2 back, the next backup is complete.
    let status = wait_for(&cluster, &config, None, "db2's status", |_| true);
    for node in status["nodes"].as_array().unwrap() {
        assert!(node["metadata"]["lease"].is_null(), "{node:#}");
    }
    let db2_config = cluster.path("db2/strata.toml");
    let db2 = cluster.serve(&db2_config, "db2-again.log");
    let nodes = vec![
        ("db1", agents[0].url.as_str()),
        ("db2", db2.url.as_str()),
        ("db3", agents[1].url.as_str()),
    ];
    let config = cluster.coordinator_config("coordinator2.toml", &nodes, 30);
    let expected = cluster.copy_of("db2");
    let restored = back_up_and_restore(&cluster, &config, &["--node", "db2"]);
    assert_same_tree(&expected, &restored);
}

#[test]
fn a_dead_coordinator_holds_the_cluster_only_until_its_leases_expire() {
    let cluster = Cluster::new();
    let agents = cluster.three_agents(160 << 20);
    let nodes: Vec<(&str, &str)> = vec![
        ("db1", &agents[0].url),
        ("db2", &agents[1].url),
        ("db3", &agents[2].url),
    ];
    let config = cluster.coordinator_config("coordinator.toml", &nodes, 2);
    succeed(cluster.strata(&config).arg("init"));
    let coordinator = cluster.serve(&config, "coordinator.log");
    let server = coordinator.url.clone();
    succeed(
        cluster
            .strata(&config)
            .args(["--server", &server, "backup"]),
    );
    wait_for(&cluster, &config, Some(&server), "db2 to move data", |s| {
        node_phase(s, "db2").is_some_and(|(phase, bytes)| phase != "waiting" && bytes > 0)
    });
    coordinator.kill();

    // Right after: the cluster is held (lock and leases of the dead coordinator).
    let (code, _, err) = run(cluster.strata(&config).args(["backup"]));
    assert_eq!(code, Some(6), "{err}");
    assert!(err.contains("busy"), "{err}");

    // After the TTL, an in-process coordinator backs up the whole cluster.
    std::thread::sleep(Duration::from_secs(3));
    let expected: Vec<PathBuf> = ["db1", "db2", "db3"]
        .iter()
        .map(|n| cluster.copy_of(n))
        .collect();
    let restored = back_up_and_restore(&cluster, &config, &[]);
    for (i, node) in ["db1", "db2", "db3"].iter().enumerate() {
        assert_same_tree(&expected[i], &restored.join(node));
    }
    succeed(cluster.strata(&config).args(["verify", "--read-data"]));
}

#[test]
fn agents_can_speak_tls_with_a_configured_ca() {
    let cluster = Cluster::new();
    let (cert, key) = self_signed_certificate(cluster.dir.path());
    let agent_config = cluster.agent_config("db1");
    let mut text = std::fs::read_to_string(&agent_config).unwrap();
    text.push_str(&format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
        cert.display(),
        key.display()
    ));
    std::fs::write(&agent_config, text).unwrap();
    realistic_tree(&cluster.data("db1"));
    let agent = cluster.serve(&agent_config, "db1.log");
    assert!(agent.url.starts_with("https://"), "{}", agent.url);
    let expected = cluster.copy_of("db1");

    // Without the CA the certificate is not trusted: the node is unreachable.
    let config = cluster.coordinator_config("untrusting.toml", &[("db1", &agent.url)], 30);
    succeed(cluster.strata(&config).arg("init"));
    let (code, out, err) = run(cluster.strata(&config).args(["status", "--json"]));
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(json(&out)["nodes"][0]["metadata"].is_null(), "{out}");

    let config = cluster.coordinator_config("trusting.toml", &[("db1", &agent.url)], 30);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[server]\n",
        &format!("[server]\nca_file = \"{}\"\n", cert.display()),
    );
    std::fs::write(&config, text).unwrap();
    let restored = back_up_and_restore(&cluster, &config, &[]);
    assert_same_tree(&expected, &restored);
}

#[test]
fn the_server_runs_scheduled_backups_and_shows_them() {
    let cluster = Cluster::new();
    let data = cluster.data("db1");
    std::fs::create_dir_all(&data).unwrap();
    realistic_tree(&data);
    let config = cluster.path("scheduled.toml");
    std::fs::write(
        &config,
        format!(
            r#"default_storage = "main"
state_dir = "{state}"
[storages.main]
path = "{repo}"
[[nodes]]
name = "db1"
roots = ["{data}"]
[retention]
keep_last = 1
[[schedules]]
name = "often"
job = "backup"
cron = "*/2 * * * * *"
[[schedules]]
job = "verify"
cron = "0 4 * * 0"
timezone = "Europe/Berlin"
[[schedules]]
job = "drill"
cron = "*/3 * * * * *"
"#,
            state = cluster.path("state").display(),
            repo = cluster.path("repo").display(),
            data = data.display(),
        ),
    )
    .unwrap();
    succeed(cluster.strata(&config).arg("init"));
    let server = cluster.serve(&config, "server.log");
    let deadline = Instant::now() + Duration::from_secs(60);
    let jobs = loop {
        let jobs = json(&succeed(cluster.strata(&config).args([
            "--server",
            &server.url,
            "schedules",
            "--json",
        ])));
        // The second scheduled backup's cleanup removes the first (keep_last = 1).
        if jobs[0]["last"]["outcome"] == "succeeded"
            && jobs[0]["last"]["detail"]
                .as_str()
                .is_some_and(|d| d.contains("1 kept, 1 removed"))
        {
            break jobs;
        }
        assert!(
            Instant::now() < deadline,
            "no scheduled backup ran: {jobs:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(jobs[0]["name"], "often");
    assert!(
        jobs[0]["last"]["detail"]
            .as_str()
            .unwrap()
            .contains("complete"),
        "{jobs:#}"
    );
    assert_eq!(jobs[1]["name"], "verify");
    assert!(jobs[1]["last"].is_null());
    // A scheduled restore drill of the latest backup.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let jobs = json(&succeed(cluster.strata(&config).args([
            "--server",
            &server.url,
            "schedules",
            "--json",
        ])));
        let last = &jobs[2]["last"];
        if last["outcome"] == "succeeded" {
            assert!(
                last["detail"]
                    .as_str()
                    .unwrap()
                    .starts_with("restore drill: 1 nodes"),
                "{jobs:#}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no scheduled drill ran: {jobs:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        jobs[1]["next"].as_str().unwrap().contains("T03:00:00"),
        "{jobs:#}"
    );
    // Prometheus sees the same, with the user token only; the scheduled cleanups and
    // their garbage collections are counted as the API's would be.
    let reply = http(&server.url, "GET", "/metrics", Some(USER_TOKEN), "");
    let (status, metrics) = (reply.status, reply.body);
    assert_eq!(status, 200, "{metrics}");
    for expected in [
        "strata_operations_total{storage=\"main\",kind=\"backup\",outcome=\"succeeded\"}",
        "strata_operations_total{storage=\"main\",kind=\"cleanup\",outcome=\"succeeded\"}",
        "strata_operations_total{storage=\"main\",kind=\"gc\",outcome=\"succeeded\"}",
        "strata_last_operation_duration_seconds{storage=\"main\",kind=\"cleanup\"}",
        "strata_backups{storage=\"main\",status=\"complete\"} ",
        "strata_node_up{node=\"db1\"} 1",
        "strata_last_complete_backup_timestamp_seconds{storage=\"main\"}",
        "strata_backups_verified{storage=\"main\",outcome=\"never\"}",
        "strata_store_requests_total{storage=\"main\",kind=\"put\"}",
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing in:\n{metrics}"
        );
    }
    assert_eq!(http_status(&server.url, "GET", "/metrics", None, ""), 401);

    // The scheduled backup restores byte for byte.
    let restored = cluster.path("restored");
    succeed(cluster.strata(&config).args([
        "restore",
        "latest",
        "--to",
        restored.to_str().unwrap(),
    ]));
    assert_same_tree(&data, &restored);
    // Without --server the last start is read from the state the server keeps.
    let local = json(&succeed(
        cluster.strata(&config).args(["schedules", "--json"]),
    ));
    assert!(!local[0]["last"].is_null(), "{local:#}");
}
