//! What a node and its cascade look like: `tables`, `missing`, `fkeys`, `status`,
//! `members`, `node-info`, `seqs`, `audit`. Read only; `status` alone has an exit code of
//! its own (1 when a member reports an error).

use super::Exit;
use crate::context::Context;
use crate::output::{opt, print_pairs, print_rows, show, yes};
use crate::pgq_commands::exit_code;
use std::time::Duration;
use strata_londiste::{audit as audit_log, local, status as cascade, NodeConfig};

/// `tables`.
pub(super) async fn tables(ctx: &Context, cf: &NodeConfig) -> Exit {
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
    Ok(0)
}

/// `missing`.
pub(super) async fn missing(ctx: &Context, cf: &NodeConfig) -> Exit {
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
    Ok(0)
}

/// `fkeys`.
pub(super) async fn fkeys(ctx: &Context, cf: &NodeConfig) -> Exit {
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
    Ok(0)
}

/// `status`: exit 1 when a member reports an error.
pub(super) async fn status(ctx: &Context, cf: &NodeConfig, timeout: Duration) -> Exit {
    let nodes = cascade::cascade_status(cf, timeout).await?;
    show(&ctx.global, &nodes, || print_status(&nodes));
    Ok(exit_code(nodes.iter().any(|n| n.error.is_some())))
}

/// `members`.
pub(super) async fn members(ctx: &Context, cf: &NodeConfig) -> Exit {
    let members = local::members(cf).await?;
    show(&ctx.global, &members, || {
        print_rows(&["node", "", "location"], &members, &[], |m| {
            let dead = if m.dead { "dead" } else { "" }.into();
            vec![m.node_name.clone(), dead, m.node_location.clone()]
        })
    });
    Ok(0)
}

/// `node-info`.
pub(super) async fn node_info(ctx: &Context, cf: &NodeConfig) -> Exit {
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
    Ok(0)
}

/// `seqs`.
pub(super) async fn seqs(ctx: &Context, cf: &NodeConfig) -> Exit {
    let seqs = local::seqs(cf).await?;
    show(&ctx.global, &seqs, || {
        print_rows(
            &["sequence", "local", "published value"],
            &seqs,
            &[2],
            |s| vec![s.seq_name.clone(), yes(s.local), s.last_value.to_string()],
        )
    });
    Ok(0)
}

/// `audit`: the newest `limit` entries of the node's audit log.
pub(super) async fn audit(ctx: &Context, cf: &NodeConfig, limit: u32) -> Exit {
    let entries = audit_log::read(cf, limit).await?;
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
    Ok(0)
}

/// The `status` table, then each member's latest parked events.
fn print_status(nodes: &[cascade::NodeStatus]) {
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
        let flag = if n.is_dead() {
            "dead"
        } else if n.is_paused() {
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
