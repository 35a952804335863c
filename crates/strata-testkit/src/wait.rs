//! Bounded polling: wait until a condition holds, and fail loudly when it never does. The
//! limits guard against hanging; they are not timing assertions.

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` every `every` until it holds; panics with `what` after `limit`.
pub fn wait_for(what: &str, limit: Duration, every: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(every);
    }
}

/// Polls the async `check` every 100 ms until it holds; panics with `what` after `limit`.
pub async fn wait_for_async<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls the synchronous `check` every 100 ms from async code (sleeping without blocking
/// the runtime) until it holds; panics with `what` after `limit`.
pub async fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
