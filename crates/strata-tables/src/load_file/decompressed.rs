//! Compressed files (`.gz`, `.zst`), read as a stream: the rows' readers see the
//! decompressed bytes, and progress counts the compressed bytes read, so it stays measured
//! against the file's size. A damaged or cut stream is a read error naming the file,
//! never a short load: the decoders check the stream's own checksums and ends.

use super::error::{LoadFileError, LoadFileResult};
use super::format::Compression;
use super::row::{Row, RowReader};
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The largest zstd window accepted, as a power of two: 128 MiB.
const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// Compressed bytes read so far.
pub type Consumed = Arc<AtomicU64>;

/// `raw` decompressed by `compression`, and the counter of `raw`'s bytes read (`None`
/// when the file is not compressed: the row reader counts its own bytes then).
pub fn open(
    raw: Box<dyn Read + Send>,
    compression: Compression,
    file: &str,
) -> LoadFileResult<(Box<dyn Read + Send>, Option<Consumed>)> {
    if compression == Compression::None {
        return Ok((raw, None));
    }
    let consumed = Consumed::default();
    let counting = Counting {
        inner: raw,
        consumed: consumed.clone(),
    };
    let reader: Box<dyn Read + Send> = match compression {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(counting)),
        Compression::Zstd => {
            let zstd_error = |e: std::io::Error| LoadFileError::Read {
                file: file.to_string(),
                why: format!("zstd: {e}"),
            };
            let mut decoder = zstd::stream::read::Decoder::new(counting).map_err(zstd_error)?;
            // The window a frame declares is memory the decoder takes: at most 128 MiB
            // (`zstd --long`'s), whatever a hostile file claims.
            decoder
                .window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(zstd_error)?;
            Box::new(decoder)
        }
        Compression::None => unreachable!("returned above"),
    };
    Ok((reader, Some(consumed)))
}

/// `rows`, reporting the compressed bytes read as its progress when there is a count.
pub fn counted(rows: Box<dyn RowReader>, consumed: Option<Consumed>) -> Box<dyn RowReader> {
    match consumed {
        None => rows,
        Some(consumed) => Box::new(Counted { rows, consumed }),
    }
}

/// A reader that counts what passes through it.
struct Counting {
    inner: Box<dyn Read + Send>,
    consumed: Consumed,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.consumed.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A row reader whose progress is the compressed bytes read.
struct Counted {
    rows: Box<dyn RowReader>,
    consumed: Consumed,
}

impl RowReader for Counted {
    fn columns(&self) -> &[String] {
        self.rows.columns()
    }

    fn next_row(&mut self, row: &mut Row) -> LoadFileResult<bool> {
        self.rows.next_row(row)
    }

    fn bytes_read(&self) -> u64 {
        self.consumed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read_all(bytes: Vec<u8>, compression: Compression) -> std::io::Result<(Vec<u8>, u64)> {
        let (mut reader, consumed) =
            open(Box::new(std::io::Cursor::new(bytes)), compression, "f").unwrap();
        let mut out = Vec::new();
        reader.read_to_end(&mut out)?;
        Ok((out, consumed.unwrap().load(Ordering::Relaxed)))
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
