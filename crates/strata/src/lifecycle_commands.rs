//! Retention and garbage collection: `cleanup`, `gc`, `pin`, `unpin`.

use crate::cli::PolicyArgs;
use crate::commands::{print_json, CommandResult, Context};
use crate::failure::{code, Failure};
use crate::output;
use strata_coordinator::config::RetentionConfig;
use strata_coordinator::gc::{collect_garbage, GcReport};
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
        if !dry_run {
            self.announce(&storage.name, "cleanup", "all")?;
        }
        let work = async {
            let rows = cleanup(&repo, &policy, dry_run).await?;
            let removed = rows.iter().filter(|r| !r.keep).count();
            let wal = strata_coordinator::wal::expire(&repo, dry_run).await?;
            let gc = if (removed > 0 || !wal.removed.is_empty()) && !dry_run {
                Some(collect_garbage(&repo, false).await?)
            } else {
                None
            };
            Ok::<_, Failure>((rows, removed, wal, gc))
        }
        .await;
        let (rows, removed, wal, gc) = if dry_run {
            work?
        } else {
            self.audited(
                &repo,
                &storage.name,
                "cleanup",
                "all",
                work,
                |(rows, removed, _, _)| {
                    (
                        "succeeded",
                        format!("{} kept, {removed} removed", rows.len() - removed),
                    )
                },
            )
            .await?
        };
        if self.global.json {
            print_json(
                &serde_json::json!({ "dry_run": dry_run, "backups": rows, "wal": wal, "gc": gc }),
            );
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
        let summary_verb = if dry_run {
            "would be removed"
        } else {
            "removed"
        };
        self.say(format!(
            "{} kept, {removed} {summary_verb}",
            rows.len() - removed
        ));
        if let Some(oldest) = &wal.oldest_needed {
            self.say(format!(
                "WAL: {} files before {oldest} (the oldest kept backup's start) {summary_verb}",
                wal.removed.len()
            ));
        }
        if let Some(gc) = &gc {
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
        let storage = self.storage()?;
        let repo = self.open_storage(&storage).await?;
        let collected = collect_garbage(&repo, dry_run).await.map_err(Failure::from);
        let report = if dry_run {
            collected?
        } else {
            self.audited(&repo, &storage.name, "gc", "all", collected, |r| {
                (
                    "succeeded",
                    format!(
                        "{} packs ({} bytes) deleted",
                        r.packs_deleted, r.bytes_freed
                    ),
                )
            })
            .await?
        };
        if self.global.json {
            print_json(&report);
        } else {
            self.say_gc(&report);
        }
        Ok(0)
    }

    /// `strata pin` and `strata unpin`.
    pub(crate) async fn pin(&self, wanted: &str, pin: bool) -> CommandResult {
        let storage = self.storage()?;
        let repo = self.open_storage(&storage).await?;
        let summary = strata_coordinator::resolve_backup(&repo, wanted).await?;
        let done = set_pinned(&repo, &summary.name, pin)
            .await
            .map_err(|e| Failure::from(strata_repo::RepoError::from(e)));
        let kind = if pin { "pin" } else { "unpin" };
        self.audited(&repo, &storage.name, kind, &summary.name, done, |_| {
            ("succeeded", String::new())
        })
        .await?;
        self.say(format!(
            "{} backup {}",
            if pin { "pinned" } else { "unpinned" },
            summary.name
        ));
        Ok(0)
    }
}
