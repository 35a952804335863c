//! The archiver's side: the socket, one connection one request, and the batch loop that
//! stores the pushes waiting together (see the module above for the whole story).

use super::wire::{self, socket_path, Answer, ArchiverStatus, Request};
use crate::error::{WalError, WalFailure, WalResult};
use crate::write::push_paths;
use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use strata_cluster::config::Config;
use strata_postgres::wal::{self, Pushed};
use strata_repo::{RepoError, Repository};
use strata_store::DynStore;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

/// Names of files archived lately that the look-ahead does not send again.
const RECENT: usize = 4096;

/// One push waiting for a batch.
struct Job {
    path: PathBuf,
    name: String,
    answer: oneshot::Sender<Answer>,
}

/// State shared by the connections and the batch loop.
struct Shared {
    status: Mutex<ArchiverStatus>,
    /// The `pg_wal` of the last push (for the lag).
    pg_wal: Mutex<Option<PathBuf>>,
    queue_size: usize,
    /// Where drops are counted (see [`crate::queue`]).
    state_dir: PathBuf,
}

/// Serves the archiver on its socket (see [`super`]) until `shutdown`
/// completes; then it stops taking pushes, finishes the batch under way and removes the
/// socket. `listening` is called once the socket is in place (a service manager is told
/// then).
pub async fn serve(
    config: Config,
    store: DynStore,
    repo: Arc<Repository>,
    listening: impl FnOnce(&Path),
    shutdown: impl Future<Output = ()>,
) -> WalResult<()> {
    let socket = socket_path(&config);
    let listener = bind(&socket)?;
    listening(&socket);
    let shared = Arc::new(Shared {
        status: Mutex::new(ArchiverStatus {
            started: now_rfc3339(),
            ..ArchiverStatus::default()
        }),
        pg_wal: Mutex::new(None),
        queue_size: config.postgres.archiver_queue,
        state_dir: config.state_dir(),
    });
    let (jobs, queue) = mpsc::channel(config.postgres.archiver_queue);
    let (stop, stopped) = oneshot::channel();
    let worker = tokio::spawn(batches(config, store, repo, queue, stopped, shared.clone()));
    let own_uid = rustix::process::geteuid().as_raw();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((conn, _)) = accepted else { continue };
                let allowed = conn
                    .peer_cred()
                    .is_ok_and(|cred| cred.uid() == own_uid || cred.uid() == 0);
                if allowed {
                    tokio::spawn(answer(conn, jobs.clone(), shared.clone()));
                }
            }
        }
    }
    drop(listener);
    let _ = std::fs::remove_file(&socket);
    // Connections still reading their request hold senders: the batch loop is told to
    // stop rather than waiting for them to drop.
    let _ = stop.send(());
    let _ = worker.await;
    Ok(())
}

/// Binds `socket` mode 0600: under a temporary name, then renamed into place, so it is
/// never reachable with looser permissions. A socket file nobody listens on (an archiver
/// that died) is replaced; one an archiver listens on is refused.
fn bind(socket: &Path) -> WalResult<UnixListener> {
    let fail = |what: &str, err: std::io::Error| {
        WalFailure::Refused(format!(
            "cannot {what} the WAL archiver's socket {}: {err}",
            socket.display()
        ))
    };
    if std::os::unix::net::UnixStream::connect(socket).is_ok() {
        return Err(WalFailure::Refused(format!(
            "another WAL archiver listens at {}: stop it first (or set postgres.archiver_socket)",
            socket.display()
        )));
    }
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(|e| fail("create the directory of", e))?;
    }
    let temporary = socket.with_extension(format!("{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    let listener = UnixListener::bind(&temporary).map_err(|e| fail("bind", e))?;
    std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| fail("set the permissions of", e))?;
    std::fs::rename(&temporary, socket).map_err(|e| fail("put in place", e))?;
    Ok(listener)
}

/// Answers one connection: one request, one answer.
async fn answer(mut conn: UnixStream, jobs: mpsc::Sender<Job>, shared: Arc<Shared>) {
    let (reader, writer) = conn.split();
    let request = match wire::read_line::<Request>(reader, wire::READ_TIMEOUT).await {
        Ok(request) => request,
        Err(err) => {
            let why = format!("the request was refused: {err}");
            let _ = wire::write_line(writer, &Answer::Failed { why }).await;
            return;
        }
    };
    let reply = match request {
        Request::Status => Answer::Status(Box::new(status(&shared, &jobs))),
        Request::Push { path } => push(PathBuf::from(path), &jobs, &shared).await,
    };
    let _ = wire::write_line(writer, &reply).await;
}

/// Queues one push and waits for its batch.
async fn push(path: PathBuf, jobs: &mpsc::Sender<Job>, shared: &Shared) -> Answer {
    if !path.is_absolute() {
        return Answer::Failed {
            why: format!("{} is not an absolute path", path.display()),
        };
    }
    let name = match wal::file_name(&path) {
        Ok(name) => name,
        Err(err) => {
            return Answer::Failed {
                why: err.to_string(),
            }
        }
    };
    *shared.pg_wal.lock().expect("archiver lock") = path.parent().map(Path::to_path_buf);
    let (answer, answered) = oneshot::channel();
    let job = Job { path, name, answer };
    match jobs.try_send(job) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            return Answer::Busy {
                why: format!(
                    "the WAL archiver has {} pushes waiting (postgres.archiver_queue); PostgreSQL calls again, nothing is lost",
                    shared.queue_size
                ),
            }
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            return Answer::Busy {
                why: "the WAL archiver is stopping; PostgreSQL calls again".into(),
            }
        }
    }
    answered.await.unwrap_or_else(|_| Answer::Failed {
        why: "the WAL archiver dropped the push (it stopped); PostgreSQL calls again".into(),
    })
}

/// The status now, with the lag read from the last push's `pg_wal`.
fn status(shared: &Shared, jobs: &mpsc::Sender<Job>) -> ArchiverStatus {
    let mut status = shared.status.lock().expect("archiver lock").clone();
    status.queued = shared.queue_size - jobs.capacity();
    status.dropped = crate::queue::drops(&shared.state_dir);
    let pg_wal = shared.pg_wal.lock().expect("archiver lock").clone();
    if let Some(dir) = pg_wal {
        let (count, oldest) = ready_lag(&dir).unwrap_or((0, 0));
        status.ready_segments = count;
        status.oldest_ready_secs = oldest;
    }
    status
}

/// The archive lag of the PostgreSQL of this host, read without any archiver: the
/// `.ready` files in `pg_wal/archive_status` of the data directories of the nodes with
/// `[nodes.postgres]` that run here (no `url`), added up, and the age of the oldest, in
/// seconds. `Ok(None)` when no such node is configured; an error names the directory
/// that cannot be read (the data directory is PostgreSQL's, mode 0700).
pub fn local_ready_lag(config: &Config) -> Result<Option<(usize, u64)>, UnreadableStatus> {
    let mut lag: Option<(usize, u64)> = None;
    for node in config.nodes.iter().filter(|n| n.url.is_none()) {
        let Some(pg) = &node.postgres else {
            continue;
        };
        let pg_wal = pg.data_dir.join("pg_wal");
        let (count, oldest) = ready_lag(&pg_wal).map_err(|source| UnreadableStatus {
            node: node.name.clone(),
            dir: pg_wal.join("archive_status"),
            source,
        })?;
        let (all, oldest_all) = lag.unwrap_or((0, 0));
        lag = Some((all + count, oldest_all.max(oldest)));
    }
    Ok(lag)
}

/// A node's `pg_wal/archive_status` that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("node {node}: cannot read {}: {source}", dir.display())]
pub struct UnreadableStatus {
    /// The node.
    pub node: String,
    /// Its `pg_wal/archive_status`.
    pub dir: std::path::PathBuf,
    /// Why not.
    pub source: std::io::Error,
}

/// The `.ready` files in `pg_wal/archive_status` and the age of the oldest, in seconds.
fn ready_lag(pg_wal: &Path) -> std::io::Result<(usize, u64)> {
    let entries = std::fs::read_dir(pg_wal.join("archive_status"))?;
    let mut count = 0;
    let mut oldest: Option<SystemTime> = None;
    for entry in entries.filter_map(Result::ok) {
        if !entry.file_name().to_string_lossy().ends_with(".ready") {
            continue;
        }
        count += 1;
        if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
            oldest = Some(oldest.map_or(modified, |o| o.min(modified)));
        }
    }
    let age = oldest
        .and_then(|o| o.elapsed().ok())
        .map_or(0, |d| d.as_secs());
    Ok((count, age))
}

/// The batch loop: takes the pushes waiting, stores them together, answers each. Once
/// `stop` fires it finishes the batch under way and answers the pushes still waiting
/// busy (PostgreSQL calls again).
async fn batches(
    config: Config,
    store: DynStore,
    repo: Arc<Repository>,
    mut queue: mpsc::Receiver<Job>,
    mut stop: oneshot::Receiver<()>,
    shared: Arc<Shared>,
) {
    let mut recent = Recent::default();
    let most = config.postgres.archiver_batch.max(1);
    loop {
        let first = tokio::select! {
            biased;
            _ = &mut stop => break,
            job = queue.recv() => match job {
                Some(job) => job,
                None => break,
            },
        };
        let mut jobs = vec![first];
        while jobs.len() < most {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let batch = Batch {
            config: &config,
            store: &store,
            repo: &repo,
            shared: &shared,
        };
        batch.run(jobs, &mut recent).await;
        release_freed_memory();
    }
    queue.close();
    while let Ok(job) = queue.try_recv() {
        let _ = job.answer.send(Answer::Busy {
            why: "the WAL archiver is stopping; PostgreSQL calls again".into(),
        });
    }
}

/// What one batch needs.
struct Batch<'a> {
    config: &'a Config,
    store: &'a DynStore,
    repo: &'a Arc<Repository>,
    shared: &'a Shared,
}

impl Batch<'_> {
    /// Stores the files of `jobs` and the look-ahead in one push; when the first file
    /// fails (which fails the push), each job once more by itself, so one bad request
    /// does not fail the others.
    async fn run(&self, jobs: Vec<Job>, recent: &mut Recent) {
        let paths = self.paths(&jobs, recent);
        match self.store_files(&paths).await {
            Ok(outcomes) => {
                recent.note(&outcomes);
                for job in jobs {
                    let answer = answer_for(&job.name, &outcomes);
                    let _ = job.answer.send(answer);
                }
            }
            Err(err) if jobs.len() == 1 => {
                let job = jobs.into_iter().next().expect("one job");
                let _ = job.answer.send(failure_answer(&err));
            }
            Err(_) => {
                for job in jobs {
                    let answer = match self.store_files(std::slice::from_ref(&job.path)).await {
                        Ok(outcomes) => {
                            recent.note(&outcomes);
                            answer_for(&job.name, &outcomes)
                        }
                        Err(err) => failure_answer(&err),
                    };
                    let _ = job.answer.send(answer);
                }
            }
        }
    }

    /// The requested files (each name once, the first job's first), then, when one of
    /// them is new to this archiver, the ready segments after the newest that were not
    /// archived lately, up to the batch size. So a run of segments goes in batches: the
    /// push of the first stores the next ones with it, and theirs find them archived.
    fn paths(&self, jobs: &[Job], recent: &Recent) -> Vec<PathBuf> {
        let mut names = HashSet::new();
        let mut paths: Vec<PathBuf> = jobs
            .iter()
            .filter(|job| names.insert(job.name.clone()))
            .map(|job| job.path.clone())
            .collect();
        if jobs.iter().all(|job| recent.has(&job.name)) {
            return paths;
        }
        let newest = jobs
            .iter()
            .max_by(|a, b| a.name.cmp(&b.name))
            .expect("a batch has a job");
        let most = self.config.postgres.archiver_batch.max(paths.len());
        for next in wal::ready_after(&newest.path, self.config.postgres.wal_push_ahead) {
            if paths.len() >= most {
                break;
            }
            let Ok(name) = wal::file_name(&next) else {
                continue;
            };
            if !recent.has(&name) && names.insert(name) {
                paths.push(next);
            }
        }
        paths
    }

    /// One push of `paths` under its own mark, the index brought up to date after it.
    async fn store_files(&self, paths: &[PathBuf]) -> Result<Vec<Pushed>, WalError<RepoError>> {
        let repo = self.repo.clone();
        let ready = async move {
            repo.reload_index().await?;
            Ok::<_, RepoError>(repo)
        };
        let result = push_paths(self.config, self.store, ready, paths).await;
        let mut status = self.shared.status.lock().expect("archiver lock");
        status.batches += 1;
        match &result {
            Ok(outcomes) => {
                for outcome in outcomes {
                    if let Pushed::Stored { name, bytes } | Pushed::StoredAgain { name, bytes } =
                        outcome
                    {
                        status.archived_files += 1;
                        status.archived_bytes += bytes;
                        if status.last_archived.as_deref() < Some(name.as_str()) {
                            status.last_archived = Some(name.clone());
                            status.last_archived_at = Some(now_rfc3339());
                        }
                    }
                }
            }
            Err(err) => {
                status.failures += 1;
                status.last_failure = Some(format!("{}: {err}", now_rfc3339()));
            }
        }
        result
    }
}

/// The answer to the push of `name`: its outcome first, then the others of the batch.
fn answer_for(name: &str, outcomes: &[Pushed]) -> Answer {
    let Some(own) = outcomes.iter().find(|o| o.name() == name) else {
        return Answer::Failed {
            why: format!("{name} could not be archived in this batch; PostgreSQL calls again"),
        };
    };
    let mut ordered = vec![own.clone()];
    ordered.extend(outcomes.iter().filter(|o| o.name() != name).cloned());
    Answer::Pushed { outcomes: ordered }
}

fn failure_answer(err: &WalError<RepoError>) -> Answer {
    match err {
        WalError::Busy(why) => Answer::Busy { why: why.clone() },
        other => Answer::Failed {
            why: strata_util::error_chain(other),
        },
    }
}

/// Names archived lately (at most [`RECENT`]), oldest forgotten first.
#[derive(Default)]
struct Recent {
    order: VecDeque<String>,
    names: HashSet<String>,
}

impl Recent {
    fn has(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    fn note(&mut self, outcomes: &[Pushed]) {
        for outcome in outcomes {
            let name = outcome.name().to_string();
            if self.names.insert(name.clone()) {
                self.order.push_back(name);
            }
        }
        while self.order.len() > RECENT {
            if let Some(old) = self.order.pop_front() {
                self.names.remove(&old);
            }
        }
    }
}

/// Hands memory freed by the batch back to the system. A batch allocates segments and
/// packs of 16 MiB on several threads, and glibc keeps what they free in per-thread
/// arenas: without this a process that runs for months sits at the peak of its busiest
/// batch (measured: about 500 MiB), not at what it holds between batches.
#[allow(unsafe_code)] // malloc_trim(3): no safe form; the reason is beside the block
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only returns free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}
