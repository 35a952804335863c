//! A real `strata server` process for tests (the caller passes the prepared `strata`
//! command: the binary's path is known only to the binary crate's tests), a raw HTTP/1.1
//! client for poking at it, and a reader of its server-sent event streams.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};

/// A `strata server` process, killed when dropped.
pub struct Server {
    child: Child,
    /// Its base URL (`http://127.0.0.1:PORT`).
    pub url: String,
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Stops the server now (as dropping it does), for tests that kill a node.
    pub fn kill(self) {}

    /// The server's process id, for a test that signals it.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's process, for a test that waits on it or stops it.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Whether the process is still running (`None`), or how it ended.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Runs `cmd server --listen 127.0.0.1:0` (stderr into `log`) and waits until it
    /// listens.
    pub fn start(mut cmd: Command, log: &std::path::Path) -> Server {
        let log = std::fs::File::create(log).unwrap();
        let mut child = cmd
            .args(["server", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://") || w.starts_with("https://"))
            .unwrap_or_else(|| panic!("server did not start: {line:?}"))
            .to_string();
        Server {
            child,
            url,
            _stdout: stdout,
        }
    }
}

/// A reply: status, headers (names lower-cased), body.
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// Headers, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
}

impl Reply {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (panics if it is not: a test helper).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

/// A raw HTTP/1.1 request (`body` sent as JSON when not empty).
pub fn http(url: &str, method: &str, path: &str, token: Option<&str>, body: &str) -> Reply {
    let address = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let content = if body.is_empty() {
        "Content-Length: 0\r\n".to_string()
    } else {
        format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        )
    };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{auth}{content}Connection: close\r\n\r\n{body}"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw.get(split + 4..).unwrap_or_default();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect::<Vec<_>>();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_vec()
    };
    let body = String::from_utf8_lossy(&body).into_owned();
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = body.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&body[..end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
        let rest = &body[end + 2..];
        match size {
            Some(size) if size > 0 && rest.len() >= size => {
                out.extend_from_slice(&rest[..size]);
                body = rest[size..].strip_prefix(b"\r\n").unwrap_or(&rest[size..]);
            }
            _ => break,
        }
    }
    out
}

/// Follows a server-sent event stream (`GET path`) on a thread of its own: every `data:`
/// payload, parsed as JSON, goes to the returned channel as it arrives; the channel closes
/// when the server ends the stream. Panics (on that thread; the channel then closes
/// early) unless the answer is `200 text/event-stream`.
pub fn event_stream(
    url: &str,
    path: &str,
    token: &str,
) -> std::sync::mpsc::Receiver<serde_json::Value> {
    let address = url.trim_start_matches("http://").to_string();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n"
    );
    let (events, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let mut chunked = false;
        let mut first = String::new();
        reader.read_line(&mut first).unwrap();
        assert!(first.contains(" 200 "), "event stream refused: {first}");
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim_end().to_ascii_lowercase();
            if line.is_empty() {
                break;
            }
            if line.starts_with("content-type:") {
                assert!(line.contains("text/event-stream"), "{line}");
            }
            chunked |= line.starts_with("transfer-encoding:") && line.contains("chunked");
        }
        let mut text = String::new();
        loop {
            // The next piece of the body: a chunk, or whatever arrives when not chunked.
            let piece = if chunked {
                let mut size = String::new();
                if reader.read_line(&mut size).unwrap_or(0) == 0 {
                    break;
                }
                let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                if size == 0 {
                    break;
                }
                let mut piece = vec![0; size + 2];
                reader.read_exact(&mut piece).unwrap();
                piece.truncate(size);
                piece
            } else {
                let mut piece = vec![0; 8192];
                let n = reader.read(&mut piece).unwrap_or(0);
                if n == 0 {
                    break;
                }
                piece.truncate(n);
                piece
            };
            text.push_str(&String::from_utf8_lossy(&piece).replace("\r\n", "\n"));
            while let Some(end) = text.find("\n\n") {
                let block: String = text.drain(..end + 2).collect();
                let data: Vec<&str> = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|l| l.strip_prefix(' ').unwrap_or(l))
                    .collect();
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                let value = serde_json::from_str(&data.join("\n"))
                    .unwrap_or_else(|e| panic!("event not JSON ({e}): {block}"));
                if events.send(value).is_err() {
                    return;
                }
            }
        }
    });
    received
}
