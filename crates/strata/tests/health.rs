//! `GET /health` and `GET /ready` of `strata server`: answered without a token, outside
//! the rate limit on unauthenticated requests, `/ready` saying what is wrong (503) without
//! a secret, and the same pair on a server that is only a node's agent.

mod common;

use common::server::{http, Server};
use common::{one_node_site, strata_at, strata_with_token};
use strata_testkit::net::dead_url;

const SECRET: &str = "s3-secret-that-must-not-leak";

fn token_server(dir: &std::path::Path, config: &std::path::Path) -> Server {
    let mut cmd = strata_with_token(dir, config, "user-token");
    cmd.env("STRATA_TEST_S3_SECRET", SECRET);
    Server::start(cmd, &dir.join("server.log"))
}

#[test]
fn health_and_ready_answer_probes_without_a_token_and_name_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let config = one_node_site(dir.path(), "");
    strata_at(dir.path(), &config).arg("init").output().unwrap();
    let server = token_server(dir.path(), &config);

    let health = http(&server.url, "GET", "/health", None, "");
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    assert_eq!(health.json()["process"], "strata server");
    let ready = http(&server.url, "GET", "/ready", None, "");
    assert_eq!(ready.status, 200, "{}", ready.body);
    let body = ready.json();
    assert_eq!(body["ready"], true);
    let names: Vec<&str> = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"storage main")
            && names.contains(&"node db1")
            && names.contains(&"password"),
        "{names:?}"
    );
    drop(server);

    // A second storage nobody can reach, with a secret: not ready, named, no secret shown.
    let extra = format!(
        "[storages.cold]\nurl = \"s3://bucket/strata\"\noptions = {{ aws_endpoint = \"{}\", aws_allow_http = \"true\", aws_region = \"us-east-1\", aws_access_key_id = \"id\" }}\nsecret_env = {{ aws_secret_access_key = \"STRATA_TEST_S3_SECRET\" }}\n",
        dead_url()
    );
    let config = dir.path().join("cold.toml");
    let text = std::fs::read_to_string(dir.path().join("strata.toml")).unwrap() + &extra;
    std::fs::write(&config, text).unwrap();
    let server = token_server(dir.path(), &config);
    let ready = http(&server.url, "GET", "/ready", None, "");
    let text = ready.body.clone();
    assert_eq!(ready.status, 503, "{text}");
    let body = ready.json();
    assert_eq!(body["ready"], false);
    let cold = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "storage cold")
        .unwrap_or_else(|| panic!("the unreachable storage is named: {text}"));
    assert_eq!(cold["ok"], false);
    assert!(!text.contains(SECRET), "no secret in /ready: {text}");

    // Probes are not refused once unauthenticated requests are rate limited.
    let mut limited = false;
    for _ in 0..200 {
        let reply = http(
            &server.url,
            "GET",
            "/api/v1/status",
            Some("wrong-token"),
            "",
        );
        if reply.status == 429 {
            limited = true;
            break;
        }
        assert_eq!(reply.status, 401);
    }
    assert!(
        limited,
        "wrong tokens are rate limited (the premise of this check)"
    );
    assert_eq!(http(&server.url, "GET", "/health", None, "").status, 200);
    assert_eq!(http(&server.url, "GET", "/ready", None, "").status, 503);
}

#[test]
fn a_server_that_is_only_an_agent_has_the_same_pair() {
    let dir = tempfile::tempdir().unwrap();
    let config = one_node_site(
        dir.path(),
        "[server]\nnode = \"db1\"\ncoordinator = false\n",
    );
    strata_at(dir.path(), &config).arg("init").output().unwrap();
    let mut cmd = strata_at(dir.path(), &config);
    cmd.env("STRATA_AGENT_TOKEN", "agent-token");
    let server = Server::start(cmd, &dir.path().join("agent.log"));
    assert_eq!(http(&server.url, "GET", "/health", None, "").status, 200);
    let ready = http(&server.url, "GET", "/ready", None, "");
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert!(ready.json()["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "storage main" && c["ok"] == true));
    // The coordinator API is not served here, and its token check is not in the way.
    assert_eq!(
        http(&server.url, "GET", "/api/v1/status", None, "").status,
        404
    );
}
