//! `strata pgq ...`: the PgQ ticker daemon and queue administration. Thin: parse the
//! options, call one function of strata-pgq (`admin` for the queue commands, `ticker`
//! for the daemon), print its result.

use crate::context::{CommandResult, Context};
use crate::failure::{code, Failure};
use crate::output::print_json;
use crate::output::{opt, print_pairs, print_rows, show};
use strata_pgq::admin::{self, consumer_label, format_secs as secs, QueueSettings, Status};
use strata_pgq::ticker::{self, Exit, Outcome};
use strata_pgq::{PgqCommand, PgqError};

/// The exit code of a PgQ error: bad input (and a value the server could not take,
/// SQLSTATE class 22, such as `ticker_max_lag=soon`) is a usage error; a background
/// child that failed at start exits with its own code (2 for a bad config or a live
/// pidfile, 1 for the rest).
pub(crate) fn failure(err: PgqError) -> Failure {
    let code = match &err {
        PgqError::ChildFailed { code: Some(c), .. } => u8::try_from(*c)
            .ok()
            .filter(|c| *c != 0)
            .unwrap_or(code::FAILED),
        _ => err.code().exit_code(),
    };
    Failure::new(code, crate::failure::chain(&err))
}

/// Exit 1 when something `failed` (a problem found, not an error).
pub(crate) fn exit_code(failed: bool) -> u8 {
    if failed {
        code::FAILED
    } else {
        0
    }
}

/// Runs a `pgq` subcommand.
pub(crate) async fn run(ctx: &Context, command: PgqCommand) -> CommandResult {
    let PgqCommand::Ticker { args } = command else {
        return queue_command(ctx, command).await.map_err(failure);
    };
    let given = (args.file.clone()).or_else(|| ctx.global.config.clone());
    let (file, read) = strata_api::config::pgq_ticker_file(given).ok_or_else(|| {
        Failure::new(code::USAGE, "no ticker configuration: strata pgq ticker pgqd.ini, or a strata.toml with a [pgq] section (--config)")
    })?;
    let overrides = args.overrides().map_err(failure)?;
    let quiet = ctx.global.quiet;
    match ticker::run_or_detach(&file, read, &overrides, args.daemon, quiet).await {
        Ok(Outcome::Detached(pid)) => {
            ctx.say(format!("ticker running in the background (pid {pid})"));
            Ok(0)
        }
        Ok(Outcome::Ran(Exit::Stopped)) => Ok(0),
        Ok(Outcome::Ran(exit)) => Err(Failure::new(code::FAILED, exit.to_string())),
        Err(e) => Err(failure(e)),
    }
}

/// The queue administration subcommands; returns the exit code.
async fn queue_command(ctx: &Context, command: PgqCommand) -> Result<u8, PgqError> {
    match command {
        PgqCommand::Status { db, queue, max_lag } => {
            let status = admin::status(db.db.as_deref(), queue.as_deref(), max_lag).await?;
            show(&ctx.global, &status, || print_status(&status));
            for p in &status.problems {
                eprintln!("strata: {p}");
            }
            return Ok(exit_code(!status.problems.is_empty()));
        }
        PgqCommand::CreateQueue {
            db,
            queue,
            notify,
            settings,
        } => {
            let db = db.db.as_deref();
            ctx.say(
                if admin::create_queue(db, &queue, &settings, notify).await? {
                    format!("created queue {queue}")
                } else {
                    format!("queue {queue} exists already")
                },
            );
        }
        PgqCommand::DropQueue { db, queue, force } => {
            admin::drop_queue(db.db.as_deref(), &queue, force).await?;
            ctx.say(format!("dropped queue {queue}"));
        }
        PgqCommand::Register {
            db,
            queue,
            consumer,
            sub,
        } => {
            let sub = sub.as_deref();
            let who = consumer_label(&consumer, sub);
            ctx.say(
                if admin::register(db.db.as_deref(), &queue, &consumer, sub).await? {
                    format!("registered {who} on {queue}")
                } else {
                    format!("{who} was registered on {queue} already")
                },
            );
        }
        PgqCommand::Unregister {
            db,
            queue,
            consumer,
            sub,
        } => {
            let sub = sub.as_deref();
            admin::unregister(db.db.as_deref(), &queue, &consumer, sub).await?;
            let who = consumer_label(&consumer, sub);
            ctx.say(format!("unregistered {who} from {queue}"));
        }
        PgqCommand::Config {
            db,
            queue,
            settings,
        } => {
            let shown = admin::configure(db.db.as_deref(), &queue, &settings).await?;
            if ctx.global.json {
                print_json(&shown);
            } else if settings.is_empty() || !ctx.global.quiet {
                print_config(&shown);
            }
        }
        PgqCommand::Notify { db, queue, state } => {
            admin::set_notify(db.db.as_deref(), &queue, state == "on").await?;
            ctx.say(format!("event notifications {state} for queue {queue}"));
        }
        PgqCommand::Ticker { .. } => {
            return Err(PgqError::BadInput(
                "the ticker is not a queue command".into(),
            ))
        }
    }
    Ok(0)
}

fn print_config(shown: &QueueSettings) {
    let info = &shown.queue;
    println!("queue {}", info.queue_name);
    print_pairs(
        ["setting", "value"],
        vec![
            ("ticker_max_count", info.ticker_max_count.to_string()),
            ("ticker_max_lag", secs(Some(info.ticker_max_lag_secs))),
            (
                "ticker_idle_period",
                secs(Some(info.ticker_idle_period_secs)),
            ),
            ("ticker_paused", info.ticker_paused.to_string()),
            ("rotation_period", secs(info.rotation_period_secs)),
            ("external_ticker", info.external_ticker.to_string()),
            ("notify (strata)", shown.notify.to_string()),
        ],
    );
}

fn print_status(status: &Status) {
    let header = [
        "queue",
        "ticker lag",
        "ev/s",
        "new events",
        "last tick",
        "table",
        "rotated",
        "ticks by",
    ];
    print_rows(&header, &status.queues, &[1, 2, 3, 4], |q| {
        let rotation = match (q.rotation_pending_step2, q.switch_age_secs) {
            (true, _) => "step 2 pending".to_string(),
            (false, age) => format!("{} ago", secs(age)),
        };
        let ticks_by = match (q.ticker_paused, q.external_ticker) {
            (true, _) => "paused",
            (false, true) => "external",
            (false, false) => "ticker",
        };
        vec![
            q.queue_name.clone(),
            secs(q.ticker_lag_secs),
            q.ev_per_sec.map_or("-".into(), |r| format!("{r:.1}")),
            opt(&q.ev_new),
            opt(&q.last_tick_id),
            format!("{}/{}", q.cur_table, q.ntables),
            rotation,
            ticks_by.into(),
        ]
    });
    if status.consumers.is_empty() {
        return;
    }
    let header = [
        "queue",
        "consumer",
        "lag",
        "last seen",
        "pending",
        "last tick",
        "batch",
    ];
    print_rows(&header, &status.consumers, &[2, 3, 4, 5, 6], |c| {
        vec![
            c.queue_name.clone(),
            c.consumer_name.clone(),
            secs(c.lag_secs),
            secs(c.last_seen_secs),
            opt(&c.pending_events),
            opt(&c.last_tick),
            opt(&c.current_batch),
        ]
    });
}
