//! Proving that a restored base backup is a sound database, for restore drills
//! (`strata verify --restore`): the copy in scratch space is started, recovered until
//! consistent, checked with `pg_amcheck` (B-tree indexes with `bt_index_check`, heap
//! tables with `verify_heapam`, every database), stopped, and checked with `pg_checksums
//! --check` when the cluster has data checksums. File sizes alone pass a backup whose
//! pages are torn or whose index is corrupt; this does not.
//!
//! The scratch server can never touch the live cluster: every setting that says where
//! it reads and writes is given on its command line, which wins over any configuration
//! file the backup holds (`data_directory`, `config_file`, `hba_file`, `ident_file`, the
//! port and socket, no TCP listener, no archiving, no restore command, no replication),
//! the WAL it needs (the backup's own segments) is copied into its `pg_wal` beforehand,
//! and a backup with tablespaces (links to directories outside the copy) is not started.

use crate::walname::{segment_name, WalFileKind};
use crate::{BaseBackupInfo, PgError, PgResult};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use strata_repo::Repository;

/// What proving a restored data directory found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proof {
    /// What was checked, a line each (`pg_amcheck: 3 databases, no corruption`, ...).
    pub checked: Vec<String>,
    /// Damage found: each line names the relation (or file) and what is wrong.
    pub damaged: Vec<String>,
    /// Why the database was not started (no PostgreSQL binaries of its version here,
    /// tablespaces): the drill then checked files only.
    pub skipped: Option<String>,
}

/// Where the PostgreSQL binaries of major version `version` are (Debian's layout, or
/// `bin_dir` when given).
fn bin_dir(version: &str, configured: Option<&Path>) -> PathBuf {
    match configured {
        Some(dir) => dir.to_path_buf(),
        None => PathBuf::from(format!("/usr/lib/postgresql/{version}/bin")),
    }
}

/// The name of user `uid` (`/etc/passwd`): the data directory's owner, who is the
/// cluster's bootstrap superuser when `initdb` ran as it.
fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id: u32 = fields.nth(1)?.parse().ok()?;
        (id == uid).then(|| name.to_string())
    })
}

/// Runs as the data directory's owner when this process is root (PostgreSQL refuses
/// root).
fn as_owner(cmd: &mut Command, owner: (u32, u32)) -> &mut Command {
    if rustix::process::geteuid().is_root() {
        cmd.uid(owner.0).gid(owner.1);
    }
    cmd
}

/// A free loopback TCP port number, for the scratch server's socket name (it listens on
/// its own Unix socket only).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(54329)
}

/// Proves the data directory `data_dir` restored from a base backup described by
/// `info` (its WAL read from `repo`), using `work` (an empty directory beside it) for the
/// socket, the log and the authentication files. The server is stopped before this
/// returns, whatever happened.
pub async fn prove(
    repo: &Arc<Repository>,
    info: &BaseBackupInfo,
    data_dir: &Path,
    work: &Path,
    bin: Option<&Path>,
    timeout: Duration,
) -> PgResult<Proof> {
    let io = |what: &str, path: &Path| PgError::io(what.to_string(), path.to_path_buf());
    let mut proof = Proof::default();
    if !info.tablespaces.is_empty() {
        proof.skipped = Some(
            "the backup has tablespaces (links outside the copy): the database was not started; files were checked"
                .into(),
        );
        return Ok(proof);
    }
    let version = std::fs::read_to_string(data_dir.join("PG_VERSION"))
        .map_err(io("cannot read", &data_dir.join("PG_VERSION")))?
        .trim()
        .to_string();
    let bin = bin_dir(&version, bin);
    if !bin.join("pg_ctl").exists() {
        proof.skipped = Some(format!(
            "no PostgreSQL {version} binaries at {} on this host: the database was not started; files were checked",
            bin.display()
        ));
        return Ok(proof);
    }
    let meta = std::fs::metadata(data_dir).map_err(io("cannot read", data_dir))?;
    let owner = (meta.uid(), meta.gid());
    let user = user_name(owner.0).unwrap_or_else(|| "postgres".into());

    // The scratch server's own files: socket directory, log, authentication.
    std::fs::create_dir_all(work).map_err(io("cannot create", work))?;
    let hba = work.join("pg_hba.conf");
    std::fs::write(&hba, "local all all trust\n").map_err(io("cannot write", &hba))?;
    let ident = work.join("pg_ident.conf");
    std::fs::write(&ident, "").map_err(io("cannot write", &ident))?;
    let log = work.join("server.log");
    for path in [work, &hba, &ident] {
        std::os::unix::fs::chown(path, Some(owner.0), Some(owner.1))
            .or_else(|e| match rustix::process::geteuid().is_root() {
                true => Err(e),
                false => Ok(()),
            })
            .map_err(io("cannot set the owner of", path))?;
    }
    let conf = data_dir.join("postgresql.conf");
    if !conf.exists() {
        // Debian keeps it in /etc: an empty one here, every setting that matters below.
        std::fs::write(&conf, "").map_err(io("cannot write", &conf))?;
        let _ = std::os::unix::fs::chown(&conf, Some(owner.0), Some(owner.1));
    }
    for stale in [
        "postmaster.pid",
        "postmaster.opts",
        "recovery.signal",
        "standby.signal",
    ] {
        let _ = std::fs::remove_file(data_dir.join(stale));
    }
    fetch_backup_wal(repo, info, data_dir, owner).await?;

    let port = free_port();
    let path = |p: &Path| p.display().to_string();
    let options = [
        ("data_directory", path(data_dir)),
        ("config_file", path(&conf)),
        ("hba_file", path(&hba)),
        ("ident_file", path(&ident)),
        ("port", port.to_string()),
        ("listen_addresses", String::new()),
        ("unix_socket_directories", path(work)),
        ("archive_mode", "off".into()),
        ("restore_command", String::new()),
        ("primary_conninfo", String::new()),
        ("recovery_target", String::new()),
        ("logging_collector", "off".into()),
        ("external_pid_file", String::new()),
    ];
    // `pg_ctl -o` hands these to a shell: each `key=value` one single-quoted word.
    let line: Vec<String> = options
        .iter()
        .map(|(k, v)| format!("-c '{}'", format!("{k}={v}").replace('\'', "'\\''")))
        .collect();
    let started = pg_ctl(
        &bin,
        owner,
        data_dir,
        &log,
        &[
            "start",
            "-w",
            "-t",
            &timeout.as_secs().max(1).to_string(),
            "-o",
            &line.join(" "),
        ],
    );
    let result = match started {
        Ok(()) => check_running(&bin, owner, work, port, &user, &mut proof).await,
        Err(why) => Err(PgError::Refused(format!(
            "the restored database did not start: {why}: {}",
            tail(&log, 10)
        ))),
    };
    let stopped = pg_ctl(
        &bin,
        owner,
        data_dir,
        &log,
        &["stop", "-m", "fast", "-w", "-t", "60"],
    );
    result?;
    stopped.map_err(|why| PgError::Refused(format!("the scratch server did not stop: {why}")))?;
    check_checksums(&bin, owner, data_dir, &mut proof)?;
    Ok(proof)
}

/// Runs `pg_ctl ARGS -D data_dir -l log` as the owner.
fn pg_ctl(
    bin: &Path,
    owner: (u32, u32),
    data_dir: &Path,
    log: &Path,
    args: &[&str],
) -> Result<(), String> {
    let mut cmd = Command::new(bin.join("pg_ctl"));
    cmd.args(args).arg("-D").arg(data_dir).arg("-l").arg(log);
    let out = as_owner(&mut cmd, owner)
        .output()
        .map_err(|e| format!("cannot run pg_ctl: {e}"))?;
    match out.status.success() {
        true => Ok(()),
        false => Err(format!(
            "pg_ctl {} exited with {}: {}",
            args[0],
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

fn tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join(" | ")
}

/// The backup's own WAL, `start_wal` to `stop_wal`, into `pg_wal`: what recovery needs to
/// reach consistency (the server then ends recovery there, as a new primary).
async fn fetch_backup_wal(
    repo: &Arc<Repository>,
    info: &BaseBackupInfo,
    data_dir: &Path,
    owner: (u32, u32),
) -> PgResult<()> {
    let wal_dir = data_dir.join("pg_wal");
    if wal_dir.is_symlink() {
        return Err(PgError::Refused(format!(
            "{} is a link (initdb --waldir): not followed in a drill",
            wal_dir.display()
        )));
    }
    std::fs::create_dir_all(wal_dir.join("archive_status"))
        .map_err(PgError::io("cannot create", wal_dir.clone()))?;
    let size = info.segment_size;
    let first = WalFileKind::parse(&info.start_wal).and_then(|k| k.segno(size));
    let last = WalFileKind::parse(&info.stop_wal).and_then(|k| k.segno(size));
    let (Some(first), Some(last)) = (first, last) else {
        return Err(PgError::Refused(format!(
            "the backup names no WAL range ({} to {})",
            info.start_wal, info.stop_wal
        )));
    };
    let mut names: Vec<String> = (first..=last)
        .map(|segno| segment_name(info.timeline, segno, size))
        .collect();
    if info.timeline > 1 {
        names.push(format!("{:08X}.history", info.timeline));
    }
    for name in names {
        let dest = wal_dir.join(&name);
        match crate::wal::fetch(repo, &name, &dest, None).await {
            Ok(_) => {}
            // A history file the archive does not have is not needed to reach consistency.
            Err(PgError::WalMissing(_)) if name.ends_with(".history") => continue,
            Err(e) => return Err(e),
        }
        let _ = std::os::unix::fs::chown(&dest, Some(owner.0), Some(owner.1));
    }
    Ok(())
}

/// `pg_amcheck` over every database of the running scratch server.
async fn check_running(
    bin: &Path,
    owner: (u32, u32),
    socket: &Path,
    port: u16,
    user: &str,
    proof: &mut Proof,
) -> PgResult<()> {
    let amcheck = bin.join("pg_amcheck");
    if !amcheck.exists() {
        proof.skipped = Some(format!(
            "{} is not there (PostgreSQL 14 or later has it): the database started, consistent, but was not checked page by page",
            amcheck.display()
        ));
        return Ok(());
    }
    let mut cmd = Command::new(&amcheck);
    cmd.arg("-h").arg(socket).args([
        "-p",
        &port.to_string(),
        "-U",
        user,
        "--all",
        "--install-missing",
        "--no-password",
    ]);
    let out = as_owner(&mut cmd, owner)
        .output()
        .map_err(PgError::io("cannot run", amcheck.clone()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => proof
            .checked
            .push("pg_amcheck: every database's tables and B-tree indexes are sound".into()),
        Some(2) => proof.damaged.extend(amcheck_findings(&stdout)),
        _ => {
            return Err(PgError::Refused(format!(
                "pg_amcheck could not check the restored database ({}): {} {}",
                out.status,
                stderr.trim(),
                stdout.trim()
            )))
        }
    }
    Ok(())
}

/// The lines of `pg_amcheck`'s report that name a relation, each with its detail.
fn amcheck_findings(report: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in report.lines() {
        let line = line.trim();
        if line.starts_with("heap table")
            || line.starts_with("btree index")
            || line.starts_with("index ")
        {
            out.push(line.trim_end_matches(':').to_string());
        } else if let Some(last) = out.last_mut() {
            if !line.is_empty() && last.matches(": ").count() < 2 {
                last.push_str(": ");
                last.push_str(line);
            }
        }
    }
    if out.is_empty() && !report.trim().is_empty() {
        out.push(format!("pg_amcheck: {}", report.trim()));
    }
    out
}

/// `pg_checksums --check` on the stopped copy, when the cluster has data checksums.
fn check_checksums(
    bin: &Path,
    owner: (u32, u32),
    data_dir: &Path,
    proof: &mut Proof,
) -> PgResult<()> {
    let mut control = Command::new(bin.join("pg_controldata"));
    control.arg("-D").arg(data_dir);
    let out = as_owner(&mut control, owner)
        .output()
        .map_err(PgError::io("cannot run", bin.join("pg_controldata")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let enabled = text
        .lines()
        .find(|l| l.starts_with("Data page checksum version:"))
        .and_then(|l| l.rsplit(':').next())
        .is_some_and(|v| v.trim() != "0");
    if !enabled {
        proof
            .checked
            .push("data checksums are off in this cluster: pg_checksums not run".into());
        return Ok(());
    }
    let mut cmd = Command::new(bin.join("pg_checksums"));
    cmd.arg("--check").arg("-D").arg(data_dir);
    let out = as_owner(&mut cmd, owner)
        .output()
        .map_err(PgError::io("cannot run", bin.join("pg_checksums")))?;
    if out.status.success() {
        proof
            .checked
            .push("pg_checksums: every page's checksum is right".into());
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let found: Vec<String> = stderr
            .lines()
            .filter(|l| l.contains("checksum verification failed"))
            .map(|l| l.trim_start_matches("pg_checksums: error: ").to_string())
            .collect();
        match found.is_empty() {
            true => proof
                .damaged
                .push(format!("pg_checksums: {}", stderr.trim())),
            false => proof.damaged.extend(found),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amcheck_reports_become_one_line_per_relation() {
        let report = "btree index \"bench.public.t_pkey\":\n    ERROR:  item order invariant violated for index \"t_pkey\"\n    DETAIL:  Lower index tid=(1,2)\nheap table \"bench.public.t\", block 0, offset 3:\n    xmin 12 precedes relation freeze threshold\n";
        let lines = amcheck_findings(report);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with("btree index \"bench.public.t_pkey\": ERROR:"),
            "{lines:?}"
        );
        assert!(
            lines[1].contains("heap table \"bench.public.t\", block 0, offset 3"),
            "{lines:?}"
        );
    }
}
