//! Google Cloud Storage through its JSON API.
//!
//! object_store's GCS client speaks the XML API; the GCS emulators we can run in tests
//! (fake-gcs-server) only implement the JSON API for uploads, so strata talks JSON itself
//! and borrows object_store only for what is hard to get right: credentials (service
//! account files, application default credentials, metadata server). The service account
//! file may carry `gcs_base_url` and `disable_oauth`, as object_store's does, to point at
//! an emulator; the `gcs_base_url` option does the same.

use crate::{ObjectMeta, Store, StoreError, StoreResult};
use async_trait::async_trait;
use bytes::Bytes;
use object_store::gcp::{GcpCredentialProvider, GoogleCloudStorageBuilder};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use std::collections::BTreeMap;
use std::ops::Range;

const DEFAULT_BASE_URL: &str = "https://storage.googleapis.com";

/// A bucket and prefix of Google Cloud Storage.
pub struct GcsStore {
    http: reqwest::Client,
    base: String,
    bucket: String,
    prefix: String,
    credentials: GcpCredentialProvider,
    label: String,
    /// Set once the bucket was seen to exist: a 404 is then a missing object.
    bucket_seen: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for GcsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GcsStore({})", self.label)
    }
}

/// The service account file named by the options or the environment, if any.
fn service_account_file(options: &BTreeMap<String, String>) -> Option<String> {
    [
        "google_service_account",
        "service_account",
        "google_service_account_path",
        "service_account_path",
    ]
    .iter()
    .find_map(|k| options.get(*k).cloned())
    .or_else(|| std::env::var("GOOGLE_SERVICE_ACCOUNT").ok())
    .or_else(|| std::env::var("GOOGLE_SERVICE_ACCOUNT_PATH").ok())
}

impl GcsStore {
    /// Opens `bucket`/`prefix` with `options` (object_store's `google_*` keys, plus
    /// `gcs_base_url`).
    pub fn open(
        bucket: &str,
        prefix: &str,
        options: &BTreeMap<String, String>,
    ) -> StoreResult<GcsStore> {
        strata_util::tls_by_ring();
        let label = format!("gs://{bucket}/{prefix}")
            .trim_end_matches('/')
            .to_string();
        let invalid = |message: String| StoreError::Backend {
            op: "open",
            key: String::new(),
            store: label.clone(),
            message,
        };
        let mut options = options.clone();
        let base_option = options.remove("gcs_base_url");
        let file_base = service_account_file(&options)
            .and_then(|path| std::fs::read(path).ok())
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .and_then(|json| {
                json.get("gcs_base_url")
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            });
        let builder = GoogleCloudStorageBuilder::from_env()
            .with_bucket_name(bucket)
            .with_retry(crate::cloud::single_attempt());
        let builder = crate::cloud::configure(builder, &options, |b, k, v| b.with_config(k, v))
            .map_err(|e| invalid(e.to_string()))?;
        let client = builder.build().map_err(|e| invalid(e.to_string()))?;
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        Ok(GcsStore {
            http,
            base: base_option
                .or(file_base)
                .unwrap_or_else(|| DEFAULT_BASE_URL.into())
                .trim_end_matches('/')
                .to_string(),
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            credentials: client.credentials().clone(),
            label,
            bucket_seen: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn name(&self, key: &str) -> StoreResult<String> {
        crate::validate_key(key)?;
        Ok(if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        })
    }

    /// `{base}/{api}/b/{bucket}/o`: the collection of objects of the bucket.
    fn objects_url(&self, api: &str) -> url::Url {
        let mut url =
            url::Url::parse(&format!("{}/{api}/b/", self.base)).expect("base URL is valid");
        url.path_segments_mut()
            .expect("http URL")
            .pop_if_empty()
            .push(&self.bucket)
            .push("o");
        url
    }

    /// A JSON answer's body; one that does not arrive whole or is not JSON is transient.
    async fn json(
        &self,
        op: &'static str,
        key: &str,
        response: Response,
    ) -> StoreResult<serde_json::Value> {
        let raw = response
            .bytes()
            .await
            .map_err(|e| self.bad_answer(op, key, &e.to_string()))?;
        serde_json::from_slice(&raw).map_err(|e| self.bad_answer(op, key, &e.to_string()))
    }

    fn bad_answer(&self, op: &'static str, key: &str, message: &str) -> StoreError {
        StoreError::Transient {
            op,
            key: key.to_string(),
            store: self.label.clone(),
            message: message.to_string(),
        }
    }

    /// The URL of one object (its name is one escaped path segment).
    fn object_url(&self, name: &str) -> url::Url {
        let mut url = self.objects_url("storage/v1");
        url.path_segments_mut().expect("http URL").push(name);
        url
    }

    async fn send(
        &self,
        op: &'static str,
        key: &str,
        request: RequestBuilder,
    ) -> StoreResult<Response> {
        let transient = |message: String| StoreError::Transient {
            op,
            key: key.to_string(),
            store: self.label.clone(),
            message,
        };
        let credential = self
            .credentials
            .get_credential()
            .await
            .map_err(|e| transient(format!("cannot get credentials: {e}")))?;
        let request = if credential.bearer.is_empty() {
            request
        } else {
            request.bearer_auth(&credential.bearer)
        };
        let response = request.send().await.map_err(|e| transient(e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        let message = format!("{status}: {}", body.chars().take(300).collect::<String>());
        if status == StatusCode::NOT_FOUND && self.bucket_missing(op, &body).await {
            return Err(StoreError::NoBucket {
                kind: "bucket",
                store: self.label.clone(),
                message,
            });
        }
        Err(match status {
            StatusCode::NOT_FOUND => StoreError::NotFound {
                key: key.to_string(),
                store: self.label.clone(),
            },
            StatusCode::PRECONDITION_FAILED => StoreError::AlreadyExists {
                key: key.to_string(),
                store: self.label.clone(),
            },
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => StoreError::PermissionDenied {
                op,
                key: key.to_string(),
                store: self.label.clone(),
                message,
            },
            s if s.is_server_error()
                || s == StatusCode::TOO_MANY_REQUESTS
                || s == StatusCode::REQUEST_TIMEOUT =>
            {
                transient(message)
            }
            _ => StoreError::Backend {
                op,
                key: key.to_string(),
                store: self.label.clone(),
                message,
            },
        })
    }

    /// Whether a 404 of `op` means the bucket is missing rather than an object: a
    /// listing or an upload has no object to miss; for reads and deletes the bucket is
    /// asked for once (and remembered once it exists).
    async fn bucket_missing(&self, op: &str, body: &str) -> bool {
        use std::sync::atomic::Ordering;
        if op == "list" || op == "put" || body.contains("bucket does not exist") {
            return true;
        }
        if self.bucket_seen.load(Ordering::Relaxed) {
            return false;
        }
        let mut url =
            url::Url::parse(&format!("{}/storage/v1/b/", self.base)).expect("base URL is valid");
        url.path_segments_mut()
            .expect("http URL")
            .pop_if_empty()
            .push(&self.bucket);
        let mut request = self.http.get(url);
        if let Ok(credential) = self.credentials.get_credential().await {
            if !credential.bearer.is_empty() {
                request = request.bearer_auth(&credential.bearer);
            }
        }
        match request.send().await.map(|r| r.status()) {
            Ok(StatusCode::NOT_FOUND) => true,
            Ok(s) if s.is_success() => {
                self.bucket_seen.store(true, Ordering::Relaxed);
                false
            }
            _ => false,
        }
    }

    /// Uploads an object. Conditional uploads use the multipart form, whose
    /// `ifGenerationMatch=0` precondition every implementation honours.
    /// One upload: plain (`media`), or with metadata (`multipart`) when it must not
    /// replace an object or goes to a storage class.
    async fn upload(
        &self,
        key: &str,
        data: Bytes,
        only_if_absent: bool,
        class: Option<&str>,
    ) -> StoreResult<()> {
        let name = self.name(key)?;
        let mut url = self.objects_url("upload/storage/v1");
        let request = if only_if_absent || class.is_some() {
            url.query_pairs_mut().append_pair("uploadType", "multipart");
            if only_if_absent {
                url.query_pairs_mut().append_pair("ifGenerationMatch", "0");
            }
            let mut random = [0u8; 16];
            getrandom::getrandom(&mut random).expect("the OS random source is available");
            let boundary = format!("strata-{}", hex::encode(random));
            let mut metadata = serde_json::json!({ "name": name });
            if let Some(class) = class {
                metadata["storageClass"] = class.into();
            }
            let metadata = metadata.to_string();
            let mut body = Vec::with_capacity(data.len() + metadata.len() + 200);
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{metadata}\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
            );
            body.extend_from_slice(&data);
            body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
            self.http
                .post(url)
                .header(
                    "content-type",
                    format!("multipart/related; boundary={boundary}"),
                )
                .body(body)
        } else {
            url.query_pairs_mut()
                .append_pair("uploadType", "media")
                .append_pair("name", &name);
            self.http
                .request(Method::POST, url)
                .header("content-type", "application/octet-stream")
                .body(data)
        };
        self.send("put", key, request).await.map(|_| ())
    }

    async fn download(&self, key: &str, range: Option<Range<u64>>) -> StoreResult<Bytes> {
        let mut url = self.object_url(&self.name(key)?);
        url.query_pairs_mut().append_pair("alt", "media");
        let mut request = self.http.get(url);
        if let Some(range) = &range {
            request = request.header("range", format!("bytes={}-{}", range.start, range.end - 1));
        }
        let response = self.send("get", key, request).await?;
        response.bytes().await.map_err(|e| StoreError::Transient {
            op: "get",
            key: key.to_string(),
            store: self.label.clone(),
            message: e.to_string(),
        })
    }
}

#[async_trait]
impl Store for GcsStore {
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.upload(key, data, false, None).await
    }

    async fn put_in_class(&self, key: &str, data: Bytes, class: &str) -> StoreResult<()> {
        self.upload(key, data, false, Some(class)).await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.upload(key, data, true, None).await
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        self.download(key, None).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        if range.start == range.end {
            return Ok(Bytes::new());
        }
        self.download(key, Some(range)).await
    }

    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        self.list_from(prefix, None).await
    }

    /// Asks for the names from `after` on only (`startOffset`, which includes `after`
    /// itself: it is left out here, as any key a server sends at or before it).
    async fn list_after(&self, prefix: &str, after: &str) -> StoreResult<Vec<ObjectMeta>> {
        self.list_from(prefix, Some(after)).await
    }

    /// The object's resource (a GET without `alt=media`): its `size` and `updated`.
    async fn head(&self, key: &str) -> StoreResult<ObjectMeta> {
        let url = self.object_url(&self.name(key)?);
        let response = self.send("get", key, self.http.get(url)).await?;
        let body = self.json("get", key, response).await?;
        let size = body["size"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| self.bad_answer("get", key, "the object's resource has no size"))?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size,
            modified: body["updated"]
                .as_str()
                .and_then(|t| humantime::parse_rfc3339_weak(t).ok()),
        })
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let url = self.object_url(&self.name(key)?);
        match self.send("delete", key, self.http.delete(url)).await {
            Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
            Err(err) => Err(err),
        }
    }

    fn describe(&self) -> String {
        self.label.clone()
    }
}

impl GcsStore {
    /// The objects under `prefix` (after `after`, when given), in key order.
    async fn list_from(&self, prefix: &str, after: Option<&str>) -> StoreResult<Vec<ObjectMeta>> {
        let full = self.name(prefix.trim_end_matches('/')).map(|n| {
            if prefix.ends_with('/') {
                format!("{n}/")
            } else {
                n
            }
        });
        let full = match full {
            Ok(full) => full,
            Err(_) if prefix.is_empty() => {
                if self.prefix.is_empty() {
                    String::new()
                } else {
                    format!("{}/", self.prefix)
                }
            }
            Err(err) => return Err(err),
        };
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let mut out = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let mut url = self.objects_url("storage/v1");
            url.query_pairs_mut()
                .append_pair("prefix", &full)
                .append_pair("maxResults", "1000");
            if let Some(token) = &page {
                url.query_pairs_mut().append_pair("pageToken", token);
            }
            if let Some(after) = after {
                url.query_pairs_mut()
                    .append_pair("startOffset", &format!("{strip}{after}"));
            }
            let response = self.send("list", prefix, self.http.get(url)).await?;
            let body = self.json("list", prefix, response).await?;
            for item in body["items"].as_array().into_iter().flatten() {
                let (Some(name), Some(size)) = (item["name"].as_str(), item["size"].as_str())
                else {
                    continue;
                };
                let key = name
                    .strip_prefix(strip.as_str())
                    .filter(|k| after.is_none_or(|a| *k > a));
                if let (Some(key), Ok(size)) = (key, size.parse()) {
                    out.push(ObjectMeta {
                        key: key.to_string(),
                        size,
                        modified: item["updated"]
                            .as_str()
                            .and_then(|t| humantime::parse_rfc3339_weak(t).ok()),
                    });
                }
            }
            match body["nextPageToken"].as_str() {
                Some(token) if !token.is_empty() => page = Some(token.to_string()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}
