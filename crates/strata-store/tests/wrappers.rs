//! The wrappers compose around a real (local) store: faults in, retries out.

use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use strata_store::*;

fn quick_retry(max_attempts: u32) -> RetryConfig {
    RetryConfig {
        max_attempts,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        budget: Duration::from_secs(60),
        attempt_timeout: Duration::from_secs(5),
    }
}

fn local() -> (tempfile::TempDir, DynStore) {
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(LocalStore::new(dir.path().join("repo")));
    (dir, store)
}

#[tokio::test]
async fn retries_hide_transient_faults_and_short_reads() {
    let (_dir, base) = local();
    let faulty = Arc::new(FaultyStore::new(
        base.clone(),
        FaultConfig {
            fail_ratio: 0.3,
            truncate_ratio: 0.3,
            seed: 42,
            ..FaultConfig::default()
        },
    ));
    let counted = CountingStore::new(faulty.clone());
    let store = RetryStore::new(Arc::new(counted.clone()), quick_retry(20));
    for i in 0..50u32 {
        let key = format!("data/{i:03}");
        let body = Bytes::from(i.to_le_bytes().repeat(100));
        store.put(&key, body.clone()).await.unwrap();
        assert_eq!(store.get(&key).await.unwrap(), body);
        assert_eq!(
            &store.get_range(&key, 8..12).await.unwrap()[..],
            &body[8..12]
        );
    }
    assert_eq!(store.list("data/").await.unwrap().len(), 50);
    assert!(
        faulty.injected() > 20,
        "only {} faults injected",
        faulty.injected()
    );
    // Every retry is a real request and is counted.
    let counts = counted.counts();
    assert!(counts.put > 50 && counts.get > 100, "{counts:?}");
    assert!(counts.bytes_sent >= 50 * 400);
}

#[tokio::test]
async fn permanent_failures_are_not_retried_and_retries_give_up() {
    let (_dir, base) = local();
    let broken = Arc::new(FaultyStore::new(
        base.clone(),
        FaultConfig {
            fail_after_bytes: Some(10),
            ..FaultConfig::default()
        },
    ));
    let counted = CountingStore::new(broken);
    let store = RetryStore::new(Arc::new(counted.clone()), quick_retry(5));
    let err = store
        .put("big", Bytes::from(vec![0u8; 100]))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Backend { .. }), "{err}");
    assert_eq!(
        counted.counts().put,
        1,
        "a permanent error must not be retried"
    );
    assert!(store.get("missing").await.unwrap_err().is_not_found());

    let always = RetryStore::new(
        Arc::new(FaultyStore::new(
            base,
            FaultConfig {
                fail_ratio: 1.0,
                ..FaultConfig::default()
            },
        )),
        quick_retry(3),
    );
    let err = always.get("x").await.unwrap_err();
    assert!(
        matches!(err, StoreError::GaveUp { attempts: 3, .. }),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("did not answer") && message.contains("failed 3 times"),
        "{message}"
    );
}

#[tokio::test]
async fn conditional_puts_survive_lost_answers() {
    let (_dir, base) = local();
    // Transient faults on every other request: a put_if_absent may store the object and
    // lose the answer; the retry must recognise its own object.
    let store = RetryStore::new(
        Arc::new(FaultyStore::new(
            base.clone(),
            FaultConfig {
                fail_ratio: 0.5,
                seed: 3,
                ..FaultConfig::default()
            },
        )),
        quick_retry(30),
    );
    for i in 0..20 {
        store
            .put_if_absent(&format!("lock/{i}"), Bytes::from_static(b"mine"))
            .await
            .unwrap();
    }
    base.put("lock/taken", Bytes::from_static(b"theirs"))
        .await
        .unwrap();
    let err = store
        .put_if_absent("lock/taken", Bytes::from_static(b"mine"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::AlreadyExists { .. } | StoreError::GaveUp { .. }
        ),
        "{err}"
    );
    assert_eq!(&base.get("lock/taken").await.unwrap()[..], b"theirs");
}

#[tokio::test]
async fn the_cache_serves_immutable_objects_and_stays_within_budget() {
    let (dir, base) = local();
    let counted = CountingStore::new(base.clone());
    let cache_dir = dir.path().join("cache");
    // A rule shaped like a repository's: summaries are immutable, packs are not cached.
    let rule = CacheRule {
        cacheable: |key| key == "config" || key.starts_with("summaries/"),
        generation_key: "config",
        remembered_listing: "keys/",
    };
    let cache = CachingStore::new(Arc::new(counted.clone()), rule, &cache_dir, 64 * 1024);
    for i in 0..40 {
        cache
            .put(
                &format!("summaries/{i:02}"),
                Bytes::from(vec![i as u8; 4096]),
            )
            .await
            .unwrap();
    }
    cache
        .put("data/00/pack", Bytes::from(vec![7u8; 100_000]))
        .await
        .unwrap();
    let before = counted.counts();
    // Recent summaries come from the cache; packs always from the store.
    assert_eq!(
        cache.get("summaries/39").await.unwrap(),
        Bytes::from(vec![39u8; 4096])
    );
    assert_eq!(counted.counts().get, before.get);
    assert_eq!(
        cache.get_range("data/00/pack", 0..10).await.unwrap().len(),
        10
    );
    assert_eq!(counted.counts().get, before.get + 1);
    // Evicted objects are fetched again, correctly.
    assert_eq!(
        cache.get("summaries/00").await.unwrap(),
        Bytes::from(vec![0u8; 4096])
    );
    let cached: u64 = walk_size(&cache_dir.join("objects"));
    assert!(cached <= 64 * 1024 + 4096, "cache holds {cached} bytes");
    // Deletes go through and drop the cached copy.
    cache.delete("summaries/39").await.unwrap();
    assert!(cache.get("summaries/39").await.unwrap_err().is_not_found());
}

fn walk_size(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            walk_size(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

/// The store knows no prefix of its own: what it caches is its caller's rule, so keys a
/// repository would cache are read from the store every time under another rule.
#[tokio::test]
async fn the_cache_keeps_only_what_its_rule_names() {
    let (dir, base) = local();
    let counted = CountingStore::new(base.clone());
    let rule = CacheRule {
        cacheable: |key| key.starts_with("frozen/"),
        generation_key: "generation",
        remembered_listing: "frozen/",
    };
    let cache = CachingStore::new(
        Arc::new(counted.clone()),
        rule,
        dir.path().join("cache"),
        1 << 20,
    );
    for key in ["frozen/a", "summaries/a", "config"] {
        cache.put(key, Bytes::from_static(b"1")).await.unwrap();
    }
    let before = counted.counts().get;
    for _ in 0..2 {
        for key in ["frozen/a", "summaries/a", "config"] {
            assert_eq!(&cache.get(key).await.unwrap()[..], b"1");
        }
    }
    // Only the two keys the rule does not name went to the store, twice each.
    assert_eq!(counted.counts().get, before + 4);
    assert!(!dir.path().join("cache/objects/summaries/a").exists());
    assert!(!dir.path().join("cache/objects/config").exists());
    assert!(dir.path().join("cache/objects/frozen/a").exists());
}

/// A store that is away for 30 s (a restart, a failover): every request fails
/// transiently meanwhile.
fn away_for(base: DynStore, secs: u64) -> Arc<FaultyStore> {
    Arc::new(FaultyStore::new(
        base,
        FaultConfig {
            unreachable_for: Some(Duration::from_secs(secs)),
            ..FaultConfig::default()
        },
    ))
}

#[tokio::test(start_paused = true)]
async fn the_default_retry_budget_rides_out_a_store_away_for_30_seconds() {
    let (_dir, base) = local();
    base.put("config", Bytes::from_static(b"c")).await.unwrap();
    let away = away_for(base, 30);
    let store = RetryStore::new(away.clone(), RetryConfig::default());
    assert_eq!(&store.get("config").await.unwrap()[..], b"c");
    store.put("data/x", Bytes::from_static(b"x")).await.unwrap();
    assert!(away.injected() > 3, "{} faults", away.injected());
}

#[tokio::test(start_paused = true)]
async fn a_store_away_longer_than_the_budget_fails_naming_the_storage() {
    let (_dir, base) = local();
    let name = base.describe();
    let store = RetryStore::new(
        away_for(base, 3600),
        RetryConfig {
            budget: Duration::from_secs(20),
            ..RetryConfig::default()
        },
    );
    let started = tokio::time::Instant::now();
    let err = store.list("data/").await.unwrap_err();
    // Paused time: the budget is the waits between attempts, measured on tokio's clock.
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(20) && waited < Duration::from_secs(21),
        "{waited:?}"
    );
    let StoreError::GaveUp {
        op,
        store: on,
        attempts,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!((*op, on.as_str()), ("list", name.as_str()));
    assert!(*attempts > 3, "{attempts}");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "the storage {name} did not answer: list data/ failed"
        )) && message.contains("20.0 s of retries"),
        "{message}"
    );
}

#[tokio::test]
async fn permission_denied_is_permanent_and_named() {
    let (_dir, base) = local();
    let refusing = Arc::new(FaultyStore::new(
        base,
        FaultConfig {
            refuse_deletes: true,
            ..FaultConfig::default()
        },
    ));
    let counted = CountingStore::new(refusing);
    let store = RetryStore::new(Arc::new(counted.clone()), RetryConfig::default());
    let err = store.delete("data/ab/abcd").await.unwrap_err();
    assert!(
        matches!(err, StoreError::PermissionDenied { op: "delete", .. }),
        "{err:?}"
    );
    assert!(!err.is_transient());
    assert_eq!(counted.counts().delete, 1, "a refusal must not be retried");
    let message = err.to_string();
    assert!(
        message.starts_with("permission denied: the credentials may not delete under ")
            && message.contains("/data/ (delete data/ab/abcd)"),
        "{message}"
    );
}

/// A listing after a key goes through every wrapper as a listing: retried through faults,
/// counted as one LIST with the keys it returned, fenced by nothing, and served by the
/// cache as its `list` would be (the remembered listing, filtered, for the remembered
/// prefix; the store's otherwise).
#[tokio::test]
async fn listings_after_a_key_pass_every_wrapper() {
    let (dir, base) = local();
    for key in [
        "keys/a",
        "keys/b",
        "summaries/a",
        "summaries/b",
        "summaries/c",
    ] {
        base.put(key, Bytes::from_static(b"1")).await.unwrap();
    }
    let faulty = Arc::new(FaultyStore::new(
        base.clone(),
        FaultConfig {
            fail_ratio: 0.5,
            seed: 7,
            ..FaultConfig::default()
        },
    ));
    let counted = CountingStore::new(faulty.clone());
    let fenced: DynStore = Arc::new(FencedStore::new(Arc::new(counted.clone()), |_| true));
    let rule = CacheRule {
        cacheable: |key| key.starts_with("keys/"),
        generation_key: "config",
        remembered_listing: "keys/",
    };
    let cache: DynStore = Arc::new(CachingStore::new(
        fenced,
        rule,
        dir.path().join("cache"),
        1 << 20,
    ));
    let store = RetryStore::new(cache, quick_retry(30));
    let keys = |v: Vec<ObjectMeta>| v.into_iter().map(|m| m.key).collect::<Vec<_>>();
    let before = (counted.counts(), counted.keys_listed());
    for _ in 0..10 {
        assert_eq!(
            keys(store.list_after("summaries/", "summaries/a").await.unwrap()),
            ["summaries/b", "summaries/c"]
        );
    }
    assert!(faulty.injected() > 0, "faults were injected and retried");
    let lists = counted.counts().since(&before.0).list;
    // Every attempt is counted, and only the successful ones returned keys.
    assert!(lists >= 10, "{lists}");
    assert_eq!(counted.keys_listed() - before.1, 20);

    // The remembered prefix: `list` remembers it, `list_after` filters what is remembered
    // (no request), as `list` would answer it.
    assert_eq!(store.list("keys/").await.unwrap().len(), 2);
    base.put("keys/c", Bytes::from_static(b"1")).await.unwrap();
    let lists = counted.counts().list;
    assert_eq!(
        keys(store.list_after("keys/", "keys/a").await.unwrap()),
        ["keys/b"]
    );
    assert_eq!(
        counted.counts().list,
        lists,
        "served from the remembered listing"
    );
    assert_eq!(
        keys(store.list_fresh("keys/").await.unwrap()),
        ["keys/a", "keys/b", "keys/c"]
    );
    assert_eq!(
        keys(store.list_after("keys/", "keys/a").await.unwrap()),
        ["keys/b", "keys/c"]
    );
}
