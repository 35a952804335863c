//! The postgres plugin's steps inside the agent's backup and restore.
//!
//! Backup: `pg_backup_start` before the snapshot of the data directory, and at `finish`
//! `pg_backup_stop`, the backup label into the manifest, and a wait until the WAL from
//! the backup's start to its end is in the archive: without it the copy cannot be made
//! consistent, so the backup fails rather than being counted as good. Restore: refuse
//! while a server runs on the data directory, check the WAL the backup needs, lay the
//! files down (the generic restore), write the recovery settings, start PostgreSQL and
//! wait until recovery has ended. These are the [`NodePlugin`] steps of [`PostgresAgent`].

use super::plugin::{BackupStep, PluginBackup, PluginRestore, RestoreStart, Restored};
use super::*;
use strata_postgres::recovery::{RecoveryPlan, Target};
use strata_postgres::session::{BackupSession, Role};
use strata_postgres::tablespace::{self, Tablespace};
use strata_postgres::{exclude, BaseBackupInfo, PgError, WAL_SPACE};

fn pg_failed(err: PgError) -> ApiError {
    failed(error_chain(&err))
}

/// The WAL archive from a base backup's first segment on, from the repository.
async fn archive_report(
    repo: &Repository,
    info: &BaseBackupInfo,
) -> ApiResult<strata_postgres::wal::ArchiveReport> {
    // The names from the backup's first segment on (those sort after the segment before
    // it, or after its timeline's bare number): years of older WAL are not listed.
    let after = strata_postgres::walname::segment_before(&info.start_wal, info.segment_size)
        .unwrap_or_else(|| info.start_wal.chars().take(8).collect());
    let names = repo
        .list_archived_after(WAL_SPACE, &after)
        .await
        .map_err(|e| failed(error_chain(&e)))?;
    Ok(strata_postgres::wal::summarize(&names, info.segment_size))
}

/// The directories the data directory's tablespace links point at now.
fn current_links(data_dir: &Path) -> std::collections::BTreeSet<PathBuf> {
    let dir = data_dir.join("pg_tblspc");
    std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|t| if t.is_absolute() { t } else { dir.join(t) })
        .collect()
}

/// The postgres plugin on a node: its settings ([`PostgresAgent`]) are its steps.
#[async_trait::async_trait]
impl NodePlugin for PostgresAgent {
    fn name(&self) -> &'static str {
        "postgres"
    }

    /// The server's role, or why it cannot be reached.
    async fn state(&self) -> Option<String> {
        // Bounded: a status call must not hang on a server that does not answer.
        Some(
            match tokio::time::timeout(
                Duration::from_secs(3),
                strata_postgres::session::probe_role(&self.node),
            )
            .await
            {
                Ok(Ok(role)) => role.as_str().to_string(),
                Ok(Err(err)) => format!("unreachable: {}", error_chain(&err)),
                Err(_) => "unreachable: no answer within 3 s".to_string(),
            },
        )
    }

    /// `pg_backup_start`.
    async fn start_backup(
        &self,
        node: &str,
        operation: &str,
    ) -> ApiResult<Option<Box<dyn PluginBackup>>> {
        let session = BackupSession::start(
            &self.node,
            &format!("strata {operation}"),
            self.spread_checkpoint,
        )
        .await
        .map_err(|e| failed(format!("node {node}: {}", error_chain(&e))))?;
        Ok(Some(Box::new(BaseBackup {
            settings: self.clone(),
            session,
        })))
    }

    /// Checks before a PostgreSQL restore: no server on the data directory, the WAL that
    /// makes the backup consistent is in the archive, and every tablespace has a place to
    /// go. Then moves the tablespaces of the cluster being replaced back into the data
    /// directory, so the restore keeps what is already correct. A restore without
    /// recovery settings (not of a PostgreSQL backup) is a plain files restore.
    async fn start_restore(
        &self,
        restore: &RestoreStart<'_>,
    ) -> ApiResult<Option<Box<dyn PluginRestore>>> {
        let (repo, request) = (restore.repo, restore.request);
        let Some(plan) = &request.recovery else {
            return Ok(None);
        };
        let pg = self;
        if let (Some(url), true) = (&pg.patroni, strata_postgres::server::is_running(&pg.node)) {
            // A replica restored and promoted is demoted again by Patroni once resumed,
            // while the leader goes on serving what it held: only the leader is restored.
            if let Ok(strata_postgres::session::Role::Standby) =
                strata_postgres::session::probe_role(&pg.node).await
            {
                let leader = match patroni_leader(url).await {
                    Some(name) => format!("Patroni's leader is member {name}"),
                    None => "see patronictl list for the leader".to_string(),
                };
                return Err(ApiError::new(
                    ErrorCode::BadRequest,
                    format!(
                        "node {}: its PostgreSQL is a replica of the Patroni cluster (in recovery), and a Patroni cluster is restored in place onto its leader ({leader}): pass --node with the leader's node, or make this member the leader first (patronictl switchover --candidate MEMBER); nothing was written",
                        restore.node
                    ),
                ));
            }
            // Patroni restarts a server that stops unless it is paused: the coordinator
            // paused it, and the member says so before the server is stopped.
            patroni_paused(url).await.map_err(|why| {
                ApiError::new(
                    ErrorCode::BadRequest,
                    format!("node {}: {why}", restore.node),
                )
            })?;
            let node = pg.node.clone();
            tokio::task::spawn_blocking(move || {
                strata_postgres::server::stop(&node, Duration::from_secs(300))
            })
            .await
            .map_err(|e| failed(e.to_string()))?
            .map_err(pg_failed)?;
            eprintln!(
                "strata: node {}: Patroni is paused; PostgreSQL on {} stopped for the restore",
                restore.node,
                pg.node.data_dir.display()
            );
        }
        let member_files = match pg.patroni {
            Some(_) => strata_postgres::patroni::read_member_files(&pg.node.data_dir)
                .map_err(|e| ApiError::new(ErrorCode::BadRequest, error_chain(&e)))?,
            None => Vec::new(),
        };
        // The same check as `restore --to`'s (the data directory's lock), and pg_ctl's.
        let held = strata_postgres::server::held(&pg.node.data_dir);
        if held.is_some() || strata_postgres::server::is_running(&pg.node) {
            let why = held.map(|why| format!(" ({why})")).unwrap_or_default();
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!(
                    "PostgreSQL is running on {} (node {}){why}: stop it before restoring over it",
                    pg.node.data_dir.display(),
                    restore.node
                ),
            ));
        }
        let summary = repo
            .load_summary(&request.backup)
            .await
            .map_err(|e| failed(error_chain(&e)))?;
        let info = summary
            .nodes
            .iter()
            .find(|n| n.name == request.source)
            .and_then(|n| BaseBackupInfo::from_map(&n.plugin))
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::BadRequest,
                    format!("backup {} is not a PostgreSQL base backup", request.backup),
                )
            })?;
        let report = archive_report(repo, &info).await?;
        if let Some(missing) = report.first_missing(
            info.timeline,
            &info.start_wal,
            &info.stop_wal,
            info.segment_size,
        ) {
            return Err(failed(format!(
                "WAL segment {missing}, needed to make backup {} consistent, is not in the archive: this backup cannot be restored (run `strata wal list`)",
                request.backup
            )));
        }
        let end = match plan.target.is_end() && pg.node.primary_conninfo.is_none() {
            true => archive_end(repo, &report, &info).await?,
            false => None,
        };
        if let (Some(gap), Target::Latest) =
            (end.as_ref().and_then(|e| e.gap.as_ref()), &plan.target)
        {
            let end = end.as_ref().expect("a gap has an end");
            return Err(failed(format!(
                "node {}: a restore of backup {} to the end of the archive would stop at a gap: {gap}, up to {} on timeline {}. Nothing was written. Restore with --target-gap to recover up to the gap and promote there (the WAL past it stays unused), or bring the missing segment back into the archive (`strata wal list` shows the gaps)",
                restore.node, request.backup, end.last, end.timeline
            )));
        }
        let node = &pg.node;
        let check = |ours| {
            tablespace::check_locations(node, &info.tablespaces, &ours)
                .map_err(|e| ApiError::new(ErrorCode::BadRequest, error_chain(&e)))
        };
        // Where the current links point before anything moves, then the move itself.
        check(current_links(&node.data_dir))?;
        tablespace::fold_in(&node.data_dir).map_err(pg_failed)?;
        Ok(Some(Box::new(Recovery {
            settings: self.clone(),
            plan: plan.clone(),
            prefetch_after: strata_postgres::walname::segment_before(
                &info.start_wal,
                info.segment_size,
            ),
            tablespaces: info.tablespaces,
            member_files,
            end,
            segment_size: info.segment_size,
        })))
    }
}

/// Where a restore to the end of the archive stops (see
/// [`strata_postgres::wal::ArchiveReport::end_of_recovery`]): along the history of the
/// newest timeline, read from its history file in the archive.
async fn archive_end(
    repo: &Repository,
    report: &strata_postgres::wal::ArchiveReport,
    info: &BaseBackupInfo,
) -> ApiResult<Option<strata_postgres::wal::ArchiveEnd>> {
    let target = report.newest_timeline(info.timeline);
    let mut history = Vec::new();
    if target != info.timeline {
        let name = format!("{target:08X}.history");
        let read = async {
            match repo.load_archived(WAL_SPACE, &name).await? {
                Some(record) => repo.read_archived(&record).await.map(Some),
                None => Ok(None),
            }
        };
        let Some(bytes) = read.await.map_err(|e| failed(error_chain(&e)))? else {
            return Ok(None);
        };
        history = strata_postgres::wal::parse_history(&String::from_utf8_lossy(&bytes));
    }
    Ok(report.end_of_recovery(&info.start_wal, target, &history, info.segment_size))
}

/// Whether the Patroni member at `url` (its REST API) runs paused: `GET /patroni` says
/// `"pause": true`.
async fn patroni_paused(url: &str) -> Result<(), NotPaused> {
    let url = format!("{}/patroni", url.trim_end_matches('/'));
    let answer = strata_hooks::http_call(
        reqwest::Method::GET,
        &url,
        Vec::new(),
        Duration::from_secs(10),
        1 << 20,
    )
    .await
    .map_err(NotPaused::Silent)?;
    let said: serde_json::Value = serde_json::from_str(&answer.body).unwrap_or_default();
    match said.get("pause").and_then(|p| p.as_bool()) {
        Some(true) => Ok(()),
        _ => Err(NotPaused::Running {
            url: strata_util::mask_url(&url),
        }),
    }
}

/// The name of the Patroni cluster's leader, as `GET /cluster` of `url` lists it.
async fn patroni_leader(url: &str) -> Option<String> {
    let url = format!("{}/cluster", url.trim_end_matches('/'));
    let answer = strata_hooks::http_call(
        reqwest::Method::GET,
        &url,
        Vec::new(),
        Duration::from_secs(10),
        4 << 20,
    )
    .await
    .ok()?;
    let cluster: serde_json::Value = serde_json::from_str(&answer.body).ok()?;
    cluster
        .get("members")?
        .as_array()?
        .iter()
        .find(|m| m.get("role").and_then(|r| r.as_str()) == Some("leader"))?
        .get("name")?
        .as_str()
        .map(str::to_string)
}

/// Why a Patroni member's server may not be stopped for a restore.
#[derive(Debug, thiserror::Error)]
enum NotPaused {
    /// The member's REST API did not answer.
    #[error("Patroni does not answer: {0}")]
    Silent(strata_hooks::HookError),
    /// The member answered, and it is not paused.
    #[error("PostgreSQL is running and Patroni ({url}) is not paused: strata stops a member's server only while Patroni is paused (a restore in place pauses it first)")]
    Running {
        /// The member's URL cut to its host.
        url: String,
    },
}

/// A running base backup; dropping it ends the session, which makes PostgreSQL abort
/// the backup.
struct BaseBackup {
    settings: PostgresAgent,
    session: BackupSession,
}

#[async_trait::async_trait]
impl PluginBackup for BaseBackup {
    /// Ends the base backup, adds its label to the manifest and waits for its WAL.
    /// Returns what the node summary records.
    async fn finish(
        self: Box<Self>,
        step: &mut BackupStep<'_>,
    ) -> ApiResult<BTreeMap<String, String>> {
        let BaseBackup {
            settings: pg,
            session,
        } = *self;
        let stopped = session.stop().await.map_err(pg_failed)?;
        if session.role() == Role::Standby {
            session.switch_primary_wal().await.map_err(pg_failed)?;
        }
        let mut files = vec![(
            exclude::LABEL_FILE.to_string(),
            stopped.label_file.into_bytes(),
        )];
        if !stopped.tablespace_map.is_empty() {
            files.push((
                exclude::TABLESPACE_MAP.to_string(),
                stopped.tablespace_map.into_bytes(),
            ));
        }
        files.extend(external_config(
            &pg.node.data_dir,
            session.config_files(),
            step,
        ));
        drop(session);
        step.add_files(&pg.node.data_dir, files).await?;
        wait_for_wal(step.node(), step.repo(), &stopped.info, pg.wal_wait).await?;
        Ok(stopped.info.to_map())
    }
}

/// The configuration files outside the data directory (Debian keeps them under
/// `/etc/postgresql`), as manifest entries under [`exclude::EXTERNAL_CONFIG`]: a
/// restore brings them back there, beside the data, and never over the files a
/// server on this machine may be using. One that cannot be read is a warning.
fn external_config(
    data_dir: &Path,
    files: &[String],
    step: &mut BackupStep<'_>,
) -> Vec<(String, Vec<u8>)> {
    let inside = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let mut out = Vec::new();
    for file in files {
        let path = Path::new(file);
        let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if real.starts_with(&inside) || !path.is_absolute() {
            continue;
        }
        match std::fs::read(path) {
            Ok(content) => out.push((format!("{}{}", exclude::EXTERNAL_CONFIG, file), content)),
            Err(err) => step.warn_partial(format!("unreadable: {file}: {err}")),
        }
    }
    out
}

/// Waits until the archive holds every segment from the backup's start to its end.
async fn wait_for_wal(
    node: &str,
    repo: &Repository,
    info: &BaseBackupInfo,
    wait: Duration,
) -> ApiResult<()> {
    let deadline = Instant::now() + wait;
    loop {
        let report = archive_report(repo, info).await?;
        let missing = report.first_missing(
            info.timeline,
            &info.start_wal,
            &info.stop_wal,
            info.segment_size,
        );
        let Some(missing) = missing else {
            return Ok(());
        };
        if Instant::now() > deadline {
            return Err(failed(format!(
                "node {node}: WAL segment {missing}, which this backup needs, did not reach the archive within {} s: is archive_command = 'strata wal-push %p' set and working (see the PostgreSQL log)?",
                wait.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A restore's recovery, once its files are back.
struct Recovery {
    settings: PostgresAgent,
    plan: RecoveryPlan,
    /// The segment before the backup's first: recovery's first ask is the one after it.
    prefetch_after: Option<String>,
    /// The tablespaces to move out of the data directory again.
    tablespaces: Vec<Tablespace>,
    /// A Patroni member's own configuration files, put back over the backup's.
    member_files: Vec<(String, Vec<u8>)>,
    /// For a restore to the end of the archive: where it must stop.
    end: Option<strata_postgres::wal::ArchiveEnd>,
    /// The backup's `wal_segment_size`.
    segment_size: u64,
}

#[async_trait::async_trait]
impl PluginRestore for Recovery {
    /// Each tablespace to its location, then recovery settings, start and wait.
    async fn finish(self: Box<Self>, restored: &Restored<'_>) -> ApiResult<Option<String>> {
        let placed = self.place_tablespaces()?;
        let outcome = self.recover(restored).await?;
        Ok(match (placed, outcome) {
            (Some(p), Some(o)) => Some(format!("{o}; {p}")),
            (p, o) => o.or(p),
        })
    }
}

impl Recovery {
    /// Each tablespace to its location, linked from the data directory. Returns a line
    /// for the restore's report.
    fn place_tablespaces(&self) -> ApiResult<Option<String>> {
        let placed =
            tablespace::fold_out(&self.settings.node, &self.tablespaces).map_err(pg_failed)?;
        Ok((!placed.is_empty()).then(|| {
            let list: Vec<String> = placed
                .iter()
                .map(|(name, at)| format!("{name} at {}", at.display()))
                .collect();
            format!("tablespaces: {}", list.join(", "))
        }))
    }

    /// Recovery settings, then start and wait.
    async fn recover(&self, restored: &Restored<'_>) -> ApiResult<Option<String>> {
        let (pg, plan) = (&self.settings, &self.plan);
        let links = link_policy(
            &pg.node,
            restored.manifest,
            restored.target,
            restored.roots,
            &self.tablespaces,
        );
        strata_postgres::patroni::put_member_files(&pg.node.data_dir, &self.member_files)
            .map_err(pg_failed)?;
        strata_postgres::recovery::prepare(&pg.node, plan, &pg.wal_fetch_command, &links)
            .map_err(pg_failed)?;
        // Before the server starts, so its first asks find their segments spooled.
        if let (true, Some(after)) = (pg.wal_prefetch, &self.prefetch_after) {
            let log = restored.state_dir.join("wal-prefetch.log");
            if let Err(err) = strata_postgres::prefetcher::start(
                &pg.wal_fetch_command,
                after,
                &pg.node.data_dir,
                &log,
            ) {
                eprintln!(
                    "strata: node {}: the WAL prefetcher did not start ({err}); recovery fetches by itself",
                    restored.node
                );
            }
        }
        if !plan.start {
            return Ok(Some("PostgreSQL ready for recovery (not started)".into()));
        }
        let log = restored
            .state_dir
            .join(format!("postgres-{}-recovery.log", restored.node));
        if let Some(dir) = log.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let outcome =
            strata_postgres::server::start_and_recover(&pg.node, plan, &log, pg.recovery_timeout)
                .await
                .map_err(|e| failed(format!("node {}: {}", restored.node, error_chain(&e))))?;
        let promoted = matches!(
            strata_postgres::session::probe_role(&pg.node).await,
            Ok(strata_postgres::session::Role::Primary)
        );
        if pg.patroni.is_some() && promoted {
            // Patroni writes a member's recovery settings itself when it demotes it.
            strata_postgres::recovery::remove_settings(&pg.node.data_dir).map_err(pg_failed)?;
        }
        if !promoted {
            return Ok(Some(format!("PostgreSQL {outcome}")));
        }
        let reached = self.check_end(restored.node)?;
        let outcome = match reached {
            Some(line) => format!("{outcome} {line}"),
            None => outcome,
        };
        // The restore itself succeeded: an archive that lags is a loud warning, not a
        // failure of what is already back.
        // Bounded: a restore onto a host whose archive_command fails must not hang on it.
        let wait = pg.wal_wait.min(Duration::from_secs(60));
        let archived = match strata_postgres::server::switch_and_archive(&pg.node, wait).await {
            Ok(line) => line,
            Err(err) => {
                let line = format!("WARNING: {}", error_chain(&err));
                eprintln!("strata: node {}: {line}", restored.node);
                line
            }
        };
        Ok(Some(format!("PostgreSQL {outcome}; {archived}")))
    }
}

impl Recovery {
    /// After a restore to the end of the archive was promoted: where recovery stopped
    /// (the switch point the new timeline's history file records) against the newest
    /// archived segment of the timeline it followed, or the gap the user asked to stop
    /// at. Short of it, the restore failed (the server is stopped: it would serve, and
    /// archive, a history that leaves archived WAL out). `Ok` carries what the report
    /// says about where it stopped.
    fn check_end(&self, node: &str) -> ApiResult<Option<String>> {
        let Some(end) = &self.end else {
            return Ok(None);
        };
        let pg = &self.settings;
        let Some((timeline, at)) = strata_postgres::recovery::recovery_end(&pg.node.data_dir)
        else {
            return Ok(None);
        };
        let seg = self.segment_size;
        let stopped = strata_postgres::walname::Lsn(at.0.saturating_sub(1)).segment(seg);
        let (wanted, words) = match (&end.gap, &self.plan.target) {
            (Some(gap), Target::Gap) => (&gap.before, format!("at the gap, as asked: {gap}")),
            _ => (
                &end.last,
                format!(
                    "at the end of the archive ({} on timeline {})",
                    end.last, end.timeline
                ),
            ),
        };
        let Some(kind) = strata_postgres::walname::WalFileKind::parse(wanted) else {
            return Ok(None);
        };
        let reached =
            kind.segno(seg).is_some_and(|wanted| stopped >= wanted) && timeline >= kind.timeline();
        if reached {
            return Ok(Some(format!("at {at} on timeline {timeline}, {words}")));
        }
        let node_dir = pg.node.data_dir.clone();
        let _ = strata_postgres::server::stop(&pg.node, Duration::from_secs(120));
        Err(failed(format!(
            "node {node}: recovery stopped at {at} on timeline {timeline}, short of the archive's end ({}, timeline {}){}: the server on {} was promoted there and is stopped again; do not start it as the restored cluster (`strata wal list` shows the archive)",
            end.last,
            end.timeline,
            end.gap.as_ref().map(|g| format!("; {g}")).unwrap_or_default(),
            node_dir.display()
        )))
    }
}

/// What recovery preparation may follow: the `pg_wal` link the backup recorded (under the
/// data directory's path in the manifest), into the node's data directory, configured
/// roots or tablespace locations.
fn link_policy(
    node: &strata_postgres::NodeSettings,
    manifest: &NodeManifest,
    target: &Path,
    roots: &[String],
    tablespaces: &[Tablespace],
) -> strata_postgres::recovery::LinkPolicy {
    let recorded_wal_link = node.data_dir.strip_prefix(target).ok().and_then(|inside| {
        let mut rel = inside.as_os_str().as_bytes().to_vec();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(b"pg_wal");
        manifest
            .entries
            .iter()
            .find(|e| e.path == rel)
            .and_then(|e| match &e.kind {
                EntryKind::Symlink { target } => Some(std::path::PathBuf::from(
                    std::ffi::OsStr::from_bytes(target),
                )),
                _ => None,
            })
    });
    let mut allowed = vec![node.data_dir.clone()];
    allowed.extend(
        roots
            .iter()
            .filter(|r| !r.contains(['*', '?', '[']))
            .map(std::path::PathBuf::from),
    );
    allowed.extend(node.tablespaces.values().cloned());
    allowed.extend(node.wal_dir.clone());
    allowed.extend(
        tablespaces
            .iter()
            .map(|ts| strata_postgres::tablespace::location_for(node, ts)),
    );
    strata_postgres::recovery::LinkPolicy {
        recorded_wal_link,
        roots: allowed,
    }
}
