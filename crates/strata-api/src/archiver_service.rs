//! The local WAL archiver as a service (`strata wal archiver`): it serves until SIGTERM
//! or SIGINT, and tells systemd how it stands (a unit of `Type=notify` counts it started
//! once it listens; with `WatchdogSec=` the runtime pings, so a stalled archiver is
//! restarted).

use std::path::Path;
use std::sync::Arc;
use strata_coordinator::config::Config;
use strata_coordinator::CoordinatorResult;
use strata_health::notify;
use strata_repo::Repository;
use strata_store::DynStore;

/// Serves the archiver of `config` on `store` and `repo` until SIGTERM or SIGINT (it
/// then ends the batch under way); `listening` hears the socket it listens at first.
pub async fn serve_wal_archiver(
    config: Config,
    store: DynStore,
    repo: Arc<Repository>,
    listening: impl FnOnce(&Path),
) -> CoordinatorResult<()> {
    let stop = async {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => std::future::pending().await,
        }
        notify::stopping("stopping after the batch under way");
    };
    let listening = |socket: &Path| {
        listening(socket);
        notify::ready(&format!("archiving WAL at {}", socket.display()));
        tokio::spawn(notify::watchdog());
    };
    Ok(strata_wal::archiver::serve(config, store, repo, listening, stop).await?)
}
