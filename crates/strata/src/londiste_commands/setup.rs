//! Making a node and choosing what it replicates: `create-*`, `join-restored`,
//! `add-table`, `remove-table`, `add-seq`, `remove-seq`.

use super::Exit;
use crate::context::Context;
use crate::output::print_json;
use strata_londiste::admin::{self, AddTableOptions, NodeType};
use strata_londiste::seed::{self, JoinRequest};
use strata_londiste::NodeConfig;

/// `create-root`, `create-branch`, `create-leaf`: the provider is `None` for the root.
pub(super) async fn create_node(
    ctx: &Context,
    cf: &NodeConfig,
    kind: NodeType,
    name: &str,
    location: &str,
    provider: Option<&str>,
) -> Exit {
    ctx.say(admin::create_node(cf, kind, name, location, provider).await?);
    Ok(0)
}

/// `join-restored`: the position the restore joins at, then whether it joined.
pub(super) async fn join_restored(
    ctx: &Context,
    cf: &NodeConfig,
    request: &JoinRequest<'_>,
) -> Exit {
    let report = seed::join_restored(cf, request).await?;
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
    Ok(0)
}

/// `add-table`.
pub(super) async fn add_tables(
    ctx: &Context,
    cf: &NodeConfig,
    tables: &[String],
    options: &AddTableOptions,
) -> Exit {
    let added = admin::add_tables(cf, tables, options).await?;
    if ctx.global.json {
        print_json(&added);
    }
    added.iter().for_each(|t| ctx.say(format!("added {t}")));
    Ok(0)
}

/// `remove-table`.
pub(super) async fn remove_tables(ctx: &Context, cf: &NodeConfig, tables: &[String]) -> Exit {
    let removed = admin::remove_tables(cf, tables).await?;
    removed.iter().for_each(|t| ctx.say(format!("removed {t}")));
    Ok(0)
}

/// `add-seq`.
pub(super) async fn add_seqs(ctx: &Context, cf: &NodeConfig, seqs: &[String], all: bool) -> Exit {
    for s in admin::add_seqs(cf, seqs, all).await? {
        ctx.say(format!("added {s}"));
    }
    Ok(0)
}

/// `remove-seq`.
pub(super) async fn remove_seqs(ctx: &Context, cf: &NodeConfig, seqs: &[String]) -> Exit {
    for s in admin::remove_seqs(cf, seqs).await? {
        ctx.say(format!("removed {s}"));
    }
    Ok(0)
}
