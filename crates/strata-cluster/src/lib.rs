//! What a strata cluster is, as plain data and one interface: the vocabulary the plugins
//! (`strata-plugins`) and the use cases (`strata-coordinator`) share, so that neither
//! has to learn the other to talk about a node.
//!
//! - [`config`]: the configuration's sections, with the checks each can make alone (the
//!   checks that need a plugin or a schedule's syntax are made where those live, by
//!   `strata_coordinator::config::load`);
//! - [`node`]: one node as the coordinator sees it ([`node::NodeApi`]), in this process
//!   (`strata_agent::local_node::LocalNode`, beside the agent that answers) or behind a
//!   server;
//! - [`node_api`]: the words of that interface, the requests and replies a node agent
//!   takes and gives (as JSON under `/node/v1`, or as values in process), its `ApiError`
//!   and `ProgressSnapshot`;
//! - [`node_calls`]: calls to many nodes at once, with the deadline of a quick call;
//! - [`operation`]: a running operation's observable state;
//! - [`restore_plan`]: what a restore is asked to do and what it did.
//!
//! ```
//! use strata_cluster::config::{Config, StorageConfig};
//!
//! let mut config = Config::default();
//! config.storages.insert("local".into(), StorageConfig::local("/var/backups/strata"));
//! assert!(config.nodes.is_empty());
//! ```

#![deny(missing_docs)]

pub mod config;
pub mod node;
pub mod node_api;
pub mod node_calls;
pub mod operation;
pub mod restore_plan;
