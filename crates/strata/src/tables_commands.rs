//! `strata tables ...`, `strata ttl` and `strata load`: table retention. Parse the options,
//! call the table lifecycle use cases (`strata_api::Tables`: here, or through the server
//! of `--server`), print.

use crate::context::{CommandResult, Context};
use crate::failure::{code, Failure};
use crate::output;
use crate::output::print_json;
use strata_api::types::tables::TableHistoryQuery;
use strata_api::{TablePlans, Tables, TablesFailure, TablesHere};
use strata_tables::command::{DbArgs, LoadArgs, TablesCommand};
use strata_tables::history::HistoryEntry;
use strata_tables::plan::{Step, TablePlan};
use strata_tables::run::{RunObserver, StepResult};
use strata_tables::text::{PLAN_COLUMNS, POLICY_COLUMNS};
use strata_tables::{AddOutcome, EditOutcome, Policy, RunReport, TableOutlook};
use strata_tables::{PolicySpec, RunOutcome, TableOutcome, TablesError, TtlArgs};

impl From<TablesError> for Failure {
    fn from(err: TablesError) -> Self {
        Failure::new(err.code().exit_code(), crate::failure::chain(&err))
    }
}

impl From<TablesFailure> for Failure {
    fn from(err: TablesFailure) -> Self {
        match err {
            TablesFailure::Engine(err) => err.into(),
            TablesFailure::Server(err) => err.into(),
            TablesFailure::Config(err) => err.into(),
        }
    }
}

/// The exit code of how a run ended: 1 failed, 6 busy (something was left for another
/// run), 0 otherwise.
fn outcome_code(outcome: RunOutcome) -> u8 {
    outcome.failure().map_or(0, |kind| kind.exit_code())
}

impl Context {
    /// The table lifecycle use cases here, with the command line's database options.
    fn tables_here(&self, db: &DbArgs) -> TablesHere {
        TablesHere::new(self.config.clone(), &self.sections.tables, db)
    }

    /// `tables plan --dialect cratedb`: the partitions of the layout, which expire, and
    /// every statement a run sends, in order.
    fn print_crate_plan(&self, plan: &strata_tables::cratedb::CratePlan) {
        println!(
            "{} (CrateDB): rows before {} expire; partitions are listed with:\n  {}",
            plan.table, plan.threshold, plan.discovery
        );
        let rows = plan
            .partitions
            .iter()
            .map(|p| {
                vec![
                    p.value.to_string(),
                    p.start.clone(),
                    p.end.clone(),
                    if p.expired { "expires" } else { "stays" }.to_string(),
                    p.statements.join(";\n"),
                ]
            })
            .collect();
        output::print_table(&["value", "start", "end", "", "statements"], rows, &[0]);
    }

    /// `tables sql`: the configured jobs (no database is asked).
    fn list_sql_jobs(&self) -> CommandResult {
        let jobs = &self.sections.tables.jobs;
        if self.global.json {
            print_json(jobs);
        } else if jobs.is_empty() {
            self.say("no [[tables.jobs]] in the configuration");
        } else {
            let rows = jobs
                .iter()
                .map(|j| vec![j.name.clone(), j.describe()])
                .collect();
            output::print_table(&["job", "what"], rows, &[]);
        }
        Ok(0)
    }

    /// `strata tables ...`: here, or through the server of `--server`.
    pub(crate) async fn tables(&self, db: DbArgs, command: TablesCommand) -> CommandResult {
        let here = self.tables_here(&db);
        let tables: &dyn Tables = match self.tables_server() {
            Some(server) => server,
            None => &here,
        };
        match command {
            TablesCommand::Setup | TablesCommand::Sql { .. } | TablesCommand::Archives { .. }
                if self.remote() =>
            {
                Err(Failure::new(
                    code::USAGE,
                    "only tables list, plan, history, add, edit, rm and run go through --server: run the others here, without --server",
                ))
            }
            TablesCommand::Archives { from } => self.archives(&here, from).await,
            TablesCommand::Sql { name: None, .. } => self.list_sql_jobs(),
            TablesCommand::Setup => {
                let schema = here.setup().await?;
                self.say(format!("policy tables ready in schema {schema}"));
                Ok(0)
            }
            TablesCommand::Add {
                policy,
                dry_run: true,
            } => {
                self.print_add(&tables.preview_add(*policy).await?);
                Ok(0)
            }
            TablesCommand::Add { policy, .. } => {
                let added = tables.add(*policy).await?;
                self.print_added(added.id, &added.spec);
                Ok(0)
            }
            TablesCommand::List { tags } => {
                self.print_policies(&tables.policies(tags).await?);
                Ok(0)
            }
            TablesCommand::Edit {
                id,
                dry_run: true,
                edit,
            } => {
                self.print_edit(&tables.preview_edit(id, *edit).await?);
                Ok(0)
            }
            TablesCommand::Edit { id, edit, .. } => {
                self.print_edited(&tables.edit(id, *edit).await?);
                Ok(0)
            }
            TablesCommand::Rm { id, tags } => {
                let mut removed = Vec::new();
                let result = tables.remove(id, tags, &mut |p| removed.push(p)).await;
                // What went before a failure is gone: say so first.
                if result.is_ok() || !removed.is_empty() {
                    self.print_removed(&removed);
                }
                result?;
                Ok(0)
            }
            TablesCommand::Plan {
                tags,
                cutoff,
                crate_layout,
            } => {
                let plans = tables.plan(tags, cutoff, crate_layout).await?;
                if self.global.json {
                    print_json(&plans);
                } else if let TablePlans::Crate(plan) = &plans {
                    self.print_crate_plan(plan);
                } else {
                    self.print_outlooks(&plans.outlooks());
                }
                if plans.is_empty() {
                    self.say("no policy matched");
                }
                Ok(if plans.failed() { code::FAILED } else { 0 })
            }
            TablesCommand::Run {
                tags,
                cutoff,
                dry_run,
            } => {
                let progress = StepProgress::new(self.interactive());
                let run = tables.run(tags, cutoff, dry_run, &progress).await;
                drop(progress);
                Ok(self.print_run(&run?))
            }
            TablesCommand::History {
                table,
                policy,
                tag,
                since,
                until,
                limit,
            } => {
                let query = TableHistoryQuery {
                    table,
                    policy,
                    tag,
                    since,
                    until,
                    limit: Some(limit),
                };
                self.print_history(&tables.history(query).await?);
                Ok(0)
            }
            TablesCommand::Sql {
                name: Some(name),
                dry_run,
            } => {
                let report = here.sql_job(&name, dry_run).await?;
                if self.global.json {
                    print_json(&report);
                } else {
                    if dry_run {
                        println!("{}", report.statement);
                    }
                    self.say(format!(
                        "run {}: sql job {}: {} ({})",
                        report.run_id, report.job, report.outcome, report.detail
                    ));
                }
                Ok(outcome_code(report.outcome))
            }
        }
    }

    /// A run's report (its dry-run plans, each table's error, the run's outcome), and the
    /// exit code it means: 1 a table failed, 6 one was busy.
    pub(crate) fn print_run(&self, report: &RunReport) -> u8 {
        if self.global.json {
            print_json(report);
        }
        for table in report.tables.iter().filter(|_| !self.global.json) {
            if let (Some(plan), TableOutcome::DryRun) = (&table.plan, table.outcome) {
                self.print_plan(plan);
            }
            let level = match table.outcome {
                TableOutcome::Busy => "warning",
                _ => "error",
            };
            if let Some(error) = &table.error {
                eprintln!("strata: {level}: {error}");
            } else if table.outcome == TableOutcome::NothingToDo {
                self.say(format!("{}: nothing has expired", table.table));
            }
        }
        let run_id = report.run_id.unwrap_or_default();
        self.say(format!("run {run_id}: {}", report.outcome()));
        if report.any(TableOutcome::Failed) {
            code::FAILED
        } else if report.any(TableOutcome::Busy) {
            code::BUSY
        } else {
            0
        }
    }

    /// The policies `tables rm` removed.
    pub(crate) fn print_removed(&self, removed: &[Policy]) {
        if self.global.json {
            print_json(&removed);
        }
        for policy in removed {
            self.say(format!("removed policy {}", policy.id));
        }
        if removed.is_empty() {
            self.say("no policy matched");
        }
    }

    /// A saved new policy: its id.
    pub(crate) fn print_added(&self, id: i64, spec: &PolicySpec) {
        if self.global.json {
            print_json(&serde_json::json!({ "id": id }));
        }
        let text = strata_tables::catalog::describe_spec(spec);
        self.say(format!("policy {id}: {text}"));
    }

    /// Policies as a table, or JSON.
    pub(crate) fn print_policies(&self, policies: &[Policy]) {
        if self.global.json {
            print_json(&policies);
        } else {
            let rows = policies.iter().map(|p| p.row()).collect();
            output::print_table(&POLICY_COLUMNS, rows, &[0, 7]);
        }
    }

    /// History rows as a table, or JSON.
    pub(crate) fn print_history(&self, entries: &[HistoryEntry]) {
        if self.global.json {
            print_json(&entries);
        } else {
            let rows = entries.iter().map(|e| e.row()).collect();
            output::print_table(&strata_tables::history::HISTORY_COLUMNS, rows, &[4, 5]);
        }
    }

    /// A saved edit: the policy as it now is.
    pub(crate) fn print_edited(&self, policy: &Policy) {
        if self.global.json {
            print_json(policy);
        } else {
            let spec = strata_tables::catalog::describe_spec(&policy.spec);
            self.say(format!("policy {}: {spec}", policy.id));
        }
    }

    /// An edit previewed (or saved, through a server): the edited policy and the plan of
    /// its table with it.
    pub(crate) fn print_edit(&self, outcome: &EditOutcome) {
        if self.global.json {
            print_json(outcome);
        } else {
            self.print_with_outlook(outcome.saved, &outcome.policy, &outcome.outlook);
        }
    }

    /// A new policy previewed (`tables add --dry-run`): the policy and the plan of its
    /// table with it.
    pub(crate) fn print_add(&self, outcome: &AddOutcome) {
        if self.global.json {
            print_json(outcome);
        } else {
            self.print_with_outlook(outcome.saved, &outcome.policy, &outcome.outlook);
        }
    }

    fn print_with_outlook(&self, saved: bool, policy: &Policy, outlook: &TableOutlook) {
        let spec = strata_tables::catalog::describe_spec(&policy.spec);
        let state = if saved { "" } else { " (dry run: not saved)" };
        // A new policy previewed has no id yet.
        let id = match policy.id {
            0 => "new policy".to_string(),
            id => format!("policy {id}"),
        };
        self.say(format!("{id}{state}: {spec}"));
        self.print_outlooks(std::slice::from_ref(outlook));
    }

    /// Each table's plan and the partitions that expire next.
    pub(crate) fn print_outlooks(&self, tables: &[TableOutlook]) {
        for table in tables {
            if let Some(error) = &table.error {
                eprintln!("strata: error: {}: {error}", table.table);
            }
            if let Some(plan) = &table.plan {
                self.print_plan(plan);
            }
            if !table.next.is_empty() && !self.global.quiet {
                let rows = table
                    .next
                    .iter()
                    .map(|e| {
                        vec![
                            e.policy_id.to_string(),
                            e.action.to_string(),
                            e.partition.clone(),
                            e.upper.clone(),
                            e.at.clone(),
                        ]
                    })
                    .collect();
                println!("{}: next to expire", table.table);
                output::print_table(
                    &["policy", "action", "partition", "upper bound", "expires at"],
                    rows,
                    &[0],
                );
            }
        }
    }

    /// A plan's problems and notes on stderr, its steps and kept partitions as a table.
    fn print_plan(&self, plan: &TablePlan) {
        if self.global.quiet {
            return;
        }
        for problem in &plan.problems {
            eprintln!("strata: error: {}: {problem}", plan.table);
        }
        for note in &plan.notes {
            eprintln!("strata: warning: {}: {note}", plan.table);
        }
        if plan.steps.is_empty() && plan.kept.is_empty() {
            if plan.problems.is_empty() {
                println!("{}: nothing has expired", plan.table);
            }
            return;
        }
        let rows = plan.rows(output::size);
        output::print_table(&PLAN_COLUMNS, rows, &[1, 5]);
        let total = output::size(plan.partition_bytes());
        let steps = plan.steps.len();
        println!(
            "{}: {steps} step(s), {total} in partitions acted on",
            plan.table
        );
    }

    /// `strata ttl S.T:C ACTION[:ARG] DURATION`: a policy added here.
    pub(crate) async fn ttl(&self, db: DbArgs, spec: TtlArgs) -> CommandResult {
        let added = self.tables_here(&db).ttl(spec).await?;
        self.print_added(added.id, &added.spec);
        Ok(0)
    }

    /// `strata load ARCHIVE --into S.T`.
    pub(crate) async fn load_archive(&self, db: DbArgs, load: LoadArgs) -> CommandResult {
        if load.file.file.is_some() {
            return self.load_file(db, load).await;
        }
        let loaded = self.tables_here(&db).load_archive(load).await?;
        if self.global.json {
            print_json(&loaded);
        }
        let (rows, table, recreated) = (loaded.rows, &loaded.into, loaded.recreated());
        self.say(format!("loaded {rows} rows into {table}{recreated}"));
        Ok(0)
    }

    /// `strata load --file PATH|URL --into S.T`.
    async fn load_file(&self, db: DbArgs, load: LoadArgs) -> CommandResult {
        let progress =
            FileProgress::new(self.interactive(), load.file.verbose && !self.global.quiet);
        let report = self.tables_here(&db).load_file(&load, &progress).await;
        progress.finish();
        let report = report?;
        if self.global.json {
            print_json(&report);
            return Ok(0);
        }
        let (rows, into, file) = (report.rows, &report.into, &report.file);
        if report.dry_run {
            if !self.global.quiet {
                let columns = report
                    .columns
                    .iter()
                    .map(|c| vec![c.name.clone(), c.type_name.clone()])
                    .collect();
                output::print_table(&["column", "type"], columns, &[]);
            }
            let create = if report.created { ", creating it" } else { "" };
            self.say(format!(
                "dry run: would load {rows} rows into {into}{create} from {file}; nothing changed"
            ));
        } else {
            let created = if report.created {
                " (table created)"
            } else {
                ""
            };
            self.say(format!(
                "loaded {rows} rows into {into}{created} from {file} in {:.1} s",
                report.seconds
            ));
        }
        Ok(0)
    }

    /// `strata tables archives [--from STORAGE]`.
    async fn archives(&self, here: &TablesHere, from: Option<String>) -> CommandResult {
        let (name, archives) = here.archives(from).await?;
        if self.global.json {
            print_json(&archives);
        } else {
            archives.iter().for_each(|archive| println!("{archive}"));
        }
        if archives.is_empty() {
            self.say(format!("no table archives in storage {name}"));
        }
        Ok(0)
    }
}

/// Prints each step of a run as it ends (not only when the whole run is over), with a
/// spinner naming the step in progress when stderr is a terminal: archiving a large
/// partition takes a while.
struct StepProgress {
    enabled: bool,
    spinner: std::sync::Mutex<Option<indicatif::ProgressBar>>,
}

impl StepProgress {
    fn new(enabled: bool) -> StepProgress {
        let spinner = std::sync::Mutex::new(None);
        StepProgress { enabled, spinner }
    }
}

impl RunObserver for StepProgress {
    fn step_started(&self, table: &str, step: &Step) {
        use std::io::IsTerminal;
        if !self.enabled || !std::io::stderr().is_terminal() {
            return;
        }
        let spinner = indicatif::ProgressBar::new_spinner();
        let style = indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})");
        spinner.set_style(style.expect("valid template"));
        let size = step
            .bytes
            .map(|b| format!(", {}", output::size(b.max(0) as u64)));
        let (action, object) = (step.action, step.object());
        spinner.set_message(format!(
            "{table} {action} {object}{}",
            size.unwrap_or_default()
        ));
        spinner.enable_steady_tick(std::time::Duration::from_millis(120));
        *self.spinner.lock().unwrap() = Some(spinner);
    }

    fn step_finished(&self, table: &str, result: &StepResult) {
        if let Some(spinner) = self.spinner.lock().unwrap().take() {
            spinner.finish_and_clear();
        }
        if self.enabled {
            let (step, outcome, detail) = (&result.step, &result.outcome, &result.detail);
            let (action, object) = (step.action, step.object());
            println!("{table} {action} {object}: {outcome} ({detail})");
        }
    }
}

/// Progress of `strata load --file` on stderr: a bar on a terminal, or with `-v` a line
/// every few seconds (rows, bytes of the file read, rate).
struct FileProgress {
    bar: Option<indicatif::ProgressBar>,
    lines: bool,
    started: std::time::Instant,
    last_line: std::sync::Mutex<std::time::Instant>,
}

impl FileProgress {
    fn new(interactive: bool, verbose: bool) -> FileProgress {
        use std::io::IsTerminal;
        let bar = (interactive && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new(0);
            let style = indicatif::ProgressStyle::with_template(
                "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ({elapsed})",
            );
            bar.set_style(style.expect("valid template"));
            bar
        });
        let now = std::time::Instant::now();
        FileProgress {
            lines: bar.is_none() && verbose,
            bar,
            started: now,
            last_line: std::sync::Mutex::new(now),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl strata_tables::load_file::LoadObserver for FileProgress {
    fn progress(&self, phase: strata_tables::load_file::Phase, rows: u64, bytes: u64, total: u64) {
        let what = match phase {
            strata_tables::load_file::Phase::Scanning => "scanning",
            strata_tables::load_file::Phase::Loading => "loading",
        };
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(bytes);
            bar.set_message(format!("{what}: {rows} rows"));
            return;
        }
        if !self.lines {
            return;
        }
        let mut last = self.last_line.lock().unwrap();
        if last.elapsed() < std::time::Duration::from_secs(2) {
            return;
        }
        *last = std::time::Instant::now();
        let seconds = self.started.elapsed().as_secs_f64().max(0.001);
        eprintln!(
            "strata: {what}: {rows} rows, {} of {}, {}/s",
            output::size(bytes),
            output::size(total),
            output::size((bytes as f64 / seconds) as u64)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_exits_by_its_outcome() {
        assert_eq!(outcome_code(RunOutcome::Failed), code::FAILED);
        assert_eq!(outcome_code(RunOutcome::Busy), code::BUSY);
        for fine in [
            RunOutcome::Done,
            RunOutcome::NothingToDo,
            RunOutcome::DryRun,
        ] {
            assert_eq!(outcome_code(fine), 0);
        }
    }
}
