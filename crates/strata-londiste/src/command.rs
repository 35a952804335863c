//! The commands of a node, as the `strata londiste NODE.ini COMMAND` line gives them:
//! with the `cli` feature these types are the command line's definitions (clap derives,
//! their doc comments the help), so each flag is declared once, here, beside the
//! functions that read it.

use crate::admin::AddTableOptions;
use crate::takeover::OldNode;
use std::path::PathBuf;

/// The node's ini file and what to do.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct LondisteArgs {
    /// The node's ini file, as Python Londiste reads it: a [londiste3] section with
    /// job_name, db, queue_name (and logfile, pidfile, loop_delay, parallel_copies).
    pub ini: PathBuf,
    /// The subcommand, with its own arguments.
    #[cfg_attr(feature = "cli", command(subcommand))]
    pub command: LondisteCommand,
}

/// The `londiste` subcommands.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(clap::Subcommand))]
pub enum LondisteCommand {
    /// Make this database the root of the queue: where events are made.
    CreateRoot {
        /// The node's name in the cascade.
        name: String,
        /// How other nodes reach this one (connection string).
        location: String,
    },
    /// Make this database a branch (a full copy of the queue that can feed others).
    CreateBranch {
        /// The node's name in the cascade.
        name: String,
        /// How other nodes reach this one (connection string).
        location: String,
        /// Connection string of the node to read from.
        #[cfg_attr(feature = "cli", arg(long))]
        provider: String,
    },
    /// Make this database a leaf (replicated tables, no queue).
    CreateLeaf {
        /// The node's name in the cascade.
        name: String,
        /// How other nodes reach this one (connection string).
        location: String,
        /// Connection string of the node to read from.
        #[cfg_attr(feature = "cli", arg(long))]
        provider: String,
    },
    /// Make this database, a restore of the provider's database still paused at its
    /// recovery target (`strata restore ... --target-action pause`), a leaf (or a
    /// branch) of the provider without copying its tables: the node joins at the last
    /// tick the restore holds. Checks that the provider is the restored node, on the same
    /// history, and still holds that tick; then promotes the server and converts it.
    JoinRestored {
        /// The node's name in the cascade.
        name: String,
        /// How other nodes reach this one (connection string).
        location: String,
        /// Connection string of the provider whose database was restored here.
        #[cfg_attr(feature = "cli", arg(long))]
        provider: String,
        /// Make a branch (with its own queue) instead of a leaf.
        #[cfg_attr(feature = "cli", arg(long))]
        branch: bool,
        /// Only check and show the position; change nothing (the server stays paused).
        #[cfg_attr(feature = "cli", arg(long))]
        check: bool,
        /// Join although the restored server archives its WAL (its archive command must
        /// point at this node's own repository, not the provider's).
        #[cfg_attr(feature = "cli", arg(long))]
        keep_archiving: bool,
        /// Seconds to wait for the promotion.
        #[cfg_attr(feature = "cli", arg(long, default_value_t = 60))]
        timeout: u64,
    },
    /// Replicate tables: on the root, put them in the set; elsewhere, copy and follow
    /// them. Names may be globs (public.*, log_*).
    AddTable {
        /// Tables to replicate (globs allowed; none with --all).
        tables: Vec<String>,
        /// How to add them (--all, --create, ...).
        #[cfg_attr(feature = "cli", command(flatten))]
        options: AddTableOptions,
    },
    /// Stop replicating tables (on the root: remove them from the set).
    RemoveTable {
        /// Tables to stop replicating (globs allowed).
        tables: Vec<String>,
    },
    /// Tables of the set with their state on this node.
    Tables,
    /// Replicate sequences (globs; --all): the root publishes their values ahead of use,
    /// subscribers keep theirs at least there. Needs the root's worker running.
    AddSeq {
        /// Sequences to replicate (globs allowed; none with --all).
        seqs: Vec<String>,
        /// Every sequence (the provider's set, or on the root every sequence of the database).
        #[cfg_attr(feature = "cli", arg(long))]
        all: bool,
    },
    /// Stop replicating sequences.
    RemoveSeq {
        /// Sequences to stop replicating (globs allowed).
        seqs: Vec<String>,
    },
    /// Sequences of the set with their published value.
    Seqs,
    /// Tables and sequences of the set that this node does not replicate (exit 0 either
    /// way; `--json` for scripts).
    Missing,
    /// Foreign keys dropped around copies and not restored yet, and whether each can come
    /// back now (both tables ok).
    Fkeys,
    /// Every node of the cascade, asked in parallel: type, provider, lag, tables, errors.
    /// Members tagged dead are shown as dead, not asked. Exits 1 when a node cannot be
    /// asked or reports an error.
    Status {
        /// Seconds to wait for each node.
        #[cfg_attr(feature = "cli", arg(long, default_value_t = 10))]
        timeout: u64,
    },
    /// The cascade's members as this node knows them.
    Members,
    /// This node's pgq_node information.
    NodeInfo,
    /// Run the replay worker (foreground; stop with SIGTERM or Ctrl-C). With -d it runs
    /// in the background: output to the ini's logfile, its pid in the ini's pidfile.
    Worker {
        /// Detach (needs `logfile` and `pidfile` in the ini file).
        #[cfg_attr(feature = "cli", arg(short, long))]
        daemon: bool,
        /// Log more than the ini's log_level (info by default): -v logs every batch.
        #[cfg_attr(feature = "cli", arg(short, long, action = clap::ArgAction::Count))]
        verbose: u8,
    },
    /// Park one event the worker cannot apply (it names it: `event N of batch B`): the
    /// event is recorded, with the reason and who parked it, in this node's
    /// strata_londiste.parked_events, and the worker applies the rest of its batch without
    /// it. Only this node skips it.
    ParkEvent {
        /// The event's id.
        event: i64,
        /// The batch holding it (default: the worker's open batch on its provider).
        #[cfg_attr(feature = "cli", arg(long))]
        batch: Option<i64>,
        /// Why, for the record.
        #[cfg_attr(feature = "cli", arg(long, default_value = "parked by an operator"))]
        reason: String,
    },
    /// Pause this node's worker (it stops before its next batch).
    Pause,
    /// Resume this node's worker.
    Resume,
    /// Compare tables with the provider at a sync point (count and hash sum); exits 1
    /// when one differs. Needs the node's worker running and the root as provider.
    Compare {
        /// Tables to compare (globs allowed; none: every replicated table).
        tables: Vec<String>,
        /// Seconds to wait for the sync point (tick and worker).
        #[cfg_attr(feature = "cli", arg(long, default_value_t = 60))]
        timeout: u64,
    },
    /// Diff tables row by row against the provider at a sync point and write the fix as
    /// fix.<table>.sql; with --apply, run it here. Exits 1 when differences remain.
    Repair {
        /// Tables to repair (globs allowed; none: every replicated table).
        tables: Vec<String>,
        /// Apply the fix on this node.
        #[cfg_attr(feature = "cli", arg(long))]
        apply: bool,
        /// Seconds to wait for the sync point (tick and worker).
        #[cfg_attr(feature = "cli", arg(long, default_value_t = 60))]
        timeout: u64,
    },
    /// Take the role of node OLD: of the root (run on one of its branches; the live root
    /// becomes this node's branch) or of a branch (this node reads from the branch's
    /// provider; the live branch becomes this node's subscriber). Every table here must be
    /// in sync, and a new root must replicate every table of the set; the workers of the
    /// nodes that move must run. Exits 1 when a subscriber could not be moved.
    Takeover {
        /// The node whose role this node takes.
        old: String,
        /// The root is gone: tag it dead, catch up from the most advanced surviving branch,
        /// promote this branch, move the root's other subscribers here. Events that never
        /// left the old root are lost (`resurrect` on it saves them to a file).
        #[cfg_attr(feature = "cli", arg(long, conflicts_with = "dead_branch"))]
        dead_root: bool,
        /// The branch OLD is gone: tag it dead, read from its provider, and move its other
        /// subscribers here (or to its provider when this node is a leaf).
        #[cfg_attr(feature = "cli", arg(long))]
        dead_branch: bool,
        /// Also move the other subscribers of a live OLD to this node.
        #[cfg_attr(feature = "cli", arg(long))]
        all: bool,
        /// Take the root's role although this node does not replicate every table of the
        /// set: the output names the tables the new root will lack.
        #[cfg_attr(feature = "cli", arg(long))]
        allow_missing_tables: bool,
        /// Seconds to wait for each step (acknowledged pauses, catching up).
        #[cfg_attr(feature = "cli", arg(long, default_value_t = 60))]
        timeout: u64,
    },
    /// Rejoin the cascade as a branch of the new root after a takeover --dead-root replaced
    /// this old root: its events the others never got are written to a JSON file and
    /// removed from its queue; the worker is left paused (resume it after a look at the
    /// file; `compare` shows what the tables still hold of the lost changes).
    Resurrect {
        /// Where the lost events go (refused when it exists).
        #[cfg_attr(feature = "cli", arg(long, default_value = crate::resurrect::DEFAULT_DUMP))]
        dump: PathBuf,
        /// Seconds to wait for the other members to answer.
        #[cfg_attr(feature = "cli", arg(long, default_value_t = 60))]
        timeout: u64,
    },
    /// Tag members dead on every live member: status, execute --wait and takeover stop
    /// asking them.
    TagDead {
        /// Members to tag dead.
        #[cfg_attr(feature = "cli", arg(required = true))]
        nodes: Vec<String>,
    },
    /// Clear the dead tag of members on every live member.
    TagAlive {
        /// Members to tag alive again.
        #[cfg_attr(feature = "cli", arg(required = true))]
        nodes: Vec<String>,
    },
    /// Remove a node from the cascade (refused while others read from it): when it
    /// answers, its tables stop being replicated (triggers removed) and its node and queue
    /// are dropped; every live member forgets it.
    DropNode {
        /// The member to remove.
        node: String,
    },
    /// Change the connection string of member NODE on every live member (NODE included).
    /// LOCATION must reach NODE's database (checked by the node name there) before
    /// anything is written. Exits 1 when a member could not be told.
    ChangeLocation {
        /// The member whose connection string changes.
        node: String,
        /// Its new connection string.
        location: String,
    },
    /// Rename member OLD to NEW on every member: locations, OLD's own node, its
    /// subscription on its provider and its subscribers' provider. Worker names stay.
    /// Every member not tagged dead must answer.
    RenameNode {
        /// The member's current name.
        old: String,
        /// Its new name.
        new: String,
    },
    /// Wait until everything committed on the root before this call is applied here.
    WaitRoot {
        /// Give up (exit 1) after this many seconds.
        #[cfg_attr(feature = "cli", arg(long, default_value_t = 600))]
        timeout: u64,
    },
    /// Wait until everything the provider had applied before this call is applied here.
    WaitProvider {
        /// Give up (exit 1) after this many seconds.
        #[cfg_attr(feature = "cli", arg(long, default_value_t = 600))]
        timeout: u64,
    },
    /// Compare the columns (names and types) of every replicated table with the provider's;
    /// exits 1 and names each difference when there is one.
    Check,
    /// Copy tables again from the provider (the worker truncates and copies them).
    Resync {
        /// Tables to copy again (schema `public` when none is given).
        tables: Vec<String>,
    },
    /// Move this node to another provider of the cascade (a member's node name), with no
    /// event lost or repeated. Needs this node's worker running (it acknowledges the pause).
    ChangeProvider {
        /// The member to read from (its node name).
        #[cfg_attr(feature = "cli", arg(long, value_name = "NODE"))]
        provider: String,
        /// Seconds to wait for the worker's acknowledgements.
        #[cfg_attr(feature = "cli", arg(long, default_value_t = 60))]
        timeout: u64,
    },
    /// Run SQL files (DDL) on the root and send them to every node as EXECUTE events,
    /// in one transaction; a file name already applied is skipped.
    Execute {
        /// SQL files, run in this order; each is known by its file name.
        files: Vec<PathBuf>,
        /// Return only once every live node of the cascade has applied the files (exit 1
        /// after --timeout, naming the nodes behind).
        #[cfg_attr(feature = "cli", arg(long))]
        wait: bool,
        /// Seconds --wait waits.
        #[cfg_attr(feature = "cli", arg(long, default_value_t = 600))]
        timeout: u64,
    },
    /// The commands that changed this node or the cascade from here (who, what, how it
    /// ended), oldest first.
    Audit {
        /// The newest this many.
        #[cfg_attr(feature = "cli", arg(long, default_value_t = 50))]
        limit: u32,
    },
    /// Wait until every local table is ok (copies done).
    WaitSync {
        /// Give up (exit 1) after this many seconds.
        #[cfg_attr(feature = "cli", arg(long, default_value_t = 3600))]
        timeout: u64,
    },
}

impl OldNode {
    /// The node `takeover` replaces, from its `--dead-root` and `--dead-branch` flags.
    pub fn from_flags(dead_root: bool, dead_branch: bool) -> OldNode {
        match (dead_root, dead_branch) {
            (true, _) => OldNode::DeadRoot,
            (_, true) => OldNode::DeadBranch,
            _ => OldNode::Live,
        }
    }
}
