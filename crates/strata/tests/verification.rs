//! Verification results are recorded per backup and shown by `list`; a subset read and a
//! restore drill; a flipped byte is found, named, and recorded against the backup.

use crate::common;

use common::{realistic_tree, Env};
use std::fs;

fn verified(env: &Env) -> Vec<serde_json::Value> {
    env.json(&["list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["verified"].clone())
        .collect()
}

#[test]
fn verification_is_recorded_and_a_flipped_byte_is_named_and_recorded() {
    let env = Env::new();
    let src = env.path("src");
    realistic_tree(&src);
    env.ok(&["backup", src.to_str().unwrap(), "--node-name", "db"]);
    fs::write(src.join("later.txt"), b"second backup").unwrap();
    env.ok(&["backup", src.to_str().unwrap(), "--node-name", "db"]);
    assert!(verified(&env).iter().all(|v| v.is_null()));

    let out = env.ok(&["verify", "--read-data-subset", "50%"]);
    assert!(out.contains("no problems found in the packs read"), "{out}");
    for record in verified(&env) {
        assert_eq!(record["ok"], true);
        assert_eq!(record["mode"], "data-subset-50pct");
    }
    let err = env.fails(&["verify", "--read-data-subset", "0"], 2);
    assert!(err.contains("percentage"), "{err}");

    // A restore drill: restored, checked, and the scratch copy is gone.
    let out = env.ok(&["verify", "--restore", "latest"]);
    assert!(
        out.contains("restore drill of") && out.contains("scratch copy removed"),
        "{out}"
    );
    let leftovers: Vec<_> = fs::read_dir(&env.state)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("restore-drill"))
        .collect();
    assert!(leftovers.is_empty());
    assert_eq!(verified(&env)[1]["mode"], "restore");
    let table = env.ok(&["list"]);
    assert!(
        table.contains("last verified") && table.contains("ok (restore)"),
        "{table}"
    );

    // Flip a byte in the middle of the largest pack.
    let pack = env
        .packs()
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = fs::read(&pack).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    fs::write(&pack, &bytes).unwrap();
    let err = env.fails(&["verify", "--read-data"], 4);
    assert!(err.contains("damaged: backup"), "{err}");
    let records = verified(&env);
    assert!(
        records
            .iter()
            .any(|r| r["ok"] == false && r["mode"] == "data"),
        "{records:?}"
    );
    env.fails(&["verify", "--restore", "latest"], 4);
}
