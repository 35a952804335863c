//! The local WAL archiver: a long-running process (`strata wal archiver`) that
//! `wal-push` hands segments to over a unix socket, so a busy primary's archiving does
//! not open the repository, derive the key and read the index once per segment.
//!
//! ```text
//! archive_command = 'strata wal-push %p'
//!     wal-push ──(socket, one JSON line)──▶ archiver ──▶ batch: mark, index refresh,
//!     wal-push ◀──(answer, once stored)──── archiver      store, records, release
//! ```
//!
//! The archiver keeps the repository open. Pushes waiting when a batch starts go into that
//! batch, with the ready segments after the newest of them (`postgres.wal_push_ahead`)
//! that it has not archived lately, up to `postgres.archiver_batch` files: one write
//! pipeline, its packs stored in parallel, one index object. Each batch takes its own
//! archive-writer mark and only then brings the index up to date
//! ([`crate::push_paths`]), exactly as a one-shot `wal-push` does: a garbage
//! collection never deletes what a batch relies on, and a batch whose fence lapsed
//! (stalled past its lease) writes nothing visible and acknowledges nothing. A push is
//! answered only once its file's record is written: every acknowledged segment is in
//! the repository.
//!
//! Without an archiver (no socket, or nobody listening) `wal-push` pushes by itself as
//! before. A full queue (`postgres.archiver_queue`) is answered busy and PostgreSQL
//! calls again; nothing is acknowledged early (the one exception is the operator's:
//! `postgres.wal_queue_max_mib`, see [`crate::queue`]).
//!
//! The socket is created mode 0600 (bound under a temporary name, then renamed into
//! place) and the archiver answers only processes of its own user or root.
//!
//! Its parts, each pointing only at those below it: `server` (the socket and the batch
//! loop: [`serve`]) and [`client`] (the `wal-push` side) both speak [`wire`] (the one-line
//! exchange, where the archiver listens, and what it reports: [`ArchiverStatus`]).

pub mod client;
mod server;
pub mod wire;

pub use server::{local_ready_lag, serve, UnreadableStatus};
pub use wire::{answer_timeout, socket_path, ArchiverStatus};
