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
