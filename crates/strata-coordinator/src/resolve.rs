//! Finding a backup by what the user calls it: a name, a unique prefix, `latest` (the
//! newest complete backup), or `latest` before a recovery target time.

use crate::{CoordinatorError, CoordinatorResult};
use strata_repo::summary::BackupSummary;
use strata_repo::Repository;

/// Whether `wanted` with `recovery` names a point in time (`latest` before a recovery
/// target time, LSN or transaction) rather than a backup: [`resolve_backup_for`] finds
/// the backup then.
pub fn names_a_point_in_time(
    wanted: &str,
    recovery: Option<&strata_postgres::recovery::RecoveryPlan>,
) -> bool {
    use strata_postgres::recovery::Target;
    wanted == "latest"
        && matches!(
            recovery.map(|r| &r.target),
            Some(Target::Time(_) | Target::Lsn(_) | Target::Xid(_))
        )
}

/// Like [`resolve_backup`], but for a restore: `latest` with a recovery target time, LSN
/// or transaction means the newest complete backup that had ended before it (a base
/// backup cannot be recovered to a moment before its own end), and a backup named
/// otherwise is refused (exit 2) when the target lies before its end
/// ([`target_before_backup`]), before anything is written.
pub async fn resolve_backup_for(
    repo: &Repository,
    wanted: &str,
    recovery: Option<&strata_postgres::recovery::RecoveryPlan>,
) -> CoordinatorResult<BackupSummary> {
    let Some(target) = recovery.map(|r| &r.target) else {
        return resolve_backup(repo, wanted).await;
    };
    if !names_a_point_in_time(wanted, recovery) {
        let summary = resolve_backup(repo, wanted).await?;
        // A named backup without a PostgreSQL node has no recovery to target: the
        // restore itself says what it lacks ("has no PostgreSQL node").
        if !has_postgres(&summary) {
            return Ok(summary);
        }
        return match target_before_backup(&summary, target) {
            Some(why) => Err(CoordinatorError::Invalid(why)),
            None => Ok(summary),
        };
    }
    let backups = repo.list_backups().await?;
    backups
        .into_iter()
        .rev()
        .filter(BackupSummary::is_complete)
        .find(|b| target_before_backup(b, target).is_none())
        .ok_or_else(|| {
            CoordinatorError::NoBackup(format!(
                "no complete backup had ended by {}: the target is before the oldest backup",
                target_words(target)
            ))
        })
}

/// Whether a backup holds a PostgreSQL base backup (a node that recorded one).
pub fn has_postgres(summary: &BackupSummary) -> bool {
    summary
        .nodes
        .iter()
        .any(|n| strata_postgres::BaseBackupInfo::from_map(&n.plugin).is_some())
}

/// The target as a sentence names it.
fn target_words(target: &strata_postgres::recovery::Target) -> String {
    use strata_postgres::recovery::Target;
    match target {
        Target::Time(t) => parse_pg_time(t).map_or_else(|| t.clone(), |t| t.to_string()),
        Target::Lsn(l) => format!("LSN {l}"),
        Target::Xid(x) => format!("transaction {x}"),
        Target::Latest => "the end of the archive".into(),
        Target::Gap => "the first gap in the archive".into(),
        Target::Immediate => "the backup's consistent point".into(),
    }
}

/// When the end of backup `summary` lies after `target`, why it cannot be recovered
/// there: PostgreSQL must replay at least to the backup's end (its consistent point)
/// before it can stop, so a target before it either stops nowhere (a time or
/// transaction: recovery runs past it to the next commit, or to the end of the WAL) or
/// fails after every file is laid down. Checked before anything is written:
///
/// - a time before the backup ended (its start plus its duration, as `latest` picks);
/// - an LSN before the backup's stop LSN;
/// - a transaction id below the xmin recorded just before `pg_backup_stop` (every such
///   transaction had ended before the backup did; ids 0 to 2 are not transactions).
///
/// `None` for targets that fit, for `latest` and `immediate`, for an LSN or transaction
/// and a backup with no PostgreSQL node, and where the backup or target cannot be compared (a time zone name
/// strata does not read, a backup from before the xmin was recorded).
pub fn target_before_backup(
    summary: &BackupSummary,
    target: &strata_postgres::recovery::Target,
) -> Option<String> {
    use strata_postgres::recovery::Target;
    use strata_postgres::walname::Lsn;
    let info = || {
        summary
            .nodes
            .iter()
            .find_map(|n| strata_postgres::BaseBackupInfo::from_map(&n.plugin))
    };
    let name = &summary.name;
    let pick = "restore an older backup (`strata list`), or `latest` with the same target, which picks the newest backup that ended before it";
    match target {
        Target::Latest | Target::Gap | Target::Immediate => None,
        Target::Time(text) => {
            let wanted = parse_pg_time(text)?;
            let started = chrono::DateTime::parse_from_rfc3339(&summary.started).ok()?;
            let ended = started + chrono::Duration::milliseconds(summary.duration_ms as i64);
            (wanted < ended).then(|| {
                format!(
                    "the target time {wanted} is before backup {name} ended ({ended}): recovery cannot stop before the end of the base backup it starts from; {pick}"
                )
            })
        }
        Target::Lsn(text) => {
            let info = info()?;
            let (wanted, stop) = (Lsn::parse(text)?, Lsn::parse(&info.stop_lsn)?);
            (wanted < stop).then(|| {
                format!(
                    "the target LSN {wanted} is before the consistent point of backup {name} ({stop}, which started at {} on timeline {}): recovery cannot stop before it; {pick}",
                    info.start_lsn, info.timeline
                )
            })
        }
        Target::Xid(text) => {
            let wanted: u64 = text.trim().parse().ok()?;
            let xmin: u64 = info()?.stop_xmin.as_deref()?.trim().parse().ok()?;
            let before = if wanted < 3 {
                true
            } else if wanted > u64::from(u32::MAX) {
                wanted < xmin
            } else {
                // A 32-bit id, as PostgreSQL compares them: modulo 2^32, within 2^31.
                ((wanted as u32).wrapping_sub(xmin as u32) as i32) < 0
            };
            before.then(|| {
                format!(
                    "transaction {wanted} had ended before backup {name} did (every transaction below {xmin} had): recovery cannot stop at it; {pick}"
                )
            })
        }
    }
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
