//! What `wal-push` does when archiving keeps failing while PostgreSQL's WAL piles up.
//!
//! By default nothing: the push fails, PostgreSQL keeps the segment in `pg_wal` and calls
//! again, and nothing is ever acknowledged that the repository does not hold. A primary
//! whose storage stays unreachable for long then fills its disk and stops. An operator
//! who prefers a running primary to an unbroken archive sets
//! `postgres.wal_queue_max_mib` (pgBackRest's `archive-push-queue-max`): once a push
//! fails while more WAL than that waits to be archived, the segment is acknowledged
//! without being archived (*dropped*), loudly:
//!
//! ```text
//! strata: WARNING: DROPPED WAL segment 000000010000000000000042 without archiving it: ...
//! ```
//!
//! on stderr (PostgreSQL's log), counted in `<state_dir>/wal-dropped.json` (`strata wal
//! status`, `strata_wal_dropped_total` in `/metrics`, the dashboard), and visible as a gap
//! in `strata wal list`. Point-in-time recovery across a dropped segment is impossible
//! until the next backup; a segment is dropped only when the count could be written
//! first, never silently.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// WAL that PostgreSQL has marked ready and not yet seen archived.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Waiting {
    /// Segments marked ready.
    pub segments: usize,
    /// Their size, in bytes.
    pub bytes: u64,
}

/// The WAL waiting beside `segment` (a file in `pg_wal`): every `archive_status/*.ready`
/// and the size of its file. Unreadable entries count as nothing (so they never cause a
/// drop).
pub fn waiting(segment: &Path) -> Waiting {
    let Some(dir) = segment.parent() else {
        return Waiting::default();
    };
    let Ok(entries) = std::fs::read_dir(dir.join("archive_status")) else {
        return Waiting::default();
    };
    let mut waiting = Waiting::default();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str().and_then(|n| n.strip_suffix(".ready")) else {
            continue;
        };
        // symlink_metadata: a link in pg_wal is not followed to count someone else's file.
        if let Ok(meta) = std::fs::symlink_metadata(dir.join(name)) {
            waiting.segments += 1;
            waiting.bytes += meta.len();
        }
    }
    waiting
}

/// The drops so far (`<state_dir>/wal-dropped.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Drops {
    /// Segments acknowledged without being archived, ever (until the file is removed).
    pub count: u64,
    /// The newest drop, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<Dropped>,
}

/// One dropped segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Dropped {
    /// The dropped segment's name.
    pub name: String,
    /// When it was dropped (RFC 3339).
    pub at: String,
    /// Why archiving it failed.
    pub why: String,
    /// The WAL waiting to be archived then, in bytes.
    pub waiting_bytes: u64,
}

/// Where the drops of `state_dir` are counted.
pub fn drops_path(state_dir: &Path) -> PathBuf {
    state_dir.join("wal-dropped.json")
}

/// The drops recorded in `state_dir`; none when the file is missing or unreadable.
pub fn drops(state_dir: &Path) -> Drops {
    std::fs::read(drops_path(state_dir))
        .ok()
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .unwrap_or_default()
}

/// Counts `dropped` in `state_dir` (written beside, synced, renamed into place, under an
/// exclusive lock so two clusters sharing a state directory do not lose a count).
pub fn record(state_dir: &Path, dropped: Dropped) -> std::io::Result<Drops> {
    std::fs::create_dir_all(state_dir)?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(state_dir.join("wal-dropped.lock"))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)?;
    let mut drops = drops(state_dir);
    drops.count += 1;
    drops.last = Some(dropped);
    let path = drops_path(state_dir);
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&serde_json::to_vec_pretty(&drops).expect("drops serialize"))?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(state_dir)?.sync_all()?;
    Ok(drops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_counts_ready_segments_and_their_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let pg_wal = dir.path().join("pg_wal");
        std::fs::create_dir_all(pg_wal.join("archive_status")).unwrap();
        for (name, size, status) in [("A", 100, "ready"), ("B", 50, "ready"), ("C", 70, "done")] {
            std::fs::write(pg_wal.join(name), vec![0u8; size]).unwrap();
            std::fs::write(
                pg_wal
                    .join("archive_status")
                    .join(format!("{name}.{status}")),
                b"",
            )
            .unwrap();
        }
        // A ready mark whose file is gone counts nothing.
        std::fs::write(pg_wal.join("archive_status/D.ready"), b"").unwrap();
        let got = waiting(&pg_wal.join("A"));
        assert_eq!(
            got,
            Waiting {
                segments: 2,
                bytes: 150
            }
        );
        assert_eq!(waiting(Path::new("/nonexistent/x")), Waiting::default());
    }

    #[test]
    fn drops_are_counted_and_the_last_kept() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(drops(dir.path()), Drops::default());
        let one = |name: &str| Dropped {
            name: name.into(),
            at: "2026-11-26T07:00:00Z".into(),
            why: "storage unreachable".into(),
            waiting_bytes: 1 << 30,
        };
        record(dir.path(), one("A")).unwrap();
        let after = record(dir.path(), one("B")).unwrap();
        assert_eq!(after.count, 2);
        assert_eq!(drops(dir.path()), after);
        assert_eq!(after.last.unwrap().name, "B");
        // A damaged file reads as none and is replaced by the next drop.
        std::fs::write(drops_path(dir.path()), b"{not json").unwrap();
        assert_eq!(drops(dir.path()).count, 0);
        assert_eq!(record(dir.path(), one("C")).unwrap().count, 1);
    }
}
