//! The request and response bodies of `/api/v1`, shared by the server's handlers, the
//! OpenAPI document and the HTTP client, so the three cannot drift apart.

pub mod tables;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use strata_coordinator::config::RetentionConfig;
use strata_coordinator::coordinator::RestorePlan;
use strata_coordinator::operation::OperationStatus;
use strata_coordinator::verified::VerifyRecord;
use strata_postgres::recovery::RecoveryPlan;
use strata_repo::summary::BackupSummary;

/// The API's major version. A server and a client of the same major version understand
/// each other's bodies; what one side added later is named in [`VersionInfo::features`].
pub const API_VERSION: u32 = 1;

/// Every feature a server of this build offers (see [`VersionInfo::features`]). A client
/// checks a call's feature before making it, so an older server says clearly what it
/// lacks instead of answering 404 to a path it never had.
pub const FEATURES: &[&str] = &[
    feature::BACKUPS,
    feature::RESTORES,
    feature::FILES,
    feature::PIN,
    feature::COPY,
    feature::DRILL,
    feature::VERIFY,
    feature::CLEANUP,
    feature::GC,
    feature::REPAIR,
    feature::WAL,
    feature::OPERATIONS,
    feature::SCHEDULES,
    feature::AUDIT,
    feature::STATUS,
    feature::COMPONENTS,
    feature::BACKUP_PAGES,
    feature::TABLES,
    feature::TABLE_POLICIES,
    feature::SESSION,
    feature::TABLE_CHANGES,
];

/// Features added after the release that introduced version negotiation: a server
/// without `/api/v1/version` offers every feature but these.
const ADDED_SINCE_NEGOTIATION: &[&str] = &[
    feature::COMPONENTS,
    feature::BACKUP_PAGES,
    feature::TABLES,
    feature::TABLE_POLICIES,
    feature::SESSION,
    feature::TABLE_CHANGES,
];

/// The names of the API's features, one per group of routes.
pub mod feature {
    /// `/api/v1/backups` and `/api/v1/backups/{name}`: list, show, start and delete
    /// backups. Every server has it: a client asks for it to learn that the server speaks
    /// this API version at all.
    pub const BACKUPS: &str = "backups";
    /// `POST /api/v1/restores`: restores of the cluster's nodes.
    pub const RESTORES: &str = "restores";
    /// `GET /api/v1/backups/{name}/files`: a backup's entries, page by page (`strata ls`).
    pub const FILES: &str = "files";
    /// `POST` and `DELETE /api/v1/backups/{name}/pin`: keep a backup from retention and
    /// delete, or let it go again.
    pub const PIN: &str = "pin";
    /// `POST /api/v1/backups/{name}/copy`: a backup copied to another storage.
    pub const COPY: &str = "copy";
    /// `POST /api/v1/backups/{name}/drill`: a restore drill on the server
    /// (`strata verify --restore`).
    pub const DRILL: &str = "drill";
    /// `POST /api/v1/verify`: backups and their data checked.
    pub const VERIFY: &str = "verify";
    /// `POST /api/v1/cleanup`: the retention policy applied.
    pub const CLEANUP: &str = "cleanup";
    /// `POST /api/v1/gc`: data no backup references removed.
    pub const GC: &str = "gc";
    /// `POST /api/v1/repair/index` and `POST /api/v1/repair/backups`.
    pub const REPAIR: &str = "repair";
    /// `GET /api/v1/wal` and `POST /api/v1/wal/verify`: archived WAL listed and checked.
    pub const WAL: &str = "wal";
    /// `/api/v1/operations`: running and recent operations, and the events of one.
    pub const OPERATIONS: &str = "operations";
    /// `GET /api/v1/schedules`: the scheduled jobs, their next and last runs.
    pub const SCHEDULES: &str = "schedules";
    /// `GET /api/v1/audit`: the audit log.
    pub const AUDIT: &str = "audit";
    /// `GET /api/v1/status`: nodes, locks and running operations (`strata status`).
    pub const STATUS: &str = "status";
    /// Restores of chosen components (`--component`), with rename rules and dry runs: a
    /// server without it would ignore them and restore everything, for real.
    pub const COMPONENTS: &str = "components";
    /// `GET /api/v1/backups?limit=&cursor=`: pages of backups, newest first, with the
    /// next page's cursor in `x-next-cursor`, of every storage of the server.
    pub const BACKUP_PAGES: &str = "backup-pages";
    /// `POST /api/v1/backups/{name}/tables`: tables (or a database) of a PostgreSQL backup
    /// brought back into the live database (`strata restore --table`).
    pub const TABLES: &str = "tables";
    /// `/api/v1/tables/...`: table retention policies listed, planned and edited, and
    /// their history (`strata tables list|plan|history|edit --server`).
    pub const TABLE_POLICIES: &str = "table-policies";
    /// `GET /api/v1/session`: the name and role of the token that asks.
    pub const SESSION: &str = "session";
    /// `POST` and `DELETE /api/v1/tables/policies`, `POST /api/v1/tables/run`: table
    /// retention policies added and removed, and runs (`strata tables add|rm|run
    /// --server`).
    pub const TABLE_CHANGES: &str = "table-changes";
}

/// `GET /api/v1/session`: who the caller is to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionInfo {
    /// The name of the token presented (as the audit log records it, without `token:`).
    pub token: String,
    /// `admin` (may change things) or `read` (GET requests only).
    pub role: String,
}

/// `GET /api/v1/version`: what the server speaks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VersionInfo {
    /// The API's major version ([`API_VERSION`]).
    pub api: u32,
    /// The server's strata version.
    pub server: String,
    /// The features the server offers.
    pub features: Vec<String>,
}

impl VersionInfo {
    /// What this build serves.
    pub fn current() -> VersionInfo {
        VersionInfo {
            api: API_VERSION,
            server: env!("CARGO_PKG_VERSION").into(),
            features: FEATURES.iter().map(|f| f.to_string()).collect(),
        }
    }

    /// What a server from before `/api/v1/version` existed offers: API 1 with the
    /// features of that release (all but [`ADDED_SINCE_NEGOTIATION`]).
    pub fn before_negotiation() -> VersionInfo {
        VersionInfo {
            api: 1,
            server: "0.1.0 (before version negotiation)".into(),
            features: FEATURES
                .iter()
                .filter(|f| !ADDED_SINCE_NEGOTIATION.contains(f))
                .map(|f| f.to_string())
                .collect(),
        }
    }

    /// Whether the server offers `feature`.
    pub fn offers(&self, feature: &str) -> bool {
        self.features.iter().any(|f| f == feature)
    }
}

/// The reply to a started operation.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Started {
    /// The operation as it started: its id is what `/api/v1/operations/{id}` and its
    /// `events` follow until it ends.
    pub operation: OperationStatus,
}

/// A backup as the API lists it: its summary, whether it is pinned, and its last
/// verification.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackupListing {
    /// The backup itself; its fields are the listing's own in JSON (flattened).
    #[serde(flatten)]
    pub summary: BackupSummary,
    /// The storage that holds it (absent from servers that saw only their default one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    /// Pinned: no retention policy removes it and delete refuses it.
    pub pinned: bool,
    /// The last verification, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerifyRecord>,
}

/// Paging of `GET /api/v1/backups`. With `limit` or `cursor`: one page, newest first,
/// costing what the page needs, the next page's cursor in the `x-next-cursor` header
/// (absent on the last page). Without either: every backup, oldest first (`offset`, kept
/// for older clients, skips the oldest ones).
#[derive(Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// At most this many backups: 1 to 1000 (default 50 with `cursor`; all without).
    #[param(minimum = 0)]
    pub limit: Option<u32>,
    /// Where the page starts: the `x-next-cursor` of the previous page.
    #[param(max_length = 300)]
    pub cursor: Option<String>,
    /// Older form, oldest first: skip this many first (reads every backup's entry).
    #[param(minimum = 0)]
    pub offset: Option<u32>,
}

/// `POST /api/v1/restores`: the backup and, beside it, the fields of its
/// [`RestorePlan`]. The plan's fields are spelled out here rather than flattened in, so an
/// unknown field (`includ`, `dry-run`) is refused instead of silently dropped: a typo must
/// never turn a partial or trial restore into a whole one.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreBody {
    /// Backup name, unique prefix, or `latest`.
    #[schema(pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")]
    pub backup: String,
    /// Restore only this node of the backup.
    #[serde(default)]
    pub node: Option<String>,
    /// Backup node -> target node; unmapped nodes go to the node of the same name.
    #[serde(default)]
    pub map: BTreeMap<String, String>,
    /// Only entries at or below this path.
    #[serde(default)]
    pub include: Option<String>,
    /// Restore only these components (all when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<String>,
    /// `OLD=NEW` rewrites of names and endpoints for stores that hold them (etcd).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rename: Vec<String>,
    /// Say what would change, write nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// For a PostgreSQL backup: the recovery target and what to do there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoveryPlan>,
    /// For a ClickHouse backup: only this table (`DB.TABLE`) back into the live cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// With `table`: the name it comes back under (default `<table>_restored`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_as: Option<String>,
    /// For a ClickHouse backup: remove the replicas ZooKeeper still holds that the
    /// restored tables would meet and no running server holds, instead of refusing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drop_stale_replicas: bool,
    /// With `table` (ClickHouse): only these partitions, by partition id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<String>,
}

impl RestoreBody {
    /// The body of a restore of `backup` by `plan`.
    pub fn new(backup: String, plan: RestorePlan) -> RestoreBody {
        let RestorePlan {
            node,
            map,
            include,
            components,
            rename,
            dry_run,
            recovery,
            table,
            table_as,
            drop_stale_replicas,
            partitions,
        } = plan;
        RestoreBody {
            backup,
            node,
            map,
            include,
            components,
            rename,
            dry_run,
            recovery,
            table,
            table_as,
            drop_stale_replicas,
            partitions,
        }
    }

    /// The backup it names and the plan.
    pub fn into_parts(self) -> (String, RestorePlan) {
        let RestoreBody {
            backup,
            node,
            map,
            include,
            components,
            rename,
            dry_run,
            recovery,
            table,
            table_as,
            drop_stale_replicas,
            partitions,
        } = self;
        let plan = RestorePlan {
            node,
            map,
            include,
            components,
            rename,
            dry_run,
            recovery,
            table,
            table_as,
            drop_stale_replicas,
            partitions,
        };
        (backup, plan)
    }
}

/// The body of a call that takes no options (`POST /api/v1/backups`, a pin, a drill, a
/// WAL check): empty, `{}` or `null`. Anything else is refused, so a call that was meant
/// to say something the server does not know is never run without it.
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoOptions {}

/// `POST /api/v1/verify`.
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyBody {
    /// One backup (name, prefix or `latest`); all when absent.
    #[serde(default)]
    pub backup: Option<String>,
    /// Read and check every blob.
    #[serde(default)]
    pub read_data: bool,
    /// Read this percentage of the packs (0 < p <= 100), a different choice each run.
    #[serde(default)]
    pub read_data_subset: Option<f64>,
}

/// `POST /api/v1/cleanup`.
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CleanupBody {
    /// Show what would be kept and removed; change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// A policy instead of the server's `[retention]`.
    #[serde(default)]
    pub policy: Option<RetentionConfig>,
}

/// `POST /api/v1/gc`.
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GcBody {
    /// Report what would be deleted; delete nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// `POST /api/v1/repair/index` and `POST /api/v1/repair/backups`.
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RepairBody {
    /// Report what would be done; change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// `GET /api/v1/backups/{name}/files`: which entries, and which page of them.
#[derive(Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FilesQuery {
    /// Only this node (default: every node).
    pub node: Option<String>,
    /// Only entries at or below this path (`base/16384`).
    pub path: Option<String>,
    /// At most this many entries (default and maximum 10000).
    #[param(minimum = 0, maximum = 10000)]
    pub limit: Option<u32>,
    /// Skip this many first.
    #[param(minimum = 0)]
    pub offset: Option<u64>,
}

/// Most entries one page of a file listing holds, so a node of millions of files never
/// becomes one reply of hundreds of megabytes.
pub const FILES_PAGE: usize = 10_000;

/// `POST /api/v1/backups/{name}/copy`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CopyBody {
    /// The target storage, by its name in the server's configuration.
    pub to: String,
}

/// `POST /api/v1/backups/{name}/tables`: what to bring back from a PostgreSQL backup into
/// the live database (a dump file is a command-line option only: the API never writes
/// files the caller names on the server's host).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TableRestoreBody {
    /// The database the tables are in.
    pub database: String,
    /// `SCHEMA.TABLE` each; empty: the whole database.
    #[serde(default)]
    pub tables: Vec<String>,
    /// The name the one table (or the database) comes back under; default
    /// `<name>_restored`.
    #[serde(default, rename = "as", skip_serializing_if = "Option::is_none")]
    pub rename: Option<String>,
    /// The backup node to take them from (default: its PostgreSQL node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Recover to this time (`2026-11-23 05:00:00+00`); with none of the targets, to the
    /// end of the archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_time: Option<String>,
    /// Recover to this WAL position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_lsn: Option<String>,
    /// Recover to this transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_xid: Option<String>,
    /// Recover only to the backup's consistency point.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub target_immediate: bool,
}

impl TableRestoreBody {
    /// The body that asks a server for `request` (its dump and stop stay here).
    pub fn from_request(request: strata_coordinator::table_restore::TableRestore) -> Self {
        use strata_postgres::recovery::Target;
        let target = request.target;
        TableRestoreBody {
            database: request.database,
            tables: request.tables,
            rename: request.rename,
            node: request.node,
            target_immediate: target == Target::Immediate,
            target_time: match &target {
                Target::Time(t) => Some(t.clone()),
                _ => None,
            },
            target_lsn: match &target {
                Target::Lsn(l) => Some(l.clone()),
                _ => None,
            },
            target_xid: match target {
                Target::Xid(x) => Some(x),
                _ => None,
            },
        }
    }

    /// The request the use case takes; a body naming two targets is refused.
    // String: a validator of the body; callers wrap the line at once (CoordinatorError::Invalid).
    pub fn into_request(self) -> Result<strata_coordinator::table_restore::TableRestore, String> {
        use strata_postgres::recovery::Target;
        let targets = [
            self.target_time.is_some(),
            self.target_lsn.is_some(),
            self.target_xid.is_some(),
            self.target_immediate,
        ];
        if targets.iter().filter(|t| **t).count() > 1 {
            return Err(
                "give at most one of target_time, target_lsn, target_xid and target_immediate"
                    .into(),
            );
        }
        let target = Target::from_options(
            self.target_time,
            self.target_lsn,
            self.target_xid,
            self.target_immediate,
        );
        // The same checks as the command line's (`strata_postgres::recovery_input`).
        let target = strata_postgres::recovery::RecoveryPlan::unless_default(
            target,
            strata_postgres::recovery::TargetAction::Promote,
            true,
            false,
        )
        .map_err(|e| e.to_string())?
        .map_or(Target::Latest, |plan| plan.target);
        Ok(strata_coordinator::table_restore::TableRestore {
            database: self.database,
            tables: self.tables,
            rename: self.rename,
            dump: None,
            target,
            node: self.node,
            stop: None,
        })
    }
}

/// `GET /api/v1/audit`.
#[derive(Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// From this moment: RFC 3339 time, a date, or an age such as `2h` or `7d`.
    pub since: Option<String>,
    /// At most this many entries, the newest (default 1000).
    #[param(minimum = 0)]
    pub limit: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_table_restore_asked_of_a_server_reaches_it_with_its_target() {
        use strata_postgres::recovery::Target;
        let targets = [
            Target::Latest,
            Target::Immediate,
            Target::Time("2026-11-23 05:00:00+00".into()),
            Target::Lsn("0/3000060".into()),
            Target::Xid("742".into()),
        ];
        for target in targets {
            let request = strata_coordinator::table_restore::TableRestore {
                database: "shop".into(),
                tables: vec!["public.orders".into()],
                rename: Some("orders_back".into()),
                dump: None,
                target: target.clone(),
                node: Some("db1".into()),
                stop: None,
            };
            let back = TableRestoreBody::from_request(request)
                .into_request()
                .unwrap();
            assert_eq!(back.target, target);
            assert_eq!(
                (back.database, back.tables),
                ("shop".into(), vec!["public.orders".into()])
            );
            assert_eq!(
                (back.rename, back.node),
                (Some("orders_back".into()), Some("db1".into()))
            );
        }
    }

    #[test]
    fn a_restore_body_is_the_backup_beside_the_plan() {
        let body = RestoreBody::new(
            "latest".into(),
            RestorePlan {
                node: Some("db1".into()),
                map: [("db1".to_string(), "db9".to_string())].into(),
                include: Some("base".into()),
                components: Vec::new(),
                rename: Vec::new(),
                dry_run: false,
                recovery: None,
                table: None,
                table_as: None,
                drop_stale_replicas: false,
                partitions: Vec::new(),
            },
        );
        let wire = serde_json::to_value(&body).unwrap();
        assert_eq!(
            wire,
            json!({"backup": "latest", "node": "db1", "map": {"db1": "db9"}, "include": "base"})
        );
        let back: RestoreBody = serde_json::from_value(wire).unwrap();
        let (backup, plan) = back.into_parts();
        assert_eq!(
            (backup.as_str(), plan.map["db1"].as_str()),
            ("latest", "db9")
        );
        // The bodies older clients sent (an explicit null recovery) still read.
        let old =
            json!({"backup": "x", "node": null, "map": {}, "include": null, "recovery": null});
        assert!(serde_json::from_value::<RestoreBody>(old).is_ok());
    }

    #[test]
    fn a_restore_body_refuses_a_typo_instead_of_restoring_everything() {
        for (body, field) in [
            (
                json!({"backup": "latest", "includ": "sub/small.txt"}),
                "includ",
            ),
            (json!({"backup": "latest", "dry-run": true}), "dry-run"),
            (
                json!({"backup": "latest", "recovery": {"target": "latest", "action": "promote", "start": true, "strat": false}}),
                "strat",
            ),
        ] {
            let err = serde_json::from_value::<RestoreBody>(body).unwrap_err();
            assert!(err.to_string().contains(&format!("`{field}`")), "{err}");
        }
        for body in [json!({}), json!(null), json!({"x": 1})] {
            let ok = serde_json::from_value::<NoOptions>(body.clone()).is_ok();
            assert_eq!(ok, body == json!({}), "{body}");
        }
    }

    #[test]
    fn bodies_refuse_fields_they_do_not_know() {
        for body in [
            json!({"dry_run": true, "extra": 1}),
            json!({"dry_run": "yes"}),
        ] {
            assert!(
                serde_json::from_value::<GcBody>(body.clone()).is_err(),
                "{body}"
            );
            assert!(serde_json::from_value::<RepairBody>(body).is_err());
        }
        assert!(serde_json::from_value::<VerifyBody>(json!({"read_data_subset": "5%"})).is_err());
        let empty: VerifyBody = serde_json::from_value(json!({})).unwrap();
        assert!(empty.backup.is_none() && !empty.read_data && empty.read_data_subset.is_none());
    }

    #[test]
    fn this_build_offers_every_feature_and_reads_an_older_server_as_api_one() {
        let current = VersionInfo::current();
        assert_eq!(current.api, API_VERSION);
        assert!(FEATURES.iter().all(|f| current.offers(f)));
        assert!(!current.offers("no-such-feature"));
        let back: VersionInfo =
            serde_json::from_value(serde_json::to_value(&current).unwrap()).unwrap();
        assert_eq!(back, current);
        let before = VersionInfo::before_negotiation();
        assert_eq!(before.api, 1);
        assert!(
            !before.offers(feature::COMPONENTS),
            "added after negotiation"
        );
    }
}
