//! Fenced locks and credentials that cannot delete, against the real binary.
//!
//! A backup is stopped at an exact point (its packs uploaded, its first index object not
//! yet written) with the test-only switch `STRATA_TEST_HOLD_WRITE`, then frozen with
//! SIGSTOP past its lock's TTL (`[server] lease_ttl_secs = 2`) while garbage collection or
//! another backup takes the cluster over. What must not happen: garbage collection
//! deleting a pack the stalled backup uploaded, or the stalled backup, resumed, writing an
//! index object, manifest or summary; afterwards `verify --read-data` must pass (it also
//! checks that the index lists no missing pack). Stores that refuse deletes
//! (`STRATA_TEST_REFUSE_DELETES=1`, test-only too) must not stop backups, verification or
//! WAL pushes, nor leave anything that blocks the next operation.
// Tests signal their own children and read or set limits through libc: each block
// says why it is sound.
#![allow(unsafe_code)]

use crate::common;

use common::{assert_success, pseudo_random, realistic_tree, Site, PASSWORD};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const TTL_SECS: u64 = 2;

/// A one-node site whose cluster lock lives `secs` unless renewed ([`TTL_SECS`] by
/// default: short, so tests are quick; not shorter, so a loaded machine still renews in
/// time).
fn leased(secs: u64) -> Site {
    let site = Site::new()
        .node("db1", "data")
        .config_extra(&format!("[server]\nlease_ttl_secs = {secs}\n"))
        .build();
    realistic_tree(&site.path("data"));
    site.ok(&["init"]);
    site
}

/// Runs strata as a process of another host (a UTS namespace of its own with another
/// host name), as the coordinator of another machine would: its lock cannot be judged
/// by whether its process still runs here.
fn ok_on_other_host(site: &Site, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new("unshare");
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("STRATA_PASSWORD", PASSWORD)
        .args([
            "-u",
            "sh",
            "-c",
            "hostname strata-test-other-host && exec \"$@\"",
            "sh",
            env!("CARGO_BIN_EXE_strata"),
            "--config",
        ])
        .arg(site.config())
        .args(args)
        .current_dir(site.dir());
    for (k, v) in env {
        cmd.env(k, v);
    }
    assert_success(
        &format!("strata {args:?} on another host (needs root for `unshare -u`)"),
        &cmd.output().unwrap(),
    )
}

fn repo(site: &Site) -> PathBuf {
    site.dir().join("repo")
}

/// Spawns strata (stderr piped) held at its first write under the repository prefix
/// `prefix` (the `STRATA_TEST_HOLD_WRITE` hook), and waits until it is held there;
/// returns the process and the hold directory (write `release` into it to let the
/// write go on).
fn spawn_held(site: &Site, args: &[&str], env: &[(&str, &str)], prefix: &str) -> (Child, PathBuf) {
    let hold = site.dir().join("hold");
    let mut command = site.command();
    command
        .args(args)
        .envs(env.iter().copied())
        .stderr(Stdio::piped());
    let child = common::spawn_held(command, "STRATA_TEST_HOLD_WRITE", prefix, &hold);
    (child, hold)
}

/// Every object key under `prefix` (a directory of the repository).
fn objects(site: &Site, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![repo(site).join(prefix)];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if !path.file_name().unwrap().to_string_lossy().starts_with('.') {
                let key = path.strip_prefix(repo(site)).unwrap();
                out.insert(key.display().to_string());
            }
        }
    }
    out
}

/// The names of the recorded backups.
fn backups(site: &Site) -> BTreeSet<String> {
    let list: serde_json::Value = serde_json::from_str(&site.ok(&["list", "--json"])).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect()
}

/// Adds data the next backup must upload.
fn change_data(site: &Site, seed: u64) {
    fs::write(
        site.dir().join(format!("data/new-{seed}.bin")),
        pseudo_random(2 << 20, seed),
    )
    .unwrap();
}

/// The backups that have manifests (one directory each under `manifests/`).
fn manifest_backups(site: &Site) -> BTreeSet<String> {
    objects(site, "manifests")
        .iter()
        .map(|k| k.split('/').nth(1).unwrap().to_string())
        .collect()
}

/// A `strata backup` stopped right before its first index object: packs uploaded, nothing
/// indexed yet.
struct Stalled {
    child: Option<Child>,
    hold: PathBuf,
}

impl Stalled {
    fn start(site: &Site) -> Stalled {
        Stalled::at(site, &["backup"], "index/", "hold")
    }

    /// `strata ARGS` held at its first write under `prefix`, with the hold directory
    /// `hold` of the site (one per process held at once).
    fn at(site: &Site, args: &[&str], prefix: &str, hold: &str) -> Stalled {
        let hold = site.dir().join(hold);
        fs::create_dir_all(&hold).unwrap();
        let spec = format!("{prefix}:{}", hold.display());
        let child = site
            .command()
            .args(args)
            .env("STRATA_TEST_HOLD_WRITE", &spec)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stalled = Stalled {
            child: Some(child),
            hold,
        };
        common::wait_for_held_write(
            &stalled.hold,
            stalled.child.as_mut().unwrap(),
            &format!("the write of strata {args:?} under {prefix}"),
        );
        stalled
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let pid = self.child.as_ref().unwrap().id() as i32;
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Freezes the whole process (lock renewal included) until the lock's TTL is over.
    fn freeze_past_ttl(&self) {
        self.signal(libc::SIGSTOP);
        // Two TTLs: others find the lock expired by its record.
        std::thread::sleep(Duration::from_millis(2 * 1000 * TTL_SECS + 400));
    }

    /// Lets its held write go on (without a signal: for a process that was not frozen).
    fn release(self) -> (std::process::ExitStatus, String) {
        self.resume()
    }

    /// Lets it go on; returns its exit status and stderr.
    fn resume(mut self) -> (std::process::ExitStatus, String) {
        fs::write(self.hold.join("release"), b"").unwrap();
        self.signal(libc::SIGCONT);
        let out = self.child.take().unwrap().wait_with_output().unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Stalled {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = fs::write(self.hold.join("release"), b"");
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn packs(site: &Site) -> BTreeSet<String> {
    objects(site, "data")
}

#[test]
fn gc_spares_the_packs_of_a_stalled_backup_which_then_makes_nothing_visible() {
    let site = leased(TTL_SECS);
    site.ok(&["backup"]);
    let first = backups(&site);
    change_data(&site, 7);
    let before = packs(&site);
    let stalled = Stalled::start(&site);
    let uploaded: BTreeSet<String> = packs(&site).difference(&before).cloned().collect();
    assert!(!uploaded.is_empty(), "the stalled backup uploaded packs");
    let index_before = objects(&site, "index");
    stalled.freeze_past_ttl();

    // Garbage collection takes the expired lock over while the backup is frozen.
    site.ok(&["gc"]);
    let after_gc = packs(&site);
    for pack in &uploaded {
        assert!(
            after_gc.contains(pack),
            "gc deleted {pack}, uploaded by a backup that may still index it"
        );
    }

    let (status, stderr) = stalled.resume();
    assert!(!status.success(), "the stalled backup succeeded:\n{stderr}");
    assert!(
        stderr.contains("lost the cluster lock") && stderr.contains("not recorded"),
        "says it lost its lock: {stderr}"
    );
    assert_eq!(backups(&site), first, "no summary of the stalled backup");
    assert_eq!(manifest_backups(&site), first, "no manifest of it");
    let new_index: Vec<String> = objects(&site, "index")
        .difference(&index_before)
        .cloned()
        .collect();
    // gc rewrote the index once; the stalled backup added nothing to it.
    assert!(new_index.len() <= 1, "index objects written: {new_index:?}");
    site.ok(&["verify", "--read-data"]);

    // Its leftovers go once past the grace period, and nothing else does.
    let config = fs::read_to_string(site.config()).unwrap() + "[gc]\ngrace = \"0s\"\n";
    fs::write(site.config(), config).unwrap();
    site.ok(&["gc"]);
    for pack in &uploaded {
        assert!(!packs(&site).contains(pack), "leftover {pack} collected");
    }
    site.ok(&["verify", "--read-data"]);
}

#[test]
fn a_lock_write_that_lands_late_lets_only_one_operation_run() {
    // The race, for garbage collection: gc's lock write lands late while a backup
    // uploads its packs. gc takes its own lock and runs beside the backup, refusing
    // nothing, and must delete none of the backup's packs.
    let site = leased(60);
    site.ok(&["backup"]);
    change_data(&site, 11);
    let gc = Stalled::at(&site, &["gc"], "locks/", "hold-gc");
    let before = packs(&site);
    let backup = Stalled::at(&site, &["backup"], "index/", "hold-backup");
    let uploaded: BTreeSet<String> = packs(&site).difference(&before).cloned().collect();
    assert!(!uploaded.is_empty(), "the backup uploaded packs");

    let (status, stderr) = gc.release();
    assert!(status.success(), "gc runs beside a backup:\n{stderr}");
    assert!(
        uploaded.iter().all(|p| packs(&site).contains(p)),
        "gc deleted packs of the running backup"
    );

    let (status, stderr) = backup.release();
    assert!(status.success(), "the backup failed:\n{stderr}");
    assert_eq!(backups(&site).len(), 2);
    site.ok(&["verify", "--read-data"]);
    // And a refused delete removes nothing: held the same way behind a running backup.
    change_data(&site, 12);
    let name = backups(&site).into_iter().next().unwrap();
    let delete = Stalled::at(&site, &["delete", &name], "locks/", "hold-delete");
    let backup = Stalled::at(&site, &["backup"], "index/", "hold-backup-2");
    let (status, stderr) = delete.release();
    assert_eq!(status.code(), Some(6), "delete must be refused:\n{stderr}");
    assert!(
        backups(&site).contains(&name),
        "a refused delete removed {name}"
    );
    let (status, stderr) = backup.release();
    assert!(status.success(), "{stderr}");
    site.ok(&["verify", "--read-data"]);
}

#[test]
fn a_wal_push_stalled_past_its_mark_is_not_acknowledged_and_its_retry_stores_it() {
    let site = leased(TTL_SECS);
    let seg = segment(site.dir(), 9);
    let name = seg.file_name().unwrap().to_str().unwrap().to_string();
    // Held right before its archive record, its data uploaded and indexed; then frozen
    // (a VM pause) until its mark has expired.
    let push = Stalled::at(
        &site,
        &["wal-push", seg.to_str().unwrap()],
        "archive/wal/",
        "hold-push",
    );
    push.freeze_past_ttl();
    // gc finds no live writer and removes the pack no record names yet.
    let config = fs::read_to_string(site.config()).unwrap() + "[gc]\ngrace = \"0s\"\n";
    fs::write(site.config(), config).unwrap();
    site.ok(&["gc"]);
    let (status, stderr) = push.resume();
    assert!(
        !status.success(),
        "a push whose mark expired was acknowledged:\n{stderr}"
    );
    assert!(site.strata(&["wal", "verify"]).code == Some(0));
    // PostgreSQL runs archive_command again: the segment is stored, not "already there".
    let again = site.ok(&["wal-push", seg.to_str().unwrap()]);
    assert!(again.contains(&format!("archived {name}")), "{again}");
    site.ok(&["wal", "verify"]);
    let fetched = site.dir().join("fetched");
    site.ok(&["wal-fetch", &name, fetched.to_str().unwrap()]);
    assert_eq!(fs::read(&fetched).unwrap(), fs::read(&seg).unwrap());
}

#[test]
fn a_backup_resumed_after_another_took_over_writes_nothing_and_fails() {
    let site = leased(TTL_SECS);
    change_data(&site, 1);
    let stalled = Stalled::start(&site);
    stalled.freeze_past_ttl();

    // A second backup finds the lock expired, fences it and completes.
    change_data(&site, 2);
    site.ok(&["backup"]);
    let second = backups(&site);
    assert_eq!(second.len(), 1);
    let index = objects(&site, "index");
    let summaries = objects(&site, "summaries");

    let (status, stderr) = stalled.resume();
    assert!(!status.success(), "the stalled backup succeeded:\n{stderr}");
    assert!(
        stderr.contains("lost the cluster lock") && stderr.contains("not recorded"),
        "says it lost its lock: {stderr}"
    );
    assert_eq!(
        objects(&site, "index"),
        index,
        "no index object of the stalled backup"
    );
    assert_eq!(objects(&site, "summaries"), summaries, "no summary of it");
    assert_eq!(backups(&site), second);
    assert_eq!(manifest_backups(&site), second, "no manifest of it");
    site.ok(&["verify", "--read-data"]);
    // Its lock is no obstacle: the next backup runs at once.
    site.ok(&["backup"]);
}

const NO_DELETE: [(&str, &str); 1] = [("STRATA_TEST_REFUSE_DELETES", "1")];

#[test]
fn backups_and_verification_work_with_credentials_that_cannot_delete() {
    // A TTL far longer than the test: a lock left behind would block it.
    let site = leased(120);
    ok_on_other_host(&site, &["backup"], &NO_DELETE);
    let locks = objects(&site, "locks");
    assert!(!locks.is_empty(), "the refused deletes left lock objects");
    // Left behind by another host's process, they block nothing: the next backup, from
    // this host, starts at once.
    change_data(&site, 3);
    site.ok_env(&["backup"], &NO_DELETE);
    site.ok_env(&["verify", "--read-data"], &NO_DELETE);
    // Verifying again supersedes the older records, which the store refuses to delete.
    let out = site.strata_env(&["verify", "--read-data"], &NO_DELETE);
    assert!(out.code == Some(0), "{}", out.stderr);
    assert_eq!(backups(&site).len(), 2);
    // Garbage collection, with delete rights, then removes what was left behind.
    site.ok(&["gc"]);
    site.ok(&["backup"]);
}

/// A WAL segment name and some content (16 KiB: one blob whatever the chunker).
fn segment(dir: &Path, n: u32) -> PathBuf {
    let wal = dir.join("pg_wal");
    fs::create_dir_all(&wal).unwrap();
    let path = wal.join(format!("00000001000000000000{n:04X}"));
    fs::write(&path, pseudo_random(16 * 1024, n as u64)).unwrap();
    path
}

#[test]
fn wal_push_keeps_its_mark_alive_and_works_without_delete_rights() {
    let site = leased(TTL_SECS);
    let first = segment(site.dir(), 1);
    let (push, hold) = spawn_held(
        &site,
        &["wal-push", first.to_str().unwrap()],
        &[NO_DELETE[0]],
        "archive/",
    );
    // Three mark TTLs later the mark is still live: it is renewed while the push runs.
    std::thread::sleep(Duration::from_millis(3 * 1000 * TTL_SECS + 200));
    let marks = objects(&site, "writers");
    assert_eq!(marks.len(), 1, "{marks:?}");
    let mark: serde_json::Value =
        serde_json::from_slice(&fs::read(repo(&site).join(marks.first().unwrap())).unwrap())
            .unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        mark["expires_ms"].as_u64().unwrap() > now_ms,
        "the mark expired while wal-push ran: {mark}"
    );
    fs::write(hold.join("release"), b"").unwrap();
    let out = push.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A second push with the mark of the first left behind (its delete was refused).
    site.ok_env(
        &["wal-push", segment(site.dir(), 2).to_str().unwrap()],
        &NO_DELETE,
    );
    // The marks left behind do not hold garbage collection up.
    site.ok(&["gc"]);
    let archived = objects(&site, "archive");
    for n in ["000000010000000000000001", "000000010000000000000002"] {
        assert!(
            archived.iter().any(|k| k.ends_with(n)),
            "{n} archived: {archived:?}"
        );
    }
}

#[test]
fn wal_push_takes_its_mark_before_reading_the_index() {
    // A mark that outlives the hold below: its expiry is reckoned from before its write.
    let site = leased(60);
    let seg = segment(site.dir(), 3);
    // A backup holding the same bytes: wal-push finds the blob in the index and would
    // not upload it again.
    fs::copy(&seg, site.dir().join("data/copy-of-a-segment")).unwrap();
    site.ok(&["backup"]);
    let backup = backups(&site).pop_first().unwrap();

    // wal-push, stopped at the write of its writer mark.
    let (push, hold) = spawn_held(&site, &["wal-push", seg.to_str().unwrap()], &[], "writers/");
    // Meanwhile the backup is deleted and garbage collection, seeing no mark, removes
    // its pack, the blob's only copy.
    site.ok(&["delete", &backup]);
    fs::write(hold.join("release"), b"").unwrap();
    let out = push.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The archived segment must read back: wal-push read the index after its mark, so
    // it stored the blob again instead of pointing at the deleted pack.
    site.ok(&["wal", "verify"]);
    let back = site.dir().join("fetched");
    site.ok(&[
        "wal-fetch",
        seg.file_name().unwrap().to_str().unwrap(),
        back.to_str().unwrap(),
    ]);
    assert_eq!(fs::read(&back).unwrap(), fs::read(&seg).unwrap());
}

#[test]
fn a_gc_stopped_by_sigterm_gives_its_lock_back() {
    // SIGTERM while gc's lock write is in flight: gc waits for its answer, stops at the
    // next safe point and releases, so the next gc runs at once.
    let site = leased(60);
    site.ok(&["backup"]);
    let gc = Stalled::at(&site, &["gc"], "locks/", "hold-gc");
    gc.signal(libc::SIGTERM);
    let (status, stderr) = gc.release();
    assert_eq!(status.code(), Some(1), "a stopped gc fails:\n{stderr}");
    assert!(stderr.contains("stopped at a safe point"), "{stderr}");
    site.ok(&["gc"]);
    // The same with the lock held and its probe of the storage's clock in flight (Ctrl-C):
    // it ends on its own (stopped, or done when no safe point came before its end), with
    // its lock given back.
    let gc = Stalled::at(&site, &["gc"], "locks/clock/", "hold-gc-2");
    gc.signal(libc::SIGINT);
    let (status, stderr) = gc.release();
    assert!(
        matches!(status.code(), Some(0 | 1)),
        "gc did not end by itself ({status:?}):\n{stderr}"
    );
    site.ok(&["gc"]);
}

#[test]
fn a_delete_or_cleanup_stopped_by_sigterm_gives_the_gc_lock_back() {
    // Deletes and cleanups collect too, under the same lock: stopped by SIGTERM while
    // their lock write is in flight, they give it back and the next gc runs at once.
    let site = leased(60);
    site.ok(&["backup"]);
    change_data(&site, 1);
    site.ok(&["backup"]);
    let first = backups(&site).into_iter().next().unwrap();
    let delete = Stalled::at(&site, &["delete", &first], "locks/", "hold-delete");
    delete.signal(libc::SIGTERM);
    let (status, stderr) = delete.release();
    assert!(
        status.code() == Some(1) && stderr.contains("stopped"),
        "a stopped delete fails, saying so ({status:?}):\n{stderr}"
    );
    site.ok(&["gc"]);
    let cleanup = Stalled::at(
        &site,
        &["cleanup", "--keep-last", "1"],
        "locks/",
        "hold-cleanup",
    );
    cleanup.signal(libc::SIGTERM);
    let (status, stderr) = cleanup.release();
    assert!(
        status.code() == Some(1) && stderr.contains("stopped"),
        "a stopped cleanup fails, saying so ({status:?}):\n{stderr}"
    );
    site.ok(&["gc"]);
}

#[test]
fn a_killed_gc_on_a_local_directory_is_taken_over_at_once() {
    // SIGKILL after gc took its lock (held at its probe of the storage's clock): on a
    // directory of this host's disk nothing the dead process wrote can land later, so
    // the next gc takes its lock over at once (object storage waits out the landing
    // window, saying so: the lock's unit tests).
    let site = leased(60);
    site.ok(&["backup"]);
    let gc = Stalled::at(&site, &["gc"], "locks/clock/", "hold-gc");
    gc.signal(libc::SIGKILL);
    let _ = gc.release();
    let out = site.strata(&["gc"]);
    let stderr = &out.stderr;
    assert_eq!(out.code, Some(0), "{stderr}");
}
