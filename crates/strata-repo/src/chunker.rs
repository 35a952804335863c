//! Content-defined chunking (FastCDC, 2020 variant) with optional page alignment, and
//! fixed-size chunks as its limit case (`min == max`).
//!
//! Why our own implementation rather than the `fastcdc` crate: database files change a page
//! at a time, so strata rounds every cut of a page-structured file up to a page boundary,
//! and the crate cannot align its cuts; its gear table is also fixed, while ours is derived
//! from a per-repository secret so chunk sizes do not reveal content (the same reason
//! restic uses a per-repository polynomial).
//!
//! Why page-structured files are cut at fixed 32 KiB by default: a database rewrites pages
//! in place and never shifts a file's content, so content-defined cuts buy nothing there
//! and cost twice. A changed page that holds a cut moves it, so its neighbour is stored
//! again too; and the chunk size sets what one changed page costs. Fixed chunks on page
//! boundaries make a changed page cost exactly one 32 KiB chunk (docs/benchmarks.md,
//! "Increments the size of what changed").
//!
//! The algorithm is FastCDC's normalized chunking: skip `min` bytes, then look for a cut
//! with a harder mask until `avg`, then with an easier mask until `max`. The rolling hash is
//! the gear hash `h = (h << 1) + gear[byte]`; its top bits depend on the last 64 bytes, so
//! the masks test top bits.

use serde::{Deserialize, Serialize};

/// Chunk size limits. All sizes are in bytes; `align` 0 means no alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// No cut before this many bytes (the last chunk of a file may be shorter).
    pub min: u32,
    /// The target chunk size, a power of two: the harder mask applies up to it.
    pub avg: u32,
    /// A chunk is cut here at the latest.
    pub max: u32,
    /// Cuts are rounded up to a multiple of this (the page size of page-structured files);
    /// 0 for none.
    pub align: u32,
}

impl ChunkerParams {
    /// Ordinary large files: ~1 MiB chunks keep the index small.
    pub const GENERIC: ChunkerParams = ChunkerParams {
        min: 256 * 1024,
        avg: 1024 * 1024,
        max: 4 * 1024 * 1024,
        align: 0,
    };

    /// Page-structured files (a size that is a multiple of 8 KiB): fixed 32 KiB chunks,
    /// four pages each, so a changed page re-stores one chunk and nothing beside it.
    /// Repositories keep the parameters they were created with (their `config`).
    pub const PAGES: ChunkerParams = ChunkerParams {
        min: 32 * 1024,
        avg: 32 * 1024,
        max: 32 * 1024,
        align: 8 * 1024,
    };

    /// The page parameters of repositories created before fixed page chunks (format
    /// history in docs/format.md): content-defined, ~128 KiB, cut on page boundaries.
    pub const PAGES_CDC_128K: ChunkerParams = ChunkerParams {
        min: 32 * 1024,
        avg: 128 * 1024,
        max: 512 * 1024,
        align: 8 * 1024,
    };

    /// True when every chunk but a file's last is `max` bytes: no content decides a cut.
    pub fn is_fixed(&self) -> bool {
        self.min == self.max
    }

    /// Checks the invariants the chunker relies on; a repository `config` that breaks them
    /// is refused instead of producing odd chunks.
    pub fn validate(&self) -> Result<(), BadChunker> {
        let ok_order = 64 <= self.min && self.min <= self.avg && self.avg <= self.max;
        let ok_avg = self.avg.is_power_of_two();
        let ok_align = self.align == 0
            || (self.align.is_power_of_two()
                && self.min.is_multiple_of(self.align)
                && self.max.is_multiple_of(self.align));
        if ok_order && ok_avg && ok_align && self.max <= 64 * 1024 * 1024 {
            Ok(())
        } else {
            Err(BadChunker(*self))
        }
    }
}

/// Chunker parameters that break the chunker's invariants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid chunker parameters {0:?}")]
pub struct BadChunker(pub ChunkerParams);

/// A content-defined chunker for one parameter set and gear table.
#[derive(Clone)]
pub struct Chunker {
    params: ChunkerParams,
    gear: Box<[u64; 256]>,
    mask_hard: u64,
    mask_easy: u64,
}

/// SplitMix64: a tiny, well-mixed generator to derive the gear table from a seed.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn top_bits_mask(bits: u32) -> u64 {
    !0u64 << (64 - bits)
}

impl Chunker {
    /// Builds a chunker; `seed` comes from the repository's secret keys.
    pub fn new(params: ChunkerParams, seed: u64) -> Self {
        debug_assert!(params.validate().is_ok());
        let mut state = seed;
        let mut gear = Box::new([0u64; 256]);
        for slot in gear.iter_mut() {
            *slot = splitmix64(&mut state);
        }
        let bits = params.avg.trailing_zeros();
        Chunker {
            params,
            gear,
            mask_hard: top_bits_mask(bits + 2),
            mask_easy: top_bits_mask(bits.saturating_sub(2).max(1)),
        }
    }

    /// The parameters of this chunker.
    pub fn params(&self) -> ChunkerParams {
        self.params
    }

    /// How many bytes of `data` the chunker needs to decide a cut: callers pass at least
    /// this much unless `data` is the end of the file.
    pub fn lookahead(&self) -> usize {
        self.params.max as usize
    }

    /// The length of the next chunk, which starts at `data[0]`. `data` holds at least
    /// [`Chunker::lookahead`] bytes, or everything up to the end of the file. A chunk that
    /// starts aligned ends aligned (or at the end of the data).
    pub fn next_cut(&self, data: &[u8]) -> usize {
        let n = data.len();
        let p = self.params;
        if n <= p.min as usize {
            return n;
        }
        if p.is_fixed() {
            // What the loops below return when min == avg == max, without hashing.
            return p.max as usize;
        }
        let end = n.min(p.max as usize);
        let center = end.min(p.avg as usize);
        let mut hash = 0u64;
        let mut i = p.min as usize;
        let mut cut = end;
        // A hash computed from a fresh start needs 64 bytes of history to be content-only;
        // warm it up on the bytes just before `min` so the first candidates are valid.
        for &b in &data[i.saturating_sub(64)..i] {
            hash = (hash << 1).wrapping_add(self.gear[b as usize]);
        }
        while i < center {
            hash = (hash << 1).wrapping_add(self.gear[data[i] as usize]);
            if hash & self.mask_hard == 0 {
                cut = i + 1;
                break;
            }
            i += 1;
        }
        if cut == end && i >= center {
            while i < end {
                hash = (hash << 1).wrapping_add(self.gear[data[i] as usize]);
                if hash & self.mask_easy == 0 {
                    cut = i + 1;
                    break;
                }
                i += 1;
            }
        }
        if p.align > 0 && cut < n {
            let align = p.align as usize;
            cut = cut.div_ceil(align) * align;
            cut = cut.min(n);
        }
        cut
    }

    /// Cuts a whole in-memory buffer; convenient for tests and small inputs.
    pub fn chunks<'a>(&'a self, mut data: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        std::iter::from_fn(move || {
            if data.is_empty() {
                return None;
            }
            let cut = self.next_cut(data);
            let (chunk, rest) = data.split_at(cut);
            data = rest;
            Some(chunk)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed;
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&splitmix64(&mut state).to_le_bytes());
        }
        out.truncate(len);
        out
    }

    #[test]
    fn default_parameters_are_valid() {
        ChunkerParams::GENERIC.validate().unwrap();
        ChunkerParams::PAGES.validate().unwrap();
        ChunkerParams::PAGES_CDC_128K.validate().unwrap();
        assert!(ChunkerParams {
            min: 10,
            avg: 100,
            max: 50,
            align: 0
        }
        .validate()
        .is_err());
    }

    #[test]
    fn chunk_sizes_stay_within_limits_and_average_near_target() {
        let chunker = Chunker::new(ChunkerParams::GENERIC, 7);
        let data = pseudo_random(64 << 20, 1);
        let sizes: Vec<usize> = chunker.chunks(&data).map(|c| c.len()).collect();
        let (last, body) = sizes.split_last().unwrap();
        assert!(*last <= 4 << 20);
        for s in body {
            assert!((256 << 10..=4 << 20).contains(s), "{s}");
        }
        let mean = data.len() / sizes.len();
        assert!((700 << 10..1600 << 10).contains(&mean), "mean chunk {mean}");
    }

    #[test]
    fn page_aligned_cuts_fall_on_page_boundaries() {
        let chunker = Chunker::new(ChunkerParams::PAGES_CDC_128K, 7);
        let data = pseudo_random(16 << 20, 2);
        let mut offset = 0;
        for chunk in chunker.chunks(&data) {
            offset += chunk.len();
            assert!(offset % 8192 == 0 || offset == data.len());
        }
    }

    #[test]
    fn a_changed_page_changes_few_chunks() {
        let chunker = Chunker::new(ChunkerParams::PAGES_CDC_128K, 9);
        let mut data = pseudo_random(32 << 20, 3);
        let before: std::collections::HashSet<Vec<u8>> =
            chunker.chunks(&data).map(|c| c.to_vec()).collect();
        // Rewrite 20 scattered pages.
        for k in 0..20 {
            let page = (k * 193 + 11) % (data.len() / 8192);
            let fresh = pseudo_random(8192, 100 + k as u64);
            data[page * 8192..(page + 1) * 8192].copy_from_slice(&fresh);
        }
        let new_bytes: usize = chunker
            .chunks(&data)
            .filter(|c| !before.contains(*c))
            .map(|c| c.len())
            .sum();
        // Each changed page should cost about one chunk (~128 KiB), not a whole region.
        assert!(new_bytes < 20 * 400 * 1024, "new bytes {new_bytes}");
    }

    #[test]
    fn fixed_page_chunks_re_store_exactly_the_chunks_of_changed_pages() {
        let chunker = Chunker::new(ChunkerParams::PAGES, 9);
        let mut data = pseudo_random(8 << 20, 3);
        let before: Vec<Vec<u8>> = chunker.chunks(&data).map(|c| c.to_vec()).collect();
        assert!(before.iter().all(|c| c.len() == 32 * 1024));
        // Scattered pages, and a run of three pages across a chunk boundary.
        let pages = [5usize, 77, 78, 79, 400, 1023];
        for (k, page) in pages.iter().enumerate() {
            let fresh = pseudo_random(8192, 100 + k as u64);
            data[page * 8192..(page + 1) * 8192].copy_from_slice(&fresh);
        }
        let after: Vec<Vec<u8>> = chunker.chunks(&data).map(|c| c.to_vec()).collect();
        let changed: Vec<usize> = (0..after.len())
            .filter(|&i| after[i] != before[i])
            .collect();
        let expected: std::collections::BTreeSet<usize> = pages.iter().map(|p| p / 4).collect();
        assert_eq!(changed, expected.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn fixed_parameters_cut_where_content_defined_ones_would_with_equal_limits() {
        // The fast path must agree with the general algorithm it short-cuts.
        let params = ChunkerParams {
            min: 4096,
            avg: 4096,
            max: 4096,
            align: 512,
        };
        let chunker = Chunker::new(params, 5);
        let data = pseudo_random(100_000, 6);
        let lens: Vec<usize> = chunker.chunks(&data).map(|c| c.len()).collect();
        assert_eq!(lens.len(), 100_000usize.div_ceil(4096));
        assert!(lens[..lens.len() - 1].iter().all(|&l| l == 4096));
        assert_eq!(*lens.last().unwrap(), 100_000 % 4096);
    }

    #[test]
    fn the_seed_changes_the_boundaries() {
        let data = pseudo_random(8 << 20, 4);
        let a: Vec<usize> = Chunker::new(ChunkerParams::GENERIC, 1)
            .chunks(&data)
            .map(|c| c.len())
            .collect();
        let b: Vec<usize> = Chunker::new(ChunkerParams::GENERIC, 2)
            .chunks(&data)
            .map(|c| c.len())
            .collect();
        assert_ne!(a, b);
    }

    proptest! {
        /// Chunks concatenate back to the input, whatever the input and parameters.
        #[test]
        fn chunks_roundtrip(data in proptest::collection::vec(any::<u8>(), 0..200_000),
                            seed in any::<u64>(), aligned in any::<bool>()) {
            let params = ChunkerParams {
                min: 1024, avg: 4096, max: 16384, align: if aligned { 512 } else { 0 },
            };
            let chunker = Chunker::new(params, seed);
            let mut joined = Vec::new();
            for chunk in chunker.chunks(&data) {
                prop_assert!(!chunk.is_empty());
                prop_assert!(chunk.len() <= 16384);
                joined.extend_from_slice(chunk);
            }
            prop_assert_eq!(joined, data);
        }

        /// Cutting from a stream window gives the same chunks as cutting the whole buffer.
        #[test]
        fn cuts_only_depend_on_the_lookahead(data in proptest::collection::vec(any::<u8>(), 0..100_000), seed in any::<u64>()) {
            let params = ChunkerParams { min: 1024, avg: 4096, max: 16384, align: 0 };
            let chunker = Chunker::new(params, seed);
            let mut pos = 0;
            for chunk in chunker.chunks(&data) {
                let window = &data[pos..data.len().min(pos + chunker.lookahead())];
                prop_assert_eq!(chunker.next_cut(window), chunk.len());
                pos += chunk.len();
            }
        }
    }
}
