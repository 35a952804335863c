//! A repository whose bucket others can write to, without the password: injected and
//! garbage key files, an edited config, objects moved to other names, pins and
//! verification records copied to other backups. Each test says what must not happen and
//! checks it with the real binary on a real repository.

use crate::common;

use common::{Env, PASSWORD};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Bytes that occur in the backed-up data and nowhere else: found in the store, they
/// would prove plaintext was written.
const MARKER: &str = "PLAINTEXT-MARKER-3c1d0e7f9a";

/// Every file of the repository with its content.
fn store_files(repo: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![repo.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(path.clone(), fs::read(&path).unwrap());
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A source tree with the marker, backed up once as node `n1`.
fn env_with_backup() -> (Env, PathBuf) {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("secret.txt"), format!("{MARKER}\n").repeat(100)).unwrap();
    env.ok(&["backup", "--node-name", "n1", src.to_str().unwrap()]);
    (env, src)
}

/// A key file with no password holding keys an attacker chose, named to sort first.
fn inject_plain_key(env: &Env) {
    let keys = "ab".repeat(72);
    let file = format!(r#"{{"kdf":"none","keys":"{keys}","created":"2026-01-01T00:00:00Z"}}"#);
    fs::write(env.repo.join("keys/00000000000000000000000000000000"), file).unwrap();
}

#[test]
fn an_injected_passwordless_key_is_never_used() {
    let (env, src) = env_with_backup();
    inject_plain_key(&env);
    let before = store_files(&env.repo);

    // A wrong password must not open the repository through the injected key: nothing may
    // be sealed under keys the attacker knows.
    let out = env
        .command()
        .env("STRATA_PASSWORD", "wrong password")
        .args(["backup", "--node-name", "n1", src.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    assert_eq!(
        store_files(&env.repo),
        before,
        "a wrong password wrote to the store"
    );

    // The right password still works, and the injected key is reported.
    let out = env.run(&["list"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("00000000000000000000000000000000"));
    env.ok(&["backup", "--node-name", "n1", src.to_str().unwrap()]);
    assert_eq!(env.backup_names().len(), 2);
    env.ok(&["verify", "--read-data"]);
}

#[test]
fn an_unparsable_key_file_is_skipped_with_a_warning() {
    let (env, src) = env_with_backup();
    fs::write(env.repo.join("keys/0000garbage"), b"\x00not a key {").unwrap();
    fs::write(env.repo.join("keys/0001garbage"), b"{\"kdf\":\"argon2id\"}").unwrap();
    let out = env.run(&["list"]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("0000garbage") && stderr.contains("0001garbage"),
        "{stderr}"
    );
    env.ok(&["backup", "--node-name", "n1", src.to_str().unwrap()]);
    assert_eq!(env.backup_names().len(), 2);
}

#[test]
fn an_edited_config_is_refused_and_nothing_is_written_in_plaintext() {
    // A repository without backups yet: no sealed index stands in the way of an edited
    // config, so only its authentication can.
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("secret.txt"), format!("{MARKER}\n").repeat(100)).unwrap();
    let original = fs::read_to_string(env.repo.join("config")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&original).unwrap();
    let edits: Vec<(&str, serde_json::Value)> = vec![
        ("encryption", "none".into()),
        (
            "chunker",
            serde_json::json!({"min": 64, "avg": 64, "max": 64, "align": 0}),
        ),
        ("id", "0123456789abcdef".into()),
    ];
    for (field, value) in edits {
        let mut edited = config.clone();
        edited[field] = value;
        fs::write(env.repo.join("config"), edited.to_string()).unwrap();
        // Also with an injected passwordless key, the attacker's best chance to make the
        // edited config usable.
        inject_plain_key(&env);
        let before = store_files(&env.repo);
        for password in [PASSWORD, "wrong password"] {
            let out = env
                .command()
                .env("STRATA_PASSWORD", password)
                .args(["backup", "--node-name", "n1", src.to_str().unwrap()])
                .output()
                .unwrap();
            assert!(
                !out.status.success(),
                "backup with config.{field} edited: {out:?}"
            );
            let after = store_files(&env.repo);
            assert_eq!(
                after, before,
                "config.{field} edited: something was written"
            );
            for (path, bytes) in &after {
                assert!(!contains(bytes, MARKER.as_bytes()), "plaintext in {path:?}");
            }
        }
        let out = env.run(&["list"]);
        assert!(
            !out.status.success(),
            "list with config.{field} edited: {out:?}"
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("config"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Put back, it works again.
    fs::write(env.repo.join("config"), original).unwrap();
    env.ok(&["backup", "--node-name", "n1", src.to_str().unwrap()]);
}

#[test]
fn a_key_with_huge_kdf_parameters_is_skipped_without_running_it() {
    let (env, _src) = env_with_backup();
    let file = serde_json::json!({
        "kdf": "argon2id",
        "params": {"memory_kib": 64, "iterations": 4_000_000_000u32, "parallelism": 1},
        "salt": "00".repeat(16),
        "keys": "00".repeat(100),
        "created": "2026-01-01T00:00:00Z",
    });
    fs::write(env.repo.join("keys/00000000huge"), file.to_string()).unwrap();
    // Bounded wait: a strata that runs these parameters spins for hours.
    let mut child = env
        .command()
        .args(["list"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let status = status.expect("strata ran the injected key's KDF (still busy after 120 s)");
    assert!(status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("00000000huge") && stderr.contains("iterations"),
        "{stderr}"
    );
}

/// Two backups of node `n1` with different content; returns their names, oldest first.
fn two_backups(env: &Env, src: &Path) -> (String, String) {
    fs::write(src.join("secret.txt"), "the content of backup B\n").unwrap();
    env.ok(&["backup", "--node-name", "n1", src.to_str().unwrap()]);
    let names = env.backup_names();
    (names[0].clone(), names[1].clone())
}

#[test]
fn a_manifest_copied_over_another_backups_manifest_is_refused() {
    let (env, src) = env_with_backup();
    let (a, b) = two_backups(&env, &src);
    fs::copy(
        env.repo.join(format!("manifests/{a}/n1")),
        env.repo.join(format!("manifests/{b}/n1")),
    )
    .unwrap();
    let target = env.path("restored");
    let out = env.run(&["restore", &b, "--to", target.to_str().unwrap()]);
    assert!(
        !out.status.success(),
        "restore of {b} with {a}'s manifest: {out:?}"
    );
    // Backup A's content must not come back as backup B.
    if target.exists() {
        for (path, bytes) in store_files(&target) {
            assert!(
                !contains(&bytes, MARKER.as_bytes()),
                "A's data restored as B: {path:?}"
            );
        }
    }
    let out = env.run(&["verify"]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    // A itself is untouched.
    env.ok(&["restore", &a, "--to", env.path("a").to_str().unwrap()]);
}

#[test]
fn a_summary_replayed_under_another_name_is_refused() {
    let (env, _src) = env_with_backup();
    let a = env.backup_names()[0].clone();
    let fake = "20991231T000000Z-deadbeef";
    fs::copy(
        env.repo.join(format!("summaries/{a}")),
        env.repo.join(format!("summaries/{fake}")),
    )
    .unwrap();
    let out = env.run(&["show", fake]);
    assert!(!out.status.success(), "{out:?}");
    let out = env.run(&["restore", fake, "--to", env.path("r").to_str().unwrap()]);
    assert!(!out.status.success(), "{out:?}");
    assert!(!env.path("r").exists());
}

#[test]
fn a_pin_copied_to_another_backup_is_not_honoured() {
    let (env, src) = env_with_backup();
    let (a, b) = two_backups(&env, &src);
    env.ok(&["pin", &a]);
    fs::copy(
        env.repo.join(format!("pins/{a}")),
        env.repo.join(format!("pins/{b}")),
    )
    .unwrap();
    let report = env.json(&["cleanup", "--dry-run", "--keep-last", "1"]);
    let pinned: BTreeMap<String, bool> = report["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["pinned"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(pinned[&a], "the real pin");
    assert!(!pinned[&b], "a copied pin must not pin {b}");
    // So `delete` is not refused by the copy.
    env.ok(&["delete", &b]);
}

#[test]
fn a_verification_record_copied_to_another_backup_is_not_honoured() {
    let (env, src) = env_with_backup();
    let (a, b) = two_backups(&env, &src);
    env.ok(&["verify", &a]);
    let records: Vec<_> = fs::read_dir(env.repo.join(format!("verified/{a}")))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(records.len(), 1);
    let dir = env.repo.join(format!("verified/{b}"));
    fs::create_dir_all(&dir).unwrap();
    fs::copy(&records[0], dir.join(records[0].file_name().unwrap())).unwrap();
    let list = env.json(&["list"]);
    let verified = |name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap()["verified"]
            .clone()
    };
    assert!(verified(&a).is_object(), "the real record: {list}");
    assert!(
        verified(&b).is_null(),
        "a copied record must not vouch for {b}: {list}"
    );
}
