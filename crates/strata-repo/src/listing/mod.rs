//! The backup listing: what `list`, an API page, `show latest` and `/metrics` need of every
//! backup, in a few small objects instead of one summary per backup.
//!
//! Summaries stay the truth; the listing is a sealed, compact copy of them kept beside
//! them so a page of the newest backups costs one LIST and a few GETs, not a GET per
//! backup. Whoever saves a summary writes one **entry** object,
//! `listing/entries/<position>`; a writer holding the cluster lock **compacts** entries
//! into **page** objects of at most [`PAGE_MAX`] backups, `listing/pages/<oldest
//! position>/<newest position>/<id>-<count>` (see [`compact`]). Both are object kind
//! [`ObjectKind::Listing`](crate::format::ObjectKind::Listing) with the same payload, a
//! JSON list of trimmed summaries (an entry is a page of one); a page's key also says how
//! many backups it names. A reader ([`read`]) fetches only the objects covering the page
//! it was asked for and reconciles them with a keys-only LIST of the summaries that can
//! matter to it, those named after its oldest backup's start minus 6 hours ([`bounded`];
//! all of them where that bound cannot be shown to hold): an entry whose summary is gone
//! is dropped, a summary the listing lacks is read by itself and reported. The total is
//! added up from the page keys and the reconciled range. docs/format.md ("Backup
//! listing") has the bytes; docs/architecture.md says why it is built this way.

pub mod bounded;
pub mod compact;
pub mod generation;
mod page;
pub mod read;

use crate::layout;
use crate::summary::BackupSummary;
use serde::{Deserialize, Serialize};

/// Most backups in one page object: a page is about 100-300 bytes per backup once
/// compressed, so a page stays well under a MiB and one GET.
pub const PAGE_MAX: usize = 1000;

/// Loose entries tolerated before a writer folds them into pages: a reader of the newest
/// page fetches at most this many entry objects beside one or two pages.
pub const LOOSE_MAX: usize = 16;

/// Where a backup sits in the listing: its start time as 19 sortable characters
/// (`YYYYMMDDTHHMMSSmmmZ`, UTC), a `-`, and its name. Positions sort like backups do
/// (start time, then name), so keys sort in listing order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position(String);

/// Length of the time part of a [`Position`].
const TIME_LEN: usize = 19;

impl Position {
    /// The position of `summary`. A start time that does not parse sorts first (all
    /// zeros), as the summaries' own order would put it.
    pub fn of(summary: &BackupSummary) -> Position {
        Position(format!(
            "{}-{}",
            sortable_time(&summary.started),
            summary.name
        ))
    }

    /// Parses a position (from a key or a cursor): a well-formed time part, then a
    /// backup name.
    pub fn parse(text: &str) -> Option<Position> {
        let (time, name) = (text.get(..TIME_LEN)?, text.get(TIME_LEN + 1..)?);
        let well_formed = text.as_bytes().get(TIME_LEN) == Some(&b'-')
            && time.bytes().enumerate().all(|(i, b)| match i {
                8 => b == b'T',
                18 => b == b'Z',
                _ => b.is_ascii_digit(),
            });
        (well_formed && valid_name(name)).then(|| Position(text.to_string()))
    }

    /// The backup's name.
    pub fn name(&self) -> &str {
        &self.0[TIME_LEN + 1..]
    }

    /// The start time to the second, `YYYYMMDDTHHMMSS`: comparable with a backup
    /// name's own time prefix.
    fn second(&self) -> &str {
        &self.0[..15]
    }

    /// The position as text, `<time>-<name>`: the form of keys and cursors.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The smallest position after this one (no backup sits between them): reading
    /// before it includes this position.
    pub fn successor(&self) -> Position {
        Position(format!("{}\0", self.0))
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `name` can be a backup name: 1-128 of `[A-Za-z0-9._-]`, not starting with a
/// dot (what the API accepts), so it is one clean path segment.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// `2026-11-25T09:38:16.738Z` as `20261125T093816738Z`; all zeros when it does not parse.
fn sortable_time(rfc3339: &str) -> String {
    match humantime::parse_rfc3339_weak(rfc3339.trim_end_matches('Z')) {
        Ok(time) => humantime::format_rfc3339_millis(time)
            .to_string()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect(),
        Err(_) => "00000000T000000000Z".into(),
    }
}

/// The start second a generated backup name carries (`20261122T055350Z-...` gives
/// `20261122T055350`), if it has one.
pub(crate) fn name_second(name: &str) -> Option<&str> {
    let second = name.get(..15)?;
    let ok = name.as_bytes().get(15) == Some(&b'Z')
        && second.bytes().enumerate().all(|(i, b)| match i {
            8 => b == b'T',
            _ => b.is_ascii_digit(),
        });
    ok.then_some(second)
}

/// A listing object's key, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListingKey {
    /// `listing/entries/<position>`: one backup.
    Entry(Position),
    /// `listing/pages/<oldest>/<newest>/<id>-<count>`: the backups from `oldest` to
    /// `newest`, both included, as a compaction found them. `id` (8 random hex digits)
    /// makes every page written a new key, so no cache ever holds an older page under it.
    /// `count` is how many backups the page names (its entries and its damaged names), so
    /// a reader adds up the backups of pages it does not fetch; `None` for the older key
    /// form `<id>` alone (still read; a compaction rewrites such pages in the new form).
    Page {
        /// The first backup of the page.
        oldest: Position,
        /// The last backup of the page.
        newest: Position,
        /// 8 random hex digits, new for every page written.
        id: String,
        /// How many backups the page names; `None` in the older key form.
        count: Option<usize>,
    },
}

/// `listing/entries/`.
pub const ENTRIES: &str = "listing/entries/";
/// `listing/pages/`.
pub const PAGES: &str = "listing/pages/";

impl ListingKey {
    /// Parses a key under `listing/`; `None` for anything else (ignored by readers).
    pub fn parse(key: &str) -> Option<ListingKey> {
        if let Some(rest) = key.strip_prefix(ENTRIES) {
            return Position::parse(rest).map(ListingKey::Entry);
        }
        let mut parts = key.strip_prefix(PAGES)?.split('/');
        let (oldest, newest, last) = (parts.next()?, parts.next()?, parts.next()?);
        let (oldest, newest) = (Position::parse(oldest)?, Position::parse(newest)?);
        let (id, count) = match last.split_once('-') {
            Some((id, count)) => (id, Some(parse_count(count)?)),
            None => (last, None),
        };
        let id_ok = id.len() == 8 && id.bytes().all(|b| b.is_ascii_hexdigit());
        (parts.next().is_none() && id_ok && oldest <= newest).then(|| ListingKey::Page {
            oldest,
            newest,
            id: id.to_string(),
            count,
        })
    }

    /// A new page of the backups from `oldest` to `newest`, `count` of them (entries and
    /// damaged names).
    pub fn new_page(oldest: Position, newest: Position, count: usize) -> ListingKey {
        let mut id = [0u8; 4];
        getrandom::getrandom(&mut id).expect("the OS random source is available");
        ListingKey::Page {
            oldest,
            newest,
            id: hex::encode(id),
            count: Some(count),
        }
    }

    /// The object's key.
    pub fn key(&self) -> String {
        match self {
            ListingKey::Entry(p) => format!("{ENTRIES}{p}"),
            ListingKey::Page {
                oldest,
                newest,
                id,
                count: Some(count),
            } => format!("{PAGES}{oldest}/{newest}/{id}-{count}"),
            ListingKey::Page {
                oldest,
                newest,
                id,
                count: None,
            } => format!("{PAGES}{oldest}/{newest}/{id}"),
        }
    }

    /// How many backups the object names, when its key says: 1 for an entry, the count
    /// of a page key of the current form, `None` for a page key of the older form.
    pub fn count(&self) -> Option<usize> {
        match self {
            ListingKey::Entry(_) => Some(1),
            ListingKey::Page { count, .. } => *count,
        }
    }

    /// The oldest position the object may hold.
    pub fn oldest(&self) -> &Position {
        match self {
            ListingKey::Entry(p) => p,
            ListingKey::Page { oldest, .. } => oldest,
        }
    }

    /// The newest position the object may hold.
    pub fn newest(&self) -> &Position {
        match self {
            ListingKey::Entry(p) => p,
            ListingKey::Page { newest, .. } => newest,
        }
    }
}

const _: () = assert!(layout::LISTING.len() < ENTRIES.len());

/// Most backups a page names: [`PAGE_MAX`] entries, and as many damaged names.
const COUNT_MAX: usize = 2 * PAGE_MAX;

/// The count of a page key: 1 to [`COUNT_MAX`] in decimal, without leading zeros (one
/// spelling per count, so a key parses back to itself).
fn parse_count(text: &str) -> Option<usize> {
    let canonical = !text.is_empty()
        && text.len() <= 4
        && !text.starts_with('0')
        && text.bytes().all(|b| b.is_ascii_digit());
    let count: usize = text.parse().ok().filter(|_| canonical)?;
    (1..=COUNT_MAX).contains(&count).then_some(count)
}

/// The payload of a listing object.
#[derive(Serialize, Deserialize)]
struct Payload {
    entries: Vec<BackupSummary>,
    /// Backups whose summary did not decode when the page was written: a reader of the
    /// page reads them again, to report them (or find them repaired).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    damaged: Vec<String>,
}

pub use crate::listing_contents::Contents;

/// What the listing keeps of a summary: all of it but the nodes' warning texts (their
/// count stays), which only `show` prints and which can be a hundred lines a node.
pub fn trimmed(summary: &BackupSummary) -> BackupSummary {
    let mut entry = summary.clone();
    for node in &mut entry.nodes {
        node.warnings.clear();
    }
    entry
}

/// The payload of a listing object holding `entries` (oldest first).
pub fn encode_payload(entries: &[BackupSummary]) -> Vec<u8> {
    encode_contents(entries, &[])
}

/// The payload of a page holding `entries` (oldest first) and the names of `damaged`
/// summaries.
pub fn encode_contents(entries: &[BackupSummary], damaged: &[String]) -> Vec<u8> {
    #[derive(Serialize)]
    struct Borrowed<'a> {
        entries: &'a [BackupSummary],
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        damaged: &'a [String],
    }
    serde_json::to_vec(&Borrowed { entries, damaged }).expect("summaries serialize")
}

/// Decodes the payload of the listing object `key` and checks it says what its key says:
/// an entry holds exactly the backup of its position; a page holds 1 to [`PAGE_MAX`]
/// backups in strictly increasing positions, the first at `oldest` and the last at
/// `newest`. Anything else is a damaged object.
pub fn decode_payload(key: &ListingKey, plain: &[u8]) -> Result<Vec<BackupSummary>, BadListing> {
    Ok(decode_contents(key, plain)?.entries)
}

/// [`decode_payload`], with the damaged summaries a page names (an entry names none).
pub fn decode_contents(key: &ListingKey, plain: &[u8]) -> Result<Contents, BadListing> {
    let payload: Payload = serde_json::from_slice(plain)?;
    let entries = payload.entries;
    if payload.damaged.len() > PAGE_MAX
        || payload.damaged.iter().any(|n| !valid_name(n))
        || (matches!(key, ListingKey::Entry(_)) && !payload.damaged.is_empty())
    {
        return Err(BadListing::Damaged);
    }
    if entries.is_empty() || entries.len() > PAGE_MAX {
        return Err(BadListing::Count(entries.len()));
    }
    let positions: Vec<Position> = entries.iter().map(Position::of).collect();
    if positions.windows(2).any(|w| w[0] >= w[1]) {
        return Err(BadListing::Order);
    }
    if positions.iter().any(|p| !valid_name(p.name())) {
        return Err(BadListing::Name);
    }
    let (first, last) = (&positions[0], &positions[positions.len() - 1]);
    let agrees = match key {
        ListingKey::Entry(p) => entries.len() == 1 && first == p,
        ListingKey::Page {
            oldest,
            newest,
            count,
            ..
        } => {
            first == oldest
                && last == newest
                && count.is_none_or(|c| c == entries.len() + payload.damaged.len())
        }
    };
    if !agrees {
        return Err(BadListing::Mismatch);
    }
    Ok(Contents {
        entries,
        damaged: payload.damaged,
    })
}

/// Why a listing object's payload is damaged.
#[derive(Debug, thiserror::Error)]
pub enum BadListing {
    /// Not a listing's JSON.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// Its list of damaged backups is one no writer makes.
    #[error("names damaged backups it cannot")]
    Damaged,
    /// Too few or too many backups.
    #[error("holds {0} backups")]
    Count(usize),
    /// Backups out of order.
    #[error("its backups are not in order")]
    Order,
    /// A backup with an invalid name.
    #[error("names a backup with an invalid name")]
    Name,
    /// What it holds is not what its key names.
    #[error("its content does not match its name")]
    Mismatch,
}

#[cfg(test)]
mod store_tests;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::summary::{BackupStatus, NodeSummary};

    pub(crate) fn summary(name: &str, started: &str, status: BackupStatus) -> BackupSummary {
        BackupSummary {
            name: name.into(),
            started: started.into(),
            host_started: None,
            duration_ms: 5,
            status,
            strata_version: "0.1.0".into(),
            nodes: vec![NodeSummary {
                name: "n1".into(),
                status,
                warnings: vec!["unreadable: /x".into()],
                warning_count: 1,
                files: 3,
                bytes: 300,
                ..NodeSummary::default()
            }],
            requests: None,
            components: Vec::new(),
            still_paused: Vec::new(),
        }
    }

    #[test]
    fn positions_sort_by_start_time_then_name() {
        let a = summary(
            "20261125T093816Z-bbbbbbbb",
            "2026-11-25T09:38:16.100Z",
            BackupStatus::Complete,
        );
        let b = summary(
            "20261125T093816Z-aaaaaaaa",
            "2026-11-25T09:38:16.900Z",
            BackupStatus::Complete,
        );
        let (pa, pb) = (Position::of(&a), Position::of(&b));
        assert_eq!(pa.as_str(), "20261125T093816100Z-20261125T093816Z-bbbbbbbb");
        assert!(pa < pb, "the earlier start first, whatever the names");
        assert_eq!(Position::parse(pa.as_str()), Some(pa.clone()));
        assert_eq!(pa.name(), "20261125T093816Z-bbbbbbbb");
        assert_eq!(pa.second(), "20261125T093816");
        assert_eq!(name_second(pa.name()), Some("20261125T093816"));
        for bad in [
            "",
            "x",
            "20261125T093816100Z",
            "20261125T093816100Z-",
            "2026112XT093816100Z-a",
            "20261125T093816100Z-a/b",
            "20261125T093816100Z-..",
        ] {
            assert_eq!(Position::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn keys_parse_back_and_pages_check_their_content() {
        let a = summary(
            "20261125T093816Z-aaaaaaaa",
            "2026-11-25T09:38:16.100Z",
            BackupStatus::Complete,
        );
        let b = summary(
            "20261125T103816Z-bbbbbbbb",
            "2026-11-25T10:38:16.100Z",
            BackupStatus::Failed,
        );
        let page = ListingKey::new_page(Position::of(&a), Position::of(&b), 2);
        assert_eq!(ListingKey::parse(&page.key()), Some(page.clone()));
        assert!(page.key().ends_with("-2"), "{}", page.key());
        assert_eq!(page.count(), Some(2));
        // The older form, without a count: read, its count unknown.
        let ListingKey::Page { id, .. } = &page else {
            unreachable!()
        };
        let old_form = format!("{PAGES}{}/{}/{id}", Position::of(&a), Position::of(&b));
        let old = ListingKey::parse(&old_form).unwrap();
        assert_eq!((old.key(), old.count()), (old_form.clone(), None));
        for bad_count in ["0", "02", "2001", "-1", "", "1-2", "x"] {
            assert_eq!(
                ListingKey::parse(&format!("{old_form}-{bad_count}")),
                None,
                "{bad_count}"
            );
        }
        assert_eq!(ListingKey::Entry(Position::of(&a)).count(), Some(1));
        let entry = ListingKey::Entry(Position::of(&a));
        assert_eq!(ListingKey::parse(&entry.key()), Some(entry.clone()));
        assert_eq!(ListingKey::parse("listing/other/x"), None);
        // Newest before oldest is not a page.
        let backwards = format!("{PAGES}{}/{}/0123abcd", Position::of(&b), Position::of(&a));
        assert_eq!(ListingKey::parse(&backwards), None);
        let no_id = format!("{PAGES}{}/{}", Position::of(&a), Position::of(&b));
        assert_eq!(ListingKey::parse(&no_id), None);

        let both = [trimmed(&a), trimmed(&b)];
        assert!(both[0].nodes[0].warnings.is_empty() && both[0].nodes[0].warning_count == 1);
        let plain = encode_payload(&both);
        assert_eq!(decode_payload(&page, &plain).unwrap(), both.to_vec());
        assert!(
            decode_payload(&entry, &plain).is_err(),
            "an entry holds one backup"
        );
        assert_eq!(decode_payload(&old, &plain).unwrap(), both.to_vec());
        // A count that is not what the page holds: damaged.
        let ListingKey::Page { oldest, newest, .. } = page.clone() else {
            unreachable!()
        };
        let miscounted = ListingKey::new_page(oldest.clone(), newest.clone(), 3);
        assert!(decode_payload(&miscounted, &plain).is_err());
        // Damaged names count too.
        let with_damaged = encode_contents(&both, &["20261125T000000Z-dddddddd".to_string()]);
        assert!(decode_contents(&page, &with_damaged).is_err());
        let three = ListingKey::new_page(oldest, newest, 3);
        assert_eq!(
            decode_contents(&three, &with_damaged)
                .unwrap()
                .damaged
                .len(),
            1
        );
        let reversed = encode_payload(&[both[1].clone(), both[0].clone()]);
        assert!(decode_payload(&page, &reversed).is_err());
        assert!(decode_payload(&entry, &encode_payload(&[both[1].clone()])).is_err());
        assert!(decode_payload(&entry, &encode_payload(&[])).is_err());
    }
}
