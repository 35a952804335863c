//! Archives of partitions in object storage, and loading them back.
//!
//! A partition is exported with `COPY (SELECT ...) TO STDOUT` inside one REPEATABLE READ,
//! read-only snapshot, and stored under `tables/<schema>/<table>/<partition>/` in one of
//! two formats (the policy's `--format`):
//!
//! - **csv**: `COPY ... (FORMAT csv, HEADER)`, its records counted and its bytes hashed
//!   (BLAKE3) as they stream, compressed into one zstd stream cut into parts of at most
//!   [`PART_BYTES`] (`data.csv.zst.000000`, ...), because the storage interface stores
//!   whole objects; see [`csv`].
//! - **parquet**: `COPY ... (FORMAT binary)`, decoded into typed columns (integers, floats,
//!   booleans, dates and timestamps keep their types; everything else is PostgreSQL's text
//!   output of the value), cut into row groups of about [`ROW_GROUP_BYTES`] of values and
//!   into complete Parquet files of about [`PART_BYTES`] (`data.000000.parquet`, ...), each
//!   readable on its own by any Parquet reader; the values are hashed as they are written
//!   (see [`values::ContentHash`]).
//!
//! Memory stays bounded by a few parts and one row group whatever the partition's size.
//! Every part is read back from the storage while the next one is produced (see
//! [`check_parts`] for what is checked and why that is enough). Only then is
//! `archive.json`, the [`ArchiveManifest`], written: an archive without it is incomplete.
//! And only then is the partition dropped, in the export's own transaction, which has
//! held the partition against writes since before its snapshot (see
//! [`archive_partition`]).

mod csv;
pub mod load_target;
mod parquet_export;
mod parquet_load;
pub(crate) mod parquet_read;
mod parquet_write;
mod pgbinary;
pub(crate) mod pgtext;
pub(crate) mod values;

pub use crate::codec::{CodecError, CodecResult};
pub use crate::policy::ArchiveFormat;

use crate::discover::Column;
use crate::error::{TablesError, TablesResult};
use crate::name::TableName;
use crate::sql;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use strata_pgclient::tokio_postgres::{IsolationLevel, Transaction};
use strata_pgclient::Client;
use strata_store::DynStore;

/// How much of COPY's output is handed to the encoder at once.
const BATCH_BYTES: usize = 256 << 10;
/// The largest stored part of an archive (compressed bytes), roughly: a Parquet part is
/// closed after the row group that reaches it.
pub const PART_BYTES: usize = 16 << 20;
/// A Parquet row group holds about this many bytes of values (as PostgreSQL sends them).
pub const ROW_GROUP_BYTES: usize = 32 << 20;
const MANIFEST: &str = "archive.json";
/// The object that claims an archive's place for one source database, written once
/// (conditional put) before the first part: see [`claim`].
const SOURCE: &str = "source.json";
const FORMAT: &str = "strata-table-archive";

/// Where an archive's rows came from: which database of which cluster, which table. Two
/// databases (of one cluster or of two) can hold a table of the same name; the archive's
/// key does not tell them apart, this does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveSource {
    /// The cluster's `system_identifier` (`pg_control_system()`), as pg_controldata prints
    /// it: the same on a cluster and its physical replicas and restores.
    pub system_identifier: String,
    /// The database's name.
    pub database: String,
    /// The partitioned table the partition belonged to.
    pub table: TableName,
}

impl std::fmt::Display for ArchiveSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of database {:?} (system identifier {})",
            self.table, self.database, self.system_identifier
        )
    }
}

/// The source of what `client` exports from `table`.
pub async fn source_of(client: &Client, table: &TableName) -> TablesResult<ArchiveSource> {
    let row = client
        .query_one(
            "SELECT system_identifier, current_database()::text FROM pg_control_system()",
            &[],
        )
        .await
        .map_err(|e| TablesError::db("reading the database's system identifier", &e))?;
    // A uint64 that PostgreSQL hands out as a bigint: printed unsigned, as pg_controldata.
    let id: i64 = row.get(0);
    Ok(ArchiveSource {
        system_identifier: (id as u64).to_string(),
        database: row.get(1),
        table: table.clone(),
    })
}

/// What an archive holds, stored beside its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveManifest {
    /// Always `strata-table-archive`.
    pub format: String,
    /// 1 for CSV archives (which strata before Parquet reads too), 2 for Parquet.
    pub version: u32,
    /// How the rows are stored (absent in manifests of strata before formats: CSV).
    #[serde(default)]
    pub data_format: ArchiveFormat,
    /// The partitioned table the partition belonged to.
    pub table: TableName,
    /// The partition archived.
    pub partition: TableName,
    /// The partition's bound when it was archived.
    pub bound: String,
    /// Name and type of each column, in order.
    pub columns: Vec<Column>,
    /// The rows exported.
    pub rows: u64,
    /// Size of the CSV (uncompressed); 0 for Parquet.
    #[serde(default)]
    pub csv_bytes: u64,
    /// Size stored (all parts).
    pub stored_bytes: u64,
    /// BLAKE3 of the content, hex: of the CSV, or of a Parquet archive's values (see
    /// [`values::ContentHash`]).
    pub blake3: String,
    /// BLAKE3 of the stored parts, concatenated in order, hex (absent in manifests of
    /// strata before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_blake3: Option<String>,
    /// How the parts are compressed: `zstd`.
    pub compression: String,
    /// The part names, in order.
    pub parts: Vec<String>,
    /// When the archive was written, RFC 3339 (UTC, seconds).
    pub created_at: String,
    /// Where the rows came from (absent in archives of strata before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ArchiveSource>,
    /// The partition key of the table (absent in archives of strata before it): what
    /// `load` checks the target for rows of the archived range on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
}

fn manifest_version(format: ArchiveFormat) -> u32 {
    match format {
        ArchiveFormat::Csv => 1,
        ArchiveFormat::Parquet => 2,
    }
}

/// What an encoder saw of the content, or a reader found: compared before anything is
/// dropped and whenever an archive is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Encoded {
    pub rows: u64,
    /// Bytes of CSV (0 for Parquet).
    pub content_bytes: u64,
    /// BLAKE3, hex.
    pub content_hash: String,
}

/// Where an archive of `partition` of `table` lives in a storage.
pub fn archive_prefix(table: &TableName, partition: &TableName) -> String {
    format!(
        "tables/{}/{}/{}.{}",
        key_part(&table.schema),
        key_part(&table.name),
        key_part(&partition.schema),
        key_part(&partition.name)
    )
}

/// A name made safe for an object key: bytes outside `[A-Za-z0-9_-]` as `%XX`, so no name
/// can add a `/`, a `..` or an odd character to a key.
fn key_part(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The name of part `index` of an archive.
fn part_name(format: ArchiveFormat, index: usize) -> String {
    match format {
        ArchiveFormat::Csv => format!("data.csv.zst.{index:06}"),
        ArchiveFormat::Parquet => format!("data.{index:06}.parquet"),
    }
}

fn archive_err(key: &str, why: impl Into<String>) -> TablesError {
    TablesError::Archive {
        key: key.to_string(),
        why: why.into(),
    }
}

/// The archive at `key` whose data could not be written or read back.
fn codec_err(key: &str, fault: CodecError) -> TablesError {
    TablesError::ArchiveData {
        key: key.to_string(),
        fault,
    }
}

/// How the COPY stream becomes parts.
enum Encoder {
    Csv,
    Parquet(Vec<parquet_export::ExportColumn>),
}

/// Archives a partition: exports it, reads the archive back and checks it, writes its
/// manifest, and only then detaches and drops the partition.
///
/// All of it is one transaction that takes a SHARE lock on the partition before its
/// snapshot: from the snapshot the export reads to the drop, no row of the partition can
/// be written, so the archive holds exactly the rows that are dropped without counting
/// them again, and the parent table is locked (ACCESS EXCLUSIVE) only for the instant of
/// the detach and drop. A writer that holds the partition when the run starts is waited
/// for (up to `lock_timeout`) and its rows are archived; one that comes during the export
/// waits for the drop and then fails (the partition is gone), or PostgreSQL's deadlock
/// detector cancels one of the two: no row is ever dropped unarchived.
///
/// Interrupted at any point, nothing is dropped; an archive whose manifest was written is
/// complete, and the next run exports the partition again and replaces it. An archive in
/// that place that came from another database (or whose source is unknown) is never
/// replaced: the export is refused before anything is written, and the partition stays.
pub async fn archive_partition(
    client: &mut Client,
    store: &DynStore,
    request: &ArchiveRequest<'_>,
) -> TablesResult<ArchiveManifest> {
    let ArchiveRequest {
        table, partition, ..
    } = *request;
    let prefix = archive_prefix(table, partition);
    let what = format!("exporting {partition}");
    let source = source_of(client, table).await?;
    claim(store, &prefix, &source).await?;
    // An earlier archive of this partition (an interrupted run left it complete, but the
    // partition is still here) is no longer complete once its parts start being replaced:
    // its manifest goes first, so a failure from here on leaves an incomplete archive,
    // never a damaged one that looks complete.
    store.delete(&format!("{prefix}/{MANIFEST}")).await?;
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .start()
        .await
        .map_err(|e| TablesError::db(&what, &e))?;
    // LOCK and SET do not take the transaction's snapshot: the first query after them
    // does, once the lock is held.
    tx.batch_execute(&sql::lock_for_export(partition))
        .await
        .map_err(|e| TablesError::db(&what, &e))?;
    tx.batch_execute(sql::EXPORT_SETTINGS)
        .await
        .map_err(|e| TablesError::db(&what, &e))?;
    let manifest = export_in(&tx, store, &prefix, request, source).await?;
    let what = format!("dropping archived {partition}");
    for statement in [
        sql::lock_for_removal(table, partition),
        sql::detach(table, partition),
        sql::drop_table(partition),
    ] {
        tx.batch_execute(&statement)
            .await
            .map_err(|e| TablesError::db(&what, &e))?;
    }
    tx.commit().await.map_err(|e| TablesError::db(&what, &e))?;
    Ok(manifest)
}

/// What to archive: a partition of a table, as discovered.
#[derive(Debug, Clone, Copy)]
pub struct ArchiveRequest<'a> {
    /// The partitioned table.
    pub table: &'a TableName,
    /// The partition to archive.
    pub partition: &'a TableName,
    /// The partition's bound as PostgreSQL prints it.
    pub bound: &'a str,
    /// The table's columns, in order: what is exported and recorded.
    pub columns: &'a [Column],
    /// The table's partition key.
    pub column: Option<&'a str>,
    /// How the rows are stored (CSV or Parquet).
    pub format: ArchiveFormat,
}

/// Makes sure the place of an archive is this source's to write: an archive already there
/// must have come from the same database and table, and the place is claimed for `source`
/// with a write-once object before any part is written, so that two databases archiving
/// a table of the same name into one storage cannot both write there, even at once.
async fn claim(store: &DynStore, prefix: &str, source: &ArchiveSource) -> TablesResult<()> {
    let refuse = |holder: String| {
        archive_err(
            prefix,
            format!(
                "{} already holds an archive of {holder}; this is {source}: not replaced, and the partition is kept. Archive each database into a storage of its own (the policy's --target), or move that archive away if it is no longer needed",
                store.describe()
            ),
        )
    };
    match store.get(&format!("{prefix}/{MANIFEST}")).await {
        Ok(data) => match serde_json::from_slice::<ArchiveManifest>(&data) {
            Ok(ArchiveManifest {
                source: Some(existing),
                ..
            }) if existing == *source => {}
            Ok(ArchiveManifest {
                source: Some(existing),
                ..
            }) => return Err(refuse(existing.to_string())),
            Ok(existing) => {
                return Err(refuse(format!(
                    "{} written by an earlier strata, which did not record its source database",
                    existing.table
                )))
            }
            Err(e) => {
                return Err(refuse(format!(
                    "unknown origin (unreadable {MANIFEST}: {e})"
                )))
            }
        },
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    let key = format!("{prefix}/{SOURCE}");
    let json = serde_json::to_vec_pretty(source).map_err(|e| archive_err(prefix, e.to_string()))?;
    match store.put_if_absent(&key, Bytes::from(json)).await {
        Ok(()) => Ok(()),
        Err(strata_store::StoreError::AlreadyExists { .. }) => {
            let data = store.get(&key).await?;
            match serde_json::from_slice::<ArchiveSource>(&data) {
                Ok(existing) if existing == *source => Ok(()),
                Ok(existing) => Err(refuse(existing.to_string())),
                Err(e) => Err(refuse(format!("unknown origin (unreadable {SOURCE}: {e})"))),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// COPY sends a message per row: they are gathered into batches of [`BATCH_BYTES`] and
/// handed to the encoder (`chunks`), so the hand-over, the hash and the encoder work on
/// large pieces. Ends at the stream's end, its error, or an encoder that stopped (its own
/// error says why).
async fn hand_over_in_batches(
    stream: impl futures::Stream<Item = Result<Bytes, strata_pgclient::tokio_postgres::Error>>,
    chunks: tokio::sync::mpsc::Sender<Bytes>,
    what: &str,
) -> TablesResult<()> {
    futures::pin_mut!(stream);
    let mut batch = bytes::BytesMut::with_capacity(BATCH_BYTES);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| TablesError::db(what, &e))?;
        batch.extend_from_slice(&chunk);
        if batch.len() >= BATCH_BYTES {
            let full = batch.split().freeze();
            batch.reserve(BATCH_BYTES);
            if chunks.send(full).await.is_err() {
                return Ok(());
            }
        }
    }
    if !batch.is_empty() {
        let _ = chunks.send(batch.freeze()).await;
    }
    Ok(())
}

/// Exports a partition within `tx` (which holds the partition still), reads the archive
/// back and checks it, then writes its manifest.
async fn export_in(
    tx: &Transaction<'_>,
    store: &DynStore,
    prefix: &str,
    request: &ArchiveRequest<'_>,
    source: ArchiveSource,
) -> TablesResult<ArchiveManifest> {
    let &ArchiveRequest {
        table,
        partition,
        bound,
        columns,
        column,
        format,
    } = request;
    let prefix = prefix.to_string();
    let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
    let what = format!("exporting {partition}");
    let (copy, encoder) = match format {
        ArchiveFormat::Csv => (sql::copy_out(partition, &names), Encoder::Csv),
        ArchiveFormat::Parquet => {
            let export = parquet_export::columns(tx, partition, &names).await?;
            (
                parquet_export::copy_out(partition, &export),
                Encoder::Parquet(export),
            )
        }
    };
    // No count(*): the rows are counted in the stream, and the lock keeps them as counted
    // until the drop.
    let stream = tx
        .copy_out(&copy)
        .await
        .map_err(|e| TablesError::db(&what, &e))?;
    // COPY's data arrives here; hashing, counting and encoding run on a blocking thread,
    // the finished parts are stored by a third task and checked on a fourth, so they all
    // overlap (as `psql | zstd > file` does) and each hand-over is bounded.
    let (chunks_tx, chunks_rx) = tokio::sync::mpsc::channel::<Bytes>(32);
    let (parts_tx, parts_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1);
    let encoding = tokio::task::spawn_blocking({
        let pg_columns = columns.to_vec();
        move || match encoder {
            Encoder::Csv => csv::encode(chunks_rx, parts_tx, PART_BYTES),
            Encoder::Parquet(export) => parquet_export::encode(
                chunks_rx,
                parts_tx,
                &export,
                &pg_columns,
                PART_BYTES,
                ROW_GROUP_BYTES,
            ),
        }
    });
    let (check_tx, check_rx) = tokio::sync::mpsc::channel::<ReadBack>(1);
    let checking = tokio::task::spawn_blocking({
        let decode = (format == ArchiveFormat::Parquet).then(|| names.clone());
        move || check_parts(check_rx, decode)
    });
    let storing = tokio::spawn(store_parts(
        store.clone(),
        prefix.clone(),
        format,
        parts_rx,
        check_tx,
    ));
    let received = hand_over_in_batches(stream, chunks_tx, &what).await;
    let encoded = encoding
        .await
        .map_err(|e| archive_err(&prefix, format!("encoding task: {e}")))?;
    let stored = storing
        .await
        .map_err(|e| archive_err(&prefix, format!("storing task: {e}")))?;
    let checked = checking
        .await
        .map_err(|e| archive_err(&prefix, format!("read-back task: {e}")))?;
    // The first failure is the cause: an encoder that stopped because storing did only
    // echoes it.
    received?;
    let (parts, stored_bytes) = stored?;
    let encoded = encoded.map_err(|e| codec_err(&prefix, e))?;
    let checked = checked.map_err(|e| codec_err(&prefix, e))?;
    if checked.parts != parts.len() || checked.bytes != stored_bytes {
        return Err(archive_err(
            &prefix,
            format!(
                "read back {} parts of {} bytes; stored {} of {stored_bytes}",
                checked.parts,
                checked.bytes,
                parts.len()
            ),
        ));
    }
    if let Some(values) = &checked.values {
        if values.rows != encoded.rows || values.content_hash != encoded.content_hash {
            return Err(archive_err(
                &prefix,
                format!(
                    "read back {} rows, blake3 {}; wrote {} rows, blake3 {}",
                    values.rows, values.content_hash, encoded.rows, encoded.content_hash
                ),
            ));
        }
    }
    let manifest = ArchiveManifest {
        format: FORMAT.into(),
        version: manifest_version(format),
        data_format: format,
        table: table.clone(),
        partition: partition.clone(),
        bound: bound.to_string(),
        columns: columns.to_vec(),
        rows: encoded.rows,
        csv_bytes: encoded.content_bytes,
        stored_bytes,
        blake3: encoded.content_hash,
        stored_blake3: Some(checked.stored_hash),
        compression: "zstd".into(),
        parts,
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        source: Some(source),
        column: column.map(str::to_string),
    };
    // Parts of an earlier export of the same partition (longer, or in the other format)
    // are not part of this one.
    for object in store.list(&format!("{prefix}/")).await? {
        let name = object.key.rsplit('/').next().unwrap_or_default();
        if name != MANIFEST && name != SOURCE && !manifest.parts.iter().any(|p| p == name) {
            store.delete(&object.key).await?;
        }
    }
    let json =
        serde_json::to_vec_pretty(&manifest).map_err(|e| archive_err(&prefix, e.to_string()))?;
    store
        .put(&format!("{prefix}/{MANIFEST}"), Bytes::from(json))
        .await?;
    Ok(manifest)
}

/// Stores the parts in order, reads each back from the storage and hands both to the
/// checker; returns their names and total size.
async fn store_parts(
    store: DynStore,
    prefix: String,
    format: ArchiveFormat,
    mut incoming: tokio::sync::mpsc::Receiver<Vec<u8>>,
    check: tokio::sync::mpsc::Sender<ReadBack>,
) -> TablesResult<(Vec<String>, u64)> {
    let mut parts = Vec::new();
    let mut bytes = 0;
    while let Some(data) = incoming.recv().await {
        let written = Bytes::from(data);
        bytes += written.len() as u64;
        let name = part_name(format, parts.len());
        let key = format!("{prefix}/{name}");
        store.put(&key, written.clone()).await?;
        parts.push(name);
        let stored = store.get(&key).await?;
        if check.send(ReadBack { written, stored }).await.is_err() {
            break; // the checker stopped: its error says why
        }
    }
    Ok((parts, bytes))
}

/// A part as it was produced and as the storage returned it.
struct ReadBack {
    written: Bytes,
    stored: Bytes,
}

/// What reading the parts back established.
#[derive(Debug)]
struct Checked {
    parts: usize,
    bytes: u64,
    /// BLAKE3 of the stored parts in order.
    stored_hash: String,
    /// Rows and content hash decoded from the stored parts (Parquet).
    values: Option<Encoded>,
}

/// Checks each part as read back from the storage, in order, while the export goes on.
///
/// **Every part: the stored bytes are the bytes produced.** Each part is compared byte
/// for byte with what the encoder handed out, and the stored bytes are hashed for the
/// manifest (`stored_blake3`). This catches what can go wrong between the encoder and the
/// storage: a short or failed write that was reported as done, a lost or replaced object,
/// a flipped bit, a wrong key.
///
/// **CSV: no decompression.** The row count and the BLAKE3 of the CSV are computed from
/// the very buffers handed to the compressor, so the archive's content is established by
/// the export itself; what the read-back must prove is that the storage holds the
/// compressor's output, which the comparison does. The step between the two, zstd
/// compression, is lossless by contract (it is what every reader of the archive relies
/// on), and each zstd frame carries zstd's own checksum of its content, so any
/// decompression (`strata load`, [`verify`], `zstd -t`) detects a compressor that went
/// wrong. Decompressing every part once more before the drop would test the zstd library
/// again on every byte, for 14% of the export's instructions (docs/benchmarks.md); what it
/// alone would catch is memory corruption inside the compressor between hashing and
/// compressing, which machines meant to hold the only copy of data guard with ECC memory.
///
/// **Parquet: decoded.** A Parquet part is not one lossless codec over the hashed values:
/// they are encoded by the Parquet writer (levels, pages, footer), then compressed. So
/// each stored part is also decoded, and its row count and value hash must match what the
/// writer was given.
fn check_parts(
    mut parts: tokio::sync::mpsc::Receiver<ReadBack>,
    decode: Option<Vec<String>>,
) -> CodecResult<Checked> {
    let mut stored_hash = blake3::Hasher::new();
    let mut checked = Checked {
        parts: 0,
        bytes: 0,
        stored_hash: String::new(),
        values: None,
    };
    let mut reader = decode.map(parquet_load::ParquetReader::new);
    while let Some(ReadBack { written, stored }) = parts.blocking_recv() {
        if stored != written {
            return Err(CodecError::ReadBackDiffers {
                part: checked.parts,
                stored: stored.len(),
                written: written.len(),
            });
        }
        drop(written);
        stored_hash.update(&stored);
        checked.parts += 1;
        checked.bytes += stored.len() as u64;
        if let Some(reader) = &mut reader {
            reader.push_part(stored)?;
            reader.skim_part()?;
        }
    }
    checked.stored_hash = stored_hash.finalize().to_hex().to_string();
    checked.values = reader.map(|r| r.read());
    Ok(checked)
}

/// Reads an archive's parts in order and hands out its content (CSV, or for Parquet the
/// rows as COPY text); [`ArchiveReader::finish`] checks rows, content hash, sizes and the
/// hash of the stored parts against the manifest.
struct ArchiveReader<'a> {
    store: &'a DynStore,
    prefix: &'a str,
    manifest: &'a ArchiveManifest,
    next_part: usize,
    body: Body,
    stored: blake3::Hasher,
    stored_bytes: u64,
}

enum Body {
    Csv(Box<csv::CsvReader>),
    Parquet(Box<parquet_load::ParquetReader>),
}

impl<'a> ArchiveReader<'a> {
    fn new(
        store: &'a DynStore,
        prefix: &'a str,
        manifest: &'a ArchiveManifest,
    ) -> TablesResult<Self> {
        let body = match manifest.data_format {
            ArchiveFormat::Csv => Body::Csv(Box::new(
                csv::CsvReader::new().map_err(|e| codec_err(prefix, e))?,
            )),
            ArchiveFormat::Parquet => Body::Parquet(Box::new(parquet_load::ParquetReader::new(
                manifest.columns.iter().map(|c| c.name.clone()).collect(),
            ))),
        };
        Ok(ArchiveReader {
            store,
            prefix,
            manifest,
            next_part: 0,
            body,
            stored: blake3::Hasher::new(),
            stored_bytes: 0,
        })
    }

    /// The next part from the storage, `None` after the last.
    async fn fetch_part(&mut self) -> TablesResult<Option<Bytes>> {
        let Some(part) = self.manifest.parts.get(self.next_part) else {
            return Ok(None);
        };
        let data = self.store.get(&format!("{}/{part}", self.prefix)).await?;
        self.next_part += 1;
        self.stored.update(&data);
        self.stored_bytes += data.len() as u64;
        Ok(Some(data))
    }

    /// The next piece of content, `None` at the end.
    async fn next_chunk(&mut self) -> TablesResult<Option<Bytes>> {
        let err = |e: CodecError| codec_err(self.prefix, e);
        loop {
            let chunk = match &mut self.body {
                Body::Csv(r) => r.next_chunk(),
                Body::Parquet(r) => r.next_chunk(),
            }
            .map_err(err)?;
            if chunk.is_some() {
                return Ok(chunk);
            }
            match self.fetch_part().await? {
                Some(data) => match &mut self.body {
                    Body::Csv(r) => r.push_part(data),
                    Body::Parquet(r) => r.push_part(data).map_err(err)?,
                },
                None => {
                    return match &mut self.body {
                        Body::Csv(r) => r.end().map_err(err),
                        Body::Parquet(_) => Ok(None),
                    }
                }
            }
        }
    }

    /// Reads everything without handing content out.
    async fn skim(&mut self) -> TablesResult<()> {
        if let Body::Parquet(_) = self.body {
            // Decoding the values is the check; making COPY text of them is not needed.
            while let Some(data) = self.fetch_part().await? {
                if let Body::Parquet(r) = &mut self.body {
                    r.push_part(data)
                        .and_then(|()| r.skim_part())
                        .map_err(|e| codec_err(self.prefix, e))?;
                }
            }
            return Ok(());
        }
        while self.next_chunk().await?.is_some() {}
        Ok(())
    }

    /// Checks what was read against the manifest.
    fn finish(self) -> TablesResult<()> {
        let m = self.manifest;
        let read = match &self.body {
            Body::Csv(r) => r.read(),
            Body::Parquet(r) => r.read(),
        };
        let sized = m.data_format != ArchiveFormat::Csv || read.content_bytes == m.csv_bytes;
        if !sized || read.rows != m.rows || read.content_hash != m.blake3 {
            return Err(archive_err(
                self.prefix,
                format!(
                    "read back {} rows, {} bytes of CSV, blake3 {}; expected {} rows, {} bytes, blake3 {}",
                    read.rows, read.content_bytes, read.content_hash, m.rows, m.csv_bytes, m.blake3
                ),
            ));
        }
        let stored = self.stored.finalize().to_hex().to_string();
        if self.stored_bytes != m.stored_bytes
            || m.stored_blake3.as_ref().is_some_and(|h| *h != stored)
        {
            return Err(archive_err(
                self.prefix,
                format!(
                    "the stored parts are {} bytes, blake3 {stored}; the manifest says {} bytes, blake3 {}",
                    self.stored_bytes,
                    m.stored_bytes,
                    m.stored_blake3.as_deref().unwrap_or("-")
                ),
            ));
        }
        Ok(())
    }
}

/// Reads the archive back and checks it against its manifest.
pub async fn verify(
    store: &DynStore,
    prefix: &str,
    manifest: &ArchiveManifest,
) -> TablesResult<()> {
    let mut reader = ArchiveReader::new(store, prefix, manifest)?;
    reader.skim().await?;
    reader.finish()
}

/// Reads an archive's manifest; `archive` is its prefix or the manifest's key.
pub async fn read_manifest(
    store: &DynStore,
    archive: &str,
) -> TablesResult<(String, ArchiveManifest)> {
    let prefix = archive
        .trim_end_matches('/')
        .trim_end_matches(MANIFEST)
        .trim_end_matches('/')
        .to_string();
    let key = format!("{prefix}/{MANIFEST}");
    let data = store.get(&key).await.map_err(|e| {
        if e.is_not_found() {
            archive_err(
                &prefix,
                format!(
                    "no {MANIFEST} in {}: not an archive, or an incomplete one",
                    store.describe()
                ),
            )
        } else {
            TablesError::Store(e)
        }
    })?;
    let manifest: ArchiveManifest = serde_json::from_slice(&data)
        .map_err(|e| archive_err(&prefix, format!("unreadable {MANIFEST}: {e}")))?;
    if manifest.format != FORMAT || manifest.version != manifest_version(manifest.data_format) {
        return Err(archive_err(
            &prefix,
            format!(
                "format {} version {} is not one this strata reads",
                manifest.format, manifest.version
            ),
        ));
    }
    Ok((prefix, manifest))
}

/// Every archive (complete ones: those with a manifest) under `tables/`.
pub async fn list_archives(store: &DynStore) -> TablesResult<Vec<String>> {
    Ok(store
        .list("tables/")
        .await?
        .into_iter()
        .filter_map(|o| {
            o.key
                .strip_suffix(&format!("/{MANIFEST}"))
                .map(str::to_string)
        })
        .collect())
}

/// What a load did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Loaded {
    /// Rows loaded.
    pub rows: u64,
    /// Where the rows went: `into`, or its partition of the archived range.
    #[serde(flatten)]
    pub target: load_target::Target,
}

/// What `strata load` reports: the archive, how many rows went where, and whether the
/// archived partition was recreated under the table asked for. Its JSON is the `--json`
/// output of `strata load` (fields in this order).
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadReport {
    /// The archive: its key prefix in the storage, as given.
    pub archive: String,
    /// Whether the archived partition was recreated under the table asked for.
    pub created_partition: bool,
    /// The table the rows went into: the one asked for, or its recreated partition.
    pub into: String,
    /// Rows loaded.
    pub rows: u64,
    /// The table asked for (`--into`).
    #[serde(skip)]
    pub asked: String,
}

impl LoadReport {
    /// ` (partition P of T recreated)` when the load recreated the partition, else empty.
    pub fn recreated(&self) -> String {
        if self.created_partition {
            format!(" (partition {} of {} recreated)", self.into, self.asked)
        } else {
            String::new()
        }
    }
}

/// Loads an archive into `into` (which must have the archived columns) with COPY, in one
/// transaction: a damaged archive loads nothing. Into a partitioned table, the partition
/// of the archived range is recreated when absent; a target that already holds rows of
/// that range is refused unless `options` say to append (see [`load_target`]).
pub async fn load(
    client: &mut Client,
    store: &DynStore,
    archive: &str,
    into: &TableName,
    options: load_target::LoadOptions,
) -> TablesResult<Loaded> {
    let (prefix, manifest) = read_manifest(store, archive).await?;
    let shape = crate::discover::discover(client, into).await?;
    for column in &manifest.columns {
        if shape.column(&column.name).is_none() {
            return Err(TablesError::MissingColumn {
                table: into.clone(),
                column: column.name.clone(),
            });
        }
    }
    let names: Vec<String> = manifest.columns.iter().map(|c| c.name.clone()).collect();
    let what = format!("loading {prefix} into {into}");
    let tx = client
        .transaction()
        .await
        .map_err(|e| TablesError::db(&what, &e))?;
    let target = load_target::prepare(&tx, &shape, &manifest, options).await?;
    let copy = match manifest.data_format {
        ArchiveFormat::Csv => sql::copy_in(&target.table, &names),
        ArchiveFormat::Parquet => sql::copy_in_text(&target.table, &names),
    };
    let sink = tx
        .copy_in::<_, Bytes>(&copy)
        .await
        .map_err(|e| TablesError::db(&what, &e))?;
    futures::pin_mut!(sink);
    let mut reader = ArchiveReader::new(store, &prefix, &manifest)?;
    while let Some(chunk) = reader.next_chunk().await? {
        sink.send(chunk)
            .await
            .map_err(|e| TablesError::db(&what, &e))?;
    }
    // A damaged archive fails here, before the COPY ends: the transaction rolls back.
    reader.finish()?;
    let rows = sink
        .as_mut()
        .finish()
        .await
        .map_err(|e| TablesError::db(&what, &e))?;
    if rows != manifest.rows {
        return Err(archive_err(
            &prefix,
            format!("loaded {rows} rows, the archive holds {}", manifest.rows),
        ));
    }
    // A recreated partition joins its parent only now, holding the rows.
    load_target::attach(&tx, &target, &manifest).await?;
    tx.commit().await.map_err(|e| TablesError::db(&what, &e))?;
    Ok(Loaded { rows, target })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_be_steered_by_names() {
        let key = archive_prefix(
            &TableName::new("metrics", "raw"),
            &TableName::new("metrics", "../x/ü \"y\""),
        );
        assert_eq!(
            key,
            "tables/metrics/raw/metrics.%2E%2E%2Fx%2F%C3%BC%20%22y%22"
        );
        assert!(strata_store::validate_key(&format!("{key}/{MANIFEST}")).is_ok());
    }

    #[test]
    fn manifests_of_earlier_strata_read_as_csv() {
        let old = r#"{"format":"strata-table-archive","version":1,
            "table":{"schema":"m","name":"raw"},"partition":{"schema":"m","name":"raw_1"},
            "bound":"b","columns":[{"name":"ts","type":"date"}],"rows":3,"csv_bytes":10,
            "stored_bytes":9,"blake3":"00","compression":"zstd",
            "parts":["data.csv.zst.000000"],"created_at":"2026-01-01T00:00:00Z"}"#;
        let manifest: ArchiveManifest = serde_json::from_str(old).unwrap();
        assert_eq!(manifest.data_format, ArchiveFormat::Csv);
        assert_eq!(manifest.stored_blake3, None);
        assert_eq!(part_name(ArchiveFormat::Parquet, 7), "data.000007.parquet");
        assert_eq!(part_name(ArchiveFormat::Csv, 7), "data.csv.zst.000007");
    }

    /// Parts through the checker as a storage would return them.
    fn check(parts: Vec<(Vec<u8>, Vec<u8>)>, decode: Option<Vec<String>>) -> CodecResult<Checked> {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let checker = std::thread::spawn(move || check_parts(rx, decode));
        for (written, stored) in parts {
            if tx
                .blocking_send(ReadBack {
                    written: Bytes::from(written),
                    stored: Bytes::from(stored),
                })
                .is_err()
            {
                break;
            }
        }
        drop(tx);
        checker.join().unwrap()
    }

    #[test]
    fn the_read_back_must_be_the_bytes_written() {
        let parts = vec![
            (b"abc".to_vec(), b"abc".to_vec()),
            (b"de".to_vec(), b"de".to_vec()),
        ];
        let checked = check(parts, None).unwrap();
        assert_eq!((checked.parts, checked.bytes), (2, 5));
        assert_eq!(
            checked.stored_hash,
            blake3::hash(b"abcde").to_hex().to_string()
        );
        assert!(checked.values.is_none());
        for stored in [&b"abx"[..], b"ab", b"abcd", b""] {
            let err = check(vec![(b"abc".to_vec(), stored.to_vec())], None).unwrap_err();
            assert!(
                matches!(err, CodecError::ReadBackDiffers { part: 0, .. }),
                "{err}"
            );
        }
    }

    #[test]
    fn parquet_parts_are_decoded_on_read_back() {
        use values::{Column, Kind, Values};
        let named = [("n".to_string(), Kind::Int64)];
        let mut writer = parquet_write::PartWriter::new(&named, &[], 1 << 20).unwrap();
        let columns = [Column {
            kind: Kind::Int64,
            defs: vec![1, 0, 1],
            values: Values::Int64(vec![4, 2]),
        }];
        writer.write_row_group(&columns).unwrap();
        let part = writer.finish().unwrap().unwrap();
        let mut hash = values::ContentHash::new(&[Kind::Int64]);
        hash.add(&columns).unwrap();
        let names = Some(vec!["n".to_string()]);
        let checked = check(vec![(part.clone(), part.clone())], names.clone()).unwrap();
        let values = checked.values.unwrap();
        assert_eq!(values.rows, 3);
        assert_eq!(values.content_hash, hash.finish());
        // Not Parquet at all (written and stored alike): refused.
        assert!(check(vec![(b"x".to_vec(), b"x".to_vec())], names).is_err());
    }
}
