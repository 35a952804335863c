//! Every error the server sends is the API's JSON error, `{"code", "message"}`.
//!
//! Handlers and the extractors of [`crate::extract`] produce [`ApiFailure`]s directly. What
//! axum and its layers answer on their own (a method a path does not have, a path
//! parameter that is not UTF-8, a body over the size limit, a route of the Swagger UI) is
//! plain text or empty; [`method_not_allowed`] and [`json_errors`] turn those into the
//! same JSON, so a client (the CLI, the dashboard, a script) parses one shape of error
//! whatever went wrong, and never has to guess from a status line.

use axum::body::Body;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use strata_cluster::node_api::{ApiError, ErrorCode};

/// How much of a non-JSON error body is kept in the message (it is for people, and an
/// error page could be large).
const KEPT_BODY: usize = 512;

/// An [`ApiError`] as an HTTP response: its status and itself as JSON.
pub(crate) struct ApiFailure(pub ApiError);

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0)).into_response()
    }
}

impl From<ApiError> for ApiFailure {
    fn from(err: ApiError) -> Self {
        ApiFailure(err)
    }
}

/// The answer to a method a path does not have (405; axum adds the `Allow` header).
pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> ApiFailure {
    ApiFailure(ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("{} does not take {method} requests", uri.path()),
    ))
}

/// The code of an error that only has an HTTP status.
fn code_for(status: StatusCode) -> ErrorCode {
    match status.as_u16() {
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        409 => ErrorCode::Busy,
        413 => ErrorCode::TooLarge,
        429 => ErrorCode::TooManyRequests,
        400..=499 => ErrorCode::BadRequest,
        _ => ErrorCode::Failed,
    }
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// Middleware (`axum::middleware::map_response`): an error response that is not JSON gets
/// the API's JSON error as its body, keeping its status and its other headers (`Allow`,
/// `WWW-Authenticate`). Successful responses and JSON errors pass untouched.
pub(crate) async fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&response) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let reason = status.canonical_reason().unwrap_or("error").to_lowercase();
    let message = if text.is_empty() {
        reason
    } else {
        let mut text = text;
        if text.len() > KEPT_BODY {
            let mut end = KEPT_BODY;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push('…');
        }
        format!("{reason}: {text}")
    };
    let json = serde_json::to_vec(&ApiError::new(code_for(status), message))
        .expect("API errors serialize");
    parts.headers.remove(CONTENT_LENGTH);
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, Body::from(json))
}

/// A coordinator error with the API code that fits it.
pub(crate) fn failure(err: strata_coordinator::CoordinatorError) -> ApiFailure {
    ApiFailure(ApiError::new(
        err.code(),
        strata_coordinator::error_chain(&err),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tower_service::Service;

    async fn call(router: &mut axum::Router, method: &str, path: &str) -> Response {
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        router.call(request).await.unwrap()
    }

    async fn error_of(response: Response) -> ApiError {
        assert!(is_json(&response), "{:?}", response.headers());
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    #[tokio::test]
    async fn plain_errors_become_json_with_their_status_and_headers() {
        let mut router = axum::Router::new()
            .route("/plain", get(|| async { (StatusCode::CONFLICT, "in use") }))
            .route("/empty", get(|| async { StatusCode::IM_A_TEAPOT }))
            .route("/ok", get(|| async { "fine" }))
            .route(
                "/json",
                get(|| async { ApiFailure(ApiError::new(ErrorCode::Busy, "busy")) }),
            )
            .method_not_allowed_fallback(method_not_allowed)
            .layer(axum::middleware::map_response(json_errors));

        let plain = call(&mut router, "GET", "/plain").await;
        assert_eq!(plain.status(), StatusCode::CONFLICT);
        let err = error_of(plain).await;
        assert_eq!(err.code, ErrorCode::Busy);
        assert_eq!(err.message, "conflict: in use");

        let empty = call(&mut router, "GET", "/empty").await;
        assert_eq!(empty.status(), StatusCode::IM_A_TEAPOT);
        assert_eq!(error_of(empty).await.code, ErrorCode::BadRequest);

        let wrong = call(&mut router, "DELETE", "/ok").await;
        assert_eq!(wrong.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert!(wrong.headers()["allow"].to_str().unwrap().contains("GET"));
        let err = error_of(wrong).await;
        assert_eq!(err.code, ErrorCode::MethodNotAllowed);
        assert!(err.message.contains("DELETE"), "{}", err.message);

        let json = call(&mut router, "GET", "/json").await;
        assert_eq!(error_of(json).await.message, "busy");

        let ok = call(&mut router, "GET", "/ok").await;
        assert_eq!(ok.status(), StatusCode::OK);
        assert!(!is_json(&ok));
    }
}
