//! A batch's events streamed through `pgq.get_batch_cursor`, fetched in chunks sized by
//! bytes, not by count: one huge transaction never loads a whole batch into memory
//! (the problem of NikolayS/PgQue#282). The chunk size adapts to the largest event seen
//! so far: it starts at one event, then fetches `cap / largest` events at a time. A chunk
//! can only pass the cap when events grow suddenly within one fetch, and then by at most
//! that fetch; [`StreamStats::max_buffered_bytes`] reports what was really held.

use crate::event::Event;
use crate::{PgqError, Result};
use std::collections::HashMap;
use std::time::Duration;
use tokio_postgres::{Client, Statement};

/// What a stream (or all streams of a consumer) held and fetched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StreamStats {
    /// Events returned.
    pub events: u64,
    /// FETCH round trips.
    pub fetches: u64,
    /// The largest chunk, in bytes ([`Event::size`]), ever held at once.
    pub max_buffered_bytes: usize,
}

impl StreamStats {
    /// Folds another stream's numbers in.
    pub fn add(&mut self, other: &StreamStats) {
        self.events += other.events;
        self.fetches += other.fetches;
        self.max_buffered_bytes = self.max_buffered_bytes.max(other.max_buffered_bytes);
    }
}

/// Most events per FETCH, whatever the cap: bounds the per-chunk bookkeeping.
const MAX_ROWS: i64 = 8192;

/// Events per FETCH for a byte cap, given the largest event seen so far (0: none yet, so
/// fetch one to learn), rounded down to a power of two so few statements are prepared.
fn rows_for(cap: usize, largest: usize) -> i64 {
    if largest == 0 {
        return 1;
    }
    let rows = (cap / largest).clamp(1, MAX_ROWS as usize) as i64;
    1i64 << (63 - rows.leading_zeros())
}

/// Prepared `FETCH n FROM cursor` statements by `n`, kept across batches (the cursor name
/// is fixed per consumer); `n` is a power of two so there are few of them.
#[derive(Default)]
pub(crate) struct FetchCache {
    statements: HashMap<i64, Statement>,
}

/// Events of one open batch, streamed in chunks. The cursor lives in a transaction on the
/// consumer's connection; [`BatchStream::close`] commits it (with any retries). Dropping
/// the stream without closing leaves that transaction to be rolled back by the consumer's
/// next call.
pub struct BatchStream<'a> {
    pub(crate) client: &'a Client,
    pub(crate) cache: &'a mut FetchCache,
    pub(crate) open: &'a mut bool,
    pub(crate) cursor: String,
    pub(crate) batch_id: i64,
    pub(crate) cap: usize,
    pub(crate) largest: usize,
    pub(crate) done: bool,
    pub(crate) stats: StreamStats,
    pub(crate) totals: &'a mut StreamStats,
}

impl<'a> BatchStream<'a> {
    /// Begins the transaction and declares the cursor over the batch.
    pub(crate) async fn open(
        client: &'a Client,
        cache: &'a mut FetchCache,
        open: &'a mut bool,
        totals: &'a mut StreamStats,
        cursor: &str,
        batch_id: i64,
        cap: usize,
    ) -> Result<BatchStream<'a>> {
        if *open {
            client
                .batch_execute("rollback")
                .await
                .map_err(|e| PgqError::sql("rolling back an abandoned batch stream", e))?;
            *open = false;
        }
        client
            .batch_execute("begin")
            .await
            .map_err(|e| PgqError::sql("starting the batch transaction", e))?;
        *open = true;
        client
            .query(
                "select 1 from pgq.get_batch_cursor($1, $2, 0)",
                &[&batch_id, &cursor],
            )
            .await
            .map_err(|e| PgqError::sql(format!("opening a cursor on batch {batch_id}"), e))?;
        Ok(BatchStream {
            client,
            cache,
            open,
            cursor: cursor.to_string(),
            batch_id,
            cap: cap.max(1),
            largest: 0,
            done: false,
            stats: StreamStats::default(),
            totals,
        })
    }

    /// How many events the next FETCH asks for.
    fn rows_wanted(&self) -> i64 {
        rows_for(self.cap, self.largest)
    }

    /// The next chunk of events, or `None` at the end of the batch.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<Event>>> {
        if self.done {
            return Ok(None);
        }
        let rows = self.rows_wanted();
        let statement = match self.cache.statements.get(&rows) {
            Some(s) => s.clone(),
            None => {
                let sql = format!("fetch {rows} from {}", strata_pg::quote_ident(&self.cursor));
                let s = self
                    .client
                    .prepare(&sql)
                    .await
                    .map_err(|e| PgqError::sql("preparing a fetch", e))?;
                self.cache.statements.insert(rows, s.clone());
                s
            }
        };
        let fetched =
            self.client.query(&statement, &[]).await.map_err(|e| {
                PgqError::sql(format!("fetching events of batch {}", self.batch_id), e)
            })?;
        self.stats.fetches += 1;
        if (fetched.len() as i64) < rows {
            self.done = true;
        }
        if fetched.is_empty() {
            return Ok(None);
        }
        let events: Vec<Event> = fetched
            .iter()
            .map(|r| Event {
                id: r.get(0),
                time: r.get(1),
                txid: r.get(2),
                retry: r.get(3),
                ev_type: r.get(4),
                data: r.get(5),
                extra1: r.get(6),
                extra2: r.get(7),
                extra3: r.get(8),
                extra4: r.get(9),
            })
            .collect();
        drop(fetched);
        let mut bytes = 0;
        for e in &events {
            let size = e.size();
            bytes += size;
            self.largest = self.largest.max(size);
        }
        self.stats.events += events.len() as u64;
        self.stats.max_buffered_bytes = self.stats.max_buffered_bytes.max(bytes);
        Ok(Some(events))
    }

    /// Puts an event of this batch into the retry queue (committed with [`close`]).
    ///
    /// [`close`]: BatchStream::close
    pub async fn retry(&self, event: &Event, after: Duration) -> Result<()> {
        crate::api::event_retry(self.client, self.batch_id, event.id, after).await
    }

    /// This stream's numbers so far.
    pub fn stats(&self) -> StreamStats {
        self.stats
    }

    /// Closes the cursor and commits the transaction (and the retries made through it).
    pub async fn close(self) -> Result<StreamStats> {
        self.client
            .batch_execute(&format!(
                "close {}; commit",
                strata_pg::quote_ident(&self.cursor)
            ))
            .await
            .map_err(|e| {
                PgqError::sql(format!("closing the cursor of batch {}", self.batch_id), e)
            })?;
        *self.open = false;
        self.totals.add(&self.stats);
        Ok(self.stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_size_follows_the_largest_event() {
        // Only the sizing: the stream itself is tested against PostgreSQL.
        let rows = rows_for;
        assert_eq!(rows(1 << 20, 0), 1);
        assert_eq!(rows(1 << 20, 100), 8192);
        assert_eq!(rows(1 << 20, 1000), 1024);
        assert_eq!(rows(1000, 300), 2);
        assert_eq!(
            rows(1000, 5000),
            1,
            "an event bigger than the cap comes alone"
        );
    }
}
