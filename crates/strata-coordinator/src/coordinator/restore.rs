//! A restore onto the nodes: which backup node goes where, the checks before anything is
//! written, then each component in its order.

use super::*;
use crate::mapping::PairError;
use std::collections::HashSet;

impl Coordinator {
    /// The components of `summary` a restore takes (all, or those `plan` names), refused
    /// when a needed one is not complete and the user did not name the components.
    /// Empty for a backup made before components (every node).
    fn restore_selection<'a>(
        &self,
        summary: &'a BackupSummary,
        plan: &RestorePlan,
    ) -> CoordinatorResult<Vec<&'a ComponentSummary>> {
        if plan.table.is_some() {
            let tables: Vec<&ComponentSummary> = summary
                .components
                .iter()
                .filter(|c| {
                    crate::plugin::by_name(&c.plugin).is_some_and(|p| p.restores_one_table())
                })
                .filter(|c| plan.components.is_empty() || plan.components.contains(&c.name))
                .collect();
            if tables.is_empty() {
                return Err(CoordinatorError::Invalid(format!(
                    "backup {} has no ClickHouse component: --table without --database brings back a ClickHouse table (a PostgreSQL table needs --database)",
                    summary.name
                )));
            }
            return Ok(tables);
        }
        if summary.components.is_empty() {
            if !plan.components.is_empty() {
                return Err(CoordinatorError::Invalid(format!(
                    "backup {} was made before components: restore it without --component",
                    summary.name
                )));
            }
            return Ok(Vec::new());
        }
        if plan.components.is_empty() {
            let incomplete = summary.incomplete_components();
            if !incomplete.is_empty() {
                let why: Vec<String> = incomplete
                    .iter()
                    .map(|c| match &c.error {
                        Some(e) => format!("{} is {} ({e})", c.name, c.status().as_str()),
                        None => format!("{} is {}", c.name, c.status().as_str()),
                    })
                    .collect();
                // What holds data to restore: complete components, and partial ones (an
                // unreadable file), which the user may still want.
                let good: Vec<&str> = summary
                    .components
                    .iter()
                    .filter(|c| {
                        matches!(
                            c.status(),
                            ComponentStatus::Complete | ComponentStatus::Partial
                        )
                    })
                    .map(|c| c.name.as_str())
                    .collect();
                return Err(CoordinatorError::Invalid(format!(
                    "backup {} is not complete: {}; name the components to restore (--component {})",
                    summary.name,
                    why.join(", "),
                    if good.is_empty() { "NAME".to_string() } else { good.join(" --component ") }
                )));
            }
            return Ok(summary
                .components
                .iter()
                .filter(|c| c.status() != ComponentStatus::Absent)
                .collect());
        }
        // Each named once: a name given twice would restore its nodes twice at once.
        let mut names: Vec<&String> = Vec::new();
        for name in &plan.components {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
            .into_iter()
            .map(|name| {
                summary
                    .components
                    .iter()
                    .find(|c| &c.name == name)
                    .ok_or_else(|| {
                        CoordinatorError::Invalid(format!(
                            "--component {name}: backup {} has the components {}",
                            summary.name,
                            summary
                                .components
                                .iter()
                                .map(|c| c.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    })
            })
            .collect()
    }

    /// The configured component `name`, if this coordinator has one.
    fn configured_component(&self, name: &str) -> Option<Component> {
        self.components().iter().find(|c| c.name == name).cloned()
    }

    /// Works out which backup node goes to which configured node, or says why it cannot.
    pub fn restore_pairs(
        &self,
        summary: &BackupSummary,
        plan: &RestorePlan,
    ) -> CoordinatorResult<Vec<(String, usize)>> {
        let selected = self.restore_selection(summary, plan)?;
        let (pairs, problems) = self.pair_components(summary, plan, &selected);
        if !problems.is_empty() {
            return Err(CoordinatorError::NoNode(problems.join("; ")));
        }
        if pairs.is_empty()
            && !selected
                .iter()
                .any(|c| c.nodes.is_empty() && c.status() == ComponentStatus::Complete)
        {
            return Err(CoordinatorError::NoNode(match &plan.node {
                Some(only) => format!(
                    "backup {} has no restorable node {only:?} (see `strata show {}`)",
                    summary.name, summary.name
                ),
                None => format!("backup {} has no restorable node", summary.name),
            }));
        }
        Ok(pairs)
    }

    /// The pairs of every selected component (each onto the nodes of the configured
    /// component of its name, or onto every node), and the problems found.
    fn pair_components(
        &self,
        summary: &BackupSummary,
        plan: &RestorePlan,
        selected: &[&ComponentSummary],
    ) -> (Vec<(String, usize)>, Vec<String>) {
        let mut problems = Vec::new();
        for old in plan.map.keys() {
            if !summary.nodes.iter().any(|n| &n.name == old) {
                problems.push(format!(
                    "--map {old}=...: backup {} has no node {old:?}",
                    summary.name
                ));
            }
        }
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        let groups: Vec<(Vec<&NodeSummary>, Vec<usize>)> = if summary.components.is_empty() {
            vec![(
                summary.nodes.iter().filter(|n| n.has_manifest).collect(),
                all,
            )]
        } else {
            selected
                .iter()
                .filter(|c| !c.nodes.is_empty())
                .map(|c| {
                    let sources = summary
                        .nodes
                        .iter()
                        .filter(|n| n.has_manifest && n.component.as_deref() == Some(&c.name))
                        .collect();
                    let targets = self
                        .configured_component(&c.name)
                        .filter(|t| !t.nodes.is_empty())
                        .map(|t| t.nodes)
                        .unwrap_or_else(|| all.clone());
                    (sources, targets)
                })
                .collect()
        };
        let mut pairs: Vec<(String, usize)> = Vec::new();
        for (sources, targets) in groups {
            match self.pair_group(&sources, &targets, plan) {
                Ok(mine) => pairs.extend(mine),
                Err(why) => problems.push(why.to_string()),
            }
        }
        // One source per target: two restores into one node's roots at once would mix.
        for (k, (source, target)) in pairs.iter().enumerate() {
            if let Some((other, _)) = pairs[..k].iter().find(|(_, t)| t == target) {
                problems.push(format!(
                    "backup nodes {other} and {source} would both be restored onto node {}: pair them with --map (components not configured here go onto every node)",
                    self.nodes[*target].name()
                ));
            }
        }
        (pairs, problems)
    }

    /// Pairs the restorable nodes of one component with nodes among `targets`.
    fn pair_group(
        &self,
        restorable: &[&NodeSummary],
        targets: &[usize],
        plan: &RestorePlan,
    ) -> Result<Vec<(String, usize)>, PairError> {
        let one_node = |n: &&&NodeSummary| self.plugin_of(n).restore_to_one_node();
        if let Some(source) = restorable.iter().find(one_node) {
            // A replicated store (etcd): its copy is written through one target, the one
            // asked for (--node, or --map of the backup node) or the first.
            let wanted = plan
                .map
                .get(&source.name)
                .or(plan.node.as_ref())
                .map(String::as_str);
            let target = match wanted {
                Some(name) => targets
                    .iter()
                    .copied()
                    .find(|&i| self.nodes[i].name() == name),
                None => targets.first().copied(),
            };
            return match (target, wanted) {
                (Some(i), _) => Ok(vec![(source.name.clone(), i)]),
                (None, Some(name))
                    if plan.node.is_some() && !plan.map.contains_key(&source.name) =>
                {
                    // --node names a node of another component: nothing of this one.
                    let _ = name;
                    Ok(Vec::new())
                }
                (None, Some(name)) => Err(PairError::NotInComponent {
                    from: source.name.clone(),
                    target: name.to_string(),
                }),
                (None, None) => Err(PairError::NoNodeFor {
                    from: source.name.clone(),
                }),
            };
        }
        let every_node = |n: &&&NodeSummary| self.plugin_of(n).restore_to_every_node();
        if let Some(source) = restorable.iter().find(every_node) {
            // One copy of a whole cluster (a database), laid down on every node (or the
            // one asked for): the node's own settings make it the primary or a standby.
            let pairs: Vec<(String, usize)> = targets
                .iter()
                .filter(|&&i| {
                    plan.node
                        .as_ref()
                        .is_none_or(|only| only == self.nodes[i].name())
                })
                .map(|&i| (source.name.clone(), i))
                .collect();
            if pairs.is_empty()
                && plan.node.is_some()
                && !self
                    .nodes
                    .iter()
                    .any(|n| Some(n.name()) == plan.node.as_deref())
            {
                return Err(PairError::UnknownNode {
                    node: plan.node.clone().unwrap_or_default(),
                });
            }
            let names: Vec<&str> = pairs.iter().map(|(_, i)| self.nodes[*i].name()).collect();
            if !plan.dry_run {
                self.plugin_of(source).check_restore_targets(&names)?;
            }
            return Ok(pairs);
        }
        let sources: Vec<SourceNode> = restorable
            .iter()
            .filter(|n| plan.node.as_ref().is_none_or(|only| only == &n.name))
            .map(|n| SourceNode {
                name: &n.name,
                zone: n.zone.as_deref(),
            })
            .collect();
        let target_nodes: Vec<TargetNode> = targets
            .iter()
            .map(|&i| TargetNode {
                name: self.nodes[i].name(),
                zone: self.zones[i].as_deref(),
            })
            .collect();
        let mut sources = sources;
        loop {
            match pair_nodes(&sources, &target_nodes, &plan.map) {
                Ok(pairs) => return Ok(pairs.into_iter().map(|(s, k)| (s, targets[k])).collect()),
                // A replica whose shard another restored node brings back (ClickHouse
                // onto fewer replicas) may stay out; anything else is refused.
                Err(PairError::NoTarget { from, zone }) => {
                    let node = restorable.iter().find(|n| n.name == from);
                    let others: Vec<&NodeSummary> = restorable
                        .iter()
                        .filter(|n| n.name != from && sources.iter().any(|s| s.name == n.name))
                        .copied()
                        .collect();
                    // Only when the user maps nodes: an unmapped name is a typo otherwise.
                    let left_out = node
                        .filter(|_| !plan.map.is_empty())
                        .filter(|n| self.plugin_of(n).may_leave_out(n, &others));
                    match left_out {
                        Some(_) => {
                            eprintln!(
                                "strata: backup node {from} is left out: every replicated table it holds comes back through another node; its own tables do not"
                            );
                            sources.retain(|s| s.name != from)
                        }
                        None => return Err(PairError::NoTarget { from, zone }),
                    }
                }
                Err(other) => return Err(other),
            }
        }
    }

    /// What stops a restore before it writes anything, every problem at once: the
    /// components' plugins (known here, a data version this strata reads), their nodes
    /// (paired with targets), and the targets (they answer). Request fields this backup
    /// cannot take (`dry_run`, `rename`) are an `Invalid` error instead, naming them.
    async fn restore_problems(
        &self,
        summary: &BackupSummary,
        plan: &RestorePlan,
        selected: &[&ComponentSummary],
    ) -> CoordinatorResult<Vec<String>> {
        let mut problems = Vec::new();
        for c in selected {
            if c.nodes.is_empty() && c.status() != ComponentStatus::Absent {
                match self.configured_component(&c.name) {
                    Some(t) if t.plugin.is_external() && t.plugin.name() == c.plugin => {}
                    _ => problems.push(format!(
                        "component {}: a {} component is restored through its system's API, and this configuration has no [[components]] {:?} of plugin {:?}",
                        c.name, c.plugin, c.name, c.plugin
                    )),
                }
                continue;
            }
            let plugin = self
                .components()
                .iter()
                .find(|t| t.plugin.name() == c.plugin)
                .map(|t| t.plugin.clone())
                .or_else(|| crate::plugin::by_name(&c.plugin));
            match plugin {
                None => problems.push(format!(
                    "component {}: plugin {:?} is not known to this strata {}: upgrade strata",
                    c.name,
                    c.plugin,
                    env!("CARGO_PKG_VERSION")
                )),
                Some(plugin) if c.plugin_version > plugin.data_version() => problems.push(format!(
                    "component {}: written by {} data version {}, this strata reads up to {}: upgrade strata",
                    c.name, c.plugin, c.plugin_version, plugin.data_version()
                )),
                Some(_) => {}
            }
        }
        let (pairs, pairing) = self.pair_components(summary, plan, selected);
        problems.extend(pairing);
        // Fields of the request this backup cannot take: bad input (400), not a missing
        // node (404).
        let mut usage = Vec::new();
        if plan.dry_run {
            let externals = selected
                .iter()
                .filter(|c| c.nodes.is_empty() && c.status() == ComponentStatus::Complete);
            for c in externals {
                usage.push(format!(
                    "dry_run (--dry-run) cannot preview the {} component {}: leave it out with --component",
                    c.plugin, c.name
                ));
            }
            let sources: std::collections::BTreeSet<&String> =
                pairs.iter().map(|(s, _)| s).collect();
            for source in sources {
                let node = summary.nodes.iter().find(|n| &n.name == source);
                if let Some(node) = node.filter(|n| !self.plugin_of(n).restore_rules()) {
                    usage.push(format!(
                        "dry_run (--dry-run) previews components that write into a live system (etcd); node {} is {}: name the components with --component",
                        node.name,
                        node.component.as_deref().unwrap_or("plain files")
                    ));
                }
            }
        }
        if !plan.rename.is_empty() {
            for rule in &plan.rename {
                if let Err(e) = strata_etcd::Restore::parse_rule(rule) {
                    usage.push(format!("rename (--rename) {rule:?}: {e}"));
                }
            }
            let takes_rules = pairs.iter().any(|(source, _)| {
                summary
                    .nodes
                    .iter()
                    .any(|n| &n.name == source && self.plugin_of(n).restore_rules())
            });
            if !takes_rules {
                usage.push(
                    "rename (--rename) rewrites names in components that hold them (etcd); this restore has none"
                        .to_string(),
                );
            }
        }
        let mut targets: Vec<usize> = pairs.iter().map(|(_, i)| *i).collect();
        targets.sort();
        targets.dedup();
        let answers = on_nodes(&targets, |i| {
            let node = self.nodes[i].clone();
            async move { deadline(QUICK_CALL, node.metadata()).await }
        })
        .await;
        let rules = plan.dry_run || !plan.rename.is_empty();
        for (i, answer) in answers {
            match answer {
                Err(e) => problems.push(format!(
                    "node {} cannot be reached: {}",
                    self.nodes[i].name(),
                    e.message
                )),
                Ok(meta) if rules && !meta.features.iter().any(|f| f == RESTORE_RULES) => {
                    problems.push(format!(
                        "node {} runs strata {}, which does not apply --rename or --dry-run: upgrade it",
                        self.nodes[i].name(),
                        meta.version
                    ))
                }
                Ok(_) => {}
            }
        }
        if !usage.is_empty() {
            return Err(CoordinatorError::Invalid(format!(
                "restore of {} refused before anything was written: {}",
                summary.name,
                usage.join("; ")
            )));
        }
        Ok(problems)
    }

    /// Takes the cluster lock and prepares a restore of a backup into the nodes' roots.
    pub async fn restore(
        self: &Arc<Self>,
        summary: &BackupSummary,
        plan: RestorePlan,
        who: &str,
    ) -> CoordinatorResult<Pending<RestoreOutcome>> {
        let storage = self.storage.clone();
        self.restore_from(summary, &storage, plan, who).await
    }

    /// [`Coordinator::restore`] of a backup held in the configured storage `storage`
    /// (the nodes read it from there; the cluster lock stays in this coordinator's).
    pub async fn restore_from(
        self: &Arc<Self>,
        summary: &BackupSummary,
        storage: &str,
        plan: RestorePlan,
        who: &str,
    ) -> CoordinatorResult<Pending<RestoreOutcome>> {
        let storage = storage.to_string();
        crate::input::check_restore_plan(&plan)?;
        // A recovery target before the backup's end: refused before anything is written.
        let target = plan.recovery.as_ref().map(|r| &r.target);
        if let Some(target) = target.filter(|_| crate::resolve::has_postgres(summary)) {
            if let Some(why) = crate::resolve::target_before_backup(summary, target) {
                return Err(CoordinatorError::Invalid(why));
            }
        }
        let selected = self.restore_selection(summary, &plan)?;
        if let Some(table) = &plan.table {
            for c in &selected {
                let Some(plugin) = crate::plugin::by_name(&c.plugin) else {
                    continue;
                };
                plugin
                    .check_table(
                        self.repo(),
                        &summary.name,
                        &c.nodes,
                        table,
                        &plan.partitions,
                    )
                    .await
                    .map_err(|e| CoordinatorError::Invalid(e.to_string()))?;
            }
        }
        let problems = self.restore_problems(summary, &plan, &selected).await?;
        if !problems.is_empty() {
            return Err(CoordinatorError::NoNode(format!(
                "restore of {} refused before anything was written: {}",
                summary.name,
                problems.join("; ")
            )));
        }
        let pairs = self.restore_pairs(summary, &plan)?;
        let externals: Vec<(Component, ComponentSummary)> = selected
            .iter()
            .filter(|c| c.nodes.is_empty() && c.status() == ComponentStatus::Complete)
            .filter_map(|c| Some((self.configured_component(&c.name)?, (*c).clone())))
            .filter(|(t, _)| t.plugin.is_external())
            .collect();
        let members: Vec<usize> = pairs.iter().map(|(_, i)| *i).collect();
        let id = format!("restore-{}", new_backup_name());
        let (run, lock) = self
            .begin(
                id,
                "restore",
                &summary.name,
                Parties {
                    members,
                    optional: HashSet::new(),
                    continues: None,
                },
                who,
            )
            .await?;
        let op = run.op.clone();
        let backup = summary.name.clone();
        let recovery = summary
            .nodes
            .iter()
            .find_map(|n| self.plugin_of(n).recovery(&plan));
        // The order between components: the order each recorded, or its plugin's rank.
        let ranks: HashMap<String, u32> = summary
            .nodes
            .iter()
            .map(|n| {
                // A node its component's plugin did not take (a plain files node beside
                // a plugin's) restores at its own plugin's rank.
                let plugin = self.plugin_of(n);
                let rank = summary
                    .component_of(n)
                    .filter(|c| c.plugin == plugin.name())
                    .map(|c| c.order)
                    .unwrap_or_else(|| plugin.restore_rank());
                (n.name.clone(), rank)
            })
            .collect();
        let scope = Scope {
            components: selected
                .iter()
                .map(|c| {
                    let nodes = pairs
                        .iter()
                        .filter(|(source, _)| c.nodes.contains(source))
                        .map(|(_, i)| self.nodes[*i].name().to_string())
                        .collect();
                    (c.name.clone(), nodes)
                })
                .collect(),
        };
        let task = async move {
            let steps = RestoreSteps {
                storage,
                include: plan.include,
                table: plan.table,
                table_as: plan.table_as,
                drop_stale_replicas: plan.drop_stale_replicas,
                partitions: plan.partitions,
                recovery,
                ranks,
                externals,
                scope,
                rename: plan.rename,
                dry_run: plan.dry_run,
            };
            let dry_run = steps.dry_run;
            let outcome = restore(&run, lock, backup.clone(), pairs, steps).await;
            let detail_of = |o: &RestoreOutcome| {
                // The audit log and webhooks tell a dry run from a restore.
                let said = if dry_run {
                    "dry run, nothing written: "
                } else {
                    ""
                };
                said.to_string()
                    + &o.nodes
                        .iter()
                        .map(|n| match &n.error {
                            Some(e) => format!("{} -> {}: {e}", n.source, n.node),
                            None => format!("{} -> {}", n.source, n.node),
                        })
                        .chain(o.components.iter().map(|c| match &c.error {
                            Some(e) => format!("{}: {e}", c.component),
                            None => c.component.clone(),
                        }))
                        .collect::<Vec<_>>()
                        .join("; ")
            };
            finish_operation(
                &run,
                &backup,
                &outcome,
                RestoreOutcome::state,
                detail_of,
                true,
            )
            .await;
            outcome
        };
        Ok(Pending {
            op,
            task: Box::pin(task),
        })
    }

    /// [`Coordinator::restore`], running in the background.
    pub async fn start_restore(
        self: &Arc<Self>,
        summary: &BackupSummary,
        plan: RestorePlan,
        who: &str,
    ) -> CoordinatorResult<Arc<Operation>> {
        Ok(self.restore(summary, plan, who).await?.spawn())
    }

    /// [`Coordinator::restore_from`], running in the background.
    pub async fn start_restore_from(
        self: &Arc<Self>,
        summary: &BackupSummary,
        storage: &str,
        plan: RestorePlan,
        who: &str,
    ) -> CoordinatorResult<Arc<Operation>> {
        Ok(self
            .restore_from(summary, storage, plan, who)
            .await?
            .spawn())
    }
}

/// What every node of a restore is asked to do, and in which order.
struct RestoreSteps {
    /// The storage the nodes read the backup from.
    storage: String,
    /// Only entries at or below this path.
    include: Option<String>,
    /// Only this table, under this name (ClickHouse).
    table: Option<String>,
    table_as: Option<String>,
    /// Remove stale replicas in ZooKeeper instead of refusing (ClickHouse).
    drop_stale_replicas: bool,
    /// With `table`: only these partitions (ClickHouse).
    partitions: Vec<String>,
    /// The recovery the nodes run once their files are back (PostgreSQL).
    recovery: Option<RecoveryPlan>,
    /// The restore order of each source node's component: lower first.
    ranks: HashMap<String, u32>,
    /// External components to restore through their system's API, with what their
    /// backup recorded.
    externals: Vec<(Component, ComponentSummary)>,
    /// Where the restore's hooks run.
    scope: Scope,
    rename: Vec<String>,
    dry_run: bool,
}

/// The components some of whose nodes the restore's scope restores.
fn taking_part(run: &Arc<Run>, scope: &Scope) -> Vec<Component> {
    run.coordinator
        .components()
        .iter()
        .filter(|component| {
            scope
                .components
                .iter()
                .any(|(name, nodes)| name == &component.name && !nodes.is_empty())
        })
        .cloned()
        .collect()
}

/// Waits until the system of every component taking part is ready for its nodes to be
/// restored (after the pauses: every Patroni member paused).
async fn ready_to_restore(run: &Arc<Run>, scope: &Scope) -> Result<(), NotReady> {
    for component in taking_part(run, scope) {
        match component.plugin.ready_to_restore().await {
            Ok(Some(line)) => eprintln!("strata: component {}: {line}", component.name),
            Ok(None) => {}
            Err(error) => {
                return Err(NotReady {
                    component: component.name.clone(),
                    error,
                })
            }
        }
    }
    Ok(())
}

/// Once the restore's pauses are resumed: waits until the system of every component
/// whose nodes were restored serves what was restored (a Patroni cluster led on the
/// restored timeline, every member following). What each said, as component results.
async fn settle(run: &Arc<Run>, scope: &Scope) -> Vec<ComponentRestore> {
    let mut settled = Vec::new();
    for component in taking_part(run, scope) {
        let (detail, error) = match component.plugin.settle_restore().await {
            Ok(None) => continue,
            Ok(Some(line)) => (Some(line), None),
            Err(error) => (None, Some(error.to_string())),
        };
        settled.push(ComponentRestore {
            component: component.name.clone(),
            detail,
            checklist_steps: None,
            error,
        });
    }
    settled
}

/// A component whose system is not ready for its nodes to be restored.
#[derive(Debug, thiserror::Error)]
#[error("component {component}: {error}")]
struct NotReady {
    /// The component.
    component: String,
    /// What its plugin said.
    error: crate::plugin::PluginError,
}

/// The restore proper: the pairs and external components of one order at once, orders
/// in turn; a failure stops the later ones. Hooks run around it, pauses resumed on every
/// path.
async fn restore(
    run: &Arc<Run>,
    lock: RepoLock,
    backup: String,
    pairs: Vec<(String, usize)>,
    steps: RestoreSteps,
) -> CoordinatorResult<RestoreOutcome> {
    let clock = Instant::now();
    let tasks = run.keep_alive(lock);
    let sources: HashMap<usize, String> = pairs.iter().map(|(s, i)| (*i, s.clone())).collect();
    let mut peers: Vec<String> = pairs.iter().map(|(s, _)| s.clone()).collect();
    peers.sort();
    peers.dedup();
    let waves = waves(run, &sources, &steps);
    let mut reports: HashMap<usize, RestoreReply> = HashMap::new();
    let mut components = Vec::new();
    let mut hooks = run.hooks(HookOperation::Restore, &backup);
    let mut hook_errors = Vec::new();
    // Why nothing more may be restored: a hook before, or a step of an earlier order
    // that failed (later orders would restore onto a system whose base is missing).
    let mut stop = before_restoring(run, &mut hooks, &steps).await;
    for (live, externals) in waves.into_values() {
        if let Some(why) = &stop {
            let why = format!("not restored: {why}");
            for i in live {
                run.fail(i, &ApiError::new(ErrorCode::Failed, why.clone()));
            }
            for (component, _) in externals {
                components.push(ComponentRestore {
                    component: component.name.clone(),
                    detail: None,
                    checklist_steps: None,
                    error: Some(why.clone()),
                });
            }
            continue;
        }
        run.phase(&live, "restoring");
        let external_work = futures::future::join_all(
            externals
                .into_iter()
                .map(|(component, recorded)| restore_external(run, &backup, component, recorded)),
        );
        let node_work = on_nodes(&live, |i| {
            let node = run.node(i);
            let request = node_request(run, &backup, &sources[&i], &peers, &steps);
            run.guarded(i, false, async move { node.restore(request).await })
        });
        let (results, external_results) = tokio::join!(node_work, external_work);
        for (i, result) in results {
            match result {
                Ok(reply) => {
                    let name = run.coordinator.nodes[i].name().to_string();
                    run.op.update_node(&name, |n| n.phase = "done".into());
                    reports.insert(i, reply);
                }
                Err(err) => {
                    run.fail(i, &err);
                    stop.get_or_insert(format!(
                        "node {} of an earlier restore step failed",
                        run.coordinator.nodes[i].name()
                    ));
                }
            }
        }
        for restored in external_results {
            if restored.error.is_some() {
                stop.get_or_insert(format!(
                    "component {} of an earlier restore step failed",
                    restored.component
                ));
            }
            components.push(restored);
        }
    }
    hook_errors.extend(hooks.resume_all().await);
    if !steps.dry_run
        && !run.failures.any()
        && stop.is_none()
        && components.iter().all(|c| c.error.is_none())
    {
        components.extend(settle(run, &steps.scope).await);
    }
    let failed =
        run.failures.any() || components.iter().any(|c| c.error.is_some()) || stop.is_some();
    if !failed && !steps.dry_run {
        if let Err(why) = hooks
            .run_at(HookPoint::AfterSnapshot, &steps.scope, |_| None)
            .await
        {
            hook_errors.push(why.to_string());
        }
    }
    let lock = tasks.stop().await;
    run.release_all().await;
    lock.release().await;
    let outcome = RestoreOutcome {
        backup,
        nodes: pairs
            .into_iter()
            .map(|(source, i)| NodeRestore {
                source,
                node: run.coordinator.nodes[i].name().to_string(),
                report: reports.remove(&i),
                error: run.failures.get(i),
            })
            .collect(),
        components,
        hook_errors: Vec::new(),
        duration_ms: clock.elapsed().as_millis() as u64,
    };
    let status = match outcome.state() {
        OpState::Succeeded => "succeeded",
        OpState::Partial => "partial",
        _ => "failed",
    };
    let end_points = match steps.dry_run {
        true => &[][..],
        false => &[HookPoint::Success, HookPoint::Failure, HookPoint::Always][..],
    };
    for &point in end_points {
        if let Err(why) = hooks
            .run_at(point, &steps.scope, |_| Some(status.to_string()))
            .await
        {
            hook_errors.push(why.to_string());
        }
    }
    Ok(RestoreOutcome {
        hook_errors,
        ..outcome
    })
}

/// The nodes (live ones, by index) and external components of each restore order, lowest
/// first.
type Wave<'a> = (Vec<usize>, Vec<&'a (Component, ComponentSummary)>);

fn waves<'a>(
    run: &Run,
    sources: &HashMap<usize, String>,
    steps: &'a RestoreSteps,
) -> BTreeMap<u32, Wave<'a>> {
    let mut waves: BTreeMap<u32, Wave> = BTreeMap::new();
    for i in run.live() {
        let rank = steps.ranks.get(&sources[&i]).copied().unwrap_or(100);
        waves.entry(rank).or_default().0.push(i);
    }
    for external in &steps.externals {
        waves.entry(external.1.order).or_default().1.push(external);
    }
    waves
}

/// Why nothing may be restored, found before the first step: a hook's own check, a
/// `before` hook, a pause, or a node that is not ready. A dry run changes nothing: no
/// hook, no pause.
async fn before_restoring(
    run: &Arc<Run>,
    hooks: &mut OpHooks,
    steps: &RestoreSteps,
) -> Option<String> {
    if steps.dry_run {
        return None;
    }
    let hooks_first = async {
        hooks.check(&steps.scope).await?;
        hooks
            .run_at(HookPoint::Before, &steps.scope, |_| None)
            .await?;
        hooks.pause_all(&steps.scope, &HashSet::new()).await
    };
    if let Err(why) = hooks_first.await {
        return Some(why.to_string());
    }
    ready_to_restore(run, &steps.scope)
        .await
        .err()
        .map(|why| why.to_string())
}

/// What node `source`'s restore asks of the node it is restored onto.
fn node_request(
    run: &Run,
    backup: &str,
    source: &str,
    peers: &[String],
    steps: &RestoreSteps,
) -> RestoreRequest {
    RestoreRequest {
        operation: run.id.clone(),
        storage: steps.storage.clone(),
        backup: backup.to_string(),
        source: source.to_string(),
        include: steps.include.clone(),
        recovery: steps.recovery.clone(),
        rename: steps.rename.clone(),
        dry_run: steps.dry_run,
        peers: peers.to_vec(),
        table: steps.table.clone(),
        table_as: steps.table_as.clone(),
        drop_stale_replicas: steps.drop_stale_replicas,
        partitions: steps.partitions.clone(),
    }
}

/// An external component's restore through its system's API, unless the operation is
/// stopped: the line for the report (or why it failed) and, for a checklist the operator
/// follows, its number of steps.
async fn restore_external(
    run: &Run,
    backup: &str,
    component: &Component,
    recorded: &ComponentSummary,
) -> ComponentRestore {
    let env = HookEnv {
        operation: "restore".into(),
        id: run.id.clone(),
        backup: backup.to_string(),
        component: Some(component.name.clone()),
        phase: "restore".into(),
        ..HookEnv::default()
    };
    let result = run
        .unless_stopped(async {
            component
                .plugin
                .external_restore(&recorded.external, &env)
                .await
        })
        .await
        .map_err(|stopped| stopped.to_string())
        .and_then(|restored| restored.map_err(|e| e.to_string()));
    let (detail, error) = match result {
        Ok(detail) => (Some(detail), None),
        Err(why) => (None, Some(why)),
    };
    ComponentRestore {
        component: component.name.clone(),
        checklist_steps: detail
            .as_deref()
            .and_then(|detail| component.plugin.checklist_steps(detail)),
        detail,
        error,
    }
}
