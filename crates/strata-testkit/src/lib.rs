//! Test infrastructure shared by strata's integration tests, so each crate can keep its
//! own tests beside it without copying the harness: real PostgreSQL servers and sites
//! ([`pg`]), guards that stop what a test started however it ends ([`process`]),
//! bounded polling ([`wait`]), deterministic data and tree comparison ([`data`],
//! [`tree`]), scratch repositories ([`repo`]), loopback ports ([`net`]), a raw HTTP/1.1
//! client and a server process runner ([`http`]), fakes of Camunda 8's backup APIs
//! ([`camunda`]), a request gate ([`gate`]) and
//! throw-away TLS certificates ([`tls`]).
//!
//! A dev-dependency only (`publish = false`): nothing here ships. What needs the `strata`
//! binary (`env!("CARGO_BIN_EXE_strata")`) stays in `crates/strata/tests/common`, built on
//! this kit, because that path exists only inside the binary crate's tests.

// A test harness signals its own children (kill(2)), asks whether it runs as root and
// swaps names atomically (renameat2) for the attack tests: each block says why it is sound.
#![allow(unsafe_code)]
#![deny(missing_docs)]

pub mod camunda;
pub mod chaos;
pub mod clickhouse;
pub mod data;
pub mod etcd;
pub mod gate;
pub mod http;
pub mod intercept;
pub mod net;
pub mod pg;
pub mod process;
pub mod repo;
pub mod tls;
pub mod tree;
pub mod wait;

pub use data::{pseudo_random, table_pages};
pub use net::{dead_url, free_port};
pub use process::{assert_success, KillOnDrop};
pub use wait::{wait_for, wait_for_async};
