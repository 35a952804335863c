//! What a collection reads: the blob ids backups and archive records reference (on
//! scratch disk), and the index's packs by position; the merge join between them.

use super::blocking;
use crate::{GcError, GcResult};
use std::collections::HashSet;
use std::sync::Arc;
use strata_repo::id::PackId;
use strata_repo::index::{BlobIndex, BlobLocation};
use strata_repo::layout;
use strata_repo::layout::pack_key;
use strata_repo::sorted_ids::{Scratch, SortedIds, SortedIdsBuilder};
use strata_repo::{BlobId, RepoError, Repository};

/// The blob ids backups and archive records reference (sorted on scratch disk, see
/// [`strata_repo::sorted_ids`]: memory does not grow with them), and which backups and
/// records were read, so it can be brought up to date by reading only what appeared since.
pub(super) struct Referenced {
    pub(super) scratch: Arc<Scratch>,
    /// `None` before the first update.
    pub(super) blobs: Option<SortedIds>,
    pub(super) backups: HashSet<String>,
    pub(super) archived: HashSet<String>,
}

/// A failure of the collection's scratch files on this host's disk.
pub(super) fn scratch_error(scratch: &Scratch, err: std::io::Error) -> GcError {
    GcError::from(strata_store::StoreError::Backend {
        op: "write",
        key: scratch.path().display().to_string(),
        store: "this host's disk (garbage collection's scratch files)".into(),
        message: err.to_string(),
    })
}

impl Referenced {
    pub(super) fn new() -> GcResult<Referenced> {
        let scratch = Scratch::for_process("gc").map_err(|e| {
            GcError::from(strata_store::StoreError::Backend {
                op: "create",
                key: "gc scratch directory".into(),
                store: "this host's disk".into(),
                message: e.to_string(),
            })
        })?;
        Ok(Referenced {
            scratch,
            blobs: None,
            backups: HashSet::new(),
            archived: HashSet::new(),
        })
    }

    /// The referenced ids (after the first update).
    pub(super) fn blobs(&self) -> &SortedIds {
        self.blobs.as_ref().expect("read before use")
    }

    pub(super) fn count(&self) -> u64 {
        self.blobs.as_ref().map_or(0, SortedIds::len)
    }

    /// Reads the backups and archive records not read yet; returns how many backups
    /// have been read in all (those deleted while they were read not counted). Strict: a
    /// summary or manifest that does not decode stops the collection (it might reference
    /// anything).
    pub(super) async fn update(&mut self, repo: &Repository) -> GcResult<usize> {
        let mut ids = match self.blobs.take() {
            Some(ids) => ids.extend(),
            None => SortedIdsBuilder::new(self.scratch.clone()),
        };
        for object in repo
            .store()
            .list_fresh(layout::SUMMARIES)
            .await
            .map_err(RepoError::from)?
        {
            let name = &object.key[layout::SUMMARIES.len()..];
            if self.backups.contains(name) {
                continue;
            }
            // A backup deleted while this runs (deletes do not wait for collections)
            // references nothing any more: skipped, whichever object went first. (Ids of
            // its nodes read before it went stay in the set: they only keep data.)
            let summary = match repo.load_summary(name).await {
                Ok(summary) => summary,
                Err(RepoError::NoSuchBackup(_)) => continue,
                Err(err) => return Err(err.into()),
            };
            let mut deleted = false;
            for node in summary.nodes.iter().filter(|n| n.has_manifest) {
                // Its chunk blobs (format version 4) and its files' data.
                let read = repo
                    .manifest_references(&summary.name, &node.name, |id| ids.push(*id))
                    .await;
                match read {
                    Ok(()) => {}
                    Err(RepoError::Store(e)) if e.is_not_found() => {
                        match repo.load_summary(name).await {
                            Err(RepoError::NoSuchBackup(_)) => {
                                deleted = true;
                                break;
                            }
                            _ => return Err(RepoError::Store(e).into()),
                        }
                    }
                    Err(err) => return Err(err.into()),
                }
            }
            if !deleted {
                self.backups.insert(summary.name.clone());
            }
        }
        // Files archived outside backups (WAL) keep their data too: one record at a time.
        for object in repo.store().list(layout::ARCHIVE).await? {
            let rest = object.key.trim_start_matches(layout::ARCHIVE);
            let Some((space, name)) = rest.split_once('/') else {
                continue;
            };
            let Some(file) = repo.load_archived(space, name).await? else {
                continue;
            };
            // A name stored again with other content is another record.
            let key = format!("{space}/{}/{}", file.name, file.content_id.to_hex());
            if self.archived.insert(key) {
                file.chunks.iter().for_each(|id| ids.push(*id));
            }
        }
        let sorted = blocking(|| ids.finish()).map_err(|e| scratch_error(&self.scratch, e))?;
        self.blobs = Some(sorted);
        Ok(self.backups.len())
    }
}

/// Walks every blob copy of the index (in blob id order) beside the sorted referenced
/// ids, a merge join: calls `each(id, copies, referenced)` once per blob a live pack
/// holds, and `missing(id)` for each referenced id no live pack holds.
pub(super) fn join(
    index: &dyn BlobIndex,
    referenced: &SortedIds,
    mut each: impl FnMut(&BlobId, &[BlobLocation], bool),
    mut missing: impl FnMut(&BlobId),
) -> std::io::Result<()> {
    let mut refs = referenced.iter()?;
    let mut next_ref = refs.next();
    let mut copies = index.copies().peekable();
    let mut group: Vec<BlobLocation> = Vec::new();
    while let Some((id, first)) = copies.next() {
        group.clear();
        group.push(first);
        while let Some((_, more)) = copies.next_if(|(next, _)| *next == id) {
            group.push(more);
        }
        while let Some(r) = next_ref.filter(|r| *r < id) {
            missing(&r);
            next_ref = refs.next();
        }
        let is_referenced = next_ref == Some(id);
        if is_referenced {
            next_ref = refs.next();
        }
        each(&id, &group, is_referenced);
    }
    while let Some(r) = next_ref {
        missing(&r);
        next_ref = refs.next();
    }
    match refs.error() {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// The packs of an index view by position (see [`BlobIndex::pack`]): the objects with
/// their positions, and each live position's pack id and size.
pub(super) struct Positions {
    pub(super) objects: Vec<(String, Vec<u32>)>,
    /// Per position: the pack, when an object of the view lists it.
    pub(super) packs: Vec<Option<(PackId, u64)>>,
    /// (pack id, position), sorted: from a pack id to its position.
    pub(super) by_id: Vec<(PackId, u32)>,
    /// Per position: the pack's blob count (0 for no listed pack).
    pub(super) blobs: Vec<u32>,
}

impl Positions {
    pub(super) fn of(index: &dyn BlobIndex) -> Positions {
        let mut objects = index.objects();
        objects.sort();
        let count = objects
            .iter()
            .flat_map(|(_, p)| p.iter())
            .max()
            .map_or(0, |&m| m as usize + 1);
        let mut packs = vec![None; count];
        let mut blobs = vec![0; count];
        for &position in objects.iter().flat_map(|(_, p)| p.iter()) {
            packs[position as usize] = Some(index.pack(position));
            blobs[position as usize] = index.pack_blobs(position);
        }
        let mut by_id: Vec<(PackId, u32)> = packs
            .iter()
            .enumerate()
            .filter_map(|(p, pack)| pack.map(|(id, _)| (id, p as u32)))
            .collect();
        by_id.sort_unstable();
        Positions {
            objects,
            packs,
            by_id,
            blobs,
        }
    }

    /// Whether an object listing the packs at `positions` is over the bound (written
    /// before objects were bounded by blobs): a collection rewrites it.
    pub(super) fn over_bound(&self, positions: &[u32]) -> bool {
        let counts: Vec<usize> = positions
            .iter()
            .map(|&p| self.blobs.get(p as usize).copied().unwrap_or(0) as usize)
            .collect();
        strata_repo::index::over_bound(&counts)
    }

    pub(super) fn position(&self, pack: &PackId) -> Option<u32> {
        self.by_id
            .binary_search_by(|(id, _)| id.cmp(pack))
            .ok()
            .map(|i| self.by_id[i].1)
    }

    pub(super) fn live(&self) -> impl Iterator<Item = (u32, PackId, u64)> + '_ {
        self.packs
            .iter()
            .enumerate()
            .filter_map(|(p, pack)| pack.map(|(id, size)| (p as u32, id, size)))
    }

    /// Per position: whether the pack is among `sorted` pack ids.
    pub(super) fn flags(&self, sorted: &[PackId]) -> Vec<bool> {
        self.packs
            .iter()
            .map(|p| p.is_some_and(|(id, _)| sorted.binary_search(&id).is_ok()))
            .collect()
    }
}

/// The object key of a view's object name (a refresh names objects with their size and
/// time as listed, `key#size-millis`).
pub(super) fn object_key(name: &str) -> &str {
    name.split_once('#').map_or(name, |(key, _)| key)
}

/// The pack a `data/` key names, if it is a pack key.
pub(super) fn pack_of_key(key: &str) -> Option<PackId> {
    let id = BlobId::from_hex(key.rsplit('/').next()?)?;
    (pack_key(&id) == key).then_some(id)
}
