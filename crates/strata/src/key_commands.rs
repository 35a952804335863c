//! `strata key ...` and `strata migrate`: the passwords of a repository and its format
//! upgrade. The work is in `strata_repo::keyring` and `strata_coordinator::migrate`; this
//! parses, asks for secrets, calls, audits and prints.

use crate::commands::{print_json, CommandResult, Context};
use crate::failure::{code, Failure};
use clap::Subcommand;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use strata_repo::crypto::KdfParams;

/// Environment variable holding the new password of `key add` / `key passwd`.
const NEW_PASSWORD_ENV: &str = "STRATA_NEW_PASSWORD";

/// The key subcommands.
#[derive(Debug, Subcommand)]
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
    new_password_file: Option<PathBuf>,
}

impl NewPassword {
    fn read(&self) -> Result<String, Failure> {
        let password = if let Some(path) = &self.new_password_file {
            read_first_line(path)?
        } else if let Ok(value) = std::env::var(NEW_PASSWORD_ENV) {
            value
        } else if std::io::stdin().is_terminal() {
            let ask = |prompt: &str| {
                rpassword::prompt_password(prompt).map_err(|e| {
                    Failure::new(code::PASSWORD, format!("cannot read the password: {e}"))
                })
            };
            let first = ask("new password: ")?;
            if ask("repeat the new password: ")? != first {
                return Err(Failure::new(code::PASSWORD, "the passwords do not match"));
            }
            first
        } else {
            return Err(Failure::new(
                code::USAGE,
                format!("no new password: set {NEW_PASSWORD_ENV}, pass --new-password-file FILE, or run in a terminal to be asked"),
            ));
        };
        if password.is_empty() {
            return Err(Failure::new(code::USAGE, "the new password is empty"));
        }
        Ok(password)
    }
}

fn read_first_line(path: &Path) -> Result<String, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::new(
            code::USAGE,
            format!("cannot read the new password from {}: {e}", path.display()),
        )
    })?;
    Ok(text.lines().next().unwrap_or_default().to_string())
}

impl Context {
    /// `strata key ...`.
    pub(crate) async fn key(&self, command: KeyCommand) -> CommandResult {
        if self.global.server.is_some() {
            return Err(Failure::new(
                code::USAGE,
                "key management works on the repository from this host: drop --server",
            ));
        }
        let storage = self.storage()?;
        let repo = self.open_storage(&storage).await?;
        match command {
            KeyCommand::List => {
                let keys = repo.list_keys().await?;
                if self.global.json {
                    print_json(&keys);
                    return Ok(0);
                }
                println!(
                    " {:<32}  {:<20}  {:<8}  {:<6}  note",
                    "id", "created", "kdf", "in use"
                );
                for k in &keys {
                    println!(
                        " {:<32}  {:<20}  {:<8}  {:<6}  {}",
                        k.id,
                        k.created,
                        k.kdf,
                        if k.in_use { "yes" } else { "" },
                        k.problem.as_deref().unwrap_or("")
                    );
                }
                Ok(0)
            }
            KeyCommand::Add { new } => {
                let password = new.read()?;
                let done = repo
                    .add_key(&password, KdfParams::default())
                    .await
                    .map_err(Failure::from);
                let id = self
                    .audited(&repo, &storage.name, "key-add", "keys", done, |id| {
                        ("succeeded", format!("added key {id}"))
                    })
                    .await?;
                self.say(format!("added key {id}"));
                Ok(0)
            }
            KeyCommand::Remove { id, force } => {
                let done = repo.remove_key(&id, force).await.map_err(Failure::from);
                self.audited(&repo, &storage.name, "key-remove", &id, done, |_| {
                    ("succeeded", String::new())
                })
                .await?;
                self.say(format!("removed key {id}"));
                Ok(0)
            }
            KeyCommand::Passwd { new } => {
                let password = new.read()?;
                let old = repo.key_id().to_string();
                let done = repo
                    .change_password(&password, KdfParams::default())
                    .await
                    .map_err(Failure::from);
                let id = self
                    .audited(&repo, &storage.name, "key-passwd", &old, done, |id| {
                        ("succeeded", format!("key {old} replaced by {id}"))
                    })
                    .await?;
                self.say(format!("password changed: key {old} replaced by {id}"));
                Ok(0)
            }
        }
    }

    /// `strata migrate`: upgrades a format-version-1 repository.
    pub(crate) async fn migrate(&self) -> CommandResult {
        if self.global.server.is_some() {
            return Err(Failure::new(
                code::USAGE,
                "migrate works on the repository from this host: drop --server",
            ));
        }
        let storage = self.storage()?;
        let password = self.password_for(&storage).await?;
        let repo =
            strata_repo::Repository::open_catalog(storage.store.clone(), password.as_deref())
                .await?;
        let report = strata_coordinator::migrate::migrate(&repo, password.as_deref()).await?;
        if report.migrated {
            // Reopen: the audit entry is written in the new format.
            let repo = self.open_storage(&storage).await?;
            let detail = format!(
                "format version {}: {} objects rewritten, key {}",
                strata_repo::format::FORMAT_VERSION,
                report.objects,
                report.key
            );
            self.audited(
                &repo,
                &storage.name,
                "migrate",
                "repository",
                Ok(()),
                |_| ("succeeded", detail.clone()),
            )
            .await?;
        }
        if self.global.json {
            print_json(&report);
        } else if report.migrated {
            self.say(format!(
                "migrated to format version {}: {} objects rewritten, key {} bound to the repository",
                strata_repo::format::FORMAT_VERSION,
                report.objects,
                report.key
            ));
        } else {
            self.say("the repository is already at the current format version");
        }
        Ok(0)
    }
}
