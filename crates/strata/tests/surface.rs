//! The surface scripts and clients rely on, kept across refactors: every command with
//! `--json` output runs on a fixed scenario, once in-process and once through a real
//! `strata server` (`--server URL`); the `GET` routes of that server's API and its OpenAPI
//! document are read too. Each output is reduced to its shape (key paths and JSON types,
//! the exit code; see `common/shape.rs` for the rules) and compared with the golden files in
//! `tests/fixtures/surface/`: every path of the golden must still be there with the same
//! type; additions pass, removals and type changes fail, each named.
//!
//! The goldens were captured from a binary built before the use-case layer moved out of
//! the CLI. To capture again (only when the change is an addition, or a change the
//! documentation records):
//!
//! ```text
//! STRATA_SURFACE_CAPTURE=1 cargo nextest run -p strata --test repository surface::
//! ```
//!
//! `STRATA_SURFACE_BIN=/path/to/strata` runs the scenario with another binary (an older
//! release, to capture its goldens or to see what it lacks).

use crate::common;
#[path = "common/shape.rs"]
mod shape;

use common::server::{http, Server};
use shape::{CommandShape, Stdout};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

const TOKEN: &str = "surface-user-token";
const PASSWORD: &str = "surface password";
/// Longest any one command may take: a guard against hanging, not a timing assertion.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// The binary under test: `STRATA_SURFACE_BIN`, else this build's `strata`.
fn binary() -> PathBuf {
    std::env::var_os("STRATA_SURFACE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_strata")))
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/surface")
}

/// Sets every file's and directory's mtime below `root` (and its own) to one old moment,
/// so no file is within the backup's "modified just now" window and every run reads the
/// same tree.
fn settle(root: &Path) {
    let t = filetime::FileTime::from_unix_time(1_700_000_000, 0);
    for entry in common::files_under(root) {
        filetime::set_symlink_file_times(root.join(entry), t, t).unwrap();
    }
    for dir in [root.join("sub"), root.join("sub/empty"), root.to_path_buf()] {
        filetime::set_file_times(dir, t, t).unwrap();
    }
}

/// A scratch site: a config with one in-process node `db1` over `data`, the storage
/// `main` (default; not initialised: `init` is a step of the scenario) and a second
/// storage `cold` to copy to (initialised). Its commands run [`binary`] with a clean
/// environment: the password, the user token (the server's default
/// `[server.user_token]` is `$STRATA_TOKEN`), a fixed user. The directory is kept by the
/// caller.
fn new_site() -> (tempfile::TempDir, common::Site) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fs::create_dir_all(data.join("sub/empty")).unwrap();
    fs::write(data.join("a.conf"), b"setting = 1\n").unwrap();
    fs::write(data.join("sub/table"), common::table_pages(4, 7)).unwrap();
    fs::write(data.join("sub/blob"), common::pseudo_random(70_000, 5)).unwrap();
    std::os::unix::fs::symlink("a.conf", data.join("link")).unwrap();
    settle(&data);
    let site = common::Site::new()
        .node("db1", "data")
        .config_extra(&format!(
            "[storages.cold]\npath = \"{}\"\n",
            dir.path().join("cold").display()
        ))
        .binary(&binary())
        .env("STRATA_PASSWORD", PASSWORD)
        .token(TOKEN)
        .env("USER", "operator")
        .build_in(dir.path());
    site.ok(&["--storage", "cold", "init"]);
    (dir, site)
}

/// Runs the scenario's commands on one transport and keeps each one's shape.
struct Run<'a> {
    site: &'a common::Site,
    /// `Some(url)`: every command gets `--server URL`.
    server: Option<String>,
    /// Backup names and paths replaced by placeholders in the recorded command lines.
    placeholders: Vec<(String, String)>,
    shapes: BTreeMap<String, CommandShape>,
    /// The API's own replies (server transport only), by label.
    api: BTreeMap<String, CommandShape>,
}

impl Run<'_> {
    /// With a server: reads every `GET` route of the coordinator API that the scenario's
    /// state gives an answer to, recording each reply's shape with its HTTP status in
    /// place of an exit code. The CLI's `--server` mode is one client of these; scripts
    /// and the dashboard are others.
    fn api_reads(&mut self, backup: &str) {
        let Some(url) = self.server.clone() else {
            return;
        };
        let files = format!("/api/v1/backups/{backup}/files");
        let routes = [
            ("backups", "/api/v1/backups".to_string()),
            ("backup", format!("/api/v1/backups/{backup}")),
            ("backup-unknown", "/api/v1/backups/nosuch".to_string()),
            ("files", files.clone()),
            (
                "files-page",
                format!("{files}?node=db1&path=sub&limit=2&offset=1"),
            ),
            ("status", "/api/v1/status".to_string()),
            ("operations", "/api/v1/operations".to_string()),
            ("schedules", "/api/v1/schedules".to_string()),
            ("audit", "/api/v1/audit?since=1d&limit=5".to_string()),
            ("wal", "/api/v1/wal".to_string()),
            ("check", "/api/v1/check".to_string()),
            ("config", "/api/v1/config".to_string()),
            ("no-token", "/api/v1/backups".to_string()),
        ];
        for (label, path) in routes {
            let token = (label != "no-token").then_some(TOKEN);
            let reply = http(&url, "GET", &path, token, "");
            let mut line = format!("GET {path}");
            for (value, name) in &self.placeholders {
                line = line.replace(value.as_str(), name);
            }
            if token.is_none() {
                line.push_str(" (no token)");
            }
            let shape = CommandShape::new(line, Some(i32::from(reply.status)), &reply.body, false);
            self.api.insert(label.to_string(), shape);
        }
    }

    /// Runs `strata [--server URL] --json ARGS` within [`COMMAND_LIMIT`]; records its
    /// shape under `label` and returns its stdout.
    fn step(&mut self, label: &str, args: &[&str]) -> String {
        assert!(
            !self.shapes.contains_key(label),
            "step {label} twice in the scenario"
        );
        let mut cmd = self.site.command();
        if let Some(url) = &self.server {
            cmd.args(["--server", url]);
        }
        cmd.arg("--json").args(args);
        let out_path = self.site.path("stdout");
        let err_path = self.site.path("stderr");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out_path).unwrap())
            .stderr(fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + COMMAND_LIMIT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("strata {args:?} still ran after {COMMAND_LIMIT:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let stdout = fs::read_to_string(&out_path).unwrap();
        let mut line = String::from("strata");
        if self.server.is_some() {
            line.push_str(" --server URL");
        }
        line.push_str(" --json");
        for arg in args {
            let mut arg = arg.to_string();
            for (value, name) in &self.placeholders {
                arg = arg.replace(value.as_str(), name);
            }
            line.push(' ');
            line.push_str(&arg);
        }
        let toml = args.first() == Some(&"config");
        let mut shape = CommandShape::new(line, status.code(), &stdout, toml);
        if !status.success() {
            // Why it failed, for the reader of the golden (not compared).
            let stderr = fs::read_to_string(&err_path).unwrap_or_default();
            let mut why = stderr.lines().next().unwrap_or_default().to_string();
            for (value, name) in &self.placeholders {
                why = why.replace(value.as_str(), name);
            }
            shape.stderr = Some(why);
        }
        self.shapes.insert(label.to_string(), shape);
        stdout
    }

    /// The names `list --json` shows, oldest first.
    fn names(&self) -> Vec<String> {
        let mut cmd = self.site.command();
        if let Some(url) = &self.server {
            cmd.args(["--server", url]);
        }
        let out = common::succeed(cmd.args(["--json", "list"]));
        let list: serde_json::Value = serde_json::from_str(&out).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .map(|b| b["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// After a `backup` that returned at once (with `--server` and no `--wait`): waits
    /// until the operation it started has ended, so the next command does not find the
    /// cluster busy.
    fn wait_for_backups(&self, count: usize, started: &str) {
        let Some(url) = &self.server else { return };
        let id = serde_json::from_str::<serde_json::Value>(started)
            .ok()
            .and_then(|v| v["id"].as_str().map(String::from));
        strata_testkit::wait_for(
            "the backup started through the server to end",
            COMMAND_LIMIT,
            Duration::from_millis(100),
            || match &id {
                Some(id) => {
                    let path = format!("/api/v1/operations/{id}");
                    let reply = http(url, "GET", &path, Some(TOKEN), "");
                    if reply.status == 200 {
                        reply.json()["state"] != "running"
                    } else {
                        self.names().len() >= count
                    }
                }
                // A server that does not say which operation it started (or does not
                // know it by that id): wait for the backup to be listed.
                None => self.names().len() >= count,
            },
        );
    }
}

/// The fixed scenario, the same on both transports: two backups, every reading command,
/// the refusals scripts meet (unknown backup, `latest` to delete, a pinned backup, a
/// second copy), then the removing ones.
fn scenario(run: &mut Run) {
    let site = run.site;
    let to = site.path("restored");
    let to = to.to_str().unwrap();
    run.placeholders
        .push((site.dir().display().to_string(), "$SITE".into()));
    run.step("init", &["init"]);
    run.step("backup-wait", &["backup", "--wait"]);
    fs::write(site.path("data").join("added"), b"new file\n").unwrap();
    fs::write(site.path("data").join("a.conf"), b"setting = 2\n").unwrap();
    settle(&site.path("data"));
    let started = run.step("backup", &["backup"]);
    run.wait_for_backups(2, &started);
    let names = run.names();
    assert_eq!(names.len(), 2, "{names:?}");
    let (first, second) = (names[0].clone(), names[1].clone());
    run.placeholders.push((first.clone(), "$FIRST".into()));
    run.placeholders.push((second.clone(), "$SECOND".into()));

    run.step("list", &["list"]);
    run.step("show", &["show", "latest"]);
    run.step("show-unknown", &["show", "nosuch"]);
    run.step("ls", &["ls", "latest"]);
    run.step("ls-node-path", &["ls", &first, "--node", "db1", "sub"]);
    run.step("verify", &["verify"]);
    run.step("verify-one", &["verify", &first]);
    run.step("verify-read-data", &["verify", "--read-data"]);
    run.step("verify-subset", &["verify", "--read-data-subset", "50%"]);
    run.step("verify-restore", &["verify", "--restore", "latest"]);
    run.step("pin", &["pin", &second]);
    run.step("show-pinned", &["show", &second]);
    run.step("delete-pinned", &["delete", &second]);
    run.step("unpin", &["unpin", &second]);
    run.step("delete-latest", &["delete", "latest"]);
    run.step("copy", &["copy", "latest", "--to", "cold"]);
    run.step("copy-again", &["copy", "latest", "--to", "cold"]);
    run.step("restore-to", &["restore", "latest", "--to", to]);
    run.step("restore-in-place", &["restore", "latest"]);
    run.step(
        "cleanup-dry-run",
        &["cleanup", "--dry-run", "--keep-last", "1"],
    );
    run.step("gc-dry-run", &["gc", "--dry-run"]);
    run.step("repair-index-dry-run", &["repair", "index", "--dry-run"]);
    run.step(
        "repair-backups-dry-run",
        &["repair", "backups", "--dry-run"],
    );
    run.step("audit", &["audit"]);
    run.step("audit-since", &["audit", "--since", "1d", "--limit", "3"]);
    run.step("key-list", &["key", "list"]);
    run.step("status", &["status"]);
    run.step("schedules", &["schedules"]);
    run.step("wal-list", &["wal", "list"]);
    run.step("wal-verify", &["wal", "verify"]);
    run.step("config-show", &["config", "show"]);
    run.step("config-default", &["config", "default"]);
    run.step("list-verified", &["list"]);
    run.api_reads(&second);
    failures(run, &first);

    // The removing commands, last.
    run.step("cleanup", &["cleanup", "--keep-last", "1"]);
    fs::write(site.path("data").join("added"), b"changed again\n").unwrap();
    settle(&site.path("data"));
    run.step("backup-third", &["backup", "--wait"]);
    let names = run.names();
    let third = names.last().unwrap().clone();
    assert!(!names.contains(&first), "cleanup kept {first}: {names:?}");
    assert_ne!(third, second, "{names:?}");
    run.placeholders.push((third.clone(), "$THIRD".into()));
    run.step("delete", &["delete", &third]);
    run.step("gc", &["gc"]);
    run.step("list-end", &["list"]);
    // The second backup is in both storages now (copied to `cold`).
    run.step("delete-copied", &["delete", &second]);
}

/// The failures scripts meet, each with its documented exit code, the same on both
/// transports: a damaged backup (4), bad input and an unknown node (2), a busy cluster
/// (6). Leaves the site as it found it.
fn failures(run: &mut Run, backup: &str) {
    let site = run.site;
    let summary = site.path("repo").join("summaries").join(backup);
    let intact = fs::read(&summary).unwrap();
    fs::write(&summary, &intact[..intact.len() / 2]).unwrap();
    run.step("show-damaged", &["show", backup]);
    run.step("ls-damaged", &["ls", backup]);
    run.step("verify-damaged", &["verify", backup]);
    run.step("restore-damaged", &["restore", backup]);
    run.step("pin-damaged", &["pin", backup]);
    run.step("delete-damaged", &["delete", backup]);
    fs::write(&summary, &intact).unwrap();

    run.step("ls-bad-node", &["ls", "latest", "--node", "../db1"]);
    run.step("ls-unknown-node", &["ls", "latest", "--node", "db9"]);

    // A backup stopped while it holds the cluster lock (before it writes its summary).
    let hold = site.path("hold");
    let _ = fs::remove_dir_all(&hold);
    fs::create_dir_all(&hold).unwrap();
    let mut held = site
        .command()
        .arg("backup")
        .env(
            "STRATA_TEST_HOLD_WRITE",
            format!("summaries/:{}", hold.display()),
        )
        .stdout(fs::File::create(site.path("held.stdout")).unwrap())
        .stderr(fs::File::create(site.path("held.stderr")).unwrap())
        .spawn()
        .unwrap();
    strata_testkit::wait_for(
        "the held backup's summary write",
        COMMAND_LIMIT,
        Duration::from_millis(20),
        || {
            if let Some(status) = held.try_wait().unwrap() {
                panic!(
                    "the held backup ended ({status}): {} {}",
                    fs::read_to_string(site.path("held.stderr")).unwrap_or_default(),
                    fs::read_to_string(site.path("held.stdout")).unwrap_or_default()
                );
            }
            hold.join("held").exists()
        },
    );
    run.step("delete-busy", &["delete", backup]);
    // Killed, not let go: it leaves no backup behind, and a dead holder's lock is void.
    held.kill().unwrap();
    held.wait().unwrap();
}

/// Runs the scenario in-process and through a server, each on a fresh site; returns the
/// shapes by golden file name (`local/LABEL`, `server/LABEL`, `api/LABEL`) and the
/// OpenAPI document's lines.
fn capture() -> (
    BTreeMap<String, CommandShape>,
    std::collections::BTreeSet<String>,
) {
    let mut all = BTreeMap::new();

    let (_dir, site) = new_site();
    let mut run = Run {
        site: &site,
        server: None,
        placeholders: Vec::new(),
        shapes: BTreeMap::new(),
        api: BTreeMap::new(),
    };
    scenario(&mut run);
    for (label, shape) in run.shapes {
        all.insert(format!("local/{label}"), shape);
    }

    let (_dir, site) = new_site();
    // `init` refuses --server: the repository is created here, the step records the refusal.
    site.ok(&["init"]);
    let server = Server::start(site.command(), &site.path("server.log"));
    let mut run = Run {
        site: &site,
        server: Some(server.url.clone()),
        placeholders: Vec::new(),
        shapes: BTreeMap::new(),
        api: BTreeMap::new(),
    };
    scenario(&mut run);
    for (label, shape) in run.shapes {
        all.insert(format!("server/{label}"), shape);
    }
    for (label, shape) in run.api {
        all.insert(format!("api/{label}"), shape);
    }
    let reply = http(&server.url, "GET", "/api/openapi.json", Some(TOKEN), "");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let openapi = shape::openapi_lines(&reply.json());
    assert!(
        openapi.iter().any(|l| l.starts_with("operation ")),
        "no operation in the OpenAPI document: {}",
        reply.body
    );
    (all, openapi)
}

const OPENAPI: &str = "openapi.shape";

/// Steps whose `--server` form differs from the in-process one by design: `backup`
/// without `--wait` returns the started operation (the CLI waits only in-process), and
/// `init`, `key list` and `restore --to` act on this host, so they refuse `--server`.
const DIFFERENT_BY_DESIGN: [&str; 4] = ["backup", "init", "key-list", "restore-to"];

/// Where the two transports of the binary the goldens were captured from already
/// differed, step by step, as [`CommandShape::regressions`] names it (server against
/// in-process). Kept so they are not forgotten; one that goes away is fine, a new one
/// fails.
const KNOWN_DIVERGENCES: [(&str, &str); 9] = [
    // `list --server` does not show the last verification of each backup.
    ("list-verified", "removed: $[].verified (was object)"),
    ("list-verified", "removed: $[].verified.mode (was string)"),
    ("list-verified", "removed: $[].verified.ok (was boolean)"),
    (
        "list-verified",
        "removed: $[].verified.when_ms (was number)",
    ),
    ("list-end", "removed: $[].verified (was object)"),
    ("list-end", "removed: $[].verified.mode (was string)"),
    ("list-end", "removed: $[].verified.ok (was boolean)"),
    ("list-end", "removed: $[].verified.when_ms (was number)"),
    // A backup in two storages: in-process `delete` asks which one (exit 2), the server
    // deletes it from its default storage.
    ("delete-copied", "exit code: was Some(2), now Some(0)"),
];

/// What the server transport lacks or changes against the in-process one, beyond
/// [`DIFFERENT_BY_DESIGN`] and [`KNOWN_DIVERGENCES`]: both transports must give the same
/// output.
fn transport_divergences(shapes: &BTreeMap<String, CommandShape>) -> Vec<String> {
    let mut out = Vec::new();
    for (name, local) in shapes {
        let Some(label) = name.strip_prefix("local/") else {
            continue;
        };
        if DIFFERENT_BY_DESIGN.contains(&label) {
            continue;
        }
        let Some(remote) = shapes.get(&format!("server/{label}")) else {
            out.push(format!("{label}: no --server run"));
            continue;
        };
        for p in remote.regressions(local) {
            if !KNOWN_DIVERGENCES.contains(&(label, p.as_str())) {
                out.push(format!("{label}: --server against in-process: {p}"));
            }
        }
    }
    out
}

#[test]
fn every_command_and_the_openapi_document_keep_their_shape() {
    let (shapes, openapi) = capture();
    let divergences = transport_divergences(&shapes);
    let dir = golden_dir();
    if std::env::var_os("STRATA_SURFACE_CAPTURE").is_some_and(|v| v == "1") {
        let _ = fs::remove_dir_all(&dir);
        for sub in ["local", "server", "api"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        for (name, shape) in &shapes {
            fs::write(dir.join(format!("{name}.shape")), shape.render()).unwrap();
        }
        fs::write(
            dir.join(OPENAPI),
            shape::render_lines("GET /api/openapi.json", &openapi),
        )
        .unwrap();
        assert!(
            divergences.is_empty(),
            "captured, but the transports differ:\n{}",
            divergences.join("\n")
        );
        return;
    }

    // What this binary printed, beside the goldens, for a reader who wants to diff.
    let actual = Path::new(env!("CARGO_TARGET_TMPDIR")).join("surface-actual");
    let _ = fs::remove_dir_all(&actual);
    for sub in ["local", "server", "api"] {
        fs::create_dir_all(actual.join(sub)).unwrap();
    }
    for (name, shape) in &shapes {
        fs::write(actual.join(format!("{name}.shape")), shape.render()).unwrap();
    }
    fs::write(
        actual.join(OPENAPI),
        shape::render_lines("GET /api/openapi.json", &openapi),
    )
    .unwrap();

    let mut problems = Vec::new();
    let mut goldens = 0;
    for sub in ["local", "server", "api"] {
        let entries = fs::read_dir(dir.join(sub))
            .unwrap_or_else(|e| panic!("no goldens in {}: {e}", dir.join(sub).display()));
        for entry in entries {
            let path = entry.unwrap().path();
            let label = path.file_stem().unwrap().to_str().unwrap().to_string();
            let name = format!("{sub}/{label}");
            let golden = CommandShape::parse(&fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            goldens += 1;
            match shapes.get(&name) {
                None => problems.push(format!(
                    "{name} ({}): the scenario no longer runs it",
                    golden.command
                )),
                Some(now) => {
                    for p in now.regressions(&golden) {
                        problems.push(format!("{name} ({}): {p}", golden.command));
                    }
                }
            }
        }
    }
    for name in shapes.keys() {
        if !dir.join(format!("{name}.shape")).exists() {
            problems.push(format!(
                "{name}: no golden file (a new step: capture with STRATA_SURFACE_CAPTURE=1)"
            ));
        }
    }
    let golden_openapi =
        shape::parse_lines(&fs::read_to_string(dir.join(OPENAPI)).expect("no OpenAPI golden"));
    assert!(!golden_openapi.is_empty(), "the OpenAPI golden is empty");
    for p in shape::line_regressions(&golden_openapi, &openapi) {
        problems.push(format!("openapi: {p}"));
    }
    problems.extend(divergences);
    assert!(goldens > 40, "only {goldens} command goldens");
    assert!(
        problems.is_empty(),
        "the surface lost or changed {} thing(s) against tests/fixtures/surface \
         (this binary's shapes are in {}):\n{}",
        problems.len(),
        actual.display(),
        problems.join("\n")
    );
}

/// The shape rules themselves, on small documents: additions pass, removals, type
/// changes, `null` becoming absent and exit code changes are named.
#[test]
fn shape_rules() {
    let before = CommandShape::new(
        "x".into(),
        Some(0),
        r#"[{"a": 1, "b": null, "c": {"d": "x"}}, {"a": 2, "b": null, "c": {"d": "y"}}]"#,
        false,
    );
    let added = CommandShape::new(
        "x".into(),
        Some(0),
        r#"[{"a": 1.5, "b": {"new": true}, "c": {"d": "x", "e": []}, "f": 1}]"#,
        false,
    );
    assert_eq!(added.regressions(&before), Vec::<String>::new());
    let worse = CommandShape::new("x".into(), Some(2), r#"[{"a": "1", "c": {}}]"#, false);
    assert_eq!(
        worse.regressions(&before),
        vec![
            "exit code: was Some(0), now Some(2)".to_string(),
            "type changed: $[].a was number, now string".to_string(),
            "removed: $[].b (was null)".to_string(),
            "removed: $[].c.d (was string)".to_string(),
        ]
    );
    let round = CommandShape::parse(&before.render()).unwrap();
    assert_eq!(round, before);
    let text = CommandShape::new("x".into(), Some(0), "not json", false);
    assert_eq!(text.stdout, Stdout::Text);
    assert_eq!(
        text.regressions(&before),
        vec!["stdout: was json, now text".to_string()]
    );
    let empty = CommandShape::new("x".into(), Some(0), "\n", false);
    assert_eq!(text.regressions(&empty), Vec::<String>::new());

    let doc = |required: &str, prop: &str| {
        serde_json::from_str::<serde_json::Value>(&format!(
            r##"{{"openapi": "3.1.0", "paths": {{"/a": {{"get": {{"responses": {{"200": {{"content":
            {{"application/json": {{"schema": {{"$ref": "#/components/schemas/A"}}}}}}}}}}}}}}}},
            "components": {{"schemas": {{"A": {{"type": "object", "required": [{required}],
            "properties": {{"x": {{"type": "{prop}"}}}}}}}}}}}}"##
        ))
        .unwrap()
    };
    let was = shape::openapi_lines(&doc(r#""x""#, "string"));
    assert!(
        was.contains("response GET /a 200 application/json: A"),
        "{was:#?}"
    );
    assert!(was.contains("schema A.x: string"), "{was:#?}");
    assert!(was.contains("schema A required x"), "{was:#?}");
    let now = shape::openapi_lines(&doc("", "integer"));
    assert_eq!(
        shape::line_regressions(&was, &now),
        vec![
            "removed: schema A required x".to_string(),
            "changed: schema A.x: string  ->  schema A.x: integer".to_string(),
        ]
    );
}
