//! The use cases on one repository, written once: delete, gc, cleanup, verify, restore
//! drill, copy, pin and unpin, repair, and a restore into a directory of this host.
//!
//! The CLI (local mode), the API handlers and the scheduler all call these; none of them
//! re-states a rule. Each method takes *who* asked and does, in this order and only here,
//! what every way in must do: the refusals (`latest`, pins), the cluster lock where the
//! action changes what a running backup relies on, the webhook that it started, the
//! work, the counters for `/metrics`, and the audit entry with its one-line detail.
//! Backups and restores, which need the nodes, are [`crate::coordinator::Coordinator::backup`]
//! and [`crate::coordinator::Coordinator::restore`]; a coordinator hands out its
//! [`Actions`] with [`crate::coordinator::Coordinator::actions`], and a command line without
//! a coordinator builds them with [`Actions::new`] for each repository it acts on.

use crate::config::RetentionConfig;
use crate::copy::CopyReport;
use crate::events::{Activity, Events};
use crate::gc::GcReport;
use crate::lock::RepoLock;
use crate::repair::{BackupsRepairReport, IndexRepairReport};
use crate::retention::CleanupReport;
use crate::stats::OperationStats;
use crate::verify::{DataCheck, DrillReport, VerifyReport};
use crate::{CoordinatorError, CoordinatorResult};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strata_repo::summary::BackupSummary;
use strata_repo::writer::WriterOptions;
use strata_repo::Repository;

/// One repository to act on, with how this process reports and counts what it does.
#[derive(Clone)]
pub struct Actions {
    repo: Arc<Repository>,
    storage: String,
    events: Arc<Events>,
    lease_ttl: Duration,
    gc_grace: Duration,
    stats: Arc<Mutex<OperationStats>>,
    /// The external components whose snapshots go with the backups deleted.
    external: crate::external_delete::ExternalDeletes,
}

/// The refusal of `latest` where only an explicit name will do (delete): one rule for the
/// CLI, which checks before it searches its storages, and the API.
pub fn refuse_latest(wanted: &str) -> CoordinatorResult<()> {
    if wanted == "latest" {
        return Err(CoordinatorError::Invalid(
            "name backups to delete explicitly, not `latest`".into(),
        ));
    }
    Ok(())
}

/// A percentage of packs to read (`5%` or `5`), above 0 and at most 100; `None` when the
/// text is not one. Callers name their own option in the message.
pub fn parse_percent(text: &str) -> Option<f64> {
    text.trim()
        .trim_end_matches('%')
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|p| percent_ok(*p))
}

/// Whether `p` is a percentage a subset check accepts: above 0, at most 100.
pub fn percent_ok(p: f64) -> bool {
    p > 0.0 && p <= 100.0
}

/// The audit outcome and detail line of a finished verification.
pub fn verify_outcome(report: &VerifyReport, check: DataCheck) -> (&'static str, String) {
    if report.is_ok() {
        (
            "succeeded",
            format!(
                "{} backups, {} files ({})",
                report.backups,
                report.files,
                check.mode()
            ),
        )
    } else {
        (
            "failed",
            format!(
                "{} problems; first: {}",
                report.problems.len(),
                report.problems[0]
            ),
        )
    }
}

impl Actions {
    /// Actions on `repo` of storage `storage`, reported to `events`; `lease_ttl` is the
    /// cluster lock's lease, `gc_grace` garbage collection's grace for unindexed packs.
    /// Counts go to a fresh counter (see [`Actions::with_stats`]).
    pub fn new(
        repo: Arc<Repository>,
        storage: &str,
        events: Arc<Events>,
        lease_ttl: Duration,
        gc_grace: Duration,
    ) -> Actions {
        Actions {
            repo,
            storage: storage.to_string(),
            events,
            lease_ttl: lease_ttl.max(Duration::from_millis(300)),
            gc_grace,
            stats: Arc::default(),
            external: Default::default(),
        }
    }

    /// The same, deleting the snapshots of `components`' external systems with the
    /// backups that recorded them (see [`crate::external_delete`]).
    pub fn with_components(mut self, components: &[crate::component::Component]) -> Actions {
        self.external = crate::external_delete::ExternalDeletes::of(components);
        self
    }

    /// The same, counting into `stats` (a coordinator's, for `/metrics`).
    pub fn with_stats(mut self, stats: Arc<Mutex<OperationStats>>) -> Actions {
        self.stats = stats;
        self
    }

    /// The repository acted on.
    pub fn repo(&self) -> &Arc<Repository> {
        &self.repo
    }

    /// The name of its storage.
    pub fn storage(&self) -> &str {
        &self.storage
    }

    pub(crate) fn action<'a>(who: &'a str, kind: &'a str, target: &'a str) -> Activity<'a> {
        Activity {
            who,
            kind,
            target,
            operation: None,
        }
    }

    /// Records how `action` ended: `describe` turns a success into its outcome and line,
    /// an error is `failed` with its cause chain.
    pub(crate) async fn finish<T>(
        &self,
        action: &Activity<'_>,
        result: &CoordinatorResult<T>,
        describe: impl FnOnce(&T) -> (&'static str, String),
    ) {
        let (outcome, detail) = match result {
            Ok(value) => describe(value),
            Err(err) => ("failed", crate::error_chain(err)),
        };
        self.events
            .finished(&self.repo, &self.storage, action, outcome, &detail)
            .await;
    }

    /// Deletes backup `wanted` (a name or unique prefix; never `latest`) under the cluster
    /// lock, so an operation that holds it (a backup, an in-place restore, a copy into
    /// this repository) is not disturbed: while one runs the delete is refused as busy and
    /// removes nothing. Readers without the lock (`restore --to`, verify, a copy from
    /// here) run beside it and find moved blobs again. A pinned backup is refused. Its data
    /// stays until [`Actions::collect_garbage`]. Audited once the backup is known.
    pub async fn delete(&self, who: &str, wanted: &str) -> CoordinatorResult<BackupSummary> {
        refuse_latest(wanted)?;
        let found = crate::resolve_backup(&self.repo, wanted).await?;
        let result = self.delete_locked(&found).await;
        let action = Self::action(who, "delete", &found.name);
        self.finish(&action, &result, |_| ("succeeded", String::new()))
            .await;
        result.map(|()| found)
    }

    async fn delete_locked(&self, found: &BackupSummary) -> CoordinatorResult<()> {
        let name = found.name.as_str();
        let pins = crate::pins::pinned_among(&self.repo, &[name]).await?;
        if pins.contains(name) {
            return Err(CoordinatorError::Pinned(name.to_string()));
        }
        let id = format!("delete-{}", crate::names::new_backup_name());
        // Renewed: an external system's delete may take longer than one lease.
        let lock = RepoLock::acquire(self.repo.store().clone(), &id, "delete", self.lease_ttl)
            .await?
            .keep_renewed();
        // Parts of attempts and deletes that did not finish, first.
        for line in self
            .external
            .finish_unfinished(&self.repo, None, || lock.check())
            .await
        {
            eprintln!("strata: {line}");
        }
        // The systems' snapshots (see `crate::external_delete`): a plugin with a ledger
        // has its parts recorded now and deleted after the summary; another's snapshot
        // is deleted now, and one that cannot be keeps the backup.
        let deleting = match self.external.before_delete(found).await {
            Ok(deleting) => deleting,
            Err(why) => {
                lock.release().await;
                return Err(CoordinatorError::External(format!(
                    "backup {name} is kept: {why}; delete the snapshot in its system (or fix it) and try again"
                )));
            }
        };
        for line in &deleting.said {
            eprintln!("strata: backup {name}: {line}");
        }
        // Still ours after the systems' deletes (a stall past the lease lets another
        // process take the repository): nothing is deleted otherwise. The ledger's
        // entries of this backup are its own again while its summary stays.
        if let Err(lost) = lock.check() {
            drop(deleting);
            lock.release().await;
            return Err(CoordinatorError::LockLost(format!(
                "backup {name} was not deleted: {lost}"
            )));
        }
        if let Err(err) = self.repo.delete_backup(name).await {
            drop(deleting);
            lock.release().await;
            return Err(err.into());
        }
        crate::listing::compact(&self.repo, true).await;
        // Gone from strata: now the engines' parts.
        let (said, engines) = deleting.finish().await;
        for line in said {
            eprintln!("strata: backup {name}: {line}");
        }
        lock.release().await;
        engines.map_err(|why| {
            CoordinatorError::External(format!(
                "backup {name} is deleted (never restorable again), but {why}"
            ))
        })
    }

    /// Collects garbage as a step of another action (after a delete or a cleanup):
    /// counted for metrics when it changes anything, not audited on its own.
    pub async fn collect_garbage(&self, dry_run: bool) -> CoordinatorResult<GcReport> {
        let clock = Instant::now();
        let result = crate::gc::collect_garbage_with(&self.repo, dry_run, self.gc_grace).await;
        if !dry_run {
            let freed = result.as_ref().ok().map(|r| r.bytes_freed);
            self.stats.lock().unwrap().collected(freed, clock.elapsed());
        }
        Ok(result?)
    }

    /// `gc`: deletes the packs no backup uses; audited unless a dry run.
    pub async fn gc(&self, who: &str, dry_run: bool) -> CoordinatorResult<GcReport> {
        let result = self.collect_garbage(dry_run).await;
        if !dry_run {
            let action = Self::action(who, "gc", "all");
            self.finish(&action, &result, |r| {
                (
                    "succeeded",
                    format!(
                        "{} packs ({} bytes) deleted",
                        r.packs_deleted, r.bytes_freed
                    ),
                )
            })
            .await;
        }
        result
    }

    /// `cleanup`: applies `policy` (refused when it keeps nothing), expires old WAL and
    /// collects garbage if anything went (see [`crate::retention::apply`]). Unless a dry
    /// run: announced, counted and audited.
    pub async fn cleanup(
        &self,
        who: &str,
        policy: &RetentionConfig,
        dry_run: bool,
    ) -> CoordinatorResult<CleanupReport> {
        policy.check().map_err(CoordinatorError::Invalid)?;
        let action = Self::action(who, "cleanup", "all");
        if dry_run {
            return crate::retention::apply(&self.repo, policy, true, &self.external, || {
                self.collect_garbage(false)
            })
            .await;
        }
        self.events.started(&action, &self.storage);
        let clock = Instant::now();
        let result = crate::retention::apply(&self.repo, policy, false, &self.external, || {
            self.collect_garbage(false)
        })
        .await;
        let outcome = if result.is_ok() {
            "succeeded"
        } else {
            "failed"
        };
        self.stats
            .lock()
            .unwrap()
            .finished("cleanup", outcome, clock.elapsed());
        self.finish(&action, &result, |r| ("succeeded", r.summary()))
            .await;
        result
    }

    /// `verify`: one backup (by its exact name) or all, recording the outcome per backup;
    /// announced, counted (a run that found problems and one that could not finish are
    /// both failures) and audited.
    pub async fn verify(
        &self,
        who: &str,
        backup: Option<&str>,
        check: DataCheck,
    ) -> CoordinatorResult<VerifyReport> {
        let target = backup.unwrap_or("all");
        let action = Self::action(who, "verify", target);
        self.events.started(&action, &self.storage);
        let clock = Instant::now();
        let result = crate::verify::verify_and_record(&self.repo, backup, check).await;
        let ok = matches!(&result, Ok(report) if report.is_ok());
        self.stats.lock().unwrap().verified(ok, clock.elapsed());
        self.finish(&action, &result, |r| verify_outcome(r, check))
            .await;
        result
    }

    /// `verify --restore`: a restore drill of `summary` in a scratch directory under
    /// `state_dir` (removed afterwards, marked while it exists: see
    /// [`crate::scratch_space`]), recorded as the backup's last verification; announced
    /// and audited as a verification. What killed drills and table restores left is
    /// stopped and removed first, each said in a `warning:` line of the report's
    /// `database` lines.
    pub async fn drill(
        &self,
        who: &str,
        summary: &BackupSummary,
        state_dir: &Path,
    ) -> CoordinatorResult<DrillReport> {
        let action = Self::action(who, "verify", &summary.name);
        self.events.started(&action, &self.storage);
        let warnings = crate::scratch_space::sweep(state_dir);
        let scratch = state_dir.join(format!("restore-drill-{}", summary.name));
        let mut result = match crate::scratch_space::ScratchLease::take(
            state_dir,
            &scratch,
            &format!("restore drill of backup {}", summary.name),
        ) {
            Ok(lease) => {
                let result = crate::verify::drill_and_record(&self.repo, summary, &scratch).await;
                drop(lease);
                result
            }
            Err(e) => Err(e),
        };
        if let Ok(report) = &mut result {
            let lines = warnings.into_iter().map(|w| format!("warning: {w}"));
            report.database.splice(0..0, lines);
        }
        self.finish(&action, &result, DrillReport::outcome).await;
        result
    }

    /// `restore --table` / `--database`: tables (or a database) of the PostgreSQL backup
    /// `summary` brought back into the live database without touching the running
    /// cluster ([`crate::table_restore`]); announced and audited.
    pub async fn restore_tables(
        &self,
        who: &str,
        config: &crate::config::Config,
        summary: &BackupSummary,
        request: &crate::table_restore::TableRestore,
        say: &(dyn Fn(&str) + Sync),
    ) -> CoordinatorResult<crate::table_restore::TableRestoreReport> {
        let action = Self::action(who, "table-restore", &summary.name);
        self.events.started(&action, &self.storage);
        let result = crate::table_restore::restore_tables(
            self.repo.clone(),
            config,
            summary,
            request,
            &config.state_dir(),
            say,
        )
        .await;
        self.finish(&action, &result, |r| ("succeeded", r.lines.join("; ")))
            .await;
        result
    }

    /// `copy`: copies `summary` from this repository to the one `open_target` opens
    /// (with its index), audited here, in the repository the backup came from: a target
    /// that cannot be opened is a failed copy too.
    pub async fn copy(
        &self,
        who: &str,
        summary: &BackupSummary,
        open_target: impl std::future::Future<Output = CoordinatorResult<Arc<Repository>>>,
        target_storage: &str,
        writer_options: WriterOptions,
    ) -> CoordinatorResult<CopyReport> {
        let action = Self::action(who, "copy", &summary.name);
        let result = match open_target.await {
            Ok(target) => {
                crate::copy::copy_backup(self.repo.clone(), target, summary, writer_options).await
            }
            Err(err) => Err(err),
        };
        self.finish(&action, &result, |r| {
            (
                "succeeded",
                format!("to storage {target_storage}: {} blobs sent", r.blobs_sent),
            )
        })
        .await;
        result
    }

    /// `restore --to`: the nodes of `summary` into a directory of this host (see
    /// [`crate::restore::run_restore`]), without the cluster's nodes; announced and
    /// audited (`failed` when any entry could not be restored).
    pub async fn restore_into(
        &self,
        who: &str,
        summary: &BackupSummary,
        to: &Path,
        node: Option<&str>,
        options: strata_agent::restore::RestoreOptions,
    ) -> CoordinatorResult<Vec<crate::restore::DirRestore>> {
        let action = Self::action(who, "restore", &summary.name);
        self.events.started(&action, &self.storage);
        let result =
            crate::restore::run_restore(self.repo.clone(), summary, to, node, options).await;
        self.finish(&action, &result, |nodes| {
            let failed: usize = nodes.iter().map(|r| r.report.errors.len()).sum();
            let into = format!("into {}", to.display());
            if failed == 0 {
                ("succeeded", format!("{} nodes {into}", nodes.len()))
            } else {
                ("failed", format!("{failed} entries not restored {into}"))
            }
        })
        .await;
        result
    }

    /// `pin` and `unpin`: backup `wanted` (a name, unique prefix or `latest`) kept from
    /// retention and delete, or no longer; audited.
    pub async fn pin(
        &self,
        who: &str,
        wanted: &str,
        pinned: bool,
    ) -> CoordinatorResult<BackupSummary> {
        let found = crate::resolve_backup(&self.repo, wanted).await?;
        let result = crate::pins::set_pinned(&self.repo, &found.name, pinned)
            .await
            .map_err(CoordinatorError::Repo);
        let action = Self::action(who, if pinned { "pin" } else { "unpin" }, &found.name);
        self.finish(&action, &result, |_| ("succeeded", String::new()))
            .await;
        result.map(|()| found)
    }

    /// `repair index`: announced and audited unless a dry run.
    pub async fn repair_index(
        &self,
        who: &str,
        dry_run: bool,
    ) -> CoordinatorResult<IndexRepairReport> {
        let action = Self::action(who, "repair-index", "index");
        if dry_run {
            return crate::repair::repair_index(&self.repo, true).await;
        }
        self.events.started(&action, &self.storage);
        let result = crate::repair::repair_index(&self.repo, false).await;
        self.finish(&action, &result, |r| ("succeeded", r.summary()))
            .await;
        result
    }

    /// `repair backups`: announced and audited unless a dry run.
    pub async fn repair_backups(
        &self,
        who: &str,
        dry_run: bool,
    ) -> CoordinatorResult<BackupsRepairReport> {
        let action = Self::action(who, "repair-backups", "all");
        if dry_run {
            return crate::repair::repair_backups(&self.repo, true).await;
        }
        self.events.started(&action, &self.storage);
        let result = crate::repair::repair_backups(&self.repo, false).await;
        self.finish(&action, &result, |r| ("succeeded", r.summary()))
            .await;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_repo::summary::BackupStatus;
    use strata_store::{DynStore, LocalStore};

    async fn repo_with(names: &[&str]) -> (tempfile::TempDir, Arc<Repository>) {
        let dir = tempfile::tempdir().unwrap();
        let store: DynStore = Arc::new(LocalStore::new(dir.path()));
        let options = strata_testkit::repo::fast_init();
        let repo = Repository::init(store, Some("pw"), options).await.unwrap();
        for (i, name) in names.iter().enumerate() {
            let summary = BackupSummary {
                name: name.to_string(),
                started: format!("2026-11-2{i}T00:00:00.000Z"),
                host_started: None,
                duration_ms: 1,
                status: BackupStatus::Complete,
                strata_version: "test".into(),
                nodes: Vec::new(),
                requests: None,
                components: Vec::new(),
                still_paused: Vec::new(),
            };
            repo.save_summary(&summary).await.unwrap();
        }
        (dir, repo)
    }

    fn actions(repo: &Arc<Repository>) -> Actions {
        Actions::new(
            repo.clone(),
            "main",
            Events::audit_only(),
            Duration::from_secs(5),
            crate::gc::DEFAULT_GRACE,
        )
    }

    fn names(backups: Vec<BackupSummary>) -> Vec<String> {
        backups.into_iter().map(|b| b.name).collect()
    }

    /// Whoever asks (the CLI, the API), a delete while another operation holds the
    /// cluster is refused as busy and removes nothing; a pinned backup and `latest` are
    /// refused; every refusal of a known backup is in the audit log.
    #[tokio::test]
    async fn delete_refuses_busy_pinned_and_latest_and_removes_nothing() {
        let (_dir, repo) =
            repo_with(&["20261120T000000Z-00000001", "20261121T000000Z-00000002"]).await;
        let all = names(repo.list_backups().await.unwrap());
        let acts = actions(&repo);

        let held = RepoLock::acquire(
            repo.store().clone(),
            "backup-1",
            "backup",
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        let err = acts
            .delete("local:a@h", "20261120T000000Z-00000001")
            .await
            .unwrap_err();
        assert!(matches!(err, CoordinatorError::Busy(_)), "{err}");
        assert_eq!(names(repo.list_backups().await.unwrap()), all);
        held.release().await;

        let err = acts.delete("token:ci", "latest").await.unwrap_err();
        assert!(matches!(err, CoordinatorError::Invalid(_)), "{err}");
        acts.pin("token:ci", "20261121", true).await.unwrap();
        let err = acts
            .delete("token:ci", "20261121T000000Z-00000002")
            .await
            .unwrap_err();
        assert!(matches!(err, CoordinatorError::Pinned(_)), "{err}");
        assert_eq!(names(repo.list_backups().await.unwrap()), all);

        let gone = acts.delete("token:ci", "20261120").await.unwrap();
        assert_eq!(gone.name, "20261120T000000Z-00000001");
        assert_eq!(
            names(repo.list_backups().await.unwrap()),
            vec!["20261121T000000Z-00000002".to_string()]
        );
        // Entries of one millisecond have no order among them: compared as a set.
        let mut log: Vec<(String, String, String)> = crate::audit::read(&repo, 0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.action, e.outcome, e.who))
            .collect();
        log.sort();
        let entry = |a: &str, o: &str, w: &str| (a.to_string(), o.to_string(), w.to_string());
        let mut expected = vec![
            entry("delete", "failed", "local:a@h"),
            entry("pin", "succeeded", "token:ci"),
            entry("delete", "failed", "token:ci"),
            entry("delete", "succeeded", "token:ci"),
        ];
        expected.sort();
        assert_eq!(log, expected);
    }

    #[test]
    fn percentages_are_above_zero_and_at_most_a_hundred() {
        assert_eq!(parse_percent("5%"), Some(5.0));
        assert_eq!(parse_percent(" 12.5 "), Some(12.5));
        assert_eq!(parse_percent("100%"), Some(100.0));
        for bad in ["0", "0%", "101", "-3", "five", "", "NaN"] {
            assert_eq!(parse_percent(bad), None, "{bad}");
        }
    }
}
