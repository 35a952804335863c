//! What a report means for whoever asked: the decisions the front ends (the command
//! line's exit codes, a script reading `--json`) take from the engine's reports, made
//! once here instead of in each front end.

use strata_coordinator::coordinator::{ClusterStatus, RestoreOutcome};

/// What `strata status` found, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusVerdict {
    /// A node did not answer.
    NodeDown,
    /// A system is left paused (its resume failed, or the process that paused it is
    /// gone): a problem to act on, as a partial backup is. A pause of a running
    /// operation is not.
    LeftPaused,
    /// Every node answered and nothing is left paused.
    Healthy,
}

/// The verdict on a cluster's status.
pub fn status_verdict(status: &ClusterStatus) -> StatusVerdict {
    let down = status.nodes.iter().any(|n| n.metadata.is_none());
    let left_paused = !status.pause_problems.is_empty()
        || status
            .paused
            .iter()
            .any(|p| p.resume_error.is_some() || !p.holder_alive());
    match (down, left_paused) {
        (true, _) => StatusVerdict::NodeDown,
        (false, true) => StatusVerdict::LeftPaused,
        (false, false) => StatusVerdict::Healthy,
    }
}

/// Every entry an in-place restore could not bring back, as `node: why`.
pub fn restore_errors(outcome: &RestoreOutcome) -> Vec<String> {
    let mut errors = Vec::new();
    for n in &outcome.nodes {
        for e in n.report.iter().flat_map(|r| &r.errors) {
            errors.push(format!("{}: {e}", n.node));
        }
    }
    errors
}

/// Whether an in-place restore wrote anything itself (bytes are verified only where
/// strata wrote them: on the nodes, and components restored by strata rather than by a
/// checklist the operator runs).
pub fn restore_wrote(outcome: &RestoreOutcome) -> bool {
    outcome.nodes.iter().any(|n| n.report.is_some())
        || outcome
            .components
            .iter()
            .any(|c| c.detail.is_some() && c.checklist_steps.is_none())
}
