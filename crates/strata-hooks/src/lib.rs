//! Hooks: commands or HTTP calls at the steps of a backup and a restore, and pause/resume
//! pairs whose resume always runs.
//!
//! A `[[hooks]]` entry either runs an [`HookAction`] at a [`HookPoint`] (`run`), or declares a
//! pause/resume pair (`pause` and `resume`): the pause is issued before the snapshots of
//! its scope, the resume once they are stored, and the resume runs on *every* path once
//! a pause was attempted: success, a failing step, a cancellation (SIGTERM), a timeout.
//! For the paths no code of this process can see (SIGKILL, a crash, a power cut) the
//! pause is first written durably ([`PauseRecord`] under the state directory) and only
//! then issued; any later strata process with that state directory resumes records whose
//! holder is gone ([`resume_orphans`]): the next backup before it starts, a server at
//! start and every few seconds (`strata status` lists them). A resume that fails is retried, and when it still fails
//! the record stays (shown by `status`, counted in metrics, sent as a `hook.failed`
//! webhook) and is tried again by the next process.

#![deny(missing_docs)]

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use strata_util::{error_chain, mask_url, valid_id};

mod pause;
pub use pause::issue_pause;

/// Where a `run` hook runs in an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookPoint {
    /// Before anything is read or written; a failure fails the operation.
    Before,
    /// Once the data of its scope is stored (backup) or laid down (restore).
    AfterSnapshot,
    /// At the end, when its scope succeeded.
    Success,
    /// At the end, when its scope failed or is partial.
    Failure,
    /// At the end, whatever happened.
    Always,
}

impl HookPoint {
    /// The name hooks see in `STRATA_PHASE`.
    pub fn as_str(&self) -> &'static str {
        match self {
            HookPoint::Before => "before",
            HookPoint::AfterSnapshot => "after_snapshot",
            HookPoint::Success => "success",
            HookPoint::Failure => "failure",
            HookPoint::Always => "always",
        }
    }
}

/// Which operation a hook belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookOperation {
    /// Runs around backups (the default).
    #[default]
    Backup,
    /// Runs around restores.
    Restore,
}

/// What a hook does: a command (`["/usr/local/bin/notify", "arg"]`, run without a shell)
/// or an HTTP call (`"POST http://engine:8080/exporter/pause"`, whose JSON body carries
/// the hook's environment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HookAction {
    /// A program and its arguments (a TOML array), run without a shell; the hook's
    /// environment comes as `STRATA_*` variables.
    Command(Vec<String>),
    /// `"METHOD URL"` (a TOML string): GET, POST, PUT, DELETE or PATCH to an http(s)
    /// URL, the hook's environment as the JSON body.
    Http(String),
    /// `{ http = "METHOD URL", body = { ... } }` (a TOML table): the same call with this
    /// JSON body instead of the environment, for APIs that read their own (Patroni's
    /// `PATCH /config` with `{ pause = true }`).
    Request(HttpRequest),
}

/// An HTTP call with a body of its own ([`HookAction::Request`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRequest {
    /// `"METHOD URL"`, as in [`HookAction::Http`].
    pub http: String,
    /// The JSON body sent as it is.
    pub body: serde_json::Value,
}

/// The most of a hook's output kept for the operation's log.
const OUTPUT_LIMIT: usize = 4096;

/// What a hook is told about where it runs: environment variables of a command, the JSON
/// body of an HTTP call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookEnv {
    /// `backup` or `restore`.
    pub operation: String,
    /// The operation's id.
    pub id: String,
    /// The backup made or restored.
    pub backup: String,
    /// The component the hook runs around; `None` around the whole operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// The node the hook runs around; `None` when it is not tied to one node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// `before`, `after_snapshot`, `success`, `failure`, `always`, `pause`, `resume`.
    pub phase: String,
    /// How the scope ended, at `success`, `failure` and `always`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The external snapshot an external component restores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// The backup's number, for systems that want their backups numbered in increasing
    /// order (Camunda's `backupId`): milliseconds since 1970 at its start, larger than
    /// every earlier one this process gave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<u64>,
}

/// Why a hook's action failed. Its text is the one line the audit log, the node's answer
/// and the operator see (URLs cut to their host).
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The action is not one strata can run (an HTTP line without a method or URL).
    #[error("{0}")]
    Invalid(String),
    /// The program could not be started (not found, not executable).
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program, as configured.
        program: String,
        /// Why it could not be started.
        #[source]
        source: std::io::Error,
    },
    /// The program ended with a failure status.
    #[error("{program} exited with {status}{}", with_output(output))]
    Exited {
        /// The program, as configured.
        program: String,
        /// How it ended.
        status: std::process::ExitStatus,
        /// What it printed (stdout then stderr, trimmed and bounded); may be empty.
        output: String,
    },
    /// The HTTP call did not complete (refused, reset, TLS).
    #[error("{url}: {why}")]
    Unreachable {
        /// The URL cut to its host ([`mask_url`]).
        url: String,
        /// The cause chain, without the URL.
        why: String,
        /// No connection was made: the request was never sent, so nothing of it can
        /// land later.
        never_sent: bool,
    },
    /// The system answered, with a status other than 2xx.
    #[error("{url} answered {status}: {body}")]
    Status {
        /// The URL cut to its host ([`mask_url`]).
        url: String,
        /// The HTTP status.
        status: reqwest::StatusCode,
        /// The answer's body (trimmed and bounded).
        body: String,
    },
    /// No answer within the hook's timeout (the program is killed).
    #[error("no answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
}

/// `": OUTPUT"`, or nothing for no output.
fn with_output(output: &str) -> String {
    match output.is_empty() {
        true => String::new(),
        false => format!(": {output}"),
    }
}

/// `"METHOD URL"` with its URL cut to the host.
fn masked_line(line: &str) -> String {
    match line.trim().split_once(' ') {
        Some((method, url)) => format!("{method} {}", mask_url(url.trim())),
        None => mask_url(line.trim()),
    }
}

/// `"METHOD URL"` parsed: GET, POST, PUT, DELETE or PATCH to an http(s) URL.
pub fn parse_http_line(line: &str) -> Result<(reqwest::Method, &str), String> {
    HookAction::parse_http(line)
}

impl HookAction {
    /// The method and URL of an HTTP action.
    fn http(&self) -> Option<Result<(reqwest::Method, &str), String>> {
        match self {
            HookAction::Http(line) | HookAction::Request(HttpRequest { http: line, .. }) => {
                Some(Self::parse_http(line))
            }
            HookAction::Command(_) => None,
        }
    }

    fn parse_http(line: &str) -> Result<(reqwest::Method, &str), String> {
        let Some((method, url)) = line.trim().split_once(' ') else {
            return Err(format!(
                "{:?}: an HTTP hook is \"METHOD URL\" (\"POST http://host/path\")",
                mask_label(line)
            ));
        };
        let url = url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "{:?}: the URL must start with http:// or https://",
                mask_label(line)
            ));
        }
        match reqwest::Method::from_bytes(method.as_bytes()) {
            Ok(m) if ["GET", "POST", "PUT", "DELETE", "PATCH"].contains(&m.as_str()) => {
                Ok((m, url))
            }
            _ => Err(format!(
                "{:?}: {method:?} is not GET, POST, PUT, DELETE or PATCH",
                mask_label(line)
            )),
        }
    }

    /// Checks the action's form.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            HookAction::Command(argv) if argv.is_empty() || argv[0].is_empty() => {
                Err("a command hook needs a program: [\"/path/to/program\", \"args\"...]".into())
            }
            HookAction::Command(_) => Ok(()),
            HookAction::Http(_) | HookAction::Request(_) => {
                self.http().expect("an HTTP action").map(|_| ())
            }
        }
    }

    /// A short description for logs and names: the program, or the method and the URL as
    /// far as its host ([`mask_url`]: a webhook's path may be its secret; never a body).
    pub fn describe(&self) -> String {
        match self {
            HookAction::Command(argv) => argv.first().cloned().unwrap_or_default(),
            HookAction::Http(line) | HookAction::Request(HttpRequest { http: line, .. }) => {
                masked_line(line)
            }
        }
    }

    /// The action as the configuration view shows it: a URL as far as its host (see
    /// [`mask_url`]), a command's program and arguments as they are (secrets
    /// belong in the environment or files, not argument lists).
    pub fn masked(&self) -> HookAction {
        match self {
            HookAction::Command(_) => self.clone(),
            HookAction::Http(line) => HookAction::Http(masked_line(line)),
            // The body is shown: it is configuration, and secrets belong in files.
            HookAction::Request(request) => HookAction::Request(HttpRequest {
                http: masked_line(&request.http),
                body: request.body.clone(),
            }),
        }
    }

    /// The text of an HTTP action.
    pub fn into_http(self) -> String {
        match self {
            HookAction::Http(line) | HookAction::Request(HttpRequest { http: line, .. }) => line,
            HookAction::Command(argv) => argv.join(" "),
        }
    }

    /// Runs the action within `timeout`; returns its output (trimmed, bounded) or why it
    /// failed.
    pub async fn run(&self, env: &HookEnv, timeout: Duration) -> Result<String, HookError> {
        let work = async {
            match self {
                HookAction::Command(argv) => run_command(argv, env).await,
                HookAction::Http(_) | HookAction::Request(_) => {
                    let (method, url) = self
                        .http()
                        .expect("an HTTP action")
                        .map_err(HookError::Invalid)?;
                    let body = match self {
                        HookAction::Request(request) => serde_json::to_vec(&request.body),
                        _ => serde_json::to_vec(env),
                    }
                    .expect("JSON values serialize");
                    run_http(method, url, body, timeout).await
                }
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(HookError::Timeout(timeout)),
        }
    }
}

fn bounded(text: &[u8], limit: usize) -> String {
    let text = String::from_utf8_lossy(&text[..text.len().min(limit)]);
    text.trim().to_string()
}

/// What a command printed, each stream trimmed and bounded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOutput {
    /// Its standard output: what an external component reads its answer from.
    pub stdout: String,
    /// Its standard error: progress and diagnostics, for the log only.
    pub stderr: String,
}

impl CommandOutput {
    /// Both streams, stdout first, as the operation's log keeps them.
    pub fn joined(&self) -> String {
        match (self.stdout.is_empty(), self.stderr.is_empty()) {
            (_, true) => self.stdout.clone(),
            (true, false) => self.stderr.clone(),
            (false, false) => format!("{}\n{}", self.stdout, self.stderr),
        }
    }
}

/// Runs `argv` (no shell) with the hook's environment as `STRATA_*` variables, keeping
/// up to `limit` bytes of each stream; fails when it cannot start or exits non-zero (the
/// error then carries both streams). No timeout of its own: the caller bounds it (the
/// child is killed when the future is dropped).
pub async fn run_program(
    argv: &[String],
    env: &HookEnv,
    limit: usize,
) -> Result<CommandOutput, HookError> {
    if argv.is_empty() || argv[0].is_empty() {
        return Err(HookError::Invalid("a command needs a program".into()));
    }
    let mut command = tokio::process::Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .env("STRATA_OPERATION", &env.operation)
        .env("STRATA_OPERATION_ID", &env.id)
        .env("STRATA_BACKUP", &env.backup)
        .env("STRATA_PHASE", &env.phase)
        .env("STRATA_COMPONENT", env.component.as_deref().unwrap_or(""))
        .env("STRATA_NODE", env.node.as_deref().unwrap_or(""))
        .env("STRATA_STATUS", env.status.as_deref().unwrap_or(""))
        .env(
            "STRATA_SNAPSHOT_ID",
            env.snapshot_id.as_deref().unwrap_or(""),
        )
        .env(
            "STRATA_BACKUP_ID",
            env.backup_id.map(|n| n.to_string()).unwrap_or_default(),
        )
        .stdin(std::process::Stdio::null())
        // A hook that outlives its timeout is killed with the future that runs it.
        .kill_on_drop(true);
    let out = command.output().await.map_err(|source| HookError::Spawn {
        program: argv[0].clone(),
        source,
    })?;
    let output = CommandOutput {
        stdout: bounded(&out.stdout, limit),
        stderr: bounded(&out.stderr, limit),
    };
    if out.status.success() {
        Ok(output)
    } else {
        Err(HookError::Exited {
            program: argv[0].clone(),
            status: out.status,
            output: bounded(output.joined().as_bytes(), OUTPUT_LIMIT),
        })
    }
}

async fn run_command(argv: &[String], env: &HookEnv) -> Result<String, HookError> {
    Ok(run_program(argv, env, OUTPUT_LIMIT).await?.joined())
}

async fn run_http(
    method: reqwest::Method,
    url: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<String, HookError> {
    let answer = http_call(method, url, body, timeout, OUTPUT_LIMIT).await?;
    answer.into_result(url)
}

/// An HTTP answer: its status and body (trimmed, bounded).
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    /// The HTTP status.
    pub status: reqwest::StatusCode,
    /// The body, up to the call's limit.
    pub body: String,
    /// The body was longer than the limit (and is cut).
    pub truncated: bool,
}

impl HttpAnswer {
    /// The body of a 2xx answer, else [`HookError::Status`].
    pub fn into_result(self, url: &str) -> Result<String, HookError> {
        if self.status.is_success() {
            Ok(self.body)
        } else {
            Err(HookError::Status {
                url: mask_url(url),
                status: self.status,
                body: bounded(self.body.as_bytes(), OUTPUT_LIMIT),
            })
        }
    }
}

/// One HTTP call with a JSON body, within `timeout`, reading at most `limit` bytes of the
/// answer (a system that answers without end costs no more memory). Any status is an
/// answer; only a call that did not complete is an error ([`HookError::Unreachable`]).
pub async fn http_call(
    method: reqwest::Method,
    url: &str,
    body: Vec<u8>,
    timeout: Duration,
    limit: usize,
) -> Result<HttpAnswer, HookError> {
    // One client for every call (its connection pool too): an external component polls
    // its system every second for as long as a snapshot runs.
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let client = CLIENT.get_or_init(reqwest::Client::new);
    let failed = |e: reqwest::Error| HookError::Unreachable {
        url: mask_url(url),
        never_sent: e.is_connect(),
        why: error_chain(&e.without_url()),
    };
    let work = async {
        let mut request = client.request(method, url).timeout(timeout);
        if !body.is_empty() {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let mut reply = request.send().await.map_err(failed)?;
        let status = reply.status();
        let mut read = Vec::new();
        while read.len() <= limit {
            match reply.chunk().await.map_err(failed)? {
                Some(chunk) => read.extend_from_slice(&chunk),
                None => break,
            }
        }
        Ok(HttpAnswer {
            status,
            truncated: read.len() > limit,
            body: bounded(&read, limit),
        })
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(answer) => answer,
        Err(_) => Err(HookError::Timeout(timeout)),
    }
}

/// One `[[hooks]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    /// A name for logs and `status` (default: the action).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `backup` (default) or `restore`.
    #[serde(default)]
    pub operation: HookOperation,
    /// Where a `run` hook runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<HookPoint>,
    /// What a `run` hook does at `at`; `None` for a pause/resume pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<HookAction>,
    /// A pause/resume pair: both, and no `run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<HookAction>,
    /// What undoes `pause`: run on every path once the pause was attempted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<HookAction>,
    /// Only around this component (default: the whole operation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// Only around this node (with its name in the environment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// How long one call may take (default 60s).
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// How often a failing resume is tried before it is reported (default 5).
    #[serde(default = "default_attempts")]
    pub resume_attempts: u32,
    /// A pause that did not answer within `timeout` may still land: how much longer it
    /// is waited for before its call is abandoned, and how long after an abandoned pause
    /// the resume is sent once more (default 30s; see [`issue_pause`]).
    #[serde(default = "default_late_pause")]
    pub late_pause: String,
}

fn default_timeout() -> String {
    "60s".into()
}

fn default_late_pause() -> String {
    "30s".into()
}

fn default_attempts() -> u32 {
    5
}

impl HookConfig {
    /// The hook's name in logs.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            self.run
                .as_ref()
                .or(self.pause.as_ref())
                .map(HookAction::describe)
                .unwrap_or_default()
        })
    }

    /// Its timeout (validated with the configuration).
    pub fn timeout(&self) -> Duration {
        humantime::parse_duration(self.timeout.trim()).unwrap_or(Duration::from_secs(60))
    }

    /// How long a late pause may still land (validated with the configuration).
    pub fn late_pause(&self) -> Duration {
        humantime::parse_duration(self.late_pause.trim()).unwrap_or(Duration::from_secs(30))
    }

    /// Whether this is a pause/resume pair.
    pub fn is_pause(&self) -> bool {
        self.pause.is_some()
    }

    /// Checks the entry's form; `components` and `nodes` are the configured names.
    pub fn validate(&self, components: &[String], nodes: &[String]) -> Result<(), String> {
        let label = self.label();
        let bad = |m: String| Err(format!("hook {label:?}: {m}"));
        match (&self.run, &self.pause, &self.resume) {
            (Some(run), None, None) => {
                if self.at.is_none() {
                    return bad("a `run` hook needs `at` (before, after_snapshot, success, failure or always)".into());
                }
                run.validate().or_else(&bad)?;
            }
            (None, Some(pause), Some(resume)) => {
                if self.at.is_some() {
                    return bad("a pause/resume pair runs around the snapshots: leave out `at`".into());
                }
                pause.validate().or_else(&bad)?;
                resume.validate().or_else(&bad)?;
            }
            (None, Some(_), None) | (None, None, Some(_)) => {
                return bad("`pause` and `resume` go together: a pause that is never resumed is what hooks exist to prevent".into())
            }
            _ => return bad("give either `run` (with `at`) or `pause` and `resume`".into()),
        }
        if let Err(e) = humantime::parse_duration(self.timeout.trim()) {
            return bad(format!("timeout {:?}: {e}", self.timeout));
        }
        if let Err(e) = humantime::parse_duration(self.late_pause.trim()) {
            return bad(format!("late_pause {:?}: {e}", self.late_pause));
        }
        if self.resume_attempts == 0 {
            return bad("resume_attempts must be at least 1".into());
        }
        if let Some(c) = &self.component {
            if !components.contains(c) {
                return bad(format!(
                    "component {c:?} is not one of the components ({})",
                    components.join(", ")
                ));
            }
        }
        if let Some(n) = &self.node {
            if !nodes.contains(n) {
                return bad(format!("node {n:?} is not one of the configured [[nodes]]"));
            }
        }
        Ok(())
    }
}

/// A pause that was issued (or attempted) and not yet resumed, as written to
/// `<state_dir>/pauses/<id>.json` before the pause is issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PauseRecord {
    /// The file's stem: `<operation id>-<hook index>`.
    pub id: String,
    /// The hook's name.
    pub hook: String,
    /// The operation that paused.
    pub operation: String,
    /// The component paused; `None` when the pause was around the whole operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// The node paused; `None` when the pause was not tied to one node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// RFC 3339 UTC: when the pause was issued.
    pub since: String,
    /// What resumes it, with the environment it gets.
    #[schema(value_type = Object)]
    pub resume: HookAction,
    /// The environment of the pause, which the resume gets too (its phase `resume`).
    #[schema(value_type = Object)]
    pub env: HookEnv,
    /// How long one resume attempt may take, in milliseconds (the hook's `timeout`).
    pub timeout_ms: u64,
    /// How often a resume is tried before it is reported as failed (the hook's
    /// `resume_attempts`).
    pub attempts: u32,
    /// The process holding the pause: its pid and start time (a pid alone can be reused).
    pub holder_pid: u32,
    /// The holder's start time, in clock ticks since boot (field 22 of
    /// `/proc/<pid>/stat`); 0 when it could not be read.
    pub holder_start: u64,
    /// The last resume's error, once one failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_error: Option<String>,
    /// The pause call answered (success or an error answer): nothing of it can land
    /// later. `false` while it runs, and for a call abandoned without an answer or cut
    /// by a crash: its resume is then sent once more, `late_pause_ms` after the first.
    #[serde(default)]
    pub pause_answered: bool,
    /// The hook's `late_pause`, in milliseconds.
    #[serde(default = "default_late_pause_ms")]
    pub late_pause_ms: u64,
    /// Resumed, but the record could not be removed (a directory that became
    /// read-only): it is never resumed again, and `status` asks for it to be deleted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resumed: bool,
}

fn default_late_pause_ms() -> u64 {
    30_000
}

/// A hook's label as status and metadata show it: any URL in it cut to its host
/// ([`mask_url`]), since a webhook's path may be its secret.
pub fn mask_label(label: &str) -> String {
    label
        .split(' ')
        .map(|word| match word.contains("://") {
            true => mask_url(word),
            false => word.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A record as status and metadata show it: the resume's URL and the hook's label cut to
/// their hosts.
pub fn shown_record(record: &PauseRecord) -> PauseRecord {
    PauseRecord {
        hook: mask_label(&record.hook),
        resume: record.resume.masked(),
        resume_error: record.resume_error.as_deref().map(mask_label),
        ..record.clone()
    }
}

/// The directory of pause records under a state directory.
pub fn pauses_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("pauses")
}

/// This process's start time in clock ticks since boot (field 22 of `/proc/self/stat`),
/// which tells a live holder from a new process that reused its pid.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The pid and start time of this process.
fn this_process() -> (u32, u64) {
    let pid = std::process::id();
    (pid, start_time(pid).unwrap_or(0))
}

impl PauseRecord {
    /// Whether the process that holds the pause still runs.
    pub fn holder_alive(&self) -> bool {
        start_time(self.holder_pid).is_some_and(|t| t == self.holder_start)
    }

    /// Whether a live operation still holds the pause, so no one else may resume it:
    /// its process runs, and when that process is this one, `live_here` says its
    /// operation still runs here. A record this process keeps after a failed resume is
    /// not held (its operation ended), so this process's own retries take it up.
    pub fn held(&self, live_here: impl Fn(&str) -> bool) -> bool {
        self.holder_alive() && (self.holder_pid != std::process::id() || live_here(&self.operation))
    }

    pub(crate) fn path(&self, state_dir: &Path) -> PathBuf {
        pauses_dir(state_dir).join(format!("{}.json", self.id))
    }

    /// Rewrites the record in place (no new directory entry: for when it cannot be
    /// removed) as resumed, so that no resumer runs it again.
    fn mark_resumed(&self, state_dir: &Path) -> std::io::Result<()> {
        use rustix::fs::{Mode, OFlags};
        use std::io::Write;
        let fd = rustix::fs::open(
            self.path(state_dir),
            OFlags::WRONLY | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut file = std::fs::File::from(fd);
        let record = PauseRecord {
            resumed: true,
            ..self.clone()
        };
        file.write_all(&serde_json::to_vec_pretty(&record).expect("records serialize"))?;
        file.sync_all()
    }

    /// Writes the record durably (temporary file, fsync, rename, fsync of the directory):
    /// when this returns, a crash can no longer lose the pause.
    pub fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        if !valid_id(&self.id) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{:?} is not a pause record id", self.id),
            ));
        }
        let dir = pauses_dir(state_dir);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        let tmp = dir.join(format!(".{}.tmp", self.id));
        // Never through a link someone planted: a fresh file (O_EXCL), 0600.
        let _ = std::fs::remove_file(&tmp);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(&serde_json::to_vec_pretty(self).expect("records serialize"))?;
        file.sync_all()?;
        std::fs::rename(&tmp, self.path(state_dir))?;
        std::fs::File::open(&dir)?.sync_all()
    }

    /// Claims the record for resuming: an exclusive lock on its file, so that two
    /// resumers (two processes sharing a state directory, or a coordinator's request and
    /// an agent's own lease-end resume) never run one resume at once. `None` when another
    /// holds it, or the record is gone (resumed meanwhile). Held until the file is
    /// dropped; with it, the record as the file holds it now (what was read before the
    /// claim may be stale), still checked as trusted.
    fn claim(&self, state_dir: &Path) -> Option<(std::fs::File, PauseRecord)> {
        use std::io::Read;
        use std::os::unix::fs::MetadataExt;
        let path = self.path(state_dir);
        let mut file = std::fs::File::open(&path).ok()?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).ok()?;
        // Still the file at that path: not one a resumer before us removed or replaced.
        let (held, now) = (
            file.metadata().ok()?,
            std::fs::symlink_metadata(&path).ok()?,
        );
        if held.ino() != now.ino() || held.dev() != now.dev() {
            return None;
        }
        trusted(&path, "pause record").ok()?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).ok()?;
        let current: PauseRecord = serde_json::from_slice(&bytes).ok()?;
        (current.id == self.id).then_some((file, current))
    }

    /// Removes the record once resumed.
    pub fn remove(&self, state_dir: &Path) -> std::io::Result<()> {
        match std::fs::remove_file(self.path(state_dir)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => std::fs::File::open(pauses_dir(state_dir))?.sync_all(),
        }
    }
}

/// Whether a pause record (or its directory) may be trusted to say what to run: a file or
/// directory of this process's user that no one else can write, not a link. A resume is
/// a command or call run as that user (root, often): a record planted by someone else
/// must never be run.
fn trusted(path: &Path, what: &str) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let me = rustix::process::geteuid().as_raw();
    if meta.file_type().is_symlink() {
        return Err(format!("{} is a link: not run", path.display()));
    }
    if meta.uid() != me || meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{what} {} belongs to uid {} (mode {:o}), not to this user {me} alone: not run; check who wrote it",
            path.display(),
            meta.uid(),
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// The pause records under `state_dir`: what is paused now. Unreadable records, and
/// records someone else could have written, are reported, never run.
pub fn paused(state_dir: &Path) -> Vec<Result<PauseRecord, String>> {
    let dir = pauses_dir(state_dir);
    if dir.exists() {
        if let Err(why) = trusted(&dir, "the pause directory") {
            return vec![Err(why)];
        }
    }
    let Ok(entries) = std::fs::read_dir(pauses_dir(state_dir)) else {
        return Vec::new();
    };
    let mut out: Vec<Result<PauseRecord, String>> = entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.ends_with(".json") && !name.starts_with('.')
        })
        .map(|e| {
            let path = e.path();
            trusted(&path, "pause record")?;
            let record: PauseRecord = std::fs::read(&path)
                .map_err(|err| err.to_string())
                .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|err| err.to_string()))
                .map_err(|err| format!("pause record {}: {err}", path.display()))?;
            if record.resumed || pause::resumed_here(&path) {
                return Err(format!(
                    "pause record {} was resumed but could not be removed: delete it",
                    path.display()
                ));
            }
            Ok(record)
        })
        .collect();
    // Oldest first, the unreadable ones last (a total order: a sort may panic without).
    out.sort_by(|a, b| match (a, b) {
        (Ok(a), Ok(b)) => a.since.cmp(&b.since),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        (Err(a), Err(b)) => a.cmp(b),
    });
    out
}

/// What resuming a pause came to.
#[derive(Debug, Clone)]
pub struct Resumed {
    /// The pause; when the resume failed, with `resume_error` set as it was saved.
    pub record: PauseRecord,
    /// `None`: resumed; else why the last attempt failed (the record stays).
    pub error: Option<String>,
    /// The resume's output.
    pub output: String,
    /// Not run here: another resumer held the record, or it was gone (resumed already).
    pub elsewhere: bool,
}

/// Runs a pause's resume once its pause call has ended ([`pause`]), retried with backoff
/// up to its attempts, and once more `late_pause` later when the pause never answered;
/// removes the record on success, keeps it with the error otherwise.
pub async fn resume(state_dir: &Path, record: PauseRecord) -> Resumed {
    pause::wait_for_pause(&record.path(state_dir)).await;
    let Some((_claim, mut record)) = record.claim(state_dir) else {
        return Resumed {
            record,
            error: None,
            output: String::new(),
            elsewhere: true,
        };
    };
    let mut output = String::new();
    let mut rounds = vec![Duration::ZERO];
    if !record.pause_answered {
        // The pause may still land: resume again after it could have.
        rounds.push(Duration::from_millis(record.late_pause_ms));
    }
    for wait in rounds {
        tokio::time::sleep(wait).await;
        match resume_attempts(&record).await {
            Ok(said) => output = said,
            Err(last) => {
                record.resume_error = Some(last.clone());
                if let Err(e) = record.save(state_dir) {
                    eprintln!(
                        "strata: warning: cannot update pause record {}: {e}",
                        record.id
                    );
                }
                return Resumed {
                    record,
                    error: Some(last),
                    output: String::new(),
                    elsewhere: false,
                };
            }
        }
    }
    if let Err(e) = record.remove(state_dir) {
        // Never resumed twice for it: the record says it was resumed, or at least this
        // process remembers it.
        let marked = record.mark_resumed(state_dir);
        eprintln!(
            "strata: warning: resumed {}, but cannot remove its pause record ({e}){}",
            record.hook,
            match marked {
                Ok(()) => ": marked resumed; delete it by hand".to_string(),
                Err(e2) => format!(" nor mark it resumed ({e2}): delete it by hand before the next strata process resumes it again"),
            }
        );
        pause::remember_resumed(record.path(state_dir));
    }
    Resumed {
        record,
        error: None,
        output,
        elsewhere: false,
    }
}

/// One resume of `record`, tried up to its attempts with backoff from 200 ms to 5 s.
async fn resume_attempts(record: &PauseRecord) -> Result<String, String> {
    let timeout = Duration::from_millis(record.timeout_ms.max(1));
    let mut env = record.env.clone();
    env.phase = "resume".into();
    let mut delay = Duration::from_millis(200);
    let mut last = String::new();
    for attempt in 1..=record.attempts.max(1) {
        match record.resume.run(&env, timeout).await {
            Ok(output) => return Ok(output),
            Err(why) => {
                last = why.to_string();
                if attempt < record.attempts {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
    Err(last)
}

/// Resumes every pause under `state_dir` that no live operation holds ([`PauseRecord::held`]):
/// what a SIGKILL left paused (its process is gone), and what a resume that failed left
/// (its operation ended). Only a resume the configuration
/// still declares (`configured`) is run; a record whose resume it does not (the hook was
/// changed since, or the record is not strata's) is reported and kept, for a person to
/// resume by hand.
pub async fn resume_orphans(
    state_dir: &Path,
    configured: &[HookConfig],
    live_here: impl Fn(&str) -> bool,
) -> Vec<Resumed> {
    let mut out = Vec::new();
    for record in paused(state_dir).into_iter().flatten() {
        if record.held(&live_here) {
            continue;
        }
        let declared = configured
            .iter()
            .any(|h| h.resume.as_ref() == Some(&record.resume));
        if !declared {
            let why = format!(
                "its resume ({}) is not one the configuration declares: resume it by hand, then delete {}",
                record.resume.describe(),
                record.path(state_dir).display()
            );
            out.push(Resumed {
                record,
                error: Some(why),
                output: String::new(),
                elsewhere: false,
            });
            continue;
        }
        let resumed = resume(state_dir, record).await;
        if !resumed.elsewhere {
            out.push(resumed);
        }
    }
    out
}

/// A new pause record for hook number `index` of operation `env.id`, held by this process.
pub fn new_record(index: usize, hook: &HookConfig, env: &HookEnv) -> PauseRecord {
    let (pid, start) = this_process();
    PauseRecord {
        id: format!("{}-{index}", env.id),
        hook: hook.label(),
        operation: env.id.clone(),
        component: env.component.clone(),
        node: env.node.clone(),
        since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        resume: hook.resume.clone().expect("a pause hook has a resume"),
        env: env.clone(),
        timeout_ms: hook.timeout().as_millis() as u64,
        attempts: hook.resume_attempts,
        holder_pid: pid,
        holder_start: start,
        resume_error: None,
        pause_answered: false,
        late_pause_ms: hook.late_pause().as_millis() as u64,
        resumed: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> HookConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn actions_are_commands_or_method_and_url() {
        let hook = parse("run = [\"/bin/true\"]\nat = \"before\"");
        assert_eq!(
            hook.run,
            Some(HookAction::Command(vec!["/bin/true".into()]))
        );
        hook.validate(&[], &[]).unwrap();
        let hook = parse("pause = \"POST http://e/pause\"\nresume = \"POST http://e/resume\"");
        hook.validate(&[], &[]).unwrap();
        for bad in [
            "run = \"http://e/x\"\nat = \"before\"",
            "run = \"FETCH http://e/x\"\nat = \"before\"",
            "run = \"POST ftp://e/x\"\nat = \"before\"",
            "run = []\nat = \"before\"",
            "run = [\"/bin/true\"]",
            "pause = \"POST http://e/pause\"",
            "pause = \"POST http://e/p\"\nresume = \"POST http://e/r\"\nat = \"before\"",
            "run = [\"/bin/true\"]\nat = \"before\"\ntimeout = \"soon\"",
            "run = [\"/bin/true\"]\nat = \"before\"\ncomponent = \"nope\"",
        ] {
            assert!(parse(bad).validate(&[], &[]).is_err(), "{bad}");
        }
    }

    /// `{ http, body }` sends its own body (Patroni reads `{"pause": true}` from `PATCH
    /// /config`), not the environment; the body is checked like the line.
    #[tokio::test]
    async fn a_request_sends_its_own_body() {
        let hook = parse(
            "pause = { http = \"PATCH http://e/config\", body = { pause = true } }\nresume = { http = \"PATCH http://e/config\", body = { pause = false } }",
        );
        hook.validate(&[], &[]).unwrap();
        assert_eq!(
            hook.pause.as_ref().unwrap().describe(),
            "PATCH http://e/***"
        );
        for bad in [
            "run = { http = \"PATCH ftp://e/x\", body = {} }\nat = \"before\"",
            "run = { http = \"PATCH http://e/x\", body = {}, extra = 1 }\nat = \"before\"",
        ] {
            assert!(
                toml::from_str::<HookConfig>(bad)
                    .map_err(|e| e.to_string())
                    .and_then(|h| h.validate(&[], &[]))
                    .is_err(),
                "{bad}"
            );
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&seen).contains("}") {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "the request ended early");
                seen.extend_from_slice(&buf[..n]);
            }
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await
                .unwrap();
            String::from_utf8_lossy(&seen).into_owned()
        });
        let action = HookAction::Request(HttpRequest {
            http: format!("PATCH http://127.0.0.1:{port}/config"),
            body: serde_json::json!({ "pause": true }),
        });
        let env = HookEnv {
            operation: "restore".into(),
            ..HookEnv::default()
        };
        assert_eq!(
            action.run(&env, Duration::from_secs(5)).await.unwrap(),
            "ok"
        );
        let request = server.await.unwrap();
        assert!(request.starts_with("PATCH /config "), "{request}");
        assert!(request.ends_with("{\"pause\":true}"), "{request}");
        assert!(
            !request.contains("restore"),
            "the environment is not sent: {request}"
        );
    }

    /// A record someone else could have written (group- or world-writable, or a link) is
    /// never run: a resume runs as this user, often root.
    #[tokio::test]
    async fn a_record_others_could_write_is_not_run() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        let hook = HookConfig {
            pause: Some(HookAction::Command(vec!["/bin/true".into()])),
            resume: Some(HookAction::Command(vec![
                "/bin/touch".into(),
                marker.display().to_string(),
            ])),
            run: None,
            at: None,
            ..parse("run = [\"/bin/true\"]\nat = \"before\"")
        };
        let env = HookEnv {
            id: "op".into(),
            ..HookEnv::default()
        };
        let mut record = new_record(0, &hook, &env);
        record.holder_start += 1;
        record.pause_answered = true;
        record.save(dir.path()).unwrap();
        let file = pauses_dir(dir.path()).join("op-0.json");
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        let listed = paused(dir.path());
        assert!(
            matches!(&listed[..], [Err(why)] if why.contains("not run")),
            "{listed:?}"
        );
        assert!(
            resume_orphans(dir.path(), std::slice::from_ref(&hook), |_| false)
                .await
                .is_empty()
        );
        assert!(!marker.exists(), "a writable record never runs");
        // A link planted where the record goes is replaced, never followed.
        std::fs::remove_file(&file).unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, pauses_dir(dir.path()).join(".op-0.tmp")).unwrap();
        record.save(dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert!(
            resume_orphans(dir.path(), std::slice::from_ref(&hook), |_| false).await[0]
                .error
                .is_none()
        );
        assert!(marker.exists(), "the record it wrote itself runs");
    }

    #[test]
    fn urls_in_logs_lose_their_credentials() {
        let action =
            HookAction::Http("POST https://ops:s3cret@engine:8443/api/pause?token=t0k3n".into());
        assert_eq!(action.describe(), "POST https://engine:8443/***");
        assert_eq!(
            action.masked(),
            HookAction::Http("POST https://engine:8443/***".into())
        );
        // Nor in the error a bad one gets.
        let bad = HookAction::Http("POST ftp://ops:s3cret@engine/x?token=t0k3n".into());
        let err = bad.validate().unwrap_err();
        assert!(!err.contains("s3cret") && !err.contains("t0k3n"), "{err}");
    }

    #[tokio::test]
    async fn an_unreachable_url_is_named_without_its_credentials() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let action = HookAction::Http(format!(
            "POST http://ops:s3cret@127.0.0.1:{port}/pause?token=t0k3n"
        ));
        let err = action
            .run(&HookEnv::default(), Duration::from_secs(5))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("http://127.0.0.1:{port}/***")),
            "{err}"
        );
        assert!(
            !err.contains("s3cret") && !err.contains("t0k3n") && !err.contains("/pause"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_command_sees_its_environment_and_fails_loudly() {
        let env = HookEnv {
            operation: "backup".into(),
            id: "op1".into(),
            backup: "b1".into(),
            component: Some("db".into()),
            node: None,
            phase: "before".into(),
            ..HookEnv::default()
        };
        let echo = HookAction::Command(vec![
            "/bin/sh".into(),
            "-c".into(),
            "echo $STRATA_BACKUP $STRATA_COMPONENT $STRATA_PHASE".into(),
        ]);
        assert_eq!(
            echo.run(&env, Duration::from_secs(5)).await.unwrap(),
            "b1 db before"
        );
        let fail = HookAction::Command(vec![
            "/bin/sh".into(),
            "-c".into(),
            "echo no >&2; exit 3".into(),
        ]);
        let err = fail.run(&env, Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(err, HookError::Exited { .. }), "{err:?}");
        let err = err.to_string();
        assert!(err.contains("no"), "{err}");
        let slow = HookAction::Command(vec!["/bin/sleep".into(), "10".into()]);
        let err = slow
            .run(&env, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(err, HookError::Timeout(_)), "{err:?}");
        let err = err.to_string();
        assert!(err.contains("no answer within"), "{err}");
    }

    #[tokio::test]
    async fn an_orphaned_pause_is_resumed_and_a_live_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("resumed");
        let hook = HookConfig {
            name: Some("exporter".into()),
            pause: Some(HookAction::Command(vec!["/bin/true".into()])),
            resume: Some(HookAction::Command(vec![
                "/bin/sh".into(),
                "-c".into(),
                format!("echo $STRATA_PHASE >> {}", marker.display()),
            ])),
            ..parse("run = [\"/bin/true\"]\nat = \"before\"")
        };
        let env = HookEnv {
            id: "op".into(),
            ..HookEnv::default()
        };
        // Pauses that answered: one resume each.
        let mut live = new_record(0, &hook, &env);
        live.pause_answered = true;
        live.save(dir.path()).unwrap();
        let mut dead = new_record(1, &hook, &env);
        dead.pause_answered = true;
        dead.holder_start += 1; // a process that reused nothing of ours: gone
        dead.save(dir.path()).unwrap();
        assert_eq!(paused(dir.path()).len(), 2);
        // A resume the configuration does not declare is not run.
        // `live` is this process's and its operation runs here: held, never touched.
        let runs_here = |op: &str| op == "op";
        let refused = resume_orphans(dir.path(), &[], runs_here).await;
        assert_eq!(refused.len(), 1);
        assert!(refused[0]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("not one the configuration declares"));
        assert!(!marker.exists(), "nothing ran");
        let resumed = resume_orphans(dir.path(), std::slice::from_ref(&hook), runs_here).await;
        assert_eq!(resumed.len(), 1);
        assert!(resumed[0].error.is_none());
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "resume\n");
        let left: Vec<_> = paused(dir.path()).into_iter().flatten().collect();
        assert_eq!(left, vec![live.clone()]);
        // Once its operation has ended here (a resume of it failed, say), it is not held:
        // this process's own retry takes it up.
        let resumed = resume_orphans(dir.path(), std::slice::from_ref(&hook), |_| false).await;
        assert_eq!(resumed.len(), 1);
        assert!(paused(dir.path()).is_empty());
    }

    /// Two resumers of one record (two processes on one state directory, or a
    /// coordinator's request and an agent's lease-end resume) run its resume once.
    #[tokio::test]
    async fn two_resumers_of_one_record_run_its_resume_once() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("resumed");
        let hook = HookConfig {
            pause: Some(HookAction::Command(vec!["/bin/true".into()])),
            resume: Some(HookAction::Command(vec![
                "/bin/sh".into(),
                "-c".into(),
                format!("echo once >> {}; sleep 0.3", marker.display()),
            ])),
            run: None,
            at: None,
            ..toml::from_str("run = [\"/bin/true\"]\nat = \"before\"").unwrap()
        };
        let env = HookEnv {
            id: "op".into(),
            ..HookEnv::default()
        };
        let mut record = new_record(0, &hook, &env);
        record.pause_answered = true;
        record.save(dir.path()).unwrap();
        let (a, b) = tokio::join!(
            resume(dir.path(), record.clone()),
            resume(dir.path(), record.clone())
        );
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "once\n");
        assert!(a.error.is_none() && b.error.is_none());
        assert!(
            a.elsewhere != b.elsewhere,
            "one ran it, the other stood aside"
        );
        assert!(paused(dir.path()).is_empty());
        // Resumed already: a later resumer finds nothing to run.
        assert!(resume(dir.path(), record).await.elsewhere);
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "once\n");
    }

    /// A record whose file could not be removed after its resume is rewritten as
    /// resumed: listed for a person to delete, never resumed again.
    #[tokio::test]
    async fn a_record_marked_resumed_is_never_resumed_again() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("resumed");
        let hook: HookConfig = toml::from_str(&format!(
            "pause = [\"/bin/true\"]\nresume = [\"/bin/sh\", \"-c\", \"echo again >> {}\"]",
            marker.display()
        ))
        .unwrap();
        let env = HookEnv {
            id: "op".into(),
            ..HookEnv::default()
        };
        let mut record = new_record(0, &hook, &env);
        record.holder_start += 1;
        record.save(dir.path()).unwrap();
        record.mark_resumed(dir.path()).unwrap();
        let listed = paused(dir.path());
        assert!(
            matches!(&listed[..], [Err(why)] if why.contains("resumed but could not be removed")),
            "{listed:?}"
        );
        assert!(
            resume_orphans(dir.path(), std::slice::from_ref(&hook), |_| false)
                .await
                .is_empty()
        );
        assert!(!marker.exists(), "not resumed twice");
    }

    #[test]
    fn a_record_of_an_operation_id_that_would_leave_its_directory_is_not_saved() {
        // (The id rule itself is strata_util::valid_id's, tested there.)
        let dir = tempfile::tempdir().unwrap();
        let hook: HookConfig =
            toml::from_str("pause = [\"/bin/true\"]\nresume = [\"/bin/true\"]").unwrap();
        let env = HookEnv {
            id: "/../../escape".into(),
            ..HookEnv::default()
        };
        assert!(new_record(0, &hook, &env).save(dir.path()).is_err());
        assert_eq!(
            mask_label("POST https://hooks.example.com/services/T0/B0/secret"),
            "POST https://hooks.example.com/***"
        );
    }
}
