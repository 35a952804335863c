//! PgQ through the `strata` binary against a real PostgreSQL 15 with the Debian pgq
//! extension (the library's own tests, decoding and consumers without the binary, are in
//! `crates/strata-pgq/tests/`): the Rust ticker and Debian `pgqd` tick and rotate two databases of one cluster alike; a consumer applies a
//! million events exactly once across ticker restarts, consumer kills between apply and
//! finish, a ticker outage and a single 500k-row transaction streamed under a byte cap;
//! an unreachable database shows in health and metrics; the `strata pgq` commands.
//! Skipped, loudly, where PostgreSQL 15 is not installed (`scripts/test.sh` installs it).
// Tests signal their own children and read or set limits through libc: each block
// says why it is sound.
#![allow(unsafe_code)]

use crate::common;

use common::pgserver::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use strata_pgq::completed;
use strata_pgq::{Consumer, ConsumerOptions};
use strata_testkit::process::{terminate, terminate_within, Daemon, KillOnDrop};
use strata_testkit::wait::wait_for_async;

/// A running cluster and a scratch directory (the kit's [`PgSite`]) with PgQ in the
/// given databases.
struct Site(PgSite);

impl std::ops::Deref for Site {
    type Target = PgSite;
    fn deref(&self) -> &PgSite {
        &self.0
    }
}

impl Site {
    fn new(dbs: &[&str]) -> Site {
        Site(PgSite::with_databases("strata-pgq", dbs, &["pgq"]))
    }

    fn strata(&self, db: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(args)
            .env("STRATA_PGQ_DB", self.dsn(db))
            .env_remove("STRATA_CONFIG")
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    /// Runs strata, expects `code`, returns stdout.
    fn expect(&self, db: &str, code: i32, args: &[&str]) -> String {
        let out = self.strata(db, args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "strata {args:?}\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A pgqd-style ini for the Rust ticker (or pgqd itself) over `dbs`.
    fn ticker_ini(&self, name: &str, dbs: &[&str], extra: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(
            &path,
            format!(
                "[pgqd]\nbase_connstr = {}\ndatabase_list = {}\nlogfile = {}\npidfile = {}\nticker_period = 1\nmaint_period = 1\nretry_period = 1\n{extra}",
                self.base_connstr(),
                dbs.join(","),
                self.path(&format!("{name}.log")).display(),
                self.path(&format!("{name}.pid")).display(),
            ),
        )
        .unwrap();
        path
    }

    fn spawn_ticker(&self, ini: &Path, args: &[&str]) -> KillOnDrop {
        KillOnDrop(
            Command::new(env!("CARGO_BIN_EXE_strata"))
                .args(["pgq", "ticker"])
                .arg(ini)
                .args(args)
                .env_remove("STRATA_CONFIG")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }
}

/// Every event of one batch, then finishes it.
async fn drain_batch(consumer: &mut Consumer, batch: &strata_pgq::Batch) -> Vec<strata_pgq::Event> {
    let mut all = Vec::new();
    let mut stream = consumer.events(batch).await.unwrap();
    while let Some(chunk) = stream.next_chunk().await.unwrap() {
        all.extend(chunk);
    }
    stream.close().await.unwrap();
    consumer.finish_batch(batch).await.unwrap();
    all
}

/// Every event of every batch until none is left, finishing each batch.
async fn drain(consumer: &mut Consumer) -> Vec<strata_pgq::Event> {
    let mut all = Vec::new();
    while let Some(batch) = consumer.next_batch().await.unwrap() {
        let mut stream = consumer.events(&batch).await.unwrap();
        while let Some(chunk) = stream.next_chunk().await.unwrap() {
            all.extend(chunk);
        }
        stream.close().await.unwrap();
        consumer.finish_batch(&batch).await.unwrap();
    }
    all
}

/// Counts rotations by watching `queue_switch_time`.
async fn switch_time(client: &strata_pgclient::Client) -> String {
    client
        .query_one("select coalesce(queue_switch_time::text, '') || '/' || (queue_switch_step2 is null)::text from pgq.queue where queue_name = 'q'", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_ticker_and_pgqd_tick_and_rotate_alike() {
    if skip_without_postgres() {
        return;
    }
    let site = Site::new(&["by_rust", "by_pgqd"]);
    let dbs = ["by_rust", "by_pgqd"];
    let mut clients = Vec::new();
    let mut consumers = Vec::new();
    for db in dbs {
        let c = site.client(db).await;
        c.batch_execute(
            "select pgq.create_queue('q'); select pgq.set_queue_config('q', 'rotation_period', '2 seconds'); select pgq.set_queue_config('q', 'ticker_max_lag', '0.5 seconds');",
        )
        .await
        .unwrap();
        let mut consumer =
            Consumer::new(site.client(db).await, "q", "c", ConsumerOptions::default()).unwrap();
        consumer.register().await.unwrap();
        clients.push(c);
        consumers.push(consumer);
    }
    // A maintenance function that asks to be called again (returns 1) three times, then
    // is done (0): the ticker calls it 3 + 1 times in one round, and says so.
    clients[0]
        .batch_execute(
            "create table maint_calls(at timestamptz default clock_timestamp()); \
             create function public.extra_maint(queue text) returns int language plpgsql as $$ \
             begin insert into maint_calls default values; \
                   return case when (select count(*) from maint_calls) <= 3 then 1 else 0 end; end $$; \
             update pgq.queue set queue_extra_maint = array['public.extra_maint'] where queue_name = 'q';",
        )
        .await
        .unwrap();
    let rust_ini = site.ticker_ini("rust.ini", &["by_rust"], "listen_notify = 0\n");
    let pgqd_ini = site.ticker_ini("pgqd.ini", &["by_pgqd"], "");
    let mut rust = site.spawn_ticker(&rust_ini, &[]);
    let mut pgqd = KillOnDrop(
        Command::new("/usr/bin/pgqd")
            .arg(&pgqd_ini)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut seen: Vec<Vec<(i64, String)>> = vec![Vec::new(), Vec::new()];
    let mut switches: Vec<BTreeSet<String>> = vec![BTreeSet::new(), BTreeSet::new()];
    let rounds = 24;
    for round in 0..rounds {
        for (i, c) in clients.iter().enumerate() {
            c.batch_execute(&format!(
                "select pgq.insert_event('q', 'n', ({round} * 100 + g)::text) from generate_series(1, 100) g"
            ))
            .await
            .unwrap();
            switches[i].insert(switch_time(c).await);
            for e in drain(&mut consumers[i]).await {
                seen[i].push((e.id, e.data.unwrap()));
            }
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // Let both tickers cover the last events, then drain.
    let total = rounds * 100;
    for i in 0..2 {
        let deadline = Instant::now() + Duration::from_secs(30);
        while seen[i].len() < total as usize {
            assert!(
                Instant::now() < deadline,
                "{}: only {} of {total} events ticked",
                dbs[i],
                seen[i].len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            switches[i].insert(switch_time(&clients[i]).await);
            for e in drain(&mut consumers[i]).await {
                seen[i].push((e.id, e.data.unwrap()));
            }
        }
    }
    assert_eq!(
        terminate(&mut rust),
        Some(0),
        "the Rust ticker stops cleanly on SIGTERM"
    );
    terminate(&mut pgqd);
    assert!(
        !site.path("rust.ini.pid").exists(),
        "pidfile removed at exit"
    );
    // Same events, each once, in the same order, under both tickers.
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0].len(), total as usize);
    let ids: BTreeSet<i64> = seen[0].iter().map(|e| e.0).collect();
    assert_eq!(ids.len(), total as usize);
    let mut ticks = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        let row = c
            .query_one(
                "select max(tick_id), count(*), max(tick_event_seq) from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue where q.queue_name = 'q'",
                &[],
            )
            .await
            .unwrap();
        // Tick ids come from a sequence: the newest is the number of ticks ever made
        // (rotation deletes old ticks, so counting rows would not tell).
        let (made, kept, max_seq): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        assert!(
            max_seq >= total as i64,
            "{}: the newest tick covers every event",
            dbs[i]
        );
        assert!(made > 3, "{}: ticks were made", dbs[i]);
        ticks.push((made, kept));
        // Rotation happened (both steps) at least twice while the consumer kept up.
        let rotations = switches[i].iter().filter(|s| s.ends_with("/false")).count();
        assert!(
            rotations >= 3,
            "{}: rotations seen {:?}",
            dbs[i],
            switches[i]
        );
    }
    eprintln!(
        "ticks made and kept (rust, pgqd): {ticks:?}; switch states seen: {} / {}",
        switches[0].len(),
        switches[1].len()
    );
    // Same rules (pgq.ticker every second), same workload: the same number of ticks,
    // give or take the rounds where the two tickers' one-second phases fall differently
    // around a batch of inserts.
    let (rust_ticks, pgqd_ticks) = (ticks[0].0, ticks[1].0);
    let tolerance = 2 + rust_ticks.max(pgqd_ticks) / 10;
    assert!(
        (rust_ticks - pgqd_ticks).abs() <= tolerance,
        "ticks made: rust {rust_ticks}, pgqd {pgqd_ticks} (tolerance {tolerance})"
    );
    let log = std::fs::read_to_string(site.path("rust.ini.log")).unwrap();
    assert!(log.contains("by_rust: rotated queue q"), "{log}");
    assert_eq!(
        log.matches("by_rust: public.extra_maint(q) ran 4 times")
            .count(),
        1,
        "called again while it returned 1, in one round: {log}"
    );
    let calls: i64 = clients[0]
        .query_one("select count(*) from maint_calls", &[])
        .await
        .unwrap()
        .get(0);
    assert!(calls >= 4, "{calls}");
}

/// GETs `path` from the health server.
async fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).await.ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_string();
    Some((code, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_shows_in_health_and_metrics() {
    if skip_without_postgres() {
        return;
    }
    let site = Site::new(&["good"]);
    site.pg.psql(
        "good",
        "select pgq.create_queue('q'); select pgq.register_consumer('q', 'c')",
    );
    let addr = format!("127.0.0.1:{}", free_port());
    let ini = site.ticker_ini("t.ini", &["good", "missing_db"], "");
    let mut ticker = site.spawn_ticker(&ini, &["--health", &addr]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        if let Some((503, body)) = http_get(&addr, "/health").await {
            let json: serde_json::Value = serde_json::from_str(&body).unwrap();
            if json["databases"]["good"]["up"] == true
                && json["databases"]["missing_db"]["up"] == false
            {
                break body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "health never reported missing_db"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["unreachable"], serde_json::json!(["missing_db"]));
    assert!(
        json["databases"]["missing_db"]["error"]
            .as_str()
            .unwrap()
            .contains("database \"missing_db\" does not exist"),
        "PostgreSQL's own message: {body}"
    );
    // /ready says the same in the form every strata process answers it.
    let (code, ready) = http_get(&addr, "/ready").await.unwrap();
    assert_eq!(code, 503, "{ready}");
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["ready"], false);
    let check = |name: &str| {
        ready["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no check {name}: {ready}"))
    };
    assert_eq!(check("database good")["ok"], true);
    assert_eq!(check("database missing_db")["ok"], false);
    assert!(check("database missing_db")["detail"]
        .as_str()
        .unwrap()
        .contains("does not exist"));
    let (code, metrics) = http_get(&addr, "/metrics").await.unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains("strata_pgq_database_up{database=\"missing_db\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("strata_pgq_database_up{database=\"good\"} 1"),
        "{metrics}"
    );
    // Queue and consumer figures of the reachable database.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http_get(&addr, "/metrics").await.is_some_and(|(_, m)| {
        m.contains("strata_pgq_consumer_lag_seconds{database=\"good\",queue=\"q\",consumer=\"c\"}")
            && m.contains("strata_pgq_queue_ticker_lag_seconds{database=\"good\",queue=\"q\"}")
    }) {
        assert!(Instant::now() < deadline, "no queue metrics");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(http_get(&addr, "/nope").await.unwrap().0 == 404);
    // A second ticker refuses the live pidfile (given as `--config pgqd.ini`, the form
    // of the issue: the file is the ticker's, strata's own configuration is not read).
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["pgq", "ticker", "--config"])
        .arg(&ini)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("running"));
    // SIGHUP with the bad database gone: healthy again.
    let ini_text = std::fs::read_to_string(&ini)
        .unwrap()
        .replace("good,missing_db", "good");
    std::fs::write(&ini, ini_text).unwrap();
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(ticker.0.id() as i32, libc::SIGHUP) };
    wait_for_async(
        "health to recover after SIGHUP",
        Duration::from_secs(30),
        || {
            let addr = addr.clone();
            async move { matches!(http_get(&addr, "/health").await, Some((200, _))) }
        },
    )
    .await;
    assert_eq!(terminate(&mut ticker), Some(0));
    let log = std::fs::read_to_string(site.path("t.ini.log")).unwrap();
    assert!(log.contains("missing_db"), "{log}");
    assert!(log.contains("SIGHUP: configuration reloaded"), "{log}");
    // Without database_list every database with pgq is found (and only those).
    let ini = site.path("discover.ini");
    let discover_log = site.path("discover.log");
    std::fs::write(
        &ini,
        format!(
            "[pgqd]\nbase_connstr = {}\ninitial_database = postgres\ncheck_period = 0.5\nticker_period = 0.5\nlogfile = {}\n",
            site.base_connstr(),
            discover_log.display()
        ),
    )
    .unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut ticker = site.spawn_ticker(&ini, &["--health", &addr]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((200, body)) = http_get(&addr, "/health").await {
            let json: serde_json::Value = serde_json::from_str(&body).unwrap();
            let names: Vec<&String> = json["databases"].as_object().unwrap().keys().collect();
            if !names.is_empty() {
                assert_eq!(names, ["good"], "{body}");
                break;
            }
        }
        assert!(Instant::now() < deadline, "discovery found nothing");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The initial database stops taking connections: discovery cannot list databases,
    // and the one it found before goes on being ticked (it used to be stopped with it).
    let good = site.client("good").await;
    good.batch_execute("alter database postgres allow_connections false")
        .await
        .unwrap();
    let failed_checks = || {
        std::fs::read_to_string(&discover_log)
            .unwrap_or_default()
            .matches("(initial_database)")
            .count()
    };
    wait_for_async("two failed discoveries", Duration::from_secs(30), || {
        let failed = failed_checks();
        async move { failed >= 2 }
    })
    .await;
    let ticks = |body: &str| {
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        json["databases"]["good"]["ticks"].as_u64()
    };
    let (_, body) = http_get(&addr, "/health").await.unwrap();
    let before = ticks(&body).unwrap_or_else(|| panic!("good is no longer ticked: {body}"));
    good.batch_execute("select pgq.insert_event('q', 'e', 'wake')")
        .await
        .unwrap();
    wait_for_async(
        "good ticked without its initial database",
        Duration::from_secs(30),
        || {
            let addr = addr.clone();
            async move {
                let (_, body) = http_get(&addr, "/health").await.unwrap();
                ticks(&body).is_some_and(|t| t > before)
            }
        },
    )
    .await;
    good.batch_execute("alter database postgres allow_connections true")
        .await
        .unwrap();
    assert_eq!(terminate(&mut ticker), Some(0));
    // The exit policy: a database down for 1 s stops the ticker with exit code 1. This
    // one runs on the [pgq] section of strata's own configuration file, which other
    // commands read too (given as --config, the way every strata command takes it).
    let strata_toml = site.path("strata.toml");
    std::fs::write(
        &strata_toml,
        format!(
            "[storages.local]\ntype = \"local\"\npath = \"repo\"\n\n[tables]\nschema = \"retention\"\n\n[pgq]\nbase_connstr = \"{}\"\ndatabase_list = [\"good\", \"missing_db\"]\nticker_period = 0.5\nexit_on_unreachable = 1\nlogfile = \"x.log\"\n",
            site.base_connstr()
        ),
    )
    .unwrap();
    let strata_with = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("--config")
            .arg(&strata_toml)
            .args(args)
            .env_remove("STRATA_CONFIG")
            .output()
            .unwrap()
    };
    let out = strata_with(&["pgq", "ticker"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("missing_db unreachable"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one-line error: {stderr}");
    let log = std::fs::read_to_string(site.path("x.log")).unwrap();
    assert!(
        log.contains("good: connected"),
        "relative logfile beside the config: {log}"
    );
    // Another command reads the same file, [pgq] included.
    let out = strata_with(&["config", "show"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        shown.contains("[pgq]") && shown.contains("exit_on_unreachable = 1"),
        "{shown}"
    );
    assert!(shown.contains("schema = \"retention\""), "{shown}");
    // A typo in [pgq] is an error for every command reading the file, naming the key.
    let text = std::fs::read_to_string(&strata_toml)
        .unwrap()
        .replace("ticker_period", "ticker_perod");
    std::fs::write(&strata_toml, text).unwrap();
    for args in [&["config", "show"][..], &["pgq", "ticker"]] {
        let out = strata_with(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("ticker_perod"), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
    }
    // `strata config default` documents the section, with the ticker's defaults.
    let out = strata_with(&["config", "default"]);
    let default = String::from_utf8_lossy(&out.stdout);
    assert!(
        default.contains("[pgq]") && default.contains("wakeup_min_interval = 0.25"),
        "{default}"
    );
}

async fn tick_count(client: &strata_pgclient::Client) -> i64 {
    client
        .query_one("select count(*) from pgq.tick", &[])
        .await
        .unwrap()
        .get(0)
}

/// The next batch with events, finishing the empty ones before it; waits on `waiter`
/// between tries and gives up after `limit` (a guard against hanging).
async fn next_events(
    consumer: &mut Consumer,
    waiter: &mut strata_pgq::conn::TickWaiter,
    what: &str,
    limit: Duration,
) -> Vec<strata_pgq::Event> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(batch) = consumer.next_batch().await.unwrap() {
            let events = drain_batch(consumer, &batch).await;
            if !events.is_empty() {
                return events;
            }
            continue;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        waiter.wait(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_notifications_wake_the_ticker_and_the_daemon_runs_detached() {
    if skip_without_postgres() {
        return;
    }
    let site = Site::new(&["app"]);
    // pgq's own rules would tick an event here only after an hour (ticker_max_lag) or
    // 500 events (ticker_max_count), and an idle queue after an hour (ticker_idle_period);
    // the ticker's own round is hourly too (ticker_period). So every tick of an event
    // below is a wake-up tick: only the notification path can explain it.
    site.expect(
        "app",
        0,
        &[
            "pgq",
            "create-queue",
            "q",
            "--notify",
            "--set",
            "ticker_max_lag=1 hour",
            "--set",
            "ticker_idle_period=1 hour",
        ],
    );
    site.expect("app", 0, &["pgq", "register", "q", "c"]);
    let client = site.client("app").await;
    let ini = site.ticker_ini("d.ini", &["app"], "");
    let text = std::fs::read_to_string(&ini)
        .unwrap()
        .replace("ticker_period = 1", "ticker_period = 3600");
    std::fs::write(&ini, text).unwrap();
    // `-qd`: the child gets `-d` too and must not detach again.
    site.expect("", 0, &["pgq", "ticker", ini.to_str().unwrap(), "-qd"]);
    let pid: i32 = std::fs::read_to_string(site.path("d.ini.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _daemon = Daemon::killed(pid);
    // The daemon's first round runs at start; wait for its LISTEN to be in place.
    wait_for_async("the daemon to listen", Duration::from_secs(30), || async {
        std::fs::read_to_string(site.path("d.ini.log"))
            .unwrap_or_default()
            .contains("listening for event notifications")
    })
    .await;
    // Its first round ticks the idle queue (pgq's idle rule: a second tick after the
    // one create_queue made); after that, only wake-ups.
    wait_for_async(
        "the daemon's first round",
        Duration::from_secs(30),
        || async { tick_count(&client).await >= 2 },
    )
    .await;
    let pg = strata_pgq::conn::config_for(&site.base_connstr(), "app").unwrap();
    let mut waiter = strata_pgq::conn::TickWaiter::connect(&pg, "q")
        .await
        .unwrap();
    let mut consumer = Consumer::new(
        site.client("app").await,
        "q",
        "c",
        ConsumerOptions::default(),
    )
    .unwrap();
    // Start from the newest tick: batches before the first event are empty.
    while let Some(batch) = consumer.next_batch().await.unwrap() {
        assert!(drain_batch(&mut consumer, &batch).await.is_empty());
    }
    let before = tick_count(&client).await;
    // The first event of a fresh queue: pgq's event sequence does not count it (see
    // docs/pgq.md), the wake-up tick still covers it.
    client
        .batch_execute("select pgq.insert_event('q', 'x', 'first')")
        .await
        .unwrap();
    assert!(
        waiter.wait(Duration::from_secs(60)).await,
        "a consumer waiting on the tick channel is woken by the ticker"
    );
    assert!(tick_count(&client).await > before);
    let events = next_events(
        &mut consumer,
        &mut waiter,
        "the first event's batch",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data.as_deref(), Some("first"));
    // Right after that tick, another event: it gets its own tick (no sooner than
    // wakeup_min_interval after the previous one), not pgq's max_lag an hour later.
    client
        .batch_execute("select pgq.insert_event('q', 'x', 'second')")
        .await
        .unwrap();
    let events = next_events(
        &mut consumer,
        &mut waiter,
        "the event inserted right after a tick",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data.as_deref(), Some("second"));
    // A retried event comes back through the ticker's retry job (retry_period 1 s); its
    // insert into the event table notifies again and gets a wake-up tick.
    client
        .batch_execute("select pgq.insert_event('q', 'x', 'retried')")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (batch, mut stream, chunk) = loop {
        assert!(Instant::now() < deadline, "the third event never came");
        let Some(batch) = consumer.next_batch().await.unwrap() else {
            waiter.wait(Duration::from_secs(1)).await;
            continue;
        };
        let mut stream = consumer.events(&batch).await.unwrap();
        match stream.next_chunk().await.unwrap() {
            Some(chunk) => break (batch.clone(), stream, chunk),
            None => {
                stream.close().await.unwrap();
                consumer.finish_batch(&batch).await.unwrap();
            }
        }
    };
    assert_eq!(chunk.len(), 1);
    assert_eq!(chunk[0].retry, None);
    stream.retry(&chunk[0], Duration::ZERO).await.unwrap();
    stream.close().await.unwrap();
    consumer.finish_batch(&batch).await.unwrap();
    let again = next_events(
        &mut consumer,
        &mut waiter,
        "the retried event",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].retry), (chunk[0].id, Some(1)));
    let log = std::fs::read_to_string(site.path("d.ini.log")).unwrap();
    assert!(
        log.contains("app: moved 1 events back from the retry queue"),
        "{log}"
    );
    // The event sequence was not pushed: it moved once per insert, the three events and
    // the retried one's re-insert (pgq's insert_event_raw takes a number from the
    // sequence even for an event that keeps its id), where pgq.force_tick would have
    // added 2000 per wake-up.
    let seq: i64 = client
        .query_one(
            "select max(tick_event_seq) from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue where q.queue_name = 'q'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(seq, 4);
    // SAFETY: plain kill(2) of the daemon we started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    wait_for_async(
        "the daemon to remove its pidfile",
        Duration::from_secs(30),
        || async { !site.path("d.ini.pid").exists() },
    )
    .await;
    // A ticker whose role may not write a tick itself (a member of pgq_admin, which has
    // no USAGE on the queue's tick sequence: pgq.ticker is security definer) falls back
    // to pgq.force_tick for wake-ups, and says so once.
    site.pg
        .psql("app", "create role ticker_role login in role pgq_admin");
    let ini = site.path("role.ini");
    std::fs::write(
        &ini,
        format!(
            "[pgqd]\nbase_connstr = host={} port={} user=ticker_role\ndatabase_list = app\nlogfile = {}\nticker_period = 3600\n",
            site.pg.socket_dir.display(),
            site.pg.port,
            site.path("role.log").display()
        ),
    )
    .unwrap();
    let mut ticker = site.spawn_ticker(&ini, &[]);
    wait_for_async(
        "the second ticker to listen",
        Duration::from_secs(30),
        || async {
            std::fs::read_to_string(site.path("role.log"))
                .unwrap_or_default()
                .contains("listening for event notifications")
        },
    )
    .await;
    client
        .batch_execute("select pgq.insert_event('q', 'x', 'forced')")
        .await
        .unwrap();
    let events = next_events(
        &mut consumer,
        &mut waiter,
        "the event ticked through pgq.force_tick",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(events[0].data.as_deref(), Some("forced"));
    assert_eq!(terminate(&mut ticker), Some(0));
    let log = std::fs::read_to_string(site.path("role.log")).unwrap();
    assert_eq!(
        log.matches("wake-up ticks use pgq.force_tick").count(),
        1,
        "{log}"
    );
}

/// Applies every available batch into `applied` on the target exactly once, recording the
/// tick in the same target transaction. After `kill_after_apply` batches the consumer is
/// killed between the target's commit and `finish_batch` (its connection dropped) and a
/// fresh one takes over. Returns the stream numbers of the batches it streamed.
async fn apply_all(
    site: &Site,
    consumer: &mut Consumer,
    target: &mut strata_pgclient::Client,
    kill_every: usize,
    applied_batches: &mut usize,
    stats: &mut strata_pgq::StreamStats,
) {
    while let Some(batch) = consumer.next_batch().await.unwrap() {
        let tx = target.transaction().await.unwrap();
        if completed::is_done(&tx, "big", "apply", &batch)
            .await
            .unwrap()
        {
            drop(tx);
            consumer.finish_batch(&batch).await.unwrap();
            continue;
        }
        let mut stream = consumer.events(&batch).await.unwrap();
        while let Some(chunk) = stream.next_chunk().await.unwrap() {
            let ids: Vec<i64> = chunk
                .iter()
                .map(|e| {
                    let data = e.data.as_deref().unwrap();
                    // logutriga rows (`id=N`) and plain insert_event payloads (`N`).
                    data.strip_prefix("id=").unwrap_or(data).parse().unwrap()
                })
                .collect();
            // No ON CONFLICT: an event applied twice fails the test here.
            tx.execute("insert into applied select unnest($1::bigint[])", &[&ids])
                .await
                .unwrap();
        }
        stats.add(&stream.close().await.unwrap());
        completed::mark_done(&tx, "big", "apply", &batch)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        *applied_batches += 1;
        if (*applied_batches).rem_euclid(kill_every) == 0 {
            // Killed between apply and finish: the batch comes back to the next consumer.
            *consumer = Consumer::new(
                site.client("src").await,
                "big",
                "apply",
                ConsumerOptions {
                    byte_cap: consumer_cap(),
                    ..Default::default()
                },
            )
            .unwrap();
            continue;
        }
        consumer.finish_batch(&batch).await.unwrap();
    }
}

fn consumer_cap() -> usize {
    256 << 10
}

async fn applied_count(target: &strata_pgclient::Client) -> i64 {
    target
        .query_one("select count(*) from applied", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_events_are_applied_exactly_once() {
    if skip_without_postgres() {
        return;
    }
    let site = Site::new(&["src", "dst"]);
    let source = site.client("src").await;
    source
        .batch_execute(
            "select pgq.create_queue('big'); \
             create table src_rows(id bigint primary key); \
             create trigger l after insert on src_rows for each row execute procedure pgq.logutriga('big');",
        )
        .await
        .unwrap();
    let mut target = site.client("dst").await;
    target
        .batch_execute("create table applied(id bigint primary key)")
        .await
        .unwrap();
    completed::setup(&target).await.unwrap();
    let options = ConsumerOptions {
        byte_cap: consumer_cap(),
        ..Default::default()
    };
    let mut consumer = Consumer::new(site.client("src").await, "big", "apply", options).unwrap();
    consumer.register().await.unwrap();
    let ini = site.ticker_ini("big.ini", &["src"], "");
    let mut ticker = site.spawn_ticker(&ini, &[]);
    let mut batches = 0;
    let mut stats = strata_pgq::StreamStats::default();
    let produce = |from: i64, txns: i64, per: i64| {
        let source = &source;
        async move {
            for t in 0..txns {
                let lo = from + t * per;
                source
                    .batch_execute(&format!(
                        "select pgq.insert_event('big', 'n', g::text) from generate_series({lo}, {}) g",
                        lo + per - 1
                    ))
                    .await
                    .unwrap();
            }
        }
    };
    // 1. 250k events in 10 transactions, consumed while the ticker runs.
    produce(1, 10, 25_000).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while applied_count(&target).await < 250_000 {
        assert!(Instant::now() < deadline, "phase 1 stalled");
        apply_all(
            &site,
            &mut consumer,
            &mut target,
            3,
            &mut batches,
            &mut stats,
        )
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // 2. The ticker restarts; then one 500k-row transaction through the real trigger,
    //    streamed under the byte cap.
    assert_eq!(terminate(&mut ticker), Some(0));
    let mut ticker = site.spawn_ticker(&ini, &[]);
    source
        .batch_execute("insert into src_rows select g from generate_series(250001, 750000) g")
        .await
        .unwrap();
    let before = stats;
    let deadline = Instant::now() + Duration::from_secs(120);
    while applied_count(&target).await < 750_000 {
        assert!(Instant::now() < deadline, "phase 2 stalled");
        apply_all(
            &site,
            &mut consumer,
            &mut target,
            3,
            &mut batches,
            &mut stats,
        )
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stats.events - before.events >= 500_000);
    assert!(
        stats.max_buffered_bytes <= consumer_cap(),
        "held {} bytes at once, cap {}",
        stats.max_buffered_bytes,
        consumer_cap()
    );
    assert!(
        stats.fetches - before.fetches >= 100,
        "the big batch was fetched in many chunks, not at once: {stats:?}"
    );
    // 3. A ticker outage: 250k events pile up, then land in one batch after the restart.
    assert_eq!(terminate(&mut ticker), Some(0));
    produce(750_001, 10, 25_000).await;
    let mut ticker = site.spawn_ticker(&ini, &[]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while applied_count(&target).await < 1_000_000 {
        assert!(Instant::now() < deadline, "phase 3 stalled");
        apply_all(
            &site,
            &mut consumer,
            &mut target,
            3,
            &mut batches,
            &mut stats,
        )
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(terminate(&mut ticker), Some(0));
    let row = target
        .query_one("select count(*), min(id), max(id) from applied", &[])
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2)
        ),
        (1_000_000, 1, 1_000_000)
    );
    assert!(batches >= 3, "kills happened: {batches} batches");
    assert!(stats.max_buffered_bytes <= consumer_cap());
    eprintln!("{batches} batches applied, {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgq_commands_manage_queues_and_consumers() {
    if skip_without_postgres() {
        return;
    }
    let site = Site::new(&["app"]);
    let out = site.expect(
        "app",
        0,
        &[
            "pgq",
            "create-queue",
            "orders",
            "--set",
            "ticker_max_count=100",
            "--set",
            "rotation_period=10 minutes",
        ],
    );
    assert!(out.contains("created queue orders"), "{out}");
    let out = site.expect("app", 0, &["pgq", "create-queue", "orders"]);
    assert!(out.contains("exists already"), "{out}");
    site.expect("app", 0, &["pgq", "register", "orders", "billing"]);
    let out = site.expect(
        "app",
        0,
        &[
            "--json",
            "pgq",
            "config",
            "orders",
            "ticker_max_lag=5 seconds",
        ],
    );
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["queue"]["ticker_max_count"], 100);
    assert_eq!(json["queue"]["ticker_max_lag_secs"], 5.0);
    assert_eq!(json["queue"]["rotation_period_secs"], 600.0);
    assert_eq!(json["notify"], false);
    site.expect("app", 0, &["pgq", "notify", "orders", "on"]);
    let json: serde_json::Value =
        serde_json::from_str(&site.expect("app", 0, &["--json", "pgq", "config", "orders"]))
            .unwrap();
    assert_eq!(json["notify"], true);
    let client = site.client("app").await;
    // More than ticker_max_count events: pgq.ticker ticks at once (force_tick would
    // push the event sequence and blur pending_events).
    client
        .batch_execute("select pgq.insert_event('orders', 'o', g::text) from generate_series(1, 150) g; select pgq.ticker('orders');")
        .await
        .unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&site.expect("app", 0, &["--json", "pgq", "status"])).unwrap();
    assert_eq!(json["queues"][0]["queue_name"], "orders");
    assert_eq!(json["consumers"][0]["consumer_name"], "billing");
    // pgq's estimate from its event sequence, which reads 1 before and after the first
    // nextval: the first event of a fresh queue is not counted.
    assert_eq!(json["consumers"][0]["pending_events"], 149);
    // The queue's figures: rate, ticker lag, rotation.
    let q = &json["queues"][0];
    let number = |key: &str| {
        q[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} is a number: {q}"))
    };
    // pgq's rate over the last ticks: 149 counted events since the queue's first tick.
    assert!(number("ev_per_sec") > 0.0, "{q}");
    assert_eq!(q["ev_new"], 0, "the tick covers every event: {q}");
    assert!(number("ticker_lag_secs") >= 0.0, "{q}");
    assert_eq!(q["last_tick_id"], 2, "{q}");
    assert_eq!(
        (q["cur_table"].clone(), q["ntables"].clone()),
        (0.into(), 3.into())
    );
    assert_eq!(number("rotation_period_secs"), 600.0);
    assert!(number("switch_age_secs") >= 0.0, "{q}");
    assert_eq!(q["rotation_pending_step2"], false, "{q}");
    assert_eq!(
        (q["ticker_paused"].clone(), q["external_ticker"].clone()),
        (false.into(), false.into())
    );
    let text = site.expect("app", 0, &["pgq", "status"]);
    assert!(
        text.contains("orders") && text.contains("billing"),
        "{text}"
    );
    // For cron: -q prints nothing when fine, exits 1 with one line per problem when not.
    assert_eq!(
        site.expect("app", 0, &["-q", "pgq", "status", "--max-lag", "3600"]),
        ""
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let out = site.strata("app", &["-q", "pgq", "status", "--max-lag", "0.5"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("consumer billing on orders"));
    // Bad input: clear one-line errors with the usage code, nothing panics.
    for args in [
        &["pgq", "config", "orders", "ticker_max_cont=1"][..],
        &["pgq", "config", "orders", "nonsense"],
        &["pgq", "config", "orders", "ticker_max_lag=soon"],
        &[
            "pgq",
            "create-queue",
            "half",
            "--set",
            "ticker_max_count=many",
        ],
        &["pgq", "config", "nosuch"],
        &["pgq", "status", "--queue", "nosuch"],
        &["pgq", "unregister", "orders", "nobody"],
        &["pgq", "create-queue", ""],
        &["pgq", "drop-queue", "orders"],
    ] {
        let out = site.strata("app", args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"));
    }
    // The failed create-queue left no queue behind.
    let out = site.strata("app", &["pgq", "config", "half"]);
    assert_eq!(out.status.code(), Some(2), "queue half must not exist");
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["pgq", "status"])
        .env_remove("STRATA_PGQ_DB")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--db"));
    site.pg.psql("postgres", "create database plain");
    let out = site.strata("plain", &["pgq", "status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no pgq schema"));
    // Cooperative subconsumers from the command line.
    let out = site.strata(
        "app",
        &["pgq", "register", "orders", "nobody", "--sub", "s1"],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("nobody is not registered"));
    let out = site.expect(
        "app",
        0,
        &["pgq", "register", "orders", "billing", "--sub", "s1"],
    );
    assert!(out.contains("registered subconsumer billing.s1"), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(&site.expect("app", 0, &["--json", "pgq", "status"])).unwrap();
    let names: Vec<&str> = json["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["consumer_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["billing", "billing.s1"]);
    site.expect(
        "app",
        0,
        &["pgq", "unregister", "orders", "billing", "--sub", "s1"],
    );
    let out = site.strata(
        "app",
        &["pgq", "unregister", "orders", "billing", "--sub", "s1"],
    );
    assert_eq!(out.status.code(), Some(2));
    let coop_rows = || async {
        client
            .query_one("select count(*) from strata_pgq.coop_sub", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    assert_eq!(coop_rows().await, 0);
    // Unregistering a main consumer takes its subconsumers along (pgq drops their
    // subscriptions), strata's rows included; registering them again works.
    site.expect(
        "app",
        0,
        &["pgq", "register", "orders", "billing", "--sub", "s1"],
    );
    assert_eq!(coop_rows().await, 1);
    site.expect("app", 0, &["pgq", "unregister", "orders", "billing"]);
    assert_eq!(
        coop_rows().await,
        0,
        "no orphans after the main consumer left"
    );
    // With a consumer and its subconsumers the queue drops only with --force, and
    // strata's subconsumer rows go with it.
    site.expect("app", 0, &["pgq", "register", "orders", "audit"]);
    for sub in ["s1", "s2"] {
        site.expect(
            "app",
            0,
            &["pgq", "register", "orders", "audit", "--sub", sub],
        );
    }
    assert_eq!(coop_rows().await, 2);
    assert_eq!(
        site.strata("app", &["pgq", "drop-queue", "orders"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(coop_rows().await, 2, "a refused drop changes nothing");
    site.expect("app", 0, &["pgq", "drop-queue", "orders", "--force"]);
    let json: serde_json::Value =
        serde_json::from_str(&site.expect("app", 0, &["--json", "pgq", "status"])).unwrap();
    assert_eq!(json["queues"], serde_json::json!([]));
    assert_eq!(coop_rows().await, 0, "no orphaned subconsumer rows");
    // Nor consumer names nothing uses (pgq deletes its own consumers' names too).
    let names: i64 = client
        .query_one(
            "select count(*) from pgq.consumer c where not exists (select 1 from pgq.subscription s where s.sub_consumer = c.co_id)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(names, 0);
}

/// A metric's value for `labels` (as written, `database="app"`), if present.
async fn metric(addr: &str, name: &str, labels: &str) -> Option<f64> {
    let (_, text) = http_get(addr, "/metrics").await?;
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_maintenance_function_does_not_stop_ticking() {
    if skip_without_postgres() {
        return;
    }
    let site = Site::new(&["app"]);
    let client = site.client("app").await;
    // A queue_extra_maint function that always raises, and one listed after it that
    // counts its calls.
    client
        .batch_execute(
            "select pgq.create_queue('q'); select pgq.set_queue_config('q', 'ticker_max_lag', '0.5 seconds'); \
             create table counted(at timestamptz default clock_timestamp()); \
             create function public.broken_maint(queue text) returns int language plpgsql as $$ \
             begin raise exception 'broken on purpose'; end $$; \
             create function public.counting_maint(queue text) returns int language plpgsql as $$ \
             begin insert into counted default values; return 0; end $$; \
             update pgq.queue set queue_extra_maint = array['public.broken_maint', 'public.counting_maint'] \
              where queue_name = 'q';",
        )
        .await
        .unwrap();
    let mut consumer = Consumer::new(
        site.client("app").await,
        "q",
        "c",
        ConsumerOptions::default(),
    )
    .unwrap();
    consumer.register().await.unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let ini = site.ticker_ini("m.ini", &["app"], "");
    let mut ticker = site.spawn_ticker(&ini, &["--health", &addr]);
    let counted = || async {
        client
            .query_one("select count(*) from counted", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let broken = || {
        let addr = addr.clone();
        async move {
            metric(
                &addr,
                "strata_pgq_job_errors_total",
                "database=\"app\",job=\"public.broken_maint\"",
            )
            .await
            .unwrap_or(0.0)
        }
    };
    wait_for_async(
        "the broken maintenance function to fail",
        Duration::from_secs(60),
        || async { broken().await >= 1.0 },
    )
    .await;
    // Maintenance rounds go on (every second here) and the function after the broken one
    // still runs in each, while the broken one waits out its pause (20 s after a
    // failure) instead of failing every round.
    let ticks_before = metric(&addr, "strata_pgq_ticks_total", "database=\"app\"")
        .await
        .unwrap();
    let mut sent = 0;
    let mut seen = 0;
    while counted().await < 4 || seen < 30 {
        let (code, body) = http_get(&addr, "/health").await.unwrap();
        assert_eq!(code, 200, "health stays up: {body}");
        if sent < 30 {
            client
                .batch_execute(&format!("select pgq.insert_event('q', 'n', '{sent}')"))
                .await
                .unwrap();
            sent += 1;
        }
        seen += drain(&mut consumer).await.len();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        broken().await < counted().await as f64,
        "the failing function is paused, not called every round"
    );
    let ticks_after = metric(&addr, "strata_pgq_ticks_total", "database=\"app\"")
        .await
        .unwrap();
    assert!(ticks_after > ticks_before, "ticks kept coming");
    assert_eq!(
        metric(&addr, "strata_pgq_errors_total", "database=\"app\"").await,
        Some(0.0),
        "the database never went down"
    );
    assert_eq!(terminate(&mut ticker), Some(0));
    let log = std::fs::read_to_string(site.path("m.ini.log")).unwrap();
    assert!(
        log.contains("app: public.broken_maint(q) failed") && log.contains("broken on purpose"),
        "{log}"
    );
    assert!(!log.contains("reconnected"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_whose_ticks_hang_shows_as_stalled() {
    if skip_without_postgres() {
        return;
    }
    let site = Site::new(&["app"]);
    site.pg.psql("app", "select pgq.create_queue('q')");
    let addr = format!("127.0.0.1:{}", free_port());
    let ini = site.ticker_ini(
        "s.ini",
        &["app"],
        "stall_timeout = 1\nstatement_timeout = 600\n",
    );
    let mut ticker = site.spawn_ticker(&ini, &["--health", &addr]);
    let health = |addr: String| async move {
        http_get(&addr, "/health").await.map(|(code, body)| {
            (
                code,
                serde_json::from_str::<serde_json::Value>(&body).unwrap(),
            )
        })
    };
    wait_for_async("a first ticker round", Duration::from_secs(60), || {
        let addr = addr.clone();
        async move {
            health(addr).await.is_some_and(|(code, j)| {
                code == 200 && j["databases"]["app"]["last_round_unix"].is_number()
            })
        }
    })
    .await;
    // Another session holds the lock every ticker round needs (pgq.ticker reads
    // pgq.queue): the ticker stays connected, its round hangs.
    let mut locker = site.client("app").await;
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("lock table pgq.queue in access exclusive mode")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let stalled_body = loop {
        if let Some((503, j)) = health(addr.clone()).await {
            if j["stalled"] == serde_json::json!(["app"]) {
                break j;
            }
        }
        assert!(Instant::now() < deadline, "health never reported the stall");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let body = stalled_body;
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["unreachable"], serde_json::json!([]), "{body}");
    assert_eq!(body["databases"]["app"]["up"], true, "{body}");
    assert_eq!(
        metric(&addr, "strata_pgq_database_stalled", "database=\"app\"").await,
        Some(1.0)
    );
    // With a statement timeout shorter than the lock, the server cancels the round and
    // the database shows down with PostgreSQL's reason.
    let addr2 = format!("127.0.0.1:{}", free_port());
    let ini2 = site.ticker_ini("t.ini", &["app"], "statement_timeout = 1\n");
    let mut second = site.spawn_ticker(&ini2, &["--health", &addr2]);
    wait_for_async("the statement timeout", Duration::from_secs(60), || {
        let addr = addr2.clone();
        async move {
            health(addr).await.is_some_and(|(code, j)| {
                code == 503
                    && j["databases"]["app"]["error"]
                        .as_str()
                        .is_some_and(|e| e.contains("statement timeout"))
            })
        }
    })
    .await;
    // SIGTERM is handled while the workers hang on the lock: the one the server cancels
    // and the one whose round waits up to 600 s.
    assert_eq!(
        terminate_within(&mut second, Duration::from_secs(30)),
        Some(0)
    );
    assert_eq!(
        terminate_within(&mut ticker, Duration::from_secs(30)),
        Some(0)
    );
    // The lock goes: ticks resume, healthy again (a new ticker on the same port).
    lock.rollback().await.unwrap();
    let mut ticker = site.spawn_ticker(&ini, &["--health", &addr]);
    wait_for_async("health to recover", Duration::from_secs(60), || {
        let addr = addr.clone();
        async move { health(addr).await.is_some_and(|(code, _)| code == 200) }
    })
    .await;
    assert_eq!(
        metric(&addr, "strata_pgq_database_stalled", "database=\"app\"").await,
        Some(0.0)
    );
    assert_eq!(terminate(&mut ticker), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_all_queues_wakes_queues_made_elsewhere() {
    if skip_without_postgres() {
        return;
    }
    let site = Site::new(&["app"]);
    let client = site.client("app").await;
    // A queue made with pgq's own function (as Londiste or Python tools do), no trigger.
    client
        .batch_execute("select pgq.create_queue('before')")
        .await
        .unwrap();
    assert!(!strata_pgq::notify::is_enabled(&client, "before")
        .await
        .unwrap());
    // Only wake-up ticks can tick an event here (the round is hourly, as are pgq's rules).
    let ini = site.ticker_ini("n.ini", &["app"], "notify_all_queues = 1\n");
    let text = std::fs::read_to_string(&ini)
        .unwrap()
        .replace("ticker_period = 1", "ticker_period = 3600");
    std::fs::write(&ini, text).unwrap();
    let mut ticker = site.spawn_ticker(&ini, &[]);
    let log_has = |what: &'static str| {
        let path = site.path("n.ini.log");
        async move {
            std::fs::read_to_string(&path)
                .unwrap_or_default()
                .contains(what)
        }
    };
    wait_for_async(
        "the trigger on the existing queue",
        Duration::from_secs(60),
        || log_has("installed the event notification trigger on queue before"),
    )
    .await;
    assert!(strata_pgq::notify::is_enabled(&client, "before")
        .await
        .unwrap());
    // A queue created while the ticker runs gets it too.
    client
        .batch_execute(
            "select pgq.create_queue('later'); \
             select pgq.set_queue_config('later', 'ticker_max_lag', '1 hour'); \
             select pgq.set_queue_config('later', 'ticker_idle_period', '1 hour'); \
             select pgq.register_consumer('later', 'c');",
        )
        .await
        .unwrap();
    wait_for_async(
        "the trigger on the new queue",
        Duration::from_secs(60),
        || log_has("installed the event notification trigger on queue later"),
    )
    .await;
    let pg = strata_pgq::conn::config_for(&site.base_connstr(), "app").unwrap();
    let mut waiter = strata_pgq::conn::TickWaiter::connect(&pg, "later")
        .await
        .unwrap();
    let mut consumer = Consumer::new(
        site.client("app").await,
        "later",
        "c",
        ConsumerOptions::default(),
    )
    .unwrap();
    client
        .batch_execute("select pgq.insert_event('later', 'x', 'woken')")
        .await
        .unwrap();
    let events = next_events(
        &mut consumer,
        &mut waiter,
        "the event on the new queue",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(events[0].data.as_deref(), Some("woken"));
    assert_eq!(terminate(&mut ticker), Some(0));
}

#[test]
fn ticker_start_errors_reach_the_caller_and_the_exit_policy_can_be_turned_off() {
    let dir = tempfile::Builder::new()
        .prefix("strata-pgq-start")
        .tempdir()
        .unwrap();
    // Nothing listens on this port: every database is unreachable at once.
    let port = free_port();
    let ini = dir.path().join("d.ini");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    std::fs::write(
        &ini,
        format!(
            "[pgqd]\nbase_connstr = host=127.0.0.1 port={port} user=postgres\ndatabase_list = app\nlogfile = d.log\npidfile = d.pid\nhealth_listen = {addr}\nexit_on_unreachable = 1\n"
        ),
    )
    .unwrap();
    // --daemon with the health port taken: the parent exits non-zero with the child's
    // reason, and no pidfile is left.
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["pgq", "ticker", "--daemon"])
        .arg(&ini)
        .env_remove("STRATA_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("listening on {addr} for /health")) && stderr.contains("in use"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(!dir.path().join("d.pid").exists());
    let log = std::fs::read_to_string(dir.path().join("d.log")).unwrap();
    assert!(
        log.contains("in use"),
        "the reason is in the logfile too: {log}"
    );
    drop(busy);
    // `--exit-on-unreachable 0` turns the file's policy (1 s) off.
    let mut ticker = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["pgq", "ticker", "--exit-on-unreachable", "0"])
            .arg(&ini)
            .env_remove("STRATA_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = std::fs::read_to_string(dir.path().join("d.log")).unwrap_or_default();
        if log.contains("exit_on_unreachable: never") && log.contains("app: ") {
            break;
        }
        assert!(Instant::now() < deadline, "the ticker never started: {log}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Well past the file's 1 s, it still runs (the policy would have exited with 1).
    std::thread::sleep(Duration::from_secs(3));
    assert!(ticker.0.try_wait().unwrap().is_none(), "the ticker exited");
    assert_eq!(terminate(&mut ticker), Some(0));
}
