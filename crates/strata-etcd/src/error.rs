//! The one error type of the crate.

/// What can go wrong talking to etcd, reading a snapshot or restoring one.
///
/// Messages name the endpoint and the operation so that an operator reading a failed
/// backup's log knows which member said what; they never contain a password or token.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// The settings cannot work (no endpoint, a cert without its key, an unreadable
    /// password file...).
    #[error("etcd settings: {0}")]
    Settings(String),

    /// No endpoint accepted a connection: each was tried in order.
    #[error("cannot connect to etcd (tried {endpoints}): {last}")]
    Unreachable {
        /// The endpoints tried, comma separated.
        endpoints: String,
        /// The last connection error, with its causes.
        last: String,
    },

    /// The request was sent but the exchange failed (TLS, timeout, a reset connection, an
    /// HTTP error without an etcd error body).
    #[error("etcd at {endpoint}, {operation}: {message}")]
    Transport {
        /// The endpoint the request went to.
        endpoint: String,
        /// What was asked (`range`, `put`...).
        operation: &'static str,
        /// The error with its causes.
        message: String,
    },

    /// etcd wants credentials it did not get, or refused the ones it got.
    #[error("etcd at {endpoint} refused {operation}: {message} ({hint})")]
    Auth {
        /// The endpoint that refused.
        endpoint: String,
        /// What was asked.
        operation: &'static str,
        /// etcd's message.
        message: String,
        /// What to check in the settings.
        hint: &'static str,
    },

    /// etcd answered with an error (a compacted revision, a too large request...).
    #[error("etcd at {endpoint}, {operation}: {message} (gRPC code {code})")]
    Server {
        /// The endpoint that answered.
        endpoint: String,
        /// What was asked.
        operation: &'static str,
        /// The gRPC status code from the gateway's error body.
        code: i64,
        /// etcd's message.
        message: String,
    },

    /// etcd's reply does not make sense (not JSON, a missing field, bad base64, keys out of
    /// order, too large).
    #[error("etcd at {endpoint} sent a malformed reply to {operation}: {detail}")]
    BadReply {
        /// The endpoint that answered.
        endpoint: String,
        /// What was asked.
        operation: &'static str,
        /// What is wrong with it.
        detail: String,
    },

    /// A snapshot's bytes cannot be decoded.
    #[error("etcd snapshot: {0}")]
    Format(String),

    /// A restore rule or plan is invalid (bad `old=new` rule, two keys renamed to one).
    #[error("etcd restore: {0}")]
    Rule(String),

    /// A restore was refused because it would write over existing keys.
    #[error("etcd restore refused: {0}")]
    Refused(String),
}
