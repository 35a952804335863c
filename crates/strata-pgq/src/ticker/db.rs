//! One database's ticker: a connection (reopened when lost or too old) that ticks every
//! `ticker_period`, `LISTEN`s for event notifications and refreshes queue figures; the
//! upkeep pgqd also runs (retry events, maintenance) goes on a connection of its own
//! ([`super::maint`]), so it can neither hold back ticks nor take the database down.
//! Both sessions carry TCP keepalives and a statement timeout, and the ticker gives up
//! on a round the server does not answer, so a hung server is noticed.

use super::answer::{answered, ANSWER_GRACE};
use super::config::TickerConfig;
use super::health::Health;
use super::jobs::Jobs;
use super::log::Log;
use crate::conn;
use crate::PgqError;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_postgres::Client;

/// TCP keepalives of the ticker's sessions start after this much silence: a server
/// that vanished from the network is noticed in about 20 s instead of two hours.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);

/// Channel the event trigger notifies (payload: queue name); see [`crate::notify`].
pub const EVENT_CHANNEL: &str = "strata_pgq_event";
pub use crate::conn::TICK_CHANNEL;

/// How a session ended without an error.
enum Ended {
    /// Told to stop.
    Stop,
    /// `connection_lifetime` reached: reconnect at once.
    Recycle,
}

/// Runs the ticker for `db` until `stop` turns true. Never returns an error: problems
/// are logged, counted in `health`, and retried. A `discovered` database that loses its
/// pgq schema is let go (the next discovery round may pick it up again); a listed one
/// stays, reported down.
pub async fn run(
    db: String,
    discovered: bool,
    config: TickerConfig,
    log: Log,
    health: Health,
    mut stop: watch::Receiver<bool>,
) {
    health.watch(&db);
    let pg_config = match conn::config_for(&config.base_connstr, &db) {
        Ok(c) => c.with_session_guards(KEEPALIVE_IDLE, config.statement_timeout),
        Err(e) => {
            health.down(&db, e.full_message());
            log.warn(format!("{db}: {}", e.full_message()));
            return;
        }
    };
    // Upkeep on its own connection, ended with this task however it ends.
    let _upkeep = super::AbortOnDrop(tokio::spawn(super::maint::run(
        db.clone(),
        pg_config.clone(),
        config.clone(),
        log.clone(),
        health.clone(),
        stop.clone(),
    )));
    // How long to wait before reconnecting after a failure.
    let backoff = config
        .ticker_period
        .max(Duration::from_secs(1))
        .min(Duration::from_secs(5));
    let mut was_down = false;
    loop {
        if *stop.borrow() || stop.has_changed().is_err() {
            return;
        }
        let outcome = session(&db, &pg_config, &config, &log, &health, &mut stop, was_down).await;
        match outcome {
            Ok(Ended::Stop) => return,
            Ok(Ended::Recycle) => {
                was_down = false;
                continue;
            }
            Err(PgqError::NoPgq(_)) if discovered => {
                log.info(format!("{db}: no pgq schema any more, not ticking it"));
                health.forget(&db);
                return;
            }
            Err(e) => {
                let text = e.full_message();
                if !was_down
                    || health.snapshot().get(&db).and_then(|s| s.error.clone())
                        != Some(text.clone())
                {
                    log.warn(format!("{db}: {text}"));
                }
                health.down(&db, text);
                was_down = true;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => {}
        }
    }
}

/// One connection's lifetime: `Ok` when told to stop, `Err` when the database failed
/// (the caller reconnects). A connection older than `connection_lifetime` is reopened.
/// Ticks (rounds and wake-ups) failing end the session; the queue figures failing are
/// only logged and counted.
async fn session(
    db: &str,
    pg_config: &strata_pgclient::Dsn,
    config: &TickerConfig,
    log: &Log,
    health: &Health,
    stop: &mut watch::Receiver<bool>,
    was_down: bool,
) -> Result<Ended, PgqError> {
    let limit = config.statement_timeout.map(|t| t + ANSWER_GRACE);
    let (client, mut notes) = conn::connect_listening(pg_config).await?;
    if !answered(limit, "looking for pgq", crate::api::has_pgq(&client)).await? {
        return Err(PgqError::NoPgq(db.to_string()));
    }
    if config.listen_notify {
        answered(limit, "LISTEN", async {
            client
                .batch_execute(&format!(
                    "listen {}",
                    strata_pgclient::quote_ident(EVENT_CHANNEL)
                ))
                .await
                .map_err(|e| PgqError::sql("LISTEN", e))
        })
        .await?;
    }
    log.info(format!(
        "{db}: {}connected{}",
        if was_down { "re" } else { "" },
        if config.listen_notify {
            ", listening for event notifications"
        } else {
            ""
        }
    ));
    health.up(db);
    let opened = Instant::now();
    let mut tick_timer = tokio::time::interval(config.ticker_period);
    let mut stats_timer = tokio::time::interval(config.stats_period.min(Duration::from_secs(10)));
    for t in [&mut tick_timer, &mut stats_timer] {
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    let mut wakeups = Wakeups::new(config.wakeup_min_interval);
    let mut jobs = Jobs::default();
    loop {
        let next_wakeup = wakeups.next_due();
        tokio::select! {
            // A dropped sender stops too: a closed channel would wake this at once.
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return Ok(Ended::Stop);
                }
            }
            note = notes.recv() => {
                let Some(note) = note else {
                    return Err(PgqError::Lost(db.to_string()));
                };
                // Take every notification already queued: one tick per queue at most.
                wakeups.pending.insert(note.payload().to_string());
                while let Ok(more) = notes.try_recv() {
                    wakeups.pending.insert(more.payload().to_string());
                }
                answered(limit, "wake-up ticks", wakeups.run_due(db, &client, log, health)).await?;
            }
            _ = tokio::time::sleep_until(next_wakeup.unwrap_or_else(Instant::now).into()), if next_wakeup.is_some() => {
                answered(limit, "wake-up ticks", wakeups.run_due(db, &client, log, health)).await?;
            }
            _ = tick_timer.tick() => {
                let ticked = answered(limit, "ticker round", tick_all(&client)).await?;
                let now = Instant::now();
                for queue in &ticked {
                    wakeups.last_tick.insert(queue.clone(), now);
                }
                health.update(db, |s| s.ticks += ticked.len() as u64);
                health.round_done(db);
                if opened.elapsed() > config.connection_lifetime {
                    log.info(format!("{db}: connection_lifetime reached, reconnecting"));
                    return Ok(Ended::Recycle);
                }
            }
            _ = stats_timer.tick(), if jobs.ready("queue figures") => {
                let figures = answered(limit, "queue figures", async {
                    Ok((
                        crate::api::queue_info(&client, None).await?,
                        crate::api::consumer_info(&client, None).await?,
                    ))
                })
                .await;
                match figures {
                    Ok((queues, consumers)) => {
                        jobs.succeeded(db, "queue figures", log);
                        health.update(db, |s| {
                            s.queues = queues;
                            s.consumers = consumers;
                        });
                    }
                    Err(e @ PgqError::Timeout { .. }) => return Err(e),
                    Err(_) if client.is_closed() => return Err(PgqError::Lost(db.to_string())),
                    Err(e) => jobs.failed(db, "queue figures", "stats", &e.full_message(), log, health),
                }
            }
        }
    }
}

/// Ticks every queue that pgq ticks itself (not external, not paused), as
/// `pgq.ticker()` does, and notifies consumers of the queues that got a tick; returns
/// those queues.
async fn tick_all(client: &Client) -> Result<Vec<String>, PgqError> {
    let rows = client
        .query(
            "select queue_name from (select queue_name, pgq.ticker(queue_name) as tick_id from pgq.queue \
             where not queue_external_ticker and not queue_ticker_paused order by queue_name) t where tick_id is not null",
            &[],
        )
        .await
        .map_err(|e| PgqError::sql("pgq.ticker", e))?;
    let mut ticked = Vec::with_capacity(rows.len());
    for row in &rows {
        let queue: String = row.get(0);
        notify_tick(client, &queue).await?;
        ticked.push(queue);
    }
    Ok(ticked)
}

/// Wake-up ticks: queues whose event notification arrived, ticked as soon as
/// `min_interval` has passed since this ticker's previous tick of the queue.
///
/// `pgq.ticker(queue)` alone would not do: it leaves a queue with new events untouched
/// while its newest tick is younger than `ticker_max_lag` (3 s by default) and fewer than
/// `ticker_max_count` events wait, so an event right after an idle tick would wait up to
/// 3 s. A wake-up tick is the insert `pgq.ticker(queue)` ends with, made when the queue has
/// events its newest tick does not cover, without that waiting rule. `pgq.force_tick` is
/// not used while the insert is allowed: it pushes the queue's event sequence by
/// `2 * ticker_max_count + 1000` per call, which inflates pgq's event counts
/// (`ev_new`, `ev_per_sec`, consumers' `pending_events`) and satisfies every consumer's
/// `next_batch_custom` `min_count` at once.
struct Wakeups {
    min_interval: Duration,
    /// Notified queues waiting for their wake-up tick.
    pending: BTreeSet<String>,
    /// When this session last wrote a tick of each queue (by any rule).
    last_tick: HashMap<String, Instant>,
    /// INSERT into `pgq.tick` was refused (the ticker's role is not the owner of pgq):
    /// wake-ups go through `pgq.force_tick` instead.
    force: bool,
}

impl Wakeups {
    fn new(min_interval: Duration) -> Wakeups {
        Wakeups {
            min_interval,
            pending: BTreeSet::new(),
            last_tick: HashMap::new(),
            force: false,
        }
    }

    /// When a pending queue may be ticked.
    fn due(&self, queue: &str) -> Option<Instant> {
        self.last_tick.get(queue).map(|t| *t + self.min_interval)
    }

    /// The earliest moment a pending queue may be ticked, if any queue is pending.
    fn next_due(&self) -> Option<Instant> {
        let now = Instant::now();
        self.pending
            .iter()
            .map(|q| self.due(q).map_or(now, |d| d.max(now)))
            .min()
    }

    /// Ticks every pending queue that is due; the others stay pending.
    async fn run_due(
        &mut self,
        db: &str,
        client: &Client,
        log: &Log,
        health: &Health,
    ) -> Result<(), PgqError> {
        let now = Instant::now();
        let due: Vec<String> = self
            .pending
            .iter()
            .filter(|q| self.due(q).is_none_or(|d| d <= now))
            .cloned()
            .collect();
        for queue in due {
            self.pending.remove(&queue);
            if wake_tick(db, client, &queue, &mut self.force, log).await? {
                self.last_tick.insert(queue.clone(), Instant::now());
                health.update(db, |s| {
                    s.ticks += 1;
                    s.wakeup_ticks += 1;
                });
                notify_tick(client, &queue).await?;
            }
        }
        Ok(())
    }
}

/// Writes a wake-up tick of `queue` if it has events that its newest tick does not
/// cover (committed after that tick's snapshot was taken, or still running then), the
/// condition `pgq.batch_event_sql` selects a batch's events by. Unlike pgq's count from
/// its event sequence, this also sees a fresh queue's first event (the sequence reads 1
/// before and after the first `nextval`). `false`: nothing to tick, or the queue is gone,
/// paused or ticked from outside.
async fn wake_tick(
    db: &str,
    client: &Client,
    queue: &str,
    force: &mut bool,
    log: &Log,
) -> Result<bool, PgqError> {
    let Some(row) = client
        .query_opt(
            "select queue_data_pfx from pgq.queue where queue_name = $1 and not queue_external_ticker and not queue_ticker_paused",
            &[&queue],
        )
        .await
        .map_err(|e| PgqError::sql("reading pgq.queue", e))?
    else {
        return Ok(false);
    };
    let events = super::maint::quote_function(&row.get::<_, String>(0));
    let due = format!(
        "from pgq.queue q where q.queue_name = $1 and not q.queue_external_ticker and not q.queue_ticker_paused \
         and exists (select 1 from pgq.tick t, {events} e \
             where t.tick_queue = q.queue_id \
               and t.tick_id = (select max(l.tick_id) from pgq.tick l where l.tick_queue = q.queue_id) \
               and e.ev_txid >= txid_snapshot_xmin(t.tick_snapshot) \
               and not txid_visible_in_snapshot(e.ev_txid, t.tick_snapshot))"
    );
    if !*force {
        // What pgq.ticker(queue) inserts once its rules allow a tick.
        let insert = format!(
            "insert into pgq.tick (tick_queue, tick_id, tick_event_seq) \
             select q.queue_id, nextval(q.queue_tick_seq), pgq.seq_getval(q.queue_event_seq) {due} \
             returning tick_id"
        );
        match client.query_opt(&insert, &[&queue]).await {
            Ok(row) => return Ok(row.is_some()),
            Err(e)
                if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) =>
            {
                log.warn(format!(
                    "{db}: no INSERT on pgq.tick ({}): wake-up ticks use pgq.force_tick, which inflates pgq's event counts (see docs/pgq.md)",
                    e.as_db_error().map_or(e.to_string(), |d| d.message().to_string())
                ));
                *force = true;
            }
            Err(e) => return Err(PgqError::sql(format!("wake-up tick of {queue}"), e)),
        }
    }
    let forced = client
        .query_opt(
            &format!("select pgq.force_tick(q.queue_name) {due}"),
            &[&queue],
        )
        .await
        .map_err(|e| PgqError::sql(format!("pgq.force_tick({queue})"), e))?;
    if forced.is_none() {
        return Ok(false);
    }
    let ticked = client
        .query_opt(
            "select pgq.ticker(queue_name) from pgq.queue where queue_name = $1 and not queue_external_ticker and not queue_ticker_paused",
            &[&queue],
        )
        .await
        .map_err(|e| PgqError::sql(format!("pgq.ticker({queue})"), e))?;
    Ok(ticked.is_some_and(|r| r.get::<_, Option<i64>>(0).is_some()))
}

async fn notify_tick(client: &Client, queue: &str) -> Result<(), PgqError> {
    client
        .execute("select pg_notify($1, $2)", &[&TICK_CHANNEL, &queue])
        .await
        .map_err(|e| PgqError::sql("pg_notify", e))?;
    Ok(())
}
