//! The cluster side of the etcd plugin (`plugin = "etcd"`, settings in
//! `[components.etcd]`): one member's agent reads the keyspace, and once every
//! component's data is stored the coordinator reads the fingerprint of the checked keys
//! again. A change in between fails the component: a database backed up beside a
//! topology it never had is worse than a failed backup. With `on_change = "retry"` the
//! whole backup then runs again, up to `change_retries` times. It restores before the data
//! components (rank 10), through one member, with rename rules.

use super::{NotTogether, Plugin};
use crate::config::{Config, NodeConfig};
use crate::node::NodeApi;
use crate::CoordinatorResult;
use std::sync::Arc;
use std::time::Duration;
use strata_agent::backup::NodeSource;
use strata_agent::service::{EtcdAgent, NodePlugin};
use strata_repo::summary::NodeSummary;

/// The etcd plugin of one component.
#[derive(Debug, Clone)]
pub struct Etcd {
    pub settings: strata_etcd::Settings,
    /// `OLD=NEW` rewrites every restore applies.
    pub rename: Vec<String>,
    /// `FROM=TO`: restore keys under FROM to TO.
    pub move_prefix: Option<String>,
}

#[async_trait::async_trait]
impl Plugin for Etcd {
    fn name(&self) -> &'static str {
        "etcd"
    }

    /// Before the databases that read their topology from it.
    fn restore_rank(&self) -> u32 {
        10
    }

    fn check_node(&self, node: &NodeConfig) -> Result<(), String> {
        if !node.roots.is_empty() {
            return Err(format!(
                "node {:?} is an etcd member: its keys are read through etcd's API, give it no roots",
                node.name
            ));
        }
        Ok(())
    }

    fn node_source(&self, node: &NodeConfig) -> NodeSource {
        NodeSource {
            name: node.name.clone(),
            roots: Vec::new(),
            exclude: Vec::new(),
            follow: Vec::new(),
        }
    }

    fn node_plugin(&self, _config: &Config, _node: &NodeConfig) -> Arc<dyn NodePlugin> {
        Arc::new(EtcdAgent {
            settings: self.settings.clone(),
            rename: self.rename.clone(),
            move_prefix: self.move_prefix.clone(),
        })
    }

    /// One member reads the keyspace (every member holds all of it): the first that
    /// answers.
    async fn backup_members(
        &self,
        nodes: &[Arc<dyn NodeApi>],
    ) -> CoordinatorResult<Option<Vec<usize>>> {
        for (k, node) in nodes.iter().enumerate() {
            let answer = tokio::time::timeout(Duration::from_secs(5), node.metadata()).await;
            if matches!(answer, Ok(Ok(_))) {
                return Ok(Some(vec![k]));
            }
        }
        // None answers: the backup records them failed with their reasons.
        Ok(None)
    }

    async fn after_stored(&self, _backup: &str, nodes: &[NodeSummary]) -> Result<(), NotTogether> {
        let Some(node) = nodes
            .iter()
            .find(|n| n.plugin.contains_key("etcd.fingerprint"))
        else {
            return Ok(());
        };
        let at_start = &node.plugin["etcd.fingerprint"];
        let revision = node
            .plugin
            .get("etcd.revision")
            .cloned()
            .unwrap_or_default();
        let unread = |e: strata_etcd::EtcdError| {
            NotTogether::fails(format!(
                "cannot read the keys again: {}",
                crate::error_chain(&e)
            ))
        };
        let client = strata_etcd::Client::connect(&self.settings)
            .await
            .map_err(unread)?;
        let now = client.fingerprint().await.map_err(unread)?;
        if &now.hex() != at_start {
            let retries = match self.settings.on_change {
                strata_etcd::OnChange::Fail => 0,
                strata_etcd::OnChange::Retry => self.settings.change_retries,
            };
            return Err(NotTogether {
                why: format!(
                    "the checked keys changed while the backup ran (fingerprint {} at revision {revision}, {} at revision {} now): back up again, or list keys that change all the time in exclude_from_check",
                    &at_start[..at_start.len().min(12)],
                    &now.hex()[..12],
                    now.revision
                ),
                retries,
            });
        }
        Ok(())
    }

    fn took(&self, node: &NodeSummary) -> bool {
        node.plugin.keys().any(|k| k.starts_with("etcd."))
    }

    fn restore_to_one_node(&self) -> bool {
        true
    }

    fn restore_rules(&self) -> bool {
        true
    }
}
