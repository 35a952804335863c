//! A reader of the repository format written from `docs/format.md` alone, the way a
//! third party would write one in another language: it uses no type or function of this
//! crate, only general crates (aes-gcm, argon2, blake3, zstd, hex, serde_json, humantime) and its own
//! small postcard decoder. It opens the checked-in repository
//! `tests/fixtures/format-v2/repo` (one backup of `tests/fixtures/format-v2/src`, made
//! with `strata init`, `backup`, `pin` and `verify --read-data`), checks every
//! authentication the document describes, decodes every kind of object, restores every
//! file in memory and compares it byte for byte with the source tree, and re-chunks the
//! source files with the documented chunker to find the same blob ids.
//!
//! When this test fails after a format change, either the change broke compatibility or
//! `docs/format.md` no longer says what the engine writes: fix the one that is wrong.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The password the fixture was made with.
const PASSWORD: &str = "format-fixture-password";
/// Its one backup and node.
const BACKUP: &str = "20261125T093816Z-82d1797d";
const NODE: &str = "n1";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-v2")
}

fn read(key: &str) -> Vec<u8> {
    let path = fixture().join("repo").join(key);
    fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Object keys under `prefix` (a directory of the local store), sorted.
fn list(prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![prefix.trim_end_matches('/').to_string()];
    while let Some(dir) = stack.pop() {
        let Ok(listing) = fs::read_dir(fixture().join("repo").join(&dir)) else {
            continue;
        };
        for entry in listing {
            let entry = entry.unwrap();
            let key = format!("{dir}/{}", entry.file_name().to_str().unwrap());
            if entry.file_type().unwrap().is_dir() {
                stack.push(key);
            } else if !entry.file_name().to_str().unwrap().starts_with(".tmp-") {
                out.push(key);
            }
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------
// Postcard, as "Encoding of binary objects" describes it.

/// A cursor over a postcard payload. Every read is bounds-checked: a short or malformed
/// payload is an error, never a panic or a large allocation.
struct Postcard<'a> {
    buf: &'a [u8],
    at: usize,
}

type Decoded<T> = Result<T, String>;

impl<'a> Postcard<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Postcard { buf, at: 0 }
    }

    fn take(&mut self, n: usize) -> Decoded<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or_else(|| format!("truncated at byte {}", self.at))?;
        let out = &self.buf[self.at..end];
        self.at = end;
        Ok(out)
    }

    /// Unsigned LEB128: 7 bits per byte, least significant group first, high bit set on
    /// every byte but the last; at most 10 bytes for a u64.
    fn varint(&mut self) -> Decoded<u64> {
        let mut value = 0u64;
        for i in 0..10 {
            let byte = self.take(1)?[0];
            let bits = (byte & 0x7f) as u64;
            if i == 9 && bits > 1 {
                return Err("varint overflows u64".into());
            }
            value |= bits << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn u32(&mut self) -> Decoded<u32> {
        u32::try_from(self.varint()?).map_err(|_| "varint overflows u32".to_string())
    }

    /// Zigzag: 0, -1, 1, -2, ... are encoded as 0, 1, 2, 3, ... then as a varint.
    fn i64(&mut self) -> Decoded<i64> {
        let z = self.varint()?;
        Ok((z >> 1) as i64 ^ -((z & 1) as i64))
    }

    fn bool(&mut self) -> Decoded<bool> {
        match self.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(format!("bool byte {other}")),
        }
    }

    /// A length (of a sequence or byte string), bounded by what is left.
    fn len(&mut self) -> Decoded<usize> {
        let n = self.varint()?;
        if n > (self.buf.len() - self.at) as u64 {
            return Err(format!("length {n} beyond the payload"));
        }
        Ok(n as usize)
    }

    fn bytes(&mut self) -> Decoded<Vec<u8>> {
        let n = self.len()?;
        Ok(self.take(n)?.to_vec())
    }

    fn string(&mut self) -> Decoded<String> {
        String::from_utf8(self.bytes()?).map_err(|_| "string is not UTF-8".to_string())
    }

    /// A 32-byte id: the raw bytes, no length.
    fn id(&mut self) -> Decoded<[u8; 32]> {
        Ok(self.take(32)?.try_into().unwrap())
    }

    fn seq<T>(&mut self, mut item: impl FnMut(&mut Self) -> Decoded<T>) -> Decoded<Vec<T>> {
        let n = self.len()?;
        (0..n).map(|_| item(self)).collect()
    }

    fn end(&self) -> Decoded<()> {
        if self.at == self.buf.len() {
            Ok(())
        } else {
            Err(format!(
                "{} bytes after the value",
                self.buf.len() - self.at
            ))
        }
    }
}

// ---------------------------------------------------------------------------------------
// The structures, field by field as documented.

#[derive(Debug, Clone, Copy, PartialEq)]
struct BlobEntry {
    id: [u8; 32],
    offset: u64,
    length: u32,
    raw_length: u32,
    compressed: bool,
}

fn blob_entry(p: &mut Postcard) -> Decoded<BlobEntry> {
    Ok(BlobEntry {
        id: p.id()?,
        offset: p.varint()?,
        length: p.u32()?,
        raw_length: p.u32()?,
        compressed: p.bool()?,
    })
}

struct IndexedPack {
    id: [u8; 32],
    size: u64,
    blobs: Vec<BlobEntry>,
}

fn index_file(payload: &[u8]) -> Decoded<Vec<IndexedPack>> {
    let mut p = Postcard::new(payload);
    let packs = p.seq(|p| {
        Ok(IndexedPack {
            id: p.id()?,
            size: p.varint()?,
            blobs: p.seq(blob_entry)?,
        })
    })?;
    p.end()?;
    Ok(packs)
}

fn pack_header(payload: &[u8]) -> Decoded<Vec<BlobEntry>> {
    let mut p = Postcard::new(payload);
    let entries = p.seq(blob_entry)?;
    p.end()?;
    Ok(entries)
}

#[derive(Debug)]
enum Kind {
    Dir,
    File { size: u64, chunks: Vec<[u8; 32]> },
    Symlink { target: Vec<u8> },
    HardLink { target: Vec<u8> },
}

#[derive(Debug)]
struct Entry {
    path: Vec<u8>,
    kind: Kind,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime_ns: i64,
    /// Version 3: (name, value) of each extended attribute.
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

struct Manifest {
    node: String,
    roots: Vec<String>,
    entries: Vec<Entry>,
}

/// A manifest payload of format `version` (its object header's): version 3 entries end
/// with their extended attributes.
fn manifest(payload: &[u8], version: u16) -> Decoded<Manifest> {
    let mut p = Postcard::new(payload);
    let node = p.string()?;
    let roots = p.seq(|p| p.string())?;
    let entries = p.seq(|p| {
        let path = p.bytes()?;
        let kind = match p.u32()? {
            0 => Kind::Dir,
            1 => Kind::File {
                size: p.varint()?,
                chunks: p.seq(|p| p.id())?,
            },
            2 => Kind::Symlink { target: p.bytes()? },
            3 => Kind::HardLink { target: p.bytes()? },
            tag => return Err(format!("unknown entry kind {tag}")),
        };
        let (mode, uid, gid, mtime_ns) = (p.u32()?, p.u32()?, p.u32()?, p.i64()?);
        let xattrs = if version >= 3 {
            p.seq(|p| Ok((p.bytes()?, p.bytes()?)))?
        } else {
            Vec::new()
        };
        Ok(Entry {
            path,
            kind,
            mode,
            uid,
            gid,
            mtime_ns,
            xattrs,
        })
    })?;
    p.end()?;
    Ok(Manifest {
        node,
        roots,
        entries,
    })
}

// ---------------------------------------------------------------------------------------
// Keys and sealing.

struct MasterKeys {
    encryption: [u8; 32],
    id: [u8; 32],
    chunker_seed: u64,
}

/// `nonce (12) || ciphertext || tag (16)` under `key` with associated data `ad`.
fn open(key: &[u8; 32], sealed: &[u8], ad: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < 28 {
        return None;
    }
    let (nonce, body) = sealed.split_at(12);
    Aes256Gcm::new_from_slice(key)
        .unwrap()
        .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad: ad })
        .ok()
}

fn unwrap_key_file(file: &Value, password: &str) -> MasterKeys {
    assert_eq!(file["kdf"], "argon2id");
    let params = &file["params"];
    let number = |name: &str| params[name].as_u64().unwrap() as u32;
    let salt = hex::decode(file["salt"].as_str().unwrap()).unwrap();
    let argon = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(
            number("memory_kib"),
            number("iterations"),
            number("parallelism"),
            Some(32),
        )
        .unwrap(),
    );
    let mut wrapping = [0u8; 32];
    argon
        .hash_password_into(password.as_bytes(), &salt, &mut wrapping)
        .unwrap();
    let mut ad = b"strata-key\0".to_vec();
    ad.extend_from_slice(file["repo"].as_str().unwrap().as_bytes());
    let sealed = hex::decode(file["keys"].as_str().unwrap()).unwrap();
    assert_eq!(sealed.len(), 100, "72 bytes of keys, nonce and tag");
    assert!(
        open(&wrapping, &sealed, &[]).is_none(),
        "the wrapped keys are bound to the repository id"
    );
    let plain = open(&wrapping, &sealed, &ad).expect("the password unwraps the key");
    assert_eq!(plain.len(), 72);
    MasterKeys {
        encryption: plain[..32].try_into().unwrap(),
        id: plain[32..64].try_into().unwrap(),
        chunker_seed: u64::from_le_bytes(plain[64..].try_into().unwrap()),
    }
}

fn config_mac(config: &Value, keys: &MasterKeys) -> [u8; 32] {
    let mut material = keys.encryption.to_vec();
    material.extend_from_slice(&keys.id);
    let mac_key = blake3::derive_key("strata 2026-11 config mac v2", &material);
    let mut input = b"strata-config\0".to_vec();
    input.extend_from_slice(&(config["version"].as_u64().unwrap() as u32).to_le_bytes());
    let text = |input: &mut Vec<u8>, s: &str| {
        input.extend_from_slice(&(s.len() as u32).to_le_bytes());
        input.extend_from_slice(s.as_bytes());
    };
    text(&mut input, config["format"].as_str().unwrap());
    text(&mut input, config["id"].as_str().unwrap());
    input.push(match config["encryption"].as_str().unwrap() {
        "none" => 0,
        "aes256-gcm" => 1,
        other => panic!("unknown cipher {other}"),
    });
    for chunker in ["chunker", "page_chunker"] {
        for field in ["min", "avg", "max", "align"] {
            let v = config[chunker][field].as_u64().unwrap() as u32;
            input.extend_from_slice(&v.to_le_bytes());
        }
    }
    text(&mut input, config["created"].as_str().unwrap());
    *blake3::keyed_hash(&mac_key, &input).as_bytes()
}

/// Opens an encoded object: `"STRO" | kind | version (u16 LE) | sealed zstd payload`,
/// sealed with the 7-byte header and the object's name as associated data.
fn open_object(keys: &MasterKeys, kind: u8, name: &str, bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.len() < 7 || &bytes[..4] != b"STRO" || bytes[4] != kind {
        return None;
    }
    assert_eq!(u16::from_le_bytes([bytes[5], bytes[6]]), 2);
    let mut ad = bytes[..7].to_vec();
    ad.extend_from_slice(name.as_bytes());
    let compressed = open(&keys.encryption, &bytes[7..], &ad)?;
    Some(zstd::stream::decode_all(&compressed[..]).expect("a zstd frame"))
}

fn object(keys: &MasterKeys, kind: u8, name: &str) -> Vec<u8> {
    open_object(keys, kind, name, &read(name))
        .unwrap_or_else(|| panic!("{name} does not open as kind {kind} under its name"))
}

// ---------------------------------------------------------------------------------------
// The chunker, as "Chunking" describes it.

struct Chunker {
    min: usize,
    avg: usize,
    max: usize,
    align: usize,
    gear: [u64; 256],
    mask_hard: u64,
    mask_easy: u64,
}

impl Chunker {
    fn new(params: &Value, seed: u64) -> Chunker {
        let field = |name: &str| params[name].as_u64().unwrap() as usize;
        let mut state = seed;
        let mut gear = [0u64; 256];
        for slot in gear.iter_mut() {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            *slot = z ^ (z >> 31);
        }
        let bits = field("avg").trailing_zeros();
        let top = |n: u32| !0u64 << (64 - n);
        Chunker {
            min: field("min"),
            avg: field("avg"),
            max: field("max"),
            align: field("align"),
            gear,
            mask_hard: top(bits + 2),
            mask_easy: top(bits.saturating_sub(2).max(1)),
        }
    }

    /// The length of the chunk starting at `data[0]` (`data` = the rest of the file).
    fn cut(&self, data: &[u8]) -> usize {
        let n = data.len();
        if n <= self.min {
            return n;
        }
        let end = n.min(self.max);
        let center = end.min(self.avg);
        let roll = |h: u64, b: u8| (h << 1).wrapping_add(self.gear[b as usize]);
        let mut hash = data[self.min.saturating_sub(64)..self.min]
            .iter()
            .fold(0u64, |h, &b| roll(h, b));
        let mut cut = end;
        let mut i = self.min;
        let mut found = false;
        while i < center {
            hash = roll(hash, data[i]);
            i += 1;
            if hash & self.mask_hard == 0 {
                (cut, found) = (i, true);
                break;
            }
        }
        while !found && i < end {
            hash = roll(hash, data[i]);
            i += 1;
            if hash & self.mask_easy == 0 {
                (cut, found) = (i, true);
            }
        }
        if self.align > 0 && cut < n {
            cut = cut.div_ceil(self.align) * self.align;
        }
        cut.min(n)
    }
}

// ---------------------------------------------------------------------------------------

/// What the source tree holds: per relative path, a directory (`None`) or the bytes of a
/// file or of a symlink's target. Git keeps neither empty directories nor hard links:
/// `empty/` was an empty directory and `sub/again.md` a hard link of `notes.md` when the
/// fixture was made; the checkout has no `empty/` and `again.md` as a copy.
fn source_tree() -> BTreeMap<Vec<u8>, (char, Vec<u8>)> {
    let root = fixture().join("src");
    let mut out = BTreeMap::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(&root)
                .unwrap()
                .as_os_str()
                .as_encoded_bytes();
            let meta = fs::symlink_metadata(&path).unwrap();
            let value = if meta.is_dir() {
                stack.push(path.clone());
                ('d', Vec::new())
            } else if meta.is_symlink() {
                (
                    'l',
                    fs::read_link(&path)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                )
            } else {
                ('f', fs::read(&path).unwrap())
            };
            out.insert(rel.to_vec(), value);
        }
    }
    out.insert(b"empty".to_vec(), ('d', Vec::new()));
    out
}

#[test]
fn a_reader_written_from_the_format_document_restores_the_fixture_byte_for_byte() {
    // config: plain JSON, format and version checked before anything else.
    let config: Value = serde_json::from_slice(&read("config")).unwrap();
    assert_eq!(config["format"], "strata");
    assert_eq!(config["version"], 2);
    assert_eq!(config["encryption"], "aes256-gcm");
    let repo_id = config["id"].as_str().unwrap();

    // keys/<id>: the id is the first 16 bytes of the BLAKE3 of the file, hex.
    let key_names = list("keys/");
    assert_eq!(key_names.len(), 1);
    let key_bytes = read(&key_names[0]);
    assert_eq!(
        key_names[0],
        format!(
            "keys/{}",
            hex::encode(&blake3::hash(&key_bytes).as_bytes()[..16])
        )
    );
    let key_file: Value = serde_json::from_slice(&key_bytes).unwrap();
    assert_eq!(key_file["repo"], repo_id);
    let keys = unwrap_key_file(&key_file, PASSWORD);

    // The config MAC, under the unwrapped keys.
    let mac = hex::decode(config["mac"].as_str().unwrap()).unwrap();
    assert_eq!(mac, config_mac(&config, &keys), "the config MAC");
    let mut edited = config.clone();
    edited["page_chunker"]["align"] = 0.into();
    assert_ne!(mac, config_mac(&edited, &keys), "an edited config fails");

    // summaries/<backup>: kind 3, JSON.
    let summary_name = format!("summaries/{BACKUP}");
    let summary: Value = serde_json::from_slice(&object(&keys, 3, &summary_name)).unwrap();
    assert_eq!(summary["name"], BACKUP);
    assert_eq!(summary["status"], "complete");
    let node = &summary["nodes"][0];
    assert_eq!(node["name"], NODE);
    assert_eq!(node["has_manifest"], true);
    assert!(summary["requests"]["put"].as_u64().unwrap() > 0);
    // Bound to its name and kind: the same bytes do not open as anything else.
    let summary_bytes = read(&summary_name);
    assert!(open_object(&keys, 3, "summaries/other", &summary_bytes).is_none());
    let mut relabelled = summary_bytes.clone();
    relabelled[4] = 6;
    assert!(open_object(&keys, 6, &summary_name, &relabelled).is_none());

    // index/<id>: kind 1, postcard; the id is 32 random bytes, hex.
    let index_names = list("index/");
    assert_eq!(index_names.len(), 1);
    assert_eq!(index_names[0].len(), "index/".len() + 64);
    let packs = index_file(&object(&keys, 1, &index_names[0])).unwrap();
    let mut blobs: HashMap<[u8; 32], (Vec<u8>, BlobEntry)> = HashMap::new();
    let mut saw_compressed = [false, false];
    for pack in &packs {
        // data/<xx>/<pack id>: the plain BLAKE3 of the whole pack.
        let hex_id = hex::encode(pack.id);
        let bytes = read(&format!("data/{}/{hex_id}", &hex_id[..2]));
        assert_eq!(bytes.len() as u64, pack.size);
        assert_eq!(*blake3::hash(&bytes).as_bytes(), pack.id);
        // Trailer: header length (u32 LE) and "STRPACK1"; the header is kind 4, bound
        // to its 7-byte header only (empty name).
        let (rest, magic) = bytes.split_at(bytes.len() - 8);
        assert_eq!(magic, b"STRPACK1");
        let (rest, len) = rest.split_at(rest.len() - 4);
        let header_len = u32::from_le_bytes(len.try_into().unwrap()) as usize;
        let header_start = rest.len() - header_len;
        let header = open_object(&keys, 4, "", &rest[header_start..]).expect("pack header");
        let entries = pack_header(&header).unwrap();
        assert_eq!(entries, pack.blobs, "the index repeats the pack header");
        for entry in entries {
            assert!(entry.offset + entry.length as u64 <= header_start as u64);
            saw_compressed[entry.compressed as usize] = true;
            blobs.insert(entry.id, (bytes.clone(), entry));
        }
    }
    assert_eq!(saw_compressed, [true, true], "raw and compressed blobs");

    // A blob: sealed without associated data; zstd when `compressed`; its id is the
    // keyed BLAKE3 of the plaintext.
    let read_blob = |id: &[u8; 32]| -> Vec<u8> {
        let (pack, entry) = blobs.get(id).expect("every chunk is in the index");
        let sealed = &pack[entry.offset as usize..][..entry.length as usize];
        let body = open(&keys.encryption, sealed, &[]).expect("the blob opens");
        let plain = if entry.compressed {
            zstd::stream::decode_all(&body[..]).unwrap()
        } else {
            body
        };
        assert_eq!(plain.len(), entry.raw_length as usize);
        assert_eq!(blake3::keyed_hash(&keys.id, &plain).as_bytes(), id);
        plain
    };

    // manifests/<backup>/<node>: kind 2, postcard.
    let manifest_name = format!("manifests/{BACKUP}/{NODE}");
    let manifest = manifest(&object(&keys, 2, &manifest_name), 2).unwrap();
    assert!(manifest.entries.iter().all(|e| e.xattrs.is_empty()));
    assert_eq!(manifest.node, NODE);
    assert_eq!(manifest.roots.len(), 1);
    let root = &manifest.entries[0];
    assert!(
        root.path.is_empty() && matches!(root.kind, Kind::Dir),
        "the root entry"
    );

    // Restore in memory and compare with the source tree.
    let gear_seed = keys.chunker_seed;
    let generic = Chunker::new(&config["chunker"], gear_seed);
    let pages = Chunker::new(&config["page_chunker"], gear_seed);
    let started = humantime::parse_rfc3339(summary["started"].as_str().unwrap()).unwrap();
    let started_ns = started
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let mut restored: BTreeMap<Vec<u8>, (char, Vec<u8>)> = BTreeMap::new();
    let mut previous: Option<&[u8]> = None;
    let mut chunk_counts = Vec::new();
    for entry in &manifest.entries[1..] {
        assert!(entry.mode <= 0o7777, "permission bits only");
        // The tree was written shortly before the backup started.
        assert!(
            (started_ns - 3_600_000_000_000..=started_ns).contains(&entry.mtime_ns),
            "mtime {} vs start {started_ns}",
            entry.mtime_ns
        );
        let _ = (entry.uid, entry.gid);
        // Depth first, names sorted: each path sorts after the one before it when `/`
        // sorts first.
        let order = |p: &[u8]| p.iter().map(|&b| if b == b'/' { 0 } else { b }).collect();
        let key: Vec<u8> = order(&entry.path);
        if let Some(prev) = previous {
            assert!(order(prev) < key, "entries in depth-first name order");
        }
        previous = Some(&entry.path);
        let value = match &entry.kind {
            Kind::Dir => ('d', Vec::new()),
            Kind::Symlink { target } => ('l', target.clone()),
            Kind::HardLink { target } => restored[target].clone(),
            Kind::File { size, chunks } => {
                let data: Vec<u8> = chunks.iter().flat_map(&read_blob).collect();
                assert_eq!(data.len() as u64, *size);
                // Re-chunk with the documented chunker: the same cuts, the same ids.
                let chunker = if size % 8192 == 0 && *size >= pages.min as u64 {
                    &pages
                } else {
                    &generic
                };
                let mut ids = Vec::new();
                let mut rest = &data[..];
                while !rest.is_empty() {
                    let (chunk, tail) = rest.split_at(chunker.cut(rest));
                    ids.push(*blake3::keyed_hash(&keys.id, chunk).as_bytes());
                    rest = tail;
                }
                assert_eq!(&ids, chunks, "{}", String::from_utf8_lossy(&entry.path));
                chunk_counts.push(chunks.len());
                if entry.path == b"run.sh" {
                    assert_ne!(entry.mode & 0o111, 0, "the executable bit is kept");
                }
                ('f', data)
            }
        };
        restored.insert(entry.path.clone(), value);
    }
    assert!(
        chunk_counts.iter().any(|&n| n >= 2),
        "a file of several chunks"
    );
    assert!(chunk_counts.contains(&0), "an empty file has no chunk");
    assert!(manifest
        .entries
        .iter()
        .any(|e| matches!(e.kind, Kind::HardLink { .. })));
    let source = source_tree();
    assert_eq!(
        restored.keys().collect::<Vec<_>>(),
        source.keys().collect::<Vec<_>>()
    );
    for (path, value) in &source {
        assert!(
            restored[path] == *value,
            "{} differs",
            String::from_utf8_lossy(path)
        );
    }
    let script = fs::metadata(fixture().join("src/run.sh")).unwrap();
    assert_ne!(script.permissions().mode() & 0o111, 0);
    assert_eq!(node["files"], 6);
    assert_eq!(node["symlinks"], 1);
    assert_eq!(node["dirs"], 3, "the root entry is not counted");

    // pins/<backup>: kind 7, JSON {backup, pinned}.
    let pin: Value = serde_json::from_slice(&object(&keys, 7, &format!("pins/{BACKUP}"))).unwrap();
    assert_eq!(pin["backup"], BACKUP);
    assert!(pin["pinned"].as_u64().is_some());

    // verified/<backup>/<unix_ms>-<ok|damaged>-<mode>: kind 8, the same facts.
    let records = list(&format!("verified/{BACKUP}/"));
    assert_eq!(records.len(), 1);
    let record: Value = serde_json::from_slice(&object(&keys, 8, &records[0])).unwrap();
    let leaf = records[0].rsplit('/').next().unwrap();
    assert_eq!(
        leaf,
        format!(
            "{}-{}-{}",
            record["when_ms"],
            if record["ok"] == true {
                "ok"
            } else {
                "damaged"
            },
            record["mode"].as_str().unwrap()
        )
    );
    assert_eq!(record["backup"], BACKUP);

    // audit/<unix_ms, 13 digits>-<hex digits>: 16 (a per-process sequence, then random)
    // from this strata, 8 from older ones, such as this fixture's. Kind 6, JSON.
    let audit = list("audit/");
    assert!(!audit.is_empty());
    let mut actions = Vec::new();
    for name in &audit {
        let leaf = name.trim_start_matches("audit/");
        let (ms, random) = leaf.split_once('-').unwrap();
        assert!(ms.len() == 13 && ms.bytes().all(|b| b.is_ascii_digit()));
        assert!(
            (random.len() == 8 || random.len() == 16) && hex::decode(random).is_ok(),
            "{name}"
        );
        let entry: Value = serde_json::from_slice(&object(&keys, 6, name)).unwrap();
        for field in ["time", "who", "action", "target", "outcome", "detail"] {
            assert!(entry[field].is_string(), "{name}: {field}");
        }
        actions.push(entry["action"].as_str().unwrap().to_string());
    }
    assert!(actions.iter().any(|a| a == "backup"), "{actions:?}");
}

#[test]
fn the_postcard_primitives_decode_as_documented() {
    // Varints: 300 = 0xAC 0x02; u64::MAX takes 10 bytes.
    assert_eq!(Postcard::new(&[0xac, 0x02]).varint(), Ok(300));
    let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    assert_eq!(Postcard::new(&max).varint(), Ok(u64::MAX));
    assert!(Postcard::new(&[0x80]).varint().is_err());
    // Zigzag: 0 -> 0, -1 -> 1, 1 -> 2, -2 -> 3.
    for (byte, value) in [(0u8, 0i64), (1, -1), (2, 1), (3, -2)] {
        assert_eq!(Postcard::new(&[byte]).i64(), Ok(value));
    }
    // The gear table's first value for chunker seed 0 (SplitMix64's first output).
    let params = serde_json::json!({"min": 64, "avg": 64, "max": 64, "align": 0});
    assert_eq!(Chunker::new(&params, 0).gear[0], 0xE220_A839_7B1D_CDAF);
    // A byte string longer than the payload is an error, not an allocation.
    assert!(Postcard::new(&[0xff, 0xff, 0x03, 1]).bytes().is_err());
}

/// The version-3 entry of docs/format.md's example ("Manifests"), byte for byte: a file `a`
/// of 5 bytes, mode 0o644, `mtime_ns` 1, one attribute `user.k` = `v`; the same bytes
/// without the attributes are the version-2 entry.
#[test]
fn the_documented_version_3_manifest_entry_reads() {
    let head = [2, b'n', b'1', 0, 1];
    let entry_v2 = [0x01, 0x61, 0x01, 0x05, 0x00, 0xA4, 0x03, 0x00, 0x00, 0x02];
    let xattrs = [0x01, 0x06, 0x75, 0x73, 0x65, 0x72, 0x2E, 0x6B, 0x01, 0x76];
    let v3 = [&head[..], &entry_v2, &xattrs].concat();
    let m = manifest(&v3, 3).unwrap();
    assert_eq!((m.node.as_str(), m.roots.len()), ("n1", 0));
    let e = &m.entries[0];
    assert_eq!(
        (&e.path[..], e.mode, e.uid, e.gid, e.mtime_ns),
        (&b"a"[..], 0o644, 0, 0, 1)
    );
    assert!(matches!(&e.kind, Kind::File { size: 5, chunks } if chunks.is_empty()));
    assert_eq!(e.xattrs, vec![(b"user.k".to_vec(), b"v".to_vec())]);
    let v2 = [&head[..], &entry_v2].concat();
    assert!(manifest(&v2, 2).unwrap().entries[0].xattrs.is_empty());
    assert!(manifest(&v2, 3).is_err());
    assert!(manifest(&v3, 2).is_err());
}

// ---------------------------------------------------------------------------------------
// Version 5: compression dictionaries, as "Compression dictionaries (version 5)" says.

/// The version-5 fixture (`tests/fixtures/format-v5`, see its README): one backup of a
/// generated tree, large enough (over 64 MiB of small blobs) that the writer trained a
/// dictionary and compressed the blobs after it with it.
fn fixture_v5() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-v5/repo")
}

/// Object keys under `prefix` of the version-5 fixture, sorted.
fn list_v5(prefix: &str) -> Vec<String> {
    let root = fixture_v5();
    let dir = root.join(prefix.trim_end_matches('/'));
    let mut out: Vec<String> = match fs::read_dir(&dir) {
        Ok(listing) => listing
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_file())
            .map(|e| {
                format!(
                    "{}/{}",
                    prefix.trim_end_matches('/'),
                    e.file_name().to_str().unwrap()
                )
            })
            .filter(|k| !k.rsplit('/').next().unwrap().starts_with(".tmp-"))
            .collect(),
        Err(_) => Vec::new(),
    };
    // data/ is two levels deep.
    if prefix == "data/" {
        out = fs::read_dir(&dir)
            .unwrap()
            .flat_map(|d| {
                let d = d.unwrap();
                let sub = d.file_name().to_str().unwrap().to_string();
                fs::read_dir(d.path()).unwrap().map(move |e| {
                    format!("data/{sub}/{}", e.unwrap().file_name().to_str().unwrap())
                })
            })
            .collect();
    }
    out.sort();
    out
}

/// An encoded object of any header version: its version and payload.
fn open_object_any(keys: &MasterKeys, kind: u8, name: &str) -> (u16, Vec<u8>) {
    let bytes = fs::read(fixture_v5().join(name)).unwrap();
    assert!(
        bytes.len() >= 7 && &bytes[..4] == b"STRO" && bytes[4] == kind,
        "{name}"
    );
    let version = u16::from_le_bytes([bytes[5], bytes[6]]);
    let mut ad = bytes[..7].to_vec();
    ad.extend_from_slice(name.as_bytes());
    let compressed = open(&keys.encryption, &bytes[7..], &ad)
        .unwrap_or_else(|| panic!("{name} does not open as kind {kind} under its name"));
    (version, zstd::stream::decode_all(&compressed[..]).unwrap())
}

/// The `Dictionary_ID` a zstd frame's header names (RFC 8878 3.1.1.1): after the magic
/// (28 B5 2F FD), the descriptor's low two bits give the field's size (0, 1, 2 or 4
/// bytes, little-endian), which follows the window descriptor (absent in a single-segment
/// frame, bit 5). 0: no dictionary.
fn frame_dictionary(frame: &[u8]) -> u32 {
    assert_eq!(frame[..4], [0x28, 0xB5, 0x2F, 0xFD], "a zstd frame");
    let descriptor = frame[4];
    let size = [0, 1, 2, 4][(descriptor & 3) as usize];
    let single_segment = descriptor & 0x20 != 0;
    let at = 5 + usize::from(!single_segment);
    let mut id = [0u8; 4];
    id[..size].copy_from_slice(&frame[at..at + size]);
    u32::from_le_bytes(id)
}

#[test]
fn a_reader_written_from_the_format_document_decompresses_version_5_dictionaries() {
    let root = fixture_v5();
    let config: Value = serde_json::from_slice(&fs::read(root.join("config")).unwrap()).unwrap();
    assert_eq!(config["version"], 5);
    let key_names = list_v5("keys/");
    let key_file: Value =
        serde_json::from_slice(&fs::read(root.join(&key_names[0])).unwrap()).unwrap();
    let keys = unwrap_key_file(&key_file, "format-v5-fixture-password");
    let mac = hex::decode(config["mac"].as_str().unwrap()).unwrap();
    assert_eq!(mac, config_mac(&config, &keys), "the config MAC");

    // Step 4: every index, then (listed after them) every dictionary. A blob indexed by
    // the indexes just read was stored after the dictionary it names, so listing
    // `dicts/` second finds that dictionary.
    let mut blobs: HashMap<[u8; 32], (String, BlobEntry)> = HashMap::new();
    for name in list_v5("index/") {
        let (_, payload) = open_object_any(&keys, 1, &name);
        for pack in index_file(&payload).unwrap() {
            let hex_id = hex::encode(pack.id);
            for entry in pack.blobs {
                blobs.insert(entry.id, (format!("data/{}/{hex_id}", &hex_id[..2]), entry));
            }
        }
    }
    let mut dictionaries: HashMap<u32, Vec<u8>> = HashMap::new();
    for name in list_v5("dicts/") {
        let (_, payload) = open_object_any(&keys, 12, &name);
        assert!(payload.len() <= 1 << 20);
        assert_eq!(
            u32::from_le_bytes(payload[..4].try_into().unwrap()),
            0xEC30_A437,
            "{name}: a zstd dictionary's magic"
        );
        let id = u32::from_le_bytes(payload[4..8].try_into().unwrap());
        assert_ne!(id, 0);
        assert_eq!(
            name,
            format!("dicts/{id:08x}"),
            "the key names the dictionary's id"
        );
        dictionaries.insert(id, payload);
    }
    assert!(!dictionaries.is_empty(), "the fixture holds a dictionary");
    assert!(!list_v5("data/").is_empty());

    // Every blob: opened, decompressed (with the dictionary its frame names), checked
    // against its keyed id.
    let mut named_a_dictionary = 0;
    let mut packs: HashMap<String, Vec<u8>> = HashMap::new();
    for (id, (pack, entry)) in &blobs {
        let bytes = packs
            .entry(pack.clone())
            .or_insert_with(|| fs::read(root.join(pack)).unwrap());
        let sealed = &bytes[entry.offset as usize..][..entry.length as usize];
        let body = open(&keys.encryption, sealed, &[]).expect("the blob opens");
        let plain = match (
            entry.compressed,
            entry.compressed.then(|| frame_dictionary(&body)),
        ) {
            (true, Some(dictionary)) if dictionary != 0 => {
                named_a_dictionary += 1;
                let raw = dictionaries
                    .get(&dictionary)
                    .unwrap_or_else(|| panic!("dictionary {dictionary:08x} is in dicts/"));
                zstd::bulk::Decompressor::with_dictionary(raw)
                    .unwrap()
                    .decompress(&body, entry.raw_length as usize)
                    .unwrap()
            }
            (true, _) => zstd::stream::decode_all(&body[..]).unwrap(),
            (false, _) => body,
        };
        assert_eq!(plain.len(), entry.raw_length as usize);
        assert_eq!(blake3::keyed_hash(&keys.id, &plain).as_bytes(), id);
    }
    assert!(
        named_a_dictionary > 0,
        "blobs compressed with the dictionary ({} blobs)",
        blobs.len()
    );
}
