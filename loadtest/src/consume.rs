//! `consume`: a bare rdkafka consumer that reads a topic as fast as it can
//! and reports messages/s: the broker's own limit, measured beside the live
//! map's end-to-end rate so the ratio shows which one is the bottleneck.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;

#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    #[arg(long)]
    brokers: String,
    #[arg(long, default_value = "checkouts")]
    topic: String,
    /// Stop after this many messages.
    #[arg(long)]
    count: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

pub fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set(
            "group.id",
            format!("livemap-loadtest-{}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        // The same fetch settings the server uses.
        .set("fetch.wait.max.ms", "10")
        .set("max.partition.fetch.bytes", "16777216")
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .context("creating the consumer")?;
    consumer.subscribe(&[&args.topic]).context("subscribing")?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let (mut n, mut bytes) = (0u64, 0u64);
    let mut first: Option<Instant> = None;
    while n < args.count && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            first.get_or_insert_with(Instant::now);
            n += 1;
            bytes += m.payload().map_or(0, |p| p.len() as u64);
        }
    }
    let secs = first.map_or(0.0, |f| f.elapsed().as_secs_f64()).max(1e-9);
    println!(
        "consumed {n} messages, {bytes} bytes in {secs:.2} s (from the first message): {:.0} msgs/s",
        n as f64 / secs
    );
    anyhow::ensure!(
        n >= args.count,
        "only {n} of {} messages before the timeout",
        args.count
    );
    Ok(())
}
