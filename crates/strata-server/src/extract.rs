//! Request extractors whose rejections are API errors: a malformed body, query or path is
//! a JSON `bad_request` (4xx) with a message saying what was wrong, never a plain-text
//! reply or a 5xx.

use crate::ApiFailure;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use strata_cluster::node_api::{ApiError, ErrorCode};

/// A JSON body, strictly read: an empty body (or `null`) reads as `{}`, so every field
/// takes its default; anything else must be JSON with a JSON content type and decode as
/// `T`. Request types refuse fields they do not know (`#[serde(deny_unknown_fields)]`),
/// so a misspelt option is a `bad_request` naming it, never a call run without it.
pub(crate) struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiFailure;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json_type = request
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .map(|v| is_json_type(v.as_bytes()));
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(bytes_rejection)?;
        let text = bytes.trim_ascii();
        if text.is_empty() || text == b"null" {
            return decode(b"{}").map(Body);
        }
        if json_type != Some(true) {
            return Err(bad(
                "the body must be JSON with Content-Type: application/json",
            ));
        }
        decode(text).map(Body)
    }
}

/// Whether a `Content-Type` is JSON: `application/json` or `application/*+json`, any
/// parameters after `;`.
fn is_json_type(value: &[u8]) -> bool {
    let value = String::from_utf8_lossy(value).to_ascii_lowercase();
    let essence = value.split(';').next().unwrap_or("").trim();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"))
}

/// `bytes` as `T`: a body that is not JSON says so; one that is but does not fit `T` names
/// the field (its path, for a nested one) and what is wrong with it.
fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiFailure> {
    // Whether it is JSON at all first: serde_json reports some mismatches of shape (a list
    // where a struct's enum is expected) as syntax errors.
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        return Err(bad(format!("the body is not JSON: {e}")));
    }
    let mut json = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut json).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if path == "." || path.is_empty() {
            bad(format!("bad JSON body: {inner}"))
        } else {
            bad(format!("bad JSON body: {path}: {inner}"))
        }
    })
}

fn bytes_rejection(rejection: axum::extract::rejection::BytesRejection) -> ApiFailure {
    if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        return ApiFailure(ApiError::new(
            ErrorCode::TooLarge,
            format!("the body is too large: {}", rejection.body_text()),
        ));
    }
    bad(format!(
        "could not read the body: {}",
        rejection.body_text()
    ))
}

/// Query parameters. `T` refuses names it does not know (`#[serde(deny_unknown_fields)]`)
/// and is listed in the route's OpenAPI operation (`params(T)`), which is what
/// [`crate::queries`] lets through to the route at all.
pub(crate) struct Params<T>(pub T);

impl<S, T> FromRequestParts<S> for Params<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiFailure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Params(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiFailure {
    bad(format!("bad query parameters: {}", rejection.body_text()))
}

/// Path parameters (`/backups/{name}`). A parameter that does not decode (percent-encoded
/// bytes that are not UTF-8, a number that is not one) is the caller's mistake: a
/// `bad_request` naming it, never axum's plain-text reply.
pub(crate) struct PathParam<T>(pub T);

impl<S, T> FromRequestParts<S> for PathParam<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiFailure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(PathParam(value)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

fn path_rejection(rejection: PathRejection) -> ApiFailure {
    match rejection {
        // A route whose handler asks for a parameter the route lacks: our bug, not theirs.
        PathRejection::MissingPathParams(e) => {
            ApiFailure(ApiError::new(ErrorCode::Failed, e.body_text()))
        }
        other => bad(format!("bad path: {}", other.body_text())),
    }
}

/// A `bad_request` failure.
pub(crate) fn bad(message: impl Into<String>) -> ApiFailure {
    ApiFailure(ApiError::new(ErrorCode::BadRequest, message))
}

/// Checks a backup name (or prefix, or `latest`) from a path: 1-128 letters, digits, `-`,
/// `_` and `.`, so nothing else ever reaches a storage key.
pub(crate) fn backup_name(name: &str) -> Result<&str, ApiFailure> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !name.starts_with('.');
    if ok {
        Ok(name)
    } else {
        Err(bad(format!(
            "{name:?} is not a backup name (letters, digits, '-', '_', '.'; at most 128)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_path_that_is_not_utf8_is_a_json_bad_request() {
        use axum::response::IntoResponse;
        use tower_service::Service;
        let mut router = axum::Router::new().route(
            "/things/{name}",
            axum::routing::get(|PathParam(name): PathParam<String>| async move { name }),
        );
        let request = axum::http::Request::builder()
            .uri("/things/%FF%FE")
            .body(axum::body::Body::empty())
            .unwrap();
        let response = router.call(request).await.unwrap().into_response();
        assert_eq!(response.status(), 400);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let err: ApiError = serde_json::from_slice(&body).unwrap();
        assert_eq!(err.code, ErrorCode::BadRequest);
        assert!(err.message.starts_with("bad path: "), "{}", err.message);
    }

    #[test]
    fn backup_names_are_checked() {
        assert!(backup_name("20261122T055350Z-3fa1b2c4").is_ok());
        assert!(backup_name("latest").is_ok());
        assert!(backup_name("2026").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "a b", "ä", &"x".repeat(129)] {
            assert!(backup_name(bad).is_err(), "{bad:?}");
        }
    }
}
