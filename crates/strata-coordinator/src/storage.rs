//! Opening a configured storage with its wrappers.
//!
//! Every storage is used through the same stack: retries outside, then (for object
//! storages) the local cache of immutable objects, then request counting (so each request
//! that reaches the provider is counted, as it bills them), then the fence (which refuses
//! visible writes once this process may have lost its lock, checked on every attempt of a
//! retried write), the backend at the core.

use crate::config::{Config, ConfigError, StorageConfig};
use crate::CoordinatorResult;
use std::sync::Arc;
use strata_repo::{layout, KeyChoice, RepoError, RepoResult, Repository};
use strata_store::{
    open_cloud, CachingStore, CountingStore, DynStore, FaultConfig, FaultyStore, FencedStore,
    LocalStore, RetryStore,
};

/// A storage ready for use, with its request counter.
#[derive(Debug, Clone)]
pub struct Storage {
    /// The storage's name in `[storages.*]`.
    pub name: String,
    /// The store to use: retried, cached (for object storages) and fenced.
    pub store: DynStore,
    /// Counts the requests that reach the storage: each attempt of a retried request
    /// counts, a cache hit does not.
    pub requests: CountingStore,
}

impl Storage {
    /// Wraps an already built backend (tests use this to insert a fault injector).
    pub fn wrap(name: &str, backend: DynStore, config: &Config) -> Storage {
        Storage::wrap_with_cache(name, backend, config, false)
    }

    /// Wraps a backend with the local object cache too, as object storages are.
    pub fn wrap_cached(name: &str, backend: DynStore, config: &Config) -> Storage {
        Storage::wrap_with_cache(name, backend, config, true)
    }

    fn wrap_with_cache(name: &str, backend: DynStore, config: &Config, cached: bool) -> Storage {
        // Test-only: writes that land after the client gave up (see LateLandingStore).
        let backend = strata_store::LateLandingStore::from_test_env(backend);
        let mut backend: DynStore = Arc::new(
            FencedStore::new(backend, layout::makes_visible)
                .fencing_deletes(layout::delete_needs_lock),
        );
        // Test-only fault injection of the real binary (see FaultConfig::from_test_env
        // and docs/configuration.md): never set in production.
        if let Some(faults) = FaultConfig::from_test_env() {
            backend = Arc::new(FaultyStore::new(backend, faults));
        }
        let requests = CountingStore::new(backend);
        let mut inner: DynStore = Arc::new(requests.clone());
        if cached && config.cache.size_mib > 0 {
            let root = config
                .cache
                .dir
                .clone()
                .unwrap_or_else(|| config.state_dir().join("cache"));
            // One directory per location, so two configs naming it differently share it.
            let location = hex::encode(&blake3::hash(inner.describe().as_bytes()).as_bytes()[..8]);
            inner = Arc::new(CachingStore::new(
                inner,
                layout::cache_rule(),
                root.join(location),
                config.cache.size_mib << 20,
            ));
        }
        let store: DynStore = Arc::new(RetryStore::new(inner, config.retry.to_retry_config()));
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
            (None, Some(url)) => {
                open_cloud(url, &storage.resolved_options()?).map_err(RepoError::from)?
            }
            (None, None) => {
                return Err(ConfigError::Invalid(format!(
                    "storage {name:?} needs a `path` or a `url`"
                ))
                .into())
            }
        };
        // A local directory is its own cache.
        Ok(Storage::wrap_with_cache(
            name,
            backend,
            config,
            storage.url.is_some(),
        ))
    }

    /// The store of storage `name` for table archives: its puts go to the storage's
    /// `archive_class` when it has one.
    pub fn open_for_archives(config: &Config, name: &str) -> CoordinatorResult<DynStore> {
        let store = Storage::open(config, name)?.store;
        Ok(match &config.storages[name].archive_class {
            Some(class) => Arc::new(strata_store::InClass::new(store, class.clone())),
            None => store,
        })
    }

    /// Opens the default storage.
    pub fn open_default(config: &Config) -> CoordinatorResult<Storage> {
        Storage::open(config, &config.default_storage)
    }
}

/// The file under the state directory that remembers, per repository location, the key
/// that opened it last on this host.
const OPENED_KEYS: &str = "opened-keys.json";

impl Storage {
    /// How this host tries the key files of the repository here: only the ids `[password]
    /// keys` lists (when it lists any), the key that opened it last first (see
    /// [`KeyChoice`]).
    pub fn key_choice(&self, config: &Config) -> KeyChoice {
        let accept = (!config.password.keys.is_empty()).then(|| config.password.keys.clone());
        let remembered = std::fs::read(config.state_dir().join(OPENED_KEYS))
            .ok()
            .and_then(|raw| {
                serde_json::from_slice::<std::collections::BTreeMap<String, String>>(&raw).ok()
            })
            .and_then(|mut opened| opened.remove(&self.store.describe()));
        KeyChoice { accept, remembered }
    }

    /// Remembers that key `id` opened the repository here (best effort: a state
    /// directory this process cannot write only costs the order of the next opening).
    fn remember_key(&self, config: &Config, choice: &KeyChoice, id: &str) {
        if choice.remembered.as_deref() == Some(id) {
            return;
        }
        let dir = config.state_dir();
        let path = dir.join(OPENED_KEYS);
        let mut opened: std::collections::BTreeMap<String, String> = std::fs::read(&path)
            .ok()
            .and_then(|raw| serde_json::from_slice(&raw).ok())
            .unwrap_or_default();
        opened.insert(self.store.describe(), id.to_string());
        let temp = dir.join(format!("{OPENED_KEYS}.{}.tmp", std::process::id()));
        let written = std::fs::create_dir_all(&dir)
            .and_then(|()| {
                std::fs::write(
                    &temp,
                    serde_json::to_vec_pretty(&opened).expect("a map of strings serializes"),
                )
            })
            .and_then(|()| std::fs::rename(&temp, &path));
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
    }

    /// Opens the repository here with `password`, its key chosen as
    /// [`Storage::key_choice`] says, and remembers the key that opened it; with `index`,
    /// loads the index too.
    pub async fn open_repository(
        &self,
        config: &Config,
        password: Option<&str>,
        index: bool,
    ) -> RepoResult<Arc<Repository>> {
        // One index view per repository in this process, kept on this host's disk.
        strata_repo::shared_index::use_local_dir(&config.state_dir().join("index"));
        // Lets other processes prove this one dead once it exits (best effort: without a
        // writable state directory its locks are simply waited out).
        let _ = crate::lock::liveness::hold_alive_file(&config.state_dir());
        let choice = self.key_choice(config);
        let repo = Repository::open_catalog_with(self.store.clone(), password, &choice).await?;
        self.remember_key(config, &choice, repo.key_id());
        if index {
            repo.reload_index().await?;
        }
        Ok(repo)
    }
}
