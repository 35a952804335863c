//! The rows of a file that a load takes (`--offset`, `--limit`, and the time window of
//! `--start`/`--stop` on `--time-column`), each checked and handed to a sink: type
//! inference, a count, COPY text for the server, or the search for the row the server
//! refused. Every pass over a file is this loop, so they all select the same rows in the
//! same order (which is what lets a server's "line N of the COPY" be found in the file).

use super::copy_text::{bad_value, check_text, write_row};
use super::error::{LoadFileError, LoadFileResult, Position};
use super::infer::{parse_timestamp, Inferred};
use super::row::{Row, RowReader};
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};

/// How much COPY text is sent at once.
pub const CHUNK_BYTES: usize = 512 << 10;

/// Which rows of the file load.
#[derive(Debug, Clone, Default)]
pub struct Window {
    /// Data rows of the file skipped first.
    pub offset: u64,
    /// Data rows of the file read at most, after the offset.
    pub limit: Option<u64>,
    /// Of those, only rows whose time is within this window.
    pub time: Option<TimeWindow>,
}

/// `start <= column < stop`, in microseconds since 1970 UTC; a row whose time is NULL is
/// outside.
#[derive(Debug, Clone)]
pub struct TimeWindow {
    /// The time column (`--time-column`).
    pub column: String,
    /// `--start`: the first time taken; `None` for no lower limit.
    pub start: Option<i64>,
    /// `--stop`: the first time no longer taken; `None` for no upper limit.
    pub stop: Option<i64>,
}

/// Rows and bytes so far, read by whoever shows progress.
#[derive(Debug, Default)]
pub struct Counters {
    /// Rows taken so far.
    pub rows: AtomicU64,
    /// Bytes of the file read so far.
    pub bytes: AtomicU64,
}

/// What is done with each row taken.
pub trait Sink {
    /// Takes a row; `false` to stop reading.
    fn row(&mut self, row: &Row, columns: &[String]) -> LoadFileResult<bool>;
}

/// Reads `reader` through `window` into `sink`; the rows taken. When a row is bad or
/// reading fails, a compressed stream is first read to its end: if it is damaged, that
/// is the error (the row was the damage's work).
pub fn run(
    reader: &mut dyn RowReader,
    file: &str,
    window: &Window,
    sink: &mut dyn Sink,
    counters: &Counters,
) -> LoadFileResult<u64> {
    match take(reader, file, window, sink, counters) {
        Err(e) if !matches!(e, LoadFileError::Usage(_)) => Err(reader.damage().unwrap_or(e)),
        done => done,
    }
}

fn take(
    reader: &mut dyn RowReader,
    file: &str,
    window: &Window,
    sink: &mut dyn Sink,
    counters: &Counters,
) -> LoadFileResult<u64> {
    let mut row = Row::default();
    let (mut data_rows, mut taken) = (0u64, 0u64);
    let mut time_field: Option<usize> = None;
    let end = window.limit.map(|l| window.offset.saturating_add(l));
    loop {
        if end.is_some_and(|end| data_rows >= end) || !reader.next_row(&mut row)? {
            break;
        }
        data_rows += 1;
        if data_rows <= window.offset {
            continue;
        }
        if let Some(time) = &window.time {
            let field = match time_field {
                Some(i) => Some(i),
                None => {
                    time_field = reader.columns().iter().position(|c| *c == time.column);
                    time_field
                }
            };
            let Some(text) = field.filter(|i| *i < row.len()).and_then(|i| row.field(i)) else {
                continue;
            };
            let Some(t) = parse_timestamp(text) else {
                let why = format!(
                    "{:?} is not a time (2025-01-31, 2025-01-31T12:00:00Z, 2025-01-31 12:00:00+02)",
                    String::from_utf8_lossy(&text[..text.len().min(64)])
                );
                return Err(bad_value(
                    file,
                    &row,
                    reader.columns(),
                    field.unwrap_or(0),
                    &why,
                ));
            };
            if time.start.is_some_and(|s| t < s) || time.stop.is_some_and(|s| t >= s) {
                continue;
            }
        }
        if let Err((field, why)) = check_text(&row) {
            return Err(bad_value(file, &row, reader.columns(), field, why));
        }
        taken += 1;
        if taken % 1024 == 0 {
            counters.rows.store(taken, Ordering::Relaxed);
            counters.bytes.store(reader.bytes_read(), Ordering::Relaxed);
        }
        if !sink.row(&row, reader.columns())? {
            break;
        }
    }
    counters.rows.store(taken, Ordering::Relaxed);
    counters.bytes.store(reader.bytes_read(), Ordering::Relaxed);
    Ok(taken)
}

/// Counts (the pass of `--dry-run`).
pub struct Count;

impl Sink for Count {
    fn row(&mut self, _: &Row, _: &[String]) -> LoadFileResult<bool> {
        Ok(true)
    }
}

/// Infers the type of every column (see [`Inferred`]).
#[derive(Debug, Default)]
pub struct Inference {
    /// The type inferred so far for each column, by position.
    pub types: Vec<Inferred>,
}

impl Sink for Inference {
    fn row(&mut self, row: &Row, _: &[String]) -> LoadFileResult<bool> {
        if self.types.len() < row.len() {
            self.types.resize(row.len(), Inferred::Unknown);
        }
        for (i, inferred) in self.types.iter_mut().enumerate().take(row.len()) {
            if *inferred == Inferred::Text {
                continue;
            }
            if let Some(text) = row.field(i) {
                *inferred = inferred.merge(Inferred::of(text, row.tags[i]));
            }
        }
        Ok(true)
    }
}

/// COPY text of the columns `pick`, in chunks of about [`CHUNK_BYTES`] handed to `send`
/// (which says `false` once the receiving side is gone).
pub struct CopyText<F: FnMut(Bytes) -> bool> {
    /// The positions of the row's fields to write, in the order of the COPY's columns.
    pub pick: Vec<usize>,
    /// Takes each full chunk; says `false` once the receiving side is gone.
    pub send: F,
    /// COPY text not yet sent.
    pub buffer: Vec<u8>,
}

impl<F: FnMut(Bytes) -> bool> CopyText<F> {
    /// COPY text of the fields `pick`, handed to `send`.
    pub fn new(pick: Vec<usize>, send: F) -> Self {
        CopyText {
            pick,
            send,
            buffer: Vec::with_capacity(CHUNK_BYTES + (CHUNK_BYTES >> 2)),
        }
    }

    /// Sends what is left; `false` if the receiver is gone.
    pub fn flush(&mut self) -> bool {
        if self.buffer.is_empty() {
            return true;
        }
        let chunk = std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(CHUNK_BYTES + (CHUNK_BYTES >> 2)),
        );
        (self.send)(Bytes::from(chunk))
    }
}

impl<F: FnMut(Bytes) -> bool> Sink for CopyText<F> {
    fn row(&mut self, row: &Row, _: &[String]) -> LoadFileResult<bool> {
        write_row(row, &self.pick, &mut self.buffer);
        if self.buffer.len() >= CHUNK_BYTES && !self.flush() {
            return Err(LoadFileError::Usage("the load stopped".into()));
        }
        Ok(true)
    }
}

/// Finds the `target`-th row taken (from 1): the row the server names by its line in
/// the COPY.
pub struct Locate {
    /// The row to find: its number among the rows taken, from 1.
    pub target: u64,
    /// Rows taken so far.
    pub seen: u64,
    /// Where the row is in the file, once found.
    pub found: Option<Position>,
}

impl Sink for Locate {
    fn row(&mut self, row: &Row, _: &[String]) -> LoadFileResult<bool> {
        self.seen += 1;
        if self.seen == self.target {
            self.found = Some(row.at);
            return Ok(false);
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::super::csv_rows::CsvRows;
    use super::*;

    fn csv(text: &str) -> CsvRows {
        CsvRows::open(
            Box::new(std::io::Cursor::new(text.as_bytes().to_vec())),
            "f.csv",
            true,
            b',',
        )
        .unwrap()
    }

    fn copy(text: &str, window: &Window) -> LoadFileResult<String> {
        let mut out = Vec::new();
        let mut sink = CopyText::new(vec![0, 1], |b: Bytes| {
            out.extend_from_slice(&b);
            true
        });
        run(
            &mut csv(text),
            "f.csv",
            window,
            &mut sink,
            &Counters::default(),
        )?;
        sink.flush();
        drop(sink);
        Ok(String::from_utf8(out).unwrap())
    }

    const DATA: &str =
        "id,ts\n1,2025-01-01\n2,2025-01-02T00:00:00Z\n3,\n4,2025-01-04 00:00:00+00\n5,2025-01-05\n";

    #[test]
    fn offset_limit_and_time_window_select_rows() {
        let all = copy(DATA, &Window::default()).unwrap();
        assert_eq!(all.lines().count(), 5);
        assert!(all.contains("3\t\\N\n"));
        let window = Window {
            offset: 1,
            limit: Some(3),
            time: None,
        };
        let ids: Vec<_> = copy(DATA, &window)
            .unwrap()
            .lines()
            .map(|l| l[..1].to_string())
            .collect();
        assert_eq!(ids, ["2", "3", "4"]);
        let day = |d: &str| parse_timestamp(d.as_bytes());
        let window = Window {
            offset: 0,
            limit: None,
            time: Some(TimeWindow {
                column: "ts".into(),
                start: day("2025-01-02"),
                stop: day("2025-01-05"),
            }),
        };
        let ids: Vec<_> = copy(DATA, &window)
            .unwrap()
            .lines()
            .map(|l| l[..1].to_string())
            .collect();
        assert_eq!(ids, ["2", "4"], "NULL and the stop are outside");
        let err = copy("id,ts\n1,yesterday\n", &window)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("f.csv: line 2, column \"ts\": \"yesterday\" is not a time"),
            "{err}"
        );
    }

    #[test]
    fn the_nth_row_taken_is_found_again() {
        let window = Window {
            offset: 1,
            limit: None,
            time: None,
        };
        let mut locate = Locate {
            target: 2,
            seen: 0,
            found: None,
        };
        run(
            &mut csv("a,b\n1,x\n2,\"multi\nline\"\n3,y\n4,z\n"),
            "f.csv",
            &window,
            &mut locate,
            &Counters::default(),
        )
        .unwrap();
        assert_eq!(locate.found, Some(Position::Line(5)));
    }

    #[test]
    fn inference_over_the_rows_taken() {
        let mut inference = Inference::default();
        let taken = run(
            &mut csv(DATA),
            "f.csv",
            &Window::default(),
            &mut inference,
            &Counters::default(),
        )
        .unwrap();
        assert_eq!(taken, 5);
        assert_eq!(inference.types, [Inferred::BigInt, Inferred::TimestampTz]);
    }
}
