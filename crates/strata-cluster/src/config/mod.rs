//! The strata configuration file.
//!
//! One TOML file names the storages, the default storage, where the password comes from,
//! tuning, and the nodes. Sections other crates own (`[tables]`, `[pgq]`) are not read
//! here: the application layer (the `strata` binary) takes them out of the file, hands
//! them to their owners and the rest to [`Config::from_table`]. `strata config default`
//! prints [`default_config`], the owners' sections, then [`DEFAULT_CONFIG_END`]: together
//! the documentation of every setting; a test keeps this crate's part equal to
//! [`Config::default`].

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod clickhouse;
mod components;
mod retention;
mod schedule;
mod server;
mod storage;
pub use clickhouse::ClickHouseNode;
pub use components::default_failed;
pub use components::{
    CamundaComponent, CommandComponent, ComponentConfig, HttpComponent, NodeConfig,
};
pub use retention::{parse_within, PolicyError, PolicyOverrides, RetentionConfig};
pub use schedule::ScheduleConfig;
pub use server::{NamedToken, SecretSource, ServerConfig, TokenRole, WebhookConfig};
pub use storage::{CacheConfig, RetrySettings, StorageConfig};

/// The documented default configuration of this crate's sections (with `[postgres]`,
/// which strata-postgres owns), up to where the sections of crates beside this one are
/// printed.
pub fn default_config() -> String {
    [
        include_str!("default.toml"),
        strata_postgres::config::DEFAULT_SECTION,
        include_str!("default_rest.toml"),
    ]
    .concat()
}

/// The documented defaults printed after the sections other crates own (`[[webhooks]]`).
pub const DEFAULT_CONFIG_END: &str = include_str!("default_end.toml");

/// Problems with the configuration or with what it points at.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file that could not be read.
        path: PathBuf,
        /// Why reading it failed.
        #[source]
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML or does not fit the settings.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The configuration file.
        path: PathBuf,
        /// What the TOML parser found wrong.
        message: String,
    },
    /// A setting has a value that is refused; the message names the setting.
    #[error("{0}")]
    Invalid(String),
    /// A secret file (the password, a token) named by the configuration could not be read.
    #[error("cannot read {what} file {path}")]
    SecretFile {
        /// Which secret the file holds (`password`, a token's name).
        what: &'static str,
        /// The secret file.
        path: PathBuf,
        /// Why reading it failed.
        #[source]
        source: std::io::Error,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The name of the storage (one of `[storages.*]`) that new backups go to.
    pub default_storage: String,
    /// `files` or `postgres`: what a backup of the nodes is (see `strata_plugins`).
    pub plugin: String,
    /// Where in-process nodes keep their local state (files caches, the scheduler's last
    /// starts, scratch copies of drills); unset: `$STRATA_STATE_DIR`, then
    /// `$XDG_STATE_HOME/strata`, then `~/.local/state/strata`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
    /// Where the repository password comes from (`[password]`).
    pub password: PasswordConfig,
    /// Settings used when creating a repository (`[repository]`).
    pub repository: RepositoryConfig,
    /// Tuning of backups (`[backup]`).
    pub backup: BackupConfig,
    /// Tuning of restores (`[restore]`).
    pub restore: RestoreConfig,
    /// Retries of storage requests (`[retry]`).
    pub retry: RetrySettings,
    /// The local cache of immutable objects of object storages (`[cache]`).
    pub cache: CacheConfig,
    /// The storages backups can go to, by name (`[storages.<name>]`).
    pub storages: BTreeMap<String, StorageConfig>,
    /// The nodes of the cluster (`[[nodes]]`).
    pub nodes: Vec<NodeConfig>,
    /// The API server and the agents' addresses and tokens (`[server]`).
    pub server: ServerConfig,
    /// Which backups `strata cleanup` keeps (`[retention]`).
    pub retention: RetentionConfig,
    /// Garbage collection (`[gc]`).
    pub gc: GcConfig,
    /// The jobs `strata server` runs on a schedule (`[[schedules]]`).
    pub schedules: Vec<ScheduleConfig>,
    /// PostgreSQL settings of the `postgres` plugin (`[postgres]`).
    pub postgres: PostgresConfig,
    /// Where to tell other systems about operations (`[[webhooks]]`).
    pub webhooks: Vec<WebhookConfig>,
    /// What a backup is made of (`[[components]]`); empty: one component, `plugin` over
    /// every node.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ComponentConfig>,
    /// Commands and HTTP calls at the steps of backups and restores, and pause/resume
    /// pairs (`[[hooks]]`, see [`strata_hooks`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<strata_hooks::HookConfig>,
    /// The file this configuration was read from (commands PostgreSQL runs, such as
    /// `restore_command`, point back at it).
    #[serde(skip)]
    pub source_path: Option<PathBuf>,
}

pub use strata_postgres::config::PostgresConfig;

/// Where the repository password comes from. The password itself never appears in the
/// configuration, in logs or in output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordConfig {
    /// The environment variable holding the password.
    pub env: String,
    /// Or, when the variable is not set, a file whose first line is the password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// The ids of the key files (`keys/<id>`, `strata key list`) the password may open;
    /// any other key file is skipped before its KDF runs. Empty: any key.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
}

/// Garbage collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcConfig {
    /// How old (by the storage's modification time) a pack that no index lists, or a
    /// manifest of a backup without a summary, must be before garbage collection deletes
    /// it: a writer that was stalled past its lock's TTL may still index it. A duration
    /// such as `1h` or `30m`.
    pub grace: String,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig { grace: "1h".into() }
    }
}

impl GcConfig {
    /// The grace period as a duration.
    pub fn grace(&self) -> Result<std::time::Duration, ConfigError> {
        humantime::parse_duration(self.grace.trim()).map_err(|e| {
            ConfigError::Invalid(format!(
                "gc.grace {:?}: {e} (expected a duration such as 1h or 30m)",
                self.grace
            ))
        })
    }
}

/// Settings used when creating a repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RepositoryConfig {
    /// `aes-256-gcm` (the default) or `none` for storage that encrypts by itself; used by
    /// `strata init` only.
    pub encryption: String,
}

/// Tuning of backups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// zstd level for new data; 0 disables compression (incompressible data is always stored
    /// raw).
    pub compression_level: i32,
    /// Target size of pack files, in MiB: bigger means fewer requests and more memory.
    pub pack_size_mib: u32,
    /// Threads that compress and encrypt; 0 means one per CPU core.
    pub threads: usize,
    /// Pack uploads in flight at once.
    pub uploads: usize,
}

/// Tuning of restores.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestoreConfig {
    /// Files restored in parallel; 0 means one per CPU core plus one.
    pub workers: usize,
}

impl Default for Config {
    fn default() -> Self {
        let mut storages = BTreeMap::new();
        storages.insert("local".to_string(), StorageConfig::local("strata-repo"));
        Config {
            default_storage: "local".into(),
            plugin: "files".into(),
            state_dir: None,
            password: PasswordConfig::default(),
            repository: RepositoryConfig::default(),
            backup: BackupConfig::default(),
            restore: RestoreConfig::default(),
            retry: RetrySettings::default(),
            cache: CacheConfig::default(),
            storages,
            nodes: Vec::new(),
            server: ServerConfig::default(),
            retention: RetentionConfig::default(),
            gc: GcConfig::default(),
            schedules: Vec::new(),
            webhooks: Vec::new(),
            postgres: PostgresConfig::default(),
            components: Vec::new(),
            hooks: Vec::new(),
            source_path: None,
        }
    }
}

impl Default for PasswordConfig {
    fn default() -> Self {
        PasswordConfig {
            env: "STRATA_PASSWORD".into(),
            file: None,
            keys: Vec::new(),
        }
    }
}

impl Default for RepositoryConfig {
    fn default() -> Self {
        RepositoryConfig {
            encryption: "aes-256-gcm".into(),
        }
    }
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            compression_level: 3,
            pack_size_mib: 16,
            threads: 0,
            uploads: 2,
        }
    }
}

/// Whether `name` may name a component or a node: it names files (pause records).
pub fn valid_name(name: &str) -> bool {
    // The characters of any id that names a file (a pause record's), shorter.
    name.len() <= 64 && strata_util::valid_id(name)
}

impl Config {
    /// Makes the relative paths of the file absolute against `base`, the file's directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        for storage in self.storages.values_mut() {
            if let Some(path) = storage.path.as_mut() {
                resolve(path);
            }
        }
        if let Some(dir) = self.state_dir.as_mut() {
            resolve(dir);
        }
        if let Some(file) = self.password.file.as_mut() {
            resolve(file);
        }
        if let Some(dir) = self.cache.dir.as_mut() {
            resolve(dir);
        }
        let server = &mut self.server;
        for path in [
            server.user_token.file.as_mut(),
            server.agent_token.file.as_mut(),
            server.tls_cert.as_mut(),
            server.tls_key.as_mut(),
            server.ca_file.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            resolve(path);
        }
        for node in &mut self.nodes {
            if let Some(pg) = node.postgres.as_mut() {
                resolve(&mut pg.data_dir);
                if let Some(file) = pg.connect.password_file.as_mut() {
                    resolve(file);
                }
            }
            if let Some(ch) = node.clickhouse.as_mut() {
                resolve(&mut ch.path);
                if let Some(file) = ch.password_file.as_mut() {
                    resolve(file);
                }
            }
            for root in &mut node.roots {
                if Path::new(root).is_relative() {
                    *root = base.join(&*root).to_string_lossy().into_owned();
                }
            }
        }
    }

    /// The command line's choices over the file: `--repo LOCATION` (the only storage),
    /// `--storage NAME` (only that configured storage), `--state-dir DIR`.
    pub fn apply_command_line(
        &mut self,
        repo: Option<&str>,
        storage: Option<&str>,
        state_dir: Option<&Path>,
    ) -> Result<(), ConfigError> {
        if let Some(location) = repo {
            self.storages.clear();
            self.storages
                .insert("cli".into(), StorageConfig::at(location));
            self.default_storage = "cli".into();
            self.check_sections()?;
        }
        if let Some(name) = storage {
            if !self.storages.contains_key(name) {
                return Err(ConfigError::Invalid(format!(
                    "no storage named {name:?} in the configuration"
                )));
            }
            self.storages.retain(|n, _| n == name);
            self.default_storage = name.to_string();
        }
        if let Some(dir) = state_dir {
            self.state_dir = Some(dir.to_path_buf());
        }
        Ok(())
    }

    /// The components of a backup: the configured `[[components]]`, or one component
    /// named after `plugin` over every node (configurations from before components).
    pub fn components(&self) -> Vec<ComponentConfig> {
        if !self.components.is_empty() {
            return self.components.clone();
        }
        vec![ComponentConfig {
            name: self.plugin.clone(),
            plugin: self.plugin.clone(),
            nodes: self.nodes.iter().map(|n| n.name.clone()).collect(),
            optional: false,
            order: None,
            http: None,
            command: None,
            camunda: None,
            etcd: None,
            rename: Vec::new(),
            move_prefix: None,
        }]
    }

    /// Checks what TOML types cannot and this module can alone: names, references,
    /// ranges. `strata_coordinator::config::validate` adds the checks of the modules
    /// that own the rest (plugins, webhooks, retention, schedules).
    pub fn check_sections(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        retention::check(&self.retention)?;
        for (name, storage) in &self.storages {
            storage.validate(name)?;
        }
        if !self.storages.contains_key(&self.default_storage) {
            return invalid(format!(
                "default_storage {:?} is not one of the configured storages ({})",
                self.default_storage,
                self.storages.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        if let Err(e) = self
            .repository
            .encryption
            .parse::<strata_repo::format::Encryption>()
        {
            return invalid(format!("repository.encryption: {e}"));
        }
        if !(0..=22).contains(&self.backup.compression_level) {
            return invalid("backup.compression_level must be between 0 and 22".into());
        }
        if !(1..=1024).contains(&self.backup.pack_size_mib) {
            return invalid("backup.pack_size_mib must be between 1 and 1024".into());
        }
        let mut seen = std::collections::HashSet::new();
        for node in &self.nodes {
            if !valid_name(&node.name) {
                return invalid(format!(
                    "node name {:?} must be 1-64 letters, digits, '-', '_' or '.'",
                    node.name
                ));
            }
            if !seen.insert(&node.name) {
                return invalid(format!("node {:?} is configured twice", node.name));
            }
            if let Some(url) = &node.url {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return invalid(format!(
                        "node {:?}: url {url:?} must start with http:// or https://",
                        node.name
                    ));
                }
            }
        }
        for hook in &self.webhooks {
            if !(hook.url.starts_with("http://") || hook.url.starts_with("https://")) {
                return invalid(format!(
                    "webhook url {:?} must start with http:// or https://",
                    hook.url
                ));
            }
        }
        let mut token_names = std::collections::HashSet::from(["user"]);
        for token in &self.server.tokens {
            if !valid_name(&token.name) || !token_names.insert(token.name.as_str()) {
                return invalid(format!(
                    "server.tokens: name {:?} must be unique, not `user`, and 1-64 letters, digits, '-', '_' or '.'",
                    token.name
                ));
            }
        }
        self.postgres
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if let Some(node) = &self.server.node {
            if !self.nodes.iter().any(|n| &n.name == node) {
                return invalid(format!(
                    "server.node {node:?} is not one of the configured [[nodes]]"
                ));
            }
        }
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            return invalid("server.tls_cert and server.tls_key go together".into());
        }
        if self.retention.timezone.parse::<chrono_tz::Tz>().is_err() {
            return invalid(format!(
                "retention.timezone {:?} is not an IANA time zone (e.g. \"Europe/Berlin\", \"UTC\")",
                self.retention.timezone
            ));
        }
        let mut names = std::collections::HashSet::new();
        for schedule in &self.schedules {
            if !names.insert(schedule.name()) {
                return invalid(format!(
                    "two schedules are named {:?}: give them distinct `name`s",
                    schedule.name()
                ));
            }
        }
        if self.server.lease_ttl_secs == 0 {
            return invalid("server.lease_ttl_secs must be at least 1".into());
        }
        self.gc.grace()?;
        // Timeouts up to a day, so no deadline overflows the clock.
        const DAY: u64 = 86_400;
        let server = &self.server;
        for (key, value, max) in [
            ("header_timeout_secs", server.header_timeout_secs, DAY),
            ("body_timeout_secs", server.body_timeout_secs, DAY),
            (
                "tls_handshake_timeout_secs",
                server.tls_handshake_timeout_secs,
                DAY,
            ),
            ("write_timeout_secs", server.write_timeout_secs, DAY),
            ("max_connections", server.max_connections as u64, 1 << 20),
            (
                "auth_failures_per_minute",
                u64::from(server.auth_failures_per_minute),
                u64::MAX,
            ),
        ] {
            if value == 0 || value > max {
                return invalid(format!("server.{key} must be between 1 and {max}"));
            }
        }
        Ok(())
    }

    /// The storage new backups go to.
    pub fn default_storage(&self) -> &StorageConfig {
        &self.storages[&self.default_storage]
    }

    /// The state directory of in-process nodes.
    pub fn state_dir(&self) -> PathBuf {
        if let Some(dir) = &self.state_dir {
            return dir.clone();
        }
        if let Some(dir) = std::env::var_os("STRATA_STATE_DIR") {
            return PathBuf::from(dir);
        }
        if let Some(dir) = std::env::var_os("XDG_STATE_HOME") {
            return PathBuf::from(dir).join("strata");
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/lib"));
        home.join(".local/state/strata")
    }

    /// Reads the password from the configured environment variable or file. `None` when
    /// neither is set.
    pub fn password(&self) -> Result<Option<String>, ConfigError> {
        if let Ok(value) = std::env::var(&self.password.env) {
            return Ok(Some(value));
        }
        if let Some(path) = &self.password.file {
            return Ok(Some(first_line(path, "password")?));
        }
        Ok(None)
    }
}

/// A TOML error as [`ConfigError::Parse`] of the file at `origin`.
pub fn parse_error(origin: &Path, e: toml::de::Error) -> ConfigError {
    ConfigError::Parse {
        path: origin.to_path_buf(),
        message: e.message().to_string(),
    }
}

/// The first line of a secret file (the rest, and the newline, are not part of it).
fn first_line(path: &Path, what: &'static str) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    Ok(text.lines().next().unwrap_or_default().to_string())
}

impl BackupConfig {
    /// The write pipeline these settings describe.
    pub fn writer_options(&self) -> strata_repo::writer::WriterOptions {
        let mut writer = strata_repo::writer::WriterOptions {
            compression_level: self.compression_level,
            pack_size: self.pack_size_mib as usize * 1024 * 1024,
            uploads: self.uploads.max(1),
            train_dictionary: Some(strata_repo::dictionary::Training::default()),
            ..strata_repo::writer::WriterOptions::default()
        };
        if self.threads > 0 {
            writer.workers = self.threads;
        }
        writer
    }
}
