//! The node agent: the node side of cluster operations, behind one lease.
//!
//! A coordinator first takes the node's lease (a TTL it must keep renewing), then drives a
//! backup in steps: `scan` (walk and chunk, note what the repository lacks), `upload` (send
//! the chunks assigned to this node), `finish` (repair what could not be sent, write the
//! node manifest), `commit` (save the files cache once the backup summary exists). A
//! restore is one step. The agent keeps the state between steps in memory; if the lease
//! runs out because the coordinator died or lost the network, a watchdog cancels the
//! running step and forgets the operation, so the node is free for the next coordinator.
//!
//! The same [`Agent`] serves an in-process node and `strata server`'s `/node/v1` routes.

use crate::backup::{
    backup_node, reread_file, snapshot_node, stamp_of, ChunkPlace, NodeBackup, NodeSource, ScanSink,
};
use crate::files_cache::FilesCache;
use crate::progress::Progress;
use crate::prune::prune_extraneous;
use crate::restore::{restore_node, RestoreOptions};
use crate::upload::upload_chunks;
use crate::AgentError;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use strata_cluster::node_api::*;
use strata_repo::manifest::{EntryKind, NodeManifest};
use strata_repo::manifest_chunks::{ChunkBlob, ManifestBuilder, ManifestTop};
use strata_repo::writer::{BlobWriter, WriteStats, WriterOptions};
use strata_repo::{BlobId, Repository};

mod etcd;
mod hooks;
pub mod plugin;
mod postgres;

pub use etcd::EtcdAgent;
pub use plugin::NodePlugin;

/// Opens the repository of a named storage of the agent's own configuration: storage
/// credentials and the repository password never travel between coordinator and agent.
#[async_trait::async_trait]
pub trait RepoProvider: Send + Sync {
    /// The repository in `storage`, with a fresh index; a failure keeps its kind (a wrong
    /// password, damage) so the node's answer classifies it as the coordinator would.
    async fn open(&self, storage: &str) -> ApiResult<Arc<Repository>>;
}

/// How an agent works.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The node's name and what it backs up.
    pub source: NodeSource,
    /// Where the files cache lives.
    pub state_dir: PathBuf,
    /// How backups and uploads write to the repository.
    pub writer: WriterOptions,
    /// Threads a restore writes files with (at least 1).
    pub restore_workers: usize,
    /// Restore owners (uid/gid).
    pub set_owner: bool,
    /// The steps the node's plugin adds to its backups and restores ([`plugin::files`]
    /// for plain files, a [`PostgresAgent`] for a PostgreSQL server).
    pub plugin: Arc<dyn NodePlugin>,
    /// The `[[hooks]]` with `node` = this node: the only ones it runs (see
    /// [`Agent::hook`]).
    pub hooks: Vec<strata_hooks::HookConfig>,
    /// Where its pause records go: the ledger of its state directory, shared with every
    /// other agent and coordinator of this process over that directory.
    pub pauses: strata_hooks::PauseLedger,
}

/// The postgres plugin's settings on a node.
#[derive(Debug, Clone)]
pub struct PostgresAgent {
    /// The data directory and how to reach the server.
    pub node: strata_postgres::NodeSettings,
    /// Let `pg_backup_start` spread its checkpoint instead of forcing it.
    pub spread_checkpoint: bool,
    /// How long a backup waits for its WAL to reach the archive.
    pub wal_wait: Duration,
    /// How long a restore waits for recovery to end.
    pub recovery_timeout: Duration,
    /// The command line, up to `wal-fetch`, that a restored server's `restore_command`
    /// runs (`/usr/bin/strata --config /etc/strata.toml wal-fetch`).
    pub wal_fetch_command: String,
    /// Start the WAL prefetcher beside a restore's recovery (`postgres.wal_prefetch`).
    pub wal_prefetch: bool,
    /// The REST API of a member of the Patroni cluster the node belongs to
    /// (`postgres.patroni`): a restore stops the server itself once Patroni reports the
    /// pause, keeps the member's own configuration files and leaves no recovery
    /// settings behind.
    pub patroni: Option<String>,
}

struct Lease {
    operation: String,
    holder: String,
    expires: Instant,
}

/// What a backup keeps on the node between its steps.
struct BackupState {
    repo: Arc<Repository>,
    scan: NodeBackup,
    missing: HashMap<BlobId, ChunkPlace>,
    /// What this node stored in this backup, as its writers counted it (not the ids: a
    /// million new files would hold a million of them until the finish).
    new_data: NewData,
    /// Whether the scan uploaded every chunk itself: the in-memory index then has every
    /// blob the manifest references, and the finish need not read the index again.
    uploaded_by_scan: bool,
    /// The plugin's part of the backup (PostgreSQL: the running base backup); dropping
    /// it undoes what it started (PostgreSQL aborts the base backup).
    plugin: Option<Box<dyn plugin::PluginBackup>>,
}

struct Operation {
    progress: Arc<Progress>,
    backup: tokio::sync::Mutex<Option<BackupState>>,
}

/// A node agent. Cheap to share: wrap it in an `Arc`.
pub struct Agent {
    config: AgentConfig,
    repos: Arc<dyn RepoProvider>,
    lease: Mutex<Option<Lease>>,
    operations: Mutex<HashMap<String, Arc<Operation>>>,
    /// One lock per hook (by index): its steps never overlap (see [`hooks`]).
    hook_locks: Mutex<HashMap<usize, Arc<tokio::sync::Mutex<()>>>>,
    /// Pause records whose failed resume was reported already (retried quietly).
    reported_pauses: Mutex<HashSet<String>>,
}

/// A node call's result: its value, or the error with its code.
pub type ApiResult<T> = Result<T, ApiError>;

fn failed(err: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::Failed, err.to_string())
}

fn agent_error(err: AgentError) -> ApiError {
    match err {
        AgentError::Cancelled => ApiError::new(ErrorCode::Cancelled, err.to_string()),
        other => failed(error_chain(&other)),
    }
}

/// An error and its causes as one line.
pub use strata_util::error_chain;

/// What a node stored in a backup: the sum of its writers' counts. Each writer stores a
/// blob once, and every later writer of the backup sees it indexed, so nothing is counted
/// twice.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct NewData {
    blobs: u64,
    /// Sealed bytes, as the index entries of the blobs add up.
    bytes: u64,
}

impl NewData {
    pub(crate) fn add(&mut self, stats: &WriteStats) {
        self.blobs += stats.new_blobs;
        self.bytes += stats.new_sealed_bytes;
    }
}

/// A manifest whose chunks are stored, ready for its top to be written.
struct WrittenManifest {
    top: ManifestTop,
    /// Stored size of the file data the manifest references, each blob counted once
    /// (the figures of a node count file data, not the manifest's own chunks).
    stored_bytes: u64,
}

/// Writes the chunks of the spooled manifest of `state` through `writer`, one at a time.
fn stream_manifest(
    state: &mut BackupState,
    writer: &BlobWriter,
    node: &str,
) -> ApiResult<WrittenManifest> {
    let repo = state.repo.clone();
    let manifest = &mut state.scan.manifest;
    let mut builder =
        ManifestBuilder::new(repo.keys(), manifest.node.clone(), manifest.roots.clone());
    // Distinct blobs by the first 8 bytes of their ids: a quarter of the memory of whole
    // ids, and two of a node's blobs sharing them is a 2^-64 chance per pair.
    let mut seen: HashSet<u64> = HashSet::new();
    let mut stored_bytes = 0;
    let mut missing = None;
    let store = |chunk: ChunkBlob| -> std::io::Result<()> {
        writer
            .submit(chunk.id, chunk.bytes)
            .map(|_| ())
            .map_err(std::io::Error::other)
    };
    manifest
        .for_each(|entry| {
            if let EntryKind::File { chunks, .. } = &entry.kind {
                let index = repo.index();
                for id in chunks {
                    match index.get(id) {
                        Some(location) if seen.insert(id_prefix(id)) => {
                            stored_bytes += location.length as u64
                        }
                        Some(_) => {}
                        None => {
                            missing.get_or_insert(*id);
                        }
                    }
                }
            }
            match builder.push(&entry) {
                Some(chunk) => store(chunk),
                None => Ok(()),
            }
        })
        .map_err(|e| failed(format!("node {node}: writing the manifest: {e}")))?;
    if let Some(id) = missing {
        return Err(failed(format!(
            "node {node}: blob {} is not in the repository; the backup cannot be completed",
            id.short()
        )));
    }
    let (last, top) = builder.finish();
    if let Some(chunk) = last {
        store(chunk).map_err(|e| failed(format!("node {node}: writing the manifest: {e}")))?;
    }
    Ok(WrittenManifest { top, stored_bytes })
}

fn id_prefix(id: &BlobId) -> u64 {
    u64::from_le_bytes(id.0[..8].try_into().expect("8 bytes"))
}

/// Re-reads every file of the scan whose entry references a lost chunk (one pass over
/// the spooled entries, in step with the read files, which are in entry order).
fn repair_lost(
    state: &mut BackupState,
    writer: &BlobWriter,
    lost: &HashSet<BlobId>,
) -> Result<(), AgentError> {
    let mut affected = Vec::new();
    {
        let mut files = state.scan.read_files.iter().peekable();
        let entries = state
            .scan
            .manifest
            .scan_entries()
            .map_err(AgentError::Spool)?;
        for (position, entry) in entries.enumerate() {
            let entry = entry.map_err(AgentError::Spool)?;
            while files.peek().is_some_and(|f| f.entry < position) {
                files.next();
            }
            let Some(file) = files.peek().filter(|f| f.entry == position) else {
                continue;
            };
            if let EntryKind::File { chunks, .. } = &entry.kind {
                if chunks.iter().any(|id| lost.contains(id)) {
                    affected.push(((*file).clone(), entry));
                }
            }
        }
    }
    for (file, mut entry) in affected {
        let summary = &mut state.scan.summary;
        match reread_file(&state.repo, writer, &file, summary)? {
            Some((chunks, size, meta)) => {
                let stamp = stamp_of(&meta);
                summary.bytes = summary.bytes - entry.size() + size;
                summary.warning_count += 1;
                summary.warnings.push(format!(
                    "changed: {} (modified during the backup; re-read)",
                    file.path.display()
                ));
                // Changed during the backup: read again next time, never trusted from
                // the files cache.
                entry.mtime_ns = stamp.mtime_ns;
                entry.kind = EntryKind::File { size, chunks };
            }
            None => {
                // Gone or unreadable now: the entry cannot be kept.
                summary.status = strata_repo::summary::BackupStatus::Partial;
                entry.kind = EntryKind::File {
                    size: 0,
                    chunks: Vec::new(),
                };
            }
        }
        state.scan.manifest.replace(file.entry, entry);
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("agent worker thread panicked")
}

impl Agent {
    /// Starts an agent and its lease watchdog. Call inside a tokio runtime.
    pub fn start(config: AgentConfig, repos: Arc<dyn RepoProvider>) -> Arc<Agent> {
        let agent = Arc::new(Agent {
            config,
            repos,
            lease: Mutex::new(None),
            operations: Mutex::new(HashMap::new()),
            hook_locks: Mutex::new(HashMap::new()),
            reported_pauses: Mutex::new(HashSet::new()),
        });
        tokio::spawn(watchdog(Arc::downgrade(&agent)));
        // What this node's hooks left paused when the agent before this one was killed,
        // or when a resume failed: resumed now and looked for every few seconds.
        if !agent.config.hooks.is_empty() {
            tokio::spawn(stale_pauses(Arc::downgrade(&agent)));
        }
        agent
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.config.source.name
    }

    /// Who this agent is, who holds it, and (for PostgreSQL) what its server is now.
    pub async fn metadata(&self) -> NodeMetadata {
        let state = self.config.plugin.state().await;
        let mut meta = self.lease_metadata();
        meta.postgres = state;
        (meta.paused, meta.pause_problems) = self.paused_view();
        meta
    }

    fn lease_metadata(&self) -> NodeMetadata {
        let now = Instant::now();
        let lease = self.lease.lock().unwrap();
        NodeMetadata {
            name: self.name().to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            api_version: API_VERSION,
            features: FEATURES.iter().map(|f| f.to_string()).collect(),
            roots: self.config.source.roots.clone(),
            postgres: None,
            paused: Vec::new(),
            pause_problems: Vec::new(),
            lease: lease
                .as_ref()
                .filter(|l| l.expires > now)
                .map(|l| LeaseInfo {
                    operation: l.operation.clone(),
                    holder: l.holder.clone(),
                    expires_in_ms: (l.expires - now).as_millis() as u64,
                }),
        }
    }

    /// Takes or renews the lease for an operation; refused while another live operation
    /// holds it.
    pub fn lease(&self, request: &LeaseRequest) -> ApiResult<LeaseInfo> {
        if request.ttl_ms == 0 || request.ttl_ms > 24 * 3600 * 1000 {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                "ttl_ms must be between 1 ms and 24 hours",
            ));
        }
        let now = Instant::now();
        let mut lease = self.lease.lock().unwrap();
        if let Some(held) = lease.as_ref() {
            if held.operation != request.operation && held.expires > now {
                return Err(ApiError::new(
                    ErrorCode::Busy,
                    format!(
                        "node {} is busy with operation {} of {} (lease ends in {} s unless renewed)",
                        self.name(),
                        held.operation,
                        held.holder,
                        (held.expires - now).as_secs()
                    ),
                ));
            }
        }
        *lease = Some(Lease {
            operation: request.operation.clone(),
            holder: request.holder.clone(),
            expires: now + Duration::from_millis(request.ttl_ms),
        });
        Ok(LeaseInfo {
            operation: request.operation.clone(),
            holder: request.holder.clone(),
            expires_in_ms: request.ttl_ms,
        })
    }

    /// Gives the lease back and forgets the operation's state; resumes what its hooks
    /// left paused here.
    pub fn release(self: &Arc<Self>, operation: &str) {
        let mut lease = self.lease.lock().unwrap();
        if lease.as_ref().is_some_and(|l| l.operation == operation) {
            *lease = None;
        }
        drop(lease);
        self.drop_operation(operation);
        self.resume_left_by(operation);
    }

    fn drop_operation(&self, operation: &str) {
        if let Some(op) = self.operations.lock().unwrap().remove(operation) {
            op.progress.cancel();
        }
    }

    /// Cancels what runs under an expired lease. Called by the watchdog.
    fn expire_lease(self: &Arc<Self>) {
        let mut lease = self.lease.lock().unwrap();
        let expired = match lease.as_ref() {
            Some(l) if l.expires <= Instant::now() => l.operation.clone(),
            _ => return,
        };
        *lease = None;
        drop(lease);
        eprintln!(
            "strata agent {}: lease of operation {expired} expired; cancelling it",
            self.name()
        );
        self.drop_operation(&expired);
        self.resume_left_by(&expired);
    }

    /// The operation holding a live lease, if any.
    fn lease_holder(&self) -> Option<String> {
        let lease = self.lease.lock().unwrap();
        lease
            .as_ref()
            .filter(|l| l.expires > Instant::now())
            .map(|l| l.operation.clone())
    }

    fn check_lease(&self, operation: &str) -> ApiResult<()> {
        let lease = self.lease.lock().unwrap();
        match lease.as_ref() {
            Some(l) if l.operation == operation && l.expires > Instant::now() => Ok(()),
            _ => Err(ApiError::new(
                ErrorCode::LeaseLost,
                format!(
                    "operation {operation} does not hold the lease of node {}",
                    self.name()
                ),
            )),
        }
    }

    fn operation(&self, operation: &str) -> ApiResult<Arc<Operation>> {
        self.check_lease(operation)?;
        self.operations
            .lock()
            .unwrap()
            .get(operation)
            .cloned()
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::NotFound,
                    format!("node {} has no operation {operation}", self.name()),
                )
            })
    }

    fn new_operation(&self, operation: &str) -> ApiResult<Arc<Operation>> {
        self.check_lease(operation)?;
        let op = Arc::new(Operation {
            progress: Arc::default(),
            backup: tokio::sync::Mutex::new(None),
        });
        self.operations
            .lock()
            .unwrap()
            .insert(operation.to_string(), op.clone());
        Ok(op)
    }

    /// Live counters of the step that runs (or ran last) for `operation`.
    pub fn progress(&self, operation: &str) -> ApiResult<ProgressReply> {
        let op = self.operations.lock().unwrap().get(operation).cloned();
        op.map(|op| ProgressReply {
            progress: op.progress.snapshot(),
        })
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no operation {operation}")))
    }

    fn cache_path(&self, repo: &Repository) -> PathBuf {
        FilesCache::path(&self.config.state_dir, &repo.config().id, self.name())
    }

    async fn open_repo(&self, storage: &str) -> ApiResult<Arc<Repository>> {
        self.repos.open(storage).await.map_err(|why| {
            ApiError::new(
                why.code,
                format!(
                    "node {} cannot open storage {storage}: {}",
                    self.name(),
                    why.message
                ),
            )
        })
    }

    /// Step 1 of a backup: walk, chunk and report what the repository lacks.
    pub async fn scan(&self, request: ScanRequest) -> ApiResult<ScanReply> {
        let op = self.new_operation(&request.operation)?;
        let repo = self.open_repo(&request.storage).await?;
        let plugin = self
            .config
            .plugin
            .start_backup(self.name(), &request.operation)
            .await?;
        let cache = FilesCache::load(&self.cache_path(&repo));
        let source = self.config.source.clone();
        let progress = op.progress.clone();
        let (scan, missing, new_data) = if request.upload {
            let writer = {
                let _runtime = tokio::runtime::Handle::current().enter();
                Arc::new(BlobWriter::start(repo.clone(), self.config.writer.clone()))
            };
            let (r, w) = (repo.clone(), writer.clone());
            let outcome = blocking(move || backup_node(&r, &w, &source, &cache, &progress)).await;
            let writer = Arc::into_inner(writer).expect("scan thread is done");
            let finished = writer.finish().await;
            let scan = outcome.map_err(agent_error)?;
            let stats = finished.map_err(|e| failed(error_chain(&e)))?;
            let mut new_data = NewData::default();
            new_data.add(&stats);
            (scan, HashMap::new(), new_data)
        } else {
            let r = repo.clone();
            blocking(move || {
                let mut sink = ScanSink {
                    repo: &r,
                    missing: HashMap::new(),
                };
                snapshot_node(&r, &mut sink, &source, &cache, &progress)
                    .map(|scan| (scan, sink.missing, NewData::default()))
            })
            .await
            .map_err(agent_error)?
        };
        let reply = ScanReply {
            missing: missing
                .iter()
                .map(|(id, place)| ChunkRef::new(id, place.len))
                .collect(),
            summary: scan.summary.clone(),
        };
        *op.backup.lock().await = Some(BackupState {
            repo,
            scan,
            missing,
            new_data,
            plugin,
            uploaded_by_scan: request.upload,
        });
        Ok(reply)
    }

    /// Step 2 of a backup: upload the chunks assigned to this node.
    pub async fn upload(&self, request: UploadRequest) -> ApiResult<UploadReply> {
        let op = self.operation(&request.operation)?;
        let ids = request
            .chunks
            .iter()
            .map(|hex| parse_id(hex))
            .collect::<ApiResult<Vec<_>>>()?;
        let mut guard = op.backup.lock().await;
        let state = guard
            .take()
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "upload before scan: scan first"))?;
        op.progress.reset();
        let writer = {
            let _runtime = tokio::runtime::Handle::current().enter();
            BlobWriter::start(state.repo.clone(), self.config.writer.clone())
        };
        let progress = op.progress.clone();
        let (state, writer, outcome) = blocking(move || {
            let outcome = upload_chunks(
                &state.repo,
                &writer,
                &state.scan.read_files,
                &state.missing,
                &ids,
                &progress,
            );
            (state, writer, outcome)
        })
        .await;
        let finished = writer.finish().await;
        let mut state = state;
        let outcome = outcome.map_err(agent_error)?;
        let stats = finished.map_err(|e| failed(error_chain(&e)))?;
        state.new_data.add(&stats);
        *guard = Some(state);
        Ok(UploadReply {
            stored: outcome.stored,
            failed: outcome
                .failed
                .into_iter()
                .map(|(id, reason)| FailedChunk {
                    id: id.to_hex(),
                    reason,
                })
                .collect(),
        })
    }

    /// Step 3 of a backup: re-read files whose chunks nobody could upload, then write the
    /// node manifest. Returns the node's figures.
    pub async fn finish(
        &self,
        request: FinishRequest,
    ) -> ApiResult<strata_repo::summary::NodeSummary> {
        let op = self.operation(&request.operation)?;
        let lost = request
            .lost
            .iter()
            .map(|hex| parse_id(hex))
            .collect::<ApiResult<HashSet<_>>>()?;
        let mut guard = op.backup.lock().await;
        let mut state = guard
            .take()
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "finish before scan: scan first"))?;
        let repaired = !lost.is_empty();
        if repaired {
            state = self.repair(state, lost, &op.progress).await?;
        }
        // Other nodes' uploads are in index objects this process has not read; a scan
        // that uploaded everything itself added its packs to the in-memory index already
        // (and reading a large index again costs twice its memory while it is rebuilt).
        if !state.uploaded_by_scan || repaired {
            state
                .repo
                .reload_index()
                .await
                .map_err(|e| failed(error_chain(&e)))?;
        }
        if let Some(plugin) = state.plugin.take() {
            let mut step = plugin::BackupStep {
                agent: self,
                state: &mut state,
            };
            let record = plugin.finish(&mut step).await?;
            state.scan.summary.plugin = record;
        }
        let (state, written) = self.write_manifest_chunks(state).await?;
        let top = written?;
        let mut summary = state.scan.summary.clone();
        summary.stored_bytes = top.stored_bytes;
        summary.new_bytes = state.new_data.bytes;
        summary.new_blobs = state.new_data.blobs;
        // Right before the manifest makes the backup's data visible: a coordinator that
        // stopped renewing (stalled, or lost its cluster lock) must not have it written.
        self.check_lease(&request.operation)?;
        state
            .repo
            .save_manifest_top(&request.backup, &top.top)
            .await
            .map_err(|e| failed(error_chain(&e)))?;
        summary.has_manifest = true;
        *guard = Some(state);
        Ok(summary)
    }

    /// Streams the spooled manifest into chunk blobs (a writer of their own), checking
    /// that every blob it references is in the repository; returns the top to write.
    async fn write_manifest_chunks(
        &self,
        state: BackupState,
    ) -> ApiResult<(BackupState, ApiResult<WrittenManifest>)> {
        let writer = {
            let _runtime = tokio::runtime::Handle::current().enter();
            BlobWriter::start(state.repo.clone(), self.config.writer.clone())
        };
        let node = self.name().to_string();
        let (state, writer, outcome) = blocking(move || {
            let mut state = state;
            let outcome = stream_manifest(&mut state, &writer, &node);
            (state, writer, outcome)
        })
        .await;
        let finished = writer.finish().await;
        let outcome = outcome.and_then(|top| {
            finished.map_err(|e| failed(error_chain(&e)))?;
            Ok(top)
        });
        Ok((state, outcome))
    }

    /// Re-reads (and uploads) every file that references a lost chunk.
    async fn repair(
        &self,
        state: BackupState,
        lost: HashSet<BlobId>,
        progress: &Arc<Progress>,
    ) -> ApiResult<BackupState> {
        progress.reset();
        let writer = {
            let _runtime = tokio::runtime::Handle::current().enter();
            BlobWriter::start(state.repo.clone(), self.config.writer.clone())
        };
        let (state, writer, outcome) = blocking(move || {
            let mut state = state;
            let outcome = repair_lost(&mut state, &writer, &lost);
            (state, writer, outcome)
        })
        .await;
        let finished = writer.finish().await;
        outcome.map_err(agent_error)?;
        let stats = finished.map_err(|e| failed(error_chain(&e)))?;
        let mut state = state;
        state.new_data.add(&stats);
        Ok(state)
    }

    /// Step 4 of a backup, after the summary is written: the files cache may now point at
    /// the backup's data.
    pub async fn commit(&self, operation: &str) -> ApiResult<()> {
        let op = self.operation(operation)?;
        let state = op.backup.lock().await.take();
        if let Some(state) = state {
            if let Err(err) = state.scan.cache.save() {
                // A lost cache only costs speed next time; the backup itself is fine.
                eprintln!(
                    "strata agent {}: warning: {}",
                    self.name(),
                    error_chain(&err)
                );
            }
        }
        self.operations.lock().unwrap().remove(operation);
        Ok(())
    }

    /// Forgets a backup that will not be committed.
    pub fn abort(&self, operation: &str) {
        self.drop_operation(operation);
    }

    /// Restores node `source` of a backup into this node's roots: files already correct
    /// are kept, every byte is verified, and (for a whole-node restore) files inside the
    /// roots that are not in the backup are removed.
    pub async fn restore(&self, request: RestoreRequest) -> ApiResult<RestoreReply> {
        let op = self.new_operation(&request.operation)?;
        let repo = self.open_repo(&request.storage).await?;
        let plugin = self
            .config
            .plugin
            .start_restore(&plugin::RestoreStart {
                node: self.name(),
                repo: &repo,
                request: &request,
            })
            .await?;
        let manifest = repo
            .load_manifest(&request.backup, &request.source)
            .await
            .map_err(|e| failed(error_chain(&e)))?;
        if !self.config.plugin.lays_down_files() {
            return self
                .restore_without_files(&request, repo, plugin, manifest)
                .await;
        }
        let target = restore_target(&manifest, &self.config.source.roots)?;
        let include = plugin
            .as_ref()
            .and_then(|p| p.include())
            .or_else(|| request.include.clone())
            .map(|p| p.trim_matches('/').as_bytes().to_vec());
        let manifest = Arc::new(manifest);
        let options = RestoreOptions {
            workers: self.config.restore_workers.max(1),
            set_owner: self.config.set_owner,
            include: include.clone(),
            progress: op.progress.clone(),
            sync: true,
            hollow: Vec::new(),
            exclude: plugin
                .as_ref()
                .map(|p| p.exclude())
                .unwrap_or_default()
                .into_iter()
                .map(|p| p.trim_matches('/').as_bytes().to_vec())
                .collect(),
        };
        let report = restore_node(repo.clone(), manifest.clone(), target.clone(), options)
            .await
            .map_err(agent_error)?;
        for warning in &report.warnings {
            eprintln!(
                "strata: warning: restore of node {}: {warning}",
                manifest.node
            );
        }
        let mut removed = 0;
        if include.is_none() {
            let (m, t) = (manifest.clone(), target.clone());
            let roots = self.config.source.roots.clone();
            let exclude = self.config.source.exclude.clone();
            removed = blocking(move || prune_extraneous(&m, &t, &roots, &exclude))
                .await
                .map_err(|e| failed(format!("removing files not in the backup: {e}")))?;
        }
        let recovery = match plugin {
            Some(plugin) if report.errors.is_empty() => {
                plugin
                    .finish(&self.restored(&request, &manifest, &target, &repo))
                    .await
            }
            _ => Ok(None),
        };
        self.operations.lock().unwrap().remove(&request.operation);
        let recovery = recovery?;
        Ok(RestoreReply {
            recovery,
            target: target.display().to_string(),
            files: report.files,
            dirs: report.dirs,
            bytes: report.bytes,
            files_kept: report.files_kept,
            removed,
            errors: report.errors,
            written: None,
        })
    }
}

impl Agent {
    /// What a plugin's step after a restore sees.
    fn restored<'a>(
        &'a self,
        request: &'a RestoreRequest,
        manifest: &'a NodeManifest,
        target: &'a Path,
        repo: &'a Repository,
    ) -> plugin::Restored<'a> {
        plugin::Restored {
            node: self.name(),
            request,
            manifest,
            target,
            roots: &self.config.source.roots,
            state_dir: &self.config.state_dir,
            repo,
        }
    }

    /// The restore of a plugin that writes its data into a live system (etcd): no file
    /// is laid down anywhere; the plugin reads what it needs from the manifest.
    async fn restore_without_files(
        &self,
        request: &RestoreRequest,
        repo: Arc<Repository>,
        plugin: Option<Box<dyn plugin::PluginRestore>>,
        manifest: NodeManifest,
    ) -> ApiResult<RestoreReply> {
        let target = PathBuf::from(format!("({})", self.config.plugin.name()));
        let result = match plugin {
            Some(plugin) => {
                plugin
                    .finish(&self.restored(request, &manifest, &target, &repo))
                    .await
            }
            None => Ok(None),
        };
        self.operations.lock().unwrap().remove(&request.operation);
        Ok(RestoreReply {
            written: result?,
            target: target.display().to_string(),
            ..RestoreReply::default()
        })
    }
}

/// Where a node manifest goes on this node: into the node's root when both the backup and
/// the node have a single root, else at the original absolute paths.
fn restore_target(manifest: &NodeManifest, roots: &[String]) -> ApiResult<PathBuf> {
    let single_root = |roots: &[String]| roots.len() == 1 && !roots[0].contains(['*', '?', '[']);
    if manifest.roots.len() == 1 {
        if !single_root(roots) {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                "the backup has one root but this node has several: configure one root to restore it here",
            ));
        }
        let root = Path::new(&roots[0]);
        let original = Path::new(&manifest.roots[0]);
        // A single-file root was stored under its file name.
        let file_root = manifest.entries.len() == 1
            && !matches!(manifest.entries[0].kind, EntryKind::Dir)
            && original.file_name().map(|n| n.as_bytes()) == Some(&manifest.entries[0].path[..]);
        if file_root {
            return Ok(root.parent().unwrap_or(Path::new("/")).to_path_buf());
        }
        return Ok(root.to_path_buf());
    }
    Ok(PathBuf::from("/"))
}

async fn stale_pauses(agent: Weak<Agent>) {
    loop {
        match agent.upgrade() {
            Some(agent) => agent.resume_stale().await,
            None => return,
        }
        tokio::time::sleep(hooks::STALE_EVERY).await;
    }
}

async fn watchdog(agent: Weak<Agent>) {
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        match agent.upgrade() {
            Some(agent) => agent.expire_lease(),
            None => return,
        }
    }
}
