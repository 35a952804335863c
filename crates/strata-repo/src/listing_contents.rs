//! What a listing object holds once decoded, and the cache of them a [`crate::Repository`]
//! keeps. Apart from the `listing` module, which writes and reads them, so that the
//! repository can hold the cache without naming the listing that implements its methods.

use crate::summary::BackupSummary;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The content of a listing object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contents {
    /// Oldest first.
    pub entries: Vec<BackupSummary>,
    /// Backups whose summary did not decode when a compaction wrote the page.
    pub damaged: Vec<String>,
}

/// Pages already read and checked, by key, at most [`DecodedCache::MAX`] of them (about
/// as many thousand backups): a page's key never holds other content (its random id), so
/// a copy stays right for as long as the key exists. Entries are not kept: a repair
/// rewrites one under the same key.
#[derive(Default)]
pub(crate) struct DecodedCache {
    objects: Mutex<HashMap<String, Arc<Contents>>>,
}

impl DecodedCache {
    const MAX: usize = 64;

    pub(crate) fn get(&self, key: &str) -> Option<Arc<Contents>> {
        self.objects.lock().expect("cache lock").get(key).cloned()
    }

    pub(crate) fn put(&self, key: String, contents: Arc<Contents>) {
        let mut objects = self.objects.lock().expect("cache lock");
        if objects.len() >= Self::MAX {
            objects.clear();
        }
        objects.insert(key, contents);
    }
}
