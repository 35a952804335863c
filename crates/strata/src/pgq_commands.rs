//! `strata pgq ...`: the PgQ ticker daemon and queue administration. Thin: parse the
//! options, connect, call strata-pgq, print.

use crate::commands::{print_json, CommandResult, Context};
use crate::failure::{code, Failure};
use crate::output;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::time::Duration;
use strata_coordinator::config::ConfigError;
use strata_pgq::api::{self, ConsumerInfo, QueueInfo};
use strata_pgq::ticker::config::TickerConfig;
use strata_pgq::ticker::{self, Exit, Overrides};
use strata_pgq::PgqError;

/// The database holding the queues.
#[derive(Debug, Args)]
pub struct PgqDb {
    /// Database with the pgq extension: postgresql://user@host/db or host=... dbname=...
    #[arg(long, env = "STRATA_PGQ_DB")]
    pub db: Option<String>,
}

/// The `pgq` subcommands.
#[derive(Debug, Subcommand)]
pub enum PgqCommand {
    /// Queues (event rate, ticker lag, rotation) and consumers (lag, last seen, pending
    /// events). With --max-lag, exits 1 when a ticker or consumer lags more (for cron, with -q).
    Status {
        #[command(flatten)]
        db: PgqDb,
        /// Only this queue.
        #[arg(long)]
        queue: Option<String>,
        /// Fail (exit 1) when a queue's ticker lag or a consumer's lag passes this many seconds.
        #[arg(long, value_name = "SECS")]
        max_lag: Option<f64>,
    },
    /// Create a queue (a no-op when it exists).
    CreateQueue {
        #[command(flatten)]
        db: PgqDb,
        queue: String,
        /// Install strata's event notification trigger so the ticker ticks at once.
        #[arg(long)]
        notify: bool,
        /// Queue setting KEY=VALUE (repeatable): ticker_max_count, ticker_max_lag,
        /// ticker_idle_period, ticker_paused, rotation_period, external_ticker.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        settings: Vec<String>,
    },
    /// Drop a queue; --force drops it even with consumers registered.
    DropQueue {
        #[command(flatten)]
        db: PgqDb,
        queue: String,
        #[arg(long)]
        force: bool,
    },
    /// Register a consumer on a queue (at the newest tick), or with --sub a cooperative
    /// subconsumer of a registered consumer (installs strata's coop functions).
    Register {
        #[command(flatten)]
        db: PgqDb,
        queue: String,
        consumer: String,
        /// Subconsumer name: several processes share CONSUMER's stream (docs/pgq.md).
        #[arg(long)]
        sub: Option<String>,
    },
    /// Unregister a consumer (its position and retry events are dropped), or with --sub a
    /// subconsumer (refused while it holds a batch).
    Unregister {
        #[command(flatten)]
        db: PgqDb,
        queue: String,
        consumer: String,
        #[arg(long)]
        sub: Option<String>,
    },
    /// Show a queue's settings, or change them with KEY=VALUE arguments.
    Config {
        #[command(flatten)]
        db: PgqDb,
        queue: String,
        /// KEY=VALUE settings to change (none: show).
        settings: Vec<String>,
    },
    /// Turn strata's event notification trigger on or off for a queue.
    Notify {
        #[command(flatten)]
        db: PgqDb,
        queue: String,
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Run the ticker: ticks, retry events and maintenance for every database with pgq.
    /// Takes pgqd's ini file, like `pgqd CONFIG`, or strata's configuration (a .toml
    /// file; --config or ./strata.toml by default) with a [pgq] section.
    Ticker {
        /// pgqd.ini, or strata's .toml configuration with a [pgq] section (docs/pgq.md).
        #[arg(value_name = "CONFIG")]
        file: Option<PathBuf>,
        /// Detach and run in the background (needs logfile and pidfile in the config or
        /// given here).
        #[arg(short, long)]
        daemon: bool,
        /// Serve /health and /metrics on this address (host:port).
        #[arg(long, value_name = "ADDR")]
        health: Option<String>,
        /// Stop with exit code 1 when a database stays unreachable (or stalled) this many
        /// seconds; 0 turns off the config file's exit_on_unreachable.
        #[arg(long, value_name = "SECS")]
        exit_on_unreachable: Option<f64>,
        #[arg(long)]
        pidfile: Option<PathBuf>,
        #[arg(long)]
        logfile: Option<PathBuf>,
    },
}

impl PgqCommand {
    /// Whether the global `--config` names this command's own file (the ticker's
    /// pgqd.ini), so strata's configuration must not be read from it. A `.toml` file is
    /// strata's configuration, whose `[pgq]` section the ticker runs on.
    pub fn reads_config_itself(&self, config: Option<&Path>) -> bool {
        matches!(self, PgqCommand::Ticker { .. }) && config.is_some_and(|c| !is_toml(c))
    }
}

/// A file ending in `.toml` is strata's configuration; the ticker's other files are
/// pgqd's ini.
fn is_toml(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "toml")
}

/// The ticker's settings from the `[pgq]` section of strata's configuration file (the
/// whole file is read and checked, as every command does; relative paths are relative to
/// it). Read again on SIGHUP.
fn read_strata_config(path: &Path) -> Result<TickerConfig, PgqError> {
    let (_, sections) = crate::config::load(path).map_err(|e| PgqError::Config {
        path: path.display().to_string(),
        reason: match e {
            ConfigError::Parse { message, .. } => message,
            e => crate::failure::chain(&e),
        },
    })?;
    Ok(sections.pgq.ticker())
}

/// `--exit-on-unreachable SECS`: a positive number of seconds, or 0 for "never" (which
/// overrides a policy in the file).
fn exit_policy(secs: Option<f64>) -> Result<Option<Option<Duration>>, Failure> {
    match secs {
        None => Ok(None),
        Some(0.0) => Ok(Some(None)),
        Some(s) if s > 0.0 && s < 1e9 => Ok(Some(Some(Duration::from_secs_f64(s)))),
        Some(_) => Err(usage(
            "--exit-on-unreachable: a positive number of seconds, or 0 for never",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_on_unreachable_zero_turns_the_policy_off() {
        assert_eq!(exit_policy(None).unwrap(), None);
        assert_eq!(exit_policy(Some(0.0)).unwrap(), Some(None));
        assert_eq!(
            exit_policy(Some(2.5)).unwrap(),
            Some(Some(Duration::from_millis(2500)))
        );
        assert!(exit_policy(Some(-1.0)).is_err());
        assert!(exit_policy(Some(f64::NAN)).is_err());
    }
}

fn usage(message: impl Into<String>) -> Failure {
    Failure::new(code::USAGE, message)
}

fn failure(err: PgqError) -> Failure {
    // SQLSTATE class 22 (data exception): a value the server could not take, such as
    // `ticker_max_lag=soon`, is the caller's input.
    let bad_value = matches!(&err, PgqError::Sql { cause, .. }
        if cause.code().is_some_and(|c| c.code().starts_with("22")));
    let code = match &err {
        // A background child that failed at start: its own exit code (2 for a bad
        // config or a live pidfile, 1 for the rest).
        PgqError::ChildFailed { code: Some(c), .. } => u8::try_from(*c)
            .ok()
            .filter(|c| *c != 0)
            .unwrap_or(code::FAILED),
        _ if err.is_bad_input() || bad_value => code::USAGE,
        _ => code::FAILED,
    };
    Failure::new(code, crate::failure::chain(&err))
}

/// Errors of the coop functions that are the caller's mistake (an unregistered main
/// consumer, a subconsumer still holding a batch) exit with the usage code.
fn not_registered(err: PgqError) -> Failure {
    match &err {
        PgqError::Sql { message, .. }
            if message.contains("is not registered") || message.contains("holds batch") =>
        {
            usage(message.clone())
        }
        _ => failure(err),
    }
}

async fn connect(db: &PgqDb) -> Result<strata_pg::Client, Failure> {
    let text = db.db.as_deref().ok_or_else(|| {
        usage("no database: give --db DSN or set STRATA_PGQ_DB (postgresql://user@host/db)")
    })?;
    let dsn = strata_pg::Dsn::parse(text).map_err(|e| usage(e.to_string()))?;
    let client = dsn
        .connect()
        .await
        .map_err(|e| failure(PgqError::Connect(e)))?;
    if !api::has_pgq(&client).await.map_err(failure)? {
        return Err(failure(PgqError::NoPgq(dsn.describe())));
    }
    Ok(client)
}

async fn begin(client: &strata_pg::Client) -> Result<(), Failure> {
    client
        .batch_execute("begin")
        .await
        .map_err(|e| failure(PgqError::sql("begin", e)))
}

async fn commit(client: &strata_pg::Client) -> Result<(), Failure> {
    client
        .batch_execute("commit")
        .await
        .map_err(|e| failure(PgqError::sql("commit", e)))
}

fn parse_setting(text: &str) -> Result<(&str, &str), Failure> {
    text.split_once('=')
        .filter(|(k, _)| !k.trim().is_empty())
        .map(|(k, v)| (k.trim(), v.trim()))
        .ok_or_else(|| usage(format!("expected KEY=VALUE, got {text:?}")))
}

fn secs(value: Option<f64>) -> String {
    match value {
        None => "-".into(),
        Some(s) if s < 10.0 => format!("{s:.1}s"),
        Some(s) => output::duration((s * 1000.0) as u64),
    }
}

fn opt<T: ToString>(value: &Option<T>) -> String {
    value.as_ref().map_or("-".into(), |v| v.to_string())
}

/// Runs a `pgq` subcommand.
pub(crate) async fn run(ctx: &Context, command: PgqCommand) -> CommandResult {
    match command {
        PgqCommand::Status { db, queue, max_lag } => {
            let client = connect(&db).await?;
            status(ctx, &client, queue.as_deref(), max_lag).await
        }
        PgqCommand::CreateQueue {
            db,
            queue,
            notify,
            settings,
        } => {
            let parsed = settings
                .iter()
                .map(|s| parse_setting(s))
                .collect::<Result<Vec<_>, _>>()?;
            let client = connect(&db).await?;
            // One transaction: a bad setting leaves no half-configured queue behind (the
            // connection closes uncommitted when the command fails).
            begin(&client).await?;
            let created = api::create_queue(&client, &queue).await.map_err(failure)?;
            for (key, value) in parsed {
                api::set_queue_config(&client, &queue, key, value)
                    .await
                    .map_err(failure)?;
            }
            commit(&client).await?;
            if notify {
                strata_pgq::notify::enable(&client, &queue)
                    .await
                    .map_err(failure)?;
            }
            ctx.say(if created {
                format!("created queue {queue}")
            } else {
                format!("queue {queue} exists already")
            });
            Ok(0)
        }
        PgqCommand::DropQueue { db, queue, force } => {
            let client = connect(&db).await?;
            if api::queue_info(&client, Some(&queue))
                .await
                .map_err(failure)?
                .is_empty()
            {
                return Err(usage(format!("no queue named {queue:?}")));
            }
            // One transaction: the queue and strata's rows of its cooperative
            // subconsumers go together (the connection closes uncommitted on failure).
            begin(&client).await?;
            api::drop_queue(&client, &queue, force)
                .await
                .map_err(|e| match e {
                    PgqError::Sql { message, .. } if message.contains("consumers") => usage(
                        format!("queue {queue} still has consumers: unregister them or use --force ({message})"),
                    ),
                    e => failure(e),
                })?;
            commit(&client).await?;
            ctx.say(format!("dropped queue {queue}"));
            Ok(0)
        }
        PgqCommand::Register {
            db,
            queue,
            consumer,
            sub,
        } => {
            let client = connect(&db).await?;
            let (new, who) = match &sub {
                Some(sub) => {
                    strata_pgq::coop::setup(&client).await.map_err(failure)?;
                    let new = strata_pgq::coop::register(&client, &queue, &consumer, sub)
                        .await
                        .map_err(not_registered)?;
                    (new, format!("subconsumer {consumer}.{sub}"))
                }
                None => (
                    api::register_consumer(&client, &queue, &consumer)
                        .await
                        .map_err(failure)?,
                    consumer.clone(),
                ),
            };
            ctx.say(if new {
                format!("registered {who} on {queue}")
            } else {
                format!("{who} was registered on {queue} already")
            });
            Ok(0)
        }
        PgqCommand::Unregister {
            db,
            queue,
            consumer,
            sub,
        } => {
            let client = connect(&db).await?;
            let (gone, who) = match &sub {
                Some(sub) => (
                    strata_pgq::coop::unregister(&client, &queue, &consumer, sub)
                        .await
                        .map_err(not_registered)?,
                    format!("subconsumer {consumer}.{sub}"),
                ),
                None => (
                    api::unregister_consumer(&client, &queue, &consumer)
                        .await
                        .map_err(failure)?,
                    consumer.clone(),
                ),
            };
            if !gone {
                return Err(usage(format!("{who} is not registered on {queue}")));
            }
            ctx.say(format!("unregistered {who} from {queue}"));
            Ok(0)
        }
        PgqCommand::Config {
            db,
            queue,
            settings,
        } => {
            let parsed = settings
                .iter()
                .map(|s| parse_setting(s))
                .collect::<Result<Vec<_>, _>>()?;
            let client = connect(&db).await?;
            let found = api::queue_info(&client, Some(&queue))
                .await
                .map_err(failure)?;
            if found.is_empty() {
                return Err(usage(format!("no queue named {queue:?}")));
            }
            begin(&client).await?;
            for (key, value) in &parsed {
                api::set_queue_config(&client, &queue, key, value)
                    .await
                    .map_err(failure)?;
            }
            commit(&client).await?;
            let info = api::queue_info(&client, Some(&queue))
                .await
                .map_err(failure)?
                .remove(0);
            let notify = strata_pgq::notify::is_enabled(&client, &queue)
                .await
                .map_err(failure)?;
            if ctx.global.json {
                print_json(&serde_json::json!({ "queue": info, "notify": notify }));
            } else if parsed.is_empty() || !ctx.global.quiet {
                print_config(&info, notify);
            }
            Ok(0)
        }
        PgqCommand::Notify { db, queue, state } => {
            let client = connect(&db).await?;
            if state == "on" {
                strata_pgq::notify::enable(&client, &queue).await
            } else {
                strata_pgq::notify::disable(&client, &queue).await
            }
            .map_err(failure)?;
            ctx.say(format!("event notifications {state} for queue {queue}"));
            Ok(0)
        }
        PgqCommand::Ticker {
            file,
            daemon,
            health,
            exit_on_unreachable,
            pidfile,
            logfile,
        } => {
            // A .toml file is strata's configuration (its [pgq] section); anything else
            // is pgqd's ini. Without a file: --config, then ./strata.toml.
            let file = file
                .or_else(|| ctx.global.config.clone())
                .or_else(|| {
                    let own = PathBuf::from("strata.toml");
                    own.exists().then_some(own)
                })
                .ok_or_else(|| {
                    usage("no ticker configuration: strata pgq ticker pgqd.ini, or a strata.toml with a [pgq] section (--config)")
                })?;
            let read: ticker::Reader = if is_toml(&file) {
                read_strata_config
            } else {
                TickerConfig::load
            };
            let exit_on_unreachable = exit_policy(exit_on_unreachable)?;
            let overrides = Overrides {
                health_listen: health,
                exit_on_unreachable,
                pidfile,
                logfile,
            };
            if daemon && !strata_pgq::daemon::is_detached_child() {
                let config = read(&file).map_err(failure)?;
                let pid = strata_pgq::daemon::detach(&config, &overrides).map_err(failure)?;
                ctx.say(format!("ticker running in the background (pid {pid})"));
                return Ok(0);
            }
            match ticker::run(&file, read, &overrides, ctx.global.quiet)
                .await
                .map_err(failure)?
            {
                Exit::Stopped => Ok(0),
                Exit::Unreachable {
                    database,
                    secs,
                    stalled,
                } => Err(Failure::new(
                    code::FAILED,
                    format!(
                        "ticker stopped: database {database} {} for {secs} s (exit_on_unreachable)",
                        if stalled {
                            "stalled (connected, no ticker round)"
                        } else {
                            "unreachable"
                        }
                    ),
                )),
            }
        }
    }
}

fn print_config(info: &QueueInfo, notify: bool) {
    let rows = vec![
        vec!["ticker_max_count".into(), info.ticker_max_count.to_string()],
        vec![
            "ticker_max_lag".into(),
            secs(Some(info.ticker_max_lag_secs)),
        ],
        vec![
            "ticker_idle_period".into(),
            secs(Some(info.ticker_idle_period_secs)),
        ],
        vec!["ticker_paused".into(), info.ticker_paused.to_string()],
        vec!["rotation_period".into(), secs(info.rotation_period_secs)],
        vec!["external_ticker".into(), info.external_ticker.to_string()],
        vec!["notify (strata)".into(), notify.to_string()],
    ];
    println!("queue {}", info.queue_name);
    println!("{}", output::table(&["setting", "value"], rows, &[]));
}

#[derive(serde::Serialize)]
struct Status {
    queues: Vec<QueueInfo>,
    consumers: Vec<ConsumerInfo>,
    problems: Vec<String>,
}

async fn status(
    ctx: &Context,
    client: &strata_pg::Client,
    queue: Option<&str>,
    max_lag: Option<f64>,
) -> CommandResult {
    let queues = api::queue_info(client, queue).await.map_err(failure)?;
    if let Some(q) = queue {
        if queues.is_empty() {
            return Err(usage(format!("no queue named {q:?}")));
        }
    }
    let consumers = api::consumer_info(client, queue).await.map_err(failure)?;
    let mut problems = Vec::new();
    if let Some(limit) = max_lag {
        for q in &queues {
            if q.ticker_lag_secs.is_some_and(|l| l > limit) && !q.ticker_paused {
                problems.push(format!(
                    "queue {}: ticker lag {} (is a ticker running?)",
                    q.queue_name,
                    secs(q.ticker_lag_secs)
                ));
            }
        }
        for c in &consumers {
            if c.lag_secs.is_some_and(|l| l > limit) {
                problems.push(format!(
                    "consumer {} on {}: lag {}, {} pending events",
                    c.consumer_name,
                    c.queue_name,
                    secs(c.lag_secs),
                    opt(&c.pending_events)
                ));
            }
        }
    }
    if ctx.global.json {
        print_json(&Status {
            queues,
            consumers,
            problems: problems.clone(),
        });
    } else if !ctx.global.quiet {
        let rows = queues
            .iter()
            .map(|q| {
                let rotation = match (q.rotation_pending_step2, q.switch_age_secs) {
                    (true, _) => "step 2 pending".to_string(),
                    (false, age) => format!("{} ago", secs(age)),
                };
                vec![
                    q.queue_name.clone(),
                    secs(q.ticker_lag_secs),
                    q.ev_per_sec.map_or("-".into(), |r| format!("{r:.1}")),
                    opt(&q.ev_new),
                    opt(&q.last_tick_id),
                    format!("{}/{}", q.cur_table, q.ntables),
                    rotation,
                    if q.ticker_paused {
                        "paused"
                    } else if q.external_ticker {
                        "external"
                    } else {
                        "ticker"
                    }
                    .into(),
                ]
            })
            .collect();
        println!(
            "{}",
            output::table(
                &[
                    "queue",
                    "ticker lag",
                    "ev/s",
                    "new events",
                    "last tick",
                    "table",
                    "rotated",
                    "ticks by"
                ],
                rows,
                &[1, 2, 3, 4]
            )
        );
        if !consumers.is_empty() {
            let rows = consumers
                .iter()
                .map(|c| {
                    vec![
                        c.queue_name.clone(),
                        c.consumer_name.clone(),
                        secs(c.lag_secs),
                        secs(c.last_seen_secs),
                        opt(&c.pending_events),
                        opt(&c.last_tick),
                        opt(&c.current_batch),
                    ]
                })
                .collect();
            println!(
                "{}",
                output::table(
                    &[
                        "queue",
                        "consumer",
                        "lag",
                        "last seen",
                        "pending",
                        "last tick",
                        "batch"
                    ],
                    rows,
                    &[2, 3, 4, 5, 6]
                )
            );
        }
    }
    for p in &problems {
        eprintln!("strata: {p}");
    }
    Ok(if problems.is_empty() { 0 } else { code::FAILED })
}
