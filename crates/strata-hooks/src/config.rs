//! A `[[hooks]]` entry: where it runs, what it runs or pauses, and its checks.

use crate::action::*;
use crate::error::HookError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Where a `run` hook runs in an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookPoint {
    /// Before anything is read or written; a failure fails the operation.
    Before,
    /// Once the data of its scope is stored (backup) or laid down (restore).
    AfterSnapshot,
    /// At the end, when its scope succeeded.
    Success,
    /// At the end, when its scope failed or is partial.
    Failure,
    /// At the end, whatever happened.
    Always,
}
impl HookPoint {
    /// The name hooks see in `STRATA_PHASE`.
    pub fn as_str(&self) -> &'static str {
        match self {
            HookPoint::Before => "before",
            HookPoint::AfterSnapshot => "after_snapshot",
            HookPoint::Success => "success",
            HookPoint::Failure => "failure",
            HookPoint::Always => "always",
        }
    }
}
/// Which operation a hook belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookOperation {
    /// Runs around backups (the default).
    #[default]
    Backup,
    /// Runs around restores.
    Restore,
}
/// One `[[hooks]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    /// A name for logs and `status` (default: the action).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `backup` (default) or `restore`.
    #[serde(default)]
    pub operation: HookOperation,
    /// Where a `run` hook runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<HookPoint>,
    /// What a `run` hook does at `at`; `None` for a pause/resume pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<HookAction>,
    /// A pause/resume pair: both, and no `run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<HookAction>,
    /// What undoes `pause`: run on every path once the pause was attempted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<HookAction>,
    /// Only around this component (default: the whole operation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// Only around this node (with its name in the environment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// How long one call may take (default 60s).
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// How often a failing resume is tried before it is reported (default 5).
    #[serde(default = "default_attempts")]
    pub resume_attempts: u32,
    /// A pause that did not answer within `timeout` may still land: how much longer it
    /// is waited for before its call is abandoned, and how long after an abandoned pause
    /// the resume is sent once more (default 30s; see [`issue_pause`]).
    #[serde(default = "default_late_pause")]
    pub late_pause: String,
}
pub(crate) fn default_timeout() -> String {
    "60s".into()
}
pub(crate) fn default_late_pause() -> String {
    "30s".into()
}
pub(crate) fn default_attempts() -> u32 {
    5
}
impl HookConfig {
    /// The hook's name in logs.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            self.run
                .as_ref()
                .or(self.pause.as_ref())
                .map(HookAction::describe)
                .unwrap_or_default()
        })
    }

    /// Its timeout (validated with the configuration).
    pub fn timeout(&self) -> Duration {
        humantime::parse_duration(self.timeout.trim()).unwrap_or(Duration::from_secs(60))
    }

    /// How long a late pause may still land (validated with the configuration).
    pub fn late_pause(&self) -> Duration {
        humantime::parse_duration(self.late_pause.trim()).unwrap_or(Duration::from_secs(30))
    }

    /// Whether this is a pause/resume pair.
    pub fn is_pause(&self) -> bool {
        self.pause.is_some()
    }

    /// Checks the entry's form; `components` and `nodes` are the configured names.
    pub fn validate(&self, components: &[String], nodes: &[String]) -> Result<(), HookError> {
        let label = self.label();
        let bad = |m: String| Err(HookError::Invalid(format!("hook {label:?}: {m}")));
        match (&self.run, &self.pause, &self.resume) {
            (Some(run), None, None) => {
                if self.at.is_none() {
                    return bad("a `run` hook needs `at` (before, after_snapshot, success, failure or always)".into());
                }
                run.validate().or_else(|e| bad(e.to_string()))?;
            }
            (None, Some(pause), Some(resume)) => {
                if self.at.is_some() {
                    return bad("a pause/resume pair runs around the snapshots: leave out `at`".into());
                }
                pause.validate().or_else(|e| bad(e.to_string()))?;
                resume.validate().or_else(|e| bad(e.to_string()))?;
            }
            (None, Some(_), None) | (None, None, Some(_)) => {
                return bad("`pause` and `resume` go together: a pause that is never resumed is what hooks exist to prevent".into())
            }
            _ => return bad("give either `run` (with `at`) or `pause` and `resume`".into()),
        }
        if let Err(e) = humantime::parse_duration(self.timeout.trim()) {
            return bad(format!("timeout {:?}: {e}", self.timeout));
        }
        if let Err(e) = humantime::parse_duration(self.late_pause.trim()) {
            return bad(format!("late_pause {:?}: {e}", self.late_pause));
        }
        if self.resume_attempts == 0 {
            return bad("resume_attempts must be at least 1".into());
        }
        if let Some(c) = &self.component {
            if !components.contains(c) {
                return bad(format!(
                    "component {c:?} is not one of the components ({})",
                    components.join(", ")
                ));
            }
        }
        if let Some(n) = &self.node {
            if !nodes.contains(n) {
                return bad(format!("node {n:?} is not one of the configured [[nodes]]"));
            }
        }
        Ok(())
    }
}
