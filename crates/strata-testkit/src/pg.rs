//! Real PostgreSQL 15 servers for the tests: initdb'd into scratch directories, each on
//! its own port and socket directory, run as the `postgres` user when the tests run as
//! root (initdb and postgres refuse root); and [`PgSite`], a running server in a scratch
//! directory, which the PostgreSQL, PgQ, Londiste and table-retention tests build on.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use crate::net::free_port;

/// Debian's PostgreSQL 15.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Whether PostgreSQL 15 is installed.
pub fn pg_available() -> bool {
    Path::new(PG_BIN).join("initdb").exists() && Path::new(PG_BIN).join("pgbench").exists()
}

/// Whether a test must skip for want of PostgreSQL 15 (loudly). `scripts/test.sh`
/// installs it and sets `STRATA_REQUIRE_POSTGRES`, which turns a skip into a failure.
pub fn skip_without_postgres() -> bool {
    if pg_available() {
        return false;
    }
    assert!(
        std::env::var_os("STRATA_REQUIRE_POSTGRES").is_none(),
        "PostgreSQL 15 is not installed in {PG_BIN}"
    );
    eprintln!("SKIPPED: PostgreSQL 15 is not installed (scripts/test.sh installs it)");
    true
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// uid and gid of the postgres user.
fn postgres_ids() -> (u32, u32) {
    let out = Command::new("getent")
        .args(["passwd", "postgres"])
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let fields: Vec<&str> = line.trim().split(':').collect();
    assert!(fields.len() > 3, "no postgres user: {line:?}");
    (fields[2].parse().unwrap(), fields[3].parse().unwrap())
}

/// Runs `cmd` as postgres when the tests run as root.
pub fn as_postgres(cmd: &mut Command) -> &mut Command {
    if is_root() {
        let (uid, gid) = postgres_ids();
        cmd.uid(uid).gid(gid).env("HOME", "/tmp");
    }
    cmd
}

/// Gives `path` (recursively) to postgres, and makes its parents passable.
pub fn chown_to_postgres(path: &Path) {
    if !is_root() {
        return;
    }
    let status = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d.starts_with("/tmp") && d != Path::new("/tmp") {
            let _ = std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755));
        }
        dir = d.parent();
    }
}

fn run(cmd: &mut Command) -> Result<String, ToolFailed> {
    let out = as_postgres(cmd).output().map_err(ToolFailed::Spawn)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(ToolFailed::Exited {
            program: cmd.get_program().to_os_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        })
    }
}

/// A PostgreSQL program that could not be started or ended with a failure.
#[derive(Debug)]
pub enum ToolFailed {
    /// It could not be started.
    Spawn(std::io::Error),
    /// It ended with a failure status; what it printed (stdout, then stderr).
    Exited {
        /// The program.
        program: std::ffi::OsString,
        /// Its output.
        output: String,
    },
}

impl std::fmt::Display for ToolFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ToolFailed::Spawn(e) => write!(f, "{e}"),
            ToolFailed::Exited { program, output } => write!(f, "{program:?} failed: {output}"),
        }
    }
}

impl std::error::Error for ToolFailed {}

/// A server that did not come up: why, and the end of its log.
#[derive(Debug)]
pub struct NotStarted {
    /// What `pg_ctl start` said.
    pub why: ToolFailed,
    /// The last lines of the server's log.
    pub log_tail: String,
}

impl std::fmt::Display for NotStarted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\n{}", self.why, self.log_tail)
    }
}

impl std::error::Error for NotStarted {}

fn pg(tool: &str) -> Command {
    Command::new(Path::new(PG_BIN).join(tool))
}

/// One PostgreSQL server (running or not) on a data directory.
pub struct PgServer {
    /// Its data directory (`PGDATA`).
    pub data_dir: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Where its Unix socket is (a short private directory).
    pub socket_dir: PathBuf,
    /// Its server log.
    pub log: PathBuf,
    _socket: tempfile::TempDir,
}

impl PgServer {
    /// A server object for `data_dir` (created empty if missing) with its own port and
    /// socket directory; nothing is initialised or started.
    pub fn vacant(data_dir: &Path) -> PgServer {
        std::fs::create_dir_all(data_dir).unwrap();
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        // Short: a Unix socket path must stay under 108 bytes.
        let socket = tempfile::Builder::new()
            .prefix("pgs")
            .tempdir_in("/tmp")
            .unwrap();
        chown_to_postgres(socket.path());
        chown_to_postgres(data_dir);
        let log = data_dir.with_extension("log");
        PgServer {
            data_dir: data_dir.to_path_buf(),
            port: free_port(),
            socket_dir: socket.path().to_path_buf(),
            log,
            _socket: socket,
        }
    }

    /// initdb into `data_dir` with settings fit for tests that archive WAL and stream.
    pub fn init(data_dir: &Path) -> PgServer {
        PgServer::init_with(data_dir, &[])
    }

    /// [`PgServer::init`] with more initdb arguments (`--waldir=...`).
    pub fn init_with(data_dir: &Path, initdb_args: &[&str]) -> PgServer {
        let server = PgServer::vacant(data_dir);
        run(pg("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--data-checksums",
                "--no-locale",
                "-E",
                "UTF8",
            ])
            .args(initdb_args)
            .arg("-D")
            .arg(data_dir))
        .unwrap();
        server.set_conf(&format!(
            "port = {}\nunix_socket_directories = '{}'\nlisten_addresses = ''\nwal_level = replica\nmax_wal_senders = 5\narchive_mode = on\narchive_command = '/bin/true'\nfsync = off\nshared_buffers = 32MB\nmax_connections = 30\nhot_standby = on\nwal_keep_size = 256MB\ncheckpoint_timeout = 30min\nlog_min_messages = warning\n",
            server.port,
            server.socket_dir.display()
        ));
        server
    }

    /// Appends settings to postgresql.conf.
    pub fn set_conf(&self, settings: &str) {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.data_dir.join("postgresql.conf"))
            .unwrap();
        writeln!(file, "{settings}").unwrap();
    }

    /// Starts the server; `Err` with the log's end when it does not come up.
    pub fn try_start(&self) -> Result<(), NotStarted> {
        run(pg("pg_ctl")
            .args(["start", "-w", "-t", "120", "-D"])
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log)
            .stdout(Stdio::null()))
        .map(|_| ())
        .map_err(|why| NotStarted {
            why,
            log_tail: self.log_tail(),
        })
    }

    /// Starts it and waits until it accepts connections; panics if it cannot.
    pub fn start(&self) {
        self.try_start().unwrap();
    }

    /// Fast shutdown (sessions are ended); quiet when it is not running.
    pub fn stop(&self) {
        let _ = run(pg("pg_ctl")
            .args(["stop", "-m", "fast", "-w", "-D"])
            .arg(&self.data_dir));
    }

    /// Whether `pg_ctl status` says it runs.
    pub fn is_running(&self) -> bool {
        run(pg("pg_ctl").arg("status").arg("-D").arg(&self.data_dir)).is_ok()
    }

    fn psql_command(&self, db: &str, sql: &str) -> Command {
        let mut cmd = pg("psql");
        cmd.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.socket_dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ]);
        cmd
    }

    /// Runs SQL as `postgres` in database `db`; `Err` holds psql's error output.
    // String: psql's own words, which tests read as text (`unterminated CSV quoted field`).
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        run(&mut self.psql_command(db, sql)).map_err(|e| e.to_string())
    }

    /// Runs SQL, returns its output (unaligned, tuples only); panics on error.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql).unwrap()
    }

    /// Creates database `db` and fills it with pgbench's tables at `scale`.
    pub fn pgbench_init(&self, db: &str, scale: u32) {
        self.psql("postgres", &format!("CREATE DATABASE {db}"));
        run(pg("pgbench")
            .args(["-i", "-q", "-s", &scale.to_string(), "-h"])
            .arg(&self.socket_dir)
            .args(["-p", &self.port.to_string(), "-U", "postgres", db]))
        .unwrap();
    }

    /// pgbench writing for `secs` seconds in the background.
    pub fn pgbench_spawn(&self, db: &str, secs: u32) -> Child {
        let mut cmd = pg("pgbench");
        cmd.args(["-n", "-c", "2", "-j", "1", "-T", &secs.to_string(), "-h"])
            .arg(&self.socket_dir)
            .args(["-p", &self.port.to_string(), "-U", "postgres", db])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        as_postgres(&mut cmd).spawn().unwrap()
    }

    /// md5 over every user table's rows in a fixed order, by table: equal checksums mean
    /// equal data.
    pub fn table_checksums(&self, db: &str) -> BTreeMap<String, String> {
        let tables = self.psql(
            db,
            "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
        );
        tables
            .lines()
            .filter(|t| !t.is_empty())
            .map(|table| {
                let sum = self.psql(
                    db,
                    &format!("SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM {table} t"),
                );
                (table.to_string(), sum)
            })
            .collect()
    }

    /// A streaming standby of this server in `data_dir` (pg_basebackup -R), not started.
    pub fn make_standby(&self, data_dir: &Path) -> PgServer {
        let standby = PgServer::vacant(data_dir);
        run(pg("pg_basebackup")
            .args(["-R", "-X", "stream", "-c", "fast", "-h"])
            .arg(&self.socket_dir)
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-D"])
            .arg(data_dir))
        .unwrap();
        standby.set_conf(&format!(
            "port = {}\nunix_socket_directories = '{}'\n",
            standby.port,
            standby.socket_dir.display()
        ));
        standby
    }

    /// Waits until `SELECT 1` answers.
    pub fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.try_psql("postgres", "SELECT 1").is_err() {
            assert!(
                Instant::now() < deadline,
                "server not ready:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The end of the server log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = run(pg("pg_ctl")
            .args(["stop", "-m", "immediate", "-D"])
            .arg(&self.data_dir));
    }
}

/// A running PostgreSQL server in a scratch directory owned by postgres (its data in
/// `dir/data`, its log beside it): the base every PostgreSQL-backed test site wraps.
pub struct PgSite {
    // Fields drop in order: the server stops before its data directory is removed (the
    // other way round `pg_ctl stop` finds no directory and the server outlives the test).
    /// The server.
    pub pg: PgServer,
    /// The scratch directory holding its data and log.
    pub dir: tempfile::TempDir,
}

impl PgSite {
    /// initdb and start a server in a fresh directory named `prefix...` under the temp dir.
    pub fn new(prefix: &str) -> PgSite {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
        // The server writes its log beside its data directory.
        chown_to_postgres(dir.path());
        let pg = PgServer::init(&dir.path().join("data"));
        pg.start();
        PgSite { pg, dir }
    }

    /// A path in the scratch directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A site (see [`PgSite::new`]) with databases `dbs`, each with `extensions`.
    pub fn with_databases(prefix: &str, dbs: &[&str], extensions: &[&str]) -> PgSite {
        let site = PgSite::new(prefix);
        for db in dbs {
            site.create_database(db, extensions);
        }
        site
    }

    /// A client of database `db`.
    pub async fn client(&self, db: &str) -> strata_pgclient::Client {
        strata_pgclient::Dsn::parse(&self.dsn(db))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// Creates database `db` with `extensions` (`"pgq"`, `"londiste cascade"`).
    pub fn create_database(&self, db: &str, extensions: &[&str]) {
        self.pg.psql("postgres", &format!("create database {db}"));
        for extension in extensions {
            self.pg.psql(db, &format!("create extension {extension}"));
        }
    }

    /// The connection string without a database: host (the socket directory), port, user.
    pub fn base_connstr(&self) -> String {
        format!(
            "host={} port={} user=postgres",
            self.pg.socket_dir.display(),
            self.pg.port
        )
    }

    /// The connection string of database `db`.
    pub fn dsn(&self, db: &str) -> String {
        format!("{} dbname={db}", self.base_connstr())
    }
}
