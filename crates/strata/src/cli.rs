//! Command-line syntax.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// strata: consistent, deduplicated, encrypted backups of database clusters.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Documented in `docs/cli.md` too; scripts rely on them.
const EXIT_CODES: &str =
    "Exit codes: 0 success; 1 operation failed; 2 bad usage or configuration; \
3 backup recorded as partial or failed (some node or file missing); 4 damage found (verify) or \
files not restored; 5 wrong or missing password; 6 another operation holds the cluster; \
7 the server refused the token (401) or what it may do (403).";

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Configuration file (default: ./strata.toml when it exists, else built-in defaults).
    #[arg(long, global = true, env = "STRATA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Repository location, overriding the config's storages: a directory, file://PATH,
    /// s3://bucket/prefix, az://container/prefix or gs://bucket/prefix.
    #[arg(long, global = true, env = "STRATA_REPO")]
    pub repo: Option<String>,
    /// Use only this configured storage: new backups go there, and other commands look
    /// for backups only there (default: backups go to `default_storage`, every storage is
    /// searched).
    #[arg(long, global = true, env = "STRATA_STORAGE")]
    pub storage: Option<String>,
    /// State directory for the files cache of in-process nodes.
    #[arg(long, global = true, env = "STRATA_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Talk to the coordinator of `strata server` at this URL instead of running the
    /// coordinator in-process. The token comes from $STRATA_TOKEN or --token-file.
    #[arg(long, global = true, env = "STRATA_SERVER")]
    pub server: Option<String>,
    /// File whose first line is the user token for --server.
    #[arg(long, global = true, env = "STRATA_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print nothing but errors (for cron).
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// `strata wal ...`.
#[derive(Debug, Subcommand)]
pub enum RepairCommand {
    /// Rebuild the index from the headers of the stored packs (two ranged reads per
    /// pack), then delete the old index objects. Run after `verify` names a damaged
    /// `index/` object or a missing pack.
    Index {
        /// Report what would be rebuilt and deleted; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Rebuild damaged summaries from their manifests (as partial backups), drop what
    /// cannot be salvaged, mark nodes and files whose data is gone. Run `repair index`
    /// first.
    Backups {
        /// Report what would be rebuilt, marked and dropped; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum WalCommand {
    /// Archived segments per timeline as runs without gaps, and which PostgreSQL backups
    /// can be restored and how far.
    List,
    /// Read back every archived WAL file and check it.
    Verify,
    /// Run the local WAL archiver in the foreground: `wal-push` hands it segments over a
    /// unix socket (`postgres.archiver_socket`), and it stores them in batches with the
    /// repository kept open. Stops on SIGTERM or SIGINT.
    Archiver,
    /// What the local WAL archiver has done: files archived, the last one, failures, its
    /// queue, and the archive lag (segments PostgreSQL has ready).
    Status,
    /// Keep the WAL read-ahead spool filled beside recovery (started by `wal-fetch` when
    /// recovery asks for a file the spool lacks; stops a minute after recovery's last
    /// request).
    Prefetch {
        /// The file recovery asked for (the prefetcher reads the ones after it).
        #[arg(long)]
        after: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new repository in the default storage (or --storage, or --repo).
    Init,
    /// Back up PATHs as one node, or every node of the config when no PATH is given.
    Backup {
        /// Directories or files to back up as one ad-hoc node.
        paths: Vec<String>,
        /// Node name for an ad-hoc backup (default: this host's name).
        #[arg(long)]
        node_name: Option<String>,
        /// Glob patterns to leave out (relative to the backed-up root, or file names).
        #[arg(long)]
        exclude: Vec<String>,
        /// With --server: follow the backup to its end (progress per node) and exit with
        /// its outcome. Without --server the CLI always waits.
        #[arg(long)]
        wait: bool,
    },
    /// List the backups of every storage, oldest first; with --limit, one page of the
    /// newest ones (and the cursor of the next, older page).
    List {
        /// Only the newest N backups (1-1000): one page, read at the cost of a page.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: Option<u32>,
        /// The page after this cursor (printed by the previous page); needs --limit.
        #[arg(long, requires = "limit", value_name = "CURSOR")]
        cursor: Option<String>,
    },
    /// Show a backup's summary and per-node figures.
    Show {
        /// Backup name, unique prefix, or `latest`.
        backup: String,
    },
    /// List the files of a backup.
    Ls {
        /// Backup name, unique prefix, or `latest`.
        backup: String,
        /// Only this node (default: every node).
        #[arg(long)]
        node: Option<String>,
        /// Only entries at or below this path.
        path: Option<String>,
    },
    /// Restore a backup, verifying every byte: into a directory with --to, else in place
    /// into the nodes' roots (files already correct are kept, files not in the backup are
    /// removed inside the roots).
    Restore {
        /// Backup name, unique prefix, or `latest` (the newest complete backup).
        backup: String,
        /// Target directory (one node goes straight into it, several into DIR/<node>).
        #[arg(long)]
        to: Option<PathBuf>,
        /// Restore only this node of the backup.
        #[arg(long)]
        node: Option<String>,
        /// In place: restore backup node OLD to configured node NEW (repeatable).
        #[arg(long, value_name = "OLD=NEW", conflicts_with = "to")]
        map: Vec<String>,
        /// In place: restore only this component (repeatable); needed for a backup whose
        /// components are not all complete.
        #[arg(long = "component", value_name = "NAME", conflicts_with = "to")]
        components: Vec<String>,
        /// In place, for stores that hold host names (etcd): rewrite OLD to NEW in keys
        /// and values (repeatable; after the component's `rename` rules).
        #[arg(long, value_name = "OLD=NEW", conflicts_with = "to")]
        rename: Vec<String>,
        /// In place, for etcd components: print what would change, write nothing.
        #[arg(long, conflicts_with = "to")]
        dry_run: bool,
        /// Restore only entries at or below this path.
        #[arg(long)]
        path: Option<String>,
        /// Bring this table back from the backup into the live system, under
        /// `<table>_restored` or --as, without touching the running tables: PostgreSQL
        /// (`SCHEMA.TABLE`, repeatable, with --database) or ClickHouse (`DATABASE.TABLE`,
        /// one, onto the component's nodes).
        #[arg(long = "table", value_name = "SCHEMA.TABLE", conflicts_with_all = ["to", "rename", "path"])]
        tables: Vec<String>,
        /// PostgreSQL: the database the tables are in; without --table, this whole
        /// database comes back (as `<database>_restored`, or --as).
        #[arg(long, conflicts_with_all = ["to", "map", "components", "rename", "path"])]
        database: Option<String>,
        /// With one --table (or a whole --database): the name it comes back under
        /// (`NAME` in the table's schema, or `SCHEMA.NAME` in another existing schema).
        #[arg(long = "as", value_name = "NAME", conflicts_with = "to")]
        rename_to: Option<String>,
        /// With --table, ClickHouse: only this partition (its id, the first field of a
        /// part's name: `202401`, `all`; repeatable), into the table --as names, which may
        /// be the live table: a partition it holds rows in is refused.
        #[arg(long = "partition", value_name = "ID", requires = "tables")]
        partitions: Vec<String>,
        /// In place, ClickHouse: remove the replicas ZooKeeper still holds that the
        /// restored tables would meet and no running server holds (servers that lost
        /// their disks), instead of refusing and naming them.
        #[arg(long, conflicts_with = "to")]
        drop_stale_replicas: bool,
        /// With --database: write a SQL dump to this new file instead of loading it.
        #[arg(long, value_name = "FILE", requires = "database")]
        dump: Option<PathBuf>,
        #[command(flatten)]
        recovery: strata_api::requests::RecoveryArgs,
    },
    /// Archive a WAL file: PostgreSQL's `archive_command = 'strata wal-push %p'`. Exit 0
    /// only once the file is stored; pushing the same file again is fine.
    #[command(name = "wal-push")]
    WalPush {
        /// The file (`%p`, relative to the data directory).
        path: PathBuf,
    },
    /// Fetch an archived WAL file: `restore_command = 'strata wal-fetch %f %p'`. Exit 1
    /// when the archive lacks it (the normal end of recovery), 126 on any other failure
    /// (PostgreSQL then stops recovery rather than end it early).
    #[command(name = "wal-fetch")]
    WalFetch {
        /// The file name (`%f`).
        name: String,
        /// Where to write it (`%p`).
        dest: PathBuf,
    },
    /// Patroni's replica creation method: lays the latest complete PostgreSQL backup down
    /// in `--datadir` (empty) for Patroni to start as a replica. Patroni calls `strata
    /// patroni-replica` with `--scope --role --datadir --connstring` and the method's
    /// settings as `--key=value`; only `--datadir` is used. See docs/postgres.md,
    /// "Patroni".
    #[command(name = "patroni-replica")]
    PatroniReplica {
        /// Patroni's arguments, as it passes them.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Patroni's custom bootstrap method (`strata patroni-bootstrap`): lays a backup down
    /// in `--datadir` for a new cluster, the newest complete one before `--target-time` (or `--target_time`, as
    /// Patroni passes the method's settings) when given, else the latest; Patroni's
    /// `recovery_conf` then recovers it.
    #[command(name = "patroni-bootstrap")]
    PatroniBootstrap {
        /// Patroni's arguments, as it passes them.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The WAL archive: archived ranges and gaps per timeline, and a read-back check.
    Wal {
        #[command(subcommand)]
        command: WalCommand,
    },
    /// Delete backups: their summaries and manifests, then (`gc`) the data no remaining
    /// backup uses.
    Delete {
        /// Backup names or unique prefixes.
        #[arg(required = true)]
        backups: Vec<String>,
    },
    /// Apply the retention policy ([retention], overridden by the options): remove the
    /// backups no rule keeps, then the data no remaining backup uses (`gc`).
    Cleanup {
        /// Show what would be kept (and by which rule) and what removed; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        policy: strata_api::config::PolicyOverrides,
    },
    /// Delete the data no backup references any more (under the cluster lock: backups
    /// wait). `cleanup` runs it after removing backups.
    Gc {
        /// Report what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Repair a damaged repository (under the cluster lock: backups wait): `index`
    /// rebuilds the index from the pack headers, `backups` salvages or drops damaged
    /// summaries and manifests. Each says what it loses.
    Repair {
        #[command(subcommand)]
        command: RepairCommand,
    },
    /// Pin a backup: no retention policy removes it, `delete` refuses it.
    Pin {
        /// Backup name, unique prefix, or `latest`.
        backup: String,
    },
    /// Unpin a backup.
    Unpin {
        /// Backup name or unique prefix.
        backup: String,
    },
    /// Copy a backup to another configured storage, sending only the data it lacks.
    Copy {
        /// Backup name, unique prefix, or `latest`.
        backup: String,
        /// Name of the target storage (initialised with `strata init --storage NAME`).
        #[arg(long)]
        to: String,
    },
    /// Check that backups are restorable: structure, and with --read-data every byte.
    Verify {
        /// One backup (default: all).
        backup: Option<String>,
        /// Read and check every blob of the repository.
        #[arg(long, conflicts_with = "read_data_subset")]
        read_data: bool,
        /// Read and check this share of the packs (`5%` or `5`), a different random choice
        /// each run.
        #[arg(long, value_name = "PERCENT")]
        read_data_subset: Option<String>,
        /// A restore drill: restore BACKUP into a scratch directory under the state
        /// directory, check it against the manifests, delete the scratch copy.
        #[arg(long, requires = "backup", conflicts_with_all = ["read_data", "read_data_subset"])]
        restore: bool,
    },
    /// The cluster: nodes reachable, their versions and leases, locks, running operations.
    Status,
    /// Scheduled jobs ([[schedules]]): next run, last run and its outcome, skipped runs.
    Schedules,
    /// Serve this host's node agent (--node) and, when configured, the coordinator API.
    Server {
        /// The [[nodes]] entry whose agent this server runs (default: server.node).
        #[arg(long)]
        node: Option<String>,
        /// Address to listen on (default: server.listen); port 0 picks a free port.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Ask a strata process's GET /health (or /ready): exit 0 when it answers well, 1
    /// when not (with why). For healthchecks without curl and scripts that wait.
    Probe {
        /// The process's address (http://HOST:PORT, or a URL ending in /health or
        /// /ready). Default: --server, else this host's server (server.listen).
        url: Option<String>,
        /// Ask /ready (every readiness check passed) instead of /health (it serves).
        #[arg(long)]
        ready: bool,
        /// Seconds one attempt may take, connecting and reading the answer included.
        #[arg(long, default_value_t = 5, value_name = "SECS",
              value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout: u64,
        /// Keep asking (every 250 ms) for up to SECS until the answer is good.
        #[arg(long, default_value_t = 0, value_name = "SECS",
              value_parser = clap::value_parser!(u64).range(0..=86400))]
        wait: u64,
    },
    /// Table retention: policies on time-partitioned PostgreSQL tables (see docs/tables.md).
    Tables {
        #[command(flatten)]
        db: strata_tables::command::DbArgs,
        #[command(subcommand)]
        command: strata_tables::command::TablesCommand,
    },
    /// Shortcut of `tables add`: `strata ttl metrics.raw:ts archive:cold 365d`.
    Ttl {
        #[command(flatten)]
        spec: strata_tables::TtlArgs,
        #[command(flatten)]
        db: strata_tables::command::DbArgs,
    },
    /// Load an archived partition back into a table (COPY FROM), verifying it; or with
    /// --file, a CSV, JSON lines or Parquet file (local or in a storage) in one
    /// transaction.
    Load {
        #[command(flatten)]
        load: strata_tables::command::LoadArgs,
        #[command(flatten)]
        db: strata_tables::command::DbArgs,
    },
    /// The audit log: who changed what, when, and how it ended (oldest first).
    Audit {
        /// From this moment: a time (2026-11-23T05:00:00Z), a date, or an age (2h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// At most this many entries, the newest.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
    /// PgQ: the ticker daemon, queue and consumer administration, status (see docs/pgq.md).
    Pgq {
        #[command(subcommand)]
        command: strata_pgq::PgqCommand,
    },
    /// Londiste: table replication over PgQ with Python Londiste 3's ini files and state
    /// (see docs/londiste.md).
    Londiste {
        #[command(flatten)]
        args: strata_londiste::LondisteArgs,
    },
    /// The keys (passwords) of the repository: list, add, remove, passwd (see docs/cli.md).
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Upgrade a repository of format version 1 (read-only for this strata) to the
    /// current version (see docs/format.md).
    Migrate,
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print the completion script of SHELL (bash, zsh, fish), generated from this
    /// command line's definition.
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Write the manual pages (strata.1 and one per subcommand) into DIR.
    Man { dir: PathBuf },
}

/// The shells `strata completions` writes for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the full default configuration with every setting documented.
    Default,
    /// Print the configuration in effect (after defaults and --repo).
    Show,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use strata_tables::command::TablesCommand;

    fn parse(args: &[&str]) -> Command {
        let line = std::iter::once("strata").chain(args.iter().copied());
        Cli::try_parse_from(line).unwrap().command
    }

    #[test]
    fn the_command_line_is_consistent() {
        // Every `requires`, `conflicts_with` and `required_unless_present` names an
        // argument that exists, in the libraries' types too.
        Cli::command().debug_assert();
    }

    #[test]
    fn the_libraries_flags_reach_their_fields() {
        let Command::Tables { db, command } = parse(&[
            "tables",
            "add",
            "--table",
            "m.raw",
            "--column",
            "ts",
            "--action",
            "archive",
            "--after",
            "90d",
            "--tag",
            "a",
            "--tag",
            "b",
            "--target",
            "cold",
            "--keep",
            "2",
            "--group-by",
            "x,y",
            "--disabled",
            "--db",
            "host=h",
        ]) else {
            panic!("not a tables command")
        };
        let TablesCommand::Add { policy, .. } = command else {
            panic!("not tables add")
        };
        assert_eq!(db.db.as_deref(), Some("host=h"));
        assert_eq!((policy.tags.len(), policy.disabled), (2, true));
        assert_eq!(policy.options.target.as_deref(), Some("cold"));
        assert_eq!(policy.options.keep, Some(2));
        assert_eq!(policy.rollup.group_by, ["x", "y"]);

        let Command::Tables { command, .. } = parse(&["tables", "rm", "--tag", "t", "--any-tag"])
        else {
            panic!("not a tables command")
        };
        let TablesCommand::Rm { id: None, tags } = command else {
            panic!("not tables rm without an id")
        };
        assert_eq!((tags.tags, tags.any), (vec!["t".to_string()], true));

        let Command::Pgq { command } = parse(&["pgq", "ticker", "x.ini", "-d", "--health", "h"])
        else {
            panic!("not a pgq command")
        };
        let strata_pgq::PgqCommand::Ticker { args } = command else {
            panic!("not pgq ticker")
        };
        assert_eq!((args.daemon, args.health.as_deref()), (true, Some("h")));

        let Command::Londiste { args } = parse(&["londiste", "n.ini", "add-table", "--create"])
        else {
            panic!("not a londiste command")
        };
        let strata_londiste::LondisteCommand::AddTable { options, .. } = args.command else {
            panic!("not add-table")
        };
        assert!(options.create && !options.all && !options.expect_sync);
    }
}

/// The key subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum KeyCommand {
    /// List the keys (passwords) of the repository and which one is in use.
    List,
    /// Add a key: a second password that opens the repository.
    Add {
        #[command(flatten)]
        new: NewPassword,
    },
    /// Remove key ID (never the last one; the one in use only with --force).
    Remove {
        /// The key id, as `strata key list` shows it.
        id: String,
        /// Remove the key in use (its password then no longer opens the repository).
        #[arg(long)]
        force: bool,
    },
    /// Change the password: add a key for the new one, remove the one in use.
    Passwd {
        #[command(flatten)]
        new: NewPassword,
    },
}

/// Where the new password comes from: $STRATA_NEW_PASSWORD, a file, or the terminal.
#[derive(Debug, clap::Args)]
pub struct NewPassword {
    /// Read the new password (its first line) from FILE, e.g. a key file made with
    /// `head -c 32 /dev/urandom | base64 > FILE`.
    #[arg(long, visible_alias = "key-file", value_name = "FILE")]
    pub(crate) new_password_file: Option<std::path::PathBuf>,
}
