//! After an in-place restore: remove what is inside the node's roots but not in the backup,
//! so the node holds exactly the backed-up state (a database directory with stray files
//! from after the backup is not the backup).
//!
//! Only paths below the configured roots are considered, paths the node's exclude patterns
//! match are left alone (they were never backed up, on purpose), and symlinks are removed,
//! never followed.

use crate::handles::Dir;
use rustix::fs::FileType;
use std::collections::HashSet;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use strata_repo::manifest::NodeManifest;

/// Removes entries under `target` that lie inside `roots` and are neither in `manifest`
/// nor excluded. Returns how many files and directories were removed.
///
/// Each root is opened once and descended through directory handles (`O_NOFOLLOW`): a
/// directory swapped for a symlink while this runs is removed as a link, never entered.
pub fn prune_extraneous(
    manifest: &NodeManifest,
    target: &Path,
    roots: &[String],
    exclude: &[String],
) -> io::Result<u64> {
    let keep: HashSet<&[u8]> = manifest.entries.iter().map(|e| e.path.as_slice()).collect();
    let exclude: Vec<glob::Pattern> = exclude
        .iter()
        .filter_map(|p| glob::Pattern::new(p).ok())
        .collect();
    let mut removed = 0;
    for root in roots {
        let root = Path::new(root);
        // The manifest path of the root itself: empty when the target is the root.
        let Ok(inside) = root.strip_prefix(target) else {
            continue;
        };
        let rel = inside.as_os_str().as_bytes().to_vec();
        if !rel.is_empty() && !keep.contains(rel.as_slice()) {
            // The whole root is absent from the backup: leave it to the operator.
            continue;
        }
        // The root by the path the operator configured, then only handles below it.
        let dir = match Dir::open_path(root) {
            Ok(dir) => dir,
            Err(_) => continue,
        };
        removed += prune_dir(&dir, &rel, &keep, &exclude)?;
    }
    Ok(removed)
}

fn excluded(exclude: &[glob::Pattern], rel: &[u8], name: &[u8]) -> bool {
    let rel = String::from_utf8_lossy(rel);
    let name = String::from_utf8_lossy(name);
    exclude
        .iter()
        .any(|p| p.matches(&rel) || (!p.as_str().contains('/') && p.matches(&name)))
}

fn prune_dir(
    dir: &Dir,
    rel: &[u8],
    keep: &HashSet<&[u8]>,
    exclude: &[glob::Pattern],
) -> io::Result<u64> {
    let mut removed = 0;
    for (name, kind) in dir.entries()? {
        let mut child = rel.to_vec();
        if !child.is_empty() {
            child.push(b'/');
        }
        child.extend_from_slice(name.as_bytes());
        if excluded(exclude, &child, name.as_bytes()) {
            continue;
        }
        if keep.contains(child.as_slice()) {
            if kind == FileType::Directory {
                match dir.open_dir(&name) {
                    Ok(sub) => removed += prune_dir(&sub, &child, keep, exclude)?,
                    // Replaced by something else since the listing: not entered.
                    Err(err) if err.kind() == io::ErrorKind::NotADirectory => {}
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                    Err(err) => return Err(err),
                }
            }
            continue;
        }
        match dir.remove_tree(&name) {
            Ok(()) => removed += 1,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use strata_repo::manifest::{Entry, EntryKind};

    fn entry(path: &str, kind: EntryKind) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            xattrs: Vec::new(),
        }
    }

    #[test]
    fn removes_only_unknown_paths_inside_roots_and_keeps_excluded_ones() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        fs::create_dir_all(root.join("base/sub")).unwrap();
        fs::create_dir_all(root.join("stray-dir/deep")).unwrap();
        fs::write(root.join("base/kept"), b"k").unwrap();
        fs::write(root.join("base/stray"), b"s").unwrap();
        fs::write(root.join("postmaster.pid"), b"1").unwrap();
        fs::write(dir.path().join("outside"), b"o").unwrap();
        let manifest = NodeManifest {
            node: "n".into(),
            roots: vec![root.display().to_string()],
            entries: vec![
                entry("base", EntryKind::Dir),
                entry("base/sub", EntryKind::Dir),
                entry(
                    "base/kept",
                    EntryKind::File {
                        size: 1,
                        chunks: vec![],
                    },
                ),
            ],
        };
        let roots = vec![root.display().to_string()];
        let removed =
            prune_extraneous(&manifest, &root, &roots, &["postmaster.pid".into()]).unwrap();
        assert_eq!(removed, 2, "base/stray and stray-dir");
        assert!(root.join("base/kept").exists());
        assert!(root.join("base/sub").exists());
        assert!(!root.join("base/stray").exists());
        assert!(!root.join("stray-dir").exists());
        assert!(root.join("postmaster.pid").exists(), "excluded paths stay");
        assert!(dir.path().join("outside").exists(), "outside the roots");
    }
}
