//! A repository of format version 1, made by the release before format version 2
//! (`tests/fixtures/v1-repo`, a backup of `tests/fixtures/v1-src` with a pin and a
//! verification record): this strata lists, restores and verifies it as it is, refuses to
//! write to it until `strata migrate`, and after the migration uses it like any other.
//! The same for the format-version-2 fixture of the independent reader
//! (`crates/strata-repo/tests/fixtures/format-v2`), migrated to version 3.

use crate::common;

use common::{copy_tree, Env};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Output;

/// The password the fixture was made with.
const V1_PASSWORD: &str = "v1-fixture-password";
/// Its one backup.
const V1_BACKUP: &str = "20261125T082428Z-35241393";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Content of every file and target of every symlink under `root` (modes and times
/// are not kept by git, so the fixture's tree is compared by content).
fn contents(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_symlink() {
                let target = fs::read_link(&path).unwrap();
                out.insert(rel, target.into_os_string().into_encoded_bytes());
            } else {
                assert!(!kind.is_fifo());
                out.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// strata on `env` with `password`.
fn run_with(env: &Env, password: &str, args: &[&str]) -> Output {
    env.command()
        .env("STRATA_PASSWORD", password)
        .args(args)
        .output()
        .unwrap()
}

fn ok_with(env: &Env, password: &str, args: &[&str]) -> String {
    let out = run_with(env, password, args);
    assert!(out.status.success(), "strata {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn run(env: &Env, args: &[&str]) -> Output {
    run_with(env, V1_PASSWORD, args)
}

fn ok(env: &Env, args: &[&str]) -> String {
    ok_with(env, V1_PASSWORD, args)
}

/// A backup into a repository of an older version is refused with the way out (exit 2,
/// `strata migrate`), and writes nothing to the store.
fn assert_backup_refused_writing_nothing(env: &Env, password: &str, src: &Path) {
    let before = contents(&env.repo);
    let out = run_with(
        env,
        password,
        &["backup", "--node-name", "n1", src.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("strata migrate"));
    assert_eq!(
        contents(&env.repo),
        before,
        "a refused backup wrote to the store"
    );
}

fn v1_env() -> Env {
    let env = Env::empty();
    copy_tree(&fixtures().join("v1-repo"), &env.repo);
    env
}

fn restores_byte_for_byte(env: &Env, backup: &str, into: &str) {
    let target = env.path(into);
    ok(env, &["restore", backup, "--to", target.to_str().unwrap()]);
    assert_eq!(contents(&target), contents(&fixtures().join("v1-src")));
}

#[test]
fn a_version_1_repository_is_read_as_it_is_and_written_only_after_migrate() {
    let env = v1_env();
    let listed: serde_json::Value = serde_json::from_str(&ok(&env, &["list", "--json"])).unwrap();
    assert_eq!(listed[0]["name"], V1_BACKUP);
    assert_eq!(
        listed[0]["verified"]["ok"], true,
        "the version-1 record is honoured"
    );
    restores_byte_for_byte(&env, V1_BACKUP, "restored-v1");
    ok(&env, &["verify", "--read-data"]);

    // Writing is refused with the way out, and nothing is written.
    let src = fixtures().join("v1-src");
    assert_backup_refused_writing_nothing(&env, V1_PASSWORD, &src);

    // Migrate, then everything works in the current format version.
    ok(&env, &["migrate"]);
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(env.repo.join("config")).unwrap()).unwrap();
    assert_eq!(config["version"], strata_repo::format::FORMAT_VERSION);
    assert!(config["mac"].is_string());
    ok(
        &env,
        &["backup", "--node-name", "n1", src.to_str().unwrap()],
    );
    let listed: serde_json::Value = serde_json::from_str(&ok(&env, &["list", "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(
        listed[0]["verified"]["ok"], true,
        "the migrated record is honoured"
    );
    restores_byte_for_byte(&env, V1_BACKUP, "restored-v2");
    ok(&env, &["verify", "--read-data"]);
    let cleanup: serde_json::Value = serde_json::from_str(&ok(
        &env,
        &["cleanup", "--dry-run", "--keep-last", "1", "--json"],
    ))
    .unwrap();
    assert_eq!(
        cleanup["backups"][0]["pinned"], true,
        "the migrated pin is honoured"
    );
    // Running it again changes nothing.
    assert!(ok(&env, &["migrate"]).contains("already"));

    // An unbound version-1 object put back into the version-2 repository is refused.
    let manifest = format!("manifests/{V1_BACKUP}/n1");
    fs::copy(
        fixtures().join("v1-repo").join(&manifest),
        env.repo.join(&manifest),
    )
    .unwrap();
    let out = run(
        &env,
        &[
            "restore",
            V1_BACKUP,
            "--to",
            env.path("again").to_str().unwrap(),
        ],
    );
    assert!(!out.status.success(), "{out:?}");
}

/// The checked-in version-2 repository (`docs/format.md`'s fixture) and its source.
fn v2_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../strata-repo/tests/fixtures/format-v2")
}
const V2_PASSWORD: &str = "format-fixture-password";
const V2_BACKUP: &str = "20261125T093816Z-82d1797d";

fn ok_v2(env: &Env, args: &[&str]) -> String {
    ok_with(env, V2_PASSWORD, args)
}

#[test]
fn a_version_2_repository_is_read_refuses_writes_and_migrates_to_version_3() {
    let env = Env::empty();
    copy_tree(&v2_fixture().join("repo"), &env.repo);
    let src = v2_fixture().join("src");
    let listed: serde_json::Value =
        serde_json::from_str(&ok_v2(&env, &["list", "--json"])).unwrap();
    assert_eq!(listed[0]["name"], V2_BACKUP);
    let target = env.path("restored-v2");
    ok_v2(
        &env,
        &["restore", V2_BACKUP, "--to", target.to_str().unwrap()],
    );
    assert_eq!(contents(&target), contents(&src));
    ok_v2(&env, &["verify", "--read-data"]);

    // Writing is refused with the way out, and nothing is written.
    let before = contents(&env.repo);
    assert_backup_refused_writing_nothing(&env, V2_PASSWORD, &src);

    // The migration rewrites the config only: the version-2 objects and key stay.
    ok_v2(&env, &["migrate"]);
    let after = contents(&env.repo);
    let changed: Vec<_> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .collect();
    let audit = |k: &PathBuf| k.starts_with("audit") || k.starts_with("locks");
    assert!(
        changed.iter().all(|k| k == Path::new("config") || audit(k)),
        "{changed:?}"
    );
    assert!(before.keys().all(|k| after.contains_key(k)));
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(env.repo.join("config")).unwrap()).unwrap();
    assert_eq!(config["version"], strata_repo::format::FORMAT_VERSION);
    assert!(ok_v2(&env, &["migrate"]).contains("already"));

    // Version 3: the old backup restores, a new one is written and restores.
    let target = env.path("restored-v3-old");
    ok_v2(
        &env,
        &["restore", V2_BACKUP, "--to", target.to_str().unwrap()],
    );
    assert_eq!(contents(&target), contents(&src));
    ok_v2(
        &env,
        &["backup", "--node-name", "n1", src.to_str().unwrap()],
    );
    let target = env.path("restored-v3-new");
    ok_v2(
        &env,
        &["restore", "latest", "--to", target.to_str().unwrap()],
    );
    assert_eq!(contents(&target), contents(&src));
    ok_v2(&env, &["verify", "--read-data"]);
    let listed: serde_json::Value =
        serde_json::from_str(&ok_v2(&env, &["list", "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
}

/// A checked-in repository of an older version (made by the last strata writing it).
fn fixture(version: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../strata-repo/tests/fixtures/format-v{version}"))
}

#[test]
fn a_version_3_repository_is_read_refuses_writes_and_migrates_to_the_current_version() {
    an_older_repository_is_read_refuses_writes_and_migrates(
        &fixture(3),
        "format-v3-fixture-password",
        "20261125T213419Z-637aac8e",
    );
}

#[test]
fn a_version_4_repository_is_read_refuses_writes_and_migrates_to_the_current_version() {
    an_older_repository_is_read_refuses_writes_and_migrates(
        &fixture(4),
        "format-v4-fixture-password",
        "20261128T041711Z-82eaa082",
    );
}

fn an_older_repository_is_read_refuses_writes_and_migrates(
    fixture: &Path,
    password: &str,
    old_backup: &str,
) {
    let env = Env::empty();
    copy_tree(&fixture.join("repo"), &env.repo);
    let src = fixture.join("src");
    let ok3 = |args: &[&str]| ok_with(&env, password, args);
    let listed: serde_json::Value = serde_json::from_str(&ok3(&["list", "--json"])).unwrap();
    assert_eq!(listed[0]["name"], old_backup);
    assert_eq!(listed[0]["verified"]["ok"], true, "its verification record");
    let target = env.path("restored-old");
    ok3(&["restore", old_backup, "--to", target.to_str().unwrap()]);
    assert_eq!(contents(&target), contents(&src));
    ok3(&["verify", "--read-data"]);

    let before = contents(&env.repo);
    assert_backup_refused_writing_nothing(&env, password, &src);

    // The migration rewrites the config only.
    ok3(&["migrate"]);
    let after = contents(&env.repo);
    let changed: Vec<_> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .collect();
    assert!(
        changed
            .iter()
            .all(|k| k == Path::new("config") || k.starts_with("audit") || k.starts_with("locks")),
        "{changed:?}"
    );
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(env.repo.join("config")).unwrap()).unwrap();
    assert_eq!(config["version"], strata_repo::format::FORMAT_VERSION);

    // The current version: the old backup restores beside a new one.
    ok3(&["backup", "--node-name", "n1", src.to_str().unwrap()]);
    for (backup, into) in [
        (old_backup, "restored-old-again"),
        ("latest", "restored-new"),
    ] {
        let target = env.path(into);
        ok3(&["restore", backup, "--to", target.to_str().unwrap()]);
        assert_eq!(contents(&target), contents(&src));
    }
    ok3(&["verify", "--read-data"]);
    let listed: serde_json::Value = serde_json::from_str(&ok3(&["list", "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let cleanup: serde_json::Value = serde_json::from_str(&ok3(&[
        "cleanup",
        "--dry-run",
        "--keep-last",
        "1",
        "--json",
    ]))
    .unwrap();
    assert_eq!(cleanup["backups"][0]["pinned"], true, "its pin is honoured");
}
