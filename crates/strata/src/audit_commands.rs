//! The audit log from the command line: local actions record themselves (as
//! `local:<user>@<host>`), and `strata audit` reads the log of a repository, or of the
//! server with `--server`.

use crate::commands::{print_json, CommandResult, Context};
use crate::failure::Failure;
use strata_coordinator::audit;
use strata_coordinator::events::Action;
use strata_repo::Repository;

impl Context {
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
        self.local
            .events()?
            .finished(repo, storage, &action, outcome, &detail)
            .await;
        result
    }

    /// `strata audit`.
    pub(crate) async fn audit(&self, since: Option<&str>, limit: u32) -> CommandResult {
        let entries = self.cluster().audit(since, limit).await?;
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
