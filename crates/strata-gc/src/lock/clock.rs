//! The storage's clock: the one clock that leases, marks and grace periods are judged by.
//!
//! Hosts' wall clocks differ (by minutes on a badly kept host); the storage stamps every
//! object it writes with its own clock (S3's and Azure's `Last-Modified`, GCS's
//! `updated`, a file's mtime from the kernel that wrote it). A lease is written with its
//! TTL and ends that long after the storage wrote it; an object's age is the storage's
//! now minus its modification time; and the storage's now is read by writing a probe
//! object and asking when it was written. No decision compares one host's wall clock
//! with another's, so a host whose clock is ahead or behind takes the same decisions as
//! the others. What remains is the rate of the clocks (a holder gives its lease up a
//! fifth of its TTL early by its monotonic clock, see [`super::chain::margin`]), and
//! modification times of whole seconds (a second is added to every lease).

use std::time::{SystemTime, UNIX_EPOCH};
use strata_store::{DynStore, StoreError};

/// Where the probes go (under `locks/`: coordination objects, writable without a lock).
const PROBES: &str = "locks/clock/";

/// The storage's current time: a probe object is written, its modification time read
/// back, and the probe removed (best effort; a store that refuses deletes keeps a few
/// empty probes, harmless).
pub async fn storage_now(store: &DynStore) -> Result<SystemTime, StoreError> {
    let mut r = [0u8; 8];
    getrandom::getrandom(&mut r).expect("the OS random source is available");
    let key = format!("{PROBES}{:016x}", u64::from_le_bytes(r));
    store.put(&key, bytes::Bytes::new()).await?;
    let meta = store.head(&key).await;
    let _ = store.delete(&key).await;
    meta?.modified.ok_or_else(|| StoreError::Backend {
        op: "head",
        key,
        store: store.describe(),
        message: "the storage did not say when it wrote an object, so leases cannot be judged by its clock".into(),
    })
}

/// [`storage_now`] in Unix milliseconds.
pub async fn storage_now_ms(store: &DynStore) -> Result<u64, StoreError> {
    Ok(ms(storage_now(store).await?))
}

/// A time in Unix milliseconds (0 before 1970).
pub fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
