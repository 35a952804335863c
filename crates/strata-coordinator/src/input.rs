//! What a user asks of a restore, checked the same way whichever way it came in (the
//! CLI, `POST /api/v1/restores`): node names as the configuration allows them, an include
//! path that is a clean relative path, a recovery target that is what it claims to be
//! (see [`strata_postgres::recovery_input`]). [`crate::coordinator::Coordinator::restore`]
//! runs it before anything is locked or written; the API runs it first to answer 400.

use crate::error::CoordinatorError;
use crate::restore_plan::RestorePlan;

/// The longest include path taken (PostgreSQL's and Linux's `PATH_MAX`).
const MAX_INCLUDE: usize = 4096;

/// Checks every field of `plan`.
pub fn check_restore_plan(plan: &RestorePlan) -> Result<(), CoordinatorError> {
    let invalid = CoordinatorError::Invalid;
    if let Some(node) = &plan.node {
        check_node_name(node).map_err(invalid)?;
    }
    for (old, new) in &plan.map {
        check_node_name(old).map_err(invalid)?;
        check_node_name(new).map_err(invalid)?;
    }
    if let Some(include) = &plan.include {
        check_include(include).map_err(invalid)?;
    }
    if let Some(table) = &plan.table {
        let parts: Vec<&str> = table.split('.').collect();
        if parts.len() != 2 || parts.iter().any(|p| p.is_empty() || p.len() > 200) {
            return Err(invalid(format!(
                "--table {}: give the table as DATABASE.TABLE",
                shown(table)
            )));
        }
        if plan.include.is_some() {
            return Err(invalid("--table and --path do not go together".into()));
        }
    }
    for partition in &plan.partitions {
        let plain = !partition.is_empty()
            && partition.len() <= 200
            && partition
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if plan.table.is_none() || !plain {
            return Err(invalid(format!(
                "--partition {}: a partition id (letters, digits, '-': the first field of a part's name), with --table",
                shown(partition)
            )));
        }
    }
    if let Some(name) = &plan.table_as {
        if plan.table.is_none()
            || name.is_empty()
            || name.len() > 200
            || name.contains(['.', '/', '\0'])
        {
            return Err(invalid(format!(
                "--as {}: a table name (no '.'), with --table",
                shown(name)
            )));
        }
    }
    if let Some(recovery) = &plan.recovery {
        recovery
            .check()
            .map_err(|e| CoordinatorError::Invalid(e.to_string()))?;
    }
    Ok(())
}

/// A node name as `[[nodes]]` allows it: 1-64 letters, digits, `-`, `_`, `.`, not
/// starting with `.`.
// String: a validator; callers wrap the line at once (CoordinatorError::Invalid, a 400).
pub fn check_node_name(name: &str) -> Result<(), String> {
    if crate::config::valid_name(name) {
        Ok(())
    } else {
        Err(format!(
            "{} is not a node name (1-64 letters, digits, '-', '_', '.')",
            shown(name)
        ))
    }
}

/// An include path (a restore of only what is at or below it): relative to the node's
/// roots after leading and trailing `/` are dropped, without empty, `.` or `..`
/// components, NUL or control characters. `/` or empty means everything.
// String: a validator; callers wrap the line at once (CoordinatorError::Invalid, a 400).
pub fn check_include(path: &str) -> Result<(), String> {
    if path.len() > MAX_INCLUDE {
        return Err(format!(
            "include path {} is longer than {MAX_INCLUDE} bytes",
            shown(path)
        ));
    }
    if path.chars().any(char::is_control) {
        return Err(format!(
            "include path {} has a control character",
            shown(path)
        ));
    }
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(());
    }
    strata_repo::manifest::validate_relative_path(trimmed.as_bytes())
        .map_err(|e| format!("include path {}: {e}", shown(path)))
}

/// `text` for an error message: escaped, and cut short when long.
fn shown(text: &str) -> String {
    let short: String = text.chars().take(40).collect();
    if short.len() < text.len() {
        format!("{short:?}…")
    } else {
        format!("{short:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn plan() -> RestorePlan {
        RestorePlan {
            node: Some("db1".into()),
            map: BTreeMap::from([("db1".into(), "db-2".into())]),
            include: Some("/base/16384/".into()),
            components: Vec::new(),
            rename: Vec::new(),
            dry_run: false,
            recovery: None,
            table: None,
            table_as: None,
            drop_stale_replicas: false,
            partitions: Vec::new(),
        }
    }

    #[test]
    fn ordinary_plans_pass() {
        check_restore_plan(&plan()).unwrap();
        check_restore_plan(&RestorePlan {
            include: Some("/".into()),
            ..plan()
        })
        .unwrap();
    }

    #[test]
    fn hostile_plans_are_refused() {
        let hostile = [
            RestorePlan {
                node: Some("../etc".into()),
                ..plan()
            },
            RestorePlan {
                node: Some("a\nb".into()),
                ..plan()
            },
            RestorePlan {
                node: Some("x".repeat(1 << 20)),
                ..plan()
            },
            RestorePlan {
                map: BTreeMap::from([("db1".into(), "../x".into())]),
                ..plan()
            },
            RestorePlan {
                include: Some("../../etc".into()),
                ..plan()
            },
            RestorePlan {
                include: Some("base/../../etc".into()),
                ..plan()
            },
            RestorePlan {
                include: Some("base\0".into()),
                ..plan()
            },
            RestorePlan {
                include: Some("base\n".into()),
                ..plan()
            },
            RestorePlan {
                include: Some("a/".repeat(4096)),
                ..plan()
            },
            RestorePlan {
                recovery: Some(strata_postgres::recovery::RecoveryPlan {
                    target: strata_postgres::recovery::Target::Time(
                        "2026-11-23 05:00:00+00\nrestore_command = 'sh'".into(),
                    ),
                    action: strata_postgres::recovery::TargetAction::Promote,
                    start: true,
                    no_archive: false,
                }),
                ..plan()
            },
        ];
        for plan in hostile {
            let err = check_restore_plan(&plan).unwrap_err().to_string();
            assert!(!err.contains('\n') && err.len() < 200, "{err}");
        }
    }
}
