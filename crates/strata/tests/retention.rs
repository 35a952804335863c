//! `strata cleanup`, `pin` and `unpin` on a real repository: a dry run changes nothing,
//! the policy removes what no rule keeps, pinned backups stay, and every remaining backup
//! restores byte for byte.

use crate::common;

use common::{assert_same_tree, Env};
use std::fs;

#[test]
fn cleanup_keeps_what_the_policy_and_pins_say_and_the_rest_still_restores() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let mut names = Vec::new();
    let mut copies = Vec::new();
    for i in 0..4 {
        fs::write(src.join("table"), common::table_pages(40, i)).unwrap();
        fs::write(src.join("version"), format!("v{i}")).unwrap();
        let summary = env.json(&["backup", src.to_str().unwrap(), "--node-name", "db"]);
        names.push(summary["name"].as_str().unwrap().to_string());
        let copy = env.path(&format!("copy{i}"));
        common::copy_tree(&src, &copy);
        copies.push(copy);
    }
    env.ok(&["pin", &names[0]]);

    // An empty policy is refused.
    let err = env.fails(&["cleanup"], 2);
    assert!(err.contains("retention policy is empty"), "{err}");

    // A dry run says what would happen, and why, and changes nothing.
    let plan = env.json(&["cleanup", "--keep-last", "1", "--dry-run"]);
    let rows = plan["backups"].as_array().unwrap();
    let keep: Vec<bool> = rows.iter().map(|r| r["keep"].as_bool().unwrap()).collect();
    assert_eq!(keep, [true, false, false, true]);
    assert_eq!(rows[0]["reasons"][0], "pinned");
    assert_eq!(rows[3]["reasons"][0], "last 1");
    assert_eq!(env.json(&["list"]).as_array().unwrap().len(), 4);

    // The real thing removes the two middle backups, then the data only they used.
    let before = data_bytes(&env);
    let out = env.ok(&["cleanup", "--keep-last", "1"]);
    assert!(out.contains("2 kept, 2 removed"), "{out}");
    assert!(out.contains("deleted") && out.contains("packs"), "{out}");
    let after = data_bytes(&env);
    assert!(after < before * 3 / 4, "data {before} -> {after} bytes");
    let again = env.json(&["gc", "--dry-run"]);
    assert_eq!(again["packs_deleted"], 0, "{again:#}");
    let left = env.backup_names();
    assert_eq!(left, [names[0].clone(), names[3].clone()]);
    for (name, copy) in [(&names[0], &copies[0]), (&names[3], &copies[3])] {
        let target = env.path(&format!("restored-{name}"));
        env.ok(&["restore", name, "--to", target.to_str().unwrap()]);
        assert_same_tree(copy, &target);
    }
    env.ok(&["verify", "--read-data"]);

    // A pinned backup cannot be deleted until it is unpinned.
    let err = env.fails(&["delete", &names[0]], 2);
    assert!(err.contains("pinned"), "{err}");
    env.ok(&["unpin", &names[0]]);
    env.ok(&["delete", &names[0]]);
    assert_eq!(env.json(&["list"]).as_array().unwrap().len(), 1);
}

fn data_bytes(env: &Env) -> u64 {
    env.packs()
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum()
}

/// Runs strata until it is not refused as busy (exit 6); returns its output.
fn until_not_busy(env: &Env, args: &[&str]) -> std::process::Output {
    loop {
        let out = env.run(args);
        if out.status.code() != Some(6) {
            return out;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn backups_and_garbage_collection_in_a_loop_leave_every_backup_restorable() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let rounds = 6;
    let collector = {
        let args: Vec<String> = ["cleanup", "--keep-last", "2", "--min-complete", "2"]
            .map(String::from)
            .to_vec();
        let env_repo = env.repo.clone();
        let env_state = env.state.clone();
        let dir = env.dir.path().to_path_buf();
        std::thread::spawn(move || {
            let probe = common::Env {
                dir: tempfile::tempdir_in(&dir).unwrap(),
                repo: env_repo,
                state: env_state,
            };
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            for _ in 0..rounds * 2 {
                let out = until_not_busy(&probe, &args);
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        })
    };
    let mut expected = std::collections::BTreeMap::new();
    for i in 0..rounds {
        fs::write(src.join("table"), common::table_pages(60, 100 + i)).unwrap();
        fs::write(src.join("n"), format!("{i}")).unwrap();
        let out = until_not_busy(
            &env,
            &[
                "backup",
                src.to_str().unwrap(),
                "--node-name",
                "db",
                "--json",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let copy = env.path(&format!("copy{i}"));
        common::copy_tree(&src, &copy);
        expected.insert(summary["name"].as_str().unwrap().to_string(), copy);
    }
    collector.join().unwrap();
    assert!(until_not_busy(&env, &["gc"]).status.success());
    let left = env.json(&["list"]);
    let left = left.as_array().unwrap();
    assert!(left.len() >= 2, "{left:?}");
    for backup in left {
        let name = backup["name"].as_str().unwrap();
        let target = env.path(&format!("restored-{name}"));
        env.ok(&["restore", name, "--to", target.to_str().unwrap()]);
        assert_same_tree(&expected[name], &target);
    }
    env.ok(&["verify", "--read-data"]);
}

#[test]
fn packs_that_are_mostly_garbage_are_repacked() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    // One backup: a big file and a small one, together in one pack.
    fs::write(src.join("big"), common::pseudo_random(6 << 20, 1)).unwrap();
    fs::write(src.join("small"), common::pseudo_random(300 << 10, 2)).unwrap();
    let first = env.json(&["backup", src.to_str().unwrap(), "--node-name", "db"]);
    // The second has only the small file; then the first goes.
    fs::remove_file(src.join("big")).unwrap();
    env.ok(&["backup", src.to_str().unwrap(), "--node-name", "db"]);
    let before = data_bytes(&env);
    // Deleting the first backup collects garbage: its pack is mostly garbage now.
    let out = env.ok(&["delete", first["name"].as_str().unwrap()]);
    assert!(out.contains("1 of them mostly garbage"), "{out}");
    let after = data_bytes(&env);
    assert!(
        after < 1 << 20 && after < before / 4,
        "data {before} -> {after} bytes"
    );
    let restored = env.path("restored");
    env.ok(&["restore", "latest", "--to", restored.to_str().unwrap()]);
    assert_same_tree(&src, &restored);
    env.ok(&["verify", "--read-data"]);
    // Nothing is left to do.
    let again = env.json(&["gc", "--dry-run"]);
    assert_eq!(
        (
            again["packs_deleted"].as_u64(),
            again["packs_repacked"].as_u64()
        ),
        (Some(0), Some(0)),
        "{again:#}"
    );
}
