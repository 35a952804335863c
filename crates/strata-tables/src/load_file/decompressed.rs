//! Compressed files (`.gz`, `.zst`), read as a stream: the rows' readers see the
//! decompressed bytes, and progress counts the compressed bytes read, so it stays measured
//! against the file's size. A damaged or cut stream is an error naming the file, the
//! stream and the byte where the decoder found it, never a short load: the decoders
//! check the stream's own checksums and ends.
//!
//! A damaged stream can decompress to wrong bytes for a long while before its checksum
//! (at the end of a gzip member or a zstd frame) tells: a flipped bit makes rows that are
//! ragged or hold values no column takes. So before a row is blamed, the rest of the
//! stream is read ([`Stream::damage`]): when it does not decompress whole, the damage is
//! the error, not the row.

use super::error::{LoadFileError, LoadFileResult};
use super::format::Compression;
use super::row::{Row, RowReader};
use std::io::{BufReader, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// The largest zstd window accepted, as a power of two: 128 MiB.
const ZSTD_WINDOW_LOG_MAX: u32 = 27;
/// The compressed bytes read at once.
const READ_BYTES: usize = 128 << 10;

/// A compressed file being read: the compressed bytes read so far, and its decoder, which
/// the rows' reader reads through and [`Stream::damage`] can read on to the end.
#[derive(Clone)]
pub struct Stream {
    consumed: Arc<AtomicU64>,
    decoder: Arc<Mutex<Decoder>>,
}

/// `raw` decompressed by `compression`, and the stream (`None` when the file is not
/// compressed: the row reader counts its own bytes then).
pub fn open(
    raw: Box<dyn Read + Send>,
    compression: Compression,
    file: &str,
) -> LoadFileResult<(Box<dyn Read + Send>, Option<Stream>)> {
    if compression == Compression::None {
        return Ok((raw, None));
    }
    let consumed = Arc::new(AtomicU64::new(0));
    let counting = BufReader::with_capacity(
        READ_BYTES,
        Counting {
            inner: raw,
            consumed: consumed.clone(),
            failed: false,
        },
    );
    let inner = match compression {
        Compression::Gzip => Inner::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(counting))),
        Compression::Zstd => {
            let zstd_error = |e: std::io::Error| LoadFileError::Read {
                file: file.to_string(),
                why: format!("zstd: {e}"),
            };
            let mut decoder =
                zstd::stream::read::Decoder::with_buffer(counting).map_err(zstd_error)?;
            // The window a frame declares is memory the decoder takes: at most 128 MiB
            // (`zstd --long`'s), whatever a hostile file claims.
            decoder
                .window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(zstd_error)?;
            Inner::Zstd(Box::new(decoder))
        }
        Compression::None => unreachable!("returned above"),
    };
    let stream = Stream {
        consumed: consumed.clone(),
        decoder: Arc::new(Mutex::new(Decoder {
            inner,
            consumed,
            failed: None,
        })),
    };
    Ok((Box::new(stream.clone()), Some(stream)))
}

impl Stream {
    /// Compressed bytes read so far.
    pub fn consumed(&self) -> u64 {
        self.consumed.load(Ordering::Relaxed)
    }

    /// Reads the stream on to its end: the error when it is damaged or cut short (also
    /// when that was found before), `None` when it decompresses whole or reading it
    /// failed for another reason (the storage, the disk: that is not the file's fault).
    pub fn damage(&self, file: &str) -> Option<LoadFileError> {
        let mut decoder = self.decoder.lock().unwrap_or_else(PoisonError::into_inner);
        let mut scratch = vec![0u8; 64 << 10];
        loop {
            match decoder.read(&mut scratch) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        decoder
            .failed
            .as_ref()
            .filter(|f| f.damage)
            .map(|f| LoadFileError::Damaged {
                file: file.to_string(),
                why: f.message.clone(),
            })
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.decoder
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .read(buf)
    }
}

/// The decoder of a stream, and the error it stopped at: read again, it gives that error
/// again (flate2's gzip decoder would say the stream ended).
struct Decoder {
    inner: Inner,
    consumed: Arc<AtomicU64>,
    failed: Option<Failure>,
}

enum Inner {
    Gzip(Box<flate2::bufread::MultiGzDecoder<BufReader<Counting>>>),
    Zstd(Box<zstd::stream::read::Decoder<'static, BufReader<Counting>>>),
}

struct Failure {
    kind: std::io::ErrorKind,
    message: String,
    /// The stream's fault (not the reading of its bytes).
    damage: bool,
}

impl Decoder {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(failed) = &self.failed {
            return Err(std::io::Error::new(failed.kind, failed.message.clone()));
        }
        let result = match &mut self.inner {
            Inner::Gzip(gz) => gz.read(buf),
            Inner::Zstd(zst) => zst.read(buf),
        };
        result.map_err(|e| {
            let failure = self.failure(e);
            let err = std::io::Error::new(failure.kind, failure.message.clone());
            self.failed = Some(failure);
            err
        })
    }

    /// The compressed input under the decoder.
    fn source(&self) -> &BufReader<Counting> {
        match &self.inner {
            Inner::Gzip(gz) => gz.get_ref(),
            Inner::Zstd(zst) => zst.get_ref(),
        }
    }

    /// What `err` of the decoder means, in words: the stream, what is wrong with it (as
    /// the decoder says it), and the byte of the file the decoder had read to.
    fn failure(&self, err: std::io::Error) -> Failure {
        let source = self.source();
        if source.get_ref().failed {
            // Reading the bytes failed, not decoding them: said as it is.
            return Failure {
                kind: err.kind(),
                message: err.to_string(),
                damage: false,
            };
        }
        let at = self
            .consumed
            .load(Ordering::Relaxed)
            .saturating_sub(source.buffer().len() as u64);
        let said = err.to_string();
        let (name, what) = match self.inner {
            Inner::Gzip(_) => (
                "gzip",
                match said.as_str() {
                    "corrupt deflate stream" => "invalid deflate data".to_string(),
                    "corrupt gzip stream does not have a matching checksum" => {
                        "CRC-32 or length mismatch: what it decompresses to is not what was \
                         compressed"
                            .to_string()
                    }
                    _ => said,
                },
            ),
            Inner::Zstd(_) => ("zstd", said),
        };
        let message = if err.kind() == std::io::ErrorKind::UnexpectedEof {
            format!("the {name} stream is cut short ({what}): the file ends at byte {at}, inside it; nothing loaded")
        } else if what.contains("too much memory") {
            format!(
                "the {name} stream asks for a window of more than {} MiB ({what}): refused; nothing loaded",
                1u64 << (ZSTD_WINDOW_LOG_MAX - 20)
            )
        } else {
            format!("the {name} stream is damaged ({what}), found at byte {at}; nothing loaded")
        };
        Failure {
            kind: err.kind(),
            message,
            damage: true,
        }
    }
}

/// `rows`, reporting the compressed bytes read as its progress and checking the stream
/// before blaming a row, when there is a stream.
pub fn counted(rows: Box<dyn RowReader>, stream: Option<Stream>, file: &str) -> Box<dyn RowReader> {
    match stream {
        None => rows,
        Some(stream) => Box::new(Counted {
            rows,
            stream,
            file: file.to_string(),
        }),
    }
}

/// A reader that counts what passes through it, and tells when reading failed.
struct Counting {
    inner: Box<dyn Read + Send>,
    consumed: Arc<AtomicU64>,
    failed: bool,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf).inspect_err(|e| {
            self.failed = e.kind() != std::io::ErrorKind::Interrupted;
        })?;
        self.consumed.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A row reader of a compressed stream: its progress is the compressed bytes read.
struct Counted {
    rows: Box<dyn RowReader>,
    stream: Stream,
    file: String,
}

impl RowReader for Counted {
    fn columns(&self) -> &[String] {
        self.rows.columns()
    }

    fn next_row(&mut self, row: &mut Row) -> LoadFileResult<bool> {
        self.rows.next_row(row)
    }

    fn bytes_read(&self) -> u64 {
        self.stream.consumed()
    }

    fn damage(&mut self) -> Option<LoadFileError> {
        self.stream.damage(&self.file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read_all(bytes: Vec<u8>, compression: Compression) -> std::io::Result<(Vec<u8>, u64)> {
        let (mut reader, stream) =
            open(Box::new(std::io::Cursor::new(bytes)), compression, "f").unwrap();
        let mut out = Vec::new();
        reader.read_to_end(&mut out)?;
        Ok((out, stream.unwrap().consumed()))
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn gzip_members_and_zstd_frames_read_whole_and_count_compressed_bytes() {
        let data = b"id,note\n1,a\n2,b\n".repeat(1000);
        // Two gzip members back to back, as `cat a.gz b.gz` makes.
        let mut two = gzip(&data);
        two.extend(gzip(&data));
        let (out, consumed) = read_all(two.clone(), Compression::Gzip).unwrap();
        assert_eq!(out, [data.clone(), data.clone()].concat());
        assert_eq!(consumed, two.len() as u64);
        let mut frames = zstd::encode_all(&data[..], 3).unwrap();
        frames.extend(zstd::encode_all(&data[..], 1).unwrap());
        let (out, consumed) = read_all(frames.clone(), Compression::Zstd).unwrap();
        assert_eq!(out, [data.clone(), data].concat());
        assert_eq!(consumed, frames.len() as u64);
    }

    #[test]
    fn a_cut_or_damaged_stream_is_an_error_not_a_short_read() {
        let data = b"x".repeat(100_000);
        let gz = gzip(&data);
        assert!(read_all(gz[..gz.len() / 2].to_vec(), Compression::Gzip).is_err());
        let mut flipped = gz.clone();
        let at = flipped.len() - 6; // inside the trailer's checksum
        flipped[at] ^= 0xff;
        assert!(read_all(flipped, Compression::Gzip).is_err());
        let zst = zstd::encode_all(&data[..], 3).unwrap();
        assert!(read_all(zst[..zst.len() - 3].to_vec(), Compression::Zstd).is_err());
    }

    /// A CSV of `rows` rows of four columns, as a CSV of numbers and words is.
    fn csv(rows: usize) -> Vec<u8> {
        let mut csv = b"id,name,qty,note\n".to_vec();
        for i in 0..rows {
            let line = format!("{i},item {},{},note {}\n", i * 7 % 1000, i % 97, i * 31);
            csv.extend_from_slice(line.as_bytes());
        }
        csv
    }

    /// Loads (counts) the CSV in `bytes` as a load does, its stream checked before a row
    /// is blamed; or with `checked` false as loads did before, the rows' reader straight
    /// on the decoder.
    fn count(bytes: &[u8], compression: Compression, checked: bool) -> LoadFileResult<u64> {
        use super::super::csv_rows::CsvRows;
        use super::super::pipeline::{run, Count, Counters, Window};
        let (input, stream) = open(
            Box::new(std::io::Cursor::new(bytes.to_vec())),
            compression,
            "f.csv.gz",
        )?;
        let stream = stream.filter(|_| checked);
        let rows = match CsvRows::open(input, "f.csv.gz", true, b',') {
            Ok(rows) => rows,
            Err(e) => return Err(stream.and_then(|s| s.damage("f.csv.gz")).unwrap_or(e)),
        };
        let mut reader: Box<dyn RowReader> = match stream {
            Some(stream) => counted(Box::new(rows), Some(stream), "f.csv.gz"),
            None => Box::new(rows),
        };
        run(
            &mut *reader,
            "f.csv.gz",
            &Window::default(),
            &mut Count,
            &Counters::default(),
        )
    }

    #[test]
    fn a_flipped_byte_is_named_as_the_streams_damage_not_as_a_bad_row() {
        let data = csv(40_000);
        let gz = gzip(&data);
        let (mut bad_rows, mut checksum, mut invalid) = (0, 0, 0);
        for at in (gz.len() / 2..gz.len() / 2 + 400).step_by(4) {
            let mut flipped = gz.clone();
            flipped[at] ^= 0x10;
            let before = count(&flipped, Compression::Gzip, false);
            let err = count(&flipped, Compression::Gzip, true).unwrap_err();
            let said = err.to_string();
            assert!(matches!(err, LoadFileError::Damaged { .. }), "{said}");
            assert!(
                said.starts_with("f.csv.gz: the gzip stream is damaged (")
                    && said.ends_with("; nothing loaded"),
                "{said}"
            );
            // The byte found at: the damage, or the member's checksum after it.
            let found: u64 = said
                .split("found at byte ")
                .nth(1)
                .and_then(|r| r.split(';').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{said}"));
            assert!(
                found >= at as u64 && found <= gz.len() as u64,
                "{at}: {said}"
            );
            if matches!(
                before,
                Err(LoadFileError::BadRow { .. } | LoadFileError::BadValue { .. })
            ) {
                // What loads said before: a bad row, of bytes the damage made.
                bad_rows += 1;
            }
            if said.contains("CRC-32 or length mismatch") {
                checksum += 1;
                assert_eq!(found, gz.len() as u64, "{said}");
            }
            if said.contains("invalid deflate data") {
                invalid += 1;
            }
        }
        assert!(
            bad_rows > 0 && checksum > 0 && invalid > 0,
            "{bad_rows} bad rows, {checksum} checksums, {invalid} invalid"
        );
        assert_eq!(count(&gz, Compression::Gzip, true).unwrap(), 40_000);

        // zstd with its frame checksum (as the zstd tool writes): the same.
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        encoder.include_checksum(true).unwrap();
        encoder.write_all(&data).unwrap();
        let zst = encoder.finish().unwrap();
        let mut zstd_bad_rows = 0;
        for at in (zst.len() / 2..zst.len() / 2 + 200).step_by(8) {
            let mut flipped = zst.clone();
            flipped[at] ^= 0x10;
            if matches!(
                count(&flipped, Compression::Zstd, false),
                Err(LoadFileError::BadRow { .. } | LoadFileError::BadValue { .. })
            ) {
                zstd_bad_rows += 1;
            }
            let said = count(&flipped, Compression::Zstd, true)
                .unwrap_err()
                .to_string();
            assert!(
                said.starts_with("f.csv.gz: the zstd stream is damaged (")
                    && said.contains("), found at byte "),
                "{said}"
            );
        }
        assert!(zstd_bad_rows > 0);
        assert_eq!(count(&zst, Compression::Zstd, true).unwrap(), 40_000);
    }

    #[test]
    fn a_damaged_header_and_a_cut_stream_are_named_too() {
        // The damage in the first block: the header itself comes out wrong, or not at all.
        let gz = gzip(&csv(5000));
        let mut flipped = gz.clone();
        flipped[14] ^= 0x01;
        let said = count(&flipped, Compression::Gzip, true)
            .unwrap_err()
            .to_string();
        assert!(said.contains("the gzip stream is damaged ("), "{said}");
        let said = count(&gz[..gz.len() / 2], Compression::Gzip, true)
            .unwrap_err()
            .to_string();
        assert!(
            said.contains(&format!(
                "the gzip stream is cut short (incomplete deflate stream): the file ends at byte {}",
                gz.len() / 2
            )),
            "{said}"
        );
        let zst = zstd::encode_all(&csv(5000)[..], 3).unwrap();
        let said = count(&zst[..zst.len() - 3], Compression::Zstd, true)
            .unwrap_err()
            .to_string();
        assert!(said.contains("the zstd stream is cut short ("), "{said}");
    }

    #[test]
    fn a_source_that_fails_is_not_called_damage() {
        struct Failing(std::io::Cursor<Vec<u8>>);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(1000);
                match self.0.read(&mut buf[..n])? {
                    0 => Err(std::io::Error::other("the storage went away")),
                    n => Ok(n),
                }
            }
        }
        let gz = gzip(&csv(5000));
        let cut = Failing(std::io::Cursor::new(gz[..gz.len() / 2].to_vec()));
        let (mut input, stream) = open(Box::new(cut), Compression::Gzip, "f").unwrap();
        let err = input.read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(err.to_string(), "the storage went away");
        assert!(stream.unwrap().damage("f").is_none());
    }

    #[test]
    fn a_zstd_frame_asking_for_a_window_past_the_bound_is_refused() {
        let data = b"y".repeat(1000);
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        encoder.long_distance_matching(true).unwrap();
        encoder.window_log(ZSTD_WINDOW_LOG_MAX + 1).unwrap();
        std::io::Write::write_all(&mut encoder, &data).unwrap();
        let big_window = encoder.finish().unwrap();
        let err = read_all(big_window, Compression::Zstd).unwrap_err();
        assert!(err.to_string().contains("too much memory"), "{err}");
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        encoder.window_log(ZSTD_WINDOW_LOG_MAX).unwrap();
        std::io::Write::write_all(&mut encoder, &data).unwrap();
        let (out, _) = read_all(encoder.finish().unwrap(), Compression::Zstd).unwrap();
        assert_eq!(out, data);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = read_all(bytes.clone(), Compression::Gzip);
            let _ = read_all(bytes, Compression::Zstd);
        }
    }
}
