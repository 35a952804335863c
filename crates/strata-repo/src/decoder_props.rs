//! Property tests of every decoder of repository objects: arbitrary bytes and mutated
//! valid encodings give an error (or, where nothing authenticates them, some value),
//! never a panic, and never an allocation sized by a length read from the input alone.
//!
//! What bounds each decoder: objects decompress through `decompress_capped`
//! ([`MAX_OBJECT_PLAIN`]; a size the frame declares is allocated only within 64 times
//! the input); index objects read pack by pack (`PacksOf`) allocate nothing by their
//! count; postcard sequences preallocate at most serde's cautious hint
//! (1 MiB), growing with real input only; key files are size- and length-checked before
//! any hex is decoded; blob raw lengths are capped by `MAX_BLOB_RAW` before decompression.

use crate::archive::ArchivedFile;
use crate::compress::{decompress, BlobCompressor};
use crate::crypto::{Cipher, KdfParams, KeyFile, MasterKeys};
use crate::dictionary::{Dictionaries, Dictionary};
use crate::format::{decode_object, decompress_capped, encode_object, Encryption, ObjectKind};
use crate::index::{IndexFile, PacksOf};
use crate::manifest::NodeManifest;
use crate::manifest_chunks::{decode_chunk, ManifestBuilder, ManifestTop};
use crate::pack::{read_header, PackBuilder};
use crate::repository::parse_config;
use crate::summary::BackupSummary;
use crate::BlobId;
use proptest::collection::vec;
use proptest::prelude::*;

const KINDS: [ObjectKind; 11] = [
    ObjectKind::Index,
    ObjectKind::Manifest,
    ObjectKind::Summary,
    ObjectKind::PackHeader,
    ObjectKind::Archived,
    ObjectKind::Audit,
    ObjectKind::Pin,
    ObjectKind::VerifyRecord,
    ObjectKind::Listing,
    ObjectKind::Condemned,
    ObjectKind::Dictionary,
];

/// A real trained dictionary and a page compressed with it, made once.
fn dictionary_and_frame() -> &'static (Vec<u8>, Vec<u8>) {
    static MADE: std::sync::OnceLock<(Vec<u8>, Vec<u8>)> = std::sync::OnceLock::new();
    MADE.get_or_init(|| {
        let samples: Vec<Vec<u8>> = (0..64)
            .map(|i| crate::dictionary::tests::rows_page(i, 8192))
            .collect();
        let raw = crate::dictionary::train(&samples).expect("trains");
        let dictionary = Dictionary::parse(raw.clone()).unwrap();
        let mut compressor = BlobCompressor::new(3);
        compressor.use_dictionary(&dictionary);
        let frame = compressor.compress(&crate::dictionary::tests::rows_page(999, 32 * 1024));
        assert!(frame.compressed);
        (raw, frame.data)
    })
}

fn cipher(encrypted: bool, accept_v1: bool) -> Cipher {
    let encryption = if encrypted {
        Encryption::Aes256Gcm
    } else {
        Encryption::None
    };
    Cipher::new(encryption, &MasterKeys::generate()).accepting_v1_objects(accept_v1)
}

/// Applies byte edits (position modulo length, xor with a non-zero value), then an
/// optional cut; returns whether anything changed.
fn mutate(bytes: &mut Vec<u8>, edits: &[(usize, u8)], cut: Option<usize>) -> bool {
    let mut changed = false;
    if !bytes.is_empty() {
        for &(at, x) in edits {
            let at = at % bytes.len();
            bytes[at] ^= x | 1;
            changed = true;
        }
    }
    if let Some(cut) = cut {
        if !bytes.is_empty() {
            bytes.truncate(cut % bytes.len());
            changed = true;
        }
    }
    changed
}

fn a_config_json() -> Vec<u8> {
    let mut config = crate::format::RepoConfig {
        format: "strata".into(),
        version: crate::format::FORMAT_VERSION,
        id: "0123456789abcdef".into(),
        encryption: Encryption::Aes256Gcm,
        chunker: crate::chunker::ChunkerParams::GENERIC,
        page_chunker: crate::chunker::ChunkerParams::PAGES,
        created: "2026-11-25T00:00:00Z".into(),
        mac: None,
    };
    config.seal_mac(&MasterKeys::generate());
    serde_json::to_vec(&config).unwrap()
}

const FAST: KdfParams = KdfParams {
    memory_kib: 8,
    iterations: 1,
    parallelism: 1,
};

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn objects_from_arbitrary_bytes_never_panic(
        bytes in vec(any::<u8>(), 0..600),
        header in any::<bool>(),
        kind in 0usize..9,
        version in 0u16..4,
        encrypted in any::<bool>(),
        accept_v1 in any::<bool>(),
    ) {
        let mut bytes = bytes;
        if header {
            // Mostly past the magic check, to reach the deeper paths.
            let mut head = b"STRO".to_vec();
            head.push(KINDS[kind] as u8);
            head.extend_from_slice(&version.to_le_bytes());
            head.extend_from_slice(&bytes);
            bytes = head;
        }
        let c = cipher(encrypted, accept_v1);
        for k in KINDS {
            let _ = decode_object(&c, k, &bytes, "index/x");
        }
    }

    #[test]
    fn mutated_objects_are_refused(
        payload in vec(any::<u8>(), 0..400),
        kind in 0usize..9,
        edits in vec((any::<usize>(), any::<u8>()), 0..4),
        cut in proptest::option::of(any::<usize>()),
        encrypted in any::<bool>(),
    ) {
        let c = cipher(encrypted, false);
        let kind = KINDS[kind];
        let name = "manifests/b/n";
        let mut bytes = encode_object(&c, kind, name, &payload);
        prop_assert_eq!(decode_object(&c, kind, &bytes, name).unwrap(), payload.clone());
        let changed = mutate(&mut bytes, &edits, cut);
        let decoded = decode_object(&c, kind, &bytes, name);
        if encrypted && changed {
            prop_assert!(decoded.is_err());
        }
    }

    #[test]
    fn objects_do_not_open_under_another_name_or_kind(
        payload in vec(any::<u8>(), 0..200),
        kind in 0usize..9,
        other in "[a-z/]{0,20}",
    ) {
        let c = cipher(true, true);
        let kind = KINDS[kind];
        let bytes = encode_object(&c, kind, "summaries/a", &payload);
        if kind != ObjectKind::PackHeader && other != "summaries/a" {
            prop_assert!(decode_object(&c, kind, &bytes, &other).is_err());
        }
        // The kind byte is plain, but bound: relabelled, the object no longer opens.
        let mut relabelled = bytes.clone();
        relabelled[4] = if kind == ObjectKind::Index { ObjectKind::Summary } else { ObjectKind::Index } as u8;
        for k in KINDS {
            prop_assert!(decode_object(&c, k, &relabelled, "summaries/a").is_err());
        }
    }

    #[test]
    fn pack_trailers_and_headers_never_panic(
        blobs in vec(vec(any::<u8>(), 0..100), 0..6),
        edits in vec((any::<usize>(), any::<u8>()), 0..4),
        cut in proptest::option::of(any::<usize>()),
        arbitrary in vec(any::<u8>(), 0..300),
        encrypted in any::<bool>(),
    ) {
        let c = cipher(encrypted, false);
        let _ = read_header(&c, &arbitrary, "pack");
        let mut with_trailer = arbitrary.clone();
        with_trailer.extend_from_slice(crate::format::PACK_MAGIC);
        let _ = read_header(&c, &with_trailer, "pack");
        let mut builder = PackBuilder::new(64);
        for blob in &blobs {
            builder.add(BlobId([blob.len() as u8; 32]), &c.seal(blob), blob.len() as u32, false);
        }
        let mut pack = builder.finish(&c).bytes;
        let changed = mutate(&mut pack, &edits, cut);
        let header = read_header(&c, &pack, "pack");
        if let Ok(entries) = header {
            // Whatever was accepted stays inside the pack.
            for e in entries {
                prop_assert!(e.offset + e.length as u64 <= pack.len() as u64);
            }
        }
        let _ = changed;
    }

    #[test]
    fn dictionaries_and_their_frames_from_arbitrary_or_mutated_bytes_never_panic(
        arbitrary in vec(any::<u8>(), 0..2000),
        magic in any::<bool>(),
        edits in vec((any::<usize>(), any::<u8>()), 0..6),
        cut in proptest::option::of(any::<usize>()),
        frame_edits in vec((any::<usize>(), any::<u8>()), 0..4),
    ) {
        let (raw, frame) = dictionary_and_frame();
        let mut bytes = arbitrary.clone();
        if magic {
            bytes = [0x37, 0xA4, 0x30, 0xEC].into_iter().chain(arbitrary.iter().copied()).collect();
        }
        let _ = Dictionary::parse(bytes);
        let mut damaged = raw.clone();
        mutate(&mut damaged, &edits, cut);
        let Ok(dictionary) = Dictionary::parse(damaged) else { return Ok(()) };
        let mut loaded = Dictionaries::default();
        loaded.insert(std::sync::Arc::new(dictionary));
        // Frames against a (maybe damaged) dictionary: an error or some bytes of exactly
        // the expected length, never a panic.
        let mut frame = frame.clone();
        mutate(&mut frame, &frame_edits, None);
        for input in [&frame[..], &arbitrary[..]] {
            if let Ok(out) = decompress(input, 32 * 1024, &loaded) {
                prop_assert_eq!(out.len(), 32 * 1024);
            }
        }
    }

    #[test]
    fn payload_decoders_never_panic(bytes in vec(any::<u8>(), 0..600)) {
        let _ = postcard::from_bytes::<IndexFile>(&bytes);
        let _ = NodeManifest::from_bytes(&bytes);
        let _ = ManifestTop::from_bytes(&bytes);
        let _ = decode_chunk(&bytes);
        let _ = serde_json::from_slice::<BackupSummary>(&bytes);
        let _ = serde_json::from_slice::<ArchivedFile>(&bytes);
        let _ = postcard::from_bytes::<Vec<crate::pack::PackEntry>>(&bytes);
    }

    #[test]
    fn listing_objects_from_arbitrary_or_mutated_bytes_never_panic(
        arbitrary in vec(any::<u8>(), 0..600),
        count in 1usize..6,
        edits in vec((any::<usize>(), any::<u8>()), 1..4),
        cut in proptest::option::of(any::<usize>()),
        encrypted in any::<bool>(),
    ) {
        use crate::listing::{decode_payload, encode_payload, ListingKey, Position};
        let entries: Vec<BackupSummary> = (0..count)
            .map(|i| crate::listing::tests::summary(
                &format!("20261125T0{i}0000Z-0000000{i}"),
                &format!("2026-11-25T0{i}:00:00.000Z"),
                crate::summary::BackupStatus::Complete,
            ))
            .collect();
        let key = ListingKey::new_page(Position::of(&entries[0]), Position::of(&entries[count - 1]), count);
        let entry = ListingKey::Entry(Position::of(&entries[0]));
        let _ = decode_payload(&key, &arbitrary);
        let _ = decode_payload(&entry, &arbitrary);
        let plain = encode_payload(&entries);
        prop_assert_eq!(decode_payload(&key, &plain).unwrap(), entries);
        let mut mutated = plain.clone();
        mutate(&mut mutated, &edits, cut);
        let _ = decode_payload(&key, &mutated);
        let _ = ListingKey::parse(&String::from_utf8_lossy(&arbitrary));
        // Sealed: a mutated page or a page under another name does not open.
        let c = cipher(encrypted, false);
        let mut sealed = encode_object(&c, ObjectKind::Listing, &key.key(), &plain);
        if encrypted {
            prop_assert!(decode_object(&c, ObjectKind::Listing, &sealed, &entry.key()).is_err());
        }
        if mutate(&mut sealed, &edits, cut) && encrypted {
            prop_assert!(decode_object(&c, ObjectKind::Listing, &sealed, &key.key()).is_err());
        }
    }

    #[test]
    fn mutated_manifests_and_indexes_never_panic(
        paths in vec(vec(any::<u8>(), 1..20), 0..10),
        edits in vec((any::<usize>(), any::<u8>()), 1..4),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let manifest = NodeManifest {
            node: "n1".into(),
            roots: vec!["/data".into()],
            entries: paths.iter().map(|p| crate::manifest::Entry {
                path: p.clone(),
                kind: crate::manifest::EntryKind::File { size: 7, chunks: vec![BlobId([1; 32])] },
                mode: 0o644, uid: 0, gid: 0, mtime_ns: 0, xattrs: Vec::new(),
            }).collect(),
        };
        let mut bytes = manifest.to_bytes();
        mutate(&mut bytes, &edits, cut);
        let _ = NodeManifest::from_bytes(&bytes);
        let _ = postcard::from_bytes::<IndexFile>(&bytes);
    }

    /// A refresh decodes index objects pack by pack: it yields exactly the packs the
    /// whole decode yields, and an error wherever the whole decode fails, for valid,
    /// mutated and cut encodings alike.
    #[test]
    fn index_objects_decode_pack_by_pack_as_whole(
        packs in vec((any::<[u8; 32]>(), any::<u64>(), vec((any::<[u8; 32]>(), any::<u64>(), any::<u32>(), any::<u32>(), any::<bool>()), 0..6)), 0..6),
        edits in vec((any::<usize>(), any::<u8>()), 0..4),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let file = IndexFile {
            packs: packs.into_iter().map(|(id, size, blobs)| crate::index::IndexedPack {
                id: BlobId(id),
                size,
                blobs: blobs.into_iter().map(|(id, offset, length, raw_length, compressed)| crate::pack::PackEntry {
                    id: BlobId(id), offset, length, raw_length, compressed,
                }).collect(),
            }).collect(),
        };
        let mut bytes = postcard::to_stdvec(&file).unwrap();
        mutate(&mut bytes, &edits, cut);
        let streamed: Result<Vec<_>, _> = PacksOf::new(&bytes).and_then(|packs| packs.collect());
        match postcard::from_bytes::<IndexFile>(&bytes) {
            Ok(whole) => prop_assert_eq!(streamed.ok(), Some(whole.packs)),
            Err(_) => prop_assert!(streamed.is_err()),
        }
    }

    #[test]
    fn mutated_manifest_tops_and_chunks_never_panic(
        paths in vec(vec(any::<u8>(), 1..20), 1..40),
        edits in vec((any::<usize>(), any::<u8>()), 1..4),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let keys = MasterKeys::generate();
        let mut builder = ManifestBuilder::new(&keys, "n1".into(), vec!["/data".into()]);
        let mut chunks = Vec::new();
        for p in &paths {
            chunks.extend(builder.push(&crate::manifest::Entry {
                path: p.clone(),
                kind: crate::manifest::EntryKind::File { size: 7, chunks: vec![BlobId([1; 32])] },
                mode: 0o644, uid: 0, gid: 0, mtime_ns: 0, xattrs: Vec::new(),
            }));
        }
        let (last, top) = builder.finish();
        chunks.extend(last);
        let mut bytes = top.to_bytes();
        mutate(&mut bytes, &edits, cut);
        if let Ok(top) = ManifestTop::from_bytes(&bytes) {
            // Whatever decodes answers directory lookups without panicking.
            for p in &paths {
                let range = top.chunks_under(p);
                prop_assert!(range.end <= top.chunks.len());
            }
        }
        let mut chunk = chunks[0].bytes.to_vec();
        mutate(&mut chunk, &edits, cut);
        let _ = decode_chunk(&chunk);
    }

    #[test]
    fn key_files_from_arbitrary_or_mutated_bytes_never_panic(
        arbitrary in vec(any::<u8>(), 0..400),
        edits in vec((any::<usize>(), any::<u8>()), 1..4),
        cut in proptest::option::of(any::<usize>()),
    ) {
        if let Ok(file) = KeyFile::parse(&arbitrary) {
            let _ = file.unwrap_for(Some("pw"), "r");
        }
        let keys = MasterKeys::generate();
        let file = KeyFile::wrap(&keys, Some("pw"), FAST, "now".into(), "r").unwrap();
        let mut bytes = serde_json::to_vec(&file).unwrap();
        mutate(&mut bytes, &edits, cut);
        if let Ok(file) = KeyFile::parse(&bytes) {
            // A mutated key file never yields other keys than the real ones.
            if let Ok(back) = file.unwrap_for(Some("pw"), "r") {
                prop_assert_eq!(back.encryption_key, keys.encryption_key);
                prop_assert_eq!(back.id_key, keys.id_key);
            }
        }
    }

    #[test]
    fn configs_from_arbitrary_or_mutated_bytes_never_panic(
        arbitrary in vec(any::<u8>(), 0..400),
        edits in vec((any::<usize>(), any::<u8>()), 1..4),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let _ = parse_config(&arbitrary, "here");
        let mut bytes = a_config_json();
        mutate(&mut bytes, &edits, cut);
        let _ = parse_config(&bytes, "here");
    }
}

#[test]
fn huge_length_prefixes_fail_without_allocating_them() {
    // postcard varint of 2^62 entries, then almost nothing.
    let mut bytes = vec![0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40];
    bytes.extend_from_slice(&[0; 8]);
    assert!(postcard::from_bytes::<IndexFile>(&bytes).is_err());
    assert!(PacksOf::new(&bytes).unwrap().any(|pack| pack.is_err()));
    assert!(NodeManifest::from_bytes(&bytes).is_err());
    assert!(ManifestTop::from_bytes(&bytes).is_err());
    assert!(decode_chunk(&bytes).is_err());
    assert!(postcard::from_bytes::<Vec<crate::pack::PackEntry>>(&bytes).is_err());
}

#[test]
fn decompression_of_objects_is_capped() {
    let bomb = zstd::bulk::compress(&vec![0u8; 4 << 20], 19).unwrap();
    assert!(bomb.len() < 4096);
    assert!(decompress_capped(&bomb, 1 << 20).is_err());
    assert_eq!(decompress_capped(&bomb, 4 << 20).unwrap().len(), 4 << 20);
}

#[test]
fn key_files_with_out_of_bound_parameters_are_refused_before_any_work() {
    let keys = MasterKeys::generate();
    let good = KeyFile::wrap(&keys, Some("pw"), FAST, "now".into(), "r").unwrap();
    for params in [
        KdfParams {
            memory_kib: u32::MAX,
            iterations: 1,
            parallelism: 1,
        },
        KdfParams {
            memory_kib: 64,
            iterations: u32::MAX,
            parallelism: 1,
        },
        KdfParams {
            memory_kib: 1 << 20,
            iterations: 64,
            parallelism: 1,
        },
        KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1000,
        },
        KdfParams {
            memory_kib: 64,
            iterations: 0,
            parallelism: 1,
        },
    ] {
        let mut file = good.clone();
        file.params = Some(params);
        let json = serde_json::to_vec(&file).unwrap();
        assert!(KeyFile::parse(&json).is_err(), "{params:?}");
        assert!(file.unwrap_for(Some("pw"), "r").is_err(), "{params:?}");
    }
    for salt in ["", "00", &"00".repeat(65), "zz"] {
        let mut file = good.clone();
        file.salt = salt.to_string();
        assert!(
            KeyFile::parse(&serde_json::to_vec(&file).unwrap()).is_err(),
            "{salt:?}"
        );
    }
    assert!(KeyFile::parse(&vec![b' '; 100_000]).is_err());
}
