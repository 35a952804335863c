//! What the coordinator's handlers share: one value behind every route, `/metrics`
//! included.

use crate::errors::{failure, ApiFailure};
use std::sync::Arc;
use strata_coordinator::catalog::Catalog;
use strata_coordinator::config::Config;
use strata_coordinator::coordinator::Coordinator;
use strata_coordinator::schedule::Scheduler;
use strata_coordinator::CoordinatorError;

/// What the coordinator's handlers share.
pub struct ApiState {
    pub coordinator: Arc<Coordinator>,
    pub scheduler: Option<Arc<Scheduler>>,
    /// The server's configuration: retention policy, and what `/config` and `/check` show.
    pub config: Config,
    /// What `/config` shows (see [`crate::CoordinatorParts::config_view`]).
    pub config_view: serde_json::Value,
    /// Every configured storage, the coordinator's own first: opened at first use, so
    /// the API lists, shows and restores the backups of all of them, as the CLI does.
    pub catalog: tokio::sync::OnceCell<Catalog>,
    /// What `/metrics` says of the backups, kept between scrapes.
    pub figures: crate::figures::FigureCache,
    /// The backup listings of the storages, kept between API pages while their
    /// generation stays (see `strata_coordinator::listing_cache`).
    pub listing: strata_coordinator::listing_cache::ListingCache,
    /// Serialised pages of backups, kept while the listings they came from stay.
    pub page_bodies: crate::page_bodies::PageBodies,
    /// Requests that may have changed the repository (every call but a GET): with the
    /// finished operations, they say when the figures must be read again.
    pub writes: std::sync::atomic::AtomicU64,
}

impl ApiState {
    /// Changes whenever this server may have changed what `/metrics` shows.
    pub(crate) fn generation(&self) -> u64 {
        let finished: u64 = self.coordinator.stats().finished.values().sum();
        finished + self.writes.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl ApiState {
    /// Every configured storage (see [`ApiState::catalog`]). A storage that could not be
    /// opened the first time is left out until the server restarts, with a warning.
    pub(crate) async fn catalog(&self) -> Result<&Catalog, ApiFailure> {
        self.catalog
            .get_or_try_init(|| async {
                let password = self.config.password().map_err(CoordinatorError::from)?;
                let catalog = Catalog::open_around(
                    &self.config,
                    password.as_deref(),
                    Some(self.coordinator.repo().clone()),
                )
                .await?;
                for (name, why) in &catalog.unavailable {
                    eprintln!("strata: warning: storage {name} is not available: {why}");
                }
                Ok::<_, CoordinatorError>(catalog)
            })
            .await
            .map_err(failure)
    }
}
