//! The keys of a repository: choosing the one a password opens, and managing them.
//!
//! `keys/` is writable by whoever can write the bucket, so every key file is treated as
//! hostile until proven otherwise. A key file is used only when it parses with bounded
//! parameters, is bound to this repository (its `repo` field and the associated data of
//! its wrapped keys), unwraps with the password, and the master keys it yields
//! authenticate the `config` (its MAC). A file failing any step is skipped with a warning,
//! never fatal: an injected key cannot win (it cannot produce the config's MAC), an
//! unparsable one cannot block the repository. In a repository with any password-wrapped
//! key, a `"kdf": "none"` key is never used.

use crate::crypto::{KdfParams, KeyFile};
use crate::format::now_rfc3339;
use crate::format::{decode_object, encode_object, Encryption, ObjectKind, FORMAT_VERSION};
pub use crate::key_files::KeyChoice;
use crate::key_files::{put_key_file, read_batch, warn};
use crate::layout::{self, KEYS};
use crate::{RepoError, RepoResult, Repository};
use bytes::Bytes;
use std::collections::HashSet;

/// One key file, as `strata key list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyInfo {
    /// The key file's id (its key is `keys/<id>`).
    pub id: String,
    /// When the key was added, RFC 3339; empty when the file could not be read.
    pub created: String,
    /// "argon2id" for a password-wrapped key, "none" in an unencrypted repository; empty when
    /// the file could not be read.
    pub kdf: String,
    /// The key the current password opened.
    pub in_use: bool,
    /// Why the file cannot be used, when it cannot (parse error, other repository, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl Repository {
    /// Every key file of the repository (the unusable ones with their problem).
    pub async fn list_keys(&self) -> RepoResult<Vec<KeyInfo>> {
        let mut tried = HashSet::new();
        let mut out = Vec::new();
        for (id, parsed) in read_batch(self.store(), true, &mut tried).await? {
            let in_use = id == self.key_id();
            out.push(match parsed {
                Ok(file) => {
                    let problem = self.key_problem(&file);
                    KeyInfo {
                        id,
                        created: file.created,
                        kdf: file.kdf,
                        in_use,
                        problem,
                    }
                }
                Err(why) => KeyInfo {
                    id,
                    created: String::new(),
                    kdf: String::new(),
                    in_use,
                    problem: Some(why.to_string()),
                },
            });
        }
        out.sort_by(|a, b| (&a.created, &a.id).cmp(&(&b.created, &b.id)));
        Ok(out)
    }

    /// Why a well-formed key file cannot open this repository, as far as can be told
    /// without its password.
    fn key_problem(&self, file: &KeyFile) -> Option<String> {
        let encrypted = self.config().encryption != Encryption::None;
        if file.kdf == "none" && encrypted {
            return Some("no password in an encrypted repository".into());
        }
        match &file.repo {
            Some(repo) if *repo != self.config().id => {
                Some(format!("belongs to repository {repo}"))
            }
            _ => None,
        }
    }

    /// Adds a key that opens the repository with `password`; returns its id.
    pub async fn add_key(&self, password: &str, params: KdfParams) -> RepoResult<String> {
        self.check_writable()?;
        if self.config().encryption == Encryption::None {
            return Err(RepoError::KeyRefused(
                "the repository is unencrypted: it has no passwords".into(),
            ));
        }
        let file = KeyFile::wrap(
            self.keys(),
            Some(password),
            params,
            now_rfc3339(),
            &self.config().id,
        )?;
        // Prove the new key opens the repository before anyone relies on it.
        file.unwrap_for(Some(password), &self.config().id)
            .map_err(|_| RepoError::corrupted("new key", "does not unwrap"))?;
        put_key_file(self.store(), &file).await
    }

    /// Removes key `id`: never the last usable one, never the one in use without `force`.
    pub async fn remove_key(&self, id: &str, force: bool) -> RepoResult<()> {
        self.check_writable()?;
        let keys = self.list_keys().await?;
        let Some(target) = keys.iter().find(|k| k.id == id) else {
            return Err(RepoError::KeyRefused(format!(
                "no key {id:?} (see `strata key list`)"
            )));
        };
        let others = keys
            .iter()
            .filter(|k| k.id != id && k.problem.is_none())
            .count();
        if others == 0 && target.problem.is_none() {
            return Err(RepoError::KeyRefused(format!(
                "key {id} is the last usable key: removing it would lock everyone out (add another first)"
            )));
        }
        if target.in_use && !force {
            return Err(RepoError::KeyRefused(format!(
                "key {id} is the one in use (its password opened the repository): pass --force to remove it"
            )));
        }
        self.store().delete(&format!("{KEYS}{id}")).await?;
        Ok(())
    }

    /// Changes the password: adds a key for `new_password`, then removes the one in use.
    /// Returns the new key's id.
    pub async fn change_password(
        &self,
        new_password: &str,
        params: KdfParams,
    ) -> RepoResult<String> {
        let new_id = self.add_key(new_password, params).await?;
        if new_id != self.key_id() {
            self.remove_key(self.key_id(), true).await?;
        }
        Ok(new_id)
    }

    /// Rewrites every named object of a version-1 repository with its name bound as
    /// associated data (in place, same keys). Objects already of the current version are
    /// left alone, so an interrupted migration can run again; index objects over the bound
    /// (of any version) are cut at it, which deletes them once their packs are listed
    /// again. The
    /// caller migrates the objects of upper layers (pins, verification records), then
    /// calls [`Repository::finish_migration`].
    pub async fn migrate_objects(&self) -> RepoResult<u64> {
        let mut rewritten = 0;
        for (prefix, kind) in [
            (layout::INDEX, ObjectKind::Index),
            (layout::MANIFESTS, ObjectKind::Manifest),
            (layout::SUMMARIES, ObjectKind::Summary),
            (layout::ARCHIVE, ObjectKind::Archived),
            (layout::AUDIT, ObjectKind::Audit),
        ] {
            for object in self.store().list_fresh(prefix).await? {
                let bytes = self.store().get(&object.key).await?;
                // Objects of version 2 and later are bound to their names already and stay
                // as they are: their header's version says how to read them. Index objects
                // of any version over the bound are cut at it.
                let bound =
                    bytes.len() >= 7 && u16::from_le_bytes([bytes[5], bytes[6]]) as u32 >= 2;
                if bound && kind != ObjectKind::Index {
                    continue;
                }
                let mut plain = decode_object(self.cipher(), kind, &bytes, &object.key)?;
                if kind == ObjectKind::Index && self.split_over_bound(&object.key, &plain).await? {
                    rewritten += 1;
                    continue;
                }
                if bound {
                    continue;
                }
                let sealed = if kind == ObjectKind::Manifest {
                    // A whole manifest: sealed as version 3, the last version of whole
                    // manifests, with its payload in that layout (version 4 manifests
                    // are chunked, see `manifest_chunks`).
                    plain = crate::manifest::NodeManifest::from_bytes_of_version(&plain, 1)
                        .map_err(|e| RepoError::corrupted(&object.key, e))?
                        .to_bytes();
                    crate::format::encode_object_of_version(
                        self.cipher(),
                        kind,
                        &object.key,
                        &plain,
                        crate::manifest_store::CHUNKED_MANIFEST_VERSION - 1,
                    )
                } else {
                    encode_object(self.cipher(), kind, &object.key, &plain)
                };
                self.store().put(&object.key, Bytes::from(sealed)).await?;
                rewritten += 1;
            }
        }
        Ok(rewritten)
    }

    /// An index object over the bound (written before objects were bounded by
    /// blobs) is written again as bounded objects of the current version, then removed:
    /// returns whether it was. The new objects come first, so the packs stay listed
    /// throughout; a migration that stops between the two lists them twice, which a
    /// refresh reads as once, and runs again.
    async fn split_over_bound(&self, key: &str, plain: &[u8]) -> RepoResult<bool> {
        let file: crate::index::IndexFile =
            postcard::from_bytes(plain).map_err(|e| RepoError::corrupted(key, e))?;
        let counts: Vec<usize> = file.packs.iter().map(|p| p.blobs.len()).collect();
        if !crate::index::over_bound(&counts) {
            return Ok(false);
        }
        for part in crate::index::bounded_objects(file.packs) {
            let plain = postcard::to_stdvec(&part).expect("index serializes");
            let new_key = layout::new_index_key();
            let sealed = encode_object(self.cipher(), ObjectKind::Index, &new_key, &plain);
            self.store().put(&new_key, Bytes::from(sealed)).await?;
        }
        self.store().delete(key).await?;
        Ok(true)
    }

    /// Seals an object of an upper layer during migration (the repository is still
    /// version 1, so [`Repository::seal_object`] would refuse).
    pub fn seal_for_migration(&self, kind: ObjectKind, name: &str, payload: &[u8]) -> Vec<u8> {
        encode_object(self.cipher(), kind, name, payload)
    }

    /// Ends a migration: stores the key of `password` bound to the repository, removes the
    /// unbound key it replaces (best effort: without delete rights it stays, still usable),
    /// then writes the version-2 config with its MAC, last. Returns the new key's id.
    pub async fn finish_migration(
        &self,
        password: Option<&str>,
        params: KdfParams,
    ) -> RepoResult<String> {
        let mut config = self.config().clone();
        if config.version >= 2 {
            // Keys of version 2 are bound to the repository already: only the config's
            // version (covered by its MAC) changes.
            config.version = FORMAT_VERSION;
            config.seal_mac(self.keys());
            let json = serde_json::to_vec_pretty(&config).expect("config serializes");
            self.store().put(layout::CONFIG, Bytes::from(json)).await?;
            return Ok(self.key_id().to_string());
        }
        let file = KeyFile::wrap(self.keys(), password, params, now_rfc3339(), &config.id)?;
        let new_id = put_key_file(self.store(), &file).await?;
        if new_id != self.key_id() {
            if let Err(e) = self
                .store()
                .delete(&format!("{KEYS}{}", self.key_id()))
                .await
            {
                warn(format!(
                    "cannot remove the version-1 key {}: {e}",
                    self.key_id()
                ));
            }
        }
        config.version = FORMAT_VERSION;
        config.seal_mac(self.keys());
        let json = serde_json::to_vec_pretty(&config).expect("config serializes");
        self.store().put(layout::CONFIG, Bytes::from(json)).await?;
        Ok(new_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKeys;
    use crate::key_files::*;
    use crate::InitOptions;
    use std::sync::Arc;
    use strata_store::DynStore;

    const FAST: KdfParams = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    async fn new_repo(dir: &std::path::Path) -> (DynStore, Arc<Repository>) {
        let store: DynStore = Arc::new(strata_store::LocalStore::new(dir));
        let options = InitOptions {
            kdf: FAST,
            ..InitOptions::default()
        };
        let repo = Repository::init(store.clone(), Some("one"), options)
            .await
            .unwrap();
        (store, repo)
    }

    /// The Argon2 derivations `f` runs on this thread.
    async fn derivations<T>(f: impl std::future::Future<Output = T>) -> (T, u64) {
        let before = crate::crypto::DERIVATIONS.with(|d| d.get());
        let out = f.await;
        (out, crate::crypto::DERIVATIONS.with(|d| d.get()) - before)
    }

    /// A key file someone who can write the bucket (but has no password) plants under
    /// `keys/<name>`: bound to the repository, its own master keys, parameters `params`.
    async fn plant(store: &DynStore, repo: &Repository, name: &str, params: KdfParams) {
        let file = KeyFile::wrap(
            &MasterKeys::generate(),
            Some("the attacker's"),
            params,
            now_rfc3339(),
            &repo.config().id,
        )
        .unwrap();
        let json = serde_json::to_vec(&file).unwrap();
        store
            .put(&format!("{KEYS}{name}"), Bytes::from(json))
            .await
            .unwrap();
    }

    /// Above the default parameters (more memory), yet quick to plant.
    const COSTLY: KdfParams = KdfParams {
        memory_kib: 64 * 1024 + 8,
        iterations: 1,
        parallelism: 1,
    };

    #[tokio::test]
    async fn a_planted_costly_key_is_never_derived_while_another_key_opens() {
        let dir = tempfile::tempdir().unwrap();
        let (store, repo) = new_repo(dir.path()).await;
        assert!(COSTLY.costs_more_than_default() && !FAST.costs_more_than_default());
        assert!(!KdfParams::default().costs_more_than_default());
        // Sorts before any real id (hex).
        plant(&store, &repo, "0-planted", COSTLY).await;
        let (opened, derived) =
            derivations(Repository::open_catalog(store.clone(), Some("one"))).await;
        assert_eq!(opened.unwrap().key_id(), repo.key_id());
        assert_eq!(derived, 1, "only the right key was derived");

        // When no cheap key opens, the costly one is the last resort (a key of that cost
        // that is really the user's still works).
        let slow = repo.add_key("slow", COSTLY).await.unwrap();
        let (opened, derived) =
            derivations(Repository::open_catalog(store.clone(), Some("slow"))).await;
        assert_eq!(opened.unwrap().key_id(), slow);
        assert_eq!(derived, 3, "the cheap key, then both costly ones in order");
        // Remembered, it is tried first.
        let choice = KeyChoice {
            accept: None,
            remembered: Some(slow.clone()),
        };
        let (opened, derived) = derivations(Repository::open_catalog_with(
            store.clone(),
            Some("slow"),
            &choice,
        ))
        .await;
        assert_eq!(opened.unwrap().key_id(), slow);
        assert_eq!(derived, 1);
    }

    #[tokio::test]
    async fn keys_outside_the_accepted_ids_are_skipped_before_any_derivation() {
        let dir = tempfile::tempdir().unwrap();
        let (store, repo) = new_repo(dir.path()).await;
        // Cheap keys, sorting first: the order alone would try them all.
        for name in ["0-a", "0-b", "0-c"] {
            plant(&store, &repo, name, FAST).await;
        }
        let choice = KeyChoice {
            accept: Some(vec![repo.key_id().to_string()]),
            remembered: None,
        };
        let (opened, derived) = derivations(Repository::open_catalog_with(
            store.clone(),
            Some("one"),
            &choice,
        ))
        .await;
        assert_eq!(opened.unwrap().key_id(), repo.key_id());
        assert_eq!(derived, 1);
        // Without the list, the remembered key goes first.
        let choice = KeyChoice {
            accept: None,
            remembered: Some(repo.key_id().to_string()),
        };
        let (_, derived) = derivations(Repository::open_catalog_with(
            store.clone(),
            Some("one"),
            &choice,
        ))
        .await;
        assert_eq!(derived, 1);
        // A list that names only other keys opens nothing: a wrong password, as far as
        // can be told.
        let choice = KeyChoice {
            accept: Some(vec!["0-a".into()]),
            remembered: None,
        };
        assert!(matches!(
            Repository::open_catalog_with(store.clone(), Some("one"), &choice).await,
            Err(RepoError::WrongPassword(_))
        ));
    }

    #[tokio::test]
    async fn keys_are_added_removed_and_rotated_without_locking_anyone_out() {
        let dir = tempfile::tempdir().unwrap();
        let (store, repo) = new_repo(dir.path()).await;
        let first = repo.key_id().to_string();
        // The only key cannot go, with or without force.
        for force in [false, true] {
            assert!(matches!(
                repo.remove_key(&first, force).await,
                Err(RepoError::KeyRefused(_))
            ));
        }
        let second = repo.add_key("two", FAST).await.unwrap();
        let two = Repository::open_catalog(store.clone(), Some("two"))
            .await
            .unwrap();
        assert_eq!(two.key_id(), second);
        let listed = two.list_keys().await.unwrap();
        assert_eq!(listed.len(), 2);
        assert!(listed
            .iter()
            .all(|k| k.problem.is_none() && k.kdf == "argon2id"));
        assert_eq!(listed.iter().filter(|k| k.in_use).count(), 1);
        // The key in use only with force.
        assert!(matches!(
            two.remove_key(&second, false).await,
            Err(RepoError::KeyRefused(_))
        ));
        assert!(matches!(
            two.remove_key("nope", true).await,
            Err(RepoError::KeyRefused(_))
        ));
        two.remove_key(&first, false).await.unwrap();
        assert!(matches!(
            Repository::open_catalog(store.clone(), Some("one")).await,
            Err(RepoError::WrongPassword(_))
        ));
        // passwd: the new password opens it, the old one no longer does.
        let third = two.change_password("three", FAST).await.unwrap();
        let three = Repository::open_catalog(store.clone(), Some("three"))
            .await
            .unwrap();
        assert_eq!(three.key_id(), third);
        assert!(Repository::open_catalog(store.clone(), Some("two"))
            .await
            .is_err());
        assert_eq!(three.list_keys().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_key_of_another_repository_or_under_another_config_never_wins() {
        let dir = tempfile::tempdir().unwrap();
        let (store, repo) = new_repo(dir.path()).await;
        // An attacker's own repository with the same password, its key copied over: it
        // unwraps, but cannot produce this config's MAC (nor matches its id).
        let other_dir = tempfile::tempdir().unwrap();
        let (other_store, _) = new_repo(other_dir.path()).await;
        for object in other_store.list_fresh(KEYS).await.unwrap() {
            let bytes = other_store.get(&object.key).await.unwrap();
            store.put("keys/0000injected", bytes).await.unwrap();
        }
        let opened = Repository::open_catalog(store.clone(), Some("one"))
            .await
            .unwrap();
        assert_eq!(opened.key_id(), repo.key_id());
        // The same with the binding forged to this repository's id: the MAC decides.
        let attacker = MasterKeys::generate();
        let forged =
            KeyFile::wrap(&attacker, Some("one"), FAST, "x".into(), &repo.config().id).unwrap();
        store
            .put(
                "keys/0001forged",
                serde_json::to_vec(&forged).unwrap().into(),
            )
            .await
            .unwrap();
        let opened = Repository::open_catalog(store.clone(), Some("one"))
            .await
            .unwrap();
        assert_eq!(opened.keys().id_key, repo.keys().id_key);
        // Only the forged key unwraps with this password: refused as not authentic.
        let forged = KeyFile::wrap(
            &attacker,
            Some("guess"),
            FAST,
            "x".into(),
            &repo.config().id,
        )
        .unwrap();
        store
            .put(
                "keys/0002forged",
                serde_json::to_vec(&forged).unwrap().into(),
            )
            .await
            .unwrap();
        assert!(matches!(
            Repository::open_catalog(store.clone(), Some("guess")).await,
            Err(RepoError::ConfigNotAuthentic(_))
        ));
    }

    #[tokio::test]
    async fn a_version_1_repository_is_read_only_and_refuses_a_downgraded_config() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = new_repo(dir.path()).await;
        // A v2 config rewritten as version 1: the bound key gives the downgrade away.
        let mut config: serde_json::Value =
            serde_json::from_slice(&store.get("config").await.unwrap()).unwrap();
        config["version"] = 1.into();
        config.as_object_mut().unwrap().remove("mac");
        store
            .put("config", serde_json::to_vec(&config).unwrap().into())
            .await
            .unwrap();
        assert!(matches!(
            Repository::open_catalog(store.clone(), Some("one")).await,
            Err(RepoError::ConfigNotAuthentic(_))
        ));
    }

    /// An index object over the bound (as written before objects were bounded by blobs)
    /// is cut at it by a migration; the others stay as they are, every blob listed once.
    #[tokio::test]
    async fn a_migration_leaves_no_index_object_over_the_bound() {
        use crate::index::{IndexFile, IndexedPack, MAX_BLOBS_PER_OBJECT};
        let dir = tempfile::tempdir().unwrap();
        let repo = crate::test_repo::plain(dir.path()).await;
        let id = |n: u64| crate::BlobId(*blake3::hash(&n.to_le_bytes()).as_bytes());
        let pack = |n: u64, blobs: u64| IndexedPack {
            id: id(1 << 50 | n),
            size: 16 << 20,
            blobs: (0..blobs)
                .map(|b| crate::pack::PackEntry {
                    id: id(n << 32 | b),
                    offset: b * 100,
                    length: 90,
                    raw_length: 100,
                    compressed: false,
                })
                .collect(),
        };
        let over = IndexFile {
            packs: (0..10).map(|n| pack(n, 3_000)).collect(),
        };
        let within = IndexFile {
            packs: vec![pack(100, 10)],
        };
        let over_key = repo.write_index(&over).await.unwrap();
        let within_key = repo.write_index(&within).await.unwrap();
        assert_eq!(crate::test_repo::objects_over_bound(&repo).await.len(), 1);
        assert_eq!(repo.migrate_objects().await.unwrap(), 1);
        assert_eq!(
            crate::test_repo::objects_over_bound(&repo).await,
            Vec::new()
        );
        let keys: Vec<String> = repo
            .list_index_objects()
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert!(
            !keys.contains(&over_key),
            "the object over the bound is gone"
        );
        assert!(keys.contains(&within_key), "the one within it stays");
        assert_eq!(
            keys.len(),
            3,
            "objects of five packs of 3,000 blobs, and the small one"
        );
        repo.reload_index().await.unwrap();
        assert_eq!(repo.index().len(), 30_010);
        const { assert!(30_000 > MAX_BLOBS_PER_OBJECT) };
    }
}
