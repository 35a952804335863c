//! Opening a configured storage with its wrappers.
//!
//! Every storage is used through the same stack: retries outside, request counting inside
//! (so each retried request is counted, as the provider bills it), the backend at the core.

use crate::config::{Config, ConfigError, StorageConfig};
use crate::CoordinatorResult;
use std::sync::Arc;
use strata_repo::RepoError;
use strata_store::{CloudStore, CountingStore, DynStore, LocalStore, RetryStore};

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
    pub fn open(config: &Config, name: &str) -> CoordinatorResult<Storage> {
        let storage: &StorageConfig = config.storages.get(name).ok_or_else(|| {
            ConfigError::Invalid(format!("no storage named {name:?} in the configuration"))
        })?;
        let backend: DynStore = match (&storage.path, &storage.url) {
            (Some(path), _) => Arc::new(LocalStore::new(path)),
            (None, Some(url)) => Arc::new(
                CloudStore::open(url, &storage.resolved_options()?).map_err(RepoError::from)?,
            ),
            (None, None) => {
                return Err(ConfigError::Invalid(format!(
                    "storage {name:?} needs a `path` or a `url`"
                ))
                .into())
            }
        };
        Ok(Storage::wrap(name, backend, config))
    }

    /// Opens the default storage.
    pub fn open_default(config: &Config) -> CoordinatorResult<Storage> {
        Storage::open(config, &config.default_storage)
    }
}
