//! Node-side operations of strata.
//!
//! An agent turns a node's files into a [`strata_repo::manifest::NodeManifest`] plus new
//! blobs in the repository ([`backup`]), and lays a manifest back down on disk, verifying
//! every byte ([`restore`]). It knows nothing of clusters: the coordinator decides which
//! nodes take part and writes the backup summary. [`service::Agent`] wraps these steps
//! behind a lease for a coordinator, in-process ([`local_node::LocalNode`]) or over HTTP.
//! The messages are not this crate's: they are the cluster's vocabulary,
//! [`strata_cluster::node_api`] (with the `ProgressSnapshot` a [`progress::Progress`]
//! takes), and the interface a node answers is [`strata_cluster::node::NodeApi`].
//!
//! Layout: [`backup`] (a node's snapshot: the walk, the files cache, chunks uploaded as
//! they are cut; `prefetch` reads ahead), [`upload`] (the sink chunks go to),
//! [`files_cache`] (what an unchanged file is known by), [`restore`] (laying a manifest
//! down, part by part, every path checked first; `prune` removes what the backup lacks),
//! `write_behind` (a restore's writeback started as it writes), [`spool`] (a manifest on
//! scratch disk while it grows), [`progress`] (the live counters and the cancel switch),
//! [`service`] (the agent behind its lease, and the plugins' node sides), [`local_node`]
//! (the agent as an in-process node), `error`.

#![deny(missing_docs)]

pub mod backup;
mod error;
pub mod files_cache;
pub(crate) mod handles;
pub mod local_node;
mod prefetch;
pub mod progress;
mod prune;
pub mod restore;
pub mod service;
pub mod spool;
pub mod upload;
mod write_behind;

pub use error::{AgentError, AgentResult};

/// Helpers of the unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::Arc;
    use strata_repo::format::Encryption;
    use strata_repo::{InitOptions, Repository};

    /// A runtime and an unencrypted repository in `dir/repo`.
    pub fn scratch_repo(dir: &std::path::Path) -> (tokio::runtime::Runtime, Arc<Repository>) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let store = Arc::new(strata_store::LocalStore::new(dir.join("repo")));
        let options = InitOptions {
            encryption: Encryption::None,
            ..InitOptions::default()
        };
        let repo = rt.block_on(Repository::init(store, None, options)).unwrap();
        (rt, repo)
    }
}
