//! `command` and `http` components: an external system backed up through its own backup
//! API. strata does not read its data; it asks the system for a snapshot, waits until the
//! system says the snapshot is done, and records the snapshot's id and state in the
//! component's part of the summary. A restore hands that id back to the system's restore
//! and waits for it likewise.

use super::{ExternalOutcome, Plugin};
use crate::config::{Config, NodeConfig};
use crate::hooks::{Action, HookEnv};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_agent::backup::NodeSource;
use strata_agent::service::NodePlugin;

/// `[components.http]`: an HTTP backup API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpComponent {
    /// Starts a snapshot: `"POST http://engine:8080/backups"`; the JSON answer carries its
    /// id at `id_field`.
    pub backup: String,
    /// Where the id is in the answer: a field name or a `/`-separated path (`snapshot/id`).
    #[serde(default = "default_id_field")]
    pub id_field: String,
    /// Polled until the snapshot is done or failed: `"GET http://engine:8080/backups/{id}"`.
    /// Without it, the snapshot is done when `backup` answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Where the state is in the answers.
    #[serde(default = "default_state_field")]
    pub state_field: String,
    /// States that mean done, and failed (any other state: still running).
    #[serde(default = "default_done")]
    pub done: Vec<String>,
    #[serde(default = "default_failed")]
    pub failed: Vec<String>,
    /// Restores snapshot `{id}`: `"POST http://engine:8080/backups/{id}/restore"`.
    pub restore: String,
    /// Polled until the restore is done or failed (`{id}`: the snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_state: Option<String>,
    /// Between two polls (default 1s).
    #[serde(default = "default_poll")]
    pub poll: String,
    /// The most one snapshot or restore may take (default 1h).
    #[serde(default = "default_limit")]
    pub timeout: String,
}

/// `[components.command]`: commands that drive the system's backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandComponent {
    /// Takes a snapshot and prints its id: the last line of its output, or a JSON object
    /// with `id` (and `state`). Exit 0: the snapshot is done.
    pub backup: Vec<String>,
    /// Restores a snapshot: `{id}` in an argument is replaced by the snapshot's id, which
    /// is also in `STRATA_SNAPSHOT_ID`.
    pub restore: Vec<String>,
    /// The most one call may take (default 1h).
    #[serde(default = "default_limit")]
    pub timeout: String,
}

fn default_id_field() -> String {
    "id".into()
}
fn default_state_field() -> String {
    "state".into()
}
fn default_done() -> Vec<String> {
    ["completed", "complete", "done", "succeeded", "success"]
        .map(String::from)
        .to_vec()
}
fn default_failed() -> Vec<String> {
    ["failed", "error", "aborted", "cancelled"]
        .map(String::from)
        .to_vec()
}
fn default_poll() -> String {
    "1s".into()
}
fn default_limit() -> String {
    "1h".into()
}

fn duration(text: &str, what: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("{what} {text:?}: {e}"))
}

impl HttpComponent {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), String> {
        for call in [
            Some(&self.backup),
            self.state.as_ref(),
            Some(&self.restore),
            self.restore_state.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            Action::Http(call.clone()).validate()?;
        }
        duration(&self.poll, "poll")?;
        duration(&self.timeout, "timeout")?;
        Ok(())
    }
}

impl CommandComponent {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), String> {
        Action::Command(self.backup.clone()).validate()?;
        Action::Command(self.restore.clone()).validate()?;
        duration(&self.timeout, "timeout")?;
        Ok(())
    }
}

/// A value at `field` (`a/b`) of a JSON answer, as text.
fn field(json: &serde_json::Value, field: &str) -> Option<String> {
    let pointer = format!("/{}", field.trim_start_matches('/'));
    match json.pointer(&pointer)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn with_id(template: &str, id: &str) -> String {
    template.replace("{id}", id)
}

/// The `http` plugin.
#[derive(Debug, Clone)]
pub struct Http(pub HttpComponent);

impl Http {
    /// Polls `state` until done or failed, within the limit.
    async fn wait(
        &self,
        state: &str,
        id: &str,
        env: &HookEnv,
        started: Instant,
    ) -> Result<String, String> {
        let settings = &self.0;
        let poll = duration(&settings.poll, "poll")?;
        let limit = duration(&settings.timeout, "timeout")?;
        loop {
            let left = limit.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(format!(
                    "snapshot {id} not done within {}",
                    humantime::format_duration(limit)
                ));
            }
            let answer = Action::Http(with_id(state, id))
                .run(env, left.min(Duration::from_secs(60)))
                .await?;
            let json: serde_json::Value = serde_json::from_str(&answer)
                .map_err(|e| format!("{}: the answer is not JSON: {e}", with_id(state, id)))?;
            let now = field(&json, &settings.state_field).ok_or_else(|| {
                format!(
                    "{}: the answer has no {:?}",
                    with_id(state, id),
                    settings.state_field
                )
            })?;
            if settings.done.iter().any(|d| d.eq_ignore_ascii_case(&now)) {
                return Ok(now);
            }
            if settings.failed.iter().any(|d| d.eq_ignore_ascii_case(&now)) {
                return Err(format!("the system reports {id} as {now:?}: {answer}"));
            }
            tokio::time::sleep(poll.min(left)).await;
        }
    }
}

#[async_trait::async_trait]
impl Plugin for Http {
    fn name(&self) -> &'static str {
        "http"
    }
    fn check_node(&self, node: &NodeConfig) -> Result<(), String> {
        Err(format!("an http component has no nodes ({:?})", node.name))
    }
    fn node_source(&self, node: &NodeConfig) -> NodeSource {
        super::Files::plain_source(node)
    }
    fn node_plugin(&self, _config: &Config, _node: &NodeConfig) -> Arc<dyn NodePlugin> {
        strata_agent::service::plugin::files()
    }
    fn is_external(&self) -> bool {
        true
    }

    async fn external_backup(&self, env: &HookEnv) -> ExternalOutcome {
        let settings = &self.0;
        let started = Instant::now();
        let limit = duration(&settings.timeout, "timeout")?;
        let answer = Action::Http(settings.backup.clone())
            .run(env, limit)
            .await?;
        let json: serde_json::Value = serde_json::from_str(&answer)
            .map_err(|e| format!("{}: the answer is not JSON: {e}", settings.backup))?;
        let id = field(&json, &settings.id_field)
            .filter(|id| !id.is_empty() && id.len() <= 256)
            .ok_or_else(|| {
                format!(
                    "{}: the answer has no {:?}: {answer}",
                    settings.backup, settings.id_field
                )
            })?;
        let mut record = BTreeMap::from([("snapshot_id".to_string(), id.clone())]);
        let state = match &settings.state {
            Some(state) => self
                .wait(state, &id, env, started)
                .await
                .map_err(|e| format!("snapshot {id}: {e}"))?,
            None => field(&json, &settings.state_field).unwrap_or_else(|| "done".into()),
        };
        record.insert("state".into(), state);
        Ok(record)
    }

    async fn external_restore(
        &self,
        recorded: &BTreeMap<String, String>,
        env: &HookEnv,
    ) -> Result<String, String> {
        let settings = &self.0;
        let id = recorded
            .get("snapshot_id")
            .ok_or("the backup recorded no snapshot id")?;
        let started = Instant::now();
        let limit = duration(&settings.timeout, "timeout")?;
        Action::Http(with_id(&settings.restore, id))
            .run(env, limit)
            .await?;
        match &settings.restore_state {
            Some(state) => {
                let done = self.wait(state, id, env, started).await?;
                Ok(format!("snapshot {id} restored ({done})"))
            }
            None => Ok(format!("snapshot {id} restored")),
        }
    }
}

/// The `command` plugin.
#[derive(Debug, Clone)]
pub struct Command(pub CommandComponent);

#[async_trait::async_trait]
impl Plugin for Command {
    fn name(&self) -> &'static str {
        "command"
    }
    fn check_node(&self, node: &NodeConfig) -> Result<(), String> {
        Err(format!(
            "a command component has no nodes ({:?})",
            node.name
        ))
    }
    fn node_source(&self, node: &NodeConfig) -> NodeSource {
        super::Files::plain_source(node)
    }
    fn node_plugin(&self, _config: &Config, _node: &NodeConfig) -> Arc<dyn NodePlugin> {
        strata_agent::service::plugin::files()
    }
    fn is_external(&self) -> bool {
        true
    }

    async fn external_backup(&self, env: &HookEnv) -> ExternalOutcome {
        let limit = duration(&self.0.timeout, "timeout")?;
        let output = Action::Command(self.0.backup.clone())
            .run(env, limit)
            .await?;
        let last = output
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        let (id, state) = match serde_json::from_str::<serde_json::Value>(last) {
            Ok(json @ serde_json::Value::Object(_)) => (field(&json, "id"), field(&json, "state")),
            _ => (Some(last.to_string()), None),
        };
        let id = id
            .filter(|id| !id.is_empty() && id.len() <= 256)
            .ok_or_else(|| format!("{} printed no snapshot id", self.0.backup[0]))?;
        Ok(BTreeMap::from([
            ("snapshot_id".to_string(), id),
            ("state".to_string(), state.unwrap_or_else(|| "done".into())),
        ]))
    }

    async fn external_restore(
        &self,
        recorded: &BTreeMap<String, String>,
        env: &HookEnv,
    ) -> Result<String, String> {
        let id = recorded
            .get("snapshot_id")
            .ok_or("the backup recorded no snapshot id")?;
        let limit = duration(&self.0.timeout, "timeout")?;
        let argv: Vec<String> = self.0.restore.iter().map(|a| with_id(a, id)).collect();
        let env = HookEnv {
            snapshot_id: Some(id.clone()),
            ..env.clone()
        };
        let output = Action::Command(argv).run(&env, limit).await?;
        Ok(match output.is_empty() {
            true => format!("snapshot {id} restored"),
            false => format!(
                "snapshot {id} restored: {}",
                output.lines().last().unwrap_or("")
            ),
        })
    }
}
