//! Building nodes and coordinators from a configuration.

use crate::config::{Config, ConfigError, NodeConfig};
use crate::coordinator::{Coordinator, Settings};
use crate::node::NodeApi;
use crate::remote::{ApiClient, RemoteNode};
use crate::storage::Storage;
use crate::{CoordinatorError, CoordinatorResult};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use strata_agent::backup::NodeSource;
use strata_agent::local_node::LocalNode;
use strata_agent::service::ApiResult;
use strata_agent::service::{Agent, AgentConfig, RepoProvider};
use strata_cluster::node_api::{ApiError, ErrorCode};
use strata_hooks::PauseLedger;
use strata_repo::Repository;

/// How an agent for `source` works under `config`, recording its pauses in `pauses` (the
/// ledger of `config`'s state directory this process shares).
pub fn agent_config(config: &Config, source: NodeSource, pauses: &PauseLedger) -> AgentConfig {
    let defaults = strata_agent::restore::RestoreOptions::default();
    AgentConfig {
        source,
        state_dir: config.state_dir(),
        writer: config.backup.writer_options(),
        restore_workers: if config.restore.workers > 0 {
            config.restore.workers
        } else {
            defaults.workers
        },
        set_owner: defaults.set_owner,
        plugin: strata_agent::service::plugin::files(),
        hooks: Vec::new(),
        pauses: pauses.clone(),
    }
}

/// The agent settings of a configured node: what its component's plugin backs up there,
/// and the plugin's node-side steps.
pub fn node_agent_config(config: &Config, node: &NodeConfig, pauses: &PauseLedger) -> AgentConfig {
    let plugin = crate::plugin::of_node(config, &node.name);
    let mut agent = agent_config(config, plugin.node_source(node), pauses);
    agent.plugin = plugin.node_plugin(config, node);
    agent.hooks = config
        .hooks
        .iter()
        .filter(|h| h.node.as_deref() == Some(node.name.as_str()))
        .cloned()
        .collect();
    agent
}

/// How a restored server calls back into strata for WAL (see
/// [`crate::plugin::postgres::wal_fetch_command`]).
pub use crate::plugin::postgres::wal_fetch_command;

/// The repository the coordinator already has open, for in-process agents: one index in
/// memory, whatever the number of nodes.
pub struct SharedRepo {
    /// The name of the storage (in `[storages.*]`) the repository is on.
    pub storage: String,
    /// The open repository.
    pub repo: Arc<Repository>,
}

#[async_trait::async_trait]
impl RepoProvider for SharedRepo {
    async fn open(&self, storage: &str) -> ApiResult<Arc<Repository>> {
        if storage != self.storage {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("this process has storage {} open", self.storage),
            ));
        }
        self.repo.reload_index().await.map_err(as_api_error)?;
        Ok(self.repo.clone())
    }
}

/// Opens storages of an agent's own configuration by name (with its password), keeping
/// them open between operations.
pub struct ConfigRepos {
    config: Config,
    password: Option<String>,
    open: tokio::sync::Mutex<HashMap<String, Arc<Repository>>>,
}

impl ConfigRepos {
    /// Storages of `config`, opened with `password` when they are encrypted.
    pub fn new(config: Config, password: Option<String>) -> Self {
        ConfigRepos {
            config,
            password,
            open: tokio::sync::Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait::async_trait]
impl RepoProvider for ConfigRepos {
    async fn open(&self, storage: &str) -> ApiResult<Arc<Repository>> {
        let mut open = self.open.lock().await;
        if let Some(repo) = open.get(storage) {
            repo.reload_index().await.map_err(as_api_error)?;
            return Ok(repo.clone());
        }
        let opened = Storage::open(&self.config, storage).map_err(as_api_error)?;
        let repo = opened
            .open_repository(&self.config, self.password.as_deref(), true)
            .await
            .map_err(as_api_error)?;
        open.insert(storage.to_string(), repo.clone());
        Ok(repo)
    }
}

/// A coordinator-side failure as a node answers it: its kind ([`CoordinatorError::code`])
/// and its cause chain.
fn as_api_error(err: impl Into<CoordinatorError>) -> ApiError {
    let err = err.into();
    ApiError::new(err.code(), crate::error_chain(&err))
}

/// The client coordinators use to reach remote agents.
pub fn agent_client(config: &Config, url: &str) -> CoordinatorResult<ApiClient> {
    let token = config.server.agent_token.read("agent token")?;
    ApiClient::new(url, token, config.server.ca_file.as_deref())
        .map_err(|e| ConfigError::Invalid(e.message).into())
}

/// The configured nodes: remote agents for nodes with a `url`, in-process agents (from
/// `local_agents` when one already runs for the node, else new ones on `repos`) for the
/// rest.
pub fn build_nodes(
    config: &Config,
    nodes: &[NodeConfig],
    repos: Arc<dyn RepoProvider>,
    local_agents: &HashMap<String, Arc<Agent>>,
    pauses: &PauseLedger,
) -> CoordinatorResult<Vec<Arc<dyn NodeApi>>> {
    let mut out: Vec<Arc<dyn NodeApi>> = Vec::new();
    for node in nodes {
        match (&node.url, local_agents.get(&node.name)) {
            (_, Some(agent)) => out.push(Arc::new(LocalNode(agent.clone()))),
            (Some(url), None) => out.push(Arc::new(RemoteNode::new(
                &node.name,
                agent_client(config, url)?,
            ))),
            (None, None) => {
                let agent = Agent::start(node_agent_config(config, node, pauses), repos.clone());
                out.push(Arc::new(LocalNode(agent)));
            }
        }
    }
    Ok(out)
}

/// A coordinator of `nodes` writing to `storage`, its repository open, reporting the
/// ends of operations to `events` and recording pauses in `pauses` (the ledger its
/// in-process agents share).
pub fn coordinator(
    config: &Config,
    storage: &Storage,
    repo: Arc<Repository>,
    nodes: Vec<Arc<dyn NodeApi>>,
    events: Arc<crate::events::Events>,
    pauses: &PauseLedger,
) -> Arc<Coordinator> {
    let zones = config
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.zone.clone()))
        .collect::<HashMap<_, _>>();
    let zones = nodes
        .iter()
        .map(|n| zones.get(n.name()).cloned().flatten())
        .collect();
    let names: Vec<&str> = nodes.iter().map(|n| n.name()).collect();
    let components = crate::component::from_config(config, &names);
    let settings = Settings {
        hooks: crate::component::HookSet {
            hooks: config
                .hooks
                .iter()
                .cloned()
                .chain(components.iter().flat_map(|c| c.plugin.hooks(&c.name)))
                .collect(),
            implied: components
                .iter()
                .flat_map(|c| c.plugin.implied_hooks())
                .collect(),
            pauses: Some(pauses.clone()),
        },
        components: Some(components),
        events,
        // Validated with the configuration.
        gc_grace: config.gc.grace().unwrap_or(crate::gc::DEFAULT_GRACE),
        ..Settings::new(Duration::from_secs(config.server.lease_ttl_secs))
    };
    Coordinator::with(
        nodes,
        zones,
        &storage.name,
        repo,
        Some(storage.requests.clone()),
        settings,
    )
}
