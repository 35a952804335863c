//! Helpers of the CLI integration tests: a scratch repository, the real `strata` binary,
//! a realistic source tree, and a byte-for-byte, attribute-for-attribute tree comparison.
#![allow(dead_code)]

pub mod gate;
pub mod pgserver;
pub mod server;

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
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
        let out = self.run(args);
        assert!(
            out.status.success(),
            "strata {args:?} failed with {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
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

/// Deterministic pseudo-random bytes (SplitMix64).
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Database-like pages: a header that varies, then compressible rows.
pub fn table_pages(pages: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(pages * 8192);
    for p in 0..pages {
        let header = pseudo_random(24, seed ^ p as u64);
        out.extend_from_slice(&header);
        let mut row = 0u64;
        while out.len() % 8192 != 0 {
            let text = format!("row {row:08} of page {p} seed {seed} status=active;");
            let room = 8192 - out.len() % 8192;
            out.extend_from_slice(&text.as_bytes()[..text.len().min(room)]);
            row += 1;
        }
    }
    out
}

fn set_mtime(path: &Path, secs: i64, nanos: u32) {
    let t = filetime::FileTime::from_unix_time(secs, nanos);
    filetime::set_symlink_file_times(path, t, t).unwrap();
}

/// A tree with what operators' data directories hold: modes, setuid, symlinks (relative,
/// absolute, dangling), hard links, empty directories, tiny and large files, a page file,
/// incompressible data, a non-UTF-8 name, old mtimes.
pub fn realistic_tree(root: &Path) {
    fs::create_dir_all(root.join("base/16384")).unwrap();
    fs::create_dir_all(root.join("empty/nested-empty")).unwrap();
    fs::create_dir_all(root.join("conf.d")).unwrap();
    fs::write(root.join("base/16384/1259"), table_pages(600, 1)).unwrap();
    fs::write(root.join("base/16384/2619"), table_pages(37, 2)).unwrap();
    fs::write(
        root.join("random.bin"),
        pseudo_random(3 * 1024 * 1024 + 5, 3),
    )
    .unwrap();
    fs::write(root.join("empty-file"), b"").unwrap();
    fs::write(root.join("one-byte"), b"x").unwrap();
    for i in 0..50 {
        fs::write(
            root.join(format!("conf.d/{i:02}.conf")),
            format!("setting_{i} = {}\n", i * 7),
        )
        .unwrap();
    }
    fs::write(root.join("PG_VERSION"), b"15\n").unwrap();
    fs::write(
        root.join(OsStr::from_bytes(b"name-\xff-latin1")),
        b"odd name",
    )
    .unwrap();
    fs::write(root.join("setuid-tool"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(root.join("setuid-tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::set_permissions(
        root.join("base/16384/2619"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    fs::set_permissions(root.join("conf.d"), fs::Permissions::from_mode(0o750)).unwrap();
    symlink("conf.d/01.conf", root.join("link-relative")).unwrap();
    symlink("/nonexistent/target", root.join("link-dangling")).unwrap();
    fs::hard_link(root.join("PG_VERSION"), root.join("hard-link-a")).unwrap();
    fs::hard_link(root.join("PG_VERSION"), root.join("conf.d/hard-link-b")).unwrap();
    set_mtime(&root.join("one-byte"), 1_000_000_000, 123_456_789);
    set_mtime(&root.join("link-relative"), 1_100_000_000, 0);
    set_mtime(&root.join("empty"), 1_200_000_000, 5);
}

/// What a tree entry is, for comparison.
#[derive(Debug, PartialEq, Eq)]
pub struct Node {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
    content: Vec<u8>,
    link_group: Option<usize>,
}

impl Node {
    /// Which hard-link group the entry belongs to, if any.
    pub fn link_group(&self) -> Option<usize> {
        self.link_group
    }

    /// Same type, mode, owner, mtime and content (hard-link grouping aside).
    pub fn same_content(&self, other: &Node) -> bool {
        (
            self.kind,
            self.mode,
            self.uid,
            self.gid,
            self.mtime,
            &self.content,
        ) == (
            other.kind,
            other.mode,
            other.uid,
            other.gid,
            other.mtime,
            &other.content,
        )
    }
}

/// Reads a tree into comparable form: content, type, mode, owner, mtime, and which paths
/// share an inode.
pub fn snapshot_tree(root: &Path) -> BTreeMap<Vec<u8>, Node> {
    let mut out = BTreeMap::new();
    let mut inodes: HashMap<u64, usize> = HashMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec();
            let meta = fs::symlink_metadata(&path).unwrap();
            let ft = meta.file_type();
            let (kind, content) = if ft.is_dir() {
                stack.push(path.clone());
                ("dir", Vec::new())
            } else if ft.is_symlink() {
                (
                    "symlink",
                    fs::read_link(&path)
                        .unwrap()
                        .as_os_str()
                        .as_bytes()
                        .to_vec(),
                )
            } else {
                ("file", fs::read(&path).unwrap())
            };
            let link_group = (ft.is_file() && meta.nlink() > 1).then(|| {
                let next = inodes.len();
                *inodes.entry(meta.ino()).or_insert(next)
            });
            out.insert(
                rel,
                Node {
                    kind,
                    mode: if ft.is_symlink() {
                        0
                    } else {
                        meta.mode() & 0o7777
                    },
                    uid: meta.uid(),
                    gid: meta.gid(),
                    mtime: (meta.mtime(), meta.mtime_nsec()),
                    content,
                    link_group,
                },
            );
        }
    }
    out
}

/// Asserts two trees are equal in every byte and attribute, naming the first difference.
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    let (a, b) = (snapshot_tree(expected), snapshot_tree(actual));
    let names = |t: &BTreeMap<Vec<u8>, Node>| {
        t.keys()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&a), names(&b), "the trees hold different paths");
    for (path, node) in &a {
        let other = &b[path];
        if node != other {
            let mut shown_a = format!("{node:?}");
            let mut shown_b = format!("{other:?}");
            shown_a.truncate(300);
            shown_b.truncate(300);
            panic!(
                "{} differs:\n expected {shown_a}\n   actual {shown_b}",
                String::from_utf8_lossy(path)
            );
        }
    }
}

/// `cp -a src dst`: a copy with every attribute, to compare a restore with later.
pub fn copy_tree(src: &Path, dst: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(src)
        .arg(dst)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cp -a {} {}",
        src.display(),
        dst.display()
    );
}

/// Writes `dir/strata.toml` for one node `db1` backing up `dir/data` (filled with
/// [`realistic_tree`]) into the storage `main` at `dir/repo`, state in `dir/state`, plus
/// `extra` TOML; returns the config's path.
pub fn one_node_site(dir: &Path, extra: &str) -> PathBuf {
    let data = dir.join("data");
    realistic_tree(&data);
    let config = dir.join("strata.toml");
    fs::write(
        &config,
        format!(
            "default_storage = \"main\"\nstate_dir = \"{state}\"\n[storages.main]\npath = \"{repo}\"\n\
             [[nodes]]\nname = \"db1\"\nroots = [\"{data}\"]\n{extra}",
            state = dir.join("state").display(),
            repo = dir.join("repo").display(),
            data = data.display(),
        ),
    )
    .unwrap();
    config
}
