//! Source trees: a realistic one to back up, a snapshot of every byte and attribute to
//! compare a restore with, a copy with every attribute, and an atomic exchange of two
//! names (to race a backup or restore against a swapped path).

use crate::data::{pseudo_random, table_pages};
use std::collections::{BTreeMap, HashMap};
use std::ffi::{CString, OsStr};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

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

/// `renameat2(a, b, RENAME_EXCHANGE)`: swaps two names atomically.
pub fn exchange(a: &Path, b: &Path) -> bool {
    let (a, b) = (
        CString::new(a.as_os_str().as_bytes()).unwrap(),
        CString::new(b.as_os_str().as_bytes()).unwrap(),
    );
    // SAFETY: valid NUL-terminated paths; the call only reads them.
    unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        ) == 0
    }
}

/// Every file below `dir`, as paths relative to it (an empty set when `dir` does not
/// exist): what a test compares before and after an action that must write or delete
/// nothing.
pub fn files_under(dir: &Path) -> std::collections::BTreeSet<std::path::PathBuf> {
    let mut out = std::collections::BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&at) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(path.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out
}

/// The content of every file below `root`, by path relative to it: what a restore of
/// plain files is compared with.
pub fn file_contents(root: &Path) -> BTreeMap<String, Vec<u8>> {
    files_under(root)
        .into_iter()
        .map(|path| {
            let content = fs::read(root.join(&path)).unwrap();
            (path.display().to_string(), content)
        })
        .collect()
}
