//! The cascade seen from one node, for the commands that change it (takeover, tag-dead,
//! drop-node, wait-root): every member the local node knows is connected in parallel,
//! each within a timeout, so one dead node costs one timeout instead of stalling the
//! command; a member that cannot be reached is kept with the reason, and the commands
//! decide whether they can go on without it.

use crate::admin;
use crate::error::{LondisteError, Result};
use crate::node::{self, NodeInfo};
use std::time::Duration;
use strata_pgclient::Client;

/// One member of the cascade.
pub struct Member {
    /// The node name.
    pub name: String,
    /// How the other nodes reach it.
    pub location: String,
    /// Tagged dead in the local node's member list.
    pub tagged_dead: bool,
    /// A session on it, `None` when it is tagged dead or could not be reached.
    pub client: Option<Client>,
    /// Its `pgq_node.get_node_info`, when reached.
    pub info: Option<NodeInfo>,
    /// Why it could not be reached (or that it is tagged dead).
    pub error: Option<String>,
}

impl Member {
    /// Reached and answering.
    pub fn alive(&self) -> bool {
        self.client.is_some()
    }

    /// Its worker's consumer name.
    pub fn worker(&self) -> Option<&str> {
        self.info.as_ref()?.worker_name.as_deref()
    }

    /// The tick its worker last completed.
    pub fn last_tick(&self) -> Option<i64> {
        self.info.as_ref()?.worker_last_tick
    }

    /// Its node type (`root`, `branch`, `leaf`), when reached.
    pub fn node_type(&self) -> Option<&str> {
        self.info.as_ref()?.node_type.as_deref()
    }
}

/// Every member of one queue's cascade, as the local node knows them.
pub struct Cascade {
    /// The queue.
    pub queue: String,
    /// The local node's name.
    pub local: String,
    members: Vec<Member>,
}

async fn reach(location: &str, queue: &str) -> Result<(Client, NodeInfo)> {
    let client = admin::connect(location, "member").await?;
    let info = node::node_info(&client, queue).await?;
    Ok((client, info))
}

impl Cascade {
    /// Reads the member list of the node behind `local_db` (whose name is `local`) and
    /// connects to every member not tagged dead, all at once, each within `timeout`. The
    /// local member uses `local_db` itself.
    pub async fn load(
        local_db: Client,
        queue: &str,
        local: &str,
        timeout: Duration,
    ) -> Result<Cascade> {
        let locations = node::locations(&local_db, queue).await?;
        let local_info = node::node_info(&local_db, queue).await?;
        let mut local_db = Some(local_db);
        let asks = locations.iter().map(|m| async move {
            if m.node_name == local || m.dead {
                return None;
            }
            Some(
                match tokio::time::timeout(timeout, reach(&m.node_location, queue)).await {
                    Ok(Ok(reached)) => Ok(reached),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {} s", timeout.as_secs())),
                },
            )
        });
        let answers = futures::future::join_all(asks).await;
        let mut members = Vec::new();
        for (m, answer) in locations.into_iter().zip(answers) {
            let (client, info, error) = if m.node_name == local {
                (local_db.take(), Some(local_info.clone()), None)
            } else {
                match answer {
                    None => (None, None, Some("tagged dead".to_string())),
                    Some(Ok((client, info))) => (Some(client), Some(info), None),
                    Some(Err(e)) => (None, None, Some(e)),
                }
            };
            members.push(Member {
                name: m.node_name,
                location: m.node_location,
                tagged_dead: m.dead,
                client,
                info,
                error,
            });
        }
        if !members.iter().any(|m| m.name == local) {
            return Err(LondisteError::State(format!(
                "the local node {local} is not in its own member list"
            )));
        }
        Ok(Cascade {
            queue: queue.to_string(),
            local: local.to_string(),
            members,
        })
    }

    /// Every member, in name order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The member `name`.
    pub fn member(&self, name: &str) -> Result<&Member> {
        self.members.iter().find(|m| m.name == name).ok_or_else(|| {
            LondisteError::BadInput(format!(
                "{name} is not a member of this cascade (see `members`)"
            ))
        })
    }

    /// A session on the member `name`, or why there is none.
    pub fn client(&self, name: &str) -> Result<&Client> {
        let m = self.member(name)?;
        m.client.as_ref().ok_or_else(|| {
            LondisteError::State(format!(
                "{name} cannot be reached: {}",
                m.error.as_deref().unwrap_or("no session")
            ))
        })
    }

    /// The local node's session.
    pub fn local_client(&self) -> &Client {
        self.member(&self.local)
            .ok()
            .and_then(|m| m.client.as_ref())
            .expect("the local member holds the local session")
    }

    /// Whether `name` was reached.
    pub fn alive(&self, name: &str) -> bool {
        self.member(name).is_ok_and(Member::alive)
    }

    /// Forgets the session of `name` (the commands that declare it dead stop using it).
    pub fn forget(&mut self, name: &str, why: &str) {
        if let Some(m) = self.members.iter_mut().find(|m| m.name == name) {
            m.client = None;
            m.error = Some(why.to_string());
        }
    }

    /// The live members whose worker reads from `parent`, in name order.
    pub fn subscribers_of(&self, parent: &str) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.name != parent && m.alive())
            .filter(|m| m.info.as_ref().and_then(|i| i.provider_node.as_deref()) == Some(parent))
            .map(|m| m.name.clone())
            .collect()
    }

    /// The live root, if one answered.
    pub fn root(&self) -> Option<&str> {
        self.members
            .iter()
            .find(|m| m.alive() && m.info.as_ref().is_some_and(|i| i.is_root()))
            .map(|m| m.name.as_str())
    }

    /// The provider of `name`: its own word when it answers, otherwise the live member
    /// that lists it as a subscriber, otherwise the root.
    pub async fn provider_of(&self, name: &str) -> Result<String> {
        let m = self.member(name)?;
        if let Some(info) = m.info.as_ref().filter(|_| m.alive()) {
            return info.provider_node.clone().ok_or_else(|| {
                LondisteError::BadInput(format!("{name} is the root: it has no provider"))
            });
        }
        for other in self.members.iter().filter(|o| o.name != name) {
            let Some(client) = &other.client else {
                continue;
            };
            if node::subscribers(client, &self.queue)
                .await?
                .iter()
                .any(|s| s == name)
            {
                return Ok(other.name.clone());
            }
        }
        self.root().map(str::to_string).ok_or_else(|| {
            LondisteError::State(format!("no live member serves {name} and no root answers"))
        })
    }

    /// Sets the dead flag of `name` in the member list of every live member but `name`
    /// itself; returns the members that could not be told.
    pub async fn tag(&self, name: &str, dead: bool) -> Result<Vec<String>> {
        self.member(name)?;
        let mut untold = Vec::new();
        for m in self.members.iter().filter(|m| m.name != name) {
            match &m.client {
                Some(client) => node::set_dead(client, &self.queue, name, dead).await?,
                None => untold.push(m.name.clone()),
            }
        }
        Ok(untold)
    }
}

/// Waits until the node behind `client` has tick `tick`: its worker completed it (a
/// root: its queue has it), checking every 200 ms; fails after `timeout`. Returns the
/// node's tick then.
pub async fn wait_for_tick(
    client: &Client,
    queue: &str,
    node_name: &str,
    tick: i64,
    timeout: Duration,
) -> Result<i64> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let info = node::node_info(client, queue).await?;
        let done = info.worker_last_tick.unwrap_or(0);
        if done >= tick {
            return Ok(done);
        }
        if tokio::time::Instant::now() >= deadline {
            let why = if info.worker_paused == Some(true) {
                "its worker is paused"
            } else {
                "is its worker running?"
            };
            return Err(LondisteError::State(format!(
                "{node_name} did not reach tick {tick} within {} s (at {done}): {why}",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
