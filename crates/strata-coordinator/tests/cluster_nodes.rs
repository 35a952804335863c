//! The coordinator with real in-process agents behind test wrappers: under changing files a
//! chunk that one holder can no longer send goes to another holder, and a chunk nobody can
//! send makes its node re-read the file (either way the backup is complete and restores
//! byte for byte); an agent of another API version is refused before anything starts.

mod common;

use async_trait::async_trait;
use common::{pseudo_random, scratch_repo};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strata_agent::backup::NodeSource;
use strata_agent::local_node::LocalNode;
use strata_agent::restore::RestoreOptions;
use strata_agent::service::{Agent, AgentConfig};
use strata_cluster::node_api::ProgressSnapshot;
use strata_cluster::node_api::*;
use strata_coordinator::coordinator::{Coordinator, Settings};
use strata_coordinator::node::{NodeApi, NodeResult};
use strata_coordinator::restore::run_restore;
use strata_coordinator::setup::SharedRepo;
use strata_coordinator::verify::run_verify;
use strata_repo::summary::NodeSummary;
use strata_repo::writer::WriterOptions;
use strata_repo::Repository;

/// A node that records its upload calls and, before the first, rewrites files of its
/// own: the bytes its scan saw are gone when the upload reads them again.
struct ChangesBeforeUpload {
    inner: LocalNode,
    changes: Vec<(PathBuf, Vec<u8>)>,
    uploads: Mutex<Vec<usize>>,
    /// Claims this node API version instead of its own.
    api_version: Option<u32>,
}

#[async_trait]
impl NodeApi for ChangesBeforeUpload {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn location(&self) -> String {
        self.inner.location()
    }
    async fn metadata(&self) -> NodeResult<NodeMetadata> {
        let mut meta = self.inner.metadata().await?;
        meta.api_version = self.api_version.unwrap_or(meta.api_version);
        Ok(meta)
    }
    async fn lease(&self, request: LeaseRequest) -> NodeResult<LeaseInfo> {
        self.inner.lease(request).await
    }
    async fn release(&self, operation: &str) -> NodeResult<()> {
        self.inner.release(operation).await
    }
    async fn progress(&self, operation: &str) -> NodeResult<ProgressSnapshot> {
        self.inner.progress(operation).await
    }
    async fn scan(&self, request: ScanRequest) -> NodeResult<ScanReply> {
        self.inner.scan(request).await
    }
    async fn upload(&self, request: UploadRequest) -> NodeResult<UploadReply> {
        let first = {
            let mut uploads = self.uploads.lock().unwrap();
            uploads.push(request.chunks.len());
            uploads.len() == 1
        };
        if first {
            for (path, content) in &self.changes {
                std::fs::write(path, content).unwrap();
            }
        }
        self.inner.upload(request).await
    }
    async fn finish(&self, request: FinishRequest) -> NodeResult<NodeSummary> {
        self.inner.finish(request).await
    }
    async fn commit(&self, operation: &str) -> NodeResult<()> {
        self.inner.commit(operation).await
    }
    async fn abort(&self, operation: &str) -> NodeResult<()> {
        self.inner.abort(operation).await
    }
    async fn restore(&self, request: RestoreRequest) -> NodeResult<RestoreReply> {
        self.inner.restore(request).await
    }
    async fn hook(&self, request: HookRequest) -> NodeResult<HookReply> {
        self.inner.hook(request).await
    }
}

fn agent(repo: &Arc<Repository>, name: &str, root: &Path, state: &Path) -> Arc<Agent> {
    let config = AgentConfig {
        source: NodeSource {
            name: name.into(),
            roots: vec![root.display().to_string()],
            exclude: vec![],
            follow: vec![],
            immutable: false,
        },
        state_dir: state.to_path_buf(),
        pauses: strata_coordinator::hooks::PauseLedger::new(state.to_path_buf()),
        writer: WriterOptions {
            pack_size: 1 << 20,
            ..WriterOptions::default()
        },
        restore_workers: 2,
        plugin: strata_agent::service::plugin::files(),
        hooks: Vec::new(),
        set_owner: false,
    };
    let repos = Arc::new(SharedRepo {
        storage: "main".into(),
        repo: repo.clone(),
    });
    Agent::start(config, repos)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_a_holder_cannot_send_go_to_another_holder_or_are_re_read() {
    let (a_calls, b_calls) = changing_files_scenario(None).await;
    assert_eq!(a_calls.len(), 1, "a uploads once: {a_calls:?}");
    assert_eq!(
        b_calls.len(),
        2,
        "b takes over a's shared chunks: {b_calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_go_in_batches_and_reassignment_still_works() {
    let (a_calls, b_calls) = changing_files_scenario(Some(2)).await;
    assert!(a_calls.len() > 1, "{a_calls:?}");
    assert!(b_calls.len() > 2, "{b_calls:?}");
    assert!(a_calls.iter().chain(&b_calls).all(|&n| n <= 2));
}

/// Two nodes, a rewriting its files before it uploads; checks the backup and its restore
/// and returns the chunk counts of the upload calls of a and b.
async fn changing_files_scenario(batch: Option<usize>) -> (Vec<usize>, Vec<usize>) {
    let dir = tempfile::tempdir().unwrap();
    let repo = scratch_repo(dir.path()).await;

    // Both nodes hold `shared`; only a holds `own`. Node a rewrites both files before it
    // uploads: the shared chunks it was given must come from b in a second round; its own
    // chunks nobody can send, so a re-reads that file.
    let shared = pseudo_random(8 << 20, 1);
    let (a_root, b_root) = (dir.path().join("a"), dir.path().join("b"));
    for root in [&a_root, &b_root] {
        std::fs::create_dir_all(root).unwrap();
        std::fs::write(root.join("shared"), &shared).unwrap();
    }
    std::fs::write(a_root.join("own"), pseudo_random(2 << 20, 2)).unwrap();
    let changed_own = pseudo_random(2 << 20, 3);
    let state = dir.path().join("state");
    let a = Arc::new(ChangesBeforeUpload {
        inner: LocalNode(agent(&repo, "a", &a_root, &state)),
        changes: vec![
            (a_root.join("own"), changed_own.clone()),
            (a_root.join("shared"), pseudo_random(8 << 20, 4)),
        ],
        uploads: Mutex::new(Vec::new()),
        api_version: None,
    });
    let b = Arc::new(ChangesBeforeUpload {
        inner: LocalNode(agent(&repo, "b", &b_root, &state)),
        changes: Vec::new(),
        uploads: Mutex::new(Vec::new()),
        api_version: None,
    });
    let nodes: Vec<Arc<dyn NodeApi>> = vec![a.clone(), b.clone()];
    let mut settings = Settings::new(Duration::from_secs(30));
    if let Some(chunks) = batch {
        settings.upload_batch = chunks;
    }
    let coordinator = Coordinator::with(nodes, Vec::new(), "main", repo.clone(), None, settings);
    let summary = coordinator
        .backup("test")
        .await
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(summary.is_complete(), "{summary:#?}");
    let node_a = summary.nodes.iter().find(|n| n.name == "a").unwrap();
    assert!(
        node_a
            .warnings
            .iter()
            .any(|w| w.contains("own") && w.contains("re-read")),
        "{node_a:#?}"
    );

    // The restore holds the re-read content of a's own file, and the shared file as both
    // scans saw it.
    repo.reload_index().await.unwrap();
    let restored = dir.path().join("restored");
    let reports = run_restore(
        repo.clone(),
        &summary,
        &restored,
        None,
        RestoreOptions::default(),
    )
    .await
    .unwrap();
    assert!(reports.iter().all(|r| r.report.errors.is_empty()));
    assert_eq!(std::fs::read(restored.join("a/own")).unwrap(), changed_own);
    assert_eq!(std::fs::read(restored.join("a/shared")).unwrap(), shared);
    assert_eq!(std::fs::read(restored.join("b/shared")).unwrap(), shared);
    assert!(run_verify(&repo, None, true).await.unwrap().is_ok());
    let calls = |n: &ChangesBeforeUpload| n.uploads.lock().unwrap().clone();
    (calls(&a), calls(&b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_of_another_api_version_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let repo = scratch_repo(dir.path()).await;
    let root = dir.path().join("data");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("f"), b"data").unwrap();
    let state = dir.path().join("state");
    let future = Arc::new(ChangesBeforeUpload {
        inner: LocalNode(agent(&repo, "a", &root, &state)),
        changes: Vec::new(),
        uploads: Mutex::new(Vec::new()),
        api_version: Some(API_VERSION + 1),
    });
    let coordinator = Coordinator::new(
        vec![future.clone() as Arc<dyn NodeApi>],
        Vec::new(),
        "main",
        repo.clone(),
        None,
        Duration::from_secs(30),
    );
    let err = match coordinator.backup("test").await {
        Ok(_) => panic!("a backup started with an agent of another API version"),
        Err(err) => strata_coordinator::error_chain(&err),
    };
    assert!(err.contains("same strata version"), "{err}");
    // Nothing started: no backup, no lock, no lease.
    assert!(repo.list_backups().await.unwrap().is_empty());
    assert!(strata_coordinator::lock::list_locks(repo.store())
        .await
        .unwrap()
        .is_empty());
    assert!(future.metadata().await.unwrap().lease.is_none());
}
