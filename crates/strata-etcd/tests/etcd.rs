//! strata-etcd against real etcd clusters started on 127.0.0.1 (see `strata_testkit::etcd`, imported as `cluster`).

use strata_testkit::etcd as cluster;

use cluster::{put, put_leased, range, raw, EtcdCluster, Writer};
use std::collections::BTreeMap;
use std::time::Duration;
use strata_etcd::{Action, Client, EtcdError, LeasedKeys, Restore, Settings, Snapshot};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Snapshot of two prefixes: exactly their keys, binary values intact, read at one
/// revision over many pages while a writer keeps adding keys that sort last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_reads_the_prefixes_at_one_revision_in_pages() {
    let c = EtcdCluster::start(3).await;
    let m1 = c.url(0).to_string();
    for i in 1..=6 {
        put(
            &m1,
            format!("/a/{i}").as_bytes(),
            format!("a{i}").as_bytes(),
        )
        .await;
    }
    for i in 1..=5 {
        put(
            &m1,
            format!("/b/{i}").as_bytes(),
            format!("b{i}").as_bytes(),
        )
        .await;
    }
    let binary = [0u8, 255, 1, 2, 0x80, b'\n'];
    put(&m1, b"/b/bin", &binary).await;
    for outside in ["/c/x", "/a", "/a0", "/b"] {
        put(&m1, outside.as_bytes(), b"out").await;
    }

    let mut settings = c.settings(1);
    settings.prefixes = vec!["/b/".into(), "/a/".into()];
    let client = Client::connect(&settings).await.unwrap().with_page_size(2);

    // A writer on another member adding keys at the end of /b/ as fast as it can.
    let writer = Writer::start(c.url(2), Duration::ZERO, |n| {
        (format!("/b/zz-{n:05}").into_bytes(), b"late".to_vec())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let snapshot = client.snapshot().await.unwrap();
    let written = writer.stop();
    assert!(written > 0);

    let keys: Vec<String> = snapshot.kvs.iter().map(|kv| text(&kv.key)).collect();
    let late = keys.iter().filter(|k| k.starts_with("/b/zz-")).count();
    let mut expected: Vec<String> = (1..=6).map(|i| format!("/a/{i}")).collect();
    expected.extend((1..=5).map(|i| format!("/b/{i}")));
    expected.push("/b/bin".into());
    let early: Vec<String> = keys
        .iter()
        .filter(|k| !k.starts_with("/b/zz-"))
        .cloned()
        .collect();
    assert_eq!(
        early, expected,
        "exactly the keys under /a/ and /b/, sorted"
    );
    assert!(keys.windows(2).all(|w| w[0] < w[1]));
    assert!(keys.len() > 3 * 2, "more than three pages of two keys");
    let bin = snapshot.kvs.iter().find(|kv| kv.key == b"/b/bin").unwrap();
    assert_eq!(bin.value, binary);
    assert_eq!(snapshot.prefixes, vec![b"/a/".to_vec(), b"/b/".to_vec()]);
    assert_eq!(snapshot.cluster_id, client.cluster_id());

    // One revision: what a single unpaginated range at that revision returns, no more
    // (none of the writer's later keys), no less.
    let mut at_revision = range(&m1, b"/a/", snapshot.revision).await;
    at_revision.extend(range(&m1, b"/b/", snapshot.revision).await);
    let got: Vec<(Vec<u8>, Vec<u8>, i64)> = snapshot
        .kvs
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone(), kv.lease))
        .collect();
    assert_eq!(
        got.len(),
        at_revision.len(),
        "{late} of the writer's keys in the snapshot: as many keys as at its revision"
    );
    assert_eq!(got, at_revision);
    assert!(snapshot
        .kvs
        .iter()
        .all(|kv| kv.mod_revision <= snapshot.revision));
    let now = range(&m1, b"/b/zz-", 0).await.len();
    assert!(
        now > late,
        "the writer went on after the snapshot's revision ({late} then, {now} now)"
    );

    assert_eq!(Snapshot::decode(&snapshot.encode()).unwrap(), snapshot);
}

/// The fingerprint ignores an excluded key updated every 200 ms, a key outside the
/// prefixes and a put of the same value; it changes with a checked value or lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fingerprint_ignores_excluded_keys_and_sees_checked_changes() {
    let c = EtcdCluster::start(3).await;
    let m1 = c.url(0).to_string();
    put(&m1, b"/service/pg/config", b"{\"ttl\":30}").await;
    put(&m1, b"/service/pg/members/db1", b"{\"role\":\"primary\"}").await;
    put(&m1, b"/service/pg/leader", b"db1").await;

    let mut settings = c.settings(0);
    settings.prefixes = vec!["/service/".into()];
    settings.exclude_from_check = vec!["/service/pg/leader".into()];
    let client = Client::connect(&settings).await.unwrap().with_page_size(2);

    let writer = Writer::start(c.url(1), Duration::from_millis(200), |n| {
        (
            b"/service/pg/leader".to_vec(),
            format!("db1 {n}").into_bytes(),
        )
    });
    let first = client.fingerprint().await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let second = client.fingerprint().await.unwrap();
    assert!(
        second.revision > first.revision,
        "the writer wrote meanwhile"
    );
    assert_eq!(first, second, "{first} vs {second}");
    assert_eq!(second.keys, 2);

    put(&m1, b"/service/pg/config", b"{\"ttl\":30}").await;
    put(&m1, b"/elsewhere", b"x").await;
    let same = client.fingerprint().await.unwrap();
    assert_eq!(same, second, "same value put, key outside the prefixes");

    put(&m1, b"/service/pg/config", b"{\"ttl\":31}").await;
    let changed = client.fingerprint().await.unwrap();
    assert_ne!(changed, same, "a checked value changed");

    put_leased(&m1, b"/service/pg/members/db1", b"{\"role\":\"primary\"}").await;
    let leased = client.fingerprint().await.unwrap();
    assert_ne!(leased, changed, "a checked key got bound to a lease");

    put(&m1, b"/service/pg/members/db2", b"{}").await;
    assert_ne!(client.fingerprint().await.unwrap(), leased, "a new key");

    assert!(writer.stop() > 0);
    let snapshot = client.snapshot().await.unwrap();
    assert!(
        snapshot
            .kvs
            .iter()
            .any(|kv| kv.key == b"/service/pg/leader"),
        "excluded from the check, still backed up"
    );
}

/// Restore with a new prefix and renames through another member: dry run writes
/// nothing, leased keys skipped then restored without lease, a non-empty target refused
/// without overwrite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_renames_into_an_empty_prefix_through_another_member() {
    let c = EtcdCluster::start(3).await;
    let m1 = c.url(0).to_string();
    let config = br#"{"ttl":30,"postgresql":{"listen":"10.0.0.1:5432"}}"#;
    let db1 = br#"{"conn_url":"postgres://10.0.0.1:5432/postgres","name":"db1"}"#;
    let db2 = br#"{"conn_url":"postgres://10.0.0.2:5432/postgres","name":"db2"}"#;
    let blob = [0u8, 1, 2, 255, 254];
    put(&m1, b"/service/old/config", config).await;
    put(&m1, b"/service/old/members/db1", db1).await;
    put(&m1, b"/service/old/members/db2", db2).await;
    put(&m1, b"/service/old/blob", &blob).await;
    put_leased(&m1, b"/service/old/leader", b"db1").await;
    put(&m1, b"/service/other/x", b"untouched").await;

    let mut source = c.settings(0);
    source.prefixes = vec!["/service/old/".into()];
    let snapshot = Client::connect(&source)
        .await
        .unwrap()
        .snapshot()
        .await
        .unwrap();
    assert_eq!(snapshot.kvs.len(), 5);
    let snapshot = Snapshot::decode(&snapshot.encode()).unwrap();

    let target = Client::connect(&c.settings(2)).await.unwrap();
    let rules = Restore {
        target_prefix: Some(("/service/old/".into(), "/service/new/".into())),
        rename: vec![
            Restore::parse_rule("db1=newdb1").unwrap(),
            Restore::parse_rule("10.0.0.1:5432=10.1.0.1:5432").unwrap(),
        ],
        ..Restore::default()
    };
    assert_eq!(rules.leased, LeasedKeys::Skip);

    // Dry run.
    let plan = target.plan_restore(&snapshot, &rules).await.unwrap();
    let lines = plan.lines();
    let shown = lines.join("\n");
    assert!(
        lines[0].contains("4 put, 0 change, 0 same, 1 skip-leased"),
        "{shown}"
    );
    assert!(
        shown.contains(
            r#"put         "/service/new/members/newdb1" (from "/service/old/members/db1") = "{\"conn_url\":\"postgres://10.1.0.1:5432/postgres\""#
        ),
        "{shown}"
    );
    assert!(
        shown.contains(
            r#"skip-leased "/service/new/leader" (from "/service/old/leader") (bound to a lease)"#
        ),
        "{shown}"
    );
    assert!(shown.contains("0x000102fffe (5 bytes, binary)"), "{shown}");
    assert!(
        range(&m1, b"/service/new/", 0).await.is_empty(),
        "a plan writes nothing"
    );

    let report = target.apply(&plan).await.unwrap();
    assert_eq!(
        (report.put, report.skipped_leased, report.changed),
        (4, 1, 0)
    );
    assert_eq!(report.transactions, 1, "a topology is restored all at once");

    let restored: BTreeMap<String, Vec<u8>> = range(c.url(1), b"/service/new/", 0)
        .await
        .into_iter()
        .map(|(k, v, lease)| {
            assert_eq!(lease, 0);
            (text(&k), v)
        })
        .collect();
    let expected: BTreeMap<String, Vec<u8>> = [
        ("/service/new/blob", blob.to_vec()),
        (
            "/service/new/config",
            br#"{"ttl":30,"postgresql":{"listen":"10.1.0.1:5432"}}"#.to_vec(),
        ),
        (
            "/service/new/members/db2",
            br#"{"conn_url":"postgres://10.0.0.2:5432/postgres","name":"db2"}"#.to_vec(),
        ),
        (
            "/service/new/members/newdb1",
            br#"{"conn_url":"postgres://10.1.0.1:5432/postgres","name":"newdb1"}"#.to_vec(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(restored, expected);
    assert_eq!(
        range(&m1, b"/service/old/", 0).await.len(),
        5,
        "source untouched"
    );
    assert_eq!(range(&m1, b"/service/other/", 0).await.len(), 1);

    // The target is not empty any more: refused without overwrite, nothing written.
    put(&m1, b"/service/new/config", b"edited").await;
    let plan = target.plan_restore(&snapshot, &rules).await.unwrap();
    assert!(
        plan.lines()[1].starts_with(r#"refused: 1 keys under "/service/new/" hold other values"#),
        "{:?}",
        plan.lines()
    );
    match target.apply(&plan).await {
        Err(EtcdError::Refused(message)) => assert!(message.contains("overwrite"), "{message}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let config_now = range(&m1, b"/service/new/config", 0).await;
    assert_eq!(config_now[0].1, b"edited");

    // Overwrite, leased keys without lease.
    let rules = Restore {
        leased: LeasedKeys::WithoutLease,
        overwrite: true,
        ..rules
    };
    let plan = target.plan_restore(&snapshot, &rules).await.unwrap();
    let action = |key: &str| {
        plan.entries
            .iter()
            .find(|e| e.key == key.as_bytes())
            .unwrap()
            .action
    };
    assert_eq!(action("/service/new/leader"), Action::Put);
    assert_eq!(action("/service/new/config"), Action::Change);
    assert_eq!(action("/service/new/blob"), Action::Same);
    assert!(
        plan.lines().iter().any(|l| l.contains(r#"(was "edited")"#)),
        "{:?}",
        plan.lines()
    );
    let report = target.apply(&plan).await.unwrap();
    assert_eq!((report.put, report.changed, report.same), (1, 1, 3));
    let leader = range(&m1, b"/service/new/leader", 0).await;
    assert_eq!(
        leader,
        vec![(b"/service/new/leader".to_vec(), b"newdb1".to_vec(), 0)]
    );
    let config_now = range(&m1, b"/service/new/config", 0).await;
    assert_eq!(config_now[0].1, expected["/service/new/config"]);
}

/// Restores go in transactions (all or nothing each): 300 keys take three; a restore run
/// again after one that stopped part-way finds its own keys and completes; a key written
/// by someone else between the plan and the write stops the restore with nothing of that
/// transaction written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_are_transactions_resumable_and_guarded() {
    let c = EtcdCluster::start(1).await;
    let url = c.url(0).to_string();
    for i in 0..300 {
        put(
            &url,
            format!("/many/k{i:03}").as_bytes(),
            format!("v{i}").as_bytes(),
        )
        .await;
    }
    let mut source = c.settings(0);
    source.prefixes = vec!["/many/".into()];
    let snapshot = Client::connect(&source)
        .await
        .unwrap()
        .snapshot()
        .await
        .unwrap();
    let client = Client::connect(&c.settings(0)).await.unwrap();
    let into = |to: &str| Restore {
        target_prefix: Some(("/many/".into(), to.into())),
        ..Restore::default()
    };

    let plan = client.plan_restore(&snapshot, &into("/a/")).await.unwrap();
    let report = client.apply(&plan).await.unwrap();
    assert_eq!((report.put, report.transactions), (300, 3));
    assert_eq!(range(&url, b"/a/", 0).await.len(), 300);

    // A restore that stopped after its first 100 keys: run again, it completes.
    for i in 0..100 {
        put(
            &url,
            format!("/b/k{i:03}").as_bytes(),
            format!("v{i}").as_bytes(),
        )
        .await;
    }
    let plan = client.plan_restore(&snapshot, &into("/b/")).await.unwrap();
    assert_eq!(plan.refusal(), None, "{:?}", plan.lines());
    let report = client.apply(&plan).await.unwrap();
    assert_eq!(
        (report.same, report.put, report.transactions),
        (100, 200, 3)
    );
    let restored = range(&url, b"/b/", 0).await;
    assert_eq!(restored.len(), 300);
    for (key, value, _) in &restored {
        let n: u32 = text(&key[4..]).parse().unwrap();
        assert_eq!(text(value), format!("v{n}"));
    }

    // Overwriting /a/k001 and /a/k002 (edited since): someone writes k001 again between
    // the plan and the write. That transaction writes nothing: k002 keeps its edit.
    put(&url, b"/a/k001", b"edited").await;
    put(&url, b"/a/k002", b"edited").await;
    let rules = Restore {
        overwrite: true,
        ..into("/a/")
    };
    let plan = client.plan_restore(&snapshot, &rules).await.unwrap();
    assert_eq!(plan.count(Action::Change), 2);
    put(&url, b"/a/k001", b"raced").await;
    match client.apply(&plan).await {
        Err(EtcdError::Refused(message)) => {
            assert!(message.contains("written by someone else"), "{message}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(range(&url, b"/a/k001", 0).await[0].1, b"raced");
    assert_eq!(range(&url, b"/a/k002", 0).await[0].1, b"edited");

    // A key that held its value at planning time is compared too: changed before the
    // write, the restore does not report success over it.
    let plan = client.plan_restore(&snapshot, &into("/b/")).await.unwrap();
    assert_eq!(plan.count(Action::Same), 300);
    put(&url, b"/b/k007", b"changed meanwhile").await;
    assert!(matches!(
        client.apply(&plan).await,
        Err(EtcdError::Refused(_))
    ));
}

/// User/password authentication: refused without credentials or with a wrong password,
/// with a message saying what to set; works with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_password() {
    let c = EtcdCluster::start(1).await;
    let url = c.url(0).to_string();
    put(&url, b"/app/k", b"v").await;
    raw(
        &url,
        "/v3/auth/user/add",
        serde_json::json!({"name": "root", "password": "s3cret"}),
    )
    .await;
    raw(
        &url,
        "/v3/auth/role/add",
        serde_json::json!({"name": "root"}),
    )
    .await;
    raw(
        &url,
        "/v3/auth/user/grant",
        serde_json::json!({"user": "root", "role": "root"}),
    )
    .await;
    raw(&url, "/v3/auth/enable", serde_json::json!({})).await;

    let mut settings = c.settings(0);
    settings.prefixes = vec!["/app/".into()];
    let without = async { Client::connect(&settings).await?.snapshot().await };
    match without.await {
        Err(e @ EtcdError::Auth { .. }) => {
            let message = e.to_string();
            assert!(message.contains("user name is empty"), "{message}");
            assert!(
                message.contains("set user and password_env or password_file"),
                "{message}"
            );
        }
        other => panic!("expected an authentication error, got {other:?}"),
    }

    let password = c.dir.path().join("password");
    std::fs::write(&password, "wrong\n").unwrap();
    settings.user = Some("root".into());
    settings.password_file = Some(password.clone());
    match Client::connect(&settings).await {
        Err(e @ EtcdError::Auth { .. }) => {
            let message = e.to_string();
            assert!(message.contains("authentication failed"), "{message}");
            assert!(
                !message.contains("wrong"),
                "no password in messages: {message}"
            );
        }
        other => panic!("expected an authentication error, got {other:?}"),
    }

    std::fs::write(&password, "s3cret\n").unwrap();
    let client = Client::connect(&settings).await.unwrap();
    assert!(!format!("{client:?}").contains("s3cret"));
    let snapshot = client.snapshot().await.unwrap();
    assert_eq!(snapshot.kvs.len(), 1);
    assert_eq!(snapshot.kvs[0].value, b"v");
}

/// HTTPS with a client certificate against `--client-cert-auth`: works with the
/// certificate (reads and writes), fails clearly without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_certificates() {
    let c = EtcdCluster::start_tls().await;
    let mut settings = c.settings(0);
    settings.prefixes = vec!["/tls/".into()];
    assert!(c.url(0).starts_with("https://"));
    let client = Client::connect(&settings).await.unwrap();

    // Write through a restore, read back through a snapshot.
    let written = Snapshot {
        revision: 1,
        cluster_id: String::new(),
        prefixes: vec![b"/tls/".to_vec()],
        kvs: vec![strata_etcd::Kv {
            key: b"/tls/k".to_vec(),
            value: b"over https".to_vec(),
            lease: 0,
            create_revision: 1,
            mod_revision: 1,
            version: 1,
        }],
    };
    let plan = client
        .plan_restore(&written, &Restore::default())
        .await
        .unwrap();
    client.apply(&plan).await.unwrap();
    let snapshot = client.snapshot().await.unwrap();
    assert_eq!(snapshot.kvs.len(), 1);
    assert_eq!(snapshot.kvs[0].value, b"over https");

    let mut no_cert = settings.clone();
    no_cert.cert_file = None;
    no_cert.key_file = None;
    let without = async { Client::connect(&no_cert).await?.snapshot().await };
    let message = without.await.unwrap_err().to_string();
    assert!(message.to_lowercase().contains("certificate"), "{message}");
    assert!(
        message.contains("check ca_file, cert_file and key_file"),
        "{message}"
    );

    let mut no_ca = settings.clone();
    no_ca.ca_file = None;
    let message = Client::connect(&no_ca).await.unwrap_err().to_string();
    assert!(message.to_lowercase().contains("certificate"), "{message}");
}

/// The first endpoint refuses connections: requests go to the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_fall_back_to_the_next() {
    let c = EtcdCluster::start(1).await;
    put(c.url(0), b"/f/k", b"v").await;
    let dead = format!("http://127.0.0.1:{}", strata_testkit::net::free_port());
    let mut settings = Settings::new([dead.clone(), c.url(0).to_string()]);
    settings.prefixes = vec!["/f/".into()];
    let client = Client::connect(&settings).await.unwrap();
    let snapshot = client.snapshot().await.unwrap();
    assert_eq!(snapshot.kvs.len(), 1);
    assert!(client.fingerprint().await.is_ok());

    let mut all_dead = Settings::new([dead.clone()]);
    all_dead.timeout = Duration::from_secs(2);
    match Client::connect(&all_dead).await {
        Err(e @ EtcdError::Unreachable { .. }) => {
            let message = e.to_string();
            assert!(message.contains(&dead), "{message}");
        }
        other => panic!("expected unreachable, got {other:?}"),
    }
}
