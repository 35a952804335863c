//! A snapshot of etcd keys at one revision, and its binary encoding (see `FORMAT.md`).

use crate::EtcdError;

/// The first eight bytes of an encoded snapshot.
const MAGIC: &[u8; 8] = b"STRETCD\n";

/// The encoding version this crate writes and the only one it reads.
pub const FORMAT_VERSION: u16 = 1;

/// Bytes of the BLAKE3 checksum closing an encoding.
const CHECKSUM: usize = 32;

/// The fixed part of an encoded key/value: two u32 lengths and four i64.
const KV_FIXED: usize = 4 + 4 + 8 * 4;

/// One key as etcd holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    /// The key, arbitrary bytes.
    pub key: Vec<u8>,
    /// The value, arbitrary bytes.
    pub value: Vec<u8>,
    /// The lease the key was bound to, 0 for none. Kept so a restore can apply its lease
    /// policy; the id itself is meaningless in another cluster.
    pub lease: i64,
    /// Revision of the key's creation.
    pub create_revision: i64,
    /// Revision of the key's last change.
    pub mod_revision: i64,
    /// Number of changes since creation.
    pub version: i64,
}

/// Every key under some prefixes at one revision, sorted by key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The etcd revision all keys were read at.
    pub revision: i64,
    /// The cluster's id as etcdctl shows it (hex), to tell a restore into another cluster.
    pub cluster_id: String,
    /// The prefixes that were read, sorted, none inside another; `[""]` for the whole
    /// keyspace. A restore writes only under these (or where its rules move them).
    pub prefixes: Vec<Vec<u8>>,
    /// The keys, strictly ascending, each under one of `prefixes`.
    pub kvs: Vec<Kv>,
}

impl Snapshot {
    /// The versioned binary encoding described in `FORMAT.md`, closed by a BLAKE3
    /// checksum so that a damaged copy is refused rather than restored.
    pub fn encode(&self) -> Vec<u8> {
        let size = 8
            + 2
            + 8
            + 4
            + self.cluster_id.len()
            + 4
            + self.prefixes.iter().map(|p| 4 + p.len()).sum::<usize>()
            + 8
            + self
                .kvs
                .iter()
                .map(|kv| KV_FIXED + kv.key.len() + kv.value.len())
                .sum::<usize>()
            + CHECKSUM;
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&self.revision.to_le_bytes());
        put_bytes(&mut out, self.cluster_id.as_bytes());
        out.extend_from_slice(&(self.prefixes.len() as u32).to_le_bytes());
        for prefix in &self.prefixes {
            put_bytes(&mut out, prefix);
        }
        out.extend_from_slice(&(self.kvs.len() as u64).to_le_bytes());
        for kv in &self.kvs {
            put_bytes(&mut out, &kv.key);
            put_bytes(&mut out, &kv.value);
            for n in [kv.lease, kv.create_revision, kv.mod_revision, kv.version] {
                out.extend_from_slice(&n.to_le_bytes());
            }
        }
        let checksum = blake3::hash(&out);
        out.extend_from_slice(checksum.as_bytes());
        out
    }

    /// Reads an encoding back. Any input is safe: lengths are checked against the bytes
    /// left before anything is allocated, so memory stays within a small multiple of the
    /// input's size, and a bad checksum, an unknown version, keys out of order or outside
    /// the prefixes are errors.
    pub fn decode(bytes: &[u8]) -> Result<Snapshot, EtcdError> {
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(EtcdError::Format(
                "not a strata etcd snapshot (bad magic)".to_string(),
            ));
        }
        if bytes.len() < MAGIC.len() + 2 {
            return Err(truncated("version"));
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version != FORMAT_VERSION {
            return Err(EtcdError::Format(format!(
                "snapshot format version {version} is not supported: this strata reads \
                 version {FORMAT_VERSION} only (a newer strata wrote it?)"
            )));
        }
        if bytes.len() < MAGIC.len() + 2 + CHECKSUM {
            return Err(truncated("checksum"));
        }
        let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM);
        if blake3::hash(body).as_bytes() != checksum {
            return Err(EtcdError::Format(
                "checksum mismatch: the snapshot is damaged or truncated".to_string(),
            ));
        }
        decode_body(&body[MAGIC.len() + 2..])
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn truncated(what: &str) -> EtcdError {
    EtcdError::Format(format!("truncated snapshot (at the {what})"))
}

/// A cursor over untrusted bytes: every read checks what is left first.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], EtcdError> {
        if n > self.rest.len() {
            return Err(truncated(what));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u32(&mut self, what: &str) -> Result<u32, EtcdError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &str) -> Result<u64, EtcdError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn i64(&mut self, what: &str) -> Result<i64, EtcdError> {
        Ok(self.u64(what)? as i64)
    }

    /// A u32 length then that many bytes; the length is checked against the input left
    /// before the copy is allocated.
    fn bytes(&mut self, what: &str) -> Result<Vec<u8>, EtcdError> {
        let len = self.u32(what)? as usize;
        Ok(self.take(len, what)?.to_vec())
    }
}

/// Decodes what follows the magic and version, checksum excluded (checked by the
/// caller). Separate so that tests can feed it damaged bodies the checksum would hide.
pub(crate) fn decode_body(body: &[u8]) -> Result<Snapshot, EtcdError> {
    let mut r = Reader { rest: body };
    let revision = r.i64("revision")?;
    let cluster_id = String::from_utf8(r.bytes("cluster id")?)
        .map_err(|_| EtcdError::Format("cluster id is not UTF-8".to_string()))?;
    let prefix_count = r.u32("prefix count")? as usize;
    // Each prefix takes at least its 4-byte length: more than that cannot be in the input.
    if prefix_count > r.rest.len() / 4 {
        return Err(truncated("prefixes"));
    }
    let mut prefixes = Vec::with_capacity(prefix_count);
    for _ in 0..prefix_count {
        prefixes.push(r.bytes("prefix")?);
    }
    let count = r.u64("key count")?;
    if count > (r.rest.len() / KV_FIXED) as u64 {
        return Err(truncated("keys"));
    }
    let mut kvs: Vec<Kv> = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let key = r.bytes("key")?;
        let value = r.bytes("value")?;
        let kv = Kv {
            key,
            value,
            lease: r.i64("lease")?,
            create_revision: r.i64("create revision")?,
            mod_revision: r.i64("mod revision")?,
            version: r.i64("version")?,
        };
        if let Some(previous) = kvs.last() {
            if kv.key <= previous.key {
                return Err(EtcdError::Format(
                    "keys are not strictly ascending".to_string(),
                ));
            }
        }
        if !prefixes.iter().any(|p| kv.key.starts_with(p)) {
            return Err(EtcdError::Format(format!(
                "key {} is outside the snapshot's prefixes",
                crate::shown::show_bytes(&kv.key, 64)
            )));
        }
        kvs.push(kv);
    }
    if !r.rest.is_empty() {
        return Err(EtcdError::Format(format!(
            "{} unexpected bytes after the last key",
            r.rest.len()
        )));
    }
    Ok(Snapshot {
        revision,
        cluster_id,
        prefixes,
        kvs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn arb_snapshot() -> impl Strategy<Value = Snapshot> {
        let prefixes = prop_oneof![
            Just(vec![Vec::new()]),
            Just(vec![b"/a/".to_vec(), b"/b/".to_vec()]),
        ];
        (
            any::<i64>(),
            "[0-9a-f]{0,16}",
            prefixes,
            prop::collection::vec(
                (
                    any::<bool>(),
                    prop::collection::vec(any::<u8>(), 0..12),
                    prop::collection::vec(any::<u8>(), 0..40),
                    any::<[i64; 4]>(),
                ),
                0..20,
            ),
        )
            .prop_map(|(revision, cluster_id, prefixes, raw)| {
                let mut kvs = BTreeMap::new();
                for (second, suffix, value, [lease, c, m, v]) in raw {
                    let mut key = prefixes[usize::from(second) % prefixes.len()].clone();
                    key.extend_from_slice(&suffix);
                    if key.is_empty() {
                        key.push(b'k');
                    }
                    kvs.insert(
                        key.clone(),
                        Kv {
                            key,
                            value,
                            lease,
                            create_revision: c,
                            mod_revision: m,
                            version: v,
                        },
                    );
                }
                Snapshot {
                    revision,
                    cluster_id,
                    prefixes,
                    kvs: kvs.into_values().collect(),
                }
            })
    }

    /// Re-closes a damaged encoding with a valid checksum, so the parser behind it is
    /// what the damage reaches.
    fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
        let body = bytes.len().saturating_sub(CHECKSUM).max(10);
        bytes.truncate(body);
        let checksum = blake3::hash(&bytes);
        bytes.extend_from_slice(checksum.as_bytes());
        bytes
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity(s in arb_snapshot()) {
            prop_assert_eq!(Snapshot::decode(&s.encode()).unwrap(), s);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = Snapshot::decode(&bytes);
            let _ = decode_body(&bytes);
            let mut framed = MAGIC.to_vec();
            framed.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
            framed.extend_from_slice(&bytes);
            let _ = Snapshot::decode(&reseal(framed));
        }

        #[test]
        fn truncated_encodings_are_refused(s in arb_snapshot(), cut in any::<prop::sample::Index>()) {
            let bytes = s.encode();
            let cut = cut.index(bytes.len());
            prop_assert!(Snapshot::decode(&bytes[..cut]).is_err());
            // Truncated bodies behind a valid checksum: refused by the parser itself.
            let body = &bytes[10..bytes.len() - CHECKSUM];
            if cut < body.len() {
                prop_assert!(decode_body(&body[..cut]).is_err());
            }
        }

        #[test]
        fn mutated_encodings_never_panic(
            s in arb_snapshot(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let mut bytes = s.encode();
            for (at, byte) in &edits {
                let i = at.index(bytes.len());
                bytes[i] = *byte;
            }
            // Without resealing the checksum catches it (or the bytes happen to be equal).
            if let Ok(back) = Snapshot::decode(&bytes) {
                prop_assert_eq!(back, s.clone());
            }
            // Resealed, the parser sees the damage: it may accept it, never panic.
            let _ = Snapshot::decode(&reseal(bytes));
        }
    }

    #[test]
    fn huge_counts_and_lengths_fail_without_allocating() {
        let s = Snapshot {
            revision: 5,
            cluster_id: "c".into(),
            prefixes: vec![Vec::new()],
            kvs: vec![],
        };
        let bytes = s.encode();
        // The key count is the last 8 bytes before the checksum.
        let at = bytes.len() - CHECKSUM - 8;
        let mut huge = bytes.clone();
        huge[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        let err = Snapshot::decode(&reseal(huge)).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        // A cluster id claiming 4 GiB.
        let mut huge = bytes.clone();
        huge[18..22].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = Snapshot::decode(&reseal(huge)).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        // A prefix count of 4 billion.
        let mut huge = bytes;
        huge[23..27].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = Snapshot::decode(&reseal(huge)).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
    }

    #[test]
    fn unknown_version_and_order_are_refused() {
        let s = Snapshot {
            revision: 5,
            cluster_id: "c".into(),
            prefixes: vec![b"/a/".to_vec()],
            kvs: vec![],
        };
        let mut bytes = s.encode();
        bytes[8] = 2;
        let err = Snapshot::decode(&bytes).unwrap_err().to_string();
        assert!(err.contains("version 2 is not supported"), "{err}");

        let kv = |k: &[u8]| Kv {
            key: k.to_vec(),
            value: vec![],
            lease: 0,
            create_revision: 1,
            mod_revision: 1,
            version: 1,
        };
        let unsorted = Snapshot {
            kvs: vec![kv(b"/a/2"), kv(b"/a/1")],
            ..s.clone()
        };
        let err = Snapshot::decode(&unsorted.encode())
            .unwrap_err()
            .to_string();
        assert!(err.contains("ascending"), "{err}");
        let outside = Snapshot {
            kvs: vec![kv(b"/b/1")],
            ..s
        };
        let err = Snapshot::decode(&outside.encode()).unwrap_err().to_string();
        assert!(err.contains("outside"), "{err}");
    }
}
