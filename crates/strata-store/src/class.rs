//! A store whose writes go to one storage class: table archives on a storage configured
//! with `archive_class` (S3's `STANDARD_IA` or `GLACIER_IR`, Azure's `Cool` or `Cold`,
//! GCS's `NEARLINE` or `COLDLINE`). Reads, listings and deletes pass through.

use crate::{DynStore, ObjectMeta, Store, StoreResult};
use async_trait::async_trait;
use bytes::Bytes;
use std::ops::Range;

/// Every put of `inner` in storage class `class`.
#[derive(Debug)]
pub struct InClass {
    inner: DynStore,
    class: String,
}

impl InClass {
    /// Wraps `inner` so its puts go to `class`.
    pub fn new(inner: DynStore, class: impl Into<String>) -> InClass {
        InClass {
            inner,
            class: class.into(),
        }
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Store for InClass {
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.inner.put_in_class(key, data, &self.class).await
    }

    async fn put_in_class(&self, key: &str, data: Bytes, class: &str) -> StoreResult<()> {
        self.inner.put_in_class(key, data, class).await
    }

    /// Conditional puts (markers, leases) stay in the default class: they are read back.
    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.inner.put_if_absent(key, data).await
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        self.inner.get(key).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        self.inner.get_range(key, range).await
    }

    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        self.inner.list(prefix).await
    }

    async fn list_fresh(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        self.inner.list_fresh(prefix).await
    }

    async fn list_after(&self, prefix: &str, after: &str) -> StoreResult<Vec<ObjectMeta>> {
        self.inner.list_after(prefix, after).await
    }

    async fn head(&self, key: &str) -> StoreResult<ObjectMeta> {
        self.inner.head(key).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.inner.delete(key).await
    }

    fn fence(&self) -> Option<crate::Fence> {
        self.inner.fence()
    }

    fn writes_end_with_their_writer(&self) -> bool {
        self.inner.writes_end_with_their_writer()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Records the class of each put.
    #[derive(Debug, Default)]
    struct Recording(Mutex<Vec<(String, Option<String>)>>);

    #[async_trait]
    impl Store for Recording {
        async fn put(&self, key: &str, _: Bytes) -> StoreResult<()> {
            self.0.lock().unwrap().push((key.into(), None));
            Ok(())
        }
        async fn put_in_class(&self, key: &str, _: Bytes, class: &str) -> StoreResult<()> {
            self.0
                .lock()
                .unwrap()
                .push((key.into(), Some(class.into())));
            Ok(())
        }
        async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<()> {
            self.put(key, data).await
        }
        async fn get(&self, _: &str) -> StoreResult<Bytes> {
            Ok(Bytes::new())
        }
        async fn get_range(&self, _: &str, _: Range<u64>) -> StoreResult<Bytes> {
            Ok(Bytes::new())
        }
        async fn list(&self, _: &str) -> StoreResult<Vec<ObjectMeta>> {
            Ok(Vec::new())
        }
        async fn delete(&self, _: &str) -> StoreResult<()> {
            Ok(())
        }
        fn describe(&self) -> String {
            "recording".into()
        }
    }

    #[tokio::test]
    async fn puts_go_to_the_class_through_every_wrapper() {
        let recording = Arc::new(Recording::default());
        let retried = crate::RetryStore::new(recording.clone(), Default::default());
        let counted = crate::CountingStore::new(Arc::new(retried));
        let store = InClass::new(Arc::new(counted), "COLDLINE");
        store.put("a", Bytes::from_static(b"x")).await.unwrap();
        store
            .put_if_absent("b", Bytes::from_static(b"x"))
            .await
            .unwrap();
        assert_eq!(
            *recording.0.lock().unwrap(),
            [
                ("a".to_string(), Some("COLDLINE".to_string())),
                ("b".to_string(), None)
            ]
        );
    }
}
