//! Serving a router over plain HTTP or TLS (rustls) until the process ends, within the
//! limits of [`Limits`].

use crate::limits::{AuthLimiter, ConnState, Limits, Slots};
use crate::timeouts::{DeadlineBody, WriteTimeout};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// PEM files of the server's certificate chain and private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    /// The private key of that certificate (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot read TLS {what} {path}: {why}")]
    Tls {
        what: &'static str,
        path: PathBuf,
        why: String,
    },
    #[error("server failed")]
    Io(#[from] std::io::Error),
}

fn tls_config(files: &TlsFiles) -> Result<rustls::ServerConfig, ServeError> {
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ServeError::Tls {
            what: "certificate",
            path: files.cert.clone(),
            why: e.to_string(),
        })?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| ServeError::Tls {
        what: "key",
        path: files.key.clone(),
        why: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| ServeError::Tls {
            what: "certificate and key",
            path: files.cert.clone(),
            why: e.to_string(),
        })
}

/// Serves `router` on `listener`, over TLS when `tls` is given, within `limits`.
///
/// Every connection is HTTP/1.1 (hyper) with a header-read timeout (which also closes
/// idle keep-alive connections), a deadline for each request body, a write timeout and,
/// for TLS, a handshake timeout; at most `limits.max_connections` are open at once (see
/// [`Slots::admit`]). Accept errors are logged and survived: for want of file descriptors
/// the oldest connection that has made no authenticated request is closed and accepting pauses
/// briefly, so a flood of idle connections cannot end the server.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsFiles>,
    limits: Limits,
) -> Result<(), ServeError> {
    let acceptor = match &tls {
        Some(files) => Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(
            files,
        )?))),
        None => None,
    };
    let slots = Slots::new(limits.max_connections);
    let shared = Arc::new(Shared {
        auth: Arc::new(AuthLimiter::new(limits.auth_failures_per_minute)),
        limits,
    });
    let mut accept = AcceptErrors::default();
    let mut refused = Occasional::default();
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => {
                accept.backoff = Duration::ZERO;
                accepted
            }
            Err(err) => {
                accept.failed(err, &slots).await;
                continue;
            }
        };
        // Answers are small and written whole: no reason to wait for Nagle.
        let _ = socket.set_nodelay(true);
        let Some(slot) = slots.admit() else {
            // Every connection is a client with a token: this one waits its turn by
            // trying again.
            if refused.due() {
                eprintln!(
                    "strata: warning: {} connections open, all of them clients with a token: closing new connections (server.max_connections)",
                    shared.limits.max_connections
                );
            }
            drop(socket);
            continue;
        };
        let (acceptor, router, shared) = (acceptor.clone(), router.clone(), shared.clone());
        tokio::spawn(async move {
            let conn = slot.conn.clone();
            let work = async {
                match acceptor {
                    // A client that fails or stalls the handshake only loses its own
                    // connection.
                    Some(acceptor) => {
                        let handshake = tokio::time::timeout(
                            shared.limits.tls_handshake_timeout,
                            acceptor.accept(socket),
                        );
                        if let Ok(Ok(stream)) = handshake.await {
                            connection(stream, peer, &conn, router, &shared).await;
                        }
                    }
                    None => connection(socket, peer, &conn, router, &shared).await,
                }
            };
            tokio::select! {
                () = work => {}
                () = conn.evict.notified() => {}
            }
            drop(slot);
        });
    }
}

/// What every connection of a listener shares.
struct Shared {
    limits: Limits,
    auth: Arc<AuthLimiter>,
}

/// Serves HTTP/1.1 on one accepted (and, for TLS, handshaken) connection.
async fn connection<I>(
    io: I,
    peer: SocketAddr,
    conn: &Arc<ConnState>,
    router: Router,
    shared: &Shared,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = WriteTimeout::new(io, shared.limits.write_timeout);
    let (conn, auth, body_timeout) = (
        conn.clone(),
        shared.auth.clone(),
        shared.limits.body_timeout,
    );
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let mut request = request.map(|body| Body::new(DeadlineBody::new(body, body_timeout)));
        request.extensions_mut().insert(ConnectInfo(peer));
        request.extensions_mut().insert(auth.clone());
        // The token check marks the connection trusted (see `Slots::admit`).
        request.extensions_mut().insert(conn.clone());
        tower_service::Service::call(&mut router.clone(), request)
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(shared.limits.header_timeout);
    let _ = http
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades()
        .await;
}

/// Accept errors: logged (the same one at most every few seconds) and survived.
#[derive(Default)]
struct AcceptErrors {
    backoff: Duration,
    log: Occasional,
}

impl AcceptErrors {
    async fn failed(&mut self, err: std::io::Error, slots: &Slots) {
        // A client that went away before it was accepted: nothing to do.
        if matches!(
            err.kind(),
            ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::Interrupted
        ) {
            return;
        }
        // Out of file descriptors (EMFILE, ENFILE) or memory: give up a connection that
        // never made an authenticated request, and wait a little before accepting again (the pending
        // connection stays in the backlog).
        let freed = slots.evict_one();
        if self.log.due() {
            eprintln!(
                "strata: warning: cannot accept connections: {err}{}",
                if freed {
                    " (closed the oldest connection without an authenticated request)"
                } else {
                    ""
                }
            );
        }
        self.backoff =
            (self.backoff * 2).clamp(Duration::from_millis(10), Duration::from_millis(500));
        tokio::time::sleep(self.backoff).await;
    }
}

/// Lets a repeated warning out at most every few seconds.
#[derive(Default)]
struct Occasional(Option<Instant>);

impl Occasional {
    fn due(&mut self) -> bool {
        let due = self
            .0
            .is_none_or(|last| last.elapsed() >= Duration::from_secs(5));
        if due {
            self.0 = Some(Instant::now());
        }
        due
    }
}
