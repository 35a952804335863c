//! The WAL archive in the repository: `strata wal-push` and `strata wal-fetch`.
//!
//! Every archived file is an archived-file record (`archive/wal/<name>`) over chunks sealed
//! like any backup data. Pushing is idempotent: the same content under the same name is
//! accepted again (PostgreSQL re-runs `archive_command` after a crash), different content
//! under an existing name is refused, because silently replacing WAL breaks every backup
//! that needs it. A push also sends the segments PostgreSQL has marked ready after the
//! one it asked for, in the same pass; when PostgreSQL asks for those, they are already
//! there and the call returns after one hash. Segments carry their cluster's system
//! identifier, and a repository's archive takes the WAL of one cluster only.

use crate::spool::Spool;
use crate::walname::WalFileKind;
use crate::{PgError, PgResult, WAL_SPACE};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strata_repo::archive::{store_file, store_file_again, ArchivedFile};
use strata_repo::writer::{BlobWriter, WriterOptions};
use strata_repo::Repository;

/// The record that pins the archive to one cluster.
const IDENTITY_SPACE: &str = "wal-identity";
const IDENTITY_NAME: &str = "cluster";

/// What happened to one pushed file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Pushed {
    /// Newly stored in the archive.
    Stored {
        /// The file name (`000000010000000000000003`).
        name: String,
        /// Its size in bytes.
        bytes: u64,
    },
    /// The archive already held it (with its data): nothing stored.
    AlreadyArchived {
        /// The file name.
        name: String,
    },
    /// Its record was there but its data was not (a pack missing): stored again.
    StoredAgain {
        /// The file name.
        name: String,
        /// Its size in bytes.
        bytes: u64,
    },
    /// Acknowledged WITHOUT being archived: archiving failed (`why`) while more WAL
    /// waited than the operator allowed (`postgres.wal_queue_max_mib`).
    Dropped {
        /// The file name.
        name: String,
        /// Why archiving failed.
        why: String,
        /// Bytes of WAL waiting in `pg_wal` when it was dropped.
        waiting_bytes: u64,
    },
}

impl Pushed {
    /// The file's name.
    pub fn name(&self) -> &str {
        match self {
            Pushed::Stored { name, .. }
            | Pushed::AlreadyArchived { name }
            | Pushed::StoredAgain { name, .. }
            | Pushed::Dropped { name, .. } => name,
        }
    }
}

/// The system identifier in a segment's long page header (offset 24), if it has one.
pub fn segment_system_id(data: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = data.get(24..32)?.try_into().ok()?;
    let magic = u16::from_le_bytes([data[0], data[1]]);
    let info = u16::from_le_bytes([data[2], data[3]]);
    // XLOG_PAGE_MAGIC is 0xD0xx or 0xD1xx in every release so far (0xD110 in 15);
    // XLP_LONG_HEADER (2) marks the header that carries the identifier.
    (magic & 0xF000 == 0xD000 && info & 2 != 0).then(|| u64::from_le_bytes(bytes))
}

/// The name of a file PostgreSQL archives at `path`, refused when it is not one.
pub fn file_name(path: &Path) -> PgResult<String> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| PgError::Refused(format!("{} is not a WAL file name", path.display())))?;
    if WalFileKind::parse(name).is_none() {
        return Err(PgError::Refused(format!(
            "{name} is not a file PostgreSQL archives (WAL segment, .partial, .history or .backup)"
        )));
    }
    Ok(name.to_string())
}

/// Segments marked ready for archiving after `first`, in order, at most `limit`: what the
/// next `archive_command` calls will ask for.
pub fn ready_after(first: &Path, limit: usize) -> Vec<PathBuf> {
    let Some(dir) = first.parent() else {
        return Vec::new();
    };
    let Some(first_name) = first.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir.join("archive_status")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".ready")
                .map(str::to_string)
        })
        .filter(|n| matches!(WalFileKind::parse(n), Some(WalFileKind::Segment { .. })))
        .filter(|n| n.as_str() > first_name)
        .collect();
    names.sort();
    names.truncate(limit);
    names.into_iter().map(|n| dir.join(n)).collect()
}

/// Checks (and on first use records) that `system_id` is the cluster this archive
/// belongs to.
async fn check_identity(repo: &Arc<Repository>, system_id: u64) -> PgResult<()> {
    match repo.load_archived(IDENTITY_SPACE, IDENTITY_NAME).await? {
        Some(record) => {
            let known = record
                .meta
                .get("system_identifier")
                .cloned()
                .unwrap_or_default();
            if known != system_id.to_string() {
                return Err(PgError::Refused(format!(
                    "this repository archives the WAL of PostgreSQL cluster {known}, not of {system_id}: give each cluster its own repository"
                )));
            }
        }
        None => {
            let mut record = ArchivedFile {
                name: IDENTITY_NAME.into(),
                size: 0,
                content_id: repo.keys().blob_id(b""),
                chunks: Vec::new(),
                stored: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
                meta: BTreeMap::new(),
            };
            record
                .meta
                .insert("system_identifier".into(), system_id.to_string());
            repo.save_archived(IDENTITY_SPACE, &record).await?;
        }
    }
    Ok(())
}

/// One file of [`push_hashed`]: what happened to it, and the plain (unkeyed) BLAKE3 hash
/// of the very bytes that outcome is about (those stored, or those found archived).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedFile {
    /// What happened to it.
    pub pushed: Pushed,
    /// The BLAKE3 hash of its bytes.
    pub hash: [u8; 32],
}

/// Archives `paths` (the one PostgreSQL asked for first). Every file is read whole (a
/// segment is 16 MiB by default), one at a time: once to check it against the archive,
/// and again as it is stored, so memory holds one file and the write pipeline whatever
/// the batch. The chunks of all of them go through one write pipeline, and each record
/// is written only once its data is stored. Returns one outcome per path, failing as a
/// whole if the first path fails.
pub async fn push(
    repo: &Arc<Repository>,
    paths: &[PathBuf],
    writer: WriterOptions,
) -> PgResult<Vec<Pushed>> {
    let files = push_hashed(repo, paths, writer).await?;
    Ok(files.into_iter().map(|f| f.pushed).collect())
}

/// [`push`], with the hash of what each outcome is about (for `wal-push`'s receipts of
/// the segments it archived ahead).
pub async fn push_hashed(
    repo: &Arc<Repository>,
    paths: &[PathBuf],
    writer: WriterOptions,
) -> PgResult<Vec<PushedFile>> {
    let mut outcomes = Vec::new();
    // (name, path, whether its record exists with data missing)
    let mut to_store: Vec<(String, PathBuf, bool)> = Vec::new();
    // The cluster identities already checked in this push (one read, not one per file).
    let mut identities: Vec<u64> = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let result = async {
            let name = file_name(path)?;
            let data = std::fs::read(path).map_err(PgError::io("cannot read WAL file", path))?;
            if let Some(id) = segment_system_id(&data) {
                if !identities.contains(&id) {
                    check_identity(repo, id).await?;
                    identities.push(id);
                }
            }
            match repo.load_archived(WAL_SPACE, &name).await? {
                Some(existing) if existing.content_id == repo.keys().blob_id(&data) => {
                    if repo.archived_data_present(&existing).await? {
                        Ok(Some(PushedFile {
                            pushed: Pushed::AlreadyArchived { name },
                            hash: *blake3::hash(&data).as_bytes(),
                        }))
                    } else {
                        to_store.push((name, path.clone(), true));
                        Ok(None)
                    }
                }
                Some(_) => Err(PgError::Refused(format!(
                    "a different {name} is already archived: refusing to replace it (is another cluster archiving into this repository, or was this one restored without a new timeline?)"
                ))),
                None => {
                    to_store.push((name, path.clone(), false));
                    Ok(None)
                }
            }
        }
        .await;
        match result {
            Ok(Some(done)) => outcomes.push(done),
            Ok(None) => {}
            Err(err) if i == 0 => return Err(err),
            // A read-ahead segment that cannot go now is retried when PostgreSQL asks.
            Err(_) => {}
        }
    }
    if to_store.is_empty() {
        return Ok(outcomes);
    }
    let first_stored = to_store[0].1 == paths[0];
    let writer = BlobWriter::start(repo.clone(), writer);
    let r = repo.clone();
    let (writer, stored) = tokio::task::spawn_blocking(move || {
        let mut stored: Vec<(ArchivedFile, bool, [u8; 32])> = Vec::new();
        let mut first_error = None;
        for (i, (name, path, again)) in to_store.iter().enumerate() {
            let result = std::fs::read(path)
                .map_err(PgError::io("cannot read WAL file", path))
                .and_then(|data| {
                    let mut record = if *again {
                        store_file_again(&r, &writer, name, &data)?
                    } else {
                        store_file(&r, &writer, name, &data)?
                    };
                    if let Some(id) = segment_system_id(&data) {
                        record
                            .meta
                            .insert("system_identifier".into(), id.to_string());
                    }
                    Ok((record, *blake3::hash(&data).as_bytes()))
                });
            match result {
                Ok((record, hash)) => stored.push((record, *again, hash)),
                // The requested file failed: the push fails. A read-ahead file that
                // vanished (archived and removed meanwhile) is asked for again.
                Err(err) if i == 0 && first_stored => {
                    first_error = Some(err);
                    break;
                }
                Err(PgError::Repo(err)) => {
                    first_error = Some(PgError::Repo(err));
                    break;
                }
                Err(_) => {}
            }
        }
        (writer, first_error.map_or(Ok(stored), Err))
    })
    .await
    .expect("WAL push thread panicked");
    let finished = writer.finish().await;
    let stored = stored?;
    finished?;
    for (record, again, hash) in stored {
        repo.save_archived(WAL_SPACE, &record).await?;
        let (name, bytes) = (record.name.clone(), record.size);
        let pushed = if again {
            Pushed::StoredAgain { name, bytes }
        } else {
            Pushed::Stored { name, bytes }
        };
        outcomes.push(PushedFile { pushed, hash });
    }
    Ok(outcomes)
}

/// Read-ahead for [`fetch`]: the spool that keeps segments until recovery asks for them,
/// and how many segments after the requested one to read.
#[derive(Debug, Clone)]
pub struct ReadAhead {
    /// Where read-ahead segments wait (in the state directory).
    pub spool: Spool,
    /// How many segments after the requested one to read (`wal_fetch_ahead`).
    pub segments: usize,
}

/// How many read-ahead segments are read at once (each is held whole in memory).
const READ_AHEAD_PARALLEL: usize = 4;

/// Restores archived file `name` to `dest` (written beside it, then renamed, so PostgreSQL
/// never sees half a segment). [`PgError::WalMissing`] when the archive lacks it. With
/// `read_ahead`, the following segments of a requested segment are read into the spool
/// at the same time; failing to read ahead is never an error (recovery asks again).
pub async fn fetch(
    repo: &Arc<Repository>,
    name: &str,
    dest: &Path,
    read_ahead: Option<&ReadAhead>,
) -> PgResult<u64> {
    if WalFileKind::parse(name).is_none() {
        return Err(PgError::Refused(format!(
            "{name} is not a file PostgreSQL archives"
        )));
    }
    let record = repo
        .load_archived(WAL_SPACE, name)
        .await?
        .ok_or_else(|| PgError::WalMissing(name.to_string()))?;
    let ahead = read_ahead.map(|ra| spool_following(repo, name, record.size, ra));
    let data = repo.read_archived(&record).await?;
    let tmp = dest.with_extension("strata-partial");
    std::fs::write(&tmp, &data).map_err(PgError::io("cannot write", &tmp))?;
    std::fs::rename(&tmp, dest).map_err(PgError::io("cannot rename into place", dest))?;
    if let Some(mut tasks) = ahead {
        while tasks.join_next().await.is_some() {}
    }
    Ok(data.len() as u64)
}

/// Starts reading the segments after `name` into the spool, a few at a time.
fn spool_following(
    repo: &Arc<Repository>,
    name: &str,
    segment_size: u64,
    read_ahead: &ReadAhead,
) -> tokio::task::JoinSet<()> {
    let mut tasks = tokio::task::JoinSet::new();
    if !segment_size.is_power_of_two() {
        return tasks;
    }
    let permits = Arc::new(tokio::sync::Semaphore::new(READ_AHEAD_PARALLEL));
    for next in crate::spool::following_segments(name, segment_size, read_ahead.segments) {
        if read_ahead.spool.has(&next) {
            continue;
        }
        let (repo, spool, permits) = (repo.clone(), read_ahead.spool.clone(), permits.clone());
        tasks.spawn(async move {
            let Ok(_permit) = permits.acquire().await else {
                return;
            };
            let Ok(Some(record)) = repo.load_archived(WAL_SPACE, &next).await else {
                return;
            };
            if let Ok(data) = repo.read_archived(&record).await {
                let _ = tokio::task::spawn_blocking(move || spool.put(&next, &data)).await;
            }
        });
    }
    tasks
}

/// What a prefetcher did before it stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prefetched {
    /// Segments read into the spool.
    pub segments: u64,
    /// Their total size in bytes.
    pub bytes: u64,
}

/// Keeps the spool of `read_ahead` filled with the `read_ahead.segments` segments after
/// the one recovery asked for last (the spool's wanted name, `after` until a fetch notes
/// one after this prefetcher started), `PREFETCH_PARALLEL` at a time, so the download
/// runs beside replay instead of between its requests. A segment not archived yet (the
/// end of the archive, or a primary still writing it) is asked for again every half
/// second. Between rounds it answers the asks of `wal-fetch`es that missed the spool
/// ([`Spool::ask`]: the file, or an absent mark), so a history file, the end of the
/// archive or a segment asked for again cost one lookup, not a repository open. Stops
/// once recovery has asked for nothing for `idle`. Only ever spools the exact file the
/// archive holds under a name, in the spool of this repository. A failing store is asked
/// again, never an error: recovery fetches by itself meanwhile.
pub async fn prefetch(
    repo: &Arc<Repository>,
    read_ahead: &ReadAhead,
    after: &str,
    idle: std::time::Duration,
) -> Prefetched {
    let started = std::time::SystemTime::now();
    let spool = &read_ahead.spool;
    let mut done = Prefetched::default();
    let mut segment_size: Option<u64> = None;
    // The furthest recovery has asked for: a file asked for again (the last one, at the
    // end of recovery) does not pull the window back over segments already replayed.
    let mut furthest = after.to_string();
    loop {
        answer_asks(repo, spool, &mut done).await;
        // A wanted name older than `idle` is an earlier recovery's.
        let (wanted, at) = match spool.wanted() {
            Some((name, at)) if at.elapsed().unwrap_or_default() <= idle => (name, at),
            _ => (after.to_string(), started),
        };
        if at.max(started).elapsed().unwrap_or_default() > idle {
            return done;
        }
        if moves_window(&wanted, &furthest, segment_size, read_ahead.segments) {
            furthest = wanted.clone();
        }
        // The segment size of the archive, from the record of a segment asked for.
        let size = match segment_size {
            Some(size) => size,
            None => match repo
                .load_archived(WAL_SPACE, &furthest)
                .await
                .ok()
                .flatten()
            {
                Some(record) if record.size.is_power_of_two() => {
                    segment_size = Some(record.size);
                    record.size
                }
                _ => {
                    nap(spool, std::time::Duration::from_millis(500)).await;
                    continue;
                }
            },
        };
        let missing: Vec<String> =
            crate::spool::following_segments(&furthest, size, read_ahead.segments)
                .into_iter()
                .filter(|next| !spool.has(next))
                .collect();
        if missing.is_empty() {
            nap(spool, std::time::Duration::from_millis(100)).await;
            continue;
        }
        // Records in order up to the first not archived yet (the end of the archive costs
        // one small GET a round, not one per segment of the window).
        let mut records = Vec::new();
        for next in missing {
            // A failing store is asked again next round, like a segment not there yet.
            match repo.load_archived(WAL_SPACE, &next).await {
                Ok(Some(record)) => records.push((next, record)),
                _ => break,
            }
        }
        let mut tasks = tokio::task::JoinSet::new();
        let permits = Arc::new(tokio::sync::Semaphore::new(PREFETCH_PARALLEL));
        for (next, record) in records {
            let (repo, spool, permits) = (repo.clone(), spool.clone(), permits.clone());
            tasks.spawn(async move {
                let _permit = permits.acquire().await.ok()?;
                spool_record(&repo, &spool, next, &record).await
            });
        }
        let mut fetched = 0;
        while let Some(result) = tasks.join_next().await {
            if let Ok(Some(bytes)) = result {
                fetched += 1;
                done.segments += 1;
                done.bytes += bytes;
            }
        }
        if fetched == 0 {
            // The end of the archive for now: a standby's recovery waits for more.
            nap(spool, std::time::Duration::from_millis(500)).await;
        }
    }
}

/// Whether recovery asking for `wanted` moves the read-ahead window off `furthest`: a
/// segment after it, or one far behind it or on another timeline (a new recovery), but
/// not one asked for again just behind it (the end of recovery reads its last segment
/// again; the window stays, so segments already replayed are not fetched again).
fn moves_window(wanted: &str, furthest: &str, segment_size: Option<u64>, window: usize) -> bool {
    let Some(kind @ WalFileKind::Segment { .. }) = WalFileKind::parse(wanted) else {
        return false;
    };
    if wanted > furthest {
        return true;
    }
    let behind = (|| {
        let size = segment_size?;
        let ahead = WalFileKind::parse(furthest)?;
        (ahead.timeline() == kind.timeline())
            .then(|| Some(ahead.segno(size)? - kind.segno(size)?))?
    })();
    behind.is_none_or(|behind| behind > window as u64)
}

/// How long an ask stays worth answering (its `wal-fetch` waits less than this).
const ASK_FRESH: std::time::Duration = std::time::Duration::from_secs(10);

/// Answers the ask waiting in `spool`, if any: the file spooled, or marked absent when
/// the archive lacks it. A failing store answers nothing (the asker fetches by itself).
async fn answer_asks(repo: &Arc<Repository>, spool: &Spool, done: &mut Prefetched) {
    let Some(name) = spool.asked(ASK_FRESH) else {
        return;
    };
    let answered = match repo.load_archived(WAL_SPACE, &name).await {
        Ok(Some(record)) => match spool_record(repo, spool, name.clone(), &record).await {
            Some(bytes) => {
                done.segments += 1;
                done.bytes += bytes;
                true
            }
            None => false,
        },
        Ok(None) => spool.mark_absent(&name).is_ok(),
        Err(_) => false,
    };
    if answered {
        spool.answered(&name);
    } else {
        // The ask stays (its asker falls back after its wait): try again shortly, not in
        // a loop that `nap` would wake at once for the same ask.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Reads archived `record` and spools it as `name`; its size once spooled.
async fn spool_record(
    repo: &Arc<Repository>,
    spool: &Spool,
    name: String,
    record: &ArchivedFile,
) -> Option<u64> {
    let data = repo.read_archived(record).await.ok()?;
    let bytes = data.len() as u64;
    let spool = spool.clone();
    tokio::task::spawn_blocking(move || spool.put(&name, &data))
        .await
        .ok()?
        .ok()?;
    Some(bytes)
}

/// Sleeps up to `most`, waking early when a `wal-fetch` asks for a file.
async fn nap(spool: &Spool, most: std::time::Duration) {
    let until = std::time::Instant::now() + most;
    while std::time::Instant::now() < until {
        if spool.asked(ASK_FRESH).is_some() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// How many segments a prefetcher reads at once (each is held whole in memory).
const PREFETCH_PARALLEL: usize = 4;

/// The archived segments of one timeline, as runs without holes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TimelineRanges {
    /// The timeline's number.
    pub timeline: u32,
    /// How many of its segments are archived.
    pub segments: u64,
    /// `(first, last)` segment names of each run without a gap.
    pub ranges: Vec<(String, String)>,
}

/// What `strata wal list` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArchiveReport {
    /// Each timeline with archived segments, in order.
    pub timelines: Vec<TimelineRanges>,
    /// Names of the archived timeline history files (`00000002.history`).
    pub history_files: Vec<String>,
    /// How many other archived files there are (partial segments, backup history
    /// files).
    pub other_files: u64,
}

impl ArchiveReport {
    /// Whether timeline `timeline` holds every segment from `first` to `last` (names).
    pub fn covers(&self, timeline: u32, first: &str, last: &str) -> bool {
        self.timelines
            .iter()
            .filter(|t| t.timeline == timeline)
            .flat_map(|t| &t.ranges)
            .any(|(a, b)| a.as_str() <= first && last <= b.as_str())
    }

    /// The first segment missing between `first` and `last` on `timeline`, if any.
    pub fn first_missing(
        &self,
        timeline: u32,
        first: &str,
        last: &str,
        segment_size: u64,
    ) -> Option<String> {
        let from = WalFileKind::parse(first)?.segno(segment_size)?;
        let to = WalFileKind::parse(last)?.segno(segment_size)?;
        let have: Vec<(u64, u64)> = self
            .timelines
            .iter()
            .filter(|t| t.timeline == timeline)
            .flat_map(|t| &t.ranges)
            .filter_map(|(a, b)| {
                Some((
                    WalFileKind::parse(a)?.segno(segment_size)?,
                    WalFileKind::parse(b)?.segno(segment_size)?,
                ))
            })
            .collect();
        (from..=to)
            .find(|s| !have.iter().any(|(a, b)| a <= s && s <= b))
            .map(|s| crate::walname::segment_name(timeline, s, segment_size))
    }
}

/// Where a restore to the end of the archive stops, known before it starts: the timeline
/// recovery follows (`recovery_target_timeline = 'latest'`), its newest archived
/// segment, and the first gap on the way there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveEnd {
    /// The timeline recovery ends on: the newest one with a history file after the
    /// backup's, as PostgreSQL picks it.
    pub timeline: u32,
    /// The newest archived segment recovery would replay without a gap.
    pub last: String,
    /// The first segment missing between the backup's start and `last`.
    pub gap: Option<WalGap>,
}

/// A segment missing from the archive in the middle of what recovery replays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalGap {
    /// The first missing segment: recovery stops before it.
    pub missing: String,
    /// The last segment before it (recovery's end at the gap).
    pub before: String,
    /// The first archived segment past it.
    pub resumes: String,
    /// How many archived segments lie past the gap, up to [`ArchiveEnd::last`].
    pub past: u64,
}

impl std::fmt::Display for WalGap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "WAL segment {} is missing from the archive: recovery stops after {}, and the {} archived segments from {} on lie past the gap",
            self.missing, self.before, self.past, self.resumes
        )
    }
}

/// The entries of a timeline history file: each ancestor timeline and the position where
/// it ended (the next began).
pub fn parse_history(text: &str) -> Vec<(u32, crate::walname::Lsn)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let timeline = fields.next()?.parse().ok()?;
            let end = crate::walname::Lsn::parse(fields.next()?)?;
            Some((timeline, end))
        })
        .collect()
}

impl ArchiveReport {
    /// The timeline a recovery from `timeline` to the latest ends on: PostgreSQL probes
    /// for the history files of the following timelines, one after another, and takes
    /// the last it finds.
    pub fn newest_timeline(&self, timeline: u32) -> u32 {
        let mut newest = timeline;
        while self
            .history_files
            .iter()
            .any(|h| h.eq_ignore_ascii_case(&format!("{:08X}.history", newest + 1)))
        {
            newest += 1;
        }
        newest
    }

    /// Where a recovery to the end of the archive of a backup that starts in `start_wal`
    /// stops, along the history of `target` (`history`: its history file's entries,
    /// empty when it is the backup's own timeline): each segment is read from the newest
    /// timeline of the history that holds that position, as PostgreSQL reads them.
    /// `None` when the backup is not on that history (PostgreSQL refuses it itself) or
    /// nothing is known to be archived.
    pub fn end_of_recovery(
        &self,
        start_wal: &str,
        target: u32,
        history: &[(u32, crate::walname::Lsn)],
        segment_size: u64,
    ) -> Option<ArchiveEnd> {
        let start = WalFileKind::parse(start_wal)?;
        let (from_tli, from) = (start.timeline(), start.segno(segment_size)?);
        // Each timeline of the history with the segments it can serve: from the
        // segment its parent ended in to the one it ended in itself.
        let mut spans: Vec<(u32, u64, u64)> = Vec::new();
        let mut begin = 0;
        for (tli, end) in history {
            let last = crate::walname::Lsn(end.0.saturating_sub(1)).segment(segment_size);
            spans.push((*tli, begin, last));
            begin = end.segment(segment_size);
        }
        spans.push((target, begin, u64::MAX));
        let own = spans.iter().find(|(tli, ..)| *tli == from_tli)?;
        if from > own.2 {
            return None;
        }
        let archived = |tli: u32, segno: u64| {
            self.timelines
                .iter()
                .filter(|t| t.timeline == tli)
                .flat_map(|t| &t.ranges)
                .filter_map(|(a, b)| {
                    Some((
                        WalFileKind::parse(a)?.segno(segment_size)?,
                        WalFileKind::parse(b)?.segno(segment_size)?,
                    ))
                })
                .any(|(a, b)| a <= segno && segno <= b)
        };
        // The timeline a segment is read from: the newest that has it in its span.
        let serving = |segno: u64| {
            spans
                .iter()
                .rev()
                .filter(|(tli, b, e)| *tli >= from_tli && *b <= segno && segno <= *e)
                .map(|(tli, ..)| *tli)
                .find(|tli| archived(*tli, segno))
        };
        // The newest segment archived on any timeline of the path, in its span.
        let newest = spans
            .iter()
            .filter(|(tli, ..)| *tli >= from_tli)
            .flat_map(|(tli, b, e)| {
                self.timelines
                    .iter()
                    .filter(move |t| t.timeline == *tli)
                    .flat_map(|t| &t.ranges)
                    .filter_map(|(_, last)| WalFileKind::parse(last)?.segno(segment_size))
                    .map(move |last| last.min(*e))
                    .filter(move |last| last >= b)
            })
            .max()?;
        if newest < from {
            return None;
        }
        let name = |segno: u64| {
            let tli = serving(segno).unwrap_or(target);
            crate::walname::segment_name(tli, segno, segment_size)
        };
        let missing = (from..=newest).find(|s| serving(*s).is_none());
        let gap = missing.map(|missing| {
            let past: Vec<u64> = (missing..=newest)
                .filter(|s| serving(*s).is_some())
                .collect();
            WalGap {
                missing: spans
                    .iter()
                    .rev()
                    .find(|(_, b, e)| *b <= missing && missing <= *e)
                    .map(|(tli, ..)| crate::walname::segment_name(*tli, missing, segment_size))
                    .unwrap_or_else(|| name(missing)),
                before: name(missing.saturating_sub(1).max(from)),
                resumes: past.first().map(|s| name(*s)).unwrap_or_default(),
                past: past.len() as u64,
            }
        });
        Some(ArchiveEnd {
            timeline: target,
            last: name(newest),
            gap,
        })
    }
}

/// Lists the archive: per timeline, the runs of consecutive segments (a gap between runs
/// is WAL that recovery cannot cross).
pub fn summarize(names: &[String], segment_size: u64) -> ArchiveReport {
    let mut by_timeline: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    let mut report = ArchiveReport::default();
    for name in names {
        match WalFileKind::parse(name) {
            Some(kind @ WalFileKind::Segment { .. }) => by_timeline
                .entry(kind.timeline())
                .or_default()
                .extend(kind.segno(segment_size)),
            Some(WalFileKind::History { .. }) => report.history_files.push(name.clone()),
            _ => report.other_files += 1,
        }
    }
    for (timeline, mut segnos) in by_timeline {
        segnos.sort_unstable();
        let mut ranges = Vec::new();
        let mut start = segnos[0];
        for pair in segnos.windows(2) {
            if pair[1] != pair[0] + 1 {
                ranges.push((start, pair[0]));
                start = pair[1];
            }
        }
        ranges.push((start, *segnos.last().expect("not empty")));
        let name = |s| crate::walname::segment_name(timeline, s, segment_size);
        report.timelines.push(TimelineRanges {
            timeline,
            segments: segnos.len() as u64,
            ranges: ranges
                .into_iter()
                .map(|(a, b)| (name(a), name(b)))
                .collect(),
        });
    }
    report
}

/// Reads and checks every archived file (each chunk's hash and the whole file's).
/// Returns the names that failed, with why.
pub async fn verify(repo: &Arc<Repository>) -> PgResult<(u64, Vec<(String, String)>)> {
    let mut checked = 0;
    let mut bad = Vec::new();
    for name in repo.list_archived(WAL_SPACE).await? {
        checked += 1;
        let outcome = match repo.load_archived(WAL_SPACE, &name).await {
            Ok(Some(record)) => repo.read_archived(&record).await.map(|_| ()),
            Ok(None) => continue,
            Err(e) => Err(e),
        };
        if let Err(err) = outcome {
            bad.push((name, err.to_string()));
        }
    }
    Ok((checked, bad))
}

/// Which archived files retention may remove: segments (and partial segments and backup
/// history files) before `oldest_needed`, the first segment the oldest kept backup needs.
/// Timeline history files are always kept: they are tiny and recovery reads them all.
pub fn expired(names: &[String], oldest_needed: &str, segment_size: u64) -> Vec<String> {
    let Some(limit) = WalFileKind::parse(oldest_needed).and_then(|k| k.segno(segment_size)) else {
        return Vec::new();
    };
    names
        .iter()
        .filter(|name| {
            WalFileKind::parse(name)
                .and_then(|k| k.segno(segment_size))
                .is_some_and(|segno| segno < limit)
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = 16 << 20;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_window_follows_recovery_but_not_a_segment_asked_for_again() {
        let at = |n: u64| crate::walname::segment_name(1, n, SEG);
        let moves = |wanted: &str, furthest: &str| moves_window(wanted, furthest, Some(SEG), 8);
        assert!(moves(&at(11), &at(10)), "forward");
        assert!(
            !moves(&at(7), &at(10)),
            "the last segment again, just behind"
        );
        assert!(moves(&at(1), &at(10)), "far behind: a new recovery");
        assert!(
            moves(&crate::walname::segment_name(2, 3, SEG), &at(10)),
            "a new timeline"
        );
        assert!(!moves("00000002.history", &at(10)), "not a segment");
        // Without the segment size yet, any segment asked for moves it.
        assert!(moves_window(&at(7), &at(10), None, 8));
    }

    #[test]
    fn summary_shows_runs_and_gaps() {
        let report = summarize(
            &names(&[
                "000000010000000000000001",
                "000000010000000000000002",
                "000000010000000000000004",
                "00000002.history",
                "000000020000000000000004",
                "000000010000000000000002.00000028.backup",
            ]),
            SEG,
        );
        assert_eq!(report.timelines.len(), 2);
        assert_eq!(
            report.timelines[0].ranges,
            vec![
                (
                    "000000010000000000000001".into(),
                    "000000010000000000000002".into()
                ),
                (
                    "000000010000000000000004".into(),
                    "000000010000000000000004".into()
                ),
            ]
        );
        assert_eq!(report.history_files, names(&["00000002.history"]));
        assert_eq!(report.other_files, 1);
        assert!(report.covers(1, "000000010000000000000001", "000000010000000000000002"));
        assert!(!report.covers(1, "000000010000000000000001", "000000010000000000000004"));
        assert_eq!(
            report.first_missing(
                1,
                "000000010000000000000001",
                "000000010000000000000004",
                SEG
            ),
            Some("000000010000000000000003".into())
        );
        assert_eq!(
            report.first_missing(
                1,
                "000000010000000000000001",
                "000000010000000000000002",
                SEG
            ),
            None
        );
    }

    #[test]
    fn retention_keeps_what_the_oldest_backup_needs_and_every_history_file() {
        let all = names(&[
            "000000010000000000000001",
            "000000010000000000000002",
            "000000010000000000000002.00000028.backup",
            "000000010000000000000003",
            "00000002.history",
            "000000020000000000000003",
        ]);
        assert_eq!(
            expired(&all, "000000010000000000000003", SEG),
            names(&[
                "000000010000000000000001",
                "000000010000000000000002",
                "000000010000000000000002.00000028.backup",
            ])
        );
        assert!(expired(&all, "not-a-segment", SEG).is_empty());
    }

    #[test]
    fn ready_segments_are_found_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("pg_wal");
        std::fs::create_dir_all(wal.join("archive_status")).unwrap();
        for n in [
            "000000010000000000000001",
            "000000010000000000000002",
            "000000010000000000000003",
            "000000010000000000000004",
        ] {
            std::fs::write(wal.join(n), b"x").unwrap();
        }
        for n in [
            "000000010000000000000003",
            "000000010000000000000004",
            "000000010000000000000002",
        ] {
            std::fs::write(wal.join("archive_status").join(format!("{n}.ready")), b"").unwrap();
        }
        std::fs::write(
            wal.join("archive_status/000000010000000000000001.done"),
            b"",
        )
        .unwrap();
        let first = wal.join("000000010000000000000002");
        assert_eq!(
            ready_after(&first, 8),
            vec![
                wal.join("000000010000000000000003"),
                wal.join("000000010000000000000004")
            ]
        );
        assert_eq!(ready_after(&first, 1).len(), 1);
    }

    #[test]
    fn reads_the_system_id_of_a_segment_header() {
        let mut page = vec![0u8; 64];
        page[0..2].copy_from_slice(&0xD110u16.to_le_bytes());
        page[2..4].copy_from_slice(&2u16.to_le_bytes());
        page[24..32].copy_from_slice(&7311u64.to_le_bytes());
        assert_eq!(segment_system_id(&page), Some(7311));
        assert_eq!(segment_system_id(b"short"), None);
        assert_eq!(segment_system_id(&[0u8; 64]), None);
    }

    #[test]
    fn the_end_of_recovery_is_the_newest_segment_and_a_gap_on_the_way_is_named() {
        let at = |tli: u32, n: u64| crate::walname::segment_name(tli, n, SEG);
        let all: Vec<String> = [2, 3, 4, 6, 7, 8].iter().map(|n| at(1, *n)).collect();
        let report = summarize(&all, SEG);
        let end = report.end_of_recovery(&at(1, 2), 1, &[], SEG).unwrap();
        assert_eq!(end.last, at(1, 8));
        let gap = end.gap.unwrap();
        assert_eq!(
            (
                gap.missing.as_str(),
                gap.before.as_str(),
                gap.resumes.as_str(),
                gap.past
            ),
            (at(1, 5).as_str(), at(1, 4).as_str(), at(1, 6).as_str(), 3)
        );
        // No gap from a backup past it.
        let end = report.end_of_recovery(&at(1, 6), 1, &[], SEG).unwrap();
        assert_eq!((end.last, end.gap), (at(1, 8), None));

        // Timeline 2 forked in segment 4: timeline 1's segments past it are not read, and
        // the missing 1/5 is no gap; a gap on timeline 2 is.
        let mut names: Vec<String> = [2, 3, 4, 5].iter().map(|n| at(1, *n)).collect();
        names.extend([4, 5, 7].iter().map(|n| at(2, *n)));
        names.push("00000002.history".into());
        let report = summarize(&names, SEG);
        assert_eq!(report.newest_timeline(1), 2);
        let history = parse_history("1\t0/4000100\tno recovery target specified\n");
        let end = report.end_of_recovery(&at(1, 2), 2, &history, SEG).unwrap();
        assert_eq!(end.last, at(2, 7));
        assert_eq!(end.gap.unwrap().missing, at(2, 6));
        // A backup on timeline 1 after the fork is not on timeline 2's history.
        assert_eq!(report.end_of_recovery(&at(1, 5), 2, &history, SEG), None);
    }
}
