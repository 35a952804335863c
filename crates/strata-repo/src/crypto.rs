//! Keys, blob ids and sealing.
//!
//! A repository has one set of [`MasterKeys`]: an AEAD key that seals every blob and
//! object, a BLAKE3 key that names blobs (so ids reveal nothing about content to someone
//! without the key), and the chunker seed. The master keys are stored in `keys/<id>`
//! objects, each wrapping them under a key derived from a password with Argon2id.

use crate::format::Encryption;
use crate::{BlobId, RepoError, RepoResult};
use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use serde::{Deserialize, Serialize};

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// The secrets of a repository.
#[derive(Clone)]
pub struct MasterKeys {
    pub encryption_key: [u8; 32],
    pub id_key: [u8; 32],
    pub chunker_seed: u64,
}

impl std::fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKeys(<secret>)")
    }
}

impl MasterKeys {
    /// Fresh random keys for a new repository.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 72];
        getrandom::getrandom(&mut bytes).expect("the OS random source is available");
        Self::from_bytes(&bytes)
    }

    fn to_bytes(&self) -> [u8; 72] {
        let mut out = [0u8; 72];
        out[..32].copy_from_slice(&self.encryption_key);
        out[32..64].copy_from_slice(&self.id_key);
        out[64..].copy_from_slice(&self.chunker_seed.to_le_bytes());
        out
    }

    fn from_bytes(bytes: &[u8; 72]) -> Self {
        MasterKeys {
            encryption_key: bytes[..32].try_into().unwrap(),
            id_key: bytes[32..64].try_into().unwrap(),
            chunker_seed: u64::from_le_bytes(bytes[64..].try_into().unwrap()),
        }
    }

    /// The id of a blob: keyed BLAKE3 of its plaintext.
    pub fn blob_id(&self, data: &[u8]) -> BlobId {
        BlobId(*blake3::keyed_hash(&self.id_key, data).as_bytes())
    }
}

/// Seals and opens blobs and objects with the repository's AEAD (or passes them through
/// when the repository is unencrypted).
#[derive(Clone)]
pub enum Cipher {
    Aes256Gcm(Box<Aes256Gcm>),
    None,
}

impl Cipher {
    /// The cipher of a repository.
    pub fn new(encryption: Encryption, keys: &MasterKeys) -> Self {
        match encryption {
            Encryption::Aes256Gcm => Cipher::Aes256Gcm(Box::new(
                Aes256Gcm::new_from_slice(&keys.encryption_key).expect("32-byte key"),
            )),
            Encryption::None => Cipher::None,
        }
    }

    /// Bytes a sealed item has beyond its plaintext.
    pub fn overhead(&self) -> usize {
        match self {
            Cipher::Aes256Gcm(_) => NONCE_LEN + TAG_LEN,
            Cipher::None => 0,
        }
    }

    /// Seals `plain` as `nonce || ciphertext || tag`, with a random nonce.
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        match self {
            Cipher::Aes256Gcm(aead) => {
                let mut nonce = [0u8; NONCE_LEN];
                getrandom::getrandom(&mut nonce).expect("the OS random source is available");
                let mut out = Vec::with_capacity(plain.len() + NONCE_LEN + TAG_LEN);
                out.extend_from_slice(&nonce);
                let sealed = aead
                    .encrypt(Nonce::from_slice(&nonce), plain)
                    .expect("AES-GCM encryption cannot fail for in-memory data");
                out.extend_from_slice(&sealed);
                out
            }
            Cipher::None => plain.to_vec(),
        }
    }

    /// Opens a sealed item; fails when it was altered or sealed under another key.
    pub fn open(&self, sealed: &[u8], what: &str) -> RepoResult<Vec<u8>> {
        match self {
            Cipher::Aes256Gcm(aead) => {
                if sealed.len() < NONCE_LEN + TAG_LEN {
                    return Err(RepoError::corrupted(what, "too short to be sealed data"));
                }
                let (nonce, body) = sealed.split_at(NONCE_LEN);
                aead.decrypt(Nonce::from_slice(nonce), body)
                    .map_err(|_| RepoError::corrupted(what, "authentication failed"))
            }
            Cipher::None => Ok(sealed.to_vec()),
        }
    }
}

/// Argon2id cost parameters, stored with each key so they can be raised later.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// About a quarter of a second on a current core: slow for guessing, quick for users.
    fn default() -> Self {
        KdfParams {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
        }
    }
}

/// The `keys/<id>` object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyFile {
    /// "argon2id" for password-wrapped keys, "none" for unencrypted repositories.
    pub kdf: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<KdfParams>,
    /// Hex salt of the KDF.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub salt: String,
    /// Hex of the sealed (or, without encryption, plain) master keys.
    pub keys: String,
    /// Creation time, RFC 3339.
    pub created: String,
}

fn derive_wrapping_key(password: &str, salt: &[u8], params: KdfParams) -> RepoResult<[u8; 32]> {
    let argon = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            Some(32),
        )
        .map_err(|e| RepoError::corrupted("key parameters", e))?,
    );
    let mut out = [0u8; 32];
    argon
        .hash_password_into(password.as_bytes(), salt, &mut out)
        .map_err(|e| RepoError::corrupted("key derivation", e))?;
    Ok(out)
}

impl KeyFile {
    /// Wraps `keys` under `password` (or stores them plain when `password` is `None`,
    /// for unencrypted repositories).
    pub fn wrap(
        keys: &MasterKeys,
        password: Option<&str>,
        params: KdfParams,
        created: String,
    ) -> RepoResult<KeyFile> {
        let Some(password) = password else {
            return Ok(KeyFile {
                kdf: "none".into(),
                params: None,
                salt: String::new(),
                keys: hex::encode(keys.to_bytes()),
                created,
            });
        };
        let mut salt = [0u8; 16];
        getrandom::getrandom(&mut salt).expect("the OS random source is available");
        let wrapping = derive_wrapping_key(password, &salt, params)?;
        let cipher = Cipher::Aes256Gcm(Box::new(
            Aes256Gcm::new_from_slice(&wrapping).expect("32-byte key"),
        ));
        Ok(KeyFile {
            kdf: "argon2id".into(),
            params: Some(params),
            salt: hex::encode(salt),
            keys: hex::encode(cipher.seal(&keys.to_bytes())),
            created,
        })
    }

    /// Unwraps the master keys; `None` from a wrong password.
    pub fn unwrap_keys(&self, password: Option<&str>, repo: &str) -> RepoResult<MasterKeys> {
        let bad = |why: &str| RepoError::corrupted(format!("key file of {repo}"), why);
        let raw = hex::decode(&self.keys).map_err(|_| bad("keys are not hex"))?;
        let plain = match self.kdf.as_str() {
            "none" => raw,
            "argon2id" => {
                let password =
                    password.ok_or_else(|| RepoError::PasswordRequired(repo.to_string()))?;
                let params = self.params.ok_or_else(|| bad("missing KDF parameters"))?;
                let salt = hex::decode(&self.salt).map_err(|_| bad("salt is not hex"))?;
                let wrapping = derive_wrapping_key(password, &salt, params)?;
                let cipher = Cipher::Aes256Gcm(Box::new(
                    Aes256Gcm::new_from_slice(&wrapping).expect("32-byte key"),
                ));
                cipher
                    .open(&raw, "key")
                    .map_err(|_| RepoError::WrongPassword(repo.to_string()))?
            }
            other => return Err(bad(&format!("unknown KDF {other:?}"))),
        };
        let bytes: [u8; 72] = plain
            .as_slice()
            .try_into()
            .map_err(|_| bad("master keys have the wrong length"))?;
        Ok(MasterKeys::from_bytes(&bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: KdfParams = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn seal_open_roundtrip_and_tamper_detection() {
        let keys = MasterKeys::generate();
        let cipher = Cipher::new(Encryption::Aes256Gcm, &keys);
        let sealed = cipher.seal(b"secret pages");
        assert_eq!(sealed.len(), 12 + cipher.overhead());
        assert_eq!(cipher.open(&sealed, "t").unwrap(), b"secret pages");
        let mut tampered = sealed.clone();
        tampered[20] ^= 1;
        assert!(cipher.open(&tampered, "t").is_err());
        let other = Cipher::new(Encryption::Aes256Gcm, &MasterKeys::generate());
        assert!(other.open(&sealed, "t").is_err());
    }

    #[test]
    fn blob_ids_are_keyed() {
        let (a, b) = (MasterKeys::generate(), MasterKeys::generate());
        assert_eq!(a.blob_id(b"x"), a.blob_id(b"x"));
        assert_ne!(a.blob_id(b"x"), b.blob_id(b"x"));
    }

    #[test]
    fn key_files_unwrap_only_with_the_right_password() {
        let keys = MasterKeys::generate();
        let file = KeyFile::wrap(&keys, Some("pw"), FAST, "now".into()).unwrap();
        let back = file.unwrap_keys(Some("pw"), "r").unwrap();
        assert_eq!(back.id_key, keys.id_key);
        assert!(matches!(
            file.unwrap_keys(Some("nope"), "r"),
            Err(RepoError::WrongPassword(_))
        ));
        assert!(matches!(
            file.unwrap_keys(None, "r"),
            Err(RepoError::PasswordRequired(_))
        ));
        let plain = KeyFile::wrap(&keys, None, FAST, "now".into()).unwrap();
        assert_eq!(
            plain.unwrap_keys(None, "r").unwrap().encryption_key,
            keys.encryption_key
        );
    }
}
