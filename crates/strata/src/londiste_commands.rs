//! `strata londiste NODE.ini ...`: Londiste 3 node administration and the replay worker,
//! on the same ini files and SQL state as Python Londiste. Thin: parse the options, call
//! one function of strata-londiste, print its result.

use crate::commands::{print_json, CommandResult, Context};
use crate::failure::{code, Failure};
use crate::output;
use crate::pgq_commands::{exit_code, opt};
use clap::{Args, Subcommand};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;
use strata_londiste::admin::{self, AddTableOptions, NodeType};
use strata_londiste::members::{self, Upstream};
use strata_londiste::takeover::{self, OldNode};
use strata_londiste::worker::{self, WorkerExit};
use strata_londiste::{compare, local, resurrect, status, LondisteError, NodeConfig};

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

/// A `--timeout` in seconds, at least one.
fn secs(timeout: u64) -> Duration {
    Duration::from_secs(timeout.max(1))
}

/// `value` as JSON with `--json`, else `human` unless `--quiet`.
fn show(ctx: &Context, value: &impl Serialize, human: impl FnOnce()) {
    if ctx.global.json {
        print_json(value);
    } else if !ctx.global.quiet {
        human();
    }
}

/// Prints a table of `rows` under `header`.
fn print_table(header: &[&str], rows: Vec<Vec<String>>, right: &[usize]) {
    println!("{}", output::table(header, rows, right));
}

fn yes(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

/// Runs a `londiste` subcommand.
pub(crate) async fn run(ctx: &Context, args: LondisteArgs) -> CommandResult {
    let cf = NodeConfig::load(&args.ini).map_err(failure)?;
    run_on_node(ctx, &cf, args.command).await.map_err(failure)
}

/// Runs `command` on the node of `cf`; returns the exit code.
async fn run_on_node(
    ctx: &Context,
    cf: &NodeConfig,
    command: LondisteCommand,
) -> Result<u8, LondisteError> {
    match command {
        LondisteCommand::CreateRoot { name, location } => {
            ctx.say(admin::create_node(cf, NodeType::Root, &name, &location, None).await?);
        }
        LondisteCommand::CreateBranch {
            name,
            location,
            provider,
        } => {
            let kind = NodeType::Branch;
            ctx.say(admin::create_node(cf, kind, &name, &location, Some(&provider)).await?);
        }
        LondisteCommand::CreateLeaf {
            name,
            location,
            provider,
        } => {
            let kind = NodeType::Leaf;
            ctx.say(admin::create_node(cf, kind, &name, &location, Some(&provider)).await?);
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
            let added = admin::add_tables(cf, &tables, &options).await?;
            if ctx.global.json {
                print_json(&added);
            }
            added.iter().for_each(|t| ctx.say(format!("added {t}")));
        }
        LondisteCommand::RemoveTable { tables } => {
            let removed = admin::remove_tables(cf, &tables).await?;
            removed.iter().for_each(|t| ctx.say(format!("removed {t}")));
        }
        LondisteCommand::Tables => {
            let tables = local::tables(cf).await?;
            show(ctx, &tables, || {
                let rows = (tables.iter())
                    .map(|t| {
                        let state = t.state.to_string();
                        vec![
                            t.table_name.clone(),
                            yes(t.local),
                            state,
                            opt(&t.dest_table),
                        ]
                    })
                    .collect();
                print_table(&["table", "local", "state", "dest table"], rows, &[]);
            });
        }
        LondisteCommand::Missing => {
            let missing = local::missing(cf).await?;
            show(ctx, &missing, || {
                for m in &missing {
                    let kind = if m.kind == "S" { "sequence" } else { "table" };
                    println!("{kind} {}", m.name);
                }
                if missing.is_empty() {
                    println!("nothing missing: every table and sequence of the set is here");
                }
            });
        }
        LondisteCommand::Fkeys => {
            let fkeys = local::pending_fkeys(cf).await?;
            show(ctx, &fkeys, || {
                let rows = (fkeys.iter())
                    .map(|f| {
                        let (from, to) = (f.from_table.clone(), f.to_table.clone());
                        vec![from, f.name.clone(), to, yes(f.ready)]
                    })
                    .collect();
                print_table(&["table", "foreign key", "references", "ready"], rows, &[]);
            });
        }
        LondisteCommand::Status { timeout } => {
            let nodes = status::cascade_status(cf, secs(timeout)).await?;
            show(ctx, &nodes, || print_status(&nodes));
            return Ok(exit_code(nodes.iter().any(|n| n.error.is_some())));
        }
        LondisteCommand::Members => {
            let members = local::members(cf).await?;
            show(ctx, &members, || {
                let rows = (members.iter())
                    .map(|m| {
                        let dead = if m.dead { "dead" } else { "" }.into();
                        vec![m.node_name.clone(), dead, m.node_location.clone()]
                    })
                    .collect();
                print_table(&["node", "", "location"], rows, &[]);
            });
        }
        LondisteCommand::NodeInfo => {
            let info = local::node_info(cf).await?;
            show(ctx, &info, || {
                let rows = [
                    ("node", opt(&info.node_name)),
                    ("type", opt(&info.node_type)),
                    ("provider", opt(&info.provider_node)),
                    ("worker", opt(&info.worker_name)),
                    ("paused", opt(&info.worker_paused)),
                    ("up to date", opt(&info.worker_uptodate)),
                    ("last tick", opt(&info.worker_last_tick)),
                    ("global watermark", opt(&info.global_watermark)),
                    ("local watermark", opt(&info.local_watermark)),
                ];
                println!("queue {}", cf.queue_name);
                let rows = rows.into_iter().map(|(k, v)| vec![k.into(), v]).collect();
                print_table(&["", ""], rows, &[]);
            });
        }
        LondisteCommand::Worker { daemon } => {
            match worker::run_until_signal(cf.clone(), daemon).await? {
                WorkerExit::Detached { pid, logfile } => ctx.say(format!(
                    "worker running in the background (pid {pid}, log {})",
                    logfile.display()
                )),
                WorkerExit::Stopped(stats) => ctx.say(format!(
                    "worker stopped: {} batches, {} events, {} statements",
                    stats.batches, stats.events, stats.statements
                )),
            }
        }
        LondisteCommand::Check => {
            let diffs = admin::check_structure(cf).await?;
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
            return Ok(exit_code(!diffs.is_empty()));
        }
        LondisteCommand::Resync { tables } => {
            for table in admin::resync(cf, &tables).await? {
                ctx.say(format!("{table}: copied again by the worker"));
            }
        }
        LondisteCommand::ChangeProvider { provider, timeout } => {
            ctx.say(takeover::change_provider(cf, &provider, secs(timeout)).await?);
        }
        LondisteCommand::Execute {
            files,
            wait,
            timeout,
        } => {
            // Each file is reported before the wait, which may time out.
            let done = admin::execute(cf, &files).await?;
            for (name, ran) in &done {
                ctx.say(if *ran {
                    format!("executed {name}")
                } else {
                    format!("skipped {name}: applied before")
                });
            }
            if wait {
                let names: Vec<String> = done.into_iter().map(|(name, _)| name).collect();
                admin::wait_executed(cf, &names, secs(timeout)).await?;
                ctx.say("applied on every node");
            }
        }
        LondisteCommand::Compare { tables, timeout } => {
            let diffs = compare::compare(cf, &tables, false, secs(timeout)).await?;
            for d in &diffs {
                let verdict = if d.equal { "equal" } else { "DIFFERENT" };
                ctx.say(format!(
                    "{}: {} rows on the provider, {} here, {verdict}",
                    d.table, d.provider_rows, d.local_rows
                ));
            }
            if ctx.global.json {
                print_json(&diffs);
            }
            return Ok(exit_code(diffs.iter().any(|d| !d.equal)));
        }
        LondisteCommand::Repair {
            tables,
            apply,
            timeout,
        } => {
            let repaired = compare::repair(cf, &tables, apply, secs(timeout), |d, fix| {
                let (t, m, e, c) = (&d.table, d.missing, d.extra, d.changed);
                ctx.say(match fix {
                    None => format!("{t}: equal ({} rows)", d.provider_rows),
                    Some(path) if apply => format!(
                        "{t}: fixed {m} missing, {e} extra, {c} changed rows ({})",
                        path.display()
                    ),
                    Some(path) => format!(
                        "{t}: {m} missing, {e} extra, {c} changed rows; fix in {}",
                        path.display()
                    ),
                })
            })
            .await?;
            if ctx.global.json {
                print_json(&repaired.diffs);
            }
            return Ok(exit_code(repaired.differences_remain));
        }
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
            let report = takeover::takeover(cf, &old, kind, all, secs(timeout)).await?;
            say_steps(ctx, &report, &report.done, &report.warnings);
            for line in &report.stranded {
                eprintln!("not moved: {line}");
            }
            return Ok(exit_code(!report.stranded.is_empty()));
        }
        LondisteCommand::Resurrect { dump, timeout } => {
            let report = resurrect::resurrect(cf, &dump, secs(timeout)).await?;
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
        }
        LondisteCommand::TagDead { nodes } => return tag(ctx, cf, &nodes, true).await,
        LondisteCommand::TagAlive { nodes } => return tag(ctx, cf, &nodes, false).await,
        LondisteCommand::DropNode { node } => {
            let report = members::drop_node(cf, &node).await?;
            say_steps(ctx, &report, &report.done, &report.warnings);
        }
        LondisteCommand::WaitRoot { timeout } => {
            let tick = members::wait(cf, Upstream::Root, secs(timeout)).await?;
            ctx.say(format!("applied up to tick {tick}"));
        }
        LondisteCommand::WaitProvider { timeout } => {
            let tick = members::wait(cf, Upstream::Provider, secs(timeout)).await?;
            ctx.say(format!("applied up to tick {tick}"));
        }
        LondisteCommand::AddSeq { seqs, all } => {
            for s in admin::add_seqs(cf, &seqs, all).await? {
                ctx.say(format!("added {s}"));
            }
        }
        LondisteCommand::RemoveSeq { seqs } => {
            for s in admin::remove_seqs(cf, &seqs).await? {
                ctx.say(format!("removed {s}"));
            }
        }
        LondisteCommand::Seqs => {
            let seqs = local::seqs(cf).await?;
            show(ctx, &seqs, || {
                let rows = (seqs.iter())
                    .map(|s| vec![s.seq_name.clone(), yes(s.local), s.last_value.to_string()])
                    .collect();
                print_table(&["sequence", "local", "published value"], rows, &[2]);
            });
        }
        LondisteCommand::Pause => {
            admin::set_paused(cf, true).await?;
            ctx.say("worker paused");
        }
        LondisteCommand::Resume => {
            admin::set_paused(cf, false).await?;
            ctx.say("worker resumed");
        }
        LondisteCommand::WaitSync { timeout } => {
            local::wait_sync(cf, Duration::from_secs(timeout)).await?;
            ctx.say("all tables ok");
        }
    }
    Ok(0)
}

fn print_status(nodes: &[status::NodeStatus]) {
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
    let header = [
        "node",
        "type",
        "provider",
        "last tick",
        "lag",
        "tables",
        "",
        "error",
    ];
    print_table(&header, rows, &[3]);
}

/// Prints a cascade change: the report as JSON with `--json`, each step done on stdout,
/// each warning on stderr.
fn say_steps(ctx: &Context, report: &impl Serialize, done: &[String], warnings: &[String]) {
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

/// `tag-dead` / `tag-alive`, node by node, each reported as it is told; exit 1 when a
/// member could not be told.
async fn tag(
    ctx: &Context,
    cf: &NodeConfig,
    nodes: &[String],
    dead: bool,
) -> Result<u8, LondisteError> {
    let word = if dead { "dead" } else { "alive" };
    let mut untold_anywhere = false;
    for node in nodes {
        let untold = members::tag(cf, node, dead).await?;
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
    Ok(exit_code(untold_anywhere))
}
