//! The Londiste worker's `/health` and `/ready` (`health_listen` in its ini) when its
//! database cannot be reached: the process serves, and says it is not ready and why. (A
//! worker that replays is ready: `londiste.rs`, the root-to-leaf test.)

use crate::common;

use common::probe;
use std::time::{Duration, Instant};
use strata_testkit::http::http;
use strata_testkit::net::free_port;
use strata_testkit::process::KillOnDrop;

#[test]
fn a_worker_that_cannot_reach_its_database_serves_health_and_is_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    // A loopback port nothing listens on.
    let port = free_port();
    let health = format!("127.0.0.1:{}", free_port());
    let ini = dir.path().join("leaf.ini");
    std::fs::write(
        &ini,
        format!(
            "[londiste3]\njob_name = leaf_worker\ndb = host=127.0.0.1 port={port} dbname=leaf connect_timeout=2\nqueue_name = q\nloop_delay = 0.1\nhealth_listen = {health}\n"
        ),
    )
    .unwrap();
    let _worker = KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["londiste", ini.to_str().unwrap(), "worker"])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("worker.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://{health}");
    // Bounded wait for the worker to listen and to have tried its database once.
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        if std::net::TcpStream::connect(&health).is_ok() {
            let ready = http(&url, "GET", "/ready", None, "");
            if ready.body.contains("retrying") {
                break ready;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the worker never reported its failure"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(ready.status, 503, "{}", ready.body);
    let check = &ready.json()["checks"][0];
    assert_eq!(check["name"], "worker leaf_worker");
    assert_eq!(check["ok"], false);
    let health = http(&url, "GET", "/health", None, "");
    assert_eq!(health.status, 200, "the process serves: {}", health.body);
    assert_eq!(health.json()["status"], "ok");
    assert_eq!(http(&url, "GET", "/nosuch", None, "").status, 404);
    // `strata probe` reads both: it serves, it is not ready and why.
    assert!(probe(&[&url]).status.success());
    let out = probe(&[&url, "--ready"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("worker leaf_worker (retrying"),
        "{out:?}"
    );
}
