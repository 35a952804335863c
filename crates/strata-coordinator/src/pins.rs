//! Pins: a pinned backup is kept by every retention policy and cannot be deleted.
//! Read by listings (a page shows its pins) and by retention (a pin keeps a backup),
//! so they live apart from both.

/// Pins live as `pins/<backup>` objects beside the (immutable) summaries. In format
/// version 2 each is a sealed object bound to its key (so a pin copied to another backup's
/// name does not open) holding `{"backup": <name>, "pinned": <unix ms>}`; version-1
/// repositories have plain JSON pins, honoured there only.
const PINS: &str = strata_repo::layout::PINS;

/// The content of a pin.
#[derive(serde::Serialize, serde::Deserialize)]
struct PinRecord {
    backup: String,
    pinned: u64,
}

/// The names of the pinned backups of `repo`: one LIST and a GET per pin. A pin that does
/// not open under its own name is ignored with a warning.
pub async fn pinned(
    repo: &strata_repo::Repository,
) -> Result<std::collections::HashSet<String>, strata_store::StoreError> {
    pinned_where(repo, None, |_| true).await
}

/// Which of `backups` are pinned: one LIST of the keys from the smallest of their names
/// on (a page of the newest backups lists only the pins of backups as new), then a GET
/// per pin of these backups alone (a page of a listing).
pub async fn pinned_among(
    repo: &strata_repo::Repository,
    backups: &[&str],
) -> Result<std::collections::HashSet<String>, strata_store::StoreError> {
    let Some(after) = crate::names::before_all(PINS, backups) else {
        return Ok(Default::default());
    };
    let wanted: std::collections::HashSet<&str> = backups.iter().copied().collect();
    pinned_where(repo, Some(&after), |b| wanted.contains(b)).await
}

/// The pins of the backups `wanted` says, from the pins' keys after `after` (all of
/// them when `None`), never from a remembered listing.
async fn pinned_where(
    repo: &strata_repo::Repository,
    after: Option<&str>,
    wanted: impl Fn(&str) -> bool,
) -> Result<std::collections::HashSet<String>, strata_store::StoreError> {
    let mut out = std::collections::HashSet::new();
    let listed = match after {
        Some(after) => repo.store().list_after(PINS, after).await?,
        None => repo.store().list_fresh(PINS).await?,
    };
    for object in listed {
        let Some(name) = object.key.strip_prefix(PINS).filter(|n| wanted(n)) else {
            continue;
        };
        let bytes = match repo.store().get(&object.key).await {
            Ok(bytes) => bytes,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        match open_pin(repo, &object.key, name, &bytes) {
            Ok(()) => {
                out.insert(name.to_string());
            }
            Err(why) => eprintln!("strata: warning: pin {} ignored: {why}", object.key),
        }
    }
    Ok(out)
}

/// Checks that `bytes` is a pin of backup `name` stored under `key`.
fn open_pin(
    repo: &strata_repo::Repository,
    key: &str,
    name: &str,
    bytes: &[u8],
) -> Result<(), BadPin> {
    if repo.cipher().accepts_v1_objects() && !bytes.starts_with(strata_repo::format::OBJECT_MAGIC) {
        return Ok(()); // a version-1 pin: its key is all it says
    }
    let plain = strata_repo::format::decode_object(
        repo.cipher(),
        strata_repo::format::ObjectKind::Pin,
        bytes,
        key,
    )
    .map_err(BadPin::Sealed)?;
    let record: PinRecord = serde_json::from_slice(&plain).map_err(BadPin::NotAPin)?;
    if record.backup != name {
        return Err(BadPin::Elsewhere(record.backup));
    }
    Ok(())
}

/// Why a pin object is ignored.
#[derive(Debug, thiserror::Error)]
enum BadPin {
    /// It does not open with the repository's key (damaged, or not of this repository).
    #[error("{0}")]
    Sealed(strata_repo::RepoError),
    /// It opens, and is not a pin record.
    #[error("{0}")]
    NotAPin(serde_json::Error),
    /// It pins another backup than its key names.
    #[error("it pins {0:?}")]
    Elsewhere(String),
}

/// The sealed pin of backup `name` (also used to migrate version-1 pins).
pub(crate) fn pin_object(
    repo: &strata_repo::Repository,
    name: &str,
    migrating: bool,
) -> Result<Vec<u8>, strata_repo::RepoError> {
    let key = strata_repo::layout::pin_key(name);
    let body = serde_json::to_vec(&PinRecord {
        backup: name.to_string(),
        pinned: crate::lock::now_ms(),
    })
    .expect("pins serialize");
    let kind = strata_repo::format::ObjectKind::Pin;
    if migrating {
        Ok(repo.seal_for_migration(kind, &key, &body))
    } else {
        repo.seal_object(kind, &key, &body)
    }
}

/// Rewrites the version-1 pins of `repo` as sealed ones (see `crate::migrate`).
pub(crate) async fn migrate_pins(
    repo: &strata_repo::Repository,
) -> Result<u64, strata_repo::RepoError> {
    let mut done = 0;
    for object in repo.store().list_fresh(PINS).await? {
        let bytes = repo.store().get(&object.key).await?;
        if bytes.starts_with(strata_repo::format::OBJECT_MAGIC) {
            continue;
        }
        let name = object.key.trim_start_matches(PINS);
        let sealed = pin_object(repo, name, true)?;
        repo.store().put(&object.key, sealed.into()).await?;
        done += 1;
    }
    Ok(done)
}

/// Pins or unpins backup `name`.
pub async fn set_pinned(
    repo: &strata_repo::Repository,
    name: &str,
    pin: bool,
) -> Result<(), strata_repo::RepoError> {
    let key = strata_repo::layout::pin_key(name);
    if pin {
        let body = pin_object(repo, name, false)?;
        repo.store().put(&key, body.into()).await?;
    } else {
        match repo.store().delete(&key).await {
            Err(e) if !e.is_not_found() => return Err(e.into()),
            _ => {}
        }
    }
    // Listings kept by servers show pins: they read them again.
    repo.bump_listing_generation_or_warn().await;
    Ok(())
}
