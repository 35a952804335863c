//! A gate between a coordinator and a node agent: an HTTP/1.1 forwarder that can hold the
//! node's requests to one endpoint until the test opens it, and can refuse lease renewals
//! as a node whose lease was lost would.
//!
//! With it a test sees an operation *while it runs* (its progress, its event stream, a
//! second operation refused as busy) however fast the machine is, with no sleeps in strata
//! and no race against a quick backup: the operation cannot end before the test says so.
//! One request per connection (`Connection: close` both ways), which every client of
//! strata's node API handles.
//!
//! `POST /gate/open` to the gate opens it too, for a test script that only speaks HTTP.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    /// Requests to `hold` wait while closed.
    closed: bool,
    /// Held requests are answered 503 instead of being forwarded when the gate opens
    /// (the operation they belonged to was given up).
    drop_held: bool,
    /// Requests held so far (in all).
    held: usize,
    /// Lease requests are answered `409 lease_lost` while set.
    refuse_leases: bool,
    /// Lease requests refused so far.
    refused: usize,
}

/// A running gate; its listener thread lives as long as the test process.
pub struct Gate {
    /// Where the coordinator should find the node: `http://127.0.0.1:PORT`.
    pub url: String,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl Gate {
    /// Forwards to the agent at `upstream` (`http://host:port`), holding requests whose
    /// path ends with `hold` (e.g. `/node/v1/backup/finish`) while closed. Starts open.
    pub fn start(upstream: &str, hold: &str) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let (shared, upstream, hold) = (
            state.clone(),
            upstream.trim_start_matches("http://").to_string(),
            hold.to_string(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (shared, upstream, hold) = (shared.clone(), upstream.clone(), hold.clone());
                std::thread::spawn(move || serve(stream, &shared, &upstream, &hold));
            }
        });
        Gate { url, state }
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        let (lock, wake) = &*self.state;
        change(&mut lock.lock().unwrap());
        wake.notify_all();
    }

    /// Holds requests to the held endpoint from now on.
    pub fn close(&self) {
        self.update(|s| {
            s.closed = true;
            s.drop_held = false;
        });
    }

    /// Lets held and later requests through.
    pub fn open(&self) {
        self.update(|s| s.closed = false);
    }

    /// Answers held requests 503 (their operation was given up) and lets later ones
    /// through.
    pub fn open_dropping_held(&self) {
        self.update(|s| {
            s.drop_held = true;
            s.closed = false;
        });
    }

    /// Answers lease requests `409 lease_lost` while `refuse` is set.
    pub fn refuse_leases(&self, refuse: bool) {
        self.update(|s| s.refuse_leases = refuse);
    }

    fn wait_for(&self, what: &str, done: impl Fn(&State) -> bool) {
        let (lock, wake) = &*self.state;
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut state = lock.lock().unwrap();
        while !done(&state) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the gate waited in vain for {what}");
            state = wake.wait_timeout(state, left).unwrap().0;
        }
    }

    /// Waits until the gate holds (or has held) `n` requests in all.
    pub fn wait_held(&self, n: usize) {
        self.wait_for("a request to hold", |s| s.held >= n);
    }

    /// Waits until the gate has refused `n` lease requests in all.
    pub fn wait_refused(&self, n: usize) {
        self.wait_for("a lease request to refuse", |s| s.refused >= n);
    }
}

/// One request: its head (without the final blank line) and body.
struct Request {
    path: String,
    head: Vec<String>,
    body: Vec<u8>,
}

fn read_request(reader: &mut BufReader<&TcpStream>) -> Option<Request> {
    let mut head = Vec::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end().to_string();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim().to_ascii_lowercase();
            if name == "content-length" {
                length = value.trim().parse().ok()?;
            }
            assert!(
                name != "transfer-encoding",
                "the gate forwards only bodies with a length: {line}"
            );
        }
        head.push(line);
    }
    let path = head.first()?.split_whitespace().nth(1)?.to_string();
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request { path, head, body })
}

fn reply(mut stream: &TcpStream, status: &str, json: &str) {
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
        json.len()
    );
}

fn serve(stream: TcpStream, shared: &(Mutex<State>, Condvar), upstream: &str, hold: &str) {
    let Some(request) = read_request(&mut BufReader::new(&stream)) else {
        return;
    };
    let (lock, wake) = shared;
    if request.path == "/gate/open" {
        lock.lock().unwrap().closed = false;
        wake.notify_all();
        return reply(&stream, "200 OK", "{}");
    }
    if request.path == "/node/v1/lease" {
        let mut state = lock.lock().unwrap();
        if state.refuse_leases {
            state.refused += 1;
            wake.notify_all();
            drop(state);
            return reply(
                &stream,
                "409 Conflict",
                r#"{"code":"lease_lost","message":"the test's gate refused the lease"}"#,
            );
        }
    }
    if request.path.ends_with(hold) {
        let mut state = lock.lock().unwrap();
        if state.closed {
            state.held += 1;
            wake.notify_all();
            while state.closed {
                state = wake.wait(state).unwrap();
            }
            if state.drop_held {
                drop(state);
                return reply(
                    &stream,
                    "503 Service Unavailable",
                    r#"{"code":"unreachable","message":"dropped by the test's gate"}"#,
                );
            }
        }
    }
    forward(&stream, &request, upstream);
}

/// Sends `request` to `upstream` with `Connection: close` and copies the whole answer back.
fn forward(mut client: &TcpStream, request: &Request, upstream: &str) {
    let Ok(mut server) = TcpStream::connect(upstream) else {
        return reply(
            client,
            "502 Bad Gateway",
            r#"{"code":"unreachable","message":"the gate cannot reach the agent"}"#,
        );
    };
    let mut head: Vec<&str> = request
        .head
        .iter()
        .map(String::as_str)
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    head.push("Connection: close");
    let mut out = head.join("\r\n").into_bytes();
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(&request.body);
    if server.write_all(&out).is_err() {
        return;
    }
    let mut answer = Vec::new();
    let _ = server.read_to_end(&mut answer);
    let _ = client.write_all(&answer);
}
