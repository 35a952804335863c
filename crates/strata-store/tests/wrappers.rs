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
    assert!(err.to_string().contains("gave up after 3 attempts"));
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
