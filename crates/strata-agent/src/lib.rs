//! Node-side operations of strata.
//!
//! An agent turns a node's files into a [`strata_repo::manifest::NodeManifest`] plus new
//! blobs in the repository ([`backup`]), and lays a manifest back down on disk, verifying
//! every byte ([`restore`]). It knows nothing of clusters: the coordinator decides which
//! nodes take part and writes the backup summary. [`service::Agent`] wraps these steps
//! behind a lease for a coordinator, in-process or over HTTP ([`api`] has the messages).

#![deny(missing_docs)]

pub mod api;
pub mod backup;
mod error;
pub mod files_cache;
pub(crate) mod handles;
mod prefetch;
pub mod progress;
mod prune;
pub mod restore;
pub mod service;
pub mod spool;
pub mod upload;

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
