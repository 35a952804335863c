//! The write pipeline: compress, seal and pack new blobs on a bounded pool.
//!
//! ```text
//! callers (file readers) --submit--> [bounded queue] --> N sealing workers
//!        --> [bounded queue] --> packer thread --> uploads (at most K in flight)
//! ```
//!
//! Every queue is bounded and a pack is at most `pack_size` bytes, so memory stays flat
//! whatever the amount of data: roughly `(queue + workers) * batch + (K + 1) * pack_size`.
//! Blobs travel in batches (up to [`BATCH_BLOBS`] blobs or [`BATCH_BYTES`] bytes, and one
//! chunk of any size): a thread hand-off costs a wake-up, and with 32 KiB page chunks one
//! per blob took an eighth of a first backup's CPU.
//! A blob id is claimed on submit, so the same new chunk coming from two files (or two
//! nodes) is sealed and stored once. Packs enter the index only after the store confirmed
//! them: once [`FLUSH_BLOBS`] blobs (by default) of stored packs wait, the packer writes an index
//! object for them and their ids leave the claimed set (the index answers for them now),
//! so a backup of millions of new blobs holds a bounded number of them; the last index
//! object is written by [`BlobWriter::finish`] once every upload is done. (Packs indexed
//! before the backup's summary exists are what its writer mark protects from garbage
//! collection, as for the last object: see `crate::condemned`.)

use crate::compress::BlobCompressor;
use crate::dictionary::{Dictionary, Sampler, Training};
use crate::index::{IndexFile, IndexedPack};
use crate::layout::pack_key;
use crate::pack::PackBuilder;
use crate::{BlobId, RepoError, RepoResult, Repository};
use bytes::Bytes;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use tokio::runtime::Handle;
use tokio::sync::Semaphore;

/// Blobs of stored packs the packer gathers before it writes an index object for them.
pub const FLUSH_BLOBS: usize = crate::index::MAX_BLOBS_PER_OBJECT;

/// At most this many blobs travel between the pipeline's threads in one hand-off.
pub const BATCH_BLOBS: usize = 32;

/// A batch is handed on once it holds this many bytes of plaintext.
pub const BATCH_BYTES: usize = 512 * 1024;

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
    /// An index object is written once this many blobs of stored packs wait for one
    /// (default [`FLUSH_BLOBS`]).
    pub index_every: usize,
    /// Train and store a compression dictionary when the repository has none yet, as
    /// this says (backups' writers: `strata_cluster`'s `writer_options`). `None` (the
    /// default: manifests, archives, garbage collection) trains none; every writer
    /// compresses small blobs with the repository's dictionary once it has one.
    pub train_dictionary: Option<Training>,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            compression_level: 3,
            pack_size: 16 * 1024 * 1024,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            uploads: 2,
            index_every: FLUSH_BLOBS,
            train_dictionary: None,
        }
    }
}

/// What a writer added to the repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Blobs the writer stored (ones the repository lacked).
    pub new_blobs: u64,
    /// Plaintext bytes of the new blobs.
    pub new_raw_bytes: u64,
    /// Bytes of the new packs (sealed blobs and headers).
    pub new_pack_bytes: u64,
    /// Sealed bytes of the new blobs (what their index entries add up to), so a caller
    /// reports what it stored without keeping every id it stored.
    pub new_sealed_bytes: u64,
    /// Packs the writer stored.
    pub packs: u64,
}

struct Job {
    id: BlobId,
    data: Bytes,
}

/// Jobs gathered for one hand-off to the sealing workers.
#[derive(Default)]
struct Batch {
    jobs: Vec<Job>,
    bytes: usize,
}

impl Batch {
    fn is_full(&self) -> bool {
        self.jobs.len() >= BATCH_BLOBS || self.bytes >= BATCH_BYTES
    }
}

struct Sealed {
    id: BlobId,
    bytes: Vec<u8>,
    raw_length: u32,
    compressed: bool,
}

/// The dictionary a writer's sealing workers compress small blobs with: the
/// repository's when it has one, else the one this writer trains (see
/// [`crate::dictionary`]).
struct DictionaryState {
    current: OnceLock<Arc<Dictionary>>,
    /// Samples while training; `None` once trained, or when not training.
    sampler: Mutex<Option<Sampler>>,
    /// Whether `sampler` is `Some`: a writer that does not sample takes no lock per blob.
    sampling: std::sync::atomic::AtomicBool,
}

impl DictionaryState {
    fn new(repo: &Repository, level: i32, training: Option<Training>) -> DictionaryState {
        let current = OnceLock::new();
        let mut sampler = None;
        match repo.dictionaries().preferred() {
            Some(dictionary) => {
                let _ = current.set(dictionary.clone());
            }
            None if level != 0 => sampler = training.map(Sampler::new),
            None => {}
        }
        DictionaryState {
            current,
            sampling: std::sync::atomic::AtomicBool::new(sampler.is_some()),
            sampler: Mutex::new(sampler),
        }
    }

    /// Offers `data` as a sample; when the samples are complete, trains the dictionary
    /// and stores it. Only once the store acknowledged it may a blob use it, so the
    /// calling worker waits for that (one store round trip, once per repository). A
    /// failure leaves the writer without a dictionary: the blobs are stored as before.
    fn offer(&self, repo: &Repository, runtime: &Handle, data: &[u8]) {
        if !self.sampling.load(Ordering::Relaxed) {
            return;
        }
        let samples = {
            let mut slot = self.sampler.lock().expect("sampler lock");
            let Some(sampler) = slot.as_mut() else { return };
            let samples = sampler.offer(data);
            if samples.is_some() {
                *slot = None;
                self.sampling.store(false, Ordering::Relaxed);
            }
            samples
        };
        let Some(raw) = samples.as_deref().and_then(crate::dictionary::train) else {
            return;
        };
        match runtime.block_on(repo.store_dictionary(raw)) {
            Ok(dictionary) => {
                let _ = self.current.set(dictionary);
            }
            Err(e) => eprintln!(
                "strata: warning: storing a compression dictionary: {e}; going on without one"
            ),
        }
    }
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
    claimed: Arc<Mutex<HashSet<BlobId>>>,
    jobs: Option<SyncSender<Vec<Job>>>,
    /// Jobs submitted but not yet handed to the workers (sent when full, and at finish).
    batch: Mutex<Batch>,
    workers: Vec<JoinHandle<()>>,
    packer: Option<JoinHandle<RepoResult<Packed>>>,
    failure: Arc<Failure>,
    new_blobs: AtomicU64,
    new_raw_bytes: AtomicU64,
}

impl BlobWriter {
    /// Starts the pipeline. Must be called inside a tokio runtime (uploads run on it).
    pub fn start(repo: Arc<Repository>, options: WriterOptions) -> BlobWriter {
        let workers_n = options.workers.max(1);
        let (job_tx, job_rx) = sync_channel::<Vec<Job>>(workers_n * 2);
        let (sealed_tx, sealed_rx) = sync_channel::<Vec<Sealed>>(workers_n * 2);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let failure = Arc::new(Failure::default());
        // A repository this strata may not write (format version 1) gets no pack either.
        if let Err(e) = repo.check_writable() {
            failure.set(e.to_string());
        }
        let dictionary = Arc::new(DictionaryState::new(
            &repo,
            options.compression_level,
            options.train_dictionary,
        ));
        let workers = (0..workers_n)
            .map(|i| {
                let (rx, tx, repo) = (job_rx.clone(), sealed_tx.clone(), repo.clone());
                let (dictionary, runtime) = (dictionary.clone(), Handle::current());
                let level = options.compression_level;
                std::thread::Builder::new()
                    .name(format!("strata-seal-{i}"))
                    .spawn(move || seal_worker(&repo, level, &dictionary, &runtime, &rx, &tx))
                    .expect("spawn sealing thread")
            })
            .collect();
        drop(sealed_tx);
        let claimed = Arc::new(Mutex::new(HashSet::new()));
        let packer = {
            let (repo, failure, handle) = (repo.clone(), failure.clone(), Handle::current());
            let claimed = claimed.clone();
            std::thread::Builder::new()
                .name("strata-packer".into())
                .spawn(move || {
                    pack_and_upload(&repo, &options, sealed_rx, &failure, &handle, &claimed)
                })
                .expect("spawn packer thread")
        };
        BlobWriter {
            repo,
            claimed,
            jobs: Some(job_tx),
            batch: Mutex::new(Batch::default()),
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
        let full = {
            let mut batch = self.batch.lock().expect("batch lock");
            batch.bytes += data.len();
            batch.jobs.push(Job { id, data });
            // Sent outside the lock: a full queue then blocks only this caller.
            batch.is_full().then(|| std::mem::take(&mut *batch))
        };
        if let Some(batch) = full {
            self.send(batch.jobs)?;
        }
        Ok(true)
    }

    fn send(&self, jobs: Vec<Job>) -> RepoResult<()> {
        let sender = self.jobs.as_ref().expect("submit after finish");
        sender.send(jobs).map_err(|_| {
            RepoError::Pipeline(
                self.failure
                    .get()
                    .unwrap_or_else(|| "pipeline stopped".into()),
            )
        })
    }

    /// Flushes the last pack, waits for every upload, then writes the index object. Only
    /// after this returns are the new blobs safe to reference from a manifest.
    pub async fn finish(mut self) -> RepoResult<WriteStats> {
        let last = std::mem::take(&mut *self.batch.lock().expect("batch lock"));
        if !last.jobs.is_empty() {
            // A stopped pipeline reports its own error below.
            let _ = self.send(last.jobs);
        }
        drop(self.jobs.take());
        let workers = std::mem::take(&mut self.workers);
        let packer = self.packer.take().expect("finish called once");
        let packed = tokio::task::spawn_blocking(move || {
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
            new_pack_bytes: packed.bytes,
            new_sealed_bytes: packed.sealed_bytes,
            packs: packed.packs,
        };
        self.repo
            .add_index(IndexFile {
                packs: packed.unindexed,
            })
            .await?;
        Ok(stats)
    }
}

fn seal_worker(
    repo: &Repository,
    level: i32,
    dictionary: &DictionaryState,
    runtime: &Handle,
    jobs: &Mutex<Receiver<Vec<Job>>>,
    out: &SyncSender<Vec<Sealed>>,
) {
    let mut compressor = BlobCompressor::new(level);
    loop {
        let batch = match jobs.lock().expect("job queue lock").recv() {
            Ok(batch) => batch,
            Err(_) => return,
        };
        let sealed = batch
            .into_iter()
            .map(|job| {
                let trained = dictionary.current.get();
                if let Some(d) = trained {
                    compressor.use_dictionary(d);
                }
                let body = compressor.compress(&job.data);
                // Only what compresses teaches a dictionary anything.
                if trained.is_none() && body.compressed {
                    dictionary.offer(repo, runtime, &job.data);
                }
                Sealed {
                    id: job.id,
                    bytes: repo.cipher().seal(&body.data),
                    raw_length: job.data.len() as u32,
                    compressed: body.compressed,
                }
            })
            .collect();
        if out.send(sealed).is_err() {
            return;
        }
    }
}

/// What the packer stored: every pack counted, those not indexed yet listed.
struct Packed {
    packs: u64,
    bytes: u64,
    sealed_bytes: u64,
    unindexed: Vec<IndexedPack>,
}

/// Stored packs waiting for an index object, and what was stored in all.
#[derive(Default)]
struct Stored {
    packs: u64,
    bytes: u64,
    sealed_bytes: u64,
    waiting: Vec<IndexedPack>,
    waiting_blobs: usize,
}

impl Stored {
    fn add(&mut self, pack: IndexedPack) {
        self.packs += 1;
        self.bytes += pack.size;
        self.sealed_bytes += pack.blobs.iter().map(|b| b.length as u64).sum::<u64>();
        self.waiting_blobs += pack.blobs.len();
        self.waiting.push(pack);
    }

    /// Starts writing an index object for the waiting packs, then letting their ids go
    /// from the claimed set (the index answers for them from then on), beside the
    /// packing: the packer goes on while it is sealed, stored and committed.
    /// Whether the waiting packs fill an index object: [`FLUSH_BLOBS`] blobs (or the
    /// option's count) or [`crate::index::MAX_PACKS_PER_OBJECT`] packs (packs of large
    /// chunks hold a few blobs each).
    fn index_due(&self, every: usize) -> bool {
        self.waiting_blobs >= every.max(1)
            || self.waiting.len() >= crate::index::MAX_PACKS_PER_OBJECT
    }

    fn flush(
        &mut self,
        repo: &Arc<Repository>,
        runtime: &Handle,
        claimed: &Arc<Mutex<HashSet<BlobId>>>,
    ) -> tokio::task::JoinHandle<RepoResult<()>> {
        let packs = std::mem::take(&mut self.waiting);
        self.waiting_blobs = 0;
        let (repo, claimed) = (repo.clone(), claimed.clone());
        runtime.spawn(async move {
            let ids: Vec<BlobId> = packs
                .iter()
                .flat_map(|p| p.blobs.iter().map(|b| b.id))
                .collect();
            repo.add_index(IndexFile { packs }).await?;
            let mut claimed = claimed.lock().expect("claim lock");
            for id in &ids {
                claimed.remove(id);
            }
            Ok(())
        })
    }
}

fn pack_and_upload(
    repo: &Arc<Repository>,
    options: &WriterOptions,
    sealed: Receiver<Vec<Sealed>>,
    failure: &Arc<Failure>,
    runtime: &Handle,
    claimed: &Arc<Mutex<HashSet<BlobId>>>,
) -> RepoResult<Packed> {
    let slots = Arc::new(Semaphore::new(options.uploads.max(1)));
    let mut uploads = std::collections::VecDeque::new();
    let mut stored = Stored::default();
    let mut first_error = None;
    // The index object being written, at most one at a time.
    let mut indexing: Option<tokio::task::JoinHandle<RepoResult<()>>> = None;
    let finish_indexing = |indexing: &mut Option<tokio::task::JoinHandle<RepoResult<()>>>,
                           first_error: &mut Option<RepoError>| {
        let Some(task) = indexing.take() else {
            return;
        };
        let error = match runtime.block_on(task) {
            Ok(Ok(())) => return,
            Ok(Err(err)) => err,
            Err(join) => RepoError::Pipeline(join.to_string()),
        };
        failure.set(format!("writing an index object: {error}"));
        first_error.get_or_insert(error);
    };
    let mut builder = PackBuilder::new(options.pack_size);
    let upload = |builder: PackBuilder| {
        let pack = builder.finish(repo.cipher());
        let permit = runtime
            .block_on(slots.clone().acquire_owned())
            .expect("semaphore is never closed");
        let (repo, failure) = (repo.clone(), failure.clone());
        runtime.spawn(async move {
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
        })
    };
    // Collects finished uploads in order (`all`: waits for every one).
    let collect = |uploads: &mut std::collections::VecDeque<tokio::task::JoinHandle<_>>,
                   all: bool,
                   stored: &mut Stored,
                   first_error: &mut Option<RepoError>| {
        while let Some(task) = uploads.front() {
            if !all && !task.is_finished() {
                break;
            }
            let task = uploads.pop_front().expect("a front task");
            match runtime.block_on(task) {
                Ok(Ok(pack)) => stored.add(pack),
                Ok(Err(err)) => {
                    first_error.get_or_insert(err);
                }
                Err(join) => {
                    first_error.get_or_insert(RepoError::Pipeline(join.to_string()));
                }
            }
        }
    };
    for blob in sealed.into_iter().flatten() {
        builder.add(blob.id, &blob.bytes, blob.raw_length, blob.compressed);
        if builder.is_full(options.pack_size) {
            uploads.push_back(upload(std::mem::replace(
                &mut builder,
                PackBuilder::new(options.pack_size),
            )));
            collect(&mut uploads, false, &mut stored, &mut first_error);
            if stored.index_due(options.index_every) && first_error.is_none() {
                finish_indexing(&mut indexing, &mut first_error);
                if first_error.is_none() {
                    indexing = Some(stored.flush(repo, runtime, claimed));
                }
            }
        }
        if failure.get().is_some() {
            break;
        }
    }
    if !builder.is_empty() && failure.get().is_none() {
        uploads.push_back(upload(builder));
    }
    collect(&mut uploads, true, &mut stored, &mut first_error);
    finish_indexing(&mut indexing, &mut first_error);
    match first_error {
        Some(err) => Err(err),
        None if failure.get().is_some() => Err(RepoError::Pipeline(failure.get().unwrap())),
        None => Ok(Packed {
            packs: stored.packs,
            bytes: stored.bytes,
            sealed_bytes: stored.sealed_bytes,
            unindexed: stored.waiting,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write of many blobs writes index objects as its packs are stored, and lets
    /// their ids go from the claimed set: what it holds is bounded, and every blob is
    /// readable once it finished.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_write_indexes_as_it_goes_and_lets_claimed_ids_go() {
        let dir = tempfile::tempdir().unwrap();
        let repo = crate::test_repo::plain(dir.path()).await;
        let writer = Arc::new(BlobWriter::start(
            repo.clone(),
            WriterOptions {
                pack_size: 4096,
                index_every: 40,
                compression_level: 0,
                ..WriterOptions::default()
            },
        ));
        let blobs: Vec<(BlobId, Bytes)> = (0..400u32)
            .map(|i| {
                let data = Bytes::from(format!("blob {i} {}", "x".repeat(200)));
                (repo.keys().blob_id(&data), data)
            })
            .collect();
        let (w, submitted) = (writer.clone(), blobs.clone());
        tokio::task::spawn_blocking(move || {
            for (id, data) in submitted {
                assert!(w.submit(id, data).unwrap(), "a new blob");
            }
        })
        .await
        .unwrap();
        // Before the finish, stored packs are indexed and their ids let go (beside the
        // packing: waited for, with a deadline far beyond what it takes).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let claimed = writer.claimed.lock().unwrap().len();
            if !repo.index().is_empty() && claimed < 400 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nothing indexed before the finish ({claimed} ids claimed)"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let writer = Arc::into_inner(writer).unwrap();
        let stats = writer.finish().await.unwrap();
        assert_eq!(stats.new_blobs, 400);
        let objects = repo.list_index_objects().await.unwrap().len();
        assert!(objects > 2, "{objects} index objects");
        repo.reload_index().await.unwrap();
        for (id, data) in &blobs {
            assert_eq!(repo.read_blob(id).await.unwrap(), data.to_vec());
        }
        assert_eq!(repo.index().len(), 400);
        let sealed: u64 = blobs
            .iter()
            .map(|(id, _)| repo.index().get(id).unwrap().length as u64)
            .sum();
        assert_eq!(
            stats.new_sealed_bytes, sealed,
            "what the index says was stored"
        );
    }

    /// Writes `count` new blobs of `size` bytes through a writer with packs of
    /// `pack_size` bytes; returns the repository's index objects over the bound.
    async fn objects_over_bound_after_writing(
        count: u32,
        size: usize,
        pack_size: usize,
    ) -> Vec<(String, usize, usize)> {
        let dir = tempfile::tempdir().unwrap();
        let repo = crate::test_repo::plain(dir.path()).await;
        let writer = BlobWriter::start(
            repo.clone(),
            WriterOptions {
                pack_size,
                compression_level: 0,
                ..WriterOptions::default()
            },
        );
        let keys = repo.keys().clone();
        let writer = tokio::task::spawn_blocking(move || {
            for i in 0..count {
                let mut data = vec![0u8; size];
                data[..4].copy_from_slice(&i.to_le_bytes());
                let data = Bytes::from(data);
                assert!(writer.submit(keys.blob_id(&data), data).unwrap());
            }
            writer
        })
        .await
        .unwrap();
        let stats = writer.finish().await.unwrap();
        assert_eq!(stats.new_blobs, count as u64);
        repo.reload_index().await.unwrap();
        assert_eq!(repo.index().len(), count as usize, "every blob indexed");
        crate::test_repo::objects_over_bound(&repo).await
    }

    /// A backup's index objects stay within the bound: by blobs when packs hold many
    /// small blobs, by packs when each pack holds one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_leaves_no_index_object_over_the_bound() {
        let many_small = objects_over_bound_after_writing(
            crate::index::MAX_BLOBS_PER_OBJECT as u32 * 2 + 100,
            16,
            1 << 20,
        )
        .await;
        assert_eq!(many_small, Vec::new(), "objects of small blobs");
        let one_a_pack = objects_over_bound_after_writing(
            crate::index::MAX_PACKS_PER_OBJECT as u32 + 300,
            64,
            32,
        )
        .await;
        assert_eq!(one_a_pack, Vec::new(), "objects of one-blob packs");
    }
}
