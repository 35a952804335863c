//! The strata repository format.
//!
//! A repository is a set of immutable objects in a [`strata_store::Store`]:
//!
//! | key                          | what                                               |
//! |------------------------------|----------------------------------------------------|
//! | `config`                     | format version, repository id, encryption, MAC      |
//! | `keys/<id>`                  | the master keys, wrapped by a password              |
//! | `data/<xx>/<pack id>`        | pack files: many sealed blobs and a sealed header   |
//! | `index/<id>`                 | which blob lives in which pack, at which offset      |
//! | `manifests/<backup>/<node>`  | the files of one node in one backup                  |
//! | `summaries/<backup>`         | one small object per backup, written last            |
//! | `listing/...`                | the backups' summaries, compact, a page at a time     |
//! | `archive/<space>/<name>`     | a file kept outside backups (PostgreSQL WAL)         |
//!
//! The modules follow the data path of a backup: [`chunker`] cuts files into chunks,
//! [`crypto`] names (keyed BLAKE3) and seals (AES-256-GCM) them, [`pack`] groups sealed
//! blobs into pack files, [`writer`] runs that pipeline on a bounded thread pool,
//! [`index`] finds blobs again, and [`manifest`] / [`summary`] describe backups.
//! `docs/format.md` in the source tree is the byte-level description.
//!
//! Storing a file outside any backup (how WAL segments are archived) and reading it back:
//!
//! ```
//! use std::sync::Arc;
//! use strata_repo::writer::{BlobWriter, WriterOptions};
//! use strata_repo::{archive, InitOptions, Repository};
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
//! // Chunks are cut, named, compressed, sealed and packed on the writer's bounded pool;
//! // the record may be saved only once the writer has finished (its packs are indexed).
//! let data = vec![7u8; 100_000];
//! let writer = BlobWriter::start(repo.clone(), WriterOptions::default());
//! let (r, d) = (repo.clone(), data.clone());
//! let (writer, file) = tokio::task::spawn_blocking(move || {
//!     let file = archive::store_file(&r, &writer, "000000010000000000000001", &d);
//!     (writer, file)
//! })
//! .await?;
//! let file = file?;
//! writer.finish().await?;
//! repo.save_archived("wal", &file).await?;
//!
//! let found = repo.load_archived("wal", "000000010000000000000001").await?.expect("saved");
//! assert_eq!(repo.read_archived(&found).await?, data);
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod allocator;
pub mod archive;
pub mod chunker;
pub mod compress;
pub mod condemned;
pub mod crypto;
pub mod dictionary;
mod dictionary_store;
mod error;
pub mod format;
pub mod id;
pub mod index;
pub mod index_merge;
pub mod index_table;
mod key_files;
pub mod keyring;
pub mod layout;
pub mod listing;
mod listing_contents;
pub mod manifest;
pub mod manifest_chunks;
mod manifest_store;
pub mod pack;
mod repository;
pub mod shared_index;
pub mod sorted_ids;
pub mod summary;
pub mod writer;

#[cfg(test)]
mod decoder_props;
#[cfg(test)]
mod test_repo;

pub use error::{RepoError, RepoResult};
pub use id::BlobId;
pub use key_files::KeyChoice;
pub use manifest_store::{ManifestReader, CHUNKED_MANIFEST_VERSION};
pub use repository::{DamagedObject, InitOptions, Repository};
