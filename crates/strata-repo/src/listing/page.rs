//! What a read of one page of the listing is made of, shared by the read against every
//! summary ([`super::read`]) and the bounded one ([`super::bounded`]): the request and the
//! page, the listed keys, the summaries as the truth, and the 6-hour slack of names.

use super::{name_second, ListingKey, Position};
use crate::summary::BackupSummary;
use crate::DamagedObject;
use std::collections::BTreeMap;
use std::time::SystemTime;

/// How much earlier than its start time a backup's name may say it began (the name is
/// taken when the operation is created, the start time when the backup begins): a
/// summary whose name falls inside a page's time range widened by this much is taken to
/// be in that page, and a page whose oldest backup started in second `Z` is reconciled
/// with the summaries named after `Z` minus this much.
pub(crate) const NAME_SLACK_SECS: u64 = 6 * 3600;

/// Which page of backups to read.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    /// At most this many backups (`usize::MAX`: all).
    pub limit: usize,
    /// Only backups older than this position (the `next` of the previous page).
    pub before: Option<Position>,
}

/// One page of backups.
#[derive(Debug, Clone, Default)]
pub struct BackupPage {
    /// Newest first.
    pub backups: Vec<BackupSummary>,
    /// Where the next (older) page starts, when there may be one.
    pub next: Option<Position>,
    /// Summaries in the repository (damaged ones included): the backups in all. Exact
    /// when the page listed every summary; added up from the listing's page keys
    /// otherwise, and then off, until the compaction that follows, by backups deleted
    /// from pages the read did not fetch and by summaries without entry older than the
    /// page (see [`super::bounded`]).
    pub total: usize,
    /// Summaries read by themselves because the listing lacks them, by backup name.
    pub from_summaries: Vec<String>,
    /// Summaries read by themselves that do not decode.
    pub damaged: Vec<DamagedObject>,
    /// Listing objects that do not decode (their backups were read from the summaries).
    pub damaged_listing: Vec<DamagedObject>,
}

impl BackupPage {
    /// One line saying what the page had to read besides the listing, when it did.
    pub fn note(&self) -> Option<String> {
        let mut parts = Vec::new();
        if !self.damaged_listing.is_empty() {
            parts.push(format!(
                "{} listing object(s) do not decode ({})",
                self.damaged_listing.len(),
                self.damaged_listing[0].reason
            ));
        }
        if !self.from_summaries.is_empty() {
            parts.push(format!(
                "{} backup(s) missing from the listing were read from their summaries",
                self.from_summaries.len()
            ));
        }
        (!parts.is_empty()).then(|| {
            format!(
                "{}; the next backup, delete, cleanup or repair rebuilds it",
                parts.join("; ")
            )
        })
    }
}

/// A listing object as the LIST shows it.
pub(crate) struct Listed {
    pub key: ListingKey,
    /// When it was written, if the store says.
    pub modified: Option<SystemTime>,
}

/// Backups with a summary, by name, with when their summary was written.
pub(crate) type Truth = BTreeMap<String, Option<SystemTime>>;

/// The keys of `listing/` and `summaries/`, listed together.
pub(crate) struct Keys {
    pub objects: Vec<Listed>,
    /// Every backup with a summary.
    pub truth: Truth,
}

impl Keys {
    /// Whether the summary of `name` was written after the listing object written at
    /// `modified` (damaged, replaced, or repaired since): then the summary is read.
    pub fn stale(&self, name: &str, modified: Option<SystemTime>) -> bool {
        stale(&self.truth, name, modified)
    }
}

/// [`Keys::stale`] against `truth`.
pub(crate) fn stale(truth: &Truth, name: &str, modified: Option<SystemTime>) -> bool {
    matches!(
        (truth.get(name), modified),
        (Some(Some(summary)), Some(object)) if *summary > object
    )
}

/// Seconds since the epoch of a `YYYYMMDDTHHMMSS` second.
pub(crate) fn unix_second(second: &str) -> Option<u64> {
    let text = format!(
        "{}-{}-{}T{}:{}:{}Z",
        second.get(0..4)?,
        second.get(4..6)?,
        second.get(6..8)?,
        second.get(9..11)?,
        second.get(11..13)?,
        second.get(13..15)?
    );
    let time = humantime::parse_rfc3339(&text).ok()?;
    Some(time.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs())
}

/// Whether the page `key` is taken to hold the backup `name`, by the time in the name.
pub(crate) fn window_holds(key: &ListingKey, name: &str) -> bool {
    let (Some(at), Some(from), Some(to)) = (
        name_second(name).and_then(unix_second),
        unix_second(key.oldest().second()),
        unix_second(key.newest().second()),
    ) else {
        return false;
    };
    from.saturating_sub(NAME_SLACK_SECS) <= at && at <= to
}
