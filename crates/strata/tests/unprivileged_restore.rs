//! A restore run by another user than root brings every file back, with the extended
//! attributes it may set: one it may not (file capabilities need CAP_SETFCAP, SELinux
//! labels CAP_SYS_ADMIN) costs only that attribute and a warning naming the file and the
//! attribute; `trusted.*` is skipped without a word. It used to fail the whole file
//! (exit 4, "Operation not permitted").
//!
//! The backup runs as root (like the suite); the restore really runs as uid 65534, through
//! `setpriv` (Debian's util-linux, in every base image).
// Tests set and read extended attributes and ask for their uid through libc: each block
// says why it is sound.
#![allow(unsafe_code)]

use crate::common;

use common::{get_xattr, set_xattr, Env};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The uid and gid the restore runs as (`nobody` on Debian).
const NOBODY: u32 = 65534;

/// Gives `path` and everything below it to `uid`.
fn chown_tree(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).unwrap();
    if fs::symlink_metadata(path).unwrap().is_dir() {
        for entry in fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path(), uid);
        }
    }
}

/// The strata binary where another user can run it: the build directory may be in a
/// home only root can enter.
fn binary_for_others(env: &Env) -> PathBuf {
    let bin = env.path("strata");
    let built = Path::new(env!("CARGO_BIN_EXE_strata"));
    if fs::hard_link(built, &bin).is_err() {
        fs::copy(built, &bin).unwrap();
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

#[test]
fn a_restore_as_another_user_keeps_the_file_and_warns_about_the_attribute_it_cannot_set() {
    common::assert_root("the unprivileged restore test (it backs up root-only attributes)");
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("bin")).unwrap();
    let tool = src.join("bin/tool");
    let content = common::pseudo_random(300_000, 7);
    fs::write(&tool, &content).unwrap();
    fs::set_permissions(&tool, fs::Permissions::from_mode(0o750)).unwrap();
    // VFS_CAP_REVISION_2 with the effective flag; permitted: cap_net_bind_service.
    let capability = [[1, 0, 0, 2], [0, 4, 0, 0], [0; 4], [0; 4], [0; 4]].concat();
    set_xattr(&tool, "security.capability", &capability);
    set_xattr(&tool, "trusted.x", b"root only");
    set_xattr(&tool, "user.note", b"anyone's");
    let mtime = filetime::FileTime::from_unix_time(1_700_000_000, 123_456_789);
    filetime::set_file_mtime(&tool, mtime).unwrap();
    env.ok(&["backup", "--node-name", "n1", src.to_str().unwrap()]);

    // As root every attribute comes back.
    let full = env.path("full");
    env.ok(&["restore", "latest", "--to", full.to_str().unwrap()]);
    assert_eq!(
        get_xattr(&full.join("bin/tool"), "security.capability"),
        Some(capability.clone())
    );
    assert_eq!(
        get_xattr(&full.join("bin/tool"), "trusted.x").as_deref(),
        Some(&b"root only"[..])
    );

    // As uid 65534, from a repository and state that user owns, into a directory it owns.
    let bin = binary_for_others(&env);
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    chown_tree(&env.repo, NOBODY);
    chown_tree(&env.state, NOBODY);
    let mine = env.path("mine");
    fs::create_dir(&mine).unwrap();
    chown_tree(&mine, NOBODY);
    let strata = env.command();
    let envs: Vec<_> = strata
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
        .collect();
    let out = Command::new("setpriv")
        .arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .args(["--clear-groups", "--"])
        .arg(&bin)
        .args(["restore", "latest", "--to", mine.to_str().unwrap()])
        .env_clear()
        .envs(envs)
        .current_dir(env.dir.path())
        .output()
        .expect("setpriv (util-linux) runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");

    let restored = mine.join("bin/tool");
    assert_eq!(fs::read(&restored).unwrap(), content, "byte for byte");
    let meta = fs::metadata(&restored).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o750);
    assert_eq!(meta.uid(), NOBODY, "written by the user who restored it");
    assert_eq!(
        filetime::FileTime::from_last_modification_time(&meta),
        mtime
    );
    assert_eq!(
        get_xattr(&restored, "user.note").as_deref(),
        Some(&b"anyone's"[..])
    );
    assert_eq!(get_xattr(&restored, "security.capability"), None);
    assert_eq!(get_xattr(&restored, "trusted.x"), None);

    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("strata: warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains(
            "bin/tool: extended attribute security.capability not restored: Operation not permitted"
        ),
        "{stderr}"
    );
    assert!(warnings[0].contains("CAP_SETFCAP"), "{stderr}");
    assert!(
        !stderr.contains("trusted"),
        "trusted.* is skipped silently: {stderr}"
    );
}
