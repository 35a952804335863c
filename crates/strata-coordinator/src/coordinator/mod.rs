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
use crate::names::{new_backup_name, new_backup_name_at};
use crate::node::NodeApi;
use crate::operation::{OpState, Operation, OperationStatus, Registry};
use crate::{CoordinatorError, CoordinatorResult};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use strata_cluster::node_api::*;
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
    upload_batch: usize,
    registry: Registry,
    stats: Arc<Mutex<OperationStats>>,
    /// What a backup is made of: each component's plugin (which nodes a backup takes,
    /// its steps once every node's data is stored) and nodes (`files` over every node
    /// unless set).
    components: Arc<Vec<Component>>,
    /// The `[[hooks]]` and where pauses are recorded.
    hooks: Arc<HookSet>,
    /// Pause records whose failed resume this process has reported: a server retries
    /// them every few seconds, and reports each once (the record and `status` keep it).
    reported_pauses: Mutex<HashSet<String>>,
    /// The operations of this process whose hooks may hold pauses now (see
    /// [`OpHooks`]): their records are theirs to resume, no one else's.
    pausing: Arc<Mutex<HashSet<String>>>,
    /// Where the ends of operations are reported (audit log, webhooks).
    events: Arc<crate::events::Events>,
    /// Garbage collection's grace period for unindexed packs (`[gc] grace`).
    gc_grace: Duration,
    /// Set by [`Coordinator::stop`]: why the process is stopping. Running operations give
    /// up their nodes' calls and record themselves failed with this reason; new ones are
    /// refused.
    stopping: Mutex<Option<String>>,
}

pub use crate::stats::OperationStats;

mod backup;
#[cfg(test)]
mod plugin_seam_tests;
mod restore;
mod run;

use crate::node_calls::{deadline, on_nodes, QUICK_CALL};
pub use crate::restore_plan::{ComponentRestore, NodeRestore, RestoreOutcome, RestorePlan};
use backup::{finish_operation, Parties};
use run::*;

/// A node as `status` sees it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeState {
    /// The node's configured name.
    pub name: String,
    /// Where the node is, for messages: `in-process` or its agent's URL.
    pub location: String,
    /// Whether the node answered.
    pub reachable: bool,
    /// What the node said about itself, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<NodeMetadata>,
    /// Why the node could not be asked, when it did not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `strata status`: nodes, locks, running operations.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClusterStatus {
    /// The storage the repository is on (its name in `[storages.*]`).
    pub storage: String,
    /// Every configured node and whether it answers.
    pub nodes: Vec<NodeState>,
    /// The locks held on the repository.
    pub locks: Vec<LockRecord>,
    /// The operations this coordinator runs or ran.
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

/// What a coordinator is told at construction besides its nodes and repository: fixed
/// for its life (a new configuration makes a new coordinator).
pub struct Settings {
    /// How long node leases and the cluster lock live unless renewed.
    pub lease_ttl: Duration,
    /// What a backup is made of (see [`crate::component::from_config`]); `None`: one
    /// `files` component over every node.
    pub components: Option<Vec<Component>>,
    /// The `[[hooks]]` and where pauses are recorded.
    pub hooks: HookSet,
    /// Where the ends of operations are reported (audit log, webhooks).
    pub events: Arc<crate::events::Events>,
    /// Garbage collection's grace period for unindexed packs (`[gc] grace`).
    pub gc_grace: Duration,
    /// Chunks per upload request.
    pub upload_batch: usize,
}

impl Settings {
    /// The defaults, with leases of `lease_ttl`: every node one `files` component, no
    /// hooks, the audit log only, the default grace and upload batch.
    pub fn new(lease_ttl: Duration) -> Settings {
        Settings {
            lease_ttl,
            components: None,
            hooks: HookSet::default(),
            events: crate::events::Events::audit_only(),
            gc_grace: crate::gc::DEFAULT_GRACE,
            upload_batch: UPLOAD_BATCH,
        }
    }

    /// Every node one component of `plugin`.
    pub fn plugin(mut self, plugin: Arc<dyn crate::plugin::Plugin>, nodes: usize) -> Settings {
        self.components = Some(vec![Component::whole(plugin, nodes)]);
        self
    }
}

impl From<LockError> for CoordinatorError {
    fn from(err: LockError) -> Self {
        match err {
            LockError::Busy(_) | LockError::Lapsing(_) | LockError::TooSlow { .. } => {
                CoordinatorError::Busy(err.to_string())
            }
            LockError::Lost(_) | LockError::Stopped(_) => {
                CoordinatorError::LockLost(err.to_string())
            }
            LockError::Store(e) => CoordinatorError::Repo(e.into()),
        }
    }
}

impl Coordinator {
    /// A coordinator of `nodes` over the repository in storage `storage`, with the
    /// default [`Settings`].
    pub fn new(
        nodes: Vec<Arc<dyn NodeApi>>,
        zones: Vec<Option<String>>,
        storage: &str,
        repo: Arc<Repository>,
        requests: Option<CountingStore>,
        lease_ttl: Duration,
    ) -> Arc<Coordinator> {
        Coordinator::with(
            nodes,
            zones,
            storage,
            repo,
            requests,
            Settings::new(lease_ttl),
        )
    }

    /// A coordinator of `nodes` over the repository in storage `storage`, as `settings`
    /// say.
    pub fn with(
        nodes: Vec<Arc<dyn NodeApi>>,
        zones: Vec<Option<String>>,
        storage: &str,
        repo: Arc<Repository>,
        requests: Option<CountingStore>,
        settings: Settings,
    ) -> Arc<Coordinator> {
        let mut zones = zones;
        zones.resize(nodes.len(), None);
        let components = settings.components.unwrap_or_else(|| {
            vec![Component::whole(
                Arc::new(crate::plugin::Files),
                nodes.len(),
            )]
        });
        Arc::new(Coordinator {
            nodes,
            zones,
            storage: storage.to_string(),
            repo,
            requests,
            lease_ttl: settings.lease_ttl.max(Duration::from_millis(300)),
            upload_batch: settings.upload_batch.max(1),
            registry: Registry::default(),
            stats: Arc::default(),
            components: Arc::new(components),
            hooks: Arc::new(settings.hooks),
            reported_pauses: Mutex::default(),
            pausing: Arc::default(),
            events: settings.events,
            gc_grace: settings.gc_grace,
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

    /// The components a backup is made of.
    pub fn components(&self) -> Arc<Vec<Component>> {
        self.components.clone()
    }

    /// The hooks.
    pub fn hooks(&self) -> Arc<HookSet> {
        self.hooks.clone()
    }

    /// Resumes the pauses a process that is gone left (see
    /// [`crate::hooks::resume_orphans`]); returns what each came to, a line each.
    pub async fn resume_orphans(&self) -> Vec<String> {
        let hooks = self.hooks();
        let Some(ledger) = hooks.pauses.clone() else {
            return Vec::new();
        };
        let mut lines = Vec::new();
        let pausing = self.pausing.clone();
        let live_here = move |op: &str| pausing.lock().unwrap().contains(op);
        let declared: Vec<_> = hooks.hooks.iter().chain(&hooks.implied).cloned().collect();
        for resumed in ledger.resume_orphans(&declared, live_here).await {
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
                    let action = crate::events::Activity {
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

    /// Where this coordinator reports the ends of operations.
    pub fn events(&self) -> Arc<crate::events::Events> {
        self.events.clone()
    }

    /// Reports an action of this coordinator's repository that ended with `outcome`.
    pub async fn report(&self, action: &crate::events::Activity<'_>, outcome: &str, detail: &str) {
        self.events()
            .finished(&self.repo, &self.storage, action, outcome, detail)
            .await;
    }

    /// The use cases on this coordinator's repository (delete, gc, cleanup, verify, ...),
    /// reported to its events and counted in its statistics: see [`crate::actions`].
    pub fn actions(&self) -> crate::actions::Actions {
        crate::actions::Actions::new(
            self.repo.clone(),
            &self.storage,
            self.events(),
            self.lease_ttl,
            self.gc_grace,
        )
        .with_stats(self.stats.clone())
        .with_components(&self.components)
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
        let action = crate::events::Activity {
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
        if let Some(ledger) = &self.hooks().pauses {
            for record in ledger.paused() {
                match record {
                    Ok(record) => paused.push(crate::hooks::shown_record(&record)),
                    Err(why) => pause_problems.push(why.to_string()),
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
        // A system paused that no running operation of this process holds: a pause that
        // landed after its resume, or one made by hand. Said whatever the records say.
        // Idle: nothing runs here, and no lock says an operation runs elsewhere.
        let locks: Vec<_> = locks;
        let idle = self.registry.running().is_empty() && locks.is_empty();
        let engines = futures::future::join_all(
            self.components
                .iter()
                .map(|c| async move { (c.name.clone(), c.plugin.engine_paused().await) }),
        )
        .await;
        for (name, state) in engines {
            match state {
                Some(Ok(Some(what))) if idle => pause_problems.push(format!(
                    "component {name}: its system is paused ({what}) and no strata operation runs: resume it (for Camunda: POST <zeebe>/actuator/exporting/resume)"
                )),
                Some(Err(why)) if paused.iter().any(|p| p.component.as_deref() == Some(&name)) => {
                    pause_problems.push(format!(
                        "component {name}: a pause is recorded and the system cannot say whether it is paused: {why}"
                    ))
                }
                _ => {}
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

/// The state a backup's operation ends in: a complete backup that left a system paused
/// is no clean success.
fn backup_state(s: &BackupSummary) -> OpState {
    match s.status {
        BackupStatus::Complete if !s.still_paused.is_empty() => OpState::Partial,
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
    for paused in &s.still_paused {
        detail.push_str(&format!("; STILL PAUSED: {paused}"));
    }
    detail
}
