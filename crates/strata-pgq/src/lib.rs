//! PgQ in Rust. The Debian `pgq` extension stays the server side (so Python and Rust tools
//! share one state and can take over from each other); this crate is the client side: the
//! SQL API, decoders for what the real triggers write, a consumer framework that streams a
//! batch under a byte cap, and a ticker daemon that accepts pgqd's configuration.
//!
//! A consumer's loop: take the next batch, stream its events in chunks (memory stays
//! under the byte cap however large the batch), then finish it so the position moves on.
//!
//! ```no_run
//! use strata_pgq::{Consumer, ConsumerOptions};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let dsn = strata_pgclient::Dsn::parse("postgresql://app@127.0.0.1:5432/shop")?;
//! let mut consumer = Consumer::new(dsn.connect().await?, "orders", "mailer", ConsumerOptions::default())?;
//! consumer.register().await?;
//! while let Some(batch) = consumer.next_batch().await? {
//!     let mut stream = consumer.events(&batch).await?;
//!     while let Some(chunk) = stream.next_chunk().await? {
//!         for event in chunk {
//!             println!("{} {:?} {:?}", event.id, event.ev_type, event.data);
//!         }
//!     }
//!     stream.close().await?;
//!     consumer.finish_batch(&batch).await?;
//! }
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

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
