//! `/api/openapi.json` and a browsable page of it (`/api/docs/`, Swagger UI compiled into
//! the binary: nothing is fetched from the internet, at build time or at run time). Both
//! are served without a token: they describe the API and hold no data.

use crate::coordinator_api::ApiDoc;
use axum::Router;
use utoipa::OpenApi;

/// The document and the page.
pub fn routes() -> Router {
    let document = ApiDoc::openapi();
    Router::new()
        .merge(utoipa_swagger_ui::SwaggerUi::new("/api/docs").url("/api/openapi.json", document))
}
