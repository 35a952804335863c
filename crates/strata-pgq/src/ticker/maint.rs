//! One database's upkeep, on a connection of its own so that a long VACUUM or a hanging
//! maintenance function never holds back ticks: retry events every `retry_period`, the
//! maintenance operations every `maint_period`, and with `notify_all_queues` the wake-up
//! trigger on queues that lack it. A failing job is logged, counted and paused
//! ([`super::jobs`]); it never marks the database down. Jobs wait while the ticking
//! session is down (nothing to maintain where pgq cannot be reached). Every statement is
//! waited for at most `statement_timeout` plus a grace, like the ticking session's: a
//! server that stops answering fails the job (a timeout, counted and paused like any
//! failure) and the upkeep connection is dropped and opened again for the next job.

use super::answer::{answered, ANSWER_GRACE};
use super::config::TickerConfig;
use super::health::Health;
use super::jobs::Jobs;
use super::log::Log;
use crate::PgqError;
use std::time::Duration;
use strata_pgclient::Dsn;
use tokio::sync::watch;
use tokio::time::{Interval, MissedTickBehavior};
use tokio_postgres::Client;

/// How often queues are checked for a missing wake-up trigger (`notify_all_queues`).
pub const NOTIFY_CHECK_PERIOD: Duration = Duration::from_secs(10);

/// How long the trigger installation waits for a queue's event tables: a producer's
/// long transaction must not make every other producer queue up behind the DDL's lock.
const NOTIFY_LOCK_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs the upkeep of `db` until `stop` turns true (or the task is aborted).
pub async fn run(
    db: String,
    dsn: Dsn,
    config: TickerConfig,
    log: Log,
    health: Health,
    mut stop: watch::Receiver<bool>,
) {
    let mut upkeep = Upkeep {
        db,
        dsn,
        log,
        health,
        client: None,
        jobs: Jobs::default(),
        limit: config.statement_timeout.map(|t| t + ANSWER_GRACE),
        hung: false,
    };
    let timer = |period: Duration| {
        let mut t = tokio::time::interval(period);
        t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        t
    };
    let mut retry_timer = timer(config.retry_period);
    let mut maint_timer = timer(config.maint_period);
    let mut notify_timer = timer(NOTIFY_CHECK_PERIOD);
    loop {
        tokio::select! {
            // A dropped sender stops too: a closed channel would wake this at once.
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
            _ = retry_timer.tick() => {
                if let Some(client) = upkeep.connection(&mut retry_timer).await {
                    let result = retry_events(&client, upkeep.limit).await;
                    upkeep.retry_done(result);
                    upkeep.keep(client);
                }
            }
            _ = maint_timer.tick() => {
                if let Some(client) = upkeep.connection(&mut maint_timer).await {
                    upkeep.maintenance(&client).await;
                    upkeep.keep(client);
                }
            }
            _ = notify_timer.tick(), if config.notify_all_queues => {
                if let Some(client) = upkeep.connection(&mut notify_timer).await {
                    upkeep.install_notify(&client).await;
                    upkeep.keep(client);
                }
            }
        }
    }
}

struct Upkeep {
    db: String,
    dsn: Dsn,
    log: Log,
    health: Health,
    client: Option<Client>,
    jobs: Jobs,
    /// How long a statement's answer is waited for.
    limit: Option<Duration>,
    /// A statement went unanswered: the connection is dropped, not kept.
    hung: bool,
}

impl Upkeep {
    /// The upkeep connection (taken out for the job: hand it back with [`Upkeep::keep`]),
    /// opened when missing; `None` while the ticking session is down (the job is tried
    /// again in a second) or when it cannot be opened (logged and counted as job
    /// `connect`, paused like any job).
    async fn connection(&mut self, timer: &mut Interval) -> Option<Client> {
        if !self.health.is_up(&self.db) {
            timer.reset_after(Duration::from_secs(1));
            return None;
        }
        if let Some(client) = self.client.take().filter(|c| !c.is_closed()) {
            return Some(client);
        }
        let key = "connect (maintenance connection)";
        if !self.jobs.ready(key) {
            return None;
        }
        match self.dsn.connect().await.map_err(PgqError::Connect) {
            Ok(client) => {
                self.jobs.succeeded(&self.db, key, &self.log);
                Some(client)
            }
            Err(e) => {
                let text = e.full_message();
                self.jobs
                    .failed(&self.db, key, "connect", &text, &self.log, &self.health);
                None
            }
        }
    }

    /// Keeps the connection for the next job, unless it broke or left a statement
    /// unanswered.
    fn keep(&mut self, client: Client) {
        if std::mem::take(&mut self.hung) {
            self.log.warn(format!(
                "{}: the maintenance connection stopped answering: reconnecting",
                self.db
            ));
            return;
        }
        if !client.is_closed() {
            self.client = Some(client);
        }
    }

    /// Records the outcome of a job.
    fn outcome(&mut self, key: &str, label: &str, result: Result<(), PgqError>) {
        if matches!(result, Err(PgqError::Timeout { .. })) {
            self.hung = true;
        }
        match result {
            Ok(()) => self.jobs.succeeded(&self.db, key, &self.log),
            Err(e) => self.jobs.failed(
                &self.db,
                key,
                label,
                &e.full_message(),
                &self.log,
                &self.health,
            ),
        }
    }

    fn retry_done(&mut self, result: Result<u64, PgqError>) {
        let result = result.map(|moved| {
            if moved > 0 {
                self.log.info(format!(
                    "{}: moved {moved} events back from the retry queue",
                    self.db
                ));
                self.health.update(&self.db, |s| s.retried_events += moved);
            }
        });
        self.outcome("pgq.maint_retry_events", "pgq.maint_retry_events", result);
    }

    /// Runs what `pgq.maint_operations()` lists, each call in its own transaction
    /// (autocommit), so rotation step 1 and step 2 never share one; a function is called
    /// again while it returns 1; `vacuum` rows are VACUUM statements. An operation that
    /// fails is paused and the others still run (a broken `queue_extra_maint` function
    /// must not stop rotation or vacuum).
    async fn maintenance(&mut self, client: &Client) {
        let listed = answered(self.limit, "pgq.maint_operations", async {
            client
                .query(
                    "select func_name, func_arg from pgq.maint_operations()",
                    &[],
                )
                .await
                .map_err(|e| PgqError::sql("pgq.maint_operations", e))
        })
        .await;
        let ops = match listed {
            Ok(ops) => {
                self.outcome("pgq.maint_operations", "pgq.maint_operations", Ok(()));
                ops
            }
            Err(e) => {
                self.outcome("pgq.maint_operations", "pgq.maint_operations", Err(e));
                return;
            }
        };
        for op in ops {
            let func: String = op.get(0);
            let arg: Option<String> = op.get(1);
            let key = format!("{func}({})", arg.as_deref().unwrap_or(""));
            if !self.jobs.ready(&key) {
                continue;
            }
            let result = operation(
                &self.db,
                client,
                &func,
                arg.as_deref(),
                self.limit,
                &self.log,
                &self.health,
            )
            .await;
            let label = if func.eq_ignore_ascii_case("vacuum") {
                "vacuum"
            } else {
                func.as_str()
            };
            self.outcome(&key, label, result);
            if client.is_closed() || self.hung {
                return;
            }
        }
    }

    /// Installs the wake-up trigger on every queue that lacks it (not on queues ticked
    /// from outside: a cascade's branch and leaf queues get their ticks from the root).
    async fn install_notify(&mut self, client: &Client) {
        let missing = answered(self.limit, "looking for queues without the notification trigger", async {
            client
            .query(
                "select q.queue_name from pgq.queue q where not q.queue_external_ticker \
                   and exists (select 1 from generate_series(0, q.queue_ntables - 1) g \
                       where not exists (select 1 from pg_catalog.pg_trigger t \
                           where t.tgname = $1 and t.tgrelid = to_regclass(q.queue_data_pfx || '_' || g))) \
                 order by 1",
                &[&crate::notify::TRIGGER],
            )
            .await
            .map_err(|e| PgqError::sql("looking for queues without the notification trigger", e))
        })
        .await;
        let queues = match missing {
            Ok(rows) => rows
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<_>>(),
            Err(e) => return self.outcome("notify_all_queues", "notify_trigger", Err(e)),
        };
        self.outcome("notify_all_queues", "notify_trigger", Ok(()));
        for queue in queues {
            let key = format!("notification trigger on queue {queue}");
            if !self.jobs.ready(&key) {
                continue;
            }
            let result = answered(
                self.limit,
                "installing the notification trigger",
                crate::notify::enable_waiting(client, &queue, Some(NOTIFY_LOCK_TIMEOUT)),
            )
            .await;
            if result.is_ok() {
                self.log.info(format!(
                    "{}: installed the event notification trigger on queue {queue} (notify_all_queues)",
                    self.db
                ));
            }
            self.outcome(&key, "notify_trigger", result);
            if self.hung {
                return;
            }
        }
    }
}

/// `pgq.maint_retry_events()` until it returns 0; the number of events moved.
async fn retry_events(client: &Client, limit: Option<Duration>) -> Result<u64, PgqError> {
    let mut moved = 0u64;
    loop {
        let n: i32 = answered(limit, "pgq.maint_retry_events", async {
            client
                .query_one("select pgq.maint_retry_events()", &[])
                .await
                .map_err(|e| PgqError::sql("pgq.maint_retry_events", e))
        })
        .await?
        .get(0);
        if n <= 0 {
            return Ok(moved);
        }
        moved += n as u64;
    }
}

/// `schema.function` from `pgq.maint_operations()`, each part quoted.
pub fn quote_function(name: &str) -> String {
    name.split('.')
        .map(strata_pgclient::quote_ident)
        .collect::<Vec<_>>()
        .join(".")
}

/// One row of `pgq.maint_operations()`.
async fn operation(
    db: &str,
    client: &Client,
    func: &str,
    arg: Option<&str>,
    limit: Option<Duration>,
    log: &Log,
    health: &Health,
) -> Result<(), PgqError> {
    if func.eq_ignore_ascii_case("vacuum") {
        let Some(table) = arg else { return Ok(()) };
        answered(limit, &format!("vacuum {table}"), async {
            client
                .batch_execute(&format!("vacuum {}", quote_function(table)))
                .await
                .map_err(|e| PgqError::sql(format!("vacuum {table}"), e))
        })
        .await?;
        health.update(db, |s| s.maint_calls += 1);
        return Ok(());
    }
    let rotating = func == "pgq.maint_rotate_tables_step1";
    let before = match (arg, rotating) {
        (Some(q), true) => answered(limit, "reading pgq.queue", current_table(client, q)).await?,
        _ => None,
    };
    let call = match arg {
        Some(_) => format!("select {}($1)::text", quote_function(func)),
        None => format!("select {}()::text", quote_function(func)),
    };
    let mut calls = 0;
    loop {
        let row = answered(limit, func, async {
            match arg {
                Some(a) => client.query_one(&call, &[&a]).await,
                None => client.query_one(&call, &[]).await,
            }
            .map_err(|e| PgqError::sql(func.to_string(), e))
        })
        .await?;
        calls += 1;
        health.update(db, |s| s.maint_calls += 1);
        // Some functions want to be called again at once; bound it all the same.
        if row.get::<_, Option<String>>(0).as_deref() != Some("1") || calls >= 10_000 {
            break;
        }
    }
    if let (Some(q), true) = (arg, rotating) {
        let after = answered(limit, "reading pgq.queue", current_table(client, q)).await?;
        if after != before {
            log.info(format!(
                "{db}: rotated queue {q}: table {} -> {}",
                before.map_or("?".into(), |t| t.to_string()),
                after.map_or("?".into(), |t| t.to_string())
            ));
            health.update(db, |s| s.rotations += 1);
        }
    } else if func == "pgq.maint_rotate_tables_step2" {
        // Step 2 only records the switch txid; the rotation was logged at step 1.
    } else if calls > 1 {
        log.info(format!(
            "{db}: {func}({}) ran {calls} times",
            arg.unwrap_or("")
        ));
    }
    Ok(())
}

async fn current_table(client: &Client, queue: &str) -> Result<Option<i32>, PgqError> {
    Ok(client
        .query_opt(
            "select queue_cur_table from pgq.queue where queue_name = $1",
            &[&queue],
        )
        .await
        .map_err(|e| PgqError::sql("reading pgq.queue", e))?
        .map(|r| r.get(0)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn maintenance_function_names_are_quoted_part_by_part() {
        assert_eq!(
            super::quote_function("pgq.maint_rotate_tables_step1"),
            "\"pgq\".\"maint_rotate_tables_step1\""
        );
        assert_eq!(super::quote_function("x\"; drop"), "\"x\"\"; drop\"");
    }
}
