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
    async fn metadata(&self) -> NodeResult<NodeMetadata>;
    async fn lease(&self, request: LeaseRequest) -> NodeResult<LeaseInfo>;
    async fn release(&self, operation: &str) -> NodeResult<()>;
    async fn progress(&self, operation: &str) -> NodeResult<ProgressSnapshot>;
    async fn scan(&self, request: ScanRequest) -> NodeResult<ScanReply>;
    async fn upload(&self, request: UploadRequest) -> NodeResult<UploadReply>;
    async fn finish(&self, request: FinishRequest) -> NodeResult<NodeSummary>;
    async fn commit(&self, operation: &str) -> NodeResult<()>;
    async fn abort(&self, operation: &str) -> NodeResult<()>;
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
