//! Planning: which partitions each policy of a table acts on at a cutoff. Pure: the same
//! policies, shape and cutoff always give the same plan, which is what `plan` and
//! `run --dry-run` show and what `run` executes.
//!
//! Rules:
//! - a partition expires for a policy when its UPPER bound is at or before
//!   `cutoff - after`: every row in it is older than the retention (never on its start);
//! - the default partition and unbounded ones never expire;
//! - a table's policies apply in order of their duration; a partition that a removing
//!   action (delete, detach, archive) takes gets only that action (the one with the
//!   shortest duration, the one that would have acted first), else the non-removing action
//!   with the longest duration (reallocate to the tier it should be in by now);
//! - removal goes oldest first and stops before the table would keep fewer than
//!   `max(1, keep)` partitions whose period has begun by the cutoff (the default
//!   partition, `MAXVALUE` catch-alls and partitions made ahead for the future do not
//!   count): the newest partition that has begun is never removed;
//! - a partition already in the target tablespace is not moved again;
//! - a `downsample` policy rolls up every whole bucket that ended at or before
//!   `cutoff - after` and after its watermark (minus the lookback), but never past the
//!   watermark of the level that fills its table; its step comes first;
//! - data is only removed once every downsample policy of its table has rolled it up and
//!   it is out of the lookback, whether that policy takes part in this run or not (left
//!   out by the tags, disabled, or paused with `INF`): removal never outruns a rollup;
//! - row deletes cut on a bucket start of every downsample policy of the table, so the
//!   oldest bucket left in the source is whole.

use crate::bound::Upper;
use crate::discover::{is_time_type, Partition, TableShape};
use crate::policy::{Action, Policy};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a step does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = TableStepKind))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepKind {
    /// Detach and drop a partition.
    DropPartition,
    /// Detach a partition, and move it to `schema` when given.
    DetachPartition {
        /// The schema the detached partition moves to; `None`: it stays in its own.
        schema: Option<String>,
    },
    /// Move a partition (and its indexes) to a tablespace.
    MoveTablespace {
        /// The tablespace it moves to.
        tablespace: String,
    },
    /// Export a partition to a storage, verify, drop.
    ArchivePartition {
        /// The storage of strata's configuration the partition goes to.
        target: String,
        /// How it is stored.
        format: crate::policy::ArchiveFormat,
    },
    /// Delete rows older than `before` from an unpartitioned table, in batches.
    DeleteRows {
        /// The time column compared.
        column: String,
        /// Rows whose time is before this go (RFC 3339).
        before: String,
    },
    /// Aggregate the rows in [`from`, `to`) into the rollup table and move the watermark to
    /// `to` (`from` absent: from the first row).
    Rollup {
        /// The rollup table.
        into: String,
        /// The first bucket rolled up (RFC 3339); `None`: from the first row.
        from: Option<String>,
        /// The end (exclusive, RFC 3339): the new watermark.
        to: String,
    },
}

impl Step {
    /// What the step acts on, for messages: the partition, the rollup table, or `rows`.
    pub fn object(&self) -> String {
        match (&self.partition, &self.kind) {
            (Some(p), _) => p.clone(),
            (None, StepKind::Rollup { into, .. }) => format!("into {into}"),
            (None, _) => "rows".into(),
        }
    }
}

/// One thing a run does.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = TableStep))]
pub struct Step {
    /// The policy the step carries out.
    pub policy_id: i64,
    /// The policy's action.
    pub action: Action,
    /// What the step does.
    #[serde(flatten)]
    pub kind: StepKind,
    /// The partition acted on (absent for row deletes).
    pub partition: Option<String>,
    /// Its upper bound as PostgreSQL prints it.
    pub bound: Option<String>,
    /// Its size now; for a row delete, an estimate (see `rows_estimate`).
    pub bytes: Option<i64>,
    /// A row delete: about how many rows it deletes, from the planner's statistics (not a
    /// count: `plan` must stay cheap on a large table). `bytes` is then this share of the
    /// table's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_estimate: Option<i64>,
}

/// A partition that expired for a policy but is left alone, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = TableKept))]
pub struct Kept {
    /// The policy it expired for.
    pub policy_id: i64,
    /// The partition left alone.
    pub partition: String,
    /// Why it is left alone (the policy's `keep` floor, a rollup that has not read it yet).
    pub reason: String,
}

/// The plan of one table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TablePlan {
    /// The table, `schema.table`.
    pub table: String,
    /// What a run does, in order.
    pub steps: Vec<Step>,
    /// Expired partitions left alone.
    pub kept: Vec<Kept>,
    /// Warnings an operator should read (partman's own retention, ...).
    pub notes: Vec<String>,
    /// Why the table cannot be acted on at all (bad policy for this table).
    pub problems: Vec<String>,
}

/// The instant before which a policy's data has expired.
pub fn threshold(cutoff: DateTime<Utc>, policy: &Policy) -> Option<DateTime<Utc>> {
    let after = policy.spec.after.as_chrono()?;
    cutoff.checked_sub_signed(after)
}

fn expired(partition: &Partition, threshold: DateTime<Utc>) -> bool {
    matches!(partition.upper(), Some(Upper::Before(upper)) if upper <= threshold)
}

/// Plans the policies of one table (all of `policies` are on `shape.table`), every one of
/// them taking part. `filled_until` is, when another policy's downsample fills this table,
/// how far that one has got: this table's own rollup never reads past it.
pub fn plan_table(
    policies: &[Policy],
    shape: &TableShape,
    cutoff: DateTime<Utc>,
    filled_until: Option<DateTime<Utc>>,
) -> TablePlan {
    plan_selected(policies, &|_| true, shape, cutoff, filled_until)
}

/// Plans the policies of one table that `selected` picks (a run's tag filter), given
/// every policy of the table in `policies`: those left out take no step, but a downsample
/// policy among them still holds back the removal of data it has not rolled up.
pub fn plan_selected(
    policies: &[Policy],
    selected: &dyn Fn(&Policy) -> bool,
    shape: &TableShape,
    cutoff: DateTime<Utc>,
    filled_until: Option<DateTime<Utc>>,
) -> TablePlan {
    let mut plan = TablePlan {
        table: shape.table.to_string(),
        steps: Vec::new(),
        kept: Vec::new(),
        notes: Vec::new(),
        problems: Vec::new(),
    };
    let mut active: Vec<&Policy> = policies
        .iter()
        .filter(|p| selected(p) && p.spec.enabled && p.spec.after.seconds().is_some())
        .collect();
    active.sort_by_key(|p| (p.spec.after, p.spec.action));
    for policy in &active {
        if let Some(problem) = check_policy(policy, shape) {
            plan.problems.push(problem);
        }
    }
    if !plan.problems.is_empty() {
        return plan;
    }
    if let Some(retention) = &shape.partman_retention {
        if retention != "none" && active.iter().any(|p| p.spec.action.removes()) {
            plan.notes.push(format!(
                "pg_partman also applies retention {retention} to this set: two engines remove its partitions"
            ));
        }
    }
    let (rollup, hold) = plan_rollup(&active, cutoff, filled_until, &mut plan);
    // Every downsample policy of the table holds removal back, taking part or not.
    let mut holds: Vec<Hold> = hold.into_iter().collect();
    for policy in policies
        .iter()
        .filter(|p| p.spec.action == Action::Downsample)
        .filter(|p| !active.iter().any(|a| a.id == p.id))
    {
        if let Some(hold) = idle_hold(policy, selected(policy)) {
            holds.push(hold);
        }
    }
    // The strictest hold is the one that counts.
    let hold = holds.into_iter().min_by_key(|h| h.until);
    // Row deletes cut on a bucket start of every downsample policy of the table, so the
    // oldest bucket left is whole and a rollup that reads it again computes it right.
    let buckets: Vec<i64> = policies
        .iter()
        .filter(|p| p.spec.action == Action::Downsample)
        .filter_map(|p| p.spec.rollup.as_ref().map(|r| r.bucket_secs.max(1)))
        .collect();
    match &shape.partitions {
        None => plan_unpartitioned(&active, cutoff, hold.as_ref(), &buckets, &mut plan),
        Some(partitions) => plan_partitions(&active, partitions, cutoff, hold.as_ref(), &mut plan),
    }
    // The rollup first: what is removed after it must have been rolled up.
    if let Some(step) = rollup {
        plan.steps.insert(0, step);
    }
    plan
}

/// How far a downsample policy lets data of its table be removed, and why no further.
#[derive(Debug, Clone)]
struct Hold {
    /// Data before this instant has been rolled up and is out of the lookback.
    until: DateTime<Utc>,
    /// For `plan`: "waits for the rollup into X (disabled), ...".
    reason: String,
}

impl Hold {
    fn new(
        policy: &Policy,
        rollup: &crate::rollup::Rollup,
        rolled: Option<DateTime<Utc>>,
        state: &str,
    ) -> Hold {
        let lookback = rollup.lookback_buckets_secs();
        let until = rolled
            .map(|r| r - chrono::Duration::seconds(lookback))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let reached = match rolled {
            Some(r) => format!("rolled up to {}", r.to_rfc3339()),
            None => "nothing rolled up yet".to_string(),
        };
        Hold {
            until,
            reason: format!(
                "not rolled up yet: waits for the rollup into {} (policy {}{state}; {reached}, lookback {})",
                rollup.into,
                policy.id,
                crate::duration::Retention::After(lookback.max(0))
            ),
        }
    }
}

/// The hold of a downsample policy that takes no step in this run: its data may go only
/// as far as its watermark says it has rolled up.
fn idle_hold(policy: &Policy, selected: bool) -> Option<Hold> {
    let rollup = policy.spec.rollup.as_ref()?;
    let state = if !policy.spec.enabled {
        ", disabled"
    } else if policy.spec.after.seconds().is_none() {
        ", paused with INF"
    } else if !selected {
        ", not selected by this run's tags"
    } else {
        ""
    };
    let watermark = policy.watermark.as_deref().and_then(parse_time);
    Some(Hold::new(policy, rollup, watermark, state))
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn floor_time(t: DateTime<Utc>, bucket: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(crate::rollup::floor_to_bucket(t.timestamp(), bucket), 0).unwrap_or(t)
}

/// The rollup step of the table's downsample policy when it takes part and has work, and
/// how far data may be removed once that step is done (`None`: no downsample policy takes
/// part).
fn plan_rollup(
    active: &[&Policy],
    cutoff: DateTime<Utc>,
    filled_until: Option<DateTime<Utc>>,
    plan: &mut TablePlan,
) -> (Option<Step>, Option<Hold>) {
    let Some(policy) = active.iter().find(|p| p.spec.action == Action::Downsample) else {
        return (None, None);
    };
    let Some(rollup) = &policy.spec.rollup else {
        return (None, None);
    };
    let watermark = policy.watermark.as_deref().and_then(parse_time);
    let lookback = chrono::Duration::seconds(rollup.lookback_buckets_secs());
    let mut to = threshold(cutoff, policy).map(|t| floor_time(t, rollup.bucket_secs));
    if let (Some(end), Some(filled)) = (to, filled_until) {
        if filled < end {
            plan.notes.push(format!(
                "policy {}: rolls up only to {} (what the level filling {} has reached)",
                policy.id,
                filled.to_rfc3339(),
                plan.table
            ));
        }
        to = Some(end.min(floor_time(filled, rollup.bucket_secs)));
    }
    let step = match to {
        Some(to) if watermark.is_none_or(|w| to > w) => Some(Step {
            policy_id: policy.id,
            action: Action::Downsample,
            kind: StepKind::Rollup {
                into: rollup.into.to_string(),
                from: watermark.map(|w| (w - lookback).to_rfc3339()),
                to: to.to_rfc3339(),
            },
            partition: None,
            bound: None,
            bytes: None,
            rows_estimate: None,
        }),
        _ => None,
    };
    let rolled = match &step {
        Some(Step {
            kind: StepKind::Rollup { to, .. },
            ..
        }) => parse_time(to),
        _ => watermark,
    };
    // Rows before `rolled - lookback` are never read again: those may go.
    (step, Some(Hold::new(policy, rollup, rolled, "")))
}

/// Why a policy cannot act on this table, if it cannot.
fn check_policy(policy: &Policy, shape: &TableShape) -> Option<String> {
    let spec = &policy.spec;
    let id = policy.id;
    let Some(column) = shape.column(&spec.column) else {
        return Some(format!(
            "policy {id}: table {} has no column {:?}",
            shape.table, spec.column
        ));
    };
    if !is_time_type(&column.type_name) {
        return Some(format!(
            "policy {id}: column {:?} is {}, not a timestamp or date",
            spec.column, column.type_name
        ));
    }
    if !shape.inheritance_children.is_empty() {
        let children: Vec<String> = shape
            .inheritance_children
            .iter()
            .map(ToString::to_string)
            .collect();
        return Some(format!(
            "policy {id}: {} has tables inheriting from it ({}): a query on it reads their rows too, so strata does not act on it; use declarative partitioning (PARTITION BY RANGE), or put the policies on each table",
            shape.table,
            children.join(", ")
        ));
    }
    if let Some(key) = &shape.partition_key {
        if key != &spec.column {
            return Some(format!(
                "policy {id}: {} is partitioned on {key:?}, not {:?}",
                shape.table, spec.column
            ));
        }
    }
    match (spec.action, shape.partitions.is_some()) {
        (Action::Detach | Action::Reallocate | Action::Archive, false) => Some(format!(
            "policy {id}: {} needs a partitioned table; {} is not partitioned (use delete)",
            spec.action, shape.table
        )),
        _ => None,
    }
}

/// `t` floored to a start of a bucket of each width in `buckets` (buckets are aligned to
/// the epoch: a multiple of their least common multiple); the earliest time when that does
/// not fit.
fn floor_to_buckets(t: DateTime<Utc>, buckets: &[i64]) -> DateTime<Utc> {
    fn gcd(a: i64, b: i64) -> i64 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    let mut lcm: i64 = 1;
    for &b in buckets {
        let b = b.max(1);
        match (lcm / gcd(lcm, b)).checked_mul(b) {
            Some(l) => lcm = l,
            None => return DateTime::<Utc>::MIN_UTC,
        }
    }
    if lcm == 1 || t == DateTime::<Utc>::MIN_UTC {
        return t;
    }
    DateTime::from_timestamp(crate::rollup::floor_to_bucket(t.timestamp(), lcm), 0)
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn plan_unpartitioned(
    active: &[&Policy],
    cutoff: DateTime<Utc>,
    hold: Option<&Hold>,
    buckets: &[i64],
    plan: &mut TablePlan,
) {
    // Only delete (and downsample) get here; the shortest duration deletes the most.
    if let Some(policy) = active.iter().find(|p| p.spec.action == Action::Delete) {
        if let Some(mut before) = threshold(cutoff, policy) {
            if let Some(hold) = hold {
                if hold.until < before {
                    plan.notes.push(format!(
                        "policy {}: deletes only rows before {}: {}",
                        policy.id,
                        if hold.until == DateTime::<Utc>::MIN_UTC {
                            "the first row".to_string()
                        } else {
                            hold.until.to_rfc3339()
                        },
                        hold.reason
                    ));
                    before = hold.until;
                }
            }
            let aligned = floor_to_buckets(before, buckets);
            if aligned < before && before != DateTime::<Utc>::MIN_UTC {
                plan.notes.push(format!(
                    "policy {}: deletes rows before {}, the start of a rollup bucket, so the oldest bucket left is whole",
                    policy.id,
                    aligned.to_rfc3339()
                ));
                before = aligned;
            }
            if before == DateTime::<Utc>::MIN_UTC {
                return;
            }
            plan.steps.push(Step {
                policy_id: policy.id,
                action: Action::Delete,
                kind: StepKind::DeleteRows {
                    column: policy.spec.column.clone(),
                    before: before.to_rfc3339(),
                },
                partition: None,
                bound: None,
                bytes: None,
                rows_estimate: None,
            });
        }
    }
}

fn plan_partitions(
    active: &[&Policy],
    partitions: &[Partition],
    cutoff: DateTime<Utc>,
    hold: Option<&Hold>,
    plan: &mut TablePlan,
) {
    let bounded: Vec<&Partition> = partitions.iter().filter(|p| p.upper().is_some()).collect();
    // The floor counts periods that have begun: not the default partition, not a
    // MAXVALUE catch-all, not empty partitions made ahead for the future.
    let mut remaining = bounded.iter().filter(|p| p.has_begun(cutoff)).count();
    let mut removals: Vec<(usize, Step)> = Vec::new();
    let mut moves: Vec<(usize, Step)> = Vec::new();
    for partition in &bounded {
        let qualifying: Vec<&&Policy> = active
            .iter()
            .filter(|p| threshold(cutoff, p).is_some_and(|t| expired(partition, t)))
            .collect();
        let step = |policy: &Policy, kind: StepKind| Step {
            policy_id: policy.id,
            action: policy.spec.action,
            kind,
            partition: Some(partition.name.to_string()),
            bound: Some(partition.bound_text.clone()),
            bytes: Some(partition.bytes),
            rows_estimate: None,
        };
        if let Some(policy) = qualifying.iter().find(|p| p.spec.action.removes()) {
            if let Some(hold) = hold {
                if !expired(partition, hold.until) {
                    plan.kept.push(Kept {
                        policy_id: policy.id,
                        partition: partition.name.to_string(),
                        reason: hold.reason.clone(),
                    });
                    continue;
                }
            }
            let floor = policy.spec.keep.max(1) as usize;
            if remaining <= floor {
                plan.kept.push(Kept {
                    policy_id: policy.id,
                    partition: partition.name.to_string(),
                    reason: if floor == 1 {
                        "the last partition that has begun is never removed".into()
                    } else {
                        format!("the policy keeps at least {floor} partitions that have begun")
                    },
                });
                continue;
            }
            remaining -= 1;
            let kind = match policy.spec.action {
                Action::Delete => StepKind::DropPartition,
                Action::Detach => StepKind::DetachPartition {
                    schema: policy.spec.archive_schema.clone(),
                },
                _ => StepKind::ArchivePartition {
                    target: policy.spec.target.clone().unwrap_or_default(),
                    format: policy.spec.archive_format,
                },
            };
            removals.push((order_of(active, policy), step(policy, kind)));
        } else if let Some(policy) = qualifying
            .iter()
            .rev()
            .find(|p| p.spec.action == Action::Reallocate)
        {
            let tablespace = policy.spec.tablespace.clone().unwrap_or_default();
            if partition.tablespace.as_deref() == Some(tablespace.as_str()) {
                continue;
            }
            moves.push((
                order_of(active, policy),
                step(policy, StepKind::MoveTablespace { tablespace }),
            ));
        }
    }
    // In order of the policies' durations, oldest partition first within each.
    let mut all: Vec<(usize, Step)> = moves.into_iter().chain(removals).collect();
    all.sort_by_key(|(order, _)| *order);
    plan.steps = all.into_iter().map(|(_, s)| s).collect();
}

fn order_of(active: &[&Policy], policy: &Policy) -> usize {
    active
        .iter()
        .position(|p| p.id == policy.id)
        .unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bound::{Bound, Lower};
    use crate::discover::Column;
    use crate::duration::Retention;
    use crate::name::TableName;
    use crate::policy::PolicySpec;
    use chrono::TimeZone;

    fn month(m: u32) -> DateTime<Utc> {
        let (y, m) = if m > 12 { (2026, m - 12) } else { (2025, m) };
        Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).unwrap()
    }

    /// Monthly partitions p1..p12 of 2025: pN holds month N, its upper bound is month N+1.
    fn shape(tablespace_of: impl Fn(u32) -> Option<String>) -> TableShape {
        let mut partitions: Vec<Partition> = (1..=12)
            .map(|m| Partition {
                name: TableName::new("s", format!("p{m}")),
                bound_text: format!("TO {}", month(m + 1)),
                bound: Bound::Range {
                    lower: Lower::From(month(m)),
                    upper: Upper::Before(month(m + 1)),
                },
                bytes: 1000,
                tablespace: tablespace_of(m),
            })
            .collect();
        partitions.push(Partition {
            name: TableName::new("s", "default"),
            bound_text: "DEFAULT".into(),
            bound: Bound::Default,
            bytes: 0,
            tablespace: None,
        });
        TableShape {
            table: TableName::new("s", "t"),
            oid: 1,
            columns: vec![Column {
                name: "ts".into(),
                type_name: "timestamp with time zone".into(),
            }],
            partitions: Some(partitions),
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
        match action {
            Action::Reallocate => spec.tablespace = Some(format!("ts{id}")),
            Action::Archive => spec.target = Some("cold".into()),
            _ => {}
        }
        Policy {
            id,
            spec,
            created_by: "t".into(),
            watermark: None,
            created_at: String::new(),
        }
    }

    fn partitions_of(plan: &TablePlan) -> Vec<String> {
        plan.steps
            .iter()
            .filter_map(|s| s.partition.clone())
            .collect()
    }

    #[test]
    fn expiry_is_on_the_upper_bound() {
        // Cutoff 2025-07-15, 90 days: threshold 2025-04-16. p1..p3 end by 04-01: expired.
        // p4 (April) starts before the threshold but ends after it: kept.
        let cutoff = Utc.with_ymd_and_hms(2025, 7, 15, 0, 0, 0).unwrap();
        let plan = plan_table(
            &[policy(1, Action::Delete, 90)],
            &shape(|_| None),
            cutoff,
            None,
        );
        assert_eq!(partitions_of(&plan), ["s.p1", "s.p2", "s.p3"]);
        assert!(plan.steps.iter().all(|s| s.kind == StepKind::DropPartition));
        // A bound exactly at the threshold has expired; a second before, not yet.
        let cutoff = month(4) + chrono::Duration::days(90);
        let plan = plan_table(
            &[policy(1, Action::Delete, 90)],
            &shape(|_| None),
            cutoff,
            None,
        );
        assert_eq!(partitions_of(&plan), ["s.p1", "s.p2", "s.p3"]);
        let plan = plan_table(
            &[policy(1, Action::Delete, 90)],
            &shape(|_| None),
            cutoff - chrono::Duration::seconds(1),
            None,
        );
        assert_eq!(partitions_of(&plan), ["s.p1", "s.p2"]);
    }

    #[test]
    fn the_last_partition_and_the_floor_are_kept() {
        let far = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        let plan = plan_table(&[policy(1, Action::Delete, 1)], &shape(|_| None), far, None);
        assert_eq!(plan.steps.len(), 11);
        assert_eq!(plan.kept.len(), 1);
        assert_eq!(plan.kept[0].partition, "s.p12");
        let mut keep3 = policy(1, Action::Delete, 1);
        keep3.spec.keep = 3;
        let plan = plan_table(&[keep3], &shape(|_| None), far, None);
        assert_eq!(plan.steps.len(), 9);
        assert_eq!(
            plan.kept
                .iter()
                .map(|k| k.partition.as_str())
                .collect::<Vec<_>>(),
            ["s.p10", "s.p11", "s.p12"]
        );
    }

    #[test]
    fn actions_apply_in_order_of_duration() {
        // Reallocate after 30 days, archive after 180: at 2026-01-01 the partitions ending
        // by 2025-07-05 are archived (not moved first), those ending by 2025-12-02 moved
        // (p12 ends 2026-01-01: too young).
        let cutoff = month(13);
        let policies = [
            policy(7, Action::Archive, 180),
            policy(3, Action::Reallocate, 30),
        ];
        let plan = plan_table(&policies, &shape(|_| None), cutoff, None);
        let moved: Vec<String> = plan
            .steps
            .iter()
            .filter(|s| s.action == Action::Reallocate)
            .filter_map(|s| s.partition.clone())
            .collect();
        let archived: Vec<String> = plan
            .steps
            .iter()
            .filter(|s| s.action == Action::Archive)
            .filter_map(|s| s.partition.clone())
            .collect();
        assert_eq!(archived, ["s.p1", "s.p2", "s.p3", "s.p4", "s.p5", "s.p6"]);
        assert_eq!(moved, ["s.p7", "s.p8", "s.p9", "s.p10", "s.p11"]);
        // The shorter duration's steps come first.
        assert_eq!(plan.steps[0].action, Action::Reallocate);
        // Partitions already in the tablespace are not moved again.
        let plan = plan_table(
            &policies,
            &shape(|m| (m == 8).then(|| "ts3".to_string())),
            cutoff,
            None,
        );
        assert_eq!(
            plan.steps
                .iter()
                .filter(|s| s.action == Action::Reallocate)
                .count(),
            4
        );
    }

    #[test]
    fn forever_and_disabled_policies_do_nothing() {
        let far = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        let mut forever = policy(1, Action::Delete, 1);
        forever.spec.after = Retention::Forever;
        let mut disabled = policy(2, Action::Detach, 1);
        disabled.spec.enabled = false;
        let plan = plan_table(&[forever, disabled], &shape(|_| None), far, None);
        assert!(plan.steps.is_empty() && plan.problems.is_empty());
    }

    #[test]
    fn policies_that_do_not_fit_the_table_are_problems() {
        let far = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        let mut wrong_column = policy(1, Action::Delete, 1);
        wrong_column.spec.column = "other".into();
        let plan = plan_table(&[wrong_column], &shape(|_| None), far, None);
        assert!(plan.steps.is_empty());
        assert!(
            plan.problems[0].contains("no column"),
            "{:?}",
            plan.problems
        );

        let mut plain = shape(|_| None);
        plain.partitions = None;
        plain.partition_key = None;
        let plan = plan_table(&[policy(1, Action::Archive, 1)], &plain, far, None);
        assert!(plan.problems[0].contains("needs a partitioned table"));
        let plan = plan_table(&[policy(1, Action::Delete, 30)], &plain, far, None);
        assert_eq!(
            plan.steps[0].kind,
            StepKind::DeleteRows {
                column: "ts".into(),
                before: (far - chrono::Duration::days(30)).to_rfc3339()
            }
        );
    }

    fn downsample(id: i64, hours: i64, watermark: Option<&str>) -> Policy {
        let mut p = policy(id, Action::Downsample, 0);
        p.spec.after = Retention::After(hours * 3600);
        p.spec.rollup = Some(crate::rollup::Rollup {
            into: TableName::new("m", "hourly"),
            bucket_secs: 3600,
            lookback_secs: 7200,
            group_by: vec![],
            aggregates: vec![crate::rollup::Aggregate::parse("count").unwrap()],
        });
        p.watermark = watermark.map(str::to_string);
        p
    }

    #[test]
    fn rollups_advance_from_the_watermark_minus_the_lookback() {
        let cutoff = Utc.with_ymd_and_hms(2026, 3, 10, 12, 30, 0).unwrap();
        // Never run: everything up to the last whole hour before cutoff - 1h.
        let plan = plan_table(&[downsample(9, 1, None)], &shape(|_| None), cutoff, None);
        assert_eq!(
            plan.steps[0].kind,
            StepKind::Rollup {
                into: "m.hourly".into(),
                from: None,
                to: "2026-03-10T11:00:00+00:00".into()
            }
        );
        // Ran before: from two buckets before the watermark.
        let done = downsample(9, 1, Some("2026-03-10T08:00:00Z"));
        let plan = plan_table(std::slice::from_ref(&done), &shape(|_| None), cutoff, None);
        assert_eq!(
            plan.steps[0].kind,
            StepKind::Rollup {
                into: "m.hourly".into(),
                from: Some("2026-03-10T06:00:00+00:00".into()),
                to: "2026-03-10T11:00:00+00:00".into()
            }
        );
        // Up to date: nothing.
        let current = downsample(9, 1, Some("2026-03-10T11:00:00Z"));
        assert!(plan_table(&[current], &shape(|_| None), cutoff, None)
            .steps
            .is_empty());
        // The level filling this table got only to 09:30: stop at 09:00.
        let plan = plan_table(
            &[done],
            &shape(|_| None),
            cutoff,
            Some(Utc.with_ymd_and_hms(2026, 3, 10, 9, 30, 0).unwrap()),
        );
        assert!(
            matches!(&plan.steps[0].kind, StepKind::Rollup { to, .. } if to == "2026-03-10T09:00:00+00:00")
        );
    }

    #[test]
    fn row_deletes_cut_on_a_bucket_start_of_every_rollup() {
        let mut plain = shape(|_| None);
        plain.partitions = None;
        plain.partition_key = None;
        let cutoff = Utc.with_ymd_and_hms(2026, 3, 10, 14, 30, 0).unwrap();
        // Delete after 1 day: 2026-03-09 14:30, inside an hourly bucket and a 90-minute one.
        let mut ninety = downsample(3, 1, Some("2026-03-10T10:30:00Z"));
        ninety.spec.rollup.as_mut().unwrap().bucket_secs = 5400;
        ninety.spec.rollup.as_mut().unwrap().lookback_secs = 0;
        let mut hourly = downsample(2, 1, Some("2026-03-10T11:00:00Z"));
        hourly.spec.rollup.as_mut().unwrap().lookback_secs = 0;
        let before = |policies: &[Policy]| {
            let plan = plan_table(policies, &plain, cutoff, None);
            plan.steps
                .iter()
                .find_map(|s| match &s.kind {
                    StepKind::DeleteRows { before, .. } => Some(before.clone()),
                    _ => None,
                })
                .unwrap()
        };
        assert_eq!(
            before(&[policy(1, Action::Delete, 1)]),
            "2026-03-09T14:30:00+00:00"
        );
        assert_eq!(
            before(&[policy(1, Action::Delete, 1), hourly.clone()]),
            "2026-03-09T14:00:00+00:00"
        );
        assert_eq!(
            before(&[policy(1, Action::Delete, 1), ninety.clone()]),
            "2026-03-09T13:30:00+00:00"
        );
        // 1 h and 90 min buckets both start every 3 h (from the epoch): 14:00 is no start
        // of a 90-minute bucket, 13:30 none of an hour; 12:00 is both.
        assert_eq!(
            before(&[policy(1, Action::Delete, 1), hourly, ninety]),
            "2026-03-09T12:00:00+00:00"
        );
    }

    /// The partitions a plan drops, in order.
    fn drops(plan: &TablePlan) -> Vec<String> {
        plan.steps
            .iter()
            .filter(|s| s.kind == StepKind::DropPartition)
            .filter_map(|s| s.partition.clone())
            .collect()
    }

    #[test]
    fn data_is_removed_only_once_rolled_up_and_out_of_the_lookback() {
        let cutoff = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
        let delete = policy(1, Action::Delete, 1);
        // The rollup never ran and waits 800 days (before any of this data): nothing goes.
        let plan = plan_table(
            &[delete.clone(), downsample(2, 800 * 24, None)],
            &shape(|_| None),
            cutoff,
            None,
        );
        assert!(drops(&plan).is_empty(), "{:?}", plan.steps);
        assert!(plan.kept.iter().all(|k| k.reason.contains("not rolled up")));
        // Rolled up to 2025-04-01 01:00 with a 2 h lookback: March (ending April 1st) is
        // still inside the lookback and stays; February goes.
        let plan = plan_table(
            &[
                delete,
                downsample(2, 800 * 24, Some("2025-04-01T01:00:00Z")),
            ],
            &shape(|_| None),
            cutoff,
            None,
        );
        assert_eq!(drops(&plan), vec!["s.p1", "s.p2"]);
        // The rollup step (when there is one) always comes first.
        let plan = plan_table(
            &[policy(1, Action::Delete, 1), downsample(2, 1, None)],
            &shape(|_| None),
            cutoff,
            None,
        );
        assert_eq!(plan.steps[0].action, Action::Downsample);
        assert_eq!(drops(&plan).len(), 11, "all but the last bounded partition");
    }

    #[test]
    fn a_downsample_left_out_of_the_run_still_holds_removal_back() {
        let cutoff = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
        // Rolled up to 2025-04-01 01:00 with a 2 h lookback: only January and February
        // may go, whether the downsample takes part, is left out by tags, is disabled or
        // is paused with INF.
        // (Its own `after` of 800 days keeps it from rolling further in this run.)
        let rolled = || downsample(2, 800 * 24, Some("2025-04-01T01:00:00Z"));
        let mut disabled = rolled();
        disabled.spec.enabled = false;
        let mut paused = rolled();
        paused.spec.after = Retention::Forever;
        let cases: [(Policy, bool, &str); 4] = [
            (rolled(), true, "policy 2;"),
            (rolled(), false, "not selected by this run's tags"),
            (disabled, true, "disabled"),
            (paused, true, "paused with INF"),
        ];
        for (downsample, take_part, why) in cases {
            let policies = [policy(1, Action::Delete, 1), downsample];
            let plan = plan_selected(
                &policies,
                &|p| p.id == 1 || take_part,
                &shape(|_| None),
                cutoff,
                None,
            );
            assert_eq!(drops(&plan), ["s.p1", "s.p2"], "{why}");
            assert_eq!(plan.kept[0].partition, "s.p3");
            assert!(
                plan.kept[0]
                    .reason
                    .contains("waits for the rollup into m.hourly")
                    && plan.kept[0].reason.contains(why),
                "{:?}",
                plan.kept[0].reason
            );
        }
        // Never rolled up and left out: nothing goes, not even from an unpartitioned table.
        let mut never = downsample(2, 1, None);
        never.spec.enabled = false;
        let policies = [policy(1, Action::Delete, 1), never];
        let plan = plan_selected(&policies, &|p| p.id == 1, &shape(|_| None), cutoff, None);
        assert!(drops(&plan).is_empty());
        assert!(plan
            .kept
            .iter()
            .all(|k| k.reason.contains("nothing rolled up yet")));
        let mut plain = shape(|_| None);
        plain.partitions = None;
        plain.partition_key = None;
        let plan = plan_selected(&policies, &|p| p.id == 1, &plain, cutoff, None);
        assert!(plan.steps.is_empty(), "{:?}", plan.steps);
        assert!(plan.notes[0].contains("disabled"), "{:?}", plan.notes);
    }

    #[test]
    fn the_floor_counts_only_partitions_that_have_begun() {
        // p1..p12 of 2025, then partitions made ahead for 2026 (January to April), a
        // MAXVALUE catch-all from May 2026 and the default.
        let mut table = shape(|_| None);
        let partitions = table.partitions.as_mut().unwrap();
        partitions.pop(); // the default goes last again below
        for m in 13..=16 {
            partitions.push(Partition {
                name: TableName::new("s", format!("p{m}")),
                bound_text: String::new(),
                bound: Bound::Range {
                    lower: Lower::From(month(m)),
                    upper: Upper::Before(month(m + 1)),
                },
                bytes: 0,
                tablespace: None,
            });
        }
        partitions.push(Partition {
            name: TableName::new("s", "rest"),
            bound_text: String::new(),
            bound: Bound::Range {
                lower: Lower::From(month(17)),
                upper: Upper::Unbounded,
            },
            bytes: 0,
            tablespace: None,
        });
        partitions.push(Partition {
            name: TableName::new("s", "default"),
            bound_text: "DEFAULT".into(),
            bound: Bound::Default,
            bytes: 0,
            tablespace: None,
        });
        // Writes stopped in December 2025; at 2025-12-20 with a 1-day delete, p1..p11 have
        // expired and p12 (December) is the newest partition that has begun: it stays,
        // whatever was made ahead.
        let cutoff = Utc.with_ymd_and_hms(2025, 12, 20, 0, 0, 0).unwrap();
        let plan = plan_table(&[policy(1, Action::Delete, 1)], &table, cutoff, None);
        assert_eq!(plan.steps.len(), 11);
        // At 2026-01-10 December has expired too; January 2026 has begun and stays.
        let cutoff = Utc.with_ymd_and_hms(2026, 1, 10, 0, 0, 0).unwrap();
        let plan = plan_table(&[policy(1, Action::Delete, 1)], &table, cutoff, None);
        assert_eq!(plan.steps.len(), 12);
        // With --keep 3 at 2026-01-10: January 2026 and the two before it stay (the
        // premade February to April do not count).
        let mut keep3 = policy(1, Action::Delete, 1);
        keep3.spec.keep = 3;
        let plan = plan_table(&[keep3], &table, cutoff, None);
        assert_eq!(partitions_of(&plan).last().unwrap(), "s.p10");
        assert_eq!(
            plan.kept
                .iter()
                .map(|k| k.partition.as_str())
                .collect::<Vec<_>>(),
            ["s.p11", "s.p12"]
        );
        assert!(plan.kept[0]
            .reason
            .contains("at least 3 partitions that have begun"));
        // Without a January partition (writes stopped; the next ones made ahead start in
        // February), December is the newest partition that has begun: it stays, though
        // three empty partitions and a catch-all come after it.
        table
            .partitions
            .as_mut()
            .unwrap()
            .retain(|p| p.name.name != "p13");
        let plan = plan_table(&[policy(1, Action::Delete, 1)], &table, cutoff, None);
        assert_eq!(plan.steps.len(), 11);
        assert_eq!(plan.kept[0].partition, "s.p12");
        assert!(plan.kept[0]
            .reason
            .contains("the last partition that has begun"));
    }

    #[test]
    fn tables_with_inheritance_children_are_refused() {
        let mut legacy = shape(|_| None);
        legacy.partitions = None;
        legacy.partition_key = None;
        legacy.inheritance_children = vec![TableName::new("s", "t_2025")];
        let far = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        let plan = plan_table(&[policy(1, Action::Delete, 1)], &legacy, far, None);
        assert!(plan.steps.is_empty());
        assert!(
            plan.problems[0].contains("s.t_2025") && plan.problems[0].contains("inheriting"),
            "{:?}",
            plan.problems
        );
    }
}
