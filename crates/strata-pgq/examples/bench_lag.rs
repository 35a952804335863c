//! The lag part of `bench/pgq.sh`: how long after its commit an event on an idle queue
//! is in a batch a consumer holds. A ticker (strata's, with notifications on the queue,
//! or another) must be running. Each round inserts one event (autocommit), then waits on
//! the ticker's tick announcement (`TickWaiter`, which also returns after 1 s, so a
//! ticker that announces nothing works too) and asks for batches until one holds the
//! event. Two kinds of rounds:
//! - `idle`: the event comes 1 to 2 s after the queue's previous tick;
//! - `after-tick`: the event comes right after the consumer got the previous event's
//!   batch, so right after a tick (what `wakeup_min_interval` governs).
//!
//! Usage: `bench_lag CONNINFO QUEUE CONSUMER ROUNDS`; prints mean, median, 90th
//! percentile and max per kind, in milliseconds.

use std::time::{Duration, Instant};
use strata_pgq::conn::TickWaiter;
use strata_pgq::{Consumer, ConsumerOptions};

/// Waits until a batch holds event `id`; finishes every batch it takes.
async fn until_batch_with(
    consumer: &mut Consumer,
    waiter: &mut TickWaiter,
    id: i64,
) -> Result<(), Box<dyn std::error::Error>> {
    loop {
        match consumer.next_batch().await? {
            Some(batch) => {
                let mut found = false;
                let mut stream = consumer.events(&batch).await?;
                while let Some(chunk) = stream.next_chunk().await? {
                    found |= chunk.iter().any(|e| e.id == id);
                }
                stream.close().await?;
                consumer.finish_batch(&batch).await?;
                if found {
                    return Ok(());
                }
            }
            None => {
                waiter.wait(Duration::from_secs(1)).await;
            }
        }
    }
}

fn report(kind: &str, mut lags: Vec<f64>) {
    lags.sort_by(f64::total_cmp);
    let n = lags.len();
    let mean = lags.iter().sum::<f64>() / n as f64;
    let pick = |q: f64| lags[((n as f64 - 1.0) * q).round() as usize];
    println!(
        "{kind}: {n} events, commit until in a consumer's batch: mean {:.0} ms, median {:.0} ms, p90 {:.0} ms, max {:.0} ms",
        mean * 1e3,
        pick(0.5) * 1e3,
        pick(0.9) * 1e3,
        lags[n - 1] * 1e3
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, conninfo, queue, name, rounds] = args.as_slice() else {
        eprintln!("usage: bench_lag CONNINFO QUEUE CONSUMER ROUNDS");
        std::process::exit(2);
    };
    let rounds: usize = rounds.parse()?;
    let dsn = strata_pgclient::Dsn::parse(conninfo)?;
    let producer = dsn.connect().await?;
    let mut consumer = Consumer::new(
        dsn.connect().await?,
        queue,
        name,
        ConsumerOptions::default(),
    )?;
    consumer.register().await?;
    let mut waiter = TickWaiter::connect(&dsn, queue).await?;
    let insert = "select pgq.insert_event($1, 'lag', 'x')";
    let mut idle = Vec::new();
    let mut after_tick = Vec::new();
    // A first event, so that pgq's event sequence counts the ones measured (it does not
    // count a fresh queue's first event).
    let id: i64 = producer.query_one(insert, &[queue]).await?.get(0);
    until_batch_with(&mut consumer, &mut waiter, id).await?;
    for round in 0..rounds {
        // Idle: 1 to 2 s after the previous tick, at spread-out phases.
        let pause = 1000 + (round as u64 * 397) % 1000;
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let id: i64 = producer.query_one(insert, &[queue]).await?.get(0);
        let committed = Instant::now();
        until_batch_with(&mut consumer, &mut waiter, id).await?;
        idle.push(committed.elapsed().as_secs_f64());
        // Right after that tick.
        let id: i64 = producer.query_one(insert, &[queue]).await?.get(0);
        let committed = Instant::now();
        until_batch_with(&mut consumer, &mut waiter, id).await?;
        after_tick.push(committed.elapsed().as_secs_f64());
    }
    report("idle", idle);
    report("after-tick", after_tick);
    Ok(())
}
