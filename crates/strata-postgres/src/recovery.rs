//! Recovery settings for a restored data directory.
//!
//! After the files of a base backup are back, PostgreSQL must be told to replay WAL from
//! the archive (through `strata wal-fetch`) up to a target, then what to do there. The
//! settings go into `postgresql.auto.conf` between two marker lines, replacing the block a
//! previous restore wrote, and `recovery.signal` (or `standby.signal` for a standby)
//! switches recovery on. WAL left in `pg_wal` from the server that lived here before is
//! removed: replaying it on top of the backup would mix two histories. A `pg_wal` that is
//! a symlink is followed only when the backup recorded that very link and it points into
//! the node's roots ([`LinkPolicy`]).

use crate::{NodeSettings, PgError, PgResult};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use strata_pgclient::quote_config_value;

const BEGIN: &str = "# --- strata restore: begin (rewritten by the next restore) ---";
const END: &str = "# --- strata restore: end ---";

/// Where recovery stops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Replay every archived WAL file (the latest state); a gap in the archive on the
    /// way is refused before anything is written.
    Latest,
    /// Stop as soon as the backup is consistent.
    Immediate,
    /// A timestamp (`2026-11-23 05:00:00+00`).
    Time(String),
    /// A WAL position (`0/3000060`).
    Lsn(String),
    /// A transaction id.
    Xid(String),
    /// Replay the archived WAL up to its first gap (a missing segment) and promote there,
    /// leaving what lies past the gap unreplayed; without a gap, the same as `Latest`.
    /// (Last: the API's schema keeps the places of the targets it had before.)
    Gap,
}

impl Target {
    /// Whether recovery runs to the end of the archived WAL (or its first gap): no
    /// target setting, the newest timeline, promoted at the end.
    pub fn is_end(&self) -> bool {
        matches!(self, Target::Latest | Target::Gap)
    }
}

/// What to do at the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TargetAction {
    /// End recovery and open the server for writes.
    Promote,
    /// Stay in recovery, read-only, until someone calls `pg_wal_replay_resume()`.
    Pause,
    /// Stop the server.
    Shutdown,
}

impl TargetAction {
    /// The `recovery_target_action` value.
    pub fn as_str(&self) -> &'static str {
        match self {
            TargetAction::Promote => "promote",
            TargetAction::Pause => "pause",
            TargetAction::Shutdown => "shutdown",
        }
    }

    /// Reads what [`TargetAction::as_str`] wrote; `None` for anything else.
    pub fn parse(text: &str) -> Option<TargetAction> {
        match text {
            "promote" => Some(TargetAction::Promote),
            "pause" => Some(TargetAction::Pause),
            "shutdown" => Some(TargetAction::Shutdown),
            _ => None,
        }
    }
}

/// How a restored node recovers. Unknown fields are refused: it comes in API bodies, where
/// a misspelt setting must not be dropped silently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoveryPlan {
    /// Where recovery stops.
    pub target: Target,
    /// What the server does once it got there.
    pub action: TargetAction,
    /// Whether to start PostgreSQL and wait for recovery to end.
    pub start: bool,
    /// Restore with `archive_mode = off`: a copy of the cluster (a new Londiste node, a
    /// staging server) must not archive its new timeline into the repository of the
    /// cluster it came from, where a later restore to the latest timeline would follow it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_archive: bool,
}

/// The settings block for `node`: `restore_command` runs `wal_fetch` (a command line
/// ending in `wal-fetch`), the target, and the port and socket directory the node's
/// connection settings expect the server at.
pub fn settings_block(node: &NodeSettings, plan: &RecoveryPlan, wal_fetch: &str) -> String {
    let mut lines = vec![BEGIN.to_string()];
    let mut set =
        |key: &str, value: &str| lines.push(format!("{key} = {}", quote_config_value(value)));
    set("restore_command", &format!("{wal_fetch} %f %p"));
    set("port", &node.connect.port.to_string());
    if node.connect.host.starts_with('/') {
        set("unix_socket_directories", &node.connect.host);
    }
    match &node.primary_conninfo {
        Some(conninfo) => {
            set("primary_conninfo", conninfo);
            set("recovery_target_timeline", "latest");
        }
        None => {
            // To a point in time: along the backup's own timeline (a later branch, such as
            // an earlier point-in-time restore's, may have forked before this backup). To
            // the end: follow the newest timeline, as after a failover.
            let timeline = if plan.target.is_end() {
                "latest"
            } else {
                "current"
            };
            set("recovery_target_timeline", timeline);
            match &plan.target {
                Target::Latest | Target::Gap => {}
                Target::Immediate => set("recovery_target", "immediate"),
                Target::Time(t) => set("recovery_target_time", t),
                Target::Lsn(l) => set("recovery_target_lsn", l),
                Target::Xid(x) => set("recovery_target_xid", x),
            }
            if !plan.target.is_end() {
                set("recovery_target_action", plan.action.as_str());
            }
        }
    }
    if plan.no_archive {
        set("archive_mode", "off");
    }
    lines.push(END.to_string());
    lines.join("\n") + "\n"
}

/// `text` without a block an earlier restore wrote.
fn without_block(text: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line == BEGIN {
            inside = true;
        } else if line == END {
            inside = false;
        } else if !inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// What recovery preparation may follow in a restored data directory. Everything else
/// that is a symlink where a directory or file is expected (a `pg_wal` link the backup did
/// not record, a planted `recovery.signal` link) is refused or removed as a link, never
/// followed: preparation runs with the privileges of the restore and empties `pg_wal`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkPolicy {
    /// The target of `pg_wal` as the backup recorded it, when it was a symlink there
    /// (`initdb --waldir`).
    pub recorded_wal_link: Option<PathBuf>,
    /// The node's roots: its data directory, configured roots, tablespace locations and
    /// `wal_dir`. A followed link must point into one of them.
    pub roots: Vec<PathBuf>,
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Opens an absolute path without following any symlink in it.
fn open_dir_nofollow(path: &Path) -> std::io::Result<OwnedFd> {
    let mut dir = rfs::open("/", DIR_FLAGS, Mode::empty())?;
    for part in path.components() {
        match part {
            Component::RootDir => {}
            Component::Normal(name) => dir = rfs::openat(&dir, name, DIR_FLAGS, Mode::empty())?,
            _ => return Err(std::io::Error::other("not a canonical path")),
        }
    }
    Ok(dir)
}

/// Removes everything in `dir`, descending through handles (a directory swapped for a
/// link is unlinked, never entered).
fn empty_dir(dir: &OwnedFd) -> std::io::Result<()> {
    let mut listing = rfs::Dir::read_from(dir)?;
    let mut names = Vec::new();
    while let Some(entry) = listing.read() {
        let entry = entry?;
        let name = entry.file_name().to_owned();
        if name.as_bytes() != b"." && name.as_bytes() != b".." {
            names.push(name);
        }
    }
    for name in names {
        match rfs::unlinkat(dir, name.as_c_str(), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(Errno::ISDIR | Errno::PERM) => {
                match rfs::openat(dir, name.as_c_str(), DIR_FLAGS, Mode::empty()) {
                    Ok(sub) => empty_dir(&sub)?,
                    Err(Errno::LOOP | Errno::NOTDIR | Errno::NOENT) => {}
                    Err(err) => return Err(err.into()),
                }
                match rfs::unlinkat(dir, name.as_c_str(), AtFlags::REMOVEDIR) {
                    Ok(()) | Err(Errno::NOENT) => {}
                    Err(Errno::NOTDIR) => rfs::unlinkat(dir, name.as_c_str(), AtFlags::empty())?,
                    Err(err) => return Err(err.into()),
                }
            }
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

/// Opens `pg_wal` of the data directory: a directory, or a link the backup recorded that
/// points into the node's roots; created when missing.
fn open_wal(data: &OwnedFd, data_dir: &Path, links: &LinkPolicy) -> PgResult<OwnedFd> {
    let wal = data_dir.join("pg_wal");
    let io = |what: &str| PgError::io(what.to_string(), wal.clone());
    let stat = match rfs::statat(data, "pg_wal", AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => Some(stat),
        Err(Errno::NOENT) => None,
        Err(err) => return Err(io("cannot read")(err.into())),
    };
    match stat.map(|s| FileType::from_raw_mode(s.st_mode)) {
        None => {
            rfs::mkdirat(data, "pg_wal", Mode::from_raw_mode(0o700))
                .map_err(|e| io("cannot create")(e.into()))?;
            rfs::openat(data, "pg_wal", DIR_FLAGS, Mode::empty())
                .map_err(|e| io("cannot open")(e.into()))
        }
        Some(FileType::Directory) => rfs::openat(data, "pg_wal", DIR_FLAGS, Mode::empty())
            .map_err(|e| io("cannot open")(e.into())),
        Some(FileType::Symlink) => {
            let target = rfs::readlinkat(data, "pg_wal", Vec::new())
                .map_err(|e| io("cannot read")(e.into()))?;
            let target = PathBuf::from(std::ffi::OsStr::from_bytes(target.as_bytes()));
            if links.recorded_wal_link.as_ref() != Some(&target) {
                return Err(PgError::Refused(format!(
                    "{} is a symlink to {} that the backup did not record; refusing to follow it (remove it and restore again)",
                    wal.display(),
                    target.display()
                )));
            }
            let resolved = std::fs::canonicalize(data_dir.join(&target))
                .map_err(|e| io("cannot resolve")(e))?;
            let inside = links.roots.iter().any(|root| {
                std::fs::canonicalize(root).is_ok_and(|root| resolved.starts_with(root))
            });
            if !inside {
                return Err(PgError::Refused(format!(
                    "{} links to {}, outside the node's roots; refusing to empty it (set the node's postgres.wal_dir to it if it is this cluster's WAL directory)",
                    wal.display(),
                    resolved.display()
                )));
            }
            open_dir_nofollow(&resolved).map_err(|e| io("cannot open")(e))
        }
        Some(_) => Err(PgError::Refused(format!(
            "{} is not a directory",
            wal.display()
        ))),
    }
}

/// Creates `name` in `dir` (nothing may be there: a link is not followed) with `bytes`,
/// owned by `owner`.
pub(crate) fn create_new(
    dir: &OwnedFd,
    name: &str,
    bytes: &[u8],
    owner: (u32, u32),
) -> std::io::Result<()> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rfs::openat(dir, name, flags, Mode::from_raw_mode(0o600))?;
    set_owner(&fd, owner)?;
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes)?;
    file.sync_all()
}

/// Gives a file the data directory's owner (when restoring as root).
fn set_owner(fd: &OwnedFd, (uid, gid): (u32, u32)) -> std::io::Result<()> {
    let stat = rfs::fstat(fd)?;
    if (stat.st_uid, stat.st_gid) == (uid, gid) {
        return Ok(());
    }
    match rfs::fchown(
        fd,
        Some(rfs::Uid::from_raw_unchecked(uid)),
        Some(rfs::Gid::from_raw_unchecked(gid)),
    ) {
        // Not root: the file is ours, as the data directory should be.
        Ok(()) | Err(Errno::PERM) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// Prepares a restored data directory for recovery. The server must not be running.
///
/// Everything below the data directory is done through its handle: stale files are
/// unlinked (a link itself, never its target), `pg_wal` is emptied only when it is a
/// directory or the link `links` allows, and the settings and signal files are created
/// new (`O_EXCL | O_NOFOLLOW`) and renamed into place.
pub fn prepare(
    node: &NodeSettings,
    plan: &RecoveryPlan,
    wal_fetch: &str,
    links: &LinkPolicy,
) -> PgResult<()> {
    let data_dir = &node.data_dir;
    let io = |what: &str, path: &Path| PgError::io(what.to_string(), path.to_path_buf());
    let data = rfs::open(
        data_dir.as_path(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io("cannot open", data_dir)(e.into()))?;
    let stat = rfs::fstat(&data).map_err(|e| io("cannot read", data_dir)(e.into()))?;
    let owner = (stat.st_uid, stat.st_gid);
    for stale in [
        "postmaster.pid",
        "recovery.signal",
        "standby.signal",
        "backup_label.old",
    ] {
        match rfs::unlinkat(&data, stale, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(err) => return Err(io("cannot remove", &data_dir.join(stale))(err.into())),
        }
    }
    // PostgreSQL refuses a data directory others can enter (group read is allowed).
    let mode = stat.st_mode & 0o777;
    if mode != 0o700 && mode != 0o750 {
        rfs::fchmod(&data, Mode::from_raw_mode(0o700))
            .map_err(|e| io("cannot set permissions of", data_dir)(e.into()))?;
    }
    let wal = open_wal(&data, data_dir, links)?;
    let wal_path = data_dir.join("pg_wal");
    empty_dir(&wal).map_err(io("cannot empty", &wal_path))?;
    let status = wal_path.join("archive_status");
    match rfs::mkdirat(&wal, "archive_status", Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(err) => return Err(io("cannot create", &status)(err.into())),
    }
    if let Ok(fd) = rfs::openat(&wal, "archive_status", DIR_FLAGS, Mode::empty()) {
        set_owner(&fd, owner).map_err(io("cannot set the owner of", &status))?;
    }
    write_auto_conf(
        &data,
        data_dir,
        owner,
        &settings_block(node, plan, wal_fetch),
    )?;
    let signal = if node.primary_conninfo.is_some() {
        "standby.signal"
    } else {
        "recovery.signal"
    };
    create_new(&data, signal, b"", owner).map_err(io("cannot write", &data_dir.join(signal)))?;
    Ok(())
}

/// Rewrites `postgresql.auto.conf` with `block` in place of the one an earlier restore
/// wrote: created new beside it and renamed into place, never through a link.
fn write_auto_conf(
    data: &OwnedFd,
    data_dir: &Path,
    owner: (u32, u32),
    block: &str,
) -> PgResult<()> {
    let io = |what: &str, path: &Path| PgError::io(what.to_string(), path.to_path_buf());
    let auto = data_dir.join("postgresql.auto.conf");
    let old = match rfs::openat(
        data,
        "postgresql.auto.conf",
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => {
            let mut text = String::new();
            let _ = std::fs::File::from(fd).read_to_string(&mut text);
            text
        }
        Err(Errno::NOENT) => String::new(),
        Err(Errno::LOOP) => {
            return Err(PgError::Refused(format!(
                "{} is a symlink; refusing to follow it",
                auto.display()
            )))
        }
        Err(err) => return Err(io("cannot read", &auto)(err.into())),
    };
    let text = without_block(&old) + block;
    let temp = ".postgresql.auto.conf.strata-tmp";
    match rfs::unlinkat(data, temp, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => {}
        Err(err) => return Err(io("cannot remove", &data_dir.join(temp))(err.into())),
    }
    create_new(data, temp, text.as_bytes(), owner)
        .and_then(|()| Ok(rfs::renameat(data, temp, data, "postgresql.auto.conf")?))
        .map_err(io("cannot write", &auto))?;
    Ok(())
}

/// Where recovery ended on a server that was promoted: the timeline it recovered along
/// and the position where the new timeline begins, from the last entry of the newest
/// history file in `pg_wal` (the one promotion wrote). `None` when there is none.
pub fn recovery_end(data_dir: &Path) -> Option<(u32, crate::walname::Lsn)> {
    let newest = std::fs::read_dir(data_dir.join("pg_wal"))
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let tli = u32::from_str_radix(name.strip_suffix(".history")?, 16).ok()?;
            Some((tli, e.path()))
        })
        .max_by_key(|(tli, _)| *tli)?;
    let text = std::fs::read_to_string(newest.1).ok()?;
    crate::wal::parse_history(&text).last().copied()
}

/// Removes the recovery settings a restore wrote, once recovery has ended: a server that
/// is made a standby later (Patroni demotes a member) must not stop at the old target.
pub fn remove_settings(data_dir: &Path) -> PgResult<()> {
    let data = rfs::open(
        data_dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| PgError::io("cannot open".to_string(), data_dir.to_path_buf())(e.into()))?;
    let stat = rfs::fstat(&data)
        .map_err(|e| PgError::io("cannot read".to_string(), data_dir.to_path_buf())(e.into()))?;
    write_auto_conf(&data, data_dir, (stat.st_uid, stat.st_gid), "")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(dir: &Path, standby: bool) -> NodeSettings {
        NodeSettings {
            data_dir: dir.to_path_buf(),
            connect: strata_pgclient::ConnectSettings {
                host: "/tmp/sock dir".into(),
                port: 5544,
                ..Default::default()
            },
            bin_dir: PathBuf::from("/usr/lib/postgresql/15/bin"),
            primary_conninfo: standby.then(|| "host=/tmp port=5432".to_string()),
            tablespaces: Default::default(),
            wal_dir: None,
        }
    }

    #[test]
    fn a_second_restore_replaces_the_first_block() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        std::fs::create_dir_all(data.join("pg_wal/archive_status")).unwrap();
        std::fs::write(data.join("pg_wal/000000010000000000000009"), b"old").unwrap();
        std::fs::write(data.join("postmaster.pid"), b"123").unwrap();
        std::fs::write(data.join("postgresql.auto.conf"), "work_mem = '8MB'\n").unwrap();
        let plan = RecoveryPlan {
            target: Target::Time("2026-11-23 05:00:00+00".into()),
            action: TargetAction::Promote,
            start: false,
            no_archive: false,
        };
        prepare(
            &node(data, false),
            &plan,
            "/usr/bin/strata --config '/etc/s.toml' wal-fetch",
            &LinkPolicy::default(),
        )
        .unwrap();
        let plan = RecoveryPlan {
            target: Target::Lsn("0/3000000".into()),
            action: TargetAction::Pause,
            start: false,
            no_archive: false,
        };
        prepare(
            &node(data, false),
            &plan,
            "strata wal-fetch",
            &LinkPolicy::default(),
        )
        .unwrap();
        let text = std::fs::read_to_string(data.join("postgresql.auto.conf")).unwrap();
        assert!(text.starts_with("work_mem = '8MB'\n"));
        assert_eq!(text.matches(BEGIN).count(), 1);
        assert!(text.contains("recovery_target_lsn = '0/3000000'"));
        assert!(text.contains("recovery_target_action = 'pause'"));
        assert!(text.contains("recovery_target_timeline = 'current'"));
        assert!(!text.contains("recovery_target_time ="));
        assert!(text.contains("restore_command = 'strata wal-fetch %f %p'"));
        assert!(text.contains("port = '5544'"));
        assert!(text.contains("unix_socket_directories = '/tmp/sock dir'"));
        assert!(data.join("recovery.signal").exists());
        assert!(!data.join("postmaster.pid").exists());
        assert!(!data.join("pg_wal/000000010000000000000009").exists());
        assert!(data.join("pg_wal/archive_status").is_dir());
    }

    fn latest() -> RecoveryPlan {
        RecoveryPlan {
            target: Target::Latest,
            action: TargetAction::Promote,
            start: false,
            no_archive: false,
        }
    }

    /// A directory outside the data directory with a file preparation must not touch.
    fn outside(dir: &Path) -> PathBuf {
        let outside = dir.join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("precious"), b"keep").unwrap();
        outside
    }

    #[test]
    fn a_pg_wal_link_the_backup_did_not_record_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let outside = outside(dir.path());
        std::os::unix::fs::symlink(&outside, data.join("pg_wal")).unwrap();
        let links = LinkPolicy {
            recorded_wal_link: None,
            roots: vec![dir.path().to_path_buf()],
        };
        let err = prepare(&node(&data, false), &latest(), "strata wal-fetch", &links)
            .unwrap_err()
            .to_string();
        assert!(err.contains("did not record"), "{err}");
        assert_eq!(std::fs::read(outside.join("precious")).unwrap(), b"keep");
        assert!(!outside.join("archive_status").exists());
    }

    #[test]
    fn a_recorded_pg_wal_link_is_followed_only_into_the_nodes_roots() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let wal = dir.path().join("wal");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::create_dir_all(wal.join("archive_status")).unwrap();
        std::fs::write(wal.join("000000010000000000000003"), b"old history").unwrap();
        std::os::unix::fs::symlink(&wal, data.join("pg_wal")).unwrap();
        // Recorded, but outside the roots (the data directory only): refused.
        let links = LinkPolicy {
            recorded_wal_link: Some(wal.clone()),
            roots: vec![data.clone()],
        };
        let err = prepare(&node(&data, false), &latest(), "strata wal-fetch", &links)
            .unwrap_err()
            .to_string();
        assert!(err.contains("outside the node's roots"), "{err}");
        assert!(wal.join("000000010000000000000003").exists());
        // Recorded and inside a root (`initdb --waldir`): emptied and prepared.
        let links = LinkPolicy {
            recorded_wal_link: Some(wal.clone()),
            roots: vec![data.clone(), wal.clone()],
        };
        prepare(&node(&data, false), &latest(), "strata wal-fetch", &links).unwrap();
        assert!(!wal.join("000000010000000000000003").exists());
        assert!(wal.join("archive_status").is_dir());
        assert!(std::fs::symlink_metadata(data.join("pg_wal"))
            .unwrap()
            .is_symlink());
    }

    #[test]
    fn planted_signal_and_settings_links_are_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("pg_wal")).unwrap();
        let outside = outside(dir.path());
        let precious = outside.join("precious");
        std::os::unix::fs::symlink(&precious, data.join("recovery.signal")).unwrap();
        std::os::unix::fs::symlink(&precious, data.join("standby.signal")).unwrap();
        prepare(
            &node(&data, false),
            &latest(),
            "strata wal-fetch",
            &LinkPolicy::default(),
        )
        .unwrap();
        assert_eq!(std::fs::read(&precious).unwrap(), b"keep");
        let signal = std::fs::symlink_metadata(data.join("recovery.signal")).unwrap();
        assert!(signal.is_file() && signal.len() == 0);
        // A settings file that is a link: refused, the target untouched.
        std::fs::remove_file(data.join("postgresql.auto.conf")).unwrap();
        std::os::unix::fs::symlink(&precious, data.join("postgresql.auto.conf")).unwrap();
        let err = prepare(
            &node(&data, false),
            &latest(),
            "strata wal-fetch",
            &LinkPolicy::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("symlink"), "{err}");
        assert_eq!(std::fs::read(&precious).unwrap(), b"keep");
    }

    #[test]
    fn a_standby_streams_from_its_primary() {
        let dir = tempfile::tempdir().unwrap();
        let plan = RecoveryPlan {
            target: Target::Latest,
            action: TargetAction::Promote,
            start: false,
            no_archive: false,
        };
        prepare(
            &node(dir.path(), true),
            &plan,
            "strata wal-fetch",
            &LinkPolicy::default(),
        )
        .unwrap();
        let text = std::fs::read_to_string(dir.path().join("postgresql.auto.conf")).unwrap();
        assert!(text.contains("primary_conninfo = 'host=/tmp port=5432'"));
        assert!(!text.contains("recovery_target_action"));
        assert!(dir.path().join("standby.signal").exists());
        assert!(!dir.path().join("recovery.signal").exists());
    }

    #[test]
    fn quotes_in_values_cannot_break_out() {
        let dir = tempfile::tempdir().unwrap();
        let plan = RecoveryPlan {
            target: Target::Time("x'; archive_command = 'rm -rf /".into()),
            action: TargetAction::Promote,
            start: false,
            no_archive: false,
        };
        let block = settings_block(&node(dir.path(), false), &plan, "strata wal-fetch");
        assert!(block.contains("recovery_target_time = 'x''; archive_command = ''rm -rf /'"));
    }

    #[test]
    fn a_copy_restored_without_archiving_says_so_and_others_keep_theirs() {
        let dir = tempfile::tempdir().unwrap();
        let mut plan = latest();
        let block = settings_block(&node(dir.path(), false), &plan, "strata wal-fetch");
        assert!(!block.contains("archive_mode"), "{block}");
        plan.no_archive = true;
        let block = settings_block(&node(dir.path(), false), &plan, "strata wal-fetch");
        assert!(block.contains("archive_mode = 'off'"), "{block}");
        // Sent to a server, the field is left out unless set: an older server that
        // cannot honour it refuses it instead of restoring an archiving copy.
        assert!(!serde_json::to_string(&latest())
            .unwrap()
            .contains("no_archive"));
        assert!(serde_json::to_string(&plan)
            .unwrap()
            .contains("\"no_archive\":true"));
    }
}
