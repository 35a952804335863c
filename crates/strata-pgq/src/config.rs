//! `[pgq]` of strata's configuration file: this crate owns the section (its type,
//! defaults, documentation and checks); the application layer reads the file and hands
//! the section here. [`DEFAULT_SECTION`] is what `strata config default` prints for it.

use crate::ticker::config::TickerConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The documented default `[pgq]` section, comments included.
pub const DEFAULT_SECTION: &str = include_str!("default.toml");

/// `[pgq]`: the settings of `strata pgq ticker` (docs/pgq.md): pgqd's keys with pgqd's
/// defaults, plus strata's own. Only the ticker uses them ([`PgqConfig::ticker`]), but
/// every command reading the file checks them, so a typo is an error wherever it is
/// found. Periods are seconds and may be fractions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PgqConfig {
    /// libpq connection string without `dbname` (empty: libpq's defaults).
    pub base_connstr: String,
    /// The database the others are listed from.
    pub initial_database: String,
    /// Databases to tick; empty: every connectable database that has pgq.
    pub database_list: Vec<String>,
    /// Seconds between database discoveries.
    pub check_period: f64,
    /// Seconds between runs of `pgq.maint_retry_events()`.
    pub retry_period: f64,
    /// Seconds between maintenance rounds.
    pub maint_period: f64,
    /// Seconds between ticker rounds.
    pub ticker_period: f64,
    /// Seconds between stats log lines.
    pub stats_period: f64,
    /// Seconds after which a database connection is reopened.
    pub connection_lifetime: f64,
    /// Where the ticker logs (relative: to the configuration file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logfile: Option<PathBuf>,
    /// The ticker's pid file (relative: to the configuration file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pidfile: Option<PathBuf>,
    /// `host:port` serving `/health` and `/metrics`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_listen: Option<String>,
    /// Seconds a database may stay unreachable before the ticker exits 1; 0: never.
    pub exit_on_unreachable: f64,
    /// LISTEN for event notifications and tick the notified queue at once.
    pub listen_notify: bool,
    /// Least seconds between a queue's previous tick and a wake-up tick; 0: none.
    pub wakeup_min_interval: f64,
    /// Install the event notification trigger on every queue (off: it costs producers
    /// a `pg_notify` per event and is DDL on queues the ticker does not own).
    pub notify_all_queues: bool,
    /// Seconds a ticker round may be overdue before `/health` reports the database
    /// stalled.
    pub stall_timeout: f64,
    /// Seconds after which the server cancels a statement of the ticker's sessions; 0:
    /// no limit.
    pub statement_timeout: f64,
}

impl Default for PgqConfig {
    fn default() -> Self {
        PgqConfig {
            base_connstr: String::new(),
            initial_database: "template1".into(),
            database_list: Vec::new(),
            check_period: 60.0,
            retry_period: 30.0,
            maint_period: 120.0,
            ticker_period: 1.0,
            stats_period: 30.0,
            connection_lifetime: 3600.0,
            logfile: None,
            pidfile: None,
            health_listen: None,
            exit_on_unreachable: 0.0,
            listen_notify: true,
            wakeup_min_interval: 0.25,
            notify_all_queues: false,
            stall_timeout: 30.0,
            statement_timeout: 300.0,
        }
    }
}

impl PgqConfig {
    /// Checks what TOML types cannot: every period positive and finite, the others 0 or
    /// more, a database to list the others from. The message names the key (`pgq.KEY`).
    // String: a validator; the configuration wraps the line at once (ConfigError::Invalid).
    pub fn validate(&self) -> Result<(), String> {
        let periods = [
            ("check_period", self.check_period),
            ("retry_period", self.retry_period),
            ("maint_period", self.maint_period),
            ("ticker_period", self.ticker_period),
            ("stats_period", self.stats_period),
            ("connection_lifetime", self.connection_lifetime),
            ("stall_timeout", self.stall_timeout),
        ];
        for (key, secs) in periods {
            if !(secs > 0.0 && secs < 1e9) {
                return Err(format!("pgq.{key} must be a positive number of seconds"));
            }
        }
        for (key, secs) in [
            ("exit_on_unreachable", self.exit_on_unreachable),
            ("wakeup_min_interval", self.wakeup_min_interval),
            ("statement_timeout", self.statement_timeout),
        ] {
            if !(0.0..1e9).contains(&secs) {
                return Err(format!(
                    "pgq.{key} must be 0 or a positive number of seconds"
                ));
            }
        }
        if self.initial_database.is_empty() {
            return Err("pgq.initial_database must not be empty".into());
        }
        Ok(())
    }

    /// Makes the relative `logfile` and `pidfile` relative to `base`, the directory of the
    /// configuration file.
    pub fn resolve_paths(&mut self, base: &Path) {
        for file in [self.logfile.as_mut(), self.pidfile.as_mut()]
            .into_iter()
            .flatten()
        {
            if file.is_relative() {
                *file = base.join(&*file);
            }
        }
    }

    /// The section as the ticker's settings (checked already by [`PgqConfig::validate`]:
    /// periods are positive, the others 0 or more).
    pub fn ticker(&self) -> TickerConfig {
        let secs = Duration::from_secs_f64;
        TickerConfig {
            base_connstr: self.base_connstr.clone(),
            initial_database: self.initial_database.clone(),
            database_list: self.database_list.clone(),
            check_period: secs(self.check_period),
            retry_period: secs(self.retry_period),
            maint_period: secs(self.maint_period),
            ticker_period: secs(self.ticker_period),
            stats_period: secs(self.stats_period),
            connection_lifetime: secs(self.connection_lifetime),
            logfile: self.logfile.clone(),
            pidfile: self.pidfile.clone(),
            health_listen: self.health_listen.clone(),
            exit_on_unreachable: (self.exit_on_unreachable > 0.0)
                .then(|| secs(self.exit_on_unreachable)),
            listen_notify: self.listen_notify,
            wakeup_min_interval: secs(self.wakeup_min_interval),
            notify_all_queues: self.notify_all_queues,
            stall_timeout: secs(self.stall_timeout),
            statement_timeout: (self.statement_timeout > 0.0).then(|| secs(self.statement_timeout)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_section_is_the_default() {
        let parsed: std::collections::BTreeMap<String, PgqConfig> =
            toml::from_str(DEFAULT_SECTION).unwrap();
        assert_eq!(parsed["pgq"], PgqConfig::default());
        assert_eq!(parsed.len(), 1);
    }

    #[test]
    fn the_default_section_is_the_tickers_default() {
        assert_eq!(PgqConfig::default().ticker(), TickerConfig::default());
    }

    #[test]
    fn bad_values_are_refused_with_the_key() {
        type Spoil = fn(&mut PgqConfig);
        let cases: [(Spoil, &str); 4] = [
            (|c| c.ticker_period = 0.0, "pgq.ticker_period"),
            (|c| c.check_period = f64::NAN, "pgq.check_period"),
            (|c| c.wakeup_min_interval = -1.0, "pgq.wakeup_min_interval"),
            (|c| c.initial_database.clear(), "pgq.initial_database"),
        ];
        for (spoil, key) in cases {
            let mut config = PgqConfig::default();
            spoil(&mut config);
            assert!(config.validate().unwrap_err().contains(key), "{key}");
        }
    }
}
