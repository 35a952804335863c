//! A cheap "did anything worth a backup change?" check.

use crate::Kv;
use std::fmt;

/// A BLAKE3 hash of every checked key at one revision.
///
/// What goes in, per key in key order: the key, the value and whether the key is bound
/// to a lease, each length-prefixed so that no two different key sets hash alike; then
/// the number of keys. What stays out, on purpose:
///
/// - `mod_revision`, `version` and the revision: a put of the same value bumps them
///   without changing anything a restore would write. Agents such as Patroni rewrite
///   unchanged keys on every loop, so including them would call every few seconds a
///   change and defeat the check.
/// - the lease id: a key re-attached to a new lease (a member re-registering) holds the
///   same data; only *whether* it is leased matters, since that decides whether a restore
///   writes it.
///
/// Equality compares the hash and the key count only, not the revision: two fingerprints
/// are equal exactly when nothing checked changed between them.
#[derive(Debug, Clone, Copy)]
pub struct Fingerprint {
    /// The revision the keys were read at.
    pub revision: i64,
    /// How many keys were hashed.
    pub keys: u64,
    /// The BLAKE3 hash.
    pub hash: [u8; 32],
}

impl PartialEq for Fingerprint {
    fn eq(&self, other: &Self) -> bool {
        self.keys == other.keys && self.hash == other.hash
    }
}

impl Eq for Fingerprint {}

impl Fingerprint {
    /// The hash in hex, to store beside a backup and compare later.
    pub fn hex(&self) -> String {
        hex::encode(self.hash)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} keys at revision {})",
            self.hex(),
            self.keys,
            self.revision
        )
    }
}

pub(crate) struct Builder {
    hasher: blake3::Hasher,
    keys: u64,
}

impl Builder {
    pub(crate) fn new() -> Builder {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"strata-etcd fingerprint v1\0");
        Builder { hasher, keys: 0 }
    }

    pub(crate) fn add(&mut self, kv: &Kv) {
        self.hasher.update(&(kv.key.len() as u64).to_le_bytes());
        self.hasher.update(&kv.key);
        self.hasher.update(&(kv.value.len() as u64).to_le_bytes());
        self.hasher.update(&kv.value);
        self.hasher.update(&[u8::from(kv.lease != 0)]);
        self.keys += 1;
    }

    pub(crate) fn finish(mut self, revision: i64) -> Fingerprint {
        self.hasher.update(&self.keys.to_le_bytes());
        Fingerprint {
            revision,
            keys: self.keys,
            hash: *self.hasher.finalize().as_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn print(kvs: &[(&[u8], &[u8], i64, i64)]) -> Fingerprint {
        let mut b = Builder::new();
        for (key, value, lease, mod_revision) in kvs {
            b.add(&Kv {
                key: key.to_vec(),
                value: value.to_vec(),
                lease: *lease,
                create_revision: 1,
                mod_revision: *mod_revision,
                version: 1,
            });
        }
        b.finish(9)
    }

    #[test]
    fn what_counts_and_what_does_not() {
        let base = print(&[(b"a", b"1", 0, 2), (b"b", b"2", 0, 3)]);
        assert_eq!(base, print(&[(b"a", b"1", 0, 7), (b"b", b"2", 0, 8)]));
        assert_ne!(base, print(&[(b"a", b"1", 0, 2), (b"b", b"3", 0, 3)]));
        assert_ne!(base, print(&[(b"a", b"1", 5, 2), (b"b", b"2", 0, 3)]));
        assert_eq!(
            print(&[(b"a", b"1", 5, 2)]),
            print(&[(b"a", b"1", 6, 2)]),
            "another lease id is no change"
        );
        // Length prefixes: moving a byte from key to value is a change.
        assert_ne!(print(&[(b"ab", b"c", 0, 1)]), print(&[(b"a", b"bc", 0, 1)]));
        assert_ne!(base, print(&[(b"a", b"1", 0, 2)]));
    }
}
