//! [`Cluster`] over HTTP: every call is one request to a `strata server`'s `/api/v1`,
//! with the shared bodies of [`crate::types`]. Before its first call the client asks the
//! server what it speaks (`GET /api/v1/version`); a call the server does not offer is
//! refused here with a message that names both versions, rather than sent and answered
//! with a bare 404.

use crate::client::{BackupList, BackupRequest, Cluster, Running};
use crate::types::{self, feature, BackupListing, Started, VersionInfo, API_VERSION};
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use strata_cluster::node_api::{ApiError, ErrorCode};
use strata_coordinator::audit::AuditEntry;
use strata_coordinator::browse::FileEntry;
use strata_coordinator::catalog::Located;
use strata_coordinator::config::RetentionConfig;
use strata_coordinator::coordinator::{ClusterStatus, RestoreOutcome, RestorePlan};
use strata_coordinator::copy::CopyReport;
use strata_coordinator::gc::GcReport;
use strata_coordinator::listing::{PageQuery, MAX_PAGE};
use strata_coordinator::operation::OperationStatus;
use strata_coordinator::remote::ApiClient;
use strata_coordinator::repair::{BackupsRepairReport, IndexRepairReport};
use strata_coordinator::retention::CleanupReport;
use strata_coordinator::schedule::JobStatus;
use strata_coordinator::verify::{DataCheck, DrillReport, VerifyReport};
use strata_coordinator::{CoordinatorError, CoordinatorResult};
use strata_repo::summary::BackupSummary;
use strata_wal::{WalListing, WalVerifyReport};
use tokio::sync::OnceCell;

/// The storage name a server's backups are listed under.
const SERVER_STORAGE: &str = "server";

/// A `strata server`'s coordinator, over HTTP(S).
pub struct Http {
    client: ApiClient,
    version: OnceCell<VersionInfo>,
}

impl Http {
    /// The server behind `client`.
    pub fn new(client: ApiClient) -> Http {
        Http {
            client,
            version: OnceCell::new(),
        }
    }

    /// What the server speaks: asked once; a server from before version negotiation
    /// (no `/api/v1/version`) speaks API 1.
    pub async fn version(&self) -> CoordinatorResult<&VersionInfo> {
        self.version
            .get_or_try_init(|| async {
                match self.client.get::<VersionInfo>("/api/v1/version").await {
                    Ok(version) => Ok(version),
                    Err(e) if e.code == ErrorCode::NotFound => {
                        Ok(VersionInfo::before_negotiation())
                    }
                    Err(e) => Err(CoordinatorError::Api(e)),
                }
            })
            .await
    }

    /// Refuses a call of `feature` the server does not offer, naming what differs.
    async fn need(&self, feature: &str) -> CoordinatorResult<()> {
        let version = self.version().await?;
        if version.api != API_VERSION {
            return Err(CoordinatorError::Api(ApiError::new(
                ErrorCode::Version,
                format!(
                    "the server at {} speaks API version {} (strata {}); this strata speaks API version {} (strata {}): use a strata of the same API version",
                    self.client.base(),
                    version.api,
                    version.server,
                    API_VERSION,
                    env!("CARGO_PKG_VERSION")
                ),
            )));
        }
        if !version.offers(feature) {
            return Err(CoordinatorError::Api(ApiError::new(
                ErrorCode::Version,
                format!(
                    "the server at {} (strata {}) does not offer `{feature}`, which this strata ({}) needs: upgrade the server, or run the command here without --server",
                    self.client.base(),
                    version.server,
                    env!("CARGO_PKG_VERSION")
                ),
            )));
        }
        Ok(())
    }

    /// Whether the server offers `feature` (an addition a call can do without), after
    /// checking it speaks this API at all.
    async fn offers(&self, feature: &str) -> CoordinatorResult<bool> {
        self.need(feature::BACKUPS).await?;
        Ok(self.version().await?.offers(feature))
    }

    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        feature: &str,
        path: &str,
    ) -> CoordinatorResult<T> {
        self.need(feature).await?;
        Ok(self.client.get(path).await?)
    }

    pub(crate) async fn post<T: DeserializeOwned>(
        &self,
        feature: &str,
        path: &str,
        body: &(impl serde::Serialize + Sync),
    ) -> CoordinatorResult<T> {
        self.need(feature).await?;
        Ok(self.client.post(path, body).await?)
    }

    pub(crate) async fn patch<T: DeserializeOwned>(
        &self,
        feature: &str,
        path: &str,
        body: &(impl serde::Serialize + Sync),
    ) -> CoordinatorResult<T> {
        self.send(feature, reqwest::Method::PATCH, path, Some(body))
            .await
    }

    /// One `method` request of `feature`, with or without a body.
    pub(crate) async fn send<T: DeserializeOwned>(
        &self,
        feature: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&(impl serde::Serialize + Sync)>,
    ) -> CoordinatorResult<T> {
        self.need(feature).await?;
        Ok(self.client.call(method, path, body).await?)
    }

    /// Follows a started operation to its end and decodes its result.
    fn running<T: DeserializeOwned + Send + 'static>(&self, first: OperationStatus) -> Running<T> {
        let (updates, task) = crate::events::follow(self.client.clone(), first);
        let outcome = async move {
            let last = task
                .await
                .map_err(|e| ApiError::new(ErrorCode::Failed, format!("event follower: {e}")))??;
            let Some(result) = last.result.clone() else {
                return Err(CoordinatorError::Api(ApiError::new(
                    ErrorCode::Failed,
                    format!(
                        "{} {} failed: {}",
                        last.kind,
                        last.id,
                        last.error.as_deref().unwrap_or("no reason given")
                    ),
                )));
            };
            serde_json::from_value(result).map_err(|e| {
                CoordinatorError::Api(ApiError::new(
                    ErrorCode::Failed,
                    format!("unexpected {} result: {e}", last.kind),
                ))
            })
        };
        Running {
            updates,
            outcome: Box::pin(outcome),
        }
    }
}

/// `/api/v1/backups/NAME...`: the name percent-encoded (it was checked nowhere yet).
fn backup_path(name: &str, rest: &str) -> String {
    format!(
        "/api/v1/backups/{}{rest}",
        crate::events::encode_query(name)
    )
}

#[async_trait]
impl Cluster for Http {
    fn location(&self) -> String {
        self.client.base().to_string()
    }

    async fn list(&self, query: PageQuery) -> CoordinatorResult<BackupList> {
        let mut list = BackupList::default();
        let listings: Vec<BackupListing> = if self.offers(feature::BACKUP_PAGES).await? {
            // Pages, newest first: every page in turn when all are wanted.
            let mut listings = Vec::new();
            let mut cursor = query.cursor.clone();
            loop {
                let limit = query.limit.min(MAX_PAGE);
                let mut path = format!("/api/v1/backups?limit={limit}");
                if let Some(cursor) = &cursor {
                    path.push_str(&format!("&cursor={}", crate::events::encode_query(cursor)));
                }
                let response = self.client.send(reqwest::Method::GET, &path, None).await?;
                let header = |name: &str| {
                    response
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                };
                let next = header("x-next-cursor");
                list.total = header("x-total-count").and_then(|t| t.parse().ok());
                list.notes.extend(header("x-listing-note"));
                let unexpected = |e: &dyn std::fmt::Display| {
                    CoordinatorError::Api(ApiError::new(
                        ErrorCode::Failed,
                        format!("unexpected answer to GET /api/v1/backups: {e}"),
                    ))
                };
                let body = response.bytes().await.map_err(|e| unexpected(&e))?;
                let page: Vec<BackupListing> =
                    serde_json::from_slice(&body).map_err(|e| unexpected(&e))?;
                listings.extend(page);
                match next {
                    Some(next) if query.limit == usize::MAX || listings.len() < query.limit => {
                        cursor = Some(next)
                    }
                    next => {
                        list.next = next;
                        break;
                    }
                }
            }
            listings
        } else {
            // An older server: every backup, oldest first, of its default storage.
            let mut all: Vec<BackupListing> = self.get(feature::BACKUPS, "/api/v1/backups").await?;
            all.reverse();
            all
        };
        for listing in listings {
            let storage = listing
                .storage
                .clone()
                .unwrap_or_else(|| SERVER_STORAGE.to_string());
            if let Some(record) = listing.verification {
                list.verified
                    .insert((storage.clone(), listing.summary.name.clone()), record);
            }
            list.backups.push(Located {
                storage,
                summary: listing.summary,
            });
        }
        Ok(list)
    }

    async fn show(&self, backup: &str) -> CoordinatorResult<Located> {
        let summary: BackupSummary = self.get(feature::BACKUPS, &backup_path(backup, "")).await?;
        Ok(Located {
            storage: self.client.base().to_string(),
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
        // Page through the server's listing until an empty page (a server may cap pages
        // below what is asked); a large node comes in several calls.
        let mut offset = 0usize;
        loop {
            let mut query = vec![
                ("offset", offset.to_string()),
                ("limit", types::FILES_PAGE.to_string()),
            ];
            query.extend(node.map(|n| ("node", n.to_string())));
            query.extend(path.map(|p| ("path", p.to_string())));
            let page: Vec<FileEntry> = self
                .get(
                    feature::FILES,
                    &backup_path(
                        backup,
                        &format!("/files?{}", crate::events::query_string(&query)),
                    ),
                )
                .await?;
            if page.is_empty() {
                return Ok(());
            }
            offset += page.len();
            page.into_iter().for_each(&mut *each);
        }
    }

    async fn delete(
        &self,
        backups: &[String],
        deleted: &mut (dyn FnMut(BackupSummary) + Send),
    ) -> CoordinatorResult<Vec<GcReport>> {
        self.need(feature::BACKUPS).await?;
        for name in backups {
            let summary: BackupSummary = self
                .client
                .call(reqwest::Method::DELETE, &backup_path(name, ""), None::<&()>)
                .await?;
            deleted(summary);
        }
        // The server collected the garbage after each delete.
        Ok(Vec::new())
    }

    async fn pin(&self, backup: &str, pinned: bool) -> CoordinatorResult<BackupSummary> {
        self.need(feature::PIN).await?;
        let method = if pinned {
            reqwest::Method::POST
        } else {
            reqwest::Method::DELETE
        };
        let listing: BackupListing = self
            .client
            .call(method, &backup_path(backup, "/pin"), None::<&()>)
            .await?;
        Ok(listing.summary)
    }

    async fn verify(
        &self,
        backup: Option<&str>,
        check: DataCheck,
    ) -> CoordinatorResult<VerifyReport> {
        let body = types::VerifyBody {
            backup: backup.map(str::to_string),
            read_data: check == DataCheck::All,
            read_data_subset: match check {
                DataCheck::Subset(p) => Some(p),
                _ => None,
            },
        };
        self.post(feature::VERIFY, "/api/v1/verify", &body).await
    }

    async fn drill(&self, backup: &str) -> CoordinatorResult<DrillReport> {
        self.post(
            feature::DRILL,
            &backup_path(backup, "/drill"),
            &types::NoOptions {},
        )
        .await
    }

    async fn restore_tables(
        &self,
        backup: &str,
        request: types::TableRestoreBody,
    ) -> CoordinatorResult<strata_coordinator::table_restore::TableRestoreReport> {
        self.post(feature::TABLES, &backup_path(backup, "/tables"), &request)
            .await
    }

    async fn copy(&self, backup: &str, to: &str) -> CoordinatorResult<CopyReport> {
        let body = types::CopyBody { to: to.to_string() };
        self.post(feature::COPY, &backup_path(backup, "/copy"), &body)
            .await
    }

    async fn cleanup(
        &self,
        dry_run: bool,
        policy: Option<RetentionConfig>,
    ) -> CoordinatorResult<CleanupReport> {
        let body = types::CleanupBody { dry_run, policy };
        self.post(feature::CLEANUP, "/api/v1/cleanup", &body).await
    }

    async fn gc(&self, dry_run: bool) -> CoordinatorResult<GcReport> {
        self.post(feature::GC, "/api/v1/gc", &types::GcBody { dry_run })
            .await
    }

    async fn repair_index(&self, dry_run: bool) -> CoordinatorResult<IndexRepairReport> {
        let body = types::RepairBody { dry_run };
        self.post(feature::REPAIR, "/api/v1/repair/index", &body)
            .await
    }

    async fn repair_backups(&self, dry_run: bool) -> CoordinatorResult<BackupsRepairReport> {
        let body = types::RepairBody { dry_run };
        self.post(feature::REPAIR, "/api/v1/repair/backups", &body)
            .await
    }

    async fn audit(&self, since: Option<&str>, limit: u32) -> CoordinatorResult<Vec<AuditEntry>> {
        let mut query = vec![("limit", limit.to_string())];
        query.extend(since.map(|s| ("since", s.to_string())));
        let path = format!("/api/v1/audit?{}", crate::events::query_string(&query));
        self.get(feature::AUDIT, &path).await
    }

    async fn wal_list(&self) -> CoordinatorResult<WalListing> {
        self.get(feature::WAL, "/api/v1/wal").await
    }

    async fn wal_verify(&self) -> CoordinatorResult<WalVerifyReport> {
        self.post(feature::WAL, "/api/v1/wal/verify", &types::NoOptions {})
            .await
    }

    async fn status(&self) -> CoordinatorResult<ClusterStatus> {
        self.get(feature::STATUS, "/api/v1/status").await
    }

    async fn schedules(&self) -> CoordinatorResult<Vec<JobStatus>> {
        self.get(feature::SCHEDULES, "/api/v1/schedules").await
    }

    async fn backup(&self, request: BackupRequest) -> CoordinatorResult<Running<BackupSummary>> {
        if !request.paths.is_empty() {
            return Err(CoordinatorError::Invalid(
                "with --server, the server backs up its configured nodes: give no PATH".into(),
            ));
        }
        let started: Started = self
            .post(feature::BACKUPS, "/api/v1/backups", &types::NoOptions {})
            .await?;
        Ok(self.running(started.operation))
    }

    async fn restore(
        &self,
        backup: &str,
        plan: RestorePlan,
    ) -> CoordinatorResult<Running<RestoreOutcome>> {
        // A server that does not know components would ignore the choice and restore
        // everything (and a dry run for real): refuse before sending.
        if !plan.components.is_empty() || !plan.rename.is_empty() || plan.dry_run {
            self.need(feature::COMPONENTS).await?;
        }
        let body = types::RestoreBody::new(backup.to_string(), plan);
        let started: Started = self
            .post(feature::RESTORES, "/api/v1/restores", &body)
            .await?;
        Ok(self.running(started.operation))
    }
}
