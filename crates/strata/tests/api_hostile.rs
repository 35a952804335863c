//! Hostile clients of a real `strata server`'s API, and what its webhooks may not do:
//! restore requests with a newline, quote or NUL in the recovery target, `../` in node
//! names and include paths, or megabytes of text are refused with 4xx and start nothing;
//! requests without the right token are logged without the token and, past the limit,
//! answered 429; a webhook that redirects is not followed and its secret URL path never
//! reaches the log.

use crate::common;

use common::server::{http, Server};
use common::{one_node_site, snapshot_tree, strata_with_token, succeed};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "hostile-user-token";
/// The credential a chat webhook carries in its path.
const HOOK_PATH_SECRET: &str = "T0KEN-in-the-webhook-path-5f3c9a";

fn strata(dir: &Path, config: &Path) -> Command {
    strata_with_token(dir, config, TOKEN)
}

/// A listener on 127.0.0.1 that answers every request with `status` (and `extra`
/// headers) and counts the requests it got; its address.
fn listener(status: &'static str, extra: String) -> (String, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            // Read the head and the body (Content-Length) before answering.
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length];
            let _ = std::io::Read::read_exact(&mut reader, &mut body);
            seen.fetch_add(1, Ordering::SeqCst);
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (address, count)
}

/// A one-node site with one backup, and the webhook `hook_url` for backups; initialised.
fn site(dir: &Path, hook_url: &str) -> PathBuf {
    let config = one_node_site(
        dir,
        &format!(
            "[server]\nauth_failures_per_minute = 5\n[[webhooks]]\nurl = \"{hook_url}\"\nevents = [\"backup.*\"]\nattempts = 2\nbackoff_ms = 10\n"
        ),
    );
    succeed(strata(dir, &config).arg("init"));
    config
}

fn wait_for_log(log: &Path, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let content = std::fs::read_to_string(log).unwrap_or_default();
        if content.contains(text) {
            return content;
        }
        assert!(
            Instant::now() < deadline,
            "the log never said {text:?}: {content}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn hostile_restore_requests_are_refused_and_start_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = site(dir.path(), "http://127.0.0.1:9/hook");
    succeed(strata(dir.path(), &config).arg("backup"));
    let data = dir.path().join("data");
    let before = snapshot_tree(&data);
    let server = Server::start(strata(dir.path(), &config), &dir.path().join("server.log"));
    let url = server.url.as_str();

    let huge = "9".repeat(1 << 20);
    let target = |kind: &str, value: &str| {
        serde_json::json!({
            "backup": "latest",
            "recovery": {"target": {kind: value}, "action": "promote", "start": true}
        })
    };
    let bodies = [
        target(
            "time",
            "2026-11-23 05:00:00+00\nrestore_command = 'touch /tmp/owned'",
        ),
        target("time", "2026-11-23 05:00:00+00'"),
        target("time", "2026-11-23\u{0}05:00:00+00"),
        target("time", &huge),
        target("lsn", "0/3000060\nrecovery_target_action = 'promote'"),
        target("xid", "12\n"),
        serde_json::json!({"backup": "../../etc"}),
        serde_json::json!({"backup": "latest", "node": "../etc"}),
        serde_json::json!({"backup": "latest", "map": {"db1": "../x"}}),
        serde_json::json!({"backup": "latest", "include": "../../etc"}),
        serde_json::json!({"backup": "latest", "include": "base/../../../etc"}),
        serde_json::json!({"backup": "latest", "include": "base\u{0}"}),
        serde_json::json!({"backup": "latest", "include": huge}),
    ];
    for body in &bodies {
        let reply = http(
            url,
            "POST",
            "/api/v1/restores",
            Some(TOKEN),
            &body.to_string(),
        );
        let shown: String = body.to_string().chars().take(120).collect();
        // Must not happen: a hostile body is taken (202) or breaks the server (5xx).
        assert!(
            (400..500).contains(&reply.status),
            "{shown}: {} {}",
            reply.status,
            reply.body
        );
        assert!(
            reply.body.len() < 1024,
            "the error echoes the input: {}",
            reply.body
        );
    }
    // Nothing started, nothing written.
    let operations = http(url, "GET", "/api/v1/operations", Some(TOKEN), "").json();
    assert_eq!(
        operations,
        serde_json::json!([]),
        "an operation was started"
    );
    assert!(before == snapshot_tree(&data), "the data directory changed");
}

#[test]
fn bad_tokens_are_logged_without_the_token_and_limited() {
    let dir = tempfile::tempdir().unwrap();
    let config = site(dir.path(), "http://127.0.0.1:9/hook");
    let log = dir.path().join("server.log");
    let server = Server::start(strata(dir.path(), &config), &log);
    let url = server.url.as_str();
    let guess = "guessed-token-0123456789";
    // auth_failures_per_minute = 5: five 401s, then 429, even with the right token.
    for _ in 0..5 {
        assert_eq!(
            http(url, "GET", "/api/v1/status", Some(guess), "").status,
            401
        );
    }
    let limited = http(url, "GET", "/api/v1/status", Some(TOKEN), "");
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert!(limited.header("retry-after").is_some());
    let content = wait_for_log(&log, "unauthenticated request from 127.0.0.1");
    assert!(
        !content.contains(guess),
        "the log shows a presented token: {content}"
    );
    assert!(content.contains("429"), "{content}");
}

#[test]
fn a_webhook_is_not_redirected_and_its_secret_path_stays_out_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    // The second listener must never be contacted; the first redirects to it.
    let (elsewhere, contacted) = listener("204 No Content", String::new());
    let (hook, tried) = listener(
        "302 Found",
        format!("Location: http://{elsewhere}/collect/{HOOK_PATH_SECRET}\r\n"),
    );
    let hook_url = format!("http://{hook}/services/{HOOK_PATH_SECRET}");
    let config = site(dir.path(), &hook_url);
    let log = dir.path().join("server.log");
    let server = Server::start(strata(dir.path(), &config), &log);
    let started = http(&server.url, "POST", "/api/v1/backups", Some(TOKEN), "");
    assert_eq!(started.status, 202, "{}", started.body);

    let content = wait_for_log(&log, "did not take event");
    // Must not happen: the redirect is followed, or the path's secret is logged.
    assert!(
        tried.load(Ordering::SeqCst) >= 1,
        "the webhook was never called"
    );
    assert_eq!(
        contacted.load(Ordering::SeqCst),
        0,
        "the webhook's redirect was followed"
    );
    assert!(
        !content.contains(HOOK_PATH_SECRET),
        "the log shows the webhook's secret path: {content}"
    );
    assert!(content.contains(&format!("http://{hook}/***")), "{content}");
    assert!(content.contains("302"), "{content}");
}
