//! Issuing a pause so that it can never land after its resume.
//!
//! A pause call that does not answer within its hook's `timeout` fails the operation,
//! but it may still be served: the system received it and applies it when it gets to
//! it. Were the call dropped there and the resume sent at once, a slow system would
//! apply the pause *after* the resume and stay paused with no record left. So:
//!
//! - the call goes on in a task of its own after the timeout, for at most `late_pause`
//!   more, and every resumer of the same [`PauseLedger`] waits for it to end first
//!   ([`PauseLedger::wait_for_pause`]);
//! - a call that ended with an answer (any status) is marked in its record
//!   ([`PauseRecord::pause_answered`]): one resume after it is enough;
//! - a call abandoned without an answer (or cut by a crash) may still land: its resume
//!   is sent, then sent once more `late_pause` later, and the record stays until that
//!   second resume succeeded. Resumes must therefore be idempotent, which the pause
//!   APIs strata drives are (resuming a running exporter is a no-op).

use crate::{HookAction, HookConfig, HookEnv, HookError, PauseLedger, PauseRecord};
use tokio::sync::watch;

impl PauseLedger {
    /// Issues `hook`'s pause for `record` (saved already: the pause is durable before it
    /// is issued). Returns its answer within the hook's `timeout`, else
    /// [`HookError::Timeout`] while the call goes on (see the `pause` module).
    pub async fn issue_pause(
        &self,
        record: &PauseRecord,
        hook: &HookConfig,
        env: &HookEnv,
    ) -> Result<String, HookError> {
        issue_pause(self, record, hook, env).await
    }
}

async fn issue_pause(
    ledger: &PauseLedger,
    record: &PauseRecord,
    hook: &HookConfig,
    env: &HookEnv,
) -> Result<String, HookError> {
    let action: HookAction = hook.pause.clone().expect("a pause hook has a pause");
    let timeout = hook.timeout();
    let path = record.path(ledger.state_dir());
    let (done_tx, done_rx) = watch::channel(false);
    ledger.call_started(path.clone(), done_rx);
    let (answer_tx, answer_rx) = tokio::sync::oneshot::channel();
    let (ledger, env, id) = (ledger.clone(), env.clone(), record.id.clone());
    let bound = timeout + hook.late_pause();
    tokio::spawn(async move {
        let result = action.run(&env, bound).await;
        // Ended without an answer: abandoned (the connection closed, the program
        // killed) or cut mid-call; either may still land. A call never sent cannot.
        let answered = !matches!(
            result,
            Err(HookError::Timeout(_))
                | Err(HookError::Unreachable {
                    never_sent: false,
                    ..
                })
        );
        if answered {
            mark_answered(&ledger, &id);
        }
        let _ = answer_tx.send(result);
        ledger.call_ended(&path);
        let _ = done_tx.send(true);
    });
    match tokio::time::timeout(timeout, answer_rx).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(HookError::Invalid(
            "the pause task ended without a result".into(),
        )),
        Err(_) => Err(HookError::Timeout(timeout)),
    }
}

/// Records in the pause record named `id` (if it is still there) that its pause call
/// answered.
fn mark_answered(ledger: &PauseLedger, id: &str) {
    let found = ledger.paused().into_iter().flatten().find(|r| r.id == id);
    if let Some(mut record) = found {
        record.pause_answered = true;
        if let Err(e) = ledger.save(&record) {
            eprintln!(
                "strata: warning: pause record {id}: cannot note that the pause answered ({e}): its resume will be sent twice"
            );
        }
    }
}
