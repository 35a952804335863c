//! One interface for every cluster command, whatever carries it: [`crate::InProcess`]
//! runs the use cases here over the configured storages and nodes; [`crate::Http`] asks
//! a `strata server`. The CLI parses, calls one method of [`Cluster`] and prints; it never
//! knows which transport answered.

use async_trait::async_trait;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use strata_coordinator::audit::AuditEntry;
use strata_coordinator::browse::FileEntry;
use strata_coordinator::catalog::{Located, LocatedDamage};
use strata_coordinator::config::RetentionConfig;
use strata_coordinator::coordinator::{ClusterStatus, RestoreOutcome, RestorePlan};
use strata_coordinator::copy::CopyReport;
use strata_coordinator::gc::GcReport;
use strata_coordinator::listing::PageQuery;
use strata_coordinator::operation::OperationStatus;
use strata_coordinator::repair::{BackupsRepairReport, IndexRepairReport};
use strata_coordinator::retention::CleanupReport;
use strata_coordinator::schedule::JobStatus;
use strata_coordinator::verified::VerifyRecord;
use strata_coordinator::verify::{DataCheck, DrillReport, VerifyReport};
use strata_coordinator::CoordinatorResult;
use strata_repo::summary::BackupSummary;
use strata_wal::{WalListing, WalVerifyReport};
use tokio::sync::watch;

/// A page of the backups the cluster holds (all of them for [`PageQuery::all`]), where,
/// and what is known of each.
#[derive(Debug, Default)]
pub struct BackupList {
    /// Newest first.
    pub backups: Vec<Located>,
    /// The last verification of a backup, by (storage, backup name).
    pub verified: HashMap<(String, String), VerifyRecord>,
    /// Backups whose summary does not decode (`strata repair backups`).
    pub damaged: Vec<LocatedDamage>,
    /// The cursor of the next (older) page, when there may be one.
    pub next: Option<String>,
    /// Backups in all, when the transport says.
    pub total: Option<usize>,
    /// What the page had to read besides the listing (one line each), when it did.
    pub notes: Vec<String>,
}

/// What `strata backup` backs up: the configured nodes, or (in-process only) an ad-hoc
/// node of `paths`.
#[derive(Debug, Default, Clone)]
pub struct BackupRequest {
    /// Directories of an ad-hoc node on this host; empty for the configured nodes.
    pub paths: Vec<String>,
    /// The ad-hoc node's name (default: this host's name).
    pub node_name: Option<String>,
    /// More exclude patterns for the nodes backed up in-process.
    pub exclude: Vec<String>,
}

/// The end of an operation, still to be awaited.
pub type Outcome<T> = Pin<Box<dyn Future<Output = CoordinatorResult<T>> + Send>>;

/// A started backup or restore: its status as it changes, and its end.
pub struct Running<T> {
    /// Every status the operation goes through (for a progress display).
    pub updates: watch::Receiver<OperationStatus>,
    /// Resolves when the operation ended. Dropping it leaves a server's operation
    /// running (`strata backup --wait=false`); an in-process one stops with the process.
    pub outcome: Outcome<T>,
}

/// The cluster commands, one method per use case.
///
/// Backup names are a name, a unique prefix or `latest`, as on the command line.
#[async_trait]
pub trait Cluster: Send + Sync {
    /// Where the calls go, for messages (`http://host:port`, or the storage's name).
    fn location(&self) -> String;

    /// `strata list`: one page of backups, newest first (every backup for
    /// [`PageQuery::all`]).
    async fn list(&self, query: PageQuery) -> CoordinatorResult<BackupList>;

    /// `strata show`: the backup and the storage that holds it.
    async fn show(&self, backup: &str) -> CoordinatorResult<Located>;

    /// `strata ls`: every entry of the backup under `node` and `path`, in manifest
    /// order.
    async fn files(
        &self,
        backup: &str,
        node: Option<&str>,
        path: Option<&str>,
        each: &mut (dyn FnMut(FileEntry) + Send),
    ) -> CoordinatorResult<()>;

    /// `strata delete`: each backup in turn (`deleted` hears of each as it goes), then
    /// the data no remaining backup uses. The garbage collections made here are returned
    /// (a server collects garbage itself and reports none).
    async fn delete(
        &self,
        backups: &[String],
        deleted: &mut (dyn FnMut(BackupSummary) + Send),
    ) -> CoordinatorResult<Vec<GcReport>>;

    /// `strata pin` / `strata unpin`.
    async fn pin(&self, backup: &str, pinned: bool) -> CoordinatorResult<BackupSummary>;

    /// `strata verify`: one backup, or all when `None`.
    async fn verify(
        &self,
        backup: Option<&str>,
        check: DataCheck,
    ) -> CoordinatorResult<VerifyReport>;

    /// `strata verify --restore`: a restore drill.
    async fn drill(&self, backup: &str) -> CoordinatorResult<DrillReport>;

    /// `strata restore BACKUP --table ...` (or `--database` alone): tables of a
    /// PostgreSQL backup brought back into the live database, on the server's host.
    async fn restore_tables(
        &self,
        backup: &str,
        request: crate::types::TableRestoreBody,
    ) -> CoordinatorResult<strata_coordinator::table_restore::TableRestoreReport>;

    /// `strata copy`: the backup into the storage named `to`.
    async fn copy(&self, backup: &str, to: &str) -> CoordinatorResult<CopyReport>;

    /// `strata cleanup`: `policy` instead of the configured `[retention]` when given.
    async fn cleanup(
        &self,
        dry_run: bool,
        policy: Option<RetentionConfig>,
    ) -> CoordinatorResult<CleanupReport>;

    /// `strata gc`.
    async fn gc(&self, dry_run: bool) -> CoordinatorResult<GcReport>;

    /// `strata repair index`.
    async fn repair_index(&self, dry_run: bool) -> CoordinatorResult<IndexRepairReport>;

    /// `strata repair backups`.
    async fn repair_backups(&self, dry_run: bool) -> CoordinatorResult<BackupsRepairReport>;

    /// `strata audit`: entries from `since` (a time, a date or an age), at most `limit`.
    async fn audit(&self, since: Option<&str>, limit: u32) -> CoordinatorResult<Vec<AuditEntry>>;

    /// `strata wal list`.
    async fn wal_list(&self) -> CoordinatorResult<WalListing>;

    /// `strata wal verify`.
    async fn wal_verify(&self) -> CoordinatorResult<WalVerifyReport>;

    /// `strata status`.
    async fn status(&self) -> CoordinatorResult<ClusterStatus>;

    /// `strata schedules`.
    async fn schedules(&self) -> CoordinatorResult<Vec<JobStatus>>;

    /// `strata backup`: takes the cluster and starts the backup.
    async fn backup(&self, request: BackupRequest) -> CoordinatorResult<Running<BackupSummary>>;

    /// `strata restore` in place: the backup onto the configured nodes.
    async fn restore(
        &self,
        backup: &str,
        plan: RestorePlan,
    ) -> CoordinatorResult<Running<RestoreOutcome>>;

    /// Waits (a bounded while) for what the calls set off in the background here, such as
    /// webhook deliveries; a no-op for a server, which keeps running.
    async fn finish(&self) {}
}
