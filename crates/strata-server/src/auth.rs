//! Bearer tokens: every request of an API must carry one of that API's tokens. A user
//! token has a name; the handlers see it as the [`Caller`], which the audit log records.

use crate::limits::{AuthLimiter, ConnState, Verdict};
use crate::ApiFailure;
use axum::extract::ConnectInfo;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use strata_cluster::node_api::{ApiError, ErrorCode};
use strata_coordinator::config::TokenRole;

/// Compares without stopping at the first difference, so the time taken does not tell an
/// attacker how much of a guess was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The tokens an API accepts, each with the name it is known by and what it may do.
#[derive(Debug, Clone, Default)]
pub struct Tokens(Vec<(String, String, TokenRole)>);

impl Tokens {
    /// One token, named `name`, that may do everything.
    pub fn single(name: &str, token: String) -> Tokens {
        Tokens(vec![(name.to_string(), token, TokenRole::Admin)])
    }

    /// Adds a token named `name` that may do everything.
    pub fn with(self, name: &str, token: String) -> Tokens {
        self.with_role(name, token, TokenRole::Admin)
    }

    /// Adds a token named `name` with `role`.
    pub fn with_role(mut self, name: &str, token: String, role: TokenRole) -> Tokens {
        self.0.push((name.to_string(), token, role));
        self
    }

    /// The name and role of `presented`, checking every token (no early exit on a match
    /// either).
    fn name_of(&self, presented: &str) -> Option<(&str, TokenRole)> {
        let mut found = None;
        for (name, token, role) in &self.0 {
            if same(presented.as_bytes(), token.as_bytes()) && found.is_none() {
                found = Some((name.as_str(), *role));
            }
        }
        found
    }
}

/// Whether a token of `role` may make a `method` request: a `read` token only reads.
/// Decided here, for every route at once, so a route added later cannot forget it.
fn allowed(role: TokenRole, method: &axum::http::Method) -> bool {
    use axum::http::Method;
    role == TokenRole::Admin || [Method::GET, Method::HEAD, Method::OPTIONS].contains(method)
}

/// Who made a request: `token:<name>`.
#[derive(Debug, Clone)]
pub struct Caller(pub String);

/// What the request's token may do (`GET /api/v1/session` tells a client, so a read-only
/// dashboard does not offer actions the server would refuse).
#[derive(Debug, Clone, Copy)]
pub struct CallerRole(pub TokenRole);

/// Middleware: 401 unless `Authorization: Bearer <token>` is one of `tokens`; otherwise the
/// request carries its [`Caller`].
///
/// A request with the right token marks its connection trusted: a full server gives up
/// other connections first (see `Slots::admit`).
///
/// A request without the right token is logged (client address, method and path, never
/// what it presented) and counted against its address; an address past
/// `server.auth_failures_per_minute` gets 429 for every request until its minute is over,
/// before its token is even looked at, so guessing tokens gains nothing from speed.
pub async fn require_token(
    State(tokens): State<Arc<Tokens>>,
    mut request: Request,
    next: Next,
) -> Response {
    let limiter = request.extensions().get::<Arc<AuthLimiter>>().cloned();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let (Some(limiter), Some(ip)) = (&limiter, peer) {
        if let Some(wait) = limiter.refused(ip) {
            let mut response = ApiFailure(ApiError::new(
                ErrorCode::TooManyRequests,
                format!("too many requests without a valid token from {ip}: try again in {wait} s"),
            ))
            .into_response();
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, wait.into());
            return response;
        }
    }
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let why = match presented.map(|p| tokens.name_of(p)) {
        Some(Some((name, role))) => {
            if let Some(conn) = request.extensions().get::<Arc<ConnState>>() {
                conn.trusted.store(true, Ordering::Relaxed);
            }
            if !allowed(role, request.method()) {
                return ApiFailure(ApiError::new(
                    ErrorCode::Forbidden,
                    format!(
                        "token {name:?} may only read (role \"read\"): {} needs a token with role \"admin\"",
                        request.method()
                    ),
                ))
                .into_response();
            }
            let caller = Caller(format!("token:{name}"));
            request.extensions_mut().insert(caller);
            request.extensions_mut().insert(CallerRole(role));
            return next.run(request).await;
        }
        Some(None) => "wrong bearer token",
        None => "missing bearer token (Authorization: Bearer ...)",
    };
    let verdict = match (&limiter, peer) {
        (Some(limiter), Some(ip)) => limiter.failed(ip),
        _ => Verdict::Counted,
    };
    let from = peer.map_or_else(|| "an unknown address".to_string(), |ip| ip.to_string());
    // The path is the client's text: shown escaped, cut short.
    let path: String = request.uri().path().chars().take(200).collect();
    eprintln!(
        "strata: warning: unauthenticated request from {from}: {} {path:?}: {why}{}",
        request.method(),
        if verdict == Verdict::LimitReached {
            "; its further requests get 429 for a minute (server.auth_failures_per_minute)"
        } else {
            ""
        }
    );
    ApiFailure(ApiError::new(ErrorCode::Unauthorized, why)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert!(!same(b"", b"a"));
    }

    #[test]
    fn a_read_token_only_reads() {
        use axum::http::Method;
        assert!(allowed(TokenRole::Read, &Method::GET));
        assert!(!allowed(TokenRole::Read, &Method::PATCH));
        assert!(!allowed(TokenRole::Read, &Method::POST));
        assert!(allowed(TokenRole::Admin, &Method::DELETE));
    }

    #[test]
    fn each_token_has_its_name() {
        let tokens = Tokens::single("user", "u-secret".into()).with("ci", "c-secret".into());
        let tokens = tokens.with_role("wall", "w-secret".into(), TokenRole::Read);
        assert_eq!(tokens.name_of("u-secret"), Some(("user", TokenRole::Admin)));
        assert_eq!(tokens.name_of("c-secret"), Some(("ci", TokenRole::Admin)));
        assert_eq!(tokens.name_of("w-secret"), Some(("wall", TokenRole::Read)));
        assert_eq!(tokens.name_of("c-secre"), None);
        assert_eq!(tokens.name_of(""), None);
    }
}
