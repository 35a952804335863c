//! Node-side operations of strata.
//!
//! An agent turns a node's files into a [`strata_repo::manifest::NodeManifest`] plus new
//! blobs in the repository ([`backup`]), and lays a manifest back down on disk, verifying
//! every byte ([`restore`]). It knows nothing of clusters: the coordinator decides which
//! nodes take part and writes the backup summary.

pub mod backup;
mod error;
pub mod files_cache;
pub mod progress;
pub mod restore;

pub use error::{AgentError, AgentResult};
