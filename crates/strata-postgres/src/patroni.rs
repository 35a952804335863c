//! A restore onto a member of a Patroni cluster. Patroni writes some files of the data
//! directory for the member it runs on: `postgresql.conf` (its port, its paths, its role's
//! settings), the access rules and its cache of the cluster's settings. A backup holds
//! those of the member it was taken from (often another one: backups come from a
//! replica), so a restore onto a member keeps the member's own ([`MEMBER_FILES`]): read
//! before the restore, put back before the server starts.

use crate::{PgError, PgResult};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::io::Read;
use std::path::Path;

/// The files Patroni writes for its member.
pub const MEMBER_FILES: [&str; 5] = [
    "postgresql.conf",
    "postgresql.base.conf",
    "pg_hba.conf",
    "pg_ident.conf",
    "patroni.dynamic.json",
];

/// The largest member file kept (a configuration, not data).
const FILE_LIMIT: u64 = 1 << 20;

/// The data directory, opened for the `*at` calls below.
fn open_dir(data_dir: &Path) -> PgResult<std::os::fd::OwnedFd> {
    rfs::open(
        data_dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| PgError::io("cannot open".to_string(), data_dir.to_path_buf())(e.into()))
}

/// The member's own files, as they are before a restore: regular files only (a link is
/// not followed), each at most 1 MiB; the ones absent are left out.
pub fn read_member_files(data_dir: &Path) -> PgResult<Vec<(String, Vec<u8>)>> {
    let io = |what: &str, path: &Path| PgError::io(what.to_string(), path.to_path_buf());
    let data = open_dir(data_dir)?;
    let mut kept = Vec::new();
    for name in MEMBER_FILES {
        let path = data_dir.join(name);
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match rfs::openat(&data, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => continue,
            Err(Errno::LOOP) => {
                return Err(PgError::Refused(format!(
                    "{} is a symlink; a Patroni member's own files are regular files",
                    path.display()
                )))
            }
            Err(err) => return Err(io("cannot read", &path)(err.into())),
        };
        let stat = rfs::fstat(&fd).map_err(|e| io("cannot read", &path)(e.into()))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(PgError::Refused(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        let mut bytes = Vec::new();
        std::fs::File::from(fd)
            .take(FILE_LIMIT + 1)
            .read_to_end(&mut bytes)
            .map_err(io("cannot read", &path))?;
        if bytes.len() as u64 > FILE_LIMIT {
            return Err(PgError::Refused(format!(
                "{} is larger than 1 MiB: not a configuration file Patroni wrote",
                path.display()
            )));
        }
        kept.push((name.to_string(), bytes));
    }
    Ok(kept)
}

/// Puts the member's files back over what the restore laid down: each written new
/// beside and renamed into place (a link the backup held is replaced, never followed),
/// owned like the data directory.
pub fn put_member_files(data_dir: &Path, files: &[(String, Vec<u8>)]) -> PgResult<()> {
    let io = |what: &str, path: &Path| PgError::io(what.to_string(), path.to_path_buf());
    let data = open_dir(data_dir)?;
    let stat = rfs::fstat(&data).map_err(|e| io("cannot read", data_dir)(e.into()))?;
    for (name, bytes) in files {
        if !MEMBER_FILES.contains(&name.as_str()) {
            continue;
        }
        let path = data_dir.join(name);
        let temp = format!(".{name}.strata-tmp");
        match rfs::unlinkat(&data, temp.as_str(), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(err) => return Err(io("cannot remove", &data_dir.join(&temp))(err.into())),
        }
        crate::recovery::create_new(&data, &temp, bytes, (stat.st_uid, stat.st_gid))
            .and_then(|()| Ok(rfs::renameat(&data, temp.as_str(), &data, name.as_str())?))
            .map_err(io("cannot write", &path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_members_own_files_come_back_over_the_backups() {
        let member = tempfile::tempdir().unwrap();
        let data = member.path();
        std::fs::write(data.join("postgresql.conf"), "port = 5433\n").unwrap();
        std::fs::write(data.join("pg_hba.conf"), "local all all trust\n").unwrap();
        std::fs::write(data.join("PG_VERSION"), "15\n").unwrap();
        let kept = read_member_files(data).unwrap();
        let names: Vec<&str> = kept.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["postgresql.conf", "pg_hba.conf"]);
        // The restore lays down another member's files, one of them a link out.
        let outside = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(outside.path(), "precious").unwrap();
        std::fs::write(data.join("postgresql.conf"), "port = 5432\n").unwrap();
        std::fs::remove_file(data.join("pg_hba.conf")).unwrap();
        std::os::unix::fs::symlink(outside.path(), data.join("pg_hba.conf")).unwrap();
        put_member_files(data, &kept).unwrap();
        assert_eq!(
            std::fs::read_to_string(data.join("postgresql.conf")).unwrap(),
            "port = 5433\n"
        );
        assert_eq!(
            std::fs::read_to_string(data.join("pg_hba.conf")).unwrap(),
            "local all all trust\n"
        );
        assert!(!data.join("pg_hba.conf").is_symlink());
        assert_eq!(std::fs::read_to_string(outside.path()).unwrap(), "precious");
        // A member whose file is a link is refused before anything is restored.
        assert!(read_member_files(data).is_ok());
        std::fs::remove_file(data.join("pg_ident.conf")).ok();
        std::os::unix::fs::symlink(outside.path(), data.join("pg_ident.conf")).unwrap();
        assert!(read_member_files(data)
            .unwrap_err()
            .to_string()
            .contains("symlink"));
    }
}
