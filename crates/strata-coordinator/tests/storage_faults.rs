//! Backups through a storage that fails: transient faults are absorbed by retries and the
//! backup restores byte for byte; a permanent failure stops the backup with a clear error
//! and leaves a repository that verifies and takes the next backup.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use strata_agent::backup::NodeSource;
use strata_agent::local_node::LocalNode;
use strata_agent::restore::RestoreOptions;
use strata_agent::service::{Agent, AgentConfig};
use strata_coordinator::config::Config;
use strata_coordinator::coordinator::Coordinator;
use strata_coordinator::node::NodeApi;
use strata_coordinator::resolve_backup;
use strata_coordinator::restore::run_restore;
use strata_coordinator::setup::SharedRepo;
use strata_coordinator::storage::Storage;
use strata_coordinator::verify::run_verify;
use strata_coordinator::CoordinatorResult;
use strata_repo::crypto::KdfParams;
use strata_repo::summary::BackupSummary;
use strata_repo::writer::WriterOptions;
use strata_repo::Repository;
use strata_store::{DynStore, FaultConfig, FaultyStore, LocalStore};

mod common;

use common::{fast_init, pseudo_random};

const PASSWORD: &str = "pw";

/// A source tree of ~12 MiB: page files, random files, small files.
fn make_tree(root: &Path, seed: u64) {
    std::fs::create_dir_all(root.join("small")).unwrap();
    std::fs::write(
        root.join("table"),
        pseudo_random(5 << 20, seed)
            .chunks(8192)
            .flat_map(|p| {
                let mut page = p[..64].to_vec();
                page.resize(8192, b'r');
                page
            })
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    std::fs::write(root.join("random"), pseudo_random(7 << 20, seed + 1)).unwrap();
    for i in 0..40 {
        std::fs::write(
            root.join(format!("small/{i}")),
            format!("file {i} seed {seed}"),
        )
        .unwrap();
    }
}

use strata_testkit::tree::file_contents as read_tree;

fn options(dir: &Path, storage: &Storage) -> BackupOptions {
    BackupOptions {
        writer: WriterOptions {
            pack_size: 256 << 10,
            ..WriterOptions::default()
        },
        state_dir: dir.join("state"),
        requests: Some(storage.requests.clone()),
    }
}

fn quick_config() -> Config {
    let mut config = Config::default();
    config.retry.initial_backoff_ms = 1;
    config.retry.max_backoff_ms = 10;
    config.retry.attempts = 12;
    config
}

fn faulty(base: DynStore, config: FaultConfig) -> (Arc<FaultyStore>, Storage) {
    let faulty = Arc::new(FaultyStore::new(base, config));
    let storage = Storage::wrap("faulty", faulty.clone(), &quick_config());
    (faulty, storage)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_percent_failed_requests_still_give_a_byte_exact_backup() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    make_tree(&src, 1);
    let base: DynStore = Arc::new(LocalStore::new(dir.path().join("repo")));
    let (faults, storage) = faulty(
        base,
        FaultConfig {
            fail_ratio: 0.10,
            truncate_ratio: 0.05,
            seed: 11,
            ..FaultConfig::default()
        },
    );
    Repository::init(storage.store.clone(), Some(PASSWORD), fast_init())
        .await
        .unwrap();
    let repo = Repository::open(storage.store.clone(), Some(PASSWORD))
        .await
        .unwrap();
    let node = NodeSource {
        name: "db".into(),
        roots: vec![src.display().to_string()],
        exclude: vec![],
        follow: vec![],
        immutable: false,
    };
    let summary = run_backup(repo.clone(), &[node], &options(dir.path(), &storage))
        .await
        .unwrap();
    assert!(summary.is_complete());
    let requests = summary.requests.unwrap();
    assert!(
        requests.put >= 8 && requests.bytes_sent > 5 << 20,
        "packs of 256 KiB: {requests:?}"
    );

    let restored = dir.path().join("restored");
    let backup = resolve_backup(&repo, "latest").await.unwrap();
    let report = run_restore(
        repo.clone(),
        &backup,
        &restored,
        None,
        RestoreOptions::default(),
    )
    .await
    .unwrap();
    assert!(
        report[0].report.errors.is_empty(),
        "{:?}",
        report[0].report.errors
    );
    assert_eq!(read_tree(&src), read_tree(&restored));
    assert!(run_verify(&repo, None, true).await.unwrap().is_ok());
    assert!(
        faults.injected() > 5,
        "only {} faults were injected",
        faults.injected()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_stops_the_backup_and_the_repository_stays_valid() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    make_tree(&src, 2);
    let base: DynStore = Arc::new(LocalStore::new(dir.path().join("repo")));
    let healthy = Storage::wrap("healthy", base.clone(), &quick_config());
    Repository::init(healthy.store.clone(), Some(PASSWORD), fast_init())
        .await
        .unwrap();
    let node = NodeSource {
        name: "db".into(),
        roots: vec![src.display().to_string()],
        exclude: vec![],
        follow: vec![],
        immutable: false,
    };

    // The storage accepts 4 MiB, then refuses every write.
    let (_faults, broken) = faulty(
        base.clone(),
        FaultConfig {
            fail_after_bytes: Some(4 << 20),
            ..FaultConfig::default()
        },
    );
    let repo = Repository::open(broken.store.clone(), Some(PASSWORD))
        .await
        .unwrap();
    let err = run_backup(
        repo,
        std::slice::from_ref(&node),
        &options(dir.path(), &broken),
    )
    .await
    .unwrap_err();
    let message = strata_coordinator::error_chain(&err);
    assert!(message.contains("write budget exhausted"), "{message}");

    // Nothing half-written is visible; the repository verifies and takes the next backup.
    let repo = Repository::open(healthy.store.clone(), Some(PASSWORD))
        .await
        .unwrap();
    assert!(repo.list_backups().await.unwrap().is_empty());
    assert!(run_verify(&repo, None, true).await.unwrap().is_ok());
    let summary = run_backup(repo.clone(), &[node], &options(dir.path(), &healthy))
        .await
        .unwrap();
    assert!(summary.is_complete());
    let restored = dir.path().join("restored");
    run_restore(
        repo.clone(),
        &summary,
        &restored,
        None,
        RestoreOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(read_tree(&src), read_tree(&restored));
    assert!(run_verify(&repo, None, true).await.unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_backups_on_a_warm_cache_makes_two_requests() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    make_tree(&src, 3);
    let mut config = quick_config();
    config.cache.dir = Some(dir.path().join("cache"));
    let base: DynStore = Arc::new(LocalStore::new(dir.path().join("repo")));
    let storage = Storage::wrap_cached("remote", base.clone(), &config);
    Repository::init(storage.store.clone(), Some(PASSWORD), fast_init())
        .await
        .unwrap();
    let repo = Repository::open(storage.store.clone(), Some(PASSWORD))
        .await
        .unwrap();
    let node = NodeSource {
        name: "db".into(),
        roots: vec![src.display().to_string()],
        exclude: vec![],
        follow: vec![],
        immutable: false,
    };
    for _ in 0..3 {
        run_backup(
            repo.clone(),
            std::slice::from_ref(&node),
            &options(dir.path(), &storage),
        )
        .await
        .unwrap();
    }
    // A new process: open the repository and list its backups.
    let list = |storage: Storage| async move {
        let repo = Repository::open_catalog(storage.store.clone(), Some(PASSWORD))
            .await
            .unwrap();
        let backups = repo.list_backups().await.unwrap();
        (backups.len(), storage.requests.counts())
    };
    let (count, warm) = list(Storage::wrap_cached("remote", base.clone(), &config)).await;
    assert_eq!(count, 3);
    // The config is always read (it changes when the repository is migrated).
    assert_eq!((warm.list, warm.get), (1, 1), "warm cache: {warm:?}");
    // Without the cache the same costs a LIST of keys and GETs of every object.
    std::fs::remove_dir_all(dir.path().join("cache")).unwrap();
    let (_, cold) = list(Storage::wrap_cached("remote", base.clone(), &config)).await;
    assert_eq!((cold.list, cold.get), (2, 5), "cold cache: {cold:?}");
    // A key added elsewhere is found although the remembered key listing lacks it.
    let other = Repository::open(base.clone(), Some(PASSWORD))
        .await
        .unwrap();
    let keys = strata_repo::crypto::KeyFile::wrap(
        other.keys(),
        Some("second password"),
        KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
        "now".into(),
        &other.config().id,
    )
    .unwrap();
    base.put(
        "keys/second",
        bytes::Bytes::from(serde_json::to_vec(&keys).unwrap()),
    )
    .await
    .unwrap();
    let fresh = Storage::wrap_cached("remote", base, &config);
    assert!(
        Repository::open_catalog(fresh.store.clone(), Some("second password"))
            .await
            .is_ok()
    );
}

/// How to run a backup of in-process nodes.
#[derive(Debug, Clone)]
struct BackupOptions {
    writer: WriterOptions,
    /// Where nodes keep their files caches.
    state_dir: PathBuf,
    /// The request counter of the storage, to record what the backup cost.
    requests: Option<strata_store::CountingStore>,
}

/// Backs up `nodes` with in-process agents and records the backup (`strata backup DIR`
/// without the CLI). Returns the summary, which says whether every node made it.
async fn run_backup(
    repo: Arc<Repository>,
    nodes: &[NodeSource],
    options: &BackupOptions,
) -> CoordinatorResult<BackupSummary> {
    let provider = Arc::new(SharedRepo {
        storage: IN_PROCESS.into(),
        repo: repo.clone(),
    });
    let defaults = strata_agent::restore::RestoreOptions::default();
    let pauses = strata_coordinator::hooks::PauseLedger::new(options.state_dir.clone());
    let nodes: Vec<Arc<dyn NodeApi>> = nodes
        .iter()
        .map(|source| {
            let config = AgentConfig {
                source: source.clone(),
                state_dir: options.state_dir.clone(),
                pauses: pauses.clone(),
                writer: options.writer.clone(),
                restore_workers: defaults.workers,
                set_owner: defaults.set_owner,
                plugin: strata_agent::service::plugin::files(),
                hooks: Vec::new(),
            };
            Arc::new(LocalNode(Agent::start(config, provider.clone()))) as Arc<dyn NodeApi>
        })
        .collect();
    let coordinator = Coordinator::new(
        nodes,
        Vec::new(),
        IN_PROCESS,
        repo,
        options.requests.clone(),
        std::time::Duration::from_secs(30),
    );
    coordinator
        .backup(&strata_coordinator::audit::local_actor())
        .await?
        .run()
        .await
}

/// The storage name in-process agents of [`run_backup`] use for the shared repository.
const IN_PROCESS: &str = "in-process";
