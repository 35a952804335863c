//! Node-side operations of strata.
//!
//! An agent turns a node's files into a [`strata_repo::manifest::NodeManifest`] plus new
//! blobs in the repository ([`backup`]), and lays a manifest back down on disk, verifying
//! every byte ([`restore`]). It knows nothing of clusters: the coordinator decides which
//! nodes take part and writes the backup summary. [`service::Agent`] wraps these steps
//! behind a lease for a coordinator, in-process or over HTTP ([`api`] has the messages).

pub mod api;
pub mod backup;
mod error;
pub mod files_cache;
pub mod progress;
mod prune;
pub mod restore;
pub mod service;
pub mod upload;

pub use error::{AgentError, AgentResult};
