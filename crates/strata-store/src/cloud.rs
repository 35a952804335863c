//! Object storage backends (S3 and S3-compatible, Azure Blob, Google Cloud Storage) on top
//! of the `object_store` crate.
//!
//! A location is a URL: `s3://bucket/prefix`, `az://container/prefix` (also `azure://`),
//! `gs://bucket/prefix`. Settings come from the standard environment variables of each
//! provider (`AWS_*`, `AZURE_*`, `GOOGLE_*`) and from `options`, a map of `object_store`
//! configuration keys (`aws_endpoint`, `aws_region`, `aws_allow_http`,
//! `azure_storage_account_name`, `azure_use_emulator`, `google_service_account`, ...).
//! Credentials never appear in [`Store::describe`] or in errors.

use crate::{ObjectMeta, Store, StoreError, StoreResult};
use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

/// Objects larger than this are uploaded in parts (packs above the default size).
const MULTIPART_THRESHOLD: usize = 32 * 1024 * 1024;
/// Size of each part of a multipart upload (S3 wants at least 5 MiB).
const PART_SIZE: usize = 16 * 1024 * 1024;

/// A bucket (or container) and prefix of an object storage.
#[derive(Debug)]
pub struct CloudStore {
    inner: Arc<dyn ObjectStore>,
    /// Key prefix inside the bucket, without a trailing `/`; empty for the bucket root.
    prefix: String,
    /// The location URL, for messages (never holds credentials).
    label: String,
}

/// True for URLs this module handles.
pub fn is_cloud_url(location: &str) -> bool {
    ["s3://", "az://", "azure://", "gs://"]
        .iter()
        .any(|scheme| location.starts_with(scheme))
}

/// object_store's own retries switched off: strata's [`crate::RetryStore`] retries with
/// its configured policy, and retrying in two layers turns an unreachable endpoint into
/// minutes of waiting.
pub(crate) fn single_attempt() -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: 0,
        ..object_store::RetryConfig::default()
    }
}

/// Applies `options` (object_store configuration keys) to a provider's builder.
pub(crate) fn configure<B, K>(
    mut builder: B,
    options: &BTreeMap<String, String>,
    set: impl Fn(B, K, &str) -> B,
) -> Result<B, String>
where
    K: std::str::FromStr<Err = object_store::Error>,
{
    for (key, value) in options {
        let key = key
            .parse()
            .map_err(|e: object_store::Error| e.to_string())?;
        builder = set(builder, key, value);
    }
    Ok(builder)
}

/// Opens an object storage location: S3 and Azure through object_store, GCS through its
/// JSON API.
pub fn open_cloud(
    location: &str,
    options: &BTreeMap<String, String>,
) -> StoreResult<crate::DynStore> {
    if let Some(rest) = location.strip_prefix("gs://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(StoreError::UnsupportedLocation(location.to_string()));
        }
        return Ok(Arc::new(crate::GcsStore::open(bucket, prefix, options)?));
    }
    Ok(Arc::new(CloudStore::open(location, options)?))
}

impl CloudStore {
    /// Opens `location` with extra `options` (object_store configuration keys).
    pub fn open(location: &str, options: &BTreeMap<String, String>) -> StoreResult<CloudStore> {
        let invalid = |why: String| StoreError::Backend {
            op: "open",
            key: String::new(),
            store: location.to_string(),
            message: why,
        };
        let url = url::Url::parse(location).map_err(|e| invalid(e.to_string()))?;
        let bucket = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid("the URL names no bucket or container".into()))?
            .to_string();
        let prefix = url.path().trim_matches('/').to_string();
        let inner: Arc<dyn ObjectStore> = match url.scheme() {
            "s3" => {
                let builder = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(&bucket)
                    .with_retry(single_attempt());
                let builder =
                    configure(builder, options, |b, k, v| b.with_config(k, v)).map_err(invalid)?;
                Arc::new(builder.build().map_err(|e| invalid(e.to_string()))?)
            }
            "az" | "azure" => {
                let builder = object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_container_name(&bucket)
                    .with_retry(single_attempt());
                let builder =
                    configure(builder, options, |b, k, v| b.with_config(k, v)).map_err(invalid)?;
                Arc::new(builder.build().map_err(|e| invalid(e.to_string()))?)
            }
            other => return Err(StoreError::UnsupportedLocation(format!("{other}://"))),
        };
        let label = format!("{}://{}/{}", url.scheme(), bucket, prefix);
        Ok(CloudStore {
            inner,
            prefix,
            label: label.trim_end_matches('/').to_string(),
        })
    }

    fn path(&self, key: &str) -> StoreResult<ObjectPath> {
        crate::validate_key(key)?;
        let full = if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        };
        ObjectPath::parse(&full).map_err(|_| StoreError::InvalidKey(key.to_string()))
    }

    fn error(&self, op: &'static str, key: &str, err: object_store::Error) -> StoreError {
        use object_store::Error as E;
        match err {
            E::NotFound { .. } => StoreError::NotFound {
                key: key.to_string(),
                store: self.label.clone(),
            },
            E::AlreadyExists { .. } | E::Precondition { .. } => StoreError::AlreadyExists {
                key: key.to_string(),
                store: self.label.clone(),
            },
            E::PermissionDenied { .. }
            | E::Unauthenticated { .. }
            | E::NotSupported { .. }
            | E::NotImplemented { .. }
            | E::UnknownConfigurationKey { .. } => StoreError::Backend {
                op,
                key: key.to_string(),
                store: self.label.clone(),
                message: err.to_string(),
            },
            // Network errors, 5xx and timeouts, after object_store's own retries.
            other => StoreError::Transient {
                op,
                key: key.to_string(),
                store: self.label.clone(),
                message: other.to_string(),
            },
        }
    }

    async fn put_multipart(&self, key: &str, path: &ObjectPath, data: Bytes) -> StoreResult<()> {
        let mut upload = self
            .inner
            .put_multipart(path)
            .await
            .map_err(|e| self.error("put", key, e))?;
        let mut offset = 0;
        while offset < data.len() {
            let end = (offset + PART_SIZE).min(data.len());
            if let Err(err) = upload
                .put_part(PutPayload::from(data.slice(offset..end)))
                .await
            {
                let _ = upload.abort().await;
                return Err(self.error("put", key, err));
            }
            offset = end;
        }
        match upload.complete().await {
            Ok(_) => Ok(()),
            Err(err) => {
                let _ = upload.abort().await;
                Err(self.error("put", key, err))
            }
        }
    }
}

#[async_trait]
impl Store for CloudStore {
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        let path = self.path(key)?;
        if data.len() > MULTIPART_THRESHOLD {
            return self.put_multipart(key, &path, data).await;
        }
        self.inner
            .put(&path, PutPayload::from(data))
            .await
            .map(|_| ())
            .map_err(|e| self.error("put", key, e))
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<()> {
        let path = self.path(key)?;
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        self.inner
            .put_opts(&path, PutPayload::from(data), options)
            .await
            .map(|_| ())
            .map_err(|e| self.error("put", key, e))
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        let path = self.path(key)?;
        let result = self
            .inner
            .get(&path)
            .await
            .map_err(|e| self.error("get", key, e))?;
        result.bytes().await.map_err(|e| self.error("get", key, e))
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        let path = self.path(key)?;
        if range.start == range.end {
            return Ok(Bytes::new());
        }
        self.inner
            .get_range(&path, range)
            .await
            .map_err(|e| self.error("get", key, e))
    }

    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        // object_store lists by directory: list the deepest complete directory of the
        // prefix and filter the rest.
        let dir = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let full_dir = match (self.prefix.is_empty(), dir.is_empty()) {
            (true, _) => dir.to_string(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}/{dir}", self.prefix),
        };
        let list_path = if full_dir.is_empty() {
            None
        } else {
            Some(
                ObjectPath::parse(&full_dir)
                    .map_err(|_| StoreError::InvalidKey(prefix.to_string()))?,
            )
        };
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let mut out: Vec<ObjectMeta> = self
            .inner
            .list(list_path.as_ref())
            .map_err(|e| self.error("list", prefix, e))
            .try_filter_map(|meta| {
                let key = meta
                    .location
                    .as_ref()
                    .strip_prefix(strip.as_str())
                    .map(str::to_string);
                let item = key.filter(|k| k.starts_with(prefix)).map(|key| ObjectMeta {
                    key,
                    size: meta.size,
                    modified: Some(std::time::SystemTime::from(meta.last_modified)),
                });
                futures::future::ready(Ok(item))
            })
            .try_collect()
            .await?;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let path = self.path(key)?;
        match self.inner.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(self.error("delete", key, err)),
        }
    }

    fn describe(&self) -> String {
        self.label.clone()
    }
}
