//! Connections that keep their notifications (the ticker and waiting consumers need
//! `NOTIFY` payloads), opened by `strata_pgclient`'s one connect routine: libpq's defaults, TLS
//! when asked for, the same timeout.

use crate::PgqError;
use std::time::Duration;
use strata_pgclient::Dsn;
use tokio::sync::mpsc;
use tokio_postgres::{Client, Notification};

/// Channel the ticker notifies after a tick (payload: queue name), for consumers.
pub const TICK_CHANNEL: &str = "strata_pgq_tick";

/// A libpq-style base connection string (pgqd's `base_connstr`, no `dbname`) completed
/// with `dbname`, with libpq's environment defaults for what it leaves out.
pub fn config_for(base: &str, dbname: &str) -> Result<Dsn, PgqError> {
    let dsn =
        Dsn::parse(base).map_err(|e| PgqError::BadInput(format!("invalid base_connstr: {e}")))?;
    Ok(dsn.with_dbname(dbname))
}

/// `host:port/db as user` for log lines: never the password.
pub fn describe(dsn: &Dsn) -> String {
    dsn.describe()
}

/// Opens a connection whose notifications arrive on the returned channel; the channel
/// closes when the session ends (server gone, client dropped).
pub async fn connect_listening(
    dsn: &Dsn,
) -> Result<(Client, mpsc::UnboundedReceiver<Notification>), PgqError> {
    dsn.connect_listening().await.map_err(PgqError::Connect)
}

/// Wakes a consumer when the ticker (strata's) has written a tick on its queue: a
/// connection LISTENing on `strata_pgq_tick`. With another ticker (pgqd) no notification
/// comes, so [`TickWaiter::wait`] also returns after its timeout: use it in place of a
/// plain sleep between `next_batch` calls.
pub struct TickWaiter {
    _client: Client,
    notes: mpsc::UnboundedReceiver<Notification>,
    queue: String,
}

impl TickWaiter {
    /// Connects and LISTENs for ticks of `queue`.
    pub async fn connect(config: &Dsn, queue: &str) -> Result<TickWaiter, PgqError> {
        let (client, notes) = connect_listening(config).await?;
        client
            .batch_execute(&format!(
                "listen {}",
                strata_pgclient::quote_ident(TICK_CHANNEL)
            ))
            .await
            .map_err(|e| PgqError::sql("LISTEN", e))?;
        Ok(TickWaiter {
            _client: client,
            notes,
            queue: queue.to_string(),
        })
    }

    /// Whether the LISTEN session has ended (the server restarted or went away): the
    /// waiter then only sleeps, and the caller should connect a new one.
    pub fn is_closed(&self) -> bool {
        self.notes.is_closed()
    }

    /// Returns when a tick of the queue is announced or after `timeout`; `true` when a
    /// tick was announced.
    pub async fn wait(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.notes.recv()).await {
                Ok(Some(n)) if n.payload() == self.queue => {
                    while self.notes.try_recv().is_ok() {}
                    return true;
                }
                Ok(Some(_)) => continue,
                // Session gone: behave like a sleep so the caller's loop goes on.
                Ok(None) => {
                    tokio::time::sleep_until(deadline).await;
                    return false;
                }
                Err(_) => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_connstr_gets_the_database_and_keeps_the_rest() {
        let c = config_for("host=/tmp/s port=5999 user=bob password=pw", "db one").unwrap();
        assert_eq!(describe(&c), "/tmp/s:5999/db one as bob");
        assert!(!describe(&c).contains("pw"));
        assert!(config_for("host='unterminated", "x")
            .unwrap_err()
            .is_bad_input());
        let c = config_for("", "x").unwrap();
        assert_eq!(c.dbname(), Some("x"));
        assert!(!describe(&c).starts_with('?'));
    }
}
