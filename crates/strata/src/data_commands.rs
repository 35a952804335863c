//! What is done with a backup's data: `restore --to` a directory here, `delete`, `copy`,
//! `verify`.

use crate::context::{CommandResult, Context};
use crate::failure::{code, Failure};
use crate::output;
use crate::output::print_json;
use crate::progress;
use std::path::Path;
use strata_api::reports::BackupSummary;
use strata_api::reports::{DataCheck, VerifyReport};
use strata_api::requests::RestoreOptions;

/// The entries a restore could not bring back (the first 20 on stderr), as the failure
/// they make: exit 4.
pub(crate) fn not_restored(errors: &[String], advice: &str) -> Failure {
    for line in errors.iter().take(20) {
        eprintln!("strata: not restored: {line}");
    }
    let count = errors.len();
    let message = format!("{count} entries could not be restored{advice}");
    Failure::new(code::DAMAGED, message)
}

impl Context {
    pub(crate) async fn restore(
        &self,
        wanted: &str,
        to: &Path,
        node: Option<&str>,
        path: Option<String>,
    ) -> CommandResult {
        let options = RestoreOptions::default();
        let clock = std::time::Instant::now();
        let display =
            progress::Display::start(options.progress.clone(), "restoring", self.interactive());
        let restored = (self
            .local
            .restore_to_dir(wanted, to, node, path.as_deref(), options))
        .await;
        drop(display);
        let restored = restored?;
        let (summary, skipped) = (&restored.summary, &restored.skipped);
        for r in &restored.restored {
            for warning in &r.report.warnings {
                eprintln!("strata: warning: {}: {warning}", r.node);
            }
        }
        let errors = restored.errors();
        let restored = &restored.restored;
        if self.global.json {
            print_json(&serde_json::json!({
                "backup": summary.name,
                "skipped": skipped.iter().map(|(component, why)| serde_json::json!({
                    "component": component, "why": why,
                })).collect::<Vec<_>>(),
                "nodes": restored.iter().map(|r| serde_json::json!({
                    "node": r.node, "target": r.target, "files": r.report.files, "dirs": r.report.dirs,
                    "symlinks": r.report.symlinks, "hard_links": r.report.hard_links,
                    "bytes": r.report.bytes, "files_kept": r.report.files_kept, "errors": r.report.errors,
                    "warnings": r.report.warnings,
                })).collect::<Vec<_>>(),
            }));
        } else {
            for r in restored {
                self.say(format!(
                    "restored node {} of {} into {}: {} files ({} written, {} already correct), {} dirs, {} symlinks, {} hard links",
                    r.node, summary.name, r.target.display(), r.report.files, output::size(r.report.bytes),
                    r.report.files_kept, r.report.dirs, r.report.symlinks, r.report.hard_links,
                ));
            }
            for (component, why) in skipped {
                self.say(format!(
                    "skipped component {component}: not restored into {}: {why}",
                    to.display()
                ));
            }
            self.say(format!(
                "every byte verified; took {}",
                output::duration(clock.elapsed().as_millis() as u64)
            ));
        }
        if !errors.is_empty() {
            let advice = " (run `strata verify --read-data` for details)";
            return Err(not_restored(&errors, advice));
        }
        Ok(0)
    }

    pub(crate) async fn delete(&self, wanted: &[String]) -> CommandResult {
        let mut say_deleted =
            |summary: BackupSummary| self.say(format!("deleted backup {}", summary.name));
        let collected = self.cluster().delete(wanted, &mut say_deleted).await?;
        if !self.global.json {
            collected.iter().for_each(|report| self.say_gc(report));
        }
        Ok(0)
    }

    pub(crate) async fn verify(&self, backup: Option<&str>, check: DataCheck) -> CommandResult {
        let report = self.cluster().verify(backup, check).await?;
        self.say_verify(&report, check)
    }

    /// Prints what a verification found (here or on the server); exit 4 on damage.
    fn say_verify(&self, report: &VerifyReport, check: DataCheck) -> CommandResult {
        let read_data = check != DataCheck::Structure;
        if self.global.json {
            print_json(report);
        } else {
            self.say(format!(
                "checked {} backups, {} manifests, {} files; {} packs and {} blobs read ({})",
                report.backups,
                report.manifests,
                report.files,
                report.packs_checked,
                report.blobs_checked,
                output::size(report.bytes_read)
            ));
            for name in &report.deleted_meanwhile {
                self.say(format!(
                    "backup {name} was deleted while verify ran: what was gone of it is not damage"
                ));
            }
        }
        if report.is_ok() {
            self.say(if check == DataCheck::All {
                "no problems found: every blob is intact"
            } else if read_data {
                "no problems found in the packs read"
            } else {
                "no problems found (structure only; --read-data checks every byte)"
            });
            return Ok(0);
        }
        for problem in &report.problems {
            eprintln!("strata: problem: {problem}");
        }
        for file in &report.damaged_files {
            eprintln!(
                "strata: damaged: backup {} node {}: {}",
                file.backup, file.node, file.path
            );
        }
        Err(Failure::new(
            code::DAMAGED,
            format!(
                "verify found {} problems affecting {} files",
                report.problems.len(),
                report.damaged_files.len()
            ),
        ))
    }
    pub(crate) async fn copy(&self, wanted: &str, to: &str) -> CommandResult {
        let report = self.cluster().copy(wanted, to).await?;
        if self.global.json {
            print_json(&report);
        } else {
            self.say(format!(
                "copied backup {} to storage {to}: {} of {} blobs sent ({}), {} verified",
                report.backup,
                report.blobs_sent,
                report.blobs,
                output::size(report.bytes_sent),
                report.blobs_verified
            ));
        }
        Ok(0)
    }
}

impl Context {
    /// `strata restore BACKUP --table SCHEMA.TABLE ...`: tables back from a PostgreSQL
    /// backup, without touching the running cluster.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn restore_tables(
        &self,
        wanted: &str,
        tables: Vec<String>,
        database: Option<String>,
        rename: Option<String>,
        dump: Option<std::path::PathBuf>,
        node: Option<String>,
        recovery: strata_api::requests::RecoveryArgs,
    ) -> CommandResult {
        let database = database.ok_or_else(|| {
            Failure::new(
                code::USAGE,
                "--table needs --database NAME: the database the tables are in",
            )
        })?;
        let target = recovery.target()?;
        let request = strata_api::requests::TableRestore {
            database,
            tables,
            rename,
            dump,
            target,
            node,
            stop: None,
        };
        let quiet = self.global.quiet || self.global.json;
        let say = move |line: &str| {
            if !quiet {
                println!("{line}");
            }
        };
        let report = match self.remote() && request.dump.is_none() {
            // Through the server: on its host, into the live database it reaches.
            true => {
                let body = strata_api::types::TableRestoreBody::from_request(request);
                say("asking the server to bring them back (on its host; this takes a restore's time)");
                self.cluster().restore_tables(wanted, body).await?
            }
            // A SIGTERM stops it at its next step before the load (never during the load):
            // the scratch server is stopped and its files removed at once.
            false => {
                let request = strata_api::requests::TableRestore {
                    stop: Some(self.stop.subscribe()),
                    ..request
                };
                self.local.restore_tables(wanted, &request, &say).await?
            }
        };
        if self.global.json {
            print_json(&report);
        } else {
            for line in &report.lines {
                self.say(format!("  {line}"));
            }
            self.say(format!(
                "back from backup {} (node {}); the scratch copy is removed",
                report.backup, report.node
            ));
        }
        Ok(0)
    }
}

impl Context {
    /// `strata verify --restore BACKUP`: here, or with --server on the server's host.
    pub(crate) async fn restore_drill(&self, wanted: &str) -> CommandResult {
        let report = self.cluster().drill(wanted).await?;
        if self.global.json {
            print_json(&report);
        } else {
            self.say(format!(
                "restore drill of {}: {} nodes, {} files ({}) restored, verified and checked against the manifests; scratch copy removed",
                report.backup,
                report.nodes,
                report.files,
                crate::output::size(report.bytes)
            ));
            for line in &report.database {
                self.say(format!("  {line}"));
            }
        }
        if report.problems.is_empty() {
            return Ok(0);
        }
        for problem in &report.problems {
            eprintln!("strata: problem: {problem}");
        }
        Err(Failure::new(
            code::DAMAGED,
            format!(
                "the restore drill of {} found {} problems",
                report.backup,
                report.problems.len()
            ),
        ))
    }
}
