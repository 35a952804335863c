//! Files come back whole: POSIX ACLs (mask included), extended attributes and holes, on
//! real files through the real binary (run as root, like the suite).
//!
//! The ACL test needs `setfacl` and `getfacl` (Debian's `acl`; scripts/test.sh installs
//! it): without them it is skipped, unless `STRATA_REQUIRE_TOOLS` is set, which makes it
//! fail.
// Tests signal their own children and read or set limits through libc: each block
// says why it is sound.
#![allow(unsafe_code)]

use crate::common;

use common::{get_xattr, set_xattr, Env};
use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

/// Whether `tool` runs; when it does not, a skip, or a failure under `STRATA_REQUIRE_TOOLS`.
fn have_tool(tool: &str) -> bool {
    if Command::new(tool).arg("--version").output().is_ok() {
        return true;
    }
    if std::env::var_os("STRATA_REQUIRE_TOOLS").is_some() {
        panic!("{tool} is not installed (Debian package acl; scripts/test.sh installs it)");
    }
    eprintln!("skipped: {tool} is not installed (Debian package acl)");
    false
}

fn getfacl(path: &Path) -> String {
    let out = Command::new("getfacl")
        .args(["--omit-header", "--numeric"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn setfacl(args: &[&str], path: &Path) {
    let out = Command::new("setfacl")
        .args(args)
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "setfacl {args:?}: {out:?}");
}

fn backup_and_restore(env: &Env, src: &Path) -> std::path::PathBuf {
    env.ok(&["backup", "--node-name", "n1", src.to_str().unwrap()]);
    let target = env.path("restored");
    env.ok(&["restore", "latest", "--to", target.to_str().unwrap()]);
    target
}

#[test]
fn acls_come_back_exactly_with_their_mask() {
    if !have_tool("setfacl") || !have_tool("getfacl") {
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    // The finding: `group::--- mask::rw-` came back as a plain 0660, so the group gained
    // access. The named user keeps rw through the mask; the owning group has nothing.
    let file = src.join("secret.conf");
    fs::write(&file, b"password=hunter2\n").unwrap();
    setfacl(&["-m", "u:65534:rw-,g::---,m::rw-,o::---"], &file);
    // A directory with a default ACL (inherited by new files) and its own access ACL.
    let dir = src.join("shared");
    fs::create_dir(&dir).unwrap();
    setfacl(
        &["-m", "u:65534:rwx,g::r-x,m::rwx", "-d", "-m", "u:65534:rw-"],
        &dir,
    );
    let (file_acl, dir_acl) = (getfacl(&file), getfacl(&dir));
    assert!(
        file_acl.contains("group::---") && file_acl.contains("mask::rw-"),
        "{file_acl}"
    );
    let file_mode = fs::metadata(&file).unwrap().permissions().mode() & 0o7777;

    let target = backup_and_restore(&env, &src);
    let restored = target.join("secret.conf");
    assert_eq!(getfacl(&restored), file_acl, "the file's ACL");
    assert_eq!(
        getfacl(&target.join("shared")),
        dir_acl,
        "the directory's ACLs"
    );
    for name in ["system.posix_acl_access", "system.posix_acl_default"] {
        assert_eq!(
            get_xattr(&target.join("shared"), name),
            get_xattr(&dir, name),
            "{name}"
        );
    }
    assert_eq!(
        get_xattr(&restored, "system.posix_acl_access"),
        get_xattr(&file, "system.posix_acl_access")
    );
    // chmod rewrites the mask: the mode is the original's (group bits = the mask), and the
    // ACL set after it is the whole ACL, mask included.
    assert_eq!(
        fs::metadata(&restored).unwrap().permissions().mode() & 0o7777,
        file_mode
    );
    assert_eq!(fs::read(&restored).unwrap(), b"password=hunter2\n");

    // A restore over the restored tree keeps the files (already correct) and the ACLs.
    env.ok(&["restore", "latest", "--to", target.to_str().unwrap()]);
    assert_eq!(getfacl(&restored), file_acl);

    // A file without an ACL in a directory whose default ACL it predates: rewritten in the
    // restored directory (which has that default ACL by now), it must not inherit it.
    let env = Env::new();
    let src = env.path("src2");
    fs::create_dir(&src).unwrap();
    let shared = src.join("shared");
    fs::create_dir(&shared).unwrap();
    fs::write(shared.join("plain.txt"), b"no acl").unwrap();
    setfacl(&["-d", "-m", "u:65534:rw-"], &shared);
    let plain_acl = getfacl(&shared.join("plain.txt"));
    assert!(!plain_acl.contains("user:65534"), "{plain_acl}");
    let target = backup_and_restore(&env, &src);
    let restored = target.join("shared/plain.txt");
    assert_eq!(getfacl(&restored), plain_acl);
    fs::write(&restored, b"changed").unwrap();
    env.ok(&["restore", "latest", "--to", target.to_str().unwrap()]);
    assert_eq!(fs::read(&restored).unwrap(), b"no acl");
    assert_eq!(
        getfacl(&restored),
        plain_acl,
        "the ACL was inherited on the rewrite"
    );

    // A directory without ACLs restored into a directory that has a default ACL (the tree
    // restored above) does not inherit it either.
    fs::create_dir(target.join("shared/probe")).unwrap();
    let inherited = getfacl(&target.join("shared/probe"));
    let src3 = env.path("src3");
    fs::create_dir_all(src3.join("inner")).unwrap();
    fs::write(src3.join("inner/file.txt"), b"no acl either").unwrap();
    let inner_plain = getfacl(&src3.join("inner"));
    let file_plain = getfacl(&src3.join("inner/file.txt"));
    assert_ne!(
        inherited, inner_plain,
        "the setup: a default ACL is inherited"
    );
    env.ok(&["backup", "--node-name", "n3", src3.to_str().unwrap()]);
    let into = target.join("shared/probe");
    env.ok(&["restore", "latest", "--to", into.to_str().unwrap()]);
    assert_eq!(getfacl(&into.join("inner")), inner_plain);
    // Nor does a file in a directory the restore created there (that directory dropped
    // what it inherited before the file was made).
    assert_eq!(getfacl(&into.join("inner/file.txt")), file_plain);
}

#[test]
fn user_and_trusted_extended_attributes_come_back() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    let file = src.join("data.bin");
    fs::write(&file, b"content").unwrap();
    set_xattr(&file, "user.mime_type", b"application/x-thing");
    set_xattr(&file, "user.binary", &[0, 1, 2, 255, 0]);
    set_xattr(&file, "user.empty", b"");
    // ext4 keeps all of a file's attributes in one block: keep them small.
    let big = vec![b'x'; 1500];
    set_xattr(&file, "user.big", &big);
    // trusted.* is kept when running as root (the suite does).
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        set_xattr(&file, "trusted.note", b"root only");
    }
    set_xattr(&src, "user.on_the_root", b"dir");
    let sub = src.join("sub");
    fs::create_dir(&sub).unwrap();
    set_xattr(&sub, "user.on_a_dir", b"yes");

    let target = backup_and_restore(&env, &src);
    let restored = target.join("data.bin");
    assert_eq!(fs::read(&restored).unwrap(), b"content");
    for name in ["user.mime_type", "user.binary", "user.empty", "user.big"] {
        assert_eq!(get_xattr(&restored, name), get_xattr(&file, name), "{name}");
        assert!(get_xattr(&restored, name).is_some(), "{name}");
    }
    if root {
        assert_eq!(
            get_xattr(&restored, "trusted.note").as_deref(),
            Some(&b"root only"[..])
        );
    }
    assert_eq!(
        get_xattr(&target, "user.on_the_root").as_deref(),
        Some(&b"dir"[..])
    );
    assert_eq!(
        get_xattr(&target.join("sub"), "user.on_a_dir").as_deref(),
        Some(&b"yes"[..])
    );

    // An unchanged file comes from the files cache on the next backup, without reading
    // its content: its attributes are still in the new backup.
    env.ok(&["backup", "--node-name", "n1", src.to_str().unwrap()]);
    let again = env.path("again");
    env.ok(&["restore", "latest", "--to", again.to_str().unwrap()]);
    assert_eq!(
        get_xattr(&again.join("data.bin"), "user.mime_type").as_deref(),
        Some(&b"application/x-thing"[..])
    );
}

#[test]
fn a_sparse_file_restores_sparse_with_the_same_content() {
    const SIZE: u64 = 64 << 20;
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    let path = src.join("sparse.img");
    let file = fs::File::create(&path).unwrap();
    file.set_len(SIZE).unwrap();
    // A little data: at the start, in the middle (not page aligned), at the very end.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8 + 1).collect();
    file.write_all_at(&data, 0).unwrap();
    file.write_all_at(b"middle", SIZE / 2 + 123).unwrap();
    file.write_all_at(b"end", SIZE - 3).unwrap();
    drop(file);
    assert!(fs::metadata(&path).unwrap().blocks() * 512 < SIZE / 8);

    let target = backup_and_restore(&env, &src);
    let restored = target.join("sparse.img");
    let meta = fs::metadata(&restored).unwrap();
    assert_eq!(meta.len(), SIZE);
    let on_disk = meta.blocks() * 512;
    assert!(
        on_disk < 4 << 20,
        "the restored file takes {on_disk} bytes on disk for {SIZE} bytes"
    );
    assert!(
        fs::read(&restored).unwrap() == fs::read(&path).unwrap(),
        "content differs"
    );
    // The restore drill reads every byte back against the manifest.
    env.ok(&["verify", "--restore", "latest"]);
}
