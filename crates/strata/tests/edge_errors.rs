//! Errors at the edge, with the real binary: a closed stdout, a lost concurrent init, a
//! missing bucket, a plain http endpoint, credentials that may not delete, an
//! unreachable storage. Each says what happened and exits with its documented code.

use crate::common;
use crate::servers;

use common::*;
use std::io::Read;
use std::process::Stdio;

/// Runs `strata ARGS` with stdout on a pipe whose reader takes one line and closes it.
fn with_reader_that_stops_early(env: &Env, args: &[&str]) -> std::process::Output {
    let mut child = env
        .command()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    child.wait_with_output().unwrap()
}

#[test]
fn a_reader_that_stops_early_ends_the_command_quietly_with_its_own_code() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    // Names long enough that a listing is far beyond a pipe's buffer (64 KiB).
    for i in 0..3000 {
        let name = format!("a-file-name-long-enough-to-fill-a-pipe-quickly-{i:05}");
        std::fs::write(src.join(name), format!("{i}")).unwrap();
    }
    env.ok(&["backup", src.to_str().unwrap()]);
    let name = env.backup_names().pop().unwrap();
    for args in [
        vec!["ls", name.as_str()],
        vec!["ls", name.as_str(), "--json"],
    ] {
        let out = with_reader_that_stops_early(&env, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "strata {args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "strata {args:?}: {stderr}");
        assert!(stderr.is_empty(), "strata {args:?}: {stderr}");
    }
}

#[test]
fn a_lost_concurrent_init_removes_its_key_file_and_says_so() {
    let env = Env::empty();
    let hold = env.path("hold");
    std::fs::create_dir_all(&hold).unwrap();
    // The first init stops just before its conditional create of `config`...
    let mut loser = env
        .command()
        .env(
            "STRATA_TEST_HOLD_WRITE",
            format!("config:{}", hold.display()),
        )
        .arg("init")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_held_write(&hold, &mut loser, "the init's config write");
    // ...while a second one creates the repository.
    env.ok(&["init"]);
    std::fs::write(hold.join("release"), "").unwrap();
    let out = loser.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("was created by another `strata init` meanwhile")
            && stderr.contains("was removed again"),
        "{stderr}"
    );
    let keys: Vec<_> = std::fs::read_dir(env.repo.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let list = env.run(&["key", "list"]);
    assert!(list.status.success());
    let stderr = String::from_utf8_lossy(&list.stderr);
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn credentials_that_may_not_delete_are_named_as_permissions_not_the_network() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), "a").unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    let name = env.backup_names().pop().unwrap();
    let out = env
        .command()
        .env("STRATA_TEST_REFUSE_DELETES", "1")
        .args(["delete", &name])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("permission denied: the credentials may not delete under"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("did not answer") && !stderr.contains("network"),
        "{stderr}"
    );
}

fn s3_command(env: &Env, server: &servers::Server, url: &str) -> std::process::Command {
    let mut cmd = env.command();
    cmd.env("STRATA_REPO", url);
    for (key, value) in &server.env {
        cmd.env(key, value);
    }
    cmd
}

#[test]
fn a_missing_bucket_says_so_for_every_command_including_init() {
    let server = servers::s3();
    let env = Env::empty();
    for args in [&["list"][..], &["init"], &["key", "list"]] {
        let out = s3_command(&env, &server, "s3://no-such-bucket/pg")
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "strata {args:?}: {stderr}");
        assert!(
            stderr.contains("the bucket of s3://no-such-bucket/pg does not exist"),
            "strata {args:?}: {stderr}"
        );
        assert!(
            !stderr.contains("strata init") && !stderr.contains("not found"),
            "strata {args:?}: {stderr}"
        );
    }
}

#[test]
fn a_plain_http_endpoint_names_the_option_to_set() {
    let env = Env::empty();
    let out = env
        .command()
        .env("STRATA_REPO", "s3://bucket/pg")
        .env("AWS_ENDPOINT", "http://127.0.0.1:9")
        .env("AWS_REGION", "us-east-1")
        .arg("list")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("aws_allow_http") && stderr.contains("AWS_ALLOW_HTTP=true"),
        "{stderr}"
    );
    assert!(!stderr.contains("builder error"), "{stderr}");
}
