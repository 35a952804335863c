//! The Rust side of `bench/pgq.sh`: consumes every batch of a queue until `count` events
//! were seen, decoding each event's trigger payload (as a real consumer would), and
//! prints events per second. Usage: `bench_consumer CONNINFO QUEUE CONSUMER COUNT`.

use std::time::Instant;
use strata_pgq::{Consumer, ConsumerOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, conninfo, queue, name, count] = args.as_slice() else {
        eprintln!("usage: bench_consumer CONNINFO QUEUE CONSUMER COUNT");
        std::process::exit(2);
    };
    let want: u64 = count.parse()?;
    let client = strata_pgclient::Dsn::parse(conninfo)?.connect().await?;
    let mut consumer = Consumer::new(client, queue, name, ConsumerOptions::default())?;
    // Timed from the first batch, as the Python side is.
    let mut start = None;
    let (mut seen, mut columns, mut batches) = (0u64, 0u64, 0u64);
    while seen < want {
        let Some(batch) = consumer.next_batch().await? else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let start = *start.get_or_insert_with(Instant::now);
        let _ = start;
        let mut stream = consumer.events(&batch).await?;
        while let Some(chunk) = stream.next_chunk().await? {
            for event in &chunk {
                if let Some(change) = event.row_change()? {
                    columns += change.row.len() as u64;
                }
                seen += 1;
            }
        }
        stream.close().await?;
        consumer.finish_batch(&batch).await?;
        batches += 1;
    }
    let secs = start
        .map_or(0.0, |s: Instant| s.elapsed().as_secs_f64())
        .max(1e-9);
    let stats = consumer.stats();
    println!(
        "rust: {seen} events ({columns} columns decoded) in {batches} batches, {secs:.2} s, {:.0} events/s, max buffered {} bytes",
        seen as f64 / secs,
        stats.max_buffered_bytes
    );
    Ok(())
}
