//! A live progress line on a terminal, fed by the library's progress counters.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use strata_api::reports::Progress;

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

/// Draws one bar per node of a cluster operation until dropped: phase, files, bytes,
/// failed files. Shows nothing unless stderr is a terminal.
pub struct OperationDisplay {
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OperationDisplay {
    /// Starts drawing the statuses `status` receives, when `enabled`.
    pub fn start(
        status: tokio::sync::watch::Receiver<strata_api::reports::OperationStatus>,
        enabled: bool,
    ) -> OperationDisplay {
        let done = Arc::new(AtomicBool::new(false));
        if !enabled || !std::io::stderr().is_terminal() {
            return OperationDisplay { done, thread: None };
        }
        let stop = done.clone();
        let thread = std::thread::spawn(move || {
            let bars = indicatif::MultiProgress::new();
            // A bar once the node knows how much it has to do (uploads, restores); a
            // running count while it is still walking.
            let with_total = ProgressStyle::with_template(
                "{prefix:>8} {msg:<32} {bytes:>9}/{total_bytes:<9} [{bar:20}] {bytes_per_sec}",
            )
            .expect("valid template")
            .progress_chars("=> ");
            let counting =
                ProgressStyle::with_template("{prefix:>8} {msg:<32} {bytes:>9} {bytes_per_sec}")
                    .expect("valid template");
            let mut by_node: Vec<(ProgressBar, bool)> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let current = status.borrow().clone();
                for (i, node) in current.nodes.iter().enumerate() {
                    if by_node.len() <= i {
                        let bar = bars.add(ProgressBar::new(0));
                        bar.set_style(counting.clone());
                        bar.set_prefix(node.name.clone());
                        by_node.push((bar, false));
                    }
                    let (bar, has_total) = &mut by_node[i];
                    let p = &node.progress;
                    if (p.total_bytes > 0) != *has_total {
                        *has_total = p.total_bytes > 0;
                        bar.set_style(if *has_total { &with_total } else { &counting }.clone());
                    }
                    bar.set_length(p.total_bytes.max(p.bytes));
                    bar.set_position(p.bytes);
                    let failed = if p.failed > 0 {
                        format!(", {} failed", p.failed)
                    } else {
                        String::new()
                    };
                    let total = if p.total_files > 0 {
                        format!("/{}", p.total_files)
                    } else {
                        String::new()
                    };
                    bar.set_message(format!("{}: {}{total} files{failed}", node.phase, p.files));
                }
                std::thread::sleep(Duration::from_millis(150));
            }
            for (bar, _) in by_node {
                bar.finish_and_clear();
            }
        });
        OperationDisplay {
            done,
            thread: Some(thread),
        }
    }
}

impl Drop for OperationDisplay {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
