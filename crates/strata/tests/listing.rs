//! The backup listing end to end: backups in two storages, a deleted one, a damaged
//! summary, a missing listing page and a lost listing entry; `list`, `--json`, pages with
//! cursors (CLI and API), `show latest`, `/metrics` and a restore through the API of a
//! backup held in the storage that is not the default, each giving the right answer and
//! saying when it read summaries by themselves.

use crate::common;

use common::server::{http, Server};
use common::Site;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const TOKEN: &str = "listing-test-token";

/// The site: node `db1` backing up `data` into the storages `main` and `old`, `old` the
/// default one until [`default_main`] moves it.
fn site() -> Site {
    Site::new()
        .default_storage("old")
        .storage("main", "main")
        .storage("old", "old")
        .node("db1", "data")
        .token(TOKEN)
        .build()
}

/// Makes `main` the default storage.
fn default_main(site: &Site) {
    let text = fs::read_to_string(site.config()).unwrap();
    let text = text.replace("default_storage = \"old\"", "default_storage = \"main\"");
    fs::write(site.config(), text).unwrap();
}

/// Every file under `dir`, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn names_in(repo: &Path) -> BTreeSet<String> {
    files(&repo.join("summaries"))
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
        .collect()
}

fn row_names(rows: &serde_json::Value) -> Vec<String> {
    rows.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] != "damaged")
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

fn wait_done(url: &str, id: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = http(
            url,
            "GET",
            &format!("/api/v1/operations/{id}"),
            Some(TOKEN),
            "",
        )
        .json();
        if status["state"] != "running" {
            return status;
        }
        assert!(Instant::now() < deadline, "operation {id} never ended");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn listings_page_reconcile_with_the_summaries_and_say_when_they_fell_back() {
    let site = site();
    common::realistic_tree(&site.path("data"));

    // Two backups in storage `old`, then the default moves to `main`: four there.
    // Names in the order the backups were made (names alone sort by the second only).
    let backup = || {
        site.json(&["--json", "backup"])["name"]
            .as_str()
            .unwrap()
            .to_string()
    };
    site.ok(&["init"]);
    let old_names: Vec<String> = (0..2).map(|_| backup()).collect();
    default_main(&site);
    site.ok(&["init"]);
    let main_names: Vec<String> = (0..4).map(|_| backup()).collect();
    let (main, old) = (site.path("main"), site.path("old"));
    assert_eq!((names_in(&main).len(), names_in(&old).len()), (4, 2));

    // A clean listing: every backup, oldest first, and no note.
    let out = site.strata(&["--json", "list"]);
    assert!(out.code == Some(0));
    assert!(!out.stderr.contains("note"), "{}", out.stderr);
    let all: Vec<String> = old_names.iter().chain(&main_names).cloned().collect();
    assert_eq!(row_names(&serde_json::from_str(&out.stdout).unwrap()), all);

    // Delete one; its page is not rewritten until a compaction, but it is gone at once.
    site.ok(&["delete", &main_names[0]]);
    let mut expected: Vec<String> = all
        .iter()
        .filter(|n| **n != main_names[0])
        .cloned()
        .collect();
    assert_eq!(row_names(&site.json(&["--json", "list"])), expected);

    // A writer that stopped between a summary and its entry: the entry of a new backup
    // goes. A listing page of `old` goes too. A summary of `main` is damaged.
    let newest = &backup();
    expected.push(newest.clone());
    let entry = files(&main.join("listing"))
        .into_iter()
        .find(|p| {
            p.to_str().unwrap().contains("entries")
                && p.to_str().unwrap().ends_with(newest.as_str())
        })
        .expect("the newest backup's entry is still loose");
    fs::remove_file(entry).unwrap();
    for page in files(&old.join("listing")) {
        fs::remove_file(page).unwrap();
    }
    let damaged = &main_names[1];
    std::thread::sleep(Duration::from_millis(20));
    let summary = main.join("summaries").join(damaged);
    let bytes = fs::read(&summary).unwrap();
    fs::write(&summary, &bytes[..bytes.len() / 2]).unwrap();
    expected.retain(|n| n != damaged);

    let out = site.strata(&["--json", "list"]);
    let stderr = out.stderr;
    assert!(out.code == Some(0), "{stderr}");
    let rows: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(row_names(&rows), expected);
    let bad: Vec<&serde_json::Value> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "damaged")
        .collect();
    assert_eq!(bad.len(), 1, "{rows:#}");
    assert_eq!(bad[0]["name"], damaged.as_str());
    assert!(
        stderr.contains("strata: note: storage old:")
            && stderr.contains("read from their summaries"),
        "{stderr}"
    );
    assert!(stderr.contains("strata: note: storage main:"), "{stderr}");
    let table = site.strata(&["list"]);
    let stdout = table.stdout;
    assert!(
        expected.iter().all(|n| stdout.contains(n.as_str())),
        "{stdout}"
    );

    // Pages of two, newest first, by cursor: together every backup, once.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut args = vec!["--json", "list", "--limit", "2"];
        if let Some(c) = &cursor {
            args.extend(["--cursor", c.as_str()]);
        }
        let page = site.json(&args);
        let mut names = row_names(&page["backups"]);
        assert!(names.len() <= 2);
        names.reverse();
        paged.extend(names);
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    paged.reverse();
    assert_eq!(paged, expected);

    // `show latest`: the newest complete backup, read from the listing and one summary.
    let latest = site.json(&["--json", "show", "latest"]);
    assert_eq!(latest["name"], newest.as_str());

    // The server: pages by cursor over both storages, the note in a header.
    let server = Server::start(site.command(), &site.path("server.log"));
    let url = server.url.as_str();
    let mut api_paged = Vec::new();
    let mut storages = BTreeSet::new();
    let mut path = "/api/v1/backups?limit=2".to_string();
    let mut noted = false;
    loop {
        let reply = http(url, "GET", &path, Some(TOKEN), "");
        assert_eq!(reply.status, 200, "{}", reply.body);
        // Every summary, the damaged one included.
        assert_eq!(reply.header("x-total-count"), Some("6"));
        noted |= reply.header("x-listing-note").is_some();
        for row in reply.json().as_array().unwrap() {
            api_paged.push(row["name"].as_str().unwrap().to_string());
            storages.insert(row["storage"].as_str().unwrap().to_string());
        }
        match reply.header("x-next-cursor") {
            Some(next) => path = format!("/api/v1/backups?limit=2&cursor={next}"),
            None => break,
        }
    }
    api_paged.reverse();
    assert_eq!(api_paged, expected);
    assert!(noted, "a page that read summaries by themselves says so");
    assert_eq!(
        storages,
        BTreeSet::from(["main".to_string(), "old".to_string()])
    );
    let bad_cursor = http(
        url,
        "GET",
        "/api/v1/backups?limit=2&cursor=nope",
        Some(TOKEN),
        "",
    );
    assert_eq!(bad_cursor.status, 400, "{}", bad_cursor.body);
    // A misspelt parameter is refused, not ignored (which would answer every backup).
    let misspelt = http(url, "GET", "/api/v1/backups?limt=2", Some(TOKEN), "");
    assert_eq!(misspelt.status, 400, "{}", misspelt.body);
    assert!(misspelt.body.contains("limt"), "{}", misspelt.body);
    // The older form still answers every backup, oldest first.
    let everything = http(url, "GET", "/api/v1/backups", Some(TOKEN), "").json();
    assert_eq!(row_names(&everything), expected);

    // A backup of the storage that is not the default: shown and restored.
    let shown = http(
        url,
        "GET",
        &format!("/api/v1/backups/{}", old_names[0]),
        Some(TOKEN),
        "",
    );
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert_eq!(shown.json()["storage"], "old");
    let started = http(
        url,
        "POST",
        "/api/v1/restores",
        Some(TOKEN),
        &format!("{{\"backup\": \"{}\"}}", old_names[0]),
    );
    assert_eq!(started.status, 202, "{}", started.body);
    let id = started.json()["operation"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let done = wait_done(url, &id);
    assert_eq!(done["state"], "succeeded", "{done:#}");

    // /metrics: the default storage's backups from its listing.
    let metrics = http(url, "GET", "/metrics", Some(TOKEN), "").body;
    assert!(
        metrics.contains("strata_backups{storage=\"main\",status=\"complete\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("strata_backups{storage=\"main\",status=\"damaged\"} 1"),
        "{metrics}"
    );

    // `repair backups` rebuilds the damaged summary; a compaction after it (and the
    // delete before) leaves a listing with nothing to fall back on in `main`.
    site.ok(&["repair", "backups"]);
    let out = site.strata(&["--json", "list"]);
    let stderr = out.stderr;
    assert!(!stderr.contains("storage main:"), "{stderr}");
    let rows: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(row_names(&rows).contains(damaged));

    // The server keeps its listing between pages: a backup made by another process
    // shows once its writer replaced the listing generation (the server checks it at most
    // once a second; the deadline here is below the minute after which it reconciles
    // anyway), and a delete through the server shows at once.
    let fresh = backup();
    let newest_row = || {
        let page = http(url, "GET", "/api/v1/backups?limit=1", Some(TOKEN), "");
        assert_eq!(page.status, 200, "{}", page.body);
        row_names(&page.json())
    };
    let shown = (0..300).any(|_| {
        let seen = newest_row() == [fresh.clone()];
        if !seen {
            std::thread::sleep(Duration::from_millis(100));
        }
        seen
    });
    assert!(shown, "a new backup shows in the server's pages");
    let deleted = http(
        url,
        "DELETE",
        &format!("/api/v1/backups/{fresh}"),
        Some(TOKEN),
        "",
    );
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(
        newest_row(),
        std::slice::from_ref(newest),
        "a deleted backup is gone at once"
    );
}
