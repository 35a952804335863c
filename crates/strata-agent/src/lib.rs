//! Node-side operations of strata.
//!
//! An agent turns a node's files into a [`strata_repo::manifest::NodeManifest`] plus new
//! blobs in the repository ([`backup`]), and lays a manifest back down on disk, verifying
//! every byte ([`restore`]). It knows nothing of clusters: the coordinator decides which
//! nodes take part and writes the backup summary. [`service::Agent`] wraps these steps
//! behind a lease for a coordinator, in-process or over HTTP ([`api`] has the messages).
//!
//! ```
//! use strata_agent::api::{ChunkRef, ErrorCode};
//! use strata_repo::BlobId;
//!
//! // What crosses the wire between a coordinator and an agent is checked on arrival: a
//! // chunk reference names its blob in hex, and anything else is a bad request.
//! let chunk = ChunkRef::new(&BlobId([7; 32]), 4096);
//! assert_eq!(chunk.blob_id().unwrap(), BlobId([7; 32]));
//! let forged = ChunkRef { id: "../../etc/passwd".into(), len: 1 };
//! assert_eq!(forged.blob_id().unwrap_err().code, ErrorCode::BadRequest);
//! ```
//!
//! Layout: [`backup`] (a node's snapshot: the walk, the files cache, chunks uploaded as
//! they are cut; `prefetch` reads ahead), [`upload`] (the sink chunks go to),
//! [`files_cache`] (what an unchanged file is known by), [`restore`] (laying a manifest
//! down, part by part, every path checked first; `prune` removes what the backup lacks),
//! [`spool`] (a manifest on scratch disk while it grows), [`progress`], [`service`] (the
//! agent behind its lease, and the plugins' node sides), [`api`] (the messages), `error`.

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
