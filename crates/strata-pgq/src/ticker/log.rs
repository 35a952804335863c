//! The ticker's log: one timestamped line per action that matters (connections won and
//! lost, rotations, maintenance that did something, retries moved, periodic stats),
//! appended to `logfile` or written to stderr.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Where log lines go; cheap to clone, shared by every worker.
#[derive(Clone)]
pub struct Log {
    inner: Arc<Mutex<Option<std::fs::File>>>,
    quiet: bool,
}

impl Log {
    /// Logs to `path` (appending) or to stderr; `quiet` silences stderr only.
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
        })
    }

    /// One line: `2026-11-23 12:00:00.123 UTC LEVEL text`.
    pub fn line(&self, level: &str, text: impl AsRef<str>) {
        let stamp = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S%.3f UTC");
        let line = format!("{stamp} {level} {}\n", text.as_ref().replace('\n', " "));
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

    /// An informational line.
    pub fn info(&self, text: impl AsRef<str>) {
        self.line("LOG", text);
    }

    /// A problem that the ticker survives.
    pub fn warn(&self, text: impl AsRef<str>) {
        self.line("WARNING", text);
    }
}
