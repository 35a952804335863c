//! One function per command: load configuration, call the library, print the result.

use crate::cli::{Cli, Command, ConfigCommand, Global};
use crate::failure::{code, Failure};
use crate::output;
use crate::progress;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use strata_agent::backup::NodeSource;
use strata_agent::restore::RestoreOptions;
use strata_coordinator::backup::{run_backup, BackupOptions};
use strata_coordinator::catalog::Catalog;
use strata_coordinator::config::{Config, StorageConfig, DEFAULT_CONFIG};
use strata_coordinator::copy::copy_backup;
use strata_coordinator::restore::run_restore;
use strata_coordinator::storage::Storage;
use strata_coordinator::verify::{run_verify, VerifyReport};
use strata_repo::manifest::EntryKind;
use strata_repo::summary::BackupSummary;
use strata_repo::writer::WriterOptions;
use strata_repo::{InitOptions, Repository};

type CommandResult = Result<u8, Failure>;

/// Runs a parsed command line; returns the exit code.
pub async fn run(cli: Cli) -> CommandResult {
    if let Command::Config {
        command: ConfigCommand::Default,
    } = &cli.command
    {
        print!("{DEFAULT_CONFIG}");
        return Ok(0);
    }
    let ctx = Context::load(cli.global)?;
    match cli.command {
        Command::Init => ctx.init().await,
        Command::Copy { backup, to } => ctx.copy(&backup, &to).await,
        Command::Backup {
            paths,
            node_name,
            exclude,
        } => ctx.backup(paths, node_name, exclude).await,
        Command::List => ctx.list().await,
        Command::Show { backup } => ctx.show(&backup).await,
        Command::Ls { backup, node, path } => {
            ctx.ls(&backup, node.as_deref(), path.as_deref()).await
        }
        Command::Restore {
            backup,
            to,
            node,
            path,
        } => ctx.restore(&backup, &to, node.as_deref(), path).await,
        Command::Delete { backups } => ctx.delete(&backups).await,
        Command::Verify { backup, read_data } => ctx.verify(backup.as_deref(), read_data).await,
        Command::Config {
            command: ConfigCommand::Show,
        } => {
            let text = toml::to_string_pretty(&ctx.config)
                .map_err(|e| Failure::new(code::FAILED, e.to_string()))?;
            print!("{text}");
            Ok(0)
        }
        Command::Config {
            command: ConfigCommand::Default,
        } => unreachable!("handled above"),
    }
}

struct Context {
    config: Config,
    global: Global,
}

fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("output serializes")
    );
}

/// This host's name, made safe for a node name.
fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if name.is_empty() || name.starts_with('.') {
        "localhost".into()
    } else {
        name
    }
}

impl Context {
    fn load(global: Global) -> Result<Context, Failure> {
        let mut config = match &global.config {
            Some(path) => Config::load(path)?,
            None if Path::new("strata.toml").exists() => Config::load(Path::new("strata.toml"))?,
            None => Config::parse("", Path::new("(defaults)"), Path::new("."))?,
        };
        if let Some(location) = &global.repo {
            let storage = StorageConfig::at(location);
            config.storages.clear();
            config.storages.insert("cli".into(), storage);
            config.default_storage = "cli".into();
            config.validate()?;
        }
        if let Some(name) = &global.storage {
            if !config.storages.contains_key(name) {
                return Err(Failure::new(
                    code::USAGE,
                    format!("no storage named {name:?} in the configuration"),
                ));
            }
            config.storages.retain(|n, _| n == name);
            config.default_storage = name.clone();
        }
        if let Some(dir) = &global.state_dir {
            config.state_dir = Some(dir.clone());
        }
        Ok(Context { config, global })
    }

    /// Whether live progress may be drawn (never with -q or --json).
    fn interactive(&self) -> bool {
        !self.global.quiet && !self.global.json
    }

    fn say(&self, text: impl AsRef<str>) {
        if !self.global.quiet && !self.global.json {
            println!("{}", text.as_ref());
        }
    }

    fn storage(&self) -> Result<Storage, Failure> {
        Ok(Storage::open_default(&self.config)?)
    }

    /// The password from env or file, else asked on the terminal.
    fn password(&self, confirm: bool) -> Result<Option<String>, Failure> {
        if let Some(password) = self.config.password()? {
            return Ok(Some(password));
        }
        if !std::io::stdin().is_terminal() {
            return Ok(None);
        }
        let ask = |prompt: &str| {
            rpassword::prompt_password(prompt)
                .map_err(|e| Failure::new(code::PASSWORD, format!("cannot read the password: {e}")))
        };
        let first = ask("repository password: ")?;
        if confirm && ask("repeat the password: ")? != first {
            return Err(Failure::new(code::PASSWORD, "the passwords do not match"));
        }
        Ok(Some(first))
    }

    /// The password when `storage` is encrypted (unencrypted repositories have no real
    /// key, so nobody is asked for one).
    async fn password_for(&self, storage: &Storage) -> Result<Option<String>, Failure> {
        let needs_password = storage
            .store
            .list("keys/")
            .await
            .map(|keys| !keys.is_empty())
            .unwrap_or(true);
        if needs_password {
            self.password(false)
        } else {
            Ok(None)
        }
    }

    async fn open_storage(&self, storage: &Storage) -> Result<Arc<Repository>, Failure> {
        let password = self.password_for(storage).await?;
        Ok(Repository::open(storage.store.clone(), password.as_deref()).await?)
    }

    /// Every configured storage, for commands that find backups wherever they are.
    async fn catalog(&self) -> Result<Catalog, Failure> {
        let password = self.password_for(&self.storage()?).await?;
        let catalog = Catalog::open(&self.config, password.as_deref()).await?;
        for (name, why) in &catalog.unavailable {
            if !self.global.quiet {
                eprintln!("strata: warning: storage {name} is not available: {why}");
            }
        }
        Ok(catalog)
    }

    /// Finds a backup in any storage and opens its repository with the index loaded.
    async fn find(
        &self,
        catalog: &Catalog,
        wanted: &str,
        index: bool,
    ) -> Result<(Arc<Repository>, BackupSummary), Failure> {
        let (place, summary) = catalog.find(wanted).await?;
        if index {
            place.repo.reload_index().await?;
        }
        Ok((place.repo.clone(), summary))
    }

    async fn init(&self) -> CommandResult {
        let encryption = self
            .config
            .repository
            .encryption
            .parse()
            .map_err(|e: String| Failure::new(code::USAGE, e))?;
        let options = InitOptions {
            encryption,
            ..InitOptions::default()
        };
        let password = match encryption {
            strata_repo::format::Encryption::None => None,
            _ => Some(self.password(true)?.ok_or_else(|| {
                Failure::new(code::PASSWORD, format!(
                    "no password: set {} (or password.file in the config), or run in a terminal to be asked",
                    self.config.password.env
                ))
            })?),
        };
        let store = self.storage()?.store;
        let repo = Repository::init(store.clone(), password.as_deref(), options).await?;
        if self.global.json {
            print_json(&serde_json::json!({
                "id": repo.config().id, "location": store.describe(), "encryption": repo.config().encryption,
            }));
        } else {
            self.say(format!(
                "created repository {} at {}",
                repo.config().id,
                store.describe()
            ));
        }
        Ok(0)
    }

    fn nodes(
        &self,
        paths: Vec<String>,
        node_name: Option<String>,
        exclude: Vec<String>,
    ) -> Result<Vec<NodeSource>, Failure> {
        if !paths.is_empty() {
            let name = node_name.unwrap_or_else(host_name);
            let mut probe = self.config.clone();
            probe.nodes = vec![strata_coordinator::config::NodeConfig {
                name: name.clone(),
                url: None,
                roots: paths.clone(),
                exclude: exclude.clone(),
            }];
            probe.validate()?;
            return Ok(vec![NodeSource {
                name,
                roots: paths,
                exclude,
            }]);
        }
        Ok(self
            .config
            .nodes
            .iter()
            .map(|n| NodeSource {
                name: n.name.clone(),
                roots: n.roots.clone(),
                exclude: n.exclude.iter().chain(&exclude).cloned().collect(),
            })
            .collect())
    }

    async fn backup(
        &self,
        paths: Vec<String>,
        node_name: Option<String>,
        exclude: Vec<String>,
    ) -> CommandResult {
        let nodes = self.nodes(paths, node_name, exclude)?;
        let storage = self.storage()?;
        let repo = self.open_storage(&storage).await?;
        let tuning = &self.config.backup;
        let mut writer = WriterOptions {
            compression_level: tuning.compression_level,
            pack_size: tuning.pack_size_mib as usize * 1024 * 1024,
            uploads: tuning.uploads.max(1),
            ..WriterOptions::default()
        };
        if tuning.threads > 0 {
            writer.workers = tuning.threads;
        }
        let options = BackupOptions {
            writer,
            state_dir: self.config.state_dir(),
            requests: Some(storage.requests.clone()),
            progress: Arc::default(),
        };
        let display =
            progress::Display::start(options.progress.clone(), "backing up", self.interactive());
        let summary = run_backup(repo, &nodes, &options).await;
        drop(display);
        let summary = summary?;
        if self.global.json {
            print_json(&summary);
        } else if !self.global.quiet {
            println!(
                "backup {} {} in {}: {} files, {}, {} new data stored",
                summary.name,
                summary.status.as_str(),
                output::duration(summary.duration_ms),
                summary.total(|n| n.files),
                output::size(summary.total(|n| n.bytes)),
                output::size(summary.total(|n| n.new_bytes)),
            );
            println!("{}", output::nodes_table(&summary.nodes));
            print_node_problems(&summary, 5);
        }
        if !summary.is_complete() {
            eprintln!(
                "strata: backup {} is {}: see `strata show {}`",
                summary.name,
                summary.status.as_str(),
                summary.name
            );
            return Ok(code::PARTIAL);
        }
        Ok(0)
    }

    async fn list(&self) -> CommandResult {
        let catalog = self.catalog().await?;
        let backups = catalog.list().await?;
        if self.global.json {
            let rows: Vec<serde_json::Value> = backups
                .iter()
                .map(|b| {
                    let mut row = serde_json::to_value(&b.summary).expect("summaries serialize");
                    row["storage"] = serde_json::Value::String(b.storage.clone());
                    row
                })
                .collect();
            print_json(&rows);
        } else if backups.is_empty() {
            self.say("no backups yet (run `strata backup`)");
        } else {
            self.say(output::backups_table(&backups));
        }
        Ok(0)
    }

    async fn show(&self, wanted: &str) -> CommandResult {
        let catalog = self.catalog().await?;
        let (place, summary) = catalog.find(wanted).await?;
        let storage = place.storage.name.clone();
        if self.global.json {
            print_json(&summary);
            return Ok(0);
        }
        self.say(format!("backup    {}", summary.name));
        self.say(format!("status    {}", summary.status.as_str()));
        self.say(format!("storage   {storage}"));
        self.say(format!(
            "started   {} (took {})",
            summary.started,
            output::duration(summary.duration_ms)
        ));
        self.say(format!(
            "files     {} ({}), stored {}, new data {}",
            summary.total(|n| n.files),
            output::size(summary.total(|n| n.bytes)),
            output::size(summary.total(|n| n.stored_bytes)),
            output::size(summary.total(|n| n.new_bytes)),
        ));
        if let Some(r) = &summary.requests {
            self.say(format!(
                "requests  {} PUT, {} GET, {} LIST, {} DELETE; {} sent, {} received",
                r.put,
                r.get,
                r.list,
                r.delete,
                output::size(r.bytes_sent),
                output::size(r.bytes_received)
            ));
        }
        self.say("");
        self.say(output::nodes_table(&summary.nodes));
        if !self.global.quiet {
            print_node_problems(&summary, 20);
        }
        Ok(0)
    }

    async fn ls(&self, wanted: &str, node: Option<&str>, path: Option<&str>) -> CommandResult {
        let catalog = self.catalog().await?;
        let (repo, summary) = self.find(&catalog, wanted, false).await?;
        let prefix = path
            .map(|p| p.trim_matches('/').as_bytes().to_vec())
            .unwrap_or_default();
        let mut json_entries = Vec::new();
        let nodes: Vec<_> = summary
            .nodes
            .iter()
            .filter(|n| n.has_manifest && node.is_none_or(|want| want == n.name))
            .collect();
        if nodes.is_empty() {
            return Err(Failure::new(
                code::USAGE,
                format!("backup {} has no such node", summary.name),
            ));
        }
        for n in nodes {
            let manifest = repo.load_manifest(&summary.name, &n.name).await?;
            for entry in &manifest.entries {
                let inside = prefix.is_empty()
                    || entry.path == prefix
                    || (entry.path.starts_with(&prefix)
                        && entry.path.get(prefix.len()) == Some(&b'/'));
                if !inside {
                    continue;
                }
                let (kind, extra) = match &entry.kind {
                    EntryKind::Dir => ('d', String::new()),
                    EntryKind::File { .. } => ('-', String::new()),
                    EntryKind::Symlink { target } => {
                        ('l', format!(" -> {}", String::from_utf8_lossy(target)))
                    }
                    EntryKind::HardLink { target } => {
                        ('h', format!(" => {}", String::from_utf8_lossy(target)))
                    }
                };
                if self.global.json {
                    json_entries.push(serde_json::json!({
                        "node": n.name, "path": entry.display_path(), "type": match kind {
                            'd' => "dir", '-' => "file", 'l' => "symlink", _ => "hardlink" },
                        "size": entry.size(), "mode": format!("{:o}", entry.mode),
                        "uid": entry.uid, "gid": entry.gid, "mtime_ns": entry.mtime_ns,
                    }));
                } else if !self.global.quiet {
                    println!(
                        "{} {:>5}:{:<5} {:>10}  {}  {}/{}{}",
                        output::mode_string(kind, entry.mode),
                        entry.uid,
                        entry.gid,
                        entry.size(),
                        humantime::format_rfc3339_seconds(
                            std::time::UNIX_EPOCH
                                + std::time::Duration::from_secs(
                                    entry.mtime_ns.max(0) as u64 / 1_000_000_000
                                )
                        ),
                        n.name,
                        entry.display_path(),
                        extra
                    );
                }
            }
        }
        if self.global.json {
            print_json(&json_entries);
        }
        Ok(0)
    }

    async fn restore(
        &self,
        wanted: &str,
        to: &Path,
        node: Option<&str>,
        path: Option<String>,
    ) -> CommandResult {
        let catalog = self.catalog().await?;
        let (repo, summary) = self.find(&catalog, wanted, true).await?;
        let mut options = RestoreOptions::default();
        if self.config.restore.workers > 0 {
            options.workers = self.config.restore.workers;
        }
        options.include = path.map(|p| p.trim_matches('/').as_bytes().to_vec());
        let clock = std::time::Instant::now();
        let display =
            progress::Display::start(options.progress.clone(), "restoring", self.interactive());
        let restored = run_restore(repo, &summary, to, node, options).await;
        drop(display);
        let restored = restored?;
        let errors: Vec<String> = restored
            .iter()
            .flat_map(|r| {
                r.report
                    .errors
                    .iter()
                    .map(move |e| format!("{}: {e}", r.node))
            })
            .collect();
        if self.global.json {
            print_json(&serde_json::json!({
                "backup": summary.name,
                "nodes": restored.iter().map(|r| serde_json::json!({
                    "node": r.node, "target": r.target, "files": r.report.files, "dirs": r.report.dirs,
                    "symlinks": r.report.symlinks, "hard_links": r.report.hard_links,
                    "bytes": r.report.bytes, "files_kept": r.report.files_kept, "errors": r.report.errors,
                })).collect::<Vec<_>>(),
            }));
        } else {
            for r in &restored {
                self.say(format!(
                    "restored node {} of {} into {}: {} files ({} written, {} already correct), {} dirs, {} symlinks, {} hard links",
                    r.node, summary.name, r.target.display(), r.report.files, output::size(r.report.bytes),
                    r.report.files_kept, r.report.dirs, r.report.symlinks, r.report.hard_links,
                ));
            }
            self.say(format!(
                "every byte verified; took {}",
                output::duration(clock.elapsed().as_millis() as u64)
            ));
        }
        if !errors.is_empty() {
            for line in errors.iter().take(20) {
                eprintln!("strata: not restored: {line}");
            }
            return Err(Failure::new(
                code::DAMAGED,
                format!("{} entries could not be restored (run `strata verify --read-data` for details)", errors.len()),
            ));
        }
        Ok(0)
    }

    async fn delete(&self, wanted: &[String]) -> CommandResult {
        let catalog = self.catalog().await?;
        for name in wanted {
            if name == "latest" {
                return Err(Failure::new(
                    code::USAGE,
                    "name backups to delete explicitly, not `latest`",
                ));
            }
            let (repo, summary) = self.find(&catalog, name, false).await?;
            let holders: Vec<String> = catalog
                .list()
                .await?
                .into_iter()
                .filter(|b| b.summary.name == summary.name)
                .map(|b| b.storage)
                .collect();
            if holders.len() > 1 {
                return Err(Failure::new(
                    code::USAGE,
                    format!(
                        "backup {} is in storages {}: choose one with --storage",
                        summary.name,
                        holders.join(", ")
                    ),
                ));
            }
            repo.delete_backup(&summary.name).await?;
            self.say(format!("deleted backup {}", summary.name));
        }
        Ok(0)
    }

    async fn verify(&self, backup: Option<&str>, read_data: bool) -> CommandResult {
        let catalog = self.catalog().await?;
        let mut report = VerifyReport::default();
        let targets: Vec<(Arc<Repository>, Option<String>)> = match backup {
            Some(wanted) => {
                let (repo, summary) = self.find(&catalog, wanted, true).await?;
                vec![(repo, Some(summary.name))]
            }
            None => catalog
                .places
                .iter()
                .map(|p| (p.repo.clone(), None))
                .collect(),
        };
        for (repo, name) in targets {
            repo.reload_index().await?;
            report.absorb(run_verify(&repo, name.as_deref(), read_data).await?);
        }
        if self.global.json {
            print_json(&report);
        } else {
            self.say(format!(
                "checked {} backups, {} manifests, {} files; {} packs and {} blobs read ({})",
                report.backups,
                report.manifests,
                report.files,
                report.packs_checked,
                report.blobs_checked,
                output::size(report.bytes_read)
            ));
        }
        if report.is_ok() {
            self.say(if read_data {
                "no problems found: every blob is intact"
            } else {
                "no problems found (structure only; --read-data checks every byte)"
            });
            return Ok(0);
        }
        for problem in &report.problems {
            eprintln!("strata: problem: {problem}");
        }
        for file in &report.damaged_files {
            eprintln!(
                "strata: damaged: backup {} node {}: {}",
                file.backup, file.node, file.path
            );
        }
        Err(Failure::new(
            code::DAMAGED,
            format!(
                "verify found {} problems affecting {} files",
                report.problems.len(),
                report.damaged_files.len()
            ),
        ))
    }
}

impl Context {
    async fn copy(&self, wanted: &str, to: &str) -> CommandResult {
        let catalog = self.catalog().await?;
        let (source, summary) = self.find(&catalog, wanted, true).await?;
        let target = catalog.place(to)?.repo.clone();
        target.reload_index().await?;
        let writer = WriterOptions {
            compression_level: self.config.backup.compression_level,
            pack_size: self.config.backup.pack_size_mib as usize * 1024 * 1024,
            ..WriterOptions::default()
        };
        let report = copy_backup(source, target, &summary, writer).await?;
        if self.global.json {
            print_json(&report);
        } else {
            self.say(format!(
                "copied backup {} to storage {to}: {} of {} blobs sent ({}), {} verified",
                report.backup,
                report.blobs_sent,
                report.blobs,
                output::size(report.bytes_sent),
                report.blobs_verified
            ));
        }
        Ok(0)
    }
}

fn print_node_problems(summary: &strata_repo::summary::BackupSummary, per_node: usize) {
    for node in &summary.nodes {
        if let Some(error) = &node.error {
            println!("node {} failed: {error}", node.name);
        }
        for warning in node.warnings.iter().take(per_node) {
            println!("node {}: {warning}", node.name);
        }
        if node.warning_count as usize > per_node.min(node.warnings.len()) {
            println!(
                "node {}: ... {} warnings in all (strata show --json)",
                node.name, node.warning_count
            );
        }
    }
}
