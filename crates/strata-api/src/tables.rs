//! Table lifecycle, one interface whatever carries it: [`crate::TablesHere`] runs the
//! use cases on this host, against the database of `[tables]` (with the command line's
//! choices), and [`crate::Http`] asks a `strata server`'s `/api/v1/tables`. The CLI
//! holds a `&dyn Tables`, so `strata tables list|plan|history|add|edit|rm|run` is written
//! once whether `--server` is given or not; both answer with the engine's own types.

use crate::failure::{CoordinatorError, ErrorCode};
use crate::types::tables::TableHistoryQuery;
use async_trait::async_trait;
use serde::Serialize;
use strata_coordinator::config::ConfigError;
use strata_tables::command::CrateArgs;
use strata_tables::cratedb::CratePlan;
use strata_tables::history::HistoryEntry;
use strata_tables::policy_args::{PolicyArgs, PolicyEditArgs};
use strata_tables::run::RunObserver;
use strata_tables::{AddOutcome, EditOutcome, Policy, RunReport, TableOutlook, TablesError};
use strata_tables::{PlannedTable, TagFilter};

/// Why a table lifecycle call failed: the engine's own failure (here, or refused before
/// the request left), the server's answer, or the configuration of what a run reports to.
#[derive(Debug, thiserror::Error)]
pub enum TablesFailure {
    /// The engine's failure, or a request the transport cannot carry.
    #[error(transparent)]
    Engine(#[from] TablesError),
    /// What the server answered (or why it could not be asked).
    #[error(transparent)]
    Server(#[from] CoordinatorError),
    /// The configuration's webhooks, which a run reports to, do not read.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl TablesFailure {
    /// The failure's kind as the API names it: the same whether it happened here or a
    /// server answered it, so a caller (the CLI's exit code) treats both alike.
    pub fn code(&self) -> ErrorCode {
        match self {
            TablesFailure::Engine(err) => err.code(),
            TablesFailure::Server(err) => err.code(),
            TablesFailure::Config(_) => ErrorCode::BadRequest,
        }
    }
}

/// What a table lifecycle call returns.
pub type TablesOutcome<T> = Result<T, TablesFailure>;

/// What `strata tables plan` answers: a run's plan at a cutoff (here), each table's plan
/// now and its coming expiries (a server), or a CrateDB table's plan from its layout
/// (`--dialect cratedb`, no database asked).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum TablePlans {
    /// Each table's plan at the cutoff asked for.
    Planned(Vec<PlannedTable>),
    /// Each table's plan now, with the partitions that expire next.
    Outlook(Vec<TableOutlook>),
    /// The partitions of a CrateDB layout and every statement a run sends.
    Crate(CratePlan),
}

impl TablePlans {
    /// Each table's plan as an outlook (no coming expiries for a plan at a cutoff);
    /// nothing for a CrateDB plan, which is no table of a database.
    pub fn outlooks(&self) -> Vec<TableOutlook> {
        match self {
            TablePlans::Planned(planned) => planned
                .iter()
                .map(|p| TableOutlook {
                    table: p.table.clone(),
                    plan: p.plan.clone(),
                    next: Vec::new(),
                    error: p.error.clone(),
                })
                .collect(),
            TablePlans::Outlook(outlooks) => outlooks.clone(),
            TablePlans::Crate(_) => Vec::new(),
        }
    }

    /// Whether no policy matched (a CrateDB plan always has its one table).
    pub fn is_empty(&self) -> bool {
        match self {
            TablePlans::Planned(planned) => planned.is_empty(),
            TablePlans::Outlook(outlooks) => outlooks.is_empty(),
            TablePlans::Crate(_) => false,
        }
    }

    /// Whether planning a table failed or found a problem with its policies: `plan`
    /// then exits non-zero.
    pub fn failed(&self) -> bool {
        self.outlooks()
            .iter()
            .any(|t| t.error.is_some() || t.plan.as_ref().is_some_and(|p| !p.problems.is_empty()))
    }
}

/// The table lifecycle commands that run here and through a server alike, one method
/// per use case, taking the words of the command line (each transport reads them as the
/// engine reads them: here the engine itself, there the server).
#[async_trait]
pub trait Tables: Send + Sync {
    /// `strata tables list`: the policies the tags pick.
    async fn policies(&self, tags: TagFilter) -> TablesOutcome<Vec<Policy>>;

    /// `strata tables plan`: what a run at `cutoff` (default: now) would do, table by
    /// table; with a CrateDB `layout`, that table's plan.
    async fn plan(
        &self,
        tags: TagFilter,
        cutoff: Option<String>,
        layout: CrateArgs,
    ) -> TablesOutcome<TablePlans>;

    /// `strata tables history`: runs, steps and policy changes, newest first.
    async fn history(&self, query: TableHistoryQuery) -> TablesOutcome<Vec<HistoryEntry>>;

    /// `strata tables edit --dry-run`: the policy edited and the plan of its table with
    /// it; nothing saved.
    async fn preview_edit(&self, id: i64, edit: PolicyEditArgs) -> TablesOutcome<EditOutcome>;

    /// `strata tables edit`: saves the edit of policy `id`; answers the policy as it now
    /// is.
    async fn edit(&self, id: i64, edit: PolicyEditArgs) -> TablesOutcome<Policy>;

    /// `strata tables add --dry-run`: the new policy and the plan of its table with it;
    /// nothing saved.
    async fn preview_add(&self, policy: PolicyArgs) -> TablesOutcome<AddOutcome>;

    /// `strata tables add`: saves the policy; answers it with its id.
    async fn add(&self, policy: PolicyArgs) -> TablesOutcome<Policy>;

    /// `strata tables rm`: policy `id`, or every policy the tags pick, each under its
    /// table's lock; `removed` hears of each one gone (also of those gone before a
    /// failure).
    async fn remove(
        &self,
        id: Option<i64>,
        tags: TagFilter,
        removed: &mut (dyn FnMut(Policy) + Send),
    ) -> TablesOutcome<()>;

    /// `strata tables run`: applies the policies the tags pick as of `cutoff` (default:
    /// now), telling `observer` of each step where it runs here; answers once the run is
    /// over.
    async fn run(
        &self,
        tags: TagFilter,
        cutoff: Option<String>,
        dry_run: bool,
        observer: &dyn RunObserver,
    ) -> TablesOutcome<RunReport>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_fails_on_a_table_error_or_a_policy_problem_whichever_transport_planned_it() {
        let planned = |error: Option<&str>| PlannedTable {
            table: "public.events".into(),
            plan: None,
            error: error.map(String::from),
        };
        let fine = TablePlans::Planned(vec![planned(None)]);
        assert!(!fine.failed() && !fine.is_empty());
        assert!(fine.outlooks()[0].next.is_empty());
        let broken = TablePlans::Planned(vec![planned(Some("table is gone"))]);
        assert!(broken.failed());
        let outlook = TablePlans::Outlook(broken.outlooks());
        assert!(outlook.failed());
        assert!(TablePlans::Outlook(Vec::new()).is_empty());
        // The JSON is the list itself, as before there were two transports.
        let json = serde_json::to_value(&fine).unwrap();
        assert_eq!(json[0]["table"], "public.events");
    }

    #[test]
    fn a_failure_has_the_code_of_its_kind() {
        let engine = TablesFailure::from(TablesError::NoSuchPolicy(7));
        assert_eq!(engine.code(), ErrorCode::NotFound);
        let server = TablesFailure::from(CoordinatorError::Busy("held".into()));
        assert_eq!(server.code(), ErrorCode::Busy);
    }
}
