//! The client side of `/health` and `/ready`: what `strata probe` asks, for places that
//! have no curl (the container image is distroless) and for scripts that wait for a
//! server (`--wait`).
//!
//! A probe trusts nothing it is sent: a reply's body is read up to [`MAX_BODY`] and must
//! be a strata report, and each attempt is bounded by its timeout, so a peer that accepts
//! and never answers costs one timeout, not a hung probe.

use crate::{HealthReport, ReadyReport};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The most of a reply's body a probe reads.
pub const MAX_BODY: usize = 64 * 1024;

/// Which endpoint a probe asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /health`: the process serves.
    Health,
    /// `GET /ready`: every readiness check passed.
    Ready,
}

impl Endpoint {
    fn path(self) -> &'static str {
        match self {
            Endpoint::Health => "/health",
            Endpoint::Ready => "/ready",
        }
    }
}

/// One probe: where, how long each attempt may take, how long to keep trying.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The full URL asked (`http://127.0.0.1:7370/health`); see [`Probe::new`].
    pub url: String,
    /// Which endpoint `url` is: how its answer is read.
    pub endpoint: Endpoint,
    /// Bound of one attempt: connect, request and the whole reply.
    pub timeout: Duration,
    /// Keep asking (every 250 ms) until a good answer or this much time has passed;
    /// zero: one attempt.
    pub wait: Duration,
    /// A PEM CA certificate trusted for `https://` besides the system's.
    pub ca_file: Option<PathBuf>,
}

/// A good answer.
#[derive(Debug, Clone)]
pub enum Answer {
    /// `/health` answered 200 with status `ok`.
    Healthy(HealthReport),
    /// `/ready` answered 200 and every check passed.
    Ready(ReadyReport),
}

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The probe was asked wrongly (not an http(s) URL, credentials or a query in it, the
    /// other endpoint than its path names) or no HTTP client could be built; nothing was
    /// sent. Holds the whole message.
    #[error("{0}")]
    Usage(String),
    /// The CA file could not be read or holds no PEM certificate; nothing was sent.
    #[error("cannot use CA file {path}: {why}")]
    Ca {
        /// The file, as configured.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// No reply: nothing listening, a refused connection, a TLS failure, nothing within
    /// the attempt's timeout, a reply cut short.
    #[error("{url}: no answer: {why}")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// The timeout, or the connection's error with its causes.
        why: String,
    },
    /// A reply, but not the status the endpoint answers with (200; for `/ready`, 200 or
    /// 503): something else listens there, or a proxy stands in between.
    #[error("{url}: answered HTTP {status}: {body}")]
    Status {
        /// The URL asked.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The body's first line, at most 200 characters, for the message.
        body: String,
    },
    /// `/ready` answered 503: a strata process that is not ready, with its checks.
    #[error("{url}: not ready: {}", failing(.report))]
    NotReady {
        /// The URL asked.
        url: String,
        /// What it answered: the failing checks say what is wrong.
        report: ReadyReport,
    },
    /// The expected status, but a body that is not a strata report (or one that
    /// contradicts its status).
    #[error("{url}: the answer is not a strata {what} report: {why}")]
    Garbled {
        /// The URL asked.
        url: String,
        /// Which report was expected: `health` or `readiness`.
        what: &'static str,
        /// What did not fit.
        why: String,
    },
}

impl ProbeError {
    /// What kind of failure this is (exit code: see `strata-failure`): a bad address or
    /// CA file is the caller's; no answer, a bad answer or not ready is a failure.
    pub fn code(&self) -> strata_failure::ErrorCode {
        match self {
            ProbeError::Usage(_) | ProbeError::Ca { .. } => strata_failure::ErrorCode::BadRequest,
            _ => strata_failure::ErrorCode::Failed,
        }
    }
}

fn failing(report: &ReadyReport) -> String {
    let bad: Vec<String> = report
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{} ({})", c.name, c.detail))
        .collect();
    if bad.is_empty() {
        "no check failed, yet it says not ready".into()
    } else {
        bad.join("; ")
    }
}

impl Probe {
    /// A probe of `base` (a server's address, `http://HOST:PORT`): `endpoint`'s path is
    /// appended. A URL that already ends in `/health` or `/ready` asks that endpoint;
    /// asking for the other one then is a usage error.
    pub fn new(base: &str, endpoint: Option<Endpoint>) -> Result<Probe, ProbeError> {
        let trimmed = base.trim_end_matches('/');
        let Some((_, rest)) = trimmed
            .split_once("://")
            .filter(|(scheme, _)| ["http", "https"].contains(scheme))
        else {
            return Err(ProbeError::Usage(format!(
                "{base}: not an http:// or https:// URL"
            )));
        };
        // The probes need no credentials: a URL that carries some (a user, a password, a
        // query) is refused rather than printed in every message that names it.
        if rest.contains(['@', '?', '#']) {
            return Err(ProbeError::Usage(
                "a probe's URL is the process's address (http://HOST:PORT): no user, password or query".into(),
            ));
        }
        let named = [Endpoint::Health, Endpoint::Ready]
            .into_iter()
            .find(|e| trimmed.ends_with(e.path()));
        let (url, endpoint) = match (named, endpoint) {
            (Some(named), Some(wanted)) if named != wanted => {
                return Err(ProbeError::Usage(format!(
                    "{base} asks {}, not {}",
                    named.path(),
                    wanted.path()
                )))
            }
            (Some(named), _) => (trimmed.to_string(), named),
            (None, wanted) => {
                let endpoint = wanted.unwrap_or(Endpoint::Health);
                (format!("{trimmed}{}", endpoint.path()), endpoint)
            }
        };
        Ok(Probe {
            url,
            endpoint,
            timeout: Duration::from_secs(5),
            wait: Duration::ZERO,
            ca_file: None,
        })
    }

    /// Asks until a good answer or [`Probe::wait`] is over; the last failure otherwise.
    pub async fn run(&self) -> Result<Answer, ProbeError> {
        let client = self.client()?;
        let now = Instant::now();
        let deadline = now.checked_add(self.wait).unwrap_or(now);
        loop {
            let outcome = self.attempt(&client).await;
            if outcome.is_ok() || Instant::now() >= deadline {
                return outcome;
            }
            let pause = Duration::from_millis(250).min(deadline - Instant::now());
            tokio::time::sleep(pause).await;
        }
    }

    fn client(&self) -> Result<reqwest::Client, ProbeError> {
        strata_util::tls_by_ring();
        let mut builder = reqwest::Client::builder()
            .timeout(self.timeout)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = &self.ca_file {
            let ca = |why: String| ProbeError::Ca {
                path: path.clone(),
                why,
            };
            let pem = std::fs::read(path).map_err(|e| ca(e.to_string()))?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| ca(e.to_string()))?;
            builder = builder.add_root_certificate(cert);
        }
        builder
            .build()
            .map_err(|e| ProbeError::Usage(format!("cannot build an HTTP client: {e}")))
    }

    async fn attempt(&self, client: &reqwest::Client) -> Result<Answer, ProbeError> {
        let unreachable = |e: reqwest::Error| ProbeError::Unreachable {
            url: self.url.clone(),
            why: if e.is_timeout() {
                format!("nothing within {} s", self.timeout.as_secs_f64())
            } else {
                strata_util::error_chain(&e.without_url())
            },
        };
        let mut response = client.get(&self.url).send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_BODY {
                body.truncate(MAX_BODY);
                break;
            }
        }
        let garbled = |what: &'static str, why: String| ProbeError::Garbled {
            url: self.url.clone(),
            what,
            why,
        };
        match (self.endpoint, status) {
            (Endpoint::Health, 200) => serde_json::from_slice::<HealthReport>(&body)
                .map_err(|e| garbled("health", e.to_string()))
                .and_then(|report| match report.status.as_str() {
                    "ok" => Ok(Answer::Healthy(report)),
                    other => Err(garbled("health", format!("status {other:?}"))),
                }),
            (Endpoint::Ready, 200 | 503) => {
                let report = serde_json::from_slice::<ReadyReport>(&body)
                    .map_err(|e| garbled("readiness", e.to_string()))?;
                match (status, report.ready) {
                    (200, true) => Ok(Answer::Ready(report)),
                    (503, false) => Err(ProbeError::NotReady {
                        url: self.url.clone(),
                        report,
                    }),
                    _ => Err(garbled(
                        "readiness",
                        format!("HTTP {status} with ready = {}", report.ready),
                    )),
                }
            }
            _ => Err(ProbeError::Status {
                url: self.url.clone(),
                status,
                body: excerpt(&body),
            }),
        }
    }
}

/// The first line of a body, at most 200 characters, for an error message.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text.lines().next().unwrap_or("").trim();
    let mut out: String = line.chars().take(200).collect();
    if out.is_empty() {
        out = "(empty body)".into();
    } else if line.chars().count() > 200 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_comes_from_the_url_or_the_choice() {
        let p = Probe::new("http://127.0.0.1:7370", None).unwrap();
        assert_eq!(p.url, "http://127.0.0.1:7370/health");
        let p = Probe::new("http://127.0.0.1:7370/", Some(Endpoint::Ready)).unwrap();
        assert_eq!(
            (p.url.as_str(), p.endpoint),
            ("http://127.0.0.1:7370/ready", Endpoint::Ready)
        );
        let p = Probe::new("https://db1:7370/ready", None).unwrap();
        assert_eq!(p.endpoint, Endpoint::Ready);
        assert!(Probe::new("https://db1:7370/health", Some(Endpoint::Ready)).is_err());
        assert!(Probe::new("db1:7370", None).is_err());
        for secret in ["http://u:pw@db1:7370", "http://db1:7370/health?token=t"] {
            let err = Probe::new(secret, None).unwrap_err().to_string();
            assert!(!err.contains("pw") && !err.contains("token"), "{err}");
        }
    }

    #[test]
    fn an_excerpt_is_one_short_line() {
        assert_eq!(excerpt(b""), "(empty body)");
        assert_eq!(excerpt(b"no\nmore"), "no");
        assert_eq!(excerpt(&[b'x'; 300]).chars().count(), 201);
    }
}
