//! The last verification of each backup, kept in the repository so `list` can show when a
//! backup was last proven restorable and how thoroughly.
//!
//! A record lives at `verified/<backup>/<unix_ms>-<ok|damaged>-<mode>`, so one LIST finds
//! every record. In format version 2 its content is a sealed object bound to that key,
//! holding the same facts; a record whose content does not open under its key, or says
//! something else than its key, is ignored with a warning (a record copied to another
//! backup proves nothing). Version-1 repositories have empty records, trusted there only.
//! Writing a record removes the backup's older ones.

use serde::Serialize;
use std::collections::HashMap;
use strata_repo::format::{decode_object, ObjectKind};
use strata_repo::Repository;
use strata_store::StoreError;

const PREFIX: &str = strata_repo::layout::VERIFIED;

/// The outcome of the last verification of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct VerifyRecord {
    /// Unix milliseconds.
    pub when_ms: u64,
    /// Whether the verification found the backup whole.
    pub ok: bool,
    /// `structure`, `data`, `data-subset-<percent>` or `restore`.
    pub mode: String,
}

impl VerifyRecord {
    /// "2026-11-23 02:10 ok (data)".
    pub fn describe(&self) -> String {
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_millis(self.when_ms);
        let when: String = humantime::format_rfc3339_seconds(when)
            .to_string()
            .replace('T', " ")
            .chars()
            .take(16)
            .collect();
        let outcome = if self.ok { "ok" } else { "DAMAGED" };
        format!("{when} {outcome} ({})", self.mode)
    }
}

/// The sealed content of a record.
#[derive(serde::Serialize, serde::Deserialize, PartialEq)]
struct Sealed {
    backup: String,
    when_ms: u64,
    ok: bool,
    mode: String,
}

/// Records the outcome of verifying `backup` now.
pub async fn record(
    repo: &Repository,
    backup: &str,
    ok: bool,
    mode: &str,
) -> Result<(), strata_repo::RepoError> {
    let store = repo.store();
    let outcome = if ok { "ok" } else { "damaged" };
    let when_ms = crate::lock::now_ms();
    let key = format!("{PREFIX}{backup}/{when_ms}-{outcome}-{mode}");
    let body = sealed_body(backup, when_ms, ok, mode);
    let bytes = repo.seal_object(ObjectKind::VerifyRecord, &key, &body)?;
    store.put(&key, bytes.into()).await?;
    // Listings kept by servers show the last verification: they read it again.
    repo.bump_listing_generation_or_warn().await;
    // The older records are superseded (readers take the newest); a store that refuses
    // deletes (credentials that may write but not delete) keeps them, harmlessly, until
    // garbage collection runs with stronger ones.
    for old in store
        .list_fresh(&strata_repo::layout::verified_of(backup))
        .await?
    {
        if old.key != key {
            if let Err(e) = store.delete(&old.key).await {
                eprintln!(
                    "strata: warning: cannot remove the older verification record {} ({e}); the newest one counts",
                    old.key
                );
                break;
            }
        }
    }
    Ok(())
}

fn sealed_body(backup: &str, when_ms: u64, ok: bool, mode: &str) -> Vec<u8> {
    serde_json::to_vec(&Sealed {
        backup: backup.to_string(),
        when_ms,
        ok,
        mode: mode.to_string(),
    })
    .expect("records serialize")
}

/// Parses a record key into `(backup, record)`.
fn parse_key(key: &str) -> Option<(&str, VerifyRecord)> {
    let (backup, name) = key.strip_prefix(PREFIX)?.split_once('/')?;
    let mut parts = name.splitn(3, '-');
    let (when, outcome, mode) = (parts.next()?, parts.next()?, parts.next()?);
    Some((
        backup,
        VerifyRecord {
            when_ms: when.parse().ok()?,
            ok: outcome == "ok",
            mode: mode.to_string(),
        },
    ))
}

/// Whether the object under `key` is the authentic record `record` of `backup`.
fn authentic(
    repo: &Repository,
    key: &str,
    backup: &str,
    record: &VerifyRecord,
    bytes: &[u8],
) -> Result<(), NotAuthentic> {
    if bytes.is_empty() && repo.cipher().accepts_v1_objects() {
        return Ok(()); // a version-1 record: its key is all it says
    }
    let plain = decode_object(repo.cipher(), ObjectKind::VerifyRecord, bytes, key)
        .map_err(NotAuthentic::Sealed)?;
    let sealed: Sealed = serde_json::from_slice(&plain).map_err(NotAuthentic::NotARecord)?;
    let expected = Sealed {
        backup: backup.to_string(),
        when_ms: record.when_ms,
        ok: record.ok,
        mode: record.mode.clone(),
    };
    if sealed != expected {
        return Err(NotAuthentic::Mismatch);
    }
    Ok(())
}

/// Why a verification record is refused.
#[derive(Debug, thiserror::Error)]
enum NotAuthentic {
    /// It does not open with the repository's key.
    #[error("{0}")]
    Sealed(strata_repo::RepoError),
    /// It opens, and is not a record.
    #[error("{0}")]
    NotARecord(serde_json::Error),
    /// What it says is not what its key names.
    #[error("its content does not match its name")]
    Mismatch,
}

/// The newest authentic record of every backup that has one: one LIST, then a GET of
/// the newest record of each backup (and of older ones only when that one is refused).
pub async fn latest(repo: &Repository) -> Result<HashMap<String, VerifyRecord>, StoreError> {
    latest_where(repo, None, |_| true).await
}

/// The newest authentic record of each of `backups` that has one: one LIST of the keys
/// from the smallest of their names on (keys only), then GETs for these backups alone (a
/// page of a listing), not for every backup.
pub async fn latest_among(
    repo: &Repository,
    backups: &[&str],
) -> Result<HashMap<String, VerifyRecord>, StoreError> {
    let Some(after) = crate::names::before_all(PREFIX, backups) else {
        return Ok(HashMap::new());
    };
    let wanted: std::collections::HashSet<&str> = backups.iter().copied().collect();
    latest_where(repo, Some(&after), |b| wanted.contains(b)).await
}

/// Whether the last verification of each backup that has one found it intact, from the
/// record keys alone (one LIST, no GET): for `/metrics`, where a forged key misleads a
/// gauge at most (`list` and the API read and authenticate the records).
pub async fn outcomes_by_key(repo: &Repository) -> Result<HashMap<String, bool>, StoreError> {
    let mut newest: HashMap<String, VerifyRecord> = HashMap::new();
    for object in repo.store().list_fresh(PREFIX).await? {
        if let Some((backup, record)) = parse_key(&object.key) {
            let slot = newest.entry(backup.to_string()).or_insert(record.clone());
            if record.when_ms > slot.when_ms {
                *slot = record;
            }
        }
    }
    Ok(newest.into_iter().map(|(b, r)| (b, r.ok)).collect())
}

/// The records of the backups `wanted` says, from the record keys after `after` (all of
/// them when `None`), never from a remembered listing.
async fn latest_where(
    repo: &Repository,
    after: Option<&str>,
    wanted: impl Fn(&str) -> bool,
) -> Result<HashMap<String, VerifyRecord>, StoreError> {
    let mut candidates: HashMap<String, Vec<(String, VerifyRecord)>> = HashMap::new();
    let listed = match after {
        Some(after) => repo.store().list_after(PREFIX, after).await?,
        None => repo.store().list_fresh(PREFIX).await?,
    };
    for object in listed {
        if let Some((backup, record)) = parse_key(&object.key).filter(|(b, _)| wanted(b)) {
            candidates
                .entry(backup.to_string())
                .or_default()
                .push((object.key.clone(), record));
        }
    }
    let mut out = HashMap::new();
    for (backup, mut records) in candidates {
        records.sort_by_key(|r| std::cmp::Reverse(r.1.when_ms));
        for (key, record) in records {
            let bytes = match repo.store().get(&key).await {
                Ok(bytes) => bytes,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            };
            match authentic(repo, &key, &backup, &record, &bytes) {
                Ok(()) => {
                    out.insert(backup.clone(), record);
                    break;
                }
                Err(why) => eprintln!("strata: warning: verification record {key} ignored: {why}"),
            }
        }
    }
    Ok(out)
}

/// Rewrites the version-1 (empty) records of `repo` as sealed ones (see `crate::migrate`).
pub(crate) async fn migrate_records(repo: &Repository) -> Result<u64, strata_repo::RepoError> {
    let mut done = 0;
    for object in repo.store().list_fresh(PREFIX).await? {
        let Some((backup, record)) = parse_key(&object.key) else {
            continue;
        };
        if !repo.store().get(&object.key).await?.is_empty() {
            continue;
        }
        let body = sealed_body(backup, record.when_ms, record.ok, &record.mode);
        let bytes = repo.seal_for_migration(ObjectKind::VerifyRecord, &object.key, &body);
        repo.store().put(&object.key, bytes.into()).await?;
        done += 1;
    }
    Ok(done)
}
