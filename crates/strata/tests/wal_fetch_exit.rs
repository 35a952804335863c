//! `strata wal-fetch` as PostgreSQL's `restore_command`: exit 1 tells PostgreSQL the
//! archive ends here (recovery then finishes and the server is promoted), so only a file
//! the archive truly lacks may answer 1; every other failure must stop recovery.

use crate::common;

use common::{pseudo_random, Env};
use std::fs;

const SEGMENT: &str = "000000010000000000000001";

/// A pushed segment comes back; a missing one is exit 1 without a word; a repository
/// that cannot be opened (its config damaged, every key file unusable) is exit 126 with
/// the reason, never 1: answering "end of archive" there would end recovery early, at
/// the wrong point, with every later transaction lost.
#[test]
fn wal_fetch_answers_end_of_archive_only_for_a_missing_file() {
    let env = Env::new();
    let wal = env.path("pg_wal");
    fs::create_dir_all(&wal).unwrap();
    let data = pseudo_random(16 * 1024, 1);
    fs::write(wal.join(SEGMENT), &data).unwrap();
    let pushed = env.ok(&["wal-push", wal.join(SEGMENT).to_str().unwrap()]);
    assert!(
        pushed.starts_with(&format!("archived {SEGMENT} (")),
        "{pushed}"
    );
    let dest = env.path("fetched");
    let dest = dest.to_str().unwrap();
    env.ok(&["wal-fetch", SEGMENT, dest]);
    assert_eq!(fs::read(dest).unwrap(), data);

    let missing = env.run(&["wal-fetch", "000000010000000000000002", dest]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(missing.stdout.is_empty() && missing.stderr.is_empty());

    // The first fetch started a prefetcher, which opened the repository then and keeps
    // answering misses with authenticated files. The fetches below must open it
    // themselves: another state directory, another (empty) spool.
    let fresh_state = env.path("fresh-state");
    let fails = |code: i32| {
        let out = env
            .command()
            .env("STRATA_STATE_DIR", &fresh_state)
            .args(["wal-fetch", SEGMENT, dest])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(code), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let keys: Vec<_> = fs::read_dir(env.repo.join("keys")).unwrap().collect();
    for key in keys {
        fs::write(key.unwrap().path(), b"{\"truncated").unwrap();
    }
    let stderr = fails(126);
    assert!(stderr.contains("no usable key"), "{stderr}");

    fs::write(env.repo.join("config"), b"garbage").unwrap();
    let stderr = fails(126);
    assert!(stderr.contains("corrupted"), "{stderr}");
    assert_eq!(fs::read(dest).unwrap(), data, "nothing written on failure");
}
