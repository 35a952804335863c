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
use strata_postgres::tablespace::{self, Tablespace};
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

impl Agent {
    pub(super) async fn start_base_backup(
        &self,
        pg: &PostgresAgent,
        operation: &str,
    ) -> ApiResult<BackupSession> {
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
        files.extend(self.external_config(&pg.node.data_dir, session.config_files(), state));
        drop(session);
        self.add_files(state, &pg.node.data_dir, files).await?;
        self.wait_for_wal(&state.repo, &stopped.info, pg.wal_wait)
            .await?;
        Ok(stopped.info.to_map())
    }

    /// The configuration files outside the data directory (Debian keeps them under
    /// `/etc/postgresql`), as manifest entries under [`exclude::EXTERNAL_CONFIG`]: a
    /// restore brings them back there, beside the data, and never over the files a
    /// server on this machine may be using. One that cannot be read is a warning.
    fn external_config(
        &self,
        data_dir: &Path,
        files: &[String],
        state: &mut BackupState,
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
                Err(err) => {
                    let summary = &mut state.scan.summary;
                    summary.warning_count += 1;
                    summary.warnings.push(format!("unreadable: {file}: {err}"));
                    summary.status = strata_repo::summary::BackupStatus::Partial;
                }
            }
        }
        out
    }

    /// Stores small files the backup adds (the label) and lists them in the manifest.
    async fn add_files(
        &self,
        state: &mut BackupState,
        data_dir: &Path,
        files: Vec<(String, Vec<u8>)>,
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
        // Submitting blocks while the pipeline is full: off the async threads.
        let repo = state.repo.clone();
        let (writer, entries, stored) = blocking(move || {
            let mut entries = Vec::new();
            let mut stored = Vec::new();
            let mut dirs = std::collections::BTreeSet::new();
            for (name, content) in files {
                let id = repo.keys().blob_id(&content);
                let size = content.len() as u64;
                if writer.submit(id, bytes::Bytes::from(content))? {
                    stored.push(id);
                }
                // Parent directories the data directory does not have (external config).
                let mut parent = Path::new(&name).parent();
                while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
                    dirs.insert(dir.as_os_str().as_bytes().to_vec());
                    parent = dir.parent();
                }
                entries.push(Entry {
                    path: name.into_bytes(),
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
            entries.extend(dirs.into_iter().map(|path| Entry {
                path,
                kind: EntryKind::Dir,
                mode: 0o700,
                uid: owner.0,
                gid: owner.1,
                mtime_ns: now_ns,
            }));
            Ok::<_, strata_repo::RepoError>((writer, entries, stored))
        })
        .await
        .map_err(|e| failed(error_chain(&e)))?;
        state.stored.extend(stored);
        writer.finish().await.map_err(|e| failed(error_chain(&e)))?;
        let manifest = &mut state.scan.manifest;
        for entry in entries {
            if manifest.entries.iter().any(|e| e.path == entry.path) {
                if matches!(entry.kind, EntryKind::Dir) {
                    continue;
                }
                manifest.entries.retain(|e| e.path != entry.path);
            }
            match entry.kind {
                EntryKind::Dir => state.scan.summary.dirs += 1,
                _ => {
                    state.scan.summary.files += 1;
                    state.scan.summary.bytes += entry.size();
                }
            }
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

    /// Checks before a PostgreSQL restore: no server on the data directory, the WAL that
    /// makes the backup consistent is in the archive, and every tablespace has a place to
    /// go. Then moves the tablespaces of the cluster being replaced back into the data
    /// directory, so the restore keeps what is already correct. Returns the tablespaces
    /// to move out again afterwards.
    pub(super) async fn before_pg_restore(
        &self,
        repo: &Repository,
        request: &RestoreRequest,
    ) -> ApiResult<Vec<Tablespace>> {
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
        let node = &pg.node;
        let check = |ours| {
            tablespace::check_locations(node, &info.tablespaces, &ours)
                .map_err(|e| ApiError::new(ErrorCode::BadRequest, error_chain(&e)))
        };
        // Where the current links point before anything moves, then the move itself.
        check(current_links(&node.data_dir))?;
        tablespace::fold_in(&node.data_dir).map_err(pg_failed)?;
        Ok(info.tablespaces)
    }

    /// After the files are back: each tablespace to its location, linked from the data
    /// directory. Returns a line for the restore's report.
    pub(super) fn place_tablespaces(
        &self,
        tablespaces: &[Tablespace],
    ) -> ApiResult<Option<String>> {
        let pg = self.config.postgres.as_ref().expect("checked before");
        let placed = tablespace::fold_out(&pg.node, tablespaces).map_err(pg_failed)?;
        Ok((!placed.is_empty()).then(|| {
            let list: Vec<String> = placed
                .iter()
                .map(|(name, at)| format!("{name} at {}", at.display()))
                .collect();
            format!("tablespaces: {}", list.join(", "))
        }))
    }

    /// After the files are back: recovery settings, then start and wait.
    pub(super) async fn recover(
        &self,
        plan: &RecoveryPlan,
        manifest: &NodeManifest,
        target: &Path,
        tablespaces: &[Tablespace],
    ) -> ApiResult<Option<String>> {
        let pg = self.config.postgres.as_ref().expect("checked before");
        let links = link_policy(
            &pg.node,
            manifest,
            target,
            &self.config.source.roots,
            tablespaces,
        );
        strata_postgres::recovery::prepare(&pg.node, plan, &pg.wal_fetch_command, &links)
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
