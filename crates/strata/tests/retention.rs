//! `strata cleanup`, `pin` and `unpin` on a real repository: a dry run changes nothing,
//! the policy removes what no rule keeps, pinned backups stay, and every remaining backup
//! restores byte for byte.

mod common;

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
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(&src)
            .arg(&copy)
            .status()
            .unwrap();
        assert!(status.success());
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

    // The real thing removes the two middle backups.
    let out = env.ok(&["cleanup", "--keep-last", "1"]);
    assert!(out.contains("2 kept, 2 removed"), "{out}");
    let left: Vec<String> = env
        .json(&["list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect();
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
