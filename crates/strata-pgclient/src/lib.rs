//! PostgreSQL helpers shared by strata's PostgreSQL features: the backup plugin now, table
//! retention and replication later. They know how to reach a server and how to write SQL
//! safely; they know nothing about backups.
//!
//! ```
//! use strata_pgclient::{quote_ident, quote_literal, Dsn};
//!
//! // Names and values in SQL text are quoted, never pasted.
//! assert_eq!(quote_ident(r#"Mixed "Case""#), r#""Mixed ""Case""""#);
//! assert_eq!(quote_literal("it's"), "'it''s'");
//! // A connection as operators write it; its description never shows the password.
//! let dsn = Dsn::parse("postgresql://app:secret@db.example:6432/metrics").unwrap();
//! assert!(!format!("{dsn:?}").contains("secret"));
//! ```
//!
//! Layout: this file holds [`Dsn`] (a libpq connection string, its defaults and session
//! guards), connecting with a bounded wait, and the quoting of identifiers and literals;
//! [`tls`] verifies servers for `sslmode=require` and above.

#![deny(missing_docs)]

pub mod tls;

use serde::{Deserialize, Serialize};
use std::time::Duration;
pub use tokio_postgres;
pub use tokio_postgres::{Client, Error as PgError, Notification};

/// Why a server could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The connection or the login failed (nothing listening, authentication refused, no
    /// such database), or so did the `statement_timeout` set right after it.
    #[error("cannot connect to PostgreSQL at {at}")]
    Connect {
        /// The server, `host:port as user` (or `host:port/db as user`); never the password.
        at: String,
        /// What the driver said.
        #[source]
        source: tokio_postgres::Error,
    },
    /// No answer within the connect timeout: a host that is down or a network that drops
    /// packets, rather than a refusal.
    #[error("cannot connect to PostgreSQL at {at}: no answer within {secs} s")]
    Timeout {
        /// The server, `host:port as user` (or `host:port/db as user`); never the password.
        at: String,
        /// The timeout that ran out, in seconds.
        secs: u64,
    },
    /// The TLS settings could not be used, so no connection was tried.
    #[error("cannot connect to PostgreSQL at {at} with TLS")]
    Tls {
        /// The server, `host:port as user` (or `host:port/db as user`); never the password.
        at: String,
        /// What is wrong with them.
        #[source]
        source: tls::TlsError,
    },
}

/// How to reach one PostgreSQL server. The password is not part of it: it is read from
/// the environment or a file when connecting, so it never lands in a config dump or a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectSettings {
    /// A host name or address, or a directory holding the server's Unix socket (starts
    /// with `/`).
    pub host: String,
    /// TCP port, or the number in the socket's file name (`.s.PGSQL.<port>`); 5432 by
    /// default.
    pub port: u16,
    /// The role to log in as (default `postgres`).
    pub user: String,
    /// The database to connect to (default `postgres`).
    pub dbname: String,
    /// Environment variable holding the password (when the server asks for one).
    pub password_env: String,
    /// File whose first line is the password (used when the variable is unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<std::path::PathBuf>,
    /// Seconds to wait for the connection.
    pub connect_timeout_secs: u64,
}

impl Default for ConnectSettings {
    fn default() -> Self {
        ConnectSettings {
            host: "/var/run/postgresql".into(),
            port: 5432,
            user: "postgres".into(),
            dbname: "postgres".into(),
            password_env: "PGPASSWORD".into(),
            password_file: None,
            connect_timeout_secs: 10,
        }
    }
}

impl ConnectSettings {
    /// `host:port` (or `socket-dir:port`) for messages.
    pub fn describe(&self) -> String {
        format!("{}:{} as {}", self.host, self.port, self.user)
    }

    fn password(&self) -> Option<String> {
        if !self.password_env.is_empty() {
            if let Ok(value) = std::env::var(&self.password_env) {
                if !value.is_empty() {
                    return Some(value);
                }
            }
        }
        let path = self.password_file.as_ref()?;
        let text = std::fs::read_to_string(path).ok()?;
        text.lines().next().map(|l| l.trim().to_string())
    }

    /// The settings in libpq's connection-string form, for PostgreSQL's own settings such
    /// as `primary_conninfo` (the password stays out: use a `.pgpass` file for those).
    pub fn conninfo(&self) -> String {
        format!(
            "host={} port={} user={} dbname={}",
            conninfo_value(&self.host),
            self.port,
            conninfo_value(&self.user),
            conninfo_value(&self.dbname)
        )
    }

    /// Opens a connection; its driver task runs on the current tokio runtime and ends when
    /// the returned client is dropped (which also ends the server session).
    pub async fn connect(&self) -> Result<Client, ConnectError> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name("strata")
            .connect_timeout(Duration::from_secs(self.connect_timeout_secs.max(1)));
        if let Some(password) = self.password() {
            config.password(password);
        }
        open(&config, self.connect_timeout_secs.max(1), self.describe()).await
    }
}

/// Why a connection string could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DsnError {
    /// The string does not parse; holds the parser's reason, never the string (it may
    /// hold a password).
    #[error("invalid database connection string: {0} (use postgresql://user@host:port/db or host=... port=... dbname=...)")]
    Invalid(String),
}

/// A connection given as a libpq-style string, `postgresql://user@host:5432/db` or
/// `host=/run/postgresql port=5432 dbname=db`: what operators paste from their other tools.
/// Missing parts take libpq's defaults (socket directory, port 5432, `$PGUSER` or the OS
/// user, `$PGPASSWORD`), so `--db dbname=metrics` works on the database host.
#[derive(Clone)]
pub struct Dsn {
    config: tokio_postgres::Config,
    /// `sslrootcert`: a PEM file of CA certificates trusted besides the system's.
    root_cert: Option<std::path::PathBuf>,
    /// `SET statement_timeout` sent right after connecting ([`Dsn::with_session_guards`]).
    statement_timeout: Option<Duration>,
}

impl std::fmt::Debug for Dsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        write!(f, "Dsn({})", self.describe())
    }
}

impl Dsn {
    /// Parses a connection string; the error never repeats the string (it may hold a
    /// password). `sslmode=require` (or `verify-ca`, `verify-full`) connects over TLS and
    /// verifies the server (see [`tls`]); `sslrootcert=FILE` adds trusted CAs.
    pub fn parse(text: &str) -> Result<Dsn, DsnError> {
        let (text, root_cert) = tls::split_tls_options(text);
        let mut config: tokio_postgres::Config = text
            .parse()
            .map_err(|e: tokio_postgres::Error| DsnError::Invalid(e.to_string()))?;
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
        if config.get_dbname().is_none() {
            if let Ok(db) = std::env::var("PGDATABASE") {
                config.dbname(&db);
            }
        }
        if config.get_password().is_none() {
            if let Ok(password) = std::env::var("PGPASSWORD") {
                config.password(password);
            }
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("strata");
        }
        Ok(Dsn {
            config,
            root_cert: root_cert.map(std::path::PathBuf::from),
            statement_timeout: None,
        })
    }

    /// The same server and settings, database `dbname` (pgqd's `base_connstr` names no
    /// database; each one it ticks is added here).
    pub fn with_dbname(&self, dbname: &str) -> Dsn {
        let mut dsn = self.clone();
        dsn.config.dbname(dbname);
        dsn
    }

    /// The same connection guarded for a daemon's long-lived sessions, which must notice a
    /// server that stopped answering instead of waiting forever: TCP keepalives probe an
    /// idle connection after `keepalive_idle` (then every third of it, 3 probes; the
    /// system default waits two hours) and unacknowledged data gives up after as long;
    /// with `statement_timeout`, the server cancels any statement of the session that runs
    /// longer (a lock wait included). The timeout is a `SET statement_timeout` sent right
    /// after connecting, not an `options` startup parameter (which PgBouncer rejects unless
    /// told to ignore it); behind PgBouncer in transaction or statement pooling a session
    /// `SET` does not stay with the client, so the limit is not guaranteed there. A
    /// `statement_timeout` the string already sets in `options` is left alone (the user's
    /// choice wins), as are all other options.
    pub fn with_session_guards(
        &self,
        keepalive_idle: Duration,
        statement_timeout: Option<Duration>,
    ) -> Dsn {
        let mut dsn = self.clone();
        let idle = keepalive_idle.max(Duration::from_secs(1));
        let interval = (idle / 3).max(Duration::from_secs(1));
        dsn.config
            .keepalives(true)
            .keepalives_idle(idle)
            .keepalives_interval(interval)
            .keepalives_retries(3)
            .tcp_user_timeout(idle + 3 * interval);
        let user_set = dsn
            .config
            .get_options()
            .is_some_and(|o| o.contains("statement_timeout"));
        dsn.statement_timeout = statement_timeout.filter(|_| !user_set);
        dsn
    }

    /// The database connected to, when the string (or `$PGDATABASE`) names one.
    pub fn dbname(&self) -> Option<&str> {
        self.config.get_dbname()
    }

    /// Whether connections use TLS (asked for with `sslmode=require`).
    pub fn uses_tls(&self) -> bool {
        self.config.get_ssl_mode() == tokio_postgres::config::SslMode::Require
    }

    /// `host:port/db as user` for messages: never the password.
    pub fn describe(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "?".into(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let user = self.config.get_user().unwrap_or("?");
        let db = self.config.get_dbname().unwrap_or(user);
        format!("{host}:{port}/{db} as {user}")
    }

    /// Opens a connection whose `NOTIFY` messages arrive on the returned channel (for
    /// `LISTEN`ers: the PgQ ticker, consumers waiting for ticks). The channel closes when
    /// the session ends.
    pub async fn connect_listening(
        &self,
    ) -> Result<(Client, tokio::sync::mpsc::UnboundedReceiver<Notification>), ConnectError> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let client = self.connect_forwarding(Some(tx)).await?;
        Ok((client, rx))
    }

    /// Opens a connection, like [`ConnectSettings::connect`].
    pub async fn connect(&self) -> Result<Client, ConnectError> {
        self.connect_forwarding(None).await
    }

    async fn connect_forwarding(
        &self,
        notes: Option<Notifications>,
    ) -> Result<Client, ConnectError> {
        let secs = self
            .config
            .get_connect_timeout()
            .map(|d| d.as_secs())
            .unwrap_or(10)
            .max(1);
        let client = if !self.uses_tls() {
            open_with(
                &self.config,
                tokio_postgres::NoTls,
                secs,
                self.describe(),
                notes,
            )
            .await?
        } else {
            let tls = tls::MakeRustls::new(self.root_cert.as_deref()).map_err(|source| {
                ConnectError::Tls {
                    at: self.describe(),
                    source,
                }
            })?;
            open_with(&self.config, tls, secs, self.describe(), notes).await?
        };
        if let Some(limit) = self.statement_timeout {
            let set = format!("set statement_timeout = {}", limit.as_millis().max(1));
            match tokio::time::timeout(Duration::from_secs(secs), client.batch_execute(&set)).await
            {
                Ok(Ok(())) => {}
                Ok(Err(source)) => {
                    return Err(ConnectError::Connect {
                        at: self.describe(),
                        source,
                    })
                }
                Err(_) => {
                    return Err(ConnectError::Timeout {
                        at: self.describe(),
                        secs,
                    })
                }
            }
        }
        Ok(client)
    }
}

/// Connects with `config`, giving up after `secs` (plus a second for the driver's own
/// timeout to speak first); `at` names the server in errors. The connection's driver
/// task runs on the current runtime and ends when the client is dropped.
async fn open(
    config: &tokio_postgres::Config,
    secs: u64,
    at: String,
) -> Result<Client, ConnectError> {
    open_with(config, tokio_postgres::NoTls, secs, at, None).await
}

/// Where a connection's `NOTIFY` messages go.
type Notifications = tokio::sync::mpsc::UnboundedSender<Notification>;

/// [`open`] with a TLS connector, forwarding notifications to `notes` when given.
async fn open_with<T>(
    config: &tokio_postgres::Config,
    tls: T,
    secs: u64,
    at: String,
    notes: Option<Notifications>,
) -> Result<Client, ConnectError>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    let attempt = tokio::time::timeout(Duration::from_secs(secs + 1), config.connect(tls)).await;
    let (client, mut connection) = match attempt {
        Ok(Ok(pair)) => pair,
        Ok(Err(source)) => return Err(ConnectError::Connect { at, source }),
        Err(_) => return Err(ConnectError::Timeout { at, secs }),
    };
    tokio::spawn(async move {
        // The session's end (server stopped, network gone) surfaces as an error of the
        // next query on the client; nothing to do here but pass notifications on.
        loop {
            let message = std::future::poll_fn(|cx| connection.poll_message(cx)).await;
            match message {
                Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                    if let Some(notes) = &notes {
                        // A listener that is gone ends nothing: the session lives on.
                        let _ = notes.send(n);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
    });
    Ok(client)
}

/// `"schema"."name"`: a schema-qualified identifier, each part quoted.
pub fn quote_qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

/// The message of a server error (`relation "x" does not exist`), or the driver's own
/// text: what an operator needs on one line, without the driver's `db error:` prefix.
pub fn error_message(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_string(),
        },
        None => {
            let mut text = err.to_string();
            let mut source = std::error::Error::source(err);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
    }
}

/// A value for a libpq connection string: quoted when it needs to be.
fn conninfo_value(value: &str) -> String {
    if !value.is_empty() && !value.contains([' ', '\'', '\\']) {
        return value.to_string();
    }
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// An identifier quoted for SQL: `"name"` with inner quotes doubled. Every identifier that
/// comes from a user goes through this; values go as bound parameters.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A string literal for places that cannot take a bound parameter (configuration files,
/// some utility commands): `'value'` with quotes doubled and no backslash escapes.
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// `value` as a quoted string of a PostgreSQL configuration file (`postgresql.conf`,
/// `postgresql.auto.conf`). Unlike SQL, the file's lexer reads `\` as an escape and ends
/// a string at a newline, so quotes are doubled, backslashes escaped and every control
/// character written as an octal escape: whatever the value, it stays one string on one
/// line and cannot add a setting.
pub fn quote_config_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() && (c as u32) < 0x80 => {
                out.push_str(&format!("\\{:03o}", c as u32));
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_hostile_names() {
        assert_eq!(quote_ident("plain"), "\"plain\"");
        assert_eq!(quote_ident("a\"b; drop"), "\"a\"\"b; drop\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_config_value("it's"), "'it''s'");
        assert_eq!(quote_config_value("a\\"), "'a\\\\'");
        assert_eq!(
            quote_config_value("x\nrestore_command = 'sh'\0\r"),
            "'x\\012restore_command = ''sh''\\000\\015'"
        );
        assert_eq!(conninfo_value("a b"), "'a b'");
        assert_eq!(conninfo_value("x'y"), "'x\\'y'");
        assert_eq!(conninfo_value("/tmp/s"), "/tmp/s");
        assert_eq!(quote_qualified("a.b", "c\"d"), "\"a.b\".\"c\"\"d\"");
    }

    #[test]
    fn dsn_descriptions_hide_the_password() {
        let dsn = Dsn::parse("postgresql://alice:hunter2@db.example:6543/metrics").unwrap();
        assert_eq!(dsn.describe(), "db.example:6543/metrics as alice");
        assert!(!format!("{dsn:?}").contains("hunter2"));
        let dsn = Dsn::parse("host=/tmp/sock port=5999 user=bob dbname=x password=pw").unwrap();
        assert_eq!(dsn.describe(), "/tmp/sock:5999/x as bob");
        let err = Dsn::parse("postgresql://u:secretpw@h:notaport/db").unwrap_err();
        assert!(!err.to_string().contains("secretpw"), "{err}");
    }

    #[test]
    fn session_guards_add_keepalives_and_keep_existing_options() {
        let limit = Some(Duration::from_millis(1500));
        let dsn = Dsn::parse("host=h options='-c search_path=x'").unwrap();
        let guarded = dsn.with_session_guards(Duration::from_secs(9), limit);
        // No startup option (PgBouncer refuses `options`): a SET after connecting.
        assert_eq!(guarded.config.get_options(), Some("-c search_path=x"));
        assert_eq!(guarded.statement_timeout, limit);
        assert_eq!(guarded.config.get_keepalives_idle(), Duration::from_secs(9));
        let plain = Dsn::parse("host=h").unwrap();
        let guarded = plain.with_session_guards(Duration::from_secs(9), None);
        assert_eq!(guarded.config.get_options(), None);
        assert_eq!(guarded.statement_timeout, None);
        // The user's own statement_timeout is left alone, not overridden.
        let own = Dsn::parse("host=h options='-c statement_timeout=7000'").unwrap();
        let guarded = own.with_session_guards(Duration::from_secs(9), limit);
        assert_eq!(
            guarded.config.get_options(),
            Some("-c statement_timeout=7000")
        );
        assert_eq!(guarded.statement_timeout, None);
    }

    #[test]
    fn conninfo_never_holds_the_password() {
        std::env::set_var("STRATA_PG_TEST_PW", "secret");
        let settings = ConnectSettings {
            password_env: "STRATA_PG_TEST_PW".into(),
            ..ConnectSettings::default()
        };
        assert_eq!(settings.password().as_deref(), Some("secret"));
        assert!(!settings.conninfo().contains("secret"));
        assert!(!format!("{settings:?}").contains("secret"));
    }
}
