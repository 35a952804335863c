//! Opening a configured storage with its wrappers.
//!
//! Every storage is used through the same stack: retries outside, request counting inside
//! (so each retried request is counted, as the provider bills it), the backend at the core.

use crate::config::{Config, StorageConfig};
use std::sync::Arc;
use strata_store::{CountingStore, DynStore, LocalStore, RetryStore};

/// A storage ready for use, with its request counter.
#[derive(Debug, Clone)]
pub struct Storage {
    pub name: String,
    pub store: DynStore,
    pub requests: CountingStore,
}

impl Storage {
    /// Wraps an already built backend (tests use this to insert a fault injector).
    pub fn wrap(name: &str, backend: DynStore, config: &Config) -> Storage {
        let requests = CountingStore::new(backend);
        let store: DynStore = Arc::new(RetryStore::new(
            Arc::new(requests.clone()),
            config.retry.to_retry_config(),
        ));
        Storage {
            name: name.to_string(),
            store,
            requests,
        }
    }

    /// Opens the storage `name` of the configuration.
    pub fn open(config: &Config, name: &str) -> Storage {
        let backend: DynStore = match &config.storages[name] {
            StorageConfig::Local { path } => Arc::new(LocalStore::new(path)),
        };
        Storage::wrap(name, backend, config)
    }

    /// Opens the default storage.
    pub fn open_default(config: &Config) -> Storage {
        Storage::open(config, &config.default_storage)
    }
}
