//! The `wal-push` side: hand a file to the local archiver, or say there is none.

use super::wire::{self, Answer, ArchiverStatus, Request};
use crate::error::{WalError, WalFailure};
use std::io::ErrorKind;
use std::path::Path;
use std::time::Duration;
use strata_postgres::wal::Pushed;
use tokio::net::UnixStream;

/// Connects to the archiver at `socket`; `None` when nobody listens there (no socket
/// file, or one an archiver left behind). Any other failure to connect (permissions) is
/// reported on stderr and also gives `None`: pushing without the archiver is always
/// correct, only slower.
async fn connect(socket: &Path) -> Option<UnixStream> {
    match UnixStream::connect(socket).await {
        Ok(conn) => Some(conn),
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::NotFound | ErrorKind::ConnectionRefused
            ) =>
        {
            None
        }
        Err(err) => {
            eprintln!(
                "strata: warning: cannot reach the WAL archiver at {} ({err}); pushing without it",
                socket.display()
            );
            None
        }
    }
}

/// Hands `path` to the archiver at `socket` and waits up to `timeout` for its answer:
/// `Ok(None)` when no archiver listens (push by yourself), the outcomes once the
/// repository holds the file, [`WalError::Busy`] when PostgreSQL should call again
/// shortly, and a failure otherwise (also when the archiver does not answer in time;
/// it may still finish, and the next call then finds the file archived).
pub async fn push(
    socket: &Path,
    path: &Path,
    timeout: Duration,
) -> Result<Option<Vec<Pushed>>, WalError> {
    let Some(mut conn) = connect(socket).await else {
        return Ok(None);
    };
    // PostgreSQL passes %p relative to the data directory, the archiver's working
    // directory is another.
    let absolute =
        std::path::absolute(path).map_err(|e| failed(format!("{}: {e}", path.display())))?;
    let request = Request::Push {
        path: absolute.to_string_lossy().into_owned(),
    };
    let answer = exchange(&mut conn, &request, timeout).await?;
    match answer {
        Answer::Pushed { outcomes } => Ok(Some(outcomes)),
        Answer::Busy { why } => Err(WalError::Busy(why)),
        Answer::Failed { why } => Err(failed(format!("the WAL archiver: {why}"))),
        Answer::Status(_) => Err(failed(
            "the WAL archiver answered a push with its status".into(),
        )),
    }
}

/// The status of the archiver at `socket`; `None` when none listens.
pub async fn status(socket: &Path, timeout: Duration) -> Result<Option<ArchiverStatus>, WalError> {
    let Some(mut conn) = connect(socket).await else {
        return Ok(None);
    };
    match exchange(&mut conn, &Request::Status, timeout).await? {
        Answer::Status(status) => Ok(Some(*status)),
        Answer::Failed { why } | Answer::Busy { why } => {
            Err(failed(format!("the WAL archiver: {why}")))
        }
        Answer::Pushed { .. } => Err(failed(
            "the WAL archiver answered a status request with a push".into(),
        )),
    }
}

async fn exchange(
    conn: &mut UnixStream,
    request: &Request,
    timeout: Duration,
) -> Result<Answer, WalError> {
    let (reader, writer) = conn.split();
    wire::write_line(writer, request)
        .await
        .map_err(|e| failed(format!("cannot send to the WAL archiver: {e}")))?;
    wire::read_line(reader, timeout).await.map_err(|e| {
        failed(format!(
            "no answer from the WAL archiver ({e}); PostgreSQL calls again (postgres.archiver_timeout_secs)"
        ))
    })
}

fn failed(why: String) -> WalError {
    WalError::Failed(WalFailure::Refused(why))
}
