//! `command` and `http` components: an external system backed up through its own backup
//! API. strata does not read its data; it asks the system for a snapshot, waits until the
//! system says the snapshot is done, and records the snapshot's id and state in the
//! component's part of the summary. A restore hands that id back to the system's restore
//! and waits for it likewise.

use super::{ExternalOutcome, Plugin};
use crate::config::{Config, NodeConfig};
use crate::hooks::{HookAction, HookEnv};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_agent::backup::NodeSource;
use strata_agent::service::NodePlugin;

use crate::config::default_failed;
pub use crate::config::{CommandComponent, HttpComponent};

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
            HookAction::Http(call.clone()).validate()?;
        }
        duration(&self.poll, "poll")?;
        duration(&self.timeout, "timeout")?;
        Ok(())
    }
}

impl CommandComponent {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), String> {
        HookAction::Command(self.backup.clone()).validate()?;
        HookAction::Command(self.restore.clone()).validate()?;
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

/// `id` for a URL path: every byte but unreserved ones percent-encoded, so an id the
/// system made up (`a/../b`, `x?y`) cannot change which resource is called.
fn url_id(id: &str) -> String {
    // `.` and `..` alone would be path steps (`/backups/../restore`): encoded too.
    if id.bytes().all(|b| b == b'.') {
        return id.bytes().map(|b| format!("%{b:02X}")).collect();
    }
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An id a system answered: not empty, at most 256 bytes, no control characters.
fn checked_id(id: Option<String>) -> Option<String> {
    id.filter(|id| !id.is_empty() && id.len() <= 256 && !id.chars().any(char::is_control))
}

/// The `command` and `http` plugins: an external system's own backup API.
#[derive(Debug, Clone)]
pub enum External {
    Http(HttpComponent),
    Command(CommandComponent),
}

/// Polls `state` (an HTTP call with `{id}`) until done or failed, within the limit.
async fn wait(
    settings: &HttpComponent,
    state: &str,
    id: &str,
    env: &HookEnv,
    started: Instant,
) -> Result<String, String> {
    let poll = duration(&settings.poll, "poll")?;
    let limit = duration(&settings.timeout, "timeout")?;
    let call = HookAction::Http(with_id(state, &url_id(id)));
    loop {
        let left = limit.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(format!(
                "snapshot {id} not done within {}",
                humantime::format_duration(limit)
            ));
        }
        let answer = call
            .run(env, left.min(Duration::from_secs(60)))
            .await
            .map_err(|e| e.to_string())?;
        let json: serde_json::Value = serde_json::from_str(&answer)
            .map_err(|e| format!("{}: the answer is not JSON: {e}", call.describe()))?;
        let now = field(&json, &settings.state_field).ok_or_else(|| {
            format!(
                "{}: the answer has no {:?}",
                call.describe(),
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

async fn http_backup(settings: &HttpComponent, env: &HookEnv) -> ExternalOutcome {
    let started = Instant::now();
    let limit = duration(&settings.timeout, "timeout")?;
    let call = HookAction::Http(settings.backup.clone());
    let answer = call.run(env, limit).await.map_err(|e| e.to_string())?;
    let json: serde_json::Value = serde_json::from_str(&answer)
        .map_err(|e| format!("{}: the answer is not JSON: {e}", call.describe()))?;
    let id = checked_id(field(&json, &settings.id_field)).ok_or_else(|| {
        format!(
            "{}: the answer has no {:?}: {answer}",
            call.describe(),
            settings.id_field
        )
    })?;
    let state = match &settings.state {
        Some(state) => wait(settings, state, &id, env, started)
            .await
            .map_err(|e| format!("snapshot {id}: {e}"))?,
        // No state to poll: the answer's own state, if any, still counts.
        None => match field(&json, &settings.state_field) {
            Some(now) if settings.failed.iter().any(|f| f.eq_ignore_ascii_case(&now)) => {
                return Err(format!("the system reports {id} as {now:?}: {answer}"))
            }
            Some(now) => now,
            None => "done".into(),
        },
    };
    Ok(BTreeMap::from([
        ("snapshot_id".to_string(), id),
        ("state".to_string(), state),
    ]))
}

async fn http_restore(settings: &HttpComponent, id: &str, env: &HookEnv) -> Result<String, String> {
    let started = Instant::now();
    let limit = duration(&settings.timeout, "timeout")?;
    HookAction::Http(with_id(&settings.restore, &url_id(id)))
        .run(env, limit)
        .await
        .map_err(|e| e.to_string())?;
    match &settings.restore_state {
        Some(state) => {
            let done = wait(settings, state, id, env, started).await?;
            Ok(format!("snapshot {id} restored ({done})"))
        }
        None => Ok(format!("snapshot {id} restored")),
    }
}

async fn command_backup(settings: &CommandComponent, env: &HookEnv) -> ExternalOutcome {
    let limit = duration(&settings.timeout, "timeout")?;
    let output = HookAction::Command(settings.backup.clone())
        .run(env, limit)
        .await
        .map_err(|e| e.to_string())?;
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
    let id =
        checked_id(id).ok_or_else(|| format!("{} printed no snapshot id", settings.backup[0]))?;
    if let Some(now) = state
        .as_deref()
        .filter(|now| default_failed().iter().any(|f| f.eq_ignore_ascii_case(now)))
    {
        return Err(format!(
            "{} reports snapshot {id} as {now:?}",
            settings.backup[0]
        ));
    }
    Ok(BTreeMap::from([
        ("snapshot_id".to_string(), id),
        ("state".to_string(), state.unwrap_or_else(|| "done".into())),
    ]))
}

async fn command_restore(
    settings: &CommandComponent,
    id: &str,
    env: &HookEnv,
) -> Result<String, String> {
    let limit = duration(&settings.timeout, "timeout")?;
    let argv: Vec<String> = settings.restore.iter().map(|a| with_id(a, id)).collect();
    let output = HookAction::Command(argv)
        .run(env, limit)
        .await
        .map_err(|e| e.to_string())?;
    Ok(match output.lines().last() {
        None => format!("snapshot {id} restored"),
        Some(line) => format!("snapshot {id} restored: {line}"),
    })
}

#[async_trait::async_trait]
impl Plugin for External {
    fn name(&self) -> &'static str {
        match self {
            External::Http(_) => "http",
            External::Command(_) => "command",
        }
    }
    fn check_node(&self, node: &NodeConfig) -> Result<(), String> {
        Err(format!(
            "a {} component has no nodes ({:?})",
            self.name(),
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
        match self {
            External::Http(settings) => http_backup(settings, env).await,
            External::Command(settings) => command_backup(settings, env).await,
        }
    }

    async fn external_restore(
        &self,
        recorded: &BTreeMap<String, String>,
        env: &HookEnv,
    ) -> Result<String, String> {
        let id = recorded
            .get("snapshot_id")
            .ok_or("the backup recorded no snapshot id")?;
        let env = HookEnv {
            snapshot_id: Some(id.clone()),
            ..env.clone()
        };
        match self {
            External::Http(settings) => http_restore(settings, id, &env).await,
            External::Command(settings) => command_restore(settings, id, &env).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> HookEnv {
        HookEnv {
            operation: "backup".into(),
            id: "op".into(),
            backup: "b".into(),
            component: Some("queue".into()),
            ..HookEnv::default()
        }
    }

    /// The `command` plugin runs real programs: the snapshot id is the last line printed
    /// (or a JSON object's `id`), a restore gets it as an argument and in the environment.
    #[tokio::test]
    async fn a_command_component_records_the_id_it_printed_and_restores_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("restored");
        let plugin = External::Command(CommandComponent {
            backup: vec![
                "/bin/sh".into(),
                "-c".into(),
                "echo preparing; echo snap-42".into(),
            ],
            restore: vec![
                "/bin/sh".into(),
                "-c".into(),
                format!(
                    "echo \"$0 $STRATA_SNAPSHOT_ID $STRATA_COMPONENT\" > {}; echo ok",
                    log.display()
                ),
                "{id}".into(),
            ],
            timeout: "10s".into(),
        });
        let recorded = plugin.external_backup(&env()).await.unwrap();
        assert_eq!(recorded["snapshot_id"], "snap-42");
        assert_eq!(recorded["state"], "done");
        let said = plugin.external_restore(&recorded, &env()).await.unwrap();
        assert_eq!(said, "snapshot snap-42 restored: ok");
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "snap-42 snap-42 queue\n"
        );

        let json = External::Command(CommandComponent {
            backup: vec![
                "/bin/echo".into(),
                r#"{"id":"s-7","state":"sealed"}"#.into(),
            ],
            restore: vec!["/bin/true".into()],
            timeout: "10s".into(),
        });
        let recorded = json.external_backup(&env()).await.unwrap();
        assert_eq!(
            (recorded["snapshot_id"].as_str(), recorded["state"].as_str()),
            ("s-7", "sealed")
        );
    }

    #[tokio::test]
    async fn a_command_that_fails_or_prints_no_id_fails_the_component() {
        let quiet = External::Command(CommandComponent {
            backup: vec!["/bin/true".into()],
            restore: vec!["/bin/true".into()],
            timeout: "10s".into(),
        });
        let err = quiet.external_backup(&env()).await.unwrap_err();
        assert!(err.contains("printed no snapshot id"), "{err}");
        let failing = External::Command(CommandComponent {
            backup: vec![
                "/bin/sh".into(),
                "-c".into(),
                "echo disk full >&2; exit 1".into(),
            ],
            restore: vec!["/bin/true".into()],
            timeout: "10s".into(),
        });
        let err = failing.external_backup(&env()).await.unwrap_err();
        assert!(err.contains("disk full"), "{err}");
        let slow = External::Command(CommandComponent {
            backup: vec!["/bin/sleep".into(), "10".into()],
            restore: vec!["/bin/true".into()],
            timeout: "300ms".into(),
        });
        let err = slow.external_backup(&env()).await.unwrap_err();
        assert!(err.contains("no answer within"), "{err}");
        // An id with a state that says failed is a failed snapshot, not a complete one.
        let reports_failed = External::Command(CommandComponent {
            backup: vec![
                "/bin/echo".into(),
                r#"{"id":"snap-9","state":"Failed"}"#.into(),
            ],
            restore: vec!["/bin/true".into()],
            timeout: "10s".into(),
        });
        let err = reports_failed.external_backup(&env()).await.unwrap_err();
        assert!(err.contains("snap-9") && err.contains("Failed"), "{err}");
        let err = quiet
            .external_restore(&BTreeMap::new(), &env())
            .await
            .unwrap_err();
        assert!(err.contains("no snapshot id"), "{err}");
    }

    #[test]
    fn ids_cannot_change_the_url_they_go_into() {
        assert_eq!(url_id("snap-1.a_b~"), "snap-1.a_b~");
        assert_eq!(url_id("../admin?x=1"), "..%2Fadmin%3Fx%3D1");
        assert_eq!(url_id(".."), "%2E%2E", "a path step of its own");
        assert_eq!(url_id("."), "%2E");
        assert!(checked_id(Some("a\nb".into())).is_none());
        assert!(checked_id(Some("x".repeat(257))).is_none());
    }
}
