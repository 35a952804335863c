//! Repositories for this crate's unit tests.

use crate::format::Encryption;
use crate::{InitOptions, Repository};
use std::path::Path;
use std::sync::Arc;
use strata_store::{DynStore, LocalStore};

/// An unencrypted repository in `dir` (a local directory store): what tests of the
/// index, the writer and merges need, without a key derivation.
pub(crate) async fn plain(dir: &Path) -> Arc<Repository> {
    let store: DynStore = Arc::new(LocalStore::new(dir));
    let options = InitOptions {
        encryption: Encryption::None,
        ..Default::default()
    };
    Repository::init(store, None, options)
        .await
        .expect("a test repository")
}

/// The index objects of `repo` over the bound (see [`crate::index::over_bound`]), each
/// with its pack count and blob count: what every writer of index objects must leave
/// empty.
pub(crate) async fn objects_over_bound(repo: &Repository) -> Vec<(String, usize, usize)> {
    let mut over = Vec::new();
    for object in repo
        .list_index_objects()
        .await
        .expect("index objects listed")
    {
        let key = object.key;
        let file = repo.read_index(&key).await.expect("an index object reads");
        let counts: Vec<usize> = file.packs.iter().map(|p| p.blobs.len()).collect();
        if crate::index::over_bound(&counts) {
            over.push((key, counts.len(), counts.iter().sum()));
        }
    }
    over
}
