//! A repository's compression dictionaries in its store: loading, storing, checking
//! (the dictionaries themselves: [`crate::dictionary`]).

use crate::dictionary::{dictionary_key, key_dictionary, Dictionaries, Dictionary};
use crate::format::{decode_object, ObjectKind};
use crate::{layout, RepoError, RepoResult, Repository};
use bytes::Bytes;
use std::sync::Arc;

impl Repository {
    /// The dictionaries loaded (by the last index load, or since).
    pub fn dictionaries(&self) -> Arc<Dictionaries> {
        self.dictionaries
            .read()
            .expect("dictionary lock poisoned")
            .clone()
    }

    /// Loads the dictionaries stored since the last load. One that does not decode is
    /// skipped with a warning: the blobs compressed with it fail as damaged
    /// ([`RepoError::MissingDictionary`]) and everything else keeps working.
    pub async fn reload_dictionaries(&self) -> RepoResult<()> {
        for (key, problem) in self.scan_dictionaries(false).await?.1 {
            self.warn_damaged(
                &key,
                &format!("{problem}; skipped: the blobs compressed with it do not restore"),
            );
        }
        Ok(())
    }

    /// Every `dicts/` object checked (for `strata verify`): the number that decode, and
    /// one line per object that does not.
    pub async fn check_dictionaries(&self) -> RepoResult<(usize, Vec<String>)> {
        let (good, problems) = self.scan_dictionaries(true).await?;
        Ok((good, problems.into_iter().map(|(_, line)| line).collect()))
    }

    /// Lists `dicts/` and loads each dictionary that decodes (with `all`, also those
    /// loaded already, read and checked again): how many decoded, and (key, why) for
    /// each object that does not. One gone between the listing and the read is skipped.
    async fn scan_dictionaries(&self, all: bool) -> RepoResult<(usize, Vec<(String, String)>)> {
        let loaded = self.dictionaries();
        let (mut good, mut problems) = (0, Vec::new());
        for object in self.store().list_fresh(layout::DICTS).await? {
            let Some(id) = key_dictionary(&object.key) else {
                problems.push((
                    object.key.clone(),
                    format!("{} is not a dictionary's name", object.key),
                ));
                continue;
            };
            if !all && loaded.contains(id) {
                continue;
            }
            match self.read_dictionary(&object.key, id).await {
                Ok(dictionary) => {
                    self.add_dictionary(Arc::new(dictionary));
                    good += 1;
                }
                Err(RepoError::Store(e)) if e.is_not_found() => {}
                Err(err) if err.is_damage() => problems.push((object.key, err.to_string())),
                Err(err) => return Err(err),
            }
        }
        Ok((good, problems))
    }

    /// Reads, authenticates and checks one dictionary: its payload must be a zstd
    /// dictionary whose own id is the one its key names.
    async fn read_dictionary(&self, key: &str, id: u32) -> RepoResult<Dictionary> {
        let bytes = self.store().get(key).await?;
        let raw = decode_object(self.cipher(), ObjectKind::Dictionary, &bytes, key)?;
        let dictionary = Dictionary::parse(raw).map_err(|why| RepoError::corrupted(key, why))?;
        if dictionary.id() != id {
            return Err(RepoError::corrupted(
                key,
                format!("holds dictionary {:08x}", dictionary.id()),
            ));
        }
        Ok(dictionary)
    }

    fn add_dictionary(&self, dictionary: Arc<Dictionary>) {
        let mut slot = self.dictionaries.write().expect("dictionary lock poisoned");
        let mut next = (**slot).clone();
        next.insert(dictionary);
        *slot = Arc::new(next);
    }

    /// Stores a trained dictionary under `dicts/<id>` (create-only) and loads it. Returns
    /// once the store acknowledged it: only then may a blob be compressed with it. A
    /// dictionary of the same id already stored is used when it is the same one; a
    /// different one of that id (two trainings whose ids collide) is an error, and the
    /// caller goes on without a dictionary.
    pub async fn store_dictionary(&self, raw: Vec<u8>) -> RepoResult<Arc<Dictionary>> {
        let dictionary = Dictionary::parse(raw)
            .map_err(|why| RepoError::corrupted("a trained dictionary", why))?;
        let key = dictionary_key(dictionary.id());
        let sealed = self.seal_object(ObjectKind::Dictionary, &key, dictionary.raw())?;
        match self.store().put_if_absent(&key, Bytes::from(sealed)).await {
            Ok(()) => {
                let dictionary = Arc::new(dictionary);
                self.add_dictionary(dictionary.clone());
                Ok(dictionary)
            }
            Err(strata_store::StoreError::AlreadyExists { .. }) => {
                let stored = self.read_dictionary(&key, dictionary.id()).await?;
                if stored.raw() != dictionary.raw() {
                    return Err(RepoError::corrupted(
                        &key,
                        "another dictionary of the same id is stored there",
                    ));
                }
                let stored = Arc::new(stored);
                self.add_dictionary(stored.clone());
                Ok(stored)
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dictionary::{frame_dictionary, Training};
    use crate::writer::{BlobWriter, WriterOptions};
    use crate::BlobId;
    use strata_store::{DynStore, LocalStore};

    fn page(seed: u64) -> Bytes {
        Bytes::from(crate::dictionary::tests::rows_page(seed, 32 * 1024))
    }

    fn training() -> WriterOptions {
        WriterOptions {
            train_dictionary: Some(Training {
                after: 2 << 20,
                sample_bytes: 1 << 20,
            }),
            ..WriterOptions::default()
        }
    }

    async fn write(
        repo: &Arc<Repository>,
        seeds: std::ops::Range<u64>,
        options: WriterOptions,
    ) -> Vec<(BlobId, Bytes)> {
        let trained = || !repo.dictionaries().is_empty();
        write_until(repo, seeds, options, &trained).await
    }

    /// [`write`], waiting after the blobs that complete the samples until `trained`.
    async fn write_until(
        repo: &Arc<Repository>,
        seeds: std::ops::Range<u64>,
        options: WriterOptions,
        trained: &(dyn Fn() -> bool + Sync),
    ) -> Vec<(BlobId, Bytes)> {
        let blobs: Vec<(BlobId, Bytes)> = seeds
            .map(|i| {
                let data = page(i);
                (repo.keys().blob_id(&data), data)
            })
            .collect();
        let training = options.train_dictionary;
        let writer = Arc::new(BlobWriter::start(repo.clone(), options));
        let submit = |blobs: Vec<(BlobId, Bytes)>| {
            let writer = writer.clone();
            tokio::task::spawn_blocking(move || {
                for (id, data) in blobs {
                    writer.submit(id, data).unwrap();
                }
            })
        };
        // A writer that trains: the blobs up to the training, then (once the dictionary
        // is stored: training takes longer than compressing a few MiB) the rest.
        let (first, rest) = match training {
            Some(training) if repo.dictionaries().is_empty() => blobs.split_at(
                (training.after as usize)
                    .div_ceil(32 * 1024)
                    .min(blobs.len()),
            ),
            _ => (&blobs[..], &[][..]),
        };
        submit(first.to_vec()).await.unwrap();
        if !rest.is_empty() {
            let waited = std::time::Instant::now();
            while !trained() {
                assert!(
                    waited.elapsed() < std::time::Duration::from_secs(30),
                    "no dictionary"
                );
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
        submit(rest.to_vec()).await.unwrap();
        Arc::into_inner(writer).unwrap().finish().await.unwrap();
        blobs
    }

    /// The frames of the stored blobs that name a dictionary, read back raw.
    async fn frames_with_dictionary(repo: &Repository, blobs: &[(BlobId, Bytes)]) -> usize {
        let mut with = 0;
        for (id, _) in blobs {
            let location = repo.index().get(id).unwrap();
            let pack = repo.index().pack(location.pack).0;
            let range = location.offset..location.offset + location.length as u64;
            let sealed = repo
                .store()
                .get_range(&layout::pack_key(&pack), range)
                .await
                .unwrap();
            let body = repo.cipher().open(&sealed, "blob").unwrap();
            with += usize::from(location.compressed && frame_dictionary(&body).is_some());
        }
        with
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_backup_writer_trains_a_dictionary_stores_it_first_and_every_opening_reads_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let repo = crate::test_repo::plain(dir.path()).await;
        // A second opening in this process, made before the dictionary exists.
        let store: DynStore = Arc::new(LocalStore::new(dir.path()));
        let early = Repository::open(store.clone(), None).await.unwrap();
        assert!(early.dictionaries().is_empty());

        let blobs = write(&repo, 0..256, training()).await;
        let stored = repo.store().list(layout::DICTS).await.unwrap();
        assert_eq!(stored.len(), 1, "one dictionary");
        let id = repo.dictionaries().preferred().unwrap().id();
        assert_eq!(stored[0].key, crate::dictionary::dictionary_key(id));
        let with = frames_with_dictionary(&repo, &blobs).await;
        assert!(
            with > 150 && with < 250,
            "the blobs after the training use it: {with}"
        );

        // Every opening reads every blob: this process's other one, and a new process's
        // (simulated by a fresh store object; the view is shared, the dictionary loaded
        // with it).
        for (id, data) in &blobs {
            assert_eq!(&early.read_blob(id).await.unwrap()[..], &data[..]);
        }
        let fresh = Repository::open(store.clone(), None).await.unwrap();
        assert_eq!(fresh.dictionaries().len(), 1);
        assert_eq!(
            fresh
                .read_blobs(&blobs.iter().map(|b| b.0).collect::<Vec<_>>())
                .await
                .unwrap()
                .len(),
            blobs.len()
        );

        // A later writer uses the stored dictionary from its first blob and trains no
        // second one, whether it trains (a backup) or not (anything else).
        for (first, options) in [(1000, training()), (2000, WriterOptions::default())] {
            let more = write(&repo, first..first + 40, options).await;
            assert_eq!(frames_with_dictionary(&repo, &more).await, more.len());
        }
        assert_eq!(repo.store().list(layout::DICTS).await.unwrap().len(), 1);
        let (good, problems) = repo.check_dictionaries().await.unwrap();
        assert_eq!((good, problems.len()), (1, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_damaged_or_missing_dictionary_fails_its_blobs_as_damage_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let repo = crate::test_repo::plain(dir.path()).await;
        let trained = write(&repo, 0..256, training()).await;
        let plain = write(
            &repo,
            5000..5004,
            WriterOptions {
                compression_level: 0,
                ..WriterOptions::default()
            },
        )
        .await;
        let id = repo.dictionaries().preferred().unwrap().id();
        let key = crate::dictionary::dictionary_key(id);
        let path = dir.path().join(&key);
        let good = std::fs::read(&path).unwrap();

        // A stranger's bytes under the key (an unencrypted repository seals nothing):
        // checked by verify, skipped at open; its blobs fail as damage.
        let mut forged = good.clone();
        let at = forged.len() - 40;
        forged[at] ^= 0xff;
        for (bytes, what) in [
            (forged, "altered"),
            (b"STRO\x0c\x05\x00not a dictionary".to_vec(), "replaced"),
        ] {
            std::fs::write(&path, &bytes).unwrap();
            let store: DynStore = Arc::new(LocalStore::new(dir.path()));
            let (_, problems) = Repository::open(store.clone(), None)
                .await
                .unwrap()
                .check_dictionaries()
                .await
                .unwrap();
            assert_eq!(problems.len(), 1, "{what}: {problems:?}");
        }
        std::fs::remove_file(&path).unwrap();
        // A new process: nothing loaded (the shared view is dropped with its openings).
        drop(repo);
        let store: DynStore = Arc::new(LocalStore::new(dir.path()));
        let reopened = Repository::open(store, None).await.unwrap();
        assert!(reopened.dictionaries().is_empty());
        let mut failed = 0;
        for (blob, _) in &trained {
            match reopened.read_blob(blob).await {
                Ok(_) => {}
                Err(err @ RepoError::MissingDictionary { .. }) => {
                    assert!(err.is_damage());
                    assert!(err.to_string().contains(&key), "{err}");
                    failed += 1;
                }
                Err(err) => panic!("{err}"),
            }
        }
        assert!(failed > 150, "{failed}");
        for (blob, data) in &plain {
            assert_eq!(&reopened.read_blob(blob).await.unwrap()[..], &data[..]);
        }
    }

    /// A store whose create-only write of a dictionary times out: the object lands when
    /// the test says, maybe never.
    #[derive(Debug)]
    struct DictionaryTimesOut {
        inner: DynStore,
        kept: std::sync::Mutex<Option<(String, Bytes)>>,
    }

    #[async_trait::async_trait]
    impl strata_store::Store for DictionaryTimesOut {
        async fn put(&self, key: &str, data: Bytes) -> strata_store::StoreResult<()> {
            self.inner.put(key, data).await
        }
        async fn put_if_absent(&self, key: &str, data: Bytes) -> strata_store::StoreResult<()> {
            if key.starts_with(layout::DICTS) {
                *self.kept.lock().unwrap() = Some((key.to_string(), data));
                return Err(strata_store::StoreError::Transient {
                    op: "put",
                    key: key.to_string(),
                    store: self.describe(),
                    message: "timed out (test)".into(),
                });
            }
            self.inner.put_if_absent(key, data).await
        }
        async fn get(&self, key: &str) -> strata_store::StoreResult<Bytes> {
            self.inner.get(key).await
        }
        async fn get_range(
            &self,
            key: &str,
            range: std::ops::Range<u64>,
        ) -> strata_store::StoreResult<Bytes> {
            self.inner.get_range(key, range).await
        }
        async fn list(
            &self,
            prefix: &str,
        ) -> strata_store::StoreResult<Vec<strata_store::ObjectMeta>> {
            self.inner.list(prefix).await
        }
        async fn delete(&self, key: &str) -> strata_store::StoreResult<()> {
            self.inner.delete(key).await
        }
        fn describe(&self) -> String {
            "dictionaries time out".into()
        }
    }

    /// A dictionary write that never returns (lost, or landing after the writer gave up)
    /// leaves the writer without a dictionary: no blob names one, so every blob reads
    /// back whether the dictionary ever lands or not.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dictionary_whose_write_times_out_is_never_used() {
        let dir = tempfile::tempdir().unwrap();
        crate::test_repo::plain(dir.path()).await;
        let timing_out = Arc::new(DictionaryTimesOut {
            inner: Arc::new(LocalStore::new(dir.path())),
            kept: Default::default(),
        });
        let repo = Repository::open(timing_out.clone(), None).await.unwrap();
        let blobs = write_until(&repo, 0..256, training(), &|| {
            timing_out.kept.lock().unwrap().is_some()
        })
        .await;
        let (key, data) = timing_out
            .kept
            .lock()
            .unwrap()
            .take()
            .expect("a dictionary was trained");
        assert!(repo.store().list(layout::DICTS).await.unwrap().is_empty());
        assert_eq!(frames_with_dictionary(&repo, &blobs).await, 0);
        drop(repo);
        let store: DynStore = Arc::new(LocalStore::new(dir.path()));
        for (id, data) in &blobs {
            assert_eq!(
                &Repository::open(store.clone(), None)
                    .await
                    .unwrap()
                    .read_blob(id)
                    .await
                    .unwrap()[..],
                &data[..]
            );
        }
        // It lands late: a later backup uses it, and everything still reads.
        store.put(&key, data).await.unwrap();
        let repo = Repository::open(store.clone(), None).await.unwrap();
        assert_eq!(repo.dictionaries().len(), 1);
        let more = write(&repo, 3000..3040, WriterOptions::default()).await;
        assert_eq!(frames_with_dictionary(&repo, &more).await, more.len());
        for (id, data) in blobs.iter().chain(&more) {
            assert_eq!(&repo.read_blob(id).await.unwrap()[..], &data[..]);
        }
    }

    /// Records the prefixes listed, in order.
    #[derive(Debug)]
    struct Listings {
        inner: DynStore,
        listed: std::sync::Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl strata_store::Store for Listings {
        async fn put(&self, key: &str, data: Bytes) -> strata_store::StoreResult<()> {
            self.inner.put(key, data).await
        }
        async fn put_if_absent(&self, key: &str, data: Bytes) -> strata_store::StoreResult<()> {
            self.inner.put_if_absent(key, data).await
        }
        async fn get(&self, key: &str) -> strata_store::StoreResult<Bytes> {
            self.inner.get(key).await
        }
        async fn get_range(
            &self,
            key: &str,
            range: std::ops::Range<u64>,
        ) -> strata_store::StoreResult<Bytes> {
            self.inner.get_range(key, range).await
        }
        async fn list(
            &self,
            prefix: &str,
        ) -> strata_store::StoreResult<Vec<strata_store::ObjectMeta>> {
            self.listed.lock().unwrap().push(prefix.to_string());
            self.inner.list(prefix).await
        }
        async fn delete(&self, key: &str) -> strata_store::StoreResult<()> {
            self.inner.delete(key).await
        }
        fn describe(&self) -> String {
            "listings recorded".into()
        }
    }

    /// A reader lists `dicts/` after `index/`: every blob is stored after the dictionary
    /// it names (the write order), so the dictionaries listed after the index objects
    /// include every one an indexed blob names; listed before, a dictionary and the index
    /// of blobs naming it could both land between the two listings.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reader_lists_the_dictionaries_after_the_index() {
        let dir = tempfile::tempdir().unwrap();
        crate::test_repo::plain(dir.path()).await;
        let store = Arc::new(Listings {
            inner: Arc::new(LocalStore::new(dir.path())),
            listed: Default::default(),
        });
        let repo = Repository::open(store.clone(), None).await.unwrap();
        let order = |listed: &[String]| {
            let first = |prefix: &str| listed.iter().position(|l| l == prefix);
            (first(layout::INDEX), first(layout::DICTS))
        };
        let listed = std::mem::take(&mut *store.listed.lock().unwrap());
        let (index, dicts) = order(&listed);
        assert!(
            index.is_some() && dicts.is_some() && index < dicts,
            "opening: {listed:?}"
        );
        repo.reload_index().await.unwrap();
        let listed = std::mem::take(&mut *store.listed.lock().unwrap());
        let (index, dicts) = order(&listed);
        assert!(
            index.is_some() && dicts.is_some() && index < dicts,
            "reloading: {listed:?}"
        );
    }
}
