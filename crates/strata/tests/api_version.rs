//! `strata --server` against servers of another API version: the CLI asks
//! `GET /api/v1/version` first, works on what both sides know, and says clearly what
//! differs instead of sending a call the server never had.
//!
//! The "servers" here are a few lines of HTTP on a loopback port that answer what a
//! server of another version would, and record every request they get.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Output;
use std::sync::{Arc, Mutex};

/// A fake server: `version` is the body of `/api/v1/version` (404 when `None`);
/// `/api/v1/backups` lists nothing; anything else is 404. Returns its URL and the log of
/// requests (`METHOD path`).
fn fake_server(version: Option<&'static str>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut length = 0usize;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
                if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let mut parts = request_line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            seen.lock().unwrap().push(format!("{method} {path}"));
            let (status, reply) = match (method, path, version) {
                ("GET", "/api/v1/version", Some(v)) => ("200 OK", v.to_string()),
                ("GET", "/api/v1/backups", _) => ("200 OK", "[]".to_string()),
                _ => (
                    "404 Not Found",
                    r#"{"code":"not_found","message":"no such route"}"#.to_string(),
                ),
            };
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    (url, log)
}

fn strata(url: &str, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .current_dir(dir.path())
        .env("STRATA_TOKEN", "t")
        .args(["--server", url])
        .args(args)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_server_of_another_api_version_is_named_and_not_called() {
    let (url, log) = fake_server(Some(
        r#"{"api":2,"server":"9.0.0","features":["backups","gc"]}"#,
    ));
    let out = strata(&url, &["list"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("API version 2")
            && err.contains("strata 9.0.0")
            && err.contains("API version 1"),
        "the message names both versions: {err}"
    );
    assert_eq!(*log.lock().unwrap(), vec!["GET /api/v1/version"]);
}

#[test]
fn a_server_without_a_feature_refuses_only_that_command() {
    let (url, log) = fake_server(Some(r#"{"api":1,"server":"0.0.9","features":["backups"]}"#));
    // What both know works...
    let out = strata(&url, &["list"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no backups yet"));
    // ...and what the server lacks is refused here, naming it, before any call is sent.
    let out = strata(&url, &["gc", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("does not offer `gc`") && err.contains("0.0.9"),
        "the message names the feature and the server's version: {err}"
    );
    let calls = log.lock().unwrap().clone();
    assert!(
        !calls.iter().any(|c| c.starts_with("POST")),
        "nothing the server does not offer was sent: {calls:?}"
    );
}

#[test]
fn a_server_from_before_version_negotiation_is_read_as_api_one() {
    let (url, log) = fake_server(None);
    let out = strata(&url, &["list", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed, serde_json::json!([]));
    assert_eq!(
        *log.lock().unwrap(),
        vec!["GET /api/v1/version", "GET /api/v1/backups"]
    );
}

/// A server that does not know components would ignore `--component` (and `--rename`,
/// `--dry-run`) and restore everything for real: the client refuses before sending, while
/// a plain restore still goes to it. A server from before negotiation lacks it too.
#[test]
fn a_component_restore_needs_a_server_that_knows_components() {
    for version in [
        Some(r#"{"api":1,"server":"0.0.9","features":["backups","restores"]}"#),
        None,
    ] {
        let (url, log) = fake_server(version);
        for extra in [
            &["--component", "topology"][..],
            &["--dry-run"],
            &["--rename", "a=b"],
        ] {
            let mut args = vec!["restore", "20261125T000000Z-00000000"];
            args.extend(extra);
            let out = strata(&url, &args);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
            let err = stderr(&out);
            assert!(
                err.contains("does not offer `components`"),
                "{args:?}: {err}"
            );
        }
        let calls = log.lock().unwrap().clone();
        assert!(
            !calls.iter().any(|c| c.starts_with("POST")),
            "no restore was sent: {calls:?}"
        );
        // Without those options the restore is sent (the fake server answers 404).
        let out = strata(&url, &["restore", "20261125T000000Z-00000000"]);
        assert_ne!(out.status.code(), Some(0));
        assert!(log
            .lock()
            .unwrap()
            .iter()
            .any(|c| c == "POST /api/v1/restores"));
    }
}
