//! Query parameters: a request may carry only the ones its route takes.
//!
//! What a route takes is what the OpenAPI document ([`crate::ApiDoc`]) lists for its
//! method and path, `in: query`: the routes that read a query (`Params<T>`, whose `T`
//! refuses fields it does not know as well) list theirs there, and every other route,
//! documented or not (`/node/v1`, `/metrics`, the dashboard, the probes), takes none.
//! [`refuse_unknown`] is layered on every route of the server at once (see
//! [`crate::router`]), before the route's token check and handler, so a route added later
//! cannot forget it: `POST /api/v1/restores?dry_run=true` is a 400 naming `dry_run`,
//! never an in-place restore run without it.

use crate::extract::bad;
use crate::ApiFailure;
use axum::extract::{MatchedPath, Query, Request, State};
use axum::http::{Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use utoipa::openapi::path::{Operation, Parameter, ParameterIn};
use utoipa::openapi::OpenApi;

/// How many unknown names an error lists, and how much of each: the names are the
/// client's text.
const NAMES_SHOWN: usize = 8;
const NAME_CHARS: usize = 64;

/// The query parameters each route takes, by method and route path (`/api/v1/backups/{name}`,
/// as axum and the OpenAPI document both spell it). A route not listed takes none.
#[derive(Debug, Default, Clone)]
pub(crate) struct QueryRules(HashMap<(Method, String), Vec<String>>);

impl QueryRules {
    /// The query parameters `doc` lists for each of its operations.
    pub(crate) fn from_openapi(doc: &OpenApi) -> QueryRules {
        let mut rules = HashMap::new();
        for (path, item) in &doc.paths.paths {
            let operations = [
                (Method::GET, &item.get),
                (Method::PUT, &item.put),
                (Method::POST, &item.post),
                (Method::DELETE, &item.delete),
                (Method::OPTIONS, &item.options),
                (Method::HEAD, &item.head),
                (Method::PATCH, &item.patch),
                (Method::TRACE, &item.trace),
            ];
            for (method, operation) in operations {
                let Some(Operation { parameters, .. }) = operation else {
                    continue;
                };
                let names: Vec<String> = item
                    .parameters
                    .iter()
                    .chain(parameters)
                    .flatten()
                    .filter(|p: &&Parameter| matches!(p.parameter_in, ParameterIn::Query))
                    .map(|p| p.name.clone())
                    .collect();
                if !names.is_empty() {
                    rules.insert((method, path.clone()), names);
                }
            }
        }
        QueryRules(rules)
    }

    /// What a `method` request to `route` may carry (a HEAD request what its GET may).
    fn allowed(&self, method: &Method, route: &str) -> &[String] {
        let own = self.0.get(&(method.clone(), route.to_string()));
        let own = match own {
            None if *method == Method::HEAD => self.0.get(&(Method::GET, route.to_string())),
            own => own,
        };
        own.map_or(&[], Vec::as_slice)
    }

    /// Whether a `method` request to `route` (the route's path) for `uri` may go on:
    /// otherwise a `bad_request` naming the query parameters the route does not take.
    pub(crate) fn check(&self, method: &Method, route: &str, uri: &Uri) -> Result<(), ApiFailure> {
        if uri.query().unwrap_or("").is_empty() {
            return Ok(());
        }
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri)
            .map_err(|e| bad(format!("bad query string: {}", e.body_text())))?;
        let allowed = self.allowed(method, route);
        let mut unknown = BTreeSet::new();
        for (name, _) in &pairs {
            if !allowed.contains(name) {
                unknown.insert(name.as_str());
            }
        }
        if unknown.is_empty() {
            return Ok(());
        }
        let mut named: Vec<String> = unknown
            .iter()
            .take(NAMES_SHOWN)
            .map(|name| format!("{:?}", name.chars().take(NAME_CHARS).collect::<String>()))
            .collect();
        if unknown.len() > NAMES_SHOWN {
            named.push(format!("and {} more", unknown.len() - NAMES_SHOWN));
        }
        let takes = if allowed.is_empty() {
            "no query parameters".to_string()
        } else {
            format!("only {}", allowed.join(", "))
        };
        Err(bad(format!(
            "unknown query parameter{} {}: {method} {route} takes {takes}",
            if unknown.len() == 1 { "" } else { "s" },
            named.join(", "),
        )))
    }
}

/// The OpenAPI document's side of it: every operation can answer 400 (a query parameter
/// it does not list), so each one that does not already list a 400 gets one.
pub(crate) struct DocumentRefusals;

impl utoipa::Modify for DocumentRefusals {
    fn modify(&self, openapi: &mut OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let refused = ResponseBuilder::new()
            .description("A query parameter this operation does not list, named in the message")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ApiError")))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ];
            for operation in operations.into_iter().flatten() {
                operation
                    .responses
                    .responses
                    .entry("400".to_string())
                    .or_insert_with(|| refused.clone().into());
            }
        }
    }
}

/// Middleware (`axum::middleware::from_fn_with_state`, as a route layer of the whole
/// router): a request whose query string names a parameter its route does not take is
/// answered 400 before anything else of the route runs.
pub(crate) async fn refuse_unknown(
    State(rules): State<Arc<QueryRules>>,
    request: Request,
    next: Next,
) -> Response {
    if !request.uri().query().unwrap_or("").is_empty() {
        // Every route has its matched path; a request without one reached no route.
        let route = request.extensions().get::<MatchedPath>().map_or_else(
            || request.uri().path().to_string(),
            |m| m.as_str().to_string(),
        );
        if let Err(refused) = rules.check(request.method(), &route, request.uri()) {
            return refused.into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use strata_cluster::node_api::{ApiError, ErrorCode};
    use tower_service::Service;

    fn rules() -> QueryRules {
        let mut rules = HashMap::new();
        rules.insert(
            (Method::GET, "/things".to_string()),
            vec!["limit".to_string(), "cursor".to_string()],
        );
        QueryRules(rules)
    }

    fn uri(text: &str) -> Uri {
        text.parse().unwrap()
    }

    fn message(result: Result<(), ApiFailure>) -> String {
        let err = result.expect_err("refused").0;
        assert_eq!(err.code, ErrorCode::BadRequest);
        assert!(!err.message.contains('\n'), "{}", err.message);
        err.message
    }

    #[test]
    fn a_route_takes_exactly_its_own_parameters() {
        let rules = rules();
        let get_things =
            |q: &str| rules.check(&Method::GET, "/things", &uri(&format!("/things?{q}")));
        assert!(get_things("").is_ok());
        assert!(rules
            .check(&Method::GET, "/things", &uri("/things"))
            .is_ok());
        assert!(get_things("limit=1").is_ok());
        assert!(get_things("limit=1&cursor=x%20y").is_ok());
        assert!(get_things("&&").is_ok());
        assert!(rules
            .check(&Method::HEAD, "/things", &uri("/things?limit=1"))
            .is_ok());

        let beside = message(get_things("limit=1&dry_run=true"));
        assert_eq!(
            beside,
            "unknown query parameter \"dry_run\": GET /things takes only limit, cursor"
        );
        let several = message(get_things("b=1&a&b=2&limit=3"));
        assert!(
            several.starts_with("unknown query parameters \"a\", \"b\":"),
            "{several}"
        );
        // Percent-encoded names are decoded, and shown escaped.
        let odd = message(get_things("dry%5Frun=1&x%0Ay=2"));
        assert!(
            odd.contains("\"dry_run\"") && odd.contains("\"x\\ny\""),
            "{odd}"
        );

        // Another method of the same path, or another path, takes none.
        let post = message(rules.check(&Method::POST, "/things", &uri("/things?limit=1")));
        assert_eq!(
            post,
            "unknown query parameter \"limit\": POST /things takes no query parameters"
        );
        let other = message(rules.check(
            &Method::DELETE,
            "/things/{name}",
            &uri("/things/a?dry_run=true"),
        ));
        assert!(other.contains("\"dry_run\""), "{other}");
        assert!(other.contains("DELETE /things/{name} takes no"), "{other}");
    }

    #[test]
    fn many_or_long_names_are_cut_short() {
        let query: Vec<String> = (0..20).map(|i| format!("p{i:02}=1")).collect();
        let many =
            message(rules().check(&Method::GET, "/x", &uri(&format!("/x?{}", query.join("&")))));
        assert!(many.contains("\"p07\", and 12 more:"), "{many}");
        assert!(!many.contains("p08"), "{many}");
        let long = format!("{}=1", "n".repeat(1000));
        let message = message(rules().check(&Method::GET, "/x", &uri(&format!("/x?{long}"))));
        assert!(message.len() < 200, "{message}");
    }

    #[test]
    fn the_api_document_says_what_each_route_takes() {
        let rules = QueryRules::from_openapi(&<crate::ApiDoc as utoipa::OpenApi>::openapi());
        let names = |method: Method, route: &str| {
            let mut names = rules.allowed(&method, route).to_vec();
            names.sort();
            names
        };
        assert_eq!(
            names(Method::GET, "/api/v1/backups"),
            ["cursor", "limit", "offset"]
        );
        assert_eq!(
            names(Method::GET, "/api/v1/backups/{name}/files"),
            ["limit", "node", "offset", "path"]
        );
        assert_eq!(names(Method::GET, "/api/v1/audit"), ["limit", "since"]);
        assert_eq!(
            names(Method::PATCH, "/api/v1/tables/policies/{id}"),
            ["dry_run"]
        );
        assert_eq!(names(Method::POST, "/api/v1/tables/policies"), ["dry_run"]);
        assert_eq!(
            names(Method::GET, "/api/v1/tables/policies"),
            ["policy", "table", "tag"]
        );
        for (method, route) in [
            (Method::POST, "/api/v1/restores"),
            (Method::POST, "/api/v1/cleanup"),
            (Method::DELETE, "/api/v1/backups/{name}"),
            (Method::GET, "/api/v1/status"),
            (Method::POST, "/node/v1/restore"),
            (Method::GET, "/metrics"),
        ] {
            assert!(names(method.clone(), route).is_empty(), "{method} {route}");
        }
    }

    #[test]
    fn every_operation_of_the_document_can_answer_400() {
        use utoipa::OpenApi as _;
        let doc = crate::ApiDoc::openapi();
        let mut operations = 0;
        for (path, item) in &doc.paths.paths {
            for operation in [&item.get, &item.post, &item.put, &item.patch, &item.delete]
                .into_iter()
                .flatten()
            {
                operations += 1;
                let listed = operation.responses.responses.contains_key("400");
                assert!(listed, "{path}: no 400 response");
            }
        }
        assert!(operations >= 30, "{operations}");
    }

    async fn call(router: &mut axum::Router, method: &str, uri: &str) -> (u16, String) {
        let request = axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let response = router.call(request).await.unwrap();
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn the_layer_refuses_before_the_handler_runs() {
        let ran = Arc::new(AtomicUsize::new(0));
        let count = |ran: &Arc<AtomicUsize>| {
            let ran = ran.clone();
            move || {
                ran.fetch_add(1, Ordering::SeqCst);
                async { "ran" }
            }
        };
        let mut router = axum::Router::new()
            .route("/things", get(count(&ran)).post(count(&ran)))
            .route("/things/{name}", get(count(&ran)))
            .route_layer(axum::middleware::from_fn_with_state(
                Arc::new(rules()),
                refuse_unknown,
            ));

        assert_eq!(call(&mut router, "GET", "/things?limit=2").await.0, 200);
        assert_eq!(call(&mut router, "GET", "/things?").await.0, 200);
        assert_eq!(call(&mut router, "POST", "/things").await.0, 200);
        assert_eq!(call(&mut router, "GET", "/things/a").await.0, 200);
        assert_eq!(ran.load(Ordering::SeqCst), 4);

        for uri in ["/things?dry_run=true", "/things?limit=1&dry_run=true"] {
            let (status, body) = call(&mut router, "POST", uri).await;
            assert_eq!(status, 400, "{uri}: {body}");
            let err: ApiError = serde_json::from_str(&body).unwrap();
            assert_eq!(err.code, ErrorCode::BadRequest);
            assert!(err.message.contains("\"dry_run\""), "{}", err.message);
        }
        let (status, body) = call(&mut router, "GET", "/things/a?limit=1").await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body.contains("GET /things/{name} takes no query parameters"),
            "{body}"
        );
        assert_eq!(ran.load(Ordering::SeqCst), 4, "a refused request ran");

        // No route, no rule: the router's own answer.
        assert_eq!(call(&mut router, "GET", "/nothing?x=1").await.0, 404);
    }

    /// The server's router has the layer on its every route, whatever it serves.
    #[tokio::test]
    async fn the_server_refuses_unknown_parameters_on_every_route() {
        let mut router = crate::router(crate::ServerParts {
            agent: None,
            coordinator: None,
            readiness: Arc::new(strata_health::AlwaysReady),
        });
        assert_eq!(call(&mut router, "GET", "/health").await.0, 200);
        for uri in ["/health?verbose=1", "/ready?x"] {
            let (status, body) = call(&mut router, "GET", uri).await;
            assert_eq!(status, 400, "{uri}: {body}");
            let err: ApiError = serde_json::from_str(&body).unwrap();
            assert_eq!(err.code, ErrorCode::BadRequest);
            assert!(
                err.message.contains("takes no query parameters"),
                "{}",
                err.message
            );
        }
        // An API this server does not serve is still 404, query or not.
        let (status, body) = call(&mut router, "POST", "/api/v1/restores?dry_run=true").await;
        assert_eq!(status, 404, "{body}");
    }
}
