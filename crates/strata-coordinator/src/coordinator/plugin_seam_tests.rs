//! The seams a plugin of another kind needs (an etcd store restored before the database
//! that reads it, its revision checked again once the other data is stored), proven with
//! a plugin written here and in-process agents.

use crate::config::{Config, NodeConfig};
use crate::coordinator::{Coordinator, RestorePlan, Settings};
use crate::plugin::*;
use crate::setup::SharedRepo;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use strata_agent::backup::NodeSource;
use strata_agent::local_node::LocalNode;
use strata_agent::service::plugin::{PluginRestore, RestoreStart};
use strata_agent::service::NodePlugin;
use strata_agent::service::{Agent, AgentConfig};
use strata_cluster::node_api::{ApiError, ErrorCode};
use strata_repo::summary::BackupStatus;
use strata_repo::summary::NodeSummary;
use strata_repo::Repository;

/// A plugin that takes node `db1`, restores before plain files, and (when told) finds
/// its data changed once every node's data is stored.
struct Topology {
    changed_after_stored: bool,
    /// How many more attempts a change asks for.
    retries: u32,
}

#[async_trait::async_trait]
impl Plugin for Topology {
    fn name(&self) -> &'static str {
        "topology"
    }
    fn restore_rank(&self) -> u32 {
        10
    }
    fn check_node(&self, _node: &NodeConfig) -> Result<(), PluginError> {
        Ok(())
    }
    fn node_source(&self, node: &NodeConfig) -> NodeSource {
        Files::plain_source(node)
    }
    fn node_plugin(&self, _config: &Config, _node: &NodeConfig) -> Arc<dyn NodePlugin> {
        strata_agent::service::plugin::files()
    }
    fn took(&self, node: &NodeSummary) -> bool {
        node.name == "db1"
    }
    async fn after_stored(&self, _backup: &str, nodes: &[NodeSummary]) -> Result<(), NotTogether> {
        assert!(nodes.iter().all(|n| n.has_manifest), "runs after the data");
        match self.changed_after_stored {
            true => Err(NotTogether {
                why: "revision 7 at the start, 8 now".into(),
                retries: self.retries,
            }),
            false => Ok(()),
        }
    }
}

/// The node side of [`Topology`] on `db1`: its store is down, so a restore is refused.
#[derive(Debug)]
struct StoreDown;

#[async_trait::async_trait]
impl NodePlugin for StoreDown {
    fn name(&self) -> &'static str {
        "topology"
    }
    async fn start_restore(
        &self,
        _restore: &RestoreStart<'_>,
    ) -> Result<Option<Box<dyn PluginRestore>>, ApiError> {
        Err(ApiError::new(ErrorCode::BadRequest, "the store is down"))
    }
}

/// Two in-process nodes, `db1` (with [`StoreDown`]) and `db2`, each with a file, and
/// a coordinator of them with the [`Topology`] plugin.
async fn two_nodes(
    dir: &Path,
    changed_after_stored: bool,
    retries: u32,
) -> (Arc<Coordinator>, Vec<PathBuf>) {
    let options = strata_repo::InitOptions {
        encryption: strata_repo::format::Encryption::None,
        ..Default::default()
    };
    let store = Arc::new(strata_store::LocalStore::new(dir.join("repo")));
    let repo = Repository::init(store, None, options).await.unwrap();
    let provider = Arc::new(SharedRepo {
        storage: "test".into(),
        repo: repo.clone(),
    });
    let mut roots = Vec::new();
    let mut nodes: Vec<Arc<dyn crate::node::NodeApi>> = Vec::new();
    for name in ["db1", "db2"] {
        let root = dir.join(name);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("data"), format!("the data of {name}")).unwrap();
        let plugin: Arc<dyn NodePlugin> = match name {
            "db1" => Arc::new(StoreDown),
            _ => strata_agent::service::plugin::files(),
        };
        let config = AgentConfig {
            source: NodeSource {
                name: name.into(),
                roots: vec![root.display().to_string()],
                exclude: Vec::new(),
                follow: Vec::new(),
                immutable: false,
            },
            state_dir: dir.join("state"),
            pauses: strata_hooks::PauseLedger::new(dir.join("state")),
            writer: Default::default(),
            restore_workers: 2,
            set_owner: false,
            plugin,
            hooks: Vec::new(),
        };
        nodes.push(Arc::new(LocalNode(Agent::start(config, provider.clone()))));
        roots.push(root);
    }
    let topology = Arc::new(Topology {
        changed_after_stored,
        retries,
    });
    let settings = Settings::new(Duration::from_secs(30)).plugin(topology, nodes.len());
    let coordinator = Coordinator::with(nodes, Vec::new(), "test", repo, None, settings);
    (coordinator, roots)
}

/// A change that asks for retries runs the whole backup again, as many times and no
/// more: every attempt recorded, the operation's outcome the last one's.
#[tokio::test]
async fn a_change_that_asks_for_retries_backs_up_again_as_many_times() {
    let dir = tempfile::tempdir().unwrap();
    let (coordinator, _) = two_nodes(dir.path(), true, 2).await;
    let pending = coordinator.backup("test").await.unwrap();
    let op = pending.operation().clone();
    let last = pending.run().await.unwrap();
    let saved = coordinator.repo().list_backups().await.unwrap();
    assert_eq!(saved.len(), 3, "one attempt and two more");
    assert!(
        saved.iter().any(|s| s.name == last.name),
        "the outcome is an attempt"
    );
    for summary in &saved {
        assert_eq!(summary.status, BackupStatus::Failed, "{}", summary.name);
    }
    let status = op.status();
    assert_eq!(status.state, crate::operation::OpState::Failed);
    let again: Vec<&String> = status
        .log
        .iter()
        .filter(|l| l.contains("backing up again"))
        .collect();
    assert_eq!(again.len(), 2, "{:?}", status.log);
    assert!(again[1].contains("attempt 3"), "{again:?}");
    // The two failed attempts before the last are the ones the log names.
    for summary in saved.iter().filter(|s| s.name != last.name) {
        assert!(again.iter().any(|l| l.contains(&summary.name)), "{again:?}");
    }
    assert!(coordinator.registry().running().is_empty());
}

#[tokio::test]
async fn a_change_found_after_the_data_is_stored_fails_the_backup() {
    let dir = tempfile::tempdir().unwrap();
    let (coordinator, _) = two_nodes(dir.path(), true, 0).await;
    let summary = coordinator
        .backup("test")
        .await
        .unwrap()
        .run()
        .await
        .unwrap();
    // Recorded, and recorded as failed with the reason: never a good backup, never
    // `latest`.
    let saved = coordinator
        .repo()
        .load_summary(&summary.name)
        .await
        .unwrap();
    assert_eq!(saved.status, BackupStatus::Failed);
    for node in &saved.nodes {
        assert_eq!(node.status, BackupStatus::Failed, "{}", node.name);
        let error = node.error.as_deref().unwrap_or_default();
        assert!(error.contains("revision 7 at the start, 8 now"), "{error}");
        assert!(error.contains("topology plugin"), "{error}");
    }
}

#[tokio::test]
async fn a_plugin_restored_first_that_fails_stops_the_later_ones_before_they_write() {
    let dir = tempfile::tempdir().unwrap();
    let (coordinator, roots) = two_nodes(dir.path(), false, 0).await;
    let summary = coordinator
        .backup("test")
        .await
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(summary.status, BackupStatus::Complete);
    for root in &roots {
        std::fs::remove_file(root.join("data")).unwrap();
    }
    let outcome = coordinator
        .restore(&summary, RestorePlan::default(), "test")
        .await
        .unwrap()
        .run()
        .await
        .unwrap();
    let of = |name: &str| outcome.nodes.iter().find(|n| n.node == name).unwrap();
    let first = of("db1").error.clone().unwrap_or_default();
    assert!(first.contains("the store is down"), "{first}");
    let later = of("db2").error.clone().unwrap_or_default();
    assert!(later.contains("not restored: node db1"), "{later}");
    // db2 ranks after db1's plugin: nothing of it was written.
    assert!(!roots[1].join("data").exists());
}

/// The node side of a plugin that notes when its restores start and end.
#[derive(Debug)]
struct Noting(&'static str, Arc<std::sync::Mutex<Vec<String>>>);

struct NotedRestore(&'static str, Arc<std::sync::Mutex<Vec<String>>>);

#[async_trait::async_trait]
impl NodePlugin for Noting {
    fn name(&self) -> &'static str {
        "topology"
    }
    async fn start_restore(
        &self,
        _restore: &RestoreStart<'_>,
    ) -> Result<Option<Box<dyn PluginRestore>>, ApiError> {
        self.1.lock().unwrap().push(format!("{} starts", self.0));
        Ok(Some(Box::new(NotedRestore(self.0, self.1.clone()))))
    }
}

#[async_trait::async_trait]
impl PluginRestore for NotedRestore {
    async fn finish(
        self: Box<Self>,
        _restored: &strata_agent::service::plugin::Restored<'_>,
    ) -> Result<Option<String>, ApiError> {
        self.1.lock().unwrap().push(format!("{} is back", self.0));
        Ok(None)
    }
}

#[tokio::test]
async fn a_plugin_of_a_lower_rank_is_back_before_the_next_starts() {
    let dir = tempfile::tempdir().unwrap();
    let (coordinator, _) = two_nodes(dir.path(), false, 0).await;
    let summary = coordinator
        .backup("test")
        .await
        .unwrap()
        .run()
        .await
        .unwrap();
    // The same backup restored onto two fresh nodes whose plugins note what they do.
    let notes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let provider = Arc::new(SharedRepo {
        storage: "test".into(),
        repo: coordinator.repo().clone(),
    });
    let mut nodes: Vec<Arc<dyn crate::node::NodeApi>> = Vec::new();
    for name in ["db1", "db2"] {
        let config = AgentConfig {
            source: NodeSource {
                name: name.into(),
                roots: vec![dir.path().join("fresh").join(name).display().to_string()],
                exclude: Vec::new(),
                follow: Vec::new(),
                immutable: false,
            },
            state_dir: dir.path().join("state2"),
            pauses: strata_hooks::PauseLedger::new(dir.path().join("state2")),
            writer: Default::default(),
            restore_workers: 2,
            set_owner: false,
            plugin: Arc::new(Noting(name, notes.clone())),
            hooks: Vec::new(),
        };
        nodes.push(Arc::new(LocalNode(Agent::start(config, provider.clone()))));
    }
    let topology = Arc::new(Topology {
        changed_after_stored: false,
        retries: 0,
    });
    let settings = Settings::new(Duration::from_secs(30)).plugin(topology, nodes.len());
    let repo = coordinator.repo().clone();
    let fresh = Coordinator::with(nodes, Vec::new(), "test", repo, None, settings);
    let outcome = fresh
        .restore(&summary, RestorePlan::default(), "test")
        .await
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(
        outcome.nodes.iter().all(|n| n.error.is_none()),
        "{outcome:?}"
    );
    assert_eq!(
        *notes.lock().unwrap(),
        ["db1 starts", "db1 is back", "db2 starts", "db2 is back"]
    );
}
