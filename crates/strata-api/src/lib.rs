//! strata's cluster API, one layer above the coordinator:
//!
//! - [`types`]: the request and response bodies of `/api/v1` and the API's version, which
//!   the server's handlers, its OpenAPI document and the HTTP client all use;
//! - [`Cluster`]: one interface for every cluster command, with two transports:
//!   [`InProcess`] (the use cases run here, over the configured storages and nodes) and
//!   [`Http`] (a `strata server`);
//! - [`Tables`]: the same for table lifecycle, with [`TablesHere`] (the engine on this
//!   host's `[tables]` database) and [`Http`];
//! - the use cases a command runs on this host only (restores into a directory, Patroni's
//!   method, the WAL archiver and prefetcher, keys), the configuration file as a whole
//!   ([`config`]), and how options and reports are read ([`requests`], [`verdicts`]).
//!
//! The CLI holds a `&dyn Cluster` (and a `&dyn Tables`) and never asks which one it has,
//! so each command is written once: parse, call, print. This crate is the engine's front door: what
//! `strata` does, a program does through it.
//!
//! ```
//! use strata_api::{BackupRequest, Cluster, InProcess};
//! use strata_coordinator::config::{Config, StorageConfig};
//! use strata_coordinator::listing::PageQuery;
//! use strata_coordinator::verify::DataCheck;
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let site = tempfile::tempdir()?;
//! std::fs::create_dir(site.path().join("data"))?;
//! std::fs::write(site.path().join("data/table"), b"rows")?;
//!
//! // A repository in a local directory; unencrypted here (the default asks a password).
//! let mut config = Config::default();
//! config.storages.insert("local".into(), StorageConfig::local(site.path().join("repo")));
//! config.state_dir = Some(site.path().join("state"));
//! config.repository.encryption = "none".into();
//! let cluster = InProcess::new(config, Box::new(|| Ok(None)), Box::new(|w| eprintln!("{w}")));
//!
//! cluster.init(|| Ok(None)).await?;
//! let data = site.path().join("data").display().to_string();
//! let request = BackupRequest { paths: vec![data], node_name: Some("db1".into()), ..Default::default() };
//! let backup = cluster.backup(request).await?.outcome.await?;
//! assert_eq!(backup.nodes[0].files, 1);
//!
//! let listed = cluster.list(PageQuery::all()).await?;
//! assert_eq!(listed.backups.len(), 1);
//!
//! let to = site.path().join("restored");
//! cluster.restore_into("latest", &to, None, Default::default()).await?;
//! assert_eq!(std::fs::read(to.join("table"))?, b"rows");
//!
//! let report = cluster.verify(None, DataCheck::All).await?;
//! assert!(report.problems.is_empty());
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod archiver_service;
mod client;
mod config_file;
mod engine;
mod events;
mod here;
mod http;
mod in_process;
mod prefetcher;
mod request_args;
mod tables;
mod tables_here;
mod tables_http;
pub mod types;
pub mod verdicts;

pub use archiver_service::serve_wal_archiver;
pub use client::{BackupList, BackupRequest, Cluster, Outcome, Running};
pub use engine::{config, failure, keys, mask, reports, requests, runs, wal};
pub use here::{skipped_into_dir, DirRestored, LaidDown, LayDownError};
pub use http::Http;
pub use in_process::{AskPassword, InProcess, Initialized};
pub use prefetcher::spawn_prefetcher;
pub use tables::{TablePlans, Tables, TablesFailure, TablesOutcome};
pub use tables_here::{tell_end, TablesHere};
