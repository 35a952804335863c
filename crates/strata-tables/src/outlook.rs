//! What a front end shows of the policies ahead of a run (the tables API, its page, `strata
//! tables ... --server`): the policies a filter picks, each table's plan now, and the next
//! partitions that will expire for each policy and when; and an edit previewed (the plan
//! the edited policy would make, nothing written) or saved with the same answer.
//!
//! The plan is [`crate::run::plan_one`]'s, the one a run executes; an edit is
//! [`Engine::edit`]'s: front ends translate, they never plan or write on their own.

use crate::bound::Upper;
use crate::catalog::PolicyEdit;
use crate::discover::TableShape;
use crate::error::TablesResult;
use crate::name::TableName;
use crate::plan::TablePlan;
use crate::policy::{Action, Policy, PolicySpec, TagFilter};
use crate::{run, Engine};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// How many coming expiries are shown per policy: enough to see the rhythm, few enough
/// that a table of a thousand partitions answers in a line or three.
pub const NEXT_PER_POLICY: usize = 3;

/// Which policies a listing or a plan covers; each given part narrows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyFilter {
    /// Policies on this table.
    pub table: Option<TableName>,
    /// This policy.
    pub policy: Option<i64>,
    /// Policies with these tags.
    pub tags: TagFilter,
}

impl PolicyFilter {
    /// The filter of `?table=&policy=&tag=` as given; a table name that does not parse is
    /// bad input.
    pub fn from_words(
        table: Option<&str>,
        policy: Option<i64>,
        tag: Option<&str>,
    ) -> TablesResult<PolicyFilter> {
        Ok(PolicyFilter {
            table: table.map(TableName::parse).transpose()?,
            policy,
            tags: TagFilter {
                tags: tag.map(|t| vec![t.to_string()]).unwrap_or_default(),
                any: false,
            },
        })
    }

    /// Whether `policy` is one of those picked.
    pub fn matches(&self, policy: &Policy) -> bool {
        self.table.as_ref().is_none_or(|t| *t == policy.spec.table)
            && self.policy.is_none_or(|id| id == policy.id)
            && self.tags.matches(&policy.spec.tags)
    }
}

/// A partition that has not expired yet for a policy, and when it will.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = TableExpiry))]
pub struct Expiry {
    /// The policy it expires for.
    pub policy_id: i64,
    /// What the policy does to it then.
    pub action: Action,
    /// The partition, `schema.name`.
    pub partition: String,
    /// The partition's upper bound (RFC 3339, UTC): every row in it is older.
    pub upper: String,
    /// When it expires for the policy: its upper bound plus the policy's duration (a run
    /// from then on acts on it, within the policy's `keep` floor).
    pub at: String,
}

/// One table as a front end shows it: the plan of a run now and what expires next.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TableOutlook {
    /// The table, `schema.table`.
    pub table: String,
    /// What a run now would do (absent when the table could not be planned).
    pub plan: Option<TablePlan>,
    /// The next partitions to expire, soonest first, at most [`NEXT_PER_POLICY`] per
    /// policy.
    pub next: Vec<Expiry>,
    /// Why the table could not be planned (it was dropped, a bound does not parse).
    pub error: Option<String>,
}

/// An edit previewed (`saved` false: nothing was written) or saved.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = TablePolicyEditOutcome))]
pub struct EditOutcome {
    /// Whether the edit was written (false: previewed only).
    pub saved: bool,
    /// The policy as stored before the edit.
    pub before: Policy,
    /// The policy with the edit applied (as stored now, when saved).
    pub policy: Policy,
    /// The policy's table planned with the edited policy among its others.
    pub outlook: TableOutlook,
}

/// A new policy previewed (`saved` false: nothing was written, `policy.id` is 0) or
/// added.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = TablePolicyAddOutcome))]
pub struct AddOutcome {
    /// Whether the policy was written (false: previewed only).
    pub saved: bool,
    /// The policy as stored (or as it would be).
    pub policy: Policy,
    /// The policy's table planned with the new policy among its others.
    pub outlook: TableOutlook,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The partitions of `shape` that have not expired at `now` for each of `policies`, with
/// when they will, soonest first. Downsample policies work on buckets, not partitions
/// (their plan step says how far they got); disabled and `INF` policies never expire
/// anything.
pub fn next_expiries(
    policies: &[Policy],
    shape: &TableShape,
    now: DateTime<Utc>,
    per_policy: usize,
) -> Vec<Expiry> {
    let Some(partitions) = &shape.partitions else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for policy in policies {
        let after = match policy.spec.after.as_chrono() {
            Some(after) if policy.spec.enabled && policy.spec.action != Action::Downsample => after,
            _ => continue,
        };
        let coming = partitions.iter().filter_map(|p| match p.upper() {
            Some(Upper::Before(upper)) => {
                let at = upper.checked_add_signed(after)?;
                (at > now).then(|| Expiry {
                    policy_id: policy.id,
                    action: policy.spec.action,
                    partition: p.name.to_string(),
                    upper: rfc3339(upper),
                    at: rfc3339(at),
                })
            }
            _ => None,
        });
        let mut coming: Vec<Expiry> = coming.collect();
        coming.sort_by(|a, b| a.at.cmp(&b.at));
        out.extend(coming.into_iter().take(per_policy));
    }
    out.sort_by(|a, b| (&a.at, a.policy_id).cmp(&(&b.at, b.policy_id)));
    out
}

impl Engine {
    /// The policies `filter` picks, by id.
    pub async fn policies(&self, filter: &PolicyFilter) -> TablesResult<Vec<Policy>> {
        let all = self.list(&TagFilter::default()).await?;
        Ok(all.into_iter().filter(|p| filter.matches(p)).collect())
    }

    /// Each table of the policies `filter` picks, planned at `now` with its coming
    /// expiries.
    pub async fn outlook(
        &self,
        filter: &PolicyFilter,
        now: DateTime<Utc>,
    ) -> TablesResult<Vec<TableOutlook>> {
        let all = self.list(&TagFilter::default()).await?;
        self.outlook_of(&all, filter, now).await
    }

    /// [`Engine::outlook`] over `all` as given (with an edit not saved in it).
    async fn outlook_of(
        &self,
        all: &[Policy],
        filter: &PolicyFilter,
        now: DateTime<Utc>,
    ) -> TablesResult<Vec<TableOutlook>> {
        let chosen = all.iter().filter(|p| filter.matches(p)).cloned().collect();
        let mut out = Vec::new();
        for (table, policies) in run::by_table(chosen) {
            let planned = run::plan_one(&self.client, &table, &policies, all, now).await;
            out.push(match planned {
                Ok((shape, plan)) => TableOutlook {
                    table: table.to_string(),
                    next: next_expiries(&policies, &shape, now, NEXT_PER_POLICY),
                    plan: Some(plan),
                    error: None,
                },
                Err(err) => TableOutlook {
                    table: table.to_string(),
                    plan: None,
                    next: Vec::new(),
                    error: Some(err.to_string()),
                },
            });
        }
        Ok(out)
    }

    /// The table of `policy` planned now, among `all`.
    async fn outlook_around(&self, all: &[Policy], policy: &Policy) -> TablesResult<TableOutlook> {
        let filter = PolicyFilter {
            table: Some(policy.spec.table.clone()),
            ..Default::default()
        };
        let mut tables = self.outlook_of(all, &filter, Utc::now()).await?;
        Ok(tables.pop().unwrap_or_else(|| TableOutlook {
            table: policy.spec.table.to_string(),
            plan: None,
            next: Vec::new(),
            error: None,
        }))
    }

    /// What adding `spec` would make: the policy, checked against its table as
    /// [`Engine::add`] checks it, and its table's plan with it among the others. Nothing
    /// is written, not even to the audit log.
    pub async fn preview_add(&self, spec: &PolicySpec) -> TablesResult<AddOutcome> {
        spec.validate()?;
        self.check_fits(spec).await?;
        let policy = Policy {
            id: 0,
            spec: spec.clone(),
            created_by: self.who().to_string(),
            created_at: String::new(),
            watermark: None,
        };
        let mut all = self.list(&TagFilter::default()).await?;
        if all
            .iter()
            .any(|p| p.spec.table == spec.table && p.spec.action == spec.action)
        {
            return Err(crate::catalog::already_has(spec));
        }
        all.push(policy.clone());
        let outlook = self.outlook_around(&all, &policy).await?;
        Ok(AddOutcome {
            saved: false,
            policy,
            outlook,
        })
    }

    /// Adds `spec` ([`Engine::add`]: checked, audited as this engine's `who`) and
    /// answers as [`Engine::preview_add`] does, with the policy as stored.
    ///
    /// Once the policy is saved, failing to read it back or to plan its table is no
    /// failure of the add (a retry would find the policy there): the answer is the policy
    /// as given with its id, and the outlook says why it is missing.
    pub async fn save_add(&self, spec: &PolicySpec) -> TablesResult<AddOutcome> {
        let id = self.add(spec).await?;
        let policy = self
            .catalog
            .get(&self.client, id)
            .await
            .unwrap_or_else(|_| Policy {
                id,
                spec: spec.clone(),
                created_by: self.who().to_string(),
                created_at: String::new(),
                watermark: None,
            });
        let outlook = match self.list(&TagFilter::default()).await {
            Ok(all) => self.outlook_around(&all, &policy).await,
            Err(err) => Err(err),
        };
        let outlook = outlook.unwrap_or_else(|err| TableOutlook {
            table: policy.spec.table.to_string(),
            plan: None,
            next: Vec::new(),
            error: Some(format!(
                "policy {id} is saved, but its table was not planned: {err}"
            )),
        });
        Ok(AddOutcome {
            saved: true,
            policy,
            outlook,
        })
    }

    /// What `edit` of policy `id` would make: the edited policy, checked as a saved edit
    /// is (against its tables too when the column or rollup changes), and its table's
    /// plan with it. Nothing is written, not even to the audit log.
    pub async fn preview_edit(&self, id: i64, edit: &PolicyEdit) -> TablesResult<EditOutcome> {
        let before = self.catalog.get(&self.client, id).await?;
        let spec = edit.apply(&before)?;
        if spec.column != before.spec.column || spec.rollup != before.spec.rollup {
            self.check_fits(&spec).await?;
        }
        let mut policy = before.clone();
        policy.spec = spec;
        if edit.reset_watermark {
            policy.watermark = None;
        }
        let mut all = self.list(&TagFilter::default()).await?;
        for stored in all.iter_mut().filter(|p| p.id == id) {
            *stored = policy.clone();
        }
        let outlook = self.outlook_around(&all, &policy).await?;
        Ok(EditOutcome {
            saved: false,
            before,
            policy,
            outlook,
        })
    }

    /// Saves `edit` of policy `id` ([`Engine::edit`]: under the table's lock, audited as
    /// this engine's `who`) and answers as [`Engine::preview_edit`] does.
    pub async fn save_edit(&self, id: i64, edit: &PolicyEdit) -> TablesResult<EditOutcome> {
        let before = self.catalog.get(&self.client, id).await?;
        let policy = self.edit(id, edit).await?;
        let all = self.list(&TagFilter::default()).await?;
        let outlook = self.outlook_around(&all, &policy).await?;
        Ok(EditOutcome {
            saved: true,
            before,
            policy,
            outlook,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bound::Bound;
    use crate::discover::Partition;
    use crate::duration::Retention;
    use crate::policy::PolicySpec;

    fn day(d: u32) -> DateTime<Utc> {
        crate::parse_cutoff(&format!("2026-01-{d:02}")).unwrap()
    }

    fn shape() -> TableShape {
        let partition = |d: u32| Partition {
            name: TableName::new("s", format!("t_{d:02}")),
            bound_text: String::new(),
            bound: Bound::Range {
                lower: crate::bound::Lower::From(day(d)),
                upper: Upper::Before(day(d + 1)),
            },
            bytes: 0,
            tablespace: None,
        };
        TableShape {
            table: TableName::new("s", "t"),
            oid: 1,
            columns: Vec::new(),
            partitions: Some((1..=9).map(partition).collect()),
            partition_key: Some("ts".into()),
            partman_retention: None,
            inheritance_children: Vec::new(),
        }
    }

    fn policy(id: i64, action: Action, days: i64) -> Policy {
        let mut spec = PolicySpec::new(
            TableName::new("s", "t"),
            "ts",
            action,
            Retention::After(days * 86_400),
        );
        spec.tablespace = Some("slow".into());
        Policy {
            id,
            spec,
            created_by: String::new(),
            created_at: String::new(),
            watermark: None,
        }
    }

    #[test]
    fn the_next_expiries_are_upper_bound_plus_duration_soonest_first() {
        let policies = [
            policy(1, Action::Delete, 3),
            policy(2, Action::Reallocate, 1),
        ];
        let next = next_expiries(&policies, &shape(), day(5), 2);
        let got: Vec<(i64, &str, &str)> = next
            .iter()
            .map(|e| (e.policy_id, e.partition.as_str(), e.at.as_str()))
            .collect();
        // t_04 ends on the 5th: for the 1-day policy it expires on the 6th; t_02 (ends on
        // the 3rd) has expired for the 3-day one at the 6th, not before: the 5th is past.
        assert_eq!(
            got,
            [
                (1, "s.t_02", "2026-01-06T00:00:00Z"),
                (2, "s.t_04", "2026-01-06T00:00:00Z"),
                (1, "s.t_03", "2026-01-07T00:00:00Z"),
                (2, "s.t_05", "2026-01-07T00:00:00Z"),
            ]
        );
        let mut off = policy(3, Action::Delete, 1);
        off.spec.enabled = false;
        assert!(next_expiries(&[off], &shape(), day(5), 2).is_empty());
    }

    #[test]
    fn filters_narrow_by_table_policy_and_tag() {
        let mut tagged = policy(7, Action::Delete, 1);
        tagged.spec.tags = vec!["nightly".into()];
        let all = PolicyFilter::default();
        assert!(all.matches(&tagged));
        let by_words = |t: Option<&str>, p: Option<i64>, g: Option<&str>| {
            PolicyFilter::from_words(t, p, g).unwrap().matches(&tagged)
        };
        assert!(by_words(Some("s.t"), Some(7), Some("nightly")));
        assert!(!by_words(Some("s.other"), None, None));
        assert!(!by_words(None, Some(8), None));
        assert!(!by_words(None, None, Some("weekly")));
        assert!(PolicyFilter::from_words(Some("a.b.c"), None, None).is_err());
    }
}
