//! Backups across every configured storage.
//!
//! Each storage is a repository of its own. New backups go to the default storage, but
//! `list`, `show`, `restore` and `verify` see the backups of all of them, so switching the
//! default from one storage to another leaves the old backups usable where they are.

use crate::config::Config;
use crate::storage::Storage;
use crate::{CoordinatorError, CoordinatorResult};
use std::sync::Arc;
use strata_repo::summary::BackupSummary;
use strata_repo::{RepoError, Repository};

/// A storage of the configuration and its repository, opened for reading summaries.
#[derive(Debug, Clone)]
pub struct Place {
    /// The storage, opened.
    pub storage: Storage,
    /// The repository on it.
    pub repo: Arc<Repository>,
}

pub use crate::listing::{Located, LocatedDamage};

/// Every storage of the configuration, default first.
pub struct Catalog {
    /// The storages that could be opened, the default first.
    pub places: Vec<Place>,
    /// Storages that could not be opened, with the reason (one line each).
    pub unavailable: Vec<(String, String)>,
}

impl Catalog {
    /// Opens every storage. The default storage must open; another storage without a
    /// repository or unreachable is recorded in `unavailable` rather than failing
    /// everything. A wrong password fails at once.
    pub async fn open(config: &Config, password: Option<&str>) -> CoordinatorResult<Catalog> {
        Catalog::open_around(config, password, None).await
    }

    /// [`Catalog::open`], with the default storage's repository already open (a server's
    /// coordinator's: one repository object per storage in a process).
    pub async fn open_around(
        config: &Config,
        password: Option<&str>,
        default: Option<Arc<Repository>>,
    ) -> CoordinatorResult<Catalog> {
        let mut names: Vec<&String> = config.storages.keys().collect();
        names.sort_by_key(|n| (*n != &config.default_storage, n.to_string()));
        let mut places = Vec::new();
        let mut unavailable = Vec::new();
        for name in names {
            let storage = Storage::open(config, name)?;
            if let Some(repo) = default.as_ref().filter(|_| name == &config.default_storage) {
                places.push(Place {
                    storage,
                    repo: repo.clone(),
                });
                continue;
            }
            match storage.open_repository(config, password, false).await {
                Ok(repo) => places.push(Place { storage, repo }),
                // The default storage must work; others may be down for a while.
                Err(err) if name == &config.default_storage => return Err(err.into()),
                Err(err @ (RepoError::WrongPassword(_) | RepoError::PasswordRequired(_))) => {
                    return Err(err.into())
                }
                Err(err) => unavailable.push((name.clone(), crate::error_chain(&err))),
            }
        }
        Ok(Catalog {
            places,
            unavailable,
        })
    }

    /// The place named `name`.
    pub fn place(&self, name: &str) -> CoordinatorResult<&Place> {
        self.places
            .iter()
            .find(|p| p.storage.name == name)
            .ok_or_else(|| {
                let why = self
                    .unavailable
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, why)| why.clone())
                    .unwrap_or_else(|| "no such storage in the configuration".into());
                CoordinatorError::NoBackup(format!("storage {name:?} is not available: {why}"))
            })
    }

    /// Every readable backup of every storage, oldest first.
    pub async fn list(&self) -> CoordinatorResult<Vec<Located>> {
        Ok(self.scan().await?.0)
    }

    /// Every readable backup of every storage, oldest first, and the summaries that do not
    /// decode, by storage: one damaged summary hides only its own backup.
    pub async fn scan(&self) -> CoordinatorResult<(Vec<Located>, Vec<LocatedDamage>)> {
        let mut out = Vec::new();
        let mut damaged = Vec::new();
        for place in &self.places {
            let (summaries, bad) = place.repo.scan_backups().await?;
            for summary in summaries {
                out.push(Located {
                    storage: place.storage.name.clone(),
                    summary,
                });
            }
            damaged.extend(bad.into_iter().map(|object| LocatedDamage {
                storage: place.storage.name.clone(),
                object,
            }));
        }
        out.sort_by(|a, b| {
            (&a.summary.started, &a.summary.name).cmp(&(&b.summary.started, &b.summary.name))
        });
        Ok((out, damaged))
    }

    /// The last verification of every backup that has one, by (storage, backup).
    pub async fn verified(
        &self,
    ) -> CoordinatorResult<std::collections::HashMap<(String, String), crate::verified::VerifyRecord>>
    {
        let mut out = std::collections::HashMap::new();
        for place in &self.places {
            for (backup, record) in crate::verified::latest(&place.repo).await? {
                out.insert((place.storage.name.clone(), backup), record);
            }
        }
        Ok(out)
    }

    /// The storages and their repositories, default first.
    pub fn sources(&self) -> Vec<crate::listing::Source<'_>> {
        self.places
            .iter()
            .map(|p| (p.storage.name.as_str(), p.repo.as_ref()))
            .collect()
    }

    /// One page of the backups of every storage, newest first (see
    /// [`crate::listing::page`]): what it costs is what the page needs.
    pub async fn page(
        &self,
        query: &crate::listing::PageQuery,
    ) -> CoordinatorResult<crate::listing::BackupsPage> {
        crate::listing::page(&self.sources(), query).await
    }

    /// Finds a backup by name, unique prefix, or `latest` (the newest complete backup of
    /// any storage), reading the listing and the one summary, not every summary.
    pub async fn find(&self, wanted: &str) -> CoordinatorResult<(&Place, BackupSummary)> {
        self.find_with(wanted, None).await
    }

    /// [`Catalog::find`], `latest` read from the listings `cache` keeps (see
    /// [`crate::listing::cache::ListingCache::page`] for `local`).
    pub async fn find_with(
        &self,
        wanted: &str,
        cache: Option<(&crate::listing::cache::ListingCache, u64)>,
    ) -> CoordinatorResult<(&Place, BackupSummary)> {
        let sources = self.sources();
        let (at, summary) = if wanted == "latest" {
            crate::listing::latest_from(&sources, cache)
                .await?
                .ok_or_else(|| {
                    CoordinatorError::NoBackup("no complete backup in any storage".into())
                })?
        } else {
            crate::listing::by_name(&sources, wanted).await?
        };
        Ok((&self.places[at], summary))
    }

    /// Like [`Catalog::find`], for an action that changes the backup (delete): refused
    /// when the same name is in several storages, so the caller must choose one.
    pub async fn find_one(&self, wanted: &str) -> CoordinatorResult<(&Place, BackupSummary)> {
        let (place, summary) = self.find(wanted).await?;
        let holders = crate::listing::holders(&self.sources(), &summary.name).await?;
        if holders.len() > 1 {
            return Err(CoordinatorError::Invalid(format!(
                "backup {} is in storages {}: choose one with --storage",
                summary.name,
                holders.join(", ")
            )));
        }
        Ok((place, summary))
    }
}
