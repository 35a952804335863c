//! What a hook runs: a command or an HTTP call, with the operation's environment, its
//! output bounded and its secrets masked in what is shown.

use crate::error::*;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use strata_util::{error_chain, mask_url};

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
pub(crate) const OUTPUT_LIMIT: usize = 4096;
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
/// `"METHOD URL"` with its URL cut to the host.
pub(crate) fn masked_line(line: &str) -> String {
    match line.trim().split_once(' ') {
        Some((method, url)) => format!("{method} {}", mask_url(url.trim())),
        None => mask_url(line.trim()),
    }
}
/// `"METHOD URL"` parsed: GET, POST, PUT, DELETE or PATCH to an http(s) URL.
pub fn parse_http_line(line: &str) -> Result<(reqwest::Method, &str), HookError> {
    HookAction::parse_http(line)
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
impl HookAction {
    /// The method and URL of an HTTP action.
    fn http(&self) -> Option<Result<(reqwest::Method, &str), HookError>> {
        match self {
            HookAction::Http(line) | HookAction::Request(HttpRequest { http: line, .. }) => {
                Some(Self::parse_http(line))
            }
            HookAction::Command(_) => None,
        }
    }

    fn parse_http(line: &str) -> Result<(reqwest::Method, &str), HookError> {
        let Some((method, url)) = line.trim().split_once(' ') else {
            return Err(HookError::Invalid(format!(
                "{:?}: an HTTP hook is \"METHOD URL\" (\"POST http://host/path\")",
                mask_label(line)
            )));
        };
        let url = url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(HookError::Invalid(format!(
                "{:?}: the URL must start with http:// or https://",
                mask_label(line)
            )));
        }
        match reqwest::Method::from_bytes(method.as_bytes()) {
            Ok(m) if ["GET", "POST", "PUT", "DELETE", "PATCH"].contains(&m.as_str()) => {
                Ok((m, url))
            }
            _ => Err(HookError::Invalid(format!(
                "{:?}: {method:?} is not GET, POST, PUT, DELETE or PATCH",
                mask_label(line)
            ))),
        }
    }

    /// Checks the action's form.
    pub fn validate(&self) -> Result<(), HookError> {
        match self {
            HookAction::Command(argv) if argv.is_empty() || argv[0].is_empty() => {
                Err(HookError::Invalid(
                    "a command hook needs a program: [\"/path/to/program\", \"args\"...]".into(),
                ))
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
                    let (method, url) = self.http().expect("an HTTP action")?;
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
pub(crate) fn bounded(text: &[u8], limit: usize) -> String {
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
pub(crate) async fn run_command(argv: &[String], env: &HookEnv) -> Result<String, HookError> {
    Ok(run_program(argv, env, OUTPUT_LIMIT).await?.joined())
}
pub(crate) async fn run_http(
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
    let client = CLIENT.get_or_init(|| {
        strata_util::tls_by_ring();
        reqwest::Client::new()
    });
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
