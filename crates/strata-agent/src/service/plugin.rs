//! The node side of a plugin: the steps it adds to this node's backup and restore.
//!
//! The agent's own steps copy files: scan, upload, finish (manifest), restore. A plugin
//! wraps them for the system it backs up. On a backup, [`NodePlugin::start_backup`] runs
//! before the scan (PostgreSQL: `pg_backup_start`) and its [`PluginBackup::finish`] after
//! this node's data is stored and before its manifest is written (PostgreSQL:
//! `pg_backup_stop`, the backup label into the manifest, the WAL wait); what it returns is
//! the node summary's `plugin` record. On a restore, [`NodePlugin::start_restore`] checks
//! before anything is written, and [`PluginRestore::finish`] runs once the files are back
//! (PostgreSQL: recovery settings, start, wait). Steps that must run after *every* node's
//! data is stored are cluster steps (the coordinator's plugin). The agent holds one
//! plugin, chosen from the configuration by the coordinator's plugin registry; `files` is
//! this module's [`Files`], `postgres` is [`super::PostgresAgent`], `etcd` is
//! [`super::EtcdAgent`].

use super::*;
use strata_repo::manifest::Entry;

/// The node-side steps of one plugin. See the module documentation.
#[async_trait::async_trait]
pub trait NodePlugin: Send + Sync + std::fmt::Debug {
    /// The plugin's name in the configuration (`plugin = "..."`).
    fn name(&self) -> &'static str;

    /// A line on the state of what the plugin backs up, for `status` (PostgreSQL: the
    /// server's role, or why it cannot be reached). Bounded in time. It travels in the
    /// node metadata's `postgres` field, the node API's name for it since version 1.
    async fn state(&self) -> Option<String> {
        None
    }

    /// Runs before the scan of a backup. What it returns is kept with the backup on this
    /// node and finished before the manifest is written; dropping it (the backup failed
    /// or was forgotten) must undo what it started.
    async fn start_backup(
        &self,
        _node: &str,
        _operation: &str,
    ) -> ApiResult<Option<Box<dyn PluginBackup>>> {
        Ok(None)
    }

    /// Whether a restore lays the node's files down in its roots. A plugin that writes
    /// its data into a live system instead (etcd: keys through its API) says no, and does
    /// the writing in [`PluginRestore::finish`].
    fn lays_down_files(&self) -> bool {
        true
    }

    /// Runs before a restore writes anything: refuse here what cannot be restored. What
    /// it returns is finished once the files are back without errors. The default takes
    /// plain files only, and refuses a request that asks for a database's recovery.
    async fn start_restore(
        &self,
        restore: &RestoreStart<'_>,
    ) -> ApiResult<Option<Box<dyn PluginRestore>>> {
        no_recovery(restore, "has no [nodes.postgres] settings")?;
        Ok(None)
    }
}

/// Refuses a restore request that asks for a database's recovery on a node that has none
/// (`why`: what the node is instead).
pub fn no_recovery(restore: &RestoreStart<'_>, why: &str) -> ApiResult<()> {
    match restore.request.recovery {
        Some(_) => Err(ApiError::new(
            ErrorCode::BadRequest,
            format!(
                "node {} {why}: it cannot recover a PostgreSQL backup",
                restore.node
            ),
        )),
        None => Ok(()),
    }
}

/// A plugin's part of one backup on this node, between the scan and the manifest.
#[async_trait::async_trait]
pub trait PluginBackup: Send {
    /// After this node's data is stored (every chunk indexed) and before its manifest is
    /// written: may add small files to the manifest ([`BackupStep::add_files`]). Returns
    /// what the node summary records (keys prefixed with the plugin's name).
    async fn finish(
        self: Box<Self>,
        step: &mut BackupStep<'_>,
    ) -> ApiResult<BTreeMap<String, String>>;
}

/// A plugin's part of one restore on this node, after the files are back.
#[async_trait::async_trait]
pub trait PluginRestore: Send {
    /// Only entries at or below this path of the node's backup are laid down, instead of
    /// the request's `include` (ClickHouse: one table's parts). `None`: as asked.
    fn include(&self) -> Option<String> {
        None
    }

    /// Paths of the node's backup not to lay down (a ClickHouse replica's replicated
    /// tables, attached by another replica of its shard).
    fn exclude(&self) -> Vec<String> {
        Vec::new()
    }

    /// Runs once the files are back without errors; returns a line for the restore's
    /// report.
    async fn finish(self: Box<Self>, restored: &Restored<'_>) -> ApiResult<Option<String>>;
}

/// The plugin of a plain files node: the agent's own steps, nothing added.
#[derive(Debug, Clone, Copy, Default)]
pub struct Files;

#[async_trait::async_trait]
impl NodePlugin for Files {
    fn name(&self) -> &'static str {
        "files"
    }
}

/// The `files` plugin, as an agent's default.
pub fn files() -> Arc<dyn NodePlugin> {
    Arc::new(Files)
}

/// What a plugin's backup step sees: the repository and this node's backup so far.
pub struct BackupStep<'a> {
    pub(super) agent: &'a Agent,
    pub(super) state: &'a mut BackupState,
}

impl BackupStep<'_> {
    /// The node's name.
    pub fn node(&self) -> &str {
        self.agent.name()
    }

    /// The repository the backup writes to.
    pub fn repo(&self) -> &Arc<Repository> {
        &self.state.repo
    }

    /// Records a problem the backup lives with: a warning, and the node's backup is
    /// partial.
    pub fn warn_partial(&mut self, warning: String) {
        let summary = &mut self.state.scan.summary;
        summary.warning_count += 1;
        summary.warnings.push(warning);
        summary.status = strata_repo::summary::BackupStatus::Partial;
    }

    /// Stores small files the plugin adds (a backup label) and lists them in the
    /// manifest at `name` (relative to the node's root), owned like `owner_of`; missing
    /// parent directories are added. An entry already at a name is replaced.
    pub async fn add_files(
        &mut self,
        owner_of: &Path,
        files: Vec<(String, Vec<u8>)>,
    ) -> ApiResult<()> {
        self.agent.add_files(self.state, owner_of, files).await
    }
}

/// What a plugin's restore check sees.
pub struct RestoreStart<'a> {
    /// The node's name.
    pub node: &'a str,
    /// The repository the backup is read from.
    pub repo: &'a Repository,
    /// The coordinator's request as received.
    pub request: &'a RestoreRequest,
}

/// What a plugin's step after a restore sees.
pub struct Restored<'a> {
    /// The node's name.
    pub node: &'a str,
    /// The request the restore answers.
    pub request: &'a RestoreRequest,
    /// The node manifest that was laid down.
    pub manifest: &'a NodeManifest,
    /// Where it was laid down.
    pub target: &'a Path,
    /// The node's configured roots.
    pub roots: &'a [String],
    /// The agent's state directory (logs).
    pub state_dir: &'a Path,
    /// The repository the backup is in.
    pub repo: &'a Repository,
}

impl Agent {
    /// Stores small files a plugin adds and lists them in the manifest (see
    /// [`BackupStep::add_files`]).
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
        let (writer, entries) = blocking(move || {
            let mut entries = Vec::new();
            let mut dirs = std::collections::BTreeSet::new();
            for (name, content) in files {
                let id = repo.keys().blob_id(&content);
                let size = content.len() as u64;
                writer.submit(id, bytes::Bytes::from(content))?;
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
                    xattrs: Vec::new(),
                });
            }
            entries.extend(dirs.into_iter().map(|path| Entry {
                path,
                kind: EntryKind::Dir,
                mode: 0o700,
                uid: owner.0,
                gid: owner.1,
                mtime_ns: now_ns,
                xattrs: Vec::new(),
            }));
            Ok::<_, strata_repo::RepoError>((writer, entries))
        })
        .await
        .map_err(|e| failed(error_chain(&e)))?;
        let stats = writer.finish().await.map_err(|e| failed(error_chain(&e)))?;
        state.new_data.add(&stats);
        // Merged into the walk's entries as the manifest is written: one at the same
        // path is replaced (a directory keeps the walk's metadata).
        for entry in entries {
            match entry.kind {
                EntryKind::Dir => state.scan.summary.dirs += 1,
                _ => {
                    state.scan.summary.files += 1;
                    state.scan.summary.bytes += entry.size();
                }
            }
            state.scan.manifest.add(entry);
        }
        Ok(())
    }
}
