//! The write pipeline: compress, seal and pack new blobs on a bounded pool.
//!
//! ```text
//! callers (file readers) --submit--> [bounded queue] --> N sealing workers
//!        --> [bounded queue] --> packer thread --> uploads (at most K in flight)
//! ```
//!
//! Every queue is bounded and a pack is at most `pack_size` bytes, so memory stays flat
//! whatever the amount of data: roughly `(queue + workers) * chunk + (K + 1) * pack_size`.
//! A blob id is claimed on submit, so the same new chunk coming from two files (or two
//! nodes) is sealed and stored once. Packs enter the index only after the store confirmed
//! them, and the index object is written by [`BlobWriter::finish`] once every upload is done.

use crate::compress::BlobCompressor;
use crate::id::pack_key;
use crate::index::{IndexFile, IndexedPack};
use crate::pack::PackBuilder;
use crate::{BlobId, RepoError, RepoResult, Repository};
use bytes::Bytes;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tokio::runtime::Handle;
use tokio::sync::Semaphore;

/// Tuning of the write pipeline.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// zstd level, 0 to disable compression.
    pub compression_level: i32,
    /// Target pack size in bytes.
    pub pack_size: usize,
    /// Sealing (compression + encryption) threads.
    pub workers: usize,
    /// Pack uploads in flight at once.
    pub uploads: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            compression_level: 3,
            pack_size: 16 * 1024 * 1024,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            uploads: 2,
        }
    }
}

/// What a writer added to the repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub new_blobs: u64,
    /// Plaintext bytes of the new blobs.
    pub new_raw_bytes: u64,
    /// Bytes of the new packs (sealed blobs and headers).
    pub new_pack_bytes: u64,
    pub packs: u64,
}

struct Job {
    id: BlobId,
    data: Bytes,
}

struct Sealed {
    id: BlobId,
    bytes: Vec<u8>,
    raw_length: u32,
    compressed: bool,
}

/// The first error of a background stage, seen by every later call.
#[derive(Default)]
struct Failure(Mutex<Option<String>>);

impl Failure {
    fn set(&self, message: String) {
        let mut slot = self.0.lock().expect("failure lock");
        slot.get_or_insert(message);
    }
    fn get(&self) -> Option<String> {
        self.0.lock().expect("failure lock").clone()
    }
}

/// Stores new blobs of a backup. Create one per backup, share it between the nodes of an
/// in-process backup for cross-node dedup, and call [`BlobWriter::finish`] at the end.
pub struct BlobWriter {
    repo: Arc<Repository>,
    claimed: Mutex<HashSet<BlobId>>,
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    packer: Option<JoinHandle<RepoResult<Vec<IndexedPack>>>>,
    failure: Arc<Failure>,
    new_blobs: AtomicU64,
    new_raw_bytes: AtomicU64,
}

impl BlobWriter {
    /// Starts the pipeline. Must be called inside a tokio runtime (uploads run on it).
    pub fn start(repo: Arc<Repository>, options: WriterOptions) -> BlobWriter {
        let workers_n = options.workers.max(1);
        let (job_tx, job_rx) = sync_channel::<Job>(workers_n * 4);
        let (sealed_tx, sealed_rx) = sync_channel::<Sealed>(workers_n * 4);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let failure = Arc::new(Failure::default());
        // A repository this strata may not write (format version 1) gets no pack either.
        if let Err(e) = repo.check_writable() {
            failure.set(e.to_string());
        }
        let workers = (0..workers_n)
            .map(|i| {
                let (rx, tx, repo) = (job_rx.clone(), sealed_tx.clone(), repo.clone());
                let level = options.compression_level;
                std::thread::Builder::new()
                    .name(format!("strata-seal-{i}"))
                    .spawn(move || seal_worker(&repo, level, &rx, &tx))
                    .expect("spawn sealing thread")
            })
            .collect();
        drop(sealed_tx);
        let packer = {
            let (repo, failure, handle) = (repo.clone(), failure.clone(), Handle::current());
            std::thread::Builder::new()
                .name("strata-packer".into())
                .spawn(move || pack_and_upload(&repo, &options, sealed_rx, &failure, &handle))
                .expect("spawn packer thread")
        };
        BlobWriter {
            repo,
            claimed: Mutex::new(HashSet::new()),
            jobs: Some(job_tx),
            workers,
            packer: Some(packer),
            failure,
            new_blobs: AtomicU64::new(0),
            new_raw_bytes: AtomicU64::new(0),
        }
    }

    /// True when the repository already has the blob or this writer is storing it.
    pub fn is_known(&self, id: &BlobId) -> bool {
        self.repo.index().contains(id) || self.claimed.lock().expect("claim lock").contains(id)
    }

    /// Stores a blob unless the repository has it or it is already queued. Returns whether
    /// it was new. Blocks while the pipeline is full: call it from a blocking thread.
    pub fn submit(&self, id: BlobId, data: Bytes) -> RepoResult<bool> {
        if self.repo.index().contains(&id) {
            return Ok(false);
        }
        self.enqueue(id, data)
    }

    /// Stores a blob the repository already has once more, in a new pack: garbage
    /// collection moves the live blobs of mostly-garbage packs this way. Returns whether
    /// it was queued (false when this writer already has it).
    pub fn rewrite(&self, id: BlobId, data: Bytes) -> RepoResult<bool> {
        self.enqueue(id, data)
    }

    fn enqueue(&self, id: BlobId, data: Bytes) -> RepoResult<bool> {
        if let Some(message) = self.failure.get() {
            return Err(RepoError::Pipeline(message));
        }
        if !self.claimed.lock().expect("claim lock").insert(id) {
            return Ok(false);
        }
        self.new_blobs.fetch_add(1, Ordering::Relaxed);
        self.new_raw_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        let sender = self.jobs.as_ref().expect("submit after finish");
        sender.send(Job { id, data }).map_err(|_| {
            RepoError::Pipeline(
                self.failure
                    .get()
                    .unwrap_or_else(|| "pipeline stopped".into()),
            )
        })?;
        Ok(true)
    }

    /// Flushes the last pack, waits for every upload, then writes the index object. Only
    /// after this returns are the new blobs safe to reference from a manifest.
    pub async fn finish(mut self) -> RepoResult<WriteStats> {
        drop(self.jobs.take());
        let workers = std::mem::take(&mut self.workers);
        let packer = self.packer.take().expect("finish called once");
        let packs = tokio::task::spawn_blocking(move || {
            for worker in workers {
                let _ = worker.join();
            }
            packer.join()
        })
        .await
        .map_err(|e| RepoError::Pipeline(e.to_string()))?
        .map_err(|_| RepoError::Pipeline("packer thread panicked".into()))??;
        let stats = WriteStats {
            new_blobs: self.new_blobs.load(Ordering::Relaxed),
            new_raw_bytes: self.new_raw_bytes.load(Ordering::Relaxed),
            new_pack_bytes: packs.iter().map(|p| p.size).sum(),
            packs: packs.len() as u64,
        };
        self.repo.add_index(IndexFile { packs }).await?;
        Ok(stats)
    }
}

fn seal_worker(
    repo: &Repository,
    level: i32,
    jobs: &Mutex<Receiver<Job>>,
    out: &SyncSender<Sealed>,
) {
    let mut compressor = BlobCompressor::new(level);
    loop {
        let job = match jobs.lock().expect("job queue lock").recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        let body = compressor.compress(&job.data);
        let sealed = Sealed {
            id: job.id,
            bytes: repo.cipher().seal(&body.data),
            raw_length: job.data.len() as u32,
            compressed: body.compressed,
        };
        if out.send(sealed).is_err() {
            return;
        }
    }
}

fn pack_and_upload(
    repo: &Arc<Repository>,
    options: &WriterOptions,
    sealed: Receiver<Sealed>,
    failure: &Arc<Failure>,
    runtime: &Handle,
) -> RepoResult<Vec<IndexedPack>> {
    let slots = Arc::new(Semaphore::new(options.uploads.max(1)));
    let mut uploads = Vec::new();
    let mut builder = PackBuilder::new(options.pack_size);
    let mut upload = |builder: PackBuilder| {
        let pack = builder.finish(repo.cipher());
        let permit = runtime
            .block_on(slots.clone().acquire_owned())
            .expect("semaphore is never closed");
        let (repo, failure) = (repo.clone(), failure.clone());
        uploads.push(runtime.spawn(async move {
            let _permit = permit;
            let size = pack.bytes.len() as u64;
            let result = repo
                .store()
                .put(&pack_key(&pack.id), Bytes::from(pack.bytes))
                .await;
            match result {
                Ok(()) => Ok(IndexedPack {
                    id: pack.id,
                    size,
                    blobs: pack.entries,
                }),
                Err(err) => {
                    failure.set(format!("storing pack {}: {err}", pack.id.short()));
                    Err(RepoError::from(err))
                }
            }
        }));
    };
    for blob in sealed {
        builder.add(blob.id, &blob.bytes, blob.raw_length, blob.compressed);
        if builder.len() >= options.pack_size {
            upload(std::mem::replace(
                &mut builder,
                PackBuilder::new(options.pack_size),
            ));
        }
        if failure.get().is_some() {
            break;
        }
    }
    if !builder.is_empty() && failure.get().is_none() {
        upload(builder);
    }
    let mut packs = Vec::new();
    let mut first_error = None;
    for task in uploads {
        match runtime.block_on(task) {
            Ok(Ok(pack)) => packs.push(pack),
            Ok(Err(err)) => {
                first_error.get_or_insert(err);
            }
            Err(join) => {
                first_error.get_or_insert(RepoError::Pipeline(join.to_string()));
            }
        }
    }
    match first_error {
        Some(err) => Err(err),
        None if failure.get().is_some() => Err(RepoError::Pipeline(failure.get().unwrap())),
        None => Ok(packs),
    }
}
