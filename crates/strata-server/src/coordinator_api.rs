//! `/api/v1`: the coordinator over HTTP, one call per CLI action.
//!
//! Backups and restores start in the background (202 with the operation);
//! `/operations/{id}/events` streams the operation's status as server-sent events until it
//! ends. Verify, restore drills, cleanup, gc, copies and WAL checks answer when done. Every mutating call is recorded in the
//! audit log under the caller's token name. The OpenAPI document (`/api/openapi.json`) is
//! generated from the annotations here, so it cannot drift from the handlers.

use crate::auth::{require_token, Caller, CallerRole, Tokens};
use crate::extract::{backup_name, bad, Body, Params, PathParam};
use crate::page_bodies::{PageBody, PageKey};
use crate::queries::DocumentRefusals;
use crate::{ApiFailure, Reply};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures_util::stream::Stream;
use serde::Serialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use strata_api::types::{
    AuditQuery, BackupListing, CleanupBody, CopyBody, FilesQuery, GcBody, NoOptions, Page,
    RepairBody, RestoreBody, SessionInfo, Started, VerifyBody, VersionInfo, FILES_PAGE,
};
use strata_cluster::node_api::{ApiError, ErrorCode};
use strata_coordinator::actions::percent_ok;
use strata_coordinator::audit::AuditEntry;
use strata_coordinator::browse::{FileEntry, FileFilter};
use strata_coordinator::catalog::Located;
use strata_coordinator::config::TokenRole;
use strata_coordinator::coordinator::{ClusterStatus, Coordinator};
use strata_coordinator::copy::CopyReport;
use strata_coordinator::gc::GcReport;
use strata_coordinator::listing::{BackupsPage, PageQuery, DEFAULT_PAGE, MAX_PAGE};
use strata_coordinator::operation::OperationStatus;
use strata_coordinator::repair::{BackupsRepairReport, IndexRepairReport};
use strata_coordinator::retention::CleanupReport;
use strata_coordinator::schedule::JobStatus;
use strata_coordinator::verify::{DataCheck, DrillReport, VerifyReport};
use strata_coordinator::CoordinatorError;
use strata_repo::summary::BackupSummary;
use strata_wal::archiver::ArchiverStatus;
use strata_wal::{WalListing, WalVerifyReport};

pub use crate::api_state::ApiState;

/// Counts the requests that may change the repository (see [`ApiState::writes`]), once
/// they are answered.
async fn count_writes(
    State(s): Api,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let write = request.method() != axum::http::Method::GET;
    let response = next.run(request).await;
    if write {
        s.writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    response
}

type Api = State<Arc<ApiState>>;

/// The coordinator's routes behind the user tokens.
pub fn routes(
    state: ApiState,
    tables: strata_tables::config::TablesConfig,
    tokens: Tokens,
) -> Router {
    let state = Arc::new(state);
    let tables =
        crate::tables_api::TablesApi::new(tables, state.config.clone(), state.coordinator.events());
    Router::new()
        .route("/api/v1/version", get(version))
        .route("/api/v1/session", get(session))
        .route("/api/v1/status", get(status))
        .route("/api/v1/backups", get(list).post(start_backup))
        .route("/api/v1/backups/{name}", get(show).delete(delete))
        .route("/api/v1/backups/{name}/pin", post(pin).delete(unpin))
        .route("/api/v1/backups/{name}/files", get(files))
        .route("/api/v1/backups/{name}/copy", post(copy))
        .route("/api/v1/backups/{name}/drill", post(drill))
        .route("/api/v1/backups/{name}/tables", post(restore_tables))
        .route("/api/v1/restores", post(start_restore))
        .route("/api/v1/verify", post(verify))
        .route("/api/v1/cleanup", post(cleanup))
        .route("/api/v1/gc", post(gc))
        .route("/api/v1/repair/index", post(repair_index))
        .route("/api/v1/repair/backups", post(repair_backups))
        .route("/api/v1/wal", get(wal_list))
        .route("/api/v1/wal/verify", post(wal_verify))
        .route("/api/v1/wal/archiver", get(wal_archiver))
        .route("/api/v1/operations", get(operations))
        .route("/api/v1/operations/{id}", get(operation))
        .route("/api/v1/operations/{id}/events", get(events))
        .route("/api/v1/schedules", get(schedules))
        .route("/api/v1/config", get(config))
        .route("/api/v1/check", get(check))
        .route("/api/v1/audit", get(audit))
        .route("/metrics", get(crate::metrics::metrics))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_writes,
        ))
        .with_state(state)
        .merge(crate::tables_api::routes(tables))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(tokens),
            require_token,
        ))
}

pub(crate) use crate::errors::failure;

/// The backup `name` (a name, unique prefix or `latest`) names, checked for characters a
/// backup name cannot have first.
async fn resolve(c: &Coordinator, name: &str) -> Result<BackupSummary, ApiFailure> {
    strata_coordinator::resolve_backup(c.repo(), backup_name(name)?)
        .await
        .map_err(failure)
}

fn repo_failure(err: impl Into<CoordinatorError>) -> ApiFailure {
    failure(err.into())
}

/// What this server speaks, so a client of another version can work on what both know.
#[utoipa::path(get, path = "/api/v1/version", tag = "cluster",
    responses((status = 200, description = "The API's major version, the server's version and the features it offers", body = VersionInfo),
        (status = 401, body = ApiError)))]
async fn version() -> Json<VersionInfo> {
    Json(VersionInfo::current())
}

/// The name and role of the token that asks: a client hides what its token may not do.
#[utoipa::path(get, path = "/api/v1/session", tag = "cluster",
    responses((status = 200, description = "The token's name and role (`admin` or `read`)", body = SessionInfo),
        (status = 401, body = ApiError)))]
async fn session(
    Extension(caller): Extension<Caller>,
    Extension(role): Extension<CallerRole>,
) -> Json<SessionInfo> {
    let token = caller
        .0
        .strip_prefix("token:")
        .unwrap_or(&caller.0)
        .to_string();
    let role = match role.0 {
        TokenRole::Admin => "admin",
        TokenRole::Read => "read",
    };
    Json(SessionInfo {
        token,
        role: role.into(),
    })
}

#[utoipa::path(get, path = "/api/v1/status", tag = "cluster",
    responses((status = 200, body = ClusterStatus), (status = 401, body = ApiError), (status = 500, body = ApiError)))]
async fn status(State(s): Api) -> Reply<ClusterStatus> {
    Ok(Json(s.coordinator.status().await.map_err(failure)?))
}

/// The rows of a page: each backup with its storage, pin and last verification.
fn rows(page: BackupsPage) -> Vec<BackupListing> {
    let BackupsPage {
        backups,
        mut verified,
        pinned,
        ..
    } = page;
    backups
        .into_iter()
        .map(|Located { storage, summary }| {
            let key = (storage, summary.name.clone());
            BackupListing {
                pinned: pinned.contains(&key),
                verification: verified.remove(&key),
                storage: Some(key.0),
                summary,
            }
        })
        .collect()
}

/// The row of one backup of `storage`: its pin and last verification read for it alone.
async fn row(
    s: &ApiState,
    storage: &str,
    summary: BackupSummary,
) -> Result<BackupListing, ApiFailure> {
    let catalog = s.catalog().await?;
    let repo = &catalog.place(storage).map_err(failure)?.repo;
    let name = [summary.name.as_str()];
    let pinned = strata_coordinator::pins::pinned_among(repo, &name)
        .await
        .map_err(|e| repo_failure(strata_repo::RepoError::from(e)))?;
    let mut records = strata_coordinator::verified::latest_among(repo, &name)
        .await
        .map_err(|e| repo_failure(strata_repo::RepoError::from(e)))?;
    Ok(BackupListing {
        pinned: pinned.contains(&summary.name),
        verification: records.remove(&summary.name),
        storage: Some(storage.to_string()),
        summary,
    })
}

#[utoipa::path(get, path = "/api/v1/backups", tag = "backups", params(Page),
    responses((status = 200, body = [BackupListing], headers(
            ("x-total-count" = u64, description = "Backups in all (every storage)"),
            ("x-damaged-count" = u64, description = "Backups of this answer whose summary does not decode, left out"),
            ("x-next-cursor" = String, description = "With `limit` or `cursor`: the `cursor` of the next (older) page; absent on the last page"),
            ("x-listing-note" = String, description = "Present when the answer had to read summaries by themselves (a listing object damaged or missing, backups written before the listing): what and why"))),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 500, body = ApiError)))]
async fn list(State(s): Api, Params(page): Params<Page>) -> Result<Response, ApiFailure> {
    let paged = page.offset.is_none() && (page.limit.is_some() || page.cursor.is_some());
    let query = if paged {
        let limit = page.limit.map(|l| l as usize).unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(bad(format!("limit must be 1 to {MAX_PAGE}")));
        }
        PageQuery {
            limit,
            cursor: page.cursor.clone(),
        }
    } else if page.cursor.is_some() {
        return Err(bad("cursor and offset do not go together: use cursor"));
    } else {
        PageQuery::all()
    };
    // A summary that does not decode hides only its own backup (see `strata repair`).
    // From the kept listings: no request while validated within the last second, then
    // one GET of the listing generation (see `strata_coordinator::listing_cache`).
    let catalog = s.catalog().await?;
    let (sources, local) = (catalog.sources(), s.generation());
    let key = PageKey {
        limit: page.limit,
        offset: page.offset,
        cursor: page.cursor.clone(),
    };
    let stamp = s.listing.stamp(&sources, local).await.map_err(failure)?;
    if let Some(body) = s.page_bodies.get(&stamp, &key) {
        return Ok(body.response());
    }
    let (read, stamp) = s
        .listing
        .stamped_page(&sources, &query, local)
        .await
        .map_err(failure)?;
    let mut headers = HeaderMap::new();
    headers.insert("x-total-count", HeaderValue::from(read.total as u64));
    headers.insert(
        "x-damaged-count",
        HeaderValue::from(read.damaged.len() as u64),
    );
    if let Some(next) = read
        .next
        .as_deref()
        .and_then(|n| HeaderValue::from_str(n).ok())
    {
        headers.insert("x-next-cursor", next);
    }
    let note = read.notes.join("; ");
    if let Ok(note) = HeaderValue::from_str(&note) {
        if !note.is_empty() {
            headers.insert("x-listing-note", note);
        }
    }
    let mut rows = rows(read);
    if !paged {
        // The older form: oldest first, from `offset`.
        rows.reverse();
        let offset = page.offset.unwrap_or(0) as usize;
        let limit = page.limit.map(|l| l as usize).unwrap_or(usize::MAX);
        rows = rows.into_iter().skip(offset).take(limit).collect();
    }
    let json = serde_json::to_vec(&rows).map_err(|e| {
        ApiFailure(ApiError::new(
            ErrorCode::Failed,
            format!("cannot write the page: {e}"),
        ))
    })?;
    let body = Arc::new(PageBody {
        headers,
        json: json.into(),
    });
    s.page_bodies.put(stamp, key, body.clone());
    Ok(body.response())
}

#[utoipa::path(get, path = "/api/v1/backups/{name}", tag = "backups",
    params(("name" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$", description = "Backup name, unique prefix, or `latest`, in any storage")),
    responses((status = 200, body = BackupListing), (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 404, body = ApiError), (status = 500, body = ApiError)))]
async fn show(State(s): Api, PathParam(name): PathParam<String>) -> Reply<BackupListing> {
    let (place, summary) = s
        .catalog()
        .await?
        .find_with(backup_name(&name)?, Some((&s.listing, s.generation())))
        .await
        .map_err(failure)?;
    let storage = place.storage.name.clone();
    Ok(Json(row(&s, &storage, summary).await?))
}

#[utoipa::path(delete, path = "/api/v1/backups/{name}", tag = "backups",
    params(("name" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$", description = "Backup name or unique prefix (not `latest`)")),
    responses((status = 200, description = "Deleted; then the data no remaining backup uses", body = BackupSummary),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 404, body = ApiError),
        (status = 409, body = ApiError), (status = 500, body = ApiError)))]
async fn delete(
    State(s): Api,
    Extension(caller): Extension<Caller>,
    PathParam(name): PathParam<String>,
) -> Reply<BackupSummary> {
    let actions = s.coordinator.actions();
    let found = actions
        .delete(&caller.0, backup_name(&name)?)
        .await
        .map_err(failure)?;
    // Then the data no remaining backup uses.
    actions.collect_garbage(false).await.map_err(failure)?;
    Ok(Json(found))
}

async fn set_pin(s: &ApiState, caller: &Caller, name: &str, pinned: bool) -> Reply<BackupListing> {
    let found = s
        .coordinator
        .actions()
        .pin(&caller.0, backup_name(name)?, pinned)
        .await
        .map_err(failure)?;
    Ok(Json(row(s, s.coordinator.storage(), found).await?))
}

#[utoipa::path(post, path = "/api/v1/backups/{name}/pin", tag = "backups", request_body(content = Option<NoOptions>, description = "No options: empty, `{}` or `null`"),
    params(("name" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$", description = "Backup name, unique prefix, or `latest`")),
    responses((status = 200, description = "Pinned: no retention policy removes it, delete refuses it", body = BackupListing),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 404, body = ApiError), (status = 500, body = ApiError)))]
async fn pin(
    State(s): Api,
    Extension(caller): Extension<Caller>,
    PathParam(name): PathParam<String>,
    Body(NoOptions {}): Body<NoOptions>,
) -> Reply<BackupListing> {
    set_pin(&s, &caller, &name, true).await
}

#[utoipa::path(delete, path = "/api/v1/backups/{name}/pin", tag = "backups",
    params(("name" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$", description = "Backup name, unique prefix, or `latest`")),
    responses((status = 200, description = "Unpinned", body = BackupListing),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 404, body = ApiError), (status = 500, body = ApiError)))]
async fn unpin(
    State(s): Api,
    Extension(caller): Extension<Caller>,
    PathParam(name): PathParam<String>,
) -> Reply<BackupListing> {
    set_pin(&s, &caller, &name, false).await
}

#[utoipa::path(post, path = "/api/v1/backups", tag = "backups", request_body(content = Option<NoOptions>, description = "No options: empty, `{}` or `null`"),
    responses((status = 202, description = "Started; follow /api/v1/operations/{id}/events", body = Started),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 500, body = ApiError)))]
async fn start_backup(
    State(s): Api,
    Extension(caller): Extension<Caller>,
    Body(NoOptions {}): Body<NoOptions>,
) -> Result<(StatusCode, Json<Started>), ApiFailure> {
    let op = s
        .coordinator
        .start_backup(&caller.0)
        .await
        .map_err(failure)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Started {
            operation: op.status(),
        }),
    ))
}

#[utoipa::path(post, path = "/api/v1/restores", tag = "restores", request_body = RestoreBody,
    responses((status = 202, description = "Started; follow /api/v1/operations/{id}/events", body = Started),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 404, body = ApiError),
        (status = 409, body = ApiError), (status = 500, body = ApiError)))]
async fn start_restore(
    State(s): Api,
    Extension(caller): Extension<Caller>,
    Body(body): Body<RestoreBody>,
) -> Result<(StatusCode, Json<Started>), ApiFailure> {
    let c = &s.coordinator;
    let (backup, plan) = body.into_parts();
    // The same checks as the CLI's, before the repository is even read.
    strata_coordinator::input::check_restore_plan(&plan).map_err(failure)?;
    let wanted = backup_name(&backup)?;
    // A backup of any storage; a point in time (`latest` before a recovery target) is
    // found among the coordinator's own, where its WAL is archived.
    let by_time = strata_coordinator::names_a_point_in_time(wanted, plan.recovery.as_ref());
    let (summary, storage) = if by_time {
        let summary =
            strata_coordinator::resolve_backup_for(c.repo(), wanted, plan.recovery.as_ref())
                .await
                .map_err(failure)?;
        (summary, c.storage().to_string())
    } else {
        let (place, summary) = s.catalog().await?.find(wanted).await.map_err(failure)?;
        (summary, place.storage.name.clone())
    };
    let op = c
        .start_restore_from(&summary, &storage, plan, &caller.0)
        .await
        .map_err(failure)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Started {
            operation: op.status(),
        }),
    ))
}

#[utoipa::path(post, path = "/api/v1/verify", tag = "backups", request_body = VerifyBody,
    responses((status = 200, description = "Done; `problems` is empty when all is well", body = VerifyReport),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 404, body = ApiError), (status = 500, body = ApiError)))]
async fn verify(
    State(s): Api,
    Extension(caller): Extension<Caller>,
    Body(body): Body<VerifyBody>,
) -> Reply<VerifyReport> {
    let check = match (body.read_data_subset, body.read_data) {
        (Some(p), false) if percent_ok(p) => DataCheck::Subset(p),
        (Some(_), false) => {
            return Err(bad(
                "read_data_subset must be a percentage above 0, at most 100",
            ))
        }
        (Some(_), true) => return Err(bad("read_data and read_data_subset exclude each other")),
        (None, true) => DataCheck::All,
        (None, false) => DataCheck::Structure,
    };
    let backup = match &body.backup {
        Some(name) => Some(resolve(&s.coordinator, name).await?.name),
        None => None,
    };
    let report = s
        .coordinator
        .actions()
        .verify(&caller.0, backup.as_deref(), check)
        .await
        .map_err(failure)?;
    Ok(Json(report))
}

#[utoipa::path(post, path = "/api/v1/cleanup", tag = "backups", request_body = CleanupBody,
    responses((status = 200, body = CleanupReport), (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 409, body = ApiError), (status = 500, body = ApiError)))]
async fn cleanup(
    State(s): Api,
    Extension(caller): Extension<Caller>,
    Body(body): Body<CleanupBody>,
) -> Reply<CleanupReport> {
    let policy = body.policy.unwrap_or_else(|| s.config.retention.clone());
    let report = s
        .coordinator
        .actions()
        .cleanup(&caller.0, &policy, body.dry_run)
        .await
        .map_err(failure)?;
    Ok(Json(report))
}

#[utoipa::path(post, path = "/api/v1/gc", tag = "backups", request_body = GcBody,
    responses((status = 200, body = GcReport), (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 409, body = ApiError), (status = 500, body = ApiError)))]
async fn gc(
    State(s): Api,
    Extension(caller): Extension<Caller>,
    Body(body): Body<GcBody>,
) -> Reply<GcReport> {
    let report = s
        .coordinator
        .actions()
        .gc(&caller.0, body.dry_run)
        .await
        .map_err(failure)?;
    Ok(Json(report))
}

#[utoipa::path(post, path = "/api/v1/repair/index", tag = "backups", request_body = RepairBody,
    responses((status = 200, body = IndexRepairReport), (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 409, body = ApiError), (status = 500, body = ApiError)))]
async fn repair_index(
    State(s): Api,
    Extension(caller): Extension<Caller>,
    Body(body): Body<RepairBody>,
) -> Reply<IndexRepairReport> {
    let report = s
        .coordinator
        .actions()
        .repair_index(&caller.0, body.dry_run)
        .await
        .map_err(failure)?;
    Ok(Json(report))
}

#[utoipa::path(post, path = "/api/v1/repair/backups", tag = "backups", request_body = RepairBody,
    responses((status = 200, body = BackupsRepairReport), (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 409, body = ApiError), (status = 500, body = ApiError)))]
async fn repair_backups(
    State(s): Api,
    Extension(caller): Extension<Caller>,
    Body(body): Body<RepairBody>,
) -> Reply<BackupsRepairReport> {
    let report = s
        .coordinator
        .actions()
        .repair_backups(&caller.0, body.dry_run)
        .await
        .map_err(failure)?;
    Ok(Json(report))
}

#[utoipa::path(get, path = "/api/v1/backups/{name}/files", tag = "backups", params(
        ("name" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$", description = "Backup name, unique prefix, or `latest`"),
        FilesQuery),
    responses((status = 200, description = "Entries in manifest order, node by node (`strata ls`)", body = [FileEntry]),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 404, body = ApiError), (status = 500, body = ApiError)))]
async fn files(
    State(s): Api,
    PathParam(name): PathParam<String>,
    Params(query): Params<FilesQuery>,
) -> Reply<Vec<FileEntry>> {
    let repo = s.coordinator.repo();
    let summary = resolve(&s.coordinator, &name).await?;
    let limit = query
        .limit
        .map_or(FILES_PAGE, |l| (l as usize).min(FILES_PAGE));
    let mut skip = query.offset.unwrap_or(0);
    let mut page = Vec::new();
    let filter = FileFilter {
        node: query.node.as_deref(),
        path: query.path.as_deref(),
    };
    strata_coordinator::browse::for_each_file(repo, &summary, &filter, |entry| {
        if skip > 0 {
            skip -= 1;
            return true;
        }
        if page.len() < limit {
            page.push(entry);
        }
        page.len() < limit
    })
    .await
    .map_err(failure)?;
    Ok(Json(page))
}

#[utoipa::path(post, path = "/api/v1/backups/{name}/copy", tag = "backups", request_body = CopyBody,
    params(("name" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$", description = "Backup name, unique prefix, or `latest`")),
    responses((status = 200, description = "Copied, only the data the target lacked sent, and verified there", body = CopyReport),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 404, body = ApiError),
        (status = 409, body = ApiError), (status = 500, body = ApiError)))]
async fn copy(
    State(s): Api,
    Extension(caller): Extension<Caller>,
    PathParam(name): PathParam<String>,
    Body(body): Body<CopyBody>,
) -> Reply<CopyReport> {
    let c = &s.coordinator;
    let summary = resolve(&s.coordinator, &name).await?;
    if !s.config.storages.contains_key(&body.to) {
        return Err(ApiFailure(ApiError::new(
            ErrorCode::NotFound,
            format!("no storage {:?} in the server's configuration", body.to),
        )));
    }
    if body.to == c.storage() {
        return Err(bad(
            "the backup is already in that storage: name another one",
        ));
    }
    let open_target = async {
        let password = s.config.password()?;
        let catalog =
            strata_coordinator::catalog::Catalog::open(&s.config, password.as_deref()).await?;
        let target = catalog.place(&body.to)?.repo.clone();
        target.reload_index().await?;
        Ok(target)
    };
    let report = c
        .actions()
        .copy(
            &caller.0,
            &summary,
            open_target,
            &body.to,
            s.config.backup.writer_options(),
        )
        .await
        .map_err(failure)?;
    Ok(Json(report))
}

#[utoipa::path(post, path = "/api/v1/backups/{name}/drill", tag = "backups", request_body(content = Option<NoOptions>, description = "No options: empty, `{}` or `null`"),
    params(("name" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$", description = "Backup name, unique prefix, or `latest`")),
    responses((status = 200, description = "A restore drill (`strata verify --restore`): restored into a scratch directory on the server, every byte verified, checked against the manifests, removed; `problems` is empty when all is well", body = DrillReport),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 404, body = ApiError), (status = 500, body = ApiError)))]
async fn drill(
    State(s): Api,
    Extension(caller): Extension<Caller>,
    PathParam(name): PathParam<String>,
    Body(NoOptions {}): Body<NoOptions>,
) -> Reply<DrillReport> {
    let summary = resolve(&s.coordinator, &name).await?;
    let report = s
        .coordinator
        .actions()
        .drill(&caller.0, &summary, &s.config.state_dir())
        .await
        .map_err(failure)?;
    Ok(Json(report))
}

#[utoipa::path(post, path = "/api/v1/backups/{name}/tables", tag = "backups", request_body = strata_api::types::TableRestoreBody,
    params(("name" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$", description = "Backup name, unique prefix, or `latest` (with a target time: the newest complete backup that had ended by then)")),
    responses((status = 200, description = "Tables (or a whole database) of a PostgreSQL backup brought back into the live database, under new names, without touching the running cluster (`strata restore --table`): restored into scratch space on the server's host, recovered to the target by a scratch server, loaded in one transaction", body = strata_coordinator::table_restore::TableRestoreReport),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 404, body = ApiError), (status = 500, body = ApiError)))]
async fn restore_tables(
    State(s): Api,
    Extension(caller): Extension<Caller>,
    PathParam(name): PathParam<String>,
    Body(body): Body<strata_api::types::TableRestoreBody>,
) -> Reply<strata_coordinator::table_restore::TableRestoreReport> {
    let request = body
        .into_request()
        .map_err(|e| failure(CoordinatorError::Invalid(e)))?;
    let wanted = backup_name(&name)?;
    let plan = strata_postgres::recovery::RecoveryPlan {
        target: request.target.clone(),
        action: strata_postgres::recovery::TargetAction::Promote,
        start: true,
        no_archive: false,
    };
    let c = &s.coordinator;
    let summary = strata_coordinator::resolve_backup_for(c.repo(), wanted, Some(&plan))
        .await
        .map_err(failure)?;
    let report = c
        .actions()
        .restore_tables(&caller.0, &s.config, &summary, &request, &|_| {})
        .await
        .map_err(failure)?;
    Ok(Json(report))
}

#[utoipa::path(get, path = "/api/v1/wal", tag = "wal",
    responses((status = 200, description = "Archived WAL per timeline as runs without gaps, and how far each PostgreSQL backup can be recovered (`strata wal list`)", body = Object),
        (status = 401, body = ApiError), (status = 500, body = ApiError)))]
async fn wal_list(State(s): Api) -> Reply<WalListing> {
    Ok(Json(
        strata_wal::list(s.coordinator.repo())
            .await
            .map_err(|e| failure(e.into()))?,
    ))
}

#[utoipa::path(post, path = "/api/v1/wal/verify", tag = "wal", request_body(content = Option<NoOptions>, description = "No options: empty, `{}` or `null`"),
    responses((status = 200, description = "Every archived WAL file read back and checked (`strata wal verify`)", body = WalVerifyReport),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 500, body = ApiError)))]
async fn wal_verify(State(s): Api, Body(NoOptions {}): Body<NoOptions>) -> Reply<WalVerifyReport> {
    Ok(Json(
        strata_wal::verify(s.coordinator.repo())
            .await
            .map_err(|e| failure(e.into()))?,
    ))
}

/// The WAL archiver on the server's host, as `GET /api/v1/wal/archiver` answers: what it
/// did since it started when one listens, else that none does (a state of the host, not a
/// missing resource).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum WalArchiverReply {
    Listening(Box<ArchiverListening>),
    None(NoArchiver),
}

/// An archiver listens: its figures (`strata wal status`), with `listening` true.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ArchiverListening {
    /// True.
    pub listening: bool,
    /// Where it listens (`postgres.archiver_socket`).
    pub socket: String,
    #[serde(flatten)]
    pub status: ArchiverStatus,
}

/// No archiver listens on the server's host: `listening` false, and why.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NoArchiver {
    /// False.
    pub listening: bool,
    /// Where the server looked (`postgres.archiver_socket`).
    pub socket: String,
    /// What to do (`strata wal archiver` starts one).
    pub detail: String,
}

#[utoipa::path(get, path = "/api/v1/wal/archiver", tag = "wal",
    responses((status = 200, description = "Whether a WAL archiver listens at `postgres.archiver_socket` on the server's host (`listening`), and, when one does, what it did since it started and the archive lag (`strata wal status`)", body = WalArchiverReply),
        (status = 401, body = ApiError), (status = 500, body = ApiError)))]
async fn wal_archiver(State(s): Api) -> Reply<WalArchiverReply> {
    let socket = strata_wal::archiver::socket_path(&s.config);
    let status = strata_wal::archiver::client::status(&socket, Duration::from_secs(2))
        .await
        .map_err(|e| {
            ApiFailure(ApiError::new(
                ErrorCode::Failed,
                strata_coordinator::error_chain(&e),
            ))
        })?;
    // No archiver is a state of the host, not a missing resource: answered as one.
    let socket_text = socket.display().to_string();
    Ok(Json(match status {
        Some(status) => WalArchiverReply::Listening(Box::new(ArchiverListening {
            listening: true,
            socket: socket_text,
            status,
        })),
        None => WalArchiverReply::None(NoArchiver {
            listening: false,
            detail: format!(
                "no WAL archiver listens at {socket_text} on the server's host (`strata wal archiver` starts one)"
            ),
            socket: socket_text,
        }),
    }))
}

fn find(
    c: &Coordinator,
    id: &str,
) -> Result<Arc<strata_coordinator::operation::Operation>, ApiFailure> {
    c.registry().get(id).ok_or_else(|| {
        ApiFailure(ApiError::new(
            ErrorCode::NotFound,
            format!("no operation {id:?} on this coordinator"),
        ))
    })
}

#[utoipa::path(get, path = "/api/v1/operations", tag = "operations",
    responses((status = 200, description = "Running and recent operations, newest first", body = [OperationStatus]),
        (status = 401, body = ApiError)))]
async fn operations(State(s): Api) -> Json<Vec<OperationStatus>> {
    Json(s.coordinator.registry().recent())
}

#[utoipa::path(get, path = "/api/v1/operations/{id}", tag = "operations",
    params(("id" = String, Path, description = "Operation id")),
    responses((status = 200, body = OperationStatus), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 404, body = ApiError)))]
async fn operation(State(s): Api, PathParam(id): PathParam<String>) -> Reply<OperationStatus> {
    Ok(Json(find(&s.coordinator, &id)?.status()))
}

/// Every change of the operation's status as an SSE `data:` line of JSON; the stream ends
/// after the final status.
#[utoipa::path(get, path = "/api/v1/operations/{id}/events", tag = "operations",
    params(("id" = String, Path, description = "Operation id")),
    responses((status = 200, description = "Server-sent events, each `data:` an OperationStatus", content_type = "text/event-stream", body = String),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 404, body = ApiError)))]
async fn events(
    State(s): Api,
    PathParam(id): PathParam<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiFailure> {
    let rx = find(&s.coordinator, &id)?.subscribe();
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

#[utoipa::path(get, path = "/api/v1/schedules", tag = "cluster",
    responses((status = 200, description = "Scheduled jobs: next run, last run, skipped runs", body = [JobStatus]),
        (status = 401, body = ApiError)))]
async fn schedules(State(s): Api) -> Json<Vec<JobStatus>> {
    Json(s.scheduler.as_ref().map(|s| s.status()).unwrap_or_default())
}

#[utoipa::path(get, path = "/api/v1/config", tag = "cluster",
    responses((status = 200, description = "The server's configuration; secrets masked, secret sources named. Beside the file's own sections, `plugin_hooks`: the hooks the components' plugins add to `[[hooks]]` (`source` `plugin`, with their `index` among the coordinator's hooks, as pause records of them are named) and the pause/resume pairs they issue themselves (`source` `implied`: Camunda's exporting pause)", body = Object),
        (status = 401, body = ApiError)))]
async fn config(State(s): Api) -> Json<serde_json::Value> {
    let mut view = s.config_view.clone();
    if let Some(object) = view.as_object_mut() {
        object.insert("plugin_hooks".into(), plugin_hooks(&s));
    }
    Json(view)
}

/// The hooks no `[[hooks]]` entry declares but the components' plugins do, shown as the
/// configuration's own are (actions as far as their hosts): those a plugin adds (a
/// Patroni pause), after the configuration's in the coordinator's list, and the pairs a
/// plugin issues itself (Camunda's exporting pause), whose pause records the coordinator
/// resumes like the others.
fn plugin_hooks(s: &ApiState) -> serde_json::Value {
    let set = s.coordinator.hooks();
    let shown =
        |hook: &strata_coordinator::hooks::HookConfig, source: &str, index: Option<usize>| {
            let mut hook = hook.clone();
            for action in [&mut hook.run, &mut hook.pause, &mut hook.resume]
                .into_iter()
                .flatten()
            {
                *action = action.masked();
            }
            let mut value = serde_json::to_value(&hook).unwrap_or_default();
            value["source"] = source.into();
            if let Some(index) = index {
                value["index"] = index.into();
            }
            value
        };
    // The coordinator's hooks are the configuration's, then the plugins' (see
    // `strata_coordinator::setup`).
    let declared = s.config.hooks.len();
    let added = set
        .hooks
        .iter()
        .enumerate()
        .skip(declared)
        .map(|(index, hook)| shown(hook, "plugin", Some(index)));
    let implied = set.implied.iter().map(|hook| shown(hook, "implied", None));
    serde_json::Value::Array(added.chain(implied).collect())
}

/// The configuration check.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CheckReport {
    /// True when every check passed.
    pub ok: bool,
    pub checks: Vec<crate::check::Check>,
}

#[utoipa::path(get, path = "/api/v1/check", tag = "cluster",
    responses((status = 200, description = "Storages and nodes reachable, schedules valid, secret sources present", body = CheckReport),
        (status = 401, body = ApiError)))]
async fn check(State(s): Api) -> Json<CheckReport> {
    let checks = crate::check::run(&s.config, &s.coordinator).await;
    Json(CheckReport {
        ok: checks.iter().all(|c| c.ok),
        checks,
    })
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "cluster", params(AuditQuery),
    responses((status = 200, description = "Audit log entries, oldest first", body = [AuditEntry]),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 500, body = ApiError)))]
async fn audit(State(s): Api, Params(query): Params<AuditQuery>) -> Reply<Vec<AuditEntry>> {
    let now = strata_coordinator::lock::now_ms();
    let since = match &query.since {
        Some(text) => strata_coordinator::audit::parse_since(text, now).map_err(bad)?,
        None => 0,
    };
    let limit = query.limit.unwrap_or(1000) as usize;
    let entries = strata_coordinator::audit::read(s.coordinator.repo(), since, limit)
        .await
        .map_err(repo_failure)?;
    Ok(Json(entries))
}

/// The OpenAPI document of this module's routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "strata coordinator API", description = "Backups, restores, verification, retention and the audit log of a strata cluster, and the table retention policies of its database. Every call needs `Authorization: Bearer <token>` (a token of role `read` makes GET requests only: anything else is 403); errors are JSON `{code, message}`."),
    paths(version, session, status, list, show, delete, pin, unpin, files, copy, drill, restore_tables, start_backup, start_restore,
        verify, cleanup, gc, repair_index, repair_backups, wal_list, wal_verify, wal_archiver, operations, operation, events, schedules, config,
        check, audit, crate::tables_api::policies, crate::tables_api::plan, crate::tables_api::history,
        crate::tables_api::edit, crate::tables_api::add, crate::tables_api::remove, crate::tables_api::run),
    components(schemas(ApiError, ErrorCode)),
    modifiers(&BearerAuth, &DocumentRefusals),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}
