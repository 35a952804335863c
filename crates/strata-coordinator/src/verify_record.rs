//! The last verification of each backup, kept in the repository so `list` can show when a
//! backup was last proven restorable and how thoroughly.
//!
//! A record is an empty object whose key says it all,
//! `verified/<backup>/<unix_ms>-<ok|damaged>-<mode>`, so one LIST reads every record with
//! no GET. Writing a record removes the backup's older ones.

use serde::Serialize;
use std::collections::HashMap;
use strata_repo::Repository;
use strata_store::StoreError;

const PREFIX: &str = "verified/";

/// The outcome of the last verification of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct VerifyRecord {
    /// Unix milliseconds.
    pub when_ms: u64,
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

/// Records the outcome of verifying `backup` now.
pub async fn record(
    repo: &Repository,
    backup: &str,
    ok: bool,
    mode: &str,
) -> Result<(), StoreError> {
    let store = repo.store();
    let outcome = if ok { "ok" } else { "damaged" };
    let key = format!(
        "{PREFIX}{backup}/{}-{outcome}-{mode}",
        crate::lock::now_ms()
    );
    store.put(&key, bytes::Bytes::new()).await?;
    // The older records are superseded (readers take the newest); a store that refuses
    // deletes (credentials that may write but not delete) keeps them, harmlessly, until
    // garbage collection runs with stronger ones.
    for old in store.list_fresh(&format!("{PREFIX}{backup}/")).await? {
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

/// The newest record of every backup that has one.
pub async fn latest(repo: &Repository) -> Result<HashMap<String, VerifyRecord>, StoreError> {
    let mut out: HashMap<String, VerifyRecord> = HashMap::new();
    for object in repo.store().list_fresh(PREFIX).await? {
        let Some((backup, name)) = object
            .key
            .strip_prefix(PREFIX)
            .and_then(|k| k.split_once('/'))
        else {
            continue;
        };
        let mut parts = name.splitn(3, '-');
        let (Some(when), Some(outcome), Some(mode)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let Ok(when_ms) = when.parse() else { continue };
        let record = VerifyRecord {
            when_ms,
            ok: outcome == "ok",
            mode: mode.to_string(),
        };
        match out.get(backup) {
            Some(have) if have.when_ms >= when_ms => {}
            _ => {
                out.insert(backup.to_string(), record);
            }
        }
    }
    Ok(out)
}
