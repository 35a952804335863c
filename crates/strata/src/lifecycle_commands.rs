//! Retention and garbage collection: `cleanup`, `gc`, `pin`, `unpin`.

use crate::context::{CommandResult, Context};
use crate::output;
use crate::output::print_json;
use strata_api::config::PolicyOverrides;
use strata_api::reports::CleanupReport;
use strata_api::reports::GcReport;

impl Context {
    /// `strata cleanup`.
    pub(crate) async fn cleanup(&self, dry_run: bool, rules: PolicyOverrides) -> CommandResult {
        let policy = (!rules.is_empty()).then(|| rules.over(&self.config.retention));
        // The configured policy is the server's own when --server is given.
        let report = self.cluster().cleanup(dry_run, policy).await?;
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
