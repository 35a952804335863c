//! `strata server`: one port, two APIs.
//!
//! `/node/v1/...` is the node agent (a coordinator drives this host's backups and
//! restores through it); `/api/v1/...` is the coordinator (users start backups and
//! restores of the whole cluster, follow them, list and delete backups). Each API has its
//! own bearer token; a request without the right one is answered 401 before anything
//! runs. TLS is rustls when a certificate and key are configured.
//!
//! Layout: [`compose`] builds the server from its configuration (this host's agent, the
//! coordinator, the scheduler) and serves; `serve` and `limits` (plain or TLS, bounded
//! connections, requests and bodies) and `timeouts`; `auth` (the tokens and their roles);
//! `node_api` (`/node/v1`), `coordinator_api`, `tables_api` and `scheduled` (`/api/v1`),
//! with `extract`, `queries`, `page_bodies` and `errors` for what a request says and what
//! an answer looks like; `openapi` (the document), `dashboard`, `metrics` and `figures`
//! (Prometheus), `check` (`/ready`), [`tables_run`]. The whole server runs in strata's
//! own tests against the real binary (`crates/strata/tests/server.rs`).
//!
//! # Example
//!
//! A server with neither API switched on still answers its probes; each API is added by
//! giving [`ServerParts`] this host's agent or the coordinator ([`compose`] does, from
//! the configuration):
//!
//! ```
//! use std::sync::Arc;
//! use strata_server::{router, serve, Limits, ServerParts};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let parts = ServerParts {
//!     agent: None,
//!     coordinator: None,
//!     readiness: Arc::new(strata_health::AlwaysReady),
//! };
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let address = listener.local_addr()?;
//! tokio::spawn(serve(listener, router(parts), None, Limits::default()));
//!
//! let mut client = tokio::net::TcpStream::connect(address).await?;
//! client
//!     .write_all(b"GET /health HTTP/1.1\r\nHost: strata\r\nConnection: close\r\n\r\n")
//!     .await?;
//! let mut answer = String::new();
//! client.read_to_string(&mut answer).await?;
//! assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
//! assert!(answer.contains(r#""status":"ok""#), "{answer}");
//! // The coordinator's API is not switched on: its routes answer 404, in JSON.
//! let mut client = tokio::net::TcpStream::connect(address).await?;
//! client
//!     .write_all(b"GET /api/v1/backups HTTP/1.1\r\nHost: strata\r\nConnection: close\r\n\r\n")
//!     .await?;
//! let mut answer = String::new();
//! client.read_to_string(&mut answer).await?;
//! assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod api_state;
mod auth;
mod check;
pub mod compose;
mod coordinator_api;
mod dashboard;
mod errors;
mod extract;
mod figures;
mod limits;
mod metrics;
mod node_api;
mod openapi;
mod page_bodies;
mod queries;
mod scheduled;
mod serve;
mod tables_api;
pub mod tables_run;
mod timeouts;

pub use auth::Tokens;
pub use check::ServerReadiness;
pub use coordinator_api::ApiDoc;
pub use limits::Limits;
pub use serve::{serve, TlsFiles};

use axum::Json;
pub(crate) use errors::ApiFailure;
use std::sync::Arc;
use strata_agent::service::Agent;
use strata_cluster::node_api::ApiError;
use strata_coordinator::coordinator::Coordinator;

/// What a server serves. An API whose part is `None` is not served (404).
pub struct ServerParts {
    /// This host's node agent and the token coordinators present.
    pub agent: Option<(Arc<Agent>, String)>,
    /// The coordinator, the tokens users present, and the configuration it runs with.
    pub coordinator: Option<CoordinatorParts>,
    /// What `/ready` checks (`/health` and `/ready` are served whatever else is).
    pub readiness: Arc<dyn strata_health::Readiness>,
}

/// What the coordinator API serves.
pub struct CoordinatorParts {
    /// The cluster's coordinator, which every `/api/v1` route drives.
    pub coordinator: Arc<Coordinator>,
    /// User tokens by name (the audit log records the name).
    pub tokens: Tokens,
    /// The coordinator's scheduler, for `/api/v1/schedules`.
    pub scheduler: Option<Arc<strata_coordinator::schedule::Scheduler>>,
    /// The server's configuration: retention policy, `/api/v1/check`.
    pub config: strata_coordinator::config::Config,
    /// What `/api/v1/config` shows: the whole file, secrets masked. The application
    /// layer composes it, since sections other crates own (`[tables]`, `[pgq]`) are not
    /// in `config`.
    pub config_view: serde_json::Value,
    /// `[tables]`: the database `/api/v1/tables` works on (`db`; none: those routes
    /// answer 404).
    pub tables: strata_tables::config::TablesConfig,
}

/// The routes of a server with `parts`.
pub fn router(parts: ServerParts) -> axum::Router {
    // Outside the token layers: probes carry no token and are not rate limited.
    let mut router = strata_health::routes("strata server", parts.readiness);
    if let Some((agent, token)) = parts.agent {
        router = router.merge(node_api::routes(agent, token));
    }
    if let Some(parts) = parts.coordinator {
        let state = coordinator_api::ApiState {
            coordinator: parts.coordinator,
            scheduler: parts.scheduler,
            config: parts.config,
            config_view: parts.config_view,
            catalog: tokio::sync::OnceCell::new(),
            figures: Default::default(),
            listing: Default::default(),
            page_bodies: Default::default(),
            writes: Default::default(),
        };
        router = router.merge(coordinator_api::routes(state, parts.tables, parts.tokens));
        router = router.merge(openapi::routes());
        router = router.merge(dashboard::routes());
    }
    // On every route of every API, before its token check and handler: a query parameter
    // the route does not take is a 400 naming it, never a request run without it.
    router
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::new(queries::QueryRules::from_openapi(
                &<ApiDoc as utoipa::OpenApi>::openapi(),
            )),
            queries::refuse_unknown,
        ))
        .fallback(|| async {
            ApiFailure(ApiError::new(
                strata_cluster::node_api::ErrorCode::NotFound,
                "no such endpoint on this server (is its agent or coordinator API switched on?)",
            ))
        })
        .method_not_allowed_fallback(errors::method_not_allowed)
        // Last, around everything: what axum or a layer answers itself is JSON too.
        .layer(axum::middleware::map_response(errors::json_errors))
}

/// Result of a handler.
pub(crate) type Reply<T> = Result<Json<T>, ApiFailure>;
