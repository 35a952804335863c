//! One conformance suite for every backend: the local directory and real S3, Azure Blob
//! and GCS servers. Each backend must behave the same for everything strata relies on.

mod servers;

use bytes::Bytes;
use std::sync::Arc;
use strata_store::{open_cloud, CloudStore, DynStore, LocalStore, Store, StoreError};

async fn conformance(store: DynStore) {
    let name = store.describe();
    // put / get / ranged get
    store
        .put("config", Bytes::from_static(b"{\"format\":\"strata\"}"))
        .await
        .unwrap();
    assert_eq!(
        &store.get("config").await.unwrap()[..],
        b"{\"format\":\"strata\"}",
        "{name}"
    );
    let body: Bytes = (0..100_000u32)
        .flat_map(|i| i.to_le_bytes())
        .collect::<Vec<u8>>()
        .into();
    store.put("data/ab/pack1", body.clone()).await.unwrap();
    assert_eq!(
        store.get_range("data/ab/pack1", 1000..1010).await.unwrap(),
        body.slice(1000..1010),
        "{name}"
    );
    assert_eq!(
        store.get_range("data/ab/pack1", 0..0).await.unwrap().len(),
        0
    );
    // overwrite
    store
        .put("config", Bytes::from_static(b"v2"))
        .await
        .unwrap();
    assert_eq!(&store.get("config").await.unwrap()[..], b"v2");
    // missing objects
    let err = store.get("summaries/none").await.unwrap_err();
    assert!(err.is_not_found(), "{name}: {err}");
    // list with prefixes, sorted, sizes
    for key in [
        "summaries/b",
        "summaries/a",
        "manifests/a/n1",
        "manifests/ab/n1",
        "data/cd/pack2",
    ] {
        store.put(key, Bytes::from_static(b"12345")).await.unwrap();
    }
    let keys = |v: Vec<strata_store::ObjectMeta>| v.into_iter().map(|m| m.key).collect::<Vec<_>>();
    assert_eq!(
        keys(store.list("summaries/").await.unwrap()),
        ["summaries/a", "summaries/b"],
        "{name}"
    );
    assert_eq!(
        keys(store.list("manifests/a/").await.unwrap()),
        ["manifests/a/n1"],
        "{name}"
    );
    assert_eq!(
        keys(store.list("data/").await.unwrap()),
        ["data/ab/pack1", "data/cd/pack2"],
        "{name}"
    );
    let listed = store.list("data/ab/").await.unwrap();
    assert_eq!(listed[0].size, body.len() as u64);
    // Garbage collection's grace period reads the modification time of listed objects.
    let modified = listed[0]
        .modified
        .expect("listings carry a modification time");
    let age = std::time::SystemTime::now()
        .duration_since(modified)
        .unwrap_or_default();
    assert!(
        age < std::time::Duration::from_secs(3600),
        "{name}: {modified:?}"
    );
    assert!(store.list("nothing/").await.unwrap().is_empty());
    list_after(&store).await;
    // a large object (uploaded in parts by object stores)
    let big: Bytes = (0..40u32 << 20)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    store.put("data/ef/big", big.clone()).await.unwrap();
    assert_eq!(
        store.get("data/ef/big").await.unwrap(),
        big,
        "{name}: multipart round trip"
    );
    assert_eq!(
        store
            .get_range("data/ef/big", (33 << 20)..(33 << 20) + 7)
            .await
            .unwrap(),
        big.slice((33 << 20)..(33 << 20) + 7)
    );
    // conditional put
    store
        .put_if_absent("locks/cluster", Bytes::from_static(b"first"))
        .await
        .unwrap();
    let err = store
        .put_if_absent("locks/cluster", Bytes::from_static(b"second"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyExists { .. }),
        "{name}: {err}"
    );
    assert_eq!(&store.get("locks/cluster").await.unwrap()[..], b"first");
    // delete, idempotent
    store.delete("summaries/a").await.unwrap();
    store.delete("summaries/a").await.unwrap();
    assert_eq!(
        keys(store.list("summaries/").await.unwrap()),
        ["summaries/b"]
    );
    // keys cannot escape
    assert!(matches!(
        store.put("../x", Bytes::new()).await,
        Err(StoreError::InvalidKey(_))
    ));
}

/// The tail of a listing after a key, or after any string (a key that does not exist, a
/// prefix, a string that is no object path): exactly what `list` has after it, across the
/// storage's pages of a thousand keys.
async fn list_after(store: &DynStore) {
    use futures::StreamExt;
    let name = store.describe();
    let keys = |v: Vec<strata_store::ObjectMeta>| v.into_iter().map(|m| m.key).collect::<Vec<_>>();
    let all: Vec<String> = (0..1100).map(|i| format!("tail/k{i:04}")).collect();
    futures::stream::iter(all.clone())
        .for_each_concurrent(32, |key| async move {
            store.put(&key, Bytes::from_static(b"x")).await.unwrap();
        })
        .await;
    store.put("tail0", Bytes::from_static(b"x")).await.unwrap();
    store
        .put("tail/sub/k", Bytes::from_static(b"x"))
        .await
        .unwrap();
    let mut every = all.clone();
    every.push("tail/sub/k".into());
    for after in [
        "tail/k0499",
        "tail/k0499x",
        "tail/k05",
        "tail/",
        "tail",
        "",
        "a",
        "tail/k1099",
    ] {
        let tail = store.list_after("tail/", after).await.unwrap();
        let expected: Vec<&String> = every.iter().filter(|k| k.as_str() > after).collect();
        assert_eq!(
            keys(tail.clone()).iter().collect::<Vec<_>>(),
            expected,
            "{name}: after {after:?}"
        );
        assert!(
            tail.iter().all(|o| o.modified.is_some() && o.size == 1),
            "{name}"
        );
    }
    assert_eq!(
        keys(store.list_after("tail/", "tail/sub/").await.unwrap()),
        ["tail/sub/k"],
        "{name}"
    );
    assert!(store
        .list_after("tail/", "tail/z")
        .await
        .unwrap()
        .is_empty());
    assert!(store.list_after("nothing/", "").await.unwrap().is_empty());
    assert_eq!(
        keys(store.list_after("summaries/", "summaries/a").await.unwrap()),
        ["summaries/b"],
        "{name}"
    );
    futures::stream::iter(every)
        .for_each_concurrent(32, |key| async move { store.delete(&key).await.unwrap() })
        .await;
    store.delete("tail0").await.unwrap();
}

#[tokio::test]
async fn local_directory() {
    let dir = tempfile::tempdir().unwrap();
    conformance(Arc::new(LocalStore::new(dir.path().join("repo")))).await;
}

#[tokio::test]
async fn s3_server() {
    let server = servers::s3();
    conformance(Arc::new(
        CloudStore::open(&server.url, &server.options).unwrap(),
    ))
    .await;
}

#[tokio::test]
async fn azure_blob_emulator() {
    let server = servers::azure();
    conformance(Arc::new(
        CloudStore::open(&server.url, &server.options).unwrap(),
    ))
    .await;
}

#[tokio::test]
async fn gcs_emulator() {
    let server = servers::gcs();
    conformance(open_cloud(&server.url, &server.options).unwrap()).await;
}

#[test]
fn descriptions_never_hold_credentials() {
    let options = std::collections::BTreeMap::from([
        ("aws_access_key_id".to_string(), "AKIDEXAMPLE".to_string()),
        (
            "aws_secret_access_key".to_string(),
            "very-secret".to_string(),
        ),
        ("aws_region".to_string(), "us-east-1".to_string()),
    ]);
    let store = CloudStore::open("s3://bucket/some/prefix", &options).unwrap();
    assert_eq!(store.describe(), "s3://bucket/some/prefix");
    let shown = format!("{store:?}");
    assert!(!shown.contains("very-secret"), "{shown}");
}

/// Every request to a bucket (or container) that does not exist says so, and is neither
/// "not found" (which reads as "no repository here") nor retried; a missing object of a
/// bucket that exists stays "not found".
async fn missing_bucket(present: DynStore, absent: DynStore, kind: &str, writes: bool) {
    assert!(present
        .get("no-such-object")
        .await
        .unwrap_err()
        .is_not_found());
    let name = absent.describe();
    let mut attempts = vec![
        absent.get("config").await.unwrap_err(),
        absent.get_range("config", 0..4).await.unwrap_err(),
        absent.list("keys/").await.unwrap_err(),
    ];
    if writes {
        attempts.push(
            absent
                .put("keys/0123", Bytes::from_static(b"k"))
                .await
                .unwrap_err(),
        );
        attempts.push(
            absent
                .put_if_absent("config", Bytes::from_static(b"c"))
                .await
                .unwrap_err(),
        );
    }
    for err in attempts {
        assert!(
            matches!(err, StoreError::NoBucket { .. }),
            "{name}: {err:?}"
        );
        assert!(!err.is_not_found() && !err.is_transient(), "{name}: {err}");
        let message = err.to_string();
        assert!(
            message.contains(&format!("the {kind} of {name} does not exist")),
            "{message}"
        );
    }
}

#[tokio::test]
async fn a_missing_s3_bucket_says_so() {
    let server = servers::s3();
    let present = Arc::new(CloudStore::open(&server.url, &server.options).unwrap());
    let absent = Arc::new(CloudStore::open("s3://no-such-bucket/repo", &server.options).unwrap());
    // s3s-fs makes the bucket's directory on a write instead of refusing it (S3 does
    // refuse: NoSuchBucket, the same code reads get here), so only reads are checked.
    missing_bucket(present, absent, "bucket", false).await;
}

#[tokio::test]
async fn a_missing_azure_container_says_so() {
    let server = servers::azure();
    let present = Arc::new(CloudStore::open(&server.url, &server.options).unwrap());
    let absent =
        Arc::new(CloudStore::open("az://no-such-container/repo", &server.options).unwrap());
    missing_bucket(present, absent, "container", true).await;
}

#[tokio::test]
async fn a_missing_gcs_bucket_says_so() {
    let server = servers::gcs();
    let present = open_cloud(&server.url, &server.options).unwrap();
    let absent = open_cloud("gs://no-such-bucket/repo", &server.options).unwrap();
    missing_bucket(present, absent, "bucket", true).await;
}

#[test]
fn a_plain_http_endpoint_names_the_option_that_allows_it() {
    let mut options = std::collections::BTreeMap::from([
        ("aws_endpoint".to_string(), "http://127.0.0.1:9".to_string()),
        ("aws_region".to_string(), "us-east-1".to_string()),
    ]);
    let err = CloudStore::open("s3://bucket/repo", &options).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("aws_allow_http") && message.contains("AWS_ALLOW_HTTP"),
        "{message}"
    );
    assert!(!err.is_transient());
    options.insert("aws_allow_http".into(), "true".into());
    assert!(CloudStore::open("s3://bucket/repo", &options).is_ok());

    let azure = std::collections::BTreeMap::from([
        ("azure_storage_account_name".to_string(), "acct".to_string()),
        (
            "azure_storage_endpoint".to_string(),
            "http://127.0.0.1:9/acct".to_string(),
        ),
    ]);
    let message = CloudStore::open("az://container/repo", &azure)
        .unwrap_err()
        .to_string();
    assert!(message.contains("azure_allow_http"), "{message}");
}
