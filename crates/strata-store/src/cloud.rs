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
use object_store::{
    Attribute, Attributes, ClientConfigKey, ObjectStore, ObjectStoreExt, PutMode, PutOptions,
    PutPayload,
};
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
    /// Set once the bucket was seen to exist: a 404 is then a missing object.
    bucket_seen: std::sync::atomic::AtomicBool,
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
) -> Result<B, object_store::Error>
where
    K: std::str::FromStr<Err = object_store::Error>,
{
    for (key, value) in options {
        let key = key.parse()?;
        builder = set(builder, key, value);
    }
    Ok(builder)
}

/// A configuration value object_store reads as `true`.
fn is_true(value: &str) -> bool {
    ["true", "1", "yes", "on"]
        .iter()
        .any(|t| value.trim().eq_ignore_ascii_case(t))
}

/// The option and environment variable that allow a plain `http://` endpoint.
fn allow_http_option(scheme: &str) -> (&'static str, &'static str) {
    match scheme {
        "az" | "azure" => ("azure_allow_http", "AZURE_ALLOW_HTTP"),
        _ => ("aws_allow_http", "AWS_ALLOW_HTTP"),
    }
}

/// Why an `http://` endpoint will be refused, when it will: object_store's client only
/// speaks https unless told otherwise, and says no more than "builder error" when asked.
fn plain_http_refused(
    endpoint: Option<String>,
    allowed: Option<String>,
    scheme: &str,
) -> Option<String> {
    let endpoint = endpoint.filter(|e| e.trim().to_ascii_lowercase().starts_with("http://"))?;
    if allowed.is_some_and(|v| is_true(&v)) {
        return None;
    }
    let (option, env) = allow_http_option(scheme);
    Some(format!(
        "the endpoint {endpoint} is plain http, which is refused unless allowed: set \
         `{option} = \"true\"` in the storage's options (or {env}=true in the environment), \
         or use an https endpoint"
    ))
}

/// What an error of object_store means to strata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    NotFound,
    AlreadyExists,
    NoBucket,
    PermissionDenied,
    /// A plain http endpoint that was not allowed.
    HttpNotAllowed,
    /// An object in an archive tier, which must be rehydrated before it can be read
    /// (Azure's `BlobArchived`, S3's `InvalidObjectState` for Glacier classes).
    Archived,
    /// Permanent for another reason (a 4xx, an unsupported request, a bad setting).
    Permanent,
    Transient,
}

/// An error with its causes, as one line: object_store puts the status and the body of
/// the storage's answer (its error code) in the causes.
fn chain_text(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    // The storage's answer may be an XML document over several lines: one line it is.
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The HTTP status an object_store message reports, if any.
fn status_in(text: &str) -> Option<u16> {
    let at = text.find("status code: ")? + "status code: ".len();
    text.get(at..at + 3)?.parse().ok()
}

/// Classifies by the error codes in the text of an error, before its variant: a 404 of a
/// missing bucket is no missing object, and several requests (listings, deletes of S3's
/// bulk API) come back as `Generic` errors whatever the cause.
pub(crate) fn classify_text(text: &str) -> Option<Kind> {
    const NO_BUCKET: [&str; 4] = [
        "NoSuchBucket",
        "ContainerNotFound",
        "The specified bucket does not exist",
        "The specified container does not exist",
    ];
    const DENIED: [&str; 8] = [
        "AccessDenied",
        "Access Denied",
        "AuthorizationFailure",
        "AuthorizationPermissionMismatch",
        "AuthenticationFailed",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AllAccessDisabled",
    ];
    if NO_BUCKET.iter().any(|code| text.contains(code)) {
        return Some(Kind::NoBucket);
    }
    if text.contains("BlobArchived") || text.contains("InvalidObjectState") {
        return Some(Kind::Archived);
    }
    if DENIED.iter().any(|code| text.contains(code)) {
        return Some(Kind::PermissionDenied);
    }
    if text.contains("URL scheme is not allowed") {
        return Some(Kind::HttpNotAllowed);
    }
    None
}

/// Classifies by the HTTP status in the text of an error object_store did not classify:
/// a 4xx other than a timeout or throttling is the request's own fault, not retried.
fn classify_status(text: &str) -> Option<Kind> {
    match status_in(text) {
        Some(401 | 403) => Some(Kind::PermissionDenied),
        Some(408 | 429) => Some(Kind::Transient),
        Some(400..=499) => Some(Kind::Permanent),
        _ => None,
    }
}

/// Classifies an object_store error: its text first ([`classify_text`]), then its
/// variant.
pub(crate) fn classify(err: &object_store::Error) -> Kind {
    use object_store::Error as E;
    let by_variant = match err {
        E::NotFound { .. } => Kind::NotFound,
        E::AlreadyExists { .. } | E::Precondition { .. } => Kind::AlreadyExists,
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => Kind::PermissionDenied,
        E::NotSupported { .. } | E::NotImplemented { .. } | E::UnknownConfigurationKey { .. } => {
            Kind::Permanent
        }
        _ => Kind::Transient,
    };
    let text = chain_text(err);
    match (by_variant, classify_text(&text)) {
        // A 412 or 409 says nothing more than its status.
        (Kind::AlreadyExists, _) => Kind::AlreadyExists,
        (_, Some(kind)) => kind,
        (Kind::Transient, None) => classify_status(&text).unwrap_or(Kind::Transient),
        (kind, None) => kind,
    }
}

impl CloudStore {
    /// Opens `location` with extra `options` (object_store configuration keys).
    pub fn open(location: &str, options: &BTreeMap<String, String>) -> StoreResult<CloudStore> {
        strata_util::tls_by_ring();
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
                use object_store::aws::AmazonS3ConfigKey as K;
                let builder = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(&bucket)
                    .with_retry(single_attempt());
                let builder = configure(builder, options, |b, k, v| b.with_config(k, v))
                    .map_err(|e| invalid(e.to_string()))?;
                let endpoint = builder.get_config_value(&K::Endpoint);
                let allowed = builder.get_config_value(&K::Client(ClientConfigKey::AllowHttp));
                if let Some(why) = plain_http_refused(endpoint, allowed, "s3") {
                    return Err(invalid(why));
                }
                Arc::new(builder.build().map_err(|e| invalid(e.to_string()))?)
            }
            "az" | "azure" => {
                use object_store::azure::AzureConfigKey as K;
                let builder = object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_container_name(&bucket)
                    .with_retry(single_attempt());
                let builder = configure(builder, options, |b, k, v| b.with_config(k, v))
                    .map_err(|e| invalid(e.to_string()))?;
                let emulator = builder
                    .get_config_value(&K::UseEmulator)
                    .is_some_and(|v| is_true(&v));
                let endpoint = builder.get_config_value(&K::Endpoint);
                let allowed = builder.get_config_value(&K::Client(ClientConfigKey::AllowHttp));
                if let Some(why) = plain_http_refused(endpoint.filter(|_| !emulator), allowed, "az")
                {
                    return Err(invalid(why));
                }
                Arc::new(builder.build().map_err(|e| invalid(e.to_string()))?)
            }
            other => return Err(StoreError::UnsupportedLocation(format!("{other}://"))),
        };
        let label = format!("{}://{}/{}", url.scheme(), bucket, prefix);
        Ok(CloudStore {
            inner,
            prefix,
            label: label.trim_end_matches('/').to_string(),
            bucket_seen: std::sync::atomic::AtomicBool::new(false),
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
        let key = key.to_string();
        let store = self.label.clone();
        let message = chain_text(&err);
        // A read that conflicts is no "already exists": Azure answers 409 BlobArchived
        // to a read of a blob in the Archive tier (its code is not always in the text).
        let kind = match (classify(&err), op) {
            (Kind::AlreadyExists, "get") => Kind::Archived,
            (kind, _) => kind,
        };
        match kind {
            Kind::NotFound => StoreError::NotFound { key, store },
            Kind::AlreadyExists => StoreError::AlreadyExists { key, store },
            Kind::NoBucket => StoreError::NoBucket {
                kind: if self.label.starts_with("s3://") {
                    "bucket"
                } else {
                    "container"
                },
                store,
                message,
            },
            Kind::PermissionDenied => StoreError::PermissionDenied {
                op,
                key,
                store,
                message,
            },
            Kind::HttpNotAllowed => {
                let scheme = self.label.split("://").next().unwrap_or("s3");
                let (option, env) = allow_http_option(scheme);
                StoreError::Backend {
                    op,
                    key,
                    store,
                    message: format!(
                        "the endpoint is plain http, which is refused unless allowed: set \
                         `{option} = \"true\"` in the storage's options (or {env}=true), or \
                         use https ({message})"
                    ),
                }
            }
            Kind::Archived => StoreError::Backend {
                op,
                key: key.clone(),
                store,
                message: format!(
                    "{key} is in an archive tier and cannot be read until it is rehydrated: \
                     rehydrate it first (Azure: set its access tier to Hot or Cool; S3: \
                     restore-object from Glacier), then try again ({message})"
                ),
            },
            Kind::Permanent => StoreError::Backend {
                op,
                key,
                store,
                message,
            },
            // Network errors, 5xx and timeouts.
            Kind::Transient => StoreError::Transient {
                op,
                key,
                store,
                message,
            },
        }
    }

    /// The error of a read or delete: a "not found" is checked against the bucket once
    /// (some servers answer a read of a missing bucket with `NoSuchKey`; a listing says
    /// `NoSuchBucket`), so a missing bucket never reads as a missing object.
    async fn read_error(
        &self,
        op: &'static str,
        key: &str,
        err: object_store::Error,
    ) -> StoreError {
        use std::sync::atomic::Ordering;
        let err = self.error(op, key, err);
        if !err.is_not_found() || self.bucket_seen.load(Ordering::Relaxed) {
            return err;
        }
        let root = (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()));
        match self.inner.list_with_delimiter(root.as_ref()).await {
            Ok(_) => {
                self.bucket_seen.store(true, Ordering::Relaxed);
                err
            }
            Err(list_err) => match self.error("list", "", list_err) {
                missing @ StoreError::NoBucket { .. } => missing,
                _ => err,
            },
        }
    }

    /// The objects under `prefix` (after `after`, when given), in key order.
    async fn list_from(&self, prefix: &str, after: Option<&str>) -> StoreResult<Vec<ObjectMeta>> {
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
        // An offset that is no object path (a key cannot be one, but `after` need not be a
        // key) is filtered here instead: the same answer, without the saving.
        let offset = after.and_then(|a| ObjectPath::parse(format!("{strip}{a}")).ok());
        let stream = match &offset {
            Some(offset) => self.inner.list_with_offset(list_path.as_ref(), offset),
            None => self.inner.list(list_path.as_ref()),
        };
        let mut out: Vec<ObjectMeta> = stream
            .map_err(|e| self.error("list", prefix, e))
            .try_filter_map(|meta| {
                let key = meta
                    .location
                    .as_ref()
                    .strip_prefix(strip.as_str())
                    .map(str::to_string);
                let wanted = |k: &String| k.starts_with(prefix) && after.is_none_or(|a| **k > *a);
                let item = key.filter(wanted).map(|key| ObjectMeta {
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

    /// A put with `attributes`: in one request, or in parts when it is large.
    async fn put_with(&self, key: &str, data: Bytes, attributes: Attributes) -> StoreResult<()> {
        let path = self.path(key)?;
        if data.len() > MULTIPART_THRESHOLD {
            return self.put_multipart(key, &path, data, attributes).await;
        }
        let options = PutOptions {
            attributes,
            ..PutOptions::default()
        };
        self.inner
            .put_opts(&path, PutPayload::from(data), options)
            .await
            .map(|_| ())
            .map_err(|e| self.error("put", key, e))
    }

    async fn put_multipart(
        &self,
        key: &str,
        path: &ObjectPath,
        data: Bytes,
        attributes: Attributes,
    ) -> StoreResult<()> {
        let options = object_store::PutMultipartOptions {
            attributes,
            ..Default::default()
        };
        let mut upload = self
            .inner
            .put_multipart_opts(path, options)
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
        self.put_with(key, data, Attributes::new()).await
    }

    /// S3's `x-amz-storage-class`, Azure's `x-ms-access-tier` (object_store's one
    /// attribute for both).
    async fn put_in_class(&self, key: &str, data: Bytes, class: &str) -> StoreResult<()> {
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::StorageClass, class.to_string().into());
        self.put_with(key, data, attributes).await
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
        let result = match self.inner.get(&path).await {
            Ok(result) => result,
            Err(e) => return Err(self.read_error("get", key, e).await),
        };
        result.bytes().await.map_err(|e| self.error("get", key, e))
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        let path = self.path(key)?;
        if range.start == range.end {
            return Ok(Bytes::new());
        }
        match self.inner.get_range(&path, range).await {
            Ok(data) => Ok(data),
            Err(e) => Err(self.read_error("get", key, e).await),
        }
    }

    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        self.list_from(prefix, None).await
    }

    /// Asks the storage for the keys after `after` only: S3 sends `start-after` and Azure
    /// `startFrom` (object_store filters for the servers that lack them: S3 Express,
    /// Azurite), so a listing's requests follow the keys returned.
    async fn list_after(&self, prefix: &str, after: &str) -> StoreResult<Vec<ObjectMeta>> {
        self.list_from(prefix, Some(after)).await
    }

    async fn head(&self, key: &str) -> StoreResult<ObjectMeta> {
        let path = self.path(key)?;
        match self.inner.head(&path).await {
            Ok(meta) => Ok(ObjectMeta {
                key: key.to_string(),
                size: meta.size,
                modified: Some(std::time::SystemTime::from(meta.last_modified)),
            }),
            Err(e) => Err(self.read_error("get", key, e).await),
        }
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let path = self.path(key)?;
        match self.inner.delete(&path).await {
            Ok(()) => Ok(()),
            Err(err) => match self.read_error("delete", key, err).await {
                StoreError::NotFound { .. } => Ok(()),
                err => Err(err),
            },
        }
    }

    fn describe(&self) -> String {
        self.label.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::Error as E;

    fn generic(text: &str) -> E {
        E::Generic {
            store: "S3",
            source: text.into(),
        }
    }

    fn not_found(text: &str) -> E {
        E::NotFound {
            path: "repo/config".into(),
            source: text.into(),
        }
    }

    #[test]
    fn errors_are_classified_by_code_then_status_then_variant() {
        let cases = [
            // S3's bulk delete reports a refusal inside a 200 answer: Generic.
            (
                generic("DeleteObjects request failed for key repo/data/ab/cd: Access Denied (code: AccessDenied)"),
                Kind::PermissionDenied,
            ),
            (
                generic("Error performing list request: Server returned non-2xx status code: 403 Forbidden: "),
                Kind::PermissionDenied,
            ),
            (
                E::PermissionDenied {
                    path: "repo/config".into(),
                    source: "403".into(),
                },
                Kind::PermissionDenied,
            ),
            (
                E::Unauthenticated {
                    path: "repo/config".into(),
                    source: "401".into(),
                },
                Kind::PermissionDenied,
            ),
            (
                not_found("404 Not Found: <Error><Code>NoSuchBucket</Code></Error>"),
                Kind::NoBucket,
            ),
            (
                generic("Error performing list request: 404 Not Found: <Error><Code>NoSuchBucket</Code></Error>"),
                Kind::NoBucket,
            ),
            (
                not_found("404 The specified container does not exist. <Code>ContainerNotFound</Code>"),
                Kind::NoBucket,
            ),
            (
                not_found("404 Not Found: <Error><Code>NoSuchKey</Code></Error>"),
                Kind::NotFound,
            ),
            (
                E::Precondition {
                    path: "repo/config".into(),
                    source: "412".into(),
                },
                Kind::AlreadyExists,
            ),
            (
                generic("HTTP error: builder error: URL scheme is not allowed"),
                Kind::HttpNotAllowed,
            ),
            (
                generic("Server returned non-2xx status code: 400 Bad Request: InvalidArgument"),
                Kind::Permanent,
            ),
            (
                generic("Server returned non-2xx status code: 503 Service Unavailable: SlowDown"),
                Kind::Transient,
            ),
            (
                generic("Server returned non-2xx status code: 429 Too Many Requests"),
                Kind::Transient,
            ),
            (
                generic("HTTP error: error sending request: connection refused"),
                Kind::Transient,
            ),
        ];
        for (err, kind) in cases {
            let text = err.to_string();
            assert_eq!(classify(&err), kind, "{text}");
        }
    }

    #[test]
    fn the_store_error_names_permission_the_operation_and_the_prefix() {
        let store = CloudStore::open(
            "s3://bucket/pg",
            &BTreeMap::from([("aws_region".to_string(), "us-east-1".to_string())]),
        )
        .unwrap();
        let err = store.error(
            "delete",
            "data/ab/abcd",
            generic("DeleteObjects request failed for key pg/data/ab/abcd: Access Denied (code: AccessDenied)"),
        );
        assert!(
            matches!(err, StoreError::PermissionDenied { .. }),
            "{err:?}"
        );
        assert!(!err.is_transient());
        let message = err.to_string();
        assert!(
            message.starts_with(
                "permission denied: the credentials may not delete under s3://bucket/pg/data/"
            ),
            "{message}"
        );
        let missing = store.error("get", "config", not_found("<Code>NoSuchBucket</Code>"));
        assert!(!missing.is_not_found() && !missing.is_transient());
        assert!(
            missing
                .to_string()
                .starts_with("the bucket of s3://bucket/pg does not exist"),
            "{missing}"
        );
    }

    #[test]
    fn plain_http_is_refused_unless_allowed() {
        let http = Some("http://127.0.0.1:9000".to_string());
        let why = plain_http_refused(http.clone(), None, "s3").unwrap();
        assert!(
            why.contains("aws_allow_http") && why.contains("AWS_ALLOW_HTTP"),
            "{why}"
        );
        assert!(plain_http_refused(http.clone(), Some("false".into()), "s3").is_some());
        assert!(plain_http_refused(http.clone(), Some("true".into()), "s3").is_none());
        assert!(plain_http_refused(http.clone(), Some("TRUE".into()), "s3").is_none());
        assert!(plain_http_refused(Some("https://s3.example.net".into()), None, "s3").is_none());
        assert!(plain_http_refused(None, None, "s3").is_none());
        let why = plain_http_refused(http, None, "az").unwrap();
        assert!(why.contains("azure_allow_http"), "{why}");
    }

    #[test]
    fn an_archived_object_is_named_with_what_to_do() {
        for text in [
            "Server returned non-2xx status code: 409 Conflict: <Code>BlobArchived</Code>",
            "Server returned non-2xx status code: 403 Forbidden: <Code>InvalidObjectState</Code>",
        ] {
            assert!(
                matches!(classify_text(text), Some(Kind::Archived)),
                "{text}"
            );
        }
    }
}
