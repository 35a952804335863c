//! `/node/v1`: the node agent over HTTP, one route per [`Agent`] step.

use crate::auth::require_token;
use crate::extract::PathParam;
use crate::{ApiFailure, Reply};
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::Arc;
use strata_agent::service::Agent;
use strata_cluster::node_api::*;
use strata_repo::summary::NodeSummary;

type AgentState = State<Arc<Agent>>;

/// The largest request body the agent accepts.
const REQUEST_LIMIT: usize = 256 << 20;

/// The agent's routes behind its token.
pub fn routes(agent: Arc<Agent>, token: String) -> Router {
    Router::new()
        .route("/node/v1/metadata", get(metadata))
        .route("/node/v1/lease", post(lease))
        .route("/node/v1/release", post(release))
        .route("/node/v1/operations/{id}/progress", get(progress))
        .route("/node/v1/backup/scan", post(scan))
        .route("/node/v1/backup/upload", post(upload))
        .route("/node/v1/backup/finish", post(finish))
        .route("/node/v1/backup/commit", post(commit))
        .route("/node/v1/backup/abort", post(abort))
        .route("/node/v1/restore", post(restore))
        .route("/node/v1/hooks", post(hook))
        // Lists of chunk ids (a finish's lost chunks, an upload batch) can pass axum's
        // 2 MiB default on large nodes.
        .layer(axum::extract::DefaultBodyLimit::max(REQUEST_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(crate::auth::Tokens::single("agent", token)),
            require_token,
        ))
        .with_state(agent)
}

async fn metadata(State(agent): AgentState) -> Json<NodeMetadata> {
    Json(agent.metadata().await)
}

async fn lease(State(agent): AgentState, Json(request): Json<LeaseRequest>) -> Reply<LeaseInfo> {
    Ok(Json(agent.lease(&request)?))
}

async fn release(State(agent): AgentState, Json(request): Json<OperationRef>) -> Json<()> {
    agent.release(&request.operation);
    Json(())
}

async fn progress(
    State(agent): AgentState,
    PathParam(id): PathParam<String>,
) -> Reply<ProgressReply> {
    Ok(Json(agent.progress(&id)?))
}

async fn scan(State(agent): AgentState, Json(request): Json<ScanRequest>) -> Reply<ScanReply> {
    Ok(Json(agent.scan(request).await?))
}

async fn upload(
    State(agent): AgentState,
    Json(request): Json<UploadRequest>,
) -> Reply<UploadReply> {
    Ok(Json(agent.upload(request).await?))
}

async fn finish(
    State(agent): AgentState,
    Json(request): Json<FinishRequest>,
) -> Reply<NodeSummary> {
    Ok(Json(agent.finish(request).await?))
}

async fn commit(State(agent): AgentState, Json(request): Json<OperationRef>) -> Reply<()> {
    agent
        .commit(&request.operation)
        .await
        .map_err(ApiFailure::from)?;
    Ok(Json(()))
}

async fn abort(State(agent): AgentState, Json(request): Json<OperationRef>) -> Json<()> {
    agent.abort(&request.operation);
    Json(())
}

async fn restore(
    State(agent): AgentState,
    Json(request): Json<RestoreRequest>,
) -> Reply<RestoreReply> {
    // A coordinator checked these already; an agent does not rely on it.
    crate::extract::backup_name(&request.backup)?;
    strata_coordinator::input::check_node_name(&request.source).map_err(crate::extract::bad)?;
    if let Some(include) = &request.include {
        strata_coordinator::input::check_include(include).map_err(crate::extract::bad)?;
    }
    if let Some(recovery) = &request.recovery {
        recovery
            .check()
            .map_err(|e| crate::extract::bad(e.to_string()))?;
    }
    Ok(Json(agent.restore(request).await?))
}

async fn hook(State(agent): AgentState, Json(request): Json<HookRequest>) -> Reply<HookReply> {
    Ok(Json(agent.hook(request).await?))
}
