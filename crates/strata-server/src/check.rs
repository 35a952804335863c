//! What the server can tell about its own configuration: the configuration as it sees it
//! (secrets masked) and a check that what it names works (storages and nodes reachable,
//! schedules valid, secret sources present). The dashboard shows both; an operator reads
//! them before trusting a schedule to run at night.

use serde::Serialize;
use std::time::Duration;
use strata_coordinator::cluster::Coordinator;
use strata_coordinator::config::Config;

/// How long one reachability probe may take.
const PROBE: Duration = Duration::from_secs(3);

/// One line of the check.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Check {
    /// `storage NAME`, `node NAME`, `schedule NAME`, `password`, `webhook URL` (the URL
    /// masked past its host).
    pub name: String,
    pub ok: bool,
    /// What was found, or what is wrong and what to do.
    pub detail: String,
}

fn check(name: String, ok: bool, detail: impl Into<String>) -> Check {
    Check {
        name,
        ok,
        detail: detail.into(),
    }
}

/// Runs every check; probes run at once, each bounded by a few seconds.
pub async fn run(config: &Config, coordinator: &Coordinator) -> Vec<Check> {
    let storages = config.storages.keys().map(|name| async move {
        let label = format!("storage {name}");
        let store = match strata_coordinator::storage::Storage::open(config, name) {
            Ok(storage) => storage.store,
            Err(e) => return check(label, false, strata_coordinator::backup::error_chain(&e)),
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
            Ok(Err(e)) => check(label, false, strata_coordinator::backup::error_chain(&e)),
            Err(_) => check(
                label,
                false,
                format!("no answer within {}s", PROBE.as_secs()),
            ),
        }
    });
    let nodes = coordinator.nodes().iter().map(|node| async move {
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
