//! Londiste 3 in Rust. The Debian `pgq`, `pgq_node` and `londiste` extensions stay the
//! server side, so a strata node and a Python Londiste node keep the same state
//! (`pgq_node.local_state`, `londiste.table_info`) and can replace each other. This crate
//! is the client side: the node's ini file, node and table administration, the replay
//! worker with its streaming initial copy and table state machine, and status.
//!
//! Everything starts from a node's ini file ([`NodeConfig`]); the replay worker
//! ([`worker::run`]) is the long-running part; the other modules hold the one-shot
//! commands of `strata londiste NODE.ini ...` (`admin`, `members`, `takeover`, `status`,
//! ...), each a function taking the node's config. A worker that stops when its caller
//! says so:
//!
//! ```rust
//! use strata_londiste::worker::{self, WorkerOptions};
//! use strata_londiste::NodeConfig;
//!
//! // The ini file Python Londiste reads for the same node, unchanged.
//! let ini = "[londiste3]\n\
//!            job_name = leaf_worker\n\
//!            db = host=leaf.example dbname=shop\n\
//!            queue_name = replika\n";
//! let cf = NodeConfig::parse(ini, "leaf").unwrap();
//! assert_eq!(cf.copy_consumer("public.orders"), "leaf_worker.copy.public.orders");
//!
//! // Replays the provider's batches into the node's database until `stop` turns true
//! // (`strata londiste leaf.ini worker` sends it on SIGTERM); errors of a batch are saved
//! // in the node for `status` and retried.
//! async fn replay(cf: NodeConfig) -> strata_londiste::Result<()> {
//!     let (stop, stopped) = tokio::sync::watch::channel(false);
//!     let replay = tokio::spawn(worker::run(cf, WorkerOptions::default(), stopped));
//!     tokio::signal::ctrl_c().await.ok();
//!     stop.send(true).ok();
//!     let stats = replay.await.expect("the worker panicked")?;
//!     println!("{} batches, {} events", stats.batches, stats.events);
//!     Ok(())
//! }
//! # let _ = replay;
//! ```

#![deny(missing_docs)]

pub mod admin;
pub mod audit;
mod branch;
pub mod cascade;
pub mod command;
pub mod compare;
pub mod config;
pub mod error;
pub mod exec_attrs;
pub mod local;
pub mod members;
pub mod monitor;
pub mod names;
pub mod node;
pub mod park;
pub mod resurrect;
pub mod seed;
pub mod snapshot;
pub mod sqlgen;
pub mod state;
pub mod status;
pub mod takeover;
pub mod worker;

pub use command::{LondisteArgs, LondisteCommand};
pub use config::NodeConfig;
pub use error::{LondisteError, Result};
pub use state::TableState;
