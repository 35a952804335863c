//! Helpers of the CLI integration tests that need the real `strata` binary (its path,
//! `env!("CARGO_BIN_EXE_strata")`, exists only in this crate's tests): a scratch
//! repository driven through the binary, commands with a token, and one-node sites. The
//! rest (trees, data, PostgreSQL servers, the HTTP client, the gate) is the test kit,
//! `strata-testkit`, re-exported here under the names the tests use.
// Tests signal their own children and read or set limits through libc: each block
// says why it is sound.
#![allow(unsafe_code)]
// Each test binary uses a subset of these helpers and re-exports.
#![allow(dead_code, unused_imports)]

pub mod londiste;
pub mod site;
pub mod webhook;

pub use site::{Out, Site, SiteBuilder};

pub use strata_testkit::gate;
pub use strata_testkit::http as server;
pub use strata_testkit::pg as pgserver;
pub use strata_testkit::tree::{
    assert_same_tree, copy_tree, exchange, files_under, realistic_tree, snapshot_tree, Node,
};
pub use strata_testkit::{assert_success, pseudo_random, table_pages};

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const PASSWORD: &str = "correct horse battery staple";

/// A scratch directory with a repository and a state directory.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
    pub state: PathBuf,
}

impl Env {
    /// A fresh, initialised repository.
    pub fn new() -> Env {
        let env = Env::empty();
        env.ok(&["init"]);
        env
    }

    /// A scratch directory without a repository.
    pub fn empty() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let state = dir.path().join("state");
        Env { dir, repo, state }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The strata command with this environment's repository and password.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("STRATA_PASSWORD", PASSWORD)
            .env("STRATA_STATE_DIR", &self.state)
            .env("STRATA_REPO", &self.repo)
            .current_dir(self.dir.path());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// Runs and asserts exit code 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        assert_success(&format!("strata {args:?}"), &self.run(args))
    }

    /// Runs, asserts the exit code, returns stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "strata {args:?}\nstdout:\n{}\nstderr:\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        );
        stderr
    }

    /// The names `list --json` shows, oldest first (damaged backups included).
    pub fn backup_names(&self) -> Vec<String> {
        self.json(&["list"])
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// Runs with --json and parses stdout.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    /// Every pack file of the repository.
    pub fn packs(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for sub in fs::read_dir(self.repo.join("data")).unwrap() {
            for pack in fs::read_dir(sub.unwrap().path()).unwrap() {
                out.push(pack.unwrap().path());
            }
        }
        out.sort();
        out
    }
}

/// Runs a prepared strata command, asserts it succeeded, returns its stdout.
pub fn succeed(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed with {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `strata --config CONFIG` in `dir` with a clean environment (`PATH` only) and the test
/// password, as an operator's shell would run it.
pub fn strata_at(dir: &Path, config: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("STRATA_PASSWORD", PASSWORD)
        .arg("--config")
        .arg(config)
        .current_dir(dir);
    cmd
}

/// [`strata_at`] with the API token `token` (`STRATA_TOKEN`).
pub fn strata_with_token(dir: &Path, config: &Path, token: &str) -> Command {
    let mut cmd = strata_at(dir, config);
    cmd.env("STRATA_TOKEN", token);
    cmd
}

/// Writes `config` for one node `db1` backing up the single root `data` into the storage
/// `main` at `repo`, state in `state`, plus `extra` TOML.
pub fn write_one_node_config(config: &Path, state: &Path, repo: &Path, data: &Path, extra: &str) {
    fs::write(
        config,
        format!(
            "default_storage = \"main\"\nstate_dir = \"{state}\"\n[storages.main]\npath = \"{repo}\"\n\
             [[nodes]]\nname = \"db1\"\nroots = [\"{data}\"]\n{extra}",
            state = state.display(),
            repo = repo.display(),
            data = data.display(),
        ),
    )
    .unwrap();
}

/// Writes `dir/strata.toml` for one node `db1` backing up `dir/data` (filled with
/// [`realistic_tree`]) into the storage `main` at `dir/repo`, state in `dir/state`, plus
/// `extra` TOML; returns the config's path.
pub fn one_node_site(dir: &Path, extra: &str) -> PathBuf {
    let data = dir.join("data");
    realistic_tree(&data);
    let config = dir.join("strata.toml");
    write_one_node_config(&config, &dir.join("state"), &dir.join("repo"), &data, extra);
    config
}

/// Fails (never skips) a test that needs root, saying why: `scripts/test.sh` runs as root,
/// as strata does on database hosts.
pub fn assert_root(what: &str) {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "{what} run as root, as strata does on database hosts (scripts/test.sh runs so)"
    );
}

/// `strata probe ARGS` with no configuration and a clean environment.
pub fn probe(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .env_clear()
        .arg("probe")
        .args(args)
        .output()
        .unwrap()
}

/// Waits (up to a minute) until `child`, run with `STRATA_TEST_HOLD_WRITE` pointing at
/// `hold`, has reached the held write (the hold's `held` file appears); fails the test
/// when the child ends first or never gets there. `what` names the write in the message.
pub fn wait_for_held_write(hold: &Path, child: &mut std::process::Child, what: &str) {
    strata_testkit::process::wait_for_mark(
        child,
        &hold.join("held"),
        std::time::Duration::from_secs(60),
        what,
    );
}

/// Starts `command` (its output already directed) held at its first write of a key under
/// `prefix` (`switch`: `STRATA_TEST_HOLD_WRITE`, or `STRATA_TEST_HOLD_READ` for a ranged
/// read; the hold's files in `hold`), and returns once it waits there. Creating
/// `hold/release` lets it go on.
pub fn spawn_held(
    mut command: Command,
    switch: &str,
    prefix: &str,
    hold: &Path,
) -> std::process::Child {
    fs::create_dir_all(hold).unwrap();
    let mut child = command
        .env(switch, format!("{prefix}:{}", hold.display()))
        .spawn()
        .unwrap();
    // Its arguments only: the command's environment holds the password.
    let args: Vec<_> = command.get_args().collect();
    wait_for_held_write(
        hold,
        &mut child,
        &format!("strata {args:?} held at {prefix}"),
    );
    child
}

/// A backup (`command`) held at its first write under `index/`: every snapshot taken,
/// nothing of its data indexed yet (see [`spawn_held`]).
pub fn backup_held_at_first_index_write(command: Command, hold: &Path) -> std::process::Child {
    spawn_held(command, "STRATA_TEST_HOLD_WRITE", "index/", hold)
}

/// A path as a C string, for the xattr calls below.
fn c_path(path: &std::path::Path) -> std::ffi::CString {
    std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str())).unwrap()
}

/// Sets the extended attribute `name` of `path` (failing the test when it cannot).
pub fn set_xattr(path: &std::path::Path, name: &str, value: &[u8]) {
    let (p, n) = (c_path(path), std::ffi::CString::new(name).unwrap());
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let rc = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        rc,
        0,
        "setxattr {name}: {}",
        std::io::Error::last_os_error()
    );
}

/// The raw value of an extended attribute, `None` when it is absent.
pub fn get_xattr(path: &std::path::Path, name: &str) -> Option<Vec<u8>> {
    let (p, n) = (c_path(path), std::ffi::CString::new(name).unwrap());
    let mut buf = vec![0u8; 65536];
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let len = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        return None;
    }
    buf.truncate(len as usize);
    Some(buf)
}
