//! The node side of the etcd plugin: the keyspace read through etcd's v3 API, stored in
//! the node's manifest like any other data, and written back through the API on restore.
//!
//! A backup reads every key under the configured prefixes at one revision
//! ([`strata_etcd::Client::snapshot`]) when the node's backup starts, and stores the
//! encoded snapshot as `etcd/snapshot.NNN` files (8 MiB parts, each one blob: encrypted,
//! deduplicated, verified like the rest). The node summary records the revision and the
//! fingerprint of the checked keys (`etcd.revision`, `etcd.fingerprint`, and what it
//! covers, `etcd.checked`), which the
//! cluster side reads again once every component's data is stored: a change in between
//! fails the component rather than pair data with a topology it never had.
//!
//! A restore lays no file down: it reads the parts back from the repository, applies the
//! rename rules (the node's configuration's, then the request's) and writes the keys
//! through one member in transactions, refusing a target prefix that holds other keys
//! unless `overwrite` is set. A dry run returns what would change and writes nothing.

use super::plugin::{BackupStep, PluginBackup, PluginRestore, RestoreStart, Restored};
use super::*;
use strata_etcd::{Client, Restore, Snapshot};

/// The size of one stored part of a snapshot.
const PART: usize = 8 << 20;

/// The name of a snapshot's part `n` in the node's manifest.
fn part_name(n: usize) -> String {
    format!("etcd/snapshot.{n:03}")
}

/// The etcd plugin on one node.
#[derive(Debug, Clone)]
pub struct EtcdAgent {
    /// How to reach etcd and which keys to back up.
    pub settings: strata_etcd::Settings,
    /// `OLD=NEW` rewrites applied on every restore (node names, endpoints).
    pub rename: Vec<String>,
    /// `FROM=TO`: keys under prefix FROM are restored under TO.
    pub move_prefix: Option<String>,
}

fn etcd_failed(what: &str, err: impl std::fmt::Display) -> ApiError {
    failed(format!("etcd: {what}: {err}"))
}

impl EtcdAgent {
    async fn connect(&self) -> ApiResult<Client> {
        Client::connect(&self.settings)
            .await
            .map_err(|e| etcd_failed("connect", error_chain(&e)))
    }

    /// The restore rules of a request: the configuration's, then the request's.
    fn rules(&self, request: &RestoreRequest) -> ApiResult<Restore> {
        let bad = |e: strata_etcd::EtcdError| {
            ApiError::new(ErrorCode::BadRequest, format!("etcd restore rules: {e}"))
        };
        let mut rules = Restore {
            leased: self.settings.leased,
            overwrite: self.settings.overwrite,
            ..Restore::default()
        };
        for rule in self.rename.iter().chain(&request.rename) {
            rules.rename.push(Restore::parse_rule(rule).map_err(bad)?);
        }
        if let Some(prefix) = &self.move_prefix {
            rules.target_prefix = Some(Restore::parse_rule(prefix).map_err(bad)?);
        }
        Ok(rules)
    }
}

#[async_trait::async_trait]
impl NodePlugin for EtcdAgent {
    fn name(&self) -> &'static str {
        "etcd"
    }

    async fn state(&self) -> Option<String> {
        Some(match self.connect().await {
            Ok(client) => format!(
                "etcd {}, cluster {}",
                client.server_version(),
                client.cluster_id()
            ),
            Err(e) => e.message,
        })
    }

    fn lays_down_files(&self) -> bool {
        false
    }

    async fn start_backup(
        &self,
        _node: &str,
        _operation: &str,
    ) -> ApiResult<Option<Box<dyn PluginBackup>>> {
        let client = self.connect().await?;
        let snapshot = client
            .snapshot()
            .await
            .map_err(|e| etcd_failed("read the keys", error_chain(&e)))?;
        let fingerprint = client.fingerprint_of(&snapshot);
        Ok(Some(Box::new(EtcdBackup {
            snapshot,
            fingerprint,
            check_id: self.settings.check_id(),
        })))
    }

    async fn start_restore(
        &self,
        restore: &RestoreStart<'_>,
    ) -> ApiResult<Option<Box<dyn PluginRestore>>> {
        super::plugin::no_recovery(restore, "is an etcd member")?;
        let rules = self.rules(restore.request)?;
        let client = self.connect().await?;
        Ok(Some(Box::new(EtcdRestore {
            client,
            rules,
            dry_run: restore.request.dry_run,
        })))
    }
}

/// One backup's snapshot, stored when the node's data is.
struct EtcdBackup {
    snapshot: Snapshot,
    fingerprint: strata_etcd::Fingerprint,
    /// What the fingerprint covers ([`strata_etcd::Settings::check_id`]).
    check_id: String,
}

#[async_trait::async_trait]
impl PluginBackup for EtcdBackup {
    async fn finish(
        self: Box<Self>,
        step: &mut BackupStep<'_>,
    ) -> ApiResult<BTreeMap<String, String>> {
        let encoded = self.snapshot.encode();
        let parts: Vec<(String, Vec<u8>)> = encoded
            .chunks(PART)
            .enumerate()
            .map(|(n, part)| (part_name(n), part.to_vec()))
            .collect();
        step.add_files(Path::new("/"), parts).await?;
        Ok(BTreeMap::from([
            ("etcd.revision".into(), self.snapshot.revision.to_string()),
            ("etcd.cluster_id".into(), self.snapshot.cluster_id.clone()),
            ("etcd.keys".into(), self.snapshot.kvs.len().to_string()),
            ("etcd.fingerprint".into(), self.fingerprint.hex()),
            ("etcd.checked".into(), self.check_id),
        ]))
    }
}

/// One restore: the snapshot read back from the manifest, written through `client`.
struct EtcdRestore {
    client: Client,
    rules: Restore,
    dry_run: bool,
}

#[async_trait::async_trait]
impl PluginRestore for EtcdRestore {
    async fn finish(self: Box<Self>, restored: &Restored<'_>) -> ApiResult<Option<String>> {
        let mut parts: Vec<(&[u8], &[BlobId])> = restored
            .manifest
            .entries
            .iter()
            .filter(|e| e.path.starts_with(b"etcd/snapshot."))
            .filter_map(|e| match &e.kind {
                EntryKind::File { chunks, .. } => Some((e.path.as_slice(), chunks.as_slice())),
                _ => None,
            })
            .collect();
        if parts.is_empty() {
            return Err(failed(format!(
                "node {} of backup {} holds no etcd snapshot",
                restored.request.source, restored.request.backup
            )));
        }
        parts.sort_by(|a, b| a.0.cmp(b.0));
        let mut encoded = Vec::new();
        for (_, chunks) in parts {
            for chunk in chunks {
                let blob = restored
                    .repo
                    .read_blob(chunk)
                    .await
                    .map_err(|e| failed(error_chain(&e)))?;
                encoded.extend_from_slice(&blob);
            }
        }
        let snapshot =
            Snapshot::decode(&encoded).map_err(|e| etcd_failed("the stored snapshot", e))?;
        let plan = self
            .client
            .plan_restore(&snapshot, &self.rules)
            .await
            .map_err(|e| etcd_failed("plan the restore", error_chain(&e)))?;
        if self.dry_run {
            let mut lines = vec![format!(
                "dry run of etcd snapshot at revision {}, nothing written:",
                snapshot.revision
            )];
            lines.extend(plan.lines());
            return Ok(Some(lines.join("\n")));
        }
        let report = self
            .client
            .apply(&plan)
            .await
            .map_err(|e| etcd_failed("write the keys", error_chain(&e)))?;
        Ok(Some(format!(
            "etcd: {} keys written ({} new, {} changed, {} already the same, {} leased skipped), now at revision {}",
            report.put + report.changed,
            report.put,
            report.changed,
            report.same,
            report.skipped_leased,
            report.revision
        )))
    }
}
