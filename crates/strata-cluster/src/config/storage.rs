//! `[storages.NAME]`, `[cache]` and `[retry]`: where repositories live and how they are
//! reached.

use super::*;

/// The local cache of immutable objects of object storages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Budget in MiB; 0 disables the cache.
    pub size_mib: u64,
    /// Where the cache lives (default: `<state_dir>/cache`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            size_mib: 256,
            dir: None,
        }
    }
}

/// Retries of storage requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    /// Attempts in all, including the first; 0 for as many as `budget_secs` allows.
    pub attempts: u32,
    /// Wait before the first retry, in milliseconds; each wait doubles up to
    /// `max_backoff_ms` and is between half its ceiling and the ceiling.
    pub initial_backoff_ms: u64,
    /// The ceiling of one wait between attempts, in milliseconds.
    pub max_backoff_ms: u64,
    /// The most time one request waits between its attempts, in all: a storage away for
    /// less is ridden out.
    pub budget_secs: u64,
    /// Time limit of one request.
    pub timeout_secs: u64,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            attempts: 0,
            initial_backoff_ms: 100,
            max_backoff_ms: 10_000,
            budget_secs: 60,
            timeout_secs: 300,
        }
    }
}

impl RetrySettings {
    /// The store layer's form of these settings.
    pub fn to_retry_config(&self) -> strata_store::RetryConfig {
        use std::time::Duration;
        strata_store::RetryConfig {
            max_attempts: self.attempts,
            initial_backoff: Duration::from_millis(self.initial_backoff_ms),
            max_backoff: Duration::from_millis(self.max_backoff_ms),
            budget: Duration::from_secs(self.budget_secs),
            attempt_timeout: Duration::from_secs(self.timeout_secs.max(1)),
        }
    }
}

/// One storage: a local directory (`path`) or an object storage (`url`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Optional, for readability: "local", "s3", "azure" or "gcs"; checked against the
    /// location when given.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// A local directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// An object storage location: `s3://bucket/prefix`, `az://container/prefix`,
    /// `gs://bucket/prefix`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// object_store settings such as `aws_endpoint`, `aws_region`, `aws_allow_http`,
    /// `azure_storage_account_name`, `azure_use_emulator`, `google_service_account`.
    /// Values of secret-looking keys are masked in any output.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// Settings read from environment variables: option key -> variable name. Keeps
    /// secrets out of the file (e.g. `aws_secret_access_key = "MY_S3_SECRET"`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_env: BTreeMap<String, String>,
    /// The storage class table archives are written in (S3: `STANDARD_IA`,
    /// `GLACIER_IR`, ...; Azure: the access tier `Cool`, `Cold`, `Archive`; GCS:
    /// `NEARLINE`, `COLDLINE`, `ARCHIVE`); backups always use the default class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive_class: Option<String>,
}

/// Words that make an option's value secret.
const SECRET_WORDS: [&str; 6] = ["secret", "key", "token", "sas", "password", "credential"];

impl StorageConfig {
    /// A local directory storage.
    pub fn local(path: impl Into<PathBuf>) -> Self {
        StorageConfig {
            path: Some(path.into()),
            ..StorageConfig::default()
        }
    }

    /// A storage at a location given on the command line: a URL or a directory.
    pub fn at(location: &str) -> Self {
        if strata_store::is_cloud_url(location) {
            StorageConfig {
                url: Some(location.to_string()),
                ..StorageConfig::default()
            }
        } else {
            StorageConfig::local(location.strip_prefix("file://").unwrap_or(location))
        }
    }

    /// The same configuration with secret option values replaced by `***`.
    pub fn masked(&self) -> Self {
        let mut out = self.clone();
        for (key, value) in out.options.iter_mut() {
            if SECRET_WORDS
                .iter()
                .any(|w| key.to_ascii_lowercase().contains(w))
            {
                *value = "***".into();
            }
        }
        out
    }

    pub(super) fn validate(&self, name: &str) -> Result<(), ConfigError> {
        let scheme = self
            .url
            .as_deref()
            .and_then(|u| u.split_once("://"))
            .map(|(s, _)| s);
        let kind = match (&self.path, scheme) {
            (Some(_), None) => "local",
            (None, Some("s3")) => "s3",
            (None, Some("az" | "azure")) => "azure",
            (None, Some("gs")) => "gcs",
            (None, Some(other)) => {
                return Err(ConfigError::Invalid(format!(
                    "storage {name:?}: unsupported url scheme {other:?} (s3://, az://, gs://)"
                )))
            }
            (None, None) => {
                return Err(ConfigError::Invalid(format!(
                    "storage {name:?} needs a `path` or a `url`"
                )))
            }
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid(format!(
                    "storage {name:?} has both a `path` and a `url`"
                )))
            }
        };
        if let Some(class) = &self.archive_class {
            if kind == "local" {
                return Err(ConfigError::Invalid(format!(
                    "storage {name:?}: archive_class needs object storage (a directory has no storage classes)"
                )));
            }
            if class.is_empty() || !class.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(ConfigError::Invalid(format!(
                    "storage {name:?}: archive_class {class:?} is not a storage class name (letters, digits, _)"
                )));
            }
        }
        match &self.kind {
            Some(declared) if declared != kind => Err(ConfigError::Invalid(format!(
                "storage {name:?} says type = {declared:?} but its location is a {kind} storage"
            ))),
            _ => Ok(()),
        }
    }

    /// The options with `secret_env` values read from the environment.
    pub fn resolved_options(&self) -> Result<BTreeMap<String, String>, ConfigError> {
        let mut options = self.options.clone();
        for (key, var) in &self.secret_env {
            let value = std::env::var(var).map_err(|_| {
                ConfigError::Invalid(format!(
                    "environment variable {var} (for storage option {key}) is not set"
                ))
            })?;
            options.insert(key.clone(), value);
        }
        Ok(options)
    }
}
