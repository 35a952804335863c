//! Every JSON body of the API is read strictly, whatever route takes it: the test walks the
//! OpenAPI document a real `strata server` serves and, for each operation with a request
//! body, sends a valid-looking body plus a field the API does not know, a body whose
//! fields have the wrong type, and a body that is not JSON. Each must be a 400
//! `bad_request` naming the field (or saying the body is not JSON), and nothing may start:
//! a misspelt `include` or `dry_run` once ran a whole in-place restore. Query strings
//! likewise: every route, documented or not, refuses a query parameter it does not take.

use crate::common;

use common::server::{http, Server};
use common::{one_node_site, snapshot_tree, strata_with_token, succeed};
use serde_json::{json, Map, Value};
use std::io::{Read, Write};

const TOKEN: &str = "strict-user-token";
const UNKNOWN: &str = "strata_no_such_field";

/// The schema `schema` stands for, `$ref`s followed.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("unexpected $ref {reference}"));
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema,
    }
}

/// The first alternative of a `oneOf`/`anyOf` that is not `null`, else the schema itself.
fn concrete<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    let schema = resolve(doc, schema);
    for key in ["oneOf", "anyOf"] {
        if let Some(alternatives) = schema[key].as_array() {
            if let Some(first) = alternatives
                .iter()
                .map(|a| resolve(doc, a))
                .find(|a| a["type"] != "null")
            {
                return concrete(doc, first);
            }
        }
    }
    schema
}

/// A value that fits `schema` well enough: required properties filled in.
fn example(doc: &Value, schema: &Value) -> Value {
    let schema = concrete(doc, schema);
    let kind = match &schema["type"] {
        Value::Array(kinds) => kinds
            .iter()
            .find(|k| *k != "null")
            .cloned()
            .unwrap_or(Value::Null),
        other => other.clone(),
    };
    match kind.as_str() {
        Some("string") => json!("latest"),
        Some("integer") | Some("number") => json!(1),
        Some("boolean") => json!(false),
        Some("array") => json!([]),
        _ => {
            let mut out = Map::new();
            for name in schema["required"].as_array().into_iter().flatten() {
                let name = name.as_str().unwrap();
                out.insert(name.into(), example(doc, &schema["properties"][name]));
            }
            Value::Object(out)
        }
    }
}

/// A request with any content type, for bodies the test helper would label JSON.
fn raw(url: &str, method: &str, path: &str, content_type: &str, body: &str) -> (u16, String) {
    let address = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let status = reply
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// Asserts a 400 `bad_request` whose message contains `needle`.
fn refused(what: &str, status: u16, body: &str, needle: &str) {
    assert_eq!(status, 400, "{what}: accepted or wrong status: {body}");
    let error: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{what}: the error is not JSON ({e}): {body}"));
    assert_eq!(error["code"], "bad_request", "{what}: {body}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(needle),
        "{what}: the message does not say {needle:?}: {message}"
    );
    assert!(!message.contains('\n'), "{what}: not one line: {message:?}");
}

#[test]
fn every_request_body_refuses_unknown_fields_wrong_types_and_non_json() {
    let dir = tempfile::tempdir().unwrap();
    let config = one_node_site(dir.path(), "");
    let strata = || strata_with_token(dir.path(), &config, TOKEN);
    succeed(strata().arg("init"));
    succeed(strata().arg("backup"));
    let data = dir.path().join("data");
    let before = snapshot_tree(&data);
    let server = Server::start(strata(), &dir.path().join("server.log"));
    let url = server.url.as_str();

    let doc = http(url, "GET", "/api/openapi.json", None, "").json();
    let mut walked = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let method = method.to_ascii_uppercase();
            if !["POST", "PUT", "PATCH"].contains(&method.as_str()) {
                continue;
            }
            let what = format!("{method} {path}");
            // A route that takes a body and does not say so would escape this walk.
            let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
            assert!(
                !schema.is_null(),
                "{what} declares no JSON request body: document its body (or NoOptions)"
            );
            let target = path.replace("{name}", "latest").replace("{id}", "none");
            let valid = example(&doc, schema);
            let object = concrete(&doc, schema);

            // A field the API does not know.
            let mut body = valid.as_object().cloned().unwrap_or_default();
            body.insert(UNKNOWN.into(), json!(true));
            let reply = http(
                url,
                &method,
                &target,
                Some(TOKEN),
                &Value::Object(body).to_string(),
            );
            refused(
                &format!("{what} with {UNKNOWN}"),
                reply.status,
                &reply.body,
                UNKNOWN,
            );

            // Each known field with a value of the wrong type.
            for name in object["properties"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(n, _)| n)
            {
                let mut body = valid.as_object().cloned().unwrap_or_default();
                body.insert(name.clone(), json!([["x"]]));
                let reply = http(
                    url,
                    &method,
                    &target,
                    Some(TOKEN),
                    &Value::Object(body).to_string(),
                );
                refused(
                    &format!("{what} with {name} of the wrong type"),
                    reply.status,
                    &reply.body,
                    name,
                );
            }

            // Not JSON, labelled JSON or not.
            let reply = http(url, &method, &target, Some(TOKEN), "includ=sub/small.txt");
            refused(
                &format!("{what} with a non-JSON body"),
                reply.status,
                &reply.body,
                "not JSON",
            );
            let (status, body) = raw(url, &method, &target, "text/plain", "dry_run");
            refused(
                &format!("{what} with a text/plain body"),
                status,
                &body,
                "JSON",
            );
            let (status, body) = raw(url, &method, &target, "text/plain", "{}");
            refused(
                &format!("{what} with JSON labelled text/plain"),
                status,
                &body,
                "JSON",
            );
            walked.push(what);
        }
    }
    assert!(
        walked.iter().any(|w| w == "POST /api/v1/restores")
            && walked.iter().any(|w| w == "POST /api/v1/backups"),
        "the walk missed the routes it exists for: {walked:?}"
    );
    assert!(
        walked.len() >= 10,
        "only {} operations walked: {walked:?}",
        walked.len()
    );

    // The typos that once restored a whole node, named.
    for (body, field) in [
        (
            json!({"backup": "latest", "includ": "sub/small.txt"}),
            "includ",
        ),
        (json!({"backup": "latest", "dry-run": true}), "dry-run"),
        // A field this backup cannot take (no component that previews): bad input
        // naming it, not "not found".
        (json!({"backup": "latest", "dry_run": true}), "dry_run"),
    ] {
        let reply = http(
            url,
            "POST",
            "/api/v1/restores",
            Some(TOKEN),
            &body.to_string(),
        );
        refused(
            &format!("restore with {field}"),
            reply.status,
            &reply.body,
            field,
        );
    }
    // Nothing started, nothing written.
    let operations = http(url, "GET", "/api/v1/operations", Some(TOKEN), "").json();
    assert_eq!(operations, json!([]), "an operation was started");
    assert!(before == snapshot_tree(&data), "the data directory changed");

    // Query strings too: every GET that declares query parameters refuses one it does
    // not know (a misspelt `limit` once answered every backup).
    let mut queried = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let Some(operation) = item.get("get") else {
            continue;
        };
        let in_query = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["in"] == "query");
        if !in_query {
            continue;
        }
        let target = path.replace("{name}", "latest").replace("{id}", "none");
        let reply = http(
            url,
            "GET",
            &format!("{target}?{UNKNOWN}=1"),
            Some(TOKEN),
            "",
        );
        refused(
            &format!("GET {path}?{UNKNOWN}"),
            reply.status,
            &reply.body,
            UNKNOWN,
        );
        queried.push(path.clone());
    }
    for expected in [
        "/api/v1/backups",
        "/api/v1/backups/{name}/files",
        "/api/v1/audit",
    ] {
        assert!(
            queried.iter().any(|q| q == expected),
            "{expected} not walked: {queried:?}"
        );
    }

    // Absent and empty bodies still mean "all defaults" where the API allows them.
    for body in ["", "{}", "null"] {
        let reply = http(url, "POST", "/api/v1/gc", Some(TOKEN), body);
        assert_eq!(reply.status, 200, "gc with {body:?}: {}", reply.body);
    }
}

/// Query strings are as strict as bodies, on every route of the server: a parameter a route
/// does not take is a 400 `bad_request` naming it, and nothing runs. `?dry_run=true` on a
/// restore, a cleanup or a delete once did the whole thing for real.
#[test]
fn every_route_refuses_query_parameters_it_does_not_take() {
    const AGENT_TOKEN: &str = "strict-agent-token";
    let dir = tempfile::tempdir().unwrap();
    // The server is db1's agent too, so `/node/v1` is served.
    let config = one_node_site(dir.path(), "[server]\nnode = \"db1\"\n");
    let strata = || strata_with_token(dir.path(), &config, TOKEN);
    succeed(strata().arg("init"));
    succeed(strata().arg("backup"));
    succeed(strata().arg("backup"));
    // A change since the backups, which a restore would undo.
    let data = dir.path().join("data");
    std::fs::write(data.join("changed-since.txt"), "not in any backup").unwrap();
    let before = snapshot_tree(&data);
    let mut command = strata();
    command.env("STRATA_AGENT_TOKEN", AGENT_TOKEN);
    let server = Server::start(command, &dir.path().join("server.log"));
    let url = server.url.as_str();
    let names = |reply: &common::server::Reply| -> Vec<String> {
        assert_eq!(reply.status, 200, "{}", reply.body);
        let rows = reply.json();
        let rows = rows.as_array().unwrap().iter();
        rows.map(|b| b["name"].as_str().unwrap().to_string())
            .collect()
    };
    let backups = names(&http(url, "GET", "/api/v1/backups", Some(TOKEN), ""));
    assert_eq!(backups.len(), 2, "{backups:?}");
    let oldest = &backups[0];

    // The three that once ran for real.
    let delete = format!("/api/v1/backups/{oldest}?dry_run=true");
    for (method, target, body) in [
        (
            "POST",
            "/api/v1/restores?dry_run=true",
            r#"{"backup": "latest"}"#,
        ),
        (
            "POST",
            "/api/v1/cleanup?dry_run=true",
            r#"{"policy": {"keep_last": 1}}"#,
        ),
        ("DELETE", delete.as_str(), ""),
    ] {
        let reply = http(url, method, target, Some(TOKEN), body);
        refused(
            &format!("{method} {target}"),
            reply.status,
            &reply.body,
            "unknown query parameter \"dry_run\"",
        );
    }
    // Nothing ran: no operation, both backups there, the data as it was, and the audit
    // log (read with a query parameter its route takes) has nothing from the API.
    let operations = http(url, "GET", "/api/v1/operations", Some(TOKEN), "").json();
    assert_eq!(operations, json!([]), "an operation was started");
    let after = names(&http(url, "GET", "/api/v1/backups", Some(TOKEN), ""));
    assert_eq!(after, backups, "a backup was deleted");
    assert!(before == snapshot_tree(&data), "the data directory changed");
    let audit = http(url, "GET", "/api/v1/audit?limit=1000", Some(TOKEN), "");
    assert_eq!(audit.status, 200, "{}", audit.body);
    let audit = audit.json();
    let by_api: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["who"].as_str().unwrap_or_default().starts_with("token:"))
        .collect();
    assert!(by_api.is_empty(), "the API changed something: {by_api:?}");

    // A route's own parameters still work; an unknown one beside them is refused, by name.
    let page = http(url, "GET", "/api/v1/backups?limit=1", Some(TOKEN), "");
    assert_eq!(names(&page).len(), 1, "{}", page.body);
    assert_eq!(page.header("x-total-count"), Some("2"));
    let files = format!("/api/v1/backups/{oldest}/files?limit=3&offset=1");
    let listed = http(url, "GET", &files, Some(TOKEN), "");
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(
        listed.json().as_array().unwrap().len(),
        3,
        "{}",
        listed.body
    );
    let reply = http(
        url,
        "GET",
        "/api/v1/backups?limit=1&dry_run=true",
        Some(TOKEN),
        "",
    );
    refused(
        "GET /api/v1/backups?limit=1&dry_run=true",
        reply.status,
        &reply.body,
        "unknown query parameter \"dry_run\"",
    );
    let message = reply.json()["message"].as_str().unwrap().to_string();
    assert!(
        !message.contains("\"limit\""),
        "limit named unknown: {message}"
    );

    // Every operation of the OpenAPI document, whatever its method.
    let doc = http(url, "GET", "/api/openapi.json", None, "").json();
    let mut walked = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let method = method.to_ascii_uppercase();
            let target = path.replace("{name}", oldest).replace("{id}", "1");
            let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
            let body = if schema.is_null() {
                String::new()
            } else {
                example(&doc, schema).to_string()
            };
            let reply = http(
                url,
                &method,
                &format!("{target}?{UNKNOWN}=1"),
                Some(TOKEN),
                &body,
            );
            refused(
                &format!("{method} {path}?{UNKNOWN}"),
                reply.status,
                &reply.body,
                UNKNOWN,
            );
            walked.push(format!("{method} {path}"));
        }
    }
    assert!(
        walked.len() >= 30,
        "only {} walked: {walked:?}",
        walked.len()
    );

    // And the routes the document does not describe.
    for (method, target, token) in [
        ("GET", "/metrics", Some(TOKEN)),
        ("GET", "/health", None),
        ("GET", "/ready", None),
        ("GET", "/", None),
        ("GET", "/ui/", None),
        ("GET", "/ui/app.js", None),
        ("GET", "/api/openapi.json", None),
        ("GET", "/node/v1/metadata", Some(AGENT_TOKEN)),
        ("POST", "/node/v1/release", Some(AGENT_TOKEN)),
    ] {
        let reply = http(url, method, &format!("{target}?{UNKNOWN}=1"), token, "");
        refused(
            &format!("{method} {target}?{UNKNOWN}"),
            reply.status,
            &reply.body,
            UNKNOWN,
        );
        // Without it, they answer as ever.
        if method == "GET" {
            let reply = http(url, method, target, token, "");
            assert!(
                reply.status < 400,
                "{method} {target}: {} {}",
                reply.status,
                reply.body
            );
        }
    }

    assert_eq!(
        http(url, "GET", "/api/v1/operations", Some(TOKEN), "").json(),
        json!([]),
        "the walk started an operation"
    );
    assert!(before == snapshot_tree(&data), "the walk changed the data");
    let after = names(&http(url, "GET", "/api/v1/backups", Some(TOKEN), ""));
    assert_eq!(after, backups, "the walk deleted a backup");
}
