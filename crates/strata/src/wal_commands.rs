//! `strata wal-push`, `wal-fetch`, `wal list|verify`, and the recovery options of
//! `strata restore`: the commands PostgreSQL and operators run around the WAL archive.

use crate::cli::{RecoveryArgs, WalCommand};
use crate::commands::{print_json, CommandResult, Context};
use crate::failure::{code, Failure};
use std::path::Path;
use strata_coordinator::wal::{self, WalError};
use strata_postgres::recovery::{RecoveryPlan, Target, TargetAction};
use strata_postgres::spool::Spool;
use strata_postgres::wal::{Pushed, ReadAhead};

/// Exit code of `wal-fetch` for anything but "not in the archive": above 125, which makes
/// PostgreSQL stop recovery instead of taking the failure for the end of the archive.
const FETCH_ABORT: u8 = 126;

/// The recovery plan the options ask for (`None`: the defaults of the restore).
pub(crate) fn recovery_plan(args: RecoveryArgs) -> Result<Option<RecoveryPlan>, Failure> {
    let action = TargetAction::parse(&args.target_action).ok_or_else(|| {
        Failure::new(
            code::USAGE,
            format!(
                "--target-action {:?}: use promote, pause or shutdown",
                args.target_action
            ),
        )
    })?;
    let target = if let Some(t) = args.target_time {
        Target::Time(t)
    } else if let Some(l) = args.target_lsn {
        Target::Lsn(l)
    } else if let Some(x) = args.target_xid {
        Target::Xid(x)
    } else if args.target_immediate {
        Target::Immediate
    } else {
        Target::Latest
    };
    // The same check the API makes (strata_postgres::recovery_input).
    target
        .check()
        .map_err(|e| Failure::new(code::USAGE, e.to_string()))?;
    let defaults = target == Target::Latest && action == TargetAction::Promote && !args.no_start;
    Ok((!defaults).then_some(RecoveryPlan {
        target,
        action,
        start: !args.no_start,
    }))
}

impl Context {
    /// `strata wal-push PATH`.
    pub(crate) async fn wal_push(&self, path: &Path) -> CommandResult {
        let storage = self.storage()?;
        let failure = |err: WalError| match err {
            WalError::Busy(why) => Failure::new(code::BUSY, why),
            other => Failure::new(code::FAILED, crate::failure::chain(&other)),
        };
        // The mark first, then the index: a garbage collection that ran before the mark
        // was written cannot have removed data the index read here still lists.
        let ttl = std::time::Duration::from_secs(self.config.server.lease_ttl_secs);
        let mark = wal::mark_push(storage.store.clone(), ttl)
            .await
            .map_err(failure)?;
        let repo = match self.open_storage(&storage).await {
            Ok(repo) => repo,
            Err(err) => {
                mark.release().await;
                return Err(err);
            }
        };
        let ahead = self.config.postgres.wal_push_ahead;
        let outcomes = wal::push(
            &repo,
            mark,
            path,
            ahead,
            self.config.backup.writer_options(),
        )
        .await
        .map_err(failure)?;
        for outcome in &outcomes {
            match outcome {
                Pushed::Stored { name, bytes } => {
                    self.say(format!("archived {name} ({})", crate::output::size(*bytes)))
                }
                Pushed::AlreadyArchived { name } => {
                    self.say(format!("{name} was already archived (same content)"))
                }
            }
        }
        Ok(0)
    }

    /// `strata wal-fetch NAME DEST`: from the read-ahead spool when an earlier call put
    /// it there (no repository open, no key derivation), else from the archive, reading
    /// the following segments into the spool.
    pub(crate) async fn wal_fetch(&self, name: &str, dest: &Path) -> CommandResult {
        let outcome = async {
            let storage = self.storage()?;
            let read_ahead = self.wal_read_ahead(&storage).await;
            if let Some(ra) = &read_ahead {
                ra.spool.prune(name);
                if let Ok(Some(bytes)) = ra.spool.take(name, dest) {
                    return Ok(bytes);
                }
            }
            let repo = self.open_storage(&storage).await?;
            wal::fetch(&repo, name, dest, read_ahead.as_ref())
                .await
                .map_err(|err| match err {
                    WalError::NotFound(name) => {
                        Failure::new(code::FAILED, format!("{name} is not in the archive"))
                    }
                    other => Failure::new(FETCH_ABORT, crate::failure::chain(&other)),
                })
        }
        .await;
        match outcome {
            Ok(bytes) => {
                self.say(format!("restored {name} ({})", crate::output::size(bytes)));
                Ok(0)
            }
            // Not found: quiet, PostgreSQL asks for files past the end all the time.
            Err(f) if f.code == code::FAILED => Ok(code::FAILED),
            Err(f) if f.code == FETCH_ABORT => Err(f),
            // Configuration, password, storage: recovery must stop, not end early.
            Err(f) => Err(Failure::new(FETCH_ABORT, f.message)),
        }
    }

    /// The read-ahead of `wal-fetch`, in `<state_dir>/wal-spool/<repository id>`; `None`
    /// when it is off or the repository's id cannot be read (the fetch then reports why).
    async fn wal_read_ahead(
        &self,
        storage: &strata_coordinator::storage::Storage,
    ) -> Option<ReadAhead> {
        let segments = self.config.postgres.wal_fetch_ahead;
        if segments == 0 {
            return None;
        }
        let config = strata_repo::Repository::read_config(&storage.store)
            .await
            .ok()?;
        let dir = self.config.state_dir().join("wal-spool").join(config.id);
        Some(ReadAhead {
            spool: Spool::new(dir),
            segments,
        })
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
                if listing.archive.timelines.is_empty() {
                    self.say("no WAL archived yet");
                }
                for t in &listing.archive.timelines {
                    let runs: Vec<String> = t
                        .ranges
                        .iter()
                        .map(|(a, b)| {
                            if a == b {
                                a.clone()
                            } else {
                                format!("{a} .. {b}")
                            }
                        })
                        .collect();
                    let gaps = t.ranges.len() - 1;
                    self.say(format!(
                        "timeline {}: {} segments in {} run{} ({} gap{}): {}",
                        t.timeline,
                        t.segments,
                        t.ranges.len(),
                        if t.ranges.len() == 1 { "" } else { "s" },
                        gaps,
                        if gaps == 1 { "" } else { "s" },
                        runs.join(", ")
                    ));
                }
                if !listing.archive.history_files.is_empty() {
                    self.say(format!(
                        "history files: {}",
                        listing.archive.history_files.join(", ")
                    ));
                }
                for b in &listing.backups {
                    let state = match (&b.consistent, &b.first_gap) {
                        (false, _) => {
                            "NOT restorable: WAL to make it consistent is missing".to_string()
                        }
                        (true, Some(gap)) => format!("restorable up to the gap at {gap}"),
                        (true, None) => {
                            "restorable to any point up to the newest archived WAL".into()
                        }
                    };
                    self.say(format!(
                        "backup {} (timeline {}, WAL {} .. {}): {state}",
                        b.backup, b.timeline, b.start_wal, b.stop_wal
                    ));
                }
                let broken = listing.backups.iter().any(|b| !b.consistent);
                Ok(if broken { code::DAMAGED } else { 0 })
            }
            WalCommand::Verify => {
                let report = self.cluster().wal_verify().await?;
                if self.global.json {
                    print_json(&report);
                } else {
                    for bad in &report.damaged {
                        eprintln!("strata: damaged: {}: {}", bad.name, bad.why);
                    }
                    self.say(format!(
                        "{} WAL files read back, {} damaged",
                        report.checked,
                        report.damaged.len()
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
}
