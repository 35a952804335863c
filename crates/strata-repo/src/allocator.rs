//! How the allocator holds memory while a refresh reads a whole index.
//!
//! glibc serves a block of a size it freed before from its heap rather than from a
//! mapping of its own (its mapping threshold rises to the largest block freed, up to 32
//! MiB). A first refresh allocates and frees each index object's buffers in turn (one
//! object twice, about 1.4 MiB), and the heap then holds several objects' worth beside
//! what is in use: half of a new host's index cost at 400,000 blobs (docs/benchmarks.md,
//! "A new host's first command"). While a refresh of many objects runs
//! ([`LargeBlocksApart`]), blocks of 128 KiB and more are mapped apart and given back
//! when freed; after it, the thresholds are set where glibc's own end up (mapping at 32
//! MiB, trimming at 64 MiB), so backups and restores keep their speed. Mapping every
//! large block for a whole process would cost a backup of new data 15%. Nothing is done
//! with another allocator.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Refreshes under way that asked for large blocks apart.
static HOLDERS: AtomicUsize = AtomicUsize::new(0);

/// While alive, large blocks are mapped apart and returned when freed (see the module
/// documentation); nested or concurrent holders share the setting.
#[derive(Debug)]
pub(crate) struct LargeBlocksApart(());

impl LargeBlocksApart {
    pub(crate) fn new() -> LargeBlocksApart {
        if HOLDERS.fetch_add(1, Ordering::SeqCst) == 0 {
            set_thresholds(128 << 10, 128 << 10);
        }
        LargeBlocksApart(())
    }
}

impl Drop for LargeBlocksApart {
    fn drop(&mut self) {
        if HOLDERS.fetch_sub(1, Ordering::SeqCst) == 1 {
            set_thresholds(32 << 20, 64 << 20);
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_thresholds(map_at: i32, trim_at: i32) {
    #[allow(unsafe_code)] // glibc's mallopt: two integer settings, no memory handed over
    // SAFETY: mallopt takes the allocator's lock and changes two of its parameters; it
    // touches no allocation, and any thread may call it at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, map_at);
        libc::mallopt(libc::M_TRIM_THRESHOLD, trim_at);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds(_map_at: i32, _trim_at: i32) {}
