//! The tables API of `strata server` (`/api/v1/tables`), against a real PostgreSQL 15 and a
//! real server process on 127.0.0.1: policies listed and filtered, planned with their next
//! expiries, their history; an edit previewed (nothing changes) and saved (audited as the
//! caller's token); a policy added (previewed first) and removed, a run dry and real, each
//! audited as the caller's token; a read-only token, no token and hostile requests
//! refused with 4xx and nothing changed. `strata tables ... --server` goes through the
//! same routes.

use super::TablesSite;
use crate::common::server::{http, Reply, Server};
use serde_json::{json, Value};

const USER: &str = "tables-api-user-token";
const ADMIN: &str = "tables-api-admin-token";
const READER: &str = "tables-api-read-token";
/// A password in `[tables] db` (the test server trusts local connections and ignores it):
/// no answer and no log line may ever hold it.
const DB_PASSWORD: &str = "tables-api-db-secret-71c3";

/// A site with two tables and three policies, and a coordinator server whose `[tables]
/// db` is the site's database.
struct ApiSite {
    site: TablesSite,
    server: Server,
    /// The delete policy on `metrics.recent` (tag `nightly`).
    recent: i64,
    /// The delete policy on `metrics.raw`.
    raw: i64,
    /// Where the server's webhooks (`tables.*`) go.
    hooks: crate::common::webhook::Receiver,
}

impl ApiSite {
    fn new() -> ApiSite {
        let site = TablesSite::new();
        site.monthly_table("metrics", "raw");
        // Daily partitions from five days ago to three days ahead: some have expired for
        // a 3-day policy, the rest expire on coming days.
        site.sql(
            "CREATE TABLE metrics.recent (ts timestamptz NOT NULL, v int) PARTITION BY RANGE (ts);
             DO $$ DECLARE d date; BEGIN
               FOR d IN SELECT generate_series(current_date - 5, current_date + 3, '1 day')::date LOOP
                 EXECUTE format('CREATE TABLE metrics.%I PARTITION OF metrics.recent FOR VALUES FROM (%L) TO (%L)',
                                'recent_' || to_char(d, 'YYYYMMDD'), d, d + 1);
               END LOOP; END $$;
             INSERT INTO metrics.recent SELECT t, 1 FROM generate_series(current_date - 5, current_date + 3, '1 hour') t;",
        );
        site.ok(&["tables", "setup"]);
        site.ok(&[
            "ttl",
            "metrics.recent:ts",
            "delete",
            "3d",
            "--tag",
            "nightly",
        ]);
        site.ok(&["ttl", "metrics.raw:ts", "delete", "400d"]);
        let recent = id_of(&site, "metrics", "recent");
        let raw = id_of(&site, "metrics", "raw");
        std::fs::create_dir_all(site.path("data")).unwrap();
        let dsn = format!("{} password={DB_PASSWORD}", site.dsn("postgres"));
        let hooks = crate::common::webhook::Receiver::start(false);
        std::fs::write(
            site.path("strata.toml"),
            format!(
                "default_storage = \"cold\"\nstate_dir = \"{state}\"\n[storages.cold]\npath = \"{cold}\"\n\
                 [repository]\nencryption = \"none\"\n\
                 [[nodes]]\nname = \"db1\"\nroots = [\"{data}\"]\n\
                 [tables]\ndb = \"{dsn}\"\n\
                 [[server.tokens]]\nname = \"admin\"\nenv = \"TABLES_API_ADMIN\"\n\
                 [[server.tokens]]\nname = \"wall\"\nenv = \"TABLES_API_READER\"\nrole = \"read\"\n\
                 [[webhooks]]\nurl = \"{hooks}\"\nevents = [\"tables.*\"]\n",
                state = site.path("state").display(),
                cold = site.path("cold").display(),
                data = site.path("data").display(),
                hooks = hooks.url,
            ),
        )
        .unwrap();
        site.ok(&["init"]);
        let mut cmd = site.command(&[]);
        cmd.env_remove("STRATA_TABLES_DB")
            .env("STRATA_TOKEN", USER)
            .env("TABLES_API_ADMIN", ADMIN)
            .env("TABLES_API_READER", READER);
        let server = Server::start(cmd, &site.path("server.log"));
        ApiSite {
            site,
            server,
            recent,
            raw,
            hooks,
        }
    }

    fn call(&self, method: &str, path: &str, token: Option<&str>, body: &str) -> Reply {
        http(&self.server.url, method, path, token, body)
    }

    /// A GET with `token` that must answer 200; its JSON.
    fn get(&self, path: &str, token: &str) -> Value {
        let reply = self.call("GET", path, Some(token), "");
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
        reply.json()
    }

    /// `strata --server URL ARGS` with the user token, no database of its own; stdout.
    fn cli(&self, args: &[&str]) -> String {
        let mut cmd = self.site.command(&["--server", &self.server.url]);
        cmd.args(args)
            .env_remove("STRATA_TABLES_DB")
            .env("STRATA_TOKEN", USER);
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "strata {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Every policy as stored and the number of audit rows: what no refused request may
    /// change.
    fn state(&self) -> (String, String) {
        (
            self.site
                .sql("SELECT string_agg(p::text, E'\\n' ORDER BY id) FROM strata.policy p"),
            self.site.sql("SELECT count(*) FROM strata.audit"),
        )
    }

    fn server_log(&self) -> String {
        std::fs::read_to_string(self.site.path("server.log")).unwrap_or_default()
    }
}

fn id_of_action(site: &TablesSite, table: &str, action: &str) -> i64 {
    site.sql(&format!(
        "SELECT id FROM strata.policy WHERE table_name = '{table}' AND action = '{action}'"
    ))
    .parse()
    .unwrap()
}

fn id_of(site: &TablesSite, schema: &str, table: &str) -> i64 {
    site.sql(&format!(
        "SELECT id FROM strata.policy WHERE table_schema = '{schema}' AND table_name = '{table}'"
    ))
    .parse()
    .unwrap()
}

/// Asserts `reply` is `status` with `needle` in its body; `what` names the request.
fn answers(reply: Reply, status: u16, needle: &str, what: &str) {
    assert_eq!(reply.status, status, "{what}: {}", reply.body);
    assert!(
        reply.body.contains(needle),
        "{what}: {needle:?} not in {}",
        reply.body
    );
}

fn ids(list: &Value) -> Vec<i64> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect()
}

#[test]
fn api_lists_filters_plans_and_shows_history_as_the_cli_does() {
    if super::skip_without_postgres() {
        return;
    }
    let s = ApiSite::new();
    let all = s.get("/api/v1/tables/policies", READER);
    assert_eq!(ids(&all), [s.recent, s.raw], "{all:#}");
    let recent = &all[0];
    assert_eq!(
        recent["table"],
        json!({"schema": "metrics", "name": "recent"})
    );
    assert_eq!(recent["action"], "delete");
    assert_eq!(recent["tags"], json!(["nightly"]));
    for (query, want) in [
        ("?table=metrics.recent", vec![s.recent]),
        ("?tag=nightly", vec![s.recent]),
        (&format!("?policy={}", s.raw), vec![s.raw]),
        ("?table=metrics.raw&tag=nightly", vec![]),
    ] {
        let got = s.get(&format!("/api/v1/tables/policies{query}"), READER);
        assert_eq!(ids(&got), want, "{query}: {got:#}");
    }

    // The plan: what a run now does, and when the rest expires.
    let plan = s.get("/api/v1/tables/plan?table=metrics.recent", READER);
    let tables = plan.as_array().unwrap();
    assert_eq!(tables.len(), 1, "{plan:#}");
    let recent_plan = &tables[0];
    assert_eq!(recent_plan["table"], "metrics.recent");
    let steps = recent_plan["plan"]["steps"].as_array().unwrap();
    assert!(!steps.is_empty(), "{plan:#}");
    assert!(steps
        .iter()
        .all(|step| step["policy_id"] == s.recent && step["kind"] == "drop_partition"));
    let next = recent_plan["next"].as_array().unwrap();
    assert!(!next.is_empty() && next.len() <= 3, "{plan:#}");
    let now = s
        .site
        .sql("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')");
    for expiry in next {
        assert_eq!(expiry["policy_id"], s.recent);
        assert!(
            expiry["at"].as_str().unwrap() > now.as_str(),
            "{expiry} after {now}"
        );
        assert!(!steps
            .iter()
            .any(|step| step["partition"] == expiry["partition"]));
    }
    // Planning acted on nothing.
    assert_eq!(s.site.partitions("metrics.recent").len(), 9);

    // The history of a policy: its creation, by the database user of the CLI.
    let history = s.get(
        &format!("/api/v1/tables/history?policy={}", s.recent),
        READER,
    );
    let rows = history.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{history:#}");
    assert_eq!(rows[0]["what"], "policy add");
    assert_eq!(rows[0]["policy_id"], s.recent);
    let limited = s.get("/api/v1/tables/history?limit=1", READER);
    assert_eq!(limited.as_array().unwrap().len(), 1);

    // The CLI through the server answers the same.
    let listed: Value = serde_json::from_str(&s.cli(&["tables", "list", "--json"])).unwrap();
    assert_eq!(listed, all);
    let text = s.cli(&["tables", "plan", "--tag", "nightly"]);
    assert!(text.contains("metrics.recent: next to expire"), "{text}");
    let cli_history: Value = serde_json::from_str(&s.cli(&[
        "tables",
        "history",
        "--policy",
        &s.recent.to_string(),
        "--json",
    ]))
    .unwrap();
    assert_eq!(cli_history, history);
    assert!(!s.server_log().contains("panicked"), "{}", s.server_log());
}

#[test]
fn api_dry_run_edit_changes_nothing_and_a_saved_edit_is_audited_as_the_caller() {
    if super::skip_without_postgres() {
        return;
    }
    let s = ApiSite::new();
    let before = s.state();
    let path = format!("/api/v1/tables/policies/{}", s.recent);
    let steps_now = s.get("/api/v1/tables/plan?table=metrics.recent", READER)[0]["plan"]["steps"]
        .as_array()
        .unwrap()
        .len();

    // A dry run: the edited policy and the plan it would make, nothing written.
    let preview = s.call(
        "PATCH",
        &format!("{path}?dry_run=true"),
        Some(ADMIN),
        r#"{"after": "1d"}"#,
    );
    assert_eq!(preview.status, 200, "{}", preview.body);
    let preview = preview.json();
    assert_eq!(preview["saved"], false);
    assert_eq!(preview["before"]["after"], json!({"After": 3 * 86_400}));
    assert_eq!(preview["policy"]["after"], json!({"After": 86_400}));
    let steps = preview["outlook"]["plan"]["steps"].as_array().unwrap();
    assert!(
        steps.len() > steps_now,
        "a shorter duration expires more: {preview:#}"
    );
    assert_eq!(s.state(), before, "a dry run changed something");

    // Saved: the policy changes and the audit log says who, the token's name.
    let saved = s.call(
        "PATCH",
        &path,
        Some(ADMIN),
        r#"{"after": "5d", "tags": ["nightly", "api"], "keep": 2}"#,
    );
    assert_eq!(saved.status, 200, "{}", saved.body);
    let saved = saved.json();
    assert_eq!(saved["saved"], true);
    assert_eq!(saved["policy"]["after"], json!({"After": 5 * 86_400}));
    assert_eq!(
        s.site.sql(&format!("SELECT after_text || ' ' || keep || ' ' || array_to_string(tags, ',') FROM strata.policy WHERE id = {}", s.recent)),
        "5d 2 nightly,api"
    );
    assert_eq!(
        s.site.sql(&format!("SELECT who || ' ' || what FROM strata.audit WHERE policy_id = {} ORDER BY id DESC LIMIT 1", s.recent)),
        "token:admin policy edit"
    );
    let history = s.get(
        &format!("/api/v1/tables/history?policy={}&limit=1", s.recent),
        READER,
    );
    assert_eq!(history[0]["who"], "token:admin", "{history:#}");
    // The other policy is as it was.
    assert_eq!(
        s.site.sql(&format!(
            "SELECT after_text FROM strata.policy WHERE id = {}",
            s.raw
        )),
        "1y5w"
    );

    // The CLI through the server: a dry run prints the plan and saves nothing; an edit is
    // recorded as the CLI's token.
    let state = s.state();
    let id = s.recent.to_string();
    let text = s.cli(&["tables", "edit", &id, "--after", "2d", "--dry-run"]);
    assert!(text.contains("dry run: not saved"), "{text}");
    assert_eq!(s.state(), state);
    s.cli(&["tables", "edit", &id, "--disable"]);
    assert_eq!(
        s.site.sql(&format!(
            "SELECT enabled::text FROM strata.policy WHERE id = {}",
            s.recent
        )),
        "false"
    );
    assert_eq!(
        s.site.sql(&format!(
            "SELECT who FROM strata.audit WHERE policy_id = {} ORDER BY id DESC LIMIT 1",
            s.recent
        )),
        "token:user"
    );
}

#[test]
fn api_refuses_read_tokens_no_token_and_hostile_requests_and_changes_nothing() {
    if super::skip_without_postgres() {
        return;
    }
    let s = ApiSite::new();
    let before = s.state();
    let path = format!("/api/v1/tables/policies/{}", s.recent);
    let refused = |reply: Reply, status: u16, code: &str, needle: &str| {
        assert_eq!(reply.status, status, "{}", reply.body);
        let err = reply.json();
        assert_eq!(err["code"], code, "{err}");
        assert!(
            err["message"].as_str().unwrap().contains(needle),
            "{needle:?} not in {err}"
        );
    };

    // A read-only token reads, never edits, not even a dry run; it is told its role.
    s.get("/api/v1/tables/policies", READER);
    let me = s.get("/api/v1/session", READER);
    assert_eq!(
        (me["token"].as_str(), me["role"].as_str()),
        (Some("wall"), Some("read")),
        "{me}"
    );
    let me = s.get("/api/v1/session", USER);
    assert_eq!(me["role"], "admin", "{me}");
    refused(
        s.call("PATCH", &path, Some(READER), r#"{"after": "1d"}"#),
        403,
        "forbidden",
        "may only read",
    );
    refused(
        s.call("PATCH", &format!("{path}?dry_run=true"), Some(READER), "{}"),
        403,
        "forbidden",
        "read",
    );
    // No token, a wrong one.
    refused(
        s.call("GET", "/api/v1/tables/policies", None, ""),
        401,
        "unauthorized",
        "missing bearer token",
    );
    refused(
        s.call("PATCH", &path, None, r#"{"after": "1d"}"#),
        401,
        "unauthorized",
        "",
    );
    refused(
        s.call("PATCH", &path, Some("guess"), r#"{"after": "1d"}"#),
        401,
        "unauthorized",
        "wrong",
    );

    // Hostile bodies: unknown fields (SQL has no field to go in), values out of bounds,
    // names that are not names, a body far over the limit.
    let hostile: Vec<(String, u16, &str)> = vec![
        (
            r#"{"sql": "DROP TABLE metrics.raw"}"#.into(),
            400,
            "unknown field `sql`",
        ),
        (
            r#"{"after": "1d", "statement": "SELECT 1"}"#.into(),
            400,
            "unknown field `statement`",
        ),
        (r#"{"after": "soon"}"#.into(), 400, "unparsable duration"),
        (
            r#"{"target": "nowhere"}"#.into(),
            400,
            "no storage of this server",
        ),
        (
            r#"{"after": "300000000y"}"#.into(),
            400,
            "longer than 10000y",
        ),
        (r#"{"after": 5}"#.into(), 400, "after"),
        (r#"{"keep": -1}"#.into(), 400, "keep"),
        (r#"{"keep": 0}"#.into(), 400, "--keep must be at least 1"),
        (r#"{"tags": ["a\nb"]}"#.into(), 400, "control characters"),
        (
            r#"{"tablespace": "x\u0000y"}"#.into(),
            400,
            "control characters",
        ),
        (r#"{"into": "a.b.c"}"#.into(), 400, "invalid table name"),
        (
            format!(r#"{{"tags": ["{}"]}}"#, "t".repeat(300)),
            400,
            "at most 256",
        ),
        (
            format!(r#"{{"tags": [{}]}}"#, vec!["\"t\""; 65].join(",")),
            400,
            "at most 64",
        ),
        ("[1, 2]".into(), 400, "bad JSON body"),
        ("not json".into(), 400, "not JSON"),
        (
            format!(r#"{{"tags": ["{}"]}}"#, "x".repeat(200 << 10)),
            413,
            "too large",
        ),
    ];
    for (body, status, needle) in &hostile {
        let shown: String = body.chars().take(80).collect();
        answers(
            s.call("PATCH", &path, Some(ADMIN), body),
            *status,
            needle,
            &shown,
        );
    }
    // Bad paths and queries.
    refused(
        s.call("PATCH", "/api/v1/tables/policies/x", Some(ADMIN), "{}"),
        400,
        "bad_request",
        "bad path",
    );
    refused(
        s.call("PATCH", "/api/v1/tables/policies/999999", Some(ADMIN), "{}"),
        404,
        "not_found",
        "no policy with id 999999",
    );
    refused(
        s.call("PATCH", &format!("{path}?dry_run=maybe"), Some(ADMIN), "{}"),
        400,
        "bad_request",
        "query",
    );
    refused(
        s.call("GET", "/api/v1/tables/plan?table=a.b.c", Some(READER), ""),
        400,
        "bad_request",
        "invalid table name",
    );
    refused(
        s.call("GET", "/api/v1/tables/policies?drop=1", Some(READER), ""),
        400,
        "bad_request",
        "unknown query parameter \"drop\"",
    );
    refused(
        s.call("GET", "/api/v1/tables/history?limit=0", Some(READER), ""),
        400,
        "bad_request",
        "--limit must be 1 to 10000",
    );
    refused(
        s.call(
            "GET",
            "/api/v1/tables/history?since=yesterday",
            Some(READER),
            "",
        ),
        400,
        "bad_request",
        "unparsable cutoff",
    );
    refused(
        s.call("PUT", &path, Some(ADMIN), "{}"),
        405,
        "method_not_allowed",
        "PUT",
    );
    // Adding, removing and running are changes too: a read token makes none, bad bodies
    // are refused before the database is asked.
    let new_policy =
        r#"{"table": "metrics.raw", "column": "ts", "action": "delete", "after": "30d"}"#;
    refused(
        s.call("POST", "/api/v1/tables/policies", Some(READER), new_policy),
        403,
        "forbidden",
        "may only read",
    );
    refused(
        s.call("DELETE", &path, Some(READER), ""),
        403,
        "forbidden",
        "may only read",
    );
    refused(
        s.call("POST", "/api/v1/tables/run", Some(READER), "{}"),
        403,
        "forbidden",
        "may only read",
    );
    for (path, body, needle) in [
        (
            r#"{"table": "metrics.raw", "column": "ts", "action": "delete", "after": "30d", "sql": "x"}"#,
            "unknown field `sql`",
        ),
        (
            r#"{"table": "metrics.raw", "column": "ts", "action": "truncate", "after": "30d"}"#,
            "unknown action",
        ),
        (
            r#"{"table": "metrics.raw", "column": "nope", "action": "delete", "after": "30d"}"#,
            "nope",
        ),
        (
            r#"{"table": "metrics.gone", "column": "ts", "action": "delete", "after": "30d"}"#,
            "metrics.gone",
        ),
        (
            r#"{"table": "a.b.c", "column": "ts", "action": "delete", "after": "30d"}"#,
            "invalid table name",
        ),
        (
            r#"{"table": "metrics.raw", "column": "ts", "action": "detach", "after": "300000000y"}"#,
            "longer than 10000y",
        ),
        (
            r#"{"table": "metrics.raw", "column": "ts", "action": "archive", "after": "30d", "target": "nowhere"}"#,
            "no storage of this server (its storages: cold)",
        ),
        (
            r#"{"table": "metrics.raw", "column": "ts"}"#,
            "missing field",
        ),
    ]
    .map(|(body, needle)| ("/api/v1/tables/policies", body, needle))
    .into_iter()
    .chain(
        [
            (r#"{"any_tag": true}"#, "any_tag needs tags"),
            (r#"{"cutoff": "yesterday"}"#, "unparsable cutoff"),
            (r#"{"cutoff": "2999-01-01"}"#, "later than now"),
            (
                r#"{"tags": ["nightly"], "drop": true}"#,
                "unknown field `drop`",
            ),
        ]
        .map(|(body, needle)| ("/api/v1/tables/run", body, needle)),
    ) {
        let what = format!("POST {path} {body}");
        answers(s.call("POST", path, Some(ADMIN), body), 400, needle, &what);
    }
    refused(
        s.call("DELETE", "/api/v1/tables/policies/999999", Some(ADMIN), ""),
        404,
        "not_found",
        "no policy with id 999999",
    );
    assert_eq!(
        s.site.partitions("metrics.recent").len(),
        9,
        "a refused run acted"
    );

    assert_eq!(s.state(), before, "a refused request changed something");
    assert!(!s.server_log().contains("panicked"), "{}", s.server_log());
    // The database's password is in no answer and no log line.
    let config = s.get("/api/v1/config", READER).to_string();
    assert!(!config.contains(DB_PASSWORD), "{config}");
    assert!(!s.server_log().contains(DB_PASSWORD));
}

#[test]
fn api_adds_removes_and_runs_policies_audited_as_the_caller_as_the_cli_does() {
    if super::skip_without_postgres() {
        return;
    }
    let s = ApiSite::new();
    let before = s.state();
    let new_policy = r#"{"table": "metrics.raw", "column": "ts", "action": "detach", "after": "30d", "tags": ["api"], "keep": 2}"#;
    // One policy per table and action: a second delete policy is refused, dry run or not.
    let twice = s.call(
        "POST",
        "/api/v1/tables/policies?dry_run=true",
        Some(ADMIN),
        r#"{"table": "metrics.raw", "column": "ts", "action": "delete", "after": "30d"}"#,
    );
    assert_eq!(twice.status, 400, "{}", twice.body);
    assert!(
        twice.body.contains("already has a delete policy"),
        "{}",
        twice.body
    );

    // A dry run: the policy and its table's plan with it; nothing written.
    let preview = s.call(
        "POST",
        "/api/v1/tables/policies?dry_run=true",
        Some(ADMIN),
        new_policy,
    );
    assert_eq!(preview.status, 200, "{}", preview.body);
    let preview = preview.json();
    assert_eq!(preview["saved"], false);
    assert_eq!(preview["policy"]["id"], 0);
    assert_eq!(preview["policy"]["keep"], 2);
    assert_eq!(preview["outlook"]["table"], "metrics.raw", "{preview:#}");
    assert!(preview["outlook"]["plan"].is_object(), "{preview:#}");
    assert_eq!(s.state(), before, "a dry run changed something");
    // An archive policy names a storage of the server's configuration.
    let archive = s.call(
        "POST",
        "/api/v1/tables/policies?dry_run=true",
        Some(ADMIN),
        r#"{"table": "metrics.raw", "column": "ts", "action": "archive", "after": "30d", "target": "cold"}"#,
    );
    assert_eq!(archive.status, 200, "{}", archive.body);
    assert_eq!(archive.json()["policy"]["target"], "cold");

    // Saved: stored as given, audited as the token.
    let added = s.call("POST", "/api/v1/tables/policies", Some(ADMIN), new_policy);
    assert_eq!(added.status, 200, "{}", added.body);
    let added = added.json();
    assert_eq!(added["saved"], true);
    let id = added["policy"]["id"].as_i64().unwrap();
    assert!(id > s.raw, "{added:#}");
    assert_eq!(added["policy"]["created_by"], "token:admin");
    assert_eq!(
        s.site.sql(&format!("SELECT table_schema || '.' || table_name || ' ' || action || ' ' || after_text || ' ' || keep || ' ' || array_to_string(tags, ',') FROM strata.policy WHERE id = {id}")),
        "metrics.raw detach 30d 2 api"
    );
    let last_audit = |policy: i64| {
        s.site.sql(&format!(
            "SELECT who || ' ' || what FROM strata.audit WHERE policy_id = {policy} ORDER BY id DESC LIMIT 1"
        ))
    };
    assert_eq!(last_audit(id), "token:admin policy add");

    // Removed: answered as it was, audited; a second removal finds nothing.
    let path = format!("/api/v1/tables/policies/{id}");
    let removed = s.call("DELETE", &path, Some(ADMIN), "");
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert_eq!(removed.json()["id"], id);
    assert_eq!(
        s.site.sql(&format!(
            "SELECT count(*) FROM strata.policy WHERE id = {id}"
        )),
        "0"
    );
    assert_eq!(last_audit(id), "token:admin policy remove");
    let again = s.call("DELETE", &path, Some(ADMIN), "");
    assert_eq!(again.status, 404, "{}", again.body);

    // A dry run of the nightly policies plans and acts on nothing.
    let dry = s.call(
        "POST",
        "/api/v1/tables/run",
        Some(ADMIN),
        r#"{"tags": ["nightly"], "dry_run": true}"#,
    );
    assert_eq!(dry.status, 200, "{}", dry.body);
    let dry = dry.json();
    assert_eq!(dry["dry_run"], true);
    let tables = dry["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 1, "only metrics.recent has the tag: {dry:#}");
    assert_eq!(tables[0]["table"], "metrics.recent");
    assert_eq!(tables[0]["outcome"], "dry_run");
    let expired = tables[0]["plan"]["steps"].as_array().unwrap().len();
    assert!(expired > 0, "{dry:#}");
    assert_eq!(s.site.partitions("metrics.recent").len(), 9);

    // The run itself: the expired partitions go, the run is audited as the token.
    let raw_partitions = s.site.partitions("metrics.raw").len();
    let run = s.call(
        "POST",
        "/api/v1/tables/run",
        Some(ADMIN),
        r#"{"tags": ["nightly"]}"#,
    );
    assert_eq!(run.status, 200, "{}", run.body);
    let run = run.json();
    assert_eq!(run["tables"][0]["outcome"], "done", "{run:#}");
    assert_eq!(
        run["tables"][0]["steps"].as_array().unwrap().len(),
        expired,
        "{run:#}"
    );
    assert_eq!(s.site.partitions("metrics.recent").len(), 9 - expired);
    let run_id = run["run_id"].as_i64().unwrap();
    assert_eq!(
        s.site.sql(&format!(
            "SELECT who || ' ' || what || ' ' || outcome FROM strata.audit WHERE run_id = {run_id} AND what = 'run'"
        )),
        "token:admin run done"
    );
    // metrics.raw has no nightly tag: untouched.
    assert_eq!(s.site.partitions("metrics.raw").len(), raw_partitions);
    // The webhooks heard of both runs, started and ended, by the token.
    let got = s.hooks.wait_for(4);
    let events: Vec<&str> = got.iter().map(|d| d.event.as_str()).collect();
    assert_eq!(
        events,
        [
            "tables.started",
            "tables.succeeded",
            "tables.started",
            "tables.succeeded"
        ]
    );
    let last: Value = serde_json::from_str(&got[3].body).unwrap();
    assert!(
        last["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("run {run_id}: done")),
        "{last:#}"
    );
    assert!(
        got.iter().all(|d| d.body.contains("token:admin")),
        "{got:?}"
    );
    assert!(!got.iter().any(|d| d.body.contains(DB_PASSWORD)));

    // The CLI through the server: the same calls, recorded as the CLI's token.
    let add = |extra: &[&str]| {
        let mut args = vec![
            "tables",
            "add",
            "--table",
            "metrics.raw",
            "--column",
            "ts",
            "--action",
            "detach",
            "--after",
            "60d",
        ];
        args.extend_from_slice(extra);
        s.cli(&args)
    };
    let text = add(&["--dry-run"]);
    assert!(text.contains("new policy (dry run: not saved)"), "{text}");
    let added: Value = serde_json::from_str(&add(&["--json"])).unwrap();
    let cli_id = added["id"].as_i64().unwrap();
    assert_eq!(last_audit(cli_id), "token:user policy add");
    let text = s.cli(&["tables", "run", "--tag", "nightly"]);
    assert!(
        text.contains("metrics.recent: nothing has expired"),
        "{text}"
    );
    let text = s.cli(&["tables", "rm", &cli_id.to_string()]);
    assert!(text.contains(&format!("removed policy {cli_id}")), "{text}");
    assert_eq!(last_audit(cli_id), "token:user policy remove");
    // By tag: each policy the tags pick, as here (several tags all match; --any-tag
    // any), each one audited; nothing matched says so.
    add(&["--tag", "nightly", "--tag", "raw"]);
    let both = id_of_action(&s.site, "raw", "detach");
    let text = s.cli(&["tables", "rm", "--tag", "nightly", "--tag", "raw"]);
    assert!(text.contains(&format!("removed policy {both}")), "{text}");
    assert!(
        !text.contains(&format!("removed policy {}", s.recent)),
        "{text}"
    );
    assert_eq!(last_audit(both), "token:user policy remove");
    let text = s.cli(&["tables", "rm", "--tag", "none-has-it"]);
    assert!(text.contains("no policy matched"), "{text}");
    let listed: Value =
        serde_json::from_str(&s.cli(&["tables", "rm", "--tag", "nightly", "--json"])).unwrap();
    assert_eq!(ids(&listed), [s.recent], "{listed:#}");
    assert_eq!(
        s.site.sql("SELECT count(*) FROM strata.policy"),
        "1",
        "only the policy without the tag stays"
    );
    assert!(!s.server_log().contains("panicked"), "{}", s.server_log());
}

#[test]
fn api_runs_one_at_a_time_and_a_run_whose_client_left_still_ends() {
    if super::skip_without_postgres() {
        return;
    }
    let s = ApiSite::new();
    // A reader holding metrics.recent keeps a run waiting in its planning (up to the lock
    // timeout, 30 s), so the run is under way for as long as the reader holds it.
    let mut reader = s.site.background_sql(
        "BEGIN; LOCK TABLE metrics.recent IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(3); COMMIT;",
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    // A client that starts a run and hangs up at once.
    {
        use std::io::Write;
        let addr = s.server.url.trim_start_matches("http://");
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        let body = r#"{"tags": ["nightly"]}"#;
        write!(
            client,
            "POST /api/v1/tables/run HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    // The run goes on without its client: a second one is refused while it does.
    let busy = s.call("POST", "/api/v1/tables/run", Some(ADMIN), "{}");
    assert_eq!(busy.status, 409, "{}", busy.body);
    assert!(busy.body.contains("under way"), "{}", busy.body);
    reader.wait().unwrap();
    // Then it ends its table and records itself, and the next run may start.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let next = loop {
        let reply = s.call(
            "POST",
            "/api/v1/tables/run",
            Some(ADMIN),
            r#"{"tags": ["nightly"]}"#,
        );
        if reply.status != 409 {
            break reply;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the first run never ended"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(next.status, 200, "{}", next.body);
    assert_eq!(next.json()["tables"][0]["outcome"], "nothing_to_do");
    assert_eq!(
        s.site.sql(
            "SELECT string_agg(outcome, ',' ORDER BY id) FROM strata.audit WHERE what = 'run'"
        ),
        "done,nothing to do"
    );
    assert!(s.site.partitions("metrics.recent").len() < 9);
    // The webhooks heard the end of the run whose client left, then the next run.
    let events: Vec<String> = s.hooks.wait_for(4).into_iter().map(|d| d.event).collect();
    assert_eq!(
        events,
        [
            "tables.started",
            "tables.succeeded",
            "tables.started",
            "tables.succeeded"
        ]
    );
    // Only a dry run may look ahead: what would a run in 2999 do.
    let ahead = s.call(
        "POST",
        "/api/v1/tables/run",
        Some(ADMIN),
        r#"{"cutoff": "2999-01-01", "dry_run": true}"#,
    );
    assert_eq!(ahead.status, 200, "{}", ahead.body);
    assert_eq!(ahead.json()["tables"][0]["outcome"], "dry_run");
    assert!(!s.server_log().contains("panicked"), "{}", s.server_log());
}
