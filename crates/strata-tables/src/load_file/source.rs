//! Where a file's bytes come from: a local path, or an object of a storage read through
//! the same [`strata_store::Store`] the archives use (a configured storage by name, or an
//! `s3://`, `az://`, `gs://` URL), in ranged reads of [`RANGE_BYTES`] a few at a time, so
//! memory stays flat whatever the object's size. Parquet needs random access: an object
//! is first copied to an anonymous temporary file.

use super::error::{LoadFileError, LoadFileResult};
use bytes::Bytes;
use std::io::Read;
use std::path::PathBuf;
use strata_store::DynStore;

/// Bytes asked of a storage at once.
pub const RANGE_BYTES: u64 = 8 << 20;
/// Ranges fetched ahead of the reader.
const AHEAD: usize = 2;

/// A file to load.
#[derive(Debug, Clone)]
pub enum FileSource {
    /// A file on this machine.
    Local(PathBuf),
    /// An object in a storage.
    Object {
        /// The storage.
        store: DynStore,
        /// The object's key in it.
        key: String,
    },
}

/// Where `file` is: `--storage NAME` with a key; a `s3://`, `az://` or `gs://` URL in a
/// configured storage (the one whose URL it starts with, so its options and credentials
/// apply), or else opened from the environment; or a local path (`file://` allowed).
/// `storages` opens a configured storage by name; `urls` are the configured storages'
/// names and URLs.
pub fn resolve(
    file: &str,
    storage: Option<&str>,
    storages: &dyn Fn(&str) -> crate::TablesResult<DynStore>,
    urls: &[(String, String)],
) -> crate::TablesResult<FileSource> {
    if let Some(name) = storage {
        let key = file.trim_start_matches('/').to_string();
        strata_store::validate_key(&key)?;
        return Ok(FileSource::Object {
            store: storages(name)?,
            key,
        });
    }
    if strata_store::is_cloud_url(file) {
        for (name, url) in urls {
            let base = url.trim_end_matches('/');
            if let Some(key) = file.strip_prefix(base).and_then(|k| k.strip_prefix('/')) {
                strata_store::validate_key(key)?;
                return Ok(FileSource::Object {
                    store: storages(name)?,
                    key: key.to_string(),
                });
            }
        }
        let (location, key) = file.rsplit_once('/').unwrap_or((file, ""));
        if location.ends_with(':') || location.ends_with("//") {
            return Err(LoadFileError::Usage(format!("{file}: the URL names no object")).into());
        }
        strata_store::validate_key(key)?;
        let store = strata_store::open_location(location, &Default::default())?;
        return Ok(FileSource::Object {
            store,
            key: key.to_string(),
        });
    }
    if file.contains("://") && !file.starts_with("file://") {
        return Err(LoadFileError::Usage(format!(
            "{file}: a local path, file://PATH, or s3://, az://, gs:// (or --storage NAME with a key)"
        ))
        .into());
    }
    Ok(FileSource::Local(PathBuf::from(
        file.strip_prefix("file://").unwrap_or(file),
    )))
}

impl FileSource {
    /// The file's size.
    pub async fn size(&self, label: &str) -> LoadFileResult<u64> {
        let read = |why: String| LoadFileError::Read {
            file: label.to_string(),
            why,
        };
        match self {
            FileSource::Local(path) => {
                let meta = tokio::fs::metadata(path)
                    .await
                    .map_err(|e| read(e.to_string()))?;
                if !meta.is_file() {
                    return Err(read("not a regular file".into()));
                }
                Ok(meta.len())
            }
            FileSource::Object { store, key } => match store.head(key).await {
                Ok(meta) => Ok(meta.size),
                Err(e) if e.is_not_found() => {
                    Err(read(format!("no object {key:?} in {}", store.describe())))
                }
                Err(e) => Err(read(e.to_string())),
            },
        }
    }

    /// Opens the file for reading from a blocking thread; an object is fetched by tasks
    /// on `runtime`.
    pub fn open(
        &self,
        label: &str,
        size: u64,
        runtime: &tokio::runtime::Handle,
    ) -> LoadFileResult<Box<dyn Read + Send>> {
        match self {
            FileSource::Local(path) => Ok(Box::new(open_regular(path, label)?)),
            FileSource::Object { store, key } => {
                let (tx, rx) = tokio::sync::mpsc::channel(AHEAD);
                let (store, key) = (store.clone(), key.clone());
                runtime.spawn(async move {
                    let mut at = 0;
                    while at < size {
                        let end = (at + RANGE_BYTES).min(size);
                        // A range shorter (or longer) than asked means the object was
                        // replaced or cut while it was read: stop, never skip bytes.
                        let got = match store.get_range(&key, at..end).await {
                            Ok(data) if data.len() as u64 == end - at => Ok(data),
                            Ok(data) => Err(RangeError::Changed {
                                got: data.len(),
                                at,
                                expected: end - at,
                            }),
                            Err(e) => Err(RangeError::Store(e)),
                        };
                        let failed = got.is_err();
                        if tx.send(got).await.is_err() || failed {
                            return;
                        }
                        at = end;
                    }
                });
                Ok(Box::new(ObjectRead {
                    rx,
                    current: Bytes::new(),
                    label: label.to_string(),
                }))
            }
        }
    }

    /// The file as a local file (Parquet reads at random): a local path opened, an object
    /// copied to an anonymous temporary file first.
    pub fn local_file(
        &self,
        label: &str,
        size: u64,
        runtime: &tokio::runtime::Handle,
    ) -> LoadFileResult<std::fs::File> {
        let read = |e: std::io::Error| LoadFileError::Read {
            file: label.to_string(),
            why: e.to_string(),
        };
        match self {
            FileSource::Local(path) => open_regular(path, label),
            FileSource::Object { .. } => {
                let mut copy = tempfile::tempfile().map_err(read)?;
                let mut input = self.open(label, size, runtime)?;
                std::io::copy(&mut input, &mut copy).map_err(read)?;
                Ok(copy)
            }
        }
    }
}

/// Opens a local file and checks, on the open descriptor, that it is a regular file: the
/// path may have been replaced since [`FileSource::size`] looked (a FIFO would block the
/// load for ever, a device would never end). It opens without blocking for the same
/// reason.
fn open_regular(path: &std::path::Path, label: &str) -> LoadFileResult<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let read = |why: String| LoadFileError::Read {
        file: label.to_string(),
        why,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| read(e.to_string()))?;
    let meta = file.metadata().map_err(|e| read(e.to_string()))?;
    if !meta.is_file() {
        return Err(read("not a regular file".into()));
    }
    Ok(file)
}

/// Why a range of an object could not be read.
#[derive(Debug, thiserror::Error)]
enum RangeError {
    /// The range came back shorter or longer than asked: the object was replaced or cut.
    #[error("the object changed while it was read: {got} bytes at offset {at} where {expected} were expected")]
    Changed { got: usize, at: u64, expected: u64 },
    /// The storage refused the request.
    #[error("{0}")]
    Store(strata_store::StoreError),
}

/// An object's ranges, as they arrive, as one stream of bytes.
struct ObjectRead {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, RangeError>>,
    current: Bytes,
    label: String,
}

impl Read for ObjectRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(data)) => self.current = data,
                Some(Err(why)) => {
                    return Err(std::io::Error::other(format!(
                        "reading {}: {why}",
                        self.label
                    )))
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_fifo_in_place_of_the_file_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("data.csv");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let source = FileSource::Local(fifo);
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let err = source.open("data.csv", 0, runtime.handle()).err().unwrap();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let err = source
            .local_file("data.csv", 0, runtime.handle())
            .unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn an_object_replaced_by_a_shorter_one_while_read_fails_instead_of_skipping_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let store: DynStore = Arc::new(strata_store::LocalStore::new(dir.path()));
        let key = "in/data.csv".to_string();
        let size = RANGE_BYTES + (1 << 20);
        runtime
            .block_on(store.put(&key, Bytes::from(vec![b'a'; size as usize])))
            .unwrap();
        let source = FileSource::Object {
            store: store.clone(),
            key: key.clone(),
        };
        assert_eq!(runtime.block_on(source.size("data.csv")).unwrap(), size);
        // Replaced after its size was taken: the second range comes back short.
        runtime
            .block_on(store.put(&key, Bytes::from(vec![b'b'; (size - 4096) as usize])))
            .unwrap();
        let mut input = source.open("data.csv", size, runtime.handle()).unwrap();
        let mut all = Vec::new();
        // The store refuses the range past the new end, or returns it short, which the
        // reader refuses: either way an error naming the file, never a shorter stream.
        let err = input.read_to_end(&mut all).unwrap_err();
        assert!(err.to_string().contains("reading data.csv"), "{err}");
        assert!((all.len() as u64) < size);
    }
}
