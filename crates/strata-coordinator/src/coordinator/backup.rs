//! A backup over the nodes: scan in parallel, assign and upload the missing chunks, write
//! the manifests, then the summary.

use super::*;
use crate::plugin::ExternalError;

/// How the error of a node stopped because another failed begins.
const NOT_FINISHED: &str = "not finished: node ";

impl Coordinator {
    /// Takes the cluster lock and prepares a backup of every node; run it with
    /// [`Pending::run`] (or let [`Coordinator::start_backup`] run it in the background).
    /// Refused with [`CoordinatorError::Busy`] while another operation holds the cluster.
    /// `who` asked for it (see [`crate::events::Activity::who`]).
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
                    storage_clock,
                } = attempt;
                let outcome = backup(&run, lock, &components, absent, storage_clock).await;
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
                Err(err) => return Err(err.into()),
            };
            if component.optional {
                optional.extend(component.nodes.iter().copied());
            }
            members.extend(mine);
        }
        // Named and ordered by the storage's clock, the one every safety rule uses: a
        // host whose clock is behind or ahead still lists its backups in the order they
        // ran, and `latest` is the one that ran last.
        let storage_clock = StorageClock::read(self.repo.store()).await?;
        let name = new_backup_name_at(storage_clock.now());
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
            storage_clock,
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
}

/// The storage's time from the stamp of its probe. A storage that stamps whole seconds
/// (S3's and Azure's `Last-Modified` are HTTP dates) says only which second it is: when
/// this host's clock reads that second (or the next, the probe's round trip), its
/// milliseconds place the start within it, so two backups started within one second keep
/// their order; a host whose clock is further off is not trusted with them.
fn within_its_second(stamped: SystemTime, host: SystemTime) -> SystemTime {
    let whole = stamped
        .duration_since(std::time::UNIX_EPOCH)
        .is_ok_and(|d| d.subsec_nanos() == 0);
    match whole && host >= stamped && host < stamped + Duration::from_secs(2) {
        true => host,
        false => stamped,
    }
}

/// Who takes part in an operation: the members (indexes of nodes), those of optional
/// components, and the operation a new attempt continues, if any.
pub(super) struct Parties {
    pub(super) members: Vec<usize>,
    pub(super) optional: HashSet<usize>,
    pub(super) continues: Option<Arc<Operation>>,
}

/// One attempt of a backup, ready to run.
struct BackupAttempt {
    run: Arc<Run>,
    lock: RepoLock,
    components: Arc<Vec<Component>>,
    absent: BTreeMap<String, String>,
    name: String,
    storage_clock: StorageClock,
}

/// The storage's clock as read once before a backup is named (a probe object written
/// and its modification time read back), carried on by this host's monotonic clock: the
/// backup's name and start come from it, not from the host's wall clock.
#[derive(Debug, Clone, Copy)]
struct StorageClock {
    at: SystemTime,
    read: Instant,
}

impl StorageClock {
    async fn read(store: &strata_store::DynStore) -> CoordinatorResult<StorageClock> {
        let stamped = crate::lock::clock::storage_now(store).await?;
        Ok(StorageClock {
            at: within_its_second(stamped, crate::lock::host_now()),
            read: Instant::now(),
        })
    }

    /// The storage's time now.
    fn now(&self) -> SystemTime {
        self.at + self.read.elapsed()
    }
}

/// Counts an operation's end, reports it (audit log, webhooks), then publishes it: a
/// client that sees the operation done finds its audit entry written.
pub(super) async fn finish_operation<T: Serialize>(
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
    let action = crate::events::Activity {
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

/// One attempt of a backup, in phases. Each phase takes the value the one before
/// returns, so the order the backup's safety rests on cannot be broken without a compile
/// error:
/// 1. [`announce`]: the writer's mark (before any node reads the index, so garbage
///    collection waits for this backup), the hooks' checks, `before` hooks and pauses;
/// 2. [`Announced::snapshot`]: the nodes' data and the external components' snapshots,
///    then each plugin's `after_stored`;
/// 3. [`Stored::resume`]: every pause resumed, whatever happened before (the only way to
///    a [`Resumed`]), and the cluster lock back from its keep-alive;
/// 4. [`Resumed::record`]: the summary built and written last, under the lock; the mark
///    goes only after it, then the nodes commit or abort and the lock is given back;
/// 5. [`Recorded::finish`]: the end hooks, and the outcome.
async fn backup(
    run: &Arc<Run>,
    lock: RepoLock,
    components: &[Component],
    absent: BTreeMap<String, String>,
    storage_clock: StorageClock,
) -> CoordinatorResult<BackupSummary> {
    let announced = announce(run, lock, components, absent, storage_clock).await;
    let stored = announced.snapshot().await;
    let resumed = stored.resume().await;
    let recorded = resumed.record().await;
    recorded.finish().await
}

/// What every phase of one attempt shares: set up by [`announce`], read by the rest.
struct Attempt<'a> {
    run: &'a Arc<Run>,
    components: &'a [Component],
    absent: BTreeMap<String, String>,
    /// The components not `absent`.
    present: Vec<&'a Component>,
    scope: Scope,
    /// By the storage's clock.
    started: SystemTime,
    /// By this host's wall clock, shown beside it.
    host_started: SystemTime,
    clock: Instant,
    requests_before: Option<strata_store::RequestCounts>,
    hooks: OpHooks,
    /// Why the whole backup failed before its steps (a hook), for components with no
    /// node to carry the reason.
    failed_early: Option<String>,
    /// Optional components whose pause failed: left out, the others go on.
    left_out: BTreeMap<String, crate::component::LeftOut>,
}

impl Attempt<'_> {
    /// The backup's summary, as the nodes' and components' results make it: what
    /// `record` writes last.
    fn summary(
        &self,
        node_summaries: BTreeMap<usize, NodeSummary>,
        mut external: BTreeMap<String, crate::plugin::ExternalOutcome>,
        still_paused: Vec<String>,
    ) -> BackupSummary {
        let run = self.run;
        let coordinator = &run.coordinator;
        let nodes = self.node_results(node_summaries);
        let components: Vec<ComponentSummary> = self
            .components
            .iter()
            .map(|c| match self.left_out.get(&c.name) {
                Some(out) => ComponentSummary {
                    name: c.name.clone(),
                    plugin: c.plugin.name().to_string(),
                    plugin_version: c.plugin.data_version(),
                    optional: c.optional,
                    order: c.order,
                    status: Some(match out.unreachable {
                        true => ComponentStatus::Absent,
                        false => ComponentStatus::Failed,
                    }),
                    error: Some(out.why.clone()),
                    ..ComponentSummary::default()
                },
                None => component_summary(
                    c,
                    &nodes,
                    &self.absent,
                    &mut external,
                    self.failed_early.as_deref(),
                ),
            })
            .collect();
        BackupSummary {
            name: run.id.clone(),
            started: humantime::format_rfc3339_millis(self.started).to_string(),
            host_started: Some(humantime::format_rfc3339_millis(self.host_started).to_string()),
            duration_ms: self.clock.elapsed().as_millis() as u64,
            status: backup_status(&components),
            strata_version: env!("CARGO_PKG_VERSION").to_string(),
            nodes,
            requests: coordinator
                .requests
                .as_ref()
                .zip(self.requests_before.as_ref())
                .map(|(counter, before)| counter.counts().since(before)),
            components,
            still_paused,
        }
    }

    /// Each member node's result: its summary, or failed with why (its own failure, or
    /// another node's that stopped the backup before it finished).
    fn node_results(&self, mut node_summaries: BTreeMap<usize, NodeSummary>) -> Vec<NodeSummary> {
        let run = self.run;
        let coordinator = &run.coordinator;
        let failed_node = run.failures.first_outside(&run.optional);
        let component_of = |i: usize| self.components.iter().find(|c| c.nodes.contains(&i));
        run.members
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
                            "{NOT_FINISHED}{} failed",
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
            .collect()
    }
}

/// Tells every live node to keep this backup as the base of its next files cache
/// (`commit`) or to drop what it prepared.
async fn settle_nodes(run: &Run, commit: bool) {
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
}

/// Phase 1 done: announced to garbage collection, hooks run, components paused.
struct Announced<'a> {
    attempt: Attempt<'a>,
    tasks: KeepAlive,
    mark: Option<crate::lock::ArchiveMark>,
}

/// Phase 2 done: the data is stored (or will never be).
struct Stored<'a> {
    attempt: Attempt<'a>,
    tasks: KeepAlive,
    mark: Option<crate::lock::ArchiveMark>,
    node_summaries: BTreeMap<usize, NodeSummary>,
    external: BTreeMap<String, crate::plugin::ExternalOutcome>,
}

/// Phase 3 done: nothing this backup paused is left paused by it, and the lock is held
/// here again.
struct Resumed<'a> {
    attempt: Attempt<'a>,
    lock: RepoLock,
    mark: Option<crate::lock::ArchiveMark>,
    node_summaries: BTreeMap<usize, NodeSummary>,
    external: BTreeMap<String, crate::plugin::ExternalOutcome>,
    still_paused: Vec<String>,
    hook_errors: Vec<String>,
}

/// Phase 4 done: the summary is written (or, the lock lost, deliberately not), the
/// nodes committed or aborted, the lock given back.
struct Recorded<'a> {
    attempt: Attempt<'a>,
    summary: BackupSummary,
    hook_errors: Vec<String>,
    fenced: Result<(), crate::lock::LockError>,
    saved: Result<(), strata_repo::RepoError>,
}

/// Phase 1 (see [`backup`]).
async fn announce<'a>(
    run: &'a Arc<Run>,
    lock: RepoLock,
    components: &'a [Component],
    absent: BTreeMap<String, String>,
    storage_clock: StorageClock,
) -> Announced<'a> {
    let coordinator = &run.coordinator;
    let started = storage_clock.now();
    let host_started = crate::lock::host_now();
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
    // Engine parts of attempts that did not finish (a SIGKILL, a request that timed
    // out), deleted under this backup's lock before it asks for new ones.
    for line in crate::external_delete::ExternalDeletes::of(components)
        .finish_unfinished(&coordinator.repo, Some(&run.id), || Ok(()))
        .await
    {
        eprintln!("strata: {line}");
    }
    let mut hooks = run.hooks(HookOperation::Backup, &run.id);
    let mut failed_early: Option<String> = None;
    let mut left_out: BTreeMap<String, crate::component::LeftOut> = BTreeMap::new();
    // Announced to garbage collection before any node reads the index: the packs this
    // backup relies on are not deleted before its summary is visible (or its mark lapsed
    // and its fence refuses the summary). See `strata_repo::condemned`.
    let mark = match crate::lock::mark_backup_writer(
        coordinator.repo.store().clone(),
        &run.id,
        coordinator.lease_ttl,
    )
    .await
    {
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
            failed_early = Some(why.to_string());
        } else if let Err(why) = hooks.run_at(HookPoint::Before, &scope, |_| None).await {
            failed_early = Some(why.to_string());
        } else {
            let optional: HashSet<String> = present
                .iter()
                .filter(|c| c.optional)
                .map(|c| c.name.clone())
                .collect();
            match hooks.pause_all(&scope, &optional).await {
                Ok(out) => left_out = out,
                Err(why) => failed_early = Some(why.to_string()),
            }
        }
    }
    if let Some(why) = &failed_early {
        run.fail_all(why);
    }
    Announced {
        attempt: Attempt {
            run,
            components,
            absent,
            present,
            scope,
            started,
            host_started,
            clock,
            requests_before,
            hooks,
            failed_early,
            left_out,
        },
        tasks,
        mark,
    }
}

impl<'a> Announced<'a> {
    /// Phase 2 (see [`backup`]).
    async fn snapshot(self) -> Stored<'a> {
        let Announced {
            attempt,
            tasks,
            mark,
        } = self;
        let Attempt {
            run,
            present,
            failed_early,
            left_out,
            ..
        } = &attempt;
        let run: &Arc<Run> = run;
        let mut node_summaries: BTreeMap<usize, NodeSummary> = BTreeMap::new();
        let mut external: BTreeMap<String, crate::plugin::ExternalOutcome> = BTreeMap::new();
        if failed_early.is_none() && !run.fatal() {
            let number = backup_number();
            let externals = futures::future::join_all(
                present
                    .iter()
                    .filter(|c| c.plugin.is_external() && !left_out.contains_key(&c.name))
                    .map(|c| {
                        let env = HookEnv {
                            operation: "backup".into(),
                            id: run.id.clone(),
                            backup: run.id.clone(),
                            component: Some(c.name.clone()),
                            phase: "backup".into(),
                            backup_id: Some(number),
                            ..HookEnv::default()
                        };
                        let pauses = run.coordinator.hooks().pauses.clone();
                        async move {
                            let outcome = run
                                .unless_stopped(c.plugin.external_backup(&env, pauses.as_ref()))
                                .await
                                .unwrap_or_else(|stopped| Err(ExternalError::Failed(stopped.0)));
                            (c.name.clone(), outcome)
                        }
                    }),
            );
            let (summaries, outcomes) = tokio::join!(backup_steps(run), externals);
            node_summaries = summaries;
            external.extend(outcomes);
            if !run.fatal() {
                after_stored(run, present, &mut node_summaries).await;
            }
        }
        Stored {
            attempt,
            tasks,
            mark,
            node_summaries,
            external,
        }
    }
}

impl<'a> Stored<'a> {
    /// Phase 3 (see [`backup`]): runs on every path, whatever the steps did.
    async fn resume(self) -> Resumed<'a> {
        let Stored {
            mut attempt,
            tasks,
            mark,
            node_summaries,
            external,
        } = self;
        let run: &Arc<Run> = attempt.run;
        let coordinator = &run.coordinator;
        let (hooks, scope, failed_early) =
            (&mut attempt.hooks, &attempt.scope, &attempt.failed_early);
        // The snapshots are stored (or will never be): resume what was paused, whatever
        // happened.
        let mut still_paused = hooks.resume_all().await;
        let mut hook_errors = still_paused.clone();
        // Pauses an external component issued itself and left when its step was cut short
        // (a SIGTERM drops it mid-way): resumed now, as this operation's own.
        still_paused.extend(resume_component_pauses(run).await);
        let engines_paused = external
            .values()
            .filter(|o| o.as_ref().is_ok_and(|s| s.still_paused.is_some()))
            .count() as u64;
        // Counted like a hook's failed resume (`strata_hook_resume_failures_total`).
        coordinator.stats.lock().unwrap().resume_failures += engines_paused;
        still_paused.extend(external.iter().filter_map(|(name, outcome)| {
            Some(format!(
                "component {name}: {}",
                outcome.as_ref().ok()?.still_paused.as_ref()?
            ))
        }));
        if failed_early.is_none() && !run.fatal() {
            if let Err(why) = hooks
                .run_at(HookPoint::AfterSnapshot, scope, |_| None)
                .await
            {
                hook_errors.push(why.to_string());
            }
        }
        let lock = tasks.stop().await;
        Resumed {
            attempt,
            lock,
            mark,
            node_summaries,
            external,
            still_paused,
            hook_errors,
        }
    }
}

impl<'a> Resumed<'a> {
    /// Phase 4 (see [`backup`]).
    async fn record(self) -> Recorded<'a> {
        let Resumed {
            attempt,
            lock,
            mark,
            node_summaries,
            external,
            still_paused,
            hook_errors,
        } = self;
        let summary = attempt.summary(node_summaries, external, still_paused);
        let (run, components) = (attempt.run, attempt.components);
        let coordinator = &run.coordinator;
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
        let commit = fenced.is_ok() && saved.is_ok() && summary.status != BackupStatus::Failed;
        settle_nodes(run, commit).await;
        run.release_all().await;
        if lock.check().is_ok() {
            // This backup's engine parts: owned by its summary now, or (an attempt cut
            // short, a failed summary) deleted before the lock is given back.
            if saved.is_ok() {
                for line in crate::external_delete::ExternalDeletes::of(components)
                    .finish_unfinished(&coordinator.repo, None, || lock.check())
                    .await
                {
                    eprintln!("strata: {line}");
                }
            }
            // Keep the index objects few and bounded (see `strata_repo::index_merge`).
            merge_index_objects(&coordinator.repo, &run.id).await;
        }
        lock.release().await;
        Recorded {
            attempt,
            summary,
            hook_errors,
            fenced,
            saved,
        }
    }
}

impl Recorded<'_> {
    /// Phase 5 (see [`backup`]).
    async fn finish(self) -> CoordinatorResult<BackupSummary> {
        let Recorded {
            mut attempt,
            summary,
            mut hook_errors,
            fenced,
            saved,
        } = self;
        let (run, hooks, scope) = (attempt.run, &mut attempt.hooks, &attempt.scope);
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
            if let Err(why) = hooks.run_at(point, scope, status_of).await {
                hook_errors.push(why.to_string());
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
}

/// Resumes the pause records of this operation that components issued themselves
/// ([`crate::plugin::Plugin::implied_hooks`]) and did not resume (their step was
/// cancelled); returns the ones whose resume still failed.
async fn resume_component_pauses(run: &Run) -> Vec<String> {
    let set = run.coordinator.hooks();
    let Some(ledger) = &set.pauses else {
        return Vec::new();
    };
    let mine = ledger
        .paused()
        .into_iter()
        .flatten()
        .filter(|r| r.operation == run.id && r.held_by_this_process())
        // One round of resumes per pause: a component that resumed its own and failed
        // reported it already (its record keeps the error for the next process).
        .filter(|r| r.resume_error.is_none())
        .filter(|r| {
            set.implied
                .iter()
                .any(|h| h.resume.as_ref() == Some(&r.resume))
        });
    let mut failed = Vec::new();
    for record in mine.collect::<Vec<_>>() {
        let resumed = ledger.resume(record).await;
        if let Some(why) = resumed.error {
            failed.push(format!(
                "hook {}: resume failed: {why}",
                resumed.record.hook
            ));
        }
    }
    failed
}

/// The backup's number for systems that want theirs numbered in increasing order
/// (Camunda's `backupId`): milliseconds since 1970 at its start, larger than every
/// number this process gave before (two attempts within one millisecond, a clock set
/// back while it runs).
fn backup_number() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
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
            Some(Ok(snapshot)) => {
                out.external = snapshot.recorded;
                (ComponentStatus::Complete, None)
            }
            // An optional system that does not answer is not deployed here.
            Some(Err(ExternalError::Unreachable(why))) if component.optional => {
                (ComponentStatus::Absent, Some(why))
            }
            Some(Err(why)) => (ComponentStatus::Failed, Some(why.to_string())),
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
        // The cause first: a node stopped because another failed says less than that one.
        let error = mine
            .iter()
            .filter_map(|n| n.error.as_ref().map(|e| (n, e)))
            .min_by_key(|(_, e)| e.starts_with(NOT_FINISHED))
            .map(|(n, e)| format!("{}: {e}", n.name));
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
        let batch_size = coordinator.upload_batch;
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

#[cfg(test)]
mod storage_clock_tests {
    use super::within_its_second;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn a_whole_second_stamp_takes_the_host_s_milliseconds_only_from_a_host_that_agrees() {
        let second = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ms = |n: u64| second + Duration::from_millis(n);
        // The host reads the storage's second (or the next): its milliseconds order.
        assert_eq!(within_its_second(second, ms(250)), ms(250));
        assert_eq!(within_its_second(second, ms(1_900)), ms(1_900));
        // A host behind or ahead by more: the storage's second as it is.
        assert_eq!(within_its_second(second, ms(2_000)), second);
        assert_eq!(
            within_its_second(second, second - Duration::from_secs(600)),
            second
        );
        // A stamp with milliseconds is the storage's own precision: kept.
        assert_eq!(within_its_second(ms(7), ms(250)), ms(7));
    }
}
