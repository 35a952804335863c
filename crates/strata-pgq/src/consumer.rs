//! The consumer framework: one connection to the queue's database, a batch at a time,
//! events streamed under a byte cap, retries, and finishing. Waiting for work is the
//! caller's loop (`next_batch` returns `None`: sleep or wait for a tick notification
//! (see the ticker's `strata_pgq_tick` notification in docs/pgq.md)).

use crate::api::{self, Batch, BatchRules};
use crate::coop;
use crate::stream::{BatchStream, FetchCache, StreamStats};
use crate::Result;
use std::time::Duration;
use tokio_postgres::Client;

/// How a consumer takes batches and how much memory a batch may hold.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// Most bytes of events in one chunk of a streamed batch (default 8 MiB; see
    /// [`crate::stream`] for exactly what it bounds).
    pub byte_cap: usize,
    /// `pgq.next_batch_custom` rules (default: none, which takes the next tick as
    /// `pgq.next_batch` does). Plain consumers only: [`Consumer::cooperative`] refuses
    /// them.
    pub rules: BatchRules,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions {
            byte_cap: 8 << 20,
            rules: BatchRules::default(),
        }
    }
}

/// One consumer of one queue.
pub struct Consumer {
    client: Client,
    queue: String,
    name: String,
    options: ConsumerOptions,
    cache: FetchCache,
    in_transaction: bool,
    totals: StreamStats,
    /// For a cooperative subconsumer: its name and after how long a silent sibling's
    /// batch is taken over.
    coop: Option<(String, Option<Duration>)>,
}

impl Consumer {
    /// A consumer on an open connection to the queue's database (see
    /// [`strata_pgclient::Dsn::connect`]); nothing is sent yet.
    pub fn new(
        client: Client,
        queue: &str,
        name: &str,
        options: ConsumerOptions,
    ) -> Result<Consumer> {
        api::check_name("queue", queue)?;
        api::check_name("consumer", name)?;
        Ok(Consumer {
            client,
            queue: queue.to_string(),
            name: name.to_string(),
            options,
            cache: FetchCache::default(),
            in_transaction: false,
            totals: StreamStats::default(),
            coop: None,
        })
    }

    /// A cooperative subconsumer `sub` of consumer `name` (see [`crate::coop`]): it shares
    /// the consumer's stream with its siblings, and takes over the batch of a sibling
    /// silent for longer than `dead_interval`. `register`/`unregister` act on the
    /// subconsumer; the main consumer must be registered. Batch rules
    /// ([`ConsumerOptions::rules`]) are refused: siblings share the main consumer's batches
    /// one tick range at a time, which `next_batch_custom`'s merging cannot serve.
    pub fn cooperative(
        client: Client,
        queue: &str,
        name: &str,
        sub: &str,
        dead_interval: Option<Duration>,
        options: ConsumerOptions,
    ) -> Result<Consumer> {
        api::check_name("subconsumer", sub)?;
        if options.rules != BatchRules::default() {
            return Err(crate::PgqError::BadInput(format!(
                "cooperative consumer {name}.{sub}: batch rules (min_lag, min_count, min_interval) \
                 are not supported for cooperative consumers"
            )));
        }
        let mut consumer = Consumer::new(client, queue, name, options)?;
        consumer.coop = Some((sub.to_string(), dead_interval));
        Ok(consumer)
    }

    /// The queue's name.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The consumer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The connection, for the caller's own statements on the queue's database.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Everything streamed so far: events, fetches, the largest chunk held.
    pub fn stats(&self) -> StreamStats {
        self.totals
    }

    /// Registers the consumer at the newest tick; `false` if it was registered already.
    pub async fn register(&mut self) -> Result<bool> {
        self.settle().await?;
        match &self.coop {
            Some((sub, _)) => coop::register(&self.client, &self.queue, &self.name, sub).await,
            None => api::register_consumer(&self.client, &self.queue, &self.name).await,
        }
    }

    /// Unregisters the consumer (its position and retry events are dropped).
    pub async fn unregister(&mut self) -> Result<bool> {
        self.settle().await?;
        match &self.coop {
            Some((sub, _)) => coop::unregister(&self.client, &self.queue, &self.name, sub).await,
            None => api::unregister_consumer(&self.client, &self.queue, &self.name).await,
        }
    }

    /// The next batch (the same one again until it is finished), or `None` when there is
    /// nothing new yet.
    pub async fn next_batch(&mut self) -> Result<Option<Batch>> {
        self.settle().await?;
        match &self.coop {
            Some((sub, dead)) => {
                coop::next_batch(&self.client, &self.queue, &self.name, sub, *dead).await
            }
            None => {
                api::next_batch(&self.client, &self.queue, &self.name, &self.options.rules).await
            }
        }
    }

    /// Streams the batch's events in chunks under the byte cap.
    pub async fn events(&mut self, batch: &Batch) -> Result<BatchStream<'_>> {
        // One cursor at a time per connection, always the same name, so the prepared FETCH
        // statements are reused from batch to batch.
        let cursor = "strata_pgq_batch";
        BatchStream::open(
            &self.client,
            &mut self.cache,
            &mut self.in_transaction,
            &mut self.totals,
            cursor,
            batch.batch_id,
            self.options.byte_cap,
        )
        .await
    }

    /// Finishes the batch: the consumer's position moves past it.
    pub async fn finish_batch(&mut self, batch: &Batch) -> Result<()> {
        self.settle().await?;
        match &self.coop {
            Some(_) => coop::finish_batch(&self.client, batch.batch_id).await,
            None => api::finish_batch(&self.client, batch.batch_id).await,
        }
    }

    /// Rolls back a stream that was dropped without `close` (its transaction is still
    /// open on the connection).
    async fn settle(&mut self) -> Result<()> {
        if self.in_transaction {
            self.client
                .batch_execute("rollback")
                .await
                .map_err(|e| crate::PgqError::sql("rolling back an abandoned batch stream", e))?;
            self.in_transaction = false;
        }
        Ok(())
    }
}
