//! `strata load --file` against a real PostgreSQL 15, with files written by independent
//! writers: Python's `csv` and `json` modules and pyarrow (the Python of
//! scripts/install-test-servers.sh, `STRATA_TEST_PYTHON`). The rows in the table are
//! compared with what Python wrote; windows, dry runs, bad values and a load from the S3
//! emulator are checked through the real binary.

use crate::common;
use crate::servers;

use common::pgserver::*;
use common::Site;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

/// Rows Python writes as CSV, JSON lines and Parquet, and as the values they hold.
const WRITER: &str = r#"
import csv, datetime, json, random, sys
import pyarrow as pa, pyarrow.parquet as pq

out, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(7)
notes = ['plain', 'a "quoted" word', 'comma, inside', 'two\nlines', 'tab\there',
         'back\\slash', '\\N', 'ünïcödé ✓', "it's", ' lead and trail ', 'crlf\r\nend']
epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
base = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
rows = []
for i in range(1, n + 1):
    rows.append({
        'id': i,
        'note': None if i % 7 == 0 else f'{notes[i % len(notes)]} {i}',
        'x': None if i % 11 == 0 else rnd.uniform(-1e6, 1e6),
        'ok': None if i % 13 == 0 else i % 2 == 0,
        'ts': base + datetime.timedelta(minutes=37 * i, microseconds=i),
    })
with open(f'{out}/data.csv', 'w', newline='', encoding='utf-8') as f:
    w = csv.writer(f)
    w.writerow(['id', 'note', 'x', 'ok', 'ts'])
    for r in rows:
        w.writerow([r['id'], r['note'], r['x'], r['ok'], r['ts'].isoformat()])
with open(f'{out}/data.jsonl', 'w', encoding='utf-8') as f:
    for r in rows:
        o = dict(r, ts=r['ts'].isoformat())
        if r['note'] is None:
            del o['note']
        f.write(json.dumps(o) + '\n')
table = pa.table({
    'id': pa.array([r['id'] for r in rows], pa.int64()),
    'note': pa.array([r['note'] for r in rows], pa.string()),
    'x': pa.array([r['x'] for r in rows], pa.float64()),
    'ok': pa.array([r['ok'] for r in rows], pa.bool_()),
    'ts': pa.array([r['ts'] for r in rows], pa.timestamp('us', tz='UTC')),
})
pq.write_table(table, f'{out}/data.parquet', row_group_size=max(1, n // 3))
with open(f'{out}/expected.json', 'w') as f:
    json.dump([dict(r, ts=(r['ts'] - epoch) // datetime.timedelta(microseconds=1)) for r in rows], f)

# The same rows compressed (gzip by Python's gzip module, Zstandard by pyarrow's
# stream), and as TSV (Python's excel-tab dialect) and pipe-separated CSV.
import gzip
with open(f'{out}/data.csv', 'rb') as f:
    raw_csv = f.read()
with gzip.open(f'{out}/data.csv.gz', 'wb') as f:
    f.write(raw_csv)
with open(f'{out}/data.jsonl', 'rb') as f, pa.CompressedOutputStream(f'{out}/data.jsonl.zst', 'zstd') as z:
    z.write(f.read())
for name, dialect in [('data.tsv', dict(dialect='excel-tab')), ('data.psv', dict(delimiter='|'))]:
    with open(f'{out}/{name}', 'w', newline='', encoding='utf-8') as f:
        w = csv.writer(f, **dialect)
        w.writerow(['id', 'note', 'x', 'ok', 'ts'])
        for r in rows:
            w.writerow([r['id'], r['note'], r['x'], r['ok'], r['ts'].isoformat()])
with open(f'{out}/data.csv.gz', 'rb') as f:
    whole = f.read()
with open(f'{out}/cut.csv.gz', 'wb') as f:
    f.write(whole[: len(whole) * 2 // 3])

# Bad files: a value the column does not take, after a record of two lines.
with open(f'{out}/bad.csv', 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['id', 'note'])
    for r in [[1, 'a'], [2, 'two\nlines'], [3, 'c'], [4, 'd'], ['x5', 'e'], [6, 'f']]:
        w.writerow(r)
with open(f'{out}/bad_utf8.csv', 'wb') as f:
    f.write(b'id,note\n1,fine\n2,"bad \xff byte"\n')
with open(f'{out}/bad.jsonl', 'w') as f:
    f.write(json.dumps({'id': 1, 'note': 'a'}) + '\n\n')
    f.write(json.dumps({'id': 'nope', 'note': 'b'}) + '\n')
pq.write_table(pa.table({'id': pa.array(['1', '2', 'x3', '4'], pa.string())}), f'{out}/bad.parquet')
"#;

const ROWS: usize = 2000;

/// The test Python when it has pyarrow; with `STRATA_REQUIRE_TOOLS` a missing one fails.
fn python() -> Option<String> {
    strata_testkit::python_with("pyarrow.parquet")
}

/// A server, the files Python wrote, and the values they hold.
/// A PostgreSQL server (the kit's [`PgSite`]), the strata command for the empty
/// configuration in its directory, and the rows Python wrote there.
struct LoadSite {
    site: PgSite,
    cli: Site,
    expected: Vec<Value>,
}

impl LoadSite {
    fn new() -> Option<LoadSite> {
        if skip_without_postgres() {
            return None;
        }
        let python = python()?;
        let LoadSite { site, cli, .. } = LoadSite::bare()?;
        let out = Command::new(python)
            .args(["-c", WRITER])
            .arg(site.dir.path())
            .arg(ROWS.to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let expected = std::fs::read(site.path("expected.json")).unwrap();
        let expected = serde_json::from_slice::<Vec<Value>>(&expected).unwrap();
        Some(LoadSite {
            site,
            cli,
            expected,
        })
    }

    /// A server with schema `s` and no files: for tests that write their own (no Python).
    fn bare() -> Option<LoadSite> {
        if skip_without_postgres() {
            return None;
        }
        let site = PgSite::new("strata-load-file");
        let cli = Site::new()
            .whole_config("")
            .env("STRATA_TABLES_DB", &site.dsn("postgres"))
            .build_in(site.dir.path());
        site.pg.psql("postgres", "CREATE SCHEMA s");
        Some(LoadSite {
            site,
            cli,
            expected: Vec::new(),
        })
    }

    fn file(&self, name: &str) -> String {
        self.site.path(name).display().to_string()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.cli.command();
        cmd.args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "strata {args:?}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// `strata load --file FILE (in the site) --into INTO EXTRA...`.
    fn load(&self, file: &str, into: &str, extra: &[&str]) -> Output {
        let path = self.file(file);
        self.run(&[&["load", "--file", &path, "--into", into][..], extra].concat())
    }

    /// [`LoadSite::load`], which must succeed; its stdout.
    fn load_ok(&self, file: &str, into: &str, extra: &[&str]) -> String {
        let out = self.load(file, into, extra);
        assert!(out.status.success(), "load {file}: {}", text(&out.stderr));
        text(&out.stdout)
    }

    fn sql(&self, sql: &str) -> String {
        self.site.pg.psql("postgres", sql)
    }

    /// The rows of `table` in the form of expected.json, by id.
    fn rows(&self, table: &str) -> Vec<Value> {
        let json = self.sql(&format!(
            "SELECT coalesce(json_agg(json_build_object('id', id, 'note', note, 'x', x, 'ok', ok, \
             'ts', (extract(epoch FROM ts) * 1000000)::bigint) ORDER BY id), '[]') FROM {table}"
        ));
        serde_json::from_str(&json).unwrap()
    }

    /// expected.json's rows with ids in `ids`.
    fn expected(&self, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.expected.iter().filter(|r| keep(r)).cloned().collect()
    }

    fn existing_table(&self, table: &str) {
        self.sql(&format!(
            "CREATE TABLE {table} (extra text DEFAULT 'kept', ts timestamptz, id bigint, note text, x double precision, ok boolean)"
        ));
    }

    fn column_types(&self, schema: &str, table: &str) -> String {
        self.sql(&format!(
            "SELECT string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position) \
             FROM information_schema.columns WHERE table_schema = '{schema}' AND table_name = '{table}'"
        ))
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn load_file_csv_ndjson_and_parquet_into_existing_and_created_tables() {
    let Some(site) = LoadSite::new() else { return };
    let all = site.expected(|_| true);
    for (file, table) in [
        ("data.csv", "s.csv_existing"),
        ("data.jsonl", "s.json_existing"),
        ("data.parquet", "s.pq_existing"),
    ] {
        site.existing_table(table);
        let said = site.load_ok(file, table, &[]);
        assert!(
            said.contains(&format!("loaded {ROWS} rows into {table} from "))
                && said.contains(" s\n"),
            "{said}"
        );
        assert_eq!(site.rows(table), all, "{file} into {table}");
        // Columns the file does not have keep their defaults.
        assert_eq!(
            site.sql(&format!(
                "SELECT count(*) FROM {table} WHERE extra = 'kept'"
            )),
            ROWS.to_string()
        );
    }
    let inferred =
        "id bigint, note text, x double precision, ok boolean, ts timestamp with time zone";
    for (file, format, table) in [
        ("data.csv", "csv", "csv_created"),
        ("data.jsonl", "jsonl", "json_created"),
        ("data.parquet", "parquet", "pq_created"),
    ] {
        let into = format!("s.{table}");
        site.load_ok(file, &into, &["--format", format, "--create"]);
        assert_eq!(site.rows(&into), all, "{file} created as {into}");
        assert_eq!(site.column_types("s", table), inferred, "{file}");
    }
    // Loading it again with --create: the table exists now.
    let out = site.load("data.csv", "s.csv_created", &["--create"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("already exists"),
        "{}",
        text(&out.stderr)
    );
    // Audit rows need `tables setup`; without it the load works and records nothing.
    site.ok(&["tables", "setup"]);
    site.load_ok("data.parquet", "s.pq_audited", &["--create", "-q"]);
    let audit = site.sql("SELECT detail FROM strata.audit WHERE what = 'load'");
    assert!(
        audit.contains(&format!("{ROWS} rows from ")) && audit.contains("(parquet), table created"),
        "{audit}"
    );
}

/// Compressed files (gzip, Zstandard), TSV and another delimiter load the same rows;
/// a cut gzip file fails and loads nothing.
#[test]
fn load_file_compressed_tsv_and_delimited_files() {
    let Some(site) = LoadSite::new() else { return };
    let all = site.expected(|_| true);
    for (file, extra, table) in [
        ("data.csv.gz", &[][..], "s.from_gzip"),
        ("data.jsonl.zst", &[][..], "s.from_zstd"),
        ("data.tsv", &[][..], "s.from_tsv"),
        (
            "data.psv",
            &["--format", "csv", "--delimiter", "|"][..],
            "s.from_psv",
        ),
    ] {
        site.load_ok(file, table, &[&["--create"][..], extra].concat());
        assert_eq!(site.rows(table), all, "{file} into {table}");
    }
    let json = site.ok(&[
        "--json",
        "load",
        "--file",
        &site.file("data.csv.gz"),
        "--into",
        "s.from_gzip",
        "--dry-run",
    ]);
    let report: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (report["compression"].as_str(), report["rows"].as_u64()),
        (Some("gzip"), Some(ROWS as u64)),
        "{report}"
    );
    // A gzip file cut short: an error naming it, and no table.
    let out = site.load("cut.csv.gz", "s.from_cut", &["--create"]);
    assert_ne!(out.status.code(), Some(0));
    let err = text(&out.stderr);
    assert!(
        err.contains("cut.csv.gz") && err.lines().count() <= 2,
        "{err}"
    );
    assert_eq!(
        site.sql("SELECT count(*) FROM pg_tables WHERE tablename = 'from_cut'"),
        "0"
    );
    // Parquet compresses itself; a delimiter is for CSV only.
    for (args, needle) in [
        (
            &["--file", "x.parquet", "--compression", "gzip"][..],
            "Parquet",
        ),
        (
            &["--file", "x.jsonl", "--delimiter", ";"][..],
            "--delimiter",
        ),
    ] {
        let out = site.run(&[&["load", "--into", "s.nothing"][..], args].concat());
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains(needle), "{}", text(&out.stderr));
    }
}

#[test]
fn load_file_offset_limit_and_time_window_select_rows() {
    let Some(site) = LoadSite::new() else { return };
    let id = |r: &Value| r["id"].as_u64().unwrap();
    for (file, table) in [
        ("data.csv", "s.a"),
        ("data.jsonl", "s.b"),
        ("data.parquet", "s.c"),
    ] {
        site.load_ok(
            file,
            table,
            &["--create", "--offset", "10", "--limit", "25"],
        );
        assert_eq!(
            site.rows(table),
            site.expected(|r| (11..=35).contains(&id(r))),
            "{file}"
        );
    }
    // 2025-01-10 <= ts < 2025-01-20, in microseconds.
    let (start, stop) = (1_736_467_200_000_000i64, 1_737_331_200_000_000i64);
    let in_window = |r: &Value| (start..stop).contains(&r["ts"].as_i64().unwrap());
    for (file, table) in [
        ("data.csv", "s.w1"),
        ("data.jsonl", "s.w2"),
        ("data.parquet", "s.w3"),
    ] {
        site.existing_table(table);
        site.load_ok(
            file,
            table,
            &[
                "--time-column",
                "ts",
                "--start",
                "2025-01-10",
                "--stop",
                "2025-01-20T00:00:00Z",
            ],
        );
        let expected = site.expected(in_window);
        assert!(
            expected.len() > 300 && expected.len() < ROWS / 2,
            "{}",
            expected.len()
        );
        assert_eq!(site.rows(table), expected, "{file}");
    }
    // Both at once: the window among the rows after the offset.
    site.existing_table("s.both");
    site.load_ok(
        "data.csv",
        "s.both",
        &[
            "--offset",
            "400",
            "--limit",
            "200",
            "--time-column",
            "ts",
            "--start",
            "2025-01-10",
            "--stop",
            "2025-01-20",
        ],
    );
    assert_eq!(
        site.rows("s.both"),
        site.expected(|r| (401..=600).contains(&id(r)) && in_window(r))
    );
    let out = site.load(
        "data.csv",
        "s.both",
        &["--time-column", "nope", "--start", "2025-01-01"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--time-column \"nope\" is not a column of the file"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn load_file_dry_run_prints_the_schema_and_count_and_changes_nothing() {
    let Some(site) = LoadSite::new() else { return };
    let said = site.load_ok("data.csv", "s.dry", &["--create", "--dry-run"]);
    for needle in [
        "bigint",
        "double precision",
        "boolean",
        "timestamptz",
        "text",
        &format!("would load {ROWS} rows into s.dry, creating it"),
    ] {
        assert!(said.contains(needle), "{needle}: {said}");
    }
    assert_eq!(site.sql("SELECT to_regclass('s.dry') IS NULL"), "t");
    site.existing_table("s.kept");
    site.sql("INSERT INTO s.kept (id) VALUES (-1)");
    let said = site.load_ok(
        "data.parquet",
        "s.kept",
        &["--dry-run", "--limit", "7", "--json"],
    );
    let report: Value = serde_json::from_str(&said).unwrap();
    assert_eq!(report["rows"], 7);
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["columns"][3]["type"], "boolean", "{report}");
    assert_eq!(site.sql("SELECT count(*) FROM s.kept"), "1");
}

#[test]
fn load_file_bad_values_fail_naming_file_line_and_column_and_load_nothing() {
    let Some(site) = LoadSite::new() else { return };
    site.sql("CREATE TABLE s.t (id bigint, note text)");
    site.sql("INSERT INTO s.t VALUES (0, 'before')");
    for (file, needle) in [
        (
            "bad.csv",
            "bad.csv: line 7, column \"id\": invalid input syntax for type bigint: \"x5\"",
        ),
        (
            "bad_utf8.csv",
            "bad_utf8.csv: line 3, column \"note\": invalid UTF-8",
        ),
        (
            "bad.jsonl",
            "bad.jsonl: line 3, column \"id\": invalid input syntax for type bigint: \"nope\"",
        ),
        (
            "bad.parquet",
            "bad.parquet: row 3, column \"id\": invalid input syntax for type bigint: \"x3\"",
        ),
    ] {
        let out = site.load(file, "s.t", &[]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{file}: {stderr}");
        assert!(
            stderr.contains(needle) && stderr.contains("nothing loaded"),
            "{file}: {stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert_eq!(site.sql("SELECT count(*) FROM s.t"), "1", "{file}");
    }
    // With --create the failed load leaves no table either.
    let out = site.load("bad_utf8.csv", "s.new", &["--create"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(site.sql("SELECT to_regclass('s.new') IS NULL"), "t");
    // A missing file, a format not known from the name.
    let out = site.load("absent.csv", "s.t", &[]);
    assert!(
        text(&out.stderr).contains("absent.csv"),
        "{}",
        text(&out.stderr)
    );
    let out = site.load("expected.json", "s.t", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("give --format"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn load_file_from_the_s3_emulator() {
    let Some(site) = LoadSite::new() else { return };
    let server = servers::s3();
    std::fs::write(
        site.cli.config(),
        format!(
            "default_storage = \"cold\"\n[storages.cold]\nurl = \"{}\"\n",
            server.url
        ),
    )
    .unwrap();
    let store = strata_store::open_location(&server.url, &server.options).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for name in ["data.csv", "data.parquet"] {
        let data = std::fs::read(site.site.path(name)).unwrap();
        runtime
            .block_on(store.put(&format!("imports/{name}"), data.into()))
            .unwrap();
    }
    let run = |args: &[&str]| {
        let mut cmd = site.command(args);
        cmd.envs(server.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "strata {args:?}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    };
    let url = format!("{}/imports/data.csv", server.url);
    let said = run(&["load", "--file", &url, "--into", "s.from_s3", "--create"]);
    assert!(
        said.contains(&format!(
            "loaded {ROWS} rows into s.from_s3 (table created) from {url} in "
        )),
        "{said}"
    );
    assert_eq!(site.rows("s.from_s3"), site.expected(|_| true));
    run(&[
        "load",
        "--from",
        "cold",
        "--file",
        "imports/data.parquet",
        "--into",
        "s.pq_s3",
        "--create",
    ]);
    assert_eq!(site.rows("s.pq_s3"), site.expected(|_| true));
}

/// A load that fails: exit 1, one line on stderr holding every needle and "nothing
/// loaded". Its stderr.
fn refused(out: &Output, needles: &[&str]) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for needle in needles.iter().chain(&["nothing loaded"]) {
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    stderr
}

/// The file of issue 51: a quote that is never closed made the rest of the file one
/// value, and the load said "2 rows" with exit 0. It is refused, naming the line the
/// quote opened on, as PostgreSQL's own COPY refuses it, and nothing is loaded: into an
/// existing table, with --create, dry, and gzip compressed.
#[test]
fn load_file_an_unterminated_quote_is_refused_naming_its_line_and_loads_nothing() {
    let Some(site) = LoadSite::bare() else { return };
    let csv = "id,v\n1,a\n2,\"oops\n3,c\n4,d\n";
    std::fs::write(site.site.path("open.csv"), csv).unwrap();
    let gz = Command::new("gzip")
        .args(["-k", "-9"])
        .arg(site.site.path("open.csv"))
        .status()
        .unwrap();
    assert!(gz.success());
    // PostgreSQL's COPY (psql's \copy) refuses the file.
    site.sql("CREATE TABLE s.t (id bigint, v text)");
    let copy = site.site.pg.try_psql(
        "postgres",
        &format!("\\copy s.t FROM '{}' CSV HEADER", site.file("open.csv")),
    );
    let why = copy.expect_err("\\copy loads a quote never closed");
    assert!(why.contains("unterminated CSV quoted field"), "{why}");
    site.sql("INSERT INTO s.t VALUES (0, 'before')");
    let line = "open.csv: line 3: a quoted field opens here and is never closed: the file \
                ends inside it (an unterminated quote)";
    for extra in [&[][..], &["--dry-run"][..]] {
        refused(&site.load("open.csv", "s.t", extra), &[line]);
        assert_eq!(site.sql("SELECT count(*) FROM s.t"), "1", "{extra:?}");
    }
    let out = site.load("open.csv.gz", "s.t", &[]);
    refused(&out, &["open.csv.gz: line 3: a quoted field opens here"]);
    assert_eq!(site.sql("SELECT count(*) FROM s.t"), "1");
    for extra in [&["--create"][..], &["--create", "--dry-run"][..]] {
        refused(&site.load("open.csv", "s.new", extra), &[line]);
        assert_eq!(site.sql("SELECT to_regclass('s.new') IS NULL"), "t");
    }
    // Closed, the same file loads its four rows.
    std::fs::write(
        site.site.path("closed.csv"),
        csv.replace("oops", "oops\"").as_bytes(),
    )
    .unwrap();
    site.load_ok("closed.csv", "s.t", &[]);
    assert_eq!(site.sql("SELECT count(*) FROM s.t"), "5");
}

/// What `program` writes decompressing `file`, its own checks off or failing.
fn decompressed_anyway(program: &str, args: &[&str], file: &Path) -> Vec<u8> {
    Command::new(program)
        .args(args)
        .arg(file)
        .output()
        .unwrap()
        .stdout
}

/// Whether some line of `csv` (no quotes in it) does not have `fields` fields.
fn ragged(csv: &[u8], fields: usize) -> bool {
    csv.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .any(|l| l.split(|b| *b == b',').count() != fields)
}

/// Issue 51 too: a gzip file with one byte flipped was reported as a bad row ("line
/// 100013: 5 fields where the header has 4"): the damage decompresses to ragged rows
/// long before the member's checksum is read. The damaged stream is named instead, with
/// the decoder's word and the byte, and nothing is loaded; the same for zstd.
#[test]
fn load_file_a_damaged_gzip_or_zstd_stream_is_named_not_blamed_on_a_row() {
    let Some(site) = LoadSite::bare() else { return };
    let mut csv = b"id,name,qty,note\n".to_vec();
    for i in 0..200_000u64 {
        csv.extend_from_slice(
            format!("{i},item {},{},note {}\n", i * 7 % 1000, i % 97, i * 31).as_bytes(),
        );
    }
    std::fs::write(site.site.path("rows.csv"), &csv).unwrap();
    // Written by the gzip and zstd tools (zstd with its frame checksum, its default).
    // Both tools are required (scripts/test.sh installs them): a missing one fails.
    let codecs = vec![
        ("gzip", "gz", vec!["-dc"]),
        ("zstd", "zst", vec!["-dcq", "--no-check"]),
    ];
    site.sql("CREATE TABLE s.t (id bigint, name text, qty int, note text)");
    site.sql("INSERT INTO s.t VALUES (-1, 'before', 0, '')");
    for (program, ext, undo) in codecs {
        let status = Command::new(program)
            .args(["-k", "-q"])
            .arg(site.site.path("rows.csv"))
            .status()
            .unwrap();
        assert!(status.success(), "{program}");
        let whole_name = format!("rows.csv.{ext}");
        let whole = std::fs::read(site.site.path(&whole_name)).unwrap();
        let said = site.load_ok(&whole_name, "s.whole", &["--create"]);
        assert!(said.contains("loaded 200000 rows"), "{said}");
        // A byte flipped in the middle, where the tool itself, its check left out (or
        // failing only at the end), decompresses to ragged rows: what a load took for
        // a bad row.
        let damaged = site.site.path(&format!("damaged.csv.{ext}"));
        let at = (0..200)
            .map(|k| whole.len() / 2 + k * 13)
            .find(|at| {
                let mut bytes = whole.clone();
                bytes[*at] ^= 0x10;
                std::fs::write(&damaged, &bytes).unwrap();
                ragged(&decompressed_anyway(program, &undo, &damaged), 4)
            })
            .unwrap_or_else(|| panic!("no flip in {whole_name} makes ragged rows"));
        let file = format!("damaged.csv.{ext}");
        let stream = format!("{file}: the {program} stream is damaged (");
        for extra in [&[][..], &["--dry-run"][..]] {
            let stderr = refused(
                &site.load(&file, "s.t", extra),
                &[&stream, "), found at byte "],
            );
            assert!(!stderr.contains("fields where"), "{stderr}");
            let found: usize = stderr
                .split("found at byte ")
                .nth(1)
                .and_then(|r| r.split(';').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{stderr}"));
            assert!(
                found >= at && found <= whole.len(),
                "flipped at {at}: {stderr}"
            );
            assert_eq!(
                site.sql("SELECT count(*) FROM s.t"),
                "1",
                "{file} {extra:?}"
            );
        }
        refused(&site.load(&file, "s.created", &["--create"]), &[&stream]);
        assert_eq!(site.sql("SELECT to_regclass('s.created') IS NULL"), "t");
        site.sql("DROP TABLE s.whole");
    }
}
