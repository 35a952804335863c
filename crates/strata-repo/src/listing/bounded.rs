//! Reading one page of the listing against the summaries whose names sort after a bound,
//! not all of them: what makes a page cost the same at 10 and at 100,000 backups.
//!
//! Backup names start with the second they were taken (`YYYYMMDDTHHMMSSZ-<hex>`, see
//! `strata_coordinator::names`), a little before the backup starts: a backup that starts
//! at or after second `Z` has a name that sorts after `Z` minus `NAME_SLACK_SECS` (6 h).
//! So a page whose `limit`-th backup starts in second `Z` is reconciled with a keys-only
//! LIST of the summaries after `Z - 6 h` (`Store::list_after`: S3 `start-after`, GCS
//! `startOffset`) and the listing objects that can hold a backup from `Z` on:
//!
//! 1. LIST `listing/`; fetch the objects that can hold the page, newest first, until
//!    their entries (as written, not yet reconciled) fill it: the `limit`-th is `L`, and
//!    `Z` is its second. Every object that may hold a backup of second `Z` or later is
//!    fetched too.
//! 2. LIST the summaries after `Z - 6 h`. From second `Z` on, everything is then known:
//!    the listing's entries (all of them fetched) and the summaries (all of them listed).
//!    Reconciled as the whole read does (see [`super::read`]): an entry without summary is
//!    dropped, one rewritten after its listing object is read again, a loose entry wins
//!    over a page. A listed summary that no fetched object and no loose entry names, and
//!    whose name is in no unfetched page's time range, is read by itself (this finds a
//!    summary missing from a fetched page, which the whole read takes to be in it).
//! 3. If fewer than `limit` backups remain from `Z` on (entries of deleted backups were
//!    dropped), the names that gave nothing are set aside and it starts again from 1 with
//!    an earlier `Z`, a few times at most.
//!
//! Wherever that bound cannot be shown to hold, the page is read as before, against the
//! LIST of every summary (`Fallback` says why): a listing page named in the older key
//! form (no count: the total could not be added up), a backup name in the listing or in
//! the listed range that does not start with its time, an entry from `Z` on whose name
//! sorts before the bound (a name more than 6 hours older than its backup), a listing
//! object that does not decode, a listing holding no more backups than the page, a page
//! that may be the last (only the whole LIST says no summary older than the listing lacks
//! an entry), and a request for every backup (`limit = usize::MAX`).
//!
//! The one case the bound cannot see: a summary **without a listing entry** whose name
//! does not start with its time, or starts more than 6 hours before the backup did, and
//! sorts before the bound. strata names every backup when it starts (a copy and a repair
//! keep the name and start time they found), so only a writer other than strata makes one.
//!
//! **The total** (`BackupPage::total`) is then added up rather than listed: the backups of
//! the reconciled range (exact), the other backups named by the fetched objects, and the
//! counts the keys of the objects not fetched carry (a page key says how many backups it
//! names). It is exact but for backups the reconciled range does not see: a backup deleted
//! whose entry is still in a page not fetched (the compaction that follows every `delete`
//! and cleanup rewrites the page at once, under the same lock; when that compaction failed,
//! until the next one: the next delete, cleanup or repair, or the next backup once 16
//! entries are loose), a summary without entry older than the range (a writer stopped
//! between the two; folded in by the same compactions), a backup held twice while a
//! compaction runs (between its writing the new pages and deleting the old), and objects
//! added or removed by hand.

use super::page::{
    stale, unix_second, window_holds, BackupPage, Listed, PageRequest, Truth, NAME_SLACK_SECS,
};
use super::{name_second, Contents, ListingKey, Position};
use crate::summary::BackupSummary;
use crate::{RepoError, RepoResult, Repository};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// Most times a page starts again from an earlier second (step 3) before it lists every
/// summary instead.
const ROUNDS: usize = 4;

/// Why a page was read against the LIST of every summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fallback {
    /// Every backup was asked for.
    All,
    /// A page key of the older form, without its count.
    OldKeyForm,
    /// A backup name that does not start with its time.
    UntimedName,
    /// An entry whose name sorts before the bound its start time gives.
    NameBeforeBound,
    /// A listing object that does not decode (its backups are read from the summaries).
    DamagedObject,
    /// The listing holds no more backups than the page before its cursor.
    ShortListing,
    /// Nothing older than the page is known: only the whole LIST says nothing older lacks
    /// an entry.
    MaybeLast,
    /// [`ROUNDS`] rounds did not fill the page.
    Rounds,
}

/// What a bounded read came to.
#[cfg_attr(not(test), allow(dead_code))] // why a page fell back: asked by the tests
pub(crate) enum Bounded {
    Page(BackupPage),
    /// A listed object is gone (compacted away since the LIST).
    Gone,
    /// Why not, and the listing's objects when they were listed.
    Fallback(Fallback, Option<Vec<Listed>>),
}

/// A step that stops the read.
enum Stop {
    Gone,
    Fallback(Fallback),
}

impl From<Fallback> for Stop {
    fn from(why: Fallback) -> Stop {
        Stop::Fallback(why)
    }
}

/// `YYYYMMDDTHHMMSS` of `second` moved back by `secs`, if it is a time.
fn earlier(second: &str, secs: u64) -> Option<String> {
    let unix = unix_second(second)?.checked_sub(secs)?;
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix);
    let text: String = humantime::format_rfc3339_seconds(time)
        .to_string()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    Some(text[..15].to_string())
}

/// The listing objects of a read and what was fetched of them.
struct Objects<'a> {
    all: &'a [Listed],
    /// Indexes into `all` of the objects that can hold the page (older than its cursor),
    /// newest first.
    order: Vec<usize>,
    /// `order[..fetched]` are fetched, in `contents`.
    fetched: usize,
    contents: Vec<Option<Arc<Contents>>>,
    /// Names with a loose entry: those win over a page holding the same backup.
    loose: HashSet<&'a str>,
}

impl Objects<'_> {
    fn key(&self, at: usize) -> &ListingKey {
        &self.all[self.order[at]].key
    }
}

impl Repository {
    /// One page read against the summaries after a bound (see the module's
    /// documentation), or why it cannot be.
    pub(crate) async fn bounded_page(&self, request: &PageRequest) -> RepoResult<Bounded> {
        if request.limit == usize::MAX {
            return Ok(Bounded::Fallback(Fallback::All, None));
        }
        let all = self.listing_objects().await?;
        Ok(match self.bounded_read(request, &all).await? {
            Ok(page) => Bounded::Page(page),
            Err(Stop::Gone) => Bounded::Gone,
            Err(Stop::Fallback(why)) => Bounded::Fallback(why, Some(all)),
        })
    }

    async fn bounded_read(
        &self,
        request: &PageRequest,
        all: &[Listed],
    ) -> RepoResult<Result<BackupPage, Stop>> {
        let limit = request.limit.max(1);
        if all.iter().any(|o| o.key.count().is_none()) {
            return Ok(Err(Fallback::OldKeyForm.into()));
        }
        let timed = |p: &Position| name_second(p.name()).is_some();
        if all
            .iter()
            .any(|o| !timed(o.key.oldest()) || !timed(o.key.newest()))
        {
            return Ok(Err(Fallback::UntimedName.into()));
        }
        let older = |p: &Position| request.before.as_ref().is_none_or(|b| p < b);
        let mut order: Vec<usize> = (0..all.len())
            .filter(|&i| older(all[i].key.oldest()))
            .collect();
        order.sort_by(|&a, &b| all[b].key.newest().cmp(all[a].key.newest()));
        let mut objects = Objects {
            all,
            order,
            fetched: 0,
            contents: vec![None; all.len()],
            loose: all
                .iter()
                .filter_map(|o| match &o.key {
                    ListingKey::Entry(p) => Some(p.name()),
                    _ => None,
                })
                .collect(),
        };
        // Not more backups than the page: all of them are read against every summary
        // (nothing fetched twice).
        let candidates: usize = objects
            .order
            .iter()
            .map(|&i| all[i].key.count().unwrap_or(1))
            .sum();
        if candidates <= limit {
            return Ok(Err(Fallback::ShortListing.into()));
        }
        // The objects whose counts fill the page, fetched together.
        let (mut want, mut counted) = (0, 0);
        while want < objects.order.len() && counted < limit {
            counted += objects.key(want).count().unwrap_or(1);
            want += 1;
        }
        if let Err(stop) = self.fetch(&mut objects, want).await? {
            return Ok(Err(stop));
        }

        let mut set_aside: HashSet<String> = HashSet::new();
        let mut listed: Option<(String, Truth)> = None;
        for _ in 0..ROUNDS {
            // 1. The `limit`-th entry as written (newest first), and the objects that
            // can hold a backup of its second or later.
            let last = loop {
                let raw = written(&objects, &set_aside, &older);
                let next_newest = objects
                    .order
                    .get(objects.fetched)
                    .map(|&i| all[i].key.newest());
                if raw.len() >= limit && next_newest.is_none_or(|n| raw[limit - 1] > *n) {
                    break raw[limit - 1].clone();
                }
                if objects.fetched == objects.order.len() {
                    return Ok(Err(Fallback::ShortListing.into()));
                }
                let next = objects.fetched + 1;
                if let Err(stop) = self.fetch(&mut objects, next).await? {
                    return Ok(Err(stop));
                }
            };
            let zone = last.second().to_string();
            let reaching = objects
                .order
                .iter()
                .position(|&i| all[i].key.newest().second() < zone.as_str())
                .unwrap_or(objects.order.len());
            if let Err(stop) = self.fetch(&mut objects, reaching).await? {
                return Ok(Err(stop));
            }
            // 2. The summaries whose names can be those of a backup from `zone` on.
            let Some(after) = earlier(&zone, NAME_SLACK_SECS) else {
                return Ok(Err(Fallback::UntimedName.into()));
            };
            if listed
                .as_ref()
                .is_none_or(|(listed_after, _)| after < *listed_after)
            {
                listed = Some((after.clone(), self.summary_times(Some(&after)).await?));
            }
            let (after, truth) = listed.as_ref().expect("listed above");
            match self
                .reconcile_zone(request, limit, &objects, &zone, after, truth)
                .await?
            {
                Zone::Page(page) => return Ok(Ok(page)),
                Zone::Short(gave_nothing) => set_aside.extend(gave_nothing),
                Zone::Stop(why) => return Ok(Err(why.into())),
            }
        }
        Ok(Err(Fallback::Rounds.into()))
    }

    /// Fetches `order[fetched..upto]` together.
    async fn fetch(&self, objects: &mut Objects<'_>, upto: usize) -> RepoResult<Result<(), Stop>> {
        let upto = upto.min(objects.order.len());
        if upto <= objects.fetched {
            return Ok(Ok(()));
        }
        let range = objects.fetched..upto;
        let reads = range.clone().map(|at| {
            let key = objects.key(at).clone();
            async move { self.read_listing_object(&key).await }
        });
        let results = futures::future::join_all(reads).await;
        for (at, result) in range.zip(results) {
            match result {
                Ok(contents) => objects.contents[objects.order[at]] = Some(contents),
                Err(RepoError::Store(e)) if e.is_not_found() => return Ok(Err(Stop::Gone)),
                Err(err) if err.is_damage() => return Ok(Err(Fallback::DamagedObject.into())),
                Err(err) => return Err(err),
            }
        }
        objects.fetched = upto;
        Ok(Ok(()))
    }

    /// Reconciles the backups from second `zone` on with `truth`, the summaries whose
    /// names sort after `after`.
    async fn reconcile_zone(
        &self,
        request: &PageRequest,
        limit: usize,
        objects: &Objects<'_>,
        zone: &str,
        after: &str,
        truth: &Truth,
    ) -> RepoResult<Zone> {
        let older = |p: &Position| request.before.as_ref().is_none_or(|b| p < b);
        let in_zone = |p: &Position| p.second() >= zone;
        let listed = |name: &str| name > after;
        if truth.keys().any(|n| name_second(n).is_none()) {
            return Ok(Zone::Stop(Fallback::UntimedName));
        }
        // What the listing holds: the names of the fetched objects (exactly), loose
        // entries (by their keys), and the time windows of the pages not fetched (all
        // older than the zone). A summary none of them holds is read by itself: one
        // missing from a fetched page is found too, which the whole read cannot tell.
        let fetched: HashSet<usize> = objects.order[..objects.fetched].iter().copied().collect();
        let mut held: HashSet<&str> = HashSet::new();
        for &i in &fetched {
            let contents = objects.contents[i].as_ref().expect("fetched");
            held.extend(contents.entries.iter().map(|e| e.name.as_str()));
            held.extend(contents.damaged.iter().map(String::as_str));
        }
        let unfetched_pages: Vec<&ListingKey> = (0..objects.all.len())
            .filter(|i| !fetched.contains(i))
            .map(|i| &objects.all[i].key)
            .filter(|k| matches!(k, ListingKey::Page { .. }))
            .collect();
        let covered = |name: &str| {
            objects.loose.contains(name)
                || held.contains(name)
                || unfetched_pages.iter().any(|k| window_holds(k, name))
        };
        let mut page = BackupPage::default();
        let mut found: BTreeMap<Position, BackupSummary> = BTreeMap::new();
        // Backups counted for the total: in the listed range (known to exist), and before
        // it (named by a fetched object: taken to exist).
        let mut counted: HashSet<&str> = HashSet::new();
        let mut unlisted: HashSet<&str> = HashSet::new();
        // Whether a backup older than the zone (and than the cursor) is known.
        let mut below = false;

        // Summaries no listing object can hold, read by themselves when they can be
        // older than the cursor (a name says at most when its backup started).
        let lacking: Vec<&String> = truth.keys().filter(|n| !covered(n)).collect();
        counted.extend(lacking.iter().map(|n| n.as_str()));
        let mut reread: HashSet<String> = HashSet::new();
        let before_second = request.before.as_ref().map(|b| b.second());
        let readable: Vec<String> = lacking
            .iter()
            .filter(|n| {
                let second = name_second(n).expect("checked above");
                before_second.is_none_or(|b| second <= b)
            })
            .map(|n| n.to_string())
            .collect();
        reread.extend(readable.iter().cloned());
        self.read_fallback(readable, &mut found, &mut page).await?;

        // The fetched objects, newest first.
        let mut seen: HashSet<String> = HashSet::new();
        let mut zone_names: HashSet<&str> = HashSet::new();
        for &i in &objects.order[..objects.fetched] {
            let object = &objects.all[i];
            let contents = objects.contents[i].as_ref().expect("fetched");
            let is_page = matches!(object.key, ListingKey::Page { .. });
            let mut again = Vec::new();
            for entry in &contents.entries {
                let name = entry.name.as_str();
                if name_second(name).is_none() {
                    return Ok(Zone::Stop(Fallback::UntimedName));
                }
                let position = Position::of(entry);
                let zoned = in_zone(&position);
                if zoned && older(&position) {
                    zone_names.insert(name);
                }
                // A loose entry is newer than any page holding the same backup.
                if is_page && objects.loose.contains(name) {
                    continue;
                }
                if !listed(name) {
                    if zoned {
                        return Ok(Zone::Stop(Fallback::NameBeforeBound));
                    }
                    unlisted.insert(name);
                    below |= older(&position);
                    continue;
                }
                if !truth.contains_key(name) {
                    continue; // deleted
                }
                counted.insert(name);
                if !zoned {
                    below |= older(&position);
                    continue;
                }
                if stale(truth, name, object.modified) {
                    again.push(entry.name.clone());
                } else if seen.insert(entry.name.clone()) {
                    found.insert(position, entry.clone());
                }
            }
            // Damaged summaries a page names are read again, to be reported (or found
            // repaired), unless their summary is known to be gone.
            for name in &contents.damaged {
                if objects.loose.contains(name.as_str()) {
                    continue;
                }
                if !listed(name) {
                    unlisted.insert(name);
                } else if truth.contains_key(name) {
                    counted.insert(name);
                } else {
                    continue;
                }
                again.push(name.clone());
            }
            again.retain(|n| !seen.contains(n) && reread.insert(n.clone()));
            self.read_fallback(again, &mut found, &mut page).await?;
        }

        // The page: the backups from the zone on, older than the cursor.
        below |= found.keys().any(|p| older(p) && !in_zone(p));
        let mut newest_first = found
            .into_iter()
            .rev()
            .filter(|(p, _)| older(p) && in_zone(p));
        let mut shown: Vec<(Position, BackupSummary)> = newest_first.by_ref().take(limit).collect();
        if shown.len() < limit {
            // Entries of the zone that gave no backup (deleted, damaged, moved): set
            // aside, the next round reaches further back.
            let gave: HashSet<&str> = shown.iter().map(|(_, s)| s.name.as_str()).collect();
            let gave_nothing: Vec<String> = zone_names
                .iter()
                .filter(|n| !gave.contains(**n))
                .map(|n| n.to_string())
                .collect();
            if gave_nothing.is_empty() {
                return Ok(Zone::Stop(Fallback::Rounds));
            }
            return Ok(Zone::Short(gave_nothing));
        }
        let unfetched = objects.fetched < objects.order.len();
        let more = newest_first.next().is_some() || below || unfetched;
        if !more {
            return Ok(Zone::Stop(Fallback::MaybeLast));
        }
        page.next = shown.last().map(|(p, _)| p.clone());
        page.backups = shown.drain(..).map(|(_, s)| s).collect();

        // The total: what the range and the fetched objects name, and the counts of the
        // objects not fetched.
        let not_fetched: usize = (0..objects.all.len())
            .filter(|i| !fetched.contains(i))
            .map(|i| objects.all[i].key.count().unwrap_or(1))
            .sum();
        page.total = counted.len() + unlisted.difference(&counted).count() + not_fetched;
        Ok(Zone::Page(page))
    }
}

/// What reconciling a zone came to.
enum Zone {
    Page(BackupPage),
    /// Fewer backups than the page from the zone on: these names gave none.
    Short(Vec<String>),
    Stop(Fallback),
}

/// The positions of the entries of the fetched objects (one per backup, a loose entry's
/// over a page's), older than the cursor and not `set_aside`, newest first.
fn written(
    objects: &Objects<'_>,
    set_aside: &HashSet<String>,
    older: &impl Fn(&Position) -> bool,
) -> Vec<Position> {
    let mut names: HashSet<&str> = HashSet::new();
    let mut out = Vec::new();
    for &i in &objects.order[..objects.fetched] {
        let contents = objects.contents[i].as_ref().expect("fetched");
        let is_page = matches!(objects.all[i].key, ListingKey::Page { .. });
        for entry in &contents.entries {
            let name = entry.name.as_str();
            if (is_page && objects.loose.contains(name)) || set_aside.contains(name) {
                continue;
            }
            let position = Position::of(entry);
            if older(&position) && names.insert(name) {
                out.push(position);
            }
        }
    }
    out.sort_by(|a, b| b.cmp(a));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_is_six_hours_before_a_second_across_days_and_years() {
        assert_eq!(
            earlier("20261125T093816", NAME_SLACK_SECS).as_deref(),
            Some("20261125T033816")
        );
        assert_eq!(
            earlier("20260101T030000", NAME_SLACK_SECS).as_deref(),
            Some("20251231T210000")
        );
        assert_eq!(
            earlier("20260301T000000", 1).as_deref(),
            Some("20260228T235959")
        );
        // No time, or before the epoch: no bound (the page lists every summary).
        assert_eq!(earlier("00000000T000000", NAME_SLACK_SECS), None);
        assert_eq!(earlier("19700101T000000", NAME_SLACK_SECS), None);
        // A generated name of the bound's second sorts after it; one a second older
        // does not.
        let bound = earlier("20261125T093816", NAME_SLACK_SECS).unwrap();
        assert!("20261125T033816Z-00000000" > bound.as_str());
        assert!("20261125T033815Z-ffffffff" < bound.as_str());
    }
}
