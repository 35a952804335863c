//! The manifest of a backup in progress, kept on disk until it is written.
//!
//! A backup runs in steps (scan, upload, finish) and the node manifest is written only in
//! the last one. Held in memory, a node of a million files would keep a million entries
//! (about 200 MiB) between the steps. The scan appends each entry, in walk order, to an
//! unnamed temporary file instead; the few changes made after the scan (files re-read by
//! a repair, files a plugin adds such as PostgreSQL's `backup_label`) are kept beside it
//! and merged in as the entries stream into the manifest's chunks.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use strata_repo::manifest::{Entry, EntryKind};
use strata_repo::manifest_chunks::path_order;

/// Largest spooled entry read back (the entry of a file of a million blobs).
const MAX_SPOOLED: u32 = 64 << 20;

/// A node manifest in the making: node, roots, and its entries on disk.
pub struct SpooledManifest {
    /// The node's name.
    pub node: String,
    /// The roots as configured, for the manifest.
    pub roots: Vec<String>,
    file: BufWriter<File>,
    len: usize,
    /// Entries replaced after the scan, by position.
    replaced: BTreeMap<usize, Entry>,
    /// Entries added after the scan (sorted when merged).
    added: Vec<Entry>,
}

impl std::fmt::Debug for SpooledManifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SpooledManifest({}, {} entries)", self.node, self.len)
    }
}

/// Opens a read-write file that has no name: it goes away with the last handle, also
/// when the process dies.
fn unnamed_file() -> io::Result<File> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    loop {
        let path = std::env::temp_dir().join(format!(
            "strata-spool-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => {
                std::fs::remove_file(&path)?;
                return Ok(file);
            }
            // Left by a process of the same id that died: not ours to touch.
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(err),
        }
    }
}

impl SpooledManifest {
    /// An empty manifest backed by an unnamed temporary file.
    pub fn new(node: String, roots: Vec<String>) -> io::Result<Self> {
        Ok(SpooledManifest {
            node,
            roots,
            file: BufWriter::with_capacity(256 * 1024, unnamed_file()?),
            len: 0,
            replaced: BTreeMap::new(),
            added: Vec::new(),
        })
    }

    /// Appends the next entry of the walk; returns its position.
    pub fn push(&mut self, entry: &Entry) -> io::Result<usize> {
        let bytes = postcard::to_stdvec(entry).expect("entries serialize");
        self.file.write_all(&(bytes.len() as u32).to_le_bytes())?;
        self.file.write_all(&bytes)?;
        self.len += 1;
        Ok(self.len - 1)
    }

    /// Number of entries the walk spooled.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the walk found nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0 && self.added.is_empty()
    }

    /// Replaces the entry at `position` (a file re-read by a repair).
    pub fn replace(&mut self, position: usize, entry: Entry) {
        self.replaced.insert(position, entry);
    }

    /// Adds an entry after the scan. An entry of the walk at the same path is replaced,
    /// except a directory by a directory (the walk's metadata is kept).
    pub fn add(&mut self, entry: Entry) {
        self.added.push(entry);
    }

    /// Reads the walk's entries back in order, as spooled (without the changes).
    pub fn scan_entries(&mut self) -> io::Result<SpoolReader> {
        self.file.flush()?;
        let mut file = self.file.get_ref().try_clone()?;
        file.rewind()?;
        Ok(SpoolReader {
            input: BufReader::with_capacity(256 * 1024, file),
            left: self.len,
        })
    }

    /// Calls `each` with every entry of the manifest in order: the walk's, with the
    /// replacements and additions merged in.
    pub fn for_each(&mut self, mut each: impl FnMut(Entry) -> io::Result<()>) -> io::Result<()> {
        let mut added = std::mem::take(&mut self.added);
        added.sort_by(|a, b| path_order(&a.path, &b.path));
        let mut added = added.into_iter().peekable();
        let mut reader = self.scan_entries()?;
        let mut position = 0;
        while let Some(entry) = reader.next().transpose()? {
            let mut entry = self.replaced.remove(&position).unwrap_or(entry);
            position += 1;
            while let Some(next) = added.peek() {
                match path_order(&next.path, &entry.path) {
                    std::cmp::Ordering::Less => each(added.next().expect("peeked"))?,
                    std::cmp::Ordering::Equal => {
                        let next = added.next().expect("peeked");
                        if !matches!(next.kind, EntryKind::Dir) {
                            entry = next;
                        }
                    }
                    std::cmp::Ordering::Greater => break,
                }
            }
            each(entry)?;
        }
        for entry in added {
            each(entry)?;
        }
        Ok(())
    }
}

/// The spooled entries read back in order.
pub struct SpoolReader {
    input: BufReader<File>,
    left: usize,
}

impl Iterator for SpoolReader {
    type Item = io::Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let mut len = [0u8; 4];
        if let Err(err) = self.input.read_exact(&mut len) {
            return Some(Err(err));
        }
        let len = u32::from_le_bytes(len);
        if len > MAX_SPOOLED {
            return Some(Err(io::Error::other("spooled entry too large")));
        }
        let mut bytes = vec![0u8; len as usize];
        if let Err(err) = self.input.read_exact(&mut bytes) {
            return Some(Err(err));
        }
        Some(postcard::from_bytes(&bytes).map_err(io::Error::other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: EntryKind) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_ns: 1,
            xattrs: Vec::new(),
        }
    }

    fn file(path: &str, size: u64) -> Entry {
        entry(
            path,
            EntryKind::File {
                size,
                chunks: vec![],
            },
        )
    }

    #[test]
    fn entries_come_back_in_order_with_the_changes_merged() {
        let mut spool = SpooledManifest::new("n".into(), vec![]).unwrap();
        for e in [
            entry("", EntryKind::Dir),
            entry("a", EntryKind::Dir),
            file("a/x", 1),
            file("c", 2),
        ] {
            spool.push(&e).unwrap();
        }
        spool.replace(2, file("a/x", 10));
        spool.add(file("b", 3));
        spool.add(file("c", 20));
        spool.add(entry("a", EntryKind::Dir));
        spool.add(file("d", 4));
        let mut out = Vec::new();
        spool
            .for_each(|e| {
                out.push((String::from_utf8(e.path.clone()).unwrap(), e.size()));
                Ok(())
            })
            .unwrap();
        let expected: Vec<(String, u64)> = [
            ("", 0),
            ("a", 0),
            ("a/x", 10),
            ("b", 3),
            ("c", 20),
            ("d", 4),
        ]
        .iter()
        .map(|(p, s)| (p.to_string(), *s))
        .collect();
        assert_eq!(out, expected);
        // The walk's entries as spooled, unchanged.
        let back: Vec<Entry> = spool.scan_entries().unwrap().map(Result::unwrap).collect();
        assert_eq!(back.len(), 4);
        assert_eq!(back[2].size(), 1);
    }
}
