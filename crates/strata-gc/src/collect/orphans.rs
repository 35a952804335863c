//! Manifests, pins and verification records of backups that no longer exist.

use super::view::Referenced;
use super::{is_young, no_writer_may_name};
use crate::GcResult;
use std::time::Duration;
use strata_repo::layout;
use strata_repo::Repository;

/// Manifests, pins and verification records of backups that no longer exist. A
/// manifest of a backup with no summary goes only once older than the grace period by
/// the storage's clock and when no writer may still run (any may be about to write its
/// summary, however long it has run): the listing first, then the writers, then the
/// summaries again.
pub(super) async fn orphans(
    repo: &Repository,
    referenced: &mut Referenced,
    grace: Duration,
) -> GcResult<Vec<String>> {
    let mut listed = Vec::new();
    for prefix in [layout::MANIFESTS, layout::PINS, layout::VERIFIED] {
        for object in repo.store().list_fresh(prefix).await? {
            let backup = object.key[prefix.len()..]
                .split('/')
                .next()
                .map(str::to_string);
            listed.push((prefix, backup, object));
        }
    }
    let unnamed = |referenced: &Referenced, backup: &Option<String>| {
        !backup
            .as_ref()
            .is_some_and(|b| referenced.backups.contains(b))
    };
    if !listed
        .iter()
        .any(|(_, backup, _)| unnamed(referenced, backup))
    {
        return Ok(Vec::new());
    }
    let now = crate::lock::clock::storage_now_ms(repo.store()).await?;
    let manifests_may_go = no_writer_may_name(repo).await?;
    if manifests_may_go {
        referenced.update(repo).await?;
    }
    Ok(listed
        .into_iter()
        .filter(|(prefix, backup, object)| {
            let manifest = *prefix == layout::MANIFESTS;
            unnamed(referenced, backup)
                && (!manifest || (manifests_may_go && !is_young(object.modified, now, grace)))
        })
        .map(|(_, _, object)| object.key)
        .collect())
}
