//! The options of requests as the command line takes them, and their one reading: the
//! point-in-time recovery of a PostgreSQL restore (`strata restore --target-time ...`,
//! with the `cli` feature a `clap::Args`) into a [`RecoveryPlan`], with the checks the
//! API makes of its own body ([`crate::types::TableRestoreBody::into_request`]), and the
//! node map of an in-place restore (`--map OLD=NEW`), and what `verify` reads
//! (`--read-data`, `--read-data-subset`).

use std::collections::BTreeMap;
use strata_coordinator::verify::DataCheck;
use strata_coordinator::CoordinatorError;
use strata_postgres::recovery::{RecoveryPlan, Target, TargetAction};

/// Point-in-time recovery of a PostgreSQL restore (default: replay every archived WAL
/// file, then promote).
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct RecoveryArgs {
    /// Recover up to this time (`2026-11-23 05:00:00+00`).
    #[cfg_attr(feature = "cli", arg(long, value_name = "TIME", group = "target"))]
    pub target_time: Option<String>,
    /// Recover up to this WAL position (`0/3000060`).
    #[cfg_attr(feature = "cli", arg(long, value_name = "LSN", group = "target"))]
    pub target_lsn: Option<String>,
    /// Recover up to this transaction id.
    #[cfg_attr(feature = "cli", arg(long, value_name = "XID", group = "target"))]
    pub target_xid: Option<String>,
    /// Stop as soon as the backup is consistent.
    #[cfg_attr(feature = "cli", arg(long, group = "target"))]
    pub target_immediate: bool,
    /// Recover up to the first gap in the archived WAL (a missing segment) and promote
    /// there, leaving what lies past it; without this, a restore to the end refuses a gap.
    #[cfg_attr(feature = "cli", arg(long, group = "target"))]
    pub target_gap: bool,
    /// At the target: promote (default), pause, or shutdown.
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "ACTION", default_value = "promote")
    )]
    pub target_action: String,
    /// Lay the files down and write the recovery settings, but do not start PostgreSQL.
    #[cfg_attr(feature = "cli", arg(long))]
    pub no_start: bool,
    /// Set `archive_mode = off` in the restored cluster: for a copy (a new Londiste node
    /// from `join-restored`, a staging server) that must not archive its own timeline
    /// into the repository of the cluster it came from.
    #[cfg_attr(feature = "cli", arg(long))]
    pub no_archive: bool,
}

impl RecoveryArgs {
    /// The recovery plan the options ask for (`None`: the defaults of the restore); a
    /// wrong action or target is bad input naming the option.
    pub fn plan(self) -> Result<Option<RecoveryPlan>, CoordinatorError> {
        let action = TargetAction::parse(&self.target_action).ok_or_else(|| {
            let wrong = &self.target_action;
            CoordinatorError::Invalid(format!(
                "--target-action {wrong:?}: use promote, pause or shutdown"
            ))
        })?;
        let (time, lsn, xid) = (self.target_time, self.target_lsn, self.target_xid);
        let target = match self.target_gap {
            true => Target::Gap,
            false => Target::from_options(time, lsn, xid, self.target_immediate),
        };
        RecoveryPlan::unless_default(target, action, !self.no_start, self.no_archive)
            .map_err(|e| CoordinatorError::Invalid(e.to_string()))
    }

    /// Where recovery stops: the target asked for, else the end of the archive.
    pub fn target(self) -> Result<Target, CoordinatorError> {
        Ok(self.plan()?.map_or(Target::Latest, |plan| plan.target))
    }
}

/// The node map of an in-place restore from its `OLD=NEW` pairs (`--map`): backup node
/// OLD restored to configured node NEW.
pub fn node_map(pairs: &[String]) -> Result<BTreeMap<String, String>, CoordinatorError> {
    let mut map = BTreeMap::new();
    for pair in pairs {
        let Some((old, new)) = pair.split_once('=') else {
            let why = format!("--map {pair:?}: write OLD=NEW");
            return Err(CoordinatorError::Invalid(why));
        };
        map.insert(old.to_string(), new.to_string());
    }
    Ok(map)
}

/// What `verify` reads: with `subset` (`5%` or `5`) that share of the packs, with
/// `read_data` every blob, else the structure only.
pub fn data_check(read_data: bool, subset: Option<&str>) -> Result<DataCheck, CoordinatorError> {
    match (read_data, subset) {
        (_, Some(text)) => match strata_coordinator::actions::parse_percent(text) {
            Some(percent) => Ok(DataCheck::Subset(percent)),
            None => Err(CoordinatorError::Invalid(format!(
                "--read-data-subset {text:?}: give a percentage such as 5%"
            ))),
        },
        (true, None) => Ok(DataCheck::All),
        (false, None) => Ok(DataCheck::Structure),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_read_once_and_bad_ones_name_the_option() {
        let map = node_map(&["db1=db9".into(), "db2=db8".into()]).unwrap();
        assert_eq!(map["db1"], "db9");
        let bad = node_map(&["db1".into()]).unwrap_err();
        assert_eq!(bad.to_string(), "--map \"db1\": write OLD=NEW");

        assert_eq!(data_check(false, None).unwrap(), DataCheck::Structure);
        assert_eq!(data_check(true, None).unwrap(), DataCheck::All);
        assert_eq!(
            data_check(false, Some("5%")).unwrap(),
            DataCheck::Subset(5.0)
        );
        let bad = data_check(false, Some("lots")).unwrap_err();
        assert!(bad.to_string().starts_with("--read-data-subset"), "{bad}");

        let args = |action: &str| RecoveryArgs {
            target_action: action.into(),
            ..Default::default()
        };
        assert!(args("promote").plan().unwrap().is_none());
        let bad = args("explode").plan().unwrap_err();
        assert!(bad.to_string().starts_with("--target-action"), "{bad}");
        let time = RecoveryArgs {
            target_time: Some("2026-11-23 05:00:00+00".into()),
            ..args("pause")
        };
        assert_eq!(
            time.target().unwrap(),
            Target::Time("2026-11-23 05:00:00+00".into())
        );
    }
}
