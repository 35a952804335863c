//! Streamed manifests (format version 4) through the real binary: a tree of many
//! directories makes a manifest of several chunk blobs; an unchanged second backup stores
//! no new chunk; `ls` of one directory, a restore byte for byte, a damaged chunk that
//! costs only its own files, and garbage collection that keeps the chunks of live backups
//! and drops those of deleted ones.

use crate::common;

use common::{assert_same_tree, pseudo_random, Env, PASSWORD};
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use strata_repo::manifest_chunks::ManifestTop;
use strata_repo::{BlobId, Repository};

/// `dirs` directories of `files` small files each (60 to 800 bytes).
fn many_directories(root: &Path, prefix: &str, dirs: usize, files: usize) {
    for d in 0..dirs {
        let dir = root.join(format!("{prefix}{d:03}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..files {
            let seed = (d * files + f) as u64;
            let len = 60 + (seed * 7919 % 741) as usize;
            fs::write(dir.join(format!("f{f:04}")), pseudo_random(len, seed)).unwrap();
        }
    }
}

/// Opens the repository of `env` (with its index).
fn open(env: &Env) -> (tokio::runtime::Runtime, Arc<Repository>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = Arc::new(strata_store::LocalStore::new(&env.repo));
    let repo = rt
        .block_on(Repository::open(store, Some(PASSWORD)))
        .unwrap();
    (rt, repo)
}

/// The top of the only node's manifest of `backup`.
fn top_of(env: &Env, backup: &str) -> ManifestTop {
    let (rt, repo) = open(env);
    let summary = rt.block_on(repo.load_summary(backup)).unwrap();
    let reader = rt
        .block_on(repo.open_manifest(backup, &summary.nodes[0].name))
        .unwrap();
    reader
        .top()
        .expect("a version-4 manifest has a top")
        .clone()
}

fn latest(env: &Env) -> String {
    env.backup_names().last().unwrap().clone()
}

/// The paths `ls` shows for `path` in the latest backup.
fn ls(env: &Env, path: &str) -> Vec<String> {
    env.json(&["ls", "latest", path])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_tree_of_many_directories_is_chunked_listed_restored_and_not_stored_twice() {
    let env = Env::new();
    let src = env.path("src");
    many_directories(&src, "d", 40, 400);
    env.ok(&["backup", src.to_str().unwrap()]);
    let first = latest(&env);
    let top = top_of(&env, &first);
    // Where the chunks are cut depends on the repository's own key (a keyed hash of
    // each path), so their number varies from one repository to the next: several
    // (3 to 8 seen), never one, and none holds more than a share of the 16,041 entries.
    assert!(top.chunks.len() >= 2, "{} chunks", top.chunks.len());
    let largest = top.chunks.iter().map(|c| c.entries).max().unwrap_or(0);
    assert!(largest < 16_041 * 3 / 4, "a chunk of {largest} entries");
    assert!(top.ordered);
    assert_eq!(top.totals.files, 16_000);
    assert_eq!(top.totals.dirs, 41, "40 directories and the root");
    let blobs_before = open(&env).1.index().len();

    // Unchanged: the same chunks, and not one new blob.
    env.ok(&["backup", src.to_str().unwrap()]);
    let second = latest(&env);
    assert_ne!(first, second);
    let again = top_of(&env, &second);
    assert_eq!(again.chunks, top.chunks);
    assert_eq!(open(&env).1.index().len(), blobs_before);

    // One changed file: one new chunk.
    fs::write(src.join("d020/f0100"), b"changed content").unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    let changed = top_of(&env, &latest(&env));
    let old: Vec<BlobId> = top.chunks.iter().map(|c| c.id).collect();
    let new = changed
        .chunks
        .iter()
        .filter(|c| !old.contains(&c.id))
        .count();
    assert_eq!(new, 1, "only the chunk of the changed file is new");

    // `ls` of one directory: exactly its entries.
    let listed = ls(&env, "d017");
    assert_eq!(listed.len(), 401, "the directory and its 400 files");
    assert!(listed.iter().all(|p| p == "d017" || p.starts_with("d017/")));
    assert!(listed.contains(&"d017/f0399".to_string()));

    // A restore, byte for byte.
    let out = env.path("out");
    env.ok(&["restore", "latest", "--to", out.to_str().unwrap()]);
    assert_same_tree(&src, &out);
    env.ok(&["verify"]);
}

/// Flips a byte in the middle of the sealed bytes of chunk `position` of `top`.
fn damage_chunk(env: &Env, top: &ManifestTop, position: usize) {
    let at = top.chunks[position]
        .at
        .expect("the top says where its chunks are");
    let hex = at.pack.to_hex();
    let pack = env.repo.join("data").join(&hex[..2]).join(&hex);
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(pack)
        .unwrap();
    let offset = at.offset + at.length as u64 / 2;
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset).unwrap();
    file.write_all_at(&[byte[0] ^ 0x5a], offset).unwrap();
}

#[test]
fn a_damaged_manifest_chunk_fails_only_the_files_it_lists() {
    let env = Env::new();
    let src = env.path("src");
    many_directories(&src, "d", 40, 400);
    env.ok(&["backup", src.to_str().unwrap()]);
    let backup = latest(&env);
    let top = top_of(&env, &backup);
    let victim = top.chunks.len() / 2;
    let lost_from = String::from_utf8(top.chunks[victim].first_path.clone()).unwrap();
    let lost_to = String::from_utf8(top.chunks[victim + 1].first_path.clone()).unwrap();
    damage_chunk(&env, &top, victim);

    // `ls` of a directory elsewhere does not read the damaged chunk; one inside fails
    // with an error that names the chunk (damage: exit 4).
    assert_eq!(ls(&env, "d000").len(), 401);
    let inside = lost_from.split('/').next().unwrap().to_string();
    let stderr = env.fails(&["ls", "latest", &inside], 4);
    assert!(
        stderr.contains(&format!("chunk {} of {}", victim + 1, top.chunks.len()))
            && stderr.contains("manifests/")
            && stderr.contains(&backup),
        "{stderr}"
    );

    // verify names the chunk and reports its files, not the backup's others.
    let verified = env.run(&["verify", "--json"]);
    assert_eq!(verified.status.code(), Some(4), "verify finds the damage");
    let report: serde_json::Value = serde_json::from_slice(&verified.stdout).unwrap();
    let problems = report["problems"].to_string();
    assert!(
        problems.contains(&format!("chunk {} of", victim + 1)),
        "{problems}"
    );
    let damaged = report["damaged_files"].to_string();
    assert!(damaged.contains(&lost_from), "{damaged}");
    assert!(!damaged.contains("d000/"), "{damaged}");

    // A restore restores every file of the other chunks and names the lost part.
    let out = env.path("out");
    let result = env.run(&["restore", "latest", "--to", out.to_str().unwrap(), "--json"]);
    assert_eq!(result.status.code(), Some(4));
    let report: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    let errors = report["nodes"][0]["errors"].to_string();
    assert!(
        errors.contains(&format!("chunk {} of", victim + 1)),
        "{errors}"
    );
    let mut restored = 0;
    for d in 0..40 {
        for f in 0..400 {
            let rel = format!("d{d:03}/f{f:04}");
            let inside_lost = common_path_between(&rel, &lost_from, &lost_to);
            let got = out.join(&rel);
            if inside_lost {
                assert!(!got.exists(), "{rel} of the damaged chunk was restored");
            } else {
                assert_eq!(
                    fs::read(&got).unwrap(),
                    fs::read(src.join(&rel)).unwrap(),
                    "{rel}"
                );
                restored += 1;
            }
        }
    }
    // Every file of the other chunks came back.
    assert!(
        restored > 0 && restored + top.chunks[victim].entries as usize >= 16_000,
        "{restored} files restored"
    );
}

/// Whether `path` lies in the chunk that starts at `from` and ends before `to` (paths of
/// this test compare as strings in walk order: no name has a byte below `/`).
fn common_path_between(path: &str, from: &str, to: &str) -> bool {
    path >= from && path < to
}

#[test]
fn gc_keeps_the_chunks_of_live_backups_and_drops_those_of_deleted_ones() {
    let env = Env::new();
    let src = env.path("src");
    many_directories(&src, "old", 20, 300);
    env.ok(&["backup", src.to_str().unwrap()]);
    let first = latest(&env);
    let old_top = top_of(&env, &first);
    fs::remove_dir_all(&src).unwrap();
    many_directories(&src, "new", 20, 300);
    env.ok(&["backup", src.to_str().unwrap()]);
    let second = latest(&env);
    let new_top = top_of(&env, &second);

    // gc with both backups: every chunk stays.
    env.ok(&["gc"]);
    {
        let (_rt, repo) = open(&env);
        for chunk in old_top.chunks.iter().chain(&new_top.chunks) {
            assert!(
                repo.index().contains(&chunk.id),
                "chunk {}",
                chunk.id.short()
            );
        }
    }
    // Deleting the first backup (and its data: `delete` collects garbage) drops its
    // chunks; the second's stay and it restores whole.
    env.ok(&["delete", &first]);
    env.ok(&["gc"]);
    {
        let (_rt, repo) = open(&env);
        for chunk in &old_top.chunks {
            assert!(
                !repo.index().contains(&chunk.id),
                "chunk {} kept",
                chunk.id.short()
            );
        }
        for chunk in &new_top.chunks {
            assert!(
                repo.index().contains(&chunk.id),
                "chunk {} lost",
                chunk.id.short()
            );
        }
    }
    env.ok(&["verify"]);
    let out = env.path("out");
    env.ok(&["restore", "latest", "--to", out.to_str().unwrap()]);
    assert_same_tree(&src, &out);
}
