//! Pause records: a pause written durably before it is issued, so whoever comes next
//! can resume it; who holds one, and where they live.

use crate::action::*;
use crate::config::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use strata_util::valid_id;

/// A pause that was issued (or attempted) and not yet resumed, as written to
/// `<state_dir>/pauses/<id>.json` before the pause is issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PauseRecord {
    /// The file's stem: `<operation id>-<hook index>`.
    pub id: String,
    /// The hook's name.
    pub hook: String,
    /// The operation that paused.
    pub operation: String,
    /// The component paused; `None` when the pause was around the whole operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// The node paused; `None` when the pause was not tied to one node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// RFC 3339 UTC: when the pause was issued.
    pub since: String,
    /// What resumes it, with the environment it gets.
    #[schema(value_type = Object)]
    pub resume: HookAction,
    /// The environment of the pause, which the resume gets too (its phase `resume`).
    #[schema(value_type = Object)]
    pub env: HookEnv,
    /// How long one resume attempt may take, in milliseconds (the hook's `timeout`).
    pub timeout_ms: u64,
    /// How often a resume is tried before it is reported as failed (the hook's
    /// `resume_attempts`).
    pub attempts: u32,
    /// The pid of the process holding the pause, for people. Whether that process still
    /// runs is judged by [`PauseRecord::holder`], never by this pid (unless the record
    /// was written by a version that wrote no `holder`).
    pub holder_pid: u32,
    /// The holder's start time, in clock ticks since boot (field 22 of
    /// `/proc/<pid>/stat`); 0 when it could not be read. Read only for records without
    /// a `holder`.
    pub holder_start: u64,
    /// The process holding the pause, as [`strata_liveness`] judges it: it is taken for
    /// ended only when its alive file is provably released, never because `/proc` does
    /// not show it (another PID namespace, a sandbox). Absent in records of versions
    /// before it, which are judged by `holder_pid` and `holder_start` as they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub holder: Option<strata_liveness::Liveness>,
    /// The last resume's error, once one failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_error: Option<String>,
    /// The pause call answered (success or an error answer): nothing of it can land
    /// later. `false` while it runs, and for a call abandoned without an answer or cut
    /// by a crash: its resume is then sent once more, `late_pause_ms` after the first.
    #[serde(default)]
    pub pause_answered: bool,
    /// The hook's `late_pause`, in milliseconds.
    #[serde(default = "default_late_pause_ms")]
    pub late_pause_ms: u64,
    /// Resumed, but the record could not be removed (a directory that became
    /// read-only): it is never resumed again, and `status` asks for it to be deleted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resumed: bool,
}
pub(crate) fn default_late_pause_ms() -> u64 {
    30_000
}
/// A record as status and metadata show it: the resume's URL and the hook's label cut to
/// their hosts.
pub fn shown_record(record: &PauseRecord) -> PauseRecord {
    PauseRecord {
        hook: mask_label(&record.hook),
        resume: record.resume.masked(),
        resume_error: record.resume_error.as_deref().map(mask_label),
        ..record.clone()
    }
}
/// The directory of pause records under a state directory.
pub fn pauses_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("pauses")
}
/// This process's start time in clock ticks since boot (field 22 of `/proc/self/stat`),
/// which tells a live holder from a new process that reused its pid.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}
/// The pid and start time of this process.
pub(crate) fn this_process() -> (u32, u64) {
    let pid = std::process::id();
    (pid, start_time(pid).unwrap_or(0))
}
impl PauseRecord {
    /// Whether the process that holds the pause may still run: true unless it has
    /// provably ended ([`strata_liveness::provably_dead`]). A holder this process cannot
    /// see (in another PID namespace, behind a `/proc` that hides it) still holds its
    /// pause: resuming it early would end a live backup's consistency while it still
    /// copies. Records of older versions (no `holder`) are judged by pid and start time.
    pub fn holder_alive(&self) -> bool {
        match &self.holder {
            // Negative control: the `/proc` rule for every record.
            Some(_) if strata_util::test_unsafe("proc-pause-liveness") => self.proc_says_alive(),
            Some(holder) => !strata_liveness::provably_dead(holder),
            None => self.proc_says_alive(),
        }
    }

    /// The rule of records without a `holder`: the pid runs with the start time recorded.
    fn proc_says_alive(&self) -> bool {
        start_time(self.holder_pid).is_some_and(|t| t == self.holder_start)
    }

    /// Whether this process holds the pause.
    pub fn held_by_this_process(&self) -> bool {
        match &self.holder {
            Some(holder) => strata_liveness::is_this_process(holder),
            None => self.holder_pid == std::process::id(),
        }
    }

    /// Whether a live operation still holds the pause, so no one else may resume it:
    /// its process may run, and when that process is this one, `live_here` says its
    /// operation still runs here. A record this process keeps after a failed resume is
    /// not held (its operation ended), so this process's own retries take it up.
    pub fn held(&self, live_here: impl Fn(&str) -> bool) -> bool {
        self.holder_alive() && (!self.held_by_this_process() || live_here(&self.operation))
    }

    pub(crate) fn path(&self, state_dir: &Path) -> PathBuf {
        pauses_dir(state_dir).join(format!("{}.json", self.id))
    }

    /// Rewrites the record in place (no new directory entry: for when it cannot be
    /// removed) as resumed, so that no resumer runs it again.
    pub(crate) fn mark_resumed(&self, state_dir: &Path) -> std::io::Result<()> {
        use rustix::fs::{Mode, OFlags};
        use std::io::Write;
        let fd = rustix::fs::open(
            self.path(state_dir),
            OFlags::WRONLY | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut file = std::fs::File::from(fd);
        let record = PauseRecord {
            resumed: true,
            ..self.clone()
        };
        file.write_all(&serde_json::to_vec_pretty(&record).expect("records serialize"))?;
        file.sync_all()
    }

    /// Writes the record durably (temporary file, fsync, rename, fsync of the directory):
    /// when this returns, a crash can no longer lose the pause.
    pub fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        if !valid_id(&self.id) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{:?} is not a pause record id", self.id),
            ));
        }
        // The holder's alive file, taken before the pause is durable (and so before it is
        // issued): without it no one could ever prove this process gone and resume
        // what it leaves paused. Taken in the first state directory this process
        // writes to; one that cannot be taken leaves the record to be resumed by hand.
        let mut record = std::borrow::Cow::Borrowed(self);
        if let Some(holder) = &self.holder {
            if strata_liveness::is_this_process(holder) && holder.alive_file.is_none() {
                if let Err(e) = strata_liveness::hold_alive_file(state_dir) {
                    eprintln!(
                        "strata: warning: {}: cannot take this process's alive file ({e}): if it dies while paused, no one can prove it and resume for it",
                        state_dir.display()
                    );
                }
                record.to_mut().holder = Some(strata_liveness::this_process());
            }
        }
        let json = serde_json::to_vec_pretty(&*record).expect("records serialize");
        let name = format!("{}.json", self.id);
        strata_util::write_private_file(&pauses_dir(state_dir), &name, &json)
    }

    /// Claims the record for resuming: an exclusive lock on its file, so that two
    /// resumers (two processes sharing a state directory, or a coordinator's request and
    /// an agent's own lease-end resume) never run one resume at once. `None` when another
    /// holds it, or the record is gone (resumed meanwhile). Held until the file is
    /// dropped; with it, the record as the file holds it now (what was read before the
    /// claim may be stale), still checked as trusted.
    pub(crate) fn claim(&self, state_dir: &Path) -> Option<(std::fs::File, PauseRecord)> {
        use std::io::Read;
        use std::os::unix::fs::MetadataExt;
        let path = self.path(state_dir);
        let mut file = std::fs::File::open(&path).ok()?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).ok()?;
        // Still the file at that path: not one a resumer before us removed or replaced.
        let (held, now) = (
            file.metadata().ok()?,
            std::fs::symlink_metadata(&path).ok()?,
        );
        if held.ino() != now.ino() || held.dev() != now.dev() {
            return None;
        }
        trusted(&path, "pause record").ok()?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).ok()?;
        let current: PauseRecord = serde_json::from_slice(&bytes).ok()?;
        (current.id == self.id).then_some((file, current))
    }

    /// Removes the record once resumed.
    pub fn remove(&self, state_dir: &Path) -> std::io::Result<()> {
        match std::fs::remove_file(self.path(state_dir)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => std::fs::File::open(pauses_dir(state_dir))?.sync_all(),
        }
    }
}
/// Whether a pause record (or its directory) may be trusted to say what to run: a file or
/// directory of this process's user that no one else can write, not a link. A resume is
/// a command or call run as that user (root, often): a record planted by someone else
/// must never be run.
pub(crate) fn trusted(path: &Path, what: &'static str) -> Result<(), RecordError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).map_err(|source| RecordError::Inaccessible {
        path: path.to_path_buf(),
        source,
    })?;
    let me = rustix::process::geteuid().as_raw();
    if meta.file_type().is_symlink() {
        return Err(RecordError::Link {
            path: path.to_path_buf(),
        });
    }
    if meta.uid() != me || meta.mode() & 0o022 != 0 {
        return Err(RecordError::Foreign {
            what,
            path: path.to_path_buf(),
            uid: meta.uid(),
            mode: meta.mode() & 0o7777,
            me,
        });
    }
    Ok(())
}

/// Why a pause record (or the directory of them) is reported and never run.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Its metadata cannot be read.
    #[error("{}: {source}", path.display())]
    Inaccessible {
        /// The record or directory.
        path: PathBuf,
        /// Why not.
        source: std::io::Error,
    },
    /// A link stands where a record or the directory goes.
    #[error("{} is a link: not run", path.display())]
    Link {
        /// The link.
        path: PathBuf,
    },
    /// Someone other than this user could have written it.
    #[error(
        "{what} {} belongs to uid {uid} (mode {mode:o}), not to this user {me} alone: not run; check who wrote it",
        path.display()
    )]
    Foreign {
        /// `pause record` or `the pause directory`.
        what: &'static str,
        /// The record or directory.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// Its permission bits.
        mode: u32,
        /// This process's effective uid.
        me: u32,
    },
    /// The record cannot be read or is not a record.
    #[error("pause record {}: {why}", path.display())]
    Unreadable {
        /// The record.
        path: PathBuf,
        /// What reading or parsing it said.
        why: String,
    },
    /// The record was resumed, and its file stayed.
    #[error("pause record {} was resumed but could not be removed: delete it", path.display())]
    Resumed {
        /// The record.
        path: PathBuf,
    },
}
/// The pause records under `state_dir`: what is paused now. Unreadable records, and
/// records someone else could have written, are reported, never run; so are those marked
/// resumed, in their file or by `resumed_here` (see [`crate::PauseLedger::paused`]).
pub(crate) fn paused_in(
    state_dir: &Path,
    resumed_here: impl Fn(&Path) -> bool,
) -> Vec<Result<PauseRecord, RecordError>> {
    let dir = pauses_dir(state_dir);
    if dir.exists() {
        if let Err(why) = trusted(&dir, "the pause directory") {
            return vec![Err(why)];
        }
    }
    let Ok(entries) = std::fs::read_dir(pauses_dir(state_dir)) else {
        return Vec::new();
    };
    let mut out: Vec<Result<PauseRecord, RecordError>> = entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.ends_with(".json") && !name.starts_with('.')
        })
        .map(|e| {
            let path = e.path();
            trusted(&path, "pause record")?;
            let record: PauseRecord = std::fs::read(&path)
                .map_err(|err| err.to_string())
                .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|err| err.to_string()))
                .map_err(|why| RecordError::Unreadable {
                    path: path.clone(),
                    why,
                })?;
            if record.resumed || resumed_here(&path) {
                return Err(RecordError::Resumed { path });
            }
            Ok(record)
        })
        .collect();
    // Oldest first, the unreadable ones last (a total order: a sort may panic without).
    out.sort_by(|a, b| match (a, b) {
        (Ok(a), Ok(b)) => a.since.cmp(&b.since),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        (Err(a), Err(b)) => a.to_string().cmp(&b.to_string()),
    });
    out
}
/// A new pause record for hook number `index` of operation `env.id`, held by this process.
pub fn new_record(index: usize, hook: &HookConfig, env: &HookEnv) -> PauseRecord {
    let (pid, start) = this_process();
    PauseRecord {
        id: format!("{}-{index}", env.id),
        hook: hook.label(),
        operation: env.id.clone(),
        component: env.component.clone(),
        node: env.node.clone(),
        since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        resume: hook.resume.clone().expect("a pause hook has a resume"),
        env: env.clone(),
        timeout_ms: hook.timeout().as_millis() as u64,
        attempts: hook.resume_attempts,
        holder_pid: pid,
        holder_start: start,
        holder: Some(strata_liveness::this_process()),
        resume_error: None,
        pause_answered: false,
        late_pause_ms: hook.late_pause().as_millis() as u64,
        resumed: false,
    }
}
