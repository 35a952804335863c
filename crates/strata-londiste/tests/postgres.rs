//! The Londiste library against a real PostgreSQL 15 with the Debian pgq, pgq_node and
//! londiste extensions, without the `strata` binary: root and leaf are two databases of
//! one cluster. `local::wait_sync` refuses a database without a node, names the tables
//! still copying when it gives up, and returns once the worker has copied them. The
//! `strata londiste` commands are tested through the binary in
//! `crates/strata/tests/londiste.rs`. Skipped, loudly, where PostgreSQL 15 is not
//! installed (`scripts/test.sh` installs it); `STRATA_REQUIRE_POSTGRES` turns a skip into
//! a failure.

use std::time::Duration;
use strata_londiste::admin::{self, AddTableOptions, NodeType};
use strata_londiste::worker::{self, WorkerOptions};
use strata_londiste::{local, LondisteError, NodeConfig, TableState};
use strata_testkit::pg::{skip_without_postgres, PgSite};

const QUEUE: &str = "replika";

/// The node's settings, as its ini file would give them.
fn node_config(site: &PgSite, node: &str) -> NodeConfig {
    NodeConfig::parse(
        &format!(
            "[londiste3]\njob_name = {node}_worker\ndb = {}\nqueue_name = {QUEUE}\nloop_delay = 0.1\n",
            site.dsn(node)
        ),
        "unused",
    )
    .unwrap()
}

/// Ticks the root's queue every 100 ms, as pgqd would, until aborted.
fn spawn_ticker(site: &PgSite) -> tokio::task::JoinHandle<()> {
    let dsn = site.dsn("root");
    tokio::spawn(async move {
        let client = strata_pgclient::Dsn::parse(&dsn)
            .unwrap()
            .connect()
            .await
            .unwrap();
        loop {
            let _ = client.batch_execute("select pgq.ticker()").await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_sync_names_the_tables_still_copying_until_the_worker_has_copied_them() {
    if skip_without_postgres() {
        return;
    }
    let site = PgSite::new("strata-londiste-lib");
    for db in ["root", "leaf"] {
        site.create_database(db, &["londiste cascade"]);
        site.pg
            .psql(db, "create table public.t (id int primary key, val text)");
    }
    site.pg.psql(
        "root",
        "insert into t select g, 'row ' || g from generate_series(1, 500) g",
    );
    let (root, leaf) = (node_config(&site, "root"), node_config(&site, "leaf"));

    // No node in the database yet: bad input, saying what to run, not a wait.
    let err = local::wait_sync(&leaf, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(err.is_bad_input(), "{err}");
    assert!(err.to_string().contains("create-leaf"), "{err}");

    admin::create_node(&root, NodeType::Root, "root", &site.dsn("root"), None)
        .await
        .unwrap();
    admin::create_node(
        &leaf,
        NodeType::Leaf,
        "leaf",
        &site.dsn("leaf"),
        Some(&site.dsn("root")),
    )
    .await
    .unwrap();
    site.pg.psql(
        "root",
        &format!("select pgq.set_queue_config('{QUEUE}', 'ticker_max_lag', '100 ms'); select pgq.set_queue_config('{QUEUE}', 'ticker_idle_period', '300 ms')"),
    );
    let tables = ["t".to_string()];
    admin::add_tables(&root, &tables, &AddTableOptions::default())
        .await
        .unwrap();
    admin::add_tables(&leaf, &tables, &AddTableOptions::default())
        .await
        .unwrap();

    // No worker: the copy never starts, and the timeout names the table and its state.
    let listed = local::tables(&leaf).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(
        listed[0].local && listed[0].state != TableState::Ok,
        "{listed:?}"
    );
    assert_eq!(
        local::not_in_sync(&listed),
        vec![format!("public.t ({})", listed[0].state)]
    );
    let err = local::wait_sync(&leaf, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, LondisteError::State(_)), "{err:?}");
    assert!(!err.is_bad_input());
    assert_eq!(
        err.to_string(),
        format!("not in sync after 1 s: public.t ({})", listed[0].state)
    );

    // With the worker (and a ticker) the copy finishes and the wait returns.
    let ticker = spawn_ticker(&site);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let replay = tokio::spawn(worker::run(leaf.clone(), WorkerOptions::default(), stopped));
    local::wait_sync(&leaf, Duration::from_secs(120))
        .await
        .unwrap();
    let listed = local::tables(&leaf).await.unwrap();
    assert_eq!(listed[0].state, TableState::Ok, "{listed:?}");
    assert!(local::not_in_sync(&listed).is_empty());
    assert_eq!(site.pg.psql("leaf", "select count(*) from t"), "500");
    stop.send(true).unwrap();
    replay.await.unwrap().unwrap();
    ticker.abort();
}
