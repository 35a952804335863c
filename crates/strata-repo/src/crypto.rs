//! Keys, blob ids and sealing.
//!
//! A repository has one set of [`MasterKeys`]: an AEAD key that seals every blob and
//! object, a BLAKE3 key that names blobs (so ids reveal nothing about content to someone
//! without the key), and the chunker seed. The master keys are stored in `keys/<id>`
//! objects, each wrapping them under a key derived from a password with Argon2id.

use crate::{BlobId, RepoError, RepoResult};
use aes_gcm::aead::{Aead, AeadInPlace, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use serde::{Deserialize, Serialize};

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

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
    // String: a parser of a setting; callers wrap the line at once (CoordinatorError::Invalid).
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

/// The secrets of a repository.
#[derive(Clone)]
pub struct MasterKeys {
    /// The AES-256-GCM key of every sealed object and blob.
    pub encryption_key: [u8; 32],
    /// The BLAKE3 key that names blobs (blob id = keyed hash of the plaintext).
    pub id_key: [u8; 32],
    /// Seeds the chunker's gear table, so chunk boundaries do not reveal content.
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

    /// A 32-byte key for one purpose, derived from the master keys (BLAKE3 `derive_key`
    /// over `encryption_key || id_key`), so no two uses share a key.
    pub fn derive(&self, context: &str) -> [u8; 32] {
        let mut material = [0u8; 64];
        material[..32].copy_from_slice(&self.encryption_key);
        material[32..].copy_from_slice(&self.id_key);
        blake3::derive_key(context, &material)
    }

    /// The id of a blob: keyed BLAKE3 of its plaintext.
    pub fn blob_id(&self, data: &[u8]) -> BlobId {
        BlobId(*blake3::keyed_hash(&self.id_key, data).as_bytes())
    }
}

/// Seals and opens blobs and objects with the repository's AEAD (or passes them through
/// when the repository is unencrypted).
#[derive(Clone)]
pub struct Cipher {
    aead: Option<Box<Aes256Gcm>>,
    /// Whether objects of format version 1 (sealed without associated data, so not bound
    /// to their names) are accepted: only in repositories whose config says version 1.
    accept_v1_objects: bool,
}

impl Cipher {
    /// The cipher of a repository.
    pub fn new(encryption: Encryption, keys: &MasterKeys) -> Self {
        match encryption {
            Encryption::Aes256Gcm => Cipher::from_key(&keys.encryption_key),
            Encryption::None => Cipher {
                aead: None,
                accept_v1_objects: false,
            },
        }
    }

    fn from_key(key: &[u8; 32]) -> Self {
        Cipher {
            aead: Some(Box::new(
                Aes256Gcm::new_from_slice(key).expect("32-byte key"),
            )),
            accept_v1_objects: false,
        }
    }

    /// The same cipher, accepting (or not) version-1 objects, which carry no associated
    /// data: see `docs/format.md`, "Version 1 repositories".
    pub fn accepting_v1_objects(mut self, accept: bool) -> Self {
        self.accept_v1_objects = accept;
        self
    }

    /// Whether version-1 objects (not bound to their names) are accepted.
    pub fn accepts_v1_objects(&self) -> bool {
        self.accept_v1_objects
    }

    /// Whether this cipher encrypts (false for unencrypted repositories).
    pub fn is_encrypted(&self) -> bool {
        self.aead.is_some()
    }

    /// Bytes a sealed item has beyond its plaintext.
    pub fn overhead(&self) -> usize {
        match self.aead {
            Some(_) => NONCE_LEN + TAG_LEN,
            None => 0,
        }
    }

    /// Seals `plain` as `nonce || ciphertext || tag`, with a random nonce and no associated
    /// data: the path of blobs, which are bound to their keyed ids instead.
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        self.seal_with(plain, &[])
    }

    /// Seals `plain` with associated data `ad`: opening needs the same `ad`.
    pub fn seal_with(&self, plain: &[u8], ad: &[u8]) -> Vec<u8> {
        match &self.aead {
            Some(aead) => {
                let mut nonce = [0u8; NONCE_LEN];
                getrandom::getrandom(&mut nonce).expect("the OS random source is available");
                let mut out = Vec::with_capacity(plain.len() + NONCE_LEN + TAG_LEN);
                out.extend_from_slice(&nonce);
                let sealed = aead
                    .encrypt(
                        Nonce::from_slice(&nonce),
                        Payload {
                            msg: plain,
                            aad: ad,
                        },
                    )
                    .expect("AES-GCM encryption cannot fail for in-memory data");
                out.extend_from_slice(&sealed);
                out
            }
            None => plain.to_vec(),
        }
    }

    /// [`Cipher::open_with`] where the item lies: `sealed` is decrypted in place, and the
    /// range of it the plaintext occupies is returned (a large object is then never held
    /// twice).
    pub fn open_in_place(
        &self,
        sealed: &mut [u8],
        ad: &[u8],
        what: &str,
    ) -> RepoResult<std::ops::Range<usize>> {
        let len = sealed.len();
        match &self.aead {
            Some(aead) => {
                if len < NONCE_LEN + TAG_LEN {
                    return Err(RepoError::corrupted(what, "too short to be sealed data"));
                }
                let (nonce, rest) = sealed.split_at_mut(NONCE_LEN);
                let (body, tag) = rest.split_at_mut(len - NONCE_LEN - TAG_LEN);
                aead.decrypt_in_place_detached(
                    Nonce::from_slice(nonce),
                    ad,
                    body,
                    Tag::from_slice(tag),
                )
                .map_err(|_| RepoError::corrupted(what, "authentication failed"))?;
                Ok(NONCE_LEN..len - TAG_LEN)
            }
            None => Ok(0..len),
        }
    }

    /// Opens a sealed item; fails when it was altered or sealed under another key.
    pub fn open(&self, sealed: &[u8], what: &str) -> RepoResult<Vec<u8>> {
        self.open_with(sealed, &[], what)
    }

    /// Opens an item sealed by [`Cipher::seal_with`] with the same `ad`.
    pub fn open_with(&self, sealed: &[u8], ad: &[u8], what: &str) -> RepoResult<Vec<u8>> {
        match &self.aead {
            Some(aead) => {
                if sealed.len() < NONCE_LEN + TAG_LEN {
                    return Err(RepoError::corrupted(what, "too short to be sealed data"));
                }
                let (nonce, body) = sealed.split_at(NONCE_LEN);
                aead.decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad: ad })
                    .map_err(|_| RepoError::corrupted(what, "authentication failed"))
            }
            None => Ok(sealed.to_vec()),
        }
    }
}

/// Argon2id cost parameters, stored with each key so they can be raised later.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes (threads) Argon2id runs.
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

/// Largest Argon2 memory a key file may ask for: 1 GiB (in KiB), 16 times the default.
pub const MAX_KDF_MEMORY_KIB: u32 = 1024 * 1024;
/// Largest memory times iterations (KiB passes): 4 GiB, so one key costs at most a few
/// seconds of one core, however its parameters are mixed.
pub const MAX_KDF_WORK_KIB: u64 = 4 * 1024 * 1024;
/// Largest Argon2 iteration count a key file may ask for.
pub const MAX_KDF_ITERATIONS: u32 = 64;
/// Largest Argon2 parallelism a key file may ask for.
pub const MAX_KDF_PARALLELISM: u32 = 64;
/// Accepted salt lengths, in bytes (strata writes 16).
pub const SALT_LEN: std::ops::RangeInclusive<usize> = 16..=64;

impl KdfParams {
    /// Whether deriving with these parameters costs more than with the defaults: more
    /// memory, or more memory times passes. Such a key is tried only after every other
    /// key failed (see `key_files::unlock`), so a key file planted in `keys/` cannot make
    /// every command pay for it.
    pub fn costs_more_than_default(&self) -> bool {
        let default = KdfParams::default();
        let work = |p: &KdfParams| p.memory_kib as u64 * p.iterations as u64;
        self.memory_kib > default.memory_kib || work(self) > work(&default)
    }

    /// Checks the parameters against the bounds above: a key file is read from storage
    /// that others may write, and unbounded parameters would let them exhaust memory or CPU.
    pub fn check(&self) -> Result<(), KdfOutOfBounds> {
        let p = self.parallelism;
        if !(1..=MAX_KDF_PARALLELISM).contains(&p) {
            return Err(KdfOutOfBounds::Parallelism(p));
        }
        let i = self.iterations;
        if !(1..=MAX_KDF_ITERATIONS).contains(&i) {
            return Err(KdfOutOfBounds::Iterations(i));
        }
        let m = self.memory_kib;
        if m < 8 * p || m > MAX_KDF_MEMORY_KIB {
            return Err(KdfOutOfBounds::Memory {
                memory_kib: m,
                parallelism: p,
            });
        }
        if m as u64 * i as u64 > MAX_KDF_WORK_KIB {
            return Err(KdfOutOfBounds::Work {
                memory_kib: m,
                iterations: i,
            });
        }
        Ok(())
    }
}

/// Argon2 parameters outside what a key file may ask for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KdfOutOfBounds {
    /// Lanes outside 1..=[`MAX_KDF_PARALLELISM`].
    #[error("Argon2 parallelism {0} is outside 1..={max}", max = MAX_KDF_PARALLELISM)]
    Parallelism(u32),
    /// Passes outside 1..=[`MAX_KDF_ITERATIONS`].
    #[error("Argon2 iterations {0} is outside 1..={max}", max = MAX_KDF_ITERATIONS)]
    Iterations(u32),
    /// Memory below 8 KiB a lane or above [`MAX_KDF_MEMORY_KIB`].
    #[error(
        "Argon2 memory {memory_kib} KiB is outside {min}..={max} KiB",
        min = 8 * .parallelism,
        max = MAX_KDF_MEMORY_KIB
    )]
    Memory {
        /// The memory asked for, in KiB.
        memory_kib: u32,
        /// The lanes asked for.
        parallelism: u32,
    },
    /// Memory times passes above [`MAX_KDF_WORK_KIB`].
    #[error(
        "Argon2 memory times iterations ({memory_kib} KiB x {iterations}) is above {max} KiB",
        max = MAX_KDF_WORK_KIB
    )]
    Work {
        /// The memory asked for, in KiB.
        memory_kib: u32,
        /// The passes asked for.
        iterations: u32,
    },
}

/// Why a `keys/<id>` object is not a usable key file.
#[derive(Debug, thiserror::Error)]
pub enum BadKeyFile {
    /// Larger than any key file.
    #[error("key file larger than 64 KiB")]
    TooLarge,
    /// Not a key file's JSON.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// Plain keys of the wrong length.
    #[error("plain keys have the wrong length")]
    PlainLength,
    /// Wrapped keys without their KDF parameters.
    #[error("no KDF parameters")]
    NoParams,
    /// KDF parameters out of bounds.
    #[error(transparent)]
    Kdf(#[from] KdfOutOfBounds),
    /// A salt of the wrong length.
    #[error("salt must be {}..={} bytes", SALT_LEN.start(), SALT_LEN.end())]
    Salt,
    /// Wrapped keys of the wrong length.
    #[error("wrapped keys have the wrong length")]
    WrappedLength,
    /// A KDF this strata does not know.
    #[error("unknown KDF {0:?}")]
    UnknownKdf(String),
    /// A repository id longer than any.
    #[error("repository id too long")]
    RepoIdTooLong,
}

/// The `keys/<id>` object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyFile {
    /// "argon2id" for password-wrapped keys, "none" for unencrypted repositories.
    pub kdf: String,
    /// Argon2id cost of the wrapping key; `None` when `kdf` is "none".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<KdfParams>,
    /// Hex salt of the KDF.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub salt: String,
    /// Hex of the sealed (or, without encryption, plain) master keys.
    pub keys: String,
    /// Creation time, RFC 3339.
    pub created: String,
    /// The id of the repository the key belongs to (format version 2). When present, the
    /// wrapped keys are sealed with associated data `"strata-key\0" || repo`, so the field
    /// can be neither removed nor changed; absent in version-1 key files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
}

/// Length of the serialized master keys.
const MASTER_LEN: usize = 72;

/// Why a key file was not used.
#[derive(Debug)]
pub enum KeyRejection {
    /// The password does not unwrap it (or it belongs to someone else's password).
    NotUnwrapped,
    /// A password-wrapped key and no password was given.
    NeedsPassword,
    /// It is malformed, out of bounds or not of this repository: the reason.
    Unusable(String),
}

#[cfg(test)]
thread_local! {
    /// Argon2 derivations run on this thread, so tests can tell a key was never tried.
    pub(crate) static DERIVATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn derive_wrapping_key(password: &str, salt: &[u8], params: KdfParams) -> RepoResult<[u8; 32]> {
    params
        .check()
        .map_err(|e| RepoError::corrupted("key parameters", e))?;
    #[cfg(test)]
    DERIVATIONS.with(|d| d.set(d.get() + 1));
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

/// The associated data of wrapped keys bound to repository `repo`.
fn key_ad(repo: &str) -> Vec<u8> {
    let mut ad = b"strata-key\0".to_vec();
    ad.extend_from_slice(repo.as_bytes());
    ad
}

impl KeyFile {
    /// Wraps `keys` under `password` (or stores them plain when `password` is `None`,
    /// for unencrypted repositories), bound to repository `repo`.
    pub fn wrap(
        keys: &MasterKeys,
        password: Option<&str>,
        params: KdfParams,
        created: String,
        repo: &str,
    ) -> RepoResult<KeyFile> {
        let Some(password) = password else {
            return Ok(KeyFile {
                kdf: "none".into(),
                params: None,
                salt: String::new(),
                keys: hex::encode(keys.to_bytes()),
                created,
                repo: Some(repo.to_string()),
            });
        };
        let mut salt = [0u8; 16];
        getrandom::getrandom(&mut salt).expect("the OS random source is available");
        let wrapping = derive_wrapping_key(password, &salt, params)?;
        let cipher = Cipher::from_key(&wrapping);
        Ok(KeyFile {
            kdf: "argon2id".into(),
            params: Some(params),
            salt: hex::encode(salt),
            keys: hex::encode(cipher.seal_with(&keys.to_bytes(), &key_ad(repo))),
            created,
            repo: Some(repo.to_string()),
        })
    }

    /// Parses a key file, checking its shape before any work is done on it: known KDF,
    /// bounded parameters, salt and key lengths. Never allocates by a length it reads.
    pub fn parse(bytes: &[u8]) -> Result<KeyFile, BadKeyFile> {
        if bytes.len() > 64 * 1024 {
            return Err(BadKeyFile::TooLarge);
        }
        let file: KeyFile = serde_json::from_slice(bytes)?;
        match file.kdf.as_str() {
            "none" => {
                if file.keys.len() != 2 * MASTER_LEN {
                    return Err(BadKeyFile::PlainLength);
                }
            }
            "argon2id" => {
                let params = file.params.ok_or(BadKeyFile::NoParams)?;
                params.check()?;
                if !file.salt.len().is_multiple_of(2) || !SALT_LEN.contains(&(file.salt.len() / 2))
                {
                    return Err(BadKeyFile::Salt);
                }
                if file.keys.len() != 2 * (MASTER_LEN + NONCE_LEN + TAG_LEN) {
                    return Err(BadKeyFile::WrappedLength);
                }
            }
            other => return Err(BadKeyFile::UnknownKdf(other.to_string())),
        }
        if let Some(repo) = &file.repo {
            if repo.len() > 64 {
                return Err(BadKeyFile::RepoIdTooLong);
            }
        }
        Ok(file)
    }

    /// Unwraps the master keys of repository `repo_id` (checks the binding of bound keys).
    pub fn unwrap_for(
        &self,
        password: Option<&str>,
        repo_id: &str,
    ) -> Result<MasterKeys, KeyRejection> {
        let unusable = |why: &str| KeyRejection::Unusable(why.to_string());
        if let Some(bound) = &self.repo {
            if bound != repo_id {
                return Err(KeyRejection::Unusable(format!(
                    "belongs to repository {bound:?}, not {repo_id:?}"
                )));
            }
        }
        let raw = hex::decode(&self.keys).map_err(|_| unusable("keys are not hex"))?;
        let plain = match self.kdf.as_str() {
            "none" => raw,
            "argon2id" => {
                let password = password.ok_or(KeyRejection::NeedsPassword)?;
                let params = self
                    .params
                    .ok_or_else(|| unusable("missing KDF parameters"))?;
                let salt = hex::decode(&self.salt).map_err(|_| unusable("salt is not hex"))?;
                if !SALT_LEN.contains(&salt.len()) {
                    return Err(unusable("salt has the wrong length"));
                }
                let wrapping = derive_wrapping_key(password, &salt, params)
                    .map_err(|e| KeyRejection::Unusable(e.to_string()))?;
                let ad = match &self.repo {
                    Some(repo) => key_ad(repo),
                    None => Vec::new(),
                };
                Cipher::from_key(&wrapping)
                    .open_with(&raw, &ad, "key")
                    .map_err(|_| KeyRejection::NotUnwrapped)?
            }
            other => return Err(KeyRejection::Unusable(format!("unknown KDF {other:?}"))),
        };
        let bytes: [u8; MASTER_LEN] = plain
            .as_slice()
            .try_into()
            .map_err(|_| unusable("master keys have the wrong length"))?;
        Ok(MasterKeys::from_bytes(&bytes))
    }

    /// Unwraps the master keys; the errors of a single key file (see
    /// [`KeyFile::unwrap_for`] for the rules a repository applies to several).
    pub fn unwrap_keys(&self, password: Option<&str>, repo: &str) -> RepoResult<MasterKeys> {
        let repo_id = self.repo.clone().unwrap_or_default();
        self.unwrap_for(password, &repo_id).map_err(|e| match e {
            KeyRejection::NotUnwrapped => RepoError::WrongPassword(repo.to_string()),
            KeyRejection::NeedsPassword => RepoError::PasswordRequired(repo.to_string()),
            KeyRejection::Unusable(why) => RepoError::corrupted(format!("key file of {repo}"), why),
        })
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
        let file = KeyFile::wrap(&keys, Some("pw"), FAST, "now".into(), "r").unwrap();
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
        let plain = KeyFile::wrap(&keys, None, FAST, "now".into(), "r").unwrap();
        assert_eq!(
            plain.unwrap_keys(None, "r").unwrap().encryption_key,
            keys.encryption_key
        );
    }
}
