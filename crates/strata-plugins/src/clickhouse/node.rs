//! The node side of the ClickHouse plugin: what one server's backup and restore are.
//!
//! **Backup.** The server's schema is read, every MergeTree table is frozen with
//! `ALTER TABLE ... FREEZE WITH NAME 'strata'` (hard links of its active parts under
//! `<path>/shadow/strata`, the node's root), and the agent backs that tree up like any
//! other. The [`Record`] (schema, macros, parts and rows) is added to the manifest. The
//! staging directory is removed when the node's backup ends, however it ends.
//!
//! **Restore.** The parts are laid down in the staging directory; then databases and
//! tables are created from the record (tables that hold data, then materialized views,
//! then views and Distributed tables), and each part is moved into its table's
//! `detached/` and attached. A replicated table's parts are attached on one node of each
//! shard only, the first of the restore's nodes from that shard: attaching is not
//! deduplicated by ClickHouse, and the other replicas fetch the parts through
//! replication. A table that exists and holds rows is refused before anything is
//! created: parts attached beside rows would double them.

use super::client::{ident, literal, ClickHouseError, Client};
use super::converge::{self, Held};
use super::covering;
use super::record::{Record, Table, RECORD_FILE, RECORD_LIMIT, RECORD_VERSION};
use super::rename;
use super::replicas::{self, TablePlan};
use super::schema::{self, Server};
use super::staging::{self, Staging, FREEZE_NAME};
use super::stale;
use super::views;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use strata_agent::service::plugin::{
    no_recovery, BackupStep, PluginBackup, PluginRestore, RestoreStart, Restored,
};
use strata_agent::service::{ApiResult, NodePlugin};
use strata_cluster::config::ClickHouseNode;
use strata_cluster::node_api::{ApiError, ErrorCode};

/// The ClickHouse plugin on one node.
#[derive(Debug, Clone)]
pub struct ClickHouseAgent {
    /// How to reach the server and where its data is.
    pub settings: ClickHouseNode,
}

fn failed(what: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::Failed, format!("ClickHouse: {what}: {why}"))
}

/// Runs file-system work on a blocking thread: `step` names it when the thread fails,
/// `what` when the work does.
async fn on_disk<T, E>(
    step: &str,
    what: &str,
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> ApiResult<T>
where
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| failed(step, e))?
        .map_err(|why| failed(what, why))
}

fn query_failed(what: &str) -> impl Fn(ClickHouseError) -> ApiError + '_ {
    move |e| failed(what, strata_util::error_chain(&e))
}

impl ClickHouseAgent {
    fn client(&self) -> ApiResult<Client> {
        Client::new(&self.settings).map_err(|e| ApiError::new(ErrorCode::BadRequest, e.to_string()))
    }

    async fn take_staging(&self) -> ApiResult<Staging> {
        let path = self.settings.path.clone();
        tokio::task::spawn_blocking(move || Staging::take(&path))
            .await
            .map_err(|e| failed("staging directory", e))?
            .map_err(|why| {
                let code = match why {
                    staging::StagingError::Locked(_) => ErrorCode::Busy,
                    _ => ErrorCode::Failed,
                };
                ApiError::new(code, format!("ClickHouse: {why}"))
            })
    }
}

#[async_trait::async_trait]
impl NodePlugin for ClickHouseAgent {
    fn name(&self) -> &'static str {
        "clickhouse"
    }

    async fn state(&self) -> Option<String> {
        let client = match self.client() {
            Ok(client) => client,
            Err(e) => return Some(e.message),
        };
        let answer = tokio::time::timeout(Duration::from_secs(5), Server::read(&client)).await;
        Some(match answer {
            Ok(Ok(server)) => server.line(),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("ClickHouse at {} did not answer within 5s", client.url()),
        })
    }

    async fn start_backup(
        &self,
        _node: &str,
        _operation: &str,
    ) -> ApiResult<Option<Box<dyn PluginBackup>>> {
        let client = self.client()?;
        let staging = self.take_staging().await?;
        let server = Server::read(&client)
            .await
            .map_err(query_failed("read the server"))?;
        let (databases, mut tables) =
            schema::read(&client, &self.settings.databases, &self.settings.path)
                .await
                .map_err(query_failed("read the schema"))?;
        let mut warnings = Vec::new();
        // Rows a Distributed table acknowledged and queued: sent (where the server can)
        // before the freezes, else named.
        for table in tables.iter().filter(|t| t.engine == "Distributed") {
            if let Some(warning) =
                super::distributed::unsent(&client, &self.settings.path, table).await
            {
                warnings.push(warning);
            }
        }
        for table in &mut tables {
            let Some(data) = table.data.clone() else {
                if schema::data_not_frozen(&table.engine) {
                    warnings.push(format!(
                        "ClickHouse table {} ({}) cannot be frozen: only its definition is backed up",
                        table.shown(),
                        table.engine
                    ));
                }
                continue;
            };
            let frozen = client
                .execute(&format!(
                    "ALTER TABLE {} FREEZE WITH NAME {}",
                    table.sql_name(),
                    literal(FREEZE_NAME)
                ))
                .await;
            match frozen {
                Ok(_) => {}
                // Dropped (60) since the schema was read: nothing to back up.
                Err(e) if e.code() == Some(60) => {
                    warnings.push(format!(
                        "ClickHouse table {} was dropped while the backup ran: not backed up",
                        table.shown()
                    ));
                    table.data = None;
                    continue;
                }
                Err(e) => return Err(query_failed(&format!("freeze {}", table.shown()))(e)),
            }
            let root = staging.root().to_path_buf();
            let listed = tokio::task::spawn_blocking(move || {
                staging::within(&root, &data).and_then(|dir| staging::parts(&dir))
            })
            .await
            .map_err(|e| failed("list the frozen parts", e))?
            .map_err(|why| failed(&format!("list the frozen parts of {}", table.shown()), why))?;
            let (parts, uncounted) = listed;
            table.parts = parts;
            if !uncounted.is_empty() {
                count_rows(&client, table, &uncounted).await?;
            }
        }
        let record = Record {
            version: RECORD_VERSION,
            server_version: server.version,
            macros: server.macros,
            databases,
            tables,
        };
        Ok(Some(Box::new(FrozenBackup {
            staging,
            record,
            warnings,
            server_path: self.settings.path.clone(),
        })))
    }

    async fn start_restore(
        &self,
        restore: &RestoreStart<'_>,
    ) -> ApiResult<Option<Box<dyn PluginRestore>>> {
        no_recovery(restore, "is a ClickHouse server")?;
        let client = self.client()?;
        let server = Server::read(&client)
            .await
            .map_err(query_failed("read the server"))?;
        let record = read_record(
            restore.repo,
            &restore.request.backup,
            &restore.request.source,
        )
        .await?;
        let only = restore
            .request
            .table
            .as_deref()
            .map(|wanted| TableChoice::of(&record, wanted, restore.request.table_as.as_deref()))
            .transpose()?
            .map(|choice| TableChoice {
                partitions: restore.request.partitions.iter().cloned().collect(),
                ..choice
            });
        let summary = restore
            .repo
            .load_summary(&restore.request.backup)
            .await
            .map_err(|e| failed("read the backup's summary", strata_util::error_chain(&e)))?;
        let holdings = replicas::holdings(&summary);
        if let Some(choice) = only.as_ref().filter(|c| c.table.is_none()) {
            refuse_unknown_table(restore, &holdings, &choice.wanted).await?;
        }
        // The replicated tables this restore brings back, and the records of the other
        // backup nodes that hold them: a shard comes back from all its replicas' parts.
        let planned = match &only {
            Some(choice) => Record {
                tables: choice.table.iter().cloned().collect(),
                ..record.clone()
            },
            None => record.clone(),
        };
        let paths: BTreeSet<String> = planned
            .tables
            .iter()
            .filter_map(|t| t.zookeeper_path.clone())
            .collect();
        let restoring = replicas::Restoring {
            source: &restore.request.source,
            peers: &restore.request.peers,
        };
        // The paths this node attaches: of the other nodes' manifests it reads the files
        // of those tables only (to lay down the parts its own backup lacks); a replica
        // that fetches reads their records only.
        let written: BTreeSet<&String> = planned
            .tables
            .iter()
            .filter(|t| replicas::writes(&restoring, t, &holdings))
            .filter_map(|t| t.zookeeper_path.as_ref())
            .collect();
        let mut others = Vec::new();
        for node in replicas::nodes_holding(&holdings, &restore.request.source, &paths) {
            let record = read_record(restore.repo, &restore.request.backup, &node).await?;
            let mut files = strata_repo::manifest::NodeManifest {
                node: node.clone(),
                ..Default::default()
            };
            for table in record.tables.iter().filter(|t| {
                t.zookeeper_path
                    .as_ref()
                    .is_some_and(|p| written.contains(p))
            }) {
                let Some(data) = &table.data else { continue };
                let under = manifest_under(
                    restore.repo,
                    &restore.request.backup,
                    &node,
                    &format!("{data}/"),
                )
                .await?;
                files.entries.extend(under.entries);
            }
            others.push((node, record, files));
        }
        let partitions = only
            .as_ref()
            .map(|c| c.partitions.clone())
            .unwrap_or_default();
        let plans = replicas::plan(&restoring, &planned, &holdings, &others)?
            .into_iter()
            .map(|(path, plan)| (path, plan.only(&partitions)))
            .collect();
        drop(others);
        let wait = humantime::parse_duration(&self.settings.restore_wait).map_err(|e| {
            ApiError::new(
                ErrorCode::BadRequest,
                format!(
                    "ClickHouse: [nodes.clickhouse] restore_wait {:?}: {e}",
                    self.settings.restore_wait
                ),
            )
        })?;
        let dropped = self
            .refuse_stale_replicas(
                &client,
                &server,
                &record,
                only.as_ref(),
                restore.request.drop_stale_replicas,
            )
            .await?;
        let staging = self.take_staging().await?;
        let run = RestoreRun {
            settings: self.settings.clone(),
            client,
            server,
            staging,
            only,
            record,
            plans,
            wait,
            dropped,
        };
        run.refuse_rows().await?;
        Ok(Some(Box::new(run)))
    }
}

impl ClickHouseAgent {
    /// Names, before anything is created, every replica in ZooKeeper that the replicated
    /// tables this node creates would meet and no running server holds ([`stale`]).
    /// With `drop`, removes them instead ([`stale::drop`]) and returns what it removed.
    async fn refuse_stale_replicas(
        &self,
        client: &Client,
        server: &Server,
        record: &Record,
        only: Option<&TableChoice>,
        drop: bool,
    ) -> ApiResult<Vec<String>> {
        let tables = match only {
            Some(choice) if choice.table.is_some() => choice.narrow(record.clone())?.tables,
            Some(_) => Vec::new(),
            None => record.tables.clone(),
        };
        let mut new = Vec::new();
        for table in tables.iter().filter(|t| t.replicated()) {
            let from = format!(
                "system.tables WHERE database = {} AND name = {}",
                literal(&table.database),
                literal(&table.name)
            );
            let exists = client
                .count(&from)
                .await
                .map_err(query_failed("read the tables"))?
                > 0;
            if !exists {
                new.push(table);
            }
        }
        let found = stale::find(client, &server.macros, &new).await?;
        // What this server's CREATE cut short registered and never filled goes without
        // asking. Another server's empty replica is no obstacle to this server's CREATE,
        // and it may be a running server's that has not reopened its session yet (its
        // coordination service just came back): it stays unless asked.
        let (left, found): (Vec<_>, Vec<_>) =
            found.into_iter().partition(|s| s.own && s.holds_nothing());
        let (empty, stale): (Vec<_>, Vec<_>) = found.into_iter().partition(|s| s.holds_nothing());
        if !stale.is_empty() && !drop {
            return Err(stale::refusal(&stale));
        }
        let mut remove = left;
        if drop {
            remove.extend(stale);
            remove.extend(empty);
        }
        match remove.is_empty() {
            true => Ok(Vec::new()),
            false => stale::drop(client, &self.settings.zookeeper, &remove).await,
        }
    }
}

/// `--table` names a table no node of the backup holds: exit 2 with the names it holds
/// that are close, before anything is laid down on any node.
async fn refuse_unknown_table(
    restore: &RestoreStart<'_>,
    holdings: &BTreeMap<String, BTreeMap<String, u64>>,
    wanted: &str,
) -> ApiResult<()> {
    let others: Vec<String> = holdings
        .keys()
        .filter(|n| **n != restore.request.source)
        .cloned()
        .collect();
    find_table(restore.repo, &restore.request.backup, &others, wanted, &[]).await
}

/// Whether one of backup nodes `nodes` holds table `wanted` (`DB.TABLE`); a
/// `BadRequest` naming the close names they hold when none does.
pub async fn find_table(
    repo: &strata_repo::Repository,
    backup: &str,
    nodes: &[String],
    wanted: &str,
    partitions: &[String],
) -> ApiResult<()> {
    let mut names = BTreeSet::new();
    // The table's partitions over every node, when it is found and partitions are asked.
    let mut found: Option<BTreeSet<String>> = None;
    for node in nodes {
        // A node of another plugin holds no record: it holds no table either.
        let Ok(theirs) = read_record(repo, backup, node).await else {
            continue;
        };
        if let Some(table) = theirs.tables.iter().find(|t| t.shown() == wanted) {
            if partitions.is_empty() {
                return Ok(());
            }
            let held = found.get_or_insert_with(BTreeSet::new);
            held.extend(
                table
                    .parts
                    .iter()
                    .filter_map(|p| covering::partition_of(&p.name, &table.create)),
            );
            if partitions.iter().all(|p| held.contains(p)) {
                return Ok(());
            }
            continue;
        }
        names.extend(theirs.tables.iter().map(Table::shown));
    }
    if let Some(held) = found {
        let missing: Vec<&str> = partitions
            .iter()
            .filter(|p| !held.contains(*p))
            .map(String::as_str)
            .collect();
        let held: Vec<&str> = held.iter().map(String::as_str).collect();
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!(
                "ClickHouse: --partition {}: backup {backup} holds no part of it in {wanted} (its partitions: {})",
                missing.join(", "),
                held.join(", ")
            ),
        ));
    }
    let close = close_names(wanted, &names);
    Err(ApiError::new(
        ErrorCode::BadRequest,
        format!(
            "ClickHouse: --table {wanted}: no node of backup {backup} holds such a table{}",
            match close.is_empty() {
                true => String::new(),
                false => format!(" (it holds {})", close.join(", ")),
            }
        ),
    ))
}

/// The names of `names` close to `wanted` (case aside, or a few letters apart), closest
/// first, at most five.
fn close_names(wanted: &str, names: &BTreeSet<String>) -> Vec<String> {
    let wanted_lower = wanted.to_lowercase();
    let mut scored: Vec<(usize, &String)> = names
        .iter()
        .filter(|n| !n.starts_with('.') && !n.contains(".inner"))
        .map(|n| (strsim::levenshtein(&wanted_lower, &n.to_lowercase()), n))
        .filter(|(d, n)| {
            *d <= 3.max(wanted.len() / 4)
                || n.ends_with(&format!(".{}", wanted.rsplit('.').next().unwrap_or(wanted)))
        })
        .collect();
    scored.sort();
    scored.into_iter().take(5).map(|(_, n)| n.clone()).collect()
}

/// One table of a backup brought back beside the live ones.
struct TableChoice {
    /// `db.table` as asked.
    wanted: String,
    /// The table in this node's record (none: this node's backup does not hold it).
    table: Option<Table>,
    /// The name it comes back under.
    new_name: String,
    /// Only these partitions (`--partition`; all when empty).
    partitions: BTreeSet<String>,
}

impl TableChoice {
    fn of(record: &Record, wanted: &str, table_as: Option<&str>) -> ApiResult<TableChoice> {
        let bad = |why: String| ApiError::new(ErrorCode::BadRequest, format!("ClickHouse: {why}"));
        let (database, name) = wanted
            .split_once('.')
            .ok_or_else(|| bad(format!("--table {wanted}: give it as DATABASE.TABLE")))?;
        let new_name = table_as.map_or_else(|| format!("{name}_restored"), str::to_string);
        // It goes into a coordination path too: a `{replica}` in it would differ per node.
        if new_name.is_empty()
            || new_name.len() > 200
            || !new_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(bad(format!(
                "--as {new_name:?}: a ClickHouse table restored beside the live one takes a name of letters, digits and '_'"
            )));
        }
        let table = record
            .tables
            .iter()
            .find(|t| t.database == database && t.name == name)
            .cloned();
        if let Some(t) = &table {
            if t.data.is_none() || t.inner() {
                return Err(bad(format!(
                    "{wanted} is a {} table without parts of its own: --table brings back MergeTree tables (a materialized view's data: restore the table it writes to)",
                    t.engine
                )));
            }
        }
        Ok(TableChoice {
            wanted: wanted.to_string(),
            table,
            new_name,
            partitions: BTreeSet::new(),
        })
    }

    /// The record narrowed to the table, renamed.
    fn narrow(&self, record: Record) -> ApiResult<Record> {
        let Some(table) = &self.table else {
            return Ok(Record {
                databases: Vec::new(),
                tables: Vec::new(),
                ..record
            });
        };
        let create = rename::renamed(&table.create, &table.database, &table.name, &self.new_name)
            .map_err(|e| failed(&format!("restore {}", self.wanted), e))?;
        let databases = record
            .databases
            .into_iter()
            .filter(|d| d.name == table.database)
            .collect();
        // The coordination path stays the backup's: it chooses the writer.
        let renamed = Table {
            name: self.new_name.clone(),
            create,
            ..table.clone()
        };
        Ok(Record {
            databases,
            tables: vec![renamed],
            ..record
        })
    }
}

/// The entries of node `node`'s manifest at `prefix` or below it, read one part (a
/// manifest chunk) at a time: a ClickHouse node's manifest lists every file of every
/// part, and a restore needs its record, or a few tables' files, of it.
async fn manifest_under(
    repo: &strata_repo::Repository,
    backup: &str,
    node: &str,
    prefix: &str,
) -> ApiResult<strata_repo::manifest::NodeManifest> {
    let damaged = |e: strata_repo::RepoError| {
        ApiError::new(
            ErrorCode::Damaged,
            format!(
                "ClickHouse: read node {node}'s manifest: {}",
                strata_util::error_chain(&e)
            ),
        )
    };
    let mut reader = repo.open_manifest(backup, node).await.map_err(damaged)?;
    reader.restrict_to(prefix.as_bytes());
    let mut entries = Vec::new();
    while let Some(part) = reader.next_part(repo).await {
        entries.extend(
            part.map_err(damaged)?
                .into_iter()
                .filter(|e| e.path.starts_with(prefix.as_bytes())),
        );
    }
    Ok(strata_repo::manifest::NodeManifest {
        node: node.to_string(),
        roots: Vec::new(),
        entries,
    })
}

/// Reads node `node`'s record from its backup (not from the restored files, which the
/// server's user could change under the restore), reading only the manifest part that
/// lists it.
async fn read_record(
    repo: &strata_repo::Repository,
    backup: &str,
    node: &str,
) -> ApiResult<Record> {
    use strata_repo::manifest::EntryKind;
    let damaged = |why: String| ApiError::new(ErrorCode::Damaged, format!("ClickHouse: {why}"));
    let manifest = manifest_under(repo, backup, node, RECORD_FILE).await?;
    let chunks = manifest
        .entries
        .iter()
        .find(|e| e.path == RECORD_FILE.as_bytes())
        .and_then(|e| match &e.kind {
            EntryKind::File { chunks, .. } => Some(chunks.clone()),
            _ => None,
        })
        .ok_or_else(|| {
            damaged(format!(
                "node {node} of the backup holds no {RECORD_FILE}: is it a ClickHouse node's backup?"
            ))
        })?;
    let mut bytes = Vec::new();
    for chunk in &chunks {
        let blob = repo
            .read_blob(chunk)
            .await
            .map_err(|e| damaged(strata_util::error_chain(&e)))?;
        bytes.extend_from_slice(&blob);
        if bytes.len() as u64 > RECORD_LIMIT {
            return Err(damaged(format!(
                "{RECORD_FILE} is larger than {RECORD_LIMIT} bytes"
            )));
        }
    }
    Record::parse(&bytes).map_err(|why| damaged(why.to_string()))
}

/// The rows of parts without a `count.txt` (old-syntax tables), from `system.parts`: a
/// part's rows never change under its name, active or not.
async fn count_rows(client: &Client, table: &mut Table, names: &[String]) -> ApiResult<()> {
    #[derive(Deserialize)]
    struct Row {
        name: String,
        rows: u64,
    }
    let list = names
        .iter()
        .map(|n| literal(n))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = client
        .rows::<Row>(&format!(
            "SELECT name, any(rows) AS rows FROM system.parts WHERE database = {} AND table = {} AND name IN ({list}) GROUP BY name",
            literal(&table.database),
            literal(&table.name)
        ))
        .await
        .map_err(query_failed(&format!("count the rows of {}", table.shown())))?;
    for name in names {
        let found = rows.iter().find(|r| &r.name == name).ok_or_else(|| {
            failed(
                &format!("count the rows of {}", table.shown()),
                format!("part {name} has no count.txt and the server no longer lists it"),
            )
        })?;
        if let Some(part) = table.parts.iter_mut().find(|p| &p.name == name) {
            part.rows = found.rows;
        }
    }
    Ok(())
}

/// A node's backup between the freeze and the manifest: holds the staging directory.
struct FrozenBackup {
    staging: Staging,
    record: Record,
    warnings: Vec<String>,
    server_path: std::path::PathBuf,
}

#[async_trait::async_trait]
impl PluginBackup for FrozenBackup {
    async fn finish(
        self: Box<Self>,
        step: &mut BackupStep<'_>,
    ) -> ApiResult<BTreeMap<String, String>> {
        let record = &self.record;
        for warning in &self.warnings {
            step.warn_partial(warning.clone());
        }
        let json = serde_json::to_vec_pretty(record).map_err(|e| failed("the record", e))?;
        step.add_files(&self.server_path, vec![(RECORD_FILE.to_string(), json)])
            .await?;
        let frozen: Vec<&Table> = record.tables.iter().filter(|t| t.data.is_some()).collect();
        let mut summary = BTreeMap::from([
            (
                "clickhouse.version".to_string(),
                record.server_version.clone(),
            ),
            (
                "clickhouse.tables".to_string(),
                record.tables.len().to_string(),
            ),
            (
                "clickhouse.parts".to_string(),
                frozen
                    .iter()
                    .map(|t| t.parts.len())
                    .sum::<usize>()
                    .to_string(),
            ),
            (
                "clickhouse.rows".to_string(),
                frozen.iter().map(|t| t.rows()).sum::<u64>().to_string(),
            ),
            (
                "clickhouse.part_bytes".to_string(),
                frozen
                    .iter()
                    .flat_map(|t| &t.parts)
                    .map(|p| p.bytes)
                    .sum::<u64>()
                    .to_string(),
            ),
        ]);
        // Which replicated tables the node holds, by coordination path, with their rows:
        // a restore attaches each on the restored node that holds the most of it.
        let replicated: BTreeMap<&str, u64> = frozen
            .iter()
            .filter_map(|t| t.zookeeper_path.as_deref().map(|p| (p, t.rows())))
            .collect();
        summary.insert(
            "clickhouse.replicated".to_string(),
            serde_json::to_string(&replicated).map_err(|e| failed("the record", e))?,
        );
        for (name, value) in &record.macros {
            if name == "shard" || name == "replica" {
                summary.insert(format!("clickhouse.{name}"), value.clone());
            }
        }
        drop(self.staging);
        Ok(summary)
    }
}

/// A node's restore: holds the staging directory the parts are laid down in.
struct RestoreRun {
    settings: ClickHouseNode,
    client: Client,
    server: Server,
    staging: Staging,
    /// `--table`: only this table, under its new name.
    only: Option<TableChoice>,
    /// The node's record, read from its backup (not from the restored files, which the
    /// server's user could change under the restore).
    record: Record,
    /// The restore of each replicated table this node brings back, by the backup's
    /// coordination path ([`replicas::plan`]).
    plans: BTreeMap<String, TablePlan>,
    /// How long the replicas are waited for (`restore_wait`).
    wait: Duration,
    /// The stale replicas removed from ZooKeeper before anything was created.
    dropped: Vec<String>,
}

impl RestoreRun {
    /// Whether this node attaches `table`'s parts: a table of its own, or a replicated
    /// one it is the writer of.
    fn attaches(&self, table: &Table) -> bool {
        match &table.zookeeper_path {
            Some(path) => self.plans.get(path).is_some_and(|p| p.writer),
            None => true,
        }
    }

    /// The plan of a replicated table.
    fn plan_of(&self, table: &Table) -> Option<&TablePlan> {
        self.plans.get(table.zookeeper_path.as_deref()?)
    }
}

impl RestoreRun {
    async fn exists(&self, table: &Table) -> ApiResult<bool> {
        let from = format!(
            "system.tables WHERE database = {} AND name = {}",
            literal(&table.database),
            literal(&table.name)
        );
        let n = self.client.count(&from).await;
        Ok(n.map_err(query_failed("read the tables"))? > 0)
    }

    /// The table's data directory on this server, relative to its path.
    async fn data_dir(&self, table: &Table) -> ApiResult<std::path::PathBuf> {
        let (_, tables) = schema::read(
            &self.client,
            std::slice::from_ref(&table.database),
            &self.settings.path,
        )
        .await
        .map_err(query_failed("read the schema"))?;
        tables
            .into_iter()
            .find(|t| t.name == table.name)
            .and_then(|t| t.data)
            .map(|d| self.settings.path.join(d))
            .ok_or_else(|| {
                failed(
                    &format!("attach to {}", table.shown()),
                    "the table has no data directory on this server",
                )
            })
    }

    /// Detaches the partitions of `table` in `redo` (their parts were attached here by
    /// a run cut short, and ZooKeeper never registered some of them) and removes the
    /// parts this detaches from `detached/`: they are this restore's own, laid down again
    /// and attached anew, and a copy left there could be attached a second time.
    async fn detach_unregistered(&self, table: &Table, redo: &BTreeSet<String>) -> ApiResult<()> {
        if redo.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + self.wait;
        converge::writable(&self.client, table, deadline, self.wait).await?;
        let parts = converge::unregistered(&self.client, table).await?;
        let table_dir = self.data_dir(table).await?;
        for partition in redo {
            // Carried out by the leader replica, which may not have reopened its own
            // session yet: tried again until the restore's wait is over.
            let sql = format!(
                "ALTER TABLE {} DETACH PARTITION ID {}",
                table.sql_name(),
                literal(partition)
            );
            loop {
                match self.client.execute(&sql).await {
                    Ok(_) => break,
                    Err(_) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_secs(1)).await
                    }
                    Err(e) => {
                        return Err(query_failed(&format!(
                            "detach partition {partition} of {} (its parts an earlier run attached, unknown to ZooKeeper)",
                            table.shown()
                        ))(e))
                    }
                }
            }
            for name in parts.get(partition).into_iter().flatten() {
                let (dir, name) = (table_dir.clone(), name.clone());
                let of = format!("remove a detached part of {}", table.shown());
                on_disk("remove a detached part", &of, move || {
                    staging::remove_detached(&dir, &name)
                })
                .await?;
            }
        }
        Ok(())
    }

    /// Moves a table's parts into its `detached/`, attaches them and counts its rows
    /// against the record. Returns the parts attached and the rows. The parts of the
    /// partitions in `done` (attached by an earlier run) are left out.
    async fn attach_table(
        &self,
        table: &Table,
        done: &BTreeSet<String>,
    ) -> ApiResult<(usize, u64)> {
        let data = table.data.as_deref().unwrap_or_default();
        let table_dir = self.data_dir(table).await?;
        let root = self.staging.root().to_path_buf();
        let data_owned = data.to_string();
        let attach_to = format!("attach to {}", table.shown());
        let frozen = on_disk("move a part", &attach_to, move || {
            staging::within(&root, &data_owned)
        })
        .await?;
        let parts: Vec<_> = table
            .parts
            .iter()
            .filter(|p| {
                covering::partition_of(&p.name, &table.create).is_none_or(|id| !done.contains(&id))
            })
            .collect();
        for part in &parts {
            let from = frozen.join(&part.name);
            let to = table_dir.clone();
            on_disk("move a part", &attach_to, move || {
                staging::move_to_detached(&from, &to)
            })
            .await?;
            self.client
                .execute(&format!(
                    "ALTER TABLE {} ATTACH PART {}",
                    table.sql_name(),
                    literal(&part.name)
                ))
                .await
                .map_err(query_failed(&format!(
                    "attach part {} to {}",
                    part.name,
                    table.shown()
                )))?;
        }
        let want = table.rows_by_partition();
        let held = converge::rows_by_partition(&self.client, table).await?;
        let whole = self.partitions().is_empty();
        let differs = match converge::compare(&want, &held, whole) {
            Ok(missing) => !missing.is_empty(),
            Err(_) => true,
        };
        let rows: u64 = want.keys().filter_map(|p| held.get(p)).sum();
        if differs {
            return Err(failed(
                &format!("restore {}", table.shown()),
                format!(
                    "it holds {rows} rows after the attach, the backup recorded {}: drop {} on every replica before restoring it again",
                    table.rows(),
                    table.shown()
                ),
            ));
        }
        Ok((parts.len(), rows))
    }

    /// For a replicated table on this server: another replica (per ZooKeeper, through
    /// the server's `system.zookeeper`) that holds parts of it already and has a live
    /// session.
    async fn other_replica_with_parts(&self, table: &Table) -> ApiResult<Option<String>> {
        #[derive(Deserialize)]
        struct Replica {
            zookeeper_path: String,
            replica_name: String,
        }
        #[derive(Deserialize)]
        struct Node {
            name: String,
        }
        #[derive(Deserialize)]
        struct Children {
            #[serde(rename = "numChildren")]
            num_children: u64,
        }
        let what = format!("read {}'s replicas", table.shown());
        let mine = self
            .client
            .rows::<Replica>(&format!(
                "SELECT zookeeper_path, replica_name FROM system.replicas WHERE database = {} AND table = {}",
                literal(&table.database),
                literal(&table.name)
            ))
            .await
            .map_err(query_failed(&what))?;
        let Some(mine) = mine.into_iter().next() else {
            return Ok(None);
        };
        let replicas = format!("{}/replicas", mine.zookeeper_path.trim_end_matches('/'));
        let names = self
            .client
            .rows::<Node>(&format!(
                "SELECT name FROM system.zookeeper WHERE path = {}",
                literal(&replicas)
            ))
            .await
            .map_err(query_failed(&what))?;
        for other in names.iter().filter(|n| n.name != mine.replica_name) {
            let parts = self
                .client
                .rows::<Children>(&format!(
                    "SELECT numChildren FROM system.zookeeper WHERE path = {} AND name = 'parts'",
                    literal(&format!("{replicas}/{}", other.name))
                ))
                .await
                .map_err(query_failed(&what))?;
            // Only a replica a running server holds (a live session) can be fetched
            // from: one ZooKeeper kept after its server was lost would be waited for in
            // vain.
            let live = stale::active(&self.client, &format!("{replicas}/{}", other.name)).await?;
            if live && parts.iter().any(|p| p.num_children > 0) {
                return Ok(Some(other.name.clone()));
            }
        }
        Ok(None)
    }

    /// The tables this node brings back, each with the parts it comes back with (a
    /// replicated one's covering set), narrowed and renamed for `--table`.
    fn restored_tables(&self) -> ApiResult<Vec<Table>> {
        let record = match &self.only {
            Some(choice) if choice.table.is_none() => return Ok(Vec::new()),
            Some(choice) => choice.narrow(self.record.clone())?,
            None => self.record.clone(),
        };
        let partitions = self.partitions();
        Ok(record
            .tables
            .iter()
            .map(|t| match self.plan_of(t) {
                Some(plan) => plan.table(t),
                None if partitions.is_empty() => t.clone(),
                None => Table {
                    parts: t
                        .parts
                        .iter()
                        .filter(|p| {
                            covering::partition_of(&p.name, &t.create)
                                .is_some_and(|id| partitions.contains(&id))
                        })
                        .cloned()
                        .collect(),
                    ..t.clone()
                },
            })
            .filter(|t| !t.parts.is_empty())
            .collect())
    }

    /// `tables` with each Atomic view's storage under the name this server gave it
    /// ([`views::localize`]).
    async fn localized(&self, tables: Vec<Table>) -> ApiResult<Vec<Table>> {
        views::localize(&self.client, &self.record, tables)
            .await
            .map_err(query_failed("read the materialized views"))
    }

    /// `--partition`: the partitions restored (all when empty).
    fn partitions(&self) -> BTreeSet<String> {
        self.only
            .as_ref()
            .map(|c| c.partitions.clone())
            .unwrap_or_default()
    }

    /// What a table this node attaches to holds already ([`converge::held_against`]).
    async fn held(&self, table: &Table) -> ApiResult<Held> {
        if !self.exists(table).await? {
            return Ok(Held::Nothing);
        }
        // With --partition only the partitions restored count: the others are the live
        // table's own.
        let partitions = self.partitions();
        let mut held = converge::rows_by_partition(&self.client, table).await?;
        if !partitions.is_empty() {
            held.retain(|p, _| partitions.contains(p));
        }
        // A table that does not replicate was never cut short by its coordination
        // service: rows there are another's.
        if self.plan_of(table).is_none() {
            let rows: u64 = held.values().sum();
            return Ok(match rows {
                0 => Held::Nothing,
                rows => Held::Rows(rows),
            });
        }
        let unregistered = converge::unregistered(&self.client, table)
            .await?
            .into_keys()
            .collect();
        Ok(converge::held_against(
            &table.rows_by_partition(),
            &held,
            &unregistered,
        ))
    }

    /// Refuses, before anything is laid down or created, a table this node would attach
    /// parts to that exists here with rows: parts beside rows would double them.
    async fn refuse_rows(&self) -> ApiResult<()> {
        let tables = self.localized(self.restored_tables()?).await?;
        for table in tables.iter().filter(|t| self.attaches(t)) {
            if let Held::Rows(rows) = self.held(table).await? {
                return Err(beside_rows(table, rows));
            }
        }
        Ok(())
    }

    /// Creates what the record names and the server lacks.
    async fn create(&self, record: &Record) -> ApiResult<usize> {
        let mut created = 0;
        for db in &record.databases {
            let engine = match db.engine.as_str() {
                // The server's default: the statement then fits every version.
                "Ordinary" | "Atomic" | "" => String::new(),
                other => format!(" ENGINE = {other}"),
            };
            self.client
                .execute(&format!(
                    "CREATE DATABASE IF NOT EXISTS {}{engine}",
                    ident(&db.name)
                ))
                .await
                .map_err(query_failed(&format!("create database {}", db.name)))?;
        }
        let mut order: Vec<&Table> = record.tables.iter().filter(|t| !t.inner()).collect();
        order.sort_by_key(|t| t.create_order());
        let settings = schema::creation_settings(&self.client)
            .await
            .map_err(query_failed("read the server's settings"))?;
        for table in order {
            if self.exists(table).await? {
                continue;
            }
            self.client.execute_with(&table.create, &settings).await.map_err(|e| {
                let hint = match e.code() {
                    Some(253) => ": ZooKeeper still holds this replica of the table; delete its path there (zkCli.sh deleteall), or restore onto a cluster whose ZooKeeper does not know it",
                    _ => "",
                };
                failed(
                    &format!("create {}", table.shown()),
                    format!("{}{hint}", strata_util::error_chain(&e)),
                )
            })?;
            created += 1;
        }
        Ok(created)
    }
}

#[async_trait::async_trait]
impl PluginRestore for RestoreRun {
    /// A table restore lays down that table's parts only (a node whose backup lacks the
    /// table, its record only).
    fn include(&self) -> Option<String> {
        let choice = self.only.as_ref()?;
        Some(
            choice
                .table
                .as_ref()
                .and_then(|t| t.data.clone())
                .unwrap_or_else(|| RECORD_FILE.to_string()),
        )
    }

    fn exclude(&self) -> Vec<String> {
        self.record
            .tables
            .iter()
            .filter(|t| !self.attaches(t))
            .filter_map(|t| t.data.clone())
            .collect()
    }

    async fn finish(self: Box<Self>, restored: &Restored<'_>) -> ApiResult<Option<String>> {
        let record = self.record.clone();
        let record = match &self.only {
            Some(choice) if choice.table.is_none() => {
                self.staging
                    .clear()
                    .map_err(|why| failed("remove the staging directory", why))?;
                return Ok(Some(format!(
                    "ClickHouse: node {}'s backup holds no table {}",
                    restored.request.source, choice.wanted
                )));
            }
            Some(choice) => choice.narrow(record)?,
            None => record,
        };

        let tables = self.localized(self.restored_tables()?).await?;
        // Refused before anything is created: parts beside rows would double them.
        let mut attached_before = Vec::new();
        let mut partly = BTreeMap::new();
        for table in tables.iter().filter(|t| self.attaches(t)) {
            match self.held(table).await? {
                Held::Nothing => {}
                Held::Backup => attached_before.push(table.shown()),
                Held::Partly { done, redo } => {
                    self.detach_unregistered(table, &redo).await?;
                    partly.insert(table.shown(), done);
                }
                Held::Rows(rows) => return Err(beside_rows(table, rows)),
            }
        }
        let created = self.create(&record).await?;
        // The views created now name their storage.
        let tables = self.localized(tables).await?;
        let (attach, fetch): (Vec<&Table>, Vec<&Table>) =
            tables.iter().partition(|t| self.attaches(t));
        let deadline = Instant::now() + self.wait;
        let mut parts = 0;
        let mut lines = Vec::new();
        let mut from_live = Vec::new();
        for table in &attach {
            let plan = self.plan_of(table);
            if attached_before.contains(&table.shown()) {
                // Attached by an earlier run of this restore: its replicas are waited for.
                self.without_merges(table, self.replicas_hold(table, plan, deadline))
                    .await?;
                lines.push(format!(
                    "{} holds the backup's {} rows already (a run cut short, or the same data): nothing attached",
                    table.shown(),
                    table.rows()
                ));
                continue;
            }
            let done = partly.remove(&table.shown()).unwrap_or_default();
            // Into a live table (`--partition`) the other replicas hold its other
            // partitions; the partitions restored were found empty here. A table an
            // earlier run attached partitions to is this restore's own: it goes on.
            if plan.is_some() && self.partitions().is_empty() && done.is_empty() {
                if let Some(replica) = self.other_replica_with_parts(table).await? {
                    // A replica of a live table (this node rebuilt after a lost disk): it
                    // fetches the parts from the others, attached parts would double them.
                    from_live.push((*table, replica));
                    continue;
                }
            }
            if let Some(plan) = plan {
                self.lay_down_others_parts(restored.repo, table, plan)
                    .await?;
            }
            // Merges would change the rows of Summing, Replacing, Collapsing tables
            // between the attach and the count, and hand a replica that has not fetched
            // yet a merged part: none until every replica holds the parts, always resumed.
            if table.zookeeper_path.is_some() {
                converge::writable(&self.client, table, deadline, self.wait).await?;
            }
            let (n, rows) = self
                .without_merges(table, async {
                    let attached = self.attach_table(table, &done).await?;
                    self.replicas_hold(table, plan, deadline).await?;
                    Ok(attached)
                })
                .await?;
            parts += n;
            lines.push(match done.len() {
                0 => format!("{} {rows} rows attached", table.shown()),
                n => format!(
                    "{} {rows} rows attached ({n} of its partitions by an earlier run cut short)",
                    table.shown()
                ),
            });
        }
        // The replicas that fetch: done when they hold the shard's rows.
        for table in fetch.iter().filter(|t| self.plan_of(t).is_some()) {
            let expected = table.rows_by_partition();
            let rows = self
                .without_merges(
                    table,
                    converge::replica_holds(
                        &self.client,
                        table,
                        Some(&expected),
                        self.partitions().is_empty(),
                        deadline,
                        self.wait,
                    ),
                )
                .await?;
            lines.push(format!("{} {rows} rows fetched", table.shown()));
        }
        for (table, replica) in from_live {
            let rows =
                converge::replica_holds(&self.client, table, None, true, deadline, self.wait)
                    .await?;
            lines.push(format!(
                "{} fetched from replica {replica}, which holds its parts: {rows} rows",
                table.shown()
            ));
        }
        let line = format!(
            "ClickHouse {} ({}): {}{created} tables created, {parts} parts attached{}",
            self.server.version,
            shard_line(&self.server),
            match self.dropped.is_empty() {
                true => String::new(),
                false => format!(
                    "stale replicas removed from ZooKeeper: {}; ",
                    self.dropped.join(", ")
                ),
            },
            match lines.is_empty() {
                true => String::new(),
                false => format!(" ({})", lines.join(", ")),
            },
        );
        self.staging
            .clear()
            .map_err(|why| failed("remove the staging directory", why))?;
        Ok(Some(line))
    }
}

impl RestoreRun {
    /// For the writer of a replicated table: waits until the restore's replicas of it
    /// hold every part attached here ([`converge::replicas_hold_parts`]).
    async fn replicas_hold(
        &self,
        table: &Table,
        plan: Option<&TablePlan>,
        deadline: Instant,
    ) -> ApiResult<()> {
        match plan {
            Some(plan) => {
                converge::replicas_hold_parts(
                    &self.client,
                    table,
                    plan.replicas,
                    deadline,
                    self.wait,
                )
                .await
            }
            None => Ok(()),
        }
    }

    /// Runs `work` with the table's merges stopped, and resumes them however it ends.
    async fn without_merges<T>(
        &self,
        table: &Table,
        work: impl std::future::Future<Output = ApiResult<T>>,
    ) -> ApiResult<T> {
        self.client
            .execute(&format!("SYSTEM STOP MERGES {}", table.sql_name()))
            .await
            .map_err(query_failed(&format!("stop merges of {}", table.shown())))?;
        let done = work.await;
        let resumed = self
            .client
            .execute(&format!("SYSTEM START MERGES {}", table.sql_name()))
            .await;
        let done = done?;
        resumed.map_err(query_failed(&format!(
            "resume the merges of {} (run SYSTEM START MERGES on it)",
            table.shown()
        )))?;
        Ok(done)
    }

    /// Writes the parts of `table`'s covering set that this node's backup lacks, read
    /// from the backup nodes that hold them, into the staging directory beside its own.
    async fn lay_down_others_parts(
        &self,
        repo: &strata_repo::Repository,
        table: &Table,
        plan: &TablePlan,
    ) -> ApiResult<()> {
        let data = table.data.clone().unwrap_or_default();
        let root = self.staging.root().to_path_buf();
        let mut dir = None;
        for part in &plan.parts {
            let Some(files) = &part.files else {
                continue;
            };
            let dir = match &dir {
                Some(dir) => dir,
                None => {
                    let (root, data) = (root.clone(), data.clone());
                    let of = format!("lay down the parts of {}", table.shown());
                    let made = on_disk("lay down a part", &of, move || {
                        staging::make_within(&root, &data)
                    })
                    .await?;
                    dir.insert(made)
                }
            };
            replicas::fetch_part(repo, files, &dir.join(&part.part.name)).await?;
        }
        Ok(())
    }
}

fn beside_rows(table: &Table, rows: u64) -> ApiError {
    ApiError::new(
        ErrorCode::BadRequest,
        format!(
            "ClickHouse: table {} exists on this server with {rows} rows: a restore attaches parts into empty tables only (drop the table, or restore onto an empty cluster)",
            table.shown()
        ),
    )
}

fn shard_line(server: &Server) -> String {
    match (server.macros.get("shard"), server.macros.get("replica")) {
        (Some(s), Some(r)) => format!("shard {s}, replica {r}"),
        (Some(s), None) => format!("shard {s}"),
        _ => "no shard macro".into(),
    }
}
