//! What every command runs with: the configuration, the global options, the use cases
//! in this process or the server of `--server` ([`Context`]), and how a command stops on
//! a signal. The command files add their commands to [`Context`]; `commands` dispatches.

use crate::cli::Global;
use crate::failure::{code, Failure};
use std::io::IsTerminal;
use strata_api::config::Config;
use strata_api::failure::CoordinatorError;
use strata_api::runs::Storage;
use strata_api::{Cluster, Http, InProcess};

/// What a command returns: its exit code, or why it failed.
pub(crate) type CommandResult = Result<u8, Failure>;

pub(crate) struct Context {
    pub(crate) config: Config,
    /// The sections of the file other crates own (`[tables]`, `[pgq]`).
    pub(crate) sections: strata_api::config::Sections,
    pub(crate) global: Global,
    /// The use cases run in this process (also what `--server` does not cover: init,
    /// keys, WAL archiving, restores into a directory here).
    pub(crate) local: InProcess,
    /// The server of `--server`, when given.
    http: Option<Http>,
    /// Why this process must stop (set on SIGTERM), for `strata server`.
    pub(crate) stop: tokio::sync::watch::Sender<Option<String>>,
}

/// How long a stopped command waits for its operation to record its end; below systemd's
/// default stop timeout (90 s).
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs `work`; on SIGTERM or SIGINT, asks what runs here to stop (it records itself
/// failed with the reason and releases its nodes and the cluster lock) and waits for
/// that, up to [`STOP_WAIT`].
pub(crate) async fn stoppable(
    ctx: &Context,
    work: impl std::future::Future<Output = CommandResult>,
) -> CommandResult {
    use tokio::signal::unix::{signal, SignalKind};
    let handler = |kind| {
        signal(kind).map_err(|e| Failure::new(code::FAILED, format!("cannot handle signals: {e}")))
    };
    let (mut term, mut int) = (
        handler(SignalKind::terminate())?,
        handler(SignalKind::interrupt())?,
    );
    tokio::pin!(work);
    let signal = tokio::select! {
        result = &mut work => return result,
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    let why = format!("stopped: strata received {signal}");
    eprintln!("strata: {why}; ending what runs");
    ctx.local.stop(&why);
    ctx.stop.send_replace(Some(why.clone()));
    match tokio::time::timeout(STOP_WAIT, work).await {
        Ok(result) => result,
        Err(_) => Err(Failure::new(
            code::FAILED,
            format!(
                "{why}, but what ran did not end within {} s",
                STOP_WAIT.as_secs()
            ),
        )),
    }
}

impl Context {
    /// The configuration of `--config`, `./strata.toml` or the defaults; with
    /// `own_config` false `--config` belongs to the command and strata's own is not read.
    pub(crate) fn load(global: Global, own_config: bool) -> Result<Context, Failure> {
        let (mut config, sections) = match &global.config {
            Some(_) if !own_config => strata_api::config::defaults()?,
            given => strata_api::config::find(given.as_deref())?,
        };
        config.apply_command_line(
            global.repo.as_deref(),
            global.storage.as_deref(),
            global.state_dir.as_deref(),
        )?;
        let http = crate::client::server(&global, &config)?;
        let asking = config.clone();
        let quiet = global.quiet;
        let local = InProcess::new(
            config.clone(),
            Box::new(move || {
                ask_password(&asking, false).map_err(|f| CoordinatorError::Password(f.message))
            }),
            Box::new(move |warning| {
                if !quiet {
                    eprintln!("strata: warning: {warning}");
                }
            }),
        );
        Ok(Context {
            config,
            sections,
            global,
            local,
            http,
            stop: tokio::sync::watch::channel(None).0,
        })
    }

    /// The cluster the commands act on: the server of `--server`, else this process.
    pub(crate) fn cluster(&self) -> &dyn Cluster {
        match &self.http {
            Some(http) => http,
            None => &self.local,
        }
    }

    /// The server of `--server` for the table retention calls, when given.
    pub(crate) fn tables_server(&self) -> Option<&dyn strata_api::Tables> {
        self.http.as_ref().map(|h| h as &dyn strata_api::Tables)
    }

    /// Whether commands go to a server (`--server`).
    pub(crate) fn remote(&self) -> bool {
        self.http.is_some()
    }

    /// Refuses `--server` for a command that only runs here.
    pub(crate) fn here_only(&self, why: &str) -> Result<(), Failure> {
        match self.http {
            Some(_) => Err(Failure::new(code::USAGE, why)),
            None => Ok(()),
        }
    }

    /// Whether live progress may be drawn (never with -q or --json).
    pub(crate) fn interactive(&self) -> bool {
        !self.global.quiet && !self.global.json
    }

    pub(crate) fn say(&self, text: impl AsRef<str>) {
        if !self.global.quiet && !self.global.json {
            println!("{}", text.as_ref());
        }
    }

    pub(crate) fn storage(&self) -> Result<Storage, Failure> {
        Ok(self.local.storage()?)
    }

    /// The password when `storage` is encrypted (unencrypted repositories have no real
    /// key, so nobody is asked for one).
    pub(crate) async fn password_for(&self, storage: &Storage) -> Result<Option<String>, Failure> {
        Ok(self.local.password_for(storage).await?)
    }
}

/// The password from env or file, else asked on the terminal (twice with `confirm`).
pub(crate) fn ask_password(config: &Config, confirm: bool) -> Result<Option<String>, Failure> {
    if let Some(password) = config.password()? {
        return Ok(Some(password));
    }
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    let repeat = confirm.then_some("repeat the password: ");
    Ok(Some(prompt_password("repository password: ", repeat)?))
}

/// Asks for a password on the terminal; with `repeat`, asks again and refuses a
/// mismatch.
pub(crate) fn prompt_password(prompt: &str, repeat: Option<&str>) -> Result<String, Failure> {
    let ask = |prompt: &str| {
        rpassword::prompt_password(prompt)
            .map_err(|e| Failure::new(code::PASSWORD, format!("cannot read the password: {e}")))
    };
    let first = ask(prompt)?;
    if let Some(repeat) = repeat {
        if ask(repeat)? != first {
            return Err(Failure::new(code::PASSWORD, "the passwords do not match"));
        }
    }
    Ok(first)
}
