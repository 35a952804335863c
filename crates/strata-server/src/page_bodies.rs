//! Serialised API pages of backups, kept while the listings they were read from stay.
//!
//! Under load most requests ask for the same few pages (the first page, the dashboard's),
//! and between two reconciles of a storage's listing their answer cannot change. Making
//! one (50 summaries copied, rows built, JSON written) costs more than everything else a
//! request does, so the body is made once per [`ListingStamp`] and query, then served as
//! bytes. A new stamp drops every body of the old one.

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use strata_coordinator::listing_cache::ListingStamp;

/// Bodies kept at most (per stamp): a client walking deep into the history with cursors
/// cannot make the cache grow without bound.
const MAX_KEPT: usize = 256;

/// What a page request asked, as far as its answer depends on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageKey {
    pub limit: Option<u32>,
    pub offset: Option<u32>,
    pub cursor: Option<String>,
}

/// One answer, ready to send.
pub struct PageBody {
    pub headers: HeaderMap,
    pub json: Bytes,
}

impl PageBody {
    pub fn response(&self) -> Response {
        let mut headers = self.headers.clone();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        (headers, self.json.clone()).into_response()
    }
}

/// The bodies made under one stamp, by query.
type Bodies = HashMap<PageKey, Arc<PageBody>>;

/// The kept bodies of the current stamp (a [`ListingStamp`] outside the tests).
pub struct PageBodies<S = ListingStamp> {
    kept: Mutex<Option<(S, Bodies)>>,
}

impl<S> Default for PageBodies<S> {
    fn default() -> Self {
        PageBodies {
            kept: Mutex::new(None),
        }
    }
}

impl<S: Eq> PageBodies<S> {
    /// The body kept for `key` under `stamp`, if any.
    pub fn get(&self, stamp: &S, key: &PageKey) -> Option<Arc<PageBody>> {
        let kept = self.kept.lock().expect("page bodies lock");
        let (kept_stamp, bodies) = kept.as_ref()?;
        (kept_stamp == stamp).then(|| bodies.get(key).cloned())?
    }

    /// Keeps `body` for `key` under `stamp`, dropping the bodies of any other stamp.
    pub fn put(&self, stamp: S, key: PageKey, body: Arc<PageBody>) {
        let mut kept = self.kept.lock().expect("page bodies lock");
        match kept.as_mut() {
            Some((kept_stamp, bodies)) if *kept_stamp == stamp => {
                if bodies.len() >= MAX_KEPT {
                    bodies.clear();
                }
                bodies.insert(key, body);
            }
            _ => *kept = Some((stamp, HashMap::from([(key, body)]))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(cursor: Option<&str>) -> PageKey {
        PageKey {
            limit: Some(50),
            offset: None,
            cursor: cursor.map(str::to_string),
        }
    }

    fn body(text: &'static str) -> Arc<PageBody> {
        Arc::new(PageBody {
            headers: HeaderMap::new(),
            json: Bytes::from_static(text.as_bytes()),
        })
    }

    #[test]
    fn a_body_is_served_only_under_the_stamp_it_was_made_for() {
        let bodies = PageBodies::<u64>::default();
        assert!(bodies.get(&1, &key(None)).is_none());
        bodies.put(1, key(None), body("[1]"));
        bodies.put(1, key(Some("c")), body("[2]"));
        assert_eq!(&bodies.get(&1, &key(None)).unwrap().json[..], b"[1]");
        assert_eq!(&bodies.get(&1, &key(Some("c"))).unwrap().json[..], b"[2]");
        assert!(bodies.get(&2, &key(None)).is_none(), "another listing");
        bodies.put(2, key(None), body("[3]"));
        assert!(
            bodies.get(&1, &key(Some("c"))).is_none(),
            "the old stamp's bodies went"
        );
        assert_eq!(&bodies.get(&2, &key(None)).unwrap().json[..], b"[3]");
    }

    #[test]
    fn deep_walks_never_grow_the_cache_past_its_bound() {
        let bodies = PageBodies::<u64>::default();
        for n in 0..(3 * MAX_KEPT) {
            bodies.put(1, key(Some(&n.to_string())), body("[]"));
        }
        let kept = bodies.kept.lock().unwrap();
        assert!(kept.as_ref().unwrap().1.len() <= MAX_KEPT);
    }
}
