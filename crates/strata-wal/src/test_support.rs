//! What the unit tests of a push and a fetch share: a segment's name, a configuration
//! with a state directory, and an opener of a repository that is open already.

use std::path::Path;
use std::sync::Arc;
use strata_cluster::config::Config;
use strata_repo::{RepoError, Repository};

/// The first segment of timeline 1.
pub(crate) const SEGMENT: &str = "000000010000000000000001";

/// The default configuration with its state directory at `state`.
pub(crate) fn config(state: &Path) -> Config {
    Config {
        state_dir: Some(state.to_path_buf()),
        ..Config::default()
    }
}

/// What opens the repository: here it is open already.
pub(crate) async fn opened(repo: Arc<Repository>) -> Result<Arc<Repository>, RepoError> {
    Ok(repo)
}
