//! A webhook receiver on 127.0.0.1 for the tests that check what strata reports: every
//! request it got (event header, signature header, body), and the signature a delivery
//! must carry.

use hmac::{Hmac, Mac};
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};

/// One request a webhook receiver got.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event: String,
    pub signature: String,
    pub body: String,
}

/// A receiver that answers 204, or 500 to its first request when `fail_first` (so
/// delivery must retry).
pub struct Receiver {
    pub url: String,
    got: Arc<Mutex<Vec<Delivery>>>,
}

impl Receiver {
    pub fn start(fail_first: bool) -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let seen = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let delivery = read_request(&stream);
                let first = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(delivery);
                    seen.len() == 1
                };
                let status = if first && fail_first {
                    "500 Internal Server Error"
                } else {
                    "204 No Content"
                };
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Receiver { url, got }
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.got.lock().unwrap().clone()
    }

    /// The deliveries once there are at least `count` (delivery is asynchronous); fails
    /// the test, showing what came, after 10 s.
    #[allow(dead_code)] // not every test binary that has the receiver waits
    pub fn wait_for(&self, count: usize) -> Vec<Delivery> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let got = self.deliveries();
            if got.len() >= count {
                return got;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{count} webhook deliveries expected, got {got:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

fn read_request(stream: &std::net::TcpStream) -> Delivery {
    let mut reader = BufReader::new(stream);
    let mut length = 0;
    let mut event = String::new();
    let mut signature = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim().to_string();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse().unwrap_or(0),
                "x-strata-event" => event = value,
                "x-strata-signature" => signature = value,
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    Delivery {
        event,
        signature,
        body: String::from_utf8(body).unwrap(),
    }
}

/// The signature a delivery of `body` signed with `secret` carries.
pub fn signature(secret: &str, body: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}
