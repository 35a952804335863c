//! Phase 1: condemn what no backup references, and mostly-garbage packs (their live
//! blobs copied to new packs first); the condemnation is written, then armed with the
//! writers listed after it.

use super::view::{join, scratch_error, Positions, Referenced};
use super::{blocking, refuse_damaged_index, running_writers, GcReport};
use crate::lock::HeldLock;
use crate::{GcError, GcResult};
use std::sync::Arc;
use strata_repo::condemned::{self, ArmedBy, Condemnation};
use strata_repo::id::PackId;
use strata_repo::index::BlobIndex;
use strata_repo::sorted_ids::{Scratch, SortedIds};
use strata_repo::{BlobId, Repository};

/// A pack whose live blobs take less than this share of its blob bytes is repacked.
pub(super) const REPACK_BELOW: f64 = 0.5;

/// Live bytes one run copies out of mostly-garbage packs at most (the packs beyond wait
/// for the next run), and live blobs: what bounds the time and memory of a repack.
pub(super) const MAX_REPACK_BYTES: u64 = 4 << 30;
pub(super) const MAX_REPACK_BLOBS: u64 = 1 << 20;

/// What one run may copy out of mostly-garbage packs: live bytes and live blobs.
#[derive(Debug, Clone, Copy)]
pub(super) struct RepackBudget {
    pub(super) bytes: u64,
    pub(super) blobs: u64,
}

impl RepackBudget {
    /// A run's: [`MAX_REPACK_BYTES`] and [`MAX_REPACK_BLOBS`].
    pub(super) const PER_RUN: RepackBudget = RepackBudget {
        bytes: MAX_REPACK_BYTES,
        blobs: MAX_REPACK_BLOBS,
    };
}

/// Copies the referenced blobs `ids` (of mostly-garbage packs) into new packs (read,
/// checked, sealed again); returns whether any was copied.
pub(super) async fn move_live_blobs(repo: &Arc<Repository>, ids: &[BlobId]) -> GcResult<bool> {
    let writer = Arc::new(strata_repo::writer::BlobWriter::start(
        repo.clone(),
        strata_repo::writer::WriterOptions::default(),
    ));
    for id in ids {
        let data = repo.read_blob(id).await?;
        let (w, id) = (writer.clone(), *id);
        tokio::task::spawn_blocking(move || w.rewrite(id, bytes::Bytes::from(data)))
            .await
            .expect("repack thread panicked")?;
    }
    let writer = Arc::into_inner(writer).expect("repack submissions are done");
    writer.finish().await?;
    Ok(!ids.is_empty())
}

/// What the first phase found in the view: the packs to condemn (with their sizes), the
/// mostly-garbage ones to repack (as positions), and how many packs the view lists.
pub(super) struct Found {
    pub(super) condemn: Vec<(PackId, u64)>,
    pub(super) repack: Vec<(u32, PackId)>,
    pub(super) listed: u64,
}

/// The first phase's merge join: per pack, its live and total bytes; the packs with no
/// referenced blob are condemned, those mostly garbage repacked as long as their live
/// data fits `budget`, in the view's order (the first always: a run moves at least one).
/// A referenced id no pack holds is returned instead (`Ok(Err(id))`).
pub(super) fn find_garbage(
    index: &dyn BlobIndex,
    referenced: &SortedIds,
    already: &[PackId],
    scratch: &Scratch,
    budget: RepackBudget,
) -> GcResult<Result<Found, BlobId>> {
    let positions = Positions::of(index);
    let count = positions.packs.len();
    let (mut total, mut live, mut live_blobs) =
        (vec![0u64; count], vec![0u64; count], vec![0u64; count]);
    let mut missing: Option<BlobId> = None;
    join(
        index,
        referenced,
        |_, copies, is_referenced| {
            for copy in copies {
                let p = copy.pack as usize;
                if p >= count {
                    continue;
                }
                total[p] += copy.length as u64;
                if is_referenced {
                    live[p] += copy.length as u64;
                    live_blobs[p] += 1;
                }
            }
        },
        |id| {
            missing.get_or_insert(*id);
        },
    )
    .map_err(|e| scratch_error(scratch, e))?;
    if let Some(missing) = missing {
        return Ok(Err(missing));
    }
    let mut found = Found {
        condemn: Vec::new(),
        repack: Vec::new(),
        listed: 0,
    };
    let (mut repack_bytes, mut repack_blobs) = (0u64, 0u64);
    for (p, id, size) in positions.live() {
        found.listed += 1;
        if already.binary_search(&id).is_ok() {
            continue;
        }
        let p_ = p as usize;
        if live_blobs[p_] == 0 {
            found.condemn.push((id, size));
        } else if (live[p_] as f64) < REPACK_BELOW * total[p_] as f64 {
            let fits = repack_bytes + live[p_] <= budget.bytes
                && repack_blobs + live_blobs[p_] <= budget.blobs;
            if fits || found.repack.is_empty() {
                repack_bytes += live[p_];
                repack_blobs += live_blobs[p_];
                found.repack.push((p, id));
            }
        }
    }
    Ok(Ok(found))
}

/// The referenced ids with a copy in one of the packs at `positions` (a second pass of
/// the join, for a repack).
pub(super) fn live_blobs_of(
    index: &dyn BlobIndex,
    referenced: &SortedIds,
    positions: &[u32],
    scratch: &Scratch,
) -> GcResult<Vec<BlobId>> {
    let mut chosen = Vec::new();
    join(
        index,
        referenced,
        |id, copies, is_referenced| {
            if is_referenced && copies.iter().any(|c| positions.contains(&c.pack)) {
                chosen.push(*id);
            }
        },
        |_| {},
    )
    .map_err(|e| scratch_error(scratch, e))?;
    Ok(chosen)
}

/// What phase 1 leaves for phase 2, which takes it by value: every condemnation (this
/// run's armed, listing the writers that may rely on its packs), the referenced ids as
/// read before it, and the report so far.
pub(super) struct Condemned {
    pub(super) referenced: Referenced,
    pub(super) condemnations: Vec<condemned::Found>,
    /// Condemnation objects that do not decode: removed with the swept ones.
    pub(super) damaged: Vec<String>,
    pub(super) report: GcReport,
    /// Whether live blobs were copied into new packs (the index is rewritten then).
    pub(super) repacked: bool,
    /// Packs the view listed (what a dry run reports kept).
    pub(super) listed: u64,
}

/// Phase 1 (see the module's doc). The index is read before the summaries and archive
/// records: one that became visible in between relies on index objects the view lacks;
/// read again, the index has them (a writer writes its index objects before its summary
/// or record); a blob it still lacks refuses the collection.
pub(super) async fn condemn(
    repo: &Arc<Repository>,
    lock: &HeldLock,
    dry_run: bool,
    run: &str,
) -> GcResult<Condemned> {
    repo.reload_index().await?;
    refuse_damaged_index(repo)?;
    let mut referenced = Referenced::new()?;
    let backups = referenced.update(repo).await?;
    let (condemnations, damaged) = repo.condemnations().await?;
    let mut already: Vec<PackId> = condemnations
        .iter()
        .flat_map(|c| c.condemnation.packs.iter().copied())
        .collect();
    already.sort_unstable();
    already.dedup();

    let find = || {
        blocking(|| {
            find_garbage(
                &**repo.index(),
                referenced.blobs(),
                &already,
                &referenced.scratch,
                RepackBudget::PER_RUN,
            )
        })
    };
    let found = match find()? {
        Ok(found) => found,
        Err(_) => {
            repo.reload_index().await?;
            refuse_damaged_index(repo)?;
            find()?.map_err(|missing| {
                GcError::NeedsRepair(format!(
                    "a backup references blob {} that the index lacks: the repository needs repair, so nothing was deleted (run `strata verify`)",
                    missing.short()
                ))
            })?
        }
    };
    let mut condemn: Vec<PackId> = found.condemn.iter().map(|(id, _)| *id).collect();
    let mut report = GcReport {
        dry_run,
        backups,
        referenced_blobs: referenced.count(),
        packs_repacked: found.repack.len() as u64,
        packs_condemned: (found.condemn.len() + found.repack.len()) as u64,
        ..GcReport::default()
    };
    let mut repacked = false;
    let mut condemnations = condemnations;
    if !dry_run && (!condemn.is_empty() || !found.repack.is_empty()) {
        if !found.repack.is_empty() {
            let mut positions: Vec<u32> = found.repack.iter().map(|(p, _)| *p).collect();
            positions.sort_unstable();
            let ids = blocking(|| {
                live_blobs_of(
                    &**repo.index(),
                    referenced.blobs(),
                    &positions,
                    &referenced.scratch,
                )
            })?;
            lock.check()?;
            repacked = move_live_blobs(repo, &ids).await?;
            condemn.extend(found.repack.iter().map(|(_, id)| *id));
        }
        condemn.sort();
        let condemnation = Condemnation {
            run: run.to_string(),
            created_ms: crate::lock::now_ms(),
            packs: condemn,
        };
        lock.check()?;
        repo.write_condemnation(&condemnation).await?;
        // Listed after the condemnation exists: a writer not among these read the
        // index after it, and does not rely on its packs.
        let mut writers: Vec<String> = running_writers(repo).await?.into_iter().collect();
        writers.sort();
        let armed = ArmedBy {
            run: run.to_string(),
            writers,
        };
        lock.check()?;
        repo.arm_condemnation(&armed).await?;
        condemnations.push(strata_repo::condemned::Found {
            condemnation,
            armed_by: Some(armed),
        });
    } else if dry_run {
        // A dry run reports what a run with no writer running would delete.
        for (_, size) in &found.condemn {
            report.packs_deleted += 1;
            report.bytes_freed += size;
        }
    }
    Ok(Condemned {
        referenced,
        condemnations,
        damaged,
        report,
        repacked,
        listed: found.listed,
    })
}
