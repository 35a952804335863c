//! `strata migrate`: upgrades a repository of format version 1 to 4 to the current one.
//!
//! Versions 2 to 4 to 5: their objects stay as they are (each object's header says how
//! to read it; version 3 added extended attributes to manifests, version 4 new object
//! kinds and layouts, version 5 compression dictionaries, which older objects need not
//! have), so only the config is rewritten, with the current version and its MAC.
//! Version 1 is what follows.
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
    objects += crate::pins::migrate_pins(repo).await?;
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
