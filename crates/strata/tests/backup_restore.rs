//! End-to-end backups and restores through the real `strata` binary.

use crate::common;

use common::*;
use std::fs;

#[test]
fn a_realistic_tree_restores_byte_for_byte_and_attribute_for_attribute() {
    let env = Env::new();
    let src = env.path("src");
    realistic_tree(&src);
    let summary = env.json(&["backup", src.to_str().unwrap(), "--node-name", "db1"]);
    assert_eq!(summary["status"], "complete");
    assert_eq!(summary["nodes"][0]["warning_count"], 0);

    let out = env.path("restored");
    let stdout = env.ok(&["restore", "latest", "--to", out.to_str().unwrap()]);
    assert!(stdout.contains("every byte verified"), "{stdout}");
    assert_same_tree(&src, &out);

    // Restoring again onto the complete tree keeps every file (resume).
    let again = env.json(&["restore", "latest", "--to", out.to_str().unwrap()]);
    assert_eq!(again["nodes"][0]["bytes"], 0);
    assert_eq!(again["nodes"][0]["files_kept"], again["nodes"][0]["files"]);
    assert_same_tree(&src, &out);
}

#[test]
fn a_resumed_restore_rewrites_only_what_is_wrong() {
    let env = Env::new();
    let src = env.path("src");
    realistic_tree(&src);
    env.ok(&["backup", src.to_str().unwrap()]);
    let out = env.path("out");
    env.ok(&["restore", "latest", "--to", out.to_str().unwrap()]);
    // Damage one restored file, delete another: a second restore repairs exactly those.
    fs::write(out.join("random.bin"), b"truncated by a crash").unwrap();
    fs::remove_file(out.join("base/16384/2619")).unwrap();
    let report = env.json(&["restore", "latest", "--to", out.to_str().unwrap()]);
    let node = &report["nodes"][0];
    assert_eq!(node["bytes"], 3 * 1024 * 1024 + 5 + 37 * 8192);
    assert_same_tree(&src, &out);
}

#[test]
fn the_files_cache_skips_unchanged_files_and_dedup_stores_changes_only() {
    let env = Env::new();
    let src = env.path("src");
    realistic_tree(&src);
    // Files changed within 2 s of a backup's start are read again by the next one (their
    // bytes may change without their stamp changing): let the new tree age past that.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let first = env.json(&["backup", src.to_str().unwrap()]);
    let files = first["nodes"][0]["files"].as_u64().unwrap();
    assert!(first["nodes"][0]["files_read"].as_u64().unwrap() > 50);

    // Unchanged data: no file is read, nothing new is stored.
    let second = env.json(&["backup", src.to_str().unwrap()]);
    assert_eq!(second["nodes"][0]["files"].as_u64().unwrap(), files);
    assert_eq!(second["nodes"][0]["files_read"], 0);
    assert_eq!(second["nodes"][0]["new_bytes"], 0);

    // One page of the table changes: one file is read, about one chunk is stored.
    let table = src.join("base/16384/1259");
    let mut pages = fs::read(&table).unwrap();
    pages[300 * 8192..301 * 8192].copy_from_slice(&pseudo_random(8192, 99));
    fs::write(&table, &pages).unwrap();
    let third = env.json(&["backup", src.to_str().unwrap()]);
    assert_eq!(third["nodes"][0]["files_read"], 1);
    let new_bytes = third["nodes"][0]["new_bytes"].as_u64().unwrap();
    assert!(
        new_bytes > 0 && new_bytes < 700 * 1024,
        "one changed page stored {new_bytes} bytes"
    );

    let out = env.path("out");
    env.ok(&["restore", "latest", "--to", out.to_str().unwrap()]);
    assert_same_tree(&src, &out);

    // A restart loses nothing: the cache is on disk in the state directory.
    assert!(env.state.join("files-cache").exists());
}

#[test]
fn a_changed_page_of_a_new_repository_stores_one_32_kib_chunk_and_nothing_beside_it() {
    // Incompressible pages, so what is stored is what was cut: with content-defined page
    // chunks (~128 KiB, and a moved cut re-storing a neighbour) this stored 128 KiB or more.
    let env = Env::new();
    let src = env.path("pages");
    fs::create_dir_all(&src).unwrap();
    let table = src.join("16385");
    let mut pages = pseudo_random(512 * 8192, 41);
    fs::write(&table, &pages).unwrap();
    env.json(&["backup", src.to_str().unwrap()]);

    for (round, page) in [3usize, 200, 201, 509].into_iter().enumerate() {
        pages[page * 8192..(page + 1) * 8192]
            .copy_from_slice(&pseudo_random(8192, 50 + round as u64));
        fs::write(&table, &pages).unwrap();
        let next = env.json(&["backup", src.to_str().unwrap()]);
        let node = &next["nodes"][0];
        let (new_bytes, new_blobs) = (
            node["new_bytes"].as_u64().unwrap(),
            node["new_blobs"].as_u64().unwrap(),
        );
        // One 32 KiB data chunk, plus the manifest's chunk that lists the file (a few KiB).
        assert!(
            (32 * 1024..48 * 1024).contains(&new_bytes) && new_blobs <= 2,
            "page {page}: {new_bytes} bytes in {new_blobs} blobs"
        );
    }
    let out = env.path("out");
    env.ok(&["restore", "latest", "--to", out.to_str().unwrap()]);
    assert_eq!(fs::read(out.join("16385")).unwrap(), pages);
}

#[test]
fn a_cluster_config_backs_up_every_in_process_node_with_cross_node_dedup() {
    let env = Env::empty();
    for node in ["db1", "db2", "db3"] {
        let dir = env.path(&format!("data/{node}"));
        fs::create_dir_all(&dir).unwrap();
        // The same large base on every node, plus a file of its own.
        fs::write(dir.join("shared.bin"), pseudo_random(4 << 20, 7)).unwrap();
        fs::write(dir.join("own.txt"), format!("I am {node}\n")).unwrap();
    }
    fs::write(
        env.path("strata.toml"),
        r#"
default_storage = "main"
[storages.main]
type = "local"
path = "cluster-repo"
[[nodes]]
name = "db1"
roots = ["data/db1"]
[[nodes]]
name = "db2"
roots = ["data/db2"]
[[nodes]]
name = "db3"
roots = ["data/db3"]
"#,
    )
    .unwrap();
    let cmd = |args: &[&str]| succeed(env.command().env_remove("STRATA_REPO").args(args));
    cmd(&["init"]);
    let summary: serde_json::Value = serde_json::from_str(&cmd(&["backup", "--json"])).unwrap();
    assert_eq!(summary["status"], "complete");
    assert_eq!(summary["nodes"].as_array().unwrap().len(), 3);
    let new_total: u64 = summary["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["new_bytes"].as_u64().unwrap())
        .sum();
    assert!(
        new_total < (4 << 20) + 64 * 1024,
        "the shared file was stored more than once: {new_total}"
    );
    assert!(env.path("cluster-repo/config").exists());

    let listing = cmd(&["list"]);
    assert!(listing.contains("complete"), "{listing}");
    // All nodes: one directory per node. One node: straight into the target.
    let all = env.path("all");
    cmd(&["restore", "latest", "--to", all.to_str().unwrap()]);
    for node in ["db1", "db2", "db3"] {
        assert_same_tree(&env.path(&format!("data/{node}")), &all.join(node));
    }
    let one = env.path("one");
    cmd(&[
        "restore",
        "latest",
        "--node",
        "db2",
        "--to",
        one.to_str().unwrap(),
    ]);
    assert_same_tree(&env.path("data/db2"), &one);
    let ls = cmd(&["ls", "latest", "--node", "db3"]);
    assert!(ls.contains("db3/own.txt") && !ls.contains("db1/"), "{ls}");
}

#[test]
fn a_backup_missing_a_node_is_recorded_as_failed_and_never_latest() {
    let env = Env::empty();
    let good = env.path("good");
    fs::create_dir_all(&good).unwrap();
    fs::write(good.join("f"), b"v1").unwrap();
    let config = format!(
        "[storages.local]\ntype = \"local\"\npath = \"repo\"\n[[nodes]]\nname = \"a\"\nroots = [\"good\"]\n[[nodes]]\nname = \"b\"\nroots = [\"{}\"]\n",
        "missing-dir"
    );
    fs::write(env.path("strata.toml"), &config).unwrap();
    let run = |args: &[&str]| {
        env.command()
            .env_remove("STRATA_REPO")
            .args(args)
            .output()
            .unwrap()
    };
    assert!(run(&["init"]).status.success());
    // Node b has no data directory yet: the backup is recorded as failed, exit code 3.
    let failed = run(&["backup", "--json"]);
    assert_eq!(failed.status.code(), Some(3));
    let summary: serde_json::Value = serde_json::from_slice(&failed.stdout).unwrap();
    assert_eq!(summary["status"], "failed");
    let b = &summary["nodes"][1];
    assert_eq!(b["status"], "failed");
    assert!(b["error"].as_str().unwrap().contains("missing-dir"), "{b}");

    // No complete backup yet: `latest` refuses rather than restoring a failed one.
    let out = run(&["restore", "latest", "--to", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no complete backup"));

    fs::create_dir_all(env.path("missing-dir")).unwrap();
    fs::write(good.join("f"), b"v2").unwrap();
    assert!(run(&["backup"]).status.success());
    fs::write(good.join("f"), b"v3").unwrap();
    fs::remove_dir(env.path("missing-dir")).unwrap();
    assert_eq!(run(&["backup"]).status.code(), Some(3));
    // latest = the complete backup holding v2, not the newer failed one holding v3.
    assert!(run(&["restore", "latest", "--node", "a", "--to", "r"])
        .status
        .success());
    assert_eq!(fs::read(env.path("r/f")).unwrap(), b"v2");
    let list: serde_json::Value = serde_json::from_slice(&run(&["list", "--json"]).stdout).unwrap();
    let statuses: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(statuses, ["failed", "complete", "failed"]);
}

#[test]
fn show_ls_delete_and_verify_work_on_named_backups() {
    let env = Env::new();
    let src = env.path("src");
    realistic_tree(&src);
    let first = env.json(&["backup", src.to_str().unwrap(), "--node-name", "pg"]);
    let name = first["name"].as_str().unwrap().to_string();
    fs::write(src.join("new-file"), b"new").unwrap();
    env.ok(&["backup", src.to_str().unwrap(), "--node-name", "pg"]);

    let show = env.ok(&["show", &name]);
    assert!(
        show.contains(&name) && show.contains("complete") && show.contains("pg"),
        "{show}"
    );
    let ls = env.ok(&["ls", &name, "conf.d"]);
    assert!(ls.contains("pg/conf.d/07.conf"), "{ls}");
    assert!(!ls.contains("one-byte"), "{ls}");
    let entries = env.json(&["ls", &name, "--node", "pg", "link-relative"]);
    assert_eq!(entries[0]["type"], "symlink");

    let verify = env.ok(&["verify", "--read-data"]);
    assert!(verify.contains("no problems found"), "{verify}");

    env.ok(&["delete", &name]);
    let list = env.json(&["list"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(env.fails(&["show", &name], 2).contains("no backup named"));
    // The remaining backup is intact.
    env.ok(&["verify", "--read-data"]);
    let out = env.path("out");
    env.ok(&["restore", "latest", "--to", out.to_str().unwrap()]);
    assert_same_tree(&src, &out);
}

#[test]
fn unencrypted_repositories_need_no_password_and_still_verify() {
    let env = Env::empty();
    fs::write(
        env.path("strata.toml"),
        "[repository]\nencryption = \"none\"\n",
    )
    .unwrap();
    let src = env.path("src");
    realistic_tree(&src);
    let run = |args: &[&str]| succeed(env.command().env_remove("STRATA_PASSWORD").args(args));
    run(&["init"]);
    run(&["backup", src.to_str().unwrap()]);
    run(&[
        "restore",
        "latest",
        "--to",
        env.path("out").to_str().unwrap(),
    ]);
    assert_same_tree(&src, &env.path("out"));
    run(&["verify", "--read-data"]);
}

#[test]
fn config_default_prints_every_documented_setting() {
    let env = Env::empty();
    let text = env.ok(&["config", "default"]);
    for key in [
        "default_storage",
        "compression_level",
        "pack_size_mib",
        "encryption",
        "[password]",
        "[[nodes]]",
    ] {
        assert!(text.contains(key), "missing {key}");
    }
    let shown = env.ok(&["config", "show"]);
    assert!(shown.contains("compression_level = 3"), "{shown}");
    assert!(!shown.contains(PASSWORD));
}

/// What `strata config default` prints must load back as exactly the defaults, section by
/// section (server, tables, pgq, postgres, ...), wherever each section's type lives: a
/// setting documented with a value other than its default, or a section the printed file
/// leaves out, shows up as a difference in `config show`.
#[test]
fn config_default_loads_back_as_exactly_the_defaults() {
    let env = Env::empty();
    let defaults = env.ok(&["config", "show"]);
    let text = env.ok(&["config", "default"]);
    fs::write(env.path("strata.toml"), &text).unwrap();
    let loaded = env.ok(&["config", "show"]);
    assert_eq!(loaded, defaults, "`config default` is not the defaults");
    for section in [
        "[server]",
        "[tables]",
        "[pgq]",
        "[postgres]",
        "[retention]",
        "[gc]",
    ] {
        assert!(text.contains(section), "`config default` lacks {section}");
        assert!(loaded.contains(section), "`config show` lacks {section}");
    }
    // A changed default is seen: the check compares values, not only keys.
    fs::write(
        env.path("strata.toml"),
        text.replace("wakeup_min_interval = 0.25", "wakeup_min_interval = 0.5"),
    )
    .unwrap();
    assert_ne!(env.ok(&["config", "show"]), defaults);
}

#[test]
fn excluded_paths_are_left_out() {
    let env = Env::new();
    let src = env.path("src");
    realistic_tree(&src);
    env.ok(&[
        "backup",
        src.to_str().unwrap(),
        "--exclude",
        "*.conf",
        "--exclude",
        "base/*",
    ]);
    let entries = env.json(&["ls", "latest"]);
    let paths: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"conf.d") && paths.contains(&"base") && paths.contains(&"PG_VERSION"));
    assert!(
        !paths
            .iter()
            .any(|p| p.ends_with(".conf") || p.starts_with("base/")),
        "{paths:?}"
    );
}

/// A table file of `pages` 8 KiB pages of rows, each row one of 2,000 (of about 100
/// bytes) picked at random: a page repeats little within itself and much of what the
/// table's other pages hold, as real tables do.
fn rows_table(pages: usize, seed: u64) -> Vec<u8> {
    let rows: Vec<Vec<u8>> = (0..2000u64)
        .map(|r| {
            let h = r.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            format!(
                "({r:05}, 'customer-{:06}', '{:08x}', 'street {:05}', 'Tallinn', {:07}.{:02});",
                h % 999_983,
                (h >> 17) as u32,
                (h >> 7) % 99_991,
                (h >> 3) % 9_999_991,
                r % 100
            )
            .into_bytes()
        })
        .collect();
    let mut state = seed.wrapping_add(1).wrapping_mul(0x2545_F491_4F6C_DD1D);
    let mut out = Vec::with_capacity(pages * 8192);
    for _ in 0..pages {
        let end = out.len() + 8192;
        while out.len() < end {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let row = &rows[(state % rows.len() as u64) as usize];
            out.extend_from_slice(&row[..row.len().min(end - out.len())]);
        }
    }
    out
}

/// The `dicts/` objects of the repository.
fn dictionaries(env: &Env) -> Vec<std::path::PathBuf> {
    match fs::read_dir(env.repo.join("dicts")) {
        Ok(dir) => dir.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// What a backup's node stored for `raw` bytes of new data, per byte.
fn stored_per_byte(summary: &serde_json::Value, raw: u64) -> f64 {
    summary["nodes"][0]["new_bytes"].as_f64().unwrap() / raw as f64
}

#[test]
fn page_files_train_a_dictionary_that_later_backups_use_and_restores_verify_and_gc_keep() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    // 72 MiB of pages: the first 64 MiB of small blobs are the samples.
    for t in 0..3u64 {
        fs::write(src.join(format!("1638{t}")), rows_table(3072, t)).unwrap();
    }
    let first = env.json(&["backup", src.to_str().unwrap()]);
    let dicts = dictionaries(&env);
    assert_eq!(dicts.len(), 1, "one dictionary: {dicts:?}");

    // A backup of new tables compresses every page with it from the first.
    for t in 3..5u64 {
        fs::write(src.join(format!("1638{t}")), rows_table(1024, t)).unwrap();
    }
    let second = env.json(&["backup", src.to_str().unwrap()]);
    assert_eq!(dictionaries(&env), dicts, "no second dictionary");
    // The first backup compressed most of its pages without it.
    let bytes = |summary: &serde_json::Value| summary["nodes"][0]["bytes"].as_u64().unwrap();
    let (with, without) = (
        stored_per_byte(&second, bytes(&second) - bytes(&first)),
        stored_per_byte(&first, bytes(&first)),
    );
    assert!(
        with < 0.8 * without,
        "with the dictionary {with:.3} stored per byte, mostly without it {without:.3}"
    );
    let out = env.path("out");
    env.ok(&["restore", "latest", "--to", out.to_str().unwrap()]);
    assert_same_tree(&src, &out);

    // Garbage collection keeps it; the other backup still restores and verifies.
    let names = env.backup_names();
    env.ok(&["delete", &names[0]]);
    env.ok(&["gc"]);
    assert_eq!(dictionaries(&env), dicts);
    fs::remove_dir_all(&out).unwrap();
    env.ok(&["restore", "latest", "--to", out.to_str().unwrap()]);
    assert_same_tree(&src, &out);
    env.ok(&["verify", "--read-data"]);

    // Without it, its blobs are damage, named, and nothing is restored from them.
    let name = dicts[0].file_name().unwrap().to_str().unwrap().to_string();
    fs::remove_file(&dicts[0]).unwrap();
    let verify = env.run(&["verify", "--read-data"]);
    assert!(!verify.status.success());
    assert!(
        String::from_utf8_lossy(&verify.stderr).contains(&format!("dicts/{name}")),
        "{verify:?}"
    );
    let broken = env.path("broken");
    let restore = env.run(&["restore", "latest", "--to", broken.to_str().unwrap()]);
    assert!(!restore.status.success());
    assert!(
        String::from_utf8_lossy(&restore.stderr).contains(&format!("dicts/{name}")),
        "{restore:?}"
    );
}

/// A tree of 17,000 small files: its packs and index objects are cut at 16,384 blobs
/// (more than one index object), and a host with an empty state directory, whose first
/// refresh reads more records than it holds at once (8,192) and spills them to its local
/// table, restores every file; a second fresh host verifies every blob, and the table the
/// first left serves a second restore.
#[test]
fn a_new_host_reads_an_index_larger_than_it_holds_at_once_and_restores_every_file() {
    let env = Env::new();
    let src = env.path("src");
    for dir in 0..17 {
        let sub = src.join(format!("d{dir:02}"));
        fs::create_dir_all(&sub).unwrap();
        for n in 0..1000 {
            fs::write(sub.join(format!("f{n:04}")), format!("file {dir} {n}\n")).unwrap();
        }
    }
    let summary = env.json(&["backup", src.to_str().unwrap(), "--node-name", "n1"]);
    assert_eq!(summary["status"], "complete");
    let objects = fs::read_dir(env.repo.join("index")).unwrap().count();
    assert!(objects >= 2, "17,000 blobs in {objects} index object(s)");

    fs::remove_dir_all(&env.state).unwrap();
    let out = env.path("restored");
    let stdout = env.ok(&["restore", "latest", "--to", out.to_str().unwrap()]);
    assert!(stdout.contains("every byte verified"), "{stdout}");
    assert_same_tree(&src, &out);

    let again = env.path("again");
    env.ok(&["restore", "latest", "--to", again.to_str().unwrap()]);
    assert_same_tree(&src, &again);

    fs::remove_dir_all(&env.state).unwrap();
    let verify = env.ok(&["verify", "--read-data"]);
    assert!(!verify.contains("damaged"), "{verify}");
}
