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

/// The newest timeline any member of the cluster behind `url` serves (`GET /cluster`):
/// taken while paused, before the restore, so the restored timeline is told from the
/// cluster's own (a restore promotes onto a timeline newer than every one archived).
pub async fn newest_timeline(url: &str) -> Result<u64, PluginError> {
    let cluster = get(&format!("{url}/cluster")).await?;
    Ok(members(&cluster)
        .iter()
        .filter_map(|m| m.get("timeline").and_then(|t| t.as_u64()))
        .max()
        .unwrap_or(0))
}

fn members(cluster: &serde_json::Value) -> Vec<serde_json::Value> {
    cluster
        .get("members")
        .and_then(|m| m.as_array())
        .cloned()
        .unwrap_or_default()
}

fn field<'a>(member: &'a serde_json::Value, name: &str) -> &'a str {
    member.get(name).and_then(|v| v.as_str()).unwrap_or("?")
}

/// After a restore in place, once Patroni is resumed: waits (up to `wait`) until the
/// cluster behind `url` is led by a member serving a timeline newer than `before` (the
/// restored one: a leader on the cluster's old timeline means Patroni demoted the
/// restored member) and every other member follows it (`running` or `streaming` on the
/// leader's timeline). A member whose history went past the point where the restored
/// timeline branched off cannot follow: it is reinitialized through its REST API (`POST
/// /reinitialize`, what `patronictl reinit` sends), unless Patroni rewinds it itself
/// (`use_pg_rewind`). Returns a line per member, or what did not settle.
///
/// The leader's timeline is what Patroni last wrote to its store (each member every
/// `loop_wait`): a leader on the old timeline is believed after `cycle` only.
pub async fn settle(
    url: &str,
    before: u64,
    cycle: Duration,
    wait: Duration,
) -> Result<String, PluginError> {
    let started = Instant::now();
    let deadline = started + wait;
    let mut reinitialized: Vec<String> = Vec::new();
    loop {
        let state = match get(&format!("{url}/cluster")).await {
            Ok(cluster) => Settling::read(&cluster, before),
            Err(why) => Settling::Pending(format!("the cluster ({why})")),
        };
        let pending = match state {
            Settling::Settled(lines) => {
                let mut line = format!("Patroni: {}", lines.join("; "));
                if !reinitialized.is_empty() {
                    line.push_str(&format!(
                        " (reinitialized from the leader: {})",
                        reinitialized.join(", ")
                    ));
                }
                return Ok(line);
            }
            Settling::OldLeader(why) if started.elapsed() >= cycle => {
                return Err(PluginError::System(why))
            }
            Settling::OldLeader(why) => why,
            Settling::Behind {
                leader,
                leader_api,
                members,
            } => {
                let members = diverged(&leader_api, members).await;
                if members.is_empty() {
                    if Instant::now() >= deadline {
                        return Err(PluginError::System(format!(
                            "the restored cluster did not settle within {} s: members on an older timeline did not follow {leader}; see patronictl list",
                            wait.as_secs()
                        )));
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                let rewinds = get(&format!("{url}/config")).await.ok().and_then(|c| {
                    c.pointer("/postgresql/use_pg_rewind")
                        .and_then(|r| r.as_bool())
                }) == Some(true);
                for (name, api) in &members {
                    if rewinds || reinitialized.contains(name) {
                        continue;
                    }
                    reinitialize(api).await.map_err(|why| {
                        PluginError::System(format!(
                            "member {name} is on the abandoned history and cannot follow {leader}; reinitializing it failed ({why}): run patronictl reinit CLUSTER {name}"
                        ))
                    })?;
                    reinitialized.push(name.clone());
                }
                format!(
                    "{} (on the abandoned history; {})",
                    members
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    match rewinds {
                        true => "Patroni rewinds them",
                        false => "being reinitialized",
                    }
                )
            }
            Settling::Pending(why) => why,
        };
        if Instant::now() >= deadline {
            return Err(PluginError::System(format!(
                "the restored cluster did not settle within {} s: {pending}; see patronictl list (postgres.recovery_timeout_secs bounds the wait)",
                wait.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Of `members` (name, REST API, timeline), those whose history cannot lead to the
/// leader's timeline: their timeline is not in the leader's history (`GET /history`), or
/// they replayed past the point where it ended. The others are still catching up.
async fn diverged(leader_api: &str, members: Vec<(String, String, u64)>) -> Vec<(String, String)> {
    // A history that cannot be read (or is empty) proves nothing: a member is
    // reinitialized only on evidence, never on a failed request.
    let Some(history) = get(&format!("{}/history", base(leader_api)))
        .await
        .ok()
        .and_then(|h| h.as_array().cloned())
        .filter(|h| !h.is_empty())
    else {
        return Vec::new();
    };
    let mut diverged = Vec::new();
    for (name, api, timeline) in members {
        let position = get(&format!("{}/patroni", base(&api)))
            .await
            .ok()
            .and_then(|p| {
                let xlog = p.get("xlog")?;
                xlog.get("replayed_location")
                    .or(xlog.get("location"))
                    .and_then(|l| l.as_u64())
            });
        if past_its_branch(&history, timeline, position) {
            diverged.push((name, api));
        }
    }
    diverged
}

/// Whether a member on `timeline` at `position` (its replayed LSN, unknown: `None`)
/// went past where that timeline ended in the leader's `history` (`[[timeline, LSN it
/// ended at, ...], ...]`, read and not empty): it then cannot follow. A timeline the
/// history lacks is another branch altogether; a position unknown proves nothing.
fn past_its_branch(history: &[serde_json::Value], timeline: u64, position: Option<u64>) -> bool {
    let ended_at = history.iter().find_map(|entry| {
        let entry = entry.as_array()?;
        (entry.first()?.as_u64()? == timeline).then(|| entry.get(1)?.as_u64())?
    });
    match (ended_at, position) {
        (Some(end), Some(at)) => at > end,
        (None, _) => true,
        (Some(_), None) => false,
    }
}

/// A member's REST API root, from the `api_url` `GET /cluster` lists (which names its
/// `/patroni` endpoint).
fn base(api_url: &str) -> &str {
    let url = api_url.trim_end_matches('/');
    url.strip_suffix("/patroni").unwrap_or(url)
}

/// `POST /reinitialize` of a member's REST API, forced (the member runs).
async fn reinitialize(api: &str) -> Result<(), PluginError> {
    let url = format!("{}/reinitialize", base(api));
    let answer = strata_hooks::http_call(
        reqwest::Method::POST,
        &url,
        serde_json::to_vec(&serde_json::json!({ "force": true })).unwrap_or_default(),
        Duration::from_secs(30),
        1 << 20,
    )
    .await
    .map_err(|e| PluginError::System(e.to_string()))?;
    match answer.status.is_success() {
        true => Ok(()),
        false => Err(PluginError::System(format!(
            "{} answered {}: {}",
            mask_url(&url),
            answer.status,
            answer.body.lines().next().unwrap_or_default()
        ))),
    }
}

/// Where a restored Patroni cluster stands.
#[derive(Debug, PartialEq)]
enum Settling {
    /// Led on the restored timeline, every member following: a line per member.
    Settled(Vec<String>),
    /// Led on the cluster's old timeline: the restored member was demoted.
    OldLeader(String),
    /// Members on a timeline older than the leader's (`name`, REST API, timeline): still
    /// catching up, or on the abandoned history.
    Behind {
        leader: String,
        leader_api: String,
        members: Vec<(String, String, u64)>,
    },
    /// Not yet: why.
    Pending(String),
}

impl Settling {
    fn read(cluster: &serde_json::Value, before: u64) -> Settling {
        if cluster.get("pause").and_then(|p| p.as_bool()) == Some(true) {
            return Settling::Pending("Patroni is still paused".into());
        }
        let members = members(cluster);
        let timeline = |m: &serde_json::Value| m.get("timeline").and_then(|t| t.as_u64());
        let Some(leader) = members.iter().find(|m| field(m, "role") == "leader") else {
            return Settling::Pending("no member leads yet".into());
        };
        let leader_name = field(leader, "name").to_string();
        let Some(leads_on) = timeline(leader) else {
            return Settling::Pending(format!("the leader {leader_name} reports no timeline yet"));
        };
        if leads_on <= before {
            return Settling::OldLeader(format!(
                "Patroni's leader is {leader_name} on timeline {leads_on}, the cluster's timeline before the restore: the restored member does not lead (Patroni demoted it), and the cluster serves what it served before; restore onto the leader (see patronictl list)"
            ));
        }
        let mut lines = vec![format!("{leader_name} leads on timeline {leads_on}")];
        let mut waiting = Vec::new();
        let mut behind = Vec::new();
        for member in members.iter().filter(|m| field(m, "name") != leader_name) {
            let name = field(member, "name").to_string();
            let state = field(member, "state");
            match timeline(member) {
                Some(t) if t == leads_on && (state == "running" || state == "streaming") => {
                    lines.push(format!(
                        "{name} follows ({state}, {})",
                        field(member, "role")
                    ));
                }
                Some(t) if t < leads_on && state == "running" => {
                    behind.push((name, field(member, "api_url").to_string(), t));
                }
                t => waiting.push(format!(
                    "{name} ({state}, timeline {})",
                    t.map_or("unknown".to_string(), |t| t.to_string())
                )),
            }
        }
        match (waiting.is_empty(), behind.is_empty()) {
            (true, true) => Settling::Settled(lines),
            (_, false) => Settling::Behind {
                leader: leader_name,
                leader_api: field(leader, "api_url").to_string(),
                members: behind,
            },
            (false, true) => Settling::Pending(format!("waiting for {}", waiting.join(", "))),
        }
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

    #[test]
    fn a_restored_cluster_settles_when_its_leader_is_on_a_new_timeline_and_all_follow() {
        let cluster = |leader_tl: u64, replica_tl: u64, state: &str| {
            serde_json::json!({ "members": [
                { "name": "m2", "role": "leader", "state": "running", "timeline": leader_tl,
                  "api_url": "http://m2:8008/patroni" },
                { "name": "m1", "role": "replica", "state": state, "timeline": replica_tl,
                  "api_url": "http://m1:8008/patroni" },
            ]})
        };
        assert_eq!(
            Settling::read(&cluster(3, 3, "streaming"), 2),
            Settling::Settled(vec![
                "m2 leads on timeline 3".into(),
                "m1 follows (streaming, replica)".into()
            ])
        );
        // The leader on the cluster's old timeline: the restored member was demoted.
        assert!(matches!(
            Settling::read(&cluster(2, 2, "running"), 2),
            Settling::OldLeader(why) if why.contains("m2 on timeline 2")
        ));
        // A replica on the old timeline: caught up or diverged, asked of its history.
        assert_eq!(
            Settling::read(&cluster(3, 2, "running"), 2),
            Settling::Behind {
                leader: "m2".into(),
                leader_api: "http://m2:8008/patroni".into(),
                members: vec![("m1".into(), "http://m1:8008/patroni".into(), 2)],
            }
        );
        // A replica being rebuilt is waited for.
        assert!(matches!(
            Settling::read(&cluster(3, 2, "creating replica"), 2),
            Settling::Pending(why) if why.contains("m1 (creating replica")
        ));
        let mut paused = cluster(3, 3, "streaming");
        paused["pause"] = serde_json::json!(true);
        assert!(matches!(Settling::read(&paused, 2), Settling::Pending(_)));
        assert_eq!(base("http://m1:8008/patroni"), "http://m1:8008");
    }

    #[test]
    fn a_member_is_past_its_branch_only_on_the_leaders_history() {
        let history = vec![
            serde_json::json!([1, 1000, "no recovery target"]),
            serde_json::json!([2, 5000, "restore"]),
        ];
        assert!(
            !past_its_branch(&history, 2, Some(4000)),
            "behind the branch point: catches up"
        );
        assert!(
            past_its_branch(&history, 2, Some(6000)),
            "past it: cannot follow"
        );
        assert!(
            !past_its_branch(&history, 2, None),
            "position unknown: proves nothing"
        );
        assert!(
            past_its_branch(&history, 7, Some(1)),
            "another branch altogether"
        );
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
