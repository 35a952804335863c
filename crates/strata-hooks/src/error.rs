//! What can go wrong running a hook's action.

use std::time::Duration;

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
pub(crate) fn with_output(output: &str) -> String {
    match output.is_empty() {
        true => String::new(),
        false => format!(": {output}"),
    }
}
