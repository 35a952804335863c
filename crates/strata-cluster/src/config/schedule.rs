//! `[[schedules]]`: the jobs `strata server` runs on a schedule.

use super::*;

/// A job `strata server` runs on a schedule (on the coordinator).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Unique name (default: the job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `backup`, `cleanup` (retention, then garbage collection), `verify`, `drill` (a
    /// restore drill of the latest complete backup: `strata verify --restore latest`), or
    /// `tables` (table retention: `strata tables run` on `[tables] db`), or `sql` (the
    /// `[[tables.jobs]]` entry named by `sql`: `strata tables sql NAME`).
    pub job: String,
    /// Cron expression: 5 fields (minute hour day month weekday) or 6 with seconds first.
    pub cron: String,
    /// IANA time zone the expression is read in.
    #[serde(default = "utc")]
    pub timezone: String,
    /// Each run starts up to this many seconds late, at random (spreads load).
    #[serde(default)]
    pub jitter_secs: u64,
    /// For `verify`: read every pack.
    #[serde(default)]
    pub read_data: bool,
    /// For `verify`: read this share of the packs (`5%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_data_subset: Option<String>,
    /// For `tables`: only the policies with all these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// For `sql`: the `[[tables.jobs]]` entry to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
}

fn utc() -> String {
    "UTC".into()
}

impl ScheduleConfig {
    /// The name the job is known by.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.job)
    }
}
