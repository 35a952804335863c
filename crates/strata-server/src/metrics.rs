//! `/metrics`: the coordinator's state in the OpenMetrics text format, for Prometheus.
//!
//! Values are kept by the coordinator since it started (operations by kind and outcome,
//! lease losses, storage requests), read at scrape time from the nodes (reachability),
//! or read from the repository's backup listing at most every half minute and at once
//! after this server changed something (backups by status, the newest complete backup,
//! verification outcomes: see `crate::figures`), so a scrape costs the same at 10 and at
//! 10,000 backups. A fresh registry is built per scrape, so nothing here has to be kept
//! in sync with the rest of strata.
//!
//! Every figure about the repository or its storage carries a `storage` label (the name
//! in the configuration), so series from coordinators of several storages never mix and
//! need no join with `strata_info`; figures about the cluster (nodes, leases, webhooks)
//! do not.

use crate::figures::Figures;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use strata_coordinator::coordinator::{Coordinator, OperationStats};
use strata_store::CountingStore;

/// A metric's labels, in order (`storage`, then `kind`, `status`, ...).
type Label = Vec<(String, String)>;

type FloatGauge = Gauge<f64, AtomicU64>;

fn family<M>(registry: &mut Registry, name: &str, help: &str) -> Family<Label, M>
where
    M: Default
        + prometheus_client::metrics::TypedMetric
        + prometheus_client::encoding::EncodeMetric
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let family = Family::<Label, M>::default();
    registry.register(name, help, family.clone());
    family
}

fn labels(pairs: &[(&str, &str)]) -> Label {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// The figures about one storage: every series carries `storage="<name>"`, so a
/// coordinator per storage (or a dashboard over several) keeps them apart.
struct PerStorage<'a> {
    registry: &'a mut Registry,
    storage: String,
}

impl PerStorage<'_> {
    fn labels(&self, more: &[(&str, &str)]) -> Label {
        let mut all = labels(&[("storage", &self.storage)]);
        all.extend(labels(more));
        all
    }

    fn gauge(&mut self, name: &str, help: &str, more: &[(&str, &str)], value: f64) {
        let label = self.labels(more);
        family::<FloatGauge>(self.registry, name, help)
            .get_or_create(&label)
            .set(value);
    }

    fn gauges(&mut self, name: &str, help: &str, label: &str, values: &[(&str, f64)]) {
        let family = family::<FloatGauge>(self.registry, name, help);
        for (value_label, value) in values {
            family
                .get_or_create(&self.labels(&[(label, value_label)]))
                .set(*value);
        }
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        let label = self.labels(&[]);
        family::<Counter>(self.registry, name, help)
            .get_or_create(&label)
            .inc_by(value);
    }

    fn counters(&mut self, name: &str, help: &str, label: &str, values: &[(&str, u64)]) {
        let family = family::<Counter>(self.registry, name, help);
        for (value_label, value) in values {
            family
                .get_or_create(&self.labels(&[(label, value_label)]))
                .inc_by(*value);
        }
    }
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<Arc<crate::api_state::ApiState>>) -> impl IntoResponse {
    let c: &Coordinator = &state.coordinator;
    let mut registry = Registry::with_prefix("strata");

    let stats = c.stats();
    cluster_figures(&mut registry, c, &stats).await;

    // Of the storage: its operations, backups, repository and requests. A storage that
    // does not answer drops only the figures read from it (and says so in `storage_up`):
    // the rest, node reachability and request errors above all, matter most right then.
    // From the listing, kept between scrapes (see `crate::figures`): never a scan. A
    // summary that does not decode is counted as `damaged`, not a storage failure.
    let read = state.figures.get(c.repo(), state.generation()).await;
    let mut m = PerStorage {
        registry: &mut registry,
        storage: c.storage().to_string(),
    };
    m.gauge(
        "storage_up",
        "Whether the repository's storage answered this scrape (one GET of its config)",
        &[],
        read.is_ok() as u8 as f64,
    );
    if let Err(e) = &read {
        eprintln!(
            "strata: warning: metrics: cannot read the backups of storage {}: {}",
            c.storage(),
            strata_coordinator::error_chain(e)
        );
    }

    operation_figures(&mut m, &stats);

    m.gauge(
        "repository_blobs",
        "Blobs in the repository's index as this server last loaded it",
        &[],
        c.repo().index().len() as f64,
    );
    if let Ok(figures) = &read {
        backup_figures(&mut m, figures);
    }
    if let Some(counter) = c.requests() {
        store_figures(&mut m, counter);
    }

    wal_archiver(&mut m, &state.config).await;

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .expect("writing to a String cannot fail");
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}

/// The figures of the cluster and this server, whatever the storage: what strata is,
/// webhook deliveries, lease losses, failed resumes, and which nodes answer.
async fn cluster_figures(registry: &mut Registry, c: &Coordinator, stats: &OperationStats) {
    // Which storage and repository these figures are about, and strata's version.
    let info: Family<Label, Gauge> = family(
        registry,
        "info",
        "Always 1: the storage this coordinator writes to, its repository and strata's version",
    );
    info.get_or_create(&labels(&[
        ("storage", c.storage()),
        ("repository", &c.repo().config().id),
        ("version", env!("CARGO_PKG_VERSION")),
    ]))
    .set(1);

    // Of the cluster and this server, whatever the storage.
    let hooks = c.events().webhooks().stats();
    let deliveries: Family<Label, Counter> = family(
        registry,
        "webhook_deliveries",
        "Webhook events by outcome: delivered, failed (after every retry), retried (attempts)",
    );
    for (outcome, n) in [
        ("delivered", hooks.delivered),
        ("failed", hooks.failed),
        ("retried", hooks.retried),
    ] {
        deliveries
            .get_or_create(&labels(&[("outcome", outcome)]))
            .inc_by(n);
    }
    let losses: Counter = Counter::default();
    losses.inc_by(stats.lease_losses);
    registry.register(
        "lease_losses",
        "Node leases a running operation could not renew",
        losses,
    );
    let resumes: Counter = Counter::default();
    resumes.inc_by(stats.resume_failures);
    registry.register(
        "hook_resume_failures",
        "Resumes of pause hooks that still failed after their retries (something is left paused: see `strata status`)",
        resumes,
    );
    let up: Family<Label, Gauge> = family(
        registry,
        "node_up",
        "Whether the node's agent answered within two seconds",
    );
    // Every node at once, so a scrape takes at most one timeout however many are down.
    let answers = futures_util::future::join_all(c.nodes().iter().map(|node| async move {
        tokio::time::timeout(Duration::from_secs(2), node.metadata())
            .await
            .is_ok_and(|r| r.is_ok())
    }))
    .await;
    for (node, reachable) in c.nodes().iter().zip(answers) {
        up.get_or_create(&labels(&[("node", node.name())]))
            .set(reachable as i64);
    }
}

/// The operations this server finished: counts, durations, what gc freed, failed
/// verifications.
fn operation_figures(m: &mut PerStorage<'_>, stats: &OperationStats) {
    let operations: Family<Label, Counter> = family(
        m.registry,
        "operations",
        "Finished operations (backup, restore, verify, cleanup, gc) by kind and outcome since the server started",
    );
    for ((kind, outcome), count) in &stats.finished {
        operations
            .get_or_create(&m.labels(&[("kind", kind), ("outcome", outcome)]))
            .inc_by(*count);
    }
    let components: Family<Label, Counter> = family(
        m.registry,
        "backup_components",
        "Components of the backups recorded since the server started, by component and status (complete, partial, failed, absent)",
    );
    for ((component, status), count) in &stats.components {
        components
            .get_or_create(&m.labels(&[("component", component), ("status", status)]))
            .inc_by(*count);
    }
    let durations: Vec<(&str, f64)> = stats
        .last_duration_secs
        .iter()
        .map(|(kind, secs)| (kind.as_str(), *secs))
        .collect();
    m.gauges(
        "last_operation_duration_seconds",
        "Duration of the last finished operation of each kind",
        "kind",
        &durations,
    );
    let spent = family::<Counter<f64, AtomicU64>>(
        m.registry,
        "operation_duration_seconds",
        "Seconds finished operations of each kind took together since the server started (with strata_operations_total, the mean duration over any window)",
    );
    for (kind, secs) in &stats.total_duration_secs {
        spent
            .get_or_create(&m.labels(&[("kind", kind)]))
            .inc_by(*secs);
    }
    m.counter(
        "gc_freed_bytes",
        "Bytes garbage collections run by this server (API, schedules) deleted",
        stats.gc_freed_bytes,
    );
    m.counter(
        "verify_failures",
        "Verifications run by this server that found problems or could not finish",
        stats.verify_failures,
    );
}

/// The backups in the repository, from the listing: by status, the newest complete
/// one, and by the outcome of their last verification.
fn backup_figures(m: &mut PerStorage<'_>, figures: &Figures) {
    let mut by_status: Vec<(&str, f64)> = ["complete", "partial", "failed"]
        .into_iter()
        .map(|status| {
            let n = figures.by_status.get(status).copied().unwrap_or(0);
            (status, n as f64)
        })
        .collect();
    by_status.push(("damaged", figures.damaged as f64));
    m.gauges(
        "backups",
        "Backups in the repository by status",
        "status",
        &by_status,
    );
    if let Some(last) = &figures.last_complete {
        let started = chrono::DateTime::parse_from_rfc3339(&last.started)
            .map(|t| t.timestamp_millis() as f64 / 1000.0)
            .unwrap_or(0.0);
        m.gauge(
            "last_complete_backup_timestamp_seconds",
            "Start of the newest complete backup (alert when it is too old)",
            &[],
            started,
        );
        let logical = last.total(|n| n.bytes);
        let stored = last.total(|n| n.stored_bytes);
        let new = last.total(|n| n.new_bytes);
        m.gauges(
            "last_complete_backup_bytes",
            "Bytes of the newest complete backup: logical, stored, new",
            "kind",
            &[
                ("logical", logical as f64),
                ("stored", stored as f64),
                ("new", new as f64),
            ],
        );
        m.gauge(
            "last_complete_backup_files",
            "Files in the newest complete backup",
            &[],
            last.total(|n| n.files) as f64,
        );
        m.gauge(
            "last_complete_backup_files_read",
            "Files of the newest complete backup whose content was read (the others were unchanged, known from the files cache)",
            &[],
            last.total(|n| n.files_read) as f64,
        );
        m.gauge(
            "last_complete_backup_duration_seconds",
            "How long the newest complete backup took",
            &[],
            last.duration_ms as f64 / 1000.0,
        );
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        m.gauge(
            "last_complete_backup_dedup_ratio",
            "Logical bytes of the newest complete backup per byte it added to the repository",
            &[],
            ratio(logical, new),
        );
        m.gauge(
            "last_complete_backup_compression_ratio",
            "Logical bytes of the newest complete backup per byte its unique data takes stored",
            &[],
            ratio(logical, stored),
        );
    }
    let (ok, damaged) = (figures.verified_ok, figures.verified_damaged);
    m.gauges(
        "backups_verified",
        "Backups by the outcome of their last verification: ok, damaged, never",
        "outcome",
        &[
            ("ok", ok as f64),
            ("damaged", damaged as f64),
            ("never", (figures.listed - ok - damaged) as f64),
        ],
    );
}

/// The requests this server made to the repository's storage, its bytes and errors.
fn store_figures(m: &mut PerStorage<'_>, counter: &CountingStore) {
    let counts = counter.counts();
    m.counters(
        "store_requests",
        "Requests this server made to the repository's storage",
        "kind",
        &[
            ("put", counts.put),
            ("get", counts.get),
            ("list", counts.list),
            ("delete", counts.delete),
        ],
    );
    m.counters(
        "store_bytes",
        "Bytes this server sent to and received from the storage",
        "direction",
        &[
            ("sent", counts.bytes_sent),
            ("received", counts.bytes_received),
        ],
    );
    let errors = counter.errors();
    m.counters(
        "store_errors",
        "Requests to the repository's storage that failed (not found is not a failure)",
        "kind",
        &[
            ("put", errors.put),
            ("get", errors.get),
            ("list", errors.list),
            ("delete", errors.delete),
        ],
    );
}

/// The local WAL archiver's counters (`strata wal archiver` on this host, at
/// `postgres.archiver_socket`), asked over its socket with a one-second limit, never a
/// repository read; and the archive lag, read from `pg_wal/archive_status` of the data
/// directories of this host's `[nodes.postgres]` whether an archiver answers or not (it
/// matters most when none does). Without such a node, the archiver's own reading of the
/// lag; without either, no lag.
async fn wal_archiver(m: &mut PerStorage<'_>, config: &strata_coordinator::config::Config) {
    use strata_wal::archiver;
    let socket = archiver::socket_path(config);
    let status = if socket.exists() {
        archiver::client::status(&socket, Duration::from_secs(1))
            .await
            .ok()
            .flatten()
    } else {
        None
    };
    m.gauge(
        "wal_archiver_up",
        "Whether a local WAL archiver (strata wal archiver) answered this scrape",
        &[],
        status.is_some() as u8 as f64,
    );
    m.counter(
        "wal_dropped",
        "WAL segments wal-push acknowledged WITHOUT archiving them (postgres.wal_queue_max_mib): gaps in the archive",
        strata_wal::queue::drops(&config.state_dir()).count,
    );
    let lag = match archiver::local_ready_lag(config) {
        Ok(lag) => lag,
        Err(why) => {
            eprintln!("strata: warning: metrics: the WAL archive lag: {why}");
            None
        }
    };
    let lag = lag.or(status
        .as_ref()
        .map(|s| (s.ready_segments, s.oldest_ready_secs)));
    if let Some((ready, oldest)) = lag {
        m.gauge(
            "wal_archive_ready_segments",
            "Segments PostgreSQL has marked ready and not archived yet: the archive lag in segments",
            &[],
            ready as f64,
        );
        m.gauge(
            "wal_archive_oldest_ready_seconds",
            "Age of the oldest segment waiting to be archived: the archive lag in seconds",
            &[],
            oldest as f64,
        );
    }
    let Some(status) = status else {
        return;
    };
    m.counter(
        "wal_archived_files",
        "WAL files the local archiver stored since it started",
        status.archived_files,
    );
    m.counter(
        "wal_archived_bytes",
        "Bytes of the WAL files the local archiver stored since it started",
        status.archived_bytes,
    );
    m.counter(
        "wal_archive_failures",
        "Batches of the local archiver that failed (their pushes were refused; PostgreSQL retries)",
        status.failures,
    );
    m.gauge(
        "wal_archiver_queued",
        "Pushes waiting in the local archiver's queue",
        &[],
        status.queued as f64,
    );
    if let Some(at) = status.last_archived_at.as_deref() {
        let at = chrono::DateTime::parse_from_rfc3339(at)
            .map(|t| t.timestamp() as f64)
            .unwrap_or(0.0);
        m.gauge(
            "wal_last_archived_timestamp_seconds",
            "When the local archiver last stored a WAL file",
            &[],
            at,
        );
    }
}
