//! The WAL archive of a PostgreSQL cluster in a strata repository.
//!
//! Layout (each module and what it owns):
//!
//! - `error`: [`WalError`] and [`WalFailure`], what failed in a WAL command and what kind
//!   of failure it is.
//! - [`queue`]: the WAL waiting in `pg_wal`, and the count of segments `wal-push` dropped.
//! - `archive`: the archive as stored: [`list`], [`verify`] and [`expire`] (retention).
//! - `write`: [`push_paths`], WAL written under an archive writer's mark.
//! - [`archiver`]: the local WAL archiver (`strata wal archiver`): its [`archiver::wire`]
//!   exchange, its server side ([`archiver::serve`]) and its [`archiver::client`].
//!
//! An archive with no WAL yet, listed and expired:
//!
//! ```rust
//! use std::sync::Arc;
//! use strata_repo::{InitOptions, Repository};
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store: strata_store::DynStore = Arc::new(strata_store::LocalStore::new(dir.path()));
//! # let options = InitOptions {
//! #     kdf: strata_repo::crypto::KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 },
//! #     ..InitOptions::default()
//! # };
//! let repo = Repository::init(store, Some("a long passphrase"), options).await?;
//!
//! let listing = strata_wal::list(&repo).await?;
//! assert_eq!(listing.lines(), ["no WAL archived yet"]);
//! // Without a PostgreSQL backup nothing is expired: the WAL may be all there is.
//! let expired = strata_wal::expire(&repo, false).await?;
//! assert!(expired.removed.is_empty());
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod archive;
pub mod archiver;
mod error;
pub mod queue;
mod write;

pub use archive::{
    expire, list, verify, BackupWal, DamagedWal, WalExpiry, WalListing, WalVerifyReport,
};
pub use error::{Coded, WalError, WalFailure, WalResult};
pub use write::{push_paths, push_paths_hashed};
