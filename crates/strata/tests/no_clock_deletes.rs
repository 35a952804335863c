//! Deletes that no clock can fool, tried as a user would with the real binary: garbage
//! collection beside a backup that runs longer than `[gc] grace`, a host whose clock runs
//! five minutes ahead, a summary the storage applies after the backup gave up on it, a
//! second process in another PID namespace or behind the packaged units' `/proc`, and a
//! restore across a repack. Each trial ends with `verify --read-data` clean, every backup
//! that reported complete restoring byte for byte, and no backup that exited non-zero
//! listed as complete before its data is safe.
//!
//! Each safety rule has a negative control: the test-only switch `STRATA_TEST_UNSAFE`
//! breaks that rule alone, and the same trial must then find the damage (so a trial that
//! would pass with the rule gone proves nothing and fails here).

use crate::common;

use common::{assert_root, realistic_tree, Site, PASSWORD};
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use strata_testkit::data::pseudo_random;
use strata_testkit::tree::{assert_same_tree, files_under};

/// A one-node site with a grace period of two seconds: any rule that rests on a backup
/// being shorter than the grace shows at once.
fn graced(extra: &str) -> Site {
    let site = Site::new()
        .node("db1", "data")
        .config_extra(&format!(
            "[gc]\ngrace = \"2s\"\n[retry]\nbudget_secs = 1\n{extra}"
        ))
        .build();
    realistic_tree(&site.path("data"));
    site.ok(&["init"]);
    site
}

/// New data the next backup must upload: packs of its own.
fn add_data(site: &Site, seed: u64) {
    fs::write(
        site.path(&format!("data/new-{seed}.bin")),
        pseudo_random(6 << 20, seed),
    )
    .unwrap();
}

/// `strata ARGS` held at its first write under `prefix` (`STRATA_TEST_HOLD_WRITE`).
fn held(site: &Site, args: &[&str], prefix: &str, env: &[(&str, &str)]) -> Held {
    held_with(site, "STRATA_TEST_HOLD_WRITE", args, prefix, env)
}

fn held_with(site: &Site, switch: &str, args: &[&str], prefix: &str, env: &[(&str, &str)]) -> Held {
    let hold = site.path(&format!("hold-{}", prefix.trim_end_matches('/')));
    let mut command = site.command();
    command
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = common::spawn_held(command, switch, prefix, &hold);
    Held {
        child: Some(child),
        hold,
    }
}

/// What `gc --json` reported.
fn gc(site: &Site, env: &[(&str, &str)]) -> serde_json::Value {
    serde_json::from_str(&site.ok_env(&["gc", "--json"], env)).unwrap()
}

/// The recorded backups as `list --json` shows them.
fn list(site: &Site) -> Vec<serde_json::Value> {
    serde_json::from_str(&site.ok(&["list", "--json"])).unwrap()
}

/// Whether `verify --read-data` passes.
fn verifies(site: &Site) -> bool {
    site.strata(&["verify", "--read-data"]).code == Some(0)
}

/// Whether backup `name` restores (every byte hash-checked against its manifest),
/// and with `compare` gives the data directory as it is now, byte for byte.
fn restores(site: &Site, name: &str, compare: bool) -> bool {
    let to = site.path(&format!("restored-{name}"));
    let out = site.strata(&["restore", name, "--to", to.to_str().unwrap()]);
    if out.code != Some(0) {
        return false;
    }
    !compare || same_as_data(site, &to)
}

/// Whether the restored tree at `to` (or its `db1`) is the data directory as it is
/// now, byte for byte.
fn same_as_data(site: &Site, to: &std::path::Path) -> bool {
    let root = if to.join("db1").is_dir() {
        to.join("db1")
    } else {
        to.to_path_buf()
    };
    let data = site.path("data");
    std::panic::catch_unwind(|| assert_same_tree(&data, &root)).is_ok()
}

/// The pack files in the repository.
fn packs(site: &Site) -> std::collections::BTreeSet<PathBuf> {
    files_under(&site.path("repo/data"))
}

/// The safety check every trial ends with: the repository verifies, every backup
/// listed complete restores, the newest byte for byte as the data is now.
fn intact(site: &Site) -> bool {
    let list = list(site);
    let complete: Vec<&serde_json::Value> =
        list.iter().filter(|b| b["status"] == "complete").collect();
    verifies(site)
        && complete
            .iter()
            .enumerate()
            .all(|(i, b)| restores(site, b["name"].as_str().unwrap(), i + 1 == complete.len()))
}

/// A process held at a write, let go by [`Held::release`].
struct Held {
    child: Option<Child>,
    hold: PathBuf,
}

impl Held {
    fn release(mut self) -> Output {
        fs::write(self.hold.join("release"), b"").unwrap();
        let mut child = self.child.take().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                panic!("the held process never ended");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Trial 1: a backup held right before its first index object (its packs uploaded, none
/// indexed) while a collection runs past the grace period. Returns whether the backup
/// exited 0 and the repository stayed intact.
fn backup_held_before_its_index(gc_env: &[(&str, &str)]) -> (bool, bool, serde_json::Value) {
    let site = graced("");
    site.ok(&["backup"]);
    add_data(&site, 11);
    let held = held(&site, &["backup"], "index/", &[]);
    std::thread::sleep(Duration::from_secs(3)); // past the grace
    let report = gc(&site, gc_env);
    let out = held.release();
    (out.status.success(), intact(&site), report)
}

#[test]
fn a_backup_longer_than_the_grace_keeps_its_unindexed_packs() {
    let (ok, intact, report) = backup_held_before_its_index(&[]);
    assert!(ok, "the backup completes");
    assert!(intact, "its packs survived the collection: {report}");
    assert_eq!(report["packs_deleted"], 0, "{report}");
    assert!(
        report["unindexed_waiting"].as_u64().unwrap() > 0,
        "{report}"
    );
}

#[test]
fn negative_control_unindexed_packs_judged_by_age_alone_lose_a_live_backup() {
    let (_, intact, report) =
        backup_held_before_its_index(&[("STRATA_TEST_UNSAFE", "unindexed-by-age")]);
    assert!(report["packs_deleted"].as_u64().unwrap() > 0, "{report}");
    assert!(
        !intact,
        "with the rule gone, the trial must find the damage"
    );
}

/// Trial 1b and 3: a backup held right before its summary (packs indexed, manifest
/// written) while a collection runs, from a host whose clock is `offset` seconds ahead.
fn backup_held_before_its_summary(gc_env: &[(&str, &str)]) -> (bool, bool) {
    let site = graced("");
    site.ok(&["backup"]);
    add_data(&site, 12);
    let held = held(&site, &["backup"], "summaries/", &[]);
    std::thread::sleep(Duration::from_secs(3));
    gc(&site, gc_env);
    let out = held.release();
    (out.status.success(), intact(&site))
}

#[test]
fn a_backup_held_before_its_summary_keeps_its_manifest_and_packs() {
    let (ok, intact) = backup_held_before_its_summary(&[]);
    assert!(ok && intact);
}

#[test]
fn a_collector_five_minutes_ahead_deletes_nothing_of_a_live_backup() {
    let (ok, intact) = backup_held_before_its_summary(&[("STRATA_TEST_CLOCK_OFFSET_SECS", "300")]);
    assert!(ok && intact);
}

#[test]
fn negative_control_marks_judged_by_wall_clocks_lose_a_live_backup() {
    let (_, intact) = backup_held_before_its_summary(&[
        ("STRATA_TEST_CLOCK_OFFSET_SECS", "300"),
        ("STRATA_TEST_UNSAFE", "wall-clock"),
    ]);
    assert!(
        !intact,
        "with the rule gone, the trial must find the damage"
    );
}

/// Trial 4: the storage applies a backup's summary after the backup gave up on it (it
/// exits non-zero); a collection runs in between; then the summary lands.
fn summary_landed_after_the_backup_gave_up(unsafe_rule: Option<&str>) -> (bool, bool) {
    let site = graced("");
    site.ok(&["backup"]);
    add_data(&site, 13);
    let late = site.path("late");
    let spec = format!("summaries/:{}", late.display());
    let mut env = vec![("STRATA_TEST_LAND_LATE", spec.as_str())];
    if let Some(rule) = unsafe_rule {
        env.push(("STRATA_TEST_UNSAFE", rule));
    }
    let out = site.strata_env(&["backup"], &env);
    assert!(out.code != Some(0), "its summary never came back");
    assert_eq!(list(&site).len(), 1, "only the first backup is listed");
    std::thread::sleep(Duration::from_secs(3));
    gc(&site, &env[1..]);
    // The storage applies the first write it was given, the complete summary.
    let mut kept: Vec<PathBuf> = fs::read_dir(&late)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "key"))
        .collect();
    kept.sort_by_key(|p| {
        let stem = p.file_stem().unwrap().to_string_lossy().to_string();
        stem.rsplit('-').next().unwrap().parse::<u64>().unwrap()
    });
    let first = &kept[0];
    let key = fs::read_to_string(first).unwrap();
    let body = fs::read(first.with_extension("data")).unwrap();
    let target = site.path("repo").join(&key);
    fs::create_dir_all(target.parent().unwrap()).unwrap();
    let temp = target.with_extension("landing");
    fs::write(&temp, body).unwrap();
    fs::rename(&temp, &target).unwrap();
    let listed_complete = list(&site)
        .iter()
        .filter(|b| b["status"] == "complete")
        .count();
    (listed_complete == 2, intact(&site))
}

#[test]
fn a_summary_that_lands_after_its_backup_gave_up_names_data_that_is_still_there() {
    let (landed, intact) = summary_landed_after_the_backup_gave_up(None);
    assert!(landed, "the landed summary is a backup like any other");
    assert!(intact, "gc waited out the landing window");
}

#[test]
fn negative_control_no_landing_wait_publishes_a_backup_whose_data_is_gone() {
    let (landed, intact) = summary_landed_after_the_backup_gave_up(Some("no-landing-wait"));
    assert!(landed);
    assert!(
        !intact,
        "with the rule gone, the trial must find the damage"
    );
}

/// Trial 2: a backup holds the cluster lock (held at its index write); a second backup
/// runs as `wrap` says (another PID namespace, a `/proc` as the packaged units mount
/// it). It must find the cluster busy (exit 6).
fn second_backup_beside_a_live_holder(wrap: &str, unsafe_rule: Option<&str>) -> (Output, Output) {
    assert_root("PID and mount namespaces (unshare)");
    let site = graced("[server]\nlease_ttl_secs = 600\n");
    site.ok(&["backup"]);
    add_data(&site, 14);
    let held = held(&site, &["backup"], "index/", &[]);
    let mut cmd = Command::new("unshare");
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("STRATA_PASSWORD", PASSWORD)
        .env("STRATA_STRATA", env!("CARGO_BIN_EXE_strata"))
        .env("STRATA_CONFIG_PATH", site.config())
        .current_dir(site.dir());
    if let Some(rule) = unsafe_rule {
        cmd.env("STRATA_TEST_UNSAFE", rule);
    }
    let out = cmd
        .args(["-pfm", "--mount-proc", "sh", "-c"])
        .arg(format!(
            "{wrap} exec \"$STRATA_STRATA\" --config \"$STRATA_CONFIG_PATH\" backup"
        ))
        .output()
        .unwrap();
    (out, held.release())
}

/// The second backup, run as `wrap` says, finds the cluster busy (exit 6) and the first
/// completes.
fn assert_second_backup_is_refused(wrap: &str) {
    let (out, first) = second_backup_beside_a_live_holder(wrap, None);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(
        out.status.code(),
        Some(6),
        "busy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_live_holder_in_another_pid_namespace_is_not_taken_for_dead() {
    assert_second_backup_is_refused("");
}

#[test]
fn a_live_holder_seen_through_the_packaged_units_proc_is_not_taken_for_dead() {
    // ProcSubset=pid and ProtectProc=invisible, as the packaged units set them.
    assert_second_backup_is_refused("mount -t proc -o subset=pid,hidepid=invisible proc /proc &&");
}

#[test]
fn negative_control_proc_liveness_takes_a_live_lock_over() {
    let (out, _) = second_backup_beside_a_live_holder("", Some("proc-liveness"));
    assert!(
        out.status.success(),
        "with the rule gone, the second backup takes over: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two backups whose blobs share packs that are two thirds garbage once the first is
/// deleted; their names, oldest first.
fn two_backups_in_packs_a_delete_repacks(site: &Site) -> (String, String) {
    // 30 files of 1 MiB; the second backup keeps every third: its blobs sit in packs
    // that are two thirds garbage once the first backup is gone.
    fs::remove_dir_all(site.path("data")).unwrap();
    fs::create_dir_all(site.path("data")).unwrap();
    for i in 0..30u64 {
        fs::write(
            site.path(&format!("data/f{i:02}.bin")),
            pseudo_random(1 << 20, 100 + i),
        )
        .unwrap();
    }
    site.ok(&["backup"]);
    for i in (0..30u64).filter(|i| i % 3 != 0) {
        fs::remove_file(site.path(&format!("data/f{i:02}.bin"))).unwrap();
    }
    site.ok(&["backup"]);
    let list = list(site);
    (
        list[0]["name"].as_str().unwrap().to_string(),
        list[1]["name"].as_str().unwrap().to_string(),
    )
}

/// Trial 5: a restore of the second backup, held at its first read of a pack after it
/// planned every read; meanwhile the first backup is deleted and a collection repacks
/// the mostly-garbage packs and deletes them; then the restore goes on.
fn restore_across_a_repack(unsafe_rule: Option<&str>) -> (bool, usize) {
    let site = graced("");
    let (first, second) = two_backups_in_packs_a_delete_repacks(&site);
    let to = site.path("restored");
    let mut env = vec![];
    if let Some(rule) = unsafe_rule {
        env.push(("STRATA_TEST_UNSAFE", rule));
    }
    let held = held_with(
        &site,
        "STRATA_TEST_HOLD_READ",
        &["restore", &second, "--to", to.to_str().unwrap()],
        "data/",
        &env,
    );
    let before = packs(&site);
    // The delete collects garbage itself; the collection after it finds nothing more.
    site.ok(&["delete", &first]);
    gc(&site, &[]);
    let gone = before.difference(&packs(&site)).count();
    let out = held.release();
    let restored = out.status.success() && same_as_data(&site, &to);
    (restored && intact(&site), gone)
}

/// A verification that listed a backup deleted (and repacked away) before it read that
/// backup's manifest says the backup was deleted, not damaged, and finds the rest intact.
#[test]
fn a_verify_across_a_delete_calls_the_backup_deleted_not_damaged() {
    let site = graced("");
    let (first, _second) = two_backups_in_packs_a_delete_repacks(&site);
    // From a host with no cache of the repository (another host, a new pod).
    let fresh = site.path("fresh-state");
    let held = held_with(
        &site,
        "STRATA_TEST_HOLD_READ",
        &["verify", "--read-data", "--json"],
        "data/",
        &[("STRATA_STATE_DIR", fresh.to_str().unwrap())],
    );
    let before = packs(&site);
    site.ok(&["delete", &first]);
    gc(&site, &[]);
    assert!(
        before.difference(&packs(&site)).count() > 0,
        "packs the verify listed were repacked and deleted"
    );
    let out = held.release();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["problems"], serde_json::json!([]), "{report:#}");
    // Whatever of the deleted backup could still be read was read; what could not is
    // named as deleted, never as damage.
    let deleted = report["deleted_meanwhile"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(deleted.iter().all(|b| b == &first), "{report:#}");
    assert!(intact(&site));
}

#[test]
fn a_restore_across_a_repack_finishes() {
    let (ok, repacked) = restore_across_a_repack(None);
    assert!(
        repacked > 0,
        "the packs the restore planned with were repacked and deleted"
    );
    assert!(ok, "the restore found the moved blobs");
}

#[test]
fn negative_control_readers_that_never_look_again_fail_across_a_repack() {
    let (ok, repacked) = restore_across_a_repack(Some("no-relookup"));
    assert!(repacked > 0);
    assert!(!ok, "with the rule gone, the trial must find the damage");
}

/// A backup's mark lives as long as the configured lease (`[server] lease_ttl_secs`), not a
/// fixed minute: a storage outage the lease rides out does not cost the backup its mark.
#[test]
fn a_backups_mark_lives_as_long_as_the_configured_lease() {
    let site = graced("[server]\nlease_ttl_secs = 300\n");
    let held = held(&site, &["backup"], "index/", &[]);
    let marks: Vec<serde_json::Value> = fs::read_dir(site.path("repo/writers"))
        .unwrap()
        .map(|e| serde_json::from_slice(&fs::read(e.unwrap().path()).unwrap()).unwrap())
        .collect();
    assert_eq!(marks.len(), 1, "{marks:?}");
    assert_eq!(marks[0]["kind"], "backup");
    assert_eq!(marks[0]["ttl_ms"], 300_000, "{:?}", marks[0]);
    assert!(held.release().status.success());
}

/// Backups are named and ordered by the storage's clock: a backup taken later by a host
/// whose clock is ten minutes behind is the newest, `latest`, and the one
/// `cleanup --keep-last 1` keeps; `show` says where that host's clock stood. (Ordered by
/// hosts' clocks, it counted as the older one: `latest` returned the first backup and the
/// cleanup deleted the newest.)
#[test]
fn a_backup_by_a_host_whose_clock_is_behind_is_still_the_latest() {
    let site = graced("");
    let first = backup_name(&site.ok(&["backup", "--json"]));
    add_data(&site, 1);
    let behind = [("STRATA_TEST_CLOCK_OFFSET_SECS", "-600")];
    let second = backup_name(&site.ok_env(&["backup", "--json"], &behind));
    // Named in the storage's second, not ten minutes before the first.
    assert!(
        second[..16] >= first[..16],
        "named by the storage's clock: {first} {second}"
    );

    let names: Vec<String> = list(&site)
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, [first.clone(), second.clone()], "oldest first");
    let latest: serde_json::Value =
        serde_json::from_str(&site.ok(&["show", "latest", "--json"])).unwrap();
    assert_eq!(latest["name"], second.as_str());
    let (started, host) = (
        latest["started"].as_str().unwrap(),
        latest["host_started"].as_str().unwrap(),
    );
    let off = humantime::parse_rfc3339(started)
        .unwrap()
        .duration_since(humantime::parse_rfc3339(host).unwrap())
        .unwrap();
    assert!(
        (595..=605).contains(&off.as_secs()),
        "the host's time beside the storage's: {started} {host}"
    );
    let shown = site.ok(&["show", "latest"]);
    assert!(shown.contains("10m behind the storage's"), "{shown}");

    site.ok_env(&["cleanup", "--keep-last", "1"], &behind);
    let left: Vec<String> = list(&site)
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, [second], "the newest backup is kept");
}

fn backup_name(json: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json).unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string()
}
