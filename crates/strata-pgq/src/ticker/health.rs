//! What the ticker knows about each database, served over HTTP: `/health` (200 when
//! every database is reachable and ticked, 503 listing the ones that are unreachable or
//! stalled) and `/metrics` (Prometheus text). pgqd retries an unreachable database
//! silently (pgq/pgqd#5) and cannot tell a connected database whose ticks hang from a
//! working one; here both are visible.

use super::log::Log;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One database's state and counters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DbState {
    /// Connected and the last statement worked.
    pub up: bool,
    /// Why it is not up (connection error, missing pgq, failed statement).
    pub error: Option<String>,
    /// Seconds since the state last changed between up and down.
    #[serde(skip)]
    pub since: Option<Instant>,
    /// Ticks written.
    pub ticks: u64,
    /// Of those, wake-up ticks: made because an event notification arrived.
    pub wakeup_ticks: u64,
    /// Tables rotated (step 1 that switched the table).
    pub rotations: u64,
    /// Maintenance function calls made.
    pub maint_calls: u64,
    /// Events moved back from the retry queue.
    pub retried_events: u64,
    /// Errors seen.
    pub errors: u64,
    /// Unix time of the last successful ticker round.
    pub last_round_unix: Option<f64>,
    /// When the last successful ticker round ended.
    #[serde(skip)]
    pub last_round: Option<Instant>,
    /// When the ticker started watching the database (the stall clock before any round).
    #[serde(skip)]
    pub watched_since: Option<Instant>,
    /// Connected, but no successful ticker round for longer than the stall limit
    /// (`ticker_period + stall_timeout`): ticks hang, on a lock or a stuck server. Set in
    /// snapshots.
    pub stalled: bool,
    /// Seconds since the last successful ticker round (or since watching began). Set in
    /// snapshots.
    pub last_round_age_secs: Option<f64>,
    /// Failures of the jobs that do not stop ticking (maintenance functions, retry
    /// events, queue figures, trigger installation), by job.
    pub job_errors: BTreeMap<String, u64>,
    /// Queue and consumer figures, refreshed every `stats_period`.
    pub queues: Vec<crate::api::QueueInfo>,
    /// Consumer figures, refreshed with `queues`.
    pub consumers: Vec<crate::api::ConsumerInfo>,
}

/// Shared state of every database, keyed by name.
#[derive(Clone)]
pub struct Health {
    inner: Arc<Mutex<BTreeMap<String, DbState>>>,
    /// The stall limit in milliseconds (changes on SIGHUP).
    stall_limit_ms: Arc<AtomicU64>,
    /// Whether a first round of looking for databases has ended: before, `/ready` has
    /// nothing to say a database is ticking, and says not ready.
    discovered: Arc<std::sync::atomic::AtomicBool>,
}

impl Default for Health {
    fn default() -> Self {
        Health::new(super::config::TickerConfig::default().stall_limit())
    }
}

impl Health {
    /// Empty state; a database is stalled when its last round is older than `stall_limit`.
    pub fn new(stall_limit: Duration) -> Health {
        let health = Health {
            inner: Arc::default(),
            stall_limit_ms: Arc::default(),
            discovered: Arc::default(),
        };
        health.set_stall_limit(stall_limit);
        health
    }

    /// A round of looking for databases has ended.
    pub fn discovered(&self) {
        self.discovered.store(true, Ordering::Relaxed);
    }

    /// Changes the stall limit (after a configuration reload).
    pub fn set_stall_limit(&self, limit: Duration) {
        let ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        self.stall_limit_ms.store(ms, Ordering::Relaxed);
    }

    fn stall_limit(&self) -> Duration {
        Duration::from_millis(self.stall_limit_ms.load(Ordering::Relaxed))
    }

    /// Starts the stall clock of a database (its worker started).
    pub fn watch(&self, db: &str) {
        self.update(db, |s| {
            s.watched_since.get_or_insert_with(Instant::now);
        });
    }

    /// Records a successful ticker round.
    pub fn round_done(&self, db: &str) {
        self.update(db, |s| {
            s.last_round = Some(Instant::now());
            s.last_round_unix = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs_f64());
        });
    }

    /// Counts a failure of a job that does not stop ticking.
    pub fn job_failed(&self, db: &str, job: &str) {
        self.update(db, |s| {
            *s.job_errors.entry(job.to_string()).or_default() += 1
        });
    }

    /// Whether the database's ticking session is connected.
    pub fn is_up(&self, db: &str) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(db)
            .is_some_and(|s| s.up)
    }

    /// Changes one database's state.
    pub fn update(&self, db: &str, f: impl FnOnce(&mut DbState)) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(map.entry(db.to_string()).or_default());
    }

    /// Marks a database up (connected, pgq found).
    pub fn up(&self, db: &str) {
        self.update(db, |s| {
            if !s.up {
                s.since = Some(Instant::now());
            }
            s.up = true;
            s.error = None;
        });
    }

    /// Marks a database down with the reason.
    pub fn down(&self, db: &str, error: String) {
        self.update(db, |s| {
            if s.up || s.since.is_none() {
                s.since = Some(Instant::now());
            }
            s.up = false;
            s.error = Some(error);
            s.errors += 1;
        });
    }

    /// Forgets a database that is no longer ticked (dropped, or removed from the list).
    pub fn forget(&self, db: &str) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(db);
    }

    /// A copy of every database's state, with `stalled` and `last_round_age_secs` set.
    pub fn snapshot(&self) -> BTreeMap<String, DbState> {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let limit = self.stall_limit();
        for s in map.values_mut() {
            let age = s.last_round.or(s.watched_since).map(|t| t.elapsed());
            s.last_round_age_secs = age.map(|a| a.as_secs_f64());
            s.stalled = s.up && age.is_some_and(|a| a > limit);
        }
        map
    }

    /// The database that has gone without ticks the longest, if any is unreachable or
    /// stalled: its name, for how long (since it went down; for a stalled one, since its
    /// last round), and whether it is stalled rather than down.
    pub fn longest_unticked(&self) -> Option<(String, Duration, bool)> {
        self.snapshot()
            .into_iter()
            .filter_map(|(db, s)| {
                if !s.up {
                    s.since.map(|t| (db, t.elapsed(), false))
                } else if s.stalled {
                    s.last_round_age_secs
                        .map(|a| (db, Duration::from_secs_f64(a), true))
                } else {
                    None
                }
            })
            .max_by_key(|(_, d, _)| *d)
    }

    /// The `/health` answer: status code and JSON body.
    pub fn health_body(&self) -> (u16, String) {
        let snapshot = self.snapshot();
        // A database whose first connection is still being made is neither.
        let down: Vec<&String> = snapshot
            .iter()
            .filter(|(_, s)| !s.up && s.since.is_some())
            .map(|(d, _)| d)
            .collect();
        let stalled: Vec<&String> = snapshot
            .iter()
            .filter(|(_, s)| s.stalled)
            .map(|(d, _)| d)
            .collect();
        let ok = down.is_empty() && stalled.is_empty();
        let body = serde_json::json!({
            "status": if ok { "ok" } else { "degraded" },
            // What every strata process's /health names (strata_health::HealthReport).
            "process": "strata pgq ticker",
            "version": env!("CARGO_PKG_VERSION"),
            "unreachable": down,
            "stalled": stalled,
            "databases": snapshot,
        });
        (if ok { 200 } else { 503 }, body.to_string())
    }

    /// What `/ready` checks: every database connected and ticking (one connecting for the
    /// first time is not ready yet; a stalled one is not ready).
    pub fn ready_checks(&self) -> Vec<strata_health::Check> {
        let looked = self.discovered.load(Ordering::Relaxed);
        let databases = strata_health::Check::new(
            "databases",
            looked,
            match looked {
                true => "looked for",
                false => "looking for the databases to tick",
            },
        );
        std::iter::once(databases)
            .chain(self.snapshot().into_iter().map(|(db, state)| {
                let (ok, detail) = match (state.up, state.stalled, &state.error) {
                    (true, false, _) => (true, "connected and ticking".to_string()),
                    (true, true, _) => {
                        (false, "stalled: its ticker rounds stopped finishing".into())
                    }
                    (false, _, Some(error)) => (false, format!("unreachable: {error}")),
                    (false, _, None) => (false, "connecting".into()),
                };
                strata_health::Check::new(format!("database {db}"), ok, detail)
            }))
            .collect()
    }

    /// The `/metrics` answer in Prometheus text format.
    pub fn metrics_body(&self) -> String {
        let snapshot = self.snapshot();
        let mut out = String::new();
        database_metrics(&mut out, &snapshot);
        job_error_metrics(&mut out, &snapshot);
        queue_metrics(&mut out, &snapshot);
        consumer_metrics(&mut out, &snapshot);
        out
    }
}

/// A metric family of items of type `T`: name, kind, help and an item's value (none: no
/// sample).
type Family<T> = (
    &'static str,
    &'static str,
    &'static str,
    fn(&T) -> Option<f64>,
);

/// The metrics of each database: up, counters, the last round, stalled.
const DATABASE_FAMILIES: [Family<DbState>; 10] = [
    (
        "strata_pgq_database_up",
        "gauge",
        "1 when the database is reachable and ticked.",
        |s| Some(if s.up { 1.0 } else { 0.0 }),
    ),
    ("strata_pgq_ticks_total", "counter", "Ticks written.", |s| {
        Some(s.ticks as f64)
    }),
    (
        "strata_pgq_wakeup_ticks_total",
        "counter",
        "Ticks made because an event notification arrived (included in ticks_total).",
        |s| Some(s.wakeup_ticks as f64),
    ),
    (
        "strata_pgq_rotations_total",
        "counter",
        "Event tables rotated.",
        |s| Some(s.rotations as f64),
    ),
    (
        "strata_pgq_maint_calls_total",
        "counter",
        "Maintenance function calls.",
        |s| Some(s.maint_calls as f64),
    ),
    (
        "strata_pgq_retried_events_total",
        "counter",
        "Events moved back from the retry queue.",
        |s| Some(s.retried_events as f64),
    ),
    (
        "strata_pgq_errors_total",
        "counter",
        "Connection and statement errors.",
        |s| Some(s.errors as f64),
    ),
    (
        "strata_pgq_last_round_timestamp_seconds",
        "gauge",
        "Unix time of the last successful ticker round.",
        |s| s.last_round_unix,
    ),
    (
        "strata_pgq_last_round_age_seconds",
        "gauge",
        "Seconds since the last successful ticker round.",
        |s| s.last_round_age_secs,
    ),
    (
        "strata_pgq_database_stalled",
        "gauge",
        "1 when the database is connected but its ticker rounds stopped succeeding.",
        |s| Some(if s.stalled { 1.0 } else { 0.0 }),
    ),
];

fn database_metrics(out: &mut String, snapshot: &BTreeMap<String, DbState>) {
    write_families(
        out,
        snapshot,
        &DATABASE_FAMILIES,
        std::slice::from_ref,
        |_| String::new(),
    );
}

/// Writes `families` over the items each database has (`items`), each sample labelled
/// with its database and the item's own labels (`labels`: `,name="value"` pairs).
fn write_families<T>(
    out: &mut String,
    snapshot: &BTreeMap<String, DbState>,
    families: &[Family<T>],
    items: impl Fn(&DbState) -> &[T],
    labels: impl Fn(&T) -> String,
) {
    for (name, kind, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (db, s) in snapshot {
            for item in items(s) {
                if let Some(v) = value(item) {
                    let db = label(db);
                    let _ = writeln!(out, "{name}{{database=\"{db}\"{}}} {v}", labels(item));
                }
            }
        }
    }
}

/// Failures of jobs that do not stop ticking, per database and job.
fn job_error_metrics(out: &mut String, snapshot: &BTreeMap<String, DbState>) {
    let name = "strata_pgq_job_errors_total";
    let _ = writeln!(
        out,
        "# HELP {name} Failures of jobs that do not stop ticking (maintenance functions, retry events, queue figures, trigger installation).\n# TYPE {name} counter"
    );
    for (db, s) in snapshot {
        for (job, n) in &s.job_errors {
            let _ = writeln!(
                out,
                "{name}{{database=\"{}\",job=\"{}\"}} {n}",
                label(db),
                label(job)
            );
        }
    }
}

/// The figures of each queue of each database.
fn queue_metrics(out: &mut String, snapshot: &BTreeMap<String, DbState>) {
    let families: [Family<crate::api::QueueInfo>; 3] = [
        (
            "strata_pgq_queue_ticker_lag_seconds",
            "gauge",
            "Seconds since the queue's newest tick.",
            |q| q.ticker_lag_secs,
        ),
        (
            "strata_pgq_queue_new_events",
            "gauge",
            "Events no tick covers yet.",
            |q| q.ev_new.map(|v| v as f64),
        ),
        (
            "strata_pgq_queue_events_per_second",
            "gauge",
            "Event rate pgq reports.",
            |q| q.ev_per_sec,
        ),
    ];
    write_families(
        out,
        snapshot,
        &families,
        |s| &s.queues,
        |q| format!(",queue=\"{}\"", label(&q.queue_name)),
    );
}

/// The figures of each consumer of each queue.
fn consumer_metrics(out: &mut String, snapshot: &BTreeMap<String, DbState>) {
    let families: [Family<crate::api::ConsumerInfo>; 3] = [
        (
            "strata_pgq_consumer_lag_seconds",
            "gauge",
            "Seconds since the consumer's last finished tick was made.",
            |c| c.lag_secs,
        ),
        (
            "strata_pgq_consumer_last_seen_seconds",
            "gauge",
            "Seconds since the consumer last asked for or finished a batch.",
            |c| c.last_seen_secs,
        ),
        (
            "strata_pgq_consumer_pending_events",
            "gauge",
            "Events the consumer has not finished (pgq's estimate).",
            |c| c.pending_events.map(|v| v as f64),
        ),
    ];
    write_families(
        out,
        snapshot,
        &families,
        |s| &s.consumers,
        |c| {
            format!(
                ",queue=\"{}\",consumer=\"{}\"",
                label(&c.queue_name),
                label(&c.consumer_name)
            )
        },
    );
}

/// A label value with `\`, `"` and newlines escaped, as Prometheus text requires.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Connections the health server holds at once. A new one past it closes the oldest:
/// every connection is short (see [`EXCHANGE_TIMEOUT`]), so the oldest is the one most
/// likely to be a client that only holds its place.
const MAX_CONNECTIONS: usize = 64;

/// Time a client has for its whole exchange: send its request head, then read the
/// answer. Counted once for the connection, so neither a client that sends one byte at a
/// time (slowloris) nor one that never reads its answer holds a connection longer.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `/health` and `/metrics` on `listener` until the task is dropped. A tiny
/// HTTP/1.0-style server: one request per connection, GET only, small requests.
///
/// It keeps answering while clients misbehave: each exchange has [`EXCHANGE_TIMEOUT`], at
/// most [`MAX_CONNECTIONS`] are open, and an accept error (out of file descriptors, say)
/// is logged at most every few seconds, frees the oldest connection and pauses accepting
/// briefly instead of ending or spinning the loop. (`strata server` has the same limits
/// over hyper; this crate cannot share its code, which lives above it, and a hand-written
/// loop this small needs no HTTP library.)
pub async fn serve(listener: tokio::net::TcpListener, health: Health, log: Option<Log>) {
    let answer = move |path: &str| match path {
        "/health" => {
            let (code, body) = health.health_body();
            Some((code, "application/json", body))
        }
        "/ready" => {
            let (code, body) = strata_health::ready_answer(health.ready_checks());
            Some((code, "application/json", body))
        }
        "/metrics" => Some((200, "text/plain; version=0.0.4", health.metrics_body())),
        _ => None,
    };
    serve_answers(listener, Arc::new(answer), log).await
}

/// What a small health server answers a GET of a path: status, content type and body, or
/// `None` for 404.
pub type Answers = Arc<dyn Fn(&str) -> Option<(u16, &'static str, String)> + Send + Sync>;

/// The server of [`serve`] for any `answer`, with the same limits: what the Londiste
/// worker serves its `/health` and `/ready` with too.
pub async fn serve_answers(listener: tokio::net::TcpListener, answer: Answers, log: Option<Log>) {
    let mut open: BTreeMap<u64, tokio::task::AbortHandle> = BTreeMap::new();
    let mut next = 0u64;
    let mut backoff = Duration::ZERO;
    let mut last_warning: Option<Instant> = None;
    loop {
        let socket = match listener.accept().await {
            Ok((socket, _)) => {
                backoff = Duration::ZERO;
                socket
            }
            Err(err) => {
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::Interrupted
                ) {
                    continue;
                }
                open.retain(|_, task| !task.is_finished());
                if let Some((_, oldest)) = open.pop_first() {
                    oldest.abort();
                }
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
                    last_warning = Some(Instant::now());
                    if let Some(log) = &log {
                        log.warn(format!("health server: cannot accept connections: {err}"));
                    }
                }
                backoff =
                    (backoff * 2).clamp(Duration::from_millis(10), Duration::from_millis(500));
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        open.retain(|_, task| !task.is_finished());
        while open.len() >= MAX_CONNECTIONS {
            if let Some((_, oldest)) = open.pop_first() {
                oldest.abort();
            }
        }
        let answer = answer.clone();
        let task = tokio::spawn(async move {
            let _ = tokio::time::timeout(EXCHANGE_TIMEOUT, exchange(socket, &answer)).await;
        });
        open.insert(next, task.abort_handle());
        next += 1;
    }
}

/// Reads one request head from `socket` and writes the answer.
async fn exchange(mut socket: tokio::net::TcpStream, answer: &Answers) {
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    // Read until the end of the request head (or the buffer is full).
    while len < buf.len() {
        match socket.read(&mut buf[len..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n")
            || buf[..len].windows(2).any(|w| w == b"\n\n")
        {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let mut words = head.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (code, kind, body) = match (method, answer(path)) {
        ("GET", Some(found)) => found,
        ("GET", None) => (404, "text/plain", "not found\n".to_string()),
        _ => (405, "text/plain", "only GET\n".to_string()),
    };
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let response = format!(
        "HTTP/1.1 {code} {reason}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = socket.write_all(response.as_bytes()).await;
    let _ = socket.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ticker's /health is a strata health report (what `strata probe` reads), and
    /// /ready says not ready until a first round has looked for databases.
    #[test]
    fn health_is_a_strata_report_and_ready_waits_for_the_first_discovery() {
        let health = Health::default();
        let (code, body) = health.health_body();
        assert_eq!(code, 200);
        let report: strata_health::HealthReport = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (report.status.as_str(), report.process.as_str()),
            ("ok", "strata pgq ticker")
        );
        let ready = strata_health::ReadyReport::of(health.ready_checks());
        assert!(!ready.ready, "{ready:?}");
        health.discovered();
        assert!(strata_health::ReadyReport::of(health.ready_checks()).ready);
    }

    #[test]
    fn a_down_database_shows_in_health_and_metrics() {
        let health = Health::default();
        health.up("good");
        health.update("good", |s| s.ticks += 3);
        health.down("bad\"db", "cannot connect".into());
        let (code, body) = health.health_body();
        assert_eq!(code, 503);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["unreachable"], serde_json::json!(["bad\"db"]));
        assert_eq!(json["databases"]["bad\"db"]["error"], "cannot connect");
        let metrics = health.metrics_body();
        assert!(
            metrics.contains("strata_pgq_database_up{database=\"good\"} 1\n"),
            "{metrics}"
        );
        assert!(
            metrics.contains("strata_pgq_database_up{database=\"bad\\\"db\"} 0\n"),
            "{metrics}"
        );
        assert!(metrics.contains("strata_pgq_ticks_total{database=\"good\"} 3\n"));
        health.update("good", |s| {
            s.consumers = vec![crate::api::ConsumerInfo {
                queue_name: "q".into(),
                consumer_name: "c\\x".into(),
                lag_secs: Some(2.5),
                last_seen_secs: None,
                last_tick: Some(1),
                current_batch: None,
                next_tick: None,
                pending_events: Some(7),
            }];
            s.queues = vec![crate::api::QueueInfo {
                queue_name: "q\"1".into(),
                ntables: 3,
                cur_table: 0,
                rotation_period_secs: None,
                switch_age_secs: None,
                rotation_pending_step2: false,
                external_ticker: false,
                ticker_paused: false,
                ticker_max_count: 500,
                ticker_max_lag_secs: 3.0,
                ticker_idle_period_secs: 60.0,
                ticker_lag_secs: Some(1.5),
                ev_per_sec: None,
                ev_new: Some(4),
                last_tick_id: Some(9),
            }];
        });
        let metrics = health.metrics_body();
        assert!(
            metrics.contains(
                "strata_pgq_queue_ticker_lag_seconds{database=\"good\",queue=\"q\\\"1\"} 1.5\n"
            ),
            "{metrics}"
        );
        assert!(
            metrics.contains("strata_pgq_queue_new_events{database=\"good\",queue=\"q\\\"1\"} 4\n")
        );
        assert!(
            !metrics.contains("strata_pgq_queue_events_per_second{"),
            "none: no sample"
        );
        assert!(
            metrics.contains("strata_pgq_consumer_lag_seconds{database=\"good\",queue=\"q\",consumer=\"c\\\\x\"} 2.5\n"),
            "{metrics}"
        );
        assert!(metrics.contains("strata_pgq_consumer_pending_events{database=\"good\",queue=\"q\",consumer=\"c\\\\x\"} 7\n"));
        assert!(
            !metrics.contains("strata_pgq_consumer_last_seen_seconds{"),
            "NULL is left out"
        );
        assert!(health
            .longest_unticked()
            .is_some_and(|(db, _, stalled)| db == "bad\"db" && !stalled));
        health.up("bad\"db");
        assert_eq!(health.health_body().0, 200);
        assert!(health.longest_unticked().is_none());
    }

    #[test]
    fn a_connected_database_without_rounds_is_stalled() {
        let health = Health::new(Duration::ZERO);
        health.watch("db");
        health.up("db");
        std::thread::sleep(Duration::from_millis(5));
        let (code, body) = health.health_body();
        assert_eq!(code, 503, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["stalled"], serde_json::json!(["db"]));
        assert_eq!(json["unreachable"], serde_json::json!([]));
        assert!(health
            .metrics_body()
            .contains("strata_pgq_database_stalled{database=\"db\"} 1\n"));
        assert!(health.longest_unticked().is_some_and(|(_, _, s)| s));
        health.set_stall_limit(Duration::from_secs(3600));
        health.round_done("db");
        assert_eq!(health.health_body().0, 200);
        health.job_failed("db", "public.broken");
        assert!(health
            .metrics_body()
            .contains("strata_pgq_job_errors_total{database=\"db\",job=\"public.broken\"} 1\n"));
        assert_eq!(health.health_body().0, 200, "job failures are not health");
    }
}
