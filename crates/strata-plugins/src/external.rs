//! `command` and `http` components: an external system backed up through its own backup
//! API. strata does not read its data; it asks the system for a snapshot, waits until the
//! system says the snapshot is done, and records the snapshot's id and state in the
//! component's part of the summary. A restore hands that id back to the system's restore
//! and waits for it likewise; a delete step removes the snapshot when strata deletes the
//! backup (and when the snapshot failed), so the system keeps what strata keeps.

use super::engine_api::{checked_id, field, is_one_of, Caller, Vars, ANSWER_LIMIT};
use super::{ExternalError, ExternalOutcome, ExternalSnapshot, Plugin, PluginError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use strata_agent::backup::NodeSource;
use strata_agent::service::NodePlugin;
use strata_cluster::config::{Config, NodeConfig};
use strata_hooks::{HookAction, HookEnv, PauseLedger};

use strata_cluster::config::default_failed;
pub use strata_cluster::config::{CommandComponent, HttpComponent};

fn duration(text: &str, what: &str) -> Result<Duration, PluginError> {
    humantime::parse_duration(text.trim())
        .map_err(|e| PluginError::Settings(format!("{what} {text:?}: {e}")))
}

/// Checks an `http` component's settings: every call and body template, filled in with
/// sample values.
pub fn check_http(settings: &HttpComponent) -> Result<(), PluginError> {
    use super::engine_api::check_call;
    check_call("backup", &settings.backup, settings.backup_body.as_deref())?;
    if let Some(restore) = &settings.restore {
        check_call("restore", restore, settings.restore_body.as_deref())?;
    } else if settings.restore_body.is_some() || settings.restore_state.is_some() {
        return Err(PluginError::Settings(
            "restore_body and restore_state need `restore`".into(),
        ));
    }
    for (what, call) in [
        ("state", &settings.state),
        ("restore_state", &settings.restore_state),
        ("delete", &settings.delete),
    ] {
        if let Some(call) = call {
            check_call(what, call, None)?;
        }
    }
    if let Some(id) = &settings.id {
        if checked_id(Some(Vars::sample().plain(id))).is_none() {
            return Err(PluginError::Settings(format!(
                "id {id:?} does not make an id"
            )));
        }
    }
    duration(&settings.poll, "poll")?;
    duration(&settings.connect_timeout, "connect_timeout")?;
    duration(&settings.timeout, "timeout")?;
    Ok(())
}

/// The caller of an `http` component's API, with its timeouts (checked already).
pub(crate) fn http_caller(settings: &HttpComponent) -> Caller {
    let get = |text: &str, default: u64| {
        humantime::parse_duration(text.trim()).unwrap_or(Duration::from_secs(default))
    };
    Caller::new(
        get(&settings.timeout, 3600),
        get(&settings.poll, 1),
        get(&settings.connect_timeout, 10),
    )
}

/// The body of a call: the template filled in, or strata's own environment.
fn call_body(template: Option<&str>, vars: &Vars, env: &HookEnv) -> Vec<u8> {
    match template {
        Some(template) => vars.body(template).into_bytes(),
        None => serde_json::to_vec(env).expect("hook environments serialize"),
    }
}

/// Checks a `command` component's settings.
pub fn check_command(settings: &CommandComponent) -> Result<(), PluginError> {
    HookAction::Command(settings.backup.clone())
        .validate()
        .map_err(|e| PluginError::Settings(e.to_string()))?;
    for (what, argv) in [("restore", &settings.restore), ("delete", &settings.delete)] {
        if !argv.is_empty() {
            HookAction::Command(argv.clone())
                .validate()
                .map_err(|e| PluginError::Settings(format!("{what}: {e}")))?;
        }
    }
    duration(&settings.timeout, "timeout")?;
    Ok(())
}

/// The `command` and `http` plugins: an external system's own backup API.
#[derive(Debug, Clone)]
pub enum External {
    /// `plugin = "http"`: the system's HTTP backup API (`[components.http]`).
    Http(Box<HttpComponent>),
    /// `plugin = "command"`: commands that drive the system (`[components.command]`).
    Command(CommandComponent),
}

/// Polls `state` until the snapshot is done or failed; returns the state that said done.
async fn wait(
    settings: &HttpComponent,
    caller: &mut Caller,
    state: &str,
    vars: &Vars,
    env: &HookEnv,
) -> Result<String, ExternalError> {
    let call = vars.call(state);
    let id = vars.id.clone().unwrap_or_default();
    loop {
        let answer = caller
            .call(&call, call_body(None, vars, env), false)
            .await?
            .unwrap_or_default();
        let now = field(&answer, &settings.state_field).ok_or_else(|| {
            ExternalError::Failed(format!(
                "{}: the answer has no {:?}",
                HookAction::Http(call.clone()).describe(),
                settings.state_field
            ))
        })?;
        if is_one_of(&now, &settings.done) {
            return Ok(now);
        }
        if is_one_of(&now, &settings.failed) {
            return Err(ExternalError::Failed(format!(
                "the system reports {id} as {now:?}: {answer}"
            )));
        }
        if caller.left() <= Duration::ZERO {
            return Err(ExternalError::Failed(format!(
                "snapshot {id} not done within the timeout (last state {now:?})"
            )));
        }
        caller.pause().await;
        if caller.left().is_zero() {
            return Err(ExternalError::Failed(format!(
                "snapshot {id} not done within {} (last state {now:?})",
                settings.timeout
            )));
        }
    }
}

async fn http_backup(settings: &HttpComponent, env: &HookEnv) -> ExternalOutcome {
    let mut caller = http_caller(settings);
    let mut vars = Vars::of(env);
    let body = call_body(settings.backup_body.as_deref(), &vars, env);
    let answer = caller
        .call(&vars.call(&settings.backup), body, false)
        .await?
        .unwrap_or_default();
    let id = match &settings.id {
        Some(template) => checked_id(Some(vars.plain(template))),
        None => checked_id(field(&answer, &settings.id_field)),
    }
    .ok_or_else(|| {
        ExternalError::Failed(format!(
            "{}: the answer has no {:?}: {answer}",
            HookAction::Http(settings.backup.clone()).describe(),
            settings.id_field
        ))
    })?;
    vars.id = Some(id.clone());
    let state = match &settings.state {
        Some(state) => wait(settings, &mut caller, state, &vars, env).await,
        // No state to poll: the answer's own state, if any, still counts.
        None => match field(&answer, &settings.state_field) {
            Some(now) if is_one_of(&now, &settings.failed) => Err(ExternalError::Failed(format!(
                "the system reports {id} as {now:?}: {answer}"
            ))),
            Some(now) => Ok(now),
            None => Ok("done".into()),
        },
    };
    let state = match state {
        Ok(state) => state,
        Err(err) => {
            // A snapshot that failed is not kept by the system either.
            if settings.delete.is_some() {
                let env = HookEnv {
                    snapshot_id: Some(id.clone()),
                    phase: "delete".into(),
                    ..env.clone()
                };
                if let Err(why) = http_delete(settings, &env).await {
                    eprintln!("strata: warning: component {}: cannot delete the failed snapshot {id}: {why}", vars.component);
                }
            }
            return Err(match err {
                ExternalError::Failed(why) => {
                    ExternalError::Failed(format!("snapshot {id}: {why}"))
                }
                other => other,
            });
        }
    };
    let mut recorded = BTreeMap::from([
        ("snapshot_id".to_string(), id),
        ("state".to_string(), state),
    ]);
    if let Some(n) = env.backup_id {
        recorded.insert("backup_id".into(), n.to_string());
    }
    Ok(ExternalSnapshot {
        recorded,
        still_paused: None,
    })
}

async fn http_restore(
    settings: &HttpComponent,
    id: &str,
    env: &HookEnv,
) -> Result<String, ExternalError> {
    let Some(restore) = &settings.restore else {
        return Ok(format!(
            "snapshot {id}: this component has no restore call: restore it in the system by hand"
        ));
    };
    let mut caller = http_caller(settings);
    let vars = Vars::of(env);
    let body = call_body(settings.restore_body.as_deref(), &vars, env);
    caller.call(&vars.call(restore), body, false).await?;
    match &settings.restore_state {
        Some(state) => {
            let done = wait(settings, &mut caller, state, &vars, env).await?;
            Ok(format!("snapshot {id} restored ({done})"))
        }
        None => Ok(format!("snapshot {id} restored")),
    }
}

async fn http_delete(settings: &HttpComponent, env: &HookEnv) -> Result<String, ExternalError> {
    let Some(delete) = &settings.delete else {
        return Ok("no delete call: the system keeps its snapshot".into());
    };
    let vars = Vars::of(env);
    let id = vars.id.clone().unwrap_or_default();
    let answer = http_caller(settings)
        .call(&vars.call(delete), call_body(None, &vars, env), true)
        .await?;
    Ok(match answer {
        Some(_) => format!("snapshot {id} deleted"),
        None => format!("snapshot {id} was gone already"),
    })
}

/// Runs one of a command component's programs with `{id}` filled in; its stdout, its
/// stderr logged (a line each, prefixed with the component).
async fn run_command(
    settings: &CommandComponent,
    argv: &[String],
    env: &HookEnv,
) -> Result<String, ExternalError> {
    let limit =
        duration(&settings.timeout, "timeout").map_err(|e| ExternalError::Failed(e.to_string()))?;
    let vars = Vars::of(env);
    let argv: Vec<String> = argv.iter().map(|a| vars.plain(a)).collect();
    let run = strata_hooks::run_program(&argv, env, ANSWER_LIMIT);
    let output = match tokio::time::timeout(limit, run).await {
        Ok(result) => result.map_err(|e| ExternalError::Failed(e.to_string()))?,
        Err(_) => {
            return Err(ExternalError::Failed(
                strata_hooks::HookError::Timeout(limit).to_string(),
            ))
        }
    };
    for line in output
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(20)
    {
        eprintln!("strata: component {}: {}: {line}", vars.component, argv[0]);
    }
    Ok(output.stdout)
}

async fn command_backup(settings: &CommandComponent, env: &HookEnv) -> ExternalOutcome {
    let stdout = run_command(settings, &settings.backup, env).await?;
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let (id, state) = match serde_json::from_str::<serde_json::Value>(last) {
        Ok(json @ serde_json::Value::Object(_)) => (field(&json, "id"), field(&json, "state")),
        _ => (Some(last.to_string()), None),
    };
    let id = checked_id(id).ok_or_else(|| {
        ExternalError::Failed(format!(
            "{} printed no snapshot id on stdout",
            settings.backup[0]
        ))
    })?;
    if let Some(now) = state
        .as_deref()
        .filter(|now| is_one_of(now, &default_failed()))
    {
        if !settings.delete.is_empty() {
            let env = HookEnv {
                snapshot_id: Some(id.clone()),
                phase: "delete".into(),
                ..env.clone()
            };
            if let Err(why) = run_command(settings, &settings.delete, &env).await {
                eprintln!("strata: warning: cannot delete the failed snapshot {id}: {why}");
            }
        }
        return Err(ExternalError::Failed(format!(
            "{} reports snapshot {id} as {now:?}",
            settings.backup[0]
        )));
    }
    let mut recorded = BTreeMap::from([
        ("snapshot_id".to_string(), id),
        ("state".to_string(), state.unwrap_or_else(|| "done".into())),
    ]);
    if let Some(n) = env.backup_id {
        recorded.insert("backup_id".into(), n.to_string());
    }
    Ok(ExternalSnapshot {
        recorded,
        still_paused: None,
    })
}

async fn command_restore(
    settings: &CommandComponent,
    id: &str,
    env: &HookEnv,
) -> Result<String, ExternalError> {
    if settings.restore.is_empty() {
        return Ok(format!(
            "snapshot {id}: this component has no restore command: restore it in the system by hand"
        ));
    }
    let stdout = run_command(settings, &settings.restore, env).await?;
    Ok(match stdout.lines().last() {
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
    fn check_node(&self, node: &NodeConfig) -> Result<(), PluginError> {
        Err(PluginError::Settings(format!(
            "a {} component has no nodes ({:?})",
            self.name(),
            node.name
        )))
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

    async fn external_backup(
        &self,
        env: &HookEnv,
        _pauses: Option<&PauseLedger>,
    ) -> ExternalOutcome {
        match self {
            External::Http(settings) => http_backup(settings, env).await,
            External::Command(settings) => command_backup(settings, env).await,
        }
    }

    async fn external_restore(
        &self,
        recorded: &BTreeMap<String, String>,
        env: &HookEnv,
    ) -> Result<String, PluginError> {
        let id = recorded
            .get("snapshot_id")
            .ok_or(PluginError::NotRecorded("snapshot id"))?;
        let env = with_recorded(env, recorded);
        match self {
            External::Http(settings) => http_restore(settings, id, &env).await,
            External::Command(settings) => command_restore(settings, id, &env).await,
        }
        .map_err(PluginError::from)
    }

    // String: the line `strata check` shows; strata-server's check.rs builds the same type for its timeout.
    async fn probe(&self) -> Option<Result<String, String>> {
        Some(match self {
            External::Http(settings) => {
                let line = Vars::sample().call(&settings.backup);
                match strata_hooks::parse_http_line(&line) {
                    Ok((_, url)) => super::engine_api::answers(url, Duration::from_secs(3))
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
            External::Command(settings) => {
                use std::os::unix::fs::PermissionsExt;
                let program = &settings.backup[0];
                match std::fs::metadata(program) {
                    Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {
                        Ok(format!("{program} is there"))
                    }
                    Ok(_) => Err(format!("{program} is not an executable file")),
                    Err(e) => Err(format!("{program}: {e}")),
                }
            }
        })
    }

    async fn external_delete(
        &self,
        recorded: &BTreeMap<String, String>,
        env: &HookEnv,
    ) -> Result<String, PluginError> {
        let Some(id) = recorded.get("snapshot_id") else {
            return Ok("no snapshot recorded".into());
        };
        let env = with_recorded(env, recorded);
        match self {
            External::Http(settings) => http_delete(settings, &env).await,
            External::Command(settings) if settings.delete.is_empty() => {
                Ok("no delete command: the system keeps its snapshot".into())
            }
            External::Command(settings) => run_command(settings, &settings.delete, &env)
                .await
                .map(|_| format!("snapshot {id} deleted")),
        }
        .map_err(PluginError::from)
    }
}

/// `env` with the snapshot id and backup number a backup recorded.
pub(super) fn with_recorded(env: &HookEnv, recorded: &BTreeMap<String, String>) -> HookEnv {
    HookEnv {
        snapshot_id: recorded.get("snapshot_id").cloned(),
        backup_id: recorded
            .get("backup_id")
            .and_then(|n| n.parse().ok())
            .or(env.backup_id),
        ..env.clone()
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
            backup_id: Some(7),
            ..HookEnv::default()
        }
    }

    fn command(backup: &[&str], restore: &[&str], delete: &[&str], timeout: &str) -> External {
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect();
        External::Command(CommandComponent {
            backup: argv(backup),
            restore: argv(restore),
            delete: argv(delete),
            timeout: timeout.into(),
        })
    }

    /// The `command` plugin runs real programs: the snapshot id is the last line printed
    /// on stdout (or a JSON object's `id`), whatever the program logs on stderr; a
    /// restore and a delete get it as an argument and in the environment.
    #[tokio::test]
    async fn a_command_component_records_the_id_it_printed_and_restores_and_deletes_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("calls");
        let record = format!(
            "echo \"$0 $STRATA_SNAPSHOT_ID $STRATA_COMPONENT $STRATA_BACKUP_ID\" >> {}; echo ok",
            log.display()
        );
        let plugin = command(
            &[
                "/bin/sh",
                "-c",
                "echo preparing; echo snap-42; echo 'progress: 100%' >&2",
            ],
            &["/bin/sh", "-c", &record, "restore-{id}"],
            &["/bin/sh", "-c", &record, "delete-{id}"],
            "10s",
        );
        let snapshot = plugin.external_backup(&env(), None).await.unwrap();
        let recorded = snapshot.recorded;
        assert_eq!(recorded["snapshot_id"], "snap-42", "stderr is never the id");
        assert_eq!(recorded["state"], "done");
        assert_eq!(recorded["backup_id"], "7");
        let said = plugin.external_restore(&recorded, &env()).await.unwrap();
        assert_eq!(said, "snapshot snap-42 restored: ok");
        let said = plugin.external_delete(&recorded, &env()).await.unwrap();
        assert_eq!(said, "snapshot snap-42 deleted");
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "restore-snap-42 snap-42 queue 7\ndelete-snap-42 snap-42 queue 7\n"
        );

        let json = command(
            &["/bin/echo", r#"{"id":"s-7","state":"sealed"}"#],
            &[],
            &[],
            "10s",
        );
        let recorded = json.external_backup(&env(), None).await.unwrap().recorded;
        assert_eq!(
            (recorded["snapshot_id"].as_str(), recorded["state"].as_str()),
            ("s-7", "sealed")
        );
        let said = json.external_restore(&recorded, &env()).await.unwrap();
        assert!(said.contains("by hand"), "{said}");
    }

    #[tokio::test]
    async fn a_command_that_fails_or_prints_no_id_fails_the_component() {
        let quiet = command(&["/bin/sh", "-c", "echo snap-1 >&2"], &[], &[], "10s");
        let err = quiet
            .external_backup(&env(), None)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("printed no snapshot id on stdout"), "{err}");
        let failing = command(
            &["/bin/sh", "-c", "echo disk full >&2; exit 1"],
            &[],
            &[],
            "10s",
        );
        let err = failing
            .external_backup(&env(), None)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("disk full"), "{err}");
        let slow = command(&["/bin/sleep", "10"], &[], &[], "300ms");
        let err = slow
            .external_backup(&env(), None)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("no answer within"), "{err}");
        // An id with a state that says failed is a failed snapshot, deleted at once.
        let dir = tempfile::tempdir().unwrap();
        let deleted = dir.path().join("deleted");
        let reports_failed = command(
            &["/bin/echo", r#"{"id":"snap-9","state":"Failed"}"#],
            &[],
            &[
                "/bin/sh",
                "-c",
                &format!("echo $0 > {}", deleted.display()),
                "{id}",
            ],
            "10s",
        );
        let err = reports_failed
            .external_backup(&env(), None)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("snap-9") && err.contains("Failed"), "{err}");
        assert_eq!(std::fs::read_to_string(&deleted).unwrap(), "snap-9\n");
        let err = quiet
            .external_restore(&BTreeMap::new(), &env())
            .await
            .unwrap_err();
        assert_eq!(err, PluginError::NotRecorded("snapshot id"));
        assert!(err.to_string().contains("no snapshot id"), "{err}");
    }
}
