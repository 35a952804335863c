//! Queue administration, one function per `strata pgq` command: each takes the
//! connection string as given (`--db` or `STRATA_PGQ_DB`), connects, checks, does the
//! change in one transaction where it has several steps, and returns what the command
//! reports. The CLI only parses its arguments and prints; a bad name, setting or queue is
//! [`PgqError::BadInput`] (the usage exit code).

use crate::api::{self, ConsumerInfo, QueueInfo};
use crate::error::{PgqError, Result};
use serde::Serialize;
use tokio_postgres::Client;

/// Connects to the database holding the queues and checks that it has pgq. `dsn` is
/// `postgresql://user@host/db` or `host=... dbname=...`; `None` (no `--db`, no
/// `STRATA_PGQ_DB`) is bad input.
pub async fn connect(dsn: Option<&str>) -> Result<Client> {
    let text = dsn.ok_or_else(|| {
        PgqError::BadInput(
            "no database: give --db DSN or set STRATA_PGQ_DB (postgresql://user@host/db)".into(),
        )
    })?;
    let dsn = strata_pgclient::Dsn::parse(text).map_err(|e| PgqError::BadInput(e.to_string()))?;
    let client = dsn.connect().await?;
    if !api::has_pgq(&client).await? {
        return Err(PgqError::NoPgq(dsn.describe()));
    }
    Ok(client)
}

/// Splits `KEY=VALUE` queue settings (both sides trimmed; the key must not be empty).
/// The values are checked by pgq itself when they are set.
pub fn parse_settings(texts: &[String]) -> Result<Vec<(String, String)>> {
    texts
        .iter()
        .map(|text| {
            text.split_once('=')
                .filter(|(k, _)| !k.trim().is_empty())
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| PgqError::BadInput(format!("expected KEY=VALUE, got {text:?}")))
        })
        .collect()
}

/// Creates `queue` with `settings` (`KEY=VALUE`) in one transaction, so a bad setting
/// leaves no half-configured queue behind; then, with `notify`, installs strata's event
/// notification trigger. `false` when the queue existed already (its settings are still
/// applied).
pub async fn create_queue(
    dsn: Option<&str>,
    queue: &str,
    settings: &[String],
    notify: bool,
) -> Result<bool> {
    let settings = parse_settings(settings)?;
    let client = connect(dsn).await?;
    // The connection closes uncommitted when a step fails.
    begin(&client).await?;
    let created = api::create_queue(&client, queue).await?;
    for (key, value) in &settings {
        api::set_queue_config(&client, queue, key, value).await?;
    }
    commit(&client).await?;
    if notify {
        crate::notify::enable(&client, queue).await?;
    }
    Ok(created)
}

/// Drops `queue`, and strata's rows of its cooperative subconsumers with it, in one
/// transaction. Without `force`, a queue with consumers is refused (bad input, naming
/// what to do); an unknown queue is bad input.
pub async fn drop_queue(dsn: Option<&str>, queue: &str, force: bool) -> Result<()> {
    let client = connect(dsn).await?;
    require_queue(&client, queue).await?;
    begin(&client).await?;
    api::drop_queue(&client, queue, force)
        .await
        .map_err(|e| match e {
            PgqError::Sql { message, .. } if message.contains("consumers") => {
                PgqError::BadInput(format!(
                    "queue {queue} still has consumers: unregister them or use --force ({message})"
                ))
            }
            e => e,
        })?;
    commit(&client).await
}

/// Who a consumer command is about: `consumer`, or subconsumer `consumer.sub`.
pub fn consumer_label(consumer: &str, sub: Option<&str>) -> String {
    match sub {
        Some(sub) => format!("subconsumer {consumer}.{sub}"),
        None => consumer.to_string(),
    }
}

/// Registers `consumer` on `queue` (at the newest tick), or with `sub` a cooperative
/// subconsumer of it (installing strata's coop functions first). `false` when it was
/// registered already.
pub async fn register(
    dsn: Option<&str>,
    queue: &str,
    consumer: &str,
    sub: Option<&str>,
) -> Result<bool> {
    let client = connect(dsn).await?;
    match sub {
        Some(sub) => {
            crate::coop::setup(&client).await?;
            crate::coop::register(&client, queue, consumer, sub)
                .await
                .map_err(caller_mistake)
        }
        None => api::register_consumer(&client, queue, consumer).await,
    }
}

/// Unregisters `consumer` from `queue` (its position and retry events are dropped), or
/// with `sub` a subconsumer (refused while it holds a batch). One that is not
/// registered is bad input.
pub async fn unregister(
    dsn: Option<&str>,
    queue: &str,
    consumer: &str,
    sub: Option<&str>,
) -> Result<()> {
    let client = connect(dsn).await?;
    let gone = match sub {
        Some(sub) => crate::coop::unregister(&client, queue, consumer, sub)
            .await
            .map_err(caller_mistake)?,
        None => api::unregister_consumer(&client, queue, consumer).await?,
    };
    if !gone {
        return Err(PgqError::BadInput(format!(
            "{} is not registered on {queue}",
            consumer_label(consumer, sub)
        )));
    }
    Ok(())
}

/// A queue's settings as `strata pgq config` shows them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueSettings {
    /// Whether strata's event notification trigger is on.
    pub notify: bool,
    /// The queue as pgq reports it (its settings included).
    pub queue: QueueInfo,
}

/// Applies `settings` (`KEY=VALUE`, none to only read) to `queue` in one transaction and
/// returns its settings after. An unknown queue is bad input.
pub async fn configure(
    dsn: Option<&str>,
    queue: &str,
    settings: &[String],
) -> Result<QueueSettings> {
    let settings = parse_settings(settings)?;
    let client = connect(dsn).await?;
    require_queue(&client, queue).await?;
    begin(&client).await?;
    for (key, value) in &settings {
        api::set_queue_config(&client, queue, key, value).await?;
    }
    commit(&client).await?;
    let queue_info = require_queue(&client, queue).await?;
    let notify = crate::notify::is_enabled(&client, queue).await?;
    Ok(QueueSettings {
        notify,
        queue: queue_info,
    })
}

/// Turns strata's event notification trigger on or off for `queue`.
pub async fn set_notify(dsn: Option<&str>, queue: &str, on: bool) -> Result<()> {
    let client = connect(dsn).await?;
    if on {
        crate::notify::enable(&client, queue).await
    } else {
        crate::notify::disable(&client, queue).await
    }
}

/// Queues and consumers, and what lags past the limit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// Every queue (or the one asked for).
    pub queues: Vec<QueueInfo>,
    /// Their consumers.
    pub consumers: Vec<ConsumerInfo>,
    /// One line per queue whose ticker, or consumer, lags past the limit.
    pub problems: Vec<String>,
}

/// Every queue (or just `queue`, which must exist) with its consumers; with `max_lag`
/// (seconds), a problem for each unpaused queue whose ticker lags more and each consumer
/// that lags more.
pub async fn status(
    dsn: Option<&str>,
    queue: Option<&str>,
    max_lag: Option<f64>,
) -> Result<Status> {
    let client = connect(dsn).await?;
    let queues = api::queue_info(&client, queue).await?;
    if let (Some(q), true) = (queue, queues.is_empty()) {
        return Err(PgqError::BadInput(format!("no queue named {q:?}")));
    }
    let consumers = api::consumer_info(&client, queue).await?;
    let problems = max_lag.map_or_else(Vec::new, |limit| lag_problems(&queues, &consumers, limit));
    Ok(Status {
        queues,
        consumers,
        problems,
    })
}

/// The lines `status --max-lag` reports: a paused queue's ticker lag is expected.
pub fn lag_problems(queues: &[QueueInfo], consumers: &[ConsumerInfo], limit: f64) -> Vec<String> {
    let tickers = queues
        .iter()
        .filter(|q| q.ticker_lag_secs.is_some_and(|l| l > limit) && !q.ticker_paused)
        .map(|q| {
            format!(
                "queue {}: ticker lag {} (is a ticker running?)",
                q.queue_name,
                format_secs(q.ticker_lag_secs)
            )
        });
    let lagging = consumers
        .iter()
        .filter(|c| c.lag_secs.is_some_and(|l| l > limit))
        .map(|c| {
            format!(
                "consumer {} on {}: lag {}, {} pending events",
                c.consumer_name,
                c.queue_name,
                format_secs(c.lag_secs),
                c.pending_events.map_or("-".into(), |n| n.to_string())
            )
        });
    tickers.chain(lagging).collect()
}

/// Seconds as `status` shows them: `-` for none, `2.5s` under ten seconds, then like the
/// CLI's durations (`12.0s`, `3m05s`).
pub fn format_secs(value: Option<f64>) -> String {
    let Some(s) = value else {
        return "-".into();
    };
    if s < 10.0 {
        return format!("{s:.1}s");
    }
    let ms = (s * 1000.0) as u64;
    match ms {
        0..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
    }
}

/// The queue's info; an unknown queue is bad input.
async fn require_queue(client: &Client, queue: &str) -> Result<QueueInfo> {
    api::queue_info(client, Some(queue))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| PgqError::BadInput(format!("no queue named {queue:?}")))
}

/// Errors of the coop functions that are the caller's mistake (an unregistered main
/// consumer, a subconsumer still holding a batch) are bad input, in pgq's words.
fn caller_mistake(err: PgqError) -> PgqError {
    match err {
        PgqError::Sql { message, .. }
            if message.contains("is not registered") || message.contains("holds batch") =>
        {
            PgqError::BadInput(message)
        }
        e => e,
    }
}

async fn begin(client: &Client) -> Result<()> {
    client
        .batch_execute("begin")
        .await
        .map_err(|e| PgqError::sql("begin", e))
}

async fn commit(client: &Client) -> Result<()> {
    client
        .batch_execute("commit")
        .await
        .map_err(|e| PgqError::sql("commit", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn settings_are_key_value_pairs_or_bad_input() {
        assert_eq!(
            parse_settings(&texts(&[" ticker_max_lag = 5 ", "x=a=b", "k="])).unwrap(),
            vec![
                ("ticker_max_lag".into(), "5".into()),
                ("x".into(), "a=b".into()),
                ("k".into(), "".into())
            ]
        );
        for bad in ["novalue", "=5", " =5", ""] {
            let err = parse_settings(&texts(&[bad])).unwrap_err();
            assert!(err.is_bad_input(), "{bad:?}");
            assert_eq!(err.to_string(), format!("expected KEY=VALUE, got {bad:?}"));
        }
    }

    #[test]
    fn seconds_read_like_the_cli_durations() {
        assert_eq!(format_secs(None), "-");
        assert_eq!(format_secs(Some(0.04)), "0.0s");
        assert_eq!(format_secs(Some(9.94)), "9.9s");
        assert_eq!(format_secs(Some(12.345)), "12.3s");
        assert_eq!(format_secs(Some(185.0)), "3m05s");
    }

    fn queue(name: &str, lag: Option<f64>, paused: bool) -> QueueInfo {
        QueueInfo {
            queue_name: name.into(),
            ntables: 3,
            cur_table: 0,
            rotation_period_secs: None,
            switch_age_secs: None,
            rotation_pending_step2: false,
            external_ticker: false,
            ticker_paused: paused,
            ticker_max_count: 500,
            ticker_max_lag_secs: 3.0,
            ticker_idle_period_secs: 60.0,
            ticker_lag_secs: lag,
            ev_per_sec: None,
            ev_new: None,
            last_tick_id: None,
        }
    }

    #[test]
    fn only_unpaused_tickers_and_consumers_past_the_limit_are_problems() {
        let queues = [
            queue("fresh", Some(1.0), false),
            queue("stale", Some(30.0), false),
            queue("paused", Some(300.0), true),
            queue("never", None, false),
        ];
        let consumer = |name: &str, lag: Option<f64>| ConsumerInfo {
            queue_name: "fresh".into(),
            consumer_name: name.into(),
            lag_secs: lag,
            last_seen_secs: None,
            last_tick: None,
            current_batch: None,
            next_tick: None,
            pending_events: Some(7),
        };
        let consumers = [consumer("quick", Some(2.0)), consumer("slow", Some(75.0))];
        assert_eq!(
            lag_problems(&queues, &consumers, 5.0),
            vec![
                "queue stale: ticker lag 30.0s (is a ticker running?)".to_string(),
                "consumer slow on fresh: lag 1m15s, 7 pending events".to_string(),
            ]
        );
        assert!(lag_problems(&queues, &consumers, 1000.0).is_empty());
    }
}
