//! The ClickHouse plugin (`plugin = "clickhouse"`, each node's server in
//! `[nodes.clickhouse]`): every node freezes its MergeTree tables and backs up the frozen
//! parts with the schema; a restore creates the tables again and attaches the parts, on
//! one replica of each shard for replicated tables. docs/clickhouse.md has the procedure
//! and which ClickHouse versions each path was run against.
//!
//! Replicas hold byte-identical parts, so strata's deduplication stores each replicated
//! part once however many replicas froze it; the node summaries say how many parts and
//! rows each node froze.
//!
//! Layout, one job each:
//! - [`client`]: the server's HTTP interface, every query bounded and killed on timeout;
//! - [`schema`]: the server, its databases and tables, the settings a `CREATE` replays with;
//! - [`staging`]: the frozen copy under `<path>/shadow/strata`, held by a lock;
//! - [`record`]: what a node's backup records beside its parts (`strata-clickhouse.json`);
//! - [`node`]: one node's backup (freeze) and restore (create, attach, wait);
//! - [`part_name`]: what a part's name says (partition, blocks, level, mutation);
//! - [`covering`]: which parts make a shard's data (the covering set of the union);
//! - [`replicas`]: which node attaches a replicated table, from which backups' parts;
//! - [`converge`]: a restore ends when every replica holds the backup's rows;
//! - [`stale`]: replicas ZooKeeper kept after the servers lost their disks;
//! - [`distributed`]: rows a Distributed table acknowledged and has not sent;
//! - [`rename`]: statements rewritten for one table back or a drill;
//! - [`views`]: a materialized view's storage under the name the restoring server gives it;
//! - [`drill`]: the restore drill's scratch server.

pub mod client;
pub mod converge;
pub mod covering;
pub mod distributed;
pub mod drill;
pub mod node;
pub mod part_name;
pub mod record;
pub mod rename;
pub mod replicas;
pub mod schema;
pub mod staging;
pub mod stale;
pub mod views;

use super::{Plugin, PluginError};
use std::sync::Arc;
use strata_agent::backup::NodeSource;
use strata_agent::service::NodePlugin;
use strata_cluster::config::{Config, NodeConfig};
use strata_repo::summary::NodeSummary;

/// The ClickHouse plugin's cluster side.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClickHouse;

#[async_trait::async_trait]
impl Plugin for ClickHouse {
    fn name(&self) -> &'static str {
        "clickhouse"
    }

    fn check_node(&self, node: &NodeConfig) -> Result<(), PluginError> {
        let Some(settings) = &node.clickhouse else {
            return Err(PluginError::Settings(format!(
                "node {:?} has no [nodes.clickhouse] section: with plugin = \"clickhouse\" each node names its server's url and data path",
                node.name
            )));
        };
        if !node.roots.is_empty() {
            return Err(PluginError::Settings(format!(
                "node {:?}: with plugin = \"clickhouse\" the frozen tables are what is backed up; remove `roots`",
                node.name
            )));
        }
        if !settings.path.is_absolute() {
            return Err(PluginError::Settings(format!(
                "node {:?}: [nodes.clickhouse] path must be absolute",
                node.name
            )));
        }
        if let Err(e) = humantime::parse_duration(&settings.restore_wait) {
            return Err(PluginError::Settings(format!(
                "node {:?}: [nodes.clickhouse] restore_wait {:?}: {e} (a duration: 10m, 1h)",
                node.name, settings.restore_wait
            )));
        }
        if let Some(bad) = settings.zookeeper.iter().find(|h| {
            h.rsplit_once(':')
                .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        }) {
            return Err(PluginError::Settings(format!(
                "node {:?}: [nodes.clickhouse] zookeeper {bad:?}: give HOST:PORT",
                node.name
            )));
        }
        client::Client::new(settings)
            .map(|_| ())
            .map_err(|e| PluginError::Settings(format!("node {:?}: {e}", node.name)))
    }

    fn node_source(&self, node: &NodeConfig) -> NodeSource {
        let roots = node
            .clickhouse
            .as_ref()
            .map(|c| vec![staging::root(&c.path).to_string_lossy().into_owned()])
            .unwrap_or_default();
        NodeSource {
            name: node.name.clone(),
            roots,
            exclude: Vec::new(),
            follow: Vec::new(),
            immutable: true,
        }
    }

    async fn prove_restored(
        &self,
        _node: &NodeSummary,
        copy: &std::path::Path,
        work: &std::path::Path,
    ) -> Option<crate::Proof> {
        Some(drill::prove(copy, work).await)
    }

    fn restores_one_table(&self) -> bool {
        true
    }

    async fn check_table(
        &self,
        repo: &strata_repo::Repository,
        backup: &str,
        nodes: &[String],
        table: &str,
        partitions: &[String],
    ) -> Result<(), PluginError> {
        node::find_table(repo, backup, nodes, table, partitions)
            .await
            .map_err(|e| match e.code {
                strata_cluster::node_api::ErrorCode::BadRequest => PluginError::Refused(e.message),
                _ => PluginError::System(e.message),
            })
    }

    /// A replica may stay out of a restore onto fewer replicas when every replicated
    /// table it holds is held by another restored node: they come back whole from that
    /// one. Its own non-replicated tables stay out with it (the restore says so, and
    /// docs/clickhouse.md).
    fn may_leave_out(&self, node: &NodeSummary, others: &[&NodeSummary]) -> bool {
        let held = |n: &NodeSummary| -> Option<std::collections::BTreeMap<String, u64>> {
            serde_json::from_str(n.plugin.get("clickhouse.replicated")?).ok()
        };
        let Some(mine) = held(node).filter(|m| !m.is_empty()) else {
            return false;
        };
        let theirs: Vec<_> = others.iter().filter_map(|o| held(o)).collect();
        mine.keys()
            .all(|path| theirs.iter().any(|t| t.contains_key(path)))
    }

    fn node_plugin(&self, _config: &Config, node: &NodeConfig) -> Arc<dyn NodePlugin> {
        match &node.clickhouse {
            Some(settings) => Arc::new(node::ClickHouseAgent {
                settings: settings.clone(),
            }),
            // check_node refused such a node before any agent is built.
            None => strata_agent::service::plugin::files(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(extra: &str) -> NodeConfig {
        toml::from_str(&format!(
            "name = \"ch1\"\n[clickhouse]\nurl = \"http://127.0.0.1:8123\"\npath = \"/var/lib/clickhouse\"\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn a_restore_wait_or_a_zookeeper_address_that_does_not_parse_is_refused_with_the_config() {
        assert!(ClickHouse.check_node(&node("")).is_ok());
        assert!(ClickHouse
            .check_node(&node(
                "restore_wait = \"90s\"\nzookeeper = [\"zk1:2181\", \"10.0.0.2:2181\"]"
            ))
            .is_ok());
        let err = ClickHouse
            .check_node(&node("restore_wait = \"soon\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("restore_wait"), "{err}");
        for bad in ["zk1", ":2181", "zk1:port"] {
            let err = ClickHouse
                .check_node(&node(&format!("zookeeper = [{bad:?}]")))
                .unwrap_err()
                .to_string();
            assert!(err.contains("HOST:PORT"), "{bad}: {err}");
        }
    }
}
