//! The Londiste demo (`examples/londiste-demo.sh`) runs as documented: a root, a branch and
//! a leaf under a writer, `status` and `compare` at each step, a switchover, and every
//! node ending with the same rows.

use std::process::Command;
use strata_testkit::pg::skip_without_postgres;

#[test]
fn the_londiste_demo_runs_to_the_end() {
    if skip_without_postgres() {
        return;
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/londiste-demo.sh"
    );
    let out = Command::new("bash")
        .arg(script)
        .env("STRATA_BIN", env!("CARGO_BIN_EXE_strata"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.matches(", equal").count(), 4, "{stdout}");
    assert!(
        stdout.contains("branch is the root now"),
        "the switchover happened: {stdout}"
    );
    assert!(
        stdout.contains("written on the new root), the branch is the root"),
        "{stdout}"
    );
}
