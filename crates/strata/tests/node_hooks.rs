//! Hooks with `node = NAME` run on that node's agent (`strata server --node`), not on the
//! coordinator's host: proven with a command that writes where it ran. The agent runs only
//! the hooks its own configuration declares, records its pauses itself, and resumes them
//! on every path: the coordinator's request, the operation's lease running out after the
//! coordinator was killed (SIGKILL), and its own restart after it was killed while paused.
//! `status` shows what an agent holds paused. Every wait is bounded.

use crate::common;

use common::server::{http, Server};
use common::{Site, SiteBuilder};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use strata_testkit::process::KillOnDrop;
use strata_testkit::wait::wait_for;

const USER_TOKEN: &str = "user-token";
const AGENT_TOKEN: &str = "agent-token";
/// A guard against hangs, not a timing assertion.
const LIMIT: Duration = Duration::from_secs(30);

/// The hosts of a test, in one scratch directory: db1's agent (`db1/strata.toml`, data in
/// `db1/data`) and the configurations pointing at it, written when a test knows them.
struct Hosts {
    dir: tempfile::TempDir,
    /// db1's agent: its own hooks, `[server] node = "db1"`.
    agent: Site,
}

/// A site whose commands carry both tokens and say they run at `place` (`$WHERE`,
/// written by the hooks).
fn site_at(place: &str) -> SiteBuilder {
    Site::new()
        .token(USER_TOKEN)
        .env("STRATA_AGENT_TOKEN", AGENT_TOKEN)
        .env("WHERE", place)
}

/// A hook entry for node db1 whose pause and resume write `PHASE NODE WHERE` to
/// calls.log, `$WHERE` being the environment of the process that ran it; the resume
/// fails while the file `refuse-resume` exists.
fn exporter(dir: &Path) -> String {
    let log = dir.join("calls.log");
    // A resume fails while the file `refuse-resume` exists.
    let refuse = dir.join("refuse-resume");
    let call = |step: &str| {
        let guard = match step {
            "resume" => format!("[ -e {} ] && exit 1; ", refuse.display()),
            _ => String::new(),
        };
        format!(
            r#"["/bin/sh", "-c", "{guard}echo \"$STRATA_PHASE $STRATA_NODE $WHERE\" >> {}"]"#,
            log.display()
        )
    };
    format!(
        "[[hooks]]\nname = \"before-db1\"\nnode = \"db1\"\nat = \"before\"\nrun = {}\n\n\
         [[hooks]]\nname = \"exporter\"\nnode = \"db1\"\npause = {}\nresume = {}\ntimeout = \"10s\"\nresume_attempts = 2\n",
        call("run"),
        call("pause"),
        call("resume")
    )
}

impl Hosts {
    fn new() -> Hosts {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("db1/data")).unwrap();
        std::fs::write(dir.path().join("db1/data/table"), vec![7u8; 100_000]).unwrap();
        let agent = Hosts::db1(
            dir.path(),
            "db1/strata.toml",
            "[server]\nnode = \"db1\"\ncoordinator = false\n",
            "agent",
        );
        Hosts { dir, agent }
    }

    /// A configuration `file` in `dir` of node db1 backing up `db1/data` (state in
    /// `db1/state`) with `server` and [`exporter`]'s hooks, run at `place`.
    fn db1(dir: &Path, file: &str, server: &str, place: &str) -> Site {
        site_at(place)
            .file(file)
            .state("db1/state")
            .node("db1", "db1/data")
            .config_extra(&format!("{server}\n{}", exporter(dir)))
            .build_in(dir)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The coordinator's configuration: db1 by URL, the same hooks, and `extra`.
    fn coordinator(&self, url: &str, extra: &str) -> Site {
        site_at("coordinator")
            .file("coordinator.toml")
            .state("coordinator-state")
            .config_extra(&format!(
                "[server]\nlease_ttl_secs = 2\n[[nodes]]\nname = \"db1\"\nurl = \"{url}\"\n\n{hooks}\n{extra}",
                hooks = exporter(self.dir.path()),
            ))
            .build_in(self.dir.path())
    }

    fn agent(&self, log: &str) -> Server {
        Server::start(self.agent.command(), &self.path(log))
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The agent's pause records.
    fn agent_records(&self) -> usize {
        std::fs::read_dir(self.path("db1/state/pauses"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                    .count()
            })
            .unwrap_or(0)
    }

    /// A whole-operation pause run by the coordinator after db1's, which holds until the
    /// file `go` exists (at most 30 s: a killed coordinator leaves it behind).
    fn gate(&self) -> String {
        format!(
            "[[hooks]]\nname = \"gate\"\npause = [\"/bin/sh\", \"-c\", \"touch {paused}; for i in $(seq 600); do [ -e {go} ] && exit 0; sleep 0.05; done; exit 1\"]\nresume = [\"/bin/true\"]\ntimeout = \"60s\"\n",
            paused = self.path("gate-paused").display(),
            go = self.path("go").display(),
        )
    }
}

#[test]
fn in_process_nodes_run_their_hooks_in_this_process_the_same_way() {
    let hosts = Hosts::new();
    // The agent's configuration without its `[server]`.
    let local = Hosts::db1(hosts.dir.path(), "local.toml", "", "here");
    local.ok(&["init"]);
    local.ok(&["backup"]);
    assert_eq!(
        hosts.calls(),
        ["before db1 here", "pause db1 here", "resume db1 here"]
    );
    assert_eq!(hosts.agent_records(), 0);
}

/// A coordinator's pause and two nodes' pauses in one state directory: each its own
/// record, each resumed (their records once collided, and one pause was never resumed).
#[test]
fn pauses_of_the_coordinator_and_of_two_nodes_in_one_state_directory_are_each_resumed() {
    let hosts = Hosts::new();
    std::fs::create_dir_all(hosts.path("db2/data")).unwrap();
    std::fs::write(hosts.path("db2/data/table"), vec![8u8; 50_000]).unwrap();
    let log = hosts.path("calls.log");
    let call = format!(
        r#"["/bin/sh", "-c", "echo \"$STRATA_PHASE ${{STRATA_NODE:-all}}\" >> {}"]"#,
        log.display()
    );
    let mut text = String::new();
    for (name, node) in [("all", ""), ("on-db1", "db1"), ("on-db2", "db2")] {
        let node = match node {
            "" => String::new(),
            n => format!("node = \"{n}\"\n"),
        };
        text.push_str(&format!(
            "[[hooks]]\nname = \"{name}\"\n{node}pause = {call}\nresume = {call}\n"
        ));
    }
    let two = site_at("here")
        .file("two.toml")
        .node("db1", "db1/data")
        .node("db2", "db2/data")
        .config_extra(&text)
        .build_in(hosts.dir.path());
    two.ok(&["init"]);
    two.ok(&["backup"]);
    let mut calls = hosts.calls();
    assert_eq!(calls.len(), 6, "{calls:?}");
    let (pauses, resumes) = calls.split_at_mut(3);
    pauses.sort();
    resumes.sort();
    assert_eq!(pauses, ["pause all", "pause db1", "pause db2"]);
    assert_eq!(resumes, ["resume all", "resume db1", "resume db2"]);
    let left = std::fs::read_dir(hosts.path("state/pauses"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0, "no record left");
}

#[test]
fn node_hooks_run_on_the_agent_which_runs_only_its_own() {
    let hosts = Hosts::new();
    let agent = hosts.agent("agent.log");
    let coordinator = hosts.coordinator(&agent.url, "");
    coordinator.ok(&["init"]);
    let out = coordinator.strata(&["backup"]);
    assert!(out.code == Some(0), "{}", out.stderr);
    assert_eq!(
        hosts.calls(),
        ["before db1 agent", "pause db1 agent", "resume db1 agent"],
        "each ran on the agent, the resume last"
    );
    assert_eq!(
        hosts.agent_records(),
        0,
        "the resumed pause leaves no record"
    );

    // The agent token runs no hook the agent's own configuration does not declare.
    let body = r#"{"operation":"op1","hook":"evil","step":"pause","env":{"operation":"backup","id":"op1","backup":"b","phase":"pause"}}"#;
    let reply = http(
        &agent.url,
        "POST",
        "/node/v1/hooks",
        Some(AGENT_TOKEN),
        body,
    );
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert!(reply.body.contains("declares no"), "{}", reply.body);
    // A declared pause without the operation's lease is refused too.
    let body = body.replace("evil", "exporter");
    let reply = http(
        &agent.url,
        "POST",
        "/node/v1/hooks",
        Some(AGENT_TOKEN),
        &body,
    );
    assert_ne!(reply.status, 200, "{}", reply.body);
    assert_eq!(hosts.calls().len(), 3, "nothing ran");

    // A coordinator that names node hooks the agent lacks (a pause after the declared
    // one, a hook at success) fails before anything runs or is paused, naming both.
    let extra = "[[hooks]]\nname = \"unknown-pause\"\nnode = \"db1\"\npause = [\"/bin/true\"]\nresume = [\"/bin/true\"]\n\n\
                 [[hooks]]\nname = \"unknown-success\"\nnode = \"db1\"\nat = \"success\"\nrun = [\"/bin/true\"]\n";
    let coordinator = hosts.coordinator(&agent.url, extra);
    let out = coordinator.strata(&["backup"]);
    let stderr = &out.stderr;
    assert_eq!(out.code, Some(3), "{stderr}");
    let list = coordinator.strata(&["list", "--json"]);
    let listed = &list.stdout;
    assert!(
        listed.contains("declares no pause/resume hook \\\"unknown-pause\\\"")
            && listed.contains("declares no run hook \\\"unknown-success\\\""),
        "{listed}"
    );
    assert_eq!(hosts.calls().len(), 3, "nothing ran, nothing was paused");
}

/// Runs a backup in the background with the gate closed; returns once db1 and the gate
/// are both paused.
fn backup_held_at_the_gate(hosts: &Hosts, coordinator: &Site) -> KillOnDrop {
    let child = coordinator
        .command()
        .arg("backup")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(hosts.path("backup.err")).unwrap())
        .spawn()
        .unwrap();
    let child = KillOnDrop(child);
    wait_for("the gate's pause", LIMIT, Duration::from_millis(20), || {
        hosts.path("gate-paused").exists()
    });
    assert_eq!(hosts.calls(), ["before db1 agent", "pause db1 agent"]);
    assert_eq!(hosts.agent_records(), 1, "the agent recorded its pause");
    child
}

#[test]
fn a_coordinator_killed_while_paused_leaves_the_resume_to_the_agent_when_the_lease_runs_out() {
    let hosts = Hosts::new();
    let agent = hosts.agent("agent.log");
    let coordinator = hosts.coordinator(&agent.url, &hosts.gate());
    coordinator.ok(&["init"]);
    let mut backup = backup_held_at_the_gate(&hosts, &coordinator);

    // `status` shows what the agent holds paused.
    let status = coordinator.strata(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let paused = status["paused"].as_array().cloned().unwrap_or_default();
    assert!(
        paused
            .iter()
            .any(|p| p["hook"] == "exporter" && p["node"] == "db1"),
        "{status:#}"
    );

    // SIGKILL: no code of the coordinator runs again. Its lease (2 s) runs out on db1,
    // whose agent resumes what the operation left paused.
    backup.0.kill().unwrap();
    backup.0.wait().unwrap();
    // The killed coordinator's gate hook is left behind: let it end.
    std::fs::write(hosts.path("go"), "").unwrap();
    assert_resumed_by_the_agent(&hosts, "agent.log", "lease ended");
    drop(agent);
}

#[test]
fn an_agent_killed_while_paused_resumes_when_it_starts_again() {
    let hosts = Hosts::new();
    let agent = hosts.agent("agent.log");
    let url = agent.url.clone();
    let coordinator = hosts.coordinator(&url, &hosts.gate());
    coordinator.ok(&["init"]);
    let mut backup = backup_held_at_the_gate(&hosts, &coordinator);

    // SIGKILL the agent while db1 is paused; the coordinator goes on, cannot reach it,
    // records the backup failed and says who resumes.
    agent.kill();
    std::fs::write(hosts.path("go"), "").unwrap();
    let status = backup.0.wait().unwrap();
    let stderr = std::fs::read_to_string(hosts.path("backup.err")).unwrap();
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("its agent resumes it itself"), "{stderr}");
    assert_eq!(hosts.calls().len(), 2, "nobody could resume yet");
    assert_eq!(hosts.agent_records(), 1);

    // The agent starts again (on another port): it resumes what the killed one held.
    let _agent = hosts.agent("agent2.log");
    assert_resumed_by_the_agent(&hosts, "agent2.log", "is gone");
}

#[test]
fn a_resume_that_failed_is_retried_by_the_agent_until_it_succeeds() {
    let hosts = Hosts::new();
    let agent = hosts.agent("agent.log");
    let coordinator = hosts.coordinator(&agent.url, "");
    coordinator.ok(&["init"]);
    std::fs::write(hosts.path("refuse-resume"), "").unwrap();
    let out = coordinator.strata(&["backup"]);
    let stderr = &out.stderr;
    // The data is complete; the resume's failure is said loudly, and the backup is no
    // clean success while the node stays paused (exit 3).
    assert_eq!(out.code, Some(3), "{stderr}");
    assert!(stderr.contains("resume on node db1 failed"), "{stderr}");
    assert!(stderr.contains("left a system paused"), "{stderr}");
    assert_eq!(hosts.calls(), ["before db1 agent", "pause db1 agent"]);
    assert_eq!(hosts.agent_records(), 1, "the pause stays recorded");

    // Once the service takes the resume again, the agent's own retries get it through.
    std::fs::remove_file(hosts.path("refuse-resume")).unwrap();
    assert_resumed_by_the_agent(&hosts, "agent.log", "lease ended");
    drop(agent);
}

/// Waits until db1's agent has resumed the pause (the third call, its record gone) and
/// its log says so, with `why`. The log is read until its line is whole: the agent's
/// stderr is unbuffered, so a line can be seen half written.
fn assert_resumed_by_the_agent(hosts: &Hosts, log: &str, why: &str) {
    let said = || std::fs::read_to_string(hosts.path(log)).unwrap_or_default();
    let resumed_line = || {
        said()
            .lines()
            .find(|l| l.contains("resumed exporter"))
            .filter(|l| l.ends_with(')'))
            .map(str::to_owned)
    };
    wait_for(
        "the agent's resume",
        LIMIT,
        Duration::from_millis(50),
        || hosts.calls().len() == 3 && hosts.agent_records() == 0 && resumed_line().is_some(),
    );
    assert_eq!(hosts.calls()[2], "resume db1 agent");
    let line = resumed_line().unwrap();
    assert!(line.contains(why), "{}", said());
}
