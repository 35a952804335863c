//! What the worker tells a scraper: the counters and gauges of `/metrics` (Prometheus text),
//! shared by the main worker and its copy tasks. The replay path only bumps atomics (one
//! relaxed add per batch, per event chunk and per copied row chunk); everything else is
//! written per batch or per error, and the text is made at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// The worker's counters; cheap to clone (every clone counts into the same figures).
#[derive(Debug, Clone, Default)]
pub struct WorkerMetrics(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    batches: AtomicU64,
    events: AtomicU64,
    errors: AtomicU64,
    parked: AtomicU64,
    /// Unix time in milliseconds of the end tick of the last applied batch (0: none yet).
    last_tick_ms: AtomicU64,
    /// Unix time in milliseconds of the last applied batch's commit.
    last_batch_ms: AtomicU64,
    paused: AtomicBool,
    failing: AtomicBool,
    retry_delay_ms: AtomicU64,
    detail: Mutex<Detail>,
}

#[derive(Debug, Default)]
struct Detail {
    /// Local tables by name: their state, and the rows of their current (or last) copy.
    tables: BTreeMap<String, (String, Arc<AtomicU64>)>,
    /// Unix time and text of the last error.
    last_error: Option<(f64, String)>,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl WorkerMetrics {
    fn detail(&self) -> std::sync::MutexGuard<'_, Detail> {
        self.0.detail.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A batch committed with `events` events; its end tick was made at `tick_time`.
    pub fn batch_applied(&self, events: u64, tick_time: SystemTime) {
        let m = &self.0;
        m.batches.fetch_add(1, Ordering::Relaxed);
        m.events.fetch_add(events, Ordering::Relaxed);
        m.last_tick_ms.store(unix_ms(tick_time), Ordering::Relaxed);
        m.last_batch_ms
            .store(unix_ms(SystemTime::now()), Ordering::Relaxed);
        m.failing.store(false, Ordering::Relaxed);
        m.retry_delay_ms.store(0, Ordering::Relaxed);
    }

    /// The worker failed with `error` and retries in `retry`.
    pub fn failed(&self, error: &str, retry: Duration) {
        let m = &self.0;
        m.errors.fetch_add(1, Ordering::Relaxed);
        m.failing.store(true, Ordering::Relaxed);
        let ms = u64::try_from(retry.as_millis()).unwrap_or(u64::MAX);
        m.retry_delay_ms.store(ms, Ordering::Relaxed);
        let now = unix_ms(SystemTime::now()) as f64 / 1000.0;
        self.detail().last_error = Some((now, error.to_string()));
    }

    /// The worker moves again after a stall: no longer failing.
    pub fn recovered(&self) {
        self.0.failing.store(false, Ordering::Relaxed);
        self.0.retry_delay_ms.store(0, Ordering::Relaxed);
    }

    /// An event was parked by the worker (`park_unknown_events`).
    pub fn event_parked(&self) {
        self.0.parked.fetch_add(1, Ordering::Relaxed);
    }

    /// The node's pause flag as the worker last saw it.
    pub fn set_paused(&self, paused: bool) {
        self.0.paused.store(paused, Ordering::Relaxed);
    }

    /// Whether the worker was last seen paused.
    pub fn paused(&self) -> bool {
        self.0.paused.load(Ordering::Relaxed)
    }

    /// The local tables and their states, as read before a batch (tables gone are
    /// forgotten; a copy's row counter is kept).
    pub fn set_tables<'a>(&self, tables: impl IntoIterator<Item = (&'a str, String)>) {
        let mut detail = self.detail();
        let mut next = BTreeMap::new();
        for (name, state) in tables {
            let rows = detail
                .tables
                .remove(name)
                .map(|(_, rows)| rows)
                .unwrap_or_default();
            next.insert(name.to_string(), (state, rows));
        }
        detail.tables = next;
    }

    /// The node became (or runs as) the root, after a takeover perhaps: it replays from
    /// no provider, so it has no replay lag (the gauge goes, rather than climbing from the
    /// last batch it applied as a branch for ever), and no copy runs at a root (the row
    /// counts of the copies it was running are zeroed).
    pub fn became_root(&self) {
        self.0.last_tick_ms.store(0, Ordering::Relaxed);
        for (_, rows) in self.detail().tables.values() {
            rows.store(0, Ordering::Relaxed);
        }
    }

    /// The row counter of `table`'s copy, reset to zero: the copy adds to it as rows
    /// stream.
    pub fn copy_rows(&self, table: &str) -> Arc<AtomicU64> {
        let mut detail = self.detail();
        let entry = detail
            .tables
            .entry(table.to_string())
            .or_insert_with(|| ("in-copy".into(), Arc::default()));
        entry.1.store(0, Ordering::Relaxed);
        entry.1.clone()
    }

    /// Batches applied so far (for tests and the stop message).
    pub fn batches(&self) -> u64 {
        self.0.batches.load(Ordering::Relaxed)
    }

    /// The `/metrics` text for worker `job`.
    pub fn render(&self, job: &str) -> String {
        let m = &self.0;
        let job = label(job);
        let mut out = String::new();
        let mut one = |name: &str, kind: &str, help: &str, value: f64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{job=\"{job}\"}} {value}"
            );
        };
        let count = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        let flag = |a: &AtomicBool| if a.load(Ordering::Relaxed) { 1.0 } else { 0.0 };
        one(
            "strata_londiste_batches_total",
            "counter",
            "Batches applied to this node.",
            count(&m.batches),
        );
        one(
            "strata_londiste_events_total",
            "counter",
            "Events of the applied batches (rate() gives events per second).",
            count(&m.events),
        );
        let now_ms = unix_ms(SystemTime::now());
        let last_tick = m.last_tick_ms.load(Ordering::Relaxed);
        if last_tick > 0 {
            one(
                "strata_londiste_lag_seconds",
                "gauge",
                "Seconds between now and the provider's tick of the last applied batch.",
                now_ms.saturating_sub(last_tick) as f64 / 1000.0,
            );
            one(
                "strata_londiste_last_batch_timestamp_seconds",
                "gauge",
                "Unix time the last batch was applied.",
                m.last_batch_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            );
        }
        one(
            "strata_londiste_paused",
            "gauge",
            "1 while the node's worker is paused.",
            flag(&m.paused),
        );
        one(
            "strata_londiste_failing",
            "gauge",
            "1 while the worker retries after an error or makes no progress for stall_timeout (see strata_londiste_last_error_info).",
            flag(&m.failing),
        );
        one(
            "strata_londiste_retry_delay_seconds",
            "gauge",
            "The current wait before the next retry (0 when not failing).",
            m.retry_delay_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        );
        one(
            "strata_londiste_errors_total",
            "counter",
            "Errors the worker retried after.",
            count(&m.errors),
        );
        one(
            "strata_londiste_parked_events_total",
            "counter",
            "Events this worker parked by itself (park_unknown_events).",
            count(&m.parked),
        );
        let detail = self.detail();
        if let Some((at, error)) = &detail.last_error {
            one(
                "strata_londiste_last_error_timestamp_seconds",
                "gauge",
                "Unix time of the last error.",
                *at,
            );
            let name = "strata_londiste_last_error_info";
            let short: String = error.chars().take(300).collect();
            let _ = writeln!(
                out,
                "# HELP {name} The last error's text (value 1).\n# TYPE {name} gauge\n{name}{{job=\"{job}\",error=\"{}\"}} 1",
                label(&short)
            );
        }
        let name = "strata_londiste_table_state";
        let _ = writeln!(
            out,
            "# HELP {name} The state of each local table (value 1).\n# TYPE {name} gauge"
        );
        for (table, (state, _)) in &detail.tables {
            let _ = writeln!(
                out,
                "{name}{{job=\"{job}\",table=\"{}\",state=\"{}\"}} 1",
                label(table),
                label(state)
            );
        }
        let name = "strata_londiste_copy_rows";
        let _ = writeln!(
            out,
            "# HELP {name} Rows streamed by each table's current or last initial copy.\n# TYPE {name} gauge"
        );
        for (table, (_, rows)) in &detail.tables {
            let _ = writeln!(
                out,
                "{name}{{job=\"{job}\",table=\"{}\"}} {}",
                label(table),
                rows.load(Ordering::Relaxed)
            );
        }
        out
    }
}

/// A label value with `\`, `"` and newlines escaped, as Prometheus text requires.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample `name{labels}` in `text`.
    fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
    }

    #[test]
    fn counters_tables_and_the_last_error_render_as_prometheus_text() {
        let m = WorkerMetrics::default();
        let text = m.render("leaf");
        assert_eq!(
            sample(&text, "strata_londiste_batches_total{job=\"leaf\"}"),
            Some(0.0)
        );
        assert!(
            !text.contains("strata_londiste_lag_seconds{"),
            "no batch yet"
        );
        m.batch_applied(5, SystemTime::now() - Duration::from_secs(2));
        m.batch_applied(7, SystemTime::now());
        m.set_tables([
            ("public.t1", "ok".to_string()),
            ("public.t\"2", "in-copy".into()),
        ]);
        m.copy_rows("public.t\"2").fetch_add(42, Ordering::Relaxed);
        m.failed(
            "applying the batch on node leaf: boom \"x\"",
            Duration::from_secs(4),
        );
        m.set_paused(true);
        let text = m.render("leaf");
        assert_eq!(
            sample(&text, "strata_londiste_events_total{job=\"leaf\"}"),
            Some(12.0)
        );
        assert_eq!(
            sample(&text, "strata_londiste_batches_total{job=\"leaf\"}"),
            Some(2.0)
        );
        assert!(sample(&text, "strata_londiste_lag_seconds{job=\"leaf\"}").unwrap() < 2.0);
        assert_eq!(
            sample(
                &text,
                "strata_londiste_copy_rows{job=\"leaf\",table=\"public.t\\\"2\"}"
            ),
            Some(42.0)
        );
        assert!(text.contains(
            "strata_londiste_table_state{job=\"leaf\",table=\"public.t1\",state=\"ok\"} 1\n"
        ));
        assert_eq!(
            sample(&text, "strata_londiste_retry_delay_seconds{job=\"leaf\"}"),
            Some(4.0)
        );
        assert_eq!(
            sample(&text, "strata_londiste_paused{job=\"leaf\"}"),
            Some(1.0)
        );
        assert!(text.contains("error=\"applying the batch on node leaf: boom \\\"x\\\"\"} 1\n"));
        // A table that left the set is forgotten.
        m.set_tables([("public.t1", "ok".to_string())]);
        assert!(!m.render("leaf").contains("t\\\"2"));
    }

    #[test]
    fn a_node_that_became_the_root_has_no_lag_and_no_copy_running() {
        let m = WorkerMetrics::default();
        m.batch_applied(3, SystemTime::now() - Duration::from_secs(30));
        m.set_tables([("public.t", "in-copy".to_string())]);
        m.copy_rows("public.t").fetch_add(500, Ordering::Relaxed);
        m.became_root();
        // The root's loop reads the states the takeover left.
        m.set_tables([("public.t", "ok".to_string())]);
        let text = m.render("node");
        assert!(!text.contains("strata_londiste_lag_seconds{"), "{text}");
        assert!(text.contains(
            "strata_londiste_table_state{job=\"node\",table=\"public.t\",state=\"ok\"} 1\n"
        ));
        assert_eq!(
            sample(
                &text,
                "strata_londiste_copy_rows{job=\"node\",table=\"public.t\"}"
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, "strata_londiste_batches_total{job=\"node\"}"),
            Some(1.0)
        );
    }
}
