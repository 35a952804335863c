//! The log of strata's PgQ daemons (the ticker, the Londiste worker): one timestamped,
//! levelled line per action that matters, appended to `logfile` or written to stderr.
//! Lines below the log's level cost one atomic load: callers that format text check
//! [`Log::enabled`] first (or use [`Log::debug_with`]), so a quiet hot path formats
//! nothing.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

/// How much a log says, from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Failures only.
    Error = 0,
    /// Failures and problems survived (retries).
    Warning = 1,
    /// What changes: starts, stops, copies, pauses (the default).
    Info = 2,
    /// Every batch.
    Debug = 3,
}

impl Level {
    /// The word a line carries (`LOG` for info, as PostgreSQL and pgqd write).
    pub fn label(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warning => "WARNING",
            Level::Info => "LOG",
            Level::Debug => "DEBUG",
        }
    }

    /// Parses a configured level: `error`, `warning` (`warn`), `info` (`log`), `debug`.
    pub fn parse(text: &str) -> Option<Level> {
        match text.trim().to_ascii_lowercase().as_str() {
            "error" => Some(Level::Error),
            "warning" | "warn" => Some(Level::Warning),
            "info" | "log" => Some(Level::Info),
            "debug" => Some(Level::Debug),
            _ => None,
        }
    }

    /// `steps` levels more (positive, `-v`) or less (negative, `-q`), within the range.
    pub fn shifted(self, steps: i32) -> Level {
        match (self as i32 + steps).clamp(0, 3) {
            0 => Level::Error,
            1 => Level::Warning,
            2 => Level::Info,
            _ => Level::Debug,
        }
    }

    fn from_u8(n: u8) -> Level {
        Level::Error.shifted(i32::from(n))
    }
}

/// Where log lines go; cheap to clone, shared by every worker.
#[derive(Clone)]
pub struct Log {
    inner: Arc<Mutex<Option<std::fs::File>>>,
    quiet: bool,
    level: Arc<AtomicU8>,
}

impl Log {
    /// Logs to `path` (appending) or to stderr at level info; `quiet` silences stderr
    /// only.
    pub fn open(path: Option<&PathBuf>, quiet: bool) -> std::io::Result<Log> {
        let file = match path {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
            None => None,
        };
        Ok(Log {
            inner: Arc::new(Mutex::new(file)),
            quiet,
            level: Arc::new(AtomicU8::new(Level::Info as u8)),
        })
    }

    /// Logs to stderr at `level`.
    pub fn stderr(level: Level) -> Log {
        let log = Log {
            inner: Arc::new(Mutex::new(None)),
            quiet: false,
            level: Arc::default(),
        };
        log.set_level(level);
        log
    }

    /// Changes the level (for every clone).
    pub fn set_level(&self, level: Level) {
        self.level.store(level as u8, Ordering::Relaxed);
    }

    /// The level lines must reach to be written.
    pub fn level(&self) -> Level {
        Level::from_u8(self.level.load(Ordering::Relaxed))
    }

    /// Whether a line of `level` is written: check it before formatting.
    pub fn enabled(&self, level: Level) -> bool {
        level as u8 <= self.level.load(Ordering::Relaxed)
    }

    /// One line at `level`: `2026-11-23 12:00:00.123 UTC LEVEL text`, or nothing below
    /// the log's level.
    pub fn at(&self, level: Level, text: impl AsRef<str>) {
        if !self.enabled(level) {
            return;
        }
        let stamp = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S%.3f UTC");
        let line = format!(
            "{stamp} {} {}\n",
            level.label(),
            text.as_ref().replace('\n', " ")
        );
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_mut() {
            Some(file) => {
                let _ = file.write_all(line.as_bytes());
            }
            None if !self.quiet => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
            None => {}
        }
    }

    /// A failure.
    pub fn error(&self, text: impl AsRef<str>) {
        self.at(Level::Error, text);
    }

    /// A problem that the process survives.
    pub fn warn(&self, text: impl AsRef<str>) {
        self.at(Level::Warning, text);
    }

    /// An informational line.
    pub fn info(&self, text: impl AsRef<str>) {
        self.at(Level::Info, text);
    }

    /// A detail line, its text made only when the level is debug.
    pub fn debug_with(&self, text: impl FnOnce() -> String) {
        if self.enabled(Level::Debug) {
            self.at(Level::Debug, text());
        }
    }
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log").field("level", &self.level()).finish()
    }
}

impl Default for Log {
    /// Stderr at level info.
    fn default() -> Log {
        Log::stderr(Level::Info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_shift_and_filter_lines() {
        assert_eq!(Level::parse(" Warn "), Some(Level::Warning));
        assert_eq!(Level::parse("log"), Some(Level::Info));
        assert_eq!(Level::parse("loud"), None);
        assert_eq!(Level::Info.shifted(1), Level::Debug);
        assert_eq!(Level::Info.shifted(5), Level::Debug);
        assert_eq!(Level::Info.shifted(-1), Level::Warning);
        assert_eq!(Level::Info.shifted(-9), Level::Error);
        let dir = std::env::temp_dir().join(format!("strata-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.log");
        let log = Log::open(Some(&path), false).unwrap();
        log.set_level(Level::Warning);
        assert!(!log.enabled(Level::Info) && log.enabled(Level::Error));
        log.info("hidden");
        log.debug_with(|| panic!("not formatted below debug"));
        log.warn("two\nlines");
        log.error("broken");
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].ends_with(" UTC WARNING two lines"), "{text}");
        assert!(lines[1].ends_with(" UTC ERROR broken"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
