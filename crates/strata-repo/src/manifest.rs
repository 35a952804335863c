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
    /// A directory.
    Dir,
    /// A regular file.
    File {
        /// The file's length in bytes: the sum of its chunks' plaintext lengths.
        size: u64,
        /// The blob ids of its content, in order; empty for an empty file.
        chunks: Vec<BlobId>,
    },
    /// A symbolic link.
    Symlink {
        /// The link's target exactly as `readlink` returned it.
        target: Vec<u8>,
    },
    /// Another name of the file at `target` (a path in the same manifest).
    HardLink {
        /// The `path` of the first name of the same file: an earlier `File` entry.
        target: Vec<u8>,
    },
}

/// One extended attribute (format version 3): its full name with the namespace
/// (`user.mime_type`, `security.selinux`, `system.posix_acl_access`) and its raw value.
/// POSIX ACLs are the `system.posix_acl_*` attributes, kept as the kernel's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    /// The full name with its namespace, e.g. `user.mime_type`.
    pub name: Vec<u8>,
    /// The raw value (0 to 64 KiB).
    pub value: Vec<u8>,
}

/// One path of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The path relative to its root, `/`-separated; bytes, not necessarily UTF-8.
    pub path: Vec<u8>,
    /// What the entry is, with a file's content or a link's target.
    pub kind: EntryKind,
    /// Permission bits and set-id/sticky bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Numeric owner id.
    pub uid: u32,
    /// Numeric group id.
    pub gid: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Extended attributes (ACLs included), sorted by name; empty in manifests of format
    /// versions 1 and 2, which did not record them.
    pub xattrs: Vec<Xattr>,
}

/// An entry as format versions 1 and 2 encode it: no extended attributes.
#[derive(Deserialize)]
struct EntryV2 {
    path: Vec<u8>,
    kind: EntryKind,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime_ns: i64,
}

/// A manifest as format versions 1 and 2 encode it.
#[derive(Deserialize)]
struct NodeManifestV2 {
    node: String,
    roots: Vec<String>,
    entries: Vec<EntryV2>,
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
    /// The node's name; equals `<node>` in the manifest's key.
    pub node: String,
    /// The source paths on the node, as configured (after glob expansion).
    pub roots: Vec<String>,
    /// The node's entries, in path order.
    pub entries: Vec<Entry>,
}

impl NodeManifest {
    /// Encodes with postcard: compact and with a documented, stable wire format.
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("manifests serialize")
    }

    /// Decodes bytes written by [`NodeManifest::to_bytes`] (the current format version).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }

    /// Decodes a manifest payload of format `version` (the version in its object header):
    /// versions 1 and 2 have no extended attributes, version 3 does.
    pub fn from_bytes_of_version(bytes: &[u8], version: u32) -> Result<Self, postcard::Error> {
        if version >= 3 {
            return Self::from_bytes(bytes);
        }
        let old: NodeManifestV2 = postcard::from_bytes(bytes)?;
        Ok(NodeManifest {
            node: old.node,
            roots: old.roots,
            entries: old
                .entries
                .into_iter()
                .map(|e| Entry {
                    path: e.path,
                    kind: e.kind,
                    mode: e.mode,
                    uid: e.uid,
                    gid: e.gid,
                    mtime_ns: e.mtime_ns,
                    xattrs: Vec::new(),
                })
                .collect(),
        })
    }
}

/// Checks that a manifest path is a clean relative path: no empty, `.` or `..` component,
/// not absolute, no NUL. Restores refuse anything else, so a crafted manifest cannot write
/// outside the restore target.
pub fn validate_relative_path(path: &[u8]) -> Result<(), UnsafePath> {
    let shown = || String::from_utf8_lossy(path).into_owned();
    if path.is_empty() {
        return Err(UnsafePath::Empty);
    }
    if path[0] == b'/' {
        return Err(UnsafePath::Absolute(shown()));
    }
    if path.contains(&0) {
        return Err(UnsafePath::Nul(shown()));
    }
    for part in path.split(|&b| b == b'/') {
        if part.is_empty() || part == b"." || part == b".." {
            return Err(UnsafePath::Component {
                path: shown(),
                component: String::from_utf8_lossy(part).into_owned(),
            });
        }
    }
    Ok(())
}

/// A manifest path that could write outside a restore target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsafePath {
    /// No path at all.
    #[error("empty path")]
    Empty,
    /// An absolute path.
    #[error("absolute path {0:?}")]
    Absolute(String),
    /// A path with a NUL byte.
    #[error("path with a NUL byte {0:?}")]
    Nul(String),
    /// An empty, `.` or `..` component.
    #[error("path {path:?} has a {component:?} component")]
    Component {
        /// The path.
        path: String,
        /// The component.
        component: String,
    },
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

    fn arb_xattrs() -> impl Strategy<Value = Vec<Xattr>> {
        proptest::collection::vec(
            (
                proptest::collection::vec(any::<u8>(), 1..20),
                proptest::collection::vec(any::<u8>(), 0..40),
            )
                .prop_map(|(name, value)| Xattr { name, value }),
            0..3,
        )
    }

    fn arb_entry() -> impl Strategy<Value = Entry> {
        (
            proptest::collection::vec(any::<u8>(), 1..60),
            arb_kind(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<i64>(),
            arb_xattrs(),
        )
            .prop_map(|(path, kind, mode, uid, gid, mtime_ns, xattrs)| Entry {
                path,
                kind,
                mode,
                uid,
                gid,
                mtime_ns,
                xattrs,
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
            let _ = NodeManifest::from_bytes_of_version(&bytes, 2);
        }
    }

    /// A version-2 payload (no extended attributes) written by hand as docs/format.md
    /// describes it decodes as version 2, with no extended attributes, and not as version 3.
    #[test]
    fn version_2_manifests_decode_without_xattrs() {
        let mut v2 = Vec::new();
        v2.extend_from_slice(&[2, b'n', b'1']); // node
        v2.extend_from_slice(&[1, 2, b'/', b'd']); // roots
        v2.push(1); // one entry
        v2.extend_from_slice(&[1, b'a']); // path
        v2.extend_from_slice(&[1, 5]); // File { size: 5, chunks: [] }
        v2.push(0);
        v2.extend_from_slice(&[0xa4, 0x03]); // mode 0o644
        v2.extend_from_slice(&[0, 0, 2]); // uid, gid, mtime_ns 1 (zigzag)
        let manifest = NodeManifest::from_bytes_of_version(&v2, 2).unwrap();
        assert_eq!(manifest.node, "n1");
        assert_eq!(manifest.entries[0].mode, 0o644);
        assert_eq!(manifest.entries[0].mtime_ns, 1);
        assert!(manifest.entries[0].xattrs.is_empty());
        assert!(NodeManifest::from_bytes_of_version(&v2, 3).is_err());
        // Version 3 appends the attributes: a sequence of (name bytes, value bytes).
        let mut v3 = v2.clone();
        v3.extend_from_slice(&[1, 6, b'u', b's', b'e', b'r', b'.', b'k', 1, b'v']);
        let manifest = NodeManifest::from_bytes_of_version(&v3, 3).unwrap();
        assert_eq!(
            manifest.entries[0].xattrs,
            vec![Xattr {
                name: b"user.k".to_vec(),
                value: b"v".to_vec()
            }]
        );
        assert_eq!(manifest.to_bytes(), v3);
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
