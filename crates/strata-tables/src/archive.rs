//! Archives of partitions in object storage, and loading them back.
//!
//! A partition is exported with `COPY (SELECT ...) TO STDOUT (FORMAT csv, HEADER)` inside
//! one REPEATABLE READ snapshot, its rows counted and hashed and compressed with zstd as
//! it streams, and stored under `tables/<schema>/<table>/<partition>/`; each part is read
//! back from the storage and decompressed while the next one is written, so the check costs
//! little time of its own:
//!
//! - `data.csv.zst.000000`, `.000001`, ...: one zstd stream cut into parts of at most
//!   [`PART_BYTES`], because the storage interface stores whole objects; memory stays
//!   bounded by one part whatever the partition's size;
//! - `archive.json`: the [`ArchiveManifest`] (columns with their types, row count, size,
//!   BLAKE3 of the CSV, the parts), written only after the parts were read back and
//!   checked. An archive without it is incomplete.
//!
//! Only then is the partition dropped, in a transaction that locks it and counts its rows
//! again: a partition that received rows after the export is left alone (the run says so,
//! and the next run exports it again).

use crate::discover::Column;
use crate::error::{TablesError, TablesResult};
use crate::name::TableName;
use crate::sql;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use std::io::Write;
use strata_pg::tokio_postgres::IsolationLevel;
use strata_pg::Client;
use strata_store::DynStore;

/// How much CSV is handed to the compressor at once.
const BATCH_BYTES: usize = 256 << 10;
/// The largest stored part of an archive (compressed bytes).
pub const PART_BYTES: usize = 16 << 20;
/// zstd level: 3 is zstd's default, fast enough to keep up with COPY.
const ZSTD_LEVEL: i32 = 3;
const MANIFEST: &str = "archive.json";
const FORMAT: &str = "strata-table-archive";

/// What an archive holds, stored beside its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveManifest {
    pub format: String,
    pub version: u32,
    pub table: TableName,
    pub partition: TableName,
    /// The partition's bound when it was archived.
    pub bound: String,
    pub columns: Vec<Column>,
    pub rows: u64,
    /// Size of the CSV (uncompressed).
    pub csv_bytes: u64,
    /// Size stored (compressed).
    pub stored_bytes: u64,
    /// BLAKE3 of the CSV, hex.
    pub blake3: String,
    pub compression: String,
    pub parts: Vec<String>,
    pub created_at: String,
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

/// Counts CSV records across chunk boundaries: newlines outside quoted fields.
#[derive(Debug, Default)]
struct CsvRecords {
    quoted: bool,
    records: u64,
}

impl CsvRecords {
    fn feed(&mut self, data: &[u8]) {
        for at in memchr::memchr2_iter(b'"', b'\n', data) {
            if data[at] == b'"' {
                self.quoted = !self.quoted;
            } else if !self.quoted {
                self.records += 1;
            }
        }
    }

    /// Whether the data so far ends inside a quoted field (a cut-off export).
    fn in_quotes(&self) -> bool {
        self.quoted
    }

    /// Data rows (the header is not one).
    fn rows(&self) -> u64 {
        self.records.saturating_sub(1)
    }
}

fn archive_err(key: &str, why: impl Into<String>) -> TablesError {
    TablesError::Archive {
        key: key.to_string(),
        why: why.into(),
    }
}

/// Exports a partition, reads the archive back and checks it, then writes its manifest.
/// Does not drop anything. Running it again replaces the archive.
pub async fn export_partition(
    client: &mut Client,
    store: &DynStore,
    table: &TableName,
    partition: &TableName,
    bound: &str,
    columns: &[Column],
) -> TablesResult<ArchiveManifest> {
    let prefix = archive_prefix(table, partition);
    let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
    let what = format!("exporting {partition}");
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(|e| TablesError::db(&what, &e))?;
    // No count(*) first: the rows are counted in the CSV as it streams, and the drop
    // recounts the partition under its lock; an archive that lacks a row is never dropped
    // for. That saves a full scan of the partition.
    let stream = tx
        .copy_out(&sql::copy_out(partition, &names))
        .await
        .map_err(|e| TablesError::db(&what, &e))?;
    futures::pin_mut!(stream);
    // COPY's data arrives here; hashing, counting and zstd run on a blocking thread, and
    // the finished parts are stored by a third task, so the three overlap (as
    // `psql | zstd > file` does) and each hand-over is bounded.
    let (chunks_tx, chunks_rx) = tokio::sync::mpsc::channel::<Bytes>(32);
    let (parts_tx, parts_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1);
    let compressing = tokio::task::spawn_blocking({
        let prefix = prefix.clone();
        move || compress_parts(chunks_rx, parts_tx, PART_BYTES, &prefix)
    });
    // Each stored part is read back from the storage and decompressed, hashed and counted
    // on a thread of its own while the export goes on.
    let (check_tx, check_rx) = tokio::sync::mpsc::channel::<Bytes>(2);
    let checking = tokio::task::spawn_blocking({
        let prefix = prefix.clone();
        move || check_parts(check_rx, &prefix)
    });
    let storing = tokio::spawn(store_parts(
        store.clone(),
        prefix.clone(),
        parts_rx,
        check_tx,
    ));
    // COPY sends a message per row: they are gathered into batches, so the hand-over,
    // the hash and the compressor work on large pieces.
    let mut received = Ok(());
    let mut batch = bytes::BytesMut::with_capacity(BATCH_BYTES);
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => {
                batch.extend_from_slice(&chunk);
                if batch.len() >= BATCH_BYTES {
                    let full = batch.split().freeze();
                    batch.reserve(BATCH_BYTES);
                    if chunks_tx.send(full).await.is_err() {
                        break; // the compressor stopped: its error says why
                    }
                }
            }
            Err(e) => {
                received = Err(TablesError::db(&what, &e));
                break;
            }
        }
    }
    if received.is_ok() && !batch.is_empty() {
        let _ = chunks_tx.send(batch.freeze()).await;
    }
    drop(chunks_tx);
    let compressed = compressing
        .await
        .map_err(|e| archive_err(&prefix, format!("compression task: {e}")))?;
    let stored = storing
        .await
        .map_err(|e| archive_err(&prefix, format!("storing task: {e}")))?;
    let checked = checking
        .await
        .map_err(|e| archive_err(&prefix, format!("read-back task: {e}")))?;
    // The first failure is the cause: a compressor that stopped because storing did
    // only echoes it.
    received?;
    let (parts, stored_bytes) = stored?;
    let Compressed {
        hasher,
        records,
        csv_bytes,
    } = compressed?;
    let read_back = checked?;
    tx.commit().await.map_err(|e| TablesError::db(&what, &e))?;

    if records.in_quotes() {
        return Err(archive_err(
            &prefix,
            "the export ends inside a quoted field: it is cut short",
        ));
    }
    let rows = records.rows();
    let blake3 = hasher.finalize().to_hex().to_string();
    let read_hash = read_back.hasher.finalize().to_hex().to_string();
    if read_back.csv_bytes != csv_bytes || read_hash != blake3 {
        return Err(archive_err(
            &prefix,
            format!(
                "read back {} bytes of CSV, blake3 {read_hash}; wrote {csv_bytes} bytes, blake3 {blake3}",
                read_back.csv_bytes,
            ),
        ));
    }
    let manifest = ArchiveManifest {
        format: FORMAT.into(),
        version: 1,
        table: table.clone(),
        partition: partition.clone(),
        bound: bound.to_string(),
        columns: columns.to_vec(),
        rows,
        csv_bytes,
        stored_bytes,
        blake3,
        compression: "zstd".into(),
        parts,
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    // Parts of an earlier, longer export of the same partition are not part of this one.
    for object in store.list(&format!("{prefix}/")).await? {
        let name = object.key.rsplit('/').next().unwrap_or_default();
        if name != MANIFEST && !manifest.parts.iter().any(|p| p == name) {
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

/// What the compressor learnt of the CSV it compressed.
struct Compressed {
    hasher: blake3::Hasher,
    records: CsvRecords,
    csv_bytes: u64,
}

/// Hashes, counts and compresses the CSV chunks, handing out parts of about
/// `part_bytes` (the last one possibly empty, so every archive has a part).
fn compress_parts(
    mut chunks: tokio::sync::mpsc::Receiver<Bytes>,
    parts: tokio::sync::mpsc::Sender<Vec<u8>>,
    part_bytes: usize,
    prefix: &str,
) -> TablesResult<Compressed> {
    let zstd_err = |e: std::io::Error| archive_err(prefix, format!("zstd: {e}"));
    let mut encoder =
        zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL).map_err(zstd_err)?;
    // One worker thread, as `zstd -T1` does: the compression runs beside this thread's
    // hashing and counting, and on whole jobs rather than a wrapping window (the
    // single-threaded stream's extDict path costs about 13% more CPU on this data).
    encoder.multithread(1).map_err(zstd_err)?;
    let mut out = Compressed {
        hasher: blake3::Hasher::new(),
        records: CsvRecords::default(),
        csv_bytes: 0,
    };
    let stopped = || archive_err(prefix, "storing the archive stopped");
    while let Some(chunk) = chunks.blocking_recv() {
        out.hasher.update(&chunk);
        out.records.feed(&chunk);
        out.csv_bytes += chunk.len() as u64;
        encoder.write_all(&chunk).map_err(zstd_err)?;
        if encoder.get_ref().len() >= part_bytes {
            let data = std::mem::take(encoder.get_mut());
            parts.blocking_send(data).map_err(|_| stopped())?;
        }
    }
    let rest = encoder.finish().map_err(zstd_err)?;
    parts.blocking_send(rest).map_err(|_| stopped())?;
    Ok(out)
}

/// Stores the parts in order and hands what the storage returns for each to the checker;
/// returns their names and total size.
async fn store_parts(
    store: DynStore,
    prefix: String,
    mut incoming: tokio::sync::mpsc::Receiver<Vec<u8>>,
    check: tokio::sync::mpsc::Sender<Bytes>,
) -> TablesResult<(Vec<String>, u64)> {
    let mut parts = Vec::new();
    let mut bytes = 0;
    while let Some(data) = incoming.recv().await {
        bytes += data.len() as u64;
        put_part(&store, &prefix, &mut parts, data).await?;
        let name = parts.last().expect("a part was just stored");
        let stored = store.get(&format!("{prefix}/{name}")).await?;
        if check.send(stored).await.is_err() {
            break; // the checker stopped: its error says why
        }
    }
    Ok((parts, bytes))
}

/// What reading the stored parts back gave. (No row count: the same hash means the same
/// CSV, so the same rows, and counting again would cost a pass over every byte.)
struct ReadBack {
    hasher: blake3::Hasher,
    csv_bytes: u64,
}

/// Decompresses the parts as read back from the storage, in order, and hashes the CSV
/// they hold.
fn check_parts(
    mut parts: tokio::sync::mpsc::Receiver<Bytes>,
    prefix: &str,
) -> TablesResult<ReadBack> {
    let mut out = ReadBack {
        hasher: blake3::Hasher::new(),
        csv_bytes: 0,
    };
    let mut decoder = zstd::stream::write::Decoder::new(Vec::new())
        .map_err(|e| archive_err(prefix, format!("zstd: {e}")))?;
    let mut take = |decoder: &mut zstd::stream::write::Decoder<'static, Vec<u8>>| {
        let plain = std::mem::take(decoder.get_mut());
        out.hasher.update(&plain);
        out.csv_bytes += plain.len() as u64;
    };
    while let Some(part) = parts.blocking_recv() {
        for slice in part.chunks(1 << 20) {
            decoder.write_all(slice).map_err(|e| {
                archive_err(prefix, format!("a stored part does not decompress: {e}"))
            })?;
            take(&mut decoder);
        }
    }
    decoder
        .flush()
        .map_err(|e| archive_err(prefix, format!("zstd: {e}")))?;
    take(&mut decoder);
    Ok(out)
}

async fn put_part(
    store: &DynStore,
    prefix: &str,
    parts: &mut Vec<String>,
    data: Vec<u8>,
) -> TablesResult<()> {
    let name = format!("data.csv.zst.{:06}", parts.len());
    store
        .put(&format!("{prefix}/{name}"), Bytes::from(data))
        .await?;
    parts.push(name);
    Ok(())
}

/// Streams an archive's CSV out of the storage, one part at a time, decompressed in
/// bounded slices; [`ArchiveReader::finish`] checks size, row count and BLAKE3 against the
/// manifest.
struct ArchiveReader<'a> {
    store: &'a DynStore,
    prefix: &'a str,
    manifest: &'a ArchiveManifest,
    next_part: usize,
    current: Bytes,
    decoder: zstd::stream::write::Decoder<'static, Vec<u8>>,
    hasher: blake3::Hasher,
    records: CsvRecords,
    csv_bytes: u64,
    flushed: bool,
}

impl<'a> ArchiveReader<'a> {
    fn new(
        store: &'a DynStore,
        prefix: &'a str,
        manifest: &'a ArchiveManifest,
    ) -> TablesResult<Self> {
        Ok(ArchiveReader {
            store,
            prefix,
            manifest,
            next_part: 0,
            current: Bytes::new(),
            decoder: zstd::stream::write::Decoder::new(Vec::new())
                .map_err(|e| archive_err(prefix, format!("zstd: {e}")))?,
            hasher: blake3::Hasher::new(),
            records: CsvRecords::default(),
            csv_bytes: 0,
            flushed: false,
        })
    }

    /// The next piece of CSV, `None` at the end.
    async fn next_chunk(&mut self) -> TablesResult<Option<Bytes>> {
        loop {
            if self.current.is_empty() {
                if let Some(part) = self.manifest.parts.get(self.next_part) {
                    self.current = self.store.get(&format!("{}/{part}", self.prefix)).await?;
                    self.next_part += 1;
                    continue;
                }
                if self.flushed {
                    return Ok(None);
                }
                self.flushed = true;
                self.decoder
                    .flush()
                    .map_err(|e| archive_err(self.prefix, format!("zstd: {e}")))?;
            } else {
                let slice = self.current.split_to(self.current.len().min(256 << 10));
                self.decoder.write_all(&slice).map_err(|e| {
                    archive_err(self.prefix, format!("a part does not decompress: {e}"))
                })?;
            }
            let out = std::mem::take(self.decoder.get_mut());
            if !out.is_empty() {
                self.hasher.update(&out);
                self.records.feed(&out);
                self.csv_bytes += out.len() as u64;
                return Ok(Some(Bytes::from(out)));
            }
        }
    }

    /// Checks what was read against the manifest.
    fn finish(self) -> TablesResult<()> {
        let hash = self.hasher.finalize().to_hex().to_string();
        let m = self.manifest;
        if self.csv_bytes != m.csv_bytes || hash != m.blake3 || self.records.rows() != m.rows {
            return Err(archive_err(
                self.prefix,
                format!(
                    "read back {} bytes, {} rows, blake3 {hash}; expected {} bytes, {} rows, blake3 {}",
                    self.csv_bytes,
                    self.records.rows(),
                    m.csv_bytes,
                    m.rows,
                    m.blake3
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
    while reader.next_chunk().await?.is_some() {}
    reader.finish()
}

/// Drops an archived partition: locks it, checks it still holds exactly the archived rows,
/// detaches and drops it, all in one transaction.
pub async fn drop_archived(
    client: &mut Client,
    table: &TableName,
    partition: &TableName,
    rows: u64,
) -> TablesResult<()> {
    let what = format!("dropping archived {partition}");
    let tx = client
        .transaction()
        .await
        .map_err(|e| TablesError::db(&what, &e))?;
    tx.batch_execute(&sql::lock_for_removal(table, partition))
        .await
        .map_err(|e| TablesError::db(&what, &e))?;
    let now: i64 = tx
        .query_one(&sql::count_rows(partition), &[])
        .await
        .map_err(|e| TablesError::db(&what, &e))?
        .get(0);
    if u64::try_from(now).ok() != Some(rows) {
        return Err(TablesError::Archive {
            key: archive_prefix(table, partition),
            why: format!("{partition} now holds {now} rows, the archive {rows}: rows arrived after the export; not dropped (the next run archives it again)"),
        });
    }
    tx.batch_execute(&sql::detach(table, partition))
        .await
        .map_err(|e| TablesError::db(&what, &e))?;
    tx.batch_execute(&sql::drop_table(partition))
        .await
        .map_err(|e| TablesError::db(&what, &e))?;
    tx.commit().await.map_err(|e| TablesError::db(&what, &e))
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
    if manifest.format != FORMAT || manifest.version != 1 {
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

/// Loads an archive into `into` (which must have the archived columns) with COPY, in one
/// transaction: a damaged archive loads nothing.
pub async fn load(
    client: &mut Client,
    store: &DynStore,
    archive: &str,
    into: &TableName,
) -> TablesResult<u64> {
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
    let sink = tx
        .copy_in::<_, Bytes>(&sql::copy_in(into, &names))
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
    tx.commit().await.map_err(|e| TablesError::db(&what, &e))?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_parts_concatenate_to_the_csv_with_its_hash_and_rows() {
        // Enough hard-to-compress rows (about 20 MiB) that the compressor's jobs finish
        // and hand out parts while the CSV still streams in.
        const ROWS: u64 = 600_000;
        let mut csv = b"id,note\n".to_vec();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..ROWS {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            csv.extend_from_slice(format!("{i},\"line\nbreak {state:016x}\"\n").as_bytes());
        }
        let (chunks_tx, chunks_rx) = tokio::sync::mpsc::channel(4);
        let (parts_tx, mut parts_rx) = tokio::sync::mpsc::channel(1);
        let compressor =
            std::thread::spawn(move || compress_parts(chunks_rx, parts_tx, 64 << 10, "t"));
        let collector = std::thread::spawn(move || {
            let mut parts = Vec::new();
            while let Some(part) = parts_rx.blocking_recv() {
                parts.push(part);
            }
            parts
        });
        for piece in csv.chunks(64 << 10) {
            chunks_tx
                .blocking_send(Bytes::copy_from_slice(piece))
                .unwrap();
        }
        drop(chunks_tx);
        let out = compressor.join().unwrap().unwrap();
        let parts = collector.join().unwrap();
        assert!(parts.len() > 2, "{} parts", parts.len());
        let joined: Vec<u8> = parts.concat();
        assert_eq!(zstd::decode_all(&joined[..]).unwrap(), csv);
        assert_eq!(out.records.rows(), ROWS);
        assert_eq!(out.csv_bytes, csv.len() as u64);
        assert_eq!(out.hasher.finalize(), blake3::hash(&csv));

        // Reading the parts back gives the same CSV; a damaged part does not.
        let check = |parts: Vec<Vec<u8>>| {
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            let checker = std::thread::spawn(move || check_parts(rx, "t"));
            for part in parts {
                tx.blocking_send(Bytes::from(part)).unwrap();
            }
            drop(tx);
            checker.join().unwrap()
        };
        let read = check(parts.clone()).unwrap();
        assert_eq!(read.csv_bytes, csv.len() as u64);
        assert_eq!(read.hasher.finalize(), blake3::hash(&csv));
        let mut damaged = parts;
        let middle = damaged[1].len() / 2;
        damaged[1][middle] ^= 0x40;
        match check(damaged) {
            Err(_) => {}
            Ok(read) => assert_ne!(read.hasher.finalize(), blake3::hash(&csv)),
        }
    }

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
    fn csv_records_count_across_chunks_and_quotes() {
        let csv = b"id,note\n1,\"two\nlines\"\n2,\"a \"\"quoted\"\" word\"\n3,plain\n";
        for cut in 0..csv.len() {
            let mut records = CsvRecords::default();
            records.feed(&csv[..cut]);
            records.feed(&csv[cut..]);
            assert_eq!(records.rows(), 3, "cut at {cut}");
        }
    }
}
