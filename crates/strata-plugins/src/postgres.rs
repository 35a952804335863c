//! The cluster side of the postgres plugin: a node is a PostgreSQL server whose data
//! directory is what its agent backs up; a backup is one base backup taken from one
//! node of a configured role; a restore lays that one copy down on every node and
//! recovers it from the WAL archive. The node side is
//! [`strata_agent::service::PostgresAgent`].

use super::{Files, Plugin, PluginError};
use std::sync::Arc;
use std::time::Duration;
use strata_agent::backup::NodeSource;
use strata_agent::service::{NodePlugin, PostgresAgent};
use strata_cluster::config::{Config, NodeConfig, PostgresConfig};
use strata_cluster::node::NodeApi;
use strata_cluster::restore_plan::RestorePlan;
use strata_postgres::recovery::RecoveryPlan;
use strata_repo::summary::NodeSummary;

/// The postgres plugin, with the cluster's `[postgres]` settings.
#[derive(Debug, Clone)]
pub struct Postgres {
    settings: PostgresConfig,
    /// Under Patroni, the newest timeline the cluster served when the restore began
    /// (read while paused): the restored one is newer.
    timeline_before: Arc<std::sync::Mutex<Option<u64>>>,
}

impl Postgres {
    /// The plugin for a cluster with these `[postgres]` settings.
    pub fn new(settings: &PostgresConfig) -> Self {
        Postgres {
            settings: settings.clone(),
            timeline_before: Arc::default(),
        }
    }
}

/// Recovery of a PostgreSQL restore when the user names no target.
fn default_recovery() -> RecoveryPlan {
    RecoveryPlan {
        target: strata_postgres::recovery::Target::Latest,
        action: strata_postgres::recovery::TargetAction::Promote,
        start: true,
        no_archive: false,
    }
}

/// How a restored server calls back into strata for WAL: this executable with this
/// configuration file.
pub fn wal_fetch_command(config: &Config) -> String {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "strata".into());
    // The shell runs it: single quotes keep any character of a path literal.
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    match &config.source_path {
        Some(path) => format!(
            "{} --config {} wal-fetch",
            quote(&exe),
            quote(&path.display().to_string())
        ),
        None => format!("{} wal-fetch", quote(&exe)),
    }
}

#[async_trait::async_trait]
impl Plugin for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn check_node(&self, node: &NodeConfig) -> Result<(), PluginError> {
        if node.postgres.is_none() {
            return Err(PluginError::Settings(format!(
                "node {:?} has no [nodes.postgres] section: with plugin = \"postgres\" each node names its data_dir and connection",
                node.name
            )));
        }
        if !node.roots.is_empty() {
            return Err(PluginError::Settings(format!(
                "node {:?}: with plugin = \"postgres\" the data directory is the root; remove `roots`",
                node.name
            )));
        }
        Ok(())
    }

    /// The data directory minus what PostgreSQL says not to back up.
    fn node_source(&self, node: &NodeConfig) -> NodeSource {
        match &node.postgres {
            Some(pg) => NodeSource {
                name: node.name.clone(),
                roots: vec![pg.data_dir.display().to_string()],
                exclude: strata_postgres::exclude::EXCLUDED
                    .iter()
                    .map(|p| p.to_string())
                    .chain(node.exclude.iter().cloned())
                    .collect(),
                follow: vec![strata_postgres::exclude::TABLESPACE_LINKS.to_string()],
                immutable: false,
            },
            None => Files::plain_source(node),
        }
    }

    fn node_plugin(&self, config: &Config, node: &NodeConfig) -> Arc<dyn NodePlugin> {
        match &node.postgres {
            Some(pg) => Arc::new(PostgresAgent {
                node: pg.clone(),
                spread_checkpoint: self.settings.spread_checkpoint,
                wal_wait: Duration::from_secs(self.settings.wal_wait_secs),
                recovery_timeout: Duration::from_secs(self.settings.recovery_timeout_secs),
                wal_fetch_command: wal_fetch_command(config),
                wal_prefetch: self.settings.wal_prefetch && self.settings.wal_fetch_ahead > 0,
                patroni: self.settings.patroni_url().map(str::to_string),
            }),
            None => strata_agent::service::plugin::files(),
        }
    }

    /// A base backup records its start position.
    fn took(&self, node: &NodeSummary) -> bool {
        node.plugin.contains_key("postgres.start_lsn")
    }

    /// One node: the first whose server reports the role of `postgres.backup_from`.
    async fn backup_members(
        &self,
        nodes: &[Arc<dyn NodeApi>],
    ) -> Result<Option<Vec<usize>>, PluginError> {
        let role = &self.settings.backup_role().to_string();
        let answers =
            strata_cluster::node_calls::on_nodes(&(0..nodes.len()).collect::<Vec<_>>(), |i| {
                let node = nodes[i].clone();
                async move { strata_cluster::node_calls::quick_call(node.metadata()).await }
            })
            .await;
        let mut seen = Vec::new();
        for (i, answer) in answers {
            let state = match answer {
                Ok(meta) => meta
                    .postgres
                    .unwrap_or_else(|| "not a PostgreSQL node".into()),
                Err(err) => format!("agent unreachable: {err}"),
            };
            if &state == role {
                return Ok(Some(vec![i]));
            }
            seen.push(format!("{}: {state}", nodes[i].name()));
        }
        Err(PluginError::NoMember(format!(
            "no node is a reachable PostgreSQL {role} to back up from ({}); with postgres.backup_from = \"{role}\" one must be",
            seen.join("; ")
        )))
    }

    /// One copy of the database cluster, laid down on every node (or the one asked
    /// for): the node's own settings make it the primary or a standby.
    fn restore_to_every_node(&self) -> bool {
        true
    }

    /// Under Patroni, its pause around a restore in place.
    fn hooks(&self, component: &str) -> Vec<strata_hooks::HookConfig> {
        self.settings
            .patroni_url()
            .map(|url| super::patroni::pause_hook(url, component))
            .into_iter()
            .collect()
    }

    /// Under Patroni, one member: the others follow it once it leads.
    fn check_restore_targets(&self, targets: &[&str]) -> Result<(), PluginError> {
        if self.settings.patroni_url().is_some() && targets.len() > 1 {
            return Err(PluginError::Refused(format!(
                "a Patroni cluster is restored onto one member, its leader to be: pass --node with one of {}; Patroni rebuilds the others afterwards (`patronictl reinit`)",
                targets.join(", ")
            )));
        }
        Ok(())
    }

    /// Under Patroni, every member has taken the pause; the cluster's timeline is noted.
    async fn ready_to_restore(&self) -> Result<Option<String>, PluginError> {
        let Some(url) = self.settings.patroni_url() else {
            return Ok(None);
        };
        let line =
            super::patroni::wait_paused(url, Duration::from_secs(self.settings.patroni_wait_secs))
                .await?;
        let timeline = super::patroni::newest_timeline(url).await?;
        *self.timeline_before.lock().unwrap() = Some(timeline);
        Ok(Some(format!("{line} (timeline {timeline})")))
    }

    /// Under Patroni, the restored member leads on its new timeline and the others
    /// follow it (those on the abandoned history reinitialized).
    async fn settle_restore(&self) -> Result<Option<String>, PluginError> {
        let Some(url) = self.settings.patroni_url() else {
            return Ok(None);
        };
        let Some(before) = self.timeline_before.lock().unwrap().take() else {
            return Ok(None);
        };
        super::patroni::settle(
            url,
            before,
            Duration::from_secs(self.settings.patroni_wait_secs),
            Duration::from_secs(self.settings.recovery_timeout_secs),
        )
        .await
        .map(Some)
    }

    /// The user's plan, or: replay all archived WAL, promote, start the server.
    fn recovery(&self, plan: &RestorePlan) -> Option<RecoveryPlan> {
        Some(plan.recovery.clone().unwrap_or_else(default_recovery))
    }
}
