//! One damaged object costs only what depends on it. For each kind of object (an index
//! object, an old summary, a node manifest, a pack header, a whole pack), two backups of
//! different data are made and one object of one of them is damaged on disk: `list` must
//! still show the other backup and name the damaged one, the other backup must restore
//! byte for byte, `verify` must exit 4 naming the object, and `strata repair` must rebuild
//! or drop exactly what it says, never the undamaged backup.

use crate::common;

use common::server::{http, Server};
use common::{
    assert_same_tree, files_under, one_node_site, pseudo_random, strata_with_token, succeed, Env,
};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// A few small files whose content depends on `seed`, so two trees share no data.
fn small_tree(root: &Path, seed: u64) {
    fs::create_dir_all(root.join("sub")).unwrap();
    fs::write(root.join("a.bin"), pseudo_random(40_000, seed)).unwrap();
    fs::write(root.join("sub/b.bin"), pseudo_random(9_000, seed + 100)).unwrap();
    fs::write(root.join("c.txt"), format!("tree {seed}\n")).unwrap();
}

/// Keys (paths relative to the repository) of the files under `dir` of the repository.
fn objects(env: &Env, dir: &str) -> BTreeSet<PathBuf> {
    files_under(&env.repo.join(dir))
        .into_iter()
        .map(|p| Path::new(dir).join(p))
        .collect()
}

/// Two backups of two trees with no data in common.
struct Two {
    env: Env,
    src: [PathBuf; 2],
    names: [String; 2],
    /// The pack and index objects each backup added.
    packs: [BTreeSet<PathBuf>; 2],
    index: [BTreeSet<PathBuf>; 2],
}

fn two_backups() -> Two {
    let env = Env::new();
    let mut src = Vec::new();
    let mut packs = Vec::new();
    let mut index = Vec::new();
    for (i, node) in ["alpha", "beta"].into_iter().enumerate() {
        let dir = env.path(&format!("src-{node}"));
        small_tree(&dir, 1 + i as u64 * 1000);
        let (packs_before, index_before) = (objects(&env, "data"), objects(&env, "index"));
        env.ok(&["backup", dir.to_str().unwrap(), "--node-name", node]);
        let (new_packs, new_index) = without_manifest_chunks(
            &env,
            node,
            &objects(&env, "data") - &packs_before,
            &objects(&env, "index") - &index_before,
        );
        packs.push(new_packs);
        index.push(new_index);
        src.push(dir);
    }
    let names: Vec<String> = names(&env);
    assert_eq!(names.len(), 2);
    assert!(packs.iter().all(|p| !p.is_empty()) && index.iter().all(|i| i.len() == 1));
    Two {
        env,
        src: src.try_into().unwrap(),
        names: names.try_into().unwrap(),
        packs: packs.try_into().unwrap(),
        index: index.try_into().unwrap(),
    }
}

/// The packs and index objects of a backup's data, without those of its manifest's
/// chunks (format version 4 stores them through a writer of their own, in packs and an
/// index object of their own, so damage to data never takes a manifest down): the tests
/// damage data and expect its files to be named.
fn without_manifest_chunks(
    env: &Env,
    node: &str,
    packs: BTreeSet<PathBuf>,
    index: BTreeSet<PathBuf>,
) -> (BTreeSet<PathBuf>, BTreeSet<PathBuf>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = std::sync::Arc::new(strata_store::LocalStore::new(&env.repo));
        let repo = strata_repo::Repository::open(store, Some(common::PASSWORD))
            .await
            .unwrap();
        let latest = repo.list_backups().await.unwrap().pop().unwrap();
        let reader = repo.open_manifest(&latest.name, node).await.unwrap();
        let chunk_packs: BTreeSet<String> = reader
            .top()
            .unwrap()
            .chunks
            .iter()
            .map(|c| c.at.unwrap().pack.to_hex())
            .collect();
        let is_chunk_pack =
            |p: &PathBuf| chunk_packs.contains(p.file_name().unwrap().to_str().unwrap());
        let mut data_index = BTreeSet::new();
        for key in index {
            let file = repo.read_index(key.to_str().unwrap()).await.unwrap();
            if !file
                .packs
                .iter()
                .all(|p| chunk_packs.contains(&p.id.to_hex()))
            {
                data_index.insert(key);
            }
        }
        let data_packs = packs.into_iter().filter(|p| !is_chunk_pack(p)).collect();
        (data_packs, data_index)
    })
}

/// Names of the readable backups, oldest first.
fn names(env: &Env) -> Vec<String> {
    env.json(&["list"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["status"] != "damaged")
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect()
}

fn flip_byte(path: &Path, at: impl Fn(usize) -> usize) {
    let mut bytes = fs::read(path).unwrap();
    let i = at(bytes.len());
    bytes[i] ^= 0x40;
    fs::write(path, bytes).unwrap();
}

impl Two {
    /// Restores backup `i` into a fresh directory and compares it with its source.
    fn restores_exactly(&self, i: usize) {
        let out = self.env.path(&format!("restored-{i}-{}", rand_suffix()));
        self.env
            .ok(&["restore", &self.names[i], "--to", out.to_str().unwrap()]);
        assert_same_tree(&self.src[i], &out);
    }

    fn key(&self, path: &Path) -> String {
        path.to_str().unwrap().to_string()
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[test]
fn a_flipped_byte_in_an_index_object_costs_only_its_backup_until_repair_index() {
    let t = two_backups();
    let env = &t.env;
    let damaged = t.index[1].iter().next().unwrap().clone();
    flip_byte(&env.repo.join(&damaged), |len| len / 2);
    let key = t.key(&damaged);

    // The backup that needs nothing from it restores, with a warning naming the object.
    let out = env.path("restored-alpha");
    let run = env.run(&["restore", &t.names[0], "--to", out.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains(&key) && stderr.contains("strata repair index"),
        "{stderr}"
    );
    assert_same_tree(&t.src[0], &out);
    assert_eq!(names(env), t.names.to_vec(), "list must show both backups");

    // The one that needs its blobs is refused before anything is written, naming the fix.
    let into = env.path("restored-beta");
    let err = env.fails(&["restore", &t.names[1], "--to", into.to_str().unwrap()], 4);
    assert!(
        err.contains(&key) && err.contains("strata repair index"),
        "{err}"
    );
    assert!(
        !into.join("a.bin").exists(),
        "nothing may be restored from a partial index"
    );

    let err = env.fails(&["verify"], 4);
    assert!(err.contains(&format!("problem: {key}")), "{err}");

    // A dry run changes nothing.
    let plan = env.ok(&["repair", "index", "--dry-run"]);
    assert!(
        plan.contains(&format!("would delete old index object {key}")),
        "{plan}"
    );
    assert!(env.repo.join(&damaged).exists());
    env.fails(&["verify"], 4);

    let done = env.ok(&["repair", "index"]);
    assert!(
        done.contains(&format!("deleted old index object {key}")),
        "{done}"
    );
    assert!(!env.repo.join(&damaged).exists());
    let audit = env.ok(&["audit"]);
    assert!(audit.contains("repair-index"), "{audit}");
    let verified = env.ok(&["verify", "--read-data"]);
    assert!(verified.contains("every blob is intact"), "{verified}");
    t.restores_exactly(0);
    t.restores_exactly(1);
}

#[test]
fn a_truncated_old_summary_is_named_and_rebuilt_as_partial_by_repair_backups() {
    let t = two_backups();
    let env = &t.env;
    let key = format!("summaries/{}", t.names[0]);
    let path = env.repo.join(&key);
    let len = fs::metadata(&path).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len / 2)
        .unwrap();

    // list: the other backup as a row, the damaged one named (JSON row and warning).
    let rows = env.json(&["list"]);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let bad = rows.iter().find(|r| r["status"] == "damaged").unwrap();
    assert_eq!(bad["name"], t.names[0].as_str());
    assert!(bad["error"].as_str().unwrap().contains(&key), "{bad}");
    let run = env.run(&["list"]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success());
    assert!(
        stderr.contains(&t.names[0]) && stderr.contains("damaged"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&run.stdout).contains(&t.names[1]));

    // The other backup by exact name; the damaged one is a clear error.
    t.restores_exactly(1);
    env.ok(&["show", &t.names[1]]);
    let err = env.fails(&["show", &t.names[0]], 4);
    assert!(
        err.contains(&key) && err.contains("strata repair backups"),
        "{err}"
    );
    let err = env.fails(&["verify"], 4);
    assert!(err.contains(&key), "{err}");

    let plan = env.ok(&["repair", "backups", "--dry-run"]);
    assert!(
        plan.contains(&format!("backup {}: would be rebuilt", t.names[0])),
        "{plan}"
    );
    assert_eq!(fs::metadata(&path).unwrap().len(), len / 2, "dry run wrote");

    let done = env.ok(&["repair", "backups"]);
    assert!(
        done.contains(&format!(
            "backup {}: rebuilt from its manifests (now partial)",
            t.names[0]
        )) && done.contains("lost:"),
        "{done}"
    );
    let rows = env.json(&["list"]);
    let first = &rows.as_array().unwrap()[0];
    assert_eq!(first["name"], t.names[0].as_str());
    assert_eq!(
        first["status"], "partial",
        "a rebuilt summary is never complete"
    );
    assert_eq!(first["nodes"][0]["files"], 3);
    env.ok(&["verify"]);
    t.restores_exactly(0);
    t.restores_exactly(1);
    // A second run finds nothing to do.
    let again = env.ok(&["repair", "backups"]);
    assert!(again.contains("0 repaired, 2 intact"), "{again}");
}

#[test]
fn a_corrupted_manifest_fails_its_node_and_leaves_the_other_backup_alone() {
    let t = two_backups();
    let env = &t.env;
    let key = format!("manifests/{}/alpha", t.names[0]);
    flip_byte(&env.repo.join(&key), |len| len - 3);

    assert_eq!(names(env), t.names.to_vec());
    t.restores_exactly(1);
    let err = env.fails(&["verify"], 4);
    assert!(err.contains(&key), "{err}");

    let plan = env.ok(&["repair", "backups", "--dry-run"]);
    assert!(plan.contains(&format!("would delete: {key}")), "{plan}");
    assert!(env.repo.join(&key).exists());

    let done = env.ok(&["repair", "backups"]);
    assert!(
        done.contains(&format!("backup {}: marked (now failed)", t.names[0]))
            && done.contains("lost: ")
            && done.contains(&format!("deleted: {key}")),
        "{done}"
    );
    let shown = env.json(&["show", &t.names[0]]);
    assert_eq!(shown["status"], "failed");
    assert_eq!(shown["nodes"][0]["status"], "failed");
    assert!(shown["nodes"][0]["error"]
        .as_str()
        .unwrap()
        .contains("manifest lost"));
    env.ok(&["verify"]);
    t.restores_exactly(1);
}

#[test]
fn a_damaged_pack_header_is_reported_and_its_blobs_stay_indexed_from_the_old_index() {
    let t = two_backups();
    let env = &t.env;
    let pack = t.packs[1].iter().next().unwrap().clone();
    // The byte just before the trailer (header length + "STRPACK1") is in the sealed header.
    flip_byte(&env.repo.join(&pack), |len| len - 13);
    let key = t.key(&pack);

    let err = env.fails(&["verify", "--read-data"], 4);
    assert!(err.contains(&key), "{err}");
    t.restores_exactly(0);

    let done = env.ok(&["repair", "index"]);
    assert!(
        done.contains(&format!("damaged pack header: header of pack {key}"))
            && done.contains("stay indexed from the old index"),
        "{done}"
    );
    // The blobs authenticate one by one: both backups still restore.
    t.restores_exactly(0);
    t.restores_exactly(1);
}

#[test]
fn a_pack_lost_with_its_index_object_is_marked_by_repair_backups() {
    let t = two_backups();
    let env = &t.env;
    // The pack's header is damaged and so is the only index object listing it: its blobs
    // are gone, and repair must say which files that costs.
    let pack = t.packs[1].iter().next().unwrap().clone();
    flip_byte(&env.repo.join(&pack), |len| len - 13);
    let index = t.index[1].iter().next().unwrap().clone();
    flip_byte(&env.repo.join(&index), |len| len / 2);

    let err = env.fails(&["repair", "backups"], 4);
    assert!(err.contains("strata repair index"), "{err}");
    let done = env.ok(&["repair", "index"]);
    assert!(done.contains("its blobs are lost"), "{done}");
    let done = env.ok(&["repair", "backups"]);
    assert!(
        done.contains(&format!("backup {}: marked (now partial)", t.names[1]))
            && done.contains("file a.bin: its data is in no stored pack"),
        "{done}"
    );
    assert!(!done.contains(&format!("backup {}:", t.names[0])), "{done}");
    let rows = env.json(&["list"]);
    assert_eq!(rows[0]["status"], "complete");
    assert_eq!(rows[1]["status"], "partial");
    t.restores_exactly(0);
}

#[test]
fn a_deleted_pack_is_named_by_verify_and_its_files_by_repair() {
    let t = two_backups();
    let env = &t.env;
    for pack in &t.packs[1] {
        fs::remove_file(env.repo.join(pack)).unwrap();
    }
    let key = t.key(t.packs[1].iter().next().unwrap());

    assert_eq!(names(env), t.names.to_vec());
    t.restores_exactly(0);
    let err = env.fails(&["verify"], 4);
    assert!(err.contains(&key), "{err}");

    let done = env.ok(&["repair", "index"]);
    assert!(done.contains(&format!("missing pack: {key}")), "{done}");
    let done = env.ok(&["repair", "backups"]);
    assert!(
        done.contains(&format!("backup {}: marked (now partial)", t.names[1]))
            && done.contains("sub/b.bin"),
        "{done}"
    );
    let shown = env.json(&["show", &t.names[1]]);
    assert_eq!(shown["status"], "partial");
    assert_eq!(
        shown["nodes"][0]["files"], 0,
        "every file of beta was in the lost pack"
    );
    assert!(shown["nodes"][0]["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w.as_str().unwrap().contains("a.bin: data lost")));
    // The lost files left the manifest: the repository is consistent again, garbage
    // collection may run, and what remains of beta (its directories) restores.
    env.ok(&["verify", "--read-data"]);
    env.ok(&["gc"]);
    let out = env.path("beta-remains");
    env.ok(&["restore", &t.names[1], "--to", out.to_str().unwrap()]);
    assert!(out.join("sub").is_dir() && !out.join("a.bin").exists());
    t.restores_exactly(0);
}

#[test]
fn the_server_lists_and_counts_a_damaged_backup_and_repairs_through_the_api() {
    const TOKEN: &str = "repair-test-token";
    let dir = tempfile::tempdir().unwrap();
    let config = one_node_site(dir.path(), "");
    let strata = || strata_with_token(dir.path(), &config, TOKEN);
    succeed(strata().arg("init"));
    succeed(strata().arg("backup"));
    succeed(strata().arg("backup"));
    // One summary truncated, and a byte of an index object flipped.
    let summaries: Vec<PathBuf> = {
        let mut all: Vec<PathBuf> = fs::read_dir(dir.path().join("repo/summaries"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        all.sort();
        all
    };
    let old_summary = &summaries[0];
    fs::write(old_summary, &fs::read(old_summary).unwrap()[..10]).unwrap();
    let index_dir = dir.path().join("repo/index");
    let damaged = fs::read_dir(&index_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    flip_byte(&damaged, |len| len / 2);
    let key = format!("index/{}", damaged.file_name().unwrap().to_str().unwrap());

    let server = Server::start(strata(), &dir.path().join("server.log"));
    let url = server.url.as_str();
    // The API lists the readable backup and counts the damaged one.
    let listed = http(url, "GET", "/api/v1/backups", Some(TOKEN), "");
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.json().as_array().unwrap().len(), 1);
    assert_eq!(listed.header("x-damaged-count"), Some("1"));
    let metrics = http(url, "GET", "/metrics", Some(TOKEN), "");
    assert!(
        metrics
            .body
            .contains("strata_storage_up{storage=\"main\"} 1")
            && metrics
                .body
                .contains("strata_backups{storage=\"main\",status=\"damaged\"} 1"),
        "{}",
        metrics.body
    );
    let plan = http(
        url,
        "POST",
        "/api/v1/repair/index",
        Some(TOKEN),
        r#"{"dry_run":true}"#,
    );
    assert_eq!(plan.status, 200, "{}", plan.body);
    // Every old index object goes (a backup writes one for its data and one for its
    // manifest's chunks), the damaged one among them.
    let deleted = plan.json()["index_objects_deleted"].clone();
    assert!(
        deleted
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k.as_str() == Some(key.as_str())),
        "{deleted}"
    );
    assert!(damaged.exists(), "a dry run through the API deleted");

    let done = succeed(strata().args(["--server", url, "repair", "index"]));
    assert!(
        done.contains(&format!("deleted old index object {key}")),
        "{done}"
    );
    let done = succeed(strata().args(["--server", url, "repair", "backups"]));
    assert!(
        done.contains("rebuilt from its manifests (now partial)")
            && done.contains("1 repaired, 1 intact"),
        "{done}"
    );
    let listed = http(url, "GET", "/api/v1/backups", Some(TOKEN), "");
    assert_eq!(
        listed.json().as_array().unwrap().len(),
        2,
        "{}",
        listed.body
    );
    assert_eq!(listed.header("x-damaged-count"), Some("0"));
    let audit = http(url, "GET", "/api/v1/audit?since=1h", Some(TOKEN), "");
    assert!(
        audit.body.contains("repair-index") && audit.body.contains("repair-backups"),
        "{}",
        audit.body
    );
    drop(server);
    let verified = succeed(strata().args(["verify", "--read-data"]));
    assert!(verified.contains("every blob is intact"), "{verified}");
}

#[test]
fn latest_passes_over_a_damaged_newer_backup_and_says_so() {
    let t = two_backups();
    let env = &t.env;
    // Names sort by start time (to the second): damage the one that sorts last.
    let (damaged, kept) = if t.names[0] > t.names[1] {
        (0, 1)
    } else {
        (1, 0)
    };
    let path = env.repo.join(format!("summaries/{}", t.names[damaged]));
    fs::write(&path, b"STRO").unwrap();

    let out = env.path("latest");
    let run = env.run(&["restore", "latest", "--to", out.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("latest is {}", t.names[kept]))
            && stderr.contains(&format!("newer backup {} is damaged", t.names[damaged])),
        "{stderr}"
    );
    assert_same_tree(&t.src[kept], &out);
}
