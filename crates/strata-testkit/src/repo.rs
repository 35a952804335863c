//! Scratch repositories for library tests that drive strata-repo directly.

use std::path::Path;
use std::sync::Arc;
use strata_repo::crypto::KdfParams;
use strata_repo::{InitOptions, Repository};

/// Repository settings with a cheap key derivation, so tests spend their time on data.
pub fn fast_init() -> InitOptions {
    InitOptions {
        kdf: KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
        ..InitOptions::default()
    }
}

/// A fresh repository with password "pw" in `dir/repo`, opened.
pub async fn scratch_repo(dir: &Path) -> Arc<Repository> {
    let store: strata_store::DynStore = Arc::new(strata_store::LocalStore::new(dir.join("repo")));
    Repository::init(store.clone(), Some("pw"), fast_init())
        .await
        .unwrap();
    Repository::open(store, Some("pw")).await.unwrap()
}
