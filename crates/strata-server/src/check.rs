//! What the server can tell about its own configuration: the configuration as it sees it
//! (secrets masked) and a check that what it names works (storages and nodes reachable,
//! schedules valid, secret sources present). The dashboard shows both; an operator reads
//! them before trusting a schedule to run at night.

use std::sync::Arc;
use std::time::Duration;
use strata_coordinator::config::Config;
use strata_coordinator::coordinator::Coordinator;
use strata_coordinator::node::NodeApi;

/// How long one reachability probe may take.
const PROBE: Duration = Duration::from_secs(3);

/// One line of the check (the type `/ready` answers too).
pub use strata_health::Check;

fn check(name: String, ok: bool, detail: impl Into<String>) -> Check {
    Check::new(name, ok, detail)
}

/// What `/ready` asks of a server: its storages reachable, the agents of its nodes
/// answering (a coordinator's), the password source present; the first part of
/// [`run`], not a second implementation of it.
pub struct ServerReadiness {
    /// The server's configuration: the storages to reach and the password source.
    pub config: Config,
    /// The agents of the cluster's nodes, asked when the server coordinates; empty on a
    /// server that only serves its node's agent.
    pub nodes: Vec<Arc<dyn NodeApi>>,
}

#[async_trait::async_trait]
impl strata_health::Readiness for ServerReadiness {
    async fn checks(&self) -> Vec<Check> {
        reachability(&self.config, &self.nodes).await
    }
}

/// Every check of `GET /api/v1/check`: what `/ready` checks, then the schedules and the
/// webhooks' secrets.
pub async fn run(config: &Config, coordinator: &Coordinator) -> Vec<Check> {
    let mut out = reachability(config, coordinator.nodes()).await;
    out.extend(components(coordinator).await);
    out.extend(settings(config));
    out
}

/// Each external component's system answering: a required one that does not fails the
/// check (its backups would fail); an optional one is reported, not failed (its backups
/// record it absent).
async fn components(coordinator: &Coordinator) -> Vec<Check> {
    let components = coordinator.components();
    let probes = components.iter().map(|c| async move {
        let label = format!("component {}", c.name);
        let probed = tokio::time::timeout(PROBE * 2, c.plugin.probe()).await;
        let result = match probed {
            Ok(None) => return None,
            Ok(Some(result)) => result,
            Err(_) => Err(format!("no answer within {}s", (PROBE * 2).as_secs())),
        };
        Some(match (result, c.optional) {
            (Ok(said), _) => check(label, true, format!("{}: {said}", c.plugin.name())),
            (Err(why), true) => Check::warn(
                label,
                format!(
                    "{} (optional) is down: {why}; backups record it absent",
                    c.plugin.name()
                ),
            ),
            (Err(why), false) => check(label, false, format!("{}: {why}", c.plugin.name())),
        })
    });
    futures_util::future::join_all(probes)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Storages and nodes reachable, the password source present; probes run at once, each
/// bounded by a few seconds.
async fn reachability(config: &Config, nodes: &[Arc<dyn NodeApi>]) -> Vec<Check> {
    let storages = config.storages.keys().map(|name| async move {
        let label = format!("storage {name}");
        let store = match strata_coordinator::storage::Storage::open(config, name) {
            Ok(storage) => storage.store,
            Err(e) => return check(label, false, strata_coordinator::error_chain(&e)),
        };
        match tokio::time::timeout(PROBE, store.get(strata_repo::layout::CONFIG)).await {
            Ok(Ok(_)) => check(
                label,
                true,
                format!("repository found at {}", store.describe()),
            ),
            Ok(Err(e)) if e.is_not_found() => check(
                label,
                false,
                format!(
                    "reachable, but no repository at {} (run `strata init --storage {name}`)",
                    store.describe()
                ),
            ),
            Ok(Err(e)) => check(label, false, strata_coordinator::error_chain(&e)),
            Err(_) => check(
                label,
                false,
                format!("no answer within {}s", PROBE.as_secs()),
            ),
        }
    });
    let nodes = nodes.iter().map(|node| async move {
        let label = format!("node {}", node.name());
        match tokio::time::timeout(PROBE, node.metadata()).await {
            Ok(Ok(meta)) => check(label, true, format!("agent {} answers", meta.version)),
            Ok(Err(e)) => check(label, false, e.message),
            Err(_) => check(
                label,
                false,
                format!("no answer within {}s", PROBE.as_secs()),
            ),
        }
    });
    let (mut out, nodes) = futures_util::future::join(
        futures_util::future::join_all(storages),
        futures_util::future::join_all(nodes),
    )
    .await;
    out.extend(nodes);
    let password = match config.password() {
        Ok(Some(_)) => check("password".into(), true, "repository password source is set"),
        Ok(None) if config.repository.encryption == "none" => {
            check("password".into(), true, "no encryption: no password needed")
        }
        Ok(None) => check(
            "password".into(),
            false,
            format!("neither ${} nor password.file is set", config.password.env),
        ),
        Err(e) => check("password".into(), false, e.to_string()),
    };
    out.push(password);
    out
}

/// The schedules valid, the webhooks' secrets present.
fn settings(config: &Config) -> Vec<Check> {
    let mut out = Vec::new();
    for schedule in &config.schedules {
        let label = format!("schedule {}", schedule.name());
        out.push(match strata_coordinator::schedule::check(schedule) {
            Ok(()) => check(
                label,
                true,
                format!("{} at {:?}", schedule.job, schedule.cron),
            ),
            Err(e) => check(label, false, e),
        });
    }
    for hook in &config.webhooks {
        let label = format!("webhook {}", strata_coordinator::mask::mask_url(&hook.url));
        out.push(match hook.secret.read("webhook secret") {
            Ok(Some(_)) => check(label, true, "secret source is set"),
            Ok(None) => check(label, false, "no secret: bodies are not signed"),
            Err(e) => check(label, false, e.to_string()),
        });
    }
    out
}
