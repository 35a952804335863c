//! A node whose agent runs in this process: [`strata_cluster::node::NodeApi`] answered by
//! calling the [`Agent`] directly, with the same messages a remote node gets as JSON.

use crate::service::Agent;
use async_trait::async_trait;
use std::sync::Arc;
use strata_cluster::node::{NodeApi, NodeResult};
use strata_cluster::node_api::*;
use strata_repo::summary::NodeSummary;

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
