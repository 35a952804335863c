//! Components and hooks against the real binary: two in-process `files` nodes (component
//! `data`) beside an `http` component (`engine`) driven through a test server that acts
//! like a workflow engine's backup API and records every call in order, with a pause/resume
//! pair around the backup and `run` hooks at its points. Covers the success path, a failing
//! step, SIGTERM, hook and pause timeouts, SIGKILL while paused (the durable pause record
//! and its resume by the next process), a resume that keeps failing, optional components,
//! the restore refusal with `--component`, and configurations from before components.
//!
//! Every wait is bounded; the engine holds its snapshot "running" for as long as a test
//! needs the backup to be in flight, so no test depends on the machine's speed.

use crate::common;

use common::{pseudo_random, Out, Site};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strata_testkit::process::{terminate_within, KillOnDrop};

/// A guard against hangs, not a timing assertion.
const LIMIT: Duration = Duration::from_secs(30);

const SNAPSHOT: &str = "GET /snapshots/snap-1";

// ---------------------------------------------------------------------------------------
// The engine: a tiny HTTP/1.1 server on 127.0.0.1 recording every call.

/// One call the engine received.
#[derive(Debug, Clone)]
struct Call {
    /// `METHOD PATH`.
    line: String,
    /// The JSON body strata sent (`Null` when none or not JSON).
    body: Value,
    /// What the engine answered.
    status: u16,
    answer: String,
}

/// How the engine behaves; switchable while a test runs.
#[derive(Debug, Default, Clone)]
struct Behaviour {
    /// How many polls of the snapshot answer "running" before "completed".
    running_polls: u32,
    /// While set, the snapshot stays "running" whatever `running_polls` says.
    hold: bool,
    /// The snapshot reports "failed".
    snapshot_fails: bool,
    /// How many resumes still answer 500.
    resume_failures: u32,
    /// How long the pause takes to answer.
    pause_delay: Duration,
}

#[derive(Default)]
struct Shared {
    calls: Vec<Call>,
    polls: u32,
    behaviour: Behaviour,
    /// The exporter's own state: a pause takes effect when it has been served (after
    /// its delay, whether or not the client still waits), a resume at once.
    exporter_paused: bool,
}

struct Engine {
    url: String,
    shared: Arc<Mutex<Shared>>,
}

impl Engine {
    fn start() -> Engine {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Mutex::new(Shared::default()));
        let mine = shared.clone();
        // The thread ends with the test's process (nextest runs each test in its own).
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let shared = mine.clone();
                std::thread::spawn(move || serve(stream, shared));
            }
        });
        Engine { url, shared }
    }

    /// Whether the exporter is paused now.
    fn paused(&self) -> bool {
        self.shared.lock().unwrap().exporter_paused
    }

    fn set(&self, change: impl FnOnce(&mut Behaviour)) {
        change(&mut self.shared.lock().unwrap().behaviour);
    }

    fn calls(&self) -> Vec<Call> {
        self.shared.lock().unwrap().calls.clone()
    }

    /// The calls as `METHOD PATH` lines, consecutive polls of the snapshot as one.
    fn lines(&self) -> Vec<String> {
        compact(&self.calls())
    }

    /// Waits until a call satisfies `pred`, failing when `child` ends first.
    fn wait_for(&self, child: &mut Child, what: &str, pred: impl Fn(&Call) -> bool) {
        let deadline = Instant::now() + LIMIT;
        while !self.calls().iter().any(&pred) {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "strata ended ({status}) before {what}; calls: {:#?}",
                    self.lines()
                );
            }
            assert!(Instant::now() < deadline, "gave up waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn compact(calls: &[Call]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in calls {
        if c.line == SNAPSHOT && out.last().map(String::as_str) == Some(SNAPSHOT) {
            continue;
        }
        out.push(c.line.clone());
    }
    out
}

fn serve(stream: TcpStream, shared: Arc<Mutex<Shared>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() || first.is_empty() {
        return;
    }
    let mut parts = first.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut len = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                len = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (status, answer, delay) = {
        let mut s = shared.lock().unwrap();
        let b = s.behaviour.clone();
        let (status, answer, delay) = match (method.as_str(), path.as_str()) {
            ("POST", "/exporter/pause") => (200, r#"{"paused":true}"#.to_string(), b.pause_delay),
            ("POST", "/exporter/resume") if b.resume_failures > 0 => {
                s.behaviour.resume_failures -= 1;
                (
                    500,
                    r#"{"error":"exporter busy"}"#.to_string(),
                    Duration::ZERO,
                )
            }
            ("POST", "/exporter/resume") => {
                s.exporter_paused = false;
                (200, r#"{"resumed":true}"#.into(), Duration::ZERO)
            }
            ("POST", "/snapshots") => {
                s.polls = 0;
                // A failing snapshot says so at once too (for a component without `state`).
                let answer = match b.snapshot_fails {
                    true => r#"{"id":"snap-1","state":"failed"}"#,
                    false => r#"{"id":"snap-1"}"#,
                };
                (200, answer.into(), Duration::ZERO)
            }
            ("GET", "/snapshots/snap-1") => {
                s.polls += 1;
                let state = if b.snapshot_fails {
                    r#"{"state":"failed","reason":"disk full on engine"}"#
                } else if b.hold || s.polls <= b.running_polls {
                    r#"{"state":"running"}"#
                } else {
                    r#"{"state":"completed"}"#
                };
                (200, state.into(), Duration::ZERO)
            }
            ("POST", "/snapshots/snap-1/restore") => {
                (200, r#"{"state":"restoring"}"#.into(), Duration::ZERO)
            }
            ("POST", p) if p.starts_with("/hooks/") => (200, "{}".into(), Duration::ZERO),
            _ => (404, r#"{"error":"no such route"}"#.into(), Duration::ZERO),
        };
        s.calls.push(Call {
            line: format!("{method} {path}"),
            body,
            status,
            answer: answer.clone(),
        });
        (status, answer, delay)
    };
    if !delay.is_zero() {
        std::thread::sleep(delay);
    }
    if method == "POST" && path == "/exporter/pause" {
        // Served now, even when the client gave up on it: a late pause lands.
        shared.lock().unwrap().exporter_paused = true;
    }
    let reason = if status == 200 { "OK" } else { "Error" };
    let reply = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
        answer.len()
    );
    let mut stream = stream;
    let _ = stream.write_all(reply.as_bytes());
    let _ = stream.flush();
}

// ---------------------------------------------------------------------------------------
// A site: a repository, two data directories, a configuration, the engine.

/// What a site's configuration adds to the base.
#[derive(Default)]
struct Setup {
    /// `[server] lease_ttl_secs` (30 unless given).
    lease_ttl: Option<u64>,
    /// More `[[nodes]]`.
    nodes: String,
    /// More `[[components]]`.
    components: String,
    /// `[[hooks]]` entries, in order.
    hooks: Vec<String>,
}

/// A site of this file: the strata command against its configuration, and the engine
/// its `http` component drives. The configuration names the engine's URL and is written
/// again for each test's setup, so it is made here, not by the builder's options alone.
struct EngineSite {
    cli: Site,
    engine: Engine,
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The component `name` of a summary.
fn component<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["components"]
        .as_array()
        .unwrap_or_else(|| panic!("no components: {summary:#}"))
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no component {name}: {summary:#}"))
}

fn component_names(summary: &Value) -> Vec<String> {
    summary["components"]
        .as_array()
        .unwrap_or_else(|| panic!("no components: {summary:#}"))
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

fn error_of(value: &Value) -> String {
    value["error"].as_str().unwrap_or_default().to_string()
}

impl EngineSite {
    fn new(setup: Setup) -> EngineSite {
        let engine = Engine::start();
        // The scratch directory; its configuration is written for `setup` below.
        let cli = Site::new().build();
        let site = EngineSite { cli, engine };
        site.fill_data();
        site.configure(&setup);
        site.init();
        site
    }

    /// A site whose configuration predates components: top-level nodes, no
    /// `[[components]]`.
    fn legacy() -> EngineSite {
        let cli = Site::new().node("n1", "data1").node("n2", "data2").build();
        let site = EngineSite {
            cli,
            engine: Engine::start(),
        };
        site.fill_data();
        site.init();
        site
    }

    /// Rewrites the configuration for `setup` (the same file as `cli`'s, whose
    /// command is unchanged).
    fn configure(&self, setup: &Setup) {
        Site::new()
            .config_extra(&self.config_extra(setup))
            .build_in(self.cli.dir());
    }

    /// Rewrites the configuration with `hooks` and the default setup otherwise.
    fn with_hooks(&self, hooks: Vec<String>) {
        self.configure(&Setup {
            hooks,
            ..Setup::default()
        });
    }

    fn init(&self) {
        let out = self.run(&["init"]);
        assert_eq!(out.code, Some(0), "strata init: {out}");
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.cli.path(rel)
    }

    fn state(&self) -> PathBuf {
        self.path("state")
    }

    fn data(&self, n: u32) -> PathBuf {
        self.path(&format!("data{n}"))
    }

    fn hook_file(&self) -> PathBuf {
        self.path("hooks.log")
    }

    fn fill_data(&self) {
        std::fs::create_dir_all(self.data(1).join("sub")).unwrap();
        std::fs::create_dir_all(self.data(2)).unwrap();
        std::fs::write(self.data(1).join("a.txt"), "alpha\n").unwrap();
        std::fs::write(self.data(1).join("sub/b.bin"), pseudo_random(200_000, 1)).unwrap();
        std::fs::write(self.data(2).join("c.txt"), "gamma\n").unwrap();
    }

    /// The configuration for `setup` after its storages (the builder's): `[server]`
    /// before the nodes, the components, the hooks.
    fn config_extra(&self, setup: &Setup) -> String {
        let url = &self.engine.url;
        let mut text = format!(
            r#"[server]
lease_ttl_secs = {ttl}
[[nodes]]
name = "n1"
roots = ["{d1}"]
[[nodes]]
name = "n2"
roots = ["{d2}"]
{nodes}
[[components]]
name = "data"
plugin = "files"
nodes = ["n1", "n2"]
[[components]]
name = "engine"
plugin = "http"
[components.http]
backup = "POST {url}/snapshots"
state = "GET {url}/snapshots/{{id}}"
restore = "POST {url}/snapshots/{{id}}/restore"
poll = "100ms"
timeout = "40s"
{components}
"#,
            ttl = setup.lease_ttl.unwrap_or(30),
            d1 = self.data(1).display(),
            d2 = self.data(2).display(),
            nodes = setup.nodes,
            components = setup.components,
        );
        for hook in &setup.hooks {
            text.push_str(hook);
        }
        text
    }

    fn run(&self, args: &[&str]) -> Out {
        self.cli.strata(args)
    }

    /// `strata backup --json`: the outcome and the summary it printed.
    fn backup(&self) -> (Out, Value) {
        let out = self.run(&["backup", "--json"]);
        let summary = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("backup printed no summary ({e}): {out}"));
        (out, summary)
    }

    /// `strata backup --json` in the background.
    fn spawn_backup(&self) -> KillOnDrop {
        KillOnDrop(
            self.cli
                .command()
                .args(["backup", "--json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        )
    }

    fn show(&self, name: &str) -> Value {
        let out = self.run(&["show", name, "--json"]);
        assert_eq!(out.code, Some(0), "strata show: {out}");
        json(&out.stdout)
    }

    /// The pause records under the state directory (ignoring temporary files).
    fn pause_records(&self) -> Vec<Value> {
        let Ok(entries) = std::fs::read_dir(self.state().join("pauses")) else {
            return Vec::new();
        };
        let mut out: Vec<(PathBuf, Value)> = entries
            .flatten()
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.ends_with(".json") && !name.starts_with('.')
            })
            .map(|e| {
                let text = std::fs::read_to_string(e.path()).unwrap();
                (e.path(), json(&text))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.into_iter().map(|(_, v)| v).collect()
    }

    /// The lines the command hooks wrote.
    fn hook_lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.hook_file())
            .unwrap_or_default()
            .lines()
            .map(|l| l.trim_end().to_string())
            .collect()
    }

    fn pause_hook(&self, timeout: &str, attempts: u32) -> String {
        format!(
            "[[hooks]]\nname = \"exporter\"\npause = \"POST {url}/exporter/pause\"\n\
             resume = \"POST {url}/exporter/resume\"\ntimeout = \"{timeout}\"\nresume_attempts = {attempts}\n",
            url = self.engine.url
        )
    }

    /// An HTTP `run` hook at `at`: `POST /hooks/<at>` on the engine (so its place among
    /// the engine's calls is recorded).
    fn http_hook(&self, at: &str) -> String {
        format!(
            "[[hooks]]\nat = \"{at}\"\nrun = \"POST {}/hooks/{at}\"\n",
            self.engine.url
        )
    }

    /// A command `run` hook at `at` appending its environment to the hook file.
    fn file_hook(&self, at: &str) -> String {
        format!(
            "[[hooks]]\nat = \"{at}\"\nrun = ['/bin/sh', '-c', 'echo \"$STRATA_PHASE $STRATA_OPERATION $STRATA_BACKUP $STRATA_COMPONENT $STRATA_STATUS\" >> {}']\n",
            self.hook_file().display()
        )
    }
}

fn read_outputs(child: &mut KillOnDrop) -> Out {
    let status = child.0.wait().unwrap();
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(s) = child.0.stdout.as_mut() {
        s.read_to_string(&mut stdout).unwrap();
    }
    if let Some(s) = child.0.stderr.as_mut() {
        s.read_to_string(&mut stderr).unwrap();
    }
    Out {
        code: status.code(),
        stdout,
        stderr,
    }
}

fn strs(lines: &[&str]) -> Vec<String> {
    lines.iter().map(|s| s.to_string()).collect()
}

fn assert_no_pauses(site: &EngineSite, what: &str) {
    let left = site.pause_records();
    assert!(left.is_empty(), "{what}: pause records left: {left:#?}");
}

// ---------------------------------------------------------------------------------------
// 1. The success path.

#[test]
fn a_backup_pauses_snapshots_the_engine_resumes_and_runs_its_hooks_in_order() {
    let site = EngineSite::new(Setup::default());
    let hooks = vec![
        site.file_hook("before"),
        site.http_hook("before"),
        site.pause_hook("5s", 2),
        site.http_hook("after_snapshot"),
        site.http_hook("success"),
        site.http_hook("failure"),
        site.file_hook("success"),
        site.file_hook("failure"),
        site.http_hook("always"),
        site.file_hook("always"),
    ];
    site.with_hooks(hooks);
    site.engine.set(|b| b.running_polls = 2);

    let (out, summary) = site.backup();
    assert_eq!(out.code, Some(0), "{out}");
    let name = summary["name"].as_str().unwrap().to_string();
    assert_eq!(summary["status"], "complete", "{summary:#}");
    assert_eq!(component_names(&summary), ["data", "engine"]);

    let data = component(&summary, "data");
    assert_eq!(data["plugin"], "files");
    assert_eq!(data["status"], "complete", "{data:#}");
    assert_eq!(data["optional"], false);
    assert_eq!(data["nodes"], serde_json::json!(["n1", "n2"]));
    let engine = component(&summary, "engine");
    assert_eq!(engine["plugin"], "http");
    assert_eq!(engine["status"], "complete", "{engine:#}");
    assert_eq!(engine["nodes"], serde_json::json!([]));
    assert_eq!(engine["external"]["snapshot_id"], "snap-1", "{engine:#}");
    assert_eq!(engine["external"]["state"], "completed", "{engine:#}");
    for node in summary["nodes"].as_array().unwrap() {
        assert_eq!(node["component"], "data", "{node:#}");
        assert_eq!(node["status"], "complete", "{node:#}");
    }

    // The exact order: before hook, pause, snapshot until completed, resume (after the
    // snapshot completed), after_snapshot, success, always; no failure hook.
    assert_eq!(
        site.engine.lines(),
        strs(&[
            "POST /hooks/before",
            "POST /exporter/pause",
            "POST /snapshots",
            SNAPSHOT,
            "POST /exporter/resume",
            "POST /hooks/after_snapshot",
            "POST /hooks/success",
            "POST /hooks/always",
        ])
    );
    let calls = site.engine.calls();
    let polls: Vec<&Call> = calls.iter().filter(|c| c.line == SNAPSHOT).collect();
    assert_eq!(polls.len(), 3, "running twice, then completed: {polls:#?}");
    assert!(polls[2].answer.contains("completed"), "{polls:#?}");
    let pause = calls
        .iter()
        .find(|c| c.line == "POST /exporter/pause")
        .unwrap();
    assert_eq!(pause.body["phase"], "pause", "{pause:#?}");
    assert_eq!(pause.body["operation"], "backup", "{pause:#?}");
    assert_eq!(pause.body["backup"], name.as_str(), "{pause:#?}");
    let resume = calls
        .iter()
        .find(|c| c.line == "POST /exporter/resume")
        .unwrap();
    assert_eq!(resume.body["phase"], "resume", "{resume:#?}");
    assert_eq!(resume.body["backup"], name.as_str(), "{resume:#?}");
    let success = calls
        .iter()
        .find(|c| c.line == "POST /hooks/success")
        .unwrap();
    assert_eq!(success.body["status"], "complete", "{success:#?}");
    assert_eq!(success.body["phase"], "success", "{success:#?}");

    // The command hooks ran with their environment: before, success, always.
    assert_eq!(
        site.hook_lines(),
        vec![
            format!("before backup {name}"),
            format!("success backup {name}  complete"),
            format!("always backup {name}  complete"),
        ]
    );
    assert_no_pauses(&site, "after a successful backup");

    // `show` reports the same components.
    let shown = site.show(&name);
    assert_eq!(shown["status"], "complete");
    assert_eq!(shown["components"], summary["components"], "{shown:#}");
}

// ---------------------------------------------------------------------------------------
// 2. A failing step.

/// A site with the pause pair and end hooks whose engine snapshot fails; returns the
/// backup's summary after checking it.
fn failed_engine_backup(site: &EngineSite) -> Value {
    site.engine.set(|b| b.snapshot_fails = true);
    let (out, summary) = site.backup();
    assert_eq!(out.code, Some(3), "a failed backup's exit code: {out}");
    assert_eq!(summary["status"], "failed", "{summary:#}");
    let engine = component(&summary, "engine");
    assert_eq!(engine["status"], "failed", "{engine:#}");
    let why = error_of(engine);
    assert!(
        why.contains("snap-1") && why.contains("failed") && why.contains("disk full on engine"),
        "the reason is the engine's: {engine:#}"
    );
    assert!(engine["external"].is_null(), "{engine:#}");
    assert_eq!(component(&summary, "data")["status"], "complete");
    site.engine.set(|b| b.snapshot_fails = false);
    summary
}

#[test]
fn a_failed_engine_snapshot_fails_the_backup_and_the_resume_still_runs_last() {
    let site = EngineSite::new(Setup::default());
    let hooks = vec![
        site.pause_hook("5s", 2),
        site.http_hook("success"),
        site.http_hook("failure"),
        site.http_hook("always"),
    ];
    site.with_hooks(hooks);
    let summary = failed_engine_backup(&site);
    let name = summary["name"].as_str().unwrap();
    assert_eq!(
        site.engine.lines(),
        strs(&[
            "POST /exporter/pause",
            "POST /snapshots",
            SNAPSHOT,
            "POST /exporter/resume",
            "POST /hooks/failure",
            "POST /hooks/always",
        ])
    );
    let calls = site.engine.calls();
    let failure = calls
        .iter()
        .find(|c| c.line == "POST /hooks/failure")
        .unwrap();
    assert_eq!(failure.body["status"], "failed", "{failure:#?}");
    assert_no_pauses(&site, "after a failed backup");
    // Recorded so.
    let shown = site.show(name);
    assert_eq!(shown["status"], "failed");
    assert_eq!(component(&shown, "engine")["status"], "failed");
    // And `show` says which component failed and why, without --json too.
    let human = site.run(&["show", name]);
    assert!(
        human.stdout.contains("component engine (http): failed")
            && human.stdout.contains("disk full on engine")
            && human.stdout.contains("component data (files): complete"),
        "{human}"
    );
}

/// An `http` component with no `state` to poll takes the backup's own answer: a state
/// that says failed fails the component (it is never recorded complete).
#[test]
fn an_engine_without_a_state_endpoint_that_answers_failed_fails_the_component() {
    let site = EngineSite::new(Setup::default());
    // The default setup's configuration, as written.
    let text = std::fs::read_to_string(site.cli.config()).unwrap();
    let line = format!("state = \"GET {}/snapshots/{{id}}\"\n", site.engine.url);
    assert!(text.contains(&line), "{text}");
    std::fs::write(site.cli.config(), text.replace(&line, "")).unwrap();
    site.engine.set(|b| b.snapshot_fails = true);
    let (out, summary) = site.backup();
    assert_eq!(out.code, Some(3), "{out}");
    let engine = component(&summary, "engine");
    assert_eq!(engine["status"], "failed", "{engine:#}");
    assert!(
        engine["error"]
            .as_str()
            .unwrap_or_default()
            .contains("\"failed\""),
        "{engine:#}"
    );
    assert_eq!(compact(&site.engine.calls()), strs(&["POST /snapshots"]));
}

// ---------------------------------------------------------------------------------------
// 3. SIGTERM.

#[test]
fn sigterm_while_the_engine_snapshots_resumes_and_records_the_backup_failed() {
    let site = EngineSite::new(Setup::default());
    let hooks = vec![
        site.pause_hook("5s", 2),
        site.http_hook("failure"),
        site.http_hook("always"),
    ];
    site.with_hooks(hooks);
    site.engine.set(|b| b.hold = true);
    let mut backup = site.spawn_backup();
    site.engine
        .wait_for(&mut backup.0, "the first poll of the snapshot", |c| {
            c.line == SNAPSHOT
        });
    // While paused, the pause is on disk, held by this process.
    let records = site.pause_records();
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["holder_pid"], backup.0.id(), "{records:#?}");
    assert_eq!(records[0]["hook"], "exporter");
    assert!(
        !site
            .engine
            .lines()
            .contains(&"POST /exporter/resume".to_string()),
        "resumed too early: {:#?}",
        site.engine.lines()
    );

    let code = terminate_within(&mut backup, LIMIT);
    let out = read_outputs(&mut backup);
    assert_eq!(code, Some(3), "a failed backup's exit code: {out}");
    assert!(out.stderr.contains("SIGTERM"), "{out}");
    assert_eq!(
        site.engine.lines(),
        strs(&[
            "POST /exporter/pause",
            "POST /snapshots",
            SNAPSHOT,
            "POST /exporter/resume",
            "POST /hooks/failure",
            "POST /hooks/always",
        ])
    );
    assert_no_pauses(&site, "after SIGTERM");

    let summary = json(&out.stdout);
    assert_eq!(summary["status"], "failed", "{summary:#}");
    let engine = component(&summary, "engine");
    assert_eq!(engine["status"], "failed", "{engine:#}");
    assert!(error_of(engine).contains("SIGTERM"), "{engine:#}");
    let listed = json(&site.run(&["list", "--json"]).stdout);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed:#}");
    assert_eq!(listed[0]["status"], "failed", "{listed:#}");
}

// ---------------------------------------------------------------------------------------
// 4. Hook timeouts.

#[test]
fn a_before_hook_past_its_timeout_fails_the_backup_before_anything_is_paused() {
    let site = EngineSite::new(Setup::default());
    let slow = "[[hooks]]\nname = \"slow\"\nat = \"before\"\nrun = [\"/bin/sleep\", \"20\"]\ntimeout = \"500ms\"\n";
    let hooks = vec![
        slow.to_string(),
        site.pause_hook("5s", 2),
        site.http_hook("failure"),
    ];
    site.with_hooks(hooks);
    let started = Instant::now();
    let (out, summary) = site.backup();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the hook was not stopped at its timeout"
    );
    assert_eq!(out.code, Some(3), "{out}");
    assert_eq!(summary["status"], "failed", "{summary:#}");
    for name in ["data", "engine"] {
        let c = component(&summary, name);
        assert_eq!(c["status"], "failed", "{c:#}");
        assert!(
            error_of(c).contains("slow") && error_of(c).contains("no answer within"),
            "{c:#}"
        );
    }
    // Nothing paused, nothing snapshotted; the failure hook ran.
    assert_eq!(site.engine.lines(), strs(&["POST /hooks/failure"]));
    assert_no_pauses(&site, "after a before hook failed");
}

#[test]
fn a_pause_past_its_timeout_fails_the_backup_and_is_resumed() {
    let site = EngineSite::new(Setup::default());
    let hooks = vec![site.pause_hook("1s", 2), site.http_hook("failure")];
    site.with_hooks(hooks);
    site.engine.set(|b| b.pause_delay = Duration::from_secs(4));
    let (out, summary) = site.backup();
    assert_eq!(out.code, Some(3), "{out}");
    assert_eq!(summary["status"], "failed", "{summary:#}");
    let engine = component(&summary, "engine");
    assert_eq!(engine["status"], "failed", "{engine:#}");
    assert!(
        error_of(engine).contains("pause")
            && (error_of(engine).contains("no answer within")
                || error_of(engine).contains("timed out")),
        "{engine:#}"
    );
    // A pause that timed out may have taken effect: it is resumed; no snapshot taken.
    assert_eq!(
        site.engine.lines(),
        strs(&[
            "POST /exporter/pause",
            "POST /exporter/resume",
            "POST /hooks/failure",
        ])
    );
    let calls = site.engine.calls();
    assert_eq!(calls[1].status, 200, "{calls:#?}");
    // The pause landed 4 s in, after the backup had given up on it: the resume waited
    // for it, so the exporter runs.
    assert!(
        !site.engine.paused(),
        "the late pause was resumed after it landed"
    );
    assert_no_pauses(&site, "after a timed-out pause");
}

/// A pause that never answers is abandoned after `timeout` plus `late_pause`; it may
/// still land, so the resume is sent at once and again `late_pause` later.
#[test]
fn an_abandoned_pause_that_lands_late_is_resumed_again_after_it() {
    let site = EngineSite::new(Setup::default());
    let hook = site
        .pause_hook("1s", 2)
        .replace("resume_attempts", "late_pause = \"4s\"\nresume_attempts");
    site.with_hooks(vec![hook]);
    // Abandoned at 5 s (1 s + 4 s), first resume then; lands at 6 s; second resume at 9 s.
    site.engine.set(|b| b.pause_delay = Duration::from_secs(6));
    let (out, summary) = site.backup();
    assert_eq!(out.code, Some(3), "{out}");
    assert_eq!(summary["status"], "failed", "{summary:#}");
    let resumes = site
        .engine
        .calls()
        .iter()
        .filter(|c| c.line == "POST /exporter/resume")
        .count();
    assert_eq!(resumes, 2, "{:#?}", site.engine.lines());
    assert!(
        !site.engine.paused(),
        "the pause that landed late was resumed"
    );
    assert_no_pauses(&site, "after the second resume");
}

// ---------------------------------------------------------------------------------------
// 5. SIGKILL while paused.

/// Runs a backup and SIGKILLs it while its pause holds the engine's exporter (the
/// snapshot polled once); returns its pid.
fn backup_killed_while_paused(site: &EngineSite) -> u32 {
    site.engine.set(|b| b.hold = true);
    let mut backup = site.spawn_backup();
    let pid = backup.0.id();
    site.engine
        .wait_for(&mut backup.0, "the first poll of the snapshot", |c| {
            c.line == SNAPSHOT
        });
    backup.0.kill().unwrap();
    backup.0.wait().unwrap();
    pid
}

#[test]
fn a_pause_left_by_sigkill_stays_recorded_and_the_next_backup_resumes_it_first() {
    let site = EngineSite::new(Setup::default());
    let setup = Setup {
        lease_ttl: Some(2),
        hooks: vec![site.pause_hook("5s", 2)],
        ..Setup::default()
    };
    site.configure(&setup);
    let pid = backup_killed_while_paused(&site);

    // The record stays, held by the dead process; nothing resumed it.
    let records = site.pause_records();
    assert_eq!(records.len(), 1, "{records:#?}");
    let killed = records[0].clone();
    assert_eq!(killed["holder_pid"], pid, "{killed:#?}");
    assert!(killed["resume_error"].is_null(), "{killed:#?}");
    let killed_op = killed["operation"].as_str().unwrap().to_string();
    assert_eq!(
        site.engine.lines(),
        strs(&["POST /exporter/pause", "POST /snapshots", SNAPSHOT])
    );
    let before = site.engine.calls().len();

    // The next backup (once the dead one's cluster lock expired: retried while busy)
    // resumes it before it pauses again.
    site.engine.set(|b| {
        b.hold = false;
        b.running_polls = 0;
    });
    let deadline = Instant::now() + LIMIT;
    let (out, summary) = loop {
        let out = site.run(&["backup", "--json"]);
        if out.code == Some(6) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(300));
            continue;
        }
        let summary = serde_json::from_str::<Value>(&out.stdout)
            .unwrap_or_else(|e| panic!("backup printed no summary ({e}): {out}"));
        break (out, summary);
    };
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(summary["status"], "complete", "{summary:#}");
    assert!(
        out.stderr.contains("resumed exporter") && out.stderr.contains(&killed_op),
        "the next backup says what it resumed: {out}"
    );
    let name = summary["name"].as_str().unwrap();
    assert_ne!(name, killed_op);
    let after = site.engine.calls()[before..].to_vec();
    assert_eq!(
        compact(&after),
        strs(&[
            "POST /exporter/resume",
            "POST /exporter/pause",
            "POST /snapshots",
            SNAPSHOT,
            "POST /exporter/resume",
        ]),
        "the killed run's pause is resumed first"
    );
    assert_eq!(after[0].body["backup"], killed_op.as_str(), "{after:#?}");
    assert_eq!(after[0].body["phase"], "resume", "{after:#?}");
    assert_eq!(after[1].body["backup"], name, "{after:#?}");
    assert_eq!(after.last().unwrap().body["backup"], name, "{after:#?}");
    assert_no_pauses(&site, "after the next backup");
}

/// `strata backup --json` in namespaces of its own (`unshare FLAGS`), after `setup` (shell
/// commands run there first), with `STRATA_TEST_UNSAFE=unsafe_rule` when given.
fn strata_unshared(
    site: &EngineSite,
    flags: &[&str],
    setup: &str,
    unsafe_rule: Option<&str>,
) -> Out {
    common::assert_root("namespaces of its own (unshare)");
    let mut cmd = Command::new("unshare");
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("STRATA_PASSWORD", common::PASSWORD)
        .env("STRATA_BIN", env!("CARGO_BIN_EXE_strata"))
        .env("STRATA_CONFIG_PATH", site.cli.config())
        .current_dir(site.cli.dir())
        .args(flags)
        .args(["sh", "-c"])
        .arg(format!(
            "{setup} exec \"$STRATA_BIN\" --config \"$STRATA_CONFIG_PATH\" backup --json"
        ));
    if let Some(rule) = unsafe_rule {
        cmd.env("STRATA_TEST_UNSAFE", rule);
    }
    Out::from(cmd.output().unwrap())
}

/// A backup paused and in flight; a second `strata backup` starts in another PID
/// namespace (a container, `unshare`), where the first's process has no `/proc` entry.
/// Returns the second's outcome, the engine's calls by then, and the first's outcome.
fn second_backup_in_another_pid_namespace(unsafe_rule: Option<&str>) -> (Out, Vec<String>, Out) {
    let site = EngineSite::new(Setup::default());
    site.with_hooks(vec![site.pause_hook("5s", 2)]);
    site.engine.set(|b| b.hold = true);
    let mut first = site.spawn_backup();
    site.engine
        .wait_for(&mut first.0, "the first poll of the snapshot", |c| {
            c.line == SNAPSHOT
        });
    let second = strata_unshared(&site, &["-pfm", "--mount-proc"], "", unsafe_rule);
    let seen = site.engine.lines();
    site.engine.set(|b| b.hold = false);
    (second, seen, read_outputs(&mut first))
}

#[test]
fn a_live_pause_held_from_another_pid_namespace_is_not_resumed_by_a_second_backup() {
    let (second, seen, first) = second_backup_in_another_pid_namespace(None);
    assert_eq!(second.code, Some(6), "the cluster is busy: {second}");
    assert!(
        !seen.contains(&"POST /exporter/resume".to_string()),
        "the live backup's pause was resumed under it: {seen:#?}"
    );
    assert_eq!(first.code, Some(0), "{first}");
}

#[test]
fn negative_control_proc_pause_liveness_resumes_a_live_backups_pause() {
    let (_, seen, _) = second_backup_in_another_pid_namespace(Some("proc-pause-liveness"));
    assert!(
        seen.contains(&"POST /exporter/resume".to_string()),
        "with the rule gone, the second backup must resume the live pause: {seen:#?}"
    );
}

/// The packaged units hide `/proc/sys` (`ProcSubset=pid`), so the kernel's boot id
/// cannot be read: a SIGKILLed holder is still proven gone by its released alive file on
/// the local state directory, and the next backup resumes its pause.
#[test]
fn a_pause_left_by_sigkill_is_resumed_by_a_backup_behind_the_packaged_units_proc() {
    let site = EngineSite::new(Setup::default());
    site.configure(&Setup {
        lease_ttl: Some(2),
        hooks: vec![site.pause_hook("5s", 2)],
        ..Setup::default()
    });
    backup_killed_while_paused(&site);
    site.engine.set(|b| {
        b.hold = false;
        b.running_polls = 0;
    });
    let packaged_proc = "mount -t proc -o subset=pid,hidepid=invisible proc /proc &&";
    let deadline = Instant::now() + LIMIT;
    let out = loop {
        let out = strata_unshared(&site, &["-m"], packaged_proc, None);
        if out.code == Some(6) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(300));
            continue;
        }
        break out;
    };
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stderr.contains("resumed exporter"), "{out}");
    assert_eq!(
        site.engine.lines()[3..4],
        strs(&["POST /exporter/resume"]),
        "the killed backup's pause is resumed first"
    );
    assert_no_pauses(&site, "after the next backup");
}

#[test]
fn a_pause_left_by_sigkill_is_resumed_by_a_strata_server_on_the_same_state_dir() {
    let site = EngineSite::new(Setup::default());
    let setup = Setup {
        hooks: vec![site.pause_hook("5s", 2)],
        ..Setup::default()
    };
    site.configure(&setup);
    backup_killed_while_paused(&site);
    let records = site.pause_records();
    assert_eq!(records.len(), 1, "{records:#?}");
    let killed_op = records[0]["operation"].as_str().unwrap().to_string();
    let before = site.engine.calls().len();
    assert!(!site
        .engine
        .lines()
        .contains(&"POST /exporter/resume".to_string()));

    let mut cmd = site.cli.command();
    cmd.env("STRATA_TOKEN", "user-token")
        .env("STRATA_AGENT_TOKEN", "agent-token");
    let _server = common::server::Server::start(cmd, &site.path("server.log"));
    let deadline = Instant::now() + LIMIT;
    while site.engine.calls().len() == before {
        assert!(
            Instant::now() < deadline,
            "the server never resumed the pause; log:\n{}",
            std::fs::read_to_string(site.path("server.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let deadline = Instant::now() + LIMIT;
    while !site.pause_records().is_empty() {
        assert!(Instant::now() < deadline, "the record was never removed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = site.engine.calls()[before..].to_vec();
    assert_eq!(
        compact(&after),
        strs(&["POST /exporter/resume"]),
        "{after:#?}"
    );
    assert_eq!(after[0].body["backup"], killed_op.as_str(), "{after:#?}");
    assert_eq!(after[0].status, 200);
}

// ---------------------------------------------------------------------------------------
// 6. A resume that keeps failing.

/// A server whose own backup's resume failed retries it (every 5 s) once that backup has
/// ended, without a restart: the engine is not left paused until the next backup.
#[test]
fn a_server_retries_the_resume_its_own_backup_could_not_make() {
    let site = EngineSite::new(Setup::default());
    site.with_hooks(vec![site.pause_hook("5s", 2)]);
    site.engine.set(|b| b.resume_failures = 2);
    let mut cmd = site.cli.command();
    cmd.env("STRATA_TOKEN", "user-token")
        .env("STRATA_AGENT_TOKEN", "agent-token");
    let server = common::server::Server::start(cmd, &site.path("server.log"));
    let started = common::server::http(
        &server.url,
        "POST",
        "/api/v1/backups",
        Some("user-token"),
        "",
    );
    assert_eq!(started.status, 202, "{}", started.body);
    let resumed = |site: &EngineSite| {
        site.engine
            .calls()
            .iter()
            .any(|c| c.line == "POST /exporter/resume" && c.status == 200)
    };
    let deadline = Instant::now() + LIMIT;
    while !(resumed(&site) && site.pause_records().is_empty()) {
        assert!(
            Instant::now() < deadline,
            "the server never retried its resume; calls {:?}; log:\n{}",
            site.engine.lines(),
            std::fs::read_to_string(site.path("server.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let statuses: Vec<u16> = site
        .engine
        .calls()
        .iter()
        .filter(|c| c.line == "POST /exporter/resume")
        .map(|c| c.status)
        .collect();
    assert_eq!(
        statuses,
        [500, 500, 200],
        "two failed in the backup, the retry took"
    );
    drop(server);
}

#[test]
fn a_resume_that_keeps_failing_is_reported_kept_and_retried_by_the_next_run() {
    let site = EngineSite::new(Setup::default());
    let setup = Setup {
        hooks: vec![site.pause_hook("5s", 2)],
        ..Setup::default()
    };
    site.configure(&setup);
    site.engine.set(|b| b.resume_failures = 2);
    let (out, summary) = site.backup();
    let first = summary["name"].as_str().unwrap().to_string();
    assert!(
        out.stderr.contains("resume failed") && out.stderr.contains("exporter"),
        "the failed resume is reported: {out}"
    );
    // The data is complete, but a system was left paused: no clean success.
    assert_eq!(out.code, Some(3), "{out}");
    assert!(out.stderr.contains("left a system paused"), "{out}");
    let still: Vec<&str> = summary["still_paused"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        still.len() == 1 && still[0].contains("exporter"),
        "{summary:#}"
    );
    assert_eq!(
        site.engine.lines(),
        strs(&[
            "POST /exporter/pause",
            "POST /snapshots",
            SNAPSHOT,
            "POST /exporter/resume",
            "POST /exporter/resume",
        ])
    );
    let statuses: Vec<u16> = site
        .engine
        .calls()
        .iter()
        .filter(|c| c.line == "POST /exporter/resume")
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses, [500, 500]);
    let records = site.pause_records();
    assert_eq!(records.len(), 1, "the pause stays recorded: {records:#?}");
    let resume_error = records[0]["resume_error"].as_str().unwrap_or_default();
    assert!(
        resume_error.contains("500"),
        "the record keeps why: {records:#?}"
    );
    assert_eq!(records[0]["operation"], first.as_str());
    assert_eq!(
        summary["status"], "complete",
        "the data is stored: {summary:#}"
    );
    // `strata status` shows what is still paused.
    let status = site.run(&["status", "--json"]);
    let status_json = json(&status.stdout);
    let paused = status_json["paused"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(paused.len(), 1, "status shows the kept pause: {status}");
    assert_eq!(paused[0]["hook"], "exporter", "{status}");
    assert!(
        paused[0]["resume_error"]
            .as_str()
            .unwrap_or_default()
            .contains("500"),
        "{status}"
    );
    assert_eq!(
        site.engine.calls().len(),
        5,
        "status resumes nothing: {:#?}",
        site.engine.lines()
    );

    // The next run retries it first, then pauses and resumes its own.
    let before = site.engine.calls().len();
    let (out, summary) = site.backup();
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stderr.contains("resumed exporter"), "{out}");
    let second = summary["name"].as_str().unwrap();
    let after = site.engine.calls()[before..].to_vec();
    assert_eq!(
        compact(&after),
        strs(&[
            "POST /exporter/resume",
            "POST /exporter/pause",
            "POST /snapshots",
            SNAPSHOT,
            "POST /exporter/resume",
        ])
    );
    assert_eq!(after[0].status, 200);
    assert_eq!(after[0].body["backup"], first.as_str(), "{after:#?}");
    assert_eq!(after.last().unwrap().body["backup"], second, "{after:#?}");
    assert_no_pauses(&site, "after the retry");
}

// ---------------------------------------------------------------------------------------
// 7. Optional components.

fn unreachable_component(optional: bool) -> Setup {
    Setup {
        nodes: format!(
            "[[nodes]]\nname = \"x1\"\nurl = \"http://127.0.0.1:{}\"\n",
            strata_testkit::free_port()
        ),
        components: format!(
            "[[components]]\nname = \"extra\"\nplugin = \"files\"\nnodes = [\"x1\"]\noptional = {optional}\n"
        ),
        ..Setup::default()
    }
}

#[test]
fn an_optional_component_whose_nodes_do_not_answer_is_absent_and_the_backup_complete() {
    let site = EngineSite::new(Setup::default());
    let setup = unreachable_component(true);
    site.configure(&setup);
    let (out, summary) = site.backup();
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(summary["status"], "complete", "{summary:#}");
    assert_eq!(component_names(&summary), ["data", "engine", "extra"]);
    let extra = component(&summary, "extra");
    assert_eq!(extra["status"], "absent", "{extra:#}");
    assert_eq!(extra["optional"], true, "{extra:#}");
    assert_eq!(component(&summary, "data")["status"], "complete");
    assert_eq!(component(&summary, "engine")["status"], "complete");
    let nodes: Vec<&str> = summary["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["n1", "n2"], "{summary:#}");
}

#[test]
fn a_required_component_whose_nodes_do_not_answer_fails_the_backup() {
    let site = EngineSite::new(Setup::default());
    let setup = unreachable_component(false);
    site.configure(&setup);
    let out = site.run(&["backup", "--json"]);
    assert_ne!(out.code, Some(0), "{out}");
    let summary: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("no summary recorded ({e}): {out}"));
    assert_eq!(out.code, Some(3), "{out}");
    assert_eq!(summary["status"], "failed", "{summary:#}");
    let extra = component(&summary, "extra");
    assert_eq!(extra["optional"], false, "{extra:#}");
    assert_eq!(extra["status"], "failed", "{extra:#}");
}

// ---------------------------------------------------------------------------------------
// 8. Restore: refused when incomplete, `--component`, and the engine's restore.

#[test]
fn restore_of_an_incomplete_backup_is_refused_and_component_restores_only_that_one() {
    let site = EngineSite::new(Setup::default());
    let summary = failed_engine_backup(&site);
    let name = summary["name"].as_str().unwrap();
    let calls_before = site.engine.calls().len();

    // Change the data so a restore shows.
    std::fs::write(site.data(1).join("a.txt"), "changed\n").unwrap();
    std::fs::remove_file(site.data(2).join("c.txt")).unwrap();

    let out = site.run(&["restore", name]);
    assert_eq!(out.code, Some(2), "refused as a usage error: {out}");
    assert!(
        out.stderr.contains("engine is failed")
            && out.stderr.contains("--component data")
            && out.stderr.contains(name),
        "the refusal names the incomplete component and what to do: {out}"
    );
    assert_eq!(
        std::fs::read_to_string(site.data(1).join("a.txt")).unwrap(),
        "changed\n",
        "nothing written"
    );
    assert!(!site.data(2).join("c.txt").exists(), "nothing written");
    assert_eq!(
        site.engine.calls().len(),
        calls_before,
        "the engine untouched"
    );

    let out = site.run(&["restore", name, "--component", "data"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(
        std::fs::read_to_string(site.data(1).join("a.txt")).unwrap(),
        "alpha\n"
    );
    assert_eq!(
        std::fs::read_to_string(site.data(2).join("c.txt")).unwrap(),
        "gamma\n"
    );
    assert_eq!(
        std::fs::read(site.data(1).join("sub/b.bin")).unwrap(),
        pseudo_random(200_000, 1)
    );
    let restores: Vec<String> = site.engine.lines()[..]
        .iter()
        .filter(|l| l.contains("/restore"))
        .cloned()
        .collect();
    assert!(
        restores.is_empty(),
        "the engine's restore was called: {restores:?}"
    );
    assert_eq!(
        site.engine.calls().len(),
        calls_before,
        "the engine untouched"
    );

    // Rename rules and dry runs are for components that hold names (etcd): with none in
    // the restore they are refused before anything is written, never ignored.
    std::fs::write(site.data(1).join("a.txt"), "changed\n").unwrap();
    for (extra, why) in [
        (&["--rename", "alpha=beta"][..], "(--rename) rewrites names"),
        (&["--dry-run"][..], "(--dry-run) previews"),
        (
            &["--rename", "no-equals-sign", "--dry-run"][..],
            "not a rule",
        ),
    ] {
        let mut args = vec!["restore", name, "--component", "data"];
        args.extend(extra);
        let out = site.run(&args);
        assert_eq!(out.code, Some(2), "{args:?}: {out}");
        assert!(out.stderr.contains(why), "{args:?}: {out}");
        assert_eq!(
            std::fs::read_to_string(site.data(1).join("a.txt")).unwrap(),
            "changed\n",
            "{args:?}: nothing written"
        );
    }
    std::fs::write(site.data(1).join("a.txt"), "alpha\n").unwrap();

    // A complete backup restores both, the engine through its API.
    let (out, good) = site.backup();
    assert_eq!(out.code, Some(0), "{out}");
    let good = good["name"].as_str().unwrap();
    std::fs::write(site.data(1).join("a.txt"), "changed again\n").unwrap();
    let before = site.engine.calls().len();
    let out = site.run(&["restore", good]);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("restored component engine"), "{out}");
    assert_eq!(
        std::fs::read_to_string(site.data(1).join("a.txt")).unwrap(),
        "alpha\n"
    );
    let after = site.engine.calls()[before..].to_vec();
    assert_eq!(
        compact(&after),
        strs(&["POST /snapshots/snap-1/restore"]),
        "{after:#?}"
    );
    assert_eq!(after[0].body["operation"], "restore", "{after:#?}");
    assert_eq!(after[0].body["backup"], good, "{after:#?}");

    // A component named twice is restored once (not twice at once into one place).
    let before = site.engine.calls().len();
    let out = site.run(&[
        "restore",
        good,
        "--component",
        "engine",
        "--component",
        "engine",
    ]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(
        compact(&site.engine.calls()[before..]),
        strs(&["POST /snapshots/snap-1/restore"])
    );

    // The pre-checks report every problem at once, before writing: the engine is no
    // longer configured, and node n2 does not answer. (The site has the default
    // setup's configuration, as written.)
    let text = std::fs::read_to_string(site.cli.config()).unwrap();
    let start = text.find("[[components]]\nname = \"engine\"").unwrap();
    let end = text.find("timeout = \"40s\"\n").unwrap() + "timeout = \"40s\"\n".len();
    let n2 = format!("name = \"n2\"\nroots = [\"{}\"]\n", site.data(2).display());
    assert!(text.contains(&n2));
    let text = format!("{}{}", &text[..start], &text[end..]).replace(
        &n2,
        &format!(
            "name = \"n2\"\nurl = \"http://127.0.0.1:{}\"\n",
            strata_testkit::free_port()
        ),
    );
    std::fs::write(site.cli.config(), text).unwrap();
    std::fs::write(site.data(1).join("a.txt"), "changed once more\n").unwrap();
    let before = site.engine.calls().len();
    let out = site.run(&["restore", good]);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(
        out.stderr.contains("refused before anything was written")
            && out.stderr.contains("component engine")
            && out.stderr.contains("n2 cannot be reached"),
        "every problem at once: {out}"
    );
    assert_eq!(
        std::fs::read_to_string(site.data(1).join("a.txt")).unwrap(),
        "changed once more\n",
        "nothing written"
    );
    assert_eq!(site.engine.calls().len(), before, "the engine untouched");
}

// ---------------------------------------------------------------------------------------
// 9. Configurations from before components.

#[test]
fn a_configuration_without_components_is_one_files_component() {
    let site = EngineSite::legacy();
    let (out, summary) = site.backup();
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(summary["status"], "complete", "{summary:#}");
    let shown = site.show(summary["name"].as_str().unwrap());
    assert_eq!(component_names(&shown), ["files"], "{shown:#}");
    let files = component(&shown, "files");
    assert_eq!(files["plugin"], "files");
    assert_eq!(files["status"], "complete");
    assert_eq!(files["optional"], false);
    assert_eq!(files["nodes"], serde_json::json!(["n1", "n2"]));
    for node in shown["nodes"].as_array().unwrap() {
        assert_eq!(node["component"], "files", "{node:#}");
    }
    assert!(site.engine.calls().is_empty());
}

/// A resume that still fails after its retries is sent as a `hook.failed` webhook, and the
/// backup's audit entry and webhook name every component with its status.
#[test]
fn a_failed_resume_is_sent_as_a_webhook_and_the_audit_names_the_components() {
    let site = EngineSite::new(Setup::default());
    let receiver = Engine::start();
    let webhooks = format!(
        "[[webhooks]]\nurl = \"{}/webhook\"\nevents = [\"hook.failed\", \"backup.*\"]\nattempts = 1\n",
        receiver.url
    );
    let setup = Setup {
        hooks: vec![site.pause_hook("5s", 1), webhooks],
        ..Setup::default()
    };
    site.configure(&setup);
    site.engine.set(|b| b.resume_failures = 1);
    let (out, summary) = site.backup();
    // The data is complete, the exporter left paused: exit 3, and said so everywhere.
    assert_eq!(out.code, Some(3), "{out}");
    let name = summary["name"].as_str().unwrap();
    let events: Vec<Value> = receiver
        .calls()
        .into_iter()
        .filter(|c| c.line == "POST /webhook")
        .map(|c| c.body)
        .collect();
    let of = |event: &str| {
        events
            .iter()
            .find(|e| e["event"] == event)
            .unwrap_or_else(|| panic!("no {event} webhook in {events:#?}"))
    };
    let failed = of("hook.failed");
    assert_eq!(failed["target"], "exporter", "{failed:#}");
    assert_eq!(failed["operation"], name, "{failed:#}");
    assert!(
        failed["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("still paused"),
        "{failed:#}"
    );
    let done = of("backup.partial");
    let detail = done["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("components: data complete, engine complete")
            && detail.contains("STILL PAUSED: hook exporter"),
        "{done:#}"
    );
    let audit = site.run(&["audit", "--json"]);
    assert_eq!(audit.code, Some(0), "{audit}");
    assert!(
        audit
            .stdout
            .contains("components: data complete, engine complete"),
        "the audit entry names the components: {audit}"
    );
}
