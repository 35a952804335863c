//! Plugins: what a backup of a node is (plain files, a PostgreSQL server, ...).
//!
//! A plugin has two sides. The node side ([`strata_agent::service::NodePlugin`]) adds
//! steps to one node's backup and restore inside the agent. The cluster side, [`Plugin`]
//! here, is what the configuration and the coordinator ask of it: how a node is
//! configured and what its agent backs up, which nodes a backup takes, steps that run
//! once every node's data is stored, how backup nodes are placed on restore, and the
//! order in which plugins restore. The registry at the end of this module is the one
//! place that knows plugins by name: configuration refuses an unknown name with the
//! list of known ones, and a backup's nodes are matched to their plugin by the record
//! they carry (keys prefixed with the plugin's name). docs/architecture.md shows how a
//! third plugin is added.
//!
//! ```
//! // The registry knows plugins by name; a restore brings etcd back before the
//! // databases that read their topology from it.
//! let etcd = strata_plugins::by_name("etcd").unwrap();
//! let postgres = strata_plugins::by_name("postgres").unwrap();
//! assert_eq!(postgres.name(), "postgres");
//! assert!(etcd.restore_rank() < postgres.restore_rank());
//! assert!(!postgres.is_external());
//! assert!(strata_plugins::by_name("oracle").is_none());
//! ```
//!
//! Layout: this file holds the [`Plugin`] trait, the node source and the registry; one
//! module per plugin ([`postgres`], [`patroni`], [`etcd`], [`clickhouse`], [`camunda`]),
//! [`external`] for components restored through their own API, [`engine_api`] and
//! [`engine_parts`] for what engines' parts share.

use std::collections::BTreeMap;
use std::sync::Arc;
use strata_agent::backup::NodeSource;
use strata_agent::service::NodePlugin;
use strata_cluster::config::{ComponentConfig, Config, ConfigError, NodeConfig};
use strata_cluster::node::NodeApi;
use strata_cluster::node_api::ErrorCode;
use strata_postgres::recovery::RecoveryPlan;
use strata_repo::summary::NodeSummary;

pub mod camunda;
pub mod clickhouse;
pub mod engine_api;
pub mod engine_parts;
pub mod etcd;
pub mod external;
pub mod patroni;
pub mod postgres;

/// Checks `[[components]]` and `[[hooks]]` with the plugins they name: names,
/// references, every node in exactly one component, each plugin's own node settings.
pub fn check_components(config: &Config) -> Result<(), ConfigError> {
    let invalid = |m: String| Err(ConfigError::Invalid(m));
    if !config.components.is_empty() && config.plugin != "files" {
        return invalid(format!(
            "plugin = {:?} and [[components]] do not go together: give the plugin in its component",
            config.plugin
        ));
    }
    let mut names = std::collections::HashSet::new();
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    for (component, plugin) in crate::configured(config)? {
        let name = &component.name;
        if !strata_cluster::config::valid_name(name) || !names.insert(name.clone()) {
            return invalid(format!(
                "component name {name:?} must be unique and 1-64 letters, digits, '-', '_' or '.'"
            ));
        }
        if plugin.is_external() != component.nodes.is_empty() && !config.components.is_empty() {
            return invalid(match plugin.is_external() {
                true => format!(
                    "component {name:?}: a {} component has no nodes",
                    component.plugin
                ),
                false => format!("component {name:?} has no nodes"),
            });
        }
        let sections = [
            ("http", component.http.is_some()),
            ("command", component.command.is_some()),
            ("camunda", component.camunda.is_some()),
            ("etcd", component.etcd.is_some()),
        ];
        if let Some((section, _)) = sections
            .iter()
            .find(|(section, set)| *set && *section != component.plugin)
        {
            return invalid(format!(
                "component {name:?}: [components.{section}] belongs to a {section} component, not a {} one",
                component.plugin
            ));
        }
        let rules = component.rename.iter().chain(&component.move_prefix);
        if rules.clone().next().is_some() && !plugin.restore_rules() {
            return invalid(format!(
                "component {name:?}: rename and move_prefix rewrite stores that hold names (etcd), not {} components",
                component.plugin
            ));
        }
        for rule in rules {
            if let Err(e) = strata_etcd::Restore::parse_rule(rule) {
                return invalid(format!("component {name:?}: {e}"));
            }
        }
        for node in &component.nodes {
            let Some(config) = config.nodes.iter().find(|n| &n.name == node) else {
                return invalid(format!(
                    "component {name:?}: node {node:?} is not one of the configured [[nodes]]"
                ));
            };
            if let Some(other) = owner.insert(node.clone(), name.clone()) {
                return invalid(format!(
                    "node {node:?} is in two components, {other:?} and {name:?}"
                ));
            }
            if config.url.is_none() {
                plugin
                    .check_node(config)
                    .map_err(|e| ConfigError::Invalid(e.to_string()))?;
            }
        }
    }
    if let Some(lost) = config.nodes.iter().find(|n| !owner.contains_key(&n.name)) {
        return invalid(format!(
            "node {:?} is in no component: add it to one of the [[components]]",
            lost.name
        ));
    }
    let names: Vec<String> = config.components().into_iter().map(|c| c.name).collect();
    let nodes: Vec<String> = config.nodes.iter().map(|n| n.name.clone()).collect();
    let mut named: BTreeMap<(String, String), ()> = BTreeMap::new();
    for hook in &config.hooks {
        hook.validate(&names, &nodes)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if let (Some(node), Some(component)) = (&hook.node, &hook.component) {
            if owner.get(node).is_some_and(|c| c != component) {
                return invalid(format!(
                    "hook {:?}: node {node:?} is not in component {component:?}, so the hook would never run",
                    hook.label()
                ));
            }
        }
        // An agent finds a node's hooks by name: two alike would be one.
        if let Some(node) = &hook.node {
            if named.insert((node.clone(), hook.label()), ()).is_some() {
                return invalid(format!(
                    "two hooks of node {node:?} are named {:?}: give them distinct `name`s",
                    hook.label()
                ));
            }
        }
    }
    Ok(())
}

pub use postgres::Postgres;

/// Why a component's data does not belong with the rest of a backup once stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotTogether {
    /// What does not fit, for the backup's record and the log.
    pub why: String,
    /// How many more times the whole backup may run for this: what was read changed
    /// while the backup ran, so a new attempt may find it still (etcd's `on_change =
    /// "retry"`). 0: the failure stands.
    pub retries: u32,
}

impl NotTogether {
    /// A failure that another attempt would not mend.
    pub fn fails(why: impl Into<String>) -> NotTogether {
        NotTogether {
            why: why.into(),
            retries: 0,
        }
    }
}

/// What a plugin's check of a restored copy found (see [`Plugin::prove_restored`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Proof {
    /// What was checked and held, one line each.
    pub checked: Vec<String>,
    /// Why nothing was checked (a tool this host lacks).
    pub skipped: Option<String>,
    /// What did not hold.
    pub damaged: Vec<String>,
}

/// Why a plugin refused or failed a step: what callers act on is the kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// A node's or component's settings do not fit the plugin; found before anything runs.
    #[error("{0}")]
    Settings(String),
    /// The plugin will not do this as asked (a Patroni cluster restored onto several
    /// members); the line says what to do instead.
    #[error("{0}")]
    Refused(String),
    /// The backup's summary lacks what the plugin needs to act on it.
    #[error("the backup recorded no {0}")]
    NotRecorded(&'static str),
    /// The system the plugin drives failed or did not answer (a delete, a restore, a
    /// Patroni cluster that did not pause).
    #[error("{0}")]
    System(String),
    /// The configuration names a plugin this strata does not have.
    #[error("plugin {name:?} is not known: use {known}")]
    Unknown {
        /// The name as configured.
        name: String,
        /// The known names, quoted, as the line offers them.
        known: String,
    },
    /// A component lacks the settings section its plugin needs.
    #[error("a {plugin} component needs its [components.{section}] settings")]
    NoSection {
        /// The component's plugin.
        plugin: String,
        /// The section it needs (`http`, `command`, ...).
        section: &'static str,
    },
    /// Parts an external system holds could not be deleted: one line each (the part and
    /// why); what was deleted stays deleted.
    #[error("{}", .0.join("; "))]
    PartsLeft(Vec<String>),
    /// No node can serve as the one the plugin backs up from (no reachable primary).
    #[error("{0}")]
    NoMember(String),
}

impl PluginError {
    /// What kind of failure this is, for exit codes and HTTP statuses.
    pub fn code(&self) -> ErrorCode {
        match self {
            PluginError::Settings(_)
            | PluginError::Refused(_)
            | PluginError::NotRecorded(_)
            | PluginError::Unknown { .. }
            | PluginError::NoSection { .. } => ErrorCode::BadRequest,
            PluginError::NoMember(_) => ErrorCode::NotFound,
            PluginError::System(_) | PluginError::PartsLeft(_) => ErrorCode::Failed,
        }
    }
}

impl From<ExternalError> for PluginError {
    fn from(err: ExternalError) -> Self {
        PluginError::System(err.to_string())
    }
}

/// What an external component's snapshot came to.
pub type ExternalOutcome = Result<ExternalSnapshot, ExternalError>;

/// A snapshot an external system took.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExternalSnapshot {
    /// What the summary records (`snapshot_id`, `state`, `backup_id`, a preset's parts).
    pub recorded: BTreeMap<String, String>,
    /// A pause the component issued itself whose resume still failed: the backup is no
    /// clean success (see `BackupSummary::still_paused`).
    pub still_paused: Option<String>,
}

/// Why an external component has no snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExternalError {
    /// The system never answered (refused, unreachable, silent within
    /// `connect_timeout`): an optional component is `absent`, not failed.
    #[error("{0}")]
    Unreachable(String),
    /// The system answered, and the snapshot failed (or strata could not use it).
    #[error("{0}")]
    Failed(String),
}

/// The cluster side of a plugin. See the module documentation.
#[async_trait::async_trait]
pub trait Plugin: Send + Sync {
    /// The plugin's name in the configuration (`plugin = "..."`), and the prefix of the
    /// keys it records in node summaries (`postgres.start_lsn`).
    fn name(&self) -> &'static str;

    /// Restore order between plugins: nodes of a plugin with a lower rank are restored
    /// (all at once) before those of a higher rank start, and a failure stops the later
    /// ones (a topology store before the database that reads it). Default 100.
    fn restore_rank(&self) -> u32 {
        100
    }

    /// Checks a node whose agent runs in this process (a remote agent's own
    /// configuration is checked where it runs). Returns why it cannot work.
    fn check_node(&self, node: &NodeConfig) -> Result<(), PluginError>;

    /// What the agent of `node` backs up.
    fn node_source(&self, node: &NodeConfig) -> NodeSource;

    /// The node side of the plugin for the agent of `node`.
    fn node_plugin(&self, config: &Config, node: &NodeConfig) -> Arc<dyn NodePlugin>;

    /// Whether a node of a backup was taken by this plugin, from its summary's record.
    fn took(&self, node: &NodeSummary) -> bool {
        let prefix = format!("{}.", self.name());
        node.plugin.keys().any(|k| k.starts_with(&prefix))
    }

    /// The indexes of the nodes a backup takes; `None`: all of them.
    async fn backup_members(
        &self,
        _nodes: &[Arc<dyn NodeApi>],
    ) -> Result<Option<Vec<usize>>, PluginError> {
        Ok(None)
    }

    /// Runs once every node's data and manifest is stored, before the backup's summary
    /// is written: a check that the data still belongs together (a revision read at the
    /// start, read again now). An error fails the backup's nodes of this plugin with
    /// the reason, so the backup is recorded as failed; with `retries`, the whole
    /// backup runs again (see [`NotTogether`]).
    async fn after_stored(&self, _backup: &str, _nodes: &[NodeSummary]) -> Result<(), NotTogether> {
        Ok(())
    }

    /// Whether a backup node of this plugin is one copy of a whole cluster, laid down on
    /// every target node (or the one asked for), rather than paired with one node.
    fn restore_to_every_node(&self) -> bool {
        false
    }

    /// The recovery the nodes run after their files are back (PostgreSQL), from the
    /// user's restore plan; `None`: a plain files restore.
    fn recovery(&self, _plan: &strata_cluster::restore_plan::RestorePlan) -> Option<RecoveryPlan> {
        None
    }

    /// Whether a backup node of this plugin is written back through one target node
    /// (a replicated store: etcd), paired with the first target of its component.
    fn restore_to_one_node(&self) -> bool {
        false
    }

    /// A restore drill's check of node `node`'s copy, restored at `copy`, beyond its
    /// files (ClickHouse: a scratch server attaches and reads every table), working under
    /// `work` (removed afterwards). `None`: the plugin has no such check.
    async fn prove_restored(
        &self,
        _node: &NodeSummary,
        _copy: &std::path::Path,
        _work: &std::path::Path,
    ) -> Option<Proof> {
        None
    }

    /// Whether a restore in place can bring back one table of this plugin's backups
    /// beside the live ones (`strata restore --table DB.T` without `--database`:
    /// ClickHouse); only such components take part in that restore.
    fn restores_one_table(&self) -> bool {
        false
    }

    /// Before a restore of one table (`--table`): whether the backup nodes `nodes` of
    /// this plugin's component hold it (and parts of `partitions`, when given). An error names the close names the backup holds
    /// (exit 2), before anything is written on any node.
    async fn check_table(
        &self,
        _repo: &strata_repo::Repository,
        _backup: &str,
        _nodes: &[String],
        _table: &str,
        _partitions: &[String],
    ) -> Result<(), PluginError> {
        Ok(())
    }

    /// Whether a restore with no target for backup node `node` may leave it out, because
    /// `others` (the backup nodes it restores) bring its data back: a ClickHouse replica
    /// whose shard another restored replica holds. Default: no, every node is restored.
    fn may_leave_out(&self, _node: &NodeSummary, _others: &[&NodeSummary]) -> bool {
        false
    }

    /// Whether a restore of this plugin applies rename rules (`strata restore --rename`)
    /// and can say what it would change without writing (`--dry-run`): a store that holds
    /// host names (etcd).
    fn restore_rules(&self) -> bool {
        false
    }

    /// The version of the plugin's data layout in backups: a restore refuses a component
    /// written by a newer layout than this strata knows.
    fn data_version(&self) -> u32 {
        1
    }

    /// Whether the plugin drives an external system through its own backup API, with no
    /// nodes of its own (`command`, `http`).
    fn is_external(&self) -> bool {
        false
    }

    /// An external component's backup: asks the system for a snapshot and waits for it.
    /// A pause it issues itself is recorded in `pauses`, the ledger the coordinator's
    /// resumers share (none: the coordinator has no state directory, and such a pause is
    /// refused).
    async fn external_backup(
        &self,
        _env: &strata_hooks::HookEnv,
        _pauses: Option<&strata_hooks::PauseLedger>,
    ) -> ExternalOutcome {
        Err(ExternalError::Failed(format!(
            "the {} plugin has nodes, not an external snapshot",
            self.name()
        )))
    }

    /// Whether an external component's system answers now (`/api/v1/check`): `None` for
    /// plugins with nodes (their agents are checked), else what answered or why not.
    // String: the line `strata check` shows; strata-server's check.rs builds the same type for its timeout.
    async fn probe(&self) -> Option<Result<String, String>> {
        None
    }

    /// Hooks the plugin's component runs as if configured (Patroni's pause around a
    /// restore in place), for the component named `component`.
    fn hooks(&self, _component: &str) -> Vec<strata_hooks::HookConfig> {
        Vec::new()
    }

    /// Whether a restore in place may go onto these nodes of the component (Patroni's
    /// cluster is restored onto one member); `Err` says what to do.
    fn check_restore_targets(&self, _targets: &[&str]) -> Result<(), PluginError> {
        Ok(())
    }

    /// Waits, after the restore's pauses, until the component's system is ready for
    /// its nodes to be restored (every Patroni member paused). `Ok` carries a line for
    /// the log; `Err` stops the restore before anything is written.
    async fn ready_to_restore(&self) -> Result<Option<String>, PluginError> {
        Ok(None)
    }

    /// After a restore whose nodes all succeeded, once its pauses are resumed: waits
    /// until the component's system serves what was restored (Patroni: a leader on the
    /// restored timeline, every other member following it). `Ok` carries a line for the
    /// report; `Err` fails the restore, saying what the system serves instead.
    async fn settle_restore(&self) -> Result<Option<String>, PluginError> {
        Ok(None)
    }

    /// Pause/resume pairs the plugin issues itself (a preset's pause of an engine): a
    /// pause record they leave is resumed by the next process as one of the
    /// configuration's own (see `strata_hooks::resume_orphans`).
    fn implied_hooks(&self) -> Vec<strata_hooks::HookConfig> {
        Vec::new()
    }

    /// Deletes what an external component's backup recorded, when strata deletes the
    /// backup (retention, `strata delete`): the system keeps what strata keeps. Returns a
    /// line for the log; a snapshot that is gone already is deleted.
    async fn external_delete(
        &self,
        _recorded: &BTreeMap<String, String>,
        _env: &strata_hooks::HookEnv,
    ) -> Result<String, PluginError> {
        Ok("nothing to delete".into())
    }

    /// What the component's system says of the pause strata issues there, now: `None`
    /// when the plugin pauses nothing of its own (or cannot ask), `Ok(Some(what))` when
    /// it is paused, `Ok(None)` when it is not, `Err` when the system did not answer.
    /// `strata status` reports a system paused that no running operation holds, whatever
    /// the pause records say (a pause can land after every resume).
    async fn engine_paused(&self) -> Option<Result<Option<String>, PluginError>> {
        None
    }

    /// Where the plugin keeps its ledger of the parts it asked its systems to create
    /// (see [`crate::engine_parts`]), if it keeps one: its deletes then go through the
    /// ledger, so a backup is deleted from strata before any of its parts is.
    fn parts_ledger(&self) -> Option<std::path::PathBuf> {
        None
    }

    /// When an external component's restore is a checklist the operator runs (what
    /// `external_restore` returned, `detail`) rather than a restore strata performed: its
    /// number of steps. Nothing was written by strata then.
    fn checklist_steps(&self, _detail: &str) -> Option<usize> {
        None
    }

    /// An external component's restore of what its backup recorded; returns a line for
    /// the restore's report.
    async fn external_restore(
        &self,
        _recorded: &std::collections::BTreeMap<String, String>,
        _env: &strata_hooks::HookEnv,
    ) -> Result<String, PluginError> {
        Err(PluginError::Settings(format!(
            "the {} plugin has nodes, not an external snapshot",
            self.name()
        )))
    }
}

/// The `files` plugin: the nodes' roots, copied as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct Files;

impl Files {
    /// What a node's agent backs up with no plugin around it: its roots.
    pub fn plain_source(node: &NodeConfig) -> NodeSource {
        NodeSource {
            name: node.name.clone(),
            roots: node.roots.clone(),
            exclude: node.exclude.clone(),
            follow: Vec::new(),
            immutable: false,
        }
    }
}

#[async_trait::async_trait]
impl Plugin for Files {
    fn name(&self) -> &'static str {
        "files"
    }

    fn check_node(&self, node: &NodeConfig) -> Result<(), PluginError> {
        if node.roots.is_empty() {
            return Err(PluginError::Settings(format!(
                "node {:?} has no roots",
                node.name
            )));
        }
        Ok(())
    }

    fn node_source(&self, node: &NodeConfig) -> NodeSource {
        Files::plain_source(node)
    }

    fn node_plugin(&self, _config: &Config, _node: &NodeConfig) -> Arc<dyn NodePlugin> {
        strata_agent::service::plugin::files()
    }

    /// Plain files record nothing.
    fn took(&self, node: &NodeSummary) -> bool {
        node.plugin.is_empty()
    }
}

// The registry: the only place that knows plugins by name.

/// The names of the plugins strata has, as the configuration spells them.
pub const KNOWN: &[&str] = &[
    "files",
    "postgres",
    "etcd",
    "command",
    "http",
    "camunda",
    "clickhouse",
];

/// The plugin called `name`, with its settings from `config` and from its component's
/// section (`None`: defaults, for what a restore asks of a plugin).
fn named(
    name: &str,
    config: &Config,
    component: Option<&ComponentConfig>,
) -> Result<Arc<dyn Plugin>, PluginError> {
    let section = |section: &'static str| PluginError::NoSection {
        plugin: name.to_string(),
        section,
    };
    Ok(match name {
        "files" => Arc::new(Files),
        "clickhouse" => Arc::new(clickhouse::ClickHouse),
        "postgres" => Arc::new(Postgres::new(&config.postgres)),
        "etcd" => {
            let c = component.and_then(|c| c.etcd.clone().map(|e| (c, e)));
            match c {
                Some((c, settings)) => Arc::new(etcd::Etcd {
                    settings,
                    rename: c.rename.clone(),
                    move_prefix: c.move_prefix.clone(),
                }),
                // A restore's pre-check: what it asks does not depend on settings.
                None if component.is_none() => Arc::new(etcd::Etcd {
                    settings: strata_etcd::Settings::default(),
                    rename: Vec::new(),
                    move_prefix: None,
                }),
                None => return Err(section("etcd")),
            }
        }
        "http" => {
            let settings = component
                .and_then(|c| c.http.clone())
                .ok_or_else(|| section("http"))?;
            external::check_http(&settings)?;
            Arc::new(external::External::Http(Box::new(settings)))
        }
        "command" => {
            let settings = component
                .and_then(|c| c.command.clone())
                .ok_or_else(|| section("command"))?;
            external::check_command(&settings)?;
            Arc::new(external::External::Command(settings))
        }
        "camunda" => {
            let c = component.ok_or_else(|| section("camunda"))?;
            let settings = c.camunda.clone().ok_or_else(|| section("camunda"))?;
            Arc::new(camunda::Camunda::new(
                &c.name,
                settings,
                config.state_dir(),
            )?)
        }
        _ => {
            return Err(PluginError::Unknown {
                name: name.to_string(),
                known: KNOWN
                    .iter()
                    .map(|k| format!("{k:?}"))
                    .collect::<Vec<_>>()
                    .join(" or "),
            })
        }
    })
}

/// The plugin of a component, with its settings; an unknown name or missing settings
/// are refused with what to write.
pub fn of_component(
    config: &Config,
    component: &ComponentConfig,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    named(&component.plugin, config, Some(component)).map_err(|e| {
        ConfigError::Invalid(match config.components.is_empty() {
            true => e.to_string(),
            false => format!("component {:?}: {e}", component.name),
        })
    })
}

/// A configured component and its plugin.
pub type Configured = (ComponentConfig, Arc<dyn Plugin>);

/// The plugin of each component of the configuration (see [`Config::components`]).
pub fn configured(config: &Config) -> Result<Vec<Configured>, ConfigError> {
    config
        .components()
        .into_iter()
        .map(|c| of_component(config, &c).map(|p| (c, p)))
        .collect()
}

/// The plugin that backs up `node`, for code that runs after the configuration was
/// validated ([`Config::validate`] refuses unknown names): `files` otherwise.
pub fn of_node(config: &Config, node: &str) -> Arc<dyn Plugin> {
    config
        .components()
        .into_iter()
        .find(|c| c.nodes.iter().any(|n| n == node))
        .and_then(|c| of_component(config, &c).ok())
        .unwrap_or_else(|| Arc::new(Files))
}

/// The plugin named `name` with default settings, for a restore (what it asks of a
/// plugin does not depend on settings), or `None` for a name this strata does not know.
pub fn by_name(name: &str) -> Option<Arc<dyn Plugin>> {
    match name {
        "files" | "postgres" | "etcd" | "clickhouse" => named(name, &Config::default(), None).ok(),
        _ => None,
    }
}

/// The plugin that took a node of a backup (with default settings: what a restore asks
/// of a plugin does not depend on them). A record no plugin claims is plain files.
pub fn of_backup_node(node: &NodeSummary) -> Arc<dyn Plugin> {
    KNOWN
        .iter()
        .filter_map(|name| by_name(name))
        .find(|plugin| plugin.name() != "files" && plugin.took(node))
        .unwrap_or_else(|| Arc::new(Files))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn every_known_name_has_a_plugin_of_that_name() {
        let config: Config = toml::from_str(
            r#"
            [[components]]
            name = "c"
            plugin = "http"
            [components.http]
            backup = "POST http://e/b"
            restore = "POST http://e/r/{id}"
            [[components]]
            name = "e"
            plugin = "etcd"
            [components.etcd]
            endpoints = ["http://127.0.0.1:2379"]
            [[components]]
            name = "d"
            plugin = "command"
            [components.command]
            backup = ["/bin/true"]
            restore = ["/bin/true"]
            [[components]]
            name = "z"
            plugin = "camunda"
            [components.camunda]
            zeebe = "http://zeebe:9600"
            elasticsearch = "http://es:9200"
            snapshot_repository = "camunda"
            "#,
        )
        .unwrap();
        for name in KNOWN {
            let component = config.components.iter().find(|c| c.plugin == *name);
            let plugin = named(name, &config, component).expect("known names are registered");
            assert_eq!(plugin.name(), *name);
        }
    }

    #[test]
    fn an_unknown_plugin_is_refused_with_the_known_ones() {
        let config = Config {
            plugin: "someday".into(),
            ..Config::default()
        };
        let err = configured(&config).err().expect("someday is not a plugin");
        assert_eq!(
            err.to_string(),
            r#"plugin "someday" is not known: use "files" or "postgres" or "etcd" or "command" or "http" or "camunda" or "clickhouse""#
        );
    }

    #[test]
    fn backup_nodes_are_matched_by_their_record() {
        let mut node = NodeSummary::default();
        assert_eq!(of_backup_node(&node).name(), "files");
        node.plugin = BTreeMap::from([("postgres.start_lsn".into(), "0/2000028".into())]);
        assert_eq!(of_backup_node(&node).name(), "postgres");
        node.plugin = BTreeMap::from([("someday.revision".into(), "7".into())]);
        assert_eq!(of_backup_node(&node).name(), "files");
    }
}
