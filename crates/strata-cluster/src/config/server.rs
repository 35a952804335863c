//! `[server]` and `[[webhooks]]`: the server's listeners, tokens and limits, and where
//! events are sent.

use super::*;

/// `strata server`: the node agent API and the coordinator API on one port, and how the
/// coordinator reaches remote agents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port to listen on.
    pub listen: String,
    /// The node of `[[nodes]]` whose agent this server runs (`strata server --node`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Serve the coordinator API (`/api/v1`) too, driving the configured nodes.
    pub coordinator: bool,
    /// The token users (the CLI with `--server`) present; the audit log calls it `user`.
    pub user_token: SecretSource,
    /// More user tokens, each with a name the audit log records (`[[server.tokens]]`
    /// with `name` and `env` or `file`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<NamedToken>,
    /// The token coordinators present to agents (and send to remote agents).
    pub agent_token: SecretSource,
    /// PEM certificate chain and key: both set switches TLS on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate trusted for `https://` agents and servers besides the system's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// How long a node lease, the cluster lock and an archive writer's mark live unless
    /// renewed (every third of it). 90 s: a storage that does not answer for 30 s (within
    /// the retry budget) delays a renewal past a third, not past the holder's deadline.
    pub lease_ttl_secs: u64,
    /// Connections served at once; beyond it a new connection replaces the oldest one
    /// that has made no authenticated request yet, or is closed at once when every one
    /// has.
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers, from the moment the connection
    /// is ready for it: bounds slow (slowloris) clients and idle keep-alive connections.
    pub header_timeout_secs: u64,
    /// Seconds a client has to send a request's body once its headers arrived.
    pub body_timeout_secs: u64,
    /// Seconds a TLS client has to complete its handshake.
    pub tls_handshake_timeout_secs: u64,
    /// Seconds a write to a client may stall (a client that does not read its response).
    pub write_timeout_secs: u64,
    /// Requests with a missing or wrong token one address may make per minute; past it,
    /// every request from that address is answered 429 until the minute is over.
    pub auth_failures_per_minute: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:7370".into(),
            node: None,
            coordinator: true,
            user_token: SecretSource {
                env: "STRATA_TOKEN".into(),
                file: None,
            },
            tokens: Vec::new(),
            agent_token: SecretSource {
                env: "STRATA_AGENT_TOKEN".into(),
                file: None,
            },
            tls_cert: None,
            tls_key: None,
            ca_file: None,
            lease_ttl_secs: 90,
            max_connections: 512,
            header_timeout_secs: 10,
            body_timeout_secs: 60,
            tls_handshake_timeout_secs: 10,
            write_timeout_secs: 30,
            auth_failures_per_minute: 30,
        }
    }
}

/// A receiver of strata's events (see `strata_coordinator::webhooks`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where events are POSTed (`http://` or `https://`).
    pub url: String,
    /// Events wanted: `backup.failed`, `verify.*`, `*`; empty means all.
    #[serde(default)]
    pub events: Vec<String>,
    /// The HMAC-SHA256 key that signs each body (`X-Strata-Signature`); from an
    /// environment variable or a file, never written in the configuration itself.
    #[serde(default)]
    pub secret: SecretSource,
    /// Attempts per event before giving up (default 5).
    #[serde(default = "default_webhook_attempts")]
    pub attempts: u32,
    /// Wait before the first retry, doubled for each next one (default 500 ms).
    #[serde(default = "default_webhook_backoff_ms")]
    pub backoff_ms: u64,
}

fn default_webhook_attempts() -> u32 {
    5
}

fn default_webhook_backoff_ms() -> u64 {
    500
}

/// What a user token may do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenRole {
    /// Everything: read, and change (start backups, edit table policies, ...).
    #[default]
    Admin,
    /// Read only: `GET` requests; anything else is refused with 403 `forbidden`. For
    /// dashboards on a wall, monitoring scripts and people who look but do not touch.
    Read,
}

/// An API token with a name: the name is what the audit log records as "who".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedToken {
    /// The token's name: who the audit log records for its requests.
    pub name: String,
    /// `admin` (the default: everything) or `read` (`GET` requests only).
    #[serde(default, skip_serializing_if = "is_admin")]
    pub role: TokenRole,
    /// The environment variable holding the token.
    #[serde(default)]
    pub env: String,
    /// Or a file whose first line is the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

fn is_admin(role: &TokenRole) -> bool {
    *role == TokenRole::Admin
}

impl NamedToken {
    /// Where the token is read from.
    pub fn source(&self) -> SecretSource {
        SecretSource {
            env: self.env.clone(),
            file: self.file.clone(),
        }
    }
}

/// A secret read from an environment variable or, failing that, the first line of a file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretSource {
    /// The environment variable holding the secret.
    pub env: String,
    /// Or, when the variable is not set, a file whose first line is the secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

impl SecretSource {
    /// The secret (`what` names it in errors), or `None` when neither the variable nor the
    /// file is set. An explicit file wins over an empty or unset variable.
    pub fn read(&self, what: &'static str) -> Result<Option<String>, ConfigError> {
        let from_env = (!self.env.is_empty()).then(|| std::env::var(&self.env).ok());
        if let Some(Some(value)) = from_env {
            if !value.is_empty() {
                return Ok(Some(value));
            }
        }
        if let Some(path) = &self.file {
            return Ok(Some(first_line(path, what)?.trim().to_string()));
        }
        Ok(None)
    }
}
