//! Tablespaces: directories outside the data directory, linked from `pg_tblspc/<oid>`.
//!
//! A backup follows each link and stores the tablespace in the link's place, so the
//! manifest holds one tree and the generic restore needs no notion of tablespaces. A
//! restore then moves every tablespace out to its location (the one it had when backed
//! up, or the one the node maps it to) and puts the link back, and rewrites
//! `tablespace_map`, from which PostgreSQL recreates the links when recovery starts.
//!
//! Restoring over a data directory whose links point at tablespaces of the cluster being
//! replaced first moves those tablespaces back in ([`fold_in`]): the restore then keeps
//! the files that are already correct, as it does for the data directory itself. A
//! location holding anything else is never overwritten: the restore refuses before it
//! writes a byte ([`check_locations`]).

use crate::{NodeSettings, PgError, PgResult};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// One tablespace of a backed-up cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tablespace {
    /// Its OID, the name of its link in `pg_tblspc`.
    pub oid: String,
    /// Its SQL name (`CREATE TABLESPACE`).
    pub name: String,
    /// Where it was when backed up (absolute).
    pub location: String,
}

/// The SQL that lists the tablespaces a base backup must follow (in-place tablespaces,
/// which live inside the data directory, are part of it already).
pub const LIST_SQL: &str = "SELECT oid::text, spcname::text, pg_tablespace_location(oid) \
     FROM pg_tablespace WHERE pg_tablespace_location(oid) LIKE '/%' ORDER BY oid";

/// Where the restore puts `ts` on `node`: its mapping (by name or OID) or its original
/// location.
pub fn location_for(node: &NodeSettings, ts: &Tablespace) -> PathBuf {
    node.tablespaces
        .get(&ts.name)
        .or_else(|| node.tablespaces.get(&ts.oid))
        .cloned()
        .unwrap_or_else(|| PathBuf::from(&ts.location))
}

fn links_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("pg_tblspc")
}

/// Moves the tablespaces the data directory links to back into `pg_tblspc/<oid>`,
/// replacing each link by a directory, before a restore over it. Returns the locations
/// that were linked (they belong to the cluster being replaced). Entries that cannot be
/// moved (another filesystem) stay where they are and are replaced by [`fold_out`].
pub fn fold_in(data_dir: &Path) -> PgResult<BTreeSet<PathBuf>> {
    let mut linked = BTreeSet::new();
    let dir = links_dir(data_dir);
    let Ok(listing) = fs::read_dir(&dir) else {
        return Ok(linked);
    };
    for entry in listing.flatten() {
        let link = entry.path();
        let Ok(target) = fs::read_link(&link) else {
            continue;
        };
        let target = if target.is_absolute() {
            target
        } else {
            dir.join(target)
        };
        fs::remove_file(&link).map_err(PgError::io("cannot remove the link", &link))?;
        fs::create_dir(&link).map_err(PgError::io("cannot create", &link))?;
        fs::set_permissions(&link, fs::Permissions::from_mode(0o700))
            .map_err(PgError::io("cannot set the mode of", &link))?;
        if let Ok(children) = fs::read_dir(&target) {
            for child in children.flatten() {
                // Best effort: what cannot be renamed is rewritten by the restore.
                let _ = fs::rename(child.path(), link.join(child.file_name()));
            }
        }
        linked.insert(target);
    }
    Ok(linked)
}

/// Refuses a restore that would write a tablespace into a directory holding anything but
/// the tablespaces of the cluster being replaced (`ours`, from [`fold_in`]).
pub fn check_locations(
    node: &NodeSettings,
    tablespaces: &[Tablespace],
    ours: &BTreeSet<PathBuf>,
) -> PgResult<()> {
    for ts in tablespaces {
        let location = location_for(node, ts);
        if !location.is_absolute() {
            return Err(PgError::Refused(format!(
                "tablespace {} would go to {}, which is not an absolute path",
                ts.name,
                location.display()
            )));
        }
        if ours.contains(&location) {
            continue;
        }
        let occupied = fs::read_dir(&location).is_ok_and(|mut d| d.next().is_some());
        if occupied {
            return Err(PgError::Refused(format!(
                "tablespace {} (OID {}) would go to {}, which is not empty: map it elsewhere with [nodes.postgres] tablespaces = {{ {} = \"/new/dir\" }}, or empty that directory",
                ts.name,
                ts.oid,
                location.display(),
                ts.name
            )));
        }
    }
    Ok(())
}

/// After the files are back: moves each tablespace from `pg_tblspc/<oid>` to its location,
/// links it and writes `tablespace_map`. Returns `(name, location)` of each.
pub fn fold_out(
    node: &NodeSettings,
    tablespaces: &[Tablespace],
) -> PgResult<Vec<(String, PathBuf)>> {
    let data_dir = &node.data_dir;
    let owner = fs::metadata(data_dir).map_err(PgError::io("cannot read", data_dir))?;
    let mut map = String::new();
    let mut placed = Vec::new();
    for ts in tablespaces {
        let inside = links_dir(data_dir).join(&ts.oid);
        let location = location_for(node, ts);
        if !fs::symlink_metadata(&inside).is_ok_and(|m| m.is_dir()) {
            return Err(PgError::Refused(format!(
                "the backup lacks the files of tablespace {} (OID {})",
                ts.name, ts.oid
            )));
        }
        fs::create_dir_all(&location).map_err(PgError::io("cannot create", &location))?;
        std::os::unix::fs::chown(&location, Some(owner.uid()), Some(owner.gid()))
            .map_err(PgError::io("cannot hand over", &location))?;
        fs::set_permissions(&location, fs::Permissions::from_mode(0o700))
            .map_err(PgError::io("cannot set the mode of", &location))?;
        for child in fs::read_dir(&inside)
            .map_err(PgError::io("cannot read", &inside))?
            .flatten()
        {
            let to = location.join(child.file_name());
            if fs::symlink_metadata(&to).is_ok() {
                // Left behind by fold_in (another filesystem): the restored copy wins.
                fs::remove_dir_all(&to)
                    .or_else(|_| fs::remove_file(&to))
                    .map_err(PgError::io("cannot replace", &to))?;
            }
            move_tree(&child.path(), &to)
                .map_err(PgError::io("cannot move the tablespace to", &to))?;
        }
        fs::remove_dir(&inside).map_err(PgError::io("cannot remove", &inside))?;
        symlink(&location, &inside).map_err(PgError::io("cannot link", &inside))?;
        map.push_str(&format!("{} {}\n", ts.oid, location.display()));
        placed.push((ts.name.clone(), location));
    }
    let map_file = data_dir.join(crate::exclude::TABLESPACE_MAP);
    if tablespaces.is_empty() {
        let _ = fs::remove_file(&map_file);
    } else {
        fs::write(&map_file, map).map_err(PgError::io("cannot write", &map_file))?;
        std::os::unix::fs::chown(&map_file, Some(owner.uid()), Some(owner.gid()))
            .map_err(PgError::io("cannot hand over", &map_file))?;
    }
    Ok(placed)
}

/// Renames, or copies and removes when `from` and `to` are on different filesystems.
fn move_tree(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::CrossesDevices => {
            copy_tree(from, to)?;
            fs::remove_dir_all(from).or_else(|_| fs::remove_file(from))
        }
        Err(err) => Err(err),
    }
}

fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(from)?;
    if meta.is_dir() {
        fs::create_dir(to)?;
        for child in fs::read_dir(from)? {
            let child = child?;
            copy_tree(&child.path(), &to.join(child.file_name()))?;
        }
    } else if meta.file_type().is_symlink() {
        symlink(fs::read_link(from)?, to)?;
        return Ok(());
    } else {
        fs::copy(from, to)?;
    }
    fs::set_permissions(to, meta.permissions())?;
    std::os::unix::fs::chown(to, Some(meta.uid()), Some(meta.gid()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(data_dir: &Path) -> NodeSettings {
        NodeSettings {
            data_dir: data_dir.to_path_buf(),
            connect: Default::default(),
            bin_dir: crate::default_bin_dir(),
            primary_conninfo: None,
            tablespaces: Default::default(),
            wal_dir: None,
        }
    }

    fn ts(oid: &str, name: &str, location: &Path) -> Tablespace {
        Tablespace {
            oid: oid.into(),
            name: name.into(),
            location: location.display().to_string(),
        }
    }

    #[test]
    fn restored_tablespaces_move_out_and_back_in() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let original = dir.path().join("ts-original");
        let mapped = dir.path().join("ts-mapped");
        fs::create_dir_all(data.join("pg_tblspc/16384/PG_15_1/5")).unwrap();
        fs::write(data.join("pg_tblspc/16384/PG_15_1/5/16385"), b"rows").unwrap();
        fs::create_dir_all(&original).unwrap();
        fs::write(original.join("someone-else"), b"x").unwrap();

        let mut settings = node(&data);
        let spaces = vec![ts("16384", "cold", &original)];
        // The original location is occupied by something that is not ours: refused.
        let err = check_locations(&settings, &spaces, &BTreeSet::new()).unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");

        settings.tablespaces.insert("cold".into(), mapped.clone());
        check_locations(&settings, &spaces, &BTreeSet::new()).unwrap();
        let placed = fold_out(&settings, &spaces).unwrap();
        assert_eq!(placed, vec![("cold".to_string(), mapped.clone())]);
        assert_eq!(fs::read_link(data.join("pg_tblspc/16384")).unwrap(), mapped);
        assert_eq!(fs::read(mapped.join("PG_15_1/5/16385")).unwrap(), b"rows");
        assert_eq!(
            fs::read_to_string(data.join("tablespace_map")).unwrap(),
            format!("16384 {}\n", mapped.display())
        );

        // A second restore over it folds the tablespace back in; its location is then ours.
        let ours = fold_in(&data).unwrap();
        assert_eq!(ours, BTreeSet::from([mapped.clone()]));
        assert!(fs::symlink_metadata(data.join("pg_tblspc/16384"))
            .unwrap()
            .is_dir());
        assert_eq!(
            fs::read(data.join("pg_tblspc/16384/PG_15_1/5/16385")).unwrap(),
            b"rows"
        );
        check_locations(&settings, &spaces, &ours).unwrap();
        fold_out(&settings, &spaces).unwrap();
        assert_eq!(fs::read(mapped.join("PG_15_1/5/16385")).unwrap(), b"rows");
    }

    #[test]
    fn a_backup_without_the_tablespace_files_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        fs::create_dir_all(data.join("pg_tblspc")).unwrap();
        let spaces = vec![ts("1", "t", &dir.path().join("t"))];
        assert!(fold_out(&node(&data), &spaces).is_err());
    }

    #[test]
    fn copies_across_filesystems_keep_modes() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("a");
        fs::create_dir_all(from.join("sub")).unwrap();
        fs::write(from.join("sub/f"), b"1").unwrap();
        fs::set_permissions(from.join("sub/f"), fs::Permissions::from_mode(0o600)).unwrap();
        let to = dir.path().join("b");
        copy_tree(&from, &to).unwrap();
        assert_eq!(fs::read(to.join("sub/f")).unwrap(), b"1");
        let mode = fs::metadata(to.join("sub/f")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
