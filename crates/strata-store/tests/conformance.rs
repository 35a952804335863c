//! One conformance suite for every backend: the local directory and real S3, Azure Blob
//! and GCS servers. Each backend must behave the same for everything strata relies on,
//! and so must the stack of wrappers the product puts around a backend (see [`Stack`]).

mod servers;

use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_store::{
    open_cloud, CachingStore, CloudStore, CountingStore, DynStore, Fence, FencedStore, LocalStore,
    RetryConfig, RetryStore, Store, StoreError,
};

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
    // head: one object's size and time, not a neighbour's whose key it prefixes, and
    // not a "directory".
    let head = store.head("data/ab/pack1").await.unwrap();
    assert_eq!(
        (head.key.as_str(), head.size),
        ("data/ab/pack1", body.len() as u64),
        "{name}"
    );
    // The same time as the listing's, to the second (S3's HEAD sends whole seconds).
    let (a, b) = (head.modified.unwrap(), listed[0].modified.unwrap());
    let apart = a
        .duration_since(b)
        .or_else(|_| b.duration_since(a))
        .unwrap();
    assert!(
        apart < std::time::Duration::from_secs(1),
        "{name}: {a:?} {b:?}"
    );
    assert_eq!(store.head("summaries/a").await.unwrap().size, 5, "{name}");
    for absent in ["manifests/a/n", "summaries/c", "nothing"] {
        let err = store.head(absent).await.unwrap_err();
        assert!(err.is_not_found(), "{name}: head {absent}: {err}");
    }
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
    let store: DynStore = Arc::new(LocalStore::new(dir.path().join("repo")));
    conformance(store.clone()).await;
    // A directory is no object, as a listing does not show one.
    for directory in ["summaries", "data/ab"] {
        let err = store.head(directory).await.unwrap_err();
        assert!(err.is_not_found(), "head {directory}: {err}");
    }
}

/// A repository's key rules, written out: this crate sits below the one that owns the
/// layout (`strata_repo::layout`), which hands the same rules to the stack it builds.
mod layout {
    const CACHEABLE: [&str; 7] = [
        "summaries/",
        "manifests/",
        "index/",
        "keys/",
        "verified/",
        "pins/",
        "listing/",
    ];
    const VISIBLE: [&str; 6] = [
        "index/",
        "manifests/",
        "summaries/",
        "archive/",
        "listing/",
        "gc/condemned/",
    ];
    const LISTING_GENERATION: &str = "listing/generation";

    pub fn cache_rule() -> strata_store::CacheRule {
        strata_store::CacheRule {
            cacheable: |key| {
                key == "config"
                    || (key != LISTING_GENERATION && CACHEABLE.iter().any(|p| key.starts_with(p)))
            },
            generation_key: "config",
            remembered_listing: "keys/",
        }
    }

    pub fn makes_visible(key: &str) -> bool {
        key != LISTING_GENERATION && VISIBLE.iter().any(|p| key.starts_with(p))
    }

    pub fn delete_needs_lock(key: &str) -> bool {
        !key.starts_with("locks/") && !key.starts_with("writers/")
    }
}

/// The wrappers around a backend as the product stacks them for an object storage
/// (`strata_coordinator::Storage`): the fence right over the backend, request counting
/// over it, the local cache over that, retries outermost.
struct Stack {
    store: DynStore,
    requests: CountingStore,
    backend: DynStore,
    _cache: tempfile::TempDir,
}

impl Stack {
    fn over(backend: DynStore) -> Stack {
        let cache = tempfile::tempdir().unwrap();
        let fenced: DynStore = Arc::new(
            FencedStore::new(backend.clone(), layout::makes_visible)
                .fencing_deletes(layout::delete_needs_lock),
        );
        let requests = CountingStore::new(fenced);
        let cached: DynStore = Arc::new(CachingStore::new(
            Arc::new(requests.clone()),
            layout::cache_rule(),
            cache.path().join("location"),
            64 << 20,
        ));
        let store: DynStore = Arc::new(RetryStore::new(cached, RetryConfig::default()));
        Stack {
            store,
            requests,
            backend,
            _cache: cache,
        }
    }

    /// Every conformance check through the stack, then what only a stack has: the fence
    /// reached from the outside, listings counted, the remembered listing.
    async fn conformance(self) {
        conformance(self.store.clone()).await;
        self.listings().await;
        self.fence().await;
    }

    /// Every listing is one counted LIST (a fresh one and the tail after a key too); the
    /// cache remembers the listing of `keys/`, `list_fresh` asks the store past it, and
    /// `list_after` answers what `list` would.
    async fn listings(&self) {
        let (store, name) = (&self.store, self.store.describe());
        let keys =
            |v: Vec<strata_store::ObjectMeta>| v.into_iter().map(|m| m.key).collect::<Vec<_>>();
        let lists = || self.requests.counts().list;
        store.put("keys/a", Bytes::from_static(b"k")).await.unwrap();
        let before = (lists(), self.requests.keys_listed());
        assert_eq!(
            keys(store.list("keys/").await.unwrap()),
            ["keys/a"],
            "{name}"
        );
        assert_eq!(
            keys(store.list("keys/").await.unwrap()),
            ["keys/a"],
            "{name}"
        );
        assert_eq!(
            lists(),
            before.0 + 1,
            "{name}: the second listing is remembered"
        );
        assert_eq!(self.requests.keys_listed(), before.1 + 1, "{name}");
        // Another host adds a key: the remembered listing lacks it until asked afresh.
        self.backend
            .put("keys/b", Bytes::from_static(b"k"))
            .await
            .unwrap();
        assert!(
            store
                .list_after("keys/", "keys/a")
                .await
                .unwrap()
                .is_empty(),
            "{name}"
        );
        assert_eq!(
            lists(),
            before.0 + 1,
            "{name}: served from the remembered listing"
        );
        let fresh = store.list_fresh("keys/").await.unwrap();
        assert!(fresh.iter().all(|o| o.modified.is_some()), "{name}");
        assert_eq!(keys(fresh), ["keys/a", "keys/b"], "{name}");
        assert_eq!(lists(), before.0 + 2, "{name}: a fresh listing is a LIST");
        assert_eq!(
            keys(store.list_after("keys/", "keys/a").await.unwrap()),
            ["keys/b"],
            "{name}"
        );
        assert_eq!(
            keys(store.list("keys/").await.unwrap()),
            ["keys/a", "keys/b"]
        );
        assert_eq!(lists(), before.0 + 2, "{name}: remembered again");
        // Elsewhere the tail comes from the store, one LIST with the keys it returned.
        let listed = self.requests.keys_listed();
        assert_eq!(
            keys(store.list_after("summaries/", "").await.unwrap()),
            ["summaries/b"],
            "{name}"
        );
        assert_eq!(lists(), before.0 + 3, "{name}");
        assert_eq!(self.requests.keys_listed(), listed + 1, "{name}");
        for key in ["keys/a", "keys/b"] {
            store.delete(key).await.unwrap();
        }
    }

    /// The fence of the backend's location is reached through every wrapper, and a lock
    /// past its deadline stops visible writes and fenced deletes, at once (not retried).
    async fn fence(&self) {
        let (store, name) = (&self.store, self.store.describe());
        let fence = store
            .fence()
            .expect("the fence is reached through the stack");
        assert!(
            fence.same_as(&Fence::of_location(&self.backend.describe())),
            "{name}"
        );
        let puts = self.requests.counts().put;
        let guard = fence.guard("backup b", Instant::now() - Duration::from_millis(1));
        let err = store
            .put("summaries/late", Bytes::from_static(b"s"))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Fenced { .. }), "{name}: {err}");
        let err = store.delete("summaries/b").await.unwrap_err();
        assert!(matches!(err, StoreError::Fenced { .. }), "{name}: {err}");
        // Packs and locks are not fenced.
        store
            .put("data/ab/late", Bytes::from_static(b"p"))
            .await
            .unwrap();
        store.delete("locks/cluster").await.unwrap();
        assert_eq!(self.requests.counts().put, puts + 2, "{name}: no retry");
        drop(guard);
        assert!(store
            .get("summaries/late")
            .await
            .unwrap_err()
            .is_not_found());
        assert_eq!(&store.get("summaries/b").await.unwrap()[..], b"12345");
        store.delete("summaries/b").await.unwrap();
    }
}

#[tokio::test]
async fn local_directory_through_the_wrappers() {
    let dir = tempfile::tempdir().unwrap();
    Stack::over(Arc::new(LocalStore::new(dir.path().join("repo"))))
        .conformance()
        .await;
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
async fn s3_server_through_the_wrappers() {
    let server = servers::s3();
    Stack::over(Arc::new(
        CloudStore::open(&server.url, &server.options).unwrap(),
    ))
    .conformance()
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
async fn azure_blob_emulator_through_the_wrappers() {
    let server = servers::azure();
    Stack::over(Arc::new(
        CloudStore::open(&server.url, &server.options).unwrap(),
    ))
    .conformance()
    .await;
}

#[tokio::test]
async fn gcs_emulator() {
    let server = servers::gcs();
    conformance(open_cloud(&server.url, &server.options).unwrap()).await;
}

#[tokio::test]
async fn gcs_emulator_through_the_wrappers() {
    let server = servers::gcs();
    Stack::over(open_cloud(&server.url, &server.options).unwrap())
        .conformance()
        .await;
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
/// bucket that exists stays "not found". The same through the wrappers' stack.
async fn missing_bucket(present: DynStore, absent: DynStore, kind: &str, writes: bool) {
    missing_bucket_in(present.clone(), absent.clone(), kind, writes).await;
    let (present, absent) = (Stack::over(present), Stack::over(absent));
    missing_bucket_in(present.store.clone(), absent.store.clone(), kind, writes).await;
}

async fn missing_bucket_in(present: DynStore, absent: DynStore, kind: &str, writes: bool) {
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
