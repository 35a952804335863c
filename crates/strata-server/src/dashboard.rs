//! The dashboard: a few static files, compiled into the binary, served by `strata server`.
//!
//! The pages hold no data, so they are served without a token; the page asks the user for
//! the API token and sends it with every request it makes to `/api/v1` (the same API and
//! the same token as any other client). The files are hand-written HTML, CSS and
//! JavaScript modules under `assets/dashboard/`: no build step, nothing fetched from
//! another site, so the dashboard works on a host without internet access.
//!
//! Every file is sent with a strict Content-Security-Policy: scripts, styles and images
//! only from this server, requests only to this server, no inline script or style, no
//! framing, no form submissions. A token typed into the page can only ever go back to the
//! server that served it.

use crate::extract::PathParam;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use strata_cluster::node_api::{ApiError, ErrorCode};

/// The policy every dashboard file is served with (see the module documentation).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'none'; \
     frame-ancestors 'none'; base-uri 'none'";

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:literal) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("../assets/dashboard/", $name)),
        }
    };
}

/// Every file of the dashboard; `index.html` is the page at `/ui/`.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("dom.js", "text/javascript; charset=utf-8"),
    asset!("tables.js", "text/javascript; charset=utf-8"),
    asset!("chart.js", "text/javascript; charset=utf-8"),
    asset!("format.js", "text/javascript; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
];

/// The dashboard's routes (no token: the pages hold no data; they call the API with one).
pub fn routes() -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route(
            "/ui/",
            get(|headers: HeaderMap| async move { serve("index.html", &headers) }),
        )
        .route(
            "/ui/{file}",
            get(
                |PathParam(file): PathParam<String>, headers: HeaderMap| async move {
                    serve(&file, &headers)
                },
            ),
        )
}

/// A strong validator of a file's content: FNV-1a over the bytes, with the version, so a
/// browser revalidates cheaply (304) and never keeps a page of an older strata.
fn etag(body: &[u8]) -> String {
    let hash = body.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("\"{}-{hash:016x}\"", env!("CARGO_PKG_VERSION"))
}

/// The file `name` with its type and the security headers, 304 when the browser has it,
/// or the API's JSON 404.
fn serve(name: &str, request: &HeaderMap) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return crate::ApiFailure(ApiError::new(
            ErrorCode::NotFound,
            format!("the dashboard has no file {name:?}"),
        ))
        .into_response();
    };
    let tag = etag(asset.body);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        asset.body.into_response()
    };
    let headers = response.headers_mut();
    let set = [
        (header::CONTENT_TYPE, asset.content_type),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        // Revalidate every time (cheap with the ETag): an upgraded server's page is used
        // at once.
        (header::CACHE_CONTROL, "no-cache"),
    ];
    for (name, value) in set {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if let Ok(value) = HeaderValue::from_str(&tag) {
        headers.insert(header::ETAG, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower_service::Service;

    async fn get(path: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, String) {
        let mut request = Request::builder().uri(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = routes()
            .call(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, headers, String::from_utf8(body.to_vec()).unwrap())
    }

    fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
        headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }

    #[tokio::test]
    async fn files_come_with_their_type_and_a_strict_policy() {
        for (path, expected) in [
            ("/ui/", "text/html; charset=utf-8"),
            ("/ui/index.html", "text/html; charset=utf-8"),
            ("/ui/app.js", "text/javascript; charset=utf-8"),
            ("/ui/api.js", "text/javascript; charset=utf-8"),
            ("/ui/app.css", "text/css; charset=utf-8"),
            ("/ui/favicon.svg", "image/svg+xml"),
        ] {
            let (status, headers, body) = get(path, &[]).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(header(&headers, "content-type"), expected, "{path}");
            let csp = header(&headers, "content-security-policy");
            assert_eq!(csp, CONTENT_SECURITY_POLICY);
            for directive in [
                "default-src 'none'",
                "script-src 'self';",
                "connect-src 'self'",
                "frame-ancestors 'none'",
            ] {
                assert!(csp.contains(directive), "{directive} missing in {csp}");
            }
            assert!(!csp.contains("unsafe"), "{csp}");
            assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
            assert_eq!(header(&headers, "x-frame-options"), "DENY");
            assert!(!body.is_empty(), "{path}");
        }
        let (_, _, page) = get("/ui/", &[]).await;
        assert!(page.contains("<script type=\"module\" src=\"app.js\">"));
    }

    #[tokio::test]
    async fn the_root_leads_to_the_page_and_unknown_files_are_json_404() {
        for path in ["/", "/ui"] {
            let (status, headers, _) = get(path, &[]).await;
            assert!(status.is_redirection(), "{path}: {status}");
            assert_eq!(header(&headers, "location"), "/ui/");
        }
        let (status, headers, body) = get("/ui/secrets.txt", &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(header(&headers, "content-type").starts_with("application/json"));
        assert!(body.contains("not_found"), "{body}");
        let (status, _, _) = get("/ui/..%2Fsrc%2Flib.rs", &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn a_browser_with_the_current_file_gets_304() {
        let (_, headers, _) = get("/ui/app.js", &[]).await;
        let tag = header(&headers, "etag").to_string();
        let (status, headers, body) = get("/ui/app.js", &[("if-none-match", &tag)]).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert!(body.is_empty());
        assert!(headers.contains_key("content-security-policy"));
        let (status, _, _) = get("/ui/app.js", &[("if-none-match", "\"other\"")]).await;
        assert_eq!(status, StatusCode::OK);
    }

    /// Every file the page or a module refers to is served: a file added to the directory
    /// but not to [`ASSETS`] fails here, not in a user's browser.
    #[tokio::test]
    async fn every_file_the_pages_refer_to_is_served() {
        let mut wanted = Vec::new();
        for asset in ASSETS {
            let text = String::from_utf8_lossy(asset.body);
            for marker in ["src=\"", "href=\"", "from \"./"] {
                for piece in text.split(marker).skip(1) {
                    let target = piece.split('"').next().unwrap();
                    if !target.starts_with('#') && !target.contains(':') {
                        wanted.push(target.trim_start_matches("./").to_string());
                    }
                }
            }
        }
        assert!(wanted.contains(&"chart.js".to_string()), "{wanted:?}");
        for file in wanted {
            let (status, _, _) = get(&format!("/ui/{file}"), &[]).await;
            assert_eq!(
                status,
                StatusCode::OK,
                "{file} is referred to but not served"
            );
        }
    }
}
