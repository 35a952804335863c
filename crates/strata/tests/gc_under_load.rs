//! Garbage collection in a loop against concurrent backups, deletes, WAL pushes and
//! restores, through the real binary: no backup, push or restore is refused or fails
//! because a collection runs, and afterwards every remaining backup restores byte for
//! byte, every pushed segment is fetched intact and `verify --read-data` is clean.
//!
//! Runs for `STRATA_GC_LOAD_SECS` seconds (default 40; longer by hand).

use crate::common;

use common::{pseudo_random, realistic_tree, Site};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Tree = BTreeMap<String, Vec<u8>>;

/// The regular files under `root` with their content, and symlinks with their targets.
fn file_contents(root: &Path) -> Tree {
    let mut out = Tree::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else if meta.file_type().is_symlink() {
                let target = fs::read_link(&path).unwrap();
                out.insert(rel, target.into_os_string().into_encoded_bytes());
            } else if meta.is_file() {
                out.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// The names `list --json` shows, oldest first.
fn backups(site: &Site) -> Vec<String> {
    site.json(&["list", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect()
}

fn segment_name(n: u32) -> String {
    format!("00000001000000000000{n:04X}")
}

fn segment(dir: &Path, n: u32) -> (PathBuf, Vec<u8>) {
    let wal = dir.join("pg_wal");
    fs::create_dir_all(&wal).unwrap();
    let path = wal.join(segment_name(n));
    // Some segments repeat an earlier one's bytes: their blobs dedup against packs a
    // collection may have condemned.
    let content = pseudo_random(64 * 1024, (n % 7) as u64);
    fs::write(&path, &content).unwrap();
    (path, content)
}

#[test]
fn gc_in_a_loop_refuses_nothing_and_loses_nothing() {
    let site = Site::new().node("db1", "data").build();
    realistic_tree(&site.path("data"));
    let site = Arc::new(site);
    site.ok(&["init"]);
    let secs: u64 = std::env::var("STRATA_GC_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let stop = Arc::new(AtomicBool::new(false));
    // What each backup held, by name.
    let trees: Arc<Mutex<BTreeMap<String, Tree>>> = Arc::default();
    let pushed: Arc<Mutex<BTreeMap<String, Vec<u8>>>> = Arc::default();
    let gc_runs = Arc::new(AtomicU32::new(0));

    let collector = {
        let (site, stop, gc_runs) = (site.clone(), stop.clone(), gc_runs.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let out = site.strata(&["gc", "--json"]);
                // A collection may find the gc lock held by an index merge: busy (6).
                assert!(
                    out.code == Some(0) || out.code == Some(6),
                    "gc: {}",
                    out.stderr
                );
                if out.code == Some(0) {
                    gc_runs.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let pusher = {
        let (site, stop, pushed) = (site.clone(), stop.clone(), pushed.clone());
        std::thread::spawn(move || {
            let mut n = 1;
            while !stop.load(Ordering::Relaxed) {
                let (path, content) = segment(site.dir(), n);
                site.ok(&["wal-push", path.to_str().unwrap()]);
                pushed.lock().unwrap().insert(segment_name(n), content);
                n += 1;
            }
        })
    };
    let restorer = {
        let (site, stop, trees) = (site.clone(), stop.clone(), trees.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                // The newest backup is never deleted by the loop below.
                let Some((name, tree)) = trees
                    .lock()
                    .unwrap()
                    .last_key_value()
                    .map(|(k, v)| (k.clone(), v.clone()))
                else {
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                };
                let target = site.path(&format!("during-{n}"));
                site.ok(&["restore", &name, "--to", target.to_str().unwrap()]);
                assert!(
                    file_contents(&target) == tree,
                    "{name} restored differently while gc ran"
                );
                fs::remove_dir_all(&target).unwrap();
                n += 1;
            }
        })
    };

    // Backups, each of changed data, and deletes of older ones (garbage for the loop).
    // Halfway, a WAL archiver starts: the pushes from then on go through it, each of its
    // batches a writer of its own beside the collections.
    let halfway = Instant::now() + Duration::from_secs(secs / 2);
    let mut archiver: Option<std::process::Child> = None;
    let mut round = 0u64;
    while Instant::now() < deadline {
        if archiver.is_none() && Instant::now() >= halfway {
            archiver = Some(
                site.command()
                    .args(["wal", "archiver"])
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap(),
            );
        }
        let data = site.path("data");
        fs::write(
            data.join(format!("changing-{}.bin", round % 3)),
            pseudo_random(300 * 1024, round),
        )
        .unwrap();
        let _ = fs::remove_file(data.join(format!("changing-{}.bin", (round + 1) % 3)));
        let tree = file_contents(&data);
        let summary: serde_json::Value =
            serde_json::from_str(&site.ok(&["backup", "--json"])).unwrap();
        assert_eq!(summary["status"], "complete", "{summary:#}");
        let name = summary["name"].as_str().unwrap().to_string();
        trees.lock().unwrap().insert(name, tree);
        let backups = backups(&site);
        if backups.len() > 3 {
            let oldest = backups[0].clone();
            site.ok(&["delete", &oldest]);
            trees.lock().unwrap().remove(&oldest);
        }
        round += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for thread in [collector, pusher, restorer] {
        thread.join().unwrap();
    }
    assert!(gc_runs.load(Ordering::Relaxed) > 0, "no collection ran");
    let mut archiver = archiver.expect("the archiver started halfway");
    let status: serde_json::Value =
        serde_json::from_str(&site.ok(&["--json", "wal", "status"])).unwrap();
    assert!(
        status["archived_files"].as_u64().unwrap() > 0,
        "no push went through the archiver: {status}"
    );
    assert_eq!(status["failures"], 0, "{status}");
    let pid = archiver.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert!(archiver.wait().unwrap().success(), "the archiver's exit");

    // Once more with nothing running: sweeps what waited for writers.
    site.ok(&["gc"]);
    for (name, tree) in trees.lock().unwrap().iter() {
        let target = site.path(&format!("after-{name}"));
        site.ok(&["restore", name, "--to", target.to_str().unwrap()]);
        assert!(
            &file_contents(&target) == tree,
            "{name} does not restore byte for byte"
        );
    }
    for (name, content) in pushed.lock().unwrap().iter() {
        let back = site.path("fetched");
        site.ok(&["wal-fetch", name, back.to_str().unwrap()]);
        assert!(
            &fs::read(&back).unwrap() == content,
            "{name} came back different"
        );
    }
    site.ok(&["verify", "--read-data"]);
    eprintln!(
        "{round} backups, {} pushes and {} collections in {secs} s",
        pushed.lock().unwrap().len(),
        gc_runs.load(Ordering::Relaxed)
    );
}
