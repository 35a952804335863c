//! `/api/v1`: the coordinator over HTTP. Backups and restores start in the background
//! (202 with the operation); `/operations/{id}/events` streams the operation's status as
//! server-sent events until it ends.

use crate::auth::require_token;
use crate::{ApiFailure, Reply};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::Stream;
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use strata_agent::api::{ApiError, ErrorCode};
use strata_coordinator::cluster::{ClusterStatus, Coordinator, RestorePlan};
use strata_coordinator::operation::OperationStatus;
use strata_coordinator::schedule::{JobStatus, Scheduler};
use strata_coordinator::CoordinatorError;
use strata_repo::summary::BackupSummary;

type CoordState = State<Arc<Coordinator>>;

/// The coordinator's routes behind the user token.
pub fn routes(
    coordinator: Arc<Coordinator>,
    token: String,
    scheduler: Option<Arc<Scheduler>>,
) -> Router {
    let schedules = Router::new()
        .route("/api/v1/schedules", get(schedules))
        .with_state(scheduler);
    Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/backups", get(list).post(start_backup))
        .route("/api/v1/backups/{name}", get(show).delete(delete))
        .route("/api/v1/restores", post(start_restore))
        .route("/api/v1/operations/{id}", get(operation))
        .route("/api/v1/operations/{id}/events", get(events))
        .route("/metrics", get(crate::metrics::metrics))
        .with_state(coordinator)
        .merge(schedules)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(token),
            require_token,
        ))
}

async fn schedules(State(scheduler): State<Option<Arc<Scheduler>>>) -> Json<Vec<JobStatus>> {
    Json(scheduler.map(|s| s.status()).unwrap_or_default())
}

/// A coordinator error with the API code that fits it.
fn failure(err: CoordinatorError) -> ApiFailure {
    let code = match &err {
        CoordinatorError::Busy(_) => ErrorCode::Busy,
        CoordinatorError::NoBackup(_) | CoordinatorError::NoNode(_) => ErrorCode::NotFound,
        CoordinatorError::NothingToDo(_) | CoordinatorError::Pinned(_) => ErrorCode::BadRequest,
        CoordinatorError::Api(e) => e.code,
        _ => ErrorCode::Failed,
    };
    ApiFailure(ApiError::new(
        code,
        strata_coordinator::backup::error_chain(&err),
    ))
}

/// The reply to a started operation.
#[derive(Debug, Serialize, Deserialize)]
pub struct Started {
    pub operation: OperationStatus,
}

async fn status(State(c): CoordState) -> Reply<ClusterStatus> {
    Ok(Json(c.status().await.map_err(failure)?))
}

async fn list(State(c): CoordState) -> Reply<Vec<BackupSummary>> {
    let backups = c.repo().list_backups().await;
    Ok(Json(backups.map_err(|e| failure(e.into()))?))
}

async fn show(State(c): CoordState, Path(name): Path<String>) -> Reply<BackupSummary> {
    let found = strata_coordinator::resolve_backup(c.repo(), &name).await;
    Ok(Json(found.map_err(failure)?))
}

async fn delete(State(c): CoordState, Path(name): Path<String>) -> Reply<BackupSummary> {
    if name == "latest" {
        return Err(ApiFailure(ApiError::new(
            ErrorCode::BadRequest,
            "name backups to delete explicitly, not `latest`",
        )));
    }
    let found = strata_coordinator::resolve_backup(c.repo(), &name)
        .await
        .map_err(failure)?;
    c.delete_backup(&found.name).await.map_err(failure)?;
    // Then the data no remaining backup uses.
    strata_coordinator::gc::collect_garbage(c.repo(), false)
        .await
        .map_err(failure)?;
    Ok(Json(found))
}

async fn start_backup(State(c): CoordState) -> Result<(StatusCode, Json<Started>), ApiFailure> {
    let op = c.start_backup().await.map_err(failure)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Started {
            operation: op.status(),
        }),
    ))
}

/// `POST /api/v1/restores`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RestoreBody {
    pub backup: String,
    #[serde(flatten)]
    pub plan: RestorePlan,
}

async fn start_restore(
    State(c): CoordState,
    Json(body): Json<RestoreBody>,
) -> Result<(StatusCode, Json<Started>), ApiFailure> {
    let summary =
        strata_coordinator::resolve_backup_for(c.repo(), &body.backup, body.plan.recovery.as_ref())
            .await
            .map_err(failure)?;
    let op = c
        .start_restore(&summary, body.plan)
        .await
        .map_err(failure)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Started {
            operation: op.status(),
        }),
    ))
}

fn find(
    c: &Coordinator,
    id: &str,
) -> Result<Arc<strata_coordinator::operation::Operation>, ApiFailure> {
    c.registry().get(id).ok_or_else(|| {
        ApiFailure(ApiError::new(
            ErrorCode::NotFound,
            format!("no operation {id} on this coordinator"),
        ))
    })
}

async fn operation(State(c): CoordState, Path(id): Path<String>) -> Reply<OperationStatus> {
    Ok(Json(find(&c, &id)?.status()))
}

/// Every change of the operation's status as an SSE `data:` line of JSON; the stream ends
/// after the final status.
async fn events(
    State(c): CoordState,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiFailure> {
    let rx = find(&c, &id)?.subscribe();
    let stream = futures_util::stream::unfold((rx, false), |(mut rx, ended)| async move {
        if ended {
            return None;
        }
        let status = rx.borrow_and_update().clone();
        let done = status.state.is_done();
        let event = Event::default()
            .json_data(&status)
            .expect("statuses serialize");
        if !done {
            // Wait for the next change, but at most a little, so counters keep moving
            // even if the node reports slowly; a closed channel ends the stream.
            let _ = tokio::time::timeout(Duration::from_millis(500), rx.changed()).await;
        }
        Some((Ok(event), (rx, done)))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
