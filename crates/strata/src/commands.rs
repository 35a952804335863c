//! One function per command: load configuration, call the library, print the result.

use crate::cli::{Cli, Command, ConfigCommand, Global};
use crate::failure::{code, Failure};
use crate::output;
use std::io::IsTerminal;
use std::path::Path;
use strata_api::{Cluster, Http, InProcess};
use strata_coordinator::config::Config;
use strata_coordinator::storage::Storage;
use strata_coordinator::verify::DataCheck;
use strata_coordinator::CoordinatorError;

pub(crate) type CommandResult = Result<u8, Failure>;

/// Runs a parsed command line; returns the exit code.
pub async fn run(cli: Cli) -> CommandResult {
    if let Command::Config {
        command: ConfigCommand::Default,
    } = &cli.command
    {
        print!("{}", crate::config::default_text());
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
    // What holds the cluster here ends cleanly on SIGTERM (a unit's stop, a package
    // upgrade). With --server the server holds it: this process only follows, and leaves
    // on a signal at once while the server's operation goes on.
    let holds_the_cluster = ctx.global.server.is_none()
        && matches!(
            cli.command,
            Command::Backup { .. } | Command::Restore { to: None, .. } | Command::Server { .. }
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
        } if !tables.is_empty() || database.is_some() => {
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
            ..
        } => {
            let only = crate::cluster_commands::RestoreOnly {
                components,
                rename,
                dry_run,
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
            let check = match (read_data, read_data_subset) {
                (_, Some(text)) => DataCheck::Subset(parse_percent(&text)?),
                (true, None) => DataCheck::All,
                (false, None) => DataCheck::Structure,
            };
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
            let shown = crate::config::Shown::new(&ctx.config, &ctx.sections);
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

pub(crate) struct Context {
    pub(crate) config: Config,
    /// The sections of the file other crates own (`[tables]`, `[pgq]`).
    pub(crate) sections: crate::config::Sections,
    pub(crate) global: Global,
    /// The use cases run in this process (also what `--server` does not cover: init,
    /// keys, WAL archiving, restores into a directory here).
    pub(crate) local: InProcess,
    /// The server of `--server`, when given.
    http: Option<Http>,
    /// Why this process must stop (set on SIGTERM), for `strata server`.
    pub(crate) stop: tokio::sync::watch::Sender<Option<String>>,
}

/// How long a stopped command waits for its operation to record its end; below systemd's
/// default stop timeout (90 s).
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs `work`; on SIGTERM or SIGINT, asks what runs here to stop (it records itself
/// failed with the reason and releases its nodes and the cluster lock) and waits for
/// that, up to [`STOP_WAIT`].
async fn stoppable(
    ctx: &Context,
    work: impl std::future::Future<Output = CommandResult>,
) -> CommandResult {
    use tokio::signal::unix::{signal, SignalKind};
    let handler = |kind| {
        signal(kind).map_err(|e| Failure::new(code::FAILED, format!("cannot handle signals: {e}")))
    };
    let (mut term, mut int) = (
        handler(SignalKind::terminate())?,
        handler(SignalKind::interrupt())?,
    );
    tokio::pin!(work);
    let signal = tokio::select! {
        result = &mut work => return result,
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    let why = format!("stopped: strata received {signal}");
    eprintln!("strata: {why}; ending what runs");
    ctx.local.stop(&why);
    ctx.stop.send_replace(Some(why.clone()));
    match tokio::time::timeout(STOP_WAIT, work).await {
        Ok(result) => result,
        Err(_) => Err(Failure::new(
            code::FAILED,
            format!(
                "{why}, but what ran did not end within {} s",
                STOP_WAIT.as_secs()
            ),
        )),
    }
}

pub(crate) fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("output serializes")
    );
}

impl Context {
    /// The configuration of `--config`, `./strata.toml` or the defaults; with
    /// `own_config` false `--config` belongs to the command and strata's own is not read.
    fn load(global: Global, own_config: bool) -> Result<Context, Failure> {
        let defaults = || crate::config::parse("", Path::new("(defaults)"), Path::new("."));
        let (mut config, sections) = match &global.config {
            Some(_) if !own_config => defaults()?,
            Some(path) => crate::config::load(path)?,
            None if Path::new("strata.toml").exists() => {
                crate::config::load(Path::new("strata.toml"))?
            }
            None => defaults()?,
        };
        config.apply_command_line(
            global.repo.as_deref(),
            global.storage.as_deref(),
            global.state_dir.as_deref(),
        )?;
        let http = crate::client::server(&global, &config)?;
        let asking = config.clone();
        let quiet = global.quiet;
        let local = InProcess::new(
            config.clone(),
            Box::new(move || {
                ask_password(&asking, false).map_err(|f| CoordinatorError::Password(f.message))
            }),
            Box::new(move |warning| {
                if !quiet {
                    eprintln!("strata: warning: {warning}");
                }
            }),
        );
        Ok(Context {
            config,
            sections,
            global,
            local,
            http,
            stop: tokio::sync::watch::channel(None).0,
        })
    }

    /// The cluster the commands act on: the server of `--server`, else this process.
    pub(crate) fn cluster(&self) -> &dyn Cluster {
        match &self.http {
            Some(http) => http,
            None => &self.local,
        }
    }

    /// The server of `--server` for the table retention calls, when given.
    pub(crate) fn tables_server(&self) -> Option<&dyn strata_api::Tables> {
        self.http.as_ref().map(|h| h as &dyn strata_api::Tables)
    }

    /// Whether commands go to a server (`--server`).
    pub(crate) fn remote(&self) -> bool {
        self.http.is_some()
    }

    /// Refuses `--server` for a command that only runs here.
    pub(crate) fn here_only(&self, why: &str) -> Result<(), Failure> {
        match self.http {
            Some(_) => Err(Failure::new(code::USAGE, why)),
            None => Ok(()),
        }
    }

    /// Whether live progress may be drawn (never with -q or --json).
    pub(crate) fn interactive(&self) -> bool {
        !self.global.quiet && !self.global.json
    }

    pub(crate) fn say(&self, text: impl AsRef<str>) {
        if !self.global.quiet && !self.global.json {
            println!("{}", text.as_ref());
        }
    }

    pub(crate) fn storage(&self) -> Result<Storage, Failure> {
        Ok(self.local.storage()?)
    }

    /// The password when `storage` is encrypted (unencrypted repositories have no real
    /// key, so nobody is asked for one).
    pub(crate) async fn password_for(&self, storage: &Storage) -> Result<Option<String>, Failure> {
        Ok(self.local.password_for(storage).await?)
    }
}

/// `5%` or `5` as a percentage between 0 (exclusive) and 100.
fn parse_percent(text: &str) -> Result<f64, Failure> {
    strata_coordinator::actions::parse_percent(text).ok_or_else(|| {
        Failure::new(
            code::USAGE,
            format!("--read-data-subset {text:?}: give a percentage such as 5%"),
        )
    })
}

impl Context {
    /// `strata verify --restore BACKUP`: here, or with --server on the server's host.
    async fn restore_drill(&self, wanted: &str) -> CommandResult {
        let report = self.cluster().drill(wanted).await?;
        if self.global.json {
            print_json(&report);
        } else {
            self.say(format!(
                "restore drill of {}: {} nodes, {} files ({}) restored, verified and checked against the manifests; scratch copy removed",
                report.backup,
                report.nodes,
                report.files,
                output::size(report.bytes)
            ));
            for line in &report.database {
                self.say(format!("  {line}"));
            }
        }
        if report.problems.is_empty() {
            return Ok(0);
        }
        for problem in &report.problems {
            eprintln!("strata: problem: {problem}");
        }
        Err(Failure::new(
            code::DAMAGED,
            format!(
                "the restore drill of {} found {} problems",
                report.backup,
                report.problems.len()
            ),
        ))
    }
}
/// The password from env or file, else asked on the terminal (twice with `confirm`).
pub(crate) fn ask_password(config: &Config, confirm: bool) -> Result<Option<String>, Failure> {
    if let Some(password) = config.password()? {
        return Ok(Some(password));
    }
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    let ask = |prompt: &str| {
        rpassword::prompt_password(prompt)
            .map_err(|e| Failure::new(code::PASSWORD, format!("cannot read the password: {e}")))
    };
    let first = ask("repository password: ")?;
    if confirm && ask("repeat the password: ")? != first {
        return Err(Failure::new(code::PASSWORD, "the passwords do not match"));
    }
    Ok(Some(first))
}
