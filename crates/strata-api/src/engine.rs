//! The engine's vocabulary beside [`crate::Cluster`]: the option, result and error types
//! of its methods, and the few use cases a command runs on this host without a cluster
//! (WAL push and fetch, the archiver, key changes). Re-exported here so a program, the
//! `strata` binary first, depends on the engine through this crate only: the binary's
//! Cargo.toml names no engine crate, so the compiler keeps it that way.

/// The configuration (`strata.toml`): its types, defaults and parse errors, and the file
/// as a whole (the coordinator's part and the sections beside it).
pub mod config {
    pub use crate::config_file::{
        default_text, defaults, find, load, local_server_url, parse, pgq_ticker, pgq_ticker_file,
        Sections, Shown,
    };
    pub use strata_coordinator::config::{
        default_config, parse_error, Config, ConfigError, PolicyOverrides, SecretSource,
        StorageConfig, DEFAULT_CONFIG_END,
    };
}

/// Failures and their one classification (exit codes and HTTP statuses).
pub mod failure {
    pub use strata_agent::AgentError;
    pub use strata_cluster::node_api::ApiError;
    pub use strata_coordinator::{error_chain, CoordinatorError};
    pub use strata_failure::{exit, ErrorCode};
    pub use strata_repo::RepoError;
    pub use strata_store::StoreError;

    /// What to do about a repository failure, for those where strata knows it: a
    /// suffix to its message (empty when there is no advice).
    pub fn repo_advice(err: &RepoError) -> &'static str {
        match err {
            RepoError::Store(e) => store_advice(e),
            _ => "",
        }
    }

    /// What to do about a storage failure: check the way to the storage, or grant the
    /// credentials what the operation needs.
    pub fn store_advice(err: &StoreError) -> &'static str {
        match err {
            StoreError::GaveUp { .. } | StoreError::Transient { .. } => {
                " (check the storage's url or endpoint and the network)"
            }
            StoreError::PermissionDenied { .. } => {
                " (grant the credentials this operation on this prefix: the bucket policy, IAM role, SAS or service account)"
            }
            _ => "",
        }
    }

    /// What to do about a cluster operation's failure (see [`repo_advice`]).
    pub fn advice(err: &CoordinatorError) -> &'static str {
        match err {
            CoordinatorError::Repo(e) | CoordinatorError::Agent(AgentError::Repo(e)) => {
                repo_advice(e)
            }
            _ => "",
        }
    }
}

/// What backups, restores and checks report.
pub mod reports {
    pub use strata_agent::progress::Progress;
    pub use strata_coordinator::browse::FileEntry;
    pub use strata_coordinator::catalog::Located;
    pub use strata_coordinator::coordinator::{RestoreOutcome, RestorePlan};
    pub use strata_coordinator::gc::GcReport;
    pub use strata_coordinator::operation::{OpState, OperationStatus};
    pub use strata_coordinator::repair::{BackupsRepairReport, IndexRepairReport};
    pub use strata_coordinator::retention::CleanupReport;
    pub use strata_coordinator::verified::VerifyRecord;
    pub use strata_coordinator::verify::{DataCheck, VerifyReport};
    pub use strata_repo::format::FORMAT_VERSION;
    pub use strata_repo::summary::{BackupSummary, ComponentStatus, NodeSummary};
}

/// What a request may ask, checked where the engine checks it.
pub mod requests {
    pub use crate::request_args::{data_check, node_map, RecoveryArgs};
    pub use strata_agent::restore::RestoreOptions;
    pub use strata_coordinator::actions::parse_percent;
    pub use strata_coordinator::input::check_include;
    pub use strata_coordinator::listing::PageQuery;
    pub use strata_coordinator::table_restore::TableRestore;
}

/// Table lifecycle runs: the storages and the reports their end sends (audit, webhooks).
pub mod runs {
    pub use strata_coordinator::audit::local_actor;
    pub use strata_coordinator::events::{Ending, Events, TablesRunReport};
    pub use strata_coordinator::remote::ApiClient;
    pub use strata_coordinator::storage::Storage;
    pub use strata_coordinator::webhooks::Webhooks;
    pub use strata_store::DynStore;
}

/// Secrets masked for showing (connection strings, a configuration).
pub use strata_coordinator::mask;

/// Use cases that run on this host without a cluster: the repository's keys (`keys`).
pub use strata_coordinator::keys;
/// PostgreSQL's `archive_command` and `restore_command`, the archiver that batches them
/// (`wal::archiver`), and the archive's listing, verification and retention: `strata-wal`.
pub use strata_wal as wal;

#[cfg(test)]
mod tests {
    use super::failure::ErrorCode;
    use strata_tables::ErrorKind;

    /// Each kind once: the server answers it with this code, and the command line exits
    /// with that code's exit code.
    #[test]
    fn each_kind_of_tables_failure_has_one_api_code() {
        for (kind, code) in [
            (ErrorKind::BadInput, ErrorCode::BadRequest),
            (ErrorKind::NotFound, ErrorCode::NotFound),
            (ErrorKind::Busy, ErrorCode::Busy),
            (ErrorKind::Failed, ErrorCode::Failed),
        ] {
            assert_eq!(kind.code(), code, "{kind:?}");
        }
    }
}
