//! `strata migrate`: upgrades a format-version-1 or -2 repository to the current version.
//!
//! Version 2 to 3: version-2 objects stay as they are (their header says how to read
//! them; version 3 only added extended attributes to manifests), so only the config is
//! rewritten, with version 3 and its MAC. Version 1 to 3 is what follows.
//!
//! Version 1 sealed objects without associated data and kept the config and key files
//! unauthenticated; this strata reads such a repository but does not write to it. The
//! migration rewrites every named object in place with its name bound (repository objects,
//! then pins and verification records), rebinds the key of the given password, and writes
//! the authenticated config last: interrupted, it leaves a readable version-1 repository
//! and can run again. Packs are not rewritten (their headers bind their kind only).

use strata_repo::crypto::KdfParams;
use strata_repo::{RepoError, Repository};

/// What a migration did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MigrateReport {
    /// Objects rewritten with their names bound.
    pub objects: u64,
    /// The key of the password used, now bound to the repository.
    pub key: String,
    /// False when the repository was already current (nothing done).
    pub migrated: bool,
}

/// Migrates `repo` (opened with `password`) to the current format version.
pub async fn migrate(
    repo: &Repository,
    password: Option<&str>,
) -> Result<MigrateReport, RepoError> {
    if repo.config().version >= strata_repo::format::FORMAT_VERSION {
        return Ok(MigrateReport {
            objects: 0,
            key: repo.key_id().to_string(),
            migrated: false,
        });
    }
    let mut objects = repo.migrate_objects().await?;
    objects += crate::retention::migrate_pins(repo).await?;
    objects += crate::verified::migrate_records(repo).await?;
    let key = repo
        .finish_migration(password, KdfParams::default())
        .await?;
    Ok(MigrateReport {
        objects,
        key,
        migrated: true,
    })
}
