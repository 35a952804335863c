//! One way in: the command line acts through the same use cases as the API and the
//! scheduler (`strata_coordinator::actions`), so a rule such as "delete takes the cluster
//! lock" holds for every caller. Against the real binary.

use crate::common;

use common::{assert_same_tree, copy_tree, files_under, pseudo_random, Env};
use std::fs;
use std::path::Path;
use std::process::{Child, Stdio};

/// A backup process stopped before its first index write (packs uploaded, cluster lock
/// held and renewed), released or killed when dropped.
struct HeldBackup {
    child: Option<Child>,
    hold: std::path::PathBuf,
}

impl HeldBackup {
    fn start(env: &Env, src: &Path) -> HeldBackup {
        let hold = env.path("hold");
        let mut backup = env.command();
        backup
            .args(["backup", src.to_str().unwrap(), "--node-name", "db"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        HeldBackup {
            child: Some(common::backup_held_at_first_index_write(backup, &hold)),
            hold,
        }
    }

    /// Lets the backup finish; asserts it succeeded.
    fn finish(mut self) {
        fs::write(self.hold.join("release"), b"").unwrap();
        let out = self.child.take().unwrap().wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "the held backup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for HeldBackup {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = fs::write(self.hold.join("release"), b"");
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A local `strata delete` while a backup runs must be refused as busy (exit 6) before it
/// removes anything: not delete the other backup's summary and manifests and then report
/// "busy" from its garbage collection. Afterwards the other backup is listed and restores
/// byte for byte, and once the cluster is free the same delete goes through.
#[test]
fn local_delete_during_a_backup_is_refused_as_busy_and_deletes_nothing() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.bin"), pseudo_random(1 << 20, 1)).unwrap();
    fs::write(src.join("b.txt"), b"the first backup\n").unwrap();
    let first = env.json(&["backup", src.to_str().unwrap(), "--node-name", "db"]);
    let other = first["name"].as_str().unwrap().to_string();
    let expected = env.path("expected");
    copy_tree(&src, &expected);

    // A second backup, with new data, stopped while it holds the cluster lock.
    fs::write(src.join("c.bin"), pseudo_random(1 << 20, 2)).unwrap();
    let held = HeldBackup::start(&env, &src);
    let summaries = files_under(&env.repo.join("summaries"));
    let manifests = files_under(&env.repo.join("manifests"));
    assert!(
        summaries.iter().any(|s| s.ends_with(&other)),
        "{other} has no summary: {summaries:?}"
    );
    assert!(
        manifests.iter().any(|m| m.starts_with(&other)),
        "{other} has no manifest: {manifests:?}"
    );

    let stderr = env.fails(&["delete", &other], 6);
    assert!(
        stderr.contains("busy") || stderr.contains("held"),
        "not refused as busy: {stderr}"
    );
    assert!(!stderr.contains("deleted"), "reported a deletion: {stderr}");
    // Nothing of the backup went.
    assert_eq!(files_under(&env.repo.join("summaries")), summaries);
    assert_eq!(files_under(&env.repo.join("manifests")), manifests);

    held.finish();
    let listed = env.backup_names();
    assert!(listed.contains(&other), "{other} not listed: {listed:?}");
    assert_eq!(listed.len(), 2, "{listed:?}");
    let restored = env.path("restored");
    env.ok(&["restore", &other, "--to", restored.to_str().unwrap()]);
    assert_same_tree(&expected, &restored);

    // With the cluster free, the delete goes through.
    let out = env.ok(&["delete", &other]);
    assert!(out.contains(&format!("deleted backup {other}")), "{out}");
    env.ok(&["verify", "--read-data"]);
}
