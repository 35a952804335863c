//! `[retention]`: which backups `strata cleanup` keeps, and the overrides of one run.

use super::*;

/// Retention rules given for one run (`strata cleanup --keep-daily 7`); each overrides the
/// same key of `[retention]`.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct PolicyOverrides {
    /// Keep the newest N complete backups.
    #[cfg_attr(feature = "cli", arg(long, value_name = "N"))]
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the last N hours that have one.
    #[cfg_attr(feature = "cli", arg(long, value_name = "N"))]
    pub keep_hourly: Option<u32>,
    /// ... of each of the last N days that have one.
    #[cfg_attr(feature = "cli", arg(long, value_name = "N"))]
    pub keep_daily: Option<u32>,
    /// ... of each of the last N ISO weeks that have one.
    #[cfg_attr(feature = "cli", arg(long, value_name = "N"))]
    pub keep_weekly: Option<u32>,
    /// ... of each of the last N months that have one.
    #[cfg_attr(feature = "cli", arg(long, value_name = "N"))]
    pub keep_monthly: Option<u32>,
    /// ... of each of the last N years that have one.
    #[cfg_attr(feature = "cli", arg(long, value_name = "N"))]
    pub keep_yearly: Option<u32>,
    /// Keep every complete backup within this duration (14d, 2w3d, 36h) of the newest.
    #[cfg_attr(feature = "cli", arg(long, value_name = "DURATION"))]
    pub keep_within: Option<String>,
    /// Keep this many failed or partial backups (default: all).
    #[cfg_attr(feature = "cli", arg(long, value_name = "N"))]
    pub keep_failed: Option<u32>,
    /// Never keep fewer complete backups than N.
    #[cfg_attr(feature = "cli", arg(long, value_name = "N"))]
    pub min_complete: Option<u32>,
    /// Time zone of the calendar buckets (IANA name).
    #[cfg_attr(feature = "cli", arg(long, value_name = "ZONE"))]
    pub timezone: Option<String>,
}

impl PolicyOverrides {
    /// Whether any rule was given (a server then applies its own `[retention]`).
    pub fn is_empty(&self) -> bool {
        *self == PolicyOverrides::default()
    }

    /// `base` with these rules over it.
    pub fn over(&self, base: &RetentionConfig) -> RetentionConfig {
        let mut policy = base.clone();
        let keep = |given: Option<u32>, configured: Option<u32>| given.or(configured);
        policy.keep_last = keep(self.keep_last, policy.keep_last);
        policy.keep_hourly = keep(self.keep_hourly, policy.keep_hourly);
        policy.keep_daily = keep(self.keep_daily, policy.keep_daily);
        policy.keep_weekly = keep(self.keep_weekly, policy.keep_weekly);
        policy.keep_monthly = keep(self.keep_monthly, policy.keep_monthly);
        policy.keep_yearly = keep(self.keep_yearly, policy.keep_yearly);
        policy.keep_failed = keep(self.keep_failed, policy.keep_failed);
        policy.keep_within = self.keep_within.clone().or(policy.keep_within);
        policy.min_complete = self.min_complete.unwrap_or(policy.min_complete);
        policy.timezone = self.timezone.clone().unwrap_or(policy.timezone);
        policy
    }
}

/// Which backups `strata cleanup` keeps (see [`crate::retention`]). Unset rules keep
/// nothing by themselves; a policy with no rule at all is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Keep the newest N complete backups.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the last N hours that have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest backup of each of the last N days that have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    /// Keep the newest backup of each of the last N ISO weeks that have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest backup of each of the last N months that have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest backup of each of the last N years that have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u32>,
    /// A duration such as `14d` or `2w3d`, from the newest complete backup.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_within: Option<String>,
    /// Never fewer complete backups than this.
    pub min_complete: u32,
    /// How many failed or partial backups to keep (all when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_failed: Option<u32>,
    /// IANA time zone of the calendar buckets.
    pub timezone: String,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            keep_last: None,
            keep_hourly: None,
            keep_daily: None,
            keep_weekly: None,
            keep_monthly: None,
            keep_yearly: None,
            keep_within: None,
            min_complete: 1,
            keep_failed: None,
            timezone: "UTC".into(),
        }
    }
}
