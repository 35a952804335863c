//! Cluster operations over node agents: a backup in parallel steps, a restore in place.
//!
//! A backup takes the cluster lock in the repository, leases every node (renewed every
//! third of the TTL), lets all nodes scan in parallel, assigns each missing chunk to one
//! holder ([`crate::assign`]), lets the nodes upload (chunks that fail go to another
//! holder; those nobody can send make their files be re-read), has every node write its
//! manifest, and writes the summary last. If any node fails, the backup stops, the others
//! are told to forget it, and the summary records it as failed with each node's reason.

use crate::assign::Holdings;
use crate::component::{Component, HookSet, OpContext, OpHooks, Scope};
use crate::hooks::{HookEnv, HookOperation, HookPoint};
use crate::lock::{list_locks, LockError, LockRecord, RepoLock};
use crate::mapping::{pair_nodes, SourceNode, TargetNode};
use crate::names::new_backup_name;
use crate::node::NodeApi;
use crate::operation::{OpState, Operation, OperationStatus, Registry};
use crate::{CoordinatorError, CoordinatorResult};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use strata_agent::api::*;
use strata_postgres::recovery::RecoveryPlan;
use strata_repo::summary::{
    backup_status, BackupStatus, BackupSummary, ComponentStatus, ComponentSummary, NodeSummary,
};
use strata_repo::{BlobId, Repository};
use strata_store::CountingStore;
use tokio::task::JoinHandle;

/// What a coordinator drives: the nodes, the repository, and how long leases live.
pub struct Coordinator {
    nodes: Vec<Arc<dyn NodeApi>>,
    /// The zone of each node, when configured: recorded in backups, used to place nodes
    /// on restore.
    zones: Vec<Option<String>>,
    storage: String,
    repo: Arc<Repository>,
    requests: Option<CountingStore>,
    lease_ttl: Duration,
    /// Chunks per upload request.
    upload_batch: std::sync::atomic::AtomicUsize,
    registry: Registry,
    stats: Arc<Mutex<OperationStats>>,
    /// What a backup is made of: each component's plugin (which nodes a backup takes,
    /// its steps once every node's data is stored) and nodes (`files` over every node
    /// unless set).
    components: Mutex<Arc<Vec<Component>>>,
    /// The `[[hooks]]` and where pauses are recorded.
    hooks: Mutex<Arc<HookSet>>,
    /// Pause records whose failed resume this process has reported: a server retries
    /// them every few seconds, and reports each once (the record and `status` keep it).
    reported_pauses: Mutex<HashSet<String>>,
    /// The operations of this process whose hooks may hold pauses now (see
    /// [`OpHooks`]): their records are theirs to resume, no one else's.
    pausing: Arc<Mutex<HashSet<String>>>,
    /// Where the ends of operations are reported (audit log, webhooks).
    events: Mutex<Arc<crate::events::Events>>,
    /// Garbage collection's grace period for unindexed packs (`[gc] grace`).
    gc_grace: Mutex<Duration>,
    /// Set by [`Coordinator::stop`]: why the process is stopping. Running operations give
    /// up their nodes' calls and record themselves failed with this reason; new ones are
    /// refused.
    stopping: Mutex<Option<String>>,
}

pub use crate::stats::OperationStats;

/// Which backup nodes go where in a restore.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RestorePlan {
    /// Restore only this node of the backup.
    #[serde(default)]
    pub node: Option<String>,
    /// Backup node -> target node; unmapped nodes go to the node of the same name.
    #[serde(default)]
    pub map: BTreeMap<String, String>,
    /// Only entries at or below this path.
    #[serde(default)]
    pub include: Option<String>,
    /// Restore only these components (all when empty). Needed to restore from a backup
    /// whose components are not all complete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<String>,
    /// `OLD=NEW` rewrites of names and endpoints for stores that hold them (etcd), after
    /// those of the configuration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rename: Vec<String>,
    /// Say what would change, write nothing (components whose plugin can: etcd).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// For a PostgreSQL backup: the recovery target and what to do there (default: replay
    /// all archived WAL, promote, start the server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoveryPlan>,
}

/// What a restore did on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeRestore {
    /// The node of the backup.
    pub source: String,
    /// The node it was restored to.
    pub node: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<RestoreReply>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a restore did for an external component (`command`, `http`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ComponentRestore {
    pub component: String,
    /// What the system reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RestoreOutcome {
    pub backup: String,
    pub nodes: Vec<NodeRestore>,
    /// External components restored through their system's API.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ComponentRestore>,
    /// Hooks that failed after the restore (a resume that failed: something is still
    /// paused).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hook_errors: Vec<String>,
    pub duration_ms: u64,
}

/// A node as `status` sees it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeState {
    pub name: String,
    pub location: String,
    pub reachable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<NodeMetadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `strata status`: nodes, locks, running operations.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClusterStatus {
    pub storage: String,
    pub nodes: Vec<NodeState>,
    pub locks: Vec<LockRecord>,
    pub operations: Vec<OperationStatus>,
    /// What hooks hold paused now: since when, by which operation (see
    /// [`crate::hooks`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paused: Vec<crate::hooks::PauseRecord>,
    /// Pause records that cannot be read or trusted (never run): something may be
    /// paused that strata will not resume.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pause_problems: Vec<String>,
}

impl From<LockError> for CoordinatorError {
    fn from(err: LockError) -> Self {
        match err {
            LockError::Busy(_) => CoordinatorError::Busy(err.to_string()),
            LockError::Lost(_) => CoordinatorError::LockLost(err.to_string()),
            LockError::Store(e) => CoordinatorError::Repo(e.into()),
        }
    }
}

/// Runs `call` on every node index in `which` at once; results in the same order.
pub(crate) async fn on_nodes<T, F, Fut>(which: &[usize], call: F) -> Vec<(usize, T)>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<(usize, JoinHandle<T>)> =
        which.iter().map(|&i| (i, tokio::spawn(call(i)))).collect();
    let mut out = Vec::with_capacity(handles.len());
    for (i, handle) in handles {
        out.push((i, handle.await.expect("node call task panicked")));
    }
    out
}

/// Node failures of one operation, by node index.
#[derive(Default)]
struct Failures(Mutex<BTreeMap<usize, ApiError>>);

impl Failures {
    fn add(&self, node: usize, why: ApiError) {
        self.0.lock().unwrap().entry(node).or_insert(why);
    }
    /// The first refusal that should stop an operation before it starts: a busy node
    /// first, then configuration problems.
    fn refusal(&self) -> Option<ApiError> {
        let failures = self.0.lock().unwrap();
        let find = |code: ErrorCode| failures.values().find(|e| e.code == code).cloned();
        find(ErrorCode::Busy).or_else(|| {
            [
                ErrorCode::Unauthorized,
                ErrorCode::Version,
                ErrorCode::BadRequest,
            ]
            .into_iter()
            .find_map(find)
        })
    }
    fn any(&self) -> bool {
        !self.0.lock().unwrap().is_empty()
    }
    fn get(&self, node: usize) -> Option<String> {
        self.0.lock().unwrap().get(&node).map(|e| e.message.clone())
    }
    /// The first failed node not in `optional`.
    fn first_outside(&self, optional: &HashSet<usize>) -> Option<usize> {
        self.0
            .lock()
            .unwrap()
            .keys()
            .find(|i| !optional.contains(i))
            .copied()
    }
}

/// The shared state of one running operation.
struct Run {
    coordinator: Arc<Coordinator>,
    op: Arc<Operation>,
    id: String,
    /// Indexes of the nodes taking part.
    members: Vec<usize>,
    /// Members of optional components: their failure does not stop the others.
    optional: HashSet<usize>,
    failures: Failures,
    started: Instant,
    /// Who asked for the operation (audit log, webhooks).
    who: String,
    /// A component whose data did not belong with the rest once stored, and asks for the
    /// backup to run again (see [`crate::plugin::NotTogether`]): why, and how many times.
    retry: Mutex<Option<(String, u32)>>,
}

impl Run {
    fn node(&self, i: usize) -> Arc<dyn NodeApi> {
        self.coordinator.nodes[i].clone()
    }

    /// Whether a node whose failure fails the operation has failed.
    fn fatal(&self) -> bool {
        self.failures.first_outside(&self.optional).is_some()
    }

    /// Fails every live member with `why`.
    fn fail_all(&self, why: &str) {
        for i in self.live() {
            self.fail(i, &ApiError::new(ErrorCode::Failed, why.to_string()));
        }
    }

    /// The hooks of this operation.
    fn hooks(&self, kind: HookOperation, backup: &str) -> OpHooks {
        let coordinator = &self.coordinator;
        OpHooks::new(
            coordinator.hooks(),
            kind,
            HookEnv {
                operation: match kind {
                    HookOperation::Backup => "backup".into(),
                    HookOperation::Restore => "restore".into(),
                },
                id: self.id.clone(),
                backup: backup.to_string(),
                ..HookEnv::default()
            },
            OpContext {
                op: self.op.clone(),
                events: coordinator.events(),
                storage: coordinator.storage.clone(),
                who: self.who.clone(),
                stats: coordinator.stats.clone(),
                nodes: coordinator.nodes.clone(),
                pausing: coordinator.pausing.clone(),
            },
        )
    }

    /// `work`, or why it was given up: this process is stopping.
    async fn unless_stopped<T>(
        &self,
        work: impl Future<Output = Result<T, String>>,
    ) -> Result<T, String> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                result = &mut work => return result,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if let Some(why) = self.coordinator.stopping() {
                        return Err(why);
                    }
                }
            }
        }
    }

    fn live(&self) -> Vec<usize> {
        let failed = self.failures.0.lock().unwrap();
        self.members
            .iter()
            .copied()
            .filter(|i| !failed.contains_key(i))
            .collect()
    }

    fn phase(&self, nodes: &[usize], phase: &str) {
        for &i in nodes {
            let name = self.coordinator.nodes[i].name().to_string();
            self.op.update_node(&name, |n| {
                n.phase = phase.to_string();
                n.progress = Default::default();
            });
        }
    }

    fn fail(&self, i: usize, err: &ApiError) {
        if err.code == ErrorCode::Cancelled && self.failures.any() {
            // Stopped because another node failed: that node carries the reason.
            return;
        }
        let name = self.coordinator.nodes[i].name().to_string();
        self.failures.add(i, err.clone());
        self.op.update_node(&name, |n| {
            n.phase = "failed".into();
            n.error = Some(err.message.clone());
        });
    }

    /// Checks versions and takes every member's lease; failures are recorded.
    async fn lease_all(self: &Arc<Self>) {
        let ttl_ms = self.coordinator.lease_ttl.as_millis() as u64;
        let results = on_nodes(&self.members, |i| {
            let (node, id) = (self.node(i), self.id.clone());
            async move {
                let meta = deadline(QUICK_CALL, node.metadata()).await?;
                if meta.api_version != API_VERSION {
                    return Err(ApiError::new(
                        ErrorCode::Version,
                        format!(
                            "node {} runs strata {} (node API v{}), this coordinator speaks v{API_VERSION}: run the same strata version on every host",
                            node.name(),
                            meta.version,
                            meta.api_version
                        ),
                    ));
                }
                deadline(QUICK_CALL, node.lease(lease_request(id, ttl_ms))).await
            }
        })
        .await;
        self.record(results);
    }

    /// Records the failed calls of a round.
    fn record<T>(&self, results: Vec<(usize, Result<T, ApiError>)>) {
        for (i, result) in results {
            if let Err(err) = result {
                self.fail(i, &err);
            }
        }
    }

    /// `call` on node `i`, given up when the node is marked failed (its lease could not
    /// be renewed: a host that hangs must not hang the operation) or, with `all`, when any
    /// node is (a backup missing a node is failed anyway; the others stop early).
    fn guarded<T: Send + 'static>(
        self: &Arc<Self>,
        i: usize,
        all: bool,
        call: impl Future<Output = Result<T, ApiError>> + Send + 'static,
    ) -> impl Future<Output = Result<T, ApiError>> + Send + 'static {
        let run = self.clone();
        async move {
            tokio::pin!(call);
            loop {
                tokio::select! {
                    result = &mut call => return result,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {
                        if let Some(why) = run.coordinator.stopping() {
                            return Err(ApiError::new(ErrorCode::Cancelled, why));
                        }
                        if let Some(why) = run.failures.get(i) {
                            return Err(ApiError::new(ErrorCode::LeaseLost, why));
                        }
                        if all && run.fatal() {
                            return Err(ApiError::new(ErrorCode::Cancelled, "another node failed"));
                        }
                    }
                }
            }
        }
    }

    /// Leases the nodes. Nothing starts, and leases and lock are given back, when another
    /// operation still holds a node (a coordinator that died a moment ago, say) or when a
    /// node refuses for a reason of configuration (token, version, wrong node at the URL):
    /// those are for the operator to fix, not failed backups to record. A node that cannot
    /// be reached is recorded and the operation goes on to record it.
    async fn take_nodes(self: &Arc<Self>, lock: RepoLock) -> CoordinatorResult<RepoLock> {
        self.lease_all().await;
        let refusal = self.failures.refusal();
        if let Some(err) = refusal {
            self.release_all().await;
            lock.release().await;
            return Err(match err.code {
                ErrorCode::Busy => CoordinatorError::Busy(format!(
                    "the cluster is busy: {}; try again when it has ended",
                    err.message
                )),
                _ => CoordinatorError::Api(err),
            });
        }
        Ok(lock)
    }

    /// Renews the leases and the cluster lock every third of the TTL; polls progress.
    fn keep_alive(self: &Arc<Self>, mut lock: RepoLock) -> KeepAlive {
        let run = self.clone();
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let renewer = tokio::spawn(async move {
            let period = run.coordinator.lease_ttl / 3;
            let ttl_ms = run.coordinator.lease_ttl.as_millis() as u64;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(period) => {}
                    _ = stop_rx.changed() => return lock,
                }
                match lock.renew().await {
                    Ok(()) => {}
                    Err(LockError::Lost(why)) => {
                        // Every node fails with the reason; nothing more becomes visible
                        // (the store's fence refuses it too).
                        eprintln!("strata: error: lost the cluster lock: {why}");
                        for i in run.live() {
                            run.fail(
                                i,
                                &ApiError::new(
                                    ErrorCode::LeaseLost,
                                    format!("lost the cluster lock: {why}"),
                                ),
                            );
                        }
                        let _ = stop_rx.changed().await;
                        return lock;
                    }
                    Err(e) => eprintln!("strata: warning: cannot renew the cluster lock: {e}"),
                }
                let results = on_nodes(&run.live(), |i| {
                    let (node, id) = (run.node(i), run.id.clone());
                    // A host that hangs must not hold up the others' renewals.
                    async move { deadline(period, node.lease(lease_request(id, ttl_ms))).await }
                })
                .await;
                let lost = results.iter().filter(|(_, r)| r.is_err()).count() as u64;
                run.coordinator.stats.lock().unwrap().lease_losses += lost;
                run.record(results);
            }
        });
        let run = self.clone();
        let poller = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let results = on_nodes(&run.live(), |i| {
                    let (node, id) = (run.node(i), run.id.clone());
                    async move { deadline(QUICK_CALL, node.progress(&id)).await }
                })
                .await;
                for (i, result) in results {
                    if let Ok(progress) = result {
                        let name = run.coordinator.nodes[i].name().to_string();
                        run.op.update_node(&name, |n| n.progress = progress);
                    }
                }
            }
        });
        KeepAlive {
            stop: stop_tx,
            renewer,
            poller,
        }
    }

    /// Gives every member's lease back (best effort: leases expire anyway).
    async fn release_all(&self) {
        on_nodes(&self.members, |i| {
            let (node, id) = (self.node(i), self.id.clone());
            async move {
                let _ = node.release(&id).await;
            }
        })
        .await;
    }
}

/// Chunks per upload request: about 700 KiB of JSON, and up to a few GiB of data.
const UPLOAD_BATCH: usize = 10_000;

/// How long a node may take to answer a call that does no work (metadata, lease,
/// progress) before it counts as unreachable.
const QUICK_CALL: Duration = Duration::from_secs(10);

/// `call` that does no work (metadata, lease, progress), or an
/// [`ErrorCode::Unreachable`] error when it takes longer than [`QUICK_CALL`].
pub(crate) async fn quick_call<T>(
    call: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    deadline(QUICK_CALL, call).await
}

/// `call`, or an [`ErrorCode::Unreachable`] error when it takes longer than `limit`.
async fn deadline<T>(
    limit: Duration,
    call: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
        Err(ApiError::new(
            ErrorCode::Unreachable,
            format!("no answer within {} s", limit.as_secs_f32()),
        ))
    })
}

/// A lease for `operation` held by this process.
fn lease_request(operation: String, ttl_ms: u64) -> LeaseRequest {
    LeaseRequest {
        operation,
        holder: crate::lock::holder_name(),
        ttl_ms,
    }
}

/// The background tasks of a running operation: lease and lock renewal, progress polling.
struct KeepAlive {
    stop: tokio::sync::watch::Sender<bool>,
    renewer: JoinHandle<RepoLock>,
    poller: JoinHandle<()>,
}

impl KeepAlive {
    /// Stops both tasks and hands the lock back for release.
    async fn stop(self) -> RepoLock {
        self.poller.abort();
        let _ = self.stop.send(true);
        self.renewer.await.expect("lease renewer panicked")
    }
}

impl Coordinator {
    /// A coordinator of `nodes` over the repository in storage `storage`.
    pub fn new(
        nodes: Vec<Arc<dyn NodeApi>>,
        zones: Vec<Option<String>>,
        storage: &str,
        repo: Arc<Repository>,
        requests: Option<CountingStore>,
        lease_ttl: Duration,
    ) -> Arc<Coordinator> {
        let mut zones = zones;
        zones.resize(nodes.len(), None);
        let whole = Component::whole(Arc::new(crate::plugin::Files), nodes.len());
        Arc::new(Coordinator {
            nodes,
            zones,
            storage: storage.to_string(),
            repo,
            requests,
            lease_ttl: lease_ttl.max(Duration::from_millis(300)),
            upload_batch: UPLOAD_BATCH.into(),
            registry: Registry::default(),
            stats: Arc::default(),
            components: Mutex::new(Arc::new(vec![whole])),
            hooks: Mutex::new(Arc::default()),
            reported_pauses: Mutex::default(),
            pausing: Arc::default(),
            events: Mutex::new(crate::events::Events::audit_only()),
            gc_grace: Mutex::new(crate::gc::DEFAULT_GRACE),
            stopping: Mutex::new(None),
        })
    }

    /// Stops every running operation of this coordinator, as a process does on SIGTERM:
    /// within a fraction of a second each one stops calling its nodes, asks them to abort,
    /// records itself failed with `why` (audit entry, webhook, a failed summary for a
    /// backup), gives back the leases and releases the cluster lock. Nothing it wrote
    /// becomes visible as complete. New operations are refused from now on.
    pub fn stop(&self, why: &str) {
        self.stopping
            .lock()
            .unwrap()
            .get_or_insert_with(|| why.to_string());
    }

    /// Why this coordinator is stopping, once [`Coordinator::stop`] was called.
    pub fn stopping(&self) -> Option<String> {
        self.stopping.lock().unwrap().clone()
    }

    /// Sets garbage collection's grace period (`[gc] grace`).
    pub fn set_gc_grace(&self, grace: Duration) {
        *self.gc_grace.lock().unwrap() = grace;
    }

    /// Makes every node one component of `plugin`.
    pub fn set_plugin(&self, plugin: Arc<dyn crate::plugin::Plugin>) {
        self.set_components(vec![Component::whole(plugin, self.nodes.len())]);
    }

    /// Sets what a backup is made of (see [`crate::component::from_config`]).
    pub fn set_components(&self, components: Vec<Component>) {
        *self.components.lock().unwrap() = Arc::new(components);
    }

    /// The components a backup is made of.
    pub fn components(&self) -> Arc<Vec<Component>> {
        self.components.lock().unwrap().clone()
    }

    /// Sets the hooks and where pauses are recorded.
    pub fn set_hooks(&self, hooks: HookSet) {
        *self.hooks.lock().unwrap() = Arc::new(hooks);
    }

    /// The hooks.
    pub fn hooks(&self) -> Arc<HookSet> {
        self.hooks.lock().unwrap().clone()
    }

    /// Resumes the pauses a process that is gone left (see
    /// [`crate::hooks::resume_orphans`]); returns what each came to, a line each.
    pub async fn resume_orphans(&self) -> Vec<String> {
        let hooks = self.hooks();
        let Some(state_dir) = hooks.state_dir.clone() else {
            return Vec::new();
        };
        let mut lines = Vec::new();
        let pausing = self.pausing.clone();
        let live_here = move |op: &str| pausing.lock().unwrap().contains(op);
        for resumed in crate::hooks::resume_orphans(&state_dir, &hooks.hooks, live_here).await {
            let record = &resumed.record;
            let line = match &resumed.error {
                None => {
                    self.reported_pauses.lock().unwrap().remove(&record.id);
                    format!(
                        "resumed {} (paused by operation {} since {}, whose process is gone)",
                        record.hook, record.operation, record.since
                    )
                }
                Some(_)
                    if !self
                        .reported_pauses
                        .lock()
                        .unwrap()
                        .insert(record.id.clone()) =>
                {
                    // Reported before: retried quietly.
                    continue;
                }
                Some(why) => {
                    self.stats.lock().unwrap().resume_failures += 1;
                    let line = format!(
                        "cannot resume {} (paused by operation {} since {}): {why}",
                        record.hook, record.operation, record.since
                    );
                    let action = crate::events::Action {
                        who: "strata",
                        kind: "hook",
                        target: &record.hook,
                        operation: Some(&record.operation),
                    };
                    self.events()
                        .notify(&action, &self.storage, "failed", &line);
                    line
                }
            };
            eprintln!("strata: {line}");
            lines.push(line);
        }
        lines
    }

    /// The plugin that took a node of a backup: its component's when configured and it
    /// claims the node, else the one of the registry that does.
    fn plugin_of(&self, node: &NodeSummary) -> Arc<dyn crate::plugin::Plugin> {
        let components = self.components();
        let claims = |c: &&Component| !c.plugin.is_external() && c.plugin.took(node);
        components
            .iter()
            .filter(claims)
            .find(|c| node.component.as_ref().is_none_or(|name| name == &c.name))
            .or_else(|| components.iter().find(claims))
            .map(|c| c.plugin.clone())
            .unwrap_or_else(|| crate::plugin::of_backup_node(node))
    }

    /// Reports operations to `events` (webhooks) besides the audit log.
    pub fn set_events(&self, events: Arc<crate::events::Events>) {
        *self.events.lock().unwrap() = events;
    }

    /// Where this coordinator reports the ends of operations.
    pub fn events(&self) -> Arc<crate::events::Events> {
        self.events.lock().unwrap().clone()
    }

    /// Reports an action of this coordinator's repository that ended with `outcome`.
    pub async fn report(&self, action: &crate::events::Action<'_>, outcome: &str, detail: &str) {
        self.events()
            .finished(&self.repo, &self.storage, action, outcome, detail)
            .await;
    }

    /// Sends at most `chunks` chunk ids per upload request (default 10 000).
    pub fn set_upload_batch(&self, chunks: usize) {
        self.upload_batch
            .store(chunks.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// The use cases on this coordinator's repository (delete, gc, cleanup, verify, ...),
    /// reported to its events and counted in its statistics: see [`crate::actions`].
    pub fn actions(&self) -> crate::actions::Actions {
        crate::actions::Actions::new(
            self.repo.clone(),
            &self.storage,
            self.events(),
            self.lease_ttl,
            *self.gc_grace.lock().unwrap(),
        )
        .with_stats(self.stats.clone())
    }

    /// Counts of finished operations since this coordinator started.
    pub fn stats(&self) -> OperationStats {
        self.stats.lock().unwrap().clone()
    }

    /// The request counter of the repository's storage, if it has one.
    pub fn requests(&self) -> Option<&CountingStore> {
        self.requests.as_ref()
    }

    /// The configured nodes.
    pub fn nodes(&self) -> &[Arc<dyn NodeApi>] {
        &self.nodes
    }

    /// The repository this coordinator writes to.
    pub fn repo(&self) -> &Arc<Repository> {
        &self.repo
    }

    /// The name of the storage of the repository.
    pub fn storage(&self) -> &str {
        &self.storage
    }

    /// Running and recent operations.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    fn node_names(&self, which: &[usize]) -> Vec<String> {
        which
            .iter()
            .map(|&i| self.nodes[i].name().to_string())
            .collect()
    }

    /// Takes the cluster lock and the leases of `members` for operation `id`, and makes
    /// the operation visible; refused (with nothing held) when the cluster or a node is
    /// busy or a node refuses for a reason of configuration.
    async fn begin(
        self: &Arc<Self>,
        id: String,
        kind: &str,
        target: &str,
        parties: Parties,
        who: &str,
    ) -> CoordinatorResult<(Arc<Run>, RepoLock)> {
        if let Some(why) = self.stopping() {
            return Err(CoordinatorError::Busy(format!(
                "this strata is stopping ({why}): no new operation starts"
            )));
        }
        if kind == "backup" {
            // A repository of an older format version is read-only until migrated: refused
            // before the lock is written, so a refused backup leaves nothing in the store.
            self.repo.check_writable()?;
        }
        let action = crate::events::Action {
            who,
            kind,
            target,
            operation: Some(&id),
        };
        match self.take(&id, kind, parties, who).await {
            Ok(taken) => {
                self.events().started(&action, &self.storage);
                Ok(taken)
            }
            Err(err) => {
                let detail = crate::error_chain(&err);
                self.report(&action, "failed", &detail).await;
                Err(err)
            }
        }
    }

    /// Takes the lock and the members' leases for operation `id`; `op`: the operation a
    /// new attempt continues (its status goes on), else a new one.
    async fn take(
        self: &Arc<Self>,
        id: &str,
        kind: &str,
        parties: Parties,
        who: &str,
    ) -> CoordinatorResult<(Arc<Run>, RepoLock)> {
        let Parties {
            members,
            optional,
            continues: op,
        } = parties;
        let id = id.to_string();
        let lock = RepoLock::acquire(self.repo.store().clone(), &id, kind, self.lease_ttl).await?;
        let names = self.node_names(&members);
        let continues = op.is_some();
        let op = match op {
            // Another attempt of the same operation: its nodes start afresh.
            Some(op) => {
                op.update(|s| {
                    s.nodes = Operation::new(&id, kind, &names).status().nodes;
                });
                op
            }
            None => Operation::new(&id, kind, &names),
        };
        let run = Arc::new(Run {
            coordinator: self.clone(),
            op: op.clone(),
            id,
            members,
            optional,
            failures: Failures::default(),
            started: Instant::now(),
            who: who.to_string(),
            retry: Mutex::new(None),
        });
        let lock = run.take_nodes(lock).await?;
        if !continues {
            self.registry.add(op);
        }
        Ok((run, lock))
    }

    /// Takes the cluster lock and prepares a backup of every node; run it with
    /// [`Pending::run`] (or let [`Coordinator::start_backup`] run it in the background).
    /// Refused with [`CoordinatorError::Busy`] while another operation holds the cluster.
    /// `who` asked for it (see [`crate::events::Action::who`]).
    pub async fn backup(self: &Arc<Self>, who: &str) -> CoordinatorResult<Pending<BackupSummary>> {
        let first = self.backup_attempt(who, None).await?;
        let op = first.run.op.clone();
        let coordinator = self.clone();
        let who = who.to_string();
        let task = async move {
            let mut attempt = first;
            let mut number = 1;
            loop {
                let BackupAttempt {
                    run,
                    lock,
                    components,
                    absent,
                    name,
                } = attempt;
                let outcome = backup(&run, lock, &components, absent).await;
                // A component whose data did not belong with the rest (etcd's checked
                // keys changed) may ask for the whole backup again: only new snapshots
                // of every component pair the data with one topology.
                let again = match (&outcome, run.retry.lock().unwrap().clone()) {
                    (Ok(_), Some((why, retries))) if number <= retries => Some(why),
                    _ => None,
                };
                finish_operation(
                    &run,
                    &name,
                    &outcome,
                    backup_state,
                    backup_detail,
                    again.is_none(),
                )
                .await;
                let Some(why) = again else {
                    return outcome;
                };
                number += 1;
                run.op.log(format!(
                    "backup {name} failed ({why}); backing up again, attempt {number}"
                ));
                match coordinator.backup_attempt(&who, Some(run.op.clone())).await {
                    Ok(next) => attempt = next,
                    Err(err) => {
                        // Nothing more can be tried: the failed attempt is the outcome.
                        run.op.log(format!(
                            "attempt {number} could not start: {}",
                            crate::error_chain(&err)
                        ));
                        settle(&run.op, &outcome, backup_state);
                        return outcome;
                    }
                }
            }
        };
        Ok(Pending {
            op,
            task: Box::pin(task),
        })
    }

    /// Prepares one attempt of a backup: components, members, the lock and the leases;
    /// `op`: the operation a new attempt continues.
    async fn backup_attempt(
        self: &Arc<Self>,
        who: &str,
        op: Option<Arc<Operation>>,
    ) -> CoordinatorResult<BackupAttempt> {
        let components = self.components();
        if self.nodes.is_empty() && !components.iter().any(|c| c.plugin.is_external()) {
            return Err(CoordinatorError::NothingToDo(
                "no nodes to back up: give a path (`strata backup DIR`) or configure [[nodes]]"
                    .into(),
            ));
        }
        // What a process that died left paused is resumed before anything is paused
        // again.
        self.resume_orphans().await;
        let mut members = Vec::new();
        let mut optional = HashSet::new();
        let mut absent = BTreeMap::new();
        for component in components.iter().filter(|c| !c.plugin.is_external()) {
            let nodes: Vec<Arc<dyn NodeApi>> = component
                .nodes
                .iter()
                .map(|&i| self.nodes[i].clone())
                .collect();
            if component.optional && !self.any_reachable(&component.nodes).await {
                absent.insert(
                    component.name.clone(),
                    "none of its nodes answers".to_string(),
                );
                continue;
            }
            let mine = match component.plugin.backup_members(&nodes).await {
                Ok(Some(mine)) => mine.into_iter().map(|k| component.nodes[k]).collect(),
                Ok(None) => component.nodes.clone(),
                Err(err) if component.optional => {
                    absent.insert(component.name.clone(), crate::error_chain(&err));
                    continue;
                }
                Err(err) => return Err(err),
            };
            if component.optional {
                optional.extend(component.nodes.iter().copied());
            }
            members.extend(mine);
        }
        let name = new_backup_name();
        let (run, lock) = self
            .begin(
                name.clone(),
                "backup",
                &name,
                Parties {
                    members,
                    optional,
                    continues: op,
                },
                who,
            )
            .await?;
        Ok(BackupAttempt {
            run,
            lock,
            components,
            absent,
            name,
        })
    }

    /// Whether any of `nodes` answers a metadata call (a short wait: this decides whether
    /// an optional component is deployed).
    async fn any_reachable(&self, nodes: &[usize]) -> bool {
        let answers = on_nodes(nodes, |i| {
            let node = self.nodes[i].clone();
            async move { deadline(Duration::from_secs(3), node.metadata()).await }
        })
        .await;
        answers.iter().any(|(_, a)| a.is_ok())
    }

    /// [`Coordinator::backup`], running in the background.
    pub async fn start_backup(self: &Arc<Self>, who: &str) -> CoordinatorResult<Arc<Operation>> {
        Ok(self.backup(who).await?.spawn())
    }

    /// The components of `summary` a restore takes (all, or those `plan` names), refused
    /// when a needed one is not complete and the user did not name the components.
    /// Empty for a backup made before components (every node).
    fn restore_selection<'a>(
        &self,
        summary: &'a BackupSummary,
        plan: &RestorePlan,
    ) -> CoordinatorResult<Vec<&'a ComponentSummary>> {
        if summary.components.is_empty() {
            if !plan.components.is_empty() {
                return Err(CoordinatorError::Invalid(format!(
                    "backup {} was made before components: restore it without --component",
                    summary.name
                )));
            }
            return Ok(Vec::new());
        }
        if plan.components.is_empty() {
            let incomplete = summary.incomplete_components();
            if !incomplete.is_empty() {
                let why: Vec<String> = incomplete
                    .iter()
                    .map(|c| match &c.error {
                        Some(e) => format!("{} is {} ({e})", c.name, c.status().as_str()),
                        None => format!("{} is {}", c.name, c.status().as_str()),
                    })
                    .collect();
                // What holds data to restore: complete components, and partial ones (an
                // unreadable file), which the user may still want.
                let good: Vec<&str> = summary
                    .components
                    .iter()
                    .filter(|c| {
                        matches!(
                            c.status(),
                            ComponentStatus::Complete | ComponentStatus::Partial
                        )
                    })
                    .map(|c| c.name.as_str())
                    .collect();
                return Err(CoordinatorError::Invalid(format!(
                    "backup {} is not complete: {}; name the components to restore (--component {})",
                    summary.name,
                    why.join(", "),
                    if good.is_empty() { "NAME".to_string() } else { good.join(" --component ") }
                )));
            }
            return Ok(summary
                .components
                .iter()
                .filter(|c| c.status() != ComponentStatus::Absent)
                .collect());
        }
        // Each named once: a name given twice would restore its nodes twice at once.
        let mut names: Vec<&String> = Vec::new();
        for name in &plan.components {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
            .into_iter()
            .map(|name| {
                summary
                    .components
                    .iter()
                    .find(|c| &c.name == name)
                    .ok_or_else(|| {
                        CoordinatorError::Invalid(format!(
                            "--component {name}: backup {} has the components {}",
                            summary.name,
                            summary
                                .components
                                .iter()
                                .map(|c| c.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    })
            })
            .collect()
    }

    /// The configured component `name`, if this coordinator has one.
    fn configured_component(&self, name: &str) -> Option<Component> {
        self.components().iter().find(|c| c.name == name).cloned()
    }

    /// Works out which backup node goes to which configured node, or says why it cannot.
    pub fn restore_pairs(
        &self,
        summary: &BackupSummary,
        plan: &RestorePlan,
    ) -> CoordinatorResult<Vec<(String, usize)>> {
        let selected = self.restore_selection(summary, plan)?;
        let (pairs, problems) = self.pair_components(summary, plan, &selected);
        if !problems.is_empty() {
            return Err(CoordinatorError::NoNode(problems.join("; ")));
        }
        if pairs.is_empty()
            && !selected
                .iter()
                .any(|c| c.nodes.is_empty() && c.status() == ComponentStatus::Complete)
        {
            return Err(CoordinatorError::NoNode(match &plan.node {
                Some(only) => format!(
                    "backup {} has no restorable node {only:?} (see `strata show {}`)",
                    summary.name, summary.name
                ),
                None => format!("backup {} has no restorable node", summary.name),
            }));
        }
        Ok(pairs)
    }

    /// The pairs of every selected component (each onto the nodes of the configured
    /// component of its name, or onto every node), and the problems found.
    fn pair_components(
        &self,
        summary: &BackupSummary,
        plan: &RestorePlan,
        selected: &[&ComponentSummary],
    ) -> (Vec<(String, usize)>, Vec<String>) {
        let mut problems = Vec::new();
        for old in plan.map.keys() {
            if !summary.nodes.iter().any(|n| &n.name == old) {
                problems.push(format!(
                    "--map {old}=...: backup {} has no node {old:?}",
                    summary.name
                ));
            }
        }
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        let groups: Vec<(Vec<&NodeSummary>, Vec<usize>)> = if summary.components.is_empty() {
            vec![(
                summary.nodes.iter().filter(|n| n.has_manifest).collect(),
                all,
            )]
        } else {
            selected
                .iter()
                .filter(|c| !c.nodes.is_empty())
                .map(|c| {
                    let sources = summary
                        .nodes
                        .iter()
                        .filter(|n| n.has_manifest && n.component.as_deref() == Some(&c.name))
                        .collect();
                    let targets = self
                        .configured_component(&c.name)
                        .filter(|t| !t.nodes.is_empty())
                        .map(|t| t.nodes)
                        .unwrap_or_else(|| all.clone());
                    (sources, targets)
                })
                .collect()
        };
        let mut pairs: Vec<(String, usize)> = Vec::new();
        for (sources, targets) in groups {
            match self.pair_group(&sources, &targets, plan) {
                Ok(mine) => pairs.extend(mine),
                Err(why) => problems.push(why),
            }
        }
        // One source per target: two restores into one node's roots at once would mix.
        for (k, (source, target)) in pairs.iter().enumerate() {
            if let Some((other, _)) = pairs[..k].iter().find(|(_, t)| t == target) {
                problems.push(format!(
                    "backup nodes {other} and {source} would both be restored onto node {}: pair them with --map (components not configured here go onto every node)",
                    self.nodes[*target].name()
                ));
            }
        }
        (pairs, problems)
    }

    /// Pairs the restorable nodes of one component with nodes among `targets`.
    fn pair_group(
        &self,
        restorable: &[&NodeSummary],
        targets: &[usize],
        plan: &RestorePlan,
    ) -> Result<Vec<(String, usize)>, String> {
        let one_node = |n: &&&NodeSummary| self.plugin_of(n).restore_to_one_node();
        if let Some(source) = restorable.iter().find(one_node) {
            // A replicated store (etcd): its copy is written through one target, the one
            // asked for (--node, or --map of the backup node) or the first.
            let wanted = plan
                .map
                .get(&source.name)
                .or(plan.node.as_ref())
                .map(String::as_str);
            let target = match wanted {
                Some(name) => targets
                    .iter()
                    .copied()
                    .find(|&i| self.nodes[i].name() == name),
                None => targets.first().copied(),
            };
            return match (target, wanted) {
                (Some(i), _) => Ok(vec![(source.name.clone(), i)]),
                (None, Some(name))
                    if plan.node.is_some() && !plan.map.contains_key(&source.name) =>
                {
                    // --node names a node of another component: nothing of this one.
                    let _ = name;
                    Ok(Vec::new())
                }
                (None, Some(name)) => Err(format!(
                    "--map {}={name}: no node {name:?} in the component",
                    source.name
                )),
                (None, None) => Err(format!(
                    "no configured node to restore {} onto",
                    source.name
                )),
            };
        }
        let every_node = |n: &&&NodeSummary| self.plugin_of(n).restore_to_every_node();
        if let Some(source) = restorable.iter().find(every_node) {
            // One copy of a whole cluster (a database), laid down on every node (or the
            // one asked for): the node's own settings make it the primary or a standby.
            let pairs: Vec<(String, usize)> = targets
                .iter()
                .filter(|&&i| {
                    plan.node
                        .as_ref()
                        .is_none_or(|only| only == self.nodes[i].name())
                })
                .map(|&i| (source.name.clone(), i))
                .collect();
            if pairs.is_empty()
                && plan.node.is_some()
                && !self
                    .nodes
                    .iter()
                    .any(|n| Some(n.name()) == plan.node.as_deref())
            {
                return Err(format!(
                    "--node {:?} is not a configured node",
                    plan.node.clone().unwrap_or_default()
                ));
            }
            return Ok(pairs);
        }
        let sources: Vec<SourceNode> = restorable
            .iter()
            .filter(|n| plan.node.as_ref().is_none_or(|only| only == &n.name))
            .map(|n| SourceNode {
                name: &n.name,
                zone: n.zone.as_deref(),
            })
            .collect();
        let target_nodes: Vec<TargetNode> = targets
            .iter()
            .map(|&i| TargetNode {
                name: self.nodes[i].name(),
                zone: self.zones[i].as_deref(),
            })
            .collect();
        let pairs = pair_nodes(&sources, &target_nodes, &plan.map)?;
        Ok(pairs.into_iter().map(|(s, k)| (s, targets[k])).collect())
    }

    /// What stops a restore before it writes anything, every problem at once: the
    /// components' plugins (known here, a data version this strata reads), their nodes
    /// (paired with targets), and the targets (they answer).
    async fn restore_problems(
        &self,
        summary: &BackupSummary,
        plan: &RestorePlan,
        selected: &[&ComponentSummary],
    ) -> Vec<String> {
        let mut problems = Vec::new();
        for c in selected {
            if c.nodes.is_empty() && c.status() != ComponentStatus::Absent {
                match self.configured_component(&c.name) {
                    Some(t) if t.plugin.is_external() && t.plugin.name() == c.plugin => {}
                    _ => problems.push(format!(
                        "component {}: a {} component is restored through its system's API, and this configuration has no [[components]] {:?} of plugin {:?}",
                        c.name, c.plugin, c.name, c.plugin
                    )),
                }
                continue;
            }
            let plugin = self
                .components()
                .iter()
                .find(|t| t.plugin.name() == c.plugin)
                .map(|t| t.plugin.clone())
                .or_else(|| crate::plugin::by_name(&c.plugin));
            match plugin {
                None => problems.push(format!(
                    "component {}: plugin {:?} is not known to this strata {}: upgrade strata",
                    c.name,
                    c.plugin,
                    env!("CARGO_PKG_VERSION")
                )),
                Some(plugin) if c.plugin_version > plugin.data_version() => problems.push(format!(
                    "component {}: written by {} data version {}, this strata reads up to {}: upgrade strata",
                    c.name, c.plugin, c.plugin_version, plugin.data_version()
                )),
                Some(_) => {}
            }
        }
        let (pairs, pairing) = self.pair_components(summary, plan, selected);
        problems.extend(pairing);
        if plan.dry_run {
            let externals = selected
                .iter()
                .filter(|c| c.nodes.is_empty() && c.status() == ComponentStatus::Complete);
            for c in externals {
                problems.push(format!(
                    "--dry-run cannot preview the {} component {}: leave it out with --component",
                    c.plugin, c.name
                ));
            }
            let sources: std::collections::BTreeSet<&String> =
                pairs.iter().map(|(s, _)| s).collect();
            for source in sources {
                let node = summary.nodes.iter().find(|n| &n.name == source);
                if let Some(node) = node.filter(|n| !self.plugin_of(n).restore_rules()) {
                    problems.push(format!(
                        "--dry-run previews components that write into a live system (etcd); node {} is {}: name the components with --component",
                        node.name,
                        node.component.as_deref().unwrap_or("plain files")
                    ));
                }
            }
        }
        if !plan.rename.is_empty() {
            for rule in &plan.rename {
                if let Err(e) = strata_etcd::Restore::parse_rule(rule) {
                    problems.push(format!("--rename {rule:?}: {e}"));
                }
            }
            let takes_rules = pairs.iter().any(|(source, _)| {
                summary
                    .nodes
                    .iter()
                    .any(|n| &n.name == source && self.plugin_of(n).restore_rules())
            });
            if !takes_rules {
                problems.push(
                    "--rename rewrites names in components that hold them (etcd); this restore has none"
                        .to_string(),
                );
            }
        }
        let mut targets: Vec<usize> = pairs.iter().map(|(_, i)| *i).collect();
        targets.sort();
        targets.dedup();
        let answers = on_nodes(&targets, |i| {
            let node = self.nodes[i].clone();
            async move { deadline(QUICK_CALL, node.metadata()).await }
        })
        .await;
        let rules = plan.dry_run || !plan.rename.is_empty();
        for (i, answer) in answers {
            match answer {
                Err(e) => problems.push(format!(
                    "node {} cannot be reached: {}",
                    self.nodes[i].name(),
                    e.message
                )),
                Ok(meta) if rules && !meta.features.iter().any(|f| f == RESTORE_RULES) => {
                    problems.push(format!(
                        "node {} runs strata {}, which does not apply --rename or --dry-run: upgrade it",
                        self.nodes[i].name(),
                        meta.version
                    ))
                }
                Ok(_) => {}
            }
        }
        problems
    }

    /// Takes the cluster lock and prepares a restore of a backup into the nodes' roots.
    pub async fn restore(
        self: &Arc<Self>,
        summary: &BackupSummary,
        plan: RestorePlan,
        who: &str,
    ) -> CoordinatorResult<Pending<RestoreOutcome>> {
        let storage = self.storage.clone();
        self.restore_from(summary, &storage, plan, who).await
    }

    /// [`Coordinator::restore`] of a backup held in the configured storage `storage`
    /// (the nodes read it from there; the cluster lock stays in this coordinator's).
    pub async fn restore_from(
        self: &Arc<Self>,
        summary: &BackupSummary,
        storage: &str,
        plan: RestorePlan,
        who: &str,
    ) -> CoordinatorResult<Pending<RestoreOutcome>> {
        let storage = storage.to_string();
        crate::input::check_restore_plan(&plan)?;
        let selected = self.restore_selection(summary, &plan)?;
        let problems = self.restore_problems(summary, &plan, &selected).await;
        if !problems.is_empty() {
            return Err(CoordinatorError::NoNode(format!(
                "restore of {} refused before anything was written: {}",
                summary.name,
                problems.join("; ")
            )));
        }
        let pairs = self.restore_pairs(summary, &plan)?;
        let externals: Vec<(Component, ComponentSummary)> = selected
            .iter()
            .filter(|c| c.nodes.is_empty() && c.status() == ComponentStatus::Complete)
            .filter_map(|c| Some((self.configured_component(&c.name)?, (*c).clone())))
            .filter(|(t, _)| t.plugin.is_external())
            .collect();
        let members: Vec<usize> = pairs.iter().map(|(_, i)| *i).collect();
        let id = format!("restore-{}", new_backup_name());
        let (run, lock) = self
            .begin(
                id,
                "restore",
                &summary.name,
                Parties {
                    members,
                    optional: HashSet::new(),
                    continues: None,
                },
                who,
            )
            .await?;
        let op = run.op.clone();
        let backup = summary.name.clone();
        let recovery = summary
            .nodes
            .iter()
            .find_map(|n| self.plugin_of(n).recovery(&plan));
        // The order between components: the order each recorded, or its plugin's rank.
        let ranks: HashMap<String, u32> = summary
            .nodes
            .iter()
            .map(|n| {
                // A node its component's plugin did not take (a plain files node beside
                // a plugin's) restores at its own plugin's rank.
                let plugin = self.plugin_of(n);
                let rank = summary
                    .component_of(n)
                    .filter(|c| c.plugin == plugin.name())
                    .map(|c| c.order)
                    .unwrap_or_else(|| plugin.restore_rank());
                (n.name.clone(), rank)
            })
            .collect();
        let scope = Scope {
            components: selected
                .iter()
                .map(|c| {
                    let nodes = pairs
                        .iter()
                        .filter(|(source, _)| c.nodes.contains(source))
                        .map(|(_, i)| self.nodes[*i].name().to_string())
                        .collect();
                    (c.name.clone(), nodes)
                })
                .collect(),
        };
        let task = async move {
            let steps = RestoreSteps {
                storage,
                include: plan.include,
                recovery,
                ranks,
                externals,
                scope,
                rename: plan.rename,
                dry_run: plan.dry_run,
            };
            let dry_run = steps.dry_run;
            let outcome = restore(&run, lock, backup.clone(), pairs, steps).await;
            let detail_of = |o: &RestoreOutcome| {
                // The audit log and webhooks tell a dry run from a restore.
                let said = if dry_run {
                    "dry run, nothing written: "
                } else {
                    ""
                };
                said.to_string()
                    + &o.nodes
                        .iter()
                        .map(|n| match &n.error {
                            Some(e) => format!("{} -> {}: {e}", n.source, n.node),
                            None => format!("{} -> {}", n.source, n.node),
                        })
                        .chain(o.components.iter().map(|c| match &c.error {
                            Some(e) => format!("{}: {e}", c.component),
                            None => c.component.clone(),
                        }))
                        .collect::<Vec<_>>()
                        .join("; ")
            };
            finish_operation(
                &run,
                &backup,
                &outcome,
                RestoreOutcome::state,
                detail_of,
                true,
            )
            .await;
            outcome
        };
        Ok(Pending {
            op,
            task: Box::pin(task),
        })
    }

    /// [`Coordinator::restore`], running in the background.
    pub async fn start_restore(
        self: &Arc<Self>,
        summary: &BackupSummary,
        plan: RestorePlan,
        who: &str,
    ) -> CoordinatorResult<Arc<Operation>> {
        Ok(self.restore(summary, plan, who).await?.spawn())
    }

    /// [`Coordinator::restore_from`], running in the background.
    pub async fn start_restore_from(
        self: &Arc<Self>,
        summary: &BackupSummary,
        storage: &str,
        plan: RestorePlan,
        who: &str,
    ) -> CoordinatorResult<Arc<Operation>> {
        Ok(self
            .restore_from(summary, storage, plan, who)
            .await?
            .spawn())
    }

    /// Nodes (reachable, versions, leases), locks, and running operations.
    pub async fn status(self: &Arc<Self>) -> CoordinatorResult<ClusterStatus> {
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        let metas = on_nodes(&all, |i| {
            let node = self.nodes[i].clone();
            async move { deadline(QUICK_CALL, node.metadata()).await }
        })
        .await;
        let nodes: Vec<NodeState> = metas
            .into_iter()
            .map(|(i, meta)| {
                let node = &self.nodes[i];
                let reachable = !matches!(&meta, Err(e) if e.code == ErrorCode::Unreachable);
                let (metadata, error) = match meta {
                    Ok(m) => (Some(m), None),
                    Err(e) => (None, Some(e.message)),
                };
                NodeState {
                    name: node.name().to_string(),
                    location: node.location(),
                    reachable,
                    metadata,
                    error,
                }
            })
            .collect();
        let now = crate::lock::now_ms();
        let locks = list_locks(self.repo.store())
            .await?
            .into_iter()
            .filter(|l| l.is_live(now))
            .collect();
        let (mut paused, mut pause_problems) = (Vec::new(), Vec::new());
        if let Some(dir) = &self.hooks().state_dir {
            for record in crate::hooks::paused(dir) {
                match record {
                    Ok(record) => paused.push(crate::hooks::shown_record(&record)),
                    Err(why) => pause_problems.push(why),
                }
            }
        }
        // What the nodes' own hooks hold paused (a shared state directory lists them once).
        for node in &nodes {
            let Some(meta) = &node.metadata else { continue };
            for record in &meta.paused {
                if !paused
                    .iter()
                    .any(|p: &crate::hooks::PauseRecord| p.id == record.id)
                {
                    paused.push(record.clone());
                }
            }
            for problem in &meta.pause_problems {
                // A state directory shared with this process lists it once.
                if !pause_problems.iter().any(|p| p.ends_with(problem.as_str())) {
                    pause_problems.push(format!("node {}: {problem}", node.name));
                }
            }
        }
        Ok(ClusterStatus {
            storage: self.storage.clone(),
            nodes,
            locks,
            operations: self.registry.running(),
            paused,
            pause_problems,
        })
    }
}

/// An operation that holds the cluster lock and is ready to run.
pub struct Pending<T> {
    op: Arc<Operation>,
    task: std::pin::Pin<Box<dyn Future<Output = CoordinatorResult<T>> + Send>>,
}

impl<T: Send + 'static> Pending<T> {
    /// The operation, to watch its progress.
    pub fn operation(&self) -> &Arc<Operation> {
        &self.op
    }

    /// Runs the operation to its end.
    pub async fn run(self) -> CoordinatorResult<T> {
        self.task.await
    }

    /// Runs the operation in the background.
    pub fn spawn(self) -> Arc<Operation> {
        let op = self.op.clone();
        tokio::spawn(self.task);
        op
    }
}

impl RestoreOutcome {
    /// Failed if a node failed, partial if some files could not be restored.
    pub fn state(&self) -> OpState {
        if self.nodes.iter().any(|n| n.error.is_some())
            || self.components.iter().any(|c| c.error.is_some())
        {
            OpState::Failed
        } else if self
            .nodes
            .iter()
            .any(|n| n.report.as_ref().is_some_and(|r| !r.errors.is_empty()))
        {
            OpState::Partial
        } else {
            OpState::Succeeded
        }
    }
}

/// The state a backup's operation ends in.
fn backup_state(s: &BackupSummary) -> OpState {
    match s.status {
        BackupStatus::Complete => OpState::Succeeded,
        BackupStatus::Partial => OpState::Partial,
        BackupStatus::Failed => OpState::Failed,
    }
}

/// What the audit log and webhooks say of a backup: a backup that is not complete says
/// why (they are read by people deciding what to fix).
fn backup_detail(s: &BackupSummary) -> String {
    let mut detail = format!(
        "{} nodes, {} files, {} bytes, {} bytes new",
        s.nodes.len(),
        s.total(|n| n.files),
        s.total(|n| n.bytes),
        s.total(|n| n.new_bytes)
    );
    let components: Vec<String> = s
        .components
        .iter()
        .map(|c| format!("{} {}", c.name, c.status().as_str()))
        .collect();
    if !components.is_empty() {
        detail.push_str(&format!("; components: {}", components.join(", ")));
    }
    for node in &s.nodes {
        if let Some(error) = &node.error {
            detail.push_str(&format!("; {}: {error}", node.name));
        }
    }
    for c in s.components.iter().filter(|c| c.nodes.is_empty()) {
        if let Some(error) = &c.error {
            detail.push_str(&format!("; {}: {error}", c.name));
        }
    }
    detail
}

/// Who takes part in an operation: the members (indexes of nodes), those of optional
/// components, and the operation a new attempt continues, if any.
struct Parties {
    members: Vec<usize>,
    optional: HashSet<usize>,
    continues: Option<Arc<Operation>>,
}

/// One attempt of a backup, ready to run.
struct BackupAttempt {
    run: Arc<Run>,
    lock: RepoLock,
    components: Arc<Vec<Component>>,
    absent: BTreeMap<String, String>,
    name: String,
}

/// Counts an operation's end, reports it (audit log, webhooks), then publishes it: a
/// client that sees the operation done finds its audit entry written.
async fn finish_operation<T: Serialize>(
    run: &Run,
    target: &str,
    outcome: &CoordinatorResult<T>,
    state_of: impl Fn(&T) -> OpState,
    detail_of: impl Fn(&T) -> String,
    last: bool,
) {
    let (state, detail) = match outcome {
        Ok(result) => (state_of(result), detail_of(result)),
        Err(err) => (OpState::Failed, crate::error_chain(err)),
    };
    let kind = run.op.status().kind;
    let action = crate::events::Action {
        who: &run.who,
        kind: &kind,
        target,
        operation: Some(&run.id),
    };
    let outcome_name = match state {
        OpState::Succeeded | OpState::Running => "succeeded",
        OpState::Partial => "partial",
        OpState::Failed => "failed",
    };
    run.coordinator
        .stats
        .lock()
        .unwrap()
        .finished(&kind, outcome_name, run.started.elapsed());
    run.coordinator.report(&action, outcome_name, &detail).await;
    if last {
        settle(&run.op, outcome, state_of);
    }
}

/// Sets an operation's end state and result (or error) from its last attempt's outcome.
fn settle<T: Serialize>(
    op: &Operation,
    outcome: &CoordinatorResult<T>,
    state_of: impl Fn(&T) -> OpState,
) {
    op.update(|s| match &outcome {
        Ok(result) => {
            s.state = state_of(result);
            s.result = Some(serde_json::to_value(result).expect("results serialize"));
        }
        Err(err) => {
            s.state = OpState::Failed;
            s.error = Some(crate::error_chain(err));
        }
    });
}

/// The backup proper; see the module documentation. `absent` names the optional
/// components that are not deployed, with why.
/// Merges the small index objects under the garbage collection lock, which every other
/// rewriter of index objects holds too; skipped when a collection runs (it merges them
/// itself). A failure costs only a slower refresh for the next view.
async fn merge_index_objects(repo: &Arc<Repository>, run: &str) {
    if !repo.list_index_objects().await.is_ok_and(|objects| {
        objects
            .iter()
            .filter(|o| o.size < strata_repo::index_merge::SMALL_OBJECT)
            .count()
            >= strata_repo::index_merge::MERGE_AT
    }) {
        return;
    }
    let Ok(lock) = crate::gc::take_gc_lock(repo, &format!("merge-{run}"), "index-merge").await
    else {
        return;
    };
    if let Err(err) = repo.merge_small_index_objects().await {
        eprintln!("strata: warning: could not merge the small index objects: {err}");
    }
    lock.release().await;
}

async fn backup(
    run: &Arc<Run>,
    lock: RepoLock,
    components: &[Component],
    absent: BTreeMap<String, String>,
) -> CoordinatorResult<BackupSummary> {
    let coordinator = &run.coordinator;
    let started = SystemTime::now();
    let clock = Instant::now();
    let requests_before = coordinator.requests.as_ref().map(|c| c.counts());
    let present: Vec<&Component> = components
        .iter()
        .filter(|c| !absent.contains_key(&c.name))
        .collect();
    let scope = Scope {
        components: present
            .iter()
            .map(|c| {
                let nodes = c
                    .nodes
                    .iter()
                    .filter(|i| run.members.contains(i))
                    .map(|&i| coordinator.nodes[i].name().to_string())
                    .collect();
                (c.name.clone(), nodes)
            })
            .collect(),
    };
    let tasks = run.keep_alive(lock);
    let mut hooks = run.hooks(HookOperation::Backup, &run.id);
    // Why the whole backup failed before its steps (a hook), for components with no
    // node to carry the reason.
    let mut failed_early: Option<String> = None;
    // Announced to garbage collection before any node reads the index: the packs this
    // backup relies on are not deleted before its summary is visible (or its mark lapsed
    // and its fence refuses the summary). See `strata_repo::condemned`.
    let mark =
        match crate::lock::mark_archive_writer(coordinator.repo.store().clone(), "backup").await {
            Ok(mark) => Some(mark),
            Err(err) => {
                failed_early = Some(format!(
                    "cannot announce the backup to garbage collection: {err}"
                ));
                None
            }
        };
    if failed_early.is_none() {
        if let Err(why) = hooks.check(&scope).await {
            failed_early = Some(why);
        } else if let Err(why) = hooks.run_at(HookPoint::Before, &scope, |_| None).await {
            failed_early = Some(why);
        } else if let Err(why) = hooks.pause_all(&scope).await {
            failed_early = Some(why);
        }
    }
    if let Some(why) = &failed_early {
        run.fail_all(why);
    }
    let mut node_summaries: BTreeMap<usize, NodeSummary> = BTreeMap::new();
    let mut external: BTreeMap<String, crate::plugin::ExternalOutcome> = BTreeMap::new();
    if failed_early.is_none() && !run.fatal() {
        let externals =
            futures::future::join_all(present.iter().filter(|c| c.plugin.is_external()).map(|c| {
                let env = HookEnv {
                    operation: "backup".into(),
                    id: run.id.clone(),
                    backup: run.id.clone(),
                    component: Some(c.name.clone()),
                    phase: "backup".into(),
                    ..HookEnv::default()
                };
                async move {
                    let outcome = run.unless_stopped(c.plugin.external_backup(&env)).await;
                    (c.name.clone(), outcome)
                }
            }));
        let (summaries, outcomes) = tokio::join!(backup_steps(run), externals);
        node_summaries = summaries;
        external.extend(outcomes);
        if !run.fatal() {
            after_stored(run, &present, &mut node_summaries).await;
        }
    }
    // The snapshots are stored (or will never be): resume what was paused, whatever
    // happened.
    let mut hook_errors = hooks.resume_all().await;
    if failed_early.is_none() && !run.fatal() {
        if let Err(why) = hooks
            .run_at(HookPoint::AfterSnapshot, &scope, |_| None)
            .await
        {
            hook_errors.push(why);
        }
    }
    let lock = tasks.stop().await;

    let failed_node = run.failures.first_outside(&run.optional);
    let component_of = |i: usize| components.iter().find(|c| c.nodes.contains(&i));
    let nodes: Vec<NodeSummary> = run
        .members
        .iter()
        .map(|&i| {
            let name = coordinator.nodes[i].name().to_string();
            let zone = coordinator.zones[i].clone();
            let component = component_of(i).map(|c| c.name.clone());
            if let Some(why) = run.failures.get(i) {
                return NodeSummary {
                    name,
                    zone,
                    component,
                    status: BackupStatus::Failed,
                    error: Some(why),
                    ..NodeSummary::default()
                };
            }
            let summary = match (node_summaries.remove(&i), &failed_node) {
                (Some(summary), None) => summary,
                (summary, Some(bad)) => NodeSummary {
                    name,
                    status: BackupStatus::Failed,
                    error: Some(format!(
                        "not finished: node {} failed",
                        coordinator.nodes[*bad].name()
                    )),
                    has_manifest: summary.is_some_and(|s| s.has_manifest),
                    ..NodeSummary::default()
                },
                (None, None) => NodeSummary {
                    name,
                    status: BackupStatus::Failed,
                    error: Some("no result".into()),
                    ..NodeSummary::default()
                },
            };
            NodeSummary {
                zone,
                component,
                ..summary
            }
        })
        .collect();
    let component_summaries: Vec<ComponentSummary> = components
        .iter()
        .map(|c| component_summary(c, &nodes, &absent, &mut external, failed_early.as_deref()))
        .collect();
    let status = backup_status(&component_summaries);
    let summary = BackupSummary {
        name: run.id.clone(),
        started: humantime::format_rfc3339_millis(started).to_string(),
        duration_ms: clock.elapsed().as_millis() as u64,
        status,
        strata_version: env!("CARGO_PKG_VERSION").to_string(),
        nodes,
        requests: coordinator
            .requests
            .as_ref()
            .zip(requests_before)
            .map(|(counter, before)| counter.counts().since(&before)),
        components: component_summaries,
    };
    // A coordinator that lost the cluster lock (another process fenced it, or this one
    // was stalled past its TTL) records nothing: the repository belongs to whoever holds
    // the lock now, and a summary could name manifests or data that process removes.
    let fenced = lock.check();
    let saved = match &fenced {
        Ok(()) => coordinator.repo.save_summary(&summary).await,
        Err(_) => Ok(()),
    };
    if fenced.is_ok() && saved.is_ok() {
        coordinator.stats.lock().unwrap().components(&summary);
        // Still under the cluster lock: fold the loose listing entries into pages.
        crate::listing::compact(&coordinator.repo, false).await;
    }
    // The summary is visible (or will never be): garbage collection may sweep now.
    if let Some(mark) = mark {
        mark.release().await;
    }
    // Only a recorded, usable backup may become the base of the next one's files caches.
    let commit = fenced.is_ok() && saved.is_ok() && status != BackupStatus::Failed;
    on_nodes(&run.live(), |i| {
        let (node, id) = (run.node(i), run.id.clone());
        async move {
            let result = if commit {
                node.commit(&id).await
            } else {
                node.abort(&id).await
            };
            if let Err(e) = result {
                eprintln!("strata: warning: {e}");
            }
        }
    })
    .await;
    run.release_all().await;
    // Keep the index objects few and bounded (see `strata_repo::index_merge`).
    if lock.check().is_ok() {
        merge_index_objects(&coordinator.repo, &run.id).await;
    }
    lock.release().await;
    // The end hooks see how each component ended (the backup's status for hooks of no
    // component).
    let status_of = |component: Option<&str>| match component {
        Some(name) => summary
            .components
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.status().as_str().to_string()),
        None => Some(summary.status.as_str().to_string()),
    };
    for point in [HookPoint::Success, HookPoint::Failure, HookPoint::Always] {
        if let Err(why) = hooks.run_at(point, &scope, status_of).await {
            hook_errors.push(why);
        }
    }
    for why in &hook_errors {
        eprintln!("strata: warning: backup {}: {why}", run.id);
    }
    if let Err(lost) = fenced {
        return Err(CoordinatorError::LockLost(format!(
            "backup {} failed and was not recorded: {lost}",
            run.id
        )));
    }
    saved?;
    Ok(summary)
}

/// A component's part of the summary, from its nodes' summaries (or its external
/// outcome).
fn component_summary(
    component: &Component,
    nodes: &[NodeSummary],
    absent: &BTreeMap<String, String>,
    external: &mut BTreeMap<String, crate::plugin::ExternalOutcome>,
    failed_early: Option<&str>,
) -> ComponentSummary {
    let mut out = ComponentSummary {
        name: component.name.clone(),
        plugin: component.plugin.name().to_string(),
        plugin_version: component.plugin.data_version(),
        optional: component.optional,
        order: component.order,
        ..ComponentSummary::default()
    };
    let (status, error) = if let Some(why) = absent.get(&component.name) {
        (ComponentStatus::Absent, Some(why.clone()))
    } else if component.plugin.is_external() {
        match external.remove(&component.name) {
            Some(Ok(record)) => {
                out.external = record;
                (ComponentStatus::Complete, None)
            }
            Some(Err(why)) => (ComponentStatus::Failed, Some(why)),
            None => (
                ComponentStatus::Failed,
                Some(
                    failed_early
                        .unwrap_or("not run: another component failed")
                        .to_string(),
                ),
            ),
        }
    } else {
        let mine: Vec<&NodeSummary> = nodes
            .iter()
            .filter(|n| n.component.as_deref() == Some(&component.name))
            .collect();
        out.nodes = mine.iter().map(|n| n.name.clone()).collect();
        let error = mine
            .iter()
            .find_map(|n| n.error.as_ref().map(|e| format!("{}: {e}", n.name)));
        if mine.is_empty() {
            (
                ComponentStatus::Failed,
                Some("no node was backed up".into()),
            )
        } else if mine.iter().any(|n| n.status == BackupStatus::Failed) {
            (ComponentStatus::Failed, error)
        } else if mine.iter().any(|n| n.status == BackupStatus::Partial) {
            (ComponentStatus::Partial, error)
        } else {
            (ComponentStatus::Complete, None)
        }
    };
    out.status = Some(status);
    out.error = error;
    out
}

/// Scan, upload, finish. Returns the node summaries of the nodes that finished; failures
/// are in `run.failures`.
async fn backup_steps(run: &Arc<Run>) -> BTreeMap<usize, NodeSummary> {
    let coordinator = &run.coordinator;
    let single = run.members.len() == 1;
    // 1. Scan everywhere at once.
    run.phase(&run.live(), "scanning");
    let scans = on_nodes(&run.live(), |i| {
        let (node, id, storage) = (run.node(i), run.id.clone(), coordinator.storage.clone());
        run.guarded(i, true, async move {
            node.scan(ScanRequest {
                operation: id,
                storage,
                upload: single,
            })
            .await
        })
    })
    .await;
    let mut holdings = Holdings::default();
    for (i, scan) in scans {
        match scan {
            Ok(reply) => {
                for chunk in &reply.missing {
                    match chunk.blob_id() {
                        Ok(id) => holdings.add(i, id, chunk.len),
                        Err(e) => run.fail(i, &e),
                    }
                }
            }
            Err(err) => run.fail(i, &err),
        }
    }
    if run.fatal() {
        return BTreeMap::new();
    }

    // 2. Upload: every missing chunk from one holder; failed chunks to another holder.
    let mut pending = holdings.ids();
    let mut excluded: HashMap<BlobId, HashSet<usize>> = HashMap::new();
    let mut lost: HashSet<BlobId> = HashSet::new();
    while !pending.is_empty() && !run.fatal() {
        // Nodes of an optional component that failed hold nothing any more.
        let down: HashSet<usize> = run
            .members
            .iter()
            .copied()
            .filter(|i| run.failures.get(*i).is_some())
            .collect();
        let (plan, orphans) = holdings.assign(pending.drain(..), &excluded, &down);
        lost.extend(orphans);
        if plan.is_empty() {
            break;
        }
        let uploading: Vec<usize> = plan.keys().copied().collect();
        run.phase(&uploading, "uploading");
        let plan = Arc::new(plan);
        let batch_size = coordinator
            .upload_batch
            .load(std::sync::atomic::Ordering::Relaxed);
        let results = on_nodes(&uploading, |i| {
            let (node, id, plan) = (run.node(i), run.id.clone(), plan.clone());
            run.guarded(i, true, async move {
                // In batches: a request stays small whatever the node's size, and each
                // batch's data is indexed (durable) before the next is sent.
                let mut total = UploadReply::default();
                for batch in plan[&i].chunks(batch_size) {
                    let reply = node
                        .upload(UploadRequest {
                            operation: id.clone(),
                            chunks: batch.iter().map(|c| c.to_hex()).collect(),
                        })
                        .await?;
                    total.stored += reply.stored;
                    total.failed.extend(reply.failed);
                }
                Ok(total)
            })
        })
        .await;
        for (i, result) in results {
            match result {
                Ok(reply) => {
                    for failed in reply.failed {
                        if let Ok(id) = parse_id(&failed.id) {
                            excluded.entry(id).or_default().insert(i);
                            pending.push(id);
                        }
                    }
                }
                Err(err) => run.fail(i, &err),
            }
        }
    }
    if run.fatal() {
        return BTreeMap::new();
    }

    // 3. Every node repairs what nobody could upload and writes its manifest.
    let live = run.live();
    run.phase(&live, "finishing");
    let lost = Arc::new(lost);
    let holdings = Arc::new(holdings);
    let finished = on_nodes(&live, |i| {
        let (node, id, lost, holdings) =
            (run.node(i), run.id.clone(), lost.clone(), holdings.clone());
        run.guarded(i, true, async move {
            let mine = lost
                .iter()
                .filter(|c| holdings.holders(c).contains(&i))
                .map(|c| c.to_hex())
                .collect();
            node.finish(FinishRequest {
                operation: id.clone(),
                backup: id,
                lost: mine,
            })
            .await
        })
    })
    .await;
    let mut out = BTreeMap::new();
    for (i, result) in finished {
        match result {
            Ok(summary) => {
                run.op
                    .update_node(coordinator.nodes[i].name(), |n| n.phase = "done".into());
                out.insert(i, summary);
            }
            Err(err) => run.fail(i, &err),
        }
    }
    out
}

/// Each component's steps once every node's data is stored: an error fails the nodes of
/// that component (the summary records it as failed, with the reason).
async fn after_stored(
    run: &Arc<Run>,
    components: &[&Component],
    nodes: &mut BTreeMap<usize, NodeSummary>,
) {
    for component in components.iter().filter(|c| !c.plugin.is_external()) {
        let stored: Vec<NodeSummary> = nodes
            .iter()
            .filter(|(i, _)| component.nodes.contains(i))
            .map(|(_, n)| n.clone())
            .collect();
        if stored.is_empty() {
            continue;
        }
        if let Err(failed) = component.plugin.after_stored(&run.id, &stored).await {
            let why = format!(
                "{} plugin, after the data was stored: {}",
                component.plugin.name(),
                failed.why
            );
            if failed.retries > 0 {
                *run.retry.lock().unwrap() = Some((
                    format!("component {}: {}", component.name, failed.why),
                    failed.retries,
                ));
            }
            for (_, summary) in nodes
                .iter_mut()
                .filter(|(i, _)| component.nodes.contains(i))
            {
                summary.status = BackupStatus::Failed;
                summary.error = Some(why.clone());
            }
        }
    }
}

/// What every node of a restore is asked to do, and in which order.
struct RestoreSteps {
    /// The storage the nodes read the backup from.
    storage: String,
    /// Only entries at or below this path.
    include: Option<String>,
    /// The recovery the nodes run once their files are back (PostgreSQL).
    recovery: Option<RecoveryPlan>,
    /// The restore order of each source node's component: lower first.
    ranks: HashMap<String, u32>,
    /// External components to restore through their system's API, with what their
    /// backup recorded.
    externals: Vec<(Component, ComponentSummary)>,
    /// Where the restore's hooks run.
    scope: Scope,
    rename: Vec<String>,
    dry_run: bool,
}

/// The restore proper: the pairs and external components of one order at once, orders
/// in turn; a failure stops the later ones. Hooks run around it, pauses resumed on every
/// path.
async fn restore(
    run: &Arc<Run>,
    lock: RepoLock,
    backup: String,
    pairs: Vec<(String, usize)>,
    steps: RestoreSteps,
) -> CoordinatorResult<RestoreOutcome> {
    let clock = Instant::now();
    let tasks = run.keep_alive(lock);
    let sources: HashMap<usize, String> = pairs.iter().map(|(s, i)| (*i, s.clone())).collect();
    type Wave<'a> = (Vec<usize>, Vec<&'a (Component, ComponentSummary)>);
    let mut waves: BTreeMap<u32, Wave> = BTreeMap::new();
    for i in run.live() {
        let rank = steps.ranks.get(&sources[&i]).copied().unwrap_or(100);
        waves.entry(rank).or_default().0.push(i);
    }
    for external in &steps.externals {
        waves.entry(external.1.order).or_default().1.push(external);
    }
    let storage = steps.storage.clone();
    let mut reports: HashMap<usize, RestoreReply> = HashMap::new();
    let mut components = Vec::new();
    let mut hooks = run.hooks(HookOperation::Restore, &backup);
    let mut hook_errors = Vec::new();
    // Why nothing more may be restored: a hook before, or a step of an earlier order
    // that failed (later orders would restore onto a system whose base is missing).
    let mut stop: Option<String> = None;
    // A dry run changes nothing: no hook, no pause.
    if steps.dry_run {
    } else if let Err(why) = hooks.check(&steps.scope).await {
        stop = Some(why);
    } else if let Err(why) = hooks
        .run_at(HookPoint::Before, &steps.scope, |_| None)
        .await
    {
        stop = Some(why);
    } else if let Err(why) = hooks.pause_all(&steps.scope).await {
        stop = Some(why);
    }
    for (live, externals) in waves.into_values() {
        if let Some(why) = &stop {
            let why = format!("not restored: {why}");
            for i in live {
                run.fail(i, &ApiError::new(ErrorCode::Failed, why.clone()));
            }
            for (component, _) in externals {
                components.push(ComponentRestore {
                    component: component.name.clone(),
                    detail: None,
                    error: Some(why.clone()),
                });
            }
            continue;
        }
        run.phase(&live, "restoring");
        let external_work =
            futures::future::join_all(externals.into_iter().map(|(component, recorded)| {
                let env = HookEnv {
                    operation: "restore".into(),
                    id: run.id.clone(),
                    backup: backup.clone(),
                    component: Some(component.name.clone()),
                    phase: "restore".into(),
                    ..HookEnv::default()
                };
                async move {
                    let result = run
                        .unless_stopped(component.plugin.external_restore(&recorded.external, &env))
                        .await;
                    (component.name.clone(), result)
                }
            }));
        let node_work = on_nodes(&live, |i| {
            let node = run.node(i);
            let request = RestoreRequest {
                operation: run.id.clone(),
                storage: storage.clone(),
                backup: backup.clone(),
                source: sources[&i].clone(),
                include: steps.include.clone(),
                recovery: steps.recovery.clone(),
                rename: steps.rename.clone(),
                dry_run: steps.dry_run,
            };
            run.guarded(i, false, async move { node.restore(request).await })
        });
        let (results, external_results) = tokio::join!(node_work, external_work);
        for (i, result) in results {
            match result {
                Ok(reply) => {
                    let name = run.coordinator.nodes[i].name().to_string();
                    run.op.update_node(&name, |n| n.phase = "done".into());
                    reports.insert(i, reply);
                }
                Err(err) => {
                    run.fail(i, &err);
                    stop.get_or_insert(format!(
                        "node {} of an earlier restore step failed",
                        run.coordinator.nodes[i].name()
                    ));
                }
            }
        }
        for (component, result) in external_results {
            match result {
                Ok(detail) => components.push(ComponentRestore {
                    component,
                    detail: Some(detail),
                    error: None,
                }),
                Err(why) => {
                    stop.get_or_insert(format!(
                        "component {component} of an earlier restore step failed"
                    ));
                    components.push(ComponentRestore {
                        component,
                        detail: None,
                        error: Some(why),
                    });
                }
            }
        }
    }
    hook_errors.extend(hooks.resume_all().await);
    let failed =
        run.failures.any() || components.iter().any(|c| c.error.is_some()) || stop.is_some();
    if !failed && !steps.dry_run {
        if let Err(why) = hooks
            .run_at(HookPoint::AfterSnapshot, &steps.scope, |_| None)
            .await
        {
            hook_errors.push(why);
        }
    }
    let lock = tasks.stop().await;
    run.release_all().await;
    lock.release().await;
    let outcome = RestoreOutcome {
        backup,
        nodes: pairs
            .into_iter()
            .map(|(source, i)| NodeRestore {
                source,
                node: run.coordinator.nodes[i].name().to_string(),
                report: reports.remove(&i),
                error: run.failures.get(i),
            })
            .collect(),
        components,
        hook_errors: Vec::new(),
        duration_ms: clock.elapsed().as_millis() as u64,
    };
    let status = match outcome.state() {
        OpState::Succeeded => "succeeded",
        OpState::Partial => "partial",
        _ => "failed",
    };
    let end_points = match steps.dry_run {
        true => &[][..],
        false => &[HookPoint::Success, HookPoint::Failure, HookPoint::Always][..],
    };
    for &point in end_points {
        if let Err(why) = hooks
            .run_at(point, &steps.scope, |_| Some(status.to_string()))
            .await
        {
            hook_errors.push(why);
        }
    }
    Ok(RestoreOutcome {
        hook_errors,
        ..outcome
    })
}
