//! zstd compression of blobs, with incompressible data stored raw, and small blobs
//! compressed with the repository's dictionary (see [`crate::dictionary`]).

use crate::dictionary::{frame_dictionary, Dictionaries, Dictionary, SMALL_BLOB};
use std::io;
use std::sync::Arc;
use zstd::zstd_safe::{CCtx, CDict, DCtx};

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
    level: i32,
    /// Small blobs go through the dictionary once the writer has one.
    dictionary: Option<WithDictionary>,
}

/// A compression context and a dictionary prepared at the level small blobs use.
struct WithDictionary {
    id: u32,
    context: CCtx<'static>,
    prepared: CDict<'static>,
}

/// The level small blobs are compressed at with a dictionary: one below the
/// repository's (levels 1 and below, zstd's fastest, stay as they are). Measured on
/// 32 KiB chunks of the benchmark set's page files, level 2 with a dictionary stores 7%
/// less than level 3 without one in 1.1x its time; level 3 with it stores 2.4% less again
/// but takes 1.8x the time.
pub fn dictionary_level(level: i32) -> i32 {
    if level > 1 {
        level - 1
    } else {
        level
    }
}

impl BlobCompressor {
    /// A compressor at zstd `level`; level 0 disables compression.
    pub fn new(level: i32) -> Self {
        let make = |l| zstd::bulk::Compressor::new(l).ok();
        BlobCompressor {
            main: if level == 0 { None } else { make(level) },
            probe: if level == 0 { None } else { make(1) },
            level,
            dictionary: None,
        }
    }

    /// Compresses small blobs with `dictionary` from now on (nothing changes at level 0,
    /// or when zstd cannot prepare it).
    pub fn use_dictionary(&mut self, dictionary: &Dictionary) {
        if self.main.is_none() || self.dictionary_id() == Some(dictionary.id()) {
            return;
        }
        let prepared = CDict::try_create(dictionary.raw(), dictionary_level(self.level));
        if let (Some(prepared), Some(context)) = (prepared, CCtx::try_create()) {
            self.dictionary = Some(WithDictionary {
                id: dictionary.id(),
                context,
                prepared,
            });
        }
    }

    /// The id of the dictionary small blobs are compressed with, if any.
    pub fn dictionary_id(&self) -> Option<u32> {
        self.dictionary.as_ref().map(|d| d.id)
    }

    /// Compresses `data`, falling back to raw when it does not pay.
    pub fn compress(&mut self, data: &[u8]) -> Compressed {
        let Some(main) = self.main.as_mut() else {
            return raw(data);
        };
        if data.len() < 64 || looks_incompressible(self.probe.as_mut(), data) {
            return raw(data);
        }
        let out = match self.dictionary.as_mut() {
            Some(with) if data.len() <= SMALL_BLOB => {
                let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(data.len()));
                with.context
                    .compress_using_cdict(&mut out, data, &with.prepared)
                    .map(|_| out)
                    .map_err(|code| zstd::zstd_safe::get_error_name(code))
            }
            _ => main.compress(data).map_err(|_| "zstd failed"),
        };
        match out {
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

/// Why a blob does not decompress.
#[derive(Debug, thiserror::Error)]
pub enum DecompressError {
    /// The frame names a dictionary the reader has not loaded (written since, or lost).
    #[error("compressed with dictionary {0:08x}, which is not loaded")]
    MissingDictionary(u32),
    /// The frame is damaged or does not give the expected length.
    #[error(transparent)]
    Invalid(#[from] io::Error),
}

/// Decompresses a blob whose raw length is known from the index, with the dictionary
/// its frame names, if it names one.
pub fn decompress(
    data: &[u8],
    raw_len: usize,
    dictionaries: &Dictionaries,
) -> Result<Vec<u8>, DecompressError> {
    thread_local! {
        // One decompression context per thread, reused across blobs.
        static CONTEXT: std::cell::RefCell<Option<DCtx<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    let dictionary: Option<&Arc<Dictionary>> = match frame_dictionary(data) {
        Some(id) => Some(
            dictionaries
                .get(id)
                .ok_or(DecompressError::MissingDictionary(id))?,
        ),
        None => None,
    };
    let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
    let out = CONTEXT.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(DCtx::try_create().ok_or_else(|| invalid("no zstd context".into()))?);
        }
        let context = slot.as_mut().expect("just created");
        // The output buffer is exactly the expected length: a frame that decompresses
        // to more fails in zstd, without growing anything.
        let mut out = Vec::with_capacity(raw_len);
        match dictionary {
            Some(d) => context.decompress_using_ddict(&mut out, data, d.decoder()),
            None => context.decompress(&mut out, data),
        }
        .map_err(|code| invalid(zstd::zstd_safe::get_error_name(code).to_string()))?;
        Ok::<_, io::Error>(out)
    })?;
    if out.len() != raw_len {
        return Err(invalid(format!(
            "decompressed {} bytes, expected {raw_len}",
            out.len()
        ))
        .into());
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
        assert_eq!(
            decompress(&c.data, data.len(), &Dictionaries::default()).unwrap(),
            data
        );
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
    fn small_blobs_go_through_the_dictionary_and_need_it_back() {
        let page = |seed: u64| crate::dictionary::tests::rows_page(seed, 32 * 1024);
        let samples: Vec<Vec<u8>> = (0..100).map(page).collect();
        let dictionary =
            Arc::new(Dictionary::parse(crate::dictionary::train(&samples).unwrap()).unwrap());
        let mut dictionaries = Dictionaries::default();
        dictionaries.insert(dictionary.clone());

        let blob = page(1000);
        let plain = compress(&blob, 3);
        assert_eq!(frame_dictionary(&plain.data), None);
        let mut compressor = BlobCompressor::new(3);
        compressor.use_dictionary(&dictionary);
        assert_eq!(compressor.dictionary_id(), Some(dictionary.id()));
        let with = compressor.compress(&blob);
        assert!(with.compressed);
        assert_eq!(frame_dictionary(&with.data), Some(dictionary.id()));
        assert!(
            with.data.len() < plain.data.len(),
            "{} against {}",
            with.data.len(),
            plain.data.len()
        );
        assert_eq!(
            decompress(&with.data, blob.len(), &dictionaries).unwrap(),
            blob
        );
        assert!(matches!(
            decompress(&with.data, blob.len(), &Dictionaries::default()),
            Err(DecompressError::MissingDictionary(id)) if id == dictionary.id()
        ));
        // Frames without a dictionary still decompress where dictionaries are loaded.
        assert_eq!(
            decompress(&plain.data, blob.len(), &dictionaries).unwrap(),
            blob
        );
        // Large blobs do not use it.
        let large: Vec<u8> = (0..8).flat_map(|i| page(2000 + i)).collect();
        assert_eq!(frame_dictionary(&compressor.compress(&large).data), None);
    }

    #[test]
    fn decompress_checks_the_length() {
        let data = vec![1u8; 10_000];
        let c = compress(&data, 3);
        assert!(decompress(&c.data, 9_999, &Dictionaries::default()).is_err());
    }
}
