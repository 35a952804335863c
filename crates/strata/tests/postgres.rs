//! The postgres plugin against real PostgreSQL 15 servers that the tests create with
//! initdb: base backups under a pgbench write load, WAL archiving through the real
//! `archive_command`, restores that start the server and recover to a point in time, a
//! backup from a streaming standby with both nodes restored, and the faults an operator
//! meets (store unreachable while archiving, WAL missing on restore, server stopped in the
//! middle of a backup), and tablespaces and configuration files outside the data directory.
//!
//! Everything PostgreSQL runs, and every strata command (PostgreSQL runs `strata wal-push`
//! itself), runs as the `postgres` user when the tests run as root. Skipped, loudly, where
//! PostgreSQL 15 is not installed (`scripts/test.sh` installs it).

use crate::common;

use common::pgserver::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A scratch directory owned by postgres with a copy of the binary, the password file
/// and a repository; the configurations for its PostgreSQL clusters are strata sites
/// ([`common::Site`]) built in it.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix("strata-pgclient")
            .tempdir()
            .unwrap();
        std::fs::write(dir.path().join("password"), "pg test password\n").unwrap();
        // PostgreSQL runs strata as the postgres user, who may not be allowed into the
        // build directory: a copy beside the data is always reachable.
        std::fs::copy(env!("CARGO_BIN_EXE_strata"), dir.path().join("strata")).unwrap();
        chown_to_postgres(dir.path());
        Scratch { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The strata binary PostgreSQL and the tests run.
    fn exe(&self) -> PathBuf {
        self.path("strata")
    }

    /// Writes config `name` with the given nodes (`(name, server, primary_conninfo)`).
    fn config(
        &self,
        name: &str,
        nodes: &[(&str, &PgServer, Option<String>)],
        extra: &str,
    ) -> common::Site {
        let mut text = format!(
            "plugin = \"postgres\"\nstate_dir = \"{state}\"\n{extra}\n[password]\nfile = \"{pw}\"\n\n[storages.local]\npath = \"{repo}\"\n\n[postgres]\nwal_wait_secs = 60\nrecovery_timeout_secs = 120\n",
            state = self.path("state").display(),
            pw = self.path("password").display(),
            repo = self.path("repo").display(),
        );
        for (node, server, primary) in nodes {
            text.push_str(&format!(
                "\n[[nodes]]\nname = \"{node}\"\n[nodes.postgres]\ndata_dir = \"{}\"\nconnect = {{ host = \"{}\", port = {}, user = \"postgres\", dbname = \"postgres\" }}\n",
                server.data_dir.display(),
                server.socket_dir.display(),
                server.port,
            ));
            if let Some(primary) = primary {
                text.push_str(&format!("primary_conninfo = \"{primary}\"\n"));
            }
        }
        self.site(name, &text)
    }

    /// Writes config `name` holding `text`: a strata site whose commands run the copied
    /// binary as postgres with the configuration's password file.
    fn site(&self, name: &str, text: &str) -> common::Site {
        let site = common::Site::new()
            .whole_config(text)
            .file(name)
            .binary(&self.exe())
            .run_as_postgres()
            .password_file()
            .build_in(self.dir.path());
        chown_to_postgres(site.config());
        site
    }

    /// `strata --config CONFIG ARGS` as postgres, not started.
    fn command(&self, config: &common::Site, args: &[&str]) -> Command {
        let mut cmd = config.command();
        cmd.args(args);
        cmd
    }

    /// `strata --config CONFIG ARGS` as postgres.
    fn strata(&self, config: &common::Site, args: &[&str]) -> Output {
        self.command(config, args).output().unwrap()
    }

    /// A primary in `primary` archiving into this site's repository (created), not
    /// started, and its configuration.
    fn archiving_primary(&self) -> (PgServer, common::Site) {
        let primary = PgServer::init(&self.path("primary"));
        let config = self.config("strata.toml", &[("db", &primary, None)], "");
        primary.set_conf(&self.archive_command(config.config()));
        self.ok(&config, &["init"]);
        (primary, config)
    }

    fn ok(&self, config: &common::Site, args: &[&str]) -> String {
        let out = self.strata(config, args);
        assert!(
            out.status.success(),
            "strata {args:?} failed ({:?}):\n{}{}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.recovery_logs()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The logs of servers strata started for recovery, for failure messages.
    fn recovery_logs(&self) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(self.path("state"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with("-recovery.log") {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                out.push_str(&format!(
                    "--- {name}\n{}\n",
                    lines[lines.len().saturating_sub(30)..].join("\n")
                ));
            }
        }
        out
    }

    /// The archive command that sends WAL to this site's repository.
    fn archive_command(&self, config: &Path) -> String {
        format!(
            "archive_command = '\"{}\" --config \"{}\" -q wal-push %p'",
            self.exe().display(),
            config.display()
        )
    }
}

/// Waits until the server has archived everything up to its current segment.
fn wait_archived(server: &PgServer) {
    let segment = server.psql("postgres", "SELECT pg_walfile_name(pg_switch_wal())");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let last = server.psql(
            "postgres",
            "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver",
        );
        if last >= segment {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "segment {segment} not archived within a minute (last: {last}); log:\n{}",
            server.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A server for restoring into `dir`: its own port and socket, nothing running yet.
fn fresh_target(site: &Scratch, dir: &str) -> PgServer {
    PgServer::vacant(&site.path(dir))
}

#[test]
fn base_backup_under_load_restores_to_the_latest_state_and_to_a_point_in_time() {
    if skip_without_postgres() {
        return;
    }
    let site = Scratch::new();
    let (primary, config) = site.archiving_primary();
    primary.start();
    primary.pgbench_init("bench", 3);

    // A base backup while pgbench writes.
    let mut load = primary.pgbench_spawn("bench", 8);
    std::thread::sleep(Duration::from_secs(1));
    let out = site.ok(&config, &["backup"]);
    assert!(out.contains("complete"), "{out}");
    assert!(load.wait().unwrap().success(), "pgbench failed");
    let list = site.ok(&config, &["--json", "list"]);
    let backups: serde_json::Value = serde_json::from_str(&list).unwrap();
    let node = &backups[0]["nodes"][0];
    assert_eq!(node["plugin"]["postgres.from_standby"], "false");
    assert!(node["plugin"]["postgres.start_wal"].as_str().unwrap().len() == 24);

    // Archiving while the store is unreachable fails, PostgreSQL keeps the segments and
    // retries, and nothing is lost once the store is back.
    let repo = site.path("repo");
    let away = site.path("repo-away");
    std::fs::rename(&repo, &away).unwrap();
    primary.psql(
        "bench",
        "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid < 500",
    );
    primary.psql("postgres", "SELECT pg_switch_wal()");
    let deadline = Instant::now() + Duration::from_secs(30);
    while primary.psql("postgres", "SELECT failed_count FROM pg_stat_archiver") == "0" {
        assert!(
            Instant::now() < deadline,
            "archiving did not fail without its store"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::fs::rename(&away, &repo).unwrap();

    // A point in time between two marked writes.
    primary.psql(
        "bench",
        "CREATE TABLE marks (id int, at timestamptz DEFAULT clock_timestamp())",
    );
    primary.psql("bench", "INSERT INTO marks (id) VALUES (1)");
    std::thread::sleep(Duration::from_millis(1200));
    let target = primary.psql("bench", "SELECT clock_timestamp()::text");
    let at_target = primary.table_checksums("bench");
    std::thread::sleep(Duration::from_millis(1200));
    primary.psql("bench", "INSERT INTO marks (id) VALUES (2)");
    primary.psql(
        "bench",
        "UPDATE pgbench_branches SET bbalance = bbalance + 7",
    );
    wait_archived(&primary);
    let latest = primary.table_checksums("bench");
    assert_ne!(at_target, latest);
    // A second base backup, taken after the target: a restore to the target must pick the
    // first one.
    let out = site.ok(&config, &["backup"]);
    assert!(out.contains("complete"), "{out}");
    wait_archived(&primary);

    let wal = site.ok(&config, &["--json", "wal", "list"]);
    let wal: serde_json::Value = serde_json::from_str(&wal).unwrap();
    let timelines = wal["archive"]["timelines"].as_array().unwrap();
    assert_eq!(timelines.len(), 1, "{wal}");
    assert_eq!(
        timelines[0]["ranges"].as_array().unwrap().len(),
        1,
        "a gap in the archive: {wal}"
    );
    assert_eq!(wal["backups"][0]["consistent"], true);
    let verify = site.ok(&config, &["wal", "verify"]);
    assert!(verify.contains(", 0 damaged"), "{verify}");
    fetch_reads_ahead(
        &site,
        &config,
        timelines[0]["ranges"][0][0].as_str().unwrap(),
    );

    // Restore the latest state into a new data directory: the server starts, replays
    // all archived WAL, and holds exactly what the source holds.
    let copy = fresh_target(&site, "latest");
    let cfg = site.config("latest.toml", &[("db", &copy, None)], "");
    let out = site.ok(&cfg, &["restore", "latest"]);
    assert!(out.contains("promoted"), "{out}");
    assert_eq!(copy.table_checksums("bench"), latest);
    copy.stop();
    // The restore started the prefetcher before the server, from the segment before the
    // second backup's first (a fetch's prefetcher starts after the segment it fetched).
    let second = &serde_json::from_str::<serde_json::Value>(&site.ok(&config, &["--json", "list"]))
        .unwrap()[1]["nodes"][0]["plugin"]["postgres.start_wal"];
    let before = segment_before(second.as_str().unwrap());
    let log = std::fs::read_to_string(site.path("state/wal-prefetch.log")).unwrap_or_default();
    assert!(
        log.contains(&format!("prefetching the WAL after {before}")),
        "{before}: {log}"
    );

    // Point-in-time: rows written before the target are there, those after are not.
    let pitr = fresh_target(&site, "pitr");
    let cfg = site.config("pitr.toml", &[("db", &pitr, None)], "");
    let out = site.ok(&cfg, &["restore", "latest", "--target-time", &target]);
    assert!(out.contains("promoted"), "{out}");
    assert_eq!(
        pitr.psql(
            "bench",
            "SELECT string_agg(id::text, ',' ORDER BY id) FROM marks"
        ),
        "1"
    );
    assert_eq!(pitr.table_checksums("bench"), at_target);
    pitr.stop();

    // A target beyond the archived WAL fails clearly instead of promoting early.
    let beyond = fresh_target(&site, "beyond");
    let cfg = site.config("beyond.toml", &[("db", &beyond, None)], "");
    let out = site.strata(
        &cfg,
        &[
            "restore",
            "latest",
            "--target-time",
            "2099-01-01 00:00:00+00",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("not in the archive"), "{stderr}");
    beyond.stop();

    // A segment the backup needs is gone: the restore refuses before touching anything.
    let start_wal = node["plugin"]["postgres.start_wal"].as_str().unwrap();
    std::fs::remove_file(repo.join("archive/wal").join(start_wal)).unwrap();
    let gone = fresh_target(&site, "gone");
    let cfg = site.config("gone.toml", &[("db", &gone, None)], "");
    let first = backups[0]["name"].as_str().unwrap();
    let out = site.strata(&cfg, &["restore", first]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(start_wal) && stderr.contains("is not in the archive"),
        "{stderr}"
    );
    let listed = site.strata(&config, &["wal", "list"]);
    assert_eq!(
        listed.status.code(),
        Some(4),
        "wal list reports the unrestorable backup"
    );
}

/// `wal-fetch` of `first` reads the following segments into the spool, and the next
/// call is served from there without opening the repository (its keys are moved away
/// meanwhile), with the same bytes the archive holds.
fn fetch_reads_ahead(site: &Scratch, config: &common::Site, first: &str) {
    let repo_id = serde_json::from_slice::<serde_json::Value>(
        &std::fs::read(site.path("repo").join("config")).unwrap(),
    )
    .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let spool = site.path("state").join("wal-spool").join(repo_id);
    let out = site.path("fetched");
    std::fs::create_dir_all(&out).unwrap();
    chown_to_postgres(&out);
    let dest = |name: &str| out.join(name).display().to_string();
    site.ok(config, &["wal-fetch", first, &dest("first")]);
    let mut spooled: Vec<String> = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.len() == 24 && name.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect();
    spooled.sort();
    assert!(!spooled.is_empty(), "nothing read ahead into {spool:?}");
    assert!(spooled.len() <= 8, "{spooled:?}");
    assert!(spooled[0].as_str() > first, "{spooled:?}");

    // Without the repository's keys it cannot be opened: only the spool can answer.
    let keys = site.path("repo").join("keys");
    let away = site.path("keys-away");
    std::fs::rename(&keys, &away).unwrap();
    site.ok(config, &["wal-fetch", &spooled[0], &dest("spooled")]);
    std::fs::rename(&away, &keys).unwrap();
    assert!(!spool.join(&spooled[0]).exists(), "taken from the spool");

    let direct = site.site(
        "direct.toml",
        &std::fs::read_to_string(config.config())
            .unwrap()
            .replace("[postgres]\n", "[postgres]\nwal_fetch_ahead = 0\n"),
    );
    site.ok(&direct, &["wal-fetch", &spooled[0], &dest("direct")]);
    assert_eq!(
        std::fs::read(dest("spooled")).unwrap(),
        std::fs::read(dest("direct")).unwrap()
    );
}

#[test]
fn backup_from_a_standby_restores_primary_and_standby() {
    if skip_without_postgres() {
        return;
    }
    let site = Scratch::new();
    let primary = PgServer::init(&site.path("p1"));
    let config_path = site.path("strata.toml");
    primary.set_conf(&site.archive_command(&config_path));
    primary.start();
    primary.pgbench_init("bench", 1);
    let standby = primary.make_standby(&site.path("p2"));
    standby.start();
    let primary_conninfo = format!(
        "host={} port={} user=postgres",
        primary.socket_dir.display(),
        primary.port
    );
    let config = site.config(
        "strata.toml",
        &[
            ("db1", &primary, None),
            ("db2", &standby, Some(primary_conninfo)),
        ],
        "",
    );
    std::fs::write(
        config.config(),
        std::fs::read_to_string(config.config())
            .unwrap()
            .replace("[postgres]\n", "[postgres]\nbackup_from = \"standby\"\n"),
    )
    .unwrap();
    site.ok(&config, &["init"]);

    let out = site.ok(&config, &["backup"]);
    assert!(out.contains("complete"), "{out}");
    let list: serde_json::Value =
        serde_json::from_str(&site.ok(&config, &["--json", "list"])).unwrap();
    let nodes = list[0]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "one copy of the cluster, from the standby");
    assert_eq!(nodes[0]["name"], "db2");
    assert_eq!(nodes[0]["plugin"]["postgres.from_standby"], "true");

    primary.psql(
        "bench",
        "UPDATE pgbench_branches SET bbalance = bbalance + 1",
    );
    wait_archived(&primary);
    let expected = primary.table_checksums("bench");

    // Lose both nodes; restore both in place from the one backup.
    standby.stop();
    primary.stop();
    for server in [&primary, &standby] {
        std::fs::remove_dir_all(&server.data_dir).unwrap();
        std::fs::create_dir(&server.data_dir).unwrap();
        chown_to_postgres(&server.data_dir);
    }
    let out = site.ok(&config, &["restore", "latest"]);
    assert!(
        out.contains("node db1: PostgreSQL recovered and promoted"),
        "{out}"
    );
    assert!(
        out.contains("node db2: PostgreSQL standby running"),
        "{out}"
    );
    assert_eq!(primary.table_checksums("bench"), expected);

    // The restored standby streams from the restored primary.
    primary.psql("bench", "CREATE TABLE after_restore AS SELECT 42 AS answer");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if standby
            .try_psql("bench", "SELECT answer FROM after_restore")
            .as_deref()
            == Ok("42")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "standby did not follow; logs:\n{}",
            site.recovery_logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(standby.psql("postgres", "SELECT pg_is_in_recovery()"), "t");
}

#[test]
fn a_backup_cut_short_by_the_server_stopping_is_recorded_as_failed() {
    if skip_without_postgres() {
        return;
    }
    let site = Scratch::new();
    let primary = PgServer::init(&site.path("p1"));
    let config = site.config("strata.toml", &[("db", &primary, None)], "");
    // WAL cannot be archived, so pg_backup_stop waits: the moment to stop the server.
    primary.set_conf("archive_command = '/bin/false'");
    site.ok(&config, &["init"]);
    primary.start();
    let mut cmd = Command::new(site.exe());
    cmd.arg("--config")
        .arg(config.config())
        .args(["-q", "backup"]);
    as_postgres(&mut cmd);
    let backup = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while primary.psql("postgres", "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_backup_stop%' AND pid <> pg_backend_pid()") == "0" {
        assert!(Instant::now() < deadline, "the backup never reached pg_backup_stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    primary.stop();
    let out = backup.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "recorded as failed");
    let list: serde_json::Value =
        serde_json::from_str(&site.ok(&config, &["--json", "list"])).unwrap();
    assert_eq!(list[0]["status"], "failed");
    assert!(
        list[0]["nodes"][0]["error"]
            .as_str()
            .unwrap()
            .contains("pg_backup_stop"),
        "{list}"
    );

    // PostgreSQL ended the backup with the session: the server starts normally and a
    // new backup can begin at once.
    assert!(!primary.data_dir.join("backup_label").exists());
    primary.start();
    assert_eq!(
        primary.psql(
            "postgres",
            "SELECT pg_backup_start('after', true) IS NOT NULL"
        ),
        "t"
    );
}

#[test]
fn tablespaces_and_configuration_outside_the_data_directory_come_back() {
    if skip_without_postgres() {
        return;
    }
    let site = Scratch::new();
    let primary = PgServer::init(&site.path("p1"));
    let hot = site.path("ts-hot");
    let etc = site.path("etc");
    for dir in [&hot, &etc] {
        std::fs::create_dir(dir).unwrap();
        chown_to_postgres(dir);
    }
    // A configuration file outside the data directory, included from postgresql.conf.
    let extra = etc.join("extra.conf");
    std::fs::write(&extra, "work_mem = '7MB'\n").unwrap();
    chown_to_postgres(&extra);
    primary.set_conf(&format!("include '{}'", extra.display()));
    let config = site.config("strata.toml", &[("db", &primary, None)], "");
    primary.set_conf(&site.archive_command(config.config()));
    site.ok(&config, &["init"]);
    primary.start();
    assert_eq!(primary.psql("postgres", "SHOW work_mem"), "7MB");
    primary.psql(
        "postgres",
        &format!(
            "CREATE TABLESPACE \"hot data\" LOCATION '{}'",
            hot.display()
        ),
    );
    primary.psql("postgres", "CREATE DATABASE app");
    primary.psql(
        "app",
        "CREATE TABLE events (id int PRIMARY KEY, body text) TABLESPACE \"hot data\"",
    );
    primary.psql(
        "app",
        "INSERT INTO events SELECT g, md5(g::text) FROM generate_series(1, 20000) g",
    );
    let oid = primary.psql(
        "postgres",
        "SELECT oid FROM pg_tablespace WHERE spcname = 'hot data'",
    );

    let out = site.ok(&config, &["backup"]);
    assert!(out.contains("complete"), "{out}");
    // Written after the backup: recovery replays it into the tablespace.
    primary.psql("app", "DELETE FROM events WHERE id % 3 = 0");
    primary.psql(
        "app",
        "INSERT INTO events SELECT g, 'late' FROM generate_series(20001, 20500) g",
    );
    wait_archived(&primary);
    let expected = primary.table_checksums("app");

    // The tablespace's original location holds the live source's files: a restore that
    // would write there is refused before it writes anything.
    let copy = fresh_target(&site, "copy");
    let cfg = site.config("copy.toml", &[("db", &copy, None)], "");
    let out = site.strata(&cfg, &["restore", "latest"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("hot data") && stderr.contains("not empty"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_dir(&copy.data_dir).unwrap().count(), 0);

    // Mapped elsewhere, it comes back there, linked from the data directory.
    let moved = site.path("ts-moved");
    let mut text = std::fs::read_to_string(cfg.config()).unwrap();
    text.push_str(&format!(
        "tablespaces = {{ \"hot data\" = \"{}\" }}\n",
        moved.display()
    ));
    std::fs::write(cfg.config(), text).unwrap();
    let out = site.ok(&cfg, &["restore", "latest"]);
    assert!(out.contains("promoted"), "{out}");
    assert!(
        out.contains(&format!("hot data at {}", moved.display())),
        "{out}"
    );
    assert_eq!(copy.table_checksums("app"), expected);
    assert_eq!(
        copy.psql(
            "postgres",
            "SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'hot data'"
        ),
        moved.display().to_string()
    );
    assert_eq!(
        std::fs::read_link(copy.data_dir.join("pg_tblspc").join(&oid)).unwrap(),
        moved
    );
    // The external configuration file is kept inside the restored data directory, under
    // its absolute path, never written over the original.
    let kept = copy
        .data_dir
        .join("strata.external-config")
        .join(extra.strip_prefix("/").unwrap());
    assert_eq!(std::fs::read(&kept).unwrap(), b"work_mem = '7MB'\n");

    // A table file inside the tablespace is damaged while the copy is down; a restore
    // over it (the tablespace is folded back in, files already right are kept) repairs
    // it and leaves the tablespace linked to its mapped location.
    let file = copy.psql("app", "SELECT pg_relation_filepath('events')");
    assert!(file.starts_with(&format!("pg_tblspc/{oid}/")), "{file}");
    copy.stop();
    std::fs::write(copy.data_dir.join(&file), b"damaged").unwrap();
    let out = site.ok(&cfg, &["restore", "latest"]);
    assert!(out.contains("promoted"), "{out}");
    assert_eq!(copy.table_checksums("app"), expected);
    assert_eq!(
        std::fs::read_link(copy.data_dir.join("pg_tblspc").join(&oid)).unwrap(),
        moved
    );
    copy.stop();
}

/// A cluster made with `initdb --waldir` (pg_wal a link to a directory outside the data
/// directory): with the node's `wal_dir` set to that directory an in-place restore empties
/// it through the recorded link and recovers; without it, the restore refuses to empty a
/// directory outside the node's roots and leaves everything there alone.
#[test]
fn a_cluster_made_with_waldir_recovers_in_place_and_a_pg_wal_link_outside_the_roots_is_refused() {
    if skip_without_postgres() {
        return;
    }
    let site = Scratch::new();
    let waldir = site.path("wal-outside");
    let primary = PgServer::init_with(
        &site.path("wd"),
        &[&format!("--waldir={}", waldir.display())],
    );
    assert_eq!(
        std::fs::read_link(primary.data_dir.join("pg_wal")).unwrap(),
        waldir
    );
    let with_wal_dir = |name: &str, wal_dir: Option<&Path>| {
        let cfg = site.config(name, &[("db", &primary, None)], "");
        if let Some(dir) = wal_dir {
            let mut text = std::fs::read_to_string(cfg.config()).unwrap();
            text.push_str(&format!("wal_dir = \"{}\"\n", dir.display()));
            std::fs::write(cfg.config(), text).unwrap();
        }
        cfg
    };
    let config = with_wal_dir("strata.toml", Some(&waldir));
    primary.set_conf(&site.archive_command(config.config()));
    site.ok(&config, &["init"]);
    primary.start();
    primary.psql("postgres", "CREATE TABLE t (id int)");
    primary.psql("postgres", "INSERT INTO t SELECT generate_series(1, 1000)");
    let out = site.ok(&config, &["backup"]);
    assert!(out.contains("complete"), "{out}");
    primary.psql(
        "postgres",
        "INSERT INTO t SELECT generate_series(1001, 1500)",
    );
    wait_archived(&primary);
    primary.stop();

    // Without `wal_dir` the link points outside the node's roots: refused, untouched.
    let refusing = with_wal_dir("no-wal-dir.toml", None);
    let marker = waldir.join("left-alone");
    std::fs::write(&marker, b"not strata's to delete").unwrap();
    let out = site.strata(&refusing, &["restore", "latest"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("outside the node's roots"), "{stderr}");
    assert!(
        marker.exists(),
        "a directory outside the node's roots was emptied"
    );

    // With it: emptied through the recorded link, recovered to the latest state.
    let out = site.ok(&config, &["restore", "latest"]);
    assert!(out.contains("promoted"), "{out}");
    assert!(!marker.exists());
    assert_eq!(
        std::fs::read_link(primary.data_dir.join("pg_wal")).unwrap(),
        waldir
    );
    assert_eq!(primary.psql("postgres", "SELECT count(*) FROM t"), "1500");
    primary.stop();
}

#[test]
fn archiving_through_the_wal_archiver_under_load_restores_everything() {
    if skip_without_postgres() {
        return;
    }
    let site = Scratch::new();
    let (primary, config) = site.archiving_primary();
    // The archiver runs as postgres, the user PostgreSQL runs wal-push as.
    let mut archiver = site
        .command(&config, &["wal", "archiver"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let socket = site.path("state/wal-archiver.sock");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "the archiver never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    primary.start();
    primary.pgbench_init("bench", 3);
    let out = site.ok(&config, &["backup"]);
    assert!(out.contains("complete"), "{out}");
    let mut load = primary.pgbench_spawn("bench", 6);
    assert!(load.wait().unwrap().success(), "pgbench failed");
    wait_archived(&primary);

    let status: serde_json::Value =
        serde_json::from_str(&site.ok(&config, &["--json", "wal", "status"])).unwrap();
    assert!(status["archived_files"].as_u64().unwrap() >= 3, "{status}");
    assert_eq!(status["failures"], 0, "{status}");
    assert_eq!(
        primary.psql("postgres", "SELECT failed_count FROM pg_stat_archiver"),
        "0",
        "every archive_command call succeeded"
    );
    let latest = primary.table_checksums("bench");
    let verify = site.ok(&config, &["wal", "verify"]);
    assert!(verify.contains(", 0 damaged"), "{verify}");

    // Stopped, the archiver leaves; a restore replays what it archived.
    let pid = archiver.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert!(archiver.wait().unwrap().success(), "the archiver's exit");
    let copy = fresh_target(&site, "latest");
    let cfg = site.config("latest.toml", &[("db", &copy, None)], "");
    let out = site.ok(&cfg, &["restore", "latest"]);
    assert!(out.contains("promoted"), "{out}");
    assert_eq!(copy.table_checksums("bench"), latest);
    copy.stop();
    primary.stop();
}

/// The name of the 16 MiB segment before `name` on its timeline.
fn segment_before(name: &str) -> String {
    let hex = |range: std::ops::Range<usize>| u64::from_str_radix(&name[range], 16).unwrap();
    let segno = hex(8..16) * 256 + hex(16..24) - 1;
    format!("{}{:08X}{:08X}", &name[..8], segno / 256, segno % 256)
}

/// A cluster (with data checksums when `checksums`) holding table `t` (2,000 rows, primary
/// key `t_pkey`) and its site, archiving, backed up once clean: that backup's restore
/// drill starts the database and finds it sound. Then `bytes` are written at `offset` of
/// relation `rel`'s file while the server is stopped, and a second backup is taken.
fn corrupted_backup(
    checksums: bool,
    rel: &str,
    offset: u64,
    bytes: &[u8],
) -> (Scratch, common::Site) {
    use std::io::{Seek, SeekFrom, Write};
    let site = Scratch::new();
    let primary = PgServer::init(&site.path("primary"));
    if !checksums {
        // The test kit's clusters have data checksums: this one has them turned off.
        let mut off = Command::new(Path::new(PG_BIN).join("pg_checksums"));
        off.arg("--disable").arg("-D").arg(&primary.data_dir);
        let out = as_postgres(&mut off).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let config = site.config("strata.toml", &[("db", &primary, None)], "");
    primary.set_conf(&site.archive_command(config.config()));
    site.ok(&config, &["init"]);
    primary.start();
    primary.psql(
        "postgres",
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, repeat('x', 40) FROM generate_series(1, 2000) g; CHECKPOINT",
    );
    site.ok(&config, &["backup"]);
    let clean = site.ok(&config, &["verify", "--restore", "latest"]);
    assert!(
        clean.contains("pg_amcheck: every database's tables and B-tree indexes are sound"),
        "{clean}"
    );
    let checked = if checksums {
        "pg_checksums: every page's checksum is right"
    } else {
        "data checksums are off"
    };
    assert!(clean.contains(checked), "{clean}");

    let file = primary.psql("postgres", &format!("SELECT pg_relation_filepath('{rel}')"));
    primary.stop();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(primary.data_dir.join(file.trim()))
        .unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
    primary.start();
    site.ok(&config, &["backup"]);
    primary.stop();
    (site, config)
}

/// A restore drill of a PostgreSQL backup starts the copy and checks it page by page: an
/// index whose page is corrupt (no data checksums) is reported, naming the index.
#[test]
fn a_restore_drill_finds_a_corrupt_index_page_and_names_the_index() {
    if skip_without_postgres() {
        return;
    }
    // Block 1 of the index (a leaf page): its header overwritten.
    let (site, config) = corrupted_backup(false, "t_pkey", 8192, &[0xFF; 24]);
    let out = site.strata(&config, &["verify", "--restore", "latest"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("database damaged") && stderr.contains("t_pkey"),
        "{stderr}"
    );
}

/// The same with data checksums: a heap page whose tuple bytes changed is reported by
/// `pg_amcheck` (naming the table) and by `pg_checksums` (naming its file).
#[test]
fn a_restore_drill_finds_a_heap_page_with_a_bad_checksum_and_names_the_table() {
    if skip_without_postgres() {
        return;
    }
    // Inside the tuples at the end of block 0: the header stays valid, the checksum not.
    let (site, config) = corrupted_backup(true, "t", 8000, b"CORRUPT");
    let out = site.strata(&config, &["verify", "--restore", "latest"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("database damaged"), "{stderr}");
    assert!(
        stderr.contains("public.t\""),
        "pg_amcheck names the table: {stderr}"
    );
    assert!(stderr.contains("checksum verification failed"), "{stderr}");
}

/// A table dropped by mistake after time T comes back from T under another name, into
/// the running cluster (which is never stopped), with its rows, valid indexes and its
/// sequence's value; or into a dump file; a name the live database has is refused.
#[test]
fn a_dropped_table_comes_back_from_a_point_in_time_under_another_name() {
    if skip_without_postgres() {
        return;
    }
    let site = Scratch::new();
    let (primary, config) = site.archiving_primary();
    primary.start();
    primary.psql(
        "postgres",
        "CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL, qty int CHECK (qty > 0)); \
         CREATE INDEX orders_item ON orders (item); \
         INSERT INTO orders (item, qty) SELECT 'item ' || g, g FROM generate_series(1, 500) g",
    );
    // Another database, which the table restore leaves out of its copy; written to after
    // the backup, so recovery replays into its holes.
    primary.psql("postgres", "CREATE DATABASE other");
    primary.psql(
        "other",
        "CREATE TABLE big AS SELECT g, repeat('x', 200) AS v FROM generate_series(1, 50000) g",
    );
    site.ok(&config, &["backup"]);
    primary.psql("other", "UPDATE big SET v = 'y' WHERE g < 2000");
    primary.psql(
        "postgres",
        "INSERT INTO orders (item, qty) SELECT 'late ' || g, g FROM generate_series(1, 100) g",
    );
    let digest = "SELECT md5(string_agg(id || ':' || item || ':' || qty, ',' ORDER BY id))";
    let at_target = primary.psql("postgres", &format!("{digest} FROM orders"));
    std::thread::sleep(Duration::from_millis(1200));
    let target = primary.psql("postgres", "SELECT clock_timestamp()::text");
    std::thread::sleep(Duration::from_millis(1200));
    primary.psql(
        "postgres",
        "INSERT INTO orders (item, qty) VALUES ('after', 1)",
    );
    primary.psql("postgres", "DROP TABLE orders");
    wait_archived(&primary);

    let out = site.ok(
        &config,
        &[
            "restore",
            "latest",
            "--table",
            "public.orders",
            "--database",
            "postgres",
            "--target-time",
            &target,
        ],
    );
    assert!(
        out.contains("public.orders: 600 rows loaded, as public.orders_restored"),
        "{out}"
    );
    assert!(
        out.contains("1 other databases are left out of the copy"),
        "{out}"
    );
    assert_eq!(
        primary.psql("postgres", &format!("{digest} FROM orders_restored")),
        at_target
    );
    assert_eq!(
        primary.psql(
            "postgres",
            "SELECT count(*) FILTER (WHERE indisvalid), count(*) FROM pg_index WHERE indrelid = 'orders_restored'::regclass"
        ),
        "2|2"
    );
    assert!(
        primary
            .psql("postgres", "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class WHERE relname LIKE 'orders_restored%'")
            .contains("orders_restored_id_seq"),
        "the owned sequence comes back renamed"
    );
    // The sequence's value came with it: the next id follows the restored ones
    // (recovery may skip up to 32 values: PostgreSQL logs sequences ahead).
    let next: u64 = primary
        .psql(
            "postgres",
            "INSERT INTO orders_restored (item, qty) VALUES ('new', 1) RETURNING id",
        )
        .parse()
        .unwrap();
    assert!((601..=633).contains(&next), "{next}");
    // The check constraint came too.
    assert!(primary
        .try_psql(
            "postgres",
            "INSERT INTO orders_restored (item, qty) VALUES ('bad', 0)"
        )
        .is_err());

    // A database name that is not a plain name is refused before anything runs (it is
    // named in SQL on the scratch server).
    let hostile = site.strata(
        &config,
        &[
            "restore",
            "latest",
            "--table",
            "orders",
            "--database",
            "postgres\"; COPY x TO PROGRAM 'id'; --",
        ],
    );
    assert_eq!(hostile.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&hostile.stderr).contains("give a name of 1 to 63 letters"));
    // The same name again is refused before anything is loaded.
    let again = site.strata(
        &config,
        &[
            "restore",
            "latest",
            "--table",
            "orders",
            "--database",
            "postgres",
            "--target-time",
            &target,
        ],
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already has public.orders_restored"));
    assert!(
        !String::from_utf8_lossy(&again.stdout).contains("restoring node"),
        "refused before any work"
    );

    // Into a dump file, under a name of its own.
    let dump = site.path("orders.sql");
    site.ok(
        &config,
        &[
            "restore",
            "latest",
            "--table",
            "orders",
            "--as",
            "orders_copy",
            "--database",
            "postgres",
            "--target-time",
            &target,
            "--dump",
            dump.to_str().unwrap(),
        ],
    );
    let text = std::fs::read_to_string(&dump).unwrap();
    assert!(text.contains("CREATE TABLE public.orders_copy"), "{text}");
    assert!(text.contains("orders_copy_pkey"), "{text}");
    // Through the API, as the dashboard and `--server` ask it: on the server's host.
    let mut serve = site.command(&config, &[]);
    serve.env("STRATA_TOKEN", "tables-token");
    let server = strata_testkit::http::Server::start(serve, &site.path("server.log"));
    let mut remote = site.command(
        &config,
        &[
            "--server",
            &server.url,
            "restore",
            "latest",
            "--table",
            "orders",
            "--as",
            "orders_api",
            "--database",
            "postgres",
            "--target-time",
            &target,
        ],
    );
    remote.env("STRATA_TOKEN", "tables-token");
    let out = remote.output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        primary.psql("postgres", &format!("{digest} FROM orders_api")),
        at_target
    );
    let audit = site.ok(&config, &["audit"]);
    assert!(audit.contains("table-restore"), "{audit}");
    drop(server);
    // Nothing of the scratch copies is left.
    let left: Vec<_> = std::fs::read_dir(site.path("state"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("table-restore-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A database dropped by mistake comes back whole under another name, into the running
/// cluster, or as a dump file that creates it.
#[test]
fn a_dropped_database_comes_back_under_another_name() {
    if skip_without_postgres() {
        return;
    }
    let site = Scratch::new();
    let (primary, config) = site.archiving_primary();
    primary.start();
    primary.psql("postgres", "CREATE DATABASE shop");
    primary.psql(
        "shop",
        "CREATE TABLE items (id int PRIMARY KEY, name text); \
         CREATE VIEW cheap AS SELECT * FROM items WHERE id < 10; \
         INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, 300) g",
    );
    let before = primary.table_checksums("shop");
    site.ok(&config, &["backup"]);
    std::thread::sleep(Duration::from_millis(1200));
    let target = primary.psql("postgres", "SELECT clock_timestamp()::text");
    std::thread::sleep(Duration::from_millis(1200));
    // Some other commit after the target (a time target stops at the first one; DROP
    // DATABASE removes the files before its own commit).
    primary.psql("postgres", "CREATE TABLE unrelated (x int)");
    primary.psql("postgres", "DROP DATABASE shop");
    wait_archived(&primary);

    // To the end of the archive it is gone, and the restore says so.
    let gone = site.strata(&config, &["restore", "latest", "--database", "shop"]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr)
        .contains("database shop is not in the backup at that point"));
    let out = site.ok(
        &config,
        &[
            "restore",
            "latest",
            "--database",
            "shop",
            "--target-time",
            &target,
        ],
    );
    assert!(out.contains("as shop_restored"), "{out}");
    assert_eq!(primary.table_checksums("shop_restored"), before);
    assert_eq!(
        primary.psql("shop_restored", "SELECT count(*) FROM cheap"),
        "9"
    );
    // The same name again is refused; a dump file creates the database where it is run.
    let again = site.strata(
        &config,
        &[
            "restore",
            "latest",
            "--database",
            "shop",
            "--target-time",
            &target,
        ],
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already has a database shop_restored"));
    assert!(
        !String::from_utf8_lossy(&again.stdout).contains("restoring node"),
        "refused before any work"
    );
    let dump = site.path("shop.sql");
    site.ok(
        &config,
        &[
            "restore",
            "latest",
            "--database",
            "shop",
            "--as",
            "shop_copy",
            "--target-time",
            &target,
            "--dump",
            dump.to_str().unwrap(),
        ],
    );
    let text = std::fs::read_to_string(&dump).unwrap();
    assert!(
        text.contains("CREATE DATABASE shop_copy"),
        "{}",
        &text[..text.len().min(2000)]
    );
}

/// A table restore stopped by SIGTERM while its scratch server runs ends at once, with
/// the scratch server stopped and its copy removed; the live database is not touched.
#[test]
fn a_table_restore_stopped_by_sigterm_leaves_nothing_behind() {
    use std::io::BufRead;
    if skip_without_postgres() {
        return;
    }
    let site = Scratch::new();
    let (primary, config) = site.archiving_primary();
    primary.start();
    primary.psql(
        "postgres",
        "CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 1000) g",
    );
    site.ok(&config, &["backup"]);
    wait_archived(&primary);
    let mut cmd = site.command(
        &config,
        &[
            "restore",
            "latest",
            "--table",
            "t",
            "--database",
            "postgres",
        ],
    );
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.starts_with("starting a scratch PostgreSQL") {
            break;
        }
    }
    assert!(
        seen.last()
            .is_some_and(|l| l.starts_with("starting a scratch")),
        "{seen:?}"
    );
    let code = strata_testkit::process::terminate_child_within(&mut child, Duration::from_secs(30));
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    eprintln!("the stopped table restore exited {code:?}: {stderr}");
    // Cancelled, or (on a fast machine) done before the signal: either way nothing stays.
    let scratch: Vec<String> = std::fs::read_dir(site.path("state"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("table-restore-"))
        .collect();
    assert!(scratch.is_empty(), "{scratch:?} {stderr}");
    // This site's scratch servers only: other tests restore tables at the same time.
    let ours = format!("{}/table-restore-", site.path("state").display());
    let running = Command::new("pgrep").args(["-f", &ours]).output().unwrap();
    assert!(
        running.stdout.is_empty(),
        "a scratch server still runs: {}",
        String::from_utf8_lossy(&running.stdout)
    );
    match code {
        Some(0) => assert_eq!(
            primary.psql("postgres", "SELECT count(*) FROM t_restored"),
            "1000"
        ),
        _ => {
            assert!(stderr.contains("stopped"), "{stderr}");
            assert!(primary
                .try_psql("postgres", "SELECT count(*) FROM t_restored")
                .is_err());
        }
    }
}

/// The scratch directories of table restores in the site's state directory.
fn scratch_dirs(site: &Scratch) -> Vec<PathBuf> {
    std::fs::read_dir(site.path("state"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("table-restore-"))
        })
        .collect()
}

/// The processes whose command line names `dir` (a server's postmaster: `-D dir`).
fn processes_of(dir: &Path) -> String {
    let out = Command::new("pgrep")
        .arg("-af")
        .arg(dir.to_str().unwrap())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts that `out` failed with `why` before any work: no copy was restored.
fn refused_before_any_work(site: &Scratch, out: &Output, why: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains(why), "{stderr}");
    assert!(!stdout.contains("restoring node"), "{stdout}");
    assert!(scratch_dirs(site).is_empty());
}

/// Issue 51: a partitioned table comes back with its partitions (renamed after it) and
/// their rows, counted in the live database; one partition alone comes back as a table
/// of its own; names the live database has are refused, the table's before any work,
/// its partitions' before anything is loaded.
#[test]
fn a_partitioned_table_comes_back_with_its_partitions_and_a_partition_alone_as_a_table() {
    if skip_without_postgres() {
        return;
    }
    let site = Scratch::new();
    let (primary, config) = site.archiving_primary();
    primary.start();
    primary.psql("postgres", "CREATE DATABASE shop");
    primary.psql(
        "shop",
        "CREATE TABLE events (id bigserial, at date NOT NULL, v text NOT NULL, PRIMARY KEY (id, at)) PARTITION BY RANGE (at); \
         CREATE TABLE events_p1 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2026-02-01'); \
         CREATE TABLE events_p2 PARTITION OF events FOR VALUES FROM ('2026-02-01') TO ('2026-03-01'); \
         CREATE TABLE events_p3 PARTITION OF events FOR VALUES FROM ('2026-03-01') TO ('2026-04-01'); \
         CREATE INDEX events_v ON events (v); \
         INSERT INTO events (at, v) SELECT date '2026-01-01' + (g % 90), 'v' || g FROM generate_series(1, 33000) g",
    );
    site.ok(&config, &["backup"]);
    wait_archived(&primary);
    let digest = "SELECT md5(string_agg(id || ':' || at || ':' || v, ',' ORDER BY id))";
    let source = primary.psql("shop", &format!("{digest} FROM events"));
    let per_partition = |table: &str| {
        primary.psql(
            "shop",
            &format!("SELECT string_agg(n::text, ',' ORDER BY p) FROM (SELECT tableoid::regclass::text AS p, count(*) AS n FROM {table} GROUP BY 1) x"),
        )
    };
    let restore = |args: &[&str]| {
        let mut all = vec!["restore", "latest", "--database", "shop"];
        all.extend_from_slice(args);
        site.strata(&config, &all)
    };
    let ok = |out: Output| {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout}{}{}",
            String::from_utf8_lossy(&out.stderr),
            site.recovery_logs()
        );
        stdout
    };

    let out = ok(restore(&[
        "--table",
        "public.events",
        "--as",
        "events_back",
    ]));
    assert!(
        out.contains("public.events: 33000 rows loaded, as public.events_back with its 3 partitions (public.events_back_p1, public.events_back_p2, public.events_back_p3)"),
        "{out}"
    );
    assert_eq!(
        primary.psql("shop", &format!("{digest} FROM events_back")),
        source
    );
    assert_eq!(
        primary.psql(
            "shop",
            "SELECT string_agg(inhrelid::regclass::text, ',' ORDER BY 1) FROM pg_inherits WHERE inhparent = 'events_back'::regclass"
        ),
        "events_back_p1,events_back_p2,events_back_p3"
    );
    assert_eq!(per_partition("events_back"), per_partition("events"));
    // Its indexes (two on the parent, two on each partition) and its sequence came too,
    // renamed after it; a new row goes to its partition.
    assert_eq!(
        primary.psql(
            "shop",
            "SELECT count(*) FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid WHERE c.relname LIKE 'events\\_back%' AND x.indisvalid"
        ),
        "8"
    );
    primary.psql(
        "shop",
        "INSERT INTO events_back (at, v) VALUES ('2026-02-10', 'new'); SELECT 1 FROM events_back_p2 WHERE v = 'new'; SELECT nextval('events_back_id_seq')",
    );

    // One partition alone: a table of its own, not attached to the live table.
    let p2 = primary.psql("shop", "SELECT count(*) FROM events_p2");
    let out = ok(restore(&["--table", "events_p2"]));
    assert!(
        out.contains(&format!(
            "public.events_p2: {p2} rows loaded, as public.events_p2_restored (a partition of public.events: detached"
        )),
        "{out}"
    );
    assert_eq!(
        primary.psql(
            "shop",
            "SELECT relispartition FROM pg_class WHERE relname = 'events_p2_restored'"
        ),
        "f"
    );
    assert_eq!(
        primary.psql("shop", "SELECT count(*) FROM events_p2_restored"),
        p2
    );
    assert_eq!(
        primary.psql(
            "shop",
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass"
        ),
        "3"
    );

    // Into a dump file: the rows counted there.
    let dump = site.path("events.sql");
    let out = ok(restore(&[
        "--table",
        "events",
        "--as",
        "events_d",
        "--dump",
        dump.to_str().unwrap(),
    ]));
    assert!(
        out.contains("public.events: 33000 rows written, as public.events_d with its 3 partitions"),
        "{out}"
    );
    let text = std::fs::read_to_string(&dump).unwrap();
    assert!(
        text.contains("COPY public.events_d_p3 "),
        "a partition's rows"
    );

    // Its name is taken now: refused before any work.
    refused_before_any_work(
        &site,
        &restore(&["--table", "events", "--as", "events_back"]),
        "already has public.events_back",
    );
    // A partition's name is taken: known from the copy, refused before anything loads.
    primary.psql("shop", "CREATE TABLE events_b2_p3 (x int)");
    let clash = restore(&["--table", "events", "--as", "events_b2"]);
    assert!(!clash.status.success());
    let stderr = String::from_utf8_lossy(&clash.stderr);
    assert!(
        stderr.contains("already has public.events_b2_p3"),
        "{stderr}"
    );
    assert!(primary.try_psql("shop", "SELECT 1 FROM events_b2").is_err());
    assert!(scratch_dirs(&site).is_empty());
    primary.stop();
}

/// Issue 51: `--as SCHEMA.NAME` brings the table back in that schema (which the live
/// database must have: checked first); a name the live database has is refused before
/// any work.
#[test]
fn a_table_comes_back_in_the_schema_as_names_and_taken_names_are_refused_first() {
    if skip_without_postgres() {
        return;
    }
    let site = Scratch::new();
    let (primary, config) = site.archiving_primary();
    primary.start();
    primary.psql(
        "postgres",
        "CREATE TABLE orders (id serial PRIMARY KEY, item text); \
         INSERT INTO orders (item) SELECT 'i' || g FROM generate_series(1, 500) g",
    );
    site.ok(&config, &["backup"]);
    wait_archived(&primary);
    let restore = |args: &[&str]| {
        let mut all = vec!["restore", "latest", "--database", "postgres"];
        all.extend_from_slice(args);
        site.strata(&config, &all)
    };
    refused_before_any_work(
        &site,
        &restore(&["--table", "orders", "--as", "other.orders_o"]),
        "has no schema other",
    );
    primary.psql("postgres", "CREATE SCHEMA other");
    let out = site.ok(
        &config,
        &[
            "restore",
            "latest",
            "--database",
            "postgres",
            "--table",
            "orders",
            "--as",
            "other.orders_o",
        ],
    );
    assert!(
        out.contains("public.orders: 500 rows loaded, as other.orders_o"),
        "{out}"
    );
    assert_eq!(
        primary.psql("postgres", "SELECT count(*) FROM other.orders_o"),
        "500"
    );
    assert!(primary
        .try_psql("postgres", "SELECT 1 FROM public.orders_o")
        .is_err());
    assert_eq!(
        primary.psql(
            "postgres",
            "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class WHERE relnamespace = 'other'::regnamespace"
        ),
        "orders_o,orders_o_id_seq,orders_o_pkey"
    );
    let next: u64 = primary
        .psql(
            "postgres",
            "INSERT INTO other.orders_o (item) VALUES ('new') RETURNING id",
        )
        .parse()
        .unwrap();
    assert!((501..=533).contains(&next), "{next}");

    for (args, why) in [
        (
            &["--table", "orders", "--as", "orders"][..],
            "already has public.orders",
        ),
        (
            &["--table", "orders", "--as", "other.orders_o"][..],
            "already has other.orders_o",
        ),
        (
            &["--table", "public.orders", "--as", "other.ORDERS_O"][..],
            "already has other.orders_o",
        ),
    ] {
        refused_before_any_work(&site, &restore(args), why);
    }
    // A whole database under a name the live server has.
    refused_before_any_work(
        &site,
        &site.strata(
            &config,
            &[
                "restore",
                "latest",
                "--database",
                "postgres",
                "--as",
                "template1",
            ],
        ),
        "already has a database template1",
    );
    primary.stop();
}

/// Issue 51: the scratch servers of a table restore, a database restore and a restore
/// drill run none of the commands of the source's configuration and load none of its
/// libraries: each command set in the source to write a file, no file appears; each
/// library names one that does not exist, the copies start all the same.
#[test]
fn scratch_servers_run_none_of_the_source_s_commands() {
    if skip_without_postgres() {
        return;
    }
    let site = Scratch::new();
    let (primary, config) = site.archiving_primary();
    let ran = site.path("ran");
    std::fs::create_dir(&ran).unwrap();
    chown_to_postgres(&ran);
    let touch = |name: &str| format!("touch {}/{name}", ran.display());
    // The source archives as before; only a server elsewhere (a copy) would touch.
    let source = std::fs::canonicalize(&primary.data_dir).unwrap();
    primary.set_conf(&format!(
        "archive_command = 'case \"$(pwd -P)\" in {}) ;; *) {} ;; esac; \"{}\" --config \"{}\" -q wal-push %p'\n\
         archive_cleanup_command = '{}'\nrecovery_end_command = '{}'\nrestore_command = '{}; false'\n",
        source.display(),
        touch("archive_command"),
        site.exe().display(),
        config.config().display(),
        touch("archive_cleanup_command"),
        touch("recovery_end_command"),
        touch("restore_command"),
    ));
    primary.start();
    // Read by the copies only (the source is not restarted nor reloaded): a library that
    // is not there, a standby that never answers.
    primary.psql(
        "postgres",
        "ALTER SYSTEM SET shared_preload_libraries = 'strata_no_such_library'",
    );
    primary.psql(
        "postgres",
        "ALTER SYSTEM SET session_preload_libraries = 'strata_no_such_library'",
    );
    primary.psql(
        "postgres",
        "ALTER SYSTEM SET synchronous_standby_names = 'nobody'",
    );
    primary.psql("postgres", "CREATE DATABASE shop");
    primary.psql(
        "shop",
        "CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 1000) g",
    );
    site.ok(&config, &["backup"]);
    primary.psql(
        "shop",
        "INSERT INTO t SELECT g FROM generate_series(1001, 2000) g",
    );
    wait_archived(&primary);
    let files = || -> Vec<String> {
        std::fs::read_dir(&ran)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert!(
        files().is_empty(),
        "the source ran a command itself: {:?}",
        files()
    );

    let out = site.ok(
        &config,
        &["restore", "latest", "--table", "t", "--database", "shop"],
    );
    assert!(out.contains("public.t: 2000 rows loaded"), "{out}");
    assert!(files().is_empty(), "a table restore: {:?}", files());
    site.ok(
        &config,
        &[
            "restore",
            "latest",
            "--database",
            "shop",
            "--as",
            "shop_back",
        ],
    );
    assert_eq!(primary.psql("shop_back", "SELECT count(*) FROM t"), "2000");
    assert!(files().is_empty(), "a database restore: {:?}", files());
    let drill = site.ok(&config, &["verify", "--restore", "latest"]);
    assert!(drill.contains("pg_amcheck: every database"), "{drill}");
    assert!(files().is_empty(), "a restore drill: {:?}", files());
    primary.stop();
}

/// Issue 64: a scratch server starts from the settings strata writes, nothing of the
/// source's configuration files. The source's `postgresql.auto.conf` (ALTER SYSTEM, not
/// in effect on the source, never reloaded) names a JIT provider that is a library but
/// no provider (`auto_explain`: a query that would compile fails loading it) with JIT
/// for every query, and huge pages (which this host lacks: a server asking for them
/// does not start): a table restore and a restore drill work all the same, which they
/// cannot with either setting in effect.
#[test]
fn scratch_servers_read_nothing_of_the_source_s_configuration_files() {
    if skip_without_postgres() {
        return;
    }
    let site = Scratch::new();
    let (primary, config) = site.archiving_primary();
    primary.start();
    for setting in [
        "jit = on",
        "jit_provider = 'auto_explain'",
        "jit_above_cost = 0",
        "jit_inline_above_cost = 0",
        "jit_optimize_above_cost = 0",
        "huge_pages = on",
    ] {
        primary.psql("postgres", &format!("ALTER SYSTEM SET {setting}"));
    }
    let auto = std::fs::read_to_string(primary.data_dir.join("postgresql.auto.conf")).unwrap();
    assert!(auto.contains("jit_provider = 'auto_explain'"), "{auto}");
    primary.psql(
        "postgres",
        "CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 1000) g",
    );
    site.ok(&config, &["backup"]);
    primary.psql(
        "postgres",
        "INSERT INTO t SELECT g FROM generate_series(1001, 2000) g",
    );
    wait_archived(&primary);

    let out = site.ok(
        &config,
        &[
            "restore",
            "latest",
            "--table",
            "t",
            "--database",
            "postgres",
        ],
    );
    assert!(out.contains("public.t: 2000 rows loaded"), "{out}");
    assert_eq!(
        primary.psql("postgres", "SELECT count(*) FROM t_restored"),
        "2000"
    );
    let drill = site.ok(&config, &["verify", "--restore", "latest"]);
    assert!(drill.contains("pg_amcheck: every database"), "{drill}");
    assert!(!drill.contains("not started"), "{drill}");
    // The source itself still has them, untouched.
    assert_eq!(primary.psql("postgres", "SHOW jit_above_cost"), "100000");
    let auto = std::fs::read_to_string(primary.data_dir.join("postgresql.auto.conf")).unwrap();
    assert!(auto.contains("huge_pages = 'on'"), "{auto}");
    primary.stop();
}

/// Issue 64: tables whose names need quoting (`"Mixed Case".tbl`, `public."dot.name"`,
/// `"quo""te"`) come back, under a quoted `--as` too; `--as` a name the live database
/// has for a type or a domain is refused before any work, as a table's name is.
#[test]
fn tables_whose_names_need_quoting_come_back_and_a_type_s_name_is_refused_first() {
    if skip_without_postgres() {
        return;
    }
    let site = Scratch::new();
    let (primary, config) = site.archiving_primary();
    primary.start();
    primary.psql(
        "postgres",
        r#"CREATE SCHEMA "Mixed Case";
           CREATE TABLE "Mixed Case".tbl AS SELECT g AS id FROM generate_series(1, 10) g;
           CREATE TABLE "dot.name" (id serial PRIMARY KEY, v text);
           INSERT INTO "dot.name" (v) SELECT 'v' || g FROM generate_series(1, 20) g;
           CREATE TABLE "quo""te" AS SELECT g AS id FROM generate_series(1, 30) g;
           CREATE TABLE "Mixed Case" AS SELECT g AS id FROM generate_series(1, 40) g;
           CREATE TABLE orders AS SELECT g AS id FROM generate_series(1, 5) g"#,
    );
    site.ok(&config, &["backup"]);
    wait_archived(&primary);
    let restore = |args: &[&str]| {
        let mut all = vec!["restore", "latest", "--database", "postgres"];
        all.extend_from_slice(args);
        site.strata(&config, &all)
    };
    let ok = |out: Output| {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };

    let out = ok(restore(&[
        "--table",
        r#""Mixed Case".tbl"#,
        "--table",
        r#"public."dot.name""#,
        "--table",
        r#""quo""te""#,
    ]));
    for line in [
        r#""Mixed Case".tbl: 10 rows loaded, as "Mixed Case".tbl_restored"#,
        r#"public."dot.name": 20 rows loaded, as public."dot.name_restored""#,
        r#"public."quo""te": 30 rows loaded, as public."quo""te_restored""#,
    ] {
        assert!(out.contains(line), "{line}\n{out}");
    }
    for (table, rows) in [
        (r#""Mixed Case".tbl_restored"#, "10"),
        (r#""dot.name_restored""#, "20"),
        (r#""quo""te_restored""#, "30"),
    ] {
        assert_eq!(
            primary.psql("postgres", &format!("SELECT count(*) FROM {table}")),
            rows
        );
    }
    // The serial's sequence and the key came along, renamed after the table.
    assert_eq!(
        primary.psql(
            "postgres",
            r#"SELECT count(*) FROM pg_class WHERE relname IN ('dot.name_restored_pkey', 'dot.name_restored_id_seq')"#
        ),
        "2"
    );
    let out = ok(restore(&[
        "--table",
        r#""Mixed Case""#,
        "--as",
        r#""Mixed Case"."""Back"" Again""#,
    ]));
    assert!(
        out.contains(r#"public."Mixed Case": 40 rows loaded, as "Mixed Case"."""Back"" Again""#),
        "{out}"
    );
    assert_eq!(
        primary.psql(
            "postgres",
            r#"SELECT count(*) FROM "Mixed Case"."""Back"" Again""#
        ),
        "40"
    );

    // Names that are not SQL identifiers are refused before any work.
    for bad in [r#""unclosed"#, r#"a"b"#, "a.b.c", r#""""#, "x;y"] {
        let out = restore(&["--table", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        refused_before_any_work(&site, &out, "give SCHEMA.TABLE");
    }

    // A type's or a domain's name is taken: refused before anything is restored.
    primary.psql(
        "postgres",
        r#"CREATE DOMAIN orders_d AS int;
           CREATE TYPE "Orders E" AS ENUM ('a');
           CREATE TYPE orders_restored AS RANGE (subtype = int4)"#,
    );
    for (args, why) in [
        (
            &["--table", "orders", "--as", "orders_d"][..],
            "already has public.orders_d",
        ),
        (
            &["--table", "orders", "--as", r#""Orders E""#][..],
            r#"already has public."Orders E""#,
        ),
        (
            &["--table", "orders"][..],
            "already has public.orders_restored",
        ),
    ] {
        refused_before_any_work(&site, &restore(args), why);
    }
    primary.stop();
}

/// Issue 51: a table restore killed (SIGKILL) while its scratch server runs leaves the
/// server running on its copy; the next table restore, restore drill and `strata
/// server` start stop it, remove the copy and say so.
#[test]
fn a_killed_table_restore_s_scratch_server_is_removed_by_the_next_restore_drill_and_server() {
    use std::io::BufRead;
    if skip_without_postgres() {
        return;
    }
    let site = Scratch::new();
    let (primary, config) = site.archiving_primary();
    primary.start();
    primary.psql(
        "postgres",
        "CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 1000) g",
    );
    site.ok(&config, &["backup"]);
    // WAL to replay after the backup: the scratch server recovers for a while.
    primary.psql(
        "postgres",
        "INSERT INTO t SELECT g FROM generate_series(1001, 300000) g",
    );
    wait_archived(&primary);
    // A table restore killed once its scratch server runs; its scratch directory.
    let killed = |name: &str| -> PathBuf {
        let before = scratch_dirs(&site);
        let mut child = site
            .command(
                &config,
                &[
                    "restore",
                    "latest",
                    "--table",
                    "t",
                    "--database",
                    "postgres",
                    "--as",
                    name,
                ],
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = Vec::new();
        for line in lines {
            let line = line.unwrap();
            seen.push(line.clone());
            if line.starts_with("starting a scratch PostgreSQL") {
                break;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        let dir = loop {
            let running = scratch_dirs(&site)
                .into_iter()
                .find(|d| !before.contains(d) && d.join("copy/postmaster.pid").exists());
            if let Some(dir) = running {
                break dir;
            }
            assert!(Instant::now() < deadline, "no scratch server: {seen:?}");
            std::thread::sleep(Duration::from_millis(10));
        };
        child.kill().unwrap();
        child.wait().unwrap();
        // Its server runs on, on its copy.
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            !processes_of(&dir).is_empty(),
            "the killed restore's scratch server is gone: {seen:?}"
        );
        dir
    };
    let gone = |dir: &Path| {
        assert!(!dir.exists(), "{} is left", dir.display());
        let running = processes_of(dir);
        assert!(running.is_empty(), "still running: {running}");
    };

    let first = killed("t_one");
    let out = site.strata(
        &config,
        &[
            "restore",
            "latest",
            "--table",
            "t",
            "--database",
            "postgres",
            "--as",
            "t_two",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    for said in [&stdout, &stderr] {
        assert!(
            said.contains("warning: the table restore of backup")
                && said.contains("ended without cleaning up: stopped its scratch server")
                && said.contains(first.to_str().unwrap()),
            "{said}"
        );
    }
    gone(&first);
    assert_eq!(
        primary.psql("postgres", "SELECT count(*) FROM t_two"),
        "300000"
    );
    assert!(primary.try_psql("postgres", "SELECT 1 FROM t_one").is_err());

    let second = killed("t_three");
    let drill = site.ok(&config, &["verify", "--restore", "latest"]);
    assert!(
        drill.contains("warning: the table restore of backup")
            && drill.contains(second.to_str().unwrap()),
        "{drill}"
    );
    gone(&second);

    let third = killed("t_four");
    let mut serve = site.command(&config, &[]);
    serve.env("STRATA_TOKEN", "scratch-token");
    let log = site.path("server.log");
    let server = strata_testkit::http::Server::start(serve, &log);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("strata: warning: the table restore of backup")
            && text.contains(third.to_str().unwrap()),
        "{text}"
    );
    gone(&third);
    drop(server);
    let marks: Vec<_> = std::fs::read_dir(site.path("state/scratch-marks"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(marks.is_empty(), "{marks:?}");
    primary.stop();
}

/// A primary archiving into a site's repository, running, with a table `t (batch int)`
/// holding batch 0 (1000 rows), and one backup of it (its name). `before` runs after
/// batch 0, before the backup.
fn batches_site(before: impl FnOnce(&PgServer)) -> (Scratch, PgServer, common::Site, String) {
    let site = Scratch::new();
    let (primary, config) = site.archiving_primary();
    primary.start();
    primary.psql("postgres", "CREATE TABLE t (batch int, n int)");
    primary.psql(
        "postgres",
        "INSERT INTO t SELECT 0, g FROM generate_series(1, 1000) g",
    );
    before(&primary);
    let out = site.ok(&config, &["backup"]);
    assert!(out.contains("complete"), "{out}");
    let list: serde_json::Value =
        serde_json::from_str(&site.ok(&config, &["--json", "list"])).unwrap();
    let name = list[0]["name"].as_str().unwrap().to_string();
    (site, primary, config, name)
}

/// Adds batch `i` (1000 rows) in a WAL segment of its own; returns that segment.
fn add_batch(primary: &PgServer, i: u32) -> String {
    primary.psql(
        "postgres",
        &format!("INSERT INTO t SELECT {i}, g FROM generate_series(1, 1000) g"),
    );
    let segment = primary.psql("postgres", "SELECT pg_walfile_name(pg_current_wal_lsn())");
    primary.psql("postgres", "SELECT pg_switch_wal()");
    segment
}

/// The names, sizes and modification times of everything under `dir`.
fn names_sizes_times(dir: &Path) -> Vec<(PathBuf, u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            }
            out.push((entry.path(), meta.size(), meta.mtime(), meta.mtime_nsec()));
        }
    }
    out.sort();
    out
}

/// Issue 67: a recovery target before the end of the backup it recovers from (a time
/// before it ended, an LSN before its consistent point, a transaction that had ended
/// before it) is refused with exit 2 before any file is written, for each kind; `latest`
/// with such a target finds no backup old enough; a transaction after the backup is
/// reached.
#[test]
fn a_target_before_the_chosen_backup_is_refused_before_any_file_is_written() {
    if skip_without_postgres() {
        return;
    }
    let mut early = (String::new(), String::new(), String::new());
    let (site, primary, _config, backup) = batches_site(|primary| {
        let xid = primary.psql("postgres", "SELECT txid_current()::text");
        let lsn = primary.psql("postgres", "SELECT pg_current_wal_lsn()::text");
        let time = primary.psql("postgres", "SELECT clock_timestamp()::text");
        std::thread::sleep(Duration::from_millis(1200));
        early = (time, lsn, xid);
    });
    let late_xid = primary.psql(
        "postgres",
        "BEGIN; INSERT INTO t SELECT 1, g FROM generate_series(1, 1000) g; SELECT txid_current()::text; COMMIT",
    );
    add_batch(&primary, 2);
    wait_archived(&primary);
    let (time, lsn, xid) = early;
    let cases: [(&str, &str, &str); 4] = [
        ("--target-time", &time, "is before backup"),
        (
            "--target-lsn",
            &lsn,
            "is before the consistent point of backup",
        ),
        ("--target-xid", &xid, "had ended before backup"),
        ("--target-xid", "3", "had ended before backup"),
    ];
    for (i, (option, value, why)) in cases.iter().enumerate() {
        let copy = fresh_target(&site, &format!("early{i}"));
        let cfg = site.config(&format!("early{i}.toml"), &[("db", &copy, None)], "");
        let out = site.strata(&cfg, &["restore", &backup, option, value]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{option} {value}: {stderr}");
        assert!(stderr.contains(why) && stderr.contains(&backup), "{stderr}");
        assert!(
            std::fs::read_dir(&copy.data_dir).unwrap().next().is_none(),
            "{option} {value}: files were written"
        );
        assert!(!copy.is_running());
    }
    // `latest` with a target before every backup finds none.
    let copy = fresh_target(&site, "early-latest");
    let cfg = site.config("early-latest.toml", &[("db", &copy, None)], "");
    for (option, value) in [("--target-lsn", &lsn), ("--target-xid", &xid)] {
        let out = site.strata(&cfg, &["restore", "latest", option, value]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("before the oldest backup"), "{stderr}");
    }
    assert!(std::fs::read_dir(&copy.data_dir).unwrap().next().is_none());
    // A transaction after the backup is a target it reaches.
    let out = site.ok(&cfg, &["restore", &backup, "--target-xid", &late_xid]);
    assert!(out.contains("promoted"), "{out}");
    assert_eq!(
        copy.psql(
            "postgres",
            "SELECT string_agg(DISTINCT batch::text, ',') FROM t"
        ),
        "0,1"
    );
    copy.stop();
}

/// Issue 67: `restore --to` a running server's data directory is refused (exit 2)
/// before anything is written, its files untouched (names, sizes, times); so is a
/// directory whose `postmaster.pid` names a process this host does not show while the
/// shared memory it names is attached (a postmaster in another PID namespace), or one
/// nothing proves stale; a lock whose shared memory nothing holds any more is stale.
#[test]
#[allow(unsafe_code)] // a System V segment for a stale lock: the reason is beside the block
fn restore_to_a_running_server_s_data_directory_is_refused_and_writes_nothing() {
    if skip_without_postgres() {
        return;
    }
    let (site, primary, config, backup) = batches_site(|_| {});
    wait_archived(&primary);
    std::thread::sleep(Duration::from_millis(300));
    let live = &primary.data_dir;
    let before = names_sizes_times(live);
    let out = site.strata(
        &config,
        &["restore", &backup, "--to", live.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("may be running") && stderr.contains("nothing was written"),
        "{stderr}"
    );
    assert_eq!(
        names_sizes_times(live),
        before,
        "the live directory changed"
    );
    assert!(!live.join("backup_label").exists());
    assert_eq!(primary.psql("postgres", "SELECT count(*) FROM t"), "1000");

    // The live server's lock file with a PID this host does not show (a postmaster in
    // another PID namespace): its shared memory, still attached, holds the directory.
    let pid_text = std::fs::read_to_string(live.join("postmaster.pid")).unwrap();
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let with = |edit: &dyn Fn(usize, &str) -> String| {
        pid_text
            .lines()
            .enumerate()
            .map(|(i, l)| edit(i, l) + "\n")
            .collect::<String>()
    };
    let hidden = site.path("hidden");
    std::fs::create_dir_all(&hidden).unwrap();
    std::fs::write(
        hidden.join("postmaster.pid"),
        with(&|i, l| if i == 0 { dead.to_string() } else { l.into() }),
    )
    .unwrap();
    chown_to_postgres(&hidden);
    let out = site.strata(
        &config,
        &["restore", &backup, "--to", hidden.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("shared memory is attached"), "{stderr}");
    assert_eq!(std::fs::read_dir(&hidden).unwrap().count(), 1);

    // No process, no segment, no socket: nothing proves the server gone.
    std::fs::write(
        hidden.join("postmaster.pid"),
        with(&|i, l| match i {
            0 => dead.to_string(),
            4 => "/nonexistent".into(),
            6 => "  1 2147483646".into(),
            _ => l.into(),
        }),
    )
    .unwrap();
    let out = site.strata(
        &config,
        &["restore", &backup, "--to", hidden.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("does not prove the server gone"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_dir(&hidden).unwrap().count(), 1);

    // A segment with nothing attached: every process of that server has ended.
    // SAFETY: shmget and shmctl take plain integers and a null buffer for IPC_RMID.
    let id = unsafe { libc::shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o644) };
    assert!(id >= 0);
    std::fs::write(
        hidden.join("postmaster.pid"),
        with(&|i, l| match i {
            0 => dead.to_string(),
            4 => "/nonexistent".into(),
            6 => format!("{:9} {:9}", 0, id),
            _ => l.into(),
        }),
    )
    .unwrap();
    let out = site.strata(
        &config,
        &["restore", &backup, "--to", hidden.to_str().unwrap()],
    );
    // SAFETY: as above.
    unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(hidden.join("PG_VERSION").exists());
}

/// Issue 67: a segment missing in the middle of the archive fails a restore to the end
/// before any file is written (naming the gap and what lies past it); with
/// `--target-gap` the restore recovers up to the gap, promotes there and says so.
#[test]
fn a_gap_in_the_archive_fails_a_restore_to_the_end_unless_asked_to_stop_there() {
    if skip_without_postgres() {
        return;
    }
    let (site, primary, config, _backup) = batches_site(|_| {});
    let segments: Vec<String> = (1..=8).map(|i| add_batch(&primary, i)).collect();
    wait_archived(&primary);
    assert_eq!(primary.psql("postgres", "SELECT count(*) FROM t"), "9000");
    let missing = &segments[3];
    std::fs::remove_file(site.path("repo/archive/wal").join(missing)).unwrap();
    let listed = site.strata(&config, &["wal", "list"]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.contains(&segments[2]) && text.contains(&segments[4]),
        "{text}"
    );

    let copy = fresh_target(&site, "gap");
    let cfg = site.config("gap.toml", &[("db", &copy, None)], "");
    let out = site.strata(&cfg, &["restore", "latest"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(!stdout.contains("promoted"), "{stdout}");
    assert!(
        stderr.contains(&format!("WAL segment {missing} is missing"))
            && stderr.contains(&format!("from {} on lie past the gap", segments[4]))
            && stderr.contains("--target-gap"),
        "{stderr}"
    );
    assert!(
        std::fs::read_dir(&copy.data_dir).unwrap().next().is_none(),
        "files were written"
    );
    assert!(!copy.is_running());

    let out = site.ok(&cfg, &["restore", "latest", "--target-gap"]);
    assert!(
        out.contains("promoted") && out.contains("at the gap, as asked") && out.contains(missing),
        "{out}"
    );
    assert_eq!(copy.psql("postgres", "SELECT count(*) FROM t"), "4000");
    copy.stop();
}
