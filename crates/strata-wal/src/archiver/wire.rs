//! What `wal-push` and the archiver say to each other: one JSON line each way per
//! connection. A line is at most [`MAX_LINE`] bytes and must arrive within
//! [`READ_TIMEOUT`], so a client that never finishes its request holds nothing for long.
//! Also where the archiver listens, how long a client waits, and what the archiver
//! reports of itself ([`ArchiverStatus`]): what both sides agree on.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;
use strata_cluster::config::Config;
use strata_postgres::wal::Pushed;
use tokio::io::{AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};

/// Longest line either side sends (a path and a few fields; the status).
pub const MAX_LINE: usize = 16 * 1024;
/// How long the archiver waits for a request line.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A client's request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Archive the file at this absolute path (and the ready segments after it); answered
    /// once the repository holds it.
    Push {
        /// The absolute path of the WAL file PostgreSQL asks to archive.
        path: String,
    },
    /// What the archiver has done so far.
    Status,
}

/// The archiver's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// The files of the push that the repository now holds, the requested one first.
    Pushed {
        /// One outcome per file archived, the requested one first.
        outcomes: Vec<Pushed>,
    },
    /// Not archived now; PostgreSQL should call again shortly (the queue is full, garbage
    /// collection holds the repository).
    Busy {
        /// What keeps the archiver from taking the file now.
        why: String,
    },
    /// Not archived: why.
    Failed {
        /// What went wrong.
        why: String,
    },
    /// The answer to [`Request::Status`]: what the archiver has done so far.
    Status(Box<ArchiverStatus>),
}

/// Where the archiver of `config` listens.
pub fn socket_path(config: &Config) -> PathBuf {
    match config.postgres.archiver_socket.as_str() {
        "" => config.state_dir().join("wal-archiver.sock"),
        path => PathBuf::from(path),
    }
}

/// How long a client waits for an answer by default (see `postgres.archiver_timeout_secs`).
pub fn answer_timeout(config: &Config) -> Duration {
    Duration::from_secs(config.postgres.archiver_timeout_secs.max(1))
}

/// What the archiver has done since it started (`strata wal status`, and the lag the
/// operator watches).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ArchiverStatus {
    /// When the archiver started (RFC 3339).
    pub started: String,
    /// Files stored (newly or again) since the start.
    pub archived_files: u64,
    /// The bytes of those files.
    pub archived_bytes: u64,
    /// Batches run since the start, failed ones included: the files of a batch are stored
    /// under one writer's mark.
    pub batches: u64,
    /// Batches that failed (their pushes were answered with the failure).
    pub failures: u64,
    /// The newest failure: when (RFC 3339) and what went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    /// The newest file stored, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_archived: Option<String>,
    /// When the newest file was stored (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_archived_at: Option<String>,
    /// Pushes waiting for a batch.
    pub queued: usize,
    /// Segments PostgreSQL has marked ready and not seen archived yet, in the `pg_wal`
    /// of the last push, and the age of the oldest in seconds: the archive lag.
    pub ready_segments: usize,
    /// The age of the oldest of those ready segments, in seconds.
    pub oldest_ready_secs: u64,
    /// Segments `wal-push` acknowledged without archiving them (`postgres.wal_queue_max_mib`).
    #[serde(default)]
    pub dropped: crate::queue::Drops,
}

/// Why a line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The connection closed before a whole line came.
    #[error("the other side closed the connection without a line")]
    Closed,
    /// The line grew past [`MAX_LINE`] bytes without a newline.
    #[error("a line longer than {MAX_LINE} bytes")]
    TooLong,
    /// No whole line came within the time allowed (the duration).
    #[error("no complete line within {0:?}")]
    Timeout(Duration),
    /// The line is not the JSON of a request or answer.
    #[error("the line does not decode: {0}")]
    Decode(#[from] serde_json::Error),
    /// Reading from the socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads one JSON line of at most [`MAX_LINE`] bytes within `timeout`.
pub async fn read_line<T: for<'de> Deserialize<'de>>(
    reader: impl tokio::io::AsyncRead + Unpin,
    timeout: Duration,
) -> Result<T, WireError> {
    let mut limited = BufReader::new(tokio::io::AsyncReadExt::take(reader, MAX_LINE as u64 + 1));
    let mut line = Vec::new();
    let read = tokio::time::timeout(timeout, limited.read_until(b'\n', &mut line))
        .await
        .map_err(|_| WireError::Timeout(timeout))??;
    if read == 0 {
        return Err(WireError::Closed);
    }
    if line.last() != Some(&b'\n') {
        return Err(if line.len() > MAX_LINE {
            WireError::TooLong
        } else {
            WireError::Closed
        });
    }
    Ok(serde_json::from_slice(&line)?)
}

/// Writes `value` as one JSON line.
pub async fn write_line<T: Serialize>(
    mut writer: impl AsyncWrite + Unpin,
    value: &T,
) -> Result<(), WireError> {
    let mut line = serde_json::to_vec(value)?;
    line.push(b'\n');
    writer.write_all(&line).await?;
    writer.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_goes_through_and_hostile_lines_are_refused() {
        let request = Request::Push {
            path: "/pg/pg_wal/000000010000000000000001".into(),
        };
        let mut bytes = Vec::new();
        write_line(&mut bytes, &request).await.unwrap();
        let back: Request = read_line(&bytes[..], READ_TIMEOUT).await.unwrap();
        assert_eq!(back, request);

        let endless = vec![b'x'; MAX_LINE * 4];
        let err = read_line::<Request>(&endless[..], READ_TIMEOUT)
            .await
            .unwrap_err();
        assert!(matches!(err, WireError::TooLong), "{err}");
        let cut = br#"{"push":{"path":"/a"#;
        assert!(matches!(
            read_line::<Request>(&cut[..], READ_TIMEOUT).await,
            Err(WireError::Closed)
        ));
        let unknown = b"{\"delete\":{}}\n";
        assert!(matches!(
            read_line::<Request>(&unknown[..], READ_TIMEOUT).await,
            Err(WireError::Decode(_))
        ));
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_line_times_out() {
        let (_keep, server) = tokio::io::duplex(64);
        let err = read_line::<Request>(server, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(err, WireError::Timeout(_)), "{err}");
    }
}
