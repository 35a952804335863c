//! `strata londiste NODE.ini ...`: Londiste 3 node administration and the replay worker,
//! on the same ini files and SQL state as Python Londiste. Thin: parse the options, call
//! strata-londiste, print.

use crate::commands::{print_json, CommandResult, Context};
use crate::failure::{code, Failure};
use crate::output;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use strata_londiste::admin::{self, AddTableOptions, NodeType};
use strata_londiste::members::{self, Upstream};
use strata_londiste::takeover::OldNode;
use strata_londiste::worker::{self, WorkerOptions};
use strata_londiste::{node, status, LondisteError, NodeConfig, TableState};

/// The node's ini file and what to do.
#[derive(Debug, Args)]
pub struct LondisteArgs {
    /// The node's ini file, as Python Londiste reads it: a [londiste3] section with
    /// job_name, db, queue_name (and logfile, pidfile, loop_delay, parallel_copies).
    pub ini: PathBuf,
    #[command(subcommand)]
    pub command: LondisteCommand,
}

/// The `londiste` subcommands.
#[derive(Debug, Subcommand)]
pub enum LondisteCommand {
    /// Make this database the root of the queue: where events are made.
    CreateRoot {
        /// The node's name in the cascade.
        name: String,
        /// How other nodes reach this one (connection string).
        location: String,
    },
    /// Make this database a branch (a full copy of the queue that can feed others).
    CreateBranch {
        name: String,
        location: String,
        /// Connection string of the node to read from.
        #[arg(long)]
        provider: String,
    },
    /// Make this database a leaf (replicated tables, no queue).
    CreateLeaf {
        name: String,
        location: String,
        /// Connection string of the node to read from.
        #[arg(long)]
        provider: String,
    },
    /// Replicate tables: on the root, put them in the set; elsewhere, copy and follow
    /// them. Names may be globs (public.*, log_*).
    AddTable {
        tables: Vec<String>,
        /// Every table (the provider's set, or on the root every table of the database).
        #[arg(long)]
        all: bool,
        /// Create missing tables from the provider's structure (columns, primary key).
        #[arg(long)]
        create: bool,
        /// The tables already hold the same data: no copy.
        #[arg(long)]
        expect_sync: bool,
        /// Keep the target's rows before the copy.
        #[arg(long)]
        skip_truncate: bool,
    },
    /// Stop replicating tables (on the root: remove them from the set).
    RemoveTable { tables: Vec<String> },
    /// Tables of the set with their state on this node.
    Tables,
    /// Replicate sequences (globs; --all): the root publishes their values ahead of use,
    /// subscribers keep theirs at least there. Needs the root's worker running.
    AddSeq {
        seqs: Vec<String>,
        #[arg(long)]
        all: bool,
    },
    /// Stop replicating sequences.
    RemoveSeq { seqs: Vec<String> },
    /// Sequences of the set with their published value.
    Seqs,
    /// Tables and sequences of the set that this node does not replicate (exit 0 either
    /// way; `--json` for scripts).
    Missing,
    /// Foreign keys dropped around copies and not restored yet, and whether each can come
    /// back now (both tables ok).
    Fkeys,
    /// Every node of the cascade, asked in parallel: type, provider, lag, tables, errors.
    /// Exits 1 when a node cannot be asked or reports an error.
    Status {
        /// Seconds to wait for each node.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// The cascade's members as this node knows them.
    Members,
    /// This node's pgq_node information.
    NodeInfo,
    /// Run the replay worker (foreground; stop with SIGTERM or Ctrl-C). With -d it runs
    /// in the background: output to the ini's logfile, its pid in the ini's pidfile.
    Worker {
        /// Detach (needs `logfile` and `pidfile` in the ini file).
        #[arg(short, long)]
        daemon: bool,
    },
    /// Pause this node's worker (it stops before its next batch).
    Pause,
    /// Resume this node's worker.
    Resume,
    /// Compare tables with the provider at a sync point (count and hash sum); exits 1
    /// when one differs. Needs the node's worker running and the root as provider.
    Compare {
        tables: Vec<String>,
        /// Seconds to wait for the sync point (tick and worker).
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Diff tables row by row against the provider at a sync point and write the fix as
    /// fix.<table>.sql; with --apply, run it here. Exits 1 when differences remain.
    Repair {
        tables: Vec<String>,
        /// Apply the fix on this node.
        #[arg(long)]
        apply: bool,
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Take the role of node OLD: of the root (run on one of its branches; the live root
    /// becomes this node's branch) or of a branch (this node reads from the branch's
    /// provider; the live branch becomes this node's subscriber). Every table here must be
    /// in sync; the workers of the nodes that move must run. Exits 1 when a subscriber
    /// could not be moved.
    Takeover {
        /// The node whose role this node takes.
        old: String,
        /// The root is gone: tag it dead, catch up from the most advanced surviving branch,
        /// promote this branch, move the root's other subscribers here. Events that never
        /// left the old root are lost (`resurrect` on it saves them to a file).
        #[arg(long, conflicts_with = "dead_branch")]
        dead_root: bool,
        /// The branch OLD is gone: tag it dead, read from its provider, and move its other
        /// subscribers here (or to its provider when this node is a leaf).
        #[arg(long)]
        dead_branch: bool,
        /// Also move the other subscribers of a live OLD to this node.
        #[arg(long)]
        all: bool,
        /// Seconds to wait for each step (acknowledged pauses, catching up).
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Rejoin the cascade as a branch of the new root after a takeover --dead-root replaced
    /// this old root: its events the others never got are written to a JSON file and
    /// removed from its queue; the worker is left paused (resume it after a look at the
    /// file; `compare` shows what the tables still hold of the lost changes).
    Resurrect {
        /// Where the lost events go (refused when it exists).
        #[arg(long, default_value = strata_londiste::resurrect::DEFAULT_DUMP)]
        dump: PathBuf,
        /// Seconds to wait for the other members to answer.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Tag members dead on every live member: status, execute --wait and takeover stop
    /// asking them.
    TagDead {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Clear the dead tag of members on every live member.
    TagAlive {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Remove a node from the cascade (refused while others read from it): when it
    /// answers, its tables stop being replicated (triggers removed) and its node and queue
    /// are dropped; every live member forgets it.
    DropNode { node: String },
    /// Wait until everything committed on the root before this call is applied here.
    WaitRoot {
        /// Give up (exit 1) after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Wait until everything the provider had applied before this call is applied here.
    WaitProvider {
        /// Give up (exit 1) after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Compare the columns (names and types) of every replicated table with the provider's;
    /// exits 1 and names each difference when there is one.
    Check,
    /// Copy tables again from the provider (the worker truncates and copies them).
    Resync { tables: Vec<String> },
    /// Move this node to another provider of the cascade (a member's node name), with no
    /// event lost or repeated. Needs this node's worker running (it acknowledges the pause).
    ChangeProvider {
        #[arg(long, value_name = "NODE")]
        provider: String,
        /// Seconds to wait for the worker's acknowledgements.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Run SQL files (DDL) on the root and send them to every node as EXECUTE events,
    /// in one transaction; a file name already applied is skipped.
    Execute {
        files: Vec<PathBuf>,
        /// Return only once every live node of the cascade has applied the files (exit 1
        /// after --timeout, naming the nodes behind).
        #[arg(long)]
        wait: bool,
        /// Seconds --wait waits.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Wait until every local table is ok (copies done).
    WaitSync {
        /// Give up (exit 1) after this many seconds.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
}

fn failure(err: LondisteError) -> Failure {
    let code = if err.is_bad_input() {
        code::USAGE
    } else {
        code::FAILED
    };
    Failure::new(code, crate::failure::chain(&err))
}

fn opt<T: ToString>(value: &Option<T>) -> String {
    value.as_ref().map_or("-".into(), |v| v.to_string())
}

/// Runs a `londiste` subcommand.
pub(crate) async fn run(ctx: &Context, args: LondisteArgs) -> CommandResult {
    let cf = NodeConfig::load(&args.ini).map_err(failure)?;
    match args.command {
        LondisteCommand::CreateRoot { name, location } => {
            let note = admin::create_node(&cf, NodeType::Root, &name, &location, None)
                .await
                .map_err(failure)?;
            ctx.say(note);
            Ok(0)
        }
        LondisteCommand::CreateBranch {
            name,
            location,
            provider,
        } => {
            let note = admin::create_node(&cf, NodeType::Branch, &name, &location, Some(&provider))
                .await
                .map_err(failure)?;
            ctx.say(note);
            Ok(0)
        }
        LondisteCommand::CreateLeaf {
            name,
            location,
            provider,
        } => {
            let note = admin::create_node(&cf, NodeType::Leaf, &name, &location, Some(&provider))
                .await
                .map_err(failure)?;
            ctx.say(note);
            Ok(0)
        }
        LondisteCommand::AddTable {
            tables,
            all,
            create,
            expect_sync,
            skip_truncate,
        } => {
            let options = AddTableOptions {
                all,
                create,
                expect_sync,
                skip_truncate,
            };
            let added = admin::add_tables(&cf, &tables, &options)
                .await
                .map_err(failure)?;
            if ctx.global.json {
                print_json(&added);
            }
            for t in &added {
                ctx.say(format!("added {t}"));
            }
            Ok(0)
        }
        LondisteCommand::RemoveTable { tables } => {
            let removed = admin::remove_tables(&cf, &tables).await.map_err(failure)?;
            for t in &removed {
                ctx.say(format!("removed {t}"));
            }
            Ok(0)
        }
        LondisteCommand::Tables => {
            let db = admin::connect_local(&cf).await.map_err(failure)?;
            admin::require_node(&db, &cf).await.map_err(failure)?;
            let tables = node::tables(&db, &cf.queue_name).await.map_err(failure)?;
            if ctx.global.json {
                print_json(&tables);
            } else if !ctx.global.quiet {
                let rows = tables
                    .iter()
                    .map(|t| {
                        vec![
                            t.table_name.clone(),
                            if t.local { "yes" } else { "no" }.into(),
                            t.state.to_string(),
                            opt(&t.dest_table),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    output::table(&["table", "local", "state", "dest table"], rows, &[])
                );
            }
            Ok(0)
        }
        LondisteCommand::Missing => {
            let db = admin::connect_local(&cf).await.map_err(failure)?;
            admin::require_node(&db, &cf).await.map_err(failure)?;
            let missing = node::missing(&db, &cf.queue_name).await.map_err(failure)?;
            if ctx.global.json {
                print_json(&missing);
            } else if !ctx.global.quiet {
                for m in &missing {
                    let kind = if m.kind == "S" { "sequence" } else { "table" };
                    println!("{kind} {}", m.name);
                }
                if missing.is_empty() {
                    println!("nothing missing: every table and sequence of the set is here");
                }
            }
            Ok(0)
        }
        LondisteCommand::Fkeys => {
            let db = admin::connect_local(&cf).await.map_err(failure)?;
            admin::require_node(&db, &cf).await.map_err(failure)?;
            let fkeys = node::pending_fkeys(&db, &cf.queue_name)
                .await
                .map_err(failure)?;
            if ctx.global.json {
                print_json(&fkeys);
            } else if !ctx.global.quiet {
                let rows = fkeys
                    .iter()
                    .map(|f| {
                        vec![
                            f.from_table.clone(),
                            f.name.clone(),
                            f.to_table.clone(),
                            if f.ready { "yes" } else { "no" }.into(),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    output::table(&["table", "foreign key", "references", "ready"], rows, &[])
                );
            }
            Ok(0)
        }
        LondisteCommand::Status { timeout } => {
            let nodes = status::cascade_status(&cf, Duration::from_secs(timeout.max(1)))
                .await
                .map_err(failure)?;
            if ctx.global.json {
                print_json(&nodes);
            } else if !ctx.global.quiet {
                let rows = nodes
                    .iter()
                    .map(|n| {
                        let info = n.info.as_ref();
                        vec![
                            n.name.clone(),
                            info.and_then(|i| i.node_type.clone()).unwrap_or("?".into()),
                            info.and_then(|i| i.provider_node.clone())
                                .unwrap_or("-".into()),
                            opt(&info.and_then(|i| i.worker_last_tick)),
                            n.lag_secs.map_or("-".into(), |l| format!("{l:.1}s")),
                            n.tables.as_ref().map_or("-".into(), |t| {
                                format!("{} ok, {} copying, {} waiting", t.ok, t.copying, t.waiting)
                            }),
                            if info.and_then(|i| i.worker_paused).unwrap_or(false) {
                                "paused".into()
                            } else {
                                "".into()
                            },
                            opt(&n.error),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    output::table(
                        &[
                            "node",
                            "type",
                            "provider",
                            "last tick",
                            "lag",
                            "tables",
                            "",
                            "error"
                        ],
                        rows,
                        &[3]
                    )
                );
            }
            let bad = nodes.iter().any(|n| n.error.is_some());
            Ok(if bad { code::FAILED } else { 0 })
        }
        LondisteCommand::Members => {
            let db = admin::connect_local(&cf).await.map_err(failure)?;
            admin::require_node(&db, &cf).await.map_err(failure)?;
            let members = node::locations(&db, &cf.queue_name)
                .await
                .map_err(failure)?;
            if ctx.global.json {
                print_json(&members);
            } else if !ctx.global.quiet {
                let rows = members
                    .iter()
                    .map(|m| {
                        vec![
                            m.node_name.clone(),
                            if m.dead { "dead" } else { "" }.into(),
                            m.node_location.clone(),
                        ]
                    })
                    .collect();
                println!("{}", output::table(&["node", "", "location"], rows, &[]));
            }
            Ok(0)
        }
        LondisteCommand::NodeInfo => {
            let db = admin::connect_local(&cf).await.map_err(failure)?;
            let info = admin::require_node(&db, &cf).await.map_err(failure)?;
            if ctx.global.json {
                print_json(&info);
            } else if !ctx.global.quiet {
                let rows = vec![
                    vec!["node".into(), opt(&info.node_name)],
                    vec!["type".into(), opt(&info.node_type)],
                    vec!["provider".into(), opt(&info.provider_node)],
                    vec!["worker".into(), opt(&info.worker_name)],
                    vec!["paused".into(), opt(&info.worker_paused)],
                    vec!["up to date".into(), opt(&info.worker_uptodate)],
                    vec!["last tick".into(), opt(&info.worker_last_tick)],
                    vec!["global watermark".into(), opt(&info.global_watermark)],
                    vec!["local watermark".into(), opt(&info.local_watermark)],
                ];
                println!("queue {}", cf.queue_name);
                println!("{}", output::table(&["", ""], rows, &[]));
            }
            Ok(0)
        }
        LondisteCommand::Worker { daemon } => {
            let detached_child = strata_pgq::daemon::is_detached_child();
            if daemon && !detached_child {
                let (Some(pidfile), Some(logfile)) = (&cf.pidfile, &cf.logfile) else {
                    return Err(Failure::new(
                        code::USAGE,
                        "worker -d needs logfile and pidfile in the ini file: a daemon has no terminal",
                    ));
                };
                let pid =
                    strata_pgq::daemon::spawn_detached(pidfile, Some(logfile), "Londiste worker")
                        .map_err(|e| {
                        let code = if e.is_bad_input() {
                            code::USAGE
                        } else {
                            code::FAILED
                        };
                        Failure::new(code, crate::failure::chain(&e))
                    })?;
                ctx.say(format!(
                    "worker running in the background (pid {pid}, log {})",
                    logfile.display()
                ));
                return Ok(0);
            }
            // The detached child holds the pidfile while it runs (and refuses to start
            // next to a live worker).
            let _pidfile = match (&cf.pidfile, detached_child) {
                (Some(path), true) => Some(
                    strata_pgq::daemon::PidFile::create(path)
                        .map_err(|e| Failure::new(code::USAGE, crate::failure::chain(&e)))?,
                ),
                _ => None,
            };
            let stop = worker::stop_on_signal();
            let stats = worker::run(cf, WorkerOptions::default(), stop)
                .await
                .map_err(failure)?;
            ctx.say(format!(
                "worker stopped: {} batches, {} events, {} statements",
                stats.batches, stats.events, stats.statements
            ));
            Ok(0)
        }
        LondisteCommand::Check => {
            let diffs = admin::check_structure(&cf).await.map_err(failure)?;
            if ctx.global.json {
                print_json(&diffs);
            } else {
                for d in &diffs {
                    println!("{}: {}", d.table, d.problem);
                }
                if diffs.is_empty() {
                    ctx.say("every replicated table has the provider's columns");
                }
            }
            Ok(if diffs.is_empty() { 0 } else { code::FAILED })
        }
        LondisteCommand::Resync { tables } => {
            if tables.is_empty() {
                return Err(Failure::new(code::USAGE, "name the tables to copy again"));
            }
            for table in admin::resync(&cf, &tables).await.map_err(failure)? {
                ctx.say(format!("{table}: copied again by the worker"));
            }
            Ok(0)
        }
        LondisteCommand::ChangeProvider { provider, timeout } => {
            let note = strata_londiste::takeover::change_provider(
                &cf,
                &provider,
                Duration::from_secs(timeout.max(1)),
            )
            .await
            .map_err(failure)?;
            ctx.say(note);
            Ok(0)
        }
        LondisteCommand::Execute {
            files,
            wait,
            timeout,
        } => {
            let done = admin::execute(&cf, &files).await.map_err(failure)?;
            for (name, ran) in &done {
                ctx.say(if *ran {
                    format!("executed {name}")
                } else {
                    format!("skipped {name}: applied before")
                });
            }
            if wait {
                let names: Vec<String> = done.into_iter().map(|(name, _)| name).collect();
                admin::wait_executed(&cf, &names, Duration::from_secs(timeout.max(1)))
                    .await
                    .map_err(failure)?;
                ctx.say("applied on every node");
            }
            Ok(0)
        }
        LondisteCommand::Compare { tables, timeout } => {
            compare(ctx, &cf, &tables, false, false, timeout).await
        }
        LondisteCommand::Repair {
            tables,
            apply,
            timeout,
        } => compare(ctx, &cf, &tables, true, apply, timeout).await,
        LondisteCommand::Takeover {
            old,
            dead_root,
            dead_branch,
            all,
            timeout,
        } => {
            let kind = match (dead_root, dead_branch) {
                (true, _) => OldNode::DeadRoot,
                (_, true) => OldNode::DeadBranch,
                _ => OldNode::Live,
            };
            let report = strata_londiste::takeover::takeover(
                &cf,
                &old,
                kind,
                all,
                Duration::from_secs(timeout.max(1)),
            )
            .await
            .map_err(failure)?;
            say_steps(ctx, &report, &report.done, &report.warnings);
            for line in &report.stranded {
                eprintln!("not moved: {line}");
            }
            Ok(if report.stranded.is_empty() {
                0
            } else {
                code::FAILED
            })
        }
        LondisteCommand::Resurrect { dump, timeout } => {
            let report = strata_londiste::resurrect::resurrect(
                &cf,
                &dump,
                Duration::from_secs(timeout.max(1)),
            )
            .await
            .map_err(failure)?;
            say_steps(ctx, &report, &report.done, &[]);
            ctx.say(format!(
                "{} lost events saved to {} ({} ticks removed from the queue); the worker is paused: `resume` to follow {}",
                report.lost_events,
                report.dump.display(),
                report.ticks_deleted,
                report.provider
            ));
            for (what, n) in &report.lost_by_table {
                ctx.say(format!("  {what}: {n}"));
            }
            Ok(0)
        }
        LondisteCommand::TagDead { nodes } => tag(ctx, &cf, &nodes, true).await,
        LondisteCommand::TagAlive { nodes } => tag(ctx, &cf, &nodes, false).await,
        LondisteCommand::DropNode { node } => {
            let report = members::drop_node(&cf, &node).await.map_err(failure)?;
            say_steps(ctx, &report, &report.done, &report.warnings);
            Ok(0)
        }
        LondisteCommand::WaitRoot { timeout } => {
            wait_upstream(ctx, &cf, Upstream::Root, timeout).await
        }
        LondisteCommand::WaitProvider { timeout } => {
            wait_upstream(ctx, &cf, Upstream::Provider, timeout).await
        }
        LondisteCommand::AddSeq { seqs, all } => {
            for s in admin::add_seqs(&cf, &seqs, all).await.map_err(failure)? {
                ctx.say(format!("added {s}"));
            }
            Ok(0)
        }
        LondisteCommand::RemoveSeq { seqs } => {
            for s in admin::remove_seqs(&cf, &seqs).await.map_err(failure)? {
                ctx.say(format!("removed {s}"));
            }
            Ok(0)
        }
        LondisteCommand::Seqs => {
            let db = admin::connect_local(&cf).await.map_err(failure)?;
            admin::require_node(&db, &cf).await.map_err(failure)?;
            let seqs = admin::seqs(&db, &cf.queue_name).await.map_err(failure)?;
            if ctx.global.json {
                print_json(&seqs);
            } else if !ctx.global.quiet {
                let rows = seqs
                    .iter()
                    .map(|s| {
                        vec![
                            s.seq_name.clone(),
                            if s.local { "yes" } else { "no" }.into(),
                            s.last_value.to_string(),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    output::table(&["sequence", "local", "published value"], rows, &[2])
                );
            }
            Ok(0)
        }
        LondisteCommand::Pause => pause(ctx, &cf, true).await,
        LondisteCommand::Resume => pause(ctx, &cf, false).await,
        LondisteCommand::WaitSync { timeout } => wait_sync(ctx, &cf, timeout).await,
    }
}

async fn compare(
    ctx: &Context,
    cf: &NodeConfig,
    tables: &[String],
    repair: bool,
    apply: bool,
    timeout: u64,
) -> CommandResult {
    let diffs =
        strata_londiste::compare::compare(cf, tables, repair, Duration::from_secs(timeout.max(1)))
            .await
            .map_err(failure)?;
    let mut unequal = false;
    for d in &diffs {
        if repair && !d.fix_sql.is_empty() {
            let path = PathBuf::from(format!("fix.{}.sql", d.table));
            let mut text = d.fix_sql.join(";\n");
            text.push_str(";\n");
            std::fs::write(&path, text)
                .map_err(|e| Failure::new(code::FAILED, format!("{}: {e}", path.display())))?;
            if apply {
                strata_londiste::compare::apply_fix(cf, &d.fix_sql)
                    .await
                    .map_err(failure)?;
                ctx.say(format!(
                    "{}: fixed {} missing, {} extra, {} changed rows ({})",
                    d.table,
                    d.missing,
                    d.extra,
                    d.changed,
                    path.display()
                ));
                continue;
            }
            ctx.say(format!(
                "{}: {} missing, {} extra, {} changed rows; fix in {}",
                d.table,
                d.missing,
                d.extra,
                d.changed,
                path.display()
            ));
        } else if !repair {
            ctx.say(format!(
                "{}: {} rows on the provider, {} here, {}",
                d.table,
                d.provider_rows,
                d.local_rows,
                if d.equal { "equal" } else { "DIFFERENT" }
            ));
        } else {
            ctx.say(format!("{}: equal ({} rows)", d.table, d.provider_rows));
        }
        unequal |= !d.equal;
    }
    if ctx.global.json {
        print_json(&diffs);
    }
    Ok(if unequal { code::FAILED } else { 0 })
}

/// Prints a cascade change: the report as JSON with `--json`, each step done on stdout,
/// each warning on stderr.
fn say_steps(ctx: &Context, report: &impl serde::Serialize, done: &[String], warnings: &[String]) {
    if ctx.global.json {
        print_json(report);
    }
    for line in done {
        ctx.say(line);
    }
    for line in warnings {
        eprintln!("warning: {line}");
    }
}

async fn tag(ctx: &Context, cf: &NodeConfig, nodes: &[String], dead: bool) -> CommandResult {
    let word = if dead { "dead" } else { "alive" };
    let mut untold_anywhere = false;
    for node in nodes {
        let untold = members::tag(cf, node, dead).await.map_err(failure)?;
        if untold.is_empty() {
            ctx.say(format!("{node} tagged {word} on every member"));
        } else {
            untold_anywhere = true;
            eprintln!(
                "warning: {node} tagged {word}, but not on {} (unreachable)",
                untold.join(", ")
            );
        }
    }
    Ok(if untold_anywhere { code::FAILED } else { 0 })
}

async fn wait_upstream(
    ctx: &Context,
    cf: &NodeConfig,
    upstream: Upstream,
    timeout: u64,
) -> CommandResult {
    let tick = members::wait(cf, upstream, Duration::from_secs(timeout.max(1)))
        .await
        .map_err(failure)?;
    ctx.say(format!("applied up to tick {tick}"));
    Ok(0)
}

async fn pause(ctx: &Context, cf: &NodeConfig, paused: bool) -> CommandResult {
    admin::set_paused(cf, paused).await.map_err(failure)?;
    ctx.say(if paused {
        "worker paused"
    } else {
        "worker resumed"
    });
    Ok(0)
}

async fn wait_sync(ctx: &Context, cf: &NodeConfig, timeout: u64) -> CommandResult {
    let db = admin::connect_local(cf).await.map_err(failure)?;
    admin::require_node(&db, cf).await.map_err(failure)?;
    let deadline = Instant::now() + Duration::from_secs(timeout);
    loop {
        let tables = node::tables(&db, &cf.queue_name).await.map_err(failure)?;
        let pending: Vec<String> = tables
            .iter()
            .filter(|t| t.local && t.state != TableState::Ok)
            .map(|t| format!("{} ({})", t.table_name, t.state))
            .collect();
        if pending.is_empty() {
            ctx.say("all tables ok");
            return Ok(0);
        }
        if Instant::now() >= deadline {
            return Err(Failure::new(
                code::FAILED,
                format!("not in sync after {timeout} s: {}", pending.join(", ")),
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
