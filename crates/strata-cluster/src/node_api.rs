//! The requests and replies between a coordinator and a node agent: the words of
//! [`crate::node::NodeApi`], which `strata_agent` answers.
//!
//! The same types travel as JSON over HTTP (`/node/v1/...`) and as plain values to an
//! in-process agent, so both kinds of node behave alike. [`API_VERSION`] and
//! [`NodeMetadata::features`] let an older agent and a newer coordinator tell each other
//! apart: a coordinator refuses an agent whose version it does not speak, with a message
//! saying which side to upgrade, instead of failing half-way through a backup.
//!
//! ```
//! use strata_cluster::node_api::{ChunkRef, ErrorCode};
//! use strata_repo::BlobId;
//!
//! // What crosses the wire between a coordinator and an agent is checked on arrival: a
//! // chunk reference names its blob in hex, and anything else is a bad request.
//! let chunk = ChunkRef::new(&BlobId([7; 32]), 4096);
//! assert_eq!(chunk.blob_id().unwrap(), BlobId([7; 32]));
//! let forged = ChunkRef { id: "../../etc/passwd".into(), len: 1 };
//! assert_eq!(forged.blob_id().unwrap_err().code, ErrorCode::BadRequest);
//! ```

use serde::{Deserialize, Serialize};
use strata_repo::summary::NodeSummary;
use strata_repo::BlobId;

/// The version of the node API this build speaks. Bumped on incompatible changes.
pub const API_VERSION: u32 = 1;

/// What this agent can do, for coordinators that need to know.
pub const FEATURES: &[&str] = &[
    "lease",
    "backup-scan-upload",
    "restore-in-place",
    RESTORE_RULES,
    NODE_HOOKS,
];

/// An agent that runs this node's own hooks (`POST /node/v1/hooks`).
pub const NODE_HOOKS: &str = "hooks";

/// An agent that applies a restore request's `rename` and `dry_run` (an older one would
/// ignore them and write for real).
pub const RESTORE_RULES: &str = "restore-rules";

/// `GET /node/v1/metadata`: who the agent is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeMetadata {
    /// The node's name in the cluster configuration.
    pub name: String,
    /// strata version of the agent.
    pub version: String,
    /// The node API version it speaks ([`API_VERSION`]).
    pub api_version: u32,
    /// What it can do ([`FEATURES`]); a coordinator checks for those it needs.
    pub features: Vec<String>,
    /// The roots the agent backs up and restores into.
    pub roots: Vec<String>,
    /// For a PostgreSQL node: `primary`, `standby`, or why the server cannot be reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<String>,
    /// What this node's hooks hold paused now (actions' URLs masked).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub paused: Vec<strata_hooks::PauseRecord>,
    /// Pause records of this node that cannot be trusted or read (never run).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pause_problems: Vec<String>,
    /// The operation that holds the node's lease, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseInfo>,
}

/// Who holds a node and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LeaseInfo {
    /// The operation id the lease was taken for.
    pub operation: String,
    /// Who asked for it (coordinator host and process).
    pub holder: String,
    /// Milliseconds until it expires unless renewed.
    pub expires_in_ms: u64,
}

/// `POST /node/v1/lease`: take or renew the node for an operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    /// The operation id; later requests of the operation name it.
    pub operation: String,
    /// Who asks (coordinator host and process), shown to those refused meanwhile.
    pub holder: String,
    /// How long the lease lasts unless renewed, in milliseconds (1 ms to 24 hours).
    pub ttl_ms: u64,
}

/// `POST /node/v1/backup/scan`: walk the roots, reuse the files cache, cut chunks, and
/// report those the repository lacks (uploading them at once when `upload` is set, as a
/// cluster of one node has nobody to share chunks with).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanRequest {
    /// The operation id the node's lease was taken for.
    pub operation: String,
    /// The storage of the agent's configuration that holds the repository.
    pub storage: String,
    /// Upload missing chunks during the scan instead of waiting for an upload request.
    pub upload: bool,
}

/// A chunk the repository lacks: its id (hex) and plaintext length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// The blob id, hex.
    pub id: String,
    /// Plaintext length in bytes.
    pub len: u32,
}

impl ChunkRef {
    /// A reference to `id` of `len` bytes.
    pub fn new(id: &BlobId, len: u32) -> Self {
        ChunkRef {
            id: id.to_hex(),
            len,
        }
    }

    /// The id, or an error naming the bad value.
    pub fn blob_id(&self) -> Result<BlobId, ApiError> {
        parse_id(&self.id)
    }
}

/// Parses a hex blob id from a request.
pub fn parse_id(hex: &str) -> Result<BlobId, ApiError> {
    BlobId::from_hex(hex)
        .ok_or_else(|| ApiError::new(ErrorCode::BadRequest, format!("bad blob id {hex:?}")))
}

/// The reply to a scan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScanReply {
    /// Chunks the repository lacks that this node holds.
    pub missing: Vec<ChunkRef>,
    /// Files, bytes and warnings so far.
    pub summary: NodeSummary,
}

/// `POST /node/v1/backup/upload`: upload these chunks (hex ids) from where the scan saw
/// them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadRequest {
    /// The operation id the node's lease was taken for.
    pub operation: String,
    /// Hex ids of chunks this node's scan reported missing.
    pub chunks: Vec<String>,
}

/// The reply to an upload: what could not be sent (the coordinator tries another holder).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UploadReply {
    /// How many chunks this node stored (the others were in the repository already).
    pub stored: u64,
    /// Chunks it could not read back as scanned; empty when all went up.
    pub failed: Vec<FailedChunk>,
}

/// A chunk that could not be uploaded, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedChunk {
    /// The blob id, hex.
    pub id: String,
    /// Why, for the operation's log.
    pub reason: String,
}

/// `POST /node/v1/backup/finish`: re-read the files whose chunks nobody could upload
/// (`lost`), then write the node manifest under `backup`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinishRequest {
    /// The operation id the node's lease was taken for.
    pub operation: String,
    /// The backup's name, under which the node manifest is written.
    pub backup: String,
    /// Hex ids of chunks no node could upload; files holding them are read again.
    pub lost: Vec<String>,
}

/// What a coordinator asks of a node's hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookStep {
    /// A `run` hook at the point `env.phase` names.
    Run,
    /// A pause/resume pair's pause: recorded under the agent's state directory first.
    Pause,
    /// Its resume (retried by the agent; a no-op when nothing is paused).
    Resume,
    /// Only whether the agent declares the hook (`run` at `env.phase`, or a pause/resume
    /// pair when `env.phase` is `pause`): nothing runs. A coordinator asks this of every
    /// node hook before an operation pauses anything.
    Check,
}

/// `POST /node/v1/hooks`: run one of the hooks this node's own configuration declares for
/// it (`[[hooks]]` with `node` = this node), found by name: a coordinator cannot make an
/// agent run anything else. `run` and `pause` need the lease of `operation`; `resume`
/// does not (it must always be possible).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookRequest {
    /// The operation id; `run` and `pause` need its lease.
    pub operation: String,
    /// The hook's name (its `name`, else its action as logs show it).
    pub hook: String,
    /// What to do with the hook.
    pub step: HookStep,
    /// What the hook is told (environment of a command, body of an HTTP call).
    pub env: strata_hooks::HookEnv,
}

/// What a node's hook did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HookReply {
    /// Its output (bounded), for the operation's log.
    pub output: String,
}

/// `POST /node/v1/backup/commit` and `/abort` (after the summary is written, or instead).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationRef {
    /// The operation id.
    pub operation: String,
}

/// `POST /node/v1/restore`: lay down node `source` of `backup` into this agent's roots.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// The operation id the node's lease was taken for.
    pub operation: String,
    /// The storage of the agent's configuration that holds the repository.
    pub storage: String,
    /// The backup's name.
    pub backup: String,
    /// The node of the backup to restore here (may differ from this node's name).
    pub source: String,
    /// Only entries at or below this path.
    #[serde(default)]
    pub include: Option<String>,
    /// For a PostgreSQL backup: how the restored server recovers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<strata_postgres::recovery::RecoveryPlan>,
    /// For a plugin that writes into a live system (etcd): `OLD=NEW` rewrites of names
    /// and endpoints, applied after those of the node's configuration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rename: Vec<String>,
    /// For such a plugin: say what would change, write nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// Every node of the backup this restore lays down, this one's `source` among them: a
    /// plugin whose nodes share data (ClickHouse replicas) picks which of them writes it.
    /// Empty: every node of the backup.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
    /// For a plugin whose data is tables (ClickHouse): only this table (`DB.TABLE`),
    /// created as `table_as` beside the live ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// With `table`: the name it comes back under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_as: Option<String>,
    /// For a plugin whose replicas register in a coordination service (ClickHouse):
    /// remove the replicas there that the tables it creates would meet and no running
    /// server holds, instead of refusing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drop_stale_replicas: bool,
    /// With `table`: only these partitions (ClickHouse partition ids).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<String>,
}

/// What a restore did on one node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RestoreReply {
    /// Where the node was restored.
    pub target: String,
    /// Regular files restored, those kept included.
    pub files: u64,
    /// Directories created.
    pub dirs: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Files that were already correct and kept.
    pub files_kept: u64,
    /// Files and directories inside the roots that are not in the backup and were removed.
    pub removed: u64,
    /// Files that could not be restored. Empty on success.
    pub errors: Vec<String>,
    /// What the node's plugin did once the files were back, naming its system
    /// ("PostgreSQL recovered and promoted", "ClickHouse 18.16.1 (shard 1, replica
    /// ch1): 4 tables created, 9 parts attached ...").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<String>,
    /// For a plugin that writes into a live system instead of laying files down (etcd):
    /// what it wrote, or would write on a dry run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written: Option<String>,
}

/// A node operation's counters at one moment (the agent's `Progress`), as sent to the
/// coordinator and the CLI.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProgressSnapshot {
    /// Files handled so far.
    pub files: u64,
    /// Bytes of those files.
    pub bytes: u64,
    /// Files that could not be handled.
    pub failed: u64,
    /// Totals when known up front (restores, uploads); 0 while a backup is still walking.
    pub total_files: u64,
    /// See `total_files`.
    pub total_bytes: u64,
}

/// `GET /node/v1/operations/{id}/progress`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressReply {
    /// The operation's figures so far.
    pub progress: ProgressSnapshot,
}

/// Why a request was refused or failed, with a stable code for programs and a message for
/// people.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error, utoipa::ToSchema,
)]
#[error("{message}")]
pub struct ApiError {
    /// What kind of failure, for programs.
    pub code: ErrorCode,
    /// What happened, for people.
    pub message: String,
}

/// The kinds of failure and their codes live in `strata-failure`, the one classification.
pub use strata_failure::ErrorCode;

impl ApiError {
    /// An error with `code` and a human message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    /// The HTTP status that carries this error.
    pub fn http_status(&self) -> u16 {
        self.code.http_status()
    }
}
