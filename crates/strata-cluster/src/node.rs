//! One node of the cluster as the coordinator sees it: the same calls whether the agent
//! runs in this process or behind `strata server` on another host.

use crate::node_api::*;
use async_trait::async_trait;
use strata_repo::summary::NodeSummary;

/// Result of a node call: a refusal or failure carries a stable code.
pub type NodeResult<T> = Result<T, ApiError>;

/// The node agent API, step by step (`strata_agent::service::Agent` answers it; in this
/// process through `strata_agent::local_node::LocalNode`).
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
    /// Runs a step of one of the node's own hooks (see `strata_agent::service::Agent::hook`).
    async fn hook(&self, request: HookRequest) -> NodeResult<HookReply>;
}
