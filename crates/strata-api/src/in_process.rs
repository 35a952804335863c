//! [`Cluster`] in this process: the use cases run here, over every configured storage
//! and the configured nodes (or an ad-hoc node of this host), with this host's webhooks
//! and audit log. This is what the CLI uses without `--server`.

use crate::client::{BackupList, BackupRequest, Cluster, Running};
use async_trait::async_trait;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use strata_agent::restore::RestoreOptions;
use strata_coordinator::actions::{refuse_latest, Actions};
use strata_coordinator::audit::{self, local_actor, AuditEntry};
use strata_coordinator::browse::{for_each_file, FileEntry, FileFilter};
use strata_coordinator::catalog::{Catalog, Located};
use strata_coordinator::config::{Config, NodeConfig, RetentionConfig};
use strata_coordinator::coordinator::{ClusterStatus, Coordinator, RestoreOutcome, RestorePlan};
use strata_coordinator::copy::CopyReport;
use strata_coordinator::events::{Activity, Events};
use strata_coordinator::gc::GcReport;
use strata_coordinator::listing::PageQuery;
use strata_coordinator::repair::{BackupsRepairReport, IndexRepairReport};
use strata_coordinator::restore::DirRestore;
use strata_coordinator::retention::CleanupReport;
use strata_coordinator::schedule::{JobStatus, Scheduler, SystemClock};
use strata_coordinator::setup::{self, SharedRepo};
use strata_coordinator::storage::Storage;
use strata_coordinator::verify::{DataCheck, DrillReport, VerifyReport};
use strata_coordinator::webhooks::Webhooks;
use strata_coordinator::{jobs, CoordinatorError, CoordinatorResult};
use strata_repo::format::Encryption;
use strata_repo::summary::BackupSummary;
use strata_repo::{InitOptions, Repository};
use strata_wal::{WalListing, WalVerifyReport};
use tokio::sync::OnceCell;

/// How long [`Cluster::finish`] waits for webhook deliveries.
const FLUSH: Duration = Duration::from_secs(10);

/// Where the password comes from when a repository is encrypted: the edge's choice
/// (environment, file, or the terminal). Asked at most once, and only when needed.
pub type AskPassword = Box<dyn Fn() -> CoordinatorResult<Option<String>> + Send + Sync>;

/// The cluster commands run in this process.
pub struct InProcess {
    config: Config,
    ask_password: AskPassword,
    password: OnceCell<Option<String>>,
    /// Told of each storage that could not be opened (one line each).
    warn: Box<dyn Fn(&str) + Send + Sync>,
    events: std::sync::OnceLock<Arc<Events>>,
    catalog: OnceCell<Catalog>,
    /// The default storage and its repository, opened once: the storage's request
    /// counter is the one a backup's summary reports, so both must be the same.
    default_repo: OnceCell<(Storage, Arc<Repository>)>,
    /// The coordinators made here, so [`InProcess::stop`] reaches their operations.
    coordinators: std::sync::Mutex<Vec<std::sync::Weak<Coordinator>>>,
    /// The pause records of the state directory, one ledger for every coordinator and
    /// agent made here (a resume waits for a pause call still running in any of them).
    pauses: strata_coordinator::hooks::PauseLedger,
}

impl InProcess {
    /// The cluster of `config`; `ask_password` is called when an encrypted repository
    /// is first opened, `warn` for each storage that is not available.
    pub fn new(
        config: Config,
        ask_password: AskPassword,
        warn: Box<dyn Fn(&str) + Send + Sync>,
    ) -> InProcess {
        InProcess {
            pauses: strata_coordinator::hooks::PauseLedger::new(config.state_dir()),
            config,
            ask_password,
            password: OnceCell::new(),
            warn,
            events: std::sync::OnceLock::new(),
            catalog: OnceCell::new(),
            default_repo: OnceCell::new(),
            coordinators: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Stops the backups and restores running here (see [`Coordinator::stop`]): each
    /// records itself failed with `why` and releases its nodes and the cluster lock. A
    /// garbage collection here stops at its next safe point and gives its lock back.
    pub fn stop(&self, why: &str) {
        strata_coordinator::lock::stop_collections(why);
        for coordinator in self.coordinators.lock().unwrap().iter() {
            if let Some(coordinator) = coordinator.upgrade() {
                coordinator.stop(why);
            }
        }
    }

    /// The configuration this cluster runs on.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Webhooks and the audit log, built when first needed.
    pub fn events(&self) -> CoordinatorResult<Arc<Events>> {
        if let Some(events) = self.events.get() {
            return Ok(events.clone());
        }
        let webhooks = Webhooks::from_config(&self.config.webhooks)?;
        Ok(self.events.get_or_init(|| Events::new(webhooks)).clone())
    }

    /// The default storage.
    pub fn storage(&self) -> CoordinatorResult<Storage> {
        Storage::open_default(&self.config)
    }

    /// The password when `storage` is encrypted (unencrypted repositories have no real
    /// key, so nobody is asked for one).
    pub async fn password_for(&self, storage: &Storage) -> CoordinatorResult<Option<String>> {
        let needs_password = storage
            .store
            .list(strata_repo::layout::KEYS)
            .await
            .map(|keys| !keys.is_empty())
            .unwrap_or(true);
        if !needs_password {
            return Ok(None);
        }
        self.password
            .get_or_try_init(|| async { (self.ask_password)() })
            .await
            .cloned()
    }

    /// The default storage's repository.
    pub async fn repo(&self) -> CoordinatorResult<Arc<Repository>> {
        Ok(self.opened().await?.1.clone())
    }

    /// The default storage and its repository, opened once, with its index view
    /// brought up to date (what changed since it was last read).
    async fn opened(&self) -> CoordinatorResult<&(Storage, Arc<Repository>)> {
        let opened = self.opened_catalog().await?;
        opened.1.reload_index().await?;
        Ok(opened)
    }

    /// The default storage and its repository, opened once, without reading the index:
    /// for what needs no blob locations (pins, the audit log, the WAL listing).
    async fn opened_catalog(&self) -> CoordinatorResult<&(Storage, Arc<Repository>)> {
        self.default_repo
            .get_or_try_init(|| async {
                let storage = self.storage()?;
                let password = self.password_for(&storage).await?;
                let repo = storage
                    .open_repository(&self.config, password.as_deref(), false)
                    .await?;
                Ok::<_, CoordinatorError>((storage, repo))
            })
            .await
    }

    /// Every configured storage, for commands that find backups wherever they are.
    pub async fn catalog(&self) -> CoordinatorResult<&Catalog> {
        self.catalog
            .get_or_try_init(|| async {
                let password = self.password_for(&self.storage()?).await?;
                let catalog = Catalog::open(&self.config, password.as_deref()).await?;
                for (name, why) in &catalog.unavailable {
                    (self.warn)(&format!("storage {name} is not available: {why}"));
                }
                Ok::<_, CoordinatorError>(catalog)
            })
            .await
    }

    /// The use cases on the repository `repo` of `storage`.
    pub fn actions(&self, repo: &Arc<Repository>, storage: &str) -> CoordinatorResult<Actions> {
        Ok(Actions::new(
            repo.clone(),
            storage,
            self.events()?,
            Duration::from_secs(self.config.server.lease_ttl_secs),
            self.config.gc.grace()?,
        )
        .with_components(&strata_coordinator::component::from_config(
            &self.config,
            &self
                .config
                .nodes
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>(),
        )))
    }

    /// The use cases on the default storage.
    async fn default_actions(&self) -> CoordinatorResult<Actions> {
        let repo = self.repo().await?;
        self.actions(&repo, &self.config.default_storage)
    }

    /// A backup in any storage, with its repository's index loaded when `index`.
    async fn find(
        &self,
        wanted: &str,
        index: bool,
    ) -> CoordinatorResult<(Arc<Repository>, BackupSummary, String)> {
        let (place, summary) = self.catalog().await?.find(wanted).await?;
        if index {
            place.repo.reload_index().await?;
        }
        Ok((place.repo.clone(), summary, place.storage.name.clone()))
    }

    /// A coordinator of `nodes` over the default storage.
    pub async fn coordinator(&self, nodes: &[NodeConfig]) -> CoordinatorResult<Arc<Coordinator>> {
        let (storage, repo) = self.opened().await?.clone();
        let repos = Arc::new(SharedRepo {
            storage: storage.name.clone(),
            repo: repo.clone(),
        });
        let nodes = setup::build_nodes(&self.config, nodes, repos, &HashMap::new(), &self.pauses)?;
        let coordinator = setup::coordinator(
            &self.config,
            &storage,
            repo,
            nodes,
            self.events()?,
            &self.pauses,
        );
        self.coordinators
            .lock()
            .unwrap()
            .push(Arc::downgrade(&coordinator));
        Ok(coordinator)
    }

    /// The nodes a backup covers: one ad-hoc node of this host for paths, else the
    /// configured nodes (with the extra exclude patterns).
    pub fn nodes(&self, request: BackupRequest) -> CoordinatorResult<Vec<NodeConfig>> {
        if !request.paths.is_empty() {
            let mut probe = self.config.clone();
            probe.nodes = vec![NodeConfig {
                name: request.node_name.unwrap_or_else(host_name),
                url: None,
                roots: request.paths,
                exclude: request.exclude,
                zone: None,
                postgres: None,
                clickhouse: None,
            }];
            strata_coordinator::config_file::validate(&probe)?;
            return Ok(probe.nodes);
        }
        Ok(self
            .config
            .nodes
            .iter()
            .map(|n| NodeConfig {
                exclude: n.exclude.iter().chain(&request.exclude).cloned().collect(),
                ..n.clone()
            })
            .collect())
    }

    /// `strata init`: a new repository in the default storage, with the configured
    /// encryption; `ask_password` is called only for an encrypted one. Audited.
    pub async fn init(
        &self,
        ask_password: impl FnOnce() -> CoordinatorResult<Option<String>>,
    ) -> CoordinatorResult<Initialized> {
        let encryption: Encryption = self
            .config
            .repository
            .encryption
            .parse()
            .map_err(CoordinatorError::Invalid)?;
        let password = match encryption {
            Encryption::None => None,
            _ => Some(ask_password()?.ok_or_else(|| {
                CoordinatorError::Password(format!(
                    "no password: set {} (or password.file in the config), or run in a terminal to be asked",
                    self.config.password.env
                ))
            })?),
        };
        let storage = self.storage()?;
        let options = InitOptions {
            encryption,
            ..InitOptions::default()
        };
        let repo = Repository::init(storage.store.clone(), password.as_deref(), options).await?;
        let location = storage.store.describe();
        let id = repo.config().id.clone();
        let who = local_actor();
        let action = Activity {
            who: &who,
            kind: "init",
            target: &location,
            operation: None,
        };
        self.events()?
            .finished(
                &repo,
                &storage.name,
                &action,
                "succeeded",
                &format!("repository {id}"),
            )
            .await;
        Ok(Initialized {
            encryption: repo.config().encryption,
            id,
            location,
        })
    }

    /// `strata restore --to DIR`: a backup's nodes into a directory of this host (there
    /// is no server form: the directory is here).
    pub async fn restore_into(
        &self,
        wanted: &str,
        to: &Path,
        node: Option<&str>,
        mut options: RestoreOptions,
    ) -> CoordinatorResult<(BackupSummary, Vec<DirRestore>)> {
        let (repo, summary, storage) = self.find(wanted, true).await?;
        if self.config.restore.workers > 0 {
            options.workers = self.config.restore.workers;
        }
        let restored = self
            .actions(&repo, &storage)?
            .restore_into(&local_actor(), &summary, to, node, options)
            .await?;
        Ok((summary, restored))
    }
}

impl InProcess {
    /// The PostgreSQL node of backup `wanted` of the default storage laid down in `to`
    /// (files only, no recovery settings: for Patroni's replica and bootstrap methods).
    /// `latest` with a target time in `plan` is the newest complete backup that had ended
    /// by then.
    pub async fn restore_postgres_into(
        &self,
        wanted: &str,
        plan: Option<&strata_postgres::recovery::RecoveryPlan>,
        to: &Path,
        mut options: RestoreOptions,
    ) -> CoordinatorResult<(BackupSummary, Vec<DirRestore>)> {
        let (storage, repo) = self.opened().await?.clone();
        let summary = strata_coordinator::resolve_backup_for(&repo, wanted, plan).await?;
        let node = summary
            .nodes
            .iter()
            .find(|n| strata_postgres::BaseBackupInfo::from_map(&n.plugin).is_some())
            .ok_or_else(|| {
                CoordinatorError::NoNode(format!("backup {} has no PostgreSQL node", summary.name))
            })?
            .name
            .clone();
        repo.reload_index().await?;
        if self.config.restore.workers > 0 {
            options.workers = self.config.restore.workers;
        }
        let restored = self
            .actions(&repo, &storage.name)?
            .restore_into(&local_actor(), &summary, to, Some(&node), options)
            .await?;
        Ok((summary, restored))
    }

    /// `strata restore BACKUP --table ...`: tables back from a PostgreSQL backup of the
    /// default storage, without touching the running cluster (see
    /// [`strata_coordinator::table_restore`]); `say` gets a line per phase. `latest` with
    /// a target time is the newest complete backup that had ended by then.
    pub async fn restore_tables(
        &self,
        wanted: &str,
        request: &strata_coordinator::table_restore::TableRestore,
        say: &(dyn Fn(&str) + Sync),
    ) -> CoordinatorResult<strata_coordinator::table_restore::TableRestoreReport> {
        let (storage, repo) = self.opened().await?.clone();
        let plan = strata_postgres::recovery::RecoveryPlan {
            target: request.target.clone(),
            action: strata_postgres::recovery::TargetAction::Promote,
            start: true,
            no_archive: false,
        };
        let summary = strata_coordinator::resolve_backup_for(&repo, wanted, Some(&plan)).await?;
        repo.reload_index().await?;
        self.actions(&repo, &storage.name)?
            .restore_tables(&local_actor(), &self.config, &summary, request, say)
            .await
    }
}

/// A repository `strata init` created.
#[derive(Debug, serde::Serialize)]
pub struct Initialized {
    /// How its data is sealed: the configured `repository.encryption`.
    pub encryption: Encryption,
    /// The repository's id.
    pub id: String,
    /// Where it is (the store's description).
    pub location: String,
}

/// This host's name, made safe for a node name.
fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if name.is_empty() || name.starts_with('.') {
        "localhost".into()
    } else {
        name
    }
}

#[async_trait]
impl Cluster for InProcess {
    fn location(&self) -> String {
        self.config.default_storage.clone()
    }

    async fn list(&self, query: PageQuery) -> CoordinatorResult<BackupList> {
        let page = self.catalog().await?.page(&query).await?;
        Ok(BackupList {
            backups: page.backups,
            verified: page.verified,
            damaged: page.damaged,
            next: page.next,
            total: Some(page.total),
            notes: page.notes,
        })
    }

    async fn show(&self, backup: &str) -> CoordinatorResult<Located> {
        let (place, summary) = self.catalog().await?.find(backup).await?;
        Ok(Located {
            storage: place.storage.name.clone(),
            summary,
        })
    }

    async fn files(
        &self,
        backup: &str,
        node: Option<&str>,
        path: Option<&str>,
        each: &mut (dyn FnMut(FileEntry) + Send),
    ) -> CoordinatorResult<()> {
        let (repo, summary, _) = self.find(backup, false).await?;
        let filter = FileFilter { node, path };
        for_each_file(&repo, &summary, &filter, |entry| {
            each(entry);
            true
        })
        .await
    }

    async fn delete(
        &self,
        backups: &[String],
        deleted: &mut (dyn FnMut(BackupSummary) + Send),
    ) -> CoordinatorResult<Vec<GcReport>> {
        let catalog = self.catalog().await?;
        let who = local_actor();
        let mut touched: Vec<Actions> = Vec::new();
        for name in backups {
            // Refused before any storage is searched, by the rule the delete itself applies.
            refuse_latest(name)?;
            let (place, summary) = catalog.find_one(name).await?;
            let actions = self.actions(&place.repo, &place.storage.name)?;
            deleted(actions.delete(&who, &summary.name).await?);
            if !touched
                .iter()
                .any(|t| Arc::ptr_eq(t.repo(), actions.repo()))
            {
                touched.push(actions);
            }
        }
        // Then the data no remaining backup uses, in every storage that lost a backup. An
        // operation that took the cluster in between only postpones that: the deletes
        // are done, and the next gc frees the data.
        let mut reports = Vec::new();
        for actions in touched {
            match actions.collect_garbage(false).await {
                Ok(report) => reports.push(report),
                Err(CoordinatorError::Busy(why)) => (self.warn)(&format!(
                    "the data of the deleted backups is not freed yet ({why}); the next gc frees it"
                )),
                Err(err) => return Err(err),
            }
        }
        Ok(reports)
    }

    async fn pin(&self, backup: &str, pinned: bool) -> CoordinatorResult<BackupSummary> {
        let repo = self.opened_catalog().await?.1.clone();
        self.actions(&repo, &self.config.default_storage)?
            .pin(&local_actor(), backup, pinned)
            .await
    }

    async fn verify(
        &self,
        backup: Option<&str>,
        check: DataCheck,
    ) -> CoordinatorResult<VerifyReport> {
        let targets: Vec<(Arc<Repository>, Option<String>, String)> = match backup {
            Some(wanted) => {
                let (repo, summary, storage) = self.find(wanted, true).await?;
                vec![(repo, Some(summary.name), storage)]
            }
            None => self
                .catalog()
                .await?
                .places
                .iter()
                .map(|p| (p.repo.clone(), None, p.storage.name.clone()))
                .collect(),
        };
        let who = local_actor();
        let mut report = VerifyReport::default();
        for (repo, name, storage) in targets {
            let found = self
                .actions(&repo, &storage)?
                .verify(&who, name.as_deref(), check)
                .await?;
            report.absorb(found);
        }
        Ok(report)
    }

    async fn drill(&self, backup: &str) -> CoordinatorResult<DrillReport> {
        let (repo, summary, storage) = self.find(backup, true).await?;
        self.actions(&repo, &storage)?
            .drill(&local_actor(), &summary, &self.config.state_dir())
            .await
    }

    async fn restore_tables(
        &self,
        backup: &str,
        request: crate::types::TableRestoreBody,
    ) -> CoordinatorResult<strata_coordinator::table_restore::TableRestoreReport> {
        let request = request.into_request().map_err(CoordinatorError::Invalid)?;
        InProcess::restore_tables(self, backup, &request, &|_| {}).await
    }

    async fn copy(&self, backup: &str, to: &str) -> CoordinatorResult<CopyReport> {
        let (source, summary, storage) = self.find(backup, true).await?;
        let catalog = self.catalog().await?;
        let open_target = async {
            let target = catalog.place(to)?.repo.clone();
            target.reload_index().await?;
            Ok(target)
        };
        self.actions(&source, &storage)?
            .copy(
                &local_actor(),
                &summary,
                open_target,
                to,
                self.config.backup.writer_options(),
            )
            .await
    }

    async fn cleanup(
        &self,
        dry_run: bool,
        policy: Option<RetentionConfig>,
    ) -> CoordinatorResult<CleanupReport> {
        let policy = policy.unwrap_or_else(|| self.config.retention.clone());
        policy.check().map_err(CoordinatorError::Invalid)?;
        self.default_actions()
            .await?
            .cleanup(&local_actor(), &policy, dry_run)
            .await
    }

    async fn gc(&self, dry_run: bool) -> CoordinatorResult<GcReport> {
        self.default_actions()
            .await?
            .gc(&local_actor(), dry_run)
            .await
    }

    async fn repair_index(&self, dry_run: bool) -> CoordinatorResult<IndexRepairReport> {
        self.default_actions()
            .await?
            .repair_index(&local_actor(), dry_run)
            .await
    }

    async fn repair_backups(&self, dry_run: bool) -> CoordinatorResult<BackupsRepairReport> {
        self.default_actions()
            .await?
            .repair_backups(&local_actor(), dry_run)
            .await
    }

    async fn audit(&self, since: Option<&str>, limit: u32) -> CoordinatorResult<Vec<AuditEntry>> {
        let since = match since {
            Some(text) => audit::parse_since(text, strata_coordinator::lock::now_ms())
                .map_err(CoordinatorError::Invalid)?,
            None => 0,
        };
        Ok(audit::read(&self.opened_catalog().await?.1, since, limit as usize).await?)
    }

    async fn wal_list(&self) -> CoordinatorResult<WalListing> {
        Ok(strata_wal::list(&self.opened_catalog().await?.1).await?)
    }

    async fn wal_verify(&self) -> CoordinatorResult<WalVerifyReport> {
        Ok(strata_wal::verify(&self.repo().await?).await?)
    }

    async fn status(&self) -> CoordinatorResult<ClusterStatus> {
        self.coordinator(&self.config.nodes).await?.status().await
    }

    async fn schedules(&self) -> CoordinatorResult<Vec<JobStatus>> {
        let scheduler = Scheduler::new(
            &self.config.schedules,
            Arc::new(jobs::NoRuns),
            Arc::new(SystemClock),
            Some(jobs::state_file(&self.config.state_dir())),
        )
        .map_err(CoordinatorError::Invalid)?;
        Ok(scheduler.status())
    }

    async fn backup(&self, request: BackupRequest) -> CoordinatorResult<Running<BackupSummary>> {
        let nodes = self.nodes(request)?;
        let pending = self
            .coordinator(&nodes)
            .await?
            .backup(&local_actor())
            .await?;
        Ok(Running {
            updates: pending.operation().subscribe(),
            outcome: Box::pin(pending.run()),
        })
    }

    async fn restore(
        &self,
        backup: &str,
        plan: RestorePlan,
    ) -> CoordinatorResult<Running<RestoreOutcome>> {
        let coordinator = self.coordinator(&self.config.nodes).await?;
        let summary = strata_coordinator::resolve_backup_for(
            coordinator.repo(),
            backup,
            plan.recovery.as_ref(),
        )
        .await?;
        let pending = coordinator.restore(&summary, plan, &local_actor()).await?;
        Ok(Running {
            updates: pending.operation().subscribe(),
            outcome: Box::pin(pending.run()),
        })
    }

    async fn finish(&self) {
        if let Some(events) = self.events.get() {
            events.flush(FLUSH).await;
        }
    }
}
