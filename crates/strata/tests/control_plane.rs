//! The control plane of a real `strata server`: every action through the API, recorded in
//! the audit log under the caller's token name, reported to a signed webhook that fails at
//! first (so delivery must retry), validated input, metrics, and the OpenAPI document.

mod common;

use common::server::{http, Server};
use common::{assert_same_tree, copy_tree, one_node_site, succeed, PASSWORD};
use hmac::{Hmac, Mac};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const USER_TOKEN: &str = "user-secret-token";
const CI_TOKEN: &str = "ci-secret-token";
const HOOK_SECRET: &str = "webhook-shared-secret";

/// One request a webhook receiver got.
#[derive(Debug, Clone)]
struct Delivery {
    event: String,
    signature: String,
    body: String,
}

/// A webhook receiver on 127.0.0.1 that answers 500 to its first request and 204 after.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Delivery>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let seen = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let delivery = read_request(&stream);
                let first = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(delivery);
                    seen.len() == 1
                };
                let status = if first {
                    "500 Internal Server Error"
                } else {
                    "204 No Content"
                };
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Receiver { url, got }
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.got.lock().unwrap().clone()
    }
}

fn read_request(stream: &std::net::TcpStream) -> Delivery {
    let mut reader = BufReader::new(stream);
    let mut length = 0;
    let mut event = String::new();
    let mut signature = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim().to_string();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse().unwrap_or(0),
                "x-strata-event" => event = value,
                "x-strata-signature" => signature = value,
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    Delivery {
        event,
        signature,
        body: String::from_utf8(body).unwrap(),
    }
}

fn expected_signature(body: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(HOOK_SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

struct Site {
    dir: tempfile::TempDir,
    config: PathBuf,
    data: PathBuf,
}

impl Site {
    fn new(hook_url: &str) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let config = one_node_site(
            dir.path(),
            &format!(
                r#"[[server.tokens]]
name = "ci"
env = "STRATA_CI_TOKEN"
[[webhooks]]
url = "{hook_url}"
events = ["backup.*", "verify.*", "restore.succeeded"]
secret = {{ env = "STRATA_WEBHOOK_SECRET" }}
attempts = 4
backoff_ms = 100
"#
            ),
        );
        let data = dir.path().join("data");
        Site { dir, config, data }
    }

    fn strata(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("USER", "operator")
            .env("STRATA_PASSWORD", PASSWORD)
            .env("STRATA_TOKEN", USER_TOKEN)
            .env("STRATA_CI_TOKEN", CI_TOKEN)
            .env("STRATA_WEBHOOK_SECRET", HOOK_SECRET)
            .arg("--config")
            .arg(&self.config)
            .current_dir(self.dir.path());
        cmd
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Polls the operation until it has ended; returns its final status.
fn wait_done(url: &str, id: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let reply = http(
            url,
            "GET",
            &format!("/api/v1/operations/{id}"),
            Some(CI_TOKEN),
            "",
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        let status = reply.json();
        if status["state"] != "running" {
            return status;
        }
        assert!(Instant::now() < deadline, "operation {id} never ended");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_for_deliveries(receiver: &Receiver, wanted: &[&str]) -> Vec<Delivery> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = receiver.deliveries();
        let events: Vec<&str> = got.iter().map(|d| d.event.as_str()).collect();
        if wanted.iter().all(|w| events.contains(w)) {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "webhook got {events:?}, wanted {wanted:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn error_code(reply: &common::server::Reply) -> String {
    reply.json()["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn api_actions_are_audited_signed_validated_and_restorable() {
    let receiver = Receiver::start();
    let site = Site::new(&receiver.url);
    succeed(site.strata().arg("init"));
    let server = Server::start(site.strata(), &site.path("server.log"));
    let url = server.url.as_str();

    // A backup through the API as token "ci".
    let started = http(url, "POST", "/api/v1/backups", Some(CI_TOKEN), "");
    assert_eq!(started.status, 202, "{}", started.body);
    let id = started.json()["operation"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let done = wait_done(url, &id);
    assert_eq!(done["state"], "succeeded", "{done:#}");
    let name = done["result"]["name"].as_str().unwrap().to_string();
    let expected = site.path("expected");
    copy_tree(&site.data, &expected);

    // Paging: the total in a header, the page in the body.
    let page = http(
        url,
        "GET",
        "/api/v1/backups?limit=1&offset=0",
        Some(USER_TOKEN),
        "",
    );
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.header("x-total-count"), Some("1"));
    assert_eq!(page.json()[0]["name"], name.as_str());
    assert_eq!(page.json()[0]["pinned"], false);
    let empty = http(url, "GET", "/api/v1/backups?offset=5", Some(USER_TOKEN), "");
    assert_eq!(empty.json(), serde_json::json!([]));

    // Pin, verify, a dry-run cleanup: each answered with what it did.
    let pinned = http(
        url,
        "POST",
        &format!("/api/v1/backups/{name}/pin"),
        Some(CI_TOKEN),
        "",
    );
    assert_eq!(pinned.status, 200, "{}", pinned.body);
    assert_eq!(pinned.json()["pinned"], true);
    let verified = http(
        url,
        "POST",
        "/api/v1/verify",
        Some(CI_TOKEN),
        r#"{"read_data": true}"#,
    );
    assert_eq!(verified.status, 200, "{}", verified.body);
    assert_eq!(verified.json()["problems"], serde_json::json!([]));
    assert!(verified.json()["blobs_checked"].as_u64().unwrap() > 0);
    let shown = http(url, "GET", "/api/v1/backups/latest", Some(USER_TOKEN), "");
    assert_eq!(shown.json()["verification"]["ok"], true, "{}", shown.body);
    assert_eq!(shown.json()["verification"]["mode"], "data");
    let plan = http(
        url,
        "POST",
        "/api/v1/cleanup",
        Some(CI_TOKEN),
        r#"{"dry_run": true, "policy": {"keep_last": 1}}"#,
    );
    assert_eq!(plan.status, 200, "{}", plan.body);
    assert_eq!(plan.json()["backups"][0]["keep"], true);

    // A restore through the API puts back a damaged and a deleted file, byte for byte.
    std::fs::write(site.data.join("base/16384/2619"), b"damaged").unwrap();
    std::fs::remove_dir_all(site.data.join("conf.d")).unwrap();
    let restore = http(
        url,
        "POST",
        "/api/v1/restores",
        Some(CI_TOKEN),
        r#"{"backup": "latest"}"#,
    );
    assert_eq!(restore.status, 202, "{}", restore.body);
    let id = restore.json()["operation"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(wait_done(url, &id)["state"], "succeeded");
    assert_same_tree(&expected, &site.data);

    // Bad input: 4xx with a JSON code, never 5xx, and nothing runs.
    let cases: [(&str, &str, &str, u16); 9] = [
        ("POST", "/api/v1/restores", "{not json", 400),
        ("POST", "/api/v1/restores", r#"{"backup": 7}"#, 400),
        (
            "POST",
            "/api/v1/restores",
            r#"{"backup": "../../etc"}"#,
            400,
        ),
        ("POST", "/api/v1/verify", r#"{"frobnicate": true}"#, 400),
        (
            "POST",
            "/api/v1/verify",
            r#"{"read_data_subset": 250}"#,
            400,
        ),
        ("GET", "/api/v1/backups?limit=-1", "", 400),
        ("GET", "/api/v1/audit?since=last%20tuesday", "", 400),
        ("GET", "/api/v1/backups/..%2F..%2Fkeys", "", 400),
        ("GET", "/api/v1/backups/20991231T000000Z-ffffffff", "", 404),
    ];
    for (method, path, body, status) in cases {
        let reply = http(url, method, path, Some(USER_TOKEN), body);
        assert_eq!(
            reply.status, status,
            "{method} {path} {body}: {}",
            reply.body
        );
        let code = error_code(&reply);
        assert!(
            code == "bad_request" || code == "not_found",
            "{method} {path}: {}",
            reply.body
        );
    }
    let wrong = http(url, "GET", "/api/v1/audit", Some("guess"), "");
    assert_eq!(
        (wrong.status, error_code(&wrong).as_str()),
        (401, "unauthorized")
    );

    // A local action records the local user.
    succeed(site.strata().args(["unpin", &name]));

    // The audit log, through the API and from the repository directly, says who did what.
    let audit = http(url, "GET", "/api/v1/audit?since=1h", Some(USER_TOKEN), "");
    assert_eq!(audit.status, 200, "{}", audit.body);
    let entries = audit.json();
    let seen: Vec<(String, String, String)> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["who"].as_str().unwrap().to_string(),
                e["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (action, who) in [
        ("init", "local:operator@"),
        ("backup", "token:ci"),
        ("pin", "token:ci"),
        ("verify", "token:ci"),
        ("restore", "token:ci"),
        ("unpin", "local:operator@"),
    ] {
        assert!(
            seen.iter()
                .any(|(a, w, o)| a == action && w.starts_with(who) && o == "succeeded"),
            "no {action} by {who} in {seen:?}"
        );
    }
    assert!(
        !seen.iter().any(|(a, _, _)| a == "cleanup"),
        "a dry run changes nothing and is not audited: {seen:?}"
    );
    let local = succeed(site.strata().args(["audit", "--json"]));
    let local: serde_json::Value = serde_json::from_str(&local).unwrap();
    assert_eq!(
        local, entries,
        "the CLI reads the same log from the repository"
    );
    let remote = succeed(
        site.strata()
            .args(["--server", url, "audit", "--since", "2h", "--json"]),
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&remote).unwrap(),
        entries
    );
    let table = succeed(site.strata().args(["audit"]));
    assert!(
        table.contains("token:ci") && table.contains(&name),
        "{table}"
    );

    // Webhooks: signed, retried after the receiver's first 500, each event once delivered.
    let got = wait_for_deliveries(
        &receiver,
        &[
            "backup.started",
            "backup.succeeded",
            "verify.started",
            "verify.succeeded",
            "restore.succeeded",
        ],
    );
    for delivery in &got {
        assert_eq!(
            delivery.signature,
            expected_signature(&delivery.body),
            "{delivery:?}"
        );
        let body: serde_json::Value = serde_json::from_str(&delivery.body).unwrap();
        assert_eq!(body["event"], delivery.event.as_str());
        assert_eq!(body["storage"], "main");
    }
    assert!(
        !got.iter().any(|d| d.event == "restore.started"),
        "not subscribed"
    );
    let retried = &got[0];
    assert!(
        got[1..].iter().any(|d| d.body == retried.body),
        "the event the receiver refused was delivered again, unchanged"
    );
    let succeeded: serde_json::Value = serde_json::from_str(
        &got.iter()
            .find(|d| d.event == "backup.succeeded")
            .unwrap()
            .body,
    )
    .unwrap();
    assert_eq!(succeeded["target"], name.as_str());
    assert_eq!(succeeded["who"], "token:ci");

    // Metrics count deliveries, retries and the verification.
    let metrics = http(url, "GET", "/metrics", Some(USER_TOKEN), "").body;
    for expected in [
        "strata_webhook_deliveries_total{outcome=\"retried\"} 1",
        "strata_operations_total{kind=\"verify\",outcome=\"succeeded\"} 1",
        "strata_store_errors_total{kind=\"put\"} 0",
        "strata_last_complete_backup_dedup_ratio",
        "strata_repository_blobs",
        "strata_info{storage=\"main\",repository=\"",
    ] {
        assert!(metrics.contains(expected), "{expected} not in:\n{metrics}");
    }

    // The OpenAPI document and its page, served without a token.
    let doc = http(url, "GET", "/api/openapi.json", None, "");
    assert_eq!(doc.status, 200);
    let doc = doc.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/backups/{name}/pin",
        "/api/v1/audit",
        "/api/v1/verify",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} not documented");
    }
    let page = http(url, "GET", "/api/docs/", None, "");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("swagger"), "{}", page.body);
}

#[test]
fn config_and_check_show_the_server_as_it_is_with_secrets_masked() {
    let receiver = Receiver::start();
    let site = Site::new(&receiver.url);
    // A second storage with a secret-looking option, and nothing initialised there.
    let mut text = std::fs::read_to_string(&site.config).unwrap();
    text.push_str(&format!(
        "[storages.cold]\npath = \"{}\"\noptions = {{ aws_secret_access_key = \"hunter2\" }}\n",
        site.path("cold").display()
    ));
    std::fs::write(&site.config, text).unwrap();
    succeed(site.strata().arg("init"));
    let server = Server::start(site.strata(), &site.path("server.log"));

    let config = http(&server.url, "GET", "/api/v1/config", Some(USER_TOKEN), "");
    assert_eq!(config.status, 200, "{}", config.body);
    assert!(!config.body.contains("hunter2"), "{}", config.body);
    assert!(!config.body.contains(HOOK_SECRET) && !config.body.contains(CI_TOKEN));
    let config = config.json();
    assert_eq!(config["nodes"][0]["name"], "db1");
    assert_eq!(
        config["webhooks"][0]["secret"]["env"],
        "STRATA_WEBHOOK_SECRET"
    );

    let check = http(&server.url, "GET", "/api/v1/check", Some(USER_TOKEN), "").json();
    let find = |name: &str| {
        check["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no check {name}: {check:#}"))
            .clone()
    };
    assert_eq!(find("storage main")["ok"], true);
    assert_eq!(find("storage cold")["ok"], false);
    assert!(find("storage cold")["detail"]
        .as_str()
        .unwrap()
        .contains("strata init --storage cold"));
    assert_eq!(find("node db1")["ok"], true);
    assert_eq!(find("password")["ok"], true);
    assert_eq!(check["ok"], false);
}
