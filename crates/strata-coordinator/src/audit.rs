//! The audit log: who changed what in the repository, when, and how it ended.
//!
//! Every mutating action (backup, restore, delete, cleanup, gc, pin, unpin, copy, verify,
//! init) appends one entry, whether it came from the CLI or the API. Entries are encrypted
//! repository objects under `audit/<unix_ms>-<random>`: the key sorts by time, so reading
//! "since" a moment is one LIST and a GET per entry; nothing in strata rewrites or deletes
//! them. Recording is best effort for the caller: a failed audit write is reported next to
//! the action's own outcome, never instead of it.

use serde::{Deserialize, Serialize};
use strata_repo::format::{decode_object, ObjectKind};
use strata_repo::{RepoError, Repository};

const PREFIX: &str = strata_repo::layout::AUDIT;

/// One mutating action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// When the action ended (or started, for `started` entries), RFC 3339 UTC with
    /// milliseconds.
    pub time: String,
    /// The API token's name (`token:<name>`), or `local:<user>@<host>` for the CLI.
    pub who: String,
    /// `backup`, `restore`, `delete`, `cleanup`, `gc`, `pin`, `unpin`, `copy`, `verify`,
    /// `init`.
    pub action: String,
    /// What it acted on: a backup name, `all`, a storage.
    pub target: String,
    /// `started`, `succeeded`, `partial` or `failed`.
    pub outcome: String,
    /// One line: the error, or what was done.
    #[serde(default)]
    pub detail: String,
}

impl AuditEntry {
    /// An entry stamped now.
    pub fn now(who: &str, action: &str, target: &str, outcome: &str, detail: &str) -> Self {
        AuditEntry {
            time: rfc3339_ms(crate::lock::now_ms()),
            who: who.to_string(),
            action: action.to_string(),
            target: target.to_string(),
            outcome: outcome.to_string(),
            detail: detail.to_string(),
        }
    }
}

/// Who runs this process when it acts from the command line: `local:<user>@<host>`.
pub fn local_actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| format!("uid{}", real_uid()));
    let host = crate::lock::holder_name();
    let host = host.split(':').next().unwrap_or("localhost").to_string();
    format!("local:{user}@{host}")
}

/// The real user id, read from /proc so no `unsafe` libc call is needed.
fn real_uid() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next().map(str::to_string))
        })
        .unwrap_or_else(|| "?".into())
}

fn rfc3339_ms(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Appends `entry` to the log of `repo`.
pub async fn record(repo: &Repository, entry: &AuditEntry) -> Result<(), RepoError> {
    let ms = chrono::DateTime::parse_from_rfc3339(&entry.time)
        .map(|t| t.timestamp_millis().max(0) as u64)
        .unwrap_or_else(|_| crate::lock::now_ms());
    // A per-process sequence before the random part: two entries one process records in
    // the same millisecond keep their order when the log is read back (sorted by key).
    static SEQUENCE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seq = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut random = [0u8; 4];
    getrandom::getrandom(&mut random).expect("the OS has randomness");
    let key = format!("{PREFIX}{ms:013}-{seq:08x}{}", hex::encode(random));
    let json = serde_json::to_vec(entry).expect("entries serialize");
    let bytes = repo.seal_object(ObjectKind::Audit, &key, &json)?;
    repo.store().put(&key, bytes.into()).await?;
    Ok(())
}

/// The entries at or after `since_ms` (Unix milliseconds), oldest first; at most the
/// newest `limit` of them.
pub async fn read(
    repo: &Repository,
    since_ms: u64,
    limit: usize,
) -> Result<Vec<AuditEntry>, RepoError> {
    let first = format!("{PREFIX}{since_ms:013}");
    let mut keys: Vec<String> = repo
        .store()
        .list_fresh(PREFIX)
        .await?
        .into_iter()
        .map(|o| o.key)
        .filter(|k| *k >= first)
        .collect();
    keys.sort();
    let skip = keys.len().saturating_sub(limit);
    let mut out = Vec::with_capacity(keys.len() - skip);
    for key in &keys[skip..] {
        let bytes = repo.store().get(key).await?;
        let plain = decode_object(repo.cipher(), ObjectKind::Audit, &bytes, key)?;
        let entry = serde_json::from_slice(&plain).map_err(|e| RepoError::corrupted(key, e))?;
        out.push(entry);
    }
    Ok(out)
}

/// Parses `--since`: an RFC 3339 time, a date (`2026-11-23`, midnight UTC), or an age
/// (`2h`, `7d`: that long ago). Returns Unix milliseconds.
// String: a parser of `--since`; callers wrap the line at once (CoordinatorError::Invalid, a 400).
pub fn parse_since(text: &str, now_ms: u64) -> Result<u64, String> {
    let text = text.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis().max(0) as u64);
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let t = d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
        return Ok(t.timestamp_millis().max(0) as u64);
    }
    match humantime::parse_duration(text) {
        Ok(age) => Ok(now_ms.saturating_sub(age.as_millis() as u64)),
        Err(_) => Err(format!(
            "--since {text:?}: expected a time (2026-11-23T05:00:00Z), a date (2026-11-23) or an age (2h, 7d)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_times_dates_and_ages() {
        let now = 1_800_000_000_000;
        assert_eq!(
            parse_since("2026-11-23T00:00:00Z", now).unwrap(),
            parse_since("2026-11-23", now).unwrap()
        );
        assert_eq!(parse_since("2h", now).unwrap(), now - 7_200_000);
        assert_eq!(parse_since("7d", now).unwrap(), now - 7 * 86_400_000);
        assert!(parse_since("yesterday-ish", now).is_err());
        assert!(parse_since("", now).is_err());
    }

    #[test]
    fn entries_are_stamped_in_utc_with_milliseconds() {
        let e = AuditEntry::now("token:ci", "pin", "b1", "succeeded", "");
        assert!(e.time.ends_with('Z') && e.time.len() == 24, "{}", e.time);
    }

    #[tokio::test]
    async fn entries_roundtrip_in_time_order_and_since_filters() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(strata_store::LocalStore::new(dir.path()));
        let options = strata_testkit::repo::fast_init();
        let repo = Repository::init(store, Some("pw"), options).await.unwrap();
        let mut first = AuditEntry::now("local:a@h", "backup", "b1", "succeeded", "");
        first.time = "2026-11-20T00:00:00.000Z".into();
        let mut second = AuditEntry::now("token:ci", "pin", "b1", "succeeded", "");
        second.time = "2026-11-22T00:00:00.000Z".into();
        record(&repo, &second).await.unwrap();
        record(&repo, &first).await.unwrap();
        assert_eq!(
            read(&repo, 0, 100).await.unwrap(),
            vec![first, second.clone()]
        );
        let since = parse_since("2026-11-21", 0).unwrap();
        assert_eq!(read(&repo, since, 100).await.unwrap(), vec![second.clone()]);
        assert_eq!(read(&repo, 0, 1).await.unwrap(), vec![second]);
        // Not readable as any other kind of object, nor without the key.
        let keys = repo.store().list_fresh(PREFIX).await.unwrap();
        let raw = repo.store().get(&keys[0].key).await.unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains("token:ci"));
    }
}
