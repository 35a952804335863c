//! TLS to PostgreSQL over rustls, for connections that ask for it (`sslmode=require`).
//!
//! The server's certificate is always verified: its chain against the system's roots plus
//! `sslrootcert` when given, and its name against the host connected to (what libpq calls
//! `verify-full`). An encrypted connection to a server nobody vouched for is not offered:
//! it protects against nothing an attacker on the path cannot undo.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

/// Why the TLS settings could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The `sslrootcert` file could not be read, holds no PEM certificate, or holds one
    /// rustls refuses.
    #[error("cannot read sslrootcert {path}: {why}")]
    RootCert {
        /// The file, as given.
        path: String,
        /// What went wrong with it.
        why: String,
    },
    /// Neither the system nor `sslrootcert` gave a root to verify the server against.
    #[error("no trusted root certificates: give sslrootcert=FILE")]
    NoRoots,
}

/// Makes TLS connectors for tokio-postgres from one rustls configuration.
#[derive(Clone)]
pub struct MakeRustls {
    config: Arc<rustls::ClientConfig>,
}

impl MakeRustls {
    /// Trusts the system's roots and the certificates in `root_cert` (PEM), if given.
    pub fn new(root_cert: Option<&Path>) -> Result<MakeRustls, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        if let Some(path) = root_cert {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect())
                .map_err(|e| TlsError::RootCert {
                    path: path.display().to_string(),
                    why: e.to_string(),
                })?;
            if certs.is_empty() {
                return Err(TlsError::RootCert {
                    path: path.display().to_string(),
                    why: "no PEM certificate in it".into(),
                });
            }
            for cert in certs {
                roots.add(cert).map_err(|e| TlsError::RootCert {
                    path: path.display().to_string(),
                    why: e.to_string(),
                })?;
            }
        }
        if roots.is_empty() {
            return Err(TlsError::NoRoots);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(MakeRustls {
            config: Arc::new(config),
        })
    }
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<RustlsConnect> {
        let name = ServerName::try_from(domain.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(RustlsConnect {
            connector: tokio_rustls::TlsConnector::from(self.config.clone()),
            name,
        })
    }
}

/// One connection's TLS handshake.
pub struct RustlsConnect {
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let tls = self.connector.connect(self.name, stream).await?;
            Ok(RustlsStream(Box::new(tls)))
        })
    }
}

/// An encrypted connection to the server.
pub struct RustlsStream<S>(Box<tokio_rustls::client::TlsStream<S>>);

impl<S> tokio_postgres::tls::TlsStream for RustlsStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM's channel binding (-PLUS) is not offered; plain SCRAM still runs inside
        // the verified TLS session.
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

/// Takes libpq's TLS keys tokio-postgres does not know out of a connection string:
/// `sslrootcert=FILE` is returned, `sslmode=verify-ca|verify-full` become `require` (this
/// connector always verifies). Works on both the `key=value` and the URL form.
pub fn split_tls_options(text: &str) -> (String, Option<String>) {
    let mut root_cert = None;
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        let Some((base, query)) = text.split_once('?') else {
            return (text.to_string(), None);
        };
        let mut kept = Vec::new();
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("sslrootcert", value)) => root_cert = Some(percent_decode(value)),
                Some(("sslmode", "verify-ca" | "verify-full")) => kept.push("sslmode=require"),
                _ => kept.push(pair),
            }
        }
        let rebuilt = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return (rebuilt, root_cert);
    }
    let mut kept = Vec::new();
    for word in text.split_whitespace() {
        match word.split_once('=') {
            Some(("sslrootcert", value)) => root_cert = Some(value.trim_matches('\'').to_string()),
            Some(("sslmode", "verify-ca" | "verify-full")) => kept.push("sslmode=require"),
            _ => kept.push(word),
        }
    }
    (kept.join(" "), root_cert)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_tls_keys_are_taken_out() {
        assert_eq!(
            split_tls_options("host=db1 sslmode=verify-full sslrootcert=/etc/ca.pem dbname=m"),
            (
                "host=db1 sslmode=require dbname=m".to_string(),
                Some("/etc/ca.pem".to_string())
            )
        );
        assert_eq!(
            split_tls_options("postgresql://u@db1/m?sslmode=verify-ca&sslrootcert=%2Fetc%2Fca.pem"),
            (
                "postgresql://u@db1/m?sslmode=require".to_string(),
                Some("/etc/ca.pem".to_string())
            )
        );
        assert_eq!(
            split_tls_options("postgresql://u@db1/m"),
            ("postgresql://u@db1/m".to_string(), None)
        );
        assert_eq!(
            split_tls_options("dbname=m"),
            ("dbname=m".to_string(), None)
        );
    }

    #[test]
    fn a_missing_root_cert_is_an_error_naming_it() {
        let err = MakeRustls::new(Some(Path::new("/nonexistent/ca.pem")))
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
