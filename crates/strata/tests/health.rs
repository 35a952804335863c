//! `GET /health` and `GET /ready` of `strata server`: answered without a token, outside
//! the rate limit on unauthenticated requests, `/ready` saying what is wrong (503) without
//! a secret, and the same pair on a server that is only a node's agent. `strata probe`,
//! their client, against the server and against peers that misbehave; and what a
//! `Type=notify` systemd unit hears (READY=1 once it serves, watchdog pings, STOPPING=1).
// Tests signal their own children and read or set limits through libc: each block
// says why it is sound.
#![allow(unsafe_code)]

use crate::common;

use common::server::{http, Server};
use common::{one_node_site, probe, strata_at, strata_with_token};
use std::io::{Read, Write};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;
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

    // `strata probe --ready` says the same: exit 1, naming the storage, no secret.
    let out = probe(&[&server.url, "--ready"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not ready") && stderr.contains("storage cold"),
        "{stderr}"
    );
    assert!(!stderr.contains(SECRET), "{stderr}");
    let out = probe(&[&server.url]);
    assert_eq!(out.status.code(), Some(0), "the process serves: {out:?}");
}

/// A peer on 127.0.0.1 that answers each of its first `replies.len()` connections with
/// the next reply (raw HTTP; `None`: accepts, reads, never answers), from `delay` on.
fn peer(replies: Vec<Option<Vec<u8>>>, delay: Duration) -> String {
    let port = strata_testkit::net::free_port();
    let address = format!("127.0.0.1:{port}");
    let bind = address.clone();
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        let listener = std::net::TcpListener::bind(&bind).unwrap();
        let mut held = Vec::new();
        for reply in replies {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            match reply {
                Some(bytes) => {
                    let _ = stream.write_all(&bytes);
                }
                None => held.push(stream),
            }
        }
        std::thread::sleep(Duration::from_secs(30));
        drop(held);
    });
    format!("http://{address}")
}

fn reply(status: &str, body: &[u8]) -> Option<Vec<u8>> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    Some(out)
}

#[test]
fn probe_asks_the_configured_server_and_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = one_node_site(dir.path(), "");
    strata_at(dir.path(), &config).arg("init").output().unwrap();
    let server = token_server(dir.path(), &config);
    let out = probe(&[&server.url]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("/health: strata server") && stdout.contains("serves"),
        "{stdout}"
    );
    let out = probe(&[&format!("{}/ready", server.url)]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ready"),
        "{out:?}"
    );
    let out = probe(&["--json", &server.url, "--ready"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ready"], true, "{report}");

    // No URL: the configuration's server.listen (the wildcard asked on loopback).
    let port = server.url.rsplit(':').next().unwrap();
    let listen = dir.path().join("listen.toml");
    std::fs::write(&listen, format!("[server]\nlisten = \"0.0.0.0:{port}\"\n")).unwrap();
    let out = strata_at(dir.path(), &listen)
        .arg("probe")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("http://127.0.0.1:{port}/health")),
        "{out:?}"
    );

    // --wait: a server that starts two seconds later is waited for.
    let body = br#"{"status":"ok","process":"strata server","version":"0"}"#;
    let late = peer(vec![reply("200 OK", body)], Duration::from_secs(2));
    let out = probe(&[&late, "--wait", "60"]);
    assert!(out.status.success(), "{out:?}");

    // Usage: a wait past a day, no timeout, credentials in the URL (not echoed).
    assert_eq!(
        probe(&[&late, "--wait", "18446744073709551615"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(probe(&[&late, "--timeout", "0"]).status.code(), Some(2));
    let out = probe(&["http://ops:s3cret@127.0.0.1:7370"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("s3cret"),
        "{out:?}"
    );
    // Usage: not a URL, or a URL naming the other endpoint.
    assert_eq!(probe(&["127.0.0.1:7370"]).status.code(), Some(2));
    assert_eq!(
        probe(&["http://127.0.0.1:7370/health", "--ready"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn probe_trusts_no_peer_that_misbehaves() {
    // Nobody listens: exit 1, and --wait gives up when its time is over.
    let nobody = format!("http://127.0.0.1:{}", strata_testkit::net::free_port());
    let out = probe(&[&nobody, "--wait", "1"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no answer"),
        "{out:?}"
    );

    // A peer that accepts and never answers costs one timeout, not a hung probe.
    let silent = peer(vec![None], Duration::ZERO);
    let out = probe(&[&silent, "--timeout", "1"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing within 1 s"),
        "{out:?}"
    );

    // 200, but not a strata report; and one of 8 MiB: read up to a bound, refused.
    let hello = peer(vec![reply("200 OK", b"hello")], Duration::ZERO);
    let out = probe(&[&hello]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a strata health report"),
        "{out:?}"
    );
    // A valid report, but larger than a probe reads: refused, not read to its end.
    let padded = format!(
        r#"{{"status":"ok","process":"{}","version":"0"}}"#,
        "x".repeat(8 << 20)
    );
    let huge = peer(vec![reply("200 OK", padded.as_bytes())], Duration::ZERO);
    let out = probe(&[&huge]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a strata health report"),
        "{out:?}"
    );

    // Another status: named with the first line of the body.
    let teapot = peer(
        vec![reply("418 I'm a teapot", b"short and stout\nmore")],
        Duration::ZERO,
    );
    let out = probe(&[&teapot]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr.contains("HTTP 418: short and stout") && !stderr.contains("more"),
        "{stderr}"
    );

    // /ready answering 200 with ready = false is not taken for ready.
    let liar = peer(
        vec![reply("200 OK", br#"{"ready":false,"checks":[]}"#)],
        Duration::ZERO,
    );
    let out = probe(&[&liar, "--ready"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

/// Reads the next notification, failing the test after 30 s without one.
fn notification(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).expect("a notification within 30 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn a_type_notify_unit_hears_ready_once_the_server_serves_then_watchdog_pings_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let config = one_node_site(dir.path(), "");
    strata_at(dir.path(), &config).arg("init").output().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut cmd = strata_with_token(dir.path(), &config, "user-token");
    // As systemd sets them for Type=notify with WatchdogSec=0.4s.
    cmd.env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "400000");
    let mut server = Server::start(cmd, &dir.path().join("server.log"));

    let ready = notification(&socket);
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(
        ready.contains(&format!("STATUS=serving on {}", server.url)),
        "{ready:?}"
    );
    // Ready means it serves: asked right now, it answers.
    assert!(probe(&[&server.url]).status.success());
    for _ in 0..3 {
        assert_eq!(notification(&socket).trim(), "WATCHDOG=1");
    }

    // SIGTERM (a unit's stop): STOPPING=1, then a clean exit.
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(server.pid() as i32, libc::SIGTERM) };
    let stopping = (0..100)
        .map(|_| notification(&socket))
        .find(|n| n.contains("STOPPING=1"))
        .expect("STOPPING=1 among the next notifications");
    assert!(stopping.contains("STATUS="), "{stopping:?}");
    let mut status = None;
    strata_testkit::wait::wait_for(
        "the server to exit on SIGTERM",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || {
            status = server.exited();
            status.is_some()
        },
    );
    assert!(status.unwrap().success(), "{status:?}");
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

#[test]
fn the_ticker_and_the_londiste_worker_tell_a_notify_unit_too() {
    let dir = tempfile::tempdir().unwrap();
    // No database answers: both run on, retrying, as their units would.
    let dead = strata_testkit::net::free_port();
    let ticker_ini = dir.path().join("pgqd.ini");
    std::fs::write(
        &ticker_ini,
        format!(
            "[pgqd]\nbase_connstr = host=127.0.0.1 port={dead} user=nobody\ndatabase_list = d\n"
        ),
    )
    .unwrap();
    let worker_ini = dir.path().join("node.ini");
    std::fs::write(
        &worker_ini,
        format!("[londiste3]\njob_name = n1\ndb = host=127.0.0.1 port={dead} dbname=none\nqueue_name = q\n"),
    )
    .unwrap();
    let ticker = vec![
        "pgq".to_string(),
        "ticker".into(),
        ticker_ini.display().to_string(),
    ];
    let worker = vec![
        "londiste".to_string(),
        worker_ini.display().to_string(),
        "worker".into(),
    ];
    for (name, args) in [("ticker", ticker), ("worker", worker)] {
        let path = dir.path().join(format!("{name}.sock"));
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
            .env_clear()
            .env("NOTIFY_SOCKET", &path)
            .env("WATCHDOG_USEC", "400000")
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut child = strata_testkit::process::KillOnDrop(child);
        let ready = notification(&socket);
        assert!(ready.lines().any(|l| l == "READY=1"), "{name}: {ready:?}");
        assert_eq!(notification(&socket).trim(), "WATCHDOG=1", "{name}");
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
        (0..100)
            .map(|_| notification(&socket))
            .find(|n| n.contains("STOPPING=1"))
            .unwrap_or_else(|| panic!("{name}: STOPPING=1 among the next notifications"));
        let status = child.0.wait().unwrap();
        assert!(status.success(), "{name}: {status:?}");
    }
}
