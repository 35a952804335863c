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
use super::{ExternalError, ExternalOutcome, ExternalSnapshot, Plugin, PluginError};
use crate::engine_parts::{self, Attempt};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use strata_agent::backup::NodeSource;
use strata_agent::service::NodePlugin;
use strata_cluster::config::{CamundaComponent, Config, NodeConfig};
use strata_hooks::{self as hooks, HookAction, HookConfig, HookEnv, HookOperation, PauseLedger};

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
    /// The part's name (`operate`, `tasklist`, `optimize`; `webapps` for 8.8's
    /// orchestration cluster when neither Operate nor Tasklist has a URL of its own).
    name: &'static str,
    url: String,
    required: bool,
    /// `/actuator/backups`, or 8.8's `/actuator/backupHistory` for Operate and Tasklist.
    path: &'static str,
}

impl WebApp {
    /// The endpoint of its backups.
    fn backups(&self) -> String {
        format!("{}{}", self.url, self.path)
    }
}

/// How long after a Zeebe backup is started a partition may still answer
/// `DOES_NOT_EXIST` (the backup's request has not reached it yet) without failing it.
const NOT_YET_KNOWN: Duration = Duration::from_secs(30);

impl Camunda {
    /// The component `name` with `settings`; pause records go under `state_dir`.
    pub fn new(
        name: &str,
        settings: CamundaComponent,
        state_dir: PathBuf,
    ) -> Result<Camunda, PluginError> {
        let time = |text: &str, what: &str| {
            humantime::parse_duration(text.trim()).map_err(|e| {
                PluginError::Settings(format!("component {name:?}: {what} {text:?}: {e}"))
            })
        };
        for (what, url) in [
            ("zeebe", Some(&settings.zeebe)),
            ("operate", settings.operate.as_ref()),
            ("tasklist", settings.tasklist.as_ref()),
            ("optimize", settings.optimize.as_ref()),
            ("elasticsearch", Some(&settings.elasticsearch)),
        ] {
            if let Some(url) = url {
                hooks::parse_http_line(&format!("GET {url}")).map_err(|e| {
                    PluginError::Settings(format!("component {name:?}: {what}: {e}"))
                })?;
            }
        }
        if !["8.2", "8.3", "8.4", "8.5", "8.6", "8.7", "8.8"].contains(&settings.version.as_str())
            && !settings.version.starts_with("8.")
        {
            return Err(PluginError::Settings(format!(
                "component {name:?}: version {:?} is not a Camunda 8 version (8.2 ... 8.8)",
                settings.version
            )));
        }
        if !strata_util::valid_id(&settings.snapshot_repository) {
            return Err(PluginError::Settings(format!(
                "component {name:?}: snapshot_repository {:?} must be letters, digits, '.', '_' or '-'",
                settings.snapshot_repository
            )));
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

    /// Whether the version is 8.8 or later (the orchestration cluster: Zeebe's backups
    /// under `/actuator/backupRuntime`, Operate's and Tasklist's under
    /// `/actuator/backupHistory`).
    fn orchestration_cluster(&self) -> bool {
        !matches!(
            self.settings.version.as_str(),
            "8.2" | "8.3" | "8.4" | "8.5" | "8.6" | "8.7"
        )
    }

    /// Zeebe's backups endpoint: `/actuator/backupRuntime` from 8.8 on.
    fn zeebe_backups(&self) -> String {
        let path = match self.orchestration_cluster() {
            false => "/actuator/backups",
            true => "/actuator/backupRuntime",
        };
        format!("{}{path}", self.settings.zeebe.trim_end_matches('/'))
    }

    /// The web applications' parts the version requires. Up to 8.7 Operate, Tasklist
    /// and Optimize each back up on `/actuator/backups`. From 8.8 Operate and Tasklist
    /// are part of the orchestration cluster and back up on `/actuator/backupHistory`:
    /// at their own URLs when configured (one part when they share one), else at the
    /// cluster's management URL (`zeebe`); the part is required either way. Optimize
    /// keeps its own `/actuator/backups`.
    fn web_apps(&self) -> Vec<WebApp> {
        let s = &self.settings;
        let base = |url: &String| url.trim_end_matches('/').to_string();
        let mut apps = Vec::new();
        if self.orchestration_cluster() {
            let history = "/actuator/backupHistory";
            if let Some(url) = &s.operate {
                apps.push(WebApp {
                    name: "operate",
                    url: base(url),
                    required: true,
                    path: history,
                });
            }
            if let Some(url) = &s.tasklist {
                if s.operate.as_ref().map(base) != Some(base(url)) {
                    apps.push(WebApp {
                        name: "tasklist",
                        url: base(url),
                        required: true,
                        path: history,
                    });
                }
            }
            if apps.is_empty() {
                apps.push(WebApp {
                    name: "webapps",
                    url: base(&s.zeebe),
                    required: true,
                    path: history,
                });
            }
        } else {
            for (name, url) in [("operate", &s.operate), ("tasklist", &s.tasklist)] {
                if let Some(url) = url {
                    apps.push(WebApp {
                        name,
                        url: base(url),
                        required: true,
                        path: "/actuator/backups",
                    });
                }
            }
        }
        if let Some(url) = &s.optimize {
            apps.push(WebApp {
                name: "optimize",
                url: base(url),
                required: s.optimize_required,
                path: "/actuator/backups",
            });
        }
        apps
    }

    /// The URL of part `part` of backup `id`.
    fn part_url(&self, part: &str, id: u64) -> Result<String, PluginError> {
        match part {
            "elasticsearch" => Ok(self.records_snapshot(id)),
            "zeebe" => Ok(format!("{}/{id}", self.zeebe_backups())),
            _ => self
                .web_apps()
                .iter()
                .find(|app| app.name == part)
                .map(|app| format!("{}/{id}", app.backups()))
                .ok_or_else(|| {
                    PluginError::Settings(format!("part {part:?} has no URL in this configuration: delete backup {id} there by hand"))
                }),
        }
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
        let started = std::time::Instant::now();
        loop {
            // Right after a backup starts its state may not be known (404) yet.
            if let Some(answer) = caller.call(&format!("GET {url}"), Vec::new(), true).await? {
                let state = state_of(&answer);
                if done.iter().any(|d| d.eq_ignore_ascii_case(&state)) {
                    return Ok(answer);
                }
                // Zeebe answers INCOMPLETE while a partition has not heard of the backup
                // yet (DOES_NOT_EXIST): not a failure for a while after the request.
                let not_yet = state.eq_ignore_ascii_case("INCOMPLETE")
                    && started.elapsed() < NOT_YET_KNOWN
                    && partition_not_yet_known(&answer);
                if !not_yet && failed.iter().any(|f| f.eq_ignore_ascii_case(&state)) {
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

    /// Step 1: every web application, at once; records each one's state, and in
    /// `created` the parts that may exist now (all but an optional one that never
    /// answered: taken as never created).
    async fn web_app_backups(
        &self,
        id: u64,
        recorded: &mut BTreeMap<String, String>,
        created: &mut Vec<String>,
    ) -> Result<(), ExternalError> {
        let apps = self.web_apps();
        let results = futures::future::join_all(apps.iter().map(|app| async move {
            let mut caller = self.caller();
            let url = app.backups();
            let result = async {
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
            }
            .await;
            (result, caller.may_have_been_sent())
        }))
        .await;
        let mut first_failure = None;
        for (app, (result, sent)) in apps.iter().zip(results) {
            match result {
                Ok((state, snapshots)) => {
                    created.push(app.name.to_string());
                    recorded.insert(app.name.to_string(), state);
                    if !snapshots.is_empty() {
                        recorded.insert(format!("{}_snapshots", app.name), snapshots.join(","));
                    }
                }
                Err(err) if !app.required => {
                    // Optional: recorded as missing, the backup goes on.
                    let word = match err {
                        // Its request was sent and never answered (a part frozen for a
                        // GC pause): it may take it when it wakes, so the part stays with
                        // the backup, deleted with it.
                        ExternalError::Unreachable(_) if sent => {
                            created.push(app.name.to_string());
                            "absent (its request may still be taken: deleted with the backup)"
                        }
                        ExternalError::Unreachable(_) => "absent",
                        ExternalError::Failed(_) => {
                            created.push(app.name.to_string());
                            "failed"
                        }
                    };
                    recorded.insert(app.name.to_string(), format!("{word}: {err}"));
                }
                Err(err) => {
                    created.push(app.name.to_string());
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

    /// Steps 3 and 4, under the pause; each part is in the ledger (`attempt`) before
    /// its request.
    async fn paused_steps(
        &self,
        id: u64,
        recorded: &mut BTreeMap<String, String>,
        attempt: &mut Attempt,
        created: &mut Vec<String>,
    ) -> Result<(), ExternalError> {
        let mut caller = self.caller();
        let snapshot = self.records_snapshot(id);
        let body = serde_json::to_vec(&serde_json::json!({
            "indices": self.settings.record_indices,
            "feature_states": ["none"],
        }))
        .unwrap();
        self.record(attempt, "elasticsearch")?;
        created.push("elasticsearch".into());
        caller.call(&format!("PUT {snapshot}"), body, false).await?;
        let answer = self
            .wait_snapshot(&mut caller, &snapshot)
            .await
            .map_err(|e| ExternalError::Failed(format!("elasticsearch: {e}")))?;
        recorded.insert("elasticsearch".into(), answer);

        let zeebe = self.zeebe_backups();
        self.record(attempt, "zeebe")?;
        created.push("zeebe".into());
        self.start(&mut caller, &zeebe, id)
            .await
            .map_err(|e| ExternalError::Failed(format!("zeebe: {e}")))?;
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

    /// Writes `part` into the ledger before its request: one that cannot be recorded
    /// is not asked for.
    fn record(&self, attempt: &mut Attempt, part: &str) -> Result<(), ExternalError> {
        let dir = engine_parts::ledger_dir(&self.state_dir);
        attempt.record(&dir, &[part]).map_err(|e| {
            ExternalError::Failed(format!(
                "cannot record part {part} in {} ({e}), so it is not asked for",
                dir.display()
            ))
        })
    }

    /// Polls an Elasticsearch snapshot until `SUCCESS`.
    async fn wait_snapshot(&self, caller: &mut Caller, url: &str) -> Result<String, ExternalError> {
        loop {
            let answer = caller.call(&format!("GET {url}"), Vec::new(), true).await?;
            let state = answer
                .as_ref()
                .and_then(|a| a.pointer("/snapshots/0/state"))
                .and_then(|s| s.as_str())
                .unwrap_or("IN_PROGRESS")
                .to_string();
            match state.as_str() {
                "SUCCESS" => return Ok(state),
                "FAILED" | "PARTIAL" | "INCOMPATIBLE" => {
                    return Err(ExternalError::Failed(format!(
                        "snapshot {} is {state}",
                        strata_util::mask_url(url)
                    )))
                }
                _ => {}
            }
            caller.pause().await;
            if caller.left().is_zero() {
                return Err(ExternalError::Failed(format!(
                    "snapshot not done within {} (last state {state})",
                    self.settings.timeout
                )));
            }
        }
    }

    /// Deletes parts `parts` of backup `id` (a 404 is gone already); returns a line for
    /// each, or every failure.
    async fn delete_parts(&self, parts: &[String], id: u64) -> Result<Vec<String>, PluginError> {
        let mut said = Vec::new();
        let mut failed = Vec::new();
        for part in parts {
            let url = match self.part_url(part, id) {
                Ok(url) => url,
                Err(why) => {
                    failed.push(why.to_string());
                    continue;
                }
            };
            let mut caller = self.caller();
            match caller
                .call(&format!("DELETE {url}"), Vec::new(), true)
                .await
            {
                Ok(Some(_)) => said.push(format!("{part} {} deleted", strata_util::mask_url(&url))),
                Ok(None) => said.push(format!("{part} {} was gone", strata_util::mask_url(&url))),
                Err(e) => failed.push(format!("{part}: {e}")),
            }
        }
        match failed.is_empty() {
            true => Ok(said),
            false => Err(PluginError::PartsLeft(failed)),
        }
    }

    /// The parts a summary recorded: its `parts` (what was created), or for a backup
    /// recorded before them, every part but an optional one recorded `absent`.
    fn recorded_parts(&self, recorded: &BTreeMap<String, String>) -> Vec<String> {
        if let Some(parts) = recorded.get("parts") {
            return parts
                .split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect();
        }
        let mut parts: Vec<String> = self
            .web_apps()
            .iter()
            .filter(|app| {
                !recorded
                    .get(app.name)
                    .is_some_and(|state| state.starts_with("absent"))
            })
            .map(|app| app.name.to_string())
            .collect();
        parts.extend(["elasticsearch".to_string(), "zeebe".to_string()]);
        parts
    }

    async fn backup(&self, env: &HookEnv, pauses: &PauseLedger) -> ExternalOutcome {
        let id = env.backup_id.ok_or_else(|| {
            ExternalError::Failed("no backup number to give Camunda as its backupId".into())
        })?;
        let mut recorded = BTreeMap::from([
            ("snapshot_id".to_string(), id.to_string()),
            ("backup_id".to_string(), id.to_string()),
        ]);
        // Every part is in the ledger before its request (see `crate::engine_parts`):
        // whatever ends this attempt, the next backup, cleanup or delete finds it.
        let mut attempt = Attempt::new(&env.id, &self.component, "camunda", id);
        let apps: Vec<&str> = self.web_apps().iter().map(|app| app.name).collect();
        let dir = engine_parts::ledger_dir(&self.state_dir);
        if let Err(e) = attempt.record(&dir, &apps) {
            return Err(ExternalError::Failed(format!(
                "cannot record the backup's parts in {} ({e}), so none is asked for",
                dir.display()
            )));
        }
        let mut created = Vec::new();
        // 1. The web applications first.
        if let Err(err) = self.web_app_backups(id, &mut recorded, &mut created).await {
            self.forget(&mut attempt, &created).await;
            return Err(err);
        }
        // 2. The pause, recorded durably before it is issued.
        let hook = self.exporting_hook();
        let mut record = hooks::new_record(0, &hook, env);
        record.id = format!("{}-{}-exporting", env.id, self.component);
        if let Err(e) = pauses.save(&record) {
            self.forget(&mut attempt, &created).await;
            return Err(ExternalError::Failed(format!(
                "cannot record the exporting pause in {} ({e}), so it is not issued",
                pauses.dir().display()
            )));
        }
        // Should this future be dropped from here on (a SIGTERM ends the backup), the
        // backup resumes the record itself once its steps have ended (it is one of
        // `implied_hooks`), and a process that dies leaves it to the next one.
        let paused = pauses.issue_pause(&record, &hook, env).await;
        let steps = match paused {
            Ok(_) => {
                self.paused_steps(id, &mut recorded, &mut attempt, &mut created)
                    .await
            }
            Err(e) => Err(ExternalError::Failed(format!(
                "zeebe: pausing the exporting: {e}"
            ))),
        };
        // 5. Resume, whatever happened.
        let resumed = pauses.resume(record).await;
        let still_paused = resumed.error.map(|why| {
            format!(
                "Zeebe's exporting ({}) is still paused: {why}; strata retries the resume, or run: curl -X POST {}/actuator/exporting/resume",
                strata_util::mask_url(&self.settings.zeebe),
                strata_util::mask_url(&self.settings.zeebe)
            )
        });
        if let Err(err) = steps {
            self.forget(&mut attempt, &created).await;
            return Err(match still_paused {
                Some(paused) => ExternalError::Failed(format!("{err}; {paused}")),
                None => err,
            });
        }
        recorded.insert("state".into(), "COMPLETED".into());
        // What deleting the backup deletes: the parts that may exist, no other.
        recorded.insert("parts".into(), created.join(","));
        Ok(ExternalSnapshot {
            recorded,
            still_paused,
        })
    }

    /// Deletes what a failed attempt created, so the systems keep only what strata does;
    /// what cannot be deleted now stays in the ledger for the next backup or cleanup.
    async fn forget(&self, attempt: &mut Attempt, created: &[String]) {
        let dir = engine_parts::ledger_dir(&self.state_dir);
        // An optional part that never answered was not created: out of the ledger.
        attempt.parts.retain(|p| created.contains(p));
        match self.delete_parts(&attempt.parts, attempt.backup_id).await {
            Ok(_) => {
                if let Err(e) = attempt.remove(&dir) {
                    eprintln!(
                        "strata: warning: component {}: cannot remove its ledger entry in {}: {e}",
                        self.component,
                        dir.display()
                    );
                }
            }
            Err(why) => {
                let _ = attempt.save(&dir);
                eprintln!(
                    "strata: warning: component {}: cannot delete yet what the failed backup created ({why}); the next backup, cleanup or delete on this host deletes it",
                    self.component
                );
            }
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
        // 8.8's orchestration cluster backs Operate and Tasklist up as one part
        // (`webapps`) when they share its URL.
        for (app, shown) in [
            ("operate", "operate"),
            ("tasklist", "tasklist"),
            ("webapps", "operate and tasklist"),
            ("optimize", "optimize"),
        ] {
            if let Some(snapshots) = recorded.get(&format!("{app}_snapshots")) {
                for snapshot in snapshots.split(',') {
                    lines.push(format!(
                        "  {step}. curl -X POST {es}/_snapshot/{repo}/{snapshot}/_restore?wait_for_completion=true   ({shown})"
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

/// Whether a Zeebe backup's answer has a partition that does not know the backup yet.
fn partition_not_yet_known(answer: &serde_json::Value) -> bool {
    answer
        .get("details")
        .and_then(|d| d.as_array())
        .is_some_and(|d| {
            d.iter()
                .any(|p| p.get("state").and_then(|s| s.as_str()) == Some("DOES_NOT_EXIST"))
        })
}

/// The partitions whose exporting is paused in an `/actuator/partitions` answer (an
/// object by partition id, of one status or, with several physical tenants, a list of
/// them), as `1 SOFT_PAUSED, 2 SOFT_PAUSED`; `None` when none is.
fn paused_partitions(json: &serde_json::Value) -> Option<String> {
    let mut paused = Vec::new();
    let mut visit = |id: &str, status: &serde_json::Value| {
        if let Some(phase) = status.get("exporterPhase").and_then(|p| p.as_str()) {
            if phase == "PAUSED" || phase == "SOFT_PAUSED" {
                paused.push(format!("{id} {phase}"));
            }
        }
    };
    for (id, status) in json.as_object().into_iter().flatten() {
        match status {
            serde_json::Value::Array(list) => list.iter().for_each(|s| visit(id, s)),
            status => visit(id, status),
        }
    }
    (!paused.is_empty()).then(|| format!("partitions {}", paused.join(", ")))
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
    fn check_node(&self, node: &NodeConfig) -> Result<(), PluginError> {
        Err(PluginError::Settings(format!(
            "a camunda component has no nodes ({:?})",
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
    fn implied_hooks(&self) -> Vec<HookConfig> {
        vec![self.exporting_hook()]
    }

    // String: the line `strata check` shows; strata-server's check.rs builds the same type for its timeout.
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

    async fn external_backup(
        &self,
        env: &HookEnv,
        pauses: Option<&PauseLedger>,
    ) -> ExternalOutcome {
        let Some(pauses) = pauses else {
            return Err(ExternalError::Failed(
                "no state directory to record the exporting pause in, so none is issued".into(),
            ));
        };
        self.backup(env, pauses).await
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
    ) -> Result<String, PluginError> {
        let id = recorded
            .get("backup_id")
            .ok_or(PluginError::NotRecorded("Camunda backup id"))?;
        Ok(self.checklist(id, recorded))
    }

    async fn external_delete(
        &self,
        recorded: &BTreeMap<String, String>,
        _env: &HookEnv,
    ) -> Result<String, PluginError> {
        let id: u64 = recorded
            .get("backup_id")
            .and_then(|n| n.parse().ok())
            .ok_or(PluginError::NotRecorded("Camunda backup id"))?;
        let said = self
            .delete_parts(&self.recorded_parts(recorded), id)
            .await?;
        Ok(said.join(", "))
    }

    /// Zeebe's partitions as its management port reports them (`GET
    /// /actuator/partitions`): paused when a partition's `exporterPhase` is `PAUSED` or
    /// `SOFT_PAUSED`.
    async fn engine_paused(&self) -> Option<Result<Option<String>, PluginError>> {
        let url = format!(
            "{}/actuator/partitions",
            self.settings.zeebe.trim_end_matches('/')
        );
        let answer = match strata_hooks::http_call(
            reqwest::Method::GET,
            &url,
            Vec::new(),
            Duration::from_secs(3),
            super::engine_api::ANSWER_LIMIT,
        )
        .await
        {
            Ok(answer) if answer.status.is_success() => answer,
            // No such endpoint (a standalone gateway): it cannot tell, which is no
            // problem of the pause.
            Ok(answer) if answer.status == reqwest::StatusCode::NOT_FOUND => return None,
            Ok(answer) => {
                return Some(Err(PluginError::System(format!(
                    "{} answered {}",
                    strata_util::mask_url(&url),
                    answer.status
                ))))
            }
            Err(e) => return Some(Err(PluginError::System(e.to_string()))),
        };
        let json: serde_json::Value = match serde_json::from_str(&answer.body) {
            Ok(json) => json,
            Err(e) => {
                return Some(Err(PluginError::System(format!(
                    "{}: not JSON: {e}",
                    strata_util::mask_url(&url)
                ))))
            }
        };
        Some(Ok(paused_partitions(&json)))
    }

    fn parts_ledger(&self) -> Option<PathBuf> {
        Some(engine_parts::ledger_dir(&self.state_dir))
    }
}

/// The most of an answer read (shared with the `http` component).
const _: usize = ANSWER_LIMIT;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paused_partitions_are_read_from_one_status_or_a_list_per_partition() {
        let one =
            json!({"1": {"exporterPhase": "EXPORTING"}, "2": {"exporterPhase": "SOFT_PAUSED"}});
        assert_eq!(
            paused_partitions(&one).as_deref(),
            Some("partitions 2 SOFT_PAUSED")
        );
        let tenants =
            json!({"default": [{"exporterPhase": "PAUSED"}, {"exporterPhase": "EXPORTING"}]});
        assert_eq!(
            paused_partitions(&tenants).as_deref(),
            Some("partitions default PAUSED")
        );
        assert_eq!(paused_partitions(&json!({"1": {"role": "LEADER"}})), None);
        assert_eq!(paused_partitions(&json!([1, 2])), None);
        assert_eq!(paused_partitions(&json!("x")), None);
    }

    #[test]
    fn a_partition_that_does_not_know_the_backup_is_told_from_a_failed_one() {
        let unknown = json!({"state": "INCOMPLETE", "details": [{"partitionId": 1, "state": "DOES_NOT_EXIST"}, {"partitionId": 2, "state": "IN_PROGRESS"}]});
        assert!(partition_not_yet_known(&unknown));
        let failed =
            json!({"state": "INCOMPLETE", "details": [{"partitionId": 1, "state": "FAILED"}]});
        assert!(!partition_not_yet_known(&failed));
        assert!(!partition_not_yet_known(&json!({"details": "x"})));
    }
}
