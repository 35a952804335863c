//! `strata londiste NODE.ini ...`: Londiste 3 node administration and the replay worker,
//! on the same ini files and SQL state as Python Londiste. Thin: parse the options, call
//! one function of strata-londiste, print its result. One function per subcommand, in
//! four rooms: `setup` (nodes, tables, sequences), `show` (listings and status),
//! `cascade` (moving and tagging members, waits) and `replay` (the worker and what
//! steers or checks it).

mod cascade;
mod replay;
mod setup;
mod show;

use crate::context::{CommandResult, Context};
use crate::failure::Failure;
use std::time::Duration;
use strata_londiste::admin::NodeType;
use strata_londiste::audit::{self, Outcome};
use strata_londiste::members::Upstream;
use strata_londiste::{LondisteArgs, LondisteCommand, LondisteError, NodeConfig};

/// What a subcommand returns: its exit code, or the error that stopped it.
type Exit = Result<u8, LondisteError>;

fn failure(err: LondisteError) -> Failure {
    Failure::new(err.code().exit_code(), crate::failure::chain(&err))
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
        let detail = match &result {
            Err(e) => crate::failure::chain(e),
            Ok(_) => String::new(),
        };
        let who = strata_api::runs::local_actor();
        let outcome = Outcome::of(&result);
        if let Err(e) = audit::record(&cf, &who, action, &target, outcome, &detail).await {
            eprintln!("warning: not recorded in the audit log: {e}");
        }
    }
    result.map_err(failure)
}

/// Runs `command` on the node of `cf`; returns the exit code.
async fn run_on_node(ctx: &Context, cf: &NodeConfig, command: LondisteCommand) -> Exit {
    use LondisteCommand as C;
    match command {
        C::CreateRoot { name, location } => {
            setup::create_node(ctx, cf, NodeType::Root, &name, &location, None).await
        }
        C::CreateBranch {
            name,
            location,
            provider,
        } => setup::create_node(ctx, cf, NodeType::Branch, &name, &location, Some(&provider)).await,
        C::CreateLeaf {
            name,
            location,
            provider,
        } => setup::create_node(ctx, cf, NodeType::Leaf, &name, &location, Some(&provider)).await,
        C::JoinRestored {
            name,
            location,
            provider,
            branch,
            check,
            keep_archiving,
            timeout,
        } => {
            let request = strata_londiste::seed::JoinRequest {
                name: &name,
                location: &location,
                provider: &provider,
                branch,
                check_only: check,
                keep_archiving,
                promote_timeout: Duration::from_secs(timeout),
            };
            setup::join_restored(ctx, cf, &request).await
        }
        C::AddTable { tables, options } => setup::add_tables(ctx, cf, &tables, &options).await,
        C::RemoveTable { tables } => setup::remove_tables(ctx, cf, &tables).await,
        C::AddSeq { seqs, all } => setup::add_seqs(ctx, cf, &seqs, all).await,
        C::RemoveSeq { seqs } => setup::remove_seqs(ctx, cf, &seqs).await,
        C::Tables => show::tables(ctx, cf).await,
        C::Missing => show::missing(ctx, cf).await,
        C::Fkeys => show::fkeys(ctx, cf).await,
        C::Status { timeout } => show::status(ctx, cf, secs(timeout)).await,
        C::Members => show::members(ctx, cf).await,
        C::NodeInfo => show::node_info(ctx, cf).await,
        C::Seqs => show::seqs(ctx, cf).await,
        C::Audit { limit } => show::audit(ctx, cf, limit).await,
        C::Worker { daemon, verbose } => replay::worker(ctx, cf, daemon, verbose).await,
        C::Check => replay::check(ctx, cf).await,
        C::Resync { tables } => replay::resync(ctx, cf, &tables).await,
        C::Execute {
            files,
            wait,
            timeout,
        } => replay::execute(ctx, cf, &files, wait.then(|| secs(timeout))).await,
        C::Compare { tables, timeout } => replay::compare(ctx, cf, &tables, secs(timeout)).await,
        C::Repair {
            tables,
            apply,
            timeout,
        } => replay::repair(ctx, cf, &tables, apply, secs(timeout)).await,
        C::Pause => replay::set_paused(ctx, cf, true).await,
        C::Resume => replay::set_paused(ctx, cf, false).await,
        C::ParkEvent {
            event,
            batch,
            reason,
        } => replay::park_event(ctx, cf, event, batch, &reason).await,
        C::WaitSync { timeout } => replay::wait_sync(ctx, cf, Duration::from_secs(timeout)).await,
        C::ChangeProvider { provider, timeout } => {
            cascade::change_provider(ctx, cf, &provider, secs(timeout)).await
        }
        C::Takeover {
            old,
            dead_root,
            dead_branch,
            all,
            allow_missing_tables,
            timeout,
        } => {
            let kind = strata_londiste::takeover::OldNode::from_flags(dead_root, dead_branch);
            let allow = allow_missing_tables;
            cascade::takeover(ctx, cf, &old, kind, all, allow, secs(timeout)).await
        }
        C::Resurrect { dump, timeout } => cascade::resurrect(ctx, cf, &dump, secs(timeout)).await,
        C::TagDead { nodes } => cascade::tag(ctx, cf, &nodes, true).await,
        C::TagAlive { nodes } => cascade::tag(ctx, cf, &nodes, false).await,
        C::DropNode { node } => cascade::drop_node(ctx, cf, &node).await,
        C::ChangeLocation { node, location } => {
            cascade::change_location(ctx, cf, &node, &location).await
        }
        C::RenameNode { old, new } => cascade::rename_node(ctx, cf, &old, &new).await,
        C::WaitRoot { timeout } => cascade::wait(ctx, cf, Upstream::Root, secs(timeout)).await,
        C::WaitProvider { timeout } => {
            cascade::wait(ctx, cf, Upstream::Provider, secs(timeout)).await
        }
    }
}
