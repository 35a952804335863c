//! CSV archives: `COPY ... (FORMAT csv, HEADER)` hashed, counted and compressed into one
//! zstd stream cut into parts, and that stream read back into CSV for loading.

use super::{CodecError, CodecResult, Encoded};
use bytes::Bytes;
use std::io::Write;

/// zstd level: 3 is zstd's default, fast enough to keep up with COPY.
const ZSTD_LEVEL: i32 = 3;
/// How much compressed data is decompressed at once when reading.
const READ_SLICE: usize = 256 << 10;

/// Counts CSV records across chunk boundaries: newlines outside quoted fields.
#[derive(Debug, Default)]
pub struct CsvRecords {
    quoted: bool,
    records: u64,
}

impl CsvRecords {
    pub fn feed(&mut self, data: &[u8]) {
        for at in memchr::memchr2_iter(b'"', b'\n', data) {
            if data[at] == b'"' {
                self.quoted = !self.quoted;
            } else if !self.quoted {
                self.records += 1;
            }
        }
    }

    /// Whether the data so far ends inside a quoted field (a cut-off export).
    pub fn in_quotes(&self) -> bool {
        self.quoted
    }

    /// Data rows (the header is not one).
    pub fn rows(&self) -> u64 {
        self.records.saturating_sub(1)
    }
}

/// Hashes, counts and compresses the CSV chunks, handing out parts of about
/// `part_bytes` (the last one possibly empty, so every archive has a part).
pub fn encode(
    mut chunks: tokio::sync::mpsc::Receiver<Bytes>,
    parts: tokio::sync::mpsc::Sender<Vec<u8>>,
    part_bytes: usize,
) -> CodecResult<Encoded> {
    let zstd_err = CodecError::Zstd;
    // Room for a whole part and the block that overflows it, so the buffer never grows
    // by copying.
    let fresh = || Vec::with_capacity(part_bytes + (part_bytes >> 2));
    let mut encoder = zstd::stream::write::Encoder::new(fresh(), ZSTD_LEVEL).map_err(zstd_err)?;
    // One worker thread, as `zstd -T1` does: the compression runs beside this thread's
    // hashing and counting, and on whole jobs rather than a wrapping window (the
    // single-threaded stream's extDict path costs about 13% more CPU on this data).
    encoder.multithread(1).map_err(zstd_err)?;
    // zstd's own checksum of the content, so `zstd -t` checks a part set on its own.
    encoder.include_checksum(true).map_err(zstd_err)?;
    let mut hasher = blake3::Hasher::new();
    let mut records = CsvRecords::default();
    let mut csv_bytes = 0u64;
    while let Some(chunk) = chunks.blocking_recv() {
        hasher.update(&chunk);
        records.feed(&chunk);
        csv_bytes += chunk.len() as u64;
        encoder.write_all(&chunk).map_err(zstd_err)?;
        if encoder.get_ref().len() >= part_bytes {
            let data = std::mem::replace(encoder.get_mut(), fresh());
            parts.blocking_send(data).map_err(|_| CodecError::Stopped)?;
        }
    }
    let rest = encoder.finish().map_err(zstd_err)?;
    parts.blocking_send(rest).map_err(|_| CodecError::Stopped)?;
    if records.in_quotes() {
        return Err(CodecError::CutShort);
    }
    Ok(Encoded {
        rows: records.rows(),
        content_bytes: csv_bytes,
        content_hash: hasher.finalize().to_hex().to_string(),
    })
}

/// Decompresses the parts of a CSV archive, in order, in bounded slices, hashing and
/// counting the CSV it gives.
pub struct CsvReader {
    current: Bytes,
    decoder: zstd::stream::write::Decoder<'static, Vec<u8>>,
    hasher: blake3::Hasher,
    records: CsvRecords,
    csv_bytes: u64,
    flushed: bool,
}

impl CsvReader {
    pub fn new() -> CodecResult<CsvReader> {
        Ok(CsvReader {
            current: Bytes::new(),
            decoder: zstd::stream::write::Decoder::new(Vec::new()).map_err(CodecError::Zstd)?,
            hasher: blake3::Hasher::new(),
            records: CsvRecords::default(),
            csv_bytes: 0,
            flushed: false,
        })
    }

    /// The next part of the archive.
    pub fn push_part(&mut self, part: Bytes) {
        self.current = part;
    }

    /// The next piece of CSV; `None` when the current part is used up.
    pub fn next_chunk(&mut self) -> CodecResult<Option<Bytes>> {
        while !self.current.is_empty() {
            let slice = self.current.split_to(self.current.len().min(READ_SLICE));
            self.decoder
                .write_all(&slice)
                .map_err(CodecError::Decompress)?;
            if let Some(out) = self.take() {
                return Ok(Some(out));
            }
        }
        Ok(None)
    }

    /// The last piece of CSV, after the last part.
    pub fn end(&mut self) -> CodecResult<Option<Bytes>> {
        if self.flushed {
            return Ok(None);
        }
        self.flushed = true;
        self.decoder.flush().map_err(CodecError::Zstd)?;
        Ok(self.take())
    }

    fn take(&mut self) -> Option<Bytes> {
        let out = std::mem::take(self.decoder.get_mut());
        if out.is_empty() {
            return None;
        }
        self.hasher.update(&out);
        self.records.feed(&out);
        self.csv_bytes += out.len() as u64;
        Some(Bytes::from(out))
    }

    /// What was read: rows, CSV bytes and BLAKE3 of the CSV.
    pub fn read(&self) -> Encoded {
        Encoded {
            rows: self.records.rows(),
            content_bytes: self.csv_bytes,
            content_hash: self.hasher.finalize().to_hex().to_string(),
        }
    }
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
        let compressor = std::thread::spawn(move || encode(chunks_rx, parts_tx, 64 << 10));
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
        assert_eq!(out.rows, ROWS);
        assert_eq!(out.content_bytes, csv.len() as u64);
        assert_eq!(out.content_hash, blake3::hash(&csv).to_hex().to_string());

        // Reading the parts back gives the same CSV; a damaged part does not.
        let read = |parts: Vec<Vec<u8>>| -> CodecResult<(Vec<u8>, Encoded)> {
            let mut reader = CsvReader::new()?;
            let mut plain = Vec::new();
            for part in parts {
                reader.push_part(Bytes::from(part));
                while let Some(chunk) = reader.next_chunk()? {
                    plain.extend_from_slice(&chunk);
                }
            }
            if let Some(chunk) = reader.end()? {
                plain.extend_from_slice(&chunk);
            }
            Ok((plain, reader.read()))
        };
        let (plain, again) = read(parts.clone()).unwrap();
        assert_eq!(plain, csv);
        assert_eq!(again, out);
        let mut damaged = parts;
        let middle = damaged[1].len() / 2;
        damaged[1][middle] ^= 0x40;
        if let Ok((_, read)) = read(damaged) {
            assert_ne!(read.content_hash, out.content_hash);
        }
    }

    #[test]
    fn an_export_cut_inside_quotes_is_refused() {
        let (chunks_tx, chunks_rx) = tokio::sync::mpsc::channel(4);
        let (parts_tx, mut parts_rx) = tokio::sync::mpsc::channel(4);
        chunks_tx
            .blocking_send(Bytes::from_static(b"id,note\n1,\"open"))
            .unwrap();
        drop(chunks_tx);
        let err = encode(chunks_rx, parts_tx, 1 << 20).unwrap_err();
        assert!(matches!(err, CodecError::CutShort), "{err}");
        assert!(parts_rx.blocking_recv().is_some());
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
