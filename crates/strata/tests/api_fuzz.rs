//! Property-based fuzzing of the coordinator API from its own OpenAPI document
//! (schemathesis, from PyPI, installed by scripts/install-test-servers.sh): against a real
//! `strata server` with real backups (and, where PostgreSQL 15 is installed, a `[tables]
//! db` with table retention policies), generated requests must never get a 5xx, and every
//! response must match the documented status codes, content types and schemas.

use crate::common;

use common::pgserver::{pg_available, PgSite};
use common::server::{http, Server};
use common::{one_node_site, strata_with_token, succeed};
use std::process::Command;

const TOKEN: &str = "fuzz-user-token";

/// The schemathesis executable, or `None` (and the test skips) when it is not installed
/// and `STRATA_REQUIRE_TOOLS` is not set.
fn schemathesis() -> Option<String> {
    match std::env::var("STRATA_TEST_SCHEMATHESIS") {
        Ok(path) if std::path::Path::new(&path).exists() => Some(path),
        _ if std::env::var_os("STRATA_REQUIRE_TOOLS").is_some() => {
            panic!("STRATA_TEST_SCHEMATHESIS is not set: run scripts/install-test-servers.sh")
        }
        _ => {
            eprintln!("skipped: schemathesis not installed (scripts/install-test-servers.sh)");
            None
        }
    }
}

/// A PostgreSQL server with `metrics.raw`, partitioned by day around today, for the table
/// retention routes.
fn tables_database() -> PgSite {
    let site = PgSite::new("strata-fuzz-tables");
    site.pg.psql(
        "postgres",
        "CREATE SCHEMA metrics;
         CREATE TABLE metrics.raw (ts timestamptz NOT NULL, v int) PARTITION BY RANGE (ts);
         DO $$ DECLARE d date; BEGIN
           FOR d IN SELECT generate_series(current_date - 40, current_date + 3, '1 day')::date LOOP
             EXECUTE format('CREATE TABLE metrics.%I PARTITION OF metrics.raw FOR VALUES FROM (%L) TO (%L)',
                            'raw_' || to_char(d, 'YYYYMMDD'), d, d + 1);
           END LOOP; END $$;",
    );
    site
}

#[test]
fn generated_requests_never_get_a_server_error_and_replies_match_the_schema() {
    let Some(schemathesis) = schemathesis() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The tables routes on a real database with policies, where PostgreSQL is installed.
    let pg = pg_available().then(tables_database);
    let tables = pg
        .as_ref()
        .map(|site| format!("[tables]\ndb = \"{}\"\n", site.dsn("postgres")))
        .unwrap_or_default();
    let config = one_node_site(
        dir.path(),
        // The fuzzer tries each operation once without a token too (it must get 401):
        // with more operations than the server lets one address fail in a minute, the
        // rest would be 429 for everything, authenticated or not.
        &format!(
            "[retention]\nkeep_last = 3\n[[schedules]]\njob = \"verify\"\ncron = \"0 4 * * 0\"\n\
             [server]\nauth_failures_per_minute = 1000\n{tables}"
        ),
    );
    let strata = || strata_with_token(dir.path(), &config, TOKEN);
    succeed(strata().arg("init"));
    succeed(strata().arg("backup"));
    if pg.is_some() {
        succeed(strata().args(["tables", "setup"]));
        succeed(strata().args(["ttl", "metrics.raw:ts", "delete", "30d", "--tag", "nightly"]));
        succeed(strata().args(["ttl", "metrics.raw:ts", "reallocate:pg_default", "7d"]));
    }
    succeed(strata().arg("backup"));
    let server = Server::start(strata(), &dir.path().join("server.log"));

    let report = dir.path().join("junit.xml");
    let out = Command::new(&schemathesis)
        .args(["run", &format!("{}/api/openapi.json", server.url)])
        .args(["--url", &server.url])
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance",
        ])
        .args(["--max-examples", "100", "--seed", "7"])
        .args(["--request-timeout", "60"])
        // An operation's event stream stays open for as long as the operation runs, which
        // a fuzzer cannot bound; control_plane.rs reads one from a held, running backup to
        // its final event (the_event_stream_follows_a_running_backup_to_its_end_...).
        .args(["--exclude-path-regex", ".*/events$"])
        .args(["--report", "junit", "--report-junit-path"])
        .arg(&report)
        .arg("--no-color")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{stderr}\nserver log:\n{log}"
    );
    println!("{stdout}");
    // It really generated requests, and the server still answers.
    let generated: u64 = stdout
        .lines()
        .find(|l| l.contains(" generated, "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(generated > 500, "too few test cases: {stdout}");
    let status = http(&server.url, "GET", "/api/v1/status", Some(TOKEN), "");
    assert_eq!(status.status, 200, "{}", status.body);
}
