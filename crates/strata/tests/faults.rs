//! Bad input and faults: every one ends in a clear error and a repository that stays
//! valid; none loses or corrupts data, none writes outside the restore target.
// Tests signal their own children and read or set limits through libc: each block
// says why it is sound.
#![allow(unsafe_code)]

use crate::common;

use common::*;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use strata_repo::manifest::{Entry, EntryKind};
use strata_repo::summary::BackupStatus;
use strata_repo::Repository;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn no_partial_files(dir: &Path) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            !name.ends_with(".strata-partial"),
            "leftover {}",
            path.display()
        );
        if path.is_dir() && !path.is_symlink() {
            no_partial_files(&path);
        }
    }
}

#[test]
fn wrong_or_missing_passwords_are_refused_with_exit_code_5() {
    let env = Env::new();
    let err = env
        .command()
        .env("STRATA_PASSWORD", "guess")
        .arg("list")
        .output()
        .unwrap();
    assert_eq!(err.status.code(), Some(5));
    let stderr = String::from_utf8_lossy(&err.stderr);
    assert!(
        stderr.starts_with("strata: error: wrong password"),
        "{stderr}"
    );
    assert!(!stderr.contains(PASSWORD) && !stderr.contains("guess"));
    let missing = env
        .command()
        .env_remove("STRATA_PASSWORD")
        .arg("list")
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("STRATA_PASSWORD"));
    // A server holds the one password of its storages (clients send none): started with
    // a wrong one, it refuses to serve with the same code and line as the CLI.
    let config = env.path("strata.toml");
    fs::create_dir_all(env.path("data")).unwrap();
    write_one_node_config(&config, &env.state, &env.repo, &env.path("data"), "");
    let server = env
        .command()
        .env("STRATA_PASSWORD", "guess")
        .env("STRATA_TOKEN", "surface-token")
        .arg("--config")
        .arg(&config)
        .args(["server", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(server.status.code(), Some(5));
    let stderr = String::from_utf8_lossy(&server.stderr);
    assert!(
        stderr.starts_with("strata: error: wrong password"),
        "{stderr}"
    );
    // A location with no repository, and init twice, are usage errors.
    let none = env
        .command()
        .env("STRATA_REPO", env.path("nowhere"))
        .arg("list")
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("strata init"));
    assert!(env.fails(&["init"], 2).contains("already exists"));
}

/// Backs up a realistic tree into many small packs; returns the env and the source.
fn backed_up() -> (Env, std::path::PathBuf) {
    let env = Env::empty();
    // Small packs, so damage to one pack leaves most files restorable.
    fs::write(env.path("strata.toml"), "[backup]\npack_size_mib = 1\n").unwrap();
    env.ok(&["init"]);
    let src = env.path("src");
    realistic_tree(&src);
    env.ok(&["backup", src.to_str().unwrap(), "--node-name", "db"]);
    (env, src)
}

/// Restores and checks: exit code 4, damaged files absent, every other file intact.
fn restore_around_damage(env: &Env, src: &Path, damaged: &[String]) {
    let out = env.path("out");
    let result = env.run(&["restore", "latest", "--to", out.to_str().unwrap(), "--json"]);
    assert_eq!(result.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        stderr.contains("not restored") && stderr.contains("could not be restored"),
        "{stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    let errors = report["nodes"][0]["errors"].to_string();
    for path in damaged {
        assert!(
            !out.join(path).exists(),
            "damaged {path} was restored as if complete"
        );
        assert!(
            errors.contains(path.as_str()),
            "{path} not named in {errors}"
        );
    }
    no_partial_files(&out);
    // Every other entry is restored exactly; only damaged files (and other names of them,
    // hard links) may be missing.
    let (expected, actual) = (snapshot_tree(src), snapshot_tree(&out));
    let damaged_groups: Vec<_> = damaged
        .iter()
        .filter_map(|d| expected.get(d.as_bytes()).and_then(|n| n.link_group()))
        .collect();
    let mut intact = 0;
    for (path, want) in &expected {
        let shown = String::from_utf8_lossy(path);
        // verify names files in UTF-8 (lossy for other names), as JSON must.
        let is_damaged = damaged.iter().any(|d| *d == shown)
            || want
                .link_group()
                .is_some_and(|g| damaged_groups.contains(&g));
        match actual.get(path) {
            Some(got) => {
                assert!(!is_damaged, "damaged {shown} was restored");
                assert!(want.same_content(got), "{shown} differs");
                intact += 1;
            }
            None => assert!(is_damaged, "{shown} is missing but was not damaged"),
        }
    }
    assert!(intact > 0);
}

/// The largest pack: it holds big blobs, so damage in its middle hits data, not the
/// header (packs of many tiny blobs are mostly header).
fn largest_pack(env: &Env) -> std::path::PathBuf {
    env.packs()
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap()
}

fn damaged_files(report: &serde_json::Value) -> Vec<String> {
    report["damaged_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_corrupted_pack_is_found_by_verify_and_only_its_files_fail_to_restore() {
    let (env, src) = backed_up();
    let pack = &largest_pack(&env);
    let mut bytes = fs::read(pack).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    fs::write(pack, &bytes).unwrap();

    let out = env.run(&["verify", "--read-data", "--json"]);
    assert_eq!(out.status.code(), Some(4));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let damaged = damaged_files(&report);
    assert!(!damaged.is_empty(), "{report}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("authentication failed") && stderr.contains("damaged: backup"),
        "{stderr}"
    );
    restore_around_damage(&env, &src, &damaged);
}

#[test]
fn a_truncated_pack_is_found_without_reading_data() {
    let (env, src) = backed_up();
    let pack = &largest_pack(&env);
    let len = fs::metadata(pack).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(pack)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let out = env.run(&["verify", "--json"]);
    assert_eq!(out.status.code(), Some(4));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["problems"][0].as_str().unwrap().contains("expected"),
        "{report}"
    );
    let damaged = damaged_files(&report);
    assert!(!damaged.is_empty());
    let out = env.path("out");
    let stderr = env.fails(&["restore", "latest", "--to", out.to_str().unwrap()], 4);
    assert!(stderr.contains("cannot read bytes"), "{stderr}");
    no_partial_files(&out);
    // Files whose blobs sit in the surviving first half are restored intact.
    let restored = snapshot_tree(&out);
    let expected = snapshot_tree(&src);
    let files_ok = restored
        .iter()
        .filter(|(p, n)| expected.get(*p) == Some(n))
        .count();
    assert!(files_ok > 0);
}

#[test]
fn a_missing_pack_is_reported_with_the_backups_and_files_it_affects() {
    let (env, src) = backed_up();
    fs::remove_file(largest_pack(&env)).unwrap();
    let out = env.run(&["verify", "--json"]);
    assert_eq!(out.status.code(), Some(4));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["problems"][0].as_str().unwrap().contains("missing"));
    let damaged = damaged_files(&report);
    assert!(damaged.contains(&"random.bin".to_string()), "{damaged:?}");
    restore_around_damage(&env, &src, &damaged);
}

/// Writes a crafted backup whose manifest holds `entries`, using a real blob for files.
fn crafted_backup(env: &Env, build: impl FnOnce(strata_repo::BlobId) -> Vec<Entry>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Arc::new(strata_store::LocalStore::new(&env.repo));
        let repo = Repository::open(store, Some(PASSWORD)).await.unwrap();
        let backups = repo.list_backups().await.unwrap();
        let real = backups
            .into_iter()
            .find(|b| !b.name.ends_with("-evil"))
            .unwrap();
        let manifest = repo
            .load_manifest(&real.name, &real.nodes[0].name)
            .await
            .unwrap();
        let blob = manifest
            .entries
            .iter()
            .find_map(|e| match &e.kind {
                EntryKind::File { chunks, .. } if chunks.len() == 1 && e.path == b"PG_VERSION" => {
                    Some(chunks[0])
                }
                _ => None,
            })
            .unwrap();
        let mut evil = manifest.clone();
        evil.entries = build(blob);
        let mut summary = real.clone();
        summary.name = "99999999T999999Z-evil".into();
        summary.started = "9999-01-01T00:00:00.000Z".into();
        summary.status = BackupStatus::Complete;
        repo.save_manifest(&summary.name, &evil).await.unwrap();
        repo.save_summary(&summary).await.unwrap();
    });
}

fn file_entry(path: &[u8], blob: strata_repo::BlobId) -> Entry {
    Entry {
        path: path.to_vec(),
        kind: EntryKind::File {
            size: 3,
            chunks: vec![blob],
        },
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime_ns: 0,
        xattrs: Vec::new(),
    }
}

#[test]
fn manifests_that_escape_the_target_are_refused_before_writing() {
    for evil_path in [
        &b"../escaped"[..],
        b"/tmp/strata-absolute-escape",
        b"a/../../escaped",
        b"./x",
    ] {
        let (env, _src) = backed_up();
        crafted_backup(&env, |blob| {
            vec![file_entry(b"fine", blob), file_entry(evil_path, blob)]
        });
        let target = env.path("deep/target");
        let stderr = env.fails(&["restore", "latest", "--to", target.to_str().unwrap()], 4);
        assert!(stderr.contains("refusing to restore"), "{stderr}");
        assert!(!env.path("deep/escaped").exists() && !env.path("escaped").exists());
        assert!(!Path::new("/tmp/strata-absolute-escape").exists());
        assert!(
            !target.join("fine").exists(),
            "nothing is written from a refused manifest"
        );
    }
    // A hard link pointing outside is refused as well.
    let (env, _src) = backed_up();
    crafted_backup(&env, |_| {
        vec![Entry {
            path: b"innocent".to_vec(),
            kind: EntryKind::HardLink {
                target: b"../../../../etc/passwd".to_vec(),
            },
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            xattrs: Vec::new(),
        }]
    });
    let stderr = env.fails(
        &["restore", "latest", "--to", env.path("t").to_str().unwrap()],
        4,
    );
    assert!(stderr.contains("refusing to restore"), "{stderr}");
}

#[test]
fn restores_never_write_through_symlinks() {
    let (env, _src) = backed_up();
    let outside = env.path("outside");
    fs::create_dir_all(&outside).unwrap();
    // The manifest makes `link` a symlink to the outside and then writes `link/payload`.
    let outside_bytes = outside.as_os_str().as_encoded_bytes().to_vec();
    crafted_backup(&env, |blob| {
        vec![
            Entry {
                path: b"link".to_vec(),
                kind: EntryKind::Symlink {
                    target: outside_bytes,
                },
                mode: 0o777,
                uid: 0,
                gid: 0,
                mtime_ns: 0,
                xattrs: Vec::new(),
            },
            file_entry(b"link/payload", blob),
        ]
    });
    let target = env.path("target");
    env.fails(&["restore", "latest", "--to", target.to_str().unwrap()], 4);
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "wrote through a symlink"
    );

    // A symlink already present in the target is not followed either.
    let target2 = env.path("target2");
    fs::create_dir_all(&target2).unwrap();
    symlink(&outside, target2.join("pre")).unwrap();
    crafted_backup(&env, |blob| {
        vec![file_entry(b"pre/payload", blob), file_entry(b"ok", blob)]
    });
    let stderr = env.fails(&["restore", "latest", "--to", target2.to_str().unwrap()], 4);
    assert!(stderr.contains("symlink"), "{stderr}");
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "wrote through a symlink"
    );
    assert_eq!(fs::read(target2.join("ok")).unwrap(), b"15\n");
}

#[test]
fn a_file_that_changes_while_read_is_reported_not_fatal() {
    let env = Env::new();
    // Files in /proc report a size of 0 but have content: the size seen before reading
    // differs from the bytes read, which is what a file written during the backup does.
    let summary = env.json(&["backup", "/proc/version"]);
    assert_eq!(summary["status"], "complete");
    let warnings = summary["nodes"][0]["warnings"].to_string();
    assert!(warnings.contains("changed: /proc/version"), "{warnings}");
    let out = env.path("out");
    env.ok(&["restore", "latest", "--to", out.to_str().unwrap()]);
    assert_eq!(
        fs::read(out.join("version")).unwrap(),
        fs::read("/proc/version").unwrap()
    );
}

#[test]
fn an_unreadable_file_makes_the_backup_partial_and_is_named() {
    let env = Env::empty();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("readable"), b"fine").unwrap();
    fs::write(src.join("secret"), b"no access").unwrap();
    fs::set_permissions(src.join("secret"), fs::Permissions::from_mode(0o000)).unwrap();
    // Root reads everything: run strata as `nobody` then, in a world-writable scratch dir.
    // A copy of the binary in the scratch directory: `nobody` may not be able to reach
    // the build directory (a checkout under /root, say).
    let binary = env.path("strata-binary");
    fs::copy(env!("CARGO_BIN_EXE_strata"), &binary).unwrap();
    let as_user = |args: &[&str]| {
        let mut cmd = if is_root() {
            fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
            c.arg(&binary);
            c
        } else {
            Command::new(env!("CARGO_BIN_EXE_strata"))
        };
        cmd.env("STRATA_PASSWORD", PASSWORD)
            .env("STRATA_REPO", &env.repo)
            .env("STRATA_STATE_DIR", &env.state)
            .current_dir(env.dir.path())
            .args(args)
            .output()
            .unwrap()
    };
    assert!(as_user(&["init"]).status.success());
    let out = as_user(&["backup", src.to_str().unwrap(), "--json"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["status"], "partial");
    let warnings = summary["nodes"][0]["warnings"].to_string();
    assert!(
        warnings.contains("unreadable")
            && warnings.contains("secret")
            && warnings.contains("denied"),
        "{warnings}"
    );
    assert_eq!(summary["nodes"][0]["files"], 1);
}

/// `strata restore latest` of `env` into a tmpfs mounted with `options` in a private
/// mount namespace (a small file system standing in for a full disk): its exit code, the
/// files it left (sorted), and its stderr.
fn restore_into_a_small_tmpfs(env: &Env, options: &str) -> (i32, Vec<String>, String) {
    let mnt = env.path("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let script = format!(
        "mount -t tmpfs -o {options} tmpfs {m} || exit 99; {bin} restore latest --to {m}/out; echo \"rc=$?\"; find {m}/out -type f | sort",
        m = mnt.display(),
        bin = env!("CARGO_BIN_EXE_strata"),
    );
    let out = Command::new("unshare")
        .args(["-Urm", "sh", "-c", &script])
        .env("STRATA_PASSWORD", PASSWORD)
        .env("STRATA_REPO", &env.repo)
        .env("STRATA_STATE_DIR", &env.state)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success() && stdout.starts_with("rc="),
        "cannot mount a tmpfs here: {stdout}\n{stderr}"
    );
    let mut lines = stdout.lines();
    let code = lines.next().unwrap()["rc=".len()..].parse().unwrap();
    (code, lines.map(str::to_owned).collect(), stderr)
}

#[test]
fn a_full_disk_stops_the_restore_with_a_clear_error_and_no_partial_file() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("big.bin"), pseudo_random(6 << 20, 5)).unwrap();
    fs::write(src.join("small.txt"), b"small").unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    let (code, files, stderr) = restore_into_a_small_tmpfs(&env, "size=2m");
    assert_eq!(code, 1, "{files:?}\n{stderr}");
    assert!(
        stderr.contains("restore target is full while writing"),
        "{stderr}"
    );
    assert!(
        !files.iter().any(|f| f.contains("big.bin")),
        "a partial big.bin was left: {files:?}"
    );
    assert!(
        !files.iter().any(|f| f.contains("strata-partial")),
        "{files:?}"
    );
}

/// A target with room for bytes but not for inodes: small files, created by the restore's
/// workers in a directory it made, find it full. The restore stops with the same one
/// error as a full disk, not a failure per file, and leaves no file half made.
#[test]
fn a_target_out_of_inodes_stops_the_restore_like_a_full_disk() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("many")).unwrap();
    for i in 0..200 {
        fs::write(src.join(format!("many/f{i:03}")), format!("small file {i}")).unwrap();
    }
    env.ok(&["backup", src.to_str().unwrap()]);
    let (code, files, stderr) = restore_into_a_small_tmpfs(&env, "size=8m,nr_inodes=64");
    assert_eq!(code, 1, "{files:?}\n{stderr}");
    assert!(
        stderr.contains("restore target is full while writing"),
        "{stderr}"
    );
    assert!(files.len() < 200, "the tmpfs had room for every file");
    assert!(
        !files.iter().any(|f| f.contains("strata-partial")),
        "{files:?}"
    );
}

#[test]
fn repositories_of_an_unknown_format_version_are_refused() {
    let env = Env::new();
    let config = fs::read_to_string(env.repo.join("config")).unwrap();
    let current = strata_repo::format::FORMAT_VERSION;
    fs::write(
        env.repo.join("config"),
        config.replace(
            &format!("\"version\": {current}"),
            &format!("\"version\": {}", current + 1),
        ),
    )
    .unwrap();
    let stderr = env.fails(&["list"], 1);
    assert!(
        stderr.contains(&format!("format version {} is not supported", current + 1))
            && stderr.contains("upgrade strata"),
        "{stderr}"
    );
    // Not a strata repository at all.
    fs::write(env.repo.join("config"), "{\"format\": \"restic\"}").unwrap();
    assert!(env.fails(&["list"], 2).contains("no strata repository"));
}

#[test]
fn a_backup_killed_midway_leaves_a_valid_repository() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..6 {
        fs::write(
            src.join(format!("part-{i}.bin")),
            pseudo_random(24 << 20, i),
        )
        .unwrap();
    }
    env.ok(&["backup", src.to_str().unwrap()]);
    for i in 0..6 {
        fs::write(
            src.join(format!("part-{i}.bin")),
            pseudo_random(24 << 20, 100 + i),
        )
        .unwrap();
    }
    let packs_before = env.packs().len();
    let mut child = env
        .command()
        .args(["backup", src.to_str().unwrap()])
        .spawn()
        .unwrap();
    // Kill it once it has stored some new packs but before it is done.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while env.packs().len() < packs_before + 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the backup finished before it could be killed"
    );
    child.kill().unwrap();
    child.wait().unwrap();

    // The interrupted backup is invisible; the repository verifies; the next backup works.
    assert_eq!(env.json(&["list"]).as_array().unwrap().len(), 1);
    env.ok(&["verify", "--read-data"]);
    env.ok(&["backup", src.to_str().unwrap()]);
    env.ok(&["verify", "--read-data"]);
    let out = env.path("out");
    env.ok(&["restore", "latest", "--to", out.to_str().unwrap()]);
    assert_same_tree(&src, &out);
}

#[test]
fn an_object_stored_under_another_name_is_refused() {
    let env = Env::new();
    let src = env.path("src");
    realistic_tree(&src);
    let first = env.json(&["backup", src.to_str().unwrap(), "--node-name", "a"]);
    let second = env.json(&["backup", src.to_str().unwrap(), "--node-name", "b"]);
    let (first, second) = (
        first["name"].as_str().unwrap(),
        second["name"].as_str().unwrap(),
    );
    // A store (or cache) that answers with the wrong object: node a's manifest as node b's.
    fs::copy(
        env.repo.join(format!("manifests/{first}/a")),
        env.repo.join(format!("manifests/{second}/b")),
    )
    .unwrap();
    let out = env.path("out");
    // Damage (exit 4), as through a server.
    let stderr = env.fails(&["restore", second, "--to", out.to_str().unwrap()], 4);
    // Bound to its name (format version 2), the object no longer opens elsewhere.
    assert!(stderr.contains("moved from another name"), "{stderr}");
    // The same for a summary.
    fs::copy(
        env.repo.join(format!("summaries/{first}")),
        env.repo.join(format!("summaries/{second}")),
    )
    .unwrap();
    // `list` refuses the swapped summary (it fails authentication), names it, and still shows the other backup.
    let listed = env.run(&["list"]);
    let stderr = String::from_utf8_lossy(&listed.stderr);
    assert!(listed.status.success(), "{stderr}");
    assert!(
        stderr.contains("moved from another name") && stderr.contains(second),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert!(
        stdout.contains(first) && !stdout.contains(second),
        "{stdout}"
    );
}
