//! What the plugin's configuration says about an etcd cluster.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::path::PathBuf;
use std::time::Duration;

/// What a restore does with keys that were bound to a lease when backed up.
///
/// A lease does not survive a restore (its id means nothing in the target cluster, and
/// its TTL ran out long ago), and lease-held keys are usually liveness markers (a
/// Patroni leader key, a member's registration) that would lie if they came back. So by
/// default they are left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeasedKeys {
    /// `"skip"` (the default): keys bound to a lease are not restored.
    #[default]
    Skip,
    /// `"without-lease"`: they are restored as plain keys that never expire.
    WithoutLease,
}

/// What a backup does when the checked keys changed while it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnChange {
    /// `"fail"` (the default): the component, and so the backup, is recorded failed.
    #[default]
    Fail,
    /// `"retry"`: that attempt is recorded failed and the whole backup runs again, up to
    /// `change_retries` times: only a new snapshot of every component pairs the data
    /// with one topology.
    Retry,
}

/// How to reach an etcd cluster and what to back up from it.
///
/// Read from the plugin's TOML; every field but `endpoints` is optional, defaults below.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Client URLs (`http://127.0.0.1:2379`, `https://...`), tried in order: a request goes
    /// to the next one when a connection cannot be made. Default `["http://127.0.0.1:2379"]`.
    #[serde(default = "default_endpoints")]
    pub endpoints: Vec<String>,
    /// Key prefixes that are backed up; empty (the default) means the whole keyspace.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Key prefixes left out of the fingerprint (they are still backed up): keys that
    /// change all the time without anything worth a new backup happening, such as a
    /// Patroni leader key renewed every few seconds. Default none.
    #[serde(default)]
    pub exclude_from_check: Vec<String>,
    /// User name for etcd's user/password authentication. Default none (no auth, or
    /// client certificate auth only).
    #[serde(default)]
    pub user: Option<String>,
    /// Environment variable holding the password of `user`.
    #[serde(default)]
    pub password_env: Option<String>,
    /// File holding the password of `user` (a trailing newline is ignored).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PEM CA certificate(s) the server certificate must chain to; when set, only these
    /// are trusted (a cluster's private CA), not the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for clusters run with `--client-cert-auth`; needs `key_file`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Bound on each request (connect included), as a duration like `"10s"`. Default 10 s.
    #[serde(
        default = "default_timeout",
        deserialize_with = "duration",
        serialize_with = "duration_text"
    )]
    pub timeout: Duration,
    /// What a restore does with leased keys by default: `"skip"` (default) or
    /// `"without-lease"`.
    #[serde(default)]
    pub leased: LeasedKeys,
    /// Whether a restore writes over keys that hold other values (or that the backup
    /// does not have, which it leaves alone: a restore never deletes). Default false: such
    /// a restore is refused before anything is written.
    #[serde(default)]
    pub overwrite: bool,
    /// When the checked keys changed while a backup ran: `"fail"` (default) or
    /// `"retry"` (see [`OnChange`]).
    #[serde(default)]
    pub on_change: OnChange,
    /// With `on_change = "retry"`: how many more times the backup runs. Default 2.
    #[serde(default = "default_change_retries")]
    pub change_retries: u32,
}

fn default_change_retries() -> u32 {
    2
}

fn default_endpoints() -> Vec<String> {
    vec!["http://127.0.0.1:2379".to_string()]
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn duration_text<S: Serializer>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&humantime::format_duration(*d).to_string())
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(text.trim())
        .map_err(|e| serde::de::Error::custom(format!("bad duration {text:?}: {e}")))
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            endpoints: default_endpoints(),
            prefixes: Vec::new(),
            exclude_from_check: Vec::new(),
            user: None,
            password_env: None,
            password_file: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            timeout: default_timeout(),
            leased: LeasedKeys::default(),
            overwrite: false,
            on_change: OnChange::default(),
            change_retries: default_change_retries(),
        }
    }
}

impl Settings {
    /// What the consistency check covers (the prefixes and those left out of it), as a
    /// short id: a node records it with its fingerprint, and the coordinator compares it
    /// with its own before comparing fingerprints, so two configurations that disagree
    /// are said to, not taken for a change of the keys.
    pub fn check_id(&self) -> String {
        let mut prefixes = self.prefixes.clone();
        prefixes.sort();
        let mut excluded = self.exclude_from_check.clone();
        excluded.sort();
        let text = format!("prefixes {prefixes:?} excluded {excluded:?}");
        blake3::hash(text.as_bytes()).to_hex()[..16].to_string()
    }

    /// Settings for these endpoints, everything else at its default.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Settings {
        Settings {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            ..Settings::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_kebab_case() {
        let s: Settings = toml::from_str("").unwrap();
        assert_eq!(s.endpoints, ["http://127.0.0.1:2379"]);
        assert_eq!(s.timeout, Duration::from_secs(10));
        assert_eq!(s.leased, LeasedKeys::Skip);
        assert_eq!((s.on_change, s.change_retries), (OnChange::Fail, 2));
        let s: Settings = toml::from_str("on_change = \"retry\"\nchange_retries = 5").unwrap();
        assert_eq!((s.on_change, s.change_retries), (OnChange::Retry, 5));
        assert!(toml::from_str::<Settings>("on_change = \"again\"").is_err());
        assert!(!s.overwrite);
        // What the check covers: the same for the same sets in any order, else not.
        let a: Settings =
            toml::from_str("prefixes = [\"/a/\", \"/b/\"]\nexclude_from_check = [\"/a/l\"]")
                .unwrap();
        let b: Settings =
            toml::from_str("prefixes = [\"/b/\", \"/a/\"]\nexclude_from_check = [\"/a/l\"]")
                .unwrap();
        let c: Settings = toml::from_str("prefixes = [\"/a/\", \"/b/\"]").unwrap();
        assert_eq!(a.check_id(), b.check_id());
        assert_ne!(a.check_id(), c.check_id());
        let s: Settings = toml::from_str(
            "endpoints = [\"https://e1:2379\"]\ntimeout = \"2s 500ms\"\nleased = \"without-lease\"\nprefixes = [\"/service/\"]",
        )
        .unwrap();
        assert_eq!(s.timeout, Duration::from_millis(2500));
        assert_eq!(s.leased, LeasedKeys::WithoutLease);
        assert_eq!(s.prefixes, ["/service/"]);
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        assert!(toml::from_str::<Settings>("endpoint = [\"x\"]").is_err());
        assert!(toml::from_str::<Settings>("timeout = \"soon\"").is_err());
        assert!(toml::from_str::<Settings>("leased = \"keep\"").is_err());
    }
}
