//! Streamed node manifests (format version 4): bounded chunks and a directory index.
//!
//! A node of millions of files has a manifest of hundreds of MiB. Decoding it whole makes
//! every backup, restore, `ls` and `verify` hold the whole tree. From format version 4
//! the entries, in path order, are cut into chunks of at most [`CHUNK_MAX`] plaintext
//! bytes; each chunk is stored as an ordinary blob (sealed, packed, indexed and
//! deduplicated like file data), and the object `manifests/<backup>/<node>` becomes a
//! small *top* ([`ManifestTop`]) listing the chunks with the first path of each: the
//! directory index. A reader then holds one chunk at a time, and `ls DIR` reads only the
//! chunks whose path range covers `DIR`.
//!
//! Cuts are content-defined: a chunk ends before an entry whose keyed path hash matches,
//! preferably a directory, once the chunk has [`CHUNK_MIN`] bytes. The same unchanged
//! directories then cut into the same chunks in the next backup, which stores only the
//! chunks around what changed (restic's trees get the same effect per directory).

use crate::crypto::MasterKeys;
use crate::manifest::Entry;
use crate::BlobId;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// A chunk is never cut before it holds this many plaintext bytes (unless the manifest
/// ends).
pub const CHUNK_MIN: usize = 128 * 1024;
/// Past this size any entry whose hash matches [`ANY_ENTRY_MASK`] ends a chunk: a flat
/// directory of a million files still cuts at content-defined places.
pub const CHUNK_SOFT: usize = 512 * 1024;
/// A chunk is cut before an entry that would take it beyond this size. Only a single
/// entry larger than this (a file of millions of blobs) makes a larger chunk.
pub const CHUNK_MAX: usize = 1024 * 1024;
/// One directory in this many (by keyed path hash, low bits) ends a chunk once it holds
/// [`CHUNK_MIN`] bytes.
const DIR_MASK: u32 = 0x3;
/// One entry in this many ends a chunk once it holds [`CHUNK_SOFT`] bytes.
const ANY_ENTRY_MASK: u32 = 0x3f;
/// The BLAKE3 `derive_key` context of the key of the cut hash.
const CUT_CONTEXT: &str = "strata 2026-11 manifest chunk cuts v4";

/// One chunk of a streamed manifest, as the top lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// The blob that holds the chunk's entries.
    pub id: BlobId,
    /// The path of the chunk's first entry: the directory index.
    pub first_path: Vec<u8>,
    /// Number of entries in the chunk.
    pub entries: u32,
    /// Where the blob was stored when the manifest was written, so a reader finds it
    /// without loading the repository's index (`ls` of one directory reads the top and
    /// one range of one pack). A hint: garbage collection may move the blob since, and
    /// a reader then looks it up in the index (the blob's id checks what it reads).
    pub at: Option<ChunkPlace>,
}

/// Where a chunk blob sits: its pack, and the range and encoding of its sealed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkPlace {
    /// The pack that held the blob when the manifest was written.
    pub pack: crate::id::PackId,
    /// Where the sealed blob starts, in bytes from the start of the pack file.
    pub offset: u64,
    /// Sealed length in bytes.
    pub length: u32,
    /// Plaintext length in bytes.
    pub raw_length: u32,
    /// Whether the sealed bytes hold zstd data (or the raw plaintext).
    pub compressed: bool,
}

/// Figures of a whole manifest, known without reading its chunks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestTotals {
    /// All entries of the manifest.
    pub entries: u64,
    /// `Dir` entries.
    pub dirs: u64,
    /// Regular files (hard links not counted).
    pub files: u64,
    /// Content bytes of regular files.
    pub bytes: u64,
}

/// The payload of a version-4 manifest object: what a reader needs before any chunk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestTop {
    /// The node's name; equals `<node>` in the manifest's key.
    pub node: String,
    /// The source paths on the node, as configured (after glob expansion).
    pub roots: Vec<String>,
    /// Counts and size of the whole manifest.
    pub totals: ManifestTotals,
    /// Whether every entry's path comes after the one before in [`path_order`]. The
    /// writer does not refuse other orders; a reader only uses the directory index to
    /// skip chunks when this is true.
    pub ordered: bool,
    /// The manifest's chunks in order; their entries, concatenated, are the manifest's entries.
    pub chunks: Vec<ChunkRef>,
}

impl ManifestTop {
    /// Encodes with postcard (see docs/format.md, "Manifests").
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("manifest tops serialize")
    }

    /// Decodes bytes written by [`ManifestTop::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }

    /// Every blob of the top's chunks.
    pub fn chunk_ids(&self) -> impl Iterator<Item = &BlobId> {
        self.chunks.iter().map(|c| &c.id)
    }

    /// The chunks that may hold `prefix` or entries below it (every chunk when the
    /// manifest is not [`ManifestTop::ordered`]), as a range of positions.
    pub fn chunks_under(&self, prefix: &[u8]) -> std::ops::Range<usize> {
        if !self.ordered || prefix.is_empty() {
            return 0..self.chunks.len();
        }
        // The last chunk starting at or before the prefix holds its first entries...
        let first = self
            .chunks
            .partition_point(|c| path_order(&c.first_path, prefix) != Ordering::Greater)
            .saturating_sub(1);
        // ...and every later chunk that starts inside the subtree continues it.
        let mut end = first + 1;
        while end < self.chunks.len() && is_inside(&self.chunks[end].first_path, prefix) {
            end += 1;
        }
        first..end.min(self.chunks.len())
    }
}

/// Whether `path` is `prefix` or below it.
pub fn is_inside(path: &[u8], prefix: &[u8]) -> bool {
    prefix.is_empty()
        || path == prefix
        || (path.starts_with(prefix) && path.get(prefix.len()) == Some(&b'/'))
}

/// The order of manifest entries: component by component, bytes within a component. It
/// is the order of a depth-first walk that lists each directory's names sorted, so a
/// directory's subtree is one contiguous run right after it.
pub fn path_order(a: &[u8], b: &[u8]) -> Ordering {
    a.split(|&c| c == b'/').cmp(b.split(|&c| c == b'/'))
}

/// Decodes the entries of one manifest chunk blob (its plaintext).
pub fn decode_chunk(bytes: &[u8]) -> Result<Vec<Entry>, postcard::Error> {
    postcard::from_bytes(bytes)
}

/// A finished chunk, to be stored as a blob.
#[derive(Debug, Clone)]
pub struct ChunkBlob {
    /// The chunk's blob id (keyed hash of `bytes`).
    pub id: BlobId,
    /// The chunk's plaintext: a postcard sequence of entries.
    pub bytes: Bytes,
}

/// Cuts entries, pushed in path order, into chunks (see the module documentation).
/// Holds one chunk's bytes at a time: the caller stores each [`ChunkBlob`] it gets back.
pub struct ManifestBuilder {
    keys: MasterKeys,
    cut_key: [u8; 32],
    top: ManifestTop,
    /// Encoded entries of the chunk being filled (without the count prefix).
    pending: Vec<u8>,
    pending_entries: u32,
    first_path: Vec<u8>,
    last_path: Option<Vec<u8>>,
}

impl ManifestBuilder {
    /// A builder for the manifest of `node` over `roots`; `keys` name the chunk blobs and
    /// key the cut hash.
    pub fn new(keys: &MasterKeys, node: String, roots: Vec<String>) -> Self {
        ManifestBuilder {
            keys: keys.clone(),
            cut_key: keys.derive(CUT_CONTEXT),
            top: ManifestTop {
                node,
                roots,
                ordered: true,
                ..ManifestTop::default()
            },
            pending: Vec::new(),
            pending_entries: 0,
            first_path: Vec::new(),
            last_path: None,
        }
    }

    /// Adds the next entry; returns the chunk it closed, if any.
    pub fn push(&mut self, entry: &Entry) -> Option<ChunkBlob> {
        let encoded = postcard::to_stdvec(entry).expect("entries serialize");
        let closed = if self.pending_entries > 0 && self.cuts_before(entry, encoded.len()) {
            Some(self.close_chunk())
        } else {
            None
        };
        if let Some(last) = &self.last_path {
            if path_order(last, &entry.path) != Ordering::Less {
                self.top.ordered = false;
            }
        }
        self.last_path = Some(entry.path.clone());
        if self.pending_entries == 0 {
            self.first_path = entry.path.clone();
        }
        self.pending.extend_from_slice(&encoded);
        self.pending_entries += 1;
        let totals = &mut self.top.totals;
        totals.entries += 1;
        match &entry.kind {
            crate::manifest::EntryKind::Dir => totals.dirs += 1,
            crate::manifest::EntryKind::File { size, .. } => {
                totals.files += 1;
                totals.bytes += size;
            }
            _ => {}
        }
        closed
    }

    /// Closes the last chunk; returns it (if any entries were pending) and the top.
    pub fn finish(mut self) -> (Option<ChunkBlob>, ManifestTop) {
        let last = (self.pending_entries > 0).then(|| self.close_chunk());
        (last, self.top)
    }

    fn cuts_before(&self, entry: &Entry, encoded_len: usize) -> bool {
        let size = self.pending.len();
        if size + encoded_len > CHUNK_MAX {
            return true;
        }
        if size < CHUNK_MIN {
            return false;
        }
        let hash = blake3::keyed_hash(&self.cut_key, &entry.path);
        let low = u32::from_le_bytes(hash.as_bytes()[..4].try_into().expect("4 bytes"));
        let is_dir = matches!(entry.kind, crate::manifest::EntryKind::Dir);
        (is_dir && low & DIR_MASK == 0) || (size >= CHUNK_SOFT && low & ANY_ENTRY_MASK == 0)
    }

    fn close_chunk(&mut self) -> ChunkBlob {
        // A postcard `Vec<Entry>`: the count as a varint, then the entries.
        let mut count = [0u8; 10];
        let count =
            postcard::to_slice(&self.pending_entries, &mut count).expect("a varint fits 10 bytes");
        let mut bytes = Vec::with_capacity(count.len() + self.pending.len());
        bytes.extend_from_slice(count);
        bytes.append(&mut self.pending);
        let id = self.keys.blob_id(&bytes);
        self.top.chunks.push(ChunkRef {
            id,
            first_path: std::mem::take(&mut self.first_path),
            entries: self.pending_entries,
            at: None,
        });
        self.pending_entries = 0;
        ChunkBlob {
            id,
            bytes: Bytes::from(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::EntryKind;

    fn file(path: &str, seed: u8) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind: EntryKind::File {
                size: 100,
                chunks: vec![BlobId([seed; 32])],
            },
            mode: 0o644,
            uid: 1,
            gid: 1,
            mtime_ns: 5,
            xattrs: Vec::new(),
        }
    }

    fn dir(path: &str) -> Entry {
        Entry {
            kind: EntryKind::Dir,
            ..file(path, 0)
        }
    }

    /// `dirs` directories of `files` files each, in path order.
    fn tree(dirs: usize, files: usize, changed: Option<(usize, usize)>) -> Vec<Entry> {
        let mut out = vec![dir("")];
        for d in 0..dirs {
            out.push(dir(&format!("d{d:04}")));
            for f in 0..files {
                let seed = if changed == Some((d, f)) { 9 } else { 1 };
                out.push(file(&format!("d{d:04}/f{f:04}"), seed));
            }
        }
        out
    }

    fn build(keys: &MasterKeys, entries: &[Entry]) -> (Vec<ChunkBlob>, ManifestTop) {
        let mut builder = ManifestBuilder::new(keys, "n1".into(), vec!["/data".into()]);
        let mut chunks: Vec<ChunkBlob> = entries.iter().filter_map(|e| builder.push(e)).collect();
        let (last, top) = builder.finish();
        chunks.extend(last);
        (chunks, top)
    }

    #[test]
    fn chunks_are_bounded_and_decode_to_the_entries_in_order() {
        let keys = MasterKeys::generate();
        let entries = tree(200, 300, None);
        let (chunks, top) = build(&keys, &entries);
        assert!(chunks.len() > 5, "{} chunks", chunks.len());
        assert_eq!(top.chunks.len(), chunks.len());
        assert!(top.ordered);
        assert_eq!(top.totals.entries, entries.len() as u64);
        assert_eq!(top.totals.dirs, 201);
        assert_eq!(top.totals.files, 60_000);
        let mut back = Vec::new();
        for (chunk, info) in chunks.iter().zip(&top.chunks) {
            assert!(chunk.bytes.len() <= CHUNK_MAX + 10);
            assert_eq!(keys.blob_id(&chunk.bytes), chunk.id);
            assert_eq!(info.id, chunk.id);
            let decoded = decode_chunk(&chunk.bytes).unwrap();
            assert_eq!(decoded.len() as u32, info.entries);
            assert_eq!(decoded[0].path, info.first_path);
            back.extend(decoded);
        }
        assert_eq!(back, entries);
        assert_eq!(ManifestTop::from_bytes(&top.to_bytes()).unwrap(), top);
    }

    #[test]
    fn one_changed_file_changes_few_chunks() {
        let keys = MasterKeys::generate();
        let (before, _) = build(&keys, &tree(200, 300, None));
        let (after, _) = build(&keys, &tree(200, 300, Some((120, 7))));
        let old: std::collections::HashSet<_> = before.iter().map(|c| c.id).collect();
        let new = after.iter().filter(|c| !old.contains(&c.id)).count();
        assert!(before.len() > 10, "{} chunks", before.len());
        assert_eq!(new, 1, "only the chunk of the changed file is new");
        // A new directory in the middle shifts nothing after the next cut either.
        let mut grown = tree(200, 300, None);
        let at = grown.iter().position(|e| e.path == b"d0050/f0000").unwrap();
        grown.insert(at, file("d0050/a-new-file", 3));
        let (after, _) = build(&keys, &grown);
        let new = after.iter().filter(|c| !old.contains(&c.id)).count();
        assert!(new <= 2, "{new} new chunks");
    }

    #[test]
    fn the_directory_index_finds_the_chunks_of_a_subtree() {
        let keys = MasterKeys::generate();
        let entries = tree(100, 200, None);
        let (chunks, top) = build(&keys, &entries);
        for wanted in [
            "d0000",
            "d0042",
            "d0099",
            "d0042/f0150",
            "zzz",
            "d0042/nothing",
        ] {
            let range = top.chunks_under(wanted.as_bytes());
            let expected: Vec<&Entry> = entries
                .iter()
                .filter(|e| is_inside(&e.path, wanted.as_bytes()))
                .collect();
            let found: Vec<Entry> = chunks[range.clone()]
                .iter()
                .flat_map(|c| decode_chunk(&c.bytes).unwrap())
                .filter(|e| is_inside(&e.path, wanted.as_bytes()))
                .collect();
            assert_eq!(found.iter().collect::<Vec<_>>(), expected, "{wanted}");
            assert!(range.len() <= 2, "{wanted}: {range:?}");
        }
    }

    #[test]
    fn out_of_order_entries_are_kept_and_marked() {
        let keys = MasterKeys::generate();
        let (_, top) = build(&keys, &[file("b", 1), file("a", 1)]);
        assert!(!top.ordered);
        assert_eq!(top.chunks_under(b"a"), 0..1);
    }

    #[test]
    fn path_order_is_component_order() {
        assert_eq!(path_order(b"a", b"a/b"), Ordering::Less);
        assert_eq!(path_order(b"a/b", b"a-b"), Ordering::Less);
        assert_eq!(path_order(b"", b"a"), Ordering::Less);
        assert_eq!(path_order(b"a/b", b"a/b"), Ordering::Equal);
    }
}
