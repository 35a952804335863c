//! Resuming a pause: after its pause call ended, retried, once more when the pause never
//! answered; and the orphans a dead process left.

use crate::config::*;
use crate::error::HookError;
use crate::record::*;
use crate::PauseLedger;
use std::time::Duration;

/// What resuming a pause came to.
#[derive(Debug, Clone)]
pub struct Resumed {
    /// The pause; when the resume failed, with `resume_error` set as it was saved.
    pub record: PauseRecord,
    /// `None`: resumed; else why the last attempt failed (the record stays).
    pub error: Option<String>,
    /// The resume's output.
    pub output: String,
    /// Not run here: another resumer held the record, or it was gone (resumed already).
    pub elsewhere: bool,
}
impl PauseLedger {
    /// Runs a pause's resume once its pause call has ended; see the `resume` module.
    pub async fn resume(&self, record: PauseRecord) -> Resumed {
        resume(self, record).await
    }

    /// Resumes every record no live operation holds and whose resume `configured`
    /// declares; see the `resume` module.
    pub async fn resume_orphans(
        &self,
        configured: &[HookConfig],
        live_here: impl Fn(&str) -> bool,
    ) -> Vec<Resumed> {
        resume_orphans(self, configured, live_here).await
    }
}

/// Runs a pause's resume once its pause call has ended ([`pause`]), retried with backoff
/// up to its attempts, and once more `late_pause` later when the pause never answered;
/// removes the record on success, keeps it with the error otherwise.
async fn resume(ledger: &PauseLedger, record: PauseRecord) -> Resumed {
    let state_dir = ledger.state_dir();
    ledger.wait_for_pause(&record.path(state_dir)).await;
    let Some((_claim, mut record)) = record.claim(state_dir) else {
        return Resumed {
            record,
            error: None,
            output: String::new(),
            elsewhere: true,
        };
    };
    let mut output = String::new();
    let mut rounds = vec![Duration::ZERO];
    if !record.pause_answered {
        // The pause may still land: resume again after it could have.
        rounds.push(Duration::from_millis(record.late_pause_ms));
    }
    for wait in rounds {
        tokio::time::sleep(wait).await;
        match resume_attempts(&record).await {
            Ok(said) => output = said,
            Err(last) => {
                let last = last.to_string();
                record.resume_error = Some(last.clone());
                if let Err(e) = record.save(state_dir) {
                    eprintln!(
                        "strata: warning: cannot update pause record {}: {e}",
                        record.id
                    );
                }
                return Resumed {
                    record,
                    error: Some(last),
                    output: String::new(),
                    elsewhere: false,
                };
            }
        }
    }
    if let Err(e) = record.remove(state_dir) {
        // Never resumed twice for it: the record says it was resumed, or at least this
        // process remembers it.
        let marked = record.mark_resumed(state_dir);
        eprintln!(
            "strata: warning: resumed {}, but cannot remove its pause record ({e}){}",
            record.hook,
            match marked {
                Ok(()) => ": marked resumed; delete it by hand".to_string(),
                Err(e2) => format!(" nor mark it resumed ({e2}): delete it by hand before the next strata process resumes it again"),
            }
        );
        ledger.remember_resumed(record.path(state_dir));
    }
    Resumed {
        record,
        error: None,
        output,
        elsewhere: false,
    }
}
/// One resume of `record`, tried up to its attempts with backoff from 200 ms to 5 s.
pub(crate) async fn resume_attempts(record: &PauseRecord) -> Result<String, HookError> {
    let timeout = Duration::from_millis(record.timeout_ms.max(1));
    let mut env = record.env.clone();
    env.phase = "resume".into();
    let mut delay = Duration::from_millis(200);
    let attempts = record.attempts.max(1);
    let mut attempt = 1;
    loop {
        match record.resume.run(&env, timeout).await {
            Ok(output) => return Ok(output),
            Err(why) if attempt >= attempts => return Err(why),
            Err(_) => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
        }
    }
}
/// Resumes every pause under `state_dir` that no live operation holds ([`PauseRecord::held`]):
/// what a SIGKILL left paused (its process is gone), and what a resume that failed left
/// (its operation ended). Only a resume the configuration
/// still declares (`configured`) is run; a record whose resume it does not (the hook was
/// changed since, or the record is not strata's) is reported and kept, for a person to
/// resume by hand.
async fn resume_orphans(
    ledger: &PauseLedger,
    configured: &[HookConfig],
    live_here: impl Fn(&str) -> bool,
) -> Vec<Resumed> {
    let state_dir = ledger.state_dir();
    let mut out = Vec::new();
    for record in ledger.paused().into_iter().flatten() {
        if record.held(&live_here) {
            continue;
        }
        let declared = configured
            .iter()
            .any(|h| h.resume.as_ref() == Some(&record.resume));
        if !declared {
            let why = format!(
                "its resume ({}) is not one the configuration declares: resume it by hand, then delete {}",
                record.resume.describe(),
                record.path(state_dir).display()
            );
            out.push(Resumed {
                record,
                error: Some(why),
                output: String::new(),
                elsewhere: false,
            });
            continue;
        }
        let resumed = resume(ledger, record).await;
        if !resumed.elsewhere {
            out.push(resumed);
        }
    }
    out
}
