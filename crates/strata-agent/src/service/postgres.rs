//! The postgres plugin's steps inside the agent's backup and restore.
//!
//! Backup: `pg_backup_start` before the snapshot of the data directory, and at `finish`
//! `pg_backup_stop`, the backup label into the manifest, and a wait until the WAL from
//! the backup's start to its end is in the archive: without it the copy cannot be made
//! consistent, so the backup fails rather than being counted as good. Restore: refuse
//! while a server runs on the data directory, check the WAL the backup needs, lay the
//! files down (the generic restore), write the recovery settings, start PostgreSQL and
//! wait until recovery has ended.

use super::*;
use strata_postgres::recovery::RecoveryPlan;
use strata_postgres::session::{BackupSession, Role};
use strata_postgres::{exclude, BaseBackupInfo, PgError, WAL_SPACE};
use strata_repo::manifest::Entry;

fn pg_failed(err: PgError) -> ApiError {
    failed(error_chain(&err))
}

/// The WAL archive's view of one timeline, from the repository.
async fn archive_report(
    repo: &Repository,
    segment_size: u64,
) -> ApiResult<strata_postgres::wal::ArchiveReport> {
    let names = repo
        .list_archived(WAL_SPACE)
        .await
        .map_err(|e| failed(error_chain(&e)))?;
    Ok(strata_postgres::wal::summarize(&names, segment_size))
}

impl Agent {
    pub(super) async fn start_base_backup(
        &self,
        pg: &PostgresAgent,
        operation: &str,
    ) -> ApiResult<BackupSession> {
        let tablespaces = pg.node.data_dir.join("pg_tblspc");
        if std::fs::read_dir(&tablespaces).is_ok_and(|mut d| d.next().is_some()) {
            return Err(failed(format!(
                "node {}: {} has tablespaces outside the data directory, which this strata version does not back up yet",
                self.name(),
                pg.node.data_dir.display()
            )));
        }
        BackupSession::start(
            &pg.node,
            &format!("strata {operation}"),
            pg.spread_checkpoint,
        )
        .await
        .map_err(|e| failed(format!("node {}: {}", self.name(), error_chain(&e))))
    }

    /// Ends the base backup, adds its label to the manifest and waits for its WAL.
    /// Returns what the node summary records.
    pub(super) async fn stop_base_backup(
        &self,
        state: &mut BackupState,
        session: BackupSession,
    ) -> ApiResult<BTreeMap<String, String>> {
        let pg = self.config.postgres.as_ref().expect("postgres backup");
        let stopped = session.stop().await.map_err(pg_failed)?;
        if session.role() == Role::Standby {
            session.switch_primary_wal().await.map_err(pg_failed)?;
        }
        drop(session);
        let mut files = vec![(exclude::LABEL_FILE, stopped.label_file.into_bytes())];
        if !stopped.tablespace_map.is_empty() {
            files.push((exclude::TABLESPACE_MAP, stopped.tablespace_map.into_bytes()));
        }
        self.add_files(state, &pg.node.data_dir, files).await?;
        self.wait_for_wal(&state.repo, &stopped.info, pg.wal_wait)
            .await?;
        Ok(stopped.info.to_map())
    }

    /// Stores small files the backup adds (the label) and lists them in the manifest.
    async fn add_files(
        &self,
        state: &mut BackupState,
        data_dir: &Path,
        files: Vec<(&str, Vec<u8>)>,
    ) -> ApiResult<()> {
        use std::os::unix::fs::MetadataExt;
        let owner = std::fs::metadata(data_dir)
            .map(|m| (m.uid(), m.gid()))
            .unwrap_or((0, 0));
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        let writer = {
            let _runtime = tokio::runtime::Handle::current().enter();
            BlobWriter::start(state.repo.clone(), self.config.writer.clone())
        };
        let mut entries = Vec::new();
        for (name, content) in files {
            let id = state.repo.keys().blob_id(&content);
            let size = content.len() as u64;
            // A fresh pipeline takes two tiny blobs without blocking.
            let stored = writer
                .submit(id, bytes::Bytes::from(content))
                .map_err(|e| failed(error_chain(&e)))?;
            if stored {
                state.stored.insert(id);
            }
            entries.push(Entry {
                path: name.as_bytes().to_vec(),
                kind: EntryKind::File {
                    size,
                    chunks: vec![id],
                },
                mode: 0o600,
                uid: owner.0,
                gid: owner.1,
                mtime_ns: now_ns,
            });
        }
        writer.finish().await.map_err(|e| failed(error_chain(&e)))?;
        let manifest = &mut state.scan.manifest;
        for entry in entries {
            state.scan.summary.files += 1;
            state.scan.summary.bytes += entry.size();
            manifest.entries.retain(|e| e.path != entry.path);
            let at = manifest
                .entries
                .partition_point(|e| e.path.as_slice() < entry.path.as_slice());
            manifest.entries.insert(at, entry);
        }
        Ok(())
    }

    /// Waits until the archive holds every segment from the backup's start to its end.
    async fn wait_for_wal(
        &self,
        repo: &Repository,
        info: &BaseBackupInfo,
        wait: Duration,
    ) -> ApiResult<()> {
        let deadline = Instant::now() + wait;
        loop {
            let report = archive_report(repo, info.segment_size).await?;
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
                    "node {}: WAL segment {missing}, which this backup needs, did not reach the archive within {} s: is archive_command = 'strata wal-push %p' set and working (see the PostgreSQL log)?",
                    self.name(),
                    wait.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Checks before a PostgreSQL restore: no server on the data directory, and the WAL
    /// that makes the backup consistent is in the archive.
    pub(super) async fn before_pg_restore(
        &self,
        repo: &Repository,
        request: &RestoreRequest,
    ) -> ApiResult<()> {
        let Some(pg) = &self.config.postgres else {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!(
                    "node {} has no [nodes.postgres] settings: it cannot recover a PostgreSQL backup",
                    self.name()
                ),
            ));
        };
        if strata_postgres::server::is_running(&pg.node) {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!(
                    "PostgreSQL is running on {} (node {}): stop it before restoring over it",
                    pg.node.data_dir.display(),
                    self.name()
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
        let report = archive_report(repo, info.segment_size).await?;
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
        Ok(())
    }

    /// After the files are back: recovery settings, then start and wait.
    pub(super) async fn recover(&self, plan: &RecoveryPlan) -> ApiResult<Option<String>> {
        let pg = self.config.postgres.as_ref().expect("checked before");
        strata_postgres::recovery::prepare(&pg.node, plan, &pg.wal_fetch_command)
            .map_err(pg_failed)?;
        if !plan.start {
            return Ok(Some("ready for recovery (not started)".into()));
        }
        let log = self
            .config
            .state_dir
            .join(format!("postgres-{}-recovery.log", self.name()));
        if let Some(dir) = log.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let outcome =
            strata_postgres::server::start_and_recover(&pg.node, plan, &log, pg.recovery_timeout)
                .await
                .map_err(|e| failed(format!("node {}: {}", self.name(), error_chain(&e))))?;
        Ok(Some(outcome))
    }
}
