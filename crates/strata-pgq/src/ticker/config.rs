//! The ticker's settings, read from pgqd's ini file (same keys, same defaults, so an
//! existing `pgqd.ini` works unchanged). The same keys also live in the `[pgq]` section
//! of strata's own configuration file; the `strata` binary reads that one and fills a
//! [`TickerConfig`] from it (this crate does not know strata's configuration). strata
//! adds keys pgqd does not know: `health_listen`, `exit_on_unreachable`,
//! `listen_notify`, `wakeup_min_interval`, `notify_all_queues`, `stall_timeout` and
//! `statement_timeout`.

use crate::PgqError;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything the ticker needs to run.
#[derive(Debug, Clone, PartialEq)]
pub struct TickerConfig {
    /// libpq connection string without `dbname` (empty: libpq defaults).
    pub base_connstr: String,
    /// The database listing the others (pgqd's default `template1`).
    pub initial_database: String,
    /// Databases to tick; empty means every connectable database that has pgq.
    pub database_list: Vec<String>,
    /// How often databases are discovered again.
    pub check_period: Duration,
    /// How often retry events are moved back into their queues.
    pub retry_period: Duration,
    /// How often `pgq.maint_operations()` runs (rotation, vacuum, cascade upkeep).
    pub maint_period: Duration,
    /// How often every queue is offered a tick.
    pub ticker_period: Duration,
    /// How often counters are logged (and queue figures refreshed, at most 10 s).
    pub stats_period: Duration,
    /// Connections are reopened after this long (pgqd's `connection_lifetime`).
    pub connection_lifetime: Duration,
    /// Where log lines go (stderr when unset).
    pub logfile: Option<PathBuf>,
    /// Holds the ticker's pid while it runs; a second ticker on it is refused.
    pub pidfile: Option<PathBuf>,
    /// `host:port` for `/health` and `/metrics` (strata only).
    pub health_listen: Option<String>,
    /// Stop with an error when a database stays unreachable this long (strata only;
    /// `None`: keep retrying forever, as pgqd does).
    pub exit_on_unreachable: Option<Duration>,
    /// LISTEN for `strata_pgq_event` notifications and tick the queue at once
    /// (strata only; default on).
    pub listen_notify: bool,
    /// After an event notification, a queue gets a wake-up tick at once, but no sooner
    /// than this long after the previous tick this ticker wrote for it (strata only;
    /// default 0.25 s; 0: at once every time). Bounds the ticks a busy queue gets from
    /// notifications.
    pub wakeup_min_interval: Duration,
    /// Install strata's event notification trigger on every queue of every ticked
    /// database, and on new queues as they appear (strata only; default off: see
    /// docs/pgq.md for why).
    pub notify_all_queues: bool,
    /// A database whose last successful ticker round is older than `ticker_period` plus
    /// this is reported stalled by `/health` (strata only; default 30 s).
    pub stall_timeout: Duration,
    /// The server cancels any statement of the ticker's sessions that runs longer (a
    /// lock wait included), and the ticker gives up on an answer a little after
    /// (strata only; default 300 s; `None`: no limit).
    pub statement_timeout: Option<Duration>,
}

/// Default of [`TickerConfig::wakeup_min_interval`].
pub const WAKEUP_MIN_INTERVAL: Duration = Duration::from_millis(250);
/// Default of [`TickerConfig::stall_timeout`].
pub const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Default of [`TickerConfig::statement_timeout`].
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(300);

impl TickerConfig {
    /// How old the last successful ticker round of a database may be before `/health`
    /// calls the database stalled.
    pub fn stall_limit(&self) -> Duration {
        self.ticker_period + self.stall_timeout
    }
}

impl Default for TickerConfig {
    fn default() -> Self {
        TickerConfig {
            base_connstr: String::new(),
            initial_database: "template1".into(),
            database_list: Vec::new(),
            check_period: Duration::from_secs(60),
            retry_period: Duration::from_secs(30),
            maint_period: Duration::from_secs(120),
            ticker_period: Duration::from_secs(1),
            stats_period: Duration::from_secs(30),
            connection_lifetime: Duration::from_secs(3600),
            logfile: None,
            pidfile: None,
            health_listen: None,
            exit_on_unreachable: None,
            listen_notify: true,
            wakeup_min_interval: WAKEUP_MIN_INTERVAL,
            notify_all_queues: false,
            stall_timeout: STALL_TIMEOUT,
            statement_timeout: Some(STATEMENT_TIMEOUT),
        }
    }
}

/// pgqd keys that only matter to pgqd's own logging; accepted and ignored.
const IGNORED: &[&str] = &["syslog", "syslog_ident", "syslog_facility"];

impl TickerConfig {
    /// Reads pgqd's ini file; `logfile` and `pidfile` are relative to the file.
    pub fn load(path: &Path) -> Result<TickerConfig, PgqError> {
        let text = std::fs::read_to_string(path).map_err(|e| PgqError::Config {
            path: path.display().to_string(),
            reason: format!("cannot read: {e}"),
        })?;
        let mut config = Self::parse_ini(&text).map_err(|e| PgqError::Config {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut config.logfile, &mut config.pidfile]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(config)
    }

    /// pgqd's ini: `[pgqd]` section, `key = value`, `#`/`;` comments.
    pub fn parse_ini(text: &str) -> Result<TickerConfig, IniError> {
        let mut config = TickerConfig::default();
        let mut section = String::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.trim().to_string();
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or(IniError::NotKeyValue { line: n + 1 })?;
            if section != "pgqd" {
                return Err(IniError::OutsideSection { line: n + 1 });
            }
            config
                .set(key.trim(), value.trim())
                .map_err(|why| IniError::Key { line: n + 1, why })?;
        }
        Ok(config)
    }

    /// Sets one key from its text form.
    fn set(&mut self, key: &str, value: &str) -> Result<(), KeyError> {
        let period = |v: &str| -> Result<Duration, KeyError> {
            let secs: f64 = v.parse().map_err(|_| KeyError::NotSeconds {
                key: key.to_string(),
                value: v.to_string(),
            })?;
            if !(secs > 0.0 && secs < 1e9) {
                return Err(KeyError::NotPositive {
                    key: key.to_string(),
                });
            }
            Ok(Duration::from_secs_f64(secs))
        };
        let path = |v: &str| (!v.is_empty()).then(|| PathBuf::from(v));
        match key {
            "base_connstr" => self.base_connstr = value.to_string(),
            "initial_database" => {
                if value.is_empty() {
                    return Err(KeyError::EmptyDatabase);
                }
                self.initial_database = value.to_string()
            }
            "database_list" => {
                self.database_list = value
                    .split(',')
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            "check_period" => self.check_period = period(value)?,
            "retry_period" => self.retry_period = period(value)?,
            "maint_period" => self.maint_period = period(value)?,
            "ticker_period" => self.ticker_period = period(value)?,
            "stats_period" => self.stats_period = period(value)?,
            "connection_lifetime" => self.connection_lifetime = period(value)?,
            "logfile" => self.logfile = path(value),
            "pidfile" => self.pidfile = path(value),
            "health_listen" => self.health_listen = (!value.is_empty()).then(|| value.to_string()),
            "exit_on_unreachable" => {
                self.exit_on_unreachable = match value {
                    "" | "0" | "never" => None,
                    v => Some(period(v)?),
                }
            }
            "wakeup_min_interval" => {
                self.wakeup_min_interval = match value.parse::<f64>() {
                    Ok(0.0) => Duration::ZERO,
                    _ => period(value)?,
                }
            }
            "listen_notify" => self.listen_notify = boolean(key, value)?,
            "notify_all_queues" => self.notify_all_queues = boolean(key, value)?,
            "stall_timeout" => self.stall_timeout = period(value)?,
            "statement_timeout" => {
                self.statement_timeout = match value {
                    "0" | "never" => None,
                    v => Some(period(v)?),
                }
            }
            k if IGNORED.contains(&k) => {}
            k => return Err(KeyError::Unknown(k.to_string())),
        }
        Ok(())
    }
}

/// pgqd's booleans: `1`/`0` and the usual words.
fn boolean(key: &str, value: &str) -> Result<bool, KeyError> {
    match value {
        "1" | "true" | "on" | "yes" => Ok(true),
        "0" | "false" | "off" | "no" => Ok(false),
        v => Err(KeyError::NotBoolean {
            key: key.to_string(),
            value: v.to_string(),
        }),
    }
}

/// Why pgqd's ini file is refused, with its line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IniError {
    /// A line that is neither a section, a comment nor `key = value`.
    #[error("line {line}: expected key = value")]
    NotKeyValue {
        /// The line's number, from 1.
        line: usize,
    },
    /// A key outside the `[pgqd]` section.
    #[error("line {line}: keys belong in a [pgqd] section")]
    OutsideSection {
        /// The line's number, from 1.
        line: usize,
    },
    /// A key or its value that is refused.
    #[error("line {line}: {why}")]
    Key {
        /// The line's number, from 1.
        line: usize,
        /// What is wrong with it.
        why: KeyError,
    },
}

/// Why a key of pgqd's ini file is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// A period that is not a number.
    #[error("{key}: {value:?} is not a number of seconds")]
    NotSeconds {
        /// The key.
        key: String,
        /// Its value.
        value: String,
    },
    /// A period that is not positive (or too large).
    #[error("{key}: must be a positive number of seconds")]
    NotPositive {
        /// The key.
        key: String,
    },
    /// `initial_database` empty.
    #[error("initial_database: must not be empty")]
    EmptyDatabase,
    /// A boolean that is not one.
    #[error("{key}: {value:?} is not a boolean")]
    NotBoolean {
        /// The key.
        key: String,
        /// Its value.
        value: String,
    },
    /// A key pgqd does not have.
    #[error("unknown key {0:?}")]
    Unknown(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgqd_sample_config_is_accepted_with_pgqd_defaults() {
        // The output of `pgqd --ini` (pgqd 3.5), with two options uncommented.
        let text = "[pgqd]\n\n# where to log\nlogfile = /var/log/postgresql/pgqd.log\n\n# pidfile\npidfile = /var/run/postgresql/pgqd.pid\n\n## optional parameters ##\n\n# libpq connect string without dbname=\nbase_connstr = host=/tmp port=5499\n\n# startup db to query other databases\n#initial_database = template1\n\n# limit ticker to specific databases\ndatabase_list = a, b\n\n# log into syslog\n#syslog = 1\n#syslog_ident = pgqd\n\n## optional timeouts ##\n\n# how often to check for new databases\n#check_period = 60\n\n# how often to flush retry queue\n#retry_period = 30\n\n# how often to do maintentance\n#maint_period = 120\n\n# how often to run ticker\n#ticker_period = 1\nsyslog = 0\n";
        let c = TickerConfig::parse_ini(text).unwrap();
        assert_eq!(
            c.logfile.as_deref(),
            Some(Path::new("/var/log/postgresql/pgqd.log"))
        );
        assert_eq!(c.base_connstr, "host=/tmp port=5499");
        assert_eq!(c.database_list, vec!["a", "b"]);
        assert_eq!(c.initial_database, "template1");
        assert_eq!(
            (
                c.check_period,
                c.retry_period,
                c.maint_period,
                c.ticker_period
            ),
            (
                Duration::from_secs(60),
                Duration::from_secs(30),
                Duration::from_secs(120),
                Duration::from_secs(1)
            )
        );
        assert_eq!(c.exit_on_unreachable, None);
    }

    #[test]
    fn strata_keys_in_the_ini() {
        let c = TickerConfig::parse_ini(
            "[pgqd]\nticker_period = 0.5\nhealth_listen = 127.0.0.1:9187\nexit_on_unreachable = 30\nlisten_notify = 0\nwakeup_min_interval = 0\n",
        )
        .unwrap();
        assert_eq!(c.ticker_period, Duration::from_millis(500));
        assert_eq!(c.health_listen.as_deref(), Some("127.0.0.1:9187"));
        assert_eq!(c.exit_on_unreachable, Some(Duration::from_secs(30)));
        assert!(!c.listen_notify);
        assert_eq!(c.wakeup_min_interval, Duration::ZERO);
        let c = TickerConfig::parse_ini("[pgqd]\nwakeup_min_interval = 0.5\n").unwrap();
        assert_eq!(c.wakeup_min_interval, Duration::from_millis(500));
        assert_eq!(
            TickerConfig::default().wakeup_min_interval,
            WAKEUP_MIN_INTERVAL
        );
        assert!(TickerConfig::parse_ini("[pgqd]\nwakeup_min_interval = -1\n").is_err());
        let c = TickerConfig::parse_ini(
            "[pgqd]\nnotify_all_queues = 1\nstall_timeout = 2.5\nstatement_timeout = 0\n",
        )
        .unwrap();
        assert!(c.notify_all_queues);
        assert_eq!(c.stall_timeout, Duration::from_millis(2500));
        assert_eq!(c.statement_timeout, None);
        let d = TickerConfig::default();
        assert!(!d.notify_all_queues, "off unless asked for");
        assert_eq!(d.statement_timeout, Some(STATEMENT_TIMEOUT));
        assert_eq!(d.stall_limit(), Duration::from_secs(31));
        assert!(TickerConfig::parse_ini("[pgqd]\nnotify_all_queues = maybe\n").is_err());
        assert!(TickerConfig::parse_ini("[pgqd]\nstall_timeout = 0\n").is_err());
    }

    #[test]
    fn mistakes_are_reported_with_their_line() {
        let e = TickerConfig::parse_ini("[pgqd]\nticker_perod = 1\n").unwrap_err();
        assert_eq!(
            e,
            IniError::Key {
                line: 2,
                why: KeyError::Unknown("ticker_perod".into())
            }
        );
        assert!(e.to_string().contains("line 2"), "{e}");
        let e = TickerConfig::parse_ini("[pgqd]\nticker_period = soon\n").unwrap_err();
        assert!(e.to_string().contains("not a number"), "{e}");
        assert!(TickerConfig::parse_ini("[pgqd]\nmaint_period = -1\n").is_err());
        assert!(TickerConfig::parse_ini("[pgqd]\nmaint_period = NaN\n").is_err());
        assert!(TickerConfig::parse_ini("logfile = x\n").is_err());
        assert!(TickerConfig::parse_ini("[pgqd]\nnonsense\n").is_err());
    }
}
