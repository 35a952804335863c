//! Folding loose entries into pages, dropping the entries of deleted backups, and
//! rebuilding what is damaged or missing, by a writer that holds the cluster lock.
//!
//! A compaction reads every listing object (a GET per thousand backups, kept by the local
//! cache as they never change under their key), reconciles them with the summaries (the
//! truth: a summary the listing lacks is read), and writes only the pages whose content
//! changed (and the pages still named in the older key form, without their count). New
//! pages are written before the objects they replace are deleted, so a reader between the
//! two sees some backups twice (it keeps one) and never misses one.

use super::{ListingKey, Position, LOOSE_MAX, PAGE_MAX};
use crate::format::ObjectKind;
use crate::summary::BackupSummary;
use crate::{RepoError, RepoResult, Repository};
use std::collections::{BTreeMap, HashSet};

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CompactReport {
    /// Backups in the listing afterwards.
    pub backups: usize,
    /// Page objects written.
    pub pages_written: usize,
    /// Listing objects deleted (merged entries, replaced or damaged pages).
    pub deleted: usize,
    /// Backups the listing lacked, read from their summaries.
    pub from_summaries: usize,
}

/// Groups `entries` (oldest first) into pages: each existing page keeps the backups from
/// its oldest position up to the next page's (older ones join the first page, newer ones
/// the last), a group over `max` ([`PAGE_MAX`]) is cut from its oldest end, and a group
/// under a quarter of a page joins its newer neighbour when both fit in one. Pages far
/// from the changes keep their content, so they are not rewritten.
pub(crate) fn group(
    entries: Vec<(Position, BackupSummary)>,
    pages: &[&ListingKey],
    max: usize,
) -> Vec<Vec<BackupSummary>> {
    let starts: Vec<&Position> = pages.iter().map(|k| k.oldest()).collect();
    let mut groups: Vec<Vec<BackupSummary>> = vec![Vec::new(); starts.len().max(1)];
    for (position, entry) in entries {
        let at = starts
            .partition_point(|s| *s <= &position)
            .saturating_sub(1);
        groups[at].push(entry);
    }
    let mut cut = Vec::new();
    for group in groups.into_iter().filter(|g| !g.is_empty()) {
        let mut rest = group;
        while rest.len() > max {
            let tail = rest.split_off(max);
            cut.push(rest);
            rest = tail;
        }
        cut.push(rest);
    }
    let mut out: Vec<Vec<BackupSummary>> = Vec::new();
    for group in cut.into_iter().rev() {
        match out.last_mut() {
            Some(newer) if group.len() < max / 4 && group.len() + newer.len() <= max => {
                let mut merged = group;
                merged.append(newer);
                *newer = merged;
            }
            _ => out.push(group),
        }
    }
    out.reverse();
    out
}

impl Repository {
    /// Compacts the listing (see the module's documentation). Unless `thorough`, it does
    /// nothing while fewer than [`LOOSE_MAX`] entries are loose (the end of a backup);
    /// `thorough` also drops the entries of deleted backups and rebuilds damaged or
    /// missing pieces (after a delete, a cleanup, gc or a migration). Call it holding the
    /// cluster lock: it deletes objects.
    pub async fn compact_listing(&self, thorough: bool) -> RepoResult<CompactReport> {
        self.compact_listing_into(thorough, PAGE_MAX).await
    }

    /// [`Repository::compact_listing`] into pages of at most `max` backups (tests make
    /// many small pages).
    pub(crate) async fn compact_listing_into(
        &self,
        thorough: bool,
        max: usize,
    ) -> RepoResult<CompactReport> {
        self.check_writable()?;
        let keys = self.listing_keys().await?;
        let loose = keys
            .objects
            .iter()
            .filter(|o| matches!(o.key, ListingKey::Entry(_)))
            .count();
        let has_pages = keys
            .objects
            .iter()
            .any(|o| matches!(o.key, ListingKey::Page { .. }));
        // Enough loose entries, or summaries no listing object holds (a repository
        // migrated from version 3 gets its listing at its first backup).
        let unlisted = !has_pages && keys.truth.len() > loose;
        if !thorough && loose < LOOSE_MAX && !unlisted {
            return Ok(CompactReport::default());
        }
        let mut report = CompactReport::default();
        let mut pages: Vec<&ListingKey> = keys
            .objects
            .iter()
            .map(|o| &o.key)
            .filter(|k| matches!(k, ListingKey::Page { .. }))
            .collect();
        pages.sort_by(|a, b| a.oldest().cmp(b.oldest()));

        // Everything the listing holds (loose entries first: they are newer than any
        // page holding the same backup), and what each page holds.
        let mut ordered: Vec<&super::read::Listed> = keys.objects.iter().collect();
        ordered.sort_by_key(|o| matches!(o.key, ListingKey::Page { .. }));
        let mut found: BTreeMap<Position, BackupSummary> = BTreeMap::new();
        let mut names: HashSet<String> = HashSet::new();
        // Clean pages by (oldest, newest): their key and the backups they hold.
        let mut held: BTreeMap<(Position, Position), (String, Vec<String>)> = BTreeMap::new();
        let mut dirty = false;
        let mut gone: Vec<String> = Vec::new();
        for object in ordered {
            let key = &object.key;
            match self.read_listing_object(key).await {
                Ok(contents) => {
                    let contents = (*contents).clone();
                    let held_names: Vec<String> =
                        contents.entries.iter().map(|e| e.name.clone()).collect();
                    // Whether the object says only what is still true (and under a key of
                    // the current form: a page named without its count is written again).
                    let mut clean = contents.damaged.is_empty() // read again below
                        && key.count().is_some();
                    for entry in contents.entries {
                        if !keys.truth.contains_key(&entry.name) {
                            clean = false; // a deleted backup's entry
                        } else if keys.stale(&entry.name, object.modified) {
                            clean = false; // its summary changed since: read below
                        } else if names.insert(entry.name.clone()) {
                            found.insert(Position::of(&entry), entry);
                        } else {
                            clean = false; // in two objects (a repair, an interrupted compaction)
                        }
                    }
                    dirty |= !clean;
                    if clean && matches!(key, ListingKey::Page { .. }) {
                        let range = (key.oldest().clone(), key.newest().clone());
                        held.insert(range, (key.key(), held_names));
                    }
                }
                Err(RepoError::Store(e)) if e.is_not_found() => {}
                Err(err) if err.is_damage() => {
                    eprintln!("strata: warning: {err}; the listing is rebuilt from the summaries");
                    dirty = true;
                    gone.push(key.key());
                }
                Err(err) => return Err(err),
            }
        }
        // Summaries the listing lacks, or that changed since it was written.
        let mut damaged: Vec<String> = Vec::new();
        for name in keys.truth.keys().filter(|n| !names.contains(*n)) {
            match self.load_summary(name).await {
                Ok(summary) => {
                    report.from_summaries += 1;
                    found.insert(Position::of(&summary), super::trimmed(&summary));
                }
                Err(RepoError::NoSuchBackup(_)) => {}
                // Kept by name in the newest page, so every reader of it reports them.
                Err(err) if err.is_damage() => damaged.push(name.clone()),
                Err(err) => return Err(err),
            }
        }
        report.backups = found.len();
        if !dirty && loose == 0 && report.from_summaries == 0 && damaged.is_empty() {
            // A thorough compaction follows a delete, a cleanup or a repair: whatever
            // they changed, servers keeping a listing read it again.
            if thorough {
                self.bump_listing_generation_or_warn().await;
            }
            return Ok(report);
        }

        // Write the pages whose content changed, then delete what they replace.
        let mut keep: HashSet<String> = HashSet::new();
        let groups = group(found.into_iter().collect(), &pages, max);
        let newest = groups.len().saturating_sub(1);
        for (i, entries) in groups.into_iter().enumerate() {
            let range = (
                Position::of(&entries[0]),
                Position::of(&entries[entries.len() - 1]),
            );
            let damaged: &[String] = if i == newest { &damaged } else { &[] };
            let unchanged = held.get(&range).filter(|(_, old)| {
                damaged.is_empty()
                    && old.len() == entries.len()
                    && old.iter().zip(&entries).all(|(a, b)| *a == b.name)
            });
            if let Some((key, _)) = unchanged {
                keep.insert(key.clone());
                continue;
            }
            let name = ListingKey::new_page(range.0, range.1, entries.len() + damaged.len()).key();
            let plain = super::encode_contents(&entries, damaged);
            let bytes = self.seal_object(ObjectKind::Listing, &name, &plain)?;
            self.store().put(&name, bytes.into()).await?;
            report.pages_written += 1;
            keep.insert(name);
        }
        for key in keys.objects.iter().map(|o| o.key.key()).chain(gone) {
            if !keep.contains(&key) {
                self.store().delete(&key).await?;
                report.deleted += 1;
            }
        }
        self.bump_listing_generation_or_warn().await;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::BackupStatus;

    fn entries(n: usize) -> Vec<(Position, BackupSummary)> {
        (0..n)
            .map(|i| {
                let s = crate::listing::tests::summary(
                    &format!(
                        "20261125T{:02}{:02}{:02}Z-{i:08x}",
                        i / 3600 % 24,
                        i / 60 % 60,
                        i % 60
                    ),
                    &format!(
                        "2026-11-25T{:02}:{:02}:{:02}.000Z",
                        i / 3600 % 24,
                        i / 60 % 60,
                        i % 60
                    ),
                    BackupStatus::Complete,
                );
                (Position::of(&s), s)
            })
            .collect()
    }

    #[test]
    fn pages_are_cut_at_the_maximum_and_small_ones_merged() {
        let all = entries(2 * PAGE_MAX + 10);
        let sizes: Vec<usize> = group(all.clone(), &[], PAGE_MAX)
            .iter()
            .map(Vec::len)
            .collect();
        // The last ten stay apart: the page before them is full.
        assert_eq!(sizes, vec![PAGE_MAX, PAGE_MAX, 10]);

        // An existing page boundary is kept: the backups after it stay in their page.
        let boundary = ListingKey::new_page(all[0].0.clone(), all[499].0.clone(), 500);
        let second = ListingKey::new_page(all[500].0.clone(), all[999].0.clone(), 500);
        let sizes: Vec<usize> = group(all[..1000].to_vec(), &[&boundary, &second], PAGE_MAX)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, vec![500, 500]);
        // A small older group joins its newer neighbour when both fit.
        let sizes: Vec<usize> = group(all[490..1000].to_vec(), &[&boundary, &second], PAGE_MAX)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, vec![510]);
    }
}
