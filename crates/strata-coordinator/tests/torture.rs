//! Concurrency torture: backups, gc, deletes, cleanups, WAL pushes, index repairs and
//! copies started in random order and at random moments against one repository, each as
//! its own simulated process (its own storage stack, so its own fence), through a store
//! that delays every request, fails some (before they land, or after: a lost answer) and
//! stalls a few for longer than the lock's TTL. After every round, with the chaos off:
//!
//! - the journal of what landed shows no summary written by a process that did not hold
//!   the cluster lock at that moment, and no data or index object deleted by one that did
//!   not hold the garbage collection lock (never two holders at work); garbage collection
//!   runs beside backups and WAL pushes, which it must not refuse;
//! - `verify --read-data` is clean;
//! - every backup recorded complete restores byte for byte;
//! - every WAL segment whose push was acknowledged is fetched back intact;
//! - a delete reported done removed its backup, a refused one removed nothing.
//!
//! The suite runs it for `STRATA_TORTURE_SECS` (default 75) seconds of rounds, or
//! `STRATA_TORTURE_ROUNDS` rounds; `STRATA_TORTURE_SEED` replays a seed (the seed is
//! printed; which request draws which number also depends on scheduling). The key
//! derivation is the cheap one of the test kit.

mod common;
#[path = "../../strata-store/tests/servers.rs"]
mod servers;

use common::{fast_init, pseudo_random};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_agent::backup::NodeSource;
use strata_agent::restore::RestoreOptions;
use strata_agent::service::{Agent, AgentConfig};
use strata_coordinator::actions::Actions;
use strata_coordinator::config::{Config, RetentionConfig};
use strata_coordinator::coordinator::Coordinator;
use strata_coordinator::events::Events;
use strata_coordinator::lock::{LockRecord, LockState};
use strata_coordinator::node::{LocalNode, NodeApi};
use strata_coordinator::restore::run_restore;
use strata_coordinator::setup::SharedRepo;
use strata_coordinator::storage::Storage;
use strata_coordinator::verify::run_verify;
use strata_coordinator::webhooks::Webhooks;
use strata_coordinator::CoordinatorError;
use strata_repo::summary::BackupSummary;
use strata_repo::writer::WriterOptions;
use strata_repo::Repository;
use strata_store::{DynStore, LocalStore};
use strata_testkit::chaos::{Chaos, ChaosConfig, ChaosStore, Landed};

const PASSWORD: &str = "pw";
/// The cluster lock's TTL: short, so stalls outlive it.
const TTL: Duration = Duration::from_secs(2);

type Tree = BTreeMap<String, Vec<u8>>;

use strata_testkit::tree::file_contents as read_tree;

/// One repository under torture, and what the processes acting on it were told.
struct World {
    dir: tempfile::TempDir,
    base: DynStore,
    chaos: Arc<Chaos>,
    config: Config,
    next_process: AtomicU32,
    /// Another repository holding one backup that copies bring in.
    offsite: Arc<Repository>,
    offsite_backup: BackupSummary,
    offsite_tree: Tree,
}

#[derive(Debug)]
enum Op {
    Backup,
    Gc,
    Delete(String),
    Cleanup,
    WalPush(u32),
    /// A push through the long-running archiver (`strata_coordinator::wal_archiver`).
    ArchiverPush(u32),
    Repair,
    Copy,
}

#[derive(Debug)]
enum Outcome {
    Backup(Result<BackupSummary, String>),
    Delete(String, Result<(), CoordinatorError>),
    /// Which push (direct or through the archiver), the segment, its bytes, acknowledged.
    WalPush(&'static str, String, Vec<u8>, bool),
    Other(&'static str, Result<(), String>),
}

fn quick_config(dir: &Path) -> Config {
    let mut config = Config::default();
    config.retry.initial_backoff_ms = 5;
    config.retry.max_backoff_ms = 50;
    config.retry.attempts = 8;
    config.server.lease_ttl_secs = TTL.as_secs();
    config.state_dir = Some(dir.join("state"));
    config
}

fn writer() -> WriterOptions {
    WriterOptions {
        pack_size: 256 << 10,
        // Index objects written during a backup too, beside collections.
        index_every: 8,
        ..WriterOptions::default()
    }
}

impl World {
    async fn new(seed: u64, base: DynStore) -> World {
        let dir = tempfile::tempdir().unwrap();
        let config = quick_config(dir.path());
        let chaos = Chaos::new(ChaosConfig {
            seed,
            max_delay: Duration::from_millis(40),
            fail_ratio: 0.03,
            stall_ratio: 0.004,
            stall: TTL + Duration::from_millis(700),
        });
        Repository::init(base.clone(), Some(PASSWORD), fast_init())
            .await
            .unwrap();
        std::fs::create_dir_all(dir.path().join("src/small")).unwrap();
        std::fs::create_dir_all(dir.path().join("pg_wal")).unwrap();
        // The offsite repository and its one backup.
        let offsite_store: DynStore = Arc::new(LocalStore::new(dir.path().join("offsite")));
        Repository::init(offsite_store.clone(), Some(PASSWORD), fast_init())
            .await
            .unwrap();
        let offsite = Repository::open(offsite_store, Some(PASSWORD))
            .await
            .unwrap();
        let offsite_src = dir.path().join("offsite-src");
        std::fs::create_dir_all(&offsite_src).unwrap();
        std::fs::write(offsite_src.join("a"), pseudo_random(900 << 10, seed ^ 7)).unwrap();
        std::fs::write(offsite_src.join("b"), b"offsite").unwrap();
        let offsite_backup = backup(offsite.clone(), &offsite_src, &dir.path().join("os"))
            .await
            .expect("the offsite backup");
        let world = World {
            offsite_tree: read_tree(&offsite_src),
            dir,
            base,
            chaos,
            config,
            next_process: AtomicU32::new(1),
            offsite,
            offsite_backup,
        };
        world.change_tree(seed);
        world
    }

    fn src(&self) -> PathBuf {
        self.dir.path().join("src")
    }

    /// Where the long-running archiver listens (not where `wal::push` looks, so direct
    /// pushes stay direct).
    fn archiver_socket(&self) -> PathBuf {
        self.dir.path().join("archiver.sock")
    }

    /// Starts the archiver as a process of its own (its own chaotic store and fence), its
    /// repository opened once and kept for the whole run, as `strata wal archiver` does.
    async fn start_archiver(&self) -> tokio::sync::oneshot::Sender<()> {
        let (storage, repo) = loop {
            if let Ok(opened) = self.open().await {
                break opened;
            }
        };
        let mut config = self.config.clone();
        config.postgres.archiver_socket = self.archiver_socket().display().to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            strata_coordinator::wal_archiver::serve(config, storage.store, repo, |_| {}, async {
                let _ = stopped.await;
            })
            .await
            .expect("the archiver serves");
        });
        while !self.archiver_socket().exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop
    }

    /// A new simulated process's storage: its own chaos wrapper, so its own fence.
    fn storage(&self) -> Storage {
        let process = self.next_process.fetch_add(1, Ordering::SeqCst);
        let store = Arc::new(ChaosStore::new(
            self.base.clone(),
            process,
            self.chaos.clone(),
        ));
        Storage::wrap("torture", store, &self.config)
    }

    /// Opens the repository as a new process would (retrying what chaos made fail).
    async fn open(&self) -> Result<(Storage, Arc<Repository>), String> {
        let storage = self.storage();
        let mut last = String::new();
        for _ in 0..3 {
            match Repository::open(storage.store.clone(), Some(PASSWORD)).await {
                Ok(repo) => return Ok((storage, repo)),
                Err(e) => last = e.to_string(),
            }
        }
        Err(format!("open: {last}"))
    }

    fn actions(&self, repo: &Arc<Repository>) -> Actions {
        Actions::new(
            repo.clone(),
            "torture",
            Events::new(Webhooks::from_config(&[]).unwrap()),
            TTL,
            self.config.gc.grace().unwrap(),
        )
    }

    /// Rewrites a few files of the source tree.
    fn change_tree(&self, seed: u64) {
        let src = self.src();
        std::fs::write(src.join("big"), pseudo_random(1 << 20, seed)).unwrap();
        std::fs::write(
            src.join(format!("small/{}", seed % 7)),
            format!("seed {seed}"),
        )
        .unwrap();
    }

    async fn run(self: &Arc<Self>, op: Op) -> Outcome {
        let (storage, repo) = match self.open().await {
            Ok(opened) => opened,
            Err(why) => return Outcome::Other("open", Err(why)),
        };
        let who = "torture";
        match op {
            Op::Backup => {
                let state = self.dir.path().join(format!(
                    "state-{}",
                    self.next_process.fetch_add(1, Ordering::SeqCst)
                ));
                Outcome::Backup(
                    backup(repo, &self.src(), &state)
                        .await
                        .map_err(|e| e.to_string()),
                )
            }
            Op::Gc => Outcome::Other(
                "gc",
                self.actions(&repo)
                    .gc(who, false)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            ),
            Op::Delete(name) => {
                let result = self.actions(&repo).delete(who, &name).await.map(|_| ());
                Outcome::Delete(name, result)
            }
            Op::Cleanup => {
                let policy = RetentionConfig {
                    keep_last: Some(3),
                    min_complete: 1,
                    ..RetentionConfig::default()
                };
                Outcome::Other(
                    "cleanup",
                    self.actions(&repo)
                        .cleanup(who, &policy, false)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                )
            }
            Op::ArchiverPush(n) => {
                let name = format!("00000001000000000000{n:04X}");
                let path = self.dir.path().join("pg_wal").join(&name);
                let content = pseudo_random(64 << 10, n as u64 * 31);
                std::fs::write(&path, &content).unwrap();
                let answer = strata_coordinator::wal_archiver::client::push(
                    &self.archiver_socket(),
                    &path,
                    Duration::from_secs(60),
                )
                .await;
                let pushed = matches!(answer, Ok(Some(outcomes)) if outcomes[0].name() == name);
                Outcome::WalPush("archiver push", name, content, pushed)
            }
            Op::WalPush(n) => {
                let name = format!("00000001000000000000{n:04X}");
                let path = self.dir.path().join("pg_wal").join(&name);
                let content = pseudo_random(64 << 10, n as u64 * 31);
                std::fs::write(&path, &content).unwrap();
                let open = async { Ok(repo.clone()) };
                let pushed =
                    strata_coordinator::wal::push(&self.config, &storage.store, open, &path)
                        .await
                        .is_ok();
                Outcome::WalPush("wal-push", name, content, pushed)
            }
            Op::Repair => Outcome::Other(
                "repair index",
                self.actions(&repo)
                    .repair_index(who, false)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            ),
            Op::Copy => {
                let target = repo.clone();
                let result = self
                    .actions(&self.offsite)
                    .copy(
                        who,
                        &self.offsite_backup,
                        async move {
                            target.reload_index().await?;
                            Ok(target)
                        },
                        "torture",
                        writer(),
                    )
                    .await;
                Outcome::Other("copy", result.map(|_| ()).map_err(|e| e.to_string()))
            }
        }
    }
}

/// Backs up `src` into `repo` with one in-process node (its files cache in `state`).
async fn backup(
    repo: Arc<Repository>,
    src: &Path,
    state: &Path,
) -> Result<BackupSummary, CoordinatorError> {
    let provider = Arc::new(SharedRepo {
        storage: "torture".into(),
        repo: repo.clone(),
    });
    let defaults = RestoreOptions::default();
    let config = AgentConfig {
        source: NodeSource {
            name: "db".into(),
            roots: vec![src.display().to_string()],
            exclude: vec![],
            follow: vec![],
        },
        state_dir: state.to_path_buf(),
        writer: writer(),
        restore_workers: defaults.workers,
        set_owner: defaults.set_owner,
        plugin: strata_agent::service::plugin::files(),
        hooks: Vec::new(),
    };
    let node = Arc::new(LocalNode(Agent::start(config, provider))) as Arc<dyn NodeApi>;
    let coordinator = Coordinator::new(vec![node], Vec::new(), "torture", repo, None, TTL);
    coordinator.backup("torture").await?.run().await
}

/// Follows both locks through the journal: every summary written must come from the
/// process whose cluster lock generation is the newest, and held, when it lands; every
/// delete of data or index objects from the holder of the garbage collection lock; every
/// other delete of a repository object from a holder of either.
fn check_journal(landed: &[Landed], round: u32) -> usize {
    // Per chain: (generation, process, held).
    let mut newest: BTreeMap<&str, (u64, u32, bool)> = BTreeMap::new();
    let mut checked = 0;
    for entry in landed {
        let chain = ["locks/cluster/", "locks/gc/"]
            .into_iter()
            .find(|c| entry.key.starts_with(c));
        if let Some(chain) = chain {
            let Some(generation) = entry.key[chain.len()..]
                .strip_suffix(".json")
                .and_then(|g| g.parse::<u64>().ok())
            else {
                continue;
            };
            if entry.delete || newest.get(chain).is_some_and(|(g, _, _)| *g > generation) {
                continue;
            }
            let record: LockRecord = serde_json::from_slice(entry.body.as_ref().unwrap()).unwrap();
            newest.insert(
                chain,
                (generation, entry.process, record.state == LockState::Held),
            );
            continue;
        }
        let holder = |chain: &str| {
            newest
                .get(chain)
                .filter(|(_, _, held)| *held)
                .map(|(_, p, _)| *p)
        };
        let allowed: Vec<Option<u32>> = if !entry.delete && entry.key.starts_with("summaries/") {
            vec![holder("locks/cluster/")]
        } else if entry.delete
            && (entry.key.starts_with("data/") || entry.key.starts_with("index/"))
        {
            vec![holder("locks/gc/")]
        } else if entry.delete
            && !entry.key.starts_with("locks/")
            && !entry.key.starts_with("writers/")
        {
            vec![holder("locks/cluster/"), holder("locks/gc/")]
        } else {
            continue;
        };
        checked += 1;
        assert!(
            allowed.contains(&Some(entry.process)),
            "round {round}: process {} {} {} while the locks were {newest:?} (generation, process, held)",
            entry.process,
            if entry.delete { "deleted" } else { "wrote" },
            entry.key
        );
    }
    checked
}

fn pick<'a, T>(chaos: &Chaos, from: &'a [T]) -> &'a T {
    &from[(chaos.unit() * from.len() as f64) as usize % from.len()]
}

async fn torture(base: DynStore, default_secs: u64) {
    let seed: u64 = std::env::var("STRATA_TORTURE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let rounds: Option<u32> = std::env::var("STRATA_TORTURE_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok());
    let secs: u64 = std::env::var("STRATA_TORTURE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_secs);
    eprintln!("torture: STRATA_TORTURE_SEED={seed}");
    let world = Arc::new(World::new(seed, base).await);
    let stop_archiver = world.start_archiver().await;
    let started = Instant::now();
    let clean = Storage::wrap("check", world.base.clone(), &world.config);
    let mut segments: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut trees: BTreeMap<String, Tree> = BTreeMap::new();
    trees.insert(
        world.offsite_backup.name.clone(),
        world.offsite_tree.clone(),
    );
    let (mut round, mut next_segment, mut checked) = (0u32, 1u32, 0usize);
    let mut counts: BTreeMap<&'static str, (u32, u32)> = BTreeMap::new();
    loop {
        match rounds {
            Some(n) if round >= n => break,
            None if started.elapsed() >= Duration::from_secs(secs) => break,
            _ => {}
        }
        round += 1;
        world.change_tree(seed.wrapping_add(round as u64));
        let tree = read_tree(&world.src());
        let listed: Vec<String> = Repository::open(clean.store.clone(), Some(PASSWORD))
            .await
            .unwrap()
            .list_backups()
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.name)
            .collect();
        // 3 to 6 operations, each started after a random pause.
        let n = 3 + (world.chaos.unit() * 4.0) as usize;
        let mut tasks = Vec::new();
        for _ in 0..n {
            let op = match *pick(&world.chaos, &[0, 0, 1, 2, 3, 4, 4, 5, 6, 7, 7]) {
                0 => Op::Backup,
                1 => Op::Gc,
                2 if !listed.is_empty() => Op::Delete(pick(&world.chaos, &listed).clone()),
                3 => Op::Cleanup,
                4 | 2 => {
                    next_segment += 1;
                    Op::WalPush(next_segment)
                }
                5 => Op::Repair,
                7 => {
                    next_segment += 1;
                    Op::ArchiverPush(next_segment)
                }
                _ => Op::Copy,
            };
            let pause = Duration::from_millis((world.chaos.unit() * 400.0) as u64);
            let world = world.clone();
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(pause).await;
                world.run(op).await
            }));
        }
        let mut refused_deletes = Vec::new();
        let mut done_deletes = Vec::new();
        // A cleanup removes backups too (also one that fails part-way): a refused delete
        // is checked in rounds without one.
        let mut cleaned = false;
        for task in tasks {
            let outcome = task.await.unwrap();
            let (name, ok) = match &outcome {
                Outcome::Backup(r) => ("backup", r.as_ref().is_ok_and(|s| s.is_complete())),
                Outcome::Delete(_, r) => ("delete", r.is_ok()),
                Outcome::WalPush(what, _, _, ok) => (*what, *ok),
                Outcome::Other(what, r) => (*what, r.is_ok()),
            };
            cleaned |= name == "cleanup";
            let count = counts.entry(name).or_default();
            count.0 += ok as u32;
            count.1 += 1;
            match outcome {
                Outcome::Backup(Ok(summary)) if summary.is_complete() => {
                    trees.insert(summary.name.clone(), tree.clone());
                }
                Outcome::Delete(name, Ok(())) => done_deletes.push(name),
                Outcome::Delete(name, Err(CoordinatorError::Busy(_))) => refused_deletes.push(name),
                Outcome::WalPush(_, name, content, true) => {
                    segments.insert(name, content);
                }
                _ => {}
            }
        }

        // The checks, with the chaos off.
        world.chaos.set_enabled(false);
        checked += check_journal(&world.chaos.journal.drain(), round);
        let repo = Repository::open(clean.store.clone(), Some(PASSWORD))
            .await
            .unwrap();
        let report = run_verify(&repo, None, true).await.unwrap();
        assert!(
            report.is_ok(),
            "round {round} (seed {seed}): verify --read-data: {:?}",
            report.problems
        );
        let backups = repo.list_backups().await.unwrap();
        let names: BTreeSet<&str> = backups.iter().map(|b| b.name.as_str()).collect();
        for name in &done_deletes {
            assert!(
                !names.contains(name.as_str()) || name == &world.offsite_backup.name,
                "round {round} (seed {seed}): deleted {name} is still listed"
            );
        }
        for name in refused_deletes.iter().filter(|_| !cleaned) {
            let copied_back = name == &world.offsite_backup.name;
            assert!(
                names.contains(name.as_str()) || copied_back || done_deletes.contains(name),
                "round {round} (seed {seed}): a refused delete removed {name}"
            );
        }
        for summary in backups.iter().filter(|b| b.is_complete()) {
            let expected = trees.get(&summary.name).unwrap_or_else(|| {
                panic!(
                    "round {round} (seed {seed}): {} is complete but no backup reported it",
                    summary.name
                )
            });
            let target = world
                .dir
                .path()
                .join(format!("restore-{round}-{}", summary.name));
            if target.exists() {
                continue;
            }
            run_restore(
                repo.clone(),
                summary,
                &target,
                None,
                RestoreOptions::default(),
            )
            .await
            .unwrap();
            assert!(
                &read_tree(&target) == expected,
                "round {round} (seed {seed}): {} does not restore byte for byte",
                summary.name
            );
            std::fs::remove_dir_all(&target).unwrap();
        }
        for (name, content) in &segments {
            let dest = world.dir.path().join("fetched");
            strata_postgres::wal::fetch(&repo, name, &dest, None)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "round {round} (seed {seed}): acknowledged {name} cannot be fetched: {e}"
                    )
                });
            assert!(
                &std::fs::read(&dest).unwrap() == content,
                "round {round} (seed {seed}): {name} came back different"
            );
        }
        world.chaos.set_enabled(true);
    }
    let _ = stop_archiver.send(());
    eprintln!(
        "torture: {round} rounds in {:.0} s, {checked} guarded writes and deletes checked; succeeded/started: {counts:?}",
        started.elapsed().as_secs_f64()
    );
    assert!(round > 0);
    let (backups_ok, _) = counts.get("backup").copied().unwrap_or_default();
    assert!(backups_ok > 0, "no backup went through: {counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_in_random_order_through_a_chaotic_store_on_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let base: DynStore = Arc::new(LocalStore::new(dir.path().join("repo")));
    torture(base, 75).await;
}

/// The same on Azurite, the Azure Blob emulator (whose conditional writes are atomic; the
/// S3 emulator of the suite checks conditions but does not apply them atomically, so two
/// holders seen there could be the emulator's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_in_random_order_through_a_chaotic_store_on_azurite() {
    let server = servers::azure();
    let base = strata_store::open_location(&server.url, &server.options).unwrap();
    torture(base, 40).await;
}
