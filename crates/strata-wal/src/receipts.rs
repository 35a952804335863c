//! Receipts of the segments a one-shot `wal-push` archived ahead of PostgreSQL's asking.
//!
//! Without the archiver, every `archive_command` is a new process, and opening the
//! repository costs most of it: the password's key derivation (Argon2, a quarter of a
//! second and 64 MiB by design) and the index refresh. A push also archives the segments
//! PostgreSQL has marked ready after the one it asked for (`postgres.wal_push_ahead`);
//! when PostgreSQL then asks for one of those, the archive already holds it, and proving
//! that by opening the repository again would cost a key derivation per segment.
//!
//! So once the repository confirmed a segment archived ahead (its record written after
//! its data, or found with its data), the push leaves a receipt in the state directory:
//! `wal-pushed/<repository id>-<location hash>/<name>`, holding the plain BLAKE3 hash of
//! the bytes the repository holds under that name. The next `wal-push` of that name reads
//! the segment, and when its hash matches a receipt younger than [`RECEIPT_TTL`] it
//! answers "already archived" with the repository untouched (one read of its `config`,
//! to know which repository is there) and removes the receipt. Anything else (no
//! receipt, another hash, an old receipt, another repository at the location) takes the
//! full path, which refuses a different content as before.
//!
//! A receipt says no more than the acknowledgement the same process could have given
//! then, and is written with the permissions of the state directory: whoever can write
//! there runs as the database's user, who can remove WAL outright. Nothing secret is
//! kept: no key, no password.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a receipt is believed. PostgreSQL asks for a segment seconds after the one
/// before; an older receipt is not trusted and the push checks the repository.
pub const RECEIPT_TTL: Duration = Duration::from_secs(3600);

/// The receipts of the repository `repo_id` at `location`.
pub fn dir(state_dir: &Path, repo_id: &str, location: &str) -> PathBuf {
    let hash = blake3::hash(location.as_bytes());
    state_dir
        .join("wal-pushed")
        .join(format!("{repo_id}-{}", &hash.to_hex()[..16]))
}

/// Whether some repository's receipts name `name` (no storage read: most pushes have
/// none, and then the repository's `config` is not read for them).
pub fn any_for(state_dir: &Path, name: &str) -> bool {
    let Ok(dirs) = std::fs::read_dir(state_dir.join("wal-pushed")) else {
        return false;
    };
    dirs.flatten().any(|d| d.path().join(name).exists())
}

/// Notes that the repository holds `hash` under `name` (best effort: a receipt that is
/// not written only costs the next push a repository open). Receipts older than
/// [`RECEIPT_TTL`] are removed on the way.
pub fn write(dir: &Path, name: &str, hash: &[u8; 32]) {
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let path = dir.join(name);
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let text = format!("{}\n", blake3::Hash::from(*hash).to_hex());
    if std::fs::write(&temp, text).is_err() || std::fs::rename(&temp, &path).is_err() {
        let _ = std::fs::remove_file(&temp);
    }
}

/// Removes receipts (and temporary files) older than [`RECEIPT_TTL`].
pub fn prune(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age > RECEIPT_TTL);
        if old {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Whether a receipt younger than [`RECEIPT_TTL`] says the repository holds exactly the
/// content of the segment at `path`, read now. A receipt that was looked at is removed
/// (it served, or it does not match and the full push decides).
pub fn confirms(dir: &Path, name: &str, path: &Path) -> bool {
    let receipt = dir.join(name);
    let Ok(meta) = std::fs::metadata(&receipt) else {
        return false;
    };
    let fresh = meta
        .modified()
        .ok()
        .and_then(|m| m.elapsed().ok())
        .is_some_and(|age| age <= RECEIPT_TTL);
    let noted = std::fs::read_to_string(&receipt).ok();
    let _ = std::fs::remove_file(&receipt);
    let Some(noted) = noted.filter(|_| fresh) else {
        return false;
    };
    let Ok(data) = std::fs::read(path) else {
        return false;
    };
    noted.trim() == blake3::hash(&data).to_hex().as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_confirms_only_its_content_once_and_while_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let receipts = super::dir(dir.path(), "repo-id", "/backup/repo");
        let segment = dir.path().join("000000010000000000000002");
        std::fs::write(&segment, b"the segment").unwrap();
        let name = "000000010000000000000002";
        assert!(!confirms(&receipts, name, &segment), "no receipt");

        write(&receipts, name, blake3::hash(b"the segment").as_bytes());
        assert!(confirms(&receipts, name, &segment));
        assert!(!confirms(&receipts, name, &segment), "used once");

        // Another content under the name: not confirmed (the full push decides).
        write(&receipts, name, blake3::hash(b"other bytes").as_bytes());
        assert!(!confirms(&receipts, name, &segment));

        // An old receipt is not believed, and pruning removes it.
        write(&receipts, name, blake3::hash(b"the segment").as_bytes());
        let old = std::time::SystemTime::now() - RECEIPT_TTL - Duration::from_secs(60);
        let file = std::fs::File::options()
            .write(true)
            .open(receipts.join(name))
            .unwrap();
        file.set_modified(old).unwrap();
        assert!(!confirms(&receipts, name, &segment));
        write(&receipts, name, blake3::hash(b"the segment").as_bytes());
        std::fs::File::options()
            .write(true)
            .open(receipts.join(name))
            .unwrap()
            .set_modified(old)
            .unwrap();
        prune(&receipts);
        assert!(!receipts.join(name).exists());

        // Another repository, or the same id at another location: other receipts.
        assert_ne!(receipts, super::dir(dir.path(), "other-id", "/backup/repo"));
        assert_ne!(receipts, super::dir(dir.path(), "repo-id", "/elsewhere"));
    }
}
