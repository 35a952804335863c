//! The connection to an etcd cluster: endpoints, TLS, authentication, paginated reads.

use crate::fingerprint::{Builder, Fingerprint};
use crate::wire::{self, AuthReply, ErrorReply, RangeReply, RawKv, StatusReply, TxnReply};
use crate::{EtcdError, Kv, Settings, Snapshot};
use serde::de::DeserializeOwned;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Keys asked for per range request unless [`Client::with_page_size`] says otherwise:
/// enough to make round trips cheap, few enough that one reply stays small with etcd's
/// usual small values.
pub const DEFAULT_PAGE_SIZE: u32 = 1000;

/// Largest reply body accepted, whatever etcd (or something pretending to be it) sends:
/// a page of [`DEFAULT_PAGE_SIZE`] keys at etcd's default 1.5 MiB request limit cannot
/// all be large in practice, and a reply beyond this is an error, not an out-of-memory.
pub const MAX_REPLY_BYTES: usize = 256 << 20;

/// A client of one etcd cluster, reached through any of its endpoints.
pub struct Client {
    http: reqwest::Client,
    endpoints: Vec<String>,
    /// The endpoint that answered last: requests start there, so a dead first endpoint
    /// costs one failed connection, not one per request.
    preferred: AtomicUsize,
    pub(crate) prefixes: Vec<Vec<u8>>,
    exclude: Vec<Vec<u8>>,
    credentials: Option<Credentials>,
    token: Mutex<Option<String>>,
    pub(crate) page_size: u32,
    cluster_id: String,
    version: String,
}

struct Credentials {
    user: String,
    password: String,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No password, no token: a Debug print may end up in a log.
        f.debug_struct("Client")
            .field("endpoints", &self.endpoints)
            .field("cluster_id", &self.cluster_id)
            .field("user", &self.credentials.as_ref().map(|c| &c.user))
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}

// An error with its causes: reqwest's own message alone says "error sending request"
// and hides the refused connection or the TLS alert behind it.
use strata_util::error_chain as chain;

fn read_file(path: &std::path::Path, what: &str) -> Result<Vec<u8>, EtcdError> {
    std::fs::read(path)
        .map_err(|e| EtcdError::Settings(format!("cannot read {what} {}: {e}", path.display())))
}

/// `[start, end)` of a prefix in etcd's terms: the end is the prefix with its last byte
/// below 0xff incremented, `"\0"` meaning "to the end of the keyspace" (an empty prefix
/// or one of only 0xff bytes).
pub(crate) fn range_of(prefix: &[u8]) -> (Vec<u8>, Vec<u8>) {
    if prefix.is_empty() {
        return (vec![0], vec![0]);
    }
    let mut end = prefix.to_vec();
    while let Some(last) = end.last_mut() {
        if *last < 0xff {
            *last += 1;
            return (prefix.to_vec(), end);
        }
        end.pop();
    }
    (prefix.to_vec(), vec![0])
}

/// Sorted prefixes, none inside another (an empty list is the whole keyspace). Reading
/// them one after the other then yields every key once, in key order.
pub(crate) fn normalize(prefixes: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut sorted: Vec<Vec<u8>> = prefixes.to_vec();
    if sorted.is_empty() {
        sorted.push(Vec::new());
    }
    sorted.sort();
    sorted.dedup();
    let mut out: Vec<Vec<u8>> = Vec::new();
    for prefix in sorted {
        // Sorted order puts a prefix right before the ones it contains.
        if out.last().is_some_and(|kept| prefix.starts_with(kept)) {
            continue;
        }
        out.push(prefix);
    }
    out
}

impl Client {
    /// Checks the settings, authenticates when a user is set, and asks the cluster for
    /// its status so that a wrong endpoint or certificate fails here, not mid-backup.
    pub async fn connect(settings: &Settings) -> Result<Client, EtcdError> {
        if settings.endpoints.is_empty() {
            return Err(EtcdError::Settings("no endpoint".to_string()));
        }
        let mut endpoints = Vec::new();
        for endpoint in &settings.endpoints {
            let endpoint = endpoint.trim().trim_end_matches('/');
            let Some((_, rest)) = endpoint
                .split_once("://")
                .filter(|(scheme, _)| ["http", "https"].contains(scheme))
            else {
                return Err(EtcdError::Settings(format!(
                    "endpoint {endpoint:?} is not an http:// or https:// URL"
                )));
            };
            // A password in a URL would be in every error message that names the endpoint.
            if rest
                .split(['/', '?', '#'])
                .next()
                .unwrap_or("")
                .contains('@')
            {
                return Err(EtcdError::Settings(
                    "an endpoint holds a user name or password: give them as user and password_env or password_file".into(),
                ));
            }
            endpoints.push(endpoint.to_string());
        }

        // Proxies from the environment are ignored: an etcd cluster is reached directly,
        // and HTTP_PROXY set for other tools must not reroute backups.
        strata_util::tls_by_ring();
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout);
        if let Some(path) = &settings.ca_file {
            let pem = read_file(path, "CA file")?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                EtcdError::Settings(format!("bad CA file {}: {}", path.display(), chain(&e)))
            })?;
            if certs.is_empty() {
                return Err(EtcdError::Settings(format!(
                    "CA file {} holds no certificate",
                    path.display()
                )));
            }
            // A cluster's private CA: trusting the system roots too would accept any
            // public certificate for the endpoint's name.
            builder = builder.tls_certs_only(certs);
        }
        match (&settings.cert_file, &settings.key_file) {
            (Some(cert), Some(key)) => {
                let mut pem = read_file(cert, "certificate file")?;
                pem.push(b'\n');
                pem.extend_from_slice(&read_file(key, "key file")?);
                let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                    EtcdError::Settings(format!(
                        "bad client certificate {} or key {}: {}",
                        cert.display(),
                        key.display(),
                        chain(&e)
                    ))
                })?;
                builder = builder.identity(identity);
            }
            (None, None) => {}
            _ => {
                return Err(EtcdError::Settings(
                    "cert_file and key_file go together".to_string(),
                ))
            }
        }
        let http = builder
            .build()
            .map_err(|e| EtcdError::Settings(format!("cannot build HTTP client: {}", chain(&e))))?;

        let credentials = match (
            &settings.user,
            &settings.password_env,
            &settings.password_file,
        ) {
            (None, None, None) => None,
            (None, _, _) => {
                return Err(EtcdError::Settings(
                    "a password is set but no user".to_string(),
                ))
            }
            (Some(_), Some(_), Some(_)) => {
                return Err(EtcdError::Settings(
                    "set password_env or password_file, not both".to_string(),
                ))
            }
            (Some(_), None, None) => {
                return Err(EtcdError::Settings(
                    "user is set but neither password_env nor password_file".to_string(),
                ))
            }
            (Some(user), Some(var), None) => {
                let password = std::env::var(var)
                    .map_err(|e| EtcdError::Settings(format!("password_env {var}: {e}")))?;
                Some(Credentials {
                    user: user.clone(),
                    password,
                })
            }
            (Some(user), None, Some(path)) => {
                let bytes = read_file(path, "password file")?;
                let text = String::from_utf8(bytes).map_err(|_| {
                    EtcdError::Settings(format!("password file {} is not UTF-8", path.display()))
                })?;
                Some(Credentials {
                    user: user.clone(),
                    password: text.trim_end_matches(['\n', '\r']).to_string(),
                })
            }
        };

        let mut client = Client {
            http,
            endpoints,
            preferred: AtomicUsize::new(0),
            prefixes: normalize(
                &settings
                    .prefixes
                    .iter()
                    .map(|p| p.as_bytes().to_vec())
                    .collect::<Vec<_>>(),
            ),
            exclude: settings
                .exclude_from_check
                .iter()
                .map(|p| p.as_bytes().to_vec())
                .collect(),
            credentials,
            token: Mutex::new(None),
            page_size: DEFAULT_PAGE_SIZE,
            cluster_id: String::new(),
            version: String::new(),
        };
        client.authenticate().await?;
        let (_, status): (String, StatusReply) = client
            .call("status", "/v3/maintenance/status", &serde_json::json!({}))
            .await?;
        client.cluster_id = format!("{:x}", status.header.unwrap_or_default().cluster_id);
        client.version = status.version;
        Ok(client)
    }

    /// Keys per range request (at least 1). Smaller pages bound a reply's size when
    /// values are large; tests use it to force many pages.
    pub fn with_page_size(mut self, keys: u32) -> Client {
        self.page_size = keys.max(1);
        self
    }

    /// The cluster's id (hex, as etcdctl shows it), from the status asked at connect.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The etcd version of the member that answered the status at connect.
    pub fn server_version(&self) -> &str {
        &self.version
    }

    /// The prefixes backed up, normalized: sorted, none inside another, `[""]` for the
    /// whole keyspace.
    pub fn prefixes(&self) -> &[Vec<u8>] {
        &self.prefixes
    }

    /// Every key under the prefixes at one revision, sorted by key.
    ///
    /// The first range request reads at the current revision; every later page and
    /// prefix asks for that same revision, so the snapshot is consistent even while
    /// clients write (it fails if etcd compacts that revision meanwhile). Pages of
    /// [`Client::with_page_size`] keys keep each reply bounded.
    pub async fn snapshot(&self) -> Result<Snapshot, EtcdError> {
        let mut kvs = Vec::new();
        let (revision, cluster_id) = self
            .scan(&self.prefixes, |kv| {
                kvs.push(kv);
                Ok(())
            })
            .await?;
        Ok(Snapshot {
            revision,
            cluster_id: format!("{cluster_id:x}"),
            prefixes: self.prefixes.clone(),
            kvs,
        })
    }

    /// The fingerprint of what `snapshot` holds (the keys under `exclude_from_check` left
    /// out): equal to [`Client::fingerprint`] read at the snapshot's revision, so a later
    /// fingerprint compares exactly with what the backup stored.
    pub fn fingerprint_of(&self, snapshot: &crate::Snapshot) -> Fingerprint {
        let mut builder = Builder::new();
        for kv in &snapshot.kvs {
            if !self.exclude.iter().any(|p| kv.key.starts_with(p)) {
                builder.add(kv);
            }
        }
        builder.finish(snapshot.revision)
    }

    /// The current revision and a hash of what a backup would hold, minus the
    /// `exclude_from_check` prefixes: equal fingerprints mean nothing checked changed.
    /// See [`Fingerprint`] for what is hashed and why.
    pub async fn fingerprint(&self) -> Result<Fingerprint, EtcdError> {
        let mut builder = Builder::new();
        let exclude = &self.exclude;
        let (revision, _) = self
            .scan(&self.prefixes, |kv| {
                if !exclude.iter().any(|p| kv.key.starts_with(p)) {
                    builder.add(&kv);
                }
                Ok(())
            })
            .await?;
        Ok(builder.finish(revision))
    }

    /// Reads every key under `prefixes` (normalized) at one revision, page by page,
    /// handing each to `each`; returns the revision and the cluster id. Replies are
    /// checked: keys must be inside the range asked for and strictly ascending, a page no
    /// larger than asked, and "more" must come with keys, so a confused or hostile server
    /// cannot make this loop forever or return keys twice.
    pub(crate) async fn scan(
        &self,
        prefixes: &[Vec<u8>],
        mut each: impl FnMut(Kv) -> Result<(), EtcdError>,
    ) -> Result<(i64, u64), EtcdError> {
        let mut revision = 0i64;
        let mut cluster_id = 0u64;
        let mut last: Option<Vec<u8>> = None;
        for prefix in prefixes {
            let (start, end) = range_of(prefix);
            let mut cursor = start;
            loop {
                let body = serde_json::json!({
                    "key": wire::b64(&cursor),
                    "range_end": wire::b64(&end),
                    "limit": self.page_size.to_string(),
                    "revision": revision.to_string(),
                });
                let (endpoint, reply): (String, RangeReply) =
                    self.call("range", "/v3/kv/range", &body).await?;
                let bad = |detail: String| EtcdError::BadReply {
                    endpoint: endpoint.clone(),
                    operation: "range",
                    detail,
                };
                if revision == 0 {
                    let header = reply
                        .header
                        .as_ref()
                        .ok_or_else(|| bad("no header".to_string()))?;
                    if header.revision <= 0 {
                        return Err(bad(format!("revision {}", header.revision)));
                    }
                    revision = header.revision;
                    cluster_id = header.cluster_id;
                }
                if reply.kvs.len() > self.page_size as usize {
                    return Err(bad(format!(
                        "{} keys in a page of at most {}",
                        reply.kvs.len(),
                        self.page_size
                    )));
                }
                if reply.more && reply.kvs.is_empty() {
                    return Err(bad("more keys announced but none sent".to_string()));
                }
                for raw in reply.kvs {
                    let kv = to_kv(raw).map_err(|e| bad(e.to_string()))?;
                    let inside = kv.key >= cursor && (end == [0] || kv.key < end);
                    if !inside {
                        return Err(bad("a key outside the range asked for".to_string()));
                    }
                    if last.as_ref().is_some_and(|l| kv.key <= *l) {
                        return Err(bad("keys out of order".to_string()));
                    }
                    last = Some(kv.key.clone());
                    each(kv)?;
                }
                if !reply.more {
                    break;
                }
                // The next page starts just after the last key read (checked non-empty).
                cursor = last.clone().unwrap_or_default();
                cursor.push(0);
            }
        }
        Ok((revision, cluster_id))
    }

    /// How many keys are under `prefixes` now (a count-only range per prefix).
    pub(crate) async fn count(&self, prefixes: &[Vec<u8>]) -> Result<u64, EtcdError> {
        let mut total = 0u64;
        for prefix in normalize(prefixes) {
            let (start, end) = range_of(&prefix);
            let body = serde_json::json!({
                "key": wire::b64(&start),
                "range_end": wire::b64(&end),
                "count_only": true,
            });
            let (endpoint, reply): (String, RangeReply) =
                self.call("count", "/v3/kv/range", &body).await?;
            let count = u64::try_from(reply.count).map_err(|_| EtcdError::BadReply {
                endpoint,
                operation: "count",
                detail: format!("count {}", reply.count),
            })?;
            total = total.saturating_add(count);
        }
        Ok(total)
    }

    /// One transaction: every key in `guarded` must still be at the `mod_revision` it
    /// was seen at (0: absent), and then the ones with a value are put, without lease.
    /// All or nothing: returns the revision made, `None` when a key had moved on.
    pub(crate) async fn put_if(&self, guarded: &[Guarded<'_>]) -> Result<Option<i64>, EtcdError> {
        let compare: Vec<serde_json::Value> = guarded
            .iter()
            .map(|g| match g.mod_revision {
                0 => serde_json::json!({
                    "key": wire::b64(g.key), "result": "EQUAL", "target": "CREATE", "create_revision": "0"
                }),
                revision => serde_json::json!({
                    "key": wire::b64(g.key), "result": "EQUAL", "target": "MOD", "mod_revision": revision.to_string()
                }),
            })
            .collect();
        let success: Vec<serde_json::Value> = guarded
            .iter()
            .filter_map(|g| {
                g.put.map(|value| {
                    serde_json::json!({ "request_put": { "key": wire::b64(g.key), "value": wire::b64(value) } })
                })
            })
            .collect();
        let body = serde_json::json!({ "compare": compare, "success": success });
        let (_, reply): (String, TxnReply) = self.call("txn", "/v3/kv/txn", &body).await?;
        Ok(reply
            .succeeded
            .then(|| reply.header.unwrap_or_default().revision))
    }

    /// Gets a token for the credentials, if any. Simple tokens expire after a while of
    /// not being used (`--auth-token-ttl`), so [`Client::call`] comes back here once when
    /// etcd says the token is invalid.
    async fn authenticate(&self) -> Result<(), EtcdError> {
        let Some(credentials) = &self.credentials else {
            return Ok(());
        };
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let body = serde_json::json!({
            "name": credentials.user,
            "password": credentials.password,
        });
        let (endpoint, reply): (String, AuthReply) = self
            .call_once("authenticate", "/v3/auth/authenticate", &body)
            .await?;
        let token = reply
            .token
            .filter(|t| !t.is_empty() && reqwest::header::HeaderValue::from_str(t).is_ok())
            .ok_or(EtcdError::BadReply {
                endpoint,
                operation: "authenticate",
                detail: "no usable token".to_string(),
            })?;
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = Some(token);
        Ok(())
    }

    /// One request, re-authenticating once if the token expired.
    async fn call<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<(String, T), EtcdError> {
        match self.call_once(operation, path, body).await {
            Err(EtcdError::Auth { message, .. })
                if self.credentials.is_some() && message.contains("invalid auth token") =>
            {
                self.authenticate().await?;
                self.call_once(operation, path, body).await
            }
            other => other,
        }
    }

    /// One request to the first endpoint that takes the connection, starting with the one
    /// that answered last. Only connection failures move on to the next endpoint: once a
    /// request is sent, trying it elsewhere could apply a put twice or hide an error.
    async fn call_once<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<(String, T), EtcdError> {
        let count = self.endpoints.len();
        let start = self.preferred.load(Ordering::Relaxed) % count;
        let body = body.to_string();
        let mut last = String::new();
        for i in 0..count {
            let index = (start + i) % count;
            let endpoint = &self.endpoints[index];
            let mut request = self
                .http
                .post(format!("{endpoint}{path}"))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            let token = self.token.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some(token) = token {
                request = request.header(reqwest::header::AUTHORIZATION, token);
            }
            match request.send().await {
                Err(e) if e.is_connect() => {
                    last = format!("{endpoint}: {}", tls_hint(endpoint, chain(&e)));
                }
                Err(e) => {
                    return Err(EtcdError::Transport {
                        endpoint: endpoint.clone(),
                        operation,
                        message: tls_hint(endpoint, chain(&e)),
                    })
                }
                Ok(response) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    let reply = read_reply(endpoint, operation, response).await?;
                    return Ok((endpoint.clone(), reply));
                }
            }
        }
        Err(EtcdError::Unreachable {
            endpoints: self.endpoints.join(", "),
            last,
        })
    }
}

/// One key of a transaction: compared with the `mod_revision` it was seen at (0: it must
/// not exist), and put when it has a value.
pub(crate) struct Guarded<'a> {
    pub key: &'a [u8],
    pub mod_revision: i64,
    pub put: Option<&'a [u8]>,
}

/// Adds what to check when the error is about TLS. Over TLS 1.3 a server that wants a
/// client certificate it was not given may only close the connection once the request
/// is sent (its alert lost on the way), so a closed connection to an `https://`
/// endpoint gets the hint too.
fn tls_hint(endpoint: &str, message: String) -> String {
    let lower = message.to_lowercase();
    if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
        format!("{message} (TLS: check ca_file, cert_file and key_file)")
    } else if endpoint.starts_with("https://")
        && ["closed", "reset", "canceled"]
            .iter()
            .any(|word| lower.contains(word))
    {
        format!(
            "{message} (TLS: a server that requires a client certificate closes connections without one: check ca_file, cert_file and key_file)"
        )
    } else {
        message
    }
}

fn to_kv(raw: RawKv) -> Result<Kv, wire::BadKv> {
    let key = raw.key.ok_or(wire::BadKv::NoKey)?;
    Ok(Kv {
        key: wire::unb64(&key)?,
        value: wire::unb64(raw.value.as_deref().unwrap_or(""))?,
        lease: raw.lease,
        create_revision: raw.create_revision,
        mod_revision: raw.mod_revision,
        version: raw.version,
    })
}

/// Reads a reply, at most [`MAX_REPLY_BYTES`] of it, and turns the gateway's error body
/// into an error.
async fn read_reply<T: DeserializeOwned>(
    endpoint: &str,
    operation: &'static str,
    mut response: reqwest::Response,
) -> Result<T, EtcdError> {
    let status = response.status();
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_REPLY_BYTES {
                    return Err(EtcdError::BadReply {
                        endpoint: endpoint.to_string(),
                        operation,
                        detail: format!("reply larger than {MAX_REPLY_BYTES} bytes"),
                    });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => {
                return Err(EtcdError::Transport {
                    endpoint: endpoint.to_string(),
                    operation,
                    message: chain(&e),
                })
            }
        }
    }
    // Decoded straight into the small error shape first (any object fits it; no tree of
    // the whole reply is built), then into `T`: a reply costs its bytes once, not a
    // `serde_json::Value` several times their size.
    let error: ErrorReply = match serde_json::from_slice(&body) {
        Ok(error) => error,
        Err(e) => {
            let text = crate::shown::show_bytes(&body, 200);
            return Err(if status.is_success() {
                EtcdError::BadReply {
                    endpoint: endpoint.to_string(),
                    operation,
                    detail: format!("not a JSON object ({e}): {text}"),
                }
            } else {
                EtcdError::Transport {
                    endpoint: endpoint.to_string(),
                    operation,
                    message: format!("HTTP {status}: {text}"),
                }
            });
        }
    };
    if !status.is_success() || error.is_error() {
        let message = error.message().unwrap_or_else(|| format!("HTTP {status}"));
        return Err(classify(endpoint, operation, error.code(), message));
    }
    serde_json::from_slice(&body).map_err(|e| EtcdError::BadReply {
        endpoint: endpoint.to_string(),
        operation,
        detail: e.to_string(),
    })
}

/// Authentication and permission errors get their own variant and a hint saying which
/// setting to look at; everything else is etcd's message as is.
fn classify(endpoint: &str, operation: &'static str, code: i64, message: String) -> EtcdError {
    let hints: [(&str, &'static str); 6] = [
        (
            "user name is empty",
            "etcd has authentication enabled: set user and password_env or password_file",
        ),
        ("invalid auth token", "the token expired or was revoked"),
        ("authentication failed", "check user and its password"),
        (
            "permission denied",
            "the user has no role granting access to these keys",
        ),
        (
            "authentication is not enabled",
            "etcd does not use user/password authentication: remove user",
        ),
        ("user name not found", "check user"),
    ];
    for (needle, hint) in hints {
        if message.contains(needle) {
            return EtcdError::Auth {
                endpoint: endpoint.to_string(),
                operation,
                message,
                hint,
            };
        }
    }
    if code == 16 || code == 7 {
        return EtcdError::Auth {
            endpoint: endpoint.to_string(),
            operation,
            message,
            hint: "check the credentials",
        };
    }
    EtcdError::Server {
        endpoint: endpoint.to_string(),
        operation,
        code,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A password in an endpoint would be in every message naming it: refused.
    #[tokio::test]
    async fn endpoints_with_credentials_or_other_schemes_are_refused() {
        for (endpoint, says) in [
            ("http://root:secret@127.0.0.1:2379", "user name or password"),
            ("ftp://127.0.0.1:2379", "not an http"),
            ("127.0.0.1:2379", "not an http"),
        ] {
            let message = Client::connect(&Settings::new([endpoint]))
                .await
                .unwrap_err()
                .to_string();
            assert!(message.contains(says), "{endpoint}: {message}");
            assert!(!message.contains("secret"), "{message}");
        }
    }

    /// Replies are read through the error shape first: an error with a non-numeric code
    /// is still an error with its message; what is not JSON is a bad reply.
    #[test]
    fn error_replies_of_any_shape_are_read() {
        let reply: ErrorReply =
            serde_json::from_str(r#"{"error":"etcdserver: no leader","code":"14"}"#).unwrap();
        assert!(reply.is_error());
        assert_eq!(reply.code(), 14);
        assert_eq!(reply.message().as_deref(), Some("etcdserver: no leader"));
        let reply: ErrorReply =
            serde_json::from_str(r#"{"header":{"revision":"3"},"kvs":[]}"#).unwrap();
        assert!(!reply.is_error());
        assert_eq!(reply.code(), -1);
        assert!(serde_json::from_str::<ErrorReply>("not json").is_err());
    }

    #[test]
    fn ranges_of_prefixes() {
        assert_eq!(range_of(b""), (vec![0], vec![0]));
        assert_eq!(range_of(b"/a/"), (b"/a/".to_vec(), b"/a0".to_vec()));
        assert_eq!(
            range_of(b"a\xff\xff"),
            (b"a\xff\xff".to_vec(), b"b".to_vec())
        );
        assert_eq!(range_of(b"\xff"), (b"\xff".to_vec(), vec![0]));
    }

    #[test]
    fn normalized_prefixes_are_sorted_and_disjoint() {
        let p = |v: &[&str]| v.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
        assert_eq!(normalize(&[]), p(&[""]));
        assert_eq!(
            normalize(&p(&["/b/", "/a/x", "/a/", "/b/"])),
            p(&["/a/", "/b/"])
        );
        assert_eq!(normalize(&p(&["/a/", ""])), p(&[""]));
    }
}
