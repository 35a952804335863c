//! Real storage servers for tests, on free loopback ports: s3s-fs (S3), azurite (Azure
//! Blob) and fake-gcs-server (GCS). `scripts/install-test-servers.sh` installs them and
//! prints the variables naming them. A server that cannot start fails the test loudly;
//! nothing is skipped.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server; killed on drop.
pub struct Server {
    child: Child,
    /// How it was started, to start it again on the same port and data.
    program: PathBuf,
    args: Vec<std::ffi::OsString>,
    port: u16,
    _dir: tempfile::TempDir,
    /// The storage URL to use (bucket or container included).
    pub url: String,
    /// object_store options that reach it.
    pub options: BTreeMap<String, String>,
    /// Environment variables a strata process needs to reach it.
    pub env: Vec<(String, String)>,
}

impl Server {
    /// Stops the server (a storage outage); its data stays. Asked to stop first
    /// (SIGINT): azurite keeps its index in memory and writes it out when it stops, so a
    /// SIGKILL would lose objects it had acknowledged, which no real service does.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port and data, after [`Server::stop`].
    pub fn start_again(&mut self) {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self._dir.path().join("server.log"))
            .unwrap();
        let mut child = cmd
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        wait_for(self.port, &mut child, "the restarted server");
        self.child = child;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tool(var: &str) -> PathBuf {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        panic!("{var} is not set: run `eval \"$(scripts/install-test-servers.sh)\"` (scripts/test.sh does)")
    });
    assert!(path.exists(), "{var}={} does not exist", path.display());
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{what} exited with {status} before listening on port {port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on port {port} within 60 s");
}

fn spawn(
    mut cmd: Command,
    port: u16,
    dir: tempfile::TempDir,
    what: &str,
) -> (Child, tempfile::TempDir) {
    let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
    let mut child = cmd
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    wait_for(port, &mut child, what);
    (child, dir)
}

pub const S3_KEY: &str = "strata-test-key";
pub const S3_SECRET: &str = "strata-test-secret-value";

/// s3s-fs serving a directory, with bucket `strata`.
pub fn s3() -> Server {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("root/strata")).unwrap();
    let port = free_port();
    let mut cmd = Command::new(tool("STRATA_TEST_S3S_FS"));
    cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", S3_KEY, "--secret-key", S3_SECRET])
        .arg(dir.path().join("root"));
    let (program, args) = (
        PathBuf::from(cmd.get_program()),
        cmd.get_args().map(|a| a.to_os_string()).collect(),
    );
    let (child, dir) = spawn(cmd, port, dir, "s3s-fs");
    let endpoint = format!("http://127.0.0.1:{port}");
    let options = BTreeMap::from([
        ("aws_endpoint".to_string(), endpoint.clone()),
        ("aws_allow_http".to_string(), "true".to_string()),
        ("aws_region".to_string(), "us-east-1".to_string()),
        ("aws_access_key_id".to_string(), S3_KEY.to_string()),
        ("aws_secret_access_key".to_string(), S3_SECRET.to_string()),
    ]);
    let env = vec![
        ("AWS_ENDPOINT".to_string(), endpoint),
        ("AWS_ALLOW_HTTP".to_string(), "true".to_string()),
        ("AWS_REGION".to_string(), "us-east-1".to_string()),
        ("AWS_ACCESS_KEY_ID".to_string(), S3_KEY.to_string()),
        ("AWS_SECRET_ACCESS_KEY".to_string(), S3_SECRET.to_string()),
    ];
    Server {
        child,
        program,
        args,
        port,
        _dir: dir,
        url: "s3://strata/repo".into(),
        options,
        env,
    }
}

const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// azurite's blob service, with container `strata`.
pub fn azure() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = Command::new(tool("STRATA_TEST_AZURITE"));
    cmd.args([
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        &port.to_string(),
        "--skipApiVersionCheck",
        "--loose",
        "--disableTelemetry",
        "--silent",
    ])
    .arg("--location")
    .arg(dir.path().join("data"));
    let (program, args) = (
        PathBuf::from(cmd.get_program()),
        cmd.get_args().map(|a| a.to_os_string()).collect(),
    );
    let (child, dir) = spawn(cmd, port, dir, "azurite");
    let endpoint = format!("http://127.0.0.1:{port}/{AZURITE_ACCOUNT}");
    let connection = format!(
        "DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};BlobEndpoint={endpoint};"
    );
    let created = Command::new(tool("STRATA_TEST_PYTHON"))
        .args(["-c", "import sys; from azure.storage.blob import BlobServiceClient as C; C.from_connection_string(sys.argv[1]).create_container('strata')"])
        .arg(&connection)
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "cannot create the azurite container: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    let options = BTreeMap::from([
        (
            "azure_storage_account_name".to_string(),
            AZURITE_ACCOUNT.to_string(),
        ),
        (
            "azure_storage_account_key".to_string(),
            AZURITE_KEY.to_string(),
        ),
        ("azure_storage_endpoint".to_string(), endpoint.clone()),
        ("allow_http".to_string(), "true".to_string()),
    ]);
    let env = vec![
        (
            "AZURE_STORAGE_ACCOUNT_NAME".to_string(),
            AZURITE_ACCOUNT.to_string(),
        ),
        (
            "AZURE_STORAGE_ACCOUNT_KEY".to_string(),
            AZURITE_KEY.to_string(),
        ),
        ("AZURE_STORAGE_ENDPOINT".to_string(), endpoint),
        ("AZURE_ALLOW_HTTP".to_string(), "true".to_string()),
    ];
    Server {
        child,
        program,
        args,
        port,
        _dir: dir,
        url: "az://strata/repo".into(),
        options,
        env,
    }
}

/// fake-gcs-server over plain HTTP, with bucket `strata`.
pub fn gcs() -> Server {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data/strata")).unwrap();
    let port = free_port();
    let mut cmd = Command::new(tool("STRATA_TEST_FAKE_GCS"));
    cmd.args([
        "-scheme",
        "http",
        "-host",
        "127.0.0.1",
        "-port",
        &port.to_string(),
        "-backend",
        "filesystem",
    ])
    .args([
        "-public-host",
        &format!("127.0.0.1:{port}"),
        "-external-url",
        &format!("http://127.0.0.1:{port}"),
    ])
    .arg("-filesystem-root")
    .arg(dir.path().join("storage"))
    .arg("-data")
    .arg(dir.path().join("data"));
    let (program, args) = (
        PathBuf::from(cmd.get_program()),
        cmd.get_args().map(|a| a.to_os_string()).collect(),
    );
    let (child, dir) = spawn(cmd, port, dir, "fake-gcs-server");
    let account = dir.path().join("service-account.json");
    std::fs::write(
        &account,
        format!(r#"{{"gcs_base_url": "http://127.0.0.1:{port}", "disable_oauth": true, "client_email": "", "private_key": "", "private_key_id": ""}}"#),
    )
    .unwrap();
    let options = BTreeMap::from([
        (
            "google_service_account".to_string(),
            account.display().to_string(),
        ),
        ("allow_http".to_string(), "true".to_string()),
    ]);
    let env = vec![
        (
            "GOOGLE_SERVICE_ACCOUNT".to_string(),
            account.display().to_string(),
        ),
        ("GOOGLE_ALLOW_HTTP".to_string(), "true".to_string()),
    ];
    Server {
        child,
        program,
        args,
        port,
        _dir: dir,
        url: "gs://strata/repo".into(),
        options,
        env,
    }
}
