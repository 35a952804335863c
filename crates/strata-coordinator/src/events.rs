//! One place where the end of every mutating action is reported: to the audit log in the
//! repository and to the webhooks that want it.
//!
//! The CLI, the API and the scheduler all act through the same library calls; they hand
//! [`Events`] who asked, and it records the rest. Neither an audit write that fails nor a
//! webhook that is down changes the action's outcome: both are reported as warnings.

use crate::audit::{self, AuditEntry};
use crate::webhooks::{WebhookEvent, Webhooks, KINDS};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strata_repo::Repository;
use tokio::task::JoinHandle;

/// The reporting side of a process: its webhooks and the deliveries still in flight.
pub struct Events {
    webhooks: Arc<Webhooks>,
    in_flight: Mutex<Vec<JoinHandle<()>>>,
}

/// One finished (or started) action, as the audit log and webhooks see it.
#[derive(Debug, Clone)]
pub struct Activity<'a> {
    /// Who asked: `token:<name>`, `local:<user>@<host>`, `scheduler:<job>`.
    pub who: &'a str,
    /// `backup`, `restore`, `cleanup`, `verify`, `delete`, `gc`, `pin`, `unpin`, `copy`, ...
    pub kind: &'a str,
    /// What it acted on: a backup name or `all`.
    pub target: &'a str,
    /// The coordinator operation, when there is one.
    pub operation: Option<&'a str>,
}

impl Events {
    /// Reporting to `webhooks` (and the audit log of whichever repository is acted on).
    pub fn new(webhooks: Arc<Webhooks>) -> Arc<Events> {
        Arc::new(Events {
            webhooks,
            in_flight: Mutex::new(Vec::new()),
        })
    }

    /// No webhooks; the audit log only.
    pub fn audit_only() -> Arc<Events> {
        Events::new(Webhooks::none())
    }

    /// The webhooks, for their delivery counters.
    pub fn webhooks(&self) -> &Arc<Webhooks> {
        &self.webhooks
    }

    fn send(&self, action: &Activity<'_>, storage: &str, phase: &str, detail: &str) {
        if !KINDS.contains(&action.kind) {
            return;
        }
        let mut event = WebhookEvent::new(action.kind, phase, storage, action.target, action.who);
        event.operation = action.operation.map(str::to_string);
        event.detail = detail.to_string();
        let tasks = self.webhooks.emit(&event);
        let mut in_flight = self.in_flight.lock().unwrap();
        in_flight.retain(|t| !t.is_finished());
        in_flight.extend(tasks);
    }

    /// Tells the webhooks how `action` went (`phase`: started, succeeded, failed, partial)
    /// without an audit entry in a repository: for actions recorded elsewhere, such as
    /// table retention runs, which the database's own audit table records.
    pub fn notify(&self, action: &Activity<'_>, storage: &str, phase: &str, detail: &str) {
        self.send(action, storage, phase, detail);
    }

    /// Tells the webhooks that `action` started (the audit log records only ends).
    pub fn started(&self, action: &Activity<'_>, storage: &str) {
        self.send(action, storage, "started", "");
    }

    /// Records how `action` ended (`succeeded`, `partial`, `failed`) in the audit log of
    /// `repo` and tells the webhooks.
    pub async fn finished(
        &self,
        repo: &Repository,
        storage: &str,
        action: &Activity<'_>,
        outcome: &str,
        detail: &str,
    ) {
        self.send(action, storage, outcome, detail);
        let entry = AuditEntry::now(action.who, action.kind, action.target, outcome, detail);
        if let Err(err) = audit::record(repo, &entry).await {
            eprintln!(
                "strata: warning: cannot write the audit log entry for {} {}: {}",
                action.kind,
                action.target,
                crate::error_chain(&err)
            );
        }
    }

    /// Waits up to `limit` for deliveries still in flight: a CLI calls this before it
    /// exits so its events are not dropped with the process.
    pub async fn flush(&self, limit: Duration) {
        let tasks: Vec<_> = std::mem::take(&mut *self.in_flight.lock().unwrap());
        let all = futures_join(tasks);
        let _ = tokio::time::timeout(limit, all).await;
    }
}

async fn futures_join(tasks: Vec<JoinHandle<()>>) {
    for task in tasks {
        let _ = task.await;
    }
}

/// How a run ended, as the webhooks' phase says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// It did what it was asked.
    Succeeded,
    /// Something was skipped (another run held it): the rest was done.
    Partial,
    /// It failed.
    Failed,
}

impl Ending {
    /// `succeeded`, `partial` or `failed`.
    pub fn phase(self) -> &'static str {
        match self {
            Ending::Succeeded => "succeeded",
            Ending::Partial => "partial",
            Ending::Failed => "failed",
        }
    }
}

/// A table retention run told to the webhooks (kind `tables`): `started` when it is made,
/// then how it ended. Runs are audited in the database's own audit table; every front end
/// that starts one (the CLI's `strata tables run`, the scheduler's `tables` jobs) reports
/// it through this, so the webhooks hear of every run whoever started it.
pub struct TablesRunReport {
    events: Arc<Events>,
    who: String,
    target: String,
}

impl TablesRunReport {
    /// Tells the webhooks that `who` started a run on database `target`.
    pub fn start(events: Arc<Events>, who: &str, target: &str) -> TablesRunReport {
        let report = TablesRunReport {
            events,
            who: who.to_string(),
            target: target.to_string(),
        };
        report.tell("started", "");
        report
    }

    /// How the run ended, with its line (or why it failed).
    pub fn end(&self, ending: Ending, detail: &str) {
        self.tell(ending.phase(), detail);
    }

    fn tell(&self, phase: &str, detail: &str) {
        let action = Activity {
            who: &self.who,
            kind: "tables",
            target: &self.target,
            operation: None,
        };
        self.events.notify(&action, "", phase, detail);
    }
}
