//! Real etcd clusters on loopback for the tests, and raw JSON requests that do not go
//! through the code under test.

use crate::net::free_port;
pub use crate::tls::Tls;
use base64::Engine as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use strata_etcd::{Client, Settings};

const ETCD: &str = "/usr/bin/etcd";

/// One etcd member: its name, client URL and process (killed on drop).
pub struct Member {
    /// The member's name (`--name`).
    pub name: String,
    /// Its client URL on 127.0.0.1.
    pub url: String,
    log: PathBuf,
    child: Child,
}

/// etcd members on 127.0.0.1, killed on drop.
pub struct EtcdCluster {
    /// The members, in start order.
    pub members: Vec<Member>,
    tls: Option<Tls>,
    /// Their data directories and logs (removed on drop).
    pub dir: tempfile::TempDir,
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            let _ = m.child.kill();
            let _ = m.child.wait();
        }
    }
}

impl EtcdCluster {
    /// Starts `size` members (plain HTTP) and waits until each serves linearizable reads.
    pub async fn start(size: usize) -> EtcdCluster {
        EtcdCluster::launch(size, false).await
    }

    /// One member serving HTTPS that requires a client certificate from the test CA.
    pub async fn start_tls() -> EtcdCluster {
        EtcdCluster::launch(1, true).await
    }

    async fn launch(size: usize, tls: bool) -> EtcdCluster {
        assert!(
            Path::new(ETCD).exists(),
            "{ETCD} is missing: these tests need a real etcd (Debian package etcd-server)"
        );
        let dir = tempfile::tempdir().unwrap();
        let tls = tls.then(|| Tls::generate(dir.path()));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
        let initial = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{}=http://127.0.0.1:{peer}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("strata-test-{}", ports[0].0);
        let mut members = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let name = format!("m{}", i + 1);
            let url = format!("{scheme}://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let log = dir.path().join(format!("{name}.log"));
            let mut command = Command::new(ETCD);
            command
                .arg("--name")
                .arg(&name)
                .arg("--data-dir")
                .arg(dir.path().join(&name))
                .args([
                    "--listen-client-urls",
                    &url,
                    "--advertise-client-urls",
                    &url,
                ])
                .args(["--listen-peer-urls", &peer_url])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .args([
                    "--initial-cluster",
                    &initial,
                    "--initial-cluster-state",
                    "new",
                ])
                .args(["--initial-cluster-token", &token])
                .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
                .args(["--logger", "zap", "--log-outputs", "stderr"])
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&log).unwrap())
                .stderr(std::fs::File::create(&log).unwrap());
            if let Some(t) = &tls {
                command
                    .arg("--client-cert-auth")
                    .arg("--trusted-ca-file")
                    .arg(&t.ca)
                    .arg("--cert-file")
                    .arg(&t.server_cert)
                    .arg("--key-file")
                    .arg(&t.server_key);
            }
            let child = command.spawn().expect("cannot start etcd");
            members.push(Member {
                name,
                url,
                log,
                child,
            });
        }
        let cluster = EtcdCluster { members, tls, dir };
        cluster.wait_healthy().await;
        cluster
    }

    /// Settings reaching member `i` only (with the client certificate on a TLS cluster).
    pub fn settings(&self, i: usize) -> Settings {
        let mut s = Settings::new([self.members[i].url.clone()]);
        s.timeout = Duration::from_secs(5);
        if let Some(t) = &self.tls {
            s.ca_file = Some(t.ca.clone());
            s.cert_file = Some(t.client_cert.clone());
            s.key_file = Some(t.client_key.clone());
        }
        s
    }

    /// The client URL of member `i`.
    pub fn url(&self, i: usize) -> &str {
        &self.members[i].url
    }

    async fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for i in 0..self.members.len() {
            loop {
                let mut settings = self.settings(i);
                settings.timeout = Duration::from_secs(2);
                settings.prefixes = vec!["/health-check/".into()];
                let last = match Client::connect(&settings).await {
                    Ok(client) => match client.snapshot().await {
                        Ok(_) => break,
                        Err(e) => e.to_string(),
                    },
                    Err(e) => e.to_string(),
                };
                if Instant::now() > deadline {
                    let logs: String = self
                        .members
                        .iter()
                        .map(|m| {
                            let text = std::fs::read_to_string(&m.log).unwrap_or_default();
                            let tail: Vec<&str> = text.lines().rev().take(15).collect();
                            format!(
                                "--- {} ---\n{}\n",
                                m.name,
                                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                            )
                        })
                        .collect();
                    panic!("etcd member {i} not healthy within 30 s: {last}\n{logs}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

// Raw gateway requests (plain HTTP clusters), independent of strata_etcd.

/// Base64 as the gateway writes keys and values.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The bytes of a gateway's base64 (panics on bad input: a test helper).
pub fn unb64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

/// POSTs `body` to the gateway path `path` and answers its JSON; panics on an error status or an `error` field.
pub async fn raw(url: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
    strata_util::tls_by_ring();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let response = http
        .post(format!("{url}{path}"))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {text}");
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(value.get("error").is_none(), "{path}: {text}");
    value
}

/// Puts `key` = `value` through the gateway; answers the revision it made.
pub async fn put(url: &str, key: &[u8], value: &[u8]) -> i64 {
    let reply = raw(
        url,
        "/v3/kv/put",
        serde_json::json!({"key": b64(key), "value": b64(value)}),
    )
    .await;
    reply["header"]["revision"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Grants a 300 s lease and puts the key with it; returns the lease id.
pub async fn put_leased(url: &str, key: &[u8], value: &[u8]) -> i64 {
    let lease = raw(url, "/v3/lease/grant", serde_json::json!({"TTL": "300"})).await;
    let id: i64 = lease["ID"].as_str().unwrap().parse().unwrap();
    raw(
        url,
        "/v3/kv/put",
        serde_json::json!({"key": b64(key), "value": b64(value), "lease": id.to_string()}),
    )
    .await;
    id
}

/// `(key, value, lease)` of every key under `prefix` at `revision` (0: now), one request.
pub async fn range(url: &str, prefix: &[u8], revision: i64) -> Vec<(Vec<u8>, Vec<u8>, i64)> {
    let mut end = prefix.to_vec();
    *end.last_mut().unwrap() += 1;
    let reply = raw(
        url,
        "/v3/kv/range",
        serde_json::json!({"key": b64(prefix), "range_end": b64(&end), "revision": revision.to_string()}),
    )
    .await;
    reply["kvs"]
        .as_array()
        .map(|kvs| {
            kvs.iter()
                .map(|kv| {
                    (
                        unb64(kv["key"].as_str().unwrap()),
                        unb64(kv["value"].as_str().unwrap_or("")),
                        kv["lease"].as_str().map_or(0, |l| l.parse().unwrap()),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A writer that keeps putting keys into etcd on a thread of its own (so a test's runtime
/// and the process under test never hold it up) until stopped or dropped: key and value
/// number `n` come from `write(n)`, one every `every` (zero: as fast as etcd takes them).
pub struct Writer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<u64>>,
}

impl Writer {
    /// Starts writing `write(n)` to `url` every `every` on a thread of its own, until stopped.
    pub fn start(
        url: &str,
        every: std::time::Duration,
        write: impl Fn(u64) -> (Vec<u8>, Vec<u8>) + Send + 'static,
    ) -> Writer {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let url = url.to_string();
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let mut n = 0u64;
            while !flag.load(Ordering::Relaxed) {
                let (key, value) = write(n);
                rt.block_on(put(&url, &key, &value));
                n += 1;
                std::thread::sleep(every);
            }
            n
        });
        Writer {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops it; how many keys it wrote.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
