//! Pack files: many sealed blobs in one object, so a backup makes few requests.
//!
//! Layout: `blob_0 .. blob_n-1 | sealed header | header length (u32 LE) | "STRPACK1"`.
//! The header lists every blob (id, offset, length, raw length, compressed flag); it is at
//! the end so a pack can be written as a stream, and it makes every pack self-describing:
//! the index can be rebuilt from the packs alone. A pack's id is the BLAKE3 hash of its
//! bytes, so a full read verifies it.

use crate::crypto::Cipher;
use crate::format::{decode_object, encode_object, ObjectKind, PACK_MAGIC};
use crate::id::PackId;
use crate::{BlobId, RepoError, RepoResult};
use serde::{Deserialize, Serialize};

/// Where one blob sits inside its pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackEntry {
    /// The blob's id.
    pub id: BlobId,
    /// Where the sealed blob starts, in bytes from the start of the pack file.
    pub offset: u64,
    /// Sealed length in the pack.
    pub length: u32,
    /// Plaintext length.
    pub raw_length: u32,
    /// Whether the sealed bytes hold zstd data (or the raw plaintext).
    pub compressed: bool,
}

/// A pack holds at most this many blobs, however small (an index object lists a pack
/// whole: see [`crate::index::MAX_BLOBS_PER_OBJECT`]).
pub const MAX_BLOBS_PER_PACK: usize = 1 << 14;

/// Accumulates sealed blobs into one pack.
pub struct PackBuilder {
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
}

/// A finished pack, ready to upload.
pub struct FinishedPack {
    /// The pack's id: the BLAKE3 hash of `bytes`.
    pub id: PackId,
    /// The whole pack file: the sealed blobs, then the header and the trailer.
    pub bytes: Vec<u8>,
    /// One entry per blob, in pack order.
    pub entries: Vec<PackEntry>,
}

impl PackBuilder {
    /// An empty pack with room for about `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        PackBuilder {
            buf: Vec::with_capacity(capacity + capacity / 16),
            entries: Vec::new(),
        }
    }

    /// Appends one sealed blob.
    pub fn add(&mut self, id: BlobId, sealed: &[u8], raw_length: u32, compressed: bool) {
        self.entries.push(PackEntry {
            id,
            offset: self.buf.len() as u64,
            length: sealed.len() as u32,
            raw_length,
            compressed,
        });
        self.buf.extend_from_slice(sealed);
    }

    /// Bytes of blob data so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether the pack is complete: `size` bytes of blobs or [`MAX_BLOBS_PER_PACK`]
    /// blobs.
    pub fn is_full(&self, size: usize) -> bool {
        self.buf.len() >= size || self.entries.len() >= MAX_BLOBS_PER_PACK
    }

    /// True when no blob was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends the header and trailer and names the pack.
    pub fn finish(mut self, cipher: &Cipher) -> FinishedPack {
        let header = postcard::to_stdvec(&self.entries).expect("pack entries serialize");
        let sealed = encode_object(cipher, ObjectKind::PackHeader, "", &header);
        self.buf.extend_from_slice(&sealed);
        self.buf
            .extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(PACK_MAGIC);
        FinishedPack {
            id: PackId::from(*blake3::hash(&self.buf).as_bytes()),
            bytes: self.buf,
            entries: self.entries,
        }
    }
}

impl From<[u8; 32]> for BlobId {
    fn from(bytes: [u8; 32]) -> Self {
        BlobId(bytes)
    }
}

/// Bytes after the sealed header: its length (u32 LE) and [`PACK_MAGIC`].
pub const TRAILER_LEN: usize = 4 + PACK_MAGIC.len();

/// Upper bound on a pack header: far above what a real pack holds (about 60 bytes per
/// blob), low enough that a hostile length cannot make a reader allocate gigabytes.
pub const MAX_HEADER_LEN: u64 = 64 * 1024 * 1024;

/// Reads the trailer (the last [`TRAILER_LEN`] bytes of a pack of `pack_len` bytes) and
/// returns where the sealed header starts; the header ends where the trailer begins.
pub fn header_start(trailer: &[u8], pack_len: u64, what: &str) -> RepoResult<u64> {
    if trailer.len() != TRAILER_LEN || pack_len < TRAILER_LEN as u64 || &trailer[4..] != PACK_MAGIC
    {
        return Err(RepoError::corrupted(what, "no pack trailer (truncated?)"));
    }
    let header_len = u32::from_le_bytes(trailer[..4].try_into().expect("4 bytes")) as u64;
    let len_at = pack_len - TRAILER_LEN as u64;
    if header_len > len_at || header_len > MAX_HEADER_LEN {
        return Err(RepoError::corrupted(what, "header length out of range"));
    }
    Ok(len_at - header_len)
}

/// Decodes a sealed header that starts at `header_start` in its pack, checking that no
/// blob it lists extends into the header.
pub fn decode_header(
    cipher: &Cipher,
    sealed: &[u8],
    header_start: u64,
    what: &str,
) -> RepoResult<Vec<PackEntry>> {
    let plain = decode_object(cipher, ObjectKind::PackHeader, sealed, what)?;
    let entries: Vec<PackEntry> =
        postcard::from_bytes(&plain).map_err(|e| RepoError::corrupted(what, e))?;
    for entry in &entries {
        if entry
            .offset
            .checked_add(entry.length as u64)
            .is_none_or(|end| end > header_start)
        {
            return Err(RepoError::corrupted(what, "blob extends into the header"));
        }
    }
    Ok(entries)
}

/// Reads the header of a complete pack, checking that it describes the pack consistently.
pub fn read_header(cipher: &Cipher, pack: &[u8], what: &str) -> RepoResult<Vec<PackEntry>> {
    if pack.len() < TRAILER_LEN {
        return Err(RepoError::corrupted(what, "no pack trailer (truncated?)"));
    }
    let len_at = pack.len() - TRAILER_LEN;
    let start = header_start(&pack[len_at..], pack.len() as u64, what)?;
    decode_header(cipher, &pack[start as usize..len_at], start, what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKeys;
    use crate::format::Encryption;
    use proptest::prelude::*;

    proptest! {
        /// Whatever blobs go in, the header gives back exactly where each one is.
        #[test]
        fn packs_roundtrip(blobs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..2000), 0..20),
                           encrypted in any::<bool>()) {
            let keys = MasterKeys::generate();
            let cipher = Cipher::new(if encrypted { Encryption::Aes256Gcm } else { Encryption::None }, &keys);
            let mut builder = PackBuilder::new(1024);
            for blob in &blobs {
                let sealed = cipher.seal(blob);
                builder.add(keys.blob_id(blob), &sealed, blob.len() as u32, false);
            }
            let pack = builder.finish(&cipher);
            prop_assert_eq!(pack.id, PackId::from(*blake3::hash(&pack.bytes).as_bytes()));
            let entries = read_header(&cipher, &pack.bytes, "p").unwrap();
            prop_assert_eq!(entries.len(), blobs.len());
            for (entry, blob) in entries.iter().zip(&blobs) {
                let sealed = &pack.bytes[entry.offset as usize..][..entry.length as usize];
                prop_assert_eq!(&cipher.open(sealed, "b").unwrap(), blob);
                prop_assert_eq!(entry.id, keys.blob_id(blob));
            }
        }
    }

    #[test]
    fn truncated_packs_are_detected() {
        let cipher = Cipher::new(Encryption::Aes256Gcm, &MasterKeys::generate());
        let mut builder = PackBuilder::new(16);
        builder.add(BlobId([1; 32]), &cipher.seal(b"abc"), 3, false);
        let pack = builder.finish(&cipher);
        for cut in [1, 5, 13, pack.bytes.len() - 1] {
            assert!(read_header(&cipher, &pack.bytes[..pack.bytes.len() - cut], "p").is_err());
        }
    }
}
