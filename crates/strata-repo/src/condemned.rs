//! Condemned packs: the first phase of garbage collection.
//!
//! Garbage collection never deletes a pack in the run that found it unreferenced while a
//! writer could still be relying on it. It **condemns** the pack first:
//!
//! ```text
//! gc/condemned/<run>/packs     sealed (kind 11), postcard: Condemnation
//! gc/condemned/<run>/writers   sealed (kind 11), postcard: ArmedBy
//! ```
//!
//! Every index view reads the condemnations at each refresh: a writer never counts a blob
//! of a condemned pack as stored (it stores it again), while readers still find it there.
//! After writing `packs`, the collection lists the live writer marks and records them in
//! `writers`, which arms the condemnation. A writer marks itself before it reads the
//! index: so a writer not listed there read the index after the condemnation existed
//! and cannot rely on its packs; the listed ones may have, and a later sweep deletes the
//! packs only once every listed writer has ended (its summary or archive record visible,
//! then) or lapsed (its fence refuses anything it would still make visible), and only
//! those packs that still no backup or archive record references. A condemnation
//! without its `writers` (a collection stopped in between) is dropped by the next run.

use crate::id::PackId;
use crate::layout::CONDEMNED;
use crate::{RepoError, RepoResult, Repository};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The packs one collection condemned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condemnation {
    /// The collection's run id (also in the key).
    pub run: String,
    /// When it was written (milliseconds since the epoch, the collection's clock; shown,
    /// never relied on).
    pub created_ms: u64,
    /// The packs condemned: no backup or archive record referenced them when the collection
    /// looked.
    pub packs: Vec<PackId>,
}

/// The writers a condemnation waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArmedBy {
    /// The run id of the collection that wrote the condemnation.
    pub run: String,
    /// The operation names of the writer marks live after the condemnation was written.
    pub writers: Vec<String>,
}

/// A condemnation as found in the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The condemnation itself.
    pub condemnation: Condemnation,
    /// `None` until armed.
    pub armed_by: Option<ArmedBy>,
}

fn packs_key(run: &str) -> String {
    format!("{CONDEMNED}{run}/packs")
}

fn writers_key(run: &str) -> String {
    format!("{CONDEMNED}{run}/writers")
}

impl Repository {
    /// Writes a condemnation (the first step; see the module documentation).
    pub async fn write_condemnation(&self, condemnation: &Condemnation) -> RepoResult<()> {
        let key = packs_key(&condemnation.run);
        let plain = postcard::to_stdvec(condemnation).expect("condemnations serialize");
        let sealed = self.seal_object(crate::format::ObjectKind::Condemned, &key, &plain)?;
        self.store().put(&key, Bytes::from(sealed)).await?;
        Ok(())
    }

    /// Arms the condemnation of `run` with the writers it waits for.
    pub async fn arm_condemnation(&self, armed: &ArmedBy) -> RepoResult<()> {
        let key = writers_key(&armed.run);
        let plain = postcard::to_stdvec(armed).expect("condemnations serialize");
        let sealed = self.seal_object(crate::format::ObjectKind::Condemned, &key, &plain)?;
        self.store().put(&key, Bytes::from(sealed)).await?;
        Ok(())
    }

    /// Removes the condemnation of `run` (after its sweep, or to drop it): `writers`
    /// first, so an interrupted removal leaves an unarmed condemnation, never one armed
    /// by a record of another.
    pub async fn remove_condemnation(&self, run: &str) -> RepoResult<()> {
        for key in [writers_key(run), packs_key(run)] {
            match self.store().delete(&key).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Every condemnation in the repository, and the runs whose objects do not decode
    /// (a collection drops those; a view cannot honour them, which costs only storage).
    pub async fn condemnations(&self) -> RepoResult<(Vec<Found>, Vec<String>)> {
        let listed = self.store().list_fresh(CONDEMNED).await?;
        let mut runs: Vec<String> = listed
            .iter()
            .filter_map(|o| o.key.strip_prefix(CONDEMNED)?.split_once('/'))
            .map(|(run, _)| run.to_string())
            .collect();
        runs.sort();
        runs.dedup();
        let has = |key: &str| listed.iter().any(|o| o.key == key);
        let (mut found, mut damaged) = (Vec::new(), Vec::new());
        for run in runs {
            let key = packs_key(&run);
            if !has(&key) {
                // Only `writers` left by an interrupted removal.
                damaged.push(run);
                continue;
            }
            let condemnation: Condemnation = match self.read_condemned(&key).await {
                Ok(Some(c)) => c,
                Ok(None) => continue,
                Err(err) if err.is_damage() => {
                    damaged.push(run);
                    continue;
                }
                Err(err) => return Err(err),
            };
            let armed_by: Option<ArmedBy> = if has(&writers_key(&run)) {
                match self.read_condemned(&writers_key(&run)).await {
                    Ok(armed) => armed,
                    Err(err) if err.is_damage() => None,
                    Err(err) => return Err(err),
                }
            } else {
                None
            };
            if condemnation.run != run || armed_by.as_ref().is_some_and(|a| a.run != run) {
                damaged.push(run);
                continue;
            }
            found.push(Found {
                condemnation,
                armed_by,
            });
        }
        Ok((found, damaged))
    }

    async fn read_condemned<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> RepoResult<Option<T>> {
        let bytes = match self.store().get(key).await {
            Ok(bytes) => bytes,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let plain = crate::format::decode_object(
            self.cipher(),
            crate::format::ObjectKind::Condemned,
            &bytes,
            key,
        )?;
        postcard::from_bytes(&plain)
            .map(Some)
            .map_err(|e| RepoError::corrupted(key, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BlobId;
    use std::sync::Arc;
    use strata_store::{DynStore, LocalStore};

    #[tokio::test]
    async fn condemnations_round_trip_and_damage_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let store: DynStore = Arc::new(LocalStore::new(dir.path()));
        let options = crate::InitOptions {
            kdf: crate::crypto::KdfParams {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
            },
            ..Default::default()
        };
        let repo = Repository::init(store.clone(), Some("pw"), options)
            .await
            .unwrap();
        let c = Condemnation {
            run: "gc-1".into(),
            created_ms: 5,
            packs: vec![BlobId([7; 32])],
        };
        repo.write_condemnation(&c).await.unwrap();
        let (found, damaged) = repo.condemnations().await.unwrap();
        assert_eq!(
            found,
            vec![Found {
                condemnation: c.clone(),
                armed_by: None
            }]
        );
        assert!(damaged.is_empty());
        let armed = ArmedBy {
            run: "gc-1".into(),
            writers: vec!["backup-1".into()],
        };
        repo.arm_condemnation(&armed).await.unwrap();
        assert_eq!(
            repo.condemnations().await.unwrap().0[0].armed_by,
            Some(armed)
        );
        // A condemnation copied under another run's name is refused, not honoured.
        let bytes = store.get("gc/condemned/gc-1/packs").await.unwrap();
        store.put("gc/condemned/gc-2/packs", bytes).await.unwrap();
        let (found, damaged) = repo.condemnations().await.unwrap();
        assert_eq!((found.len(), damaged), (1, vec!["gc-2".to_string()]));
        repo.remove_condemnation("gc-1").await.unwrap();
        repo.remove_condemnation("gc-2").await.unwrap();
        assert_eq!(repo.condemnations().await.unwrap(), (vec![], vec![]));
    }
}
