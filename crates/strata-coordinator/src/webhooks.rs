//! Webhooks: tell other systems when a backup, restore, cleanup or verification starts
//! and how it ended.
//!
//! Each `[[webhooks]]` entry names a URL, the events it wants and a secret. A delivery is a
//! JSON POST whose body is signed with HMAC-SHA256 under the secret
//! (`X-Strata-Signature: sha256=<hex>`), so the receiver can tell strata's messages from
//! forgeries; the body carries its own time and a delivery id against replays. Deliveries
//! run in the background and are retried with exponential backoff; a receiver that is down
//! is logged and counted (see [`Webhooks::stats`]) and never slows or fails the operation.

use crate::config::{ConfigError, WebhookConfig};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use strata_util::error_chain;

/// The kinds of operation that send events.
pub const KINDS: &[&str] = &["backup", "restore", "cleanup", "verify", "tables", "hook"];
/// How an event ends (`started` is sent when it begins).
pub const PHASES: &[&str] = &["started", "succeeded", "failed", "partial"];

/// Whether `name` (`backup.failed`, `verify.*`, `*`) names events strata sends.
/// Checks that every `[[webhooks]]` entry asks for events strata sends.
pub(crate) fn check(hooks: &[WebhookConfig]) -> Result<(), ConfigError> {
    for hook in hooks {
        if let Some(bad) = hook.events.iter().find(|e| !valid_event_pattern(e)) {
            return Err(ConfigError::Invalid(format!(
                "webhook {}: event {bad:?} is not one strata sends (KIND.PHASE with KIND one of {} and PHASE one of {}, or *)",
                hook.url,
                KINDS.join(", "),
                PHASES.join(", ")
            )));
        }
    }
    Ok(())
}

/// Whether `name` is an event pattern a `[[webhooks]]` entry may list: `*`, or
/// `KIND.PHASE` with a kind and phase strata sends, or `KIND.*`.
pub fn valid_event_pattern(name: &str) -> bool {
    if name == "*" {
        return true;
    }
    match name.split_once('.') {
        Some((kind, phase)) => KINDS.contains(&kind) && (phase == "*" || PHASES.contains(&phase)),
        None => false,
    }
}

fn matches(pattern: &str, event: &str) -> bool {
    if pattern == "*" || pattern == event {
        return true;
    }
    match (pattern.split_once('.'), event.split_once('.')) {
        (Some((pk, "*")), Some((ek, _))) => pk == ek,
        _ => false,
    }
}

/// What a webhook receives.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookEvent {
    /// `<kind>.<phase>`, e.g. `backup.succeeded`.
    pub event: String,
    /// Unique per event (the same for every retry of it), for receivers that deduplicate.
    pub delivery: String,
    /// RFC 3339 UTC.
    pub time: String,
    /// The storage (repository) the operation acted on.
    pub storage: String,
    /// The backup (or `all`) the operation acted on.
    pub target: String,
    /// The coordinator's operation id, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Who asked (token name or local user), as in the audit log.
    pub who: String,
    /// One line: the error, or a short account of what was done.
    pub detail: String,
}

impl WebhookEvent {
    /// An event of `kind` (`backup`, ...) in `phase` (`started`, ...), stamped now.
    pub fn new(kind: &str, phase: &str, storage: &str, target: &str, who: &str) -> Self {
        let mut id = [0u8; 8];
        getrandom::getrandom(&mut id).expect("the OS has randomness");
        WebhookEvent {
            event: format!("{kind}.{phase}"),
            delivery: hex::encode(id),
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            storage: storage.to_string(),
            target: target.to_string(),
            operation: None,
            who: who.to_string(),
            detail: String::new(),
        }
    }
}

/// One configured receiver, its secret read.
struct Hook {
    url: String,
    events: Vec<String>,
    secret: Option<String>,
    attempts: u32,
    first_backoff: Duration,
}

/// Counts of deliveries since the process started, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WebhookStats {
    /// Events a receiver accepted (2xx).
    pub delivered: u64,
    /// Events given up on after every retry.
    pub failed: u64,
    /// Attempts that failed and were retried.
    pub retried: u64,
}

/// The configured webhooks and their delivery counters.
pub struct Webhooks {
    hooks: Vec<Hook>,
    http: reqwest::Client,
    delivered: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
}

/// `sha256=<hex>` of `body` under `secret`: the `X-Strata-Signature` header.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Webhooks {
    /// The webhooks of a configuration, secrets read now so a missing one fails at start.
    pub fn from_config(configs: &[WebhookConfig]) -> Result<Arc<Webhooks>, ConfigError> {
        let mut hooks = Vec::new();
        for config in configs {
            hooks.push(Hook {
                url: config.url.clone(),
                events: if config.events.is_empty() {
                    vec!["*".into()]
                } else {
                    config.events.clone()
                },
                secret: config.secret.read("webhook secret")?,
                attempts: config.attempts.max(1),
                first_backoff: Duration::from_millis(config.backoff_ms),
            });
        }
        // No redirects: a receiver that answers 3xx has not taken the event (and a
        // redirect must not carry the signed body, or the URL's token, somewhere else).
        strata_util::tls_by_ring();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ConfigError::Invalid(format!("webhooks: {e}")))?;
        Ok(Arc::new(Webhooks {
            hooks,
            http,
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            retried: AtomicU64::new(0),
        }))
    }

    /// No webhooks: every event is dropped.
    pub fn none() -> Arc<Webhooks> {
        Webhooks::from_config(&[]).expect("an empty list is valid")
    }

    /// Delivery counters.
    pub fn stats(&self) -> WebhookStats {
        WebhookStats {
            delivered: self.delivered.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
        }
    }

    /// Sends `event` to every webhook that wants it, in the background. Returns the
    /// delivery tasks (callers that must wait for them, such as a CLI about to exit, can).
    pub fn emit(self: &Arc<Self>, event: &WebhookEvent) -> Vec<tokio::task::JoinHandle<()>> {
        let body = serde_json::to_vec(event).expect("events serialize");
        let mut tasks = Vec::new();
        for index in 0..self.hooks.len() {
            let hook = &self.hooks[index];
            if !hook.events.iter().any(|p| matches(p, &event.event)) {
                continue;
            }
            let this = self.clone();
            let body = body.clone();
            let name = event.event.clone();
            tasks.push(tokio::spawn(async move {
                this.deliver(index, &name, body).await;
            }));
        }
        tasks
    }

    async fn deliver(&self, index: usize, event: &str, body: Vec<u8>) {
        let hook = &self.hooks[index];
        let mut backoff = hook.first_backoff;
        let mut last_error = String::new();
        for attempt in 1..=hook.attempts {
            let mut request = self
                .http
                .post(&hook.url)
                .header("content-type", "application/json")
                .header("user-agent", concat!("strata/", env!("CARGO_PKG_VERSION")))
                .header("x-strata-event", event);
            if let Some(secret) = &hook.secret {
                request = request.header("x-strata-signature", signature(secret, &body));
            }
            match request.body(body.clone()).send().await {
                Ok(reply) if reply.status().is_success() => {
                    self.delivered.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Ok(reply) => last_error = format!("answered {}", reply.status()),
                // reqwest's errors name the URL, which may carry a token: left out.
                Err(err) => last_error = error_chain(&err.without_url()),
            }
            if attempt < hook.attempts {
                self.retried.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
        self.failed.fetch_add(1, Ordering::Relaxed);
        // Chat webhooks carry their credential in the path: only the host is logged.
        eprintln!(
            "strata: warning: webhook {} did not take event {event} after {} attempts: {last_error}",
            crate::mask::mask_url(&hook.url),
            hook.attempts
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_rfc_4231_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn patterns_select_events() {
        assert!(matches("*", "backup.failed"));
        assert!(matches("backup.*", "backup.failed"));
        assert!(!matches("backup.*", "restore.failed"));
        assert!(matches("verify.partial", "verify.partial"));
        assert!(!matches("verify.partial", "verify.failed"));
        assert!(valid_event_pattern("cleanup.started"));
        assert!(valid_event_pattern("restore.*"));
        assert!(!valid_event_pattern("backup.exploded"));
        assert!(!valid_event_pattern("backup"));
        assert!(!valid_event_pattern("gc.failed"));
    }
}
