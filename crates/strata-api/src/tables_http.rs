//! [`Tables`] over HTTP: one request per call to `/api/v1/tables/...`, after checking the
//! server offers `table-policies` (and for adding, removing and running policies
//! `table-changes`; an older server is refused naming both versions).

use crate::client::Tables;
use crate::events::encode_query;
use crate::types::feature;
use crate::types::tables::{
    TableHistoryQuery, TablePolicyEdit, TablePolicyNew, TablePolicyQuery, TableRunBody,
};
use crate::Http;
use async_trait::async_trait;
use strata_coordinator::CoordinatorResult;
use strata_tables::history::HistoryEntry;
use strata_tables::{AddOutcome, EditOutcome, Policy, RunReport, TableOutlook};

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

#[async_trait]
impl Tables for Http {
    async fn table_policies(&self, q: &TablePolicyQuery) -> CoordinatorResult<Vec<Policy>> {
        let path = format!("/api/v1/tables/policies{}", policy_query(q));
        self.get(feature::TABLE_POLICIES, &path).await
    }

    async fn table_plan(&self, q: &TablePolicyQuery) -> CoordinatorResult<Vec<TableOutlook>> {
        let path = format!("/api/v1/tables/plan{}", policy_query(q));
        self.get(feature::TABLE_POLICIES, &path).await
    }

    async fn table_history(&self, q: &TableHistoryQuery) -> CoordinatorResult<Vec<HistoryEntry>> {
        let path = format!(
            "/api/v1/tables/history{}",
            query(&[
                ("table", q.table.clone()),
                ("policy", q.policy.map(|p| p.to_string())),
                ("tag", q.tag.clone()),
                ("since", q.since.clone()),
                ("until", q.until.clone()),
                ("limit", q.limit.map(|l| l.to_string())),
            ])
        );
        self.get(feature::TABLE_POLICIES, &path).await
    }

    async fn table_edit(
        &self,
        id: i64,
        edit: &TablePolicyEdit,
        dry_run: bool,
    ) -> CoordinatorResult<EditOutcome> {
        let dry = if dry_run { "?dry_run=true" } else { "" };
        let path = format!("/api/v1/tables/policies/{id}{dry}");
        self.patch(feature::TABLE_POLICIES, &path, edit).await
    }

    async fn table_add(
        &self,
        policy: &TablePolicyNew,
        dry_run: bool,
    ) -> CoordinatorResult<AddOutcome> {
        let dry = if dry_run { "?dry_run=true" } else { "" };
        let path = format!("/api/v1/tables/policies{dry}");
        self.post(feature::TABLE_CHANGES, &path, policy).await
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

    async fn table_run(&self, run: &TableRunBody) -> CoordinatorResult<RunReport> {
        self.post(feature::TABLE_CHANGES, "/api/v1/tables/run", run)
            .await
    }
}
