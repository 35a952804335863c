//! Proving that a restored base backup is a sound database, for restore drills
//! (`strata verify --restore`): the copy in scratch space is started, recovered until
//! consistent, checked with `pg_amcheck` (B-tree indexes with `bt_index_check`, heap
//! tables with `verify_heapam`, every database), stopped, and checked with `pg_checksums
//! --check` when the cluster has data checksums. File sizes alone pass a backup whose
//! pages are torn or whose index is corrupt; this does not.
//!
//! The server is a [`Scratch`] server (it can never touch the live cluster); the WAL it
//! needs, the backup's own segments, is copied into its `pg_wal` beforehand, and a backup
//! with tablespaces (links to directories outside the copy) is not started.

use crate::scratch::{Scratch, StopOnDrop};
use crate::walname::{segment_name, WalFileKind};
use crate::{BaseBackupInfo, PgError, PgResult};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use strata_repo::Repository;

/// What proving a restored data directory found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proof {
    /// What was checked, a line each (`pg_amcheck: ...`, `pg_checksums: ...`).
    pub checked: Vec<String>,
    /// Damage found: each line names the relation (or file) and what is wrong.
    pub damaged: Vec<String>,
    /// Why the database was not started or not checked page by page (no PostgreSQL
    /// binaries of its version here, tablespaces): the drill then checked files only.
    pub skipped: Option<String>,
}

/// Proves the data directory `data_dir` restored from a base backup described by
/// `info` (its WAL read from `repo`), with `work` (an empty directory beside it) as the
/// scratch space. The server is stopped before this returns, whatever happened.
pub async fn prove(
    repo: &Arc<Repository>,
    info: &BaseBackupInfo,
    data_dir: &Path,
    work: &Path,
    bin: Option<&Path>,
    timeout: Duration,
) -> PgResult<Proof> {
    let mut proof = Proof::default();
    if !info.tablespaces.is_empty() {
        proof.skipped = Some(
            "the backup has tablespaces (links outside the copy): the database was not started; files were checked"
                .into(),
        );
        return Ok(proof);
    }
    let scratch = match Scratch::prepare(data_dir, work, bin)? {
        Ok(scratch) => scratch,
        Err(why) => {
            proof.skipped = Some(format!(
                "{why}: the database was not started; files were checked"
            ));
            return Ok(proof);
        }
    };
    fetch_backup_wal(repo, info, data_dir, scratch.owner).await?;
    // No recovery.signal: the server replays the WAL in pg_wal from the backup label,
    // reaches consistency and ends recovery as a primary.
    scratch.start(&[], timeout)?;
    let guard = StopOnDrop(&scratch);
    check_running(&scratch, &mut proof)?;
    drop(guard);
    scratch.stop()?;
    check_checksums(&scratch, &mut proof)?;
    Ok(proof)
}

/// The backup's own WAL, `start_wal` to `stop_wal`, into `pg_wal`: what recovery needs to
/// reach consistency.
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
    let root = rustix::process::geteuid().is_root();
    for name in names {
        let dest = wal_dir.join(&name);
        match crate::wal::fetch(repo, &name, &dest, None).await {
            Ok(_) => {}
            // A history file the archive does not have is not needed for consistency.
            Err(PgError::WalMissing(_)) if name.ends_with(".history") => continue,
            Err(e) => return Err(e),
        }
        if root {
            std::os::unix::fs::chown(&dest, Some(owner.0), Some(owner.1))
                .map_err(PgError::io("cannot set the owner of", dest.clone()))?;
        }
    }
    Ok(())
}

/// `pg_amcheck` over every database of the running scratch server.
fn check_running(scratch: &Scratch, proof: &mut Proof) -> PgResult<()> {
    let amcheck = scratch.bin.join("pg_amcheck");
    if !amcheck.exists() {
        proof.skipped = Some(format!(
            "{} is not there (PostgreSQL 14 or later has it): the database started and reached consistency, but was not checked page by page",
            amcheck.display()
        ));
        return Ok(());
    }
    let out = scratch
        .client("pg_amcheck")
        .args(["--all", "--install-missing", "--no-password"])
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
fn check_checksums(scratch: &Scratch, proof: &mut Proof) -> PgResult<()> {
    let out = scratch
        .tool("pg_controldata")
        .arg("-D")
        .arg(&scratch.data_dir)
        .output()
        .map_err(PgError::io(
            "cannot run",
            scratch.bin.join("pg_controldata"),
        ))?;
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
    let out = scratch
        .tool("pg_checksums")
        .arg("--check")
        .arg("-D")
        .arg(&scratch.data_dir)
        .output()
        .map_err(PgError::io("cannot run", scratch.bin.join("pg_checksums")))?;
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
