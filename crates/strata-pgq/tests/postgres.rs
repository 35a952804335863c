//! The PgQ library against a real PostgreSQL 15 with the Debian pgq extension, without
//! the `strata` binary: events written by the real `logutriga`/`sqltriga`/`jsontriga`
//! triggers decode exactly; cooperative subconsumers share a stream and take over a dead
//! batch; custom batch rules and a tiny byte cap; exactly-once application locks the
//! consumer's row from the first batch and holds for cooperative subconsumers, also under
//! concurrent siblings. The `strata pgq` commands and the ticker daemon are tested through
//! the binary in `crates/strata/tests/pgq.rs`. Skipped, loudly, where PostgreSQL 15 is not
//! installed (`scripts/test.sh` installs it); `STRATA_REQUIRE_POSTGRES` turns a skip into
//! a failure.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use strata_pgq::completed;
use strata_pgq::event::{Format, Op};
use strata_pgq::{Consumer, ConsumerOptions};
use strata_testkit::pg::{skip_without_postgres, PgSite};

/// A running cluster and a scratch directory (the kit's [`PgSite`]) with PgQ in the
/// given databases.
struct Site(PgSite);

impl std::ops::Deref for Site {
    type Target = PgSite;
    fn deref(&self) -> &PgSite {
        &self.0
    }
}

impl Site {
    fn new(dbs: &[&str]) -> Site {
        Site(PgSite::with_databases("strata-pgq-lib", dbs, &["pgq"]))
    }
}

// `drain_batch` and `drain` are also in crates/strata/tests/pgq.rs, whose binary tests
// consume queues too: PgQ-specific, so they stay out of the generic test kit.

/// Forces a tick on `queue` (what a ticker would do once events are due).
async fn tick(client: &strata_pgclient::Client, queue: &str) {
    client
        .batch_execute(&format!(
            "select pgq.force_tick('{queue}'); select pgq.ticker('{queue}');"
        ))
        .await
        .unwrap();
}

/// Every event of one batch, then finishes it.
async fn drain_batch(consumer: &mut Consumer, batch: &strata_pgq::Batch) -> Vec<strata_pgq::Event> {
    let mut all = Vec::new();
    let mut stream = consumer.events(batch).await.unwrap();
    while let Some(chunk) = stream.next_chunk().await.unwrap() {
        all.extend(chunk);
    }
    stream.close().await.unwrap();
    consumer.finish_batch(batch).await.unwrap();
    all
}

/// Every event of every batch until none is left, finishing each batch.
async fn drain(consumer: &mut Consumer) -> Vec<strata_pgq::Event> {
    let mut all = Vec::new();
    while let Some(batch) = consumer.next_batch().await.unwrap() {
        let mut stream = consumer.events(&batch).await.unwrap();
        while let Some(chunk) = stream.next_chunk().await.unwrap() {
            all.extend(chunk);
        }
        stream.close().await.unwrap();
        consumer.finish_batch(&batch).await.unwrap();
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_the_real_triggers_decode_exactly() {
    if skip_without_postgres() {
        return;
    }
    let site = Site::new(&["app"]);
    let client = site.client("app").await;
    client
        .batch_execute(
            r#"select pgq.create_queue('q');
            create table "My T"(id int primary key, "Val x" text, n numeric, b bool, j jsonb);
            create trigger l after insert or update or delete on "My T" for each row execute procedure pgq.logutriga('q');
            create trigger s after insert or update or delete on "My T" for each row execute procedure pgq.sqltriga('q');
            create trigger js after insert or update or delete on "My T" for each row execute procedure pgq.jsontriga('q');
            create trigger lt after truncate on "My T" for each statement execute procedure pgq.logutriga('q');
            create trigger st after truncate on "My T" for each statement execute procedure pgq.sqltriga('q');
            create trigger jt after truncate on "My T" for each statement execute procedure pgq.jsontriga('q');"#,
        )
        .await
        .unwrap();
    let mut consumer = Consumer::new(
        site.client("app").await,
        "q",
        "c",
        ConsumerOptions::default(),
    )
    .unwrap();
    assert!(consumer.register().await.unwrap());
    assert!(
        !consumer.register().await.unwrap(),
        "registering twice is a no-op"
    );
    let hostile = "a b&c=d'e\"f\\g é%+\n\t=&";
    client
        .execute(
            r#"insert into "My T" values (1, $1, 1.5, true, '{"k": [1, 2]}'), (2, null, null, null, null)"#,
            &[&hostile],
        )
        .await
        .unwrap();
    client
        .batch_execute(
            r#"update "My T" set "Val x" = null, n = 2 where id = 1; delete from "My T" where id = 2; truncate "My T";"#,
        )
        .await
        .unwrap();
    tick(&client, "q").await;
    let events = drain(&mut consumer).await;
    // 2 inserts, 1 update, 1 delete, 1 truncate, each written by three triggers.
    assert_eq!(events.len(), 15, "{events:#?}");
    let changes: Vec<_> = events
        .iter()
        .map(|e| e.row_change().unwrap().unwrap())
        .collect();
    let text = |v: &str| Some(v.to_string());
    let row1 = vec![
        ("id".to_string(), text("1")),
        ("Val x".to_string(), text(hostile)),
        ("n".to_string(), text("1.5")),
        ("b".to_string(), text("t")),
        ("j".to_string(), text("{\"k\": [1, 2]}")),
    ];
    let row2: Vec<_> = ["id", "Val x", "n", "b", "j"]
        .iter()
        .map(|c| (c.to_string(), if *c == "id" { text("2") } else { None }))
        .collect();
    for format in [Format::Urlenc, Format::Sql, Format::Json] {
        let mine: Vec<_> = changes
            .iter()
            .filter(|c| c.format == format || (c.op == Op::Truncate && format == Format::Urlenc))
            .collect();
        let inserts: Vec<_> = mine.iter().filter(|c| c.op == Op::Insert).collect();
        assert_eq!(inserts.len(), 2, "{format:?}");
        assert_eq!(inserts[0].row, row1, "{format:?}");
        assert_eq!(inserts[1].row, row2, "{format:?}");
        assert!(inserts.iter().all(|c| c.table == "public.My T"));
        let update = mine.iter().find(|c| c.op == Op::Update).unwrap();
        assert_eq!(
            update.key,
            vec![("id".to_string(), text("1"))],
            "{format:?}"
        );
        let val = update.row.iter().find(|(k, _)| k == "Val x").unwrap();
        assert_eq!(val.1, None, "{format:?}: NULL after the update");
        let n = update.row.iter().find(|(k, _)| k == "n").unwrap();
        assert_eq!(n.1, text("2"), "{format:?}");
        let delete = mine.iter().find(|c| c.op == Op::Delete).unwrap();
        assert_eq!(
            delete.key,
            vec![("id".to_string(), text("2"))],
            "{format:?}"
        );
    }
    assert_eq!(changes.iter().filter(|c| c.op == Op::Truncate).count(), 3);
    assert!(
        events
            .iter()
            .filter(|e| e.ev_type.as_deref() == Some("R"))
            .count()
            == 2
    );
    // Nothing left: the batch was finished.
    assert!(consumer.next_batch().await.unwrap().is_none());
    assert!(consumer.unregister().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_subconsumers_share_a_stream_and_take_over_a_dead_batch() {
    use std::sync::{Arc, Mutex};
    if skip_without_postgres() {
        return;
    }
    let site = Site::new(&["app"]);
    let client = site.client("app").await;
    client
        .batch_execute("select pgq.create_queue('q')")
        .await
        .unwrap();
    strata_pgq::api::register_consumer(&client, "q", "c")
        .await
        .unwrap();
    strata_pgq::coop::setup(&client).await.unwrap();
    strata_pgq::coop::setup(&client).await.unwrap();
    let dead = Some(Duration::from_secs(1));
    let sub = |name: &'static str| {
        let site = &site;
        async move {
            let mut c = Consumer::cooperative(
                site.client("app").await,
                "q",
                "c",
                name,
                dead,
                ConsumerOptions::default(),
            )
            .unwrap();
            assert!(c.register().await.unwrap());
            assert!(!c.register().await.unwrap());
            c
        }
    };
    let mut s1 = sub("s1").await;
    let mut s2 = sub("s2").await;
    let mut s3 = sub("s3").await;
    for t in 0..20 {
        client
            .batch_execute(&format!(
                "select pgq.insert_event('q', 'n', g::text) from generate_series({}, {}) g",
                t * 100 + 1,
                t * 100 + 100
            ))
            .await
            .unwrap();
        tick(&client, "q").await;
    }
    // Three subconsumers hold three different batches at once: the stream is shared.
    let b1 = s1.next_batch().await.unwrap().unwrap();
    let b2 = s2.next_batch().await.unwrap().unwrap();
    let b3 = s3.next_batch().await.unwrap().unwrap();
    assert!(b1.batch_id != b2.batch_id && b2.batch_id != b3.batch_id && b1.batch_id != b3.batch_id);
    assert_eq!(b2.prev_tick_id, b1.cur_tick_id, "consecutive tick ranges");
    assert_eq!(
        s2.next_batch().await.unwrap(),
        Some(b2.clone()),
        "the same batch until finished"
    );
    // s1 dies holding its batch: its connection goes away, nothing applied.
    drop(s1);
    let seen = Arc::new(Mutex::new(Vec::<i64>::new()));
    let batches = Arc::new(Mutex::new(Vec::<(i64, i64)>::new()));
    let mut tasks = Vec::new();
    for (n, mut consumer) in [s2, s3].into_iter().enumerate() {
        let seen = seen.clone();
        let batches = batches.clone();
        tasks.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut retried = false;
            loop {
                if seen.lock().unwrap().len() >= 2000 {
                    return consumer;
                }
                assert!(Instant::now() < deadline, "subconsumers stalled");
                let Some(batch) = consumer.next_batch().await.unwrap() else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let mut stream = consumer.events(&batch).await.unwrap();
                let mut mine = Vec::new();
                while let Some(chunk) = stream.next_chunk().await.unwrap() {
                    for e in chunk {
                        if n == 0 && !retried {
                            // Once: retry an event instead of applying it; it comes back.
                            stream.retry(&e, Duration::ZERO).await.unwrap();
                            retried = true;
                            continue;
                        }
                        mine.push(e.data.unwrap().parse::<i64>().unwrap());
                    }
                }
                stream.close().await.unwrap();
                consumer.finish_batch(&batch).await.unwrap();
                seen.lock().unwrap().extend(mine);
                batches
                    .lock()
                    .unwrap()
                    .push((batch.prev_tick_id, batch.cur_tick_id));
            }
        }));
    }
    // The retried event is due at once: move it back and tick so it comes again.
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().unwrap().len() < 2000 {
        assert!(
            Instant::now() < deadline,
            "events missing: {}",
            seen.lock().unwrap().len()
        );
        client
            .batch_execute("select pgq.maint_retry_events()")
            .await
            .unwrap();
        tick(&client, "q").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut finished = Vec::new();
    for t in tasks {
        finished.push(t.await.unwrap());
    }
    let seen = seen.lock().unwrap().clone();
    let unique: BTreeSet<i64> = seen.iter().copied().collect();
    assert_eq!(seen.len(), 2000, "every event exactly once");
    assert_eq!(unique, (1..=2000).collect());
    assert!(
        batches
            .lock()
            .unwrap()
            .contains(&(b1.prev_tick_id, b1.cur_tick_id)),
        "the dead subconsumer's tick range was taken over"
    );
    // Idle subconsumers keep no position, so they never hold back rotation.
    let held: i64 = client
        .query_one(
            "select count(*) from pgq.subscription s join pgq.consumer c on c.co_id = s.sub_consumer where c.co_name like 'c.%' and s.sub_last_tick is not null",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(held, 0);
    for mut consumer in finished {
        assert!(consumer.unregister().await.unwrap());
    }
    // The silent one comes back: its old batch id is gone, so it can neither read nor
    // finish the batch it lost.
    let mut s1 = Consumer::cooperative(
        site.client("app").await,
        "q",
        "c",
        "s1",
        dead,
        ConsumerOptions::default(),
    )
    .unwrap();
    let err = s1.finish_batch(&b1).await.unwrap_err();
    assert!(
        matches!(err, strata_pgq::PgqError::TakenOver(id) if id == b1.batch_id),
        "{err}"
    );
    assert!(s1.events(&b1).await.is_err(), "its cursor finds no batch");
    assert!(
        s1.unregister().await.unwrap(),
        "its batch was taken over, so it can go"
    );
    assert!(!s1.unregister().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_batch_rules_and_a_tiny_byte_cap() {
    if skip_without_postgres() {
        return;
    }
    let site = Site::new(&["app"]);
    let client = site.client("app").await;
    client
        .batch_execute(
            "select pgq.create_queue('q'); select pgq.set_queue_config('q', 'ticker_max_count', '5')",
        )
        .await
        .unwrap();
    let consumer_with = |rules: strata_pgq::BatchRules, byte_cap: usize, name: &'static str| {
        let site = &site;
        async move {
            let mut c = Consumer::new(
                site.client("app").await,
                "q",
                name,
                ConsumerOptions { byte_cap, rules },
            )
            .unwrap();
            c.register().await.unwrap();
            c
        }
    };
    let mut merged = consumer_with(
        strata_pgq::BatchRules {
            min_count: Some(30),
            ..Default::default()
        },
        8 << 20,
        "merged",
    )
    .await;
    let mut delayed = consumer_with(
        strata_pgq::BatchRules {
            min_lag: Some(Duration::from_secs(3600)),
            ..Default::default()
        },
        8 << 20,
        "delayed",
    )
    .await;
    let mut tiny = consumer_with(Default::default(), 1, "tiny").await;
    for t in 0..5 {
        client
            .batch_execute(&format!(
                "select pgq.insert_event('q', 'n', repeat('x', 100 + g)) from generate_series({}, {}) g",
                t * 10 + 1,
                t * 10 + 10
            ))
            .await
            .unwrap();
        // More than ticker_max_count new events: pgq.ticker ticks by its own rule, so
        // the event sequence stays exact (force_tick would push it by thousands).
        let ticked: Option<i64> = client
            .query_one("select pgq.ticker('q')", &[])
            .await
            .unwrap()
            .get(0);
        assert!(ticked.is_some());
    }
    // min_count 30: ticks are merged until the batch holds at least 30 events.
    let batch = merged.next_batch().await.unwrap().unwrap();
    assert!(
        batch.cur_tick_id - batch.prev_tick_id >= 3,
        "one batch spans several ticks: {batch:?}"
    );
    let events = drain_batch(&mut merged, &batch).await;
    assert!(events.len() >= 30, "{}", events.len());
    // min_lag one hour: nothing is old enough yet.
    assert_eq!(delayed.next_batch().await.unwrap(), None);
    // A cap smaller than any event: one event per chunk, all of them, in order.
    let mut ids = Vec::new();
    while let Some(batch) = tiny.next_batch().await.unwrap() {
        let mut stream = tiny.events(&batch).await.unwrap();
        while let Some(chunk) = stream.next_chunk().await.unwrap() {
            assert_eq!(chunk.len(), 1);
            ids.push(chunk[0].id);
        }
        stream.close().await.unwrap();
        tiny.finish_batch(&batch).await.unwrap();
    }
    assert_eq!(ids, (1..=50).collect::<Vec<i64>>());
    let stats = tiny.stats();
    assert_eq!(stats.events, 50);
    assert!(
        stats.max_buffered_bytes < 300,
        "one event at a time: {stats:?}"
    );
    // min_interval: ticks are merged until the batch spans at least that long. Tick
    // times are chosen (an external-ticker queue takes ticks with their timestamps), so
    // this is exact: ticks at +0 (the queue's first), +10, +20, +30 and +70 s.
    client
        .batch_execute(
            "select pgq.create_queue('ext'); select pgq.set_queue_config('ext', 'external_ticker', 'true')",
        )
        .await
        .unwrap();
    let interval_consumer = |min_interval: Duration, name: &'static str| {
        let site = &site;
        async move {
            let mut c = Consumer::new(
                site.client("app").await,
                "ext",
                name,
                ConsumerOptions {
                    rules: strata_pgq::BatchRules {
                        min_interval: Some(min_interval),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            )
            .unwrap();
            c.register().await.unwrap();
            c
        }
    };
    let mut spanning = interval_consumer(Duration::from_secs(25), "spanning").await;
    let mut hourly = interval_consumer(Duration::from_secs(3600), "hourly").await;
    client
        .batch_execute(
            "select pgq.ticker('ext', n + 1, t.tick_time + n * interval '10 seconds', 1) \
               from (select tick_time from pgq.tick join pgq.queue on queue_id = tick_queue \
                      where queue_name = 'ext' and tick_id = 1) t, generate_series(1, 3) n; \
             select pgq.ticker('ext', 5, tick_time + interval '70 seconds', 1) \
               from pgq.tick join pgq.queue on queue_id = tick_queue \
              where queue_name = 'ext' and tick_id = 1;",
        )
        .await
        .unwrap();
    // From +0: the newest tick (+70) is more than twice 25 s away, so pgq takes the first
    // tick at least 25 s on: +30, merging three ticks.
    let batch = spanning.next_batch().await.unwrap().unwrap();
    assert_eq!((batch.prev_tick_id, batch.cur_tick_id), (1, 4), "{batch:?}");
    assert_eq!(
        batch
            .cur_tick_time
            .duration_since(batch.prev_tick_time)
            .unwrap(),
        Duration::from_secs(30)
    );
    spanning.finish_batch(&batch).await.unwrap();
    // From +30: +70 is 40 s on (at least 25, at most twice that): the newest tick.
    let batch = spanning.next_batch().await.unwrap().unwrap();
    assert_eq!((batch.prev_tick_id, batch.cur_tick_id), (4, 5), "{batch:?}");
    spanning.finish_batch(&batch).await.unwrap();
    assert_eq!(spanning.next_batch().await.unwrap(), None);
    // An hour: the 70 s of ticks make no batch yet.
    assert_eq!(hourly.next_batch().await.unwrap(), None);
    // Events that grow within one FETCH: 40 small ones, then 10 large ones, under a
    // 4 KiB cap. The FETCH sized for small events also brings large ones; the chunk still
    // ends at the cap, the rest of the FETCH comes in the next chunks, and a retry asked
    // for meanwhile (while that FETCH is half read) is sent once it is.
    client
        .batch_execute("select pgq.create_queue('grow')")
        .await
        .unwrap();
    let cap = 4096;
    let mut grower = Consumer::new(
        site.client("app").await,
        "grow",
        "grower",
        ConsumerOptions {
            byte_cap: cap,
            ..Default::default()
        },
    )
    .unwrap();
    grower.register().await.unwrap();
    client
        .batch_execute(
            "select pgq.insert_event('grow', 'n', repeat('s', 100)) from generate_series(1, 40); \
             select pgq.insert_event('grow', 'n', repeat('L', 3500)) from generate_series(41, 50);",
        )
        .await
        .unwrap();
    tick(&client, "grow").await;
    let batch = grower.next_batch().await.unwrap().unwrap();
    let mut stream = grower.events(&batch).await.unwrap();
    let (mut ids, mut retried) = (Vec::new(), None);
    while let Some(chunk) = stream.next_chunk().await.unwrap() {
        let bytes: usize = chunk.iter().map(|e| e.size()).sum();
        assert!(bytes <= cap, "a chunk of {bytes} bytes, cap {cap}");
        for e in &chunk {
            if retried.is_none() && e.data.as_deref().is_some_and(|d| d.starts_with('L')) {
                stream.retry(e, Duration::from_secs(3600)).await.unwrap();
                retried = Some(e.id);
            }
        }
        ids.extend(chunk.iter().map(|e| e.id));
    }
    let stats = stream.close().await.unwrap();
    grower.finish_batch(&batch).await.unwrap();
    assert_eq!(ids, (1..=50).collect::<Vec<i64>>());
    assert!(stats.max_buffered_bytes <= cap, "{stats:?}");
    let row = client
        .query_one(
            "select count(*), min(ev_id) from pgq.retry_queue r join pgq.subscription s on s.sub_id = r.ev_owner \
              join pgq.consumer c on c.co_id = s.sub_consumer where c.co_name = 'grower'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, Option<i64>>(1)),
        (1, retried),
        "the retry asked for mid-FETCH was committed with close"
    );
    // Sub-second retry delays are kept (pgq's integer variant would make 250 ms none at
    // all and 1.5 s one second), counted from the call, not from the transaction's start.
    client
        .batch_execute("select pgq.insert_event('grow', 'n', x::text) from generate_series(1, 2) x")
        .await
        .unwrap();
    tick(&client, "grow").await;
    let batch = grower.next_batch().await.unwrap().unwrap();
    let mut stream = grower.events(&batch).await.unwrap();
    let mut chunk = Vec::new();
    while let Some(more) = stream.next_chunk().await.unwrap() {
        chunk.extend(more);
    }
    assert_eq!(chunk.len(), 2);
    let before: std::time::SystemTime = client
        .query_one("select clock_timestamp()", &[])
        .await
        .unwrap()
        .get(0);
    stream
        .retry(&chunk[0], Duration::from_millis(250))
        .await
        .unwrap();
    stream
        .retry(&chunk[1], Duration::from_millis(1500))
        .await
        .unwrap();
    stream.close().await.unwrap();
    grower.finish_batch(&batch).await.unwrap();
    for (event, delay) in [(&chunk[0], 250), (&chunk[1], 1500)] {
        let due: std::time::SystemTime = client
            .query_one(
                "select ev_retry_after from pgq.retry_queue where ev_id = $1",
                &[&event.id],
            )
            .await
            .unwrap()
            .get(0);
        assert!(
            due >= before + Duration::from_millis(delay),
            "retry after {delay} ms: due {:?} after the call began",
            due.duration_since(before)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_locks_the_consumers_row_from_the_first_batch() {
    if skip_without_postgres() {
        return;
    }
    let site = Site::new(&["src", "dst"]);
    let source = site.client("src").await;
    source
        .batch_execute("select pgq.create_queue('q')")
        .await
        .unwrap();
    let mut consumer = Consumer::new(
        site.client("src").await,
        "q",
        "c",
        ConsumerOptions::default(),
    )
    .unwrap();
    consumer.register().await.unwrap();
    source
        .batch_execute("select pgq.insert_event('q', 'n', '1')")
        .await
        .unwrap();
    tick(&source, "q").await;
    let batch = consumer.next_batch().await.unwrap().unwrap();
    let mut first = site.client("dst").await;
    let mut second = site.client("dst").await;
    completed::setup(&first).await.unwrap();
    // Two copies of the consumer take the same first batch; the table has no row yet.
    let tx1 = first.transaction().await.unwrap();
    assert!(!completed::is_done(&tx1, "q", "c", &batch).await.unwrap());
    let other = {
        let batch = batch.clone();
        tokio::spawn(async move {
            let tx2 = second.transaction().await.unwrap();
            let done = completed::is_done(&tx2, "q", "c", &batch).await.unwrap();
            tx2.commit().await.unwrap();
            done
        })
    };
    // The first copy applies the batch and records it; only then does the second one's
    // is_done return, and it finds the batch done (without the lock it would have seen
    // no row and applied the batch again).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!other.is_finished(), "the second copy waits for the first");
    completed::mark_done(&tx1, "q", "c", &batch).await.unwrap();
    tx1.commit().await.unwrap();
    assert!(
        other.await.unwrap(),
        "the second copy skips the applied batch"
    );
}

/// Applies a cooperative batch into `applied` on the target the exactly-once way, under
/// the main consumer `c`; `false` when the batch was found done (skipped).
async fn apply_coop(
    target: &mut strata_pgclient::Client,
    consumer: &mut Consumer,
    batch: &strata_pgq::Batch,
) -> bool {
    let tx = target.transaction().await.unwrap();
    if completed::is_done(&tx, "q", "c", batch).await.unwrap() {
        tx.commit().await.unwrap();
        return false;
    }
    let mut ids = Vec::new();
    let mut stream = consumer.events(batch).await.unwrap();
    while let Some(chunk) = stream.next_chunk().await.unwrap() {
        ids.extend(
            chunk
                .iter()
                .map(|e| e.data.as_deref().unwrap().parse::<i64>().unwrap()),
        );
    }
    stream.close().await.unwrap();
    // No ON CONFLICT: an event applied twice fails the test here.
    tx.execute("insert into applied select unnest($1::bigint[])", &[&ids])
        .await
        .unwrap();
    completed::mark_done(&tx, "q", "c", batch).await.unwrap();
    tx.commit().await.unwrap();
    true
}

/// Events 10*t+1 ..= 10*t+10 in one transaction, then a tick.
async fn ten_events(client: &strata_pgclient::Client, t: i64) {
    client
        .batch_execute(&format!(
            "select pgq.insert_event('q', 'n', g::text) from generate_series({}, {}) g",
            t * 10 + 1,
            t * 10 + 10
        ))
        .await
        .unwrap();
    tick(client, "q").await;
}

/// Asks `consumer` for a batch until one comes (a sibling's batch is taken over once it
/// has been silent for the dead interval).
async fn batch_when_ready(consumer: &mut Consumer, what: &str) -> strata_pgq::Batch {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(batch) = consumer.next_batch().await.unwrap() {
            return batch;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_holds_for_cooperative_subconsumers() {
    if skip_without_postgres() {
        return;
    }
    let site = Site::new(&["src", "dst"]);
    let source = site.client("src").await;
    source
        .batch_execute("select pgq.create_queue('q')")
        .await
        .unwrap();
    strata_pgq::api::register_consumer(&source, "q", "c")
        .await
        .unwrap();
    strata_pgq::coop::setup(&source).await.unwrap();
    let dead = Some(Duration::from_secs(1));
    let sub = |name: &'static str| {
        let site = &site;
        async move {
            let mut c = Consumer::cooperative(
                site.client("src").await,
                "q",
                "c",
                name,
                dead,
                ConsumerOptions::default(),
            )
            .unwrap();
            c.register().await.unwrap();
            c
        }
    };
    // Batch rules cannot serve a shared stream: refused, not ignored.
    let err = Consumer::cooperative(
        site.client("src").await,
        "q",
        "c",
        "s9",
        dead,
        ConsumerOptions {
            rules: strata_pgq::BatchRules {
                min_count: Some(10),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .err()
    .unwrap();
    assert!(
        err.is_bad_input() && err.to_string().contains("batch rules"),
        "{err}"
    );
    let (mut s1, mut s2, mut s3) = (sub("s1").await, sub("s2").await, sub("s3").await);
    let mut target = site.client("dst").await;
    completed::setup(&target).await.unwrap();
    target
        .batch_execute("create table applied(id bigint primary key)")
        .await
        .unwrap();
    ten_events(&source, 0).await;
    ten_events(&source, 1).await;
    let b1 = s1.next_batch().await.unwrap().unwrap();
    let b2 = s2.next_batch().await.unwrap().unwrap();
    assert!(b1.cur_tick_id <= b2.prev_tick_id, "{b1:?} {b2:?}");
    // The records are the main consumer's: a subconsumer's own name is refused.
    let tx = target.transaction().await.unwrap();
    let err = completed::is_done(&tx, "q", "c.s2", &b2).await.unwrap_err();
    assert!(err.is_bad_input(), "{err}");
    drop(tx);
    // Out of order: the later batch is applied and finished first...
    assert!(apply_coop(&mut target, &mut s2, &b2).await);
    s2.finish_batch(&b2).await.unwrap();
    // ...and the earlier one is still applied (one position per consumer would call it
    // done and lose its events).
    assert!(
        apply_coop(&mut target, &mut s1, &b1).await,
        "a batch finished after a later one is applied, not skipped"
    );
    // s1 dies between the target's commit and finish_batch; s3 takes its batch over
    // (same ticks, new batch id) and finds it applied.
    drop(s1);
    let taken = batch_when_ready(&mut s3, "the take-over of s1's batch").await;
    assert_eq!(
        (taken.prev_tick_id, taken.cur_tick_id),
        (b1.prev_tick_id, b1.cur_tick_id)
    );
    assert_ne!(taken.batch_id, b1.batch_id);
    assert!(
        !apply_coop(&mut target, &mut s3, &taken).await,
        "the taken-over batch was applied by its first holder"
    );
    s3.finish_batch(&taken).await.unwrap();
    // A slow (not dead) holder: s2 takes the next batch and goes silent; s3 takes it over
    // and applies it; when s2 comes back it finds the batch done and cannot finish it.
    ten_events(&source, 2).await;
    let b3 = s2.next_batch().await.unwrap().unwrap();
    let taken = batch_when_ready(&mut s3, "the take-over of s2's batch").await;
    assert_eq!(
        (taken.prev_tick_id, taken.cur_tick_id),
        (b3.prev_tick_id, b3.cur_tick_id)
    );
    assert!(apply_coop(&mut target, &mut s3, &taken).await);
    s3.finish_batch(&taken).await.unwrap();
    assert!(
        !apply_coop(&mut target, &mut s2, &b3).await,
        "the slow holder skips the batch its sibling applied"
    );
    assert!(matches!(
        s2.finish_batch(&b3).await.unwrap_err(),
        strata_pgq::PgqError::TakenOver(_)
    ));
    // One more batch: the records of the finished batches are forgotten, as the source
    // says they can never come again.
    ten_events(&source, 3).await;
    let b4 = s2.next_batch().await.unwrap().unwrap();
    assert!(apply_coop(&mut target, &mut s2, &b4).await);
    s2.finish_batch(&b4).await.unwrap();
    let kept: Vec<(i64, i64)> = target
        .query(
            "select prev_tick_id, cur_tick_id from strata_pgq.completed_batch order by 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(kept, [(b4.prev_tick_id, b4.cur_tick_id)]);
    // Every event exactly once (the primary key saw no repeat).
    let ids: Vec<i64> = target
        .query("select id from applied order by 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, (1..=40).collect::<Vec<i64>>());
}

/// A cooperative batch of main consumer `c` on queue `q` covering `prev..cur`, as a
/// subconsumer would hold it (the records only look at the ticks and the main consumer).
fn coop_batch(prev: i64, cur: i64, finished_below: i64) -> strata_pgq::Batch {
    strata_pgq::Batch {
        batch_id: cur,
        cur_tick_id: cur,
        prev_tick_id: prev,
        cur_tick_time: std::time::SystemTime::now(),
        prev_tick_time: std::time::SystemTime::now(),
        cur_tick_event_seq: 0,
        prev_tick_event_seq: 0,
        coop: Some(strata_pgq::api::CoopBatch {
            main_consumer: "c".into(),
            finished_below,
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_exactly_once_records_under_concurrent_siblings() {
    if skip_without_postgres() {
        return;
    }
    let site = Site::new(&["dst"]);
    let mut first = site.client("dst").await;
    completed::setup(&first).await.unwrap();
    // An older snapshot could miss what a sibling committed: refused.
    for level in [
        strata_pgclient::tokio_postgres::IsolationLevel::RepeatableRead,
        strata_pgclient::tokio_postgres::IsolationLevel::Serializable,
    ] {
        let tx = first
            .build_transaction()
            .isolation_level(level)
            .start()
            .await
            .unwrap();
        let err = completed::is_done(&tx, "q", "c", &coop_batch(10, 20, 0))
            .await
            .unwrap_err();
        assert!(
            err.is_bad_input() && err.to_string().contains("READ COMMITTED"),
            "{err}"
        );
    }
    drop(first);
    // Siblings on different batches do not wait for each other: one has moved
    // finished_below (an uncommitted update of the consumer's completed_tick row) and
    // not committed yet; the other records its batch and commits meanwhile.
    let (mut a, mut b) = (site.client("dst").await, site.client("dst").await);
    let setup = a.transaction().await.unwrap();
    let first_batch = coop_batch(0, 10, 0);
    assert!(!completed::is_done(&setup, "q", "c", &first_batch)
        .await
        .unwrap());
    completed::mark_done(&setup, "q", "c", &first_batch)
        .await
        .unwrap();
    setup.commit().await.unwrap();
    let tx_a = a.transaction().await.unwrap();
    let batch_a = coop_batch(20, 30, 20);
    assert!(!completed::is_done(&tx_a, "q", "c", &batch_a).await.unwrap());
    completed::mark_done(&tx_a, "q", "c", &batch_a)
        .await
        .unwrap();
    let other = tokio::spawn(async move {
        let tx_b = b.transaction().await.unwrap();
        let batch_b = coop_batch(30, 40, 20);
        assert!(!completed::is_done(&tx_b, "q", "c", &batch_b).await.unwrap());
        completed::mark_done(&tx_b, "q", "c", &batch_b)
            .await
            .unwrap();
        tx_b.commit().await.unwrap();
    });
    tokio::time::timeout(Duration::from_secs(10), other)
        .await
        .expect("a sibling's commit waited for another sibling's open transaction")
        .unwrap();
    tx_a.commit().await.unwrap();
    // A slow holder and the sibling that took its batch over, at the same time: the taker
    // waits in is_done until the holder commits, then finds the batch done. The range's
    // row is already there, unapplied (an earlier transaction called is_done and committed
    // without applying anything), so only the row lock makes the taker wait.
    let (mut holder, mut taker) = (site.client("dst").await, site.client("dst").await);
    let batch = coop_batch(40, 50, 20);
    let earlier = holder.transaction().await.unwrap();
    assert!(!completed::is_done(&earlier, "q", "c", &batch)
        .await
        .unwrap());
    earlier.commit().await.unwrap();
    let tx1 = holder.transaction().await.unwrap();
    assert!(!completed::is_done(&tx1, "q", "c", &batch).await.unwrap());
    let other = {
        let batch = batch.clone();
        tokio::spawn(async move {
            let tx2 = taker.transaction().await.unwrap();
            let done = completed::is_done(&tx2, "q", "c", &batch).await.unwrap();
            if !done {
                completed::mark_done(&tx2, "q", "c", &batch).await.unwrap();
            }
            tx2.commit().await.unwrap();
            done
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !other.is_finished(),
        "the taker waits for the holder's transaction"
    );
    completed::mark_done(&tx1, "q", "c", &batch).await.unwrap();
    tx1.commit().await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_secs(10), other)
            .await
            .unwrap()
            .unwrap(),
        "the taker skips the batch the slow holder applied"
    );
}

/// The queue administration of `strata pgq`, called as the CLI calls it (a connection
/// string, names, `KEY=VALUE` settings): a bad setting leaves no queue behind (one
/// transaction); a queue with consumers is dropped only with `force`; unknown queues and
/// consumers are bad input; the settings read back are the ones written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_administration_is_all_or_nothing_and_names_bad_input() {
    use strata_pgq::admin;
    if skip_without_postgres() {
        return;
    }
    let site = Site::new(&["app"]);
    let dsn = site.dsn("app");
    let db = Some(dsn.as_str());
    let settings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let queue_count = || site.pg.psql("app", "select count(*) from pgq.queue");

    // No database given, or one without pgq: named, not a panic.
    let err = admin::status(None, None, None).await.unwrap_err();
    assert!(err.is_bad_input(), "{err}");
    site.pg.psql("postgres", "create database plain");
    let err = admin::status(Some(&site.dsn("plain")), None, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("has no pgq schema"), "{err}");

    // A setting pgq refuses rolls the new queue back; a malformed one is refused first.
    let err = admin::create_queue(db, "q1", &settings(&["ticker_max_lag=soon"]), false)
        .await
        .unwrap_err();
    assert!(matches!(err, strata_pgq::PgqError::Sql { .. }), "{err:?}");
    let err = admin::create_queue(db, "q1", &settings(&["nonsense"]), false)
        .await
        .unwrap_err();
    assert!(err.is_bad_input(), "{err}");
    assert_eq!(queue_count(), "0", "no half-configured queue is left");

    let first = settings(&["ticker_max_count=7"]);
    assert!(admin::create_queue(db, "q1", &first, true).await.unwrap());
    assert!(!admin::create_queue(db, "q1", &[], false).await.unwrap());
    let shown = admin::configure(db, "q1", &settings(&["ticker_idle_period=90"]))
        .await
        .unwrap();
    assert_eq!(
        (
            shown.queue.ticker_max_count,
            shown.queue.ticker_idle_period_secs,
            shown.notify
        ),
        (7, 90.0, true)
    );
    let err = admin::configure(db, "nope", &[]).await.unwrap_err();
    assert_eq!(err.to_string(), "no queue named \"nope\"");

    // Consumers: registered once; an unknown one is bad input; they block a plain drop.
    assert!(admin::register(db, "q1", "c1", None).await.unwrap());
    assert!(!admin::register(db, "q1", "c1", None).await.unwrap());
    let err = admin::unregister(db, "q1", "c2", None).await.unwrap_err();
    assert_eq!(err.to_string(), "c2 is not registered on q1");
    let err = admin::register(db, "q1", "c9", Some("s1"))
        .await
        .unwrap_err();
    assert!(
        err.is_bad_input(),
        "a subconsumer of an unregistered consumer: {err}"
    );
    let err = admin::drop_queue(db, "q1", false).await.unwrap_err();
    assert!(err.is_bad_input(), "{err}");
    assert!(err.to_string().contains("--force"), "{err}");
    assert_eq!(queue_count(), "1");
    let status = admin::status(db, Some("q1"), Some(1e9)).await.unwrap();
    assert_eq!(status.consumers.len(), 1);
    assert!(status.problems.is_empty(), "{:?}", status.problems);
    admin::drop_queue(db, "q1", true).await.unwrap();
    assert_eq!(queue_count(), "0");
    let err = admin::drop_queue(db, "q1", true).await.unwrap_err();
    assert!(err.is_bad_input(), "{err}");
}
