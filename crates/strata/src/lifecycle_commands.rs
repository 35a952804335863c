//! Retention and garbage collection: `cleanup`, `gc`, `pin`, `unpin`.

use crate::cli::PolicyArgs;
use crate::commands::{print_json, CommandResult, Context};
use crate::output;
use strata_coordinator::config::RetentionConfig;
use strata_coordinator::gc::GcReport;
use strata_coordinator::retention::CleanupReport;

impl Context {
    /// The policy of the config with the command line's overrides.
    fn policy(&self, args: PolicyArgs) -> RetentionConfig {
        let mut policy = self.config.retention.clone();
        let or = |cli: Option<u32>, config: Option<u32>| cli.or(config);
        policy.keep_last = or(args.keep_last, policy.keep_last);
        policy.keep_hourly = or(args.keep_hourly, policy.keep_hourly);
        policy.keep_daily = or(args.keep_daily, policy.keep_daily);
        policy.keep_weekly = or(args.keep_weekly, policy.keep_weekly);
        policy.keep_monthly = or(args.keep_monthly, policy.keep_monthly);
        policy.keep_yearly = or(args.keep_yearly, policy.keep_yearly);
        policy.keep_failed = or(args.keep_failed, policy.keep_failed);
        policy.keep_within = args.keep_within.or(policy.keep_within);
        policy.min_complete = args.min_complete.unwrap_or(policy.min_complete);
        policy.timezone = args.timezone.unwrap_or(policy.timezone);
        policy
    }

    /// `strata cleanup`.
    pub(crate) async fn cleanup(&self, dry_run: bool, args: PolicyArgs) -> CommandResult {
        let overridden = policy_given(&args);
        let policy = self.policy(args);
        // The configured policy is the server's own when --server is given.
        let report = self
            .cluster()
            .cleanup(dry_run, overridden.then_some(policy))
            .await?;
        self.say_cleanup(&report)
    }

    /// Prints a cleanup's report (local or from the server).
    pub(crate) fn say_cleanup(&self, report: &CleanupReport) -> CommandResult {
        let (rows, dry_run) = (&report.backups, report.dry_run);
        let removed = report.removed();
        if self.global.json {
            print_json(report);
            return Ok(0);
        }
        let verb = if dry_run { "would remove" } else { "removed" };
        for row in rows {
            let decision = if row.keep { "keep" } else { verb };
            let why = if row.keep {
                row.reasons.join(", ")
            } else {
                "no rule keeps it".into()
            };
            self.say(format!(
                "{decision:<12} {}  {:<8}  {why}",
                row.name, row.status
            ));
        }
        let summary_verb = if dry_run {
            "would be removed"
        } else {
            "removed"
        };
        self.say(format!(
            "{} kept, {removed} {summary_verb}",
            rows.len() - removed
        ));
        if let Some(oldest) = &report.wal.oldest_needed {
            self.say(format!(
                "WAL: {} files before {oldest} (the oldest kept backup's start) {summary_verb}",
                report.wal.removed.len()
            ));
        }
        if let Some(gc) = &report.gc {
            self.say_gc(gc);
        }
        Ok(0)
    }

    pub(crate) fn say_gc(&self, gc: &GcReport) {
        let verb = if gc.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        let repacked = if gc.packs_repacked > 0 {
            format!(
                " ({} of them mostly garbage: their live data {} new packs)",
                gc.packs_repacked,
                if gc.dry_run {
                    "would move to"
                } else {
                    "moved to"
                }
            )
        } else {
            String::new()
        };
        self.say(format!(
            "{verb} {} packs ({}) that no backup uses{repacked}; {} packs kept for {} backups",
            gc.packs_deleted,
            output::size(gc.bytes_freed),
            gc.packs_kept,
            gc.backups
        ));
    }

    /// `strata gc`.
    pub(crate) async fn gc(&self, dry_run: bool) -> CommandResult {
        let report = self.cluster().gc(dry_run).await?;
        self.print_gc(&report)
    }

    fn print_gc(&self, report: &GcReport) -> CommandResult {
        if self.global.json {
            print_json(report);
        } else {
            self.say_gc(report);
        }
        Ok(0)
    }

    /// `strata pin` and `strata unpin`.
    pub(crate) async fn pin(&self, wanted: &str, pin: bool) -> CommandResult {
        let name = self.cluster().pin(wanted, pin).await?.name;
        self.say(format!(
            "{} backup {name}",
            if pin { "pinned" } else { "unpinned" },
        ));
        Ok(0)
    }
}

/// Whether any retention option was given on the command line.
fn policy_given(args: &PolicyArgs) -> bool {
    let PolicyArgs {
        keep_last,
        keep_hourly,
        keep_daily,
        keep_weekly,
        keep_monthly,
        keep_yearly,
        keep_within,
        keep_failed,
        min_complete,
        timezone,
    } = args;
    [
        keep_last,
        keep_hourly,
        keep_daily,
        keep_weekly,
        keep_monthly,
        keep_yearly,
        keep_failed,
        min_complete,
    ]
    .iter()
    .any(|o| o.is_some())
        || keep_within.is_some()
        || timezone.is_some()
}
