//! Running an operation over the nodes: the nodes' failures, the run's state, its leases
//! and lock kept alive.

use super::*;

/// Node failures of one operation, by node index.
#[derive(Default)]
pub(super) struct Failures(Mutex<BTreeMap<usize, ApiError>>);

impl Failures {
    pub(super) fn add(&self, node: usize, why: ApiError) {
        self.0.lock().unwrap().entry(node).or_insert(why);
    }
    /// The first refusal that should stop an operation before it starts: a busy node
    /// first, then configuration problems.
    pub(super) fn refusal(&self) -> Option<ApiError> {
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
    pub(super) fn any(&self) -> bool {
        !self.0.lock().unwrap().is_empty()
    }
    pub(super) fn get(&self, node: usize) -> Option<String> {
        self.0.lock().unwrap().get(&node).map(|e| e.message.clone())
    }
    /// The first failed node not in `optional`.
    pub(super) fn first_outside(&self, optional: &HashSet<usize>) -> Option<usize> {
        self.0
            .lock()
            .unwrap()
            .keys()
            .find(|i| !optional.contains(i))
            .copied()
    }
}

/// The shared state of one running operation.
pub(super) struct Run {
    pub(super) coordinator: Arc<Coordinator>,
    pub(super) op: Arc<Operation>,
    pub(super) id: String,
    /// Indexes of the nodes taking part.
    pub(super) members: Vec<usize>,
    /// Members of optional components: their failure does not stop the others.
    pub(super) optional: HashSet<usize>,
    pub(super) failures: Failures,
    pub(super) started: Instant,
    /// Who asked for the operation (audit log, webhooks).
    pub(super) who: String,
    /// A component whose data did not belong with the rest once stored, and asks for the
    /// backup to run again (see [`crate::plugin::NotTogether`]): why, and how many times.
    pub(super) retry: Mutex<Option<(String, u32)>>,
}

impl Run {
    pub(super) fn node(&self, i: usize) -> Arc<dyn NodeApi> {
        self.coordinator.nodes[i].clone()
    }

    /// Whether a node whose failure fails the operation has failed.
    pub(super) fn fatal(&self) -> bool {
        self.failures.first_outside(&self.optional).is_some()
    }

    /// Fails every live member with `why`.
    pub(super) fn fail_all(&self, why: &str) {
        for i in self.live() {
            self.fail(i, &ApiError::new(ErrorCode::Failed, why.to_string()));
        }
    }

    /// The hooks of this operation.
    pub(super) fn hooks(&self, kind: HookOperation, backup: &str) -> OpHooks {
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
    pub(super) async fn unless_stopped<T>(
        &self,
        work: impl Future<Output = T>,
    ) -> Result<T, Stopped> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                result = &mut work => return Ok(result),
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if let Some(why) = self.coordinator.stopping() {
                        return Err(Stopped(why));
                    }
                }
            }
        }
    }

    pub(super) fn live(&self) -> Vec<usize> {
        let failed = self.failures.0.lock().unwrap();
        self.members
            .iter()
            .copied()
            .filter(|i| !failed.contains_key(i))
            .collect()
    }

    pub(super) fn phase(&self, nodes: &[usize], phase: &str) {
        for &i in nodes {
            let name = self.coordinator.nodes[i].name().to_string();
            self.op.update_node(&name, |n| {
                n.phase = phase.to_string();
                n.progress = Default::default();
            });
        }
    }

    pub(super) fn fail(&self, i: usize, err: &ApiError) {
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
    pub(super) async fn lease_all(self: &Arc<Self>) {
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
    pub(super) fn record<T>(&self, results: Vec<(usize, Result<T, ApiError>)>) {
        for (i, result) in results {
            if let Err(err) = result {
                self.fail(i, &err);
            }
        }
    }

    /// `call` on node `i`, given up when the node is marked failed (its lease could not
    /// be renewed: a host that hangs must not hang the operation) or, with `all`, when any
    /// node is (a backup missing a node is failed anyway; the others stop early).
    pub(super) fn guarded<T: Send + 'static>(
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
    pub(super) async fn take_nodes(
        self: &Arc<Self>,
        lock: RepoLock,
    ) -> CoordinatorResult<RepoLock> {
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
    pub(super) fn keep_alive(self: &Arc<Self>, mut lock: RepoLock) -> KeepAlive {
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
    pub(super) async fn release_all(&self) {
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
pub(super) const UPLOAD_BATCH: usize = 10_000;

/// A lease for `operation` held by this process.
pub(super) fn lease_request(operation: String, ttl_ms: u64) -> LeaseRequest {
    LeaseRequest {
        operation,
        holder: crate::lock::holder_name(),
        ttl_ms,
    }
}

/// The background tasks of a running operation: lease and lock renewal, progress polling.
pub(super) struct KeepAlive {
    pub(super) stop: tokio::sync::watch::Sender<bool>,
    pub(super) renewer: JoinHandle<RepoLock>,
    pub(super) poller: JoinHandle<()>,
}

impl KeepAlive {
    /// Stops both tasks and hands the lock back for release.
    pub(super) async fn stop(self) -> RepoLock {
        self.poller.abort();
        let _ = self.stop.send(true);
        self.renewer.await.expect("lease renewer panicked")
    }
}

/// Work given up because this process is stopping (SIGTERM): why it stops.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub(super) struct Stopped(pub String);
