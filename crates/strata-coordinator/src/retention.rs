//! Which backups a retention policy keeps, and why.
//!
//! Complete backups are kept by rules in the manner operators know from restic and borg:
//! the newest `keep_last`, the newest backup of each of the newest `keep_daily` days that
//! have one (likewise hours, ISO weeks, months, years: calendar buckets in the policy's
//! time zone), and every backup within `keep_within` of the newest complete backup (not of
//! now, so a cluster that stopped backing up does not lose its history by waiting). Pinned
//! backups and the newest complete backup are always kept, and `min_complete` is a floor of
//! complete backups no rule can go below. Failed and partial backups have their own count,
//! `keep_failed`. Every kept backup carries the rules that keep it, for `--dry-run`.

use crate::config::RetentionConfig;
use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use serde::Serialize;

/// A backup as retention sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The backup's name.
    pub name: String,
    /// When the backup started; the hourly, daily and other rules bucket it by this time.
    pub started: DateTime<Utc>,
    /// Complete, as opposed to failed or partial.
    pub complete: bool,
    /// Pinned (`strata pin`): kept whatever the rules say.
    pub pinned: bool,
}

/// What the policy decided for one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The backup's name.
    pub name: String,
    /// Whether the policy keeps the backup.
    pub keep: bool,
    /// The rules that keep it (empty when it is removed).
    pub reasons: Vec<String>,
}

pub use crate::config::{parse_within, PolicyError};

/// The calendar buckets of the time-based rules, as (rule name, how many, bucket of a time).
type Bucket = fn(&DateTime<Tz>) -> String;

fn buckets(policy: &RetentionConfig) -> [(&'static str, Option<u32>, Bucket); 5] {
    [
        ("hourly", policy.keep_hourly, |t| {
            format!("{} {:02}h", t.date_naive(), t.hour())
        }),
        ("daily", policy.keep_daily, |t| t.date_naive().to_string()),
        ("weekly", policy.keep_weekly, |t| {
            let week = t.iso_week();
            format!("{}-W{:02}", week.year(), week.week())
        }),
        ("monthly", policy.keep_monthly, |t| {
            format!("{}-{:02}", t.year(), t.month())
        }),
        ("yearly", policy.keep_yearly, |t| t.year().to_string()),
    ]
}

/// Applies `policy` to `backups`; decisions come in the order of `backups`.
pub fn decide(
    policy: &RetentionConfig,
    backups: &[Candidate],
) -> Result<Vec<Decision>, PolicyError> {
    policy.checked()?;
    let tz: Tz = policy.timezone.parse().expect("checked above");
    let mut reasons: Vec<Vec<String>> = vec![Vec::new(); backups.len()];
    let newest_first = |complete: bool| {
        let mut order: Vec<usize> = (0..backups.len())
            .filter(|&i| backups[i].complete == complete)
            .collect();
        order.sort_by(|&a, &b| {
            (backups[b].started, &backups[b].name).cmp(&(backups[a].started, &backups[a].name))
        });
        order
    };
    let complete = newest_first(true);

    if let Some(n) = policy.keep_last {
        for &i in complete.iter().take(n as usize) {
            reasons[i].push(format!("last {n}"));
        }
    }
    for (rule, count, bucket) in buckets(policy) {
        let Some(count) = count else { continue };
        let mut last: Option<String> = None;
        let mut kept = 0;
        for &i in &complete {
            let key = bucket(&backups[i].started.with_timezone(&tz));
            if last.as_ref() == Some(&key) {
                continue;
            }
            if kept < count {
                reasons[i].push(format!("{rule} {key}"));
                kept += 1;
            }
            last = Some(key);
        }
    }
    if let (Some(within), Some(&newest)) = (&policy.keep_within, complete.first()) {
        let since = backups[newest].started - parse_within(within)?;
        for &i in &complete {
            if backups[i].started >= since {
                reasons[i].push(format!("within {within} of the newest complete backup"));
            }
        }
    }
    if let Some(&newest) = complete.first() {
        reasons[newest].push("newest complete backup".into());
    }
    let mut kept_complete = complete.iter().filter(|&&i| !reasons[i].is_empty()).count();
    for &i in &complete {
        if kept_complete >= policy.min_complete as usize {
            break;
        }
        if reasons[i].is_empty() {
            reasons[i].push(format!("floor of {} complete backups", policy.min_complete));
            kept_complete += 1;
        }
    }
    for (k, &i) in newest_first(false).iter().enumerate() {
        match policy.keep_failed {
            None => reasons[i].push("failed or partial, kept (keep_failed not set)".into()),
            Some(n) if k < n as usize => reasons[i].push(format!("keep_failed {n}")),
            Some(_) => {}
        }
    }
    for (i, backup) in backups.iter().enumerate() {
        if backup.pinned {
            reasons[i].push("pinned".into());
        }
    }
    Ok(backups
        .iter()
        .zip(reasons)
        .map(|(b, reasons)| Decision {
            name: b.name.clone(),
            keep: !reasons.is_empty(),
            reasons,
        })
        .collect())
}

/// A UTC time from local wall-clock fields in `tz` (the earlier one when ambiguous), for
/// tests and tools that speak local time.
pub fn local_time(tz: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    tz.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .earliest()
        .expect("an existing local time")
        .with_timezone(&Utc)
}

/// One backup in a cleanup report.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct CleanupRow {
    /// The backup's name.
    pub name: String,
    /// When the backup started (RFC 3339).
    pub started: String,
    /// The backup's status (`complete`, `partial`, `failed`).
    pub status: String,
    /// Pinned (`strata pin`): kept whatever the rules say.
    pub pinned: bool,
    /// Whether the policy keeps the backup (a removed one is gone unless `dry_run`).
    pub keep: bool,
    /// The rules that keep it (empty when it is removed).
    pub reasons: Vec<String>,
}

/// Applies `policy` to the backups of `repo`: returns every backup with its decision, and
/// unless `dry_run` removes those the policy does not keep (under the cluster lock, so a
/// running backup or restore is never disturbed).
pub async fn cleanup(
    repo: &strata_repo::Repository,
    policy: &RetentionConfig,
    dry_run: bool,
    external: &crate::external_delete::ExternalDeletes,
) -> crate::CoordinatorResult<Vec<CleanupRow>> {
    if let Some(e) = policy.policy_error() {
        return Err(crate::CoordinatorError::NothingToDo(e.to_string()));
    }
    let summaries = repo.list_backups().await?;
    let pins = crate::pins::pinned(repo)
        .await
        .map_err(strata_repo::RepoError::from)?;
    let candidates: Vec<Candidate> = summaries
        .iter()
        .map(|s| Candidate {
            name: s.name.clone(),
            started: DateTime::parse_from_rfc3339(&s.started)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
            complete: s.is_complete(),
            pinned: pins.contains(&s.name),
        })
        .collect();
    let decisions = decide(policy, &candidates)
        .map_err(|e| crate::CoordinatorError::NothingToDo(e.to_string()))?;
    let mut rows: Vec<CleanupRow> = summaries
        .iter()
        .zip(decisions)
        .map(|(s, d)| CleanupRow {
            name: s.name.clone(),
            started: s.started.clone(),
            status: s.status.as_str().to_string(),
            pinned: pins.contains(&s.name),
            keep: d.keep,
            reasons: d.reasons,
        })
        .collect();
    if dry_run || (rows.iter().all(|r| r.keep) && !external.has_unfinished()) {
        return Ok(rows);
    }
    let id = format!("cleanup-{}", crate::names::new_backup_name());
    let lock = crate::lock::RepoLock::acquire(
        repo.store().clone(),
        &id,
        "cleanup",
        std::time::Duration::from_secs(60),
    )
    .await?
    .keep_renewed();
    // Parts of attempts and deletes that did not finish (see `crate::engine_parts`).
    for line in external
        .finish_unfinished(repo, None, || lock.check())
        .await
    {
        eprintln!("strata: {line}");
    }
    let mut result = Ok(());
    let mut lost = None;
    for (row, summary) in rows.iter_mut().zip(&summaries).filter(|(r, _)| !r.keep) {
        // Each delete under a lock that still holds (a system's delete may be slow).
        if let Err(why) = lock.check() {
            lost = Some(format!(
                "cleanup stopped before deleting {}: {why}",
                row.name
            ));
            break;
        }
        // The systems' snapshots (see `crate::external_delete`): one of a plugin without
        // a ledger that cannot be deleted keeps its backup until the next run.
        let deleting = match external.before_delete(summary).await {
            Ok(deleting) => deleting,
            Err(why) => {
                eprintln!("strata: warning: backup {} is kept: {why}", row.name);
                row.keep = true;
                row.reasons
                    .push(format!("kept: {why} (tried again at the next cleanup)"));
                continue;
            }
        };
        for line in &deleting.said {
            eprintln!("strata: backup {}: {line}", row.name);
        }
        result = repo.delete_backup(&row.name).await;
        if result.is_err() {
            drop(deleting);
            break;
        }
        let (said, engines) = deleting.finish().await;
        for line in said {
            eprintln!("strata: backup {}: {line}", row.name);
        }
        if let Err(why) = engines {
            eprintln!("strata: warning: backup {} is deleted, but {why}", row.name);
            row.reasons.push(format!("deleted, but {why}"));
        }
    }
    crate::listing::compact(repo, true).await;
    lock.release().await;
    if let Some(why) = lost {
        return Err(crate::CoordinatorError::LockLost(why));
    }
    result?;
    Ok(rows)
}

/// What a whole cleanup did: the policy's decisions, the WAL it expired and the garbage
/// collection after both. The CLI, the API and the scheduler all report this one shape.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct CleanupReport {
    /// Nothing was removed: the report says what a cleanup would do.
    pub dry_run: bool,
    /// Every backup with its decision and the rules that keep it.
    pub backups: Vec<CleanupRow>,
    /// Archived WAL older than the oldest kept PostgreSQL backup (removed, or would be).
    pub wal: strata_wal::WalExpiry,
    /// The garbage collection run after backups or WAL were removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gc: Option<crate::gc::GcReport>,
}

impl CleanupReport {
    /// Backups the policy removed (or would remove).
    pub fn removed(&self) -> usize {
        self.backups.iter().filter(|r| !r.keep).count()
    }

    /// One line for the audit log, webhooks and the scheduler.
    pub fn summary(&self) -> String {
        let removed = self.removed();
        let mut line = format!("{} kept, {removed} removed", self.backups.len() - removed);
        if !self.wal.removed.is_empty() {
            line.push_str(&format!("; {} WAL files removed", self.wal.removed.len()));
        }
        if let Some(gc) = &self.gc {
            line.push_str(&format!(
                "; {} packs ({} bytes) deleted",
                gc.packs_deleted, gc.bytes_freed
            ));
        }
        line
    }
}

/// A whole cleanup: applies `policy` (see [`cleanup`]), expires the WAL no kept backup
/// needs, then, if either removed anything, runs `collect` (the caller's garbage
/// collection, so a coordinator can count it). With `dry_run` nothing changes and no
/// collection runs. Every way in (CLI, API, schedules) goes through here, so none of
/// them forgets a step.
pub async fn apply<F, Fut>(
    repo: &strata_repo::Repository,
    policy: &RetentionConfig,
    dry_run: bool,
    external: &crate::external_delete::ExternalDeletes,
    collect: F,
) -> crate::CoordinatorResult<CleanupReport>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = crate::CoordinatorResult<crate::gc::GcReport>>,
{
    let backups = cleanup(repo, policy, dry_run, external).await?;
    let wal = strata_wal::expire(repo, dry_run).await?;
    let mut report = CleanupReport {
        dry_run,
        backups,
        wal,
        gc: None,
    };
    if !dry_run && (report.removed() > 0 || !report.wal.removed.is_empty()) {
        report.gc = Some(collect().await?);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn policy() -> RetentionConfig {
        RetentionConfig {
            min_complete: 0,
            ..RetentionConfig::default()
        }
    }

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn backups(times: &[&str]) -> Vec<Candidate> {
        times
            .iter()
            .enumerate()
            .map(|(i, t)| Candidate {
                name: format!("b{i:02}"),
                started: at(t),
                complete: true,
                pinned: false,
            })
            .collect()
    }

    fn kept(decisions: &[Decision]) -> Vec<String> {
        decisions
            .iter()
            .filter(|d| d.keep)
            .map(|d| d.name.clone())
            .collect()
    }

    #[test]
    fn an_empty_policy_and_bad_settings_are_refused() {
        let err = decide(&policy(), &[]).unwrap_err();
        assert_eq!(err, PolicyError::Empty);
        assert!(err.to_string().contains("empty"), "{err}");
        let bad_zone = RetentionConfig {
            keep_last: Some(1),
            timezone: "Mars/Olympus".into(),
            ..policy()
        };
        assert!(decide(&bad_zone, &[])
            .unwrap_err()
            .to_string()
            .contains("IANA"));
        for bad in ["14", "d", "3x", "0d", ""] {
            assert!(parse_within(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_within("2w3d").unwrap(), Duration::days(17));
        assert_eq!(parse_within("36h").unwrap(), Duration::hours(36));
    }

    #[test]
    fn daily_keeps_the_newest_backup_of_each_day_that_has_one() {
        let list = backups(&[
            "2026-11-01T08:00:00Z",
            "2026-11-01T20:00:00Z",
            "2026-11-03T08:00:00Z", // 2 Nov has no backup: it does not use up a day
            "2026-11-04T08:00:00Z",
            "2026-11-04T09:00:00Z",
        ]);
        let p = RetentionConfig {
            keep_daily: Some(3),
            ..policy()
        };
        let d = decide(&p, &list).unwrap();
        assert_eq!(kept(&d), ["b01", "b02", "b04"]);
        assert_eq!(d[4].reasons, ["daily 2026-11-04", "newest complete backup"]);
        assert!(d[0].reasons.is_empty() && !d[0].keep);
    }

    #[test]
    fn buckets_follow_the_configured_time_zone_across_dst() {
        // Europe/Berlin leaves summer time on 25 Oct 2026 at 03:00 local (01:00 UTC): the
        // hour 02:00-03:00 local happens twice and is one hourly bucket.
        let list = backups(&[
            "2026-10-25T00:10:00Z", // 02:10 CEST
            "2026-10-25T01:10:00Z", // 02:10 CET, same local hour
            "2026-10-25T02:10:00Z", // 03:10 CET
        ]);
        let p = RetentionConfig {
            keep_hourly: Some(10),
            timezone: "Europe/Berlin".into(),
            ..policy()
        };
        let d = decide(&p, &list).unwrap();
        assert_eq!(kept(&d), ["b01", "b02"]);
        assert_eq!(d[1].reasons[0], "hourly 2026-10-25 02h");
        // In UTC the same three backups are three hours.
        let utc = RetentionConfig {
            timezone: "UTC".into(),
            ..p
        };
        assert_eq!(kept(&decide(&utc, &list).unwrap()).len(), 3);
        // A day boundary: 23:30 UTC on 31 Dec is already 1 Jan in Berlin.
        let list = backups(&["2026-12-31T12:00:00Z", "2026-12-31T23:30:00Z"]);
        let yearly = |tz: &str| RetentionConfig {
            keep_yearly: Some(2),
            timezone: tz.into(),
            ..policy()
        };
        assert_eq!(kept(&decide(&yearly("UTC"), &list).unwrap()), ["b01"]);
        assert_eq!(
            kept(&decide(&yearly("Europe/Berlin"), &list).unwrap()),
            ["b00", "b01"]
        );
        assert_eq!(
            local_time("Europe/Berlin".parse().unwrap(), 2027, 1, 1, 0, 30),
            at("2026-12-31T23:30:00Z")
        );
    }

    #[test]
    fn weekly_monthly_last_and_within() {
        let list = backups(&[
            "2026-09-30T10:00:00Z",
            "2026-10-05T10:00:00Z", // ISO week 41
            "2026-10-11T10:00:00Z", // still week 41 (a Sunday)
            "2026-10-12T10:00:00Z", // week 42
            "2026-10-31T10:00:00Z",
        ]);
        let weekly = RetentionConfig {
            keep_weekly: Some(3),
            ..policy()
        };
        assert_eq!(
            kept(&decide(&weekly, &list).unwrap()),
            ["b02", "b03", "b04"]
        );
        let monthly = RetentionConfig {
            keep_monthly: Some(5),
            ..policy()
        };
        assert_eq!(kept(&decide(&monthly, &list).unwrap()), ["b00", "b04"]);
        let last = RetentionConfig {
            keep_last: Some(2),
            ..policy()
        };
        assert_eq!(kept(&decide(&last, &list).unwrap()), ["b03", "b04"]);
        // Within is measured from the newest complete backup, however old it is.
        let within = RetentionConfig {
            keep_within: Some("19d".into()),
            ..policy()
        };
        assert_eq!(kept(&decide(&within, &list).unwrap()), ["b03", "b04"]);
    }

    #[test]
    fn pins_the_floor_and_failed_backups() {
        let mut list = backups(&[
            "2026-11-01T00:00:00Z",
            "2026-11-02T00:00:00Z",
            "2026-11-03T00:00:00Z",
            "2026-11-04T00:00:00Z",
            "2026-11-05T00:00:00Z",
            "2026-11-06T00:00:00Z",
        ]);
        list[0].pinned = true;
        list[4].complete = false; // failed
        list[5].complete = false; // partial, the newest of all
        let p = RetentionConfig {
            keep_last: Some(1),
            min_complete: 3,
            keep_failed: Some(1),
            ..policy()
        };
        let d = decide(&p, &list).unwrap();
        assert_eq!(kept(&d), ["b00", "b01", "b02", "b03", "b05"]);
        assert_eq!(d[0].reasons, ["pinned"]);
        assert_eq!(d[1].reasons, ["floor of 3 complete backups"]);
        assert_eq!(d[3].reasons, ["last 1", "newest complete backup"]);
        assert_eq!(d[5].reasons, ["keep_failed 1"]);
        assert!(!d[4].keep);
        // Without keep_failed, failed backups are left alone.
        let p = RetentionConfig {
            keep_failed: None,
            ..p
        };
        assert!(decide(&p, &list).unwrap()[4].keep);
    }
}
