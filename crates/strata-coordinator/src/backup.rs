//! Backup names, and the in-process form of a cluster backup.

use crate::cluster::Coordinator;
use crate::node::{LocalNode, NodeApi};
use crate::setup::SharedRepo;
use crate::CoordinatorResult;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use strata_agent::backup::NodeSource;
use strata_agent::service::{Agent, AgentConfig};
use strata_repo::summary::BackupSummary;
use strata_repo::writer::WriterOptions;
use strata_repo::Repository;

/// How to run a backup of in-process nodes.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    pub writer: WriterOptions,
    /// Where nodes keep their files caches.
    pub state_dir: PathBuf,
    /// The request counter of the storage, to record what the backup cost.
    pub requests: Option<strata_store::CountingStore>,
}

/// A unique, time-sortable backup name such as `20261122T055350Z-3fa1b2c4`: 32 random
/// bits make two backups started in the same second collide with negligible odds.
pub fn new_backup_name() -> String {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let compact: String = now.chars().filter(|c| *c != '-' && *c != ':').collect();
    let mut suffix = [0u8; 4];
    getrandom::getrandom(&mut suffix).expect("the OS random source is available");
    format!("{compact}-{}", hex::encode(suffix))
}

/// Error chains as one line: "what: why: why".
pub use strata_agent::service::error_chain;

/// Backs up `nodes` with in-process agents and records the backup: the library form of
/// `strata backup DIR`. Returns the summary, which says whether every node made it.
pub async fn run_backup(
    repo: Arc<Repository>,
    nodes: &[NodeSource],
    options: &BackupOptions,
) -> CoordinatorResult<BackupSummary> {
    let provider = Arc::new(SharedRepo {
        storage: IN_PROCESS.into(),
        repo: repo.clone(),
    });
    let defaults = strata_agent::restore::RestoreOptions::default();
    let nodes: Vec<Arc<dyn NodeApi>> = nodes
        .iter()
        .map(|source| {
            let config = AgentConfig {
                source: source.clone(),
                state_dir: options.state_dir.clone(),
                writer: options.writer.clone(),
                restore_workers: defaults.workers,
                set_owner: defaults.set_owner,
                plugin: strata_agent::service::plugin::files(),
            };
            Arc::new(LocalNode(Agent::start(config, provider.clone()))) as Arc<dyn NodeApi>
        })
        .collect();
    let coordinator = Coordinator::new(
        nodes,
        Vec::new(),
        IN_PROCESS,
        repo,
        options.requests.clone(),
        Duration::from_secs(30),
    );
    coordinator
        .backup(&crate::audit::local_actor())
        .await?
        .run()
        .await
}

/// The storage name in-process agents of [`run_backup`] use for the shared repository.
const IN_PROCESS: &str = "in-process";
