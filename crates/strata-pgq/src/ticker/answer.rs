//! Bounded waits for a server's answer: a server that stopped answering fails the job
//! instead of hanging the ticker's session (the session and its upkeep both wait so).

use crate::PgqError;
use std::future::Future;
use std::time::Duration;

/// How much longer than `statement_timeout` the ticker waits for an answer before it
/// gives the session up (the server's own cancel comes first when the server works).
pub(super) const ANSWER_GRACE: Duration = Duration::from_secs(5);

/// Waits for `job` at most `limit` (no limit when `None`): a server that stopped
/// answering fails the job instead of hanging the session.
pub(super) async fn answered<T>(
    limit: Option<Duration>,
    what: &str,
    job: impl Future<Output = Result<T, PgqError>>,
) -> Result<T, PgqError> {
    match limit {
        None => job.await,
        Some(limit) => tokio::time::timeout(limit, job).await.unwrap_or_else(|_| {
            Err(PgqError::Timeout {
                what: what.to_string(),
                secs: limit.as_secs(),
            })
        }),
    }
}
