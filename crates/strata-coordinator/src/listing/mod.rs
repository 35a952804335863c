//! Pages of backups across storages, and finding one backup, each reading what it needs
//! from the repositories' backup listings (see `strata_repo::listing`), not every
//! summary.
//!
//! A page is newest first. Its cursor names the last backup returned (its listing
//! position and its storage), so the next page starts right after it in every storage at
//! once: `(position descending, storage ascending)` orders backups of all storages, a
//! copy of one backup in two storages included.

use crate::verified::VerifyRecord;
use crate::{CoordinatorError, CoordinatorResult};
use cache::ListingCache;
use std::collections::{HashMap, HashSet};
use strata_repo::listing::read::{BackupPage, PageRequest};
use strata_repo::listing::Position;
use strata_repo::summary::BackupSummary;
use strata_repo::{RepoError, Repository};

pub mod cache;

/// A backup and the storage that holds it.
#[derive(Debug, Clone)]
pub struct Located {
    /// The name of the storage (in `[storages.*]`) that holds the backup.
    pub storage: String,
    /// The backup's summary.
    pub summary: BackupSummary,
}

/// A summary that does not decode and the storage that holds it.
#[derive(Debug, Clone)]
pub struct LocatedDamage {
    /// The name of the storage (in `[storages.*]`) that holds the summary.
    pub storage: String,
    /// The object that does not decode, and why.
    pub object: strata_repo::DamagedObject,
}

/// A storage's name and its repository.
pub type Source<'a> = (&'a str, &'a Repository);

/// Backups per page when the caller does not say.
pub const DEFAULT_PAGE: usize = 50;
/// Most backups per page an API caller may ask for.
pub const MAX_PAGE: usize = 1000;

/// Which page: at most `limit` backups (`usize::MAX`: all), after `cursor` (the `next`
/// of the previous page).
#[derive(Debug, Clone)]
pub struct PageQuery {
    /// Most backups on the page (`usize::MAX`: all).
    pub limit: usize,
    /// The `next` of the previous page; none for the first page.
    pub cursor: Option<String>,
}

impl PageQuery {
    /// Every backup, in one answer.
    pub fn all() -> PageQuery {
        PageQuery {
            limit: usize::MAX,
            cursor: None,
        }
    }
}

/// One page of backups and what is known of each.
#[derive(Debug, Default)]
pub struct BackupsPage {
    /// Newest first.
    pub backups: Vec<Located>,
    /// The last verification of a backup of the page, by (storage, backup).
    pub verified: HashMap<(String, String), VerifyRecord>,
    /// The pinned backups of the page, by (storage, backup).
    pub pinned: HashSet<(String, String)>,
    /// The cursor of the next page, when there may be one.
    pub next: Option<String>,
    /// Backups in all storages (their summaries, damaged ones included).
    pub total: usize,
    /// Summaries read for this page that do not decode.
    pub damaged: Vec<LocatedDamage>,
    /// What the page had to read besides the listing (one line per storage), when it
    /// did: the answer says so rather than being slow in silence.
    pub notes: Vec<String>,
}

/// A parsed cursor: after the backup at `position` in `storage`.
pub(crate) struct Cursor {
    position: Position,
    storage: String,
}

/// The separator of a cursor's parts: not in positions or storage names' first part.
const SEP: char = '~';

fn cursor_text(position: &Position, storage: &str) -> String {
    format!("{position}{SEP}{storage}")
}

pub(crate) fn parse_cursor(text: &str) -> CoordinatorResult<Cursor> {
    let bad = || {
        CoordinatorError::Invalid(format!(
            "cursor {text:?} is not one a page gave (use the `next` of the previous page)"
        ))
    };
    let (position, storage) = text.split_once(SEP).ok_or_else(bad)?;
    Ok(Cursor {
        position: Position::parse(position).ok_or_else(bad)?,
        storage: storage.to_string(),
    })
}

/// One page of the backups of `sources` (see the module's documentation), with the pins
/// and verification records of its backups.
pub async fn page(sources: &[Source<'_>], query: &PageQuery) -> CoordinatorResult<BackupsPage> {
    let mut out = backups_only(sources, query).await?;
    // Pins and verification records of the page's backups only.
    for (storage, repo) in sources {
        let names: Vec<&str> = out
            .backups
            .iter()
            .filter(|b| b.storage == *storage)
            .map(|b| b.summary.name.as_str())
            .collect();
        for name in crate::pins::pinned_among(repo, &names)
            .await
            .map_err(RepoError::from)?
        {
            out.pinned.insert((storage.to_string(), name));
        }
        for (name, record) in crate::verified::latest_among(repo, &names)
            .await
            .map_err(RepoError::from)?
        {
            out.verified.insert((storage.to_string(), name), record);
        }
    }
    Ok(out)
}

/// [`page`] without pins and verification records (for `latest`).
async fn backups_only(sources: &[Source<'_>], query: &PageQuery) -> CoordinatorResult<BackupsPage> {
    let cursor = query.cursor.as_deref().map(parse_cursor).transpose()?;
    let limit = query.limit.max(1);
    let mut reads = Vec::new();
    for (storage, repo) in sources {
        let before = before_in(cursor.as_ref(), storage);
        reads.push((
            *storage,
            repo.backup_page(&PageRequest { limit, before }).await?,
        ));
    }
    Ok(merge(reads, limit))
}

/// Where the page after `cursor` starts in `storage`: older positions, and the cursor's
/// own position in storages that sort after the cursor's.
pub(crate) fn before_in(cursor: Option<&Cursor>, storage: &str) -> Option<Position> {
    cursor.map(|c| match storage.cmp(c.storage.as_str()) {
        std::cmp::Ordering::Greater => c.position.successor(),
        _ => c.position.clone(),
    })
}

/// One page of at most `limit` backups from the pages each storage gave.
pub(crate) fn merge(reads: Vec<(&str, BackupPage)>, limit: usize) -> BackupsPage {
    let mut out = BackupsPage::default();
    let mut merged: Vec<(Position, &str, BackupSummary)> = Vec::new();
    let mut more = false;
    for (storage, read) in reads {
        out.total += read.total;
        more |= read.next.is_some();
        if let Some(note) = read.note() {
            out.notes.push(format!("storage {storage}: {note}"));
        }
        out.damaged
            .extend(read.damaged.into_iter().map(|object| LocatedDamage {
                storage: storage.to_string(),
                object,
            }));
        for summary in read.backups {
            merged.push((Position::of(&summary), storage, summary));
        }
    }
    merged.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    more |= merged.len() > limit;
    merged.truncate(limit);
    out.next = match merged.last() {
        Some((position, storage, _)) if more => Some(cursor_text(position, storage)),
        _ => None,
    };
    for (_, storage, summary) in merged {
        out.backups.push(Located {
            storage: storage.to_string(),
            summary,
        });
    }
    out
}

/// The newest complete backup of `sources`: the listing's pages, newest first, until
/// one says complete and its summary reads (a damaged newer one is passed over, with a
/// warning). `None` when there is none.
pub async fn latest(sources: &[Source<'_>]) -> CoordinatorResult<Option<(usize, BackupSummary)>> {
    latest_from(sources, None).await
}

/// [`latest`], its pages read from `cache` when given (with the caller's count of its
/// own changes, see [`ListingCache::page`]).
pub(crate) async fn latest_from(
    sources: &[Source<'_>],
    cache: Option<(&ListingCache, u64)>,
) -> CoordinatorResult<Option<(usize, BackupSummary)>> {
    let mut query = PageQuery {
        limit: 20,
        cursor: None,
    };
    let mut passed: Vec<(String, String)> = Vec::new();
    loop {
        let page = match cache {
            Some((cache, local)) => cache.page(sources, &query, local).await?,
            None => backups_only(sources, &query).await?,
        };
        passed.extend(page.damaged.iter().map(|d| {
            let name = d.object.backup().unwrap_or_default().to_string();
            (name, d.object.reason.clone())
        }));
        for located in page.backups.iter().filter(|b| b.summary.is_complete()) {
            let at = sources
                .iter()
                .position(|(s, _)| *s == located.storage)
                .expect("a page's backups come from its sources");
            match sources[at].1.load_summary(&located.summary.name).await {
                Ok(summary) => {
                    for (newer, why) in passed.iter().filter(|(n, _)| *n > summary.name) {
                        eprintln!(
                            "strata: warning: latest is {}; the newer backup {newer} is damaged ({why}) and was passed over",
                            summary.name
                        );
                    }
                    return Ok(Some((at, summary)));
                }
                Err(err) if err.is_damage() => {
                    passed.push((located.summary.name.clone(), err.to_string()))
                }
                Err(RepoError::NoSuchBackup(_)) => {}
                Err(err) => return Err(err.into()),
            }
        }
        match page.next {
            Some(next) => query.cursor = Some(next),
            None => return Ok(None),
        }
    }
}

/// The backup `wanted` (a name or a unique prefix, not `latest`) in `sources`: one
/// keys-only LIST per storage, then the one summary.
pub async fn by_name(
    sources: &[Source<'_>],
    wanted: &str,
) -> CoordinatorResult<(usize, BackupSummary)> {
    let mut names: Vec<(usize, String)> = Vec::new();
    for (at, (_, repo)) in sources.iter().enumerate() {
        for name in repo.backup_names().await? {
            if name.starts_with(wanted) {
                names.push((at, name));
            }
        }
    }
    let chosen = match names.iter().find(|(_, n)| n == wanted) {
        Some(exact) => exact.clone(),
        None => {
            let distinct: HashSet<&str> = names.iter().map(|(_, n)| n.as_str()).collect();
            match distinct.len() {
                1 => names[0].clone(),
                0 => {
                    return Err(CoordinatorError::NoBackup(format!(
                        "no backup named {wanted:?} (see `strata list`)"
                    )))
                }
                _ => {
                    return Err(CoordinatorError::NoBackup(format!(
                        "{wanted:?} matches several backups; give more of the name"
                    )))
                }
            }
        }
    };
    let (at, name) = chosen;
    match sources[at].1.load_summary(&name).await {
        Ok(summary) => Ok((at, summary)),
        Err(err) if err.is_damage() => Err(CoordinatorError::Damaged(format!(
            "backup {name} is damaged: {err}: run `strata repair backups` to salvage or drop it"
        ))),
        Err(err) => Err(err.into()),
    }
}

/// The storages of `sources` that hold a backup named `name` (a keys-only LIST each).
pub async fn holders(sources: &[Source<'_>], name: &str) -> CoordinatorResult<Vec<String>> {
    let mut out = Vec::new();
    for (storage, repo) in sources {
        if repo.backup_names().await?.iter().any(|n| n == name) {
            out.push(storage.to_string());
        }
    }
    Ok(out)
}

/// Compacts the listing of `repo` (see `Repository::compact_listing`) as a step of an
/// action that holds the cluster lock. A failure costs only speed (readers reconcile with
/// the summaries), so it is a warning; a repository still to be migrated is left alone.
pub async fn compact(repo: &Repository, thorough: bool) {
    match repo.compact_listing(thorough).await {
        Ok(_) | Err(RepoError::NeedsMigration(_)) => {}
        Err(e) => eprintln!(
            "strata: warning: the backup listing was not compacted ({}); listings stay right, reading more",
            crate::error_chain(&e)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_parse_back_and_bad_ones_are_refused() {
        let position = Position::parse("20261125T093816100Z-20261125T093816Z-aaaaaaaa").unwrap();
        let text = cursor_text(&position, "offsite");
        let parsed = parse_cursor(&text).unwrap();
        assert_eq!(
            (parsed.position, parsed.storage.as_str()),
            (position, "offsite")
        );
        for bad in ["", "x", "20261125T093816100Z-a", "nope~local"] {
            assert!(
                matches!(parse_cursor(bad), Err(CoordinatorError::Invalid(_))),
                "{bad}"
            );
        }
    }

    /// A page of 50 costs the same whatever the number of backups: the listing's LISTs
    /// and one or two pages, then the keys of pins and records and the GETs of the page's
    /// own pins and records, never a GET per backup of the repository.
    #[tokio::test]
    async fn a_page_with_its_pins_and_records_costs_a_bounded_number_of_requests() {
        use std::sync::Arc;
        use strata_repo::summary::{BackupStatus, NodeSummary};
        use strata_store::{CountingStore, DynStore, LocalStore};
        let dir = tempfile::tempdir().unwrap();
        let counting = CountingStore::new(Arc::new(LocalStore::new(dir.path())));
        let store: DynStore = Arc::new(counting.clone());
        let options = strata_repo::InitOptions {
            encryption: strata_repo::format::Encryption::None,
            ..Default::default()
        };
        let repo = Repository::init(store, None, options).await.unwrap();
        let mut costs = Vec::new();
        let mut made = 0;
        for count in [60, 300] {
            for i in made..count {
                let (h, m) = (i / 60, i % 60);
                let summary = BackupSummary {
                    name: format!("20261125T{h:02}{m:02}00Z-{i:08x}"),
                    started: format!("2026-11-25T{h:02}:{m:02}:00.000Z"),
                    host_started: None,
                    duration_ms: 1,
                    status: BackupStatus::Complete,
                    strata_version: "0.1.0".into(),
                    nodes: vec![NodeSummary::default()],
                    requests: None,
                    components: Vec::new(),
                    still_paused: Vec::new(),
                };
                repo.save_summary(&summary).await.unwrap();
                // Every backup pinned and verified: the page reads its own only.
                crate::pins::set_pinned(&repo, &summary.name, true)
                    .await
                    .unwrap();
                crate::verified::record(&repo, &summary.name, true, "structure")
                    .await
                    .unwrap();
                repo.compact_listing(false).await.unwrap();
            }
            made = count;
            let (before, keys) = (counting.counts(), counting.keys_listed());
            let query = PageQuery {
                limit: 50,
                cursor: None,
            };
            let page = page(&[("main", &repo)], &query).await.unwrap();
            let cost = counting.counts().since(&before);
            let keys = counting.keys_listed() - keys;
            assert_eq!(page.backups.len(), 50);
            assert_eq!((page.pinned.len(), page.verified.len()), (50, 50));
            assert_eq!(page.total, count);
            assert!(page.notes.is_empty(), "{:?}", page.notes);
            // Listing and summaries, pins, records: four LISTs. The pins and records
            // listed are the page's (from its smallest name on), not every backup's; the
            // summaries are those of the 6 hours before the page (all of them here: one
            // backup a minute).
            assert_eq!(cost.list, 4, "{cost:?}");
            assert!(
                keys <= count as u64 + 2 * 50 + 20,
                "{count} backups: {keys} keys listed"
            );
            // At most 16 loose entries and two pages, then a pin and a record per backup
            // of the page.
            assert!(cost.get <= 16 + 2 + 2 * 50, "{count} backups: {cost:?}");
            costs.push(cost.get);
        }
        assert!(costs[0].abs_diff(costs[1]) <= 16, "{costs:?}");
    }

    #[test]
    fn the_pins_and_records_of_a_page_are_listed_from_its_smallest_name() {
        let page = [
            "20261125T100000Z-bb",
            "20261125T090000Z-aa",
            "20261126T000000Z-cc",
        ];
        let after = crate::names::before_all("pins/", &page).unwrap();
        assert_eq!(after, "pins/20261125T090000Z-a");
        for name in page {
            assert!(format!("pins/{name}") > after);
            assert!(
                format!("verified/{name}/1-ok-structure") > format!("verified/{}", &after[5..])
            );
        }
        assert!("pins/20261125T085959Z-zz" < after.as_str());
        assert_eq!(crate::names::before_all("pins/", &["x"]).unwrap(), "pins/");
        assert_eq!(crate::names::before_all("pins/", &[]), None);
    }
}
