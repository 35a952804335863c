//! strata with a real Patroni (Debian's patroni 3, etcd, PostgreSQL 15) on loopback: a
//! two-member cluster archiving through `strata wal-push`, backups from the member
//! Patroni runs as a replica (`backup_from = "replica"`) before and after a switchover,
//! a replica rebuilt by Patroni through strata's replica method, and a new cluster
//! bootstrapped by Patroni through strata's bootstrap method at a point in time, each
//! compared row by row with what the source held.
//!
//! Patroni and PostgreSQL run as the `postgres` user when the tests run as root. Patroni
//! is stopped with SIGTERM (a SIGKILL leaves PostgreSQL running), and every server is
//! stopped whatever the test does.

use crate::common;

use common::pgserver::{as_postgres, chown_to_postgres, skip_without_postgres, PG_BIN};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use strata_testkit::etcd::EtcdCluster;
use strata_testkit::free_port;

const PATRONI: &str = "/usr/bin/patroni";

/// One Patroni member: its configuration, ports and process; stopped on drop.
struct Member {
    name: String,
    yml: PathBuf,
    api: u16,
    pg: u16,
    data_dir: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Member {
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(PATRONI);
        cmd.arg(&self.yml)
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.child = Some(as_postgres(&mut cmd).spawn().unwrap());
    }

    /// SIGTERM to Patroni (it stops PostgreSQL), then whatever is left is stopped.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            strata_testkit::process::terminate_child_within(&mut child, Duration::from_secs(60));
        }
        let mut pg_ctl = Command::new(Path::new(PG_BIN).join("pg_ctl"));
        pg_ctl
            .args(["stop", "-m", "immediate", "-D"])
            .arg(&self.data_dir);
        let _ = as_postgres(&mut pg_ctl).output();
    }

    /// `GET /<what>` of its REST API: the status and the body, or `None` when it does
    /// not answer.
    fn request(&self, what: &str) -> Option<(String, String)> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.api)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        let request =
            format!("GET /{what} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        let (head, body) = answer.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?.to_string();
        Some((status, body.to_string()))
    }

    /// `GET /<what>` of its REST API answers 200 (`leader`, `replica`, `health`).
    fn is(&self, what: &str) -> bool {
        self.request(what)
            .is_some_and(|(status, _)| status == "200")
    }

    fn wait_until(&mut self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !self.is(what) {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "Patroni {} ended ({status}); its log:\n{}",
                    self.name,
                    tail(&self.log)
                );
            }
            assert!(
                Instant::now() < deadline,
                "member {} is not {what} after 2 minutes; its log:\n{}",
                self.name,
                tail(&self.log)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The JSON body of `GET /<what>` of its REST API.
    fn get(&self, what: &str) -> serde_json::Value {
        let (status, body) = self
            .request(what)
            .unwrap_or_else(|| panic!("GET /{what}: no answer"));
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET /{what}: {status}: {e}: {body}"))
    }

    /// `pg_dump` of database `postgres`, its version header left out.
    fn dump(&self) -> String {
        let mut cmd = Command::new(Path::new(PG_BIN).join("pg_dump"));
        cmd.arg("-h").arg(&self.socket).args([
            "-p",
            &self.pg.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
        ]);
        let out = as_postgres(&mut cmd).output().unwrap();
        assert!(
            out.status.success(),
            "pg_dump on {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        // Without the version header and the random `\restrict` keys of each dump.
        let text: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| {
                !l.starts_with("-- Dumped")
                    && !l.starts_with("\\restrict")
                    && !l.starts_with("\\unrestrict")
            })
            .map(str::to_string)
            .collect();
        // A digest: a failing comparison stays readable.
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut hasher);
        format!("{} lines, hash {:016x}", text.len(), hasher.finish())
    }

    fn psql(&self, sql: &str) -> String {
        let mut cmd = Command::new(Path::new(PG_BIN).join("psql"));
        cmd.arg("-h").arg(&self.socket).args([
            "-p",
            &self.pg.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-XAtqc",
            sql,
        ]);
        let out = as_postgres(&mut cmd).output().unwrap();
        assert!(
            out.status.success(),
            "psql on {}: {sql}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop();
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// The scratch directory owned by postgres with the strata binary, a repository and
/// strata's configuration (the [`strata_site`] built in it), and etcd: the members'
/// configurations name both.
struct Scratch {
    dir: tempfile::TempDir,
    etcd: EtcdCluster,
}

impl Scratch {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn exe(&self) -> PathBuf {
        self.path("strata")
    }

    /// strata's configuration, written by [`strata_site`].
    fn config(&self) -> PathBuf {
        self.path("strata.toml")
    }

    /// A member of cluster `scope` (configuration written, not started). `bootstrap`:
    /// YAML of the `bootstrap` section's method, if not initdb.
    fn member(&self, scope: &str, name: &str, archive: bool, bootstrap: &str) -> Member {
        let (api, pg) = (free_port(), free_port());
        let data_dir = self.path(&format!("{scope}-{name}"));
        let socket = self.path(&format!("sock-{scope}-{name}"));
        std::fs::create_dir_all(&socket).unwrap();
        chown_to_postgres(&socket);
        let strata = format!(
            "'{}' --config '{}'",
            self.exe().display(),
            self.config().display()
        );
        let archive = match archive {
            true => {
                format!("archive_mode: 'on'\n        archive_command: \"{strata} -q wal-push %p\"")
            }
            false => "archive_mode: 'off'".to_string(),
        };
        let yml = self.path(&format!("{scope}-{name}.yml"));
        std::fs::write(
            &yml,
            format!(
                r#"scope: {scope}
name: {name}
log:
  level: INFO
restapi:
  listen: 127.0.0.1:{api}
  connect_address: 127.0.0.1:{api}
etcd3:
  hosts: {etcd}
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 1
    retry_timeout: 5
    postgresql:
      use_pg_rewind: false
      parameters:
        wal_level: replica
        hot_standby: 'on'
        max_wal_senders: 5
        wal_keep_size: 128MB
        {archive}
{bootstrap}
  initdb:
  - encoding: UTF8
  - data-checksums
  pg_hba:
  - local all all trust
  - host replication replicator 127.0.0.1/32 trust
  - host all all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:{pg}
  connect_address: 127.0.0.1:{pg}
  data_dir: {data}
  bin_dir: {bin}
  pgpass: {pgpass}
  authentication:
    replication:
      username: replicator
      password: rep
    superuser:
      username: postgres
      password: pw
  parameters:
    unix_socket_directories: '{socket}'
  create_replica_methods:
  - strata
  - basebackup
  strata:
    command: "{strata} patroni-replica"
  basebackup:
    checkpoint: fast
  recovery_conf:
    restore_command: "{strata} wal-fetch %f %p"
"#,
                etcd = self.etcd.url(0).trim_start_matches("http://"),
                data = data_dir.display(),
                bin = PG_BIN,
                pgpass = self.path(&format!("pgpass-{scope}-{name}")).display(),
                socket = socket.display(),
            ),
        )
        .unwrap();
        chown_to_postgres(&yml);
        Member {
            name: name.into(),
            yml,
            api,
            pg,
            data_dir,
            socket,
            log: self.path(&format!("{scope}-{name}.log")),
            child: None,
        }
    }
}

/// Writes strata's configuration: nodes m1 and m2 of cluster `demo`, backups from the
/// member Patroni runs as a replica; its commands run as postgres with the copied binary
/// and the password file.
fn strata_site(site_dir: &Path, members: &[&Member], patroni: &str) -> common::Site {
    let mut text = format!(
        "plugin = \"postgres\"\nstate_dir = \"{state}\"\n[password]\nfile = \"{pw}\"\n[storages.local]\npath = \"{repo}\"\n[postgres]\nbackup_from = \"replica\"\nwal_wait_secs = 60\nrecovery_timeout_secs = 120\npatroni = \"{patroni}\"\n",
        state = site_dir.join("state").display(),
        pw = site_dir.join("password").display(),
        repo = site_dir.join("repo").display(),
    );
    for m in members {
        text.push_str(&format!(
            "[[nodes]]\nname = \"{}\"\n[nodes.postgres]\ndata_dir = \"{}\"\nconnect = {{ host = \"{}\", port = {}, user = \"postgres\", dbname = \"postgres\" }}\n",
            m.name,
            m.data_dir.display(),
            m.socket.display(),
            m.pg
        ));
    }
    let site = common::Site::new()
        .whole_config(&text)
        .binary(&site_dir.join("strata"))
        .run_as_postgres()
        .password_file()
        .build_in(site_dir);
    chown_to_postgres(site.config());
    site
}

const DIGEST: &str =
    "SELECT coalesce(md5(string_agg(id || ':' || v, ',' ORDER BY id)), 'none') FROM accounts";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strata_backs_up_rebuilds_and_bootstraps_a_patroni_cluster() {
    if skip_without_postgres() {
        return;
    }
    assert!(
        Path::new(PATRONI).exists(),
        "{PATRONI} is missing: this test needs Debian's patroni (scripts/test.sh installs it)"
    );
    let dir = tempfile::Builder::new()
        .prefix("strata-patroni")
        .tempdir()
        .unwrap();
    std::fs::write(dir.path().join("password"), "patroni test password\n").unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_strata"), dir.path().join("strata")).unwrap();
    let etcd = EtcdCluster::start(1).await;
    let scratch = Scratch { dir, etcd };
    let mut m1 = scratch.member("demo", "m1", true, "");
    let mut m2 = scratch.member("demo", "m2", true, "");
    let mut site = strata_site(scratch.dir.path(), &[&m1, &m2], "");
    chown_to_postgres(scratch.dir.path());
    site.ok(&["init"]);

    // A two-member cluster. m2 is created before any backup exists: strata's replica
    // method fails and Patroni falls back to pg_basebackup.
    m1.start();
    m1.wait_until("leader");
    m2.start();
    m2.wait_until("replica");
    // A standby's backup asks the primary to switch WAL through the standby's
    // primary_conninfo, as Patroni's replication user.
    m1.psql("GRANT EXECUTE ON FUNCTION pg_switch_wal() TO replicator");
    m1.psql("CREATE TABLE accounts (id int PRIMARY KEY, v text); INSERT INTO accounts SELECT g, 'a' || g FROM generate_series(1, 1000) g");

    // A backup from the replica.
    let out = site.ok(&["--json", "backup"]);
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["nodes"][0]["name"], "m2", "{summary:#}");
    assert_eq!(
        summary["nodes"][0]["plugin"]["postgres.from_standby"],
        "true"
    );

    // A switchover, and a backup from the new replica.
    let mut sw = Command::new("/usr/bin/patronictl");
    sw.arg("-c").arg(&m1.yml).args([
        "switchover",
        "--leader",
        "m1",
        "--candidate",
        "m2",
        "--force",
    ]);
    let out = as_postgres(&mut sw).output().unwrap();
    assert!(
        out.status.success(),
        "switchover: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    m2.wait_until("leader");
    m1.wait_until("replica");
    m2.psql("INSERT INTO accounts SELECT g, 'b' || g FROM generate_series(1001, 1500) g");
    let out = site.ok(&["--json", "backup"]);
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["nodes"][0]["name"], "m1", "{summary:#}");

    // A point in time, marked; then more writes.
    let at_target = m2.psql(DIGEST);
    let dump_at_target = m2.dump();
    std::thread::sleep(Duration::from_millis(1200));
    let target = m2.psql("SELECT clock_timestamp()::text");
    std::thread::sleep(Duration::from_millis(1200));
    m2.psql("INSERT INTO accounts SELECT g, 'c' || g FROM generate_series(1501, 1600) g");
    // Archived past the target, so recovery can reach it.
    let segment = m2.psql("SELECT pg_walfile_name(pg_switch_wal())");
    let deadline = Instant::now() + Duration::from_secs(60);
    while m2.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") < segment {
        assert!(Instant::now() < deadline, "{segment} not archived");
        std::thread::sleep(Duration::from_millis(200));
    }

    // m1 rebuilt by Patroni through strata's replica method.
    m1.stop();
    std::fs::remove_dir_all(&m1.data_dir).unwrap();
    m1.start();
    m1.wait_until("replica");
    assert!(
        std::fs::read_to_string(&m1.log)
            .unwrap()
            .contains("replica has been created using strata"),
        "{}",
        tail(&m1.log)
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while m1.psql(DIGEST) != m2.psql(DIGEST) {
        assert!(Instant::now() < deadline, "m1 did not catch up with m2");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(
        m1.dump(),
        m2.dump(),
        "the rebuilt replica dumps as the leader"
    );

    // A new cluster bootstrapped by Patroni through strata at the point in time (it
    // does not archive: its WAL would mix with demo's).
    let strata = format!(
        "'{}' --config '{}'",
        scratch.exe().display(),
        site.config().display()
    );
    let bootstrap = format!(
        "  method: strata\n  strata:\n    command: \"{strata} patroni-bootstrap\"\n    target_time: '{target}'\n    keep_existing_recovery_conf: false\n    recovery_conf:\n      restore_command: \"{strata} wal-fetch %f %p\"\n      recovery_target_time: '{target}'\n      recovery_target_action: promote\n      recovery_target_timeline: current\n"
    );
    let mut n1 = scratch.member("fresh", "n1", false, &bootstrap);
    n1.start();
    n1.wait_until("leader");
    assert_eq!(
        n1.psql(DIGEST),
        at_target,
        "the bootstrapped cluster holds the point in time"
    );
    assert_eq!(
        n1.dump(),
        dump_at_target,
        "and dumps as the source did then"
    );
    n1.stop();

    // demo restored in place to the point in time, from the backup m1 took as a
    // replica, onto the leader m2, with Patroni paused through its REST API. The
    // backup holds m1's Patroni files (its port); m2 keeps its own.
    let second_backup = summary["name"].as_str().unwrap().to_string();
    site = strata_site(
        scratch.dir.path(),
        &[&m1, &m2],
        &format!("http://127.0.0.1:{}", m2.api),
    );
    let refused = site.strata(&["restore", &second_backup, "--target-time", &target]);
    let said = &refused.stderr;
    assert!(
        refused.code != Some(0) && said.contains("--node"),
        "a Patroni cluster is restored onto one member: {said}"
    );
    assert!(m2.get("cluster").get("pause").is_none(), "nothing paused");
    // Onto the replica m1: refused before anything is written (Patroni would demote it
    // once resumed, and m2 would go on serving what it holds), naming the leader.
    let m1_before = m1.psql(DIGEST);
    let refused = site.strata(&[
        "restore",
        &second_backup,
        "--target-time",
        &target,
        "--node",
        "m1",
    ]);
    let said = &refused.stderr;
    assert!(
        refused.code != Some(0)
            && said.contains("replica of the Patroni cluster")
            && said.contains("leader is member m2"),
        "a restore onto a replica is refused: {said}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while m2.get("cluster").get("pause").is_some() {
        assert!(
            Instant::now() < deadline,
            "Patroni was not resumed after the refusal"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    m1.wait_until("replica");
    assert_eq!(m1.psql(DIGEST), m1_before, "m1 untouched");
    let out = site.ok(&[
        "restore",
        &second_backup,
        "--target-time",
        &target,
        "--node",
        "m2",
    ]);
    // The restore ends once the cluster serves it: m2 leads on the new timeline, and m1,
    // left on the abandoned history, was reinitialized (strata's replica method lays down
    // the latest backup and recovers along the new timeline) and follows.
    assert!(
        out.contains("Patroni: m2 leads on timeline") && out.contains("m1 follows"),
        "{out}"
    );
    assert!(out.contains("reinitialized from the leader: m1"), "{out}");
    assert!(m2.get("cluster").get("pause").is_none(), "Patroni resumed");
    assert!(m2.is("leader"));
    assert_eq!(m2.psql(DIGEST), at_target, "m2 holds the point in time");
    assert_eq!(m2.dump(), dump_at_target);
    let auto = std::fs::read_to_string(m2.data_dir.join("postgresql.auto.conf")).unwrap();
    assert!(
        !auto.contains("recovery_target"),
        "no recovery settings left for Patroni to trip on: {auto}"
    );
    let pauses = site.path("state/pauses");
    assert_eq!(
        std::fs::read_dir(&pauses).map(|d| d.count()).unwrap_or(0),
        0,
        "the pause record is gone"
    );
    m2.psql("INSERT INTO accounts VALUES (5000, 'after the restore')");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !(m1.is("replica") && m1.psql(DIGEST) == m2.psql(DIGEST)) {
        assert!(
            Instant::now() < deadline,
            "m1 did not follow the restored leader (replica: {}); its log:\n{}",
            m1.is("replica"),
            std::fs::read_to_string(&m1.log)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("FATAL")
                    || l.contains("LOG:")
                    || l.contains("strata")
                    || l.contains("ERROR"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    m1.stop();
    m2.stop();
}
