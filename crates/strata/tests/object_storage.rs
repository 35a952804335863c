//! Full backup and restore round trips through real object storage servers on loopback:
//! S3 (s3s-fs) and Azure Blob (azurite), driven by the `strata` binary with the providers'
//! standard environment variables.

mod common;
#[path = "../../strata-store/tests/servers.rs"]
mod servers;

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
fn backup_and_restore_through_azure_blob() {
    round_trip(&servers::azure());
}
