//! Components: what a backup is made of, and the hooks that run around them.
//!
//! A component is a plugin with its nodes (`postgres` on db1-db3, `etcd` on its members)
//! or an external system driven through its own backup API (`command`, `http`). Each has
//! its own status in the backup's summary; the backup is complete only when every
//! required component is ([`strata_repo::summary::backup_status`]). Configurations from
//! before components are one component: the top-level `plugin` over every node.
//!
//! [`OpHooks`] runs one operation's `[[hooks]]`: `run` hooks at their points and
//! pause/resume pairs, each pause recorded durably before it is issued and resumed on
//! every path the process lives to see (see [`crate::hooks`] for the others). A hook
//! with `node = NAME` runs on that node's agent (see
//! [`strata_agent::service::Agent::hook`]), which records its pauses itself and resumes
//! them when the operation's lease ends or the agent starts again.

use crate::config::Config;
use crate::hooks::{self, HookConfig, HookEnv, HookOperation, HookPoint, PauseRecord};
use crate::node::NodeApi;
use crate::operation::Operation;
use crate::plugin::Plugin;
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use strata_cluster::node_api::{HookRequest, HookStep};

/// One component, as a coordinator drives it.
#[derive(Clone)]
pub struct Component {
    /// The component's name (`name` of its `[[components]]` entry).
    pub name: String,
    /// The plugin that backs it up and restores it.
    pub plugin: Arc<dyn Plugin>,
    /// Indexes of its nodes in the coordinator's node list.
    pub nodes: Vec<usize>,
    /// Not deployed everywhere: when none of its nodes answers (or it fails), the backup
    /// records it `absent` (or `failed`) and is not failed for it.
    pub optional: bool,
    /// Restore order, lower first.
    pub order: u32,
}

impl Component {
    /// One component of `plugin` over the nodes `0..nodes` (what a coordinator without
    /// `[[components]]` drives).
    pub fn whole(plugin: Arc<dyn Plugin>, nodes: usize) -> Component {
        Component {
            name: plugin.name().to_string(),
            order: plugin.restore_rank(),
            plugin,
            nodes: (0..nodes).collect(),
            optional: false,
        }
    }
}

/// The configured components over `nodes` (names in the coordinator's order). Nodes the
/// configuration puts in no component (a coordinator given other nodes than it
/// configures) form a `files` component.
pub fn from_config(config: &Config, nodes: &[&str]) -> Vec<Component> {
    let Ok(configured) = crate::plugin::configured(config) else {
        // Validated before: only a test's hand-made configuration gets here.
        return vec![Component::whole(
            Arc::new(crate::plugin::Files),
            nodes.len(),
        )];
    };
    let mut out: Vec<Component> = configured
        .into_iter()
        .map(|(c, plugin)| Component {
            nodes: nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| c.nodes.iter().any(|m| m == *n))
                .map(|(i, _)| i)
                .collect(),
            order: c.order.unwrap_or_else(|| plugin.restore_rank()),
            name: c.name,
            optional: c.optional,
            plugin,
        })
        .collect();
    let loose: Vec<usize> = (0..nodes.len())
        .filter(|i| !out.iter().any(|c| c.nodes.contains(i)))
        .collect();
    if !loose.is_empty() {
        if let Some(files) = out.iter_mut().find(|c| c.plugin.name() == "files") {
            files.nodes.extend(loose);
            files.nodes.sort();
        } else {
            out.push(Component {
                nodes: loose,
                ..Component::whole(Arc::new(crate::plugin::Files), 0)
            });
        }
    }
    out
}

/// The hooks of a coordinator and where it records pauses.
#[derive(Debug, Clone, Default)]
pub struct HookSet {
    /// The hooks of the configuration (`[[hooks]]`).
    pub hooks: Vec<HookConfig>,
    /// Pause/resume pairs components issue themselves ([`Plugin::implied_hooks`]): never
    /// run as hooks, but their records are resumed like the configuration's own.
    pub implied: Vec<HookConfig>,
    /// The ledger of the state directory pause records go to; without one, pauses are
    /// refused (a pause that cannot be recorded could not be resumed after a crash).
    pub pauses: Option<hooks::PauseLedger>,
}

/// Where one operation's hooks may run: the components and nodes taking part.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// (component, its node names) of every component taking part.
    pub components: Vec<(String, Vec<String>)>,
}

impl Scope {
    fn has_component(&self, name: &str) -> bool {
        self.components.iter().any(|(c, _)| c == name)
    }
    fn component_of(&self, node: &str) -> Option<&str> {
        self.components
            .iter()
            .find(|(_, nodes)| nodes.iter().any(|n| n == node))
            .map(|(c, _)| c.as_str())
    }
}

/// An optional component left out of an operation because a pause scoped to it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    /// Why.
    pub why: String,
    /// Its system never answered: the component is `absent`, not failed.
    pub unreachable: bool,
}

/// One operation's hooks.
pub struct OpHooks {
    set: Arc<HookSet>,
    kind: HookOperation,
    base: HookEnv,
    op: Arc<Operation>,
    events: Arc<crate::events::Events>,
    storage: String,
    who: String,
    stats: Arc<Mutex<crate::stats::OperationStats>>,
    /// The cluster's nodes, whose agents run the hooks that name them.
    nodes: Vec<Arc<dyn NodeApi>>,
    pausing: Arc<Mutex<HashSet<String>>>,
    /// Pauses attempted and not yet resumed, in the order they were issued.
    paused: Vec<Held>,
}

/// A pause attempted and not yet resumed.
enum Held {
    /// Recorded and issued by this process.
    Here(PauseRecord),
    /// Recorded and issued by a node's agent.
    OnNode {
        node: Arc<dyn NodeApi>,
        hook: HookConfig,
        env: HookEnv,
    },
}

/// What [`OpHooks`] needs of its coordinator and operation.
pub(crate) struct OpContext {
    pub op: Arc<Operation>,
    pub events: Arc<crate::events::Events>,
    pub storage: String,
    pub who: String,
    pub stats: Arc<Mutex<crate::stats::OperationStats>>,
    pub nodes: Vec<Arc<dyn NodeApi>>,
    /// The operations of this process whose hooks may hold pauses: this one is in it
    /// from [`OpHooks::new`] until the hooks are dropped.
    pub pausing: Arc<Mutex<HashSet<String>>>,
}

impl Drop for OpHooks {
    fn drop(&mut self) {
        self.pausing.lock().unwrap().remove(&self.base.id);
    }
}

impl OpHooks {
    pub(crate) fn new(
        set: Arc<HookSet>,
        kind: HookOperation,
        base: HookEnv,
        ctx: OpContext,
    ) -> Self {
        ctx.pausing.lock().unwrap().insert(base.id.clone());
        OpHooks {
            set,
            kind,
            base,
            op: ctx.op,
            events: ctx.events,
            storage: ctx.storage,
            who: ctx.who,
            stats: ctx.stats,
            nodes: ctx.nodes,
            pausing: ctx.pausing,
            paused: Vec::new(),
        }
    }

    /// The agent that runs `hook`: its node's, for a hook with `node`.
    fn agent_of(&self, hook: &HookConfig) -> Option<Arc<dyn NodeApi>> {
        let name = hook.node.as_deref()?;
        self.nodes.iter().find(|n| n.name() == name).cloned()
    }

    /// Asks `node`'s agent for a step of `hook`.
    async fn on_node(
        &self,
        node: &Arc<dyn NodeApi>,
        hook: &HookConfig,
        step: HookStep,
        env: &HookEnv,
    ) -> Result<String, strata_cluster::node_api::ApiError> {
        let request = HookRequest {
            operation: self.base.id.clone(),
            hook: hook.label(),
            step,
            env: env.clone(),
        };
        node.hook(request).await.map(|reply| reply.output)
    }

    /// The hooks of this operation that apply to `scope`, with the environment each gets.
    fn applicable<'a>(
        &'a self,
        scope: &'a Scope,
        want: impl Fn(&HookConfig) -> bool + 'a,
    ) -> impl Iterator<Item = (usize, &'a HookConfig, HookEnv)> + 'a {
        self.set
            .hooks
            .iter()
            .enumerate()
            .filter(move |(_, h)| h.operation == self.kind && want(h))
            .filter_map(move |(i, h)| {
                let mut env = self.base.clone();
                if let Some(node) = &h.node {
                    let component = scope.component_of(node)?;
                    if h.component.as_deref().is_some_and(|c| c != component) {
                        return None;
                    }
                    env.node = Some(node.clone());
                    env.component = Some(component.to_string());
                } else if let Some(component) = &h.component {
                    if !scope.has_component(component) {
                        return None;
                    }
                    env.component = Some(component.clone());
                }
                Some((i, h, env))
            })
    }

    fn log(&self, hook: &HookConfig, env: &HookEnv, result: &Result<String, StepFailed>) {
        let mut at = env.phase.clone();
        if let Some(c) = &env.component {
            at.push_str(&format!(", component {c}"));
        }
        if let Some(n) = &env.node {
            at.push_str(&format!(", node {n}"));
        }
        let line = match result {
            Ok(out) if out.is_empty() => format!("hook {} ({at}): ok", hook.label()),
            Ok(out) => format!(
                "hook {} ({at}): ok: {}",
                hook.label(),
                out.replace('\n', " | ")
            ),
            Err(why) => format!("hook {} ({at}): failed: {why}", hook.label()),
        };
        self.op.log(line);
    }

    /// Asks every node whose agent runs hooks of this operation whether it declares
    /// them (and whether its strata runs node hooks at all), before anything runs or is
    /// paused: a missing hook then fails the operation at its start, every one named.
    pub async fn check(&self, scope: &Scope) -> Result<(), HookFailure> {
        let calls: Vec<(HookConfig, HookEnv)> = self
            .applicable(scope, |h| h.node.is_some())
            .map(|(_, h, env)| (h.clone(), env))
            .collect();
        let mut problems = Vec::new();
        let mut asked: Vec<String> = Vec::new();
        for (hook, mut env) in calls {
            let Some(node) = self.agent_of(&hook) else {
                continue;
            };
            if !asked.contains(&node.name().to_string()) {
                asked.push(node.name().to_string());
                match node.metadata().await {
                    Ok(meta)
                        if !meta
                            .features
                            .iter()
                            .any(|f| f == strata_cluster::node_api::NODE_HOOKS) =>
                    {
                        problems.push(format!(
                            "node {} runs strata {}, which runs no node hooks: upgrade it",
                            node.name(),
                            meta.version
                        ));
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        problems.push(format!("node {}: {}", node.name(), e.message));
                        continue;
                    }
                }
            }
            env.phase = match (hook.at, hook.is_pause()) {
                (_, true) => "pause".into(),
                (Some(at), false) => at.as_str().into(),
                (None, false) => continue,
            };
            if let Err(e) = self.on_node(&node, &hook, HookStep::Check, &env).await {
                problems.push(e.message);
            }
        }
        match problems.is_empty() {
            true => Ok(()),
            false => Err(HookFailure::NotReady(problems)),
        }
    }

    /// Runs the `run` hooks at `point` (for `success`, `failure` and `always`,
    /// `status_of` says how a component, or the whole operation with `None`, ended).
    /// Returns the first failure: at `before` it fails the operation; elsewhere it is
    /// logged and the operation's outcome stands.
    pub async fn run_at(
        &self,
        point: HookPoint,
        scope: &Scope,
        status_of: impl Fn(Option<&str>) -> Option<String>,
    ) -> Result<(), HookFailure> {
        let mut first = None;
        let calls: Vec<(usize, HookConfig, HookEnv)> = self
            .applicable(scope, |h| h.at == Some(point) && h.run.is_some())
            .map(|(i, h, env)| (i, h.clone(), env))
            .collect();
        for (_, hook, mut env) in calls {
            env.phase = point.as_str().into();
            if matches!(
                point,
                HookPoint::Success | HookPoint::Failure | HookPoint::Always
            ) {
                let status = status_of(env.component.as_deref());
                let good =
                    status.as_deref() == Some("complete") || status.as_deref() == Some("succeeded");
                match point {
                    HookPoint::Success if !good => continue,
                    HookPoint::Failure if good => continue,
                    _ => {}
                }
                env.status = status;
            }
            let result = match self.agent_of(&hook) {
                Some(node) => self
                    .on_node(&node, &hook, HookStep::Run, &env)
                    .await
                    .map_err(StepFailed::OnNode),
                None => hook
                    .run
                    .as_ref()
                    .expect("a run hook")
                    .run(&env, hook.timeout())
                    .await
                    .map_err(StepFailed::Here),
            };
            self.log(&hook, &env, &result);
            if let Err(why) = result {
                first.get_or_insert(HookFailure::Run {
                    hook: hook.label(),
                    point: point.as_str(),
                    why: why.to_string(),
                });
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Issues the pauses of `scope`, each recorded durably first. Stops at the first
    /// that fails (the caller fails the operation and calls [`OpHooks::resume_all`],
    /// which resumes that one too: a pause that timed out may have taken effect), except
    /// a pause scoped to one of the `optional` components: that component is left out
    /// (returned, with why) and the others go on.
    pub async fn pause_all(
        &mut self,
        scope: &Scope,
        optional: &HashSet<String>,
    ) -> Result<BTreeMap<String, LeftOut>, HookFailure> {
        let mut left_out = BTreeMap::new();
        let calls: Vec<(usize, HookConfig, HookEnv)> = self
            .applicable(scope, HookConfig::is_pause)
            .map(|(i, h, env)| (i, h.clone(), env))
            .collect();
        for (index, hook, env) in calls {
            let Err(failure) = self.pause_one(index, &hook, env).await else {
                continue;
            };
            match hook.component.as_ref().filter(|c| optional.contains(*c)) {
                Some(component) => {
                    let left = LeftOut {
                        why: failure.to_string(),
                        unreachable: failure.unreachable(),
                    };
                    left_out.insert(component.clone(), left);
                }
                None => return Err(failure),
            }
        }
        Ok(left_out)
    }

    /// Issues one pause; on failure, why and whether its system never answered.
    async fn pause_one(
        &mut self,
        index: usize,
        hook: &HookConfig,
        mut env: HookEnv,
    ) -> Result<(), HookFailure> {
        env.phase = "pause".into();
        if let Some(node) = self.agent_of(hook) {
            // Held from the attempt on: a pause that timed out may have taken effect.
            self.paused.push(Held::OnNode {
                node: node.clone(),
                hook: hook.clone(),
                env: env.clone(),
            });
            let result = self.on_node(&node, hook, HookStep::Pause, &env).await;
            if let Err(e) = &result {
                // Refused before anything was recorded or issued (no such hook there,
                // a bad request, the lease lost): nothing is paused to resume.
                use strata_cluster::node_api::ErrorCode;
                if matches!(
                    e.code,
                    ErrorCode::NotFound | ErrorCode::BadRequest | ErrorCode::LeaseLost
                ) {
                    self.paused.pop();
                }
            }
            let result = result.map_err(StepFailed::OnNode);
            self.log(hook, &env, &result);
            return result.map(|_| ()).map_err(|why| HookFailure::Pause {
                hook: hook.label(),
                why: why.to_string(),
                unreachable: false,
            });
        }
        let Some(ledger) = self.set.pauses.clone() else {
            return Err(HookFailure::NoStateDir { hook: hook.label() });
        };
        let record = hooks::new_record(index, hook, &env);
        if let Err(e) = ledger.save(&record) {
            return Err(HookFailure::NotRecorded {
                hook: hook.label(),
                dir: ledger.dir(),
                why: e.to_string(),
            });
        }
        self.paused.push(Held::Here(record.clone()));
        let result = ledger.issue_pause(&record, hook, &env).await;
        let unreachable = matches!(result, Err(hooks::HookError::Unreachable { .. }));
        if matches!(
            result,
            Err(hooks::HookError::Unreachable {
                never_sent: true,
                ..
            })
        ) {
            // No connection was made: nothing was paused, so there is nothing to resume.
            self.paused.pop();
            if let Err(e) = ledger.remove(&record) {
                eprintln!(
                    "strata: warning: cannot remove pause record {}: {e}",
                    record.id
                );
            }
        }
        let result = result.map_err(StepFailed::Here);
        self.log(hook, &env, &result);
        result.map(|_| ()).map_err(|why| HookFailure::Pause {
            hook: hook.label(),
            why: why.to_string(),
            unreachable,
        })
    }

    /// Resumes every pause this operation issued, last paused first; a resume that
    /// still fails after its retries is reported loudly (log, metrics, a `hook.failed`
    /// webhook) and its record stays for the next process to retry. Returns those
    /// failures.
    pub async fn resume_all(&mut self) -> Vec<String> {
        let mut failures = Vec::new();
        while let Some(held) = self.paused.pop() {
            let (hook, env, result) = match held {
                Held::Here(record) => {
                    let Some(ledger) = self.set.pauses.clone() else {
                        continue;
                    };
                    let hook = record.hook.clone();
                    let resumed = ledger.resume(record).await;
                    let env = HookEnv {
                        phase: "resume".into(),
                        ..resumed.record.env.clone()
                    };
                    let result = match resumed.error {
                        None => Ok(resumed.output),
                        Some(why) => Err(StepFailed::StillPaused {
                            attempts: resumed.record.attempts,
                            why,
                        }),
                    };
                    (hook, env, result)
                }
                Held::OnNode { node, hook, env } => {
                    let env = HookEnv {
                        phase: "resume".into(),
                        ..env
                    };
                    let result = self
                        .on_node(&node, &hook, HookStep::Resume, &env)
                        .await
                        .map_err(|error| StepFailed::ResumeOnNode {
                            node: node.name().to_string(),
                            error,
                        });
                    (hook.label(), env, result)
                }
            };
            let label = HookConfig {
                name: Some(hook.clone()),
                ..hook_stub()
            };
            self.log(&label, &env, &result);
            if let Err(why) = result {
                let line = format!("hook {hook}: {why}");
                eprintln!("strata: error: {line}");
                self.stats.lock().unwrap().resume_failures += 1;
                let action = crate::events::Activity {
                    who: &self.who,
                    kind: "hook",
                    target: &hook,
                    operation: Some(&self.base.id),
                };
                self.events.notify(&action, &self.storage, "failed", &line);
                failures.push(line);
            }
        }
        failures
    }
}

/// Why the hooks of an operation stopped it (before anything ran or was paused, a
/// `run` hook, a pause): the operation's error line says it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookFailure {
    /// Nodes that cannot run the operation's node hooks, each with why (found before
    /// anything runs).
    #[error("{}", .0.join("; "))]
    NotReady(Vec<String>),
    /// A `run` hook failed.
    #[error("hook {hook} ({point}): {why}")]
    Run {
        /// The hook's label.
        hook: String,
        /// Where it ran (`before`, `success`, ...).
        point: &'static str,
        /// Why it failed.
        why: String,
    },
    /// A pause was issued and failed (it may still have taken effect: it is resumed).
    #[error("hook {hook} (pause): {why}")]
    Pause {
        /// The hook's label.
        hook: String,
        /// Why it failed.
        why: String,
        /// Its system never answered: an optional component is `absent`, not failed.
        unreachable: bool,
    },
    /// No state directory to record a pause in: it was not issued.
    #[error("hook {hook}: no state directory to record the pause in, so it is not issued")]
    NoStateDir {
        /// The hook's label.
        hook: String,
    },
    /// The pause could not be recorded: it was not issued.
    #[error("hook {hook}: cannot record the pause in {} ({why}), so it is not issued", dir.display())]
    NotRecorded {
        /// The hook's label.
        hook: String,
        /// The directory of pause records.
        dir: PathBuf,
        /// Why the record could not be written.
        why: String,
    },
}

impl HookFailure {
    /// Whether the hook's system never answered.
    pub fn unreachable(&self) -> bool {
        matches!(
            self,
            HookFailure::Pause {
                unreachable: true,
                ..
            }
        )
    }
}

/// Why one step of a hook failed, for the operation's log.
#[derive(Debug, thiserror::Error)]
enum StepFailed {
    /// The node's agent refused or failed the step.
    #[error("{}", .0.message)]
    OnNode(strata_cluster::node_api::ApiError),
    /// The hook, run in this process, failed.
    #[error(transparent)]
    Here(hooks::HookError),
    /// A resume here failed every attempt.
    #[error("resume failed after {attempts} attempts, still paused: {why}")]
    StillPaused {
        /// How many attempts were made.
        attempts: u32,
        /// The last attempt's failure.
        why: String,
    },
    /// A resume on a node failed.
    #[error("resume on node {node} failed: {} (its agent resumes it itself when this operation's lease ends)", .error.message)]
    ResumeOnNode {
        /// The node.
        node: String,
        /// What its agent said.
        error: strata_cluster::node_api::ApiError,
    },
}

/// An empty hook entry, to name a resumed hook in the log.
fn hook_stub() -> HookConfig {
    HookConfig {
        name: None,
        operation: HookOperation::Backup,
        at: None,
        run: None,
        pause: None,
        resume: None,
        component: None,
        node: None,
        timeout: "60s".into(),
        resume_attempts: 1,
        late_pause: "30s".into(),
    }
}
