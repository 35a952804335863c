//! Opening a repository's keys: choosing the key file a password opens, among files any
//! writer of the bucket may have put there (see the `keyring` module for the rules), and
//! storing a new one. Leaf of the key handling: [`crate::Repository`]'s opening uses it,
//! and the keyring's management of keys does.

use crate::crypto::{BadKeyFile, KeyFile, KeyRejection, MasterKeys};
use crate::format::{Encryption, RepoConfig};
use crate::{RepoError, RepoResult};
use bytes::Bytes;
use std::collections::HashSet;
use strata_store::DynStore;

use crate::layout::KEYS;

/// Prints a warning about the repository on stderr, like the rest of strata.
pub(crate) fn warn(message: String) {
    eprintln!("strata: warning: {message}");
}

/// Stores a key file under `keys/<id>` (id: the first 16 bytes of its BLAKE3, hex).
pub(crate) async fn put_key_file(store: &DynStore, file: &KeyFile) -> RepoResult<String> {
    let json = serde_json::to_vec_pretty(file).expect("key file serializes");
    let id = hex::encode(&blake3::hash(&json).as_bytes()[..16]);
    store.put(&format!("{KEYS}{id}"), Bytes::from(json)).await?;
    Ok(id)
}

/// Reads the key files of one listing that were not `tried` yet: `(id, parsed or why not)`.
pub(crate) async fn read_batch(
    store: &DynStore,
    fresh: bool,
    tried: &mut HashSet<String>,
) -> RepoResult<Vec<(String, Result<KeyFile, BadKeyFile>)>> {
    let listing = if fresh {
        store.list_fresh(KEYS).await?
    } else {
        store.list(KEYS).await?
    };
    let mut out = Vec::new();
    for object in listing {
        if !tried.insert(object.key.clone()) {
            continue;
        }
        let id = object.key.trim_start_matches(KEYS).to_string();
        let bytes = match store.get(&object.key).await {
            Ok(bytes) => bytes,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e.into()),
        };
        out.push((id, KeyFile::parse(&bytes)));
    }
    Ok(out)
}

/// Which key files a password is tried against, and in which order.
///
/// Every Argon2 derivation costs time and memory that the key file sets (within the bounds
/// of [`KdfParams::check`]), and anyone who can write the bucket can add key files. So:
/// - with `accept`, a key whose id is not listed is skipped before anything is derived;
/// - `remembered` (the key that opened the repository last on this host) is tried first;
/// - then the keys that cost at most the default parameters, in listing order;
/// - keys that cost more are tried only when no other key opened the repository, and each
///   one left untried is named in a warning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyChoice {
    /// Only these key ids may be tried (none: any).
    pub accept: Option<Vec<String>>,
    /// The id of the key that opened the repository last on this host.
    pub remembered: Option<String>,
}

impl KeyChoice {
    fn accepts(&self, id: &str) -> bool {
        self.accept
            .as_ref()
            .is_none_or(|ids| ids.iter().any(|a| a == id))
    }

    fn is_remembered(&self, id: &str) -> bool {
        self.remembered.as_deref() == Some(id)
    }
}

/// What trying keys has found out so far, for the error when none opens.
#[derive(Default)]
struct Attempts {
    not_authentic: bool,
    needs_password: bool,
    not_unwrapped: bool,
}

/// Tries one key file against `config` (after the checks that need no derivation).
fn try_key(
    id: &str,
    file: &KeyFile,
    config: &RepoConfig,
    password: Option<&str>,
    location: &str,
    attempts: &mut Attempts,
) -> Option<MasterKeys> {
    let keys = match file.unwrap_for(password, &config.id) {
        Ok(keys) => keys,
        Err(KeyRejection::NotUnwrapped) => {
            attempts.not_unwrapped = true;
            return None;
        }
        Err(KeyRejection::NeedsPassword) => {
            attempts.needs_password = true;
            return None;
        }
        Err(KeyRejection::Unusable(why)) => {
            warn(format!(
                "{location}: key {id} is unusable and was skipped: {why}"
            ));
            return None;
        }
    };
    let authentic = if config.version >= 2 {
        config.mac_matches(&keys)
    } else {
        // Version 1 has no MAC: a bound (version-2) key means the config was
        // downgraded; a password-wrapped key means it is not unencrypted.
        file.repo.is_none() && !(file.kdf == "argon2id" && config.encryption == Encryption::None)
    };
    if !authentic {
        warn(format!(
            "{location}: key {id} unwraps but does not authenticate the config: skipped"
        ));
        attempts.not_authentic = true;
        return None;
    }
    Some(keys)
}

/// Whether deriving `file`'s wrapping key costs more than with the default parameters.
fn costly(file: &KeyFile) -> bool {
    file.kdf == "argon2id" && file.params.is_some_and(|p| p.costs_more_than_default())
}

/// Finds the key `password` opens for `config`, trying key files as `choice` says; returns
/// the master keys and the key's id.
pub(crate) async fn unlock(
    store: &DynStore,
    config: &RepoConfig,
    password: Option<&str>,
    location: &str,
    choice: &KeyChoice,
) -> RepoResult<(MasterKeys, String)> {
    let mut tried = HashSet::new();
    let mut attempts = Attempts::default();
    // Whether the repository is encrypted: its config says so, or any of its key files
    // is password-wrapped (a config edited to "none" does not make plain keys usable).
    let mut encrypted = config.encryption != Encryption::None;
    // Keys that cost more than the default, left for when no other key opens.
    let mut deferred: Vec<(String, KeyFile)> = Vec::new();
    // A cached listing may miss a key added elsewhere: on failure, ask the store.
    for fresh in [false, true] {
        let batch = read_batch(store, fresh, &mut tried).await?;
        encrypted |= batch
            .iter()
            .any(|(_, f)| matches!(f, Ok(f) if f.kdf == "argon2id"));
        let mut candidates = Vec::new();
        for (id, parsed) in batch {
            let file = match parsed {
                Ok(file) => file,
                Err(why) => {
                    warn(format!(
                        "{location}: key {id} is unusable and was skipped: {why}"
                    ));
                    continue;
                }
            };
            if !choice.accepts(&id) {
                warn(format!(
                    "{location}: key {id} is not among the accepted key ids: skipped"
                ));
                continue;
            }
            if file.kdf == "none" && encrypted {
                warn(format!(
                    "{location}: key {id} has no password (\"kdf\": \"none\") in an encrypted repository: ignored"
                ));
                continue;
            }
            if let Some(bound) = file.repo.as_deref().filter(|r| *r != config.id) {
                // Bound to another id: the config's id was edited (or the key comes
                // from another repository).
                warn(format!(
                    "{location}: key {id} belongs to repository {bound:?}, the config says {:?}: skipped",
                    config.id
                ));
                attempts.not_authentic = true;
                continue;
            }
            candidates.push((id, file));
        }
        // The remembered key first, then the others in listing order (a stable sort).
        candidates.sort_by_key(|(id, _)| !choice.is_remembered(id));
        for (id, file) in candidates {
            if costly(&file) && !choice.is_remembered(&id) {
                deferred.push((id, file));
                continue;
            }
            if let Some(keys) = try_key(&id, &file, config, password, location, &mut attempts) {
                for (skipped, file) in &deferred {
                    let p = file.params.unwrap_or_default();
                    warn(format!(
                        "{location}: key {skipped} was not tried: its Argon2 parameters ({} MiB, {} passes) cost more than the default, and key {id} opened the repository (remove the key file if it is not yours)",
                        p.memory_kib / 1024,
                        p.iterations
                    ));
                }
                return Ok((keys, id));
            }
        }
    }
    // No other key opened: the costly ones are the last resort.
    for (id, file) in deferred {
        if let Some(keys) = try_key(&id, &file, config, password, location, &mut attempts) {
            return Ok((keys, id));
        }
    }
    if tried.is_empty() {
        return Err(RepoError::corrupted(
            format!("repository {location}"),
            "it has no key",
        ));
    }
    if attempts.not_authentic {
        return Err(RepoError::ConfigNotAuthentic(location.to_string()));
    }
    if attempts.not_unwrapped {
        return Err(RepoError::WrongPassword(location.to_string()));
    }
    if attempts.needs_password {
        return Err(RepoError::PasswordRequired(location.to_string()));
    }
    Err(RepoError::corrupted(
        format!("repository {location}"),
        "no usable key (every key file was skipped, see the warnings)",
    ))
}
