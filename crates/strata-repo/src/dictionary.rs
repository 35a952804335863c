//! The repository's compression dictionaries (format version 5).
//!
//! A blob is compressed by itself, so zstd starts every one with no history: a 32 KiB
//! page chunk compresses 7% worse than a 1 MiB chunk of the same table. A dictionary
//! trained on the repository's own small blobs gives each of them that history back.
//!
//! ```text
//! dicts/<id: 8 hex digits>   ObjectKind::Dictionary, sealed like every named object;
//!                            the payload is a zstd dictionary whose own id is <id>
//! ```
//!
//! A blob needs no new field: zstd writes the dictionary's id into the header of every
//! frame compressed with it, and the reader takes the id from there ([`frame_dictionary`]).
//! A dictionary is stored (and its store acknowledged) before the first blob compressed
//! with it is sealed, so any blob an index object lists has its dictionary in the store
//! already; a reader lists `dicts/` after `index/` (see `Repository::reload_index`). A
//! dictionary never changes under its key and is never deleted (garbage collection keeps
//! `dicts/`: a repository holds one per concurrent first writer, about 110 KiB each).
//! docs/format.md, "Compression dictionaries", has the bytes.

use std::collections::BTreeMap;
use std::sync::Arc;

/// The size a trained dictionary aims at (zstd's default).
pub const DICTIONARY_SIZE: usize = 112 * 1024;

/// The largest dictionary a reader accepts.
pub const MAX_DICTIONARY: usize = 1 << 20;

/// Blobs up to this size are compressed with the dictionary and offered as samples:
/// larger ones carry their own history.
pub const SMALL_BLOB: usize = 128 * 1024;

/// The magic number at the start of a zstd dictionary (with entropy tables and an id).
const DICTIONARY_MAGIC: u32 = 0xEC30_A437;

/// A dictionary of the repository, ready to decompress with.
pub struct Dictionary {
    id: u32,
    raw: Vec<u8>,
    decoder: zstd::zstd_safe::DDict<'static>,
}

impl std::fmt::Debug for Dictionary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dictionary({:08x}, {} bytes)", self.id, self.raw.len())
    }
}

impl Dictionary {
    /// Checks `raw` as a dictionary: a zstd dictionary (magic, a non-zero id, entropy
    /// tables zstd loads) of at most [`MAX_DICTIONARY`] bytes.
    pub fn parse(raw: Vec<u8>) -> Result<Dictionary, NotADictionary> {
        if raw.len() > MAX_DICTIONARY {
            return Err(NotADictionary::TooLarge(raw.len()));
        }
        if raw.len() < 8
            || u32::from_le_bytes(raw[..4].try_into().expect("4 bytes")) != DICTIONARY_MAGIC
        {
            return Err(NotADictionary::NoMagic);
        }
        let id = zstd::zstd_safe::get_dict_id_from_dict(&raw)
            .ok_or(NotADictionary::NoId)?
            .get();
        let decoder = zstd::zstd_safe::DDict::try_create(&raw).ok_or(NotADictionary::Unloadable)?;
        Ok(Dictionary { id, raw, decoder })
    }

    /// zstd's id of the dictionary: its key's name and the id in its frames' headers.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The dictionary's bytes.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    pub(crate) fn decoder(&self) -> &zstd::zstd_safe::DDict<'static> {
        &self.decoder
    }
}

/// Why bytes are not a dictionary.
#[derive(Debug, thiserror::Error)]
pub enum NotADictionary {
    /// Larger than a dictionary may be.
    #[error("{0} bytes, more than the {MAX_DICTIONARY} a dictionary may have")]
    TooLarge(usize),
    /// No zstd dictionary magic number.
    #[error("not a zstd dictionary")]
    NoMagic,
    /// The magic, but a zero id.
    #[error("a zstd dictionary without an id")]
    NoId,
    /// zstd does not load its tables.
    #[error("zstd does not load it as a dictionary")]
    Unloadable,
}

/// The dictionaries a repository has, by id.
#[derive(Debug, Default, Clone)]
pub struct Dictionaries {
    by_id: BTreeMap<u32, Arc<Dictionary>>,
}

impl Dictionaries {
    /// The dictionary of `id`, if loaded.
    pub fn get(&self, id: u32) -> Option<&Arc<Dictionary>> {
        self.by_id.get(&id)
    }

    /// The dictionary new blobs are compressed with: the lowest id, so every writer of
    /// a repository with several (concurrent first writers each trained one) picks the same.
    pub fn preferred(&self) -> Option<&Arc<Dictionary>> {
        self.by_id.values().next()
    }

    /// Whether `id` is loaded.
    pub fn contains(&self, id: u32) -> bool {
        self.by_id.contains_key(&id)
    }

    /// How many are loaded.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether none is loaded.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub(crate) fn insert(&mut self, dictionary: Arc<Dictionary>) {
        self.by_id.insert(dictionary.id, dictionary);
    }
}

/// The dictionary id in a zstd frame's header, if the frame was compressed with one.
pub fn frame_dictionary(frame: &[u8]) -> Option<u32> {
    zstd::zstd_safe::get_dict_id_from_frame(frame).map(|id| id.get())
}

/// The key of dictionary `id`: `dicts/<id as 8 lowercase hex digits>`.
pub fn dictionary_key(id: u32) -> String {
    format!("{}{id:08x}", crate::layout::DICTS)
}

/// The id a `dicts/` key names, if it is one.
pub fn key_dictionary(key: &str) -> Option<u32> {
    let hex = key.strip_prefix(crate::layout::DICTS)?;
    if hex.len() != 8
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u32::from_str_radix(hex, 16).ok()
}

/// When a writer trains a dictionary: after `after` bytes of small blobs, on samples
/// spread evenly over them of at most `sample_bytes` in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Training {
    /// Bytes of small blobs seen before training.
    pub after: u64,
    /// Most bytes of samples kept.
    pub sample_bytes: usize,
}

impl Default for Training {
    /// 4 MiB of samples over the first 64 MiB of small blobs. Samples from the first
    /// 4 MiB alone describe the first table or two: measured on the benchmark set's page
    /// files, a dictionary from them saved 4.1%, one from samples spread over 128 MiB 7.1%.
    fn default() -> Self {
        Training {
            after: 64 << 20,
            sample_bytes: 4 << 20,
        }
    }
}

/// Samples of the small blobs a writer stores, spread over the first [`Training::after`]
/// bytes of them: every `stride`-th blob is kept, and when the samples exceed their
/// budget every other one goes and the stride doubles, so memory stays within
/// `sample_bytes` plus one blob whatever the data.
#[derive(Debug)]
pub struct Sampler {
    training: Training,
    samples: Vec<Vec<u8>>,
    held: usize,
    stride: u64,
    seen_blobs: u64,
    seen_bytes: u64,
    done: bool,
}

impl Sampler {
    /// A sampler that trains as `training` says.
    pub fn new(training: Training) -> Sampler {
        Sampler {
            training,
            samples: Vec::new(),
            held: 0,
            stride: 1,
            seen_blobs: 0,
            seen_bytes: 0,
            done: false,
        }
    }

    /// Offers a blob; returns the samples to train on once enough were seen (once).
    pub fn offer(&mut self, data: &[u8]) -> Option<Vec<Vec<u8>>> {
        if self.done || data.len() > SMALL_BLOB || data.len() < 64 {
            return None;
        }
        self.seen_blobs += 1;
        self.seen_bytes += data.len() as u64;
        if self.seen_blobs.is_multiple_of(self.stride) {
            self.held += data.len();
            self.samples.push(data.to_vec());
            while self.held > self.training.sample_bytes && self.samples.len() > 1 {
                let mut keep = false;
                self.samples.retain(|_| {
                    keep = !keep;
                    keep
                });
                self.held = self.samples.iter().map(Vec::len).sum();
                self.stride *= 2;
            }
        }
        self.done = self.seen_bytes >= self.training.after;
        self.done.then(|| std::mem::take(&mut self.samples))
    }
}

/// Trains a dictionary on `samples`; `None` when zstd finds too little to learn from.
pub fn train(samples: &[Vec<u8>]) -> Option<Vec<u8>> {
    zstd::dict::from_samples(samples, DICTIONARY_SIZE).ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A page of `len` bytes of table rows: each row one of 1,000 distinct ones (of
    /// about 100 bytes), picked at random, so a page repeats little within itself and
    /// much of what other pages hold, as a table's pages do.
    pub(crate) fn rows_page(seed: u64, len: usize) -> Vec<u8> {
        let mix = |x: u64| {
            let x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            x ^ (x >> 29)
        };
        let mut out = Vec::with_capacity(len + 128);
        let mut state = mix(seed + 1);
        while out.len() < len {
            state = mix(state);
            let row = state % 1000;
            out.extend_from_slice(
                format!(
                    "({row:04}, 'customer-{:06}', '{:08x}', 'street {:05}', 'Tallinn', {:07}.{:02})",
                    mix(row) % 999_999,
                    mix(row + 7) as u32,
                    mix(row + 3) % 99_999,
                    mix(row + 5) % 9_999_999,
                    row % 100
                )
                .as_bytes(),
            );
        }
        out.truncate(len);
        out
    }

    fn pages(n: usize) -> Vec<Vec<u8>> {
        (0..n as u64).map(|i| rows_page(i, 8192)).collect()
    }

    #[test]
    fn a_trained_dictionary_parses_and_keeps_its_id() {
        let raw = train(&pages(200)).expect("trains");
        let dictionary = Dictionary::parse(raw.clone()).unwrap();
        assert!(dictionary.id() != 0);
        assert_eq!(dictionary.raw(), &raw[..]);
        assert_eq!(
            key_dictionary(&dictionary_key(dictionary.id())),
            Some(dictionary.id())
        );
    }

    #[test]
    fn what_is_not_a_dictionary_is_refused() {
        assert!(Dictionary::parse(b"plain words, no magic".to_vec()).is_err());
        assert!(Dictionary::parse(vec![0; MAX_DICTIONARY + 1]).is_err());
        // The magic and an id, then tables zstd cannot load.
        let mut forged = DICTIONARY_MAGIC.to_le_bytes().to_vec();
        forged.extend_from_slice(&0x1234_5678u32.to_le_bytes());
        forged.extend_from_slice(&[0xff; 300]);
        assert!(Dictionary::parse(forged).is_err());
        let mut damaged = train(&pages(200)).unwrap();
        for b in &mut damaged[8..64] {
            *b ^= 0x5a;
        }
        assert!(Dictionary::parse(damaged).is_err());
    }

    #[test]
    fn keys_name_ids_in_eight_lowercase_hex_digits() {
        assert_eq!(dictionary_key(0xab), "dicts/000000ab");
        assert_eq!(key_dictionary("dicts/000000ab"), Some(0xab));
        for bad in [
            "dicts/ab",
            "dicts/000000AB",
            "dicts/0000000g",
            "index/000000ab",
            "dicts/000000ab/x",
        ] {
            assert_eq!(key_dictionary(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_sampler_spreads_its_samples_and_stays_within_its_budget() {
        let training = Training {
            after: 1 << 20,
            sample_bytes: 64 << 10,
        };
        let mut sampler = Sampler::new(training);
        let blob = vec![7u8; 1024];
        let mut out = None;
        for i in 0..2048 {
            if let Some(samples) = sampler.offer(&blob) {
                out = Some((i, samples));
                break;
            }
            assert!(sampler.held <= training.sample_bytes + blob.len());
        }
        let (at, samples) = out.expect("trains after 1 MiB");
        assert_eq!(at, 1023, "after exactly `after` bytes");
        let held: usize = samples.iter().map(Vec::len).sum();
        assert!(
            held <= training.sample_bytes && held >= training.sample_bytes / 2,
            "{held}"
        );
        // Large and tiny blobs are not samples, and nothing comes twice.
        assert!(sampler.offer(&vec![1u8; SMALL_BLOB + 1]).is_none());
        assert!(sampler.offer(&[1u8; 10]).is_none());
        assert!(sampler.offer(&blob).is_none());
    }
}
