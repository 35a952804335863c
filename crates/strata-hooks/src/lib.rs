//! Hooks: commands or HTTP calls at the steps of a backup and a restore, and pause/resume
//! pairs whose resume always runs.
//!
//! A `[[hooks]]` entry either runs an [`HookAction`] at a [`HookPoint`] (`run`), or declares a
//! pause/resume pair (`pause` and `resume`): the pause is issued before the snapshots of
//! its scope, the resume once they are stored, and the resume runs on *every* path once
//! a pause was attempted: success, a failing step, a cancellation (SIGTERM), a timeout.
//! For the paths no code of this process can see (SIGKILL, a crash, a power cut) the
//! pause is first written durably ([`PauseRecord`] under the state directory) and only
//! then issued; any later strata process with that state directory resumes records whose
//! holder is gone ([`PauseLedger::resume_orphans`]): the next backup before it starts, a server at
//! start and every few seconds (`strata status` lists them). A resume that fails is retried, and when it still fails
//! the record stays (shown by `status`, counted in metrics, sent as a `hook.failed`
//! webhook) and is tried again by the next process.
//!
//! ```
//! use strata_hooks::{HookConfig, HookPoint};
//!
//! // A pause/resume pair around one component, as `[[hooks]]` writes it.
//! let hook: HookConfig = toml::from_str(
//!     r#"
//!     name = "exporter"
//!     pause = ["systemctl", "stop", "exporter"]
//!     resume = ["systemctl", "start", "exporter"]
//!     component = "database"
//!     "#,
//! )
//! .unwrap();
//! hook.validate(&["database".into()], &[]).unwrap();
//! assert!(hook.run.is_none() && hook.at.is_none());
//! // A `run` hook needs its point; a pause without its resume is refused.
//! let half: HookConfig = toml::from_str(r#"pause = ["true"]"#).unwrap();
//! assert!(half.validate(&[], &[]).is_err());
//! assert_eq!(HookPoint::AfterSnapshot.as_str(), "after_snapshot");
//! ```
//!
//! Layout: `config` (a `[[hooks]]` entry and its checks), `action` (a command or an HTTP
//! call, bounded), `pause` (issuing a pause that may land late), `resume` (resumes
//! retried), `record` (the durable pause records), `ledger` (the records of one state
//! directory, and resuming orphans), `error`.

#![deny(missing_docs)]

mod action;
mod config;
mod error;
mod ledger;
mod pause;
mod record;
mod resume;

pub use action::{
    http_call, mask_label, parse_http_line, run_program, CommandOutput, HookAction, HookEnv,
    HttpAnswer, HttpRequest,
};
pub use config::{HookConfig, HookOperation, HookPoint};
pub use error::HookError;
pub use ledger::PauseLedger;
pub use record::{new_record, pauses_dir, shown_record, PauseRecord, RecordError};
pub use resume::Resumed;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The holder of a process that provably ended: another instance whose alive file,
    /// under `dir`, nobody holds.
    fn ended_holder(dir: &std::path::Path) -> Option<strata_liveness::Liveness> {
        let path = dir.join("ended.lock");
        let file = std::fs::File::create(&path).unwrap();
        Some(strata_liveness::Liveness {
            instance: "ended".into(),
            alive_file: Some(strata_liveness::AliveFile::of(&path, &file).unwrap()),
            ..strata_liveness::this_process()
        })
    }

    fn parse(toml_text: &str) -> HookConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn actions_are_commands_or_method_and_url() {
        let hook = parse("run = [\"/bin/true\"]\nat = \"before\"");
        assert_eq!(
            hook.run,
            Some(HookAction::Command(vec!["/bin/true".into()]))
        );
        hook.validate(&[], &[]).unwrap();
        let hook = parse("pause = \"POST http://e/pause\"\nresume = \"POST http://e/resume\"");
        hook.validate(&[], &[]).unwrap();
        for bad in [
            "run = \"http://e/x\"\nat = \"before\"",
            "run = \"FETCH http://e/x\"\nat = \"before\"",
            "run = \"POST ftp://e/x\"\nat = \"before\"",
            "run = []\nat = \"before\"",
            "run = [\"/bin/true\"]",
            "pause = \"POST http://e/pause\"",
            "pause = \"POST http://e/p\"\nresume = \"POST http://e/r\"\nat = \"before\"",
            "run = [\"/bin/true\"]\nat = \"before\"\ntimeout = \"soon\"",
            "run = [\"/bin/true\"]\nat = \"before\"\ncomponent = \"nope\"",
        ] {
            assert!(parse(bad).validate(&[], &[]).is_err(), "{bad}");
        }
    }

    /// `{ http, body }` sends its own body (Patroni reads `{"pause": true}` from `PATCH
    /// /config`), not the environment; the body is checked like the line.
    #[tokio::test]
    async fn a_request_sends_its_own_body() {
        let hook = parse(
            "pause = { http = \"PATCH http://e/config\", body = { pause = true } }\nresume = { http = \"PATCH http://e/config\", body = { pause = false } }",
        );
        hook.validate(&[], &[]).unwrap();
        assert_eq!(
            hook.pause.as_ref().unwrap().describe(),
            "PATCH http://e/***"
        );
        for bad in [
            "run = { http = \"PATCH ftp://e/x\", body = {} }\nat = \"before\"",
            "run = { http = \"PATCH http://e/x\", body = {}, extra = 1 }\nat = \"before\"",
        ] {
            assert!(
                toml::from_str::<HookConfig>(bad)
                    .map_err(|e| e.to_string())
                    .and_then(|h| h.validate(&[], &[]).map_err(|e| e.to_string()))
                    .is_err(),
                "{bad}"
            );
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&seen).contains("}") {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "the request ended early");
                seen.extend_from_slice(&buf[..n]);
            }
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await
                .unwrap();
            String::from_utf8_lossy(&seen).into_owned()
        });
        let action = HookAction::Request(HttpRequest {
            http: format!("PATCH http://127.0.0.1:{port}/config"),
            body: serde_json::json!({ "pause": true }),
        });
        let env = HookEnv {
            operation: "restore".into(),
            ..HookEnv::default()
        };
        assert_eq!(
            action.run(&env, Duration::from_secs(5)).await.unwrap(),
            "ok"
        );
        let request = server.await.unwrap();
        assert!(request.starts_with("PATCH /config "), "{request}");
        assert!(request.ends_with("{\"pause\":true}"), "{request}");
        assert!(
            !request.contains("restore"),
            "the environment is not sent: {request}"
        );
    }

    /// A record someone else could have written (group- or world-writable, or a link) is
    /// never run: a resume runs as this user, often root.
    #[tokio::test]
    async fn a_record_others_could_write_is_not_run() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ledger = PauseLedger::new(dir.path());
        let marker = dir.path().join("ran");
        let hook = HookConfig {
            pause: Some(HookAction::Command(vec!["/bin/true".into()])),
            resume: Some(HookAction::Command(vec![
                "/bin/touch".into(),
                marker.display().to_string(),
            ])),
            run: None,
            at: None,
            ..parse("run = [\"/bin/true\"]\nat = \"before\"")
        };
        let env = HookEnv {
            id: "op".into(),
            ..HookEnv::default()
        };
        let mut record = new_record(0, &hook, &env);
        record.holder = ended_holder(dir.path());
        record.pause_answered = true;
        record.save(dir.path()).unwrap();
        let file = pauses_dir(dir.path()).join("op-0.json");
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        let listed = ledger.paused();
        assert!(
            matches!(&listed[..], [Err(why @ RecordError::Foreign { .. })] if why.to_string().contains("not run")),
            "{listed:?}"
        );
        assert!(ledger
            .resume_orphans(std::slice::from_ref(&hook), |_| false)
            .await
            .is_empty());
        assert!(!marker.exists(), "a writable record never runs");
        // A link planted where the record goes is replaced, never followed.
        std::fs::remove_file(&file).unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, pauses_dir(dir.path()).join(".op-0.tmp")).unwrap();
        record.save(dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert!(ledger
            .resume_orphans(std::slice::from_ref(&hook), |_| false)
            .await[0]
            .error
            .is_none());
        assert!(marker.exists(), "the record it wrote itself runs");
    }

    #[test]
    fn urls_in_logs_lose_their_credentials() {
        let action =
            HookAction::Http("POST https://ops:s3cret@engine:8443/api/pause?token=t0k3n".into());
        assert_eq!(action.describe(), "POST https://engine:8443/***");
        assert_eq!(
            action.masked(),
            HookAction::Http("POST https://engine:8443/***".into())
        );
        // Nor in the error a bad one gets.
        let bad = HookAction::Http("POST ftp://ops:s3cret@engine/x?token=t0k3n".into());
        let err = bad.validate().unwrap_err().to_string();
        assert!(!err.contains("s3cret") && !err.contains("t0k3n"), "{err}");
    }

    #[tokio::test]
    async fn an_unreachable_url_is_named_without_its_credentials() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let action = HookAction::Http(format!(
            "POST http://ops:s3cret@127.0.0.1:{port}/pause?token=t0k3n"
        ));
        let err = action
            .run(&HookEnv::default(), Duration::from_secs(5))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("http://127.0.0.1:{port}/***")),
            "{err}"
        );
        assert!(
            !err.contains("s3cret") && !err.contains("t0k3n") && !err.contains("/pause"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_command_sees_its_environment_and_fails_loudly() {
        let env = HookEnv {
            operation: "backup".into(),
            id: "op1".into(),
            backup: "b1".into(),
            component: Some("db".into()),
            node: None,
            phase: "before".into(),
            ..HookEnv::default()
        };
        let echo = HookAction::Command(vec![
            "/bin/sh".into(),
            "-c".into(),
            "echo $STRATA_BACKUP $STRATA_COMPONENT $STRATA_PHASE".into(),
        ]);
        assert_eq!(
            echo.run(&env, Duration::from_secs(5)).await.unwrap(),
            "b1 db before"
        );
        let fail = HookAction::Command(vec![
            "/bin/sh".into(),
            "-c".into(),
            "echo no >&2; exit 3".into(),
        ]);
        let err = fail.run(&env, Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(err, HookError::Exited { .. }), "{err:?}");
        let err = err.to_string();
        assert!(err.contains("no"), "{err}");
        let slow = HookAction::Command(vec!["/bin/sleep".into(), "10".into()]);
        let err = slow
            .run(&env, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(err, HookError::Timeout(_)), "{err:?}");
        let err = err.to_string();
        assert!(err.contains("no answer within"), "{err}");
    }

    #[tokio::test]
    async fn an_orphaned_pause_is_resumed_and_a_live_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = PauseLedger::new(dir.path());
        let marker = dir.path().join("resumed");
        let hook = HookConfig {
            name: Some("exporter".into()),
            pause: Some(HookAction::Command(vec!["/bin/true".into()])),
            resume: Some(HookAction::Command(vec![
                "/bin/sh".into(),
                "-c".into(),
                format!("echo $STRATA_PHASE >> {}", marker.display()),
            ])),
            ..parse("run = [\"/bin/true\"]\nat = \"before\"")
        };
        let env = HookEnv {
            id: "op".into(),
            ..HookEnv::default()
        };
        // Pauses that answered: one resume each.
        let mut live = new_record(0, &hook, &env);
        live.pause_answered = true;
        live.save(dir.path()).unwrap();
        let mut dead = new_record(1, &hook, &env);
        dead.pause_answered = true;
        dead.holder = ended_holder(dir.path()); // its alive file released: gone
        dead.save(dir.path()).unwrap();
        assert_eq!(ledger.paused().len(), 2);
        // A resume the configuration does not declare is not run.
        // `live` is this process's and its operation runs here: held, never touched.
        let runs_here = |op: &str| op == "op";
        let refused = ledger.resume_orphans(&[], runs_here).await;
        assert_eq!(refused.len(), 1);
        assert!(refused[0]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("not one the configuration declares"));
        assert!(!marker.exists(), "nothing ran");
        let resumed = ledger
            .resume_orphans(std::slice::from_ref(&hook), runs_here)
            .await;
        assert_eq!(resumed.len(), 1);
        assert!(resumed[0].error.is_none());
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "resume\n");
        let left: Vec<_> = ledger
            .paused()
            .into_iter()
            .flatten()
            .map(|r| r.id)
            .collect();
        assert_eq!(left, vec![live.id.clone()]);
        // Once its operation has ended here (a resume of it failed, say), it is not held:
        // this process's own retry takes it up.
        let resumed = ledger
            .resume_orphans(std::slice::from_ref(&hook), |_| false)
            .await;
        assert_eq!(resumed.len(), 1);
        assert!(ledger.paused().is_empty());
    }

    /// A holder is gone only when its alive file is provably released: a pid that `/proc`
    /// does not show (another PID namespace, `hidepid`) says nothing, and a released file
    /// another kernel's process held proves nothing either.
    #[test]
    fn a_holder_that_cannot_be_proven_gone_keeps_its_pause() {
        let dir = tempfile::tempdir().unwrap();
        let hook: HookConfig =
            toml::from_str("pause = [\"/bin/true\"]\nresume = [\"/bin/true\"]").unwrap();
        let env = HookEnv {
            id: "op".into(),
            ..HookEnv::default()
        };
        let mut record = new_record(0, &hook, &env);
        assert!(record.held_by_this_process() && record.held(|op| op == "op"));
        // Another process, which `/proc` here does not show.
        record.holder_pid = u32::MAX;
        record.holder_start = 1;
        let path = dir.path().join("other.lock");
        let file = std::fs::File::create(&path).unwrap();
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
        record.holder = Some(strata_liveness::Liveness {
            instance: "other".into(),
            alive_file: Some(strata_liveness::AliveFile::of(&path, &file).unwrap()),
            ..strata_liveness::this_process()
        });
        assert!(!record.held_by_this_process());
        assert!(record.holder_alive() && record.held(|_| false), "it runs");
        drop(file);
        let mut elsewhere = record.clone();
        elsewhere.holder.as_mut().unwrap().boot_id = Some("another boot".into());
        assert!(
            elsewhere.held(|_| false),
            "another kernel's file proves nothing"
        );
        // Released under this kernel (the test's directory is local): gone, in whatever
        // PID namespace it ran.
        record.holder.as_mut().unwrap().pid_ns = Some("pid:[1]".into());
        assert!(!record.held(|_| false), "its file released here: gone");
    }

    /// Two resumers of one record (two processes on one state directory, or a
    /// coordinator's request and an agent's lease-end resume) run its resume once.
    /// A pause slower than its timeout: a resume through any clone of the ledger that
    /// issued it waits for the call to end, so the pause never lands after the resume; a
    /// ledger of its own (another process's) knows of no call and resumes at once, then
    /// again `late_pause` later. (Dropping the wait makes the first case fail.)
    #[tokio::test]
    async fn a_resume_through_the_same_ledger_waits_for_the_pause_call() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let step = |what: &str, sleep: &str| {
            HookAction::Command(vec![
                "/bin/sh".into(),
                "-c".into(),
                format!("sleep {sleep}; echo {what} >> {}", log.display()),
            ])
        };
        let hook = HookConfig {
            pause: Some(step("pause", "1.2")),
            resume: Some(step("resume", "0")),
            run: None,
            at: None,
            timeout: "100ms".into(),
            late_pause: "2500ms".into(),
            ..toml::from_str("run = [\"/bin/true\"]\nat = \"before\"").unwrap()
        };
        for shared in [true, false] {
            let _ = std::fs::remove_file(&log);
            let ledger = PauseLedger::new(dir.path());
            let env = HookEnv {
                id: format!("op{shared}"),
                ..HookEnv::default()
            };
            let record = new_record(0, &hook, &env);
            ledger.save(&record).unwrap();
            let paused = ledger.issue_pause(&record, &hook, &env).await;
            assert!(matches!(paused, Err(HookError::Timeout(_))), "{paused:?}");
            let resumer = match shared {
                true => ledger.clone(),
                false => PauseLedger::new(dir.path()),
            };
            let resumed = resumer.resume(record).await;
            assert!(resumed.error.is_none(), "{:?}", resumed.error);
            let lines = std::fs::read_to_string(&log).unwrap();
            match shared {
                // Waited for the call: the pause answered first, one resume after it.
                true => assert_eq!(lines, "pause\nresume\n"),
                // Not waited for (at once, unless this machine stalled past the pause):
                // whatever the order, a resume comes after the pause landed.
                false => assert!(
                    lines.starts_with("resume\npause\nresume\n") || lines == "pause\nresume\n",
                    "{lines}"
                ),
            }
        }
    }

    #[tokio::test]
    async fn two_resumers_of_one_record_run_its_resume_once() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = PauseLedger::new(dir.path());
        let marker = dir.path().join("resumed");
        let hook = HookConfig {
            pause: Some(HookAction::Command(vec!["/bin/true".into()])),
            resume: Some(HookAction::Command(vec![
                "/bin/sh".into(),
                "-c".into(),
                format!("echo once >> {}; sleep 0.3", marker.display()),
            ])),
            run: None,
            at: None,
            ..toml::from_str("run = [\"/bin/true\"]\nat = \"before\"").unwrap()
        };
        let env = HookEnv {
            id: "op".into(),
            ..HookEnv::default()
        };
        let mut record = new_record(0, &hook, &env);
        record.pause_answered = true;
        record.save(dir.path()).unwrap();
        let (a, b) = tokio::join!(ledger.resume(record.clone()), ledger.resume(record.clone()));
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "once\n");
        assert!(a.error.is_none() && b.error.is_none());
        assert!(
            a.elsewhere != b.elsewhere,
            "one ran it, the other stood aside"
        );
        assert!(ledger.paused().is_empty());
        // Resumed already: a later resumer finds nothing to run.
        assert!(ledger.resume(record).await.elsewhere);
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "once\n");
    }

    /// A record whose file could not be removed after its resume is rewritten as
    /// resumed: listed for a person to delete, never resumed again.
    #[tokio::test]
    async fn a_record_marked_resumed_is_never_resumed_again() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = PauseLedger::new(dir.path());
        let marker = dir.path().join("resumed");
        let hook: HookConfig = toml::from_str(&format!(
            "pause = [\"/bin/true\"]\nresume = [\"/bin/sh\", \"-c\", \"echo again >> {}\"]",
            marker.display()
        ))
        .unwrap();
        let env = HookEnv {
            id: "op".into(),
            ..HookEnv::default()
        };
        // A record of an older version (no holder), whose pid runs no longer.
        let mut record = new_record(0, &hook, &env);
        record.holder = None;
        record.holder_start += 1;
        record.save(dir.path()).unwrap();
        record.mark_resumed(dir.path()).unwrap();
        let listed = ledger.paused();
        assert!(
            matches!(&listed[..], [Err(why @ RecordError::Resumed { .. })] if why.to_string().contains("resumed but could not be removed")),
            "{listed:?}"
        );
        assert!(ledger
            .resume_orphans(std::slice::from_ref(&hook), |_| false)
            .await
            .is_empty());
        assert!(!marker.exists(), "not resumed twice");
    }

    #[test]
    fn a_record_of_an_operation_id_that_would_leave_its_directory_is_not_saved() {
        // (The id rule itself is strata_util::valid_id's, tested there.)
        let dir = tempfile::tempdir().unwrap();
        let hook: HookConfig =
            toml::from_str("pause = [\"/bin/true\"]\nresume = [\"/bin/true\"]").unwrap();
        let env = HookEnv {
            id: "/../../escape".into(),
            ..HookEnv::default()
        };
        assert!(new_record(0, &hook, &env).save(dir.path()).is_err());
        assert_eq!(
            mask_label("POST https://hooks.example.com/services/T0/B0/secret"),
            "POST https://hooks.example.com/***"
        );
    }
}
