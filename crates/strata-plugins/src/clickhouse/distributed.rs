//! Rows a Distributed table acknowledged and has not sent yet.
//!
//! With asynchronous inserts (the default), a Distributed table acknowledges an insert
//! once the rows are in `.bin` files under its own data directory, and sends them to the
//! shards later. A freeze of the shards' tables does not see them. So before the freeze,
//! a backup asks the server to send them (`SYSTEM FLUSH DISTRIBUTED`, where the version
//! has it), then counts what is still queued: a queue left means acknowledged rows this
//! backup does not hold, and the node's backup is `partial`, saying which table and how
//! many batches.

use super::client::{literal, Client};
use super::record::Table;
use std::path::{Path, PathBuf};

/// What is left in the queue of a Distributed table after the flush: `None` when
/// nothing is, else the warning that makes the backup partial.
pub async fn unsent(client: &Client, server_path: &Path, table: &Table) -> Option<String> {
    // 18.16 has no such statement (a syntax error): what is queued is counted all the same.
    let flushed = client
        .execute(&format!("SYSTEM FLUSH DISTRIBUTED {}", table.sql_name()))
        .await;
    let dir = data_dir(client, server_path, table).await?;
    let batches = tokio::task::spawn_blocking(move || queued_files(&dir))
        .await
        .unwrap_or(0);
    if batches == 0 {
        return None;
    }
    Some(format!(
        "ClickHouse Distributed table {} holds {batches} batch(es) of acknowledged rows not yet sent to its shards{}: they are not in this backup",
        table.shown(),
        match flushed {
            Ok(_) => " after SYSTEM FLUSH DISTRIBUTED",
            Err(_) => " (this server cannot flush them on demand)",
        }
    ))
}

/// The table's data directory, from `system.tables` (`data_path`, or the first of
/// `data_paths` on later versions), kept only when it lies under the server's path.
async fn data_dir(client: &Client, server_path: &Path, table: &Table) -> Option<PathBuf> {
    let rows = client
        .rows::<serde_json::Value>(&format!(
            "SELECT * FROM system.tables WHERE database = {} AND name = {}",
            literal(&table.database),
            literal(&table.name)
        ))
        .await
        .ok()?;
    let row = rows.into_iter().next()?;
    let path = row
        .get("data_path")
        .and_then(|p| p.as_str())
        .or_else(|| row.get("data_paths")?.get(0)?.as_str())?;
    let path = PathBuf::from(path);
    let inside = path.starts_with(server_path)
        && path
            .components()
            .all(|c| c != std::path::Component::ParentDir);
    inside.then_some(path)
}

/// The `.bin` files below `dir` (one per queued batch), following no link.
fn queued_files(dir: &Path) -> u64 {
    let mut count = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() && entry.file_name().to_string_lossy().ends_with(".bin") {
                count += 1;
            }
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_batches_are_counted_below_every_shard_s_directory() {
        let dir = tempfile::tempdir().unwrap();
        let shard = dir.path().join("default@127%2E0%2E0%2E1:9000");
        std::fs::create_dir_all(shard.join("tmp")).unwrap();
        std::fs::write(shard.join("1.bin"), b"x").unwrap();
        std::fs::write(shard.join("2.bin"), b"x").unwrap();
        std::fs::write(shard.join("tmp/3.bin"), b"x").unwrap();
        std::fs::write(shard.join("notes"), b"x").unwrap();
        std::os::unix::fs::symlink("/", shard.join("root")).unwrap();
        assert_eq!(queued_files(dir.path()), 3);
        assert_eq!(queued_files(&dir.path().join("missing")), 0);
    }
}
