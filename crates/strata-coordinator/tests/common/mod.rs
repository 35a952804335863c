//! Helpers of the coordinator's integration tests: the test kit's deterministic data and
//! scratch repositories.
// Each test binary uses a subset of these helpers and re-exports.
#![allow(dead_code, unused_imports)]

pub use strata_testkit::pseudo_random;
pub use strata_testkit::repo::{fast_init, scratch_repo};
