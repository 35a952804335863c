//! Real ClickHouse clusters on loopback for the tests: ZooKeeper and SHARDS x REPLICAS
//! servers started by `scripts/clickhouse-cluster.sh` (Debian's clickhouse-server and
//! zookeeperd), stopped on drop, and queries over HTTP that do not go through the code
//! under test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const SERVER: &str = "/usr/sbin/clickhouse-server";

/// One server of a cluster.
#[derive(Debug, Clone)]
pub struct Server {
    /// Its HTTP endpoint.
    pub url: String,
    /// Its data path (`<path>`).
    pub data: PathBuf,
}

/// A ClickHouse cluster and its ZooKeeper, stopped on drop.
pub struct ClickHouseCluster {
    /// The servers: replicas of shard 1 first, then shard 2's, ...
    pub servers: Vec<Server>,
    /// ZooKeeper's `host:port`.
    pub zookeeper: String,
    script: PathBuf,
    /// Configs, data and logs (removed on drop).
    pub dir: tempfile::TempDir,
}

impl Drop for ClickHouseCluster {
    fn drop(&mut self) {
        let _ = Command::new("timeout")
            .arg("60")
            .arg(&self.script)
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

impl ClickHouseCluster {
    /// Starts a cluster of `shards` x `replicas` servers (cluster `strata`, macros
    /// `{shard}` and `{replica}` = `ch1`...). Ports are tried from a few random bases:
    /// the script refuses ports in use.
    pub fn start(shards: usize, replicas: usize) -> ClickHouseCluster {
        assert!(
            Path::new(SERVER).exists(),
            "{SERVER} is missing: these tests need a real ClickHouse (Debian packages clickhouse-server and zookeeperd)"
        );
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../scripts/clickhouse-cluster.sh")
            .canonicalize()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut last = String::new();
        for attempt in 0..8u32 {
            // Below the kernel's ephemeral range, so free_port() never hands these out.
            let base =
                20_000 + (std::process::id() * 7 + attempt * 131) % 120 * 100 + (attempt % 2) * 50;
            let out = Command::new("timeout")
                .arg("120")
                .arg(&script)
                .arg("start")
                .arg(dir.path())
                .arg(base.to_string())
                .args(["--shards", &shards.to_string()])
                .args(["--replicas", &replicas.to_string()])
                .output()
                .unwrap();
            if out.status.success() {
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                let var = |name: &str| {
                    text.lines()
                        .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                        .unwrap_or_else(|| panic!("{name} is not in the script's output: {text}"))
                        .to_string()
                };
                let urls = var("STRATA_TEST_CLICKHOUSE_NODES");
                let data = var("STRATA_TEST_CLICKHOUSE_DATA");
                let servers = urls
                    .split(',')
                    .zip(data.split(','))
                    .map(|(url, data)| Server {
                        url: url.to_string(),
                        data: PathBuf::from(data),
                    })
                    .collect();
                return ClickHouseCluster {
                    servers,
                    zookeeper: var("STRATA_TEST_CLICKHOUSE_ZK"),
                    script,
                    dir,
                };
            }
            last = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if !last.contains("in use") {
                break;
            }
        }
        panic!("the ClickHouse cluster did not start: {last}");
    }
}

impl ClickHouseCluster {
    /// Kills the cluster's ZooKeeper (SIGKILL: a coordination service lost, its data kept).
    pub fn kill_zookeeper(&self) {
        self.zookeeper_script("zk-kill");
    }

    /// Starts ZooKeeper again after [`kill_zookeeper`](Self::kill_zookeeper), on its port and
    /// data; returns once it answers (60 s at most).
    pub fn start_zookeeper(&self) {
        self.zookeeper_script("zk-start");
    }

    fn zookeeper_script(&self, what: &str) {
        let out = Command::new("timeout")
            .arg("90")
            .arg(&self.script)
            .arg(what)
            .arg(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{what}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Runs `sql` on the server at `url` (POST body); panics with ClickHouse's message on an
/// error. Returns the answer's text.
pub fn query(url: &str, sql: &str) -> String {
    query_with(url, sql, "")
}

/// [`query`] with settings for this query (`name=value&...`).
pub fn query_with(url: &str, sql: &str, settings: &str) -> String {
    try_query_with(url, sql, settings).unwrap_or_else(|why| panic!("{sql}: {why}"))
}

/// ClickHouse's answer to a query it refused (its message, or curl's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Runs `sql`; ClickHouse's message when it fails.
pub fn try_query(url: &str, sql: &str) -> Result<String, Refused> {
    try_query_with(url, sql, "")
}

fn try_query_with(url: &str, sql: &str, settings: &str) -> Result<String, Refused> {
    try_query_for(url, sql, settings, Duration::from_secs(120))
}

/// [`try_query`] that gives up after `limit` (a poll that must not outlive its deadline).
pub fn try_query_within(url: &str, sql: &str, limit: Duration) -> Result<String, Refused> {
    try_query_for(url, sql, "", limit)
}

fn try_query_for(url: &str, sql: &str, settings: &str, limit: Duration) -> Result<String, Refused> {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            &format!("{:.1}", limit.as_secs_f64()),
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
        ])
        .arg("--data-binary")
        .arg(sql)
        .arg(format!("{url}/?wait_end_of_query=1&{settings}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or((&text, ""));
    match status {
        "200" => Ok(body.trim_end().to_string()),
        _ => Err(Refused(format!(
            "{body}{}",
            String::from_utf8_lossy(&out.stderr)
        ))),
    }
}

/// Polls `sql` on `url` until it answers `want` (bounded: 60 s); returns the last answer.
pub fn wait_for_answer(url: &str, sql: &str, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = query(url, sql);
        if got == want || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A current ClickHouse engine on loopback, single node: chdb (PyPI `chdb-core`,
/// ClickHouse's engine as a library) behind ClickHouse's HTTP interface
/// (`scripts/chdb-server.py`), its data in a directory of its own. Stopped on drop.
pub struct ModernServer {
    /// Its endpoint and data path.
    pub server: Server,
    /// A directory holding `clickhouse-server`, which starts this engine from a server
    /// config: first in `PATH`, the restore drill's scratch server is this engine.
    pub bin: PathBuf,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for ModernServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ModernServer {
    /// The test Python when it has chdb (`STRATA_TEST_PYTHON`, from
    /// scripts/install-test-servers.sh). Without it: a panic under
    /// `STRATA_REQUIRE_TOOLS`, else `None` and a SKIPPED line.
    pub fn python() -> Option<PathBuf> {
        crate::python_with("chdb").map(PathBuf::from)
    }

    /// Starts the engine with `python` on a free loopback port; waits (60 s at most)
    /// until it answers.
    pub fn start(python: &Path) -> ModernServer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../scripts/chdb-server.py")
            .canonicalize()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let wrapper = bin.join("clickhouse-server");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec '{}' '{}' \"$@\"\n",
                python.display(),
                script.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let port = crate::net::free_port();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new(python)
            .arg(&script)
            .arg("--path")
            .arg(&data)
            .arg("--port")
            .arg(port.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut modern = ModernServer {
            server: Server {
                url: format!("http://127.0.0.1:{port}"),
                data,
            },
            bin,
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while try_query(&modern.server.url, "SELECT 1").is_err() {
            if let Ok(Some(status)) = modern.child.try_wait() {
                panic!(
                    "the chdb server exited ({status}): {}",
                    std::fs::read_to_string(modern._dir.path().join("server.log"))
                        .unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the chdb server did not answer within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        modern
    }

    /// `PATH` with [`ModernServer::bin`] first.
    pub fn path_with_bin(&self) -> std::ffi::OsString {
        let old = std::env::var_os("PATH").unwrap_or_default();
        let dirs = std::iter::once(self.bin.clone()).chain(std::env::split_paths(&old));
        std::env::join_paths(dirs).unwrap()
    }
}
