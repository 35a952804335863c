//! `[retention]`: which backups `strata cleanup` keeps, and the overrides of one run.

use super::*;
use chrono::Duration;
use chrono_tz::Tz;

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

/// Which backups `strata cleanup` keeps (see `strata_coordinator::retention`). Unset rules keep
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

/// Checks what `[retention]` holds that serde cannot (`keep_within`).
pub(crate) fn check(config: &RetentionConfig) -> Result<(), super::ConfigError> {
    if let Some(within) = &config.keep_within {
        parse_within(within).map_err(|e| super::ConfigError::Invalid(e.to_string()))?;
    }
    Ok(())
}

/// Parses `14d`, `2w3d`, `36h`: weeks, days and hours.
pub fn parse_within(text: &str) -> Result<Duration, PolicyError> {
    let bad = || PolicyError::Within(text.to_string());
    let mut total = Duration::zero();
    let mut digits = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: i64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        total += match c {
            'w' => Duration::weeks(n),
            'd' => Duration::days(n),
            'h' => Duration::hours(n),
            _ => return Err(bad()),
        };
    }
    if !digits.is_empty() || total <= Duration::zero() {
        return Err(bad());
    }
    Ok(total)
}

impl RetentionConfig {
    /// Refuses a policy that keeps nothing by rule, a bad time zone or duration.
    // String: a validator; callers wrap the line at once (CoordinatorError::Invalid).
    pub fn check(&self) -> Result<(), String> {
        self.policy_error().map_or(Ok(()), |e| Err(e.to_string()))
    }

    /// What is wrong with the policy, if anything (see [`RetentionConfig::check`]).
    pub fn policy_error(&self) -> Option<PolicyError> {
        self.checked().err()
    }

    /// The policy checked: what is wrong with it, if anything, as an error.
    pub fn checked(&self) -> Result<(), PolicyError> {
        let rules = [
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        ];
        if rules.iter().all(Option::is_none) && self.keep_within.is_none() {
            return Err(PolicyError::Empty);
        }
        self.timezone
            .parse::<Tz>()
            .map_err(|_| PolicyError::TimeZone(self.timezone.clone()))?;
        if let Some(within) = &self.keep_within {
            parse_within(within)?;
        }
        Ok(())
    }
}

/// Why a retention policy cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// No rule keeps anything.
    #[error("the retention policy is empty: set at least one of keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly, keep_within ([retention] in the config, or --keep-* options)")]
    Empty,
    /// `retention.timezone` is not a time zone.
    #[error("retention.timezone {0:?} is not an IANA time zone (e.g. \"Europe/Berlin\", \"UTC\")")]
    TimeZone(String),
    /// `keep_within` is not a duration.
    #[error("keep_within {0:?}: write a duration like 14d, 2w3d or 36h")]
    Within(String),
}
