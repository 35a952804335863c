//! `/api/v1/tables`: table retention policies listed, planned and edited, and their
//! history, on the database of the server's `[tables] db`.
//!
//! Each handler reads the request (strictly: unknown fields and parameters refused,
//! bodies bounded), hands it to the engine (`strata_tables::Engine`, the same use cases
//! `strata tables` runs) and answers what it returns; nothing here plans or writes on its
//! own. An edit is recorded in the tables' audit log with the caller's token name as
//! `who`. The database's DSN (and any password in it) never leaves the server: errors name
//! the server as `host:port as user`. A server without `[tables] db` answers 404.

use crate::auth::Caller;
use crate::extract::{Body, Params, PathParam};
use crate::{ApiFailure, Reply};
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, patch};
use axum::{Extension, Json, Router};
use std::sync::Arc;
use strata_agent::api::{ApiError, ErrorCode};
use strata_api::types::tables::{
    TableEditQuery, TableHistoryQuery, TablePolicyEdit, TablePolicyQuery,
};
use strata_tables::config::TablesConfig;
use strata_tables::history::HistoryEntry;
use strata_tables::{EditOutcome, Engine, Policy, TableOutlook, TablesError};

/// The largest edit body taken: an edit is a few short values (see
/// `strata_tables::policy_args::MAX_VALUE_BYTES`); anything near this is not one.
pub const EDIT_BODY_LIMIT: usize = 64 << 10;

type Tables = State<Arc<TablesConfig>>;

/// The routes, behind the coordinator's user tokens (the caller adds the layer).
pub fn routes(config: TablesConfig) -> Router {
    Router::new()
        .route("/api/v1/tables/policies", get(policies))
        .route("/api/v1/tables/policies/{id}", patch(edit))
        .route("/api/v1/tables/plan", get(plan))
        .route("/api/v1/tables/history", get(history))
        .layer(DefaultBodyLimit::max(EDIT_BODY_LIMIT))
        .with_state(Arc::new(config))
}

/// An engine error with the API code that fits it: no such policy 404, bad input (a name,
/// a duration, policy tables not set up) 400, the rest (the database unreachable or
/// failing) 500.
fn failure(err: TablesError) -> ApiFailure {
    let code = match &err {
        TablesError::NoSuchPolicy(_) => ErrorCode::NotFound,
        err if err.is_bad_input() => ErrorCode::BadRequest,
        _ => ErrorCode::Failed,
    };
    ApiFailure(ApiError::new(code, strata_coordinator::error_chain(&err)))
}

/// A policy id from a path: a positive number.
fn policy_id(text: &str) -> Result<i64, ApiFailure> {
    match text.parse::<i64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(crate::extract::bad(format!(
            "bad path: {text:?} is not a policy id (a number from `GET /api/v1/tables/policies`)"
        ))),
    }
}

/// The engine on `[tables] db`, recording `who` in the audit log.
async fn engine(config: &TablesConfig, who: &Caller) -> Result<Engine, ApiFailure> {
    if config.db.is_none() {
        return Err(ApiFailure(ApiError::new(
            ErrorCode::NotFound,
            "this server has no [tables] db: the tables API needs the database of the policies in the server's configuration",
        )));
    }
    Engine::open(config, Some(who.0.clone()))
        .await
        .map_err(failure)
}

#[utoipa::path(get, path = "/api/v1/tables/policies", tag = "tables", params(TablePolicyQuery),
    responses((status = 200, description = "The table retention policies the query picks, by id: table, time column, action and its options, duration (`after`), tags, `keep`, `enabled`, who created it and when (`strata tables list`)", body = [Policy]),
        (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 404, description = "The server has no `[tables] db`", body = ApiError), (status = 500, body = ApiError)))]
pub(crate) async fn policies(
    State(config): Tables,
    Extension(caller): Extension<Caller>,
    Params(query): Params<TablePolicyQuery>,
) -> Reply<Vec<Policy>> {
    let filter = query.filter().map_err(failure)?;
    let engine = engine(&config, &caller).await?;
    Ok(Json(engine.policies(&filter).await.map_err(failure)?))
}

#[utoipa::path(get, path = "/api/v1/tables/plan", tag = "tables", params(TablePolicyQuery),
    responses((status = 200, description = "Per table of the policies the query picks: `plan`, what a run now would do (`steps` with the partition, its bound and size; `kept` partitions and why; `notes`; `problems`), and `next`, the partitions that expire next for each policy with `at`, when (`strata tables plan`); `error` when the table could not be planned", body = [TableOutlook]),
        (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 404, description = "The server has no `[tables] db`", body = ApiError), (status = 500, body = ApiError)))]
pub(crate) async fn plan(
    State(config): Tables,
    Extension(caller): Extension<Caller>,
    Params(query): Params<TablePolicyQuery>,
) -> Reply<Vec<TableOutlook>> {
    let filter = query.filter().map_err(failure)?;
    let engine = engine(&config, &caller).await?;
    let now = strata_tables::chrono::Utc::now();
    Ok(Json(engine.outlook(&filter, now).await.map_err(failure)?))
}

#[utoipa::path(get, path = "/api/v1/tables/history", tag = "tables", params(TableHistoryQuery),
    responses((status = 200, description = "Runs, their steps and policy changes, newest first: `id`, `at`, `who`, `what`, `table`, `policy_id`, `run_id`, `outcome`, `partitions`, `detail` (`strata tables history`)", body = [HistoryEntry]),
        (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 404, description = "The server has no `[tables] db`", body = ApiError), (status = 500, body = ApiError)))]
pub(crate) async fn history(
    State(config): Tables,
    Extension(caller): Extension<Caller>,
    Params(query): Params<TableHistoryQuery>,
) -> Reply<Vec<HistoryEntry>> {
    let filter = query.filter().map_err(failure)?;
    let engine = engine(&config, &caller).await?;
    Ok(Json(engine.history(&filter).await.map_err(failure)?))
}

#[utoipa::path(patch, path = "/api/v1/tables/policies/{id}", tag = "tables", request_body = TablePolicyEdit,
    params(("id" = i64, Path, minimum = 1, description = "The policy's id"), TableEditQuery),
    responses((status = 200, description = "`saved` (false with `dry_run`: nothing written), the policy `before` and after the edit (`policy`), and its table's `outlook` with the edited policy (as `GET /api/v1/tables/plan`). A saved edit is in the tables' audit log as `policy edit`, `who` the caller's token (`token:NAME`)", body = EditOutcome),
        (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 403, description = "The token may only read", body = ApiError),
        (status = 404, description = "No such policy, or the server has no `[tables] db`", body = ApiError),
        (status = 413, body = ApiError), (status = 500, body = ApiError)))]
pub(crate) async fn edit(
    State(config): Tables,
    Extension(caller): Extension<Caller>,
    PathParam(id): PathParam<String>,
    Params(query): Params<TableEditQuery>,
    Body(body): Body<TablePolicyEdit>,
) -> Reply<EditOutcome> {
    // Read before the database is even asked: bad input is refused the same with or
    // without one. The body first, so a body's mistake is named whatever the path.
    let edit = body.into_args().edit().map_err(failure)?;
    let id = policy_id(&id)?;
    let engine = engine(&config, &caller).await?;
    let outcome = if query.dry_run == Some(true) {
        engine.preview_edit(id, &edit).await
    } else {
        engine.save_edit(id, &edit).await
    };
    Ok(Json(outcome.map_err(failure)?))
}
