//! The audit log from the command line: local actions record themselves (as
//! `local:<user>@<host>`), and `strata audit` reads the log of a repository, or of the
//! server with `--server`.

use crate::client::query_string;
use crate::commands::{print_json, CommandResult, Context};
use crate::failure::{code, Failure};
use std::sync::Arc;
use std::time::Duration;
use strata_coordinator::audit::{self, AuditEntry};
use strata_coordinator::events::{Action, Events};
use strata_coordinator::webhooks::Webhooks;
use strata_repo::Repository;

/// How long a command waits at its end for webhook deliveries still in flight.
const FLUSH: Duration = Duration::from_secs(10);

impl Context {
    /// The reporting side of this command (webhooks of the configuration), built once.
    pub(crate) fn events(&self) -> Result<Arc<Events>, Failure> {
        if let Some(events) = self.events.get() {
            return Ok(events.clone());
        }
        let webhooks = Webhooks::from_config(&self.config.webhooks)?;
        Ok(self.events.get_or_init(|| Events::new(webhooks)).clone())
    }

    /// The use cases on `repo` of storage `storage`, reported to this command's events:
    /// every local action that changes a repository goes through these, as the API's and
    /// the scheduler's do (see `strata_coordinator::actions`).
    pub(crate) fn actions(
        &self,
        repo: &Arc<Repository>,
        storage: &str,
    ) -> Result<strata_coordinator::actions::Actions, Failure> {
        Ok(strata_coordinator::actions::Actions::new(
            repo.clone(),
            storage,
            self.events()?,
            Duration::from_secs(self.config.server.lease_ttl_secs),
            self.config.gc.grace()?,
        ))
    }

    /// Waits (a little) for webhook deliveries so they do not die with the process.
    pub(crate) async fn flush_events(&self) {
        if let Some(events) = self.events.get() {
            events.flush(FLUSH).await;
        }
    }

    /// Records the outcome of local action `kind` on `target` in `repo`'s audit log (and
    /// tells the webhooks, for backup, restore, cleanup and verify), then hands the result
    /// back unchanged.
    pub(crate) async fn audited<T>(
        &self,
        repo: &Repository,
        storage: &str,
        kind: &str,
        target: &str,
        result: Result<T, Failure>,
        describe: impl FnOnce(&T) -> (&'static str, String),
    ) -> Result<T, Failure> {
        let who = audit::local_actor();
        let action = Action {
            who: &who,
            kind,
            target,
            operation: None,
        };
        let (outcome, detail) = match &result {
            Ok(value) => describe(value),
            Err(failure) => ("failed", failure.message.clone()),
        };
        self.events()?
            .finished(repo, storage, &action, outcome, &detail)
            .await;
        result
    }

    /// `strata audit`.
    pub(crate) async fn audit(&self, since: Option<&str>, limit: u32) -> CommandResult {
        let entries: Vec<AuditEntry> = if let Some(client) = self.remote()? {
            let mut query = vec![("limit", limit.to_string())];
            query.extend(since.map(|s| ("since", s.to_string())));
            client
                .get(&format!("/api/v1/audit?{}", query_string(&query)))
                .await?
        } else {
            let now = strata_coordinator::lock::now_ms();
            let since = match since {
                Some(text) => {
                    audit::parse_since(text, now).map_err(|why| Failure::new(code::USAGE, why))?
                }
                None => 0,
            };
            let storage = self.storage()?;
            let repo = self.open_storage(&storage).await?;
            audit::read(&repo, since, limit as usize).await?
        };
        if self.global.json {
            print_json(&entries);
            return Ok(0);
        }
        if entries.is_empty() {
            self.say("no audit log entries");
            return Ok(0);
        }
        for e in &entries {
            let detail = if e.detail.is_empty() {
                String::new()
            } else {
                format!("  {}", e.detail)
            };
            println!(
                "{}  {:<10} {:<9} {:<28} {:<26}{detail}",
                e.time.replace('T', " ").trim_end_matches('Z'),
                e.action,
                e.outcome,
                e.target,
                e.who
            );
        }
        Ok(0)
    }
}
