//! Starting the writeback of what a restore wrote while it goes on writing.
//!
//! A durable restore ends with one `syncfs` of the target ([`crate::restore`]). Left alone,
//! the kernel writes dirty pages back late and in bursts (when they age or pass its
//! background ratio), so a large restore piles up hundreds of megabytes for that last call
//! to wait on, while the disk idled during the decryption and decompression before it.
//! Each worker instead asks the kernel to start writing every run of at least
//! [`KICK`] bytes it wrote to one file, one after the other (`sync_file_range` with
//! `SYNC_FILE_RANGE_WRITE`: the writeback starts, nothing waits for it), so the disk
//! writes beside the CPU's work and the final call finds little left. Runs shorter than
//! [`LEAST`] (a small file, the tail of a piece) are left to the kernel and the final
//! call: one more system call per small file would cost more than it saves.
//!
//! Nothing here is needed for durability: the final `syncfs` still writes and checks
//! everything, and a failed start is ignored (that call reports write errors).

use std::fs::File;
use std::os::fd::AsRawFd;

/// A run this long starts its writeback at once.
pub(crate) const KICK: u64 = 8 << 20;

/// A run shorter than this, when the worker moves on, is left to the kernel.
pub(crate) const LEAST: u64 = 1 << 20;

/// One worker's run of bytes written one after another to the file it writes to now.
#[derive(Debug, Default)]
pub(crate) struct WriteBehind {
    run: Option<(u64, u64)>,
}

impl WriteBehind {
    /// Notes that `len` bytes at `at` were written to `file`: they extend the run when they
    /// follow it, else the run ends (started when long enough) and a new one begins.
    pub(crate) fn wrote(&mut self, file: &File, at: u64, len: u64) {
        let (start, end) = match self.run {
            Some((start, end)) if end == at => (start, end + len),
            _ => {
                self.moving_on(file);
                (at, at + len)
            }
        };
        if end - start >= KICK {
            start_writeback(file, start, end - start);
            self.run = None;
        } else {
            self.run = Some((start, end));
        }
    }

    /// The worker leaves `file` (the file of the run): its run ends, started when long
    /// enough.
    pub(crate) fn moving_on(&mut self, file: &File) {
        if let Some((start, end)) = self.run.take() {
            if end - start >= LEAST {
                start_writeback(file, start, end - start);
            }
        }
    }
}

/// Starts writing back `len` bytes of `file` at `at`, without waiting.
#[allow(unsafe_code)] // sync_file_range(2) has no binding in std or rustix
fn start_writeback(file: &File, at: u64, len: u64) {
    let (Ok(at), Ok(len)) = (i64::try_from(at), i64::try_from(len)) else {
        return;
    };
    // SAFETY: a descriptor borrowed for the length of the call and plain integers; the
    // call reads and writes no memory of this process.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), at, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_follow_the_writes_and_start_when_long_enough() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("f")).unwrap();
        let mut behind = WriteBehind::default();
        behind.wrote(&file, 0, LEAST / 2);
        behind.wrote(&file, LEAST / 2, LEAST / 2);
        assert_eq!(
            behind.run,
            Some((0, LEAST)),
            "a write after the run extends it"
        );
        behind.wrote(&file, 4 * LEAST, 10);
        assert_eq!(
            behind.run,
            Some((4 * LEAST, 4 * LEAST + 10)),
            "a gap begins a new run"
        );
        behind.wrote(&file, 4 * LEAST + 10, KICK);
        assert_eq!(behind.run, None, "a run of KICK bytes is started and ends");
        behind.wrote(&file, 0, 1);
        behind.moving_on(&file);
        assert_eq!(behind.run, None);
    }
}
