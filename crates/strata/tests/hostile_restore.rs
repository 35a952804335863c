//! Restores into targets that someone else controls, through the real `strata` binary run
//! as root: symlinks planted at temporary names, directories swapped for symlinks before
//! and during the restore, and an in-place restore whose pruning races such a swap. What
//! must not happen: anything outside the target is written, created, chmod'ed, chowned or
//! deleted. Also: the root of a restore keeps its own mode, owner and times.

use crate::common;

use common::*;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn assert_root() {
    common::assert_root("the hostile-target tests");
}

/// Everything about a directory that a restore must not change: its own metadata and
/// every entry below it (type, mode, owner, mtime, content).
#[derive(Debug, PartialEq, Eq)]
struct Outside {
    own: (u32, u32, u32, i64, i64),
    tree: BTreeMap<Vec<u8>, Node>,
}

fn outside_state(dir: &Path) -> Outside {
    let meta = fs::symlink_metadata(dir).unwrap();
    Outside {
        own: (
            meta.mode(),
            meta.uid(),
            meta.gid(),
            meta.mtime(),
            meta.mtime_nsec(),
        ),
        tree: snapshot_tree(dir),
    }
}

/// A directory outside every target, owned by a uid no backup uses, with content a
/// restore would overwrite, chmod or prune if it went through a link to it.
fn outside_dir(env: &Env) -> std::path::PathBuf {
    let outside = env.path("outside");
    fs::create_dir_all(outside.join("sub")).unwrap();
    fs::write(outside.join("victim"), b"precious, not from any backup").unwrap();
    fs::write(outside.join("f007"), b"same name as a backed-up file").unwrap();
    fs::write(outside.join("sub/deep"), b"deep").unwrap();
    for path in ["victim", "f007", "sub/deep", "sub", ""] {
        let p = outside.join(path);
        std::os::unix::fs::chown(&p, Some(4321), Some(4321)).unwrap();
        let mode = if p.is_dir() { 0o751 } else { 0o640 };
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }
    let old = filetime::FileTime::from_unix_time(1_000_000_000, 0);
    filetime::set_file_mtime(&outside, old).unwrap();
    outside
}

/// A source tree with a directory `d` of many files (owned by uid 1234, mode 0750).
fn source_with_dir(env: &Env) -> std::path::PathBuf {
    let src = env.path("src");
    let d = src.join("d");
    fs::create_dir_all(&d).unwrap();
    fs::write(src.join("top.txt"), b"top").unwrap();
    for i in 0..400 {
        fs::write(
            d.join(format!("f{i:03}")),
            pseudo_random(2000 + i * 7, i as u64),
        )
        .unwrap();
    }
    std::os::unix::fs::chown(&d, Some(1234), Some(1234)).unwrap();
    fs::set_permissions(&d, fs::Permissions::from_mode(0o750)).unwrap();
    src
}

#[test]
fn a_symlink_planted_at_a_temporary_name_is_never_followed() {
    assert_root();
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    let big = pseudo_random(300_000, 1);
    fs::write(src.join("big.bin"), &big).unwrap();
    fs::write(src.join("sub/conf"), b"restored content").unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);

    let outside = outside_dir(&env);
    let before = outside_state(&outside);
    // The target exists with links where the restore will put its temporary files.
    let out = env.path("out");
    fs::create_dir_all(out.join("sub")).unwrap();
    symlink(outside.join("victim"), out.join(".big.bin.strata-partial")).unwrap();
    symlink(outside.join("f007"), out.join("sub/.conf.strata-partial")).unwrap();

    env.ok(&["restore", "latest", "--to", out.to_str().unwrap()]);

    assert_eq!(
        outside_state(&outside),
        before,
        "nothing outside the target may be written through a planted link"
    );
    for (name, content) in [("big.bin", &big[..]), ("sub/conf", b"restored content")] {
        let meta = fs::symlink_metadata(out.join(name)).unwrap();
        assert!(
            meta.is_file(),
            "{name} is a regular file, not the planted link"
        );
        assert_eq!(fs::read(out.join(name)).unwrap(), content, "{name}");
    }
    assert!(!out.join(".big.bin.strata-partial").exists());
}

#[test]
fn a_directory_swapped_for_a_symlink_before_or_during_a_restore_is_never_followed() {
    assert_root();
    let env = Env::new();
    let src = source_with_dir(&env);
    env.ok(&["backup", src.to_str().unwrap()]);
    let outside = outside_dir(&env);
    let before = outside_state(&outside);

    // Before: the target's `d` is already a link to the outside directory.
    let out = env.path("out");
    fs::create_dir_all(&out).unwrap();
    symlink(&outside, out.join("d")).unwrap();
    let first = env.run(&["restore", "latest", "--to", out.to_str().unwrap()]);
    assert_eq!(
        outside_state(&outside),
        before,
        "a restore went through a planted directory link: {}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(
        first.status.code(),
        Some(4),
        "the files under d are reported"
    );
    assert!(fs::symlink_metadata(out.join("d")).unwrap().is_symlink());

    // During: `d` is swapped with a link to the outside directory in a loop while the
    // restore runs (bounded in time).
    let out = env.path("out2");
    fs::create_dir_all(out.join("d")).unwrap();
    let swap = out.join(".swap");
    symlink(&outside, &swap).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let swapper = {
        let (stop, swaps, d, swap) = (stop.clone(), swaps.clone(), out.join("d"), swap.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                if exchange(&d, &swap) {
                    swaps.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Leave the real directory in place.
            if fs::symlink_metadata(&d).unwrap().is_symlink() {
                assert!(exchange(&d, &swap));
            }
        })
    };
    let during = env.run(&["restore", "latest", "--to", out.to_str().unwrap()]);
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    assert!(swaps.load(Ordering::Relaxed) > 0, "the swap loop ran");
    assert_eq!(
        outside_state(&outside),
        before,
        "a restore raced through a swapped directory link: {}",
        String::from_utf8_lossy(&during.stderr)
    );
    // Once the swapping stops, a second restore completes the tree.
    fs::remove_file(&swap).unwrap();
    env.ok(&["restore", "latest", "--to", out.to_str().unwrap()]);
    let restored = snapshot_tree(&out);
    let expected = snapshot_tree(&src);
    for (path, node) in &expected {
        assert!(
            restored.get(path).is_some_and(|r| r.same_content(node)),
            "{} restored",
            String::from_utf8_lossy(path)
        );
    }
    assert_eq!(outside_state(&outside), before);
}

/// A config whose node `db1` has the single root `data`.
fn site(env: &Env, data: &Path) -> std::path::PathBuf {
    let config = env.path("strata.toml");
    write_one_node_config(&config, &env.state, &env.repo, data, "");
    config
}

#[test]
fn pruning_after_an_in_place_restore_never_removes_outside_files() {
    assert_root();
    let env = Env::new();
    let data = source_with_dir(&env);
    let config = site(&env, &data);
    let strata = |args: &[&str]| {
        env.command()
            .env_remove("STRATA_REPO")
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap()
    };
    let backup = strata(&["backup"]);
    assert!(
        backup.status.success(),
        "{}",
        String::from_utf8_lossy(&backup.stderr)
    );
    let outside = outside_dir(&env);
    let before = outside_state(&outside);

    // Stray files the in-place restore prunes, and `d` swapped with a link to the
    // outside directory (whose files are all "not in the backup") while it runs.
    fs::write(data.join("stray"), b"not in the backup").unwrap();
    fs::write(data.join("d/stray"), b"not in the backup").unwrap();
    let swap = env.path("swap-link");
    symlink(&outside, &swap).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, d, swap) = (stop.clone(), data.join("d"), swap.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                swaps += exchange(&d, &swap) as u64;
            }
            if fs::symlink_metadata(&d).unwrap().is_symlink() {
                assert!(exchange(&d, &swap));
            }
            swaps
        })
    };
    let mut restores = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while restores < 5 && Instant::now() < deadline {
        strata(&["restore", "latest"]);
        restores += 1;
    }
    stop.store(true, Ordering::Relaxed);
    assert!(swapper.join().unwrap() > 0, "the swap loop ran");
    assert_eq!(
        outside_state(&outside),
        before,
        "an in-place restore or its pruning acted through a swapped directory link"
    );
    // Without the attacker, the node comes back exactly as backed up.
    let out = strata(&["restore", "latest"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!data.join("stray").exists() && !data.join("d/stray").exists());
    assert_eq!(outside_state(&outside), before);
}

#[test]
fn the_root_of_a_restore_keeps_its_mode_owner_and_times() {
    assert_root();
    let env = Env::new();
    let src = env.path("private");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("key"), b"k").unwrap();
    std::os::unix::fs::chown(&src, Some(4242), Some(4243)).unwrap();
    fs::set_permissions(&src, fs::Permissions::from_mode(0o700)).unwrap();
    let mtime = filetime::FileTime::from_unix_time(1_234_567_890, 123_000_000);
    filetime::set_file_mtime(&src, mtime).unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);

    // A new directory, and an existing one with other attributes.
    let fresh = env.path("fresh");
    let existing = env.path("existing");
    fs::create_dir_all(&existing).unwrap();
    fs::set_permissions(&existing, fs::Permissions::from_mode(0o755)).unwrap();
    for out in [&fresh, &existing] {
        env.ok(&["restore", "latest", "--to", out.to_str().unwrap()]);
        let meta = fs::metadata(out).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o700, "{}", out.display());
        assert_eq!((meta.uid(), meta.gid()), (4242, 4243), "{}", out.display());
        assert_eq!(
            (meta.mtime(), meta.mtime_nsec()),
            (1_234_567_890, 123_000_000),
            "{}",
            out.display()
        );
        assert_eq!(fs::read(out.join("key")).unwrap(), b"k");
    }
    // `ls` lists the files, not the root's own record.
    let listing = env.json(&["ls", "latest"]);
    let paths: Vec<&str> = listing
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["key"]);
}

#[test]
fn a_directory_where_a_file_belongs_is_kept_and_the_file_fails_with_that_reason() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.txt"), b"the file").unwrap();
    fs::write(src.join("b.txt"), b"the other file").unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);

    // A directory, with something in it, stands where a.txt goes.
    let out = env.path("out");
    fs::create_dir_all(out.join("a.txt")).unwrap();
    fs::write(out.join("a.txt/keep"), b"not the restore's").unwrap();
    let run = env.run(&["restore", "latest", "--to", out.to_str().unwrap()]);
    assert!(!run.status.success());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(said.contains("a directory is in the way"), "{said}");
    assert_eq!(
        fs::read(out.join("a.txt/keep")).unwrap(),
        b"not the restore's"
    );
    assert_eq!(fs::read(out.join("b.txt")).unwrap(), b"the other file");
    let leftovers: Vec<_> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("strata-partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
