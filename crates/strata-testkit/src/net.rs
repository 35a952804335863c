//! Loopback ports for servers the tests start.

/// A port on 127.0.0.1 nobody listens on right now (it was free a moment ago).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A URL on 127.0.0.1 where nothing listens (a port that was free a moment ago).
pub fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}/hook", listener.local_addr().unwrap())
}
