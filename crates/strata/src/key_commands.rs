//! `strata init`, `strata key ...` and `strata migrate`: a repository made, its passwords
//! and its format upgrade. The use cases (refusals, audit entries) are in `strata_api::keys`;
//! this parses, reads the new password (environment, file or terminal), calls and prints.

use crate::cli::{KeyCommand, NewPassword};
use crate::context::{ask_password, prompt_password, CommandResult, Context};
use crate::failure::{code, Failure};
use crate::output::print_json;
use std::io::IsTerminal;
use strata_api::failure::CoordinatorError;
use strata_api::keys;
use strata_api::runs::local_actor;

/// Environment variable holding the new password of `key add` / `key passwd`.
const NEW_PASSWORD_ENV: &str = "STRATA_NEW_PASSWORD";

impl NewPassword {
    fn read(&self) -> Result<String, Failure> {
        let usage = |why: String| Failure::new(code::USAGE, why);
        let password = if let Some(path) = &self.new_password_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                usage(format!(
                    "cannot read the new password from {}: {e}",
                    path.display()
                ))
            })?;
            text.lines().next().unwrap_or_default().to_string()
        } else if let Ok(value) = std::env::var(NEW_PASSWORD_ENV) {
            value
        } else if std::io::stdin().is_terminal() {
            prompt_password("new password: ", Some("repeat the new password: "))?
        } else {
            return Err(usage(format!("no new password: set {NEW_PASSWORD_ENV}, pass --new-password-file FILE, or run in a terminal to be asked")));
        };
        if password.is_empty() {
            return Err(usage("the new password is empty".into()));
        }
        Ok(password)
    }
}

impl Context {
    pub(crate) async fn init(&self) -> CommandResult {
        self.here_only(
            "init creates a repository from this host with its own password: drop --server",
        )?;
        let ask =
            || ask_password(&self.config, true).map_err(|f| CoordinatorError::Password(f.message));
        let created = self.local.init(ask).await?;
        if self.global.json {
            print_json(&created);
        } else {
            self.say(format!(
                "created repository {} at {}",
                created.id, created.location
            ));
        }
        Ok(0)
    }
}

impl Context {
    /// `strata key ...`.
    pub(crate) async fn key(&self, command: KeyCommand) -> CommandResult {
        self.here_only("key management works on the repository from this host: drop --server")?;
        let repo = self.local.repo().await?;
        // Built only to change keys: listing them needs no webhooks.
        let actions = || self.local.actions(&repo, &self.config.default_storage);
        let who = local_actor();
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
                    let in_use = if k.in_use { "yes" } else { "" };
                    let note = k.problem.as_deref().unwrap_or("");
                    println!(
                        " {:<32}  {:<20}  {:<8}  {in_use:<6}  {note}",
                        k.id, k.created, k.kdf
                    );
                }
            }
            KeyCommand::Add { new } => {
                let password = new.read()?;
                let id = actions()?.add_key(&who, &password).await?;
                self.say(format!("added key {id}"));
            }
            KeyCommand::Remove { id, force } => {
                actions()?.remove_key(&who, &id, force).await?;
                self.say(format!("removed key {id}"));
            }
            KeyCommand::Passwd { new } => {
                let password = new.read()?;
                let change = actions()?.change_password(&who, &password).await?;
                let (old, new) = (change.old, change.new);
                self.say(format!("password changed: key {old} replaced by {new}"));
            }
        }
        Ok(0)
    }

    /// `strata migrate`: upgrades a repository of format version 1 or 2.
    pub(crate) async fn migrate(&self) -> CommandResult {
        self.here_only("migrate works on the repository from this host: drop --server")?;
        let storage = self.storage()?;
        let password = self.password_for(&storage).await?;
        let (events, who) = (self.local.events()?, local_actor());
        let report = keys::migrate(&storage, password.as_deref(), &who, &events).await?;
        let version = strata_api::reports::FORMAT_VERSION;
        if self.global.json {
            print_json(&report);
        } else if report.migrated {
            let (objects, key) = (report.objects, &report.key);
            self.say(format!("migrated to format version {version}: {objects} objects rewritten, key {key} bound to the repository"));
        } else {
            self.say("the repository is already at the current format version");
        }
        Ok(0)
    }
}
