//! PgQ in Rust. The Debian `pgq` extension stays the server side (so Python and Rust tools
//! share one state and can take over from each other); this crate is the client side: the
//! SQL API, decoders for what the real triggers write, a consumer framework that streams a
//! batch under a byte cap, and a ticker daemon that accepts pgqd's configuration.

#![warn(missing_docs)]

pub mod admin;
pub mod api;
pub mod command;
pub mod completed;
pub mod config;
pub mod conn;
pub mod consumer;
pub mod coop;
pub mod coop_orphans;
pub mod daemon;
pub mod error;
pub mod event;
pub mod log;
pub mod notify;
pub mod sqlfrag;
pub mod stream;
pub mod ticker;
pub mod urlenc;

pub use error::{PgqError, Result};

pub use api::{Batch, BatchRules};
pub use command::{PgqCommand, PgqDb};
pub use consumer::{Consumer, ConsumerOptions};
pub use event::{Event, Op, RowChange};
pub use stream::{BatchStream, StreamStats};
