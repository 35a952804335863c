//! Retention: `cleanup`, `pin`, `unpin`.

use crate::cli::PolicyArgs;
use crate::commands::{print_json, CommandResult, Context};
use crate::failure::{code, Failure};
use strata_coordinator::config::RetentionConfig;
use strata_coordinator::retention::{cleanup, set_pinned};

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
        let policy = self.policy(args);
        policy
            .check()
            .map_err(|why| Failure::new(code::USAGE, why))?;
        let storage = self.storage()?;
        let repo = self.open_storage(&storage).await?;
        let rows = cleanup(&repo, &policy, dry_run).await?;
        if self.global.json {
            print_json(&serde_json::json!({ "dry_run": dry_run, "backups": rows }));
            return Ok(0);
        }
        let verb = if dry_run { "would remove" } else { "removed" };
        for row in &rows {
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
        let removed = rows.iter().filter(|r| !r.keep).count();
        self.say(format!(
            "{} kept, {removed} {verb}{}",
            rows.len() - removed,
            if dry_run || removed == 0 {
                ""
            } else {
                " (their data is reclaimed by garbage collection)"
            }
        ));
        Ok(0)
    }

    /// `strata pin` and `strata unpin`.
    pub(crate) async fn pin(&self, wanted: &str, pin: bool) -> CommandResult {
        let storage = self.storage()?;
        let repo = self.open_storage(&storage).await?;
        let summary = strata_coordinator::resolve_backup(&repo, wanted).await?;
        set_pinned(&repo, &summary.name, pin).await?;
        self.say(format!(
            "{} backup {}",
            if pin { "pinned" } else { "unpinned" },
            summary.name
        ));
        Ok(0)
    }
}
