//! The node's ini file, the same one Python Londiste reads: a `[londiste3]` section with
//! `job_name`, `db`, `queue_name`, `logfile`, `pidfile` and tuning keys, `%(key)s`
//! interpolation from the same section, `#`/`;` comments. One file per node lets an
//! operator swap the Python worker for the strata worker without rewriting anything.

use crate::error::{ConfigError, LondisteError, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Sections read, in order of preference (Python Londiste 3 uses `londiste3`).
pub const SECTIONS: &[&str] = &["londiste3", "londiste"];

/// A node's settings with Python Londiste's defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// Worker (consumer) name on the provider's queue; also names copy consumers
    /// (`<job_name>.copy.<table>`). Default: the ini file's name without extension.
    pub job_name: String,
    /// How to reach the local database (libpq connection string).
    pub db: String,
    /// The cascaded queue.
    pub queue_name: String,
    /// Where a detached worker logs (`logfile`, `~/` expanded); required by `worker -d`.
    pub logfile: Option<PathBuf>,
    /// The worker's pidfile (`pidfile`): one worker per job, and `<pidfile>.copy.<table>`
    /// for its copy tasks, as Python Londiste names them.
    pub pidfile: Option<PathBuf>,
    /// Sleep between polls when the provider has no new batch (`loop_delay`, 1 s).
    pub loop_delay: Duration,
    /// How often a subscriber tells its provider how far its subtree has got
    /// (`local_wm_publish_period`, 300 s), so the provider's queue can rotate.
    pub local_wm_publish_period: Duration,
    /// How often the root publishes the cascade's global watermark
    /// (`global_wm_publish_period`, 300 s), so every node can drop what all have seen.
    pub global_wm_publish_period: Duration,
    /// Tables copied at once (`parallel_copies`, 1).
    pub parallel_copies: usize,
    /// Statements sent to the target in one round trip (`apply_batch_count`, 200 as Python).
    pub apply_batch_count: usize,
    /// Bytes of SQL sent in one round trip at most (`apply_batch_bytes`, 1 MiB): Python
    /// caps by count only, which a table of wide rows turns into huge buffers.
    pub apply_batch_bytes: usize,
    /// Bytes of events held while streaming a batch (`batch_byte_cap`, 8 MiB).
    pub batch_byte_cap: usize,
    /// How much the worker logs (`log_level`: `error`, `warning`, `info` (default) or
    /// `debug`); `-v` and `-q` on `worker` move it from there.
    pub log_level: strata_pgq::log::Level,
    /// Park events of a type the worker does not know instead of stopping on them
    /// (`park_unknown_events`, false): each one is recorded in
    /// `londiste.strata_parked_events`, never skipped silently.
    pub park_unknown_events: bool,
    /// How long the main loop may make no progress before `/ready` and the
    /// `strata_londiste_failing` metric report it stalled (`stall_timeout`, 120 s; 0: never).
    pub stall_timeout: Duration,
    /// Everything in the section, for keys this crate does not interpret.
    pub raw: BTreeMap<String, String>,
}

/// An ini file as sections of key/value pairs, keys lowercased, in name order.
pub type Sections = BTreeMap<String, BTreeMap<String, String>>;

/// Parses ini text into sections of key/value pairs (keys lowercased).
pub fn parse_ini(text: &str) -> std::result::Result<Sections, ConfigError> {
    let mut sections = Sections::new();
    let mut current: Option<String> = None;
    let mut last_key: Option<String> = None;
    for (n, raw_line) in text.lines().enumerate() {
        let line = raw_line.trim_end();
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        // Continuation line (indented): appended to the previous value, as ConfigParser does.
        if line.starts_with([' ', '\t']) {
            if let (Some(section), Some(key)) = (&current, &last_key) {
                let value = sections
                    .get_mut(section)
                    .and_then(|s| s.get_mut(key))
                    .expect("key was inserted");
                value.push('\n');
                value.push_str(trimmed);
                continue;
            }
        }
        if let Some(name) = trimmed.strip_prefix('[') {
            let name = name
                .strip_suffix(']')
                .ok_or(ConfigError::UnclosedSection { line: n + 1 })?;
            current = Some(name.trim().to_string());
            sections.entry(name.trim().to_string()).or_default();
            last_key = None;
            continue;
        }
        let Some(section) = &current else {
            return Err(ConfigError::OutsideSection { line: n + 1 });
        };
        let split = trimmed
            .find(['=', ':'])
            .ok_or(ConfigError::NotASetting { line: n + 1 })?;
        let key = trimmed[..split].trim().to_lowercase();
        if key.is_empty() {
            return Err(ConfigError::EmptyKey { line: n + 1 });
        }
        let value = trimmed[split + 1..].trim().to_string();
        sections
            .get_mut(section)
            .expect("section exists")
            .insert(key.clone(), value);
        last_key = Some(key);
    }
    Ok(sections)
}

/// Expands `%(key)s` from `vars` (and `%%` to `%`), as Python's ConfigParser does.
fn interpolate(
    value: &str,
    vars: &BTreeMap<String, String>,
    depth: u32,
) -> std::result::Result<String, ConfigError> {
    if depth > 10 {
        return Err(ConfigError::InterpolationTooDeep {
            value: value.to_string(),
        });
    }
    let mut out = String::new();
    let mut rest = value;
    while let Some(pos) = rest.find('%') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos + 1..];
        if let Some(t) = tail.strip_prefix('%') {
            out.push('%');
            rest = t;
        } else if let Some(t) = tail.strip_prefix('(') {
            let end = t.find(")s").ok_or_else(|| ConfigError::BadInterpolation {
                value: value.to_string(),
            })?;
            let key = t[..end].to_lowercase();
            let Some(inner) = vars.get(&key) else {
                return Err(ConfigError::UnknownKey {
                    value: value.to_string(),
                    key,
                });
            };
            out.push_str(&interpolate(inner, vars, depth + 1)?);
            rest = &t[end + 2..];
        } else {
            out.push('%');
            rest = tail;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn expand_home(value: &str) -> PathBuf {
    match value.strip_prefix("~/") {
        Some(rest) => match std::env::var_os("HOME") {
            Some(home) => Path::new(&home).join(rest),
            None => PathBuf::from(value),
        },
        None => PathBuf::from(value),
    }
}

impl NodeConfig {
    /// Reads and checks the ini file.
    pub fn load(path: &Path) -> Result<NodeConfig> {
        let err = |reason: ConfigError| LondisteError::Config {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(ConfigError::Read(e)))?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "londiste".into());
        NodeConfig::parse(&text, &stem).map_err(err)
    }

    /// Parses ini text; `default_job` is the job name when the file names none.
    pub fn parse(text: &str, default_job: &str) -> std::result::Result<NodeConfig, ConfigError> {
        let sections = parse_ini(text)?;
        let (name, section) = SECTIONS
            .iter()
            .find_map(|s| sections.get(*s).map(|v| (*s, v)))
            .ok_or(ConfigError::NoSection)?;
        let mut vars = section.clone();
        vars.entry("job_name".into())
            .or_insert_with(|| default_job.to_string());
        vars.entry("service_name".into())
            .or_insert_with(|| name.to_string());
        let mut raw = BTreeMap::new();
        for (k, v) in &vars {
            raw.insert(k.clone(), interpolate(v, &vars, 0)?);
        }
        let get = |k: &str| raw.get(k).filter(|v| !v.is_empty()).cloned();
        let required = |key: &'static str| {
            get(key).ok_or_else(|| ConfigError::Missing {
                section: name.to_string(),
                key,
            })
        };
        let number = |key: &'static str, default: f64| -> std::result::Result<f64, ConfigError> {
            match get(key) {
                None => Ok(default),
                Some(value) => value
                    .parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite() && *n >= 0.0)
                    .ok_or(ConfigError::NotANumber { key, value }),
            }
        };
        let count = |key: &'static str, default: f64| -> std::result::Result<usize, ConfigError> {
            let n = number(key, default)?;
            if !(1.0..=1e12).contains(&n) || n.fract() != 0.0 {
                return Err(ConfigError::NotACount { key });
            }
            Ok(n as usize)
        };
        let flag = |key: &'static str| -> std::result::Result<bool, ConfigError> {
            match get(key).map(|v| v.to_ascii_lowercase()) {
                None => Ok(false),
                Some(v) if ["1", "true", "yes", "on"].contains(&v.as_str()) => Ok(true),
                Some(v) if ["0", "false", "no", "off"].contains(&v.as_str()) => Ok(false),
                Some(value) => Err(ConfigError::NotAFlag { key, value }),
            }
        };
        let log_level = match get("log_level") {
            None => strata_pgq::log::Level::Info,
            Some(value) => {
                strata_pgq::log::Level::parse(&value).ok_or(ConfigError::LogLevel { value })?
            }
        };
        let job_name = required("job_name")?;
        strata_pgq::api::check_name("job", &job_name).map_err(ConfigError::BadName)?;
        let queue_name = required("queue_name")?;
        strata_pgq::api::check_name("queue", &queue_name).map_err(ConfigError::BadName)?;
        Ok(NodeConfig {
            job_name,
            db: required("db")?,
            queue_name,
            logfile: get("logfile").map(|v| expand_home(&v)),
            pidfile: get("pidfile").map(|v| expand_home(&v)),
            loop_delay: Duration::from_secs_f64(number("loop_delay", 1.0)?.min(3600.0)),
            local_wm_publish_period: Duration::from_secs_f64(
                number("local_wm_publish_period", 300.0)?.min(86400.0),
            ),
            global_wm_publish_period: Duration::from_secs_f64(
                number("global_wm_publish_period", 300.0)?.min(86400.0),
            ),
            parallel_copies: count("parallel_copies", 1.0)?,
            apply_batch_count: count("apply_batch_count", 200.0)?,
            apply_batch_bytes: count("apply_batch_bytes", (1 << 20) as f64)?,
            batch_byte_cap: count("batch_byte_cap", (8 << 20) as f64)?,
            log_level,
            park_unknown_events: flag("park_unknown_events")?,
            stall_timeout: Duration::from_secs_f64(number("stall_timeout", 120.0)?.min(86400.0)),
            raw,
        })
    }

    /// The local database's connection settings.
    pub fn dsn(&self) -> Result<strata_pgclient::Dsn> {
        strata_pgclient::Dsn::parse(&self.db)
            .map_err(|e| LondisteError::BadInput(format!("db: {e}")))
    }

    /// The consumer name of the copy task for `table`, as Python Londiste names it.
    pub fn copy_consumer(&self, table: &str) -> String {
        format!("{}.copy.{}", self.job_name, table)
    }

    /// The pidfile of the copy process of `table`, as Python Londiste names it
    /// (`<pidfile>.copy.<table>`): Python's copy process holds it while it copies (and
    /// outlives its main worker), strata's copy task holds it too, so neither tool starts
    /// a second copier under the same copy consumer.
    pub fn copy_pidfile(&self, table: &str) -> Option<PathBuf> {
        let pidfile = self.pidfile.as_ref()?;
        let mut name = pidfile.as_os_str().to_owned();
        name.push(format!(".copy.{table}"));
        Some(PathBuf::from(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_londiste_ini_parses_with_defaults() {
        let text = "# leaf\n[londiste3]\njob_name = l3_leaf\ndb = dbname=leaf\nqueue_name = replika\nlogfile = /tmp/log/%(job_name)s.log\npidfile = /tmp/pid/%(job_name)s.pid\n; comment\n";
        let c = NodeConfig::parse(text, "x").unwrap();
        assert_eq!(c.job_name, "l3_leaf");
        assert_eq!(c.db, "dbname=leaf");
        assert_eq!(c.queue_name, "replika");
        assert_eq!(c.logfile, Some(PathBuf::from("/tmp/log/l3_leaf.log")));
        assert_eq!(c.pidfile, Some(PathBuf::from("/tmp/pid/l3_leaf.pid")));
        assert_eq!(c.loop_delay, Duration::from_secs(1));
        assert_eq!((c.parallel_copies, c.apply_batch_count), (1, 200));
        assert_eq!(c.copy_consumer("public.t"), "l3_leaf.copy.public.t");
        assert_eq!(
            c.copy_pidfile("public.t"),
            Some(PathBuf::from("/tmp/pid/l3_leaf.pid.copy.public.t"))
        );
        assert_eq!(c.log_level, strata_pgq::log::Level::Info);
        assert!(!c.park_unknown_events);
        assert_eq!(c.stall_timeout, Duration::from_secs(120));
    }

    #[test]
    fn job_name_defaults_to_the_file_name_and_tuning_is_read() {
        let text =
            "[londiste3]\ndb = dbname=a\nqueue_name = q\nloop_delay = 0.1\nparallel_copies = 3\n";
        let c = NodeConfig::parse(text, "node1").unwrap();
        assert_eq!(c.job_name, "node1");
        assert_eq!(c.loop_delay, Duration::from_millis(100));
        assert_eq!(c.parallel_copies, 3);
        let text = "[londiste3]\ndb = dbname=a\nqueue_name = q\nlog_level = Debug\npark_unknown_events = yes\n";
        let c = NodeConfig::parse(text, "node1").unwrap();
        assert_eq!(c.log_level, strata_pgq::log::Level::Debug);
        assert!(c.park_unknown_events);
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        for (text, want) in [
            ("db = x\n", "before any"),
            ("[other]\ndb = x\n", "no [londiste3]"),
            ("[londiste3]\nqueue_name = q\n", "needs db"),
            ("[londiste3]\ndb = x\n", "needs queue_name"),
            (
                "[londiste3]\ndb = x\nqueue_name = q\nparallel_copies = 0\n",
                "parallel_copies",
            ),
            (
                "[londiste3]\ndb = x\nqueue_name = q\nloop_delay = soon\n",
                "loop_delay",
            ),
            (
                "[londiste3]\ndb = %(nope)s\nqueue_name = q\n",
                "unknown key",
            ),
            ("[londiste3\n", "without ]"),
            (
                "[londiste3]\ndb = x\nqueue_name = q\nlog_level = loud\n",
                "log_level",
            ),
            (
                "[londiste3]\ndb = x\nqueue_name = q\npark_unknown_events = maybe\n",
                "park_unknown_events",
            ),
            ("[londiste3]\njust words\n", "key = value"),
        ] {
            let e = NodeConfig::parse(text, "j").unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn continuation_lines_and_percent_escapes() {
        let s = parse_ini("[a]\nk = one\n  two\np = 5%%\n").unwrap();
        assert_eq!(s["a"]["k"], "one\ntwo");
        let vars = s["a"].clone();
        assert_eq!(interpolate(&vars["p"], &vars, 0).unwrap(), "5%");
        let mut looped = BTreeMap::new();
        looped.insert("a".to_string(), "%(a)s".to_string());
        assert!(interpolate("%(a)s", &looped, 0).is_err());
    }
}
