//! Concurrency torture: backups, gc, deletes, cleanups, WAL pushes, index repairs and
//! copies started in random order and at random moments against one repository, each as
//! its own simulated process: its own storage stack, so its own fence, with the chaos of
//! `strata_testkit::chaos` below that fence, where the storage is. Every request is
//! delayed, some fail before they land; a write or delete that went out lands even when
//! its process stopped waiting for it (its answer lost, its fence closed at its lock's
//! deadline, its retries given up, the process frozen), up to [`LAND_WITHIN`] after it
//! was issued: the processes' request timeout, below the landing window the protocol
//! waits out (`STRATA_TEST_MAX_FLIGHT_SECS`, [`MAX_FLIGHT_SECS`] here). Some backups run
//! on slow processes and outlive their marks' TTL ([`TTL`]) several times over, renewing
//! them; frozen processes let their locks and marks lapse; half the processes write
//! their lock and mark records with a wall clock up to five minutes off. `[gc] grace` is
//! [`GRACE`]: no rule may rest on a backup being shorter.
//!
//! Every round runs a backup, a collection and a scheduled cleanup (which keeps the last
//! backup, tries again while the cluster is busy, and collects), and 2 to 5 operations
//! drawn at random. After it, with the chaos off (writes still in flight land whenever
//! they land):
//!
//! - the journal shows no summary issued by a process that did not hold the cluster lock
//!   at that moment, and no data or index object deleted by one that did not hold the
//!   garbage collection lock (never two holders at work); a write the process was told
//!   succeeded is checked where it landed too; garbage collection runs beside backups and
//!   WAL pushes, which it must not refuse;
//! - `verify --read-data` is clean;
//! - every backup recorded complete restores byte for byte (one whose summary landed
//!   after its backup gave up restores to the source tree of a recent round);
//! - every WAL segment whose push was acknowledged is fetched back intact (the new ones
//!   every round, all of them every tenth);
//! - a delete reported done removed its backup; a refused one deleted nothing (its
//!   process's landings in the journal).
//!
//! And progress: garbage collection must have deleted packs in at least
//! [`MIN_COLLECTING_SHARE`] of the rounds of a run of 40 or more (a soak), in one round
//! at least of a shorter one, so a collection that deletes nothing fails. A short run in
//! which no round collected (a loaded machine's few slow rounds) ends with one collection
//! once the chaos stopped and every lapse passed, which must delete packs.
//! (It deletes in about half: what a round condemns while writers run is swept by a
//! later collection, and a writer that lets its mark lapse holds sweeps off for its
//! lapse and the landing window, several rounds.)
//!
//! The suite runs it for `STRATA_TORTURE_SECS` seconds of rounds (default 120 on a local
//! directory, 90 on Azurite; `scripts/test.sh` keeps the defaults), or
//! `STRATA_TORTURE_ROUNDS` rounds; `STRATA_TORTURE_SEED` replays a seed (the seed is
//! printed; which request draws which number also depends on scheduling). A run ends
//! with one line `torture-result seed=.. rounds=.. violations=.. ...` (`bench/soak.sh`
//! reads it); a violation's message names a file holding the journal of its last two
//! rounds. The key derivation is the cheap one of the test kit. A run is almost all
//! waiting (pauses, request delays, lock TTLs, the landing window): about 2 s of CPU in
//! 140 s on a local directory, 12 s in 110 s on Azurite (mostly the emulator), so the
//! suite runs it beside other tests rather than shortening it (docs/benchmarks.md, "The
//! test command's time").
//!
//! **Negative controls.** Three safety rules the torture can reach each have a test that
//! breaks that rule alone with the test-only switch `STRATA_TEST_UNSAFE` (in a process of
//! its own, as the switch is process-wide) and passes only when the round checks find the
//! damage within [`CONTROL_SECS`] seconds of rounds: `unindexed-by-age` (gc deletes
//! unindexed data while a writer runs), `no-landing-wait` (marks end at their lapse, and
//! a writer withdraws its mark with writes still in flight) and `wall-clock` (marks judged
//! by the collector's wall clock, against records written by processes whose clocks are
//! off). They take minutes, so the suite leaves them out (`--run-ignored` runs them).
//! Two rules cannot be reached in one process: `proc-liveness`, since every simulated
//! process shares one real process, one PID and one `/proc` (a holder is never judged
//! dead by it), and `no-relookup`, since no reader runs across a collection here; the
//! command-line trials of `crates/strata/tests/no_clock_deletes.rs` cover both, and every
//! rule, with real processes.

mod common;
#[path = "../../strata-store/tests/servers.rs"]
mod servers;

use common::{fast_init, pseudo_random};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_agent::backup::NodeSource;
use strata_agent::local_node::LocalNode;
use strata_agent::restore::RestoreOptions;
use strata_agent::service::{Agent, AgentConfig};
use strata_coordinator::actions::Actions;
use strata_coordinator::config::{Config, RetentionConfig};
use strata_coordinator::coordinator::Coordinator;
use strata_coordinator::events::Events;
use strata_coordinator::lock::{LockRecord, LockState};
use strata_coordinator::node::NodeApi;
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
use strata_testkit::chaos::{Chaos, ChaosConfig, ChaosStore, Landed, SkewedClockStore};

const PASSWORD: &str = "pw";
/// The cluster lock's TTL, and the marks' of backups and WAL pushes: short, so stalls and
/// slow processes outlive it.
const TTL: Duration = Duration::from_secs(2);

/// The longest a write may stay in flight, as this test tells the protocol
/// (`STRATA_TEST_MAX_FLIGHT_SECS`, read once per process): a lapsed mark ends this long
/// after its lapse.
const MAX_FLIGHT_SECS: u64 = 6;

/// Every write or delete the chaos lets through lands within this of being issued: the
/// processes' request timeout (`[retry] timeout_secs`), below [`MAX_FLIGHT_SECS`].
const LAND_WITHIN: Duration = Duration::from_secs(4);

/// `[gc] grace`: seconds, where backups run for several.
const GRACE: &str = "1s";

/// The share of rounds in which garbage collection must have deleted packs.
const MIN_COLLECTING_SHARE: f64 = 0.25;

/// How long a negative control runs rounds at most before it must have found the damage.
const CONTROL_SECS: u64 = 300;

/// The operations drawn, by weight: backups (0), collections (1), deletes (2), cleanups
/// (3), WAL pushes (4), index repairs (5), copies (6), pushes through the archiver (7).
const MIX: [u8; 33] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 4, 4, 4, 5, 5, 5, 6, 7, 7, 7, 7, 7,
    7,
];

/// How many rounds' source trees a backup whose summary landed late is matched against.
const RECENT_TREES: usize = 32;

/// Tells the protocol the landing window of this test; before any strata code runs.
fn setup() {
    std::env::set_var("STRATA_TEST_MAX_FLIGHT_SECS", MAX_FLIGHT_SECS.to_string());
    assert!(LAND_WITHIN < Duration::from_secs(MAX_FLIGHT_SECS));
}

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
    /// A cleanup; `true`: a scheduled one, which tries again while the cluster is busy
    /// and collects garbage after it.
    Cleanup(bool),
    WalPush(u32),
    /// A push through the long-running archiver (`strata_wal::archiver`).
    ArchiverPush(u32),
    Repair,
    Copy,
}

#[derive(Debug)]
enum Outcome {
    Backup(Result<BackupSummary, String>),
    /// The backup, the process that tried, and how it ended.
    Delete(String, u32, Result<(), CoordinatorError>),
    /// Which push (direct or through the archiver), the segment, its bytes, acknowledged.
    WalPush(&'static str, String, Vec<u8>, bool),
    Other(&'static str, Result<(), String>),
}

fn quick_config(dir: &Path) -> Config {
    let mut config = Config::default();
    config.retry.initial_backoff_ms = 5;
    config.retry.max_backoff_ms = 50;
    config.retry.attempts = 8;
    config.retry.timeout_secs = LAND_WITHIN.as_secs();
    config.server.lease_ttl_secs = TTL.as_secs();
    config.gc.grace = GRACE.into();
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
            max_delay: Duration::from_millis(15),
            fail_ratio: 0.03,
            stall_ratio: 0.004,
            freeze_ratio: 0.01,
            stall: TTL + Duration::from_millis(700),
            late_ratio: 0.03,
            land_within: LAND_WITHIN,
            slow_ratio: 0.15,
            slow_delay: Duration::from_millis(250),
            skewed_ratio: 0.5,
            max_skew: Duration::from_secs(300),
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
            if let Ok((storage, repo, _)) = self.open(false).await {
                break (storage, repo);
            }
        };
        let mut config = self.config.clone();
        config.postgres.archiver_socket = self.archiver_socket().display().to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            strata_wal::archiver::serve(config, storage.store, repo, |_| {}, async {
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

    /// A new simulated process's storage: its own chaos wrapper under its own fence (the
    /// chaos is the storage), for some a wall clock that is off, and with `may_be_slow` a
    /// chance of slow requests.
    fn storage(&self, may_be_slow: bool) -> (Storage, u32) {
        let process = self.next_process.fetch_add(1, Ordering::SeqCst);
        let (base, chaos) = (self.base.clone(), self.chaos.clone());
        let store = Arc::new(if may_be_slow {
            ChaosStore::maybe_slow(base, process, chaos)
        } else {
            ChaosStore::new(base, process, chaos)
        });
        let mut storage = Storage::wrap("torture", store, &self.config);
        let skew = self.chaos.draw_skew();
        if skew != 0 {
            storage.store = Arc::new(SkewedClockStore::new(storage.store, skew));
        }
        (storage, process)
    }

    /// Opens the repository as a new process would (retrying what chaos made fail);
    /// returns the process's number too.
    async fn open(&self, may_be_slow: bool) -> Result<(Storage, Arc<Repository>, u32), String> {
        let (storage, process) = self.storage(may_be_slow);
        let mut last = String::new();
        for _ in 0..3 {
            match Repository::open(storage.store.clone(), Some(PASSWORD)).await {
                Ok(repo) => return Ok((storage, repo, process)),
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
        // Backups may run on slow processes: they outlive their marks' TTL several times.
        let (storage, repo, process) = match self.open(matches!(op, Op::Backup)).await {
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
                Outcome::Delete(name, process, result)
            }
            Op::Cleanup(scheduled) => {
                let policy = RetentionConfig {
                    keep_last: Some(1),
                    min_complete: 1,
                    ..RetentionConfig::default()
                };
                let actions = self.actions(&repo);
                // A scheduled cleanup tries again while the cluster is busy; when it did
                // not collect garbage (it removed nothing) it collects what earlier
                // collections left waiting.
                let result = busy_retried(scheduled, || actions.cleanup(who, &policy, false))
                    .await
                    .map(|report| report.gc.is_some());
                let result = match result {
                    Ok(false) if scheduled => busy_retried(true, || actions.gc(who, false))
                        .await
                        .map(|_| ()),
                    result => result.map(|_| ()),
                };
                Outcome::Other("cleanup", result.map_err(|e| e.to_string()))
            }
            Op::ArchiverPush(n) => {
                let name = format!("00000001000000000000{n:04X}");
                let path = self.dir.path().join("pg_wal").join(&name);
                let content = pseudo_random(64 << 10, n as u64 * 31);
                std::fs::write(&path, &content).unwrap();
                let answer = strata_wal::archiver::client::push(
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
                let open = async { Ok::<_, strata_coordinator::CoordinatorError>(repo.clone()) };
                let pushed = strata_wal::push(&self.config, &storage.store, open, &path)
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

/// Runs `action`, and with `again` runs it again while it finds the cluster busy (every
/// quarter of a second, for ten seconds at most), as a scheduler does.
async fn busy_retried<T, F, Fut>(again: bool, mut action: F) -> Result<T, CoordinatorError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, CoordinatorError>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match action().await {
            Err(CoordinatorError::Busy(_)) if again && tries < 40 => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            result => return result,
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
            immutable: false,
        },
        state_dir: state.to_path_buf(),
        pauses: strata_coordinator::hooks::PauseLedger::new(state.to_path_buf()),
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

/// Both locks as the journal shows them, followed across rounds (a write issued in one
/// round may land in the next): per chain, the newest generation landed, its process and
/// whether it says held.
#[derive(Debug, Default)]
struct Holders {
    newest: BTreeMap<&'static str, (u64, u32, bool)>,
}

impl Holders {
    /// Follows both locks through `landed`: every summary must be issued by the process
    /// whose cluster lock generation is the newest, and held, at that moment; every
    /// delete of data or index objects by the holder of the garbage collection lock; every
    /// other delete of a repository object by a holder of either. A write or delete the
    /// process was told succeeded must also have landed while it held the lock; one it
    /// was not told of may land later (its process's fence closed meanwhile), which the
    /// landing window covers. Returns how many were checked.
    fn check(&mut self, landed: &[Landed], round: u32) -> Result<usize, String> {
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
                if entry.issued
                    || entry.delete
                    || self
                        .newest
                        .get(chain)
                        .is_some_and(|(g, _, _)| *g > generation)
                {
                    continue;
                }
                let record: LockRecord =
                    serde_json::from_slice(entry.body.as_ref().unwrap()).unwrap();
                self.newest.insert(
                    chain,
                    (generation, entry.process, record.state == LockState::Held),
                );
                continue;
            }
            let holder = |chain: &str| {
                self.newest
                    .get(chain)
                    .filter(|(_, _, held)| *held)
                    .map(|(_, p, _)| *p)
            };
            let allowed: Vec<Option<u32>> = if !entry.delete && entry.key.starts_with("summaries/")
            {
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
            if !entry.issued && !entry.was_answered() {
                continue;
            }
            checked += 1;
            if !allowed.contains(&Some(entry.process)) {
                return Err(format!(
                    "round {round}: process {} {} {} {} while the locks were {:?} (generation, process, held)",
                    entry.process,
                    if entry.issued { "issued" } else { "landed" },
                    if entry.delete { "a delete of" } else { "a write of" },
                    entry.key,
                    self.newest
                ));
            }
        }
        Ok(checked)
    }
}

/// A delete refused as busy removed nothing: no delete of a repository object landed
/// from its process.
fn refused_deleted_nothing(
    landed: &[Landed],
    refused: &[(String, u32)],
    round: u32,
) -> Result<(), String> {
    for (name, process) in refused {
        let deleted = landed.iter().find(|e| {
            e.process == *process
                && e.delete
                && !e.issued
                && !e.key.starts_with("locks/")
                && !e.key.starts_with("writers/")
        });
        if let Some(entry) = deleted {
            return Err(format!(
                "round {round}: the delete of {name} was refused as busy, yet its process deleted {}",
                entry.key
            ));
        }
    }
    Ok(())
}

/// The journal of a round as text, for the report of a violation.
fn journal_text(landed: &[Landed], started: Instant) -> String {
    landed
        .iter()
        .map(|e| {
            let body = e
                .body
                .as_ref()
                .and_then(|b| serde_json::from_slice::<LockRecord>(b).ok())
                .map(|r| format!(" [{:?} {} {}]", r.state, r.kind, r.operation))
                .unwrap_or_default();
            format!(
                "{:>9.3} s  process {:<4} {:<8} {:<6} {}{body}{}\n",
                e.at.duration_since(started).as_secs_f64(),
                e.process,
                if e.issued { "issued" } else { "landed" },
                if e.delete { "delete" } else { "write" },
                e.key,
                if !e.issued && !e.was_answered() {
                    " (not answered)"
                } else {
                    ""
                }
            )
        })
        .collect()
}

fn pick<'a, T>(chaos: &Chaos, from: &'a [T]) -> &'a T {
    &from[(chaos.unit() * from.len() as f64) as usize % from.len()]
}

/// How long a run goes on.
#[derive(Debug, Clone, Copy)]
enum Budget {
    Secs(u64),
    Rounds(u32),
}

impl Budget {
    /// `STRATA_TORTURE_ROUNDS` rounds, or `STRATA_TORTURE_SECS` seconds (else `default_secs`).
    fn from_env(default_secs: u64) -> Budget {
        let var = |name: &str| std::env::var(name).ok().and_then(|s| s.parse::<u64>().ok());
        match var("STRATA_TORTURE_ROUNDS") {
            Some(rounds) => Budget::Rounds(rounds as u32),
            None => Budget::Secs(var("STRATA_TORTURE_SECS").unwrap_or(default_secs)),
        }
    }
}

/// What a run found.
#[derive(Debug)]
struct Run {
    seed: u64,
    rounds: u32,
    secs: f64,
    /// The first violation the round checks found (the run stops there).
    violation: Option<String>,
    /// Rounds in which garbage collection deleted packs, and how many it deleted.
    collecting_rounds: u32,
    /// No round collected under chaos: the collection counted is the one run after it
    /// stopped and every lapse passed.
    settled: bool,
    packs_deleted: u64,
    /// Guarded writes and deletes checked against the locks.
    checked: usize,
    /// Writes and deletes that landed with no answer saying so (late, or answer lost).
    unanswered: usize,
    counts: BTreeMap<&'static str, (u32, u32)>,
}

impl Run {
    fn report(&self, what: &str) {
        eprintln!(
            "torture: {what}: {} rounds in {:.0} s, {} guarded writes and deletes checked, {} landings nobody was told of; succeeded/started: {:?}",
            self.rounds, self.secs, self.checked, self.unanswered, self.counts
        );
        if let Some(violation) = &self.violation {
            eprintln!("torture: violation: {violation}");
        }
        eprintln!(
            "torture-result what={what} seed={} rounds={} secs={:.0} violations={} gc_rounds={} packs_deleted={} settled={}",
            self.seed,
            self.rounds,
            self.secs,
            self.violation.is_some() as u32,
            self.collecting_rounds,
            self.packs_deleted,
            self.settled
        );
    }
}

/// The seed of a run: `STRATA_TORTURE_SEED`, or one from the time.
fn seed() -> u64 {
    std::env::var("STRATA_TORTURE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

/// Runs rounds on `base` until `budget` is spent or a round check finds a violation.
async fn torture(base: DynStore, budget: Budget) -> Run {
    let seed = seed();
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
    let mut recent: VecDeque<Tree> = VecDeque::new();
    let mut holders = Holders::default();
    let mut journals: VecDeque<Vec<Landed>> = VecDeque::new();
    let mut run = Run {
        seed,
        rounds: 0,
        secs: 0.0,
        violation: None,
        collecting_rounds: 0,
        settled: false,
        packs_deleted: 0,
        checked: 0,
        unanswered: 0,
        counts: BTreeMap::new(),
    };
    let mut next_segment = 1u32;
    loop {
        match budget {
            Budget::Rounds(n) if run.rounds >= n => break,
            Budget::Secs(secs) if started.elapsed() >= Duration::from_secs(secs) => break,
            _ => {}
        }
        run.rounds += 1;
        let round = run.rounds;
        world.change_tree(seed.wrapping_add(round as u64));
        let tree = read_tree(&world.src());
        recent.push_back(tree.clone());
        if recent.len() > RECENT_TREES {
            recent.pop_front();
        }
        let listed: Vec<String> = match Repository::open(clean.store.clone(), Some(PASSWORD)).await
        {
            Ok(repo) => match repo.list_backups().await {
                Ok(list) => list.into_iter().map(|b| b.name).collect(),
                Err(e) => {
                    run.violation = Some(format!("round {round}: cannot list the backups: {e}"));
                    break;
                }
            },
            Err(e) => {
                run.violation = Some(format!("round {round}: cannot open the repository: {e}"));
                break;
            }
        };
        // Every round a backup, a collection and a scheduled cleanup (keeping the last
        // backup: the one before becomes garbage), and 2 to 5 other operations, each
        // started after a random pause.
        let n = 2 + (world.chaos.unit() * 4.0) as usize;
        let mut tasks = Vec::new();
        for i in 0..n + 3 {
            // Copies are rare: their mark lives the fixed TTL of copies (a minute), so one
            // left to lapse holds collections off for that long plus the landing window.
            let draw = *pick(&world.chaos, &MIX);
            let op = match [3, 0, 1].get(i).copied().unwrap_or(draw) {
                0 => Op::Backup,
                1 => Op::Gc,
                2 if !listed.is_empty() => Op::Delete(pick(&world.chaos, &listed).clone()),
                3 => Op::Cleanup(i == 0),
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
            // The scheduled cleanup comes later, most often after the round's backups;
            // collections at any moment of them.
            let pause = match (i, &op) {
                (0, _) => 400 + (world.chaos.unit() * 1200.0) as u64,
                (_, Op::Gc) => (world.chaos.unit() * 2500.0) as u64,
                _ => (world.chaos.unit() * 400.0) as u64,
            };
            let pause = Duration::from_millis(pause);
            let world = world.clone();
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(pause).await;
                world.run(op).await
            }));
        }
        // The processes of refused deletes, which must delete nothing.
        let mut refused_deletes: Vec<(String, u32)> = Vec::new();
        let mut done_deletes = Vec::new();
        let mut pushed = Vec::new();
        for task in tasks {
            let outcome = task.await.unwrap();
            let (name, ok) = match &outcome {
                Outcome::Backup(r) => ("backup", r.as_ref().is_ok_and(|s| s.is_complete())),
                Outcome::Delete(_, _, r) => ("delete", r.is_ok()),
                Outcome::WalPush(what, _, _, ok) => (*what, *ok),
                Outcome::Other(what, r) => (*what, r.is_ok()),
            };
            let count = run.counts.entry(name).or_default();
            count.0 += ok as u32;
            count.1 += 1;
            match outcome {
                Outcome::Backup(Ok(summary)) if summary.is_complete() => {
                    trees.insert(summary.name.clone(), tree.clone());
                }
                Outcome::Delete(name, _, Ok(())) => done_deletes.push(name),
                Outcome::Delete(name, process, Err(CoordinatorError::Busy(_))) => {
                    refused_deletes.push((name, process))
                }
                Outcome::WalPush(_, name, content, true) => {
                    pushed.push(name.clone());
                    segments.insert(name, content);
                }
                _ => {}
            }
        }

        // The checks, with the chaos off.
        world.chaos.set_enabled(false);
        let landed = world.chaos.journal.drain();
        let packs_deleted = landed
            .iter()
            .filter(|e| e.delete && !e.issued && e.key.starts_with("data/"))
            .count();
        run.packs_deleted += packs_deleted as u64;
        run.collecting_rounds += (packs_deleted > 0) as u32;
        run.unanswered += landed
            .iter()
            .filter(|e| !e.issued && !e.was_answered())
            .count();
        let checked = holders.check(&landed, round).and_then(|checked| {
            refused_deleted_nothing(&landed, &refused_deletes, round).map(|()| checked)
        });
        journals.push_back(landed);
        if journals.len() > 2 {
            journals.pop_front();
        }
        // Every segment every tenth round, the new ones in the others.
        let fetch: Vec<(&String, &Vec<u8>)> = if round.is_multiple_of(10) {
            segments.iter().collect()
        } else {
            pushed.iter().map(|n| (n, &segments[n])).collect()
        };
        let checks = async {
            run.checked += checked?;
            check_repository(
                &world,
                &clean,
                round,
                &mut trees,
                &recent,
                &done_deletes,
                &fetch,
            )
            .await
        };
        if let Err(violation) = checks.await {
            let path = std::env::temp_dir().join(format!("strata-torture-journal-{seed}.txt"));
            let text: String = journals.iter().map(|j| journal_text(j, started)).collect();
            let _ = std::fs::write(&path, text);
            run.violation = Some(format!(
                "{violation} (seed {seed}; the journal of the last two rounds is in {})",
                path.display()
            ));
            break;
        }
        world.chaos.set_enabled(true);
    }
    // No round collected (a loaded machine: a few slow rounds, each falling in the
    // windows in which lapsing locks and writers' marks hold collections off): once the
    // chaos stops and every lapse has passed, garbage collection must delete the garbage
    // the run left. (The soak, bench/soak.sh, judges the share of collecting rounds
    // under chaos over thousands of rounds.)
    if run.violation.is_none() && run.collecting_rounds == 0 && run.rounds > 0 {
        world.chaos.set_enabled(false);
        let _ = world.chaos.journal.drain();
        let lapse = TTL + Duration::from_secs(MAX_FLIGHT_SECS + 2);
        tokio::time::sleep(lapse).await;
        let _ = world.run(Op::Cleanup(true)).await;
        for _ in 0..3 {
            let _ = world.run(Op::Gc).await;
            let deleted = world
                .chaos
                .journal
                .drain()
                .iter()
                .filter(|e| e.delete && !e.issued && e.key.starts_with("data/"))
                .count();
            if deleted > 0 {
                run.collecting_rounds += 1;
                run.packs_deleted += deleted as u64;
                run.settled = true;
                break;
            }
            tokio::time::sleep(lapse).await;
        }
    }
    let _ = stop_archiver.send(());
    run.secs = started.elapsed().as_secs_f64();
    run
}

/// The checks of a round on the repository (see the module's doc); `Err` names the first
/// violation.
#[allow(clippy::too_many_arguments)]
async fn check_repository(
    world: &World,
    clean: &Storage,
    round: u32,
    trees: &mut BTreeMap<String, Tree>,
    recent: &VecDeque<Tree>,
    done_deletes: &[String],
    segments: &[(&String, &Vec<u8>)],
) -> Result<(), String> {
    let repo = Repository::open(clean.store.clone(), Some(PASSWORD))
        .await
        .map_err(|e| format!("round {round}: cannot open the repository: {e}"))?;
    let report = run_verify(&repo, None, true)
        .await
        .map_err(|e| format!("round {round}: verify --read-data failed: {e}"))?;
    if !report.is_ok() {
        return Err(format!(
            "round {round}: verify --read-data: {:?}",
            report.problems
        ));
    }
    let backups = repo
        .list_backups()
        .await
        .map_err(|e| format!("round {round}: cannot list the backups: {e}"))?;
    let names: BTreeSet<&str> = backups.iter().map(|b| b.name.as_str()).collect();
    let offsite = &world.offsite_backup.name;
    for name in done_deletes {
        if names.contains(name.as_str()) && name != offsite {
            return Err(format!("round {round}: deleted {name} is still listed"));
        }
    }
    for summary in backups.iter().filter(|b| b.is_complete()) {
        let target = world
            .dir
            .path()
            .join(format!("restore-{round}-{}", summary.name));
        run_restore(
            repo.clone(),
            summary,
            &target,
            None,
            RestoreOptions::default(),
        )
        .await
        .map_err(|e| format!("round {round}: {} does not restore: {e}", summary.name))?;
        let restored = read_tree(&target);
        std::fs::remove_dir_all(&target).unwrap();
        match trees.get(&summary.name) {
            Some(expected) if *expected == restored => {}
            Some(_) => {
                return Err(format!(
                    "round {round}: {} does not restore byte for byte",
                    summary.name
                ))
            }
            // Its summary landed after its backup gave up on it: a backup like any other,
            // of the tree of the round it ran in.
            None if recent.contains(&restored) => {
                trees.insert(summary.name.clone(), restored);
            }
            None => {
                return Err(format!(
                    "round {round}: {} is complete, no backup reported it, and it restores to no recent source tree",
                    summary.name
                ))
            }
        }
    }
    for (name, content) in segments {
        let dest = world.dir.path().join("fetched");
        strata_postgres::wal::fetch(&repo, name, &dest, None)
            .await
            .map_err(|e| format!("round {round}: acknowledged {name} cannot be fetched: {e}"))?;
        if &std::fs::read(&dest).unwrap() != *content {
            return Err(format!("round {round}: {name} came back different"));
        }
    }
    Ok(())
}

/// Rounds below which a run's progress (backups done, packs collected) is not judged.
const MIN_ROUNDS_TO_JUDGE_PROGRESS: u32 = 8;

/// The torture as the suite runs it: no violation, backups done, packs collected in most
/// rounds.
async fn torture_passes(base: DynStore, what: &str, default_secs: u64) {
    let run = torture(base, Budget::from_env(default_secs)).await;
    run.report(what);
    if let Some(violation) = &run.violation {
        panic!("{violation}");
    }
    assert!(run.rounds > 0);
    // Progress is judged where it can be told from chance: a machine so loaded that the
    // time budget holds only a few rounds says so instead (the soak, bench/soak.sh,
    // judges it over thousands of rounds). Violations are judged in every round.
    if run.rounds < MIN_ROUNDS_TO_JUDGE_PROGRESS {
        eprintln!(
            "torture: only {} rounds in the time budget: progress not judged (seed {})",
            run.rounds, run.seed
        );
        return;
    }
    let (backups_ok, _) = run.counts.get("backup").copied().unwrap_or_default();
    assert!(backups_ok > 0, "no backup went through: {:?}", run.counts);
    // In a run of some ten rounds (the suite's) one round at least: a quarter of so few
    // would fail now and then by chance alone.
    let needed = if run.rounds >= 40 {
        (MIN_COLLECTING_SHARE * run.rounds as f64).ceil() as u32
    } else {
        1
    };
    assert!(
        run.collecting_rounds >= needed,
        "garbage collection deleted packs in only {} of {} rounds (seed {})",
        run.collecting_rounds,
        run.rounds,
        run.seed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_in_random_order_through_a_chaotic_store_on_a_local_directory() {
    setup();
    let dir = tempfile::tempdir().unwrap();
    let base: DynStore = Arc::new(LocalStore::new(dir.path().join("repo")));
    torture_passes(base, "local", 120).await;
}

/// The same on Azurite, the Azure Blob emulator (whose conditional writes are atomic; the
/// S3 emulator of the suite checks conditions but does not apply them atomically, so two
/// holders seen there could be the emulator's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_in_random_order_through_a_chaotic_store_on_azurite() {
    setup();
    let server = servers::azure();
    let base = strata_store::open_location(&server.url, &server.options).unwrap();
    torture_passes(base, "azurite", 90).await;
}

/// Runs the torture on a local directory with the safety rule `rule` broken
/// (`STRATA_TEST_UNSAFE`), in a process of its own (this test binary again, running only
/// `test`), and asserts that the round checks find the damage within [`CONTROL_SECS`].
fn negative_control(test: &str, rule: &str) {
    if std::env::var("STRATA_TEST_UNSAFE").as_deref() != Ok(rule) {
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([test, "--exact", "--nocapture", "--test-threads", "1"])
            .env("STRATA_TEST_UNSAFE", rule)
            .status()
            .unwrap();
        assert!(status.success(), "the negative control {rule} failed");
        return;
    }
    setup();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let run = runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let base: DynStore = Arc::new(LocalStore::new(dir.path().join("repo")));
        torture(base, Budget::Secs(CONTROL_SECS)).await
    });
    run.report(&format!("unsafe {rule}"));
    assert!(
        run.violation.is_some(),
        "with the rule {rule} broken, {} rounds (seed {}) found nothing: the torture cannot tell it is there",
        run.rounds,
        run.seed
    );
}

#[test]
#[ignore = "a negative control: up to five minutes of rounds; run with --run-ignored"]
fn negative_control_unindexed_data_deleted_by_age_alone_is_found() {
    negative_control(
        "negative_control_unindexed_data_deleted_by_age_alone_is_found",
        "unindexed-by-age",
    );
}

#[test]
#[ignore = "a negative control: up to five minutes of rounds; run with --run-ignored"]
fn negative_control_no_landing_wait_is_found() {
    negative_control(
        "negative_control_no_landing_wait_is_found",
        "no-landing-wait",
    );
}

#[test]
#[ignore = "a negative control: up to five minutes of rounds; run with --run-ignored"]
fn negative_control_marks_judged_by_wall_clocks_is_found() {
    negative_control(
        "negative_control_marks_judged_by_wall_clocks_is_found",
        "wall-clock",
    );
}
