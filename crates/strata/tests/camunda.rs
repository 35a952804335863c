//! The `camunda` component and `http` components that speak real backup APIs, against the
//! real binary and fakes of Zeebe's gateway, Operate, Tasklist, Optimize and
//! Elasticsearch (`strata_testkit::camunda`, written from the API shapes Camunda and
//! Elastic publish): Camunda's documented order, one backup id across every part,
//! answers larger than 4 KiB, a call that fails for a while, parts deleted with strata's
//! backups and after a failed attempt, an optional part or component that is down, a
//! pause slower than its timeout, a resume that fails, the 8.8 path, and the restore
//! checklist.
//!
//! Every wait is bounded by the components' own timeouts (a few seconds here).

use crate::common;

use common::{Out, Site};
use serde_json::Value;
use strata_testkit::camunda::{Fake, Role};

/// One Camunda cluster's fakes.
struct Cluster {
    zeebe: Fake,
    operate: Fake,
    tasklist: Fake,
    optimize: Fake,
    elastic: Fake,
}

impl Cluster {
    fn start() -> Cluster {
        Cluster {
            // 48 partitions: a state answer of about 18 KB (more than 4 KiB).
            zeebe: Fake::start(Role::Zeebe { partitions: 48 }),
            operate: Fake::start(Role::WebApp { optimize: false }),
            tasklist: Fake::start(Role::WebApp { optimize: false }),
            optimize: Fake::start(Role::WebApp { optimize: true }),
            elastic: Fake::start(Role::Elastic),
        }
    }

    fn all(&self) -> [&Fake; 5] {
        [
            &self.operate,
            &self.tasklist,
            &self.optimize,
            &self.elastic,
            &self.zeebe,
        ]
    }

    /// Every request to every fake, in the order they arrived, as `part: METHOD PATH`.
    fn timeline(&self) -> Vec<String> {
        let names = ["operate", "tasklist", "optimize", "elastic", "zeebe"];
        let mut all: Vec<(std::time::Instant, String)> = Vec::new();
        for (name, fake) in names.iter().zip(self.all()) {
            for r in fake.log() {
                all.push((r.at, format!("{name}: {}", r.line)));
            }
        }
        all.sort();
        all.into_iter().map(|(_, line)| line).collect()
    }
}

/// A site with one files node and `components` (TOML), initialised.
fn camunda_site(components: &str) -> Site {
    let site = Site::new()
        .node("n1", "data")
        .config_extra(&format!(
            "[[components]]\nname = \"data\"\nplugin = \"files\"\nnodes = [\"n1\"]\n{components}\n"
        ))
        .build();
    let data = site.path("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("a.txt"), "alpha\n").unwrap();
    let init = site.strata(&["init"]);
    assert_eq!(init.code, Some(0), "{init}");
    site
}

fn backup(site: &Site) -> (Out, Value) {
    let out = site.strata(&["backup", "--json"]);
    let summary = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("backup printed no summary ({e}): {out}"));
    (out, summary)
}

/// The JSON files under `state/<sub>` (none when it does not exist).
fn state_files(site: &Site, sub: &str) -> Vec<String> {
    std::fs::read_dir(site.dir().join("state").join(sub))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".json"))
                .collect()
        })
        .unwrap_or_default()
}

/// The engine-parts ledger's files.
fn ledger(site: &Site) -> Vec<String> {
    state_files(site, "engine-parts")
}

/// Replaces the components' TOML (the rest of the configuration stays).
fn reconfigure(site: &Site, components: &str) {
    let text = std::fs::read_to_string(site.config()).unwrap();
    let (head, _) = text
        .split_once("[[components]]\nname = \"camunda\"")
        .unwrap();
    std::fs::write(site.config(), format!("{head}{components}")).unwrap();
}

fn pause_records(site: &Site) -> Vec<String> {
    state_files(site, "pauses")
}

/// The `camunda` component's TOML over `cluster`, with `extra` settings.
fn camunda(cluster: &Cluster, extra: &str) -> String {
    format!(
        r#"[[components]]
name = "camunda"
plugin = "camunda"
[components.camunda]
zeebe = "{zeebe}"
operate = "{operate}"
tasklist = "{tasklist}"
optimize = "{optimize}"
elasticsearch = "{elastic}"
snapshot_repository = "camunda"
poll = "50ms"
timeout = "20s"
connect_timeout = "1s"
{extra}
"#,
        zeebe = cluster.zeebe.url,
        operate = cluster.operate.url,
        tasklist = cluster.tasklist.url,
        optimize = cluster.optimize.url,
        elastic = cluster.elastic.url,
    )
}

fn component<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no component {name}: {summary:#}"))
}

fn index_of(timeline: &[String], pred: impl Fn(&str) -> bool) -> usize {
    timeline
        .iter()
        .position(|l| pred(l))
        .unwrap_or_else(|| panic!("not in {timeline:#?}"))
}

fn last_index_of(timeline: &[String], pred: impl Fn(&str) -> bool) -> usize {
    timeline
        .iter()
        .rposition(|l| pred(l))
        .unwrap_or_else(|| panic!("not in {timeline:#?}"))
}

#[test]
fn a_camunda_backup_follows_the_documented_order_with_one_id_and_records_every_part() {
    let cluster = Cluster::start();
    cluster.zeebe.set(|k| k.polls_to_finish = 2);
    cluster.operate.set(|k| k.polls_to_finish = 1);
    let site = camunda_site(&camunda(&cluster, ""));
    let (out, summary) = backup(&site);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(summary["status"], "complete", "{summary:#}");
    let part = component(&summary, "camunda");
    assert_eq!(part["status"], "complete", "{part:#}");
    let recorded = &part["external"];
    let id = recorded["backup_id"].as_str().unwrap().to_string();
    assert!(
        id.parse::<u64>().unwrap() > 1_700_000_000_000,
        "{recorded:#}"
    );
    assert_eq!(recorded["operate"], "COMPLETED", "{recorded:#}");
    assert_eq!(recorded["tasklist"], "COMPLETED", "{recorded:#}");
    assert_eq!(recorded["optimize"], "COMPLETE", "{recorded:#}");
    assert_eq!(recorded["elasticsearch"], "SUCCESS", "{recorded:#}");
    assert_eq!(
        recorded["zeebe"], "COMPLETED (48 partitions)",
        "{recorded:#}"
    );

    // Camunda's order: every web application done before the pause; the records'
    // snapshot, then Zeebe's backup, under the pause; the resume last.
    let t = cluster.timeline();
    let pause = index_of(&t, |l| {
        l == "zeebe: POST /actuator/exporting/pause?soft=true"
    });
    for app in ["operate", "tasklist", "optimize"] {
        let done = last_index_of(&t, |l| {
            l.starts_with(&format!("{app}: GET /actuator/backups/{id}"))
        });
        assert!(done < pause, "{app} finished before the pause: {t:#?}");
    }
    let records = index_of(&t, |l| {
        l == format!("elastic: PUT /_snapshot/camunda/camunda_zeebe_records_backup_{id}")
    });
    let zeebe = index_of(&t, |l| l == "zeebe: POST /actuator/backups");
    let zeebe_done = last_index_of(&t, |l| l == format!("zeebe: GET /actuator/backups/{id}"));
    let resume = index_of(&t, |l| l == "zeebe: POST /actuator/exporting/resume");
    assert!(
        pause < records && records < zeebe && zeebe < zeebe_done && zeebe_done < resume,
        "{t:#?}"
    );
    assert_eq!(resume, t.len() - 1, "the resume is the last call: {t:#?}");
    // One id across every part, as a number in the body.
    for fake in [
        &cluster.operate,
        &cluster.tasklist,
        &cluster.optimize,
        &cluster.zeebe,
    ] {
        let posted: Vec<Value> = fake
            .log()
            .into_iter()
            .filter(|r| r.line == "POST /actuator/backups")
            .map(|r| r.body)
            .collect();
        assert_eq!(
            posted,
            vec![serde_json::json!({"backupId": id.parse::<u64>().unwrap()})]
        );
        assert_eq!(fake.backups(), vec![id.clone()]);
    }
    assert_eq!(cluster.zeebe.paused(), None, "exporting resumed");
    assert!(
        pause_records(&site).is_empty(),
        "{:?}",
        pause_records(&site)
    );

    let show = site.strata(&["show", "latest"]);
    assert!(
        show.stdout
            .contains("component camunda part zeebe: COMPLETED (48 partitions)"),
        "{show}"
    );
    // A restore prints the checklist with this backup's names.
    let restore = site.strata(&["restore", "latest", "--component", "camunda"]);
    assert_eq!(restore.code, Some(0), "{restore}");
    let said = format!("{}{}", restore.stdout, restore.stderr);
    assert!(said.contains(&format!("--backupId={id}")), "{restore}");
    assert!(
        said.contains(&format!("camunda_zeebe_records_backup_{id}/_restore")),
        "{restore}"
    );
    assert!(
        said.contains(&format!("camunda_webapps_{id}_8.7.4_part_1_of_3/_restore")),
        "{restore}"
    );
}

/// Camunda's restore is the operator's checklist: the restore says so (how many steps,
/// nothing written by strata) instead of claiming a verified restore, and a restore into
/// a directory names the component it leaves out and why.
#[test]
fn a_camunda_restore_says_it_is_a_checklist_and_a_restore_into_a_directory_says_it_skips_camunda() {
    let cluster = Cluster::start();
    let site = camunda_site(&camunda(&cluster, ""));
    let (out, summary) = backup(&site);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(summary["status"], "complete", "{summary:#}");

    let restore = site.strata(&["restore", "latest", "--component", "camunda"]);
    assert_eq!(restore.code, Some(0), "{restore}");
    // Stop, delete the indices, nine web application snapshots (three parts of three
    // applications), the records, the brokers, start.
    assert!(
        restore
            .stdout
            .contains("component camunda: restore checklist (14 steps), nothing written by strata"),
        "{restore}"
    );
    assert!(restore.stdout.contains("  14. Start Zeebe"), "{restore}");
    assert!(!restore.stdout.contains("restored component"), "{restore}");
    assert!(!restore.stdout.contains("every byte verified"), "{restore}");
    let json = site.strata(&["--json", "restore", "latest", "--component", "camunda"]);
    assert_eq!(json.code, Some(0), "{json}");
    let outcome: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        component_restore(&outcome, "camunda")["checklist_steps"],
        14,
        "{outcome:#}"
    );

    let to = site.dir().join("restored");
    let into = site.strata(&["restore", "latest", "--to", to.to_str().unwrap()]);
    assert_eq!(into.code, Some(0), "{into}");
    assert!(into.stdout.contains("restored node n1"), "{into}");
    assert!(
        into.stdout.contains(&format!(
            "skipped component camunda: not restored into {}: its restore is a checklist",
            to.display()
        )),
        "{into}"
    );
    assert!(!into.stdout.contains("skipped component data"), "{into}");
    let to_json = site.dir().join("restored-json");
    let into = site.strata(&[
        "--json",
        "restore",
        "latest",
        "--to",
        to_json.to_str().unwrap(),
    ]);
    assert_eq!(into.code, Some(0), "{into}");
    let outcome: Value = serde_json::from_str(&into.stdout).unwrap();
    assert_eq!(outcome["skipped"][0]["component"], "camunda", "{outcome:#}");
    assert_eq!(
        outcome["skipped"].as_array().unwrap().len(),
        1,
        "{outcome:#}"
    );
}

fn component_restore<'a>(outcome: &'a Value, name: &str) -> &'a Value {
    outcome["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["component"] == name)
        .unwrap_or_else(|| panic!("no component {name}: {outcome:#}"))
}

#[test]
fn deleting_backups_deletes_every_part_and_a_part_that_cannot_be_deleted_yet_is_finished_by_the_next_cleanup(
) {
    let cluster = Cluster::start();
    // A short timeout: the delete below is tried against a Zeebe that answers 503.
    let site =
        camunda_site(&camunda(&cluster, "").replace("timeout = \"20s\"", "timeout = \"2s\""));
    let (out, first) = backup(&site);
    assert_eq!(out.code, Some(0), "{out}");
    let (out, second) = backup(&site);
    assert_eq!(out.code, Some(0), "{out}");
    let id = |s: &Value| {
        component(s, "camunda")["external"]["backup_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (first_id, second_id) = (id(&first), id(&second));
    assert!(second_id.parse::<u64>().unwrap() > first_id.parse::<u64>().unwrap());
    for fake in cluster.all() {
        assert_eq!(fake.backups().len(), 2, "{:?}", fake.lines());
    }

    // Retention keeps the newest: the engines keep exactly what strata keeps.
    let cleanup = site.strata(&["cleanup", "--keep-last", "1"]);
    assert_eq!(cleanup.code, Some(0), "{cleanup}");
    for fake in [
        &cluster.operate,
        &cluster.tasklist,
        &cluster.optimize,
        &cluster.zeebe,
    ] {
        assert_eq!(
            fake.backups(),
            vec![second_id.clone()],
            "{:?}",
            fake.lines()
        );
    }
    assert_eq!(
        cluster.elastic.backups(),
        vec![format!("camunda_zeebe_records_backup_{second_id}")]
    );

    // Zeebe cannot delete for now: the backup is gone from strata first (never
    // restorable with parts missing), its Zeebe part waits in the ledger.
    cluster.zeebe.set(|k| k.unavailable = 1000);
    let name = second["name"].as_str().unwrap();
    let half = site.strata(&["delete", name]);
    assert_eq!(half.code, Some(1), "{half}");
    assert!(
        half.stderr.contains("is deleted") && half.stderr.contains("503"),
        "{half}"
    );
    let list = site.strata(&["list", "--json"]);
    assert!(!list.stdout.contains(name), "not listed: {list}");
    assert_eq!(cluster.zeebe.backups(), vec![second_id.clone()]);
    assert_eq!(ledger(&site).len(), 1, "the Zeebe part is in the ledger");
    // The next cleanup (nothing to remove by its policy) finishes it.
    cluster.zeebe.set(|k| k.unavailable = 0);
    let cleanup = site.strata(&["cleanup", "--keep-last", "5"]);
    assert_eq!(cleanup.code, Some(0), "{cleanup}");
    for fake in cluster.all() {
        assert!(fake.backups().is_empty(), "{:?}", fake.lines());
    }
    assert!(ledger(&site).is_empty(), "{:?}", ledger(&site));
}

/// Item: a delete with an engine down. Optimize never answered during the backup, so the
/// backup records no Optimize part and its delete never asks Optimize; a part that
/// cannot be deleted leaves no visible backup with parts gone.
#[test]
fn a_delete_asks_only_for_the_parts_the_backup_created_and_never_keeps_a_stripped_backup() {
    let cluster = Cluster::start();
    let dead = strata_testkit::dead_url();
    let live = camunda(&cluster, "").replace("timeout = \"20s\"", "timeout = \"2s\"");
    let site = camunda_site(&live.replace(&cluster.optimize.url, &dead));
    let (out, summary) = backup(&site);
    assert_eq!(out.code, Some(0), "{out}");
    let recorded = &component(&summary, "camunda")["external"];
    assert_eq!(
        recorded["parts"], "operate,tasklist,elasticsearch,zeebe",
        "{recorded:#}"
    );
    assert!(ledger(&site).is_empty(), "the summary owns the parts");
    // Optimize is up again when the backup is deleted: it is still not asked, as the
    // backup never created a part there. Elasticsearch cannot delete for now.
    reconfigure(&site, &live);
    cluster.elastic.set(|k| k.unavailable = 1000);
    let name = summary["name"].as_str().unwrap();
    let half = site.strata(&["delete", name]);
    assert_eq!(half.code, Some(1), "{half}");
    let show = site.strata(&["show", name]);
    assert_ne!(
        show.code,
        Some(0),
        "gone from strata before any part: {show}"
    );
    let latest = site.strata(&["show", "latest"]);
    assert!(!latest.stdout.contains(name), "{latest}");
    assert!(cluster.operate.backups().is_empty());
    assert!(
        !cluster
            .optimize
            .lines()
            .iter()
            .any(|l| l.starts_with("DELETE")),
        "{:?}",
        cluster.optimize.lines()
    );
    assert_eq!(cluster.elastic.backups().len(), 1);
    // The next backup finishes the delete under its lock.
    cluster.elastic.set(|k| k.unavailable = 0);
    let (out, next) = backup(&site);
    assert_eq!(out.code, Some(0), "{out}");
    let next_id = component(&next, "camunda")["external"]["backup_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        cluster.elastic.backups(),
        vec![format!("camunda_zeebe_records_backup_{next_id}")]
    );
    assert!(ledger(&site).is_empty(), "{:?}", ledger(&site));
}

/// Item: interrupted attempts. A SIGKILL after the pause leaves every part asked for so
/// far; the next backup deletes them (they are in the ledger) before it asks for its
/// own, and resumes the exporting.
#[test]
fn the_parts_of_a_killed_attempt_are_deleted_by_the_next_backup() {
    use std::time::Duration;
    let cluster = Cluster::start();
    cluster.zeebe.set(|k| k.polls_to_finish = 1_000_000);
    let site = camunda_site(&(camunda(&cluster, "") + "[server]\nlease_ttl_secs = 1\n"));
    let mut backup = site
        .command()
        .args(["backup", "--json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    strata_testkit::wait_for(
        "Zeebe's backup to start",
        Duration::from_secs(30),
        Duration::from_millis(20),
        || !cluster.zeebe.backups().is_empty(),
    );
    backup.kill().unwrap();
    backup.wait().unwrap();
    for fake in cluster.all() {
        assert_eq!(fake.backups().len(), 1, "{:?}", fake.lines());
    }
    assert_eq!(ledger(&site).len(), 1);
    cluster.zeebe.set(|k| k.polls_to_finish = 0);
    // The killed backup's summary write could still land until its writer's mark has
    // ended: its lease (1 s here), a second, and the longest flight (shortened to 1 s).
    std::thread::sleep(Duration::from_secs(4));
    let out = site.strata_env(
        &["backup", "--json"],
        &[("STRATA_TEST_MAX_FLIGHT_SECS", "1")],
    );
    assert_eq!(out.code, Some(0), "{out}");
    let summary: Value = serde_json::from_str(&out.stdout).unwrap();
    let id = component(&summary, "camunda")["external"]["backup_id"]
        .as_str()
        .unwrap()
        .to_string();
    for fake in [
        &cluster.operate,
        &cluster.tasklist,
        &cluster.optimize,
        &cluster.zeebe,
    ] {
        assert_eq!(fake.backups(), vec![id.clone()], "{:?}", fake.lines());
    }
    assert_eq!(cluster.zeebe.paused(), None);
    assert!(ledger(&site).is_empty(), "{:?}", ledger(&site));
}

/// Item: a Zeebe backup request that timed out may still be taken: it is deleted with
/// the failed attempt.
#[test]
fn a_zeebe_backup_request_that_timed_out_is_deleted_with_the_failed_attempt() {
    let cluster = Cluster::start();
    cluster
        .zeebe
        .set(|k| k.post_delay = std::time::Duration::from_secs(4));
    let site =
        camunda_site(&camunda(&cluster, "").replace("timeout = \"20s\"", "timeout = \"2s\""));
    let (out, _) = backup(&site);
    assert_eq!(out.code, Some(3), "{out}");
    assert!(
        cluster
            .zeebe
            .lines()
            .iter()
            .any(|l| l.starts_with("DELETE /actuator/backups/")),
        "{:?}",
        cluster.zeebe.lines()
    );
    for fake in cluster.all() {
        assert!(fake.backups().is_empty(), "{:?}", fake.lines());
    }
    assert!(ledger(&site).is_empty(), "{:?}", ledger(&site));
}

/// An optional part frozen during a backup (Optimize in a long GC pause: its backup
/// request sent, never answered) is recorded absent, yet stays with the backup: when it
/// wakes it takes the request, and deleting the backup deletes that part's backup too.
#[test]
fn an_optional_part_that_took_a_request_without_answering_is_deleted_with_the_backup() {
    let cluster = Cluster::start();
    cluster
        .optimize
        .set(|k| k.post_delay = std::time::Duration::from_secs(5));
    let site =
        camunda_site(&camunda(&cluster, "").replace("timeout = \"20s\"", "timeout = \"3s\""));
    let (out, summary) = backup(&site);
    assert_eq!(out.code, Some(0), "{out}");
    let recorded = &component(&summary, "camunda")["external"];
    assert!(
        recorded["optimize"]
            .as_str()
            .unwrap_or_default()
            .starts_with("absent (its request may still be taken"),
        "{recorded:#}"
    );
    assert!(
        recorded["parts"]
            .as_str()
            .unwrap_or_default()
            .contains("optimize"),
        "{recorded:#}"
    );
    // It woke and took the request.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while cluster.optimize.backups().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            cluster.optimize.lines()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let deleted = site.strata(&["delete", summary["name"].as_str().unwrap()]);
    assert_eq!(deleted.code, Some(0), "{deleted}");
    for fake in cluster.all() {
        assert!(fake.backups().is_empty(), "{:?}", fake.lines());
    }
    assert!(ledger(&site).is_empty(), "{:?}", ledger(&site));
}

/// Item: right after the request a partition may not know the backup yet
/// (`DOES_NOT_EXIST`, so `INCOMPLETE`): tolerated, not a failure.
#[test]
fn a_partition_that_does_not_know_the_backup_yet_does_not_fail_it() {
    let cluster = Cluster::start();
    cluster.zeebe.set(|k| k.does_not_exist_polls = 2);
    let site = camunda_site(&camunda(&cluster, ""));
    let (out, summary) = backup(&site);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(summary["status"], "complete", "{summary:#}");
}

#[test]
fn a_failed_zeebe_backup_fails_the_component_resumes_and_deletes_what_the_attempt_created() {
    let cluster = Cluster::start();
    cluster.zeebe.set(|k| k.fail_backups = true);
    let site = camunda_site(&camunda(&cluster, ""));
    let (out, summary) = backup(&site);
    assert_eq!(out.code, Some(3), "{out}");
    let part = component(&summary, "camunda");
    assert_eq!(part["status"], "failed", "{part:#}");
    let error = part["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("zeebe") && error.contains("disk full on broker"),
        "{part:#}"
    );
    assert_eq!(
        cluster.zeebe.paused(),
        None,
        "exporting resumed: {:?}",
        cluster.zeebe.lines()
    );
    for fake in cluster.all() {
        assert!(
            fake.backups().is_empty(),
            "the failed attempt's parts are deleted: {:?}",
            fake.lines()
        );
    }
}

#[test]
fn calls_that_fail_for_a_while_are_tried_again_and_an_optional_part_that_is_down_is_absent() {
    let cluster = Cluster::start();
    // Operate answers 503 three times, then works.
    cluster.operate.set(|k| k.unavailable = 3);
    let dead = strata_testkit::dead_url();
    let toml = camunda(&cluster, "").replace(&cluster.optimize.url, &dead);
    let site = camunda_site(&toml);
    let (out, summary) = backup(&site);
    assert_eq!(out.code, Some(0), "{out}");
    let recorded = &component(&summary, "camunda")["external"];
    assert_eq!(recorded["operate"], "COMPLETED", "{recorded:#}");
    assert!(
        recorded["optimize"]
            .as_str()
            .unwrap_or_default()
            .starts_with("absent"),
        "{recorded:#}"
    );
    let statuses: Vec<u16> = cluster
        .operate
        .log()
        .iter()
        .take(4)
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [503, 503, 503, 200]);
}

#[test]
fn an_optional_camunda_whose_engines_are_down_is_absent_and_the_backup_complete() {
    let dead = strata_testkit::dead_url();
    let toml = format!(
        r#"[[components]]
name = "camunda"
plugin = "camunda"
optional = true
[components.camunda]
zeebe = "{dead}"
operate = "{dead}"
elasticsearch = "{dead}"
snapshot_repository = "camunda"
poll = "50ms"
connect_timeout = "500ms"
"#
    );
    let site = camunda_site(&toml);
    let (out, summary) = backup(&site);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(summary["status"], "complete", "{summary:#}");
    assert_eq!(
        component(&summary, "camunda")["status"],
        "absent",
        "{summary:#}"
    );
}

#[test]
fn a_pause_slower_than_its_timeout_is_resumed_after_it_lands() {
    let cluster = Cluster::start();
    cluster
        .zeebe
        .set(|k| k.pause_delay = std::time::Duration::from_secs(3));
    let site = camunda_site(&camunda(
        &cluster,
        "pause_timeout = \"1s\"\nlate_pause = \"10s\"",
    ));
    let (out, summary) = backup(&site);
    assert_eq!(out.code, Some(3), "{out}");
    let part = component(&summary, "camunda");
    assert!(
        part["error"]
            .as_str()
            .unwrap_or_default()
            .contains("pausing"),
        "{part:#}"
    );
    assert_eq!(
        cluster.zeebe.paused(),
        None,
        "the late pause was resumed: {:?}",
        cluster.zeebe.lines()
    );
    assert!(pause_records(&site).is_empty());
}

/// A pause that lands after every resume (later than its timeout plus twice
/// `late_pause`) leaves no record, but `status` asks Zeebe and says so, with 3.
#[test]
fn a_pause_that_lands_after_every_resume_is_reported_by_status() {
    let cluster = Cluster::start();
    let site = camunda_site(&camunda(
        &cluster,
        "pause_timeout = \"1s\"\nlate_pause = \"1s\"",
    ));
    let status = site.strata(&["status"]);
    assert_eq!(status.code, Some(0), "nothing paused yet: {status}");
    cluster
        .zeebe
        .set(|k| k.pause_delay = std::time::Duration::from_secs(4));
    let (out, _) = backup(&site);
    assert_eq!(out.code, Some(3), "{out}");
    strata_testkit::wait_for(
        "the late pause to land",
        std::time::Duration::from_secs(30),
        std::time::Duration::from_millis(50),
        || cluster.zeebe.paused().is_some(),
    );
    assert!(pause_records(&site).is_empty());
    let status = site.strata(&["status"]);
    assert_eq!(status.code, Some(3), "{status}");
    assert!(
        status
            .stderr
            .contains("component camunda: its system is paused")
            && status.stderr.contains("SOFT_PAUSED"),
        "{status}"
    );
}

/// A healthy backup through a Zeebe that has no `/actuator/partitions` (a standalone
/// gateway, the docs' own example): `status` during it shows the pause, not a problem.
#[test]
fn a_gateway_without_partitions_is_no_problem_while_a_backup_holds_the_pause() {
    let cluster = Cluster::start();
    cluster.zeebe.set(|k| {
        k.no_partitions = true;
        k.polls_to_finish = 60;
    });
    let site = camunda_site(&camunda(&cluster, ""));
    let mut backup = site
        .command()
        .args(["backup"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    strata_testkit::wait_for(
        "the backup to pause the exporting",
        std::time::Duration::from_secs(30),
        std::time::Duration::from_millis(20),
        || cluster.zeebe.paused().is_some(),
    );
    let status = site.strata(&["status"]);
    let still_paused = cluster.zeebe.paused().is_some();
    assert!(backup.wait().unwrap().success());
    assert!(still_paused, "status ran while the backup held the pause");
    assert!(
        !status.stderr.contains("cannot say whether it is paused"),
        "{status}"
    );
    assert_eq!(status.code, Some(0), "{status}");
}

#[test]
fn a_resume_that_fails_exits_3_and_names_the_engine_still_paused() {
    let cluster = Cluster::start();
    cluster.zeebe.set(|k| k.resume_down = true);
    let site = camunda_site(&camunda(&cluster, ""));
    let (out, summary) = backup(&site);
    assert_eq!(out.code, Some(3), "{out}");
    assert!(
        out.stderr.contains("left a system paused") && out.stderr.contains("exporting"),
        "{out}"
    );
    assert_eq!(
        component(&summary, "camunda")["status"],
        "complete",
        "{summary:#}"
    );
    assert_eq!(cluster.zeebe.paused(), Some(true));
    assert_eq!(
        pause_records(&site).len(),
        1,
        "the record stays for the retry"
    );
    // One round of resumes (the hook's 5 attempts), one line for it.
    let resumes = cluster
        .zeebe
        .log()
        .iter()
        .filter(|r| r.line == "POST /actuator/exporting/resume")
        .count();
    assert_eq!(resumes, 5, "{:?}", cluster.zeebe.lines());
    assert_eq!(
        summary["still_paused"].as_array().map(Vec::len),
        Some(1),
        "{summary:#}"
    );
    // `status` says so with 3.
    let status = site.strata(&["status"]);
    assert_eq!(status.code, Some(3), "{status}");
    assert!(status.stderr.contains("FAILED"), "{status}");
    let show = site.strata(&["show", summary["name"].as_str().unwrap()]);
    assert!(
        show.stdout
            .contains("STILL PAUSED when the backup ended: component camunda"),
        "{show}"
    );
    // The next run resumes it first (the configuration declares it through the preset).
    cluster.zeebe.set(|k| k.resume_down = false);
    let (out, _) = backup(&site);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(cluster.zeebe.paused(), None);
    assert!(pause_records(&site).is_empty());
}

#[test]
fn camunda_8_8_backs_up_zeebe_under_backup_runtime() {
    let cluster = Cluster::start();
    let toml = format!(
        r#"[[components]]
name = "camunda"
plugin = "camunda"
[components.camunda]
version = "8.8"
zeebe = "{zeebe}"
elasticsearch = "{elastic}"
snapshot_repository = "camunda"
poll = "50ms"
"#,
        zeebe = cluster.zeebe.url,
        elastic = cluster.elastic.url,
    );
    let site = camunda_site(&toml);
    let (out, summary) = backup(&site);
    assert_eq!(out.code, Some(0), "{out}");
    let id = component(&summary, "camunda")["external"]["backup_id"]
        .as_str()
        .unwrap()
        .to_string();
    let lines = cluster.zeebe.lines();
    assert!(
        lines.contains(&"POST /actuator/backupRuntime".to_string()),
        "{lines:#?}"
    );
    assert!(
        lines.contains(&format!("GET /actuator/backupRuntime/{id}")),
        "{lines:#?}"
    );
    // Operate's and Tasklist's backup is required: on the cluster's backupHistory.
    assert!(
        lines.contains(&"POST /actuator/backupHistory".to_string()),
        "{lines:#?}"
    );
    assert_eq!(cluster.zeebe.history_backups(), vec![id.clone()]);
    assert_eq!(
        component(&summary, "camunda")["external"]["parts"],
        "webapps,elasticsearch,zeebe"
    );
    // The restore checklist names the web applications' snapshots too: an operator
    // would otherwise restore Zeebe without Operate's and Tasklist's data.
    let restore = site.strata(&["restore", "latest", "--component", "camunda"]);
    assert_eq!(restore.code, Some(0), "{restore}");
    assert!(
        restore.stdout.contains(&format!(
            "camunda_webapps_{id}_8.7.4_part_3_of_3/_restore?wait_for_completion=true   (operate and tasklist)"
        )),
        "{restore}"
    );
    // Deleted with the backup, on the same paths.
    let deleted = site.strata(&["delete", summary["name"].as_str().unwrap()]);
    assert_eq!(deleted.code, Some(0), "{deleted}");
    assert!(cluster.zeebe.history_backups().is_empty());
    assert!(cluster.zeebe.backups().is_empty());

    // With Operate's own URL, its backup is asked there, on backupHistory too.
    let site = camunda_site(&format!("{toml}operate = \"{}\"\n", cluster.operate.url));
    let (out, _) = backup(&site);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        cluster
            .operate
            .lines()
            .contains(&"POST /actuator/backupHistory".to_string()),
        "{:?}",
        cluster.operate.lines()
    );
}

/// The history part is required in 8.8: a cluster that cannot back it up fails.
#[test]
fn camunda_8_8_requires_the_web_applications_backup() {
    let cluster = Cluster::start();
    cluster.zeebe.set(|k| k.fail_backups = true);
    let toml = format!(
        r#"[[components]]
name = "camunda"
plugin = "camunda"
[components.camunda]
version = "8.8"
zeebe = "{zeebe}"
optimize = "{optimize}"
elasticsearch = "{elastic}"
snapshot_repository = "camunda"
poll = "50ms"
"#,
        zeebe = cluster.zeebe.url,
        optimize = cluster.optimize.url,
        elastic = cluster.elastic.url,
    );
    let site = camunda_site(&toml);
    let (out, summary) = backup(&site);
    assert_eq!(out.code, Some(3), "{out}");
    let part = component(&summary, "camunda");
    assert_eq!(part["status"], "failed", "{part:#}");
    assert!(
        part["error"]
            .as_str()
            .unwrap_or_default()
            .contains("webapps"),
        "{part:#}"
    );
}

/// The generic `http` component drives Zeebe's API by itself: the id chosen by the
/// request (a templated body), the state read from an answer larger than 4 KiB, the
/// snapshot deleted with the backup.
#[test]
fn an_http_component_with_templates_drives_zeebes_backup_api() {
    let zeebe = Fake::start(Role::Zeebe { partitions: 48 });
    zeebe.set(|k| k.polls_to_finish = 2);
    let toml = format!(
        r#"[[components]]
name = "zeebe"
plugin = "http"
[components.http]
backup = "POST {url}/actuator/backups"
backup_body = '{{"backupId": {{backup_id}}}}'
id = "{{backup_id}}"
state = "GET {url}/actuator/backups/{{id}}"
done = ["COMPLETED"]
failed = ["FAILED", "INCOMPLETE"]
delete = "DELETE {url}/actuator/backups/{{id}}"
poll = "50ms"
timeout = "20s"
"#,
        url = zeebe.url
    );
    let site = camunda_site(&toml);
    let (out, summary) = backup(&site);
    assert_eq!(out.code, Some(0), "{out}");
    let recorded = &component(&summary, "zeebe")["external"];
    assert_eq!(recorded["state"], "COMPLETED", "{recorded:#}");
    assert_eq!(
        recorded["snapshot_id"], recorded["backup_id"],
        "{recorded:#}"
    );
    assert_eq!(
        zeebe.backups(),
        vec![recorded["snapshot_id"].as_str().unwrap().to_string()]
    );
    let name = summary["name"].as_str().unwrap();
    let deleted = site.strata(&["delete", name]);
    assert_eq!(deleted.code, Some(0), "{deleted}");
    assert!(zeebe.backups().is_empty(), "{:?}", zeebe.lines());
}

/// `/api/v1/check` asks each external component's systems: a required one that is down
/// fails the check, an optional part that is down is reported and does not.
#[test]
fn the_check_reports_each_components_systems() {
    let cluster = Cluster::start();
    let dead = strata_testkit::dead_url();
    let toml = camunda(&cluster, "").replace(&cluster.optimize.url, &dead)
        + &format!(
            r#"[[components]]
name = "ledger"
plugin = "http"
[components.http]
backup = "POST {dead}/backups"
"#
        );
    let site = camunda_site(&toml);
    let mut cmd = site.command();
    cmd.env("STRATA_TOKEN", "check-token");
    let server = strata_testkit::http::Server::start(cmd, &site.dir().join("server.log"));
    let check =
        strata_testkit::http::http(&server.url, "GET", "/api/v1/check", Some("check-token"), "");
    assert_eq!(check.status, 200, "{}", check.body);
    let check = check.json();
    let find = |name: &str| {
        check["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no check {name}: {check:#}"))
            .clone()
    };
    let camunda = find("component camunda");
    assert_eq!(camunda["ok"], true, "{camunda:#}");
    let detail = camunda["detail"].as_str().unwrap();
    assert!(
        detail.contains("zeebe answers") && detail.contains("optimize (optional) is down"),
        "{camunda:#}"
    );
    let ledger = find("component ledger");
    assert_eq!(
        ledger["ok"], false,
        "a required system that is down: {ledger:#}"
    );
    assert_eq!(check["ok"], false, "{check:#}");
}

/// An optional engine that is down is `absent`, and a pause scoped to it leaves only it
/// out: the required components are backed up and the backup is complete.
#[test]
fn a_pause_scoped_to_an_optional_component_that_is_down_affects_only_it() {
    let dead = strata_testkit::dead_url();
    let toml = format!(
        r#"[[components]]
name = "search"
plugin = "http"
optional = true
[components.http]
backup = "POST {dead}/backups"
connect_timeout = "300ms"
poll = "50ms"
[[hooks]]
name = "search-writes"
component = "search"
pause = "POST {dead}/pause"
resume = "POST {dead}/resume"
timeout = "2s"
"#
    );
    let site = camunda_site(&toml);
    let (out, summary) = backup(&site);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(summary["status"], "complete", "{summary:#}");
    assert_eq!(
        component(&summary, "data")["status"],
        "complete",
        "{summary:#}"
    );
    let search = component(&summary, "search");
    assert_eq!(search["status"], "absent", "{search:#}");
    assert!(
        search["error"]
            .as_str()
            .unwrap_or_default()
            .contains("pause"),
        "{search:#}"
    );
    assert!(
        pause_records(&site).is_empty(),
        "a pause never sent leaves no record"
    );
}

/// A SIGTERM while Zeebe backs up ends the backup recorded failed, and the exporting
/// paused for it is resumed before the process ends.
#[test]
fn sigterm_while_zeebe_backs_up_resumes_the_exporting_before_the_process_ends() {
    use std::time::Duration;
    use strata_testkit::process::{terminate_within, KillOnDrop};
    let cluster = Cluster::start();
    cluster.zeebe.set(|k| k.polls_to_finish = 1_000_000);
    let site = camunda_site(&camunda(&cluster, ""));
    let mut backup = KillOnDrop(
        site.command()
            .args(["backup", "--json"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    strata_testkit::wait_for(
        "Zeebe's backup to start",
        Duration::from_secs(30),
        Duration::from_millis(20),
        || {
            cluster
                .zeebe
                .lines()
                .contains(&"POST /actuator/backups".to_string())
        },
    );
    assert_eq!(
        cluster.zeebe.paused(),
        Some(true),
        "soft-paused while it runs"
    );
    let code = terminate_within(&mut backup, Duration::from_secs(30));
    let mut stderr = String::new();
    std::io::Read::read_to_string(backup.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(code, Some(3), "{stderr}");
    assert_eq!(
        cluster.zeebe.paused(),
        None,
        "resumed before the end: {stderr}"
    );
    assert!(
        pause_records(&site).is_empty(),
        "{:?}",
        pause_records(&site)
    );
    // The attempt's parts are deleted before the process ends.
    for fake in cluster.all() {
        assert!(fake.backups().is_empty(), "{:?}", fake.lines());
    }
    assert!(ledger(&site).is_empty(), "{:?}", ledger(&site));
}

/// A system's delete slower than the cluster lock's lease: the lock is renewed while it
/// runs, so the backup is deleted after it (and nothing else took the repository).
#[test]
fn a_delete_slower_than_the_lease_still_deletes_under_a_renewed_lock() {
    let cluster = Cluster::start();
    let site = camunda_site(&(camunda(&cluster, "") + "[server]\nlease_ttl_secs = 1\n"));
    let (out, summary) = backup(&site);
    assert_eq!(out.code, Some(0), "{out}");
    cluster
        .zeebe
        .set(|k| k.delete_delay = std::time::Duration::from_secs(3));
    let name = summary["name"].as_str().unwrap();
    let deleted = site.strata(&["delete", name]);
    assert_eq!(deleted.code, Some(0), "{deleted}");
    assert!(
        cluster.zeebe.backups().is_empty(),
        "{:?}",
        cluster.zeebe.lines()
    );
    let list = site.strata(&["list", "--json"]);
    assert!(!list.stdout.contains(name), "{list}");
}

/// The engines' parts of a backup whose summary write timed out: a cleanup between the
/// give-up and the landing keeps them (the summary may still land), and once it has
/// landed the backup is listed complete with every part still in its system.
fn parts_of_a_summary_that_lands_late(unsafe_rule: Option<&str>) -> (bool, usize) {
    let cluster = Cluster::start();
    // A short retry budget: the summary's write is given up on in a second.
    let site = camunda_site(&(camunda(&cluster, "") + "[retry]\nbudget_secs = 1\n"));
    let late = site.dir().join("late");
    let spec = format!("summaries/:{}", late.display());
    let failed = site.strata_env(&["backup", "--json"], &[("STRATA_TEST_LAND_LATE", &spec)]);
    assert_ne!(
        failed.code,
        Some(0),
        "its summary never came back: {failed}"
    );
    assert_eq!(ledger(&site).len(), 1, "{failed}");
    let mut env = vec![];
    if let Some(rule) = unsafe_rule {
        env.push(("STRATA_TEST_UNSAFE", rule));
    }
    let cleanup = site.strata_env(&["cleanup", "--keep-last", "5"], &env);
    assert_eq!(cleanup.code, Some(0), "{cleanup}");
    // The storage applies the summary now.
    let mut kept: Vec<std::path::PathBuf> = std::fs::read_dir(&late)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "key"))
        .collect();
    kept.sort();
    let key = std::fs::read_to_string(&kept[0]).unwrap();
    let target = site.dir().join("repo").join(&key);
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    let landing = target.with_extension("landing");
    std::fs::write(
        &landing,
        std::fs::read(kept[0].with_extension("data")).unwrap(),
    )
    .unwrap();
    std::fs::rename(&landing, &target).unwrap();
    let list = site.strata(&["list", "--json"]);
    let listed: Value = serde_json::from_str(&list.stdout).unwrap();
    let complete = listed
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["status"] == "complete");
    // The next cleanup finds the summary owns the parts.
    let again = site.strata(&["cleanup", "--keep-last", "5"]);
    assert_eq!(again.code, Some(0), "{again}");
    assert!(ledger(&site).is_empty(), "{:?} {again}", ledger(&site));
    let held = cluster
        .all()
        .iter()
        .filter(|fake| fake.backups().len() == 1)
        .count();
    (complete, held)
}

#[test]
fn engine_parts_outlive_a_cleanup_while_the_summary_may_still_land() {
    let (complete, held) = parts_of_a_summary_that_lands_late(None);
    assert!(complete, "the landed summary is a backup like any other");
    assert_eq!(held, 5, "every system keeps the listed backup's part");
}

#[test]
fn negative_control_no_summary_taken_as_never_strips_a_listed_backup() {
    let (complete, held) = parts_of_a_summary_that_lands_late(Some("parts-ignore-landings"));
    assert!(complete);
    assert!(
        held < 5,
        "with the rule gone, the trial must find the damage"
    );
}
