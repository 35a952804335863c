//! A node whose agent is another `strata server`, reached over HTTP(S) with the agent
//! bearer token. Errors keep the agent's code, so a busy or lost lease reads the same as
//! in-process; a connection that fails is [`ErrorCode::Unreachable`] naming the URL.

use crate::node::{NodeApi, NodeResult};
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;
use std::time::Duration;
use strata_cluster::node_api::ProgressSnapshot;
use strata_cluster::node_api::*;
use strata_repo::summary::NodeSummary;

/// An HTTP client for strata's APIs: bearer token, JSON bodies, API errors decoded.
#[derive(Clone)]
pub struct ApiClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("ApiClient")
            .field("base", &self.base)
            .finish()
    }
}

impl ApiClient {
    /// A client of the server at `base` (`http://host:port`), trusting `ca_file` besides
    /// the system's roots.
    pub fn new(
        base: &str,
        token: Option<String>,
        ca_file: Option<&Path>,
    ) -> Result<Self, ApiError> {
        strata_util::tls_by_ring();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .tcp_keepalive(Duration::from_secs(15));
        if let Some(path) = ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                ApiError::new(
                    ErrorCode::BadRequest,
                    format!("cannot read CA file {}: {e}", path.display()),
                )
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                ApiError::new(
                    ErrorCode::BadRequest,
                    format!("bad CA file {}: {e}", path.display()),
                )
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().map_err(|e| {
            ApiError::new(ErrorCode::Failed, format!("cannot build HTTP client: {e}"))
        })?;
        Ok(ApiClient {
            base: base.trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    /// The server's address.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request
    }

    fn unreachable(&self, err: reqwest::Error) -> ApiError {
        let mut why = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            why = format!("{why}: {cause}");
            source = cause.source();
        }
        ApiError::new(
            ErrorCode::Unreachable,
            format!("{} is unreachable: {why}", self.base),
        )
    }

    /// Sends a request and returns the raw response when it succeeded.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<reqwest::Response, ApiError> {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        Err(
            serde_json::from_slice::<ApiError>(&body).unwrap_or_else(|_| {
                let code = match status.as_u16() {
                    401 => ErrorCode::Unauthorized,
                    404 => ErrorCode::NotFound,
                    _ => ErrorCode::Failed,
                };
                ApiError::new(
                    code,
                    format!(
                        "{} answered {status}: {}",
                        self.base,
                        String::from_utf8_lossy(&body).trim()
                    ),
                )
            }),
        )
    }

    /// A JSON call: `body` (if any) out, `T` back.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, ApiError> {
        let body = body.map(|b| serde_json::to_vec(b).expect("requests serialize"));
        let response = self.send(method, path, body).await?;
        let bytes = response.bytes().await.map_err(|e| self.unreachable(e))?;
        let bytes = if bytes.is_empty() {
            &b"null"[..]
        } else {
            &bytes[..]
        };
        serde_json::from_slice(bytes).map_err(|e| {
            ApiError::new(
                ErrorCode::Version,
                format!("{} sent a reply this strata does not understand ({e}); are both sides the same version?", self.base),
            )
        })
    }

    /// `GET path`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        self.call(reqwest::Method::GET, path, None::<&()>).await
    }

    /// `POST path` with a JSON body.
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &(impl Serialize + ?Sized),
    ) -> Result<T, ApiError> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
}

/// A node agent behind `strata server`.
pub struct RemoteNode {
    name: String,
    client: ApiClient,
}

impl RemoteNode {
    /// The node `name` served at `client`'s address.
    pub fn new(name: &str, client: ApiClient) -> Self {
        RemoteNode {
            name: name.to_string(),
            client,
        }
    }

    fn tag(&self, mut err: ApiError) -> ApiError {
        if !err.message.contains(&self.name) {
            err.message = format!("node {}: {}", self.name, err.message);
        }
        if err.code == ErrorCode::Unauthorized {
            err.message.push_str(
                " (the agent token: $STRATA_AGENT_TOKEN or server.agent_token here and on the agent)",
            );
        }
        err
    }

    async fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> NodeResult<T> {
        self.client
            .post(&format!("/node/v1/{path}"), body)
            .await
            .map_err(|e| self.tag(e))
    }
}

fn op(operation: &str) -> OperationRef {
    OperationRef {
        operation: operation.to_string(),
    }
}

#[async_trait]
impl NodeApi for RemoteNode {
    fn name(&self) -> &str {
        &self.name
    }
    fn location(&self) -> String {
        self.client.base().to_string()
    }
    async fn metadata(&self) -> NodeResult<NodeMetadata> {
        let meta: NodeMetadata = self
            .client
            .get("/node/v1/metadata")
            .await
            .map_err(|e| self.tag(e))?;
        if meta.name != self.name {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!(
                    "{} serves node {:?}, not {:?}: fix the url of node {} or the agent's --node",
                    self.client.base(),
                    meta.name,
                    self.name,
                    self.name
                ),
            ));
        }
        Ok(meta)
    }
    async fn lease(&self, request: LeaseRequest) -> NodeResult<LeaseInfo> {
        self.post("lease", &request).await
    }
    async fn release(&self, operation: &str) -> NodeResult<()> {
        self.post("release", &op(operation)).await
    }
    async fn progress(&self, operation: &str) -> NodeResult<ProgressSnapshot> {
        let reply: ProgressReply = self
            .client
            .get(&format!("/node/v1/operations/{operation}/progress"))
            .await
            .map_err(|e| self.tag(e))?;
        Ok(reply.progress)
    }
    async fn scan(&self, request: ScanRequest) -> NodeResult<ScanReply> {
        self.post("backup/scan", &request).await
    }
    async fn upload(&self, request: UploadRequest) -> NodeResult<UploadReply> {
        self.post("backup/upload", &request).await
    }
    async fn finish(&self, request: FinishRequest) -> NodeResult<NodeSummary> {
        self.post("backup/finish", &request).await
    }
    async fn commit(&self, operation: &str) -> NodeResult<()> {
        self.post("backup/commit", &op(operation)).await
    }
    async fn abort(&self, operation: &str) -> NodeResult<()> {
        self.post("backup/abort", &op(operation)).await
    }
    async fn restore(&self, request: RestoreRequest) -> NodeResult<RestoreReply> {
        self.post("restore", &request).await
    }
    async fn hook(&self, request: HookRequest) -> NodeResult<HookReply> {
        self.post("hooks", &request).await
    }
}
