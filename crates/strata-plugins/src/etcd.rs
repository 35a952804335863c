//! The cluster side of the etcd plugin (`plugin = "etcd"`, settings in
//! `[components.etcd]`): one member's agent reads the keyspace, and once every
//! component's data is stored the coordinator reads the fingerprint of the checked keys
//! again. A change in between fails the component: a database backed up beside a
//! topology it never had is worse than a failed backup. With `on_change = "retry"` the
//! whole backup then runs again, up to `change_retries` times. It restores before the data
//! components (rank 10), through one member, with rename rules.

use super::{NotTogether, Plugin, PluginError};
use std::sync::Arc;
use std::time::Duration;
use strata_agent::backup::NodeSource;
use strata_agent::service::{EtcdAgent, NodePlugin};
use strata_cluster::config::{Config, NodeConfig};
use strata_cluster::node::NodeApi;
use strata_repo::summary::NodeSummary;

/// The etcd plugin of one component.
#[derive(Debug, Clone)]
pub struct Etcd {
    /// How to reach the etcd cluster and which keys to back up (`[components.etcd]`).
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

    fn check_node(&self, node: &NodeConfig) -> Result<(), PluginError> {
        if !node.roots.is_empty() {
            return Err(PluginError::Settings(format!(
                "node {:?} is an etcd member: its keys are read through etcd's API, give it no roots",
                node.name
            )));
        }
        Ok(())
    }

    fn node_source(&self, node: &NodeConfig) -> NodeSource {
        NodeSource {
            name: node.name.clone(),
            roots: Vec::new(),
            exclude: Vec::new(),
            follow: Vec::new(),
            immutable: false,
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
    ) -> Result<Option<Vec<usize>>, PluginError> {
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
        // Fingerprints of different key sets differ whatever happened: say so instead.
        let ours = self.settings.check_id();
        if let Some(theirs) = node.plugin.get("etcd.checked").filter(|t| **t != ours) {
            return Err(NotTogether::fails(format!(
                "node {} checked other keys than this coordinator would (its prefixes or exclude_from_check differ: check {theirs}, here {ours}): give [components.etcd] the same prefixes and exclude_from_check on both",
                node.name
            )));
        }
        let revision = node
            .plugin
            .get("etcd.revision")
            .cloned()
            .unwrap_or_default();
        let unread = |e: strata_etcd::EtcdError| {
            NotTogether::fails(format!(
                "cannot read the keys again: {}",
                strata_util::error_chain(&e)
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
                    at_start.get(..12).unwrap_or(at_start),
                    now.hex().get(..12).unwrap_or_default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A node that checked other keys than the coordinator would is said to, before any
    /// etcd is asked (fingerprints of different key sets differ whatever happened).
    #[tokio::test]
    async fn a_node_that_checked_other_keys_is_named_not_taken_for_a_change() {
        let mut theirs = strata_etcd::Settings::new(["http://127.0.0.1:1"]);
        theirs.exclude_from_check = vec!["/service/pg/leader".into()];
        let plugin = Etcd {
            settings: strata_etcd::Settings::new(["http://127.0.0.1:1"]),
            rename: Vec::new(),
            move_prefix: None,
        };
        let node = NodeSummary {
            name: "etcd1".into(),
            plugin: [
                ("etcd.fingerprint".to_string(), "ab".repeat(32)),
                ("etcd.checked".to_string(), theirs.check_id()),
            ]
            .into(),
            ..NodeSummary::default()
        };
        let err = plugin.after_stored("b", &[node]).await.unwrap_err();
        assert!(err.why.contains("checked other keys"), "{}", err.why);
        assert_eq!(err.retries, 0, "no retry mends two configurations");
    }
}
