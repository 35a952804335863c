//! A restore that cannot bring back a set-group-ID bit says so. Without CAP_FSETID (a
//! unit whose capability set lacks it, a container) the kernel silently drops the bit of
//! a directory whose group the process is not in; the restore used to report success.

use crate::common;

use common::Env;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

#[test]
fn a_setgid_bit_the_system_drops_fails_the_restore_and_names_it() {
    common::assert_root("the set-group-ID restore test (it gives a directory another owner)");
    let env = Env::new();
    let src = env.path("src");
    let shared = src.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join("f"), b"data").unwrap();
    // A group root is not in, and the set-group-ID bit (set after chown, which clears it).
    std::os::unix::fs::chown(&shared, Some(54321), Some(54321)).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o2775)).unwrap();
    assert_eq!(std::fs::metadata(&shared).unwrap().mode() & 0o7777, 0o2775);
    env.ok(&["backup", src.to_str().unwrap()]);

    // With every capability the bit comes back.
    let full = env.path("full");
    env.ok(&["restore", "latest", "--to", full.to_str().unwrap()]);
    assert_eq!(
        std::fs::metadata(full.join("shared")).unwrap().mode() & 0o7777,
        0o2775
    );

    // Without CAP_FSETID it cannot: the restore fails (exit 4) and says why.
    let cut = env.path("cut");
    let strata = env.command();
    let program = strata.get_program().to_owned();
    let args: Vec<_> = strata.get_args().map(|a| a.to_owned()).collect();
    let envs: Vec<_> = strata
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
        .collect();
    let out = Command::new("setpriv")
        .args(["--bounding-set", "-fsetid", "--inh-caps", "-fsetid", "--"])
        .arg(program)
        .args(args)
        .args(["restore", "latest", "--to", cut.to_str().unwrap()])
        .envs(envs)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("CAP_FSETID"), "{stderr}");
    assert!(stderr.contains("shared"), "names the entry: {stderr}");
    // The data itself is there.
    assert_eq!(std::fs::read(cut.join("shared/f")).unwrap(), b"data");
}
