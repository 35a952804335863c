//! Format constants, the `config` object and the encoding of sealed objects.

use crate::chunker::ChunkerParams;
use serde::{Deserialize, Serialize};

/// The major format version this build writes. It reads this one and versions 1 to 4
/// (see `docs/format.md`, "History"); it refuses newer ones. Minor additions stay
/// readable because unknown JSON fields are ignored. Version 3 added extended attributes
/// (POSIX ACLs included) to manifest entries; version 4 is the metadata at the size of
/// real clusters (leveled index objects, the backup listing, streamed manifests);
/// version 5 adds compression dictionaries (`dicts/`, blobs whose zstd frames name one:
/// see [`crate::dictionary`]). An object keeps its version in its header and is read as
/// that version.
pub const FORMAT_VERSION: u32 = 5;

/// The oldest format version this build reads.
pub const OLDEST_READABLE_VERSION: u32 = 1;

/// Largest plaintext of one object after decompression (1 GiB): a crafted object in an
/// unencrypted repository cannot make a reader allocate more.
pub const MAX_OBJECT_PLAIN: u64 = 1 << 30;

/// Object kinds, the second byte of every encoded object's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ObjectKind {
    /// An `index/<id>` object: which blob lives in which pack.
    Index = 1,
    /// A `manifests/<backup>/<node>` object: the files of one node in one backup.
    Manifest = 2,
    /// A `summaries/<backup>` object: one backup's figures and outcome.
    Summary = 3,
    /// The header at the end of a pack file: its entries.
    PackHeader = 4,
    /// A file kept outside backups (PostgreSQL WAL): see [`crate::archive`].
    Archived = 5,
    /// An entry of the audit log: see `strata_coordinator::audit`.
    Audit = 6,
    /// A pin (`pins/<backup>`, format version 2): see `strata_coordinator::retention`.
    Pin = 7,
    /// A verification record (`verified/<backup>/...`, format version 2).
    VerifyRecord = 8,
    /// A piece of the backup listing (`listing/entries/...`, `listing/pages/...`, format
    /// version 4): see [`crate::listing`].
    Listing = 10,
    /// Packs condemned by garbage collection, or the writers it waits for
    /// (`gc/condemned/<run>/...`, format version 4): see [`crate::condemned`].
    Condemned = 11,
    /// A compression dictionary (`dicts/<id>`, format version 5): see
    /// [`crate::dictionary`].
    Dictionary = 12,
}

/// Magic bytes at the start of every encoded (non-pack) object.
pub const OBJECT_MAGIC: &[u8; 4] = b"STRO";
/// Magic bytes at the end of every pack file.
pub const PACK_MAGIC: &[u8; 8] = b"STRPACK1";

pub use crate::crypto::Encryption;

/// The current time as the format writes it (`created` of configs and key files):
/// RFC 3339, UTC, seconds.
pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// The `config` object: readable without a password so tools can tell what they face.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepoConfig {
    /// Always "strata": guards against pointing strata at some other tool's files.
    pub format: String,
    /// The major format version, see [`FORMAT_VERSION`].
    pub version: u32,
    /// Random id of the repository, 16 hex digits; also keys local caches.
    pub id: String,
    /// Whether objects and blobs are sealed (AES-256-GCM) or stored plain.
    pub encryption: Encryption,
    /// Chunking of ordinary large files.
    pub chunker: ChunkerParams,
    /// Chunking of page-structured files (sizes a multiple of the page size).
    pub page_chunker: ChunkerParams,
    /// Creation time, RFC 3339.
    pub created: String,
    /// Hex of the config's MAC (format version 2): see [`RepoConfig::mac_input`]. It is
    /// checked as soon as a key unwraps, so an edited config is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// The BLAKE3 `derive_key` context of the config MAC key.
const CONFIG_MAC_CONTEXT: &str = "strata 2026-11 config mac v2";

impl RepoConfig {
    /// The bytes the config MAC covers, every field that matters for security in a fixed
    /// binary form (JSON formatting does not matter): `"strata-config\0"`, version (u32
    /// LE), format and id (each u32 LE length, bytes), encryption (u8: 0 none, 1
    /// aes-256-gcm), chunker and page chunker (min, avg, max, align: u32 LE each), created
    /// (u32 LE length, bytes). `docs/format.md` has it byte by byte.
    pub fn mac_input(&self) -> Vec<u8> {
        let mut out = b"strata-config\0".to_vec();
        out.extend_from_slice(&self.version.to_le_bytes());
        for text in [&self.format, &self.id] {
            out.extend_from_slice(&(text.len() as u32).to_le_bytes());
            out.extend_from_slice(text.as_bytes());
        }
        out.push(match self.encryption {
            Encryption::None => 0,
            Encryption::Aes256Gcm => 1,
        });
        for params in [self.chunker, self.page_chunker] {
            for v in [params.min, params.avg, params.max, params.align] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out.extend_from_slice(&(self.created.len() as u32).to_le_bytes());
        out.extend_from_slice(self.created.as_bytes());
        out
    }

    /// The MAC of this config under the repository's keys (keyed BLAKE3).
    pub fn compute_mac(&self, keys: &crate::crypto::MasterKeys) -> [u8; 32] {
        *blake3::keyed_hash(&keys.derive(CONFIG_MAC_CONTEXT), &self.mac_input()).as_bytes()
    }

    /// Sets [`RepoConfig::mac`] for `keys`.
    pub fn seal_mac(&mut self, keys: &crate::crypto::MasterKeys) {
        self.mac = Some(hex::encode(self.compute_mac(keys)));
    }

    /// Whether the stored MAC matches this config under `keys` (constant-time compare).
    pub fn mac_matches(&self, keys: &crate::crypto::MasterKeys) -> bool {
        let Some(stored) = self.mac.as_deref() else {
            return false;
        };
        let mut bytes = [0u8; 32];
        if hex::decode_to_slice(stored, &mut bytes).is_err() {
            return false;
        }
        blake3::Hash::from(bytes) == blake3::Hash::from(self.compute_mac(keys))
    }
}

/// The associated data of an object: its 7-byte header followed by its name (the object
/// key, e.g. `manifests/<backup>/<node>`; empty for pack headers). Sealing with it binds
/// the object's kind, version and name: moved elsewhere it no longer opens.
fn object_ad(header: &[u8], kind: ObjectKind, name: &str) -> Vec<u8> {
    let mut ad = Vec::with_capacity(header.len() + name.len());
    ad.extend_from_slice(header);
    if kind != ObjectKind::PackHeader {
        ad.extend_from_slice(name.as_bytes());
    }
    ad
}

/// Encodes a repository object: a 7-byte plain header (magic, kind, format version) and
/// the zstd-compressed payload, sealed with the header and `name` (the object's key) as
/// associated data. Pack headers are bound to their kind only: a pack's name is the hash
/// of its bytes, header included.
pub fn encode_object(
    cipher: &crate::crypto::Cipher,
    kind: ObjectKind,
    name: &str,
    payload: &[u8],
) -> Vec<u8> {
    encode_object_of_version(cipher, kind, name, payload, FORMAT_VERSION)
}

/// [`encode_object`] with an older `version` in the header, for a payload in that
/// version's layout: a migration re-seals a version-1 manifest (a whole manifest) as
/// version 3, the last version whose manifests are whole, not as a version-4 top.
pub fn encode_object_of_version(
    cipher: &crate::crypto::Cipher,
    kind: ObjectKind,
    name: &str,
    payload: &[u8],
    version: u32,
) -> Vec<u8> {
    debug_assert!((2..=FORMAT_VERSION).contains(&version));
    let compressed = zstd::bulk::compress(payload, 3).expect("in-memory zstd cannot fail");
    let mut header = Vec::with_capacity(7);
    header.extend_from_slice(OBJECT_MAGIC);
    header.push(kind as u8);
    header.extend_from_slice(&(version as u16).to_le_bytes());
    let sealed = cipher.seal_with(&compressed, &object_ad(&header, kind, name));
    let mut out = header;
    out.reserve(sealed.len());
    out.extend_from_slice(&sealed);
    out
}

/// Decodes an object written by [`encode_object`] under `name` (its key; ignored for pack
/// headers, where it only names the pack in messages), checking kind, version, binding and
/// integrity. A version-1 object (no associated data) is accepted only by a cipher that
/// accepts them (a version-1 repository), except pack headers, which packs keep forever.
pub fn decode_object(
    cipher: &crate::crypto::Cipher,
    kind: ObjectKind,
    bytes: &[u8],
    name: &str,
) -> crate::RepoResult<Vec<u8>> {
    // Decrypted in a copy of the caller's bytes, where a decryption would have written
    // its output anyway.
    let compressed = open_object(cipher, kind, bytes::Bytes::copy_from_slice(bytes), name)?;
    decompress_object(&compressed, name)
}

/// [`decode_object`] as two steps, so a caller holding a large object holds it once: the
/// checks and the authenticated opening, in place in the object's own buffer (not copied
/// when the store's buffer is not shared), which give the compressed payload.
pub fn open_object(
    cipher: &crate::crypto::Cipher,
    kind: ObjectKind,
    bytes: bytes::Bytes,
    name: &str,
) -> crate::RepoResult<bytes::Bytes> {
    use crate::RepoError;
    let version = checked_header(cipher, kind, &bytes, name)?;
    let ad = match version {
        1 => Vec::new(),
        _ => object_ad(&bytes[..7], kind, name),
    };
    let mut buf = Vec::from(bytes);
    let range = cipher
        .open_in_place(&mut buf[7..], &ad, name)
        .map_err(|err| match version {
            1 => err,
            _ => RepoError::corrupted(
                name,
                "authentication failed (altered, sealed under another key, or moved from another name)",
            ),
        })?;
    Ok(bytes::Bytes::from(buf).slice(7 + range.start..7 + range.end))
}

/// The checks of an object's 7-byte header (magic, kind, a readable version, version 1
/// only where the cipher accepts it); returns its version.
fn checked_header(
    cipher: &crate::crypto::Cipher,
    kind: ObjectKind,
    bytes: &[u8],
    name: &str,
) -> crate::RepoResult<u32> {
    use crate::RepoError;
    if bytes.len() < 7 || &bytes[..4] != OBJECT_MAGIC {
        return Err(RepoError::corrupted(name, "not a strata object"));
    }
    let version = u16::from_le_bytes([bytes[5], bytes[6]]) as u32;
    if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(RepoError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if bytes[4] != kind as u8 {
        return Err(RepoError::corrupted(
            name,
            format!("is a {} object, expected {kind:?}", bytes[4]),
        ));
    }
    if version == 1 && !cipher.accepts_v1_objects() && kind != ObjectKind::PackHeader {
        return Err(RepoError::corrupted(
            name,
            "is a version-1 object (not bound to its name) in a repository of version 2 or later",
        ));
    }
    Ok(version)
}

/// [`decode_object`]'s second step: the payload of an opened object, decompressed.
pub fn decompress_object(compressed: &[u8], name: &str) -> crate::RepoResult<Vec<u8>> {
    decompress_capped(compressed, MAX_OBJECT_PLAIN)
        .map_err(|e| crate::RepoError::corrupted(name, e))
}

/// zstd-decompresses `data`, failing beyond `cap` bytes of output (a size the frame
/// claims is allocated only within the cap and 64 times the input; past it the buffer
/// grows with the real output).
pub fn decompress_capped(data: &[u8], cap: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    // A frame that declares its size (every object strata writes) is decompressed in one
    // call into a buffer of that size: no second copy while a buffer doubles, no
    // decoder window beside the output. The size is trusted only within the cap and a
    // multiple of the input (a claim alone allocates nothing large); a frame whose claim
    // is wrong is read as a stream.
    let declared = zstd::zstd_safe::get_frame_content_size(data)
        .ok()
        .flatten()
        .filter(|&size| size <= cap && size <= data.len() as u64 * 64 + 4096);
    if let Some(size) = declared {
        let mut out = Vec::with_capacity(size as usize);
        if zstd::bulk::Decompressor::new()?
            .decompress_to_buffer(data, &mut out)
            .is_ok()
        {
            return Ok(out);
        }
        // Not what it declared (or several frames): read as a stream, as any other.
    }
    let decoder = zstd::stream::read::Decoder::new(data)?;
    let mut out = Vec::new();
    decoder.take(cap + 1).read_to_end(&mut out)?;
    if out.len() as u64 > cap {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("decompresses to more than {cap} bytes"),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Cipher, MasterKeys};

    /// A frame that declares its size is decompressed in one call; data of several
    /// frames (the first one declaring only its own size) is read whole all the same.
    #[test]
    fn declared_sizes_and_several_frames_decompress_whole() {
        let one = zstd::bulk::compress(&[1u8; 5000], 3).unwrap();
        assert_eq!(decompress_capped(&one, 1 << 20).unwrap(), vec![1u8; 5000]);
        let mut two = one.clone();
        two.extend_from_slice(&zstd::bulk::compress(&[2u8; 3000], 3).unwrap());
        let out = decompress_capped(&two, 1 << 20).unwrap();
        assert_eq!(out.len(), 8000);
        assert_eq!((out[4999], out[5000]), (1, 2));
        assert!(
            decompress_capped(&two, 6000).is_err(),
            "the cap holds on the slow path"
        );
    }

    #[test]
    fn objects_roundtrip_and_check_kind_and_version() {
        let cipher = Cipher::new(Encryption::Aes256Gcm, &MasterKeys::generate());
        let bytes = encode_object(&cipher, ObjectKind::Summary, "s", b"{\"a\":1}");
        assert_eq!(
            decode_object(&cipher, ObjectKind::Summary, &bytes, "s").unwrap(),
            b"{\"a\":1}"
        );
        assert!(decode_object(&cipher, ObjectKind::Index, &bytes, "s").is_err());
        let mut newer = bytes.clone();
        newer[5] = 9;
        assert!(matches!(
            decode_object(&cipher, ObjectKind::Summary, &newer, "s"),
            Err(crate::RepoError::UnsupportedVersion { found: 9, .. })
        ));
        assert!(decode_object(&cipher, ObjectKind::Summary, &bytes[..10], "s").is_err());
    }
}
