//! `strata tables list|plan|history|add|edit|rm|run --server URL`: the same commands through a
//! server's tables API (`/api/v1/tables`) instead of a database connection here. The
//! server opens its own `[tables] db` and records edits as the token's name; the answers
//! are the engine's own types, printed as the in-process commands print them.

use crate::context::{CommandResult, Context};
use crate::failure::{code, Failure};
use strata_api::failure::CoordinatorError;
use strata_api::failure::ErrorCode;
use strata_api::types::tables::{
    TableHistoryQuery, TablePolicyEdit, TablePolicyNew, TablePolicyQuery, TableRunBody,
};
use strata_api::Tables;
use strata_tables::command::TablesCommand;
use strata_tables::TagFilter;

/// The one tag the API filters on; several tags (or `--any-tag`) are for the command run
/// here.
fn one_tag(tags: TagFilter) -> Result<Option<String>, Failure> {
    if tags.any || tags.tags.len() > 1 {
        return Err(Failure::new(
            code::USAGE,
            "with --server, give at most one --tag (and no --any-tag)",
        ));
    }
    Ok(tags.tags.into_iter().next())
}

impl Context {
    /// `strata tables ... --server URL`.
    pub(crate) async fn tables_through(
        &self,
        server: &dyn Tables,
        command: TablesCommand,
    ) -> CommandResult {
        match command {
            TablesCommand::List { tags } => {
                let query = TablePolicyQuery {
                    tag: one_tag(tags)?,
                    ..Default::default()
                };
                self.print_policies(&server.table_policies(&query).await?);
                Ok(0)
            }
            TablesCommand::Plan {
                tags,
                cutoff,
                crate_layout,
            } => {
                if cutoff.is_some() || crate_layout.dialect.is_some() {
                    return Err(Failure::new(
                        code::USAGE,
                        "with --server, tables plan plans now, on the server's database: leave out --cutoff and --dialect (or --server)",
                    ));
                }
                let query = TablePolicyQuery {
                    tag: one_tag(tags)?,
                    ..Default::default()
                };
                let tables = server.table_plan(&query).await?;
                if self.global.json {
                    crate::output::print_json(&tables);
                } else {
                    self.print_outlooks(&tables);
                }
                if tables.is_empty() {
                    self.say("no policy matched");
                }
                let failed = tables.iter().any(|t| {
                    t.error.is_some() || t.plan.as_ref().is_some_and(|p| !p.problems.is_empty())
                });
                Ok(if failed { code::FAILED } else { 0 })
            }
            TablesCommand::History {
                table,
                policy,
                tag,
                since,
                until,
                limit,
            } => {
                let query = TableHistoryQuery {
                    table,
                    policy,
                    tag,
                    since,
                    until,
                    limit: Some(limit),
                };
                self.print_history(&server.table_history(&query).await?);
                Ok(0)
            }
            TablesCommand::Edit { id, dry_run, edit } => {
                let body = TablePolicyEdit::from_args(*edit);
                let outcome = server.table_edit(id, &body, dry_run).await?;
                if dry_run {
                    self.print_edit(&outcome);
                } else {
                    self.print_edited(&outcome.policy);
                }
                Ok(0)
            }
            TablesCommand::Add { policy, dry_run } => {
                let body = TablePolicyNew::from_args(*policy);
                let outcome = server.table_add(&body, dry_run).await?;
                if dry_run {
                    self.print_add(&outcome);
                } else {
                    self.print_added(outcome.policy.id, &outcome.policy.spec);
                }
                Ok(0)
            }
            TablesCommand::Rm { id, tags } => {
                // By id, or each policy the tags pick (as `tables rm` here picks them),
                // one request each: the server removes each under its table's lock.
                let picked = match id {
                    Some(id) => vec![id],
                    None => server
                        .table_policies(&TablePolicyQuery::default())
                        .await?
                        .into_iter()
                        .filter(|p| tags.matches(&p.spec.tags))
                        .map(|p| p.id)
                        .collect(),
                };
                let mut removed = Vec::with_capacity(picked.len());
                for policy in picked {
                    match server.table_remove(policy).await {
                        Ok(gone) => removed.push(gone),
                        // Removed by someone else since the listing: gone all the same.
                        Err(CoordinatorError::Api(e))
                            if id.is_none() && e.code == ErrorCode::NotFound => {}
                        Err(err) => {
                            // What went before the failure is gone: say so first.
                            if !removed.is_empty() {
                                self.print_removed(&removed);
                            }
                            return Err(err.into());
                        }
                    }
                }
                self.print_removed(&removed);
                Ok(0)
            }
            TablesCommand::Run {
                tags,
                cutoff,
                dry_run,
            } => {
                let body = TableRunBody {
                    tags: tags.tags,
                    any_tag: tags.any,
                    cutoff,
                    dry_run,
                };
                Ok(self.print_run(&server.table_run(&body).await?))
            }
            _ => Err(Failure::new(
                code::USAGE,
                "only tables list, plan, history, add, edit, rm and run go through --server: run the others here, without --server",
            )),
        }
    }
}
