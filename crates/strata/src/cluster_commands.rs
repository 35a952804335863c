//! Commands that drive the cluster: backup, in-place restore, status, and `strata server`.
//! Each runs the coordinator in-process over the configured nodes, or asks the
//! coordinator of `strata server` when `--server` is given; both show the same progress
//! and print the same results.

use crate::context::{CommandResult, Context};
use crate::failure::{code, Failure};
use crate::output;
use crate::output::print_json;
use crate::progress::OperationDisplay;
use strata_api::reports::BackupSummary;
use strata_api::reports::{OpState, OperationStatus};
use strata_api::reports::{RestoreOutcome, RestorePlan};
use strata_api::verdicts::{restore_errors, restore_wrote, status_verdict, StatusVerdict};
use strata_api::{BackupRequest, Running};
use strata_server::compose;

impl Context {
    /// `strata backup`.
    pub(crate) async fn backup(
        &self,
        paths: Vec<String>,
        node_name: Option<String>,
        exclude: Vec<String>,
        wait: bool,
    ) -> CommandResult {
        let request = BackupRequest {
            paths,
            node_name,
            exclude,
        };
        let running = self.cluster().backup(request).await?;
        if !wait && self.global.server.is_some() {
            // The server goes on with it; this process only reports the start.
            let op = running.updates.borrow().clone();
            return self.started(&op);
        }
        let summary = self.watch(running).await?;
        self.report_backup(&summary)
    }

    /// Shows an operation's progress until it ends.
    async fn watch<T>(&self, running: Running<T>) -> Result<T, Failure> {
        let display = OperationDisplay::start(running.updates, self.interactive());
        let outcome = running.outcome.await;
        drop(display);
        Ok(outcome?)
    }

    fn started(&self, op: &OperationStatus) -> CommandResult {
        if self.global.json {
            print_json(op);
        } else {
            let at = self.cluster().location();
            self.say(format!(
                "{} {} started on {at}; follow it with `strata --server {at} status`",
                op.kind, op.id,
            ));
        }
        Ok(0)
    }

    /// Prints a backup summary; the exit code says whether every node made it.
    fn report_backup(&self, summary: &BackupSummary) -> CommandResult {
        if self.global.json {
            print_json(summary);
        } else if !self.global.quiet {
            println!(
                "backup {} {} in {}: {} files, {}, {} new data stored",
                summary.name,
                summary.status.as_str(),
                output::duration(summary.duration_ms),
                summary.total(|n| n.files),
                output::size(summary.total(|n| n.bytes)),
                output::size(summary.total(|n| n.new_bytes)),
            );
            println!("{}", output::nodes_table(&summary.nodes));
            crate::browse_commands::print_node_problems(summary, 5);
        }
        for paused in &summary.still_paused {
            eprintln!(
                "strata: error: backup {} left a system paused: {paused}",
                summary.name
            );
        }
        if !summary.is_complete() {
            eprintln!(
                "strata: backup {} is {}: see `strata show {}`",
                summary.name,
                summary.status.as_str(),
                summary.name
            );
            return Ok(code::PARTIAL);
        }
        if !summary.still_paused.is_empty() {
            return Ok(code::PARTIAL);
        }
        Ok(0)
    }

    /// `strata restore` without `--to`: in place into the nodes' roots.
    pub(crate) async fn cluster_restore(
        &self,
        wanted: &str,
        node: Option<String>,
        map: &[String],
        only: RestoreOnly,
        path: Option<String>,
        recovery: strata_api::requests::RecoveryArgs,
    ) -> CommandResult {
        let recovery = recovery.plan()?;
        let dry_run = only.dry_run;
        let plan = RestorePlan {
            node,
            map: strata_api::requests::node_map(map)?,
            include: path,
            components: only.components,
            rename: only.rename,
            dry_run,
            recovery,
            table: only.table,
            table_as: only.table_as,
            drop_stale_replicas: only.drop_stale_replicas,
            partitions: only.partitions,
        };
        let running = self.cluster().restore(wanted, plan).await?;
        let outcome = self.watch(running).await?;
        self.report_restore(&outcome, dry_run)
    }

    fn report_restore(&self, outcome: &RestoreOutcome, dry_run: bool) -> CommandResult {
        if self.global.json {
            print_json(outcome);
        } else {
            for n in &outcome.nodes {
                match (&n.report, &n.error) {
                    // A plugin that writes into a live system (etcd) reports itself.
                    (Some(r), _) if r.written.is_some() => self.say(format!(
                        "node {} of {} through node {}: {}",
                        n.source,
                        outcome.backup,
                        n.node,
                        r.written.as_deref().unwrap_or_default()
                    )),
                    (Some(r), _) => {
                        self.say(format!(
                            "restored node {} of {} to node {} ({}): {} files ({} written, {} already correct), {} dirs, {} removed",
                            n.source, outcome.backup, n.node, r.target, r.files, output::size(r.bytes),
                            r.files_kept, r.dirs, r.removed,
                        ));
                        if let Some(recovery) = &r.recovery {
                            // The plugin's own line names its system.
                            self.say(format!("node {}: {recovery}", n.node));
                        }
                    }
                    (None, Some(e)) => eprintln!("strata: node {} not restored: {e}", n.node),
                    (None, None) => {}
                }
            }
            for c in &outcome.components {
                match (&c.detail, &c.error, c.checklist_steps) {
                    (_, Some(e), _) => {
                        eprintln!("strata: component {} not restored: {e}", c.component)
                    }
                    // Camunda: the restore is the operator's, strata only says how.
                    (Some(detail), None, Some(steps)) => self.say(format!(
                        "component {}: restore checklist ({steps} steps), nothing written by strata: run them against the engines\n{detail}",
                        c.component
                    )),
                    (Some(detail), None, None) => {
                        self.say(format!("restored component {}: {detail}", c.component))
                    }
                    (None, None, _) => self.say(format!("restored component {}", c.component)),
                }
            }
            for e in &outcome.hook_errors {
                eprintln!("strata: {e}");
            }
            let wrote = restore_wrote(outcome);
            if dry_run {
                self.say("dry run: nothing was written");
            } else if outcome.state() == OpState::Succeeded && wrote {
                self.say(format!(
                    "every byte verified; took {}",
                    output::duration(outcome.duration_ms)
                ));
            } else if outcome.state() == OpState::Succeeded {
                self.say(format!(
                    "nothing restored by strata itself; took {}",
                    output::duration(outcome.duration_ms)
                ));
            }
        }
        match outcome.state() {
            OpState::Succeeded => Ok(0),
            OpState::Partial => Err(crate::data_commands::not_restored(
                &restore_errors(outcome),
                "",
            )),
            _ => Err(Failure::new(
                code::FAILED,
                "the restore failed on some nodes or components (see above)",
            )),
        }
    }

    /// `strata status`.
    pub(crate) async fn status(&self) -> CommandResult {
        let status = self.cluster().status().await?;
        let code = match status_verdict(&status) {
            StatusVerdict::NodeDown => code::FAILED,
            StatusVerdict::LeftPaused => code::PARTIAL,
            StatusVerdict::Healthy => 0,
        };
        if self.global.json {
            print_json(&status);
            return Ok(code);
        }
        self.say(format!("storage {}", status.storage));
        for node in &status.nodes {
            let line = match (&node.metadata, &node.error) {
                (Some(m), _) => format!(
                    "node {:<12} {:<28} strata {} (node API v{}){}",
                    node.name,
                    node.location,
                    m.version,
                    m.api_version,
                    m.lease
                        .as_ref()
                        .map(|l| format!(
                            ", leased to {} ({} s left)",
                            l.operation,
                            l.expires_in_ms / 1000
                        ))
                        .unwrap_or_default()
                ),
                (None, Some(e)) => {
                    format!("node {:<12} {:<28} DOWN: {e}", node.name, node.location)
                }
                (None, None) => format!("node {}", node.name),
            };
            self.say(line);
        }
        for lock in &status.locks {
            self.say(format!("lock: {}", lock.describe()));
        }
        for op in &status.operations {
            self.say(format!(
                "running: {} {} since {}",
                op.kind, op.id, op.started
            ));
            for n in &op.nodes {
                self.say(format!(
                    "  {:<12} {:<10} {} files, {}",
                    n.name,
                    n.phase,
                    n.progress.files,
                    output::size(n.progress.bytes)
                ));
            }
        }
        if status.operations.is_empty() && status.locks.is_empty() {
            self.say("no operation running");
        }
        for problem in &status.pause_problems {
            eprintln!("strata: paused? {problem}");
        }
        for pause in &status.paused {
            let scope = match (&pause.component, &pause.node) {
                (_, Some(node)) => format!(" (node {node})"),
                (Some(component), None) => format!(" (component {component})"),
                (None, None) => String::new(),
            };
            let line = format!(
                "paused: {}{scope} since {} by operation {}{}",
                pause.hook,
                pause.since,
                pause.operation,
                match &pause.resume_error {
                    Some(e) => format!("; its resume FAILED: {e}"),
                    None if pause.holder_alive() => String::new(),
                    None => "; its process is gone: the next backup or server resumes it".into(),
                }
            );
            // Something left paused is what an operator must see, even with -q.
            match pause.resume_error {
                Some(_) => eprintln!("strata: {line}"),
                None => self.say(line),
            }
        }
        Ok(code)
    }

    /// `strata schedules`: each job's next and last run.
    pub(crate) async fn schedules(&self) -> CommandResult {
        let jobs = self.cluster().schedules().await?;
        if self.global.json {
            print_json(&jobs);
            return Ok(0);
        }
        if jobs.is_empty() {
            self.say("no schedules configured ([[schedules]] in the config)");
        }
        for job in &jobs {
            let last = job
                .last
                .as_ref()
                .map(|r| format!("{} {} {}", r.started, r.outcome, r.detail))
                .unwrap_or_else(|| "never".into());
            self.say(format!(
                "{:<10} {:<8} {:<16} {:<14} next {}  last {}{}",
                job.name,
                job.job,
                job.cron,
                job.timezone,
                job.next.as_deref().unwrap_or("-"),
                last,
                if job.skipped > 0 {
                    format!("  ({} skipped)", job.skipped)
                } else {
                    String::new()
                }
            ));
        }
        Ok(0)
    }

    /// `strata server`.
    pub(crate) async fn server(
        &self,
        node: Option<String>,
        listen: Option<String>,
    ) -> CommandResult {
        let coordinator_password = if compose::coordinates(&self.config) {
            self.password_for(&self.storage()?).await?
        } else {
            None
        };
        let setup = compose::ServerSetup {
            config: self.config.clone(),
            tables: self.sections.tables.clone(),
            // Secrets masked; secret sources (`env`, `file`) are names and stay visible.
            config_view: serde_json::to_value(strata_api::config::Shown::new(
                &self.config,
                &self.sections,
            ))
            .map_err(|e| Failure::new(code::FAILED, e.to_string()))?,
            node,
            listen,
            events: self.local.events()?,
            coordinator_password,
            stop: self.stop.subscribe(),
        };
        compose::run(setup, |line| {
            // Scripts (and tests) read the address from this line, so it goes out at once.
            println!("{line}");
            use std::io::Write;
            let _ = std::io::stdout().flush();
        })
        .await
        .map_err(|e| match e {
            compose::ComposeError::Usage(why) => Failure::new(code::USAGE, why),
            compose::ComposeError::Config(e) => e.into(),
            compose::ComposeError::Coordinator(e) => e.into(),
            compose::ComposeError::Repo(e) => e.into(),
            compose::ComposeError::Failed(why) => Failure::new(code::FAILED, why),
        })?;
        Ok(0)
    }
}

/// What an in-place restore takes beyond nodes and paths: components, rename rules, a
/// dry run.
pub(crate) struct RestoreOnly {
    pub components: Vec<String>,
    pub rename: Vec<String>,
    pub dry_run: bool,
    /// A ClickHouse table (`DB.TABLE`) and the name it comes back under.
    pub table: Option<String>,
    pub table_as: Option<String>,
    /// ClickHouse: remove stale replicas in ZooKeeper instead of refusing.
    pub drop_stale_replicas: bool,
    /// ClickHouse, with `table`: only these partitions.
    pub partitions: Vec<String>,
}
