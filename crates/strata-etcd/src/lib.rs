//! etcd v3 client of strata's etcd backup plugin.
//!
//! It takes consistent snapshots of key prefixes ([`Client::snapshot`]), computes a
//! fingerprint that says whether anything worth backing up changed
//! ([`Client::fingerprint`]), and restores a snapshot under other prefixes with node
//! names and endpoints rewritten ([`Client::plan_restore`], [`Client::apply`]). A
//! snapshot has a small versioned binary encoding ([`Snapshot::encode`], described byte
//! by byte in `FORMAT.md`).
//!
//! # Why the JSON gateway and not gRPC
//!
//! The client speaks to etcd through its v3 JSON gRPC-gateway (`POST /v3/kv/range`,
//! `/v3/kv/txn`, `/v3/auth/authenticate`, `/v3/maintenance/status`) with the HTTP client
//! strata already has, instead of through tonic or `etcd-client`: there is no gRPC stack,
//! protobuf code generator or second TLS configuration to build and keep up to date, and
//! the gateway is served on the client port of every etcd 3.4 and later, so nothing has to
//! be enabled on the cluster. The price is base64 for keys and values and int64 fields
//! that arrive as JSON strings, both handled in one place (`wire`).
//!
//! Every reply from etcd is treated as hostile input like a snapshot file: missing fields,
//! bad base64, keys out of order or outside the range asked for, absurd counts and
//! oversized bodies are errors, never panics or unbounded allocations.
//!
//! ```
//! use strata_etcd::{Kv, Snapshot};
//!
//! // A snapshot survives its encoding byte for byte; a damaged one is an error.
//! let snapshot = Snapshot {
//!     revision: 42,
//!     cluster_id: "cdf818194e3a8c32".into(),
//!     prefixes: vec![b"/registry/".to_vec()],
//!     kvs: vec![Kv {
//!         key: b"/registry/pods/a".to_vec(),
//!         value: b"{}".to_vec(),
//!         lease: 0,
//!         create_revision: 7,
//!         mod_revision: 41,
//!         version: 3,
//!     }],
//! };
//! let bytes = snapshot.encode();
//! assert_eq!(Snapshot::decode(&bytes).unwrap(), snapshot);
//! assert!(Snapshot::decode(&bytes[..bytes.len() - 1]).is_err());
//! ```
//!
//! Layout: `client` (the gateway's requests, paged and bounded), `wire` (its JSON),
//! `snapshot` (the encoding), `fingerprint` (whether anything changed), `restore` (plans
//! and their application), `settings` (what the plugin's configuration says), `shown`
//! (values masked for output), `error`.

#![deny(missing_docs)]
mod client;
mod error;
mod fingerprint;
mod restore;
mod settings;
mod shown;
mod snapshot;
mod wire;

pub use client::{Client, DEFAULT_PAGE_SIZE, MAX_REPLY_BYTES};
pub use error::EtcdError;
pub use fingerprint::Fingerprint;
pub use restore::{Action, PlanEntry, Restore, RestorePlan, RestoreReport};
pub use settings::{LeasedKeys, OnChange, Settings};
pub use snapshot::{Kv, Snapshot, FORMAT_VERSION};

#[cfg(test)]
mod tests {
    /// The plugin runs these in spawned tasks: the futures must be `Send`.
    #[allow(dead_code)]
    fn futures_are_send(client: &crate::Client, snapshot: &crate::Snapshot) {
        fn send<T: Send>(_: T) {}
        send(client.snapshot());
        send(client.fingerprint());
        send(client.plan_restore(snapshot, &crate::Restore::default()));
        send(crate::Client::connect(&crate::Settings::default()));
    }
}
