//! Reading a configuration file and checking it whole ([`load`], [`parse`], [`from_table`],
//! [`validate`]). The sections are plain data in [`strata_cluster::config`] (this crate's
//! [`crate::config`]), which checks what it can alone; the checks that need another
//! module (the plugins a component names, the events webhooks ask for,
//! schedules' own syntax) live in those modules.

use std::path::Path;
pub use strata_cluster::config::*;

/// Parses a configuration text and checks it whole; `base` is the directory relative
/// paths refer to.
pub fn parse(text: &str, origin: &Path, base: &Path) -> Result<Config, ConfigError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| parse_error(origin, e))?;
    from_table(table, origin, base)
}

/// The configuration from a file already parsed as TOML, with the sections other crates
/// own taken out (any left is an unknown field), checked whole; `origin` names the file
/// in errors and `base` is the directory relative paths refer to.
pub fn from_table(table: toml::Table, origin: &Path, base: &Path) -> Result<Config, ConfigError> {
    let mut config: Config = table.try_into().map_err(|e| parse_error(origin, e))?;
    config.resolve_paths(base);
    validate(&config)?;
    config.source_path = Some(std::path::absolute(origin).unwrap_or(origin.to_path_buf()));
    Ok(config)
}

/// Reads a configuration file and checks it whole.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, path, base)
}

/// Checks what TOML types cannot: names, references, ranges, and each section with the
/// module that reads it.
pub fn validate(config: &Config) -> Result<(), ConfigError> {
    config.check_sections()?;
    crate::plugin::check_components(config)?;
    crate::webhooks::check(&config.webhooks)?;
    for schedule in &config.schedules {
        crate::schedule::check(schedule).map_err(ConfigError::Invalid)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Nodes `db1` (files) and `e1` (no roots), then `extra`.
    fn with_components(extra: &str) -> Result<(), String> {
        with_top_and_components("", extra)
    }

    /// [`with_components`] with top-level keys `top` first.
    fn with_top_and_components(top: &str, extra: &str) -> Result<(), String> {
        let text = format!(
            "{top}\n[[nodes]]\nname = \"db1\"\nroots = [\"/srv/db1\"]\n[[nodes]]\nname = \"e1\"\n{extra}"
        );
        let config: Config = toml::from_str(&text).map_err(|e| e.to_string())?;
        validate(&config).map_err(|e| e.to_string())
    }

    const GOOD: &str = r#"
        [[components]]
        name = "data"
        plugin = "files"
        nodes = ["db1"]
        [[components]]
        name = "topology"
        plugin = "etcd"
        nodes = ["e1"]
        rename = ["db1=db9"]
        [components.etcd]
        endpoints = ["http://127.0.0.1:2379"]
        [[components]]
        name = "engine"
        plugin = "http"
        optional = true
        [components.http]
        backup = "POST http://engine/backups"
        restore = "POST http://engine/backups/{id}/restore"
        [[hooks]]
        component = "engine"
        pause = "POST http://engine/pause"
        resume = "POST http://engine/resume"
    "#;

    /// The commented `[[components]]` and `[[hooks]]` examples of the default text, with
    /// their `#` taken off, are a valid configuration.
    #[test]
    fn the_documented_component_and_hook_examples_are_valid() {
        let start = DEFAULT_CONFIG_END
            .find("# [[components]]")
            .expect("documented");
        let examples: String = DEFAULT_CONFIG_END[start..]
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            // TOML lines only: tables and `key = value`, not the prose around them.
            .filter(|l| {
                l.starts_with('[')
                    || l.split_once(" = ").is_some_and(|(key, _)| {
                        key.trim()
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_')
                    })
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let text = format!(
            "[[nodes]]\nname = \"db1\"\nroots = [\"/srv/db1\"]\n[[nodes]]\nname = \"etcd1\"\n\
             [[components]]\nname = \"data\"\nplugin = \"files\"\nnodes = [\"db1\"]\n{examples}"
        );
        let config: Config = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        validate(&config).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(config.components.len(), 3, "{text}");
        assert_eq!(config.hooks.len(), 2, "{text}");
    }

    #[test]
    fn components_are_checked_with_one_clear_line_each() {
        with_components(GOOD).unwrap();
        let refused = [
            (GOOD.replace("nodes = [\"e1\"]", "nodes = [\"db1\"]"), "in two components"),
            (GOOD.replace("nodes = [\"e1\"]", "nodes = []"), "has no nodes"),
            (GOOD.replace("plugin = \"http\"", "plugin = \"http\"\nnodes = [\"e1\"]"), "has no nodes"),
            (GOOD.replace("[[hooks]]\n        component = \"engine\"", "[[hooks]]\n        component = \"nope\""), "not one of the components"),
            (GOOD.replace("rename = [\"db1=db9\"]", "rename = [\"db1\"]"), "not a rule"),
            (GOOD.replace("name = \"data\"\n        plugin = \"files\"", "name = \"data\"\n        plugin = \"files\"\n        rename = [\"a=b\"]"), "not files components"),
            (GOOD.replace("[[hooks]]", "[components.command]\nbackup = [\"/bin/true\"]\nrestore = [\"/bin/true\"]\n[[hooks]]"), "belongs to a command component"),
            (GOOD.replace("name = \"topology\"", "name = \"data\""), "must be unique"),
            (GOOD.replace("plugin = \"etcd\"", "plugin = \"etcdv2\""), "is not known"),
            (GOOD.replace("[[hooks]]\n        component = \"engine\"", "[[hooks]]\n        component = \"engine\"\n        node = \"db1\""), "is not in component"),
            (format!("{GOOD}\n[[hooks]]\nnode = \"db1\"\nat = \"before\"\nrun = \"POST http://a/x\"\n[[hooks]]\nnode = \"db1\"\nat = \"success\"\nrun = \"POST http://a/y\"\n"), "give them distinct"),
        ];
        for (text, why) in refused {
            let err = with_components(&text).expect_err(why);
            assert!(err.contains(why), "{why}: {err}");
        }
        let mixed = with_top_and_components("plugin = \"postgres\"", GOOD).unwrap_err();
        assert!(mixed.contains("do not go together"), "{mixed}");
        let lost = GOOD.replace("nodes = [\"e1\"]\n", "nodes = []\n");
        assert!(with_components(&lost).is_err());
    }

    #[test]
    fn the_documented_default_is_the_default() {
        let parsed: Config =
            toml::from_str(&format!("{}{DEFAULT_CONFIG_END}", default_config())).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let text = r#"
            [storages.local]
            type = "local"
            path = "repo"
            [storages.offsite]
            url = "s3://bucket/prefix"
            options = { aws_region = "eu-west-1", aws_secret_access_key = "hunter2" }
            [[nodes]]
            name = "db1"
            roots = ["data/db1", "/abs"]
        "#;
        let config = parse(
            text,
            Path::new("/etc/strata/strata.toml"),
            Path::new("/etc/strata"),
        )
        .unwrap();
        let local = StorageConfig {
            kind: Some("local".into()),
            ..StorageConfig::local("/etc/strata/repo")
        };
        assert_eq!(config.default_storage(), &local);
        let masked = config.storages["offsite"].masked();
        assert_eq!(masked.options["aws_secret_access_key"], "***");
        assert_eq!(masked.options["aws_region"], "eu-west-1");
        assert_eq!(config.nodes[0].roots, ["/etc/strata/data/db1", "/abs"]);
    }

    #[test]
    fn bad_configs_are_refused_with_a_reason() {
        let cases = [
            ("default_storage = \"s3\"", "not one of the configured storages"),
            ("[backup]\ncompression_level = 40", "compression_level"),
            ("[[nodes]]\nname = \"a b\"\nroots = [\"/x\"]", "node name"),
            ("[storages.x]\nurl = \"ftp://h/p\"", "unsupported url scheme"),
            ("[storages.x]\ntype = \"s3\"\npath = \"/d\"", "is a local storage"),
            ("[storages.x]\noptions = {}", "needs a `path` or a `url`"),
            ("[[nodes]]\nname = \"a\"\nroots = []", "no roots"),
            ("[[nodes]]\nname = \"a\"\nroots = [\"/x\"]\n[[nodes]]\nname = \"a\"\nroots = [\"/y\"]", "twice"),
            ("[repository]\nencryption = \"rot13\"", "unknown encryption"),
            ("colour = \"blue\"", "unknown field"),
            ("[[nodes]]\nname = \"a\"\nurl = \"ftp://x\"", "http://"),
            ("[server]\nnode = \"zz\"", "not one of the configured"),
            ("[server]\ntls_cert = \"c.pem\"", "go together"),
            ("[retention]\ntimezone = \"Moon/Base\"", "IANA"),
            ("[[schedules]]\njob = \"backup\"\ncron = \"99 * * * *\"", "cron"),
            ("[[schedules]]\njob = \"dance\"\ncron = \"0 * * * *\"", "backup, cleanup, verify, drill, tables or sql"),
            ("[[schedules]]\njob = \"backup\"\ncron = \"0 * * * *\"\n[[schedules]]\njob = \"backup\"\ncron = \"5 * * * *\"", "distinct"),
            ("[retention]\nkeep_within = \"3 days\"", "keep_within"),
            ("[pgq]\nticker_period = 1", "unknown field `pgq`"),
            ("[storages.x]\nurl = \"ftp://h/p\"", "unsupported url scheme"),
            ("[storages.x]\ntype = \"s3\"\npath = \"/d\"", "is a local storage"),
            ("[storages.x]\noptions = {}", "needs a `path` or a `url`"),
        ];
        for (text, expected) in cases {
            let err = parse(text, Path::new("t.toml"), Path::new("."))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{text:?} gave {err:?}");
        }
    }
}
