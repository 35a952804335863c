//! The node's own hooks: a `[[hooks]]` entry with `node = NAME` runs on that node's
//! agent, not on the coordinator's host, since what it pauses (an exporter, a service's
//! writes) lives there.
//!
//! A coordinator asks for a hook by name ([`HookRequest`]); the agent runs only hooks its
//! own configuration declares for this node, so the agent token cannot be turned into a
//! way to run commands. A pause is written durably under this agent's state directory
//! (as `<operation>-<node>-<n>`) before it is issued, and its resume runs on every path:
//!
//! - the coordinator asks for it (`resume`), once the node's snapshot is stored or the
//!   operation failed;
//! - the operation's lease ends without it (released, or expired because the coordinator
//!   died or lost the network): the agent resumes what the operation left paused, at
//!   once and then every few seconds while a resume fails;
//! - the agent itself was killed: the agent that starts next resumes the records whose
//!   holder is gone.
//!
//! The steps of one hook never overlap on an agent (one async lock per hook): a resume
//! at a lease's end waits for a pause still in flight (else the pause would land after
//! its resume), and a pause of the next operation waits for a late resume of the last.

use super::{Agent, ApiResult};
use std::sync::Arc;
use std::time::Duration;
use strata_cluster::node_api::{ApiError, ErrorCode, HookReply, HookRequest, HookStep};
use strata_hooks::{HookConfig, HookOperation, PauseRecord};

/// The most text a coordinator may put in one field of a hook's environment.
const ENV_FIELD_LIMIT: usize = 1024;

/// How often an agent looks for pauses whose operation's lease is gone.
pub(super) const STALE_EVERY: Duration = Duration::from_secs(5);

impl Agent {
    /// Runs a step of one of this node's hooks for an operation (see the module docs).
    pub async fn hook(&self, request: HookRequest) -> ApiResult<HookReply> {
        let env = &request.env;
        let fields = [&env.operation, &env.id, &env.backup, &env.phase]
            .into_iter()
            .chain(env.component.iter())
            .chain(env.status.iter())
            .chain(env.snapshot_id.iter());
        let bad_field = fields
            .into_iter()
            .any(|f| f.len() > ENV_FIELD_LIMIT || f.contains('\0'));
        if bad_field || env.id != request.operation || !strata_util::valid_id(&request.operation) {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                "a hook's environment must name the request's operation (A-Z, a-z, 0-9, '.', '_', '-'), without NUL bytes or fields over 1 KiB",
            ));
        }
        let (index, hook) = self.declared(&request)?;
        let mut env = request.env.clone();
        env.node = Some(self.name().to_string());
        if request.step == HookStep::Check {
            // Nothing runs: no need to wait for a step of this hook in flight.
            return Ok(HookReply {
                output: "declared".into(),
            });
        }
        let lock = self.hook_lock(index);
        let _serial = lock.lock().await;
        match request.step {
            HookStep::Run => {
                self.check_lease(&request.operation)?;
                let run = hook.run.as_ref().expect("declared checked it");
                let output = run
                    .run(&env, hook.timeout())
                    .await
                    .map_err(|why| self.hook_failed(hook, why.to_string()))?;
                Ok(HookReply { output })
            }
            HookStep::Pause => {
                self.check_lease(&request.operation)?;
                env.phase = "pause".into();
                let mut record = strata_hooks::new_record(index, hook, &env);
                record.id = self.record_id(&request.operation, index);
                self.config.pauses.save(&record).map_err(|e| {
                    self.hook_failed(
                        hook,
                        format!(
                            "cannot record the pause in {} ({e}), so it is not issued",
                            self.config.pauses.dir().display()
                        ),
                    )
                })?;
                let output = self
                    .config
                    .pauses
                    .issue_pause(&record, hook, &env)
                    .await
                    .map_err(|why| self.hook_failed(hook, why.to_string()))?;
                Ok(HookReply { output })
            }
            HookStep::Check => Ok(HookReply {
                output: "declared".into(),
            }),
            HookStep::Resume => {
                let id = self.record_id(&request.operation, index);
                let Some(record) = self.own_records().into_iter().find(|r| r.id == id) else {
                    return Ok(HookReply {
                        output: "nothing paused (resumed already)".into(),
                    });
                };
                let resumed = self.config.pauses.resume(record).await;
                match (resumed.error, resumed.elsewhere) {
                    (None, false) => Ok(HookReply {
                        output: resumed.output,
                    }),
                    (None, true) => Ok(HookReply {
                        output: "resumed by another resumer of this state directory".into(),
                    }),
                    (Some(why), _) => Err(self.hook_failed(
                        hook,
                        format!(
                            "resume failed after {} attempts, still paused (the agent tries again every few seconds once the operation's lease ends): {why}",
                            resumed.record.attempts
                        ),
                    )),
                }
            }
        }
    }

    /// The record name of hook `index`'s pause in `operation`: the node's name in it, so
    /// nodes and the coordinator sharing a state directory never write one file.
    fn record_id(&self, operation: &str, index: usize) -> String {
        format!("{operation}-{}-{index}", self.name())
    }

    /// The lock that keeps the steps of hook `index` from overlapping.
    fn hook_lock(&self, index: usize) -> Arc<tokio::sync::Mutex<()>> {
        self.hook_locks
            .lock()
            .unwrap()
            .entry(index)
            .or_default()
            .clone()
    }

    /// The hook a request names, if this node's configuration declares it for this node
    /// and for this kind of step and operation; with its index (which names its record).
    fn declared(&self, request: &HookRequest) -> ApiResult<(usize, &HookConfig)> {
        let operation = match request.env.operation.as_str() {
            "backup" => HookOperation::Backup,
            "restore" => HookOperation::Restore,
            other => {
                return Err(ApiError::new(
                    ErrorCode::BadRequest,
                    format!("operation kind {other:?} is not backup or restore"),
                ))
            }
        };
        self.config
            .hooks
            .iter()
            .enumerate()
            .find(|(_, h)| {
                h.node.as_deref() == Some(self.name())
                    && h.label() == request.hook
                    && h.operation == operation
                    && match request.step {
                        HookStep::Run => {
                            h.run.is_some()
                                && h.at.map(|a| a.as_str()) == Some(request.env.phase.as_str())
                        }
                        HookStep::Pause | HookStep::Resume => h.is_pause(),
                        HookStep::Check if request.env.phase == "pause" => h.is_pause(),
                        HookStep::Check => {
                            h.run.is_some()
                                && h.at.map(|a| a.as_str()) == Some(request.env.phase.as_str())
                        }
                    }
            })
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::NotFound,
                    format!(
                        "node {} declares no {} hook {:?} for it ({} {}): the agent runs only the [[hooks]] of its own configuration; give it the same entry as the coordinator's",
                        self.name(),
                        match request.step {
                            HookStep::Pause | HookStep::Resume => "pause/resume",
                            HookStep::Check if request.env.phase == "pause" => "pause/resume",
                            HookStep::Run | HookStep::Check => "run",
                        },
                        strata_hooks::mask_label(&request.hook),
                        request.env.operation,
                        request.env.phase
                    ),
                )
            })
    }

    fn hook_failed(&self, hook: &HookConfig, why: String) -> ApiError {
        ApiError::new(
            ErrorCode::Failed,
            format!(
                "node {}: hook {}: {why}",
                self.name(),
                strata_hooks::mask_label(&hook.label())
            ),
        )
    }

    /// This node's pause records under its state directory, and the ones it cannot trust.
    fn records(&self) -> (Vec<PauseRecord>, Vec<String>) {
        let (mut records, mut problems) = (Vec::new(), Vec::new());
        for record in self.config.pauses.paused() {
            match record {
                Ok(r) if r.node.as_deref() == Some(self.name()) => records.push(r),
                Ok(_) => {}
                Err(why) => problems.push(why.to_string()),
            }
        }
        (records, problems)
    }

    fn own_records(&self) -> Vec<PauseRecord> {
        self.records().0
    }

    /// What this node holds paused now, for its metadata (URLs cut to their hosts).
    pub(super) fn paused_view(&self) -> (Vec<PauseRecord>, Vec<String>) {
        let (records, problems) = self.records();
        (
            records.iter().map(strata_hooks::shown_record).collect(),
            problems,
        )
    }

    /// Resumes one of this node's records under its hook's lock; a record whose resume
    /// this configuration does not declare is reported, never run.
    async fn resume_record(&self, record: PauseRecord) -> strata_hooks::Resumed {
        let index = self.config.hooks.iter().position(|h| {
            h.node.as_deref() == Some(self.name()) && h.resume.as_ref() == Some(&record.resume)
        });
        let Some(index) = index else {
            return strata_hooks::Resumed {
                error: Some(format!(
                    "its resume ({}) is not one this agent's configuration declares: resume it by hand, then delete its record",
                    record.resume.describe()
                )),
                record,
                output: String::new(),
                elsewhere: false,
            };
        };
        let lock = self.hook_lock(index);
        let _serial = lock.lock().await;
        self.config.pauses.resume(record).await
    }

    /// Resumes, in the background, what `operation` left paused on this node: its lease
    /// ended (released or expired) without the coordinator's resume.
    pub(super) fn resume_left_by(self: &Arc<Self>, operation: &str) {
        let left: Vec<PauseRecord> = self
            .own_records()
            .into_iter()
            .filter(|r| r.operation == operation && r.holder_alive())
            .collect();
        if left.is_empty() {
            return;
        }
        let agent = self.clone();
        tokio::spawn(async move {
            for record in left.into_iter().rev() {
                let resumed = agent.resume_record(record).await;
                agent.report(&resumed, "its operation's lease ended");
            }
        });
    }

    /// Resumes the records no live operation holds: those whose holder process is gone
    /// (an agent killed while they were paused), and those of an operation that no
    /// longer holds the lease (a resume that failed before). Runs when the agent starts
    /// and every [`STALE_EVERY`]; a failure is reported once per record, then retried
    /// quietly.
    pub(super) async fn resume_stale(&self) {
        let current = self.lease_holder();
        for record in self.own_records() {
            if record.held(|op| current.as_deref() == Some(op)) {
                continue;
            }
            let why = if record.holder_alive() {
                "its operation's lease ended"
            } else {
                "the process that paused it is gone"
            };
            let resumed = self.resume_record(record).await;
            self.report(&resumed, why);
        }
    }

    fn report(&self, resumed: &strata_hooks::Resumed, why: &str) {
        if resumed.elsewhere {
            return;
        }
        let r = &resumed.record;
        let hook = strata_hooks::mask_label(&r.hook);
        match &resumed.error {
            None => {
                self.reported_pauses.lock().unwrap().remove(&r.id);
                eprintln!(
                    "strata agent {}: resumed {hook} (paused by operation {} since {}; {why})",
                    self.name(),
                    r.operation,
                    r.since
                );
            }
            Some(e) => {
                if self.reported_pauses.lock().unwrap().insert(r.id.clone()) {
                    eprintln!(
                        "strata agent {}: error: cannot resume {hook} (paused by operation {} since {}; {why}): {e}",
                        self.name(),
                        r.operation,
                        r.since
                    );
                }
            }
        }
    }
}
