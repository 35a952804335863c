//! The control plane of a real `strata server`: every action through the API, recorded in
//! the audit log under the caller's token name, reported to a signed webhook that fails at
//! first (so delivery must retry) and to one that is down (counted, logged, harmless),
//! validated input and JSON errors, metrics, the live event stream of a running backup,
//! and the OpenAPI document.
//!
//! To watch a backup while it runs, the tests put a [`Gate`] between the coordinator and
//! a node agent of its own process: it holds the node's `finish` request until the test
//! has seen what it wants, so nothing depends on how fast the machine is.

use crate::common;

use common::gate::Gate;
use common::server::{event_stream, http, Server};
use common::webhook::{Delivery, Receiver};
use common::{
    assert_same_tree, copy_tree, pseudo_random, realistic_tree, strata_with_token, succeed, Site,
};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use strata_testkit::dead_url;

const USER_TOKEN: &str = "user-secret-token";
const CI_TOKEN: &str = "ci-secret-token";
const HOOK_SECRET: &str = "webhook-shared-secret";

fn expected_signature(body: &str) -> String {
    common::webhook::signature(HOOK_SECRET, body)
}

/// A one-node site whose commands carry the user token, the CI token's variable and the
/// webhook secret's, with two webhooks: to `hook_url` and to a receiver that is down
/// (whose URL comes back beside the site).
fn plane_site(hook_url: &str) -> (Site, String) {
    let dead_hook = dead_url();
    let site = Site::new()
        .node("db1", "data")
        .config_extra(&format!(
            r#"[[server.tokens]]
name = "ci"
env = "STRATA_CI_TOKEN"
[[webhooks]]
url = "{hook_url}"
events = ["backup.*", "verify.*", "restore.succeeded"]
secret = {{ env = "STRATA_WEBHOOK_SECRET" }}
attempts = 4
backoff_ms = 100
[[webhooks]]
url = "{dead_hook}"
events = ["backup.*"]
attempts = 2
backoff_ms = 10
"#
        ))
        .token(USER_TOKEN)
        .env("USER", "operator")
        .env("STRATA_CI_TOKEN", CI_TOKEN)
        .env("STRATA_WEBHOOK_SECRET", HOOK_SECRET)
        .build();
    realistic_tree(&site.path("data"));
    (site, dead_hook)
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

fn metrics(url: &str) -> String {
    let reply = http(url, "GET", "/metrics", Some(USER_TOKEN), "");
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

/// The value of one series of `/metrics` (its name and labels as the server writes them),
/// or `None` when the server does not write it.
fn series(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        Some(value.trim().parse().unwrap())
    })
}

/// The value of one series of `/metrics`; fails the test when it is missing.
fn metric(text: &str, name: &str) -> f64 {
    series(text, name).unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

/// Scrapes `/metrics` until `series` has `value`.
fn wait_for_metric(url: &str, name: &str, value: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = metrics(url);
        if series(&text, name) == Some(value) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never became {value}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Seconds since the Unix epoch of an RFC 3339 time.
fn epoch_seconds(time: &str) -> f64 {
    chrono::DateTime::parse_from_rfc3339(time)
        .unwrap()
        .timestamp_millis() as f64
        / 1000.0
}

/// Whether `a` and `b` agree to a millionth (ratios written as decimal text).
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}

/// The audit log through the API: (action, who, outcome, detail) of every entry.
fn audit_entries(url: &str) -> Vec<(String, String, String, String)> {
    let audit = http(url, "GET", "/api/v1/audit?since=1h", Some(USER_TOKEN), "");
    assert_eq!(audit.status, 200, "{}", audit.body);
    audit
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let text = |field: &str| e[field].as_str().unwrap_or_default().to_string();
            (text("action"), text("who"), text("outcome"), text("detail"))
        })
        .collect()
}

#[test]
fn api_actions_are_audited_signed_validated_and_restorable() {
    let receiver = Receiver::start(true);
    let (site, dead_hook) = plane_site(&receiver.url);
    // Data only the first backup will hold, so the cleanup that removes it frees space.
    std::fs::write(
        site.path("data").join("old.bin"),
        pseudo_random(12 << 20, 11),
    )
    .unwrap();
    site.ok(&["init"]);
    let server = Server::start(site.command(), &site.path("server.log"));
    let url = server.url.as_str();

    // A backup through the API as token "ci"; the webhook that is down does not hold it.
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
    copy_tree(&site.path("data"), &expected);

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
    // The same page again: its kept body was made before the pin and must not be served.
    let again = http(
        url,
        "GET",
        "/api/v1/backups?limit=1&offset=0",
        Some(USER_TOKEN),
        "",
    );
    assert_eq!(again.json()[0]["pinned"], true, "{}", again.body);
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
    std::fs::write(site.path("data").join("base/16384/2619"), b"damaged").unwrap();
    std::fs::remove_dir_all(site.path("data").join("conf.d")).unwrap();
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
    assert_same_tree(&expected, &site.path("data"));

    // Bad input: 4xx with a JSON code, never 5xx, and nothing runs. That holds for what
    // axum answers itself too: a method a path lacks, a path that is not UTF-8.
    let cases: [(&str, &str, &str, u16, &str); 15] = [
        ("POST", "/api/v1/restores", "{not json", 400, "bad_request"),
        (
            "POST",
            "/api/v1/restores",
            r#"{"backup": 7}"#,
            400,
            "bad_request",
        ),
        (
            "POST",
            "/api/v1/restores",
            r#"{"backup": "../../etc"}"#,
            400,
            "bad_request",
        ),
        (
            "POST",
            "/api/v1/verify",
            r#"{"frobnicate": true}"#,
            400,
            "bad_request",
        ),
        (
            "POST",
            "/api/v1/verify",
            r#"{"read_data_subset": 250}"#,
            400,
            "bad_request",
        ),
        ("GET", "/api/v1/backups?limit=-1", "", 400, "bad_request"),
        (
            "GET",
            "/api/v1/audit?since=last%20tuesday",
            "",
            400,
            "bad_request",
        ),
        (
            "GET",
            "/api/v1/backups/..%2F..%2Fkeys",
            "",
            400,
            "bad_request",
        ),
        (
            "GET",
            "/api/v1/backups/20991231T000000Z-ffffffff",
            "",
            404,
            "not_found",
        ),
        ("GET", "/api/v1/backups/%FF%FE", "", 400, "bad_request"),
        (
            "GET",
            "/api/v1/operations/%C3%28/events",
            "",
            400,
            "bad_request",
        ),
        ("GET", "/ui/%FF", "", 400, "bad_request"),
        ("PUT", "/api/v1/backups", "", 405, "method_not_allowed"),
        ("DELETE", "/api/v1/status", "", 405, "method_not_allowed"),
        ("GET", "/api/v1/nothing-here", "", 404, "not_found"),
    ];
    for (method, path, body, status, code) in cases {
        let reply = http(url, method, path, Some(USER_TOKEN), body);
        assert_eq!(
            (reply.status, error_code(&reply).as_str()),
            (status, code),
            "{method} {path} {body}: {}",
            reply.body
        );
        assert_eq!(
            reply.header("content-type"),
            Some("application/json"),
            "{method} {path}"
        );
        assert!(
            !reply.json()["message"].as_str().unwrap().is_empty(),
            "{method} {path}: {}",
            reply.body
        );
    }
    let put = http(url, "PUT", "/api/v1/backups", Some(USER_TOKEN), "");
    let allowed = put.header("allow").unwrap_or_default().to_string();
    assert!(
        allowed.contains("GET") && allowed.contains("POST"),
        "405 names the methods the path has: {allowed:?}"
    );
    let wrong = http(url, "GET", "/api/v1/audit", Some("guess"), "");
    assert_eq!(
        (wrong.status, error_code(&wrong).as_str()),
        (401, "unauthorized")
    );

    // A local action records the local user.
    site.ok(&["unpin", &name]);

    // Dry runs report and change nothing (and are not audited).
    let preview = http(
        url,
        "POST",
        "/api/v1/gc",
        Some(CI_TOKEN),
        r#"{"dry_run": true}"#,
    );
    assert_eq!(preview.status, 200, "{}", preview.body);
    assert_eq!(preview.json()["dry_run"], true);
    assert_eq!(preview.json()["backups"], 1);
    assert_eq!(preview.json()["bytes_freed"], 0, "{}", preview.body);

    // A second backup without old.bin and with new data, then a real cleanup keeping only
    // it: the first backup goes, and the garbage collection after it frees old.bin's data.
    std::fs::remove_file(site.path("data").join("old.bin")).unwrap();
    std::fs::write(
        site.path("data").join("new.bin"),
        pseudo_random(1 << 20, 12),
    )
    .unwrap();
    let started = http(url, "POST", "/api/v1/backups", Some(CI_TOKEN), "");
    assert_eq!(started.status, 202, "{}", started.body);
    let second = wait_done(url, started.json()["operation"]["id"].as_str().unwrap());
    assert_eq!(second["state"], "succeeded", "{second:#}");
    let second = second["result"]["name"].as_str().unwrap().to_string();
    let cleanup = http(
        url,
        "POST",
        "/api/v1/cleanup",
        Some(CI_TOKEN),
        r#"{"policy": {"keep_last": 1}}"#,
    );
    assert_eq!(cleanup.status, 200, "{}", cleanup.body);
    let cleanup = cleanup.json();
    let decisions: Vec<(&str, bool)> = cleanup["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["name"].as_str().unwrap(), b["keep"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        decisions,
        [(name.as_str(), false), (second.as_str(), true)],
        "{cleanup:#}"
    );
    let cleanup_freed = cleanup["gc"]["bytes_freed"].as_u64().unwrap();
    assert!(cleanup_freed > 1 << 20, "old.bin's data freed: {cleanup:#}");
    let gc = http(url, "POST", "/api/v1/gc", Some(CI_TOKEN), "");
    assert_eq!(gc.status, 200, "{}", gc.body);
    let gc_freed = gc.json()["bytes_freed"].as_u64().unwrap();

    // The audit log, through the API and from the repository directly, says who did what.
    let audit = http(url, "GET", "/api/v1/audit?since=1h", Some(USER_TOKEN), "");
    assert_eq!(audit.status, 200, "{}", audit.body);
    let entries = audit.json();
    let seen = audit_entries(url);
    for (action, who) in [
        ("init", "local:operator@"),
        ("backup", "token:ci"),
        ("pin", "token:ci"),
        ("verify", "token:ci"),
        ("restore", "token:ci"),
        ("unpin", "local:operator@"),
        ("cleanup", "token:ci"),
        ("gc", "token:ci"),
    ] {
        assert!(
            seen.iter()
                .any(|(a, w, o, _)| a == action && w.starts_with(who) && o == "succeeded"),
            "no {action} by {who} in {seen:?}"
        );
    }
    let cleanups: Vec<_> = seen.iter().filter(|(a, ..)| a == "cleanup").collect();
    assert_eq!(
        cleanups.len(),
        1,
        "the dry run changed nothing and is not audited: {seen:?}"
    );
    assert_eq!(
        cleanups[0].3,
        format!(
            "1 kept, 1 removed; {} packs ({cleanup_freed} bytes) deleted",
            cleanup["gc"]["packs_deleted"]
        ),
        "the cleanup's detail says what it removed and freed: {seen:?}"
    );
    let gcs: Vec<_> = seen.iter().filter(|(a, ..)| a == "gc").collect();
    assert_eq!(gcs.len(), 1, "only the real gc is audited: {seen:?}");
    assert!(gcs[0].3.contains("deleted"), "{seen:?}");
    let local = site.ok(&["audit", "--json"]);
    let local: serde_json::Value = serde_json::from_str(&local).unwrap();
    assert_eq!(
        local, entries,
        "the CLI reads the same log from the repository"
    );
    let remote = succeed(
        site.command()
            .args(["--server", url, "audit", "--since", "2h", "--json"]),
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&remote).unwrap(),
        entries
    );
    let table = site.ok(&["audit"]);
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

    // The webhook that is down: every backup event failed after its attempts, counted
    // and logged as a warning, and the backups completed all the same.
    let text = wait_for_metric(
        url,
        "strata_webhook_deliveries_total{outcome=\"failed\"}",
        4.0,
    );
    let log = std::fs::read_to_string(site.path("server.log")).unwrap();
    for event in ["backup.started", "backup.succeeded"] {
        // The URL past its host is masked (webhook paths carry tokens).
        let warning = format!(
            "strata: warning: webhook {} did not take event {event} after 2 attempts",
            dead_hook.replace("/hook", "/***")
        );
        assert!(log.contains(&warning), "{warning} not in:\n{log}");
    }
    // One retry of the receiver's first 500, one per event to the dead hook.
    assert_eq!(
        metric(
            &text,
            "strata_webhook_deliveries_total{outcome=\"retried\"}"
        ),
        5.0
    );
    assert!(
        metric(
            &text,
            "strata_webhook_deliveries_total{outcome=\"delivered\"}"
        ) >= 7.0
    );

    // Metrics: every figure about the repository carries its storage, and says what the
    // API says.
    let s = |rest: &str| format!("{{storage=\"main\"{rest}}}");
    let m = |name: &str, rest: &str| metric(&text, &format!("{name}{}", s(rest)));
    for (kind, outcome, count) in [
        ("backup", "succeeded", 2.0),
        ("restore", "succeeded", 1.0),
        ("verify", "succeeded", 1.0),
        ("cleanup", "succeeded", 1.0),
        ("gc", "succeeded", 2.0),
    ] {
        let labels = format!(",kind=\"{kind}\",outcome=\"{outcome}\"");
        assert_eq!(m("strata_operations_total", &labels), count, "{kind}");
        let took = m(
            "strata_last_operation_duration_seconds",
            &format!(",kind=\"{kind}\""),
        );
        assert!(took > 0.0 && took < 600.0, "{kind} took {took} s");
    }
    // Each backup's components by status: this configuration is one `files` component.
    assert_eq!(
        m(
            "strata_backup_components_total",
            ",component=\"files\",status=\"complete\""
        ),
        2.0
    );
    let listed = http(url, "GET", "/api/v1/backups", Some(USER_TOKEN), "").json();
    let last = &listed[0];
    assert_eq!(last["name"], second.as_str());
    let total = |field: &str| -> f64 {
        last["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n[field].as_u64().unwrap() as f64)
            .sum()
    };
    assert_eq!(
        m("strata_last_complete_backup_timestamp_seconds", ""),
        epoch_seconds(last["started"].as_str().unwrap())
    );
    assert_eq!(
        m("strata_last_complete_backup_duration_seconds", ""),
        last["duration_ms"].as_u64().unwrap() as f64 / 1000.0
    );
    let (logical, stored, new) = (total("bytes"), total("stored_bytes"), total("new_bytes"));
    assert!(logical > 0.0 && stored > 0.0 && new > 0.0, "{last:#}");
    assert_eq!(
        m("strata_last_complete_backup_bytes", ",kind=\"logical\""),
        logical
    );
    assert_eq!(
        m("strata_last_complete_backup_bytes", ",kind=\"stored\""),
        stored
    );
    assert_eq!(m("strata_last_complete_backup_bytes", ",kind=\"new\""), new);
    assert_eq!(m("strata_last_complete_backup_files", ""), total("files"));
    assert_eq!(
        m("strata_last_complete_backup_files_read", ""),
        total("files_read")
    );
    assert!(close(
        m("strata_last_complete_backup_dedup_ratio", ""),
        logical / new
    ));
    assert!(close(
        m("strata_last_complete_backup_compression_ratio", ""),
        logical / stored
    ));
    assert!(m("strata_repository_blobs", "") > 0.0);
    for (status, count) in [("complete", 1.0), ("partial", 0.0), ("failed", 0.0)] {
        assert_eq!(
            m("strata_backups", &format!(",status=\"{status}\"")),
            count,
            "{status}"
        );
    }
    for (outcome, count) in [("ok", 0.0), ("damaged", 0.0), ("never", 1.0)] {
        assert_eq!(
            m(
                "strata_backups_verified",
                &format!(",outcome=\"{outcome}\"")
            ),
            count
        );
    }
    assert_eq!(
        m("strata_gc_freed_bytes_total", ""),
        (cleanup_freed + gc_freed) as f64
    );
    assert_eq!(m("strata_verify_failures_total", ""), 0.0);
    for kind in ["put", "get", "list", "delete"] {
        let labels = format!(",kind=\"{kind}\"");
        assert!(m("strata_store_requests_total", &labels) > 0.0, "{kind}");
        assert_eq!(m("strata_store_errors_total", &labels), 0.0, "{kind}");
    }
    for direction in ["sent", "received"] {
        let labels = format!(",direction=\"{direction}\"");
        assert!(m("strata_store_bytes_total", &labels) > 0.0, "{direction}");
    }
    assert_eq!(metric(&text, "strata_lease_losses_total"), 0.0);
    assert_eq!(metric(&text, "strata_node_up{node=\"db1\"}"), 1.0);
    assert!(
        text.lines().any(
            |l| l.starts_with("strata_info{storage=\"main\",repository=\"") && l.ends_with(" 1")
        ),
        "{text}"
    );

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
    let receiver = Receiver::start(true);
    let (site, _) = plane_site(&receiver.url);
    // A second storage with a secret-looking option, and nothing initialised there.
    let mut text = std::fs::read_to_string(site.config()).unwrap();
    text.push_str(&format!(
        "[storages.cold]\npath = \"{}\"\noptions = {{ aws_secret_access_key = \"hunter2\" }}\n",
        site.path("cold").display()
    ));
    std::fs::write(site.config(), text).unwrap();
    site.ok(&["init"]);
    let server = Server::start(site.command(), &site.path("server.log"));

    let config = http(&server.url, "GET", "/api/v1/config", Some(USER_TOKEN), "");
    assert_eq!(config.status, 200, "{}", config.body);
    assert!(!config.body.contains("hunter2"), "{}", config.body);
    assert!(!config.body.contains(HOOK_SECRET) && !config.body.contains(CI_TOKEN));
    let config = config.json();
    assert_eq!(config["nodes"][0]["name"], "db1");
    // Sections other crates own are shown too, with their defaults.
    assert_eq!(config["tables"]["schema"], "strata", "{config:#}");
    assert_eq!(config["pgq"]["initial_database"], "template1", "{config:#}");
    assert_eq!(config["postgres"]["backup_from"], "primary", "{config:#}");
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

/// A coordinator whose one node, db1, is a node agent of its own process behind a
/// [`Gate`] that holds the node's `finish` requests while closed. Leases live 3 s (renewed
/// every second), so a refused renewal is noticed at once.
struct GatedSite {
    dir: tempfile::TempDir,
    agent: Option<Server>,
    gate: Gate,
    server: Server,
}

impl GatedSite {
    fn start(hook_url: &str) -> GatedSite {
        let dir = tempfile::tempdir().unwrap();
        let path = |rel: &str| dir.path().join(rel);
        let data = path("data");
        realistic_tree(&data);
        // Top-level keys first: after `[storages.main]` they would belong to it.
        let storage = format!("[storages.main]\npath = \"{}\"\n", path("repo").display());
        let agent_config = path("agent.toml");
        std::fs::write(
            &agent_config,
            format!(
                "default_storage = \"main\"\nstate_dir = \"{}\"\n{storage}\
                 [[nodes]]\nname = \"db1\"\nroots = [\"{}\"]\n\
                 [server]\nnode = \"db1\"\ncoordinator = false\n",
                path("agent-state").display(),
                data.display()
            ),
        )
        .unwrap();
        let agent = Server::start(gated_command(dir.path(), &agent_config), &path("agent.log"));
        let gate = Gate::start(&agent.url, "/node/v1/backup/finish");
        let config = path("strata.toml");
        std::fs::write(
            &config,
            format!(
                r#"default_storage = "main"
state_dir = "{state}"
{storage}[server]
lease_ttl_secs = 3
[[server.tokens]]
name = "ci"
env = "STRATA_CI_TOKEN"
[[nodes]]
name = "db1"
url = "{gate}"
[[webhooks]]
url = "{hook_url}"
events = ["backup.*", "verify.*"]
secret = {{ env = "STRATA_WEBHOOK_SECRET" }}
attempts = 4
backoff_ms = 100
"#,
                state = path("state").display(),
                gate = gate.url,
            ),
        )
        .unwrap();
        succeed(gated_command(dir.path(), &config).arg("init"));
        let server = Server::start(gated_command(dir.path(), &config), &path("server.log"));
        GatedSite {
            dir,
            agent: Some(agent),
            gate,
            server,
        }
    }

    fn url(&self) -> &str {
        &self.server.url
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Starts a backup as token "ci"; returns its operation id.
    fn start_backup(&self) -> String {
        let started = http(self.url(), "POST", "/api/v1/backups", Some(CI_TOKEN), "");
        assert_eq!(started.status, 202, "{}", started.body);
        started.json()["operation"]["id"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

fn gated_command(dir: &std::path::Path, config: &std::path::Path) -> Command {
    let mut cmd = strata_with_token(dir, config, USER_TOKEN);
    cmd.env("USER", "operator")
        .env("STRATA_CI_TOKEN", CI_TOKEN)
        .env("STRATA_AGENT_TOKEN", "gated-agent-token")
        .env("STRATA_WEBHOOK_SECRET", HOOK_SECRET);
    cmd
}

#[test]
fn the_event_stream_follows_a_running_backup_to_its_end_and_a_second_one_is_refused() {
    let receiver = Receiver::start(true);
    let site = GatedSite::start(&receiver.url);
    let url = site.url();

    // The backup cannot finish while the gate holds db1's `finish` request.
    site.gate.close();
    let id = site.start_backup();
    let events = event_stream(url, &format!("/api/v1/operations/{id}/events"), USER_TOKEN);
    site.gate.wait_held(1);

    // While it runs, a second backup is refused as busy, and that is audited as failed.
    let refused = http(url, "POST", "/api/v1/backups", Some(USER_TOKEN), "");
    assert_eq!(
        (refused.status, error_code(&refused).as_str()),
        (409, "busy"),
        "{}",
        refused.body
    );
    assert!(
        refused.json()["message"].as_str().unwrap().contains(&id),
        "the refusal names the running backup: {}",
        refused.body
    );
    let audit = audit_entries(url);
    assert!(
        audit
            .iter()
            .any(|(action, who, outcome, detail)| action == "backup"
                && who == "token:user"
                && outcome == "failed"
                && detail.contains(&id)),
        "the refused backup is in the audit log as failed: {audit:?}"
    );

    // The stream reports db1's progress while the backup runs (and cannot have ended).
    let mut seen = Vec::new();
    let running = loop {
        let event = events
            .recv_timeout(Duration::from_secs(60))
            .expect("the stream of a held backup went quiet or ended");
        assert_eq!(event["id"], id.as_str(), "{event:#}");
        assert_eq!(event["state"], "running", "{event:#}");
        seen.push(event.clone());
        let node = event["nodes"][0].clone();
        if node["phase"] == "finishing" && node["progress"]["files"].as_u64().unwrap() > 0 {
            break node;
        }
    };
    assert_eq!(running["name"], "db1");
    assert!(
        running["progress"]["bytes"].as_u64().unwrap() > 0,
        "{running:#}"
    );

    // Let it finish: the stream goes on to the final state, then ends.
    site.gate.open();
    seen.extend(events.iter());
    let last = seen.last().unwrap();
    assert_eq!(last["state"], "succeeded", "{last:#}");
    assert_eq!(last["result"]["status"], "complete", "{last:#}");
    assert_eq!(last["result"]["name"], id.as_str());
    assert_eq!(last["nodes"][0]["phase"], "done", "{last:#}");
    assert!(
        seen[..seen.len() - 1]
            .iter()
            .all(|e| e["state"] == "running"),
        "one final event, the last"
    );
    let files = last["result"]["nodes"][0]["files"].as_u64().unwrap();
    assert!(files > 0);

    // Asked after the end, the stream is the final state alone.
    let after = http(
        url,
        "GET",
        &format!("/api/v1/operations/{id}/events"),
        Some(USER_TOKEN),
        "",
    );
    assert_eq!(after.status, 200);
    assert_eq!(after.header("content-type"), Some("text/event-stream"));
    let data: Vec<&str> = after
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .collect();
    assert_eq!(data.len(), 1, "{}", after.body);
    let fin: serde_json::Value = serde_json::from_str(data[0].trim()).unwrap();
    assert_eq!(fin["state"], "succeeded");

    let text = metrics(url);
    let ops = |outcome: &str| {
        series(
            &text,
            &format!(
                "strata_operations_total{{storage=\"main\",kind=\"backup\",outcome=\"{outcome}\"}}"
            ),
        )
    };
    assert_eq!(ops("succeeded"), Some(1.0), "{text}");
    assert_eq!(
        ops("failed"),
        None,
        "a refused backup never ran, so it is not an operation that failed"
    );
    assert_eq!(metric(&text, "strata_lease_losses_total"), 0.0);
}

#[test]
fn a_lost_lease_fails_the_backup_and_failures_are_counted_reported_and_logged() {
    let receiver = Receiver::start(true);
    let mut site = GatedSite::start(&receiver.url);
    let url = site.url().to_string();
    let url = url.as_str();

    // A complete backup first, so the failed one is not the only one.
    let good = site.start_backup();
    assert_eq!(wait_done(url, &good)["state"], "succeeded");

    // The next one loses db1's lease while db1 finishes: it fails, and says why.
    site.gate.close();
    let id = site.start_backup();
    site.gate.wait_held(1);
    site.gate.refuse_leases(true);
    site.gate.wait_refused(1);
    let done = wait_done(url, &id);
    site.gate.refuse_leases(false);
    site.gate.open_dropping_held();
    assert_eq!(done["state"], "failed", "{done:#}");
    assert_eq!(done["result"]["status"], "failed", "{done:#}");
    let why = done["nodes"][0]["error"].as_str().unwrap_or_default();
    assert!(why.contains("lease"), "{done:#}");

    // The failure reaches the webhook, signed, and the audit log.
    let got = wait_for_deliveries(&receiver, &["backup.failed"]);
    let failed = got.iter().find(|d| d.event == "backup.failed").unwrap();
    assert_eq!(failed.signature, expected_signature(&failed.body));
    let body: serde_json::Value = serde_json::from_str(&failed.body).unwrap();
    assert_eq!(body["target"], id.as_str());
    assert_eq!(body["operation"], id.as_str());
    assert_eq!(body["who"], "token:ci");
    assert!(
        body["detail"].as_str().unwrap().contains("lease"),
        "{body:#}"
    );
    let audit = audit_entries(url);
    assert!(
        audit
            .iter()
            .any(|(a, w, o, _)| a == "backup" && w == "token:ci" && o == "failed"),
        "{audit:?}"
    );

    // A verification that cannot run (an index object the storage cannot read) fails as
    // a whole: a JSON 500, a storage error, a verify failure.
    let index = site.path("repo/index");
    let unreadable = index.join("f".repeat(64));
    std::os::unix::fs::symlink(&unreadable, &unreadable).unwrap();
    let broken = http(url, "POST", "/api/v1/verify", Some(CI_TOKEN), "");
    std::fs::remove_file(&unreadable).unwrap();
    assert_eq!(
        (broken.status, error_code(&broken).as_str()),
        (500, "failed"),
        "{}",
        broken.body
    );

    // A verification that finds a pack missing: a report with problems.
    let pack = first_file(&site.path("repo/data"));
    std::fs::remove_file(&pack).unwrap();
    let damaged = http(
        url,
        "POST",
        "/api/v1/verify",
        Some(CI_TOKEN),
        &format!(r#"{{"backup": "{good}", "read_data": true}}"#),
    );
    assert_eq!(damaged.status, 200, "{}", damaged.body);
    assert!(
        !damaged.json()["problems"].as_array().unwrap().is_empty(),
        "{}",
        damaged.body
    );
    wait_for_deliveries(&receiver, &["verify.failed"]);

    // The metrics count all of it.
    let text = metrics(url);
    let m = |name: &str, rest: &str| metric(&text, &format!("{name}{{storage=\"main\"{rest}}}"));
    let op = |kind: &str, outcome: &str| {
        m(
            "strata_operations_total",
            &format!(",kind=\"{kind}\",outcome=\"{outcome}\""),
        )
    };
    assert_eq!(op("backup", "succeeded"), 1.0);
    assert_eq!(op("backup", "failed"), 1.0);
    assert_eq!(op("verify", "failed"), 2.0);
    assert_eq!(m("strata_verify_failures_total", ""), 2.0);
    assert!(metric(&text, "strata_lease_losses_total") >= 1.0, "{text}");
    assert_eq!(m("strata_backups", ",status=\"failed\""), 1.0);
    assert_eq!(m("strata_backups", ",status=\"complete\""), 1.0);
    assert_eq!(m("strata_backups_verified", ",outcome=\"damaged\""), 1.0);
    assert_eq!(m("strata_store_errors_total", ",kind=\"get\""), 1.0);
    assert_eq!(metric(&text, "strata_node_up{node=\"db1\"}"), 1.0);

    // A node whose agent is gone is down.
    site.agent.take().unwrap().kill();
    let text = metrics(url);
    assert_eq!(metric(&text, "strata_node_up{node=\"db1\"}"), 0.0, "{text}");
}

/// The first file under `dir`, depth first.
fn first_file(dir: &std::path::Path) -> PathBuf {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    let first = entries
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no file under {}", dir.display()));
    if first.is_dir() {
        first_file(&first)
    } else {
        first
    }
}

/// `strata --server URL CMD --json`: stdout as JSON (the command must succeed).
fn remote_json(site: &Site, url: &str, args: &[&str]) -> serde_json::Value {
    let out = succeed(site.command().args(["--server", url, "--json"]).args(args));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

#[test]
fn every_backup_command_goes_through_the_server_with_server_and_secrets_stay_masked() {
    let receiver = Receiver::start(true);
    let (site, _) = plane_site(&receiver.url);
    // A second storage to copy to, and connection strings with passwords in them.
    let mut text = std::fs::read_to_string(site.config()).unwrap();
    text.push_str(&format!(
        "[tables]\ndb = \"postgresql://app:tablesecret@127.0.0.1:1/metrics\"\n\
         [pgq]\nbase_connstr = \"host=127.0.0.1 password='pgq secret' user=ticker\"\n\
         [storages.cold]\npath = \"{}\"\n",
        site.path("cold").display()
    ));
    std::fs::write(site.config(), text).unwrap();
    site.ok(&["init"]);
    site.ok(&["--storage", "cold", "init"]);
    let server = Server::start(site.command(), &site.path("server.log"));
    let url = server.url.as_str();
    succeed(
        site.command()
            .args(["--server", url, "-q", "backup", "--wait"]),
    );

    // ls: the server's listing is the local one, filters and pages included.
    let local = site.ok(&["--json", "ls", "latest"]);
    let local: serde_json::Value = serde_json::from_str(&local).unwrap();
    let remote = remote_json(&site, url, &["ls", "latest"]);
    assert_eq!(remote, local);
    assert!(remote.as_array().unwrap().len() > 10, "{remote:#}");
    let below = remote_json(&site, url, &["ls", "latest", "--node", "db1", "base/16384"]);
    let below = below.as_array().unwrap();
    assert!(!below.is_empty());
    assert!(below
        .iter()
        .all(|e| e["path"].as_str().unwrap().starts_with("base/16384")));
    let page = http(
        url,
        "GET",
        "/api/v1/backups/latest/files?limit=2&offset=1",
        Some(USER_TOKEN),
        "",
    );
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        page.json().as_array().unwrap()[..],
        local.as_array().unwrap()[1..3]
    );
    let no_node = http(
        url,
        "GET",
        "/api/v1/backups/latest/files?node=db9",
        Some(USER_TOKEN),
        "",
    );
    assert_eq!(no_node.status, 404, "{}", no_node.body);

    // pin, unpin, verify and a restore drill run on the server, as token "user".
    site.ok(&["--server", url, "pin", "latest"]);
    let shown = http(url, "GET", "/api/v1/backups/latest", Some(USER_TOKEN), "").json();
    assert_eq!(shown["pinned"], true);
    site.ok(&["--server", url, "unpin", "latest"]);
    let shown = http(url, "GET", "/api/v1/backups/latest", Some(USER_TOKEN), "").json();
    assert_eq!(shown["pinned"], false);
    let name = shown["name"].as_str().unwrap().to_string();
    let verified = remote_json(&site, url, &["verify", "--read-data"]);
    assert_eq!(verified["problems"], serde_json::json!([]));
    assert!(verified["blobs_checked"].as_u64().unwrap() > 0);
    let drill = remote_json(&site, url, &["verify", "--restore", "latest"]);
    assert_eq!(drill["problems"], serde_json::json!([]), "{drill:#}");
    assert!(drill["files"].as_u64().unwrap() > 10);
    let shown = http(url, "GET", "/api/v1/backups/latest", Some(USER_TOKEN), "").json();
    assert_eq!(shown["verification"]["mode"], "restore", "{shown:#}");

    // copy through the server, then restore the copy from the other storage, byte for byte.
    let copied = remote_json(&site, url, &["copy", "latest", "--to", "cold"]);
    assert_eq!(copied["backup"], name.as_str());
    assert_eq!(copied["blobs_sent"], copied["blobs"]);
    let out = site.path("from-cold");
    succeed(
        site.command()
            .args(["--storage", "cold", "restore", &name, "--to"])
            .arg(&out),
    );
    assert_same_tree(&site.path("data"), &out);
    let again = site
        .command()
        .args(["--server", url, "copy", "latest", "--to", "cold"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2), "a second copy is refused");

    // cleanup, gc and the WAL archive: the reports the local commands print.
    let plan = remote_json(&site, url, &["cleanup", "--dry-run", "--keep-last", "1"]);
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["backups"][0]["keep"], true);
    assert_eq!(plan["wal"]["removed"], serde_json::json!([]));
    let gc = remote_json(&site, url, &["gc", "--dry-run"]);
    assert_eq!(gc["dry_run"], true);
    assert!(gc["packs_kept"].as_u64().unwrap() > 0);
    let wal = remote_json(&site, url, &["wal", "list"]);
    assert_eq!(wal["archive"]["timelines"], serde_json::json!([]));
    assert_eq!(remote_json(&site, url, &["wal", "verify"])["checked"], 0);

    // init acts on this host: refused with --server rather than quietly run here.
    let init = site
        .command()
        .args(["--server", url, "--storage", "cold", "init"])
        .output()
        .unwrap();
    assert_eq!(init.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&init.stderr).contains("drop --server"));

    // A local restore --to is audited and told to the webhooks like any restore.
    // (From main: the backup is in cold too now, and the entry goes where it was read.)
    let local_copy = site.path("restored-here");
    succeed(
        site.command()
            .args(["--storage", "main", "restore", "latest", "--to"])
            .arg(&local_copy),
    );
    assert_same_tree(&site.path("data"), &local_copy);
    let entries = audit_entries(url);
    let by = |action: &str, who: &str| {
        entries
            .iter()
            .any(|(a, w, o, _)| a == action && w.starts_with(who) && o == "succeeded")
    };
    for action in ["pin", "unpin", "verify", "copy"] {
        assert!(
            by(action, "token:user"),
            "{action} by token:user: {entries:#?}"
        );
    }
    assert!(by("restore", "local:operator@"), "{entries:#?}");
    let got = wait_for_deliveries(&receiver, &["restore.succeeded"]);
    let restored = got.iter().find(|d| d.event == "restore.succeeded").unwrap();
    assert!(
        restored.body.contains("local:operator@"),
        "{}",
        restored.body
    );

    // Secrets: DSN passwords and webhook paths never leave the server.
    let config = http(url, "GET", "/api/v1/config", Some(USER_TOKEN), "");
    for secret in ["tablesecret", "pgq secret", "/hook"] {
        assert!(!config.body.contains(secret), "{secret} in {}", config.body);
    }
    let config = config.json();
    assert_eq!(
        config["tables"]["db"],
        "postgresql://app:***@127.0.0.1:1/metrics"
    );
    assert_eq!(
        config["webhooks"][0]["url"],
        receiver.url.replace("/hook", "/***")
    );
    let check = http(url, "GET", "/api/v1/check", Some(USER_TOKEN), "");
    assert!(!check.body.contains("/hook"), "{}", check.body);
    let shown = site.ok(&["config", "show"]);
    assert!(
        !shown.contains("tablesecret") && !shown.contains("pgq secret"),
        "{shown}"
    );

    // Metrics: durations add up, and a storage that stops answering drops only its own
    // figures: the scrape still answers, says so, and still reports the nodes.
    let text = metrics(url);
    assert_eq!(metric(&text, r#"strata_storage_up{storage="main"}"#), 1.0);
    assert!(
        metric(
            &text,
            r#"strata_operation_duration_seconds_total{storage="main",kind="verify"}"#
        ) > 0.0
    );
    // A file where the repository directory was: every listing fails.
    std::fs::rename(site.path("repo"), site.path("repo-away")).unwrap();
    std::fs::write(site.path("repo"), b"not a directory").unwrap();
    let text = metrics(url);
    assert_eq!(metric(&text, r#"strata_storage_up{storage="main"}"#), 0.0);
    assert_eq!(metric(&text, r#"strata_node_up{node="db1"}"#), 1.0);
    assert!(series(&text, r#"strata_backups{storage="main",status="complete"}"#).is_none());
}
