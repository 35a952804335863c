//! The `camunda` component: a Camunda 8 cluster backed up through its own backup APIs, in
//! the order Camunda documents ("Backup and restore", 8.2-8.8):
//!
//! 1. back up the web applications (Operate, Tasklist, Optimize) with one backup id and
//!    wait until each is done;
//! 2. soft-pause Zeebe's exporting (records keep being exported, none is deleted);
//! 3. snapshot the exported records in Elasticsearch and wait;
//! 4. back up Zeebe with the same id and wait;
//! 5. resume exporting, whatever happened from step 2 on.
//!
//! The id is the backup's number (`backup_id`: milliseconds at its start, increasing as
//! Camunda requires). The pause is a pause record like a hook's ([`strata_hooks`]):
//! written durably before it is issued, resumed after the pause call has ended, twice
//! when it never answered, by the next process when this one dies
//! ([`Plugin::implied_hooks`] declares it). Each part's state is recorded in the
//! summary; a missing required part fails the component (Optimize is optional unless
//! configured otherwise). Deleting the backup deletes every part; a failed attempt
//! deletes what it created. A restore cannot be driven from outside (Zeebe's brokers
//! must be stopped and restored with Camunda's restore application), so `strata
//! restore` prints the checklist with this backup's names filled in.

use super::engine_api::{Caller, ANSWER_LIMIT};
use super::{ExternalError, ExternalOutcome, ExternalSnapshot, Plugin};
use crate::config::{CamundaComponent, Config, NodeConfig};
use crate::hooks::{self, HookAction, HookConfig, HookEnv, HookOperation};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use strata_agent::backup::NodeSource;
use strata_agent::service::NodePlugin;

/// A Camunda 8 cluster (see the module documentation).
#[derive(Debug, Clone)]
pub struct Camunda {
    component: String,
    settings: CamundaComponent,
    state_dir: PathBuf,
    poll: Duration,
    connect_timeout: Duration,
    timeout: Duration,
}

/// One web application's part.
struct WebApp {
    name: &'static str,
    url: String,
    required: bool,
}

impl Camunda {
    /// The component `name` with `settings`; pause records go under `state_dir`.
    pub fn new(
        name: &str,
        settings: CamundaComponent,
        state_dir: PathBuf,
    ) -> Result<Camunda, String> {
        let time = |text: &str, what: &str| {
            humantime::parse_duration(text.trim())
                .map_err(|e| format!("component {name:?}: {what} {text:?}: {e}"))
        };
        for (what, url) in [
            ("zeebe", Some(&settings.zeebe)),
            ("operate", settings.operate.as_ref()),
            ("tasklist", settings.tasklist.as_ref()),
            ("optimize", settings.optimize.as_ref()),
            ("elasticsearch", Some(&settings.elasticsearch)),
        ] {
            if let Some(url) = url {
                hooks::parse_http_line(&format!("GET {url}"))
                    .map_err(|e| format!("component {name:?}: {what}: {e}"))?;
            }
        }
        if !["8.2", "8.3", "8.4", "8.5", "8.6", "8.7", "8.8"].contains(&settings.version.as_str())
            && !settings.version.starts_with("8.")
        {
            return Err(format!(
                "component {name:?}: version {:?} is not a Camunda 8 version (8.2 ... 8.8)",
                settings.version
            ));
        }
        if !strata_util::valid_id(&settings.snapshot_repository) {
            return Err(format!(
                "component {name:?}: snapshot_repository {:?} must be letters, digits, '.', '_' or '-'",
                settings.snapshot_repository
            ));
        }
        time(&settings.pause_timeout, "pause_timeout")?;
        time(&settings.late_pause, "late_pause")?;
        Ok(Camunda {
            component: name.to_string(),
            poll: time(&settings.poll, "poll")?,
            connect_timeout: time(&settings.connect_timeout, "connect_timeout")?,
            timeout: time(&settings.timeout, "timeout")?,
            settings,
            state_dir,
        })
    }

    fn caller(&self) -> Caller {
        Caller::new(self.timeout, self.poll, self.connect_timeout)
    }

    /// Zeebe's backups endpoint: `/actuator/backupRuntime` from 8.8 on.
    fn zeebe_backups(&self) -> String {
        let path = match self.settings.version.as_str() {
            "8.2" | "8.3" | "8.4" | "8.5" | "8.6" | "8.7" => "/actuator/backups",
            _ => "/actuator/backupRuntime",
        };
        format!("{}{path}", self.settings.zeebe.trim_end_matches('/'))
    }

    fn web_apps(&self) -> Vec<WebApp> {
        let s = &self.settings;
        [
            ("operate", &s.operate, true),
            ("tasklist", &s.tasklist, true),
            ("optimize", &s.optimize, s.optimize_required),
        ]
        .into_iter()
        .filter_map(|(name, url, required)| {
            Some(WebApp {
                name,
                url: url.as_ref()?.trim_end_matches('/').to_string(),
                required,
            })
        })
        .collect()
    }

    /// The Elasticsearch snapshot of the records of backup `id`.
    fn records_snapshot(&self, id: u64) -> String {
        format!(
            "{}/_snapshot/{}/camunda_zeebe_records_backup_{id}",
            self.settings.elasticsearch.trim_end_matches('/'),
            self.settings.snapshot_repository
        )
    }

    /// The pause/resume pair of Zeebe's exporting, as a hook.
    fn exporting_hook(&self) -> HookConfig {
        let zeebe = self.settings.zeebe.trim_end_matches('/');
        HookConfig {
            name: Some(format!("{} exporting", self.component)),
            operation: HookOperation::Backup,
            at: None,
            run: None,
            pause: Some(HookAction::Http(format!(
                "POST {zeebe}/actuator/exporting/pause?soft=true"
            ))),
            resume: Some(HookAction::Http(format!(
                "POST {zeebe}/actuator/exporting/resume"
            ))),
            component: Some(self.component.clone()),
            node: None,
            timeout: self.settings.pause_timeout.clone(),
            resume_attempts: 5,
            late_pause: self.settings.late_pause.clone(),
        }
    }

    /// Starts a backup of `id` at `url` (a `/actuator/backups`-shaped endpoint).
    async fn start(&self, caller: &mut Caller, url: &str, id: u64) -> Result<(), ExternalError> {
        let body = serde_json::to_vec(&serde_json::json!({ "backupId": id })).unwrap();
        caller.call(&format!("POST {url}"), body, false).await?;
        Ok(())
    }

    /// Polls `GET url/{id}` until its `state` is done; returns the answer.
    async fn wait(
        &self,
        caller: &mut Caller,
        url: &str,
        done: &[&str],
        failed: &[&str],
    ) -> Result<serde_json::Value, ExternalError> {
        let mut last = "not known yet".to_string();
        loop {
            // Right after a backup starts its state may not be known (404) yet.
            if let Some(answer) = caller.call(&format!("GET {url}"), Vec::new(), true).await? {
                let state = state_of(&answer);
                if done.iter().any(|d| d.eq_ignore_ascii_case(&state)) {
                    return Ok(answer);
                }
                if failed.iter().any(|f| f.eq_ignore_ascii_case(&state)) {
                    let reason = answer
                        .get("failureReason")
                        .and_then(|r| r.as_str())
                        .filter(|r| !r.is_empty())
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default();
                    return Err(ExternalError::Failed(format!(
                        "{} is {state}{reason}",
                        strata_util::mask_url(url)
                    )));
                }
                last = state;
            }
            if caller.left() <= Duration::ZERO {
                break;
            }
            caller.pause().await;
            if caller.left().is_zero() {
                break;
            }
        }
        Err(ExternalError::Failed(format!(
            "{} not done within {} (last state {last})",
            strata_util::mask_url(url),
            self.settings.timeout
        )))
    }

    /// Step 1: every web application, at once; returns each one's recorded state.
    async fn web_app_backups(
        &self,
        id: u64,
        recorded: &mut BTreeMap<String, String>,
        created: &mut Vec<String>,
    ) -> Result<(), ExternalError> {
        let apps = self.web_apps();
        let results = futures::future::join_all(apps.iter().map(|app| async move {
            let mut caller = self.caller();
            let url = format!("{}/actuator/backups", app.url);
            self.start(&mut caller, &url, id).await?;
            let answer = self
                .wait(
                    &mut caller,
                    &format!("{url}/{id}"),
                    &["COMPLETED", "COMPLETE"],
                    &["FAILED", "INCOMPLETE", "INCOMPATIBLE"],
                )
                .await?;
            let snapshots: Vec<String> = answer
                .get("details")
                .and_then(|d| d.as_array())
                .map(|d| {
                    d.iter()
                        .filter_map(|s| s.get("snapshotName")?.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            Ok::<_, ExternalError>((state_of(&answer), snapshots))
        }))
        .await;
        let mut first_failure = None;
        for (app, result) in apps.iter().zip(results) {
            match result {
                Ok((state, snapshots)) => {
                    created.push(format!("{}/actuator/backups/{id}", app.url));
                    recorded.insert(app.name.to_string(), state);
                    if !snapshots.is_empty() {
                        recorded.insert(format!("{}_snapshots", app.name), snapshots.join(","));
                    }
                }
                Err(err) if !app.required => {
                    // Optional: recorded as missing, the backup goes on.
                    let word = match err {
                        ExternalError::Unreachable(_) => "absent",
                        ExternalError::Failed(_) => "failed",
                    };
                    recorded.insert(app.name.to_string(), format!("{word}: {err}"));
                    created.push(format!("{}/actuator/backups/{id}", app.url));
                }
                Err(err) => {
                    created.push(format!("{}/actuator/backups/{id}", app.url));
                    first_failure.get_or_insert(match err {
                        ExternalError::Failed(why) => {
                            ExternalError::Failed(format!("{}: {why}", app.name))
                        }
                        ExternalError::Unreachable(why) => {
                            ExternalError::Unreachable(format!("{}: {why}", app.name))
                        }
                    });
                }
            }
        }
        first_failure.map_or(Ok(()), Err)
    }

    /// Steps 3 and 4, under the pause.
    async fn paused_steps(
        &self,
        id: u64,
        recorded: &mut BTreeMap<String, String>,
        created: &mut Vec<String>,
    ) -> Result<(), ExternalError> {
        let mut caller = self.caller();
        let snapshot = self.records_snapshot(id);
        let body = serde_json::to_vec(&serde_json::json!({
            "indices": self.settings.record_indices,
            "feature_states": ["none"],
        }))
        .unwrap();
        caller.call(&format!("PUT {snapshot}"), body, false).await?;
        created.push(snapshot.clone());
        let answer = self
            .wait_snapshot(&mut caller, &snapshot)
            .await
            .map_err(|e| ExternalError::Failed(format!("elasticsearch: {e}")))?;
        recorded.insert("elasticsearch".into(), answer);

        let zeebe = self.zeebe_backups();
        self.start(&mut caller, &zeebe, id)
            .await
            .map_err(|e| ExternalError::Failed(format!("zeebe: {e}")))?;
        created.push(format!("{zeebe}/{id}"));
        let answer = self
            .wait(
                &mut caller,
                &format!("{zeebe}/{id}"),
                &["COMPLETED"],
                &["FAILED", "INCOMPLETE"],
            )
            .await
            .map_err(|e| ExternalError::Failed(format!("zeebe: {e}")))?;
        let partitions = answer
            .get("details")
            .and_then(|d| d.as_array())
            .map_or(0, Vec::len);
        recorded.insert(
            "zeebe".into(),
            format!("{} ({partitions} partitions)", state_of(&answer)),
        );
        Ok(())
    }

    /// Polls an Elasticsearch snapshot until `SUCCESS`.
    async fn wait_snapshot(&self, caller: &mut Caller, url: &str) -> Result<String, String> {
        loop {
            let answer = caller
                .call(&format!("GET {url}"), Vec::new(), true)
                .await
                .map_err(|e| e.to_string())?;
            let state = answer
                .as_ref()
                .and_then(|a| a.pointer("/snapshots/0/state"))
                .and_then(|s| s.as_str())
                .unwrap_or("IN_PROGRESS")
                .to_string();
            match state.as_str() {
                "SUCCESS" => return Ok(state),
                "FAILED" | "PARTIAL" | "INCOMPATIBLE" => {
                    return Err(format!(
                        "snapshot {} is {state}",
                        strata_util::mask_url(url)
                    ))
                }
                _ => {}
            }
            caller.pause().await;
            if caller.left().is_zero() {
                return Err(format!(
                    "snapshot not done within {} (last state {state})",
                    self.settings.timeout
                ));
            }
        }
    }

    /// Deletes the parts at `urls` (best effort for a failed attempt; for a deleted
    /// backup, the first failure is returned).
    async fn delete_parts(&self, urls: &[String]) -> Result<Vec<String>, String> {
        let mut said = Vec::new();
        let mut failed = Vec::new();
        for url in urls {
            let mut caller = self.caller();
            match caller
                .call(&format!("DELETE {url}"), Vec::new(), true)
                .await
            {
                Ok(Some(_)) => said.push(format!("{} deleted", strata_util::mask_url(url))),
                Ok(None) => said.push(format!("{} was gone", strata_util::mask_url(url))),
                Err(e) => failed.push(e.to_string()),
            }
        }
        match failed.is_empty() {
            true => Ok(said),
            false => Err(failed.join("; ")),
        }
    }

    /// Every part a backup of `id` has.
    fn parts(&self, id: u64) -> Vec<String> {
        let mut urls: Vec<String> = self
            .web_apps()
            .iter()
            .map(|app| format!("{}/actuator/backups/{id}", app.url))
            .collect();
        urls.push(self.records_snapshot(id));
        urls.push(format!("{}/{id}", self.zeebe_backups()));
        urls
    }

    async fn backup(&self, env: &HookEnv) -> ExternalOutcome {
        let id = env.backup_id.ok_or_else(|| {
            ExternalError::Failed("no backup number to give Camunda as its backupId".into())
        })?;
        let mut recorded = BTreeMap::from([
            ("snapshot_id".to_string(), id.to_string()),
            ("backup_id".to_string(), id.to_string()),
        ]);
        let mut created = Vec::new();
        // 1. The web applications first.
        if let Err(err) = self.web_app_backups(id, &mut recorded, &mut created).await {
            self.forget(&created).await;
            return Err(err);
        }
        // 2. The pause, recorded durably before it is issued.
        let hook = self.exporting_hook();
        let mut record = hooks::new_record(0, &hook, env);
        record.id = format!("{}-{}-exporting", env.id, self.component);
        if let Err(e) = record.save(&self.state_dir) {
            self.forget(&created).await;
            return Err(ExternalError::Failed(format!(
                "cannot record the exporting pause in {} ({e}), so it is not issued",
                hooks::pauses_dir(&self.state_dir).display()
            )));
        }
        // Should this future be dropped from here on (a SIGTERM ends the backup), the
        // backup resumes the record itself once its steps have ended (it is one of
        // `implied_hooks`), and a process that dies leaves it to the next one.
        let paused = hooks::issue_pause(&self.state_dir, &record, &hook, env).await;
        let steps = match paused {
            Ok(_) => self.paused_steps(id, &mut recorded, &mut created).await,
            Err(e) => Err(ExternalError::Failed(format!(
                "zeebe: pausing the exporting: {e}"
            ))),
        };
        // 5. Resume, whatever happened.
        let resumed = hooks::resume(&self.state_dir, record).await;
        let still_paused = resumed.error.map(|why| {
            format!(
                "Zeebe's exporting ({}) is still paused: {why}; strata retries the resume, or run: curl -X POST {}/actuator/exporting/resume",
                strata_util::mask_url(&self.settings.zeebe),
                strata_util::mask_url(&self.settings.zeebe)
            )
        });
        if let Err(err) = steps {
            self.forget(&created).await;
            return Err(match still_paused {
                Some(paused) => ExternalError::Failed(format!("{err}; {paused}")),
                None => err,
            });
        }
        recorded.insert("state".into(), "COMPLETED".into());
        Ok(ExternalSnapshot {
            recorded,
            still_paused,
        })
    }

    /// Deletes what a failed attempt created, so the systems keep only what strata does.
    async fn forget(&self, created: &[String]) {
        if let Err(why) = self.delete_parts(created).await {
            eprintln!(
                "strata: warning: component {}: cannot delete what the failed backup created: {why}",
                self.component
            );
        }
    }

    /// What an operator does to restore backup `id` (Camunda's restore cannot be driven
    /// from outside: the brokers must be down).
    fn checklist(&self, id: &str, recorded: &BTreeMap<String, String>) -> String {
        let es = strata_util::mask_url(self.settings.elasticsearch.trim_end_matches('/'));
        let repo = &self.settings.snapshot_repository;
        let mut lines = vec![
            format!("Camunda backup {id}: restore it by hand, in this order:"),
            "  1. Stop every Camunda component (scale Zeebe's brokers and gateways, Operate, Tasklist and Optimize to zero).".to_string(),
            "  2. Delete the Camunda indices in Elasticsearch (the web applications' and zeebe-record*), or restore into an empty cluster.".to_string(),
        ];
        let mut step = 3;
        for app in ["operate", "tasklist", "optimize"] {
            if let Some(snapshots) = recorded.get(&format!("{app}_snapshots")) {
                for snapshot in snapshots.split(',') {
                    lines.push(format!(
                        "  {step}. curl -X POST {es}/_snapshot/{repo}/{snapshot}/_restore?wait_for_completion=true   ({app})"
                    ));
                    step += 1;
                }
            }
        }
        lines.push(format!(
            "  {step}. curl -X POST {es}/_snapshot/{repo}/camunda_zeebe_records_backup_{id}/_restore?wait_for_completion=true   (exported records)"
        ));
        lines.push(format!(
            "  {}. On every broker, with its data directory empty: /usr/local/zeebe/bin/restore --backupId={id}   (Helm: the restore init container)",
            step + 1
        ));
        lines.push(format!(
            "  {}. Start Zeebe, then Operate, Tasklist and Optimize.",
            step + 2
        ));
        lines.join("\n")
    }
}

/// An answer's `state`, as text.
fn state_of(answer: &serde_json::Value) -> String {
    answer
        .get("state")
        .and_then(|s| s.as_str())
        .unwrap_or("")
        .to_string()
}

#[async_trait::async_trait]
impl Plugin for Camunda {
    fn name(&self) -> &'static str {
        "camunda"
    }
    fn check_node(&self, node: &NodeConfig) -> Result<(), String> {
        Err(format!(
            "a camunda component has no nodes ({:?})",
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
    fn implied_hooks(&self) -> Vec<HookConfig> {
        vec![self.exporting_hook()]
    }

    async fn probe(&self) -> Option<Result<String, String>> {
        let s = &self.settings;
        let parts = [
            ("zeebe", Some(&s.zeebe), true),
            ("elasticsearch", Some(&s.elasticsearch), true),
            ("operate", s.operate.as_ref(), true),
            ("tasklist", s.tasklist.as_ref(), true),
            ("optimize", s.optimize.as_ref(), s.optimize_required),
        ];
        let probes = parts.iter().filter_map(|(name, url, required)| {
            let url = (*url)?.clone();
            Some(async move {
                let said = super::engine_api::answers(&url, Duration::from_secs(3)).await;
                (*name, *required, said)
            })
        });
        let mut said = Vec::new();
        let mut down = Vec::new();
        for (name, required, result) in futures::future::join_all(probes).await {
            match (result, required) {
                (Ok(_), _) => said.push(format!("{name} answers")),
                (Err(why), true) => down.push(format!("{name}: {why}")),
                (Err(why), false) => said.push(format!("{name} (optional) is down: {why}")),
            }
        }
        Some(match down.is_empty() {
            true => Ok(said.join(", ")),
            false => Err(down.join("; ")),
        })
    }

    async fn external_backup(&self, env: &HookEnv) -> ExternalOutcome {
        self.backup(env).await
    }

    /// Camunda's restore is the checklist: its numbered steps.
    fn checklist_steps(&self, detail: &str) -> Option<usize> {
        Some(
            detail
                .lines()
                .filter(|line| {
                    let line = line.trim_start();
                    let digits = line.chars().take_while(char::is_ascii_digit).count();
                    digits > 0 && line[digits..].starts_with(". ")
                })
                .count(),
        )
    }

    async fn external_restore(
        &self,
        recorded: &BTreeMap<String, String>,
        _env: &HookEnv,
    ) -> Result<String, String> {
        let id = recorded
            .get("backup_id")
            .ok_or("the backup recorded no Camunda backup id")?;
        Ok(self.checklist(id, recorded))
    }

    async fn external_delete(
        &self,
        recorded: &BTreeMap<String, String>,
        _env: &HookEnv,
    ) -> Result<String, String> {
        let id: u64 = recorded
            .get("backup_id")
            .and_then(|n| n.parse().ok())
            .ok_or("the backup recorded no Camunda backup id")?;
        let said = self.delete_parts(&self.parts(id)).await?;
        Ok(said.join(", "))
    }
}

/// The most of an answer read (shared with the `http` component).
const _: usize = ANSWER_LIMIT;
