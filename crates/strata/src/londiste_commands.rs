//! `strata londiste NODE.ini ...`: Londiste 3 node administration and the replay worker,
//! on the same ini files and SQL state as Python Londiste. Thin: parse the options, call
//! one function of strata-londiste, print its result.

use crate::context::{CommandResult, Context};
use crate::failure::{code, Failure};
use crate::output::print_json;
use crate::output::{opt, print_pairs, print_rows, show, yes};
use crate::pgq_commands::exit_code;
use serde::Serialize;
use std::time::Duration;
use strata_londiste::admin::{self, NodeType};
use strata_londiste::members::{self, Upstream};
use strata_londiste::takeover::{self, OldNode};
use strata_londiste::worker::{self, WorkerExit};
use strata_londiste::{audit, compare, local, park, resurrect, status};
use strata_londiste::{LondisteArgs, LondisteCommand, LondisteError, NodeConfig};

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

/// Runs a `londiste` subcommand; one that changes the node or the cascade is recorded in
/// the node's audit log, whatever its outcome.
pub(crate) async fn run(ctx: &Context, args: LondisteArgs) -> CommandResult {
    let cf = NodeConfig::load(&args.ini).map_err(failure)?;
    let audited = audit::describe(&args.command);
    let result = run_on_node(ctx, &cf, args.command).await;
    if let Some((action, target)) = audited {
        let (outcome, detail) = match &result {
            Ok(0) => ("succeeded", String::new()),
            Ok(_) => ("partial", String::new()),
            Err(e) => ("failed", crate::failure::chain(e)),
        };
        let who = strata_coordinator::audit::local_actor();
        if let Err(e) = audit::record(&cf, &who, action, &target, outcome, &detail).await {
            eprintln!("warning: not recorded in the audit log: {e}");
        }
    }
    result.map_err(failure)
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
        LondisteCommand::JoinRestored {
            name,
            location,
            provider,
            branch,
            check,
            keep_archiving,
            timeout,
        } => {
            let limit = std::time::Duration::from_secs(timeout);
            let request = strata_londiste::seed::JoinRequest {
                name: &name,
                location: &location,
                provider: &provider,
                branch,
                check_only: check,
                keep_archiving,
                promote_timeout: limit,
            };
            let report = strata_londiste::seed::join_restored(cf, &request).await?;
            if ctx.global.json {
                print_json(&report);
            }
            let p = &report.position;
            ctx.say(format!(
                "the restore of {} joins at tick {} with snapshot {}: {} tables without a copy{}{}",
                p.provider_node,
                p.tick,
                p.snapshot,
                p.tables.len(),
                if p.copying.is_empty() {
                    String::new()
                } else {
                    format!(", {} to copy ({})", p.copying.len(), p.copying.join(", "))
                },
                if p.seqs.is_empty() {
                    String::new()
                } else {
                    format!(", {} sequences", p.seqs.len())
                }
            ));
            ctx.say(if report.joined {
                format!(
                    "{} {} created: start its worker",
                    report.node_type, report.node
                )
            } else {
                "checked: nothing changed (the server is still paused)".to_string()
            });
        }
        LondisteCommand::AddTable { tables, options } => {
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
            show(&ctx.global, &tables, || {
                print_rows(
                    &["table", "local", "state", "dest table"],
                    &tables,
                    &[],
                    |t| {
                        let (name, state) = (t.table_name.clone(), t.state.to_string());
                        vec![name, yes(t.local), state, opt(&t.dest_table)]
                    },
                )
            });
        }
        LondisteCommand::Missing => {
            let missing = local::missing(cf).await?;
            show(&ctx.global, &missing, || {
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
            show(&ctx.global, &fkeys, || {
                print_rows(
                    &["table", "foreign key", "references", "ready"],
                    &fkeys,
                    &[],
                    |f| {
                        let (from, to) = (f.from_table.clone(), f.to_table.clone());
                        vec![from, f.name.clone(), to, yes(f.ready)]
                    },
                )
            });
        }
        LondisteCommand::Status { timeout } => {
            let nodes = status::cascade_status(cf, secs(timeout)).await?;
            show(&ctx.global, &nodes, || print_status(&nodes));
            return Ok(exit_code(nodes.iter().any(|n| n.error.is_some())));
        }
        LondisteCommand::Members => {
            let members = local::members(cf).await?;
            show(&ctx.global, &members, || {
                print_rows(&["node", "", "location"], &members, &[], |m| {
                    let dead = if m.dead { "dead" } else { "" }.into();
                    vec![m.node_name.clone(), dead, m.node_location.clone()]
                })
            });
        }
        LondisteCommand::NodeInfo => {
            let info = local::node_info(cf).await?;
            show(&ctx.global, &info, || {
                println!("queue {}", cf.queue_name);
                print_pairs(
                    ["", ""],
                    vec![
                        ("node", opt(&info.node_name)),
                        ("type", opt(&info.node_type)),
                        ("provider", opt(&info.provider_node)),
                        ("worker", opt(&info.worker_name)),
                        ("paused", opt(&info.worker_paused)),
                        ("up to date", opt(&info.worker_uptodate)),
                        ("last tick", opt(&info.worker_last_tick)),
                        ("global watermark", opt(&info.global_watermark)),
                        ("local watermark", opt(&info.local_watermark)),
                    ],
                );
            });
        }
        LondisteCommand::Worker { daemon, verbose } => {
            // -q (every command's) logs errors only; each -v one level more.
            let verbosity = if ctx.global.quiet {
                -3
            } else {
                i32::from(verbose)
            };
            match worker::run_until_signal(cf.clone(), daemon, verbosity).await? {
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
            allow_missing_tables,
            timeout,
        } => {
            let kind = OldNode::from_flags(dead_root, dead_branch);
            let allow = allow_missing_tables;
            let report = takeover::takeover(cf, &old, kind, all, allow, secs(timeout)).await?;
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
        LondisteCommand::ChangeLocation { node, location } => {
            let report = members::change_location(cf, &node, &location).await?;
            say_steps(ctx, &report, &report.done, &report.warnings);
            return Ok(exit_code(!report.warnings.is_empty()));
        }
        LondisteCommand::RenameNode { old, new } => {
            let report = members::rename_node(cf, &old, &new).await?;
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
            show(&ctx.global, &seqs, || {
                print_rows(
                    &["sequence", "local", "published value"],
                    &seqs,
                    &[2],
                    |s| vec![s.seq_name.clone(), yes(s.local), s.last_value.to_string()],
                )
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
        LondisteCommand::Audit { limit } => {
            let entries = audit::read(cf, limit).await?;
            show(&ctx.global, &entries, || {
                print_rows(
                    &[
                        "time", "who", "node", "action", "target", "outcome", "detail",
                    ],
                    &entries,
                    &[],
                    |e| {
                        vec![
                            e.time.clone(),
                            e.who.clone(),
                            opt(&e.node),
                            e.action.clone(),
                            e.target.clone(),
                            e.outcome.clone(),
                            e.detail.clone(),
                        ]
                    },
                )
            });
        }
        LondisteCommand::ParkEvent {
            event,
            batch,
            reason,
        } => {
            let report = park::park_event(cf, event, batch, &reason).await?;
            if ctx.global.json {
                print_json(&report);
            }
            ctx.say(format!(
                "event {} ({}{}) of batch {} parked in {}: worker {} applies the rest of the batch",
                report.ev_id,
                report.ev_type.as_deref().unwrap_or("?"),
                report
                    .table
                    .as_deref()
                    .map(|t| format!(", table {t}"))
                    .unwrap_or_default(),
                report.batch_id,
                park::TABLE,
                report.consumer
            ));
        }
        LondisteCommand::WaitSync { timeout } => {
            local::wait_sync(cf, Duration::from_secs(timeout)).await?;
            ctx.say("all tables ok");
        }
    }
    Ok(0)
}

fn print_status(nodes: &[status::NodeStatus]) {
    let header = [
        "node",
        "type",
        "provider",
        "last tick",
        "lag",
        "tables",
        "parked",
        "",
        "error",
    ];
    print_rows(&header, nodes, &[3], |n| {
        let info = n.info.as_ref();
        let paused = info.and_then(|i| i.worker_paused).unwrap_or(false);
        let flag = if n.location_dead && info.is_none() {
            "dead"
        } else if paused {
            "paused"
        } else {
            ""
        };
        vec![
            n.name.clone(),
            info.and_then(|i| i.node_type.clone()).unwrap_or("?".into()),
            opt(&info.and_then(|i| i.provider_node.clone())),
            opt(&info.and_then(|i| i.worker_last_tick)),
            n.lag_secs.map_or("-".into(), |l| format!("{l:.1}s")),
            n.tables.as_ref().map_or("-".into(), |t| {
                format!("{} ok, {} copying, {} waiting", t.ok, t.copying, t.waiting)
            }),
            n.parked
                .as_ref()
                .map_or("-".into(), |p| p.count.to_string()),
            flag.into(),
            opt(&n.error),
        ]
    });
    for n in nodes {
        for p in n.parked.iter().flat_map(|p| &p.latest) {
            println!(
                "parked on {}: event {} ({}{}) tick {}, {} by {}: {}",
                n.name,
                p.ev_id,
                p.ev_type.as_deref().unwrap_or("?"),
                p.table
                    .as_deref()
                    .map(|t| format!(", {t}"))
                    .unwrap_or_default(),
                p.tick_id,
                p.parked_at,
                p.parked_by,
                p.reason
            );
        }
    }
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
