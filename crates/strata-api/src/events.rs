//! A follower of an operation's event stream (`/api/v1/operations/{id}/events`), and the
//! query strings of calls to the server.

use strata_cluster::node_api::{ApiError, ErrorCode};
use strata_coordinator::operation::OperationStatus;
use strata_coordinator::remote::ApiClient;
use tokio::sync::watch;

/// Follows operation `id`: every status the server pushes lands in the returned receiver;
/// the task ends with the final status.
pub(crate) fn follow(
    client: ApiClient,
    first: OperationStatus,
) -> (
    watch::Receiver<OperationStatus>,
    tokio::task::JoinHandle<Result<OperationStatus, ApiError>>,
) {
    let id = first.id.clone();
    let (tx, rx) = watch::channel(first);
    let task = tokio::spawn(async move {
        let path = format!("/api/v1/operations/{id}/events");
        // A dropped stream (a proxy's timeout, say) is picked up again; the server keeps
        // the operation whatever happens to this connection.
        for _ in 0..20 {
            if let Ok(mut response) = client.send(reqwest::Method::GET, &path, None).await {
                let mut buffer = Vec::new();
                while let Ok(Some(chunk)) = response.chunk().await {
                    buffer.extend_from_slice(&chunk);
                    while let Some(end) = find_event_end(&buffer) {
                        let event: Vec<u8> = buffer.drain(..end).collect();
                        if let Some(status) = parse_event(&event) {
                            let done = status.state.is_done();
                            let _ = tx.send(status.clone());
                            if done {
                                return Ok(status);
                            }
                        }
                    }
                }
            }
            // The stream ended early: ask once directly, then follow again.
            let status: OperationStatus = client.get(&format!("/api/v1/operations/{id}")).await?;
            let done = status.state.is_done();
            let _ = tx.send(status.clone());
            if done {
                return Ok(status);
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        Err(ApiError::new(
            ErrorCode::Unreachable,
            format!("lost the event stream of operation {id} too often; see `strata status`"),
        ))
    });
    (rx, task)
}

/// The end (exclusive, including the blank line) of the first complete SSE event.
fn find_event_end(buffer: &[u8]) -> Option<usize> {
    buffer.windows(2).position(|w| w == b"\n\n").map(|p| p + 2)
}

/// The status in an SSE event's `data:` lines, if it has one.
fn parse_event(event: &[u8]) -> Option<OperationStatus> {
    let text = std::str::from_utf8(event).ok()?;
    let data: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    if data.is_empty() {
        return None;
    }
    serde_json::from_str(&data).ok()
}

/// `a=1&b=x%2By`: query parameters for a call to the server, values percent-encoded
/// (times carry `+` and `:`, paths `/`).
pub(crate) fn query_string(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={}", encode_query(value)))
        .collect::<Vec<_>>()
        .join("&")
}

pub(crate) fn encode_query(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(
            query_string(&[
                ("since", "2026-11-23T05:00:00+01:00".into()),
                ("limit", "7".into())
            ]),
            "since=2026-11-23T05%3A00%3A00%2B01%3A00&limit=7"
        );
        assert_eq!(
            query_string(&[("path", "base/16384".into())]),
            "path=base%2F16384"
        );
    }

    #[test]
    fn events_are_split_and_parsed() {
        let status = r#"{"id":"x","kind":"backup","state":"running","started":"t","nodes":[]}"#;
        let stream = format!(": keep-alive\n\ndata: {status}\n\n");
        let bytes = stream.as_bytes();
        let first = find_event_end(bytes).unwrap();
        assert!(
            parse_event(&bytes[..first]).is_none(),
            "comments carry nothing"
        );
        let second = find_event_end(&bytes[first..]).unwrap();
        let parsed = parse_event(&bytes[first..first + second]).unwrap();
        assert_eq!(parsed.id, "x");
        assert!(!parsed.state.is_done());
    }
}
