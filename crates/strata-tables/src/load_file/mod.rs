//! `strata load --file`: loading an external file (CSV, JSON lines, Parquet; a local path
//! or an object of a storage) into a table, as one transaction.
//!
//! A load is passes over the file, each the same loop ([`pipeline::run`]) so they all
//! take the same rows:
//!
//! 1. **scan** (JSON lines always, for their keys; CSV with `--create`, for its types):
//!    reads the rows the load takes, inferring column types ([`infer`]);
//! 2. **load**: the rows as `COPY ... FROM STDIN (FORMAT text)` (values always streamed,
//!    identifiers quoted), parsed on a blocking thread while the runtime's thread talks to
//!    the server, in one transaction with the `CREATE TABLE` of `--create`: a bad row
//!    anywhere loads nothing. `--dry-run` stops before it, with the schema and the count.
//! 3. **locate**, only when the server refuses a value: it names the row by its line in
//!    the COPY, which another pass finds in the file, so the error names the file's line
//!    (or Parquet row) and the column.
//!
//! Memory is bounded by a few chunks of COPY text, the read buffers, one row (at most
//! [`row::MAX_ROW_BYTES`]) and, for Parquet, one batch of rows: it does not grow with the
//! file.

mod copy_text;
mod csv_rows;
mod decompressed;
pub use crate::load_file_error as error;
pub mod format;
mod infer;
mod json_rows;
mod parquet_rows;
pub mod pipeline;
mod row;
pub mod source;
mod target;

pub use error::{LoadFileError, Position};
pub use format::{Compression, FileFormat, FileShape};
pub use pipeline::{TimeWindow, Window};
pub use source::{resolve, FileSource};

use crate::discover::Column;
use crate::error::{TablesError, TablesResult};
use crate::name::TableName;
use bytes::Bytes;
use error::LoadFileResult;
use futures::SinkExt;
use pipeline::Counters;
use row::RowReader;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_pgclient::Client;

/// What to load, from where, into what.
#[derive(Debug, Clone)]
pub struct LoadFileRequest {
    /// Where the file is: a local path or an object in a storage.
    pub source: FileSource,
    /// The file as the user named it, for messages.
    pub file: String,
    /// The file's format.
    pub format: FileFormat,
    /// The byte between a CSV's fields.
    pub delimiter: u8,
    /// How the file is compressed as a whole.
    pub compression: Compression,
    /// The table to load into.
    pub into: TableName,
    /// Create the table from the file's columns (it must not exist).
    pub create: bool,
    /// A CSV's first record is its header (else its columns load by position).
    pub header: bool,
    /// Which rows of the file load.
    pub window: Window,
    /// Read and check everything, change nothing.
    pub dry_run: bool,
}

/// What a load did (or, dry, would do). Its JSON is `strata load --file --json`'s output.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadFileReport {
    /// The file as the user named it.
    pub file: String,
    /// The file's format.
    pub format: FileFormat,
    /// How the file was compressed.
    pub compression: Compression,
    /// The table loaded into, `schema.table`.
    pub into: String,
    /// Whether the table was (or would be) created.
    pub created: bool,
    /// Whether nothing was changed (`--dry-run`).
    pub dry_run: bool,
    /// The table's columns the file loads into, with their types.
    pub columns: Vec<Column>,
    /// Rows loaded (or, dry, that would load).
    pub rows: u64,
    /// The size of the file.
    pub bytes: u64,
    /// How long the load took, in seconds.
    pub seconds: f64,
}

/// What a load is doing, for progress on a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading the file for its columns and types.
    Scanning,
    /// Sending the rows to the server (COPY).
    Loading,
}

/// Hears how a load goes, a few times a second.
pub trait LoadObserver: Send + Sync {
    /// `rows` taken and `bytes` of the file read so far of `total`.
    fn progress(&self, phase: Phase, rows: u64, bytes: u64, total: u64);
}

/// Opens the file for a pass, on a blocking thread.
#[derive(Debug, Clone)]
struct Opener {
    source: FileSource,
    file: String,
    format: FileFormat,
    delimiter: u8,
    compression: Compression,
    header: bool,
    size: u64,
    runtime: tokio::runtime::Handle,
}

/// A pass's reader, and for Parquet the SQL types of its columns.
type Opened = (Box<dyn RowReader>, Option<Vec<&'static str>>);

impl Opener {
    /// The file's bytes, decompressed, and when it is compressed its stream (the
    /// compressed bytes read, for progress against the file's size; the check of the
    /// stream before a row is blamed).
    fn input(
        &self,
    ) -> LoadFileResult<(Box<dyn std::io::Read + Send>, Option<decompressed::Stream>)> {
        let raw = self.source.open(&self.file, self.size, &self.runtime)?;
        decompressed::open(raw, self.compression, &self.file)
    }

    /// A reader of the file; JSON lines with `json_columns` as their columns (`None`:
    /// discover them).
    fn open(&self, json_columns: Option<Vec<String>>) -> LoadFileResult<Opened> {
        Ok(match self.format {
            FileFormat::Csv => {
                let (input, stream) = self.input()?;
                let rows =
                    match csv_rows::CsvRows::open(input, &self.file, self.header, self.delimiter) {
                        Ok(rows) => rows,
                        // A bad header of a damaged stream: the damage is the error.
                        Err(e) => {
                            return Err(stream.and_then(|s| s.damage(&self.file)).unwrap_or(e))
                        }
                    };
                (
                    decompressed::counted(Box::new(rows), stream, &self.file),
                    None,
                )
            }
            FileFormat::Ndjson => {
                let (input, stream) = self.input()?;
                let discover = json_columns.is_none();
                let columns = json_columns.unwrap_or_default();
                let rows = json_rows::JsonRows::open(input, &self.file, columns, discover);
                (
                    decompressed::counted(Box::new(rows), stream, &self.file),
                    None,
                )
            }
            FileFormat::Parquet => {
                let local = self
                    .source
                    .local_file(&self.file, self.size, &self.runtime)?;
                let rows = parquet_rows::ParquetRows::open(local, &self.file)?;
                let types = rows.schema().iter().map(|c| c.sql).collect();
                (Box::new(rows), Some(types))
            }
        })
    }
}

/// Runs `work` on a blocking thread, telling `observer` how it goes.
async fn watched<T: Send + 'static>(
    work: impl FnOnce() -> LoadFileResult<T> + Send + 'static,
    counters: &Counters,
    observer: &dyn LoadObserver,
    phase: Phase,
    total: u64,
) -> LoadFileResult<T> {
    let mut handle = tokio::task::spawn_blocking(work);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            done = &mut handle => {
                return done.map_err(|e| LoadFileError::Usage(format!("reading the file failed: {e}")))?;
            }
            _ = tick.tick() => observer.progress(
                phase,
                counters.rows.load(Ordering::Relaxed),
                counters.bytes.load(Ordering::Relaxed),
                total,
            ),
        }
    }
}

/// What the first pass learns: the file's columns, and their types when they were
/// inferred or come from a Parquet schema; the rows taken when it read them all.
struct Scanned {
    columns: Vec<String>,
    types: Option<Vec<&'static str>>,
    rows: Option<u64>,
}

/// The table `into` as it is, or `None` when it does not exist and `create` asks for it:
/// a table that exists with `create`, or is missing without it, is refused.
async fn target_shape(
    client: &mut Client,
    into: &TableName,
    create: bool,
) -> TablesResult<Option<crate::discover::TableShape>> {
    match crate::discover::discover(client, into).await {
        Ok(_) if create => Err(LoadFileError::Usage(format!(
            "table {into} already exists: leave out --create to load into it"
        ))
        .into()),
        Ok(shape) => Ok(Some(shape)),
        Err(TablesError::UnknownTable(_)) if create => Ok(None),
        Err(TablesError::UnknownTable(table)) => Err(LoadFileError::Usage(format!(
            "table {table} does not exist: create it, or give --create to create it from the file"
        ))
        .into()),
        Err(e) => Err(e),
    }
}

/// Loads a file into a table (see the module's documentation).
pub async fn load_file(
    client: &mut Client,
    request: &LoadFileRequest,
    observer: &dyn LoadObserver,
) -> TablesResult<LoadFileReport> {
    let started = Instant::now();
    let LoadFileRequest {
        file, into, create, ..
    } = request;
    let size = request.source.size(file).await?;
    let shape = target_shape(client, into, *create).await?;
    let opener = Opener {
        source: request.source.clone(),
        file: file.clone(),
        format: request.format,
        delimiter: request.delimiter,
        compression: request.compression,
        header: request.header,
        size,
        runtime: tokio::runtime::Handle::current(),
    };
    let counters = Arc::new(Counters::default());
    let scan =
        request.format == FileFormat::Ndjson || (*create && request.format == FileFormat::Csv);
    let scanned = {
        let (opener, window, shared) = (opener.clone(), request.window.clone(), counters.clone());
        watched(
            move || {
                let (mut reader, parquet_types) = opener.open(None)?;
                if !scan {
                    return Ok(Scanned {
                        columns: reader.columns().to_vec(),
                        types: parquet_types,
                        rows: None,
                    });
                }
                let mut inference = pipeline::Inference::default();
                let rows =
                    pipeline::run(&mut *reader, &opener.file, &window, &mut inference, &shared)?;
                let mut types = inference.types;
                types.resize(reader.columns().len(), infer::Inferred::Unknown);
                Ok(Scanned {
                    columns: reader.columns().to_vec(),
                    types: Some(types.iter().map(|t| t.sql()).collect()),
                    rows: Some(rows),
                })
            },
            &counters,
            observer,
            Phase::Scanning,
            size,
        )
        .await?
    };
    if let Some(time) = &request.window.time {
        if !scanned.columns.contains(&time.column) {
            return Err(LoadFileError::Usage(format!(
                "{file}: --time-column {:?} is not a column of the file (its columns: {})",
                time.column,
                scanned.columns.join(", ")
            ))
            .into());
        }
    }
    let columns: Vec<Column> = match &shape {
        None => {
            let types = scanned.types.clone().unwrap_or_default();
            scanned
                .columns
                .iter()
                .enumerate()
                .map(|(i, name)| Column {
                    name: name.clone(),
                    type_name: types.get(i).copied().unwrap_or("text").to_string(),
                })
                .collect()
        }
        Some(shape) => target::match_columns(
            file,
            &scanned.columns,
            into,
            &shape.columns,
            request.format == FileFormat::Csv && !request.header,
        )?,
    };
    let json_columns = (request.format == FileFormat::Ndjson).then(|| scanned.columns.clone());
    let mut report = LoadFileReport {
        file: file.clone(),
        format: request.format,
        compression: request.compression,
        into: into.to_string(),
        created: *create,
        dry_run: request.dry_run,
        columns,
        rows: 0,
        bytes: size,
        seconds: 0.0,
    };
    if request.dry_run {
        report.rows = match scanned.rows {
            Some(rows) => rows,
            None => {
                let (opener, window, counters2) =
                    (opener.clone(), request.window.clone(), counters.clone());
                let json = json_columns.clone();
                watched(
                    move || {
                        let (mut reader, _) = opener.open(json)?;
                        pipeline::run(
                            &mut *reader,
                            &opener.file,
                            &window,
                            &mut pipeline::Count,
                            &counters2,
                        )
                    },
                    &counters,
                    observer,
                    Phase::Scanning,
                    size,
                )
                .await?
            }
        };
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }
    report.rows = copy_in(
        client,
        request,
        &opener,
        &report.columns,
        json_columns,
        observer,
    )
    .await?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The load pass: CREATE TABLE (with `--create`) and COPY in one transaction.
async fn copy_in(
    client: &mut Client,
    request: &LoadFileRequest,
    opener: &Opener,
    columns: &[Column],
    json_columns: Option<Vec<String>>,
    observer: &dyn LoadObserver,
) -> TablesResult<u64> {
    let into = &request.into;
    let what = format!("loading {} into {into}", request.file);
    let db = |e: &strata_pgclient::PgError| TablesError::db(&what, e);
    let tx = client.transaction().await.map_err(|e| db(&e))?;
    if request.create {
        tx.batch_execute(&target::create_table(into, columns))
            .await
            .map_err(|e| db(&e))?;
    }
    let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
    let sink = tx
        .copy_in::<_, Bytes>(&crate::sql::copy_in_text(into, &names))
        .await
        .map_err(|e| db(&e))?;
    futures::pin_mut!(sink);
    let counters = Arc::new(Counters::default());
    let (chunks_tx, mut chunks) = tokio::sync::mpsc::channel::<Bytes>(4);
    let locate_columns = json_columns.clone();
    let parse = {
        let (opener, window, shared) = (opener.clone(), request.window.clone(), counters.clone());
        let pick: Vec<usize> = (0..columns.len()).collect();
        tokio::task::spawn_blocking(move || {
            let (mut reader, _) = opener.open(json_columns)?;
            let mut copy =
                pipeline::CopyText::new(pick, |chunk| chunks_tx.blocking_send(chunk).is_ok());
            let rows = pipeline::run(&mut *reader, &opener.file, &window, &mut copy, &shared)?;
            if !copy.flush() {
                return Err(LoadFileError::Usage("the load stopped".into()));
            }
            Ok(rows)
        })
    };
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut failed = None;
    loop {
        tokio::select! {
            chunk = chunks.recv() => match chunk {
                Some(chunk) => {
                    if let Err(e) = sink.send(chunk).await {
                        failed = Some(e);
                        break;
                    }
                }
                None => break,
            },
            _ = tick.tick() => observer.progress(
                Phase::Loading,
                counters.rows.load(Ordering::Relaxed),
                counters.bytes.load(Ordering::Relaxed),
                opener.size,
            ),
        }
    }
    drop(chunks);
    let parsed = parse
        .await
        .map_err(|e| LoadFileError::Usage(format!("reading the file failed: {e}")));
    if let Some(e) = failed {
        return Err(refused(&e, request, opener, locate_columns, &names, &what).await);
    }
    let rows = parsed??;
    let copied = match sink.as_mut().finish().await {
        Ok(n) => n,
        Err(e) => return Err(refused(&e, request, opener, locate_columns, &names, &what).await),
    };
    if copied != rows {
        return Err(TablesError::Db {
            what,
            message: format!("the server took {copied} rows of the {rows} sent"),
            sqlstate: None,
        });
    }
    tx.commit().await.map_err(|e| db(&e))?;
    Ok(rows)
}

/// The error of a COPY the server refused: when it names a line of the COPY, the row of
/// the file it came from, found by another pass.
async fn refused(
    err: &strata_pgclient::PgError,
    request: &LoadFileRequest,
    opener: &Opener,
    json_columns: Option<Vec<String>>,
    columns: &[String],
    what: &str,
) -> TablesError {
    let message = strata_pgclient::error_message(err);
    let context = err
        .as_db_error()
        .and_then(|db| db.where_())
        .and_then(|context| copy_context(context, &request.into, columns));
    let Some((line, column)) = context else {
        return TablesError::db(what, err);
    };
    let (opener, window) = (opener.clone(), request.window.clone());
    let found = tokio::task::spawn_blocking(move || {
        let (mut reader, _) = opener.open(json_columns)?;
        let mut locate = pipeline::Locate {
            target: line,
            seen: 0,
            found: None,
        };
        let located = pipeline::run(
            &mut *reader,
            &opener.file,
            &window,
            &mut locate,
            &Counters::default(),
        );
        // The value refused may be the work of a damaged compressed stream.
        if let Some(damage) = reader.damage() {
            return Err(damage);
        }
        located?;
        Ok::<_, LoadFileError>(locate.found)
    })
    .await;
    let file = request.file.clone();
    match (found, column) {
        (Ok(Err(damage @ LoadFileError::Damaged { .. })), _) => damage.into(),
        (Ok(Ok(Some(at))), Some(column)) => LoadFileError::BadValue {
            file,
            at,
            column,
            why: message,
        }
        .into(),
        (Ok(Ok(Some(at))), None) => LoadFileError::BadRow {
            file,
            at,
            why: message,
        }
        .into(),
        _ => TablesError::Db {
            what: what.to_string(),
            message: format!("{message} (row {line} loaded)"),
            sqlstate: err.code().map(|c| c.code().to_string()),
        },
    }
}

/// The row (from 1) and column of a COPY's error context, `COPY t, line 3, column c:
/// ...` (the column absent for errors of a whole row). The column is one of `columns`:
/// names and values can both hold `: `, the known names tell them apart.
fn copy_context(
    context: &str,
    table: &TableName,
    columns: &[String],
) -> Option<(u64, Option<String>)> {
    let prefix = format!("COPY {}, line ", table.name);
    let rest = context.lines().find_map(|l| l.strip_prefix(&prefix))?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let line = rest[..digits].parse().ok()?;
    let column = rest[digits..].strip_prefix(", column ").and_then(|r| {
        columns
            .iter()
            .filter(|c| r.starts_with(&format!("{c}:")))
            .max_by_key(|c| c.len())
            .cloned()
    });
    Some((line, column))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_contexts_name_the_row_and_column() {
        let t = TableName::new("s", "t, line 9");
        let names = ["a".to_string(), "a: b".to_string(), "n".to_string()];
        assert_eq!(
            copy_context(
                "COPY t, line 9, line 3, column a: b: \"x: \"y\"\"",
                &t,
                &names
            ),
            Some((3, Some("a: b".into())))
        );
        assert_eq!(
            copy_context("COPY t, line 9, line 12: \"1\\tx\"", &t, &names),
            Some((12, None))
        );
        assert_eq!(
            copy_context("COPY t, line 9, line 4, column n: null input", &t, &names),
            Some((4, Some("n".into())))
        );
        assert_eq!(copy_context("SQL statement", &t, &names), None);
    }
}

/// The decoders on hostile bytes: whatever the input, an error or rows, never a panic.
#[cfg(test)]
mod decoder_properties {
    use super::pipeline::{run, CopyText, Counters, Inference, Window};
    use super::*;
    use proptest::prelude::*;

    fn input(bytes: &[u8]) -> Box<dyn std::io::Read + Send> {
        Box::new(std::io::Cursor::new(bytes.to_vec()))
    }

    /// Every pass a load makes, over `reader`.
    fn passes(mut open: impl FnMut() -> LoadFileResult<Box<dyn RowReader>>) {
        let window = Window {
            offset: 1,
            limit: Some(50),
            time: None,
        };
        for window in [Window::default(), window] {
            if let Ok(mut reader) = open() {
                let _ = run(
                    &mut *reader,
                    "f",
                    &window,
                    &mut Inference::default(),
                    &Counters::default(),
                );
            }
            if let Ok(mut reader) = open() {
                let pick: Vec<usize> = (0..reader.columns().len()).collect();
                let mut sink = CopyText::new(pick, |_| true);
                let _ = run(&mut *reader, "f", &window, &mut sink, &Counters::default());
            }
        }
    }

    fn check(bytes: &[u8]) {
        for header in [true, false] {
            passes(|| {
                Ok(Box::new(csv_rows::CsvRows::open(
                    input(bytes),
                    "f",
                    header,
                    b',',
                )?))
            });
        }
        passes(|| {
            Ok(Box::new(json_rows::JsonRows::open(
                input(bytes),
                "f",
                Vec::new(),
                true,
            )))
        });
        passes(|| {
            Ok(Box::new(json_rows::JsonRows::open(
                input(bytes),
                "f",
                vec!["a".into()],
                false,
            )))
        });
    }

    /// Bytes that mean something to CSV or JSON, mostly.
    fn structural() -> impl Strategy<Value = Vec<u8>> {
        let pieces = prop_oneof![
            Just(&b","[..]),
            Just(&b"\""[..]),
            Just(&b"\n"[..]),
            Just(&b"\r"[..]),
            Just(&b"{\"a\":"[..]),
            Just(&b"}"[..]),
            Just(&b"["[..]),
            Just(&b"]"[..]),
            Just(&b"1"[..]),
            Just(&b"2025-01-01"[..]),
            Just(&b"\\"[..]),
            Just(&b"\0"[..]),
            Just(&b"\xff"[..]),
            Just(&b"\xc3"[..]),
            Just(&b"true"[..]),
        ];
        proptest::collection::vec(pieces, 0..200).prop_map(|p| p.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            check(&bytes);
        }

        #[test]
        fn structured_garbage_never_panics(bytes in structural()) {
            check(&bytes);
        }
    }
}
