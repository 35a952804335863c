//! `strata wal-push`, `wal-fetch`, `wal list|verify|archiver|status|prefetch`: the
//! commands PostgreSQL and operators run around the WAL archive.
//! The work is in `strata_api::wal`; this parses, calls, prints and picks the
//! exit code PostgreSQL acts on.

use crate::cli::WalCommand;
use crate::context::{CommandResult, Context};
use crate::failure::{code, Failure};
use crate::output::print_json;
use crate::output::size;
use std::path::Path;
use strata_api::wal::{self, archiver, Pushed, WalError};

/// Exit code of `wal-fetch` for anything but "not in the archive": above 125, which makes
/// PostgreSQL stop recovery instead of taking the failure for the end of the archive.
const FETCH_ABORT: u8 = 126;

impl Context {
    /// `strata wal-push PATH`.
    pub(crate) async fn wal_push(&self, path: &Path) -> CommandResult {
        let storage = self.storage()?;
        let outcomes = wal::push(&self.config, &storage.store, self.local.repo(), path)
            .await
            .map_err(|err| match err {
                WalError::Open(err) => Failure::from(err),
                other => Failure::new(other.code().exit_code(), crate::failure::chain(&other)),
            })?;
        for outcome in &outcomes {
            self.say(match outcome {
                Pushed::Stored { name, bytes } => format!("archived {name} ({})", size(*bytes)),
                Pushed::AlreadyArchived { name } => {
                    format!("{name} was already archived (same content)")
                }
                Pushed::StoredAgain { name, bytes } => format!(
                    "archived {name} again ({}): its record was there but its data was missing",
                    size(*bytes)
                ),
                Pushed::Dropped { name, why, waiting_bytes } => {
                    // Even with -q: this goes to PostgreSQL's log, where operators look.
                    eprintln!(
                        "strata: WARNING: DROPPED WAL segment {name} without archiving it: archiving failed ({why}) while {} of WAL waited, over postgres.wal_queue_max_mib = {}. Point-in-time recovery across it is impossible: take a backup once archiving works again",
                        size(*waiting_bytes),
                        self.config.postgres.wal_queue_max_mib
                    );
                    continue;
                }
            });
        }
        Ok(0)
    }

    /// `strata wal-fetch NAME DEST`: exit 1, quietly, when the archive lacks the file
    /// (PostgreSQL asks for files past the end all the time); [`FETCH_ABORT`] for any
    /// other failure (configuration, password, storage), so recovery stops, not ends.
    pub(crate) async fn wal_fetch(&self, name: &str, dest: &Path) -> CommandResult {
        let abort = |f: Failure| Failure::new(FETCH_ABORT, f.message);
        let store = self.storage().map_err(abort)?.store;
        match wal::fetch(&self.config, &store, self.local.repo(), name, dest).await {
            Ok(fetched) => {
                if !fetched.from_spool && self.config.postgres.wal_prefetch {
                    self.spawn_prefetcher(name);
                }
                self.say(format!("restored {name} ({})", size(fetched.bytes)));
                Ok(0)
            }
            Err(WalError::NotFound(_)) => Ok(code::FAILED),
            Err(WalError::Open(err)) => Err(abort(err.into())),
            Err(other) => Err(Failure::new(FETCH_ABORT, crate::failure::chain(&other))),
        }
    }

    /// `strata wal list|verify`.
    pub(crate) async fn wal(&self, command: WalCommand) -> CommandResult {
        match command {
            WalCommand::List => {
                let listing = self.cluster().wal_list().await?;
                if self.global.json {
                    print_json(&listing);
                    return Ok(0);
                }
                listing.lines().iter().for_each(|line| self.say(line));
                Ok(if listing.broken() { code::DAMAGED } else { 0 })
            }
            WalCommand::Archiver => self.wal_archiver().await,
            WalCommand::Status => self.wal_archiver_status().await,
            WalCommand::Prefetch { after } => {
                let store = self.storage()?.store;
                eprintln!(
                    "strata: prefetching the WAL after {after} beside recovery (until it asks for nothing for {} s)",
                    self.config.postgres.wal_prefetch_idle_secs
                );
                let done = wal::prefetch(&self.config, &store, self.local.repo(), &after)
                    .await
                    .map_err(|err| Failure::new(code::FAILED, crate::failure::chain(&err)))?;
                if let Some(done) = done {
                    self.say(format!(
                        "prefetched {} WAL segments ({}) beside recovery",
                        done.segments,
                        size(done.bytes)
                    ));
                }
                Ok(0)
            }
            WalCommand::Verify => {
                let report = self.cluster().wal_verify().await?;
                if self.global.json {
                    print_json(&report);
                } else {
                    for bad in &report.damaged {
                        eprintln!("strata: damaged: {}: {}", bad.name, bad.why);
                    }
                    let damaged = report.damaged.len();
                    self.say(format!(
                        "{} WAL files read back, {damaged} damaged",
                        report.checked
                    ));
                }
                Ok(if report.damaged.is_empty() {
                    0
                } else {
                    code::DAMAGED
                })
            }
        }
    }

    /// `strata wal archiver`: serves until SIGTERM or SIGINT.
    async fn wal_archiver(&self) -> CommandResult {
        self.here_only("the WAL archiver runs beside PostgreSQL on this host: drop --server")?;
        let storage = self.storage()?;
        let repo = self.local.repo().await?;
        let listening = |socket: &Path| {
            eprintln!(
                "strata: the WAL archiver listens at {} (archive_command = 'strata wal-push %p' hands it segments)",
                socket.display()
            );
        };
        let config = self.config.clone();
        strata_api::serve_wal_archiver(config, storage.store, repo, listening).await?;
        eprintln!("strata: the WAL archiver stopped");
        Ok(0)
    }

    /// `strata wal status`.
    async fn wal_archiver_status(&self) -> CommandResult {
        let socket = archiver::socket_path(&self.config);
        let status = archiver::client::status(&socket, std::time::Duration::from_secs(10))
            .await
            .map_err(|err| Failure::new(code::FAILED, crate::failure::chain(&err)))?;
        let Some(status) = status else {
            return Err(Failure::new(
                code::FAILED,
                format!(
                    "no WAL archiver listens at {}: `wal-push` archives by itself (start one with `strata wal archiver`)",
                    socket.display()
                ),
            ));
        };
        if self.global.json {
            print_json(&status);
            return Ok(0);
        }
        self.say(format!(
            "WAL archiver at {}, up since {}",
            socket.display(),
            status.started
        ));
        self.say(format!(
            "archived {} files ({}) in {} batches, {} failed",
            status.archived_files,
            size(status.archived_bytes),
            status.batches,
            status.failures
        ));
        if let (Some(last), Some(at)) = (&status.last_archived, &status.last_archived_at) {
            self.say(format!("last archived {last} at {at}"));
        }
        self.say(format!(
            "lag: {} segments ready, the oldest {} s old; {} pushes queued",
            status.ready_segments, status.oldest_ready_secs, status.queued
        ));
        if let Some(failure) = &status.last_failure {
            self.say(format!("last failure: {failure}"));
        }
        if let Some(last) = &status.dropped.last {
            eprintln!(
                "strata: WARNING: {} WAL segments were acknowledged WITHOUT being archived (postgres.wal_queue_max_mib), the last {} at {}: {}",
                status.dropped.count, last.name, last.at, last.why
            );
        }
        Ok(0)
    }

    /// Starts `strata wal prefetch --after NAME` in the background with this process's
    /// settings, its output in `<state_dir>/wal-prefetch.log`.
    fn spawn_prefetcher(&self, after: &str) {
        let g = &self.global;
        let mut settings: Vec<std::ffi::OsString> = Vec::new();
        let given = [
            (
                "--config",
                g.config.as_ref().map(|p| p.as_os_str().to_owned()),
            ),
            ("--repo", g.repo.as_ref().map(Into::into)),
            ("--storage", g.storage.as_ref().map(Into::into)),
            (
                "--state-dir",
                g.state_dir.as_ref().map(|p| p.as_os_str().to_owned()),
            ),
        ];
        for (option, value) in given {
            if let Some(value) = value {
                settings.extend([option.into(), value]);
            }
        }
        let log = self.config.state_dir().join("wal-prefetch.log");
        strata_api::spawn_prefetcher(settings, &log, after);
    }
}
