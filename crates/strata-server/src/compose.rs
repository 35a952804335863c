//! `strata server` from a configuration: which roles this process takes (this host's
//! node agent, the cluster's coordinator, the scheduler), the parts each needs, and the
//! listener they are served on. The binary only parses the command line and prints.

use crate::scheduled::ServerJobs;
use std::collections::HashMap;
use std::sync::Arc;
use strata_coordinator::config::{Config, ConfigError};
use strata_coordinator::events::Events;
use strata_coordinator::jobs::{self, ClusterJobs};
use strata_coordinator::schedule::{Scheduler, SystemClock};
use strata_coordinator::setup::{self, ConfigRepos};
use strata_coordinator::storage::Storage;
use strata_coordinator::CoordinatorError;
use strata_tables::config::TablesConfig;

/// Why a server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// The configuration or the command line asks for something that cannot be served.
    #[error("{0}")]
    Usage(String),
    /// A secret the configuration names could not be read (the password, a token).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The coordinator could not be set up: its storage or its nodes.
    #[error(transparent)]
    Coordinator(#[from] CoordinatorError),
    /// The repository could not be opened (missing, a wrong password).
    #[error(transparent)]
    Repo(#[from] strata_repo::RepoError),
    /// Listening or serving failed.
    #[error("{0}")]
    Failed(String),
}

/// What `strata server` is started with.
pub struct ServerSetup {
    /// strata's configuration.
    pub config: Config,
    /// `[tables]`, for `tables` schedules.
    pub tables: TablesConfig,
    /// What `/api/v1/config` shows: the whole file, secrets masked.
    pub config_view: serde_json::Value,
    /// Serve this node's agent (`--node`, else `server.node`).
    pub node: Option<String>,
    /// Listen here (`--listen`, else `server.listen`).
    pub listen: Option<String>,
    /// Webhooks and the audit log of this process.
    pub events: Arc<Events>,
    /// The repository's password for the coordinator, when it is encrypted.
    pub coordinator_password: Option<String>,
    /// Says why the server must stop (SIGTERM, say), once it must.
    pub stop: tokio::sync::watch::Receiver<Option<String>>,
}

/// How long a stopping server waits for its running operations to record their end.
pub const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Whether a server of `config` coordinates the cluster (and so opens the repository).
pub fn coordinates(config: &Config) -> bool {
    config.server.coordinator && !config.nodes.is_empty()
}

/// The agent of this host's node `name`, started, and the token its API asks for.
fn start_agent(
    config: &Config,
    name: &str,
    repos: &Arc<ConfigRepos>,
    pauses: &strata_coordinator::hooks::PauseLedger,
) -> Result<(Arc<strata_agent::service::Agent>, String), ComposeError> {
    let settings = &config.server;
    let Some(node_config) = config.nodes.iter().find(|n| n.name == name) else {
        return Err(ComposeError::Usage(format!(
            "--node {name}: no such [[nodes]] entry in the configuration"
        )));
    };
    if node_config.roots.is_empty() {
        return Err(ComposeError::Usage(format!(
            "node {name} has no roots to serve"
        )));
    }
    let token = settings.agent_token.read("agent token")?.ok_or_else(|| {
        ComposeError::Usage(format!(
            "the agent API needs a token: set ${} or server.agent_token.file",
            settings.agent_token.env
        ))
    })?;
    let agent = strata_agent::service::Agent::start(
        setup::node_agent_config(config, node_config, pauses),
        repos.clone(),
    );
    Ok((agent, token))
}

/// The coordinator API's tokens: the user token `token`, and each named one of
/// `[[server.tokens]]` with its role.
fn user_tokens(config: &Config, token: String) -> Result<crate::Tokens, ComposeError> {
    let mut tokens = crate::Tokens::single("user", token);
    for named in &config.server.tokens {
        let secret = named.source().read("named user token")?.ok_or_else(|| {
            ComposeError::Usage(format!(
                "server.tokens {:?}: neither ${} nor its file is set",
                named.name, named.env
            ))
        })?;
        tokens = tokens.with_role(&named.name, secret, named.role);
    }
    Ok(tokens)
}

/// Builds every part of the server, binds its listener, tells `listening` the line
/// scripts wait for (`strata server listening on URL (roles)`), and serves until the
/// process ends.
pub async fn run(setup: ServerSetup, listening: impl FnOnce(&str)) -> Result<(), ComposeError> {
    let ServerSetup {
        config,
        tables,
        config_view,
        node,
        listen,
        events,
        coordinator_password,
        mut stop,
    } = setup;
    let mut stoppable = None;
    // Scratch servers of table restores and drills killed on this host are stopped and
    // their copies removed (each said in a warning line).
    let _ = strata_coordinator::scratch_space::sweep(&config.state_dir());

    let settings = &config.server;
    let node = node.or(settings.node.clone());
    let password = config.password()?;
    let repos = Arc::new(ConfigRepos::new(config.clone(), password));
    let mut parts = crate::ServerParts {
        agent: None,
        coordinator: None,
        readiness: Arc::new(crate::ServerReadiness {
            config: config.clone(),
            nodes: Vec::new(),
        }),
    };
    let mut local_agents = HashMap::new();
    let mut roles = Vec::new();
    // One ledger of the state directory's pause records for the agent and the coordinator
    // served here: a resume waits for a pause call still running in either.
    let pauses = strata_coordinator::hooks::PauseLedger::new(config.state_dir());
    if let Some(name) = &node {
        let (agent, token) = start_agent(&config, name, &repos, &pauses)?;
        local_agents.insert(name.clone(), agent.clone());
        parts.agent = Some((agent, token));
        roles.push(format!("agent of node {name}"));
    }
    if settings.coordinator && !config.nodes.is_empty() {
        let token = settings.user_token.read("user token")?.ok_or_else(|| {
            ComposeError::Usage(format!(
                "the coordinator API needs a token: set ${} or server.user_token.file",
                settings.user_token.env
            ))
        })?;
        let storage = Storage::open_default(&config)?;
        let repo = storage
            .open_repository(&config, coordinator_password.as_deref(), true)
            .await?;
        let nodes = setup::build_nodes(
            &config,
            &config.nodes,
            repos.clone(),
            &local_agents,
            &pauses,
        )?;
        let coordinator =
            setup::coordinator(&config, &storage, repo, nodes, events.clone(), &pauses);
        stoppable = Some(coordinator.clone());
        parts.readiness = Arc::new(crate::ServerReadiness {
            config: config.clone(),
            nodes: coordinator.nodes().to_vec(),
        });
        // Pauses a process that is gone left (killed while a backup was paused): resumed
        // at start, then looked for every few seconds.
        tokio::spawn({
            let coordinator = coordinator.clone();
            async move {
                loop {
                    coordinator.resume_orphans().await;
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                }
            }
        });
        let tokens = user_tokens(&config, token)?;
        let scheduler_part = start_scheduler(
            &config,
            &tables,
            &events,
            Some(ClusterJobs {
                coordinator: coordinator.clone(),
                retention: config.retention.clone(),
            }),
            &mut roles,
        )?;
        parts.coordinator = Some(crate::CoordinatorParts {
            coordinator,
            tokens,
            scheduler: scheduler_part,
            config: config.clone(),
            // Secrets masked; secret sources (`env`, `file`) are names and stay visible.
            config_view,
            tables: tables.clone(),
        });
        roles.push(format!("coordinator of {} nodes", config.nodes.len()));
    }
    if parts.coordinator.is_none() {
        // Table retention schedules need no coordinator.
        start_scheduler(&config, &tables, &events, None, &mut roles)?;
    }
    if roles.is_empty() {
        return Err(ComposeError::Usage(
                "nothing to serve: give --node NAME for this host's agent and/or configure [[nodes]] for the coordinator".into(),
            ));
    }
    let address = listen.unwrap_or_else(|| settings.listen.clone());
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|e| ComposeError::Failed(format!("cannot listen on {address}: {e}")))?;
    let tls = settings
        .tls_cert
        .clone()
        .zip(settings.tls_key.clone())
        .map(|(cert, key)| crate::TlsFiles { cert, key });
    let scheme = if tls.is_some() { "https" } else { "http" };
    let bound = listener
        .local_addr()
        .map_err(|e| ComposeError::Failed(e.to_string()))?;
    listening(&format!(
        "strata server listening on {scheme}://{bound} ({})",
        roles.join(", ")
    ));
    // A Type=notify unit counts as started from here, and the watchdog (WatchdogSec=)
    // hears from this runtime for as long as it runs tasks.
    strata_health::notify::ready(&format!("serving on {scheme}://{bound}"));
    tokio::spawn(strata_health::notify::watchdog());
    let limits = crate::Limits::from_config(settings);
    let serving = crate::serve(listener, crate::router(parts), tls, limits);
    let why = tokio::select! {
        served = serving => {
            return served.map_err(|e| ComposeError::Failed(strata_coordinator::error_chain(&e)));
        }
        why = stop.wait_for(|why| why.is_some()) => match why {
            Ok(why) => why.clone().unwrap_or_default(),
            // Nobody can ask any more: serve on, as before there was a way to stop.
            Err(_) => std::future::pending().await,
        },
    };
    strata_health::notify::stopping(&why);
    // No new connections from here (the listener is dropped); running operations end
    // as failed with the reason, give back their nodes and the lock.
    if let Some(coordinator) = stoppable {
        coordinator.stop(&why);
        let deadline = tokio::time::Instant::now() + STOP_WAIT;
        while !coordinator.registry().running().is_empty() && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        if !coordinator.registry().running().is_empty() {
            return Err(ComposeError::Failed(format!(
                "{why}, but operations still ran after {} s",
                STOP_WAIT.as_secs()
            )));
        }
    }
    Ok(())
}

/// Starts the scheduler of `[[schedules]]`, if any, with the cluster's jobs when this
/// server coordinates nodes.
fn start_scheduler(
    config: &Config,
    tables: &TablesConfig,
    events: &Arc<Events>,
    cluster: Option<ClusterJobs>,
    roles: &mut Vec<String>,
) -> Result<Option<Arc<Scheduler>>, ComposeError> {
    if config.schedules.is_empty() {
        return Ok(None);
    }
    let jobs = ServerJobs {
        cluster,
        config: config.clone(),
        tables: tables.clone(),
        events: events.clone(),
    };
    jobs.check().map_err(ComposeError::Usage)?;
    let scheduler = Scheduler::new(
        &config.schedules,
        Arc::new(jobs),
        Arc::new(SystemClock),
        Some(jobs::state_file(&config.state_dir())),
    )
    .map_err(ComposeError::Usage)?;
    tokio::spawn(scheduler.clone().run());
    roles.push(format!("{} schedules", config.schedules.len()));
    Ok(Some(scheduler))
}
