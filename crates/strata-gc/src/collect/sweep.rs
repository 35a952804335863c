//! Phase 2: sweep the condemnations whose writers have all ended. The packs they doom
//! leave the index (its objects rewritten, new ones first), then go with the unindexed
//! packs no writer may still name; a pack that still holds the only copy of a referenced
//! blob is rescued.

use super::view::{join, object_key, pack_of_key, scratch_error, Positions, Referenced};
use super::{blocking, is_young, no_writer_may_name, refuse_damaged_index, running_writers};
use super::{condemn::Condemned, orphans::orphans, GcReport};
use crate::lock::HeldLock;
use crate::GcResult;
use std::time::Duration;
use strata_repo::id::PackId;
use strata_repo::index::{fits, BlobIndex, BlobLocation, IndexedPack};
use strata_repo::sorted_ids::{Scratch, SortedIds};
use strata_repo::Repository;

/// An index object listing at least this many packs, none of which goes, stays as it
/// is; smaller ones are merged into the objects a rewrite writes.
pub(super) const STAYING_OBJECT_PACKS: usize = 256;

/// The sweep's merge join: every referenced blob keeps a holder that stays. A blob whose
/// every copy is in a doomed pack has one of them (the lowest pack id) rescued. Returns
/// the rescued packs.
pub(super) fn rescue(
    index: &dyn BlobIndex,
    positions: &Positions,
    referenced: &SortedIds,
    doomed: &[PackId],
    scratch: &Scratch,
) -> GcResult<Vec<PackId>> {
    let mut doomed_at = positions.flags(doomed);
    let mut rescued = Vec::new();
    let pack_at = |p: u32| positions.packs.get(p as usize).copied().flatten();
    join(
        index,
        referenced,
        |_, copies, is_referenced| {
            let doomed_copy = |c: &BlobLocation| doomed_at.get(c.pack as usize) == Some(&true);
            if !is_referenced || !copies.iter().all(doomed_copy) {
                return;
            }
            let keep = copies
                .iter()
                .filter_map(|c| pack_at(c.pack).map(|(id, _)| (id, c.pack)))
                .min();
            if let Some((id, p)) = keep {
                doomed_at[p as usize] = false;
                rescued.push(id);
            }
        },
        |_| {},
    )
    .map_err(|e| scratch_error(scratch, e))?;
    Ok(rescued)
}

/// What the sweep chose, from phase 1's [`Condemned`]: the doomed packs (rescues taken
/// out), the condemnations swept with them, and the index view by position.
pub(super) struct Doomed {
    referenced: Referenced,
    report: GcReport,
    repacked: bool,
    listed: u64,
    swept_runs: Vec<String>,
    doomed: Vec<PackId>,
    positions: Positions,
}

/// Chooses what goes: the condemnations whose writers have all ended (an unarmed one of
/// another run is dropped). The referenced set is brought up to date after the writers
/// were listed: a writer that ended before made its backup or archive record visible
/// first. A swept pack goes unless it holds a referenced blob no pack that stays holds
/// (a backup relied on it after all): such a pack is rescued and stays. The view is
/// brought up to date first, so packs written meanwhile (a repack's new packs, a
/// backup's) count as holders. A repacked pack's live blobs are in the new packs, so it
/// goes.
pub(super) async fn choose(repo: &Repository, condemned: Condemned, run: &str) -> GcResult<Doomed> {
    let Condemned {
        mut referenced,
        condemnations,
        damaged,
        mut report,
        repacked,
        listed,
    } = condemned;
    let running = running_writers(repo).await?;
    referenced.update(repo).await?;
    report.referenced_blobs = referenced.count();
    let mut swept_runs: Vec<String> = damaged;
    let mut doomed: Vec<PackId> = Vec::new();
    for found in &condemnations {
        let c = &found.condemnation;
        match &found.armed_by {
            None if c.run != run => {
                // Left by a collection stopped before arming it: dropped, its packs
                // are condemned again if they still are garbage.
                swept_runs.push(c.run.clone());
                continue;
            }
            None => continue,
            Some(armed) if armed.writers.iter().any(|w| running.contains(w)) => {
                report.packs_waiting += c.packs.len() as u64;
                continue;
            }
            Some(_) => {}
        }
        doomed.extend(c.packs.iter().copied());
        swept_runs.push(c.run.clone());
    }
    doomed.sort_unstable();
    doomed.dedup();
    repo.reload_index().await?;
    refuse_damaged_index(repo)?;
    let (positions, rescued) = blocking(|| {
        let index = repo.index();
        let positions = Positions::of(&**index);
        let rescued = if doomed.is_empty() {
            Vec::new()
        } else {
            rescue(
                &**index,
                &positions,
                referenced.blobs(),
                &doomed,
                &referenced.scratch,
            )?
        };
        GcResult::Ok((positions, rescued))
    })?;
    report.packs_rescued = rescued.len() as u64;
    doomed.retain(|id| !rescued.contains(id));
    Ok(Doomed {
        referenced,
        report,
        repacked,
        listed,
        swept_runs,
        doomed,
        positions,
    })
}

impl Doomed {
    /// A dry run ends here: what a run with no writer running would delete.
    pub(super) async fn dry_report(
        mut self,
        repo: &Repository,
        grace: Duration,
    ) -> GcResult<GcReport> {
        let mut report = self.report;
        report.packs_kept = self.listed - report.packs_deleted;
        report.manifests_deleted = orphans(repo, &mut self.referenced, grace).await?.len() as u64;
        Ok(report)
    }
}

/// The doomed packs once no index object lists them: only then may they be deleted.
pub(super) struct Unlisted {
    referenced: Referenced,
    report: GcReport,
    swept_runs: Vec<String>,
    doomed: Vec<PackId>,
    positions: Positions,
}

/// Takes the doomed packs out of the index.
pub(super) async fn unlist(
    repo: &Repository,
    lock: &HeldLock,
    doomed: Doomed,
) -> GcResult<Unlisted> {
    let store = repo.store();
    let Doomed {
        referenced,
        mut report,
        repacked,
        listed: _,
        swept_runs,
        doomed,
        positions,
    } = doomed;
    // The index objects listing a doomed pack are rewritten without it (small ones
    // merged, those over the bound cut), the new objects first; one object is read at a time, and the kept packs
    // are written as objects within the bound (`fits`) as they fill.
    let doomed_at = positions.flags(&doomed);
    let lists_doomed = |packs: &[u32]| {
        packs
            .iter()
            .any(|&p| doomed_at.get(p as usize) == Some(&true))
    };
    // An object over the bound (written before objects were bounded by blobs) is
    // rewritten too, cut at the bound.
    let must_go = |packs: &[u32]| lists_doomed(packs) || positions.over_bound(packs);
    let replaced: Vec<&(String, Vec<u32>)> = positions
        .objects
        .iter()
        .filter(|(_, packs)| must_go(packs) || packs.len() < STAYING_OBJECT_PACKS)
        .collect();
    let rewrite =
        replaced.iter().any(|(_, packs)| must_go(packs)) || replaced.len() > 1 || repacked;
    if rewrite {
        let mut staying = vec![false; positions.packs.len()];
        for (name, packs) in &positions.objects {
            if !replaced.iter().any(|(r, _)| r == name) {
                packs.iter().for_each(|&p| staying[p as usize] = true);
            }
        }
        let mut kept_at = vec![false; positions.packs.len()];
        let mut kept: Vec<IndexedPack> = Vec::new();
        let mut kept_blobs = 0;
        let mut written: Vec<String> = Vec::new();
        let mut keys: Vec<&str> = replaced.iter().map(|(name, _)| object_key(name)).collect();
        keys.dedup();
        for key in &keys {
            let file = repo.read_index(key).await?;
            for pack in file.packs {
                if doomed.binary_search(&pack.id).is_ok() {
                    continue;
                }
                if let Some(p) = positions.position(&pack.id) {
                    if staying[p as usize] || kept_at[p as usize] {
                        continue;
                    }
                    kept_at[p as usize] = true;
                }
                if !fits(kept.len(), kept_blobs, pack.blobs.len()) {
                    lock.check()?;
                    written.extend(repo.write_index_objects(std::mem::take(&mut kept)).await?);
                    kept_blobs = 0;
                }
                kept_blobs += pack.blobs.len();
                kept.push(pack);
            }
        }
        if !kept.is_empty() {
            lock.check()?;
            written.extend(repo.write_index_objects(kept).await?);
        }
        for key in &keys {
            if !written.iter().any(|w| w == key) {
                lock.check()?;
                store.delete(key).await?;
            }
        }
        report.index_objects_replaced = keys.len() as u64;
    }
    Ok(Unlisted {
        referenced,
        report,
        swept_runs,
        doomed,
        positions,
    })
}

/// Deletes the unlisted packs, the unindexed ones no writer may still name (past the
/// grace period), the swept condemnations and the orphans; the report is final.
pub(super) async fn delete(
    repo: &Repository,
    lock: &HeldLock,
    unlisted: Unlisted,
    grace: Duration,
) -> GcResult<GcReport> {
    let store = repo.store();
    let Unlisted {
        mut referenced,
        mut report,
        swept_runs,
        doomed,
        positions,
    } = unlisted;
    // Doomed packs (no index lists them now) go. Packs no index lists go only when they
    // are older than the grace period by the storage's clock and no writer may still run:
    // the listing first, then the writers, then the index that says they are unindexed.
    let mut indexed: Vec<PackId> = positions
        .live()
        .map(|(_, id, _)| id)
        .filter(|id| doomed.binary_search(id).is_err())
        .collect();
    indexed.sort_unstable();
    let listed = repo.list_packs().await?;
    let now = crate::lock::clock::storage_now_ms(store).await?;
    let mut delete: Vec<(String, u64)> = Vec::new();
    // (A key under data/ that names no pack is a stray: it goes by the same rule.)
    let mut unindexed: Vec<(Option<PackId>, String, u64)> = Vec::new();
    for o in listed {
        match pack_of_key(&o.key) {
            Some(id) if indexed.binary_search(&id).is_ok() => {}
            Some(id) if doomed.binary_search(&id).is_ok() => delete.push((o.key, o.size)),
            pack if !is_young(o.modified, now, grace) => unindexed.push((pack, o.key, o.size)),
            _ => {}
        }
    }
    if !unindexed.is_empty() {
        if no_writer_may_name(repo).await? {
            repo.reload_index().await?;
            refuse_damaged_index(repo)?;
            let now_indexed = Positions::of(&**repo.index());
            delete.extend(
                unindexed
                    .into_iter()
                    .filter(|(id, _, _)| id.is_none_or(|id| now_indexed.position(&id).is_none()))
                    .map(|(_, key, size)| (key, size)),
            );
        } else {
            report.unindexed_waiting = unindexed.len() as u64;
        }
    }
    delete.sort();
    for (key, size) in &delete {
        lock.check()?;
        store.delete(key).await?;
        report.packs_deleted += 1;
        report.bytes_freed += size;
    }
    for swept in &swept_runs {
        lock.check()?;
        repo.remove_condemnation(swept).await?;
    }
    let orphans = orphans(repo, &mut referenced, grace).await?;
    for key in &orphans {
        lock.check()?;
        store.delete(key).await?;
    }
    report.manifests_deleted = orphans.len() as u64;
    report.packs_kept = indexed.len() as u64;
    Ok(report)
}
