//! Names of backups (and the ids of operations built from them).

/// Backup names are made where summaries are keyed (garbage collection's run ids too).
pub use strata_repo::summary::{new_backup_name, new_backup_name_at};

/// A key every key `<prefix><backup>...` of `backups` sorts after (their smallest name
/// without its last character), to list the pins or records of a page's backups with
/// `Store::list_after`; `None` for no backups.
pub(crate) fn before_all(prefix: &str, backups: &[&str]) -> Option<String> {
    let smallest = backups.iter().min()?;
    let last = smallest.char_indices().last().map_or(0, |(at, _)| at);
    Some(format!("{prefix}{}", &smallest[..last]))
}
