//! A restore in place of a PostgreSQL cluster that Patroni runs (`postgres.patroni`).
//!
//! Patroni restarts a server that stops, or fails over to a replica, unless it is paused.
//! So the restore pauses it first through its REST API (`PATCH /config` with
//! `{"pause": true}`, what `patronictl pause` sends) as a pause/resume hook of the
//! postgres component: recorded durably before it is issued and resumed on every path
//! (a failure, SIGTERM, and by the next strata process after a crash). Each member
//! takes the pause at its next cycle, so the restore then waits until every member
//! reports it ([`wait_paused`]) before its node stops the server. One member is
//! restored (`--node`), the leader to be; the others are rebuilt by Patroni afterwards
//! (`patronictl reinit`), through strata's replica method or `basebackup`.

use super::PluginError;
use std::time::{Duration, Instant};
use strata_hooks::HttpRequest;
use strata_hooks::{HookAction, HookConfig, HookOperation};
use strata_util::mask_url;

/// The pause/resume pair of the cluster behind `url`, around restores of `component`.
pub fn pause_hook(url: &str, component: &str) -> HookConfig {
    let config = |pause: bool| {
        HookAction::Request(HttpRequest {
            http: format!("PATCH {url}/config"),
            body: serde_json::json!({ "pause": pause }),
        })
    };
    HookConfig {
        name: Some(format!("{component} patroni")),
        operation: HookOperation::Restore,
        at: None,
        run: None,
        pause: Some(config(true)),
        resume: Some(config(false)),
        component: Some(component.to_string()),
        node: None,
        timeout: "30s".into(),
        resume_attempts: 5,
        late_pause: "30s".into(),
    }
}

/// One GET of the REST API, as JSON.
async fn get(url: &str) -> Result<serde_json::Value, PluginError> {
    let answer = strata_hooks::http_call(
        reqwest::Method::GET,
        url,
        Vec::new(),
        Duration::from_secs(10),
        4 << 20,
    )
    .await
    .map_err(|e| PluginError::System(e.to_string()))?;
    if !answer.status.is_success() {
        return Err(PluginError::System(format!(
            "{} answered {}",
            mask_url(url),
            answer.status
        )));
    }
    serde_json::from_str(&answer.body)
        .map_err(|e| PluginError::System(format!("{} answered no JSON: {e}", mask_url(url))))
}

/// Waits (up to `wait`) until every member of the cluster behind `url` reports the
/// pause (`GET /patroni` of each member `GET /cluster` lists). Returns a line for the
/// log, or which members had not taken it.
pub async fn wait_paused(url: &str, wait: Duration) -> Result<String, PluginError> {
    let deadline = Instant::now() + wait;
    loop {
        let pending = match get(&format!("{url}/cluster")).await {
            Ok(cluster) => unpaused_members(&cluster).await,
            Err(why) => vec![format!("the cluster ({why})")],
        };
        if pending.is_empty() {
            return Ok("Patroni paused on every member".into());
        }
        if Instant::now() >= deadline {
            return Err(PluginError::System(format!(
                "Patroni did not report the pause within {} s on: {} (see postgres.patroni_wait_secs)",
                wait.as_secs(),
                pending.join(", ")
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The members of `cluster` (an answer of `GET /cluster`) that do not report the pause.
async fn unpaused_members(cluster: &serde_json::Value) -> Vec<String> {
    let members = cluster
        .get("members")
        .and_then(|m| m.as_array())
        .cloned()
        .unwrap_or_default();
    if members.is_empty() {
        return vec!["the cluster (no members listed)".into()];
    }
    let mut pending = Vec::new();
    for member in members {
        let name = member
            .get("name")
            .and_then(|n| n.as_str())
            .unwrap_or("?")
            .to_string();
        let Some(api) = member.get("api_url").and_then(|a| a.as_str()) else {
            pending.push(format!("{name} (no api_url)"));
            continue;
        };
        match get(api).await {
            Ok(state) if state.get("pause").and_then(|p| p.as_bool()) == Some(true) => {}
            Ok(_) => pending.push(name),
            Err(why) => pending.push(format!("{name} ({why})")),
        }
    }
    pending
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Plugin;

    #[test]
    fn the_pause_is_a_restore_hook_of_the_component_with_patronis_body() {
        let hook = pause_hook("http://m1:8008", "database");
        hook.validate(&["database".into()], &[]).unwrap();
        assert_eq!(hook.operation, HookOperation::Restore);
        let Some(HookAction::Request(pause)) = &hook.pause else {
            panic!("{hook:?}")
        };
        assert_eq!(pause.http, "PATCH http://m1:8008/config");
        assert_eq!(pause.body, serde_json::json!({ "pause": true }));
        let Some(HookAction::Request(resume)) = &hook.resume else {
            panic!("{hook:?}")
        };
        assert_eq!(resume.body, serde_json::json!({ "pause": false }));
    }

    #[test]
    fn a_patroni_cluster_is_restored_onto_one_member() {
        let under = crate::postgres::Postgres::new(&strata_cluster::config::PostgresConfig {
            patroni: "http://m1:8008".into(),
            ..Default::default()
        });
        assert!(under.check_restore_targets(&["m1"]).is_ok());
        let err = under.check_restore_targets(&["m1", "m2"]).unwrap_err();
        assert!(
            matches!(&err, crate::PluginError::Refused(why) if why.contains("--node")),
            "{err}"
        );
        assert_eq!(under.hooks("database").len(), 1);
        let plain = crate::postgres::Postgres::new(&Default::default());
        assert!(plain.check_restore_targets(&["m1", "m2"]).is_ok());
        assert!(plain.hooks("database").is_empty());
    }

    #[tokio::test]
    async fn an_unreachable_cluster_is_not_ready() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = wait_paused(&format!("http://127.0.0.1:{port}"), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, PluginError::System(why) if why.contains("did not report the pause")),
            "{err}"
        );
    }
}
