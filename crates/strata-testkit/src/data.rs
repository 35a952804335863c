//! Deterministic data: the same bytes on every run and machine, so a failure reproduces.

/// Deterministic pseudo-random bytes (SplitMix64).
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Database-like pages: a header that varies, then compressible rows.
pub fn table_pages(pages: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(pages * 8192);
    for p in 0..pages {
        let header = pseudo_random(24, seed ^ p as u64);
        out.extend_from_slice(&header);
        let mut row = 0u64;
        while out.len() % 8192 != 0 {
            let text = format!("row {row:08} of page {p} seed {seed} status=active;");
            let room = 8192 - out.len() % 8192;
            out.extend_from_slice(&text.as_bytes()[..text.len().min(room)]);
            row += 1;
        }
    }
    out
}
