//! zstd compression of blobs, with incompressible data stored raw.

use std::io;

/// Compressed output must save at least this share of the input to be kept; otherwise the
/// blob is stored raw and restores skip decompression.
const MIN_SAVING_PERCENT: usize = 3;

/// A compressed (or deliberately raw) blob body.
pub struct Compressed {
    /// The bytes to seal: a zstd frame, or the input itself when `compressed` is false.
    pub data: Vec<u8>,
    /// False when the data is stored raw.
    pub compressed: bool,
}

/// A reusable compressor: one per worker thread, so zstd contexts and their tables are
/// allocated once rather than for every blob.
pub struct BlobCompressor {
    main: Option<zstd::bulk::Compressor<'static>>,
    probe: Option<zstd::bulk::Compressor<'static>>,
}

impl BlobCompressor {
    /// A compressor at zstd `level`; level 0 disables compression.
    pub fn new(level: i32) -> Self {
        let make = |l| zstd::bulk::Compressor::new(l).ok();
        BlobCompressor {
            main: if level == 0 { None } else { make(level) },
            probe: if level == 0 { None } else { make(1) },
        }
    }

    /// Compresses `data`, falling back to raw when it does not pay.
    pub fn compress(&mut self, data: &[u8]) -> Compressed {
        let Some(main) = self.main.as_mut() else {
            return raw(data);
        };
        if data.len() < 64 || looks_incompressible(self.probe.as_mut(), data) {
            return raw(data);
        }
        match main.compress(data) {
            Ok(out) if out.len() * 100 <= data.len() * (100 - MIN_SAVING_PERCENT) => Compressed {
                data: out,
                compressed: true,
            },
            _ => raw(data),
        }
    }
}

/// Compresses `data` at zstd `level` with a one-off compressor (see [`BlobCompressor`]).
pub fn compress(data: &[u8], level: i32) -> Compressed {
    BlobCompressor::new(level).compress(data)
}

fn raw(data: &[u8]) -> Compressed {
    Compressed {
        data: data.to_vec(),
        compressed: false,
    }
}

/// A cheap test on a sample before paying for a full compression: random or already
/// compressed data (media, archives, encrypted files) does not compress at level 1 either.
fn looks_incompressible(probe: Option<&mut zstd::bulk::Compressor<'static>>, data: &[u8]) -> bool {
    const SAMPLE: usize = 16 * 1024;
    let Some(probe) = probe else { return false };
    if data.len() < 4 * SAMPLE {
        return false;
    }
    let mid = data.len() / 2;
    let sample = &data[mid - SAMPLE / 2..mid + SAMPLE / 2];
    match probe.compress(sample) {
        Ok(out) => out.len() * 100 > sample.len() * 99,
        Err(_) => false,
    }
}

/// Decompresses a blob whose raw length is known from the index.
pub fn decompress(data: &[u8], raw_len: usize) -> io::Result<Vec<u8>> {
    thread_local! {
        // One decompression context per thread, reused across blobs.
        static CONTEXT: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    let out = CONTEXT.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new()?);
        }
        slot.as_mut()
            .expect("just created")
            .decompress(data, raw_len)
    })?;
    if out.len() != raw_len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("decompressed {} bytes, expected {raw_len}", out.len()),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressible_data_is_compressed_and_restored() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 97).to_le_bytes())
            .collect();
        let c = compress(&data, 3);
        assert!(c.compressed);
        assert!(c.data.len() < data.len() / 4);
        assert_eq!(decompress(&c.data, data.len()).unwrap(), data);
    }

    #[test]
    fn random_data_is_stored_raw() {
        let mut data = vec![0u8; 200_000];
        getrandom::getrandom(&mut data).unwrap();
        let c = compress(&data, 3);
        assert!(!c.compressed);
        assert_eq!(c.data, data);
    }

    #[test]
    fn level_zero_disables_compression() {
        let data = vec![7u8; 10_000];
        assert!(!compress(&data, 0).compressed);
    }

    #[test]
    fn decompress_checks_the_length() {
        let data = vec![1u8; 10_000];
        let c = compress(&data, 3);
        assert!(decompress(&c.data, 9_999).is_err());
    }
}
