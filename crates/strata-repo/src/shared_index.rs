//! One index view per repository and process, whoever asks.
//!
//! A `strata server` that is both coordinator and agent, or a command that opens the same
//! repository twice, shares one [`BlobIndex`] per repository id: one copy of the packs in
//! memory, one refresh at a time. Where it lives is chosen once per process with
//! [`use_local_dir`] (the state directory's `index/`): a memory-mapped
//! [`IndexTable`](crate::index_table::IndexTable) per repository there; without one, a
//! [`MemoryIndex`].

use crate::index::{BlobIndex, MemoryIndex};
use crate::index_table::IndexTable;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};

/// The directory local index tables live in, set once per process.
static LOCAL_DIR: OnceLock<PathBuf> = OnceLock::new();

/// The views alive in this process, by repository id.
static VIEWS: Mutex<Option<HashMap<String, Weak<SharedIndex>>>> = Mutex::new(None);

/// Keeps the index tables of this process under `dir` (one directory per repository id).
/// The first call wins: every repository of a process shares one place.
pub fn use_local_dir(dir: &Path) {
    let _ = LOCAL_DIR.set(dir.to_path_buf());
}

/// Where this process keeps index tables, if anywhere.
pub fn local_dir() -> Option<&'static Path> {
    LOCAL_DIR.get().map(PathBuf::as_path)
}

/// A repository's index view as the process shares it. Its table lives in
/// `<local dir>/<repository id>-<hash of the location>`.
#[derive(Debug)]
pub struct SharedIndex {
    pub(crate) view: RwLock<Box<dyn BlobIndex>>,
    /// Held while refreshing, so two openings of one repository read each object once.
    pub(crate) refreshing: tokio::sync::Mutex<Attached>,
    /// The compression dictionaries loaded, shared the same way: a dictionary one
    /// opening stores is known at once to another whose view lists its blobs.
    pub(crate) dictionaries: Arc<RwLock<Arc<crate::dictionary::Dictionaries>>>,
    repo_id: String,
}

/// Whether the view was connected to its local table yet (at the first refresh: until
/// then a view answers as an empty index, as one never loaded does).
#[derive(Debug, Default)]
pub(crate) struct Attached(pub(crate) bool);

impl SharedIndex {
    /// The view of repository `repo_id` at `location` in this process, made on first
    /// use. Keyed by both: a copy of a repository elsewhere has the same id and other
    /// objects, and must not answer from this one's view.
    pub(crate) fn of(repo_id: &str, location: &str) -> Arc<SharedIndex> {
        let hash = blake3::hash(location.as_bytes());
        let repo_id = &format!("{repo_id}-{}", &hash.to_hex()[..16]);
        let mut views = VIEWS.lock().expect("index registry poisoned");
        let views = views.get_or_insert_with(HashMap::new);
        if let Some(view) = views.get(repo_id).and_then(Weak::upgrade) {
            return view;
        }
        views.retain(|_, v| v.strong_count() > 0);
        let view = Arc::new(SharedIndex {
            view: RwLock::new(Box::new(MemoryIndex::default())),
            refreshing: tokio::sync::Mutex::new(Attached::default()),
            dictionaries: Default::default(),
            repo_id: repo_id.to_string(),
        });
        views.insert(repo_id.to_string(), Arc::downgrade(&view));
        view
    }

    /// Connects the view to its local table (once), opening it off the async threads.
    pub(crate) async fn attach(self: &Arc<Self>, attached: &mut Attached) {
        if attached.0 {
            return;
        }
        attached.0 = true;
        let Some(dir) = local_dir().map(|d| d.join(&self.repo_id)) else {
            return;
        };
        let opened = tokio::task::spawn_blocking(move || IndexTable::open_or_rebuild(&dir)).await;
        match opened {
            Ok(Ok(table)) => *self.view.write().expect("index lock poisoned") = Box::new(table),
            Ok(Err(err)) => eprintln!(
                "strata: warning: no local index table ({err}); the index is kept in memory"
            ),
            Err(err) => eprintln!("strata: warning: no local index table ({err})"),
        }
    }

    /// Takes up a newer durable view another process of the host wrote (see
    /// [`BlobIndex::adopt_newer`]), off the async threads; a failure only costs reading
    /// more objects.
    pub(crate) async fn adopt_newer(self: &Arc<Self>) {
        let shared = self.clone();
        let done = tokio::task::spawn_blocking(move || {
            shared
                .view
                .write()
                .expect("index lock poisoned")
                .adopt_newer()
        })
        .await;
        if let Ok(Err(err)) = done {
            eprintln!("strata: warning: cannot read the local index table: {err}");
        }
    }

    /// Makes the view durable (see [`BlobIndex::commit`]), off the async threads. A
    /// failure costs the next process a longer refresh, not correctness: warned about.
    pub(crate) async fn commit(self: &Arc<Self>) {
        self.write_table(|view| view.commit()).await
    }

    /// [`BlobIndex::spill`] off the async threads; a failure is a warning (the records
    /// stay in memory, and the commit writes them).
    pub(crate) async fn spill(self: &Arc<Self>) {
        self.write_table(|view| view.spill()).await
    }

    /// Runs a write of the local table on a blocking thread, warning when it fails.
    async fn write_table(self: &Arc<Self>, write: fn(&mut dyn BlobIndex) -> std::io::Result<()>) {
        let shared = self.clone();
        let done = tokio::task::spawn_blocking(move || {
            write(&mut **shared.view.write().expect("index lock poisoned"))
        })
        .await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("strata: warning: cannot write the local index table: {err}"),
            Err(err) => eprintln!("strata: warning: cannot write the local index table: {err}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::index::{IndexFile, IndexedPack};
    use crate::pack::PackEntry;
    use crate::{BlobId, Repository};
    use std::sync::Arc;
    use strata_store::{CountingStore, DynStore, LocalStore};

    fn id(n: u64) -> BlobId {
        BlobId(*blake3::hash(&n.to_le_bytes()).as_bytes())
    }

    fn file(seed: u64) -> IndexFile {
        IndexFile {
            packs: vec![IndexedPack {
                id: id(1_000_000 + seed),
                size: 1 << 20,
                blobs: (0..10)
                    .map(|b| PackEntry {
                        id: id(seed * 100 + b),
                        offset: b * 100,
                        length: 90,
                        raw_length: 200,
                        compressed: false,
                    })
                    .collect(),
            }],
        }
    }

    /// With a local directory, a refresh reads only the index objects it has not seen
    /// (in this process or, through the table on disk, an earlier one), forgets the ones
    /// that vanished, and two openings share one view.
    #[tokio::test]
    async fn a_refresh_reads_only_new_objects_and_forgets_vanished_ones() {
        let dir = tempfile::tempdir().unwrap();
        super::use_local_dir(&dir.path().join("index"));
        let counting = Arc::new(CountingStore::new(Arc::new(LocalStore::new(
            dir.path().join("repo"),
        ))));
        let store: DynStore = counting.clone();
        let options = crate::InitOptions {
            encryption: crate::format::Encryption::None,
            ..Default::default()
        };
        let repo = Repository::init(store.clone(), None, options)
            .await
            .unwrap();
        let mut keys = Vec::new();
        for seed in 0..3 {
            keys.push(repo.write_index(&file(seed)).await.unwrap());
        }
        let before = counting.counts();
        repo.reload_index().await.unwrap();
        assert_eq!(counting.counts().since(&before).get, 3);
        assert_eq!(repo.index().len(), 30);

        // A second opening in this process shares the view: nothing to read.
        let again = Repository::open(store.clone(), None).await.unwrap();
        assert!(again.index().contains(&id(5)));
        let before = counting.counts();
        again.reload_index().await.unwrap();
        assert_eq!(counting.counts().since(&before).get, 0);

        // One new object, one gone: one read, and the gone one's blobs are unknown.
        repo.write_index(&file(7)).await.unwrap();
        store.delete(&keys[0]).await.unwrap();
        let before = counting.counts();
        repo.reload_index().await.unwrap();
        assert_eq!(counting.counts().since(&before).get, 1);
        assert!(
            !repo.index().contains(&id(5)),
            "its only pack is no longer listed"
        );
        assert!(repo.index().contains(&id(705)));
        assert_eq!(repo.index().len(), 30);

        // So few changes are not written to the table yet (a later commit with more
        // writes them all; a new process reads these few objects again).
        let written = std::fs::read_dir(dir.path().join("index"))
            .map(|mut d| {
                d.next()
                    .is_some_and(|e| e.unwrap().path().join("meta").exists())
            })
            .unwrap_or(false);
        assert!(!written, "three small objects wait for a later commit");
    }
}
