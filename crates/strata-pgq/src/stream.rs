//! A batch's events streamed through `pgq.get_batch_cursor`, fetched in chunks sized by
//! bytes, not by count: one huge transaction never loads a whole batch into memory
//! (the problem of NikolayS/PgQue#282).
//!
//! What the byte cap bounds: the events of every chunk add up to at most the cap
//! ([`Event::size`]: the text fields plus a fixed 48 bytes each); an event larger than
//! the cap comes alone. Rows are decoded one at a time as they arrive from the server and
//! dropped at once, so the raw rows of a chunk are never held next to its events. A FETCH
//! asks for `cap / largest event seen` rows (one at first); when events grow within a
//! FETCH, the chunk ends where the cap would be passed and the rest of the FETCH is read
//! into the next chunk: its rows wait in the connection meanwhile, since tokio-postgres
//! stops reading the socket while its small receive buffer is full. Not counted by the
//! cap: that buffer (a few socket reads, or one whole row when a row is larger), and one
//! event read ahead when an event larger than every earlier one does not fit the chunk
//! being filled (it starts the next chunk). [`StreamStats::max_buffered_bytes`] reports
//! the largest chunk returned.

use crate::event::Event;
use crate::{PgqError, Result};
use futures::StreamExt;
use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;
use tokio_postgres::{Client, Row, RowStream, Statement};

/// What a stream (or all streams of a consumer) held and fetched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StreamStats {
    /// Events returned.
    pub events: u64,
    /// FETCH round trips.
    pub fetches: u64,
    /// The largest chunk returned, in bytes ([`Event::size`]): at most the byte cap,
    /// unless a single event is larger.
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
    /// No FETCH is needed any more: the last one returned fewer rows than asked for.
    pub(crate) done: bool,
    pub(crate) stats: StreamStats,
    pub(crate) totals: &'a mut StreamStats,
    /// The FETCH being read, when a chunk ended before its last row (the rest waits in
    /// the connection), with the rows it asked for and the rows read so far.
    fetch: Option<(Pin<Box<RowStream>>, i64, i64)>,
    /// An event read that did not fit into the chunk before: the first of the next one.
    ahead: Option<Event>,
    /// Retries asked for while a FETCH was half read (the connection is busy with it
    /// until it is read to the end): sent once it is, or at `close`.
    retries: Vec<(i64, Duration)>,
}

/// An event from a row of the batch cursor (the row is dropped here).
fn decode(r: Row) -> Event {
    Event {
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
    }
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
            fetch: None,
            ahead: None,
            retries: Vec::new(),
        })
    }

    /// How many events the next FETCH asks for.
    fn rows_wanted(&self) -> i64 {
        rows_for(self.cap, self.largest)
    }

    /// Starts the next FETCH (the connection is idle: retries asked for meanwhile go
    /// first).
    async fn start_fetch(&mut self) -> Result<()> {
        self.send_retries().await?;
        let rows = self.rows_wanted();
        let statement = match self.cache.statements.get(&rows) {
            Some(s) => s.clone(),
            None => {
                let sql = format!(
                    "fetch {rows} from {}",
                    strata_pgclient::quote_ident(&self.cursor)
                );
                let s = self
                    .client
                    .prepare(&sql)
                    .await
                    .map_err(|e| PgqError::sql("preparing a fetch", e))?;
                self.cache.statements.insert(rows, s.clone());
                s
            }
        };
        let stream = self
            .client
            .query_raw(
                &statement,
                std::iter::empty::<&(dyn tokio_postgres::types::ToSql + Sync)>(),
            )
            .await
            .map_err(|e| self.fetch_error(e))?;
        self.stats.fetches += 1;
        self.fetch = Some((Box::pin(stream), rows, 0));
        Ok(())
    }

    fn fetch_error(&self, e: tokio_postgres::Error) -> PgqError {
        PgqError::sql(format!("fetching events of batch {}", self.batch_id), e)
    }

    /// The next chunk of events, or `None` at the end of the batch.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<Event>>> {
        let mut chunk = Vec::new();
        let mut bytes = 0;
        if let Some(event) = self.ahead.take() {
            bytes += event.size();
            chunk.push(event);
        }
        loop {
            if self.fetch.is_none() {
                if self.done || !chunk.is_empty() {
                    break;
                }
                self.start_fetch().await?;
            }
            // Stop before reading a row that would likely not fit (as large as the
            // largest so far): it stays in the connection for the next chunk.
            if !chunk.is_empty() && bytes + self.largest > self.cap {
                break;
            }
            let Some((rows, asked, got)) = self.fetch.as_mut() else {
                unreachable!("a FETCH was started above");
            };
            match rows.next().await {
                None => {
                    if *got < *asked {
                        self.done = true;
                    }
                    self.fetch = None;
                }
                Some(Err(e)) => {
                    self.fetch = None;
                    return Err(self.fetch_error(e));
                }
                Some(Ok(row)) => {
                    *got += 1;
                    let event = decode(row);
                    let size = event.size();
                    self.largest = self.largest.max(size);
                    if !chunk.is_empty() && bytes + size > self.cap {
                        // Larger than every event before: it starts the next chunk.
                        self.ahead = Some(event);
                        break;
                    }
                    bytes += size;
                    chunk.push(event);
                }
            }
        }
        if chunk.is_empty() {
            self.send_retries().await?;
            return Ok(None);
        }
        self.stats.events += chunk.len() as u64;
        self.stats.max_buffered_bytes = self.stats.max_buffered_bytes.max(bytes);
        Ok(Some(chunk))
    }

    /// Puts an event of this batch into the retry queue (committed with [`close`]).
    ///
    /// [`close`]: BatchStream::close
    pub async fn retry(&mut self, event: &Event, after: Duration) -> Result<()> {
        self.retries.push((event.id, after));
        if self.fetch.is_none() {
            self.send_retries().await?;
        }
        Ok(())
    }

    async fn send_retries(&mut self) -> Result<()> {
        for (id, after) in std::mem::take(&mut self.retries) {
            crate::api::event_retry(self.client, self.batch_id, id, after).await?;
        }
        Ok(())
    }

    /// This stream's numbers so far.
    pub fn stats(&self) -> StreamStats {
        self.stats
    }

    /// Closes the cursor and commits the transaction (and the retries made through it).
    /// Events not read yet are not returned any more.
    pub async fn close(mut self) -> Result<StreamStats> {
        // A half-read FETCH must be read to its end before the connection takes another
        // statement.
        if let Some((mut rows, _, _)) = self.fetch.take() {
            while let Some(row) = rows.next().await {
                row.map_err(|e| self.fetch_error(e))?;
            }
        }
        self.send_retries().await?;
        self.client
            .batch_execute(&format!(
                "close {}; commit",
                strata_pgclient::quote_ident(&self.cursor)
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
