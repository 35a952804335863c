//! A temporary PostgreSQL server on a restored copy in scratch space, for restore drills
//! ([`crate::proof`]) and for bringing tables back ([`crate::tables`]).
//!
//! It can never touch the live cluster: every setting that says where it reads and
//! writes is given on its command line, which wins over any configuration file the
//! backup holds (`data_directory`, `config_file`, `hba_file`, `ident_file`, its own port
//! and Unix socket in the scratch space, no TCP listener, no archiving, no replication,
//! no external pid file), authentication is a scratch `pg_hba.conf` that admits local
//! socket connections only, and it runs as the data directory's owner (PostgreSQL
//! refuses root).
//!
//! Nor does it run anything the source's configuration names ([`OVERRIDDEN`]): every
//! setting that runs a shell command (`archive_command`, `archive_cleanup_command`,
//! `recovery_end_command`, `restore_command`, `ssl_passphrase_command`) is emptied (the
//! restore command is strata's own where recovery needs one), and no library is
//! preloaded (`shared_preload_libraries`, `session_preload_libraries`,
//! `local_preload_libraries`, `archive_library`): a background worker of the source
//! (a job scheduler, a replication agent) never starts in a copy. Settings that would
//! stall or misdirect the copy (a synchronous standby to wait for, a recovery target or
//! apply delay left in the source's configuration, read-only transactions, SSL files
//! the copy does not hold) are reset too.

use crate::{PgError, PgResult};

/// Why a scratch server cannot be had, or its `pg_ctl` failed.
#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    /// This host has no binaries of the data directory's major version.
    #[error("no PostgreSQL {version} binaries at {} on this host", bin.display())]
    NoBinaries {
        /// The major version of the data directory.
        version: String,
        /// Where the binaries were looked for.
        bin: PathBuf,
    },
    /// A file of the data directory cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why not.
        source: std::io::Error,
    },
    /// The data directory cannot be looked at.
    #[error("{}: {source}", path.display())]
    NoDataDir {
        /// The data directory.
        path: PathBuf,
        /// Why not.
        source: std::io::Error,
    },
    /// `pg_ctl` could not be started.
    #[error("cannot run {tool}: {source}")]
    Spawn {
        /// The program, as named.
        tool: String,
        /// Why not.
        source: std::io::Error,
    },
    /// `pg_ctl` ended with a failure status.
    #[error("{command} exited with {status}: {stderr}")]
    Exited {
        /// `pg_ctl` and its action (`pg_ctl stop`).
        command: String,
        /// How it ended.
        status: std::process::ExitStatus,
        /// What it printed on stderr, trimmed.
        stderr: String,
    },
}
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A scratch server's directories and identity (started by [`Scratch::start`]).
#[derive(Debug, Clone)]
pub struct Scratch {
    /// The PostgreSQL binaries of the copy's major version.
    pub bin: PathBuf,
    /// The restored data directory.
    pub data_dir: PathBuf,
    /// The scratch space: socket, log, authentication files.
    pub work: PathBuf,
    /// The number in the socket's name.
    pub port: u16,
    /// The data directory's owner (uid, gid): the server and the tools run as it.
    pub owner: (u32, u32),
    /// The owner's name: the bootstrap superuser when `initdb` ran as it.
    pub user: String,
    /// The server's log.
    pub log: PathBuf,
}

/// The settings every scratch server starts with whatever the source's configuration
/// says (its `postgresql.conf`, `postgresql.auto.conf` and their includes): nothing the
/// source would run or load runs in the copy. [`Scratch::start`]'s own settings (the
/// restore command and recovery target of a table restore) replace these where they name
/// the same one.
pub const OVERRIDDEN: &[(&str, &str)] = &[
    // Commands the server runs through a shell.
    ("archive_mode", "off"),
    ("archive_command", ""),
    ("archive_cleanup_command", ""),
    ("recovery_end_command", ""),
    ("restore_command", ""),
    ("ssl_passphrase_command", ""),
    // Code the server loads: no library of the source's (strata's checks need none
    // preloaded; `amcheck` is loaded on demand).
    ("shared_preload_libraries", ""),
    ("session_preload_libraries", ""),
    ("local_preload_libraries", ""),
    ("archive_library", ""),
    // Nothing to follow, wait for or stop at but what strata asks.
    ("primary_conninfo", ""),
    ("primary_slot_name", ""),
    ("recovery_target", ""),
    ("recovery_target_name", ""),
    ("recovery_target_time", ""),
    ("recovery_target_xid", ""),
    ("recovery_target_lsn", ""),
    ("recovery_target_action", "pause"),
    ("recovery_min_apply_delay", "0"),
    ("synchronous_standby_names", ""),
    ("default_transaction_read_only", "off"),
    ("ssl", "off"),
];

/// The name of user `uid` (`/etc/passwd`).
fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id: u32 = fields.nth(1)?.parse().ok()?;
        (id == uid).then(|| name.to_string())
    })
}

/// A free loopback TCP port number, for the socket's name (the server listens on its
/// Unix socket only).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(54329)
}

impl Scratch {
    /// Prepares `data_dir` (a restored copy, the server not running) to be started with
    /// `work` as its scratch space. `Ok(Err(why))` when this host cannot start it (no
    /// binaries of its version).
    pub fn prepare(
        data_dir: &Path,
        work: &Path,
        bin: Option<&Path>,
    ) -> PgResult<Result<Scratch, ScratchError>> {
        let io = |what: &str, path: &Path| PgError::io(what.to_string(), path.to_path_buf());
        let version = std::fs::read_to_string(data_dir.join("PG_VERSION"))
            .map_err(io("cannot read", &data_dir.join("PG_VERSION")))?
            .trim()
            .to_string();
        let bin = bin
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(format!("/usr/lib/postgresql/{version}/bin")));
        if !bin.join("pg_ctl").exists() {
            return Ok(Err(ScratchError::NoBinaries { version, bin }));
        }
        let meta = std::fs::metadata(data_dir).map_err(io("cannot read", data_dir))?;
        let owner = (meta.uid(), meta.gid());
        let root = rustix::process::geteuid().is_root();
        std::fs::create_dir_all(work).map_err(io("cannot create", work))?;
        let hba = work.join("pg_hba.conf");
        std::fs::write(&hba, "local all all trust\n").map_err(io("cannot write", &hba))?;
        let ident = work.join("pg_ident.conf");
        std::fs::write(&ident, "").map_err(io("cannot write", &ident))?;
        let conf = data_dir.join("postgresql.conf");
        if !conf.exists() {
            // Debian keeps it in /etc: an empty one here; what matters is on the command
            // line.
            std::fs::write(&conf, "").map_err(io("cannot write", &conf))?;
        }
        for path in [work, &hba, &ident, &conf] {
            if root {
                std::os::unix::fs::chown(path, Some(owner.0), Some(owner.1))
                    .map_err(io("cannot set the owner of", path))?;
            }
        }
        for stale in [
            "postmaster.pid",
            "postmaster.opts",
            "recovery.signal",
            "standby.signal",
        ] {
            let _ = std::fs::remove_file(data_dir.join(stale));
        }
        Ok(Ok(Scratch {
            bin,
            data_dir: data_dir.to_path_buf(),
            work: work.to_path_buf(),
            port: free_port(),
            user: user_name(owner.0).unwrap_or_else(|| "postgres".into()),
            owner,
            log: work.join("server.log"),
        }))
    }

    /// The major version of the copy (`15`; `9` for 9.x).
    pub fn major(&self) -> u32 {
        major_version(&self.data_dir).unwrap_or(0)
    }

    /// `tool` of the binaries, run as the owner.
    pub fn tool(&self, tool: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(tool));
        if rustix::process::geteuid().is_root() {
            cmd.uid(self.owner.0).gid(self.owner.1);
        }
        cmd.env("HOME", &self.work);
        cmd
    }

    /// `tool` connected to the running scratch server as the superuser (`-h -p -U`).
    pub fn client(&self, tool: &str) -> Command {
        let mut cmd = self.tool(tool);
        cmd.arg("-h")
            .arg(&self.work)
            .args(["-p", &self.port.to_string(), "-U", &self.user]);
        cmd
    }

    /// Starts the server with `settings` added to the fixed ones (a restore command and
    /// recovery target, say), waiting up to `timeout` until it accepts connections.
    pub fn start(&self, settings: &[(&str, String)], timeout: Duration) -> PgResult<()> {
        let path = |p: &Path| p.display().to_string();
        let mut options: Vec<(&str, String)> = vec![
            ("data_directory", path(&self.data_dir)),
            ("config_file", path(&self.data_dir.join("postgresql.conf"))),
            ("hba_file", path(&self.work.join("pg_hba.conf"))),
            ("ident_file", path(&self.work.join("pg_ident.conf"))),
            ("port", self.port.to_string()),
            ("listen_addresses", String::new()),
            ("unix_socket_directories", path(&self.work)),
            ("logging_collector", "off".into()),
            ("log_destination", "stderr".into()),
            ("external_pid_file", String::new()),
        ];
        options.extend(
            OVERRIDDEN
                .iter()
                .filter(|(key, _)| *key != "archive_library" || self.major() >= 15)
                .map(|(key, value)| (*key, value.to_string())),
        );
        for (key, value) in settings {
            options.retain(|(k, _)| k != key);
            options.push((key, value.clone()));
        }
        // `pg_ctl -o` hands these to a shell: each `key=value` one single-quoted word.
        let line: Vec<String> = options
            .iter()
            .map(|(k, v)| format!("-c '{}'", format!("{k}={v}").replace('\'', "'\\''")))
            .collect();
        let secs = timeout.as_secs().max(1).to_string();
        self.pg_ctl(&["start", "-w", "-t", &secs, "-o", &line.join(" ")])
            .map_err(|why| {
                PgError::Refused(format!(
                    "the scratch server did not start: {why}: {}",
                    self.log_tail(10)
                ))
            })
    }

    /// Waits until the server is out of recovery (promoted), within `timeout`; a future
    /// that can be dropped between polls (a SIGTERM's cancellation).
    pub async fn wait_promoted(&self, timeout: Duration) -> PgResult<()> {
        let started = Instant::now();
        loop {
            let out = self
                .client("psql")
                .args(["-d", "postgres", "-Atc", "SELECT pg_is_in_recovery()"])
                .output();
            if let Ok(out) = out {
                if String::from_utf8_lossy(&out.stdout).trim() == "f" {
                    return Ok(());
                }
            }
            if started.elapsed() > timeout {
                return Err(PgError::Refused(format!(
                    "the scratch server did not end recovery within {} s: {}",
                    timeout.as_secs(),
                    self.log_tail(10)
                )));
            }
            if !self.running() {
                return Err(PgError::Refused(format!(
                    "the scratch server stopped during recovery: {}",
                    self.log_tail(10)
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether the server runs.
    pub fn running(&self) -> bool {
        self.tool("pg_ctl")
            .arg("status")
            .arg("-D")
            .arg(&self.data_dir)
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Stops the server (fast), if it runs.
    pub fn stop(&self) -> PgResult<()> {
        if !self.running() {
            return Ok(());
        }
        self.pg_ctl(&["stop", "-m", "fast", "-w", "-t", "60"])
            .map_err(|why| PgError::Refused(format!("the scratch server did not stop: {why}")))
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), ScratchError> {
        let out = self
            .tool("pg_ctl")
            .args(args)
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log)
            .output()
            .map_err(|source| ScratchError::Spawn {
                tool: "pg_ctl".into(),
                source,
            })?;
        match out.status.success() {
            true => Ok(()),
            false => Err(ScratchError::Exited {
                command: format!("pg_ctl {}", args[0]),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            }),
        }
    }

    /// The last lines of the server's log, for an error line.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join(" | ")
    }
}

/// The major version in `data_dir/PG_VERSION`.
fn major_version(data_dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(data_dir.join("PG_VERSION")).ok()?;
    text.trim().split('.').next()?.parse().ok()
}

/// Stops at once (`pg_ctl stop -m immediate`, as the data directory's owner) a server
/// running on `data_dir` that its starter left behind (a strata process that was killed):
/// `Ok(true)` when one ran and is stopped, `Ok(false)` when none runs there. The copy is
/// thrown away, so nothing of it needs to be written out.
pub fn stop_leftover(data_dir: &Path) -> Result<bool, ScratchError> {
    if !data_dir.join("postmaster.pid").exists() {
        return Ok(false);
    }
    let version = std::fs::read_to_string(data_dir.join("PG_VERSION")).map_err(|source| {
        ScratchError::Unreadable {
            path: data_dir.join("PG_VERSION"),
            source,
        }
    })?;
    let bin = PathBuf::from(format!("/usr/lib/postgresql/{}/bin", version.trim()));
    let meta = std::fs::metadata(data_dir).map_err(|source| ScratchError::NoDataDir {
        path: data_dir.to_path_buf(),
        source,
    })?;
    let pg_ctl = |args: &[&str]| {
        let mut cmd = Command::new(bin.join("pg_ctl"));
        if rustix::process::geteuid().is_root() {
            cmd.uid(meta.uid()).gid(meta.gid());
        }
        cmd.env("HOME", data_dir)
            .args(args)
            .arg("-D")
            .arg(data_dir)
            .output()
            .map_err(|source| ScratchError::Spawn {
                tool: bin.join("pg_ctl").display().to_string(),
                source,
            })
    };
    if !pg_ctl(&["status"])?.status.success() {
        return Ok(false);
    }
    let out = pg_ctl(&["stop", "-m", "immediate", "-w", "-t", "60"])?;
    match out.status.success() {
        true => Ok(true),
        false => Err(ScratchError::Exited {
            command: "pg_ctl stop".into(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }),
    }
}

/// Stops a scratch server when dropped (an error or a panic on the way).
pub struct StopOnDrop<'a>(pub &'a Scratch);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.stop();
    }
}
