//! Changing the cascade around a node: `change-provider`, `takeover`, `resurrect`,
//! `tag-dead`, `tag-alive`, `drop-node`, `change-location`, `rename-node`, and the waits
//! for the cascade to catch up (`wait-root`, `wait-provider`). Each prints the steps it
//! took; the ones that can leave work for the operator exit 1 when they do.

use super::Exit;
use crate::context::Context;
use crate::output::print_json;
use crate::pgq_commands::exit_code;
use serde::Serialize;
use std::path::Path;
use std::time::Duration;
use strata_londiste::members::{self, Upstream};
use strata_londiste::takeover::{self, OldNode};
use strata_londiste::{resurrect as resurrection, NodeConfig};

/// `change-provider`.
pub(super) async fn change_provider(
    ctx: &Context,
    cf: &NodeConfig,
    provider: &str,
    timeout: Duration,
) -> Exit {
    ctx.say(takeover::change_provider(cf, provider, timeout).await?);
    Ok(0)
}

/// `takeover`: exit 1 when a subscriber of the old node could not be moved.
pub(super) async fn takeover(
    ctx: &Context,
    cf: &NodeConfig,
    old: &str,
    kind: OldNode,
    all: bool,
    allow_missing_tables: bool,
    timeout: Duration,
) -> Exit {
    let report = takeover::takeover(cf, old, kind, all, allow_missing_tables, timeout).await?;
    say_steps(ctx, &report, &report.done, &report.warnings);
    for line in &report.stranded {
        eprintln!("not moved: {line}");
    }
    Ok(exit_code(!report.stranded.is_empty()))
}

/// `resurrect`: the steps, then what was lost and where it was saved.
pub(super) async fn resurrect(
    ctx: &Context,
    cf: &NodeConfig,
    dump: &Path,
    timeout: Duration,
) -> Exit {
    let report = resurrection::resurrect(cf, dump, timeout).await?;
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

/// `tag-dead` / `tag-alive`, node by node, each reported as it is told; exit 1 when a
/// member could not be told.
pub(super) async fn tag(ctx: &Context, cf: &NodeConfig, nodes: &[String], dead: bool) -> Exit {
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

/// `drop-node`.
pub(super) async fn drop_node(ctx: &Context, cf: &NodeConfig, node: &str) -> Exit {
    let report = members::drop_node(cf, node).await?;
    say_steps(ctx, &report, &report.done, &report.warnings);
    Ok(0)
}

/// `change-location`: exit 1 when a member was not told the new location.
pub(super) async fn change_location(
    ctx: &Context,
    cf: &NodeConfig,
    node: &str,
    location: &str,
) -> Exit {
    let report = members::change_location(cf, node, location).await?;
    say_steps(ctx, &report, &report.done, &report.warnings);
    Ok(exit_code(!report.warnings.is_empty()))
}

/// `rename-node`.
pub(super) async fn rename_node(ctx: &Context, cf: &NodeConfig, old: &str, new: &str) -> Exit {
    let report = members::rename_node(cf, old, new).await?;
    say_steps(ctx, &report, &report.done, &report.warnings);
    Ok(0)
}

/// `wait-root` / `wait-provider`.
pub(super) async fn wait(
    ctx: &Context,
    cf: &NodeConfig,
    upstream: Upstream,
    timeout: Duration,
) -> Exit {
    let tick = members::wait(cf, upstream, timeout).await?;
    ctx.say(format!("applied up to tick {tick}"));
    Ok(0)
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
