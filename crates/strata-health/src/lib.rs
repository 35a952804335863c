//! `GET /health` and `GET /ready`: one router every long-running strata process mounts
//! (`strata server`, the PgQ ticker, the Londiste worker), so probes, units and compose
//! files ask every process the same way.
//!
//! - `/health`: the process serves requests. Always 200 while it does; nothing is
//!   checked, so a slow storage never gets a healthy process restarted.
//! - `/ready`: the process can do its work: the [`Readiness`] checks it was given (for
//!   `strata server`, the checks of `GET /api/v1/check`: storages reachable, password
//!   source present, nodes answering). 200 when every check passed, else 503; the body
//!   says what is wrong, and never a secret (the checks name sources, not values).
//!
//! Both answer without a token and outside any rate limit on unauthenticated requests,
//! since probes carry none. Because `/ready` makes requests to storages and nodes, its
//! result is kept for [`READY_TTL`] and computed by one caller at a time: a flood of
//! probes costs at most one round of checks per interval, not one per request.
//!
//! ```
//! use strata_health::{health_answer, ready_answer, Check};
//!
//! // `/health` answers 200 while the process serves; `/ready` 503 with what is wrong.
//! assert_eq!(health_answer("strata-pgq-ticker").0, 200);
//! let (status, body) = ready_answer(vec![
//!     Check::new("database app", true, "ticked 2 s ago"),
//!     Check::new("database audit", false, "connection refused: is PostgreSQL running?"),
//! ]);
//! assert_eq!(status, 503);
//! assert!(body.contains("connection refused"));
//! ```
//!
//! Layout: this file holds the reports and answers; `routes` (feature `axum`) the router
//! every server mounts, with the cached `/ready`; [`notify`] what a `Type=notify` unit
//! hears (READY=1, STOPPING=1, watchdog pings); `probe` (feature `probe`) `strata probe`,
//! the client of both endpoints.

#![deny(missing_docs)]

pub mod notify;
#[cfg(feature = "probe")]
pub mod probe;

#[cfg(feature = "axum")]
pub use routes::{routes, AlwaysReady, Readiness};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long a `/ready` result is served before the checks run again.
pub const READY_TTL: Duration = Duration::from_secs(5);

/// One check of readiness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Check {
    /// What was checked: `storage NAME`, `node NAME`, `password`, `database NAME`, ...
    pub name: String,
    /// Whether it passed; one that did not makes the process not ready.
    pub ok: bool,
    /// What was found, or what is wrong and what to do.
    pub detail: String,
    /// Passed, but something is down that operations work around (an optional
    /// component whose backups record it absent): worth a look, not a failure.
    #[serde(default)]
    pub warning: bool,
}

impl Check {
    /// A check named `name` that passed (`ok`) or not, with what was found.
    pub fn new(name: impl Into<String>, ok: bool, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            ok,
            detail: detail.into(),
            warning: false,
        }
    }

    /// A check named `name` that passed with a warning ([`Check::warning`]).
    pub fn warn(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            warning: true,
            ..Check::new(name, true, detail)
        }
    }
}

/// What `/ready` answers.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReadyReport {
    /// True when every check passed.
    pub ready: bool,
    /// Every check run, passed or not, in the order the process gave them.
    pub checks: Vec<Check>,
}

/// What `/health` answers.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HealthReport {
    /// Always `ok`: the process answered.
    pub status: String,
    /// Which process (`strata server`, `strata pgq ticker`, ...).
    pub process: String,
    /// strata's version.
    pub version: String,
}

impl ReadyReport {
    /// The report of `checks`: ready when every one passed.
    pub fn of(checks: Vec<Check>) -> ReadyReport {
        ReadyReport {
            ready: checks.iter().all(|c| c.ok),
            checks,
        }
    }

    /// The HTTP status of this answer: 200 when ready, else 503.
    pub fn status(&self) -> u16 {
        if self.ready {
            200
        } else {
            503
        }
    }
}

/// The `/ready` answer for `checks` as status and JSON body, for a process whose HTTP
/// server is its own (the PgQ ticker's): the same answer as [`routes`]'s.
pub fn ready_answer(checks: Vec<Check>) -> (u16, String) {
    let report = ReadyReport::of(checks);
    let body = serde_json::to_string(&report).expect("reports serialize");
    (report.status(), body)
}

/// The `/health` answer of `process` as status and JSON body (see [`ready_answer`]).
pub fn health_answer(process: &str) -> (u16, String) {
    let body = serde_json::to_string(&HealthReport::of(process)).expect("reports serialize");
    (200, body)
}

impl HealthReport {
    /// What `/health` says of `process`.
    pub fn of(process: &str) -> HealthReport {
        HealthReport {
            status: "ok".into(),
            process: process.to_string(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

#[cfg(feature = "axum")]
mod routes {
    use super::*;
    use async_trait::async_trait;
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::routing::get;
    use axum::{Json, Router};
    use std::sync::Arc;
    use std::time::Instant;
    use tokio::sync::Mutex;

    /// The checks a process runs to say it is ready.
    #[async_trait]
    pub trait Readiness: Send + Sync {
        /// Every check, each bounded in time by the implementation.
        async fn checks(&self) -> Vec<Check>;
    }

    /// No checks: ready whenever it serves.
    pub struct AlwaysReady;

    #[async_trait]
    impl Readiness for AlwaysReady {
        async fn checks(&self) -> Vec<Check> {
            Vec::new()
        }
    }

    struct Probe {
        process: String,
        readiness: Arc<dyn Readiness>,
        last: Mutex<Option<(Instant, ReadyReport)>>,
    }

    /// The routes `GET /health` and `GET /ready` of `process`, ready when `readiness`' checks
    /// pass. Mount them outside any authentication.
    pub fn routes(process: &str, readiness: Arc<dyn Readiness>) -> Router {
        let probe = Arc::new(Probe {
            process: process.to_string(),
            readiness,
            last: Mutex::new(None),
        });
        Router::new()
            .route("/health", get(health))
            .route("/ready", get(ready))
            .with_state(probe)
    }

    async fn health(State(probe): State<Arc<Probe>>) -> Json<HealthReport> {
        Json(HealthReport::of(&probe.process))
    }

    async fn ready(State(probe): State<Arc<Probe>>) -> (StatusCode, Json<ReadyReport>) {
        // One caller runs the checks; the others wait for its result (the lock is held
        // across the checks on purpose).
        let mut last = probe.last.lock().await;
        let report = match &*last {
            Some((at, report)) if at.elapsed() < READY_TTL => report.clone(),
            _ => {
                let report = ReadyReport::of(probe.readiness.checks().await);
                *last = Some((Instant::now(), report.clone()));
                report
            }
        };
        let status = StatusCode::from_u16(report.status()).expect("200 and 503 are statuses");
        (status, Json(report))
    }
}

#[cfg(all(test, feature = "axum"))]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use axum::body::Body;
    use axum::http::Request;
    use axum::http::StatusCode;
    use axum::Router;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tower::ServiceExt;

    struct Counted {
        runs: AtomicUsize,
        ok: bool,
    }

    #[async_trait]
    impl Readiness for Counted {
        async fn checks(&self) -> Vec<Check> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            vec![Check::new("storage main", self.ok, "no answer within 3s")]
        }
    }

    async fn get(router: &Router, path: &str) -> (StatusCode, serde_json::Value) {
        let response = router
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn health_answers_whatever_the_checks_say() {
        let readiness = Arc::new(Counted {
            runs: AtomicUsize::new(0),
            ok: false,
        });
        let router = routes("strata server", readiness.clone());
        let (status, body) = get(&router, "/health").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "ok");
        assert_eq!(body["process"], "strata server");
        assert_eq!(
            readiness.runs.load(Ordering::SeqCst),
            0,
            "health checks nothing"
        );
        let (status, body) = get(&router, "/ready").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["ready"], false);
        assert_eq!(body["checks"][0]["name"], "storage main");
    }

    #[tokio::test]
    async fn a_flood_of_ready_probes_runs_the_checks_once() {
        let readiness = Arc::new(Counted {
            runs: AtomicUsize::new(0),
            ok: true,
        });
        let router = routes("strata server", readiness.clone());
        let probes: Vec<_> = (0..50)
            .map(|_| {
                let router = router.clone();
                tokio::spawn(async move { get(&router, "/ready").await })
            })
            .collect();
        for probe in probes {
            let (status, body) = probe.await.unwrap();
            assert_eq!(status, StatusCode::OK);
            assert_eq!(body["ready"], true);
        }
        assert_eq!(readiness.runs.load(Ordering::SeqCst), 1);
    }
}
