//! Calls to an external system's backup API, as the `http` and `camunda` components make
//! them: templates filled in ([`Vars`]), answers read as JSON up to [`ANSWER_LIMIT`], and
//! failures that pass (a refused connection, 429, 5xx) tried again until the component's
//! time is up ([`Caller`]). A system that never answered within `connect_timeout` is
//! [`ExternalError::Unreachable`]: an optional component is then `absent`, not failed.

use super::{ExternalError, PluginError};
use std::time::{Duration, Instant};
use strata_hooks::HookEnv;

/// The most of one answer that is read (a state answer of Zeebe with hundreds of
/// partitions is a few hundred KiB at most): a larger one fails the call.
pub const ANSWER_LIMIT: usize = 1 << 20;

/// The most one HTTP call may take before it is tried again.
const CALL_LIMIT: Duration = Duration::from_secs(60);

/// The values templates may name.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    /// `{backup_id}`: the backup's number.
    pub backup_id: Option<u64>,
    /// `{backup}`: the backup's name.
    pub backup: String,
    /// `{component}`: the component's name.
    pub component: String,
    /// `{id}`: the snapshot's id, once known.
    pub id: Option<String>,
}

impl Vars {
    /// The values of an operation's environment.
    pub fn of(env: &HookEnv) -> Vars {
        Vars {
            backup_id: env.backup_id,
            backup: env.backup.clone(),
            component: env.component.clone().unwrap_or_default(),
            id: env.snapshot_id.clone(),
        }
    }

    /// Values a configuration check renders templates with.
    pub fn sample() -> Vars {
        Vars {
            backup_id: Some(1_764_000_000_000),
            backup: "20261125T093816Z-82d1797d".into(),
            component: "engine".into(),
            id: Some("snap-1".into()),
        }
    }

    fn fill(&self, template: &str, escape: impl Fn(&str) -> String) -> String {
        let backup_id = self.backup_id.map(|n| n.to_string()).unwrap_or_default();
        template
            .replace("{backup_id}", &backup_id)
            .replace("{backup}", &escape(&self.backup))
            .replace("{component}", &escape(&self.component))
            .replace("{id}", &escape(self.id.as_deref().unwrap_or_default()))
    }

    /// A `"METHOD URL"` template filled in, each value percent-encoded: an id the system
    /// made up (`a/../b`, `x?y`) cannot change which resource is called.
    pub fn call(&self, template: &str) -> String {
        self.fill(template, url_part)
    }

    /// A JSON body template filled in, each value escaped for a JSON string (write the
    /// quotes around `{id}` in the template; `{backup_id}` is a number).
    pub fn body(&self, template: &str) -> String {
        self.fill(template, |v| {
            let quoted = serde_json::to_string(v).expect("strings serialize");
            quoted[1..quoted.len() - 1].to_string()
        })
    }

    /// A plain template (an id chosen by the request) filled in as it is.
    pub fn plain(&self, template: &str) -> String {
        self.fill(template, str::to_string)
    }
}

/// `value` for a URL: every byte but unreserved ones percent-encoded, and `.`/`..` (path
/// steps) too.
pub fn url_part(value: &str) -> String {
    if !value.is_empty() && value.bytes().all(|b| b == b'.') {
        return value.bytes().map(|b| format!("%{b:02X}")).collect();
    }
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Checks a call template (`"METHOD URL"`) and, with it, an optional body template.
pub fn check_call(what: &str, call: &str, body: Option<&str>) -> Result<(), PluginError> {
    let sample = Vars::sample();
    strata_hooks::parse_http_line(&sample.call(call))
        .map_err(|e| PluginError::Settings(format!("{what}: {e}")))?;
    if let Some(body) = body {
        serde_json::from_str::<serde_json::Value>(&sample.body(body)).map_err(|e| {
            PluginError::Settings(format!(
                "{what} body {body:?} is not JSON once filled in: {e}"
            ))
        })?;
    }
    Ok(())
}

/// Makes the calls of one operation step against one system, within its deadline.
pub struct Caller {
    deadline: Instant,
    poll: Duration,
    connect_timeout: Duration,
    first: Instant,
    /// The system answered once (any status): from then on it is up, and failures are
    /// tried again until the deadline.
    reached: bool,
    /// A request may have reached the system: it was answered, or it failed after its
    /// connection was made (a timeout, a reset). A system that froze may take such a
    /// request when it wakes.
    sent: bool,
}

impl Caller {
    /// A caller whose calls end by `limit` from now.
    pub fn new(limit: Duration, poll: Duration, connect_timeout: Duration) -> Caller {
        let now = Instant::now();
        Caller {
            deadline: now + limit,
            poll,
            connect_timeout,
            first: now,
            reached: false,
            sent: false,
        }
    }

    /// Whether a request of this caller may have reached its system (answered, or
    /// failed after its connection was made): one that creates something (a backup) may
    /// have created it even though no answer came.
    pub fn may_have_been_sent(&self) -> bool {
        self.sent
    }

    /// Time left before the deadline.
    pub fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Waits one poll interval (less when the deadline is nearer).
    pub async fn pause(&self) {
        tokio::time::sleep(self.poll.min(self.left())).await;
    }

    /// Calls `line` (`"METHOD URL"`, filled in) with `body`; returns the answer's JSON
    /// (`Null` for an empty body), or `None` for a 404 when `gone_ok` (a delete of what
    /// is gone already).
    pub async fn call(
        &mut self,
        line: &str,
        body: Vec<u8>,
        gone_ok: bool,
    ) -> Result<Option<serde_json::Value>, ExternalError> {
        let (method, url) = strata_hooks::parse_http_line(line)
            .map_err(|e| ExternalError::Failed(e.to_string()))?;
        let shown = format!("{method} {}", strata_util::mask_url(url));
        // The last answer that said why (a 503 and its body): a later attempt cut short
        // by the deadline must not hide it.
        let mut last_answer: Option<String> = None;
        loop {
            let left = self.left();
            let why = if left.is_zero() {
                "no time left".to_string()
            } else {
                match strata_hooks::http_call(
                    method.clone(),
                    url,
                    body.clone(),
                    left.min(CALL_LIMIT),
                    ANSWER_LIMIT,
                )
                .await
                {
                    Ok(answer) => {
                        self.reached = true;
                        self.sent = true;
                        let status = answer.status;
                        if status == reqwest::StatusCode::NOT_FOUND && gone_ok {
                            return Ok(None);
                        }
                        if status.is_success() {
                            if answer.truncated {
                                return Err(ExternalError::Failed(format!(
                                    "{shown}: the answer is larger than {} KiB",
                                    ANSWER_LIMIT / 1024
                                )));
                            }
                            if answer.body.is_empty() {
                                return Ok(Some(serde_json::Value::Null));
                            }
                            return serde_json::from_str(&answer.body).map(Some).map_err(|e| {
                                ExternalError::Failed(format!(
                                    "{shown}: the answer is not JSON ({e}): {}",
                                    cut(&answer.body)
                                ))
                            });
                        }
                        let said = format!("{shown} answered {status}: {}", cut(&answer.body));
                        if status != reqwest::StatusCode::TOO_MANY_REQUESTS
                            && !status.is_server_error()
                        {
                            return Err(ExternalError::Failed(said));
                        }
                        last_answer = Some(said.clone());
                        said
                    }
                    Err(e) => {
                        let never_sent = matches!(
                            e,
                            strata_hooks::HookError::Unreachable {
                                never_sent: true,
                                ..
                            }
                        );
                        self.sent |= !never_sent;
                        format!("{shown}: {e}")
                    }
                }
            };
            // A failure that may pass: tried again while time is left.
            if !self.reached && self.first.elapsed() >= self.connect_timeout {
                return Err(ExternalError::Unreachable(format!(
                    "{why} (no answer within {})",
                    humantime::format_duration(self.connect_timeout)
                )));
            }
            if self.left() <= self.poll {
                return Err(match (self.reached, last_answer) {
                    (true, Some(said)) if said != why => ExternalError::Failed(format!(
                        "{why}; the last answer: {said} (tried until the timeout)"
                    )),
                    (true, _) => ExternalError::Failed(format!("{why} (tried until the timeout)")),
                    (false, _) => ExternalError::Unreachable(why),
                });
            }
            self.pause().await;
        }
    }
}

/// Whether the server of `url` answers HTTP at all (any status counts): a `GET` of its
/// root within `limit`. Returns the URL's origin as it answered, or why not.
pub async fn answers(url: &str, limit: Duration) -> Result<String, PluginError> {
    let origin = origin(url)
        .ok_or_else(|| PluginError::Settings(format!("{url:?} is not an http(s) URL")))?;
    let shown = strata_util::mask_url(&origin);
    match strata_hooks::http_call(reqwest::Method::GET, &origin, Vec::new(), limit, 1024).await {
        Ok(answer) => Ok(format!("{shown} answers ({})", answer.status)),
        Err(e) => Err(PluginError::System(e.to_string())),
    }
}

/// `scheme://authority/` of an http(s) URL.
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.trim().split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    // Credentials in the URL are not part of where it points.
    let host = authority.rsplit('@').next()?;
    Some(format!("{scheme}://{host}/"))
}

/// An answer's text cut for an error line.
fn cut(text: &str) -> String {
    const SHOWN: usize = 512;
    match text.char_indices().nth(SHOWN) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
    }
}

/// A value at `pointer` (`a/b`, or `/a/b`) of a JSON answer, as text.
pub fn field(json: &serde_json::Value, pointer: &str) -> Option<String> {
    let pointer = format!("/{}", pointer.trim_start_matches('/'));
    match json.pointer(&pointer)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An id a system answered (or a template made): not empty, at most 256 bytes, no
/// control characters.
pub fn checked_id(id: Option<String>) -> Option<String> {
    id.filter(|id| !id.is_empty() && id.len() <= 256 && !id.chars().any(char::is_control))
}

/// Whether `state` is one of `states`, case aside.
pub fn is_one_of(state: &str, states: &[String]) -> bool {
    states.iter().any(|s| s.eq_ignore_ascii_case(state))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A system that answered 503 and then stops answering: the error that ends the
    /// step says what it answered, not only that the last try ran out of time.
    #[tokio::test]
    async fn the_last_answer_is_kept_when_the_deadline_cuts_the_last_try_short() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            for n in 0..50 {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                if n == 0 {
                    let mut request = [0u8; 1024];
                    let _ = socket.read(&mut request).await;
                    let _ = socket
                        .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy")
                        .await;
                } else {
                    held.push(socket); // accepted, never answered
                }
            }
        });
        let mut caller = Caller::new(
            Duration::from_millis(800),
            Duration::from_millis(50),
            Duration::from_secs(5),
        );
        let line = format!("DELETE http://127.0.0.1:{port}/backups/1");
        let err = caller.call(&line, Vec::new(), false).await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("503") && text.contains("busy"), "{text}");
        server.abort();
    }

    #[test]
    fn templates_escape_values_for_where_they_go() {
        let vars = Vars {
            backup_id: Some(42),
            backup: "b1".into(),
            component: "zeebe".into(),
            id: Some("../admin?x=\"1\"".into()),
        };
        assert_eq!(
            vars.call("GET http://e/backups/{id}"),
            "GET http://e/backups/..%2Fadmin%3Fx%3D%221%22"
        );
        assert_eq!(
            vars.body(r#"{"backupId": {backup_id}, "name": "{id}"}"#),
            r#"{"backupId": 42, "name": "../admin?x=\"1\""}"#
        );
        assert_eq!(url_part(".."), "%2E%2E");
        assert!(check_call(
            "backup",
            "POST http://e/{backup_id}",
            Some("{\"n\": {backup_id}}")
        )
        .is_ok());
        assert!(check_call("backup", "POST http://e/x", Some("{\"n\": {id}}")).is_err());
        assert!(check_call("backup", "http://e/x", None).is_err());
        assert!(checked_id(Some("a\nb".into())).is_none());
        assert!(checked_id(Some("x".repeat(257))).is_none());
    }
}
