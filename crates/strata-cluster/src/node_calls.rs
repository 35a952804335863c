//! Calls to many nodes at once, and the deadline of a call that does no work.

use crate::node_api::{ApiError, ErrorCode};
use std::future::Future;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Runs `call` on every node index in `which` at once; results in the same order.
pub async fn on_nodes<T, F, Fut>(which: &[usize], call: F) -> Vec<(usize, T)>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<(usize, JoinHandle<T>)> =
        which.iter().map(|&i| (i, tokio::spawn(call(i)))).collect();
    let mut out = Vec::with_capacity(handles.len());
    for (i, handle) in handles {
        out.push((i, handle.await.expect("node call task panicked")));
    }
    out
}

/// How long a node may take to answer a call that does no work (metadata, lease,
/// progress) before it counts as unreachable.
pub const QUICK_CALL: Duration = Duration::from_secs(10);

/// `call` that does no work (metadata, lease, progress), or an
/// [`ErrorCode::Unreachable`] error when it takes longer than [`QUICK_CALL`].
pub async fn quick_call<T>(call: impl Future<Output = Result<T, ApiError>>) -> Result<T, ApiError> {
    deadline(QUICK_CALL, call).await
}

/// `call`, or an [`ErrorCode::Unreachable`] error when it takes longer than `limit`.
pub async fn deadline<T>(
    limit: Duration,
    call: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
        Err(ApiError::new(
            ErrorCode::Unreachable,
            format!("no answer within {} s", limit.as_secs_f32()),
        ))
    })
}
