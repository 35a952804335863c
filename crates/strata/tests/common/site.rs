//! One site for the CLI tests: a scratch directory, a strata configuration in it (local
//! storages, nodes backing up directories of the site, any further TOML), and the
//! binary run against that configuration as an operator's shell would.
//!
//! Tests used to write each of these by hand; the builder keeps the configuration's text
//! in one place and the command plumbing (environment, exit code, output) in another.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::pgserver::as_postgres as as_postgres_user;
use super::{strata_at, PASSWORD};

/// How a [`Site`] is laid out, before its configuration is written.
///
/// Paths are relative to the site's directory. Without any call the configuration has
/// the storage `main` at `repo` (the default storage), the state directory `state`, no
/// nodes, and is the file `strata.toml`.
#[must_use]
pub struct SiteBuilder {
    default_storage: String,
    storages: Vec<(String, String)>,
    nodes: Vec<(String, String)>,
    state: String,
    file: String,
    extra: String,
    token: Option<String>,
    env: Vec<(String, String)>,
    whole: Option<String>,
    binary: Option<PathBuf>,
    as_postgres: bool,
    password_file: bool,
}

impl SiteBuilder {
    /// A node `name` whose one root is the directory `root` of the site (not created:
    /// the test fills it).
    pub fn node(mut self, name: &str, root: &str) -> Self {
        self.nodes.push((name.to_string(), root.to_string()));
        self
    }

    /// A local storage `name` at the directory `dir` of the site; a storage already
    /// named so (`main`) moves there.
    pub fn storage(mut self, name: &str, dir: &str) -> Self {
        match self.storages.iter_mut().find(|(n, _)| n == name) {
            Some(storage) => storage.1 = dir.to_string(),
            None => self.storages.push((name.to_string(), dir.to_string())),
        }
        self
    }

    /// Which storage commands use when they name none (`main` unless set).
    pub fn default_storage(mut self, name: &str) -> Self {
        self.default_storage = name.to_string();
        self
    }

    /// The state directory, for sites that share a directory with another.
    pub fn state(mut self, dir: &str) -> Self {
        self.state = dir.to_string();
        self
    }

    /// The configuration's file name, for sites that share a directory with another.
    pub fn file(mut self, name: &str) -> Self {
        self.file = name.to_string();
        self
    }

    /// TOML appended after the nodes (components, hooks, `[server]`, more nodes...).
    pub fn config_extra(mut self, toml: &str) -> Self {
        self.extra.push_str(toml);
        self
    }

    /// The configuration's whole text instead of the one the other options make, for a
    /// site whose configuration has none of their parts: a tables database's (load_file,
    /// tables), which names no nodes and no state directory, and its own storage or none.
    pub fn whole_config(mut self, toml: &str) -> Self {
        self.whole = Some(toml.to_string());
        self
    }

    /// The API token every command carries (`STRATA_TOKEN`).
    pub fn token(mut self, token: &str) -> Self {
        self.token = Some(token.to_string());
        self
    }

    /// An environment variable every command carries.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Commands run `binary` instead of the build's: a copy in a directory PostgreSQL's
    /// user can reach, for a site whose commands run as that user.
    pub fn binary(mut self, binary: &Path) -> Self {
        self.binary = Some(binary.to_path_buf());
        self
    }

    /// Commands run as PostgreSQL runs strata (its `archive_command`): as the postgres
    /// user when the tests run as root (`HOME=/tmp`), in the test's own environment and
    /// directory rather than an operator's clean shell, without `STRATA_CONFIG`.
    pub fn run_as_postgres(mut self) -> Self {
        self.as_postgres = true;
        self
    }

    /// The configuration names its password file (`[password] file`): commands carry no
    /// password (`STRATA_PASSWORD` removed), not the test password.
    pub fn password_file(mut self) -> Self {
        self.password_file = true;
        self
    }

    /// The configuration's text for a site in `dir`.
    fn text(&self, dir: &Path) -> String {
        if let Some(whole) = &self.whole {
            return whole.clone();
        }
        let at = |rel: &str| dir.join(rel).display().to_string();
        let mut text = format!(
            "default_storage = \"{}\"\nstate_dir = \"{}\"\n",
            self.default_storage,
            at(&self.state)
        );
        for (name, path) in &self.storages {
            text.push_str(&format!("[storages.{name}]\npath = \"{}\"\n", at(path)));
        }
        for (name, root) in &self.nodes {
            text.push_str(&format!(
                "[[nodes]]\nname = \"{name}\"\nroots = [\"{}\"]\n",
                at(root)
            ));
        }
        text.push_str(&self.extra);
        text
    }

    /// Writes the configuration into a fresh scratch directory (removed with the site).
    pub fn build(self) -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let mut site = self.build_in(tmp.path());
        site.tmp = Some(tmp);
        site
    }

    /// Writes the configuration into `dir`, which the caller keeps (sites sharing one
    /// directory and repository).
    pub fn build_in(self, dir: &Path) -> Site {
        let config = dir.join(&self.file);
        std::fs::write(&config, self.text(dir)).unwrap();
        Site {
            tmp: None,
            dir: dir.to_path_buf(),
            config,
            token: self.token,
            env: self.env,
            binary: self.binary,
            as_postgres: self.as_postgres,
            password_file: self.password_file,
        }
    }
}

/// A scratch site: its directory, its configuration, and the strata command for it.
pub struct Site {
    tmp: Option<tempfile::TempDir>,
    dir: PathBuf,
    config: PathBuf,
    token: Option<String>,
    env: Vec<(String, String)>,
    binary: Option<PathBuf>,
    as_postgres: bool,
    password_file: bool,
}

impl Site {
    /// A builder with the defaults [`SiteBuilder`] describes.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> SiteBuilder {
        SiteBuilder {
            default_storage: "main".to_string(),
            storages: vec![("main".to_string(), "repo".to_string())],
            nodes: Vec::new(),
            state: "state".to_string(),
            file: "strata.toml".to_string(),
            extra: String::new(),
            token: None,
            env: Vec::new(),
            whole: None,
            binary: None,
            as_postgres: false,
            password_file: false,
        }
    }

    /// The site's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `name` inside the site's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The configuration file (tests may rewrite it).
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// `strata --config CONFIG` in the site's directory with a clean environment, the
    /// test password, and the site's token and environment: for a test that needs the
    /// process itself (spawned, piped, more arguments or environment). A site built with
    /// [`SiteBuilder::binary`], [`SiteBuilder::run_as_postgres`] or
    /// [`SiteBuilder::password_file`] runs its command as those say.
    pub fn command(&self) -> Command {
        let mut cmd = match (&self.binary, self.as_postgres) {
            (None, false) => strata_at(&self.dir, &self.config),
            (binary, as_postgres) => {
                let mut cmd = Command::new(match binary {
                    Some(binary) => binary.as_path(),
                    None => Path::new(env!("CARGO_BIN_EXE_strata")),
                });
                cmd.arg("--config").arg(&self.config);
                if as_postgres {
                    cmd.env_remove("STRATA_CONFIG");
                    as_postgres_user(&mut cmd);
                } else {
                    cmd.env_clear()
                        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                        .env("STRATA_PASSWORD", PASSWORD)
                        .current_dir(&self.dir);
                }
                cmd
            }
        };
        if self.password_file {
            cmd.env_remove("STRATA_PASSWORD");
        }
        if let Some(token) = &self.token {
            cmd.env("STRATA_TOKEN", token);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// `strata ARGS`, run to its end.
    pub fn strata(&self, args: &[&str]) -> Out {
        Out::from(self.command().args(args).output().unwrap())
    }

    /// `strata ARGS` with the variables `env` set for this one run.
    pub fn strata_env(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let mut cmd = self.command();
        cmd.args(args).envs(env.iter().copied());
        Out::from(cmd.output().unwrap())
    }

    /// `strata ARGS`, which must exit 0; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.strata(args).ok(args)
    }

    /// [`Site::ok`] with the variables `env` set for this one run.
    pub fn ok_env(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        self.strata_env(args, env).ok(args)
    }

    /// `strata ARGS`, which must exit `code`; its stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.strata(args);
        assert_eq!(out.code, Some(code), "strata {args:?}\n{out}");
        out.stderr
    }

    /// `strata ARGS` (which prints JSON: `--json` among them), which must exit 0; its
    /// stdout parsed.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let stdout = self.ok(args);
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("strata {args:?} printed no JSON ({e}): {stdout}"))
    }
}

/// A finished command: its exit code (`None` when a signal ended it) and its output.
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Asserts the command `args` exited 0; its stdout.
    pub fn ok(self, args: &[&str]) -> String {
        assert_eq!(self.code, Some(0), "strata {args:?} failed\n{self}");
        self.stdout
    }
}

impl From<Output> for Out {
    fn from(out: Output) -> Out {
        Out {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl fmt::Display for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}
