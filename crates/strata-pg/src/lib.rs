//! PostgreSQL helpers shared by strata's PostgreSQL features: the backup plugin now, table
//! retention and replication later. They know how to reach a server and how to write SQL
//! safely; they know nothing about backups.

use serde::{Deserialize, Serialize};
use std::time::Duration;
pub use tokio_postgres;
pub use tokio_postgres::{Client, Error as PgError};

/// Why a server could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to PostgreSQL at {at}")]
    Connect {
        at: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("cannot connect to PostgreSQL at {at}: no answer within {secs} s")]
    Timeout { at: String, secs: u64 },
}

/// How to reach one PostgreSQL server. The password is not part of it: it is read from
/// the environment or a file when connecting, so it never lands in a config dump or a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectSettings {
    /// A host name or address, or a directory holding the server's Unix socket (starts
    /// with `/`).
    pub host: String,
    pub port: u16,
    pub user: String,
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
        let secs = self.connect_timeout_secs.max(1);
        let attempt = tokio::time::timeout(
            Duration::from_secs(secs + 1),
            config.connect(tokio_postgres::NoTls),
        )
        .await;
        let (client, connection) = match attempt {
            Ok(Ok(pair)) => pair,
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
        };
        tokio::spawn(async move {
            // The session's end (server stopped, network gone) surfaces as an error of the
            // next query on the client; nothing to do here.
            let _ = connection.await;
        });
        Ok(client)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_hostile_names() {
        assert_eq!(quote_ident("plain"), "\"plain\"");
        assert_eq!(quote_ident("a\"b; drop"), "\"a\"\"b; drop\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(conninfo_value("a b"), "'a b'");
        assert_eq!(conninfo_value("x'y"), "'x\\'y'");
        assert_eq!(conninfo_value("/tmp/s"), "/tmp/s");
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
