//! Throw-away TLS material for tests that speak HTTPS on loopback.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A self-signed certificate for 127.0.0.1 made with openssl: `(dir/cert.pem,
/// dir/key.pem)`.
pub fn self_signed_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let openssl = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::piped())
        .output()
        .expect("openssl is installed (scripts/test.sh installs it)");
    assert!(
        openssl.status.success(),
        "{}",
        String::from_utf8_lossy(&openssl.stderr)
    );
    (cert, key)
}
