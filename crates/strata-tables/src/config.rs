//! `[tables]` of strata's configuration file: this crate owns the section (its type,
//! defaults and documentation); the application layer reads the file and hands the
//! section here. [`DEFAULT_SECTION`] is what `strata config default` prints for it.

use serde::{Deserialize, Serialize};

/// The documented default `[tables]` section, comments included.
pub const DEFAULT_SECTION: &str = include_str!("default.toml");

/// `[tables]`: where table retention's policies live, for scheduled runs and as the default
/// of `strata tables --db`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TablesConfig {
    /// `postgresql://user@host:5432/db` or `host=... dbname=...`; the password comes from
    /// `$PGPASSWORD` (never write it here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db: Option<String>,
    /// Schema of the policy, run and audit tables.
    pub schema: String,
    /// How long a step waits for a table lock before giving up, in seconds.
    pub lock_timeout_secs: u64,
    /// Runs and audit rows older than this many days are deleted at the end of each run
    /// (0: kept forever).
    pub history_days: u32,
    /// `[[tables.jobs]]`: materialized views to refresh and statements to run, by name
    /// (`strata tables sql NAME`, `[[schedules]] job = "sql"`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<crate::sql_job::SqlJob>,
}

impl Default for TablesConfig {
    fn default() -> Self {
        TablesConfig {
            db: None,
            schema: "strata".into(),
            lock_timeout_secs: 30,
            history_days: 365,
            jobs: Vec::new(),
        }
    }
}

impl TablesConfig {
    /// The SQL job called `name`.
    pub fn job(&self, name: &str) -> crate::TablesResult<&crate::sql_job::SqlJob> {
        self.jobs.iter().find(|j| j.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.jobs.iter().map(|j| j.name.as_str()).collect();
            crate::TablesError::Unsupported(format!(
                "no [[tables.jobs]] entry named {name:?} (there are: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))
        })
    }

    /// Checks what TOML types cannot: the jobs.
    // String: the configuration loader takes every section's complaint as text (`ConfigError::Invalid`).
    pub fn validate(&self) -> Result<(), String> {
        crate::sql_job::validate_jobs(&self.jobs).map_err(|e| e.to_string())
    }

    /// This section with what a command line gives instead (`--db`, `--schema`,
    /// `--lock-timeout`): each one given replaces its setting, the others stay.
    pub fn overridden(
        &self,
        db: Option<String>,
        schema: Option<String>,
        lock_timeout_secs: Option<u64>,
    ) -> TablesConfig {
        TablesConfig {
            db: db.or_else(|| self.db.clone()),
            schema: schema.unwrap_or_else(|| self.schema.clone()),
            lock_timeout_secs: lock_timeout_secs.unwrap_or(self.lock_timeout_secs),
            history_days: self.history_days,
            jobs: self.jobs.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_section_is_the_default() {
        let parsed: std::collections::BTreeMap<String, TablesConfig> =
            toml::from_str(DEFAULT_SECTION).unwrap();
        assert_eq!(parsed["tables"], TablesConfig::default());
        assert_eq!(parsed.len(), 1);
    }

    #[test]
    fn a_command_line_overrides_only_what_it_gives() {
        let file = TablesConfig {
            db: Some("dbname=file".into()),
            schema: "file_schema".into(),
            lock_timeout_secs: 7,
            history_days: 9,
            jobs: Vec::new(),
        };
        assert_eq!(file.overridden(None, None, None), file);
        let given = file.overridden(Some("dbname=cli".into()), None, Some(3));
        assert_eq!(given.db.as_deref(), Some("dbname=cli"));
        assert_eq!(given.schema, "file_schema");
        assert_eq!(given.lock_timeout_secs, 3);
        let schema = TablesConfig::default().overridden(None, Some("s".into()), None);
        assert_eq!((schema.db, schema.schema.as_str()), (None, "s"));
    }
}
