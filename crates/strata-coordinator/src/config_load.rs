//! Reading a configuration and checking it whole: [`Config::load`], [`Config::parse`],
//! [`Config::from_table`] and [`Config::validate`].
//!
//! The sections are plain data in [`crate::config`], which checks what it can alone; the
//! checks that need another module (the plugins a component names, the events webhooks
//! ask for, retention's and schedules' own syntax) live in those modules and are called
//! from here, so `config` depends on none of them.

use crate::config::{parse_error, Config, ConfigError};
use std::path::Path;

impl Config {
    /// Parses a configuration text; `base` is the directory relative paths refer to.
    pub fn parse(text: &str, origin: &Path, base: &Path) -> Result<Config, ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| parse_error(origin, e))?;
        Config::from_table(table, origin, base)
    }

    /// The configuration from a file already parsed as TOML, with the sections other
    /// crates own taken out (any left is an unknown field); `origin` names the file in
    /// errors and `base` is the directory relative paths refer to.
    pub fn from_table(
        table: toml::Table,
        origin: &Path,
        base: &Path,
    ) -> Result<Config, ConfigError> {
        let mut config: Config = table.try_into().map_err(|e| parse_error(origin, e))?;
        config.resolve_paths(base);
        config.validate()?;
        config.source_path = Some(std::path::absolute(origin).unwrap_or(origin.to_path_buf()));
        Ok(config)
    }

    /// Reads a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, path, base)
    }

    /// Checks what TOML types cannot: names, references, ranges, and each section with
    /// the module that reads it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_sections()?;
        crate::plugin::check_components(self)?;
        crate::webhooks::check(&self.webhooks)?;
        crate::retention::check(&self.retention)?;
        for schedule in &self.schedules {
            crate::schedule::check(schedule).map_err(ConfigError::Invalid)?;
        }
        Ok(())
    }
}
