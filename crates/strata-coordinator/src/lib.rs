//! Cluster operations of strata: the use cases every edge (the command line, the API
//! server, the scheduler) calls, over a repository and the nodes.
//!
//! The coordinator turns "back up the cluster" into node snapshots that share one write
//! pipeline (so a chunk held by several nodes is stored once), stores each node manifest,
//! and writes the backup summary last: a backup is visible only once it is whole, and its
//! status says honestly whether every node made it. It also resolves backup names
//! (`latest` means the newest *complete* backup), restores, and verifies.
//!
//! This file is the index; docs/architecture.md ("The coordinator's rooms") draws the
//! modules and their arrows, which point down only (`scripts/module-cycles.py`).
//!
//! The whole path (init, backup, list, restore, verify) runs through the facade in
//! strata-api's example; one rule of this crate on its own, `cleanup --keep-daily 2`:
//!
//! ```
//! use strata_coordinator::config::RetentionConfig;
//! use strata_coordinator::retention::{decide, Candidate};
//!
//! let at = |day, hour| {
//!     chrono::NaiveDate::from_ymd_opt(2026, 11, day)
//!         .and_then(|d| d.and_hms_opt(hour, 0, 0))
//!         .unwrap()
//!         .and_utc()
//! };
//! let backup = |name: &str, day, hour| Candidate {
//!     name: name.into(),
//!     started: at(day, hour),
//!     complete: true,
//!     pinned: false,
//! };
//! let policy = RetentionConfig { keep_daily: Some(2), ..RetentionConfig::default() };
//! let backups = [backup("a", 26, 1), backup("b", 27, 1), backup("c", 27, 9)];
//! let decisions = decide(&policy, &backups).unwrap();
//! // The newest of each of the last two days.
//! let kept: Vec<&str> = decisions.iter().filter(|d| d.keep).map(|d| d.name.as_str()).collect();
//! assert_eq!(kept, ["a", "c"]);
//! ```

#![deny(missing_docs)]

// Composition and edges' entry points.
pub mod jobs;
pub mod keys;
pub mod setup;

// Operations over the nodes, and the use cases on a repository.
pub mod actions;
pub mod coordinator;

// What a backup is made of, and the requests' checks.
pub mod assign;
pub mod component;
pub mod input;
pub mod mapping;
/// Hooks live in their own crate, shared with node agents.
pub use strata_hooks as hooks;
/// The plugins live in `strata-plugins`, one module per engine.
pub use strata_plugins as plugin;

// Reading and reporting.
pub mod audit;
pub mod browse;
pub mod catalog;
pub mod events;
pub mod listing;
/// The listing cache of a server, at the path it had before it joined [`listing`].
pub use listing::cache as listing_cache;
mod resolve;
pub mod verified;
pub mod webhooks;

// Keeping a repository: retention, garbage collection, repair, copies, verification.
pub mod copy;
/// The ledger of an engine's parts lives with the plugins that keep one.
pub use strata_plugins::engine_parts;
pub mod external_delete;
/// Garbage collection lives in `strata-gc`, with the protocol it trusts.
pub use strata_gc as gc;
pub mod migrate;
pub mod pins;
pub mod repair;
pub mod restore;
pub mod retention;
pub mod schedule;
pub mod scratch_space;
pub mod table_restore;
pub mod verify;

// Leaves: plain data and primitives every module above may use.
/// The configuration's sections, plain data in `strata-cluster`; [`config_file`] reads
/// and checks a file whole.
pub use strata_cluster::config;
pub mod config_file;
mod error;
/// The cluster and gc locks and writers' marks live in `strata-gc` (what may delete
/// data, and when).
pub use strata_gc::lock;
pub mod mask;
pub mod names;
/// A node, a running operation and a restore's plan are the cluster's vocabulary, in
/// `strata-cluster`.
pub use strata_cluster::{node, node_calls, operation, restore_plan};
pub mod remote;
mod stats;
pub mod storage;

pub use error::{CoordinatorError, CoordinatorResult};
pub use resolve::{
    damaged_match, names_a_point_in_time, resolve_backup, resolve_backup_for, target_before_backup,
};
/// Error chains as one line: "what: why: why".
pub use strata_util::error_chain;
