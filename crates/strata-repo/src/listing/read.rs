//! Reading one page of the listing, newest first, reconciled with the summaries.
//!
//! A page costs a LIST of `listing/`, the GETs of the listing objects that can hold the
//! page's backups (the loose entries newer than it and one or two page objects) and a
//! keys-only LIST of the summaries whose names sort after a bound the page's oldest
//! backup gives (its start minus 6 hours: [`super::bounded`]), whatever the number of
//! backups. Where that bound cannot be shown to hold (see [`super::bounded`]), the page is
//! read as here, against a LIST of every summary, one request per thousand backups on S3.
//! Summaries stay the truth either way: an entry whose summary is gone is dropped (a
//! deleted backup whose page was not rewritten yet); a summary the listing lacks (a writer
//! stopped between the summary and its entry, a repository written before the listing
//! existed, a damaged or missing listing object) is read by itself, and the page says how
//! many were. A summary whose name falls in a page's time range is taken to be in that
//! page until the page is read; if it is not (a backup named in the page's newest second,
//! or inside the slack before its oldest, that began after the compaction), it is read by
//! itself too, unless a page left unread may still hold it.

use super::bounded::Bounded;
use super::page::{window_holds, Truth};
pub use super::page::{BackupPage, PageRequest};
pub(crate) use super::page::{Keys, Listed};
use super::{ListingKey, Position};
use crate::format::{decode_object, ObjectKind};
use crate::layout;
use crate::summary::BackupSummary;
use crate::{DamagedObject, RepoError, RepoResult, Repository};
use std::collections::{BTreeMap, HashSet};

/// The backups with a summary that a read page's time range holds (so they were not read
/// up front) but that no read object names, no loose entry names and no unread page can
/// hold: those the listing lacks after all.
fn orphans(
    keys: &Keys,
    read_pages: &[&ListingKey],
    entry_names: &HashSet<&str>,
    seen: &HashSet<String>,
    reread: &HashSet<String>,
) -> Vec<String> {
    let unread_pages: Vec<&ListingKey> = keys
        .objects
        .iter()
        .map(|o| &o.key)
        .filter(|k| matches!(k, ListingKey::Page { .. }) && !read_pages.contains(k))
        .collect();
    keys.truth
        .keys()
        .filter(|n| !seen.contains(*n) && !reread.contains(*n))
        .filter(|n| !entry_names.contains(n.as_str()))
        .filter(|n| read_pages.iter().any(|k| window_holds(k, n)))
        .filter(|n| !unread_pages.iter().any(|k| window_holds(k, n)))
        .cloned()
        .collect()
}

impl Repository {
    /// Lists `listing/` and `summaries/` (keys only).
    pub(crate) async fn listing_keys(&self) -> RepoResult<Keys> {
        let (objects, truth) = tokio::join!(self.listing_objects(), self.summary_times(None));
        Ok(Keys {
            objects: objects?,
            truth: truth?,
        })
    }

    /// Lists `listing/`: its entries and pages (other keys are passed over).
    pub(crate) async fn listing_objects(&self) -> RepoResult<Vec<Listed>> {
        Ok(self
            .store()
            .list(layout::LISTING)
            .await?
            .iter()
            .filter_map(|o| {
                Some(Listed {
                    key: ListingKey::parse(&o.key)?,
                    modified: o.modified,
                })
            })
            .collect())
    }

    /// The backups with a summary, by name, with when their summary was written, from a
    /// keys-only LIST of `summaries/`: all of them, or those whose names sort after
    /// `after`.
    pub(crate) async fn summary_times(&self, after: Option<&str>) -> RepoResult<Truth> {
        let listed = match after {
            Some(after) => {
                let after = format!("{}{after}", layout::SUMMARIES);
                self.store().list_after(layout::SUMMARIES, &after).await?
            }
            None => self.store().list(layout::SUMMARIES).await?,
        };
        Ok(listed
            .into_iter()
            .filter_map(|o| {
                let name = o.key.strip_prefix(layout::SUMMARIES)?;
                (!name.contains('/')).then(|| (name.to_string(), o.modified))
            })
            .collect())
    }

    /// The name of every backup with a summary, from one keys-only LIST (damaged ones
    /// included), in name order.
    pub async fn backup_names(&self) -> RepoResult<Vec<String>> {
        Ok(self
            .store()
            .list(layout::SUMMARIES)
            .await?
            .into_iter()
            .filter_map(|o| {
                let name = o.key.strip_prefix(layout::SUMMARIES)?;
                (!name.contains('/')).then(|| name.to_string())
            })
            .collect())
    }

    /// Reads and checks one listing object.
    pub(crate) async fn read_listing_object(
        &self,
        key: &ListingKey,
    ) -> RepoResult<std::sync::Arc<super::Contents>> {
        let name = key.key();
        if let Some(contents) = self.listing_objects.get(&name) {
            return Ok(contents);
        }
        let bytes = self.store().get(&name).await?;
        let plain = decode_object(self.cipher(), ObjectKind::Listing, &bytes, &name)?;
        let contents = std::sync::Arc::new(
            super::decode_contents(key, &plain).map_err(|why| RepoError::corrupted(&name, why))?,
        );
        if matches!(key, ListingKey::Page { .. }) {
            self.listing_objects.put(name, contents.clone());
        }
        Ok(contents)
    }

    /// Deletes the loose listing entry of `summary`, if not compacted yet (a page keeps
    /// the backup until the next compaction; readers drop it meanwhile, as its summary is
    /// gone): see [`Repository::delete_backup`].
    pub(crate) async fn delete_listing_entry(&self, summary: &BackupSummary) -> RepoResult<()> {
        let key = ListingKey::Entry(Position::of(summary)).key();
        self.store().delete(&key).await?;
        Ok(())
    }

    /// Writes the listing entry of `summary` (after its summary: see
    /// [`Repository::save_summary`]).
    pub(crate) async fn save_listing_entry(&self, summary: &BackupSummary) -> RepoResult<()> {
        let key = ListingKey::Entry(Position::of(summary)).key();
        let plain = super::encode_payload(&[super::trimmed(summary)]);
        let bytes = self.seal_object(ObjectKind::Listing, &key, &plain)?;
        self.store().put(&key, bytes.into()).await?;
        Ok(())
    }

    /// Reads the summaries of `names` the listing lacks, into `found`, `page` saying so.
    pub(super) async fn read_fallback(
        &self,
        names: impl IntoIterator<Item = String>,
        found: &mut BTreeMap<Position, BackupSummary>,
        page: &mut BackupPage,
    ) -> RepoResult<()> {
        for name in names {
            match self.load_summary(&name).await {
                Ok(summary) => {
                    page.from_summaries.push(name);
                    found.insert(Position::of(&summary), super::trimmed(&summary));
                }
                Err(RepoError::NoSuchBackup(_)) => {}
                Err(err) if err.is_damage() => page
                    .damaged
                    .push(DamagedObject::new(&layout::summary_key(&name), &err)),
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// One page of backups, newest first: see the module's documentation for what it
    /// costs and how it is reconciled with the summaries.
    pub async fn backup_page(&self, request: &PageRequest) -> RepoResult<BackupPage> {
        let mut listed = None;
        // Against the summaries after a bound, once more when a page was compacted away
        // between the LIST and its GET.
        for _ in 0..2 {
            match self.bounded_page(request).await? {
                Bounded::Page(page) => return Ok(page),
                Bounded::Gone => continue,
                Bounded::Fallback(_, objects) => {
                    listed = objects;
                    break;
                }
            }
        }
        self.whole_page(request, listed).await
    }

    /// [`Repository::backup_page`] against the LIST of every summary; `listed`: the
    /// listing's objects, when they were just listed.
    pub(crate) async fn whole_page(
        &self,
        request: &PageRequest,
        listed: Option<Vec<Listed>>,
    ) -> RepoResult<BackupPage> {
        match self.try_backup_page(request, true, listed).await? {
            Some(page) => Ok(page),
            // A page was compacted away between the LIST and its GET: once more.
            None => Ok(self
                .try_backup_page(request, false, None)
                .await?
                .expect("a last attempt reads what is gone from the summaries")),
        }
    }

    /// [`Repository::whole_page`]; `None` when a listed object is gone and `may_retry`.
    async fn try_backup_page(
        &self,
        request: &PageRequest,
        may_retry: bool,
        listed: Option<Vec<Listed>>,
    ) -> RepoResult<Option<BackupPage>> {
        let limit = request.limit.max(1);
        let keys = match listed {
            Some(objects) => Keys {
                objects,
                truth: self.summary_times(None).await?,
            },
            None => self.listing_keys().await?,
        };
        let mut page = BackupPage {
            total: keys.truth.len(),
            ..BackupPage::default()
        };
        let entry_names: HashSet<&str> = keys
            .objects
            .iter()
            .filter_map(|o| match &o.key {
                ListingKey::Entry(p) => Some(p.name()),
                _ => None,
            })
            .collect();
        let pages = || {
            keys.objects
                .iter()
                .filter(|o| matches!(o.key, ListingKey::Page { .. }))
        };
        let covered =
            |name: &str| entry_names.contains(name) || pages().any(|o| window_holds(&o.key, name));
        let older = |p: &Position| request.before.as_ref().is_none_or(|b| p < b);

        // Summaries no listing object can hold: read by themselves, wherever they sit.
        let mut found: BTreeMap<Position, BackupSummary> = BTreeMap::new();
        let mut reread: HashSet<String> = HashSet::new();
        let lacking: Vec<String> = keys.truth.keys().filter(|n| !covered(n)).cloned().collect();
        reread.extend(lacking.iter().cloned());
        self.read_fallback(lacking, &mut found, &mut page).await?;

        // Then the objects that can hold the page, newest first, until the page is full
        // and nothing unread can hold a newer backup than its last.
        let mut candidates: Vec<&Listed> = keys
            .objects
            .iter()
            .filter(|o| older(o.key.oldest()))
            .collect();
        candidates.sort_by(|a, b| b.key.newest().cmp(a.key.newest()));
        let mut seen: HashSet<String> = HashSet::new();
        let mut unread = candidates.len();
        let mut read_pages: Vec<&ListingKey> = Vec::new();
        for object in candidates {
            let key = &object.key;
            let kept: Vec<&Position> = found.keys().rev().filter(|p| older(p)).collect();
            if kept.len() >= limit && kept.get(limit - 1).is_some_and(|p| *p > key.newest()) {
                // A summary a read page's time range holds but no read object names was
                // written after that page (a backup named in the page's newest second, or
                // up to the slack before its oldest, that began after the compaction and
                // stopped before its entry): read by itself, unless a page left unread
                // may hold it.
                let orphans = orphans(&keys, &read_pages, &entry_names, &seen, &reread);
                reread.extend(orphans.iter().cloned());
                self.read_fallback(orphans, &mut found, &mut page).await?;
                break;
            }
            unread -= 1;
            let is_page = matches!(key, ListingKey::Page { .. });
            let mut again = Vec::new();
            match self.read_listing_object(key).await {
                Ok(contents) => {
                    for entry in &contents.entries {
                        let name = entry.name.as_str();
                        // A loose entry is newer than any page holding the same backup.
                        if !keys.truth.contains_key(name) || (is_page && entry_names.contains(name))
                        {
                            continue;
                        }
                        if keys.stale(name, object.modified) {
                            again.push(entry.name.clone());
                        } else if seen.insert(entry.name.clone()) {
                            found.insert(Position::of(entry), entry.clone());
                        }
                    }
                    again.extend(
                        contents
                            .damaged
                            .iter()
                            .filter(|n| {
                                keys.truth.contains_key(*n) && !entry_names.contains(n.as_str())
                            })
                            .cloned(),
                    );
                }
                // Compacted away since the LIST: its backups are in a newer page.
                Err(RepoError::Store(e)) if e.is_not_found() && may_retry => return Ok(None),
                Err(err)
                    if err.is_damage()
                        || matches!(&err, RepoError::Store(e) if e.is_not_found()) =>
                {
                    if err.is_damage() {
                        page.damaged_listing
                            .push(DamagedObject::new(&key.key(), &err));
                    }
                    again.extend(
                        keys.truth
                            .keys()
                            .filter(|n| !entry_names.contains(n.as_str()) && window_holds(key, n))
                            .cloned(),
                    );
                }
                Err(err) => return Err(err),
            }
            again.retain(|n| !seen.contains(n) && reread.insert(n.clone()));
            self.read_fallback(again, &mut found, &mut page).await?;
            if is_page {
                read_pages.push(key);
            }
        }
        if unread == 0 {
            let orphans = orphans(&keys, &read_pages, &entry_names, &seen, &reread);
            self.read_fallback(orphans, &mut found, &mut page).await?;
        }
        let mut newest_first = found.into_iter().rev().filter(|(p, _)| older(p));
        let mut last = None;
        for (position, summary) in newest_first.by_ref().take(limit) {
            last = Some(position);
            page.backups.push(summary);
        }
        let more = newest_first.next().is_some() || unread > 0;
        page.next = if more { last } else { None };
        Ok(Some(page))
    }
}

#[cfg(test)]
mod tests {
    use super::super::page::{stale, unix_second};
    use super::*;
    use crate::listing::tests::summary;
    use crate::summary::BackupStatus;

    fn position(name: &str, started: &str) -> Position {
        Position::of(&summary(name, started, BackupStatus::Complete))
    }

    #[test]
    fn seconds_parse_and_a_page_holds_names_up_to_six_hours_before_its_oldest_start() {
        assert_eq!(unix_second("19700101T000001"), Some(1));
        assert_eq!(unix_second("20260101T000000"), Some(1_767_225_600));
        assert_eq!(unix_second("00000000T000000"), None);
        assert_eq!(unix_second("2026"), None);
        let page = ListingKey::new_page(
            position("20261125T100000Z-aaaaaaaa", "2026-11-25T10:00:05.000Z"),
            position("20261125T200000Z-bbbbbbbb", "2026-11-25T20:00:05.000Z"),
            2,
        );
        for (name, held) in [
            ("20261125T100000Z-cccccccc", true),
            ("20261125T040005Z-cccccccc", true),
            ("20261125T040004Z-cccccccc", false),
            ("20261125T200005Z-cccccccc", true),
            ("20261125T200006Z-cccccccc", false),
            ("nightly", false),
        ] {
            assert_eq!(window_holds(&page, name), held, "{name}");
        }
    }

    #[test]
    fn a_summary_written_after_its_listing_object_is_stale() {
        let at = |ms: u64| Some(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms));
        let truth: Truth = [("a".to_string(), at(10)), ("b".to_string(), None)].into();
        assert!(stale(&truth, "a", at(9)));
        assert!(!stale(&truth, "a", at(10)));
        // Unknown times, or no summary: not stale (a missing summary drops the entry).
        assert!(!stale(&truth, "a", None));
        assert!(!stale(&truth, "b", at(1)));
        assert!(!stale(&truth, "c", at(1)));
    }
}
