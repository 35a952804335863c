//! The WAL archive of a PostgreSQL cluster in a strata repository: what PostgreSQL's
//! `archive_command` (`strata wal-push`) and `restore_command` (`strata wal-fetch`) run,
//! the local archiver that batches the pushes of a busy primary (`strata wal archiver`),
//! and what the archive shows and keeps (`strata wal list`, `wal verify`, retention).
//!
//! Every push is announced to garbage collection first (an archive writer's mark, in
//! `strata-gc`), and a segment is acknowledged only once the repository holds it; the
//! archive lives in the repository's `archive/wal/` space (`strata-repo`), its segments'
//! names and steps are PostgreSQL's (`strata-postgres`).
//!
//! Layout, each module and what it owns (arrows point down only):
//!
//! - `push`: [`push`], `wal-push`: through the archiver when one listens, else by itself.
//! - `fetch`: [`fetch`], `wal-fetch` (the read-ahead spool, then the archive), and
//!   [`prefetch`], which keeps the spool filled beside recovery.
//! - [`archiver`]: the local archiver: [`archiver::wire`] (the one-line exchange, where it
//!   listens, what it reports), its server side ([`archiver::serve`], the batch loop) and
//!   [`archiver::client`] (the `wal-push` side); server and client point at the wire only.
//! - `receipts`: receipts of the segments a one-shot push archived ahead.
//! - `write`: [`push_paths`], WAL written under an archive writer's mark.
//! - `archive`: the archive as stored: [`list`], [`verify`] and [`expire`] (retention).
//! - [`queue`]: the WAL waiting in `pg_wal`, and the count of segments `wal-push` dropped.
//! - `error`: [`WalError`] and [`WalFailure`], what failed in a WAL command and what kind
//!   of failure it is.
//!
//! ```text
//! push     -> archiver, receipts, write, queue, error
//! archiver -> write, queue, error        (inside: server -> wire, client -> wire)
//! fetch, archive, write -> error
//! receipts, queue, error: leaves
//! ```
//!
//! A segment pushed into a repository in a local directory, listed, and fetched back:
//!
//! ```rust
//! use std::sync::Arc;
//! use strata_cluster::config::Config;
//! use strata_repo::{InitOptions, RepoError, Repository};
//! use strata_wal::Pushed;
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store: strata_store::DynStore = Arc::new(strata_store::LocalStore::new(dir.path()));
//! # let options = InitOptions {
//! #     kdf: strata_repo::crypto::KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 },
//! #     ..InitOptions::default()
//! # };
//! let repo = Repository::init(store.clone(), Some("a long passphrase"), options).await?;
//! // Where the receipts, the read-ahead spool and the archiver's socket go.
//! let config = Config { state_dir: Some(dir.path().join("state")), ..Config::default() };
//! // What opens the repository (a command derives the key from the password): here it
//! // is open already.
//! let open = || async { Ok::<_, RepoError>(repo.clone()) };
//!
//! // A segment as PostgreSQL leaves it in pg_wal (real ones are 16 MiB).
//! let name = "000000010000000000000001";
//! let segment = dir.path().join(name);
//! std::fs::write(&segment, vec![7u8; 64 << 10])?;
//!
//! // No archiver listens: the push stores the segment by itself.
//! let pushed = strata_wal::push(&config, &store, open(), &segment).await?;
//! assert!(matches!(&pushed[..], [Pushed::Stored { name: n, .. }] if n == name));
//! let again = strata_wal::push(&config, &store, open(), &segment).await?;
//! assert!(matches!(&again[..], [Pushed::AlreadyArchived { .. }]));
//!
//! let listing = strata_wal::list(&repo).await?;
//! assert_eq!(listing.archive.timelines[0].segments, 1);
//!
//! let dest = dir.path().join("restored");
//! let fetched = strata_wal::fetch(&config, &store, open(), name, &dest).await?;
//! assert_eq!(fetched.bytes, 64 << 10);
//! assert_eq!(std::fs::read(&dest)?, std::fs::read(&segment)?);
//!
//! // Without a PostgreSQL backup nothing is expired: the WAL may be all there is.
//! assert!(strata_wal::expire(&repo, false).await?.removed.is_empty());
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod archive;
pub mod archiver;
mod error;
mod fetch;
mod push;
pub mod queue;
mod receipts;
#[cfg(test)]
mod test_support;
mod write;

pub use archive::{
    expire, list, verify, BackupWal, DamagedWal, WalExpiry, WalListing, WalVerifyReport,
};
pub use error::{Coded, WalError, WalFailure, WalResult};
pub use fetch::{fetch, prefetch, read_ahead, Fetched};
pub use push::push;
/// What happened to each segment a push was given (printed by `strata wal-push`).
pub use strata_postgres::wal::Pushed;
pub use write::{push_paths, push_paths_hashed};
