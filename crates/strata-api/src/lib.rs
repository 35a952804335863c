//! strata's cluster API, one layer above the coordinator:
//!
//! - [`types`]: the request and response bodies of `/api/v1` and the API's version, which
//!   the server's handlers, its OpenAPI document and the HTTP client all use;
//! - [`Cluster`]: one interface for every cluster command, with two transports:
//!   [`InProcess`] (the use cases run here, over the configured storages and nodes) and
//!   [`Http`] (a `strata server`).
//!
//! The CLI holds a `Box<dyn Cluster>` and never asks which one it has, so each command is
//! written once: parse, call, print.

mod client;
mod events;
mod http;
mod in_process;
pub mod types;

pub use client::{BackupList, BackupRequest, Cluster, Outcome, Running};
pub use http::Http;
pub use in_process::{AskPassword, InProcess, Initialized};
