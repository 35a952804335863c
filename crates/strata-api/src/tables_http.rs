//! [`Tables`] over HTTP: one request per call to `/api/v1/tables/...`, after checking the
//! server offers `table-policies` (and for adding, removing and running policies
//! `table-changes`; an older server is refused naming both versions). What the API cannot
//! carry (several tags to filter on, a plan at another time, a CrateDB plan) is refused
//! before any request, as bad input.

use crate::events::encode_query;
use crate::failure::{CoordinatorError, ErrorCode};
use crate::tables::{TablePlans, Tables, TablesOutcome};
use crate::types::feature;
use crate::types::tables::{
    TableHistoryQuery, TablePolicyEdit, TablePolicyNew, TablePolicyQuery, TableRunBody,
};
use crate::Http;
use async_trait::async_trait;
use strata_coordinator::CoordinatorResult;
use strata_tables::command::CrateArgs;
use strata_tables::history::HistoryEntry;
use strata_tables::policy_args::{PolicyArgs, PolicyEditArgs};
use strata_tables::run::RunObserver;
use strata_tables::{AddOutcome, EditOutcome, Policy, RunReport, TableOutlook};
use strata_tables::{TablesError, TagFilter};

/// `?a=1&b=x` of the parameters that are given (none: the empty string).
fn query(pairs: &[(&str, Option<String>)]) -> String {
    let given: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode_query(v))))
        .collect();
    if given.is_empty() {
        String::new()
    } else {
        format!("?{}", given.join("&"))
    }
}

fn policy_query(q: &TablePolicyQuery) -> String {
    query(&[
        ("table", q.table.clone()),
        ("policy", q.policy.map(|p| p.to_string())),
        ("tag", q.tag.clone()),
    ])
}

/// The one tag the API filters on; several tags (or `--any-tag`) are for the command run
/// here.
fn one_tag(tags: TagFilter) -> Result<TablePolicyQuery, TablesError> {
    if tags.any || tags.tags.len() > 1 {
        return Err(TablesError::Unsupported(
            "with --server, give at most one --tag (and no --any-tag)".into(),
        ));
    }
    Ok(TablePolicyQuery {
        tag: tags.tags.into_iter().next(),
        ..Default::default()
    })
}

/// `?dry_run=true` for a preview, else nothing.
fn dry(dry_run: bool) -> &'static str {
    if dry_run {
        "?dry_run=true"
    } else {
        ""
    }
}

impl Http {
    async fn table_policies(&self, q: &TablePolicyQuery) -> CoordinatorResult<Vec<Policy>> {
        let path = format!("/api/v1/tables/policies{}", policy_query(q));
        self.get(feature::TABLE_POLICIES, &path).await
    }

    async fn table_edit(
        &self,
        id: i64,
        edit: PolicyEditArgs,
        dry_run: bool,
    ) -> CoordinatorResult<EditOutcome> {
        let path = format!("/api/v1/tables/policies/{id}{}", dry(dry_run));
        let body = TablePolicyEdit::from_args(edit);
        self.patch(feature::TABLE_POLICIES, &path, &body).await
    }

    async fn table_add(&self, policy: PolicyArgs, dry_run: bool) -> CoordinatorResult<AddOutcome> {
        let path = format!("/api/v1/tables/policies{}", dry(dry_run));
        let body = TablePolicyNew::from_args(policy);
        self.post(feature::TABLE_CHANGES, &path, &body).await
    }

    async fn table_remove(&self, id: i64) -> CoordinatorResult<Policy> {
        let path = format!("/api/v1/tables/policies/{id}");
        self.send(
            feature::TABLE_CHANGES,
            reqwest::Method::DELETE,
            &path,
            None::<&()>,
        )
        .await
    }
}

#[async_trait]
impl Tables for Http {
    async fn policies(&self, tags: TagFilter) -> TablesOutcome<Vec<Policy>> {
        Ok(self.table_policies(&one_tag(tags)?).await?)
    }

    async fn plan(
        &self,
        tags: TagFilter,
        cutoff: Option<String>,
        layout: CrateArgs,
    ) -> TablesOutcome<TablePlans> {
        if cutoff.is_some() || layout.dialect.is_some() {
            return Err(TablesError::Unsupported(
                "with --server, tables plan plans now, on the server's database: leave out --cutoff and --dialect (or --server)".into(),
            )
            .into());
        }
        let path = format!("/api/v1/tables/plan{}", policy_query(&one_tag(tags)?));
        let plans: Vec<TableOutlook> = self.get(feature::TABLE_POLICIES, &path).await?;
        Ok(TablePlans::Outlook(plans))
    }

    async fn history(&self, q: TableHistoryQuery) -> TablesOutcome<Vec<HistoryEntry>> {
        let path = format!(
            "/api/v1/tables/history{}",
            query(&[
                ("table", q.table),
                ("policy", q.policy.map(|p| p.to_string())),
                ("tag", q.tag),
                ("since", q.since),
                ("until", q.until),
                ("limit", q.limit.map(|l| l.to_string())),
            ])
        );
        Ok(self.get(feature::TABLE_POLICIES, &path).await?)
    }

    async fn preview_edit(&self, id: i64, edit: PolicyEditArgs) -> TablesOutcome<EditOutcome> {
        Ok(self.table_edit(id, edit, true).await?)
    }

    async fn edit(&self, id: i64, edit: PolicyEditArgs) -> TablesOutcome<Policy> {
        Ok(self.table_edit(id, edit, false).await?.policy)
    }

    async fn preview_add(&self, policy: PolicyArgs) -> TablesOutcome<AddOutcome> {
        Ok(self.table_add(policy, true).await?)
    }

    async fn add(&self, policy: PolicyArgs) -> TablesOutcome<Policy> {
        Ok(self.table_add(policy, false).await?.policy)
    }

    async fn remove(
        &self,
        id: Option<i64>,
        tags: TagFilter,
        removed: &mut (dyn FnMut(Policy) + Send),
    ) -> TablesOutcome<()> {
        // By id, or each policy the tags pick (as `tables rm` here picks them), one
        // request each: the server removes each under its table's lock.
        let picked = match id {
            Some(id) => vec![id],
            None => self
                .table_policies(&TablePolicyQuery::default())
                .await?
                .into_iter()
                .filter(|p| tags.matches(&p.spec.tags))
                .map(|p| p.id)
                .collect(),
        };
        for policy in picked {
            match self.table_remove(policy).await {
                Ok(gone) => removed(gone),
                // Removed by someone else since the listing: gone all the same.
                Err(CoordinatorError::Api(e)) if id.is_none() && e.code == ErrorCode::NotFound => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(())
    }

    async fn run(
        &self,
        tags: TagFilter,
        cutoff: Option<String>,
        dry_run: bool,
        _observer: &dyn RunObserver,
    ) -> TablesOutcome<RunReport> {
        let body = TableRunBody {
            tags: tags.tags,
            any_tag: tags.any,
            cutoff,
            dry_run,
        };
        Ok(self
            .post(feature::TABLE_CHANGES, "/api/v1/tables/run", &body)
            .await?)
    }
}
