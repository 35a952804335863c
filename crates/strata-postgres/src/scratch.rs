//! A temporary PostgreSQL server on a restored copy in scratch space, for restore drills
//! ([`crate::proof`]) and for bringing tables back ([`crate::tables`]).
//!
//! It runs nothing of the source and can never touch the live cluster: it starts from
//! a configuration file strata writes into the scratch space (`config_file` on its
//! command line), holding only the settings of [`SETTINGS`], the values recovery needs
//! from the copy's control file ([`CONTROL_SETTINGS`]) and the caller's (a restore
//! command, a recovery target); every other setting is PostgreSQL's default. The copy's
//! `postgresql.conf` is never read, and its `postgresql.auto.conf` (which PostgreSQL
//! reads from the data directory whatever `config_file` says) is removed from the copy
//! before the start. An allow-list, not a deny-list: a setting of the source's that
//! loads code (`shared_preload_libraries`, `jit_provider`, ...), runs a command
//! (`archive_command`, ...), points elsewhere (`primary_conninfo`, ...) or was sized for
//! the source's host (`huge_pages`, `shared_buffers`, ...) is not there to be missed.
//! Authentication is a scratch `pg_hba.conf` that admits local socket connections only,
//! and it runs as the data directory's owner (PostgreSQL refuses root).

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

/// The settings every scratch server starts with besides where it reads and writes
/// (its socket, port, log and authentication files in the scratch space): nothing is
/// archived, no command is run, no library is preloaded, nothing is followed or waited
/// for, messages are in English (strata reads `pg_amcheck`'s) and times without a zone
/// are UTC. [`Scratch::start`]'s own settings (the restore command and recovery target
/// of a table restore) replace these where they name the same one.
pub const SETTINGS: &[(&str, &str)] = &[
    ("listen_addresses", ""),
    ("external_pid_file", ""),
    ("logging_collector", "off"),
    ("log_destination", "stderr"),
    ("archive_mode", "off"),
    ("hot_standby", "on"),
    ("lc_messages", "C"),
    ("timezone", "UTC"),
];

/// The settings recovery of a copy needs at least the source's values of (PostgreSQL
/// refuses or pauses a hot standby with fewer, and will not start on slots with a
/// lower `wal_level`): taken from the copy's control file (`pg_controldata`), never from
/// its configuration. Each is `(setting, pg_controldata's label)`.
pub const CONTROL_SETTINGS: &[(&str, &str)] = &[
    ("wal_level", "wal_level setting:"),
    ("max_connections", "max_connections setting:"),
    ("max_worker_processes", "max_worker_processes setting:"),
    ("max_wal_senders", "max_wal_senders setting:"),
    ("max_prepared_transactions", "max_prepared_xacts setting:"),
    ("max_locks_per_transaction", "max_locks_per_xact setting:"),
    ("track_commit_timestamp", "track_commit_timestamp setting:"),
];

/// The values of [`CONTROL_SETTINGS`] in `pg_controldata`'s output (run with `LC_ALL=C`):
/// only numbers and plain words (`replica`, `on`) are taken.
fn control_settings(text: &str) -> Vec<(&'static str, String)> {
    CONTROL_SETTINGS
        .iter()
        .filter_map(|(setting, label)| {
            let value = text
                .lines()
                .find_map(|line| line.trim().strip_prefix(label))?
                .trim();
            let plain = !value.is_empty()
                && value.len() <= 32
                && value
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            plain.then(|| (*setting, value.to_string()))
        })
        .collect()
}

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
        // PostgreSQL reads the data directory's postgresql.auto.conf (the source's ALTER
        // SYSTEM settings) after any config_file: the copy's is removed.
        let auto = data_dir.join("postgresql.auto.conf");
        match std::fs::symlink_metadata(&auto) {
            Ok(meta) if meta.is_dir() => {
                std::fs::remove_dir_all(&auto).map_err(io("cannot remove", &auto))?
            }
            Ok(_) => std::fs::remove_file(&auto).map_err(io("cannot remove", &auto))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(PgError::io("cannot read", auto.clone())(e)),
        }
        for path in [work, &hba, &ident] {
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

    /// The configuration file the server starts from: [`SETTINGS`], its paths in the
    /// scratch space, [`CONTROL_SETTINGS`] from the copy's control file, then `settings`
    /// (replacing any of those of the same name).
    pub fn config(&self, settings: &[(&str, String)]) -> Vec<(String, String)> {
        let path = |p: &Path| p.display().to_string();
        let mut options: Vec<(String, String)> = vec![
            ("hba_file".into(), path(&self.work.join("pg_hba.conf"))),
            ("ident_file".into(), path(&self.work.join("pg_ident.conf"))),
            ("port".into(), self.port.to_string()),
            ("unix_socket_directories".into(), path(&self.work)),
        ];
        options.extend(SETTINGS.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let control = self
            .tool("pg_controldata")
            .env("LC_ALL", "C")
            .arg("-D")
            .arg(&self.data_dir)
            .output();
        if let Some(out) = control.ok().filter(|o| o.status.success()) {
            options.extend(
                control_settings(&String::from_utf8_lossy(&out.stdout))
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v)),
            );
        }
        for (key, value) in settings {
            options.retain(|(k, _)| k != key);
            options.push((key.to_string(), value.clone()));
        }
        options
    }

    /// Starts the server from a configuration file of [`Scratch::config`]`(settings)`
    /// (nothing of the copy's own), waiting up to `timeout` until it accepts
    /// connections.
    pub fn start(&self, settings: &[(&str, String)], timeout: Duration) -> PgResult<()> {
        let file = self.work.join("postgresql.conf");
        let mut text = String::from(
            "# Written by strata for a scratch server: nothing of the source's configuration is read.\n",
        );
        for (key, value) in self.config(settings) {
            text.push_str(&format!(
                "{key} = {}\n",
                strata_pgclient::quote_config_value(&value)
            ));
        }
        {
            use std::os::unix::fs::OpenOptionsExt;
            let _ = std::fs::remove_file(&file);
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&file)
                .map_err(PgError::io("cannot create", file.clone()))?;
            std::io::Write::write_all(&mut out, text.as_bytes())
                .map_err(PgError::io("cannot write", file.clone()))?;
        }
        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::chown(&file, Some(self.owner.0), Some(self.owner.1))
                .map_err(PgError::io("cannot set the owner of", file.clone()))?;
        }
        // `pg_ctl -o` hands these to a shell: each `key=value` one single-quoted word.
        let line: Vec<String> = [
            ("config_file", file.display().to_string()),
            ("data_directory", self.data_dir.display().to_string()),
        ]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_settings_take_plain_values_only() {
        let text = "pg_control version number:            1300\n\
                    wal_level setting:                    logical\n\
                    max_connections setting:              500\n\
                    max_worker_processes setting:         8\n\
                    max_wal_senders setting:              '; rm -rf /\n\
                    max_locks_per_xact setting:           64\n";
        assert_eq!(
            control_settings(text),
            vec![
                ("wal_level", "logical".to_string()),
                ("max_connections", "500".to_string()),
                ("max_worker_processes", "8".to_string()),
                ("max_locks_per_transaction", "64".to_string()),
            ]
        );
    }
}
