//! Running and finished cluster operations, observable while they run.
//!
//! Each operation publishes its [`OperationStatus`] on a `tokio::sync::watch` channel: the
//! CLI draws progress bars from it in-process, and `strata server` streams it to remote
//! CLIs as server-sent events. Nothing polls faster than the nodes report.

use crate::node_api::ProgressSnapshot;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Where an operation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OpState {
    /// Started and not ended yet.
    Running,
    /// Done, everything as asked.
    Succeeded,
    /// Done, but some files or nodes were not handled (see the result).
    Partial,
    /// Ended without doing what was asked (see the error).
    Failed,
}

impl OpState {
    /// Whether the operation has ended.
    pub fn is_done(self) -> bool {
        self != OpState::Running
    }
}

/// One node's part of an operation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeStatus {
    /// The node's configured name.
    pub name: String,
    /// `waiting`, `scanning`, `uploading`, `finishing`, `restoring`, `done`, `failed`.
    pub phase: String,
    /// Live counters of the node's current step.
    pub progress: ProgressSnapshot,
    /// Why the node's part failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An operation as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OperationStatus {
    /// The operation's id.
    pub id: String,
    /// `backup` or `restore`.
    pub kind: String,
    /// Where the operation stands.
    pub state: OpState,
    /// RFC 3339.
    pub started: String,
    /// Every node taking part, with its phase and progress.
    pub nodes: Vec<NodeStatus>,
    /// The backup summary or restore report once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    /// Why the operation failed as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the operation's hooks did, a line each (`hook NAME (PHASE): ok: OUTPUT`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<String>,
}

/// A running or finished operation.
#[derive(Debug)]
pub struct Operation {
    status: watch::Sender<OperationStatus>,
}

impl Operation {
    /// A running operation over `nodes`.
    pub fn new(id: &str, kind: &str, nodes: &[String]) -> Arc<Operation> {
        let status = OperationStatus {
            id: id.to_string(),
            kind: kind.to_string(),
            state: OpState::Running,
            started: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            nodes: nodes
                .iter()
                .map(|n| NodeStatus {
                    name: n.clone(),
                    phase: "waiting".into(),
                    ..NodeStatus::default()
                })
                .collect(),
            result: None,
            error: None,
            log: Vec::new(),
        };
        Arc::new(Operation {
            status: watch::channel(status).0,
        })
    }

    /// The operation's id.
    pub fn id(&self) -> String {
        self.status.borrow().id.clone()
    }

    /// The current status.
    pub fn status(&self) -> OperationStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every later change.
    pub fn subscribe(&self) -> watch::Receiver<OperationStatus> {
        self.status.subscribe()
    }

    /// Changes the status and wakes the watchers.
    pub fn update(&self, change: impl FnOnce(&mut OperationStatus)) {
        self.status.send_modify(change);
    }

    /// Adds a line to the operation's log (bounded: the first 1,000 lines).
    pub fn log(&self, line: String) {
        self.status.send_modify(|s| {
            if s.log.len() < 1000 {
                s.log.push(line);
            }
        });
    }

    /// Changes one node's status.
    pub fn update_node(&self, node: &str, change: impl FnOnce(&mut NodeStatus)) {
        self.status.send_if_modified(|s| {
            let Some(n) = s.nodes.iter_mut().find(|n| n.name == node) else {
                return false;
            };
            let before = n.clone();
            change(n);
            *n != before
        });
    }

    /// Waits until the operation has ended and returns its final status.
    pub async fn wait(&self) -> OperationStatus {
        let mut rx = self.subscribe();
        let status = rx.wait_for(|s| s.state.is_done()).await.map(|s| s.clone());
        status.unwrap_or_else(|_| self.status())
    }
}

/// The operations a coordinator ran recently (the last [`Registry::KEEP`]).
#[derive(Debug, Default)]
pub struct Registry {
    operations: Mutex<VecDeque<Arc<Operation>>>,
}

impl Registry {
    /// How many operations are remembered.
    pub const KEEP: usize = 50;

    /// Remembers an operation.
    pub fn add(&self, op: Arc<Operation>) {
        let mut ops = self.operations.lock().unwrap();
        if ops.len() >= Self::KEEP {
            if let Some(pos) = ops.iter().position(|o| o.status.borrow().state.is_done()) {
                ops.remove(pos);
            }
        }
        ops.push_back(op);
    }

    /// The operation with this id.
    pub fn get(&self, id: &str) -> Option<Arc<Operation>> {
        let ops = self.operations.lock().unwrap();
        ops.iter().find(|o| o.status.borrow().id == id).cloned()
    }

    /// Every remembered operation, newest first.
    pub fn recent(&self) -> Vec<OperationStatus> {
        let ops = self.operations.lock().unwrap();
        ops.iter().rev().map(|o| o.status()).collect()
    }

    /// Operations that are still running.
    pub fn running(&self) -> Vec<OperationStatus> {
        let ops = self.operations.lock().unwrap();
        ops.iter()
            .map(|o| o.status())
            .filter(|s| !s.state.is_done())
            .collect()
    }
}
