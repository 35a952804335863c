//! Backups of trees that someone else controls and changes while strata (root) reads them,
//! and of files written just before or during a backup, through the real `strata` binary.
//! What must not happen: a root-only file is read under the name of a file in the tree
//! (its content ends up in a backup that the tree's owner can restore), and a file whose
//! content may have changed unseen is trusted by the next backup's files cache.

use crate::common;

use common::*;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn assert_root() {
    common::assert_root("the hostile-tree tests");
}

const MARKER: &[u8] = b"ROOT-ONLY-SECRET-7f3a9c";
const SECRET_LEN: usize = 7777;
/// Files swapped one by one at the top of the tree.
const FILES: usize = 100;
/// Files in the directory `d` that is swapped as a whole: enough that walking it takes a
/// while, so the swaps land inside the walk even on a loaded machine.
const DIR_FILES: usize = 2000;
const BACKUPS: usize = 3;

fn secret_bytes() -> Vec<u8> {
    MARKER.repeat(SECRET_LEN / MARKER.len() + 1)[..SECRET_LEN].to_vec()
}

#[test]
fn files_and_directories_swapped_for_symlinks_to_root_only_files_are_never_read() {
    assert_root();
    let env = Env::new();
    // Root-only files outside the tree: one file, and a directory of files named like
    // the tree's.
    let secret = env.path("secret");
    fs::write(&secret, secret_bytes()).unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let secret_dir = env.path("secret-dir");
    fs::create_dir_all(&secret_dir).unwrap();
    fs::set_permissions(&secret_dir, fs::Permissions::from_mode(0o700)).unwrap();
    // A tree owned by an unprivileged user, and that user's links to the secrets, kept
    // outside the tree and swapped with the tree's files and its directory `d` in a loop
    // (renames inside their own tree are all the attack needs).
    let tree = env.path("tree");
    let links = env.path("links");
    fs::create_dir_all(tree.join("d")).unwrap();
    fs::create_dir_all(&links).unwrap();
    symlink(&secret_dir, links.join("d")).unwrap();
    for i in 0..DIR_FILES {
        let name = format!("f{i:04}");
        fs::write(secret_dir.join(&name), secret_bytes()).unwrap();
        fs::set_permissions(secret_dir.join(&name), fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(tree.join("d").join(&name), b"public data in a directory").unwrap();
    }
    for i in 0..FILES {
        let name = format!("f{i:03}");
        fs::write(tree.join(&name), b"public data of the tree's owner").unwrap();
        symlink(&secret, links.join(&name)).unwrap();
    }
    let status = std::process::Command::new("chown")
        .args(["-hR", "65534:65534"])
        .arg(&tree)
        .arg(&links)
        .status()
        .unwrap();
    assert!(status.success());

    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let swapper = {
        let (stop, swaps, tree, links) = (stop.clone(), swaps.clone(), tree.clone(), links.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let (d, d_link) = (tree.join("d"), links.join("d"));
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                for i in 0..FILES {
                    let name = format!("f{i:03}");
                    let flipped = exchange(&tree.join(&name), &links.join(&name)) as u64
                        + exchange(&d, &d_link) as u64;
                    swaps.fetch_add(flipped, Ordering::Relaxed);
                }
            }
        })
    };
    let mut backups = Vec::new();
    for _ in 0..BACKUPS {
        let swaps_before = swaps.load(Ordering::Relaxed);
        let out = env.run(&["backup", tree.to_str().unwrap(), "--json"]);
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        assert!(
            swaps.load(Ordering::Relaxed) > swaps_before,
            "the tree was being swapped while the backup ran"
        );
        let name = summary["name"].as_str().unwrap().to_string();
        // No file of the backup has the secret's size: nothing was read through a link.
        let listing = env.json(&["ls", &name]);
        for entry in listing.as_array().unwrap() {
            assert_ne!(
                entry["size"].as_u64(),
                Some(SECRET_LEN as u64),
                "backup {name} holds {} with a root-only file's size",
                entry["path"]
            );
        }
        // A file caught being swapped is named in a warning.
        for warning in summary["nodes"][0]["warnings"].as_array().unwrap() {
            let warning = warning.as_str().unwrap();
            if warning.contains("replaced") {
                assert!(warning.contains(tree.to_str().unwrap()), "{warning}");
            }
        }
        backups.push(name);
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    // And the bytes: restore the backups and look for the secret.
    for name in &backups {
        let out = env.path(&format!("restored-{name}"));
        env.ok(&["restore", name, "--to", out.to_str().unwrap()]);
        for (path, node) in snapshot_tree(&out) {
            let _ = node;
            let full = out.join(std::ffi::OsStr::from_bytes(&path));
            if fs::symlink_metadata(&full).unwrap().is_file() {
                let bytes = fs::read(&full).unwrap();
                assert!(
                    !bytes.windows(MARKER.len()).any(|w| w == MARKER),
                    "{} holds a root-only file's content",
                    full.display()
                );
            }
        }
        fs::remove_dir_all(&out).unwrap();
    }
}

/// The racy-git rule: a file written within the filesystem's timestamp granularity of the
/// scan start may still change without its size, mtime or ctime changing, so the next
/// backup reads it again; an old unchanged file is still not read.
#[test]
fn a_file_written_just_before_a_backup_is_read_again_by_the_next_one() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("old.bin"), pseudo_random(100_000, 1)).unwrap();
    // Older than the files cache's 2 s window by the time the backups run.
    std::thread::sleep(Duration::from_millis(2300));
    fs::write(src.join("fresh.bin"), pseudo_random(100_000, 2)).unwrap();

    let first = env.json(&["backup", src.to_str().unwrap()]);
    assert_eq!(first["nodes"][0]["files_read"], 2);
    let second = env.json(&["backup", src.to_str().unwrap()]);
    assert_eq!(
        second["nodes"][0]["files_read"], 1,
        "the file written just before the first backup is read again; the old one is not"
    );
    // Same size, new bytes: the next backup has them.
    fs::write(src.join("fresh.bin"), pseudo_random(100_000, 3)).unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    let out = env.path("out");
    env.ok(&["restore", "latest", "--to", out.to_str().unwrap()]);
    assert_eq!(
        fs::read(out.join("fresh.bin")).unwrap(),
        pseudo_random(100_000, 3)
    );
}

/// A file rewritten while the backup reads it: the backup warns, and the next backup
/// reads it again (the torn bytes are never trusted from the files cache).
#[test]
fn a_file_rewritten_during_its_read_is_read_again_by_the_next_backup() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let big = src.join("busy.bin");
    fs::write(&big, pseudo_random(32 << 20, 1)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, big) = (stop.clone(), big.clone());
        std::thread::spawn(move || {
            use std::os::unix::fs::FileExt;
            let file = fs::OpenOptions::new().write(true).open(&big).unwrap();
            let page = pseudo_random(8192, 9);
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut at = 0u64;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                file.write_all_at(&page, at).unwrap();
                at = (at + 8192 * 97) % (32 << 20);
            }
        })
    };
    let first = env.json(&["backup", src.to_str().unwrap()]);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let warnings = first["nodes"][0]["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().starts_with("changed:")),
        "{warnings:?}"
    );
    let second = env.json(&["backup", src.to_str().unwrap()]);
    assert_eq!(second["nodes"][0]["files_read"], 1);
}

/// A first backup reads ahead of its walk (threads open the next files of a directory).
/// FIFOs among many files are never opened to wait on (the backup ends, and says it
/// skipped them), a symlink to a root-only file is never read through, and every file
/// comes back whole.
#[test]
fn a_tree_read_ahead_with_fifos_and_links_among_its_files_is_backed_up_whole() {
    assert_root();
    let env = Env::new();
    let src = env.path("src");
    for d in 0..3 {
        fs::create_dir_all(src.join(format!("d{d}"))).unwrap();
        for f in 0..150 {
            let path = src.join(format!("d{d}/f{f:03}"));
            fs::write(&path, pseudo_random(100 + f * 7, (d * 1000 + f) as u64)).unwrap();
        }
        // Inside the read-ahead window, at a sample's index and past it.
        for at in [5, 15, 47, 120] {
            let fifo = src.join(format!("d{d}/f{at:03}p"));
            let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
            assert!(made.success(), "mkfifo {}", fifo.display());
        }
        symlink("/etc/shadow", src.join(format!("d{d}/f010l"))).unwrap();
    }
    let mut backup = env
        .command()
        .args(["backup", src.to_str().unwrap(), "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while backup.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = backup.kill();
            panic!("the backup did not end: a FIFO was waited on");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = backup.wait_with_output().unwrap();
    assert_success("strata backup", &out);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let node = &summary["nodes"][0];
    assert_eq!(node["files"], 450, "{summary:#}");
    assert_eq!(node["symlinks"], 3, "{summary:#}");
    let warnings = node["warnings"].to_string();
    assert!(warnings.contains("special file"), "{warnings}");
    let out = env.path("out");
    env.ok(&["restore", "latest", "--to", out.to_str().unwrap()]);
    for d in 0..3 {
        for f in 0..150 {
            let back = fs::read(out.join(format!("d{d}/f{f:03}"))).unwrap();
            assert_eq!(back, pseudo_random(100 + f * 7, (d * 1000 + f) as u64));
        }
        assert_eq!(
            fs::read_link(out.join(format!("d{d}/f010l"))).unwrap(),
            std::path::Path::new("/etc/shadow")
        );
    }
}
