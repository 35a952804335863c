//! The local WAL archiver (`strata wal archiver`) against the real binary: `wal-push`
//! hands it segments over its socket, it stores them in batches and answers once they
//! are stored; without it (or with a dead one) `wal-push` pushes by itself; a stalled
//! archiver fails the push in time instead of hanging PostgreSQL's archiver; hostile
//! clients are cut off without stopping the others. And recovery's side: the prefetcher a
//! `wal-fetch` starts keeps the spool ahead of replay.

use crate::common;

use common::server::{http, Server};
use common::{assert_success, realistic_tree, strata_with_token, Site};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use strata_testkit::data::pseudo_random;

/// A one-node site (WAL pushed ahead, archiver batches of 8, `extra` TOML in
/// `[postgres]`), initialised.
fn wal_site(extra: &str) -> Site {
    wal_site_with_ttl(10, extra)
}

/// A site whose leases (and archive-writer marks) live `ttl` seconds unless renewed.
fn wal_site_with_ttl(ttl: u64, extra: &str) -> Site {
    let site = Site::new()
        .node("db1", "data")
        .config_extra(&format!(
            "[server]\nlease_ttl_secs = {ttl}\n[postgres]\nwal_push_ahead = 4\narchiver_batch = 8\n{extra}"
        ))
        .build();
    realistic_tree(&site.path("data"));
    site.ok(&["init"]);
    site
}

fn socket(site: &Site) -> PathBuf {
    site.dir().join("state/wal-archiver.sock")
}

/// Starts the archiver and waits until it answers.
fn archiver(site: &Site) -> Archiver {
    archiver_with(site, &[])
}

/// [`archiver`] with more environment (the test-only write hold).
fn archiver_with(site: &Site, env: &[(&str, &str)]) -> Archiver {
    let child = site
        .command()
        .args(["wal", "archiver"])
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while UnixStream::connect(socket(site)).is_err() {
        assert!(Instant::now() < deadline, "the archiver never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    Archiver { child }
}

fn status(site: &Site) -> serde_json::Value {
    serde_json::from_str(&site.ok(&["--json", "wal", "status"])).unwrap()
}

fn pg_wal(site: &Site) -> PathBuf {
    site.dir().join("pg/pg_wal")
}

/// Segment `n` (16 KiB of its own bytes), marked ready as PostgreSQL does.
fn segment(site: &Site, n: u32) -> PathBuf {
    let wal = pg_wal(site);
    fs::create_dir_all(wal.join("archive_status")).unwrap();
    let name = format!("00000001000000000000{n:04X}");
    fs::write(wal.join(&name), pseudo_random(16 * 1024, n as u64)).unwrap();
    fs::write(
        wal.join("archive_status").join(format!("{name}.ready")),
        b"",
    )
    .unwrap();
    wal.join(name)
}

/// `wal-push` of `path` as PostgreSQL runs it (relative to the data directory), then
/// the `.ready` file renamed `.done` as PostgreSQL does on success.
fn pg_push(site: &Site, path: &Path) -> String {
    let relative = Path::new("pg_wal").join(path.file_name().unwrap());
    let out = site
        .command()
        .args(["wal-push", relative.to_str().unwrap()])
        .current_dir(site.dir().join("pg"))
        .output()
        .unwrap();
    let said = assert_success(&format!("wal-push {}", relative.display()), &out);
    let status = pg_wal(site).join("archive_status");
    let name = path.file_name().unwrap().to_str().unwrap();
    fs::rename(
        status.join(format!("{name}.ready")),
        status.join(format!("{name}.done")),
    )
    .unwrap();
    said
}

fn fetch_back(site: &Site, path: &Path) {
    let name = path.file_name().unwrap().to_str().unwrap();
    let back = site.dir().join("fetched");
    site.ok(&["wal-fetch", name, back.to_str().unwrap()]);
    assert_eq!(fs::read(&back).unwrap(), fs::read(path).unwrap(), "{name}");
    fs::remove_file(back).unwrap();
}

struct Archiver {
    child: Child,
}

impl Archiver {
    fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success());
    }

    /// SIGTERM, then its exit (which must be clean) and its stderr.
    fn stop(mut self) -> String {
        self.signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the archiver did not stop");
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stderr = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(
            status.success(),
            "the archiver stopped with {status}: {stderr}"
        );
        stderr
    }
}

impl Drop for Archiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn pushes_go_through_the_archiver_in_batches_and_read_back() {
    let site = wal_site("");
    let archiver = archiver(&site);
    let segments: Vec<PathBuf> = (1..=20).map(|n| segment(&site, n)).collect();
    let first = pg_push(&site, &segments[0]);
    assert!(
        first.contains("archived 000000010000000000000001"),
        "{first}"
    );
    assert!(
        first.contains("archived 000000010000000000000005"),
        "the ready segments after it went in the same batch: {first}"
    );
    for segment in &segments[1..] {
        pg_push(&site, segment);
    }
    let status = status(&site);
    assert_eq!(status["archived_files"], 20, "{status}");
    assert_eq!(status["failures"], 0, "{status}");
    assert_eq!(status["ready_segments"], 0, "{status}");
    assert_eq!(
        status["last_archived"], "000000010000000000000014",
        "{status}"
    );
    let batches = status["batches"].as_u64().unwrap();
    assert_eq!(batches, 20, "one batch per push: {status}");
    // Five pushes stored new files (1-5, 6-10, ...); the others found theirs archived.
    // Each storing batch wrote one index object; the look-ahead stored the rest.
    let index_objects = fs::read_dir(site.dir().join("repo/index")).unwrap().count();
    assert!(
        index_objects <= 5,
        "{index_objects} index objects for 20 segments"
    );

    // `/metrics` of a server on this host reads the archiver's counters over its socket.
    let server = Server::start(
        strata_with_token(site.dir(), site.config(), "wal-token"),
        &site.dir().join("server.log"),
    );
    let scrape = http(&server.url, "GET", "/metrics", Some("wal-token"), "");
    assert_eq!(scrape.status, 200, "{}", scrape.body);
    for line in [
        "strata_wal_archiver_up{storage=\"main\"} 1",
        "strata_wal_archived_files_total{storage=\"main\"} 20",
        "strata_wal_archive_ready_segments{storage=\"main\"} 0",
        "strata_wal_archive_failures_total{storage=\"main\"} 0",
    ] {
        assert!(
            scrape.body.lines().any(|l| l.starts_with(line)),
            "no {line} in:\n{}",
            scrape.body
        );
    }
    let reply = http(
        &server.url,
        "GET",
        "/api/v1/wal/archiver",
        Some("wal-token"),
        "",
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["archived_files"], 20, "{}", reply.body);
    drop(server);

    let stderr = archiver.stop();
    assert!(stderr.contains("the WAL archiver stopped"), "{stderr}");
    assert!(!socket(&site).exists(), "the socket is removed at the stop");
    for segment in &segments {
        fetch_back(&site, segment);
    }
    site.ok(&["wal", "verify"]);
}

#[test]
fn without_a_listening_archiver_wal_push_pushes_by_itself() {
    let site = wal_site("");
    let seg = segment(&site, 1);
    pg_push(&site, &seg);
    // A socket file an archiver left behind when it died: nobody listens.
    fs::create_dir_all(socket(&site).parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(socket(&site)).unwrap());
    let seg2 = segment(&site, 2);
    pg_push(&site, &seg2);
    fetch_back(&site, &seg);
    fetch_back(&site, &seg2);
    let out = site.strata(&["wal", "status"]);
    assert!(out.code != Some(0));
    let said = &out.stderr;
    assert!(said.contains("no WAL archiver listens"), "{said}");
    // An archiver replaces the dead socket and serves.
    let archiver = archiver(&site);
    let seg3 = segment(&site, 3);
    pg_push(&site, &seg3);
    assert_eq!(status(&site)["archived_files"], 1);
    // A second archiver on the same socket is refused while the first listens.
    let second = site.strata(&["wal", "archiver"]);
    assert!(second.code != Some(0));
    let said = &second.stderr;
    assert!(said.contains("another WAL archiver listens"), "{said}");
    archiver.stop();
    fetch_back(&site, &seg3);
}

/// The one-shot fallback answers the segments it archived ahead from its receipts,
/// without opening the repository (a wrong password does not matter then), and stays
/// exactly as safe: every segment reads back, a repeated push is "already archived", and
/// a segment whose content changed after its receipt is refused by the repository's
/// record, not acknowledged from the receipt.
#[test]
fn the_one_shot_push_answers_segments_archived_ahead_without_opening_the_repository() {
    let site = wal_site("");
    let segments: Vec<PathBuf> = (1..=6).map(|n| segment(&site, n)).collect();
    let first = pg_push(&site, &segments[0]);
    assert!(
        first.contains("archived 000000010000000000000005"),
        "four ready segments went with it: {first}"
    );
    let receipts = |name: &str| -> usize {
        let dir = site.dir().join("state/wal-pushed");
        fs::read_dir(dir)
            .map(|d| d.flatten().filter(|e| e.path().join(name).exists()).count())
            .unwrap_or(0)
    };
    assert_eq!(receipts("000000010000000000000002"), 1);
    assert_eq!(
        receipts("000000010000000000000001"),
        0,
        "none for the asked one"
    );

    // Answered from the receipt: the repository is not opened, so its password is not
    // needed (a wrong one would fail any opening).
    let wrong_password = |path: &Path| {
        let relative = Path::new("pg_wal").join(path.file_name().unwrap());
        site.command()
            .args(["wal-push", relative.to_str().unwrap()])
            .env("STRATA_PASSWORD", "not the password")
            .current_dir(site.dir().join("pg"))
            .output()
            .unwrap()
    };
    let out = wrong_password(&segments[1]);
    let said = assert_success("wal-push of a segment archived ahead", &out);
    assert!(
        said.contains("was already archived (same content)"),
        "{said}"
    );
    assert_eq!(
        receipts("000000010000000000000002"),
        0,
        "a receipt serves once"
    );
    // Used once: the same push again opens the repository, and fails without the password.
    assert!(!wrong_password(&segments[1]).status.success());
    // And with it, it is "already archived" from the repository itself.
    let again = pg_push(&site, &segments[1]);
    assert!(
        again.contains("was already archived (same content)"),
        "{again}"
    );

    // A segment changed after its receipt: the receipt does not match, the repository's
    // record refuses it, and nothing is acknowledged.
    let original = fs::read(&segments[2]).unwrap();
    fs::write(&segments[2], pseudo_random(16 * 1024, 99)).unwrap();
    let relative = Path::new("pg_wal").join(segments[2].file_name().unwrap());
    let refused = site
        .command()
        .args(["wal-push", relative.to_str().unwrap()])
        .current_dir(site.dir().join("pg"))
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "a changed segment was acknowledged"
    );
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("already archived: refusing"), "{said}");
    fs::write(&segments[2], &original).unwrap();
    let same = pg_push(&site, &segments[2]);
    assert!(
        same.contains("was already archived (same content)"),
        "{same}"
    );

    // The rest as PostgreSQL asks: 4 and 5 from receipts, 6 stored by its own push.
    for segment in &segments[3..] {
        pg_push(&site, segment);
    }
    for segment in &segments {
        fetch_back(&site, segment);
    }
    site.ok(&["wal", "verify"]);
}

/// `postgres.wal_queue_max_mib`: while the storage is gone, a push fails as long as the
/// WAL waiting stays under the limit, and is acknowledged unarchived (loudly, counted)
/// once it is over; the count shows in `wal status` and the gap in `wal list`.
#[test]
fn over_the_queue_limit_a_failing_push_is_dropped_loudly_and_counted() {
    let site = wal_site("wal_queue_max_mib = 1");
    let first = segment(&site, 1);
    pg_push(&site, &first);
    let repo = site.dir().join("repo");
    let away = site.dir().join("repo.away");
    fs::rename(&repo, &away).unwrap();
    let push = |path: &Path| {
        site.command()
            .args(["wal-push", path.to_str().unwrap()])
            .output()
            .unwrap()
    };
    // 512 KiB waiting: under the limit, the push fails and PostgreSQL keeps the segment.
    let second = segment(&site, 2);
    fs::write(&second, pseudo_random(512 * 1024, 2)).unwrap();
    let out = push(&second);
    assert!(
        !out.status.success(),
        "a push without its storage must fail"
    );
    assert!(!site.dir().join("state/wal-dropped.json").exists());
    // 1.5 MiB waiting: over it, the same push is acknowledged without being archived.
    let third = segment(&site, 3);
    fs::write(&third, pseudo_random(1024 * 1024, 3)).unwrap();
    let out = push(&second);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("DROPPED WAL segment 000000010000000000000002")
            && said.contains("no strata repository"),
        "{said}"
    );
    fs::rename(&away, &repo).unwrap();
    let archiver = archiver(&site);
    let status = status(&site);
    assert_eq!(status["dropped"]["count"], 1, "{status}");
    assert_eq!(
        status["dropped"]["last"]["name"],
        "000000010000000000000002"
    );
    let out = site.strata(&["wal", "status"]);
    let said = &out.stderr;
    assert!(
        said.contains("1 WAL segments were acknowledged WITHOUT"),
        "{said}"
    );
    // The server counts it in /metrics and names it on the dashboard's WAL card.
    let mut cmd = site.command();
    cmd.env("STRATA_TOKEN", "queue-token");
    let server = common::server::Server::start(cmd, &site.dir().join("server.log"));
    let reply = common::server::http(&server.url, "GET", "/metrics", Some("queue-token"), "");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply
            .body
            .lines()
            .any(|l| l == "strata_wal_dropped_total{storage=\"main\"} 1"),
        "{}",
        reply.body
    );
    drop(server);
    pg_push(&site, &third);
    archiver.stop();
    // The archive has the segments before and after the drop, not the dropped one.
    fetch_back(&site, &first);
    fetch_back(&site, &third);
    let listing = site.ok(&["wal", "list"]);
    assert!(
        listing.contains(
            "2 segments in 2 runs (1 gap): 000000010000000000000001, 000000010000000000000003"
        ),
        "{listing}"
    );
}

/// `/metrics` reads the archive lag from `pg_wal/archive_status` of this host's
/// `[nodes.postgres]` data directory itself: while the archiver is down (exactly when
/// the lag grows) the ready segments and the oldest one's age are still there, and with
/// the archiver up they are the same directory's figures.
#[test]
fn the_archive_lag_is_in_metrics_while_the_archiver_is_down() {
    let site = wal_site("[nodes.postgres]\ndata_dir = \"pg\"\n");
    let segments: Vec<PathBuf> = (1..=4).map(|n| segment(&site, n)).collect();
    // PostgreSQL archived the first (its `.ready` became `.done`); three wait, the
    // oldest of them for ten minutes.
    pg_push(&site, &segments[0]);
    let oldest = pg_wal(&site).join("archive_status/000000010000000000000002.ready");
    let ten_minutes_ago = std::time::SystemTime::now() - Duration::from_secs(600);
    filetime::set_file_mtime(
        &oldest,
        filetime::FileTime::from_system_time(ten_minutes_ago),
    )
    .unwrap();
    assert!(!socket(&site).exists(), "no archiver runs");

    let server = Server::start(
        strata_with_token(site.dir(), site.config(), "lag-token"),
        &site.dir().join("server.log"),
    );
    let value = |body: &str, name: &str| -> f64 {
        let prefix = format!("{name}{{storage=\"main\"}} ");
        let line = body
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no {name} in:\n{body}"));
        line[prefix.len()..].parse().unwrap()
    };
    let scrape = http(&server.url, "GET", "/metrics", Some("lag-token"), "");
    assert_eq!(scrape.status, 200, "{}", scrape.body);
    assert_eq!(value(&scrape.body, "strata_wal_archiver_up"), 0.0);
    assert_eq!(
        value(&scrape.body, "strata_wal_archive_ready_segments"),
        3.0
    );
    let age = value(&scrape.body, "strata_wal_archive_oldest_ready_seconds");
    assert!((600.0..700.0).contains(&age), "oldest ready {age} s");
    drop(server);

    // With the archiver up, the same directory's figures.
    let archiver = archiver(&site);
    let server = Server::start(
        strata_with_token(site.dir(), site.config(), "lag-token"),
        &site.dir().join("server.log"),
    );
    let scrape = http(&server.url, "GET", "/metrics", Some("lag-token"), "");
    assert_eq!(scrape.status, 200, "{}", scrape.body);
    assert_eq!(value(&scrape.body, "strata_wal_archiver_up"), 1.0);
    assert_eq!(
        value(&scrape.body, "strata_wal_archive_ready_segments"),
        3.0
    );
    let age = value(&scrape.body, "strata_wal_archive_oldest_ready_seconds");
    assert!((600.0..700.0).contains(&age), "oldest ready {age} s");
    drop(server);
    archiver.stop();
}

#[test]
fn a_stalled_archiver_fails_the_push_in_time_and_hostile_clients_are_cut_off() {
    let site = wal_site("archiver_timeout_secs = 2\n");
    let archiver = archiver(&site);

    // A client that never finishes its line, and one that sends an endless line: neither
    // stops a push beside them.
    let mut silent = UnixStream::connect(socket(&site)).unwrap();
    let mut endless = UnixStream::connect(socket(&site)).unwrap();
    endless
        .write_all(&vec![b'x'; 256 * 1024])
        .unwrap_or_default();
    let mut answer = String::new();
    endless.read_to_string(&mut answer).unwrap();
    assert!(answer.contains("longer than"), "{answer}");
    let seg = segment(&site, 1);
    pg_push(&site, &seg);
    silent.write_all(b"{\"push\":").unwrap();

    // Stalled (SIGSTOP) for longer than wal-push waits: the push fails, in time, with
    // an exit PostgreSQL retries on, and the file stays ready.
    archiver.signal("-STOP");
    let seg2 = segment(&site, 2);
    let started = Instant::now();
    let out = site
        .command()
        .args(["wal-push", seg2.to_str().unwrap()])
        .output()
        .unwrap();
    let waited = started.elapsed();
    archiver.signal("-CONT");
    assert!(
        !out.status.success(),
        "a push the archiver never answered succeeded"
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("no answer from the WAL archiver"), "{said}");
    assert!(
        waited < Duration::from_secs(60),
        "wal-push hung for {waited:?}"
    );
    // Resumed, it answers again; PostgreSQL's next call succeeds.
    pg_push(&site, &seg2);
    // A connection still reading its request does not hold the stop up.
    let t = Instant::now();
    archiver.stop();
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "the stop waited {:?}",
        t.elapsed()
    );
    drop(silent);
    fetch_back(&site, &seg);
    fetch_back(&site, &seg2);
}

/// Recovery's side: a `wal-fetch` that had to read the archive starts a prefetcher that
/// keeps the next segments spooled while "replay" (this loop) goes on, so every later
/// fetch is served from the spool without opening the repository, and the prefetcher
/// stops by itself once recovery stops asking.
#[test]
fn a_fetch_from_the_archive_starts_a_prefetcher_that_keeps_recovery_fed() {
    let site = wal_site("wal_fetch_ahead = 3\nwal_prefetch_idle_secs = 2\n");
    let segments: Vec<PathBuf> = (1..=12).map(|n| segment(&site, n)).collect();
    for segment in &segments {
        pg_push(&site, segment);
    }
    let repo_id = fs::read_dir(site.dir().join("state/wal-spool"))
        .map(|mut d| d.next().unwrap().unwrap().path())
        .ok();
    assert!(repo_id.is_none(), "nothing spooled before recovery");
    let spooled = |n: u32| {
        fs::read_dir(site.dir().join("state/wal-spool"))
            .ok()
            .and_then(|mut d| d.next())
            .is_some_and(|spool| {
                spool
                    .unwrap()
                    .path()
                    .join(format!("00000001000000000000{n:04X}"))
                    .exists()
            })
    };
    let wait_spooled = |n: u32| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !spooled(n) {
            assert!(
                Instant::now() < deadline,
                "segment {n} was never prefetched: {}",
                fs::read_to_string(site.dir().join("state/wal-prefetch.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let back = site.dir().join("fetched");
    let fetch = |n: u32| {
        let name = format!("00000001000000000000{n:04X}");
        site.ok(&["wal-fetch", &name, back.to_str().unwrap()]);
        assert_eq!(
            fs::read(&back).unwrap(),
            fs::read(&segments[n as usize - 1]).unwrap()
        );
    };
    // The first fetch reads the archive (and the 3 after it, before it returns), and
    // starts the prefetcher; the second comes from the spool.
    fetch(1);
    fetch(2);
    // Segment 5 is beyond that read-ahead: only the prefetcher, following recovery, brings
    // it.
    wait_spooled(5);
    // From here on no fetch may open the repository: without its keys it cannot.
    let keys = site.dir().join("repo/keys");
    let away = site.dir().join("keys-away");
    fs::rename(&keys, &away).unwrap();
    for n in 3..=12 {
        wait_spooled(n);
        fetch(n);
    }
    // What recovery asks at its end, still without keys: the last segment again, and the
    // next timeline's history file, which is not archived. The running prefetcher answers
    // both (a fetch that opened the repository would fail with 126).
    fetch(12);
    let out = site.strata(&["wal-fetch", "00000002.history", back.to_str().unwrap()]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    fs::rename(&away, &keys).unwrap();
    // Idle for its two seconds, it stops and says what it did.
    let log = site.dir().join("state/wal-prefetch.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = fs::read_to_string(&log).unwrap_or_default();
        if text.contains("prefetched") {
            // 5 to 12, and 12 once more when asked for again.
            assert!(text.contains("prefetched 9 WAL segments"), "{text}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the prefetcher did not stop: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A batch that stalls past its mark's lease, exactly at the write of its record (held
/// there with the test-only `STRATA_TEST_HOLD_WRITE`, then the whole archiver frozen with
/// SIGSTOP), must neither make the segment visible nor acknowledge it once it resumes: its
/// fence lapsed. PostgreSQL's next call then archives it.
#[test]
fn a_batch_stalled_past_its_lease_acknowledges_nothing_and_writes_no_record() {
    let site = wal_site_with_ttl(2, "");
    let hold = site.dir().join("hold");
    fs::create_dir_all(&hold).unwrap();
    let spec = format!("archive/wal/:{}", hold.display());
    let archiver = archiver_with(&site, &[("STRATA_TEST_HOLD_WRITE", &spec)]);
    let seg = segment(&site, 1);
    let mut push = site
        .command()
        .args(["wal-push", seg.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_for_held_write(&hold, &mut push, "the batch's record write");
    // Three leases and a half frozen: nothing renews the mark meanwhile.
    archiver.signal("-STOP");
    std::thread::sleep(Duration::from_millis(7_000));
    archiver.signal("-CONT");
    fs::write(hold.join("release"), b"").unwrap();
    let out = push.wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "a push whose batch lost its fence was acknowledged"
    );
    let record = site
        .dir()
        .join("repo/archive/wal")
        .join(seg.file_name().unwrap());
    assert!(!record.exists(), "a lapsed batch made its record visible");
    // PostgreSQL calls again: stored, and it reads back.
    pg_push(&site, &seg);
    archiver.stop();
    fetch_back(&site, &seg);
}
