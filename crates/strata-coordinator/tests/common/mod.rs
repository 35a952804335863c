//! Helpers of the coordinator's integration tests.
#![allow(dead_code)]

use strata_repo::crypto::KdfParams;
use strata_repo::InitOptions;

/// Deterministic pseudo-random bytes (SplitMix64).
pub fn pseudo_random(len: usize, mut state: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

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
pub async fn scratch_repo(dir: &std::path::Path) -> std::sync::Arc<strata_repo::Repository> {
    let store: strata_store::DynStore =
        std::sync::Arc::new(strata_store::LocalStore::new(dir.join("repo")));
    strata_repo::Repository::init(store.clone(), Some("pw"), fast_init())
        .await
        .unwrap();
    strata_repo::Repository::open(store, Some("pw"))
        .await
        .unwrap()
}
