//! Opening, creating and reading a repository.

use crate::chunker::{Chunker, ChunkerParams};
use crate::compress::{decompress, DecompressError};
use crate::crypto::{Cipher, KdfParams, KeyFile, MasterKeys};
use crate::format::{
    decode_object, encode_object, now_rfc3339, Encryption, ObjectKind, RepoConfig, FORMAT_VERSION,
    OLDEST_READABLE_VERSION,
};
use crate::index::{BlobIndex, BlobLocation, IndexFile};
use crate::key_files::KeyChoice;
use crate::layout;
use crate::layout::pack_key;
use crate::shared_index::SharedIndex;
use crate::summary::BackupSummary;
use crate::{BlobId, RepoError, RepoResult};
use bytes::Bytes;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use strata_store::{DynStore, ObjectMeta};

/// Choices made once, when a repository is created.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Whether the repository seals its objects and blobs.
    pub encryption: Encryption,
    /// Argon2id cost of the first key's password.
    pub kdf: KdfParams,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            encryption: Encryption::Aes256Gcm,
            kdf: KdfParams::default(),
        }
    }
}

/// An open repository: its store, keys and index.
pub struct Repository {
    store: DynStore,
    config: RepoConfig,
    keys: MasterKeys,
    cipher: Cipher,
    /// The `keys/<id>` the password unwrapped.
    key_id: String,
    /// This process's view of the index, shared by every opening of the repository.
    index: Arc<SharedIndex>,
    /// Index objects the last load skipped because they do not decode.
    damaged_index: RwLock<Vec<DamagedObject>>,
    /// Damaged objects already warned about, so a reload does not repeat the warning.
    warned: Mutex<std::collections::HashSet<String>>,
    /// Listing pages read and checked, by key (they never change under their key): a
    /// process that lists often (a server) decodes each page once.
    pub(crate) listing_objects: crate::listing_contents::DecodedCache,
    /// The compression dictionaries loaded, shared like the index view (see
    /// `crate::dictionary_store`).
    pub(crate) dictionaries: Arc<RwLock<Arc<crate::dictionary::Dictionaries>>>,
}

/// A repository object that exists but does not decode (failed authentication, bad
/// framing, wrong name inside): it costs what depends on it, not the whole repository.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct DamagedObject {
    /// The object's key, e.g. `summaries/20261122T055350Z-3fa1b2c4`.
    pub key: String,
    /// Why it does not decode (one line).
    pub reason: String,
}

impl DamagedObject {
    pub(crate) fn new(key: &str, err: &RepoError) -> Self {
        DamagedObject {
            key: key.to_string(),
            reason: err.to_string(),
        }
    }

    /// The backup a damaged summary belonged to.
    pub fn backup(&self) -> Option<&str> {
        self.key.strip_prefix(layout::SUMMARIES)
    }
}

impl RepoError {
    /// Whether the error says the object itself is damaged (as opposed to the storage
    /// failing or the password being wrong): such an object is skipped and reported,
    /// not fatal to everything else.
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            RepoError::Corrupted { .. }
                | RepoError::UnsupportedVersion { .. }
                | RepoError::MissingDictionary { .. }
        )
    }
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Repository({}, {})",
            self.config.id,
            self.store.describe()
        )
    }
}

impl Repository {
    /// Creates a repository at an empty location. `password` is required unless
    /// `options.encryption` is `None`.
    pub async fn init(
        store: DynStore,
        password: Option<&str>,
        options: InitOptions,
    ) -> RepoResult<Arc<Repository>> {
        let location = store.describe();
        match store.get(layout::CONFIG).await {
            Ok(_) => return Err(RepoError::AlreadyInitialized(location)),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        let password = match options.encryption {
            Encryption::None => None,
            _ => Some(password.ok_or_else(|| RepoError::PasswordRequired(location.clone()))?),
        };
        let mut id = [0u8; 8];
        getrandom::getrandom(&mut id).expect("the OS random source is available");
        let mut config = RepoConfig {
            format: "strata".into(),
            version: FORMAT_VERSION,
            id: hex::encode(id),
            encryption: options.encryption,
            chunker: ChunkerParams::GENERIC,
            page_chunker: ChunkerParams::PAGES,
            created: now_rfc3339(),
            mac: None,
        };
        let keys = MasterKeys::generate();
        config.seal_mac(&keys);
        let key_file = KeyFile::wrap(&keys, password, options.kdf, now_rfc3339(), &config.id)?;
        // Keys first: a config without a key would be an unusable repository.
        let key_id = crate::key_files::put_key_file(&store, &key_file).await?;
        let config_json = serde_json::to_vec_pretty(&config).expect("config serializes");
        match store
            .put_if_absent(layout::CONFIG, Bytes::from(config_json))
            .await
        {
            Ok(()) => {}
            Err(strata_store::StoreError::AlreadyExists { .. }) => {
                // Another init created the repository since we looked: our key file
                // wraps keys of a repository that does not exist, so it goes.
                let removed = store.delete(&layout::key_key(&key_id)).await;
                return Err(RepoError::InitRaced {
                    location,
                    key_file: layout::key_key(&key_id),
                    removed: removed.is_ok(),
                });
            }
            Err(e) => return Err(e.into()),
        }
        Ok(Arc::new(Repository::assemble(store, config, keys, key_id)))
    }

    /// Opens an existing repository and loads its index.
    pub async fn open(store: DynStore, password: Option<&str>) -> RepoResult<Arc<Repository>> {
        Repository::open_with(store, password, &KeyChoice::default()).await
    }

    /// [`Repository::open`], trying key files as `choice` says.
    pub async fn open_with(
        store: DynStore,
        password: Option<&str>,
        choice: &KeyChoice,
    ) -> RepoResult<Arc<Repository>> {
        let repo = Repository::open_catalog_with(store, password, choice).await?;
        repo.reload_index().await?;
        Ok(repo)
    }

    /// The repository's `config` object, readable without a password: its id names
    /// per-repository local state before (or instead of) opening it.
    pub async fn read_config(store: &DynStore) -> RepoResult<RepoConfig> {
        let location = store.describe();
        match store.get(layout::CONFIG).await {
            Ok(raw) => parse_config(&raw, &location),
            Err(e) if e.is_not_found() => Err(RepoError::NotARepository(location)),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens a repository for reading summaries and manifests only, without loading the
    /// index: listing backups then costs one LIST and the summary reads.
    pub async fn open_catalog(
        store: DynStore,
        password: Option<&str>,
    ) -> RepoResult<Arc<Repository>> {
        Repository::open_catalog_with(store, password, &KeyChoice::default()).await
    }

    /// [`Repository::open_catalog`], trying key files as `choice` says.
    pub async fn open_catalog_with(
        store: DynStore,
        password: Option<&str>,
        choice: &KeyChoice,
    ) -> RepoResult<Arc<Repository>> {
        let location = store.describe();
        let raw = match store.get(layout::CONFIG).await {
            Ok(raw) => raw,
            Err(e) if e.is_not_found() => return Err(RepoError::NotARepository(location)),
            Err(e) => return Err(e.into()),
        };
        let config = parse_config(&raw, &location)?;
        let (keys, key_id) =
            crate::key_files::unlock(&store, &config, password, &location, choice).await?;
        Ok(Arc::new(Repository::assemble(store, config, keys, key_id)))
    }

    fn assemble(
        store: DynStore,
        config: RepoConfig,
        keys: MasterKeys,
        key_id: String,
    ) -> Repository {
        let cipher =
            Cipher::new(config.encryption, &keys).accepting_v1_objects(config.version == 1);
        let index = SharedIndex::of(&config.id, &store.describe());
        Repository {
            store,
            config,
            keys,
            cipher,
            key_id,
            damaged_index: RwLock::new(Vec::new()),
            warned: Mutex::new(Default::default()),
            listing_objects: Default::default(),
            dictionaries: index.dictionaries.clone(),
            index,
        }
    }

    /// The id of the key (`keys/<id>`) this repository was opened with.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Fails unless this strata may write to the repository: a repository of an older
    /// version is read-only until migrated: its older writers do not know what this one
    /// keeps up to date (version 1: config and objects not authenticated; version 2:
    /// extended attributes; version 3: the leveled index and the backup listing), and the
    /// config's version is what keeps them out once this one has written.
    pub fn check_writable(&self) -> RepoResult<()> {
        if self.config.version < FORMAT_VERSION {
            return Err(RepoError::NeedsMigration(self.store.describe()));
        }
        Ok(())
    }

    /// Seals a named object (see [`encode_object`]) after [`Repository::check_writable`].
    pub fn seal_object(&self, kind: ObjectKind, name: &str, payload: &[u8]) -> RepoResult<Vec<u8>> {
        self.check_writable()?;
        Ok(encode_object(&self.cipher, kind, name, payload))
    }

    /// The repository's plain configuration.
    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// The storage the repository lives in.
    pub fn store(&self) -> &DynStore {
        &self.store
    }

    /// Every stored pack file, listed fresh from the store (for gc, repair and verify).
    pub async fn list_packs(&self) -> RepoResult<Vec<ObjectMeta>> {
        Ok(self.store.list_fresh(layout::DATA).await?)
    }

    /// Every stored index object, listed fresh from the store (not the loaded index).
    pub async fn list_index_objects(&self) -> RepoResult<Vec<ObjectMeta>> {
        Ok(self.store.list_fresh(layout::INDEX).await?)
    }

    /// The secret keys (for naming blobs).
    pub fn keys(&self) -> &MasterKeys {
        &self.keys
    }

    /// The cipher that seals blobs and objects.
    pub fn cipher(&self) -> &Cipher {
        &self.cipher
    }

    /// The chunker for ordinary files and the one for page-structured files.
    pub fn chunkers(&self) -> (Chunker, Chunker) {
        (
            Chunker::new(self.config.chunker, self.keys.chunker_seed),
            Chunker::new(self.config.page_chunker, self.keys.chunker_seed),
        )
    }

    /// Read access to this process's index view (empty until [`Repository::reload_index`]
    /// or [`Repository::open`] loaded it).
    pub fn index(&self) -> RwLockReadGuard<'_, Box<dyn BlobIndex>> {
        self.index.view.read().expect("index lock poisoned")
    }

    /// Reads every `index/` object again. An object that does not decode is skipped with
    /// a warning and recorded (see [`Repository::damaged_index`]): the blobs of the packs it
    /// listed are unknown until `strata repair index` rebuilds it from the pack headers,
    /// and everything that does not need them keeps working. One removed between the
    /// listing and the read (replaced by garbage collection) is skipped silently.
    ///
    /// The view is brought up to date, not rebuilt: one listing, then only the objects it
    /// has not read yet; those gone from the listing are forgotten (their packs stop
    /// being live unless another object lists them).
    pub async fn reload_index(&self) -> RepoResult<()> {
        let mut attached = self.index.refreshing.lock().await;
        self.index.attach(&mut attached).await;
        self.index.adopt_newer().await;
        // Packs garbage collection condemned: readers still find their blobs, writers
        // store them again (see `crate::condemned`). Listed before the index objects: a
        // condemnation gone by then was swept, and its sweep had already rewritten the
        // index objects without the packs it deleted (the other order could see a pack
        // still listed and its condemnation already gone).
        let condemned: std::collections::HashSet<crate::id::PackId> = self
            .condemnations()
            .await?
            .0
            .into_iter()
            .flat_map(|found| found.condemnation.packs)
            .collect();
        // The view names each object with its size and time as listed: an object rewritten
        // in place (damaged, or put back) is read again, never answered from the view.
        let listed: std::collections::HashMap<String, String> = self
            .store
            .list_fresh(layout::INDEX)
            .await?
            .into_iter()
            .map(|o| (stamped(&o), o.key))
            .collect();
        let (new, gone): (Vec<String>, Vec<String>) = {
            let view = self.index();
            let mut new: Vec<String> = listed
                .keys()
                .filter(|k| !view.has_object(k))
                .cloned()
                .collect();
            new.sort();
            let gone = view
                .object_keys()
                .into_iter()
                .filter(|k| !listed.contains_key(k))
                .collect();
            (new, gone)
        };
        let mut damaged = Vec::new();
        // A refresh of many objects (a new host's first) keeps the allocator from holding
        // several objects' buffers (see `crate::allocator`).
        let _apart = (new.len() >= LONG_REFRESH).then(crate::allocator::LargeBlocksApart::new);
        for stamp in &new {
            let key = &listed[stamp];
            // Decoded pack by pack into the view: a first refresh holds one object's
            // bytes and one pack's entries at a time.
            let added = self.read_index_plain(key).await.and_then(|plain| {
                let mut view = self.index.view.write().expect("index lock poisoned");
                view.add_encoded(stamp, &plain)
                    .map_err(|e| RepoError::corrupted(key, e))?;
                Ok(view.pending_records())
            });
            match added {
                Ok(pending) => {
                    // A first refresh of a large repository puts what it read on disk as
                    // it goes (a new host's first command holds no more than a later one).
                    if pending >= SPILL_WHILE_READING {
                        self.index.spill().await;
                    }
                }
                Err(RepoError::Store(e)) if e.is_not_found() => {}
                Err(err) if err.is_damage() => {
                    self.warn_damaged(
                        key,
                        &format!(
                            "{err}; skipped: the data of its packs is unknown until `strata repair index`"
                        ),
                    );
                    damaged.push(DamagedObject::new(key, &err));
                }
                Err(err) => return Err(err),
            }
        }
        {
            let mut view = self.index.view.write().expect("index lock poisoned");
            for key in &gone {
                view.forget_object(key);
            }
            view.set_condemned(&condemned);
        }
        if !new.is_empty() || !gone.is_empty() {
            self.index.commit().await;
        }
        *self.damaged_index.write().expect("index lock poisoned") = damaged;
        // Listed after the index objects: a dictionary is stored before any blob
        // compressed with it, so every blob of an object read above finds its own.
        self.reload_dictionaries().await
    }

    /// The index objects the last index load skipped because they do not decode.
    pub fn damaged_index(&self) -> Vec<DamagedObject> {
        self.damaged_index
            .read()
            .expect("index lock poisoned")
            .clone()
    }

    /// Prints a warning about a damaged object once per process and object.
    pub(crate) fn warn_damaged(&self, key: &str, text: &str) {
        if self
            .warned
            .lock()
            .expect("warning set poisoned")
            .insert(key.to_string())
        {
            eprintln!("strata: warning: {text}");
        }
    }

    /// Reads and decodes one `index/` object (for repairs, which read them one at a time).
    pub async fn read_index(&self, key: &str) -> RepoResult<IndexFile> {
        self.read_index_file(key).await
    }

    async fn read_index_file(&self, key: &str) -> RepoResult<IndexFile> {
        let plain = self.read_index_plain(key).await?;
        postcard::from_bytes(&plain).map_err(|e| RepoError::corrupted(key, e))
    }

    /// One `index/` object's plaintext (postcard of an [`IndexFile`]): the object is
    /// opened where it lies, so it is held twice at most (sealed, and decompressed).
    async fn read_index_plain(&self, key: &str) -> RepoResult<Vec<u8>> {
        let bytes = self.store.get(key).await?;
        let compressed = crate::format::open_object(&self.cipher, ObjectKind::Index, bytes, key)?;
        crate::format::decompress_object(&compressed, key)
    }

    /// One `index/` object (a key as listed under `index/`), decoded: what reads the
    /// index object by object, holding one at a time.
    pub async fn read_index_object(&self, key: &str) -> RepoResult<IndexFile> {
        self.read_index_file(key).await
    }

    /// Every `index/` object with its content, for garbage collection.
    pub async fn index_files(&self) -> RepoResult<Vec<(String, IndexFile)>> {
        let mut out = Vec::new();
        for object in self.store.list(layout::INDEX).await? {
            let file = self.read_index_file(&object.key).await?;
            out.push((object.key, file));
        }
        Ok(out)
    }

    /// Writes an index object without touching the in-memory index; returns its key. The
    /// name is random (it is bound into the sealed object, so it cannot be its hash).
    pub async fn write_index(&self, file: &IndexFile) -> RepoResult<String> {
        let plain = postcard::to_stdvec(file).expect("index serializes");
        let key = layout::new_index_key();
        let bytes = self.seal_object(ObjectKind::Index, &key, &plain)?;
        self.store.put(&key, Bytes::from(bytes)).await?;
        Ok(key)
    }

    /// Stores index objects for new packs (cut at the bound, see
    /// [`crate::index::fits`]) and adds them to the in-memory index. Call only
    /// after the packs are stored.
    pub async fn add_index(&self, file: IndexFile) -> RepoResult<()> {
        for file in crate::index::bounded_objects(file.packs) {
            let key = self.write_index(&file).await?;
            self.index
                .view
                .write()
                .expect("index lock poisoned")
                .add_object(&key, &file);
        }
        self.index.commit().await;
        Ok(())
    }

    /// Reads, authenticates, decompresses and hash-checks one blob. A pack found gone
    /// (garbage collection moved the blob and deleted it after this view was read) is
    /// looked up again in the view brought up to date (see [`Repository::again_if_moved`]).
    pub async fn read_blob(&self, id: &BlobId) -> RepoResult<Vec<u8>> {
        self.again_if_moved(|| self.read_blob_once(id)).await
    }

    /// Runs `read` again once with the index view brought up to date when it found a pack
    /// gone. Garbage collection repacks the live blobs of mostly-garbage packs into new
    /// packs, indexes those, and only then deletes the old ones: a reader whose view
    /// predates that finds the blob in the new pack after a refresh. A blob that is gone
    /// for good (its backup deleted) fails the same way again.
    pub async fn again_if_moved<T, F, Fut>(&self, read: F) -> RepoResult<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = RepoResult<T>>,
    {
        match read().await {
            Err(RepoError::Store(e)) if e.is_not_found() && !test_no_relookup() => {
                self.reload_index().await?;
                read().await
            }
            // A dictionary stored after this view was read (a catalog opening reads none
            // until a blob needs one).
            Err(RepoError::MissingDictionary { .. }) => {
                self.reload_dictionaries().await?;
                read().await
            }
            other => other,
        }
    }

    async fn read_blob_once(&self, id: &BlobId) -> RepoResult<Vec<u8>> {
        let location = self
            .index()
            .get(id)
            .ok_or_else(|| RepoError::MissingBlob(id.to_hex()))?;
        let (pack, _) = self.index().pack(location.pack);
        let range = location.offset..location.offset + location.length as u64;
        let sealed = self.store.get_range(&pack_key(&pack), range).await?;
        self.open_blob(id, &sealed, &location)
    }

    /// Reads several blobs in order, fetching neighbours that sit close together in the
    /// same pack with one ranged read: a restore from object storage then makes a request
    /// per few MiB, not per blob.
    pub async fn read_blobs(&self, ids: &[BlobId]) -> RepoResult<Vec<Vec<u8>>> {
        self.again_if_moved(|| self.read_blobs_once(ids)).await
    }

    async fn read_blobs_once(&self, ids: &[BlobId]) -> RepoResult<Vec<Vec<u8>>> {
        /// Largest span fetched at once.
        const MAX_SPAN: u64 = 8 * 1024 * 1024;
        let located = {
            let index = self.index();
            ids.iter()
                .map(|id| {
                    let location = index
                        .get(id)
                        .ok_or_else(|| RepoError::MissingBlob(id.to_hex()))?;
                    Ok((*id, index.pack(location.pack).0, location))
                })
                .collect::<RepoResult<Vec<_>>>()?
        };
        let mut out = Vec::with_capacity(ids.len());
        let mut i = 0;
        while i < located.len() {
            let (_, pack, first) = located[i];
            let (mut start, mut end) = (first.offset, first.offset + first.length as u64);
            let mut wanted = first.length as u64;
            let mut j = i + 1;
            while let Some((_, next_pack, next)) = located.get(j) {
                let (s, e) = (
                    start.min(next.offset),
                    end.max(next.offset + next.length as u64),
                );
                // Same pack, bounded span, and mostly bytes we want (not a far jump).
                if *next_pack != pack
                    || e - s > MAX_SPAN
                    || e - s > 2 * (wanted + next.length as u64) + (1 << 20)
                {
                    break;
                }
                (start, end) = (s, e);
                wanted += next.length as u64;
                j += 1;
            }
            let bytes = self.store.get_range(&pack_key(&pack), start..end).await?;
            for (id, _, location) in &located[i..j] {
                let at = (location.offset - start) as usize;
                let sealed = bytes
                    .get(at..at + location.length as usize)
                    .ok_or_else(|| {
                        RepoError::corrupted(format!("pack {}", pack.short()), "short read")
                    })?;
                out.push(self.open_blob(id, sealed, location)?);
            }
            i = j;
        }
        Ok(out)
    }

    /// Turns sealed blob bytes back into verified plaintext.
    pub fn open_blob(
        &self,
        id: &BlobId,
        sealed: &[u8],
        location: &BlobLocation,
    ) -> RepoResult<Vec<u8>> {
        let what = || format!("blob {}", id.short());
        let body = self.cipher.open(sealed, &what())?;
        // The raw length comes from the index: bounded by the largest chunk the config
        // allows, so a crafted index cannot make this allocate gigabytes.
        if location.raw_length > MAX_BLOB_RAW {
            return Err(RepoError::corrupted(what(), "raw length out of range"));
        }
        let plain = if location.compressed {
            let dictionaries = self.dictionaries();
            decompress(&body, location.raw_length as usize, &dictionaries).map_err(|e| match e {
                DecompressError::MissingDictionary(dictionary) => RepoError::MissingDictionary {
                    blob: id.short(),
                    id: dictionary,
                },
                DecompressError::Invalid(e) => RepoError::corrupted(what(), e),
            })?
        } else {
            body
        };
        if self.keys.blob_id(&plain) != *id {
            return Err(RepoError::corrupted(
                what(),
                "content does not match its id",
            ));
        }
        Ok(plain)
    }

    /// Writes the summary of a backup; this is what makes a backup visible. Then its
    /// entry in the backup listing (see [`crate::listing`]) and a new listing generation
    /// (see [`crate::listing::generation`]): a failure there is only a warning, as readers
    /// find a summary without an entry and read it by itself.
    pub async fn save_summary(&self, summary: &BackupSummary) -> RepoResult<()> {
        let json = serde_json::to_vec(summary).expect("summaries serialize");
        let key = layout::summary_key(&summary.name);
        let bytes = self.seal_object(ObjectKind::Summary, &key, &json)?;
        self.store.put(&key, Bytes::from(bytes)).await?;
        if let Err(e) = self.save_listing_entry(summary).await {
            eprintln!(
                "strata: warning: backup {}: its listing entry was not written ({e}); listings read its summary instead",
                summary.name
            );
        }
        self.bump_listing_generation_or_warn().await;
        Ok(())
    }

    /// Reads one summary.
    pub async fn load_summary(&self, name: &str) -> RepoResult<BackupSummary> {
        let key = layout::summary_key(name);
        let bytes = match self.store.get(&key).await {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Err(RepoError::NoSuchBackup(name.to_string())),
            Err(e) => return Err(e.into()),
        };
        let plain = decode_object(&self.cipher, ObjectKind::Summary, &bytes, &key)?;
        let summary: BackupSummary =
            serde_json::from_slice(&plain).map_err(|e| RepoError::corrupted(&key, e))?;
        if summary.name != name {
            return Err(RepoError::corrupted(
                key,
                format!("holds the summary of backup {:?}", summary.name),
            ));
        }
        Ok(summary)
    }

    /// Every readable backup, oldest first, and the summaries that do not decode. For
    /// showing and using what is intact; anything that deletes data on the strength of a
    /// listing (garbage collection, retention) uses the strict [`Repository::list_backups`].
    pub async fn scan_backups(&self) -> RepoResult<(Vec<BackupSummary>, Vec<DamagedObject>)> {
        let mut out = Vec::new();
        let mut damaged = Vec::new();
        for object in self.store.list(layout::SUMMARIES).await? {
            let name = object.key.trim_start_matches(layout::SUMMARIES);
            match self.load_summary(name).await {
                Ok(summary) => out.push(summary),
                // Deleted since the listing.
                Err(RepoError::NoSuchBackup(_)) => {}
                Err(err) if err.is_damage() => {
                    damaged.push(DamagedObject::new(&object.key, &err));
                }
                Err(err) => return Err(err),
            }
        }
        out.sort_by(|a, b| (&a.started, &a.name).cmp(&(&b.started, &b.name)));
        damaged.sort_by(|a, b| a.key.cmp(&b.key));
        Ok((out, damaged))
    }

    /// Reads the header of a stored pack of `size` bytes with two ranged reads (trailer,
    /// then header), without downloading the pack.
    pub async fn read_pack_header(
        &self,
        pack: &crate::id::PackId,
        size: u64,
    ) -> RepoResult<Vec<crate::pack::PackEntry>> {
        use crate::pack::{decode_header, header_start, TRAILER_LEN};
        let key = pack_key(pack);
        let what = format!("header of pack {key}");
        if size < TRAILER_LEN as u64 {
            return Err(RepoError::corrupted(what, "no pack trailer (truncated?)"));
        }
        let len_at = size - TRAILER_LEN as u64;
        let trailer = self.store.get_range(&key, len_at..size).await?;
        let start = header_start(&trailer, size, &what)?;
        let sealed = self.store.get_range(&key, start..len_at).await?;
        if sealed.len() as u64 != len_at - start {
            return Err(RepoError::corrupted(what, "short read"));
        }
        decode_header(&self.cipher, &sealed, start, &what)
    }

    /// Every backup, oldest first (by start time, then name). Fails on any summary that
    /// does not decode: see [`Repository::scan_backups`] for the tolerant form.
    pub async fn list_backups(&self) -> RepoResult<Vec<BackupSummary>> {
        let mut out = Vec::new();
        for object in self.store.list(layout::SUMMARIES).await? {
            let name = object.key.trim_start_matches(layout::SUMMARIES);
            out.push(self.load_summary(name).await?);
        }
        out.sort_by(|a, b| (&a.started, &a.name).cmp(&(&b.started, &b.name)));
        Ok(out)
    }

    /// Removes a backup: its summary first (so it disappears at once), then its manifests.
    /// The data it alone referenced stays until garbage collection.
    pub async fn delete_backup(&self, name: &str) -> RepoResult<()> {
        let summary = self.load_summary(name).await?;
        self.store.delete(&layout::summary_key(name)).await?;
        self.delete_listing_entry(&summary).await?;
        for node in &summary.nodes {
            self.store.delete(&manifest_key(name, &node.name)).await?;
        }
        // Listings kept by servers are read again (the summary is gone already).
        self.bump_listing_generation_or_warn().await;
        for leftover in self.store.list(&layout::manifests_of(name)).await? {
            self.store.delete(&leftover.key).await?;
        }
        Ok(())
    }
}

/// A refresh of at least this many new objects reads with large blocks mapped apart.
const LONG_REFRESH: usize = 16;

/// A refresh spills its view's new records to disk once this many wait in memory (about
/// 90 bytes each in the table's delta: 720 KiB).
const SPILL_WHILE_READING: usize = 1 << 13;

/// How a view names an index object: its key, size and modification time as listed.
fn stamped(object: &ObjectMeta) -> String {
    let millis = object
        .modified
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis());
    format!("{}#{}-{millis}", object.key, object.size)
}

/// Largest plaintext of one blob an index entry may claim: the largest chunk a valid
/// config allows (see `ChunkerParams::validate`).
pub const MAX_BLOB_RAW: u32 = 64 * 1024 * 1024;

pub use crate::layout::manifest_key;

pub(crate) fn parse_config(raw: &[u8], location: &str) -> RepoResult<RepoConfig> {
    #[derive(serde::Deserialize)]
    struct Probe {
        format: Option<String>,
        version: Option<u32>,
    }
    let probe: Probe = serde_json::from_slice(raw)
        .map_err(|e| RepoError::corrupted(format!("config of {location}"), e))?;
    if probe.format.as_deref() != Some("strata") {
        return Err(RepoError::NotARepository(location.to_string()));
    }
    match probe.version {
        Some(v) if (OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&v) => {}
        Some(found) => {
            return Err(RepoError::UnsupportedVersion {
                found,
                supported: FORMAT_VERSION,
            })
        }
        None => {
            return Err(RepoError::corrupted(
                format!("config of {location}"),
                "no version",
            ))
        }
    }
    let config: RepoConfig = serde_json::from_slice(raw)
        .map_err(|e| RepoError::corrupted(format!("config of {location}"), e))?;
    for params in [config.chunker, config.page_chunker] {
        params
            .validate()
            .map_err(|e| RepoError::corrupted(format!("config of {location}"), e))?;
    }
    Ok(config)
}

/// Test-only negative control `STRATA_TEST_UNSAFE=no-relookup`: readers give up on a pack
/// garbage collection moved, as before, so the test of a restore across a repack can show
/// that it catches it.
fn test_no_relookup() -> bool {
    strata_util::test_unsafe("no-relookup")
}
