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

#![deny(missing_docs)]

pub mod archive;
pub mod chunker;
pub mod compress;
pub mod condemned;
pub mod crypto;
mod error;
pub mod format;
pub mod id;
pub mod index;
pub mod index_merge;
pub mod index_table;
pub mod keyring;
pub mod layout;
pub mod listing;
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
pub use keyring::KeyChoice;
pub use manifest_store::{ManifestReader, CHUNKED_MANIFEST_VERSION};
pub use repository::{DamagedObject, InitOptions, Repository};
