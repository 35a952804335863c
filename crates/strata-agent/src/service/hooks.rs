//! The node's own hooks: a `[[hooks]]` entry with `node = NAME` runs on that node's
//! agent, not on the coordinator's host, since what it pauses (an exporter, a service's
//! writes) lives there.
//!
//! A coordinator asks for a hook by name ([`HookRequest`]); the agent runs only hooks its
//! own configuration declares for this node, so the agent token cannot be turned into a
//! way to run commands. A pause is written durably under this agent's state directory
//! before it is issued, and its resume runs on every path:
//!
//! - the coordinator asks for it (`resume`), once the node's snapshot is stored or the
//!   operation failed;
//! - the operation's lease ends without it (released, or expired because the coordinator
//!   died or lost the network): the agent resumes what the operation left paused;
//! - the agent itself was killed: the agent that starts next resumes the records whose
//!   holder is gone.
//!
//! A resume that still fails after its retries keeps its record (shown by `status`
//! through the node's metadata) and is tried again at the next lease end or start.

use super::{Agent, ApiResult};
use crate::api::{ApiError, ErrorCode, HookReply, HookRequest, HookStep};
use strata_hooks::{HookConfig, HookOperation, PauseRecord};

/// The most text a coordinator may put in one field of a hook's environment.
const ENV_FIELD_LIMIT: usize = 1024;

impl Agent {
    /// Runs a step of one of this node's hooks for an operation (see the module docs).
    pub async fn hook(&self, request: HookRequest) -> ApiResult<HookReply> {
        let env = &request.env;
        let fields = [&env.operation, &env.id, &env.backup, &env.phase]
            .into_iter()
            .chain(env.component.iter())
            .chain(env.status.iter())
            .chain(env.snapshot_id.iter());
        if fields
            .into_iter()
            .any(|f| f.len() > ENV_FIELD_LIMIT || f.contains('\0'))
            || env.id != request.operation
        {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                "a hook's environment must name the request's operation, without NUL bytes or fields over 1 KiB",
            ));
        }
        let (index, hook) = self.declared(&request)?;
        let mut env = request.env.clone();
        env.node = Some(self.name().to_string());
        match request.step {
            HookStep::Run => {
                self.check_lease(&request.operation)?;
                let run = hook.run.as_ref().expect("declared checked it");
                let output = run
                    .run(&env, hook.timeout())
                    .await
                    .map_err(|why| self.hook_failed(hook, why))?;
                Ok(HookReply { output })
            }
            HookStep::Pause => {
                self.check_lease(&request.operation)?;
                env.phase = "pause".into();
                let record = strata_hooks::new_record(index, hook, &env);
                record.save(&self.config.state_dir).map_err(|e| {
                    self.hook_failed(
                        hook,
                        format!(
                            "cannot record the pause in {} ({e}), so it is not issued",
                            strata_hooks::pauses_dir(&self.config.state_dir).display()
                        ),
                    )
                })?;
                let pause = hook.pause.as_ref().expect("declared checked it");
                let output = pause
                    .run(&env, hook.timeout())
                    .await
                    .map_err(|why| self.hook_failed(hook, why))?;
                Ok(HookReply { output })
            }
            HookStep::Resume => {
                let id = format!("{}-{index}", request.operation);
                let Some(record) = self.own_records().into_iter().find(|r| r.id == id) else {
                    return Ok(HookReply {
                        output: "nothing paused".into(),
                    });
                };
                let resumed = strata_hooks::resume(&self.config.state_dir, record).await;
                match resumed.error {
                    None => Ok(HookReply {
                        output: resumed.output,
                    }),
                    Some(why) => Err(self.hook_failed(
                        hook,
                        format!(
                            "resume failed after {} attempts, still paused (the agent tries again when the operation's lease ends): {why}",
                            resumed.record.attempts
                        ),
                    )),
                }
            }
        }
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
                            h.run.is_some() && h.at.map(|a| a.as_str()) == Some(request.env.phase.as_str())
                        }
                        HookStep::Pause | HookStep::Resume => h.is_pause(),
                    }
            })
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::NotFound,
                    format!(
                        "node {} declares no {} hook {:?} for it ({} {}): the agent runs only the [[hooks]] of its own configuration; give it the same entry as the coordinator's",
                        self.name(),
                        match request.step {
                            HookStep::Run => "run",
                            HookStep::Pause | HookStep::Resume => "pause/resume",
                        },
                        request.hook,
                        request.env.operation,
                        request.env.phase
                    ),
                )
            })
    }

    fn hook_failed(&self, hook: &HookConfig, why: String) -> ApiError {
        ApiError::new(
            ErrorCode::Failed,
            format!("node {}: hook {}: {why}", self.name(), hook.label()),
        )
    }

    /// This node's pause records under its state directory, and the ones it cannot trust.
    fn records(&self) -> (Vec<PauseRecord>, Vec<String>) {
        let (mut records, mut problems) = (Vec::new(), Vec::new());
        for record in strata_hooks::paused(&self.config.state_dir) {
            match record {
                Ok(r) if r.node.as_deref() == Some(self.name()) => records.push(r),
                Ok(_) => {}
                Err(why) => problems.push(why),
            }
        }
        (records, problems)
    }

    fn own_records(&self) -> Vec<PauseRecord> {
        self.records().0
    }

    /// What this node holds paused now, for its metadata (URLs masked).
    pub(super) fn paused_view(&self) -> (Vec<PauseRecord>, Vec<String>) {
        let (mut records, problems) = self.records();
        for r in &mut records {
            r.resume = r.resume.masked();
        }
        (records, problems)
    }

    /// Resumes, in the background, what `operation` left paused on this node: its lease
    /// ended (released or expired) without the coordinator's resume.
    pub(super) fn resume_left_by(self: &std::sync::Arc<Self>, operation: &str) {
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
                let resumed = strata_hooks::resume(&agent.config.state_dir, record).await;
                agent.report(&resumed, "its operation's lease ended");
            }
        });
    }

    /// Resumes the pauses of this node whose holder process is gone (this agent was
    /// killed while they were paused). Called when the agent starts.
    pub(super) async fn resume_orphans(&self) {
        let dir = &self.config.state_dir;
        let own: Vec<HookConfig> = self
            .config
            .hooks
            .iter()
            .filter(|h| h.node.as_deref() == Some(self.name()))
            .cloned()
            .collect();
        if own.is_empty() && self.own_records().is_empty() {
            return;
        }
        for resumed in strata_hooks::resume_orphans(dir, &own).await {
            if resumed.record.node.as_deref() == Some(self.name()) {
                self.report(&resumed, "the process that paused it is gone");
            }
        }
    }

    fn report(&self, resumed: &strata_hooks::Resumed, why: &str) {
        if resumed.elsewhere {
            return;
        }
        let r = &resumed.record;
        match &resumed.error {
            None => eprintln!(
                "strata agent {}: resumed {} (paused by operation {} since {}; {why})",
                self.name(),
                r.hook,
                r.operation,
                r.since
            ),
            Some(e) => eprintln!(
                "strata agent {}: error: cannot resume {} (paused by operation {} since {}; {why}): {e}",
                self.name(),
                r.hook,
                r.operation,
                r.since
            ),
        }
    }
}
