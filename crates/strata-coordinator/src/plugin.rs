//! Plugins: what a backup of a node is (plain files, a PostgreSQL server, ...).
//!
//! A plugin has two sides. The node side ([`strata_agent::service::NodePlugin`]) adds
//! steps to one node's backup and restore inside the agent. The cluster side, [`Plugin`]
//! here, is what the configuration and the coordinator ask of it: how a node is
//! configured and what its agent backs up, which nodes a backup takes, steps that run
//! once every node's data is stored, how backup nodes are placed on restore, and the
//! order in which plugins restore. The registry at the end of this module is the one
//! place that knows plugins by name: configuration refuses an unknown name with the
//! list of known ones, and a backup's nodes are matched to their plugin by the record
//! they carry (keys prefixed with the plugin's name). docs/architecture.md shows how a
//! third plugin is added.

use crate::config::{Config, ConfigError, NodeConfig};
use crate::node::NodeApi;
use crate::CoordinatorResult;
use std::sync::Arc;
use strata_agent::backup::NodeSource;
use strata_agent::service::NodePlugin;
use strata_postgres::recovery::RecoveryPlan;
use strata_repo::summary::NodeSummary;

pub mod postgres;

pub use postgres::Postgres;

/// The cluster side of a plugin. See the module documentation.
#[async_trait::async_trait]
pub trait Plugin: Send + Sync {
    /// The plugin's name in the configuration (`plugin = "..."`), and the prefix of the
    /// keys it records in node summaries (`postgres.start_lsn`).
    fn name(&self) -> &'static str;

    /// Restore order between plugins: nodes of a plugin with a lower rank are restored
    /// (all at once) before those of a higher rank start, and a failure stops the later
    /// ones (a topology store before the database that reads it). Default 100.
    fn restore_rank(&self) -> u32 {
        100
    }

    /// Checks a node whose agent runs in this process (a remote agent's own
    /// configuration is checked where it runs). Returns why it cannot work.
    fn check_node(&self, node: &NodeConfig) -> Result<(), String>;

    /// What the agent of `node` backs up.
    fn node_source(&self, node: &NodeConfig) -> NodeSource;

    /// The node side of the plugin for the agent of `node`.
    fn node_plugin(&self, config: &Config, node: &NodeConfig) -> Arc<dyn NodePlugin>;

    /// Whether a node of a backup was taken by this plugin, from its summary's record.
    fn took(&self, node: &NodeSummary) -> bool {
        let prefix = format!("{}.", self.name());
        node.plugin.keys().any(|k| k.starts_with(&prefix))
    }

    /// The indexes of the nodes a backup takes; `None`: all of them.
    async fn backup_members(
        &self,
        _nodes: &[Arc<dyn NodeApi>],
    ) -> CoordinatorResult<Option<Vec<usize>>> {
        Ok(None)
    }

    /// Runs once every node's data and manifest is stored, before the backup's summary
    /// is written: a check that the data still belongs together (a revision read at the
    /// start, read again now). An error fails the backup's nodes of this plugin with
    /// the reason, so the backup is recorded as failed.
    async fn after_stored(&self, _backup: &str, _nodes: &[NodeSummary]) -> Result<(), String> {
        Ok(())
    }

    /// Whether a backup node of this plugin is one copy of a whole cluster, laid down on
    /// every target node (or the one asked for), rather than paired with one node.
    fn restore_to_every_node(&self) -> bool {
        false
    }

    /// The recovery the nodes run after their files are back (PostgreSQL), from the
    /// user's restore plan; `None`: a plain files restore.
    fn recovery(&self, _plan: &crate::cluster::RestorePlan) -> Option<RecoveryPlan> {
        None
    }
}

/// The `files` plugin: the nodes' roots, copied as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct Files;

impl Files {
    /// What a node's agent backs up with no plugin around it: its roots.
    pub fn plain_source(node: &NodeConfig) -> NodeSource {
        NodeSource {
            name: node.name.clone(),
            roots: node.roots.clone(),
            exclude: node.exclude.clone(),
            follow: Vec::new(),
        }
    }
}

#[async_trait::async_trait]
impl Plugin for Files {
    fn name(&self) -> &'static str {
        "files"
    }

    fn check_node(&self, node: &NodeConfig) -> Result<(), String> {
        if node.roots.is_empty() {
            return Err(format!("node {:?} has no roots", node.name));
        }
        Ok(())
    }

    fn node_source(&self, node: &NodeConfig) -> NodeSource {
        Files::plain_source(node)
    }

    fn node_plugin(&self, _config: &Config, _node: &NodeConfig) -> Arc<dyn NodePlugin> {
        strata_agent::service::plugin::files()
    }

    /// Plain files record nothing.
    fn took(&self, node: &NodeSummary) -> bool {
        node.plugin.is_empty()
    }
}

// The registry: the only place that knows plugins by name.

/// The names of the plugins strata has, as the configuration spells them.
pub const KNOWN: &[&str] = &["files", "postgres"];

/// The plugin called `name`, with its settings from `config`.
fn named(name: &str, config: &Config) -> Option<Arc<dyn Plugin>> {
    match name {
        "files" => Some(Arc::new(Files)),
        "postgres" => Some(Arc::new(Postgres::new(&config.postgres))),
        _ => None,
    }
}

/// The plugin the configuration names; an unknown name is refused with the list of
/// known ones.
pub fn configured(config: &Config) -> Result<Arc<dyn Plugin>, ConfigError> {
    named(&config.plugin, config).ok_or_else(|| {
        ConfigError::Invalid(format!(
            "plugin {:?} is not known: use {}",
            config.plugin,
            KNOWN
                .iter()
                .map(|k| format!("{k:?}"))
                .collect::<Vec<_>>()
                .join(" or ")
        ))
    })
}

/// The plugin the configuration names, for code that runs after the configuration was
/// validated ([`Config::validate`] refuses unknown names): `files` otherwise.
pub fn configured_or_files(config: &Config) -> Arc<dyn Plugin> {
    configured(config).unwrap_or_else(|_| Arc::new(Files))
}

/// The plugin that took a node of a backup (with default settings: what a restore asks
/// of a plugin does not depend on them). A record no plugin claims is plain files.
pub fn of_backup_node(node: &NodeSummary) -> Arc<dyn Plugin> {
    let defaults = Config::default();
    KNOWN
        .iter()
        .filter_map(|name| named(name, &defaults))
        .find(|plugin| plugin.name() != "files" && plugin.took(node))
        .unwrap_or_else(|| Arc::new(Files))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn every_known_name_has_a_plugin_of_that_name() {
        let config = Config::default();
        for name in KNOWN {
            let plugin = named(name, &config).expect("known names are registered");
            assert_eq!(plugin.name(), *name);
        }
    }

    #[test]
    fn an_unknown_plugin_is_refused_with_the_known_ones() {
        let config = Config {
            plugin: "etcd".into(),
            ..Config::default()
        };
        let err = configured(&config).err().expect("etcd is not a plugin yet");
        assert_eq!(
            err.to_string(),
            r#"plugin "etcd" is not known: use "files" or "postgres""#
        );
    }

    #[test]
    fn backup_nodes_are_matched_by_their_record() {
        let mut node = NodeSummary::default();
        assert_eq!(of_backup_node(&node).name(), "files");
        node.plugin = BTreeMap::from([("postgres.start_lsn".into(), "0/2000028".into())]);
        assert_eq!(of_backup_node(&node).name(), "postgres");
        node.plugin = BTreeMap::from([("someday.revision".into(), "7".into())]);
        assert_eq!(of_backup_node(&node).name(), "files");
    }
}

#[cfg(test)]
mod seam_tests;
