//! Small rules every strata crate shares, kept in one place so no crate keeps a copy:
//!
//! ```
//! use strata_util::{error_chain, mask_url, valid_id};
//!
//! let err = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
//! assert_eq!(error_chain(&err), "no such file");
//! assert_eq!(mask_url("https://user:pw@hooks.example:8443/T0/secret?x=1"), "https://hooks.example:8443/***");
//! assert!(valid_id("20261125T155539Z-3fa1b2c4") && !valid_id("../x"));
//! ```
//!
//! It depends on nothing but rustls (for [`tls_by_ring`]), so every crate of the workspace
//! may use it. Its feature
//! `test-hooks` (on only in test builds, through the test kit) lets the `STRATA_TEST_*`
//! switches through [`test_switch`].

#![deny(missing_docs)]

/// The value of the test-only switch `name` (a `STRATA_TEST_*` environment variable) in a
/// build with the `test-hooks` feature, which only the test kit turns on; `None` in every
/// other build, whatever the environment says. Every such switch is read through here.
pub fn test_switch(name: &str) -> Option<String> {
    if cfg!(feature = "test-hooks") {
        std::env::var(name).ok()
    } else {
        None
    }
}

/// Whether the test-only switch `STRATA_TEST_UNSAFE` (a comma-separated list) names
/// `rule`: each names one safety rule to break, so the tests can show that they catch
/// its absence (negative controls). Read only in test builds ([`test_switch`]).
pub fn test_unsafe(rule: &str) -> bool {
    test_switch("STRATA_TEST_UNSAFE").is_some_and(|v| v.split(',').any(|r| r.trim() == rule))
}

/// Makes ring the process's TLS provider, once: call it before building an HTTP client.
/// reqwest's clients (object_store's among them) take the process's provider and panic
/// without one, and ring is the only one built in: the server's TLS and the PostgreSQL
/// client use it too, and reqwest's own default would add aws-lc-rs, a second crypto
/// library and the longest C build of the tree.
pub fn tls_by_ring() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Another provider installed first (by a program embedding strata) stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Writes `bytes` as `dir/name`, durably and privately, the way state files must be
/// written: `dir` made 0700 if missing, a fresh 0600 temporary file (never through a
/// link someone planted there), fsynced, renamed over `name`, and the directory fsynced.
/// A reader sees the old file or the new one, never a part; a crash keeps one of them.
pub fn write_private_file(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

/// An error with its causes, `what: why: why`, each said once (a cause whose text the
/// line already holds is not repeated): the one line strata prints at its edges and
/// carries across layers as text.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// A URL reduced to `scheme://host[:port]`, with `/***` when it had a path or query:
/// enough to tell which service it points at, nothing that lets anyone post to it (a
/// webhook's path may be its secret, its user info a password).
pub fn mask_url(url: &str) -> String {
    const MASK: &str = "***";
    let Some((scheme, rest)) = url.split_once("://") else {
        return MASK.into();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if end < rest.len() && rest.len() > end + 1 {
        format!("{scheme}://{host}/{MASK}")
    } else {
        format!("{scheme}://{host}")
    }
}

/// Whether `id` may name a record, an operation or a node: 1 to 200 of
/// `A-Z a-z 0-9 . _ -`, not starting with a dot, so a file named after it stays in its
/// directory whatever a peer sends.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn a_chain_says_each_cause_once() {
        let err = Layer(
            "cannot read summaries/x",
            Some(Box::new(Layer(
                "connection refused",
                Some(Box::new(Layer("connection refused", None))),
            ))),
        );
        assert_eq!(
            error_chain(&err),
            "cannot read summaries/x: connection refused"
        );
    }

    #[test]
    fn urls_keep_their_host_and_nothing_secret() {
        assert_eq!(mask_url("http://h:1"), "http://h:1");
        assert_eq!(mask_url("http://h:1/"), "http://h:1");
        assert_eq!(mask_url("https://u:p@h/x"), "https://h/***");
        assert_eq!(mask_url("https://h?token=1"), "https://h/***");
        assert_eq!(mask_url("not a url"), "***");
    }

    #[test]
    fn ids_stay_in_their_directory() {
        for good in ["20261125T155539Z-3fa1b2c4-0", "op-db1-2", "a.b_c"] {
            assert!(valid_id(good), "{good}");
        }
        for bad in [
            "",
            "../x",
            "/abs",
            ".hidden",
            "a/b",
            "a\0b",
            &"x".repeat(201),
        ] {
            assert!(!valid_id(bad), "{bad:?}");
        }
    }
}
