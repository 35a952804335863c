//! Loopback ports for servers the tests start.

/// Ports handed out in this test process, so two servers started at once never get the
/// same one (the OS may give a just-released port again).
static PORTS: std::sync::Mutex<Option<std::collections::HashSet<u16>>> =
    std::sync::Mutex::new(None);

/// A port on 127.0.0.1 nobody listens on right now (it was free a moment ago), never one
/// this process was given before.
pub fn free_port() -> u16 {
    let mut taken = PORTS.lock().unwrap();
    let taken = taken.get_or_insert_with(Default::default);
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if taken.insert(port) {
            return port;
        }
    }
}

/// A URL on 127.0.0.1 where nothing listens (a port that was free a moment ago).
pub fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}/hook", listener.local_addr().unwrap())
}
