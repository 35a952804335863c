//! Connections that keep their notifications. `strata_pg`'s connect routine drops
//! asynchronous messages (its callers never LISTEN); the ticker and waiting consumers
//! need `NOTIFY` payloads, so this opens the connection the same way (same defaults as
//! `strata_pg::Dsn`, same timeout) and forwards notifications to a channel.

use crate::PgqError;
use futures::StreamExt;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, Config, Notification};

/// A libpq-style base connection string (pgqd's `base_connstr`, no `dbname`) completed
/// with `dbname`, with libpq's environment defaults for what it leaves out.
pub fn config_for(base: &str, dbname: &str) -> Result<Config, PgqError> {
    let mut config: Config = if base.trim().is_empty() {
        Config::new()
    } else {
        base.parse().map_err(|e: tokio_postgres::Error| {
            PgqError::BadInput(format!("invalid base_connstr: {e}"))
        })?
    };
    if config.get_hosts().is_empty() {
        let host = std::env::var("PGHOST").unwrap_or_else(|_| "/var/run/postgresql".into());
        config.host(&host);
    }
    if config.get_ports().is_empty() {
        let port = std::env::var("PGPORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(5432);
        config.port(port);
    }
    if config.get_user().is_none() {
        let user = std::env::var("PGUSER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "postgres".into());
        config.user(&user);
    }
    if config.get_password().is_none() {
        if let Ok(password) = std::env::var("PGPASSWORD") {
            config.password(password);
        }
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    config.application_name("strata pgq");
    config.dbname(dbname);
    Ok(config)
}

/// `host:port/db` for log lines: never the password.
pub fn describe(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "?".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", config.get_dbname().unwrap_or("?"))
}

/// Opens a connection whose notifications arrive on the returned channel; the channel
/// closes when the session ends (server gone, client dropped).
pub async fn connect_listening(
    config: &Config,
) -> Result<(Client, mpsc::UnboundedReceiver<Notification>), PgqError> {
    let secs = config
        .get_connect_timeout()
        .map(|d| d.as_secs())
        .unwrap_or(10)
        .max(1);
    let at = describe(config);
    let attempt = tokio::time::timeout(
        Duration::from_secs(secs + 1),
        config.connect(tokio_postgres::NoTls),
    )
    .await;
    let (client, mut connection) = match attempt {
        Ok(Ok(pair)) => pair,
        Ok(Err(source)) => {
            return Err(PgqError::Connect(strata_pg::ConnectError::Connect {
                at,
                source,
            }))
        }
        Err(_) => {
            return Err(PgqError::Connect(strata_pg::ConnectError::Timeout {
                at,
                secs,
            }))
        }
    };
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(n) = message {
                // The receiver may be gone (worker stopping): the session ends with us.
                let _ = tx.send(n);
            }
        }
    });
    Ok((client, rx))
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
    pub async fn connect(config: &Config, queue: &str) -> Result<TickWaiter, PgqError> {
        let (client, notes) = connect_listening(config).await?;
        client
            .batch_execute(&format!(
                "listen {}",
                strata_pg::quote_ident(crate::ticker::db::TICK_CHANNEL)
            ))
            .await
            .map_err(|e| PgqError::sql("LISTEN", e))?;
        Ok(TickWaiter {
            _client: client,
            notes,
            queue: queue.to_string(),
        })
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
        assert_eq!(describe(&c), "/tmp/s:5999/db one");
        assert_eq!(c.get_user(), Some("bob"));
        assert!(!describe(&c).contains("pw"));
        assert!(config_for("host='unterminated", "x")
            .unwrap_err()
            .is_bad_input());
        let c = config_for("", "x").unwrap();
        assert_eq!(c.get_dbname(), Some("x"));
        assert!(!c.get_hosts().is_empty());
    }
}
