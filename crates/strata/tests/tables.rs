//! Table retention against real PostgreSQL 15 servers the tests create with initdb,
//! through the real `strata` binary: range-partitioned tables with a year of generated
//! rows, planned, dry-run, and run for delete, detach, reallocate and archive (then loaded
//! back); runs interrupted between export and drop, concurrent runs, hostile identifiers
//! and option values, and bad input. Skipped, loudly, where PostgreSQL 15 is not
//! installed (`scripts/test.sh` installs it).

#[path = "tables/api.rs"]
mod api;
use crate::common;
use crate::servers;

use common::pgserver::*;
use common::Site;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// A running server and a scratch directory (the kit's [`PgSite`]) and the strata command
/// for a config there with a `cold` storage.
struct TablesSite {
    site: PgSite,
    cli: Site,
}

impl std::ops::Deref for TablesSite {
    type Target = PgSite;
    fn deref(&self) -> &PgSite {
        &self.site
    }
}

impl TablesSite {
    fn new() -> TablesSite {
        let site = PgSite::new("strata-tables");
        let cli = Site::new()
            .whole_config(&format!(
                "default_storage = \"cold\"\n[storages.cold]\npath = \"{}\"\n",
                site.path("cold").display()
            ))
            .env("STRATA_TABLES_DB", &site.dsn("postgres"))
            .build_in(site.dir.path());
        TablesSite { site, cli }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.cli.command();
        cmd.args(args);
        cmd
    }

    fn strata(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs strata, expects `code`, returns stdout.
    fn expect(&self, code: i32, args: &[&str]) -> String {
        let out = self.strata(args);
        let text = format!(
            "strata {args:?} exited {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(code), "{text}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn ok(&self, args: &[&str]) -> String {
        self.expect(0, args)
    }

    fn sql(&self, sql: &str) -> String {
        self.pg.psql("postgres", sql)
    }

    /// A table like `metrics.raw` partitioned by month over 2025, with a default
    /// partition, an hourly row each hour of the year and awkward notes.
    fn monthly_table(&self, schema: &str, table: &str) {
        let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let full = format!("{}.{}", q(schema), q(table));
        let mut sql = format!(
            "CREATE SCHEMA IF NOT EXISTS {s};
             CREATE TABLE {full} (ts timestamptz NOT NULL, value int, note text) PARTITION BY RANGE (ts);
             CREATE INDEX ON {full} (ts);
             CREATE TABLE {s}.{def} PARTITION OF {full} DEFAULT;",
            s = q(schema),
            def = q(&format!("{table}_default")),
        );
        for m in 1..=12 {
            let (from, to) = (
                format!("2025-{m:02}-01"),
                if m == 12 {
                    "2026-01-01".to_string()
                } else {
                    format!("2025-{:02}-01", m + 1)
                },
            );
            sql.push_str(&format!(
                "CREATE TABLE {}.{} PARTITION OF {full} FOR VALUES FROM ('{from}') TO ('{to}');",
                q(schema),
                q(&format!("{table}_2025_{m:02}"))
            ));
        }
        sql.push_str(&format!(
            "INSERT INTO {full} SELECT t, i % 1000,
                CASE WHEN i % 7 = 0 THEN E'comma, \"quote\"\\nnew line ü' WHEN i % 11 = 0 THEN NULL ELSE 'n' || i END
             FROM generate_series('2025-01-01'::timestamptz, '2025-12-31 23:00+00', '1 hour') WITH ORDINALITY AS g(t, i);"
        ));
        self.sql(&sql);
    }

    /// What `sql` returns once a scheduled run of the server (logging to `server.log`)
    /// made it return anything: waited for up to a minute.
    fn scheduled(&self, sql: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let rows = self.sql(sql);
            if !rows.is_empty() {
                return rows;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no scheduled run gave {sql:?}: {}",
                std::fs::read_to_string(self.path("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `sql` in a psql session of its own, in the background: a lock holder, a late writer.
    fn background_sql(&self, sql: &str) -> std::process::Child {
        let mut cmd = Command::new(Path::new(PG_BIN).join("psql"));
        cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.pg.socket_dir)
            .args([
                "-p",
                &self.pg.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
            ])
            .arg(sql)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        as_postgres(&mut cmd).spawn().unwrap()
    }

    /// md5 over a table's rows in a fixed order.
    fn checksum(&self, table_sql: &str, filter: &str) -> String {
        self.sql(&format!(
            "SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM {table_sql} t {filter}"
        ))
    }

    /// The partitions of a table, by name.
    fn partitions(&self, table_sql: &str) -> Vec<String> {
        self.sql(&format!(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = '{}'::regclass ORDER BY 1",
            table_sql.replace('\'', "''")
        ))
        .lines()
        .map(str::to_string)
        .collect()
    }
}

fn months(table: &str, range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    range.map(|m| format!("{table}_2025_{m:02}")).collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// One line on stderr, `strata: error: ...`, no panic.
fn assert_one_line_error(out: &Output, code: i32, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.starts_with("strata: error: "), "{err}");
    assert!(err.contains(needle), "{needle:?} not in {err}");
}

#[test]
fn delete_detach_and_reallocate_act_on_exactly_the_expired_partitions() {
    if skip_without_postgres() {
        return;
    }
    let site = TablesSite::new();
    for table in ["raw_del", "raw_det", "raw_mov"] {
        site.monthly_table("metrics", table);
    }
    site.sql("CREATE TABLE metrics.events (id bigserial, at timestamp NOT NULL, what text); INSERT INTO metrics.events (at, what) SELECT t, 'e' FROM generate_series('2025-01-01'::timestamp, '2025-12-31', '1 hour') t");
    let space = site.path("slow");
    std::fs::create_dir_all(&space).unwrap();
    chown_to_postgres(&space);
    site.sql(&format!(
        "CREATE TABLESPACE slow LOCATION '{}'",
        space.display()
    ));

    site.ok(&["tables", "setup"]);
    site.ok(&["tables", "setup"]); // again: idempotent
    site.ok(&[
        "tables",
        "add",
        "--table",
        "metrics.raw_del",
        "--column",
        "ts",
        "--action",
        "delete",
        "--after",
        "90d",
        "--tag",
        "metrics",
    ]);
    site.ok(&[
        "tables",
        "add",
        "--table",
        "metrics.raw_det",
        "--column",
        "ts",
        "--action",
        "detach",
        "--after",
        "90d",
        "--archive-schema",
        "old",
        "--tag",
        "metrics",
    ]);
    site.ok(&[
        "ttl",
        "metrics.raw_mov:ts",
        "reallocate:slow",
        "30d",
        "--tag",
        "metrics",
        "--tag",
        "tier",
    ]);
    site.ok(&[
        "tables",
        "add",
        "--table",
        "metrics.events",
        "--column",
        "at",
        "--action",
        "delete",
        "--after",
        "12w",
    ]);
    let list = site.ok(&["tables", "list", "--tag", "tier"]);
    assert!(
        list.contains("raw_mov") && !list.contains("raw_del"),
        "{list}"
    );
    let list: serde_json::Value =
        serde_json::from_str(&site.ok(&["--json", "tables", "list"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 4);

    // Cutoff 2025-10-15: 90 days back is 2025-07-17, so January to June (upper bound by
    // July 1) have expired, July (upper bound August 1) has not though it starts before.
    // 30 days back is 2025-09-15: January to August.
    let cutoff = "2025-10-15";
    let window = |t: &str| site.checksum(t, "WHERE ts >= '2025-07-01'");
    let before: Vec<String> = ["metrics.raw_del", "metrics.raw_det", "metrics.raw_mov"]
        .iter()
        .map(|t| window(t))
        .collect();
    let events_before = site.sql("SELECT count(*) FROM metrics.events WHERE at >= '2025-07-23'");

    let plan: serde_json::Value =
        serde_json::from_str(&site.ok(&["--json", "tables", "plan", "--cutoff", cutoff])).unwrap();
    let steps_of = |table: &str| -> Vec<String> {
        let entry = plan
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["table"] == table)
            .unwrap();
        entry["plan"]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["partition"].as_str().unwrap_or("rows").to_string())
            .collect()
    };
    let qualified = |t: &str, r| {
        months(t, r)
            .into_iter()
            .map(|p| format!("metrics.{p}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(steps_of("metrics.raw_del"), qualified("raw_del", 1..=6));
    assert_eq!(steps_of("metrics.raw_det"), qualified("raw_det", 1..=6));
    assert_eq!(steps_of("metrics.raw_mov"), qualified("raw_mov", 1..=8));
    assert_eq!(steps_of("metrics.events"), ["rows"]);
    let sizes: Vec<i64> = plan[1]["plan"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["bytes"].as_i64().unwrap())
        .collect();
    assert!(sizes.iter().all(|b| *b > 8192), "{sizes:?}");
    let text = site.ok(&["tables", "plan", "--cutoff", cutoff, "--tag", "metrics"]);
    assert!(
        text.contains("raw_del_2025_06") && text.contains("2025-07-01") && text.contains("KiB"),
        "{text}"
    );

    // A dry run changes nothing.
    let all_before: Vec<Vec<String>> = ["metrics.raw_del", "metrics.raw_det", "metrics.raw_mov"]
        .iter()
        .map(|t| site.partitions(t))
        .collect();
    let dry = site.ok(&["tables", "run", "--cutoff", cutoff, "--dry-run"]);
    assert!(dry.contains("raw_det_2025_03"), "{dry}");
    let all_after: Vec<Vec<String>> = ["metrics.raw_del", "metrics.raw_det", "metrics.raw_mov"]
        .iter()
        .map(|t| site.partitions(t))
        .collect();
    assert_eq!(all_before, all_after);
    assert_eq!(
        site.sql("SELECT count(*) FROM pg_tables WHERE tablespace = 'slow'"),
        "0"
    );
    assert_eq!(site.sql("SELECT count(*) FROM metrics.events"), "8737");

    let out = site.ok(&["tables", "run", "--cutoff", cutoff, "--who", "ops-cron"]);
    assert!(out.contains("done"), "{out}");

    // delete: exactly January..June gone, the rest (and the default) there.
    let mut expected = months("raw_del", 7..=12);
    expected.insert(0, "raw_del_default".into());
    expected.sort();
    assert_eq!(site.partitions("metrics.raw_del"), expected);
    assert_eq!(site.sql("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'raw_del_2025_0%' AND tablename < 'raw_del_2025_07'"), "0");
    // detach: the same partitions now live as tables in schema old, rows and all.
    let mut expected = months("raw_det", 7..=12);
    expected.insert(0, "raw_det_default".into());
    expected.sort();
    assert_eq!(site.partitions("metrics.raw_det"), expected);
    assert_eq!(
        site.sql("SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'old'"),
        months("raw_det", 1..=6).join(",")
    );
    assert_eq!(site.sql("SELECT count(*) FROM old.raw_det_2025_02"), "672");
    // reallocate: January..August (with their indexes) in slow, the rest not.
    assert_eq!(
        site.sql("SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE tablespace = 'slow'"),
        months("raw_mov", 1..=8).join(",")
    );
    assert_eq!(
        site.sql("SELECT count(*) FROM pg_indexes WHERE tablespace = 'slow'"),
        "8"
    );
    // Rows inside the window are untouched.
    let after: Vec<String> = ["metrics.raw_del", "metrics.raw_det", "metrics.raw_mov"]
        .iter()
        .map(|t| window(t))
        .collect();
    assert_eq!(before, after);
    assert_eq!(site.sql("SELECT count(*) FROM metrics.raw_mov"), "8760");
    // The unpartitioned table lost exactly the rows before the cutoff minus 12 weeks.
    assert_eq!(
        site.sql("SELECT count(*) FROM metrics.events WHERE at < '2025-07-23'"),
        "0"
    );
    assert_eq!(
        site.sql("SELECT count(*) FROM metrics.events WHERE at >= '2025-07-23'"),
        events_before
    );

    // Audited: who, what, outcome, partitions.
    assert_eq!(site.sql("SELECT count(*) FROM strata.audit WHERE what = 'run delete' AND outcome = 'done' AND who = 'ops-cron' AND array_length(partitions, 1) = 1"), "6");
    assert_eq!(
        site.sql(
            "SELECT count(*) FROM strata.audit WHERE what = 'run reallocate' AND outcome = 'done'"
        ),
        "8"
    );
    assert_eq!(
        site.sql("SELECT count(*) FROM strata.audit WHERE what = 'policy add'"),
        "4"
    );
    assert_eq!(
        site.sql("SELECT outcome FROM strata.run WHERE NOT dry_run"),
        "done"
    );

    // Again: nothing left to do.
    let out = site.ok(&["tables", "run", "--cutoff", cutoff]);
    assert!(out.contains("nothing has expired"), "{out}");

    // The floor: far in the future only the last partition stays... unless --keep says more.
    let list: serde_json::Value =
        serde_json::from_str(&site.ok(&["--json", "tables", "list", "--tag", "tier"])).unwrap();
    let id = list[0]["id"].as_i64().unwrap().to_string();
    site.ok(&["tables", "edit", &id, "--after", "INF"]);
    site.ok(&["tables", "edit", "1", "--keep", "3"]);
    site.ok(&[
        "tables",
        "run",
        "--cutoff",
        "2030-01-01",
        "--tag",
        "metrics",
    ]);
    assert_eq!(
        site.partitions("metrics.raw_del"),
        [
            "raw_del_2025_10",
            "raw_del_2025_11",
            "raw_del_2025_12",
            "raw_del_default"
        ]
    );
    assert_eq!(
        site.partitions("metrics.raw_det"),
        ["raw_det_2025_12", "raw_det_default"]
    );
    assert_eq!(
        site.sql("SELECT count(*) FROM strata.audit WHERE what = 'policy edit'"),
        "2"
    );
    site.ok(&["tables", "rm", "--tag", "metrics"]);
    assert_eq!(site.sql("SELECT count(*) FROM strata.policy"), "1");
}

#[test]
fn archive_then_load_returns_identical_rows_after_interrupted_and_killed_runs_and_late_writers() {
    if skip_without_postgres() {
        return;
    }
    let site = TablesSite::new();
    site.monthly_table("metrics", "raw");
    site.ok(&["tables", "setup"]);
    site.ok(&["ttl", "metrics.raw:ts", "archive:cold", "180d"]);
    let sums: Vec<String> = months("raw", 1..=6)
        .iter()
        .map(|p| site.checksum(&format!("metrics.{p}"), ""))
        .collect();
    // Cutoff 2026-01-01, 180 days: partitions ending by 2025-07-05: January to June.

    // Interrupted: a reader holds February, so its drop times out after the export.
    let mut locker = site.background_sql(
        "BEGIN; LOCK TABLE metrics.raw_2025_02 IN ACCESS SHARE MODE; SELECT pg_sleep(6); COMMIT;",
    );
    std::thread::sleep(Duration::from_millis(800));
    let out = site.strata(&[
        "tables",
        "run",
        "--cutoff",
        "2026-01-01",
        "--lock-timeout",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("raw_2025_02"), "{}", stderr(&out));
    // January went, February was exported but is still there, March was not tried.
    assert_eq!(site.partitions("metrics.raw")[0], "raw_2025_02");
    assert!(site
        .path("cold/tables/metrics/raw/metrics.raw_2025_02/archive.json")
        .exists());
    assert!(!site
        .path("cold/tables/metrics/raw/metrics.raw_2025_03")
        .exists());
    assert_eq!(
        site.sql(
            "SELECT count(*) FROM strata.audit WHERE what = 'run archive' AND outcome = 'failed'"
        ),
        "1"
    );
    locker.wait().unwrap();

    // Killed between export and drop: a reader holds March, so the run waits for its drop
    // lock once March's archive is complete; it is SIGKILLed there. Nothing is dropped.
    let mut locker = site.background_sql(
        "BEGIN; LOCK TABLE metrics.raw_2025_03 IN ACCESS SHARE MODE; SELECT pg_sleep(120); COMMIT;",
    );
    std::thread::sleep(Duration::from_millis(800));
    let mut run = site
        .command(&["tables", "run", "--cutoff", "2026-01-01"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let march = site.path("cold/tables/metrics/raw/metrics.raw_2025_03/archive.json");
    let waiting = std::time::Instant::now();
    while !march.exists() {
        assert!(
            waiting.elapsed() < Duration::from_secs(60) && run.try_wait().unwrap().is_none(),
            "the run neither wrote March's archive nor kept waiting"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    run.kill().unwrap();
    run.wait().unwrap();
    site.sql("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(120)%' AND pid <> pg_backend_pid()");
    locker.wait().unwrap();
    assert_eq!(
        site.partitions("metrics.raw")[..2],
        ["raw_2025_03".to_string(), "raw_2025_04".to_string()],
        "February went, March stays"
    );
    assert_eq!(site.checksum("metrics.raw_2025_03", ""), sums[2]);

    // Run again while a late writer holds March with a row not yet committed: the run
    // waits for it (the export locks the partition before its snapshot), so the row is
    // archived, not dropped unseen.
    let mut writer = site.background_sql("BEGIN; INSERT INTO metrics.raw_2025_03 VALUES ('2025-03-14 12:30+00', -1, 'late writer'); SELECT pg_sleep(3); COMMIT;");
    std::thread::sleep(Duration::from_millis(800));
    // Run again: everything expired is archived and dropped, nothing lost.
    site.ok(&["tables", "run", "--cutoff", "2026-01-01"]);
    assert!(writer.wait().unwrap().success());
    let mut expected = months("raw", 7..=12);
    expected.push("raw_default".into());
    assert_eq!(site.partitions("metrics.raw"), expected);
    let archives = site.ok(&["tables", "archives"]);
    assert_eq!(archives.lines().count(), 6, "{archives}");

    for (i, partition) in months("raw", 1..=6).iter().enumerate() {
        let archive = format!("tables/metrics/raw/metrics.{partition}");
        assert!(archives.contains(&archive), "{archives}");
        let target = format!("restored.{partition}");
        site.sql(&format!(
            "CREATE SCHEMA IF NOT EXISTS restored; CREATE TABLE {target} (LIKE metrics.raw)"
        ));
        let out = site.ok(&["load", &archive, "--into", &target, "--from", "cold"]);
        assert!(out.contains("loaded"), "{out}");
        let late = "WHERE note IS DISTINCT FROM 'late writer'";
        assert_eq!(site.checksum(&target, late), sums[i], "{partition}");
    }
    assert_eq!(
        site.sql("SELECT count(*) FROM restored.raw_2025_03 WHERE note = 'late writer'"),
        "1"
    );
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(site.path("cold/tables/metrics/raw/metrics.raw_2025_03/archive.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["rows"], 31 * 24 + 1, "with the late writer's row");
    assert_eq!(manifest["columns"][0]["type"], "timestamp with time zone");

    // A damaged archive loads nothing.
    let part = site.path("cold/tables/metrics/raw/metrics.raw_2025_03/data.csv.zst.000000");
    let mut data = std::fs::read(&part).unwrap();
    let middle = data.len() / 2;
    data[middle] ^= 0x55;
    std::fs::write(&part, data).unwrap();
    site.sql("CREATE TABLE restored.again (LIKE metrics.raw)");
    let out = site.strata(&[
        "load",
        "tables/metrics/raw/metrics.raw_2025_03",
        "--into",
        "restored.again",
    ]);
    assert_one_line_error(&out, 1, "raw_2025_03");
    assert_eq!(site.sql("SELECT count(*) FROM restored.again"), "0");
}

/// The Python with pyarrow, the independent Parquet reader of the tests.
fn pyarrow_python() -> Option<String> {
    strata_testkit::python_with("pyarrow.parquet")
}

/// Reads every `*.parquet` of an archive directory with pyarrow and prints, as JSON, the
/// Parquet schema, the row count, strata's metadata and the rows with `id < 1000` in id
/// order: dates as days and timestamps as microseconds since 1970-01-01 (Python's
/// datetime cannot hold PostgreSQL's years), floats as their bits.
const READ_WITH_PYARROW: &str = r#"
import glob, json, sys
import pyarrow as pa, pyarrow.compute as pc, pyarrow.parquet as pq
files = sorted(glob.glob(sys.argv[1] + "/*.parquet"))
schema = pq.ParquetFile(files[0]).schema
columns = [
    {"name": schema.column(i).name, "physical": schema.column(i).physical_type,
     "logical": str(schema.column(i).logical_type),
     "max_def": schema.column(i).max_definition_level}
    for i in range(len(schema))
]
table = pa.concat_tables([pq.read_table(f) for f in files])
picked = table.filter(pc.less(table["id"], 1000)).sort_by("id")
values = {}
for name in picked.column_names:
    col = picked[name].combine_chunks()
    if pa.types.is_timestamp(col.type):
        col = col.cast(pa.int64())
    elif pa.types.is_date32(col.type):
        col = col.cast(pa.int32())
    elif pa.types.is_float32(col.type):
        col = col.view(pa.int32())
    elif pa.types.is_float64(col.type):
        col = col.view(pa.int64())
    values[name] = col.to_pylist()
meta = pq.ParquetFile(files[0]).schema_arrow.metadata or {}
print(json.dumps({"files": len(files), "rows": table.num_rows, "columns": columns,
                  "strata_columns": json.loads(meta.get(b"strata.columns", b"null")),
                  "values": values}))
"#;

/// A partitioned table with a column of every mapped type and some that go as text: five
/// hand-written rows of edge values (ids 1-5) and 20,000 generated ones, in 2024.
const TYPED_TABLE: &str = r#"
CREATE SCHEMA m;
CREATE TABLE m.ev (id int, ts timestamptz NOT NULL, i2 smallint, i4 int, i8 bigint, f4 real,
    f8 double precision, b boolean, d date, t timestamp, s text, c char(4), n numeric,
    j jsonb, ip inet, "odd ""col"" ü" text) PARTITION BY RANGE (ts);
CREATE TABLE m.ev_2024 PARTITION OF m.ev FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE m.ev_2026 PARTITION OF m.ev FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO m.ev VALUES
 (1, '2024-03-01 12:34:56.123456+00', -32768, -2147483648, -9223372036854775808, 'NaN',
  'Infinity', true, '0044-03-15 BC', '4713-01-01 00:00:00 BC',
  E'tab\there\nnew "q" \\ back ü', 'ab', 1.50, '{"a": [1, "x"]}', '10.0.0.1', 'x'),
 (2, '2024-06-01 00:00:00+00', 32767, 2147483647, 9223372036854775807, '-Infinity', '-0',
  false, 'infinity', 'infinity', '', '', 'NaN', 'null', '::1', '€'),
 (3, '2024-12-31 23:59:59.999999+00', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL),
 (4, '2024-07-01 00:00:00+00', 1, 1, 1, 3.4028235e38, 2.2250738585072014e-308, true,
  '5874897-12-31', '294246-01-01 00:00:00.000001', 'comma, "quote"', 'abcd',
  123456789012345678901234567890.123456789, '"s"', '192.168.0.0/16', ''),
 (5, '2024-07-02 00:00:00+00', 0, 0, 0, 0.1, 'NaN', false, '-infinity', '-infinity',
  'ü€😀', 'x', -0.000001, '{}', '10.0.0.0/8', '''; DROP TABLE m.ev; --');
INSERT INTO m.ev SELECT g, '2024-01-01'::timestamptz + g * interval '1 minute' + g * interval '1 microsecond',
  (g % 30000 - 15000)::smallint, g * 7, g::bigint * 1000003 * (1 - 2 * (g % 2)), g / 7.0,
  g / 3.0e7, g % 3 = 0, '2024-01-01'::date - g, timestamp '2024-01-01' + g * interval '1.5 second',
  CASE WHEN g % 5 = 0 THEN NULL ELSE md5(g::text) || E'\t"' || 'ü' END, (g % 10)::text,
  g * 1.001, jsonb_build_object('g', g, 'h', 'host-' || g % 50), ('10.0.' || g % 256 || '.1')::inet,
  repeat('x', g % 50)
FROM generate_series(1000, 20999) g;
"#;

#[test]
fn parquet_archives_are_typed_read_by_pyarrow_and_load_back_identically() {
    if skip_without_postgres() {
        return;
    }
    let site = TablesSite::new();
    site.sql(TYPED_TABLE);
    let original = site.sql("COPY (SELECT * FROM m.ev_2024 ORDER BY id) TO STDOUT");
    site.ok(&["tables", "setup"]);
    site.ok(&[
        "tables", "add", "--table", "m.ev", "--column", "ts", "--action", "archive", "--target",
        "cold", "--after", "365d", "--format", "parquet",
    ]);
    let list = site.ok(&["tables", "list"]);
    assert!(list.contains("parquet"), "{list}");
    let policies: serde_json::Value =
        serde_json::from_str(&site.ok(&["--json", "tables", "list"])).unwrap();
    assert_eq!(policies[0]["archive_format"], "parquet");
    let plan = site.ok(&["tables", "plan", "--cutoff", "2026-06-01"]);
    assert!(plan.contains("archive to cold as parquet"), "{plan}");

    let out = site.ok(&["tables", "run", "--cutoff", "2026-06-01"]);
    assert!(out.contains("as parquet (20005 rows"), "{out}");
    assert_eq!(site.partitions("m.ev"), ["ev_2026"]);
    let dir = site.path("cold/tables/m/ev/m.ev_2024");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("archive.json")).unwrap()).unwrap();
    assert_eq!(manifest["data_format"], "parquet");
    assert_eq!(manifest["version"], 2);
    assert_eq!(manifest["rows"], 20005);
    let parts = manifest["parts"].as_array().unwrap();
    assert!(!parts.is_empty());
    assert!(parts
        .iter()
        .all(|p| p.as_str().unwrap().ends_with(".parquet")));

    if let Some(python) = pyarrow_python() {
        let script = site.path("read.py");
        std::fs::write(&script, READ_WITH_PYARROW).unwrap();
        let out = Command::new(python)
            .arg(&script)
            .arg(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let read: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(read["rows"], 20005);
        assert_eq!(read["files"], parts.len());
        assert_eq!(read["strata_columns"], manifest["columns"]);
        let expected_types = [
            ("id", "INT32", "None"),
            (
                "ts",
                "INT64",
                "Timestamp(isAdjustedToUTC=true, timeUnit=microseconds",
            ),
            ("i2", "INT32", "Int(bitWidth=16, isSigned=true)"),
            ("i4", "INT32", "None"),
            ("i8", "INT64", "None"),
            ("f4", "FLOAT", "None"),
            ("f8", "DOUBLE", "None"),
            ("b", "BOOLEAN", "None"),
            ("d", "INT32", "Date"),
            (
                "t",
                "INT64",
                "Timestamp(isAdjustedToUTC=false, timeUnit=microseconds",
            ),
            ("s", "BYTE_ARRAY", "String"),
            ("c", "BYTE_ARRAY", "String"),
            ("n", "BYTE_ARRAY", "String"),
            ("j", "BYTE_ARRAY", "String"),
            ("ip", "BYTE_ARRAY", "String"),
            ("odd \"col\" ü", "BYTE_ARRAY", "String"),
        ];
        let columns = read["columns"].as_array().unwrap();
        assert_eq!(columns.len(), expected_types.len());
        for (column, (name, physical, logical)) in columns.iter().zip(expected_types) {
            assert_eq!(column["name"], name);
            assert_eq!(column["physical"], physical, "{name}");
            assert!(
                column["logical"].as_str().unwrap().starts_with(logical),
                "{name}: {column}"
            );
            assert_eq!(column["max_def"], 1, "{name} is optional");
        }
        let values = &read["values"];
        assert_eq!(values["id"], serde_json::json!([1, 2, 3, 4, 5]));
        // Microseconds since 1970-01-01 UTC.
        assert_eq!(
            values["ts"],
            serde_json::json!([
                1_709_296_496_123_456i64,
                1_717_200_000_000_000i64,
                1_735_689_599_999_999i64,
                1_719_792_000_000_000i64,
                1_719_878_400_000_000i64
            ])
        );
        assert_eq!(values["i2"], serde_json::json!([-32768, 32767, null, 1, 0]));
        assert_eq!(
            values["i4"],
            serde_json::json!([i32::MIN, i32::MAX, null, 1, 0])
        );
        assert_eq!(
            values["i8"],
            serde_json::json!([i64::MIN, i64::MAX, null, 1, 0])
        );
        let f4 = |bits: &serde_json::Value| bits.as_i64().map(|b| f32::from_bits(b as i32 as u32));
        let got: Vec<_> = values["f4"].as_array().unwrap().iter().map(f4).collect();
        assert!(got[0].unwrap().is_nan());
        assert_eq!(
            got[1..],
            [Some(f32::NEG_INFINITY), None, Some(f32::MAX), Some(0.1f32)]
        );
        let f8 = |bits: &serde_json::Value| bits.as_i64().map(|b| f64::from_bits(b as u64));
        let got: Vec<_> = values["f8"].as_array().unwrap().iter().map(f8).collect();
        assert_eq!(got[0], Some(f64::INFINITY));
        assert!(got[1].unwrap() == 0.0 && got[1].unwrap().is_sign_negative());
        assert_eq!(got[2..4], [None, Some(f64::MIN_POSITIVE)]);
        assert!(got[4].unwrap().is_nan());
        assert_eq!(
            values["b"],
            serde_json::json!([true, false, null, true, false])
        );
        // Days since 1970-01-01; infinities as PostgreSQL encodes them.
        assert_eq!(
            values["d"],
            serde_json::json!([-735_160, i32::MAX, null, 2_145_042_905, i32::MIN])
        );
        assert_eq!(
            values["t"],
            serde_json::json!([
                -210_863_520_000_000_000i64,
                i64::MAX,
                null,
                9_223_339_708_800_000_001i64,
                i64::MIN
            ])
        );
        assert_eq!(
            values["s"],
            serde_json::json!([
                "tab\there\nnew \"q\" \\ back ü",
                "",
                null,
                "comma, \"quote\"",
                "ü€😀"
            ])
        );
        assert_eq!(
            values["c"],
            serde_json::json!(["ab  ", "    ", null, "abcd", "x   "])
        );
        assert_eq!(
            values["n"],
            serde_json::json!([
                "1.50",
                "NaN",
                null,
                "123456789012345678901234567890.123456789",
                "-0.000001"
            ])
        );
        assert_eq!(
            values["j"],
            serde_json::json!(["{\"a\": [1, \"x\"]}", "null", null, "\"s\"", "{}"])
        );
        assert_eq!(
            values["ip"],
            serde_json::json!(["10.0.0.1", "::1", null, "192.168.0.0/16", "10.0.0.0/8"])
        );
        assert_eq!(
            values["odd \"col\" ü"],
            serde_json::json!(["x", "€", null, "", "'; DROP TABLE m.ev; --"])
        );
    }

    // Loaded back, every row is the same, byte for byte in PostgreSQL's own output.
    site.sql("CREATE SCHEMA restored; CREATE TABLE restored.ev (LIKE m.ev)");
    let out = site.ok(&["load", "tables/m/ev/m.ev_2024", "--into", "restored.ev"]);
    assert!(out.contains("loaded 20005 rows"), "{out}");
    let restored = site.sql("COPY (SELECT * FROM restored.ev ORDER BY id) TO STDOUT");
    assert!(original.lines().count() == 20005);
    assert!(original == restored, "the restored rows differ");

    // A damaged part loads nothing.
    let part = dir.join(parts[0].as_str().unwrap());
    let mut data = std::fs::read(&part).unwrap();
    let middle = data.len() / 2;
    data[middle] ^= 0x55;
    std::fs::write(&part, data).unwrap();
    site.sql("CREATE TABLE restored.again (LIKE m.ev)");
    let out = site.strata(&["load", "tables/m/ev/m.ev_2024", "--into", "restored.again"]);
    assert_one_line_error(&out, 1, "m.ev_2024");
    assert_eq!(site.sql("SELECT count(*) FROM restored.again"), "0");

    // A timestamp Parquet cannot hold fails the export and keeps the partition; an
    // earlier archive of it is no longer listed as complete.
    site.sql(
        "CREATE TABLE m.ev_2023 PARTITION OF m.ev FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
              INSERT INTO m.ev (id, ts, t) VALUES (1, '2023-05-05+00', '294250-01-01 00:00:00')",
    );
    let earlier = site.path("cold/tables/m/ev/m.ev_2023");
    std::fs::create_dir_all(&earlier).unwrap();
    std::fs::copy(dir.join("archive.json"), earlier.join("archive.json")).unwrap();
    let out = site.strata(&["tables", "run", "--cutoff", "2026-06-01"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("294247-01-10"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    assert_eq!(site.partitions("m.ev"), ["ev_2023", "ev_2026"]);
    assert!(!earlier.join("archive.json").exists());
    let archives = site.ok(&["tables", "archives"]);
    assert!(!archives.contains("ev_2023"), "{archives}");
}

#[test]
fn policy_tables_from_before_archive_formats_keep_working() {
    if skip_without_postgres() {
        return;
    }
    let site = TablesSite::new();
    site.monthly_table("metrics", "raw");
    site.ok(&["tables", "setup"]);
    // Policy tables as an earlier strata set them up: no archive_format column.
    site.sql("ALTER TABLE strata.policy DROP COLUMN archive_format");
    site.ok(&["ttl", "metrics.raw:ts", "archive:cold", "180d"]);
    let list = site.ok(&["tables", "list"]);
    assert!(list.contains("csv"), "{list}");
    site.ok(&["tables", "edit", "1", "--after", "200d"]);
    let out = site.strata(&["tables", "edit", "1", "--format", "parquet"]);
    assert_one_line_error(&out, 2, "run `strata tables setup` again");
    // `setup` upgrades them; the policy stays, as CSV.
    site.ok(&["tables", "setup"]);
    let list = site.ok(&["tables", "list"]);
    assert!(list.contains("csv") && list.contains("200d"), "{list}");
    let out = site.ok(&["tables", "edit", "1", "--format", "parquet"]);
    assert!(out.contains("format parquet"), "{out}");
    site.ok(&["tables", "run", "--cutoff", "2026-01-01"]);
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(site.path("cold/tables/metrics/raw/metrics.raw_2025_01/archive.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["data_format"], "parquet");
    // And back to CSV.
    site.ok(&["tables", "edit", "1", "--format", "csv"]);
    assert_eq!(
        site.sql("SELECT archive_format FROM strata.policy WHERE id = 1"),
        "csv"
    );
    let out = site.strata(&["tables", "edit", "1", "--format", "orc"]);
    assert_one_line_error(&out, 2, "unknown archive format \"orc\"");
    let out = site.strata(&[
        "ttl",
        "metrics.raw:ts",
        "delete",
        "1y",
        "--format",
        "parquet",
    ]);
    assert_one_line_error(&out, 2, "--format is for archive");
}

#[test]
fn concurrent_runs_never_both_act_on_a_table() {
    if skip_without_postgres() {
        return;
    }
    let site = TablesSite::new();
    site.monthly_table("metrics", "raw");
    site.ok(&["tables", "setup"]);
    site.ok(&[
        "tables",
        "add",
        "--table",
        "metrics.raw",
        "--column",
        "ts",
        "--action",
        "delete",
        "--after",
        "90d",
    ]);

    // Another session holds the table's lock: the run touches nothing and exits 6.
    let mut holder = site.background_sql("SELECT pg_advisory_lock((x'53545441'::bigint << 32) | 'metrics.raw'::regclass::oid::bigint), pg_sleep(4)");
    std::thread::sleep(Duration::from_millis(800));
    let out = site.strata(&["tables", "run", "--cutoff", "2025-10-15"]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("another run holds the lock"),
        "{}",
        stderr(&out)
    );
    assert_eq!(site.partitions("metrics.raw").len(), 13);
    holder.wait().unwrap();

    // Two runs at once: each partition is dropped by exactly one of them.
    let runs: Vec<_> = (0..2)
        .map(|_| {
            site.command(&["tables", "run", "--cutoff", "2025-10-15"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for run in runs {
        let out = run.wait_with_output().unwrap();
        assert!(matches!(out.status.code(), Some(0 | 6)), "{}", stderr(&out));
    }
    assert_eq!(site.partitions("metrics.raw").len(), 7);
    assert_eq!(
        site.sql(
            "SELECT count(*) FROM strata.audit WHERE what = 'run delete' AND outcome = 'done'"
        ),
        "6"
    );
    assert_eq!(
        site.sql(
            "SELECT count(*) FROM strata.audit WHERE what = 'run delete' AND outcome <> 'done'"
        ),
        "0"
    );
    assert_eq!(
        site.sql("SELECT count(*) FROM metrics.raw WHERE ts >= '2025-07-01'"),
        "4416"
    );
}

#[test]
fn odd_identifiers_work_and_injection_attempts_are_harmless() {
    if skip_without_postgres() {
        return;
    }
    let site = TablesSite::new();
    let schema = "Wëird \"schema\"";
    let table = "my table; DROP TABLE victim; --";
    site.monthly_table(schema, table);
    site.sql("CREATE TABLE public.victim (x int); INSERT INTO victim VALUES (1)");
    let qualified = "\"Wëird \"\"schema\"\"\".\"my table; DROP TABLE victim; --\"";
    let evil = "x'); DROP TABLE victim; --";

    // A hostile schema for the policy tables is just a name.
    site.ok(&["tables", "setup", "--schema", "s\"; DROP TABLE victim; --"]);
    site.ok(&["tables", "setup"]);
    site.ok(&[
        "tables", "add", "--table", qualified, "--column", "ts", "--action", "delete", "--after",
        "90d", "--tag", evil, "--who", evil,
    ]);
    site.ok(&[
        "ttl",
        &format!("{qualified}:ts"),
        "reallocate:pg_default\"; DROP TABLE victim; --",
        "30d",
    ]);
    let list = site.ok(&["tables", "list", "--tag", evil]);
    assert!(list.contains("my table"), "{list}");
    let out = site.strata(&["tables", "run", "--cutoff", "2025-10-15", "--who", evil]);
    // The reallocation fails (no such tablespace), so the run says so: 1.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    // Nothing else happened: the victim is there, the deletes waited behind the failure
    // (shorter durations first), and a fixed policy lets them through.
    assert_eq!(site.sql("SELECT count(*) FROM victim"), "1");
    site.ok(&["tables", "rm", "2"]);
    site.ok(&["tables", "run", "--cutoff", "2025-10-15"]);
    let parent = format!("\"{}\".\"{}\"", schema.replace('"', "\"\""), table);
    let left = site.partitions(&parent);
    assert_eq!(left.len(), 7, "{left:?}");
    assert!(left.contains(&format!("{table}_2025_07")), "{left:?}");
    assert_eq!(site.sql("SELECT count(*) FROM victim"), "1");
    assert_eq!(
        site.sql(&format!(
            "SELECT count(*) FROM strata.audit WHERE who = '{}'",
            evil.replace('\'', "''")
        )),
        "3"
    );
    assert_eq!(
        site.sql("SELECT count(*) FROM \"s\"\"; DROP TABLE victim; --\".policy"),
        "0"
    );
    // Hostile values where values go.
    let out = site.strata(&[
        "tables",
        "run",
        "--cutoff",
        "2025-01-01'; DROP TABLE victim; --",
    ]);
    assert_one_line_error(&out, 2, "unparsable cutoff");
    let out = site.strata(&["tables", "edit", "1", "--after", "1d; DROP TABLE victim"]);
    assert_one_line_error(&out, 2, "unparsable duration");
    assert_eq!(site.sql("SELECT count(*) FROM victim"), "1");
}

#[test]
fn bad_input_gives_one_line_and_a_non_zero_exit() {
    if skip_without_postgres() {
        return;
    }
    let site = TablesSite::new();
    site.monthly_table("metrics", "raw");
    site.sql("CREATE TABLE metrics.ids (id bigint NOT NULL) PARTITION BY RANGE (id); CREATE TABLE metrics.ids_1 PARTITION OF metrics.ids FOR VALUES FROM (0) TO (100)");

    let out = site.strata(&["tables", "list"]);
    assert_one_line_error(&out, 2, "strata tables setup");
    site.ok(&["tables", "setup"]);
    let add = |table: &str, column: &str, after: &str| {
        site.strata(&[
            "tables", "add", "--table", table, "--column", column, "--action", "delete", "--after",
            after,
        ])
    };
    assert_one_line_error(
        &add("metrics.nope", "ts", "90d"),
        2,
        "table metrics.nope does not exist",
    );
    assert_one_line_error(&add("metrics.raw", "tss", "90d"), 2, "no column \"tss\"");
    assert_one_line_error(&add("metrics.raw", "value", "90d"), 2, "not a timestamp");
    assert_one_line_error(&add("metrics.ids", "id", "90d"), 2, "not a timestamp");
    assert_one_line_error(&add("metrics.raw", "ts", "90 days"), 2, "90d, 12h, 1y");
    assert_one_line_error(&add("a.b.c", "ts", "90d"), 2, "invalid table name");
    let out = site.strata(&[
        "tables",
        "add",
        "--table",
        "metrics.raw",
        "--column",
        "ts",
        "--action",
        "explode",
        "--after",
        "1d",
    ]);
    assert_one_line_error(&out, 2, "unknown action");
    let out = site.strata(&["ttl", "metrics.raw:ts", "archive", "1y"]);
    assert_one_line_error(&out, 2, "--target");
    assert_one_line_error(
        &site.strata(&["tables", "edit", "99", "--keep", "2"]),
        2,
        "no policy with id 99",
    );

    // A bound the engine cannot read (a BC date) stops that table's plan and run.
    site.ok(&[
        "tables",
        "add",
        "--table",
        "metrics.raw",
        "--column",
        "ts",
        "--action",
        "delete",
        "--after",
        "90d",
    ]);
    site.sql("CREATE TABLE metrics.raw_bc PARTITION OF metrics.raw FOR VALUES FROM ('0045-01-01 BC') TO ('0044-01-01 BC')");
    let out = site.strata(&["tables", "plan", "--cutoff", "2025-10-15"]);
    assert_one_line_error(&out, 1, "unparsable partition bound");
    let out = site.strata(&["tables", "run", "--cutoff", "2025-10-15"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("unparsable partition bound"),
        "{}",
        stderr(&out)
    );
    assert_eq!(site.partitions("metrics.raw").len(), 14);

    // No database, an unparsable one, an unreachable one.
    let out = site
        .command(&["tables", "list"])
        .env_remove("STRATA_TABLES_DB")
        .output()
        .unwrap();
    assert_one_line_error(&out, 2, "--db");
    let out = site.strata(&[
        "tables",
        "list",
        "--db",
        "postgresql://u:s3cret@h:notaport/db",
    ]);
    assert_one_line_error(&out, 2, "invalid database connection string");
    assert!(!stderr(&out).contains("s3cret"));
    let dsn = format!(
        "postgresql://postgres:s3cret@127.0.0.1:{}/postgres?connect_timeout=3",
        free_port()
    );
    let out = site.strata(&["tables", "plan", "--db", &dsn]);
    assert_one_line_error(&out, 1, "cannot connect to PostgreSQL at 127.0.0.1");
    assert!(!stderr(&out).contains("s3cret"));
    let out = site.strata(&["load", "tables/x/y/z", "--into", "metrics.raw"]);
    assert_one_line_error(&out, 1, "archive.json");
}

/// Rows in `a` that are not in `b`, and in `b` not in `a` (both as SQL queries).
fn difference(site: &TablesSite, a: &str, b: &str) -> String {
    site.sql(&format!(
        "SELECT count(*) FROM (({a}) EXCEPT ALL ({b})) x UNION ALL SELECT count(*) FROM (({b}) EXCEPT ALL ({a})) y"
    ))
}

#[test]
fn a_downsample_cascade_matches_direct_aggregation_and_takes_late_rows() {
    if skip_without_postgres() {
        return;
    }
    let site = TablesSite::new();
    let mut sql = String::from(
        "CREATE SCHEMA m;
         CREATE TABLE m.raw (ts timestamptz NOT NULL, host text NOT NULL, value int NOT NULL) PARTITION BY RANGE (ts);",
    );
    for month in 1..=12 {
        let to = if month == 12 {
            "2026-01-01".to_string()
        } else {
            format!("2025-{:02}-01", month + 1)
        };
        sql.push_str(&format!(
            "CREATE TABLE m.raw_{month:02} PARTITION OF m.raw FOR VALUES FROM ('2025-{month:02}-01') TO ('{to}');"
        ));
    }
    sql.push_str(
        "INSERT INTO m.raw SELECT t, h, (extract(epoch FROM t)::bigint % 997)::int + length(h)
           FROM generate_series('2025-01-01'::timestamptz, '2025-12-31 23:50+00', '10 minutes') t,
                unnest(ARRAY['a', 'host \"b\"']) h;
         CREATE TABLE m.hourly (ts timestamptz, host text NOT NULL, value_min int, value_max int, value_sum bigint, count bigint, UNIQUE (ts, host));
         CREATE TABLE m.daily (ts timestamptz, host text NOT NULL, value_min int, value_max int, value_sum bigint, count bigint, UNIQUE (ts, host));",
    );
    site.sql(&sql);
    // What the levels must hold, computed straight from the raw rows before anything runs.
    let direct = |bucket: &str, before: &str| {
        format!(
            "SELECT date_bin('{bucket}', ts, TIMESTAMPTZ '1970-01-01 00:00+00') AS ts, host, min(value), max(value), sum(value)::bigint, count(*)
             FROM m.raw WHERE ts < '{before}' GROUP BY 1, 2"
        )
    };
    site.sql(&format!(
        "CREATE TABLE m.expected_hourly AS {}; CREATE TABLE m.expected_daily AS {};",
        direct("1 hour", "2025-12-31 23:00+00"),
        direct("1 day", "2025-12-31 00:00+00")
    ));

    site.ok(&["tables", "setup"]);
    let add = |table: &str, extra: &[&str]| {
        let mut args = vec!["tables", "add", "--table", table, "--column", "ts"];
        args.extend_from_slice(extra);
        site.ok(&args);
    };
    add(
        "m.raw",
        &[
            "--action",
            "downsample",
            "--after",
            "1h",
            "--into",
            "m.hourly",
            "--bucket",
            "1h",
            "--group-by",
            "host",
            "--aggregate",
            "min:value",
            "--aggregate",
            "max:value",
            "--aggregate",
            "sum:value",
            "--aggregate",
            "count",
            "--lookback",
            "2h",
        ],
    );
    add(
        "m.hourly",
        &[
            "--action",
            "downsample",
            "--after",
            "1d",
            "--into",
            "m.daily",
            "--bucket",
            "1d",
            "--group-by",
            "host",
            "--aggregate",
            "min:value_min=value_min",
            "--aggregate",
            "max:value_max=value_max",
            "--aggregate",
            "sum:value_sum=value_sum",
            "--aggregate",
            "sum:count=count",
        ],
    );
    add("m.raw", &["--action", "delete", "--after", "180d"]);
    // A rollup into a table that lacks a column is refused when added.
    let out = site.strata(&[
        "tables",
        "add",
        "--table",
        "m.daily",
        "--column",
        "ts",
        "--action",
        "downsample",
        "--after",
        "1d",
        "--into",
        "m.hourly",
        "--bucket",
        "1w",
        "--aggregate",
        "avg:value_min",
    ]);
    assert_one_line_error(&out, 2, "value_min_avg");

    // The plan shows the rollup first; a dry run changes nothing.
    let plan = site.ok(&["tables", "plan", "--cutoff", "2026-01-01T00:00:00Z"]);
    assert!(plan.contains("roll up into m.hourly"), "{plan}");
    site.ok(&[
        "tables",
        "run",
        "--dry-run",
        "--cutoff",
        "2026-01-01T00:00:00Z",
    ]);
    assert_eq!(site.sql("SELECT count(*) FROM m.hourly"), "0");

    // One run advances both levels (the source first) and then drops raw partitions
    // older than 180 days: every bucket equals the direct aggregation.
    site.ok(&["tables", "run", "--cutoff", "2026-01-01T00:00:00Z"]);
    assert_eq!(
        difference(
            &site,
            "SELECT * FROM m.hourly",
            "SELECT * FROM m.expected_hourly"
        ),
        "0\n0"
    );
    assert_eq!(
        difference(
            &site,
            "SELECT * FROM m.daily",
            "SELECT * FROM m.expected_daily"
        ),
        "0\n0"
    );
    assert_eq!(
        site.sql("SELECT count(*) FROM m.daily"),
        (364 * 2).to_string()
    );
    assert_eq!(
        site.partitions("m.raw"),
        (7..=12).map(|m| format!("raw_{m:02}")).collect::<Vec<_>>()
    );
    let watermarks = site.sql(
        "SELECT table_name || ' ' || to_char(watermark AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') FROM strata.policy WHERE action = 'downsample' ORDER BY 1",
    );
    assert_eq!(watermarks, "hourly 2025-12-31 00:00\nraw 2025-12-31 23:00");

    // A late row inside the lookback and a new one after the watermark: the next run
    // recomputes 21:00-23:00 and adds 23:00.
    site.sql(
        "INSERT INTO m.raw VALUES ('2025-12-31 22:30+00', 'a', 5000), ('2025-12-31 23:30+00', 'a', 1)",
    );
    site.ok(&["tables", "run", "--cutoff", "2026-01-01T01:00:00Z"]);
    assert_eq!(
        site.sql("SELECT value_max || ' ' || count FROM m.hourly WHERE host = 'a' AND ts = '2025-12-31 22:00+00'"),
        "5000 7"
    );
    assert_eq!(
        site.sql("SELECT count FROM m.hourly WHERE host = 'a' AND ts = '2025-12-31 23:00+00'"),
        "7"
    );
    let audit = site.sql(
        "SELECT count(*) FROM strata.audit WHERE what = 'run downsample' AND outcome = 'done'",
    );
    assert_eq!(audit, "3");
}

#[test]
fn a_pg_partman_set_is_discovered_and_its_own_retention_is_flagged() {
    if skip_without_postgres() {
        return;
    }
    let site = TablesSite::new();
    site.sql(
        "CREATE SCHEMA partman; CREATE EXTENSION pg_partman SCHEMA partman;
         CREATE TABLE public.events (ts timestamptz NOT NULL, v int) PARTITION BY RANGE (ts);
         SELECT partman.create_parent('public.events', 'ts', 'native', 'monthly',
                                      p_start_partition := '2025-01-01', p_premake := 2);
         INSERT INTO public.events SELECT t, 1 FROM generate_series('2025-01-01'::timestamptz, '2025-12-31', '1 day') t;",
    );
    let before = site.partitions("public.events");
    assert!(
        before.contains(&"events_p2025_01".to_string()),
        "{before:?}"
    );
    assert!(before.contains(&"events_default".to_string()), "{before:?}");
    site.ok(&["tables", "setup"]);
    site.ok(&["ttl", "public.events:ts", "delete", "180d"]);
    // partman keeps no retention of its own: no warning, and exactly Jan-Jun 2025 go.
    let plan = site.strata(&["tables", "plan", "--cutoff", "2026-01-01"]);
    assert!(!stderr(&plan).contains("pg_partman"), "{}", stderr(&plan));
    site.ok(&["tables", "run", "--cutoff", "2026-01-01"]);
    let after = site.partitions("public.events");
    let gone: Vec<&String> = before.iter().filter(|p| !after.contains(p)).collect();
    let expected: Vec<String> = (1..=6).map(|m| format!("events_p2025_{m:02}")).collect();
    assert_eq!(gone, expected.iter().collect::<Vec<_>>());
    assert!(after.contains(&"events_default".to_string()));
    assert_eq!(
        site.sql("SELECT count(*) FROM public.events WHERE ts >= '2025-07-01'"),
        "184"
    );
    // Once partman has a retention too, plan and run say two engines remove partitions.
    site.sql("UPDATE partman.part_config SET retention = '3 months' WHERE parent_table = 'public.events'");
    let plan = site.strata(&["tables", "plan", "--cutoff", "2026-01-01"]);
    assert!(
        stderr(&plan).contains("pg_partman also applies retention 3 months"),
        "{}",
        stderr(&plan)
    );
}

#[test]
fn the_server_schedules_table_retention_runs() {
    if skip_without_postgres() {
        return;
    }
    let site = TablesSite::new();
    site.monthly_table("metrics", "raw");
    site.ok(&["tables", "setup"]);
    site.ok(&[
        "ttl",
        "metrics.raw:ts",
        "delete",
        "400d",
        "--tag",
        "nightly",
    ]);
    site.ok(&["ttl", "metrics.raw:ts", "reallocate:pg_default", "1d"]);
    // A server with no nodes, only a `tables` schedule every two seconds over the tagged
    // policies, and the database in [tables] (no --db anywhere).
    std::fs::write(
        site.path("strata.toml"),
        format!(
            "default_storage = \"cold\"\nstate_dir = \"{state}\"\n[storages.cold]\npath = \"{cold}\"\n\
             [tables]\ndb = \"{dsn}\"\n\
             [[schedules]]\nname = \"retention\"\njob = \"tables\"\ncron = \"*/2 * * * * *\"\ntags = [\"nightly\"]\n",
            state = site.path("state").display(),
            cold = site.path("cold").display(),
            dsn = site.dsn("postgres"),
        ),
    )
    .unwrap();
    let mut cmd = site.command(&[]);
    cmd.env_remove("STRATA_TABLES_DB");
    let server = common::server::Server::start(cmd, &site.path("server.log"));
    let runs = site.scheduled(
        "SELECT who || ' ' || outcome FROM strata.run WHERE outcome <> 'running' ORDER BY id",
    );
    drop(server);
    assert!(runs.starts_with("scheduler:retention "), "{runs}");
    // The tagged delete ran; the untagged reallocate did not run at all.
    let now = site.sql("SELECT now()::date");
    assert!(
        now.as_str() > "2026-11-01",
        "this test assumes 2025 is over 400 days ago: {now}"
    );
    assert!(!site
        .partitions("metrics.raw")
        .contains(&"raw_2025_01".to_string()));
    assert_eq!(
        site.sql("SELECT count(*) FROM strata.audit WHERE what = 'run reallocate'"),
        "0"
    );
}

#[test]
fn tables_commands_connect_over_verified_tls() {
    if skip_without_postgres() {
        return;
    }
    let site = TablesSite::new();
    // A CA, and a server certificate it signed for 127.0.0.1.
    let dir = site.path("tls");
    std::fs::create_dir_all(&dir).unwrap();
    let tls = strata_testkit::tls::Tls::generate(&dir);
    for (from, to) in [
        (&tls.server_cert, "server.crt"),
        (&tls.server_key, "server.key"),
    ] {
        std::fs::copy(from, site.pg.data_dir.join(to)).unwrap();
    }
    // (Not chown_to_postgres on a file inside: it opens up the data directory too.)
    let status = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(&site.pg.data_dir)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::set_permissions(
        site.pg.data_dir.join("server.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    // TCP only with TLS: a session that gets in over 127.0.0.1 is encrypted.
    site.pg.stop();
    site.pg.set_conf(
        "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nlisten_addresses = '127.0.0.1'",
    );
    std::fs::write(
        site.pg.data_dir.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
    )
    .unwrap();
    site.pg.start();
    let port = site.pg.port;
    let ca = tls.ca.clone();
    let verified = format!(
        "host=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=verify-full sslrootcert={}",
        ca.display()
    );
    site.ok(&["tables", "setup", "--db", &verified]);
    let url = format!(
        "postgresql://postgres@127.0.0.1:{port}/postgres?sslmode=require&sslrootcert={}",
        ca.display().to_string().replace('/', "%2F")
    );
    site.ok(&["tables", "list", "--db", &url]);
    // Without TLS the server refuses; without the CA strata refuses the server.
    let plain = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres");
    let out = site.strata(&["tables", "list", "--db", &plain]);
    assert_one_line_error(&out, 1, "no pg_hba.conf entry");
    let unknown_ca =
        format!("host=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=require");
    let out = site.strata(&["tables", "list", "--db", &unknown_ca]);
    assert_one_line_error(&out, 1, "certificate");
}

/// The id of the policy of `table` with `action`.
/// `tables add`: a downsample of `m.raw` (on `ts`) into `m.hourly` in buckets of an hour,
/// rows older than an hour; `extra` gives the aggregates and anything else.
fn add_hourly_rollup(site: &TablesSite, extra: &[&str]) {
    let mut args = vec![
        "tables",
        "add",
        "--table",
        "m.raw",
        "--column",
        "ts",
        "--action",
        "downsample",
        "--after",
        "1h",
        "--into",
        "m.hourly",
        "--bucket",
        "1h",
    ];
    args.extend_from_slice(extra);
    site.ok(&args);
}

/// A downsample policy's watermark (UTC, to the minute), or `none`.
fn watermark_of(site: &TablesSite, id: &str) -> String {
    site.sql(&format!(
        "SELECT coalesce(to_char(watermark AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), 'none') FROM strata.policy WHERE id = {id}"
    ))
}

fn policy_id(site: &TablesSite, table: &str, action: &str) -> String {
    let (schema, name) = table.split_once('.').unwrap();
    site.sql(&format!(
        "SELECT id FROM strata.policy WHERE table_schema = '{schema}' AND table_name = '{name}' AND action = '{action}'"
    ))
}

#[test]
fn removal_waits_for_a_rollup_left_out_by_tags_or_disabled() {
    if skip_without_postgres() {
        return;
    }
    let site = TablesSite::new();
    site.monthly_table("m", "raw");
    site.sql(
        "CREATE TABLE m.hourly (ts timestamptz NOT NULL UNIQUE, value_sum bigint, count bigint)",
    );
    site.ok(&["tables", "setup"]);
    add_hourly_rollup(
        &site,
        &[
            "--aggregate",
            "sum:value",
            "--aggregate",
            "count",
            "--tag",
            "rollup",
        ],
    );
    site.ok(&["ttl", "m.raw:ts", "delete", "30d", "--tag", "cleanup"]);
    let all = site.partitions("m.raw");

    // Only the delete is selected, and the rollup never ran: nothing may go, and the plan
    // says what it waits for.
    let plan = site.ok(&[
        "tables",
        "plan",
        "--tag",
        "cleanup",
        "--cutoff",
        "2026-01-01",
    ]);
    assert!(
        plan.contains("waits for the rollup into m.hourly")
            && plan.contains("not selected by this run's tags")
            && plan.contains("nothing rolled up yet"),
        "{plan}"
    );
    site.ok(&[
        "tables",
        "run",
        "--tag",
        "cleanup",
        "--cutoff",
        "2026-01-01",
    ]);
    assert_eq!(site.partitions("m.raw"), all);

    // The rollup alone gets to 2025-04-01 01:00 (lookback one hour): January to March are
    // rolled up and out of the lookback.
    site.ok(&[
        "tables",
        "run",
        "--tag",
        "rollup",
        "--cutoff",
        "2025-04-01T02:00:00Z",
    ]);
    assert_eq!(site.partitions("m.raw"), all);
    assert_eq!(
        site.sql("SELECT sum(count) FROM m.hourly"),
        (90 * 24 + 1).to_string()
    );

    // Disabled, it still holds back what it has not rolled up: only January to March go.
    let rollup = policy_id(&site, "m.raw", "downsample");
    site.ok(&["tables", "edit", &rollup, "--disable"]);
    let plan = site.ok(&["tables", "plan", "--cutoff", "2026-01-01"]);
    assert!(
        plan.contains("waits for the rollup into m.hourly") && plan.contains("disabled"),
        "{plan}"
    );
    site.ok(&["tables", "run", "--cutoff", "2026-01-01"]);
    let mut expected = months("raw", 4..=12);
    expected.push("raw_default".into());
    assert_eq!(site.partitions("m.raw"), expected);

    // Paused with INF and enabled again: the same, nothing more goes.
    site.ok(&["tables", "edit", &rollup, "--enable", "--after", "INF"]);
    site.ok(&["tables", "run", "--cutoff", "2026-01-01"]);
    assert_eq!(site.partitions("m.raw"), expected);
}

#[test]
fn tables_with_legacy_inheritance_children_are_refused() {
    if skip_without_postgres() {
        return;
    }
    let site = TablesSite::new();
    site.sql(
        "CREATE SCHEMA l;
         CREATE TABLE l.parent (ts timestamptz NOT NULL, v int);
         CREATE TABLE l.child () INHERITS (l.parent);
         CREATE TABLE l.alone (ts timestamptz NOT NULL, v int);
         INSERT INTO l.parent SELECT t, 1 FROM generate_series('2025-01-01'::timestamptz, '2025-01-10', '1 hour') t;
         INSERT INTO l.child SELECT t, 2 FROM generate_series('2025-01-01'::timestamptz, '2025-01-10', '1 hour') t;
         INSERT INTO l.alone SELECT t, 3 FROM generate_series('2025-01-01'::timestamptz, '2025-01-10', '1 hour') t;",
    );
    site.ok(&["tables", "setup"]);
    let out = site.strata(&["ttl", "l.parent:ts", "delete", "1d"]);
    assert_one_line_error(&out, 2, "l.child");
    assert!(
        stderr(&out).contains("inheriting from it"),
        "{}",
        stderr(&out)
    );

    // A child that appears after the policy stops the table: nothing is deleted anywhere.
    site.ok(&["ttl", "l.alone:ts", "delete", "1d"]);
    site.sql(
        "CREATE TABLE l.late () INHERITS (l.alone); INSERT INTO l.late VALUES ('2025-01-02', 4)",
    );
    let plan = site.strata(&["tables", "plan", "--cutoff", "2026-01-01"]);
    assert_eq!(plan.status.code(), Some(1), "{}", stderr(&plan));
    assert!(stderr(&plan).contains("l.late"), "{}", stderr(&plan));
    let run = site.strata(&["tables", "run", "--cutoff", "2026-01-01"]);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert_eq!(site.sql("SELECT count(*) FROM ONLY l.alone"), "217");
    assert_eq!(site.sql("SELECT count(*) FROM l.late"), "1");

    // A child on its own is an ordinary table: its rows, and only its rows, go.
    site.ok(&["ttl", "l.child:ts", "delete", "1d", "--tag", "child"]);
    // The plan of a row delete gives an estimate of what it deletes, labelled so.
    site.sql("ANALYZE l.child");
    let plan: serde_json::Value = serde_json::from_str(&site.ok(&[
        "--json",
        "tables",
        "plan",
        "--cutoff",
        "2026-01-01",
        "--tag",
        "child",
    ]))
    .unwrap();
    let step = &plan[0]["plan"]["steps"][0];
    assert!(step["rows_estimate"].as_i64().unwrap() > 100, "{step}");
    assert!(step["bytes"].as_i64().unwrap() > 0, "{step}");
    let text = site.ok(&["tables", "plan", "--cutoff", "2026-01-01", "--tag", "child"]);
    assert!(text.contains("estimate"), "{text}");
    site.sql("DROP TABLE l.late");
    site.ok(&["tables", "run", "--cutoff", "2026-01-01"]);
    assert_eq!(site.sql("SELECT count(*) FROM l.child"), "0");
    assert_eq!(site.sql("SELECT count(*) FROM ONLY l.parent"), "217");
    assert_eq!(site.sql("SELECT count(*) FROM l.alone"), "0");
}

#[test]
fn archives_of_two_databases_never_replace_each_other() {
    if skip_without_postgres() {
        return;
    }
    let site = TablesSite::new();
    site.sql("CREATE DATABASE other");
    let other_dsn = site
        .dsn("postgres")
        .replace("dbname=postgres", "dbname=other");
    let other = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--db", &other_dsn]);
        site.strata(&all)
    };
    site.monthly_table("metrics", "raw");
    site.pg
        .psql("other", "CREATE SCHEMA metrics; CREATE TABLE metrics.raw (ts timestamptz NOT NULL, value int, note text) PARTITION BY RANGE (ts);
              CREATE TABLE metrics.raw_2025_01 PARTITION OF metrics.raw FOR VALUES FROM ('2025-01-01') TO ('2025-02-01');
              CREATE TABLE metrics.raw_2025_02 PARTITION OF metrics.raw FOR VALUES FROM ('2025-02-01') TO ('2025-03-01');
              INSERT INTO metrics.raw VALUES ('2025-01-05', 7, 'other'), ('2025-02-05', 8, 'other');");
    let january = site.checksum("metrics.raw_2025_01", "");
    site.ok(&["tables", "setup"]);
    site.ok(&["ttl", "metrics.raw:ts", "archive:cold", "180d"]);
    assert!(other(&["tables", "setup"]).status.success());
    assert!(other(&["ttl", "metrics.raw:ts", "archive:cold", "30d"])
        .status
        .success());

    // A dry run writes nothing to the storage.
    site.ok(&["tables", "run", "--dry-run", "--cutoff", "2026-01-01"]);
    assert!(
        !site.path("cold/tables").exists(),
        "a dry run wrote to the storage"
    );

    site.ok(&["tables", "run", "--cutoff", "2026-01-01"]);
    let manifest_path = site.path("cold/tables/metrics/raw/metrics.raw_2025_01/archive.json");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    assert_eq!(manifest["source"]["database"], "postgres");
    assert_eq!(manifest["source"]["table"]["name"], "raw");
    assert_eq!(manifest["column"], "ts");
    let system = site.sql("SELECT system_identifier FROM pg_control_system()");
    assert_eq!(manifest["source"]["system_identifier"], system.as_str());

    // The other database's run is refused at its first partition, which it keeps.
    let out = other(&["tables", "run", "--cutoff", "2026-01-01"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("already holds an archive of metrics.raw of database \"postgres\"")
            && err.contains("database \"other\"")
            && err.contains("storage of its own"),
        "{err}"
    );
    assert_eq!(
        site.pg.psql("other", "SELECT count(*) FROM metrics.raw"),
        "2"
    );
    let after: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    assert_eq!(after, manifest, "the first database's archive was touched");
    site.sql("CREATE SCHEMA restored; CREATE TABLE restored.jan (LIKE metrics.raw)");
    site.ok(&[
        "load",
        "tables/metrics/raw/metrics.raw_2025_01",
        "--into",
        "restored.jan",
    ]);
    assert_eq!(site.checksum("restored.jan", ""), january);

    // An archive of an earlier strata (no source recorded) is read, but never replaced.
    let mut legacy = manifest.clone();
    legacy.as_object_mut().unwrap().remove("source");
    legacy.as_object_mut().unwrap().remove("column");
    std::fs::write(&manifest_path, serde_json::to_vec(&legacy).unwrap()).unwrap();
    site.sql("CREATE TABLE restored.jan_again (LIKE metrics.raw)");
    site.ok(&[
        "load",
        "tables/metrics/raw/metrics.raw_2025_01",
        "--into",
        "restored.jan_again",
    ]);
    assert_eq!(site.checksum("restored.jan_again", ""), january);
    let july = site.path("cold/tables/metrics/raw/metrics.raw_2025_07");
    std::fs::create_dir_all(&july).unwrap();
    std::fs::write(
        july.join("archive.json"),
        serde_json::to_vec(&legacy).unwrap(),
    )
    .unwrap();
    let out = site.strata(&["tables", "run", "--cutoff", "2026-02-01"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("did not record its source database"),
        "{}",
        stderr(&out)
    );
    assert_eq!(site.partitions("metrics.raw")[0], "raw_2025_07");
    assert!(july.join("archive.json").exists());

    // archive.json gone (moved away, or a run that died before writing it) but source.json
    // still there: the place stays claimed by the first database, and the other database's
    // run is refused before it writes anything.
    std::fs::remove_file(&manifest_path).unwrap();
    let claim = manifest_path.with_file_name("source.json");
    let claimed = std::fs::read(&claim).unwrap();
    let out = other(&["tables", "run", "--cutoff", "2026-01-01"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("already holds an archive of metrics.raw of database \"postgres\"")
            && err.contains("database \"other\""),
        "{err}"
    );
    assert_eq!(
        site.pg.psql("other", "SELECT count(*) FROM metrics.raw"),
        "2"
    );
    assert_eq!(std::fs::read(&claim).unwrap(), claimed);
    assert!(
        !manifest_path.exists(),
        "the other database wrote an archive"
    );
}

#[test]
fn load_into_the_parent_recreates_the_partition_once() {
    if skip_without_postgres() {
        return;
    }
    let site = TablesSite::new();
    site.monthly_table("metrics", "raw");
    let copy = |table: &str| {
        site.sql(&format!(
            "COPY (SELECT * FROM {table} ORDER BY ts) TO STDOUT"
        ))
    };
    let bound = |table: &str| {
        site.sql(&format!(
            "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE oid = '{table}'::regclass"
        ))
    };
    let january = copy("metrics.raw_2025_01");
    let january_bound = bound("metrics.raw_2025_01");
    site.ok(&["tables", "setup"]);
    site.ok(&["ttl", "metrics.raw:ts", "archive:cold", "180d"]);
    site.ok(&["tables", "run", "--cutoff", "2026-01-01"]);
    assert_eq!(site.partitions("metrics.raw")[0], "raw_2025_07");

    let out = site.ok(&[
        "load",
        "tables/metrics/raw/metrics.raw_2025_01",
        "--into",
        "metrics.raw",
    ]);
    assert!(out.contains("recreated"), "{out}");
    assert!(site
        .partitions("metrics.raw")
        .contains(&"raw_2025_01".to_string()));
    assert_eq!(bound("metrics.raw_2025_01"), january_bound);
    assert_eq!(copy("metrics.raw_2025_01"), january);
    assert_eq!(
        site.sql("SELECT count(*) FROM metrics.raw WHERE ts < '2025-02-01'"),
        (31 * 24).to_string()
    );

    // Loading it again would duplicate every row: refused, nothing changes.
    let out = site.strata(&[
        "load",
        "tables/metrics/raw/metrics.raw_2025_01",
        "--into",
        "metrics.raw",
    ]);
    assert_one_line_error(&out, 2, "already holds");
    assert!(stderr(&out).contains("--append"), "{}", stderr(&out));
    assert_eq!(copy("metrics.raw_2025_01"), january);
    // With --append the user asked for it.
    site.ok(&[
        "load",
        "tables/metrics/raw/metrics.raw_2025_01",
        "--into",
        "metrics.raw",
        "--append",
    ]);
    assert_eq!(
        site.sql("SELECT count(*) FROM metrics.raw_2025_01"),
        (2 * 31 * 24).to_string()
    );

    // A name that is taken: the partition comes back as NAME_restored.
    site.sql("CREATE TABLE metrics.raw_2025_02 (x int)");
    let out = site.ok(&[
        "load",
        "tables/metrics/raw/metrics.raw_2025_02",
        "--into",
        "metrics.raw",
    ]);
    assert!(out.contains("metrics.raw_2025_02_restored"), "{out}");
    assert!(site
        .partitions("metrics.raw")
        .contains(&"raw_2025_02_restored".to_string()));

    // archive.json is not trusted with where the partition goes: a manifest naming another
    // schema (one that exists) still recreates it in the parent's schema.
    let may = site.path("cold/tables/metrics/raw/metrics.raw_2025_05/archive.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&may).unwrap()).unwrap();
    manifest["partition"]["schema"] = "public".into();
    std::fs::write(&may, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let out = site.ok(&[
        "load",
        "tables/metrics/raw/metrics.raw_2025_05",
        "--into",
        "metrics.raw",
    ]);
    assert!(out.contains("metrics.raw_2025_05"), "{out}");
    assert_eq!(
        site.sql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"),
        "0"
    );
    assert_eq!(
        site.sql("SELECT count(*) FROM metrics.raw_2025_05"),
        (31 * 24).to_string()
    );

    // The COPY runs before the attach: a reader holding the default partition (which
    // ATTACH locks) keeps the load waiting at its attach with June's rows already written,
    // so the parent and its default partition were not locked for the COPY.
    let mut reader = site.background_sql(
        "BEGIN; SELECT count(*) FROM metrics.raw_default; SELECT pg_sleep(5); COMMIT;",
    );
    std::thread::sleep(Duration::from_millis(800));
    let load = site
        .command(&[
            "load",
            "tables/metrics/raw/metrics.raw_2025_06",
            "--into",
            "metrics.raw",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let waiting = "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'ALTER TABLE%ATTACH PARTITION%'";
    let mut pid = String::new();
    for _ in 0..100 {
        pid = site.sql(waiting);
        if !pid.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!pid.is_empty(), "the load never waited at its attach");
    // The relations the load created (invisible to this session until it commits): the
    // largest of their files holds June's 720 rows, not just an empty heap or index
    // metapage.
    let files = site.sql(&format!(
        "SELECT l.relation FROM pg_locks l WHERE l.pid = {pid} AND l.locktype = 'relation' AND l.granted
           AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = l.relation)"
    ));
    let database = site.sql("SELECT oid FROM pg_database WHERE datname = 'postgres'");
    let largest = files
        .lines()
        .filter_map(|oid| std::fs::metadata(site.path(&format!("data/base/{database}/{oid}"))).ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0);
    assert!(largest >= 4 * 8192, "the load waits at its attach before its COPY ({largest} bytes written; files of {files:?})");
    reader.wait().unwrap();
    let out = load.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        site.sql("SELECT count(*) FROM metrics.raw WHERE ts >= '2025-06-01' AND ts < '2025-07-01'"),
        (30 * 24).to_string()
    );
    // Attached with the parent's indexes (found, not built again) and no CHECK left over.
    assert_eq!(
        site.sql("SELECT count(*) FROM pg_index WHERE indrelid = 'metrics.raw_2025_06'::regclass"),
        site.sql("SELECT count(*) FROM pg_index WHERE indrelid = 'metrics.raw_2025_07'::regclass")
    );
    assert_eq!(
        site.sql(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'metrics.raw_2025_06'::regclass"
        ),
        "0"
    );

    // A plain table: a range already there is refused, another range is loaded.
    site.sql("CREATE SCHEMA restored; CREATE TABLE restored.raw (LIKE metrics.raw)");
    for month in ["03", "04"] {
        site.ok(&[
            "load",
            &format!("tables/metrics/raw/metrics.raw_2025_{month}"),
            "--into",
            "restored.raw",
        ]);
    }
    let out = site.strata(&[
        "load",
        "tables/metrics/raw/metrics.raw_2025_03",
        "--into",
        "restored.raw",
    ]);
    assert_one_line_error(&out, 2, "rows of the archived range");
    assert_eq!(
        site.sql("SELECT count(*) FROM restored.raw"),
        ((31 + 30) * 24).to_string()
    );
}

#[test]
fn rollup_tables_must_keep_one_row_per_bucket_even_for_null_series() {
    if skip_without_postgres() {
        return;
    }
    let site = TablesSite::new();
    site.sql(
        "CREATE SCHEMA m;
         CREATE TABLE m.raw (ts timestamptz NOT NULL, host text, value int) PARTITION BY RANGE (ts);
         CREATE TABLE m.raw_01 PARTITION OF m.raw FOR VALUES FROM ('2025-01-01') TO ('2025-02-01');
         INSERT INTO m.raw SELECT t, h, 1 FROM generate_series('2025-01-01 00:00+00'::timestamptz, '2025-01-01 23:50+00', '10 minutes') t,
                unnest(ARRAY['a', NULL]) h;
         CREATE TABLE m.hourly (ts timestamptz NOT NULL, host text, count bigint, UNIQUE (ts, host));
         CREATE TABLE m.noindex (ts timestamptz NOT NULL, host text, count bigint);
         CREATE TABLE m.deferred (ts timestamptz NOT NULL, host text NOT NULL, count bigint,
                CONSTRAINT deferred_key UNIQUE (ts, host) DEFERRABLE);",
    );
    site.ok(&["tables", "setup"]);
    let add = |into: &str| {
        site.strata(&[
            "tables",
            "add",
            "--table",
            "m.raw",
            "--column",
            "ts",
            "--action",
            "downsample",
            "--after",
            "1h",
            "--into",
            into,
            "--bucket",
            "1h",
            "--group-by",
            "host",
            "--aggregate",
            "count",
            "--lookback",
            "3h",
        ])
    };
    assert_one_line_error(
        &add("m.noindex"),
        2,
        "no unique index on exactly (ts, host)",
    );
    // A deferrable unique constraint: ON CONFLICT refuses its index at run time.
    assert_one_line_error(
        &add("m.deferred"),
        2,
        "no unique index on exactly (ts, host) (not deferrable",
    );
    let out = add("m.hourly");
    assert_one_line_error(&out, 2, "NULLS NOT DISTINCT");
    assert!(stderr(&out).contains("host"), "{}", stderr(&out));

    site.sql(
        "ALTER TABLE m.hourly DROP CONSTRAINT hourly_ts_host_key;
         CREATE UNIQUE INDEX hourly_key ON m.hourly (ts, host) NULLS NOT DISTINCT;",
    );
    assert!(add("m.hourly").status.success());
    // Two runs whose windows overlap by the lookback: every bucket once per series.
    site.ok(&["tables", "run", "--cutoff", "2025-01-01T13:00:00Z"]);
    site.ok(&["tables", "run", "--cutoff", "2025-01-01T18:00:00Z"]);
    assert_eq!(
        site.sql("SELECT count(*) FROM (SELECT ts, host FROM m.hourly GROUP BY 1, 2 HAVING count(*) > 1) d"),
        "0"
    );
    assert_eq!(
        site.sql("SELECT count(*) || ' ' || sum(count) FROM m.hourly WHERE host IS NULL"),
        "17 102"
    );

    // The index replaced by one that treats NULLs as distinct: the run refuses the rollup
    // (and with it the table) before writing anything.
    site.sql("DROP INDEX m.hourly_key; CREATE UNIQUE INDEX hourly_plain ON m.hourly (ts, host)");
    let out = site.strata(&["tables", "run", "--cutoff", "2025-01-01T20:00:00Z"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("NULLS NOT DISTINCT"),
        "{}",
        stderr(&out)
    );
    assert_eq!(site.sql("SELECT count(*) FROM m.hourly"), "34");
}

#[test]
fn edit_changes_a_downsample_policy_and_reshaping_needs_a_reset() {
    if skip_without_postgres() {
        return;
    }
    let site = TablesSite::new();
    site.monthly_table("m", "raw");
    site.sql(
        "CREATE TABLE m.hourly (ts timestamptz NOT NULL UNIQUE, value_sum bigint, count bigint);
         CREATE TABLE m.daily (ts timestamptz NOT NULL UNIQUE, value_max int, count bigint);",
    );
    site.ok(&["tables", "setup"]);
    add_hourly_rollup(&site, &["--aggregate", "sum:value", "--aggregate", "count"]);
    site.ok(&["ttl", "m.raw:ts", "delete", "400d"]);
    let id = policy_id(&site, "m.raw", "downsample");
    let delete = policy_id(&site, "m.raw", "delete");
    site.ok(&["tables", "run", "--cutoff", "2025-03-01"]);
    let watermark = || watermark_of(&site, &id);
    assert_eq!(watermark(), "2025-02-28 23:00");

    // The lookback can change at any time.
    site.ok(&["tables", "edit", &id, "--lookback", "3h"]);
    let rollup = site.sql(&format!(
        "SELECT rollup ->> 'lookback_secs' FROM strata.policy WHERE id = {id}"
    ));
    assert_eq!(rollup, "10800");
    // A new shape once rolled up needs a reset; downsample options on another action and
    // a rollup table without the columns are refused.
    let out = site.strata(&["tables", "edit", &id, "--bucket", "1d"]);
    assert_one_line_error(&out, 2, "--reset-watermark");
    let out = site.strata(&["tables", "edit", &delete, "--bucket", "1d"]);
    assert_one_line_error(&out, 2, "are for downsample");
    let out = site.strata(&[
        "tables",
        "edit",
        &id,
        "--into",
        "m.daily",
        "--bucket",
        "1d",
        "--reset-watermark",
    ]);
    assert_one_line_error(&out, 2, "value_sum");
    assert_eq!(watermark(), "2025-02-28 23:00");

    site.ok(&[
        "tables",
        "edit",
        &id,
        "--into",
        "m.daily",
        "--bucket",
        "1d",
        "--aggregate",
        "max:value",
        "--aggregate",
        "count",
        "--reset-watermark",
    ]);
    assert_eq!(watermark(), "none");
    let audit = site
        .sql("SELECT detail FROM strata.audit WHERE what = 'policy edit' ORDER BY id DESC LIMIT 1");
    assert!(
        audit.contains("watermark reset (was 2025-02-28T23:00:00Z)"),
        "{audit}"
    );
    site.ok(&["tables", "run", "--cutoff", "2025-03-01"]);
    assert_eq!(
        difference(
            &site,
            "SELECT * FROM m.daily",
            "SELECT date_bin('1 day', ts, TIMESTAMPTZ '1970-01-01 00:00+00'), max(value), count(*) FROM m.raw WHERE ts < '2025-02-28 00:00+00' GROUP BY 1"
        ),
        "0\n0"
    );
    assert_eq!(watermark(), "2025-02-28 00:00");
}

#[test]
fn reallocating_to_the_default_tablespace_settles() {
    if skip_without_postgres() {
        return;
    }
    let site = TablesSite::new();
    let space = site.path("slow");
    std::fs::create_dir_all(&space).unwrap();
    chown_to_postgres(&space);
    site.sql(&format!(
        "CREATE TABLESPACE slow LOCATION '{}'",
        space.display()
    ));
    site.monthly_table("metrics", "raw");
    for m in 1..=12 {
        site.sql(&format!(
            "ALTER TABLE metrics.raw_2025_{m:02} SET TABLESPACE slow"
        ));
    }
    site.ok(&["tables", "setup"]);
    site.ok(&["ttl", "metrics.raw:ts", "reallocate:pg_default", "90d"]);
    site.ok(&["tables", "run", "--cutoff", "2026-01-01"]);
    let moved = site.sql(
        "SELECT count(*) FROM pg_class WHERE relname LIKE 'raw_2025_%' AND relkind = 'r' AND reltablespace = 0",
    );
    assert_eq!(moved, "9");
    // The second run has nothing to do.
    let out = site.ok(&["tables", "run", "--cutoff", "2026-01-01"]);
    assert!(out.contains("nothing"), "{out}");
    let plan: serde_json::Value =
        serde_json::from_str(&site.ok(&["--json", "tables", "plan", "--cutoff", "2026-01-01"]))
            .unwrap();
    assert_eq!(plan[0]["plan"]["steps"], serde_json::json!([]));
    assert_eq!(
        site.sql("SELECT count(*) FROM strata.audit WHERE what = 'run reallocate'"),
        "9"
    );
}

#[test]
fn the_floor_counts_only_partitions_that_have_begun() {
    if skip_without_postgres() {
        return;
    }
    let site = TablesSite::new();
    site.monthly_table("metrics", "raw");
    // Made ahead, empty: January to March 2026.
    site.sql(
        "CREATE TABLE metrics.raw_2026_01 PARTITION OF metrics.raw FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
         CREATE TABLE metrics.raw_2026_02 PARTITION OF metrics.raw FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
         CREATE TABLE metrics.raw_2026_03 PARTITION OF metrics.raw FOR VALUES FROM ('2026-03-01') TO ('2026-04-01');",
    );
    site.ok(&["tables", "setup"]);
    site.ok(&["ttl", "metrics.raw:ts", "delete", "1d", "--keep", "3"]);
    // On 2025-12-31 January to November have expired; of the twelve partitions that have
    // begun, three stay: October and November (the floor) and December.
    let plan = site.ok(&["tables", "plan", "--cutoff", "2025-12-31"]);
    assert!(
        plan.contains("keeps at least 3 partitions that have begun"),
        "{plan}"
    );
    site.ok(&["tables", "run", "--cutoff", "2025-12-31"]);
    let mut expected = months("raw", 10..=12);
    expected.extend(["raw_2026_01", "raw_2026_02", "raw_2026_03", "raw_default"].map(String::from));
    assert_eq!(site.partitions("metrics.raw"), expected);
}

#[test]
fn an_edit_during_a_run_is_never_undone_by_it() {
    if skip_without_postgres() {
        return;
    }
    let site = TablesSite::new();
    site.sql(
        "CREATE SCHEMA m;
         CREATE TABLE m.raw (ts timestamptz NOT NULL, value int);
         INSERT INTO m.raw SELECT t, 1 FROM generate_series('2025-01-01 00:00+00'::timestamptz, '2025-01-02 23:50+00', '10 minutes') t;
         CREATE TABLE m.hourly (ts timestamptz NOT NULL UNIQUE, count bigint);
         CREATE TABLE m.hourly2 (ts timestamptz NOT NULL UNIQUE, count bigint);
         CREATE TABLE m.other (ts timestamptz NOT NULL);",
    );
    site.ok(&["tables", "setup"]);
    // Listed first among the `sweep` policies (ids go in order).
    site.ok(&["ttl", "m.other:ts", "delete", "1d", "--tag", "sweep"]);
    add_hourly_rollup(&site, &["--aggregate", "count"]);
    site.ok(&["ttl", "m.raw:ts", "delete", "1d", "--tag", "sweep"]);
    let id = policy_id(&site, "m.raw", "downsample");
    site.ok(&["tables", "run", "--cutoff", "2025-01-02T00:00:00Z"]);
    let watermark = || watermark_of(&site, &id);
    assert_eq!(watermark(), "2025-01-01 23:00");
    assert_eq!(site.sql("SELECT count(*) FROM m.raw"), "288");

    // An edit waits for a run of its table (which holds the table's lock), up to the lock
    // timeout, and changes nothing when the run does not end.
    let mut holder = site.background_sql("SELECT pg_advisory_lock((x'53545441'::bigint << 32) | 'm.raw'::regclass::oid::bigint), pg_sleep(6)");
    std::thread::sleep(Duration::from_millis(800));
    let out = site.strata(&[
        "tables",
        "edit",
        &id,
        "--reset-watermark",
        "--lock-timeout",
        "1",
    ]);
    assert_one_line_error(&out, 6, "waiting for the run of m.raw to end");
    assert_eq!(watermark(), "2025-01-01 23:00");
    // A removal waits the same way: a run never loses a policy while it acts on it.
    let delete_id = policy_id(&site, "m.raw", "delete");
    let out = site.strata(&["tables", "rm", &delete_id, "--lock-timeout", "1"]);
    assert_one_line_error(&out, 6, "remove it once the run is over");
    let kept = format!("SELECT count(*) FROM strata.policy WHERE id = {delete_id}");
    assert_eq!(site.sql(&kept), "1");
    // By tag, stopped part-way: the error names what is already gone.
    let other_id = policy_id(&site, "m.other", "delete");
    let out = site.strata(&["tables", "rm", "--tag", "sweep", "--lock-timeout", "1"]);
    assert_one_line_error(&out, 6, &format!("removed before it: policy {other_id}"));
    assert_eq!(site.sql(&kept), "1");
    let gone = format!("SELECT count(*) FROM strata.policy WHERE id = {other_id}");
    assert_eq!(site.sql(&gone), "0");
    holder.wait().unwrap();

    // The policy changed under a run that had read it already (an edit that took no lock:
    // an older strata, or SQL): a reader holding m.raw stops the run in its planning, and
    // the policy is pointed at m.hourly2 with its watermark reset meanwhile. The run must
    // neither roll up by the old policy, nor move the watermark back, nor delete rows that
    // the new rollup has not read.
    let mut reader = site.background_sql(
        "BEGIN; LOCK TABLE m.raw IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(4); COMMIT;",
    );
    std::thread::sleep(Duration::from_millis(800));
    let run = site
        .command(&["tables", "run", "--cutoff", "2025-01-03T00:00:00Z"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut waiting = String::new();
    for _ in 0..100 {
        waiting = site.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'EXPLAIN%'",
        );
        if waiting == "1" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(waiting, "1", "the run never waited in its planning");
    site.sql(&format!(
        "UPDATE strata.policy SET rollup = jsonb_set(rollup, '{{into,name}}', '\"hourly2\"'), watermark = NULL WHERE id = {id}"
    ));
    reader.wait().unwrap();
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("changed while this run was under way"),
        "{}",
        stderr(&out)
    );
    assert_eq!(watermark(), "none");
    assert_eq!(site.sql("SELECT count(*) FROM m.raw"), "288");
    assert_eq!(site.sql("SELECT count(*) FROM m.hourly2"), "0");
    assert_eq!(site.sql("SELECT count(*) FROM m.hourly"), "23");

    // The next run follows the policy as it is: everything reaches m.hourly2 before the
    // first day's rows go.
    site.ok(&["tables", "run", "--cutoff", "2025-01-03T00:00:00Z"]);
    assert_eq!(watermark(), "2025-01-02 23:00");
    assert_eq!(
        site.sql("SELECT count(*) || ' ' || sum(count) FROM m.hourly2"),
        "47 282"
    );
    assert_eq!(
        site.sql("SELECT count(*) FROM m.raw WHERE ts < '2025-01-02 00:00+00'"),
        "0"
    );
}

#[test]
fn a_reset_or_longer_lookback_never_overwrites_a_whole_bucket_with_part_of_it() {
    if skip_without_postgres() {
        return;
    }
    let site = TablesSite::new();
    site.sql(
        "CREATE SCHEMA m;
         CREATE TABLE m.raw (ts timestamptz NOT NULL, value int);
         INSERT INTO m.raw SELECT t, 1 FROM generate_series('2025-01-01 00:00+00'::timestamptz, '2025-01-01 23:50+00', '10 minutes') t;
         CREATE TABLE m.hourly (ts timestamptz NOT NULL UNIQUE, value_sum bigint, count bigint);",
    );
    site.ok(&["tables", "setup"]);
    add_hourly_rollup(&site, &["--aggregate", "sum:value", "--aggregate", "count"]);
    // Deletes rows older than 23 h 30 min: at midnight that cuts at 00:30, inside the first
    // hour; the cut moves back to 00:00, the start of the bucket, so nothing goes yet.
    site.ok(&["ttl", "m.raw:ts", "delete", "23h30m"]);
    let id = policy_id(&site, "m.raw", "downsample");
    site.ok(&["tables", "run", "--cutoff", "2025-01-02T00:00:00Z"]);
    assert_eq!(site.sql("SELECT count(*) FROM m.raw"), "144");
    let first = "SELECT value_sum || ' ' || count FROM m.hourly WHERE ts = '2025-01-01 00:00+00'";
    assert_eq!(site.sql(first), "6 6");

    // The source loses the first half of that hour (a partition edge inside a bucket, a
    // removal by hand or by an earlier strata): a longer lookback reaching back over it,
    // and then a reset, recompute every whole bucket but leave the complete 00:00 row.
    site.sql("DELETE FROM m.raw WHERE ts < '2025-01-01 00:30+00'");
    site.ok(&["tables", "edit", &id, "--lookback", "2d"]);
    site.ok(&["tables", "run", "--cutoff", "2025-01-02T01:00:00Z"]);
    assert_eq!(site.sql(first), "6 6");
    site.ok(&["tables", "edit", &id, "--reset-watermark"]);
    site.ok(&["tables", "run", "--cutoff", "2025-01-02T01:00:00Z"]);
    assert_eq!(site.sql(first), "6 6");
    assert_eq!(
        site.sql("SELECT count(*) || ' ' || sum(count) FROM m.hourly"),
        "24 144"
    );
    // Where the rollup has no row for that bucket, what is left of it is added.
    site.sql("DELETE FROM m.hourly WHERE ts = '2025-01-01 00:00+00'");
    site.ok(&["tables", "edit", &id, "--reset-watermark"]);
    site.ok(&["tables", "run", "--cutoff", "2025-01-02T01:00:00Z"]);
    assert_eq!(site.sql(first), "3 3");
    assert_eq!(
        site.sql("SELECT count(*) || ' ' || sum(count) FROM m.hourly"),
        "24 141"
    );
}

/// `tables history` shows runs, their steps and policy changes, filtered by table, policy,
/// tag and time, as a table and as JSON; a run from the CLI is reported to the webhooks
/// (signed, with the run's outcome); history older than `history_days` is pruned by the
/// next run.
#[test]
fn history_shows_runs_and_changes_webhooks_hear_every_run_and_old_history_goes() {
    if skip_without_postgres() {
        return;
    }
    let site = TablesSite::new();
    site.monthly_table("metrics", "raw");
    site.monthly_table("metrics", "other");
    let receiver = common::webhook::Receiver::start(false);
    std::fs::write(
        site.path("strata.toml"),
        format!(
            "default_storage = \"cold\"\n[storages.cold]\npath = \"{cold}\"\n\
             [tables]\nhistory_days = 30\n\
             [[webhooks]]\nurl = \"{url}\"\nevents = [\"tables.*\"]\nsecret = {{ env = \"HOOK_SECRET\" }}\n",
            cold = site.path("cold").display(),
            url = receiver.url,
        ),
    )
    .unwrap();
    let history = |args: &[&str]| -> Vec<serde_json::Value> {
        let mut all = vec!["--json", "tables", "history"];
        all.extend_from_slice(args);
        let mut cmd = site.command(&all);
        cmd.env("HOOK_SECRET", "s3cret");
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let run = |args: &[&str]| {
        let mut cmd = site.command(args);
        cmd.env("HOOK_SECRET", "s3cret");
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    };
    run(&["tables", "setup"]);
    run(&[
        "ttl",
        "metrics.raw:ts",
        "delete",
        "400d",
        "--tag",
        "nightly",
    ]);
    run(&["ttl", "metrics.other:ts", "delete", "400d"]);
    let raw_policy = policy_id(&site, "metrics.raw", "delete");
    run(&["tables", "edit", &raw_policy, "--after", "390d"]);
    run(&["tables", "run", "--tag", "nightly"]);

    // Newest first: the run, its steps on metrics.raw (one a partition), the edit, the
    // adds, the setup.
    let kinds = |entries: &[serde_json::Value]| {
        let mut what: Vec<String> = entries
            .iter()
            .map(|e| e["what"].as_str().unwrap().to_string())
            .collect();
        what.dedup();
        what
    };
    let all = history(&[]);
    assert_eq!(
        kinds(&all),
        ["run", "run delete", "policy edit", "policy add", "setup"],
        "{all:#?}"
    );
    let steps: Vec<&serde_json::Value> = all.iter().filter(|e| e["what"] == "run delete").collect();
    assert!(steps.len() > 1, "{all:#?}");
    for step in &steps {
        assert_eq!(step["table"], "metrics.raw");
        assert_eq!(step["run_id"], all[0]["run_id"]);
        assert_eq!(step["partitions"].as_array().unwrap().len(), 1);
    }
    let on_other = history(&["--table", "metrics.other"]);
    assert_eq!(kinds(&on_other), ["policy add"], "{on_other:#?}");
    assert_eq!(on_other.len(), 1);
    let of_policy = history(&["--policy", &raw_policy]);
    assert_eq!(
        kinds(&of_policy),
        ["run delete", "policy edit", "policy add"]
    );
    let tagged = history(&["--tag", "nightly"]);
    assert_eq!(
        tagged.len(),
        of_policy.len() + 1,
        "the run and the policy's rows: {tagged:#?}"
    );
    assert!(history(&["--since", "2099-01-01"]).is_empty());
    assert_eq!(history(&["--until", "2000-01-01"]).len(), 0);
    assert_eq!(history(&["--limit", "2"]).len(), 2);
    let text = site.ok(&["tables", "history", "--table", "metrics.raw"]);
    assert!(
        text.contains("run delete") && text.contains("policy edit"),
        "{text}"
    );
    let out = site.strata(&["tables", "history", "--since", "yesterday-ish"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // The CLI's run was reported, signed: started, then succeeded with the run's line.
    let got = receiver.wait_for(2);
    let events: Vec<&str> = got.iter().map(|d| d.event.as_str()).collect();
    assert_eq!(events, ["tables.started", "tables.succeeded"]);
    for delivery in &got {
        assert_eq!(
            delivery.signature,
            common::webhook::signature("s3cret", &delivery.body)
        );
    }
    let body: serde_json::Value = serde_json::from_str(&got[1].body).unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains(": done (1 tables, "),
        "{body:#}"
    );
    assert!(
        body["target"].as_str().unwrap().contains("/postgres"),
        "{body:#}"
    );
    assert!(!got[1].body.contains("password"), "{body:#}");

    // History older than 30 days goes with the next run; the rest stays.
    site.sql("UPDATE strata.audit SET at = now() - interval '31 days' WHERE what = 'setup'");
    site.sql("UPDATE strata.run SET started_at = now() - interval '31 days'");
    run(&["tables", "run", "--tag", "nightly"]);
    let after = history(&[]);
    assert!(after.iter().all(|e| e["what"] != "setup"), "{after:#?}");
    assert_eq!(after.len(), all.len(), "one row gone, one run row added");
    assert_eq!(site.sql("SELECT count(*) FROM strata.run"), "1");
}

/// Every statement `tables plan --dialect cratedb` prints, for each action and for hostile
/// names and values, parses under CrateDB's own grammar (cratedb-sqlparse, the parser
/// CrateDB publishes from its ANTLR grammar); a broken statement does not, so the check
/// can fail.
#[test]
fn cratedb_statements_parse_under_cratedbs_own_grammar() {
    let Some(python) = strata_testkit::python_with("cratedb_sqlparse") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut statements = vec!["DELETE FROM \"doc\".\"t\" WHERE".to_string()];
    let layouts = [
        ("doc.sensor_readings:time_month", "delete"),
        ("metrics.raw:ts_day", "reallocate:storage=warm"),
        ("sensor_readings:month", "snapshot:export_cold"),
        (
            "\"we\"\"ird\".\"t'; DROP TABLE x; --\":c\"ol",
            "reallocate:a\" = 1); DROP=w'); DROP TABLE y; --",
        ),
        ("\"ünï cödé\".\"tâble\":mönth", "snapshot:re\"po'; --"),
    ];
    for (layout, action) in layouts {
        let out = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["--json", "tables", "plan", "--dialect", "cratedb"])
            .args(["--layout", layout, "--width", "month", "--action", action])
            .args(["--after", "30d", "--cutoff", "2026-01-01"])
            .args(["--partition", "2025-01-01", "--partition", "2025-02-01"])
            .args(["--partition", "1764547200000"])
            .env_remove("STRATA_CONFIG")
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{layout} {action}: {}", stderr(&out));
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let parts = plan["partitions"].as_array().unwrap();
        assert_eq!(parts.len(), 3);
        let expired: Vec<bool> = parts.iter().map(|p| p["expired"] == true).collect();
        assert_eq!(expired, [true, true, false], "{plan:#}");
        statements.push(plan["discovery"].as_str().unwrap().to_string());
        for part in parts {
            for statement in part["statements"].as_array().unwrap() {
                statements.push(statement.as_str().unwrap().to_string());
            }
        }
    }
    let file = dir.path().join("statements.json");
    std::fs::write(&file, serde_json::to_string(&statements).unwrap()).unwrap();
    let check = r#"
import json, sys
from cratedb_sqlparse import sqlparse
for text in json.load(open(sys.argv[1])):
    parsed = sqlparse(text)
    bad = [str(s.exception) for s in parsed if s.exception]
    print(json.dumps({"sql": text, "statements": len(parsed), "error": bad[0] if bad else None}))
"#;
    let out = Command::new(&python)
        .args(["-c", check])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let verdicts: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(verdicts.len(), statements.len());
    // The deliberately cut statement fails: the check can tell.
    assert!(verdicts[0]["error"].is_string(), "{:#?}", verdicts[0]);
    for verdict in &verdicts[1..] {
        assert!(verdict["error"].is_null(), "not CrateDB SQL: {verdict:#}");
        assert_eq!(
            verdict["statements"], 1,
            "one statement, not more: {verdict:#}"
        );
    }
    // Delete (1 each), reallocate (1 each), snapshot (2 each): 2 expired partitions of 5
    // layouts, plus 5 discoveries.
    assert_eq!(verdicts.len() - 1, 5 + 2 * (1 + 1 + 2 + 1 + 2));
}

/// Archives and loads through a real object storage server, CSV and Parquet: a storage
/// outage in the middle of an archive (the server stopped while one of its writes is
/// held) fails that partition and drops nothing of it; once the storage is back, the next
/// run finishes, and every partition loads back with the rows it had.
fn archive_and_load_through(server: &mut servers::Server) {
    if skip_without_postgres() {
        return;
    }
    let site = TablesSite::new();
    site.monthly_table("metrics", "raw");
    site.monthly_table("metrics", "pq");
    std::fs::write(
        site.path("strata.toml"),
        format!(
            "default_storage = \"cold\"\n[storages.cold]\nurl = \"{}\"\n[retry]\nbudget_secs = 2\n",
            server.url
        ),
    )
    .unwrap();
    let env = server.env.clone();
    let command = |args: &[&str]| {
        let mut cmd = site.command(args);
        cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd
    };
    let ok = |args: &[&str]| {
        let out = command(args).output().unwrap();
        assert!(out.status.success(), "strata {args:?}: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ok(&["tables", "setup"]);
    ok(&["ttl", "metrics.raw:ts", "archive:cold", "180d"]);
    ok(&[
        "tables",
        "add",
        "--table",
        "metrics.pq",
        "--column",
        "ts",
        "--action",
        "archive",
        "--target",
        "cold",
        "--after",
        "180d",
        "--format",
        "parquet",
    ]);
    let sums = |table: &str| -> Vec<String> {
        months(table, 1..=6)
            .iter()
            .map(|p| site.checksum(&format!("metrics.{p}"), ""))
            .collect()
    };
    let (raw_sums, pq_sums) = (sums("raw"), sums("pq"));

    // The storage goes away while February's archive of metrics.raw is being written
    // (metrics.pq, first in name order, is archived whole before).
    let hold = tempfile::tempdir().unwrap();
    let mut run = command(&["tables", "run", "--cutoff", "2026-01-01"]);
    run.env(
        "STRATA_TEST_HOLD_WRITE",
        format!(
            "tables/metrics/raw/metrics.raw_2025_02/:{}",
            hold.path().display()
        ),
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let mut run = run.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !hold.path().join("held").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "February's write was not held"
        );
        assert!(
            run.try_wait().unwrap().is_none(),
            "the run ended before the hold"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server.stop();
    std::fs::write(hold.path().join("release"), b"").unwrap();
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("raw_2025_02"), "{}", stderr(&out));
    assert_eq!(
        site.partitions("metrics.raw")[0],
        "raw_2025_02",
        "January went, February stays"
    );
    assert_eq!(site.checksum("metrics.raw_2025_02", ""), raw_sums[1]);
    assert_eq!(site.partitions("metrics.pq")[0], "pq_2025_07");

    // The storage is back: a clean run finishes the rest.
    server.start_again();
    ok(&["tables", "run", "--cutoff", "2026-01-01"]);
    assert_eq!(site.partitions("metrics.raw")[0], "raw_2025_07");
    let archives = ok(&["tables", "archives"]);
    assert_eq!(archives.lines().count(), 12, "{archives}");
    site.sql("CREATE SCHEMA restored");
    for (table, expected) in [("raw", &raw_sums), ("pq", &pq_sums)] {
        for (i, partition) in months(table, 1..=6).iter().enumerate() {
            let target = format!("restored.{partition}");
            site.sql(&format!("CREATE TABLE {target} (LIKE metrics.{table})"));
            let archive = format!("tables/metrics/{table}/metrics.{partition}");
            let said = ok(&["load", &archive, "--into", &target, "--from", "cold"]);
            assert!(said.contains("loaded"), "{said}");
            assert_eq!(site.checksum(&target, ""), expected[i], "{partition}");
        }
    }
}

#[test]
fn archives_survive_an_outage_and_load_back_through_s3() {
    archive_and_load_through(&mut servers::s3());
}

#[test]
fn archives_survive_an_outage_and_load_back_through_azure() {
    archive_and_load_through(&mut servers::azure());
}

#[test]
fn archives_survive_an_outage_and_load_back_through_gcs() {
    archive_and_load_through(&mut servers::gcs());
}

/// Archives go to the storage's `archive_class` (policy tables, markers and backups do
/// not), read back from Azurite (the access tier) and fake-gcs-server (the storage class);
/// an archived blob that must be rehydrated fails `load` saying so.
fn archive_class_through(server: &mut servers::Server, class: &str) -> TablesSite {
    let site = TablesSite::new();
    site.monthly_table("metrics", "raw");
    std::fs::write(
        site.path("strata.toml"),
        format!(
            "default_storage = \"cold\"\n[storages.cold]\nurl = \"{}\"\narchive_class = \"{class}\"\n[retry]\nbudget_secs = 2\n",
            server.url
        ),
    )
    .unwrap();
    for args in [
        &["tables", "setup"][..],
        &["ttl", "metrics.raw:ts", "archive:cold", "330d"],
        &["tables", "run", "--cutoff", "2026-01-01"],
    ] {
        let mut cmd = site.command(args);
        cmd.envs(server.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "strata {args:?}: {}", stderr(&out));
    }
    assert_eq!(site.partitions("metrics.raw")[0], "raw_2025_02");
    site
}

#[test]
fn archives_go_to_the_azure_access_tier_and_an_archived_one_says_rehydrate_first() {
    if skip_without_postgres() {
        return;
    }
    let Some(python) = strata_testkit::python_with("azure.storage.blob") else {
        return;
    };
    let mut server = servers::azure();
    let site = archive_class_through(&mut server, "Cool");
    let o = &server.options;
    let connection = format!(
        "DefaultEndpointsProtocol=http;AccountName={};AccountKey={};BlobEndpoint={};",
        o["azure_storage_account_name"],
        o["azure_storage_account_key"],
        o["azure_storage_endpoint"]
    );
    let tiers = r#"
import sys
from azure.storage.blob import BlobServiceClient
container = BlobServiceClient.from_connection_string(sys.argv[1]).get_container_client("strata")
for blob in container.list_blobs(name_starts_with="repo/tables/"):
    print(blob.name, blob.blob_tier)
if len(sys.argv) > 2:
    container.get_blob_client(sys.argv[2]).set_standard_blob_tier("Archive")
"#;
    let out = Command::new(&python)
        .args(["-c", tiers, &connection])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(listed.lines().count() >= 2, "{listed}");
    // The archive is Cool; its `source.json` (written once, if absent, and read by
    // every later export to tell databases apart) stays in the default tier.
    for line in listed.lines() {
        let wanted = if line.contains("/source.json ") {
            " Hot"
        } else {
            " Cool"
        };
        assert!(line.ends_with(wanted), "{listed}");
    }
    // One part archived (cold storage that needs rehydration): load says what to do.
    let part = listed
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .find(|name| name.contains("data.csv.zst."))
        .unwrap()
        .to_string();
    let out = Command::new(&python)
        .args(["-c", tiers, &connection, &part])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    site.sql("CREATE SCHEMA restored; CREATE TABLE restored.jan (LIKE metrics.raw)");
    let mut load = site.command(&[
        "load",
        "tables/metrics/raw/metrics.raw_2025_01",
        "--into",
        "restored.jan",
    ]);
    load.envs(server.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let out = load.output().unwrap();
    assert_one_line_error(&out, 1, "rehydrate it first");
    assert_eq!(site.sql("SELECT count(*) FROM restored.jan"), "0");
}

#[test]
fn archives_go_to_the_gcs_storage_class() {
    if skip_without_postgres() {
        return;
    }
    let mut server = servers::gcs();
    let _site = archive_class_through(&mut server, "NEARLINE");
    let account: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&server.options["google_service_account"]).unwrap())
            .unwrap();
    let base = account["gcs_base_url"].as_str().unwrap();
    let listing = common::server::http(
        base,
        "GET",
        "/storage/v1/b/strata/o?prefix=repo/tables/",
        None,
        "",
    )
    .json();
    let items = listing["items"].as_array().unwrap();
    assert!(items.len() >= 2, "{listing:#}");
    for item in items {
        let wanted = match item["name"].as_str().unwrap().ends_with("/source.json") {
            true => "STANDARD",
            false => "NEARLINE",
        };
        assert_eq!(item["storageClass"], wanted, "{item:#}");
    }
}

/// A TCP proxy on 127.0.0.1 in front of `upstream` (`host:port`) that keeps every byte
/// the clients sent: what a request carried, for a server that does not keep it.
fn recording_proxy(upstream: String) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = sent.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            let Ok(mut server) = std::net::TcpStream::connect(&upstream) else {
                continue;
            };
            let (mut client_back, mut server_in) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            let record = record.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n) = client.read(&mut buf) {
                    if n == 0 || server_in.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    record.lock().unwrap().extend_from_slice(&buf[..n]);
                }
                let _ = server_in.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut server, &mut client_back);
                let _ = client_back.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (port, sent)
}

#[test]
fn archives_ask_s3_for_the_storage_class() {
    if skip_without_postgres() {
        return;
    }
    let mut server = servers::s3();
    let upstream = server.options["aws_endpoint"]
        .trim_start_matches("http://")
        .to_string();
    let (port, sent) = recording_proxy(upstream);
    for (key, value) in server.env.iter_mut() {
        if key == "AWS_ENDPOINT" {
            *value = format!("http://127.0.0.1:{port}");
        }
    }
    // s3s-fs refuses every class but STANDARD (InvalidStorageClass), so STANDARD it
    // is: what is checked is that the header goes out on the archive's puts.
    let site = archive_class_through(&mut server, "STANDARD");
    let sent = String::from_utf8_lossy(&sent.lock().unwrap()).to_ascii_lowercase();
    // The head of every PUT: from its request line to the blank line.
    let puts: Vec<&str> = sent
        .match_indices("put /strata/")
        .map(|(at, _)| {
            let head = &sent[at..];
            &head[..head.find("\r\n\r\n").unwrap_or(head.len())]
        })
        .collect();
    let classed = |head: &str| head.contains("x-amz-storage-class: standard");
    let archive_puts: Vec<&str> = puts
        .iter()
        .copied()
        .filter(|h| h.contains("/tables/") && !h.contains("source.json"))
        .collect();
    assert!(archive_puts.len() >= 2, "{sent}");
    assert!(archive_puts.iter().all(|h| classed(h)), "{archive_puts:#?}");
    assert!(
        puts.iter()
            .any(|h| h.contains("source.json") && !classed(h)),
        "the marker stays in the default class: {puts:#?}"
    );
    drop(site);
}

/// `[[tables.jobs]]`: materialized views refreshed (concurrently where a unique index
/// allows) and a named statement with a bound value, run by `tables sql NAME` and by a
/// `sql` schedule of the server; each recorded in the run and audit tables (so in
/// `history`), held off by the relation's lock, and a hostile view name stays a name.
#[test]
fn sql_jobs_refresh_views_and_run_named_statements_now_and_on_a_schedule() {
    if skip_without_postgres() {
        return;
    }
    let site = TablesSite::new();
    site.sql(
        "CREATE TABLE events (ts timestamptz NOT NULL, v int NOT NULL);
         INSERT INTO events SELECT '2026-01-01'::timestamptz + g * interval '1 hour', g FROM generate_series(1, 48) g;
         CREATE MATERIALIZED VIEW totals AS SELECT date_trunc('day', ts) AS day, sum(v) AS v FROM events GROUP BY 1;
         CREATE UNIQUE INDEX ON totals (day);
         CREATE MATERIALIZED VIEW plain_totals AS SELECT sum(v) AS v FROM events;
         CREATE MATERIALIZED VIEW \"we\"\"ird; DROP TABLE events; --\" AS SELECT count(*) AS n FROM events;
         CREATE TABLE log (at timestamptz NOT NULL);
         INSERT INTO log SELECT now() - g * interval '1 day' FROM generate_series(1, 60) g;",
    );
    std::fs::write(
        site.path("strata.toml"),
        format!(
            "default_storage = \"cold\"\nstate_dir = \"{state}\"\n[storages.cold]\npath = \"{cold}\"\n\
             [tables]\ndb = \"{dsn}\"\n\
             [[tables.jobs]]\nname = \"totals\"\nrefresh = \"public.totals\"\n\
             [[tables.jobs]]\nname = \"plain\"\nrefresh = \"plain_totals\"\n\
             [[tables.jobs]]\nname = \"weird\"\nrefresh = 'public.\"we\"\"ird; DROP TABLE events; --\"'\n\
             [[tables.jobs]]\nname = \"prune-log\"\nsql = \"DELETE FROM log WHERE at < now() - $1::interval\"\nparams = [\"30 days\"]\n\
             [[schedules]]\nname = \"prune\"\njob = \"sql\"\nsql = \"prune-log\"\ncron = \"*/2 * * * * *\"\n",
            state = site.path("state").display(),
            cold = site.path("cold").display(),
            dsn = site.dsn("postgres"),
        ),
    )
    .unwrap();
    site.ok(&["tables", "setup"]);
    let listed = site.ok(&["tables", "sql"]);
    for name in ["totals", "plain", "weird", "prune-log"] {
        assert!(listed.contains(name), "{listed}");
    }

    // A dry run prints the statement and changes nothing.
    site.sql("INSERT INTO events VALUES ('2026-01-05', 1000)");
    let dry = site.ok(&["tables", "sql", "totals", "--dry-run"]);
    assert!(
        dry.contains("REFRESH MATERIALIZED VIEW CONCURRENTLY \"public\".\"totals\""),
        "{dry}"
    );
    assert_eq!(site.sql("SELECT count(*) FROM totals"), "3");
    // Now: each view has the new row; the one without a unique index is refreshed
    // plainly; the odd name is only a name.
    site.ok(&["tables", "sql", "totals"]);
    site.ok(&["tables", "sql", "plain"]);
    site.ok(&["tables", "sql", "weird"]);
    assert_eq!(site.sql("SELECT count(*) FROM totals"), "4");
    assert_eq!(
        site.sql("SELECT v FROM plain_totals"),
        (1176 + 1000).to_string()
    );
    assert_eq!(
        site.sql("SELECT n FROM \"we\"\"ird; DROP TABLE events; --\""),
        "49"
    );
    let history = site.ok(&["--json", "tables", "history", "--limit", "10"]);
    let history: Vec<serde_json::Value> = serde_json::from_str(&history).unwrap();
    let detail = |what: &str| {
        history
            .iter()
            .find(|e| e["what"] == what)
            .map(|e| e["detail"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no {what}: {history:#?}"))
    };
    assert!(detail("sql refresh totals").starts_with("refreshed concurrently"));
    assert!(detail("sql refresh plain").starts_with("refreshed in"));

    // A run that holds the view's lock keeps the job off it (exit 6, recorded busy).
    let mut holder = site.background_sql("SELECT pg_advisory_lock((x'53545441'::bigint << 32) | 'public.totals'::regclass::oid::bigint); SELECT pg_sleep(4);");
    std::thread::sleep(Duration::from_millis(1000));
    site.expect(6, &["tables", "sql", "totals"]);
    holder.wait().unwrap();
    assert_eq!(
        site.sql("SELECT outcome FROM strata.run ORDER BY id DESC LIMIT 1"),
        "busy"
    );

    // The server's `sql` schedule runs the statement, its value bound.
    let mut cmd = site.command(&[]);
    cmd.env_remove("STRATA_TABLES_DB");
    let server = common::server::Server::start(cmd, &site.path("server.log"));
    site.scheduled(
        "SELECT id FROM strata.audit WHERE who = 'scheduler:prune' AND outcome = 'done'",
    );
    drop(server);
    assert_eq!(site.sql("SELECT count(*) FROM log"), "29");
    assert!(site
        .sql("SELECT detail FROM strata.audit WHERE who = 'scheduler:prune' ORDER BY id LIMIT 1")
        .starts_with("31 rows in"));
    // A schedule naming a job that does not exist stops the server before it starts.
    let text = std::fs::read_to_string(site.path("strata.toml")).unwrap();
    std::fs::write(
        site.path("strata.toml"),
        text.replace("sql = \"prune-log\"\ncron", "sql = \"nope\"\ncron"),
    )
    .unwrap();
    let out = site.strata(&["server"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
}
