//! `/metrics`: the coordinator's state in the OpenMetrics text format, for Prometheus.
//!
//! Values are read at scrape time (backups by status, the newest complete backup, node
//! reachability, verification records, storage requests) or kept by the coordinator since
//! it started (operations by kind and outcome, lease losses). A fresh registry is built
//! per scrape, so nothing here has to be kept in sync with the rest of strata.

use crate::ApiFailure;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use strata_agent::api::{ApiError, ErrorCode};
use strata_coordinator::cluster::Coordinator;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindOutcome {
    kind: String,
    outcome: String,
}

/// One label, named per metric (`status`, `kind`, `node`, ...).
type Label = Vec<(String, String)>;

type FloatGauge = Gauge<f64, AtomicU64>;

fn family<L, M>(registry: &mut Registry, name: &str, help: &str) -> Family<L, M>
where
    L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
    M: Default
        + prometheus_client::metrics::TypedMetric
        + prometheus_client::encoding::EncodeMetric
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let family = Family::<L, M>::default();
    registry.register(name, help, family.clone());
    family
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: f64) {
    let gauge = FloatGauge::default();
    gauge.set(value);
    registry.register(name, help, gauge);
}

fn label(name: &str, value: &str) -> Label {
    vec![(name.to_string(), value.to_string())]
}

/// `GET /metrics`.
pub async fn metrics(
    State(state): State<Arc<crate::coordinator_api::ApiState>>,
) -> Result<impl IntoResponse, ApiFailure> {
    let c: &Coordinator = &state.coordinator;
    let failed = |e: &dyn std::error::Error| {
        ApiFailure(ApiError::new(
            ErrorCode::Failed,
            strata_coordinator::backup::error_chain(e),
        ))
    };
    let mut registry = Registry::with_prefix("strata");

    // Which cluster and storage these figures are about, as labels a dashboard can join on.
    let info: Family<Vec<(String, String)>, Gauge> = family(
        &mut registry,
        "info",
        "Always 1: the storage this coordinator writes to, its repository and strata's version",
    );
    info.get_or_create(&vec![
        ("storage".to_string(), c.storage().to_string()),
        ("repository".to_string(), c.repo().config().id.clone()),
        ("version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
    ])
    .set(1);

    let stats = c.stats();
    let operations: Family<KindOutcome, Counter> = family(
        &mut registry,
        "operations",
        "Finished cluster operations by kind and outcome since the server started",
    );
    for ((kind, outcome), count) in &stats.finished {
        operations
            .get_or_create(&KindOutcome {
                kind: kind.clone(),
                outcome: outcome.clone(),
            })
            .inc_by(*count);
    }
    let durations: Family<Label, FloatGauge> = family(
        &mut registry,
        "last_operation_duration_seconds",
        "Duration of the last finished operation of each kind",
    );
    for (kind, secs) in &stats.last_duration_secs {
        durations.get_or_create(&label("kind", kind)).set(*secs);
    }
    let freed: Counter = Counter::default();
    freed.inc_by(stats.gc_freed_bytes);
    registry.register(
        "gc_freed_bytes",
        "Bytes garbage collections run by this server (API, schedules) deleted",
        freed,
    );
    let verify_failures: Counter = Counter::default();
    verify_failures.inc_by(stats.verify_failures);
    registry.register(
        "verify_failures",
        "Verifications run by this server that found problems",
        verify_failures,
    );
    let hooks = c.events().webhooks().stats();
    let deliveries: Family<Label, Counter> = family(
        &mut registry,
        "webhook_deliveries",
        "Webhook events by outcome: delivered, failed (after every retry), retried (attempts)",
    );
    for (outcome, n) in [
        ("delivered", hooks.delivered),
        ("failed", hooks.failed),
        ("retried", hooks.retried),
    ] {
        deliveries
            .get_or_create(&label("outcome", outcome))
            .inc_by(n);
    }
    let losses: Counter = Counter::default();
    losses.inc_by(stats.lease_losses);
    registry.register(
        "lease_losses",
        "Node leases a running operation could not renew",
        losses,
    );

    let backups = c.repo().list_backups().await.map_err(|e| failed(&e))?;
    let by_status: Family<Label, Gauge> = family(
        &mut registry,
        "backups",
        "Backups in the repository by status",
    );
    for status in ["complete", "partial", "failed"] {
        let n = backups
            .iter()
            .filter(|b| b.status.as_str() == status)
            .count();
        by_status
            .get_or_create(&label("status", status))
            .set(n as i64);
    }
    if let Some(last) = backups.iter().rev().find(|b| b.is_complete()) {
        let started = chrono::DateTime::parse_from_rfc3339(&last.started)
            .map(|t| t.timestamp_millis() as f64 / 1000.0)
            .unwrap_or(0.0);
        gauge(
            &mut registry,
            "last_complete_backup_timestamp_seconds",
            "Start of the newest complete backup (alert when it is too old)",
            started,
        );
        let bytes: Family<Label, Gauge> = family(
            &mut registry,
            "last_complete_backup_bytes",
            "Bytes of the newest complete backup: logical, stored, new",
        );
        for (kind, value) in [
            ("logical", last.total(|n| n.bytes)),
            ("stored", last.total(|n| n.stored_bytes)),
            ("new", last.total(|n| n.new_bytes)),
        ] {
            bytes.get_or_create(&label("kind", kind)).set(value as i64);
        }
        gauge(
            &mut registry,
            "last_complete_backup_files",
            "Files in the newest complete backup",
            last.total(|n| n.files) as f64,
        );
        gauge(
            &mut registry,
            "last_complete_backup_duration_seconds",
            "How long the newest complete backup took",
            last.duration_ms as f64 / 1000.0,
        );
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        gauge(
            &mut registry,
            "last_complete_backup_dedup_ratio",
            "Logical bytes of the newest complete backup per byte it added to the repository",
            ratio(last.total(|n| n.bytes), last.total(|n| n.new_bytes)),
        );
        gauge(
            &mut registry,
            "last_complete_backup_compression_ratio",
            "Logical bytes of the newest complete backup per byte its unique data takes stored",
            ratio(last.total(|n| n.bytes), last.total(|n| n.stored_bytes)),
        );
    }

    let blobs = c.repo().index().len();
    gauge(
        &mut registry,
        "repository_blobs",
        "Blobs in the repository's index as this server last loaded it",
        blobs as f64,
    );

    let records = strata_coordinator::verify_record::latest(c.repo())
        .await
        .map_err(|e| failed(&e))?;
    let verified: Family<Label, Gauge> = family(
        &mut registry,
        "backups_verified",
        "Backups by the outcome of their last verification: ok, damaged, never",
    );
    let ok = backups
        .iter()
        .filter(|b| records.get(&b.name).is_some_and(|r| r.ok))
        .count();
    let damaged = backups
        .iter()
        .filter(|b| records.get(&b.name).is_some_and(|r| !r.ok))
        .count();
    for (outcome, n) in [
        ("ok", ok),
        ("damaged", damaged),
        ("never", backups.len() - ok - damaged),
    ] {
        verified
            .get_or_create(&label("outcome", outcome))
            .set(n as i64);
    }

    let up: Family<Label, Gauge> = family(
        &mut registry,
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
        up.get_or_create(&label("node", node.name()))
            .set(reachable as i64);
    }

    if let Some(counter) = c.requests() {
        let counts = counter.counts();
        let requests: Family<Label, Counter> = family(
            &mut registry,
            "store_requests",
            "Requests this server made to the repository's storage",
        );
        for (kind, n) in [
            ("put", counts.put),
            ("get", counts.get),
            ("list", counts.list),
            ("delete", counts.delete),
        ] {
            requests.get_or_create(&label("kind", kind)).inc_by(n);
        }
        let bytes: Family<Label, Counter> = family(
            &mut registry,
            "store_bytes",
            "Bytes this server sent to and received from the storage",
        );
        bytes
            .get_or_create(&label("direction", "sent"))
            .inc_by(counts.bytes_sent);
        bytes
            .get_or_create(&label("direction", "received"))
            .inc_by(counts.bytes_received);
        let errors = counter.errors();
        let failed: Family<Label, Counter> = family(
            &mut registry,
            "store_errors",
            "Requests to the repository's storage that failed (not found is not a failure)",
        );
        for (kind, n) in [
            ("put", errors.put),
            ("get", errors.get),
            ("list", errors.list),
            ("delete", errors.delete),
        ] {
            failed.get_or_create(&label("kind", kind)).inc_by(n);
        }
    }

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .expect("writing to a String cannot fail");
    Ok((
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    ))
}
