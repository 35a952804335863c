//! A live progress line on a terminal, fed by the library's progress counters.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use strata_agent::progress::Progress;

/// Draws progress until dropped. Shows nothing unless stderr is a terminal.
pub struct Display {
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Display {
    /// Starts drawing `progress` with `verb` ("backing up", "restoring") when `enabled`
    /// and stderr is a terminal.
    pub fn start(progress: Arc<Progress>, verb: &'static str, enabled: bool) -> Display {
        let done = Arc::new(AtomicBool::new(false));
        if !enabled || !std::io::stderr().is_terminal() {
            return Display { done, thread: None };
        }
        let stop = done.clone();
        let thread = std::thread::spawn(move || {
            let bar = ProgressBar::new(0);
            let template =
                "{spinner} {msg} {bytes}/{total_bytes} [{bar:30}] {bytes_per_sec}, {eta} left";
            let spinner = "{spinner} {msg} {bytes} ({bytes_per_sec})";
            while !stop.load(Ordering::Relaxed) {
                let total = progress.total_bytes();
                let style = if total > 0 { template } else { spinner };
                bar.set_style(
                    ProgressStyle::with_template(style)
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                bar.set_length(total);
                bar.set_position(progress.bytes());
                bar.set_message(format!("{verb}: {} files", progress.files()));
                bar.tick();
                std::thread::sleep(Duration::from_millis(100));
            }
            bar.finish_and_clear();
        });
        Display {
            done,
            thread: Some(thread),
        }
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
