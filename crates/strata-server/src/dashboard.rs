//! The dashboard: static pages served by `strata server` (being built; see issue 6).

use axum::response::Html;
use axum::routing::get;
use axum::Router;

/// The dashboard's routes (no token: the pages hold no data; they call the API with one).
pub fn routes() -> Router {
    Router::new().route("/ui/", get(|| async { Html("<!doctype html><title>strata</title>") }))
}
