//! How a shard's replicated tables come back: from the union of its replicas' parts,
//! attached on one replica.
//!
//! Each replica of a shard froze the parts it held at its own instant: under write load
//! one replica holds acknowledged parts another has not fetched yet, in both directions.
//! No single replica speaks for its shard, so the restore of a replicated table takes the
//! covering set ([`super::covering`]) of the parts every backup node of that table froze,
//! whether or not that node is restored, and attaches it on one restored node, the
//! writer: the one whose backup holds the most rows of the table (the first by name among
//! equals). Parts the writer's own backup lacks are read from the backup node that holds
//! them, every chunk hash-checked, into the writer's staging directory. The other
//! replicas fetch through replication; every restored replica then waits until it holds
//! the covering set's rows ([`super::converge`]).
//!
//! A backup taken before this rule records every replica's parts all the same, so its
//! restores take the union too.

use super::client::literal;
use super::covering::{covering, Candidate, Syntax};
use super::record::{Part, Record, Table};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use strata_agent::service::ApiResult;
use strata_cluster::node_api::{ApiError, ErrorCode};
use strata_repo::manifest::{EntryKind, NodeManifest};
use strata_repo::BlobId;

/// The restore of one replicated table, seen from one node.
#[derive(Debug, Clone, Default)]
pub struct TablePlan {
    /// Whether this node attaches the parts (the others fetch them).
    pub writer: bool,
    /// The covering set of the shard's parts.
    pub parts: Vec<PlannedPart>,
    /// How many nodes of this restore restore the table (its replicas to wait for).
    pub replicas: usize,
    /// How the table names its parts.
    pub syntax: Option<Syntax>,
}

/// One part of a covering set.
#[derive(Debug, Clone)]
pub struct PlannedPart {
    /// The backup node whose frozen copy it comes from.
    pub node: String,
    /// The part as that node recorded it.
    pub part: Part,
    /// Its files, when the writer reads it from another node's backup (none: the writer's
    /// own backup holds it and the restore laid it down).
    pub files: Option<Vec<PartFile>>,
}

/// One file of a part read from another node's backup.
#[derive(Debug, Clone)]
pub struct PartFile {
    /// Its name in the part's directory.
    pub name: String,
    /// Its length.
    pub size: u64,
    /// Its content.
    pub chunks: Vec<BlobId>,
}

impl TablePlan {
    /// The rows the shard holds once restored.
    pub fn rows(&self) -> u64 {
        self.parts.iter().map(|p| p.part.rows).sum()
    }

    /// The plan narrowed to the parts of `partitions` (all when empty).
    pub fn only(mut self, partitions: &BTreeSet<String>) -> TablePlan {
        if partitions.is_empty() {
            return self;
        }
        let syntax = self.syntax.unwrap_or(Syntax::Current);
        self.parts.retain(|p| {
            super::covering::PartInfo::parse(&p.part.name, syntax)
                .is_some_and(|i| partitions.contains(&i.partition))
        });
        self
    }

    /// `table` with the covering set as its parts.
    pub fn table(&self, table: &Table) -> Table {
        Table {
            parts: self.parts.iter().map(|p| p.part.clone()).collect(),
            ..table.clone()
        }
    }
}

fn failed(why: String) -> ApiError {
    ApiError::new(ErrorCode::Failed, format!("ClickHouse: {why}"))
}

fn damaged(why: String) -> ApiError {
    ApiError::new(ErrorCode::Damaged, format!("ClickHouse: {why}"))
}

/// Which coordination paths each backup node holds, with their rows (the node summary's
/// `clickhouse.replicated`).
pub fn holdings(
    summary: &strata_repo::summary::BackupSummary,
) -> BTreeMap<String, BTreeMap<String, u64>> {
    summary
        .nodes
        .iter()
        .map(|n| {
            let held = n
                .plugin
                .get("clickhouse.replicated")
                .and_then(|json| serde_json::from_str(json).ok())
                .unwrap_or_default();
            (n.name.clone(), held)
        })
        .collect()
}

/// Which node a restore lays down, and beside which others.
#[derive(Debug, Clone, Copy)]
pub struct Restoring<'a> {
    /// The backup node this node restores.
    pub source: &'a str,
    /// Every backup node the restore lays down (empty: every node of the backup).
    pub peers: &'a [String],
}

/// The restored nodes of `restoring` (backup node names, every node of the backup when
/// none are named).
fn peers<'a>(
    restoring: &'a Restoring<'_>,
    holdings: &'a BTreeMap<String, BTreeMap<String, u64>>,
) -> Vec<&'a str> {
    match restoring.peers.is_empty() {
        true => holdings.keys().map(String::as_str).collect(),
        false => restoring.peers.iter().map(String::as_str).collect(),
    }
}

/// Whether this node (`restoring.source`) attaches replicated `table`: of the restored
/// nodes whose backups hold its coordination path, it holds the most rows of it (the
/// first by name among equals).
pub fn writes(
    restoring: &Restoring<'_>,
    table: &Table,
    holdings: &BTreeMap<String, BTreeMap<String, u64>>,
) -> bool {
    let Some(path) = &table.zookeeper_path else {
        return false;
    };
    let rows_of = |node: &str| holdings.get(node).and_then(|h| h.get(path)).copied();
    peers(restoring, holdings)
        .into_iter()
        .filter_map(|p| rows_of(p).map(|r| (p, r)))
        .chain(std::iter::once((restoring.source, table.rows())))
        .max_by(|(a, ar), (b, br)| ar.cmp(br).then(b.cmp(a)))
        .is_none_or(|(n, _)| n == restoring.source)
}

/// The plans of the replicated tables `record` (this node's backup, `request.source`)
/// holds parts of, keyed by coordination path. `others` are the records of the backup's
/// other nodes that hold any of those paths, with the entries of their manifests under
/// the tables this node attaches ([`writes`]): the files of the parts it lays down.
pub fn plan(
    request: &Restoring<'_>,
    record: &Record,
    holdings: &BTreeMap<String, BTreeMap<String, u64>>,
    others: &[(String, Record, NodeManifest)],
) -> ApiResult<BTreeMap<String, TablePlan>> {
    let peers = peers(request, holdings);
    let rows_of = |node: &str, path: &str| holdings.get(node).and_then(|h| h.get(path)).copied();
    let mut plans = BTreeMap::new();
    for table in record.tables.iter().filter(|t| t.data.is_some()) {
        let Some(path) = &table.zookeeper_path else {
            continue;
        };
        let replicas = peers
            .iter()
            .filter(|p| **p == request.source || rows_of(p, path).is_some())
            .count();
        // The copies: this node's own first (nothing to read for it), then the others by
        // most rows, then name.
        let mut holders: Vec<(&str, &Table, Option<&NodeManifest>)> =
            vec![(request.source, table, None)];
        let mut theirs: Vec<(&str, &Table, &NodeManifest)> = others
            .iter()
            .filter_map(|(node, record, manifest)| {
                let t = record
                    .tables
                    .iter()
                    .find(|t| t.zookeeper_path.as_deref() == Some(path) && t.data.is_some())?;
                Some((node.as_str(), t, manifest))
            })
            .collect();
        theirs.sort_by(|a, b| b.1.rows().cmp(&a.1.rows()).then(a.0.cmp(b.0)));
        holders.extend(theirs.into_iter().map(|(n, t, m)| (n, t, Some(m))));
        let syntax = Syntax::of_create(&table.create);
        let candidates = holders
            .iter()
            .flat_map(|(node, t, _)| t.parts.iter().map(move |part| Candidate { node, part }));
        let chosen = covering(candidates, syntax).map_err(|why| {
            damaged(format!(
                "table {} ({path}): its replicas' parts do not make one set: {why}",
                table.shown()
            ))
        })?;
        let writes = writes(request, table, holdings);
        let mut parts = Vec::with_capacity(chosen.len());
        for c in chosen {
            let files = match (writes, c.node == request.source) {
                (true, false) => {
                    let (_, t, manifest) = holders
                        .iter()
                        .find(|(n, _, _)| *n == c.node)
                        .expect("a candidate comes from a holder");
                    let manifest = manifest.expect("another node's copy has its manifest");
                    Some(part_files(manifest, t, &c.part.name)?)
                }
                _ => None,
            };
            parts.push(PlannedPart {
                node: c.node.to_string(),
                part: c.part.clone(),
                files,
            });
        }
        plans.insert(
            path.clone(),
            TablePlan {
                writer: writes,
                parts,
                replicas,
                syntax: Some(syntax),
            },
        );
    }
    Ok(plans)
}

/// The files of part `part` of `table` in another node's manifest: plain files directly in
/// the part's directory (a part holds nothing else), a hard link read as the file it names.
fn part_files(manifest: &NodeManifest, table: &Table, part: &str) -> ApiResult<Vec<PartFile>> {
    let data = table.data.as_deref().unwrap_or_default();
    let prefix = format!("{data}/{part}/");
    let by_path = |path: &[u8]| manifest.entries.iter().find(|e| e.path == path);
    let mut files = Vec::new();
    for entry in manifest
        .entries
        .iter()
        .filter(|e| e.path.starts_with(prefix.as_bytes()))
    {
        let name = String::from_utf8_lossy(&entry.path[prefix.len()..]).into_owned();
        let plain = !name.is_empty()
            && name != "."
            && name != ".."
            && !name.contains('/')
            && !name.contains('\0');
        if !plain {
            return Err(damaged(format!(
                "node {}'s copy of part {part} of {} holds {name:?}, which is not a file of a part",
                manifest.node,
                table.shown()
            )));
        }
        let kind = match &entry.kind {
            EntryKind::HardLink { target } => by_path(target).map(|t| &t.kind),
            kind => Some(kind),
        };
        let Some(EntryKind::File { size, chunks }) = kind else {
            return Err(damaged(format!(
                "node {}'s copy of part {part} of {} holds {name}, which is not a plain file",
                manifest.node,
                table.shown()
            )));
        };
        files.push(PartFile {
            name,
            size: *size,
            chunks: chunks.clone(),
        });
    }
    if files.is_empty() {
        return Err(damaged(format!(
            "node {}'s backup records part {part} of {} but holds none of its files",
            manifest.node,
            table.shown()
        )));
    }
    Ok(files)
}

/// The backup nodes other than `source` whose records hold any of `paths`.
pub fn nodes_holding(
    holdings: &BTreeMap<String, BTreeMap<String, u64>>,
    source: &str,
    paths: &BTreeSet<String>,
) -> Vec<String> {
    holdings
        .iter()
        .filter(|(node, held)| *node != source && held.keys().any(|p| paths.contains(p)))
        .map(|(node, _)| node.clone())
        .collect()
}

/// Writes a part read from another node's backup into `dir` (which must not exist),
/// every chunk hash-checked by the repository, no file followed through a link.
pub async fn fetch_part(
    repo: &strata_repo::Repository,
    files: &[PartFile],
    dir: &Path,
) -> ApiResult<u64> {
    use tokio::io::AsyncWriteExt;
    let io = |what: &str, path: &Path, e: std::io::Error| {
        failed(format!("{what} {}: {e}", path.display()))
    };
    tokio::fs::create_dir(dir)
        .await
        .map_err(|e| io("cannot create", dir, e))?;
    let mut written = 0;
    for file in files {
        let path = dir.join(&file.name);
        let mut out = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .mode(0o640)
            .open(&path)
            .await
            .map_err(|e| io("cannot create", &path, e))?;
        let mut size = 0u64;
        for batch in file.chunks.chunks(16) {
            let blobs = repo.read_blobs(batch).await.map_err(|e| {
                damaged(format!(
                    "read {}: {}",
                    path.display(),
                    strata_util::error_chain(&e)
                ))
            })?;
            for blob in blobs {
                size += blob.len() as u64;
                out.write_all(&blob)
                    .await
                    .map_err(|e| io("cannot write", &path, e))?;
            }
        }
        if size != file.size {
            return Err(damaged(format!(
                "{} came back {size} bytes long, the backup recorded {}",
                path.display(),
                file.size
            )));
        }
        out.sync_all()
            .await
            .map_err(|e| io("cannot sync", &path, e))?;
        written += size;
    }
    Ok(written)
}

/// The SQL condition of one table in `system` tables.
pub fn table_condition(table: &Table) -> String {
    format!(
        "database = {} AND table = {}",
        literal(&table.database),
        literal(&table.name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_repo::manifest::Entry;

    fn table(parts: &[(&str, u64)]) -> Table {
        Table {
            database: "shop".into(),
            name: "events".into(),
            engine: "ReplicatedMergeTree".into(),
            create: "CREATE TABLE shop.events (x UInt8) ENGINE = ReplicatedMergeTree('/t', '{replica}') ORDER BY x".into(),
            data: Some("data/shop/events".into()),
            zookeeper_path: Some("/t".into()),
            uuid: None,
            parts: parts
                .iter()
                .map(|(n, r)| Part {
                    name: n.to_string(),
                    rows: *r,
                    bytes: 1,
                })
                .collect(),
        }
    }

    fn record(t: Table) -> Record {
        Record {
            version: 1,
            tables: vec![t],
            ..Record::default()
        }
    }

    fn manifest(node: &str, files: &[&str]) -> NodeManifest {
        NodeManifest {
            node: node.into(),
            entries: files
                .iter()
                .map(|f| Entry {
                    path: f.as_bytes().to_vec(),
                    kind: EntryKind::File {
                        size: 0,
                        chunks: Vec::new(),
                    },
                    mode: 0o640,
                    uid: 0,
                    gid: 0,
                    mtime_ns: 0,
                    xattrs: Vec::new(),
                })
                .collect(),
            ..NodeManifest::default()
        }
    }

    fn peers(names: &[&str]) -> Vec<String> {
        names.iter().map(|p| p.to_string()).collect()
    }

    fn request<'a>(source: &'a str, peers: &'a [String]) -> Restoring<'a> {
        Restoring { source, peers }
    }

    #[test]
    fn the_writer_takes_the_union_and_reads_what_it_lacks_from_the_other_replica() {
        // r1 and r2 each hold a part the other has not fetched.
        let r1 = table(&[("all_0_0_0", 10), ("all_1_1_0", 3)]);
        let r2 = table(&[("all_0_0_0", 10), ("all_2_2_0", 2)]);
        let holdings: BTreeMap<String, BTreeMap<String, u64>> = [
            ("r1".to_string(), [("/t".to_string(), 13)].into()),
            ("r2".to_string(), [("/t".to_string(), 12)].into()),
        ]
        .into();
        let others = vec![(
            "r2".to_string(),
            record(r2.clone()),
            manifest(
                "r2",
                &[
                    "data/shop/events/all_2_2_0/data.bin",
                    "data/shop/events/all_0_0_0/data.bin",
                ],
            ),
        )];
        let plans = plan(
            &request("r1", &peers(&["r1", "r2"])),
            &record(r1.clone()),
            &holdings,
            &others,
        )
        .unwrap();
        let p = &plans["/t"];
        assert!(p.writer);
        assert_eq!((p.rows(), p.replicas), (15, 2));
        let fetched: Vec<_> = p
            .parts
            .iter()
            .filter(|x| x.files.is_some())
            .map(|x| x.part.name.as_str())
            .collect();
        assert_eq!(fetched, ["all_2_2_0"]);
        // The other replica attaches nothing and expects the same rows.
        let others = vec![("r1".to_string(), record(r1), manifest("r1", &[]))];
        let plans = plan(
            &request("r2", &peers(&["r1", "r2"])),
            &record(r2.clone()),
            &holdings,
            &others,
        )
        .unwrap();
        assert!(!plans["/t"].writer);
        assert_eq!(plans["/t"].rows(), 15);
        assert_eq!(
            plans["/t"].table(&r2).rows_by_partition(),
            [("all".to_string(), 15)].into()
        );
        // Restored alone (r1 left out by --map), r2 writes and reads r1's part.
        let others = vec![(
            "r1".to_string(),
            record(table(&[("all_0_0_0", 10), ("all_1_1_0", 3)])),
            manifest("r1", &["data/shop/events/all_1_1_0/data.bin"]),
        )];
        let plans = plan(
            &request("r2", &peers(&["r2"])),
            &record(r2),
            &holdings,
            &others,
        )
        .unwrap();
        let p = &plans["/t"];
        assert!(p.writer && p.replicas == 1 && p.rows() == 15);
        let fetched: Vec<_> = p
            .parts
            .iter()
            .filter(|x| x.files.is_some())
            .map(|x| x.part.name.as_str())
            .collect();
        assert_eq!(fetched, ["all_1_1_0"]);
    }

    #[test]
    fn a_part_whose_files_leave_its_directory_is_refused() {
        let t = table(&[("all_0_0_0", 1)]);
        let m = manifest("r2", &["data/shop/events/all_0_0_0/sub/x.bin"]);
        let err = part_files(&m, &t, "all_0_0_0").unwrap_err();
        assert!(
            err.message.contains("not a file of a part"),
            "{}",
            err.message
        );
        let m = manifest("r2", &[]);
        assert!(part_files(&m, &t, "all_0_0_0").is_err());
    }
}
