//! `strata key ...`: rotating a leaked password with the real binary, every step audited.

use crate::common;

use common::{Env, PASSWORD};

#[test]
fn a_password_is_rotated_with_key_add_passwd_and_remove_and_each_step_is_audited() {
    let env = Env::new();
    let keys = env.json(&["key", "list"]);
    let first = keys[0]["id"].as_str().unwrap().to_string();
    assert_eq!(keys[0]["in_use"], true);

    // A second password, from the environment.
    let out = env
        .command()
        .env("STRATA_NEW_PASSWORD", "second password")
        .args(["key", "add"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let with = |password: &str, args: &[&str]| {
        env.command()
            .env("STRATA_PASSWORD", password)
            .args(args)
            .output()
            .unwrap()
    };
    assert!(with("second password", &["list"]).status.success());
    let keys = env.json(&["key", "list"]);
    assert_eq!(keys.as_array().unwrap().len(), 2);

    // The key in use goes only with --force; a key that does not exist is a usage error.
    let refused = env.fails(&["key", "remove", &first], 2);
    assert!(refused.contains("--force"), "{refused}");
    env.fails(&["key", "remove", "0123"], 2);

    // passwd from a file: the old password stops working, the new one works.
    let file = env.path("new-password");
    std::fs::write(&file, "third password\n").unwrap();
    let out = with(
        "second password",
        &[
            "key",
            "passwd",
            "--new-password-file",
            file.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(with("second password", &["list"]).status.code(), Some(5));
    assert!(with("third password", &["list"]).status.success());

    // Remove the original (leaked) password: never the last one.
    let out = with("third password", &["key", "remove", &first]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(with(PASSWORD, &["list"]).status.code(), Some(5));
    let keys = serde_json::from_slice::<serde_json::Value>(
        &with("third password", &["key", "list", "--json"]).stdout,
    )
    .unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 1);
    let last = keys[0]["id"].as_str().unwrap().to_string();
    let out = with("third password", &["key", "remove", &last, "--force"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "the last key must stay: {out:?}"
    );

    let audit = with("third password", &["audit", "--json"]);
    let entries: serde_json::Value = serde_json::from_slice(&audit.stdout).unwrap();
    let actions: Vec<(String, String)> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["outcome"].as_str().unwrap().to_string(),
            )
        })
        .filter(|(a, _)| a.starts_with("key-"))
        .collect();
    let expected = [
        ("key-add", "succeeded"),
        ("key-remove", "failed"),
        ("key-remove", "failed"),
        ("key-passwd", "succeeded"),
        ("key-remove", "succeeded"),
        ("key-remove", "failed"),
    ];
    assert_eq!(
        actions,
        expected
            .iter()
            .map(|(a, o)| (a.to_string(), o.to_string()))
            .collect::<Vec<_>>()
    );
}

/// A key file planted by someone who can write the bucket without the password: bound to
/// the repository, within the accepted Argon2 bounds but at their top (1 GiB, 4 passes:
/// about 6 s and 1 GB to derive), named to sort before every real key.
fn plant_costly_key(env: &Env, name: &str) {
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.repo.join("config")).unwrap()).unwrap();
    let file = serde_json::json!({
        "kdf": "argon2id",
        "params": {"memory_kib": 1024 * 1024, "iterations": 4, "parallelism": 1},
        "salt": "11".repeat(16),
        "keys": "22".repeat(100),
        "created": "2026-01-01T00:00:00Z",
        "repo": config["id"],
    });
    std::fs::write(env.repo.join("keys").join(name), file.to_string()).unwrap();
}

#[test]
fn planted_costly_keys_are_not_derived_and_are_named() {
    let env = Env::new();
    let real = env.json(&["key", "list"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let planted = [
        "00000000000000000000000000000001",
        "00000000000000000000000000000002",
    ];
    for name in planted {
        plant_costly_key(&env, name);
    }
    // A host that never opened the repository (no remembered key): the cheap real key
    // first, the costly ones named and never derived.
    let _ = std::fs::remove_file(env.state.join("opened-keys.json"));
    let out = env.run(&["list"]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for name in planted {
        assert!(
            stderr.contains(&format!("key {name} was not tried"))
                && stderr.contains(&format!("key {real} opened the repository")),
            "{stderr}"
        );
    }
    // The key that opened is remembered on this host.
    let opened = std::fs::read_to_string(env.state.join("opened-keys.json")).unwrap();
    assert!(opened.contains(&real), "{opened}");

    // With the accepted ids in the local configuration, the others are skipped before any
    // derivation, whatever their cost, and named.
    let config = env.path("strata.toml");
    std::fs::write(&config, format!("[password]\nkeys = [\"{real}\"]\n")).unwrap();
    let cheap = "0000000000000000000000000000000a";
    std::fs::copy(
        env.repo.join("keys").join(&real),
        env.repo.join("keys").join(cheap),
    )
    .unwrap();
    let out = env
        .command()
        .env("STRATA_CONFIG", &config)
        .args(["list"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for name in planted.iter().chain([&cheap]) {
        assert!(
            stderr.contains(&format!(
                "key {name} is not among the accepted key ids: skipped"
            )),
            "{stderr}"
        );
    }
    assert!(!stderr.contains("was not tried"), "{stderr}");
}
