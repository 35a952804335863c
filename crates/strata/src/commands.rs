//! The dispatcher: a parsed command line to the command that runs it (each command
//! lives in its `*_commands` file, on [`Context`]).

use crate::cli::{Cli, Command, ConfigCommand};
use crate::context::{stoppable, CommandResult, Context};
use crate::failure::{code, Failure};
use strata_api::Cluster;

/// Runs a parsed command line; returns the exit code.
pub async fn run(cli: Cli) -> CommandResult {
    if let Command::Config {
        command: ConfigCommand::Default,
    } = &cli.command
    {
        print!("{}", strata_api::config::default_text());
        return Ok(0);
    }
    match &cli.command {
        Command::Completions { shell } => {
            crate::manual::completions(*shell)?;
            return Ok(0);
        }
        Command::Man { dir } => {
            let written = crate::manual::man_pages(dir)?;
            if !cli.global.quiet {
                println!("wrote {written} manual pages into {}", dir.display());
            }
            return Ok(0);
        }
        _ => {}
    }
    // `strata pgq ticker --config pgqd.ini`: that file is the ticker's, not strata's.
    let own_config = match &cli.command {
        Command::Pgq { command } => !command.reads_config_itself(cli.global.config.as_deref()),
        _ => true,
    };
    let ctx = Context::load(cli.global, own_config)?;
    // What holds the cluster (or the garbage collection lock) here ends cleanly on
    // SIGTERM (a unit's stop, a package upgrade, Ctrl-C). With --server the server holds it: this process only follows, and leaves
    // on a signal at once while the server's operation goes on.
    let holds_the_cluster = ctx.global.server.is_none()
        && matches!(
            cli.command,
            Command::Backup { .. }
                | Command::Restore { to: None, .. }
                | Command::Server { .. }
                | Command::Gc { .. }
                | Command::Delete { .. }
                | Command::Cleanup { .. }
        );
    let result = if holds_the_cluster {
        stoppable(&ctx, dispatch(&ctx, cli.command)).await
    } else {
        dispatch(&ctx, cli.command).await
    };
    ctx.local.finish().await;
    result
}

async fn dispatch(ctx: &Context, command: Command) -> CommandResult {
    match command {
        Command::Init => ctx.init().await,
        Command::Copy { backup, to } => ctx.copy(&backup, &to).await,
        Command::Backup {
            paths,
            node_name,
            exclude,
            wait,
        } => ctx.backup(paths, node_name, exclude, wait).await,
        Command::Status => ctx.status().await,
        Command::Schedules => ctx.schedules().await,
        Command::Cleanup { dry_run, policy } => ctx.cleanup(dry_run, policy).await,
        Command::Gc { dry_run } => ctx.gc(dry_run).await,
        Command::Repair { command } => ctx.repair(command).await,
        Command::Pin { backup } => ctx.pin(&backup, true).await,
        Command::Unpin { backup } => ctx.pin(&backup, false).await,
        Command::Server { node, listen } => ctx.server(node, listen).await,
        Command::Probe {
            url,
            ready,
            timeout,
            wait,
        } => ctx.probe(url, ready, timeout, wait).await,
        Command::List { limit, cursor } => ctx.list(limit, cursor).await,
        Command::Show { backup } => ctx.show(&backup).await,
        Command::Ls { backup, node, path } => {
            ctx.ls(&backup, node.as_deref(), path.as_deref()).await
        }
        Command::Restore {
            backup,
            tables,
            database,
            rename_to,
            dump,
            node,
            recovery,
            ..
        } if database.is_some() => {
            if dump.is_some() {
                ctx.here_only("--dump writes a file on this machine: drop --server")?;
            }
            ctx.restore_tables(&backup, tables, database, rename_to, dump, node, recovery)
                .await
        }
        Command::Restore {
            backup,
            to: Some(to),
            node,
            path,
            ..
        } => {
            ctx.here_only(
                "--to restores on this machine: drop --server, or restore in place without --to",
            )?;
            ctx.restore(&backup, &to, node.as_deref(), path).await
        }
        Command::Restore {
            backup,
            to: None,
            node,
            map,
            components,
            rename,
            dry_run,
            path,
            recovery,
            tables,
            rename_to,
            drop_stale_replicas,
            partitions,
            ..
        } => {
            // Without --database, --table is a ClickHouse table, brought back in place.
            if tables.len() > 1 {
                return Err(Failure::new(
                    code::USAGE,
                    "a ClickHouse restore takes one --table at a time (PostgreSQL tables need --database)",
                ));
            }
            if rename_to.is_some() && tables.is_empty() {
                return Err(Failure::new(
                    code::USAGE,
                    "--as goes with --table or --database",
                ));
            }
            let only = crate::cluster_commands::RestoreOnly {
                components,
                rename,
                dry_run,
                table: tables.into_iter().next(),
                table_as: rename_to,
                drop_stale_replicas,
                partitions,
            };
            ctx.cluster_restore(&backup, node, &map, only, path, recovery)
                .await
        }
        Command::WalPush { path } => ctx.wal_push(&path).await,
        Command::WalFetch { name, dest } => ctx.wal_fetch(&name, &dest).await,
        Command::PatroniReplica { args } => {
            ctx.here_only("Patroni runs this on the new member's host: drop --server")?;
            ctx.patroni_lay_down(&args, false).await
        }
        Command::PatroniBootstrap { args } => {
            ctx.here_only("Patroni runs this on the new member's host: drop --server")?;
            ctx.patroni_lay_down(&args, true).await
        }
        Command::Wal { command } => ctx.wal(command).await,
        Command::Delete { backups } => ctx.delete(&backups).await,
        Command::Verify {
            backup,
            read_data,
            read_data_subset,
            restore,
        } => {
            let subset = read_data_subset.as_deref();
            let check = strata_api::requests::data_check(read_data, subset)?;
            match (restore, backup) {
                (true, Some(backup)) => ctx.restore_drill(&backup).await,
                (_, backup) => ctx.verify(backup.as_deref(), check).await,
            }
        }
        Command::Tables { db, command } => ctx.tables(db, command).await,
        Command::Ttl { spec, db } => ctx.ttl(db, spec).await,
        Command::Load { load, db } => ctx.load_archive(db, load).await,
        Command::Pgq { command } => crate::pgq_commands::run(ctx, command).await,
        Command::Londiste { args } => crate::londiste_commands::run(ctx, args).await,
        Command::Audit { since, limit } => ctx.audit(since.as_deref(), limit).await,
        Command::Key { command } => ctx.key(command).await,
        Command::Migrate => ctx.migrate().await,
        Command::Config {
            command: ConfigCommand::Show,
        } => {
            // Secrets masked, as the server's /config shows them.
            let shown = strata_api::config::Shown::new(&ctx.config, &ctx.sections);
            let text = toml::to_string_pretty(&shown)
                .map_err(|e| Failure::new(code::FAILED, e.to_string()))?;
            print!("{text}");
            Ok(0)
        }
        Command::Config {
            command: ConfigCommand::Default,
        }
        | Command::Completions { .. }
        | Command::Man { .. } => unreachable!("handled above"),
    }
}
