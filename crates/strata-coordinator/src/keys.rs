//! The passwords of a repository and its format upgrade, as use cases: `key add`,
//! `key remove`, `key passwd` and `migrate`, each with its audit entry (`key list` only
//! reads: `strata_repo::Repository::list_keys`).
//!
//! The refusals are the keyring's (`strata_repo::keyring`): no keys in an unencrypted
//! repository, never the last key, the key in use only when forced. Where a new password
//! comes from (the environment, a file, the terminal) is the caller's concern; these
//! take it as text.

use crate::actions::Actions;
use crate::events::Events;
use crate::migrate::MigrateReport;
use crate::storage::Storage;
use crate::{CoordinatorError, CoordinatorResult};
use strata_repo::crypto::KdfParams;
use strata_repo::Repository;

/// What `key passwd` did: the key of the old password gave way to one of the new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordChange {
    /// The key removed (the one the repository was opened with).
    pub old: String,
    /// The key added for the new password.
    pub new: String,
}

impl Actions {
    /// `key add`: a key for `password`, a further password that opens the repository.
    /// Audited as `key-add` on `keys`; returns the new key's id.
    pub async fn add_key(&self, who: &str, password: &str) -> CoordinatorResult<String> {
        let result = self
            .repo()
            .add_key(password, KdfParams::default())
            .await
            .map_err(CoordinatorError::from);
        let action = Self::action(who, "key-add", "keys");
        self.finish(&action, &result, |id| {
            ("succeeded", format!("added key {id}"))
        })
        .await;
        result
    }

    /// `key remove`: removes key `id` (never the last one; the one in use only with
    /// `force`). Audited as `key-remove` on the id.
    pub async fn remove_key(&self, who: &str, id: &str, force: bool) -> CoordinatorResult<()> {
        let result = self
            .repo()
            .remove_key(id, force)
            .await
            .map_err(CoordinatorError::from);
        let action = Self::action(who, "key-remove", id);
        self.finish(&action, &result, |_| ("succeeded", String::new()))
            .await;
        result
    }

    /// `key passwd`: adds a key for `password` and removes the one in use. Audited as
    /// `key-passwd` on the old key.
    pub async fn change_password(
        &self,
        who: &str,
        password: &str,
    ) -> CoordinatorResult<PasswordChange> {
        let old = self.repo().key_id().to_string();
        let result = self
            .repo()
            .change_password(password, KdfParams::default())
            .await
            .map(|new| PasswordChange {
                old: old.clone(),
                new,
            })
            .map_err(CoordinatorError::from);
        let action = Self::action(who, "key-passwd", &old);
        self.finish(&action, &result, |c| {
            ("succeeded", format!("key {} replaced by {}", c.old, c.new))
        })
        .await;
        result
    }
}

/// `migrate`: upgrades the format-version-1 repository of `storage` (see
/// [`crate::migrate`]); a repository already current is left alone. A migration is
/// audited as `migrate` on `repository`, in the repository reopened after it, so the
/// entry is written in the new format.
pub async fn migrate(
    storage: &Storage,
    password: Option<&str>,
    who: &str,
    events: &Events,
) -> CoordinatorResult<MigrateReport> {
    let store = &storage.store;
    let repo = Repository::open_catalog(store.clone(), password).await?;
    let report = crate::migrate::migrate(&repo, password).await?;
    if report.migrated {
        let repo = Repository::open(store.clone(), password).await?;
        let detail = format!(
            "format version {}: {} objects rewritten, key {}",
            strata_repo::format::FORMAT_VERSION,
            report.objects,
            report.key
        );
        let action = Actions::action(who, "migrate", "repository");
        events
            .finished(&repo, &storage.name, &action, "succeeded", &detail)
            .await;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    async fn actions(dir: &std::path::Path) -> Actions {
        let repo = strata_testkit::repo::scratch_repo(dir).await;
        Actions::new(
            repo,
            "main",
            Events::audit_only(),
            Duration::from_secs(5),
            crate::gc::DEFAULT_GRACE,
        )
    }

    async fn audit(repo: &Repository) -> Vec<(String, String, String, String)> {
        crate::audit::read(repo, 0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.action, e.target, e.outcome, e.detail))
            .collect()
    }

    /// Adding, changing and removing keys records one entry each; a refused removal (the
    /// last key, the key in use without force) is recorded as failed and removes nothing.
    #[tokio::test]
    async fn key_changes_are_audited_and_refusals_remove_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let actions = actions(dir.path()).await;
        let first = actions.repo().key_id().to_string();
        let added = actions.add_key("tester", "second").await.unwrap();
        let err = actions
            .remove_key("tester", &first, false)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("in use"), "{err}");
        assert_eq!(actions.repo().list_keys().await.unwrap().len(), 2);
        let change = actions.change_password("tester", "third").await.unwrap();
        assert_eq!(change.old, first);
        actions.remove_key("tester", &added, false).await.unwrap();
        let keys = actions.repo().list_keys().await.unwrap();
        assert_eq!(keys.len(), 1, "only the key of the new password is left");
        assert_eq!(keys[0].id, change.new);
        let store = actions.repo().store().clone();
        let reopened = Repository::open(store.clone(), Some("third"))
            .await
            .unwrap();
        assert!(Repository::open(store, Some("pw")).await.is_err());
        let refused = actions.remove_key("tester", &change.new, true).await;
        assert!(refused.is_err(), "the last key is never removed");
        let entries = audit(&reopened).await;
        let kinds: Vec<(&str, &str)> = entries
            .iter()
            .map(|(a, _, o, _)| (a.as_str(), o.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("key-add", "succeeded"),
                ("key-remove", "failed"),
                ("key-passwd", "succeeded"),
                ("key-remove", "succeeded"),
                ("key-remove", "failed"),
            ]
        );
        assert_eq!(entries[0].3, format!("added key {added}"));
        assert_eq!(entries[1].1, first);
        assert_eq!(
            entries[2].3,
            format!("key {first} replaced by {}", change.new)
        );
    }

    /// A current repository is not migrated and nothing is audited.
    #[tokio::test]
    async fn migrating_a_current_repository_does_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let repo = strata_testkit::repo::scratch_repo(dir.path()).await;
        let config = crate::config::Config::default();
        let storage = Storage::wrap("main", repo.store().clone(), &config);
        let events: Arc<Events> = Events::audit_only();
        let report = migrate(&storage, Some("pw"), "tester", &events)
            .await
            .unwrap();
        assert!(!report.migrated);
        assert_eq!(report.key, repo.key_id());
        assert!(audit(&repo).await.is_empty());
    }
}
