//! Finding a backup by what the user calls it: a name, a unique prefix, `latest` (the
//! newest complete backup), or `latest` before a recovery target time.

use crate::{CoordinatorError, CoordinatorResult};
use strata_repo::summary::BackupSummary;
use strata_repo::Repository;

/// Whether `wanted` with `recovery` names a point in time (`latest` before a recovery
/// target time) rather than a backup: [`resolve_backup_for`] finds the backup then.
pub fn names_a_point_in_time(
    wanted: &str,
    recovery: Option<&strata_postgres::recovery::RecoveryPlan>,
) -> bool {
    wanted == "latest"
        && matches!(
            recovery.map(|r| &r.target),
            Some(strata_postgres::recovery::Target::Time(_))
        )
}

/// Like [`resolve_backup`], but for a restore: `latest` with a recovery target time means
/// the newest complete backup that had ended by then (a base backup cannot be recovered
/// to a moment before its own end).
pub async fn resolve_backup_for(
    repo: &Repository,
    wanted: &str,
    recovery: Option<&strata_postgres::recovery::RecoveryPlan>,
) -> CoordinatorResult<BackupSummary> {
    let target = match recovery.map(|r| &r.target) {
        Some(strata_postgres::recovery::Target::Time(t)) if wanted == "latest" => t,
        _ => return resolve_backup(repo, wanted).await,
    };
    let Some(target) = parse_pg_time(target) else {
        return resolve_backup(repo, wanted).await;
    };
    let backups = repo.list_backups().await?;
    backups
        .into_iter()
        .rev()
        .filter(BackupSummary::is_complete)
        .find(|b| {
            chrono::DateTime::parse_from_rfc3339(&b.started).is_ok_and(|started| {
                started + chrono::Duration::milliseconds(b.duration_ms as i64) <= target
            })
        })
        .ok_or_else(|| {
            CoordinatorError::NoBackup(format!(
                "no complete backup had ended by {target}: the target is before the oldest backup"
            ))
        })
}

/// The error for a backup name that designates a damaged summary: exactly, or as a
/// prefix that no readable backup shares. `None` when the name is not about damage.
pub fn damaged_match<'a>(
    damaged: &[strata_repo::DamagedObject],
    readable: impl Iterator<Item = &'a str>,
    wanted: &str,
) -> Option<CoordinatorError> {
    if wanted == "latest" {
        return None;
    }
    let readable: Vec<&str> = readable.collect();
    if readable.contains(&wanted) {
        return None;
    }
    let hit = damaged
        .iter()
        .find(|d| d.backup() == Some(wanted))
        .or_else(|| {
            let mut prefixed = damaged
                .iter()
                .filter(|d| d.backup().is_some_and(|b| b.starts_with(wanted)));
            match (prefixed.next(), prefixed.next()) {
                (Some(one), None) if !readable.iter().any(|b| b.starts_with(wanted)) => Some(one),
                _ => None,
            }
        })?;
    Some(CoordinatorError::Damaged(format!(
        "backup {} is damaged: {}: run `strata repair backups` to salvage or drop it",
        hit.backup().unwrap_or_default(),
        hit.reason
    )))
}

/// A timestamp as PostgreSQL writes it (`2026-11-23 05:00:00.123+00`) or RFC 3339.
fn parse_pg_time(text: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    let text = text.trim();
    chrono::DateTime::parse_from_rfc3339(text).ok().or_else(|| {
        ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%#z"]
            .iter()
            .find_map(|f| chrono::DateTime::parse_from_str(text, f).ok())
    })
}

/// Finds a backup by name, unique name prefix, or `latest` (the newest complete backup).
/// A summary that does not decode is no candidate for `latest` or a prefix, but naming it
/// exactly (or by a prefix only it matches) is an error that names the damage.
pub async fn resolve_backup(repo: &Repository, wanted: &str) -> CoordinatorResult<BackupSummary> {
    let sources = [("", repo)];
    if wanted == "latest" {
        return Ok(crate::listing::latest(&sources)
            .await?
            .ok_or_else(|| {
                CoordinatorError::NoBackup("no complete backup in the repository".into())
            })?
            .1);
    }
    Ok(crate::listing::by_name(&sources, wanted).await?.1)
}

#[cfg(test)]
mod time_tests {
    #[test]
    fn reads_postgres_timestamps() {
        let t = super::parse_pg_time("2026-11-23 04:51:20.123456+00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-23T04:51:20.123456+00:00");
        assert!(super::parse_pg_time("2026-11-23 05:00:00+01").is_some());
        assert!(super::parse_pg_time("2026-11-23T05:00:00Z").is_some());
        assert!(super::parse_pg_time("yesterday").is_none());
    }
}
