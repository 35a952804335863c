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
//!
//! ```
//! use strata_testkit::tree::{assert_same_tree, copy_tree, realistic_tree};
//!
//! // A source tree of every kind of entry, copied, then compared attribute by attribute
//! // (what a restore test asserts of its target).
//! let dir = tempfile::tempdir().unwrap();
//! let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
//! realistic_tree(&src);
//! copy_tree(&src, &dst);
//! assert_same_tree(&src, &dst);
//! // Deterministic data: the same bytes on every run and machine.
//! assert_eq!(strata_testkit::pseudo_random(64, 7), strata_testkit::pseudo_random(64, 7));
//! ```

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

/// The test Python (`STRATA_TEST_PYTHON`) when it can import `module`
/// (scripts/install-test-servers.sh installs what the tests use). Without it: a panic
/// under `STRATA_REQUIRE_TOOLS` (the test command sets it), else `None` and a SKIPPED
/// line.
pub fn python_with(module: &str) -> Option<String> {
    let python = std::env::var("STRATA_TEST_PYTHON")
        .ok()
        .filter(|p| std::path::Path::new(p).exists());
    let has_module = python.as_ref().is_some_and(|p| {
        std::process::Command::new(p)
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if has_module {
        return python;
    }
    if std::env::var_os("STRATA_REQUIRE_TOOLS").is_some() {
        panic!(
            "{module} is not installed in $STRATA_TEST_PYTHON: run scripts/install-test-servers.sh"
        );
    }
    eprintln!("SKIPPED: a check with {module} (not installed; scripts/install-test-servers.sh)");
    None
}
