//! The application's configuration file (`strata.toml`), composed from the sections their
//! crates own: what the command line, the server and any other front end read.
//!
//! The coordinator owns most of the file ([`crate::config::Config`]: storages,
//! nodes, server, retention, postgres, ...); strata-tables owns `[tables]` and strata-pgq
//! owns `[pgq]`. Those two sit beside the coordinator, which does not know them, so the
//! file is split here, at the top: each section goes to its owner's type, defaults and
//! checks, the rest to the coordinator. `strata config default` prints every owner's
//! documented defaults in the file's order; `config show` and the server's `/config`
//! show every section.

use serde::Serialize;
use std::path::{Path, PathBuf};
use strata_coordinator::config::{parse_error, Config, ConfigError};
use strata_pgq::config::PgqConfig;
use strata_pgq::ticker::config::TickerConfig;
use strata_pgq::PgqError;
use strata_tables::config::TablesConfig;

/// The sections of the file owned by crates beside the coordinator.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Sections {
    /// `[tables]`: table retention's database (strata-tables).
    pub tables: TablesConfig,
    /// `[pgq]`: the PgQ ticker (strata-pgq).
    pub pgq: PgqConfig,
}

/// The documented default configuration, every section, as `strata config default`
/// prints it.
pub fn default_text() -> String {
    use strata_coordinator::config::{default_config, DEFAULT_CONFIG_END};
    [
        default_config().as_str(),
        strata_tables::config::DEFAULT_SECTION,
        strata_pgq::config::DEFAULT_SECTION,
        DEFAULT_CONFIG_END,
    ]
    .concat()
}

/// Reads a configuration file: every section, each checked by its owner.
pub fn load(path: &Path) -> Result<(Config, Sections), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path, path.parent().unwrap_or(Path::new(".")))
}

/// The configuration in effect: the file `given` (`--config`), else `./strata.toml` when
/// it exists, else the defaults.
pub fn find(given: Option<&Path>) -> Result<(Config, Sections), ConfigError> {
    match given {
        Some(path) => load(path),
        None if Path::new("strata.toml").exists() => load(Path::new("strata.toml")),
        None => defaults(),
    }
}

/// The built-in defaults, every section.
pub fn defaults() -> Result<(Config, Sections), ConfigError> {
    parse("", Path::new("(defaults)"), Path::new("."))
}

/// The PgQ ticker's settings from the `[pgq]` section of the configuration file at `path`
/// (the whole file is read and checked, as every command does; relative paths are
/// relative to it).
pub fn pgq_ticker(path: &Path) -> Result<TickerConfig, PgqError> {
    let (_, sections) = load(path).map_err(|e| PgqError::Config {
        path: path.display().to_string(),
        reason: match e {
            ConfigError::Parse { message, .. } => message,
            e => strata_coordinator::error_chain(&e),
        },
    })?;
    Ok(sections.pgq.ticker())
}

/// The PgQ ticker's configuration file and how to read it: `given` (the ticker's file,
/// else `--config`), else `./strata.toml` when it exists. A `.toml` file is strata's
/// configuration (its `[pgq]` section, [`pgq_ticker`]); anything else is pgqd's ini.
pub fn pgq_ticker_file(given: Option<PathBuf>) -> Option<(PathBuf, strata_pgq::ticker::Reader)> {
    let file = given.or_else(|| Some(PathBuf::from("strata.toml")).filter(|own| own.exists()))?;
    let read: strata_pgq::ticker::Reader = if strata_pgq::command::is_toml(&file) {
        pgq_ticker
    } else {
        TickerConfig::load
    };
    Some((file, read))
}

/// This host's server as the configuration has it (`server.listen`, `https` with
/// `server.tls_cert`); a wildcard address is asked on loopback.
pub fn local_server_url(config: &Config) -> String {
    let server = &config.server;
    let scheme = if server.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let listen = &server.listen;
    let (host, port) = listen.rsplit_once(':').unwrap_or((listen.as_str(), "7370"));
    let host = match host {
        "" | "0.0.0.0" => "127.0.0.1",
        "[::]" => "[::1]",
        other => other,
    };
    format!("{scheme}://{host}:{port}")
}

/// Parses a configuration text; `origin` names it in errors and `base` is the directory
/// relative paths refer to.
pub fn parse(text: &str, origin: &Path, base: &Path) -> Result<(Config, Sections), ConfigError> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| parse_error(origin, e))?;
    // Taken out first, so the coordinator's part refuses any key it does not know.
    let tables = table.remove("tables");
    let pgq = table.remove("pgq");
    let sections = Sections {
        tables: section(tables, origin)?,
        pgq: section(pgq, origin)?,
    };
    let config = strata_coordinator::config_file::from_table(table, origin, base)?;
    let mut sections = sections;
    sections.pgq.resolve_paths(base);
    sections.pgq.validate().map_err(ConfigError::Invalid)?;
    sections.tables.validate().map_err(ConfigError::Invalid)?;
    Ok((config, sections))
}

/// One owned section, its defaults when the file has none.
fn section<T: serde::de::DeserializeOwned + Default>(
    value: Option<toml::Value>,
    origin: &Path,
) -> Result<T, ConfigError> {
    match value {
        None => Ok(T::default()),
        Some(value) => value.try_into().map_err(|e| parse_error(origin, e)),
    }
}

/// The whole configuration as shown (`config show`, the server's `/config`): every secret
/// value masked (see [`crate::mask`]).
#[derive(Serialize)]
pub struct Shown {
    #[serde(flatten)]
    core: Config,
    #[serde(flatten)]
    sections: Sections,
}

impl Shown {
    /// `config` and `sections` with secrets masked.
    pub fn new(config: &Config, sections: &Sections) -> Shown {
        use strata_coordinator::mask::{mask_conninfo, masked_config};
        let mut sections = sections.clone();
        if let Some(db) = &mut sections.tables.db {
            *db = mask_conninfo(db);
        }
        sections.pgq.base_connstr = mask_conninfo(&sections.pgq.base_connstr);
        Shown {
            core: masked_config(config),
            sections,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_default_is_every_sections_default() {
        let (config, sections) =
            parse(&default_text(), Path::new("default.toml"), Path::new(".")).unwrap();
        let (defaults, default_sections) =
            parse("", Path::new("(defaults)"), Path::new(".")).unwrap();
        assert_eq!(
            Config {
                source_path: None,
                ..config
            },
            Config {
                source_path: None,
                ..defaults
            }
        );
        assert_eq!(sections, default_sections);
        assert_eq!(sections, Sections::default());
    }

    #[test]
    fn owned_sections_are_read_resolved_and_checked_by_their_owner() {
        let (_, sections) = parse(
            "[pgq]\nlogfile = \"log/pgq.log\"\npidfile = \"/run/pgq.pid\"\nticker_period = 0.5\n[tables]\nschema = \"ops\"\n",
            Path::new("/etc/strata/strata.toml"),
            Path::new("/etc/strata"),
        )
        .unwrap();
        assert_eq!(
            sections.pgq.logfile.as_deref(),
            Some(Path::new("/etc/strata/log/pgq.log"))
        );
        assert_eq!(
            sections.pgq.pidfile.as_deref(),
            Some(Path::new("/run/pgq.pid"))
        );
        assert_eq!(sections.pgq.ticker_period, 0.5);
        assert_eq!(sections.tables.schema, "ops");
        let cases = [
            ("[pgq]\nticker_period = 0", "pgq.ticker_period"),
            ("[pgq]\nwakeup_min_interval = -1", "pgq.wakeup_min_interval"),
            ("[pgq]\ninitial_database = \"\"", "pgq.initial_database"),
            ("[pgq]\nticker_perod = 1", "unknown field `ticker_perod`"),
            ("[pgq]\ndatabase_list = \"a,b\"", "expected a sequence"),
            ("[tables]\nschema = 1", "invalid type"),
            ("[tables]\ndatabase = \"x\"", "unknown field `database`"),
            ("tables = 1", "invalid type"),
            ("colour = \"blue\"", "unknown field `colour`"),
        ];
        for (text, expected) in cases {
            let err = parse(text, Path::new("t.toml"), Path::new("."))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{text:?} gave {err:?}");
        }
    }
}
