//! Londiste 3 in Rust. The Debian `pgq`, `pgq_node` and `londiste` extensions stay the
//! server side, so a strata node and a Python Londiste node keep the same state
//! (`pgq_node.local_state`, `londiste.table_info`) and can replace each other. This crate
//! is the client side: the node's ini file, node and table administration, the replay
//! worker with its streaming initial copy and table state machine, and status.

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
