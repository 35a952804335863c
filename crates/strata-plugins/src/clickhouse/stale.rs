//! Replicas ZooKeeper still knows after the servers lost their disks.
//!
//! The common disaster keeps ZooKeeper and loses the servers: every replicated table's
//! `<path>/replicas/<name>` outlives its server. A `CREATE` of the same replica meets its
//! own old node (`Replica ... already exists`), and a new replica beside old ones with no
//! live session waits for ever for fetches from servers that are gone. So before anything
//! is created, a restore lists every replica node its tables would meet that no live
//! server holds (no `is_active` node: the ephemeral node of a server's session), names
//! them all in one error, and, when asked (`--drop-stale-replicas`), removes them: a
//! replica is removed only while it has no live session, and a table path left without
//! replicas is removed whole, as ClickHouse's own `SYSTEM DROP REPLICA` does.

use super::client::{literal, Client};
use super::record::Table;
use super::rename::replication_args;
use serde::Deserialize;
use std::collections::BTreeMap;
use strata_agent::service::ApiResult;
use strata_cluster::node_api::{ApiError, ErrorCode};

/// A replica node no live server holds, that a restore's `CREATE` would meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleReplica {
    /// The table as the restore creates it (`db.table`).
    pub table: String,
    /// The table's coordination path.
    pub table_path: String,
    /// The replica's name.
    pub replica: String,
    /// Whether it is the replica this server's `CREATE` registers.
    pub own: bool,
    /// How many parts ZooKeeper lists for it.
    pub parts: usize,
}

impl StaleReplica {
    /// Whether it holds nothing: no part. A `CREATE` that failed midway (ZooKeeper lost
    /// during a restore cut short) leaves such a replica; with no live session and no
    /// part, removing it loses nothing, so a restore run again removes it unasked.
    pub fn holds_nothing(&self) -> bool {
        self.parts == 0
    }
}

impl StaleReplica {
    /// `<table path>/replicas/<replica>`.
    pub fn path(&self) -> String {
        format!("{}/replicas/{}", self.table_path, self.replica)
    }
}

/// `template` with its macros (`{shard}`, `{replica}`, `{database}`, `{table}`, any other
/// of the server's) expanded; `None` when it names one the server lacks.
pub fn expand(template: &str, macros: &BTreeMap<String, String>, table: &Table) -> Option<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}')? + open;
        let name = &rest[open + 1..close];
        let value = match name {
            "database" => table.database.clone(),
            "table" => table.name.clone(),
            _ => macros.get(name)?.clone(),
        };
        out.push_str(&value);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Some(out)
}

fn failed(why: String) -> ApiError {
    ApiError::new(ErrorCode::Failed, format!("ClickHouse: {why}"))
}

#[derive(Deserialize)]
struct Name {
    name: String,
}

/// The children of a ZooKeeper node through the server's `system.zookeeper`; `None` when
/// the node does not exist.
async fn children(client: &Client, path: &str) -> ApiResult<Option<Vec<String>>> {
    match client
        .rows::<Name>(&format!(
            "SELECT name FROM system.zookeeper WHERE path = {}",
            literal(path)
        ))
        .await
    {
        Ok(rows) => Ok(Some(rows.into_iter().map(|n| n.name).collect())),
        // "No node" (999 in 18.16 and later alike).
        Err(e) if e.to_string().contains("No node") => Ok(None),
        Err(e) => Err(failed(format!(
            "read ZooKeeper {path}: {}",
            strata_util::error_chain(&e)
        ))),
    }
}

/// Whether a replica node has a live session.
pub async fn active(client: &Client, replica_path: &str) -> ApiResult<bool> {
    Ok(children(client, replica_path)
        .await?
        .is_some_and(|c| c.iter().any(|n| n == "is_active")))
}

/// The stale replicas the `CREATE`s of `tables` on this server would meet. A replica of
/// this server's own name that a live session holds is an error: another running server
/// is that replica.
pub async fn find(
    client: &Client,
    macros: &BTreeMap<String, String>,
    tables: &[&Table],
) -> ApiResult<Vec<StaleReplica>> {
    let mut stale = Vec::new();
    for table in tables {
        let Some((path, replica)) = replication_args(&table.create) else {
            continue;
        };
        let (Some(path), Some(replica)) = (
            expand(&path, macros, table),
            expand(&replica, macros, table),
        ) else {
            continue;
        };
        let path = path.trim_end_matches('/').to_string();
        let Some(replicas) = children(client, &format!("{path}/replicas")).await? else {
            continue;
        };
        for name in replicas {
            let node = format!("{path}/replicas/{name}");
            let own = name == replica;
            // A replica another node of this restore registers right now has its node a
            // moment before its session's: asked again a second later.
            let mut live = active(client, &node).await?;
            if !live && !own {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                live = active(client, &node).await?;
            }
            if live {
                if own {
                    return Err(ApiError::new(
                        ErrorCode::BadRequest,
                        format!(
                            "ClickHouse: {} would register as replica {node}, which a running server holds (a live session): is another server configured with this replica's macros?",
                            table.shown()
                        ),
                    ));
                }
                continue;
            }
            let parts = children(client, &format!("{node}/parts"))
                .await?
                .map_or(0, |p| p.len());
            stale.push(StaleReplica {
                table: table.shown(),
                table_path: path.clone(),
                replica: name,
                own,
                parts,
            });
        }
    }
    Ok(stale)
}

/// The error that names every stale replica, with what to do.
pub fn refusal(stale: &[StaleReplica]) -> ApiError {
    let listed: Vec<String> = stale
        .iter()
        .map(|s| format!("{} ({})", s.path(), s.table))
        .collect();
    ApiError::new(
        ErrorCode::BadRequest,
        format!(
            "ClickHouse: ZooKeeper still holds {} replica(s) of the tables this restore creates that no running server holds: {}; run the restore again with --drop-stale-replicas to remove them (only replicas without a live session are removed), or remove them yourself (zkCli.sh deleteall PATH), or restore onto a cluster whose ZooKeeper does not know them",
            stale.len(),
            listed.join(", ")
        ),
    )
}

/// Removes stale replicas, each only while no live session holds it: through the server's
/// `SYSTEM DROP REPLICA ... FROM ZKPATH` where it has one, else through ZooKeeper at
/// `zookeeper` (`host:port`s). A table path left without replicas is removed whole, as
/// `SYSTEM DROP REPLICA` does: a new replica beside an old log would wait for ever for
/// parts no server has. Returns what was removed, one line each.
pub async fn drop(
    client: &Client,
    zookeeper: &[String],
    stale: &[StaleReplica],
) -> ApiResult<Vec<String>> {
    let mut removed = Vec::new();
    let mut zk: Option<tokio_zookeeper::ZooKeeper> = None;
    for replica in stale {
        if active(client, &replica.path()).await? {
            return Err(ApiError::new(
                ErrorCode::Busy,
                format!(
                    "ClickHouse: replica {} took a live session while the restore removed stale ones: a server runs as that replica; nothing of it was removed",
                    replica.path()
                ),
            ));
        }
        let dropped = client
            .execute(&format!(
                "SYSTEM DROP REPLICA {} FROM ZKPATH {}",
                literal(&replica.replica),
                literal(&replica.table_path)
            ))
            .await;
        match dropped {
            Ok(_) => {
                removed.push(replica.path());
                continue;
            }
            // No such statement on this version (18.16: a syntax error): ZooKeeper itself.
            Err(e) if e.code() == Some(62) => {}
            Err(e) => {
                return Err(failed(format!(
                    "drop replica {}: {}",
                    replica.path(),
                    strata_util::error_chain(&e)
                )))
            }
        }
        if zk.is_none() {
            zk = Some(connect(zookeeper).await?);
        }
        let zk = zk.as_ref().expect("connected above");
        remove_tree(zk, &replica.path()).await?;
        removed.push(replica.path());
        let left = zk
            .get_children(&format!("{}/replicas", replica.table_path))
            .await
            .map_err(|e| failed(format!("ZooKeeper: {e}")))?;
        if left.is_some_and(|l| l.is_empty()) {
            remove_tree(zk, &replica.table_path).await?;
            removed.push(format!("{} (no replica left)", replica.table_path));
        }
    }
    Ok(removed)
}

/// A session with the first of `hosts` that answers.
async fn connect(hosts: &[String]) -> ApiResult<tokio_zookeeper::ZooKeeper> {
    if hosts.is_empty() {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "ClickHouse: this server has no SYSTEM DROP REPLICA: set [nodes.clickhouse] zookeeper to ZooKeeper's host:port(s) so that stale replicas can be removed there".to_string(),
        ));
    }
    let mut why = Vec::new();
    for host in hosts {
        let addrs = match tokio::net::lookup_host(host.as_str()).await {
            Ok(addrs) => addrs.collect::<Vec<_>>(),
            Err(e) => {
                why.push(format!("{host}: {e}"));
                continue;
            }
        };
        for addr in addrs {
            let connected = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                tokio_zookeeper::ZooKeeper::connect(&addr),
            )
            .await;
            match connected {
                Ok(Ok((zk, _events))) => return Ok(zk),
                Ok(Err(e)) => why.push(format!("{addr}: {e}")),
                Err(_) => why.push(format!("{addr}: no answer within 10s")),
            }
        }
    }
    Err(failed(format!(
        "cannot reach ZooKeeper ([nodes.clickhouse] zookeeper): {}",
        why.join("; ")
    )))
}

/// Removes `path` and everything below it, children first. A node gone meanwhile is
/// fine; a node that gained a child meanwhile stops the removal there.
async fn remove_tree(zk: &tokio_zookeeper::ZooKeeper, path: &str) -> ApiResult<()> {
    let zk_failed = |e: tokio_zookeeper::error::Error| failed(format!("ZooKeeper {path}: {e}"));
    // Depth first, without recursion: (path, children listed yet).
    let mut stack = vec![(path.to_string(), false)];
    while let Some((node, listed)) = stack.pop() {
        if !listed {
            let children = zk.get_children(&node).await.map_err(zk_failed)?;
            stack.push((node.clone(), true));
            for child in children.unwrap_or_default() {
                stack.push((format!("{node}/{child}"), false));
            }
            continue;
        }
        match zk.delete(&node, None).await.map_err(zk_failed)? {
            Ok(()) | Err(tokio_zookeeper::error::Delete::NoNode) => {}
            Err(e) => return Err(failed(format!("remove ZooKeeper node {node}: {e}"))),
        }
    }
    Ok(())
}
