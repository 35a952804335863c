//! Format constants and the plain-text `config` object.

use crate::chunker::ChunkerParams;
use serde::{Deserialize, Serialize};

/// The major format version this build writes and reads. A reader refuses any other major
/// version; minor additions stay readable because unknown JSON fields are ignored.
pub const FORMAT_VERSION: u32 = 1;

/// Object kinds, the second byte of every encoded object's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ObjectKind {
    Index = 1,
    Manifest = 2,
    Summary = 3,
    PackHeader = 4,
    /// A file kept outside backups (PostgreSQL WAL): see [`crate::archive`].
    Archived = 5,
    /// An entry of the audit log: see `strata_coordinator::audit`.
    Audit = 6,
}

/// Magic bytes at the start of every encoded (non-pack) object.
pub const OBJECT_MAGIC: &[u8; 4] = b"STRO";
/// Magic bytes at the end of every pack file.
pub const PACK_MAGIC: &[u8; 8] = b"STRPACK1";

/// Which AEAD seals blobs and objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encryption {
    /// AES-256-GCM with a random 96-bit nonce per sealed item (hardware-accelerated).
    Aes256Gcm,
    /// No encryption, for storage that encrypts by itself. Integrity is still checked
    /// through the blob ids.
    None,
}

impl std::str::FromStr for Encryption {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "aes-256-gcm" => Ok(Encryption::Aes256Gcm),
            "none" => Ok(Encryption::None),
            other => Err(format!(
                "unknown encryption {other:?} (expected \"aes-256-gcm\" or \"none\")"
            )),
        }
    }
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
    pub encryption: Encryption,
    /// Chunking of ordinary large files.
    pub chunker: ChunkerParams,
    /// Chunking of page-structured files (sizes a multiple of the page size).
    pub page_chunker: ChunkerParams,
    /// Creation time, RFC 3339.
    pub created: String,
}

/// Encodes a repository object: a 7-byte plain header (magic, kind, format version) and
/// the zstd-compressed payload, sealed.
pub fn encode_object(cipher: &crate::crypto::Cipher, kind: ObjectKind, payload: &[u8]) -> Vec<u8> {
    let compressed = zstd::bulk::compress(payload, 3).expect("in-memory zstd cannot fail");
    let sealed = cipher.seal(&compressed);
    let mut out = Vec::with_capacity(7 + sealed.len());
    out.extend_from_slice(OBJECT_MAGIC);
    out.push(kind as u8);
    out.extend_from_slice(&(FORMAT_VERSION as u16).to_le_bytes());
    out.extend_from_slice(&sealed);
    out
}

/// Decodes an object written by [`encode_object`], checking kind, version and integrity.
pub fn decode_object(
    cipher: &crate::crypto::Cipher,
    kind: ObjectKind,
    bytes: &[u8],
    what: &str,
) -> crate::RepoResult<Vec<u8>> {
    use crate::RepoError;
    if bytes.len() < 7 || &bytes[..4] != OBJECT_MAGIC {
        return Err(RepoError::corrupted(what, "not a strata object"));
    }
    let version = u16::from_le_bytes([bytes[5], bytes[6]]) as u32;
    if version != FORMAT_VERSION {
        return Err(RepoError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if bytes[4] != kind as u8 {
        return Err(RepoError::corrupted(
            what,
            format!("is a {} object, expected {kind:?}", bytes[4]),
        ));
    }
    let compressed = cipher.open(&bytes[7..], what)?;
    zstd::stream::decode_all(&compressed[..]).map_err(|e| RepoError::corrupted(what, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Cipher, MasterKeys};

    #[test]
    fn objects_roundtrip_and_check_kind_and_version() {
        let cipher = Cipher::new(Encryption::Aes256Gcm, &MasterKeys::generate());
        let bytes = encode_object(&cipher, ObjectKind::Summary, b"{\"a\":1}");
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
