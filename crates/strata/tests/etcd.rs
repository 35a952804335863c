//! The etcd plugin through the real binary, against a real three-member etcd cluster on
//! loopback ports: a backup of a cluster's topology beside its data, the consistency
//! check across the backup (an excluded key that changes all the time passes, a checked
//! key that changes fails the component), and a restore onto new hosts with rename rules
//! and a dry run.

use crate::common;

use common::{assert_same_tree, assert_success, realistic_tree, Site};
use std::fs;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;
use strata_testkit::etcd::{put, range, EtcdCluster, Writer};

const MEMBER: &str = "/service/pg/members/db1";
const MEMBER_VALUE: &str = r#"{"conn_url":"postgres://10.0.0.1:5432/postgres","name":"db1"}"#;
const LEADER: &str = "/service/pg/leader";

/// A site: a data directory and the config of a cluster whose topology lives in etcd.
/// A site sharing `dir` (and its repository) with others, its files named after `name`:
/// `data_node` backs up `{name}-data`; the etcd members `members` reach `endpoints`.
fn etcd_site(
    dir: &Path,
    name: &str,
    data_node: &str,
    members: &[&str],
    endpoints: &[String],
) -> Site {
    let quoted = |items: &[&str]| {
        items
            .iter()
            .map(|i| format!("{i:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let endpoints: Vec<&str> = endpoints.iter().map(String::as_str).collect();
    let mut text = String::new();
    for m in members {
        text.push_str(&format!("[[nodes]]\nname = \"{m}\"\n"));
    }
    text.push_str(&format!(
        "[[components]]\nname = \"topology\"\nplugin = \"etcd\"\nnodes = [{}]\n\
         [components.etcd]\nendpoints = [{}]\nprefixes = [\"/service/pg/\"]\n\
         exclude_from_check = [\"{LEADER}\"]\n\
         [[components]]\nname = \"data\"\nplugin = \"files\"\nnodes = [\"{data_node}\"]\n",
        quoted(members),
        quoted(&endpoints),
    ));
    Site::new()
        .file(&format!("{name}.toml"))
        .state(&format!("{name}-state"))
        .node(data_node, &format!("{name}-data"))
        .config_extra(&text)
        .build_in(dir)
}

/// A backup during which (after every snapshot, before the data is indexed) the
/// member key is changed through `url` to address `host`; its output.
async fn backup_changing_a_member(
    site: &Site,
    hold: &Path,
    url: &str,
    host: &str,
) -> std::process::Output {
    let held = held_backup(site, hold);
    let value = format!(r#"{{"conn_url":"postgres://{host}:5432/postgres"}}"#);
    put(url, MEMBER.as_bytes(), value.as_bytes()).await;
    fs::write(hold.join("release"), b"").unwrap();
    held.wait_with_output().unwrap()
}

/// A backup held before its first index write (every snapshot taken, the data not
/// yet indexed, so before the check after the data is stored).
fn held_backup(site: &Site, hold: &Path) -> Child {
    let mut backup = site.command();
    backup
        .args(["backup", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    common::backup_held_at_first_index_write(backup, hold)
}

fn component<'a>(summary: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    summary["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no component {name} in {summary}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_topology_is_backed_up_with_the_data_checked_and_restored_onto_new_hosts() {
    let cluster = EtcdCluster::start(3).await;
    let tmp = tempfile::tempdir().unwrap();
    let urls: Vec<String> = (0..3).map(|i| cluster.url(i).to_string()).collect();
    put(&urls[0], MEMBER.as_bytes(), MEMBER_VALUE.as_bytes()).await;
    put(&urls[1], b"/service/pg/config", br#"{"ttl":30}"#).await;
    put(&urls[2], b"/other/app", b"not backed up").await;
    put(&urls[0], LEADER.as_bytes(), b"db1").await;

    let site = etcd_site(tmp.path(), "a", "db1", &["e1", "e2", "e3"], &urls);
    realistic_tree(&site.path("a-data"));
    site.ok(&["init"]);

    // 1. A backup while the leader key changes all the time: complete, both components.
    // Writes the leader key every 100 ms: what Patroni does all the time.
    let writer = Writer::start(&urls[1], Duration::from_millis(100), |n| {
        (LEADER.as_bytes().to_vec(), format!("db1 {n}").into_bytes())
    });
    let hold = tmp.path().join("hold1");
    let held = held_backup(&site, &hold);
    tokio::time::sleep(Duration::from_millis(600)).await;
    fs::write(hold.join("release"), b"").unwrap();
    let out = held.wait_with_output().unwrap();
    let writes = writer.stop();
    assert!(writes >= 3, "the writer wrote during the backup ({writes})");
    let summary: serde_json::Value = serde_json::from_str(&assert_success(
        "backup with an excluded key changing",
        &out,
    ))
    .unwrap();
    assert_eq!(summary["status"], "complete", "{summary}");
    let topology = component(&summary, "topology");
    assert_eq!(topology["status"], "complete", "{topology}");
    assert_eq!(topology["plugin"], "etcd");
    assert_eq!(
        topology["nodes"].as_array().unwrap().len(),
        1,
        "one member reads: {topology}"
    );
    assert_eq!(component(&summary, "data")["status"], "complete");
    let etcd_node = summary["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["component"] == "topology")
        .unwrap();
    assert_eq!(etcd_node["plugin"]["etcd.keys"], "3", "{etcd_node}");
    let good = summary["name"].as_str().unwrap().to_string();

    // 2. A checked key changes between the snapshot and the end of the backup: the
    // topology component fails, and with it the backup (never `latest`).
    let out =
        backup_changing_a_member(&site, &tmp.path().join("hold2"), &urls[2], "10.9.9.9").await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "a failed backup exits 3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let failed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(failed["status"], "failed");
    let topology = component(&failed, "topology");
    assert_eq!(topology["status"], "failed");
    let why = topology["error"].as_str().unwrap_or_default();
    assert!(why.contains("changed while the backup ran"), "{why}");
    assert_eq!(component(&failed, "data")["status"], "complete");
    let latest = site.json(&["show", "latest", "--json"]);
    assert_eq!(latest["name"], good.as_str(), "latest is the good backup");
    // Put the member back as it was for the restore check below.
    put(&urls[0], MEMBER.as_bytes(), MEMBER_VALUE.as_bytes()).await;

    // 2b. With `on_change = "retry"` the same change fails that attempt, recorded as
    // such, and the backup runs again at once (the hold only stops the first attempt):
    // complete, with a topology read after the change, paired with data read after it.
    let plain = fs::read_to_string(site.config()).unwrap();
    let retrying = plain.replacen(
        &format!("exclude_from_check = [\"{LEADER}\"]\n"),
        &format!(
            "exclude_from_check = [\"{LEADER}\"]\non_change = \"retry\"\nchange_retries = 1\n"
        ),
        1,
    );
    assert_ne!(retrying, plain);
    fs::write(site.config(), retrying).unwrap();
    let out =
        backup_changing_a_member(&site, &tmp.path().join("hold3"), &urls[1], "10.8.8.8").await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let retried: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(retried["status"], "complete", "{retried:#}");
    let list = site.json(&["list", "--json"]);
    let attempts: Vec<&serde_json::Value> = list.as_array().unwrap().iter().rev().take(2).collect();
    assert_eq!(attempts[0]["name"], retried["name"]);
    assert_eq!(
        attempts[1]["status"], "failed",
        "the first attempt is recorded: {list:#}"
    );
    let first = site.json(&["show", attempts[1]["name"].as_str().unwrap(), "--json"]);
    let why = component(&first, "topology")["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(why.contains("changed while the backup ran"), "{why}");
    fs::write(site.config(), plain).unwrap();
    put(&urls[0], MEMBER.as_bytes(), MEMBER_VALUE.as_bytes()).await;

    // 3. Restore onto new hosts: an empty one-member etcd and a data node of another
    // name, renaming the old host's name and address.
    let target = EtcdCluster::start(1).await;
    let new_site = etcd_site(
        tmp.path(),
        "b",
        "db9",
        &["n1"],
        &[target.url(0).to_string()],
    );
    let rename = [
        "--rename",
        "db1=newdb1",
        "--rename",
        "10.0.0.1:5432=10.1.0.1:5432",
    ];
    let mut dry = vec![
        "restore",
        good.as_str(),
        "--component",
        "topology",
        "--dry-run",
    ];
    dry.extend(rename);
    let preview = new_site.ok(&dry);
    assert!(
        preview.contains("dry run: nothing was written"),
        "{preview}"
    );
    assert!(!preview.contains("every byte verified"), "{preview}");
    let audit = new_site.ok(&["audit"]);
    assert!(audit.contains("dry run, nothing written"), "{audit}");
    assert!(
        preview.contains("/service/pg/members/newdb1"),
        "the dry run names the renamed key: {preview}"
    );
    assert!(
        range(target.url(0), b"/", 0).await.is_empty(),
        "a dry run writes nothing"
    );

    let mut restore = vec!["restore", good.as_str(), "--map", "db1=db9"];
    restore.extend(rename);
    let said = new_site.ok(&restore);
    assert!(said.contains("etcd: 3 keys written"), "{said}");
    let keys = range(target.url(0), b"/", 0).await;
    let names: Vec<String> = keys
        .iter()
        .map(|(k, _, _)| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "/service/pg/config",
            "/service/pg/leader",
            "/service/pg/members/newdb1"
        ],
        "only the backed-up prefix, renamed"
    );
    let member = String::from_utf8_lossy(&keys[2].1).into_owned();
    assert!(
        member.contains("10.1.0.1:5432") && member.contains("newdb1"),
        "{member}"
    );
    assert_same_tree(&site.path("a-data"), &new_site.path("b-data"));

    // 4. A second restore into the now filled prefix is refused, writing nothing.
    let out = new_site.strata(&["restore", good.as_str(), "--component", "topology"]);
    assert!(
        out.code != Some(0),
        "restoring over existing keys must be refused"
    );
    let err = &out.stderr;
    assert!(err.contains("hold other values"), "{err}");
    assert_eq!(range(target.url(0), b"/", 0).await.len(), 3);
    // The same restore again (as after one that stopped part-way) finds its own keys
    // and goes through, writing nothing new.
    let said = new_site.ok(&restore);
    assert!(said.contains("etcd: 0 keys written"), "{said}");
    assert_eq!(range(target.url(0), b"/", 0).await.len(), 3);

    // 5. With `overwrite = true` the restore without renames writes over the keys that
    // differ (the config, the leader) and adds db1's; none is deleted (newdb1 stays).
    let text = fs::read_to_string(new_site.config()).unwrap();
    let overwriting = text.replacen(
        "[components.etcd]\n",
        "[components.etcd]\noverwrite = true\n",
        1,
    );
    assert_ne!(overwriting, text);
    fs::write(new_site.config(), overwriting).unwrap();
    let said = new_site.ok(&["restore", good.as_str(), "--component", "topology"]);
    assert!(
        said.contains("etcd: 2 keys written (1 new, 1 changed"),
        "{said}"
    );
    let names: Vec<String> = range(target.url(0), b"/", 0)
        .await
        .iter()
        .map(|(k, _, _)| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert!(
        names.contains(&"/service/pg/members/db1".to_string())
            && names.contains(&"/service/pg/members/newdb1".to_string()),
        "{names:?}"
    );
    drop(cluster);
}
