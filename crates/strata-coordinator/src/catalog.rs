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
    pub storage: Storage,
    pub repo: Arc<Repository>,
}

/// A backup and the storage that holds it.
#[derive(Debug, Clone)]
pub struct Located {
    pub storage: String,
    pub summary: BackupSummary,
}

/// A summary that does not decode and the storage that holds it.
#[derive(Debug, Clone)]
pub struct LocatedDamage {
    pub storage: String,
    pub object: strata_repo::DamagedObject,
}

/// Every storage of the configuration, default first.
pub struct Catalog {
    pub places: Vec<Place>,
    /// Storages that could not be opened, with the reason (one line each).
    pub unavailable: Vec<(String, String)>,
}

impl Catalog {
    /// Opens every storage. The default storage must open; another storage without a
    /// repository or unreachable is recorded in `unavailable` rather than failing
    /// everything. A wrong password fails at once.
    pub async fn open(config: &Config, password: Option<&str>) -> CoordinatorResult<Catalog> {
        let mut names: Vec<&String> = config.storages.keys().collect();
        names.sort_by_key(|n| (*n != &config.default_storage, n.to_string()));
        let mut places = Vec::new();
        let mut unavailable = Vec::new();
        for name in names {
            let storage = Storage::open(config, name)?;
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

    /// Finds a backup by name, unique prefix, or `latest` (the newest complete backup of
    /// any storage).
    pub async fn find(&self, wanted: &str) -> CoordinatorResult<(&Place, BackupSummary)> {
        let (all, damaged) = self.scan().await?;
        let damaged: Vec<_> = damaged.into_iter().map(|d| d.object).collect();
        if let Some(err) = crate::damaged_match(
            &damaged,
            all.iter().map(|b| b.summary.name.as_str()),
            wanted,
        ) {
            return Err(err);
        }
        let found = if wanted == "latest" {
            let found = all
                .into_iter()
                .rev()
                .find(|b| b.summary.is_complete())
                .ok_or_else(|| {
                    CoordinatorError::NoBackup("no complete backup in any storage".into())
                })?;
            // Names sort by start time: a damaged newer backup may have been the latest.
            for newer in damaged
                .iter()
                .filter(|d| d.backup().is_some_and(|b| b > found.summary.name.as_str()))
            {
                eprintln!(
                    "strata: warning: latest is {}; the newer backup {} is damaged ({}) and was passed over",
                    found.summary.name,
                    newer.backup().unwrap_or_default(),
                    newer.reason
                );
            }
            found
        } else if let Some(exact) = all.iter().find(|b| b.summary.name == wanted) {
            exact.clone()
        } else {
            let mut matches = all
                .into_iter()
                .filter(|b| b.summary.name.starts_with(wanted));
            match (matches.next(), matches.next()) {
                (Some(one), None) => one,
                (Some(_), Some(_)) => {
                    return Err(CoordinatorError::NoBackup(format!(
                        "{wanted:?} matches several backups; give more of the name"
                    )))
                }
                _ => {
                    return Err(CoordinatorError::NoBackup(format!(
                        "no backup named {wanted:?} (see `strata list`)"
                    )))
                }
            }
        };
        let place = self.place(&found.storage)?;
        Ok((place, found.summary))
    }

    /// Like [`Catalog::find`], for an action that changes the backup (delete): refused
    /// when the same name is in several storages, so the caller must choose one.
    pub async fn find_one(&self, wanted: &str) -> CoordinatorResult<(&Place, BackupSummary)> {
        let (place, summary) = self.find(wanted).await?;
        let holders: Vec<String> = self
            .list()
            .await?
            .into_iter()
            .filter(|b| b.summary.name == summary.name)
            .map(|b| b.storage)
            .collect();
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
