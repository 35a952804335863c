//! One node of the cluster as the coordinator sees it: the same calls whether the agent
//! runs in this process or behind `strata server` on another host.

use async_trait::async_trait;
use std::sync::Arc;
use strata_agent::api::*;
use strata_agent::progress::ProgressSnapshot;
use strata_agent::service::Agent;
use strata_repo::summary::NodeSummary;

/// Result of a node call: a refusal or failure carries a stable code.
pub type NodeResult<T> = Result<T, ApiError>;

/// The node agent API, step by step (see [`strata_agent::service`]).
#[async_trait]
pub trait NodeApi: Send + Sync {
    /// The node's configured name.
    fn name(&self) -> &str;
    /// Where the node is, for messages: `in-process` or its URL.
    fn location(&self) -> String;
    /// Who the node is, which operation holds it, and (for PostgreSQL) what its server is now.
    async fn metadata(&self) -> NodeResult<NodeMetadata>;
    /// Takes or renews the node's lease for an operation; refused while another live
    /// operation holds it.
    async fn lease(&self, request: LeaseRequest) -> NodeResult<LeaseInfo>;
    /// Gives the lease of `operation` back: the node forgets its state and resumes what its
    /// hooks left paused there.
    async fn release(&self, operation: &str) -> NodeResult<()>;
    /// Live counters of the step that runs (or ran last) for `operation`.
    async fn progress(&self, operation: &str) -> NodeResult<ProgressSnapshot>;
    /// Step 1 of a backup: walks and chunks the node's data and reports what the repository
    /// lacks.
    async fn scan(&self, request: ScanRequest) -> NodeResult<ScanReply>;
    /// Step 2 of a backup: uploads the chunks assigned to this node.
    async fn upload(&self, request: UploadRequest) -> NodeResult<UploadReply>;
    /// Step 3 of a backup: re-reads files whose chunks nobody could upload, writes the node
    /// manifest and returns the node's figures.
    async fn finish(&self, request: FinishRequest) -> NodeResult<NodeSummary>;
    /// Step 4 of a backup, after the summary is written: the node's files cache may now
    /// point at the backup's data.
    async fn commit(&self, operation: &str) -> NodeResult<()>;
    /// Forgets a backup of `operation` that will not be committed.
    async fn abort(&self, operation: &str) -> NodeResult<()>;
    /// Restores a node of a backup into this node: files already correct are kept and every
    /// byte is verified.
    async fn restore(&self, request: RestoreRequest) -> NodeResult<RestoreReply>;
    /// Runs a step of one of the node's own hooks (see [`Agent::hook`]).
    async fn hook(&self, request: HookRequest) -> NodeResult<HookReply>;
}

/// A node whose agent runs in this process.
pub struct LocalNode(pub Arc<Agent>);

#[async_trait]
impl NodeApi for LocalNode {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn location(&self) -> String {
        "in-process".into()
    }
    async fn metadata(&self) -> NodeResult<NodeMetadata> {
        Ok(self.0.metadata().await)
    }
    async fn lease(&self, request: LeaseRequest) -> NodeResult<LeaseInfo> {
        self.0.lease(&request)
    }
    async fn release(&self, operation: &str) -> NodeResult<()> {
        self.0.release(operation);
        Ok(())
    }
    async fn progress(&self, operation: &str) -> NodeResult<ProgressSnapshot> {
        self.0.progress(operation).map(|p| p.progress)
    }
    async fn scan(&self, request: ScanRequest) -> NodeResult<ScanReply> {
        self.0.scan(request).await
    }
    async fn upload(&self, request: UploadRequest) -> NodeResult<UploadReply> {
        self.0.upload(request).await
    }
    async fn finish(&self, request: FinishRequest) -> NodeResult<NodeSummary> {
        self.0.finish(request).await
    }
    async fn commit(&self, operation: &str) -> NodeResult<()> {
        self.0.commit(operation).await
    }
    async fn abort(&self, operation: &str) -> NodeResult<()> {
        self.0.abort(operation);
        Ok(())
    }
    async fn restore(&self, request: RestoreRequest) -> NodeResult<RestoreReply> {
        self.0.restore(request).await
    }
    async fn hook(&self, request: HookRequest) -> NodeResult<HookReply> {
        self.0.hook(request).await
    }
}
