//! What kind of failure: the one classification every strata error maps to.
//!
//! Each library's error type says what kind of failure it is (`CoordinatorError::code`,
//! `PluginError::code`, `TablesError::kind`, ...) with an [`ErrorCode`]; the command line
//! exits with [`ErrorCode::exit_code`] and the APIs answer with [`ErrorCode::http_status`],
//! so a failure exits with the same code whether it happened in this process or a server
//! answered it. The exit codes are documented in docs/cli.md ("Exit codes"), the API's
//! codes in docs/api.md.
//!
//! ```
//! use strata_failure::{exit, ErrorCode};
//!
//! assert_eq!(ErrorCode::Busy.exit_code(), exit::BUSY);
//! assert_eq!(ErrorCode::Busy.http_status(), 409);
//! assert_eq!(serde_json::to_string(&ErrorCode::LeaseLost).unwrap(), "\"lease_lost\"");
//! ```

#![deny(missing_docs)]

use serde::{Deserialize, Serialize};

/// The exit codes of `strata` (docs/cli.md, "Exit codes", is their one registry).
pub mod exit {
    /// The operation failed.
    pub const FAILED: u8 = 1;
    /// Bad usage or configuration.
    pub const USAGE: u8 = 2;
    /// A backup recorded as `partial` or `failed`, or a system left paused.
    pub const PARTIAL: u8 = 3;
    /// Damage found, or data the operation needs is damaged.
    pub const DAMAGED: u8 = 4;
    /// A wrong or missing password.
    pub const PASSWORD: u8 = 5;
    /// Another operation holds the cluster, or the server asks to wait.
    pub const BUSY: u8 = 6;
    /// The server refused the token, or its role may not do this.
    pub const UNAUTHORIZED: u8 = 7;
}

/// Stable error codes of the node and coordinator APIs, and the kinds every error of
/// every crate is classified into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed.
    BadRequest,
    /// No or a wrong bearer token.
    Unauthorized,
    /// The token is valid but may not do this (a `read` token asking for a change).
    Forbidden,
    /// Another operation holds the node or the cluster.
    Busy,
    /// The caller's lease is missing or expired.
    LeaseLost,
    /// No such operation, backup or node.
    NotFound,
    /// The path exists but not with this HTTP method (the `Allow` header lists those it
    /// has).
    MethodNotAllowed,
    /// The request body is larger than the server accepts.
    TooLarge,
    /// Too many requests without a valid token from this client address: wait
    /// (`Retry-After`) and try again with the right token.
    TooManyRequests,
    /// The operation was cancelled.
    Cancelled,
    /// The peer speaks another API version.
    Version,
    /// The node could not be reached.
    Unreachable,
    /// Data the operation needs is damaged: a summary, manifest, index object or blob
    /// that does not decode or check (the message names it and the repair).
    Damaged,
    /// The repository's password is wrong or missing (on the server that answered).
    Password,
    /// The operation failed.
    Failed,
}

impl ErrorCode {
    /// The HTTP status that carries a failure of this kind.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::TooLarge => 413,
            ErrorCode::TooManyRequests => 429,
            ErrorCode::Busy | ErrorCode::LeaseLost => 409,
            ErrorCode::Version => 426,
            ErrorCode::Cancelled => 499,
            ErrorCode::Unreachable => 502,
            ErrorCode::Damaged | ErrorCode::Password | ErrorCode::Failed => 500,
        }
    }

    /// The exit code of a command that failed this way ([`exit`]).
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorCode::Busy | ErrorCode::TooManyRequests => exit::BUSY,
            ErrorCode::Unauthorized | ErrorCode::Forbidden => exit::UNAUTHORIZED,
            ErrorCode::Damaged => exit::DAMAGED,
            ErrorCode::Password => exit::PASSWORD,
            ErrorCode::BadRequest
            | ErrorCode::NotFound
            | ErrorCode::MethodNotAllowed
            | ErrorCode::TooLarge
            | ErrorCode::Version => exit::USAGE,
            ErrorCode::LeaseLost
            | ErrorCode::Cancelled
            | ErrorCode::Unreachable
            | ErrorCode::Failed => exit::FAILED,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind, once: its name on the wire, its HTTP status and its exit code, as
    /// docs/api.md and docs/cli.md document them.
    #[test]
    fn every_kind_has_its_name_status_and_exit_code() {
        let table = [
            (ErrorCode::BadRequest, "bad_request", 400, exit::USAGE),
            (
                ErrorCode::Unauthorized,
                "unauthorized",
                401,
                exit::UNAUTHORIZED,
            ),
            (ErrorCode::Forbidden, "forbidden", 403, exit::UNAUTHORIZED),
            (ErrorCode::Busy, "busy", 409, exit::BUSY),
            (ErrorCode::LeaseLost, "lease_lost", 409, exit::FAILED),
            (ErrorCode::NotFound, "not_found", 404, exit::USAGE),
            (
                ErrorCode::MethodNotAllowed,
                "method_not_allowed",
                405,
                exit::USAGE,
            ),
            (ErrorCode::TooLarge, "too_large", 413, exit::USAGE),
            (
                ErrorCode::TooManyRequests,
                "too_many_requests",
                429,
                exit::BUSY,
            ),
            (ErrorCode::Cancelled, "cancelled", 499, exit::FAILED),
            (ErrorCode::Version, "version", 426, exit::USAGE),
            (ErrorCode::Unreachable, "unreachable", 502, exit::FAILED),
            (ErrorCode::Damaged, "damaged", 500, exit::DAMAGED),
            (ErrorCode::Password, "password", 500, exit::PASSWORD),
            (ErrorCode::Failed, "failed", 500, exit::FAILED),
        ];
        for (code, name, status, exit) in table {
            assert_eq!(serde_json::to_string(&code).unwrap(), format!("\"{name}\""));
            assert_eq!(code.http_status(), status, "{code:?}");
            assert_eq!(code.exit_code(), exit, "{code:?}");
        }
    }
}
