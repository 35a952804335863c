//! Names of backups (and the ids of operations built from them).

/// A unique, time-sortable backup name such as `20261122T055350Z-3fa1b2c4`: 32 random
/// bits make two backups started in the same second collide with negligible odds.
pub fn new_backup_name() -> String {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let compact: String = now.chars().filter(|c| *c != '-' && *c != ':').collect();
    let mut suffix = [0u8; 4];
    getrandom::getrandom(&mut suffix).expect("the OS random source is available");
    format!("{compact}-{}", hex::encode(suffix))
}

/// A key every key `<prefix><backup>...` of `backups` sorts after (their smallest name
/// without its last character), to list the pins or records of a page's backups with
/// `Store::list_after`; `None` for no backups.
pub(crate) fn before_all(prefix: &str, backups: &[&str]) -> Option<String> {
    let smallest = backups.iter().min()?;
    let last = smallest.char_indices().last().map_or(0, |(at, _)| at);
    Some(format!("{prefix}{}", &smallest[..last]))
}
