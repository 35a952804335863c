//! Node manifests: the files of one node in one backup.
//!
//! A manifest lists entries in path order with their metadata (mode, owner, mtime) and,
//! for regular files, the ordered blob ids of their content. Hard links point at the path
//! of the first link; symlinks keep their target as bytes. Paths are relative, `/`-separated
//! byte strings (Unix file names need not be UTF-8).

use crate::BlobId;
use serde::{Deserialize, Serialize};

/// What a manifest entry is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    Dir,
    File {
        size: u64,
        chunks: Vec<BlobId>,
    },
    Symlink {
        target: Vec<u8>,
    },
    /// Another name of the file at `target` (a path in the same manifest).
    HardLink {
        target: Vec<u8>,
    },
}

/// One path of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub path: Vec<u8>,
    pub kind: EntryKind,
    /// Permission bits and set-id/sticky bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
}

impl Entry {
    /// The path for messages (lossy for non-UTF-8 names).
    pub fn display_path(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }

    /// Content size of regular files, 0 otherwise.
    pub fn size(&self) -> u64 {
        match &self.kind {
            EntryKind::File { size, .. } => *size,
            _ => 0,
        }
    }
}

/// The manifest of one node in one backup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeManifest {
    pub node: String,
    /// The source paths on the node, as configured (after glob expansion).
    pub roots: Vec<String>,
    pub entries: Vec<Entry>,
}

impl NodeManifest {
    /// Encodes with postcard: compact and with a documented, stable wire format.
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("manifests serialize")
    }

    /// Decodes bytes written by [`NodeManifest::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

/// Checks that a manifest path is a clean relative path: no empty, `.` or `..` component,
/// not absolute, no NUL. Restores refuse anything else, so a crafted manifest cannot write
/// outside the restore target.
pub fn validate_relative_path(path: &[u8]) -> Result<(), String> {
    let shown = String::from_utf8_lossy(path);
    if path.is_empty() {
        return Err("empty path".into());
    }
    if path[0] == b'/' {
        return Err(format!("absolute path {shown:?}"));
    }
    if path.contains(&0) {
        return Err(format!("path with a NUL byte {shown:?}"));
    }
    for part in path.split(|&b| b == b'/') {
        if part.is_empty() || part == b"." || part == b".." {
            return Err(format!(
                "path {shown:?} has a {:?} component",
                String::from_utf8_lossy(part)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_kind() -> impl Strategy<Value = EntryKind> {
        prop_oneof![
            Just(EntryKind::Dir),
            (
                any::<u64>(),
                proptest::collection::vec(any::<[u8; 32]>(), 0..5)
            )
                .prop_map(|(size, ids)| {
                    EntryKind::File {
                        size,
                        chunks: ids.into_iter().map(BlobId).collect(),
                    }
                }),
            proptest::collection::vec(any::<u8>(), 0..40)
                .prop_map(|target| EntryKind::Symlink { target }),
            proptest::collection::vec(any::<u8>(), 1..40)
                .prop_map(|target| EntryKind::HardLink { target }),
        ]
    }

    fn arb_entry() -> impl Strategy<Value = Entry> {
        (
            proptest::collection::vec(any::<u8>(), 1..60),
            arb_kind(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<i64>(),
        )
            .prop_map(|(path, kind, mode, uid, gid, mtime_ns)| Entry {
                path,
                kind,
                mode,
                uid,
                gid,
                mtime_ns,
            })
    }

    proptest! {
        #[test]
        fn manifests_roundtrip(node in ".{0,20}", roots in proptest::collection::vec(".{0,30}", 0..3),
                               entries in proptest::collection::vec(arb_entry(), 0..30)) {
            let manifest = NodeManifest { node, roots, entries };
            let back = NodeManifest::from_bytes(&manifest.to_bytes()).unwrap();
            prop_assert_eq!(back, manifest);
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = NodeManifest::from_bytes(&bytes);
        }
    }

    #[test]
    fn escaping_paths_are_refused() {
        for bad in [
            &b""[..],
            b"/etc/passwd",
            b"../x",
            b"a/../../x",
            b"a//b",
            b"./a",
            b"a/.",
            b"a\0b",
        ] {
            assert!(
                validate_relative_path(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        for good in [&b"a"[..], b"a/b/c", b"..hidden", b"a/b.."] {
            assert!(validate_relative_path(good).is_ok());
        }
    }
}
