//! The engine's use cases against a real PostgreSQL 15, without the `strata` binary: the
//! one way the CLI and the scheduler open an engine (`[tables]` with a command line's
//! choices), a scheduled run (recorded as `scheduler:JOB`, its line, a storage that cannot
//! be opened), and loading an archive back, audited where the policy tables are and
//! working where they are not. The commands themselves are tested through the binary in
//! `crates/strata/tests/tables.rs`. Skipped, loudly, where PostgreSQL 15 is not installed
//! (`scripts/test.sh` installs it); `STRATA_REQUIRE_POSTGRES` turns a skip into a failure.

use std::sync::Arc;
use strata_store::{DynStore, LocalStore};
use strata_tables::config::TablesConfig;
use strata_tables::{
    named_storages, run_scheduled, ActionArgs, Engine, PolicyArgs, TableName, TablesError,
};
use strata_testkit::pg::{skip_without_postgres, PgSite};

/// `metrics.TABLE`, partitioned by month over January to March 2025, a row each hour
/// (2160 rows).
fn monthly_table(site: &PgSite, table: &str) {
    let mut sql = format!(
        "CREATE SCHEMA IF NOT EXISTS metrics;
         CREATE TABLE metrics.{table} (ts timestamptz NOT NULL, value int) PARTITION BY RANGE (ts);"
    );
    for (m, next) in [("01", "02"), ("02", "03"), ("03", "04")] {
        sql.push_str(&format!(
            "CREATE TABLE metrics.{table}_2025_{m} PARTITION OF metrics.{table}
               FOR VALUES FROM ('2025-{m}-01') TO ('2025-{next}-01');"
        ));
    }
    sql.push_str(&format!(
        "INSERT INTO metrics.{table} SELECT t, 1 FROM generate_series('2025-01-01'::timestamptz, '2025-03-31 23:00+00', '1 hour') t;"
    ));
    site.pg.psql("postgres", &sql);
}

/// `[tables]` naming the site's database, the rest default.
fn section(site: &PgSite) -> TablesConfig {
    TablesConfig {
        db: Some(site.dsn("postgres")),
        ..TablesConfig::default()
    }
}

/// An archive policy of `metrics.TABLE` to storage `target` after 30 days, tagged `tag`.
async fn archive_policy(engine: &Engine, table: &str, target: &str, tag: &str) {
    let spec = PolicyArgs {
        table: format!("metrics.{table}"),
        column: "ts".into(),
        action: "archive".into(),
        after: "30d".into(),
        tags: vec![tag.into()],
        options: ActionArgs {
            target: Some(target.into()),
            ..ActionArgs::default()
        },
        ..PolicyArgs::default()
    }
    .spec()
    .unwrap();
    engine.add(&spec).await.unwrap();
}

#[test]
fn an_engine_opens_on_the_section_with_the_command_line_choices() {
    if skip_without_postgres() {
        return;
    }
    let site = PgSite::new("strata-tables-open");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // No database anywhere: a usage error naming where to give one.
        let err = Engine::open(&TablesConfig::default(), None)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, TablesError::NoDatabase), "{err}");
        assert!(err.is_bad_input() && err.to_string().contains("--db DSN"));

        // `--schema` beats `[tables] schema`; `who` defaults to the database user.
        let tables = section(&site).overridden(None, Some("retention".into()), None);
        let engine = Engine::open(&tables, None).await.unwrap();
        assert_eq!(engine.catalog().schema(), "retention");
        assert_eq!(engine.who(), "postgres");
        engine.setup().await.unwrap();
        let schemas = site.pg.psql(
            "postgres",
            "SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace WHERE nspname IN ('retention', 'strata')",
        );
        assert_eq!(schemas.trim(), "retention", "only the chosen schema is set up");

        let engine = Engine::open(&section(&site), Some("alice".into()))
            .await
            .unwrap();
        assert_eq!(
            (engine.catalog().schema(), engine.who()),
            ("strata", "alice")
        );
    });
}

#[test]
fn scheduled_runs_and_loads_go_through_the_engine_and_are_recorded() {
    if skip_without_postgres() {
        return;
    }
    let site = PgSite::new("strata-tables-usecases");
    monthly_table(&site, "raw");
    monthly_table(&site, "other");
    let store: DynStore = Arc::new(LocalStore::new(site.path("cold")));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let engine = Engine::open(&section(&site), None).await.unwrap();
        engine.setup().await.unwrap();
        archive_policy(&engine, "raw", "cold", "nightly").await;
        archive_policy(&engine, "other", "gone", "broken").await;
        let stores = named_storages(|name: &str| match name {
            "cold" => Ok(store.clone()),
            _ => Err(std::io::Error::other(format!("no storage named {name}"))),
        });

        // January and February have expired; March, the newest partition, stays.
        let report = run_scheduled(&section(&site), "night", &["nightly".into()], &stores)
            .await
            .unwrap();
        let line = report.job_result().unwrap();
        assert!(line.ends_with(": done (1 tables, 2 steps)"), "{line}");
        let who = site
            .pg
            .psql("postgres", "SELECT string_agg(DISTINCT who, ',') FROM strata.run");
        assert_eq!(who.trim(), "scheduler:night");

        // A storage that cannot be opened fails the job with the reason, and keeps the data.
        let report = run_scheduled(&section(&site), "night", &["broken".into()], &stores)
            .await
            .unwrap();
        let err = report.job_result().unwrap_err();
        assert!(err.contains(": failed (1 tables"), "{err}");
        assert!(
            err.contains("storage \"gone\": no storage named gone"),
            "{err}"
        );
        let left = site.pg.psql("postgres", "SELECT count(*) FROM metrics.other");
        assert_eq!(left.trim(), "2160", "nothing lost");

        let mut archives = strata_tables::archive::list_archives(&store).await.unwrap();
        archives.sort();
        assert_eq!(archives.len(), 2, "{archives:?}");
        assert!(archives[0].ends_with("raw_2025_01"), "{archives:?}");

        // Back into the parent: January's partition is recreated and the load audited.
        let into = TableName::parse("metrics.raw").unwrap();
        let mut engine = Engine::open(&section(&site), Some("alice".into()))
            .await
            .unwrap();
        let loaded = engine
            .load_archive(&store, &archives[0], &into, false)
            .await
            .unwrap();
        assert_eq!((loaded.rows, loaded.created_partition), (31 * 24, true));
        assert_eq!(loaded.into, "metrics.raw_2025_01");
        assert_eq!(
            loaded.recreated(),
            " (partition metrics.raw_2025_01 of metrics.raw recreated)"
        );
        let audit = site.pg.psql(
            "postgres",
            "SELECT who || '|' || table_name || '|' || detail FROM strata.audit WHERE what = 'load'",
        );
        assert_eq!(
            audit.trim(),
            format!(
                "alice|metrics.raw_2025_01|744 rows from {} (partition metrics.raw_2025_01 of metrics.raw recreated)",
                archives[0]
            )
        );
        // `strata load --json` prints exactly these fields.
        let json = serde_json::to_value(&loaded).unwrap();
        let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["archive", "created_partition", "into", "rows"]);

        // Where the policy tables are not set up, a load still works (nothing to audit).
        let elsewhere = section(&site).overridden(None, Some("nowhere".into()), None);
        let mut engine = Engine::open(&elsewhere, None).await.unwrap();
        let loaded = engine
            .load_archive(&store, &archives[1], &into, false)
            .await
            .unwrap();
        assert_eq!(loaded.rows, 28 * 24);
        let count = site.pg.psql("postgres", "SELECT count(*) FROM metrics.raw");
        assert_eq!(count.trim(), "2160", "every row is back");
    });
}
