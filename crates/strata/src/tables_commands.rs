//! `strata tables ...`, `strata ttl` and `strata load`: table retention. Thin: parse the
//! options, connect, call strata-tables, print.

use crate::cli::{TablesCommand, TablesDb, TagArgs, TtlOptions};
use crate::commands::{print_json, CommandResult, Context};
use crate::failure::{code, Failure};
use crate::output;
use strata_coordinator::storage::Storage;
use strata_store::DynStore;
use strata_tables::plan::{Step, StepKind, TablePlan};
use strata_tables::{
    Action, ArchiveFormat, Engine, PolicyEdit, PolicySpec, Retention, RollupEdit, TableName,
    TableOutcome, TablesError, TagFilter,
};

impl From<TablesError> for Failure {
    fn from(err: TablesError) -> Self {
        let code = if err.is_bad_input() {
            code::USAGE
        } else {
            code::FAILED
        };
        Failure::new(code, crate::failure::chain(&err))
    }
}

fn usage(message: impl Into<String>) -> Failure {
    Failure::new(code::USAGE, message)
}

/// A `--format`.
fn archive_format(text: Option<String>) -> Result<Option<ArchiveFormat>, Failure> {
    text.map(|text| {
        ArchiveFormat::parse(&text).ok_or_else(|| {
            usage(format!(
                "unknown archive format {text:?}: use one of {}",
                strata_tables::policy::FORMAT_NAMES
            ))
        })
    })
    .transpose()
}

fn filter(tags: TagArgs) -> TagFilter {
    TagFilter {
        tags: tags.tag,
        any: tags.any_tag,
    }
}

fn cutoff(
    text: Option<String>,
) -> Result<strata_tables::chrono::DateTime<strata_tables::chrono::Utc>, Failure> {
    match text {
        Some(text) => strata_tables::parse_cutoff(&text).map_err(usage),
        None => Ok(strata_tables::chrono::Utc::now()),
    }
}

/// The upper bound out of `FOR VALUES FROM (..) TO (..)`, for tables.
fn upper_of(bound: &str) -> String {
    match bound.rsplit_once(" TO (") {
        Some((_, upper)) => upper.trim_end_matches(')').trim_matches('\'').to_string(),
        None => bound.to_string(),
    }
}

impl Context {
    /// The schema of the policy tables: `--schema`, else `[tables] schema`.
    fn tables_schema(&self, db: &TablesDb) -> String {
        db.schema
            .clone()
            .unwrap_or_else(|| self.sections.tables.schema.clone())
    }

    async fn engine(&self, db: &TablesDb) -> Result<Engine, Failure> {
        let text = db
            .db
            .clone()
            .or_else(|| self.sections.tables.db.clone())
            .ok_or_else(|| {
                usage("no database: give --db DSN, set STRATA_TABLES_DB or [tables] db (postgresql://user@host/db)")
            })?;
        let dsn = strata_pg::Dsn::parse(&text).map_err(|e| usage(e.to_string()))?;
        let lock_timeout = db
            .lock_timeout
            .unwrap_or(self.sections.tables.lock_timeout_secs);
        Ok(Engine::connect(&dsn, &self.tables_schema(db), db.who.clone(), lock_timeout).await?)
    }

    /// A storage of the configuration by name, for archives.
    fn tables_store(&self, name: &str) -> Result<DynStore, TablesError> {
        Storage::open(&self.config, name)
            .map(|s| s.store)
            .map_err(|e| {
                TablesError::Unsupported(format!("storage {name:?}: {}", crate::failure::chain(&e)))
            })
    }

    /// `strata tables ...`.
    pub(crate) async fn tables(&self, db: TablesDb, command: TablesCommand) -> CommandResult {
        if let TablesCommand::Archives { from } = command {
            return self.archives(from).await;
        }
        let mut engine = self.engine(&db).await?;
        match command {
            TablesCommand::Setup => {
                engine.setup().await?;
                self.say(format!(
                    "policy tables ready in schema {}",
                    self.tables_schema(&db)
                ));
                Ok(0)
            }
            TablesCommand::Add {
                table,
                column,
                action,
                after,
                tag,
                options,
                rollup,
                disabled,
            } => {
                let action = Action::parse(&action).ok_or_else(|| {
                    usage(format!(
                        "unknown action {action:?}: use one of {}",
                        strata_tables::policy::ACTION_NAMES
                    ))
                })?;
                let table = TableName::parse(&table).map_err(|e| usage(e.to_string()))?;
                let after = Retention::parse(&after).map_err(|e| usage(e.to_string()))?;
                let mut spec = PolicySpec::new(table, column, action, after);
                spec.tags = tag;
                spec.tablespace = options.tablespace;
                spec.target = options.target;
                spec.archive_schema = options.archive_schema;
                spec.archive_format = archive_format(options.format)?.unwrap_or_default();
                spec.keep = options.keep.unwrap_or(1);
                spec.enabled = !disabled;
                spec.rollup = rollup_spec(action, *rollup)?;
                self.add_policy(&engine, &spec).await
            }
            TablesCommand::List { tags } => self.list_policies(&engine, &filter(tags)).await,
            TablesCommand::Edit {
                id,
                column,
                after,
                tag,
                clear_tags,
                options,
                rollup,
                reset_watermark,
                enable,
                disable,
            } => {
                let edit = PolicyEdit {
                    rollup: rollup_edit(*rollup)?,
                    reset_watermark,
                    column,
                    after: after
                        .map(|a| Retention::parse(&a))
                        .transpose()
                        .map_err(|e| usage(e.to_string()))?,
                    tags: if clear_tags {
                        Some(Vec::new())
                    } else if tag.is_empty() {
                        None
                    } else {
                        Some(tag)
                    },
                    tablespace: options.tablespace,
                    archive_schema: options.archive_schema,
                    target: options.target,
                    archive_format: archive_format(options.format)?,
                    keep: options.keep,
                    enabled: if enable {
                        Some(true)
                    } else if disable {
                        Some(false)
                    } else {
                        None
                    },
                };
                let policy = engine.edit(id, &edit).await?;
                if self.global.json {
                    print_json(&policy);
                } else {
                    self.say(format!(
                        "policy {}: {}",
                        policy.id,
                        strata_tables::catalog::describe_spec(&policy.spec)
                    ));
                }
                Ok(0)
            }
            TablesCommand::Rm { id, tags } => {
                let removed = engine.remove(id, &filter(tags)).await?;
                if self.global.json {
                    print_json(&removed);
                } else {
                    for policy in &removed {
                        self.say(format!("removed policy {}", policy.id));
                    }
                    if removed.is_empty() {
                        self.say("no policy matched");
                    }
                }
                Ok(0)
            }
            TablesCommand::Plan { tags, cutoff: at } => {
                let at = cutoff(at)?;
                let plans = engine.plan(&filter(tags), at).await?;
                if self.global.json {
                    print_json(&plans);
                }
                let mut failed = false;
                for planned in &plans {
                    if let Some(error) = &planned.error {
                        failed = true;
                        if !self.global.json {
                            eprintln!("strata: error: {}: {error}", planned.table);
                        }
                    }
                    if let Some(plan) = &planned.plan {
                        failed |= !plan.problems.is_empty();
                        if !self.global.json {
                            self.print_plan(plan);
                        }
                    }
                }
                if plans.is_empty() {
                    self.say("no policy matched");
                }
                Ok(if failed { code::FAILED } else { 0 })
            }
            TablesCommand::Run {
                tags,
                cutoff: at,
                dry_run,
            } => {
                let at = cutoff(at)?;
                let resolver = |name: &str| self.tables_store(name);
                let progress = StepProgress::new(!self.global.json && !self.global.quiet);
                let report = engine
                    .run(&filter(tags), at, dry_run, &resolver, &progress)
                    .await?;
                drop(progress);
                if self.global.json {
                    print_json(&report);
                } else {
                    for table in &report.tables {
                        if let Some(plan) = &table.plan {
                            if table.outcome == TableOutcome::DryRun {
                                self.print_plan(plan);
                            }
                        }
                        if let Some(error) = &table.error {
                            eprintln!(
                                "strata: {}: {error}",
                                if table.outcome == TableOutcome::Busy {
                                    "warning"
                                } else {
                                    "error"
                                }
                            );
                        } else if table.outcome == TableOutcome::NothingToDo {
                            self.say(format!("{}: nothing has expired", table.table));
                        }
                    }
                    self.say(format!(
                        "run {}: {}",
                        report.run_id.unwrap_or_default(),
                        report.outcome()
                    ));
                }
                Ok(if report.any(TableOutcome::Failed) {
                    code::FAILED
                } else if report.any(TableOutcome::Busy) {
                    code::BUSY
                } else {
                    0
                })
            }
            TablesCommand::Archives { .. } => unreachable!("handled above"),
        }
    }

    async fn add_policy(&self, engine: &Engine, spec: &PolicySpec) -> CommandResult {
        let id = engine.add(spec).await?;
        if self.global.json {
            print_json(&serde_json::json!({ "id": id }));
        } else {
            self.say(format!(
                "policy {id}: {}",
                strata_tables::catalog::describe_spec(spec)
            ));
        }
        Ok(0)
    }

    async fn list_policies(&self, engine: &Engine, filter: &TagFilter) -> CommandResult {
        let policies = engine.list(filter).await?;
        if self.global.json {
            print_json(&policies);
            return Ok(0);
        }
        let rows = policies
            .iter()
            .map(|p| {
                let s = &p.spec;
                let arg = s
                    .tablespace
                    .as_ref()
                    .or(s.target.as_ref())
                    .or(s.archive_schema.as_ref())
                    .cloned()
                    .unwrap_or_default();
                let format = if s.action == Action::Archive {
                    s.archive_format.to_string()
                } else {
                    String::new()
                };
                vec![
                    p.id.to_string(),
                    s.table.to_string(),
                    s.column.clone(),
                    s.action.to_string(),
                    arg,
                    format,
                    s.after.to_string(),
                    s.keep.to_string(),
                    s.tags.join(","),
                    if s.enabled { "yes" } else { "no" }.into(),
                    p.created_by.clone(),
                ]
            })
            .collect();
        println!(
            "{}",
            output::table(
                &[
                    "id", "table", "column", "action", "to", "format", "after", "keep", "tags",
                    "enabled", "by"
                ],
                rows,
                &[0, 7]
            )
        );
        Ok(0)
    }

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
        let describe = |step: &Step| match &step.kind {
            StepKind::DropPartition => "detach and drop".to_string(),
            StepKind::DetachPartition { schema: Some(s) } => format!("detach to schema {s}"),
            StepKind::DetachPartition { schema: None } => "detach".to_string(),
            StepKind::MoveTablespace { tablespace } => format!("move to tablespace {tablespace}"),
            StepKind::ArchivePartition { target, format } => {
                format!("archive to {target} as {format}, drop")
            }
            StepKind::DeleteRows { column, before } => match step.rows_estimate {
                Some(rows) => {
                    format!("delete rows with {column} < {before} (about {rows} rows: an estimate)")
                }
                None => format!("delete rows with {column} < {before}"),
            },
            StepKind::Rollup { into, from, to } => format!(
                "roll up into {into}: {} to {to}",
                from.as_deref().unwrap_or("first row")
            ),
        };
        let mut rows: Vec<Vec<String>> = plan
            .steps
            .iter()
            .map(|s| {
                vec![
                    plan.table.clone(),
                    s.policy_id.to_string(),
                    s.action.to_string(),
                    s.partition.clone().unwrap_or_else(|| "(rows)".into()),
                    s.bound.as_deref().map(upper_of).unwrap_or_default(),
                    s.bytes
                        .map(|b| {
                            let size = output::size(b.max(0) as u64);
                            if s.rows_estimate.is_some() {
                                format!("~{size}")
                            } else {
                                size
                            }
                        })
                        .unwrap_or_default(),
                    describe(s),
                ]
            })
            .collect();
        rows.extend(plan.kept.iter().map(|k| {
            vec![
                plan.table.clone(),
                k.policy_id.to_string(),
                "keep".into(),
                k.partition.clone(),
                String::new(),
                String::new(),
                k.reason.clone(),
            ]
        }));
        // Partitions only: a row delete's size is an estimate, shown on its line.
        let total: i64 = plan
            .steps
            .iter()
            .filter(|s| s.rows_estimate.is_none())
            .filter_map(|s| s.bytes)
            .sum();
        println!(
            "{}",
            output::table(
                &[
                    "table",
                    "policy",
                    "action",
                    "partition",
                    "upper bound",
                    "size",
                    "what"
                ],
                rows,
                &[1, 5]
            )
        );
        println!(
            "{}: {} step(s), {} in partitions acted on",
            plan.table,
            plan.steps.len(),
            output::size(total.max(0) as u64)
        );
    }

    /// `strata ttl S.T:C ACTION[:ARG] DURATION`.
    pub(crate) async fn ttl(
        &self,
        db: TablesDb,
        table_column: &str,
        action: &str,
        after: &str,
        tags: Vec<String>,
        options: TtlOptions,
    ) -> CommandResult {
        let mut spec =
            PolicySpec::from_ttl(table_column, action, after).map_err(|e| usage(e.to_string()))?;
        spec.tags = tags;
        spec.keep = options.keep.unwrap_or(1);
        spec.archive_format = archive_format(options.format)?.unwrap_or_default();
        let engine = self.engine(&db).await?;
        self.add_policy(&engine, &spec).await
    }

    fn storage_named(&self, from: Option<String>) -> Result<(String, DynStore), Failure> {
        let name = from.unwrap_or_else(|| self.config.default_storage.clone());
        let store = self.tables_store(&name).map_err(|e| usage(e.to_string()))?;
        Ok((name, store))
    }

    /// `strata load ARCHIVE --into S.T`.
    pub(crate) async fn load_archive(
        &self,
        db: TablesDb,
        archive: &str,
        into: &str,
        from: Option<String>,
        append: bool,
    ) -> CommandResult {
        let into = TableName::parse(into).map_err(|e| usage(e.to_string()))?;
        let (_, store) = self.storage_named(from)?;
        let mut engine = self.engine(&db).await?;
        let loaded = strata_tables::archive::load(
            engine.client(),
            &store,
            archive,
            &into,
            strata_tables::archive::load_target::LoadOptions { append },
        )
        .await?;
        let rows = loaded.rows;
        let target = &loaded.target;
        let created = if target.created_partition {
            format!(" (partition {} of {into} recreated)", target.table)
        } else {
            String::new()
        };
        let audit = strata_tables::catalog::AuditEntry {
            who: engine.who().to_string(),
            what: "load".into(),
            table: Some(target.table.to_string()),
            outcome: "ok".into(),
            detail: format!(
                "{rows} rows from {archive}{created}{}",
                if append { ", --append" } else { "" }
            ),
            ..Default::default()
        };
        // The audit log is there only after `tables setup`; a load works without it.
        let client = engine.client();
        if let Err(err) = engine_audit(&self.tables_schema(&db), client, &audit).await {
            if !matches!(err, TablesError::NotSetUp { .. }) {
                return Err(err.into());
            }
        }
        if self.global.json {
            print_json(&serde_json::json!({
                "rows": rows,
                "into": target.table.to_string(),
                "created_partition": target.created_partition,
                "archive": archive,
            }));
        } else {
            self.say(format!("loaded {rows} rows into {}{created}", target.table));
        }
        Ok(0)
    }

    /// `strata tables archives [--from STORAGE]`.
    async fn archives(&self, from: Option<String>) -> CommandResult {
        let (name, store) = self.storage_named(from)?;
        let archives = strata_tables::archive::list_archives(&store).await?;
        if self.global.json {
            print_json(&archives);
        } else {
            for archive in &archives {
                println!("{archive}");
            }
            if archives.is_empty() {
                self.say(format!("no table archives in storage {name}"));
            }
        }
        Ok(0)
    }
}

async fn engine_audit(
    schema: &str,
    client: &strata_pg::Client,
    entry: &strata_tables::catalog::AuditEntry,
) -> Result<(), TablesError> {
    strata_tables::Catalog::new(schema)
        .audit(client, entry)
        .await
}

/// A duration option of a rollup in seconds (`INF` refused).
fn rollup_seconds(what: &str, text: &Option<String>) -> Result<Option<i64>, Failure> {
    match text {
        None => Ok(None),
        Some(text) => match Retention::parse(text).map_err(|e| usage(e.to_string()))? {
            Retention::After(s) => Ok(Some(s)),
            Retention::Forever => Err(usage(format!("--{what} cannot be INF"))),
        },
    }
}

/// The rollup changes of `tables edit`: only what is given.
fn rollup_edit(options: crate::cli::RollupOptions) -> Result<RollupEdit, Failure> {
    Ok(RollupEdit {
        into: options
            .into
            .as_deref()
            .map(TableName::parse)
            .transpose()
            .map_err(|e| usage(e.to_string()))?,
        bucket_secs: rollup_seconds("bucket", &options.bucket)?,
        lookback_secs: rollup_seconds("lookback", &options.lookback)?,
        group_by: (!options.group_by.is_empty()).then(|| {
            options
                .group_by
                .into_iter()
                .filter(|c| !c.trim().is_empty())
                .collect()
        }),
        aggregates: if options.aggregate.is_empty() {
            None
        } else {
            Some(
                options
                    .aggregate
                    .iter()
                    .map(|a| strata_tables::rollup::Aggregate::parse(a).map_err(usage))
                    .collect::<Result<Vec<_>, _>>()?,
            )
        },
    })
}

/// The rollup of `tables add`, when the action is downsample or a rollup option is given
/// (the policy's validation then says what does not fit).
fn rollup_spec(
    action: Action,
    options: crate::cli::RollupOptions,
) -> Result<Option<strata_tables::rollup::Rollup>, Failure> {
    let given = options.into.is_some()
        || options.bucket.is_some()
        || !options.aggregate.is_empty()
        || !options.group_by.is_empty()
        || options.lookback.is_some();
    if action != Action::Downsample && !given {
        return Ok(None);
    }
    let into = options
        .into
        .as_deref()
        .ok_or_else(|| usage("downsample needs --into SCHEMA.TABLE (the rollup table)"))?;
    let into = TableName::parse(into).map_err(|e| usage(e.to_string()))?;
    let bucket = rollup_seconds("bucket", &options.bucket)?
        .ok_or_else(|| usage("downsample needs --bucket DURATION (e.g. 1h)"))?;
    let aggregates = options
        .aggregate
        .iter()
        .map(|a| strata_tables::rollup::Aggregate::parse(a).map_err(usage))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(strata_tables::rollup::Rollup {
        into,
        bucket_secs: bucket,
        lookback_secs: rollup_seconds("lookback", &options.lookback)?.unwrap_or(bucket),
        group_by: options.group_by,
        aggregates,
    }))
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
        StepProgress {
            enabled,
            spinner: std::sync::Mutex::new(None),
        }
    }
}

impl strata_tables::run::RunObserver for StepProgress {
    fn step_started(&self, table: &str, step: &Step) {
        use std::io::IsTerminal;
        if !self.enabled || !std::io::stderr().is_terminal() {
            return;
        }
        let spinner = indicatif::ProgressBar::new_spinner();
        spinner.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .expect("valid template"),
        );
        let size = step
            .bytes
            .map(|b| format!(", {}", output::size(b.max(0) as u64)))
            .unwrap_or_default();
        spinner.set_message(format!("{table} {} {}{size}", step.action, step.object()));
        spinner.enable_steady_tick(std::time::Duration::from_millis(120));
        *self.spinner.lock().unwrap() = Some(spinner);
    }

    fn step_finished(&self, table: &str, result: &strata_tables::run::StepResult) {
        if let Some(spinner) = self.spinner.lock().unwrap().take() {
            spinner.finish_and_clear();
        }
        if self.enabled {
            println!(
                "{table} {} {}: {} ({})",
                result.step.action,
                result.step.object(),
                result.outcome,
                result.detail
            );
        }
    }
}
