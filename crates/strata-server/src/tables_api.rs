//! `/api/v1/tables`: table retention policies listed, planned, added, edited and
//! removed, runs, and their history, on the database of the server's `[tables] db`.
//!
//! Each handler reads the request (strictly: unknown fields and parameters refused,
//! bodies bounded), hands it to the engine (`strata_tables::Engine`, the same use cases
//! `strata tables` runs) and answers what it returns; nothing here plans or writes on its
//! own. A change or a run is recorded in the tables' audit log with the caller's token
//! name as `who`. The database's DSN (and any password in it) never leaves the server:
//! errors name the server as `host:port as user`. A server without `[tables] db` answers
//! 404.

use crate::auth::Caller;
use crate::extract::{Body, Params, PathParam};
use crate::tables_run::{tables_target, tell_end, RunRequest};
use crate::{ApiFailure, Reply};
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, patch, post};
use axum::{Extension, Json, Router};
use std::sync::Arc;
use strata_api::types::tables::{
    TableAddQuery, TableEditQuery, TableHistoryQuery, TablePolicyEdit, TablePolicyNew,
    TablePolicyQuery, TableRunBody,
};
use strata_cluster::node_api::{ApiError, ErrorCode};
use strata_coordinator::config::Config;
use strata_coordinator::events::{Ending, Events, TablesRunReport};
use strata_coordinator::storage::Storage;
use strata_tables::config::TablesConfig;
use strata_tables::history::HistoryEntry;
use strata_tables::{
    AddOutcome, EditOutcome, Engine, Policy, RunReport, TableOutlook, TablesError,
};

/// The largest edit body taken: an edit is a few short values (see
/// `strata_tables::policy_args::MAX_VALUE_BYTES`); anything near this is not one.
pub const EDIT_BODY_LIMIT: usize = 64 << 10;

/// What the routes work with: the database of `[tables]`, the storages of the
/// configuration (archive targets of a run) and the webhooks runs are told to.
pub struct TablesApi {
    pub tables: TablesConfig,
    pub config: Config,
    pub events: Arc<Events>,
    /// Runs started through the API at once: one. A run goes on when its client leaves
    /// (it ends its tables and records itself), so without a bound a client that starts
    /// runs and hangs up could pile them up; the per-table locks keep runs apart but not
    /// their threads and connections.
    pub runs: Arc<tokio::sync::Semaphore>,
}

impl TablesApi {
    /// Refuses an archive target that is no storage of this server: its runs (scheduled
    /// or through the API) would fail on it. (`strata tables add` on another host checks
    /// nothing of the kind: the runs of a policy may happen on a host with other storages.)
    fn known_target(&self, target: Option<&str>) -> Result<(), ApiFailure> {
        match target {
            Some(name) if !name.is_empty() && !self.config.storages.contains_key(name) => {
                let known: Vec<&str> = self.config.storages.keys().map(String::as_str).collect();
                Err(crate::extract::bad(format!(
                    "bad body: target {name:?} is no storage of this server (its storages: {}): archives go to a storage of the configuration that runs them",
                    known.join(", ")
                )))
            }
            _ => Ok(()),
        }
    }

    /// The routes' state over `tables`, with the storages of `config` and its webhooks.
    pub fn new(tables: TablesConfig, config: Config, events: Arc<Events>) -> TablesApi {
        TablesApi {
            tables,
            config,
            events,
            runs: Arc::new(tokio::sync::Semaphore::new(1)),
        }
    }
}

type Tables = State<Arc<TablesApi>>;

/// The routes, behind the coordinator's user tokens (the caller adds the layer).
pub fn routes(api: TablesApi) -> Router {
    Router::new()
        .route("/api/v1/tables/policies", get(policies).post(add))
        .route("/api/v1/tables/policies/{id}", patch(edit).delete(remove))
        .route("/api/v1/tables/plan", get(plan))
        .route("/api/v1/tables/run", post(run))
        .route("/api/v1/tables/history", get(history))
        .layer(DefaultBodyLimit::max(EDIT_BODY_LIMIT))
        .with_state(Arc::new(api))
}

/// An engine error with the API code of its kind ([`TablesError::kind`]).
fn failure(err: TablesError) -> ApiFailure {
    ApiFailure(ApiError::new(
        err.code(),
        strata_coordinator::error_chain(&err),
    ))
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

/// What every route answers on a server without `[tables] db`.
fn no_database() -> ApiFailure {
    ApiFailure(ApiError::new(
        ErrorCode::NotFound,
        "this server has no [tables] db: the tables API needs the database of the policies in the server's configuration",
    ))
}

/// The engine on `[tables] db`, recording `who` in the audit log.
async fn engine(config: &TablesConfig, who: &Caller) -> Result<Engine, ApiFailure> {
    if config.db.is_none() {
        return Err(no_database());
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
    State(api): Tables,
    Extension(caller): Extension<Caller>,
    Params(query): Params<TablePolicyQuery>,
) -> Reply<Vec<Policy>> {
    let filter = query.filter().map_err(failure)?;
    let engine = engine(&api.tables, &caller).await?;
    Ok(Json(engine.policies(&filter).await.map_err(failure)?))
}

#[utoipa::path(get, path = "/api/v1/tables/plan", tag = "tables", params(TablePolicyQuery),
    responses((status = 200, description = "Per table of the policies the query picks: `plan`, what a run now would do (`steps` with the partition, its bound and size; `kept` partitions and why; `notes`; `problems`), and `next`, the partitions that expire next for each policy with `at`, when (`strata tables plan`); `error` when the table could not be planned", body = [TableOutlook]),
        (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 404, description = "The server has no `[tables] db`", body = ApiError), (status = 500, body = ApiError)))]
pub(crate) async fn plan(
    State(api): Tables,
    Extension(caller): Extension<Caller>,
    Params(query): Params<TablePolicyQuery>,
) -> Reply<Vec<TableOutlook>> {
    let filter = query.filter().map_err(failure)?;
    let engine = engine(&api.tables, &caller).await?;
    let now = strata_tables::chrono::Utc::now();
    Ok(Json(engine.outlook(&filter, now).await.map_err(failure)?))
}

#[utoipa::path(get, path = "/api/v1/tables/history", tag = "tables", params(TableHistoryQuery),
    responses((status = 200, description = "Runs, their steps and policy changes, newest first: `id`, `at`, `who`, `what`, `table`, `policy_id`, `run_id`, `outcome`, `partitions`, `detail` (`strata tables history`)", body = [HistoryEntry]),
        (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 404, description = "The server has no `[tables] db`", body = ApiError), (status = 500, body = ApiError)))]
pub(crate) async fn history(
    State(api): Tables,
    Extension(caller): Extension<Caller>,
    Params(query): Params<TableHistoryQuery>,
) -> Reply<Vec<HistoryEntry>> {
    let filter = query.filter().map_err(failure)?;
    let engine = engine(&api.tables, &caller).await?;
    Ok(Json(engine.history(&filter).await.map_err(failure)?))
}

#[utoipa::path(patch, path = "/api/v1/tables/policies/{id}", tag = "tables", request_body = TablePolicyEdit,
    params(("id" = i64, Path, minimum = 1, description = "The policy's id"), TableEditQuery),
    responses((status = 200, description = "`saved` (false with `dry_run`: nothing written), the policy `before` and after the edit (`policy`), and its table's `outlook` with the edited policy (as `GET /api/v1/tables/plan`). A saved edit is in the tables' audit log as `policy edit`, `who` the caller's token (`token:NAME`)", body = EditOutcome),
        (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 403, description = "The token may only read", body = ApiError),
        (status = 404, description = "No such policy, or the server has no `[tables] db`", body = ApiError),
        (status = 409, description = "A run of the policy's table held it for the whole lock timeout: nothing changed", body = ApiError),
        (status = 413, body = ApiError), (status = 500, body = ApiError)))]
pub(crate) async fn edit(
    State(api): Tables,
    Extension(caller): Extension<Caller>,
    PathParam(id): PathParam<String>,
    Params(query): Params<TableEditQuery>,
    Body(body): Body<TablePolicyEdit>,
) -> Reply<EditOutcome> {
    // Read before the database is even asked: bad input is refused the same with or
    // without one. The body first, so a body's mistake is named whatever the path.
    let edit = body.into_args().edit().map_err(failure)?;
    api.known_target(edit.target.as_deref())?;
    let id = policy_id(&id)?;
    let engine = engine(&api.tables, &caller).await?;
    let outcome = if query.dry_run == Some(true) {
        engine.preview_edit(id, &edit).await
    } else {
        engine.save_edit(id, &edit).await
    };
    Ok(Json(outcome.map_err(failure)?))
}

#[utoipa::path(post, path = "/api/v1/tables/policies", tag = "tables", request_body = TablePolicyNew,
    params(TableAddQuery),
    responses((status = 200, description = "`saved` (false with `dry_run`: nothing written, `policy.id` 0), the policy as stored, and its table's `outlook` with the new policy (as `GET /api/v1/tables/plan`). The policy is checked against its table first, as `strata tables add` checks it. A saved policy is in the tables' audit log as `policy add`, `who` the caller's token (`token:NAME`)", body = AddOutcome),
        (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 403, description = "The token may only read", body = ApiError),
        (status = 404, description = "The server has no `[tables] db`", body = ApiError),
        (status = 413, body = ApiError), (status = 500, body = ApiError)))]
pub(crate) async fn add(
    State(api): Tables,
    Extension(caller): Extension<Caller>,
    Params(query): Params<TableAddQuery>,
    Body(body): Body<TablePolicyNew>,
) -> Reply<AddOutcome> {
    let spec = body.into_args().spec().map_err(failure)?;
    // Read before the database is even asked, as an edit is.
    spec.validate().map_err(|e| failure(e.into()))?;
    api.known_target(spec.target.as_deref())?;
    let engine = engine(&api.tables, &caller).await?;
    let outcome = if query.dry_run == Some(true) {
        engine.preview_add(&spec).await
    } else {
        engine.save_add(&spec).await
    };
    Ok(Json(outcome.map_err(failure)?))
}

#[utoipa::path(delete, path = "/api/v1/tables/policies/{id}", tag = "tables",
    params(("id" = i64, Path, minimum = 1, description = "The policy's id")),
    responses((status = 200, description = "The policy as it was. It is removed under its table's lock: it waits for a run of the table to end, up to `[tables] lock_timeout_secs` (30 s; then 409, nothing removed) and is in the tables' audit log as `policy remove`, `who` the caller's token (`token:NAME`)", body = Policy),
        (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 403, description = "The token may only read", body = ApiError),
        (status = 404, description = "No such policy, or the server has no `[tables] db`", body = ApiError),
        (status = 409, description = "A run of the policy's table held it for the whole lock timeout: nothing changed", body = ApiError),
        (status = 500, body = ApiError)))]
pub(crate) async fn remove(
    State(api): Tables,
    Extension(caller): Extension<Caller>,
    PathParam(id): PathParam<String>,
) -> Reply<Policy> {
    let id = policy_id(&id)?;
    let engine = engine(&api.tables, &caller).await?;
    let removed = engine
        .remove(Some(id), &Default::default())
        .await
        .map_err(failure)?;
    // Removed by another caller between the read and the delete: gone all the same,
    // but not by this request.
    removed
        .into_iter()
        .next()
        .map(Json)
        .ok_or_else(|| failure(TablesError::NoSuchPolicy(id)))
}

#[utoipa::path(post, path = "/api/v1/tables/run", tag = "tables", request_body = TableRunBody,
    responses((status = 200, description = "The run, once over, as `strata tables run --json` prints it: `run_id`, `cutoff`, `dry_run`, and per table its `outcome` (`done`, `nothing_to_do`, `dry_run`, `busy`: another run held the table, `failed`), `plan`, `steps` (each with its `outcome` and `detail`) and `error`. Recorded in the tables' audit log as `run` (`run (dry-run)`), `who` the caller's token; told to the webhooks (kind `tables`). A failed table is in the report, not an error of the request", body = RunReport),
        (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 403, description = "The token may only read", body = ApiError),
        (status = 404, description = "The server has no `[tables] db`", body = ApiError),
        (status = 409, description = "A run started through the API is under way (one at a time)", body = ApiError),
        (status = 413, body = ApiError), (status = 500, body = ApiError)))]
pub(crate) async fn run(
    State(api): Tables,
    Extension(caller): Extension<Caller>,
    Body(body): Body<TableRunBody>,
) -> Reply<RunReport> {
    let request = RunRequest {
        filter: body.filter().map_err(failure)?,
        cutoff: strata_tables::cutoff_or_now(body.cutoff.as_deref()).map_err(failure)?,
        dry_run: body.dry_run,
    };
    // A later cutoff would expire data before its time: through the API only a dry run
    // may look ahead (the CLI replays any date an operator gives).
    strata_tables::refuse_looking_ahead(request.cutoff, request.dry_run).map_err(failure)?;
    if api.tables.db.is_none() {
        return Err(no_database());
    }
    // Held by the run's thread until the run ends, whether or not its client waits.
    let Ok(permit) = api.runs.clone().try_acquire_owned() else {
        return Err(ApiFailure(ApiError::new(
            ErrorCode::Busy,
            "a table retention run started through the API is under way: its tables are in GET /api/v1/tables/history; start this one once it has ended",
        )));
    };
    let who = caller.0.clone();
    // A task of the server's own: the run and what the webhooks hear of it go on when the
    // client leaves (the handler is then dropped, and anything it awaited with it).
    let run = tokio::spawn(async move {
        // Told from here: the run's own runtime ends with the run, and a delivery still
        // under way with it.
        let told = TablesRunReport::start(api.events.clone(), &who, &tables_target(&api.tables));
        // On a thread of its own, as the scheduler runs it: a run streams COPY data
        // between two tasks, cheaper on one thread (see `scheduled::on_own_thread`).
        let on_thread = api.clone();
        let ran = crate::scheduled::on_own_thread("table retention", move || async move {
            let (api, _permit) = (on_thread, permit);
            let mut engine = Engine::open(&api.tables, Some(who)).await?;
            let stores =
                strata_tables::named_storages(|name| Storage::open_for_archives(&api.config, name));
            let (filter, cutoff, dry_run) = (&request.filter, request.cutoff, request.dry_run);
            engine
                .run(filter, cutoff, dry_run, &stores, &strata_tables::run::Quiet)
                .await
        })
        .await;
        match &ran {
            Ok(report) => tell_end(&told, report),
            Err(why) => told.end(Ending::Failed, why),
        }
        ran
    });
    let report = run
        .await
        .map_err(|e| format!("the run's task: {e}"))
        .and_then(|ran| ran)
        .map_err(|why| ApiFailure(ApiError::new(ErrorCode::Failed, why)))?;
    Ok(Json(report.map_err(failure)?))
}
