//! Full backup and restore round trips through real object storage servers on loopback:
//! S3 (s3s-fs), Azure Blob (azurite) and GCS (fake-gcs-server), driven by the `strata` binary with the providers'
//! standard environment variables.

use crate::common;
use crate::servers;

use common::*;

fn round_trip(server: &servers::Server) {
    let env = Env::empty();
    let strata = |args: &[&str]| {
        let mut cmd = env.command();
        cmd.env("STRATA_REPO", &server.url);
        for (key, value) in &server.env {
            cmd.env(key, value);
        }
        let out = cmd.args(args).output().unwrap();
        assert!(
            out.status.success(),
            "strata {args:?} on {}: {}",
            server.url,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let src = env.path("src");
    realistic_tree(&src);
    let init = strata(&["init"]);
    assert!(init.contains(&server.url), "{init}");
    let first: serde_json::Value =
        serde_json::from_str(&strata(&["backup", src.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(first["status"], "complete");
    // The cost is visible: PUTs for packs, index and manifest; no more than a few.
    let requests = &first["requests"];
    assert!(requests["put"].as_u64().unwrap() >= 3, "{requests}");
    assert!(
        requests["bytes_sent"].as_u64().unwrap() > 3 << 20,
        "{requests}"
    );
    let second: serde_json::Value =
        serde_json::from_str(&strata(&["backup", src.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(second["nodes"][0]["new_bytes"], 0);
    let show = strata(&["show", "latest"]);
    assert!(show.contains("PUT"), "{show}");
    let out = env.path("out");
    strata(&["restore", "latest", "--to", out.to_str().unwrap()]);
    assert_same_tree(&src, &out);
    let verify = strata(&["verify", "--read-data"]);
    assert!(verify.contains("no problems found"), "{verify}");
    // No credential leaks into what strata prints.
    for (_, value) in &server.env {
        if value.len() > 12 && !value.starts_with("http") && !value.starts_with('/') {
            assert!(!show.contains(value.as_str()) && !verify.contains(value.as_str()));
        }
    }
}

#[test]
fn backup_and_restore_through_s3() {
    round_trip(&servers::s3());
}

#[test]
fn backup_and_restore_through_gcs() {
    round_trip(&servers::gcs());
}

#[test]
fn backup_and_restore_through_azure_blob() {
    round_trip(&servers::azure());
}

/// Backups in storage A (a directory), the default switched to B (S3), new backups in B;
/// both stay restorable; `copy` moves an old backup to B with only the missing data, and
/// A's copy can then be deleted.
#[test]
fn migrating_between_storages_keeps_every_backup_usable() {
    let s3 = servers::s3();
    let env = Env::empty();
    let options: Vec<String> = s3
        .options
        .iter()
        .map(|(k, v)| format!("{k} = {v:?}"))
        .collect();
    let config = |default: &str| {
        format!(
            "default_storage = \"{default}\"\n[storages.a]\npath = \"repo-a\"\n[storages.b]\nurl = \"{}\"\noptions = {{ {} }}\n",
            s3.url,
            options.join(", ")
        )
    };
    let run = |args: &[&str]| succeed(env.command().env_remove("STRATA_REPO").args(args));
    let src = env.path("src");
    realistic_tree(&src);
    let keep_v1 = env.path("v1");
    std::fs::write(env.path("strata.toml"), config("a")).unwrap();
    run(&["init"]);
    run(&["init", "--storage", "b"]);
    let v1: serde_json::Value =
        serde_json::from_str(&run(&["backup", src.to_str().unwrap(), "--json"])).unwrap();
    let v1_name = v1["name"].as_str().unwrap().to_string();
    run(&["restore", &v1_name, "--to", keep_v1.to_str().unwrap()]);

    // Switch the default to B and change the data.
    std::fs::write(env.path("strata.toml"), config("b")).unwrap();
    std::fs::write(src.join("new-in-v2"), b"only in the second backup").unwrap();
    run(&["backup", src.to_str().unwrap()]);
    let list: serde_json::Value = serde_json::from_str(&run(&["list", "--json"])).unwrap();
    let places: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["storage"].as_str().unwrap())
        .collect();
    assert_eq!(places, ["a", "b"]);
    let table = run(&["list"]);
    assert!(
        table.contains("storage") && table.contains(" a ") && table.contains(" b "),
        "{table}"
    );

    // The old backup restores from A, the new one from B.
    let old = env.path("old");
    run(&["restore", &v1_name, "--to", old.to_str().unwrap()]);
    assert_same_tree(&keep_v1, &old);
    let new = env.path("new");
    run(&["restore", "latest", "--to", new.to_str().unwrap()]);
    assert_same_tree(&src, &new);

    // Copy v1 to B: blobs B already holds (e.g. unchanged small files) are not sent again.
    let copied: serde_json::Value =
        serde_json::from_str(&run(&["copy", &v1_name, "--to", "b", "--json"])).unwrap();
    assert_eq!(copied["blobs_verified"], copied["blobs"]);
    assert!(copied["blobs"].as_u64().unwrap() > 10);
    assert!(copied["blobs_sent"].as_u64().unwrap() < copied["blobs"].as_u64().unwrap());
    // Deleting a name held twice needs a storage; then A's copy goes.
    let ambiguous = env
        .command()
        .env_remove("STRATA_REPO")
        .args(["delete", &v1_name])
        .output()
        .unwrap();
    assert_eq!(ambiguous.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&ambiguous.stderr).contains("--storage"));
    run(&["delete", &v1_name, "--storage", "a"]);
    let list: serde_json::Value = serde_json::from_str(&run(&["list", "--json"])).unwrap();
    assert!(list.as_array().unwrap().iter().all(|b| b["storage"] == "b"));
    let from_b = env.path("from-b");
    run(&["restore", &v1_name, "--to", from_b.to_str().unwrap()]);
    assert_same_tree(&keep_v1, &from_b);
    run(&["verify", "--read-data"]);
}

#[test]
fn an_unreachable_storage_is_one_clear_error_within_its_retry_budget() {
    let env = Env::empty();
    // The default budget (60 s) rides out a storage that is away for a while; this
    // test wants the error, not the wait.
    std::fs::write(env.path("strata.toml"), "[retry]\nbudget_secs = 1\n").unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = env
        .command()
        .env("STRATA_REPO", "s3://bucket/prefix")
        .env("AWS_ENDPOINT", format!("http://127.0.0.1:{closed}"))
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "key")
        .env("AWS_SECRET_ACCESS_KEY", "do-not-print-me")
        .arg("list")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("the storage s3://bucket/prefix did not answer: get config failed")
            && stderr.contains("check the storage's url"),
        "{stderr}"
    );
    assert!(!stderr.contains("do-not-print-me"));
}
