//! Clients that only hold connections must not stop `strata server` or the pgq ticker's
//! health server: with its soft file descriptor limit at 1024, a real server takes 2,000
//! idle connections and 200 slowloris connections (a partial request, one more byte
//! every second) on its plain and on its TLS listener, and must stay alive and answer
//! an authenticated `GET /api/v1/status` within seconds; the slowloris connections must
//! be closed by the server within its header (or TLS handshake) timeout. Loopback only,
//! bounded in count and time.
// Tests signal their own children and read or set limits through libc: each block
// says why it is sound.
#![allow(unsafe_code)]

use crate::common;

use common::server::Server;
use common::{one_node_site, strata_with_token, succeed};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use strata_testkit::free_port;
use strata_testkit::process::KillOnDrop;
use strata_testkit::tls::self_signed_certificate;

const TOKEN: &str = "limits-user-token";
const IDLE: usize = 2_000;
const SLOW: usize = 200;
/// The header and TLS handshake timeouts the test servers run with.
const TIMEOUT_SECS: u64 = 3;
/// What "answers within seconds" means here: a failure criterion, not a benchmark.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// Raises this process's soft file descriptor limit to `want` (the floods need one
/// descriptor per connection).
fn raise_fd_limit(want: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    assert!(
        limit.rlim_max >= want,
        "this test needs {want} file descriptors; the hard limit is {}",
        limit.rlim_max
    );
    if limit.rlim_cur < want {
        limit.rlim_cur = want;
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    }
}

/// `strata --config CONFIG` with the user token, run with its soft descriptor limit at
/// 1024.
fn strata(dir: &Path, config: &Path) -> Command {
    let mut cmd = strata_with_token(dir, config, TOKEN);
    with_1024_descriptors(&mut cmd);
    cmd
}

/// Runs `cmd` with its soft file descriptor limit at 1024 (hard 4096), as on a default
/// Linux system.
fn with_1024_descriptors(cmd: &mut Command) {
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 1024,
                rlim_max: 4096,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A one-node site whose server has short header, body and handshake timeouts (and TLS when
/// `tls` is set), initialised; its config's path.
fn site(dir: &Path, tls: bool) -> PathBuf {
    let mut server = format!(
        "[server]\nheader_timeout_secs = {TIMEOUT_SECS}\ntls_handshake_timeout_secs = {TIMEOUT_SECS}\nbody_timeout_secs = {TIMEOUT_SECS}\n"
    );
    if tls {
        let (cert, key) = self_signed_certificate(dir);
        server.push_str(&format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
            cert.display(),
            key.display()
        ));
    }
    let config = one_node_site(dir, &server);
    succeed(strata(dir, &config).arg("init"));
    config
}

fn address(url: &str) -> SocketAddr {
    url.split("://").nth(1).unwrap().parse().unwrap()
}

/// Up to `count` connections to `addr` that send nothing, each given two seconds to
/// connect, all of them at most 30 seconds (a server that stops accepting leaves the
/// rest unconnected; that is its failure to show, not the test's).
fn idle_connections(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut open = Vec::new();
    for _ in 0..count {
        if Instant::now() > deadline {
            break;
        }
        if let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            open.push(stream);
        }
    }
    open
}

/// Up to `count` connections that send `start` and then nothing yet (the slowloris
/// clients); non-blocking from here on.
fn slowloris(addr: SocketAddr, count: usize, start: &[u8]) -> Vec<TcpStream> {
    let mut open = idle_connections(addr, count);
    open.retain_mut(|s| s.write_all(start).is_ok() && s.set_nonblocking(true).is_ok());
    open
}

/// Sends one more byte on every open slowloris connection every second until the server
/// has closed them all or `limit` has passed; how many are still open.
fn drip_until_closed(mut open: Vec<TcpStream>, byte: u8, limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    while !open.is_empty() && Instant::now() < deadline {
        open.retain_mut(|s| {
            if s.write(&[byte]).is_err() {
                return false;
            }
            let mut buf = [0u8; 1024];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => return false,
                    // An error reply (408) before closing: read on.
                    Ok(_) => continue,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                    Err(_) => return false,
                }
            }
        });
        std::thread::sleep(Duration::from_secs(1));
    }
    open.len()
}

/// The status of an authenticated `GET /api/v1/status`, or why there was none within
/// [`ANSWER_WITHIN`].
fn status(url: &str, ca: Option<&Path>) -> Result<u16, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        strata_util::tls_by_ring();
        let mut builder = reqwest::Client::builder().timeout(ANSWER_WITHIN);
        if let Some(ca) = ca {
            let pem = std::fs::read(ca).unwrap();
            builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
        }
        let reply = builder
            .build()
            .unwrap()
            .get(format!("{url}/api/v1/status"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .map_err(|e| format!("{e:?}"))?;
        Ok(reply.status().as_u16())
    })
}

/// Floods the server of `config` and checks it holds: alive, answering, slowloris closed.
fn flood_and_check(dir: &Path, config: &Path, ca: Option<&Path>, slow_start: &[u8]) {
    raise_fd_limit(8192);
    let mut server = Server::start(strata(dir, config), &dir.join("server.log"));
    let addr = address(&server.url);
    assert_eq!(
        status(&server.url, ca),
        Ok(200),
        "the server answers at first"
    );

    let idle = idle_connections(addr, IDLE);
    let slow = slowloris(addr, SLOW, slow_start);

    // Must not happen: the server ends, or stops answering its users.
    assert_eq!(server.exited(), None, "the server died under the flood");
    // The flood happened (a few connections may lose a SYN to a full backlog on a busy
    // machine; that is not what this test is about).
    assert!(
        idle.len() >= IDLE * 9 / 10 && slow.len() >= SLOW * 9 / 10,
        "connections were refused or timed out: {} idle and {} slowloris opened",
        idle.len(),
        slow.len()
    );
    assert_eq!(
        status(&server.url, ca),
        Ok(200),
        "no answer to an authenticated request within {ANSWER_WITHIN:?} while {} idle and {} slowloris connections are open",
        idle.len(),
        slow.len()
    );
    // Must not happen: a slowloris client holds its connection past the timeout.
    let still_open = drip_until_closed(slow, b'a', Duration::from_secs(TIMEOUT_SECS + 7));
    assert_eq!(
        still_open, 0,
        "slowloris connections still open {}s after the {TIMEOUT_SECS}s timeout",
        7
    );
    assert_eq!(server.exited(), None, "the server died under the flood");
    assert_eq!(status(&server.url, ca), Ok(200));
    drop(idle);
}

#[test]
fn idle_and_slowloris_connections_do_not_stop_the_plain_listener() {
    let dir = tempfile::tempdir().unwrap();
    let config = site(dir.path(), false);
    flood_and_check(
        dir.path(),
        &config,
        None,
        b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-",
    );
}

#[test]
fn idle_and_slowloris_connections_do_not_stop_the_tls_listener() {
    let dir = tempfile::tempdir().unwrap();
    let config = site(dir.path(), true);
    // A TLS handshake record announcing 512 bytes, then one byte at a time.
    flood_and_check(
        dir.path(),
        &config,
        Some(&dir.path().join("cert.pem")),
        &[0x16, 0x03, 0x01, 0x02, 0x00],
    );
}

#[test]
fn a_body_sent_a_byte_at_a_time_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let config = site(dir.path(), false);
    let mut server = Server::start(strata(dir.path(), &config), &dir.path().join("server.log"));
    let addr = address(&server.url);
    // Headers at once (with the token), then a 1,000-byte body one byte a second: each
    // byte arrives well within any per-chunk timeout, the whole body never in time.
    let head = format!(
        "POST /api/v1/restores HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
    );
    let slow = slowloris(addr, 3, head.as_bytes());
    assert_eq!(slow.len(), 3);
    // Must not happen: the body holds its connection past the body timeout.
    let still_open = drip_until_closed(slow, b' ', Duration::from_secs(TIMEOUT_SECS + 7));
    assert_eq!(
        still_open, 0,
        "slow bodies still open 7 s after the body timeout"
    );
    assert_eq!(server.exited(), None);
    assert_eq!(status(&server.url, None), Ok(200));
}

/// The status code of `GET /health` from the ticker at `addr`, or why there was none
/// within [`ANSWER_WITHIN`].
fn health(addr: SocketAddr) -> Result<u16, String> {
    let mut stream = TcpStream::connect_timeout(&addr, ANSWER_WITHIN).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(ANSWER_WITHIN)).unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    stream
        .read_to_end(&mut reply)
        .map_err(|e| format!("{e} (after {} bytes)", reply.len()))?;
    String::from_utf8_lossy(&reply)
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no status line: {:?}", String::from_utf8_lossy(&reply)))
}

#[test]
fn idle_and_slowloris_connections_do_not_stop_the_ticker_health_server() {
    raise_fd_limit(8192);
    let dir = tempfile::tempdir().unwrap();
    // The database is a port where nothing listens: health answers 503, which is an
    // answer; no PostgreSQL is needed to show the server keeps answering.
    let ini = dir.path().join("ticker.ini");
    std::fs::write(
        &ini,
        format!(
            "[pgqd]\nbase_connstr = host=127.0.0.1 port={} user=nobody connect_timeout=1\ndatabase_list = db1\nlogfile = {}\nticker_period = 1\nretry_period = 1\n",
            free_port(),
            dir.path().join("ticker.log").display()
        ),
    )
    .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    with_1024_descriptors(&mut cmd);
    let mut ticker = KillOnDrop(
        cmd.args(["pgq", "ticker"])
            .arg(&ini)
            .args(["--health", &addr.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while health(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "the health server never answered"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // More slowloris clients than the ticker has descriptors, kept dripping meanwhile.
    let idle = idle_connections(addr, IDLE);
    let slow = slowloris(addr, 1_100, b"GET /health HTTP/1.1\r\nX-");
    let dripping =
        std::thread::spawn(move || drip_until_closed(slow, b'a', Duration::from_secs(12)));

    // Must not happen: the ticker ends, or its health server stops answering.
    assert!(ticker.0.try_wait().unwrap().is_none(), "the ticker died");
    let answer = health(addr);
    assert!(
        matches!(answer, Ok(200 | 503)),
        "no /health answer within {ANSWER_WITHIN:?} while {} idle and 1,100 slowloris connections are open: {answer:?}",
        idle.len()
    );
    // Must not happen: a slowloris client holds its connection past the 5 s limit.
    assert_eq!(
        dripping.join().unwrap(),
        0,
        "slowloris connections still open after 12 s"
    );
    assert!(ticker.0.try_wait().unwrap().is_none(), "the ticker died");
    drop(idle);
}
